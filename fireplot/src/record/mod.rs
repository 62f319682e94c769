//! `Record`: one event as the history store, the plotter and the detectors
//! hold it — compact, wall-clock time in Unix nanoseconds — with
//! conversions from the kernel's `Event` and from event JSON lines.

use std::{
    io::BufRead,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

use chrono::DateTime;
use fireplot_common::{
    event::{Class, Event, PKT_FRAGMENT, PKT_VLAN},
    proto::{FAMILY_V4, FAMILY_V6},
};
use thiserror::Error;

pub mod line;

use line::{parse_flags, rfc3339_ns, EventRecord, Proto};

/// One stored event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// Unix time in nanoseconds.
    pub ts_ns: i64,
    pub family: u8,
    pub proto: u8,
    pub src: Option<IpAddr>,
    pub dst: Option<IpAddr>,
    /// TCP/UDP ports (0 when the protocol has none); for ICMP, `sport` is the echo id.
    pub sport: u16,
    pub dport: u16,
    pub tcp_flags: u8,
    pub ttl: u8,
    pub len: u16,
    /// A `Class` value.
    pub class: u8,
    pub ifindex: u32,
    pub ip_id: u16,
    pub tcp_seq: u32,
    pub tcp_window: u16,
    pub icmp_type: u8,
    pub icmp_code: u8,
    /// `PKT_*` bits.
    pub pkt_flags: u8,
}

impl Record {
    /// From a kernel event, with the monotonic→wall offset.
    pub fn from_event(ev: &Event, wall_offset_ns: i128) -> Record {
        Record {
            ts_ns: (ev.ts_ns as i128 + wall_offset_ns) as i64,
            family: ev.family,
            proto: ev.proto,
            src: ev.src_addr(),
            dst: ev.dst_addr(),
            sport: ev.sport,
            dport: ev.dport,
            tcp_flags: ev.tcp_flags,
            ttl: ev.ttl,
            len: ev.pkt_len,
            class: ev.class,
            ifindex: ev.ifindex,
            ip_id: ev.ip_id,
            tcp_seq: ev.tcp_seq,
            tcp_window: ev.tcp_window,
            icmp_type: ev.icmp_type,
            icmp_code: ev.icmp_code,
            pkt_flags: ev.pkt_flags,
        }
    }

    /// Does the destination port mean anything (TCP/UDP, not a fragment)?
    pub fn has_ports(&self) -> bool {
        matches!(self.proto, 6 | 17) && self.pkt_flags & PKT_FRAGMENT == 0
    }

    /// The JSON line form.
    pub fn to_json_record(&self) -> EventRecord {
        let ports = self.has_ports();
        let icmp = matches!(self.proto, 1 | 58) && self.pkt_flags & PKT_FRAGMENT == 0;
        let echo = icmp && matches!(self.icmp_type, 0 | 8 | 128 | 129);
        EventRecord {
            ts: rfc3339_ns(self.ts_ns as i128),
            family: self.family,
            proto: Proto::from_number(self.proto),
            src: self.src,
            sport: ports.then_some(self.sport),
            dst: self.dst,
            dport: ports.then_some(self.dport),
            flags: if self.proto == 6 {
                line::flags_string(self.tcp_flags)
            } else {
                String::new()
            },
            ttl: self.ttl,
            len: self.len,
            class: Class::from_u8(self.class)
                .map(Class::name)
                .unwrap_or("unknown")
                .into(),
            ifindex: self.ifindex,
            iface: None,
            ip_id: self.ip_id,
            tcp_seq: self.tcp_seq,
            tcp_window: self.tcp_window,
            icmp_type: icmp.then_some(self.icmp_type),
            icmp_code: icmp.then_some(self.icmp_code),
            icmp_id: echo.then_some(self.sport),
            fragment: self.pkt_flags & PKT_FRAGMENT != 0,
            vlan: self.pkt_flags & PKT_VLAN != 0,
        }
    }
}

/// Why an event line could not be read.
#[derive(Debug, Error)]
pub enum LineError {
    /// Not JSON, or missing a required field.
    #[error("line {line}: not an event ({source})")]
    Json {
        line: usize,
        #[source]
        source: serde_json::Error,
    },
    /// A field with a value out of its domain.
    #[error("line {line}: {detail}")]
    Field { line: usize, detail: String },
}

/// Parses an RFC 3339 time into Unix nanoseconds.
pub fn parse_rfc3339_ns(s: &str) -> Option<i64> {
    let t = DateTime::parse_from_rfc3339(s).ok()?;
    t.timestamp_nanos_opt()
}

impl TryFrom<(&EventRecord, usize)> for Record {
    type Error = LineError;
    fn try_from((r, line): (&EventRecord, usize)) -> Result<Record, LineError> {
        let field = |detail: String| LineError::Field { line, detail };
        let ts_ns = parse_rfc3339_ns(&r.ts).ok_or_else(|| field(format!("bad ts `{}`", r.ts)))?;
        let proto = r
            .proto
            .number()
            .ok_or_else(|| field(format!("unknown proto {:?}", r.proto)))?;
        let family = match r.family {
            4 => FAMILY_V4,
            6 => FAMILY_V6,
            0 => 0,
            f => return Err(field(format!("bad family {f}"))),
        };
        let class = Class::ALL
            .iter()
            .find(|c| c.name() == r.class)
            .map(|c| *c as u8)
            .ok_or_else(|| field(format!("unknown class `{}`", r.class)))?;
        let tcp_flags =
            parse_flags(&r.flags).ok_or_else(|| field(format!("bad flags `{}`", r.flags)))?;
        let mut pkt_flags = 0;
        if r.fragment {
            pkt_flags |= PKT_FRAGMENT;
        }
        if r.vlan {
            pkt_flags |= PKT_VLAN;
        }
        Ok(Record {
            ts_ns,
            family,
            proto,
            src: r.src,
            dst: r.dst,
            sport: r.sport.or(r.icmp_id).unwrap_or(0),
            dport: r.dport.unwrap_or(0),
            tcp_flags,
            ttl: r.ttl,
            len: r.len,
            class,
            ifindex: r.ifindex,
            ip_id: r.ip_id,
            tcp_seq: r.tcp_seq,
            tcp_window: r.tcp_window,
            icmp_type: r.icmp_type.unwrap_or(0),
            icmp_code: r.icmp_code.unwrap_or(0),
            pkt_flags,
        })
    }
}

/// Reads event JSON lines, calling `f` per record (with the line's
/// interface name, if it has one). Blank lines are skipped; bad lines are
/// counted and passed to `bad`.
pub fn read_lines<R: BufRead>(
    reader: R,
    mut f: impl FnMut(Record, Option<&str>),
    mut bad: impl FnMut(LineError),
) -> std::io::Result<(u64, u64)> {
    let (mut ok, mut errors) = (0u64, 0u64);
    for (i, line) in reader.lines().enumerate() {
        let line = line?;
        let trimmed = line.trim();
        if trimmed.is_empty() {
            continue;
        }
        let rec = serde_json::from_str::<EventRecord>(trimmed)
            .map_err(|source| LineError::Json {
                line: i + 1,
                source,
            })
            .and_then(|r| Record::try_from((&r, i + 1)).map(|rec| (rec, r.iface)));
        match rec {
            Ok((r, iface)) => {
                ok += 1;
                f(r, iface.as_deref())
            }
            Err(e) => {
                errors += 1;
                bad(e)
            }
        }
    }
    Ok((ok, errors))
}

/// An address as the 16 bytes the store keeps (IPv4 in the first 4).
pub fn addr_bytes(a: &Option<IpAddr>) -> Option<Vec<u8>> {
    match a {
        Some(IpAddr::V4(v)) => Some(v.octets().to_vec()),
        Some(IpAddr::V6(v)) => Some(v.octets().to_vec()),
        None => None,
    }
}

/// The inverse of [`addr_bytes`].
pub fn bytes_addr(b: Option<&[u8]>) -> Option<IpAddr> {
    match b {
        Some(b) if b.len() == 4 => Some(IpAddr::V4(Ipv4Addr::new(b[0], b[1], b[2], b[3]))),
        Some(b) if b.len() == 16 => {
            let mut o = [0u8; 16];
            o.copy_from_slice(b);
            Some(IpAddr::V6(Ipv6Addr::from(o)))
        }
        _ => None,
    }
}

/// Wall-clock now in Unix nanoseconds.
pub fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}
