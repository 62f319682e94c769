//! What the classifier does with an unsolicited packet it does not send as
//! an event: the per-source and per-target limiters and the CPU's event
//! budget decide, and the packet is then counted in its aggregate
//! (`fireplot_common::agg`) instead of being dropped.

use aya_ebpf::programs::XdpContext;
use fireplot_common::{
    agg::{
        dst_prefix_mask, prefix_mask, AggKey, AggValue, DST_PREFIX_V4, DST_PREFIX_V6, PREFIX_V4,
        PREFIX_V6,
    },
    config::Config,
    counters::Misc,
    event::{Class, PKT_FRAGMENT},
    proto::{FAMILY_V4, FAMILY_V6, IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_TCP, IPPROTO_UDP},
    vector::{is_reflection_port, tcp_vector},
};

use crate::{bump, ingress::Probe, AGGREGATES, AGG_COARSE, BUDGET, RATE_SLOTS};

/// GCRA over a direct-mapped per-CPU slot table: false when `(addr,
/// family, proto, port)` is over `interval_ns` with `tolerance_ns` of burst.
/// A new key takes its slot with a full budget; a collision can only let
/// more events through, never hold back a second key.
#[inline(always)]
pub fn gcra(
    slots: &aya_ebpf::maps::PerCpuArray<fireplot_common::flow::RateSlot>,
    addr: [u64; 2],
    family: u8,
    proto: u8,
    port: u16,
    interval_ns: u64,
    tolerance_ns: u64,
    now_ns: u64,
) -> bool {
    if interval_ns == 0 {
        return true;
    }
    let h = (addr[0]
        ^ addr[1].rotate_left(31)
        ^ (family as u64 | (proto as u64) << 8 | (port as u64) << 16))
        .wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let Some(slot) = slots.get_ptr_mut(((h >> 40) as u32) & (RATE_SLOTS - 1)) else {
        return true;
    };
    // SAFETY: per-CPU slot, only this CPU touches it.
    let s = unsafe { &mut *slot };
    if s.src != addr || s.family != family || s.proto != proto || s.port != port {
        s.src = addr;
        s.family = family;
        s.proto = proto;
        s.port = port;
        s.tat_ns = now_ns;
    }
    let tat = if s.tat_ns > now_ns { s.tat_ns } else { now_ns };
    if tat - now_ns > tolerance_ns {
        return false;
    }
    s.tat_ns = tat + interval_ns;
    true
}

/// This CPU's event budget (a GCRA on one slot): false when it is spent.
#[inline(always)]
pub fn budget_allow(cfg: &Config, now_ns: u64) -> bool {
    if cfg.budget_interval_ns == 0 {
        return true;
    }
    let Some(slot) = BUDGET.get_ptr_mut(0) else {
        return true;
    };
    // SAFETY: per-CPU slot, only this CPU touches it.
    let tat_ns = unsafe { &mut *slot };
    let tat = if *tat_ns > now_ns { *tat_ns } else { now_ns };
    if tat - now_ns > cfg.budget_tolerance_ns {
        return false;
    }
    *tat_ns = tat + cfg.budget_interval_ns;
    true
}

/// Adds one packet from `src` to this CPU's value of an aggregate (which
/// remembers its first source and whether another came).
#[inline(always)]
fn count_in(v: *mut AggValue, src: &[u64; 2], len: u64, tcp_flags: u8) {
    // SAFETY: a map value pointer of this CPU; no other writer on this CPU.
    unsafe {
        if (*v).packets == 0 {
            (*v).src = *src;
        } else if (*v).src != *src {
            (*v).mixed = 1;
        }
        (*v).packets += 1;
        (*v).bytes += len;
        (*v).tcp_flags |= tcp_flags;
    }
}

/// Adds one packet to an aggregate: false if the entry is not there and
/// cannot be made (the table is full).
#[inline(always)]
fn agg_add(
    map: &aya_ebpf::maps::PerCpuHashMap<AggKey, AggValue>,
    key: &AggKey,
    src: &[u64; 2],
    len: u64,
    tcp_flags: u8,
) -> bool {
    if let Some(v) = map.get_ptr_mut(key) {
        count_in(v, src, len, tcp_flags);
        return true;
    }
    let first = AggValue {
        packets: 1,
        bytes: len,
        src: *src,
        tcp_flags,
        mixed: 0,
        _pad: [0; 6],
    };
    if map
        .insert(key, &first, aya_ebpf::bindings::BPF_NOEXIST as u64)
        .is_ok()
    {
        return true;
    }
    // Another CPU made the entry in between: this CPU's value is zero.
    if let Some(v) = map.get_ptr_mut(key) {
        count_in(v, src, len, tcp_flags);
        return true;
    }
    false
}

/// The key of a packet's aggregate in `AGGREGATES`: its source prefix,
/// its destination, and what names its vector (the TCP flag class, the
/// ICMP type, a reflection source port, the fragment bit).
#[inline(always)]
fn key_of(ctx: &XdpContext, p: &Probe, class: Class, fragment: bool, now_ns: u64) -> AggKey {
    let mask = prefix_mask(p.family);
    let (sport, vector) = if fragment {
        (0, 0)
    } else {
        match p.proto {
            IPPROTO_TCP => (0, tcp_vector(p.tcp_flags)),
            IPPROTO_UDP if is_reflection_port(p.sport) => (p.sport, 0),
            IPPROTO_ICMP | IPPROTO_ICMPV6 => (0, p.icmp_type),
            _ => (0, 0),
        }
    };
    AggKey {
        src: [p.src[0] & mask[0], p.src[1] & mask[1]],
        dst: p.dst,
        sec: now_ns / 1_000_000_000,
        ifindex: ctx.ingress_ifindex() as u32,
        sport,
        dport: p.dport,
        family: p.family,
        proto: p.proto,
        class: class as u8,
        prefix: if p.family == FAMILY_V4 {
            PREFIX_V4
        } else if p.family == FAMILY_V6 {
            PREFIX_V6
        } else {
            0
        },
        vector,
        fragment: fragment as u8,
        dst_prefix: 0,
        _pad: 0,
    }
}

/// Counts a packet that is not sent as an event in its aggregate
/// (`pkt_flags`: its `PKT_*` bits, of which the fragment bit is read): its
/// source prefix's and destination's, else (`AGGREGATES` full) one without
/// the source and with the destination's /24 or /64 in `AGG_COARSE`, else
/// (both full) lost, and counted.
#[inline(always)]
pub fn aggregate(ctx: &XdpContext, p: &Probe, class: Class, pkt_flags: u8, now_ns: u64) {
    let mut key = key_of(ctx, p, class, pkt_flags & PKT_FRAGMENT != 0, now_ns);
    let len = (ctx.data_end() - ctx.data()) as u64;
    if agg_add(&AGGREGATES, &key, &p.src, len, p.tcp_flags) {
        bump(Misc::Aggregated.index());
        return;
    }
    let dst_mask = dst_prefix_mask(p.family);
    key.src = [0; 2];
    key.prefix = 0;
    key.dst = [p.dst[0] & dst_mask[0], p.dst[1] & dst_mask[1]];
    key.dst_prefix = if p.family == FAMILY_V4 {
        DST_PREFIX_V4
    } else if p.family == FAMILY_V6 {
        DST_PREFIX_V6
    } else {
        0
    };
    if agg_add(&AGG_COARSE, &key, &p.src, len, p.tcp_flags) {
        bump(Misc::Aggregated.index());
        bump(Misc::AggCoarse.index());
        return;
    }
    bump(Misc::AggLost.index());
}
