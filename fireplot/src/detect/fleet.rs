//! fleet_campaign: one source seen by many sensors of a fleet — the same
//! scanner sweeping every site is one campaign, not a hundred small scans.
//! Runs over a fleet's merged history (`detect --postgres`), in event time
//! across sensors: a source's probes form one campaign while no gap
//! between them exceeds `fleet_window_s`; a campaign seen by at least
//! `fleet_sensors` sensors is reported when it ends.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap, HashSet},
    net::IpAddr,
};

use super::{
    alert::{Alert, Ports, Targets},
    config::DetectConfig,
    words::{human_secs, severity, thousands},
};
use crate::record::{line::rfc3339_ns, Record};

/// Distinct targets and ports kept per campaign (counts go on past it).
const CAP: usize = 4096;

struct Track {
    first_ns: i64,
    last_ns: i64,
    probes: u64,
    per_sensor: BTreeMap<String, u64>,
    ports: BTreeSet<(u8, u16)>,
    targets: HashSet<IpAddr>,
    flags: u8,
}

/// The campaigns in progress.
pub struct Campaigns {
    min_sensors: usize,
    window_ns: i64,
    next_id: u64,
    tracks: HashMap<IpAddr, Track>,
    out: Vec<Alert>,
    /// Time of the last sweep for ended campaigns.
    swept_ns: i64,
}

impl Campaigns {
    pub fn new(cfg: &DetectConfig) -> Campaigns {
        Campaigns {
            min_sensors: cfg.fleet_sensors as usize,
            window_ns: (cfg.fleet_window_s as i64).saturating_mul(1_000_000_000),
            next_id: 1,
            tracks: HashMap::new(),
            out: Vec::new(),
            swept_ns: i64::MIN,
        }
    }

    /// One record of the merged stream, and the sensor that saw it.
    pub fn push(&mut self, r: &Record, sensor: &str) {
        let Some(src) = r.src else { return };
        // Campaigns whose source has been quiet for a window are over.
        if r.ts_ns.saturating_sub(self.swept_ns) > self.window_ns / 16 {
            self.swept_ns = r.ts_ns;
            let over: Vec<IpAddr> = self
                .tracks
                .iter()
                .filter(|(_, t)| r.ts_ns.saturating_sub(t.last_ns) > self.window_ns)
                .map(|(a, _)| *a)
                .collect();
            for a in over {
                let t = self.tracks.remove(&a).expect("listed");
                self.close(a, t);
            }
        }
        if let Some(t) = self.tracks.get(&src) {
            if r.ts_ns.saturating_sub(t.last_ns) > self.window_ns {
                let t = self.tracks.remove(&src).expect("present");
                self.close(src, t);
            }
        }
        let t = self.tracks.entry(src).or_insert_with(|| Track {
            first_ns: r.ts_ns,
            last_ns: r.ts_ns,
            probes: 0,
            per_sensor: BTreeMap::new(),
            ports: BTreeSet::new(),
            targets: HashSet::new(),
            flags: 0,
        });
        let n = u64::from(r.count);
        t.last_ns = t.last_ns.max(r.ts_ns);
        t.probes += n;
        match t.per_sensor.get_mut(sensor) {
            Some(c) => *c += n,
            None => {
                t.per_sensor.insert(sensor.to_string(), n);
            }
        }
        if t.ports.len() < CAP {
            t.ports
                .insert((r.proto, if r.has_ports() { r.dport } else { 0 }));
        }
        if let (Some(d), true) = (r.dst, t.targets.len() < CAP) {
            t.targets.insert(d);
        }
        if r.proto == 6 {
            t.flags |= r.tcp_flags;
        }
    }

    fn close(&mut self, src: IpAddr, t: Track) {
        if t.per_sensor.len() < self.min_sensors {
            return;
        }
        let id = self.next_id;
        self.next_id += 1;
        let protos: BTreeSet<u8> = t.ports.iter().map(|p| p.0).collect();
        let proto = match (protos.len(), protos.first()) {
            (1, Some(6)) => "tcp",
            (1, Some(17)) => "udp",
            (1, Some(1)) => "icmp",
            (1, Some(58)) => "icmpv6",
            _ => "mixed",
        };
        let port_list: Vec<u16> = t.ports.iter().filter(|p| p.1 > 0).map(|p| p.1).collect();
        let upper = proto.to_uppercase();
        let on = match (port_list.len(), proto) {
            (1, "tcp" | "udp") => format!("on {upper}/{}", port_list[0]),
            (0, _) => format!(
                "with {}",
                if proto == "mixed" {
                    "several protocols".into()
                } else {
                    upper.clone()
                }
            ),
            (n, "tcp" | "udp") => format!("on {} {upper} ports", thousands(n as u64)),
            (n, _) => format!("on {} ports", thousands(n as u64)),
        };
        let dur_s = (t.last_ns - t.first_ns) as f64 / 1e9;
        let names: Vec<String> = t.per_sensor.keys().cloned().collect();
        let listed = if names.len() <= 6 {
            format!(" ({})", names.join(", "))
        } else {
            format!(" ({}, …)", names[..5].join(", "))
        };
        let summary = format!(
            "{src} swept {} sensors{listed} {on} in {}: {} probe{} to {} host{}",
            names.len(),
            human_secs(dur_s),
            thousands(t.probes),
            if t.probes == 1 { "" } else { "s" },
            thousands(t.targets.len() as u64),
            if t.targets.len() == 1 { "" } else { "s" },
        );
        let mut sample: Vec<String> = t.targets.iter().map(|a| a.to_string()).collect();
        sample.sort();
        sample.truncate(10);
        let breadth = (t.targets.len() as u64).max(port_list.len() as u64);
        self.out.push(Alert {
            id,
            status: "ended".into(),
            kind: "fleet_campaign".into(),
            first_seen: rfc3339_ns(t.first_ns as i128),
            last_seen: rfc3339_ns(t.last_ns as i128),
            sources: vec![src.to_string()],
            source_count: 1,
            targets: Targets {
                count: t.targets.len() as u64,
                sample,
            },
            proto: proto.into(),
            ports: Ports {
                count: port_list.len() as u64,
                min: port_list.first().copied(),
                max: port_list.last().copied(),
                sample: port_list.iter().take(20).copied().collect(),
            },
            probes: t.probes,
            rate_pps: ((t.probes as f64 / dur_s.max(1e-3)) * 10.0).round() / 10.0,
            flags: if t.flags != 0 {
                crate::record::line::flags_string(t.flags)
            } else {
                String::new()
            },
            // A fleet-wide campaign is at least as grave as a scan of one site.
            severity: severity(t.probes, breadth, dur_s).max(2),
            speed: String::new(),
            order: String::new(),
            summary,
            sensors: Some(names),
            per_sensor: Some(t.per_sensor),
            ..Default::default()
        });
    }

    /// The campaigns that ended so far.
    pub fn drain(&mut self) -> Vec<Alert> {
        std::mem::take(&mut self.out)
    }

    /// At the end of the input: every campaign in progress ends.
    pub fn finish(&mut self) -> Vec<Alert> {
        let mut all: Vec<(IpAddr, Track)> = self.tracks.drain().collect();
        all.sort_by_key(|(a, t)| (t.first_ns, *a));
        for (a, t) in all {
            self.close(a, t);
        }
        self.drain()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_800_000_000_000_000_000;
    const S: i64 = 1_000_000_000;

    fn probe(ts: i64, src: &str, dst: &str, port: u16) -> Record {
        Record::probe(ts, src.parse().unwrap(), dst.parse().unwrap(), 6, port)
    }

    fn campaigns() -> Campaigns {
        Campaigns::new(&DetectConfig::default())
    }

    #[test]
    fn one_source_across_three_sensors_is_one_campaign() {
        let mut c = campaigns();
        for (i, s) in ["r1", "r2", "r3"].iter().enumerate() {
            for h in 0..16 {
                let ts = T0 + (i as i64 * 16 + h) * 5 * S;
                c.push(
                    &probe(
                        ts,
                        "198.51.100.7",
                        &format!("192.0.2.{}", 16 * i as i64 + h),
                        23,
                    ),
                    s,
                );
            }
        }
        // Another source seen by two sensors only: not a fleet campaign.
        c.push(&probe(T0, "203.0.113.9", "192.0.2.1", 22), "r1");
        c.push(&probe(T0 + S, "203.0.113.9", "192.0.2.2", 22), "r2");
        let a = c.finish();
        assert_eq!(a.len(), 1, "{a:?}");
        let a = &a[0];
        assert_eq!(a.kind, "fleet_campaign");
        assert_eq!(a.sources, ["198.51.100.7"]);
        assert_eq!(
            a.sensors.as_deref(),
            Some(&["r1".to_string(), "r2".into(), "r3".into()][..])
        );
        assert_eq!(a.probes, 48);
        assert_eq!(a.targets.count, 48);
        assert_eq!(a.proto, "tcp");
        assert_eq!(a.ports.sample, [23]);
        assert_eq!(a.flags, "SYN");
        assert!(
            a.summary
                .starts_with("198.51.100.7 swept 3 sensors (r1, r2, r3) on TCP/23 in 3.9 min"),
            "{}",
            a.summary
        );
        assert_eq!(a.per_sensor.as_ref().unwrap()["r2"], 16);
    }

    #[test]
    fn a_gap_longer_than_the_window_splits_campaigns() {
        let mut c = campaigns();
        let window = DetectConfig::default().fleet_window_s as i64 * S;
        c.push(&probe(T0, "198.51.100.7", "192.0.2.1", 23), "r1");
        c.push(&probe(T0 + S, "198.51.100.7", "192.0.2.2", 23), "r2");
        // Three sensors in all, but the third long after: two campaigns of
        // too few sensors each, so nothing.
        c.push(
            &probe(T0 + window + 2 * S, "198.51.100.7", "192.0.2.3", 23),
            "r3",
        );
        assert!(c.finish().is_empty());
        // Within the window: one.
        let mut c = campaigns();
        for (i, s) in ["r1", "r2", "r3"].iter().enumerate() {
            c.push(
                &probe(
                    T0 + i as i64 * (window / 2),
                    "198.51.100.7",
                    "192.0.2.1",
                    80,
                ),
                s,
            );
        }
        // A later record of another source closes it (its window passed).
        c.push(
            &probe(T0 + 3 * window, "203.0.113.1", "192.0.2.1", 80),
            "r1",
        );
        let a = c.drain();
        assert_eq!(a.len(), 1);
        assert!(a[0].summary.contains("on TCP/80"), "{}", a[0].summary);
    }
}
