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

use aya_ebpf::helpers::bpf_jiffies64;
use fireplot_common::{
    config::Config,
    flow::{CacheSlotV4, CacheSlotV6, FlowKeyV4, FlowKeyV6, FlowState},
    proto::{IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_TCP, IPPROTO_UDP},
};

use crate::{CACHE_SLOTS, FLOWS_V4, FLOWS_V6, FLOW_CACHE_V4, FLOW_CACHE_V6};

#[inline(always)]
pub fn now_jiffies() -> u64 {
    // Inlined by the verifier on 64-bit JITs: a load, not a call.
    unsafe { bpf_jiffies64() }
}

#[inline(always)]
fn mix(a: u64, b: u64) -> u32 {
    let x = (a ^ b.rotate_left(29)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    (x >> 40) as u32
}

#[inline(always)]
pub fn hash_v4(k: &FlowKeyV4) -> u32 {
    mix(
        ((k.local as u64) << 32) | k.remote as u64,
        ((k.local_port as u64) << 24) | ((k.remote_port as u64) << 8) | k.proto as u64,
    )
}

#[inline(always)]
pub fn hash_v6(k: &FlowKeyV6) -> u32 {
    mix(
        k.local[0] ^ k.local[1].rotate_left(17) ^ k.remote[0].rotate_left(33),
        k.remote[1]
            ^ ((k.local_port as u64) << 24)
            ^ ((k.remote_port as u64) << 8)
            ^ k.proto as u64,
    )
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
        IPPROTO_UDP => cfg.timeout_udp,
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

/// Looks up the origin (`ORIGIN_*`) of a fresh IPv4 flow, cache first.
#[inline(always)]
pub fn lookup_v4(cfg: &Config, key: &FlowKeyV4, now: u64) -> Option<u8> {
    let slot_idx = hash_v4(key) & (CACHE_SLOTS - 1);
    let slot = FLOW_CACHE_V4.get_ptr_mut(slot_idx);
    if let Some(slot) = slot {
        // SAFETY: per-CPU slot, only this CPU touches it.
        let s = unsafe { &*slot };
        if s.key == *key
            && now.wrapping_sub(s.filled) <= cfg.cache_ttl
            && fresh(cfg, key.proto, &s.state, now)
        {
            return Some(s.state.origin);
        }
    }
    crate::bump(fireplot_common::counters::Misc::CacheMisses.index());
    // SAFETY: LRU values may be recycled under us; we copy 16 bytes and a
    // torn copy can at worst misclassify one packet.
    let state = unsafe { *FLOWS_V4.get(key)? };
    if !fresh(cfg, key.proto, &state, now) {
        return None;
    }
    if let Some(slot) = slot {
        unsafe {
            *slot = CacheSlotV4 {
                key: *key,
                state,
                filled: now,
            }
        };
    }
    Some(state.origin)
}

/// IPv6 counterpart of [`lookup_v4`].
#[inline(always)]
pub fn lookup_v6(cfg: &Config, key: &FlowKeyV6, now: u64) -> Option<u8> {
    let slot_idx = hash_v6(key) & (CACHE_SLOTS - 1);
    let slot = FLOW_CACHE_V6.get_ptr_mut(slot_idx);
    if let Some(slot) = slot {
        let s = unsafe { &*slot };
        if s.key == *key
            && now.wrapping_sub(s.filled) <= cfg.cache_ttl
            && fresh(cfg, key.proto, &s.state, now)
        {
            return Some(s.state.origin);
        }
    }
    crate::bump(fireplot_common::counters::Misc::CacheMisses.index());
    let state = unsafe { *FLOWS_V6.get(key)? };
    if !fresh(cfg, key.proto, &state, now) {
        return None;
    }
    if let Some(slot) = slot {
        unsafe {
            *slot = CacheSlotV6 {
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
pub fn table_v4(cfg: &Config, key: &FlowKeyV4, now: u64) -> bool {
    match unsafe { FLOWS_V4.get(key) } {
        Some(s) => fresh(cfg, key.proto, s, now),
        None => false,
    }
}

#[inline(always)]
pub fn table_v6(cfg: &Config, key: &FlowKeyV6, now: u64) -> bool {
    match unsafe { FLOWS_V6.get(key) } {
        Some(s) => fresh(cfg, key.proto, s, now),
        None => false,
    }
}
