//! Text forms of what the sensor produces: event JSON lines and counter
//! summaries.

pub mod event;
pub mod summary;
