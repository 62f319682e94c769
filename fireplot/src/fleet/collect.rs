//! The collector (`fireplot collect`, whose options are `cmd::collect`'s):
//! takes the sensors' batches from JetStream into PostgreSQL. A durable pull consumer hands out batches; each fetch is
//! written in one transaction and acknowledged only after the commit, so
//! a crash of the collector or the database loses nothing (the broker
//! sends unacknowledged batches again) and duplicates nothing (rows are
//! keyed by sensor and sequence number). Several collectors may share the
//! consumer: the broker spreads the batches between them.

use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer::pull, AckKind};
use futures_util::StreamExt;
use thiserror::Error;
use tokio::signal::unix::{signal, SignalKind};

use super::{
    nats::{check_url, ensure_stream, NatsError, NatsOptions},
    pg::{migrate, redact, PgError, Writer},
    wire::{Batch, LineError},
};

/// What `fireplot collect` does (its options are `cmd::collect`'s).
#[derive(Debug, Clone)]
pub struct CollectOptions {
    /// The NATS server(s) the sensors publish to.
    pub nats: String,
    /// The PostgreSQL database (URL or libpq-style string).
    pub postgres: String,
    /// The durable consumer's name; collectors with the same name share
    /// the work.
    pub consumer: String,
    /// Messages (sensor batches) per transaction at most.
    pub batch: u64,
    /// How long the broker waits for an acknowledgement before it sends
    /// a batch again.
    pub ack_wait: Duration,
    /// Drop the day partitions of events older than this.
    pub retain: Option<Duration>,
    /// At start, how long to wait for the broker and the database.
    pub wait_for_servers: Duration,
    /// Stop after this long.
    pub duration: Option<Duration>,
    /// Stop once nothing has arrived for this long.
    pub exit_when_idle: Option<Duration>,
    /// How often to log what was collected.
    pub stats_every: Duration,
    pub nats_opts: NatsOptions,
    /// Tests only: abort right after this many commits, before their
    /// acknowledgement.
    pub crash_after_commits: Option<u64>,
}

/// Errors of the collector: at its start, or one no retry mends (later
/// outages are waited out).
#[derive(Debug, Error)]
pub enum CollectError {
    /// The NATS address, a connection option, or the stream.
    #[error(transparent)]
    Nats(#[from] NatsError),
    /// The database did not answer.
    #[error("cannot connect to PostgreSQL at `{url}`")]
    PgConnect {
        /// Without its password.
        url: String,
        #[source]
        source: tokio_postgres::Error,
    },
    /// The schema could not be created or is newer.
    #[error(transparent)]
    Pg(#[from] PgError),
    /// The broker did not answer.
    #[error("cannot connect to NATS at `{url}`")]
    NatsConnect {
        url: String,
        #[source]
        source: async_nats::ConnectError,
    },
    /// The durable consumer could not be made.
    #[error("cannot create the consumer `{name}`")]
    Consumer {
        name: String,
        #[source]
        source: async_nats::jetstream::stream::ConsumerError,
    },
    /// The database refuses what the collector writes, and would on every
    /// retry (a schema that is not fireplot's, no permission): the
    /// collector stops; the batches stay in the stream for a collector
    /// that can store them.
    #[error("PostgreSQL refuses the collector's writes{}; a retry would not change that, so the collector stops (the batches stay in the stream)", code.as_ref().map(|c| format!(" (SQLSTATE {c})")).unwrap_or_default())]
    Refused {
        code: Option<String>,
        #[source]
        source: PgError,
    },
    /// SIGINT or SIGTERM could not be caught.
    #[error("cannot install a signal handler")]
    Signal(#[source] std::io::Error),
}

impl CollectError {
    /// Waiting would not help: the server answered with an error that
    /// comes back on every try (a failed login, no such database).
    fn is_permanent(&self) -> bool {
        match self {
            CollectError::PgConnect { source, .. } => {
                super::pg::sqlstate(source).is_some_and(super::pg::permanent_sqlstate)
            }
            CollectError::Pg(e) | CollectError::Refused { source: e, .. } => e.is_permanent(),
            _ => false,
        }
    }

    fn refused(source: PgError) -> CollectError {
        let code = match &source {
            PgError::Sql { source, .. } => super::pg::sqlstate(source).map(String::from),
            PgError::TooNew { .. } => None,
        };
        CollectError::Refused { code, source }
    }
}

/// What a collector did.
#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub struct Collected {
    pub messages: u64,
    pub transactions: u64,
    pub events: u64,
    pub events_duplicate: u64,
    pub alerts: u64,
    pub counters: u64,
    pub lines_duplicate: u64,
    pub bad_messages: u64,
    /// Alert or counter lines dropped from batches otherwise stored: JSON
    /// PostgreSQL refuses ([`super::wire::check_line`]).
    pub bad_lines: u64,
    pub failed_transactions: u64,
    pub pending: u64,
    /// Which reasons for a bad line were logged already (one bit each, in
    /// the order of `LineError::ALL`): each is logged once.
    #[serde(skip)]
    bad_lines_said: u8,
}

impl Collected {
    /// Counts a stored batch's bad lines; logs the first of each reason.
    fn bad_lines(&mut self, subject: &str, b: &Batch) {
        for &(i, why) in &b.bad_lines {
            self.bad_lines += 1;
            let bit = LineError::ALL.iter().position(|&r| r == why).unwrap_or(0);
            if self.bad_lines_said & (1 << bit) == 0 {
                self.bad_lines_said |= 1 << bit;
                log::warn!(
                    "a line on `{subject}` (sensor {}, seq {}) {why}; dropped, the rest of its batch stored (further lines dropped for this reason are only counted)",
                    b.sensor,
                    b.first_seq + i as u64
                );
            }
        }
    }
}

async fn connect_pg(url: &str) -> Result<tokio_postgres::Client, CollectError> {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .map_err(|source| CollectError::PgConnect {
            url: redact(url),
            source,
        })?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            log::warn!("PostgreSQL connection: {e}");
        }
    });
    Ok(client)
}

/// Retries `f` until it works or `limit` has passed (then its last
/// error); an error that `permanent` says no retry mends at once.
async fn patiently<T, E, F, Fut>(
    what: &str,
    limit: Duration,
    permanent: impl Fn(&E) -> bool,
    mut f: F,
) -> Result<T, E>
where
    E: std::error::Error,
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, E>>,
{
    let started = Instant::now();
    let mut delay = Duration::from_millis(200);
    loop {
        match f().await {
            Ok(v) => return Ok(v),
            Err(e) if !permanent(&e) && started.elapsed() + delay < limit => {
                log::warn!("{what}: {}; retrying", crate::error_chain(&e));
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
            Err(e) => return Err(e),
        }
    }
}

/// Collects until a signal, `duration` or `exit_when_idle`; returns what
/// it did.
pub async fn collect(args: CollectOptions) -> Result<Collected, CollectError> {
    check_url(&args.nats)?;
    let wait = args.wait_for_servers;
    let mut writer = Writer::new(
        patiently("PostgreSQL", wait, CollectError::is_permanent, || {
            connect_pg(&args.postgres)
        })
        .await?,
    );
    migrate(&mut writer.client).await?;
    log::info!("PostgreSQL at {} ready", redact(&args.postgres));
    let opts = args.nats_opts.clone();
    let client = patiently(
        "NATS",
        wait,
        |_| false,
        || async {
            opts.options("fireplot collect", false)
                .await?
                .connect(args.nats.as_str())
                .await
                .map_err(|source| CollectError::NatsConnect {
                    url: args.nats.clone(),
                    source,
                })
        },
    )
    .await?;
    let js = jetstream::new(client.clone());
    let stream = patiently(
        "JetStream",
        wait,
        |_| false,
        || ensure_stream(&js, &args.nats_opts.stream),
    )
    .await?;
    let mut consumer: jetstream::consumer::PullConsumer = stream
        .get_or_create_consumer(
            &args.consumer,
            pull::Config {
                durable_name: Some(args.consumer.clone()),
                ack_policy: jetstream::consumer::AckPolicy::Explicit,
                ack_wait: args.ack_wait,
                max_ack_pending: 10_000,
                ..Default::default()
            },
        )
        .await
        .map_err(|source| CollectError::Consumer {
            name: args.consumer.clone(),
            source,
        })?;
    log::info!(
        "collecting from {} (stream {}, consumer {}) into PostgreSQL",
        args.nats,
        args.nats_opts.stream,
        args.consumer
    );
    if let Some(r) = args.retain {
        retain(&mut writer, r).await;
    }
    let mut term = signal(SignalKind::terminate()).map_err(CollectError::Signal)?;
    let mut int = signal(SignalKind::interrupt()).map_err(CollectError::Signal)?;
    let started = Instant::now();
    let mut last_message = Instant::now();
    let mut last_stats = Instant::now();
    let mut last_retention = Instant::now();
    let mut c = Collected::default();
    let mut backoff = Duration::from_millis(200);
    loop {
        if args.duration.is_some_and(|d| started.elapsed() >= d)
            || args
                .exit_when_idle
                .is_some_and(|d| last_message.elapsed() >= d)
        {
            break;
        }
        let fetch = async {
            let mut msgs = Vec::new();
            let mut s = consumer
                .batch()
                .max_messages(args.batch as usize)
                .expires(Duration::from_millis(500))
                .messages()
                .await?;
            while let Some(m) = s.next().await {
                msgs.push(m?);
            }
            Ok::<_, async_nats::Error>(msgs)
        };
        let msgs = tokio::select! {
            _ = term.recv() => break,
            _ = int.recv() => break,
            m = fetch => m,
        };
        let msgs = match msgs {
            Ok(m) => m,
            Err(e) => {
                log::warn!("NATS: cannot fetch: {e}; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        if !msgs.is_empty() {
            last_message = Instant::now();
            let stored = take(
                &mut writer,
                &args.postgres,
                msgs,
                &mut c,
                args.crash_after_commits,
            )
            .await;
            match stored {
                Taken::Stored => backoff = Duration::from_millis(200),
                Taken::Refused(e) => {
                    // The batches given back reach the broker before the
                    // exit: sent again at once, not after --ack-wait.
                    if let Err(e) = client.flush().await {
                        log::warn!("NATS: {e}");
                    }
                    log::info!("{}", line(&c));
                    return Err(CollectError::refused(e));
                }
                Taken::Failed => {
                    tokio::select! {
                        _ = term.recv() => break,
                        _ = int.recv() => break,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
        if last_stats.elapsed() >= args.stats_every {
            last_stats = Instant::now();
            c.pending = consumer.info().await.map(|i| i.num_pending).unwrap_or(0);
            log::info!("{}", line(&c));
        }
        if let Some(r) = args.retain {
            if last_retention.elapsed() >= Duration::from_secs(3600) {
                last_retention = Instant::now();
                retain(&mut writer, r).await;
            }
        }
    }
    c.pending = consumer.info().await.map(|i| i.num_pending).unwrap_or(0);
    Ok(c)
}

/// What a collector did, in a line.
pub fn line(c: &Collected) -> String {
    format!(
        "collect: {} messages: {} events stored ({} already there), {} alerts, {} summaries ({} already there), {} bad messages, {} bad lines, {} failed transactions; {} messages pending",
        c.messages,
        c.events,
        c.events_duplicate,
        c.alerts,
        c.counters,
        c.lines_duplicate,
        c.bad_messages,
        c.bad_lines,
        c.failed_transactions,
        c.pending
    )
}

async fn retain(w: &mut Writer, keep: Duration) {
    let from = crate::record::now_ns() - keep.as_nanos() as i64;
    match w.drop_older(from).await {
        Ok(d) if !d.is_empty() => log::info!("retention: dropped {}", d.join(", ")),
        Ok(_) => {}
        Err(e) => log::warn!("retention: {}", crate::error_chain(&e)),
    }
}

/// What became of one fetch.
enum Taken {
    /// Stored (or dropped as not a batch) and acknowledged.
    Stored,
    /// Not stored, for a reason that may pass: the caller waits and goes
    /// on.
    Failed,
    /// Not stored, for a reason that does not pass (`PgError::is_permanent`):
    /// the caller stops.
    Refused(PgError),
}

/// Writes one fetch and acknowledges it after the commit. On failure
/// nothing is acknowledged (the broker sends it again), the database
/// connection is made again when it broke, and `Failed` is returned (the
/// caller waits before the next fetch), or `Refused` when no retry would
/// mend it.
async fn take(
    writer: &mut Writer,
    url: &str,
    msgs: Vec<jetstream::Message>,
    c: &mut Collected,
    crash_after: Option<u64>,
) -> Taken {
    let mut batches = Vec::with_capacity(msgs.len());
    let mut good = Vec::with_capacity(msgs.len());
    let mut sseqs = Vec::with_capacity(msgs.len());
    for m in msgs {
        match Batch::decode(&m.payload) {
            Ok(b) => {
                batches.push(b);
                sseqs.push(m.info().map(|i| i.stream_sequence).unwrap_or(0));
                good.push(m);
            }
            Err(e) => {
                c.bad_messages += 1;
                log::warn!(
                    "a message on `{}` is not a fireplot batch ({e}); dropped",
                    m.subject
                );
                let _ = m.ack_with(AckKind::Term).await;
            }
        }
    }
    if batches.is_empty() {
        return Taken::Stored;
    }
    match writer.write(&batches, &sseqs).await {
        Ok(w) => {
            if crash_after.is_some_and(|n| c.transactions + 1 >= n) {
                // Fault injection for the tests: the worst moment to
                // crash, committed but not acknowledged.
                log::error!(
                    "--crash-after-commits: aborting after the commit, before the acknowledgement"
                );
                std::process::abort();
            }
            c.transactions += 1;
            for m in &good {
                if let Err(e) = m.ack().await {
                    // Sent again later and found already stored.
                    log::debug!("ack: {e}");
                }
            }
            c.messages += good.len() as u64;
            for (m, b) in good.iter().zip(&batches) {
                c.bad_lines(&m.subject, b);
            }
            c.events += w.events;
            c.events_duplicate += w.events_duplicate;
            c.alerts += w.alerts;
            c.counters += w.counters;
            c.lines_duplicate += w.duplicates;
            Taken::Stored
        }
        Err(e) => {
            c.failed_transactions += 1;
            for m in &good {
                let _ = m.ack_with(AckKind::Nak(Some(Duration::from_secs(1)))).await;
            }
            if e.is_permanent() {
                // Said once, by the caller's error.
                return Taken::Refused(e);
            }
            log::warn!(
                "PostgreSQL: {}; {} batches not stored, the broker sends them again",
                crate::error_chain(&e),
                good.len()
            );
            // Not acknowledged: sent again after a moment (to this
            // collector or another).
            if writer.client.is_closed() {
                match connect_pg(url).await {
                    Ok(client) => {
                        *writer = Writer::new(client);
                        log::info!("PostgreSQL: connected again");
                    }
                    Err(e) => log::warn!("{}", crate::error_chain(&e)),
                }
            }
            Taken::Failed
        }
    }
}
