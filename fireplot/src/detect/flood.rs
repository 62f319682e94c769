//! flood: one source, or one destination port probed by several sources,
//! above `flood_pps` events in one second of event time; or one source
//! hammering one target port at any rate (`hammer_packets` in a run). A port's flood is
//! "from several sources" only while no source sent more than
//! `flood_port_max_share` of it (else it is that source's flood).

use rustc_hash::FxHashMap;

use super::{
    episode::{Key, Kind, Run},
    probe::{Probe, Role},
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

/// Aggregated packets per (protocol, port, second) of event time. The
/// kernel's aggregates arrive when their second is over, after that
/// second's events, so they are summed here rather than in `PortFlood`.
#[derive(Default)]
pub struct AggSeconds {
    counts: FxHashMap<(u8, u16, i64), u64>,
    newest: i64,
}

/// Seconds of aggregates kept for summing (they arrive in about 2 s).
const AGG_KEEP_S: i64 = 30;

impl AggSeconds {
    pub fn bytes(&self) -> usize {
        self.counts.capacity() * 40
    }
}

/// An aggregate (`Record::is_aggregate`): `count` packets of one second to
/// one (protocol, port) from one source prefix. A port whose aggregates
/// and events of one second reach `flood_pps` is flooded (by however many
/// sources: the kernel aggregated them because one target or the sensor's
/// budget was past its limit); an active flood on the port counts them.
pub fn observe_aggregate(e: &mut Engine, r: &crate::record::Record) {
    use std::net::{IpAddr, Ipv6Addr};
    let sec = r.ts_ns.div_euclid(SEC);
    let port = if r.has_ports() { r.dport } else { 0 };
    let count = u64::from(r.count.max(1));
    let a = &mut e.agg_seconds;
    if sec > a.newest {
        a.newest = sec;
        if a.counts.len() > 1024 {
            let keep = sec - AGG_KEEP_S;
            a.counts.retain(|k, _| k.2 >= keep);
        }
    }
    let n = {
        let c = a.counts.entry((r.proto, port, sec)).or_default();
        *c += count;
        *c
    };
    // Events of the same port in the same second, when the detector is
    // still in it.
    let events = if e.port_flood.sec == sec {
        e.port_flood
            .counts
            .get(&(r.proto, port))
            .map_or(0, |c| u64::from(c.events))
    } else {
        0
    };
    let unspecified = IpAddr::V6(Ipv6Addr::UNSPECIFIED);
    let src_ip = r.src.unwrap_or(unspecified);
    let p = Probe {
        ts_ns: r.ts_ns,
        src: r.src.map_or(0, super::probe::key),
        dst: 0,
        src_ip,
        dst_ip: unspecified,
        proto: r.proto,
        port,
        flags: r.tcp_flags,
        role: Role::Probe,
        sport: 0,
        ip_id: 0,
        tcp_seq: 0,
        tcp_window: 0,
        len: r.len,
        class: r.class,
        dark: false,
    };
    // The rest of a source's flood (its events past --rate-limit): it
    // counts for that source's episode, not as a flood of many sources.
    if r.src.is_some() {
        let bits = if src_ip.is_ipv4() {
            96 + u32::from(fireplot_common::agg::PREFIX_V4)
        } else {
            u32::from(fireplot_common::agg::PREFIX_V6)
        };
        let mask = !0u128 << (128 - bits);
        let own = e.episodes.values_mut().find(|ep| {
            ep.kind == Kind::Flood
                && matches!(ep.key, Key::Src(_, s, _) if s & mask == p.src & mask)
        });
        if let Some(ep) = own {
            ep.probes += count;
            ep.aggregated += count;
            ep.last_ns = ep.last_ns.max(p.ts_ns);
            ep.peak_pps = ep.peak_pps.max(n + events);
            return;
        }
    }
    // One source sent all of it: that source's flood, at the aggregate's
    // rate (its events of the second were fewer than its limit).
    if r.src.is_some() && r.src_prefix().is_none() && n + events >= u64::from(e.cfg.flood_pps) {
        e.start(Kind::Flood, Key::Src(Kind::Flood, p.src, 0), &p, |ep| {
            ep.targets = Default::default();
            ep.sources.insert(p.src);
            if matches!(p.proto, 6 | 17) {
                ep.add_port(port);
            }
            ep.first_ns = sec * SEC;
            ep.probes = count;
            ep.aggregated = count;
            ep.peak_pps = n + events;
        });
        return;
    }
    let key = Key::Port(Kind::Flood, r.proto, port);
    if let Some(id) = e.active(&key) {
        if let Some(ep) = e.episodes.get_mut(&id) {
            // Not `Episode::add`: an aggregate has no target of its own.
            ep.probes += count;
            ep.aggregated += count;
            ep.first_ns = ep.first_ns.min(p.ts_ns);
            ep.last_ns = ep.last_ns.max(p.ts_ns);
            if r.src.is_some() {
                ep.sources.insert(p.src);
            }
            ep.peak_pps = ep.peak_pps.max(n + events);
        }
        return;
    }
    if n + events < u64::from(e.cfg.flood_pps) {
        return;
    }
    e.start(Kind::Flood, key, &p, |ep| {
        ep.targets = Default::default();
        if r.src.is_some() {
            ep.sources.insert(p.src);
        }
        if matches!(p.proto, 6 | 17) {
            ep.add_port(port);
        }
        ep.first_ns = sec * SEC;
        ep.probes = n + events;
        ep.aggregated = n;
        ep.peak_pps = n + events;
    });
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

/// Runs of packets from one source to one target port (hammering), keyed
/// by a 64-bit hash of (source, target, protocol, port): two runs share a
/// slot with odds of 2^-64 per pair, and the key hashes in one step.
#[derive(Default)]
pub struct Hammer {
    runs: FxHashMap<u64, RunCount>,
    /// Repeats not tracked because the table was full.
    pub untracked: u64,
}

#[derive(Clone, Copy)]
struct RunCount {
    count: u64,
    first_ns: i64,
    last_ns: i64,
}

fn run_key(p: &Probe) -> u64 {
    let mix = |h: u64, v: u64| (h.rotate_left(5) ^ v).wrapping_mul(0x517c_c1b7_2722_0a95);
    let mut h = 0u64;
    for v in [
        p.src as u64,
        (p.src >> 64) as u64,
        p.dst as u64,
        (p.dst >> 64) as u64,
        (u64::from(p.proto) << 16) | u64::from(p.port),
    ] {
        h = mix(h, v);
    }
    h
}

/// Runs tracked at once; idle ones are pruned every second of event time.
const RUN_CAP: usize = 1 << 16;

impl Hammer {
    pub fn prune(&mut self, now: i64, gap_s: u64) {
        let gap = gap_s as i64 * SEC;
        self.runs.retain(|_, r| now - r.last_ns <= gap);
    }

    pub fn bytes(&self) -> usize {
        self.runs.capacity() * (8 + 24 + 1)
    }
}

/// Counts a packet that repeats one the source sent before (`repeat`) to
/// the same target port; a run of `hammer_packets` with no gap longer than
/// `hammer_gap_s` is a flood by hammering, whatever the rate. Only probes
/// count: answers are backscatter, and TCP packets with ACK but no SYN
/// are the middle of a connection whose state the sensor lost (a chatty
/// client after a timeout), not an attack; published services never reach
/// the detector as events at all.
pub fn observe_hammer(e: &mut Engine, p: &Probe, repeat: bool) {
    use super::probe::{ACK, SYN};
    use fireplot_common::event::Class;
    // A run exists only for a tuple the source sent before: only a repeat
    // can belong to one (this keeps the lookup off every other event).
    if !repeat
        || p.class != Class::Unsolicited as u8
        || p.role == Role::Backscatter
        || (p.proto == 6 && p.flags & ACK != 0 && p.flags & SYN == 0)
    {
        return;
    }
    let k = run_key(p);
    let gap = e.cfg.hammer_gap_s as i64 * SEC;
    let run = match e.hammer.runs.get_mut(&k) {
        Some(r) => {
            if p.ts_ns - r.last_ns > gap {
                *r = RunCount {
                    count: 1,
                    first_ns: p.ts_ns,
                    last_ns: p.ts_ns,
                };
            } else {
                r.count += 1;
                r.last_ns = r.last_ns.max(p.ts_ns);
            }
            *r
        }
        None => {
            if e.hammer.runs.len() >= RUN_CAP {
                e.hammer.untracked += 1;
                return;
            }
            // This packet and the one it repeats.
            let r = RunCount {
                count: 2,
                first_ns: p.ts_ns,
                last_ns: p.ts_ns,
            };
            e.hammer.runs.insert(k, r);
            r
        }
    };
    if run.count < u64::from(e.cfg.hammer_packets)
        || run.last_ns - run.first_ns < e.cfg.hammer_min_span_s as i64 * SEC
    {
        return;
    }
    let run = Run {
        dst: p.dst,
        proto: p.proto,
        port: p.port,
        count: run.count,
        first_ns: run.first_ns,
        last_ns: run.last_ns,
    };
    let key = Key::Src(Kind::Flood, p.src, 0);
    if let Some(id) = e.active(&key) {
        // A rate flood of the same source: it now counts this run too.
        if let Some(ep) = e.episodes.get_mut(&id) {
            ep.run.get_or_insert(run);
        }
        return;
    }
    e.start(Kind::Flood, key, p, |ep| {
        ep.sources.insert(p.src);
        ep.targets.insert(p.dst);
        if matches!(p.proto, 6 | 17) {
            ep.add_port(p.port);
        }
        ep.first_ns = run.first_ns;
        ep.probes = run.count;
        ep.tools.add(p);
        ep.run = Some(run);
    });
}
