//! `fireplot ingest` on real firewall logs: iptables `LOG` and nftables
//! `log` rules in the lab's router, nmap through them, the kernel's lines
//! read back with dmesg and ingested; the sensor runs live beside them.

use std::{
    collections::BTreeSet,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use fireplot_tests::{
    addr, out_dir, privileged,
    sensor::{fireplot_bin, ingest_stored, read_lines, Sensor},
    traffic::{nmap, write_iptables_mix},
    unique_prefix, Lab, Node,
};
use serde_json::Value;

/// `net.netfilter.nf_log_all_netns` on (namespaces may log to the kernel
/// log), put back as it was when dropped.
struct LogAllNetns(String);

const SYSCTL: &str = "/proc/sys/net/netfilter/nf_log_all_netns";

impl LogAllNetns {
    fn on() -> LogAllNetns {
        // The file appears with the nf_log module.
        let _ = Command::new("modprobe").arg("nf_log_syslog").status();
        let old = std::fs::read_to_string(SYSCTL).expect("nf_log_all_netns");
        std::fs::write(SYSCTL, "1").expect("set nf_log_all_netns");
        LogAllNetns(old.trim().to_string())
    }
}

impl Drop for LogAllNetns {
    fn drop(&mut self) {
        let _ = std::fs::write(SYSCTL, &self.0);
    }
}

/// Kernel log lines containing `tag`, in ISO time, until `want` of them
/// are there (bounded).
fn kernel_lines(tag: &str, want: usize) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let out = Command::new("dmesg")
            .args(["--time-format", "iso"])
            .stderr(Stdio::inherit())
            .output()
            .expect("dmesg");
        let lines: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| l.contains(tag))
            .map(String::from)
            .collect();
        if lines.len() >= want || Instant::now() > deadline {
            return lines;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}

fn ingest(
    format: &str,
    file: &std::path::Path,
    dir: &std::path::Path,
    tag: &str,
) -> (Vec<Value>, Vec<Value>, String) {
    let events = dir.join(format!("{tag}.jsonl"));
    let alerts = dir.join(format!("{tag}-alerts.jsonl"));
    let out = Command::new(fireplot_bin())
        .args(["ingest", "--format", format])
        .arg(file)
        .arg("--events-out")
        .arg(&events)
        .arg("--alerts")
        .arg(&alerts)
        .output()
        .expect("fireplot ingest");
    let log = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "ingest failed: {log}");
    (
        read_lines(&events).expect("events"),
        read_lines(&alerts).expect("alerts"),
        log,
    )
}

fn ports(events: &[Value], src: &str) -> BTreeSet<u64> {
    events
        .iter()
        .filter(|e| e["src"] == src)
        .filter_map(|e| e["dport"].as_u64())
        .collect()
}

fn scans_from(alerts: &[Value], src: &str) -> BTreeSet<String> {
    alerts
        .iter()
        .filter(|a| a["status"] == "ended" && a["sources"].to_string().contains(src))
        .map(|a| a["kind"].as_str().unwrap_or("").to_string())
        .collect()
}

#[test]
fn iptables_and_nftables_logs_ingest_like_the_live_sensor() {
    if !privileged("iptables_and_nftables_logs_ingest_like_the_live_sensor") {
        return;
    }
    let prefix = unique_prefix("ing");
    let lab = Lab::up(&prefix).expect("lab");
    let _log = LogAllNetns::on();
    let dir = out_dir("ingest");
    // Unique per run, so other runs' lines in the kernel log never count.
    let tag4 = format!("fpi{}: ", std::process::id());
    let tag6 = format!("fpn{}: ", std::process::id());
    lab.exec(
        Node::Router,
        "iptables",
        &[
            "-A",
            "FORWARD",
            "-i",
            "wan0",
            "-p",
            "tcp",
            "--syn",
            "-d",
            addr::LAN_V4,
            "-j",
            "LOG",
            "--log-prefix",
            &tag4,
            "--log-tcp-sequence",
            "--log-tcp-options",
        ],
    )
    .expect("iptables LOG rule");
    let nft = format!(
        "add table inet fptest\n\
         add chain inet fptest logged {{ type filter hook forward priority 0; }}\n\
         add rule inet fptest logged iifname \"wan0\" ip6 daddr {} tcp flags syn log prefix \"{}\"\n",
        addr::LAN_V6,
        tag6
    );
    let rules = dir.join("rules.nft");
    std::fs::write(&rules, nft).expect("rules");
    lab.exec(Node::Router, "nft", &["-f", rules.to_str().expect("utf-8")])
        .expect("nft log rule");

    let sensor = Sensor::start(&lab, &dir.join("live"), &[]).expect("sensor");
    nmap(&lab, &["-sS", "-p", "1-200", addr::LAN_V4]).expect("nmap");
    nmap(&lab, &["-6", "-sS", "-p", "1-100", addr::LAN_V6]).expect("nmap -6");
    sensor.settle(300);
    let live = sensor.stop().expect("stop");

    let v4 = kernel_lines(&tag4, 200);
    let v6 = kernel_lines(&tag6, 100);
    assert!(v4.len() >= 200, "iptables logged {} of 200", v4.len());
    assert!(v6.len() >= 100, "nftables logged {} of 100", v6.len());
    let f4 = dir.join("iptables.log");
    let f6 = dir.join("nftables.log");
    // A line that is not the firewall's, and a damaged one, in between.
    let mut text4 = v4.join("\n");
    text4.push_str("\n2026-11-25T10:00:00,000000+00:00 usb 1-1: new high-speed USB device\n");
    text4.push_str(&format!("2026-11-25T10:00:01,000000+00:00 {tag4}IN=wan0 OUT= SRC=999.1.1.1 DST=198.18.1.2 PROTO=TCP SPT=1 DPT=2\n"));
    std::fs::write(&f4, text4).expect("write");
    std::fs::write(&f6, v6.join("\n") + "\n").expect("write");

    let (ev4, al4, log4) = ingest("iptables", &f4, &dir, "v4");
    assert_eq!(
        ports(&ev4, addr::INET_V4),
        (1..=200).collect::<BTreeSet<u64>>(),
        "every port nmap probed"
    );
    assert!(
        log4.contains("1 other lines skipped, 1 unreadable"),
        "{log4}"
    );
    assert!(
        log4.contains("SRC=`999.1.1.1`"),
        "the bad line is shown: {log4}"
    );
    for e in ev4.iter().filter(|e| e["src"] == addr::INET_V4) {
        assert_eq!(e["flags"], "SYN");
        assert_eq!(e["dst"], addr::LAN_V4);
        assert_eq!(e["class"], "unsolicited");
    }
    let (ev6, al6, _) = ingest("nftables", &f6, &dir, "v6");
    assert_eq!(
        ports(&ev6, addr::INET_V6),
        (1..=100).collect::<BTreeSet<u64>>()
    );
    // The alerts the live sensor raised for each scanner, raised from the logs too.
    let live4 = scans_from(&live.alerts, addr::INET_V4);
    let live6 = scans_from(&live.alerts, addr::INET_V6);
    assert!(live4.contains("port_scan"), "live: {live4:?}");
    assert!(live6.contains("port_scan"), "live: {live6:?}");
    assert_eq!(
        scans_from(&al4, addr::INET_V4),
        live4,
        "IPv4 alerts as live"
    );
    assert_eq!(
        scans_from(&al6, addr::INET_V6),
        live6,
        "IPv6 alerts as live"
    );
}

#[test]
fn a_followed_log_is_read_across_rotation() {
    // No privileges: a file written, rotated and written again.
    let dir = out_dir("ingest-follow");
    let log = dir.join("kern.log");
    let events = dir.join("follow.jsonl");
    let line = |port: u16| {
        format!("2026-11-25T10:00:{:02},000000+00:00 fw: IN=wan0 OUT= SRC=198.51.100.7 DST=198.18.1.2 LEN=44 TTL=50 ID=1 PROTO=TCP SPT=40000 DPT={port} WINDOW=1024 RES=0x00 SYN URGP=0\n", port % 60)
    };
    std::fs::write(&log, (1..=5).map(line).collect::<String>()).expect("write");
    let child = Command::new(fireplot_bin())
        .args(["ingest", "--format", "iptables", "--follow"])
        .arg(&log)
        .arg("--events-out")
        .arg(&events)
        .stderr(Stdio::piped())
        .spawn()
        .expect("fireplot ingest --follow");
    let count = || {
        std::fs::read_to_string(&events)
            .map(|s| s.lines().count())
            .unwrap_or(0)
    };
    let wait_for = |n: usize| {
        let deadline = Instant::now() + Duration::from_secs(20);
        while count() < n && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
        count()
    };
    assert_eq!(wait_for(5), 5, "the lines already there");
    // Appended.
    {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&log)
            .expect("open");
        f.write_all((6..=8).map(line).collect::<String>().as_bytes())
            .expect("append");
    }
    assert_eq!(wait_for(8), 8, "appended lines");
    // Rotated: renamed away, a new file under the name.
    std::fs::rename(&log, dir.join("kern.log.1")).expect("rotate");
    std::fs::write(&log, (9..=12).map(line).collect::<String>()).expect("new file");
    assert_eq!(wait_for(12), 12, "the new file after rotation");
    // Truncated in place (copytruncate) and written again.
    std::fs::write(&log, line(13)).expect("truncate");
    assert_eq!(wait_for(13), 13, "after truncation");
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let out = child.wait_with_output().expect("wait");
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("13 events"), "{err}");
    let ports: BTreeSet<u64> = read_lines(&events)
        .expect("events")
        .iter()
        .filter_map(|e| e["dport"].as_u64())
        .collect();
    assert_eq!(ports, (1..=13).collect::<BTreeSet<u64>>(), "each line once");
}

#[test]
fn journald_is_followed_through_journalctl() {
    // No journald runs on these machines: a stand-in `journalctl` first in
    // PATH checks the arguments fireplot gives it and answers as journald would.
    use std::os::unix::fs::PermissionsExt;
    let dir = out_dir("ingest-journald");
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).expect("bin");
    let rec = |port: u16| {
        format!(
            r#"{{"__REALTIME_TIMESTAMP":"1795629609{port:06}","_TRANSPORT":"kernel","MESSAGE":"fw: IN=wan0 OUT= SRC=198.51.100.7 DST=198.18.1.2 LEN=44 TTL=50 ID=1 PROTO=TCP SPT=40000 DPT={port} WINDOW=1024 RES=0x00 SYN URGP=0 "}}"#
        )
    };
    let script = format!(
        "#!/bin/sh\n[ \"$*\" = \"-k -o json -f -n 0\" ] || {{ echo \"unexpected arguments: $*\" >&2; exit 2; }}\necho '{}'\necho '{}'\nexec sleep 60\n",
        rec(22),
        rec(23)
    );
    let fake = bin.join("journalctl");
    std::fs::write(&fake, script).expect("script");
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let events = dir.join("journal.jsonl");
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let child = Command::new(fireplot_bin())
        .args(["ingest", "--format", "journald", "--follow", "--events-out"])
        .arg(&events)
        .env("PATH", path)
        .stderr(Stdio::piped())
        .spawn()
        .expect("fireplot ingest");
    let deadline = Instant::now() + Duration::from_secs(20);
    let count = || {
        std::fs::read_to_string(&events)
            .map(|s| s.lines().count())
            .unwrap_or(0)
    };
    // Event lines are flushed when the input pauses; the stand-in pauses after two.
    while count() < 2 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        count(),
        2,
        "events are written while journalctl is still running"
    );
    // A stop ends journalctl too, so the blocked read returns at once
    // (the stand-in would otherwise sleep for a minute).
    let stopping = Instant::now();
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let out = child.wait_with_output().expect("wait");
    assert!(
        stopping.elapsed() < Duration::from_secs(20),
        "stopped in {:?}",
        stopping.elapsed()
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    let ports: BTreeSet<u64> = read_lines(&events)
        .expect("events")
        .iter()
        .filter_map(|e| e["dport"].as_u64())
        .collect();
    assert_eq!(ports, BTreeSet::from([22, 23]), "{err}");
}

/// `fireplot ingest` with its stderr: (exit ok, stderr).
fn ingest_args(args: &[&std::ffi::OsStr]) -> (bool, String) {
    let out = Command::new(fireplot_bin())
        .arg("ingest")
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
fn a_big_file_is_stored_whole_however_slow_the_writer() {
    // No privileges: 2 M firewall lines of many sources into a database
    // whose writer holds one batch at a time, so the reader waits on it
    // (before, a full queue lost batches: "369661 stored, 81920 not stored").
    let dir = out_dir("ingest-exact");
    let log = dir.join("big.log");
    let db = dir.join("big.db");
    let n = 2_000_000;
    write_iptables_mix(&log, n).expect("write the log");
    let started = Instant::now();
    let (ok, err) = ingest_args(&[
        "--format".as_ref(),
        "iptables".as_ref(),
        log.as_os_str(),
        "--db".as_ref(),
        db.as_os_str(),
        "--store-queue".as_ref(),
        "1".as_ref(),
    ]);
    let secs = started.elapsed().as_secs_f64();
    assert!(ok, "ingest failed: {err}");
    assert!(err.contains(&format!("{n} events")), "{err}");
    assert_eq!(ingest_stored(&err), (n as u64, 0), "{err}");
    assert!(
        err.contains("waited") && err.contains("for the history database"),
        "the reader waited for the writer: {err}"
    );
    let stored = fireplot::store::Store::open(&db)
        .expect("the database opens")
        .count()
        .expect("count");
    assert_eq!(stored, n as u64, "rows in the database");
    eprintln!("{n} lines stored in {secs:.1} s");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_publisher_whose_spool_stays_full_stops_the_ingest_clearly() {
    // No privileges: no broker at the address, a spool of 1 MiB. The file
    // waits for the broker for --store-wait, then stops with the reason
    // and exit 1, instead of dropping batches as it reads on.
    let dir = out_dir("ingest-spool");
    let log = dir.join("fw.log");
    write_iptables_mix(&log, 200_000).expect("write the log");
    let spool = dir.join("spool");
    let started = Instant::now();
    let (ok, err) = ingest_args(&[
        "--format".as_ref(),
        "iptables".as_ref(),
        log.as_os_str(),
        "--publish".as_ref(),
        "nats://127.0.0.1:9".as_ref(),
        "--sensor".as_ref(),
        "spooltest".as_ref(),
        "--spool-dir".as_ref(),
        spool.as_os_str(),
        "--spool-max-mib".as_ref(),
        "1".as_ref(),
        "--store-wait".as_ref(),
        "3s".as_ref(),
    ]);
    assert!(!ok, "not everything was kept: exit 1; {err}");
    assert!(
        err.contains("the fleet's spool stayed full for 3 s"),
        "the reason: {err}"
    );
    assert!(err.contains("reading stopped after line"), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "bounded: {:?}",
        started.elapsed()
    );
    let spooled = std::fs::read_dir(spool.join("spooltest.spool"))
        .expect("the spool")
        .count();
    assert!(spooled > 0, "what fit is kept in the spool");
    let _ = std::fs::remove_dir_all(&dir);
}
