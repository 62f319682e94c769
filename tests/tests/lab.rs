//! End-to-end tests on the lab network with real tools: the sensor runs on
//! the router's wan0, scanners on the inet side, ordinary clients inside.

use std::{collections::BTreeSet, path::PathBuf, process::Command};

use fireplot_tests::{
    addr, privileged,
    sensor::{fireplot_bin, Collected, Sensor},
    traffic::{hping3_flood, nmap, nmap_syn_from, outbound, Servers, WanCapture},
    unique_prefix, Lab, Node,
};
use serde_json::Value;

fn out_dir(test: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("fireplot-test-{test}-{}", std::process::id()));
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

/// Every event the kernel sent reached the file, every aggregated packet
/// is in an aggregate line, and every unsolicited packet is an event, an
/// aggregated packet (with its reason) or a counted loss.
fn assert_consistent(c: &Collected) {
    let sent = c.kernel("events_sent");
    assert_eq!(
        sent,
        c.user("events_received"),
        "kernel sent vs userspace received"
    );
    assert_eq!(
        sent,
        c.events.len() as u64,
        "sent vs event lines in the file"
    );
    assert_eq!(
        c.user("events_written"),
        sent + c.user("aggregates_received"),
        "every event and aggregate written"
    );
    assert_eq!(c.aggregates.len() as u64, c.user("aggregates_received"));
    assert_eq!(c.user("decode_errors"), 0);
    assert_eq!(
        c.kernel("aggregated"),
        c.aggregated_packets(),
        "the kernel's aggregated packets are in the aggregate lines"
    );
    assert_eq!(c.user("aggregated_packets"), c.aggregated_packets());
    let held = c.kernel("suppressed")
        + c.kernel("target_limited")
        + c.kernel("over_budget")
        + c.kernel("ring_full");
    assert_eq!(
        held,
        c.kernel("aggregated") + c.kernel("agg_lost"),
        "each packet not sent has one reason"
    );
    assert_eq!(
        c.class_total("unsolicited"),
        sent + held,
        "unsolicited packets = events + aggregated + lost"
    );
}

fn events_from<'a>(c: &'a Collected, src: &str) -> Vec<&'a Value> {
    c.events.iter().filter(|e| e["src"] == src).collect()
}

#[test]
fn replies_to_inside_traffic_are_never_events() {
    if !privileged("replies_to_inside_traffic_are_never_events") {
        return;
    }
    let lab = Lab::up(&unique_prefix("rep")).expect("lab");
    let servers = Servers::start(&lab, 8080, 5353).expect("servers");
    let sensor = Sensor::start(&lab, &out_dir("replies"), &[]).expect("sensor");
    let o = outbound(&lab, &servers, 10).expect("outbound traffic");
    sensor.settle(0);
    let c = sensor.stop().expect("stop sensor");
    servers.stop().expect("stop servers");
    assert_eq!(
        (o.tcp_ok, o.udp_ok, o.ping_ok),
        (20, 20, 2),
        "all outbound exchanges answered"
    );
    assert!(
        c.class_total("reply") >= 100,
        "replies counted: {}",
        c.class_total("reply")
    );
    assert_eq!(c.events.len(), 0, "replies became events: {:?}", c.events);
    assert_eq!(c.class_total("unsolicited"), 0);
    assert!(o.flows >= 40, "the clients opened their flows: {o:?}");
    assert!(
        c.kernel("flows_created") >= o.flows as u64,
        "egress recorded every flow the clients opened: {} of {}",
        c.kernel("flows_created"),
        o.flows
    );
    assert_consistent(&c);
}

/// A router with two uplinks, one sensor on both: the lan's flows leave
/// by wan0 and their replies come back on wan1 (asymmetric routing), and
/// none of those replies is an event; a probe on each uplink is an event
/// named after its interface, and the summary counts per interface.
#[test]
fn two_wans_share_one_flow_table() {
    if !privileged("two_wans_share_one_flow_table") {
        return;
    }
    let lab = Lab::up(&unique_prefix("wan2")).expect("lab");
    lab.add_second_uplink().expect("second uplink");
    let servers = Servers::start(&lab, 8080, 5353).expect("servers");
    let sensor = Sensor::start(&lab, &out_dir("two-wans"), &["--iface", "wan1"]).expect("sensor");
    let o = outbound(&lab, &servers, 10).expect("outbound traffic");
    // One probe per uplink, from the inet side: SYNs to a closed port of
    // the router's address on each.
    for (port, iface, dst) in [
        ("7001", "inet0", addr::WAN_V4),
        ("7002", "inet1", "198.18.2.1"),
    ] {
        let out = nmap(&lab, &["-sS", "-e", iface, "-p", port, dst]).expect("nmap");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    sensor.settle(2);
    let c = sensor.stop().expect("stop sensor");
    servers.stop().expect("stop servers");
    assert_eq!(
        (o.tcp_ok, o.udp_ok, o.ping_ok),
        (20, 20, 2),
        "every outbound exchange was answered over the other uplink"
    );
    // At least a SYN-ACK and the echo per TCP exchange, the echo per UDP
    // one, 3 echo replies per ping.
    assert!(
        c.class_total("reply") >= 2 * 20 + 20 + 2 * 3,
        "replies counted on wan1: {}",
        c.class_total("reply")
    );
    let ports = |iface: &str| -> BTreeSet<u64> {
        c.events
            .iter()
            .filter(|e| e["iface"] == iface)
            .filter_map(|e| e["dport"].as_u64())
            .collect()
    };
    assert_eq!(ports("wan0"), BTreeSet::from([7001]), "{:?}", c.events);
    assert_eq!(ports("wan1"), BTreeSet::from([7002]), "{:?}", c.events);
    assert_eq!(
        c.events.len(),
        2,
        "replies that came back on the other uplink became events: {:?}",
        c.events
    );
    let ifaces = c.stats["interfaces"]
        .as_array()
        .expect("per-interface counts");
    let names: Vec<&str> = ifaces.iter().filter_map(|i| i["name"].as_str()).collect();
    assert_eq!(names, ["wan0", "wan1"]);
    assert!(ifaces.iter().all(|i| i["events"] == 1), "{ifaces:?}");
    assert_eq!(c.stats["iface"], "wan0+wan1");
    assert_consistent(&c);
}

#[test]
fn nmap_syn_scan_gives_one_event_per_probe() {
    if !privileged("nmap_syn_scan_gives_one_event_per_probe") {
        return;
    }
    let lab = Lab::up(&unique_prefix("syn")).expect("lab");
    let started = chrono_now();
    let sensor = Sensor::start(&lab, &out_dir("syn"), &[]).expect("sensor");
    nmap(&lab, &["-sS", "-p", "1-200", addr::LAN_V4]).expect("nmap");
    sensor.settle(200);
    let c = sensor.stop().expect("stop");
    let ended = chrono_now();
    let probes = events_from(&c, addr::INET_V4);
    assert_eq!(probes.len(), 200, "one event per probe");
    let ports: BTreeSet<u64> = probes
        .iter()
        .map(|e| e["dport"].as_u64().expect("dport"))
        .collect();
    assert_eq!(
        ports,
        (1..=200).collect::<BTreeSet<u64>>(),
        "each port once"
    );
    for e in &probes {
        assert_eq!(e["family"], 4);
        assert_eq!(e["proto"], "tcp");
        assert_eq!(e["dst"], addr::LAN_V4);
        assert_eq!(e["flags"], "SYN");
        assert_eq!(e["class"], "unsolicited");
        assert!(e["sport"].as_u64().is_some_and(|p| p > 0));
        assert!(e["ttl"].as_u64().is_some_and(|t| t > 0));
        assert!(e["len"].as_u64().is_some_and(|l| l >= 54));
        let ts = e["ts"].as_str().expect("ts");
        assert!(ts.ends_with('Z') && ts.len() == 30, "RFC 3339 ns UTC: {ts}");
        assert!(
            started.as_str() <= ts && ts <= ended.as_str(),
            "{ts} within the run [{started}, {ended}]"
        );
    }
    assert_consistent(&c);
}

fn chrono_now() -> String {
    let out = Command::new("date")
        .args(["-u", "+%Y-%m-%dT%H:%M:%S.%NZ"])
        .output()
        .expect("date");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn ipv6_probes_are_events() {
    if !privileged("ipv6_probes_are_events") {
        return;
    }
    let lab = Lab::up(&unique_prefix("v6")).expect("lab");
    let sensor = Sensor::start(&lab, &out_dir("v6"), &[]).expect("sensor");
    nmap(&lab, &["-6", "-sS", "-p", "1-100", addr::LAN_V6]).expect("nmap -6");
    nmap(&lab, &["-6", "-sU", "-p", "500-509", addr::LAN_V6]).expect("nmap -6 -sU");
    sensor.settle(110);
    let c = sensor.stop().expect("stop");
    let probes = events_from(&c, addr::INET_V6);
    let tcp: BTreeSet<u64> = probes
        .iter()
        .filter(|e| e["proto"] == "tcp")
        .map(|e| e["dport"].as_u64().unwrap())
        .collect();
    assert_eq!(tcp, (1..=100).collect(), "every IPv6 TCP probe");
    let udp: BTreeSet<u64> = probes
        .iter()
        .filter(|e| e["proto"] == "udp")
        .map(|e| e["dport"].as_u64().unwrap())
        .collect();
    assert_eq!(udp, (500..=509).collect(), "every IPv6 UDP probe");
    for e in &probes {
        assert_eq!(e["family"], 6);
        assert_eq!(e["dst"], addr::LAN_V6);
        assert_eq!(e["class"], "unsolicited");
    }
    assert!(
        c.class_total("control") > 0,
        "neighbour discovery counted as control"
    );
    assert_consistent(&c);
}

#[test]
fn published_service_is_not_an_event() {
    if !privileged("published_service_is_not_an_event") {
        return;
    }
    let lab = Lab::up(&unique_prefix("svc")).expect("lab");
    let sensor = Sensor::start(&lab, &out_dir("svc"), &["--service", "tcp/8443"]).expect("sensor");
    nmap(&lab, &["-sS", "-p", "8440-8446", addr::LAN_V4]).expect("nmap");
    sensor.settle(6);
    let c = sensor.stop().expect("stop");
    let ports: BTreeSet<u64> = c
        .events
        .iter()
        .filter_map(|e| e["dport"].as_u64())
        .collect();
    assert_eq!(
        ports,
        [8440, 8441, 8442, 8444, 8445, 8446].into(),
        "8443 is published"
    );
    assert_eq!(c.class_total("service"), 1, "the probe of 8443 is service");
    assert_consistent(&c);
}

#[test]
fn a_flood_does_not_silence_another_source() {
    if !privileged("a_flood_does_not_silence_another_source") {
        return;
    }
    // A small budget, so that any flood hping3 can send is far past it
    // whatever the machine's speed, yet each CPU's share of the burst holds
    // the second source's 100 probes; the bounds below come from it.
    let (rate, burst) = (100u64, 400u64);
    let lab = Lab::up(&unique_prefix("fld")).expect("lab");
    let dir = out_dir("flood");
    let sensor = Sensor::start(
        &lab,
        &dir,
        &[
            "--rate-limit",
            &rate.to_string(),
            "--rate-burst",
            &burst.to_string(),
        ],
    )
    .expect("sensor");
    // What of the second source reaches wan0.
    let capture = WanCapture::start(
        &lab,
        &dir.join("second.pcap"),
        "src host 198.18.0.11 and tcp",
    )
    .expect("tcpdump");
    let flood = hping3_flood(&lab, 1).expect("hping3 flood");
    nmap_syn_from(&lab, "198.18.0.11", "1-100").expect("nmap during the flood");
    flood.wait_with_output().expect("flood ends");
    sensor.settle(0);
    let c = sensor.stop().expect("stop");
    let captured = capture.stop().expect("tcpdump's count");
    let second: BTreeSet<u64> = events_from(&c, "198.18.0.11")
        .iter()
        .map(|e| e["dport"].as_u64().unwrap())
        .collect();
    assert!(
        captured > 0,
        "some of the second source's probes crossed the link"
    );
    assert_eq!(
        second.len() as u64,
        captured,
        "every probe of the second source that reached wan0 is an event"
    );
    assert_eq!(c.kernel("ring_full"), 0, "no event lost to a full ring");
    let flood_events = events_from(&c, addr::INET_V4);
    let flooded = c.class_total("unsolicited") - second.len() as u64;
    // The bounds come from the configured budget and the per-CPU counters:
    // each CPU holds 1/C of it, and only the CPUs that saw the flood count.
    let cpus = c.stats["per_cpu"].as_array().expect("per-CPU counters");
    let online = c.stats["rate_limit"]["cpus"]
        .as_u64()
        .expect("CPUs sharing the budget");
    let share_burst = c.stats["rate_limit"]["cpu_burst"]
        .as_u64()
        .expect("a CPU's burst");
    assert_eq!(share_burst, burst / online, "each CPU holds ⌊burst / CPUs⌋");
    assert!(
        share_burst >= 100,
        "a CPU's share holds the second source's probes"
    );
    let share_rate = rate as f64 / online as f64;
    let limited: Vec<&Value> = cpus
        .iter()
        .filter(|p| p["suppressed"].as_u64() > Some(0))
        .collect();
    let busy = cpus
        .iter()
        .filter(|p| p["unsolicited"].as_u64() > Some(0))
        .count() as u64;
    let ts = |e: &Value| e["ts"].as_str().unwrap().to_string();
    let span_s = match (flood_events.first(), flood_events.last()) {
        (Some(a), Some(b)) => {
            (fireplot::record::parse_rfc3339_ns(&ts(b)).unwrap()
                - fireplot::record::parse_rfc3339_ns(&ts(a)).unwrap()) as f64
                / 1e9
        }
        _ => 0.0,
    };
    // One coarse-clock tick of slack per CPU (a jiffy is ≤ 10 ms).
    let most = busy as f64 * (share_burst as f64 + share_rate * (span_s + 0.02));
    assert!(
        (flood_events.len() as f64) <= most,
        "{} flood events from {busy} CPUs over {span_s:.2} s: the budget allows {most:.0}",
        flood_events.len()
    );
    assert!(
        flooded > 2 * (burst + rate * (span_s.ceil() as u64 + 1)),
        "hping3's flood ({flooded} packets) is far past the budget"
    );
    assert!(
        !limited.is_empty(),
        "a {flooded}-packet flood was rate-limited"
    );
    // A CPU that suppressed had used up its share of the burst first.
    assert!(
        flood_events.len() as u64 + second.len() as u64 >= limited.len() as u64 * share_burst,
        "each limiting CPU passed its share ({share_burst}) first: {} events, per CPU {cpus:?}",
        flood_events.len()
    );
    assert_consistent(&c);
    eprintln!(
        "flood: {} unsolicited packets, {} events, {} suppressed, {} ring-full",
        flooded,
        c.events.len(),
        c.kernel("suppressed"),
        c.kernel("ring_full")
    );
}

#[test]
fn a_second_xdp_program_is_refused_not_replaced() {
    if !privileged("a_second_xdp_program_is_refused_not_replaced") {
        return;
    }
    let lab = Lab::up(&unique_prefix("bsy")).expect("lab");
    let first = Sensor::start(&lab, &out_dir("busy"), &[]).expect("first sensor");
    let out = lab
        .command(Node::Router, fireplot_bin().to_str().unwrap())
        .args(["run", "--iface", "wan0", "--duration", "1s"])
        .output()
        .expect("second fireplot");
    assert!(!out.status.success(), "the second instance must fail");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("already attached"), "clear error: {err}");
    // The first one still works.
    nmap(&lab, &["-sS", "-p", "1-5", addr::LAN_V4]).expect("nmap");
    first.settle(5);
    let c = first.stop().expect("stop");
    assert_eq!(events_from(&c, addr::INET_V4).len(), 5);
}

#[test]
fn clear_errors_for_bad_setups() {
    if !privileged("clear_errors_for_bad_setups") {
        return;
    }
    let bin = fireplot_bin();
    let lab = Lab::up(&unique_prefix("err")).expect("lab");
    let out = lab
        .command(Node::Router, bin.to_str().unwrap())
        .args(["run", "--iface", "nosuch0", "--duration", "1s"])
        .output()
        .expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unknown network interface `nosuch0`"), "{err}");

    let out = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
        ])
        .arg(&bin)
        .args(["run", "--iface", "lo", "--duration", "1s"])
        .output()
        .expect("setpriv");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("needs root"), "{err}");

    let out = Command::new(&bin)
        .args(["run", "--iface", "lo", "--xdp-mode", "warp"])
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid value 'warp'"));
    let out = Command::new(&bin)
        .args(["run", "--iface", "lo", "--ring-mib", "3"])
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("power of two"));
}

#[test]
fn live_run_keeps_history_and_draws_plots() {
    if !privileged("live_run_keeps_history_and_draws_plots") {
        return;
    }
    let lab = Lab::up(&unique_prefix("his")).expect("lab");
    let dir = out_dir("history");
    let db = dir.join("h.db");
    let plots = dir.join("plots");
    let _ = std::fs::remove_file(&db);
    let _ = std::fs::remove_dir_all(&plots);
    let sensor = Sensor::start(
        &lab,
        &dir,
        &[
            "--db",
            db.to_str().unwrap(),
            "--plot-dir",
            plots.to_str().unwrap(),
            "--plot-every",
            "1s",
            "--plot-window",
            "10m",
            "--plot-svg",
        ],
    )
    .expect("sensor");
    nmap(&lab, &["-sS", "-p", "1-50", addr::LAN_V4]).expect("nmap");
    sensor.settle(50);
    let c = sensor.stop().expect("stop");
    assert_consistent(&c);
    assert_eq!(
        c.stats["store"]["stored"], 50,
        "every event stored: {}",
        c.stats
    );
    assert_eq!(c.stats["store"]["not_stored"], 0);
    for f in ["fireplot-wan0.png", "fireplot-wan0.svg"] {
        let meta = std::fs::metadata(plots.join(f)).unwrap_or_else(|_| panic!("{f} written"));
        assert!(meta.len() > 1000, "{f} has content");
    }
    let bin = fireplot_bin();
    let top = Command::new(&bin)
        .args(["top", "--json", "--last", "1h", "--iface", "wan0", "--db"])
        .arg(&db)
        .output()
        .expect("top");
    assert!(
        top.status.success(),
        "{}",
        String::from_utf8_lossy(&top.stderr)
    );
    let v: Value = serde_json::from_slice(&top.stdout).expect("top json");
    assert_eq!(v["events"], 50);
    assert_eq!(v["sources"][0]["src"], addr::INET_V4);
    assert_eq!(v["sources"][0]["events"], 50);
    let png = dir.join("offline.png");
    let plot = Command::new(&bin)
        .args(["plot", "--last", "1h", "--db"])
        .arg(&db)
        .arg("--out")
        .arg(&png)
        .output()
        .expect("plot");
    assert!(
        plot.status.success(),
        "{}",
        String::from_utf8_lossy(&plot.stderr)
    );
    assert!(String::from_utf8_lossy(&plot.stderr).contains("50 events"));
    // The events file gives the same picture's count.
    let plot = Command::new(&bin)
        .args(["plot", "--events"])
        .arg(sensor_events(&dir))
        .arg("--out")
        .arg(dir.join("from-events.svg"))
        .output()
        .expect("plot from events");
    assert!(
        plot.status.success(),
        "{}",
        String::from_utf8_lossy(&plot.stderr)
    );
    assert!(String::from_utf8_lossy(&plot.stderr).contains("50 events"));
}

fn sensor_events(dir: &std::path::Path) -> PathBuf {
    dir.join("events.jsonl")
}
