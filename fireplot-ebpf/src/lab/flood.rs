//! The lab's packet generator (not part of the sensor's work): run with
//! BPF_PROG_TEST_RUN in live-frame mode on the far side of a link, it
//! rewrites its template frame's source address and ports from a per-CPU
//! sequence and a seed, fixes the checksums incrementally, and transmits
//! the frame (XDP_TX). Userspace sets `FLOOD` and the frame count.

use aya_ebpf::{
    bindings::xdp_action::{XDP_ABORTED, XDP_TX},
    programs::XdpContext,
};
use fireplot_common::proto::{IPPROTO_ICMPV6, IPPROTO_TCP, IPPROTO_UDP};

use crate::{FLOOD, FLOOD_SEQ};

const L3: usize = 14;

#[inline(always)]
fn mix(x: u64) -> u64 {
    // splitmix64's finaliser.
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// One's-complement update of a checksum for a 16-bit word changing from
/// `old` to `new` (RFC 1624, eqn. 3).
#[inline(always)]
fn csum_replace(sum: u16, old: u16, new: u16) -> u16 {
    let mut s = (!sum as u32) + (!old as u32 & 0xffff) + new as u32;
    s = (s & 0xffff) + (s >> 16);
    s = (s & 0xffff) + (s >> 16);
    !(s as u16)
}

#[inline(always)]
unsafe fn rd16(p: usize) -> u16 {
    u16::from_be(core::ptr::read_unaligned(p as *const u16))
}

#[inline(always)]
unsafe fn wr16(p: usize, v: u16) {
    core::ptr::write_unaligned(p as *mut u16, v.to_be())
}

/// Writes the first `N` template bytes over the frame at `data` (the
/// caller checked that `N` bytes are there).
#[inline(always)]
fn copy_template<const N: usize>(
    cfg: &fireplot_common::flood::FloodConfig,
    data: usize,
    end: usize,
) -> bool {
    if data + N > end {
        return false;
    }
    let mut i = 0;
    while i + 8 <= N {
        // SAFETY: `i + 8 <= N`, within the frame and the template.
        unsafe {
            let v = core::ptr::read_unaligned(cfg.template.as_ptr().add(i) as *const u64);
            core::ptr::write_unaligned((data + i) as *mut u64, v);
        }
        i += 8;
    }
    while i < N {
        // SAFETY: as above.
        unsafe { *((data + i) as *mut u8) = cfg.template[i] };
        i += 1;
    }
    true
}

pub fn generate(ctx: &XdpContext) -> u32 {
    let Some(cfg) = FLOOD.get(0) else {
        return XDP_ABORTED;
    };
    let Some(seq) = FLOOD_SEQ.get_ptr_mut(0) else {
        return XDP_ABORTED;
    };
    // SAFETY: per-CPU slot, only this CPU touches it.
    let n = unsafe {
        *seq += 1;
        *seq
    };
    // SAFETY: a helper without arguments or preconditions.
    let cpu = unsafe { aya_ebpf::helpers::bpf_get_smp_processor_id() } as u64;
    let h = mix(cfg.seed ^ mix(n ^ (cpu << 48)));
    let data = ctx.data();
    let end = ctx.data_end();
    let v6 = cfg.family == 6;
    let l4 = if v6 { L3 + 40 } else { L3 + 20 };
    // Template frames are at least this long (the L4 header's first 20 bytes).
    if data + l4 + 20 > end {
        return XDP_ABORTED;
    }
    // The template's headers over the frame: the stack that took the
    // frame before may have rewritten this page (a forwarded frame leaves
    // with the next hop's MACs and one less TTL), and live-frame mode
    // recycles pages.
    let copied = if v6 {
        copy_template::<{ L3 + 40 + 20 }>(cfg, data, end)
    } else {
        copy_template::<{ L3 + 20 + 20 }>(cfg, data, end)
    };
    if !copied {
        return XDP_ABORTED;
    }
    // The source words that change: IPv4 bytes 12..16 of the header,
    // IPv6 bytes 12..16 (address bytes 4..8), as two 16-bit words.
    let src_off = data + L3 + if v6 { 8 + 4 } else { 12 };
    let bits = cfg.src_bits.min(32) as u32;
    let mask: u32 = if bits == 0 {
        0
    } else {
        u32::MAX >> (32 - bits)
    };
    // SAFETY: all offsets below were bounds-checked above (l4 + 20 <= end).
    unsafe {
        let old_hi = rd16(src_off);
        let old_lo = rd16(src_off + 2);
        let old = ((old_hi as u32) << 16) | old_lo as u32;
        let new = (old & !mask) | ((h as u32) & mask);
        let (new_hi, new_lo) = ((new >> 16) as u16, new as u16);
        wr16(src_off, new_hi);
        wr16(src_off + 2, new_lo);
        if !v6 {
            let c = data + L3 + 10;
            let mut sum = rd16(c);
            sum = csum_replace(sum, old_hi, new_hi);
            sum = csum_replace(sum, old_lo, new_lo);
            wr16(c, sum);
        }
        // Where the L4 checksum is, if it covers the addresses or ports.
        let csum_off = match cfg.proto {
            IPPROTO_TCP => Some(l4 + 16),
            IPPROTO_UDP => Some(l4 + 6),
            IPPROTO_ICMPV6 => Some(l4 + 2),
            _ => None,
        };
        let mut sum = match csum_off {
            Some(o) => rd16(data + o),
            None => 0,
        };
        // A UDP/IPv4 datagram without checksum keeps none.
        let keep_zero = !v6 && cfg.proto == IPPROTO_UDP && sum == 0;
        sum = csum_replace(sum, old_hi, new_hi);
        sum = csum_replace(sum, old_lo, new_lo);
        if matches!(cfg.proto, IPPROTO_TCP | IPPROTO_UDP) {
            let sport = 1024 + ((h >> 32) as u16 % 64000);
            let old_sport = rd16(data + l4);
            wr16(data + l4, sport);
            sum = csum_replace(sum, old_sport, sport);
            if cfg.dport_span != 0 {
                let dport = cfg
                    .dport_base
                    .wrapping_add(((h >> 48) as u16) % cfg.dport_span);
                let old_dport = rd16(data + l4 + 2);
                wr16(data + l4 + 2, dport);
                sum = csum_replace(sum, old_dport, dport);
            }
        }
        if let Some(o) = csum_off {
            if !keep_zero {
                if cfg.proto == IPPROTO_UDP && sum == 0 {
                    sum = 0xffff;
                }
                wr16(data + o, sum);
            }
        }
    }
    XDP_TX
}
