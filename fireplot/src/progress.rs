//! Progress of long work (`ingest`, `replay`, `detect`, `enrich`, `plot`
//! over large inputs): a bar on stderr when it is a terminal (bytes or
//! items done, rate, time left), a one-line log every [`LOG_EVERY`]
//! otherwise, nothing with `--quiet`. The bar is cleared at the end, so a
//! command's closing line is the same with or without it.

use std::{
    io::IsTerminal,
    time::{Duration, Instant},
};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// How often the log line is written when stderr is not a terminal.
pub const LOG_EVERY: Duration = Duration::from_secs(10);

/// What is counted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    /// Bytes of the input (a file read from start to end).
    Bytes,
    /// Items of the input, named (frames, events, sources).
    Items(&'static str),
}

/// How progress shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Show {
    /// A bar on stderr.
    Bar,
    /// A log line every [`LOG_EVERY`].
    Log,
    /// Nothing.
    Off,
}

impl Show {
    /// A bar on a terminal, a log line elsewhere, nothing when quiet.
    pub fn choose(stderr_is_terminal: bool, quiet: bool) -> Show {
        match (quiet, stderr_is_terminal) {
            (true, _) => Show::Off,
            (false, true) => Show::Bar,
            (false, false) => Show::Log,
        }
    }
}

/// Progress of one piece of work. Cheap to call per item: the bar or the
/// clock is looked at only every [`Progress::step`] units.
pub struct Progress {
    what: &'static str,
    unit: Unit,
    total: Option<u64>,
    done: u64,
    /// `done` at which the bar or the clock is looked at next.
    next: u64,
    step: u64,
    show: Show,
    bar: Option<ProgressBar>,
    started: Instant,
    last_log: Instant,
}

impl Progress {
    /// Progress of `what` (the command: "ingest"), out of `total` when it
    /// is known; shown as stderr allows and `quiet` asks.
    pub fn start(what: &'static str, unit: Unit, total: Option<u64>, quiet: bool) -> Progress {
        Self::with_show(
            what,
            unit,
            total,
            Show::choose(std::io::stderr().is_terminal(), quiet),
        )
    }

    /// As [`Progress::start`], shown as `show` says.
    pub fn with_show(what: &'static str, unit: Unit, total: Option<u64>, show: Show) -> Progress {
        let bar = (show == Show::Bar).then(|| bar(what, unit, total));
        let now = Instant::now();
        Progress {
            what,
            unit,
            total,
            done: 0,
            step: match unit {
                Unit::Bytes => 1 << 16,
                Unit::Items(_) => 1 << 10,
            },
            next: 0,
            show,
            bar,
            started: now,
            last_log: now,
        }
    }

    /// How progress shows.
    pub fn show(&self) -> Show {
        self.show
    }

    /// `n` more units done.
    pub fn add(&mut self, n: u64) {
        self.set(self.done + n);
    }

    /// `done` units done in all.
    pub fn set(&mut self, done: u64) {
        self.done = done;
        if done >= self.next {
            self.next = done + self.step;
            self.tick();
        }
    }

    fn tick(&mut self) {
        match (&self.bar, self.show) {
            (Some(b), _) => b.set_position(self.done),
            (None, Show::Log) if self.last_log.elapsed() >= LOG_EVERY => {
                self.last_log = Instant::now();
                log::info!("{}", self.line(self.started.elapsed()));
            }
            _ => {}
        }
    }

    /// The log line after `elapsed`: what, done (of total), rate, time left.
    pub fn line(&self, elapsed: Duration) -> String {
        log_line(self.what, self.unit, self.done, self.total, elapsed)
    }

    /// The work is over: the bar goes (the closing line follows alone).
    pub fn finish(self) {
        if let Some(b) = self.bar {
            b.finish_and_clear();
        }
    }
}

fn bar(what: &'static str, unit: Unit, total: Option<u64>) -> ProgressBar {
    let counts = match unit {
        Unit::Bytes => "{binary_bytes}".to_string(),
        Unit::Items(name) => format!("{{human_pos}} {name}"),
    };
    let (template, b) = match total {
        Some(t) => (
            format!(
                "{{prefix}} {{wide_bar}} {counts} {}, {{per_sec}}, ETA {{eta}}",
                match unit {
                    Unit::Bytes => "of {binary_total_bytes}",
                    Unit::Items(_) => "of {human_len}",
                }
            ),
            ProgressBar::with_draw_target(Some(t), ProgressDrawTarget::stderr()),
        ),
        None => (
            format!("{{prefix}} {{spinner}} {counts}, {{per_sec}}, {{elapsed}}"),
            ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr()),
        ),
    };
    let template = match unit {
        Unit::Bytes => template.replace("{per_sec}", "{binary_bytes_per_sec}"),
        Unit::Items(_) => template,
    };
    let style =
        ProgressStyle::with_template(&template).unwrap_or_else(|_| ProgressStyle::default_bar());
    b.set_style(style);
    b.set_prefix(what);
    b.enable_steady_tick(Duration::from_millis(200));
    b
}

/// "ingest: 1.5 GiB of 3.0 GiB (50 %), 25.0 MiB/s, about 61 s left",
/// "replay: 120000 frames, 12000 frames/s".
pub fn log_line(
    what: &str,
    unit: Unit,
    done: u64,
    total: Option<u64>,
    elapsed: Duration,
) -> String {
    let secs = elapsed.as_secs_f64().max(1e-3);
    let rate = done as f64 / secs;
    let amount = |n: u64| match unit {
        Unit::Bytes => bytes(n as f64),
        Unit::Items(name) => format!("{n} {name}"),
    };
    let per_sec = match unit {
        Unit::Bytes => format!("{}/s", bytes(rate)),
        Unit::Items(name) => format!("{rate:.0} {name}/s"),
    };
    match total {
        Some(t) if t > 0 => {
            let left = t.saturating_sub(done) as f64 / rate.max(1e-9);
            let of = match unit {
                Unit::Bytes => bytes(t as f64),
                Unit::Items(_) => t.to_string(),
            };
            format!(
                "{what}: {} of {of} ({:.0} %), {per_sec}, about {left:.0} s left",
                amount(done),
                done as f64 * 100.0 / t as f64
            )
        }
        _ => format!("{what}: {}, {per_sec}", amount(done)),
    }
}

/// 1536 → "1.5 KiB".
fn bytes(n: f64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n;
    let mut i = 0;
    while v >= 1024.0 && i < UNITS.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{v:.0} B")
    } else {
        format!("{v:.1} {}", UNITS[i])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_terminal_gets_a_bar_anything_else_a_log_line_and_quiet_nothing() {
        assert_eq!(Show::choose(true, false), Show::Bar);
        assert_eq!(Show::choose(false, false), Show::Log);
        assert_eq!(Show::choose(true, true), Show::Off);
        assert_eq!(Show::choose(false, true), Show::Off);
        // Not a terminal: no bar is made at all.
        let p = Progress::with_show("ingest", Unit::Bytes, Some(10), Show::Log);
        assert!(p.bar.is_none());
        p.finish();
    }

    #[test]
    fn the_log_line_says_what_how_much_how_fast_and_how_long_still() {
        let gib = 1u64 << 30;
        assert_eq!(
            log_line(
                "ingest",
                Unit::Bytes,
                gib + gib / 2,
                Some(3 * gib),
                Duration::from_secs(60)
            ),
            "ingest: 1.5 GiB of 3.0 GiB (50 %), 25.6 MiB/s, about 60 s left"
        );
        assert_eq!(
            log_line(
                "replay",
                Unit::Items("frames"),
                120_000,
                None,
                Duration::from_secs(10)
            ),
            "replay: 120000 frames, 12000 frames/s"
        );
        assert_eq!(
            log_line(
                "enrich",
                Unit::Items("events"),
                250,
                Some(1000),
                Duration::from_secs(5)
            ),
            "enrich: 250 events of 1000 (25 %), 50 events/s, about 15 s left"
        );
    }

    #[test]
    fn counting_is_cheap_and_exact() {
        let mut p = Progress::with_show("detect", Unit::Items("events"), None, Show::Off);
        for _ in 0..10_000 {
            p.add(1);
        }
        assert_eq!(p.done, 10_000);
        assert!(p.next > p.done && p.next <= p.done + p.step);
    }
}
