//! An episode: one alert's worth of evidence, from the probe that crossed a
//! threshold until it has been idle for `episode_idle_s`.

use rustc_hash::FxHashSet;

use super::{
    alert::{human_secs, severity, thousands, Alert, Ports, Targets},
    config::DetectConfig,
    probe::{addr, FlagType, Probe, Role},
    surge::SurgeTest,
    tools::ToolVotes,
};
use crate::record::line::{flags_string, rfc3339_ns, Proto};

/// Alert kinds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    PortScan,
    PortSweep,
    DistributedScan,
    FlagScan,
    PortSurge,
    Backscatter,
    Flood,
    ProtocolScan,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::PortScan => "port_scan",
            Kind::PortSweep => "port_sweep",
            Kind::DistributedScan => "distributed_scan",
            Kind::FlagScan => "flag_scan",
            Kind::PortSurge => "port_surge",
            Kind::Backscatter => "backscatter",
            Kind::Flood => "flood",
            Kind::ProtocolScan => "protocol_scan",
        }
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

/// Ascending / descending / random, from successive values.
#[derive(Clone, Copy, Debug, Default)]
pub struct Order {
    last: Option<u128>,
    up: u64,
    down: u64,
}

impl Order {
    pub fn push(&mut self, v: u128) {
        if let Some(l) = self.last {
            if v > l {
                self.up += 1;
            } else if v < l {
                self.down += 1;
            }
        }
        self.last = Some(v);
    }

    pub fn name(&self) -> &'static str {
        let steps = self.up + self.down;
        if steps < 2 {
            "random"
        } else if self.up * 10 >= steps * 8 {
            "ascending"
        } else if self.down * 10 >= steps * 8 {
            "descending"
        } else {
            "random"
        }
    }
}

/// A set of ports: a short list, then a 65,536-bit bitmap.
#[derive(Clone, Debug, Default)]
pub struct PortSet {
    small: Vec<u16>,
    bits: Option<Box<[u64; 1024]>>,
    count: u32,
}

impl PortSet {
    const SMALL: usize = 24;

    /// Adds a port; true if it was new.
    pub fn insert(&mut self, p: u16) -> bool {
        if let Some(b) = self.bits.as_mut() {
            let (w, bit) = ((p >> 6) as usize, 1u64 << (p & 63));
            if b[w] & bit != 0 {
                return false;
            }
            b[w] |= bit;
            self.count += 1;
            return true;
        }
        if self.small.contains(&p) {
            return false;
        }
        if self.small.len() < Self::SMALL {
            self.small.push(p);
        } else {
            let mut b = Box::new([0u64; 1024]);
            for q in self.small.drain(..).chain(std::iter::once(p)) {
                b[(q >> 6) as usize] |= 1u64 << (q & 63);
            }
            self.bits = Some(b);
        }
        self.count += 1;
        true
    }

    pub fn len(&self) -> u32 {
        self.count
    }

    /// The ports, in insertion order while the set is small.
    pub fn iter(&self) -> Vec<u16> {
        match &self.bits {
            None => self.small.clone(),
            Some(b) => (0..=u16::MAX)
                .filter(|p| b[(p >> 6) as usize] & (1u64 << (p & 63)) != 0)
                .collect(),
        }
    }

    /// Does the set hold more than its short list (a bitmap)?
    pub fn is_bitmap(&self) -> bool {
        self.bits.is_some()
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    pub fn contains(&self, p: u16) -> bool {
        match &self.bits {
            Some(b) => b[(p >> 6) as usize] & (1u64 << (p & 63)) != 0,
            None => self.small.contains(&p),
        }
    }

    pub fn bytes(&self) -> usize {
        std::mem::size_of::<Self>()
            + self.small.capacity() * 2
            + if self.bits.is_some() { 8192 } else { 0 }
    }
}

/// Addresses: exact up to a cap, then only counted.
#[derive(Clone, Debug, Default)]
pub struct AddrSet {
    set: FxHashSet<u128>,
    first: Vec<u128>,
    pub over: u64,
}

impl AddrSet {
    const CAP: usize = 65_536;
    const SAMPLE: usize = 5;

    pub fn insert(&mut self, a: u128) -> bool {
        if self.set.len() >= Self::CAP {
            if !self.set.contains(&a) {
                self.over += 1;
            }
            return false;
        }
        let new = self.set.insert(a);
        if new && self.first.len() < Self::SAMPLE {
            self.first.push(a);
        }
        new
    }

    pub fn count(&self) -> u64 {
        self.set.len() as u64 + self.over
    }

    pub fn sample(&self) -> Vec<String> {
        self.first.iter().map(|a| addr(*a).to_string()).collect()
    }

    /// All members, sorted (for small sets such as the sources of a group).
    pub fn sorted(&self, limit: usize) -> Vec<String> {
        let mut v: Vec<u128> = self.set.iter().copied().collect();
        v.sort_unstable();
        v.into_iter()
            .take(limit)
            .map(|a| addr(a).to_string())
            .collect()
    }

    pub fn contains(&self, a: u128) -> bool {
        self.set.contains(&a)
    }

    pub fn bytes(&self) -> usize {
        self.set.capacity() * 17 + self.first.capacity() * 16
    }
}

/// The evidence of one episode.
#[derive(Clone, Debug)]
pub struct Episode {
    pub id: u64,
    pub kind: Kind,
    pub key: Key,
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
    pub synchronized: Option<bool>,
    pub lag_ms: Option<f64>,
    pub flag_type: Option<FlagType>,
    pub protocols: Option<[u64; 4]>,
    pub baseline: Option<f64>,
    /// Flood: the highest one-second count.
    pub peak_pps: u64,
    /// Flood by hammering: the run of packets to one target port.
    pub run: Option<Run>,
    /// Scanner signatures of the probes.
    pub tools: ToolVotes,
    /// flag_scan: distinct odd flag bytes (a 256-bit set).
    pub combos: Option<[u64; 4]>,
    /// port_surge: the strongest significant test.
    pub surge: Option<SurgeTest>,
    /// port_surge: new sources of the window before the episode started
    /// (the episode's own set holds those seen since).
    pub surge_before: u64,
    /// backscatter: one victim answering many of our addresses (keyed by
    /// the source), not many sources answering one (keyed by the target).
    pub one_victim: bool,
    /// Last source and target added (skips the set lookups for runs).
    last_src: Option<u128>,
    last_dst: Option<u128>,
}

impl Episode {
    pub fn new(id: u64, kind: Kind, key: Key, p: &Probe) -> Episode {
        Episode {
            id,
            kind,
            key,
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
            synchronized: None,
            lag_ms: None,
            flag_type: None,
            protocols: None,
            baseline: None,
            peak_pps: 0,
            run: None,
            tools: ToolVotes::default(),
            combos: None,
            surge: None,
            surge_before: 0,
            one_victim: false,
            last_src: None,
            last_dst: None,
        }
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

    /// Adds one probe's evidence.
    pub fn add(&mut self, p: &Probe) {
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
        if matches!(p.proto, 6 | 17) {
            self.add_port(p.port);
        }
        match self.kind {
            Kind::PortSweep => self.order.push(p.dst),
            _ => self.order.push(p.port as u128),
        }
        if let Some(bits) = self.protocols.as_mut() {
            bits[(p.proto >> 6) as usize] |= 1u64 << (p.proto & 63);
        }
        if let Some(r) = self.run.as_mut() {
            if r.matches(p) {
                r.count += 1;
                r.last_ns = r.last_ns.max(p.ts_ns);
            }
        }
        if let (Some(c), Role::Odd(_)) = (self.combos.as_mut(), p.role) {
            c[(p.flags >> 6) as usize] |= 1u64 << (p.flags & 63);
        }
        self.tools.add(p);
    }

    pub fn duration_s(&self) -> f64 {
        (self.last_ns - self.first_ns) as f64 / 1e9
    }

    fn speed(&self, fast_max_interval_s: f64) -> &'static str {
        if self.probes < 2 || self.duration_s() / (self.probes - 1) as f64 <= fast_max_interval_s {
            "fast"
        } else {
            "slow"
        }
    }

    fn protocol_list(&self) -> Vec<u8> {
        let Some(bits) = self.protocols else {
            return Vec::new();
        };
        (0..=255u8)
            .filter(|p| bits[(p >> 6) as usize] & (1u64 << (p & 63)) != 0)
            .collect()
    }

    pub fn bytes(&self) -> usize {
        std::mem::size_of::<Self>()
            + self.sources.bytes()
            + self.targets.bytes()
            + self.ports.bytes()
    }

    /// The alert record of this episode now.
    pub fn alert(&self, status: &str, cfg: &DetectConfig) -> Alert {
        let fast_max_interval_s = cfg.fast_max_interval_s;
        let proto_name = match Proto::from_number(self.proto) {
            Proto::Name(n) => n,
            Proto::Number(n) => n.to_string(),
        };
        let dur = self.duration_s();
        let rate = self.probes as f64 / dur.max(0.001);
        let breadth = self.ports.len().max(self.targets.count() as u32) as u64;
        let hammering = self.kind == Kind::Flood
            && self.run.is_some()
            && self.peak_pps < u64::from(cfg.flood_pps);
        let sev = match self.kind {
            Kind::Flood if hammering => {
                let n = self.run.map_or(0, |r| r.count);
                cfg.hammer_levels.iter().filter(|l| n >= **l).count().max(1) as u8
            }
            Kind::Flood => match self.peak_pps {
                0..=49_999 => 3,
                50_000..=199_999 => 4,
                _ => 5,
            },
            Kind::PortSurge | Kind::Backscatter | Kind::DistributedScan => {
                severity(self.probes, self.sources.count().max(breadth), dur)
            }
            _ => severity(self.probes, breadth, dur),
        };
        let sources = self.sources.sorted(32);
        let speed = self.speed(fast_max_interval_s);
        let order = self.order.name();
        let summary = self.summary(
            status,
            &proto_name.to_uppercase(),
            dur,
            speed,
            order,
            hammering,
        );
        let per_source = matches!(
            self.kind,
            Kind::PortScan
                | Kind::PortSweep
                | Kind::FlagScan
                | Kind::ProtocolScan
                | Kind::Flood
                | Kind::DistributedScan
        );
        Alert {
            id: self.id,
            status: status.into(),
            kind: self.kind.name().into(),
            first_seen: rfc3339_ns(self.first_ns as i128),
            last_seen: rfc3339_ns(self.last_ns as i128),
            sources,
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
            severity: sev,
            speed: speed.into(),
            order: order.into(),
            summary,
            synchronized: self.synchronized,
            lag_ms: self.lag_ms.map(|l| (l * 1000.0).round() / 1000.0),
            flag_type: self.flag_type.map(|f| f.name().to_string()),
            protocols: self.protocols.map(|_| self.protocol_list()),
            baseline: self.baseline.map(|b| (b * 100.0).round() / 100.0),
            horizon_s: self.surge.map(|t| t.horizon_s),
            horizon_sources: self.surge.map(|t| t.sources),
            log10_p: self.surge.map(|t| (t.log10_p * 10.0).round() / 10.0),
            count: self.run.filter(|_| hammering).map(|r| r.count),
            window_s: self
                .run
                .filter(|_| hammering)
                .map(|r| ((r.last_ns - r.first_ns) as f64 / 1e8).round() / 10.0),
            shape: (self.kind == Kind::Backscatter).then(|| {
                if self.one_victim {
                    "one_victim"
                } else {
                    "many_sources"
                }
                .to_string()
            }),
            combos: self.combos.map(|c| combo_names(&c)),
            tool: per_source.then(|| {
                self.tools
                    .name(cfg.tool_min_probes, cfg.tool_min_share)
                    .to_string()
            }),
        }
    }

    fn summary(
        &self,
        status: &str,
        proto: &str,
        dur: f64,
        speed: &str,
        order: &str,
        hammering: bool,
    ) -> String {
        let src = self.sources.sample().first().cloned().unwrap_or_default();
        let target = self.targets.sample().first().cloned().unwrap_or_default();
        let ports = thousands(self.ports.len() as u64);
        let targets = thousands(self.targets.count());
        let probes = thousands(self.probes);
        let took = human_secs(dur);
        let going = status == "started";
        match self.kind {
            Kind::PortScan if going => format!(
                "{src} is scanning {proto} ports of {target}: {ports} ports in {took} so far ({speed}, {order} order)"
            ),
            Kind::PortScan => format!(
                "{src} probed {ports} {proto} ports of {} in {took}, {order}{}",
                if self.targets.count() > 1 { format!("{targets} hosts (first {target})") } else { target },
                if speed == "slow" { ", slowly" } else { "" }
            ),
            Kind::PortSweep => {
                let list = self.port_sample.iter().map(|p| p.to_string()).collect::<Vec<_>>().join(", ");
                let on = if list.is_empty() { format!("with {proto}") } else { format!("on {proto} port{} {list}", if self.port_sample.len() > 1 { "s" } else { "" }) };
                if going {
                    format!("{src} is sweeping hosts {on}: {targets} hosts in {took} so far ({speed})")
                } else {
                    format!("{src} swept {targets} hosts {on} in {took}, {order} order")
                }
            }
            Kind::DistributedScan => {
                let n = self.sources.count();
                let who = self.sources.sorted(4).join(", ");
                let how = match (self.synchronized, self.lag_ms) {
                    (Some(true), Some(l)) => format!("in lockstep (lag {l:.1} ms): a decoy or coordinated scan"),
                    _ => "sharing the work".into(),
                };
                format!(
                    "{n} sources ({who}{}) {} {ports} {proto} ports of {target} {how}",
                    if n > 4 { ", ..." } else { "" },
                    if going { "are probing" } else { "probed" }
                )
            }
            Kind::FlagScan if self.combos.is_some_and(|c| combo_count(&c) > 1) => {
                let names = combo_names(&self.combos.unwrap_or_default());
                format!(
                    "{src} {} {} different odd TCP flag combinations ({}) to {ports} port{} of {target}: OS or firewall fingerprinting",
                    if going { "has sent" } else { "sent" },
                    names.len(),
                    names.iter().take(6).cloned().collect::<Vec<_>>().join(", ") + if names.len() > 6 { ", ..." } else { "" },
                    if self.ports.len() == 1 { "" } else { "s" }
                )
            }
            Kind::FlagScan => {
                let t = self.flag_type.map(FlagType::title).unwrap_or("odd-flag");
                let fl = flags_string(self.flags);
                format!(
                    "{src} {} {probes} {t} ({}) probes to {ports} TCP ports of {target} in {took}",
                    if going { "has sent" } else { "sent" },
                    if fl.is_empty() { "no flags".to_string() } else { fl }
                )
            }
            Kind::ProtocolScan => format!(
                "{src} {} {} IP protocols of {target} in {took}",
                if going { "is probing" } else { "probed" },
                self.protocol_list().len()
            ),
            Kind::PortSurge => {
                let port = self.port_sample.first().copied().unwrap_or(0);
                let t = self.surge.unwrap_or(SurgeTest {
                    horizon_s: 0,
                    sources: self.sources.count(),
                    baseline_per_day: 0.0,
                    log10_p: 0.0,
                });
                let base = per_day(t.baseline_per_day);
                if going {
                    format!(
                        "{proto}/{port}: {} distinct sources in {}, baseline {base}",
                        thousands(t.sources),
                        human_secs(t.horizon_s as f64)
                    )
                } else {
                    format!(
                        "{proto}/{port}: {} distinct sources in {took}, baseline {base}",
                        thousands(self.surge_before + self.sources.count()),
                    )
                }
            }
            Kind::Backscatter if self.one_victim => {
                let what = match (self.proto, self.flags & 0x14) {
                    (6, 0x10) => "SYN-ACKs",
                    (6, _) => "RSTs",
                    _ => "ICMP errors",
                };
                let from = match self.run {
                    Some(r) if r.port != 0 => format!(" from port {}", r.port),
                    _ => String::new(),
                };
                format!(
                    "{src} {} a spoofed flood: {probes} {what}{from} to {targets} of our addresses in {took}",
                    if going { "is answering" } else { "answered" }
                )
            }
            Kind::Flood if hammering => {
                let r = self.run.unwrap_or_default();
                let span = (r.last_ns - r.first_ns) as f64 / 1e9;
                format!(
                    "{src} {} {proto}/{} of {} with {} packets in {} ({:.1}/s)",
                    if going { "is hammering" } else { "hammered" },
                    r.port,
                    addr(r.dst),
                    thousands(r.count),
                    human_secs(span),
                    r.count as f64 / span.max(0.001)
                )
            }
            Kind::Backscatter => format!(
                "{target} {} unsolicited SYN-ACK/RST/ICMP errors from {} sources: someone is spoofing this address in an attack elsewhere",
                if going { "is getting" } else { "got" },
                thousands(self.sources.count())
            ),
            Kind::Flood => match self.key {
                Key::Port(_, _, port) => format!(
                    "{proto} port {port} {} {probes} probes from {} sources, peak {}/s",
                    if going { "is flooded:" } else { "was flooded:" },
                    thousands(self.sources.count()),
                    thousands(self.peak_pps)
                ),
                _ => format!(
                    "{src} {} {probes} packets to {target}, peak {}/s",
                    if going { "is flooding:" } else { "flooded:" },
                    thousands(self.peak_pps)
                ),
            },
        }
    }
}

/// A run of packets from one source to one target port (hammering), or
/// for one-victim backscatter the victim's dominant source port.
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

fn combo_count(c: &[u64; 4]) -> u32 {
    c.iter().map(|w| w.count_ones()).sum()
}

/// The flag combinations of a set, named ("NULL" for none).
fn combo_names(c: &[u64; 4]) -> Vec<String> {
    (0..=255u8)
        .filter(|f| c[(f >> 6) as usize] & (1u64 << (f & 63)) != 0)
        .map(|f| {
            let s = flags_string(f);
            if s.is_empty() {
                "NULL".to_string()
            } else {
                s
            }
        })
        .collect()
}

/// "4 a day", "0.3 a day", "2.5 an hour".
fn per_day(rate: f64) -> String {
    if rate >= 48.0 {
        format!("{:.0} an hour", rate / 24.0)
    } else if rate >= 10.0 {
        format!("{rate:.0} a day")
    } else {
        format!("{rate:.1} a day")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_set_grows_into_a_bitmap() {
        let mut s = PortSet::default();
        for p in 0..100u16 {
            assert!(s.insert(p * 3));
            assert!(!s.insert(p * 3));
        }
        assert_eq!(s.len(), 100);
        assert!(s.bytes() > 8192);
    }

    #[test]
    fn order_is_named() {
        let mut o = Order::default();
        (1..=50u128).for_each(|v| o.push(v));
        assert_eq!(o.name(), "ascending");
        let mut o = Order::default();
        (1..=50u128).rev().for_each(|v| o.push(v));
        assert_eq!(o.name(), "descending");
        let mut o = Order::default();
        [5u128, 1, 9, 3, 7, 2, 8].iter().for_each(|v| o.push(*v));
        assert_eq!(o.name(), "random");
    }
}
