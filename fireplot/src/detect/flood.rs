//! flood: one source, or one destination port probed by several sources,
//! above `flood_pps` events in one second of event time. A port's flood is
//! "from several sources" only while no source sent more than
//! `flood_port_max_share` of it (else it is that source's flood).

use rustc_hash::FxHashMap;

use super::{
    episode::{Key, Kind},
    probe::Probe,
    Engine, SEC,
};

/// One port's count in the current second, and its busiest source's.
#[derive(Clone, Copy)]
struct PortSecond {
    events: u32,
    /// The most events one source sent in this second (over all its
    /// targets: an upper bound of its share of this port).
    top_source: u32,
}

/// Per-port counts of the current second.
#[derive(Default)]
pub struct PortFlood {
    sec: i64,
    counts: FxHashMap<(u8, u16), PortSecond>,
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

/// `src_count`: events of the probe's source in this second so far.
pub fn observe_port(e: &mut Engine, p: &Probe, src_count: u32) {
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
        .or_insert(PortSecond {
            events: 0,
            top_source: 0,
        });
    c.events += 1;
    c.top_source = c.top_source.max(src_count.min(c.events));
    let n = c.events;
    let several = f64::from(c.top_source) <= e.cfg.flood_port_max_share * f64::from(n);
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
