//! The fleet against real servers: `nats-server -js` and PostgreSQL,
//! started on loopback by the test and stopped by their PIDs. Sensors are
//! `fireplot ingest --publish` (the same publisher as `run`), the centre
//! is `fireplot collect`. Every check is on what PostgreSQL holds.

use std::{
    collections::BTreeMap,
    io::Write,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use fireplot_tests::{
    can_run,
    sensor::fireplot_bin,
    servers::{Nats, Postgres},
    traffic::iptables_syn,
};

fn out_dir(test: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("fireplot-fleet-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

/// The servers are installed (`cargo xtask setup`); required under CI.
fn servers_here(test: &str) -> bool {
    let nats = Command::new("nats-server")
        .arg("--version")
        .output()
        .is_ok();
    let pg = std::path::Path::new("/usr/lib/postgresql").exists();
    can_run(
        test,
        nats && pg,
        "needs nats-server and PostgreSQL (cargo xtask setup installs them)",
    )
}

/// `n` iptables LOG lines from `sources` sources, starting at second `t0`
/// of 2026-11-20.
fn lines(n: usize, sources: usize, t0: usize) -> String {
    (0..n)
        .map(|i| {
            let src = format!("198.51.100.{}", 1 + i % sources);
            iptables_syn(t0 + i / 50, i, &src, "198.18.1.2", 1 + (i % 5000) as u16)
        })
        .collect()
}

fn fireplot(args: &[&str]) -> std::process::Output {
    Command::new(fireplot_bin())
        .args(args)
        .output()
        .expect("run fireplot")
}

/// One sensor publishing a log file through `ingest`.
fn publish(nats: &Nats, sensor: &str, log: &Path, spool: &Path) -> String {
    let out = fireplot(&[
        "ingest",
        "--format",
        "iptables",
        log.to_str().unwrap(),
        "--publish",
        &nats.url(),
        "--sensor",
        sensor,
        "--spool-dir",
        spool.to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "ingest --publish {sensor}: {err}");
    assert!(
        err.contains("still spooled 0 batches"),
        "all of it reached the broker: {err}"
    );
    err
}

/// A running collector, killed if a test fails before it ends.
struct Collector(Option<Child>);

impl Drop for Collector {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn collector(nats: &Nats, pg: &Postgres, extra: &[&str]) -> Collector {
    Collector(Some(
        Command::new(fireplot_bin())
            .args([
                "collect",
                "--nats",
                &nats.url(),
                "--postgres",
                &pg.url(),
                "--stats-every",
                "1s",
            ])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start collect"),
    ))
}

/// Waits for a collector to end by itself (bounded); its summary JSON.
fn finished(mut guard: Collector, limit: Duration) -> serde_json::Value {
    let mut c = guard.0.take().expect("running");
    let started = Instant::now();
    loop {
        if let Some(_status) = c.try_wait().unwrap() {
            break;
        }
        if started.elapsed() > limit {
            let _ = c.kill();
            let out = c.wait_with_output().unwrap();
            panic!(
                "collect did not finish in {limit:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = c.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "collect failed: {err}");
    if std::env::var_os("FIREPLOT_TEST_VERBOSE").is_some() {
        eprintln!("{err}");
    }
    serde_json::from_str(String::from_utf8_lossy(&out.stdout).trim())
        .unwrap_or_else(|e| panic!("collect's summary ({e}): {err}"))
}

/// Per sensor: (events, distinct sequence numbers).
fn stored(pg: &Postgres) -> BTreeMap<String, (u64, u64)> {
    pg.sql(
        "SELECT s.name, count(*), count(DISTINCT e.seq) FROM events e JOIN sensors s ON s.id = e.sensor_id GROUP BY 1 ORDER BY 1",
    )
    .unwrap()
    .lines()
    .filter(|l| !l.is_empty())
    .map(|l| {
        let f: Vec<&str> = l.split('|').collect();
        (f[0].to_string(), (f[1].parse().unwrap(), f[2].parse().unwrap()))
    })
    .collect()
}

/// Batches (of events, alerts or summaries) committed so far.
fn committed(pg: &Postgres) -> u64 {
    pg.sql("SELECT count(*) FROM batches")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// Every sensor's batches reached the stream in the order of their
/// sequence numbers (what the spool and the publisher promise).
fn in_order(pg: &Postgres) {
    let bad = pg
        .sql(
            "SELECT count(*) FROM (SELECT stream_seq < lag(stream_seq) OVER (PARTITION BY sensor_id ORDER BY first_seq) AS back FROM batches) x WHERE back",
        )
        .unwrap();
    assert_eq!(
        bad, "0",
        "batches of a sensor reached the stream out of order"
    );
}

#[test]
fn three_sensors_two_collectors_every_event_exactly_once() {
    if !servers_here("three_sensors_two_collectors_every_event_exactly_once") {
        return;
    }
    let d = out_dir("three");
    let nats = Nats::start(&d.join("nats")).expect("nats-server");
    let pg = Postgres::start(&d.join("pg")).expect("postgres");
    let n = 20_000;
    for (i, s) in ["r1", "r2", "r3"].iter().enumerate() {
        let log = d.join(format!("{s}.log"));
        std::fs::write(&log, lines(n, 40 + i * 10, i * 10)).unwrap();
        let said = publish(&nats, s, &log, &d.join("spool"));
        assert!(said.contains(&format!("sensor `{s}` published")), "{said}");
    }
    // Two collectors on the same durable consumer share the work.
    let a = collector(&nats, &pg, &["--exit-when-idle", "4s"]);
    let b = collector(&nats, &pg, &["--exit-when-idle", "4s"]);
    let (sa, sb) = (
        finished(a, Duration::from_secs(120)),
        finished(b, Duration::from_secs(120)),
    );
    let got = stored(&pg);
    for s in ["r1", "r2", "r3"] {
        assert_eq!(got.get(s), Some(&(n as u64, n as u64)), "{s}: {got:?}");
    }
    let events = sa["events"].as_u64().unwrap() + sb["events"].as_u64().unwrap();
    assert_eq!(events, 3 * n as u64, "{sa} {sb}");
    assert_eq!(sa["bad_messages"], 0);
    // Alerts and summaries arrived too, with the interface names.
    let alerts: u64 = pg
        .sql("SELECT count(*) FROM alerts")
        .unwrap()
        .parse()
        .unwrap();
    assert!(alerts > 0, "the sensors' alerts are stored");
    assert_eq!(
        pg.sql("SELECT count(DISTINCT sensor_id) FROM interfaces WHERE name = 'eth0'")
            .unwrap(),
        "3"
    );
    in_order(&pg);
    // The same batches again (a sensor that re-sent, a replayed stream):
    // nothing new is stored.
    let log = d.join("r1.log");
    std::fs::write(&log, lines(100, 5, 0)).unwrap();
    publish(&nats, "r1", &log, &d.join("spool"));
    let c = finished(
        collector(&nats, &pg, &["--exit-when-idle", "3s"]),
        Duration::from_secs(60),
    );
    assert_eq!(c["events"], 100, "new sequence numbers: new events: {c}");
    assert_eq!(stored(&pg)["r1"], (n as u64 + 100, n as u64 + 100));
    // Retention drops whole day partitions: these events are of
    // 2026-11-20, more than 3 days before any run of this test.
    let parts = || {
        pg.sql("SELECT count(*) FROM pg_inherits i JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = 'events'")
            .unwrap()
    };
    assert_eq!(parts(), "1");
    finished(
        collector(&nats, &pg, &["--retain", "3d", "--exit-when-idle", "1s"]),
        Duration::from_secs(60),
    );
    assert_eq!(parts(), "0", "the old day's partition is dropped");
    assert!(stored(&pg).is_empty());
}

#[test]
fn crashes_of_the_collector_and_the_database_lose_and_duplicate_nothing() {
    if !servers_here("crashes_of_the_collector_and_the_database_lose_and_duplicate_nothing") {
        return;
    }
    let d = out_dir("crash");
    let nats = Nats::start(&d.join("nats")).expect("nats-server");
    let mut pg = Postgres::start(&d.join("pg")).expect("postgres");
    let n = 60_000;
    for (i, s) in ["r1", "r2", "r3"].iter().enumerate() {
        let log = d.join(format!("{s}.log"));
        std::fs::write(&log, lines(n, 30, i * 100)).unwrap();
        publish(&nats, s, &log, &d.join("spool"));
    }
    // 1. A collector dies right after a commit, before acknowledging it:
    // those batches come again and must not be stored twice.
    let mut a = collector(
        &nats,
        &pg,
        &[
            "--batch",
            "1",
            "--ack-wait",
            "2s",
            "--crash-after-commits",
            "3",
        ],
    );
    let status = a.0.as_mut().unwrap().wait().unwrap();
    assert!(!status.success(), "the collector aborted as told");
    let after_crash = committed(&pg);
    assert_eq!(after_crash, 3, "it committed 3 batches before it died");
    // 2. Another collector takes over; PostgreSQL is killed while it
    // writes, and started again.
    let b = collector(
        &nats,
        &pg,
        &["--batch", "1", "--ack-wait", "2s", "--exit-when-idle", "8s"],
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    while committed(&pg) <= after_crash && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    pg.kill();
    std::thread::sleep(Duration::from_millis(500));
    pg.restart().expect("postgres again");
    let s = finished(b, Duration::from_secs(180));
    let got = stored(&pg);
    for name in ["r1", "r2", "r3"] {
        assert_eq!(
            got.get(name),
            Some(&(n as u64, n as u64)),
            "{name}: nothing lost, nothing twice: {got:?} ({s})"
        );
    }
    let alerts_dup = pg
        .sql("SELECT count(*) - count(DISTINCT (sensor_id, seq)) FROM alerts")
        .unwrap();
    assert_eq!(alerts_dup, "0");
    eprintln!(
        "crash test: {after_crash} batches committed before the collector's crash; then {s}; PostgreSQL killed once"
    );
}

/// A collector on the database at `url` (not the test server's default).
fn collector_at(nats: &Nats, url: &str, extra: &[&str]) -> Collector {
    Collector(Some(
        Command::new(fireplot_bin())
            .args(["collect", "--nats", &nats.url(), "--postgres", url])
            .args(["--wait-for-servers", "60s", "--exit-when-idle", "60s"])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start collect"),
    ))
}

/// Waits (bounded) for a collector to give up by itself: its stderr. It
/// must fail, and well before its 60 s of patience or idleness: it did not
/// retry.
fn gave_up(mut guard: Collector) -> String {
    let mut c = guard.0.take().expect("running");
    let limit = Duration::from_secs(30);
    let started = Instant::now();
    while c.try_wait().unwrap().is_none() {
        if started.elapsed() > limit {
            let _ = c.kill();
            let out = c.wait_with_output().unwrap();
            panic!(
                "collect still retried after {limit:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = c.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!out.status.success(), "collect exits non-zero: {err}");
    eprintln!(
        "gave up after {:.1} s: {}",
        started.elapsed().as_secs_f64(),
        err.lines().last().unwrap_or("")
    );
    err
}

#[test]
fn a_permanent_postgres_error_stops_the_collector_and_loses_nothing() {
    if !servers_here("a_permanent_postgres_error_stops_the_collector_and_loses_nothing") {
        return;
    }
    let d = out_dir("refused");
    let nats = Nats::start(&d.join("nats")).expect("nats-server");
    let pg = Postgres::start(&d.join("pg")).expect("postgres");
    let url_of = |user: &str, db: &str| format!("postgres://{user}@127.0.0.1:{}/{db}", pg.port);
    // No such database (3D000): not waited for.
    let err = gave_up(collector_at(&nats, &url_of("fireplot", "nosuchdb"), &[]));
    assert!(err.contains("does not exist"), "{err}");
    // The schema, made by a collector with nothing to do.
    finished(
        collector(&nats, &pg, &["--exit-when-idle", "1s"]),
        Duration::from_secs(60),
    );
    let log = d.join("r1.log");
    std::fs::write(&log, lines(300, 7, 0)).unwrap();
    publish(&nats, "r1", &log, &d.join("spool"));
    // A role that may read but not write (42501).
    pg.sql("CREATE ROLE reader LOGIN; GRANT USAGE, CREATE ON SCHEMA public TO reader; GRANT SELECT ON ALL TABLES IN SCHEMA public TO reader")
        .unwrap();
    let err = gave_up(collector_at(&nats, &url_of("reader", "postgres"), &[]));
    assert!(
        err.contains("SQLSTATE 42501") && err.contains("permission denied"),
        "{err}"
    );
    assert_eq!(
        err.matches("permission denied").count(),
        1,
        "said once: {err}"
    );
    // A table that is not the one fireplot made (42703).
    pg.sql("ALTER TABLE events RENAME COLUMN icmp_code TO icmp_kode")
        .unwrap();
    let err = gave_up(collector_at(&nats, &pg.url(), &[]));
    assert!(
        err.contains("SQLSTATE 42703") && err.contains("icmp_code"),
        "{err}"
    );
    assert!(stored(&pg).is_empty(), "nothing was stored meanwhile");
    // Mended, a collector stores every event the refused ones left.
    pg.sql("ALTER TABLE events RENAME COLUMN icmp_kode TO icmp_code")
        .unwrap();
    let s = finished(
        collector(&nats, &pg, &["--exit-when-idle", "3s"]),
        Duration::from_secs(60),
    );
    assert_eq!(stored(&pg).get("r1"), Some(&(300, 300)), "{s}");
}

/// The sensor's closing fleet line: (spooled, drained, dropped, still spooled).
fn spool_counts(log: &str) -> (u64, u64, u64, u64) {
    let line = log
        .lines()
        .rev()
        .find(|l| l.contains("fleet: sensor"))
        .unwrap_or_else(|| panic!("no fleet line in: {log}"));
    let num = |key: &str| -> u64 {
        let at = line
            .find(key)
            .unwrap_or_else(|| panic!("`{key}` in {line}"))
            + key.len();
        line[at..]
            .trim_start()
            .split(|c: char| !c.is_ascii_digit())
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    (
        num("spooled "),
        num("drained "),
        num("dropped (spool full) "),
        num("still spooled "),
    )
}

fn lines_in(p: &Path) -> usize {
    std::fs::read_to_string(p)
        .map(|s| s.lines().count())
        .unwrap_or(0)
}

fn wait_lines(p: &Path, want: usize, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while lines_in(p) < want {
        assert!(
            Instant::now() < deadline,
            "{what}: {} of {want} lines after 60 s",
            lines_in(p)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_broker_outage_is_spooled_and_drained_in_order() {
    if !servers_here("a_broker_outage_is_spooled_and_drained_in_order") {
        return;
    }
    let d = out_dir("outage");
    let mut nats = Nats::start(&d.join("nats")).expect("nats-server");
    let pg = Postgres::start(&d.join("pg")).expect("postgres");
    let log = d.join("kern.log");
    let events = d.join("events.jsonl");
    std::fs::write(&log, "").unwrap();
    let sensor = Command::new(fireplot_bin())
        .args(["ingest", "--format", "iptables"])
        .arg(&log)
        .args([
            "--follow",
            "--publish",
            &nats.url(),
            "--sensor",
            "edge",
            "--spool-dir",
        ])
        .arg(d.join("spool"))
        .arg("--events-out")
        .arg(&events)
        .stdout(Stdio::null())
        // A file, not a pipe: nobody reads a pipe until the end, and a
        // sensor that logs more than its 64 KiB would block on it.
        .stderr(std::fs::File::create(d.join("sensor.log")).expect("sensor log"))
        .spawn()
        .expect("sensor");
    let append = |text: String| {
        let mut f = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
        f.write_all(text.as_bytes()).unwrap();
    };
    let part = 20_000;
    append(lines(part, 50, 0));
    wait_lines(&events, part, "before the outage");
    // The broker goes away while lines keep coming: the sensor reads them
    // all (it never waits for the broker) and spools them.
    nats.stop();
    append(lines(part, 50, 1000));
    wait_lines(&events, 2 * part, "during the outage");
    let spool = d.join("spool").join("edge.spool");
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::fs::read_dir(&spool).map(|r| r.count()).unwrap_or(0) == 0 {
        assert!(Instant::now() < deadline, "nothing was spooled");
        std::thread::sleep(Duration::from_millis(50));
    }
    nats.restart().expect("nats-server again");
    append(lines(part, 50, 2000));
    wait_lines(&events, 3 * part, "after the outage");
    // The spool drains once the broker is back.
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::fs::read_dir(&spool).map(|r| r.count()).unwrap_or(1) > 0 {
        assert!(Instant::now() < deadline, "the spool did not drain");
        std::thread::sleep(Duration::from_millis(100));
    }
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(sensor.id() as i32, libc::SIGINT) };
    let mut sensor = sensor;
    let status = sensor.wait().unwrap();
    let said = std::fs::read_to_string(d.join("sensor.log")).unwrap_or_default();
    assert!(status.success(), "{said}");
    let (spooled, drained, dropped, left) = spool_counts(&said);
    assert!(spooled > 0, "{said}");
    assert_eq!((drained, dropped, left), (spooled, 0, 0), "{said}");
    let c = finished(
        collector(&nats, &pg, &["--exit-when-idle", "4s"]),
        Duration::from_secs(120),
    );
    assert_eq!(
        stored(&pg).get("edge"),
        Some(&(3 * part as u64, 3 * part as u64)),
        "every line once ({c})"
    );
    in_order(&pg);
    eprintln!("outage test: {spooled} items spooled and drained, 0 dropped; {c}");
}

/// GET over plain HTTP/1.1: (status, body).
fn http(port: u16, path: &str) -> (u16, String) {
    use std::io::Read;
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8_lossy(&raw).to_string();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|x| x.1.to_string())
        .unwrap_or_default();
    (status, body)
}

/// One iptables line at second `t` of 2026-11-20 10:00.
fn line_at(t: usize, src: &str, dst: &str, port: u16) -> String {
    iptables_syn(36_000 + t % 3600, 0, src, dst, port)
}

#[test]
fn a_sweep_across_three_routers_is_one_fleet_campaign_and_every_command_reads_postgres() {
    if !servers_here("a_sweep_across_three_routers_is_one_fleet_campaign") {
        return;
    }
    let d = out_dir("campaign");
    let nats = Nats::start(&d.join("nats")).expect("nats-server");
    let pg = Postgres::start(&d.join("pg")).expect("postgres");
    let sweeper = "203.0.113.66";
    let mut per_sensor = BTreeMap::new();
    for (i, s) in ["r1", "r2", "r3"].iter().enumerate() {
        let mut log = String::new();
        // The sweeper: TCP/23 on 20 hosts of each site, one site after the other.
        for h in 0..20 {
            log.push_str(&line_at(
                i * 600 + h * 3,
                sweeper,
                &format!("198.18.{}.{}", i + 1, h + 2),
                23,
            ));
        }
        // Each site's own background: sources no other site sees.
        for k in 0..200 {
            let src = format!("198.51.100.{}", 1 + i * 60 + k % 50);
            log.push_str(&line_at(
                k * 9 % 1800,
                &src,
                &format!("198.18.{}.2", i + 1),
                1 + (k as u16 * 37) % 9000,
            ));
        }
        per_sensor.insert(s.to_string(), 220u64);
        std::fs::write(d.join(format!("{s}.log")), log).unwrap();
        publish(&nats, s, &d.join(format!("{s}.log")), &d.join("spool"));
    }
    finished(
        collector(&nats, &pg, &["--exit-when-idle", "3s"]),
        Duration::from_secs(120),
    );
    let url = pg.url();
    let range = [
        "--from",
        "2026-11-20T00:00:00Z",
        "--to",
        "2026-11-21T00:00:00Z",
    ];
    // detect --postgres: the merged stream in event time, one campaign.
    let mut args = vec!["detect", "--postgres", url.as_str()];
    args.extend(range);
    let out = fireplot(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let alerts: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let fleet: Vec<&serde_json::Value> = alerts
        .iter()
        .filter(|a| a["kind"] == "fleet_campaign")
        .collect();
    assert_eq!(fleet.len(), 1, "one fleet-wide campaign: {fleet:?}");
    let a = fleet[0];
    assert_eq!(a["sources"][0], sweeper);
    assert_eq!(a["sensors"], serde_json::json!(["r1", "r2", "r3"]));
    assert_eq!(a["probes"], 60);
    assert_eq!(a["targets"]["count"], 60);
    let summary = a["summary"].as_str().unwrap();
    assert!(
        summary.starts_with(&format!("{sweeper} swept 3 sensors (r1, r2, r3) on TCP/23")),
        "{summary}"
    );
    // top --postgres, whole fleet and one sensor.
    let top = |extra: &[&str]| -> serde_json::Value {
        let mut args = vec!["top", "--postgres", url.as_str(), "--json"];
        args.extend(range);
        args.extend(extra);
        let out = fireplot(&args);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    };
    assert_eq!(top(&[])["events"], 660);
    assert_eq!(top(&["--sensor", "r2"])["events"], per_sensor["r2"]);
    assert_eq!(top(&["--iface", "r3/eth0"])["events"], 220);
    let bad = fireplot(&["top", "--postgres", &url, "--sensor", "r9"]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("no sensor `r9`"));
    // plot --postgres.
    let png = d.join("fleet.png");
    let mut args = vec![
        "plot",
        "--postgres",
        url.as_str(),
        "-o",
        png.to_str().unwrap(),
    ];
    args.extend(range);
    let out = fireplot(&args);
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && said.contains(": 660 events"),
        "{said}"
    );
    // serve --postgres: the console over the fleet.
    let port = fireplot_tests::servers::free_port().unwrap();
    /// Stopped (SIGTERM) even when an assertion fails.
    struct Serving(Child);
    impl Drop for Serving {
        fn drop(&mut self) {
            // SAFETY: kill(2) on our own child.
            unsafe { libc::kill(self.0.id() as i32, libc::SIGTERM) };
            let _ = self.0.wait();
        }
    }
    let _serve = Serving(
        Command::new(fireplot_bin())
            .args([
                "serve",
                "--postgres",
                &url,
                "--listen",
                &format!("127.0.0.1:{port}"),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "serve did not listen");
        std::thread::sleep(Duration::from_millis(50));
    }
    let q = "from=2026-11-20T00:00:00Z&to=2026-11-21T00:00:00Z";
    let (st, view) = http(port, &format!("/api/view?{q}"));
    assert_eq!(st, 200, "{view}");
    let view: serde_json::Value = serde_json::from_str(&view).unwrap();
    assert_eq!(
        view["interfaces"],
        serde_json::json!(["r1/eth0", "r2/eth0", "r3/eth0"])
    );
    let (st, alerts) = http(port, &format!("/api/alerts?{q}"));
    assert_eq!(st, 200);
    assert!(
        alerts.contains("\"sensor\":\"r1\""),
        "alerts name their sensor: {alerts}"
    );
    let (st, top) = http(port, &format!("/api/top?{q}&iface=r1/eth0"));
    assert_eq!(st, 200);
    let top: serde_json::Value = serde_json::from_str(&top).unwrap();
    assert_eq!(top["total"], 220, "{top}");
    let (st, png) = http(port, &format!("/plot.png?{q}"));
    assert_eq!(st, 200, "{png}");
}

/// A psql session the test keeps open, to hold a transaction.
struct Session {
    child: Child,
    out: std::io::BufReader<std::process::ChildStdout>,
    n: u32,
}

impl Session {
    fn open(pg: &Postgres) -> Session {
        let mut child = pg
            .psql()
            .unwrap()
            .args(["-v", "ON_ERROR_STOP=1"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("psql");
        let out = std::io::BufReader::new(child.stdout.take().unwrap());
        Session { child, out, n: 0 }
    }

    /// Runs `sql` and waits until psql has done it.
    fn run(&mut self, sql: &str) {
        use std::io::BufRead;
        self.n += 1;
        let mark = format!("done-{}", self.n);
        let stdin = self.child.stdin.as_mut().unwrap();
        writeln!(stdin, "{sql}\nSELECT '{mark}';").unwrap();
        stdin.flush().unwrap();
        let mut line = String::new();
        loop {
            line.clear();
            let n = self.out.read_line(&mut line).unwrap();
            assert!(n > 0, "psql ended before `{sql}` was done");
            if line.trim() == mark {
                return;
            }
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A live stream (server-sent events) read as it comes.
struct Live {
    s: std::net::TcpStream,
    seen: String,
}

impl Live {
    fn open(port: u16, path: &str) -> Live {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
        s.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        write!(s, "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").unwrap();
        Live {
            s,
            seen: String::new(),
        }
    }

    /// Reads until the stream has said `want`, `limit` at most.
    fn until(&mut self, want: &str, limit: Duration) -> bool {
        use std::io::Read;
        let started = Instant::now();
        let mut buf = [0u8; 4096];
        while !self.seen.contains(want) {
            if started.elapsed() > limit {
                return false;
            }
            match self.s.read(&mut buf) {
                Ok(0) => return false,
                Ok(n) => self.seen.push_str(&String::from_utf8_lossy(&buf[..n])),
                Err(_) => {} // the read timeout: look at the clock
            }
        }
        true
    }
}

/// Two writers commit out of id order (the lower id last, as two
/// collectors may): the console's live stream over PostgreSQL sends both
/// rows, each once.
#[test]
fn the_live_stream_over_postgres_misses_no_row_committed_late() {
    if !servers_here("the_live_stream_over_postgres_misses_no_row_committed_late") {
        return;
    }
    let d = out_dir("late");
    let nats = Nats::start(&d.join("nats")).expect("nats-server");
    let pg = Postgres::start(&d.join("pg")).expect("postgres");
    // The schema, made by a collector with nothing to do; one sensor.
    finished(
        collector(&nats, &pg, &["--exit-when-idle", "1s"]),
        Duration::from_secs(60),
    );
    let ts = 1_795_000_000_000_000_000i64;
    let (part, from, to) = fireplot::fleet::pg::partition_of(ts);
    pg.sql(&format!(
        "INSERT INTO sensors (name) VALUES ('r1'); \
         INSERT INTO interfaces VALUES (1, 2, 'eth0'); \
         CREATE TABLE {part} PARTITION OF events FOR VALUES FROM ({from}) TO ({to})"
    ))
    .unwrap();
    let insert = |seq: u32, src: &str| {
        format!(
            "INSERT INTO events (sensor_id, seq, ts_ns, family, proto, src, dst, sport, dport, \
             tcp_flags, ttl, len, class, ifindex, ip_id, tcp_seq, tcp_window, icmp_type, \
             icmp_code, pkt_flags, count) VALUES (1, {seq}, {ts}, 4, 6, '{src}', '198.18.1.2', \
             40000, 23, 2, 64, 60, 4, 2, 0, 0, 1024, 0, 0, 0, 1);"
        )
    };
    let port = fireplot_tests::servers::free_port().unwrap();
    struct Serving(Child);
    impl Drop for Serving {
        fn drop(&mut self) {
            // SAFETY: kill(2) on our own child.
            unsafe { libc::kill(self.0.id() as i32, libc::SIGTERM) };
            let _ = self.0.wait();
        }
    }
    let _serve = Serving(
        Command::new(fireplot_bin())
            .args(["serve", "--postgres", &pg.url()])
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "serve did not listen");
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut live = Live::open(port, "/api/live");
    assert!(
        live.until("text/event-stream", Duration::from_secs(10)),
        "{}",
        live.seen
    );
    // A takes the lower id and holds its transaction open; B takes the
    // next one and commits; the stream sends B's row (its cursor passes
    // A's id); then A commits.
    let mut a = Session::open(&pg);
    a.run(&format!("BEGIN; {}", insert(1, "198.51.100.1")));
    pg.sql(&insert(2, "198.51.100.2")).unwrap();
    assert_eq!(
        pg.sql("SELECT string_agg(host(src), ',' ORDER BY id) FROM events")
            .unwrap(),
        "198.51.100.2",
        "A's row is not committed yet"
    );
    assert!(
        live.until("198.51.100.2", Duration::from_secs(15)),
        "B's row is sent: {}",
        live.seen
    );
    a.run("COMMIT;");
    assert_eq!(
        pg.sql("SELECT string_agg(host(src), ',' ORDER BY id) FROM events")
            .unwrap(),
        "198.51.100.1,198.51.100.2",
        "A's row has the lower id"
    );
    assert!(
        live.until("198.51.100.1", Duration::from_secs(15)),
        "the row committed late is sent too: {}",
        live.seen
    );
    // Some more polls: neither is sent twice.
    live.until("never said", Duration::from_secs(2));
    for src in ["198.51.100.1", "198.51.100.2"] {
        assert_eq!(live.seen.matches(src).count(), 1, "{src}: {}", live.seen);
    }
}

/// Publishes raw bytes on a subject over the NATS text protocol (the
/// stream keeps what arrives on `fireplot.>`); returns after the server's
/// PONG, so the message was taken.
fn publish_raw(nats: &Nats, subject: &str, payload: &[u8]) {
    use std::io::{BufRead, BufReader};
    let addr = nats.url().trim_start_matches("nats://").to_string();
    let s = std::net::TcpStream::connect(&addr).expect("connect to nats-server");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut r = BufReader::new(s.try_clone().unwrap());
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    assert!(line.starts_with("INFO"), "{line}");
    let mut w = s;
    write!(
        w,
        "CONNECT {{\"verbose\":false,\"pedantic\":false}}\r\nPUB {subject} {}\r\n",
        payload.len()
    )
    .unwrap();
    w.write_all(payload).unwrap();
    w.write_all(b"\r\nPING\r\n").unwrap();
    for _ in 0..10 {
        line.clear();
        r.read_line(&mut line).unwrap();
        assert!(!line.starts_with("-ERR"), "{line}");
        if line.starts_with("PONG") {
            return;
        }
    }
    panic!("no PONG from nats-server");
}

#[test]
fn alert_lines_postgres_refuses_are_dropped_and_the_rest_stored() {
    if !servers_here("alert_lines_postgres_refuses_are_dropped_and_the_rest_stored") {
        return;
    }
    use fireplot::fleet::wire::{Batch, Body, Kind};
    let d = out_dir("badlines");
    let nats = Nats::start(&d.join("nats")).expect("nats-server");
    let pg = Postgres::start(&d.join("pg")).expect("postgres");
    // A sensor publishes first (the stream exists), then two batches with
    // lines jsonb refuses: before the fix the transaction failed with
    // SQLSTATE 22P05 / 22003 and was retried for ever.
    let log = d.join("r1.log");
    std::fs::write(&log, lines(200, 5, 0)).unwrap();
    publish(&nats, "r1", &log, &d.join("spool"));
    let first = 1u64 << 40;
    let batch = |first_seq: u64, kind: Kind, lines: &[&str]| {
        Batch {
            sensor: "r1".into(),
            first_seq,
            interfaces: vec![],
            body: Body::Lines(kind, lines.iter().map(|s| s.to_string()).collect()),
            bad_lines: vec![],
        }
        .encode()
    };
    publish_raw(
        &nats,
        "fireplot.r1.alerts",
        &batch(
            first,
            Kind::Alerts,
            &[
                r#"{"kind":"ok_before","first_seen":"2026-11-20T00:00:00Z"}"#,
                r#"{"kind":"nul","note":"a\u0000b"}"#,
                r#"{"kind":"tiny","n":1e-20000}"#,
                r#"{"kind":"ok_after"}"#,
            ],
        ),
    );
    publish_raw(
        &nats,
        "fireplot.r1.counters",
        &batch(
            first + 4,
            Kind::Counters,
            &[r#"{"x":"\u0000"}"#, r#"{"ts":"2026-11-20T00:00:01Z"}"#],
        ),
    );
    let c = finished(
        collector(&nats, &pg, &["--exit-when-idle", "3s"]),
        Duration::from_secs(60),
    );
    assert_eq!(c["bad_lines"], 3, "{c}");
    assert_eq!(c["bad_messages"], 0, "{c}");
    assert_eq!(c["failed_transactions"], 0, "{c}");
    assert_eq!(
        pg.sql(&format!(
            "SELECT string_agg(seq - {first} || ':' || kind, ',' ORDER BY seq) FROM alerts WHERE seq >= {first}"
        ))
        .unwrap(),
        "0:ok_before,3:ok_after",
        "the good lines stored under their own sequence numbers"
    );
    assert_eq!(
        pg.sql(&format!(
            "SELECT string_agg((seq - {first})::text, ',') FROM counters WHERE seq >= {first}"
        ))
        .unwrap(),
        "5"
    );
    // The events of the same sensor are all there too.
    assert_eq!(stored(&pg)["r1"], (200, 200));
}
