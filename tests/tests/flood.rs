//! A line-rate flood in the lab: the project's own generator (an XDP
//! program in live-frame mode on inet0) floods an inside host's TCP/80
//! from spoofed sources in 198.19.0.0/16 while nmap scans other ports.
//! The flood must be counted (events + aggregates) within 1 % of what the
//! generator sent, and every nmap probe that reached wan0 must be an event.
#![cfg(feature = "bench")]

use std::{
    collections::BTreeSet,
    net::IpAddr,
    process::Stdio,
    time::{Duration, Instant},
};

use fireplot::store::{Filter, Store};
use fireplot_tests::{
    addr, privileged,
    sensor::Sensor,
    traffic::{nmap_syn_from, WanCapture},
    unique_prefix, Lab, Node,
};
use serde_json::Value;

const FLOOD_BIN: &str = env!("CARGO_BIN_EXE_fireplot-flood");

fn in_flood_net(a: IpAddr) -> bool {
    matches!(a, IpAddr::V4(v) if v.octets()[..2] == [198, 19])
}

#[test]
fn a_spoofed_flood_is_counted_while_a_scan_keeps_its_events() {
    if !privileged("a_spoofed_flood_is_counted_while_a_scan_keeps_its_events") {
        return;
    }
    let lab = Lab::up(&unique_prefix("fld2")).expect("lab");
    let dir = std::env::temp_dir().join(format!("fireplot-test-flood2-{}", std::process::id()));
    let db = dir.join("history.db");
    let _ = std::fs::remove_dir_all(&dir);
    let sensor = Sensor::start(&lab, &dir, &["--db", db.to_str().unwrap()]).expect("sensor");
    // The scanner's probes as they reached wan0 (after XDP, before the stack).
    let capture = WanCapture::start(&lab, &dir.join("scan.pcap"), "src host 198.18.0.11 and tcp")
        .expect("tcpdump");
    let mac = lab.router_wan_mac().expect("wan0's MAC");
    // 10 M: the flood the accounting is sized on (issue 24, within 1 %).
    let sent: u64 = 10_000_000;
    // What the veth handed wan0's XDP program, before and after: when the
    // receiving side is slower than the generator (a busy machine), the
    // link drops frames before wan0, which is the link's loss, not the
    // sensor's.
    let at_wan0 = || xdp_packets(&lab, Node::Router, "wan0");
    let arrived_before = at_wan0();
    let generator = lab
        .command(Node::Inet, FLOOD_BIN)
        .args(["--iface", "inet0", "--dst-mac", &mac, "--dst", addr::LAN_V4])
        .args(["--src", "198.19.0.1", "--src-bits", "16", "--proto", "tcp"])
        .args([
            "--dport",
            "80",
            "--count",
            &sent.to_string(),
            "--max-secs",
            "120",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("fireplot-flood");
    std::thread::sleep(Duration::from_millis(200));
    let started = Instant::now();
    nmap_syn_from(&lab, "198.18.0.11", "1000-1199").expect("nmap during the flood");
    let nmap_secs = started.elapsed().as_secs_f64();
    let out = generator.wait_with_output().expect("generator ends");
    assert!(
        out.status.success(),
        "generator: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).expect("generator's report");
    assert_eq!(report["total"].as_u64(), Some(sent), "{report}");
    let gen_secs = report["secs"].as_f64().unwrap();
    // Aggregates are taken once their second is over: stop after that.
    std::thread::sleep(Duration::from_millis(2500));
    let arrived_after = at_wan0();
    let c = sensor.stop().expect("stop");
    let captured = capture.stop().expect("tcpdump's count");

    // Every probe of the scan that reached wan0 is an event.
    let scan: BTreeSet<u64> = c
        .events
        .iter()
        .filter(|e| e["src"] == "198.18.0.11")
        .map(|e| e["dport"].as_u64().unwrap())
        .collect();
    // nmap sends each port once (no retries); under the flood the link may
    // drop some before wan0, which is not the sensor's loss: every probe
    // that reached wan0 is an event.
    assert!(
        captured >= 100,
        "most of nmap's 200 probes reached wan0 ({captured})"
    );
    assert_eq!(
        scan.len() as u64,
        captured,
        "every nmap probe that reached wan0 is an event"
    );
    assert!(
        c.aggregates.iter().all(|a| a["dport"] == 80),
        "no scan probe was aggregated"
    );

    // The flood: events and aggregates in the store add up to what the
    // generator sent, within 1 %.
    let store = Store::open_read_only(&db).expect("history");
    let (mut events, mut aggregated, mut rows) = (0u64, 0u64, 0u64);
    store
        .for_each(&Filter::range(i64::MIN, i64::MAX), |r| {
            if r.dport == 80 && r.src.is_some_and(in_flood_net) {
                if r.is_aggregate() {
                    aggregated += u64::from(r.count);
                    rows += 1;
                } else {
                    events += 1;
                }
            }
        })
        .expect("read history");
    let counted = events + aggregated;
    // Everything that reached wan0 in the run: the flood, nmap's probes and
    // a few neighbour packets.
    let arrived = arrived_after - arrived_before;
    let off = (counted as f64 - arrived as f64).abs() / arrived.max(1) as f64;
    eprintln!(
        "flood: sent {sent} in {gen_secs:.2} s ({:.0} pps), {arrived} frames reached wan0; \
         stored {events} events + {aggregated} packets in {rows} aggregates = {counted} \
         ({:.3} % off what arrived, {:.3} % off what was sent); nmap took {nmap_secs:.2} s; kernel: {}",
        sent as f64 / gen_secs,
        off * 100.0,
        (sent as f64 - counted as f64).abs() / sent as f64 * 100.0,
        c.stats["kernel"]
    );
    assert!(
        arrived >= sent / 2,
        "most of the flood reached wan0 ({arrived} of {sent})"
    );
    assert!(
        off <= 0.01,
        "the flood's count is within 1 % of what reached wan0"
    );
    assert!(
        aggregated > events,
        "most of a flood past the target limit is aggregated"
    );
    assert_eq!(c.kernel("agg_lost"), 0, "nothing lost");
    assert_eq!(
        c.kernel("aggregated"),
        c.aggregated_packets(),
        "every aggregated packet reached userspace"
    );
    // The bytes: every flood frame is one size (an event's `len`); the
    // kernel's aggregates sum their bytes exactly, so their mean is it.
    let frame_len = c
        .events
        .iter()
        .find(|e| e["dport"] == 80 && e["src"].as_str().is_some_and(|s| s.starts_with("198.19.")))
        .and_then(|e| e["len"].as_u64())
        .expect("an event of the flood");
    let flood_aggs: Vec<&Value> = c.aggregates.iter().filter(|a| a["dport"] == 80).collect();
    let agg_bytes: u64 = flood_aggs
        .iter()
        .map(|a| a["len"].as_u64().unwrap() * a["count"].as_u64().unwrap())
        .sum();
    assert!(
        flood_aggs.iter().all(|a| a["len"] == frame_len),
        "every aggregate's mean length is the frame's ({frame_len})"
    );
    let bytes_off = (agg_bytes as f64 - (aggregated * frame_len) as f64).abs()
        / (aggregated * frame_len) as f64;
    assert!(bytes_off <= 0.01, "bytes within 1 %: {agg_bytes}");
    // Detection counts the aggregates: a spoofed flood is one attack on its
    // victim (`ddos`, SYN), not a flood of each spoofed address.
    let ddos = c
        .alerts
        .iter()
        .rfind(|a| a["kind"] == "ddos" && a["vector"] == "syn" && a["status"] == "ended")
        .unwrap_or_else(|| panic!("a SYN ddos alert in {:?}", c.alerts));
    assert_eq!(
        ddos["targets"]["sample"],
        serde_json::json!([addr::LAN_V4]),
        "its target is the flooded host: {ddos}"
    );
    let probes = ddos["probes"].as_u64().unwrap();
    eprintln!(
        "ddos: {probes} packets, {} bytes, peak {} pps, {} sources; frames of {frame_len} bytes",
        ddos["bytes"], ddos["peak_pps"], ddos["source_count"]
    );
    assert!(
        (probes as f64 - counted as f64).abs() / counted as f64 <= 0.01,
        "the attack counts the flood within 1 % ({probes} of {counted}): {ddos}"
    );
    assert!(
        !c.alerts.iter().any(|a| a["kind"] == "flood"
            && a["sources"].as_array().is_some_and(|s| s
                .iter()
                .any(|s| s.as_str().is_some_and(|s| s.starts_with("198.19."))))),
        "no spoofed address is a flooder"
    );
}

/// Frames the veth `iface` in `node` received on its XDP path (every
/// queue's `xdp_packets` in `ethtool -S`).
fn xdp_packets(lab: &Lab, node: Node, iface: &str) -> u64 {
    let out = lab
        .exec(node, "ethtool", &["-S", iface])
        .expect("ethtool -S (installed by `cargo xtask setup`)");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.trim().strip_prefix("rx_queue_"))
        .filter(|l| l.contains("_xdp_packets:"))
        .filter_map(|l| l.rsplit(':').next()?.trim().parse::<u64>().ok())
        .sum()
}
