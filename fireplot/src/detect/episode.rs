//! An episode: one alert's worth of evidence, from the probe that crossed a
//! threshold until its detector says it is over (by default after
//! `episode_idle_s` without a probe).
//!
//! What every episode has (times, probes, sources, targets, ports, the
//! order they came in, scanner signatures) lives here; what only one kind
//! needs (a flood's peak, a surge's test, a lockstep group's lag) is that
//! kind's [`Evidence`], owned by the detector's own file. An episode is
//! said as an alert record ([`Episode::alert`]).

use std::any::Any;

use super::{
    alert::{Alert, Ports, Targets},
    config::DetectConfig,
    probe::Probe,
    sets::{AddrSet, Order, PortSet},
    tools::ToolVotes,
    words::{human_secs, severity, thousands},
};
use crate::record::line::{flags_string, rfc3339_ns, Proto};

/// What an alert kind is, declared once by the detector that raises it.
#[derive(Debug)]
pub struct KindSpec {
    /// The alert's `kind` ("port_scan").
    pub name: &'static str,
    /// About one scanner or flooder: its alert names the tool its probes
    /// carry the signature of.
    pub names_tool: bool,
    /// About one source on its own (not a group): `ignore_tags` keeps it
    /// quiet for a tagged source.
    pub one_source: bool,
    /// About many sources: the alert counts their networks and countries.
    pub many_sources: bool,
    /// The `order` said is of targets (a sweep), not of ports.
    pub orders_targets: bool,
    /// Keyed by a destination and fed every later answer (SYN-ACK, RST,
    /// ICMP error) to it, whoever sends it, rather than only what its
    /// joined sources send.
    pub routes_by_dst: bool,
}

/// An alert kind: a reference to its one [`KindSpec`], compared by identity.
#[derive(Clone, Copy)]
pub struct Kind(pub &'static KindSpec);

impl Kind {
    pub fn name(self) -> &'static str {
        self.0.name
    }
}

impl PartialEq for Kind {
    fn eq(&self, other: &Kind) -> bool {
        std::ptr::eq(self.0, other.0)
    }
}

impl Eq for Kind {}

impl std::hash::Hash for Kind {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        std::ptr::hash(self.0, h)
    }
}

impl std::fmt::Debug for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0.name)
    }
}

/// What an episode is about; one active episode per key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Key {
    /// One source (and protocol, where the kind is per protocol).
    Src(Kind, u128, u8),
    /// One target address.
    Dst(Kind, u128),
    /// One (protocol, port).
    Port(Kind, u8, u16),
}

/// How a probe reached an episode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Via {
    /// Through its source; `sec_count` is the source's events in this
    /// second so far.
    Source { sec_count: u32 },
    /// Through its (protocol, port).
    Port,
    /// Through its destination.
    Dst,
}

/// What one kind of episode knows beyond what every episode has, and how
/// it is said. Implemented in each detector's own file.
pub trait Evidence: Any + Send {
    /// Does a probe of a source routed to this episode (keyed by `key`)
    /// count for it?
    fn accepts(&self, key: &Key, p: &Probe) -> bool;
    /// Counts a probe the episode accepted (after the shared fields).
    fn add(&mut self, _p: &Probe, _via: Via) {}
    /// 1 (least) to 5.
    fn severity(&self, ep: &Episode, _cfg: &DetectConfig) -> u8 {
        let breadth = ep.breadth();
        let breadth = if ep.kind.0.many_sources {
            ep.sources.count().max(breadth)
        } else {
            breadth
        };
        severity(ep.probes, breadth, ep.duration_s())
    }
    /// The alert's one-sentence summary.
    fn summary(&self, ep: &Episode, s: &Said) -> String;
    /// The kind's own fields of the alert record.
    fn fields(&self, _ep: &Episode, _cfg: &DetectConfig, _a: &mut Alert) {}
    /// Heap bytes held beyond the episode's own size.
    fn heap_bytes(&self) -> usize {
        0
    }
}

/// The evidence of one episode.
pub struct Episode {
    pub id: u64,
    pub kind: Kind,
    pub key: Key,
    /// The detector that started it (its place in the engine's list).
    pub owner: u8,
    pub first_ns: i64,
    pub last_ns: i64,
    pub probes: u64,
    pub proto: u8,
    pub flags: u8,
    pub sources: AddrSet,
    pub targets: AddrSet,
    pub ports: PortSet,
    pub port_min: Option<u16>,
    pub port_max: Option<u16>,
    pub port_sample: Vec<u16>,
    /// Order of ports (scans) or targets (sweeps).
    pub order: Order,
    /// Scanner signatures of the probes.
    pub tools: ToolVotes,
    /// What only this kind knows.
    pub evidence: Box<dyn Evidence>,
    /// Last source and target added (skips the set lookups for runs).
    last_src: Option<u128>,
    last_dst: Option<u128>,
}

impl Episode {
    pub fn new(
        id: u64,
        kind: Kind,
        key: Key,
        owner: u8,
        p: &Probe,
        evidence: Box<dyn Evidence>,
    ) -> Episode {
        Episode {
            id,
            kind,
            key,
            owner,
            first_ns: p.ts_ns,
            last_ns: p.ts_ns,
            probes: 0,
            proto: p.proto,
            flags: p.flags,
            sources: AddrSet::default(),
            targets: AddrSet::default(),
            ports: PortSet::default(),
            port_min: None,
            port_max: None,
            port_sample: Vec::new(),
            order: Order::default(),
            tools: ToolVotes::default(),
            evidence,
            last_src: None,
            last_dst: None,
        }
    }

    /// This kind's evidence, to change it.
    pub fn evidence_mut<T: Evidence>(&mut self) -> Option<&mut T> {
        (self.evidence.as_mut() as &mut dyn Any).downcast_mut::<T>()
    }

    /// This kind's evidence.
    pub fn evidence<T: Evidence>(&self) -> Option<&T> {
        (self.evidence.as_ref() as &dyn Any).downcast_ref::<T>()
    }

    /// Records a port as evidence (seeding from earlier state).
    pub fn add_port(&mut self, port: u16) {
        if self.ports.insert(port) {
            self.port_min = Some(self.port_min.map_or(port, |m| m.min(port)));
            self.port_max = Some(self.port_max.map_or(port, |m| m.max(port)));
            if self.port_sample.len() < 8 {
                self.port_sample.push(port);
            }
        }
    }

    /// The source, target and port of the probe that crossed a threshold
    /// (without counting it: the seed says how many probes there were).
    pub fn seed_from(&mut self, p: &Probe) {
        self.sources.insert(p.src);
        self.targets.insert(p.dst);
        if super::probe::ported(p.proto) {
            self.add_port(p.port);
        }
    }

    /// Adds one probe's evidence.
    pub fn add(&mut self, p: &Probe, via: Via) {
        self.probes += 1;
        self.first_ns = self.first_ns.min(p.ts_ns);
        self.last_ns = self.last_ns.max(p.ts_ns);
        if self.last_src != Some(p.src) {
            self.sources.insert(p.src);
            self.last_src = Some(p.src);
        }
        if self.last_dst != Some(p.dst) {
            self.targets.insert(p.dst);
            self.last_dst = Some(p.dst);
        }
        if super::probe::ported(p.proto) {
            self.add_port(p.port);
        }
        if self.kind.0.orders_targets {
            self.order.push(p.dst);
        } else {
            self.order.push(p.port as u128);
        }
        self.evidence.add(p, via);
        self.tools.add(p);
    }

    pub fn duration_s(&self) -> f64 {
        (self.last_ns - self.first_ns) as f64 / 1e9
    }

    /// Distinct ports or targets, whichever is more.
    pub fn breadth(&self) -> u64 {
        self.ports.len().max(self.targets.count() as u32) as u64
    }

    pub fn bytes(&self) -> usize {
        std::mem::size_of::<Self>()
            + std::mem::size_of_val(self.evidence.as_ref())
            + self.evidence.heap_bytes()
            + self.sources.bytes()
            + self.targets.bytes()
            + self.ports.bytes()
    }
}

/// What every summary may use, said once: the episode's first source and
/// target, its counts in words, how long it took, its speed and order.
pub struct Said<'a> {
    pub cfg: &'a DetectConfig,
    /// `started` (the episode is going on) rather than `ended`.
    pub going: bool,
    /// The protocol's name in capitals ("TCP").
    pub proto: String,
    pub src: String,
    pub target: String,
    pub ports: String,
    pub targets: String,
    pub probes: String,
    pub took: String,
    pub dur: f64,
    pub speed: &'static str,
    pub order: &'static str,
}

/// How an episode is said: its alert record. The kind's evidence says its
/// severity, its summary and its own fields.
impl Episode {
    fn speed(&self, fast_max_interval_s: f64) -> &'static str {
        if self.probes < 2 || self.duration_s() / (self.probes - 1) as f64 <= fast_max_interval_s {
            "fast"
        } else {
            "slow"
        }
    }

    /// The alert record of this episode now.
    pub fn alert(&self, status: &str, cfg: &DetectConfig) -> Alert {
        let proto_name = match Proto::from_number(self.proto) {
            Proto::Name(n) => n,
            Proto::Number(n) => n.to_string(),
        };
        let dur = self.duration_s();
        let rate = self.probes as f64 / dur.max(0.001);
        let speed = self.speed(cfg.fast_max_interval_s);
        let order = self.order.name();
        let said = Said {
            cfg,
            going: status == "started",
            proto: proto_name.to_uppercase(),
            src: self.sources.sample().first().cloned().unwrap_or_default(),
            target: self.targets.sample().first().cloned().unwrap_or_default(),
            ports: thousands(self.ports.len() as u64),
            targets: thousands(self.targets.count()),
            probes: thousands(self.probes),
            took: human_secs(dur),
            dur,
            speed,
            order,
        };
        let mut a = Alert {
            id: self.id,
            status: status.into(),
            kind: self.kind.name().into(),
            first_seen: rfc3339_ns(self.first_ns as i128),
            last_seen: rfc3339_ns(self.last_ns as i128),
            sources: self.sources.sorted(32),
            source_count: self.sources.count(),
            targets: Targets {
                count: self.targets.count(),
                sample: self.targets.sample(),
            },
            proto: proto_name,
            ports: Ports {
                count: self.ports.len() as u64,
                min: self.port_min,
                max: self.port_max,
                sample: self.port_sample.clone(),
            },
            probes: self.probes,
            rate_pps: (rate * 10.0).round() / 10.0,
            flags: if self.proto == 6 {
                flags_string(self.flags)
            } else {
                String::new()
            },
            severity: self.evidence.severity(self, cfg),
            speed: speed.into(),
            order: order.into(),
            summary: self.evidence.summary(self, &said),
            tool: self.kind.0.names_tool.then(|| {
                self.tools
                    .name(cfg.tool_min_probes, cfg.tool_min_share)
                    .to_string()
            }),
            ..Alert::default()
        };
        self.evidence.fields(self, cfg, &mut a);
        a
    }
}
