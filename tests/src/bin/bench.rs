//! `cargo xtask bench`: measured figures, printed as a table and written
//! as JSON. Benchmarks never fail on a number; they report it.

use std::time::Duration;

use anyhow::{Context, Result};
use fireplot::sensor::{Limits, LoadOptions, Sensor, PROG_INGRESS};
use fireplot_tests::{
    lab_ebpf::LabPrograms,
    packets::{flags::*, *},
};
use serde_json::json;

#[path = "bench/console.rs"]
mod console;
#[path = "bench/fleet.rs"]
mod fleet;
#[path = "bench/inputs.rs"]
mod inputs;
#[path = "bench/linerate.rs"]
mod linerate;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// ns/packet of `prog` over `frame`: median of `runs` test_runs of `repeat`.
fn xdp_ns(
    s: &mut Sensor,
    prog: &'static str,
    frame: &[u8],
    repeat: u32,
    runs: usize,
) -> Result<f64> {
    let mut v = Vec::new();
    for _ in 0..runs {
        let (_, d) = s.test_run(prog, frame, repeat).context("test_run")?;
        v.push(d.as_secs_f64() * 1e9);
    }
    Ok(median(v))
}

/// ns/packet of the lab's trivial XDP_PASS program over `frame`.
fn baseline_ns(frame: &[u8], repeat: u32, runs: usize) -> Result<f64> {
    let mut lab = LabPrograms::load()?;
    let mut v = Vec::new();
    for _ in 0..runs {
        v.push(lab.baseline_run(frame, repeat)?.as_secs_f64() * 1e9);
    }
    Ok(median(v))
}

fn egress_ns(s: &mut Sensor, frame: &[u8], repeat: u32, runs: usize) -> Result<f64> {
    let mut v = Vec::new();
    for _ in 0..runs {
        let (_, d): (u32, Duration) = s
            .test_run_egress(frame, repeat)
            .context("egress test_run")?;
        v.push(d.as_secs_f64() * 1e9);
    }
    Ok(median(v))
}

fn main() -> Result<()> {
    let quick = std::env::args().any(|a| a == "--quick");
    if one_part_only(quick)? {
        return Ok(());
    }
    let (repeat, runs) = if quick { (200_000, 3) } else { (1_000_000, 7) };
    let out_path = std::env::args()
        .skip_while(|a| a != "--json")
        .nth(1)
        .unwrap_or_else(|| "target/bench/results.json".into());
    let xdp = xdp_figures(repeat, runs)?;
    if std::env::args().any(|a| a == "--xdp-only") {
        for (name, ns) in &xdp.rows {
            println!("{name:<48} {ns:>9.1} {:>10.2}x", ns / xdp.baseline);
        }
        println!(
            "{:<48} {:>9.1}",
            "tc egress recorder (ACK on a known flow)", xdp.egress
        );
        return Ok(());
    }
    let user = userspace(quick)?;
    let ring = ring_drain(quick)?;
    let lab = lab_end_to_end(quick)?;
    let line = linerate::line_rate(quick)?;
    let web = console::console(quick)?;
    let inp = inputs::inputs(quick)?;
    let fl = fleet::fleet(quick)?;

    xdp.print();
    println!();
    println!("{:<52} {:>14}", "userspace", "figure");
    for (name, v, unit) in ring
        .iter()
        .chain(user.iter())
        .chain(web.iter())
        .chain(inp.iter())
        .chain(fl.iter())
    {
        println!("{name:<52} {v:>14.1} {unit}");
    }
    println!();
    lab.print();
    println!();
    line.print();
    let named = |figures: &[(String, f64, &'static str)]| {
        figures
            .iter()
            .map(|(n, v, u)| json!({"name": n, "value": v, "unit": u}))
            .collect::<Vec<_>>()
    };
    let json = json!({
        "kernel": std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim(),
        "cpu": std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default().lines()
            .find(|l| l.starts_with("model name")).and_then(|l| l.split(':').nth(1)).unwrap_or("").trim(),
        "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "repeat": repeat,
        "runs": runs,
        "xdp": xdp.rows.iter().map(|(n, v)| json!({"name": n, "ns": v, "x_baseline": v / xdp.baseline})).collect::<Vec<_>>(),
        "tc_egress_ns": xdp.egress,
        "userspace": named(&[ring, user].concat()),
        "console": named(&web),
        "inputs": named(&inp),
        "fleet": named(&fl),
        "lab": lab.json(),
        "lab_best_rate_pps": lab.best,
        "line_rate": line.json(),
    });
    if let Some(dir) = std::path::Path::new(&out_path).parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&out_path, serde_json::to_string_pretty(&json)?)?;
    println!("written to {out_path}");
    Ok(())
}

/// `--console-only`, `--fleet-only`, `--store-only`, `--line-rate-only`,
/// `--inputs-only`, `--detector-only`: that part alone, printed. Returns
/// whether one ran.
fn one_part_only(quick: bool) -> Result<bool> {
    let only = |flag: &str| std::env::args().any(|a| a == flag);
    let figures = if only("--console-only") {
        console::console(quick)?
    } else if only("--fleet-only") {
        fleet::fleet(quick)?
    } else if only("--store-only") {
        userspace(quick)?
    } else if only("--line-rate-only") {
        linerate::line_rate(quick)?.print();
        return Ok(true);
    } else if only("--inputs-only") {
        inputs::inputs(quick)?
    } else if only("--detector-only") {
        detector(quick)
    } else {
        return Ok(false);
    };
    for (name, v, unit) in figures {
        println!("{name:<52} {v:>14.1} {unit}");
    }
    Ok(true)
}

/// The XDP program's cost per packet by path, against the baseline
/// program, and the TC egress recorder's.
struct XdpFigures {
    rows: Vec<(String, f64)>,
    baseline: f64,
    egress: f64,
}

impl XdpFigures {
    fn print(&self) {
        println!(
            "{:<48} {:>9} {:>11}",
            "XDP program (BPF_PROG_TEST_RUN)", "ns/pkt", "× baseline"
        );
        for (name, ns) in &self.rows {
            println!("{name:<48} {ns:>9.1} {:>10.2}×", ns / self.baseline);
        }
        println!(
            "{:<48} {:>9.1}",
            "tc egress recorder (ACK on a known flow)", self.egress
        );
    }
}

/// The frames the XDP figures run: the inside's flows, replies to them,
/// unsolicited probes and a malformed frame.
struct Frames {
    /// Outbound: they open the inside flows.
    outbound: [Vec<u8>; 4],
    reply_tcp: Vec<u8>,
    reply_udp: Vec<u8>,
    reply_tcp6: Vec<u8>,
    reply_sctp: Vec<u8>,
    syn: Vec<u8>,
    udp6: Vec<u8>,
    sctp_init: Vec<u8>,
    /// UDP from a reflection port (DNS): its aggregate keeps the port.
    reflection: Vec<u8>,
    malformed: Vec<u8>,
    egress_ack: Vec<u8>,
}

impl Frames {
    fn new() -> Frames {
        let tcp = |sport, dport, flags| L4::Tcp {
            sport,
            dport,
            flags,
        };
        let udp = |sport, dport| L4::Udp { sport, dport };
        let sctp = |sport, dport, chunk| L4::Sctp {
            sport,
            dport,
            chunk,
        };
        let syn = v4(OUTSIDE_V4, INSIDE_V4, tcp(55555, 80, SYN));
        Frames {
            outbound: [
                v4(INSIDE_V4, OUTSIDE_V4, tcp(40000, 443, SYN)),
                v4(INSIDE_V4, OUTSIDE_V4, udp(5000, 53)),
                v6(INSIDE_V6, OUTSIDE_V6, tcp(40000, 443, SYN)),
                v4(INSIDE_V4, OUTSIDE_V4, sctp(5001, 2905, 1)),
            ],
            reply_tcp: v4(OUTSIDE_V4, INSIDE_V4, tcp(443, 40000, ACK | PSH)),
            reply_udp: v4(OUTSIDE_V4, INSIDE_V4, udp(53, 5000)),
            reply_tcp6: v6(OUTSIDE_V6, INSIDE_V6, tcp(443, 40000, ACK)),
            // An INIT-ACK answering the inside's INIT.
            reply_sctp: v4(OUTSIDE_V4, INSIDE_V4, sctp(2905, 5001, 2)),
            udp6: v6(OUTSIDE_V6, INSIDE_V6, udp(55555, 53)),
            sctp_init: v4(OUTSIDE_V4, INSIDE_V4, sctp(55555, 2905, 1)),
            reflection: v4(OUTSIDE_V4, INSIDE_V4, udp(53, 55555)),
            malformed: syn[..30].to_vec(),
            syn,
            egress_ack: v4(INSIDE_V4, OUTSIDE_V4, tcp(40000, 443, ACK)),
        }
    }
}

/// A ring large enough to hold every event of a run without draining.
fn big_ring() -> LoadOptions {
    LoadOptions {
        ring_bytes: 512 * 1024 * 1024,
        ..LoadOptions::default()
    }
}

/// Every limit off.
fn unlimited() -> Limits {
    Limits {
        rate_limit: 0,
        target_limit: 0,
        event_budget: 0,
        ..Limits::default()
    }
}

fn xdp_figures(repeat: u32, runs: usize) -> Result<XdpFigures> {
    let f = Frames::new();
    let mut s = Sensor::load(&big_ring())?;
    s.configure(&unlimited(), &[])?;
    // Inside flows, recorded by the real egress program.
    for o in &f.outbound {
        s.test_run_egress(o, 1)?;
    }
    let mut rows: Vec<(String, f64)> = Vec::new();
    let baseline = baseline_ns(&f.syn, repeat, runs)?;
    rows.push(("xdp baseline (XDP_PASS)".into(), baseline));
    for (name, frame) in [
        ("reply to inside TCP flow (v4)", &f.reply_tcp),
        ("reply to inside UDP flow (v4)", &f.reply_udp),
        ("reply to inside TCP flow (v6)", &f.reply_tcp6),
        ("reply to inside SCTP flow (v4)", &f.reply_sctp),
        ("malformed (truncated IPv4)", &f.malformed),
    ] {
        rows.push((
            name.into(),
            xdp_ns(&mut s, PROG_INGRESS, frame, repeat, runs)?,
        ));
    }
    for (name, frame) in [
        ("unsolicited IPv4 SYN (event)", &f.syn),
        ("unsolicited IPv6 UDP (event)", &f.udp6),
        ("unsolicited IPv4 SCTP INIT (event)", &f.sctp_init),
    ] {
        rows.push((name.into(), event_ns(&f, name, frame, repeat, runs)?));
    }
    // The smallest budget the sensor accepts: one event per CPU.
    let cpus = fireplot::sensor::online_cpus()?;
    let limited = Limits {
        rate_limit: cpus,
        rate_burst: cpus,
        ..Limits::default()
    };
    let mut l = Sensor::load(&LoadOptions::default())?;
    l.configure(&limited, &[])?;
    rows.push((
        "unsolicited, rate-limited source (suppressed)".into(),
        xdp_ns(&mut l, PROG_INGRESS, &f.syn, repeat, runs)?,
    ));
    rows.push((
        "UDP from port 53, rate-limited (suppressed)".into(),
        xdp_ns(&mut l, PROG_INGRESS, &f.reflection, repeat, runs)?,
    ));
    let egress = egress_ns(&mut s, &f.egress_ack, repeat, runs)?;
    Ok(XdpFigures {
        rows,
        baseline,
        egress,
    })
}

/// ns/packet of an event: each run's events land in the big ring; a fresh
/// sensor per run keeps the ring from filling across runs.
fn event_ns(f: &Frames, name: &str, frame: &[u8], repeat: u32, runs: usize) -> Result<f64> {
    // The destination is live (it opened a flow), its port is not: the
    // event pays both dark-destination lookups.
    let fresh = || -> Result<Sensor> {
        let mut e = Sensor::load(&big_ring())?;
        e.configure(&unlimited(), &[])?;
        for o in [&f.outbound[0], &f.outbound[2]] {
            e.test_run_egress(o, 1)?;
        }
        Ok(e)
    };
    let mut e = fresh()?;
    let reps = repeat.min(1_000_000);
    let mut v = Vec::new();
    for _ in 0..runs {
        let mut ring = e.take_events().ok();
        let (_, d) = e.test_run(PROG_INGRESS, frame, reps)?;
        v.push(d.as_secs_f64() * 1e9);
        if let Some(r) = ring.as_mut() {
            while r.next().is_some() {}
        }
        // Later runs: drain through a fresh sensor's ring is not
        // possible, so check the ring did not fill.
        let c = e.counters()?;
        if c.misc(fireplot_common::counters::Misc::RingFull) > 0 {
            eprintln!("warning: ring filled during `{name}`; figure includes the ring-full path");
        }
        e = fresh()?;
    }
    Ok(median(v))
}

/// Synthetic events: a day of traffic from many sources over all ports.
fn synthetic(n: usize, t0: i64) -> impl Iterator<Item = fireplot::record::Record> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let step = 86_400_000_000_000i64 / n.max(1) as i64;
    (0..n).map(move |i| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let v4 = x & 1 == 0;
        fireplot::record::Record {
            ts_ns: t0 + i as i64 * step,
            family: if v4 { 4 } else { 6 },
            proto: if x & 2 == 0 { 6 } else { 17 },
            src: Some(if v4 {
                std::net::IpAddr::from(((x >> 20) as u32).to_be_bytes())
            } else {
                std::net::IpAddr::from(((x as u128) << 64 | 0x2001_0db8).to_be_bytes())
            }),
            dst: Some(std::net::IpAddr::from([198, 18, 1, 2])),
            sport: (x >> 8) as u16,
            dport: ((x >> 24) as u16) | 1,
            tcp_flags: 2,
            ttl: 50,
            len: 60,
            class: 4,
            ifindex: 2,
            ip_id: (x >> 40) as u16,
            tcp_seq: (x >> 12) as u32,
            tcp_window: 1024,
            icmp_type: 0,
            icmp_code: 0,
            pkt_flags: 0,
            count: 1,
        }
    })
}

/// Stores `n` synthetic events in batches of 8,192, as the daemon's
/// writer does: events per second.
fn ingest_synthetic(store: &mut fireplot::store::Store, n: usize, t0: i64) -> Result<f64> {
    let started = std::time::Instant::now();
    let mut batch = Vec::with_capacity(8192);
    for r in synthetic(n, t0) {
        batch.push(r);
        if batch.len() == 8192 {
            store.insert(&batch)?;
            batch.clear();
        }
    }
    store.insert(&batch)?;
    Ok(n as f64 / started.elapsed().as_secs_f64())
}

/// Ingests `n` synthetic events while another thread, on its own
/// read-only connection, draws the whole day's density and counts its
/// top ports in a loop: (events/s, queries answered, (median, slowest) query s).
fn ingest_while_reading(
    dir: &std::path::Path,
    n: usize,
    t0: i64,
) -> Result<(f64, usize, (f64, f64))> {
    use fireplot::{
        plot::{layout::Layout, Density},
        store::{Filter, Store},
    };
    use std::sync::atomic::{AtomicBool, Ordering};
    let path = dir.join(format!("bench-read-{n}.db"));
    let _ = std::fs::remove_file(&path);
    let mut store = Store::open(&path)?;
    let day = Filter::range(t0, t0 + 86_400_000_000_000);
    let stop = std::sync::Arc::new(AtomicBool::new(false));
    let reader = {
        let (stop, path, day) = (stop.clone(), path.clone(), day.clone());
        std::thread::spawn(move || -> Result<Vec<f64>> {
            let mut times = Vec::new();
            // At least one query, even if ingest is over before it starts.
            loop {
                let started = std::time::Instant::now();
                let store = Store::open_read_only(&path)?;
                let mut d = Density::new(Layout::new(1600, 900, day.from_ns, day.to_ns));
                d.fill(&store, &day)?;
                store.top_ports_binned(&day, 20)?;
                times.push(started.elapsed().as_secs_f64());
                if stop.load(Ordering::Relaxed) {
                    break;
                }
            }
            Ok(times)
        })
    };
    let rate = ingest_synthetic(&mut store, n, t0)?;
    stop.store(true, Ordering::Relaxed);
    let times = reader
        .join()
        .map_err(|_| anyhow::anyhow!("the reader panicked"))??;
    let queries = times.len();
    let slowest = times.iter().copied().fold(0.0, f64::max);
    Ok((rate, queries, (median(times), slowest)))
}

/// Store ingest and plot render figures: (name, value, unit).
fn userspace(quick: bool) -> Result<Vec<(String, f64, &'static str)>> {
    use fireplot::{
        plot::{layout::Layout, render, Density, Spec, Theme},
        store::{Filter, Store},
    };
    let mut out = Vec::new();
    let dir = std::env::temp_dir().join(format!("fireplot-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let t0 = 1_800_000_000_000_000_000i64;
    let sizes: &[usize] = if quick {
        &[1_000_000]
    } else {
        &[1_000_000, 10_000_000]
    };
    for &n in sizes {
        let (mut ingest, mut render_s) = (Vec::new(), Vec::new());
        for _ in 0..3 {
            let path = dir.join(format!("bench-{n}.db"));
            let _ = std::fs::remove_file(&path);
            let mut store = Store::open(&path)?;
            ingest.push(ingest_synthetic(&mut store, n, t0)?);
            drop(store);
            let started = std::time::Instant::now();
            let store = Store::open_read_only(&path)?;
            let mut d = Density::new(Layout::new(1600, 900, t0, t0 + 86_400_000_000_000));
            // As `fireplot plot` does: the pre-binned minutes (a day at
            // 1600 px is 58 s a pixel), the edges from the events.
            d.fill(&store, &Filter::range(t0, t0 + 86_400_000_000_000))?;
            let spec = Spec {
                width: 1600,
                height: 900,
                theme: Theme::Dark,
                utc: true,
                iface: "bench".into(),
                marks: vec![],
            };
            render(&d, &spec, &dir.join(format!("bench-{n}.png")))?;
            render_s.push(started.elapsed().as_secs_f64());
        }
        out.push((
            format!("store ingest, {n} events (batches of 8192)"),
            median(ingest),
            "events/s",
        ));
        // The history stays queryable while it ingests: a reader on its own
        // connection plots the day and counts its ports, over and over.
        let (rate, queries, latency) = ingest_while_reading(&dir, n, t0)?;
        out.push((
            format!("store ingest, {n} events, while a reader queries"),
            rate,
            "events/s",
        ));
        out.push((
            "  reader: day plot + top ports answered meanwhile".into(),
            queries as f64,
            "queries",
        ));
        out.push(("  reader: median query time".into(), latency.0 * 1e3, "ms"));
        out.push(("  reader: slowest query".into(), latency.1 * 1e3, "ms"));
        out.push((
            format!("plot {n} events from the store to 1600x900 PNG"),
            median(render_s),
            "s",
        ));
    }
    let _ = std::fs::remove_dir_all(&dir);
    out.extend(detector(quick));
    out.extend(enrichment()?);
    Ok(out)
}

/// Enrichment on the fetched public data (`FIREPLOT_ENRICH_DATA`, which
/// `cargo xtask bench` passes): load time and memory of the full ASN
/// table (both CSVs compiled into range tables) and the country MMDB, and
/// lookups per second on one core, uncached (every address new: a spoofed
/// flood) and cached (the same 10,000 sources again, as real traffic is).
fn enrichment() -> Result<Vec<(String, f64, &'static str)>> {
    use fireplot::enrich::{Enricher, Options};
    let Some(d) = std::env::var_os("FIREPLOT_ENRICH_DATA").map(std::path::PathBuf::from) else {
        eprintln!("bench: no FIREPLOT_ENRICH_DATA; enrichment figures left out");
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    let started = std::time::Instant::now();
    let asn = Enricher::open(&Options {
        asn: vec![d.join("asn-ipv4.csv"), d.join("asn-ipv6.csv")],
        ..Options::default()
    })?;
    out.push((
        "enrich: load the full ASN table (2 CSVs)".into(),
        started.elapsed().as_secs_f64(),
        "s",
    ));
    let stats = asn.stats();
    out.push((
        "  ranges in the compiled tables".into(),
        stats.iter().map(|s| s.ranges).sum::<usize>() as f64,
        "ranges",
    ));
    out.push((
        "  bytes the tables and names hold".into(),
        stats.iter().map(|s| s.bytes).sum::<usize>() as f64 / 1048576.0,
        "MiB",
    ));
    let geo = Enricher::open(&Options {
        geoip: vec![d.join("dbip-country.mmdb")],
        asn: vec![d.join("asn-ipv4.csv"), d.join("asn-ipv6.csv")],
        ..Options::default()
    })?;
    // Addresses spread over the IPv4 space (an xorshift), as spoofed ones are.
    let mut x: u32 = 0x9E37_79B9;
    let addrs: Vec<std::net::IpAddr> = (0..1_000_000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            std::net::IpAddr::from(x.to_be_bytes())
        })
        .collect();
    for (name, e) in [("ASN table", &asn), ("country MMDB + ASN table", &geo)] {
        let started = std::time::Instant::now();
        let mut known = 0u64;
        for a in &addrs {
            known += u64::from(e.lookup_uncached(*a).asn.is_some());
        }
        out.push((
            format!("enrich: uncached lookups, {name}, 1 core"),
            addrs.len() as f64 / started.elapsed().as_secs_f64(),
            "lookups/s",
        ));
        std::hint::black_box(known);
    }
    let hot = &addrs[..10_000];
    for a in hot {
        geo.lookup(*a);
    }
    let started = std::time::Instant::now();
    for _ in 0..100 {
        for a in hot {
            std::hint::black_box(geo.lookup(*a));
        }
    }
    out.push((
        "enrich: cached lookups (10,000 sources again), 1 core".into(),
        1_000_000.0 / started.elapsed().as_secs_f64(),
        "lookups/s",
    ));
    Ok(out)
}

/// Detector throughput on one core. The realistic mix (most unsolicited
/// packets on a WAN come from a few busy scanners): 20 % background noise,
/// each source sending one or two probes to common ports (200,000 distinct
/// sources per 2 M events); 60 % from 500 scanners walking ports of 8
/// hosts; 15 % from 100 sweepers; 5 % backscatter from 20,000 victims. The
/// adversarial mix: every event from a new spoofed source, so the table
/// evicts on every event.
const SCANNERS: u32 = 50;

fn mix(n: usize, adversarial: bool) -> Vec<fireplot::record::Record> {
    use fireplot::record::Record;
    let t0 = 1_800_000_000_000_000_000i64;
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    let common = [
        22u16, 23, 80, 443, 445, 3389, 8080, 5060, 7547, 37777, 53, 123,
    ];
    (0..n)
        .map(|i| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let kind = x % 100;
            let (src, dport, flags): (u32, u16, u8) = match kind {
                _ if adversarial => (
                    0x0b00_0000 + i as u32,
                    common[(x >> 8) as usize % common.len()],
                    0x02,
                ),
                // one or two probes per source
                0..=19 => (
                    0x0b00_0000 + (i / 10) as u32 + (x >> 60) as u32 % 2,
                    common[(x >> 8) as usize % common.len()],
                    0x02,
                ),
                20..=79 => (
                    0x0c00_0000 + (x >> 40) as u32 % SCANNERS,
                    (x >> 16) as u16 | 1,
                    0x02,
                ),
                80..=94 => (0x0d00_0000 + (x >> 40) as u32 % 100, 443, 0x02),
                _ => (
                    0x0e00_0000 + (x >> 20) as u32 % 20_000,
                    (x >> 24) as u16 | 1024,
                    0x12,
                ),
            };
            let dst =
                0xc612_0100u32 + (x >> 56) as u32 % if (80..=94).contains(&kind) { 256 } else { 8 };
            Record {
                tcp_flags: flags,
                ..Record::probe(
                    t0 + i as i64 * 20_000,
                    std::net::IpAddr::from(src.to_be_bytes()),
                    std::net::IpAddr::from(dst.to_be_bytes()),
                    6,
                    dport,
                )
            }
        })
        .collect()
}

fn detector(quick: bool) -> Vec<(String, f64, &'static str)> {
    let n: usize = if quick { 2_000_000 } else { 10_000_000 };
    let mut out = detector_run(
        &mix(n, false),
        &format!("detector, {n} events, realistic mix (1 core)"),
    );
    if std::env::args().all(|a| a != "--realistic-only") {
        out.extend(detector_run(
            &mix(n, true),
            &format!("detector, {n} events, all new spoofed sources"),
        ));
    }
    out
}

fn detector_run(
    events: &[fireplot::record::Record],
    name: &str,
) -> Vec<(String, f64, &'static str)> {
    use fireplot::detect::{DetectConfig, Engine};
    let n = events.len();
    let mut rates = Vec::new();
    let mut last_stats = None;
    // `--detector-set key=value` (repeatable): compare settings in one run.
    let args: Vec<String> = std::env::args().collect();
    let sets: Vec<String> = args
        .windows(2)
        .filter(|w| w[0] == "--detector-set")
        .map(|w| w[1].clone())
        .collect();
    let cfg = DetectConfig::load(None, &sets).expect("detector settings");
    for _ in 0..3 {
        let mut e = Engine::new(cfg.clone());
        let started = std::time::Instant::now();
        let mut alerts = 0usize;
        let mut kinds: std::collections::BTreeMap<String, usize> = Default::default();
        for r in events {
            e.push(r);
            for a in e.drain() {
                alerts += 1;
                *kinds.entry(a.kind).or_default() += 1;
            }
        }
        for a in e.finish() {
            alerts += 1;
            *kinds.entry(a.kind).or_default() += 1;
        }
        if std::env::var_os("FIREPLOT_BENCH_KINDS").is_some() {
            eprintln!("{name}: alert records by kind {kinds:?}");
        }
        rates.push(n as f64 / started.elapsed().as_secs_f64());
        last_stats = Some((e.stats(), alerts));
    }
    rates.sort_by(f64::total_cmp);
    let (st, alerts) = last_stats.expect("ran");
    vec![
        (name.to_string(), rates[1], "events/s"),
        ("  alert records".into(), alerts as f64, "records"),
        (
            "  sources evicted".into(),
            st.sources_evicted as f64,
            "sources",
        ),
        (
            "  state at the end (budget 256 MiB)".into(),
            st.state_bytes as f64 / 1048576.0,
            "MiB",
        ),
    ]
}

/// Events per second the loader drains and decodes from the ring buffer
/// while the kernel produces as fast as BPF_PROG_TEST_RUN can (one core
/// each), and what the ring dropped at that rate.
fn ring_drain(quick: bool) -> Result<Vec<(String, f64, &'static str)>> {
    use std::sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    };
    let total: u32 = if quick { 2_000_000 } else { 10_000_000 };
    let mut s = Sensor::load(&LoadOptions {
        ring_bytes: 16 * 1024 * 1024,
        ..LoadOptions::default()
    })?;
    s.configure(
        &Limits {
            rate_limit: 0,
            target_limit: 0,
            event_budget: 0,
            ..Limits::default()
        },
        &[],
    )?;
    let mut ring = s.take_events()?;
    let frame = v4(
        OUTSIDE_V4,
        INSIDE_V4,
        L4::Tcp {
            sport: 55555,
            dport: 80,
            flags: SYN,
        },
    );
    let done = Arc::new(AtomicBool::new(false));
    let d = done.clone();
    let started = std::time::Instant::now();
    let producer = std::thread::spawn(move || -> Result<Sensor> {
        let chunk = 100_000;
        let mut left = total;
        while left > 0 {
            let n = left.min(chunk);
            s.test_run(PROG_INGRESS, &frame, n)?;
            left -= n;
        }
        d.store(true, Ordering::Release);
        Ok(s)
    });
    let offset = fireplot::sensor::clock::monotonic_to_wall_offset();
    let mut received = 0u64;
    let mut last = 0i64;
    loop {
        let finished = done.load(Ordering::Acquire);
        let mut got = false;
        while let Some(item) = ring.next() {
            if let Some(ev) = fireplot_common::event::Event::from_bytes(&item) {
                let r = fireplot::record::Record::from_event(&ev, offset);
                last = last.max(r.ts_ns);
                received += 1;
                got = true;
            }
        }
        if finished && !got {
            break;
        }
    }
    let secs = started.elapsed().as_secs_f64();
    let s = producer
        .join()
        .map_err(|_| anyhow::anyhow!("producer panicked"))??;
    let c = s.counters()?;
    let full = c.misc(fireplot_common::counters::Misc::RingFull);
    let _ = last;
    Ok(vec![
        (
            "ring buffer: events drained and decoded".into(),
            received as f64 / secs,
            "events/s",
        ),
        (
            "ring buffer: kernel produced (test_run)".into(),
            total as f64 / secs,
            "events/s",
        ),
        (
            "ring buffer: dropped at that rate (ring_full)".into(),
            full as f64,
            "events",
        ),
    ])
}

struct LabRow {
    rate: u64,
    /// Probes per second that arrived at wan0 (first to last event).
    achieved: f64,
    probes: u64,
    fireplot: f64,
    log: f64,
    tcpdump: f64,
    fireplot_cpu_s: f64,
    tcpdump_cpu_s: f64,
    ring_full: u64,
}

struct LabResult {
    rows: Vec<LabRow>,
    best: Option<u64>,
}

/// CPU seconds (user + system) a process has used so far.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let tick = 100.0; // USER_HZ
    let ut: f64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0);
    let st: f64 = f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0.0);
    (ut + st) / tick
}

/// The classic pipeline next to fireplot: for each masscan rate, the share
/// of probes that fireplot recorded as events, that an iptables LOG rule on
/// the router's WAN got into the kernel log (what the original fireplot was
/// fed), and that tcpdump on wan0 captured — all three on the same probes.
fn lab_end_to_end(quick: bool) -> Result<LabResult> {
    use fireplot_tests::{Lab, Node};

    let rates: &[u64] = if quick {
        &[10_000, 100_000]
    } else {
        &[10_000, 50_000, 100_000, 200_000]
    };
    let nports: u64 = if quick { 196 } else { 391 }; // × 256 hosts: ~50k / ~100k probes
    let lab = Lab::up("fpbench")?;
    let mac = lab.router_wan_mac()?;
    let router = lab.ns(Node::Router);
    // iptables LOG in a namespace reaches the kernel log only with this on.
    let old_nf_log = std::fs::read_to_string("/proc/sys/net/netfilter/nf_log_all_netns")
        .unwrap_or_else(|_| "0".into());
    std::fs::write("/proc/sys/net/netfilter/nf_log_all_netns", "1")
        .context("enable nf_log_all_netns")?;
    // `-I` inserts the LOG rule, `-D` deletes it.
    let log_rule = |action: &str| -> Result<()> {
        let st = std::process::Command::new("ip")
            .args(["netns", "exec", &router, "iptables", action])
            .args(["FORWARD", "-i", "wan0", "-p", "tcp", "--syn", "-j", "LOG"])
            .args(["--log-prefix", "FPBENCH "])
            .status()?;
        anyhow::ensure!(st.success(), "iptables {action} FORWARD ... LOG failed");
        Ok(())
    };
    log_rule("-I")?;
    let run = LabRun {
        lab: &lab,
        router: router.clone(),
        mac,
        dir: std::env::temp_dir().join(format!("fireplot-bench-lab-{}", std::process::id())),
        ports: format!("1-{nports}"),
        sent: 256 * nports,
    };
    let mut rows = Vec::new();
    let result = (|| -> Result<()> {
        std::fs::create_dir_all(&run.dir)?;
        let reps = if quick { 1 } else { 3 };
        for &rate in rates {
            let mut reps_rows: Vec<LabRow> = Vec::new();
            for _ in 0..reps {
                reps_rows.push(run.at(rate)?);
            }
            rows.push(median_row(reps_rows));
        }
        Ok(())
    })();
    let _ = log_rule("-D");
    let _ = std::fs::write(
        "/proc/sys/net/netfilter/nf_log_all_netns",
        old_nf_log.trim(),
    );
    let _ = std::fs::remove_dir_all(&run.dir);
    drop(run);
    drop(lab);
    result?;
    let best = rows
        .iter()
        .filter(|r| r.fireplot >= 0.999)
        .map(|r| r.rate)
        .max();
    Ok(LabResult { rows, best })
}

/// The kernel log's FPBENCH lines, counted by a thread from its start
/// until it is stopped.
struct KmsgCounter {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    reader: std::thread::JoinHandle<(u64, u64)>,
}

impl KmsgCounter {
    fn start() -> Result<KmsgCounter> {
        use std::io::Read;
        let kmsg = std::fs::File::open("/dev/kmsg")?;
        // SAFETY: seek the kmsg fd to the end so only new records are read.
        unsafe { libc::lseek(std::os::fd::AsRawFd::as_raw_fd(&kmsg), 0, libc::SEEK_END) };
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let st2 = stop.clone();
        let reader = std::thread::spawn(move || {
            // SAFETY: non-blocking reads on our own fd.
            unsafe {
                let fd = std::os::fd::AsRawFd::as_raw_fd(&kmsg);
                libc::fcntl(
                    fd,
                    libc::F_SETFL,
                    libc::fcntl(fd, libc::F_GETFL) | libc::O_NONBLOCK,
                );
            }
            let mut kmsg = kmsg;
            let (mut n, mut lost) = (0u64, 0u64);
            let mut buf = vec![0u8; 8192];
            loop {
                match kmsg.read(&mut buf) {
                    Ok(len) if len > 0 => {
                        if buf[..len].windows(8).any(|w| w == b"FPBENCH ") {
                            n += 1;
                        }
                    }
                    Ok(_) => {}
                    Err(e) if e.raw_os_error() == Some(libc::EPIPE) => lost += 1,
                    Err(_) => {
                        if st2.load(std::sync::atomic::Ordering::Relaxed) {
                            break;
                        }
                        std::thread::sleep(std::time::Duration::from_micros(200));
                    }
                }
            }
            (n, lost)
        });
        Ok(KmsgCounter { stop, reader })
    }

    /// Lines logged, and records the kernel dropped before they were read.
    fn stop(self) -> Result<(u64, u64)> {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.reader
            .join()
            .map_err(|_| anyhow::anyhow!("kmsg reader panicked"))
    }
}

/// One masscan sweep of the lab's inside at a rate, seen by fireplot,
/// the LOG rule and tcpdump.
struct LabRun<'a> {
    lab: &'a fireplot_tests::Lab,
    router: String,
    /// The router's wan0 MAC (masscan's --router-mac).
    mac: String,
    dir: std::path::PathBuf,
    ports: String,
    /// Probes masscan sends: each (host, port) SYN once.
    sent: u64,
}

impl LabRun<'_> {
    fn at(&self, rate: u64) -> Result<LabRow> {
        use fireplot_tests::Node;
        use std::io::Read;

        let lab = self.lab;
        // Kernel log reader from now on.
        let kmsg = KmsgCounter::start()?;
        let pcap = self.dir.join("cap.pcap");
        let mut tcpdump = lab
            .command(Node::Router, "tcpdump")
            .args(["-i", "wan0", "-n", "-s", "96", "-B", "8192", "-w"])
            .arg(&pcap)
            .arg("tcp[tcpflags] & tcp-syn != 0 and dst net 198.18.1.0/24")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .context("tcpdump")?;
        let out = self.dir.join(format!("r{rate}"));
        let sensor = fireplot_tests::sensor::Sensor::start(
            lab,
            &out,
            // Every limit off: this stage measures the event path.
            &[
                &fireplot_tests::sensor::NO_LIMITS[..],
                &["--ring-mib", "64"],
            ]
            .concat(),
        )?;
        std::thread::sleep(std::time::Duration::from_millis(1000));
        let fp_pid = sensor_pid(&self.router);
        let fp_cpu0 = fp_pid.map(cpu_seconds).unwrap_or(0.0);
        let td_cpu0 = cpu_seconds(tcpdump.id());
        self.masscan(rate)?;
        std::thread::sleep(std::time::Duration::from_millis(1000));
        let fp_cpu = fp_pid.map(cpu_seconds).unwrap_or(0.0) - fp_cpu0;
        let td_cpu = cpu_seconds(tcpdump.id()) - td_cpu0;
        let c = sensor.stop()?;
        // SAFETY: signal our own child.
        unsafe { libc::kill(tcpdump.id() as i32, libc::SIGINT) };
        let mut err = String::new();
        if let Some(mut e) = tcpdump.stderr.take() {
            let _ = e.read_to_string(&mut err);
        }
        let _ = tcpdump.wait();
        std::thread::sleep(std::time::Duration::from_millis(300));
        let (logged, lost) = kmsg.stop()?;
        let captured: u64 = err
            .lines()
            .find(|l| l.contains("packets captured"))
            .and_then(|l| l.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        // Ground truth: masscan sends each (host, port) SYN once.
        let probes = self.sent;
        let xdp_seen: u64 = c.stats["classes"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter(|k| k["class"] == "unsolicited" && k["proto"] == "tcp")
                    .map(|k| k["packets"].as_u64().unwrap_or(0))
                    .sum()
            })
            .unwrap_or(0);
        let syns: Vec<i64> = c
            .events
            .iter()
            .filter(|e| e["src"] == "198.18.0.20" && e["flags"] == "SYN")
            .filter_map(|e| {
                e["ts"]
                    .as_str()
                    .and_then(fireplot::record::parse_rfc3339_ns)
            })
            .collect();
        let events = syns.len() as u64;
        // The rate the probes really arrived at wan0, from the events' own times.
        let (lo, hi) = (
            syns.iter().min().copied().unwrap_or(0),
            syns.iter().max().copied().unwrap_or(0),
        );
        let achieved = events as f64 / ((hi - lo) as f64 / 1e9).max(1e-3);
        let frac = |n: u64| {
            if probes == 0 {
                0.0
            } else {
                (n as f64 / probes as f64).min(1.0)
            }
        };
        eprintln!(
            "bench: masscan {rate} pps: {probes} SYN probes sent, XDP saw {xdp_seen} unsolicited TCP, fireplot events {events}, LOG {logged} (kmsg lost {lost}), tcpdump {captured}"
        );
        Ok(LabRow {
            rate,
            achieved,
            probes,
            fireplot: frac(events),
            log: frac(logged),
            tcpdump: frac(captured),
            fireplot_cpu_s: fp_cpu,
            tcpdump_cpu_s: td_cpu,
            ring_full: c.kernel("ring_full"),
        })
    }

    /// masscan over the inside's /24 at `rate`, from 198.18.0.20.
    fn masscan(&self, rate: u64) -> Result<()> {
        // masscan now and then hangs after sending; a time limit ends
        // it and the figures stand on what wan0 received. Its run
        // includes its 1 s --wait.
        let limit = (self.sent / rate + 15).to_string();
        let status = self
            .lab
            .command(fireplot_tests::Node::Inet, "timeout")
            .args([
                "-s",
                "INT",
                "--kill-after=3",
                &limit,
                "masscan",
                "198.18.1.0/24",
            ])
            .arg(format!("-p{}", self.ports))
            .args([
                "--rate",
                &rate.to_string(),
                "--wait",
                "1",
                "--router-mac",
                &self.mac,
            ])
            .args(["--adapter-ip", "198.18.0.20", "-e", "inet0"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .context("masscan")?;
        if !status.success() {
            eprintln!("bench: masscan at {rate} pps ended with {status} (time limit {limit} s)");
        }
        Ok(())
    }
}

impl LabResult {
    /// The table: per rate, the share each pipeline recorded, and CPU.
    fn print(&self) {
        println!(
            "{:<10} {:>10} {:>9} {:>10} {:>10} {:>10} {:>12} {:>12}",
            "masscan",
            "achieved",
            "probes",
            "fireplot",
            "ipt LOG",
            "tcpdump",
            "fireplot cpu",
            "tcpdump cpu"
        );
        for r in &self.rows {
            println!(
                "{:<10} {:>10} {:>9} {:>9.2}% {:>9.2}% {:>9.2}% {:>11.2}s {:>11.2}s",
                format!("{}k pps", r.rate / 1000),
                format!("{:.0}k pps", r.achieved / 1000.0),
                r.probes,
                r.fireplot * 100.0,
                r.log * 100.0,
                r.tcpdump * 100.0,
                r.fireplot_cpu_s,
                r.tcpdump_cpu_s
            );
        }
        match self.best {
            Some(b) => println!(
                "highest rate with fireplot recording >= 99.9 % of probes: {}k pps",
                b / 1000
            ),
            None => println!("fireplot recorded < 99.9 % of probes at every rate measured"),
        }
    }

    fn json(&self) -> Vec<serde_json::Value> {
        self.rows
            .iter()
            .map(|r| {
                json!({
                    "rate_pps": r.rate, "achieved_pps": r.achieved, "probes": r.probes, "fireplot": r.fireplot, "iptables_log": r.log,
                    "tcpdump": r.tcpdump, "fireplot_cpu_s": r.fireplot_cpu_s, "tcpdump_cpu_s": r.tcpdump_cpu_s,
                    "ring_full": r.ring_full,
                })
            })
            .collect()
    }
}

/// The pid of the fireplot running in the router namespace.
fn sensor_pid(router_ns: &str) -> Option<u32> {
    let out = std::process::Command::new("ip")
        .args(["netns", "pids", router_ns])
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.trim().parse::<u32>().ok())
        .find(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .map(|c| c.trim() == "fireplot")
                .unwrap_or(false)
        })
}

/// The median of each figure over repeated runs at one rate.
fn median_row(rs: Vec<LabRow>) -> LabRow {
    let m = |f: &dyn Fn(&LabRow) -> f64| median(rs.iter().map(f).collect());
    LabRow {
        rate: rs[0].rate,
        achieved: m(&|r| r.achieved),
        probes: rs[0].probes,
        fireplot: m(&|r| r.fireplot),
        log: m(&|r| r.log),
        tcpdump: m(&|r| r.tcpdump),
        fireplot_cpu_s: m(&|r| r.fireplot_cpu_s),
        tcpdump_cpu_s: m(&|r| r.tcpdump_cpu_s),
        ring_full: m(&|r| r.ring_full as f64) as u64,
    }
}
