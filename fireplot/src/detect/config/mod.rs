//! The one configuration type of the detectors: every threshold and window,
//! with its default. Set from a TOML file (`--config`) and `--set key=value`
//! on the command line (applied after the file).

use serde::{Deserialize, Serialize};

mod load;
pub use load::ConfigError;

/// Thresholds and windows of all detectors.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DetectConfig {
    /// port_scan: distinct ports of one target that make a source a scanner
    /// (Zeek needs 15, TRW 4–5; nmap's UDP top-ports scan reaches 9).
    pub scan_ports: u32,
    /// port_scan also when this many of one target's distinct ports were
    /// dark: never answered anyone (no SYN-ACK or datagram from them since the
    /// sensor started). TRW decides after 4–5 such failures.
    pub scan_dark_ports: u32,
    /// port_sweep: distinct targets that make a source a sweeper...
    pub sweep_targets: u32,
    /// ...or this many dark ones (an address that never sent anything, or a
    /// port that never answered)...
    pub sweep_dark_targets: u32,
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
    /// resumes sooner is the same episode...
    pub episode_idle_s: u64,
    /// ...or after this many times its own mean gap between probes, when
    /// that is longer: a slow scan probing every 30 minutes stays one
    /// episode for days...
    pub episode_pace_factor: f64,
    /// ...but never longer than this (seconds).
    pub episode_max_idle_s: u64,
    /// An actor (one source and kind over time: its episodes, when it was
    /// first seen) is forgotten after this long without an episode (seconds).
    pub actor_idle_s: u64,
    /// A running episode gives an `update` record when its severity rose
    /// or its probes doubled since its last record, at most this often
    /// (seconds of event time).
    pub update_interval_s: u64,
    /// brute_force (Mirai's default-credential phase): at least this many
    /// SYNs from one source to TCP/23 of one host, and one to TCP/2323.
    pub mirai_telnet_syns: u32,
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
    /// port_surge before there is history enough to test (a sensor's
    /// first `surge_min_history_s`): this many new sources on a port in one
    /// bucket are reported at once.
    pub surge_extreme_sources: u32,
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
    /// flood (a burst): this many packets from one source to one host
    /// within a second, however short the burst.
    pub flood_burst_packets: u32,
    /// ddos: an attack on one of our hosts (or /24, /64) is a vector at or
    /// above this many packets per second...
    pub ddos_min_pps: u32,
    /// ...or this many bits per second...
    pub ddos_min_bps: u64,
    /// ...and this many times the destination's own recent rate of it...
    pub ddos_rate_factor: f64,
    /// ...(an exponentially weighted mean over this many seconds)...
    pub ddos_baseline_s: u64,
    /// ...from at least this many distinct sources in a minute (fewer are
    /// each a flood of its own)...
    pub ddos_min_sources: u32,
    /// ...or, for reflection, this many.
    pub ddos_reflection_sources: u32,
    /// ddos at any rate: this many distinct sources in a minute on one
    /// vector to one host (a spoofed flood).
    pub ddos_spoofed_sources: u32,
    /// An attack ends after this long below its thresholds (seconds).
    pub ddos_quiet_s: u64,
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
    /// Per-source alerts (scans, sweeps, floods of one source) are not
    /// raised for sources with one of these tags (`--tag NAME=FILE`), e.g.
    /// ["research_scanner"]: known research scanners are noise. Counted.
    pub ignore_tags: Vec<String>,
    /// fleet_campaign (over a fleet's merged history): one source seen by
    /// at least this many sensors...
    pub fleet_sensors: u32,
    /// ...with no gap longer than this (seconds) in its probes.
    pub fleet_window_s: u64,
}

impl Default for DetectConfig {
    fn default() -> Self {
        DetectConfig {
            scan_ports: 6,
            scan_dark_ports: 4,
            sweep_targets: 6,
            sweep_dark_targets: 4,
            sweep_max_ports: 5,
            flag_probes: 5,
            flag_combos: 3,
            protocols: 8,
            fast_max_interval_s: 1.0,
            episode_idle_s: 900,
            episode_pace_factor: 4.0,
            episode_max_idle_s: 86_400,
            actor_idle_s: 30 * 86_400,
            update_interval_s: 10,
            mirai_telnet_syns: 10,
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
            surge_extreme_sources: 200,
            surge_prior_sources: 1.0,
            surge_prior_s: 3600,
            surge_half_life_s: 7 * 86_400,
            backscatter_sources: 20,
            backscatter_window_s: 600,
            backscatter_victim_targets: 20,
            backscatter_victim_window_s: 86_400,
            flood_pps: 20_000,
            flood_burst_packets: 2_000,
            ddos_min_pps: 1_000,
            ddos_min_bps: 10_000_000,
            ddos_rate_factor: 4.0,
            ddos_baseline_s: 3_600,
            ddos_min_sources: 10,
            ddos_reflection_sources: 20,
            ddos_spoofed_sources: 1_000,
            ddos_quiet_s: 60,
            flood_port_max_share: 0.5,
            hammer_packets: 1000,
            hammer_gap_s: 600,
            hammer_min_span_s: 1,
            hammer_levels: [5, 15, 150, 1_500, 10_000],
            tool_min_probes: 5,
            tool_min_share: 0.9,
            memory_mib: 256,
            ignore_tags: Vec::new(),
            fleet_sensors: 3,
            fleet_window_s: 7200,
        }
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
        "scan_dark_ports",
        "port_scan: ...or this many of them dark (never answered anyone: TRW's failures)",
    ),
    (
        "sweep_targets",
        "port_sweep: distinct targets from one source...",
    ),
    (
        "sweep_dark_targets",
        "...or this many dark ones (address never sent anything, or port never answered)...",
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
        "episode_pace_factor",
        "...or after this many times its own mean gap between probes, if longer...",
    ),
    (
        "episode_max_idle_s",
        "...but at most this long (s)",
    ),
    (
        "actor_idle_s",
        "an actor (a source and kind over time) is forgotten after this long without an episode (s)",
    ),
    (
        "update_interval_s",
        "a running episode's update record (severity rose, probes doubled) at most this often (s)",
    ),
    (
        "mirai_telnet_syns",
        "brute_force: SYNs from one source to TCP/23 of one host, then one to TCP/2323 (Mirai)",
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
        "surge_extreme_sources",
        "port_surge with too little history to test: this many new sources on a port in one bucket",
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
        "flood_burst_packets",
        "flood: a burst of this many packets from one source to one host within a second",
    ),
    (
        "ddos_min_pps",
        "ddos: a vector to one of our hosts (or /24, /64) at or above this many packets/s...",
    ),
    ("ddos_min_bps", "...or this many bits/s..."),
    (
        "ddos_rate_factor",
        "...and this many times the host's own recent rate of it...",
    ),
    (
        "ddos_baseline_s",
        "...its recent rate: a moving mean over this many seconds, attacks left out...",
    ),
    (
        "ddos_min_sources",
        "...from at least this many distinct sources in a minute...",
    ),
    (
        "ddos_reflection_sources",
        "...or, for reflection, this many",
    ),
    (
        "ddos_spoofed_sources",
        "ddos at any rate: this many distinct sources in a minute on one vector to one host",
    ),
    (
        "ddos_quiet_s",
        "an attack ends after this long below its thresholds (s)",
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
    (
        "ignore_tags",
        "no per-source alert for sources with these tags (--tag NAME=FILE), e.g. [\"research_scanner\"]",
    ),
    (
        "fleet_sensors",
        "fleet_campaign (detect --postgres): one source seen by at least this many sensors...",
    ),
    (
        "fleet_window_s",
        "...with no gap longer than this between its probes (s)",
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
mod tests;
