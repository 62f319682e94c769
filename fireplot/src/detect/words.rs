//! Numbers and durations in the alerts' words, and the severity scale.

/// "4 a day", "0.3 a day", "2.5 an hour".
pub(super) fn per_day(rate: f64) -> String {
    if rate >= 48.0 {
        format!("{:.0} an hour", rate / 24.0)
    } else if rate >= 10.0 {
        format!("{rate:.0} a day")
    } else {
        format!("{rate:.1} a day")
    }
}

/// 1,234,567
pub fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// "0.4 s", "12 s", "3.5 min", "2.1 h"
pub fn human_secs(s: f64) -> String {
    if s < 10.0 {
        format!("{s:.1} s")
    } else if s < 120.0 {
        format!("{s:.0} s")
    } else if s < 7200.0 {
        format!("{:.1} min", s / 60.0)
    } else {
        format!("{:.1} h", s / 3600.0)
    }
}

/// 1 plus how many of `steps` (ascending) `x` reaches: the common shape
/// of the severity table (docs/detection.md).
pub fn level(x: u64, steps: [u64; 4]) -> u8 {
    1 + steps.iter().filter(|s| x >= **s).count() as u8
}

/// Severity of a scan of `breadth` distinct ports or targets (`steps`):
/// one more for persistence (an hour or longer) once it is broad (25 or
/// more), at most 5; a scan of 5 or fewer is never above 2.
pub fn scan_severity(breadth: u64, steps: [u64; 4], duration_s: f64) -> u8 {
    let mut s = level(breadth, steps);
    if duration_s >= 3600.0 && breadth >= 25 {
        s += 1;
    }
    if breadth <= 5 {
        s = s.min(2);
    }
    s.min(5)
}

/// psad-like danger level from the evidence.
pub fn severity(probes: u64, breadth: u64, duration_s: f64) -> u8 {
    let mut s: u8 = match breadth.max(probes / 10) {
        0..=24 => 1,
        25..=99 => 2,
        100..=999 => 3,
        1000..=9999 => 4,
        _ => 5,
    };
    if duration_s > 3600.0 && s < 5 {
        s += 1;
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_well() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(1234567), "1,234,567");
        assert_eq!(human_secs(0.42), "0.4 s");
        assert_eq!(human_secs(4.0), "4.0 s");
        assert_eq!(human_secs(300.0), "5.0 min");
        assert_eq!(human_secs(43200.0), "12.0 h");
    }

    #[test]
    fn severity_grows_with_evidence() {
        assert_eq!(severity(10, 10, 1.0), 1);
        assert_eq!(severity(1000, 1000, 4.0), 4);
        assert_eq!(severity(65535, 65535, 30.0), 5);
        assert!(severity(144, 144, 43200.0) > severity(144, 144, 60.0));
    }
}
