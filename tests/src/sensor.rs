//! Runs the `fireplot` binary on the lab router's `wan0` and collects what
//! it wrote: event lines and the final JSON summary.

use std::{
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Child, Stdio},
    sync::mpsc,
    time::Duration,
};

use anyhow::{bail, Context, Result};
use serde_json::Value;

use crate::{Lab, Node};

/// The fireplot binary: `$FIREPLOT_BIN`, else the workspace's release build.
pub fn fireplot_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("FIREPLOT_BIN") {
        return PathBuf::from(p);
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    root.join("target/release/fireplot")
}

/// The "N stored, M not stored" of `fireplot ingest`'s closing line in
/// its stderr `log`.
pub fn ingest_stored(log: &str) -> (u64, u64) {
    let line = log
        .lines()
        .find(|l| l.starts_with("ingest: "))
        .unwrap_or_else(|| panic!("no closing line: {log}"));
    let before = |word: &str| -> u64 {
        let at = line
            .find(word)
            .unwrap_or_else(|| panic!("no `{word}`: {line}"));
        line[..at]
            .split_whitespace()
            .last()
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no count before `{word}`: {line}"))
    };
    (before(" stored,"), before(" not stored"))
}

/// A running sensor.
pub struct Sensor {
    child: Child,
    pub alerts_path: PathBuf,
    pub events_path: PathBuf,
    pub stats_path: PathBuf,
    pub log_path: PathBuf,
}

/// `fireplot run` flags that turn every limit off (source, target, event
/// budget): one event per unsolicited packet until the ring is full.
pub const NO_LIMITS: [&str; 6] = [
    "--rate-limit",
    "0",
    "--target-limit",
    "0",
    "--event-budget",
    "0",
];

/// What a stopped sensor left.
pub struct Collected {
    /// Event lines (one packet each).
    pub events: Vec<Value>,
    /// Aggregate lines (`"aggregate": true`: counts of a flood past the
    /// kernel's limits).
    pub aggregates: Vec<Value>,
    /// Alert JSON lines of the live detector.
    pub alerts: Vec<Value>,
    /// The last summary (written at exit).
    pub stats: Value,
}

impl Sensor {
    /// Starts `fireplot run --iface wan0` in the router namespace, writing
    /// into `dir`, and waits until it has attached.
    pub fn start(lab: &Lab, dir: &Path, extra: &[&str]) -> Result<Sensor> {
        Self::start_with(lab, dir, extra, true)
    }

    /// As [`Sensor::start`]; without `--events-out` when `events` is false
    /// (long runs keep their events in `--db` only: [`Sensor::stop`] then
    /// reads no event lines).
    pub fn start_with(lab: &Lab, dir: &Path, extra: &[&str], events: bool) -> Result<Sensor> {
        std::fs::create_dir_all(dir)?;
        let events_path = dir.join("events.jsonl");
        let stats_path = dir.join("stats.jsonl");
        let log_path = dir.join("fireplot.log");
        let alerts_path = dir.join("alerts.jsonl");
        for p in [&events_path, &stats_path, &alerts_path] {
            let _ = std::fs::remove_file(p);
        }
        let bin = fireplot_bin();
        if !bin.exists() {
            bail!(
                "{} does not exist; build it with `cargo xtask build --release`",
                bin.display()
            );
        }
        let mut child = lab
            .command(
                Node::Router,
                bin.to_str().context("binary path is not UTF-8")?,
            )
            .args(["run", "--iface", "wan0", "--stats-json"])
            // One summary at exit unless the caller asks for more.
            .args(if extra.contains(&"--stats-every") {
                &[][..]
            } else {
                &["--stats-every", "1h"][..]
            })
            .args(if events {
                vec!["--events-out".as_ref(), events_path.as_os_str()]
            } else {
                Vec::new()
            })
            .arg("--stats-out")
            .arg(&stats_path)
            .arg("--alerts")
            .arg(&alerts_path)
            .args(extra)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("cannot start fireplot")?;
        let stderr = child.stderr.take().expect("piped stderr");
        let (tx, rx) = mpsc::channel();
        let log = log_path.clone();
        std::thread::spawn(move || {
            let mut file = std::fs::File::create(&log).ok();
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(f) = file.as_mut() {
                    use std::io::Write;
                    let _ = writeln!(f, "{line}");
                }
                if line.contains("fireplot attached to") {
                    let _ = tx.send(Ok(()));
                } else if line.starts_with("error:") {
                    let _ = tx.send(Err(line));
                }
            }
        });
        match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(Ok(())) => {}
            Ok(Err(line)) => {
                let _ = child.wait();
                bail!("fireplot failed to start: {line}");
            }
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                bail!(
                    "fireplot did not attach within 60 s; log: {}",
                    std::fs::read_to_string(&log_path).unwrap_or_default()
                );
            }
        }
        Ok(Sensor {
            child,
            alerts_path,
            events_path,
            stats_path,
            log_path,
        })
    }

    /// The sensor's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Event lines written so far (the sensor flushes its file every 500 ms).
    pub fn events_written(&self) -> usize {
        std::fs::read(&self.events_path)
            .map(|b| b.iter().filter(|&&c| c == b'\n').count())
            .unwrap_or(0)
    }

    /// Waits until the traffic just sent has been seen: the event file has
    /// stopped growing for a second (two flush periods), with at least
    /// `min` lines. Bounded at 30 s; instead of a fixed sleep, so a loaded
    /// machine (softirq deferred to ksoftirqd) only makes it slower.
    pub fn settle(&self, min: usize) -> usize {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        let mut last = self.events_written();
        let mut stable_since = std::time::Instant::now();
        loop {
            std::thread::sleep(Duration::from_millis(100));
            let now = self.events_written();
            if now != last {
                last = now;
                stable_since = std::time::Instant::now();
            } else if now >= min && stable_since.elapsed() >= Duration::from_secs(1) {
                return now;
            }
            if std::time::Instant::now() > deadline {
                return now;
            }
        }
    }

    /// Stops the sensor with SIGINT (as an operator would) and reads its output.
    pub fn stop(mut self) -> Result<Collected> {
        // SAFETY: plain kill(2) on our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Some(s) = self.child.try_wait()? {
                break s;
            }
            if std::time::Instant::now() > deadline {
                let _ = self.child.kill();
                bail!("fireplot did not exit within 30 s of SIGINT");
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        if !status.success() {
            bail!(
                "fireplot exited with {status}; log:\n{}",
                std::fs::read_to_string(&self.log_path).unwrap_or_default()
            );
        }
        let mut c = read_collected(&self.events_path, &self.stats_path)?;
        c.alerts = read_lines(&self.alerts_path)?;
        Ok(c)
    }
}

impl Drop for Sensor {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Reads event lines and the last summary line.
pub fn read_collected(events: &Path, stats: &Path) -> Result<Collected> {
    let text = std::fs::read_to_string(events).unwrap_or_default();
    let (aggregates, events): (Vec<Value>, Vec<Value>) = text
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).with_context(|| format!("bad event line: {l}")))
        .collect::<Result<Vec<Value>>>()?
        .into_iter()
        .partition(|v| v["aggregate"] == true);
    let stats_text = std::fs::read_to_string(stats)
        .with_context(|| format!("no summary at {}", stats.display()))?;
    let last = stats_text.lines().last().context("empty summary file")?;
    Ok(Collected {
        events,
        aggregates,
        alerts: Vec::new(),
        stats: serde_json::from_str(last)?,
    })
}

/// Reads a JSON-lines file (missing file: no lines).
pub fn read_lines(path: &Path) -> Result<Vec<Value>> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .map(|l| {
            serde_json::from_str(l)
                .with_context(|| format!("bad JSON line in {}: {l}", path.display()))
        })
        .collect()
}

impl Collected {
    /// Total packets of a class in the final summary.
    pub fn class_total(&self, class: &str) -> u64 {
        self.stats["classes"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter(|c| c["class"] == class)
                    .map(|c| c["packets"].as_u64().unwrap_or(0))
                    .sum()
            })
            .unwrap_or(0)
    }

    /// A kernel misc counter from the final summary.
    pub fn kernel(&self, name: &str) -> u64 {
        self.stats["kernel"][name].as_u64().unwrap_or(0)
    }

    /// Packets in the aggregate lines.
    pub fn aggregated_packets(&self) -> u64 {
        self.aggregates
            .iter()
            .map(|a| a["count"].as_u64().unwrap_or(1))
            .sum()
    }

    /// A userspace counter from the final summary.
    pub fn user(&self, name: &str) -> u64 {
        self.stats["userspace"][name].as_u64().unwrap_or(0)
    }
}
