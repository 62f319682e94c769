//! Faults of the disk under the history database: a filesystem that
//! fills up (a small tmpfs, mounted for the test and unmounted after it,
//! even on failure) under the live sensor and under a file ingest, and a
//! `kill -9` in the middle of an ingest.

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use fireplot_tests::{
    addr, out_dir, privileged,
    sensor::{fireplot_bin, ingest_stored, Sensor, NO_LIMITS},
    traffic::{hping3_sent, write_iptables_mix},
    unique_prefix, Lab,
};
use serde_json::Value;

/// A tmpfs of `mib` MiB at `dir`, unmounted when dropped (a panic too).
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, mib: u32) -> Tmpfs {
        std::fs::create_dir_all(dir).expect("mount point");
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
            .arg(dir)
            .status()
            .expect("mount");
        assert!(ok.success(), "cannot mount a tmpfs on {}", dir.display());
        Tmpfs(dir.to_path_buf())
    }

    /// Fills what is left with one file; returns its path.
    fn fill(&self) -> PathBuf {
        use std::io::Write;
        let path = self.0.join("filler");
        let mut f = std::fs::File::create(&path).expect("filler");
        let chunk = vec![0x55u8; 4096];
        while f.write_all(&chunk).is_ok() {}
        let _ = f.sync_all();
        path
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// The last summary the sensor wrote (`--stats-out`, JSON lines).
fn last_summary(sensor: &Sensor) -> Value {
    std::fs::read_to_string(&sensor.stats_path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .last()
        .unwrap_or(Value::Null)
}

fn store_count(summary: &Value, key: &str) -> u64 {
    summary["store"][key].as_u64().unwrap_or(0)
}

/// 2000 SYNs to ports counting up from `first`, from the inet side.
fn probes(lab: &Lab, first: u32) {
    let base = format!("{}", 1 + first % 60_000);
    hping3_sent(
        lab,
        &[
            "-S",
            "-q",
            "-p",
            &format!("++{base}"),
            "-i",
            "u400",
            "-c",
            "2000",
            addr::LAN_V4,
        ],
        2000,
        Duration::from_secs(30),
    )
    .expect("hping3");
}

/// Sends rounds of probes until `done` says so (at most `rounds`): the
/// summaries come every second. Returns the summary that satisfied it.
fn probe_until(
    lab: &Lab,
    sensor: &Sensor,
    rounds: u32,
    done: impl Fn(&Value) -> bool,
) -> Option<Value> {
    for round in 0..rounds {
        probes(lab, round * 2000);
        std::thread::sleep(Duration::from_millis(1500));
        let s = last_summary(sensor);
        if done(&s) {
            return Some(s);
        }
    }
    None
}

#[test]
fn a_full_disk_under_the_live_sensor_is_counted_and_storing_resumes() {
    if !privileged("a_full_disk_under_the_live_sensor_is_counted_and_storing_resumes") {
        return;
    }
    let dir = out_dir("disk-live");
    let fs = Tmpfs::mount(&dir.join("mnt"), 4);
    let db = fs.0.join("h.db");
    let lab = Lab::up(&unique_prefix("dsk")).expect("lab");
    let web = "127.0.0.1:18791";
    let mut extra: Vec<&str> = NO_LIMITS.to_vec();
    extra.extend(["--stats-every", "1s", "--web", web, "--db"]);
    extra.push(db.to_str().expect("utf-8"));
    let sensor = Sensor::start_with(&lab, &dir.join("live"), &extra, false).expect("sensor");

    let stored = probe_until(&lab, &sensor, 5, |s| store_count(s, "stored") >= 2000)
        .expect("events are stored while there is room");
    let filler = fs.fill();
    let offered_before = stored["userspace"]["events_received"].as_u64().unwrap_or(0);
    let full = probe_until(&lab, &sensor, 40, |s| {
        store_count(s, "not_stored_disk_full") > 0
    })
    .unwrap_or_else(|| panic!("the full disk is never counted: {}", last_summary(&sensor)));
    let stored_when_full = store_count(&full, "stored");

    // The sensor keeps running, and /metrics names the reason.
    let metrics = lab
        .exec(
            fireplot_tests::Node::Router,
            "curl",
            &["-sf", &format!("http://{web}/metrics")],
        )
        .expect("/metrics");
    let metrics = String::from_utf8_lossy(&metrics.stdout);
    let line = metrics
        .lines()
        .find(|l| l.starts_with("fireplot_store_events_not_stored_total{reason=\"disk_full\"}"))
        .unwrap_or_else(|| panic!("no disk_full line in /metrics: {metrics}"));
    let on_metrics: u64 = line
        .rsplit(' ')
        .next()
        .and_then(|v| v.parse().ok())
        .expect("a value");
    assert!(on_metrics > 0, "{line}");

    // Space returns: storing resumes.
    std::fs::remove_file(&filler).expect("free the space");
    let freed = Instant::now();
    let resumed = probe_until(&lab, &sensor, 30, |s| {
        store_count(s, "stored") > stored_when_full
    })
    .unwrap_or_else(|| panic!("storing never resumed: {}", last_summary(&sensor)));
    let resume_s = freed.elapsed().as_secs_f64();
    let alive = Path::new(&format!("/proc/{}", sensor.pid())).exists();
    assert!(alive, "the sensor keeps running");
    let end = sensor.stop().expect("stop").stats;

    let st = &end["store"];
    let (s, ns, disk) = (
        st["stored"].as_u64().unwrap_or(0),
        st["not_stored"].as_u64().unwrap_or(0),
        st["not_stored_disk_full"].as_u64().unwrap_or(0),
    );
    let u = &end["userspace"];
    let handed = u["events_received"].as_u64().unwrap_or(0)
        - u["decode_errors"].as_u64().unwrap_or(0)
        + u["aggregates_received"].as_u64().unwrap_or(0);
    assert_eq!(s + ns, handed, "every event stored or counted: {st}");
    assert!(disk > 0 && disk == ns, "the loss is the full disk's: {st}");
    assert!(s > store_count(&resumed, "stored") - 1, "{st}");
    let in_db = fireplot::store::Store::open(&db)
        .expect("opens")
        .count()
        .expect("count");
    assert_eq!(in_db, s, "what is counted as stored is in the database");
    eprintln!(
        "disk full (live): offered {handed} events ({offered_before} before the disk filled), stored {s}, \
         not stored {ns} (disk_full {disk}); storing resumed {resume_s:.1} s after space returned"
    );
}

/// `fireplot ingest --format iptables FILE --db DB ARGS`: (exit ok, stderr).
fn ingest(file: &Path, db: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new(fireplot_bin())
        .args(["ingest", "--format", "iptables", "--quiet"])
        .arg(file)
        .arg("--db")
        .arg(db)
        .args(args)
        .env("RUST_LOG", "info")
        .output()
        .expect("fireplot ingest");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_file_ingest_on_a_full_disk_waits_for_space_or_stops_clearly() {
    if !privileged("a_file_ingest_on_a_full_disk_waits_for_space_or_stops_clearly") {
        return;
    }
    let dir = out_dir("disk-ingest");
    // 16 MiB: SQLite's WAL alone grows to 4 MiB before its checkpoint.
    let fs = Tmpfs::mount(&dir.join("mnt"), 16);
    let db = fs.0.join("h.db");
    let small = dir.join("small.log");
    let big = dir.join("big.log");
    write_iptables_mix(&small, 1000).expect("write");
    write_iptables_mix(&big, 200_000).expect("write");
    let (ok, err) = ingest(&small, &db, &[]);
    assert!(ok, "{err}");

    // The disk stays full: the ingest waits --store-wait, then stops with
    // the reason and exit 1; what it stored is committed.
    let filler = fs.fill();
    let started = Instant::now();
    let (ok, err) = ingest(&big, &db, &["--store-wait", "3s"]);
    let waited = started.elapsed();
    assert!(!ok, "{err}");
    assert!(err.contains("the disk is full"), "the reason: {err}");
    assert!(err.contains("disk_full"), "counted by reason: {err}");
    assert!(
        err.contains("resume from there (`tail -n +"),
        "where to resume: {err}"
    );
    let (stored, not_stored) = ingest_stored(&err);
    assert!(not_stored > 0, "{err}");
    assert!(waited < Duration::from_secs(90), "bounded: {waited:?}");
    std::fs::remove_file(&filler).expect("free the space");
    let count = fireplot::store::Store::open(&db)
        .expect("opens")
        .count()
        .expect("count");
    assert_eq!(count, 1000 + stored, "every committed batch is there");

    // Space comes back while it waits: it goes on, and nothing is lost.
    let filler = fs.fill();
    let freeing = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(3));
        std::fs::remove_file(&filler).expect("free the space");
        Instant::now()
    });
    let mid = dir.join("mid.log");
    write_iptables_mix(&mid, 20_000).expect("write");
    let (ok, err) = ingest(&mid, &db, &["--store-wait", "60s"]);
    let freed = freeing.join().expect("freeing thread");
    assert!(ok, "{err}");
    assert_eq!(ingest_stored(&err), (20_000, 0), "{err}");
    assert!(err.contains("cannot be written"), "it said it waits: {err}");
    let count2 = fireplot::store::Store::open(&db)
        .expect("opens")
        .count()
        .expect("count");
    assert_eq!(count2, count + 20_000);
    eprintln!(
        "disk full (ingest): stopped after {:.1} s with {stored} stored and {not_stored} not stored; \
         with space back after 3 s, 20000 of 20000 stored, done {:.1} s after the space came back",
        waited.as_secs_f64(),
        freed.elapsed().as_secs_f64()
    );
}

#[test]
fn a_kill_9_during_ingest_leaves_every_committed_batch() {
    // No privileges: an ingest killed while it writes; the database opens
    // and holds at least what it held just before the kill.
    let dir = out_dir("disk-kill");
    let log = dir.join("big.log");
    let db = dir.join("k.db");
    write_iptables_mix(&log, 2_000_000).expect("write");
    let mut child = Command::new(fireplot_bin())
        .args([
            "ingest",
            "--format",
            "iptables",
            "--quiet",
            "--store-queue",
            "1",
        ])
        .arg(&log)
        .arg("--db")
        .arg(&db)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("fireplot ingest");
    let deadline = Instant::now() + Duration::from_secs(120);
    let committed = loop {
        let n = fireplot::store::Store::open_read_only(&db)
            .and_then(|s| s.count())
            .unwrap_or(0);
        if n >= 200_000 {
            break n;
        }
        assert!(
            child.try_wait().expect("wait").is_none(),
            "ingest ended before the kill"
        );
        assert!(Instant::now() < deadline, "nothing committed in time");
        std::thread::sleep(Duration::from_millis(20));
    };
    child.kill().expect("SIGKILL");
    child.wait().expect("reaped");
    let top = Command::new(fireplot_bin())
        .args(["top", "--db"])
        .arg(&db)
        .args([
            "--from",
            "2026-11-19T00:00:00Z",
            "--to",
            "2026-11-21T00:00:00Z",
        ])
        .output()
        .expect("fireplot top");
    assert!(
        top.status.success(),
        "{}",
        String::from_utf8_lossy(&top.stderr)
    );
    let after = fireplot::store::Store::open(&db)
        .expect("opens")
        .count()
        .expect("count");
    assert!(
        after >= committed,
        "{after} < {committed} committed before the kill"
    );
    assert!(after < 2_000_000, "killed in the middle");
    let check = rusqlite::Connection::open(&db)
        .and_then(|c| c.query_row("PRAGMA integrity_check", [], |r| r.get::<_, String>(0)))
        .expect("integrity_check");
    assert_eq!(check, "ok");
    // The database takes more: a second ingest into it works.
    let small = dir.join("small.log");
    write_iptables_mix(&small, 1000).expect("write");
    let (ok, err) = ingest(&small, &db, &[]);
    assert!(ok, "{err}");
    assert_eq!(ingest_stored(&err), (1000, 0), "{err}");
    let again = fireplot::store::Store::open(&db)
        .expect("opens")
        .count()
        .expect("count");
    assert_eq!(again, after + 1000, "the re-ingest's events are there");
    eprintln!(
        "kill -9: {committed} events committed before the kill, {after} in the database after"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
