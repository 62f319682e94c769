//! Attacks on a lan host with real tools, in one lab for the file: a DNS
//! reflection, an ICMP flood and a fragment flood from spoofed sources in
//! 198.19.0.0/16 (hping3's Tcl `hping send`, paced at about 2,000 packets a
//! second: `--rand-source` would spoof the whole IPv4 space), a SYN burst
//! of one source shorter than a second (hping3 `--faster`), and a long
//! download the lan host opened (no alert). Each attack runs past a fresh
//! sensor with its default limits, so most of a spoofed flood reaches the
//! detector as kernel aggregates: the test asserts the kind, vector,
//! destination and source count of what it names. The time from the
//! attack's start to its first record is printed, never asserted.

use std::{
    io::{Read, Write},
    net::TcpListener,
    path::{Path, PathBuf},
    process::Stdio,
    time::{Duration, Instant},
};

use fireplot_tests::{
    addr, privileged,
    sensor::{read_lines, Collected, Sensor},
    traffic::in_netns,
    unique_prefix, Lab, Node,
};
use serde_json::Value;

fn out_dir(lab: &Lab, name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("fireplot-ddos-{}-{name}", lab.prefix()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

/// A Tcl script for `hping3 exec`: `count` packets of `spec` (an hping
/// packet description in which `$src` is the source), each from one of
/// 198.19.0.0/16 (the third byte first, so they spread over 256 /24s),
/// paced at about `pps`. Prints "sent N in T ms".
fn spoofing_script(spec: &str, count: u32, pps: u32) -> String {
    let batch = (pps / 100).max(1);
    format!(
        "set t0 [clock milliseconds]\n\
         set payload [string repeat x 400]\n\
         for {{set i 0}} {{$i < {count}}} {{incr i}} {{\n\
           set src 198.19.[expr {{$i % 256}}].[expr {{$i / 256 % 254 + 1}}]\n\
           hping send \"{spec}\"\n\
           if {{$i % {batch} == {last}}} {{ after 10 }}\n\
         }}\n\
         puts \"sent {count} in [expr {{[clock milliseconds] - $t0}}] ms\"\n",
        last = batch - 1
    )
}

/// Runs `hping3` in the inet namespace, bounded in time, and returns what
/// it printed.
fn hping3(lab: &Lab, args: &[&str]) -> String {
    let out = lab
        .command(Node::Inet, "timeout")
        .args(["--kill-after=5", "60", "hping3"])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .expect("hping3");
    String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr)
}

/// Sends spoofed traffic with an hping3 Tcl script.
fn spoofed(lab: &Lab, dir: &Path, spec: &str, count: u32) {
    let script = dir.join("attack.tcl");
    std::fs::write(&script, spoofing_script(spec, count, 2_000)).expect("script");
    let said = hping3(lab, &["exec", script.to_str().expect("UTF-8 path")]);
    assert!(
        said.contains(&format!("sent {count} in")),
        "hping3 sent its {count} packets: {said}"
    );
    eprintln!("  hping3: {}", said.trim());
}

/// One attack past a fresh sensor: the alerts, and the seconds from the
/// attack's start to the first line of an alert of `kind` (printed for
/// the note; None if it came only after the traffic).
fn attack(lab: &Lab, name: &str, kind: &str, traffic: impl FnOnce(&Path)) -> Collected {
    let dir = out_dir(lab, name);
    let sensor = Sensor::start(lab, &dir, &[]).expect("sensor");
    let alerts = sensor.alerts_path.clone();
    let kind_owned = kind.to_string();
    let started = Instant::now();
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    // Polls the alerts file while the attack runs (bounded: 90 s).
    let watcher = std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(90);
        while Instant::now() < deadline {
            let lines = read_lines(&alerts).unwrap_or_default();
            if lines.iter().any(|a| a["kind"] == kind_owned.as_str()) {
                return Some(started.elapsed().as_secs_f64());
            }
            if done_rx.recv_timeout(Duration::from_millis(50)).is_ok() {
                return None;
            }
        }
        None
    });
    traffic(&dir);
    let traffic_s = started.elapsed().as_secs_f64();
    // Aggregates are taken once their second is over; an attack ends after
    // its quiet period.
    std::thread::sleep(Duration::from_secs(3));
    let first = watcher_result(watcher, done_tx, Duration::from_secs(2));
    sensor.settle(0);
    let c = sensor.stop().expect("stop sensor");
    eprintln!(
        "{name}: traffic {traffic_s:.2} s; first `{kind}` record {}; {} events, {} aggregated \
         packets in {} aggregates",
        first.map_or("after the traffic".into(), |s| format!(
            "{s:.2} s after the start"
        )),
        c.events.len(),
        c.aggregated_packets(),
        c.aggregates.len()
    );
    c
}

fn watcher_result(
    w: std::thread::JoinHandle<Option<f64>>,
    done: std::sync::mpsc::Sender<()>,
    grace: Duration,
) -> Option<f64> {
    std::thread::sleep(grace);
    let _ = done.send(());
    w.join().expect("watcher")
}

/// The one `ended` alert of `kind` (and `vector`, for `ddos`) on the lan
/// host.
fn the_alert<'a>(c: &'a Collected, kind: &str, vector: Option<&str>) -> &'a Value {
    let on_lan = |a: &&Value| {
        a["targets"]["sample"]
            .as_array()
            .is_some_and(|t| t.iter().any(|t| t == addr::LAN_V4))
    };
    let found: Vec<&Value> = c
        .alerts
        .iter()
        .filter(|a| a["status"] == "ended" && a["kind"] == kind)
        .filter(|a| vector.is_none_or(|v| a["vector"] == v))
        .filter(on_lan)
        .collect();
    assert_eq!(
        found.len(),
        1,
        "one ended {kind} {vector:?} on {}: {:#?}",
        addr::LAN_V4,
        c.alerts
    );
    found[0]
}

/// No alert names a spoofed source as its own flooder.
fn no_spoofed_flooder(c: &Collected) {
    for a in &c.alerts {
        if a["kind"] == "flood" {
            let srcs = a["sources"].as_array().expect("sources");
            assert!(
                !srcs
                    .iter()
                    .any(|s| s.as_str().is_some_and(|s| s.starts_with("198.19."))),
                "a spoofed address is nobody's flood: {a}"
            );
        }
    }
}

fn reflection(lab: &Lab) {
    let c = attack(lab, "dns", "ddos", |dir| {
        let spec = format!(
            "ip(saddr=$src,daddr={},ttl=64)+udp(sport=53,dport=40000)+data(str=$payload)",
            addr::LAN_V4
        );
        spoofed(lab, dir, &spec, 8_000);
    });
    let a = the_alert(&c, "ddos", Some("udp_reflection"));
    assert_eq!(a["reflector_port"], 53, "{a}");
    assert!(
        a["source_count"].as_u64().unwrap() >= 100,
        "many sources: {a}"
    );
    assert!(
        a["summary"].as_str().unwrap().contains("DNS"),
        "the summary names the reflector: {a}"
    );
    assert!(a["bytes"].as_u64().unwrap() > 0, "sized in bytes: {a}");
    no_spoofed_flooder(&c);
}

fn icmp_flood(lab: &Lab) {
    let c = attack(lab, "icmp", "ddos", |dir| {
        let spec = format!(
            "ip(saddr=$src,daddr={},ttl=64)+icmp(type=8,code=0,id=7,seq=$i)",
            addr::LAN_V4
        );
        spoofed(lab, dir, &spec, 8_000);
    });
    let a = the_alert(&c, "ddos", Some("icmp"));
    assert!(
        a["source_count"].as_u64().unwrap() >= 100,
        "many sources: {a}"
    );
    no_spoofed_flooder(&c);
}

fn fragment_flood(lab: &Lab) {
    let c = attack(lab, "frag", "ddos", |dir| {
        // Non-first fragments of UDP datagrams: no ports to read.
        let spec = format!(
            "ip(saddr=$src,daddr={},ttl=64,proto=17,id=$i,fragoff=64)+data(str=$payload)",
            addr::LAN_V4
        );
        spoofed(lab, dir, &spec, 8_000);
    });
    let a = the_alert(&c, "ddos", Some("fragment"));
    assert!(
        a["source_count"].as_u64().unwrap() >= 100,
        "many sources: {a}"
    );
    no_spoofed_flooder(&c);
}

/// One source's SYN burst, shorter than a second: that source's flood,
/// naming the host.
fn syn_burst(lab: &Lab) {
    let c = attack(lab, "burst", "flood", |_| {
        let said = hping3(
            lab,
            &["-S", "-p", "80", "--faster", "-c", "6000", addr::LAN_V4],
        );
        assert!(said.contains("6000 packets transmitted"), "{said}");
    });
    let a = the_alert(&c, "flood", None);
    assert_eq!(a["sources"], serde_json::json!([addr::INET_V4]), "{a}");
    assert!(
        !c.alerts.iter().any(|a| a["kind"] == "ddos"),
        "one source is not a distributed attack: {:#?}",
        c.alerts
    );
}

/// A download the lan host opened: 200 MB at whatever speed the veths
/// give, no alert.
fn download(lab: &Lab) {
    const BYTES: usize = 200 << 20;
    let c = attack(lab, "download", "ddos", |_| {
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let server = in_netns(&lab.ns(Node::Inet), move || {
            let l = TcpListener::bind(("0.0.0.0", 8081))?;
            ready_tx.send(()).ok();
            let (mut s, _) = l.accept()?;
            s.set_read_timeout(Some(Duration::from_secs(10)))?;
            let mut req = [0u8; 1024];
            let _ = s.read(&mut req)?;
            write!(s, "HTTP/1.0 200 OK\r\nContent-Length: {BYTES}\r\n\r\n")?;
            let chunk = vec![b'x'; 1 << 16];
            for _ in 0..BYTES / chunk.len() {
                s.write_all(&chunk)?;
            }
            Ok(())
        });
        ready_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("server up");
        let url = format!("http://{}:8081/", addr::INET_V4);
        let out = lab
            .command(Node::Lan, "curl")
            .args(["-sS", "--max-time", "60", "-o", "/dev/null"])
            .args(["-w", "%{size_download}", &url])
            .output()
            .expect("curl");
        let got = String::from_utf8_lossy(&out.stdout);
        assert_eq!(got.trim(), BYTES.to_string(), "{out:?}");
        server.join().expect("server thread").expect("server");
    });
    assert!(
        c.alerts.is_empty(),
        "a download is no attack: {:#?}",
        c.alerts
    );
}

#[test]
fn attacks_on_a_lan_host_are_named_and_sized() {
    if !privileged("attacks_on_a_lan_host_are_named_and_sized") {
        return;
    }
    let lab = Lab::up(&unique_prefix("ddos")).expect("lab");
    reflection(&lab);
    icmp_flood(&lab);
    fragment_flood(&lab);
    syn_burst(&lab);
    download(&lab);
}
