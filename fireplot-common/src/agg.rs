//! Aggregates: what the classifier keeps instead of events when a flood is
//! past the per-source or per-target limit, the event budget or the ring
//! buffer's room. One entry of the per-CPU `AGGREGATES` hash counts the
//! packets of one (interface, family, protocol, destination port, class,
//! source /24 or /48, second); userspace drains the seconds that are over.

use crate::assert_size;

/// Source prefix length of IPv4 aggregates.
pub const PREFIX_V4: u8 = 24;
/// Source prefix length of IPv6 aggregates.
pub const PREFIX_V6: u8 = 48;

/// Key of one aggregate.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub struct AggKey {
    /// Source prefix as two native-endian words in packet byte order
    /// (IPv4: the first word's low 4 bytes), masked to `prefix` bits; zero
    /// when `prefix` is 0 (the table was full: any source).
    pub src: [u64; 2],
    /// Second of the kernel's monotonic clock (`replay_ns` in a replay).
    pub sec: u64,
    pub ifindex: u32,
    /// Destination port (`proto::has_ports`; 0 for other protocols and
    /// fragments).
    pub dport: u16,
    pub family: u8,
    pub proto: u8,
    /// A `Class` value (unsolicited, or malformed when those are sent).
    pub class: u8,
    /// `PREFIX_V4`, `PREFIX_V6`, or 0 (any source).
    pub prefix: u8,
    pub _pad: [u8; 6],
}
assert_size!(AggKey, 40);

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

#[cfg(feature = "user")]
mod user {
    use super::{AggKey, AggValue};

    // SAFETY: repr(C), no implicit padding (sizes asserted), any bit pattern valid.
    unsafe impl aya::Pod for AggKey {}
    // SAFETY: as above.
    unsafe impl aya::Pod for AggValue {}
}
