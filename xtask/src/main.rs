//! Project tasks: `cargo xtask setup|build|run|test|demo|fleet-demo|lab`.

mod build;
mod demo;
mod demo_origins;
mod fleet_demo;
mod fuzz;
mod package;
mod setup;
mod soak;

use anyhow::{bail, Result};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(about = "fireplot's build, test and demo tasks")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install what builds and tests need (rust-src, bpf-linker 0.10.3, Debian packages). Idempotent.
    Setup,
    /// Build the eBPF object (nightly) and the fireplot binary with it embedded.
    Build {
        /// Build fireplot in release mode (the eBPF object is always optimised).
        #[arg(long)]
        release: bool,
    },
    /// Build (release), then run `fireplot ARGS` (needs root).
    Run {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Install what is missing, build, run unit and privileged integration tests.
    Test {
        /// Extra arguments for `cargo test` (e.g. a test name filter).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Build (release) and make a Debian package: target/debian/fireplot_<version>_<arch>.deb
    /// (binary, systemd unit, commented /etc/fireplot/fireplot.toml, man page).
    Package,
    /// Build, bring a lab up, run real scans and normal traffic past the sensor, summarise, tear down.
    Demo {
        /// Namespace prefix of the lab.
        #[arg(long, default_value = "fpdemo")]
        prefix: String,
        /// Folder for the demo's output (default: demo-out/<time>).
        #[arg(long)]
        out: Option<std::path::PathBuf>,
        /// Then serve the web console over the demo's history until Ctrl-C.
        #[arg(long)]
        serve: bool,
    },
    /// The fleet: three lab routers with live sensors publishing to NATS JetStream, a collector
    /// keeping PostgreSQL (both real servers under target/fleet-demo/), scans across the three,
    /// then the fleet-wide alerts and the console's command.
    FleetDemo {
        /// Folder for the output and the servers' data (default: target/fleet-demo/<time>).
        #[arg(long)]
        out: Option<std::path::PathBuf>,
        /// Then serve the fleet's console until Ctrl-C.
        #[arg(long)]
        serve: bool,
    },
    /// Measure: XDP ns/packet per path next to a trivial XDP_PASS, TC egress cost.
    Bench {
        /// Fewer repeats (a quick look, not a figure to quote).
        #[arg(long)]
        quick: bool,
    },
    /// Run the property tests (XDP frames, event lines, detector config)
    /// round after round with fresh seeds and many more cases.
    Fuzz {
        /// How long to run.
        #[arg(long, default_value_t = 10)]
        minutes: u64,
    },
    /// Run the lab sensor with --db, --retain and live detection under a
    /// steady mixed load; print RSS, fds, database size, events stored and
    /// every loss counter at start and every minute.
    Soak {
        /// How long to run.
        #[arg(long, default_value_t = 30)]
        minutes: u64,
        /// Namespace prefix of the lab.
        #[arg(long, default_value = "fpsoak")]
        prefix: String,
    },
    /// Bring the lab network up or down.
    Lab {
        #[arg(value_enum)]
        action: LabAction,
        /// Namespace prefix of the lab.
        #[arg(long, default_value = "fp")]
        prefix: String,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum LabAction {
    Up,
    Down,
}

fn require_root(what: &str) -> Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("`cargo xtask {what}` needs root (network namespaces, XDP); try `sudo -E cargo xtask {what}`");
    }
    Ok(())
}

fn main() -> Result<()> {
    match Cli::parse().task {
        Task::Setup => setup::setup(),
        Task::Build { release } => build::build(release).map(|_| ()),
        Task::Run { args } => {
            setup::ensure()?;
            let bin = build::build(true)?;
            require_root("run")?;
            let status = std::process::Command::new(&bin).args(&args).status()?;
            std::process::exit(status.code().unwrap_or(1));
        }
        Task::Test { args } => {
            setup::ensure()?;
            let bin = build::build(true)?;
            // The package test installs and runs this one.
            let deb = package::package(&bin)?;
            build::test(&args, Some(&deb))
        }
        Task::Package => {
            setup::ensure()?;
            let bin = build::build(true)?;
            let deb = package::package(&bin)?;
            println!("{}", deb.display());
            Ok(())
        }
        Task::Demo { prefix, out, serve } => {
            require_root("demo")?;
            setup::ensure()?;
            let bin = build::build(true)?;
            demo::demo(&prefix, out, &bin, serve)
        }
        Task::FleetDemo { out, serve } => {
            require_root("fleet-demo")?;
            setup::ensure()?;
            let bin = build::build(true)?;
            fleet_demo::fleet_demo(out, &bin, serve)
        }
        Task::Bench { quick } => {
            require_root("bench")?;
            setup::ensure()?;
            build::build(true)?;
            build::bench(quick)
        }
        Task::Fuzz { minutes } => {
            require_root("fuzz")?;
            setup::ensure()?;
            build::build(true)?;
            fuzz::fuzz(minutes)
        }
        Task::Soak { minutes, prefix } => {
            require_root("soak")?;
            setup::ensure()?;
            let bin = build::build(true)?;
            soak::soak(&prefix, minutes, &bin)
        }
        Task::Lab { action, prefix } => {
            require_root("lab")?;
            match action {
                LabAction::Up => {
                    let lab = fireplot_tests::Lab::up(&prefix)?;
                    println!(
                        "lab `{prefix}` is up: namespaces {}, {}, {}; sensor interface {}/wan0",
                        lab.ns(fireplot_tests::Node::Inet),
                        lab.ns(fireplot_tests::Node::Router),
                        lab.ns(fireplot_tests::Node::Lan),
                        lab.ns(fireplot_tests::Node::Router)
                    );
                    lab.keep();
                    Ok(())
                }
                LabAction::Down => {
                    fireplot_tests::teardown(&prefix);
                    println!("lab `{prefix}` is down");
                    Ok(())
                }
            }
        }
    }
}
