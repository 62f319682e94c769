//! Inputs beyond the live interface: `fireplot replay` (frames/s through
//! the kernel programs with BPF_PROG_TEST_RUN) and `fireplot ingest`
//! (firewall log lines/s), each run as the command an operator types, on
//! files this bench writes.

use std::{io::Write, process::Command, time::Instant};

use anyhow::{bail, Context, Result};
use fireplot_tests::packets::{flags::*, *};

/// A classic pcap (µs, Ethernet) of `frames`.
fn write_pcap(path: &std::path::Path, frames: &[(u64, Vec<u8>)]) -> Result<()> {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path)?);
    f.write_all(&0xa1b2_c3d4u32.to_le_bytes())?;
    f.write_all(&2u16.to_le_bytes())?;
    f.write_all(&4u16.to_le_bytes())?;
    f.write_all(&[0u8; 8])?;
    f.write_all(&65535u32.to_le_bytes())?;
    f.write_all(&1u32.to_le_bytes())?;
    for (us, data) in frames {
        f.write_all(&((us / 1_000_000) as u32).to_le_bytes())?;
        f.write_all(&((us % 1_000_000) as u32).to_le_bytes())?;
        f.write_all(&(data.len() as u32).to_le_bytes())?;
        f.write_all(&(data.len() as u32).to_le_bytes())?;
        f.write_all(data)?;
    }
    Ok(())
}

/// A rate from the command's own summary line, e.g. "(123456 frames/s)".
fn rate(log: &str, unit: &str) -> Option<f64> {
    let end = log.find(&format!(" {unit})"))?;
    let start = log[..end].rfind('(')?;
    log[start + 1..end].parse().ok()
}

fn fireplot(args: &[&str]) -> Result<(String, f64)> {
    let bin = std::env::var_os("FIREPLOT_BIN")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/release/fireplot")
        });
    let t = Instant::now();
    let out = Command::new(&bin).args(args).output().context("fireplot")?;
    let secs = t.elapsed().as_secs_f64();
    let log = String::from_utf8_lossy(&out.stderr).into_owned();
    if !out.status.success() {
        bail!("fireplot {args:?} failed: {log}");
    }
    Ok((log, secs))
}

pub fn inputs(quick: bool) -> Result<Vec<(String, f64, &'static str)>> {
    let n: u64 = if quick { 100_000 } else { 1_000_000 };
    let dir = std::env::temp_dir().join(format!("fireplot-bench-inputs-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    // A WAN's mix: a third the inside's own traffic out, a third its
    // replies in, a third scans of ports and addresses.
    let t0 = 1_795_600_000_000_000u64;
    let mut frames = Vec::with_capacity(n as usize);
    for i in 0..n {
        let port = (i % 60_000) as u16 + 1;
        let f = match i % 3 {
            0 => v4(
                [198, 18, 1, 2],
                [198, 18, 0, 2],
                L4::Tcp {
                    sport: 40000 + (i % 5000) as u16,
                    dport: 443,
                    flags: ACK,
                },
            ),
            1 => v4(
                [198, 18, 0, 2],
                [198, 18, 1, 2],
                L4::Tcp {
                    sport: 443,
                    dport: 40000 + (i % 5000) as u16,
                    flags: ACK,
                },
            ),
            _ => v4(
                [198, 18, 0, 10 + (i % 200) as u8],
                [198, 18, 1, (i % 250) as u8 + 1],
                L4::Tcp {
                    sport: 61000,
                    dport: port,
                    flags: SYN,
                },
            ),
        };
        frames.push((t0 + i * 50, f));
    }
    let pcap = dir.join("mix.pcap");
    write_pcap(&pcap, &frames)?;
    let mut rows = Vec::new();
    for (what, extra) in [
        ("events to /dev/null", vec!["--events-out", "/dev/null"]),
        ("into --db", vec!["--db"]),
    ] {
        let db = dir.join("replay.db");
        let _ = std::fs::remove_file(&db);
        let mut args = vec![
            "replay",
            "--pcap",
            pcap.to_str().context("utf-8")?,
            "--inside",
            "198.18.1.0/24",
            "--rate-limit",
            "0",
        ];
        args.extend(extra.iter().copied());
        if what == "into --db" {
            args.push(db.to_str().context("utf-8")?);
        }
        let (log, _) = fireplot(&args)?;
        let r = rate(&log, "frames/s").context("no rate in replay's log")?;
        rows.push((
            format!("replay, {n} frames (1/3 scans), {what}"),
            r,
            "frames/s",
        ));
    }
    // The same scans as iptables LOG lines in syslog framing.
    let log = dir.join("kern.log");
    {
        let mut f = std::io::BufWriter::new(std::fs::File::create(&log)?);
        for i in 0..n {
            writeln!(
                f,
                "Nov 25 {:02}:{:02}:{:02} gw kernel: [{}.{:06}] wan-drop: IN=wan0 OUT= MAC=52:54:00:12:34:56:52:54:00:65:43:21:08:00 SRC=198.18.0.{} DST=198.18.1.{} LEN=44 TOS=0x00 PREC=0x00 TTL=50 ID={} PROTO=TCP SPT=61000 DPT={} WINDOW=1024 RES=0x00 SYN URGP=0",
                (i / 3600) % 24, (i / 60) % 60, i % 60, 1000 + i / 1000, i % 1000,
                10 + i % 200, i % 250 + 1, i % 65536, i % 60_000 + 1
            )?;
        }
    }
    for (what, extra) in [
        ("events to /dev/null", vec!["--events-out", "/dev/null"]),
        ("into --db", vec!["--db"]),
    ] {
        let db = dir.join("ingest.db");
        let _ = std::fs::remove_file(&db);
        let mut args = vec![
            "ingest",
            "--format",
            "iptables",
            log.to_str().context("utf-8")?,
            "--tz",
            "utc",
        ];
        args.extend(extra.iter().copied());
        if what == "into --db" {
            args.push(db.to_str().context("utf-8")?);
        }
        let (out, secs) = fireplot(&args)?;
        rate(&out, "lines/s").context("no rate in ingest's log")?;
        rows.push((
            format!("ingest iptables, {n} lines, {what}"),
            n as f64 / secs,
            "lines/s",
        ));
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(rows)
}
