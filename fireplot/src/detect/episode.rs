//! An episode: one alert's worth of evidence, from the probe that crossed a
//! threshold until it has been idle for `episode_idle_s`.

use rustc_hash::FxHashSet;

use super::{
    probe::{addr, FlagType, Probe, Role},
    surge::SurgeTest,
    tools::ToolVotes,
};

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

    /// Every member kept (all of them up to the cap), in no order.
    pub fn iter(&self) -> impl Iterator<Item = std::net::IpAddr> + '_ {
        self.set.iter().map(|a| addr(*a))
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
    /// Of `probes`, packets the kernel counted in aggregates (a flood past
    /// its limits) rather than sent one by one.
    pub aggregated: u64,
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
            aggregated: 0,
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

    pub fn bytes(&self) -> usize {
        std::mem::size_of::<Self>()
            + self.sources.bytes()
            + self.targets.bytes()
            + self.ports.bytes()
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
