//! The `fireplot` subcommands.

pub mod run;
