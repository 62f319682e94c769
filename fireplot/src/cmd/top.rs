//! `fireplot top`: the most probed ports, the busiest sources and the
//! protocol mix over a window.

use std::collections::HashMap;

use anyhow::Result;
use clap::Args;
use serde_json::json;

use super::source::SourceArgs;
use crate::{detect::vector::Vector, record::line::Proto, record::Record};

/// Options of `fireplot top`.
#[derive(Args, Debug, Clone)]
pub struct TopArgs {
    #[command(flatten)]
    pub source: SourceArgs,

    /// Rows per table.
    #[arg(long, short = 'n', default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub limit: u64,

    /// One JSON object instead of tables.
    #[arg(long)]
    pub json: bool,

    /// Also count by the sources' country, network or tag, or by attack
    /// vector (SYN, UDP reflection from DNS, fragments...: the packets,
    /// bytes, sources and busiest destination of each); repeatable.
    /// Countries, networks and tags come from the --geoip, --asn and --tag
    /// files when given, else from what the --db stored of its sources
    /// (see `fireplot enrich`).
    #[arg(long, value_enum, value_name = "WHAT")]
    pub by: Vec<By>,

    #[command(flatten)]
    pub enrich: super::args::EnrichArgs,
}

/// What `--by` groups sources by.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum By {
    Country,
    Asn,
    Tag,
    Vector,
}

impl By {
    fn name(self) -> &'static str {
        match self {
            By::Country => "country",
            By::Asn => "asn",
            By::Tag => "tag",
            By::Vector => "vector",
        }
    }
}

/// Packets and distinct sources of one group.
#[derive(Default, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Group {
    packets: u64,
    sources: u64,
}

/// Groups `by_src` (packets per source address) by country, network or
/// tag; sources with no answer go to "unknown" (untagged ones to no tag).
fn group(
    by: By,
    by_src: &HashMap<std::net::IpAddr, u64>,
    lookup: &dyn Fn(std::net::IpAddr) -> Option<crate::enrich::Origin>,
) -> Vec<(String, Group)> {
    let mut g: HashMap<String, Group> = HashMap::new();
    for (a, n) in by_src {
        let o = lookup(*a).unwrap_or_default();
        let keys: Vec<String> = match by {
            By::Country => vec![o.country.clone().unwrap_or_else(|| "unknown".into())],
            By::Asn => vec![o.as_label().unwrap_or_else(|| "unknown".into())],
            By::Tag => o.tags.clone(),
            By::Vector => Vec::new(),
        };
        for k in keys {
            let e = g.entry(k).or_default();
            e.packets += n;
            e.sources += 1;
        }
    }
    let mut v: Vec<(String, Group)> = g.into_iter().collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    v
}

/// One vector's packets, bytes, sources and destinations.
#[derive(Default)]
struct VectorCount {
    packets: u64,
    bytes: u64,
    sources: std::collections::HashSet<std::net::IpAddr>,
    destinations: HashMap<std::net::IpAddr, u64>,
}

impl VectorCount {
    fn add(&mut self, r: &Record) {
        let n = u64::from(r.count.max(1));
        self.packets += n;
        self.bytes += u64::from(r.len) * n;
        if let Some(s) = r.src {
            self.sources.insert(s);
        }
        if let Some(d) = r.dst {
            *self.destinations.entry(d).or_default() += n;
        }
    }

    /// The destination of most packets ("-" when none is known).
    fn busiest(&self) -> (String, u64) {
        self.destinations
            .iter()
            .max_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(a.0)))
            .map_or(("-".into(), 0), |(d, n)| (d.to_string(), *n))
    }
}

fn top<K: Clone + Ord>(m: &HashMap<K, u64>, n: usize) -> Vec<(K, u64)> {
    let mut v: Vec<(K, u64)> = m.iter().map(|(k, c)| (k.clone(), *c)).collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    v.truncate(n);
    v
}

/// Each `--by` has what it needs: its lookup file, or a database whose
/// sources were enriched.
fn check_by(args: &TopArgs, stored: bool) -> Result<()> {
    for by in &args.by {
        let given = match by {
            By::Country => !args.enrich.geoip.is_empty(),
            By::Asn => !args.enrich.asn.is_empty(),
            By::Tag => !args.enrich.tags.is_empty(),
            By::Vector => true,
        };
        if !given && !stored {
            anyhow::bail!(
                "--by {} needs {} (or a --db whose sources were enriched when stored or by `fireplot enrich`)",
                by.name(),
                match by {
                    By::Country => "--geoip FILE",
                    By::Asn => "--asn FILE",
                    By::Tag => "at least one --tag NAME=FILE",
                    By::Vector => "nothing",
                }
            );
        }
    }
    Ok(())
}

pub fn run_top(args: &TopArgs) -> Result<()> {
    let enrich = args.enrich.open()?;
    let source = args.source.open()?;
    // Without files, a database answers with who its sources were when
    // stored (or last `fireplot enrich`ed).
    let stored = enrich.is_none() && source.store().is_some();
    check_by(args, stored)?;
    let lookup = |a: std::net::IpAddr| -> Option<crate::enrich::Origin> {
        match (&enrich, source.store()) {
            (Some(e), _) => Some((*e.lookup(a)).clone()),
            (None, Some(st)) => st.origin(a).ok().flatten(),
            (None, None) => None,
        }
    };
    let mut by_src: HashMap<std::net::IpAddr, u64> = HashMap::new();
    let mut ports: HashMap<(u8, u16), u64> = HashMap::new();
    let mut sources: HashMap<String, u64> = HashMap::new();
    let mut protos: HashMap<(u8, u8), u64> = HashMap::new();
    let mut vectors: HashMap<Vector, VectorCount> = HashMap::new();
    let by_vector = args.by.contains(&By::Vector);
    let mut total = 0u64;
    let mut aggregated = 0u64;
    source.for_each(|r: &Record| {
        let n = u64::from(r.count);
        total += n;
        if r.is_aggregate() {
            aggregated += n;
        }
        if r.has_ports() {
            *ports.entry((r.proto, r.dport)).or_default() += n;
        }
        *sources.entry(r.src_label()).or_default() += n;
        if let Some(a) = r.src {
            *by_src.entry(a).or_default() += n;
        }
        *protos.entry((r.family, r.proto)).or_default() += n;
        if by_vector {
            vectors.entry(Vector::of(r)).or_default().add(r);
        }
    })?;
    let tp = top(&ports, args.limit as usize);
    let ts = top(&sources, args.limit as usize);
    let tpr = top(&protos, usize::MAX);
    let from = crate::record::line::rfc3339_ns(source.filter.from_ns as i128);
    let to = crate::record::line::rfc3339_ns(source.filter.to_ns as i128);
    let groups: Vec<(By, Vec<(String, Group)>)> = args
        .by
        .iter()
        .filter(|b| **b != By::Vector)
        .map(|b| (*b, group(*b, &by_src, &lookup)))
        .collect();
    let mut vectors: Vec<(Vector, VectorCount)> = vectors.into_iter().collect();
    vectors.sort_by(|a, b| b.1.packets.cmp(&a.1.packets).then(a.0.cmp(&b.0)));
    vectors.truncate(args.limit as usize);
    // A source's country and network beside it in the list.
    let origin_of = |label: &str| -> Option<crate::enrich::Origin> {
        if label.contains('/') {
            return None;
        }
        lookup(label.parse().ok()?).filter(|o| !o.is_empty())
    };
    if args.json {
        let mut v = json!({
            "from": from, "to": to, "events": total, "aggregated": aggregated, "distinct_sources": sources.len(),
            "ports": tp.iter().map(|((p, port), c)| json!({"proto": Proto::label(*p), "port": port, "events": c})).collect::<Vec<_>>(),
            "sources": ts.iter().map(|(s, c)| {
                let mut o = json!({"src": s, "events": c});
                if let Some(origin) = origin_of(s) {
                    if let (Some(m), Ok(serde_json::Value::Object(extra))) = (o.as_object_mut(), serde_json::to_value(origin)) {
                        m.extend(extra);
                    }
                }
                o
            }).collect::<Vec<_>>(),
            "protocols": tpr.iter().map(|((f, p), c)| json!({"family": f, "proto": Proto::label(*p), "events": c})).collect::<Vec<_>>(),
        });
        for (by, rows) in &groups {
            v[format!("by_{}", by.name())] = rows
                .iter()
                .take(args.limit as usize)
                .map(|(k, g)| json!({by.name(): k, "events": g.packets, "sources": g.sources}))
                .collect::<Vec<_>>()
                .into();
        }
        if by_vector {
            v["by_vector"] = vectors
                .iter()
                .map(|(k, c)| {
                    let (dst, dst_packets) = c.busiest();
                    json!({"vector": k.name(), "title": k.title(), "packets": c.packets, "bytes": c.bytes,
                        "sources": c.sources.len(), "destination": dst, "destination_packets": dst_packets})
                })
                .collect::<Vec<_>>()
                .into();
        }
        println!("{v}");
        return Ok(());
    }
    if aggregated > 0 {
        // Counts are packets: one per event, `count` per aggregate.
        println!(
            "{total} packets ({aggregated} of them counted in kernel aggregates of a flood) from {} sources and source /24s or /48s, {from} to {to}",
            sources.len()
        );
    } else {
        println!(
            "{total} events from {} sources, {from} to {to}",
            sources.len()
        );
    }
    println!("\n{:<18} {:>10}", "port", "events");
    for ((p, port), c) in &tp {
        println!("{:<18} {c:>10}", format!("{}/{port}", Proto::label(*p)));
    }
    println!("\n{:<40} {:>10}", "source", "events");
    for (s, c) in &ts {
        match origin_of(s) {
            Some(o) => {
                let mut who: Vec<String> = o.country.iter().cloned().collect();
                who.extend(o.as_label());
                who.extend(o.tags.iter().map(|t| format!("[{t}]")));
                println!("{s:<40} {c:>10}  {}", who.join(" "));
            }
            None => println!("{s:<40} {c:>10}"),
        }
    }
    for (by, rows) in &groups {
        println!("\n{:<40} {:>10} {:>9}", by.name(), "events", "sources");
        for (k, g) in rows.iter().take(args.limit as usize) {
            println!("{k:<40} {:>10} {:>9}", g.packets, g.sources);
        }
    }
    if by_vector {
        print_vectors(&vectors);
    }
    println!("\n{:<18} {:>10}", "protocol", "events");
    for ((f, p), c) in &tpr {
        println!("{:<18} {c:>10}", format!("ipv{f}/{}", Proto::label(*p)));
    }
    Ok(())
}

/// The `--by vector` table.
fn print_vectors(vectors: &[(Vector, VectorCount)]) {
    println!(
        "\n{:<44} {:>10} {:>12} {:>8}  busiest destination",
        "vector", "packets", "bytes", "sources"
    );
    for (k, c) in vectors {
        let (dst, n) = c.busiest();
        println!(
            "{:<44} {:>10} {:>12} {:>8}  {dst} ({n})",
            k.title(),
            c.packets,
            c.bytes,
            c.sources.len()
        );
    }
}
