use super::*;
use crate::detect::{DetectConfig, Engine};

const S: i64 = 1_000_000_000;
/// 2027-01-15 00:00 UTC.
const DAY0: i64 = 1_800_000_000 * S - (1_800_000_000 * S).rem_euclid(DAY_NS);

fn probe(ts: i64, src: &str, dst: &str, port: u16) -> Record {
    Record::probe(ts, src.parse().unwrap(), dst.parse().unwrap(), 6, port)
}

/// A week of a returning scanner and background, then the day: the
/// scanner again, a new one, a burst flood, a new port.
fn week() -> Vec<Record> {
    let mut evs = Vec::new();
    for d in 0..8i64 {
        let t = DAY0 + d * DAY_NS + 3_600 * S;
        for k in 0..30 {
            evs.push(probe(
                t + k * 100_000_000,
                "203.0.113.7",
                "198.18.1.2",
                1000 + k as u16,
            ));
        }
        for k in 0..50 {
            evs.push(probe(
                t + 7_200 * S + k * S,
                &format!("192.0.2.{}", k + 1),
                "198.18.1.3",
                22,
            ));
        }
    }
    let today = DAY0 + 7 * DAY_NS;
    for k in 0..40 {
        evs.push(probe(
            today + 10_000 * S + k * 50_000_000,
            "203.0.113.99",
            "198.18.1.4",
            2000 + k as u16,
        ));
    }
    for k in 0..3_000 {
        evs.push(probe(
            today + 20_000 * S + k * 100_000,
            "203.0.113.50",
            "198.18.1.5",
            443,
        ));
    }
    for k in 0..12 {
        evs.push(probe(
            today + 30_000 * S + k * S,
            &format!("198.51.100.{}", k + 1),
            "198.18.1.6",
            47_808,
        ));
    }
    evs.sort_by_key(|r| r.ts_ns);
    evs
}

fn day() -> Day {
    let mut day = Day::new(DAY0 + 7 * DAY_NS, "test".into());
    let mut e = Engine::new(DetectConfig::default());
    for r in week() {
        day.add(&r);
        e.push(&r);
        for a in e.drain() {
            day.alert("", a);
        }
    }
    for a in e.finish() {
        day.alert("", a);
    }
    day
}

#[test]
fn the_day_beside_its_week() {
    let day = day();
    let t = day.totals();
    assert_eq!(t.len(), 8);
    assert_eq!(t[0].probes, 80);
    assert_eq!(t[7].probes, 80 + 40 + 3_000 + 12);
    assert!(t[7].announced >= 2, "{t:?}");
    let (new, recurring) = day.actors();
    assert!(
        new.iter()
            .any(|a| a.source == "203.0.113.99" && a.kind == "port_scan"),
        "{new:?}"
    );
    let r = recurring
        .iter()
        .find(|a| a.source == "203.0.113.7")
        .expect("the returning scanner is recurring");
    assert_eq!(r.since.as_deref().map(|s| &s[..10]), Some("2027-01-15"));
    let attacks = day.episodes_of(&["ddos", "flood", "brute_force"]);
    assert!(attacks
        .iter()
        .any(|a| a.kind == "flood" && a.sources == ["203.0.113.50"]));
    let ports = day.new_ports();
    assert!(
        ports.iter().any(|p| p.port == 47_808 && p.sources == 12),
        "{ports:?}"
    );
    assert!(
        !ports.iter().any(|p| p.port == 22),
        "22 was probed all week"
    );
}

#[test]
fn text_markdown_and_html_say_the_same() {
    let day = day();
    let text = render(&day, Format::Text, Some(b"png"), "day.png");
    assert!(
        text.starts_with("fireplot — 2027-01-22 (UTC), test"),
        "{text}"
    );
    assert!(text.contains("Recurring actors") && text.contains("203.0.113.7"));
    assert!(text.contains("TCP/47808"));
    let md = render(&day, Format::Markdown, Some(b"png"), "day.png");
    assert!(md.contains("![the day's fireplot](day.png)"));
    assert!(md.contains("| source | kind |"));
    let html = render(&day, Format::Html, Some(b"\x89PNG"), "day.png");
    assert!(html.starts_with("<!doctype html>"));
    assert!(html.contains("src=\"data:image/png;base64,iVBORw==\""));
    assert!(html.contains("<td>203.0.113.50</td>") || html.contains("203.0.113.50"));
    assert!(
        !html.contains("<script"),
        "one self-contained page, no script"
    );
}
