//! The `fireplot` command line.

use clap::{Parser, Subcommand};
use fireplot::cmd::run::{run, RunArgs};

/// fireplot: see the unsolicited traffic that hits a WAN interface.
///
/// An XDP program on the WAN interface classifies every inbound packet
/// without conntrack (a TC egress program records the flows the inside
/// opened) and reports each unsolicited packet as an event.
#[derive(Parser, Debug)]
#[command(version, about, long_about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the sensor on a WAN interface (needs root or CAP_BPF + CAP_NET_ADMIN + CAP_PERFMON).
    Run(RunArgs),
}

fn main() -> std::process::ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let cli = Cli::parse();
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
    let result = runtime.block_on(async {
        match cli.command {
            Command::Run(args) => run(args).await,
        }
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
