//! Keys and values of the established-state tables.
//!
//! The TC egress program writes a flow as seen from the inside
//! (`local` = inside address); the XDP ingress program looks up the
//! reversed tuple of an inbound packet. Keys are as narrow as the family
//! needs, because hash cost grows with key width. For ICMP echo the echo
//! identifier stands for `local_port` and `remote_port` is 0. A key with
//! both ports 0 and the flow's protocol is the "address pair" entry used to
//! classify non-first fragments, which carry no ports.

use crate::assert_size;

/// Flow key for IPv4, 16 bytes. Addresses are the packet's bytes read as a
/// native-endian word (`u32::from_ne_bytes(octets)`), so the kernel copies
/// them without byte swapping; ports are host order.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct FlowKeyV4 {
    pub local: u32,
    pub remote: u32,
    pub local_port: u16,
    pub remote_port: u16,
    pub proto: u8,
    pub _pad: [u8; 3],
}
assert_size!(FlowKeyV4, 16);

/// Flow key for IPv6, 40 bytes. Addresses are the packet's 16 bytes read as
/// two native-endian words.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct FlowKeyV6 {
    pub local: [u64; 2],
    pub remote: [u64; 2],
    pub local_port: u16,
    pub remote_port: u16,
    pub proto: u8,
    pub _pad: [u8; 3],
}
assert_size!(FlowKeyV6, 40);

/// The inside opened the flow (outbound SYN, UDP datagram, echo request, ...).
pub const ORIGIN_INSIDE: u8 = 1;
/// The inside accepted an inbound connection (outbound SYN-ACK).
pub const ORIGIN_ACCEPTED: u8 = 2;

/// Value of both flow tables.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct FlowState {
    /// `jiffies` of the last outbound packet that refreshed the flow.
    pub last_seen: u64,
    /// `ORIGIN_INSIDE` or `ORIGIN_ACCEPTED`.
    pub origin: u8,
    /// 1 once the inside sent FIN or RST: the short closing timeout applies.
    pub closing: u8,
    pub _pad: [u8; 6],
}
assert_size!(FlowState, 16);

/// One slot of a per-CPU direct-mapped cache in front of a flow table.
///
/// A slot copies a table entry the ingress program found; it answers only
/// while the copied `last_seen` is still fresh and the copy itself is younger
/// than `Config::cache_ttl`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct CacheSlot<K> {
    pub key: K,
    pub state: FlowState,
    /// `jiffies` when the slot was filled from the table.
    pub filled: u64,
}
pub type CacheSlotV4 = CacheSlot<FlowKeyV4>;
pub type CacheSlotV6 = CacheSlot<FlowKeyV6>;
assert_size!(CacheSlotV4, 40);
assert_size!(CacheSlotV6, 64);

/// One slot of the per-CPU event rate limiter, direct-mapped by source.
///
/// GCRA (a token bucket in one word): `tat_ns` is the theoretical arrival
/// time of the next conforming event.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct RateSlot {
    /// Source address (or, for the target limiter, destination address) as
    /// two native-endian words (IPv4: first word only).
    pub src: [u64; 2],
    pub tat_ns: u64,
    pub family: u8,
    /// Target limiter: the destination's protocol and port (0 for sources).
    pub proto: u8,
    pub port: u16,
    pub _pad: [u8; 4],
}
assert_size!(RateSlot, 32);

/// Key of the live tables: an inside address that sent something out
/// (`LIVE_ADDRS`: port and proto 0), or an inside (address, protocol,
/// port) that answered (`LIVE_PORTS`). Address as two native-endian words
/// (IPv4: the first word's low 4 bytes, like `RateSlot::src`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct LiveKey {
    pub addr: [u64; 2],
    pub port: u16,
    pub proto: u8,
    pub family: u8,
    pub _pad: [u8; 4],
}
assert_size!(LiveKey, 24);

#[cfg(feature = "user")]
mod user {
    use super::*;

    // SAFETY: all types are repr(C) without implicit padding (sizes asserted)
    // and valid for any bit pattern.
    unsafe impl aya::Pod for FlowKeyV4 {}
    unsafe impl aya::Pod for FlowKeyV6 {}
    unsafe impl aya::Pod for FlowState {}
    unsafe impl<K: aya::Pod> aya::Pod for CacheSlot<K> {}
    unsafe impl aya::Pod for RateSlot {}
    unsafe impl aya::Pod for LiveKey {}
}
