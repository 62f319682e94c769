//! Handler tests over a fixture database: every endpoint, bad parameters,
//! the token, the headers.

use std::{path::PathBuf, sync::Arc};

use axum::{
    body::Body,
    http::{Request, StatusCode},
    Router,
};
use http_body_util::BodyExt;
use tower::ServiceExt;

use super::{router, Shared, WebOptions};
use crate::{plot::layout::Layout, record::Record, store::Store};

/// 2027-01-15T08:00:00Z.
const T0: i64 = 1_800_000_000_000_000_000;
const MS: i64 = 1_000_000;
const RANGE: &str = "from=2027-01-15T07:00:00Z&to=2027-01-15T09:00:00Z";
const TOKEN: &str = "correct-horse-battery-staple";

fn rec(ts: i64, src: &str, proto: u8, dport: u16) -> Record {
    let src: std::net::IpAddr = src.parse().unwrap();
    let dst = if src.is_ipv4() {
        "198.18.1.2"
    } else {
        "2001:db8:1::2"
    };
    Record::probe(ts, src, dst.parse().unwrap(), proto, dport)
}

/// A fixture: a 100-port TCP scan from 198.51.100.7 at T0, its alert, a
/// UDP probe from 2001:db8::5 an hour earlier, a counter summary.
fn fixture(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("fireplot-web-test-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("h.db");
    let mut s = Store::open(&path).unwrap();
    let mut recs: Vec<Record> = (0..100)
        .map(|i| rec(T0 + i * 10 * MS, "198.51.100.7", 6, 1 + i as u16 * 600))
        .collect();
    recs.push(rec(T0 - 3600 * 1000 * MS, "2001:db8::5", 17, 53));
    s.insert(&recs).unwrap();
    s.set_interface(2, "wan0").unwrap();
    let alert = serde_json::json!({
        "id": 1, "kind": "port_scan", "status": "ended", "severity": 4,
        "summary": "198.51.100.7 probed 100 TCP ports of 198.18.1.2 in 1.0 s, ascending",
        "sources": ["198.51.100.7"], "source_count": 1, "proto": "tcp", "tool": "unknown",
    });
    s.insert_alert(T0, T0 + 990 * MS, "port_scan", &alert.to_string())
        .unwrap();
    let summary = serde_json::json!({
        "ts": "2027-01-15T08:00:01Z", "uptime_s": 1.0,
        "classes": [{"class": "unsolicited", "family": "ipv4", "proto": "tcp", "packets": 100}],
        "kernel": {"events_sent": 100, "ring_full": 0, "suppressed": 3},
        "userspace": {"events_received": 100},
        "store": {"stored": 100, "not_stored": 0, "queued": 0},
    });
    s.insert_counters(T0 + 1000 * MS, "wan0", &summary.to_string())
        .unwrap();
    path
}

fn app(db: PathBuf, token: Option<&str>) -> Router {
    app_with(&WebOptions {
        listen: "127.0.0.1:0".parse().unwrap(),
        token: token.map(String::from),
        history: Arc::new(crate::store::SqliteHistory(db)),
        label: "fixture".into(),
        file_view: false,
    })
}

/// The console's routes for `opts`, as `serve` makes them.
pub(crate) fn app_with(opts: &WebOptions) -> Router {
    // The sender is dropped: the flag stays false (never stopping).
    let (_, stopping) = tokio::sync::watch::channel(false);
    router(Arc::new(Shared::new(opts, None, stopping).unwrap()))
}

pub(crate) async fn get(app: &Router, uri: &str) -> (StatusCode, axum::http::HeaderMap, Vec<u8>) {
    let resp = app
        .clone()
        .oneshot(Request::get(uri).body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = resp
        .into_body()
        .collect()
        .await
        .unwrap()
        .to_bytes()
        .to_vec();
    (status, headers, body)
}

pub(crate) async fn json(app: &Router, uri: &str) -> serde_json::Value {
    let (st, _, body) = get(app, uri).await;
    assert_eq!(
        st,
        StatusCode::OK,
        "{uri}: {}",
        String::from_utf8_lossy(&body)
    );
    serde_json::from_slice(&body).unwrap()
}

/// The next chunk of a streamed body, as text (within 10 s).
async fn next_chunk(body: &mut Body) -> String {
    let frame = tokio::time::timeout(std::time::Duration::from_secs(10), body.frame())
        .await
        .expect("a chunk within 10 s")
        .unwrap()
        .unwrap();
    String::from_utf8(frame.into_data().unwrap().to_vec()).unwrap()
}

#[tokio::test]
async fn every_endpoint_answers_over_the_fixture() {
    let app = app(fixture("all"), None);
    for page in [
        "/",
        "/day/2027-01-15",
        "/source/198.51.100.7",
        "/source/2001:db8::5",
    ] {
        let (st, h, body) = get(&app, page).await;
        assert_eq!(st, StatusCode::OK, "{page}");
        assert!(h["content-type"].to_str().unwrap().starts_with("text/html"));
        assert!(String::from_utf8_lossy(&body).contains("/static/app.js"));
        let csp = h["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("default-src 'none'") && csp.contains("script-src 'self'"));
        assert_eq!(h["x-content-type-options"], "nosniff");
        assert_eq!(h["x-frame-options"], "DENY");
    }
    let (st, _, js) = get(&app, "/static/app.js").await;
    assert_eq!(st, StatusCode::OK);
    assert!(
        !String::from_utf8_lossy(&js).contains("http://"),
        "no external resources"
    );

    let v = json(&app, &format!("/api/view?{RANGE}&w=1600&h=800&utc=1")).await;
    assert_eq!(v["interfaces"][0], "wan0");
    assert_eq!(v["live"], false);
    let day = json(&app, "/api/view?day=2027-01-15&utc=1").await;
    assert_eq!(day["day"]["prev"], "2027-01-14");
    assert_eq!(day["day"]["next"], "2027-01-16");

    // Hover on the dot of the 51st probe: the server says who and what.
    let l = Layout::new(1600, 800, T0 - 3600 * 1000 * MS, T0 + 3600 * 1000 * MS);
    let (ts, port) = (T0 + 50 * 10 * MS, 1 + 50 * 600);
    let (x, y) = (l.x(ts).unwrap(), l.y_port(port));
    let at = json(&app, &format!("/api/at?{RANGE}&w=1600&h=800&x={x}&y={y}")).await;
    let g = &at["groups"][0];
    assert_eq!(g["src"], "198.51.100.7", "{at}");
    assert_eq!(g["proto"], "TCP");
    assert_eq!(g["port"], port);
    assert_eq!(g["alert"]["kind"], "port_scan");
    let empty = json(&app, &format!("/api/at?{RANGE}&w=1600&h=800&x={x}&y=500")).await;
    assert_eq!(empty["total"], 0);

    let alerts = json(&app, &format!("/api/alerts?{RANGE}")).await;
    assert_eq!(alerts.as_array().unwrap().len(), 1);
    let theirs = json(&app, &format!("/api/alerts?{RANGE}&src=198.51.100.0/24")).await;
    assert_eq!(theirs.as_array().unwrap().len(), 1);
    let others = json(&app, &format!("/api/alerts?{RANGE}&src=2001:db8::/32")).await;
    assert_eq!(
        others.as_array().unwrap().len(),
        0,
        "only the source's episodes"
    );
    assert_eq!(alerts[0]["kind"], "port_scan");
    let top = json(&app, &format!("/api/top?{RANGE}")).await;
    assert_eq!(top["total"], 101);
    assert_eq!(top["sources"][0]["src"], "198.51.100.7");
    assert_eq!(top["sources"][0]["count"], 100);
    // Asked apart, as the page does: the same answers.
    let ports = json(&app, &format!("/api/top?{RANGE}&part=ports")).await;
    assert_eq!(ports["ports"], top["ports"]);
    assert_eq!(ports["total"], 101);
    assert_eq!(ports["sources"].as_array().unwrap().len(), 0);
    let sources = json(&app, &format!("/api/top?{RANGE}&part=sources")).await;
    assert_eq!(sources["sources"], top["sources"]);
    assert_eq!(sources["ports"].as_array().unwrap().len(), 0);
    let filtered = json(&app, &format!("/api/top?{RANGE}&proto=udp&family=6")).await;
    assert_eq!(filtered["total"], 1);
    // TCP/1 and TCP/601 of the scan, UDP/53.
    let ported = json(&app, &format!("/api/top?{RANGE}&ports=1-601")).await;
    assert_eq!(ported["total"], 3);
    let src = json(&app, &format!("/api/source?{RANGE}&ip=198.51.100.7")).await;
    assert_eq!(src["probes"], 100);
    assert_eq!(src["distinct_ports"], 100);
    assert_eq!(src["alerts"][0]["kind"], "port_scan");
    let stats = json(&app, "/api/stats").await;
    assert_eq!(stats["origin"], "stored");
    assert_eq!(stats["summary"]["kernel"]["events_sent"], 100);

    let (st, h, png) = get(&app, &format!("/plot.png?{RANGE}&w=800&h=400")).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(h["content-type"], "image/png");
    assert_eq!(h["x-fireplot-events"], "101");
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    let (st, h, svg) = get(&app, &format!("/plot.svg?{RANGE}&download=1")).await;
    assert_eq!(st, StatusCode::OK);
    assert!(h["content-disposition"]
        .to_str()
        .unwrap()
        .contains("fireplot.svg"));
    assert!(String::from_utf8_lossy(&svg).contains("<svg"));

    let (st, h, m) = get(&app, "/metrics").await;
    assert_eq!(st, StatusCode::OK);
    assert!(h["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain; version=0.0.4"));
    let m = String::from_utf8(m).unwrap();
    assert!(m.contains("fireplot_up 1"));
    assert!(
        m.contains("fireplot_packets_aggregated_total{reason=\"rate_limited\"} 3"),
        "{m}"
    );

    let (st, _, log) = get(&app, &format!("/export/logstalgia?{RANGE}&ports=1")).await;
    assert_eq!(st, StatusCode::OK);
    let log = String::from_utf8(log).unwrap();
    assert_eq!(log.lines().count(), 1);
    assert_eq!(
        log.trim(),
        format!("{}|198.51.100.7|TCP:1|200|60|1|00FF00", T0 / 1_000_000_000)
    );
}

#[tokio::test]
async fn bad_requests_get_400_with_a_reason() {
    let app = app(fixture("bad"), None);
    for (uri, want) in [
        ("/api/view?bogus=1", "unknown parameter `bogus`"),
        ("/api/view?src=10.0.0.0/40", "src"),
        ("/api/view?src=%3Cscript%3E", "src"),
        ("/api/view?ports=9-1", "ports"),
        ("/api/view?w=99999", "`w`"),
        (
            "/api/view?from=2020-01-01T00:00:00Z&to=2026-01-01T00:00:00Z",
            "400 days",
        ),
        ("/api/view?day=2027-02-30", "YYYY-MM-DD"),
        (
            "/api/view?iface=nosuch0",
            "no events were recorded from interface",
        ),
        ("/api/view?theme=../../etc/passwd", "theme"),
        ("/api/at?x=10", "`y` is required"),
        ("/api/source?ip=not-an-ip", "not an IP address"),
        ("/day/yesterday", "not a day"),
        ("/source/evil.example", "not an IP address"),
        ("/api/stats?x=1", "unknown parameter"),
        ("/api/view?w=1&w=2", "twice"),
        ("/api/top?part=everything", "`part`"),
    ] {
        let (st, _, body) = get(&app, uri).await;
        let body = String::from_utf8_lossy(&body);
        assert_eq!(st, StatusCode::BAD_REQUEST, "{uri}: {body}");
        assert!(body.contains(want), "{uri}: `{body}` lacks `{want}`");
        assert!(!body.contains('<'), "{uri}: the message echoes no markup");
    }
    let (st, _, _) = get(&app, "/no/such/page").await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let post = app
        .clone()
        .oneshot(Request::post("/api/view").body(Body::from("x")).unwrap())
        .await
        .unwrap();
    assert_eq!(post.status(), StatusCode::METHOD_NOT_ALLOWED, "read-only");
}

#[tokio::test]
async fn a_token_guards_every_data_route() {
    let app = app(fixture("tok"), Some(TOKEN));
    for uri in [
        "/",
        "/api/view",
        "/api/rates",
        "/plot.png",
        "/metrics",
        "/api/live",
        "/export/logstalgia",
    ] {
        let (st, h, _) = get(&app, uri).await;
        assert_eq!(st, StatusCode::UNAUTHORIZED, "{uri}");
        assert_eq!(h["www-authenticate"], "Bearer");
        let (st, _, _) = get(&app, &format!("{uri}?token=wrong-horse-battery-staple")).await;
        assert_eq!(st, StatusCode::UNAUTHORIZED, "{uri} with a wrong token");
    }
    let (st, _, _) = get(&app, &format!("/api/view?token={TOKEN}")).await;
    assert_eq!(st, StatusCode::OK);
    let resp = app
        .clone()
        .oneshot(
            Request::get("/metrics")
                .header("authorization", format!("Bearer {TOKEN}"))
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    // The script and style hold no data: served to anyone.
    let (st, _, _) = get(&app, "/static/app.js").await;
    assert_eq!(st, StatusCode::OK);
}

#[test]
fn listening_beyond_loopback_needs_a_token() {
    let opts = |listen: &str, token: Option<&str>| WebOptions {
        listen: listen.parse().unwrap(),
        token: token.map(String::from),
        history: Arc::new(crate::store::SqliteHistory("x.db".into())),
        label: String::new(),
        file_view: false,
    };
    assert!(opts("127.0.0.1:8780", None).check().is_ok());
    assert!(opts("[::1]:8780", None).check().is_ok());
    let e = opts("0.0.0.0:8780", None).check().unwrap_err().to_string();
    assert!(e.contains("--token"), "{e}");
    assert!(opts("198.18.0.1:8780", None).check().is_err());
    assert!(opts("0.0.0.0:8780", Some(TOKEN)).check().is_ok());
    assert!(opts("0.0.0.0:8780", Some("short")).check().is_err());
}

#[tokio::test]
async fn the_live_stream_sends_new_events_and_resumes() {
    let db = fixture("live");
    // The cursor of the fixture's last event (its 101st).
    let last = crate::store::Store::open_read_only(&db)
        .unwrap()
        .last_rowid()
        .unwrap();
    let app = app(db.clone(), None);
    let resp = app
        .clone()
        .oneshot(
            Request::get("/api/live?after=0")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let text = next_chunk(&mut resp.into_body()).await;
    assert!(text.contains("event: events"), "{text}");
    assert!(text.contains(&format!("id: {last}\n")), "{text}");
    assert!(text.contains("198.51.100.7"));
    // A reconnecting browser sends Last-Event-ID: nothing is sent twice.
    let resp = app
        .oneshot(
            Request::get("/api/live")
                .header("last-event-id", last.to_string())
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    let text = next_chunk(&mut resp.into_body()).await;
    assert!(!text.contains("198.51.100.7"), "{text}");
}

#[tokio::test]
async fn logstalgia_can_follow_new_events() {
    let db = fixture("follow");
    let app = app(db.clone(), None);
    let resp = app
        .oneshot(
            Request::get("/export/logstalgia?follow=1&proto=udp")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let mut body = resp.into_body();
    // Stored after the reader started: a TCP probe (filtered out), a UDP one.
    let mut s = Store::open(&db).unwrap();
    s.insert(&[
        rec(T0 + 5000 * MS, "192.0.2.1", 6, 22),
        rec(T0 + 5001 * MS, "192.0.2.2", 17, 161),
    ])
    .unwrap();
    let mut seen = String::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !seen.contains("192.0.2.2|UDP:161") {
        assert!(
            std::time::Instant::now() < deadline,
            "not followed: {seen:?}"
        );
        seen.push_str(&next_chunk(&mut body).await);
    }
    assert!(!seen.contains("192.0.2.1"), "the filter applies: {seen}");
    assert!(
        !seen.contains("198.51.100.7"),
        "only what came after: {seen}"
    );
}

/// Who a source is, as the store keeps it: on the source page, in the top
/// sources and under the pointer; a source it knows nothing of has none.
#[tokio::test]
async fn the_console_says_who_a_source_is() {
    let db = fixture("origins");
    {
        let mut s = Store::open(&db).unwrap();
        let o = crate::enrich::Origin {
            country: Some("NL".into()),
            asn: Some(64496),
            as_org: Some("Documentation Net".into()),
            tags: vec!["research_scanner".into()],
        };
        s.set_origins(&[("198.51.100.7".parse().unwrap(), o.clone())], T0)
            .unwrap();
        assert_eq!(s.origin("198.51.100.7".parse().unwrap()).unwrap(), Some(o));
        assert_eq!(s.origin("2001:db8::5".parse().unwrap()).unwrap(), None);
    }
    let app = app(db, None);
    let src = json(&app, &format!("/api/source?{RANGE}&ip=198.51.100.7")).await;
    assert_eq!(src["origin"]["country"], "NL");
    assert_eq!(src["origin"]["asn"], 64496);
    assert_eq!(src["origin"]["as_org"], "Documentation Net");
    assert_eq!(src["origin"]["tags"][0], "research_scanner");
    let top = json(&app, &format!("/api/top?{RANGE}&part=sources")).await;
    let srcs = top["sources"].as_array().unwrap();
    let scanner = srcs.iter().find(|s| s["src"] == "198.51.100.7").unwrap();
    assert_eq!(scanner["origin"]["asn"], 64496);
    let other = srcs.iter().find(|s| s["src"] == "2001:db8::5").unwrap();
    assert!(other["origin"].is_null());
    let v6 = json(&app, &format!("/api/source?{RANGE}&ip=2001:db8::5")).await;
    assert!(v6["origin"].is_null());
    // Filters by who the sources are: the scanner's 100 events, or none.
    for q in [
        "country=NL",
        "country=nl",
        "asn=64496",
        "asn=AS64496",
        "tag=research_scanner",
        "country=NL&asn=64496",
    ] {
        let t = json(&app, &format!("/api/top?{RANGE}&{q}")).await;
        assert_eq!(t["total"], 100, "{q}");
    }
    for q in ["country=DE", "asn=1", "tag=blocklist", "country=NL&asn=1"] {
        let t = json(&app, &format!("/api/top?{RANGE}&{q}")).await;
        assert_eq!(t["total"], 0, "{q}");
    }
    let (st, _, png) = get(&app, &format!("/plot.png?{RANGE}&w=800&h=400&country=NL")).await;
    assert_eq!(st, StatusCode::OK);
    assert!(png.starts_with(b"\x89PNG"));
    // Coloured by country: the NL scanner's busiest pixel in the first
    // colour of the palette, which the protocol palette does not have.
    let first = [0x4e, 0xa8, 0xff];
    let has = |png: &[u8]| {
        let img = image::load_from_memory(png).unwrap().to_rgb8();
        img.pixels().filter(|p| p.0 == first).count()
    };
    let (_, h, _) = get(&app, &format!("/plot.png?{RANGE}&w=800&h=400")).await;
    let all = h["x-fireplot-events"].clone();
    for (q, want) in [
        ("color=country", true),
        ("color=asn", true),
        ("color=proto", false),
        ("", false),
    ] {
        let (st, h, png) = get(&app, &format!("/plot.png?{RANGE}&w=800&h=400&{q}")).await;
        assert_eq!(st, StatusCode::OK, "{q}");
        assert_eq!(h["x-fireplot-events"], all, "{q}: every probe is drawn");
        assert_eq!(has(&png) > 0, want, "{q}");
    }
    let (st, _, body) = get(&app, &format!("/plot.png?{RANGE}&color=pink")).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert!(String::from_utf8_lossy(&body).contains("proto, country or asn"));
    for (q, says) in [
        ("country=NLD", "two-letter"),
        ("asn=ASX", "must be a number"),
        ("tag=a%20b", "tag name"),
    ] {
        let (st, _, body) = get(&app, &format!("/api/top?{RANGE}&{q}")).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{q}");
        assert!(String::from_utf8_lossy(&body).contains(says), "{q}");
    }
}

/// An attack fixture around T0: a spoofed SYN flood (events and a kernel
/// aggregate), a DNS reflection (UDP from source port 53), an ICMP echo
/// flood and a fragment flood at 198.18.1.6; the `ddos` alert of the SYN
/// flood and a more severe port scan.
fn attack_fixture(tag: &str) -> (PathBuf, Vec<Record>) {
    use fireplot_common::event::{PKT_AGGREGATE, PKT_FRAGMENT};
    let dir = std::env::temp_dir().join(format!("fireplot-web-test-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("h.db");
    let mut s = Store::open(&path).unwrap();
    let victim: std::net::IpAddr = "198.18.1.6".parse().unwrap();
    let at = |ts: i64, src: String, proto: u8| {
        Record::probe(ts, src.parse().unwrap(), victim, proto, 80)
    };
    let mut recs = Vec::new();
    for i in 0..50 {
        recs.push(at(T0 + i * 10 * MS, format!("192.0.2.{}", i + 1), 6));
    }
    let mut agg = at(T0 + 600 * MS, "192.0.2.0".into(), 6);
    agg.pkt_flags = PKT_AGGREGATE;
    agg.count = 1000;
    recs.push(agg);
    for i in 0..30 {
        let mut r = at(T0 + 5000 * MS + i * MS, format!("203.0.113.{}", i + 1), 17);
        r.sport = 53;
        r.dport = 41000;
        r.len = 400;
        recs.push(r);
    }
    for i in 0..20 {
        let mut r = at(
            T0 - 10_000 * MS + i * MS,
            format!("198.51.100.{}", i + 1),
            1,
        );
        r.icmp_type = 8;
        r.len = 84;
        recs.push(r);
    }
    for i in 0..10 {
        let mut r = at(
            T0 + 20_000 * MS + i * MS,
            format!("198.51.100.{}", i + 50),
            17,
        );
        r.pkt_flags = PKT_FRAGMENT;
        r.len = 1500;
        recs.push(r);
    }
    s.insert(&recs).unwrap();
    let scan = serde_json::json!({
        "id": 1, "kind": "port_scan", "status": "ended", "severity": 5,
        "summary": "198.51.100.7 probed 100 TCP ports", "sources": ["198.51.100.7"], "source_count": 1,
    });
    s.insert_alert(
        T0 - 20_000 * MS,
        T0 - 19_000 * MS,
        "port_scan",
        &scan.to_string(),
    )
    .unwrap();
    let ddos = serde_json::json!({
        "id": 2, "kind": "ddos", "status": "ended", "severity": 4,
        "summary": "198.18.1.6 under TCP SYN flood: peak 1,050 packets/s",
        "sources": ["192.0.2.1"], "source_count": 50,
        "targets": {"count": 1, "sample": ["198.18.1.6"]}, "ports": {"count": 1, "sample": [80]},
        "vector": "syn", "peak_pps": 1050, "peak_bps": 504000, "probes": 1050,
    });
    s.insert_alert(T0, T0 + 1000 * MS, "ddos", &ddos.to_string())
        .unwrap();
    (path, recs)
}

const ATTACK_RANGE: &str = "from=2027-01-15T07:59:30Z&to=2027-01-15T08:00:30Z";

#[tokio::test]
async fn the_rate_strip_sums_the_records_by_vector() {
    let (db, recs) = attack_fixture("rates");
    let app = app(db, None);
    let r = json(&app, &format!("/api/rates?{ATTACK_RANGE}&bins=60")).await;
    assert_eq!(r["bins"], 60);
    assert_eq!(r["bin_s"], 1.0);
    let series = r["series"].as_array().unwrap();
    // Every packet and byte of the range, once.
    let want_packets: u64 = recs.iter().map(|r| u64::from(r.count)).sum();
    let want_bytes: u64 = recs
        .iter()
        .map(|r| u64::from(r.count) * u64::from(r.len))
        .sum();
    let sum = |key: &str| -> u64 {
        series
            .iter()
            .flat_map(|s| s[key].as_array().unwrap())
            .map(|v| v.as_u64().unwrap())
            .sum()
    };
    assert_eq!(sum("packets"), want_packets);
    assert_eq!(sum("bytes"), want_bytes);
    assert_eq!(r["packets_total"], want_packets);
    // The detector's vectors, heaviest first.
    let by = |name: &str| {
        series
            .iter()
            .find(|s| s["vector"] == name)
            .unwrap_or_else(|| panic!("{name} in {series:?}"))
    };
    assert_eq!(series[0]["vector"], "syn");
    let syn = by("syn");
    assert_eq!(
        syn["packets_total"], 1050,
        "50 events and an aggregate of 1,000"
    );
    assert_eq!(syn["bytes_total"], 1050 * 60);
    assert_eq!(syn["packets"][30], 1050, "all within the second at T0");
    let dns = by("udp_reflection");
    assert_eq!(dns["packets_total"], 30);
    assert_eq!(dns["bytes"][35], 30 * 400);
    assert_eq!(dns["label"], "UDP from port 53 (DNS)");
    let icmp = by("icmp");
    assert_eq!(
        (icmp["packets"][20].as_u64(), icmp["label"].as_str()),
        (Some(20), Some("ICMP type 8"))
    );
    let frag = by("fragment");
    assert_eq!(
        frag["packets"][50], 10,
        "fragments, whatever their protocol"
    );
    assert!(series.iter().all(|s| s["vector"] != "udp"), "{series:?}");
    // The default: at most 600 bins.
    let r = json(&app, &format!("/api/rates?{ATTACK_RANGE}")).await;
    assert_eq!(r["bins"], 600);
    assert_eq!(r["series"][0]["packets"].as_array().unwrap().len(), 600);
}

#[tokio::test]
async fn the_rate_strip_refuses_what_it_cannot_bound() {
    let (db, _) = attack_fixture("rates-bounds");
    let app = app(db, None);
    for (q, says) in [
        ("bins=601", "`bins` must be an integer from 1 to 600"),
        ("bins=0", "`bins`"),
        ("bins=99999999999999999999", "`bins`"),
        ("bins=-5", "`bins`"),
        ("bins=x", "`bins`"),
        ("nonsense=1", "nonsense"),
    ] {
        let (st, _, body) = get(&app, &format!("/api/rates?{ATTACK_RANGE}&{q}")).await;
        let body = String::from_utf8_lossy(&body);
        assert_eq!(st, StatusCode::BAD_REQUEST, "{q}: {body}");
        assert!(body.contains(says), "{q}: {body}");
    }
    let (st, _, body) = get(
        &app,
        "/api/rates?from=2026-11-01T00:00:00Z&to=2027-01-15T00:00:00Z",
    )
    .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert!(String::from_utf8_lossy(&body).contains("at most 31 days"));
    let (st, _, _) = get(
        &app,
        "/api/rates?from=2020-01-01T00:00:00Z&to=2027-01-15T00:00:00Z",
    )
    .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "longer than any view");
    // 31 days is fine.
    json(
        &app,
        "/api/rates?from=2026-12-15T08:00:00Z&to=2027-01-15T08:00:00Z&bins=31",
    )
    .await;
}

#[tokio::test]
async fn attacks_come_first_in_the_alerts_panel() {
    let (db, _) = attack_fixture("attacks-first");
    let app = app(db, None);
    let list = json(&app, &format!("/api/alerts?{ATTACK_RANGE}")).await;
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 2);
    let a = &list[0];
    assert_eq!(a["kind"], "ddos", "before a more severe scan: {list:?}");
    assert_eq!(a["attack"], true);
    assert_eq!(a["destination"], "198.18.1.6");
    assert_eq!(a["vector"], "syn");
    assert_eq!(
        (a["peak_pps"].as_u64(), a["peak_bps"].as_u64()),
        (Some(1050), Some(504000))
    );
    assert_eq!(a["source_count"], 50);
    assert_eq!(
        a["last_ms"].as_i64().unwrap() - a["first_ms"].as_i64().unwrap(),
        1000
    );
    assert_eq!(list[1]["kind"], "port_scan");
    assert_eq!(list[1]["attack"], false);
}
