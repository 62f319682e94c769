//! `fireplot run`: the sensor daemon. This file holds its arguments; the
//! event loop is in `daemon`, where events, alerts and summaries go in
//! `sinks`, and the counter summary's form in `summary`.

mod daemon;
mod ingest;
mod kept;
mod replay;
mod sinks;
mod stats;

use std::path::PathBuf;

use clap::Args;

use super::detect::RunDetectArgs;
use crate::{
    plot::Theme,
    sensor::{Limits, LoadOptions, Service, XdpModeChoice},
    units::HumanDuration,
};

pub use daemon::run;
pub use ingest::{ingest, IngestArgs};
pub use replay::{replay, ReplayArgs};

/// Options of `fireplot run`.
#[derive(Args, Debug, Clone)]
pub struct RunArgs {
    /// WAN interface to watch (XDP ingress and TC egress attach here).
    /// Repeat it for a router with several uplinks (`-i wan0 -i wan1`, or
    /// `iface = ["wan0", "wan1"]` in --config): one sensor watches them
    /// all with one flow table, so a reply that comes back on another
    /// uplink than its request left by (asymmetric routing) is still a
    /// reply; each event names its interface and the summaries count per
    /// interface.
    #[arg(long, short = 'i', required = true, value_name = "IFACE")]
    pub iface: Vec<String>,

    /// How to attach XDP: native (driver) with fallback to generic, native only, or generic.
    #[arg(long, value_enum, default_value = "auto")]
    pub xdp_mode: XdpModeChoice,

    #[command(flatten)]
    pub classifier: ClassifierArgs,

    #[command(flatten)]
    pub output: OutputArgs,

    /// Serve the web console from the daemon on this address (e.g.
    /// 127.0.0.1:8780): the live fireplot, day pages, alerts, /metrics. Needs
    /// --db (the console reads the history). Any address but loopback needs
    /// --token or --token-file.
    #[arg(long, value_name = "ADDR:PORT", requires = "db")]
    pub web: Option<std::net::SocketAddr>,

    /// The console's token (see `fireplot serve --help`); prefer --token-file.
    #[arg(
        long,
        requires = "web",
        conflicts_with = "token_file",
        env = "FIREPLOT_TOKEN",
        hide_env_values = true
    )]
    pub token: Option<String>,

    /// Read the console's token from the first line of this file.
    #[arg(long, value_name = "FILE", requires = "web")]
    pub token_file: Option<PathBuf>,

    /// Delete stored history older than this, in the background (e.g. 30d).
    #[arg(long, value_name = "DURATION", requires = "db")]
    pub retain: Option<HumanDuration>,

    /// Live detection first learns from this much stored history (--db):
    /// the ports' and hosts' baselines, the sources, the actors and what was
    /// announced today, so a restart is not blind. 0 turns it off.
    #[arg(long, value_name = "DURATION", default_value = "24h")]
    pub warm_up: HumanDuration,

    /// Keep fireplots in DIR: fireplot-<iface>.png over --plot-window, and
    /// one per finished day (fireplot-<iface>-YYYY-MM-DD.png). Needs --db.
    #[arg(long, value_name = "DIR", requires = "db")]
    pub plot_dir: Option<PathBuf>,

    /// How often the rolling plot is redrawn.
    #[arg(long, default_value = "5m", value_name = "DURATION")]
    pub plot_every: HumanDuration,

    /// Time span of the rolling plot.
    #[arg(long, default_value = "24h", value_name = "DURATION")]
    pub plot_window: HumanDuration,

    /// Also write SVG next to each PNG.
    #[arg(long)]
    pub plot_svg: bool,

    /// Plot colours.
    #[arg(long, value_enum, default_value = "dark")]
    pub plot_theme: Theme,

    /// Plot times in UTC instead of local time.
    #[arg(long)]
    pub plot_utc: bool,

    #[command(flatten)]
    pub detect: RunDetectArgs,

    /// Read the daemon's settings from this TOML file: every option of
    /// `run` as a key (--rate-limit → rate_limit = 10000, --service →
    /// service = ["tcp/443"]), detector thresholds in a [detect] table.
    /// Flags given as well override it (a repeatable one replaces the
    /// file's list). `fireplot config example` prints a commented file;
    /// `fireplot config check FILE` validates one.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Print a counter summary this often (and always at exit).
    #[arg(long, default_value = "60s", value_name = "DURATION")]
    pub stats_every: HumanDuration,

    /// Summaries as JSON lines instead of text.
    #[arg(long)]
    pub stats_json: bool,

    /// Write summaries to FILE instead of stderr.
    #[arg(long, value_name = "FILE")]
    pub stats_out: Option<PathBuf>,

    /// Stop after this long (default: run until SIGINT/SIGTERM).
    #[arg(long, value_name = "DURATION")]
    pub duration: Option<HumanDuration>,
}

/// Where events and alerts go (`run`, `replay`, `ingest`).
#[derive(Args, Debug, Clone)]
pub struct OutputArgs {
    /// Write one JSON line per event to FILE (`-` for stdout). Appends.
    #[arg(long, value_name = "FILE")]
    pub events_out: Option<String>,

    /// Store every event (and counter summaries, alerts) in this SQLite
    /// database. Without a value: /var/lib/fireplot/fireplot.db as root,
    /// ./fireplot.db otherwise.
    #[arg(long, value_name = "PATH", num_args = 0..=1, default_missing_value = "")]
    pub db: Option<PathBuf>,

    /// Write alert JSON lines to FILE (`-` for stdout), detected live as
    /// events arrive; alerts also go to --db.
    #[arg(long, value_name = "FILE")]
    pub alerts: Option<String>,

    #[command(flatten)]
    pub enrich: crate::cmd::args::EnrichArgs,

    #[command(flatten)]
    pub fleet: crate::cmd::args::PublishArgs,
}

impl OutputArgs {
    /// Nothing is kept: no event lines, no database, no alerts, no fleet.
    pub fn none(&self) -> bool {
        self.events_out.is_none()
            && self.db.is_none()
            && self.alerts.is_none()
            && self.fleet.publish.is_none()
    }
}

/// How the kernel classifies: published services, rate limit, flow
/// timeouts, table and ring sizes (`run` and `replay`).
#[derive(Args, Debug, Clone)]
pub struct ClassifierArgs {
    /// A published service whose inbound traffic is `service`, not an event:
    /// tcp/443, udp/53, tcp/8000-8080, icmp. Repeatable.
    #[arg(long = "service", value_name = "PROTO/PORT")]
    pub services: Vec<Service>,

    /// Events per second one source may cause over the whole sensor before
    /// the kernel aggregates the rest (counts per port, /24 or /48 and
    /// second instead of one event per packet); 0 = unlimited. The
    /// buckets are per CPU (no lock on the hot path), so the budget is split:
    /// each of the C CPUs that run XDP holds N/C events/s and ⌊burst/C⌋ of
    /// burst. A source never gets more than N/s in total, whatever the
    /// receive-side spreading; one whose packets all land on one CPU gets
    /// that CPU's share. Those packets are counted as `suppressed` in the
    /// summaries and kept in aggregates (`aggregated`), drawn and detected
    /// with their counts.
    #[arg(long, default_value_t = Limits::default().rate_limit, verbatim_doc_comment)]
    pub rate_limit: u32,

    /// Events one source may cause at once, over the whole sensor, before
    /// --rate-limit applies (split across CPUs like the rate; at least the
    /// number of CPUs).
    #[arg(long, default_value_t = Limits::default().rate_burst, verbatim_doc_comment)]
    pub rate_burst: u32,

    /// Events per second to one target (destination address, protocol and
    /// port) over the whole sensor before the kernel aggregates the rest:
    /// a flood on one target, however many (spoofed) sources it has, shows
    /// as counts, while scans of other ports and hosts stay events.
    /// 0 = unlimited. Split across CPUs like --rate-limit; shown as
    /// `target_limited`.
    #[arg(long, default_value_t = Limits::default().target_limit, verbatim_doc_comment)]
    pub target_limit: u32,

    /// Events to one target at once before --target-limit applies.
    #[arg(long, default_value_t = Limits::default().target_burst, verbatim_doc_comment)]
    pub target_burst: u32,

    /// Events per second of the whole sensor (the rate the ring buffer,
    /// the store and the detectors are asked to take). Past it, and
    /// whenever the ring buffer is full, unsolicited packets are
    /// aggregated: a flood from everywhere to everything is counted, not
    /// lost. 0 = unlimited (the ring's room is then the only bound).
    /// Split across CPUs; a burst of one second's worth. Shown as
    /// `over_budget` (and `ring_full`).
    #[arg(long, default_value_t = Limits::default().event_budget, verbatim_doc_comment)]
    pub event_budget: u32,

    /// Idle timeout of TCP flows, seconds.
    #[arg(long, default_value_t = Limits::default().tcp_timeout_s)]
    pub tcp_timeout: u64,
    /// Idle timeout of TCP flows after FIN/RST from the inside, seconds.
    #[arg(long, default_value_t = Limits::default().tcp_closing_timeout_s)]
    pub tcp_closing_timeout: u64,
    /// Idle timeout of UDP and UDP-Lite flows, seconds.
    #[arg(long, default_value_t = Limits::default().udp_timeout_s)]
    pub udp_timeout: u64,
    /// Idle timeout of ICMP echo flows, seconds.
    #[arg(long, default_value_t = Limits::default().icmp_timeout_s)]
    pub icmp_timeout: u64,
    /// Idle timeout of other protocols (SCTP, DCCP, GRE...), seconds.
    #[arg(long, default_value_t = Limits::default().other_timeout_s)]
    pub other_timeout: u64,

    /// Also send events for malformed packets.
    #[arg(long)]
    pub emit_malformed: bool,

    /// Do not mark events as `dark`. By default an event whose destination
    /// address never sent a packet out, or whose port never answered anyone
    /// (no SYN-ACK, INIT-ACK, DCCP Response or datagram from it) since the
    /// sensor started,
    /// carries `"dark":"addr"` or `"dark":"port"`, and the detector counts it
    /// as stronger evidence (`dark_weight`). Turn it off where this interface
    /// does not see the inside's answers (asymmetric routing).
    #[arg(long)]
    pub no_dark: bool,

    /// Ring buffer size in MiB (a power of two).
    #[arg(long, default_value_t = 16, value_parser = parse_ring_mib)]
    pub ring_mib: u32,

    /// Entries of the IPv4 flow table (IPv6 gets half, at least 1024).
    #[arg(long, default_value_t = LoadOptions::default().flow_table_size, value_parser = parse_flow_table_size)]
    pub flow_table_size: u32,

    /// Entries of the kernel's aggregate table: one per (source /24 or
    /// /48, protocol, port, second) of a flood past the limits, drained
    /// every half second once the second is over. When it is full, packets
    /// are counted per (protocol, port, second) without their source (a
    /// table a quarter this size); past that they are lost and counted
    /// (`agg_lost`). Memory: about 100 bytes × CPUs per entry.
    #[arg(long, default_value_t = LoadOptions::default().aggregate_entries, value_parser = parse_aggregate_table)]
    pub aggregate_table: u32,
}

fn parse_aggregate_table(s: &str) -> Result<u32, String> {
    let v: u32 = s
        .parse()
        .map_err(|_| format!("`{s}` is not a number of entries"))?;
    if !(1024..=16 << 20).contains(&v) {
        return Err(format!(
            "the aggregate table needs between 1024 and {} entries, not {v}",
            16 << 20
        ));
    }
    Ok(v)
}

fn parse_flow_table_size(s: &str) -> Result<u32, String> {
    let v: u32 = s
        .parse()
        .map_err(|_| format!("`{s}` is not a number of entries"))?;
    if !(1024..=64 << 20).contains(&v) {
        return Err(format!(
            "the flow table needs between 1024 and {} entries, not {v}",
            64 << 20
        ));
    }
    Ok(v)
}

fn parse_ring_mib(s: &str) -> Result<u32, String> {
    let v: u32 = s
        .parse()
        .map_err(|_| format!("`{s}` is not a number of MiB"))?;
    if v == 0 || !v.is_power_of_two() || v > 1024 {
        return Err(format!(
            "ring size must be a power of two between 1 and 1024 MiB, not {v}"
        ));
    }
    Ok(v)
}

impl RunArgs {
    /// The interfaces as one label (`wan0`, `wan0+wan1`): the console's
    /// title and the summary's `iface`.
    pub fn label(&self) -> String {
        self.iface.join("+")
    }

    /// Checks the durations at start, with the flag named, instead of
    /// clamping them later in silence. (Limits are checked by
    /// [`Limits::validate`], sizes by their parsers.)
    pub fn check(&self) -> anyhow::Result<()> {
        use std::time::Duration;
        for (i, name) in self.iface.iter().enumerate() {
            if self.iface[..i].contains(name) {
                anyhow::bail!("--iface {name} is given twice");
            }
        }
        let at_least = [
            (
                "--stats-every",
                Some(self.stats_every),
                Duration::from_millis(100),
            ),
            (
                "--plot-every",
                Some(self.plot_every),
                Duration::from_secs(1),
            ),
            (
                "--plot-window",
                Some(self.plot_window),
                Duration::from_secs(60),
            ),
            ("--retain", self.retain, Duration::from_secs(60)),
            ("--duration", self.duration, Duration::from_millis(1)),
        ];
        // The console's address and token, before anything is loaded.
        if let Some(listen) = self.web {
            let token = self.web_token()?;
            crate::web::WebOptions {
                listen,
                token,
                history: std::sync::Arc::new(crate::store::SqliteHistory(PathBuf::new())),
                label: String::new(),
                file_view: false,
            }
            .check()?;
        }
        for (flag, value, min) in at_least {
            if let Some(v) = value {
                if v.0 < min {
                    anyhow::bail!(
                        "{flag} {v} is too short: it must be at least {}",
                        HumanDuration(min)
                    );
                }
            }
        }
        Ok(())
    }

    /// The console's token, from --token or --token-file.
    pub fn web_token(&self) -> anyhow::Result<Option<String>> {
        match (&self.token, &self.token_file) {
            (Some(t), _) => Ok(Some(t.clone())),
            (None, Some(p)) => Ok(Some(crate::web::read_token_file(p)?)),
            (None, None) => Ok(None),
        }
    }
}

impl ClassifierArgs {
    /// The kernel's limits.
    pub fn limits(&self) -> Limits {
        Limits {
            tcp_timeout_s: self.tcp_timeout,
            tcp_closing_timeout_s: self.tcp_closing_timeout,
            udp_timeout_s: self.udp_timeout,
            icmp_timeout_s: self.icmp_timeout,
            other_timeout_s: self.other_timeout,
            rate_limit: self.rate_limit,
            rate_burst: self.rate_burst,
            target_limit: self.target_limit,
            target_burst: self.target_burst,
            event_budget: self.event_budget,
            emit_malformed: self.emit_malformed,
            service_icmp_echo: false,
            mark_dark: !self.no_dark,
        }
    }

    /// Sizes fixed at load time.
    pub fn load_options(&self) -> LoadOptions {
        LoadOptions {
            ring_bytes: self.ring_mib * 1024 * 1024,
            flow_table_size: self.flow_table_size,
            aggregate_entries: self.aggregate_table,
        }
    }
}

impl clap::ValueEnum for XdpModeChoice {
    fn value_variants<'a>() -> &'a [Self] {
        &[
            XdpModeChoice::Auto,
            XdpModeChoice::Native,
            XdpModeChoice::Skb,
        ]
    }

    fn to_possible_value(&self) -> Option<clap::builder::PossibleValue> {
        use clap::builder::PossibleValue;
        Some(match self {
            XdpModeChoice::Auto => PossibleValue::new("auto")
                .help("Native (driver) mode, falling back to generic (skb) mode"),
            XdpModeChoice::Native => PossibleValue::new("native").help("Native (driver) mode only"),
            XdpModeChoice::Skb => PossibleValue::new("skb").help("Generic (skb) mode"),
        })
    }
}
