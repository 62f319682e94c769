//! Settings of the lab's packet generator (`fireplot_flood`, an XDP
//! program run with BPF_PROG_TEST_RUN in live-frame mode on the far side
//! of a link): it rewrites a template frame per run and transmits it.

use crate::assert_size;

/// What the generator varies in its template frame.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FloodConfig {
    /// Seed of the per-frame pseudo-random values.
    pub seed: u64,
    /// Bits of the source address drawn at random: IPv4, the lowest ones
    /// (up to 32); IPv6, of bytes 4..8 (the /64 inside a /32: spreads the
    /// sources over /48s), up to 32.
    pub src_bits: u8,
    /// 4 or 6: which IP header the template has (at offset 14).
    pub family: u8,
    /// IP protocol of the template (TCP, UDP, ICMP, ICMPv6).
    pub proto: u8,
    pub _pad: u8,
    /// Destination ports drawn from `dport_base .. dport_base + dport_span`
    /// (span 0: the template's port).
    pub dport_base: u16,
    pub dport_span: u16,
    /// Bytes of `template` (the frame's headers) written over each frame
    /// before it is varied: the stack that received the frame before may
    /// have rewritten its page (a forwarded frame leaves with the next
    /// hop's MACs and one less TTL), and live-frame mode recycles pages.
    pub template_len: u32,
    pub _pad2: u32,
    pub template: [u8; TEMPLATE_MAX],
}
assert_size!(FloodConfig, 24 + TEMPLATE_MAX);

/// The longest template (Ethernet + IPv6 + the first 20 bytes of L4 and more).
pub const TEMPLATE_MAX: usize = 128;

impl Default for FloodConfig {
    fn default() -> Self {
        FloodConfig {
            seed: 0,
            src_bits: 0,
            family: 0,
            proto: 0,
            _pad: 0,
            dport_base: 0,
            dport_span: 0,
            template_len: 0,
            _pad2: 0,
            template: [0; TEMPLATE_MAX],
        }
    }
}

#[cfg(feature = "user")]
mod user {
    // SAFETY: repr(C), no implicit padding (size asserted), any bit pattern valid.
    unsafe impl aya::Pod for super::FloodConfig {}
}
