//! The store's writer thread. Ingest hands it batches through a bounded
//! queue and never waits on the disk. If the database cannot be opened or
//! written (disk full, locked, corrupt, read-only), the writer says so once,
//! counts every event it could not store, retries every few seconds and
//! says when it has resumed. Retention deletes old rows in small chunks
//! between batches.

use std::{
    path::PathBuf,
    sync::{
        atomic::{AtomicU64, Ordering},
        mpsc::{self, RecvTimeoutError, SyncSender, TrySendError},
        Arc,
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use serde::{Deserialize, Serialize};

use super::Store;
use crate::record::Record;

/// Batches the queue holds before new ones are counted as not stored.
const QUEUE_BATCHES: usize = 1024;
/// How often a broken database is retried.
const RETRY: Duration = Duration::from_secs(5);
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
    pub alerts_stored: AtomicU64,
    pub alerts_not_stored: AtomicU64,
    pub summaries_stored: AtomicU64,
    pub summaries_not_stored: AtomicU64,
    /// Events in the queue, handed over but not yet written (or failed).
    pub queued: AtomicU64,
}

/// A snapshot of [`WriterCounts`]. `stored`/`not_stored` count events.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct StoreCounts {
    pub stored: u64,
    pub not_stored: u64,
    pub alerts_stored: u64,
    pub alerts_not_stored: u64,
    pub summaries_stored: u64,
    pub summaries_not_stored: u64,
    /// Events waiting in the writer's queue right now.
    pub queued: u64,
}

/// What a message is, for counting it.
#[derive(Clone, Copy)]
enum Kind {
    Events,
    Alerts,
    Summaries,
}

impl WriterCounts {
    fn add(&self, kind: Kind, ok: bool, n: u64) {
        let c = match (kind, ok) {
            (Kind::Events, true) => &self.stored,
            (Kind::Events, false) => &self.not_stored,
            (Kind::Alerts, true) => &self.alerts_stored,
            (Kind::Alerts, false) => &self.alerts_not_stored,
            (Kind::Summaries, true) => &self.summaries_stored,
            (Kind::Summaries, false) => &self.summaries_not_stored,
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
}

struct State {
    path: PathBuf,
    store: Option<Store>,
    broken_since: Option<Instant>,
    last_try: Option<Instant>,
    ifaces: Vec<(u32, String)>,
    counts: Arc<WriterCounts>,
    enrich: Option<Arc<crate::enrich::Enricher>>,
    /// Sources whose origin is stored (as of the enricher's `generation`).
    known: rustc_hash::FxHashSet<std::net::IpAddr>,
    generation: u64,
}

impl State {
    fn store(&mut self) -> Option<&mut Store> {
        if self.store.is_none() && self.last_try.is_none_or(|t| t.elapsed() >= RETRY) {
            self.last_try = Some(Instant::now());
            match Store::open(&self.path) {
                Ok(s) => {
                    for (i, n) in &self.ifaces {
                        let _ = s.set_interface(*i, n);
                    }
                    self.store = Some(s);
                }
                Err(e) => self.fail(&e),
            }
        }
        self.store.as_mut()
    }

    fn fail(&mut self, e: &super::StoreError) {
        if self.broken_since.is_none() {
            log::error!(
                "HISTORY NOT STORED: {}; the sensor keeps running, counts every event it cannot store and retries every {} s",
                crate::error_chain(e),
                RETRY.as_secs()
            );
            self.broken_since = Some(Instant::now());
        }
        // Reopen on the next try: a corrupt or replaced file needs a new handle.
        self.store = None;
        self.last_try = Some(Instant::now());
    }

    fn ok(&mut self) {
        if let Some(since) = self.broken_since.take() {
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
        if let Some(s) = self.store() {
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

    /// Writes one message and counts its items as stored or not.
    fn write(&mut self, msg: Msg) {
        let Some((kind, n)) = msg.items() else {
            return;
        };
        if matches!(kind, Kind::Events) {
            self.counts.queued.fetch_sub(n, Ordering::Relaxed);
        }
        let result = self.store().map(|s| match &msg {
            Msg::Events(batch) => s.insert(batch),
            Msg::Enricher(_) => Ok(()),
            Msg::Counters { ts_ns, iface, json } => s.insert_counters(*ts_ns, iface, json),
            Msg::Alert {
                first_ns,
                last_ns,
                kind,
                json,
            } => s.insert_alert(*first_ns, *last_ns, kind, json),
            Msg::Flush(_) => Ok(()),
        });
        match result {
            Some(Ok(())) => {
                self.counts.add(kind, true, n);
                self.ok();
                if let Msg::Events(batch) = &msg {
                    self.store_origins(batch);
                }
            }
            Some(Err(e)) => {
                self.counts.add(kind, false, n);
                self.fail(&e);
            }
            None => self.counts.add(kind, false, n),
        }
    }
}

impl StoreWriter {
    /// Starts the writer for the database at `path` (opened on the thread).
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
        let (tx, rx) = mpsc::sync_channel::<Msg>(queue);
        let counts = Arc::new(WriterCounts::default());
        let c = counts.clone();
        let handle = std::thread::Builder::new()
            .name("fireplot-store".into())
            .spawn(move || {
                let mut st = State {
                    path,
                    store: None,
                    broken_since: None,
                    last_try: None,
                    ifaces,
                    counts: c.clone(),
                    enrich: None,
                    known: Default::default(),
                    generation: 0,
                };
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
                    if let Some(keep) = retain {
                        if last_retention.elapsed() >= Duration::from_secs(60) {
                            last_retention = Instant::now();
                            let cutoff = now_ns() - keep.as_nanos() as i64;
                            // One chunk per pass: batches queued meanwhile go first.
                            if let Some(s) = st.store() {
                                match s.delete_older(cutoff, RETENTION_CHUNK) {
                                    Ok(n) if n as u32 >= RETENTION_CHUNK => {
                                        last_retention -= Duration::from_secs(60)
                                    }
                                    Ok(_) => {}
                                    Err(e) => st.fail(&e),
                                }
                            }
                        }
                    }
                }
            })
            .expect("spawn the store writer");
        StoreWriter {
            tx: Some(tx),
            handle: Some(handle),
            counts,
        }
    }

    /// Queues a message without ever waiting: if the queue is full (the
    /// disk is slower than ingest, or stalled) its items are counted as
    /// not stored, and ingest goes on.
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
                Ok(()) => true,
                Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => false,
            },
            None => false,
        };
        if !sent {
            if matches!(kind, Kind::Events) {
                self.counts.queued.fetch_sub(n, Ordering::Relaxed);
            }
            self.counts.add(kind, false, n);
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
        if let Some(tx) = &self.tx {
            let (done_tx, done_rx) = mpsc::channel();
            if tx.send(Msg::Flush(done_tx)).is_ok() {
                let _ = done_rx.recv_timeout(Duration::from_secs(60));
            }
        }
    }

    pub fn counts(&self) -> StoreCounts {
        let c = &self.counts;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        StoreCounts {
            stored: get(&c.stored),
            not_stored: get(&c.not_stored),
            alerts_stored: get(&c.alerts_stored),
            alerts_not_stored: get(&c.alerts_not_stored),
            summaries_stored: get(&c.summaries_stored),
            summaries_not_stored: get(&c.summaries_not_stored),
            queued: get(&c.queued),
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
