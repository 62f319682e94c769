//! The lab's eBPF object (`fireplot-lab`): programs the tests and the
//! benchmarks run beside the sensor, never loaded by the `fireplot` binary
//! (see the crate's other object, `src/main.rs`):
//! - `fireplot_flood`, the line-rate packet generator (`flood.rs`), run with
//!   BPF_PROG_TEST_RUN in live-frame mode, with its maps `FLOOD` (settings,
//!   a `fireplot_common::flood::FloodConfig`) and `FLOOD_SEQ`;
//! - `fireplot_baseline`, the trivial XDP_PASS program the benchmarks
//!   measure the sensor against.
#![no_std]
#![no_main]

mod flood;

use aya_ebpf::{
    bindings::xdp_action::XDP_PASS,
    macros::{map, xdp},
    maps::{Array, PerCpuArray},
    programs::XdpContext,
};
use fireplot_common::flood::FloodConfig;

/// The generator's settings, written by userspace at index 0.
#[map]
static FLOOD: Array<FloodConfig> = Array::with_max_entries(1, 0);

/// The generator's per-CPU frame sequence.
#[map]
static FLOOD_SEQ: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

/// The lab's packet generator: only run by the lab with BPF_PROG_TEST_RUN
/// in live-frame mode.
#[xdp]
pub fn fireplot_flood(ctx: XdpContext) -> u32 {
    flood::generate(&ctx)
}

/// The trivial program benchmarks compare against.
#[xdp]
pub fn fireplot_baseline(_ctx: XdpContext) -> u32 {
    XDP_PASS
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
