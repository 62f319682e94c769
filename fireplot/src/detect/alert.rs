//! Alert JSON lines (DESIGN §5): `kind`, `first_seen`, `last_seen`,
//! `sources`, `targets`, `proto`, `ports`, `probes`, `rate_pps`, `flags`,
//! `severity`, `summary`, plus `id`, `status` (`started` when a threshold is
//! crossed, `ended` with totals when the episode has gone idle), `speed`,
//! `order` and per-kind fields; and how an episode is said: its record,
//! whose severity, summary and own fields its kind's evidence gives.

use serde::{Deserialize, Serialize};

pub use super::words::{human_secs, severity, thousands};
use super::{config::DetectConfig, episode::Episode};
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

/// What every summary may use, said once: the episode's first source and
/// target, its counts in words, how long it took, its speed and order.
pub struct Said<'a> {
    pub cfg: &'a DetectConfig,
    /// `started` (the episode is going on) rather than `ended`.
    pub going: bool,
    /// The protocol's name in capitals ("TCP").
    pub proto: String,
    pub src: String,
    pub target: String,
    pub ports: String,
    pub targets: String,
    pub probes: String,
    pub took: String,
    pub dur: f64,
    pub speed: &'static str,
    pub order: &'static str,
}

/// How an episode is said: its alert record. The kind's evidence says its
/// severity, its summary and its own fields.
impl Episode {
    fn speed(&self, fast_max_interval_s: f64) -> &'static str {
        if self.probes < 2 || self.duration_s() / (self.probes - 1) as f64 <= fast_max_interval_s {
            "fast"
        } else {
            "slow"
        }
    }

    /// The alert record of this episode now.
    pub fn alert(&self, status: &str, cfg: &DetectConfig) -> Alert {
        let proto_name = match Proto::from_number(self.proto) {
            Proto::Name(n) => n,
            Proto::Number(n) => n.to_string(),
        };
        let dur = self.duration_s();
        let rate = self.probes as f64 / dur.max(0.001);
        let speed = self.speed(cfg.fast_max_interval_s);
        let order = self.order.name();
        let said = Said {
            cfg,
            going: status == "started",
            proto: proto_name.to_uppercase(),
            src: self.sources.sample().first().cloned().unwrap_or_default(),
            target: self.targets.sample().first().cloned().unwrap_or_default(),
            ports: thousands(self.ports.len() as u64),
            targets: thousands(self.targets.count()),
            probes: thousands(self.probes),
            took: human_secs(dur),
            dur,
            speed,
            order,
        };
        let mut a = Alert {
            id: self.id,
            status: status.into(),
            kind: self.kind.name().into(),
            first_seen: rfc3339_ns(self.first_ns as i128),
            last_seen: rfc3339_ns(self.last_ns as i128),
            sources: self.sources.sorted(32),
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
            severity: self.evidence.severity(self, cfg),
            speed: speed.into(),
            order: order.into(),
            summary: self.evidence.summary(self, &said),
            tool: self.kind.0.names_tool.then(|| {
                self.tools
                    .name(cfg.tool_min_probes, cfg.tool_min_share)
                    .to_string()
            }),
            ..Alert::default()
        };
        self.evidence.fields(self, cfg, &mut a);
        a
    }
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
