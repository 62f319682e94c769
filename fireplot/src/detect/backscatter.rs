//! backscatter: unsolicited SYN-ACKs, RSTs and ICMP errors — answers to
//! something we never sent. Two shapes:
//! - many sources answering one of our addresses within
//!   `backscatter_window_s`: somebody spoofs that address in an attack
//!   elsewhere and the victims answer us (`many_sources`);
//! - one source answering `backscatter_victim_targets` of our addresses
//!   within `backscatter_victim_window_s`: that source is the victim of a
//!   spoofed flood whose forged sources include our addresses
//!   (`one_victim`).
//!
//! Answers never count toward scans or sweeps.

use rustc_hash::{FxHashMap, FxHashSet};

use super::{
    config::DetectConfig,
    episode::{Key, Kind, Run},
    probe::Probe,
    Engine, SEC,
};

const TARGET_CAP: usize = 65_536;
const SOURCE_CAP: usize = 8192;

struct Window {
    start: i64,
    sources: FxHashSet<u128>,
    probes: u64,
}

/// One victim's answers to our addresses.
struct Victim {
    start: i64,
    targets: FxHashSet<u128>,
    probes: u64,
    /// The source port of its first answer, and how many answers came from it.
    sport: u16,
    same_sport: u64,
}

/// Backscatter state.
#[derive(Default)]
pub struct Backscatter {
    win: FxHashMap<u128, Window>,
    victims: FxHashMap<u128, Victim>,
}

impl Backscatter {
    pub fn prune(&mut self, now: i64, cfg: &DetectConfig) {
        let w = cfg.backscatter_window_s as i64 * SEC;
        self.win.retain(|_, x| now - x.start <= w);
        let v = cfg.backscatter_victim_window_s as i64 * SEC;
        self.victims.retain(|_, x| now - x.start <= v);
    }

    pub fn bytes(&self) -> usize {
        self.win
            .values()
            .map(|w| 40 + w.sources.capacity() * 17)
            .sum::<usize>()
            + self.win.capacity() * 17
            + self
                .victims
                .values()
                .map(|v| 64 + v.targets.capacity() * 17)
                .sum::<usize>()
            + self.victims.capacity() * 17
    }
}

pub fn observe(e: &mut Engine, p: &Probe) {
    observe_victim(e, p);
    observe_target(e, p);
}

/// One source answering many of our addresses.
fn observe_victim(e: &mut Engine, p: &Probe) {
    let window = e.cfg.backscatter_victim_window_s as i64 * SEC;
    if e.back.victims.len() >= TARGET_CAP && !e.back.victims.contains_key(&p.src) {
        return;
    }
    let fresh = || Victim {
        start: p.ts_ns,
        targets: FxHashSet::default(),
        probes: 0,
        sport: p.sport,
        same_sport: 0,
    };
    let v = e.back.victims.entry(p.src).or_insert_with(fresh);
    if p.ts_ns - v.start > window {
        *v = fresh();
    }
    v.probes += 1;
    if p.sport == v.sport {
        v.same_sport += 1;
    }
    // Past the threshold the episode holds the targets: the set stops here.
    let room = v.targets.len() < (e.cfg.backscatter_victim_targets as usize).min(SOURCE_CAP);
    let new = room && v.targets.insert(p.dst);
    let (n, start, probes, sport, same) =
        (v.targets.len(), v.start, v.probes, v.sport, v.same_sport);
    if !new || n < e.cfg.backscatter_victim_targets as usize {
        return;
    }
    let key = Key::Src(Kind::Backscatter, p.src, 0);
    if e.active(&key).is_some() {
        return;
    }
    let mut targets: Vec<u128> = e.back.victims[&p.src].targets.iter().copied().collect();
    targets.sort_unstable();
    e.start(Kind::Backscatter, key, p, |ep| {
        ep.one_victim = true;
        ep.sources.insert(p.src);
        for t in targets {
            ep.targets.insert(t);
        }
        ep.first_ns = start;
        ep.probes = probes;
        // The service it answers from, when most answers share one port.
        if matches!(p.proto, 6 | 17) && same * 10 >= probes * 9 {
            ep.run = Some(Run {
                port: sport,
                ..Run::default()
            });
        }
    });
}

/// Many sources answering one of our addresses.
fn observe_target(e: &mut Engine, p: &Probe) {
    let window = e.cfg.backscatter_window_s as i64 * SEC;
    if e.back.win.len() >= TARGET_CAP && !e.back.win.contains_key(&p.dst) {
        return;
    }
    let w = e.back.win.entry(p.dst).or_insert_with(|| Window {
        start: p.ts_ns,
        sources: FxHashSet::default(),
        probes: 0,
    });
    if p.ts_ns - w.start > window {
        w.start = p.ts_ns;
        w.sources.clear();
        w.probes = 0;
    }
    w.probes += 1;
    let new = w.sources.len() < SOURCE_CAP && w.sources.insert(p.src);
    let (n, start, probes) = (w.sources.len(), w.start, w.probes);
    if !new || n < e.cfg.backscatter_sources as usize {
        return;
    }
    let key = Key::Dst(Kind::Backscatter, p.dst);
    if e.active(&key).is_some() {
        return;
    }
    let mut sources: Vec<u128> = e.back.win[&p.dst].sources.iter().copied().collect();
    sources.sort_unstable();
    e.start(Kind::Backscatter, key, p, |ep| {
        for s in sources {
            ep.sources.insert(s);
        }
        ep.targets.insert(p.dst);
        ep.first_ns = start;
        ep.probes = probes;
    });
}
