//! backscatter: unsolicited SYN-ACKs, RSTs and ICMP errors reaching one of
//! our addresses from many sources within `backscatter_window_s`. Somebody
//! is spoofing that address in an attack elsewhere and the victims answer us.

use rustc_hash::{FxHashMap, FxHashSet};

use super::{
    config::DetectConfig,
    episode::{Key, Kind},
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

/// Backscatter state.
#[derive(Default)]
pub struct Backscatter {
    win: FxHashMap<u128, Window>,
}

impl Backscatter {
    pub fn prune(&mut self, now: i64, cfg: &DetectConfig) {
        let w = cfg.backscatter_window_s as i64 * SEC;
        self.win.retain(|_, x| now - x.start <= w);
    }

    pub fn bytes(&self) -> usize {
        self.win
            .values()
            .map(|w| 40 + w.sources.capacity() * 17)
            .sum::<usize>()
            + self.win.capacity() * 17
    }
}

pub fn observe(e: &mut Engine, p: &Probe) {
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
