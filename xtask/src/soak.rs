//! `cargo xtask soak --minutes N`: the lab sensor with `--db`, `--retain`
//! and live detection under a steady mixed load, for N minutes. At start and
//! every minute it prints the daemon's RSS, open fds, database size, events
//! stored and every loss counter, and at the end whether memory and fds
//! stayed flat after warm-up and the losses stayed 0.

use std::{
    path::{Path, PathBuf},
    process::Child,
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};
use fireplot_tests::{addr, sensor::Sensor, Lab, Node};
use serde_json::Value;

/// Load sources: (source address, hping3 arguments). About 3,500 events/s
/// in all: TCP SYNs walking ports, UDP probes, ICMP echo, from 4 sources.
fn load(lab: &Lab, secs: u64) -> Result<Vec<Child>> {
    let mut children = Vec::new();
    let jobs: [(String, &[&str]); 4] = [
        (addr::extra_v4(20), &["-S", "-p", "++1", "-i", "u1000"]),
        (addr::extra_v4(21), &["-S", "-p", "++1000", "-i", "u1000"]),
        (addr::extra_v4(22), &["--udp", "-p", "++1", "-i", "u1000"]),
        (addr::extra_v4(23), &["--icmp", "-i", "u2000"]),
    ];
    for (src, args) in jobs {
        let child = lab
            .command(Node::Inet, "timeout")
            .args(["-s", "INT", &secs.to_string(), "hping3", "-q", "-a", &src])
            .args(args)
            .arg(addr::LAN_V4)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .context("cannot start hping3")?;
        children.push(child);
    }
    Ok(children)
}

struct Sample {
    minute: u64,
    rss_kib: u64,
    fds: u64,
    db_bytes: u64,
    stored: u64,
    events_sent: u64,
    losses: Vec<(String, u64)>,
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0)
}

fn fds(pid: u32) -> u64 {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count() as u64)
}

fn db_bytes(db: &Path) -> u64 {
    ["", "-wal", "-shm"]
        .iter()
        .filter_map(|ext| {
            let mut p = db.as_os_str().to_owned();
            p.push(ext);
            std::fs::metadata(PathBuf::from(p)).ok()
        })
        .map(|m| m.len())
        .sum()
}

fn last_summary(stats: &Path) -> Option<Value> {
    let text = std::fs::read_to_string(stats).ok()?;
    serde_json::from_str(text.lines().last()?).ok()
}

/// Every counter that means something was lost.
fn losses(s: &Value) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    for k in ["ring_full", "suppressed", "flow_insert_failed"] {
        out.push((k.to_string(), s["kernel"][k].as_u64().unwrap_or(0)));
    }
    for k in ["decode_errors", "write_errors"] {
        out.push((k.to_string(), s["userspace"][k].as_u64().unwrap_or(0)));
    }
    if let Some(store) = s["store"].as_object() {
        for (k, v) in store {
            if k.contains("not_stored") {
                out.push((format!("store.{k}"), v.as_u64().unwrap_or(0)));
            }
        }
    }
    out.push((
        "detect.sources_evicted".into(),
        s["detect"]["sources_evicted"].as_u64().unwrap_or(0),
    ));
    out
}

fn sample(minute: u64, sensor: &Sensor, db: &Path, stats: &Path) -> Sample {
    let s = last_summary(stats).unwrap_or(Value::Null);
    Sample {
        minute,
        rss_kib: rss_kib(sensor.pid()),
        fds: fds(sensor.pid()),
        db_bytes: db_bytes(db),
        stored: s["store"]["stored"].as_u64().unwrap_or(0),
        events_sent: s["kernel"]["events_sent"].as_u64().unwrap_or(0),
        losses: losses(&s),
    }
}

fn print(s: &Sample) {
    let losses: Vec<String> = s.losses.iter().map(|(k, v)| format!("{k} {v}")).collect();
    println!(
        "soak: min {:>3}  rss {:>7} KiB  fds {:>3}  db {:>8} KiB  stored {:>10}  sent {:>10}  losses: {}",
        s.minute,
        s.rss_kib,
        s.fds,
        s.db_bytes / 1024,
        s.stored,
        s.events_sent,
        losses.join(", ")
    );
}

pub fn soak(prefix: &str, minutes: u64, bin: &Path) -> Result<()> {
    if minutes == 0 {
        bail!("--minutes must be at least 1");
    }
    std::env::set_var("FIREPLOT_BIN", bin);
    let dir = fireplot_tests::sensor::fireplot_bin()
        .parent()
        .context("binary folder")?
        .join(format!("soak-{prefix}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let db = dir.join("soak.db");
    let lab = Lab::up(prefix)?;
    // Events go to the database only: a soak writes millions.
    let sensor = Sensor::start_with(
        &lab,
        &dir,
        &[
            "--db",
            db.to_str().context("path")?,
            // Short enough that retention deletes during the soak.
            "--retain",
            "10m",
            "--stats-every",
            "60s",
        ],
        false,
    )?;
    let secs = minutes * 60;
    let mut load = load(&lab, secs)?;
    let started = Instant::now();
    let mut samples = vec![sample(0, &sensor, &db, &sensor.stats_path)];
    print(&samples[0]);
    for minute in 1..=minutes {
        let due = started + Duration::from_secs(minute * 60 + 2);
        while Instant::now() < due {
            std::thread::sleep(Duration::from_millis(500));
        }
        let s = sample(minute, &sensor, &db, &sensor.stats_path);
        print(&s);
        samples.push(s);
    }
    for c in load.iter_mut() {
        let _ = c.wait();
    }
    let c = sensor.stop()?;
    println!("soak: final summary {}", c.stats);
    // Flat after warm-up: the second half's RSS and fds against the end of the first.
    let warm = &samples[samples.len() / 2];
    let last = samples.last().expect("samples");
    let max_rss = samples[samples.len() / 2..]
        .iter()
        .map(|s| s.rss_kib)
        .max()
        .unwrap_or(0);
    let max_fds = samples[samples.len() / 2..]
        .iter()
        .map(|s| s.fds)
        .max()
        .unwrap_or(0);
    println!(
        "soak: after warm-up (minute {}): rss {} → {} KiB (max {}), fds {} → {} (max {}); events sent {}, stored {}",
        warm.minute, warm.rss_kib, last.rss_kib, max_rss, warm.fds, last.fds, max_fds,
        c.stats["kernel"]["events_sent"], c.stats["store"]["stored"]
    );
    let lost: Vec<String> = losses(&c.stats)
        .into_iter()
        .filter(|(_, v)| *v > 0)
        .map(|(k, v)| format!("{k} {v}"))
        .collect();
    if lost.is_empty() {
        println!("soak: no losses");
    } else {
        println!("soak: LOSSES: {}", lost.join(", "));
    }
    Ok(())
}
