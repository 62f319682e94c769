//! distributed_scan: several sources sharing the work on one target. Two
//! detectors raise it, on one episode per target:
//!
//! - [`Lockstep`]: two sources that probe the same (target, protocol, port)
//!   at most `sync_max_lag_ms` apart, on `sync_ports` distinct ports, are in
//!   lockstep — nmap's decoy scan (`-D`) or two scanners driven together
//!   (the seed's "perfectly synchronized dual portscanning"). Pairs join
//!   into one group per target, reported with their mean lag; the group's
//!   members are not reported one by one.
//! - [`SharedWork`]: within `distributed_window_s`, `distributed_ports`
//!   distinct ports of one target probed by 2..=`distributed_max_sources`
//!   sources, none of which is a port scanner alone.

use rustc_hash::FxHashMap;

use super::{
    alert::Alert,
    config::DetectConfig,
    context::{Context, SEC},
    detector::{Detector, Seen},
    episode::Said,
    episode::{Episode, Evidence, Key, Kind, KindSpec},
    probe::{Probe, Role},
    sets::PortSet,
    DetectStats,
};

pub static DISTRIBUTED_SCAN: KindSpec = KindSpec {
    name: "distributed_scan",
    names_tool: true,
    one_source: false,
    many_sources: true,
    orders_targets: false,
    routes_by_dst: false,
};

/// A distributed scan's evidence: in lockstep or sharing the work, and
/// the lockstep pairs' mean lag.
struct Group {
    synchronized: bool,
    lag_ms: Option<f64>,
    /// Sum and count of the pairs' mean lags.
    lag_sum_ns: f64,
    lags: u64,
}

impl Evidence for Group {
    fn accepts(&self, key: &Key, p: &Probe) -> bool {
        matches!(key, Key::Dst(_, dst) if p.role != Role::Backscatter && p.dst == *dst)
    }

    fn summary(&self, ep: &Episode, s: &Said) -> String {
        let n = ep.sources.count();
        let who = ep.sources.sorted(4).join(", ");
        let how = match (self.synchronized, self.lag_ms) {
            (true, Some(l)) => {
                format!("in lockstep (lag {l:.1} ms): a decoy or coordinated scan")
            }
            _ => "sharing the work".into(),
        };
        format!(
            "{n} sources ({who}{}) {} {} {} ports of {} {how}",
            if n > 4 { ", ..." } else { "" },
            if s.going { "are probing" } else { "probed" },
            s.ports,
            s.proto,
            s.target
        )
    }

    fn fields(&self, _ep: &Episode, _cfg: &DetectConfig, a: &mut Alert) {
        a.synchronized = Some(self.synchronized);
        a.lag_ms = self.lag_ms.map(|l| (l * 1000.0).round() / 1000.0);
    }
}

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

/// The lockstep detector: the last prober of each (target, protocol,
/// port) slot, and the co-probing pairs.
#[derive(Default)]
pub struct Lockstep {
    last: Vec<LastProbe>,
    pairs: FxHashMap<(u128, u128), Pair>,
    /// Co-probing pairs not tracked because the pair table was full.
    untracked: u64,
}

/// The lockstep table's tag of a probe's (target, protocol, port).
fn tag(p: &Probe) -> u64 {
    let x = (p.dst as u64 ^ (p.dst >> 64) as u64).rotate_left(17)
        ^ ((p.proto as u64) << 16 | p.port as u64);
    x.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1
}

impl Detector for Lockstep {
    fn name(&self) -> &'static str {
        "lockstep"
    }

    fn observe(&mut self, p: &Probe, _seen: &Seen, cx: &mut Context) {
        if p.role != Role::Backscatter && super::probe::ported(p.proto) {
            self.lockstep(cx, p);
        }
    }

    /// Asks the CPU for the probe's slot early: the table is larger than
    /// the caches, and the miss then overlaps the source-table work that
    /// comes first (the engine's hottest load without it).
    #[inline]
    fn prefetch(&self, p: &Probe) {
        if !super::probe::ported(p.proto) || self.last.is_empty() {
            return;
        }
        let slot = &self.last[(tag(p) >> 40) as usize & (LAST_SLOTS - 1)];
        #[cfg(target_arch = "x86_64")]
        // SAFETY: a prefetch is a hint; it never faults and reads nothing.
        unsafe {
            use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
            _mm_prefetch(slot as *const LastProbe as *const i8, _MM_HINT_T0);
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = slot;
    }

    fn tick(&mut self, cx: &mut Context) {
        let idle = cx.cfg.episode_idle_s as i64 * SEC;
        let (now, groups) = (cx.now, &mut cx.groups);
        self.pairs.retain(|(a, b), p| {
            let keep = now - p.last_ns <= idle;
            if !keep && !p.dead {
                groups.pair(*a, *b, false);
            }
            keep
        });
    }

    fn bytes(&self) -> usize {
        self.last.capacity() * 57 + self.pairs.capacity() * 100
    }

    fn stats(&self, s: &mut DetectStats) {
        s.sync_pairs_untracked = self.untracked;
    }
}

impl Lockstep {
    fn lockstep(&mut self, cx: &mut Context, p: &Probe) {
        let cfg = &cx.cfg;
        let max_lag = cfg.sync_max_lag_ms as i64 * 1_000_000;
        let decide = cfg.sync_decide_probes as u64;
        let sample = cfg.sync_ports.max(cfg.sync_decide_probes) as usize;
        if self.last.is_empty() {
            self.last = vec![LastProbe::default(); LAST_SLOTS];
        }
        let tag = tag(p);
        let slot = &mut self.last[(tag >> 40) as usize & (LAST_SLOTS - 1)];
        let prev = (slot.tag == tag).then_some((slot.src, slot.ts));
        *slot = LastProbe {
            tag,
            src: p.src,
            ts: p.ts_ns,
        };
        let Some((a, ta)) = prev else {
            return;
        };
        let lag = p.ts_ns - ta;
        if a == p.src || !(0..=max_lag).contains(&lag) {
            return;
        }
        let pk = (a.min(p.src), a.max(p.src));
        if self.pairs.len() >= PAIR_CAP && !self.pairs.contains_key(&pk) {
            self.untracked += 1;
            return;
        }
        let pair = match self.pairs.entry(pk) {
            std::collections::hash_map::Entry::Occupied(o) => o.into_mut(),
            std::collections::hash_map::Entry::Vacant(v) => {
                cx.groups.pair(pk.0, pk.1, true);
                v.insert(Pair::default())
            }
        };
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
        if pair.ports.len() < cx.cfg.sync_ports as usize {
            return;
        }
        if pair.steady(&cx.cfg) {
            let (ports, lag_ns) = (pair.ports.clone(), pair.mean());
            group(cx, a, p, ports, lag_ns);
        } else if pair.n >= decide {
            // Two scans that merely overlap: stop tracking them.
            pair.dead = true;
            cx.groups.pair(pk.0, pk.1, false);
        }
    }
}

fn group(cx: &mut Context, a: u128, p: &Probe, ports: Vec<u16>, lag_ns: f64) {
    let key = Key::Dst(Kind(&DISTRIBUTED_SCAN), p.dst);
    let evidence = Box::new(Group {
        synchronized: true,
        lag_ms: Some(lag_ns / 1e6),
        lag_sum_ns: 0.0,
        lags: 0,
    });
    let id = cx.start(Kind(&DISTRIBUTED_SCAN), key, p, evidence, |ep| {
        ep.sources.insert(a);
        ep.sources.insert(p.src);
        ep.targets.insert(p.dst);
        for port in &ports {
            ep.add_port(*port);
        }
        ep.probes = ports.len() as u64 * 2;
    });
    for s in [a, p.src] {
        cx.groups.enrol(s, id);
        cx.book.join(id, s);
    }
    if let Some(ep) = cx.book.get_mut(id) {
        ep.sources.insert(a);
        ep.sources.insert(p.src);
        if let Some(g) = ep.evidence_mut::<Group>() {
            g.lag_sum_ns += lag_ns;
            g.lags += 1;
            g.synchronized = true;
            g.lag_ms = Some(g.lag_sum_ns / g.lags as f64 / 1e6);
        }
    }
}

/// The shared-work detector: per (target, protocol), the ports and
/// sources of the current window.
#[derive(Default)]
pub struct SharedWork {
    targets: FxHashMap<(u128, u8), Window>,
}

struct Window {
    start: i64,
    ports: PortSet,
    sources: FxHashMap<u128, u32>,
    probes: u64,
}

impl Detector for SharedWork {
    fn name(&self) -> &'static str {
        "shared_work"
    }

    /// A source already reported on its own (a scanner alone) cannot be
    /// one of several sharing the work.
    fn observe(&mut self, p: &Probe, seen: &Seen, cx: &mut Context) {
        if p.role == Role::Probe && !seen.busy && super::probe::ported(p.proto) {
            self.shared(cx, p);
        }
    }

    fn tick(&mut self, cx: &mut Context) {
        let (now, w) = (cx.now, cx.cfg.distributed_window_s as i64 * SEC);
        self.targets.retain(|_, t| now - t.start <= w);
    }

    fn bytes(&self) -> usize {
        self.targets
            .values()
            .map(|w| 64 + w.ports.bytes() + w.sources.capacity() * 21)
            .sum::<usize>()
            + self.targets.capacity() * 17
    }
}

impl SharedWork {
    fn shared(&mut self, cx: &mut Context, p: &Probe) {
        let window = cx.cfg.distributed_window_s as i64 * SEC;
        let wk = (p.dst, p.proto);
        if self.targets.len() >= SHARED_TARGETS && !self.targets.contains_key(&wk) {
            return;
        }
        let w = self.targets.entry(wk).or_insert_with(|| Window {
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
        if !w.ports.insert(p.port) || w.ports.len() < cx.cfg.distributed_ports {
            return;
        }
        let n = w.sources.len() as u32;
        if n < 2 || n > cx.cfg.distributed_max_sources {
            return;
        }
        let key = Key::Dst(Kind(&DISTRIBUTED_SCAN), p.dst);
        if cx.active(&key).is_some() {
            return;
        }
        // None of them a scanner alone.
        let (scan_ports, scan_dark) = (cx.cfg.scan_ports, cx.cfg.scan_dark_ports);
        let alone = w.sources.keys().any(|s| {
            cx.sources.heavy.get(s).is_some_and(|h| {
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
        let evidence = Box::new(Group {
            synchronized: false,
            lag_ms: None,
            lag_sum_ns: 0.0,
            lags: 0,
        });
        let id = cx.start(Kind(&DISTRIBUTED_SCAN), key, p, evidence, |ep| {
            for s in &sources {
                ep.sources.insert(*s);
            }
            ep.targets.insert(p.dst);
            for port in ports {
                ep.add_port(port);
            }
            ep.first_ns = start;
            ep.probes = probes;
        });
        for s in sources {
            cx.book.join(id, s);
        }
    }
}
