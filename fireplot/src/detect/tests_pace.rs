//! The seeds' own patterns at their real pace (issue: slow surges,
//! hammering, one-victim backscatter, fingerprints): multi-day streams with
//! internet background on 200 ports, firewall-log timestamps (1-second
//! resolution), and the legitimate traffic that must stay quiet.

use super::{
    tests::{ev, kinds, run, run_with, started, MS, S, T0},
    Alert, DetectConfig,
};
use crate::record::Record;

const H: i64 = 3600 * S;
const DAY: i64 = 24 * H;

/// xorshift: the same stream every run.
pub(super) struct Rng(pub(super) u64);

impl Rng {
    pub(super) fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    /// Uniform in [0, n).
    pub(super) fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    /// An exponential gap (ns) of a Poisson process of `per_hour`.
    fn gap(&mut self, per_hour: f64) -> i64 {
        (-(1.0 - self.unit()).ln() / per_hour * H as f64) as i64
    }
}

/// A fresh source address for the i-th source of a stream.
fn source(stream: u32, i: u32) -> String {
    format!(
        "{}.{}.{}.{}",
        20 + stream,
        (i >> 16) & 255,
        (i >> 8) & 255,
        i & 255
    )
}

fn our(i: u64) -> String {
    format!("198.18.{}.{}", 1 + (i >> 8) % 2, 1 + i % 250)
}

/// Internet background for `days`: 200 ports, each with its own steady
/// rate (0.5 to 20 new sources an hour), every source probing once or
/// twice, never 7547 or 37777.
fn background(rng: &mut Rng, days: i64) -> Vec<Record> {
    let mut evs = Vec::new();
    let mut n = 0u32;
    for k in 0..200u32 {
        let port = (1000 + k * 311 % 60_000) as u16;
        if port == 7547 || port == 37777 {
            continue;
        }
        let rate = 0.5 + 19.5 * rng.unit();
        let mut t = T0 + rng.gap(rate);
        while t < T0 + days * DAY {
            let src = source(0, n);
            n += 1;
            let proto = if k % 4 == 0 { 17 } else { 6 };
            let flags = if proto == 6 { 0x02 } else { 0 };
            evs.push(ev(t, &src, &our(rng.next()), proto, port, flags));
            if rng.next().is_multiple_of(2) {
                evs.push(ev(t + 2 * S, &src, &our(rng.next()), proto, port, flags));
            }
            t += rng.gap(rate);
        }
    }
    evs
}

/// `n` new sources on TCP `port`, spread at random over [from, from + span).
fn wave(rng: &mut Rng, stream: u32, port: u16, n: u32, from: i64, span: i64) -> Vec<Record> {
    (0..n)
        .flat_map(|i| {
            let t = from + (rng.unit() * span as f64) as i64;
            let src = source(stream, i);
            let mut v = vec![ev(t, &src, &our(rng.next()), 6, port, 0x02)];
            if i % 3 == 0 {
                v.push(ev(t + S, &src, &our(rng.next()), 6, port, 0x02));
            }
            v
        })
        .collect()
}

/// Firewall logs have whole seconds; events come in time order.
fn as_logged(mut evs: Vec<Record>) -> Vec<Record> {
    for e in evs.iter_mut() {
        e.ts_ns -= e.ts_ns.rem_euclid(S);
    }
    evs.sort_by_key(|r| r.ts_ns);
    evs
}

fn surges(all: &[Alert]) -> Vec<&Alert> {
    started(all, "port_surge")
}

fn no_per_source_alerts(all: &[Alert]) {
    for kind in [
        "port_scan",
        "port_sweep",
        "flag_scan",
        "flood",
        "distributed_scan",
    ] {
        assert!(started(all, kind).is_empty(), "{kind}: {:?}", kinds(all));
    }
}

#[test]
fn four_days_of_background_raise_nothing() {
    let mut rng = Rng(0x5eed_0001);
    let evs = as_logged(background(&mut rng, 4));
    assert!(evs.len() > 50_000, "{} background events", evs.len());
    let all = run(&evs);
    assert!(surges(&all).is_empty(), "{:?}", surges(&all));
    no_per_source_alerts(&all);
}

/// "TCP/7547 on the rise": three quiet days with a few sources a day on
/// 7547, then more than 1,000 distinct sources in 12 hours.
#[test]
fn a_twelve_hour_surge_after_three_quiet_days() {
    let mut rng = Rng(0x5eed_0002);
    let mut evs = background(&mut rng, 4);
    for d in 0..3 {
        evs.extend(
            wave(&mut rng, 1, 7547, 4, T0 + d * DAY, DAY)
                .into_iter()
                .map(|mut e| {
                    // Distinct sources per day.
                    e.src = Some(super::tests::ip(&format!("31.{d}.{}.1", e.ts_ns % 200)));
                    e
                }),
        );
    }
    let surge_start = T0 + 3 * DAY + 6 * H;
    evs.extend(wave(&mut rng, 2, 7547, 1104, surge_start, 12 * H));
    let evs = as_logged(evs);
    let all = run(&evs);
    let s = surges(&all);
    assert_eq!(s.len(), 1, "{:?}", s);
    assert_eq!(s[0].ports.sample, vec![7547]);
    assert_eq!(s[0].proto, "tcp");
    let first = crate::record::parse_rfc3339_ns(&s[0].last_seen).unwrap();
    eprintln!(
        "7547 reported {} min into the surge, at {} new sources in {} s",
        (first - surge_start) / (60 * S),
        s[0].horizon_sources.unwrap_or(0),
        s[0].horizon_s.unwrap_or(0)
    );
    assert!(
        first - surge_start < 2 * H,
        "reported {} h into the surge",
        (first - surge_start) / H
    );
    assert!(
        s[0].summary.starts_with("TCP/7547: ") && s[0].summary.contains("baseline"),
        "{}",
        s[0].summary
    );
    // A few a day before: the baseline says so.
    assert!(
        s[0].baseline.is_some_and(|b| b < 10.0),
        "{:?}",
        s[0].baseline
    );
    let end = all
        .iter()
        .find(|a| a.kind == "port_surge" && a.status == "ended")
        .expect("ended");
    assert!(
        end.source_count + end.horizon_sources.unwrap_or(0) >= 1000,
        "{end:?}"
    );
    eprintln!("7547: {}", end.summary);
    no_per_source_alerts(&all);
}

/// "Probes towards TCP/37777": about 200 distinct sources in 24 hours on a
/// port nobody probed before.
#[test]
fn two_hundred_sources_in_a_day_on_a_port_nobody_probed() {
    let mut rng = Rng(0x5eed_0003);
    let mut evs = background(&mut rng, 4);
    evs.extend(wave(&mut rng, 3, 37777, 200, T0 + 3 * DAY, DAY));
    let all = run(&as_logged(evs));
    let s = surges(&all);
    assert_eq!(s.len(), 1, "{:?}", s);
    assert_eq!(s[0].ports.sample, vec![37777]);
    assert!(s[0].summary.starts_with("TCP/37777: "), "{}", s[0].summary);
    let first = crate::record::parse_rfc3339_ns(&s[0].last_seen).unwrap();
    eprintln!(
        "37777 reported {} min into the wave, at {} new sources in {} s",
        (first - (T0 + 3 * DAY)) / (60 * S),
        s[0].horizon_sources.unwrap_or(0),
        s[0].horizon_s.unwrap_or(0)
    );
    no_per_source_alerts(&all);
}

/// A 6-hour wave of 900 sources on 7547.
#[test]
fn a_six_hour_wave() {
    let mut rng = Rng(0x5eed_0004);
    let mut evs = background(&mut rng, 2);
    evs.extend(wave(&mut rng, 4, 7547, 900, T0 + DAY + 4 * H, 6 * H));
    let all = run(&as_logged(evs));
    let s = surges(&all);
    assert_eq!(s.len(), 1, "{:?}", s);
    assert_eq!(s[0].ports.sample, vec![7547]);
    let first = crate::record::parse_rfc3339_ns(&s[0].last_seen).unwrap();
    eprintln!(
        "6-hour wave reported {} min in, at {} new sources in {} s",
        (first - (T0 + DAY + 4 * H)) / (60 * S),
        s[0].horizon_sources.unwrap_or(0),
        s[0].horizon_s.unwrap_or(0)
    );
}

/// One honeypot source: 11,116 UDP packets to port 2193 of one host in 10
/// minutes (~18/s).
#[test]
fn hammering_at_eighteen_a_second() {
    let evs: Vec<Record> = (0..11_116i64)
        .map(|i| {
            ev(
                T0 + i * 600 * S / 11_116,
                "192.0.2.90",
                "198.18.1.5",
                17,
                2193,
                0,
            )
        })
        .collect();
    let all = run(&as_logged(evs));
    assert_eq!(
        kinds(&all),
        vec![("flood".into(), vec!["192.0.2.90".to_string()])]
    );
    let end = all.iter().find(|a| a.status == "ended").unwrap();
    assert_eq!(end.count, Some(11_116), "{end:?}");
    assert_eq!(end.severity, 5, "psad level: ≥ 10,000 packets");
    assert!(
        end.summary
            .contains("hammered UDP/2193 of 198.18.1.5 with 11,116 packets"),
        "{}",
        end.summary
    );
    let start = started(&all, "flood")[0];
    assert_eq!(start.count, Some(1000), "reported at hammer_packets");
}

/// The other: 18,195 packets to UDP/56338 in 2 hours (~2.5/s).
#[test]
fn hammering_at_two_a_second_for_two_hours() {
    let evs: Vec<Record> = (0..18_195i64)
        .map(|i| {
            ev(
                T0 + i * 2 * H / 18_195,
                "192.0.2.91",
                "198.18.1.6",
                17,
                56338,
                0,
            )
        })
        .collect();
    let all = run(&as_logged(evs));
    assert_eq!(
        kinds(&all),
        vec![("flood".into(), vec!["192.0.2.91".to_string()])]
    );
    let end = all.iter().find(|a| a.status == "ended").unwrap();
    assert_eq!(end.count, Some(18_195));
}

/// A chatty client whose connection the sensor lost track of (ACK and
/// PSH|ACK mid-stream, the state timed out), and one behind a published
/// service (class `service`, which a sensor only sends when asked): no
/// hammering.
#[test]
fn a_chatty_client_is_not_hammering() {
    let mut evs: Vec<Record> = (0..20_000i64)
        .map(|i| {
            let flags = if i % 3 == 0 { 0x10 } else { 0x18 };
            ev(T0 + i * 300 * MS, "192.0.2.92", "198.18.1.7", 6, 443, flags)
        })
        .collect();
    evs.extend((0..20_000i64).map(|i| {
        let mut e = ev(
            T0 + i * 300 * MS + 7,
            "192.0.2.93",
            "198.18.1.7",
            17,
            5060,
            0,
        );
        e.class = fireplot_common::event::Class::Service as u8;
        e
    }));
    evs.sort_by_key(|r| r.ts_ns);
    let all = run(&evs);
    assert!(started(&all, "flood").is_empty(), "{:?}", kinds(&all));
}

/// "192.0.2.200 answered a spoofed SYN flood": 3,431 SYN-ACKs from port 80
/// to 511 addresses of our two /24s in 24 hours. Backscatter from one
/// victim, never a sweep or a scan.
#[test]
fn one_victim_answering_many_of_our_addresses() {
    let mut rng = Rng(0x5eed_0005);
    let mut evs: Vec<Record> = (0..3431u64)
        .map(|i| {
            let t = T0 + (rng.unit() * DAY as f64) as i64;
            let dst = if i < 511 { i } else { rng.next() % 511 };
            let dst = format!("198.18.{}.{}", 1 + dst / 256, dst % 256);
            let mut e = ev(
                t,
                "192.0.2.200",
                &dst,
                6,
                1024 + (rng.next() % 60_000) as u16,
                0x12,
            );
            e.sport = 80;
            e
        })
        .collect();
    evs = as_logged(evs);
    let all = run(&evs);
    assert_eq!(
        kinds(&all),
        vec![("backscatter".into(), vec!["192.0.2.200".to_string()])]
    );
    let end = all.iter().find(|a| a.status == "ended").unwrap();
    assert_eq!(end.shape.as_deref(), Some("one_victim"));
    assert_eq!(end.targets.count, 511);
    assert!(
        end.summary
            .starts_with("192.0.2.200 answered a spoofed flood: 3,431 SYN-ACKs from port 80 to 511 of our addresses"),
        "{}",
        end.summary
    );
}

/// Every TCP flag combination to port 80 of one host (a one-way capture),
/// and nmap -O's T2–T7 probes: flag probing of one port or two.
#[test]
fn odd_flag_combinations_at_one_port_are_fingerprinting() {
    let evs: Vec<Record> = (0..=255u8)
        .map(|f| {
            ev(
                T0 + f as i64 * 10 * MS,
                "192.0.2.94",
                "198.18.1.2",
                6,
                80,
                f,
            )
        })
        .collect();
    let all = run(&evs);
    let f = started(&all, "flag_scan");
    assert_eq!(f.len(), 1, "{:?}", kinds(&all));
    let end = all
        .iter()
        .find(|a| a.kind == "flag_scan" && a.status == "ended")
        .unwrap();
    // 100 of the 256 bytes are odd (SYN|FIN with anything, FIN|ACK,
    // and no SYN/ACK/RST at all): all of them.
    assert_eq!(end.combos.as_ref().map(Vec::len), Some(100), "{end:?}");
    assert!(end.summary.contains("fingerprinting"), "{}", end.summary);

    // nmap -O to an open (22) and a closed (1) port: SEQ SYNs, ECN, T2-T7.
    let probes: [(u16, u8); 12] = [
        (22, 0x02),
        (22, 0x02),
        (22, 0x02),
        (22, 0x02),
        (22, 0x02),
        (22, 0x02),
        (22, 0xc2),
        (22, 0x00),
        (22, 0x2b),
        (22, 0x10),
        (1, 0x02),
        (1, 0x29),
    ];
    let evs: Vec<Record> = probes
        .iter()
        .enumerate()
        .map(|(i, (port, f))| {
            ev(
                T0 + i as i64 * 100 * MS,
                "192.0.2.95",
                "198.18.1.2",
                6,
                *port,
                *f,
            )
        })
        .collect();
    let all = run(&evs);
    let f = started(&all, "flag_scan");
    assert_eq!(f.len(), 1, "{:?}", kinds(&all));
    assert_eq!(
        f[0].combos.clone().unwrap_or_default(),
        vec![
            "NULL".to_string(),
            "FIN|PSH|URG".into(),
            "FIN|SYN|PSH|URG".into()
        ]
    );
}

/// Small scans: nmap's UDP scan of its top ports reaching 9 ports, and a
/// sweep of 445 over 1.7 hours reaching 9 hosts.
#[test]
fn small_scans_are_reported() {
    let udp: Vec<Record> = [53u16, 67, 123, 135, 137, 161, 445, 500, 514]
        .iter()
        .enumerate()
        .flat_map(|(i, p)| {
            // It retries with payloads: each port two or three times.
            (0..2 + i as i64 % 2).map(move |k| {
                ev(
                    T0 + (i as i64 * 3 + k) * 400 * MS,
                    "192.0.2.96",
                    "198.18.1.2",
                    17,
                    *p,
                    0,
                )
            })
        })
        .collect();
    let all = run(&udp);
    assert_eq!(
        kinds(&all),
        vec![("port_scan".into(), vec!["192.0.2.96".to_string()])]
    );
    let sweep: Vec<Record> = (0..9i64)
        .map(|i| {
            ev(
                T0 + i * 680 * S,
                "192.0.2.97",
                &format!("198.18.1.{}", 10 + i),
                6,
                445,
                0x02,
            )
        })
        .collect();
    let all = run(&as_logged(sweep));
    assert_eq!(
        kinds(&all),
        vec![("port_sweep".into(), vec!["192.0.2.97".to_string()])]
    );
}

/// Scanner signatures on fields every event carries; "unknown" unless the
/// signature holds.
#[test]
fn tools_are_named_only_when_their_signature_holds() {
    use std::net::Ipv4Addr;
    let scan = |src: &str, shape: &dyn Fn(u16, &mut Record)| -> Vec<Alert> {
        let evs: Vec<Record> = (1..=50u16)
            .map(|p| {
                let mut e = ev(T0 + p as i64 * MS, src, "198.18.1.2", 6, p, 0x02);
                shape(p, &mut e);
                e
            })
            .collect();
        run(&evs)
    };
    let dst = u32::from(Ipv4Addr::new(198, 18, 1, 2));
    let tool = |all: &[Alert]| {
        all.iter()
            .find(|a| a.kind == "port_scan" && a.status == "ended")
            .and_then(|a| a.tool.clone())
    };
    let masscan = scan("192.0.2.110", &|p, e| {
        e.tcp_seq = 0x9e37_79b9u32.wrapping_mul(u32::from(p));
        e.ip_id = ((dst ^ u32::from(p) ^ e.tcp_seq) & 0xffff) as u16;
        e.tcp_window = 1024;
        e.len = 54;
    });
    assert_eq!(tool(&masscan).as_deref(), Some("masscan"));
    let zmap = scan("192.0.2.111", &|_, e| {
        e.ip_id = 54321;
        e.tcp_window = 65535;
    });
    assert_eq!(tool(&zmap).as_deref(), Some("zmap"));
    let mirai = scan("192.0.2.112", &|_, e| e.tcp_seq = dst);
    assert_eq!(tool(&mirai).as_deref(), Some("mirai"));
    let nmap = scan("192.0.2.113", &|_, e| {
        e.tcp_window = 1024;
        e.len = 58;
        e.ip_id = 12345;
    });
    assert_eq!(tool(&nmap).as_deref(), Some("nmap"));
    let hping = scan("192.0.2.114", &|_, e| {
        e.tcp_window = 512;
        e.len = 54;
    });
    assert_eq!(tool(&hping).as_deref(), Some("hping3"));
    // Half the probes carry zmap's id: not enough to name it.
    let mixed = scan("192.0.2.115", &|p, e| {
        e.ip_id = if p % 2 == 0 { 54321 } else { p };
        e.tcp_window = 29200;
    });
    assert_eq!(tool(&mixed).as_deref(), Some("unknown"));
}

/// Hammering thresholds are settings.
#[test]
fn hammering_thresholds_are_settings() {
    let evs: Vec<Record> = (0..300i64)
        .map(|i| ev(T0 + i * S, "192.0.2.98", "198.18.1.8", 17, 9999, 0))
        .collect();
    assert!(
        started(&run(&evs), "flood").is_empty(),
        "300 packets are below the default"
    );
    let cfg = DetectConfig {
        hammer_packets: 200,
        ..DetectConfig::default()
    };
    assert_eq!(started(&run_with(cfg, &evs), "flood").len(), 1);
}

/// Events whose destination had never answered (the kernel's `dark` mark).
fn dark(mut evs: Vec<Record>, bit: u8) -> Vec<Record> {
    for r in &mut evs {
        r.pkt_flags |= bit;
    }
    evs
}

/// Dark destinations are stronger evidence (TRW): 4 dark ports of one host
/// or 4 dark hosts are a scan or sweep; the same probes to destinations that
/// answered are not; a probe to a live port of a live host counts only
/// toward the plain thresholds.
#[test]
fn dark_destinations_are_stronger_evidence() {
    use fireplot_common::event::{PKT_DARK_ADDR, PKT_DARK_PORT};
    let scan = |n: u16| -> Vec<Record> {
        (0..n)
            .map(|i| {
                ev(
                    T0 + i as i64 * 7 * S,
                    "192.0.2.98",
                    "198.18.1.2",
                    6,
                    1000 + i * 11,
                    0x02,
                )
            })
            .collect()
    };
    let sweep = |n: i64| -> Vec<Record> {
        (0..n)
            .map(|i| {
                ev(
                    T0 + i * 300 * S,
                    "192.0.2.99",
                    &format!("198.18.2.{}", 10 + i * 3),
                    6,
                    445,
                    0x02,
                )
            })
            .collect()
    };
    let scanner = || vec![("port_scan".to_string(), vec!["192.0.2.98".to_string()])];
    let sweeper = || vec![("port_sweep".to_string(), vec!["192.0.2.99".to_string()])];
    assert_eq!(kinds(&run(&dark(scan(4), PKT_DARK_PORT))), scanner());
    assert_eq!(kinds(&run(&dark(scan(4), PKT_DARK_ADDR))), scanner());
    assert_eq!(kinds(&run(&scan(4))), vec![], "4 ports that answered");
    assert_eq!(kinds(&run(&dark(scan(3), PKT_DARK_PORT))), vec![]);
    assert_eq!(kinds(&run(&scan(6))), scanner(), "the plain threshold");
    assert_eq!(
        kinds(&run(&as_logged(dark(sweep(4), PKT_DARK_ADDR)))),
        sweeper()
    );
    assert_eq!(kinds(&run(&as_logged(sweep(4)))), vec![]);
    assert_eq!(
        kinds(&run(&as_logged(dark(sweep(3), PKT_DARK_ADDR)))),
        vec![]
    );
    // Mixed: two probes to live ports, three to dark ones: neither count
    // reaches its threshold (5 of 6, 3 of 4).
    let mut mixed = scan(5);
    for r in &mut mixed[2..] {
        r.pkt_flags |= PKT_DARK_PORT;
    }
    assert_eq!(kinds(&run(&mixed)), vec![]);
    // The dark thresholds are settings; equal to the plain ones turns them off.
    let cfg = DetectConfig {
        scan_dark_ports: 6,
        sweep_dark_targets: 6,
        ..DetectConfig::default()
    };
    assert_eq!(
        kinds(&run_with(cfg.clone(), &dark(scan(5), PKT_DARK_PORT))),
        vec![]
    );
    assert_eq!(
        kinds(&run_with(cfg, &as_logged(dark(sweep(5), PKT_DARK_ADDR)))),
        vec![]
    );
}

/// Internet background lands mostly on dark addresses: one or two probes
/// per source, all dark, over four days and 200 ports, must stay quiet.
#[test]
fn dark_background_raises_nothing() {
    use fireplot_common::event::PKT_DARK_ADDR;
    let mut rng = Rng(0xda7c);
    let evs = dark(as_logged(background(&mut rng, 4)), PKT_DARK_ADDR);
    let all = run(&evs);
    no_per_source_alerts(&all);
    assert!(surges(&all).is_empty(), "{:?}", surges(&all).first());
}

/// A restart on the same history is not blind: the detector warmed up on
/// the stored days reports a surge in its first hour, where one started
/// cold waits for 6 h of history (and is spared the extreme rule by a wave
/// of 80, below 200 in 10 minutes).
#[test]
fn a_restart_warmed_up_on_its_history_sees_a_surge_at_once() {
    use super::Engine;
    let mut rng = Rng(0x5eed_0009);
    let history = as_logged(background(&mut rng, 3));
    let restart = T0 + 3 * DAY;
    let wave_evs = as_logged(wave(&mut rng, 4, 47_808, 80, restart + 10 * 60 * S, H));
    let live = |e: &mut Engine| {
        let mut out = Vec::new();
        for r in &wave_evs {
            e.push(r);
            out.extend(e.drain());
        }
        out.extend(e.finish());
        out
    };
    let mut cold = Engine::new(DetectConfig::default());
    assert!(
        surges(&live(&mut cold)).is_empty(),
        "a cold start is blind for 6 h"
    );
    let mut warm = Engine::new(DetectConfig::default());
    warm.start_warm_up();
    for r in &history {
        warm.push(r);
    }
    warm.end_warm_up();
    assert!(warm.drain().is_empty(), "the warm-up gives no records");
    let all = live(&mut warm);
    let s = surges(&all);
    assert_eq!(s.len(), 1, "{all:#?}");
    assert_eq!(s[0].ports.sample, vec![47_808]);
}
