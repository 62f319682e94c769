//! Detector tests on synthetic event streams.

use std::net::IpAddr;

use super::{Alert, DetectConfig, Engine};
use crate::record::Record;

pub(super) const T0: i64 = 1_800_000_000_000_000_000;
pub(super) const MS: i64 = 1_000_000;
pub(super) const S: i64 = 1_000_000_000;

pub(super) fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

pub(super) fn ev(ts: i64, src: &str, dst: &str, proto: u8, dport: u16, flags: u8) -> Record {
    Record {
        ts_ns: ts,
        family: if src.contains(':') { 6 } else { 4 },
        proto,
        src: Some(ip(src)),
        dst: Some(ip(dst)),
        sport: 40000,
        dport,
        tcp_flags: flags,
        ttl: 50,
        len: 60,
        class: 4,
        ifindex: 2,
        ip_id: 0,
        tcp_seq: 0,
        tcp_window: 0,
        icmp_type: if proto == 1 { 8 } else { 0 },
        icmp_code: 0,
        pkt_flags: 0,
        count: 1,
    }
}

pub(super) fn run(events: &[Record]) -> Vec<Alert> {
    run_with(DetectConfig::default(), events)
}

pub(super) fn run_with(cfg: DetectConfig, events: &[Record]) -> Vec<Alert> {
    run_engine(&mut Engine::new(cfg), events)
}

/// Every alert record `e` gives for `events`, and at the end.
pub(super) fn run_engine(e: &mut Engine, events: &[Record]) -> Vec<Alert> {
    let mut out = Vec::new();
    for r in events {
        e.push(r);
        out.extend(e.drain());
    }
    out.extend(e.finish());
    out
}

pub(super) fn started<'a>(alerts: &'a [Alert], kind: &str) -> Vec<&'a Alert> {
    alerts
        .iter()
        .filter(|a| a.kind == kind && a.status == "started")
        .collect()
}

/// (kind, sources) of every episode, from its `ended` record (the totals).
pub(super) fn kinds(alerts: &[Alert]) -> Vec<(String, Vec<String>)> {
    let mut v: Vec<(String, Vec<String>)> = alerts
        .iter()
        .filter(|a| a.status == "ended")
        .map(|a| (a.kind.clone(), a.sources.clone()))
        .collect();
    v.sort();
    v
}

/// A pseudo-random permutation of 1..=n (nmap's default port order).
fn shuffled(n: u16, seed: u64) -> Vec<u16> {
    let mut v: Vec<u16> = (1..=n).collect();
    let mut x = seed | 1;
    for i in (1..v.len()).rev() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.swap(i, (x % (i as u64 + 1)) as usize);
    }
    v
}

#[test]
fn fast_syn_scan_is_alerted_within_ten_ports() {
    let evs: Vec<Record> = shuffled(1000, 7)
        .iter()
        .enumerate()
        .map(|(i, p)| {
            ev(
                T0 + i as i64 * 100_000,
                "198.51.100.7",
                "198.18.1.2",
                6,
                *p,
                0x02,
            )
        })
        .collect();
    let mut e = Engine::new(DetectConfig::default());
    let mut first_alert_at = None;
    for (i, r) in evs.iter().enumerate() {
        e.push(r);
        if first_alert_at.is_none() && !e.drain().is_empty() {
            first_alert_at = Some(i + 1);
        }
    }
    assert!(
        first_alert_at.is_some_and(|n| n <= 10),
        "alerted after {first_alert_at:?} probes"
    );
    let all = run(&evs);
    assert_eq!(
        kinds(&all),
        vec![("port_scan".into(), vec!["198.51.100.7".to_string()])]
    );
    let end = all
        .iter()
        .find(|a| a.status == "ended")
        .expect("ended record");
    assert_eq!(end.ports.count, 1000);
    assert_eq!(end.probes, 1000);
    assert_eq!(end.speed, "fast");
    assert_eq!(end.order, "random");
    assert_eq!(end.flags, "SYN");
    assert_eq!(end.targets.count, 1);
    assert!(end.severity >= 3);
    assert!(
        end.summary
            .contains("198.51.100.7 probed 1,000 TCP ports of 198.18.1.2"),
        "{}",
        end.summary
    );
    assert_eq!(
        all.iter().filter(|a| a.id == end.id).count(),
        2,
        "one started, one ended"
    );
}

#[test]
fn slow_ascending_scan_over_twelve_hours() {
    let evs: Vec<Record> = (0..144)
        .map(|i| {
            ev(
                T0 + i * 300 * S,
                "203.0.113.9",
                "198.18.1.2",
                6,
                1000 + i as u16,
                0x02,
            )
        })
        .collect();
    let all = run(&evs);
    let s = started(&all, "port_scan");
    assert_eq!(s.len(), 1, "{all:#?}");
    assert_eq!(s[0].speed, "slow");
    let end = all.iter().find(|a| a.status == "ended").unwrap();
    assert_eq!(end.order, "ascending");
    assert_eq!(end.ports.count, 144);
    assert!(end.summary.contains("slowly"));
    assert!(
        all.iter().all(|a| a.id == end.id),
        "one episode: a 5-minute pause is not an end"
    );
    assert_eq!(
        all.iter().filter(|a| a.status == "update").count(),
        all.len() - 2,
        "one started, one ended, updates as it grew"
    );
}

#[test]
fn background_noise_gives_no_per_source_alerts() {
    let common = [
        22u16, 23, 80, 443, 445, 3389, 8080, 5060, 1433, 3306, 7547, 37777, 53, 123, 161, 5555,
        2323, 81, 8443, 6379,
    ];
    let mut evs = Vec::new();
    let mut x: u64 = 0x1234_5678;
    for s in 0..10_000u32 {
        let src = format!(
            "{}.{}.{}.{}",
            11 + (s >> 16) % 200,
            (s >> 8) & 255,
            s & 255,
            7
        );
        for k in 0..(1 + (s % 2)) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let port = common[(x % common.len() as u64) as usize];
            let dst = format!("198.18.1.{}", 1 + (x >> 8) % 8);
            evs.push(ev(
                T0 + (s as i64 * 2 + k as i64) * 30 * MS,
                &src,
                &dst,
                6,
                port,
                0x02,
            ));
        }
    }
    let all = run(&evs);
    for kind in [
        "port_scan",
        "port_sweep",
        "flag_scan",
        "protocol_scan",
        "flood",
        "distributed_scan",
    ] {
        assert!(
            started(&all, kind).is_empty(),
            "{kind}: {:?}",
            started(&all, kind).first()
        );
    }
}

#[test]
fn sweep_of_a_slash_24_is_alerted_within_ten_targets() {
    let mut evs = Vec::new();
    let mut order: Vec<u16> = (0..256).collect();
    order = order.into_iter().map(|i| (i * 97) % 256).collect();
    for (i, h) in order.iter().enumerate() {
        for (j, port) in [22u16, 80, 443].iter().enumerate() {
            evs.push(ev(
                T0 + (i as i64 * 3 + j as i64) * MS,
                "192.0.2.50",
                &format!("198.18.1.{h}"),
                6,
                *port,
                0x02,
            ));
        }
    }
    let mut e = Engine::new(DetectConfig::default());
    let mut at = None;
    let mut targets = std::collections::HashSet::new();
    for r in &evs {
        targets.insert(r.dst);
        e.push(r);
        if at.is_none() && !e.drain().is_empty() {
            at = Some(targets.len());
        }
    }
    assert!(at.is_some_and(|n| n <= 10), "alerted after {at:?} targets");
    let all = run(&evs);
    assert_eq!(
        kinds(&all),
        vec![("port_sweep".into(), vec!["192.0.2.50".to_string()])]
    );
    let end = all.iter().find(|a| a.status == "ended").unwrap();
    assert_eq!(end.targets.count, 256);
    assert_eq!(end.ports.count, 3);
    assert_eq!(end.order, "random");
    assert!(
        end.summary
            .contains("swept 256 hosts on TCP ports 22, 80, 443"),
        "{}",
        end.summary
    );
}

#[test]
fn icmp_echo_sweep_is_a_sweep() {
    let evs: Vec<Record> = (1..=40u16)
        .map(|h| {
            ev(
                T0 + h as i64 * MS,
                "192.0.2.51",
                &format!("198.18.1.{h}"),
                1,
                0,
                0,
            )
        })
        .collect();
    let all = run(&evs);
    let s = started(&all, "port_sweep");
    assert_eq!(s.len(), 1);
    assert_eq!(s[0].proto, "icmp");
    assert_eq!(
        all.iter().find(|a| a.status == "ended").unwrap().order,
        "ascending"
    );
}

#[test]
fn flag_scans_are_named_and_not_port_scans() {
    for (flags, name) in [
        (0x29u8, "xmas"),
        (0x00, "null"),
        (0x01, "fin"),
        (0x11, "maimon"),
        (0x03, "syn_fin"),
    ] {
        let evs: Vec<Record> = (1..=200u16)
            .map(|p| ev(T0 + p as i64 * MS, "192.0.2.60", "198.18.1.2", 6, p, flags))
            .collect();
        let all = run(&evs);
        assert_eq!(
            kinds(&all),
            vec![("flag_scan".into(), vec!["192.0.2.60".to_string()])],
            "{name}"
        );
        let s = started(&all, "flag_scan")[0];
        assert_eq!(s.flag_type.as_deref(), Some(name));
        let end = all.iter().find(|a| a.status == "ended").unwrap();
        assert_eq!(end.ports.count, 200, "{name}");
        assert_eq!(end.probes, 200, "{name}");
    }
}

#[test]
fn ack_scan_is_a_port_scan_with_its_flags() {
    let evs: Vec<Record> = (1..=100u16)
        .map(|p| ev(T0 + p as i64 * MS, "192.0.2.61", "198.18.1.2", 6, p, 0x10))
        .collect();
    let all = run(&evs);
    assert_eq!(
        kinds(&all),
        vec![("port_scan".into(), vec!["192.0.2.61".to_string()])]
    );
    assert_eq!(started(&all, "port_scan")[0].flags, "ACK");
}

#[test]
fn udp_scan_is_a_port_scan() {
    let evs: Vec<Record> = (1..=100u16)
        .map(|p| ev(T0 + p as i64 * MS, "192.0.2.62", "198.18.1.2", 17, p, 0))
        .collect();
    let all = run(&evs);
    assert_eq!(
        kinds(&all),
        vec![("port_scan".into(), vec!["192.0.2.62".to_string()])]
    );
    assert_eq!(started(&all, "port_scan")[0].proto, "udp");
}

/// An SCTP packet: `ev` with its first chunk's type.
fn sctp(ts: i64, src: &str, dst: &str, dport: u16, chunk: u8) -> Record {
    Record {
        icmp_type: chunk,
        ..ev(ts, src, dst, 132, dport, 0)
    }
}

#[test]
fn sctp_init_scan_is_a_port_scan_and_its_answers_are_not() {
    // nmap -sY of 100 ports: INITs.
    let evs: Vec<Record> = (1..=100u16)
        .map(|p| sctp(T0 + p as i64 * MS, "192.0.2.63", "198.18.1.2", p, 1))
        .collect();
    let all = run(&evs);
    assert_eq!(
        kinds(&all),
        vec![("port_scan".into(), vec!["192.0.2.63".to_string()])]
    );
    let s = started(&all, "port_scan")[0];
    assert_eq!(s.proto, "sctp");
    let end = all.iter().find(|a| a.status == "ended").unwrap();
    assert_eq!(end.ports.count, 100);
    assert!(end.summary.contains("SCTP"), "{}", end.summary);
    // DCCP Requests and UDP-Lite datagrams to 100 ports are port scans too.
    for (proto, name) in [(33u8, "dccp"), (136, "udplite")] {
        let evs: Vec<Record> = (1..=100u16)
            .map(|p| ev(T0 + p as i64 * MS, "192.0.2.64", "198.18.1.2", proto, p, 0))
            .collect();
        let all = run(&evs);
        assert_eq!(
            kinds(&all),
            vec![("port_scan".into(), vec!["192.0.2.64".to_string()])],
            "{name}"
        );
        assert_eq!(started(&all, "port_scan")[0].proto, name);
    }
    // A host answering from 100 ports with INIT-ACKs and ABORTs (someone
    // scanned in our name) probes nothing; nor do DCCP Resets.
    for (proto, ty) in [(132u8, 2u8), (132, 6), (33, 7)] {
        let evs: Vec<Record> = (1..=100u16)
            .map(|p| Record {
                icmp_type: ty,
                ..ev(T0 + p as i64 * MS, "192.0.2.65", "198.18.1.2", proto, p, 0)
            })
            .collect();
        let all = run(&evs);
        assert!(
            started(&all, "port_scan").is_empty() && started(&all, "port_sweep").is_empty(),
            "{proto}/{ty}: {:?}",
            kinds(&all)
        );
    }
}

#[test]
fn sctp_init_sweep_is_a_port_sweep() {
    let evs: Vec<Record> = (1..=40u16)
        .map(|h| {
            sctp(
                T0 + h as i64 * MS,
                "192.0.2.66",
                &format!("198.18.1.{h}"),
                2905,
                1,
            )
        })
        .collect();
    let all = run(&evs);
    assert_eq!(
        kinds(&all),
        vec![("port_sweep".into(), vec!["192.0.2.66".to_string()])]
    );
    let s = started(&all, "port_sweep")[0];
    assert_eq!(s.proto, "sctp");
    let end = all.iter().find(|a| a.status == "ended").unwrap();
    assert_eq!((end.targets.count, end.ports.count), (40, 1));
}

#[test]
fn protocol_scan() {
    let evs: Vec<Record> = (0..=40u8)
        .map(|p| {
            let mut r = ev(
                T0 + p as i64 * MS,
                "192.0.2.63",
                "198.18.1.2",
                p,
                if matches!(p, 6 | 17) { 80 } else { 0 },
                0x10,
            );
            if !matches!(p, 6 | 17) {
                r.dport = 0;
            }
            r
        })
        .collect();
    let all = run(&evs);
    assert_eq!(
        kinds(&all),
        vec![("protocol_scan".into(), vec!["192.0.2.63".to_string()])]
    );
    let end = all.iter().find(|a| a.status == "ended").unwrap();
    assert_eq!(end.protocols.as_ref().map(|p| p.len()), Some(41));
}

#[test]
fn decoy_scan_is_one_synchronized_distributed_scan() {
    let sources = ["192.0.2.30", "192.0.2.31", "192.0.2.32", "192.0.2.33"];
    let mut evs = Vec::new();
    for (i, port) in shuffled(300, 3).iter().enumerate() {
        for (j, s) in sources.iter().enumerate() {
            evs.push(ev(
                T0 + i as i64 * MS + j as i64 * 20_000,
                s,
                "198.18.1.2",
                6,
                *port,
                0x02,
            ));
        }
    }
    let all = run(&evs);
    let mut want: Vec<String> = sources.iter().map(|s| s.to_string()).collect();
    want.sort();
    assert_eq!(kinds(&all), vec![("distributed_scan".into(), want)]);
    let s = started(&all, "distributed_scan")[0];
    assert_eq!(s.synchronized, Some(true));
    assert!(s.lag_ms.is_some_and(|l| l < 1.0), "lag {:?}", s.lag_ms);
    let end = all.iter().find(|a| a.status == "ended").unwrap();
    assert_eq!(end.ports.count, 300);
    assert_eq!(end.source_count, 4);
}

/// The episodes of `twins("192.0.2.40", "192.0.2.41", ..)`: the pair as
/// one group, and the leader's own port scan.
fn twins_as_group_and_leader() -> Vec<(String, Vec<String>)> {
    vec![
        (
            "distributed_scan".into(),
            vec!["192.0.2.40".to_string(), "192.0.2.41".to_string()],
        ),
        ("port_scan".into(), vec!["192.0.2.40".to_string()]),
    ]
}

#[test]
fn two_scanners_in_lockstep() {
    let evs = twins("192.0.2.40", "192.0.2.41", 200, |_| 0);
    let all = run(&evs);
    // The leader is 5 ports ahead of its twin: it has probed 6 ports, a
    // port scan, before the pair has co-probed 5 and is grouped. The
    // follower is only ever reported as part of the group.
    assert_eq!(kinds(&all), twins_as_group_and_leader());
    assert!(
        started(&all, "port_scan")[0].id < started(&all, "distributed_scan")[0].id,
        "the leader's scan came first"
    );
    let s = started(&all, "distributed_scan")[0];
    assert!(
        s.lag_ms.is_some_and(|l| (l - 50.0).abs() < 1.0),
        "lag {:?}",
        s.lag_ms
    );
    assert!(s.summary.contains("lockstep"));
}

/// On dark ports (four suffice for one source alone) the twins are still
/// one group: the follower, co-probing in a pair not yet judged, waits for
/// the group instead of being reported alone at its fourth port.
#[test]
fn two_scanners_in_lockstep_on_dark_ports() {
    let mut evs = twins("192.0.2.40", "192.0.2.41", 200, |_| 0);
    for r in &mut evs {
        r.pkt_flags |= fireplot_common::event::PKT_DARK_PORT;
    }
    let all = run(&evs);
    assert_eq!(kinds(&all), twins_as_group_and_leader());
}

/// Two scanners of ports 1..=n of one host, one probe every 10 ms, the
/// second 50 ms (plus `jitter(port)` ms) behind the first; in time order.
fn twins(a: &str, b: &str, n: u16, mut jitter: impl FnMut(u16) -> i64) -> Vec<Record> {
    let mut evs = Vec::new();
    for p in 1..=n {
        let t = T0 + p as i64 * 10 * MS;
        evs.push(ev(t, a, "198.18.1.2", 6, p, 0x02));
        evs.push(ev(t + (50 + jitter(p)) * MS, b, "198.18.1.2", 6, p, 0x02));
    }
    evs.sort_by_key(|r| r.ts_ns);
    evs
}

/// Lockstep with real-world jitter: the follower's lag wanders ±4 ms
/// around 50 ms (pseudo-random, fixed seed), and is still one group.
#[test]
fn two_scanners_in_lockstep_with_jitter() {
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let evs = twins("192.0.2.42", "192.0.2.43", 200, |_| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        (x % 9) as i64 - 4
    });
    let all = run(&evs);
    let d = started(&all, "distributed_scan");
    assert_eq!(d.len(), 1, "{:?}", kinds(&all));
    assert_eq!(d[0].synchronized, Some(true));
    assert!(
        d[0].lag_ms.is_some_and(|l| (l - 50.0).abs() < 3.0),
        "lag {:?}",
        d[0].lag_ms
    );
}

/// Two independent scans of the same 300 ports at the same time, each in
/// its own random order (nmap's default): they co-probe many ports within
/// the lag window, but neither in order nor at a steady lag. Two port
/// scans, never one lockstep group.
#[test]
fn independent_overlapping_scans_are_not_lockstep() {
    let mut evs = Vec::new();
    for (src, seed) in [("192.0.2.44", 0x9e37_79b9u64), ("192.0.2.45", 0x7f4a_7c15)] {
        let mut ports: Vec<u16> = (1..=300).collect();
        let mut x = seed;
        for i in (1..ports.len()).rev() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            ports.swap(i, (x % (i as u64 + 1)) as usize);
        }
        for (k, port) in ports.iter().enumerate() {
            evs.push(ev(
                T0 + k as i64 * 5 * MS,
                src,
                "198.18.1.2",
                6,
                *port,
                0x02,
            ));
        }
    }
    evs.sort_by_key(|r| r.ts_ns);
    let all = run(&evs);
    assert!(
        started(&all, "distributed_scan").is_empty(),
        "{:?}",
        kinds(&all)
    );
    assert_eq!(started(&all, "port_scan").len(), 2, "{:?}", kinds(&all));
    // The same on dark ports: held while the pair is open, then reported.
    for r in &mut evs {
        r.pkt_flags |= fireplot_common::event::PKT_DARK_PORT;
    }
    let all = run(&evs);
    assert!(started(&all, "distributed_scan").is_empty());
    assert_eq!(started(&all, "port_scan").len(), 2, "{:?}", kinds(&all));
}

/// The lockstep thresholds come from the config: demanding a spread the
/// jittered pair cannot meet (and a sooner decision) leaves it ungrouped.
#[test]
fn lockstep_thresholds_are_settings() {
    let evs = twins("192.0.2.46", "192.0.2.47", 100, |p| {
        if p % 2 == 0 {
            3
        } else {
            -3
        }
    });
    assert_eq!(started(&run(&evs), "distributed_scan").len(), 1);
    let strict = DetectConfig {
        sync_lag_spread: 0.02,
        sync_lag_spread_min_ms: 1.0,
        ..DetectConfig::default()
    };
    assert!(started(&run_with(strict, &evs), "distributed_scan").is_empty());
}

/// One source flooding a port, plus one stray probe of the same port from
/// someone else in the same second: that is the source's flood, not a port
/// flood "from several sources".
#[test]
fn a_stray_second_source_does_not_make_a_port_flood() {
    let mut evs: Vec<Record> = (0..25_000)
        .map(|i| ev(T0 + i * 20_000, "192.0.2.71", "198.18.1.2", 6, 80, 0x02))
        .collect();
    evs.push(ev(T0 + 10_000, "192.0.2.72", "198.18.1.2", 6, 80, 0x02));
    evs.sort_by_key(|r| r.ts_ns);
    let all = run(&evs);
    let floods = started(&all, "flood");
    assert_eq!(floods.len(), 1, "{:?}", kinds(&all));
    assert_eq!(floods[0].sources, vec!["192.0.2.71".to_string()]);
}

/// 20 sources (192.0.2.100-119), 5 ports each of one target (one short
/// of a port scan alone): shared work.
fn shared_work() -> Vec<Record> {
    let mut evs = Vec::new();
    let mut t = T0;
    for s in 0..20u16 {
        for k in 0..5u16 {
            t += 200 * MS;
            evs.push(ev(
                t,
                &format!("192.0.2.{}", 100 + s),
                "198.18.1.9",
                6,
                2000 + s * 5 + k,
                0x02,
            ));
        }
    }
    evs
}

#[test]
fn sources_sharing_the_work() {
    let all = run(&shared_work());
    let d = started(&all, "distributed_scan");
    assert_eq!(d.len(), 1, "{:?}", kinds(&all));
    assert_eq!(d[0].synchronized, Some(false));
    assert!(started(&all, "port_scan").is_empty());
}

#[test]
fn port_surge_rises_above_its_baseline() {
    let mut evs = Vec::new();
    let bucket = 600 * S;
    // Six hours of a quiet baseline: two sources per bucket on 7547.
    for b in 0..36i64 {
        for k in 0..2 {
            evs.push(ev(
                T0 + b * bucket + k * S,
                &format!("203.0.113.{}", k + 1),
                "198.18.1.2",
                6,
                7547,
                0x02,
            ));
        }
    }
    // A wave: 1,000 distinct sources over two hours, one or two probes each.
    for i in 0..1000i64 {
        let src = format!("100.{}.{}.{}", 64 + i / 65536, (i / 256) % 256, i % 256);
        let t = T0 + 36 * bucket + i * 7 * S;
        evs.push(ev(t, &src, "198.18.1.2", 6, 7547, 0x02));
        if i % 3 == 0 {
            evs.push(ev(t + S, &src, "198.18.1.3", 6, 7547, 0x02));
        }
    }
    evs.sort_by_key(|r| r.ts_ns);
    let all = run(&evs);
    let s = started(&all, "port_surge");
    assert_eq!(s.len(), 1, "{:?}", kinds(&all));
    assert_eq!(s[0].ports.sample, vec![7547]);
    // The same two sources returning every 10 minutes are two sources, not
    // a rate: the baseline (new sources, with the weak prior of one in an
    // hour) is about 3 in 7 hours.
    assert!(
        s[0].baseline.is_some_and(|b| (5.0..=15.0).contains(&b)),
        "{:?}",
        s[0].baseline
    );
    assert!(started(&all, "port_scan").is_empty() && started(&all, "port_sweep").is_empty());
}

#[test]
fn backscatter_from_many_sources() {
    let evs: Vec<Record> = (0..100)
        .map(|i| {
            let flags = if i % 2 == 0 { 0x12 } else { 0x14 };
            ev(
                T0 + i * 50 * MS,
                &format!("203.0.113.{}", i + 1),
                "198.18.1.2",
                6,
                1024 + i as u16,
                flags,
            )
        })
        .collect();
    let all = run(&evs);
    let b = started(&all, "backscatter");
    assert_eq!(b.len(), 1, "{:?}", kinds(&all));
    assert_eq!(b[0].targets.sample, vec!["198.18.1.2".to_string()]);
    assert_eq!(kinds(&all).len(), 1);
}

#[test]
fn floods_by_source_and_by_port() {
    let evs: Vec<Record> = (0..30_000)
        .map(|i| ev(T0 + i * 30_000, "192.0.2.70", "198.18.1.2", 6, 80, 0x02))
        .collect();
    let all = run(&evs);
    assert_eq!(
        kinds(&all),
        vec![("flood".into(), vec!["192.0.2.70".to_string()])]
    );
    let evs: Vec<Record> = (0..30_000)
        .map(|i| {
            ev(
                T0 + i * 30_000,
                &format!("192.0.2.{}", 1 + i % 10),
                "198.18.1.2",
                17,
                53,
                0,
            )
        })
        .collect();
    let all = run(&evs);
    // Ten sources flooding one host: an attack on it, not ten floods.
    let k = kinds(&all);
    assert_eq!(k.len(), 1, "{k:?}");
    assert_eq!(k[0].0, "ddos");
    let end = all.iter().find(|a| a.status == "ended").unwrap();
    assert_eq!(end.source_count, 10);
    assert!(
        end.summary
            .starts_with("198.18.1.2 UDP/53 was under UDP flood"),
        "{}",
        end.summary
    );
}

#[test]
fn a_pause_continues_the_episode_a_long_one_starts_a_new_one() {
    let mut evs = Vec::new();
    for p in 1..=50u16 {
        evs.push(ev(
            T0 + p as i64 * MS,
            "192.0.2.80",
            "198.18.1.2",
            6,
            p,
            0x02,
        ));
    }
    for p in 51..=100u16 {
        evs.push(ev(
            T0 + 120 * S + p as i64 * MS,
            "192.0.2.80",
            "198.18.1.2",
            6,
            p,
            0x02,
        ));
    }
    let all = run(&evs);
    assert_eq!(
        started(&all, "port_scan").len(),
        1,
        "a 2-minute pause is the same episode"
    );
    for p in 101..=150u16 {
        evs.push(ev(
            T0 + 3600 * S + p as i64 * MS,
            "192.0.2.80",
            "198.18.1.2",
            6,
            p,
            0x02,
        ));
    }
    let all = run(&evs);
    let ended: Vec<&Alert> = all
        .iter()
        .filter(|a| a.kind == "port_scan" && a.status == "ended")
        .collect();
    assert_eq!(ended.len(), 2, "an hour's pause ends it");
    // The second episode is its actor's second: not announced again today.
    assert_eq!(started(&all, "port_scan").len(), 1, "{all:#?}");
    let second = all.iter().find(|a| a.id == ended[1].id).unwrap();
    assert_eq!(second.status, "update");
    assert_eq!(second.actor.as_ref().map(|x| x.episodes), Some(2));
    let first_end = all.iter().find(|a| a.status == "ended").unwrap();
    assert_eq!(first_end.ports.count, 100);
}

#[test]
fn replay_is_deterministic() {
    let mut evs = Vec::new();
    for (i, p) in shuffled(500, 11).iter().enumerate() {
        evs.push(ev(
            T0 + i as i64 * MS,
            "192.0.2.90",
            "198.18.1.2",
            6,
            *p,
            0x02,
        ));
        evs.push(ev(
            T0 + i as i64 * MS + 1,
            &format!("203.0.113.{}", i % 200),
            &format!("198.18.1.{}", i % 50),
            17,
            53,
            0,
        ));
    }
    assert_eq!(run(&evs), run(&evs));
}

#[test]
fn ten_million_spoofed_sources_stay_in_the_budget() {
    let mut e = Engine::new(DetectConfig::default());
    let budget = e.stats().budget_bytes;
    for i in 0..10_000_000u64 {
        let a = (0x0a00_0000u64 + i) as u32;
        let mut r = ev(
            T0 + i as i64 * 1000,
            "0.0.0.0",
            "198.18.1.2",
            6,
            80 + (i % 7) as u16,
            0x02,
        );
        r.src = Some(IpAddr::from(a.to_be_bytes()));
        e.push(&r);
    }
    let st = e.stats();
    assert!(st.state_bytes <= budget, "{} > {budget}", st.state_bytes);
    assert!(st.sources_evicted > 0, "evictions are counted");
    assert_eq!(
        st.sources_evicted + st.sources_tracked + st.sources_expired,
        10_000_000
    );
    let _ = e.finish();
    eprintln!(
        "10M spoofed sources: {} tracked, {} evicted, {:.0} MiB accounted of {:.0} MiB",
        st.sources_tracked,
        st.sources_evicted,
        st.state_bytes as f64 / 1048576.0,
        budget as f64 / 1048576.0
    );
}

/// An aggregate of `count` packets in second `sec` from `prefix`/24 to `port`.
fn agg(sec: i64, prefix: &str, port: u16, count: u32) -> Record {
    let mut r = ev(T0 + sec * S, prefix, "198.18.1.2", 6, port, 0x02);
    r.dst = None;
    r.sport = 0;
    r.pkt_flags = fireplot_common::event::PKT_AGGREGATE;
    r.count = count;
    r
}

/// A spoofed flood the kernel aggregated: a few hundred events, then
/// aggregates of many /24s arriving after their second. The flood is
/// alerted at its real rate and counts every aggregated packet; the scan
/// running alongside is a scan, not part of the flood.
#[test]
fn a_flood_known_from_aggregates_counts_them_at_their_rate() {
    let mut evs: Vec<Record> = (0..300)
        .map(|i| {
            let src = format!("198.19.{}.{}", i % 200, 1 + i / 200);
            ev(T0 + i * 100_000, &src, "198.18.1.2", 6, 80, 0x02)
        })
        .collect();
    evs.extend((0..100).map(|i| {
        ev(
            T0 + i * MS,
            "192.0.2.9",
            "198.18.1.2",
            6,
            1000 + i as u16,
            0x02,
        )
    }));
    evs.sort_by_key(|r| r.ts_ns);
    // Seconds 0..3, 64 /24s of 5,000 packets each (320,000/s), arriving
    // two seconds late, between later events.
    let mut stream = evs;
    for sec in 0..3 {
        for p in 0..64 {
            stream.push(agg(sec, &format!("198.19.{p}.0"), 80, 5_000));
        }
        stream.push(ev(
            T0 + (sec + 2) * S,
            "192.0.2.50",
            "198.18.1.9",
            17,
            53,
            0,
        ));
    }
    let all = run(&stream);
    let floods: Vec<&Alert> = all
        .iter()
        .filter(|a| a.kind == "flood" && a.status == "ended")
        .collect();
    assert_eq!(floods.len(), 1, "{:?}", kinds(&all));
    let f = floods[0];
    assert_eq!(f.aggregated, Some(3 * 64 * 5_000));
    assert!(f.probes >= 3 * 64 * 5_000, "{}", f.summary);
    assert!(
        f.summary.contains("counted in kernel aggregates"),
        "{}",
        f.summary
    );
    assert!(f.summary.contains("peak 320,"), "{}", f.summary);
    assert!(
        !f.targets.sample.iter().any(|t| t == "::"),
        "{:?}",
        f.targets
    );
    let scans = started(&all, "port_scan");
    assert_eq!(scans.len(), 1);
    assert_eq!(scans[0].sources, vec!["192.0.2.9".to_string()]);
    // Aggregates below the flood rate are no flood.
    let quiet: Vec<Record> = (0..5).map(|s| agg(s, "198.19.7.0", 443, 100)).collect();
    assert!(run(&quiet).is_empty());
}

/// One source's flood past its rate limit: its aggregates belong to its
/// own flood, not to a second flood "from many sources".
#[test]
fn a_single_source_flood_keeps_its_aggregates() {
    let mut stream: Vec<Record> = (0..25_000)
        .map(|i| ev(T0 + i * 20_000, "198.18.0.2", "198.18.1.2", 6, 80, 0x02))
        .collect();
    for sec in 0..3 {
        stream.push(agg(sec, "198.18.0.0", 80, 90_000));
    }
    let all = run(&stream);
    assert_eq!(
        kinds(&all),
        vec![("flood".to_string(), vec!["198.18.0.2".to_string()])]
    );
    let f = all.iter().rfind(|a| a.kind == "flood").unwrap();
    assert_eq!(f.aggregated, Some(270_000));
    assert_eq!(f.probes, 25_000 + 270_000);
    assert!(f.summary.contains("past its rate limit"), "{}", f.summary);
}

/// One source's flood that the kernel aggregated before its events
/// reached the flood rate (its target limit held them back): the
/// aggregates name the source, and the flood is that source's.
#[test]
fn a_one_source_aggregate_is_that_sources_flood() {
    let mut stream: Vec<Record> = (0..5_000)
        .map(|i| ev(T0 + i * 100_000, "198.18.0.2", "198.18.1.2", 6, 80, 0x02))
        .collect();
    for sec in 0..2 {
        let mut a = agg(sec, "198.18.0.2", 80, 60_000);
        a.pkt_flags |= fireplot_common::event::PKT_AGG_ONE_SOURCE;
        stream.push(a);
    }
    let all = run(&stream);
    assert_eq!(
        kinds(&all),
        vec![("flood".to_string(), vec!["198.18.0.2".to_string()])]
    );
    let f = all.iter().rfind(|a| a.kind == "flood").unwrap();
    assert_eq!(f.aggregated, Some(120_000));
}

/// An enricher over small files: 192.0.2.100-105 in AS64496 (NL),
/// 192.0.2.106-119 in AS64497 (DE), 198.51.100.7 a known research scanner.
fn doc_enricher() -> std::sync::Arc<crate::enrich::Enricher> {
    let d = std::env::temp_dir().join(format!("fireplot-detect-enrich-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(
        d.join("asn.csv"),
        "192.0.2.100,192.0.2.105,64496,Doc One\n192.0.2.106,192.0.2.119,64497,Doc Two\n",
    )
    .unwrap();
    std::fs::write(
        d.join("cc.csv"),
        "192.0.2.100,192.0.2.105,NL\n192.0.2.106,192.0.2.119,DE\n",
    )
    .unwrap();
    std::fs::write(
        d.join("scanners.txt"),
        "198.51.100.7 # a research scanner\n",
    )
    .unwrap();
    let args = crate::enrich::Options {
        geoip: vec![d.join("cc.csv")],
        asn: vec![d.join("asn.csv")],
        tags: ["research_scanner=".to_string() + d.join("scanners.txt").to_str().unwrap()]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect(),
    };
    args.open().unwrap().unwrap()
}

#[test]
fn shared_work_names_its_networks_and_countries() {
    let evs = shared_work();
    let mut e = Engine::new(DetectConfig::default());
    e.set_enricher(Some(doc_enricher()));
    let all = run_engine(&mut e, &evs);
    let d = started(&all, "distributed_scan");
    assert_eq!(d.len(), 1, "{:?}", kinds(&all));
    let ended = all
        .iter()
        .find(|a| a.kind == "distributed_scan" && a.status == "ended")
        .unwrap();
    // The episode's 10 sources: 6 in AS64496/NL, 4 in AS64497/DE.
    assert_eq!(ended.source_count, 10);
    let asns = ended.asns.as_ref().unwrap();
    assert_eq!(
        asns.iter()
            .map(|s| (s.name.as_str(), s.sources))
            .collect::<Vec<_>>(),
        vec![("AS64496", 6), ("AS64497", 4)]
    );
    assert_eq!(asns[0].org.as_deref(), Some("Doc One"));
    let cc = ended.countries.as_ref().unwrap();
    assert_eq!((cc[0].name.as_str(), cc[0].sources), ("NL", 6));
    assert!(
        ended
            .summary
            .ends_with("10 sources from 2 networks, 60 % AS64496 Doc One; 2 countries, 60 % NL."),
        "{}",
        ended.summary
    );
    // The listed sources say who they are.
    let o = ended.origins.as_ref().unwrap();
    assert_eq!(o.len(), ended.sources.len());
    assert_eq!(o[0].origin.asn, Some(64496));
}

#[test]
fn ignored_tags_keep_a_known_scanner_quiet_and_others_not() {
    // Two scans an hour apart, of different hosts.
    let scan = |t0: i64, src: &str, dst: &str| -> Vec<Record> {
        (0..200u16)
            .map(|i| ev(t0 + i as i64 * MS, src, dst, 6, 1000 + i, 0x02))
            .collect()
    };
    let mut evs = scan(T0, "198.51.100.7", "198.18.1.2");
    evs.extend(scan(T0 + 3600 * S, "198.51.100.8", "198.18.1.3"));
    let cfg = DetectConfig {
        ignore_tags: vec!["research_scanner".into()],
        ..DetectConfig::default()
    };
    let mut e = Engine::new(cfg);
    e.set_enricher(Some(doc_enricher()));
    let all = run_engine(&mut e, &evs);
    let scans = started(&all, "port_scan");
    assert_eq!(scans.len(), 1, "{:?}", kinds(&all));
    assert_eq!(scans[0].sources, vec!["198.51.100.8".to_string()]);
    assert!(all
        .iter()
        .all(|a| !a.sources.contains(&"198.51.100.7".to_string())));
    assert_eq!(
        e.stats().alerts_ignored_by_tag,
        2,
        "its started and ended records"
    );
    // Without ignore_tags, it is alerted and tagged.
    let mut e = Engine::new(DetectConfig::default());
    e.set_enricher(Some(doc_enricher()));
    let all = run_engine(&mut e, &evs);
    let tagged: Vec<&Alert> = started(&all, "port_scan")
        .into_iter()
        .filter(|a| a.sources == vec!["198.51.100.7".to_string()])
        .collect();
    assert_eq!(tagged.len(), 1);
    assert_eq!(
        tagged[0].origins.as_ref().unwrap()[0].origin.tags,
        vec!["research_scanner"]
    );
}
