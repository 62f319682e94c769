//! The labelled scenario suite: real scanners against the lab's lan host,
//! each asserting the exact set of alert kinds and their sources, and that
//! `fireplot detect` over the run's events file gives the live alerts again.

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
    process::Command,
};

use fireplot_tests::{
    addr, privileged,
    sensor::{fireplot_bin, read_lines, Collected, Sensor},
    traffic::{self, outbound, Servers},
    unique_prefix, Lab, Node,
};
use serde_json::Value;

fn out_dir(test: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("fireplot-scenario-{test}-{}", std::process::id()));
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

/// (kind, sorted sources) of every episode, from its `ended` record.
fn episodes(alerts: &[Value]) -> BTreeSet<(String, Vec<String>)> {
    alerts
        .iter()
        .filter(|a| a["status"] == "ended")
        .map(|a| {
            let mut s: Vec<String> = a["sources"]
                .as_array()
                .expect("sources")
                .iter()
                .map(|v| v.as_str().expect("address").to_string())
                .collect();
            s.sort();
            (a["kind"].as_str().expect("kind").to_string(), s)
        })
        .collect()
}

/// Runs `traffic` past a fresh sensor and checks the alerts.
fn scenario(name: &str, traffic: impl FnOnce(&Lab), want: &[(&str, &[&str])]) -> Collected {
    scenario_any(name, traffic, &[want])
}

fn as_set(want: &[(&str, &[&str])]) -> BTreeSet<(String, Vec<String>)> {
    want.iter()
        .map(|(k, s)| {
            let mut v: Vec<String> = s.iter().map(|x| x.to_string()).collect();
            v.sort();
            (k.to_string(), v)
        })
        .collect()
}

/// As [`scenario`], where the alerts may be any one of `alternatives`
/// (when what is true first depends on the two tools' start-up skew).
fn scenario_any(
    name: &str,
    traffic: impl FnOnce(&Lab),
    alternatives: &[&[(&str, &[&str])]],
) -> Collected {
    let (c, dir) = past_a_sensor(name, traffic);
    check_alerts(name, &c, &dir, alternatives);
    c
}

/// Runs `traffic` past a fresh sensor: what it wrote, and where.
fn past_a_sensor(name: &str, traffic: impl FnOnce(&Lab)) -> (Collected, PathBuf) {
    let lab = Lab::up(&unique_prefix(name)).expect("lab");
    let dir = out_dir(name);
    let sensor = Sensor::start(&lab, &dir, &[]).expect("sensor");
    traffic(&lab);
    sensor.settle(0);
    (sensor.stop().expect("stop sensor"), dir)
}

/// The alerts of a run are one of `alternatives`, have every field, and
/// `fireplot detect` over the run's events file gives them again.
fn check_alerts(name: &str, c: &Collected, dir: &Path, alternatives: &[&[(&str, &[&str])]]) {
    let got = episodes(&c.alerts);
    assert!(
        alternatives.iter().any(|w| as_set(w) == got),
        "{name}: alerts {got:?}, want one of {alternatives:?}: {:#?}",
        c.alerts
    );
    for a in &c.alerts {
        for field in [
            "kind",
            "first_seen",
            "last_seen",
            "sources",
            "targets",
            "proto",
            "ports",
            "probes",
            "rate_pps",
            "flags",
            "severity",
            "summary",
            "speed",
            "order",
        ] {
            assert!(
                a.get(field).is_some(),
                "{name}: alert without `{field}`: {a}"
            );
        }
        let sev = a["severity"].as_u64().unwrap();
        assert!((1..=5).contains(&sev));
    }
    // Offline replay of the run's events gives the same alerts, line for line.
    let replay = dir.join("replay.jsonl");
    let out = Command::new(fireplot_bin())
        .args(["detect", "--events"])
        .arg(c_events(dir))
        .arg("--alerts")
        .arg(&replay)
        .output()
        .expect("fireplot detect");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        read_lines(&replay).expect("replay"),
        c.alerts,
        "{name}: detect reproduces the live run"
    );
}

fn c_events(dir: &std::path::Path) -> PathBuf {
    dir.join("events.jsonl")
}

fn nmap(lab: &Lab, args: &[&str]) {
    traffic::nmap(lab, args).expect("nmap");
}

const INET: &str = addr::INET_V4;

#[test]
fn scenario_syn_scan() {
    if !privileged("scenario_syn_scan") {
        return;
    }
    let c = scenario(
        "syn",
        |l| nmap(l, &["-sS", "-p", "1-1000", addr::LAN_V4]),
        &[("port_scan", &[INET])],
    );
    let started = c.alerts.iter().find(|a| a["status"] == "started").unwrap();
    assert!(
        started["ports"]["count"].as_u64().unwrap() <= 10,
        "alerted early: {started}"
    );
    let ended = c.alerts.iter().find(|a| a["status"] == "ended").unwrap();
    assert_eq!(ended["ports"]["count"], 1000);
    assert_eq!(ended["flags"], "SYN");
}

#[test]
fn scenario_xmas_null_fin_scans() {
    if !privileged("scenario_xmas_null_fin_scans") {
        return;
    }
    for (flag, kind) in [("-sX", "xmas"), ("-sN", "null"), ("-sF", "fin")] {
        let c = scenario(
            &kind[..3],
            |l| nmap(l, &[flag, "-p", "1-200", addr::LAN_V4]),
            &[("flag_scan", &[INET])],
        );
        assert!(
            c.alerts.iter().all(|a| a["flag_type"] == kind),
            "{kind}: {:?}",
            c.alerts
        );
    }
}

#[test]
fn scenario_udp_scan() {
    if !privileged("scenario_udp_scan") {
        return;
    }
    let c = scenario(
        "udp",
        |l| nmap(l, &["-sU", "-p", "1-100", addr::LAN_V4]),
        &[("port_scan", &[INET])],
    );
    assert!(c.alerts.iter().all(|a| a["proto"] == "udp"));
}

/// Four closed ports of the lan host: never answered anyone, so dark, and
/// four dark ports are a port scan (six would be needed otherwise).
#[test]
fn scenario_four_dark_ports() {
    if !privileged("scenario_four_dark_ports") {
        return;
    }
    let c = scenario(
        "dark",
        |l| nmap(l, &["-sS", "-p", "1001,1013,1027,1049", addr::LAN_V4]),
        &[("port_scan", &[INET])],
    );
    assert!(!c.events.is_empty());
    for e in &c.events {
        assert!(
            e["dark"] == "addr" || e["dark"] == "port",
            "a probe to a port that never answered is dark: {e}"
        );
    }
}

/// The same four probes (UDP), to ports the lan host has sent datagrams
/// from: not dark, and four of them are nothing.
#[test]
fn scenario_ports_that_answered_are_not_dark() {
    if !privileged("scenario_ports_that_answered_are_not_dark") {
        return;
    }
    const PORTS: [u16; 4] = [1001, 1013, 1027, 1049];
    let c = scenario(
        "lit",
        |l| {
            let sent = traffic::in_netns(&l.ns(Node::Lan), || {
                for port in PORTS {
                    let s = std::net::UdpSocket::bind(("0.0.0.0", port))?;
                    s.send_to(b"hello", (addr::INET_V4, 9))?;
                }
                Ok(())
            });
            sent.join()
                .expect("thread")
                .expect("send from the lan host");
            let list = PORTS.map(|p| p.to_string()).join(",");
            nmap(l, &["-sU", "-p", &list, addr::LAN_V4]);
        },
        &[],
    );
    let probes: Vec<&Value> = c.events.iter().filter(|e| e["proto"] == "udp").collect();
    assert!(probes.len() >= 4, "{:?}", c.events);
    for e in probes {
        assert!(e.get("dark").is_none(), "answered port marked dark: {e}");
    }
}

#[test]
fn scenario_ack_scan() {
    if !privileged("scenario_ack_scan") {
        return;
    }
    let c = scenario(
        "ack",
        |l| nmap(l, &["-sA", "-p", "1-200", addr::LAN_V4]),
        &[("port_scan", &[INET])],
    );
    assert!(
        c.alerts.iter().all(|a| a["flags"] == "ACK"),
        "{:?}",
        c.alerts
    );
}

#[test]
fn scenario_protocol_scan() {
    if !privileged("scenario_protocol_scan") {
        return;
    }
    let c = scenario(
        "prot",
        |l| nmap(l, &["-sO", "-p", "0-60", addr::LAN_V4]),
        &[("protocol_scan", &[INET])],
    );
    let ended = c.alerts.iter().find(|a| a["status"] == "ended").unwrap();
    assert!(
        ended["protocols"].as_array().unwrap().len() >= 50,
        "{ended}"
    );
}

#[test]
fn scenario_decoy_scan() {
    if !privileged("scenario_decoy_scan") {
        return;
    }
    let c = scenario(
        "dec",
        |l| {
            nmap(
                l,
                &[
                    "-sS",
                    "-D",
                    "198.18.0.30,198.18.0.31,198.18.0.32,ME",
                    "-e",
                    "inet0",
                    "-p",
                    "1-100",
                    addr::LAN_V4,
                ],
            )
        },
        &[(
            "distributed_scan",
            &["198.18.0.30", "198.18.0.31", "198.18.0.32", INET],
        )],
    );
    assert!(c.alerts.iter().all(|a| a["synchronized"] == true));
    assert_tool(&c, "nmap");
}

#[test]
fn scenario_masscan_sweep() {
    if !privileged("scenario_masscan_sweep") {
        return;
    }
    let c = scenario(
        "mas",
        |l| {
            traffic::masscan(
                l,
                addr::LAN_NET_V4,
                "22,80,443,3389,8080",
                2000,
                "198.18.0.20",
            )
            .expect("masscan");
        },
        &[("port_sweep", &["198.18.0.20"])],
    );
    assert_tool(&c, "masscan");
}

/// Every per-source alert names the tool (the `ended` records, which have
/// seen every probe).
fn assert_tool(c: &Collected, tool: &str) {
    let ended: Vec<&Value> = c.alerts.iter().filter(|a| a["status"] == "ended").collect();
    assert!(!ended.is_empty());
    for a in ended {
        assert_eq!(a["tool"], tool, "{a}");
    }
}

#[test]
fn scenario_zmap_sweep() {
    if !privileged("scenario_zmap_sweep") {
        return;
    }
    let c = scenario(
        "zmp",
        |l| {
            let dir = out_dir("zmap-run");
            traffic::zmap(l, addr::LAN_NET_V4, 7547, "198.18.0.21", &dir).expect("zmap");
        },
        &[("port_sweep", &["198.18.0.21"])],
    );
    assert_tool(&c, "zmap");
    let ended = c.alerts.iter().find(|a| a["status"] == "ended").unwrap();
    assert!(ended["targets"]["count"].as_u64() > Some(200), "{ended}");
}

#[test]
fn scenario_nmap_syn_scan_is_named() {
    if !privileged("scenario_nmap_syn_scan_is_named") {
        return;
    }
    let c = scenario(
        "nmt",
        |l| nmap(l, &["-sS", "-p", "1-50", addr::LAN_V4]),
        &[("port_scan", &[INET])],
    );
    assert_tool(&c, "nmap");
}

/// nmap's OS detection against an open and a closed port: its T2, T3 and
/// T7 probes are three odd flag combinations, flag probing of two ports.
#[test]
fn scenario_nmap_os_detection() {
    if !privileged("scenario_nmap_os_detection") {
        return;
    }
    let c = scenario(
        "nos",
        |l| {
            let _open = traffic::Listener::open(l, Node::Lan, 8080).expect("listener");
            nmap(l, &["-O", "-p", "8080,1", addr::LAN_V4]);
        },
        &[("flag_scan", &[INET])],
    );
    let ended = c.alerts.iter().find(|a| a["status"] == "ended").unwrap();
    let combos: Vec<&str> = ended["combos"]
        .as_array()
        .expect("combos")
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    // OS detection's probes carry none of the signatures checked: no claim.
    assert_tool(&c, "unknown");
    for want in ["NULL", "FIN|PSH|URG", "FIN|SYN|PSH|URG"] {
        assert!(combos.contains(&want), "{want} in {combos:?}");
    }
    assert!(
        ended["summary"]
            .as_str()
            .unwrap()
            .contains("fingerprinting"),
        "{ended}"
    );
}

/// nmap's UDP scan of its 20 top ports.
#[test]
fn scenario_udp_top_ports() {
    if !privileged("scenario_udp_top_ports") {
        return;
    }
    let c = scenario(
        "utp",
        |l| nmap(l, &["-sU", "--top-ports", "20", addr::LAN_V4]),
        &[("port_scan", &[INET])],
    );
    let ended = c.alerts.iter().find(|a| a["status"] == "ended").unwrap();
    assert_eq!(ended["proto"], "udp");
    assert_eq!(ended["ports"]["count"], 20, "{ended}");
    assert_tool(&c, "unknown");
}

/// hping3 hammering one UDP port at 20 packets a second for a minute.
#[test]
fn scenario_hammering_one_port() {
    if !privileged("scenario_hammering_one_port") {
        return;
    }
    let c = scenario(
        "ham",
        |l| {
            traffic::hping3_sent(
                l,
                &[
                    "--udp",
                    "-p",
                    "2193",
                    "-k",
                    "-s",
                    "40000",
                    "-i",
                    "u50000",
                    "-c",
                    "1200",
                    "-q",
                    addr::LAN_V4,
                ],
                1200,
                std::time::Duration::from_secs(120),
            )
            .expect("hping3");
        },
        &[("flood", &[INET])],
    );
    let ended = c.alerts.iter().find(|a| a["status"] == "ended").unwrap();
    assert!(ended["count"].as_u64() >= Some(1000), "{ended}");
    // hping3's signature is on its TCP SYNs; UDP carries none.
    assert_tool(&c, "unknown");
    assert!(
        ended["summary"]
            .as_str()
            .unwrap()
            .contains("hammered UDP/2193"),
        "{ended}"
    );
}

/// One victim's SYN-ACKs (from port 80) to many of our lan addresses:
/// backscatter of a spoofed flood elsewhere, never a sweep.
#[test]
fn scenario_one_victim_backscatter() {
    if !privileged("scenario_one_victim_backscatter") {
        return;
    }
    let c = scenario(
        "bsv",
        |l| {
            traffic::hping3_sent(
                l,
                &[
                    "-S",
                    "-A",
                    "-s",
                    "80",
                    "-k",
                    "-p",
                    "++1024",
                    "-a",
                    "198.18.0.60",
                    "-I",
                    "inet0",
                    "--rand-dest",
                    "-i",
                    "u2000",
                    "-c",
                    "400",
                    "-q",
                    "198.18.1.x",
                ],
                400,
                std::time::Duration::from_secs(60),
            )
            .expect("hping3");
        },
        &[("backscatter", &["198.18.0.60"])],
    );
    let ended = c.alerts.iter().find(|a| a["status"] == "ended").unwrap();
    assert_eq!(ended["shape"], "one_victim", "{ended}");
    assert!(ended["targets"]["count"].as_u64() >= Some(20), "{ended}");
    assert!(
        ended["summary"]
            .as_str()
            .unwrap()
            .starts_with("198.18.0.60 answered a spoofed flood"),
        "{ended}"
    );
}

#[test]
fn scenario_two_scanners_in_lockstep() {
    if !privileged("scenario_two_scanners_in_lockstep") {
        return;
    }
    let c = scenario_any(
        "lck",
        |l| {
            let spawn = |src: &str| {
                l.command(Node::Inet, "nmap")
                    .args([
                        "-n",
                        "-Pn",
                        "-sS",
                        "-r",
                        "--max-retries",
                        "0",
                        "--scan-delay",
                        "20ms",
                        "-e",
                        "inet0",
                        "-S",
                        src,
                        "-p",
                        "1-100",
                        addr::LAN_V4,
                    ])
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::null())
                    .spawn()
                    .expect("nmap")
            };
            let a = spawn("198.18.0.40");
            let b = spawn("198.18.0.41");
            for mut child in [a, b] {
                assert!(child.wait().expect("nmap").success());
            }
        },
        // Which nmap leads depends on process start-up, and a leader more
        // than a port ahead is a port scan before the pair is grouped.
        &[
            &[("distributed_scan", &["198.18.0.40", "198.18.0.41"])],
            &[
                ("distributed_scan", &["198.18.0.40", "198.18.0.41"]),
                ("port_scan", &["198.18.0.40"]),
            ],
            &[
                ("distributed_scan", &["198.18.0.40", "198.18.0.41"]),
                ("port_scan", &["198.18.0.41"]),
            ],
        ],
    );
    assert!(c
        .alerts
        .iter()
        .filter(|a| a["kind"] == "distributed_scan")
        .all(|a| a["synchronized"] == true && a["lag_ms"].is_number()));
}

#[test]
fn scenario_flood() {
    if !privileged("scenario_flood") {
        return;
    }
    scenario(
        "fld",
        |l| {
            let flood = traffic::hping3_flood(l, 1).expect("hping3");
            let _ = flood.wait_with_output();
        },
        &[("flood", &[INET])],
    );
}

#[test]
fn scenario_normal_outbound_traffic_gives_no_alert() {
    if !privileged("scenario_normal_outbound_traffic_gives_no_alert") {
        return;
    }
    let c = scenario(
        "out",
        |l| {
            let servers = Servers::start(l, 8080, 5353).expect("servers");
            let o = outbound(l, &servers, 10).expect("outbound");
            servers.stop().expect("stop servers");
            assert_eq!((o.tcp_ok, o.udp_ok, o.ping_ok), (20, 20, 2));
        },
        &[],
    );
    assert!(c.alerts.is_empty());
}

/// The SCTP probes of a run (events and aggregates with `proto` sctp):
/// (destination, port) → packets. Every one names its ports and, when it
/// is an event, its first chunk (1, INIT).
fn sctp_probes(c: &Collected) -> std::collections::BTreeMap<(String, u64), u64> {
    assert!(
        c.events.iter().all(|e| e["proto"] != 132),
        "SCTP is named, not numbered"
    );
    let mut probes = std::collections::BTreeMap::new();
    for e in c.events.iter().filter(|e| e["proto"] == "sctp") {
        assert_eq!(e["src"], INET, "{e}");
        let dport = e["dport"]
            .as_u64()
            .unwrap_or_else(|| panic!("no dport: {e}"));
        if e.get("aggregate").is_none() {
            assert!(e["sport"].as_u64().is_some(), "no sport: {e}");
            assert_eq!(e["sctp_chunk"], 1, "an INIT: {e}");
        }
        let dst = e["dst"].as_str().unwrap_or("?").to_string();
        *probes.entry((dst, dport)).or_default() += e["count"].as_u64().unwrap_or(1);
    }
    probes
}

/// nmap's SCTP INIT scan of 100 ports of the lan host: one event per
/// port, with its ports and chunk, and (from the detectors) a port scan
/// by the scanner.
#[test]
fn scenario_sctp_init_scan() {
    if !privileged("scenario_sctp_init_scan") {
        return;
    }
    let (c, dir) = past_a_sensor("sct", |l| nmap(l, &["-sY", "-p", "1-100", addr::LAN_V4]));
    let probes = sctp_probes(&c);
    let want: std::collections::BTreeMap<(String, u64), u64> = (1..=100)
        .map(|p| ((addr::LAN_V4.to_string(), p), 1))
        .collect();
    assert_eq!(probes, want, "one INIT per port, each with its port");
    // The detectors count an INIT as a probe with its port.
    check_alerts("sct", &c, &dir, &[&[("port_scan", &[INET])]]);
    assert!(
        c.alerts.iter().all(|a| a["proto"] == "sctp"),
        "{:?}",
        c.alerts
    );
}

/// nmap's SCTP INIT sweep of port 80 over 16 lan addresses: an event to
/// each, and (from the detectors) a port sweep by the scanner.
#[test]
fn scenario_sctp_sweep() {
    if !privileged("scenario_sctp_sweep") {
        return;
    }
    let (c, dir) = past_a_sensor("scw", |l| nmap(l, &["-sY", "-p", "80", "198.18.1.0/28"]));
    let probes = sctp_probes(&c);
    let want: std::collections::BTreeMap<(String, u64), u64> = (0..16)
        .map(|h| (format!("198.18.1.{h}"), 80))
        .map(|k| (k, 1))
        .collect();
    assert_eq!(probes, want, "one INIT to each address");
    check_alerts("scw", &c, &dir, &[&[("port_sweep", &[INET])]]);
    assert!(
        c.alerts.iter().all(|a| a["proto"] == "sctp"),
        "{:?}",
        c.alerts
    );
}
