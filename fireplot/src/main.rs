//! The `fireplot` command line.

use clap::{Parser, Subcommand};
use fireplot::cmd::{
    collect::{collect, CollectArgs},
    config::{config, expand, ConfigArgs},
    detect::{detect, DetectCmdArgs},
    enrich::{enrich, EnrichCmdArgs},
    export::{export, ExportArgs},
    plot::{plot, PlotArgs},
    report::{report, ReportArgs},
    run::{ingest, replay, run, IngestArgs, ReplayArgs, RunArgs},
    serve::{serve, ServeArgs},
    top::{run_top, TopArgs},
};

/// fireplot: see the unsolicited traffic that hits a WAN interface.
///
/// An XDP program on the WAN interface classifies every inbound packet
/// without conntrack (a TC egress program records the flows the inside
/// opened) and reports each unsolicited packet as an event.
#[derive(Parser, Debug)]
#[command(version, long_version = LONG_VERSION, about, long_about, after_long_help = ATTRIBUTION)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// `--version`: the version and where enrichment data comes from.
const LONG_VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    "\n\nEnrichment (--geoip, --asn, --tag) reads only files you give it. ",
    "Country and ASN test data, when used: IP to Country Lite and IP to ASN Lite by DB-IP ",
    "(https://db-ip.com), and IP to AS Number by Route Views (https://www.routeviews.org), ",
    "CC BY 4.0, as packaged by ip-location-db (https://github.com/sapics/ip-location-db)."
);

const ATTRIBUTION: &str = fireplot::enrich::ATTRIBUTION;

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the sensor on a WAN interface (needs root or CAP_BPF + CAP_NET_ADMIN + CAP_PERFMON).
    #[command(args_override_self = true)]
    Run(Box<RunArgs>),
    /// The daemon's configuration file: `config example` prints one, `config check FILE` validates one.
    Config(ConfigArgs),
    /// Replay a pcap/pcapng capture through the sensor's own kernel programs, on the capture's clock (needs CAP_BPF).
    Replay(Box<ReplayArgs>),
    /// Read firewall logs (iptables, nftables, Mikrotik, journald) or event lines into the outputs of run. No root needed.
    Ingest(Box<IngestArgs>),
    /// Render a fireplot (PNG or SVG) from the history database or an events file. No root needed.
    Plot(PlotArgs),
    /// One day written up: its fireplot, attacks, top actors (new and recurring), surges, new ports, the 7 days before (text, Markdown or one HTML file). No root needed.
    Report(Box<ReportArgs>),
    /// Top destination ports, sources and protocols over a window. No root needed.
    Top(TopArgs),
    /// Run the scan detectors over stored or saved events; alerts as JSON lines. No root needed.
    Detect(DetectCmdArgs),
    /// The web console over the history: live fireplot, day pages, hover, alerts, /metrics. No root needed.
    Serve(ServeArgs),
    /// Export events for other tools (Logstalgia). No root needed.
    Export(ExportArgs),
    /// Look up who every stored source is (--geoip, --asn, --tag) and keep it in the database. No root needed.
    Enrich(EnrichCmdArgs),
    /// The fleet's centre: take what sensors publish (`run --publish`) from NATS JetStream into PostgreSQL, each batch once. No root needed.
    Collect(Box<CollectArgs>),
}

fn main() -> std::process::ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    // `run --config FILE`: the file's settings become arguments, ahead of the command line's.
    let argv = match expand(std::env::args_os().collect()) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("error: {e:#}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let cli = Cli::parse_from(argv);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = match cli.command {
        Command::Run(args) => runtime.block_on(run(*args)),
        Command::Replay(args) => runtime.block_on(replay(*args)),
        Command::Ingest(args) => runtime.block_on(ingest(*args)),
        Command::Config(args) => config(&args),
        Command::Plot(args) => plot(&args),
        Command::Top(args) => run_top(&args),
        Command::Report(args) => report(&args),
        Command::Detect(args) => detect(&args),
        Command::Serve(args) => runtime.block_on(serve(args)),
        Command::Collect(args) => runtime.block_on(collect(*args)),
        Command::Export(args) => export(&args),
        Command::Enrich(args) => enrich(&args),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
