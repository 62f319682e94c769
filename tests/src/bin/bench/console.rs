//! The web console at scale: a day of 1 M and 10 M events in a history
//! database, `fireplot serve` over it, and the time to load the day page's
//! data (view, plot, alerts, top ports; asked at once), to count its top
//! sources (the page fills that panel in after) and to answer a hover.
//! Plain HTTP/1.1 over loopback, as a browser would. Also the store's
//! ingest rate while it builds the database (events and their bins).

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::TcpStream,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};
use fireplot::{plot::layout::Layout, record::Record, store::Store};

/// 2026-01-15T00:00:00Z: the day of the bench database (a past day, as
/// the day pages show).
const DAY0: i64 = 1_768_435_200_000_000_000;
const DAY_NS: i64 = 86_400 * 1_000_000_000;

fn build_db(path: &std::path::Path, n: u64) -> Result<()> {
    let _ = std::fs::remove_file(path);
    let mut s = Store::open(path)?;
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut batch = Vec::with_capacity(50_000);
    for i in 0..n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        // Ports spread on the log axis like background; sources from a
        // few hundred thousand addresses.
        let port = (65535f64.powf((x % 10_000) as f64 / 10_000.0)) as u16;
        let src = std::net::Ipv4Addr::from(0x0b00_0000 + ((x >> 20) % 300_000) as u32);
        batch.push(Record::probe(
            DAY0 + (i as i64 * (DAY_NS / n as i64)),
            src.into(),
            std::net::Ipv4Addr::new(198, 18, 1, (x >> 40) as u8).into(),
            if x & 7 == 0 { 17 } else { 6 },
            port.max(1),
        ));
        if batch.len() == batch.capacity() {
            s.insert(&batch)?;
            batch.clear();
        }
    }
    s.insert(&batch)?;
    Ok(())
}

/// GET `path`; returns (status, body length, seconds).
fn get(addr: &str, path: &str) -> Result<(u16, usize, f64)> {
    let t = Instant::now();
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(120)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw[..raw.len().min(64)]).to_string();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    Ok((status, raw.len(), t.elapsed().as_secs_f64()))
}

pub fn console(quick: bool) -> Result<Vec<(String, f64, &'static str)>> {
    let sizes: &[u64] = if quick {
        &[1_000_000]
    } else {
        &[1_000_000, 10_000_000]
    };
    let bin = std::env::var_os("FIREPLOT_BIN")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/release/fireplot")
        });
    let mut rows = Vec::new();
    for &n in sizes {
        let dir = std::env::temp_dir().join(format!("fireplot-bench-console-{n}"));
        std::fs::create_dir_all(&dir)?;
        let db = dir.join("day.db");
        let t = Instant::now();
        build_db(&db, n)?;
        let ingest = n as f64 / t.elapsed().as_secs_f64();
        eprintln!(
            "console bench: {n} events stored in {:.1} s",
            t.elapsed().as_secs_f64()
        );
        let mut child = Command::new(&bin)
            .args(["serve", "--listen", "127.0.0.1:0", "--db"])
            .arg(&db)
            .env("RUST_LOG", "info")
            .stderr(Stdio::piped())
            .spawn()
            .context("fireplot serve")?;
        let mut err = BufReader::new(child.stderr.take().context("stderr")?);
        let mut line = String::new();
        let addr = loop {
            line.clear();
            if err.read_line(&mut line)? == 0 {
                bail!("serve exited");
            }
            if let Some(rest) = line.split("http://").nth(1) {
                break rest.split('/').next().unwrap_or("").to_string();
            }
        };
        std::thread::spawn(move || for _ in err.lines() {});
        let q = "day=2026-01-15&utc=1&w=1600&h=800";
        // The page's requests, at once, as the browser sends them.
        let mut load = Vec::new();
        let mut plot = Vec::new();
        let mut sources = Vec::new();
        for _ in 0..3 {
            let t = Instant::now();
            let handles: Vec<_> = [
                "/api/view",
                "/plot.png",
                "/api/alerts",
                "/api/top?part=ports&n=10",
            ]
            .iter()
            .map(|p| {
                let sep = if p.contains('?') { '&' } else { '?' };
                let (addr, path) = (addr.clone(), format!("{p}{sep}{q}"));
                std::thread::spawn(move || get(&addr, &path))
            })
            .collect();
            for (i, h) in handles.into_iter().enumerate() {
                let (status, _, secs) = h.join().map_err(|_| anyhow::anyhow!("thread"))??;
                if status != 200 {
                    // Reported, not fatal: a bench says what it measured.
                    eprintln!(
                        "console bench: page request {i} answered {status} after {secs:.1} s"
                    );
                }
                if i == 1 {
                    plot.push(secs);
                }
            }
            load.push(t.elapsed().as_secs_f64());
            let (status, _, secs) = get(&addr, &format!("/api/top?part=sources&n=10&{q}"))?;
            if status != 200 {
                eprintln!("console bench: top sources answered {status} after {secs:.1} s");
            }
            sources.push(secs);
        }
        // Hovers on dots across the day.
        let l = Layout::new(1600, 800, DAY0, DAY0 + DAY_NS);
        let mut hovers = Vec::new();
        for k in 0..40i64 {
            let ts = DAY0 + k * DAY_NS / 40 + 1_000_000;
            let port = (65535f64.powf(((k * 2503) % 10_000) as f64 / 10_000.0)) as u16;
            let (x, y) = (l.x(ts).unwrap_or(l.left), l.y_port(port.max(1)));
            let (status, _, secs) = get(&addr, &format!("/api/at?{q}&x={x}&y={y}"))?;
            if status != 200 {
                bail!("hover answered {status}");
            }
            hovers.push(secs);
        }
        let _ = child.kill();
        let _ = child.wait();
        let _ = std::fs::remove_dir_all(&dir);
        let med = |mut v: Vec<f64>| {
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        let max = hovers.iter().copied().fold(0.0, f64::max);
        let m = n / 1_000_000;
        rows.push((
            format!("console, day of {m} M events: page data, first load"),
            load[0] * 1e3,
            "ms",
        ));
        rows.push((
            format!("console, day of {m} M events: plot alone, first load"),
            plot[0] * 1e3,
            "ms",
        ));
        rows.push((
            format!("console, day of {m} M events: top sources, first"),
            sources[0] * 1e3,
            "ms",
        ));
        rows.push((
            format!("console, day of {m} M events: store ingest while building"),
            ingest,
            "events/s",
        ));
        rows.push((
            format!("console, day of {m} M events: page data again (cached)"),
            med(load[1..].to_vec()) * 1e3,
            "ms",
        ));
        rows.push((
            format!("console, day of {m} M events: hover (median of 40)"),
            med(hovers.clone()) * 1e3,
            "ms",
        ));
        rows.push((
            format!("console, day of {m} M events: hover (slowest)"),
            max * 1e3,
            "ms",
        ));
    }
    Ok(rows)
}
