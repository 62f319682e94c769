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

use serde::Serialize;

use super::Store;
use crate::record::Record;

/// Batches the queue holds before new ones are counted as not stored.
const QUEUE_BATCHES: usize = 1024;
/// How often a broken database is retried.
const RETRY: Duration = Duration::from_secs(5);
/// Rows deleted per retention step.
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
}

/// What the writer has done, for summaries.
#[derive(Debug, Default)]
pub struct WriterCounts {
    pub stored: AtomicU64,
    pub not_stored: AtomicU64,
}

/// A snapshot of [`WriterCounts`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct StoreCounts {
    pub stored: u64,
    pub not_stored: u64,
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
    iface: Option<(u32, String)>,
    counts: Arc<WriterCounts>,
}

impl State {
    fn store(&mut self) -> Option<&mut Store> {
        if self.store.is_none() && self.last_try.is_none_or(|t| t.elapsed() >= RETRY) {
            self.last_try = Some(Instant::now());
            match Store::open(&self.path) {
                Ok(s) => {
                    if let Some((i, n)) = &self.iface {
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
                error_chain(e),
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

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        s.push_str(": ");
        s.push_str(&c.to_string());
        src = c.source();
    }
    s
}

impl StoreWriter {
    /// Starts the writer for the database at `path` (opened on the thread).
    pub fn start(
        path: PathBuf,
        retain: Option<Duration>,
        iface: Option<(u32, String)>,
    ) -> StoreWriter {
        let (tx, rx) = mpsc::sync_channel::<Msg>(QUEUE_BATCHES);
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
                    iface,
                    counts: c.clone(),
                };
                let _ = st.store();
                let mut last_retention = Instant::now() - Duration::from_secs(3600);
                loop {
                    match rx.recv_timeout(Duration::from_secs(1)) {
                        Ok(Msg::Events(batch)) => {
                            let n = batch.len() as u64;
                            let result = st.store().map(|s| s.insert(&batch));
                            match result {
                                Some(Ok(())) => {
                                    c.stored.fetch_add(n, Ordering::Relaxed);
                                    st.ok();
                                }
                                Some(Err(e)) => {
                                    c.not_stored.fetch_add(n, Ordering::Relaxed);
                                    st.fail(&e);
                                }
                                None => {
                                    c.not_stored.fetch_add(n, Ordering::Relaxed);
                                }
                            }
                        }
                        Ok(Msg::Counters { ts_ns, iface, json }) => {
                            if let Some(Err(e)) =
                                st.store().map(|s| s.insert_counters(ts_ns, &iface, &json))
                            {
                                st.fail(&e);
                            }
                        }
                        Ok(Msg::Alert {
                            first_ns,
                            last_ns,
                            kind,
                            json,
                        }) => {
                            if let Some(Err(e)) = st
                                .store()
                                .map(|s| s.insert_alert(first_ns, last_ns, &kind, &json))
                            {
                                st.fail(&e);
                            }
                        }
                        Ok(Msg::Flush(done)) => {
                            let _ = done.send(());
                        }
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
                                    Ok(n) if n as u32 == RETENTION_CHUNK => {
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

    /// Queues a batch; if the queue is full the batch is counted as not stored.
    pub fn events(&self, batch: Vec<Record>) {
        if batch.is_empty() {
            return;
        }
        let n = batch.len() as u64;
        if let Some(tx) = &self.tx {
            match tx.try_send(Msg::Events(batch)) {
                Ok(()) => {}
                Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                    self.counts.not_stored.fetch_add(n, Ordering::Relaxed);
                }
            }
        }
    }

    pub fn counters(&self, ts_ns: i64, iface: &str, json: String) {
        if let Some(tx) = &self.tx {
            let _ = tx.try_send(Msg::Counters {
                ts_ns,
                iface: iface.into(),
                json,
            });
        }
    }

    pub fn alert(&self, first_ns: i64, last_ns: i64, kind: &str, json: String) {
        if let Some(tx) = &self.tx {
            let _ = tx.send(Msg::Alert {
                first_ns,
                last_ns,
                kind: kind.into(),
                json,
            });
        }
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
        StoreCounts {
            stored: self.counts.stored.load(Ordering::Relaxed),
            not_stored: self.counts.not_stored.load(Ordering::Relaxed),
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
