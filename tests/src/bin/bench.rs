//! `cargo xtask bench`: measured figures, printed as a table and written
//! as JSON. Benchmarks never fail on a number; they report it.

use std::time::Duration;

use anyhow::{Context, Result};
use fireplot::sensor::{Limits, LoadOptions, Sensor, PROG_BASELINE, PROG_INGRESS};
use fireplot_tests::packets::{flags::*, *};
use serde_json::json;

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
    let (repeat, runs) = if quick { (200_000, 3) } else { (1_000_000, 7) };
    let out_path = std::env::args()
        .skip_while(|a| a != "--json")
        .nth(1)
        .unwrap_or_else(|| "target/bench/results.json".into());

    // A ring large enough to hold every event of a run without draining.
    let big_ring = LoadOptions {
        ring_bytes: 512 * 1024 * 1024,
        ..LoadOptions::default()
    };
    let unlimited = Limits {
        rate_limit: 0,
        ..Limits::default()
    };
    let mut s = Sensor::load(&big_ring)?;
    s.configure(&unlimited, &[])?;
    // Inside flows, recorded by the real egress program.
    let out_tcp = v4(
        INSIDE_V4,
        OUTSIDE_V4,
        L4::Tcp {
            sport: 40000,
            dport: 443,
            flags: SYN,
        },
    );
    let out_udp = v4(
        INSIDE_V4,
        OUTSIDE_V4,
        L4::Udp {
            sport: 5000,
            dport: 53,
        },
    );
    let out_tcp6 = v6(
        INSIDE_V6,
        OUTSIDE_V6,
        L4::Tcp {
            sport: 40000,
            dport: 443,
            flags: SYN,
        },
    );
    for f in [&out_tcp, &out_udp, &out_tcp6] {
        s.test_run_egress(f, 1)?;
    }
    let reply_tcp = v4(
        OUTSIDE_V4,
        INSIDE_V4,
        L4::Tcp {
            sport: 443,
            dport: 40000,
            flags: ACK | PSH,
        },
    );
    let reply_udp = v4(
        OUTSIDE_V4,
        INSIDE_V4,
        L4::Udp {
            sport: 53,
            dport: 5000,
        },
    );
    let reply_tcp6 = v6(
        OUTSIDE_V6,
        INSIDE_V6,
        L4::Tcp {
            sport: 443,
            dport: 40000,
            flags: ACK,
        },
    );
    let syn = v4(
        OUTSIDE_V4,
        INSIDE_V4,
        L4::Tcp {
            sport: 55555,
            dport: 80,
            flags: SYN,
        },
    );
    let udp6 = v6(
        OUTSIDE_V6,
        INSIDE_V6,
        L4::Udp {
            sport: 55555,
            dport: 53,
        },
    );
    let malformed = syn[..30].to_vec();
    let egress_ack = v4(
        INSIDE_V4,
        OUTSIDE_V4,
        L4::Tcp {
            sport: 40000,
            dport: 443,
            flags: ACK,
        },
    );

    let mut rows: Vec<(String, f64)> = Vec::new();
    let baseline = xdp_ns(&mut s, PROG_BASELINE, &syn, repeat, runs)?;
    rows.push(("xdp baseline (XDP_PASS)".into(), baseline));
    for (name, frame) in [
        ("reply to inside TCP flow (v4)", &reply_tcp),
        ("reply to inside UDP flow (v4)", &reply_udp),
        ("reply to inside TCP flow (v6)", &reply_tcp6),
        ("malformed (truncated IPv4)", &malformed),
    ] {
        rows.push((
            name.into(),
            xdp_ns(&mut s, PROG_INGRESS, frame, repeat, runs)?,
        ));
    }
    // Events: each run's events land in the big ring; a fresh sensor per
    // figure keeps the ring from filling across figures.
    for (name, frame) in [
        ("unsolicited IPv4 SYN (event)", &syn),
        ("unsolicited IPv6 UDP (event)", &udp6),
    ] {
        let mut e = Sensor::load(&big_ring)?;
        e.configure(&unlimited, &[])?;
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
                eprintln!(
                    "warning: ring filled during `{name}`; figure includes the ring-full path"
                );
            }
            e = Sensor::load(&big_ring)?;
            e.configure(&unlimited, &[])?;
        }
        rows.push((name.into(), median(v)));
    }
    let limited = Limits {
        rate_limit: 1,
        rate_burst: 1,
        ..Limits::default()
    };
    let mut l = Sensor::load(&LoadOptions::default())?;
    l.configure(&limited, &[])?;
    rows.push((
        "unsolicited, rate-limited source (suppressed)".into(),
        xdp_ns(&mut l, PROG_INGRESS, &syn, repeat, runs)?,
    ));
    let egress = egress_ns(&mut s, &egress_ack, repeat, runs)?;

    println!(
        "{:<48} {:>9} {:>11}",
        "XDP program (BPF_PROG_TEST_RUN)", "ns/pkt", "× baseline"
    );
    for (name, ns) in &rows {
        println!("{name:<48} {ns:>9.1} {:>10.2}×", ns / baseline);
    }
    println!(
        "{:<48} {egress:>9.1}",
        "tc egress recorder (ACK on a known flow)"
    );
    let json = json!({
        "kernel": std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim(),
        "cpu": std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default().lines()
            .find(|l| l.starts_with("model name")).and_then(|l| l.split(':').nth(1)).unwrap_or("").trim(),
        "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "repeat": repeat,
        "runs": runs,
        "xdp": rows.iter().map(|(n, v)| json!({"name": n, "ns": v, "x_baseline": v / baseline})).collect::<Vec<_>>(),
        "tc_egress_ns": egress,
    });
    if let Some(dir) = std::path::Path::new(&out_path).parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&out_path, serde_json::to_string_pretty(&json)?)?;
    println!("written to {out_path}");
    Ok(())
}
