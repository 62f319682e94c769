//! Enricher tests: CSV and list files, reload on change, and the public
//! data sets `cargo xtask setup` fetches (DB-IP country MMDB, the
//! ip-location-db ASN CSVs) when they are there.

use std::{
    net::IpAddr,
    path::{Path, PathBuf},
    sync::atomic::{AtomicU32, Ordering},
};

use super::*;

fn dir(tag: &str) -> PathBuf {
    static N: AtomicU32 = AtomicU32::new(0);
    let d = std::env::temp_dir().join(format!(
        "fireplot-enrich-{tag}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn args(geoip: &[&Path], asn: &[&Path], tags: &[(&str, &Path)]) -> Options {
    Options {
        geoip: geoip.iter().map(|p| p.to_path_buf()).collect(),
        asn: asn.iter().map(|p| p.to_path_buf()).collect(),
        tags: tags
            .iter()
            .map(|(n, p)| TagSpec {
                name: n.to_string(),
                path: p.to_path_buf(),
            })
            .collect(),
    }
}

#[test]
fn csv_tables_and_lists_answer_for_both_families() {
    let d = dir("csv");
    let geo = d.join("country.csv");
    std::fs::write(
        &geo,
        "198.51.100.0,198.51.100.255,NL\n2001:db8::,2001:db8:ffff:ffff:ffff:ffff:ffff:ffff,de\n203.0.113.0,203.0.113.255,ZZ\n",
    )
    .unwrap();
    let asn = d.join("asn.csv");
    std::fs::write(
        &asn,
        "198.51.100.0,198.51.100.255,64496,\"Documentation, Inc.\"\n198.51.100.128,198.51.100.191,64497,Nested Net\n2001:db8::,2001:db8:ffff:ffff:ffff:ffff:ffff:ffff,AS64498,IPv6 Doc\n",
    )
    .unwrap();
    let scanners = d.join("scanners.txt");
    std::fs::write(
        &scanners,
        "# known research scanners\n198.51.100.7\n2001:db8::/64 ; a /64\n",
    )
    .unwrap();
    let e = Enricher::open(&args(&[&geo], &[&asn], &[("research_scanner", &scanners)])).unwrap();
    let o = e.lookup(ip("198.51.100.7"));
    assert_eq!(o.country.as_deref(), Some("NL"));
    assert_eq!(
        (o.asn, o.as_org.as_deref()),
        (Some(64496), Some("Documentation, Inc."))
    );
    assert_eq!(o.tags, vec!["research_scanner".to_string()]);
    assert_eq!(o.as_label().unwrap(), "AS64496 Documentation, Inc.");
    // The nested range names its own holder.
    assert_eq!(e.lookup(ip("198.51.100.130")).asn, Some(64497));
    let o = e.lookup(ip("2001:db8::1"));
    assert_eq!((o.country.as_deref(), o.asn), (Some("DE"), Some(64498)));
    assert_eq!(o.tags.len(), 1);
    assert!(e.lookup(ip("2001:db8:0:1::1")).tags.is_empty());
    // "ZZ" is no country; an address in no file is empty.
    assert_eq!(e.lookup(ip("203.0.113.5")).country, None);
    assert!(e.lookup(ip("192.0.2.1")).is_empty());
    assert_eq!(e.tag_names(), vec!["research_scanner".to_string()]);
    let stats = e.stats();
    assert_eq!(stats.len(), 3);
    assert!(stats.iter().all(|s| s.format != "mmdb" && s.bad_lines == 0));
}

#[test]
fn files_are_reread_when_they_change_and_a_broken_one_keeps_the_old() {
    let d = dir("reload");
    let list = d.join("block.txt");
    std::fs::write(&list, "198.51.100.1\n").unwrap();
    let e = Enricher::open(&args(&[], &[], &[("blocklist", &list)])).unwrap();
    assert_eq!(e.lookup(ip("198.51.100.1")).tags, vec!["blocklist"]);
    assert!(e.lookup(ip("198.51.100.2")).tags.is_empty());
    assert_eq!(e.reload_changed(true), 0, "nothing changed");
    // A new version (another length, so the change shows even within the
    // file system's timestamp granularity).
    std::fs::write(&list, "198.51.100.2\n198.51.100.3\n").unwrap();
    assert_eq!(e.reload_changed(true), 1);
    assert!(
        e.lookup(ip("198.51.100.1")).tags.is_empty(),
        "the cache was cleared"
    );
    assert_eq!(e.lookup(ip("198.51.100.2")).tags, vec!["blocklist"]);
    // A version with no entry at all is refused; the last good one stays.
    std::fs::write(&list, "garbage\nmore garbage, longer\n").unwrap();
    assert_eq!(e.reload_changed(true), 0);
    assert_eq!(e.lookup(ip("198.51.100.3")).tags, vec!["blocklist"]);
    // A missing file too.
    std::fs::remove_file(&list).unwrap();
    assert_eq!(e.reload_changed(true), 0);
    assert_eq!(e.lookup(ip("198.51.100.3")).tags, vec!["blocklist"]);
}

#[test]
fn unreadable_or_empty_files_are_clear_errors_at_start() {
    let d = dir("bad");
    let missing = d.join("nope.mmdb");
    let e = Enricher::open(&args(&[&missing], &[], &[])).err().unwrap();
    // As the user reads it: the error and its causes.
    let msg = crate::error_chain(&e);
    assert!(
        msg.contains("--geoip") && msg.contains("nope.mmdb"),
        "{msg}"
    );
    let empty = d.join("empty.txt");
    std::fs::write(&empty, "# nothing\nnot an address\n").unwrap();
    let msg = crate::error_chain(
        &Enricher::open(&args(&[], &[], &[("x", &empty)]))
            .err()
            .unwrap(),
    );
    assert!(
        msg.contains("no entries") && msg.contains("1 line"),
        "{msg}"
    );
    assert!("bad name=/x".parse::<TagSpec>().is_err());
    assert!("noequals".parse::<TagSpec>().is_err());
    assert!("ok=".parse::<TagSpec>().is_err());
    assert_eq!(
        "research_scanner=/etc/s.txt"
            .parse::<TagSpec>()
            .unwrap()
            .name,
        "research_scanner"
    );
}

/// The fetched public data (`cargo xtask setup` puts it in
/// target/enrich; `cargo xtask test` passes FIREPLOT_ENRICH_DATA). Under
/// CI its absence is a failure; elsewhere the test says it skipped.
fn public_data() -> Option<PathBuf> {
    match std::env::var_os("FIREPLOT_ENRICH_DATA").map(PathBuf::from) {
        Some(d) if d.join("dbip-country.mmdb").exists() => Some(d),
        _ if std::env::var_os("CI").is_some() => {
            panic!("FIREPLOT_ENRICH_DATA with dbip-country.mmdb is required under CI (cargo xtask setup)")
        }
        _ => {
            eprintln!("SKIP: no FIREPLOT_ENRICH_DATA (run through cargo xtask test)");
            None
        }
    }
}

#[test]
fn public_country_mmdb_and_asn_tables() {
    let Some(d) = public_data() else { return };
    let e = Enricher::open(&args(
        &[&d.join("dbip-country.mmdb")],
        &[&d.join("asn-ipv4.csv"), &d.join("asn-ipv6.csv")],
        &[],
    ))
    .unwrap();
    // Well-known anycast resolvers: their country and network.
    let one = e.lookup(ip("1.1.1.1"));
    assert_eq!(one.asn, Some(13335), "{one:?}");
    assert!(one.country.is_some(), "{one:?}");
    let g = e.lookup(ip("8.8.8.8"));
    assert_eq!(g.asn, Some(15169), "{g:?}");
    assert_eq!(g.country.as_deref(), Some("US"), "{g:?}");
    let g6 = e.lookup(ip("2001:4860:4860::8888"));
    assert_eq!(g6.asn, Some(15169), "{g6:?}");
    assert!(g6.country.is_some(), "{g6:?}");
    // Private, documentation, benchmarking and loopback ranges: nothing.
    for a in [
        "10.1.2.3",
        "192.168.1.1",
        "198.51.100.7",
        "203.0.113.9",
        "198.18.0.2",
        "127.0.0.1",
        "2001:db8::1",
        "fe80::1",
        "fd00::1",
    ] {
        let o = e.lookup(ip(a));
        assert_eq!((o.country.as_deref(), o.asn), (None, None), "{a}: {o:?}");
    }
    let stats = e.stats();
    assert_eq!(stats[0].format, "mmdb");
    assert!(stats[1].ranges > 100_000, "{:?}", stats[1]);
}
