//! fireplot's kernel side: the XDP ingress classifier and the TC egress flow
//! recorder. This file holds the maps and the entry points only; the logic
//! is in `parse`, `ingress`, `egress` and `flows`.
//!
//! The crate builds two objects, one per `[[bin]]`:
//! - `fireplot` (this file): the production object, embedded in the
//!   `fireplot` binary. It holds only what the sensor loads: the two
//!   programs it attaches, `fireplot_clock` (run once with
//!   BPF_PROG_TEST_RUN to measure HZ) and their maps.
//! - `fireplot-lab` (`src/lab/`): the lab's programs, the packet generator
//!   and the trivial XDP_PASS program the benchmarks compare against,
//!   embedded only in the test and bench code (`fireplot-tests`). It shares
//!   no module with the sensor; the generator's settings are a
//!   `fireplot_common::flood` type.
#![no_std]
#![no_main]

mod aggregate;
mod egress;
mod flows;
mod ingress;
mod parse;

use aya_ebpf::{
    bindings::{xdp_action::XDP_PASS, TC_ACT_UNSPEC},
    helpers::{bpf_jiffies64, bpf_ktime_get_ns},
    macros::{classifier, map, xdp},
    maps::{Array, LruHashMap, PerCpuArray, PerCpuHashMap, RingBuf},
    programs::{TcContext, XdpContext},
};
use fireplot_common::{
    agg::{AggKey, AggValue},
    config::{Config, SERVICE_WORDS},
    counters::{COUNTERS_LEN, PORT_CHUNK, PORT_HITS_LEN},
    flow::{CacheSlotV4, CacheSlotV6, FlowKeyV4, FlowKeyV6, FlowState, LiveKey, RateSlot},
};

/// Slots of each per-CPU flow cache (a power of two).
pub const CACHE_SLOTS: u32 = 4096;
/// Slots of the per-CPU rate limiter (a power of two).
pub const RATE_SLOTS: u32 = 4096;

/// Settings written by userspace at index 0.
#[map]
static CONFIG: Array<Config> = Array::with_max_entries(1, 0);

/// Published services: a bitmap of TCP ports, then one of UDP ports.
#[map]
static SERVICE_PORTS: Array<u64> = Array::with_max_entries(SERVICE_WORDS, 0);

/// Established state written by egress, read by ingress. Userspace may
/// resize them before load (`--flow-table-size`).
#[map]
static FLOWS_V4: LruHashMap<FlowKeyV4, FlowState> = LruHashMap::with_max_entries(262_144, 0);
#[map]
static FLOWS_V6: LruHashMap<FlowKeyV6, FlowState> = LruHashMap::with_max_entries(131_072, 0);

/// Inside addresses that sent anything out, and inside (address, protocol,
/// port)s that answered (SYN-ACK, UDP), → jiffies last written. Written by
/// egress at most once per `refresh`; ingress reads them only for the events
/// it sends, to mark dark destinations.
#[map]
static LIVE_ADDRS: LruHashMap<LiveKey, u64> = LruHashMap::with_max_entries(16_384, 0);
#[map]
static LIVE_PORTS: LruHashMap<LiveKey, u64> = LruHashMap::with_max_entries(65_536, 0);

/// Per-CPU direct-mapped caches in front of the flow tables.
#[map]
static FLOW_CACHE_V4: PerCpuArray<CacheSlotV4> = PerCpuArray::with_max_entries(CACHE_SLOTS, 0);
#[map]
static FLOW_CACHE_V6: PerCpuArray<CacheSlotV6> = PerCpuArray::with_max_entries(CACHE_SLOTS, 0);

/// Per-CPU event rate limiter, direct-mapped by source address.
#[map]
static RATE: PerCpuArray<RateSlot> = PerCpuArray::with_max_entries(RATE_SLOTS, 0);

/// Per-CPU target limiter, direct-mapped by (destination, protocol, port).
#[map]
static TARGET: PerCpuArray<RateSlot> = PerCpuArray::with_max_entries(RATE_SLOTS, 0);

/// Per-CPU event budget: the GCRA's theoretical arrival time, in ns.
#[map]
static BUDGET: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

/// Packets kept as counts instead of events (see `fireplot_common::agg`).
/// Userspace drains the seconds that are over and may resize it before load.
#[map]
static AGGREGATES: PerCpuHashMap<AggKey, AggValue> = PerCpuHashMap::with_max_entries(65_536, 0);

/// Aggregates without their source (`prefix` 0) and with the destination's
/// /24 or /64 (`dst_prefix`), for when `AGGREGATES` is full: a flood from
/// everywhere on a whole network still counts per port, vector and second.
#[map]
static AGG_COARSE: PerCpuHashMap<AggKey, AggValue> = PerCpuHashMap::with_max_entries(16_384, 0);

/// Class × family × protocol counters, then the `Misc` counters.
#[map]
static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(COUNTERS_LEN, 0);

/// Unsolicited hits per destination port, per protocol with ports and family.
#[map]
static PORT_HITS: PerCpuArray<[u64; PORT_CHUNK]> = PerCpuArray::with_max_entries(PORT_HITS_LEN, 0);

/// One `Event` per unsolicited packet. Userspace may resize before load.
#[map]
static EVENTS: RingBuf = RingBuf::with_byte_size(16 * 1024 * 1024, 0);

/// `[jiffies, ktime_ns]` written by `fireplot_clock`, for measuring HZ.
#[map]
static CLOCK: Array<[u64; 2]> = Array::with_max_entries(1, 0);

#[xdp]
pub fn fireplot_ingress(ctx: XdpContext) -> u32 {
    ingress::classify(&ctx);
    // Monitor mode: every packet passes, whatever the classifier decided.
    XDP_PASS
}

#[classifier]
pub fn fireplot_egress(ctx: TcContext) -> i32 {
    egress::record(&ctx);
    // TC_ACT_UNSPEC (TCX_NEXT): let the next program or the default action decide.
    TC_ACT_UNSPEC
}

/// Samples jiffies and the monotonic clock so userspace can derive HZ.
#[xdp]
pub fn fireplot_clock(_ctx: XdpContext) -> u32 {
    if let Some(slot) = CLOCK.get_ptr_mut(0) {
        // SAFETY: map value pointer from the kernel, valid for this run.
        unsafe { *slot = [bpf_jiffies64(), bpf_ktime_get_ns()] };
    }
    XDP_PASS
}

/// Adds one to a `COUNTERS` slot.
#[inline(always)]
fn bump(index: u32) {
    if let Some(c) = COUNTERS.get_ptr_mut(index) {
        // SAFETY: per-CPU slot, no concurrent writer on this CPU.
        unsafe { *c += 1 };
    }
}

#[inline(always)]
fn config() -> Option<&'static Config> {
    let c = CONFIG.get(0)?;
    if c.loaded == 0 {
        None
    } else {
        Some(c)
    }
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

// SAFETY: the kernel reads the program's license from this section; no
// other symbol is called LICENSE.
#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
