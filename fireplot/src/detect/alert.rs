//! Alert JSON lines (DESIGN §5): `kind`, `first_seen`, `last_seen`,
//! `sources`, `targets`, `proto`, `ports`, `probes`, `rate_pps`, `flags`,
//! `severity`, `summary`, plus `id`, `status` (`started` when a threshold is
//! crossed, `ended` with totals when the episode has gone idle), `speed`,
//! `order` and per-kind fields, and who the sources are (with enrichment).

use serde::{Deserialize, Serialize};

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
    pub origins: Option<Vec<SourceOrigin>>,
    /// Episodes of many sources: their networks, most sources first (up
    /// to 5), over every source of the episode, not only those listed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub asns: Option<Vec<Share>>,
    /// ...and their countries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub countries: Option<Vec<Share>>,
    /// fleet_campaign: the sensors that saw the source, and its probes at
    /// each.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sensors: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_sensor: Option<std::collections::BTreeMap<String, u64>>,
    /// ddos: the vector (`syn`, `udp_reflection`, ...), the amplifiers'
    /// source port of a reflection, peak and current (last second) rates,
    /// bytes, the prefix length of an attack on a prefix (carpet bombing),
    /// and the heaviest sources.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vector: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reflector_port: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peak_pps: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peak_bps: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pps: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bps: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix_len: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_sources: Option<Vec<TopSource>>,
    /// The episode's actor (its source, target or port and kind over
    /// time): episodes so far, since when, totals over all of them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<ActorSummary>,
}

/// One of an attack's heaviest sources: its most packets in one second.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TopSource {
    pub src: String,
    pub packets: u64,
}

/// An actor over time, as a record says it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ActorSummary {
    /// Episodes so far, this one included.
    pub episodes: u32,
    /// When its first episode began ("recurring since").
    pub since: String,
    /// Probes over all its episodes.
    pub probes: u64,
    /// Distinct ports and targets over all its episodes (exact up to 8,
    /// estimated past that).
    pub ports: u64,
    pub targets: u64,
}

/// One listed source and what is known of it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SourceOrigin {
    pub src: String,
    #[serde(flatten)]
    pub origin: crate::enrich::Origin,
}

/// A network or country and how many of an episode's sources are in it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Share {
    /// "AS4134" or "CN".
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub org: Option<String>,
    pub sources: u64,
}

impl Alert {
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("alerts serialize")
    }
}
