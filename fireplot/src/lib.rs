//! fireplot: an XDP sensor for unsolicited WAN traffic.
//!
//! The kernel side (`fireplot-ebpf`) classifies every inbound packet and
//! sends one event per unsolicited packet through a ring buffer. This crate
//! loads and attaches it ([`sensor`]), turns events into records and JSON lines
//! ([`record`]), and runs the daemon ([`cmd`]).

pub mod cmd;
pub mod detect;
pub mod plot;
pub mod record;
pub mod sensor;
pub mod store;
pub mod units;
