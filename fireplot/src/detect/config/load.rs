//! Loading detector settings (defaults, then a TOML file, then `--set`
//! overrides) and checking every value.

use thiserror::Error;

use super::DetectConfig;

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
    /// factors finite, windows no longer than a year, and the relations
    /// between thresholds.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.validate_counts()?;
        self.validate_relations()?;
        self.validate_windows()?;
        self.validate_numbers()?;
        self.validate_lists()
    }

    /// Counts of at least 1.
    fn validate_counts(&self) -> Result<(), ConfigError> {
        let counts = [
            ("scan_ports", self.scan_ports),
            ("scan_dark_ports", self.scan_dark_ports),
            ("sweep_targets", self.sweep_targets),
            ("sweep_dark_targets", self.sweep_dark_targets),
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
            ("surge_extreme_sources", self.surge_extreme_sources),
            ("backscatter_sources", self.backscatter_sources),
            ("flood_pps", self.flood_pps),
            ("mirai_telnet_syns", self.mirai_telnet_syns),
            ("flood_burst_packets", self.flood_burst_packets),
            ("ddos_min_pps", self.ddos_min_pps),
            ("ddos_min_sources", self.ddos_min_sources),
            ("ddos_reflection_sources", self.ddos_reflection_sources),
            ("ddos_spoofed_sources", self.ddos_spoofed_sources),
        ];
        for (key, v) in counts {
            if v == 0 {
                return bad(key, v.to_string(), "must be at least 1");
            }
        }
        if self.fleet_sensors < 2 {
            return bad(
                "fleet_sensors",
                self.fleet_sensors.to_string(),
                "must be at least 2 (one sensor is not a fleet-wide campaign)",
            );
        }
        Ok(())
    }

    /// Thresholds that only make sense against each other.
    fn validate_relations(&self) -> Result<(), ConfigError> {
        if self.scan_dark_ports > self.scan_ports {
            return bad(
                "scan_dark_ports",
                self.scan_dark_ports.to_string(),
                "must be at most scan_ports (dark ports are stronger evidence, not weaker); equal turns it off",
            );
        }
        if self.sweep_dark_targets > self.sweep_targets {
            return bad(
                "sweep_dark_targets",
                self.sweep_dark_targets.to_string(),
                "must be at most sweep_targets (dark targets are stronger evidence, not weaker); equal turns it off",
            );
        }
        if self.distributed_max_sources < 2 {
            return bad(
                "distributed_max_sources",
                self.distributed_max_sources.to_string(),
                "work is shared by at least 2 sources",
            );
        }
        if self.episode_max_idle_s < self.episode_idle_s {
            return bad(
                "episode_max_idle_s",
                self.episode_max_idle_s.to_string(),
                "must be at least episode_idle_s",
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
        Ok(())
    }

    /// Windows between 1 and a year.
    fn validate_windows(&self) -> Result<(), ConfigError> {
        const YEAR_S: u64 = 365 * 24 * 3600;
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
            ("fleet_window_s", self.fleet_window_s),
            ("episode_max_idle_s", self.episode_max_idle_s),
            ("actor_idle_s", self.actor_idle_s),
            ("update_interval_s", self.update_interval_s),
            ("ddos_baseline_s", self.ddos_baseline_s),
            ("ddos_quiet_s", self.ddos_quiet_s),
        ];
        for (key, v) in windows {
            if v == 0 || v > YEAR_S {
                return bad(key, v.to_string(), "must be between 1 and a year");
            }
        }
        Ok(())
    }

    /// Shares in (0, 1], positive factors.
    fn validate_numbers(&self) -> Result<(), ConfigError> {
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
            ("ddos_min_bps", self.ddos_min_bps as f64),
        ];
        for (key, v) in positives {
            if !(v.is_finite() && v > 0.0) {
                return bad(key, v.to_string(), "must be a positive number");
            }
        }
        if !(self.ddos_rate_factor.is_finite() && self.ddos_rate_factor >= 1.0) {
            return bad(
                "ddos_rate_factor",
                self.ddos_rate_factor.to_string(),
                "must be a number of at least 1 (times the host's recent rate)",
            );
        }
        if !(self.episode_pace_factor.is_finite() && self.episode_pace_factor >= 1.0) {
            return bad(
                "episode_pace_factor",
                self.episode_pace_factor.to_string(),
                "must be a number of at least 1 (times the episode's mean gap)",
            );
        }
        if !(self.surge_min_ratio.is_finite() && self.surge_min_ratio >= 1.0) {
            return bad(
                "surge_min_ratio",
                self.surge_min_ratio.to_string(),
                "must be a number of at least 1 (times the expected count)",
            );
        }
        Ok(())
    }

    /// The surge horizons, the hammering levels, the memory budget.
    fn validate_lists(&self) -> Result<(), ConfigError> {
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

/// A setting out of its range.
fn bad(key: &'static str, value: String, why: &'static str) -> Result<(), ConfigError> {
    Err(ConfigError::OutOfRange { key, value, why })
}
