//! End to end at line rate: the lab's own generator (`fireplot-flood`, an
//! XDP program in live-frame mode on inet0) sends spoofed traffic from
//! 198.19.0.0/16 to the inside host at a set of offered rates, and the
//! router's wan0 runs (a) no XDP program, (b) the trivial XDP_PASS
//! program, (c) fireplot with its default limits and (d) fireplot with
//! every limit off (each packet an event, until the ring is full). For each
//! run: what arrived at wan0 and what the router forwarded to the lan per
//! second, and for fireplot what it classified, sent as events, counted in
//! aggregates and lost, with the XDP program's own time per packet
//! (`kernel.bpf_stats_enabled` via BPF_ENABLE_STATS) and the CPU of the
//! softirqs and of the daemon.

use std::{os::fd::AsRawFd, process::Stdio, time::Duration};

use anyhow::{bail, Context, Result};
use fireplot_tests::{
    addr,
    lab_ebpf::{LabPrograms, PROG_BASELINE},
    sensor::Sensor,
    Lab, Node,
};
use serde_json::{json, Value};

/// What runs on wan0.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Config {
    NoXdp,
    Trivial,
    Fireplot,
    EventsOnly,
}

impl Config {
    fn name(self) -> &'static str {
        match self {
            Config::NoXdp => "no XDP program",
            Config::Trivial => "trivial XDP_PASS",
            Config::Fireplot => "fireplot (default limits)",
            Config::EventsOnly => "fireplot (no limits: events only)",
        }
    }
}

pub struct Row {
    config: Config,
    offered_pps: f64,
    sent: u64,
    wan_pps: f64,
    fwd_pps: f64,
    wan_packets: u64,
    classified: u64,
    unsolicited: u64,
    events: u64,
    aggregated: u64,
    lost: u64,
    reasons: Value,
    xdp_ns: Option<f64>,
    softirq_s: f64,
    daemon_s: f64,
}

impl Row {
    /// Share of the unsolicited packets delivered to userspace as an event
    /// or inside an aggregate.
    fn delivered(&self) -> f64 {
        if self.unsolicited == 0 {
            return 0.0;
        }
        (self.events + self.aggregated) as f64 / self.unsolicited as f64
    }

    /// Share delivered as events alone.
    fn as_events(&self) -> f64 {
        if self.unsolicited == 0 {
            return 0.0;
        }
        self.events as f64 / self.unsolicited as f64
    }
}

fn read_u64(lab: &Lab, node: Node, path: &str) -> Result<u64> {
    let out = lab.exec(node, "cat", &[path])?;
    Ok(String::from_utf8_lossy(&out.stdout).trim().parse()?)
}

/// Softirq time of all CPUs so far, in seconds (/proc/stat, USER_HZ).
fn softirq_s() -> f64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    stat.lines()
        .find(|l| l.starts_with("cpu "))
        .and_then(|l| l.split_whitespace().nth(7))
        .and_then(|v| v.parse::<f64>().ok())
        .map_or(0.0, |t| t / 100.0)
}

/// The id of the XDP program attached to wan0 (`ip -d link`: "prog/xdp id N").
fn attached_xdp_id(lab: &Lab) -> Option<u32> {
    let out = lab
        .exec(Node::Router, "ip", &["-d", "link", "show", "dev", "wan0"])
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let at = text.find("prog/xdp id ")? + "prog/xdp id ".len();
    text[at..].split_whitespace().next()?.parse().ok()
}

/// (run_time_ns, run_cnt) of program `id` held by `pid`, from its fdinfo
/// (filled while BPF_ENABLE_STATS is on).
fn prog_stats(pid: u32, id: u32) -> Option<(u64, u64)> {
    for e in std::fs::read_dir(format!("/proc/{pid}/fdinfo")).ok()? {
        let Ok(text) = std::fs::read_to_string(e.ok()?.path()) else {
            continue;
        };
        let field = |k: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(k))
                .and_then(|v| v.trim().parse::<u64>().ok())
        };
        if field("prog_id:") == Some(u64::from(id)) {
            return Some((field("run_time_ns:")?, field("run_cnt:")?));
        }
    }
    None
}

/// Attaches the trivial program to wan0 from a thread inside the router's
/// namespace; dropping the returned programs detaches it.
fn attach_trivial(router_ns: &str) -> Result<LabPrograms> {
    let path = format!("/run/netns/{router_ns}");
    std::thread::scope(|s| {
        s.spawn(|| -> Result<LabPrograms> {
            let ns = std::fs::File::open(&path).with_context(|| format!("open {path}"))?;
            // SAFETY: setns on this thread only, with a namespace fd we own.
            if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                bail!(
                    "setns into {router_ns}: {}",
                    std::io::Error::last_os_error()
                );
            }
            let mut lab = LabPrograms::load()?;
            lab.program(PROG_BASELINE)?
                .attach("wan0", aya::programs::XdpMode::Driver)
                .context("attach the trivial program to wan0")?;
            Ok(lab)
        })
        .join()
        .map_err(|_| anyhow::anyhow!("attach thread panicked"))?
    })
}

fn flood_bin() -> Result<std::path::PathBuf> {
    let p = std::env::current_exe()?.with_file_name("fireplot-flood");
    if !p.exists() {
        bail!(
            "{} is missing: build it with `cargo build --release -p fireplot-tests --features bench --bin fireplot-flood`",
            p.display()
        );
    }
    Ok(p)
}

/// One run: `count` frames offered at `rate` (0: as fast as the
/// generator goes) with `config` on wan0.
fn run_one(lab: &Lab, config: Config, rate: u64, secs: f64, dir: &std::path::Path) -> Result<Row> {
    let router = lab.ns(Node::Router);
    let mac = lab.router_wan_mac()?;
    let mut trivial = None;
    let mut sensor = None;
    match config {
        Config::NoXdp => {}
        Config::Trivial => trivial = Some(attach_trivial(&router)?),
        Config::Fireplot | Config::EventsOnly => {
            let mut args = vec!["--ring-mib", "64"];
            if config == Config::EventsOnly {
                args.extend(fireplot_tests::sensor::NO_LIMITS);
            }
            sensor = Some(Sensor::start_with(lab, dir, &args, false)?);
        }
    }
    let pid = sensor.as_ref().map(|s| s.pid());
    // Whose XDP program's run time to read: the one attached to wan0, held
    // by the sensor or (the trivial program) by this process.
    let stats_pid = match config {
        Config::Trivial => Some(std::process::id()),
        _ => pid,
    };
    let prog_id = attached_xdp_id(lab);
    let stats = || stats_pid.zip(prog_id).and_then(|(p, id)| prog_stats(p, id));
    let wan0 = "/sys/class/net/wan0/statistics/rx_packets";
    let lan0 = "/sys/class/net/lan0/statistics/tx_packets";
    let (wan_a, lan_a) = (
        read_u64(lab, Node::Router, wan0)?,
        read_u64(lab, Node::Router, lan0)?,
    );
    let soft_a = softirq_s();
    let daemon_a = pid.map(super::cpu_seconds).unwrap_or(0.0);
    let prog_a = stats();
    // The generator's count: `secs` at the offered rate; at full speed a
    // count that takes about as long on this machine.
    let count = if rate == 0 {
        (2_000_000.0 * secs) as u64
    } else {
        (rate as f64 * secs) as u64
    };
    let mut cmd = lab.command(Node::Inet, flood_bin()?.to_str().context("path")?);
    cmd.args(["--iface", "inet0", "--dst-mac", &mac, "--dst", addr::LAN_V4])
        .args(["--src", "198.19.0.1", "--src-bits", "16"])
        .args([
            "--proto",
            "tcp,udp,icmp",
            "--dport",
            "80",
            "--dport-span",
            "1",
        ])
        .args(["--count", &count.to_string(), "--max-secs", "30"]);
    if rate > 0 {
        cmd.args(["--rate", &rate.to_string()]);
    }
    let out = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .context("fireplot-flood")?;
    if !out.status.success() {
        bail!("generator: {}", String::from_utf8_lossy(&out.stderr));
    }
    let report: Value = serde_json::from_slice(&out.stdout).context("generator report")?;
    let gen_secs = report["secs"].as_f64().unwrap_or(1.0).max(1e-3);
    let sent = report["total"].as_u64().unwrap_or(0);
    // Let the receive side finish what is queued.
    std::thread::sleep(Duration::from_millis(300));
    let (wan_b, lan_b) = (
        read_u64(lab, Node::Router, wan0)?,
        read_u64(lab, Node::Router, lan0)?,
    );
    let soft_b = softirq_s();
    let prog_b = stats();
    let xdp_ns = match (prog_a, prog_b) {
        (Some((ta, ca)), Some((tb, cb))) if cb > ca => Some((tb - ta) as f64 / (cb - ca) as f64),
        _ => None,
    };
    let mut row = Row {
        config,
        offered_pps: sent as f64 / gen_secs,
        sent,
        wan_pps: (wan_b - wan_a) as f64 / gen_secs,
        fwd_pps: (lan_b - lan_a) as f64 / gen_secs,
        wan_packets: wan_b - wan_a,
        classified: 0,
        unsolicited: 0,
        events: 0,
        aggregated: 0,
        lost: 0,
        reasons: Value::Null,
        xdp_ns,
        softirq_s: soft_b - soft_a,
        daemon_s: 0.0,
    };
    if let Some(s) = sensor {
        // Aggregates are taken once their second is over.
        std::thread::sleep(Duration::from_millis(2200));
        row.daemon_s = pid.map(super::cpu_seconds).unwrap_or(0.0) - daemon_a;
        let c = s.stop()?;
        let k = &c.stats["kernel"];
        let n = |v: &Value| v.as_u64().unwrap_or(0);
        row.classified = c.stats["classes"]
            .as_array()
            .map(|a| a.iter().map(|x| n(&x["packets"])).sum())
            .unwrap_or(0);
        row.unsolicited = c.class_total("unsolicited");
        row.events = c.user("events_received");
        row.aggregated = c.user("aggregated_packets");
        row.lost = n(&k["agg_lost"]) + n(&c.stats["userspace"]["decode_errors"]);
        row.reasons = json!({
            "suppressed": k["suppressed"], "target_limited": k["target_limited"],
            "over_budget": k["over_budget"], "ring_full": k["ring_full"],
            "agg_coarse": k["agg_coarse"], "agg_lost": k["agg_lost"],
        });
    }
    drop(trivial);
    Ok(row)
}

pub struct LineRate {
    pub rows: Vec<Row>,
}

pub fn line_rate(quick: bool) -> Result<LineRate> {
    let lab = Lab::up("fpline")?;
    // A veth takes XDP_TX frames only with NAPI on: GRO gives it that
    // without an XDP program (case a).
    lab.exec(Node::Router, "ethtool", &["-K", "wan0", "gro", "on"])
        .context("ethtool -K wan0 gro on (is ethtool installed? `cargo xtask setup`)")?;
    let _stats = aya::sys::enable_stats(aya::sys::Stats::RunTime)
        .map_err(|e| eprintln!("bench: no BPF run-time stats ({e}); XDP ns/packet not shown"))
        .ok();
    let dir = std::env::temp_dir().join(format!("fireplot-bench-line-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let rates: &[u64] = if quick {
        &[100_000, 0]
    } else {
        &[100_000, 250_000, 500_000, 1_000_000, 0]
    };
    let secs = if quick { 1.0 } else { 2.0 };
    let mut rows = Vec::new();
    for &rate in rates {
        for config in [
            Config::NoXdp,
            Config::Trivial,
            Config::Fireplot,
            Config::EventsOnly,
        ] {
            let r = run_one(
                &lab,
                config,
                rate,
                secs,
                &dir.join(format!("{rate}-{config:?}")),
            )?;
            eprintln!(
                "bench: line rate {} at {:.0}k pps offered: wan0 {:.0}k pps, forwarded {:.0}k pps, events {}, aggregated {}, lost {}",
                config.name(),
                r.offered_pps / 1000.0,
                r.wan_pps / 1000.0,
                r.fwd_pps / 1000.0,
                r.events,
                r.aggregated,
                r.lost
            );
            rows.push(r);
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(LineRate { rows })
}

impl LineRate {
    pub fn print(&self) {
        println!(
            "{:<34} {:>9} {:>9} {:>9} {:>10} {:>9} {:>10} {:>6} {:>9} {:>8} {:>8} {:>8}",
            "line rate (spoofed v4 SYN/UDP/ICMP)",
            "offered",
            "wan0",
            "fwd lan",
            "classified",
            "events",
            "aggregated",
            "lost",
            "delivered",
            "xdp ns",
            "softirq",
            "daemon"
        );
        for r in &self.rows {
            let fp = matches!(r.config, Config::Fireplot | Config::EventsOnly);
            println!(
                "{:<34} {:>7.0}k {:>7.0}k {:>7.0}k {:>10} {:>9} {:>10} {:>6} {:>9} {:>8} {:>7.2}s {:>7.2}s",
                r.config.name(),
                r.offered_pps / 1000.0,
                r.wan_pps / 1000.0,
                r.fwd_pps / 1000.0,
                if fp { r.classified.to_string() } else { "-".into() },
                if fp { r.events.to_string() } else { "-".into() },
                if fp { r.aggregated.to_string() } else { "-".into() },
                if fp { r.lost.to_string() } else { "-".into() },
                if fp { format!("{:.2}%", r.delivered() * 100.0) } else { "-".into() },
                r.xdp_ns.map_or("-".into(), |n| format!("{n:.0}")),
                r.softirq_s,
                r.daemon_s
            );
        }
        for (config, what) in [
            (Config::Fireplot, "events + aggregates"),
            (Config::EventsOnly, "events alone"),
        ] {
            let best = self
                .rows
                .iter()
                .filter(|r| r.config == config)
                .filter(|r| {
                    let share = if config == Config::Fireplot {
                        r.delivered()
                    } else {
                        r.as_events()
                    };
                    share >= 0.999
                })
                .map(|r| r.wan_pps)
                .fold(None, |a: Option<f64>, b| Some(a.map_or(b, |a| a.max(b))));
            let share = |r: &Row| {
                if config == Config::Fireplot {
                    r.delivered()
                } else {
                    r.as_events()
                }
            };
            let all = self
                .rows
                .iter()
                .filter(|r| r.config == config)
                .all(|r| share(r) >= 0.999);
            match best {
                Some(b) => println!(
                    "highest rate arriving at wan0 at which {} delivered >= 99.9 % of it ({what}): {:.0}k pps{}",
                    config.name(),
                    b / 1000.0,
                    if all { " (every rate the lab reached)" } else { "" }
                ),
                None => println!(
                    "{} delivered < 99.9 % ({what}) at every rate",
                    config.name()
                ),
            }
        }
        for config in [
            Config::NoXdp,
            Config::Trivial,
            Config::Fireplot,
            Config::EventsOnly,
        ] {
            let fwd = self
                .rows
                .iter()
                .filter(|r| r.config == config)
                .map(|r| r.fwd_pps)
                .fold(0.0f64, f64::max);
            println!(
                "router forwarding to the lan, highest seen with {}: {:.0}k pps",
                config.name(),
                fwd / 1000.0
            );
        }
    }

    pub fn json(&self) -> Value {
        json!(self
            .rows
            .iter()
            .map(|r| json!({
                "config": r.config.name(), "offered_pps": r.offered_pps, "sent": r.sent,
                "wan0_pps": r.wan_pps, "forwarded_pps": r.fwd_pps, "wan0_packets": r.wan_packets,
                "classified": r.classified, "unsolicited": r.unsolicited, "events": r.events,
                "aggregated": r.aggregated, "lost": r.lost, "reasons": r.reasons,
                "delivered": r.delivered(), "xdp_ns_per_packet": r.xdp_ns,
                "softirq_cpu_s": r.softirq_s, "daemon_cpu_s": r.daemon_s,
            }))
            .collect::<Vec<_>>())
    }
}
