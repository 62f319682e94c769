//! Per-source state under a memory budget.
//!
//! Every source gets a 48-byte `Light` record. Most internet background
//! sources send one or two probes and never need more. A source whose
//! probes differ (another target, port or protocol) is promoted to a
//! `Heavy` record with per-target port sets, protocol bits and odd-flag
//! probes. Sources are evicted least-recently-seen first (a FIFO with a
//! second chance) when the table is full or they have been idle for
//! `source_idle_s`; every eviction is counted.

use std::collections::VecDeque;

use rustc_hash::{FxHashMap, FxHashSet};

use super::{
    probe::{FlagType, Probe},
    sets::PortSet,
};

/// The small record every source has.
#[derive(Clone, Copy, Debug)]
pub struct Light {
    pub first_dst: u128,
    pub first_ns: i64,
    pub last_ns: i64,
    /// Second (event time) of `sec_count`.
    pub sec: i64,
    pub sec_count: u32,
    pub probes: u32,
    pub first_port: u16,
    pub first_proto: u8,
    /// Role of the first probe: 0 scan probe, 1 + `FlagType` odd, 255 backscatter.
    pub first_role: u8,
    /// The first probe's destination (address or port) had never answered.
    pub first_dark: bool,
    pub heavy: bool,
    /// A second, different probe (internet background sends one or two):
    /// kept here so such sources never need a heavy record.
    pub second_dst: u128,
    pub second_port: u16,
    pub second_proto: u8,
    pub second_role: u8,
    pub second_dark: bool,
    pub has_second: bool,
}

impl Light {
    /// Is this probe the same as the source's first one?
    pub fn same_as_first(&self, dst: u128, port: u16, proto: u8) -> bool {
        self.first_dst == dst && self.first_port == port && self.first_proto == proto
    }

    pub fn same_as_second(&self, dst: u128, port: u16, proto: u8) -> bool {
        self.has_second
            && self.second_dst == dst
            && self.second_port == port
            && self.second_proto == proto
    }
}

/// Ports probed on one target.
#[derive(Clone, Debug, Default)]
pub struct TargetPorts {
    pub ports: PortSet,
    /// How many of `ports` were dark when first probed.
    pub dark: u32,
}

impl TargetPorts {
    /// Enough ports, or enough dark ones, for a port scan?
    pub fn is_scan(&self, scan_ports: u32, scan_dark_ports: u32) -> bool {
        self.ports.len() >= scan_ports || self.dark >= scan_dark_ports
    }
}

/// Slots of per-protocol evidence: TCP, UDP, the other protocols with
/// ports (SCTP, UDP-Lite, DCCP), the protocols without.
pub const SLOTS: usize = 4;
/// Slots below this one have ports.
pub const PORTED_SLOTS: usize = 3;

/// Slot of per-protocol evidence.
pub fn proto_slot(proto: u8) -> usize {
    match proto {
        6 => 0,
        17 => 1,
        p if super::probe::ported(p) => 2,
        _ => 3,
    }
}

/// Evidence of a source that does more than one thing.
#[derive(Clone, Debug, Default)]
pub struct Heavy {
    /// Ports per (target, protocol) (scan probes only), at most `MAX_TARGETS` entries.
    pub targets: FxHashMap<(u128, u8), TargetPorts>,
    /// Distinct targets per protocol slot (beyond the cap: counted per probe).
    pub target_counts: [u64; SLOTS],
    /// Of those, targets whose first probe was dark.
    pub dark_targets: [u64; SLOTS],
    /// Distinct ports over all targets per protocol slot, counted up to `sweep_max_ports + 1`.
    pub union_ports: [Vec<u16>; SLOTS],
    pub union_over: [bool; SLOTS],
    /// Odd-flag probes: distinct (target, port), counted up to the threshold.
    pub odd: FxHashSet<(u128, u16)>,
    pub odd_types: Vec<(FlagType, u32, u8)>,
    /// Distinct odd flag bytes (a 256-bit set).
    pub odd_combos: [u64; 4],
    /// Scanner signatures of its probes.
    pub tools: super::tools::ToolVotes,
    /// IP protocols seen.
    pub protocols: [u64; 4],
    /// Some target's ports make a port scan, per protocol slot.
    pub scan_target: [bool; SLOTS],
    /// Order of ports and of targets probed.
    pub port_order: super::sets::Order,
    pub target_order: super::sets::Order,
    /// Port sets that grew into bitmaps.
    pub bitmaps: usize,
    pub bytes: usize,
}

impl Heavy {
    pub const MAX_TARGETS: usize = 4096;

    pub fn protocol_count(&self) -> u32 {
        self.protocols.iter().map(|w| w.count_ones()).sum()
    }

    /// Bytes held, without walking the targets (kept cheap: it runs per probe).
    pub fn estimate_bytes(&self) -> usize {
        std::mem::size_of::<Self>()
            + self.targets.capacity() * (32 + std::mem::size_of::<TargetPorts>() + 1 + 48)
            + self.bitmaps * 8192
            + self
                .union_ports
                .iter()
                .map(|u| u.capacity() * 2)
                .sum::<usize>()
            + self.odd.capacity() * 25
    }
}

/// The table of sources.
pub struct Sources {
    pub light: FxHashMap<u128, Light>,
    pub heavy: FxHashMap<u128, Box<Heavy>>,
    fifo: VecDeque<(u128, i64)>,
    pub max_sources: usize,
    pub heavy_bytes: usize,
    fixed_bytes: usize,
    /// Sources dropped to stay in the budget.
    pub evicted: u64,
    /// Sources forgotten after `source_idle_s`.
    pub expired: u64,
}

const LIGHT_ENTRY: usize = std::mem::size_of::<(u128, Light)>() + 1;
const FIFO_ENTRY: usize = std::mem::size_of::<(u128, i64)>();

impl Sources {
    /// A table sized so that it and its queue take at most `bytes`.
    ///
    /// The map is kept at most half full: hashbrown then reuses the slots
    /// of evicted entries by rehashing in place instead of doubling.
    pub fn with_budget(bytes: usize) -> Sources {
        let mut buckets = 1usize << 10;
        while (buckets * 2) * LIGHT_ENTRY + (buckets * 2) * 7 / 16 * FIFO_ENTRY <= bytes {
            buckets *= 2;
        }
        let max = buckets * 7 / 16;
        // The table grows as sources arrive (a small table is a fast one);
        // at `max` entries it is half full and stops growing.
        let light = FxHashMap::with_capacity_and_hasher(1024, Default::default());
        let fifo = VecDeque::with_capacity(1024);
        let fixed_bytes = 0;
        Sources {
            light,
            heavy: FxHashMap::default(),
            fifo,
            max_sources: max,
            heavy_bytes: 0,
            fixed_bytes,
            evicted: 0,
            expired: 0,
        }
    }

    pub fn bytes(&self) -> usize {
        let buckets = (self.light.capacity() * 8 / 7).next_power_of_two();
        self.fixed_bytes
            .max(buckets * LIGHT_ENTRY + self.fifo.capacity() * FIFO_ENTRY)
            + self.heavy.capacity() * 25
            + self.heavy_bytes
    }

    /// The source's record, created if new (evicting the oldest if full).
    pub fn touch(&mut self, p: &Probe) -> (&mut Light, bool) {
        let (src, ts_ns) = (p.src, p.ts_ns);
        if self.light.len() >= self.max_sources && !self.light.contains_key(&src) {
            while self.light.len() >= self.max_sources {
                if !self.evict_front(None) {
                    break;
                }
            }
        }
        let mut new = false;
        let l = self.light.entry(src).or_insert_with(|| {
            new = true;
            Light {
                first_dst: p.dst,
                first_ns: ts_ns,
                last_ns: ts_ns,
                sec: ts_ns.div_euclid(1_000_000_000),
                sec_count: 0,
                probes: 0,
                first_port: p.port,
                first_proto: p.proto,
                first_role: p.role.code(),
                first_dark: p.dark,
                heavy: false,
                second_dst: 0,
                second_port: 0,
                second_proto: 0,
                second_role: 0,
                second_dark: false,
                has_second: false,
            }
        });
        if new {
            self.fifo.push_back((src, ts_ns));
        }
        (l, new)
    }

    /// Removes the least recently seen source. With `idle_before`, only if
    /// it was last seen before then (expiry); otherwise unconditionally
    /// (budget). Returns false when nothing was removed.
    pub fn evict_front(&mut self, idle_before: Option<i64>) -> bool {
        while let Some(&(src, queued)) = self.fifo.front() {
            if idle_before.is_some_and(|t| queued >= t) {
                // Everything from here on was queued (so seen) after the cutoff.
                return false;
            }
            self.fifo.pop_front();
            let Some(l) = self.light.get(&src) else {
                continue;
            };
            if l.last_ns > queued {
                // Seen since it was queued: a second chance at the back.
                self.fifo.push_back((src, l.last_ns));
                continue;
            }
            if idle_before.is_some() {
                self.expired += 1;
            } else {
                self.evicted += 1;
            }
            self.light.remove(&src);
            if let Some(h) = self.heavy.remove(&src) {
                self.heavy_bytes -= h.bytes;
            }
            return true;
        }
        false
    }

    /// Removes sources idle since before `before_ns`; at most `limit` per call.
    pub fn expire(&mut self, before_ns: i64, limit: usize) {
        for _ in 0..limit {
            if !self.evict_front(Some(before_ns)) {
                break;
            }
        }
    }

    /// The heavy record of `src`, created (from its light record) if needed.
    pub fn heavy_mut(&mut self, src: u128) -> &mut Heavy {
        self.heavy.entry(src).or_default()
    }

    /// Re-accounts a heavy record after it changed size.
    pub fn reaccount(&mut self, src: u128) {
        if let Some(h) = self.heavy.get_mut(&src) {
            let b = h.estimate_bytes();
            self.heavy_bytes = self.heavy_bytes + b - h.bytes;
            h.bytes = b;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe(src: u128, ts_ns: i64) -> Probe {
        let ip = std::net::IpAddr::from([198, 18, 1, 1]);
        Probe {
            ts_ns,
            src,
            dst: 1,
            src_ip: ip,
            dst_ip: ip,
            proto: 6,
            port: 80,
            flags: 2,
            role: super::super::probe::Role::Probe,
            sport: 1,
            ip_id: 0,
            tcp_seq: 0,
            tcp_window: 0,
            len: 60,
            class: 4,
            dark: false,
        }
    }

    #[test]
    fn the_table_stays_in_its_budget_and_counts_evictions() {
        let mut s = Sources::with_budget(1 << 20);
        let max = s.max_sources;
        for i in 0..(max as u128 * 3) {
            s.touch(&probe(i, i as i64));
        }
        assert_eq!(s.light.len(), max);
        assert_eq!(s.evicted, max as u64 * 2);
        assert!(s.bytes() <= 1 << 20, "{} bytes", s.bytes());
        // The newest are kept.
        assert!(s.light.contains_key(&(max as u128 * 3 - 1)));
        assert!(!s.light.contains_key(&0));
    }

    #[test]
    fn recently_seen_sources_get_a_second_chance() {
        let mut s = Sources::with_budget(1 << 20);
        let max = s.max_sources as u128;
        s.touch(&probe(7, 0));
        for i in 100..100 + max - 1 {
            s.touch(&probe(i, 1));
        }
        // Source 7 is seen again before the table overflows.
        let (l, _) = s.touch(&probe(7, 2));
        l.last_ns = 2;
        for i in 0..10u128 {
            s.touch(&probe(1_000_000 + i, 3));
        }
        assert!(
            s.light.contains_key(&7),
            "an active source survives eviction"
        );
    }

    #[test]
    fn idle_sources_expire() {
        let mut s = Sources::with_budget(1 << 20);
        for i in 0..100u128 {
            s.touch(&probe(i, i as i64 * 10));
        }
        s.expire(500, usize::MAX);
        assert_eq!(s.light.len(), 50);
        assert_eq!(s.expired, 50);
        assert_eq!(s.evicted, 0);
    }
}
