//! `fireplot replay`: a tcpdump capture of the lab's WAN, replayed through
//! the kernel programs, gives what the live sensor saw while it was taken.

use std::{collections::BTreeSet, path::PathBuf, process::Command, time::Duration};

use fireplot_tests::{
    addr, privileged,
    sensor::{fireplot_bin, read_collected, read_lines, Collected, Sensor},
    traffic::{masscan, nmap, outbound, Servers, Tap},
    unique_prefix, Lab, Node,
};
use serde_json::Value;

fn out_dir(test: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("fireplot-test-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

/// tcpdump on the router's wan0, writing `path`, until stopped or dropped.
fn dump(lab: &Lab, path: &std::path::Path) -> Tap {
    let path = path.to_str().expect("a UTF-8 path");
    // Immediate mode: no packet waits in a ring block when SIGINT comes.
    let args = [
        "-i",
        "wan0",
        "-n",
        "-U",
        "--immediate-mode",
        "-s",
        "512",
        "-w",
        path,
        "ip or ip6",
    ];
    Tap::start(lab, Node::Router, "tcpdump", &args)
}

/// Packets per (class, family, proto) of TCP and UDP.
fn classes(c: &Collected) -> BTreeSet<(String, String, String, u64)> {
    c.stats["classes"]
        .as_array()
        .expect("classes")
        .iter()
        .filter(|x| x["proto"] == "tcp" || x["proto"] == "udp")
        .map(|x| {
            (
                x["class"].as_str().unwrap_or("").to_string(),
                x["family"].as_str().unwrap_or("").to_string(),
                x["proto"].as_str().unwrap_or("").to_string(),
                x["packets"].as_u64().unwrap_or(0),
            )
        })
        .collect()
}

/// The events without their times.
fn events(c: &Collected) -> Vec<String> {
    let mut v: Vec<String> = c
        .events
        .iter()
        .map(|e| {
            let keep = [
                "src", "dst", "proto", "sport", "dport", "flags", "class", "dark", "ttl",
            ];
            keep.iter()
                .map(|k| format!("{k}={}", e[*k]))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect();
    v.sort();
    v
}

fn alert_set(alerts: &[Value]) -> BTreeSet<(String, String)> {
    alerts
        .iter()
        .filter(|a| a["status"] == "ended")
        .map(|a| {
            (
                a["kind"].as_str().unwrap_or("").to_string(),
                a["sources"].to_string(),
            )
        })
        .collect()
}

#[test]
fn a_capture_replays_as_the_live_run_saw_it() {
    if !privileged("a_capture_replays_as_the_live_run_saw_it") {
        return;
    }
    let lab = Lab::up(&unique_prefix("rpl")).expect("lab");
    let dir = out_dir("replay");
    let pcap = dir.join("wan0.pcap");
    let servers = Servers::start(&lab, 8080, 5353).expect("servers");
    let sensor = Sensor::start(&lab, &dir.join("live"), &[]).expect("sensor");
    let dump = dump(&lab, &pcap);
    // Normal traffic out, then scans in: nmap SYN and UDP, masscan.
    let o = outbound(&lab, &servers, 5).expect("outbound");
    nmap(&lab, &["-sS", "-p", "1-300", addr::LAN_V4]).expect("nmap");
    nmap(&lab, &["-sU", "-p", "50-70", addr::LAN_V4]).expect("nmap -sU");
    masscan(&lab, addr::LAN_V4, "1000-1099", 2000, &addr::extra_v4(20)).expect("masscan");
    sensor.settle(400);
    dump.stop();
    let live = sensor.stop().expect("stop");
    servers.stop().expect("servers");
    assert_eq!(o.tcp_ok, 10, "outbound TCP answered");

    let mac = lab.router_wan_mac().expect("mac");
    let out = Command::new(fireplot_bin())
        .args(["replay", "--pcap"])
        .arg(&pcap)
        .args(["--router-mac", &mac, "--stats-json", "--events-out"])
        .arg(dir.join("replay.jsonl"))
        .arg("--alerts")
        .arg(dir.join("replay-alerts.jsonl"))
        .arg("--stats-out")
        .arg(dir.join("replay-stats.jsonl"))
        .output()
        .expect("fireplot replay");
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "replay failed: {log}");
    assert!(
        log.contains("replay: ") && log.contains("by --router-mac"),
        "{log}"
    );
    let mut rep =
        read_collected(&dir.join("replay.jsonl"), &dir.join("replay-stats.jsonl")).expect("read");
    rep.alerts = read_lines(&dir.join("replay-alerts.jsonl")).expect("alerts");

    // Replies stayed replies: the egress program saw the inside's frames.
    assert!(
        rep.class_total("reply") >= 40,
        "replies: {}",
        rep.class_total("reply")
    );
    assert_eq!(classes(&rep), classes(&live), "packets per class");
    assert!(live.events.len() >= 400, "{}", live.events.len());
    assert_eq!(events(&rep), events(&live), "the same events");
    assert_eq!(
        alert_set(&rep.alerts),
        alert_set(&live.alerts),
        "the same alerts"
    );
    assert!(!live.alerts.is_empty());
    // On the capture's clock: each event within 50 ms of the live one's time.
    let times = |c: &Collected| {
        let mut t: Vec<String> = c
            .events
            .iter()
            .map(|e| e["ts"].as_str().unwrap_or("").to_string())
            .collect();
        t.sort();
        t
    };
    let (a, b) = (times(&rep), times(&live));
    let ns = |s: &str| {
        Command::new("date")
            .args(["-u", "-d", s, "+%s%N"])
            .output()
            .ok()
            .and_then(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .trim()
                    .parse::<i128>()
                    .ok()
            })
            .unwrap_or(0)
    };
    for (x, y) in [(&a[0], &b[0]), (a.last().unwrap(), b.last().unwrap())] {
        assert!(
            (ns(x) - ns(y)).abs() < 50_000_000,
            "replayed {x} vs live {y}"
        );
    }
    // The same capture with a snap length of 96 bytes (headers whole,
    // payloads cut): padded back to their wire length, the same verdicts.
    {
        use pcap_file::pcap::{PcapPacket, PcapReader, PcapWriter};
        let cut = dir.join("snap96.pcap");
        let mut r = PcapReader::new(std::fs::File::open(&pcap).expect("pcap")).expect("pcap");
        let mut w = PcapWriter::new(std::fs::File::create(&cut).expect("cut")).expect("writer");
        let mut shortened = 0;
        while let Some(p) = r.next_packet() {
            let p = p.expect("packet");
            let keep = p.data.len().min(96);
            shortened += usize::from(keep < p.data.len());
            w.write_packet(&PcapPacket::new(p.timestamp, p.orig_len, &p.data[..keep]))
                .expect("write");
        }
        drop(w);
        assert!(shortened > 10, "frames longer than 96 bytes: {shortened}");
        let out = Command::new(fireplot_bin())
            .args(["replay", "--pcap"])
            .arg(&cut)
            .args(["--router-mac", &mac, "--stats-json", "--events-out"])
            .arg(dir.join("snap.jsonl"))
            .arg("--stats-out")
            .arg(dir.join("snap-stats.jsonl"))
            .output()
            .expect("fireplot replay");
        let log = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{log}");
        assert!(
            log.contains(&format!(
                "{shortened} cut short by the capture's snap length"
            )),
            "{log}"
        );
        let snap =
            read_collected(&dir.join("snap.jsonl"), &dir.join("snap-stats.jsonl")).expect("read");
        assert_eq!(
            classes(&snap),
            classes(&live),
            "packets per class, snap length 96"
        );
        assert_eq!(
            events(&snap),
            events(&live),
            "the same events, snap length 96"
        );
        let lens = |c: &Collected| {
            let mut v: Vec<u64> = c.events.iter().filter_map(|e| e["len"].as_u64()).collect();
            v.sort();
            v
        };
        assert_eq!(lens(&snap), lens(&rep), "lengths on the wire");
    }
    // Without a direction rule every reply is judged unsolicited, and said so.
    let out = Command::new(fireplot_bin())
        .args(["replay", "--pcap"])
        .arg(&pcap)
        .output()
        .expect("fireplot replay");
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    assert!(log.contains("no frame went to egress"), "{log}");
}

#[test]
fn a_damaged_capture_keeps_what_came_before_the_damage() {
    if !privileged("a_damaged_capture_keeps_what_came_before_the_damage") {
        return;
    }
    let lab = Lab::up(&unique_prefix("rpd")).expect("lab");
    let dir = out_dir("replay-cut");
    let pcap = dir.join("scan.pcap");
    let dump = dump(&lab, &pcap);
    nmap(&lab, &["-sS", "-p", "1-100", addr::LAN_V4]).expect("nmap");
    std::thread::sleep(Duration::from_millis(300));
    dump.stop();
    drop(lab);
    let whole = std::fs::read(&pcap).expect("pcap");
    assert!(
        whole.len() > 24 + 100 * 54,
        "tcpdump captured the scan: {} bytes",
        whole.len()
    );
    let cut = dir.join("cut.pcap");
    std::fs::write(&cut, &whole[..whole.len() - 7]).expect("write");
    let db = dir.join("cut.db");
    let out = Command::new(fireplot_bin())
        .args(["replay", "--pcap"])
        .arg(&cut)
        .arg("--db")
        .arg(&db)
        .args(["--events-out"])
        .arg(dir.join("cut.jsonl"))
        .output()
        .expect("fireplot replay");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a cut capture is an error: {err}");
    assert!(err.contains("is cut short after frame"), "{err}");
    assert!(err.contains("were replayed and their events kept"), "{err}");
    let lines = read_lines(&dir.join("cut.jsonl")).expect("events");
    assert!(
        lines.len() >= 90,
        "the frames before the cut: {}",
        lines.len()
    );
    let store = fireplot::store::Store::open_read_only(&db).expect("db");
    assert_eq!(store.count().expect("count"), lines.len() as u64);

    // Not a capture at all; no such file; no privileges needed to say so.
    std::fs::write(dir.join("x.pcap"), b"not a capture, just text").expect("write");
    for (file, want) in [
        (dir.join("x.pcap"), "not a pcap or pcapng"),
        (dir.join("none.pcap"), "cannot open capture"),
    ] {
        let out = Command::new(fireplot_bin())
            .args(["replay", "--pcap"])
            .arg(&file)
            .output()
            .expect("fireplot replay");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && err.contains(want), "{err}");
    }
}

#[test]
fn a_pcapng_of_two_interfaces_keeps_each_apart() {
    if !privileged("a_pcapng_of_two_interfaces_keeps_each_apart") {
        return;
    }
    use fireplot_tests::packets::{flags::SYN, v4, L4};
    use pcap_file::{
        pcapng::{
            blocks::{
                enhanced_packet::EnhancedPacketBlock,
                interface_description::{InterfaceDescriptionBlock, InterfaceDescriptionOption},
            },
            PcapNgWriter,
        },
        DataLink,
    };
    use std::borrow::Cow;
    let dir = out_dir("replay-ng");
    let path = dir.join("two.pcapng");
    let mut w = PcapNgWriter::new(std::fs::File::create(&path).expect("create")).expect("pcapng");
    // wan0: Ethernet, ns timestamps; tun0: raw IP, µs (the default).
    w.write_pcapng_block(InterfaceDescriptionBlock {
        linktype: DataLink::ETHERNET,
        snaplen: 0,
        options: vec![
            InterfaceDescriptionOption::IfName(Cow::Borrowed("wan0")),
            InterfaceDescriptionOption::IfTsResol(9),
        ],
    })
    .expect("idb");
    w.write_pcapng_block(InterfaceDescriptionBlock {
        linktype: DataLink::RAW,
        snaplen: 0,
        options: vec![InterfaceDescriptionOption::IfName(Cow::Borrowed("tun0"))],
    })
    .expect("idb");
    let t0_ns: u64 = 1_795_600_000_000_000_000;
    for i in 0..20u16 {
        let eth = v4(
            [198, 18, 0, 9],
            [198, 18, 1, 2],
            L4::Tcp {
                sport: 50000,
                dport: 100 + i,
                flags: SYN,
            },
        );
        let (id, units, data) = if i % 2 == 0 {
            (0, t0_ns + i as u64 * 1_000_000, eth)
        } else {
            // Raw IP: the Ethernet header dropped.
            (1, t0_ns / 1000 + i as u64 * 1000, eth[14..].to_vec())
        };
        w.write_pcapng_block(EnhancedPacketBlock {
            interface_id: id,
            timestamp: Duration::from_nanos(units),
            original_len: data.len() as u32,
            data: Cow::Owned(data),
            options: vec![],
        })
        .expect("epb");
    }
    drop(w);
    let db = dir.join("ng.db");
    let out = Command::new(fireplot_bin())
        .args(["replay", "--pcap"])
        .arg(&path)
        .arg("--db")
        .arg(&db)
        .output()
        .expect("fireplot replay");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let store = fireplot::store::Store::open_read_only(&db).expect("db");
    let mut seen = Vec::new();
    store
        .for_each(&fireplot::store::Filter::range(0, i64::MAX), |r| {
            seen.push((r.dport, r.ifindex, r.ts_ns))
        })
        .expect("events");
    assert_eq!(seen.len(), 20, "every SYN an event");
    for (dport, ifindex, ts) in seen {
        let i = (dport - 100) as i64;
        assert_eq!(ifindex, 1_000_000 + (i % 2) as u32, "port {dport}");
        assert_eq!(
            ts,
            t0_ns as i64 + i * 1_000_000,
            "port {dport}: each interface's clock"
        );
    }
    let names = store.interfaces().expect("interfaces");
    let names: Vec<&str> = names.iter().map(|(_, n)| n.as_str()).collect();
    assert!(
        names.contains(&"pcap:two.pcapng:wan0") && names.contains(&"pcap:two.pcapng:tun0"),
        "{names:?}"
    );
}
