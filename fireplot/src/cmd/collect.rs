//! `fireplot collect`: the fleet's centre, from NATS JetStream into
//! PostgreSQL (the engine is `fleet::collect`).

use anyhow::Result;
use clap::Args;

use super::args::NatsArgs;
use crate::{
    fleet::collect::{self, CollectOptions},
    units::HumanDuration,
};

/// Options of `fireplot collect`.
#[derive(Args, Debug, Clone)]
pub struct CollectArgs {
    /// The NATS server the sensors publish to (nats://HOST:PORT, several
    /// separated by commas).
    #[arg(long, value_name = "URL")]
    pub nats: String,

    /// The PostgreSQL database, e.g.
    /// postgres://fireplot@127.0.0.1:5432/fireplot (a libpq-style
    /// "host=... user=..." string also works). Created tables: sensors,
    /// interfaces, events (partitioned by day), alerts, counters, origins.
    /// An error no retry mends (a failed login, no such database, no
    /// permission, a table that is not fireplot's: SQLSTATE classes 28, 3D,
    /// 42, ...) stops the collector with exit status 1 and the reason; a
    /// lost connection or a serialization failure is waited out.
    #[arg(long, value_name = "URL")]
    pub postgres: String,

    /// The durable consumer's name; collectors with the same name share
    /// the work.
    #[arg(long, value_name = "NAME", default_value = "fireplot-collect")]
    pub consumer: String,

    /// Messages (sensor batches) per transaction at most.
    #[arg(long, value_name = "N", default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub batch: u64,

    /// How long the broker waits for an acknowledgement before it sends
    /// a batch again (to this or another collector). Longer than a
    /// transaction ever takes.
    #[arg(long, value_name = "DURATION", default_value = "30s")]
    pub ack_wait: HumanDuration,

    /// Drop the day partitions of events older than this (checked at
    /// start and hourly). Without it everything is kept.
    #[arg(long, value_name = "DURATION")]
    pub retain: Option<HumanDuration>,

    /// At start, how long to wait for the broker and the database before
    /// giving up with an error (later outages are waited out).
    #[arg(long, value_name = "DURATION", default_value = "30s")]
    pub wait_for_servers: HumanDuration,

    /// Stop after this long.
    #[arg(long, value_name = "DURATION")]
    pub duration: Option<HumanDuration>,

    /// Stop once nothing has arrived for this long (an import, a test).
    #[arg(long, value_name = "DURATION")]
    pub exit_when_idle: Option<HumanDuration>,

    /// How often to log what was collected and how far behind the
    /// collector is.
    #[arg(long, value_name = "DURATION", default_value = "60s")]
    pub stats_every: HumanDuration,

    #[command(flatten)]
    pub nats_opts: NatsArgs,

    /// Tests only: abort right after this many commits, before their
    /// acknowledgement (the worst moment for a crash).
    #[arg(long, hide = true)]
    pub crash_after_commits: Option<u64>,
}

impl CollectArgs {
    pub fn options(&self) -> CollectOptions {
        CollectOptions {
            nats: self.nats.clone(),
            postgres: self.postgres.clone(),
            consumer: self.consumer.clone(),
            batch: self.batch,
            ack_wait: self.ack_wait.0,
            retain: self.retain.map(|d| d.0),
            wait_for_servers: self.wait_for_servers.0,
            duration: self.duration.map(|d| d.0),
            exit_when_idle: self.exit_when_idle.map(|d| d.0),
            stats_every: self.stats_every.0,
            nats_opts: self.nats_opts.options(),
            crash_after_commits: self.crash_after_commits,
        }
    }
}

/// Collects until a signal, --duration or --exit-when-idle, then says
/// what it did: a line on stderr, a JSON object on stdout.
pub async fn collect(args: CollectArgs) -> Result<()> {
    let c = collect::collect(args.options()).await?;
    eprintln!("{}", collect::line(&c));
    println!("{}", serde_json::to_string(&c).expect("serialises"));
    Ok(())
}
