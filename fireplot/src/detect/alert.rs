//! Alert JSON lines (DESIGN §5): `kind`, `first_seen`, `last_seen`,
//! `sources`, `targets`, `proto`, `ports`, `probes`, `rate_pps`, `flags`,
//! `severity`, `summary`, plus `id`, `status` (`started` when a threshold is
//! crossed, `ended` with totals when the episode has gone idle), `speed`,
//! `order` and per-kind fields; and how an episode is said: its record and
//! its one-sentence summary.

use serde::{Deserialize, Serialize};

use super::words::per_day;
pub use super::words::{human_secs, severity, thousands};
use super::{
    config::DetectConfig,
    episode::{Episode, Key, Kind},
    probe::{addr, FlagType},
    surge::SurgeTest,
};
use crate::record::line::{flags_string, rfc3339_ns, Proto};

/// Target addresses: how many, and a few of them.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Targets {
    pub count: u64,
    pub sample: Vec<String>,
}

/// Destination ports: how many distinct, the range, and a few of them.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Ports {
    pub count: u64,
    pub min: Option<u16>,
    pub max: Option<u16>,
    pub sample: Vec<u16>,
}

/// One alert record.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    /// Episode number; the `started` and `ended` records of one episode share it.
    pub id: u64,
    pub status: String,
    pub kind: String,
    pub first_seen: String,
    pub last_seen: String,
    pub sources: Vec<String>,
    /// Distinct sources (the list may be a sample).
    pub source_count: u64,
    pub targets: Targets,
    pub proto: String,
    pub ports: Ports,
    pub probes: u64,
    pub rate_pps: f64,
    /// TCP flags of the probes ("SYN", "FIN|PSH|URG"; "" when not TCP).
    pub flags: String,
    /// 1 (least) to 5, growing with probes, breadth and duration.
    pub severity: u8,
    pub speed: String,
    pub order: String,
    pub summary: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub synchronized: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lag_ms: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flag_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocols: Option<Vec<u8>>,
    /// port_surge: the port's rate before the surge, new sources per day.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline: Option<f64>,
    /// port_surge: the horizon (seconds) where the rise was most significant,
    /// the new sources within it, and log10 of its probability.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub horizon_s: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub horizon_sources: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log10_p: Option<f64>,
    /// Of `probes`, packets the kernel counted in aggregates instead of
    /// sending them one by one (a flood past its limits).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aggregated: Option<u64>,
    /// flood by hammering: packets to the one target port, and over how
    /// many seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_s: Option<f64>,
    /// backscatter: `many_sources` (our address is spoofed elsewhere) or
    /// `one_victim` (one victim of a spoofed flood answers many of ours).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shape: Option<String>,
    /// flag_scan: the distinct odd flag combinations seen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub combos: Option<Vec<String>>,
    /// Per-source kinds: the scanner whose signature the probes carry
    /// (zmap, masscan, mirai, nmap, hping3), or `unknown`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool: Option<String>,
    /// Who the listed sources are (with --geoip, --asn, --tag): one entry
    /// per source of `sources` that anything is known of.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origins: Option<Vec<super::origins::SourceOrigin>>,
    /// Episodes of many sources: their networks, most sources first (up
    /// to 5), over every source of the episode, not only those listed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub asns: Option<Vec<super::origins::Share>>,
    /// ...and their countries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub countries: Option<Vec<super::origins::Share>>,
    /// fleet_campaign: the sensors that saw the source, and its probes at
    /// each.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sensors: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_sensor: Option<std::collections::BTreeMap<String, u64>>,
}

impl Alert {
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("alerts serialize")
    }
}

/// How an episode is said: its alert record and its one-sentence summary.
impl Episode {
    fn speed(&self, fast_max_interval_s: f64) -> &'static str {
        if self.probes < 2 || self.duration_s() / (self.probes - 1) as f64 <= fast_max_interval_s {
            "fast"
        } else {
            "slow"
        }
    }

    fn protocol_list(&self) -> Vec<u8> {
        let Some(bits) = self.protocols else {
            return Vec::new();
        };
        (0..=255u8)
            .filter(|p| bits[(p >> 6) as usize] & (1u64 << (p & 63)) != 0)
            .collect()
    }

    /// The alert record of this episode now.
    pub fn alert(&self, status: &str, cfg: &DetectConfig) -> Alert {
        let fast_max_interval_s = cfg.fast_max_interval_s;
        let proto_name = match Proto::from_number(self.proto) {
            Proto::Name(n) => n,
            Proto::Number(n) => n.to_string(),
        };
        let dur = self.duration_s();
        let rate = self.probes as f64 / dur.max(0.001);
        let breadth = self.ports.len().max(self.targets.count() as u32) as u64;
        let hammering = self.kind == Kind::Flood
            && self.run.is_some()
            && self.peak_pps < u64::from(cfg.flood_pps);
        let sev = match self.kind {
            Kind::Flood if hammering => {
                let n = self.run.map_or(0, |r| r.count);
                cfg.hammer_levels.iter().filter(|l| n >= **l).count().max(1) as u8
            }
            Kind::Flood => match self.peak_pps {
                0..=49_999 => 3,
                50_000..=199_999 => 4,
                _ => 5,
            },
            Kind::PortSurge | Kind::Backscatter | Kind::DistributedScan => {
                severity(self.probes, self.sources.count().max(breadth), dur)
            }
            _ => severity(self.probes, breadth, dur),
        };
        let sources = self.sources.sorted(32);
        let speed = self.speed(fast_max_interval_s);
        let order = self.order.name();
        let summary = self.summary(
            status,
            &proto_name.to_uppercase(),
            dur,
            speed,
            order,
            hammering,
        );
        let per_source = matches!(
            self.kind,
            Kind::PortScan
                | Kind::PortSweep
                | Kind::FlagScan
                | Kind::ProtocolScan
                | Kind::Flood
                | Kind::DistributedScan
        );
        Alert {
            id: self.id,
            status: status.into(),
            kind: self.kind.name().into(),
            first_seen: rfc3339_ns(self.first_ns as i128),
            last_seen: rfc3339_ns(self.last_ns as i128),
            sources,
            source_count: self.sources.count(),
            targets: Targets {
                count: self.targets.count(),
                sample: self.targets.sample(),
            },
            proto: proto_name,
            ports: Ports {
                count: self.ports.len() as u64,
                min: self.port_min,
                max: self.port_max,
                sample: self.port_sample.clone(),
            },
            probes: self.probes,
            rate_pps: (rate * 10.0).round() / 10.0,
            flags: if self.proto == 6 {
                flags_string(self.flags)
            } else {
                String::new()
            },
            severity: sev,
            speed: speed.into(),
            order: order.into(),
            summary,
            synchronized: self.synchronized,
            lag_ms: self.lag_ms.map(|l| (l * 1000.0).round() / 1000.0),
            flag_type: self.flag_type.map(|f| f.name().to_string()),
            protocols: self.protocols.map(|_| self.protocol_list()),
            baseline: self.baseline.map(|b| (b * 100.0).round() / 100.0),
            horizon_s: self.surge.map(|t| t.horizon_s),
            horizon_sources: self.surge.map(|t| t.sources),
            log10_p: self.surge.map(|t| (t.log10_p * 10.0).round() / 10.0),
            aggregated: (self.aggregated > 0).then_some(self.aggregated),
            count: self.run.filter(|_| hammering).map(|r| r.count),
            window_s: self
                .run
                .filter(|_| hammering)
                .map(|r| ((r.last_ns - r.first_ns) as f64 / 1e8).round() / 10.0),
            shape: (self.kind == Kind::Backscatter).then(|| {
                if self.one_victim {
                    "one_victim"
                } else {
                    "many_sources"
                }
                .to_string()
            }),
            combos: self.combos.map(|c| combo_names(&c)),
            tool: per_source.then(|| {
                self.tools
                    .name(cfg.tool_min_probes, cfg.tool_min_share)
                    .to_string()
            }),
            origins: None,
            asns: None,
            countries: None,
            sensors: None,
            per_sensor: None,
        }
    }

    fn summary(
        &self,
        status: &str,
        proto: &str,
        dur: f64,
        speed: &str,
        order: &str,
        hammering: bool,
    ) -> String {
        let src = self.sources.sample().first().cloned().unwrap_or_default();
        let target = self.targets.sample().first().cloned().unwrap_or_default();
        let ports = thousands(self.ports.len() as u64);
        let targets = thousands(self.targets.count());
        let probes = thousands(self.probes);
        let took = human_secs(dur);
        let going = status == "started";
        match self.kind {
            Kind::PortScan if going => format!(
                "{src} is scanning {proto} ports of {target}: {ports} ports in {took} so far ({speed}, {order} order)"
            ),
            Kind::PortScan => format!(
                "{src} probed {ports} {proto} ports of {} in {took}, {order}{}",
                if self.targets.count() > 1 { format!("{targets} hosts (first {target})") } else { target },
                if speed == "slow" { ", slowly" } else { "" }
            ),
            Kind::PortSweep => {
                let list = self.port_sample.iter().map(|p| p.to_string()).collect::<Vec<_>>().join(", ");
                let on = if list.is_empty() { format!("with {proto}") } else { format!("on {proto} port{} {list}", if self.port_sample.len() > 1 { "s" } else { "" }) };
                if going {
                    format!("{src} is sweeping hosts {on}: {targets} hosts in {took} so far ({speed})")
                } else {
                    format!("{src} swept {targets} hosts {on} in {took}, {order} order")
                }
            }
            Kind::DistributedScan => {
                let n = self.sources.count();
                let who = self.sources.sorted(4).join(", ");
                let how = match (self.synchronized, self.lag_ms) {
                    (Some(true), Some(l)) => format!("in lockstep (lag {l:.1} ms): a decoy or coordinated scan"),
                    _ => "sharing the work".into(),
                };
                format!(
                    "{n} sources ({who}{}) {} {ports} {proto} ports of {target} {how}",
                    if n > 4 { ", ..." } else { "" },
                    if going { "are probing" } else { "probed" }
                )
            }
            Kind::FlagScan if self.combos.is_some_and(|c| combo_count(&c) > 1) => {
                let names = combo_names(&self.combos.unwrap_or_default());
                format!(
                    "{src} {} {} different odd TCP flag combinations ({}) to {ports} port{} of {target}: OS or firewall fingerprinting",
                    if going { "has sent" } else { "sent" },
                    names.len(),
                    names.iter().take(6).cloned().collect::<Vec<_>>().join(", ") + if names.len() > 6 { ", ..." } else { "" },
                    if self.ports.len() == 1 { "" } else { "s" }
                )
            }
            Kind::FlagScan => {
                let t = self.flag_type.map(FlagType::title).unwrap_or("odd-flag");
                let fl = flags_string(self.flags);
                format!(
                    "{src} {} {probes} {t} ({}) probes to {ports} TCP ports of {target} in {took}",
                    if going { "has sent" } else { "sent" },
                    if fl.is_empty() { "no flags".to_string() } else { fl }
                )
            }
            Kind::ProtocolScan => format!(
                "{src} {} {} IP protocols of {target} in {took}",
                if going { "is probing" } else { "probed" },
                self.protocol_list().len()
            ),
            Kind::PortSurge => {
                let port = self.port_sample.first().copied().unwrap_or(0);
                let t = self.surge.unwrap_or(SurgeTest {
                    horizon_s: 0,
                    sources: self.sources.count(),
                    baseline_per_day: 0.0,
                    log10_p: 0.0,
                });
                let base = per_day(t.baseline_per_day);
                if going {
                    format!(
                        "{proto}/{port}: {} distinct sources in {}, baseline {base}",
                        thousands(t.sources),
                        human_secs(t.horizon_s as f64)
                    )
                } else {
                    format!(
                        "{proto}/{port}: {} distinct sources in {took}, baseline {base}",
                        thousands(self.surge_before + self.sources.count()),
                    )
                }
            }
            Kind::Backscatter if self.one_victim => {
                let what = match (self.proto, self.flags & 0x14) {
                    (6, 0x10) => "SYN-ACKs",
                    (6, _) => "RSTs",
                    _ => "ICMP errors",
                };
                let from = match self.run {
                    Some(r) if r.port != 0 => format!(" from port {}", r.port),
                    _ => String::new(),
                };
                format!(
                    "{src} {} a spoofed flood: {probes} {what}{from} to {targets} of our addresses in {took}",
                    if going { "is answering" } else { "answered" }
                )
            }
            Kind::Flood if hammering => {
                let r = self.run.unwrap_or_default();
                let span = (r.last_ns - r.first_ns) as f64 / 1e9;
                format!(
                    "{src} {} {proto}/{} of {} with {} packets in {} ({:.1}/s)",
                    if going { "is hammering" } else { "hammered" },
                    r.port,
                    addr(r.dst),
                    thousands(r.count),
                    human_secs(span),
                    r.count as f64 / span.max(0.001)
                )
            }
            Kind::Backscatter => format!(
                "{target} {} unsolicited SYN-ACK/RST/ICMP errors from {} sources: someone is spoofing this address in an attack elsewhere",
                if going { "is getting" } else { "got" },
                thousands(self.sources.count())
            ),
            Kind::Flood => match self.key {
                Key::Port(_, _, port) if self.aggregated > 0 => format!(
                    "{proto} port {port} {} {probes} packets ({} counted in kernel aggregates) from {} sources and source /24s or /48s, peak {}/s",
                    if going { "is flooded:" } else { "was flooded:" },
                    thousands(self.aggregated),
                    thousands(self.sources.count()),
                    thousands(self.peak_pps)
                ),
                Key::Port(_, _, port) => format!(
                    "{proto} port {port} {} {probes} probes from {} sources, peak {}/s",
                    if going { "is flooded:" } else { "was flooded:" },
                    thousands(self.sources.count()),
                    thousands(self.peak_pps)
                ),
                _ if self.aggregated > 0 => format!(
                    "{src} {} {probes} packets to {target} ({} counted in kernel aggregates past its rate limit), peak {}/s",
                    if going { "is flooding:" } else { "flooded:" },
                    thousands(self.aggregated),
                    thousands(self.peak_pps)
                ),
                _ => format!(
                    "{src} {} {probes} packets to {target}, peak {}/s",
                    if going { "is flooding:" } else { "flooded:" },
                    thousands(self.peak_pps)
                ),
            },
        }
    }
}

fn combo_count(c: &[u64; 4]) -> u32 {
    c.iter().map(|w| w.count_ones()).sum()
}

/// The flag combinations of a set, named ("NULL" for none).
fn combo_names(c: &[u64; 4]) -> Vec<String> {
    (0..=255u8)
        .filter(|f| c[(f >> 6) as usize] & (1u64 << (f & 63)) != 0)
        .map(|f| {
            let s = flags_string(f);
            if s.is_empty() {
                "NULL".to_string()
            } else {
                s
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_well() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(1234567), "1,234,567");
        assert_eq!(human_secs(0.42), "0.4 s");
        assert_eq!(human_secs(4.0), "4.0 s");
        assert_eq!(human_secs(300.0), "5.0 min");
        assert_eq!(human_secs(43200.0), "12.0 h");
    }

    #[test]
    fn severity_grows_with_evidence() {
        assert_eq!(severity(10, 10, 1.0), 1);
        assert_eq!(severity(1000, 1000, 4.0), 4);
        assert_eq!(severity(65535, 65535, 30.0), 5);
        assert!(severity(144, 144, 43200.0) > severity(144, 144, 60.0));
    }
}
