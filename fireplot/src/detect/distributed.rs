//! distributed_scan: several sources sharing the work on one target.
//!
//! Synchronized: two sources that probe the same (target, protocol, port)
//! at most `sync_max_lag_ms` apart, on `sync_ports` distinct ports, are in
//! lockstep — nmap's decoy scan (`-D`) or two scanners driven together (the
//! seed's "perfectly synchronized dual portscanning"). Pairs join into one
//! group per target, reported with their mean lag.
//!
//! Shared: within `distributed_window_s`, `distributed_ports` distinct ports
//! of one target probed by 2..=`distributed_max_sources` sources, none of
//! which is a port scanner alone.

use rustc_hash::FxHashMap;

use super::{
    config::DetectConfig,
    episode::{Key, Kind, PortSet},
    probe::{Probe, Role},
    DetectStats, Engine, SEC,
};

/// Slots of the last-prober table (direct-mapped; a collision only loses a
/// co-probe, which lockstep scans produce by the hundred).
const LAST_SLOTS: usize = 1 << 16;

#[derive(Clone, Copy, Default)]
struct LastProbe {
    tag: u64,
    src: u128,
    ts: i64,
}
const PAIR_CAP: usize = 1 << 16;
const SHARED_TARGETS: usize = 4096;
const SHARED_SOURCES: usize = 256;

#[derive(Default)]
struct Pair {
    ports: Vec<u16>,
    lag_sum_ns: f64,
    lag_sq_sum: f64,
    n: u64,
    last_ns: i64,
    /// Time of the leader's probe in the previous co-probe.
    prev_lead_ns: i64,
    ordered: u64,
    disordered: u64,
    /// Shown not to be in lockstep: no more bookkeeping.
    dead: bool,
}

impl Pair {
    fn mean(&self) -> f64 {
        self.lag_sum_ns / self.n.max(1) as f64
    }

    /// Lockstep means a steady lag: two scans that merely overlap in time
    /// (random port orders) co-probe with lags all over the window.
    ///
    /// And the same order: the follower probes ports in the order the
    /// leader did (for two random-order scans, half of the time).
    fn steady(&self, cfg: &DetectConfig) -> bool {
        let mean = self.mean();
        let var = (self.lag_sq_sum / self.n.max(1) as f64 - mean * mean).max(0.0);
        let same_order =
            self.ordered as f64 >= (self.ordered + self.disordered) as f64 * cfg.sync_same_order;
        same_order
            && var.sqrt() <= (cfg.sync_lag_spread * mean).max(cfg.sync_lag_spread_min_ms * 1e6)
    }
}

/// Lockstep detection state.
#[derive(Default)]
pub struct Sync {
    last: Vec<LastProbe>,
    pairs: FxHashMap<(u128, u128), Pair>,
    members: FxHashMap<u128, u64>,
    lags: FxHashMap<u64, (f64, u64)>,
}

impl Sync {
    pub fn is_member(&self, src: u128) -> bool {
        !self.members.is_empty() && self.members.contains_key(&src)
    }

    /// Does `src` co-probe with another source in a pair not yet decided?
    /// (Walks the pairs: asked once per source that reaches a dark-only
    /// threshold, not per probe.)
    pub fn in_open_pair(&self, src: u128) -> bool {
        self.pairs
            .iter()
            .any(|((a, b), p)| !p.dead && (*a == src || *b == src))
    }

    pub fn forget_group(&mut self, id: u64) {
        self.members.retain(|_, g| *g != id);
        self.lags.remove(&id);
    }

    pub fn prune(&mut self, now: i64, cfg: &DetectConfig, stats: &mut DetectStats) {
        let idle = cfg.episode_idle_s as i64 * SEC;
        self.pairs.retain(|_, p| now - p.last_ns <= idle);
        let _ = stats;
    }

    pub fn bytes(&self) -> usize {
        self.last.capacity() * 57
            + self.pairs.capacity() * 100
            + self.members.capacity() * 25
            + self.lags.capacity() * 25
    }
}

/// Shared-work detection state.
#[derive(Default)]
pub struct Shared {
    targets: FxHashMap<(u128, u8), Window>,
}

struct Window {
    start: i64,
    ports: PortSet,
    sources: FxHashMap<u128, u32>,
    probes: u64,
}

impl Shared {
    pub fn prune(&mut self, now: i64, cfg: &DetectConfig) {
        let w = cfg.distributed_window_s as i64 * SEC;
        self.targets.retain(|_, t| now - t.start <= w);
    }

    pub fn bytes(&self) -> usize {
        self.targets
            .values()
            .map(|w| 64 + w.ports.bytes() + w.sources.capacity() * 21)
            .sum::<usize>()
            + self.targets.capacity() * 17
    }
}

/// `busy`: the source is already reported on its own (a scanner alone),
/// so it cannot be one of several sharing the work.
pub fn observe(e: &mut Engine, p: &Probe, busy: bool) {
    if !matches!(p.proto, 6 | 17) {
        return;
    }
    lockstep(e, p);
    if p.role == Role::Probe && !busy {
        shared(e, p);
    }
}

/// The lockstep table's tag of a probe's (target, protocol, port).
fn tag(p: &Probe) -> u64 {
    let x = (p.dst as u64 ^ (p.dst >> 64) as u64).rotate_left(17)
        ^ ((p.proto as u64) << 16 | p.port as u64);
    x.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1
}

/// Asks the CPU for the probe's lockstep slot early: the table is larger
/// than the caches, and the miss then overlaps the source-table work that
/// comes first (the engine's hottest load without it).
#[inline]
pub fn prefetch(e: &Engine, p: &Probe) {
    if !matches!(p.proto, 6 | 17) || e.sync.last.is_empty() {
        return;
    }
    let slot = &e.sync.last[(tag(p) >> 40) as usize & (LAST_SLOTS - 1)];
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is a hint; it never faults and reads nothing.
    unsafe {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        _mm_prefetch(slot as *const LastProbe as *const i8, _MM_HINT_T0);
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = slot;
}

fn lockstep(e: &mut Engine, p: &Probe) {
    let max_lag = e.cfg.sync_max_lag_ms as i64 * 1_000_000;
    let decide = e.cfg.sync_decide_probes as u64;
    let sample = e.cfg.sync_ports.max(e.cfg.sync_decide_probes) as usize;
    if e.sync.last.is_empty() {
        e.sync.last = vec![LastProbe::default(); LAST_SLOTS];
    }
    let tag = tag(p);
    let slot = &mut e.sync.last[(tag >> 40) as usize & (LAST_SLOTS - 1)];
    let prev = (slot.tag == tag).then_some((slot.src, slot.ts));
    *slot = LastProbe {
        tag,
        src: p.src,
        ts: p.ts_ns,
    };
    let mut grouped = None;
    if let Some((a, ta)) = prev {
        let lag = p.ts_ns - ta;
        if a != p.src && (0..=max_lag).contains(&lag) {
            let pk = (a.min(p.src), a.max(p.src));
            if e.sync.pairs.len() >= PAIR_CAP && !e.sync.pairs.contains_key(&pk) {
                e.stats.sync_pairs_untracked += 1;
            } else {
                let pair = e.sync.pairs.entry(pk).or_default();
                if pair.dead {
                    return;
                }
                if pair.ports.len() < sample && !pair.ports.contains(&p.port) {
                    pair.ports.push(p.port);
                }
                pair.lag_sum_ns += lag as f64;
                pair.lag_sq_sum += (lag as f64) * (lag as f64);
                if pair.n > 0 {
                    if ta >= pair.prev_lead_ns {
                        pair.ordered += 1;
                    } else {
                        pair.disordered += 1;
                    }
                }
                pair.prev_lead_ns = ta;
                pair.n += 1;
                pair.last_ns = p.ts_ns;
                if pair.ports.len() >= e.cfg.sync_ports as usize {
                    if pair.steady(&e.cfg) {
                        grouped = Some((a, pair.ports.clone(), pair.mean()));
                    } else if pair.n >= decide {
                        // Two scans that merely overlap: stop tracking them.
                        pair.dead = true;
                    }
                }
            }
        }
    }
    if let Some((a, ports, lag_ns)) = grouped {
        group(e, a, p, ports, lag_ns);
    }
}

fn group(e: &mut Engine, a: u128, p: &Probe, ports: Vec<u16>, lag_ns: f64) {
    let key = Key::Dst(Kind::DistributedScan, p.dst);
    let id = e.start(Kind::DistributedScan, key, p, |ep| {
        ep.sources.insert(a);
        ep.sources.insert(p.src);
        ep.targets.insert(p.dst);
        for port in &ports {
            ep.add_port(*port);
        }
        ep.probes = ports.len() as u64 * 2;
        ep.synchronized = Some(true);
        ep.lag_ms = Some(lag_ns / 1e6);
    });
    let (sum, n) = {
        let l = e.sync.lags.entry(id).or_default();
        l.0 += lag_ns;
        l.1 += 1;
        *l
    };
    for s in [a, p.src] {
        e.sync.members.insert(s, id);
        e.join(id, s);
    }
    if let Some(ep) = e.episodes.get_mut(&id) {
        ep.synchronized = Some(true);
        ep.lag_ms = Some(sum / n as f64 / 1e6);
        ep.sources.insert(a);
        ep.sources.insert(p.src);
    }
}

fn shared(e: &mut Engine, p: &Probe) {
    let window = e.cfg.distributed_window_s as i64 * SEC;
    let wk = (p.dst, p.proto);
    if e.shared.targets.len() >= SHARED_TARGETS && !e.shared.targets.contains_key(&wk) {
        return;
    }
    let w = e.shared.targets.entry(wk).or_insert_with(|| Window {
        start: p.ts_ns,
        ports: PortSet::default(),
        sources: FxHashMap::default(),
        probes: 0,
    });
    if p.ts_ns - w.start > window {
        w.start = p.ts_ns;
        w.ports = PortSet::default();
        w.sources.clear();
        w.probes = 0;
    }
    w.probes += 1;
    if w.sources.len() < SHARED_SOURCES || w.sources.contains_key(&p.src) {
        *w.sources.entry(p.src).or_default() += 1;
    }
    if !w.ports.insert(p.port) || w.ports.len() < e.cfg.distributed_ports {
        return;
    }
    let n = w.sources.len() as u32;
    if n < 2 || n > e.cfg.distributed_max_sources {
        return;
    }
    let key = Key::Dst(Kind::DistributedScan, p.dst);
    if e.active(&key).is_some() {
        return;
    }
    // None of them a scanner alone.
    let w = &e.shared.targets[&wk];
    let (scan_ports, scan_dark) = (e.cfg.scan_ports, e.cfg.scan_dark_ports);
    let alone = w.sources.keys().any(|s| {
        e.sources.heavy.get(s).is_some_and(|h| {
            h.targets
                .get(&(p.dst, p.proto))
                .is_some_and(|t| t.is_scan(scan_ports, scan_dark))
        })
    });
    if alone {
        return;
    }
    let mut sources: Vec<u128> = w.sources.keys().copied().collect();
    sources.sort_unstable();
    let ports = w.ports.iter();
    let (start, probes) = (w.start, w.probes);
    let id = e.start(Kind::DistributedScan, key, p, |ep| {
        for s in &sources {
            ep.sources.insert(*s);
        }
        ep.targets.insert(p.dst);
        for port in ports {
            ep.add_port(port);
        }
        ep.first_ns = start;
        ep.probes = probes;
        ep.synchronized = Some(false);
    });
    for s in sources {
        e.join(id, s);
    }
}
