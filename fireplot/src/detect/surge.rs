//! port_surge: the number of distinct sources probing one (protocol, port)
//! rising far above that port's own baseline — the seed's TCP/7547 and
//! TCP/37777 waves — while no single source is a scanner.
//!
//! Distinct sources are counted per bucket of `surge_bucket_s`; the
//! baseline is the mean over all earlier buckets since the engine started
//! (quiet buckets count as zero). A surge needs `surge_warmup_buckets` of
//! history, `surge_min_sources` sources in the bucket, `surge_factor` times
//! the baseline, and at most `surge_max_probes_per_source` probes per source
//! on average. It ends with the first bucket below `surge_min_sources`.

use rustc_hash::{FxHashMap, FxHashSet};

use super::{
    episode::{Episode, Key, Kind},
    probe::{Probe, Role},
    Engine, SEC,
};

const ENTRY_CAP: usize = 1 << 19;

#[derive(Default)]
struct Bucket {
    sources: FxHashSet<u128>,
    probes: u64,
    /// First probe of the bucket.
    first_ns: i64,
}

/// Surge state.
#[derive(Default)]
pub struct Surge {
    bucket: Option<i64>,
    first_bucket: i64,
    cur: FxHashMap<(u8, u16), Bucket>,
    /// Sum of distinct sources over finished buckets, per port.
    sums: FxHashMap<(u8, u16), f64>,
    entries: usize,
    /// Surge episodes whose port went quiet in the last finished bucket.
    quiet: Vec<u64>,
}

impl Surge {
    pub fn bytes(&self) -> usize {
        self.entries * 17 + self.cur.capacity() * 60 + self.sums.capacity() * 20
    }

    fn baseline(&self, k: (u8, u16)) -> (f64, i64) {
        let hist = self.bucket.map(|b| b - self.first_bucket).unwrap_or(0);
        (
            self.sums.get(&k).copied().unwrap_or(0.0) / hist.max(1) as f64,
            hist,
        )
    }
}

/// True for a surge episode whose port went quiet.
pub fn finished(e: &Engine, ep: &Episode) -> bool {
    ep.kind == Kind::PortSurge && e.surge.quiet.contains(&ep.id)
}

fn roll(e: &mut Engine, to: i64) {
    let min = e.cfg.surge_min_sources as usize;
    let active: Vec<(u64, (u8, u16))> = e
        .episodes
        .values()
        .filter_map(|ep| match ep.key {
            Key::Port(Kind::PortSurge, proto, port) => Some((ep.id, (proto, port))),
            _ => None,
        })
        .collect();
    e.surge.quiet = active
        .into_iter()
        .filter(|(_, k)| e.surge.cur.get(k).is_none_or(|b| b.sources.len() < min))
        .map(|(id, _)| id)
        .collect();
    let mut cur = std::mem::take(&mut e.surge.cur);
    for (k, b) in cur.drain() {
        *e.surge.sums.entry(k).or_default() += b.sources.len() as f64;
    }
    e.surge.entries = 0;
    e.surge.bucket = Some(to);
}

pub fn observe(e: &mut Engine, p: &Probe) {
    if p.role != Role::Probe || !matches!(p.proto, 6 | 17) {
        return;
    }
    let b = p.ts_ns.div_euclid(e.cfg.surge_bucket_s as i64 * SEC);
    match e.surge.bucket {
        None => {
            e.surge.bucket = Some(b);
            e.surge.first_bucket = b;
        }
        Some(c) if b > c => roll(e, b),
        _ => {}
    }
    let k = (p.proto, p.port);
    let full = e.surge.entries >= ENTRY_CAP;
    let bucket = e.surge.cur.entry(k).or_insert_with(|| Bucket {
        first_ns: p.ts_ns,
        ..Bucket::default()
    });
    bucket.probes += 1;
    let new = !full && bucket.sources.insert(p.src);
    if !new {
        return;
    }
    e.surge.entries += 1;
    let n = bucket.sources.len();
    let probes = bucket.probes;
    let cfg = &e.cfg;
    if n < cfg.surge_min_sources as usize {
        return;
    }
    let (base, hist) = e.surge.baseline(k);
    if hist < cfg.surge_warmup_buckets as i64
        || (n as f64) < cfg.surge_factor * base
        || probes as f64 / n as f64 > cfg.surge_max_probes_per_source
    {
        return;
    }
    let key = Key::Port(Kind::PortSurge, p.proto, p.port);
    if e.active(&key).is_some() {
        return;
    }
    let mut sources: Vec<u128> = e.surge.cur[&k].sources.iter().copied().collect();
    sources.sort_unstable();
    let bucket_start = e.surge.cur[&k].first_ns;
    e.start(Kind::PortSurge, key, p, |ep| {
        for s in sources {
            ep.sources.insert(s);
        }
        ep.targets.insert(p.dst);
        ep.add_port(p.port);
        ep.probes = probes;
        ep.first_ns = bucket_start;
        ep.baseline = Some(base);
    });
}
