//! The writer of a file input ([`Pressure::Wait`]): its reader waits
//! instead of losing events, and a database that stays unwritable ends
//! the wait after the bound, with the reason.

use std::{
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use super::{
    tests::{sample, temp_db},
    writer::{NotStored, StoreWriter},
    Store, StoreError,
};

/// Holds the database's write lock (another process would) until dropped.
fn lock(path: &std::path::Path) -> rusqlite::Connection {
    let holder = rusqlite::Connection::open(path).expect("second connection");
    holder
        .execute_batch("BEGIN EXCLUSIVE")
        .expect("the write lock");
    holder
}

#[test]
fn a_file_input_waits_for_a_stalled_database_and_loses_nothing() {
    let path = temp_db("wait");
    Store::open(&path).expect("create");
    let holder = lock(&path);
    let w = Arc::new(StoreWriter::waiting(
        path.clone(),
        1,
        Duration::from_secs(60),
    ));
    let (batches, per_batch) = (50u64, 100u64);
    let handed = Arc::new(AtomicU64::new(0));
    let (writer, count) = (w.clone(), handed.clone());
    let reader = std::thread::spawn(move || {
        for b in 0..batches {
            let first = (b * per_batch) as i64;
            writer.events((first..first + per_batch as i64).map(sample).collect());
            writer.alert(first, first, "port_scan", "{}".into());
            count.fetch_add(1, Ordering::Relaxed);
        }
    });
    std::thread::sleep(Duration::from_millis(2500));
    let during = w.counts();
    assert!(
        handed.load(Ordering::Relaxed) < batches,
        "the reader waits while the database is locked"
    );
    assert_eq!(during.not_stored, 0, "nothing is dropped: {during:?}");
    drop(holder);
    reader.join().expect("reader");
    let c = Arc::into_inner(w).expect("one owner").close();
    assert_eq!(
        (c.stored, c.not_stored, c.alerts_stored, c.alerts_not_stored),
        (batches * per_batch, 0, batches, 0),
        "{c:?}"
    );
    assert!(c.waited_ms > 0, "the reader waited: {c:?}");
    assert!(c.all_stored());
    assert_eq!(
        Store::open(&path).unwrap().count().unwrap(),
        batches * per_batch
    );
}

#[test]
fn a_database_that_stays_unwritable_ends_the_wait_with_the_reason() {
    let path = temp_db("giveup");
    Store::open(&path).expect("create");
    let holder = lock(&path);
    let w = StoreWriter::waiting(path.clone(), 1, Duration::from_secs(3));
    let started = Instant::now();
    // Handed over until the writer gives up (the reader then stops).
    let mut handed = 0u64;
    while w.failure().is_none() && started.elapsed() < Duration::from_secs(60) {
        w.events((0..10).map(sample).collect());
        handed += 10;
    }
    let why = w.failure().expect("gave up").to_string();
    assert!(why.contains("could not be written for 3 s"), "{why}");
    assert!(
        started.elapsed() >= Duration::from_secs(3),
        "not before the bound: {:?}",
        started.elapsed()
    );
    // What comes after is counted at once, not retried for the bound again.
    let after = Instant::now();
    w.events((0..10).map(sample).collect());
    handed += 10;
    w.flush();
    assert!(after.elapsed() < Duration::from_secs(2));
    drop(holder);
    let c = w.close();
    assert_eq!(
        c.stored + c.not_stored,
        handed,
        "every event counted: {c:?}"
    );
    assert_eq!(c.not_stored_db_error, c.not_stored, "the reason: {c:?}");
    assert!(c.not_stored > 0 && !c.all_stored());
}

#[test]
fn a_live_input_never_waits_and_counts_a_full_queue_by_reason() {
    let path = temp_db("lossy");
    Store::open(&path).expect("create");
    let holder = lock(&path);
    let w = StoreWriter::with_queue(path.clone(), None, Vec::new(), 1);
    let started = Instant::now();
    for b in 0..20 {
        w.events((b * 10..b * 10 + 10).map(sample).collect());
    }
    assert!(started.elapsed() < Duration::from_secs(1), "never waited");
    drop(holder);
    let c = w.close();
    assert_eq!(c.stored + c.not_stored, 200, "{c:?}");
    assert!(
        c.not_stored_queue_full > 0,
        "the full queue is a reason: {c:?}"
    );
    assert_eq!(
        c.not_stored,
        c.not_stored_queue_full + c.not_stored_disk_full + c.not_stored_db_error
    );
    assert_eq!(c.waited_ms, 0);
}

#[test]
fn sqlite_full_is_a_full_disk() {
    let full = StoreError::Sql {
        path: "h.db".into(),
        action: "committing events",
        source: rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_FULL),
            None,
        ),
    };
    assert!(full.is_disk_full());
    let busy = StoreError::Sql {
        path: "h.db".into(),
        action: "committing events",
        source: rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_BUSY),
            None,
        ),
    };
    assert!(!busy.is_disk_full());
    assert_eq!(NotStored::DiskFull.name(), "disk_full");
}
