//! `cargo xtask fleet-demo`: three lab routers, each with a live sensor
//! publishing to NATS JetStream, one collector keeping PostgreSQL, real
//! scans across the three, and the fleet-wide alerts at the end.
//!
//! ```text
//! fpf1-router ─fleet0 198.19.1.2 ┐
//! fpf2-router ─fleet0 198.19.2.2 ├─ fpfc-centre: nats-server -js, fireplot collect
//! fpf3-router ─fleet0 198.19.3.2 ┘
//! PostgreSQL: Unix socket only, in the output folder (reached from every namespace)
//! fireplot serve --postgres ... (this namespace, 127.0.0.1:8781)
//! ```

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use fireplot_tests::{
    fleet_lab::Centre,
    sensor::Sensor,
    servers::{Nats, Postgres},
    traffic::{nmap, nmap_syn_from, outbound, Servers},
    Lab,
};
use serde_json::Value;

use crate::demo::step;

const LABS: [&str; 3] = ["fpf1", "fpf2", "fpf3"];
const CENTRE: &str = "fpfc";

fn teardown_all() {
    for p in LABS {
        fireplot_tests::teardown(p);
    }
    let _ = Command::new("ip")
        .args(["netns", "del", &format!("{CENTRE}-centre")])
        .stderr(Stdio::null())
        .status();
}

pub fn fleet_demo(out: Option<PathBuf>, bin: &Path, serve: bool) -> Result<()> {
    let out = output_dir(out)?;
    // SAFETY: set before any thread that reads the environment starts.
    unsafe { std::env::set_var("FIREPLOT_BIN", bin) };
    ctrlc::set_handler(|| {
        eprintln!("fleet-demo: interrupted, tearing the labs down");
        teardown_all();
        std::process::exit(130);
    })
    .context("cannot install the Ctrl-C handler")?;

    step("bringing up three router labs and the fleet's centre");
    let labs: Vec<Lab> = LABS.iter().map(|p| Lab::up(p)).collect::<Result<_>>()?;
    let centre = Centre::up(CENTRE, &labs.iter().collect::<Vec<_>>())?;
    step("starting PostgreSQL (Unix socket only) and nats-server -js in the centre");
    let pg = Postgres::start_unix(&out.join("pg"))?;
    let mut nats = Nats::start_in(&centre.ns, "0.0.0.0", &out.join("nats"))?;
    let collect_log = out.join("collect.log");
    let mut collector = centre
        .command(bin.to_str().context("binary path is not UTF-8")?)
        .args([
            "collect",
            "--nats",
            "nats://127.0.0.1:4222",
            "--postgres",
            &pg.url(),
        ])
        .args(["--stats-every", "5s"])
        .stdout(std::fs::File::create(out.join("collect.json"))?)
        .stderr(std::fs::File::create(&collect_log)?)
        .spawn()
        .context("cannot start fireplot collect")?;

    step("starting a sensor on each router's wan0, publishing as r1, r2, r3");
    let sensors = start_sensors(&labs, &out)?;
    let started = Instant::now();
    step("ordinary outbound traffic, a scan at each site, and one scanner sweeping all three");
    scan_the_sites(&labs)?;
    std::thread::sleep(Duration::from_millis(500));
    let mut published = Vec::new();
    for (name, s) in sensors {
        let c = s.stop()?;
        published.push((name, c.events.len(), c.stats["fleet"].clone()));
    }
    // The collector takes what is left, then stops.
    step("waiting for the collector to take everything");
    wait_for_events(&pg, published.iter().map(|p| p.1).sum());
    // SAFETY: kill(2) on our own child (ip netns exec has become fireplot).
    unsafe { libc::kill(collector.id() as i32, libc::SIGINT) };
    let _ = collector.wait();
    nats.stop();
    let secs = started.elapsed().as_secs_f64();

    step("fleet-wide detection over PostgreSQL, and the fleet's fireplot");
    let url = pg.url();
    let (alerts, png) = detect_and_plot(bin, &url, &out)?;

    println!("fleet demo ({secs:.0} s), output in {}", out.display());
    report(&pg, &published, &alerts)?;
    println!("fireplot:    {}", png.display());
    if serve {
        println!(
            "console:     http://127.0.0.1:8781/ ({} serve --postgres '{url}')",
            bin.display()
        );
    } else {
        println!(
            "console:     `cargo xtask fleet-demo --serve` keeps the database up and serves the fleet's console at http://127.0.0.1:8781/ (this run's PostgreSQL stops with it)"
        );
    }
    drop(centre);
    drop(labs);
    if serve {
        println!("serving the fleet's console on http://127.0.0.1:8781/ until Ctrl-C");
        let status = Command::new(bin)
            .args(["serve", "--postgres", &url, "--listen", "127.0.0.1:8781"])
            .status()?;
        if !status.success() && status.code().is_some() {
            anyhow::bail!("fireplot serve ended with {status}");
        }
    }
    drop(pg);
    Ok(())
}

/// `--out`, or a new folder under target/fleet-demo named by the time.
fn output_dir(out: Option<PathBuf>) -> Result<PathBuf> {
    let out = match out {
        Some(o) => o,
        None => crate::build::root().join("target").join("fleet-demo").join(
            Command::new("date")
                .arg("+%Y%m%d-%H%M%S")
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
                .unwrap_or_else(|_| "run".into()),
        ),
    };
    std::fs::create_dir_all(&out).with_context(|| format!("cannot create {}", out.display()))?;
    Ok(out.canonicalize()?)
}

/// A sensor on each router's wan0, publishing to the centre as r1, r2, r3.
fn start_sensors(labs: &[Lab], out: &Path) -> Result<Vec<(String, Sensor)>> {
    let mut sensors = Vec::new();
    for (i, lab) in labs.iter().enumerate() {
        let name = format!("r{}", i + 1);
        let dir = out.join(&name);
        let url = format!("nats://{}:4222", Centre::broker_addr(i));
        let spool = dir.join("spool");
        let args = [
            "--publish",
            url.as_str(),
            "--sensor",
            name.as_str(),
            "--spool-dir",
            spool.to_str().context("path is not UTF-8")?,
        ];
        let sensor = Sensor::start(lab, &dir, &args)?;
        sensors.push((name.clone(), sensor));
    }
    Ok(sensors)
}

/// Outbound traffic and a scan of its own at each site, then one scanner
/// (198.18.0.66) sweeping TCP/23 over 30 addresses of every site.
fn scan_the_sites(labs: &[Lab]) -> Result<()> {
    for (i, lab) in labs.iter().enumerate() {
        let servers = Servers::start(lab, 8080, 5353)?;
        outbound(lab, &servers, 2)?;
        servers.stop()?;
        // Each site's own scanner, a different address at each.
        let src = format!("198.18.0.{}", 20 + i);
        nmap_syn_from(lab, &src, &format!("{}-{}", 1 + 300 * i, 150 + 300 * i))?;
    }
    for lab in labs {
        nmap(
            lab,
            &[
                "-sS",
                "-S",
                "198.18.0.66",
                "-e",
                "inet0",
                "-p",
                "23",
                "198.18.1.1-30",
            ],
        )?;
    }
    Ok(())
}

/// Until PostgreSQL holds `expected` events, or a minute has passed.
fn wait_for_events(pg: &Postgres, expected: usize) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let n: usize = pg
            .sql("SELECT count(*) FROM events")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        if n >= expected || Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// `fireplot detect` and `fireplot plot` over the fleet's PostgreSQL:
/// the alerts file and the picture.
fn detect_and_plot(bin: &Path, url: &str, out: &Path) -> Result<(PathBuf, PathBuf)> {
    let alerts = out.join("fleet-alerts.jsonl");
    let status = Command::new(bin)
        .args(["detect", "--postgres", url, "--last", "1h", "--alerts"])
        .arg(&alerts)
        .status()?;
    anyhow::ensure!(status.success(), "fireplot detect --postgres failed");
    let png = out.join("fleet.png");
    let status = Command::new(bin)
        .args([
            "plot",
            "--postgres",
            url,
            "--last",
            "15m",
            "--mark-alerts",
            "-o",
        ])
        .arg(&png)
        .status()?;
    anyhow::ensure!(status.success(), "fireplot plot --postgres failed");
    Ok((alerts, png))
}

/// What each sensor published, what PostgreSQL holds, and the alerts over
/// the merged stream (fleet-wide ones starred).
fn report(pg: &Postgres, published: &[(String, usize, Value)], alerts: &Path) -> Result<()> {
    for (name, events, fleet) in published {
        println!(
            "  sensor {name}: {events} events, published {} items in {} batches, spooled {}, dropped {}",
            fleet["published_items"], fleet["published_batches"], fleet["spooled_items"], fleet["dropped_items"]
        );
    }
    let per_sensor = pg.sql(
        "SELECT s.name || ': ' || count(*) || ' events, ' || count(DISTINCT e.seq) || ' distinct' FROM events e JOIN sensors s ON s.id = e.sensor_id GROUP BY s.name ORDER BY s.name",
    )?;
    println!("PostgreSQL (every event once):");
    for l in per_sensor.lines() {
        println!("  {l}");
    }
    println!("alerts over the merged stream ({}):", alerts.display());
    let text = std::fs::read_to_string(alerts).unwrap_or_default();
    let mut any = false;
    for a in text
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|a| a["status"] == "ended")
    {
        any = true;
        let star = if a["kind"] == "fleet_campaign" {
            "*"
        } else {
            " "
        };
        println!(
            " {star}[{}] {:<15} {}",
            a["severity"],
            a["kind"].as_str().unwrap_or("?"),
            a["summary"].as_str().unwrap_or("")
        );
    }
    if !any {
        println!("  none");
    }
    Ok(())
}
