//! `Record`: one event as the history store, the plotter and the detectors
//! hold it — compact, wall-clock time in Unix nanoseconds — with
//! conversions from the kernel's `Event` and from event JSON lines.

use std::{
    io::BufRead,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

use chrono::DateTime;
use fireplot_common::{
    agg::{DST_PREFIX_V4, DST_PREFIX_V6, PREFIX_V4, PREFIX_V6},
    event::{
        Class, Event, PKT_AGGREGATE, PKT_AGG_DST_PREFIX, PKT_AGG_ONE_SOURCE, PKT_DARK_ADDR,
        PKT_DARK_PORT, PKT_FRAGMENT, PKT_VLAN,
    },
    proto::{has_ports, FAMILY_V4, FAMILY_V6, IPPROTO_DCCP, IPPROTO_SCTP, SCTP_INIT},
};
use thiserror::Error;

mod aggregate;
pub mod line;
pub mod origin;
#[cfg(test)]
pub(crate) mod proptests;

use line::{parse_flags, rfc3339_ns, EventRecord, Proto, TypeFields};
pub use origin::{GroupBy, Origin};

/// One stored event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// Unix time in nanoseconds.
    pub ts_ns: i64,
    pub family: u8,
    pub proto: u8,
    pub src: Option<IpAddr>,
    pub dst: Option<IpAddr>,
    /// Ports of TCP, UDP, SCTP, UDP-Lite and DCCP (0 when the protocol has
    /// none, [`Record::has_ports`]); for ICMP, `sport` is the echo id. An
    /// aggregate's `sport` is its reflection port
    /// (`fireplot_common::vector::REFLECTION`) or 0.
    pub sport: u16,
    pub dport: u16,
    pub tcp_flags: u8,
    pub ttl: u8,
    /// Frame length in bytes; for an aggregate, the mean of its packets',
    /// rounded: its bytes are about `len` × `count`.
    pub len: u16,
    /// A `Class` value.
    pub class: u8,
    pub ifindex: u32,
    pub ip_id: u16,
    pub tcp_seq: u32,
    pub tcp_window: u16,
    /// ICMP type; SCTP: first chunk's type; DCCP: packet type (as the
    /// kernel's `Event::icmp_type`; the store keeps it as `icmp_type`).
    pub icmp_type: u8,
    pub icmp_code: u8,
    /// `PKT_*` bits.
    pub pkt_flags: u8,
    /// Packets this record stands for: 1 for an event, the packet count of
    /// an aggregate (`PKT_AGGREGATE`).
    pub count: u32,
}

impl Record {
    /// An unsolicited probe from `src` to `dst` (the family from `src`):
    /// TCP SYN, UDP, SCTP INIT, DCCP Request or another protocol, source
    /// port 40000, TTL 50, 60 bytes, interface 2. What tests, fixtures and
    /// benches start from.
    pub fn probe(ts_ns: i64, src: IpAddr, dst: IpAddr, proto: u8, dport: u16) -> Record {
        Record {
            ts_ns,
            family: if src.is_ipv4() { 4 } else { 6 },
            proto,
            src: Some(src),
            dst: Some(dst),
            sport: 40000,
            dport,
            tcp_flags: if proto == 6 { 0x02 } else { 0 },
            ttl: 50,
            len: 60,
            class: Class::Unsolicited as u8,
            ifindex: 2,
            ip_id: 0,
            tcp_seq: 0,
            tcp_window: 0,
            icmp_type: if proto == IPPROTO_SCTP { SCTP_INIT } else { 0 },
            icmp_code: 0,
            pkt_flags: 0,
            count: 1,
        }
    }

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
            pkt_flags: ev.pkt_flags & !PKT_AGGREGATE,
            count: 1,
        }
    }

    /// The source as people read it: the address of an event, the
    /// prefix of an aggregate ("198.51.100.0/24"), "any" for an aggregate
    /// without source, "?" for an event without one.
    pub fn src_label(&self) -> String {
        match (self.src, self.src_prefix()) {
            (Some(a), Some(len)) => format!("{a}/{len}"),
            (Some(a), None) => a.to_string(),
            (None, _) if self.is_aggregate() => "any".into(),
            (None, _) => "?".into(),
        }
    }

    /// Is this an aggregate of many packets rather than one event?
    pub fn is_aggregate(&self) -> bool {
        self.pkt_flags & PKT_AGGREGATE != 0
    }

    /// The source prefix length of an aggregate of many sources.
    pub fn src_prefix(&self) -> Option<u8> {
        if self.pkt_flags & PKT_AGG_ONE_SOURCE != 0 {
            return None;
        }
        match (self.is_aggregate(), self.src) {
            (true, Some(IpAddr::V4(_))) => Some(PREFIX_V4),
            (true, Some(IpAddr::V6(_))) => Some(PREFIX_V6),
            _ => None,
        }
    }

    /// The destination prefix length of an aggregate of the kernel's
    /// coarse table (`PKT_AGG_DST_PREFIX`): its `dst` is that network.
    pub fn dst_prefix(&self) -> Option<u8> {
        if !self.is_aggregate() || self.pkt_flags & PKT_AGG_DST_PREFIX == 0 {
            return None;
        }
        match self.dst {
            Some(IpAddr::V4(_)) => Some(DST_PREFIX_V4),
            Some(IpAddr::V6(_)) => Some(DST_PREFIX_V6),
            None => None,
        }
    }

    /// Did the destination (address, or port) never answer anyone?
    pub fn dark(&self) -> bool {
        self.pkt_flags & (PKT_DARK_ADDR | PKT_DARK_PORT) != 0
    }

    /// Does the destination port mean anything (a protocol with ports,
    /// `fireplot_common::proto::has_ports`, and not a fragment)?
    pub fn has_ports(&self) -> bool {
        has_ports(self.proto) && self.pkt_flags & PKT_FRAGMENT == 0
    }

    /// The JSON line form.
    pub fn to_json_record(&self) -> EventRecord {
        let ports = self.has_ports();
        let mut types = TypeFields::of(
            self.proto,
            self.pkt_flags,
            self.icmp_type,
            self.icmp_code,
            self.sport,
        );
        let agg = self.is_aggregate();
        if agg {
            // An aggregate has a source port only when it is a reflection
            // port, and no ICMP code or echo id.
            types.icmp_code = None;
            types.icmp_id = None;
            types.sctp_chunk = None;
            types.dccp_type = None;
        }
        EventRecord {
            ts: rfc3339_ns(self.ts_ns as i128),
            family: self.family,
            proto: Proto::from_number(self.proto),
            src: self.src,
            sport: (ports && !(agg && self.sport == 0)).then_some(self.sport),
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
            icmp_type: types.icmp_type,
            icmp_code: types.icmp_code,
            icmp_id: types.icmp_id,
            sctp_chunk: types.sctp_chunk,
            dccp_type: types.dccp_type,
            fragment: self.pkt_flags & PKT_FRAGMENT != 0,
            vlan: self.pkt_flags & PKT_VLAN != 0,
            dark: line::Dark::from_pkt_flags(self.pkt_flags),
            aggregate: agg,
            src_prefix: self.src_prefix(),
            dst_prefix: self.dst_prefix(),
            count: self.count,
            origin: Default::default(),
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
    /// The line is not UTF-8 text.
    #[error("line {line}: not UTF-8 text ({source})")]
    NotUtf8 {
        line: usize,
        #[source]
        source: std::str::Utf8Error,
    },
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
        pkt_flags |= line::Dark::pkt_flags(r.dark);
        if r.aggregate {
            pkt_flags |= PKT_AGGREGATE;
            // A source without a prefix: every packet came from it.
            if r.src.is_some() && r.src_prefix.is_none() {
                pkt_flags |= PKT_AGG_ONE_SOURCE;
            }
            if r.dst.is_some() && r.dst_prefix.is_some() {
                pkt_flags |= PKT_AGG_DST_PREFIX;
            }
        }
        if r.count == 0 {
            return Err(field(
                "count 0: a record stands for at least one packet".into(),
            ));
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
            icmp_type: match proto {
                IPPROTO_SCTP => r.sctp_chunk,
                IPPROTO_DCCP => r.dccp_type,
                _ => r.icmp_type,
            }
            .unwrap_or(0),
            icmp_code: r.icmp_code.unwrap_or(0),
            pkt_flags,
            count: r.count,
        })
    }
}

/// What [`read_lines`] found: usable records, bad lines (counted, the
/// first one's reason kept) and blank lines.
#[derive(Debug, Default)]
pub struct LinesRead {
    pub ok: u64,
    pub bad: u64,
    pub first_bad: Option<String>,
}

impl LinesRead {
    /// The one-sentence error for input that had lines but none usable.
    pub fn none_usable(&self, what: &str) -> Option<String> {
        (self.ok == 0 && self.bad > 0).then(|| {
            format!(
                "{what} has {} lines but none is an event (first: {})",
                self.bad,
                self.first_bad.as_deref().unwrap_or("?")
            )
        })
    }
}

/// Reads event JSON lines, calling `f` per record (with the line's
/// interface name, if it has one). Blank lines are skipped; a bad line —
/// not UTF-8, not JSON, a field out of its domain — is counted and passed
/// to `bad`, never fatal. Only an I/O error ends the read.
pub fn read_lines<R: BufRead>(
    mut reader: R,
    mut f: impl FnMut(Record, Option<&str>),
    mut bad: impl FnMut(&LineError),
) -> std::io::Result<LinesRead> {
    let mut read = LinesRead::default();
    let mut buf = Vec::with_capacity(512);
    let mut line_no = 0usize;
    loop {
        buf.clear();
        if reader.read_until(b'\n', &mut buf)? == 0 {
            break;
        }
        line_no += 1;
        let rec = std::str::from_utf8(&buf)
            .map_err(|source| LineError::NotUtf8 {
                line: line_no,
                source,
            })
            .and_then(|text| {
                let trimmed = text.trim();
                if trimmed.is_empty() {
                    return Ok(None);
                }
                let r = serde_json::from_str::<EventRecord>(trimmed).map_err(|source| {
                    LineError::Json {
                        line: line_no,
                        source,
                    }
                })?;
                Record::try_from((&r, line_no)).map(|rec| Some((rec, r.iface)))
            });
        match rec {
            Ok(None) => {}
            Ok(Some((r, iface))) => {
                read.ok += 1;
                f(r, iface.as_deref())
            }
            Err(e) => {
                read.bad += 1;
                read.first_bad.get_or_insert_with(|| e.to_string());
                bad(&e)
            }
        }
    }
    Ok(read)
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

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"{"ts":"2026-11-23T17:00:51.123456789Z","family":4,"proto":"tcp","src":"198.18.0.2","sport":1,"dst":"198.18.1.2","dport":443,"flags":"SYN","ttl":63,"len":58,"class":"unsolicited"}"#;

    fn read(input: &[u8]) -> (Vec<Record>, LinesRead, Vec<String>) {
        let mut recs = Vec::new();
        let mut errors = Vec::new();
        let r = read_lines(input, |r, _| recs.push(r), |e| errors.push(e.to_string()))
            .expect("no I/O error");
        (recs, r, errors)
    }

    #[test]
    fn a_line_that_is_not_utf8_is_a_bad_line_not_the_end() {
        let mut input = Vec::new();
        input.extend_from_slice(GOOD.as_bytes());
        input.extend_from_slice(b"\n\xff\xfe{\"ts\"\n\n");
        input.extend_from_slice(GOOD.as_bytes());
        let (recs, r, errors) = read(&input);
        assert_eq!(recs.len(), 2, "the lines around it are read");
        assert_eq!((r.ok, r.bad), (2, 1));
        assert!(errors[0].contains("line 2: not UTF-8"), "{errors:?}");
        assert_eq!(r.none_usable("x"), None);
    }

    #[test]
    fn lines_but_none_usable_is_one_sentence() {
        let (_, r, _) = read(b"hello\n{\"ts\":1}\n");
        let e = r.none_usable("`f.jsonl`").expect("an error");
        assert!(
            e.starts_with("`f.jsonl` has 2 lines but none is an event (first: line 1"),
            "{e}"
        );
        let (_, empty, _) = read(b"\n\n");
        assert_eq!(
            empty.none_usable("x"),
            None,
            "blank lines are not bad lines"
        );
    }

    #[test]
    fn proto_may_be_a_name_a_number_or_a_number_in_a_string() {
        for (proto, want) in [
            ("\"tcp\"", 6),
            ("\"TCP\"", 6),
            ("162", 162),
            ("\"162\"", 162),
            ("\"ipv6-icmp\"", 58),
        ] {
            let line = GOOD.replace("\"tcp\"", proto);
            let (recs, r, errors) = read(line.as_bytes());
            assert_eq!(r.ok, 1, "{proto}: {errors:?}");
            assert_eq!(recs[0].proto, want, "{proto}");
        }
        for bad in ["\"gre?\"", "\"300\"", "300", "-1"] {
            let line = GOOD.replace("\"tcp\"", bad);
            assert_eq!(read(line.as_bytes()).1.bad, 1, "{bad} is a bad line");
        }
    }
}
