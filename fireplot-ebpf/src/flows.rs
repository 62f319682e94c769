//! Flow-table access shared by both directions: key hashing, freshness, and
//! the per-CPU cache that answers the reply fast path.
//!
//! The cache is direct-mapped per CPU. A slot holds a copy of a table entry
//! and answers only while (a) the copied `last_seen` is still within the
//! protocol's idle timeout and (b) the copy is younger than
//! `Config::cache_ttl`. Egress only ever moves `last_seen` forward or marks
//! a flow closing, so a fresh copy can only be staler than the table, never
//! fresher: a slot says "reply" only where the table said so within the
//! last `cache_ttl`. The one difference is an entry the LRU evicted during
//! that window; the ttl (default 1 s) bounds it.

use aya_ebpf::{
    helpers::bpf_jiffies64,
    maps::{LruHashMap, PerCpuArray},
};
use fireplot_common::{
    config::Config,
    flow::{CacheSlot, FlowKeyV4, FlowKeyV6, FlowState},
    proto::{IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_TCP, IPPROTO_UDP, IPPROTO_UDPLITE},
};

use crate::{
    parse::{ipv4_addrs, ipv6_addrs, Bounds},
    CACHE_SLOTS, FLOWS_V4, FLOWS_V6, FLOW_CACHE_V4, FLOW_CACHE_V6,
};

/// The time flows are kept in: the kernel's jiffies, or a replay's.
#[inline(always)]
pub fn now_jiffies(cfg: &Config) -> u64 {
    if cfg.replay != 0 {
        return cfg.replay_jiffies;
    }
    // Inlined by the verifier on 64-bit JITs: a load, not a call.
    // SAFETY: a helper without arguments or preconditions.
    unsafe { bpf_jiffies64() }
}

#[inline(always)]
fn mix(a: u64, b: u64) -> u32 {
    let x = (a ^ b.rotate_left(29)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    (x >> 40) as u32
}

/// What differs between IPv4 and IPv6 for flows: key width, tables,
/// address reads and the ICMP flavour. Both directions are written once,
/// generic over this.
pub trait Family {
    type Key: Copy + PartialEq + 'static;
    type Addr: Copy;
    /// `FAMILY_V4` or `FAMILY_V6`.
    const FAMILY: u8;
    /// ICMP or ICMPv6.
    const ICMP: u8;
    const ECHO_REQUEST: u8;
    const ECHO_REPLY: u8;
    /// DHCP (or DHCPv6) server and client ports: replies are control traffic.
    const DHCP_REPLY: (u16, u16);
    fn table() -> &'static LruHashMap<Self::Key, FlowState>;
    fn cache() -> &'static PerCpuArray<CacheSlot<Self::Key>>;
    fn hash(k: &Self::Key) -> u32;
    fn key(
        local: Self::Addr,
        remote: Self::Addr,
        local_port: u16,
        remote_port: u16,
        proto: u8,
    ) -> Self::Key;
    fn proto(k: &Self::Key) -> u8;
    /// (source, destination) of the IP header at `l3`.
    fn addrs(b: &Bounds, l3: usize) -> Option<(Self::Addr, Self::Addr)>;
    /// An address as the two words an event carries.
    fn words(a: Self::Addr) -> [u64; 2];
    /// ICMP error types (they quote the packet that caused them).
    fn is_error(icmp_type: u8) -> bool;
    /// Network control messages (neighbour discovery, MLD...).
    fn is_control(icmp_type: u8) -> bool;
    /// The IP header an ICMP error quotes at `off`: (protocol, source,
    /// destination, offset of its L4 header).
    fn inner(b: &Bounds, off: usize) -> Option<(u8, Self::Addr, Self::Addr, usize)>;
}

pub struct V4;
pub struct V6;

impl Family for V4 {
    type Key = FlowKeyV4;
    type Addr = u32;
    const FAMILY: u8 = fireplot_common::proto::FAMILY_V4;
    const ICMP: u8 = IPPROTO_ICMP;
    const ECHO_REQUEST: u8 = 8;
    const ECHO_REPLY: u8 = 0;
    const DHCP_REPLY: (u16, u16) = (67, 68);

    #[inline(always)]
    fn table() -> &'static LruHashMap<FlowKeyV4, FlowState> {
        &FLOWS_V4
    }
    #[inline(always)]
    fn cache() -> &'static PerCpuArray<CacheSlot<FlowKeyV4>> {
        &FLOW_CACHE_V4
    }
    #[inline(always)]
    fn hash(k: &FlowKeyV4) -> u32 {
        mix(
            ((k.local as u64) << 32) | k.remote as u64,
            ((k.local_port as u64) << 24) | ((k.remote_port as u64) << 8) | k.proto as u64,
        )
    }
    #[inline(always)]
    fn key(local: u32, remote: u32, local_port: u16, remote_port: u16, proto: u8) -> FlowKeyV4 {
        FlowKeyV4 {
            local,
            remote,
            local_port,
            remote_port,
            proto,
            _pad: [0; 3],
        }
    }
    #[inline(always)]
    fn proto(k: &FlowKeyV4) -> u8 {
        k.proto
    }
    #[inline(always)]
    fn addrs(b: &Bounds, l3: usize) -> Option<(u32, u32)> {
        ipv4_addrs(b, l3)
    }
    #[inline(always)]
    fn words(a: u32) -> [u64; 2] {
        [a as u64, 0]
    }
    #[inline(always)]
    fn is_error(t: u8) -> bool {
        matches!(t, 3 | 4 | 5 | 11 | 12)
    }
    #[inline(always)]
    fn is_control(_: u8) -> bool {
        false
    }
    #[inline(always)]
    fn inner(b: &Bounds, off: usize) -> Option<(u8, u32, u32, usize)> {
        let ip = b.ptr::<[u8; 20]>(off)? as *const u8;
        // SAFETY: 20 bytes checked.
        let (vihl, proto) = unsafe { (*ip, *ip.add(9)) };
        let ihl = ((vihl & 0x0f) as usize) * 4;
        if vihl >> 4 != 4 || ihl < 20 {
            return None;
        }
        let (src, dst) = ipv4_addrs(b, off)?;
        Some((proto, src, dst, off + ihl))
    }
}

impl Family for V6 {
    type Key = FlowKeyV6;
    type Addr = [u64; 2];
    const FAMILY: u8 = fireplot_common::proto::FAMILY_V6;
    const ICMP: u8 = IPPROTO_ICMPV6;
    const ECHO_REQUEST: u8 = 128;
    const ECHO_REPLY: u8 = 129;
    const DHCP_REPLY: (u16, u16) = (547, 546);

    #[inline(always)]
    fn table() -> &'static LruHashMap<FlowKeyV6, FlowState> {
        &FLOWS_V6
    }
    #[inline(always)]
    fn cache() -> &'static PerCpuArray<CacheSlot<FlowKeyV6>> {
        &FLOW_CACHE_V6
    }
    #[inline(always)]
    fn hash(k: &FlowKeyV6) -> u32 {
        mix(
            k.local[0] ^ k.local[1].rotate_left(17) ^ k.remote[0].rotate_left(33),
            k.remote[1]
                ^ ((k.local_port as u64) << 24)
                ^ ((k.remote_port as u64) << 8)
                ^ k.proto as u64,
        )
    }
    #[inline(always)]
    fn key(
        local: [u64; 2],
        remote: [u64; 2],
        local_port: u16,
        remote_port: u16,
        proto: u8,
    ) -> FlowKeyV6 {
        FlowKeyV6 {
            local,
            remote,
            local_port,
            remote_port,
            proto,
            _pad: [0; 3],
        }
    }
    #[inline(always)]
    fn proto(k: &FlowKeyV6) -> u8 {
        k.proto
    }
    #[inline(always)]
    fn addrs(b: &Bounds, l3: usize) -> Option<([u64; 2], [u64; 2])> {
        ipv6_addrs(b, l3)
    }
    #[inline(always)]
    fn words(a: [u64; 2]) -> [u64; 2] {
        a
    }
    #[inline(always)]
    fn is_error(t: u8) -> bool {
        matches!(t, 1..=4)
    }
    #[inline(always)]
    fn is_control(t: u8) -> bool {
        // MLD, router/neighbour discovery, SEND, multicast router discovery
        matches!(t, 130..=137 | 141..=143 | 148 | 149 | 151..=153)
    }
    #[inline(always)]
    fn inner(b: &Bounds, off: usize) -> Option<(u8, [u64; 2], [u64; 2], usize)> {
        let ip = b.ptr::<[u8; 40]>(off)? as *const u8;
        // SAFETY: 40 bytes checked.
        let (ver, proto) = unsafe { (*ip >> 4, *ip.add(6)) };
        if ver != 6 {
            return None;
        }
        let (src, dst) = ipv6_addrs(b, off)?;
        Some((proto, src, dst, off + 40))
    }
}

/// Idle timeout that applies to a flow of `proto` in `state`.
#[inline(always)]
pub fn timeout(cfg: &Config, proto: u8, state: &FlowState) -> u64 {
    match proto {
        IPPROTO_TCP => {
            if state.closing != 0 {
                cfg.timeout_tcp_closing
            } else {
                cfg.timeout_tcp
            }
        }
        IPPROTO_UDP | IPPROTO_UDPLITE => cfg.timeout_udp,
        IPPROTO_ICMP | IPPROTO_ICMPV6 => cfg.timeout_icmp,
        _ => cfg.timeout_other,
    }
}

/// `last_seen` may be a tick ahead of `now` when egress on another CPU
/// wrote it after we read the clock: that is fresh, not ancient.
#[inline(always)]
pub fn fresh(cfg: &Config, proto: u8, state: &FlowState, now: u64) -> bool {
    now <= state.last_seen || now - state.last_seen <= timeout(cfg, proto, state)
}

/// Looks up the origin (`ORIGIN_*`) of a fresh flow, cache first.
#[inline(always)]
pub fn lookup<F: Family>(cfg: &Config, key: &F::Key, now: u64) -> Option<u8> {
    let proto = F::proto(key);
    let slot = F::cache().get_ptr_mut(F::hash(key) & (CACHE_SLOTS - 1));
    if let Some(slot) = slot {
        // SAFETY: per-CPU slot, only this CPU touches it.
        let s = unsafe { &*slot };
        if s.key == *key
            && now.wrapping_sub(s.filled) <= cfg.cache_ttl
            && fresh(cfg, proto, &s.state, now)
        {
            return Some(s.state.origin);
        }
    }
    crate::bump(fireplot_common::counters::Misc::CacheMisses.index());
    // SAFETY: LRU values may be recycled under us; we copy 16 bytes and a
    // torn copy can at worst misclassify one packet.
    let state = unsafe { *F::table().get(key)? };
    if !fresh(cfg, proto, &state, now) {
        return None;
    }
    if let Some(slot) = slot {
        // SAFETY: as above.
        unsafe {
            *slot = CacheSlot {
                key: *key,
                state,
                filled: now,
            }
        };
    }
    Some(state.origin)
}

/// Table-only lookup for ICMP errors (rare; not worth a cache slot).
#[inline(always)]
pub fn in_table<F: Family>(cfg: &Config, key: &F::Key, now: u64) -> bool {
    // SAFETY: read-only copy of a map value.
    match unsafe { F::table().get(key) } {
        Some(s) => fresh(cfg, F::proto(key), s, now),
        None => false,
    }
}
