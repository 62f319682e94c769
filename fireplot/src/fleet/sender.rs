//! The publisher's task: takes the batches the sinks hand over, sends
//! each to JetStream and waits for its acknowledgement, spools what the
//! broker cannot take, and drains the spool oldest first when it can.

use std::{
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
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

pub(super) async fn run(
    mut rx: mpsc::Receiver<Job>,
    client: async_nats::Client,
    js: jetstream::Context,
    stream: String,
    sensor: String,
    state: Arc<Mutex<State>>,
    counts: Arc<Counts>,
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
            counts.queued_items.fetch_sub(j.items, Ordering::Relaxed);
            let behind = {
                let mut st = state.lock().expect("state");
                let behind = !up || !st.spool.is_empty();
                if behind {
                    // Behind what is spooled (order), or the broker is away.
                    spool(&mut st.spool, &j, &counts);
                }
                behind
            };
            if !behind {
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
                        spool(&mut state.lock().expect("state").spool, &j, &counts);
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
