//! Store tests: round trip, migration, retention, broken databases.

use std::{
    net::IpAddr,
    path::PathBuf,
    sync::atomic::{AtomicU32, Ordering},
    time::Duration,
};

use super::{writer::StoreWriter, Filter, Store, SCHEMA_VERSION};
use crate::record::Record;

fn temp_db(tag: &str) -> PathBuf {
    static N: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "fireplot-store-{tag}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir.join("h.db")
}

/// A record with every field set to something distinctive.
pub fn sample(i: i64) -> Record {
    Record {
        ts_ns: 1_800_000_000_000_000_000 + i * 1_000_000,
        family: if i % 2 == 0 { 4 } else { 6 },
        proto: [6u8, 17, 1, 58, 47][(i % 5) as usize],
        src: Some(if i % 2 == 0 {
            IpAddr::from([198, 18, 0, (i % 200) as u8 + 10])
        } else {
            "2001:db8::99".parse().unwrap()
        }),
        dst: Some(if i % 2 == 0 {
            IpAddr::from([198, 18, 1, 2])
        } else {
            "2001:db8:1::2".parse().unwrap()
        }),
        sport: 40000 + (i % 1000) as u16,
        dport: (i % 65535) as u16 + 1,
        tcp_flags: 0x29,
        ttl: 57,
        len: 60,
        class: 4,
        ifindex: 7,
        ip_id: 54321,
        tcp_seq: 0xdead_beef,
        tcp_window: 1024,
        icmp_type: 3,
        icmp_code: 1,
        pkt_flags: 2,
    }
}

#[test]
fn round_trip_keeps_every_field() {
    let path = temp_db("rt");
    let mut s = Store::open(&path).unwrap();
    let recs: Vec<Record> = (0..500).map(sample).collect();
    s.insert(&recs).unwrap();
    let mut back = Vec::new();
    let n = s
        .for_each(&Filter::range(i64::MIN, i64::MAX), |r| back.push(r))
        .unwrap();
    assert_eq!(n, 500);
    assert_eq!(back, recs);
    assert_eq!(s.schema_version().unwrap(), SCHEMA_VERSION);
    // Filters.
    let mut f = Filter::range(recs[100].ts_ns, recs[200].ts_ns);
    assert_eq!(s.for_each(&f, |_| {}).unwrap(), 100);
    f.family = Some(6);
    assert_eq!(s.for_each(&f, |_| {}).unwrap(), 50);
    let mut f = Filter::range(i64::MIN, i64::MAX);
    f.src = Some(("198.18.0.0".parse().unwrap(), 24));
    assert_eq!(s.for_each(&f, |_| {}).unwrap(), 250);
    f.src = Some(("198.18.0.10".parse().unwrap(), 32));
    assert_eq!(
        s.for_each(&f, |r| assert_eq!(
            r.src,
            Some("198.18.0.10".parse().unwrap())
        ))
        .unwrap(),
        3
    );
}

#[test]
fn old_schema_is_migrated_on_open() {
    let path = temp_db("mig");
    Store::create_v1(&path).unwrap();
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute(
            "INSERT INTO events (ts_ns, family, proto, src, dst, sport, dport, tcp_flags, ttl, len, class, ifindex, icmp_type, icmp_code, pkt_flags) \
             VALUES (5, 4, 6, x'c6120002', x'c6120102', 1, 2, 2, 64, 60, 4, 1, 0, 0, 0)",
            [],
        )
        .unwrap();
    }
    assert!(
        Store::open_read_only(&path).is_err(),
        "an old schema is not read without migrating"
    );
    let mut s = Store::open(&path).unwrap();
    assert_eq!(s.schema_version().unwrap(), 2);
    let mut old = Vec::new();
    s.for_each(&Filter::range(0, 10), |r| old.push(r)).unwrap();
    assert_eq!(old.len(), 1);
    assert_eq!(old[0].src, Some("198.18.0.2".parse().unwrap()));
    assert_eq!(
        (old[0].ip_id, old[0].tcp_seq),
        (0, 0),
        "new columns default to 0"
    );
    s.insert(&[sample(1)]).unwrap();
    s.insert_alert(1, 2, "port_scan", "{}").unwrap();
    drop(s);
    let ro = Store::open_read_only(&path).unwrap();
    assert_eq!(ro.count().unwrap(), 2);
}

#[test]
fn newer_schema_is_refused() {
    let path = temp_db("new");
    Store::open(&path).unwrap();
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute(
            "UPDATE meta SET value = '99' WHERE key = 'schema_version'",
            [],
        )
        .unwrap();
    let e = Store::open(&path).err().expect("must refuse");
    assert!(e.to_string().contains("newer"), "{e}");
}

#[test]
fn retention_deletes_only_old_rows_in_chunks() {
    let path = temp_db("ret");
    let mut s = Store::open(&path).unwrap();
    let recs: Vec<Record> = (0..1000).map(sample).collect();
    s.insert(&recs).unwrap();
    let cutoff = recs[600].ts_ns;
    let mut total = 0;
    loop {
        let n = s.delete_older(cutoff, 256).unwrap();
        total += n;
        if n < 256 {
            break;
        }
    }
    assert_eq!(total, 600);
    assert_eq!(s.count().unwrap(), 400);
    let mut first = None;
    s.for_each(&Filter::range(i64::MIN, i64::MAX), |r| {
        first.get_or_insert(r.ts_ns);
    })
    .unwrap();
    assert_eq!(first, Some(cutoff));
}

#[test]
fn corrupt_file_is_a_clear_error() {
    let path = temp_db("bad");
    std::fs::write(
        &path,
        b"this is not a database, just some bytes that are long enough to matter....",
    )
    .unwrap();
    let e = Store::open(&path)
        .err()
        .expect("corrupt file must not open");
    let msg = format!("{e}");
    assert!(msg.contains("h.db"), "{msg}");
}

#[test]
fn writer_counts_what_it_cannot_store_and_resumes() {
    let path = temp_db("w");
    // A directory where the file should be: nothing can be opened there.
    std::fs::create_dir_all(&path).unwrap();
    let w = StoreWriter::start(path.clone(), None, None);
    w.events((0..100).map(sample).collect());
    w.flush();
    assert_eq!(w.counts().stored, 0);
    assert_eq!(w.counts().not_stored, 100, "every lost event counted");
    // The disk comes back: the writer retries and stores again.
    std::fs::remove_dir_all(&path).unwrap();
    std::thread::sleep(Duration::from_millis(5200));
    w.events((100..150).map(sample).collect());
    w.flush();
    let c = w.close();
    assert_eq!((c.stored, c.not_stored), (50, 100));
    assert_eq!(Store::open(&path).unwrap().count().unwrap(), 50);
}

#[test]
fn locked_database_is_counted_and_resumed() {
    let path = temp_db("lock");
    Store::open(&path).unwrap();
    let w = StoreWriter::start(path.clone(), None, None);
    w.events((0..5).map(sample).collect());
    w.flush();
    assert_eq!(w.counts().stored, 5);
    // Another process holds the write lock past the busy timeout.
    let holder = rusqlite::Connection::open(&path).unwrap();
    holder.execute_batch("BEGIN EXCLUSIVE").unwrap();
    w.events((5..15).map(sample).collect());
    w.flush();
    assert_eq!(
        w.counts().not_stored,
        10,
        "a locked database loses nothing silently"
    );
    holder.execute_batch("COMMIT").unwrap();
    drop(holder);
    std::thread::sleep(Duration::from_millis(5200));
    w.events((15..20).map(sample).collect());
    w.flush();
    let c = w.close();
    assert_eq!((c.stored, c.not_stored), (10, 10));
}

/// A stalled database (another process holds the write lock, so every write
/// waits out the busy timeout) never makes ingest wait: events, alerts and
/// counter summaries are queued or counted, and every item ends up counted
/// as stored or not stored.
#[test]
fn a_stalled_database_never_blocks_ingest_and_every_item_is_counted() {
    let path = temp_db("stall");
    Store::open(&path).unwrap();
    let holder = rusqlite::Connection::open(&path).unwrap();
    holder.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let w = std::sync::Arc::new(StoreWriter::with_queue(path.clone(), None, None, 4));
    let (batches, per_batch, alerts, summaries) = (100u64, 10u64, 60u64, 40u64);
    // Ingest runs on its own thread: if any call waited on the stalled
    // writer, it would wait for the lock this thread holds, and the bound
    // below would expire instead of the sends completing.
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let writer = w.clone();
    let ingest = std::thread::spawn(move || {
        for b in 0..batches {
            let first = (b * per_batch) as i64;
            writer.events((first..first + per_batch as i64).map(sample).collect());
        }
        for i in 0..alerts {
            writer.alert(i as i64, i as i64, "port_scan", "{}".into());
        }
        for i in 0..summaries {
            writer.counters(i as i64, "wan0", "{}".into());
        }
        // Let go of the writer before saying so: the test then owns it alone.
        drop(writer);
        done_tx.send(()).unwrap();
    });
    done_rx
        .recv_timeout(Duration::from_secs(60))
        .expect("ingest went on while the database was stalled");
    ingest.join().expect("ingest thread");
    let during = w.counts();
    assert!(
        during.not_stored + during.alerts_not_stored + during.summaries_not_stored > 0,
        "a queue of 4 cannot hold it all: the overflow is counted, {during:?}"
    );
    holder.execute_batch("COMMIT").unwrap();
    drop(holder);
    let c = std::sync::Arc::into_inner(w).expect("one owner").close();
    assert_eq!(
        c.stored + c.not_stored,
        batches * per_batch,
        "events add up: {c:?}"
    );
    assert_eq!(
        c.alerts_stored + c.alerts_not_stored,
        alerts,
        "alerts add up: {c:?}"
    );
    assert_eq!(
        c.summaries_stored + c.summaries_not_stored,
        summaries,
        "summaries add up: {c:?}"
    );
    assert_eq!(
        Store::open(&path).unwrap().count().unwrap(),
        c.stored,
        "what is counted as stored is in the database"
    );
}

#[test]
fn plot_query_reads_what_plots_need() {
    let path = temp_db("plotq");
    let mut s = Store::open(&path).unwrap();
    let recs: Vec<Record> = (0..300).map(sample).collect();
    s.insert(&recs).unwrap();
    let mut got = Vec::new();
    let mut f = Filter::range(i64::MIN, i64::MAX);
    f.family = Some(4);
    s.for_each_plot(&f, |r| {
        got.push((r.ts_ns, r.family, r.proto, r.dport, r.pkt_flags))
    })
    .unwrap();
    let want: Vec<_> = recs
        .iter()
        .filter(|r| r.family == 4)
        .map(|r| (r.ts_ns, r.family, r.proto, r.dport, r.pkt_flags))
        .collect();
    assert_eq!(got, want);
}

#[test]
fn corrupt_database_keeps_the_writer_alive() {
    let path = temp_db("corruptw");
    std::fs::write(&path, vec![0x5a; 8192]).unwrap();
    let w = StoreWriter::start(path.clone(), None, None);
    w.events((0..30).map(sample).collect());
    w.flush();
    assert_eq!(w.counts().stored, 0);
    assert_eq!(w.counts().not_stored, 30);
    // Still accepting (and counting) work: the sensor is not stopped by it.
    w.events((30..40).map(sample).collect());
    let c = w.close();
    assert_eq!((c.stored, c.not_stored), (0, 40));
    assert_eq!(
        std::fs::read(&path).unwrap(),
        vec![0x5a; 8192],
        "a corrupt file is never overwritten"
    );
}
