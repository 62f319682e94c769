//! The one configuration type of the detectors: every threshold and window,
//! with its default. Set from a TOML file (`--config`) and `--set key=value`
//! on the command line (applied after the file).

use serde::{Deserialize, Serialize};

/// Thresholds and windows of all detectors.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DetectConfig {
    /// port_scan: distinct ports of one target that make a source a scanner.
    pub scan_ports: u32,
    /// port_sweep: distinct targets that make a source a sweeper...
    pub sweep_targets: u32,
    /// ...while it probes at most this many distinct ports.
    pub sweep_max_ports: u32,
    /// flag_scan: probes (distinct target and port) with a flag mix no stack sends first.
    pub flag_probes: u32,
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
    /// ...once they have done so on this many distinct ports.
    pub sync_ports: u32,
    /// distributed_scan (not synchronized): distinct ports of one target...
    pub distributed_ports: u32,
    /// ...probed by at least two and at most this many sources...
    pub distributed_max_sources: u32,
    /// ...none of which is a port scanner alone, within this window (seconds).
    pub distributed_window_s: u64,
    /// port_surge: bucket length (seconds) for distinct sources per port.
    pub surge_bucket_s: u64,
    /// port_surge: at least this many distinct sources in a bucket...
    pub surge_min_sources: u32,
    /// ...and this many times the port's baseline (mean of earlier buckets).
    pub surge_factor: f64,
    /// port_surge: buckets of history needed before a baseline counts.
    pub surge_warmup_buckets: u32,
    /// port_surge: mean probes per source above this means scanners, not a surge.
    pub surge_max_probes_per_source: f64,
    /// backscatter: distinct sources of unsolicited SYN-ACK/RST/ICMP errors to one address...
    pub backscatter_sources: u32,
    /// ...within this window (seconds).
    pub backscatter_window_s: u64,
    /// flood: events per second from one source, or to one port from several.
    pub flood_pps: u32,
    /// Memory budget of all detector state, MiB. Source state is evicted
    /// oldest-first (least recently seen) past it, and evictions are counted.
    pub memory_mib: u64,
}

impl Default for DetectConfig {
    fn default() -> Self {
        DetectConfig {
            scan_ports: 10,
            sweep_targets: 10,
            sweep_max_ports: 5,
            flag_probes: 5,
            protocols: 8,
            fast_max_interval_s: 1.0,
            episode_idle_s: 900,
            source_idle_s: 6 * 3600,
            sync_max_lag_ms: 2000,
            sync_ports: 5,
            distributed_ports: 100,
            distributed_max_sources: 16,
            distributed_window_s: 600,
            surge_bucket_s: 600,
            surge_min_sources: 50,
            surge_factor: 10.0,
            surge_warmup_buckets: 6,
            surge_max_probes_per_source: 5.0,
            backscatter_sources: 20,
            backscatter_window_s: 600,
            flood_pps: 20_000,
            memory_mib: 256,
        }
    }
}

impl DetectConfig {
    /// Defaults, then the TOML file, then `key=value` overrides.
    pub fn load(
        file: Option<&std::path::Path>,
        overrides: &[String],
    ) -> Result<DetectConfig, String> {
        let mut table = match file {
            Some(p) => {
                let text = std::fs::read_to_string(p)
                    .map_err(|e| format!("cannot read config `{}`: {e}", p.display()))?;
                text.parse::<toml::Table>()
                    .map_err(|e| format!("config `{}` is not valid TOML: {e}", p.display()))?
            }
            None => toml::Table::new(),
        };
        for o in overrides {
            let (k, v) = o
                .split_once('=')
                .ok_or_else(|| format!("--set `{o}`: use key=value (e.g. scan_ports=20)"))?;
            let value: toml::Value = format!("v = {}", v.trim())
                .parse::<toml::Table>()
                .ok()
                .and_then(|t| t.get("v").cloned())
                .unwrap_or_else(|| toml::Value::String(v.trim().to_string()));
            table.insert(k.trim().to_string(), value);
        }
        let cfg: DetectConfig = table
            .try_into()
            .map_err(|e| format!("invalid detector settings: {e}"))?;
        cfg.validate()?;
        Ok(cfg)
    }

    fn validate(&self) -> Result<(), String> {
        let positive = [
            ("scan_ports", self.scan_ports as u64),
            ("sweep_targets", self.sweep_targets as u64),
            ("flag_probes", self.flag_probes as u64),
            ("protocols", self.protocols as u64),
            ("sync_ports", self.sync_ports as u64),
            ("surge_bucket_s", self.surge_bucket_s),
            ("backscatter_window_s", self.backscatter_window_s),
            ("flood_pps", self.flood_pps as u64),
            ("memory_mib", self.memory_mib),
            ("distributed_window_s", self.distributed_window_s),
        ];
        for (name, v) in positive {
            if v == 0 {
                return Err(format!("{name} must be greater than 0"));
            }
        }
        if self.memory_mib < 16 {
            return Err("memory_mib must be at least 16".into());
        }
        Ok(())
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
            &["flood_pps=5".into(), "surge_factor = 3.5".into()],
        )
        .unwrap();
        assert_eq!(c.scan_ports, 20);
        assert_eq!(c.flood_pps, 5);
        assert_eq!(c.surge_factor, 3.5);
        assert_eq!(c.sweep_targets, DetectConfig::default().sweep_targets);
        assert!(DetectConfig::load(None, &["no_such_key=1".into()]).is_err());
        assert!(DetectConfig::load(None, &["scan_ports=0".into()]).is_err());
        assert!(DetectConfig::load(None, &["scan_ports".into()]).is_err());
        std::fs::write(&f, "scan_ports = [").unwrap();
        assert!(DetectConfig::load(Some(&f), &[])
            .unwrap_err()
            .contains("not valid TOML"));
    }
}
