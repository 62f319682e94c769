//! Enrichment through the commands: `ingest` (event lines, alerts, the
//! store), `top --by`, `detect` with `ignore_tags`, on the public data
//! `cargo xtask setup` fetched (DB-IP country MMDB, ip-location-db ASN
//! CSVs) plus small files for the documentation addresses.

use std::{path::PathBuf, process::Command};

use fireplot_tests::sensor::fireplot_bin;
use serde_json::Value;

fn out_dir(test: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("fireplot-test-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

/// The fetched data; required under CI, a reported skip elsewhere.
fn public_data() -> Option<PathBuf> {
    let d = std::env::var_os("FIREPLOT_ENRICH_DATA").map(PathBuf::from);
    let ok = d
        .as_ref()
        .is_some_and(|d| d.join("dbip-country.mmdb").exists());
    fireplot_tests::can_run(
        "enrich",
        ok,
        "needs FIREPLOT_ENRICH_DATA (target/enrich, fetched by cargo xtask setup; cargo xtask test passes it)",
    )
    .then(|| d.expect("checked"))
}

/// One iptables LOG line as the kernel writes it, with a syslog time.
fn line(sec: u32, src: &str, dst: &str, dport: u16) -> String {
    if src.contains(':') {
        format!(
            "2026-11-20T10:00:{:02}.000000Z router kernel: [1.0] IN=eth0 OUT= MAC=00 SRC={src} DST={dst} LEN=80 TC=0 HOPLIMIT=50 FLOWLBL=0 PROTO=TCP SPT=40000 DPT={dport} WINDOW=1024 RES=0x00 SYN URGP=0",
            sec % 60
        )
    } else {
        format!(
            "2026-11-20T10:00:{:02}.000000Z router kernel: [1.0] IN=eth0 OUT= MAC=00 SRC={src} DST={dst} LEN=60 TOS=0x00 PREC=0x00 TTL=50 ID=1 PROTO=TCP SPT=40000 DPT={dport} WINDOW=1024 RES=0x00 SYN URGP=0",
            sec % 60
        )
    }
}

fn run(args: &[&str]) -> String {
    let out = Command::new(fireplot_bin())
        .args(args)
        .output()
        .expect("run fireplot");
    assert!(
        out.status.success(),
        "fireplot {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

/// `fireplot top --json` of the test's day in `db`, grouped `--by` each
/// of `by`, with `extra` arguments (the enrichment files, or none: from
/// what the store kept).
fn top_json(db: &std::path::Path, by: &[&str], extra: &[String]) -> Value {
    let mut args: Vec<String> = [
        "top",
        "--db",
        db.to_str().unwrap(),
        "--from",
        "2026-11-20T00:00:00Z",
        "--to",
        "2026-11-21T00:00:00Z",
        "--json",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for b in by {
        args.extend(["--by".to_string(), b.to_string()]);
    }
    args.extend(extra.iter().cloned());
    serde_json::from_str(&run(&args.iter().map(String::as_str).collect::<Vec<_>>())).unwrap()
}

fn json_lines(path: &std::path::Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect()
}

#[test]
fn ingest_top_and_detect_say_who_the_sources_are() {
    let Some(data) = public_data() else { return };
    let d = out_dir("enrich");
    // Documentation addresses mapped by the operator's own small files.
    std::fs::write(d.join("doc-cc.csv"), "198.51.100.0,198.51.100.255,NL\n").unwrap();
    std::fs::write(
        d.join("doc-asn.csv"),
        "198.51.100.0,198.51.100.255,64496,\"Documentation Net, Inc.\"\n",
    )
    .unwrap();
    std::fs::write(
        d.join("scanners.txt"),
        "# research scanners\n198.51.100.7\n2001:4860:4860::8888 ; a resolver here, for the test\nnot an address\n",
    )
    .unwrap();
    // 198.51.100.7 scans 40 ports; 8.8.8.8, 1.1.1.1 and an IPv6 source probe a few.
    let mut log = Vec::new();
    for p in 0..40u16 {
        log.push(line(
            u32::from(p / 4),
            "198.51.100.7",
            "198.18.1.2",
            1000 + p,
        ));
    }
    for (i, src) in ["8.8.8.8", "1.1.1.1", "198.51.100.9"].iter().enumerate() {
        log.push(line(20 + i as u32, src, "198.18.1.2", 23));
    }
    log.push(line(30, "2001:4860:4860::8888", "2001:db8:1::2", 443));
    log.push(line(31, "203.0.113.5", "198.18.1.2", 22));
    std::fs::write(d.join("kern.log"), log.join("\n") + "\n").unwrap();
    let db = d.join("h.db");
    let (events, alerts) = (d.join("events.jsonl"), d.join("alerts.jsonl"));
    let mmdb = data.join("dbip-country.mmdb");
    let (asn4, asn6) = (data.join("asn-ipv4.csv"), data.join("asn-ipv6.csv"));
    let doc_cc = d.join("doc-cc.csv");
    let doc_asn = d.join("doc-asn.csv");
    let tag = format!("research_scanner={}", d.join("scanners.txt").display());
    let enrich: Vec<String> = vec![
        "--geoip".into(),
        mmdb.display().to_string(),
        "--geoip".into(),
        doc_cc.display().to_string(),
        "--asn".into(),
        asn4.display().to_string(),
        "--asn".into(),
        asn6.display().to_string(),
        "--asn".into(),
        doc_asn.display().to_string(),
        "--tag".into(),
        tag.clone(),
    ];
    let mut args: Vec<String> = [
        "ingest",
        "--format",
        "iptables",
        d.join("kern.log").to_str().unwrap(),
        "--db",
        db.to_str().unwrap(),
        "--events-out",
        events.to_str().unwrap(),
        "--alerts",
        alerts.to_str().unwrap(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(enrich.iter().cloned());
    run(&args.iter().map(String::as_str).collect::<Vec<_>>());

    // Event lines.
    let ev = json_lines(&events);
    assert_eq!(ev.len(), 45);
    let by_src = |s: &str| ev.iter().find(|e| e["src"] == s).unwrap().clone();
    let g = by_src("8.8.8.8");
    assert_eq!(
        (g["country"].as_str(), g["asn"].as_u64()),
        (Some("US"), Some(15169)),
        "{g}"
    );
    assert!(g["as_org"].as_str().unwrap().contains("Google"), "{g}");
    assert_eq!(by_src("1.1.1.1")["asn"], 13335);
    let v6 = by_src("2001:4860:4860::8888");
    assert_eq!(v6["asn"], 15169, "{v6}");
    assert_eq!(v6["tags"], serde_json::json!(["research_scanner"]));
    let doc = by_src("198.51.100.9");
    assert_eq!(
        (doc["country"].as_str(), doc["asn"].as_u64()),
        (Some("NL"), Some(64496))
    );
    assert_eq!(doc["as_org"], "Documentation Net, Inc.");
    assert!(doc.get("tags").is_none());
    let unknown = by_src("203.0.113.5");
    for k in ["country", "asn", "as_org", "tags"] {
        assert!(unknown.get(k).is_none(), "{unknown}");
    }

    // The scanner's alert names it.
    let al = json_lines(&alerts);
    let scan = al
        .iter()
        .find(|a| a["kind"] == "port_scan" && a["sources"][0] == "198.51.100.7")
        .unwrap_or_else(|| panic!("{al:?}"));
    let o = &scan["origins"][0];
    assert_eq!(
        (o["src"].as_str(), o["country"].as_str(), o["asn"].as_u64()),
        (Some("198.51.100.7"), Some("NL"), Some(64496))
    );
    assert_eq!(o["tags"], serde_json::json!(["research_scanner"]));

    // top --by.
    let top = top_json(&db, &["country", "asn", "tag"], &enrich);
    let rows = |k: &str| -> Vec<(String, u64, u64)> {
        top[k]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                (
                    r[k.trim_start_matches("by_")].as_str().unwrap().to_string(),
                    r["events"].as_u64().unwrap(),
                    r["sources"].as_u64().unwrap(),
                )
            })
            .collect()
    };
    let cc = rows("by_country");
    assert_eq!(cc[0], ("NL".into(), 41, 2), "{cc:?}");
    // 8.8.8.8 is in the US; the others' countries are the data's to say.
    assert!(cc.iter().any(|r| r.0 == "US"), "{cc:?}");
    assert_eq!(cc.iter().map(|r| r.2).sum::<u64>(), 6, "{cc:?}");
    assert!(cc.contains(&("unknown".into(), 1, 1)), "{cc:?}");
    let asn = rows("by_asn");
    assert_eq!(
        asn[0],
        ("AS64496 Documentation Net, Inc.".into(), 41, 2),
        "{asn:?}"
    );
    assert!(
        asn.iter()
            .any(|r| r.0.starts_with("AS15169 ") && r.1 == 2 && r.2 == 2),
        "{asn:?}"
    );
    assert_eq!(rows("by_tag"), vec![("research_scanner".into(), 41, 2)]);
    assert_eq!(top["sources"][0]["src"], "198.51.100.7");
    assert_eq!(top["sources"][0]["asn"], 64496);

    // The store kept who the sources are: top answers without the files.
    let stored = top_json(&db, &["tag", "asn"], &[]);
    assert_eq!(stored["by_tag"], top["by_tag"]);
    assert_eq!(stored["by_asn"], top["by_asn"]);
    // A database stored without enrichment is enriched afterwards.
    let plain_db = d.join("plain.db");
    run(&[
        "ingest",
        "--format",
        "iptables",
        d.join("kern.log").to_str().unwrap(),
        "--db",
        plain_db.to_str().unwrap(),
    ]);
    let mut en: Vec<String> = ["enrich", "--db", plain_db.to_str().unwrap()]
        .iter()
        .map(|s| s.to_string())
        .collect();
    en.extend(enrich.iter().cloned());
    let said = run(&en.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(said.contains("6 sources"), "{said}");
    let later = top_json(&plain_db, &["tag", "asn"], &[]);
    assert_eq!(later["by_asn"], top["by_asn"]);
    assert_eq!(later["by_tag"], top["by_tag"]);

    // detect over the store: with ignore_tags the research scanner's
    // port scan is not raised; without it, it is.
    let mut det: Vec<String> = [
        "detect",
        "--db",
        db.to_str().unwrap(),
        "--from",
        "2026-11-20T00:00:00Z",
        "--to",
        "2026-11-21T00:00:00Z",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    det.extend(enrich.iter().cloned());
    let plain = run(&det.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(plain.contains("\"198.51.100.7\""), "{plain}");
    det.extend([
        "--set".to_string(),
        "ignore_tags=[\"research_scanner\"]".to_string(),
    ]);
    let quiet = run(&det.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(!quiet.contains("\"port_scan\""), "{quiet}");
    // Without a tag list, ignore_tags is a clear error.
    let out = Command::new(fireplot_bin())
        .args([
            "detect",
            "--db",
            db.to_str().unwrap(),
            "--set",
            "ignore_tags=[\"x\"]",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no --tag list"));
}

/// The live sensor (`run`) on the lab: event lines, the scanner's alert and
/// the store say who the source is, from the operator's own files; a file
/// changed on disk is re-read without a restart. Needs no public data.
#[test]
fn a_live_run_names_its_sources_and_rereads_changed_files() {
    use fireplot_tests::{
        addr, privileged,
        sensor::Sensor,
        traffic::{nmap, nmap_syn_from},
        unique_prefix, Lab,
    };
    if !privileged("a_live_run_names_its_sources_and_rereads_changed_files") {
        return;
    }
    let d = out_dir("enrich-live");
    let cc = d.join("lab-cc.csv");
    std::fs::write(&cc, "198.18.0.0,198.18.0.255,NL\n").unwrap();
    std::fs::write(
        d.join("lab-asn.csv"),
        "198.18.0.0,198.18.0.255,64496,\"Lab Research Net\"\n",
    )
    .unwrap();
    std::fs::write(d.join("scanners.txt"), format!("{}\n", addr::INET_V4)).unwrap();
    let db = d.join("h.db");
    let args: Vec<String> = vec![
        "--db".into(),
        db.display().to_string(),
        "--geoip".into(),
        cc.display().to_string(),
        "--asn".into(),
        d.join("lab-asn.csv").display().to_string(),
        "--tag".into(),
        format!("research_scanner={}", d.join("scanners.txt").display()),
    ];
    let lab = Lab::up(&unique_prefix("enr")).expect("lab");
    let sensor = Sensor::start(
        &lab,
        &d.join("sensor"),
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
    )
    .expect("sensor");
    nmap(&lab, &["-sS", "-p", "1-100", addr::LAN_V4]).expect("nmap");
    // The operator moves the range to another country: the sensor sees the
    // file change and re-reads it. Probe from another lab address until
    // its events carry the new country (bounded: 60 rounds).
    std::fs::write(&cc, "# moved\n198.18.0.0,198.18.0.255,DE\n").unwrap();
    let events_path = d.join("sensor").join("events.jsonl");
    let mut moved = false;
    for round in 0..60u16 {
        nmap_syn_from(&lab, "198.18.0.30", &format!("{}", 2000 + round)).expect("probe");
        std::thread::sleep(std::time::Duration::from_secs(1));
        moved = json_lines(&events_path)
            .iter()
            .any(|e| e["src"] == "198.18.0.30" && e["country"] == "DE");
        if moved {
            break;
        }
    }
    sensor.settle(101);
    let c = sensor.stop().expect("stop");
    assert!(moved, "the changed file was re-read while running");
    let scan: Vec<&Value> = c
        .events
        .iter()
        .filter(|e| e["src"] == addr::INET_V4)
        .collect();
    assert_eq!(scan.len(), 100, "one event per probe");
    for e in &scan {
        assert_eq!(e["country"], "NL", "{e}");
        assert_eq!(e["asn"], 64496, "{e}");
        assert_eq!(e["as_org"], "Lab Research Net", "{e}");
        assert_eq!(e["tags"], serde_json::json!(["research_scanner"]), "{e}");
    }
    // Before the change the other source was NL too; nothing is ever tagged
    // that the list does not name.
    assert!(c
        .events
        .iter()
        .filter(|e| e["src"] == "198.18.0.30")
        .all(|e| e["tags"].is_null() && (e["country"] == "NL" || e["country"] == "DE")));
    let alert = c
        .alerts
        .iter()
        .find(|a| a["kind"] == "port_scan" && a["sources"][0] == addr::INET_V4)
        .expect("the scan's alert");
    assert_eq!(alert["origins"][0]["country"], "NL", "{alert}");
    assert_eq!(alert["origins"][0]["asn"], 64496, "{alert}");
    assert_eq!(
        alert["origins"][0]["tags"][0], "research_scanner",
        "{alert}"
    );
    // The store kept who the sources are, as the files said when each was
    // last seen: the scanner before the change, the other one after it.
    let top: Value = serde_json::from_str(&run(&[
        "top",
        "--db",
        db.to_str().unwrap(),
        "--last",
        "1h",
        "--by",
        "country",
        "--json",
    ]))
    .unwrap();
    let who = |src: &str| {
        top["sources"]
            .as_array()
            .expect("sources")
            .iter()
            .find(|s| s["src"] == src)
            .unwrap_or_else(|| panic!("{src} in {top}"))
            .clone()
    };
    assert_eq!(who(addr::INET_V4)["country"], "NL", "{top}");
    assert_eq!(who(addr::INET_V4)["tags"][0], "research_scanner", "{top}");
    assert_eq!(who("198.18.0.30")["country"], "DE", "{top}");
    assert_eq!(who("198.18.0.30")["asn"], 64496, "{top}");
}
