//! Aggregates: what the classifier keeps instead of events when a flood is
//! past the per-source or per-target limit, the event budget or the ring
//! buffer's room. One entry of the per-CPU `AGGREGATES` hash counts the
//! packets and bytes of one (interface, family, protocol, class, source
//! /24 or /48, destination address, destination port, reflection source
//! port, vector, second): enough to size an attack per destination and
//! vector without the events. Userspace drains the seconds that are over.
//!
//! The key is bounded by design: the source is a prefix, the source port
//! is kept only when it is a reflection port (`vector::REFLECTION`, else 0:
//! a flood's random ports do not multiply entries), the vector is a class
//! (5 TCP flag classes, 256 ICMP types). When `AGGREGATES` is full the
//! packet goes to `AGG_COARSE` with no source (`prefix` 0) and its
//! destination cut to its /24 or /64 (`dst_prefix`), so a carpet bombing
//! of a whole /24 from everywhere still fits; when that is full too the
//! packet is counted in `agg_lost`. Every packet is in exactly one of: an
//! event, one aggregate, `agg_lost`.

use crate::assert_size;

/// Source prefix length of IPv4 aggregates.
pub const PREFIX_V4: u8 = 24;
/// Source prefix length of IPv6 aggregates.
pub const PREFIX_V6: u8 = 48;
/// Destination prefix length of IPv4 aggregates in `AGG_COARSE`.
pub const DST_PREFIX_V4: u8 = 24;
/// Destination prefix length of IPv6 aggregates in `AGG_COARSE`.
pub const DST_PREFIX_V6: u8 = 64;

/// Key of one aggregate, 56 bytes, no implicit padding. Addresses are two
/// native-endian words in packet byte order (IPv4: the first word's low 4
/// bytes), as in the kernel's `Probe`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub struct AggKey {
    /// Source prefix, masked to `prefix` bits; zero when `prefix` is 0
    /// (`AGG_COARSE`: any source).
    pub src: [u64; 2],
    /// Destination address; its /24 or /64 when `dst_prefix` is not 0
    /// (`AGG_COARSE`).
    pub dst: [u64; 2],
    /// Second of the kernel's monotonic clock (`replay_ns` in a replay).
    pub sec: u64,
    pub ifindex: u32,
    /// UDP source port when it is a reflection port
    /// (`vector::is_reflection_port`), else 0.
    pub sport: u16,
    /// Destination port (`proto::has_ports`; 0 for other protocols and
    /// fragments).
    pub dport: u16,
    pub family: u8,
    pub proto: u8,
    /// A `Class` value (unsolicited, or malformed when those are sent).
    pub class: u8,
    /// `PREFIX_V4`, `PREFIX_V6`, or 0 (any source).
    pub prefix: u8,
    /// TCP: the flag class (`vector::tcp_vector`, 1..=5); ICMP and
    /// ICMPv6: the type; 0 for fragments and other protocols.
    pub vector: u8,
    /// 1 for non-first fragments (no L4 header: no ports, no vector).
    /// Its own byte, because an ICMP type takes all 256 values of `vector`.
    pub fragment: u8,
    /// 0: `dst` is exact; `DST_PREFIX_V4` or `DST_PREFIX_V6`: `dst` is
    /// that prefix of the destinations (`AGG_COARSE`).
    pub dst_prefix: u8,
    pub _pad: u8,
}
assert_size!(AggKey, 56);

/// One CPU's counts of one aggregate.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct AggValue {
    pub packets: u64,
    /// Frame bytes as seen by XDP.
    pub bytes: u64,
    /// The exact source of the first packet (words as in `AggKey::src`).
    pub src: [u64; 2],
    /// TCP flags seen, OR-ed.
    pub tcp_flags: u8,
    /// 1 once a packet came from another source than `src`: the aggregate
    /// is not one source's.
    pub mixed: u8,
    pub _pad: [u8; 6],
}
assert_size!(AggValue, 40);

/// The mask of a source address's words for its family's prefix
/// (little-endian words of packet-order bytes).
#[inline(always)]
pub const fn prefix_mask(family: u8) -> [u64; 2] {
    match family {
        crate::proto::FAMILY_V4 => [0x00FF_FFFF, 0],
        crate::proto::FAMILY_V6 => [0x0000_FFFF_FFFF_FFFF, 0],
        _ => [0, 0],
    }
}

/// The mask of a destination address's words for its family's
/// `DST_PREFIX_*` (words as in [`prefix_mask`]).
#[inline(always)]
pub const fn dst_prefix_mask(family: u8) -> [u64; 2] {
    match family {
        crate::proto::FAMILY_V4 => [0x00FF_FFFF, 0],
        crate::proto::FAMILY_V6 => [u64::MAX, 0],
        _ => [0, 0],
    }
}

#[cfg(feature = "user")]
mod user {
    use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};

    use super::{AggKey, AggValue};
    use crate::proto::{FAMILY_V4, FAMILY_V6};

    // SAFETY: repr(C), no implicit padding (sizes asserted), any bit pattern valid.
    unsafe impl aya::Pod for AggKey {}
    // SAFETY: as above.
    unsafe impl aya::Pod for AggValue {}

    impl AggKey {
        /// The source prefix's address (its network; `prefix` says how
        /// long), if the key is IPv4 or IPv6.
        pub fn src_addr(&self) -> Option<IpAddr> {
            addr(self.family, self.src)
        }

        /// The destination (or its network, when `dst_prefix` is not 0).
        pub fn dst_addr(&self) -> Option<IpAddr> {
            addr(self.family, self.dst)
        }
    }

    impl AggValue {
        /// The exact source of the first packet, read in the key's family.
        pub fn src_addr(&self, family: u8) -> Option<IpAddr> {
            addr(family, self.src)
        }
    }

    /// An address from two native-endian words of packet-order bytes.
    fn addr(family: u8, words: [u64; 2]) -> Option<IpAddr> {
        let mut bytes = [0u8; 16];
        bytes[..8].copy_from_slice(&words[0].to_le_bytes());
        bytes[8..].copy_from_slice(&words[1].to_le_bytes());
        match family {
            FAMILY_V4 => Some(IpAddr::V4(Ipv4Addr::new(
                bytes[0], bytes[1], bytes[2], bytes[3],
            ))),
            FAMILY_V6 => Some(IpAddr::V6(Ipv6Addr::from(bytes))),
            _ => None,
        }
    }
}
