//! Limits and timeouts the kernel programs read from the `CONFIG` map, and
//! their validation: every value is checked here, at start, with a message
//! that names the flag, never clamped in silence.

use fireplot_common::config::Config;
use thiserror::Error;

/// Longest idle timeout accepted (one year): beyond it the jiffies product
/// is still far from overflow, and nothing real needs more.
pub const MAX_TIMEOUT_S: u64 = 365 * 24 * 3600;
/// Highest per-source event rate accepted (events/s over the whole sensor).
pub const MAX_RATE_LIMIT: u32 = 100_000_000;

/// A limit that cannot be written to the kernel.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum LimitsError {
    /// An idle timeout is zero or too long.
    #[error("--{flag} must be between 1 and {MAX_TIMEOUT_S} seconds, not {value}")]
    Timeout { flag: &'static str, value: u64 },
    /// A rate is beyond what the kernel's nanosecond interval can express.
    #[error("--{flag} must be 0 (off) or at most {MAX_RATE_LIMIT} events/s, not {value}")]
    RateTooHigh { flag: &'static str, value: u32 },
    /// The burst cannot give every receiving CPU at least one event.
    #[error("--{flag} {burst} is smaller than the {cpus} CPUs that share it (each CPU holds ⌊burst / CPUs⌋ events); use at least {cpus}, or --{off} 0 to turn the limiter off")]
    BurstTooSmall {
        flag: &'static str,
        off: &'static str,
        burst: u32,
        cpus: u32,
    },
}

/// Limits and timeouts written into the `CONFIG` map.
#[derive(Clone, Debug, PartialEq)]
pub struct Limits {
    /// Idle timeouts in seconds (defaults close to conntrack's).
    pub tcp_timeout_s: u64,
    pub tcp_closing_timeout_s: u64,
    pub udp_timeout_s: u64,
    pub icmp_timeout_s: u64,
    pub other_timeout_s: u64,
    /// Events per second per source over the whole sensor (0 = unlimited).
    pub rate_limit: u32,
    /// Events a source may send at once, over the whole sensor, before the rate applies.
    pub rate_burst: u32,
    /// Events per second to one (destination, protocol, port) over the
    /// whole sensor before the rest is aggregated (0 = unlimited).
    pub target_limit: u32,
    /// Events to one target at once before `target_limit` applies.
    pub target_burst: u32,
    /// Events per second of the whole sensor before every unsolicited
    /// packet is aggregated (0 = unlimited); its burst is one second's worth.
    pub event_budget: u32,
    /// Also send events for malformed packets.
    pub emit_malformed: bool,
    /// Inbound echo requests are `service` (the router answers ping).
    pub service_icmp_echo: bool,
    /// Mark events to addresses and ports that never answered (`dark`).
    /// Off where egress cannot see the inside's answers (a one-way tap).
    pub mark_dark: bool,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            // conntrack: established 5 days, close-wait/time-wait 120 s,
            // udp stream 120 s, icmp 30 s, generic 600 s.
            tcp_timeout_s: 432_000,
            tcp_closing_timeout_s: 120,
            udp_timeout_s: 120,
            icmp_timeout_s: 30,
            other_timeout_s: 600,
            rate_limit: 10_000,
            rate_burst: 50_000,
            target_limit: 10_000,
            target_burst: 20_000,
            event_budget: 200_000,
            emit_malformed: false,
            service_icmp_echo: false,
            mark_dark: true,
        }
    }
}

/// One CPU's share of the per-source budget.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CpuShare {
    /// Nanoseconds between events of one source on one CPU.
    pub interval_ns: u64,
    /// Events a source may send at once on one CPU.
    pub burst: u64,
}

impl Limits {
    /// Checks every value for a sensor whose XDP program runs on `cpus` CPUs.
    pub fn validate(&self, cpus: u32) -> Result<(), LimitsError> {
        for (flag, value) in [
            ("tcp-timeout", self.tcp_timeout_s),
            ("tcp-closing-timeout", self.tcp_closing_timeout_s),
            ("udp-timeout", self.udp_timeout_s),
            ("icmp-timeout", self.icmp_timeout_s),
            ("other-timeout", self.other_timeout_s),
        ] {
            if value == 0 || value > MAX_TIMEOUT_S {
                return Err(LimitsError::Timeout { flag, value });
            }
        }
        for (flag, value) in [
            ("rate-limit", self.rate_limit),
            ("target-limit", self.target_limit),
            ("event-budget", self.event_budget),
        ] {
            if value > MAX_RATE_LIMIT {
                return Err(LimitsError::RateTooHigh { flag, value });
            }
        }
        if self.rate_limit != 0 && self.rate_burst < cpus.max(1) {
            return Err(LimitsError::BurstTooSmall {
                flag: "rate-burst",
                off: "rate-limit",
                burst: self.rate_burst,
                cpus: cpus.max(1),
            });
        }
        if self.target_limit != 0 && self.target_burst < cpus.max(1) {
            return Err(LimitsError::BurstTooSmall {
                flag: "target-burst",
                off: "target-limit",
                burst: self.target_burst,
                cpus: cpus.max(1),
            });
        }
        Ok(())
    }

    /// The per-CPU share of the rate limit, or `None` when it is off.
    ///
    /// The limiter's buckets are per CPU (no shared state, no lock on the
    /// hot path), so the budget is split: each of the `cpus` CPUs that can
    /// run the XDP program holds `rate_limit / cpus` events/s and
    /// `⌊rate_burst / cpus⌋` events of burst. Whatever the receive-side
    /// spreading, one source never gets more than `rate_limit` events/s
    /// and `rate_burst` at once from the whole sensor; a source whose
    /// packets all land on one CPU gets that CPU's share.
    pub fn cpu_share(&self, cpus: u32) -> Option<CpuShare> {
        share(self.rate_limit, self.rate_burst, cpus)
    }

    /// The per-CPU share of the target limit, or `None` when it is off.
    pub fn target_share(&self, cpus: u32) -> Option<CpuShare> {
        share(self.target_limit, self.target_burst, cpus)
    }

    /// The per-CPU share of the event budget (burst: one second's worth).
    pub fn budget_share(&self, cpus: u32) -> Option<CpuShare> {
        share(self.event_budget, self.event_budget.max(cpus), cpus)
    }

    /// The kernel config for a kernel running at `hz` with `cpus` CPUs.
    pub fn to_config(&self, hz: u64, cpus: u32) -> Config {
        let gcra = |s: Option<CpuShare>| match s {
            None => (0, 0),
            Some(s) => (s.interval_ns, s.interval_ns * (s.burst - 1)),
        };
        let (interval, tolerance) = gcra(self.cpu_share(cpus));
        let (target_interval, target_tolerance) = gcra(self.target_share(cpus));
        let (budget_interval, budget_tolerance) = gcra(self.budget_share(cpus));
        Config {
            timeout_tcp: self.tcp_timeout_s * hz,
            timeout_tcp_closing: self.tcp_closing_timeout_s * hz,
            timeout_udp: self.udp_timeout_s * hz,
            timeout_icmp: self.icmp_timeout_s * hz,
            timeout_other: self.other_timeout_s * hz,
            cache_ttl: hz,
            refresh: hz,
            rate_interval_ns: interval,
            rate_tolerance_ns: tolerance,
            emit_malformed: self.emit_malformed as u8,
            service_icmp_echo: self.service_icmp_echo as u8,
            loaded: 1,
            mark_dark: self.mark_dark as u8,
            replay: 0,
            _pad: [0; 3],
            replay_ns: 0,
            replay_jiffies: 0,
            target_interval_ns: target_interval,
            target_tolerance_ns: target_tolerance,
            budget_interval_ns: budget_interval,
            budget_tolerance_ns: budget_tolerance,
        }
    }
}

/// One CPU's share of `rate` events/s with `burst` at once, split over
/// `cpus` (no lock on the hot path): the sum never exceeds the flag.
fn share(rate: u32, burst: u32, cpus: u32) -> Option<CpuShare> {
    if rate == 0 {
        return None;
    }
    let cpus = u64::from(cpus.max(1));
    Some(CpuShare {
        interval_ns: (1_000_000_000 * cpus).div_ceil(u64::from(rate)),
        burst: (u64::from(burst) / cpus).max(1),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_is_split_so_the_sum_never_exceeds_the_flag() {
        let l = Limits {
            rate_limit: 10_000,
            rate_burst: 50_000,
            ..Limits::default()
        };
        for cpus in [1u32, 2, 3, 7, 64] {
            let s = l.cpu_share(cpus).expect("limiter on");
            // Events/s over all CPUs when every CPU is saturated.
            let total_rate = cpus as f64 * 1e9 / s.interval_ns as f64;
            assert!(total_rate <= 10_000.0, "{cpus} CPUs: {total_rate}/s");
            assert!(total_rate > 9_990.0, "{cpus} CPUs: {total_rate}/s");
            assert!(s.burst * cpus as u64 <= 50_000, "{cpus} CPUs");
            assert!(s.burst * cpus as u64 > 50_000 - cpus as u64, "{cpus} CPUs");
        }
        assert_eq!(Limits { rate_limit: 0, ..l }.cpu_share(2), None);
    }

    #[test]
    fn bad_limits_are_refused_with_the_flag_named() {
        let ok = Limits::default();
        assert_eq!(ok.validate(2), Ok(()));
        let e = Limits {
            rate_burst: 0,
            ..ok.clone()
        }
        .validate(2)
        .unwrap_err();
        assert!(e.to_string().contains("--rate-burst 0"), "{e}");
        assert!(Limits {
            rate_burst: 3,
            ..ok.clone()
        }
        .validate(4)
        .is_err());
        // Off: the burst does not matter.
        assert_eq!(
            Limits {
                rate_limit: 0,
                rate_burst: 0,
                ..ok.clone()
            }
            .validate(2),
            Ok(())
        );
        let e = Limits {
            udp_timeout_s: 0,
            ..ok.clone()
        }
        .validate(2)
        .unwrap_err();
        assert!(e.to_string().contains("--udp-timeout"), "{e}");
        assert!(Limits {
            tcp_timeout_s: u64::MAX,
            ..ok.clone()
        }
        .validate(2)
        .is_err());
        assert!(Limits {
            rate_limit: u32::MAX,
            ..ok
        }
        .validate(2)
        .is_err());
    }
}
