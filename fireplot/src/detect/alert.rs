//! Alert JSON lines (DESIGN §5): `kind`, `first_seen`, `last_seen`,
//! `sources`, `targets`, `proto`, `ports`, `probes`, `rate_pps`, `flags`,
//! `severity`, `summary`, plus `id`, `status` (`started` when a threshold is
//! crossed, `ended` with totals when the episode has gone idle), `speed`,
//! `order` and per-kind fields.

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
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
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
}

impl Alert {
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("alerts serialize")
    }
}

/// 1,234,567
pub fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// "0.4 s", "12 s", "3.5 min", "2.1 h"
pub fn human_secs(s: f64) -> String {
    if s < 10.0 {
        format!("{s:.1} s")
    } else if s < 120.0 {
        format!("{s:.0} s")
    } else if s < 7200.0 {
        format!("{:.1} min", s / 60.0)
    } else {
        format!("{:.1} h", s / 3600.0)
    }
}

/// psad-like danger level from the evidence.
pub fn severity(probes: u64, breadth: u64, duration_s: f64) -> u8 {
    let mut s: u8 = match breadth.max(probes / 10) {
        0..=24 => 1,
        25..=99 => 2,
        100..=999 => 3,
        1000..=9999 => 4,
        _ => 5,
    };
    if duration_s > 3600.0 && s < 5 {
        s += 1;
    }
    s
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
