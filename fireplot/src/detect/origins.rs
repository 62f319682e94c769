//! Alerts say who their sources are (with `--geoip`, `--asn`, `--tag`):
//! the listed sources' country, network and tags; for episodes of many
//! sources, the networks and countries of all of them, in numbers and in
//! the summary ("1,104 sources from 63 networks, 41 % AS4134 Chinanet");
//! and per-source alerts of sources with an ignored tag are not raised.

use std::{collections::HashMap, net::IpAddr};

use super::{
    alert::{Alert, Share, SourceOrigin},
    episode::Episode,
    words::thousands as n,
};
use crate::enrich::Enricher;

/// A listed source (an address, or an aggregate's "net/len").
fn parse_src(s: &str) -> Option<IpAddr> {
    s.split('/').next()?.parse().ok()
}

/// The busiest `k` entries of `counts`, most sources first.
fn top(counts: HashMap<String, (Option<String>, u64)>, k: usize) -> (usize, Vec<Share>) {
    let distinct = counts.len();
    let mut v: Vec<Share> = counts
        .into_iter()
        .map(|(name, (org, sources))| Share { name, org, sources })
        .collect();
    v.sort_by(|a, b| b.sources.cmp(&a.sources).then(a.name.cmp(&b.name)));
    v.truncate(k);
    (distinct, v)
}

/// The alert with its origins, or None if it is a per-source alert of a
/// source that has one of `ignore` tags.
pub(super) fn decorate(
    mut a: Alert,
    ep: &Episode,
    e: &Enricher,
    ignore: &[String],
) -> Option<Alert> {
    let listed: Vec<SourceOrigin> = a
        .sources
        .iter()
        .filter_map(|s| {
            let o = e.lookup(parse_src(s)?);
            (!o.is_empty()).then(|| SourceOrigin {
                src: s.clone(),
                origin: (*o).clone(),
            })
        })
        .collect();
    if ep.kind.0.one_source && !ignore.is_empty() && a.sources.len() == 1 {
        let tagged = listed
            .iter()
            .any(|s| s.origin.tags.iter().any(|t| ignore.contains(t)));
        if tagged {
            return None;
        }
    }
    if !listed.is_empty() {
        a.origins = Some(listed);
    }
    if ep.kind.0.many_sources {
        let mut asns: HashMap<String, (Option<String>, u64)> = HashMap::new();
        let mut countries: HashMap<String, (Option<String>, u64)> = HashMap::new();
        let mut total = 0u64;
        for src in ep.sources.iter() {
            total += 1;
            let o = e.lookup(src);
            if let Some(asn) = o.asn {
                asns.entry(format!("AS{asn}"))
                    .or_insert((o.as_org.clone(), 0))
                    .1 += 1;
            }
            if let Some(c) = &o.country {
                countries.entry(c.clone()).or_insert((None, 0)).1 += 1;
            }
        }
        let (n_asns, top_asns) = top(asns, 5);
        let (n_countries, top_countries) = top(countries, 5);
        let pct = |x: u64| (x as f64 * 100.0 / total.max(1) as f64).round();
        let mut parts = Vec::new();
        if let Some(t) = top_asns.first() {
            let org = t
                .org
                .as_deref()
                .map(|o| format!(" {o}"))
                .unwrap_or_default();
            parts.push(format!(
                "{} network{}, {} % {}{org}",
                n(n_asns as u64),
                if n_asns == 1 { "" } else { "s" },
                pct(t.sources),
                t.name
            ));
        }
        if let Some(t) = top_countries.first() {
            parts.push(format!(
                "{} countr{}, {} % {}",
                n(n_countries as u64),
                if n_countries == 1 { "y" } else { "ies" },
                pct(t.sources),
                t.name
            ));
        }
        if !parts.is_empty() {
            let of = if ep.sources.over > 0 {
                format!(" (of the first {})", n(total))
            } else {
                String::new()
            };
            a.summary = format!(
                "{} {} sources from {}{of}.",
                a.summary.trim_end_matches('.').to_string() + ".",
                n(total),
                parts.join("; ")
            );
            a.asns = (!top_asns.is_empty()).then_some(top_asns);
            a.countries = (!top_countries.is_empty()).then_some(top_countries);
        }
    }
    Some(a)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listed_sources_parse_with_or_without_a_prefix() {
        assert_eq!(
            parse_src("198.51.100.7"),
            Some("198.51.100.7".parse().unwrap())
        );
        assert_eq!(
            parse_src("198.19.7.0/24"),
            Some("198.19.7.0".parse().unwrap())
        );
        assert_eq!(parse_src("junk"), None);
    }
}
