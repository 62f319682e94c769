//! What the inputs' tests share: a fixed clock, a hand-checked line's
//! event, packets and temporary files.

use std::path::PathBuf;

use chrono::{DateTime, FixedOffset};

use super::{parse, Clock, Format, Parsed};
use crate::record::Record;

/// The tests' now: 2026-11-25T15:20:00Z.
pub const NOW: i64 = 1_795_629_600_000_000_000;

/// An Ethernet header's MAC field as nf_log prints it.
pub const MAC: &str = "MAC=52:54:00:12:34:56:52:54:00:65:43:21:08:00";

/// UTC, now [`NOW`], booted eight hours before.
pub fn clock() -> Clock {
    Clock {
        zone: FixedOffset::east_opt(0).unwrap(),
        year: None,
        now_ns: NOW,
        boot_ns: Some(1_795_600_000_000_000_000),
    }
}

/// An RFC 3339 time in Unix ns.
pub fn ns(s: &str) -> i64 {
    DateTime::parse_from_rfc3339(s)
        .unwrap()
        .timestamp_nanos_opt()
        .unwrap()
}

/// The event of a line that must be one.
pub fn event(f: Format, line: &str) -> (Record, Option<String>) {
    match parse(f, line, &clock(), 1) {
        Parsed::Event(r, i) => (*r, i),
        other => panic!("{line}\n→ {other:?}"),
    }
}

/// Why a line that must be unreadable is, as the ingest shows it.
pub fn bad(f: Format, line: &str) -> String {
    match parse(f, line, &clock(), 1) {
        Parsed::Bad(why) => crate::error_chain(&why),
        other => panic!("{line}\n→ {other:?}, wanted Bad"),
    }
}

/// A 40-byte IPv4 header and nothing after it.
pub fn ipv4() -> Vec<u8> {
    let mut p = vec![0x45, 0, 0, 40];
    p.resize(40, 0);
    p
}

/// An Ethernet frame around [`ipv4`] from MAC 02:00:00:00:00:`src_mac`.
pub fn eth(src_mac: u8) -> Vec<u8> {
    let mut f = vec![2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, src_mac, 0x08, 0];
    f.extend_from_slice(&ipv4());
    f
}

/// A path in this test process's own temporary directory.
pub fn temp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("fireplot-input-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d.join(name)
}

/// A pcap file of `frames` (captured bytes, original length) as
/// libpcap writes it, in either byte order and resolution.
pub fn pcap_bytes(
    big_endian: bool,
    nanos: bool,
    snaplen: u32,
    link: u32,
    frames: &[(u64, &[u8], u32)],
) -> Vec<u8> {
    let w = |v: &mut Vec<u8>, x: u32| {
        v.extend_from_slice(&if big_endian {
            x.to_be_bytes()
        } else {
            x.to_le_bytes()
        })
    };
    let mut v = Vec::new();
    w(&mut v, if nanos { 0xa1b2_3c4d } else { 0xa1b2_c3d4 });
    // Version 2.4: two 16-bit words.
    for half in [2u16, 4] {
        v.extend_from_slice(&if big_endian {
            half.to_be_bytes()
        } else {
            half.to_le_bytes()
        });
    }
    w(&mut v, 0);
    w(&mut v, 0);
    w(&mut v, snaplen);
    w(&mut v, link);
    for (ts_ns, data, orig) in frames {
        w(&mut v, (ts_ns / 1_000_000_000) as u32);
        let frac = ts_ns % 1_000_000_000;
        w(&mut v, if nanos { frac } else { frac / 1000 } as u32);
        w(&mut v, data.len() as u32);
        w(&mut v, *orig);
        v.extend_from_slice(data);
    }
    v
}
