//! The store's writer thread. Ingest hands it batches through a bounded
//! queue. What happens when the queue is full or the database cannot be
//! written (disk full, locked, corrupt, read-only) depends on the input
//! ([`Pressure`]): a live interface cannot wait, so the writer never makes
//! it wait and counts every event it could not store, by reason, retries
//! every few seconds and says when it has resumed; a file can wait, so its
//! reader waits for room and a failed write is retried until it succeeds
//! or a bound has passed. Retention deletes old rows in small chunks
//! between batches.

use std::{
    path::PathBuf,
    sync::{
        atomic::{AtomicU64, Ordering},
        mpsc::{self, RecvTimeoutError, SyncSender, TrySendError},
        Arc, OnceLock,
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use serde::{Deserialize, Serialize};

use super::Store;
use crate::record::Record;

/// Batches the queue holds before new ones are counted as not stored.
const QUEUE_BATCHES: usize = 1024;
/// Batches the queue of a file input holds before its reader waits (of
/// at most 8192 events each: memory stays bounded whatever the file's size).
pub const FILE_QUEUE_BATCHES: usize = 8;
/// How often a broken database is retried.
const RETRY: Duration = Duration::from_secs(5);
/// How often a file input's writer retries a write that failed.
const RETRY_WAITING: Duration = Duration::from_secs(1);

/// What the writer does when the disk is slower than the input, or fails.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pressure {
    /// A live interface, which cannot wait: the caller never waits; what
    /// cannot be queued or written is counted by reason
    /// ([`StoreCounts::not_stored`]).
    Lossy,
    /// A file, which can: the caller waits for room in the queue, and a
    /// write that fails is retried until it succeeds or `give_up` has
    /// passed; then the writer takes no more ([`StoreWriter::failure`]
    /// says why) and counts what it is handed as not stored.
    Wait { give_up: Duration },
}

/// Why events were not stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NotStored {
    /// The writer's queue was full (a live input only).
    QueueFull,
    /// The filesystem is full (SQLITE_FULL).
    DiskFull,
    /// Any other failure of the database: locked, corrupt, read-only, cannot be opened.
    DbError,
}

impl NotStored {
    /// The reason's name in summaries and /metrics.
    pub fn name(self) -> &'static str {
        match self {
            NotStored::QueueFull => "queue_full",
            NotStored::DiskFull => "disk_full",
            NotStored::DbError => "db_error",
        }
    }

    fn of(e: &super::StoreError) -> NotStored {
        if e.is_disk_full() {
            NotStored::DiskFull
        } else {
            NotStored::DbError
        }
    }
}
/// Events deleted per retention step (whole blocks: a step may go a block past it).
const RETENTION_CHUNK: u32 = 20_000;

enum Msg {
    Events(Vec<Record>),
    Counters {
        ts_ns: i64,
        iface: String,
        json: String,
    },
    Alert {
        first_ns: i64,
        last_ns: i64,
        kind: String,
        json: String,
    },
    Flush(mpsc::Sender<()>),
    /// From now on, store who each new source is.
    Enricher(Arc<crate::enrich::Enricher>),
}

/// What the writer has done, by kind, for summaries. Whatever is handed
/// to the writer ends in exactly one of `*stored` or `*not_stored`: a full
/// queue, a broken database and a failed write are all counted.
#[derive(Debug, Default)]
pub struct WriterCounts {
    pub stored: AtomicU64,
    pub not_stored: AtomicU64,
    /// `not_stored` by [`NotStored`] reason.
    pub not_stored_queue_full: AtomicU64,
    pub not_stored_disk_full: AtomicU64,
    pub not_stored_db_error: AtomicU64,
    pub alerts_stored: AtomicU64,
    pub alerts_not_stored: AtomicU64,
    pub summaries_stored: AtomicU64,
    pub summaries_not_stored: AtomicU64,
    /// Events in the queue, handed over but not yet written (or failed).
    pub queued: AtomicU64,
    /// Milliseconds callers waited for room ([`Pressure::Wait`]).
    pub waited_ms: AtomicU64,
}

/// A snapshot of [`WriterCounts`]. `stored`/`not_stored` count events.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct StoreCounts {
    pub stored: u64,
    pub not_stored: u64,
    /// Events not stored because the queue was full (the disk was slower
    /// than a live input).
    pub not_stored_queue_full: u64,
    /// Events not stored because the filesystem was full.
    pub not_stored_disk_full: u64,
    /// Events not stored because the database failed otherwise (locked,
    /// corrupt, read-only, cannot be opened).
    pub not_stored_db_error: u64,
    pub alerts_stored: u64,
    pub alerts_not_stored: u64,
    pub summaries_stored: u64,
    pub summaries_not_stored: u64,
    /// Events waiting in the writer's queue right now.
    pub queued: u64,
    /// Milliseconds a file input's reader waited for the writer.
    pub waited_ms: u64,
}

impl StoreCounts {
    /// The events not stored, by reason (those that happened).
    pub fn not_stored_by_reason(&self) -> Vec<(NotStored, u64)> {
        [
            (NotStored::QueueFull, self.not_stored_queue_full),
            (NotStored::DiskFull, self.not_stored_disk_full),
            (NotStored::DbError, self.not_stored_db_error),
        ]
        .into_iter()
        .filter(|(_, n)| *n > 0)
        .collect()
    }

    /// Every item handed over was stored: events, alerts and summaries.
    pub fn all_stored(&self) -> bool {
        self.not_stored + self.alerts_not_stored + self.summaries_not_stored == 0
    }
}

/// What a message is, for counting it.
#[derive(Clone, Copy)]
enum Kind {
    Events,
    Alerts,
    Summaries,
}

impl WriterCounts {
    /// Counts `n` items of `kind`: stored, or not stored for a reason.
    fn add(&self, kind: Kind, outcome: Result<(), NotStored>, n: u64) {
        let c = match (kind, outcome) {
            (Kind::Events, Ok(())) => &self.stored,
            (Kind::Events, Err(why)) => {
                let by = match why {
                    NotStored::QueueFull => &self.not_stored_queue_full,
                    NotStored::DiskFull => &self.not_stored_disk_full,
                    NotStored::DbError => &self.not_stored_db_error,
                };
                by.fetch_add(n, Ordering::Relaxed);
                &self.not_stored
            }
            (Kind::Alerts, Ok(())) => &self.alerts_stored,
            (Kind::Alerts, Err(_)) => &self.alerts_not_stored,
            (Kind::Summaries, Ok(())) => &self.summaries_stored,
            (Kind::Summaries, Err(_)) => &self.summaries_not_stored,
        };
        c.fetch_add(n, Ordering::Relaxed);
    }
}

impl Msg {
    /// The kind and number of items a message carries (a flush carries none).
    fn items(&self) -> Option<(Kind, u64)> {
        match self {
            Msg::Events(b) => Some((Kind::Events, b.len() as u64)),
            Msg::Counters { .. } => Some((Kind::Summaries, 1)),
            Msg::Alert { .. } => Some((Kind::Alerts, 1)),
            Msg::Flush(_) | Msg::Enricher(_) => None,
        }
    }
}

/// Handle to the writer thread.
pub struct StoreWriter {
    tx: Option<SyncSender<Msg>>,
    handle: Option<JoinHandle<()>>,
    counts: Arc<WriterCounts>,
    pressure: Pressure,
    /// Set once a waiting writer gives up: why.
    failure: Arc<OnceLock<String>>,
}

struct State {
    path: PathBuf,
    store: Option<Store>,
    /// Since when, and why, the database cannot be written.
    broken: Option<(Instant, NotStored)>,
    last_try: Option<Instant>,
    ifaces: Vec<(u32, String)>,
    counts: Arc<WriterCounts>,
    pressure: Pressure,
    failure: Arc<OnceLock<String>>,
    enrich: Option<Arc<crate::enrich::Enricher>>,
    /// Sources whose origin is stored (as of the enricher's `generation`).
    known: rustc_hash::FxHashSet<std::net::IpAddr>,
    generation: u64,
}

impl State {
    /// How often a broken database is retried.
    fn retry(&self) -> Duration {
        match self.pressure {
            Pressure::Lossy => RETRY,
            Pressure::Wait { .. } => RETRY_WAITING,
        }
    }

    /// The open database, (re)opened when the last try is `retry()` ago.
    /// Err: why there is none.
    fn store(&mut self) -> Result<&mut Store, NotStored> {
        if self.store.is_none() && self.last_try.is_none_or(|t| t.elapsed() >= self.retry()) {
            self.last_try = Some(Instant::now());
            match Store::open(&self.path) {
                Ok(s) => {
                    for (i, n) in &self.ifaces {
                        let _ = s.set_interface(*i, n);
                    }
                    self.store = Some(s);
                }
                Err(e) => return Err(self.fail(&e)),
            }
        }
        let why = self.broken.map_or(NotStored::DbError, |b| b.1);
        self.store.as_mut().ok_or(why)
    }

    /// Notes a failure (said once per outage); returns its reason.
    fn fail(&mut self, e: &super::StoreError) -> NotStored {
        let why = NotStored::of(e);
        if self.broken.is_none() {
            match self.pressure {
                Pressure::Lossy => log::error!(
                    "HISTORY NOT STORED: {}; the sensor keeps running, counts every event it cannot store ({}) and retries every {} s",
                    crate::error_chain(e),
                    why.name(),
                    RETRY.as_secs()
                ),
                Pressure::Wait { give_up } => log::warn!(
                    "the history database cannot be written: {}; the input waits, retrying every {} s for up to {} s",
                    crate::error_chain(e),
                    RETRY_WAITING.as_secs(),
                    give_up.as_secs()
                ),
            }
        }
        self.broken = Some((self.broken.map_or_else(Instant::now, |b| b.0), why));
        // Reopen on the next try: a corrupt or replaced file needs a new handle.
        self.store = None;
        self.last_try = Some(Instant::now());
        why
    }

    fn ok(&mut self) {
        if let Some((since, _)) = self.broken.take() {
            log::warn!(
                "history database writable again after {:.0} s; {} events were not stored meanwhile",
                since.elapsed().as_secs_f64(),
                self.counts.not_stored.load(Ordering::Relaxed)
            );
        }
    }
}

/// Sources remembered as stored before the set starts over.
const KNOWN: usize = 1 << 20;

impl State {
    /// Stores the origins of the batch's sources not stored yet (in this
    /// thread: lookups never slow the event loop). A failure is logged; the
    /// events are stored already.
    fn store_origins(&mut self, batch: &[Record]) {
        let Some(e) = self.enrich.clone() else { return };
        if e.generation() != self.generation {
            // Files were re-read: what a source is may have changed.
            self.generation = e.generation();
            self.known.clear();
        }
        if self.known.len() > KNOWN {
            self.known.clear();
        }
        let mut new = Vec::new();
        for r in batch {
            let Some(a) = r.src else { continue };
            if r.src_prefix().is_some() || !self.known.insert(a) {
                continue;
            }
            new.push((a, (*e.lookup(a)).clone()));
        }
        if new.is_empty() {
            return;
        }
        if let Ok(s) = self.store() {
            if let Err(err) = s.set_origins(&new, now_ns()) {
                log::warn!(
                    "cannot store who the sources are: {}",
                    crate::error_chain(&err)
                );
                for (a, _) in &new {
                    self.known.remove(a);
                }
            }
        }
    }

    /// One try at writing a message.
    fn try_write(&mut self, msg: &Msg) -> Result<(), NotStored> {
        let s = self.store()?;
        let written = match msg {
            Msg::Events(batch) => s.insert(batch),
            Msg::Counters { ts_ns, iface, json } => s.insert_counters(*ts_ns, iface, json),
            Msg::Alert {
                first_ns,
                last_ns,
                kind,
                json,
            } => s.insert_alert(*first_ns, *last_ns, kind, json),
            Msg::Flush(_) | Msg::Enricher(_) => Ok(()),
        };
        written.map_err(|e| self.fail(&e))
    }

    /// Writes one message and counts its items as stored or not. A waiting
    /// writer retries a failed write until its bound; then it gives up,
    /// and from then on counts everything as not stored at once.
    fn write(&mut self, msg: Msg) {
        let Some((kind, n)) = msg.items() else {
            return;
        };
        if matches!(kind, Kind::Events) {
            self.counts.queued.fetch_sub(n, Ordering::Relaxed);
        }
        if self.failure.get().is_some() {
            let why = self.broken.map_or(NotStored::DbError, |b| b.1);
            self.counts.add(kind, Err(why), n);
            return;
        }
        let started = Instant::now();
        loop {
            match self.try_write(&msg) {
                Ok(()) => {
                    self.counts.add(kind, Ok(()), n);
                    self.ok();
                    if let Msg::Events(batch) = &msg {
                        self.store_origins(batch);
                    }
                    return;
                }
                Err(why) => {
                    let Pressure::Wait { give_up } = self.pressure else {
                        self.counts.add(kind, Err(why), n);
                        return;
                    };
                    if started.elapsed() >= give_up {
                        self.give_up(why, give_up);
                        self.counts.add(kind, Err(why), n);
                        return;
                    }
                    std::thread::sleep(RETRY_WAITING.min(give_up));
                }
            }
        }
    }

    /// A waiting writer stops trying: says why, once.
    fn give_up(&mut self, why: NotStored, waited: Duration) {
        let text = format!(
            "the history database `{}` could not be written for {} s ({})",
            self.path.display(),
            waited.as_secs(),
            match why {
                NotStored::DiskFull => "the disk is full",
                NotStored::QueueFull | NotStored::DbError => "database error, see the log",
            }
        );
        log::error!("{text}: giving up; everything stored before is committed");
        let _ = self.failure.set(text);
    }
}

impl StoreWriter {
    /// Starts the writer of a live input for the database at `path`
    /// (opened on the thread): [`Pressure::Lossy`].
    pub fn start(
        path: PathBuf,
        retain: Option<Duration>,
        ifaces: Vec<(u32, String)>,
    ) -> StoreWriter {
        Self::with_queue(path, retain, ifaces, QUEUE_BATCHES)
    }

    /// As [`StoreWriter::start`], with a queue of `queue` messages.
    pub fn with_queue(
        path: PathBuf,
        retain: Option<Duration>,
        ifaces: Vec<(u32, String)>,
        queue: usize,
    ) -> StoreWriter {
        Self::spawn(path, retain, ifaces, queue, Pressure::Lossy)
    }

    /// The writer of a file input: its reader waits for room in a queue of
    /// `queue` messages, and a failed write is retried for up to `give_up`
    /// ([`Pressure::Wait`]).
    pub fn waiting(path: PathBuf, queue: usize, give_up: Duration) -> StoreWriter {
        Self::spawn(
            path,
            None,
            Vec::new(),
            queue.max(1),
            Pressure::Wait { give_up },
        )
    }

    fn spawn(
        path: PathBuf,
        retain: Option<Duration>,
        ifaces: Vec<(u32, String)>,
        queue: usize,
        pressure: Pressure,
    ) -> StoreWriter {
        let (tx, rx) = mpsc::sync_channel::<Msg>(queue);
        let counts = Arc::new(WriterCounts::default());
        let failure = Arc::new(OnceLock::new());
        let st = State {
            path,
            store: None,
            broken: None,
            last_try: None,
            ifaces,
            counts: counts.clone(),
            pressure,
            failure: failure.clone(),
            enrich: None,
            known: Default::default(),
            generation: 0,
        };
        let handle = std::thread::Builder::new()
            .name("fireplot-store".into())
            .spawn(move || writer_loop(st, &rx, retain))
            .expect("spawn the store writer");
        StoreWriter {
            tx: Some(tx),
            handle: Some(handle),
            counts,
            pressure,
            failure,
        }
    }

    /// Queues a message. A live input's writer never waits: if the queue
    /// is full (the disk is slower than ingest, or stalled) its items are
    /// counted as not stored, and ingest goes on. A file input's waits for
    /// room.
    fn send(&self, msg: Msg) {
        let Some((kind, n)) = msg.items() else {
            return;
        };
        if matches!(kind, Kind::Events) {
            // Counted before the send: the writer may take it at once.
            self.counts.queued.fetch_add(n, Ordering::Relaxed);
        }
        let sent = match &self.tx {
            Some(tx) => match tx.try_send(msg) {
                Ok(()) => Ok(()),
                Err(TrySendError::Full(msg)) if self.pressure != Pressure::Lossy => {
                    let waiting = Instant::now();
                    let sent = tx.send(msg).map_err(|_| NotStored::DbError);
                    let ms = waiting.elapsed().as_millis() as u64;
                    self.counts.waited_ms.fetch_add(ms, Ordering::Relaxed);
                    sent
                }
                Err(TrySendError::Full(_)) => Err(NotStored::QueueFull),
                Err(TrySendError::Disconnected(_)) => Err(NotStored::DbError),
            },
            None => Err(NotStored::DbError),
        };
        if let Err(why) = sent {
            if matches!(kind, Kind::Events) {
                self.counts.queued.fetch_sub(n, Ordering::Relaxed);
            }
            self.counts.add(kind, Err(why), n);
        }
    }

    /// Queues a batch of events (one transaction).
    pub fn events(&self, batch: Vec<Record>) {
        if !batch.is_empty() {
            self.send(Msg::Events(batch));
        }
    }

    /// Stores who each new source is from now on (its country, network
    /// and tags: the `origins` table).
    pub fn set_enricher(&self, e: Arc<crate::enrich::Enricher>) {
        if let Some(tx) = &self.tx {
            // Waits for room rather than lose it: it comes once, at start.
            let _ = tx.send(Msg::Enricher(e));
        }
    }

    /// Queues a counter summary.
    pub fn counters(&self, ts_ns: i64, iface: &str, json: String) {
        self.send(Msg::Counters {
            ts_ns,
            iface: iface.into(),
            json,
        });
    }

    /// Queues an alert record.
    pub fn alert(&self, first_ns: i64, last_ns: i64, kind: &str, json: String) {
        self.send(Msg::Alert {
            first_ns,
            last_ns,
            kind: kind.into(),
            json,
        });
    }

    /// Waits until everything queued so far is written (or failed).
    pub fn flush(&self) {
        let bound = match self.pressure {
            Pressure::Lossy => Duration::from_secs(60),
            // Each queued message may be retried that long.
            Pressure::Wait { give_up } => Duration::from_secs(60) + give_up,
        };
        if let Some(tx) = &self.tx {
            let (done_tx, done_rx) = mpsc::channel();
            if tx.send(Msg::Flush(done_tx)).is_ok() {
                let _ = done_rx.recv_timeout(bound);
            }
        }
    }

    /// Why a waiting writer gave up (the input should stop), if it did.
    pub fn failure(&self) -> Option<&str> {
        self.failure.get().map(String::as_str)
    }

    pub fn counts(&self) -> StoreCounts {
        let c = &self.counts;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        StoreCounts {
            stored: get(&c.stored),
            not_stored: get(&c.not_stored),
            not_stored_queue_full: get(&c.not_stored_queue_full),
            not_stored_disk_full: get(&c.not_stored_disk_full),
            not_stored_db_error: get(&c.not_stored_db_error),
            alerts_stored: get(&c.alerts_stored),
            alerts_not_stored: get(&c.alerts_not_stored),
            summaries_stored: get(&c.summaries_stored),
            summaries_not_stored: get(&c.summaries_not_stored),
            queued: get(&c.queued),
            waited_ms: get(&c.waited_ms),
        }
    }

    /// Writes what is queued and stops the thread.
    pub fn close(mut self) -> StoreCounts {
        self.tx.take();
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
        self.counts()
    }
}

/// The writer thread: messages in order, retention between them.
fn writer_loop(mut st: State, rx: &mpsc::Receiver<Msg>, retain: Option<Duration>) {
    let _ = st.store();
    let mut last_retention = Instant::now() - Duration::from_secs(3600);
    loop {
        match rx.recv_timeout(Duration::from_secs(1)) {
            Ok(Msg::Flush(done)) => {
                let _ = done.send(());
            }
            Ok(Msg::Enricher(e)) => {
                st.generation = e.generation();
                st.enrich = Some(e);
            }
            Ok(msg) => st.write(msg),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
        let Some(keep) = retain else { continue };
        if last_retention.elapsed() < Duration::from_secs(60) {
            continue;
        }
        last_retention = Instant::now();
        let cutoff = now_ns() - keep.as_nanos() as i64;
        // One chunk per pass: batches queued meanwhile go first.
        if let Ok(s) = st.store() {
            match s.delete_older(cutoff, RETENTION_CHUNK) {
                Ok(n) if n as u32 >= RETENTION_CHUNK => last_retention -= Duration::from_secs(60),
                Ok(_) => {}
                Err(e) => {
                    st.fail(&e);
                }
            }
        }
    }
}

impl Drop for StoreWriter {
    fn drop(&mut self) {
        self.tx.take();
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}
