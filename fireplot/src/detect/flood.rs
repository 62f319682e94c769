//! flood: one source, or one destination port probed by several sources,
//! above `flood_pps` events in one second of event time (this file), or
//! one source hammering one target port at any rate (`hammer.rs`). A
//! port's flood is "from several sources" only while no source sent more
//! than `flood_port_max_share` of it (else it is that source's flood).
//! The kernel's aggregates (packets past its limits, DESIGN §7) count at
//! their real rate.

use rustc_hash::FxHashMap;

use super::{
    alert::Alert,
    config::DetectConfig,
    context::{Context, SEC},
    detector::{Detector, Seen},
    episode::Said,
    episode::{Episode, Evidence, Key, Kind, KindSpec, Via},
    probe::{addr, Probe, Role},
    words::{human_secs, thousands},
};
use crate::record::Record;

pub static FLOOD: KindSpec = KindSpec {
    name: "flood",
    names_tool: true,
    one_source: true,
    many_sources: false,
    orders_targets: false,
    routes_by_dst: false,
};

/// A run of packets from one source to one target port (hammering).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Run {
    pub dst: u128,
    pub proto: u8,
    pub port: u16,
    pub count: u64,
    pub first_ns: i64,
    pub last_ns: i64,
}

impl Run {
    fn matches(&self, p: &Probe) -> bool {
        p.dst == self.dst && p.proto == self.proto && p.port == self.port
    }
}

/// A flood's evidence.
#[derive(Default)]
pub struct Flood {
    /// The highest one-second count.
    pub peak_pps: u64,
    /// Flood by hammering: the run of packets to one target port.
    pub run: Option<Run>,
    /// Of the probes, packets the kernel counted in aggregates (a flood
    /// past its limits) rather than sent one by one.
    pub aggregated: u64,
}

impl Flood {
    /// A hammering: a run, never at a flood's rate.
    fn hammering(&self, cfg: &DetectConfig) -> bool {
        self.run.is_some() && self.peak_pps < u64::from(cfg.flood_pps)
    }
}

impl Evidence for Flood {
    fn accepts(&self, _key: &Key, _p: &Probe) -> bool {
        true
    }

    fn add(&mut self, p: &Probe, via: Via) {
        if let Some(r) = self.run.as_mut() {
            if r.matches(p) {
                r.count += 1;
                r.last_ns = r.last_ns.max(p.ts_ns);
            }
        }
        if let Via::Source { sec_count } = via {
            self.peak_pps = self.peak_pps.max(sec_count as u64);
        }
    }

    fn severity(&self, _ep: &Episode, cfg: &DetectConfig) -> u8 {
        if self.hammering(cfg) {
            let n = self.run.map_or(0, |r| r.count);
            return cfg.hammer_levels.iter().filter(|l| n >= **l).count().max(1) as u8;
        }
        match self.peak_pps {
            0..=49_999 => 3,
            50_000..=199_999 => 4,
            _ => 5,
        }
    }

    fn summary(&self, ep: &Episode, s: &Said) -> String {
        let Said {
            going,
            proto,
            src,
            target,
            probes,
            ..
        } = s;
        if self.hammering(s.cfg) {
            let r = self.run.unwrap_or_default();
            let span = (r.last_ns - r.first_ns) as f64 / 1e9;
            return format!(
                "{src} {} {proto}/{} of {} with {} packets in {} ({:.1}/s)",
                if *going { "is hammering" } else { "hammered" },
                r.port,
                addr(r.dst),
                thousands(r.count),
                human_secs(span),
                r.count as f64 / span.max(0.001)
            );
        }
        let peak = thousands(self.peak_pps);
        match ep.key {
            Key::Port(_, _, port) if self.aggregated > 0 => format!(
                "{proto} port {port} {} {probes} packets ({} counted in kernel aggregates) from {} sources and source /24s or /48s, peak {peak}/s",
                if *going { "is flooded:" } else { "was flooded:" },
                thousands(self.aggregated),
                thousands(ep.sources.count()),
            ),
            Key::Port(_, _, port) => format!(
                "{proto} port {port} {} {probes} probes from {} sources, peak {peak}/s",
                if *going { "is flooded:" } else { "was flooded:" },
                thousands(ep.sources.count()),
            ),
            _ if self.aggregated > 0 => format!(
                "{src} {} {probes} packets to {target} ({} counted in kernel aggregates past its rate limit), peak {peak}/s",
                if *going { "is flooding:" } else { "flooded:" },
                thousands(self.aggregated),
            ),
            _ => format!(
                "{src} {} {probes} packets to {target}, peak {peak}/s",
                if *going { "is flooding:" } else { "flooded:" },
            ),
        }
    }

    fn fields(&self, _ep: &Episode, cfg: &DetectConfig, a: &mut Alert) {
        a.aggregated = (self.aggregated > 0).then_some(self.aggregated);
        if let Some(r) = self.run.filter(|_| self.hammering(cfg)) {
            a.count = Some(r.count);
            a.window_s = Some(((r.last_ns - r.first_ns) as f64 / 1e8).round() / 10.0);
        }
    }
}

/// The per-source rate detector: a source above `flood_pps` events in one
/// second of event time.
pub struct SourceRate;

impl Detector for SourceRate {
    fn name(&self) -> &'static str {
        "source_flood"
    }

    fn observe(&mut self, p: &Probe, seen: &Seen, cx: &mut Context) {
        let sec_count = seen.sec_count;
        if sec_count < cx.cfg.flood_pps {
            return;
        }
        let key = Key::Src(Kind(&FLOOD), p.src, 0);
        if cx.active(&key).is_some() {
            return;
        }
        let sec_start = p.ts_ns.div_euclid(SEC) * SEC;
        let evidence = Box::new(Flood {
            peak_pps: sec_count as u64,
            ..Flood::default()
        });
        cx.start(Kind(&FLOOD), key, p, evidence, |ep| {
            ep.seed_from(p);
            ep.first_ns = sec_start;
            ep.probes = sec_count as u64;
        });
    }

    fn bytes(&self) -> usize {
        0
    }
}

/// One port's count in the current second, and its busiest source's.
#[derive(Clone, Copy)]
struct PortSecond {
    events: u32,
    /// The most events one source sent in this second (over all its
    /// targets: an upper bound of its share of this port).
    top_source: u32,
}

/// Seconds of aggregates kept for summing (they arrive in about 2 s).
const AGG_KEEP_S: i64 = 30;

/// The per-port rate detector: per-port counts of the current second, and
/// aggregated packets per (protocol, port, second) of event time. The
/// kernel's aggregates arrive when their second is over, after that
/// second's events, so they are summed apart.
#[derive(Default)]
pub struct PortRate {
    sec: i64,
    counts: FxHashMap<(u8, u16), PortSecond>,
    agg: FxHashMap<(u8, u16, i64), u64>,
    agg_newest: i64,
}

impl Detector for PortRate {
    fn name(&self) -> &'static str {
        "port_flood"
    }

    /// A port flood is many sources at once; a source reported on its own
    /// is counted there, not here.
    fn observe(&mut self, p: &Probe, seen: &Seen, cx: &mut Context) {
        if p.role != Role::Backscatter && !seen.busy {
            self.observe_port(cx, p, seen.sec_count);
        }
    }

    fn observe_aggregate(&mut self, r: &Record, cx: &mut Context) {
        self.aggregate(cx, r);
    }

    fn bytes(&self) -> usize {
        self.counts.capacity() * 40 + self.agg.capacity() * 40
    }
}

impl PortRate {
    /// `src_count`: events of the probe's source in this second so far.
    fn observe_port(&mut self, cx: &mut Context, p: &Probe, src_count: u32) {
        if !super::probe::ported(p.proto) {
            return;
        }
        let sec = p.ts_ns.div_euclid(SEC);
        if sec != self.sec {
            self.counts.clear();
            self.sec = sec;
        }
        let c = self.counts.entry((p.proto, p.port)).or_insert(PortSecond {
            events: 0,
            top_source: 0,
        });
        c.events += 1;
        c.top_source = c.top_source.max(src_count.min(c.events));
        let n = c.events;
        let several = f64::from(c.top_source) <= cx.cfg.flood_port_max_share * f64::from(n);
        if n < cx.cfg.flood_pps || !several {
            return;
        }
        let key = Key::Port(Kind(&FLOOD), p.proto, p.port);
        if cx.active(&key).is_some() {
            return;
        }
        let evidence = Box::new(Flood {
            peak_pps: n as u64,
            ..Flood::default()
        });
        cx.start(Kind(&FLOOD), key, p, evidence, |ep| {
            ep.sources.insert(p.src);
            ep.targets.insert(p.dst);
            ep.add_port(p.port);
            ep.first_ns = sec * SEC;
            ep.probes = n as u64;
        });
    }

    /// An aggregate (`Record::is_aggregate`): `count` packets of one second
    /// to one (protocol, port) from one source prefix. A port whose
    /// aggregates and events of one second reach `flood_pps` is flooded (by
    /// however many sources: the kernel aggregated them because one target
    /// or the sensor's budget was past its limit); an active flood on the
    /// port counts them.
    fn aggregate(&mut self, cx: &mut Context, r: &Record) {
        use std::net::{IpAddr, Ipv6Addr};
        let sec = r.ts_ns.div_euclid(SEC);
        let port = if r.has_ports() { r.dport } else { 0 };
        let count = u64::from(r.count.max(1));
        if sec > self.agg_newest {
            self.agg_newest = sec;
            if self.agg.len() > 1024 {
                let keep = sec - AGG_KEEP_S;
                self.agg.retain(|k, _| k.2 >= keep);
            }
        }
        let n = {
            let c = self.agg.entry((r.proto, port, sec)).or_default();
            *c += count;
            *c
        };
        // Events of the same port in the same second, when the detector is
        // still in it.
        let events = if self.sec == sec {
            self.counts
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
            let own = cx.book.episodes_mut().find(|ep| {
                ep.kind == Kind(&FLOOD)
                    && matches!(ep.key, Key::Src(_, s, _) if s & mask == p.src & mask)
            });
            if let Some(ep) = own {
                ep.probes += count;
                ep.last_ns = ep.last_ns.max(p.ts_ns);
                if let Some(f) = ep.evidence_mut::<Flood>() {
                    f.aggregated += count;
                    f.peak_pps = f.peak_pps.max(n + events);
                }
                return;
            }
        }
        // One source sent all of it: that source's flood, at the aggregate's
        // rate (its events of the second were fewer than its limit).
        if r.src.is_some() && r.src_prefix().is_none() && n + events >= u64::from(cx.cfg.flood_pps)
        {
            let evidence = Box::new(Flood {
                peak_pps: n + events,
                aggregated: count,
                run: None,
            });
            let key = Key::Src(Kind(&FLOOD), p.src, 0);
            cx.start(Kind(&FLOOD), key, &p, evidence, |ep| {
                ep.targets = Default::default();
                ep.sources.insert(p.src);
                if super::probe::ported(p.proto) {
                    ep.add_port(port);
                }
                ep.first_ns = sec * SEC;
                ep.probes = count;
            });
            return;
        }
        let key = Key::Port(Kind(&FLOOD), r.proto, port);
        if let Some(id) = cx.active(&key) {
            if let Some(ep) = cx.book.get_mut(id) {
                // Not `Episode::add`: an aggregate has no target of its own.
                ep.probes += count;
                ep.first_ns = ep.first_ns.min(p.ts_ns);
                ep.last_ns = ep.last_ns.max(p.ts_ns);
                if r.src.is_some() {
                    ep.sources.insert(p.src);
                }
                if let Some(f) = ep.evidence_mut::<Flood>() {
                    f.aggregated += count;
                    f.peak_pps = f.peak_pps.max(n + events);
                }
            }
            return;
        }
        if n + events < u64::from(cx.cfg.flood_pps) {
            return;
        }
        let evidence = Box::new(Flood {
            peak_pps: n + events,
            aggregated: n,
            run: None,
        });
        cx.start(Kind(&FLOOD), key, &p, evidence, |ep| {
            ep.targets = Default::default();
            if r.src.is_some() {
                ep.sources.insert(p.src);
            }
            if super::probe::ported(p.proto) {
                ep.add_port(port);
            }
            ep.first_ns = sec * SEC;
            ep.probes = n + events;
        });
    }
}
