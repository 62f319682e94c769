//! Event JSON lines (DESIGN §5): `ts`, `family`, `proto`, `src`, `sport`,
//! `dst`, `dport`, `flags`, `ttl`, `len`, `class`, plus fields for tool
//! fingerprints, ICMP, SCTP chunks and DCCP types. The same type reads the
//! lines back.

use std::net::IpAddr;

use chrono::{DateTime, SecondsFormat, Utc};
use fireplot_common::{
    event::{Class, Event, PKT_DARK_ADDR, PKT_DARK_PORT, PKT_FRAGMENT, PKT_VLAN},
    proto::{
        has_ports, proto_name, proto_named, IPPROTO_DCCP, IPPROTO_ICMP, IPPROTO_ICMPV6,
        IPPROTO_SCTP, IPPROTO_TCP, TCP_FLAG_NAMES,
    },
};
use serde::{Deserialize, Serialize};

/// An IP protocol as written in JSON: its name for those that have one
/// (`fireplot_common::proto::PROTO_NAMES`: tcp, udp, icmp, icmpv6, sctp,
/// udplite, dccp), else the number. Lines written before a protocol had a
/// name (`"proto": 132`) read the same.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Proto {
    Name(String),
    Number(u8),
}

impl Proto {
    pub fn from_number(p: u8) -> Proto {
        match proto_name(p) {
            Some(name) => Proto::Name(name.into()),
            None => Proto::Number(p),
        }
    }

    /// The protocol number, if the name is known. Names are read without
    /// regard to case, and a number written as a string ("162") is a number.
    pub fn number(&self) -> Option<u8> {
        match self {
            Proto::Number(n) => Some(*n),
            Proto::Name(s) => proto_named(s).or_else(|| s.trim().parse().ok()),
        }
    }

    /// As people read it: the name, else the number.
    pub fn label(p: u8) -> String {
        match proto_name(p) {
            Some(name) => name.into(),
            None => p.to_string(),
        }
    }
}

/// The type byte of an event (`Event::icmp_type`) as the JSON field of its
/// protocol: ICMP type, SCTP chunk or DCCP type. None for fragments (no L4
/// header) and for protocols without one.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TypeFields {
    pub icmp_type: Option<u8>,
    pub icmp_code: Option<u8>,
    /// The echo identifier of an ICMP echo request or reply.
    pub icmp_id: Option<u16>,
    pub sctp_chunk: Option<u8>,
    pub dccp_type: Option<u8>,
}

impl TypeFields {
    /// From an event's protocol, `PKT_*` bits, type, code and source port.
    pub fn of(proto: u8, pkt_flags: u8, ty: u8, code: u8, sport: u16) -> TypeFields {
        if pkt_flags & PKT_FRAGMENT != 0 {
            return TypeFields::default();
        }
        match proto {
            IPPROTO_ICMP | IPPROTO_ICMPV6 => TypeFields {
                icmp_type: Some(ty),
                icmp_code: Some(code),
                icmp_id: matches!(ty, 0 | 8 | 128 | 129).then_some(sport),
                ..TypeFields::default()
            },
            IPPROTO_SCTP => TypeFields {
                sctp_chunk: Some(ty),
                ..TypeFields::default()
            },
            IPPROTO_DCCP => TypeFields {
                dccp_type: Some(ty),
                ..TypeFields::default()
            },
            _ => TypeFields::default(),
        }
    }
}

/// One event as a JSON line.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EventRecord {
    /// RFC 3339, UTC, nanoseconds.
    pub ts: String,
    pub family: u8,
    pub proto: Proto,
    pub src: Option<IpAddr>,
    /// Source port of TCP, UDP, SCTP, UDP-Lite and DCCP; null for other
    /// protocols.
    pub sport: Option<u16>,
    pub dst: Option<IpAddr>,
    pub dport: Option<u16>,
    /// TCP flags joined with `|` ("SYN", "FIN|PSH|URG"); "" for none or not TCP.
    pub flags: String,
    pub ttl: u8,
    /// Frame length in bytes (of an aggregate: the mean).
    pub len: u16,
    pub class: String,
    #[serde(default)]
    pub ifindex: u32,
    /// Interface name, when the writer knew it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iface: Option<String>,
    #[serde(default)]
    pub ip_id: u16,
    #[serde(default)]
    pub tcp_seq: u32,
    #[serde(default)]
    pub tcp_window: u16,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub icmp_type: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub icmp_code: Option<u8>,
    /// Echo identifier of ICMP echo request/reply.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub icmp_id: Option<u16>,
    /// SCTP: type of the packet's first chunk (RFC 9260 §3.2; 1 INIT is a
    /// probe, 2 INIT-ACK and 6 ABORT are answers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sctp_chunk: Option<u8>,
    /// DCCP: packet type (RFC 4340 §5.1; 0 Request is a probe, 1 Response
    /// and 7 Reset are answers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dccp_type: Option<u8>,
    #[serde(default)]
    pub fragment: bool,
    #[serde(default)]
    pub vlan: bool,
    /// The destination never answered anyone since the sensor started:
    /// `addr` (it never sent a packet out) or `port` (the address did, this
    /// port never did). Absent: it answered, or marking was off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dark: Option<Dark>,
    /// An aggregate: `count` packets of one second from the source prefix
    /// `src`/`src_prefix` (no `src`: any source) to `dst` (or the network
    /// `dst`/`dst_prefix`) and `dport`, of one vector (TCP flag class,
    /// ICMP type, reflection `sport`, `fragment`), sent as counts because
    /// a flood was past the kernel's limits; `len` is their mean length.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub aggregate: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub src_prefix: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dst_prefix: Option<u8>,
    /// Packets this line stands for (1 for an event).
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub count: u32,
    /// Who the source is: `country`, `asn`, `as_org`, `tags` (with
    /// --geoip, --asn, --tag; each absent when unknown).
    #[serde(default, flatten)]
    pub origin: super::Origin,
}

fn one() -> u32 {
    1
}

fn is_one(n: &u32) -> bool {
    *n == 1
}

/// What of a destination was dark (DESIGN §5, TRW's "failed connection").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Dark {
    Addr,
    Port,
}

impl Dark {
    /// From `PKT_*` bits.
    pub fn from_pkt_flags(f: u8) -> Option<Dark> {
        if f & PKT_DARK_ADDR != 0 {
            Some(Dark::Addr)
        } else if f & PKT_DARK_PORT != 0 {
            Some(Dark::Port)
        } else {
            None
        }
    }

    /// As `PKT_*` bits.
    pub fn pkt_flags(d: Option<Dark>) -> u8 {
        match d {
            Some(Dark::Addr) => PKT_DARK_ADDR,
            Some(Dark::Port) => PKT_DARK_PORT,
            None => 0,
        }
    }
}

/// "SYN|ACK" style names of a TCP flag byte; "" for none.
pub fn flags_string(flags: u8) -> String {
    let mut out = String::new();
    for (bit, name) in TCP_FLAG_NAMES.iter().enumerate() {
        if flags & (1 << bit) != 0 {
            if !out.is_empty() {
                out.push('|');
            }
            out.push_str(name);
        }
    }
    out
}

/// Parses a flags string back into the flag byte.
pub fn parse_flags(s: &str) -> Option<u8> {
    if s.is_empty() {
        return Some(0);
    }
    let mut flags = 0u8;
    for part in s.split('|') {
        let bit = TCP_FLAG_NAMES
            .iter()
            .position(|n| n.eq_ignore_ascii_case(part.trim()))?;
        flags |= 1 << bit;
    }
    Some(flags)
}

/// RFC 3339 UTC with nanoseconds for a Unix time in nanoseconds.
pub fn rfc3339_ns(unix_ns: i128) -> String {
    let secs = unix_ns.div_euclid(1_000_000_000) as i64;
    let nanos = unix_ns.rem_euclid(1_000_000_000) as u32;
    match DateTime::<Utc>::from_timestamp(secs, nanos) {
        Some(t) => t.to_rfc3339_opts(SecondsFormat::Nanos, true),
        None => "1970-01-01T00:00:00.000000000Z".into(),
    }
}

impl EventRecord {
    /// Converts a kernel event; `wall_offset_ns` turns its monotonic time into Unix time.
    pub fn from_event(ev: &Event, wall_offset_ns: i128) -> EventRecord {
        let ports = has_ports(ev.proto) && ev.pkt_flags & PKT_FRAGMENT == 0;
        let types = TypeFields::of(ev.proto, ev.pkt_flags, ev.icmp_type, ev.icmp_code, ev.sport);
        EventRecord {
            ts: rfc3339_ns(ev.ts_ns as i128 + wall_offset_ns),
            family: ev.family,
            proto: Proto::from_number(ev.proto),
            src: ev.src_addr(),
            sport: ports.then_some(ev.sport),
            dst: ev.dst_addr(),
            dport: ports.then_some(ev.dport),
            flags: if ev.proto == IPPROTO_TCP {
                flags_string(ev.tcp_flags)
            } else {
                String::new()
            },
            ttl: ev.ttl,
            len: ev.pkt_len,
            class: Class::from_u8(ev.class)
                .map(Class::name)
                .unwrap_or("unknown")
                .to_string(),
            ifindex: ev.ifindex,
            iface: None,
            ip_id: ev.ip_id,
            tcp_seq: ev.tcp_seq,
            tcp_window: ev.tcp_window,
            icmp_type: types.icmp_type,
            icmp_code: types.icmp_code,
            icmp_id: types.icmp_id,
            sctp_chunk: types.sctp_chunk,
            dccp_type: types.dccp_type,
            fragment: ev.pkt_flags & PKT_FRAGMENT != 0,
            vlan: ev.pkt_flags & PKT_VLAN != 0,
            dark: Dark::from_pkt_flags(ev.pkt_flags),
            aggregate: false,
            src_prefix: None,
            dst_prefix: None,
            count: 1,
            origin: Default::default(),
        }
    }

    /// The JSON line (without newline).
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("event records always serialize")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fireplot_common::proto::{FAMILY_V4, FAMILY_V6, TCP_FIN, TCP_PSH, TCP_SYN, TCP_URG};

    fn v4_syn() -> Event {
        let mut ev = Event::zeroed();
        ev.ts_ns = 5_000_000_123;
        ev.src[..4].copy_from_slice(&[198, 18, 0, 2]);
        ev.dst[..4].copy_from_slice(&[198, 18, 1, 2]);
        ev.family = FAMILY_V4;
        ev.proto = IPPROTO_TCP;
        ev.sport = 40000;
        ev.dport = 443;
        ev.tcp_flags = TCP_SYN;
        ev.ttl = 63;
        ev.pkt_len = 60;
        ev.class = Class::Unsolicited as u8;
        ev
    }

    #[test]
    fn flags_names_round_trip() {
        assert_eq!(flags_string(0), "");
        assert_eq!(flags_string(TCP_SYN), "SYN");
        assert_eq!(flags_string(TCP_FIN | TCP_PSH | TCP_URG), "FIN|PSH|URG");
        for f in 0..=255u8 {
            assert_eq!(parse_flags(&flags_string(f)), Some(f));
        }
        assert_eq!(parse_flags("SYN|BOGUS"), None);
    }

    #[test]
    fn timestamps_are_rfc3339_utc_ns() {
        assert_eq!(rfc3339_ns(0), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(
            rfc3339_ns(1_800_000_000_123_456_789),
            "2027-01-15T08:00:00.123456789Z"
        );
    }

    #[test]
    fn v4_syn_has_design_fields() {
        let rec = EventRecord::from_event(&v4_syn(), 1_000_000_000_000_000_000);
        let v: serde_json::Value = serde_json::from_str(&rec.to_json()).unwrap();
        assert_eq!(v["ts"], "2001-09-09T01:46:45.000000123Z");
        assert_eq!(v["family"], 4);
        assert_eq!(v["proto"], "tcp");
        assert_eq!(v["src"], "198.18.0.2");
        assert_eq!(v["sport"], 40000);
        assert_eq!(v["dst"], "198.18.1.2");
        assert_eq!(v["dport"], 443);
        assert_eq!(v["flags"], "SYN");
        assert_eq!(v["ttl"], 63);
        assert_eq!(v["len"], 60);
        assert_eq!(v["class"], "unsolicited");
        let back: EventRecord = serde_json::from_str(&rec.to_json()).unwrap();
        assert_eq!(back, rec);
        assert!(v.get("dark").is_none(), "absent when it answered");
    }

    #[test]
    fn dark_is_written_and_read_back() {
        for (bit, name) in [(PKT_DARK_ADDR, "addr"), (PKT_DARK_PORT, "port")] {
            let mut ev = v4_syn();
            ev.pkt_flags = bit;
            let rec = EventRecord::from_event(&ev, 0);
            let v: serde_json::Value = serde_json::from_str(&rec.to_json()).unwrap();
            assert_eq!(v["dark"], name);
            let r = crate::record::Record::try_from((&rec, 1)).unwrap();
            assert_eq!(r.pkt_flags, bit);
            assert!(r.dark());
        }
        let line = r#"{"ts":"2026-11-23T17:00:51Z","family":4,"proto":"tcp","src":"198.18.0.2","sport":1,"dst":"198.18.1.2","dport":2,"flags":"SYN","ttl":1,"len":60,"class":"unsolicited","dark":"moon"}"#;
        assert!(serde_json::from_str::<EventRecord>(line).is_err());
    }

    #[test]
    fn icmpv6_and_other_protocols() {
        let mut ev = v4_syn();
        ev.family = FAMILY_V6;
        ev.src = "2001:db8::2"
            .parse::<std::net::Ipv6Addr>()
            .unwrap()
            .octets();
        ev.dst = "2001:db8:1::2"
            .parse::<std::net::Ipv6Addr>()
            .unwrap()
            .octets();
        ev.proto = IPPROTO_ICMPV6;
        ev.icmp_type = 128;
        ev.sport = 77;
        ev.dport = 0;
        let v: serde_json::Value =
            serde_json::from_str(&EventRecord::from_event(&ev, 0).to_json()).unwrap();
        assert_eq!(v["proto"], "icmpv6");
        assert_eq!(v["src"], "2001:db8::2");
        assert_eq!(v["sport"], serde_json::Value::Null);
        assert_eq!(v["icmp_type"], 128);
        assert_eq!(v["icmp_id"], 77);
        assert_eq!(v["flags"], "");
        ev.proto = 47;
        let v: serde_json::Value =
            serde_json::from_str(&EventRecord::from_event(&ev, 0).to_json()).unwrap();
        assert_eq!(v["proto"], 47);
        assert!(v.get("icmp_type").is_none());
    }

    /// SCTP, UDP-Lite and DCCP: named, with their ports, and SCTP's
    /// chunk and DCCP's type in fields of their own, read back the same.
    #[test]
    fn port_protocols_have_ports_names_and_types() {
        for (proto, name, ty, field) in [
            (132, "sctp", 1, Some("sctp_chunk")),
            (136, "udplite", 0, None),
            (33, "dccp", 0, Some("dccp_type")),
        ] {
            let mut ev = v4_syn();
            ev.proto = proto;
            ev.tcp_flags = 0;
            ev.icmp_type = ty;
            let rec = EventRecord::from_event(&ev, 0);
            let v: serde_json::Value = serde_json::from_str(&rec.to_json()).unwrap();
            assert_eq!(v["proto"], name);
            assert_eq!(
                (v["sport"].clone(), v["dport"].clone()),
                (40000.into(), 443.into())
            );
            assert!(v.get("icmp_type").is_none(), "{name}: not ICMP");
            for f in ["sctp_chunk", "dccp_type"] {
                let want = (Some(f) == field).then_some(ty);
                assert_eq!(
                    v.get(f).and_then(|x| x.as_u64()),
                    want.map(u64::from),
                    "{name} {f}"
                );
            }
            let r = crate::record::Record::try_from((&rec, 1)).unwrap();
            assert_eq!(
                (r.proto, r.sport, r.dport, r.icmp_type),
                (proto, 40000, 443, ty)
            );
            assert!(r.has_ports());
            assert_eq!(
                r.to_json_record(),
                rec,
                "{name}: the record writes the same line"
            );
            // A fragment has no L4 header: no ports, no type.
            ev.pkt_flags = PKT_FRAGMENT;
            let v: serde_json::Value =
                serde_json::from_str(&EventRecord::from_event(&ev, 0).to_json()).unwrap();
            assert_eq!(v["sport"], serde_json::Value::Null);
            assert!(v.get("sctp_chunk").is_none() && v.get("dccp_type").is_none());
        }
        // Lines written when SCTP was a number read the same.
        let old = r#"{"ts":"2026-11-23T17:00:51Z","family":4,"proto":132,"src":"198.18.0.2","sport":null,"dst":"198.18.1.2","dport":null,"flags":"","ttl":1,"len":60,"class":"unsolicited"}"#;
        let rec: EventRecord = serde_json::from_str(old).unwrap();
        let r = crate::record::Record::try_from((&rec, 1)).unwrap();
        assert_eq!((r.proto, r.dport), (132, 0));
    }

    #[test]
    fn decode_rejects_short_records() {
        let ev = v4_syn();
        // SAFETY: Event is Pod; viewing it as bytes is sound.
        let bytes = unsafe {
            std::slice::from_raw_parts(
                (&ev as *const Event).cast::<u8>(),
                std::mem::size_of::<Event>(),
            )
        };
        assert_eq!(Event::from_bytes(bytes), Some(ev));
        assert_eq!(Event::from_bytes(&bytes[..71]), None);
    }
}
