//! Episodes, actors and announcements on a honeypot-shaped half year:
//! many one- to three-probe sources, persistent scanners returning daily
//! at their own paces, two slow scanners of one host over days, floods.
//! What sinks announce (`started`) is at most one per actor and UTC day
//! unless the severity rises; slow scans are one episode; floods and broad
//! scans are still announced; the store (every record) keeps every episode.

use std::collections::{BTreeMap, BTreeSet};

use super::{
    tests::{ev, run, S, T0},
    tests_pace::Rng,
    Alert,
};
use crate::record::{parse_rfc3339_ns, Record};

const H: i64 = 3600 * S;
const DAY: i64 = 24 * H;

fn honeypot(i: u64) -> String {
    format!("198.18.2.{}", 1 + i % 9)
}

/// What the half year holds, and who is in it.
struct HalfYear {
    evs: Vec<Record>,
    persistent: Vec<String>,
    slow: [String; 2],
    flooders: Vec<String>,
    broad: Vec<String>,
}

/// The half year.
fn half_year(days: i64) -> HalfYear {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut evs = Vec::new();
    let common = [
        22u16, 23, 80, 443, 445, 3389, 8080, 5060, 1433, 3306, 6379, 8443,
    ];
    let persistent: Vec<String> = (0..100)
        .map(|i| format!("45.{}.0.{}", i / 200, 1 + i % 200))
        .collect();
    let broad: Vec<String> = (0..3).map(|i| format!("89.0.0.{}", 1 + i)).collect();
    let mut n = 0u64;
    for d in 0..days {
        let day0 = T0 - T0.rem_euclid(DAY) + d * DAY;
        // Background: 300 sources a day, one to three probes each.
        for _ in 0..300 {
            n += 1;
            let src = format!(
                "{}.{}.{}.{}",
                60 + n / 65_536 % 100,
                n / 256 % 256,
                n % 256,
                1 + n % 7
            );
            let probes = 1 + rng.below(3);
            let t = day0 + rng.below(DAY as u64 - H as u64) as i64;
            for k in 0..probes {
                let port = common[rng.below(common.len() as u64) as usize];
                evs.push(ev(
                    t + k as i64 * 3 * S,
                    &src,
                    &honeypot(rng.below(9)),
                    6,
                    port,
                    0x02,
                ));
            }
        }
        // Persistent scanners: most days, one to three visits a few hours
        // apart, 8 to 30 ports of one honeypot at their own pace.
        for (i, src) in persistent.iter().enumerate() {
            if rng.below(10) < 3 {
                continue;
            }
            let visits = 1 + rng.below(3);
            let pace = [50 * 1_000_000, S, 20 * S][i % 3];
            for v in 0..visits {
                let t = day0 + v as i64 * 6 * H + rng.below(4 * H as u64) as i64;
                let ports = 8 + rng.below(23);
                let host = honeypot(rng.below(9));
                for k in 0..ports {
                    let port = 1 + rng.below(65_000) as u16;
                    evs.push(ev(t + k as i64 * pace, src, &host, 6, port, 0x02));
                }
            }
        }
        // Broad scanners: 200 ports of one honeypot on some days.
        if d % 7 == 3 {
            for (i, src) in broad.iter().enumerate() {
                let t = day0 + (10 + i as i64) * H;
                for k in 0..200u16 {
                    evs.push(ev(
                        t + k as i64 * 10 * 1_000_000,
                        src,
                        &honeypot(i as u64),
                        6,
                        1000 + k,
                        0x02,
                    ));
                }
            }
        }
    }
    // Two slow scanners of one host: every 30 minutes for three days, and
    // every two hours for five days.
    let slow = ["77.0.0.1".to_string(), "77.0.0.2".to_string()];
    for k in 0..144 {
        evs.push(ev(
            T0 + 20 * DAY + k * 30 * 60 * S,
            &slow[0],
            "198.18.2.5",
            6,
            2000 + k as u16,
            0x02,
        ));
    }
    for k in 0..60 {
        evs.push(ev(
            T0 + 40 * DAY + k * 2 * H,
            &slow[1],
            "198.18.2.6",
            6,
            3000 + k as u16,
            0x02,
        ));
    }
    // Two floods.
    let flooders = vec!["66.0.0.1".to_string(), "66.0.0.2".to_string()];
    for (f, src) in flooders.iter().enumerate() {
        let t = T0 + (60 + 30 * f as i64) * DAY + 5 * H;
        for k in 0..25_000 {
            evs.push(ev(t + k * 30_000, src, "198.18.2.7", 6, 80, 0x02));
        }
    }
    evs.sort_by_key(|r| r.ts_ns);
    HalfYear {
        evs,
        persistent,
        slow,
        flooders,
        broad,
    }
}

fn day_of(a: &Alert) -> i64 {
    parse_rfc3339_ns(&a.last_seen).unwrap_or(0).div_euclid(DAY)
}

#[test]
fn a_half_year_of_honeypot_traffic_is_announced_once_per_actor_and_day() {
    let HalfYear {
        evs,
        persistent,
        slow,
        flooders,
        broad,
    } = half_year(180);
    if let Some(path) = std::env::var_os("FIREPLOT_DUMP_HALF_YEAR") {
        // For comparing engines on the same stream (`fireplot detect --events`).
        use std::io::Write as _;
        let mut f = std::io::BufWriter::new(std::fs::File::create(path).expect("dump file"));
        for r in &evs {
            writeln!(f, "{}", r.to_json_record().to_json()).expect("dump");
        }
    }
    let all = run(&evs);
    // At most one `started` per (source, kind, day), unless severity rose.
    let mut by_actor_day: BTreeMap<(String, String, i64), Vec<u8>> = BTreeMap::new();
    for a in all
        .iter()
        .filter(|a| a.status == "started" && a.sources.len() == 1)
    {
        by_actor_day
            .entry((a.sources[0].clone(), a.kind.clone(), day_of(a)))
            .or_default()
            .push(a.severity);
    }
    for ((src, kind, day), sev) in &by_actor_day {
        assert!(
            sev.windows(2).all(|w| w[1] > w[0]),
            "{src} {kind} day {day}: announced at severities {sev:?}"
        );
    }
    // Every episode is kept: one `ended` record each, and the persistent
    // scanners' visits are many more episodes than announcements.
    let episodes: BTreeSet<u64> = all.iter().map(|a| a.id).collect();
    let ended = all.iter().filter(|a| a.status == "ended").count();
    assert_eq!(episodes.len(), ended, "every episode ends once");
    let announced = all.iter().filter(|a| a.status == "started").count();
    let persistent_eps = all
        .iter()
        .filter(|a| a.status == "ended" && persistent.contains(&a.sources[0]))
        .count();
    let persistent_ann = all
        .iter()
        .filter(|a| a.status == "started" && persistent.contains(&a.sources[0]))
        .count();
    assert!(
        persistent_ann * 3 < persistent_eps * 2,
        "persistent scanners: {persistent_ann} announcements for {persistent_eps} episodes"
    );
    eprintln!(
        "half year: {} events, {} episodes, {announced} announced ({} a day), persistent {persistent_ann}/{persistent_eps}",
        evs.len(),
        episodes.len(),
        announced as f64 / 180.0
    );
    // A later episode of a known actor says so.
    let recurring = all
        .iter()
        .filter(|a| a.actor.as_ref().is_some_and(|x| x.episodes > 1))
        .count();
    assert!(recurring > 0, "no record names a recurring actor");
    // Each slow scanner is one episode.
    for s in &slow {
        let eps: BTreeSet<u64> = all
            .iter()
            .filter(|a| a.kind == "port_scan" && a.sources == [s.clone()])
            .map(|a| a.id)
            .collect();
        assert_eq!(eps.len(), 1, "{s}: {eps:?}");
    }
    // Floods and broad scans are announced every time.
    for f in &flooders {
        assert!(
            all.iter()
                .any(|a| a.status == "started" && a.kind == "flood" && a.sources == [f.clone()]),
            "{f}'s flood is not announced"
        );
    }
    for b in &broad {
        let scans: BTreeSet<i64> = all
            .iter()
            .filter(|a| {
                a.status == "ended"
                    && a.kind == "port_scan"
                    && a.sources == [b.clone()]
                    && a.ports.count >= 100
            })
            .map(day_of)
            .collect();
        let announced_days: BTreeSet<i64> = all
            .iter()
            .filter(|a| a.status == "started" && a.kind == "port_scan" && a.sources == [b.clone()])
            .map(day_of)
            .collect();
        assert!(!scans.is_empty());
        assert!(
            scans.is_subset(&announced_days),
            "{b}: {scans:?} vs {announced_days:?}"
        );
    }
    // Severity 4 or more is rare enough to read every one.
    let high = all
        .iter()
        .filter(|a| a.status == "started" && a.severity >= 4)
        .count();
    assert!(high <= 10, "{high} announcements at severity 4 or 5");
}

#[test]
fn a_scan_of_five_ports_is_never_above_two() {
    let mut evs = Vec::new();
    // Five ports, probed again and again over two days.
    for k in 0..500 {
        evs.push(ev(
            T0 + k * 5 * 60 * S,
            "192.0.2.9",
            "198.18.2.3",
            6,
            20 + (k % 5) as u16,
            0x02,
        ));
    }
    for k in 0..5 {
        evs.push(ev(
            T0 + 3 * DAY + k * S,
            "192.0.2.9",
            "198.18.2.4",
            6,
            20 + k as u16,
            0x02,
        ));
    }
    let all = run(&evs);
    assert!(
        all.iter().all(|a| a.severity <= 2 || a.kind == "flood"),
        "{all:#?}"
    );
}

#[test]
fn an_ended_episode_is_not_reopened_by_what_it_reported() {
    let mut evs = Vec::new();
    // A 10-port scan, a pause longer than its pace, then one more probe.
    for k in 0..10 {
        evs.push(ev(
            T0 + k * 100 * 1_000_000,
            "192.0.2.10",
            "198.18.2.3",
            6,
            100 + k as u16,
            0x02,
        ));
    }
    evs.push(ev(T0 + 2 * H, "192.0.2.10", "198.18.2.3", 6, 111, 0x02));
    let all = run(&evs);
    let ids: BTreeSet<u64> = all.iter().map(|a| a.id).collect();
    assert_eq!(
        ids.len(),
        1,
        "one probe after the end is no new episode: {all:#?}"
    );
}
