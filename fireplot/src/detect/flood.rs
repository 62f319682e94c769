//! flood: one source, or one destination port probed by several sources,
//! above `flood_pps` events in one second of event time.

use rustc_hash::FxHashMap;

use super::{
    episode::{Key, Kind},
    probe::Probe,
    Engine, SEC,
};

/// Per-port counts of the current second.
#[derive(Default)]
pub struct PortFlood {
    sec: i64,
    counts: FxHashMap<(u8, u16), (u32, u128, bool)>,
}

impl PortFlood {
    pub fn bytes(&self) -> usize {
        self.counts.capacity() * 40
    }
}

pub fn observe_source(e: &mut Engine, p: &Probe, sec_count: u32) {
    if sec_count < e.cfg.flood_pps {
        return;
    }
    let key = Key::Src(Kind::Flood, p.src, 0);
    if e.active(&key).is_some() {
        return;
    }
    let sec_start = p.ts_ns.div_euclid(SEC) * SEC;
    e.start(Kind::Flood, key, p, |ep| {
        ep.sources.insert(p.src);
        ep.targets.insert(p.dst);
        if matches!(p.proto, 6 | 17) {
            ep.add_port(p.port);
        }
        ep.first_ns = sec_start;
        ep.probes = sec_count as u64;
        ep.peak_pps = sec_count as u64;
    });
}

pub fn observe_port(e: &mut Engine, p: &Probe) {
    if !matches!(p.proto, 6 | 17) {
        return;
    }
    let sec = p.ts_ns.div_euclid(SEC);
    if sec != e.port_flood.sec {
        e.port_flood.counts.clear();
        e.port_flood.sec = sec;
    }
    let c = e
        .port_flood
        .counts
        .entry((p.proto, p.port))
        .or_insert((0, p.src, false));
    c.0 += 1;
    if c.1 != p.src {
        c.2 = true;
    }
    let (n, several) = (c.0, c.2);
    if n < e.cfg.flood_pps || !several {
        return;
    }
    let key = Key::Port(Kind::Flood, p.proto, p.port);
    if e.active(&key).is_some() {
        return;
    }
    e.start(Kind::Flood, key, p, |ep| {
        ep.sources.insert(p.src);
        ep.targets.insert(p.dst);
        ep.add_port(p.port);
        ep.first_ns = sec * SEC;
        ep.probes = n as u64;
        ep.peak_pps = n as u64;
    });
}
