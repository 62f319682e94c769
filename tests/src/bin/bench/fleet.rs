//! The fleet end to end: N simulated sensors (`fireplot ingest
//! --publish` of generated firewall logs, the same publisher as `run`)
//! through a real nats-server (JetStream, file storage) into a real
//! PostgreSQL through one `fireplot collect`. Events/s from the first
//! publish to the last row stored, and how far behind the collector was
//! when the sensors had sent everything.

use std::{
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use fireplot_tests::{
    servers::{Nats, Postgres},
    traffic::iptables_syn,
};

fn log_lines(n: usize, sensor: usize) -> String {
    (0..n)
        .map(|i| {
            let src = format!("198.51.{}.{}", 100 + sensor, 1 + (i * 7) % 250);
            iptables_syn(
                i / 100,
                i,
                &src,
                "198.18.1.2",
                1 + ((i * 13) % 65000) as u16,
            )
        })
        .collect()
}

fn stored(pg: &Postgres) -> u64 {
    pg.sql("SELECT count(*) FROM events")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

pub fn fleet(quick: bool) -> Result<Vec<(String, f64, &'static str)>> {
    let bin = std::env::var_os("FIREPLOT_BIN")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/release/fireplot")
        });
    let (sensors, per) = if quick { (3, 100_000) } else { (4, 250_000) };
    let total = (sensors * per) as u64;
    let dir = std::env::temp_dir().join(format!("fireplot-bench-fleet-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    for s in 0..sensors {
        std::fs::write(dir.join(format!("s{s}.log")), log_lines(per, s))?;
    }
    let nats = Nats::start(&dir.join("nats"))?;
    let pg = Postgres::start(&dir.join("pg"))?;
    let mut collector = Command::new(&bin)
        .args([
            "collect",
            "--nats",
            &nats.url(),
            "--postgres",
            &pg.url(),
            "--batch",
            "256",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("collect")?;
    // The schema exists once the collector is ready.
    let deadline = Instant::now() + Duration::from_secs(30);
    while pg.sql("SELECT 1 FROM fireplot_schema").is_err() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let t0 = Instant::now();
    let publishers: Vec<_> = (0..sensors)
        .map(|s| {
            Command::new(&bin)
                .args(["ingest", "--format", "iptables"])
                .arg(dir.join(format!("s{s}.log")))
                .args([
                    "--publish",
                    &nats.url(),
                    "--sensor",
                    &format!("s{s}"),
                    "--spool-dir",
                ])
                .arg(dir.join("spool"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
        })
        .collect::<std::io::Result<_>>()?;
    for mut p in publishers {
        p.wait()?;
    }
    let published = t0.elapsed().as_secs_f64();
    let lag = total.saturating_sub(stored(&pg));
    let deadline = Instant::now() + Duration::from_secs(600);
    while stored(&pg) < total && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let end = t0.elapsed().as_secs_f64();
    let got = stored(&pg);
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(collector.id() as i32, libc::SIGINT) };
    let _ = collector.wait();
    drop(nats);
    drop(pg);
    let _ = std::fs::remove_dir_all(&dir);
    anyhow::ensure!(got == total, "the fleet stored {got} of {total} events");
    Ok(vec![
        (
            format!("fleet: {sensors} sensors publish (ingest → JetStream)"),
            total as f64 / published,
            "events/s",
        ),
        (
            format!("fleet: end to end into PostgreSQL ({} events)", total),
            total as f64 / end,
            "events/s",
        ),
        (
            "fleet: collector behind when the sensors finished".into(),
            lag as f64,
            "events",
        ),
        ("fleet: ...caught up after".into(), end - published, "s"),
    ])
}
