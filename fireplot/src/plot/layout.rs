//! Where things go on a fireplot: time → x, log-port → y, the lane for
//! port-less protocols, and the tick positions.

use chrono::{DateTime, FixedOffset, Local, Offset, TimeZone, Utc};

/// Ticks of the original fireplot's port axis.
pub const PORT_TICKS: [u16; 18] = [
    1, 7, 22, 53, 80, 123, 161, 443, 587, 1024, 1433, 3306, 5000, 6881, 10000, 20000, 50000, 65535,
];
/// Ports an operator looks for today, added where they do not crowd the others.
pub const EXTRA_PORT_TICKS: [u16; 4] = [23, 3389, 7547, 37777];

/// Rows of the lane under the port axis.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lane {
    Icmp,
    Other,
    /// TCP/UDP without a port: non-first fragments, port 0.
    NoPort,
}

impl Lane {
    pub const ALL: [Lane; 3] = [Lane::Icmp, Lane::Other, Lane::NoPort];
    pub fn label(self) -> &'static str {
        match self {
            Lane::Icmp => "ICMP",
            Lane::Other => "other",
            Lane::NoPort => "no port",
        }
    }
}

/// Pixel geometry of one plot.
#[derive(Clone, Debug)]
pub struct Layout {
    pub width: u32,
    pub height: u32,
    /// Plot area: left, top, right (exclusive), bottom of the port area (exclusive).
    pub left: u32,
    pub top: u32,
    pub right: u32,
    pub ports_bottom: u32,
    /// Lane rows start under the port area.
    pub lane_top: u32,
    pub lane_row: u32,
    pub from_ns: i64,
    pub to_ns: i64,
}

impl Layout {
    pub fn new(width: u32, height: u32, from_ns: i64, to_ns: i64) -> Layout {
        let width = width.max(320);
        let height = height.max(240);
        let left = 78;
        let right = width - 24;
        let top = 44;
        let lane_row = 12;
        let bottom_margin = 74; // x labels + legend
        let lane_total = lane_row * Lane::ALL.len() as u32;
        let ports_bottom = height - bottom_margin - lane_total - 8;
        Layout {
            width,
            height,
            left,
            top,
            right,
            ports_bottom,
            lane_top: ports_bottom + 8,
            lane_row,
            from_ns,
            to_ns: to_ns.max(from_ns + 1),
        }
    }

    pub fn plot_width(&self) -> u32 {
        self.right - self.left
    }

    pub fn lane_bottom(&self) -> u32 {
        self.lane_top + self.lane_row * Lane::ALL.len() as u32
    }

    /// x of a time, if inside the range.
    pub fn x(&self, ts_ns: i64) -> Option<u32> {
        if ts_ns < self.from_ns || ts_ns >= self.to_ns {
            return None;
        }
        let span = (self.to_ns - self.from_ns) as f64;
        let frac = (ts_ns - self.from_ns) as f64 / span;
        let x = self.left + (frac * self.plot_width() as f64) as u32;
        Some(x.min(self.right - 1))
    }

    /// y of a port (1..=65535) on the log axis.
    pub fn y_port(&self, port: u16) -> u32 {
        let p = port.max(1) as f64;
        let h = (self.ports_bottom - self.top - 1) as f64;
        let frac = p.ln() / 65535f64.ln();
        self.ports_bottom - 1 - (frac * h).round() as u32
    }

    /// y of the middle of a lane row.
    pub fn y_lane(&self, lane: Lane) -> u32 {
        let i = Lane::ALL.iter().position(|l| *l == lane).unwrap_or(0) as u32;
        self.lane_top + i * self.lane_row + self.lane_row / 2
    }

    /// Port ticks that fit: the original's, plus the extras that keep
    /// `min_gap` pixels from every other tick.
    pub fn port_ticks(&self, min_gap: u32) -> Vec<u16> {
        let mut ticks: Vec<u16> = PORT_TICKS.to_vec();
        for extra in EXTRA_PORT_TICKS {
            let y = self.y_port(extra);
            if ticks.iter().all(|t| self.y_port(*t).abs_diff(y) >= min_gap) {
                ticks.push(extra);
            }
        }
        ticks.sort_unstable();
        // On a short plot, thin the originals too: keep a tick only if it
        // clears the previous kept one.
        let mut kept: Vec<u16> = Vec::new();
        for t in ticks {
            if kept
                .last()
                .is_none_or(|k| self.y_port(*k).abs_diff(self.y_port(t)) >= min_gap)
                || t == 65535
            {
                kept.push(t);
            }
        }
        kept
    }
}

/// The time zone labels are written in.
#[derive(Clone, Copy, Debug)]
pub struct Zone {
    pub offset: FixedOffset,
    pub utc: bool,
}

impl Zone {
    /// UTC, or the machine's local offset at `at_ns`.
    pub fn new(utc: bool, at_ns: i64) -> Zone {
        let offset = if utc {
            Utc.fix()
        } else {
            Local.timestamp_nanos(at_ns).offset().fix()
        };
        Zone { offset, utc }
    }

    pub fn name(&self) -> String {
        if self.utc {
            "UTC".into()
        } else {
            format!("UTC{}", self.offset)
        }
    }

    pub fn format(&self, ts_ns: i64, fmt: &str) -> String {
        DateTime::<Utc>::from_timestamp_nanos(ts_ns)
            .with_timezone(&self.offset)
            .format(fmt)
            .to_string()
    }
}

const STEPS_S: [i64; 20] = [
    1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400,
    172800, 604800,
];

/// Time ticks: (ts_ns, label), aligned to round times in `zone`.
pub fn time_ticks(from_ns: i64, to_ns: i64, zone: &Zone, max_ticks: i64) -> Vec<(i64, String)> {
    let span_s = ((to_ns - from_ns) / 1_000_000_000).max(1);
    let step = STEPS_S
        .iter()
        .copied()
        .find(|s| span_s / s <= max_ticks)
        .unwrap_or(604800);
    let off = zone.offset.local_minus_utc() as i64;
    let from_local = from_ns.div_euclid(1_000_000_000) + off;
    let mut t = (from_local + step - 1).div_euclid(step) * step - off;
    let fmt = if span_s > 86400 {
        "%m-%d %H:%M"
    } else if step < 60 {
        "%H:%M:%S"
    } else {
        "%H:%M"
    };
    let mut out = Vec::new();
    while t * 1_000_000_000 < to_ns && out.len() < 64 {
        out.push((t * 1_000_000_000, zone.format(t * 1_000_000_000, fmt)));
        t += step;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_axis_is_monotonic_and_spans_the_area() {
        let l = Layout::new(1600, 900, 0, 1_000_000_000);
        assert_eq!(l.y_port(65535), l.top);
        assert_eq!(l.y_port(1), l.ports_bottom - 1);
        let mut last = u32::MAX;
        for p in [1u16, 2, 10, 100, 1000, 10000, 65535] {
            let y = l.y_port(p);
            assert!(y < last || p == 1, "y must fall as the port grows");
            last = y;
        }
        // Log scale: a decade is the same height anywhere.
        let d1 = l.y_port(10) as i64 - l.y_port(100) as i64;
        let d2 = l.y_port(1000) as i64 - l.y_port(10000) as i64;
        assert!((d1 - d2).abs() <= 1);
    }

    #[test]
    fn extra_ticks_are_added_only_where_they_fit() {
        let big = Layout::new(1600, 1600, 0, 1);
        let ticks = big.port_ticks(12);
        assert!(ticks.contains(&7547) && ticks.contains(&37777));
        let small = Layout::new(400, 300, 0, 1);
        let t = small.port_ticks(12);
        assert!(t.contains(&1) && t.contains(&65535));
        for w in t.windows(2) {
            assert!(small.y_port(w[0]).abs_diff(small.y_port(w[1])) >= 12 || w[1] == 65535);
        }
    }

    #[test]
    fn time_ticks_are_round_in_the_zone() {
        let z = Zone::new(true, 0);
        // 00:07 .. 06:07 UTC on 2027-01-15
        let from = 1_800_000_000_000_000_000 + 7 * 60 * 1_000_000_000;
        let to = from + 6 * 3600 * 1_000_000_000;
        let t = time_ticks(from, to, &z, 12);
        assert!(t.len() >= 6 && t.len() <= 12, "{t:?}");
        for (ns, label) in &t {
            assert_eq!(ns % (1800 * 1_000_000_000), 0, "aligned");
            assert!(label.ends_with(":00") || label.ends_with(":30"), "{label}");
        }
    }
}
