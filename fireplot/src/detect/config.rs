//! The one configuration type of the detectors: every threshold and window,
//! with its default. Set from a TOML file (`--config`) and `--set key=value`
//! on the command line (applied after the file).

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Why detector settings could not be used.
#[derive(Debug, Error)]
pub enum ConfigError {
    /// The `--config` file could not be read.
    #[error("cannot read config `{path}`")]
    Read {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The `--config` file is not TOML.
    #[error("config `{path}` is not valid TOML")]
    Toml {
        path: std::path::PathBuf,
        #[source]
        source: toml::de::Error,
    },
    /// A `--set` argument is not `key=value`.
    #[error("--set `{arg}`: use key=value (e.g. scan_ports=20)")]
    SetSyntax { arg: String },
    /// An unknown key or a value of the wrong type.
    #[error("invalid detector settings")]
    Invalid(#[source] toml::de::Error),
    /// A value outside its domain.
    #[error("detector setting `{key}` = {value}: {why}")]
    OutOfRange {
        key: &'static str,
        value: String,
        why: &'static str,
    },
}

/// Thresholds and windows of all detectors.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DetectConfig {
    /// port_scan: distinct ports of one target that make a source a scanner
    /// (Zeek needs 15, TRW 4–5; nmap's UDP top-ports scan reaches 9).
    pub scan_ports: u32,
    /// port_sweep: distinct targets that make a source a sweeper...
    pub sweep_targets: u32,
    /// ...while it probes at most this many distinct ports.
    pub sweep_max_ports: u32,
    /// flag_scan: probes (distinct target and port) with a flag mix no stack sends first...
    pub flag_probes: u32,
    /// ...or this many distinct odd flag combinations from one source, even
    /// to one port (OS and firewall fingerprinting: nmap -O's T2, T3, T7).
    pub flag_combos: u32,
    /// protocol_scan: distinct IP protocols from one source.
    pub protocols: u32,
    /// speed: `fast` when the mean time between a scan's probes is at most this (seconds).
    pub fast_max_interval_s: f64,
    /// An episode ends after this long without a probe (seconds); one that
    /// resumes sooner is the same episode.
    pub episode_idle_s: u64,
    /// A source's state is forgotten after this long without a probe (seconds).
    pub source_idle_s: u64,
    /// distributed_scan: two sources probing the same target and port at most
    /// this far apart (milliseconds) are in lockstep...
    pub sync_max_lag_ms: u64,
    /// ...once they have done so on this many distinct ports...
    pub sync_ports: u32,
    /// ...with at least this share of co-probes in the leader's port order
    /// (two independent random-order scans agree about half of the time)...
    pub sync_same_order: f64,
    /// ...and a steady lag: its standard deviation at most this share of the
    /// mean lag...
    pub sync_lag_spread: f64,
    /// ...or at most this many milliseconds, whichever is larger (scheduler
    /// and link jitter of fast scans).
    pub sync_lag_spread_min_ms: f64,
    /// A co-probing pair that is not steady after this many co-probes is
    /// dropped (two scans that merely overlap). Also the number of ports kept
    /// as the pair's sample (at least `sync_ports`).
    pub sync_decide_probes: u32,
    /// distributed_scan (not synchronized): distinct ports of one target...
    pub distributed_ports: u32,
    /// ...probed by at least two and at most this many sources...
    pub distributed_max_sources: u32,
    /// ...none of which is a port scanner alone, within this window (seconds).
    pub distributed_window_s: u64,
    /// port_surge: bucket (seconds) of a port's count of new sources.
    pub surge_bucket_s: u64,
    /// port_surge: horizons tested (seconds, multiples of the bucket).
    pub surge_horizons_s: Vec<u64>,
    /// port_surge: P(at least this many new sources | the port's history)
    /// at or below which a horizon is significant (per test).
    pub surge_false_alarm: f64,
    /// port_surge: at least this many new sources within the horizon...
    pub surge_min_sources: u32,
    /// ...and at least this many times the expected count: real background
    /// swings (day and night) more than a Poisson count would.
    pub surge_min_ratio: f64,
    /// port_surge: a horizon is tested once the port has been watched this
    /// long (and twice the horizon) before the window.
    pub surge_min_history_s: u64,
    /// port_surge: the prior of a port's rate: this many sources...
    pub surge_prior_sources: f64,
    /// ...over this many seconds (weak: a port nobody probed gets a small,
    /// non-zero rate; a busy one is learnt from its own history).
    pub surge_prior_s: u64,
    /// port_surge: half-life (seconds) of a port's history.
    pub surge_half_life_s: u64,
    /// backscatter: distinct sources of unsolicited SYN-ACK/RST/ICMP errors to one address...
    pub backscatter_sources: u32,
    /// ...within this window (seconds).
    pub backscatter_window_s: u64,
    /// backscatter from one victim: one source's SYN-ACKs, RSTs and ICMP
    /// errors reaching this many of our addresses...
    pub backscatter_victim_targets: u32,
    /// ...within this window (seconds).
    pub backscatter_victim_window_s: u64,
    /// flood: events per second from one source, or to one port from several.
    pub flood_pps: u32,
    /// flood of one port: "from several sources" only while no single
    /// source sent more than this share of the port's events in that second
    /// (else it is that source's flood).
    pub flood_port_max_share: f64,
    /// flood (hammering): one source sending this many packets to one
    /// target port, at any rate...
    pub hammer_packets: u32,
    /// ...with no gap longer than this (seconds) between them, over at
    /// least `hammer_min_span_s` (a shorter burst is judged by the
    /// per-second flood thresholds, so several sources bursting at one port
    /// are one port flood, not many hammerings).
    pub hammer_gap_s: u64,
    pub hammer_min_span_s: u64,
    /// Severity 1–5 of a hammering from its packet count: psad's danger
    /// levels.
    pub hammer_levels: [u64; 5],
    /// tool: a scanner is named when at least this many probes of an
    /// episode were checked...
    pub tool_min_probes: u32,
    /// ...and this share of them carry its signature.
    pub tool_min_share: f64,
    /// Memory budget of all detector state, MiB. Source state is evicted
    /// oldest-first (least recently seen) past it, and evictions are counted.
    pub memory_mib: u64,
}

impl Default for DetectConfig {
    fn default() -> Self {
        DetectConfig {
            scan_ports: 6,
            sweep_targets: 6,
            sweep_max_ports: 5,
            flag_probes: 5,
            flag_combos: 3,
            protocols: 8,
            fast_max_interval_s: 1.0,
            episode_idle_s: 900,
            source_idle_s: 6 * 3600,
            sync_max_lag_ms: 2000,
            sync_ports: 5,
            sync_same_order: 0.9,
            sync_lag_spread: 0.25,
            sync_lag_spread_min_ms: 2.0,
            sync_decide_probes: 16,
            distributed_ports: 50,
            distributed_max_sources: 16,
            distributed_window_s: 600,
            surge_bucket_s: 600,
            surge_horizons_s: vec![600, 3600, 6 * 3600, 24 * 3600],
            surge_false_alarm: 1e-9,
            surge_min_sources: 20,
            surge_min_ratio: 4.0,
            surge_min_history_s: 6 * 3600,
            surge_prior_sources: 1.0,
            surge_prior_s: 3600,
            surge_half_life_s: 7 * 86_400,
            backscatter_sources: 20,
            backscatter_window_s: 600,
            backscatter_victim_targets: 20,
            backscatter_victim_window_s: 86_400,
            flood_pps: 20_000,
            flood_port_max_share: 0.5,
            hammer_packets: 1000,
            hammer_gap_s: 600,
            hammer_min_span_s: 1,
            hammer_levels: [5, 15, 150, 1_500, 10_000],
            tool_min_probes: 5,
            tool_min_share: 0.9,
            memory_mib: 256,
        }
    }
}

impl DetectConfig {
    /// Defaults, then the TOML file, then `key=value` overrides; every
    /// value is then checked.
    pub fn load(
        file: Option<&std::path::Path>,
        overrides: &[String],
    ) -> Result<DetectConfig, ConfigError> {
        let mut table = match file {
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|source| ConfigError::Read {
                    path: p.to_path_buf(),
                    source,
                })?;
                text.parse::<toml::Table>()
                    .map_err(|source| ConfigError::Toml {
                        path: p.to_path_buf(),
                        source,
                    })?
            }
            None => toml::Table::new(),
        };
        for o in overrides {
            let (k, v) = o
                .split_once('=')
                .ok_or_else(|| ConfigError::SetSyntax { arg: o.clone() })?;
            let value: toml::Value = format!("v = {}", v.trim())
                .parse::<toml::Table>()
                .ok()
                .and_then(|t| t.get("v").cloned())
                .unwrap_or_else(|| toml::Value::String(v.trim().to_string()));
            table.insert(k.trim().to_string(), value);
        }
        let cfg: DetectConfig = table.try_into().map_err(ConfigError::Invalid)?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Checks every field: counts and windows positive, shares in (0, 1],
    /// factors finite, windows no longer than a year.
    pub fn validate(&self) -> Result<(), ConfigError> {
        const YEAR_S: u64 = 365 * 24 * 3600;
        let bad = |key: &'static str, value: String, why: &'static str| {
            Err(ConfigError::OutOfRange { key, value, why })
        };
        let counts = [
            ("scan_ports", self.scan_ports),
            ("sweep_targets", self.sweep_targets),
            ("sweep_max_ports", self.sweep_max_ports),
            ("flag_probes", self.flag_probes),
            ("flag_combos", self.flag_combos),
            ("hammer_packets", self.hammer_packets),
            ("tool_min_probes", self.tool_min_probes),
            (
                "backscatter_victim_targets",
                self.backscatter_victim_targets,
            ),
            ("protocols", self.protocols),
            ("sync_ports", self.sync_ports),
            ("sync_decide_probes", self.sync_decide_probes),
            ("distributed_ports", self.distributed_ports),
            ("distributed_max_sources", self.distributed_max_sources),
            ("surge_min_sources", self.surge_min_sources),
            ("backscatter_sources", self.backscatter_sources),
            ("flood_pps", self.flood_pps),
        ];
        for (key, v) in counts {
            if v == 0 {
                return bad(key, v.to_string(), "must be at least 1");
            }
        }
        if self.distributed_max_sources < 2 {
            return bad(
                "distributed_max_sources",
                self.distributed_max_sources.to_string(),
                "work is shared by at least 2 sources",
            );
        }
        // Shared work is found only among sources none of which scans
        // alone: more ports than they can share unnoticed is unreachable.
        let reachable =
            u64::from(self.distributed_max_sources) * u64::from(self.scan_ports.saturating_sub(1));
        if u64::from(self.distributed_ports) > reachable {
            return bad(
                "distributed_ports",
                self.distributed_ports.to_string(),
                "is more than distributed_max_sources × (scan_ports − 1) sources can probe without one being a port scan: shared work could never be found",
            );
        }
        let windows = [
            ("episode_idle_s", self.episode_idle_s),
            ("source_idle_s", self.source_idle_s),
            ("sync_max_lag_ms", self.sync_max_lag_ms),
            ("distributed_window_s", self.distributed_window_s),
            ("surge_bucket_s", self.surge_bucket_s),
            ("backscatter_window_s", self.backscatter_window_s),
            (
                "backscatter_victim_window_s",
                self.backscatter_victim_window_s,
            ),
            ("hammer_gap_s", self.hammer_gap_s),
            ("hammer_min_span_s", self.hammer_min_span_s),
            ("surge_min_history_s", self.surge_min_history_s),
            ("surge_prior_s", self.surge_prior_s),
            ("surge_half_life_s", self.surge_half_life_s),
        ];
        for (key, v) in windows {
            if v == 0 || v > YEAR_S {
                return bad(key, v.to_string(), "must be between 1 and a year");
            }
        }
        let shares = [
            ("sync_same_order", self.sync_same_order),
            ("sync_lag_spread", self.sync_lag_spread),
            ("flood_port_max_share", self.flood_port_max_share),
            ("tool_min_share", self.tool_min_share),
            ("surge_false_alarm", self.surge_false_alarm),
        ];
        for (key, v) in shares {
            if !(v > 0.0 && v <= 1.0) {
                return bad(key, v.to_string(), "must be a share in (0, 1]");
            }
        }
        let positives = [
            ("fast_max_interval_s", self.fast_max_interval_s),
            ("sync_lag_spread_min_ms", self.sync_lag_spread_min_ms),
            ("surge_prior_sources", self.surge_prior_sources),
        ];
        for (key, v) in positives {
            if !(v.is_finite() && v > 0.0) {
                return bad(key, v.to_string(), "must be a positive number");
            }
        }
        if !(self.surge_min_ratio.is_finite() && self.surge_min_ratio >= 1.0) {
            return bad(
                "surge_min_ratio",
                self.surge_min_ratio.to_string(),
                "must be a number of at least 1 (times the expected count)",
            );
        }
        let horizons = &self.surge_horizons_s;
        if horizons.is_empty()
            || horizons
                .iter()
                .any(|h| *h == 0 || h % self.surge_bucket_s != 0 || *h > 7 * 86_400)
        {
            return bad(
                "surge_horizons_s",
                format!("{horizons:?}"),
                "must be one or more multiples of surge_bucket_s, at most 7 days",
            );
        }
        if self.hammer_levels.windows(2).any(|w| w[0] >= w[1]) || self.hammer_levels[0] == 0 {
            return bad(
                "hammer_levels",
                format!("{:?}", self.hammer_levels),
                "must be five increasing packet counts",
            );
        }
        if !(16..=1 << 20).contains(&self.memory_mib) {
            return bad(
                "memory_mib",
                self.memory_mib.to_string(),
                "must be between 16 and 1048576",
            );
        }
        Ok(())
    }
}

/// One line of documentation per setting, printed above it by
/// `fireplot detect --print-config` (a test keeps it complete).
pub const DOCS: &[(&str, &str)] = &[
    (
        "scan_ports",
        "port_scan: distinct ports of one target from one source",
    ),
    (
        "sweep_targets",
        "port_sweep: distinct targets from one source...",
    ),
    (
        "sweep_max_ports",
        "...probing at most this many distinct ports",
    ),
    (
        "flag_probes",
        "flag_scan: odd-flag probes to distinct (target, port)...",
    ),
    (
        "flag_combos",
        "...or this many distinct odd flag combinations (fingerprinting, even of one port)",
    ),
    (
        "protocols",
        "protocol_scan: distinct IP protocols from one source",
    ),
    (
        "fast_max_interval_s",
        "speed is `fast` when the mean gap between probes is at most this (s)",
    ),
    (
        "episode_idle_s",
        "an episode ends after this long without evidence (s)",
    ),
    (
        "source_idle_s",
        "a source is forgotten after this long without a probe (s)",
    ),
    (
        "sync_max_lag_ms",
        "lockstep: two sources probing the same target port at most this far apart (ms)...",
    ),
    ("sync_ports", "...on this many distinct ports..."),
    (
        "sync_same_order",
        "...with this share of co-probes in the leader's port order...",
    ),
    (
        "sync_lag_spread",
        "...and a lag whose standard deviation is at most this share of its mean...",
    ),
    (
        "sync_lag_spread_min_ms",
        "...or at most this many ms, whichever is larger",
    ),
    (
        "sync_decide_probes",
        "lockstep: a pair not steady after this many co-probes is dropped",
    ),
    (
        "distributed_ports",
        "shared work: distinct ports of one target...",
    ),
    (
        "distributed_max_sources",
        "...from 2 to this many sources, none a port scanner alone...",
    ),
    ("distributed_window_s", "...within this window (s)"),
    (
        "surge_bucket_s",
        "port_surge: bucket of a port's count of new sources (s)",
    ),
    (
        "surge_horizons_s",
        "port_surge: horizons tested (s, multiples of the bucket)",
    ),
    (
        "surge_false_alarm",
        "port_surge: significant when P(at least this many new sources) is at most this",
    ),
    (
        "surge_min_sources",
        "port_surge: at least this many new sources within the horizon...",
    ),
    (
        "surge_min_ratio",
        "...and this many times the expected count",
    ),
    (
        "surge_min_history_s",
        "port_surge: a horizon is tested after this long (and twice the horizon) of history (s)",
    ),
    (
        "surge_prior_sources",
        "port_surge: prior of a port's rate: this many sources...",
    ),
    ("surge_prior_s", "...over this many seconds"),
    (
        "surge_half_life_s",
        "port_surge: half-life of a port's history (s)",
    ),
    (
        "backscatter_sources",
        "backscatter (many_sources): distinct answering sources to one of our addresses...",
    ),
    ("backscatter_window_s", "...within this window (s)"),
    (
        "backscatter_victim_targets",
        "backscatter (one_victim): our addresses one source answers...",
    ),
    ("backscatter_victim_window_s", "...within this window (s)"),
    (
        "flood_pps",
        "flood: events in one second from one source, or to one port from several",
    ),
    (
        "flood_port_max_share",
        "flood of a port: no single source above this share of its second",
    ),
    (
        "hammer_packets",
        "flood by hammering: packets from one source to one target port...",
    ),
    ("hammer_gap_s", "...with no gap longer than this (s)..."),
    (
        "hammer_min_span_s",
        "...over at least this long (s; shorter bursts are for flood_pps)",
    ),
    (
        "hammer_levels",
        "hammering severity 1-5 from its packet count (psad's danger levels)",
    ),
    (
        "tool_min_probes",
        "tool: named when at least this many probes were checked...",
    ),
    ("tool_min_share", "...and this share carry its signature"),
    (
        "memory_mib",
        "memory budget of all detector state (MiB); sources past it are evicted oldest first",
    ),
];

impl DetectConfig {
    /// The settings as TOML with a comment line above each.
    pub fn to_documented_toml(&self) -> String {
        let plain = toml::to_string(self).expect("the settings serialize");
        let mut out = String::new();
        for line in plain.lines() {
            let key = line.split('=').next().unwrap_or("").trim();
            if let Some((_, doc)) = DOCS.iter().find(|(k, _)| *k == key) {
                out.push_str("# ");
                out.push_str(doc);
                out.push('\n');
            }
            out.push_str(line);
            out.push('\n');
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_and_overrides_apply_in_order() {
        let dir = std::env::temp_dir().join(format!("fireplot-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("d.toml");
        std::fs::write(&f, "scan_ports = 20\nflood_pps = 1000\n").unwrap();
        let c = DetectConfig::load(
            Some(&f),
            &["flood_pps=5".into(), "surge_min_ratio = 3.5".into()],
        )
        .unwrap();
        assert_eq!(c.scan_ports, 20);
        assert_eq!(c.flood_pps, 5);
        assert_eq!(c.surge_min_ratio, 3.5);
        assert_eq!(c.sweep_targets, DetectConfig::default().sweep_targets);
        assert!(DetectConfig::load(None, &["no_such_key=1".into()]).is_err());
        assert!(DetectConfig::load(None, &["scan_ports=0".into()]).is_err());
        assert!(DetectConfig::load(None, &["scan_ports".into()]).is_err());
        std::fs::write(&f, "scan_ports = [").unwrap();
        assert!(DetectConfig::load(Some(&f), &[])
            .unwrap_err()
            .to_string()
            .contains("not valid TOML"));
    }

    #[test]
    fn every_setting_is_documented_and_the_print_loads_again() {
        let cfg = DetectConfig::default();
        let table = toml::Table::try_from(&cfg).unwrap();
        for key in table.keys() {
            assert!(
                DOCS.iter().any(|(k, _)| k == key),
                "{key} has no line in DOCS"
            );
        }
        assert_eq!(DOCS.len(), table.len(), "DOCS names only settings");
        let printed = cfg.to_documented_toml();
        assert!(printed.starts_with("# port_scan"), "{printed}");
        assert_eq!(printed.parse::<toml::Table>().unwrap(), table);
    }

    #[test]
    fn every_field_is_checked() {
        for (set, key) in [
            ("sweep_max_ports=0", "sweep_max_ports"),
            ("episode_idle_s=0", "episode_idle_s"),
            ("surge_min_ratio=0.5", "surge_min_ratio"),
            ("surge_min_ratio=nan", "surge_min_ratio"),
            ("surge_horizons_s=[700]", "surge_horizons_s"),
            ("surge_false_alarm=2", "surge_false_alarm"),
            ("hammer_levels=[5, 5, 150, 1500, 10000]", "hammer_levels"),
            ("sync_same_order=1.5", "sync_same_order"),
            ("flood_port_max_share=0", "flood_port_max_share"),
            ("distributed_max_sources=1", "distributed_max_sources"),
            ("fast_max_interval_s=-1", "fast_max_interval_s"),
            ("source_idle_s=99999999999", "source_idle_s"),
            ("memory_mib=8", "memory_mib"),
        ] {
            let e = DetectConfig::load(None, &[set.into()]).unwrap_err();
            assert!(e.to_string().contains(key), "{set}: {e}");
        }
        assert!(DetectConfig::default().validate().is_ok());
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        fn keys() -> Vec<String> {
            let t = toml::Table::try_from(DetectConfig::default()).expect("defaults serialize");
            t.keys().cloned().collect()
        }

        /// A TOML value of any kind, near and far from the valid ones.
        fn value() -> impl Strategy<Value = String> {
            prop_oneof![
                any::<i64>().prop_map(|n| n.to_string()),
                (0u64..100_000).prop_map(|n| n.to_string()),
                any::<f64>().prop_map(|f| format!("{f:?}")),
                Just("nan".to_string()),
                Just("inf".to_string()),
                Just("-0.0".to_string()),
                "[a-z0-9\\. \"=\\[\\]]{0,10}",
                Just("true".to_string()),
                Just("[1, 2]".to_string()),
            ]
        }

        fn entries() -> impl Strategy<Value = Vec<(String, String)>> {
            let keys = keys();
            let key = prop_oneof![
                8 => proptest::sample::select(keys),
                1 => "[a-z_]{1,12}",
            ];
            proptest::collection::vec((key, value()), 0..6)
        }

        proptest! {
            #![proptest_config(crate::record::proptests::config(5_000))]

            /// Whatever the file and the --set arguments say, loading never
            /// panics, and a config it accepts passes validation and is
            /// printed (--print-config) as a file that loads to the same.
            #[test]
            fn any_settings_load_or_fail_cleanly(
                file in entries(),
                sets in entries(),
                raw in "[ -~]{0,40}",
            ) {
                let dir = std::env::temp_dir().join(format!("fireplot-cfgprop-{}", std::process::id()));
                std::fs::create_dir_all(&dir).unwrap();
                let path = dir.join("c.toml");
                let mut text = String::new();
                for (k, v) in &file {
                    text.push_str(&format!("{k} = {v}\n"));
                }
                text.push_str(&raw);
                std::fs::write(&path, &text).unwrap();
                let sets: Vec<String> = sets.iter().map(|(k, v)| format!("{k}={v}")).collect();
                if let Ok(cfg) = DetectConfig::load(Some(&path), &sets) {
                    prop_assert!(cfg.validate().is_ok());
                    let printed = toml::to_string(&cfg).expect("prints");
                    std::fs::write(&path, printed).unwrap();
                    let again = DetectConfig::load(Some(&path), &[]).expect("its own print loads");
                    prop_assert_eq!(again, cfg);
                }
            }
        }
    }
}
