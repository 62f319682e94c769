//! `fireplot top`: the most probed ports, the busiest sources and the
//! protocol mix over a window.

use std::collections::HashMap;

use anyhow::Result;
use clap::Args;
use serde_json::json;

use super::source::SourceArgs;
use crate::{record::line::Proto, record::Record};

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
}

fn proto_name(p: u8) -> String {
    match Proto::from_number(p) {
        Proto::Name(n) => n,
        Proto::Number(n) => n.to_string(),
    }
}

fn top<K: Clone + Ord>(m: &HashMap<K, u64>, n: usize) -> Vec<(K, u64)> {
    let mut v: Vec<(K, u64)> = m.iter().map(|(k, c)| (k.clone(), *c)).collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    v.truncate(n);
    v
}

pub fn run_top(args: &TopArgs) -> Result<()> {
    let source = args.source.open()?;
    let mut ports: HashMap<(u8, u16), u64> = HashMap::new();
    let mut sources: HashMap<String, u64> = HashMap::new();
    let mut protos: HashMap<(u8, u8), u64> = HashMap::new();
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
        *protos.entry((r.family, r.proto)).or_default() += n;
    })?;
    let tp = top(&ports, args.limit as usize);
    let ts = top(&sources, args.limit as usize);
    let tpr = top(&protos, usize::MAX);
    let from = crate::record::line::rfc3339_ns(source.filter.from_ns as i128);
    let to = crate::record::line::rfc3339_ns(source.filter.to_ns as i128);
    if args.json {
        let v = json!({
            "from": from, "to": to, "events": total, "aggregated": aggregated, "distinct_sources": sources.len(),
            "ports": tp.iter().map(|((p, port), c)| json!({"proto": proto_name(*p), "port": port, "events": c})).collect::<Vec<_>>(),
            "sources": ts.iter().map(|(s, c)| json!({"src": s, "events": c})).collect::<Vec<_>>(),
            "protocols": tpr.iter().map(|((f, p), c)| json!({"family": f, "proto": proto_name(*p), "events": c})).collect::<Vec<_>>(),
        });
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
        println!("{:<18} {c:>10}", format!("{}/{port}", proto_name(*p)));
    }
    println!("\n{:<40} {:>10}", "source", "events");
    for (s, c) in &ts {
        println!("{s:<40} {c:>10}");
    }
    println!("\n{:<18} {:>10}", "protocol", "events");
    for ((f, p), c) in &tpr {
        println!("{:<18} {c:>10}", format!("ipv{f}/{}", proto_name(*p)));
    }
    Ok(())
}
