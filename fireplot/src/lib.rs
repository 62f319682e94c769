//! fireplot: an XDP sensor for unsolicited WAN traffic.
//!
//! The kernel side (`fireplot-ebpf`) classifies every inbound packet and
//! sends one event per unsolicited packet through a ring buffer. This crate
//! loads and attaches it ([`sensor`]), turns events into records and JSON lines
//! ([`record`]), reads captures and firewall logs into the same events
//! ([`input`]), and runs the daemon ([`cmd`]). The modules are layers
//! that point down; `layers.rs` holds their order and the test of it.

pub mod cmd;
pub mod detect;
pub mod enrich;
pub mod fleet;
pub mod input;
pub mod plot;
pub mod progress;
pub mod record;
pub mod report;
pub mod sensor;
pub mod store;
pub mod summary;
pub mod units;
pub mod web;

/// An error and its causes on one line ("a: b: c"), for logs that must
/// not lose the cause.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        s.push_str(": ");
        s.push_str(&c.to_string());
        src = c.source();
    }
    s
}

#[cfg(test)]
mod layers;
