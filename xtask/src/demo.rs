//! `cargo xtask demo`: the main job on a built-in scenario. A lab comes up,
//! the sensor attaches to the router's wan0, real scanners and ordinary
//! outbound traffic run past it, and a one-screen summary is printed. The
//! events, the sensor's summaries and log stay in the output folder.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    time::Duration,
};

use crate::demo_origins::{alert_origin, enrichment, replay_public};
use anyhow::{Context, Result};
use fireplot_tests::{
    addr,
    sensor::{Collected, Sensor},
    traffic::{masscan, outbound, scanner, Servers},
    Lab,
};
use serde_json::Value;

fn now_rfc3339() -> String {
    let out = std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%dT%H:%M:%S.%NZ"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    out
}

fn unix_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

pub fn step(what: &str) {
    eprintln!("demo: {what}");
}

/// The scans the demo runs, from the inet side: what the step says, the
/// tool and its arguments. The masscan sweep runs after the first four.
const SCANS: [(&str, &str, &[&str]); 8] = [
    (
        "nmap SYN scan of 198.18.1.2, ports 1-1000",
        "nmap",
        &[
            "-n",
            "-Pn",
            "-sS",
            "-T4",
            "--max-retries",
            "1",
            "-p",
            "1-1000",
            addr::LAN_V4,
        ],
    ),
    (
        "nmap Xmas scan of 198.18.1.2 from 198.18.0.11, ports 1-200",
        "nmap",
        &[
            "-n",
            "-Pn",
            "-sX",
            "-T4",
            "--max-retries",
            "0",
            "-S",
            "198.18.0.11",
            "-e",
            "inet0",
            "-p",
            "1-200",
            addr::LAN_V4,
        ],
    ),
    (
        "UDP probe burst from 198.18.0.12 (hping3, 300 ports)",
        "hping3",
        &[
            "-q",
            "--udp",
            "-a",
            "198.18.0.12",
            "-p",
            "++1000",
            "-c",
            "300",
            "-i",
            "u2000",
            addr::LAN_V4,
        ],
    ),
    (
        "nmap UDP scan of common ports from 198.18.0.13",
        "nmap",
        &[
            "-n",
            "-Pn",
            "-sU",
            "--max-retries",
            "0",
            "-S",
            "198.18.0.13",
            "-e",
            "inet0",
            "-p",
            "53,67,123,161,500,1900,5353,11211",
            addr::LAN_V4,
        ],
    ),
    (
        "slow nmap scan from 198.18.0.14 (one probe every 40 ms, ports 2000-2100): a diagonal",
        "nmap",
        &[
            "-n",
            "-Pn",
            "-sS",
            "-r",
            "--max-retries",
            "0",
            "--scan-delay",
            "40ms",
            "-S",
            "198.18.0.14",
            "-e",
            "inet0",
            "-p",
            "2000-2100",
            addr::LAN_V4,
        ],
    ),
    (
        "ICMP echo sweep of 198.18.1.0/28 from 198.18.0.15",
        "nmap",
        &[
            "-n",
            "-sn",
            "-PE",
            "--max-retries",
            "0",
            "-S",
            "198.18.0.15",
            "-e",
            "inet0",
            "198.18.1.0/28",
        ],
    ),
    (
        "nmap IPv6 SYN scan of 2001:db8:1::2, ports 1-300",
        "nmap",
        &[
            "-6",
            "-n",
            "-Pn",
            "-sS",
            "-T4",
            "--max-retries",
            "1",
            "-p",
            "1-300",
            addr::LAN_V6,
        ],
    ),
    (
        "IPv6 UDP probes (hping3 has no IPv6; nmap -6 -sU, 20 ports)",
        "nmap",
        &[
            "-6",
            "-n",
            "-Pn",
            "-sU",
            "--max-retries",
            "0",
            "-p",
            "1-20",
            addr::LAN_V6,
        ],
    ),
];

/// Runs [`SCANS`], with the masscan sweep after the first four.
fn scans(lab: &Lab) -> Result<()> {
    let limit = Duration::from_secs(120);
    for (i, (what, tool, args)) in SCANS.iter().enumerate() {
        if i == 4 {
            step("masscan sweep of 198.18.1.0/24 on 5 ports from 198.18.0.20");
            masscan(
                lab,
                addr::LAN_NET_V4,
                "22,23,80,443,7547",
                2000,
                "198.18.0.20",
            )?;
        }
        step(what);
        scanner(lab, tool, args, limit)?;
    }
    Ok(())
}

fn top<K: Ord + Clone + std::fmt::Display>(counts: &BTreeMap<K, u64>, n: usize) -> String {
    let mut v: Vec<(&K, &u64)> = counts.iter().collect();
    v.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    v.iter()
        .take(n)
        .map(|(k, c)| format!("{k} ({c})"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn summarise(c: &Collected, out: &Path) -> String {
    let mut by_class_proto: BTreeMap<String, u64> = BTreeMap::new();
    let mut ports: BTreeMap<String, u64> = BTreeMap::new();
    let mut sources: BTreeMap<String, u64> = BTreeMap::new();
    for e in &c.events {
        let proto = match &e["proto"] {
            Value::String(s) => s.clone(),
            v => v.to_string(),
        };
        *by_class_proto
            .entry(format!(
                "{}/ipv{}/{}",
                e["class"].as_str().unwrap_or("?"),
                e["family"],
                proto
            ))
            .or_default() += 1;
        if let Some(p) = e["dport"].as_u64() {
            *ports.entry(format!("{proto}/{p}")).or_default() += 1;
        }
        if let Some(s) = e["src"].as_str() {
            *sources.entry(s.to_string()).or_default() += 1;
        }
    }
    let mut s = String::new();
    s.push_str("\n=== fireplot demo summary ===\n");
    s.push_str("packets by class (kernel counters):");
    for class in [
        "reply",
        "related",
        "service",
        "control",
        "unsolicited",
        "malformed",
        "non_ip",
    ] {
        s.push_str(&format!(" {class} {}", c.class_total(class)));
    }
    s.push('\n');
    s.push_str(&format!(
        "events: {} written; kernel sent {}, ring_full {}, suppressed {}\n",
        c.events.len(),
        c.kernel("events_sent"),
        c.kernel("ring_full"),
        c.kernel("suppressed")
    ));
    s.push_str("events by class/family/proto:\n");
    for (k, v) in &by_class_proto {
        s.push_str(&format!("  {k:<28} {v}\n"));
    }
    s.push_str(&format!("top ports:   {}\n", top(&ports, 10)));
    s.push_str(&format!("top sources: {}\n", top(&sources, 8)));
    s.push_str(&format!("output:      {}\n", out.display()));
    s
}

pub fn demo(prefix: &str, out: Option<PathBuf>, bin: &Path, serve: bool) -> Result<()> {
    let out = output_dir(out)?;
    // SAFETY: set before any thread that reads the environment starts.
    unsafe { std::env::set_var("FIREPLOT_BIN", bin) };

    let p = prefix.to_string();
    ctrlc::set_handler(move || {
        eprintln!("demo: interrupted, tearing the lab down");
        fireplot_tests::teardown(&p);
        std::process::exit(130);
    })
    .context("cannot install the Ctrl-C handler")?;

    step(&format!("bringing lab `{prefix}` up"));
    let lab = Lab::up(prefix)?;
    let servers = Servers::start(&lab, 8080, 5353)?;
    step("starting the sensor on the router's wan0");
    let db = out.join("history.db");
    let plots = out.join("plots");
    let mut args: Vec<String> = [
        "--db",
        db.to_str().context("output path is not UTF-8")?,
        "--plot-dir",
        plots.to_str().context("output path is not UTF-8")?,
        "--plot-window",
        "3m",
        "--plot-every",
        "30s",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(enrichment(&out)?);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let sensor = Sensor::start(&lab, &out, &args)?;
    let started = now_rfc3339();
    let started_ns = unix_ns();
    step("normal outbound traffic from the lan host (TCP, UDP, ping; IPv4 and IPv6)");
    let before = outbound(&lab, &servers, 5)?;
    scans(&lab)?;
    let after = outbound(&lab, &servers, 5)?;
    std::thread::sleep(Duration::from_millis(500));
    let collected = sensor.stop()?;
    let ended_ns = unix_ns();
    let ended = now_rfc3339();
    servers.stop()?;
    drop(lab);
    let replayed = replay_public(bin, &out, &db, (started_ns, ended_ns), (&started, &ended))?;
    step("rendering the fireplot of this run from the history database");
    render_plots(bin, &db, &out, (&started, &ended))?;
    step("writing the day's report (HTML, the fireplot embedded)");
    let report = out.join("report.html");
    let status = std::process::Command::new(bin)
        .args([
            "report",
            "--format",
            "html",
            "--day",
            started.get(..10).unwrap_or_default(),
            "--db",
        ])
        .arg(&db)
        .arg("-o")
        .arg(&report)
        .status()?;
    if !status.success() {
        anyhow::bail!("fireplot report failed ({status})");
    }
    println!("{}", summarise(&collected, &out));
    print_alerts(&collected, &out);
    print!("{replayed}");
    println!(
        "enrichment:  the lab's addresses named by {} and {} (the demo's own), public ones by DB-IP and Route Views data (CC BY 4.0) in {}",
        out.join("demo-countries.csv").display(),
        out.join("demo-networks.csv").display(),
        crate::setup::enrich_dir().display()
    );
    println!("report:      {} (the day written up)", report.display());
    println!("fireplot:    {}", out.join("fireplot.png").display());
    println!(
        "             {} (coloured by the sources' countries, the capture's too)",
        out.join("fireplot-by-country.png").display()
    );
    println!(
        "             {} (SVG), {} (the daemon's own, last 3 minutes)",
        out.join("fireplot.svg").display(),
        plots.join("fireplot-wan0.png").display()
    );
    println!(
        "outbound exchanges that got their replies: tcp {}, udp {}, ping {} (of 20, 20, 4)",
        before.tcp_ok + after.tcp_ok,
        before.udp_ok + after.udp_ok,
        before.ping_ok + after.ping_ok
    );
    let replies_as_events = collected
        .events
        .iter()
        .filter(|e| e["src"] == addr::INET_V4 || e["src"] == addr::INET_V6)
        .filter(|e| {
            e["sport"] == 8080 || e["sport"] == 5353 || e["icmp_type"] == 0 || e["icmp_type"] == 129
        })
        .count();
    println!(
        "replies to the lan's own traffic reported as events: {replies_as_events} (must be 0)"
    );
    let db = out.join("history.db");
    println!(
        "console:     {} serve --db {}   then open http://127.0.0.1:8780/",
        bin.display(),
        db.display()
    );
    if serve {
        println!("serving the console on http://127.0.0.1:8780/ until Ctrl-C");
        let status = std::process::Command::new(bin)
            .args(["serve", "--listen", "127.0.0.1:8780", "--db"])
            .arg(&db)
            .status()?;
        // Ctrl-C reaches the server too: it stops cleanly, and so do we.
        if !status.success() && status.code().is_some() {
            anyhow::bail!("fireplot serve ended with {status}");
        }
    }
    Ok(())
}

/// `--out`, or a new folder under demo-out named by the time.
fn output_dir(out: Option<PathBuf>) -> Result<PathBuf> {
    let out = match out {
        Some(o) => o,
        None => {
            let stamp = std::process::Command::new("date")
                .arg("+%Y%m%d-%H%M%S")
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
                .unwrap_or_else(|_| "run".into());
            crate::build::root().join("demo-out").join(stamp)
        }
    };
    std::fs::create_dir_all(&out).with_context(|| format!("cannot create {}", out.display()))?;
    Ok(out.canonicalize()?)
}

/// The run's fireplots from the history database: PNG and SVG with the
/// alerts marked, and one coloured by the sources' countries.
fn render_plots(bin: &Path, db: &Path, out: &Path, (started, ended): (&str, &str)) -> Result<()> {
    let plot = |extra: &[&str], file: &str| -> Result<()> {
        let status = std::process::Command::new(bin)
            .args(["plot", "--db"])
            .arg(db)
            .args(["--from", started, "--to", ended])
            .args(extra)
            .arg("--out")
            .arg(out.join(file))
            .status()?;
        if !status.success() {
            anyhow::bail!("fireplot plot {extra:?} failed ({status})");
        }
        Ok(())
    };
    for ext in ["png", "svg"] {
        plot(
            &["--iface", "wan0", "--mark-alerts"],
            &format!("fireplot.{ext}"),
        )?;
    }
    plot(&["--color-by", "country"], "fireplot-by-country.png")
}

/// The episodes that ended, one line each.
fn print_alerts(collected: &Collected, out: &Path) {
    println!("alerts ({}):", out.join("alerts.jsonl").display());
    let ended: Vec<&Value> = collected
        .alerts
        .iter()
        .filter(|a| a["status"] == "ended")
        .collect();
    if ended.is_empty() {
        println!("  none");
    }
    for a in ended {
        println!(
            "  [{}] {:<16} {}{}",
            a["severity"],
            a["kind"].as_str().unwrap_or("?"),
            a["summary"].as_str().unwrap_or(""),
            alert_origin(a)
        );
    }
}
