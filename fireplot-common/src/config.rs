//! Runtime configuration written by userspace into the `CONFIG` array
//! (index 0) and the published-service bitmap `SERVICE_PORTS`.

use crate::assert_size;

/// Classifier settings. Times the kernel compares with `bpf_jiffies64()`
/// are in jiffies (userspace measures the kernel's HZ); rate-limit times are
/// in nanoseconds of `bpf_ktime_get_ns()`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Config {
    /// Idle timeout of TCP flows the inside opened or accepted.
    pub timeout_tcp: u64,
    /// Idle timeout of TCP flows after the inside sent FIN or RST.
    pub timeout_tcp_closing: u64,
    /// Idle timeout of UDP and UDP-Lite flows.
    pub timeout_udp: u64,
    pub timeout_icmp: u64,
    /// Idle timeout of other protocols (SCTP, DCCP, GRE, ESP, ...).
    pub timeout_other: u64,
    /// Longest time a per-CPU cache slot may answer without asking the table.
    pub cache_ttl: u64,
    /// Egress refreshes a flow's `last_seen` at most this often.
    pub refresh: u64,
    /// Rate limiter: nanoseconds between events of one source (0 = unlimited).
    pub rate_interval_ns: u64,
    /// Rate limiter: burst tolerance in nanoseconds ((burst - 1) * interval).
    pub rate_tolerance_ns: u64,
    /// 1: send events for malformed packets too.
    pub emit_malformed: u8,
    /// 1: inbound ICMP/ICMPv6 echo requests are `service` (the router answers ping).
    pub service_icmp_echo: u8,
    /// 1 once userspace has written the config; until then nothing is fresh.
    pub loaded: u8,
    /// 1: mark events to dark addresses and ports (`PKT_DARK_*`). Only
    /// meaningful when egress sees the inside's answers.
    pub mark_dark: u8,
    /// 1: a replay drives the clocks (`fireplot replay`): `replay_ns` and
    /// `replay_jiffies` stand for `bpf_ktime_get_ns()` (and the coarse
    /// clock) and `bpf_jiffies64()`, set from each frame's capture time.
    pub replay: u8,
    pub _pad: [u8; 3],
    pub replay_ns: u64,
    pub replay_jiffies: u64,
    /// Target limiter: nanoseconds between events to one (destination
    /// address, protocol, port) on one CPU (0 = unlimited). Past it the
    /// packets are aggregated, not sent one by one.
    pub target_interval_ns: u64,
    /// Target limiter: burst tolerance in nanoseconds.
    pub target_tolerance_ns: u64,
    /// Event budget of one CPU: nanoseconds between events (0 = unlimited).
    /// Past it every unsolicited packet of that CPU is aggregated.
    pub budget_interval_ns: u64,
    /// Event budget: burst tolerance in nanoseconds.
    pub budget_tolerance_ns: u64,
}
assert_size!(Config, 128);

/// Number of `u64` words of the `SERVICE_PORTS` bitmap: TCP, then UDP.
pub const SERVICE_WORDS: u32 = 2 * 65536 / 64;

/// Word index and bit of a published (proto slot 0 = TCP, 1 = UDP, port).
#[inline(always)]
pub const fn service_bit(udp: bool, port: u16) -> (u32, u64) {
    let base = if udp { 1024 } else { 0 };
    (base + (port as u32 >> 6), 1u64 << (port & 63))
}

#[cfg(feature = "user")]
mod user {
    use super::Config;

    // SAFETY: repr(C), no implicit padding (size asserted), any bit pattern valid.
    unsafe impl aya::Pod for Config {}
}
