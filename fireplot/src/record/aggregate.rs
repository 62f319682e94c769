//! A `Record` from a kernel aggregate (`fireplot_common::agg`): the
//! packets of one second, source prefix, destination and vector, as one
//! weighted record.

use fireplot_common::{
    agg::{AggKey, AggValue},
    event::{PKT_AGGREGATE, PKT_AGG_DST_PREFIX, PKT_AGG_ONE_SOURCE, PKT_FRAGMENT},
    proto::{IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_TCP, TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN},
    vector::{tcp_vector, VECTOR_ACK, VECTOR_RST, VECTOR_SYN, VECTOR_SYN_ACK},
};

use super::Record;

impl Record {
    /// From a kernel aggregate (its counts summed over the CPUs), with the
    /// monotonic→wall offset. It stands at the middle of its second, so
    /// its dot is within half a second of each of its packets.
    /// When every packet came from one source, the record names that
    /// source exactly (`PKT_AGG_ONE_SOURCE`); else the key's prefix. The
    /// destination is the key's (its /24 or /64 with `PKT_AGG_DST_PREFIX`
    /// from the coarse table); `sport` the reflection port or 0; the TCP
    /// flags those of its packets OR-ed (one flag class: the key's), the
    /// ICMP type the key's; `len` the mean frame length, rounded, so that
    /// bytes ≈ `len` × `count`.
    pub fn from_aggregate(k: &AggKey, v: &AggValue, wall_offset_ns: i128) -> Record {
        let one = v.mixed == 0;
        let src = if one {
            v.src_addr(k.family)
        } else if k.prefix == 0 {
            None
        } else {
            k.src_addr()
        };
        let packets = v.packets.max(1);
        let icmp = matches!(k.proto, IPPROTO_ICMP | IPPROTO_ICMPV6) && k.fragment == 0;
        let mut pkt_flags = PKT_AGGREGATE;
        if one {
            pkt_flags |= PKT_AGG_ONE_SOURCE;
        }
        if k.dst_prefix != 0 {
            pkt_flags |= PKT_AGG_DST_PREFIX;
        }
        if k.fragment != 0 {
            pkt_flags |= PKT_FRAGMENT;
        }
        Record {
            ts_ns: (k.sec as i128 * 1_000_000_000 + 500_000_000 + wall_offset_ns) as i64,
            family: k.family,
            proto: k.proto,
            src,
            dst: k.dst_addr(),
            sport: k.sport,
            dport: k.dport,
            tcp_flags: tcp_flags(k, v.tcp_flags),
            ttl: 0,
            len: ((v.bytes + packets / 2) / packets).min(u16::MAX as u64) as u16,
            class: k.class,
            ifindex: k.ifindex,
            ip_id: 0,
            tcp_seq: 0,
            tcp_window: 0,
            icmp_type: if icmp { k.vector } else { 0 },
            icmp_code: 0,
            pkt_flags,
            count: packets.min(u32::MAX as u64) as u32,
        }
    }
}

/// The TCP flags of an aggregate: its packets' flags OR-ed, unless that
/// mix falls in another flag class than the key's (SYN|FIN and FIN|ACK are
/// both "other", their OR a SYN-ACK): then the class's own flags, so the
/// record's vector is the kernel's.
fn tcp_flags(k: &AggKey, ored: u8) -> u8 {
    if k.proto != IPPROTO_TCP || k.fragment != 0 || tcp_vector(ored) == k.vector {
        return ored;
    }
    match k.vector {
        VECTOR_SYN => TCP_SYN,
        VECTOR_SYN_ACK => TCP_SYN | TCP_ACK,
        VECTOR_ACK => TCP_ACK,
        VECTOR_RST => TCP_RST,
        _ => TCP_FIN,
    }
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use fireplot_common::{
        agg::{AggKey, AggValue, DST_PREFIX_V4, DST_PREFIX_V6, PREFIX_V4},
        event::Class,
        proto::{FAMILY_V4, FAMILY_V6, IPPROTO_TCP, IPPROTO_UDP, TCP_ACK, TCP_PSH, TCP_SYN},
        vector::VECTOR_TCP_OTHER,
    };

    use super::*;
    use crate::record::line::EventRecord;

    fn v4_words(a: [u8; 4]) -> [u64; 2] {
        [u64::from(u32::from_le_bytes(a)), 0]
    }

    fn v6_words(a: &str) -> [u64; 2] {
        let o = a.parse::<std::net::Ipv6Addr>().unwrap().octets();
        [
            u64::from_le_bytes(o[..8].try_into().unwrap()),
            u64::from_le_bytes(o[8..].try_into().unwrap()),
        ]
    }

    /// 3 packets of 1,001 bytes from 198.19.7.0/24 (two sources) to
    /// 198.18.1.6, second 1,800,000,000.
    fn agg(proto: u8, dport: u16) -> (AggKey, AggValue) {
        let k = AggKey {
            src: v4_words([198, 19, 7, 0]),
            dst: v4_words([198, 18, 1, 6]),
            sec: 1_800_000_000,
            ifindex: 2,
            dport,
            family: FAMILY_V4,
            proto,
            class: Class::Unsolicited as u8,
            prefix: PREFIX_V4,
            ..AggKey::default()
        };
        let v = AggValue {
            packets: 3,
            bytes: 3 * 1001 + 2,
            src: v4_words([198, 19, 7, 9]),
            mixed: 1,
            ..AggValue::default()
        };
        (k, v)
    }

    fn round_trip(r: &Record) -> EventRecord {
        let line = r.to_json_record();
        let parsed: EventRecord = serde_json::from_str(&line.to_json()).expect("a line");
        assert_eq!(
            &Record::try_from((&parsed, 1)).expect("a record"),
            r,
            "the line reads back as the same record: {}",
            line.to_json()
        );
        line
    }

    #[test]
    fn a_reflection_aggregate_names_its_victim_port_and_mean_length() {
        let (mut k, v) = agg(IPPROTO_UDP, 40000);
        k.sport = 53;
        let r = Record::from_aggregate(&k, &v, 0);
        assert_eq!(r.dst, Some("198.18.1.6".parse::<IpAddr>().unwrap()));
        assert_eq!(r.src_label(), "198.19.7.0/24");
        assert_eq!((r.sport, r.dport, r.count), (53, 40000, 3));
        assert_eq!(r.len, 1002, "3,005 bytes / 3 packets, rounded");
        assert_eq!(r.dst_prefix(), None);
        let line = round_trip(&r);
        assert_eq!(
            (line.dst, line.sport, line.len, line.fragment),
            (r.dst, Some(53), 1002, false)
        );
        // From any other source port the kernel keeps 0: no `sport`.
        k.sport = 0;
        let line = round_trip(&Record::from_aggregate(&k, &v, 0));
        assert_eq!(line.sport, None);
    }

    #[test]
    fn tcp_icmp_and_fragment_aggregates_keep_their_vector() {
        let (mut k, mut v) = agg(IPPROTO_TCP, 80);
        k.vector = VECTOR_SYN;
        v.tcp_flags = TCP_SYN;
        let syn = Record::from_aggregate(&k, &v, 0);
        assert_eq!((syn.tcp_flags, syn.sport), (TCP_SYN, 0));
        assert_eq!(round_trip(&syn).flags, "SYN");
        k.vector = VECTOR_ACK;
        v.tcp_flags = TCP_ACK | TCP_PSH;
        assert_eq!(
            round_trip(&Record::from_aggregate(&k, &v, 0)).flags,
            "PSH|ACK"
        );
        // SYN|FIN and FIN|ACK are both "other"; their OR is not a SYN-ACK.
        k.vector = VECTOR_TCP_OTHER;
        v.tcp_flags = TCP_SYN | TCP_FIN | TCP_ACK;
        let other = Record::from_aggregate(&k, &v, 0);
        assert_eq!(tcp_vector(other.tcp_flags), VECTOR_TCP_OTHER);

        let (mut k, v) = agg(1, 0);
        k.vector = 8;
        let echo = Record::from_aggregate(&k, &v, 0);
        assert_eq!(echo.icmp_type, 8);
        let line = round_trip(&echo);
        assert_eq!(
            (line.icmp_type, line.icmp_code, line.icmp_id),
            (Some(8), None, None)
        );

        let (mut k, v) = agg(IPPROTO_UDP, 0);
        k.fragment = 1;
        let frag = Record::from_aggregate(&k, &v, 0);
        assert_ne!(frag.pkt_flags & PKT_FRAGMENT, 0);
        assert!(!frag.has_ports());
        assert!(round_trip(&frag).fragment);
    }

    #[test]
    fn a_coarse_aggregate_has_a_destination_prefix_and_no_source() {
        let (mut k, v) = agg(IPPROTO_TCP, 80);
        k.src = [0; 2];
        k.prefix = 0;
        k.dst = v4_words([198, 18, 1, 0]);
        k.dst_prefix = DST_PREFIX_V4;
        let r = Record::from_aggregate(&k, &v, 0);
        assert_eq!(r.src, None);
        assert_eq!(r.src_label(), "any");
        assert_eq!(r.dst, Some("198.18.1.0".parse::<IpAddr>().unwrap()));
        assert_eq!(r.dst_prefix(), Some(24));
        assert_eq!(round_trip(&r).dst_prefix, Some(24));

        k.family = FAMILY_V6;
        k.dst = v6_words("2001:db8:1::");
        k.dst_prefix = DST_PREFIX_V6;
        let r = Record::from_aggregate(&k, &v, 0);
        assert_eq!(r.dst, Some("2001:db8:1::".parse::<IpAddr>().unwrap()));
        assert_eq!(r.dst_prefix(), Some(64));
        round_trip(&r);
    }
}
