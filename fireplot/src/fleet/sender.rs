//! The publisher's task: takes the batches the sinks hand over, sends
//! each to JetStream and waits for its acknowledgement, spools what the
//! broker cannot take, and drains the spool oldest first when it can.

use std::{
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Condvar, Mutex, OnceLock,
    },
    time::Duration,
};

use async_nats::jetstream::{self, context::PublishError, message::PublishMessage};
use thiserror::Error;
use tokio::sync::mpsc;

use super::{
    nats::ensure_stream,
    spool::{Sequence, Spool},
    wire::Kind,
};

/// How long one publish may wait for the broker's acknowledgement.
pub(super) const ACK_TIMEOUT: Duration = Duration::from_secs(3);
/// At the end of a run, how long the spool may take to drain.
const CLOSE_DRAIN: Duration = Duration::from_secs(10);

/// Why the broker did not take a batch.
#[derive(Debug, Error)]
pub(super) enum SendError {
    /// No acknowledgement within `ACK_TIMEOUT`.
    #[error("no acknowledgement in time")]
    Timeout(#[source] tokio::time::error::Elapsed),
    /// The broker answered with an error.
    #[error("the broker refused the batch")]
    Refused(#[source] PublishError),
}

pub(super) struct Job {
    pub(super) first_seq: u64,
    pub(super) items: u64,
    pub(super) kind: Kind,
    pub(super) bytes: Vec<u8>,
}

pub(super) struct State {
    pub(super) seq: Sequence,
    pub(super) spool: Spool,
    pub(super) interfaces: Vec<(u32, String)>,
}

#[derive(Default)]
pub(super) struct Counts {
    pub(super) published_batches: AtomicU64,
    pub(super) published_items: AtomicU64,
    pub(super) publish_errors: AtomicU64,
    pub(super) queued_items: AtomicU64,
    pub(super) spool_errors: AtomicU64,
    /// Signalled when queued items are taken (a file input waits on it).
    pub(super) room: (Mutex<()>, Condvar),
}

impl Counts {
    /// The task took a job: `items` fewer queued.
    fn taken(&self, items: u64) {
        self.queued_items.fetch_sub(items, Ordering::Relaxed);
        self.room.1.notify_all();
    }
}

/// A file input's publisher: a full spool waits for the broker.
pub(super) struct Waiting {
    /// How long a batch may wait for room in the spool.
    pub(super) give_up: Duration,
    /// Why it gave up, for the input to stop.
    pub(super) failure: Arc<OnceLock<String>>,
}

pub(super) fn spool(s: &mut Spool, j: &Job, counts: &Counts) {
    match s.push(j.first_seq, j.items, &j.bytes) {
        Ok(true) => {}
        Ok(false) => log::warn!(
            "fleet: the spool is full; {} {} (from sequence {}) dropped and counted",
            j.items,
            j.kind.subject_part(),
            j.first_seq
        ),
        Err(e) => {
            counts.spool_errors.fetch_add(1, Ordering::Relaxed);
            log::error!("fleet: {}; {} items lost", crate::error_chain(&e), j.items);
        }
    }
}

async fn publish(
    js: &jetstream::Context,
    sensor: &str,
    kind: Kind,
    first_seq: u64,
    bytes: Vec<u8>,
) -> Result<(), SendError> {
    let subject = format!("fireplot.{sensor}.{}", kind.subject_part());
    let msg = PublishMessage::build()
        .payload(bytes.into())
        .message_id(format!("{sensor}-{first_seq}"));
    let ack = tokio::time::timeout(ACK_TIMEOUT, async {
        js.send_publish(subject, msg).await?.await
    })
    .await
    .map_err(SendError::Timeout)?;
    ack.map_err(SendError::Refused)?;
    Ok(())
}

fn kind_of(bytes: &[u8]) -> Kind {
    match bytes.get(4) {
        Some(2) => Kind::Alerts,
        Some(3) => Kind::Counters,
        _ => Kind::Events,
    }
}

/// What sending the spool's oldest batch did.
enum Sent {
    /// Taken by the broker (and removed from the spool).
    Yes,
    /// The spool is empty.
    Empty,
    /// Not now: the broker refused or did not answer, or the spool could
    /// not be read (counted and logged).
    Failed,
}

/// Sends the spool's oldest batch and removes it once acknowledged.
async fn send_oldest(
    js: &jetstream::Context,
    sensor: &str,
    state: &Mutex<State>,
    counts: &Counts,
) -> Sent {
    let oldest = state.lock().expect("state").spool.oldest();
    let (first_seq, items, bytes) = match oldest {
        Ok(Some(x)) => x,
        Ok(None) => return Sent::Empty,
        Err(e) => {
            log::error!("fleet: {}", crate::error_chain(&e));
            counts.spool_errors.fetch_add(1, Ordering::Relaxed);
            return Sent::Failed;
        }
    };
    let kind = kind_of(&bytes);
    match publish(js, sensor, kind, first_seq, bytes).await {
        Ok(()) => {
            counts.published_batches.fetch_add(1, Ordering::Relaxed);
            counts.published_items.fetch_add(items, Ordering::Relaxed);
            match state.lock().expect("state").spool.pop() {
                Ok(()) => Sent::Yes,
                Err(e) => {
                    log::error!("fleet: {}", crate::error_chain(&e));
                    counts.spool_errors.fetch_add(1, Ordering::Relaxed);
                    Sent::Failed
                }
            }
        }
        Err(e) => {
            counts.publish_errors.fetch_add(1, Ordering::Relaxed);
            log::debug!("fleet: spool not drained yet: {}", crate::error_chain(&e));
            Sent::Failed
        }
    }
}

/// A file input's batch and a full spool: sends the spool's oldest
/// batches until the batch fits, for up to the bound. False: it still does
/// not fit (the broker is away); the input is told to stop.
async fn make_room(
    js: &jetstream::Context,
    sensor: &str,
    state: &Mutex<State>,
    counts: &Counts,
    bytes: u64,
    w: &Waiting,
) -> bool {
    let started = tokio::time::Instant::now();
    let mut said = false;
    loop {
        if state.lock().expect("state").spool.has_room(bytes) {
            return true;
        }
        if w.failure.get().is_some() {
            return false;
        }
        if !said {
            log::warn!(
                "fleet: the spool is full; the input waits for the broker to take some of it (up to {} s)",
                w.give_up.as_secs()
            );
            said = true;
        }
        if started.elapsed() >= w.give_up {
            let _ = w.failure.set(format!(
                "the fleet's spool stayed full for {} s (the broker does not take it)",
                w.give_up.as_secs()
            ));
            counts.room.1.notify_all();
            return false;
        }
        if !matches!(send_oldest(js, sensor, state, counts).await, Sent::Yes) {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// Spools a job the broker cannot take now. A file input's first waits
/// for room ([`make_room`]); past the bound, or for a live input, a full
/// spool drops it (counted).
async fn keep(
    js: &jetstream::Context,
    sensor: &str,
    state: &Mutex<State>,
    counts: &Counts,
    j: &Job,
    waiting: Option<&Waiting>,
) {
    if let Some(w) = waiting {
        make_room(js, sensor, state, counts, j.bytes.len() as u64, w).await;
    }
    spool(&mut state.lock().expect("state").spool, j, counts);
}

#[expect(
    clippy::too_many_arguments,
    reason = "the task's whole context, given once at its start"
)]
pub(super) async fn run(
    mut rx: mpsc::Receiver<Job>,
    client: async_nats::Client,
    js: jetstream::Context,
    stream: String,
    sensor: String,
    state: Arc<Mutex<State>>,
    counts: Arc<Counts>,
    waiting: Option<Waiting>,
) {
    let mut have_stream = false;
    // Until this instant the broker is taken to be away (no waiting on it).
    let mut away_until = tokio::time::Instant::now();
    let mut closing = false;
    loop {
        let job = if closing {
            None
        } else {
            let spooled = !state.lock().expect("state").spool.is_empty();
            let wait = if spooled {
                away_until
                    .saturating_duration_since(tokio::time::Instant::now())
                    .max(Duration::from_millis(50))
            } else {
                Duration::from_secs(3600)
            };
            match tokio::time::timeout(wait, rx.recv()).await {
                Ok(Some(j)) => Some(j),
                Ok(None) => {
                    closing = true;
                    None
                }
                Err(_) => None,
            }
        };
        let connected = client.connection_state() == async_nats::connection::State::Connected;
        if !connected && tokio::time::Instant::now() >= away_until {
            // Not connected: no need to wait for an acknowledgement to know.
            away_until = tokio::time::Instant::now() + Duration::from_millis(500);
        }
        let up = tokio::time::Instant::now() >= away_until;
        if up && !have_stream {
            let why = match tokio::time::timeout(ACK_TIMEOUT, ensure_stream(&js, &stream)).await {
                Ok(Ok(_)) => None,
                Ok(Err(e)) => Some(crate::error_chain(&e)),
                Err(_) => Some("the broker does not answer".to_string()),
            };
            match why {
                None => have_stream = true,
                Some(w) => {
                    log::warn!("fleet: {w}; spooling until it does");
                    away_until = tokio::time::Instant::now() + Duration::from_secs(1);
                }
            }
        }
        let up = up && have_stream;
        if let Some(j) = job {
            counts.taken(j.items);
            // Behind what is spooled (order), or the broker is away.
            let behind = !up || !state.lock().expect("state").spool.is_empty();
            if behind {
                keep(&js, &sensor, &state, &counts, &j, waiting.as_ref()).await;
            } else {
                match publish(&js, &sensor, j.kind, j.first_seq, j.bytes.clone()).await {
                    Ok(()) => {
                        counts.published_batches.fetch_add(1, Ordering::Relaxed);
                        counts.published_items.fetch_add(j.items, Ordering::Relaxed);
                    }
                    Err(e) => {
                        counts.publish_errors.fetch_add(1, Ordering::Relaxed);
                        log::warn!(
                            "fleet: {}; spooling until the broker is back",
                            crate::error_chain(&e)
                        );
                        away_until = tokio::time::Instant::now() + Duration::from_secs(1);
                        keep(&js, &sensor, &state, &counts, &j, waiting.as_ref()).await;
                    }
                }
            }
        }
        // Drain the spool, oldest first, while the broker takes it.
        while up && tokio::time::Instant::now() >= away_until {
            match send_oldest(&js, &sensor, &state, &counts).await {
                Sent::Yes => {}
                Sent::Empty => break,
                Sent::Failed => {
                    away_until = tokio::time::Instant::now() + Duration::from_secs(1);
                    break;
                }
            }
            // New batches wait behind the spool, but are not starved of
            // their place in it: take them in between.
            if !rx.is_empty() {
                break;
            }
        }
        if closing {
            // The channel is empty and closed: every batch was sent or
            // spooled. Give the broker a few seconds to take the spool
            // (a short run may end before the connection is even up);
            // what it does not take stays for the next start.
            let deadline = tokio::time::Instant::now() + CLOSE_DRAIN;
            while !state.lock().expect("state").spool.is_empty()
                && tokio::time::Instant::now() < deadline
            {
                let connected =
                    client.connection_state() == async_nats::connection::State::Connected;
                if !connected || !have_stream {
                    if connected {
                        have_stream = ensure_stream(&js, &stream).await.is_ok();
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
                match send_oldest(&js, &sensor, &state, &counts).await {
                    Sent::Yes => {}
                    Sent::Empty => break,
                    Sent::Failed => tokio::time::sleep(Duration::from_millis(200)).await,
                }
            }
            break;
        }
    }
}
