//! The `fireplot` subcommands.

pub mod args;
pub mod collect;
pub mod config;
pub mod detect;
pub mod enrich;
pub mod export;
pub mod history;
pub mod plot;
pub mod report;
pub mod run;
pub mod serve;
pub mod source;
pub mod top;
