//! Attacks on our hosts, per vector and rule, on synthetic streams shaped
//! after public attack captures: reflection, spoofed SYN/ACK/ICMP/fragment
//! floods (as events and as the kernel's aggregates), sub-second bursts,
//! carpet bombing, backscatter at an attack's rate; and the traffic that
//! must stay quiet.

use std::net::IpAddr;

use super::{
    tests::{ev, ip, run, run_with, MS, S, T0},
    Alert, DetectConfig,
};
use crate::record::{parse_rfc3339_ns, Record};
use fireplot_common::event::{PKT_AGGREGATE, PKT_FRAGMENT};

/// A spoofed-looking source: the i-th of a stream, spread over IPv4.
fn spoofed(stream: u32, i: u32) -> IpAddr {
    let x = (i.wrapping_mul(2_654_435_761) ^ stream.wrapping_mul(40_503)) | 0x0100_0000;
    IpAddr::from(x.to_be_bytes())
}

fn udp_from(ts: i64, src: IpAddr, dst: &str, sport: u16, len: u16) -> Record {
    let mut r = ev(ts, "192.0.2.1", dst, 17, 40_000 + (ts % 1000) as u16, 0);
    r.src = Some(src);
    r.sport = sport;
    r.len = len;
    r
}

/// `n` packets at `pps` from `t0`, each from its own source.
fn spread(n: u32, pps: u32, t0: i64, mut make: impl FnMut(i64, u32) -> Record) -> Vec<Record> {
    (0..n)
        .map(|i| make(t0 + i as i64 * S / pps as i64, i))
        .collect()
}

fn attacks(all: &[Alert]) -> Vec<&Alert> {
    all.iter().filter(|a| a.kind == "ddos").collect()
}

fn ended_attacks(all: &[Alert]) -> Vec<&Alert> {
    all.iter()
        .filter(|a| a.kind == "ddos" && a.status == "ended" && a.prefix_len.is_none())
        .collect()
}

/// Seconds from the first packet to the attack's first record.
fn time_to_detect(all: &[Alert], t0: i64) -> f64 {
    let first = all
        .iter()
        .find(|a| a.kind == "ddos")
        .expect("an attack record");
    (parse_rfc3339_ns(&first.last_seen).unwrap() - t0) as f64 / 1e9
}

fn per_source_floods(all: &[Alert]) -> usize {
    all.iter()
        .filter(|a| a.kind == "flood" && a.status == "ended" && a.source_count == 1)
        .count()
}

#[test]
fn dns_reflection_on_one_host() {
    // ~6,500 answers from port 53, each from its own resolver, 400-byte
    // payloads, 1,650 a second for 4 s.
    let evs = spread(6_580, 1_650, T0, |t, i| {
        udp_from(t, spoofed(1, i), "198.18.1.6", 53, 442)
    });
    let all = run(&evs);
    let a = ended_attacks(&all);
    assert_eq!(a.len(), 1, "{all:#?}");
    let a = a[0];
    assert_eq!(a.vector.as_deref(), Some("udp_reflection"));
    assert_eq!(a.reflector_port, Some(53));
    assert_eq!(a.targets.sample, ["198.18.1.6"]);
    assert_eq!(a.severity, 5);
    assert!(a.peak_pps.unwrap() >= 1_600, "{a:?}");
    assert!(a.peak_bps.unwrap() >= 5_000_000, "{a:?}");
    let off = (a.source_count as f64 - 6_580.0).abs() / 6_580.0;
    assert!(off < 0.1, "6,580 sources, estimated {}", a.source_count);
    assert!(
        a.summary
            .starts_with("198.18.1.6 was under UDP reflection (DNS, source port 53): peak 1,6"),
        "{}",
        a.summary
    );
    assert!(time_to_detect(&all, T0) <= 2.0);
    assert_eq!(per_source_floods(&all), 0);
}

#[test]
fn reflection_needs_many_reflectors() {
    // The same rate from five resolvers is not reflection.
    let evs = spread(6_580, 1_650, T0, |t, i| {
        udp_from(t, spoofed(2, i % 5), "198.18.1.6", 53, 442)
    });
    let all = run(&evs);
    assert!(attacks(&all).is_empty(), "{all:#?}");
}

#[test]
fn ntp_and_memcached_reflection_and_an_ack_flood() {
    for (sport, len, vector) in [
        (123u16, 510u16, "udp_reflection"),
        (11211, 1_442, "udp_reflection"),
    ] {
        let evs = spread(7_500, 1_500, T0, |t, i| {
            udp_from(t, spoofed(3, i % 400), "198.18.1.7", sport, len)
        });
        let all = run(&evs);
        let a = ended_attacks(&all);
        assert_eq!(a.len(), 1, "{sport}: {all:#?}");
        assert_eq!(a[0].vector.as_deref(), Some(vector));
        assert_eq!(a[0].reflector_port, Some(sport));
    }
    let evs = spread(7_500, 1_500, T0, |t, i| {
        let mut r = ev(t, "192.0.2.1", "198.18.1.8", 6, 443, 0x10);
        r.src = Some(spoofed(4, i));
        r
    });
    let all = run(&evs);
    let a = ended_attacks(&all);
    assert_eq!(a.len(), 1, "{all:#?}");
    assert_eq!(a[0].vector.as_deref(), Some("ack"));
    assert!(a[0].summary.contains("TCP ACK flood"), "{}", a[0].summary);
    assert_eq!(per_source_floods(&all), 0);
}

#[test]
fn a_spoofed_syn_flood_with_ecn_flags_at_a_low_rate() {
    // DOMINATE: SYN|ECE|CWR from 9,697 sources to one port, ~290 a second.
    let evs = spread(9_697, 290, T0, |t, i| {
        let mut r = ev(t, "192.0.2.1", "198.18.1.9", 6, 80, 0xc2);
        r.src = Some(spoofed(5, i));
        r
    });
    let all = run(&evs);
    let a = ended_attacks(&all);
    assert_eq!(a.len(), 1, "{all:#?}");
    assert_eq!(a[0].vector.as_deref(), Some("syn"));
    assert_eq!(a[0].targets.sample, ["198.18.1.9"]);
    assert_eq!(a[0].ports.sample, [80]);
    assert!(all.iter().all(|a| a.kind != "backscatter"), "{all:#?}");
    assert_eq!(per_source_floods(&all), 0);
}

#[test]
fn a_syn_burst_shorter_than_a_second_is_a_flood() {
    // 5,870 SYNs to one port of one host in 0.19 s.
    let evs: Vec<Record> = (0..5_870)
        .map(|i| {
            ev(
                T0 + i * 190 * MS / 5_870,
                "203.0.113.5",
                "198.18.1.10",
                6,
                443,
                0x02,
            )
        })
        .collect();
    let all = run(&evs);
    let f: Vec<&Alert> = all
        .iter()
        .filter(|a| a.kind == "flood" && a.status == "ended")
        .collect();
    assert_eq!(f.len(), 1, "{all:#?}");
    assert_eq!(f[0].sources, ["203.0.113.5"]);
    assert_eq!(f[0].targets.sample, ["198.18.1.10"]);
    assert_eq!(f[0].ports.sample, [443]);
    assert!(f[0].summary.contains("198.18.1.10"), "{}", f[0].summary);
    assert!(
        attacks(&all).is_empty(),
        "one source is a flood, not an attack of many: {all:#?}"
    );
    // Below the burst: nothing.
    let all = run(&evs[..1_500]);
    assert!(all.iter().all(|a| a.kind != "flood"), "{all:#?}");
}

/// Aggregates as the kernel sends them past its limits: one per source
/// /24 and second, to one host.
fn aggregate(
    sec: i64,
    src: IpAddr,
    dst: &str,
    proto: u8,
    count: u32,
    len: u16,
    frag: bool,
) -> Record {
    let mut r = ev(T0 + sec * S, "192.0.2.1", dst, proto, 0, 0);
    let IpAddr::V4(v4) = src else { unreachable!() };
    let o = v4.octets();
    r.src = Some(IpAddr::from([o[0], o[1], o[2], 0]));
    r.count = count;
    r.len = len;
    r.sport = 0;
    r.pkt_flags = PKT_AGGREGATE | if frag { PKT_FRAGMENT } else { 0 };
    r.icmp_type = if proto == 1 { 8 } else { 0 };
    r
}

#[test]
fn spoofed_fragment_and_icmp_floods_are_one_attack_on_their_victim() {
    for (proto, frag, vector) in [(17u8, true, "fragment"), (1, false, "icmp")] {
        // ~2,000 a second for 4 s from random sources: mostly aggregates of
        // one packet each, a few events first.
        let mut evs = Vec::new();
        for i in 0..200u32 {
            let mut r = ev(T0 + i as i64 * MS, "192.0.2.1", "198.18.1.11", proto, 0, 0);
            r.src = Some(spoofed(6, i));
            r.pkt_flags = if frag { PKT_FRAGMENT } else { 0 };
            r.icmp_type = if proto == 1 { 8 } else { 0 };
            r.len = 1_200;
            evs.push(r);
        }
        for sec in 0..4i64 {
            for i in 0..1_900u32 {
                evs.push(aggregate(
                    sec,
                    spoofed(7, sec as u32 * 10_000 + i),
                    "198.18.1.11",
                    proto,
                    1,
                    1_200,
                    frag,
                ));
            }
        }
        evs.sort_by_key(|r| r.ts_ns);
        let all = run(&evs);
        let a = ended_attacks(&all);
        assert_eq!(a.len(), 1, "{vector}: {all:#?}");
        assert_eq!(a[0].vector.as_deref(), Some(vector));
        assert_eq!(a[0].targets.sample, ["198.18.1.11"]);
        assert!(a[0].probes >= 7_600, "every packet counted: {:?}", a[0]);
        assert_eq!(
            per_source_floods(&all),
            0,
            "no spoofed address is a flooder: {all:#?}"
        );
        assert!(
            all.iter().all(|x| x.kind != "flood"),
            "one shape, one alert: {all:#?}"
        );
    }
}

#[test]
fn carpet_bombing_of_a_prefix() {
    // 256 hosts of a /24, each 20 packets a second from many sources: no
    // host is attacked alone, the /24 is.
    let mut evs = Vec::new();
    for s in 0..5i64 {
        for k in 0..20 {
            for h in 0..256u32 {
                let mut r = udp_from(
                    T0 + s * S + k * 50 * MS + h as i64 * 10_000,
                    spoofed(8, (s as u32 * 20 + k as u32) * 256 + h),
                    &format!("198.18.3.{h}"),
                    40_000,
                    500,
                );
                r.dport = 5_000;
                evs.push(r);
            }
        }
    }
    let all = run(&evs);
    let host = ended_attacks(&all);
    assert!(host.is_empty(), "{host:#?}");
    let pfx: Vec<&Alert> = all
        .iter()
        .filter(|a| a.kind == "ddos" && a.status == "ended" && a.prefix_len == Some(24))
        .collect();
    assert_eq!(pfx.len(), 1, "{all:#?}");
    assert!(
        pfx[0].summary.starts_with("198.18.3.0/24 (256 hosts)"),
        "{}",
        pfx[0].summary
    );
}

#[test]
fn backscatter_stays_backscatter_until_it_is_an_attack() {
    // A few SYN-ACKs from 60 victims of a spoofed attack elsewhere.
    let evs: Vec<Record> = (0..300)
        .map(|i| {
            let mut r = ev(
                T0 + i * 100 * MS,
                "192.0.2.1",
                "198.18.1.99",
                6,
                1_024 + i as u16,
                0x12,
            );
            r.src = Some(spoofed(9, i as u32 % 60));
            r.sport = 443;
            r
        })
        .collect();
    let all = run(&evs);
    assert!(all.iter().any(|a| a.kind == "backscatter"), "{all:#?}");
    assert!(attacks(&all).is_empty(), "{all:#?}");
    // SYN-ACKs at 5,000 a second from 500 reflectors: an attack on us,
    // and said to be backscatter at an attack's rate.
    let evs = spread(25_000, 5_000, T0, |t, i| {
        let mut r = ev(
            t,
            "192.0.2.1",
            "198.18.1.99",
            6,
            1_024 + (i % 60_000) as u16,
            0x12,
        );
        r.src = Some(spoofed(10, i % 500));
        r.sport = 80;
        r
    });
    let all = run(&evs);
    let a = ended_attacks(&all);
    assert_eq!(a.len(), 1, "{all:#?}");
    assert_eq!(a[0].vector.as_deref(), Some("syn_ack"));
    assert!(a[0].summary.contains("backscatter"), "{}", a[0].summary);
}

#[test]
fn quiet_traffic_is_no_attack() {
    // An unpublished port's background: 5 SYNs a second from ever new
    // sources for an hour, far below every floor.
    let evs = spread(18_000, 5, T0, |t, i| {
        let mut r = ev(t, "192.0.2.1", "198.18.1.20", 6, 8080, 0x02);
        r.src = Some(spoofed(11, i));
        r
    });
    let all = run(&evs);
    assert!(attacks(&all).is_empty());
    // A busy destination's steady rate, learnt: with the floor lowered to
    // 50 a second, a steady 80 a second from many sources is an attack only
    // at its start, before the baseline knows it; a rise to 5 times it is
    // one again.
    let cfg = DetectConfig {
        ddos_min_pps: 50,
        ddos_baseline_s: 600,
        ..DetectConfig::default()
    };
    let mut evs = spread(80 * 7_200, 80, T0, |t, i| {
        let mut r = ev(t, "192.0.2.1", "198.18.1.21", 6, 25, 0x02);
        r.src = Some(spoofed(12, i % 5_000));
        r
    });
    let late: Vec<Alert> = run_with(cfg.clone(), &evs)
        .into_iter()
        .filter(|a| a.kind == "ddos" && parse_rfc3339_ns(&a.first_seen).unwrap() > T0 + 3_600 * S)
        .collect();
    assert!(
        late.is_empty(),
        "a steady rate is not an attack once known: {late:#?}"
    );
    let t1 = T0 + 7_200 * S;
    evs.extend(spread(400 * 20, 400, t1, |t, i| {
        let mut r = ev(t, "192.0.2.1", "198.18.1.21", 6, 25, 0x02);
        r.src = Some(spoofed(13, i));
        r
    }));
    let all = run_with(cfg, &evs);
    assert!(
        all.iter()
            .any(|a| a.kind == "ddos" && parse_rfc3339_ns(&a.first_seen).unwrap() >= t1 - S),
        "four times the steady rate is an attack"
    );
}

#[test]
fn only_unsolicited_events_count() {
    let evs = spread(8_000, 2_000, T0, |t, i| {
        let mut r = udp_from(t, spoofed(14, i), "198.18.1.30", 53, 200);
        r.class = fireplot_common::event::Class::Malformed as u8;
        r
    });
    assert!(attacks(&run(&evs)).is_empty());
}

#[test]
fn the_surge_tests_background_raises_no_attack() {
    // Four days of internet background to two /24s, as the surge tests
    // use: at most a few probes a second anywhere.
    let mut evs = Vec::new();
    let mut x = 0x2545_F491_4F6C_DD1Du64;
    for i in 0..400_000i64 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let dst = format!("198.18.{}.{}", 1 + (x >> 8) % 2, 1 + (x >> 16) % 250);
        let src = format!(
            "{}.{}.{}.{}",
            20 + (x >> 24) % 100,
            (x >> 32) % 256,
            (x >> 40) % 256,
            1 + (x >> 48) % 250
        );
        evs.push(ev(
            T0 + i * 864 * MS,
            &src,
            &dst,
            6,
            1000 + ((x >> 56) % 200) as u16,
            0x02,
        ));
    }
    let all = run(&evs);
    assert!(attacks(&all).is_empty(), "{:#?}", attacks(&all));
    let _ = ip("198.18.1.1");
}
