//! Plot tests: decode the PNG and look at the pixels where known events
//! must be.

use std::path::PathBuf;

use super::{layout::Layout, render, Category, Density, Mark, Spec, Theme};
use crate::record::Record;

const T0: i64 = 1_800_000_000_000_000_000;
const HOUR: i64 = 3_600_000_000_000;

fn rec(ts_ns: i64, family: u8, proto: u8, dport: u16) -> Record {
    Record {
        ts_ns,
        family,
        proto,
        src: Some(if family == 4 {
            "198.18.0.2".parse().unwrap()
        } else {
            "2001:db8::2".parse().unwrap()
        }),
        dst: None,
        sport: 1234,
        dport,
        tcp_flags: 2,
        ttl: 64,
        len: 60,
        class: 4,
        ifindex: 1,
        ip_id: 0,
        tcp_seq: 0,
        tcp_window: 0,
        icmp_type: 8,
        icmp_code: 0,
        pkt_flags: 0,
        count: 1,
    }
}

fn out(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("fireplot-plot-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

fn spec(theme: Theme) -> Spec {
    Spec {
        width: 1600,
        height: 900,
        theme,
        utc: true,
        iface: "wan0".into(),
        marks: vec![],
    }
}

fn pixel(img: &image::RgbImage, x: u32, y: u32) -> [u8; 3] {
    img.get_pixel(x, y).0
}

/// Known events: one per colour, at known times and ports.
fn known() -> Vec<(Record, Category)> {
    vec![
        (rec(T0 + HOUR / 10, 4, 6, 443), Category::V4Tcp),
        (rec(T0 + 2 * HOUR / 10, 4, 132, 2905), Category::PortOther),
        (rec(T0 + 3 * HOUR / 10, 4, 17, 53), Category::V4Udp),
        (rec(T0 + 4 * HOUR / 10, 6, 136, 5004), Category::PortOther),
        (rec(T0 + 5 * HOUR / 10, 6, 6, 22), Category::V6Tcp),
        (rec(T0 + 7 * HOUR / 10, 6, 17, 5000), Category::V6Udp),
        (rec(T0 + 9 * HOUR / 10, 4, 1, 0), Category::Icmp),
    ]
}

fn check_theme(theme: Theme) {
    let layout = Layout::new(1600, 900, T0, T0 + HOUR);
    let mut d = Density::new(layout.clone());
    for (r, _) in known() {
        d.add(&r);
    }
    d.add(&rec(T0 - 1, 4, 6, 80)); // before the range: not drawn
    assert_eq!(d.outside, 1);
    let path = out(&format!("known-{theme:?}.png"));
    let r = render(&d, &spec(theme), &path).unwrap();
    assert_eq!(r.events, known().len() as u64);
    let img = image::open(&path).unwrap().to_rgb8();
    assert_eq!(img.dimensions(), (1600, 900));
    assert_eq!(
        pixel(&img, 2, 2),
        theme.shade(Category::Other, 0.0),
        "background"
    );
    for (r, cat) in known() {
        let x = layout.x(r.ts_ns).unwrap();
        let y = if cat == Category::Icmp {
            layout.y_lane(super::layout::Lane::Icmp)
        } else {
            layout.y_port(r.dport)
        };
        let c = theme.color(cat);
        assert_eq!(pixel(&img, x, y), [c.0, c.1, c.2], "{cat:?} at ({x},{y})");
        // Nothing of that colour far away from it on the same row.
        assert_ne!(pixel(&img, x + 40, y), [c.0, c.1, c.2]);
    }
}

#[test]
fn dark_theme_puts_each_colour_at_its_time_and_port() {
    check_theme(Theme::Dark);
    let d = Theme::Dark;
    assert_eq!(
        d.color(Category::V4Tcp),
        plotters::style::RGBColor(0x00, 0xff, 0x00)
    );
    assert_eq!(
        d.color(Category::V4Udp),
        plotters::style::RGBColor(0xb0, 0xb0, 0xff)
    );
    assert_eq!(
        d.color(Category::V6Tcp),
        plotters::style::RGBColor(0xff, 0x00, 0x00)
    );
    assert_eq!(
        d.color(Category::V6Udp),
        plotters::style::RGBColor(0xff, 0xff, 0xff)
    );
}

#[test]
fn light_theme_puts_each_colour_at_its_time_and_port() {
    check_theme(Theme::Light);
}

/// Every category has its own colour in both themes, and the one of the
/// other protocols with ports is far from every other and from the
/// background (150 apart, summed over R, G and B).
#[test]
fn categories_have_distinct_colours_and_port_protocols_one_of_their_own() {
    let rgb = |c: plotters::style::RGBColor| [c.0 as i32, c.1 as i32, c.2 as i32];
    let apart = |a: [i32; 3], b: [i32; 3]| (0..3).map(|k| (a[k] - b[k]).abs()).sum::<i32>();
    for theme in [Theme::Dark, Theme::Light] {
        let ours = rgb(theme.color(Category::PortOther));
        assert!(apart(ours, rgb(theme.background())) >= 150, "{theme:?}");
        for (i, a) in Category::ALL.iter().enumerate() {
            for b in &Category::ALL[i + 1..] {
                let d = apart(rgb(theme.color(*a)), rgb(theme.color(*b)));
                assert!(d > 0, "{theme:?}: {a:?} and {b:?} share a colour");
                if *a == Category::PortOther || *b == Category::PortOther {
                    assert!(d >= 150, "{theme:?}: {a:?} and {b:?} {d} apart");
                }
            }
        }
    }
    for (i, c) in Category::ALL.iter().enumerate() {
        assert_eq!(c.index(), i);
    }
    for (family, proto) in [(4, 132), (6, 132), (4, 136), (6, 33)] {
        assert_eq!(Category::from_parts(family, proto), Category::PortOther);
    }
    assert_eq!(Category::from_parts(4, 47), Category::Other);
    assert_eq!(Category::PortOther.label(), "SCTP/UDP-Lite/DCCP");
}

#[test]
fn a_vertical_scan_is_a_vertical_line() {
    let layout = Layout::new(1600, 900, T0, T0 + HOUR);
    let mut d = Density::new(layout.clone());
    let ts = T0 + HOUR / 2;
    for port in 1..=1000u16 {
        d.add(&rec(ts + port as i64 * 1_000_000, 4, 6, port)); // 1 s for 1000 ports
    }
    let path = out("vertical.png");
    render(&d, &spec(Theme::Dark), &path).unwrap();
    let img = image::open(&path).unwrap().to_rgb8();
    let x = layout.x(ts).unwrap();
    let green = |y| pixel(&img, x, y)[1] > 100 && pixel(&img, x, y)[0] < 50;
    for port in [1u16, 10, 100, 1000] {
        assert!(green(layout.y_port(port)), "port {port} lit");
    }
    assert!(
        !green(layout.y_port(5000)),
        "nothing above the scanned range"
    );
}

#[test]
fn empty_range_renders_with_a_note() {
    let layout = Layout::new(800, 500, T0, T0 + HOUR);
    let d = Density::new(layout);
    let path = out("empty.png");
    let r = render(&d, &spec(Theme::Dark), &path).unwrap();
    assert_eq!(
        r,
        super::Rendered {
            events: 0,
            pixels: 0
        }
    );
    let img = image::open(&path).unwrap().to_rgb8();
    assert_eq!(img.dimensions(), (800, 500));
    let svg = out("empty.svg");
    render(
        &Density::new(Layout::new(800, 500, T0, T0 + HOUR)),
        &spec(Theme::Light),
        &svg,
    )
    .unwrap();
    assert!(std::fs::read_to_string(&svg)
        .unwrap()
        .contains("no events in this range"));
}

#[test]
fn svg_is_well_formed_and_marks_alerts() {
    let layout = Layout::new(1200, 700, T0, T0 + HOUR);
    let mut d = Density::new(layout);
    for (r, _) in known() {
        d.add(&r);
    }
    let mut s = spec(Theme::Dark);
    s.marks.push(Mark {
        from_ns: T0 + HOUR / 4,
        to_ns: T0 + HOUR / 3,
        label: "port_scan 198.18.0.2".into(),
    });
    let path = out("known.svg");
    render(&d, &s, &path).unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    let doc = roxmltree::Document::parse(&text).expect("well-formed SVG");
    assert_eq!(doc.root_element().tag_name().name(), "svg");
    assert!(text.contains("port_scan 198.18.0.2"));
    assert!(
        text.contains("#00FF00") || text.contains("#00ff00"),
        "IPv4/TCP dot present"
    );
    assert!(text.contains("IPv4/TCP 1"), "legend with counts");
}

#[test]
fn unknown_extension_is_an_error() {
    let d = Density::new(Layout::new(800, 500, T0, T0 + HOUR));
    let e = render(&d, &spec(Theme::Dark), &out("x.gif")).unwrap_err();
    assert!(e.to_string().contains(".png or .svg"));
}

#[test]
fn a_million_events_render() {
    let layout = Layout::new(1600, 900, T0, T0 + 24 * HOUR);
    let mut d = Density::new(layout);
    let started = std::time::Instant::now();
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for i in 0..1_000_000i64 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let family = if x & 1 == 0 { 4 } else { 6 };
        let proto = if x & 2 == 0 { 6 } else { 17 };
        d.add(&rec(
            T0 + i * 86_400_000,
            family,
            proto,
            (x >> 16) as u16 | 1,
        ));
    }
    let path = out("million.png");
    let r = render(&d, &spec(Theme::Dark), &path).unwrap();
    assert_eq!(r.events, 1_000_000);
    assert!(r.pixels > 100_000, "dense plot: {} pixels", r.pixels);
    eprintln!(
        "1M events binned and rendered in {:.2} s",
        started.elapsed().as_secs_f64()
    );
}

#[test]
fn one_mark_per_alert_episode() {
    let rows = vec![
        (
            1,
            2,
            "port_scan".to_string(),
            r#"{"id":1,"status":"started","sources":["198.18.0.2"]}"#.to_string(),
        ),
        (
            3,
            4,
            "flood".to_string(),
            r#"{"id":2,"status":"started","sources":["198.18.0.9"]}"#.to_string(),
        ),
        (
            1,
            9,
            "port_scan".to_string(),
            r#"{"id":1,"status":"ended","sources":["198.18.0.2"]}"#.to_string(),
        ),
    ];
    let marks = super::marks_from_alerts(rows);
    assert_eq!(marks.len(), 2);
    assert_eq!(
        (marks[0].from_ns, marks[0].to_ns),
        (1, 9),
        "the ended record's span"
    );
    assert_eq!(marks[0].label, "port_scan 198.18.0.2");
    assert_eq!(marks[1].label, "flood 198.18.0.9");
}

/// Occupied pixels per category: (category index, x, y).
fn occupied(d: &Density) -> Vec<(usize, u32, u32)> {
    let mut v = Vec::new();
    for (i, cells) in d.cells.iter().enumerate() {
        for (idx, &c) in cells.iter().enumerate() {
            if c > 0 {
                v.push((i, (idx % d.w) as u32, (idx / d.w) as u32));
            }
        }
    }
    v
}

#[test]
fn a_day_from_the_bins_looks_like_a_day_from_the_events() {
    let dir = out("tiles");
    let path = dir.with_extension("db");
    let _ = std::fs::remove_file(&path);
    let mut store = crate::store::Store::open(&path).unwrap();
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let recs: Vec<Record> = (0..30_000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let (fam, proto) =
                [(4, 6), (4, 17), (6, 6), (6, 17), (4, 1), (6, 58), (4, 47)][(x % 7) as usize];
            let port = (65535f64.powf(((x >> 8) % 1000) as f64 / 1000.0)) as u16;
            rec(
                T0 + ((x >> 24) % (24 * HOUR as u64)) as i64,
                fam,
                proto,
                port,
            )
        })
        .collect();
    store.insert(&recs).unwrap();
    // A day at several sizes, ragged at both ends.
    for (w, h) in [(1600, 800), (900, 500), (2800, 1100)] {
        let (from, to) = (T0 - 7_777_777_777, T0 + 24 * HOUR - 1_234_567_890);
        let f = crate::store::Filter::range(from, to);
        let mut binned = Density::new(Layout::new(w, h, from, to));
        assert!(binned.tiles_fit(), "{w}x{h}");
        let n = binned.fill(&store, &f).unwrap();
        let mut exact = Density::new(Layout::new(w, h, from, to));
        store.for_each_plot(&f, |r| exact.add(r)).unwrap();
        assert_eq!(n, exact.total());
        assert_eq!(binned.totals, exact.totals, "the same events per colour");
        // Every dot within a pixel of where the events put it, both ways.
        let (a, b) = (occupied(&binned), occupied(&exact));
        let near = |p: &(usize, u32, u32), set: &[(usize, u32, u32)]| {
            set.iter()
                .any(|q| q.0 == p.0 && q.1.abs_diff(p.1) <= 1 && q.2.abs_diff(p.2) <= 1)
        };
        assert!(
            a.iter().all(|p| near(p, &b)),
            "{w}x{h}: a binned dot with no event near"
        );
        assert!(
            b.iter().all(|p| near(p, &a)),
            "{w}x{h}: an event with no binned dot near"
        );
    }
    // An hour at 1600 px is 2.4 s a pixel, a day at 4000 px 22 s, a day
    // 1500 px tall more pixels than rows: the events, not the bins.
    for (w, h, span) in [
        (1600, 800, HOUR),
        (4000, 800, 24 * HOUR),
        (1600, 1500, 24 * HOUR),
    ] {
        assert!(!Density::new(Layout::new(w, h, T0, T0 + span)).tiles_fit());
    }
    let _ = std::fs::remove_file(&path);
}

/// An aggregate is drawn with its count: the density of a flood is the
/// flood's, not one dot per second.
#[test]
fn aggregates_weigh_their_count_in_the_plot() {
    let mut r = rec(0, 4, 6, 80);
    r.pkt_flags = fireplot_common::event::PKT_AGGREGATE;
    r.count = 40_000;
    let layout = Layout::new(800, 400, 0, 60_000_000_000);
    let mut d = Density::new(layout);
    d.add(&r);
    d.add(&rec(1_000_000_000, 4, 6, 80));
    assert_eq!(d.total(), 40_001);
}

#[test]
fn colour_by_country_paints_each_source_in_its_groups_colour() {
    let layout = Layout::new(1600, 900, T0, T0 + HOUR);
    let mut d = Density::new(layout.clone());
    let nl: std::net::IpAddr = "198.18.0.2".parse().unwrap();
    let de: std::net::IpAddr = "198.18.0.3".parse().unwrap();
    let of = [(nl, "NL".to_string()), (de, "DE".to_string())]
        .into_iter()
        .collect();
    d.color_by_groups(super::Groups::new(of));
    // NL: 3 probes at one pixel, DE: 1 elsewhere, an unknown source: 1.
    let mut at = |src: &str, ts: i64, port: u16| {
        let mut r = rec(ts, 4, 6, port);
        r.src = Some(src.parse().unwrap());
        d.add(&r);
        (layout.x(ts).unwrap(), layout.y_port(port))
    };
    let p_nl = at("198.18.0.2", T0 + HOUR / 4, 443);
    at("198.18.0.2", T0 + HOUR / 4, 443);
    at("198.18.0.2", T0 + HOUR / 4, 443);
    let p_de = at("198.18.0.3", T0 + HOUR / 2, 23);
    let p_unknown = at("192.0.2.1", T0 + 3 * HOUR / 4, 7547);
    let legend: Vec<String> = d.legend(Theme::Dark).into_iter().map(|l| l.1).collect();
    assert_eq!(legend, ["NL 3", "DE 1", "unknown 1"]);
    assert_eq!(d.total(), 5, "the title still counts every probe");
    let path = out("groups.png");
    render(&d, &spec(Theme::Dark), &path).unwrap();
    let img = image::open(&path).unwrap().to_rgb8();
    let colours: Vec<[u8; 3]> = d
        .legend(Theme::Dark)
        .into_iter()
        .map(|(c, _)| [c.0, c.1, c.2])
        .collect();
    // Each at its own busiest pixel: full intensity.
    assert_eq!(pixel(&img, p_nl.0, p_nl.1), colours[0]);
    assert_eq!(pixel(&img, p_de.0, p_de.1), colours[1]);
    assert_eq!(pixel(&img, p_unknown.0, p_unknown.1), colours[2]);
    assert_ne!(colours[0], colours[1]);
    // Not the protocol palette any more.
    assert_ne!(colours[0], [0, 255, 0]);
}
