//! Inputs other than the live interface, each turned into what the live
//! sensor produces.
//!
//! - Packet captures ([`capture`]: pcap, pcapng; [`link`]: their link
//!   types as Ethernet; [`frame`]: a frame's direction and its fit to
//!   `BPF_PROG_TEST_RUN`), replayed through the kernel programs by
//!   `fireplot replay`.
//! - Firewall logs, one file per format: [`nflog`] (iptables, nftables),
//!   [`mikrotik`], [`journald`], and fireplot's own [`events`] lines; the
//!   time framings around them in [`time`]; where the lines come from (a
//!   file, standard input, a followed file, the journal) in [`follow`].
//!   `fireplot ingest` reads them.
//!
//! A logged packet is unsolicited by the firewall's own judgement: every
//! parsed line is one event. Each parser says one of three things about a
//! line: an event, not a firewall line (ordinary log traffic, skipped and
//! counted), or a firewall line it cannot read (counted and shown, never
//! fatal).
//!
//! Nothing here knows the command line: `cmd/` maps its arguments onto
//! these types.

pub mod capture;
pub mod events;
pub mod follow;
pub mod frame;
pub mod journald;
pub mod link;
pub mod mikrotik;
pub mod nflog;
pub mod time;

use thiserror::Error;

pub use self::{
    capture::{Capture, CaptureError},
    follow::{FollowError, LineSource},
    time::Clock,
};
use self::{
    events::{parse_event_line, EventLineError},
    journald::{parse_journald, JournaldError},
    mikrotik::{parse_mikrotik, MikrotikError},
    nflog::{parse_nflog, NflogError},
    time::{split_time, TimeError},
};
use crate::record::Record;

/// The formats of log lines fireplot reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// fireplot's own event JSON lines (`--events-out`).
    Events,
    /// iptables / ip6tables `-j LOG` lines (kernel log, syslog, dmesg).
    Iptables,
    /// nftables `log` statement lines (the same kernel format).
    Nftables,
    /// Mikrotik RouterOS firewall log lines.
    Mikrotik,
    /// `journalctl -k -o json` records.
    Journald,
}

/// What a line was.
#[derive(Debug)]
pub enum Parsed {
    /// An event, and the name of the interface it came in on.
    Event(Box<Record>, Option<String>),
    /// Not a firewall line.
    Other,
    /// A firewall line that cannot be read, and why.
    Bad(Unreadable),
}

/// Why a firewall line cannot be read (shown with its causes, as
/// [`crate::error_chain`] joins them).
#[derive(Debug, Error)]
pub enum Unreadable {
    /// Its time framing.
    #[error(transparent)]
    Time(#[from] TimeError),
    /// Its nf_log text (iptables, nftables).
    #[error(transparent)]
    Nflog(#[from] NflogError),
    /// A Mikrotik line.
    #[error(transparent)]
    Mikrotik(#[from] MikrotikError),
    /// A journal record.
    #[error(transparent)]
    Journald(#[from] JournaldError),
    /// One of fireplot's event lines.
    #[error(transparent)]
    Event(#[from] EventLineError),
}

/// Parses one line of `format`, the `lineno`-th of its input.
pub fn parse(format: Format, line: &str, clock: &Clock, lineno: usize) -> Parsed {
    let line = line.trim_end_matches(['\r', '\n']);
    if line.trim().is_empty() {
        return Parsed::Other;
    }
    match format {
        Format::Events => verdict(parse_event_line(line, lineno).map(Some)),
        Format::Iptables | Format::Nftables => match split_time(line, clock) {
            Ok((ts, text)) => verdict(parse_nflog(text, ts)),
            Err(e) => Parsed::Bad(e.into()),
        },
        Format::Mikrotik => match split_time(line, clock) {
            Ok((ts, text)) => verdict(parse_mikrotik(text, ts)),
            Err(e) => Parsed::Bad(e.into()),
        },
        Format::Journald => verdict(parse_journald(line)),
    }
}

fn verdict<E: Into<Unreadable>>(r: Result<Option<(Record, Option<String>)>, E>) -> Parsed {
    match r {
        Ok(Some((record, iface))) => Parsed::Event(Box::new(record), iface),
        Ok(None) => Parsed::Other,
        Err(e) => Parsed::Bad(e.into()),
    }
}

#[cfg(test)]
pub(crate) mod test_support;

#[cfg(test)]
mod tests {
    use super::{test_support::*, *};

    #[test]
    fn every_malformed_case_is_named_never_fatal() {
        for (f, line, want) in [
            (Format::Iptables, "Nov 25 14:00:00 gw kernel: IN=eth0 OUT= SRC=300.1.2.3 DST=198.51.100.1 PROTO=TCP SPT=1 DPT=2", "SRC="),
            (Format::Iptables, "Nov 25 14:00:00 gw kernel: IN=eth0 OUT= SRC=203.0.113.5 PROTO=TCP SPT=1 DPT=2", "DST="),
            (Format::Iptables, "Nov 25 14:00:00 gw kernel: IN=eth0 OUT= SRC=203.0.113.5 DST=198.51.100.1 PROTO=FOO", "PROTO=FOO"),
            (Format::Iptables, "Nov 25 14:00:00 gw kernel: IN=eth0 OUT= SRC=203.0.113.5 DST=198.51.100.1 LEN=40", "PROTO="),
            (Format::Iptables, "Nov 25 14:00:00 gw kernel: IN=eth0 OUT= SRC=203.0.113.5 DST=198.51.100.1 PROTO=TCP SPT=1", "SPT="),
            (Format::Iptables, "Nov 25 14:00:00 gw kernel: IN=eth0 OUT= SRC=203.0.113.5 DST=198.51.100.1 PROTO=UDP SPT=1 DPT=70000", "SPT="),
            (Format::Iptables, "fw: IN=eth0 OUT= SRC=203.0.113.5 DST=198.51.100.1 PROTO=TCP SPT=1 DPT=2", "no time"),
            (Format::Iptables, "2026-13-45T99:00:00Z gw kernel: IN=eth0 SRC=203.0.113.5 DST=1.2.3.4 PROTO=TCP SPT=1 DPT=2", "unreadable time"),
            (Format::Iptables, "Nov 99 gw kernel: IN=eth0 SRC=1.2.3.4", "syslog time"),
            (Format::Mikrotik, "Nov 25 14:00:00 router firewall,info input: proto TCP (SYN), 203.0.113.9:x->198.51.100.1:22, len 60", "unreadable addresses"),
            (Format::Mikrotik, "Nov 25 14:00:00 router firewall,info input: proto TCP (SYN), 203.0.113.9->198.51.100.1, len 60", "without a destination port"),
            (Format::Mikrotik, "Nov 25 14:00:00 router firewall,info input: proto WAT, 203.0.113.9->198.51.100.1, len 60", "unknown proto"),
            (Format::Mikrotik, "Nov 25 14:00:00 router firewall,info input: proto TCP (SYN, 203.0.113.9:1->198.51.100.1:2", "unclosed"),
            (Format::Journald, "{not json", "not a JSON record"),
            (Format::Journald, r#"{"MESSAGE":"IN=eth0 SRC=203.0.113.5 DST=198.51.100.1 PROTO=TCP SPT=1 DPT=2"}"#, "__REALTIME_TIMESTAMP"),
            (Format::Events, "{\"ts\":\"yesterday\"}", "not an event line"),
        ] {
            let why = bad(f, line);
            assert!(why.contains(want), "{line}\n→ `{why}` lacks `{want}`");
        }
        // Ordinary log lines are not firewall lines.
        for (f, line) in [
            (
                Format::Iptables,
                "Nov 25 14:00:00 gw sshd[123]: Accepted publickey for root from 203.0.113.5",
            ),
            (Format::Iptables, "[    0.000000] Linux version 6.18.0"),
            (
                Format::Mikrotik,
                "14:00:00 system,info,account user admin logged in from 203.0.113.5 via ssh",
            ),
            (Format::Iptables, ""),
        ] {
            assert!(
                matches!(parse(f, line, &clock(), 1), Parsed::Other),
                "{line}"
            );
        }
    }

    #[test]
    fn a_cause_is_shown_after_its_line_s_reason() {
        // The JSON parser's own words follow, as the ingest prints them.
        assert!(
            bad(Format::Journald, "{not json").starts_with("not a JSON record: key must be"),
            "{}",
            bad(Format::Journald, "{not json")
        );
        assert!(bad(Format::Events, "[]").starts_with("not an event line: invalid type"));
        // Line endings and blank lines are nothing.
        assert!(matches!(
            parse(Format::Events, " \r\n", &clock(), 1),
            Parsed::Other
        ));
    }
}
