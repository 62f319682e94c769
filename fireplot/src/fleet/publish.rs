//! A sensor's side of the fleet: events, alerts and counter summaries go
//! to NATS JetStream in batches, each acknowledged by the broker. When the
//! broker cannot take them they go to the spool on disk and are sent,
//! oldest first, when it can again. The event loop never waits for any of
//! it: it hands a batch over and goes on.

use std::{
    path::PathBuf,
    sync::{atomic::Ordering, Arc, Mutex, OnceLock},
    time::Duration,
};

use async_nats::jetstream;
use thiserror::Error;
use tokio::sync::mpsc;

use super::{
    nats::{check_url, NatsError, NatsOptions},
    sender::{run, spool, Counts, Job, State, Waiting, ACK_TIMEOUT},
    spool::{Sequence, Spool, SpoolCounts, SpoolError},
    wire::{check_sensor_name, Batch, Body, Kind, WireError},
};
use crate::record::Record;

/// What to publish to (the options of `run|replay|ingest --publish`,
/// `cmd::args::PublishArgs`).
#[derive(Debug, Clone, Default)]
pub struct PublishOptions {
    /// The NATS JetStream server(s): nats://HOST:PORT, tls://HOST:PORT,
    /// several separated by commas. None: nothing is published.
    pub url: Option<String>,
    /// This sensor's name in the fleet (default: the host name).
    pub sensor: Option<String>,
    /// Where the spool and the sequence number live (default
    /// /var/lib/fireplot/fleet as root, ./fireplot-fleet otherwise).
    pub spool_dir: Option<PathBuf>,
    /// The spool's bound.
    pub spool_max_mib: u64,
    pub nats: NatsOptions,
    /// A file input, which can wait: batches wait for room in memory, and
    /// a full spool for the broker to take some of it, for up to this
    /// long; then the input is told to stop ([`Publisher::failure`]).
    /// None (a live input): nothing waits; past the bounds batches are
    /// spooled, and past the spool's, dropped and counted.
    pub wait: Option<Duration>,
}

/// Errors of starting to publish.
#[derive(Debug, Error)]
pub enum PublishError {
    /// The server address or a connection option.
    #[error(transparent)]
    Nats(#[from] NatsError),
    /// The sensor name cannot be part of a subject.
    #[error(transparent)]
    SensorName(#[from] WireError),
    /// The spool may hold nothing.
    #[error("--spool-max-mib must be at least 1")]
    NoSpool,
    /// The directory of the spool and the sequence number.
    #[error("cannot create the fleet directory `{}`", dir.display())]
    Dir {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The sequence number or the spool.
    #[error(transparent)]
    Spool(#[from] SpoolError),
    /// The client could not be set up.
    #[error("cannot set up the NATS client for `{url}`")]
    Client {
        url: String,
        #[source]
        source: async_nats::ConnectError,
    },
}

/// At the start, how long to wait for the first connection (the sensor
/// starts anyway, spooling, when the broker is away).
const START_WAIT: Duration = Duration::from_secs(3);
/// Items queued in memory for the publisher before batches go straight to
/// the spool (the broker is slow or away).
const MAX_QUEUED_ITEMS: u64 = 1 << 20;
/// Items a file input may queue in memory before it waits for the
/// publisher (at least one batch is always let through).
const FILE_QUEUED_ITEMS: u64 = 1 << 16;

/// What the publisher did, for the summaries.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct PublishCounts {
    pub sensor: String,
    pub published_batches: u64,
    pub published_items: u64,
    pub publish_errors: u64,
    pub spool_errors: u64,
    #[serde(flatten)]
    pub spool: SpoolCounts,
    pub connected: bool,
}

/// The handle the sinks hold.
pub struct Publisher {
    sensor: String,
    tx: Option<mpsc::Sender<Job>>,
    state: Arc<Mutex<State>>,
    counts: Arc<Counts>,
    client: async_nats::Client,
    task: Option<tokio::task::JoinHandle<()>>,
    /// See [`PublishOptions::wait`].
    wait: Option<Duration>,
    /// Set once a waiting publisher gives up: why.
    failure: Arc<OnceLock<String>>,
}

fn host_name() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most buf.len() bytes into buf.
    let r = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    let n = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    let s: String = String::from_utf8_lossy(&buf[..n])
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .take(64)
        .collect();
    if r != 0 || s.is_empty() {
        "sensor".into()
    } else {
        s
    }
}

impl PublishOptions {
    /// Checks the options before anything starts.
    pub fn check(&self) -> Result<(), PublishError> {
        if let Some(u) = &self.url {
            check_url(u)?;
            check_sensor_name(&self.sensor_name())?;
            if self.spool_max_mib == 0 {
                return Err(PublishError::NoSpool);
            }
        }
        Ok(())
    }

    pub fn sensor_name(&self) -> String {
        self.sensor.clone().unwrap_or_else(host_name)
    }

    fn dir(&self) -> PathBuf {
        self.spool_dir.clone().unwrap_or_else(|| {
            // SAFETY: geteuid has no preconditions.
            if unsafe { libc::geteuid() } == 0 {
                PathBuf::from("/var/lib/fireplot/fleet")
            } else {
                PathBuf::from("fireplot-fleet")
            }
        })
    }

    /// Starts the publisher (None without --publish). Must run inside the
    /// tokio runtime.
    pub async fn start(&self) -> Result<Option<Publisher>, PublishError> {
        let Some(url) = &self.url else {
            return Ok(None);
        };
        self.check()?;
        let sensor = self.sensor_name();
        let dir = self.dir();
        std::fs::create_dir_all(&dir).map_err(|source| PublishError::Dir {
            dir: dir.clone(),
            source,
        })?;
        // One sensor per directory: its sequence numbers are its own.
        let seq = Sequence::open(&dir.join(format!("{sensor}.seq")))?;
        let spool = Spool::open(
            &dir.join(format!("{sensor}.spool")),
            self.spool_max_mib << 20,
        )?;
        let client = self
            .nats
            .options(&format!("fireplot sensor {sensor}"), true)
            .await?
            .connect(url.as_str())
            .await
            .map_err(|source| PublishError::Client {
                url: url.clone(),
                source,
            })?;
        let started = std::time::Instant::now();
        while client.connection_state() != async_nats::connection::State::Connected
            && started.elapsed() < START_WAIT
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if client.connection_state() != async_nats::connection::State::Connected {
            log::warn!("fleet: {url} does not answer yet; spooling to disk until it does");
        }
        let mut js = jetstream::new(client.clone());
        js.set_timeout(ACK_TIMEOUT);
        let state = Arc::new(Mutex::new(State {
            seq,
            spool,
            interfaces: Vec::new(),
        }));
        let counts = Arc::new(Counts::default());
        let failure = Arc::new(OnceLock::new());
        // A file input's batches wait for room by items; its channel can
        // hold as many batches as that lets in (one item each at least).
        let (tx, rx) = mpsc::channel(match self.wait {
            Some(_) => FILE_QUEUED_ITEMS as usize + 1,
            None => 4096,
        });
        let waiting = self.wait.map(|give_up| Waiting {
            give_up,
            failure: failure.clone(),
        });
        let task = tokio::spawn(run(
            rx,
            client.clone(),
            js,
            self.nats.stream.clone(),
            sensor.clone(),
            state.clone(),
            counts.clone(),
            waiting,
        ));
        log::info!(
            "publishing to {url} as sensor `{sensor}` (spool in {})",
            dir.display()
        );
        Ok(Some(Publisher {
            sensor,
            tx: Some(tx),
            state,
            counts,
            client,
            task: Some(task),
            wait: self.wait,
            failure,
        }))
    }
}

impl Publisher {
    pub fn sensor(&self) -> &str {
        &self.sensor
    }

    /// Names an interface in the batches (the collector keeps the names).
    pub fn set_interface(&self, ifindex: u32, name: &str) {
        let mut st = self.state.lock().expect("publisher state");
        st.interfaces.retain(|(i, _)| *i != ifindex);
        st.interfaces.push((ifindex, name.to_string()));
    }

    pub fn events(&self, recs: &[Record]) {
        if !recs.is_empty() {
            self.send(Body::Events(recs.to_vec()));
        }
    }

    pub fn alert(&self, json: String) {
        self.send(Body::Lines(Kind::Alerts, vec![json]));
    }

    pub fn counters(&self, json: String) {
        self.send(Body::Lines(Kind::Counters, vec![json]));
    }

    /// Why a waiting publisher gave up (the input should stop), if it did.
    pub fn failure(&self) -> Option<&str> {
        self.failure.get().map(String::as_str)
    }

    /// A file input: waits until the queue has room for `items` more (or
    /// the publisher gave up). Call it only where the thread may block (a
    /// blocking task, not a runtime's worker).
    fn wait_for_room(&self, items: u64) {
        let (lock, room) = &self.counts.room;
        let mut guard = lock.lock().expect("publisher room");
        loop {
            let queued = self.counts.queued_items.load(Ordering::Relaxed);
            if queued == 0 || queued + items <= FILE_QUEUED_ITEMS || self.failure.get().is_some() {
                return;
            }
            guard = room
                .wait_timeout(guard, Duration::from_millis(100))
                .expect("publisher room")
                .0;
        }
    }

    /// Numbers the items and hands the batch over; never waits for the
    /// network. A live input's batch goes to the spool here when the queue
    /// is long; a file input's events wait for room instead.
    fn send(&self, body: Body) {
        let items = match &body {
            Body::Events(e) => e.len(),
            Body::Lines(_, l) => l.len(),
        } as u64;
        let waits = self.wait.is_some() && matches!(body, Body::Events(_));
        if waits {
            self.wait_for_room(items);
        }
        let mut st = self.state.lock().expect("publisher state");
        let first_seq = match st.seq.take(items) {
            Ok(f) => f,
            Err(e) => {
                // Without a safe number the batch cannot be sent at all.
                log::error!(
                    "fleet: {}; {items} items not published",
                    crate::error_chain(&e)
                );
                self.counts.spool_errors.fetch_add(1, Ordering::Relaxed);
                return;
            }
        };
        let batch = Batch {
            sensor: self.sensor.clone(),
            first_seq,
            interfaces: st.interfaces.clone(),
            body,
            bad_lines: Vec::new(),
        };
        let job = Job {
            first_seq,
            items,
            kind: batch.kind(),
            bytes: batch.encode(),
        };
        let queued = self.counts.queued_items.load(Ordering::Relaxed);
        let job = if self.wait.is_some() || queued + items <= MAX_QUEUED_ITEMS {
            match self.tx.as_ref().map(|tx| tx.try_send(job)) {
                Some(Ok(())) => {
                    self.counts.queued_items.fetch_add(items, Ordering::Relaxed);
                    return;
                }
                Some(Err(mpsc::error::TrySendError::Full(j)))
                | Some(Err(mpsc::error::TrySendError::Closed(j))) => j,
                None => return,
            }
        } else {
            job
        };
        spool(&mut st.spool, &job, &self.counts);
    }

    pub fn counts(&self) -> PublishCounts {
        let st = self.state.lock().expect("publisher state");
        let c = &self.counts;
        PublishCounts {
            sensor: self.sensor.clone(),
            published_batches: c.published_batches.load(Ordering::Relaxed),
            published_items: c.published_items.load(Ordering::Relaxed),
            publish_errors: c.publish_errors.load(Ordering::Relaxed),
            spool_errors: c.spool_errors.load(Ordering::Relaxed),
            spool: st.spool.counts,
            connected: self.client.connection_state() == async_nats::connection::State::Connected,
        }
    }

    /// Sends what is queued (or spools it, the broker away) and stops.
    /// What the spool holds stays for the next start.
    pub async fn close(mut self) -> PublishCounts {
        self.tx.take();
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
        // A client that is not connected would wait for the broker forever.
        let _ = tokio::time::timeout(ACK_TIMEOUT, self.client.flush()).await;
        self.counts()
    }
}
