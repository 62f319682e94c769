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
    /// Protocols with ports, without one: non-first fragments, port 0.
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
        self.y_frac(p.ln() / 65535f64.ln())
    }

    /// y of a fraction of the log axis (0: port 1, 1: port 65535).
    pub fn y_frac(&self, frac: f64) -> u32 {
        let h = (self.ports_bottom - self.top - 1) as f64;
        self.ports_bottom - 1 - (frac.clamp(0.0, 1.0) * h).round() as u32
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
/// Month steps past a week.
const STEPS_MONTHS: [u32; 5] = [1, 2, 3, 6, 12];
/// Pixels per character of a tick label (12 px sans), and between labels.
const TICK_CHAR_PX: u32 = 7;
const TICK_GAP_PX: u32 = 16;

/// How labels of a step are written: (format, format where the date
/// changes, characters of the wider one).
fn tick_format(step_s: i64, span_s: i64) -> (&'static str, &'static str, u32) {
    if step_s < 60 {
        (
            "%H:%M:%S",
            "%m-%d %H:%M:%S",
            if span_s > 86_400 { 14 } else { 8 },
        )
    } else if step_s < 86_400 {
        ("%H:%M", "%m-%d %H:%M", 11)
    } else {
        ("%m-%d", "%Y-%m-%d", 10)
    }
}

/// Time ticks that fit `width_px` without overlapping: (ts_ns, label),
/// aligned to round times in `zone`. The step and the label's form follow
/// the range: HH:MM:SS, HH:MM (the date written where it changes), MM-DD
/// (the year where it changes), YYYY-MM for months.
pub fn time_ticks(from_ns: i64, to_ns: i64, zone: &Zone, width_px: u32) -> Vec<(i64, String)> {
    const NS: i64 = 1_000_000_000;
    let span_s = ((to_ns - from_ns) / NS).max(1);
    let fits = |n: i64, chars: u32| {
        n * i64::from(chars * TICK_CHAR_PX + TICK_GAP_PX) <= i64::from(width_px.max(1))
    };
    let step = STEPS_S.iter().copied().find(|s| {
        let (_, _, chars) = tick_format(*s, span_s);
        fits(span_s / s + 1, chars)
    });
    let Some(step) = step else {
        return month_ticks(from_ns, to_ns, zone, width_px);
    };
    let (fmt, dated, _) = tick_format(step, span_s);
    let off = zone.offset.local_minus_utc() as i64;
    let from_local = from_ns.div_euclid(NS) + off;
    let mut t = (from_local + step - 1).div_euclid(step) * step - off;
    let mut out = Vec::new();
    let mut last_day = String::new();
    let day_fmt = if step < 86_400 { "%Y-%m-%d" } else { "%Y" };
    while t * NS < to_ns && out.len() < 200 {
        let ns = t * NS;
        let day = zone.format(ns, day_fmt);
        // The date (or, for day steps, the year) where it changes; a range
        // within one day needs none.
        let changed = day != last_day;
        let label = if changed && (step >= 86_400 || span_s > 86_400) {
            zone.format(ns, dated)
        } else {
            zone.format(ns, fmt)
        };
        last_day = day;
        out.push((ns, label));
        t += step;
    }
    out
}

/// Month ticks (`YYYY-MM`), for ranges of months and years.
fn month_ticks(from_ns: i64, to_ns: i64, zone: &Zone, width_px: u32) -> Vec<(i64, String)> {
    use chrono::{Datelike, NaiveDate};
    let to_local = |ns: i64| {
        DateTime::<Utc>::from_timestamp_nanos(ns)
            .with_timezone(&zone.offset)
            .date_naive()
    };
    let (a, b) = (to_local(from_ns), to_local(to_ns));
    let months = (b.year() - a.year()) * 12 + b.month() as i32 - a.month() as i32 + 1;
    let per = 7 * TICK_CHAR_PX + TICK_GAP_PX;
    let k = STEPS_MONTHS
        .iter()
        .copied()
        .find(|k| (months as u32 / k + 1) * per <= width_px.max(1))
        .unwrap_or(12 * (1 + months as u32 * per / width_px.max(1) / 12));
    let mut out = Vec::new();
    let (mut y, mut m) = (a.year(), a.month());
    // The first month start at or after `from`, on a multiple of k months.
    loop {
        let idx = (y * 12 + m as i32 - 1) as u32;
        if idx.is_multiple_of(k) {
            if let Some(ns) = NaiveDate::from_ymd_opt(y, m, 1)
                .and_then(|d| d.and_hms_opt(0, 0, 0))
                .and_then(|d| zone.offset.from_local_datetime(&d).single())
                .and_then(|d| d.timestamp_nanos_opt())
            {
                if ns >= to_ns || out.len() >= 200 {
                    break;
                }
                if ns >= from_ns {
                    out.push((ns, zone.format(ns, "%Y-%m")));
                }
            }
        }
        m += 1;
        if m > 12 {
            m = 1;
            y += 1;
        }
        if y > b.year() + 1 {
            break;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Labels never overlap, whatever the range, and their form follows it.
    #[test]
    fn time_labels_never_overlap() {
        let z = Zone::new(true, 0);
        let from = 1_800_000_000_000_000_000i64;
        const S: i64 = 1_000_000_000;
        for (span, width, form) in [
            (90 * S, 1500u32, "HH:MM:SS"),
            (6 * 3600 * S, 1500, "HH:MM"),
            (3 * 86_400 * S, 1500, "dated"),
            (30 * 86_400 * S, 1500, "MM-DD"),
            (60 * 86_400 * S, 1500, "MM-DD"),
            (183 * 86_400 * S, 1500, "YYYY-MM"),
            (183 * 86_400 * S, 500, "YYYY-MM"),
            (3 * 365 * 86_400 * S, 1500, "YYYY-MM"),
            (86_400 * S, 320, "HH:MM"),
        ] {
            let t = time_ticks(from, from + span, &z, width);
            assert!(t.len() >= 2, "{span} {width}: {t:?}");
            let x = |ns: i64| (ns - from) as f64 / span as f64 * width as f64;
            for w in t.windows(2) {
                let room = x(w[1].0) - x(w[0].0);
                let need = (w[0].1.len().max(w[1].1.len()) as u32 * TICK_CHAR_PX) as f64;
                assert!(
                    room >= need,
                    "{span} {width}: `{}` and `{}` overlap: {t:?}",
                    w[0].1,
                    w[1].1
                );
            }
            let first = &t[0].1;
            match form {
                "HH:MM:SS" => assert_eq!(first.len(), 8, "{first}"),
                "HH:MM" => assert!(t.iter().all(|l| l.1.len() == 5 || l.1.len() == 11), "{t:?}"),
                "dated" => assert!(
                    t.iter().any(|l| l.1.len() == 11),
                    "the date where it changes: {t:?}"
                ),
                "MM-DD" => assert!(
                    t[1..].iter().all(|l| l.1.len() == 5 || l.1.len() == 10),
                    "{t:?}"
                ),
                _ => assert!(
                    t.iter().all(|l| l.1.len() == 7 && l.1.starts_with("20")),
                    "{t:?}"
                ),
            }
        }
    }

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
        let t = time_ticks(from, to, &z, 1000);
        assert!(t.len() >= 6 && t.len() <= 13, "{t:?}");
        for (ns, label) in &t {
            assert_eq!(ns % (1800 * 1_000_000_000), 0, "aligned");
            assert!(label.ends_with(":00") || label.ends_with(":30"), "{label}");
        }
    }
}
