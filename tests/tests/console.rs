//! The web console in a real browser: `fireplot serve` over a fixture
//! database, headless Chromium driven over WebDriver. The screenshot has
//! the seed's colours where the probes are; hovering a known dot shows its
//! source and port; clicking through opens the source's page; clicking an
//! alert zooms to it. Over an events file (`serve --events`) the page is
//! the file's span, not live, with the alerts the detectors found in it.

use std::{
    io::{BufRead, BufReader},
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::Duration,
};

use fireplot::{plot::layout::Layout, record::Record, store::Store};
use fireplot_tests::{browser, sensor::fireplot_bin, webdriver::Browser};
use serde_json::{json, Value};

/// 2027-01-15T08:00:00Z.
const T0: i64 = 1_800_000_000_000_000_000;
const MS: i64 = 1_000_000;
const SCANNER: &str = "198.51.100.7";
const V6: &str = "2001:db8:77::9";
const VICTIM: &str = "198.18.1.6";
/// The SYN flood: 2 h after T0, out of the first view (its brightest
/// pixel would dim the scan's dots).
const FLOOD: i64 = T0 + 7_200_000 * MS;

fn rec(ts: i64, src: &str, proto: u8, dport: u16) -> Record {
    let src: std::net::IpAddr = src.parse().unwrap();
    let dst = if src.is_ipv4() {
        "198.18.1.2"
    } else {
        "2001:db8:1::2"
    };
    Record::probe(ts, src, dst.parse().unwrap(), proto, dport)
}

/// A scan of 40 TCP ports (one every 30 s from T0: a diagonal), a run of
/// IPv6/UDP probes to port 53 an hour later, and the scan's alert.
fn fixture() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("fireplot-console-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("h.db");
    let mut s = Store::open(&path).unwrap();
    let mut recs: Vec<Record> = (0..40)
        .map(|i| rec(T0 + i * 30_000 * MS, SCANNER, 6, 100 + i as u16 * 1000))
        .collect();
    for i in 0..10 {
        recs.push(rec(T0 + 3_600_000 * MS + i * 1000 * MS, V6, 17, 53));
    }
    // A spoofed SYN flood at 198.18.1.6:80 for 1 s at FLOOD: 200 events and
    // a kernel aggregate of 5,000 packets.
    let victim: std::net::IpAddr = VICTIM.parse().unwrap();
    for i in 0..200 {
        let src: std::net::IpAddr = format!("192.0.2.{}", 1 + i % 250).parse().unwrap();
        recs.push(Record::probe(FLOOD + i * 5 * MS, src, victim, 6, 80));
    }
    let mut agg = Record::probe(
        FLOOD + 500 * MS,
        "192.0.2.0".parse().unwrap(),
        victim,
        6,
        80,
    );
    agg.pkt_flags = fireplot_common::event::PKT_AGGREGATE;
    agg.count = 5000;
    recs.push(agg);
    s.insert(&recs).unwrap();
    s.set_interface(2, "wan0").unwrap();
    let alert = json!({
        "id": 1, "kind": "port_scan", "status": "ended", "severity": 3,
        "summary": format!("{SCANNER} probed 40 TCP ports of 198.18.1.2 in 19.5 min, ascending"),
        "sources": [SCANNER], "source_count": 1, "proto": "tcp", "tool": "unknown",
    });
    s.insert_alert(T0, T0 + 39 * 30_000 * MS, "port_scan", &alert.to_string())
        .unwrap();
    // Its attack record: less severe than the scan, listed first all the same.
    let ddos = json!({
        "id": 2, "kind": "ddos", "status": "ended", "severity": 2,
        "summary": format!("{VICTIM} under TCP SYN flood: peak 5,200 packets/s, 2.5 Mbit/s, 200 sources, 1 s"),
        "sources": ["192.0.2.1"], "source_count": 200, "proto": "tcp",
        "targets": {"count": 1, "sample": [VICTIM]}, "ports": {"count": 1, "sample": [80]},
        "vector": "syn", "peak_pps": 5200, "peak_bps": 2_496_000,
    });
    s.insert_alert(FLOOD, FLOOD + 1000 * MS, "ddos", &ddos.to_string())
        .unwrap();
    path
}

struct Server {
    child: Child,
    base: String,
}

impl Server {
    fn start(db: &std::path::Path) -> Server {
        Self::with(&["--db".as_ref(), db.as_os_str()])
    }

    /// `fireplot serve` with these input arguments.
    fn with(input: &[&std::ffi::OsStr]) -> Server {
        let mut child = Command::new(fireplot_bin())
            .args(["serve", "--listen", "127.0.0.1:0"])
            .args(input)
            .env("RUST_LOG", "info")
            .stderr(Stdio::piped())
            .spawn()
            .expect("fireplot serve");
        let err = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                if let Some(rest) = line.split("web console on ").nth(1) {
                    let _ = tx.send(rest.split_whitespace().next().unwrap_or("").to_string());
                }
            }
        });
        let base = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("serve says where it listens");
        Server {
            child,
            base: base.trim_end_matches('/').to_string(),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The page's plot image: its box in the viewport and its pixel size.
fn plot_box(b: &Browser) -> (f64, f64, f64, f64, u32, u32) {
    let v = b
        .eval(
            "const i = document.getElementById('plot'); const r = i.getBoundingClientRect(); \
             return [r.left, r.top, r.width, r.height, i.naturalWidth, i.naturalHeight];",
            json!([]),
        )
        .unwrap();
    let f = |i: usize| v[i].as_f64().unwrap();
    (f(0), f(1), f(2), f(3), f(4) as u32, f(5) as u32)
}

fn loaded(b: &Browser) {
    b.wait_for(
        "return document.body.dataset.loaded === '1' && document.getElementById('alerts').children.length > 0",
        Duration::from_secs(30),
    )
    .expect("the page loads its plot and alerts");
}

#[test]
fn console_in_a_real_browser() {
    if !browser("console_in_a_real_browser") {
        return;
    }
    let db = fixture();
    let server = Server::start(&db);
    let b = Browser::start(1700, 1100).expect("headless chromium");
    let (from, to) = ("2027-01-15T07:50:00Z", "2027-01-15T09:10:00Z");
    b.goto(&format!("{}/?from={from}&to={to}&utc=1", server.base))
        .unwrap();
    loaded(&b);
    let (left, top, cw, ch, w, h) = plot_box(&b);
    assert_eq!(
        (cw.round() as u32, ch.round() as u32),
        (w, h),
        "the plot is shown unscaled"
    );

    // Where the server's layout puts the probes, the screenshot has their colours.
    let from_ns = T0 - 600_000 * MS;
    let to_ns = T0 + 4_200_000 * MS;
    let l = Layout::new(w, h, from_ns, to_ns);
    let shot = image::load_from_memory(&b.screenshot().unwrap())
        .unwrap()
        .to_rgb8();
    let at = |ts: i64, port: u16| {
        let (x, y) = (l.x(ts).unwrap(), l.y_port(port));
        (left.round() as u32 + x, top.round() as u32 + y)
    };
    let colour_near = |(x, y): (u32, u32), want: [u8; 3]| {
        (0..2).any(|dx| {
            (0..2).any(|dy| {
                let p = shot.get_pixel(x + dx, y + dy).0;
                p.iter().zip(want).all(|(a, b)| a.abs_diff(b) <= 40)
            })
        })
    };
    for i in [0i64, 13, 39] {
        let p = at(T0 + i * 30_000 * MS, 100 + i as u16 * 1000);
        assert!(
            colour_near(p, [0x00, 0xff, 0x00]),
            "IPv4/TCP green at {p:?}"
        );
    }
    let v6 = at(T0 + 3_600_000 * MS, 53);
    assert!(
        colour_near(v6, [0xff, 0xff, 0xff]),
        "IPv6/UDP white at {v6:?}"
    );
    let empty = at(T0 + 1_800_000 * MS, 20000);
    assert!(
        colour_near(empty, [0, 0, 0]),
        "black where nothing was probed"
    );

    // The panels: top ports from the bins, top sources filled in after.
    let panels = b
        .wait_for(
            &format!("const s = document.getElementById('sources').innerText; const p = document.getElementById('ports').innerText; return s.includes('{SCANNER}') && p.includes('UDP/53') && [p, s]"),
            Duration::from_secs(30),
        )
        .expect("the top ports and sources panels fill in");
    assert!(panels[1].as_str().unwrap().contains("40"), "{panels}");

    // Hover a known dot: the tooltip names its source and port.
    let (ts, port) = (T0 + 13 * 30_000 * MS, 100 + 13 * 1000);
    let (px, py) = at(ts, port);
    b.pointer(px as i64, py as i64, false).unwrap();
    let tip = b
        .wait_for(
            "const t = document.getElementById('tip'); return !t.hidden && t.innerText.includes('→') && t.innerText",
            Duration::from_secs(10),
        )
        .unwrap();
    let tip = tip.as_str().unwrap();
    assert!(tip.contains(SCANNER), "{tip}");
    assert!(tip.contains(&format!("TCP/{port}")), "{tip}");
    assert!(tip.contains("port_scan"), "the alert it belongs to: {tip}");

    // Click pins it; its source link opens the source's page.
    b.pointer(px as i64, py as i64, true).unwrap();
    if let Err(e) = b.wait_for(
        "return document.getElementById('tip').classList.contains('pinned') && document.querySelectorAll('#tip a.src').length",
        Duration::from_secs(10),
    ) {
        let html = b.eval("return document.getElementById('tip').outerHTML", json!([]));
        panic!("the tooltip is not pinned: {e}: {html:?}");
    }
    b.click("#tip a.src").unwrap();
    b.wait_for(
        &format!("return location.pathname === '/source/{SCANNER}' && document.getElementById('src-facts').innerText.includes('40')"),
        Duration::from_secs(30),
    )
    .expect("the source page with its 40 probes");
    let facts: Value = b
        .eval(
            "return [document.getElementById('src-facts').innerText, document.getElementById('src-alerts').innerText]",
            json!([]),
        )
        .unwrap();
    assert!(
        facts[1].as_str().unwrap().contains("probed 40 TCP ports"),
        "{facts}"
    );

    // Click the alert in the panel: the view zooms to its span, band on.
    b.goto(&format!("{}/?from={from}&to={to}&utc=1", server.base))
        .unwrap();
    loaded(&b);
    b.click("#alerts li[data-id='1']").unwrap();
    let url = b
        .wait_for(
            "return document.body.dataset.loaded === '1' && location.hash === '#alert=1' && document.querySelector('#alerts li.on') && location.href",
            Duration::from_secs(30),
        )
        .unwrap();
    let url = url.as_str().unwrap().to_string();
    let (zf, zt) = range_of(&url);
    let (af, at_) = (T0 / MS, (T0 + 39 * 30_000 * MS) / MS);
    assert!(zf <= af && zt >= at_, "the zoom covers the alert: {url}");
    assert!(zt - zf < 2 * (at_ - af), "and not much more: {url}");

    // Drag across the plot zooms into that time range.
    b.goto(&format!("{}/?from={from}&to={to}&utc=1", server.base))
        .unwrap();
    loaded(&b);
    let (x0, y0) = at(T0, 100);
    let (x1, _) = at(T0 + 600_000 * MS, 100);
    b.eval(
        "const o = document.getElementById('overlay');
         const ev = (t, x, y) => new MouseEvent(t, {clientX: x, clientY: y, bubbles: true});
         o.dispatchEvent(ev('mousedown', arguments[0], arguments[2]));
         o.dispatchEvent(ev('mousemove', arguments[1], arguments[2]));
         window.dispatchEvent(ev('mouseup', arguments[1], arguments[2]));",
        json!([x0, x1, y0 - 40]),
    )
    .unwrap();
    let url = b
        .wait_for(
            "return document.body.dataset.loaded === '1' && !location.search.includes('T07') && location.href",
            Duration::from_secs(30),
        )
        .unwrap();
    let (zf, zt) = range_of(url.as_str().unwrap());
    // One pixel is (80 min / plot width) ≈ 3 s: allow a few.
    assert!(
        (zf - T0 / MS).abs() <= 10_000,
        "zoom starts at the drag: {url}"
    );
    assert!(
        (zt - (T0 + 600_000 * MS) / MS).abs() <= 10_000,
        "and ends there: {url}"
    );

    // The rate strip, over a view with the scan and the flood: drawn on the
    // plot's x axis, the SYN flood (the heaviest vector: the first colour)
    // peaking at the flood's x and flat where there was none.
    b.goto(&format!(
        "{}/?from=2027-01-15T07:50:00Z&to=2027-01-15T10:10:00Z&utc=1",
        server.base
    ))
    .unwrap();
    loaded(&b);
    let (_, _, _, _, w, h) = plot_box(&b);
    let l = Layout::new(w, h, T0 - 600_000 * MS, T0 + 7_800_000 * MS);
    b.wait_for(
        "return Number(document.getElementById('rates').dataset.series) >= 2",
        Duration::from_secs(30),
    )
    .expect("the rate strip is drawn");
    let legend = b
        .eval(
            "return document.getElementById('rate-legend').innerText",
            json!([]),
        )
        .unwrap();
    let legend = legend.as_str().unwrap();
    assert!(
        legend.contains("TCP SYN") && legend.contains("UDP"),
        "{legend}"
    );
    let strip = |x: u32| {
        b.eval(
            "const c = document.getElementById('rates'); const g = c.getContext('2d');
             let top = c.height;
             for (let x = arguments[0] - 4; x <= arguments[0] + 4; x++) {
               const d = g.getImageData(x, 0, 1, c.height).data;
               for (let y = 0; y < c.height; y++) {
                 const [r, gr, b] = [d[4 * y], d[4 * y + 1], d[4 * y + 2]];
                 if (r > 180 && gr < 150 && b < 150) { top = Math.min(top, y); break; }
               }
             }
             return [top, c.height, c.width];",
            json!([x]),
        )
        .unwrap()
    };
    let flood_x = l.x(FLOOD).unwrap();
    let quiet_x = l.x(T0 + 1_800_000 * MS).unwrap();
    let (peak, quiet) = (strip(flood_x), strip(quiet_x));
    assert_eq!(peak[2], w, "the strip is as wide as the plot");
    let height = peak[1].as_u64().unwrap();
    assert!(
        peak[0].as_u64().unwrap() < height / 3,
        "the flood's rate peaks at its x ({flood_x}): {peak}"
    );
    assert!(
        quiet[0].as_u64().unwrap() > height - 24,
        "flat at the baseline 10 min before it ({quiet_x}): {quiet}"
    );

    // The attack first in the alerts panel, with its facts.
    let first = b
        .eval(
            "return document.querySelector('#alerts li').innerText",
            json!([]),
        )
        .unwrap();
    let first = first.as_str().unwrap();
    assert!(first.contains("ddos"), "{first}");
    assert!(first.contains(&format!("→ {VICTIM}")), "{first}");
    assert!(
        first.contains("syn") && first.contains("5.2 k") && first.contains("200 sources"),
        "{first}"
    );

    // Colour by country, chosen in the form: the page asks for it and the
    // dots change colour. No source of this history has a stored origin,
    // so all are "unknown" (dark grey), the scanner's green is gone.
    b.goto(&format!("{}/?from={from}&to={to}&utc=1", server.base))
        .unwrap();
    loaded(&b);
    b.eval(
        "const f = document.getElementById('filters'); f.elements.color.value = 'country'; f.requestSubmit();",
        json!([]),
    )
    .unwrap();
    b.wait_for(
        "return location.search.includes('color=country') && document.body.dataset.loaded === '1'",
        Duration::from_secs(30),
    )
    .expect("the page reloads coloured by country");
    let shot = image::load_from_memory(&b.screenshot().unwrap())
        .unwrap()
        .to_rgb8();
    // The unknown series is 0x5a grey at its busiest pixel, dimmer (down
    // to 55 %) where fewer probes fell.
    let grey = |(x, y): (u32, u32)| {
        (0..2).any(|dx| {
            (0..2).any(|dy| {
                let [r, g, b] = shot.get_pixel(x + dx, y + dy).0;
                r.abs_diff(g) <= 6 && g.abs_diff(b) <= 6 && (40..=100).contains(&r)
            })
        })
    };
    for i in [0i64, 13, 39] {
        let p = at(T0 + i * 30_000 * MS, 100 + i as u16 * 1000);
        assert!(grey(p), "unknown grey at {p:?}");
        let [_, g, _] = shot.get_pixel(p.0, p.1).0;
        assert!(g < 120, "not green any more at {p:?}");
    }
}

/// `from` and `to` (Unix ms) of a page address.
/// `serve --events FILE` in a real browser: the front page is the file's
/// whole span, not live, and the alerts panel lists what the detectors
/// found in the file (a 100-port scan).
#[test]
fn an_events_file_in_a_real_browser() {
    if !browser("an_events_file_in_a_real_browser") {
        return;
    }
    let dir = std::env::temp_dir().join(format!("fireplot-console-file-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("events.jsonl");
    let text: String = (0..100)
        .map(|i| rec(T0 + i * 10 * MS, SCANNER, 6, 1 + i as u16 * 600))
        .map(|r| r.to_json_record().to_json() + "\n")
        .collect();
    std::fs::write(&file, text).unwrap();
    let server = Server::with(&["--events".as_ref(), file.as_os_str()]);
    let b = Browser::start(1400, 900).expect("headless chromium");
    b.goto(&format!("{}/?utc=1", server.base)).unwrap();
    loaded(&b);
    let v = b
        .eval(
            "return [document.getElementById('status').innerText, \
             document.getElementById('alerts').innerText, \
             document.getElementById('live').classList.contains('off'), '?' + view.toString()]",
            json!([]),
        )
        .unwrap();
    assert_eq!(v[0], "file view (not live)", "{v}");
    let alerts = v[1].as_str().unwrap();
    assert!(
        alerts.contains("port_scan") || alerts.contains("port scan"),
        "{v}"
    );
    assert!(alerts.contains(SCANNER), "{v}");
    assert_eq!(v[2], true, "no live link: {v}");
    let (from, to) = range_of(v[3].as_str().unwrap());
    assert!(
        from <= T0 / MS && to >= (T0 + 990 * MS) / MS,
        "the front page is the file's span: {v}"
    );
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}

fn range_of(url: &str) -> (i64, i64) {
    let query = url.split_once('?').map(|x| x.1).unwrap_or("");
    let query = query.split('#').next().unwrap_or("");
    let get = |k: &str| {
        query
            .split('&')
            .filter_map(|kv| kv.split_once('='))
            .find(|(x, _)| *x == k)
            .and_then(|(_, v)| v.parse::<i64>().ok())
            .unwrap_or_else(|| panic!("no numeric `{k}` in {url}"))
    };
    (get("from"), get("to"))
}

/// Live, end to end: `fireplot run --web` on the lab router, the page open
/// in headless Chromium on the router, an nmap scan from the inet side.
/// Its probes appear on the open page, and its alert in the panel.
#[test]
fn console_live_in_the_lab() {
    use fireplot_tests::{addr, privileged, sensor::Sensor, traffic, unique_prefix, Lab, Node};
    if !privileged("console_live_in_the_lab") || !browser("console_live_in_the_lab") {
        return;
    }
    let lab = Lab::up(&unique_prefix("web")).expect("lab");
    let dir = std::env::temp_dir().join(format!("fireplot-console-live-{}", std::process::id()));
    let db = dir.join("history.db");
    let sensor = Sensor::start(
        &lab,
        &dir,
        &["--db", db.to_str().unwrap(), "--web", "127.0.0.1:8780"],
    )
    .expect("sensor with its console");
    // The console listens once the log says so.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !std::fs::read_to_string(&sensor.log_path)
        .unwrap_or_default()
        .contains("web console on")
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the console did not start"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let b =
        Browser::start_in(Some(&lab.ns(Node::Router)), 1500, 1000).expect("chromium on the router");
    b.goto("http://127.0.0.1:8780/").unwrap();
    b.wait_for(
        "return document.body.dataset.loaded === '1' && document.getElementById('status').className === 'live'",
        Duration::from_secs(30),
    )
    .expect("the live page opens its stream");
    traffic::nmap(&lab, &["-sS", "-p", "1-200", addr::LAN_V4]).expect("nmap");
    let scanned = std::time::Instant::now();
    // Bound: the daemon commits every 0.5 s and the page polls every 0.5 s.
    if let Err(e) = b.wait_for(
        "return Number(document.body.dataset.liveEvents || 0) >= 200",
        Duration::from_secs(5),
    ) {
        let state = b.eval(
            "return [document.body.dataset.liveEvents, document.getElementById('status').innerText, document.getElementById('error').innerText]",
            json!([]),
        );
        panic!("the scan's 200 probes were not on the open page within 5 s: {e}: {state:?}");
    }
    let probes_after = scanned.elapsed();
    b.wait_for(
        &format!("return document.getElementById('alerts').innerText.includes('{}') && document.getElementById('alerts').innerText.includes('port_scan')", addr::INET_V4),
        Duration::from_secs(10),
    )
    .expect("its alert in the panel within 10 s");
    eprintln!(
        "live: probes on the page {:.1} s and the alert {:.1} s after nmap ended",
        probes_after.as_secs_f64(),
        scanned.elapsed().as_secs_f64()
    );
    drop(b);
    let c = sensor.stop().expect("stop sensor");
    assert!(c.events.len() >= 200);
}
