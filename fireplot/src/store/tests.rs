//! Store tests: round trip, migration, retention, broken databases.

use std::{
    net::IpAddr,
    path::PathBuf,
    sync::atomic::{AtomicU32, Ordering},
    time::Duration,
};

use super::History;
use super::{writer::StoreWriter, Filter, Store, SCHEMA_VERSION};
use crate::record::Record;

pub(super) fn temp_db(tag: &str) -> PathBuf {
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
        count: 1,
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
    assert_eq!(s.schema_version().unwrap(), crate::store::SCHEMA_VERSION);
    assert_eq!(
        s.tiles_since().unwrap(),
        6,
        "bins start after the old events"
    );
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
    let w = StoreWriter::start(path.clone(), None, Vec::new());
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
    let w = StoreWriter::start(path.clone(), None, Vec::new());
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
    let w = std::sync::Arc::new(StoreWriter::with_queue(path.clone(), None, Vec::new(), 4));
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
    let w = StoreWriter::start(path.clone(), None, Vec::new());
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

// ---- the pre-binned counts (tiles.rs) ----

use super::tiles::{port_row, Tile, NO_PORT, TILE_NS};
use std::collections::BTreeMap;

type Counts = BTreeMap<(i64, u8, u8, i32), u64>;

fn row_of(r: &Record) -> i32 {
    if r.has_ports() && r.dport != 0 {
        port_row(r.dport)
    } else {
        NO_PORT
    }
}

/// Per (minute, family, proto, row) through the bins.
fn tiled(s: &Store, f: &Filter) -> (u64, Counts) {
    let c = std::cell::RefCell::new(Counts::new());
    let n = s
        .for_each_plot_tiled(
            f,
            |t: &Tile| {
                *c.borrow_mut()
                    .entry((t.mid_ns.div_euclid(TILE_NS), t.family, t.proto, t.row))
                    .or_default() += t.n
            },
            |r| {
                *c.borrow_mut()
                    .entry((r.ts_ns.div_euclid(TILE_NS), r.family, r.proto, row_of(r)))
                    .or_default() += 1
            },
        )
        .unwrap();
    (n, c.into_inner())
}

/// The same from the events.
fn scanned(s: &Store, f: &Filter) -> (u64, Counts) {
    let mut c = Counts::new();
    let n = s
        .for_each_plot(f, |r| {
            *c.entry((r.ts_ns.div_euclid(TILE_NS), r.family, r.proto, row_of(r)))
                .or_default() += 1
        })
        .unwrap();
    (n, c)
}

/// The binned top ports of `f` are its `total` events' ports, as a scan counts them.
fn top_ports_match(s: &Store, f: &Filter, total: u64) {
    let (n, top) = s.top_ports_binned(f, usize::MAX).unwrap();
    assert_eq!(n, total);
    assert_eq!(
        top.iter()
            .map(|t| ((t.0, t.1), t.2))
            .collect::<BTreeMap<_, _>>(),
        scanned_ports(s, f)
    );
}

fn scanned_ports(s: &Store, f: &Filter) -> BTreeMap<(u8, u16), u64> {
    let mut c = BTreeMap::new();
    s.for_each_plot(f, |r| {
        if r.has_ports() {
            *c.entry((r.proto, r.dport)).or_default() += 1
        }
    })
    .unwrap();
    c
}

/// Three hours of mixed events from an xorshift, stored in several batches
/// and out of time order (late batches land in bins that already exist).
fn mixed(n: usize, t0: i64) -> Vec<Record> {
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let mut r = sample((x % 1000) as i64);
            r.ts_ns = t0 + (x % (3 * 3_600_000_000_000)) as i64;
            r.dport = match x >> 60 {
                0 => 0,
                1..=5 => 22,
                _ => (65535f64.powf(((x >> 20) % 1000) as f64 / 1000.0)) as u16,
            };
            r.pkt_flags = u8::from((x >> 30).is_multiple_of(17));
            r.ifindex = 7 + ((x >> 40) % 2) as u32;
            r
        })
        .collect()
}

#[test]
fn bins_answer_as_the_events_do() {
    let path = temp_db("tiles");
    let mut s = Store::open(&path).unwrap();
    let t0: i64 = 1_800_000_000_000_000_000 + 17_000_000_123;
    let recs = mixed(20_000, t0);
    for chunk in recs.chunks(3_000).rev() {
        s.insert(chunk).unwrap();
    }
    let m = TILE_NS;
    let hour = 3_600_000_000_000;
    let ranges = [
        (t0 - hour, t0 + 4 * hour),              // everything
        (t0 + 7 * m + 12_345, t0 + 140 * m - 9), // ragged both ends
        (t0.div_euclid(m) * m + 5 * m, t0.div_euclid(m) * m + 65 * m), // aligned
        (t0 + 10 * m + 1, t0 + 10 * m + 50_000_000_000), // inside one minute
        (t0 + 100 * hour, t0 + 101 * hour),      // empty
    ];
    let filters = [
        Filter::default(),
        Filter {
            family: Some(6),
            ..Filter::default()
        },
        Filter {
            proto: Some(6),
            ifindex: Some(8),
            ..Filter::default()
        },
    ];
    let mut used_bins = false;
    for (from, to) in ranges {
        for base in &filters {
            let f = Filter {
                from_ns: from,
                to_ns: to,
                ..base.clone()
            };
            let (tn, tc) = tiled(&s, &f);
            let (sn, sc) = scanned(&s, &f);
            assert_eq!(tn, sn, "{from}..{to} {base:?}");
            assert_eq!(tc, sc, "{from}..{to} {base:?}");
            let (total, top) = s.top_ports_binned(&f, usize::MAX).unwrap();
            assert_eq!(total, sn);
            let want = scanned_ports(&s, &f);
            let got: BTreeMap<(u8, u16), u64> = top.iter().map(|&(p, d, c)| ((p, d), c)).collect();
            assert_eq!(got, want, "{from}..{to} {base:?}");
            used_bins |= to - from > 2 * hour && sn > 0;
        }
    }
    assert!(used_bins);
    // The busiest port comes first.
    let (_, top) = s
        .top_ports_binned(&Filter::range(t0 - hour, t0 + 4 * hour), 3)
        .unwrap();
    assert_eq!(top.len(), 3);
    assert_eq!(top[0].1, 22);
    assert!(top[0].2 >= top[1].2 && top[1].2 >= top[2].2);

    // Retention at a ragged instant: what is left still adds up.
    let cut = t0 + 70 * m + 31_000_000_000;
    while s.delete_older(cut, 4096).unwrap() == 4096 {}
    assert_eq!(s.tiles_since().unwrap(), cut);
    let all = Filter::range(t0 - hour, t0 + 4 * hour);
    assert_eq!(tiled(&s, &all), scanned(&s, &all));
    let (total, _) = s.top_ports_binned(&all, 10).unwrap();
    assert_eq!(total, s.count().unwrap());
}

#[test]
fn an_old_database_is_binned_from_its_migration_on() {
    let path = temp_db("tiles-mig");
    let t0: i64 = 1_800_000_000_000_000_000;
    {
        // Schema 2 with events, no bins.
        let mut s = Store::create_at_version(&path, 2).unwrap();
        let old = mixed(2_000, t0);
        let tx = s.conn.transaction().unwrap();
        for r in &old {
            tx.execute(
                "INSERT INTO events (ts_ns, family, proto, src, dst, sport, dport, tcp_flags, ttl, len, class, ifindex, icmp_type, icmp_code, pkt_flags) \
                 VALUES (?1, ?2, ?3, NULL, NULL, 0, ?4, 0, 0, 0, 4, ?5, 0, 0, ?6)",
                rusqlite::params![r.ts_ns, r.family, r.proto, r.dport, r.ifindex, r.pkt_flags],
            )
            .unwrap();
        }
        tx.commit().unwrap();
    }
    let mut s = Store::open(&path).unwrap();
    let last = mixed(2_000, t0).iter().map(|r| r.ts_ns).max().unwrap();
    assert_eq!(s.tiles_since().unwrap(), last + 1);
    s.insert(&mixed(2_000, t0 + 3 * 3_600_000_000_000)).unwrap();
    let all = Filter::range(t0, t0 + 7 * 3_600_000_000_000);
    let (n, c) = tiled(&s, &all);
    assert_eq!(n, 4_000);
    assert_eq!((n, c), scanned(&s, &all));
    top_ports_match(&s, &all, 4_000);
}

/// A flood's aggregates are weighted rows: they keep their count through
/// the store, count with it in the bins, the top lists and the plot, and
/// their source reads as its prefix.
#[test]
fn aggregates_are_weighted_rows() {
    use fireplot_common::{
        agg::{AggKey, AggValue, PREFIX_V4},
        proto::FAMILY_V4,
    };
    let path = temp_db("aggs");
    let mut s = Store::open(&path).unwrap();
    let t0 = 1_800_000_000i64;
    let key = AggKey {
        src: [u64::from(u32::from_le_bytes([198, 19, 7, 0])), 0],
        dst: [u64::from(u32::from_le_bytes([198, 18, 1, 2])), 0],
        sec: t0 as u64,
        ifindex: 2,
        dport: 80,
        family: FAMILY_V4,
        proto: 6,
        class: 4,
        prefix: PREFIX_V4,
        vector: fireplot_common::vector::VECTOR_SYN,
        ..AggKey::default()
    };
    let value = AggValue {
        packets: 250_000,
        bytes: 250_000 * 54,
        src: [u64::from(u32::from_le_bytes([198, 19, 7, 9])), 0],
        tcp_flags: 0x02,
        mixed: 1,
        _pad: [0; 6],
    };
    let a = Record::from_aggregate(&key, &value, 0);
    assert!(a.is_aggregate());
    assert_eq!(a.src_label(), "198.19.7.0/24");
    assert_eq!((a.count, a.len, a.dport), (250_000, 54, 80));
    assert_eq!(
        a.ts_ns,
        t0 * 1_000_000_000 + 500_000_000,
        "the middle of its second"
    );
    let mut e = Record::probe(
        t0 * 1_000_000_000 + 5,
        "198.19.7.9".parse().unwrap(),
        "198.18.1.2".parse().unwrap(),
        6,
        80,
    );
    e.ifindex = 2;
    s.insert(&[a.clone(), e.clone()]).unwrap();
    // Back out whole.
    let all = Filter::range(i64::MIN, i64::MAX);
    let mut back = Vec::new();
    let n = s.for_each(&all, |r| back.push(r)).unwrap();
    assert_eq!(n, 250_001, "for_each counts packets");
    assert!(back.contains(&a) && back.contains(&e));
    // Top ports from the bins and from the events agree, with the weight.
    let hour = Filter::range(
        t0 * 1_000_000_000 - 3600 * 1_000_000_000,
        t0 * 1_000_000_000 + 3600 * 1_000_000_000,
    );
    let (total, ports) = s.top_ports_binned(&hour, 5).unwrap();
    assert_eq!(total, 250_001);
    assert_eq!(ports, vec![(6, 80, 250_001)]);
    let (total, srcs) = History::top_sources(&s, &all, 5).unwrap();
    assert_eq!(total, 250_001);
    assert_eq!(srcs[0].0.to_string(), "198.19.7.0/24");
    assert_eq!(srcs[0].1, 250_000);
    assert_eq!(srcs[1].0.to_string(), "198.19.7.9");
    // The JSON line says what it is and reads back the same.
    let line = a.to_json_record();
    assert!(line.aggregate);
    assert_eq!(
        (line.src_prefix, line.count, line.sport),
        (Some(24), 250_000, None)
    );
    let json = line.to_json();
    let parsed: crate::record::line::EventRecord = serde_json::from_str(&json).unwrap();
    let again = Record::try_from((&parsed, 1)).unwrap();
    assert_eq!(
        (again.count, again.is_aggregate(), again.src),
        (a.count, true, a.src)
    );
    // All from one source: the aggregate names it, not its /24, and says so
    // in its line.
    let one = Record::from_aggregate(&key, &AggValue { mixed: 0, ..value }, 0);
    assert_eq!(one.src_label(), "198.19.7.9");
    let line = one.to_json_record();
    assert!(line.aggregate && line.src_prefix.is_none());
    let parsed: crate::record::line::EventRecord = serde_json::from_str(&line.to_json()).unwrap();
    assert_eq!(Record::try_from((&parsed, 1)).unwrap(), one);
    // An event line has neither field; count 0 is refused.
    assert!(!e.to_json_record().to_json().contains("count"));
    let bad = json.replace("\"count\":250000", "\"count\":0");
    let parsed: crate::record::line::EventRecord = serde_json::from_str(&bad).unwrap();
    assert!(Record::try_from((&parsed, 1)).is_err());
}

// ---- events in blocks (blocks.rs, schema 5) ----

/// A schema-4 database (one row per event and per bin) reads the same
/// after its migration to blocks: every event, every field, the bins, the
/// top lists.
#[test]
fn a_schema_4_database_is_migrated_to_blocks() {
    let path = temp_db("v4");
    let t0: i64 = 1_800_000_000_000_000_000;
    let recs = mixed(10_000, t0);
    {
        let s = Store::create_at_version(&path, 4).unwrap();
        let tx = s.conn.unchecked_transaction().unwrap();
        for r in &recs {
            tx.execute(
                &format!(
                    "INSERT INTO events ({}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19)",
                    super::COLUMNS
                ),
                rusqlite::params![
                    r.ts_ns, r.family, r.proto,
                    r.src.map(|a| match a { IpAddr::V4(v) => v.octets().to_vec(), IpAddr::V6(v) => v.octets().to_vec() }),
                    r.dst.map(|a| match a { IpAddr::V4(v) => v.octets().to_vec(), IpAddr::V6(v) => v.octets().to_vec() }),
                    r.sport, r.dport, r.tcp_flags, r.ttl, r.len, r.class, r.ifindex,
                    r.icmp_type, r.icmp_code, r.pkt_flags, r.ip_id, r.tcp_seq, r.tcp_window, r.count
                ],
            )
            .unwrap();
        }
        // Schema 4's bins, as its insert kept them.
        for r in &recs {
            tx.execute(
                "INSERT INTO tiles VALUES (?1, ?2, ?3, ?4, ?5, 1) ON CONFLICT DO UPDATE SET n = n + 1",
                rusqlite::params![r.ts_ns.div_euclid(TILE_NS), r.ifindex, r.family, r.proto, row_of(r)],
            )
            .unwrap();
            if r.has_ports() {
                tx.execute(
                    "INSERT INTO port_hours VALUES (?1, ?2, ?3, ?4, ?5, 1) ON CONFLICT DO UPDATE SET n = n + 1",
                    rusqlite::params![r.ts_ns.div_euclid(super::tiles::HOUR_NS), r.ifindex, r.family, r.proto, r.dport],
                )
                .unwrap();
            }
        }
        tx.execute(
            "UPDATE meta SET value = ?1 WHERE key = 'tiles_since'",
            [t0.to_string()],
        )
        .unwrap();
        tx.commit().unwrap();
        assert_eq!(s.schema_version().unwrap(), 4);
    }
    let s = Store::open(&path).unwrap();
    assert_eq!(s.schema_version().unwrap(), SCHEMA_VERSION);
    assert_eq!(s.count().unwrap(), 10_000);
    let mut got = Vec::new();
    s.for_each(&Filter::range(i64::MIN, i64::MAX), |r| got.push(r))
        .unwrap();
    let mut want = recs.clone();
    want.sort_by_key(|r| r.ts_ns);
    assert_eq!(got, want, "every field of every event, in time order");
    let all = Filter::range(t0, t0 + 4 * 3_600_000_000_000);
    assert_eq!(tiled(&s, &all), scanned(&s, &all));
    top_ports_match(&s, &all, 10_000);
}

/// Batches of every size: the open block fills in place, blocks overlap
/// in time (late batches), and `for_each` still streams in time order;
/// the console's cursor sees every row once, in the order stored.
#[test]
fn blocks_fill_in_place_and_read_in_time_order() {
    let path = temp_db("blocks");
    let mut s = Store::open(&path).unwrap();
    let t0: i64 = 1_800_000_000_000_000_000;
    let all = mixed(20_000, t0);
    let mut cursor = s.last_rowid().unwrap();
    assert_eq!(cursor, 0);
    let mut seen = Vec::new();
    let mut at = 0;
    for size in [1usize, 3, 4095, 1, 7000, 5000, 2, 3898].iter().cycle() {
        if at == all.len() {
            break;
        }
        let end = (at + size).min(all.len());
        s.insert(&all[at..end]).unwrap();
        at = end;
        loop {
            let got = s.events_after(cursor, 1000).unwrap();
            let Some(last) = got.last() else { break };
            cursor = last.0;
            seen.extend(got.into_iter().map(|(_, r)| r));
        }
        assert_eq!(s.last_rowid().unwrap(), cursor);
    }
    assert_eq!(seen, all, "the live cursor: every row once, as stored");
    let blocks: i64 = s
        .conn
        .query_row("SELECT count(*) FROM event_blocks", [], |r| r.get(0))
        .unwrap();
    assert_eq!(
        blocks,
        20_000usize.div_ceil(super::blocks::BLOCK_ROWS) as i64
    );
    let mut got = Vec::new();
    let n = s
        .for_each(&Filter::range(i64::MIN, i64::MAX), |r| got.push(r))
        .unwrap();
    assert_eq!(n, 20_000);
    assert!(got.windows(2).all(|w| w[0].ts_ns <= w[1].ts_ns));
    let mut want = all.clone();
    want.sort_by_key(|r| r.ts_ns);
    assert_eq!(got, want);
    // A window in the middle, by time and by the other filters.
    let mut f = Filter::range(t0 + 3_600_000_000_000, t0 + 5_400_000_000_000);
    f.family = Some(6);
    f.ports = Some((1, 1000));
    let mut got = Vec::new();
    s.for_each(&f, |r| got.push(r)).unwrap();
    let want: Vec<Record> = want.into_iter().filter(|r| f.matches(r)).collect();
    assert!(!want.is_empty());
    assert_eq!(got, want);
}

/// Retention through the open block: it is rewritten without the old
/// rows and closed, so later rows go to a new block and the console's
/// cursor skips nothing.
#[test]
fn retention_closes_a_block_it_cuts() {
    let path = temp_db("retopen");
    let mut s = Store::open(&path).unwrap();
    let recs: Vec<Record> = (0..100).map(sample).collect();
    s.insert(&recs).unwrap();
    let cursor = s.last_rowid().unwrap();
    assert_eq!(s.delete_older(recs[40].ts_ns, 1000).unwrap(), 40);
    assert_eq!(s.delete_older(recs[40].ts_ns, 1000).unwrap(), 0);
    s.insert(&[sample(100), sample(101)]).unwrap();
    let new: Vec<Record> = s
        .events_after(cursor, 100)
        .unwrap()
        .into_iter()
        .map(|(_, r)| r)
        .collect();
    assert_eq!(new, vec![sample(100), sample(101)]);
    assert_eq!(s.count().unwrap(), 62);
    assert_eq!(s.span().unwrap(), Some((recs[40].ts_ns, sample(101).ts_ns)));
}

/// Each block says how wide its rows are: a later build's wider rows (new
/// fields at the end) and this build's read side by side.
#[test]
fn blocks_of_another_row_width_are_read() {
    let path = temp_db("width");
    let mut s = Store::open(&path).unwrap();
    s.insert(&[sample(0), sample(2)]).unwrap();
    let mut wide = vec![0u8; 2 * 80];
    for (i, r) in [sample(1), sample(3)].iter().enumerate() {
        super::blocks::encode(r, &mut wide[i * 80..i * 80 + 72]);
        wide[i * 80 + 72..i * 80 + 80].fill(0xee);
    }
    s.conn
        .execute(
            "INSERT INTO event_blocks (ts_lo, ts_hi, rows, packets, open, width, data) \
             VALUES (?1, ?2, 2, 2, 0, 80, ?3)",
            rusqlite::params![sample(1).ts_ns, sample(3).ts_ns, wide],
        )
        .unwrap();
    s.insert(&[sample(4)]).unwrap();
    let mut got = Vec::new();
    s.for_each(&Filter::range(i64::MIN, i64::MAX), |r| got.push(r))
        .unwrap();
    assert_eq!(got, (0..5).map(sample).collect::<Vec<_>>());
    let live: Vec<Record> = s
        .events_after(0, 10)
        .unwrap()
        .into_iter()
        .map(|(_, r)| r)
        .collect();
    assert_eq!(live.len(), 5);
}
