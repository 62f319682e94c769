//! Kernel clocks: events carry `bpf_ktime_get_ns()` (CLOCK_MONOTONIC) and
//! flows carry jiffies. Userspace measures HZ once and converts monotonic
//! timestamps to wall-clock time with an offset re-read on every batch, so
//! an NTP step moves later events with it.

use std::io;

/// HZ values Linux is configured with.
const HZ_CHOICES: [u64; 4] = [100, 250, 300, 1000];

/// What userspace knows of the kernel's clocks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Clock {
    /// Jiffies per second.
    pub hz: u64,
}

impl Default for Clock {
    fn default() -> Self {
        Clock { hz: 250 }
    }
}

impl Clock {
    /// HZ from two `[jiffies, ktime_ns]` samples taken ≥ 100 ms apart.
    pub fn from_samples(first: [u64; 2], second: [u64; 2]) -> io::Result<Clock> {
        let dj = second[0].wrapping_sub(first[0]) as f64;
        let dns = second[1].wrapping_sub(first[1]) as f64;
        if dns < 50_000_000.0 || dj <= 0.0 {
            return Err(io::Error::other(format!(
                "kernel clock samples too close or not moving (Δjiffies {dj}, Δns {dns})"
            )));
        }
        let measured = dj / (dns / 1e9);
        let hz = HZ_CHOICES
            .iter()
            .copied()
            .min_by(|a, b| {
                (*a as f64 - measured)
                    .abs()
                    .total_cmp(&(*b as f64 - measured).abs())
            })
            .unwrap_or(250);
        Ok(Clock { hz })
    }
}

fn clock_ns(id: libc::clockid_t) -> i128 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid pointer to a timespec; both clocks always exist on Linux.
    unsafe { libc::clock_gettime(id, &mut ts) };
    ts.tv_sec as i128 * 1_000_000_000 + ts.tv_nsec as i128
}

/// Nanoseconds to add to a CLOCK_MONOTONIC reading to get Unix time.
pub fn monotonic_to_wall_offset() -> i128 {
    // Take the narrowest of three bracketings to keep the error well under a
    // microsecond even when the thread is preempted between the reads.
    let mut best: Option<(i128, i128)> = None;
    for _ in 0..3 {
        let m1 = clock_ns(libc::CLOCK_MONOTONIC);
        let r = clock_ns(libc::CLOCK_REALTIME);
        let m2 = clock_ns(libc::CLOCK_MONOTONIC);
        let width = m2 - m1;
        let offset = r - (m1 + width / 2);
        if best.is_none_or(|(w, _)| width < w) {
            best = Some((width, offset));
        }
    }
    best.map(|(_, o)| o).unwrap_or(0)
}

/// Current CLOCK_MONOTONIC in nanoseconds.
pub fn monotonic_ns() -> u64 {
    clock_ns(libc::CLOCK_MONOTONIC) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hz_snaps_to_kernel_choices() {
        let c = Clock::from_samples([1000, 0], [1025, 100_000_000]).unwrap();
        assert_eq!(c.hz, 250);
        let c = Clock::from_samples([0, 0], [121, 120_000_000]).unwrap();
        assert_eq!(c.hz, 1000);
        let c = Clock::from_samples([0, 0], [12, 120_000_000]).unwrap();
        assert_eq!(c.hz, 100);
        assert!(Clock::from_samples([0, 0], [0, 120_000_000]).is_err());
        assert!(Clock::from_samples([0, 0], [5, 1_000]).is_err());
    }

    #[test]
    fn wall_offset_matches_realtime() {
        let offset = monotonic_to_wall_offset();
        let wall = monotonic_ns() as i128 + offset;
        let real = clock_ns(libc::CLOCK_REALTIME);
        assert!(
            (wall - real).abs() < 1_000_000,
            "offset off by {} ns",
            wall - real
        );
    }
}
