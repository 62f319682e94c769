//! Layout of the per-CPU counter arrays.
//!
//! `COUNTERS` holds one `u64` per (class, family, protocol) followed by the
//! loss and health counters; `PORT_HITS` holds one `u64` per destination port
//! of unsolicited packets of each protocol with ports, per family, in chunks
//! of `PORT_CHUNK` ports (a per-CPU array value may not exceed 32 KiB).

use crate::event::Class;
use crate::proto::{
    FAMILY_V4, FAMILY_V6, IPPROTO_DCCP, IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_SCTP, IPPROTO_TCP,
    IPPROTO_UDP, IPPROTO_UDPLITE,
};

/// Family slots of the class counters: IPv4, IPv6, none.
pub const FAMILY_SLOTS: usize = 3;
/// Protocol slots of the class counters: TCP, UDP, ICMP, ICMPv6, SCTP,
/// UDP-Lite, DCCP, other.
pub const PROTO_SLOTS: usize = 8;
/// Names of the protocol slots (`proto::PROTO_NAMES`' names, and "other").
pub const PROTO_SLOT_NAMES: [&str; PROTO_SLOTS] = [
    "tcp", "udp", "icmp", "icmpv6", "sctp", "udplite", "dccp", "other",
];
/// Names of the family slots.
pub const FAMILY_SLOT_NAMES: [&str; FAMILY_SLOTS] = ["ipv4", "ipv6", "none"];

/// Number of (class, family, protocol) counters.
pub const CLASS_COUNTERS: usize = Class::COUNT * FAMILY_SLOTS * PROTO_SLOTS;

/// Health and loss counters, after the class counters.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Misc {
    /// Events written to the ring buffer.
    EventsSent = 0,
    /// Packets not sent as events because the ring buffer was full
    /// (aggregated instead, or `agg_lost`).
    RingFull = 1,
    /// Packets not sent as events because their source was over the
    /// per-source rate limit (aggregated instead, or `agg_lost`).
    Suppressed = 2,
    /// Egress could not insert or refresh a flow.
    FlowInsertFailed = 3,
    /// Flows created by the egress recorder.
    FlowsCreated = 4,
    /// Inbound non-first fragments (classified by addresses only).
    Fragments = 5,
    /// IPv6 extension-header chains longer than the walk bound.
    ExtHeaderOverflow = 6,
    /// Flow lookups the per-CPU cache could not answer (went to the shared table).
    CacheMisses = 7,
    /// Packets seen by the egress recorder.
    EgressPackets = 8,
    /// Egress could not record an inside address or port as live.
    LiveInsertFailed = 9,
    /// Packets counted in the aggregate table instead of sent one by one.
    Aggregated = 10,
    /// Packets not sent as events because their (destination, protocol,
    /// port) was over the target limit: a flood on one target.
    TargetLimited = 11,
    /// Packets not sent as events because the CPU's event budget was spent.
    OverBudget = 12,
    /// Aggregated packets whose source prefix could not get its own entry
    /// (the aggregate table was full): counted without their source.
    AggCoarse = 13,
    /// Packets lost: not sent as an event and no aggregate entry could be
    /// made, not even one without the source.
    AggLost = 14,
}

impl Misc {
    /// Number of misc counters.
    pub const COUNT: usize = 15;
    /// All misc counters in order.
    pub const ALL: [Misc; Misc::COUNT] = [
        Misc::EventsSent,
        Misc::RingFull,
        Misc::Suppressed,
        Misc::FlowInsertFailed,
        Misc::FlowsCreated,
        Misc::Fragments,
        Misc::ExtHeaderOverflow,
        Misc::CacheMisses,
        Misc::EgressPackets,
        Misc::LiveInsertFailed,
        Misc::Aggregated,
        Misc::TargetLimited,
        Misc::OverBudget,
        Misc::AggCoarse,
        Misc::AggLost,
    ];

    /// The name used in stats output.
    pub const fn name(self) -> &'static str {
        match self {
            Misc::EventsSent => "events_sent",
            Misc::RingFull => "ring_full",
            Misc::Suppressed => "suppressed",
            Misc::FlowInsertFailed => "flow_insert_failed",
            Misc::FlowsCreated => "flows_created",
            Misc::Fragments => "fragments",
            Misc::ExtHeaderOverflow => "ext_header_overflow",
            Misc::CacheMisses => "cache_misses",
            Misc::EgressPackets => "egress_packets",
            Misc::LiveInsertFailed => "live_insert_failed",
            Misc::Aggregated => "aggregated",
            Misc::TargetLimited => "target_limited",
            Misc::OverBudget => "over_budget",
            Misc::AggCoarse => "agg_coarse",
            Misc::AggLost => "agg_lost",
        }
    }

    /// Index in `COUNTERS`.
    pub const fn index(self) -> u32 {
        (CLASS_COUNTERS + self as usize) as u32
    }
}

/// Length of the `COUNTERS` array.
pub const COUNTERS_LEN: u32 = (CLASS_COUNTERS + Misc::COUNT) as u32;

/// Family slot of an event family.
#[inline(always)]
pub const fn family_slot(family: u8) -> usize {
    match family {
        FAMILY_V4 => 0,
        FAMILY_V6 => 1,
        _ => 2,
    }
}

/// Protocol slot of an IP protocol number.
#[inline(always)]
pub const fn proto_slot(proto: u8) -> usize {
    match proto {
        IPPROTO_TCP => 0,
        IPPROTO_UDP => 1,
        IPPROTO_ICMP => 2,
        IPPROTO_ICMPV6 => 3,
        IPPROTO_SCTP => 4,
        IPPROTO_UDPLITE => 5,
        IPPROTO_DCCP => 6,
        _ => 7,
    }
}

/// Index in `COUNTERS` of a class counter.
#[inline(always)]
pub const fn class_index(class: Class, family: u8, proto: u8) -> u32 {
    (((class as usize * FAMILY_SLOTS) + family_slot(family)) * PROTO_SLOTS + proto_slot(proto))
        as u32
}

/// Ports per `PORT_HITS` value.
pub const PORT_CHUNK: usize = 2048;
/// Port tables: IPv4/TCP, IPv4/UDP, IPv6/TCP, IPv6/UDP, then SCTP,
/// UDP-Lite and DCCP of IPv4 and of IPv6 (512 KiB per table and CPU).
pub const PORT_TABLES: usize = 10;
/// Number of entries of the `PORT_HITS` array.
pub const PORT_HITS_LEN: u32 = (PORT_TABLES * 65536 / PORT_CHUNK) as u32;
/// Names of the port tables.
pub const PORT_TABLE_NAMES: [(&str, &str); PORT_TABLES] = [
    ("ipv4", "tcp"),
    ("ipv4", "udp"),
    ("ipv6", "tcp"),
    ("ipv6", "udp"),
    ("ipv4", "sctp"),
    ("ipv4", "udplite"),
    ("ipv4", "dccp"),
    ("ipv6", "sctp"),
    ("ipv6", "udplite"),
    ("ipv6", "dccp"),
];

/// Port table of (family, proto), if ports of that pair are counted.
#[inline(always)]
pub const fn port_table(family: u8, proto: u8) -> Option<usize> {
    match (family, proto) {
        (FAMILY_V4, IPPROTO_TCP) => Some(0),
        (FAMILY_V4, IPPROTO_UDP) => Some(1),
        (FAMILY_V6, IPPROTO_TCP) => Some(2),
        (FAMILY_V6, IPPROTO_UDP) => Some(3),
        (FAMILY_V4, IPPROTO_SCTP) => Some(4),
        (FAMILY_V4, IPPROTO_UDPLITE) => Some(5),
        (FAMILY_V4, IPPROTO_DCCP) => Some(6),
        (FAMILY_V6, IPPROTO_SCTP) => Some(7),
        (FAMILY_V6, IPPROTO_UDPLITE) => Some(8),
        (FAMILY_V6, IPPROTO_DCCP) => Some(9),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{has_ports, proto_name};

    #[test]
    fn every_protocol_with_ports_has_a_port_table_per_family_and_its_own_slot() {
        for proto in 0..=255u8 {
            for (f, family) in [(FAMILY_V4, "ipv4"), (FAMILY_V6, "ipv6")] {
                let table = port_table(f, proto);
                assert_eq!(table.is_some(), has_ports(proto), "{proto}");
                if let Some(t) = table {
                    assert_eq!(PORT_TABLE_NAMES[t], (family, proto_name(proto).unwrap()));
                }
            }
            let slot = PROTO_SLOT_NAMES[proto_slot(proto)];
            assert_eq!(slot, proto_name(proto).unwrap_or("other"), "{proto}");
        }
    }
}
