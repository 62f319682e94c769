//! Actors: one source (or target, or port) and alert kind over time — its
//! episodes so far, when it was first seen, its probes, ports and targets
//! over all of them — and the announcements made of it.
//!
//! What sinks push to people is an announcement: the `started` record of
//! an episode whose actor was not announced yet this UTC day, or whose
//! severity is above what was announced of it that day. Any other new
//! episode of the actor starts with an `update` record (of the actor), so
//! a scanner that returns fifty times a day is one announcement, and the
//! store still keeps every episode.

use rustc_hash::FxHashMap;

use super::{
    alert::ActorSummary,
    context::SEC,
    episode::{Episode, Key, Kind},
};
use crate::record::line::rfc3339_ns;

const DAY: i64 = 86_400 * SEC;

/// Who an actor is: the kind, and the episode key's subject.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ActorKey {
    kind: Kind,
    who: u128,
    sub: u32,
    /// Which of the key's shapes (a source, a target, a port).
    shape: u8,
}

impl ActorKey {
    pub fn of(key: &Key) -> ActorKey {
        match *key {
            Key::Src(kind, who, proto) => ActorKey {
                kind,
                who,
                sub: u32::from(proto),
                shape: 0,
            },
            Key::Dst(kind, who) => ActorKey {
                kind,
                who,
                sub: 0,
                shape: 1,
            },
            Key::Port(kind, proto, port) => ActorKey {
                kind,
                who: 0,
                sub: u32::from(proto) << 16 | u32::from(port),
                shape: 2,
            },
            Key::Target(kind, who, sub) => ActorKey {
                kind,
                who,
                sub,
                shape: 3,
            },
        }
    }
}

/// Distinct values, exactly up to 8, then estimated (HyperLogLog with 64
/// registers: about 13 % standard error, 64 bytes).
#[derive(Clone, Debug, Default)]
pub struct Distinct {
    exact: Vec<u128>,
    registers: Option<Box<[u8; 64]>>,
}

impl Distinct {
    const EXACT: usize = 8;

    pub fn insert(&mut self, v: u128) {
        if let Some(r) = self.registers.as_mut() {
            hll_add(r, v);
            return;
        }
        if self.exact.contains(&v) {
            return;
        }
        if self.exact.len() < Self::EXACT {
            self.exact.push(v);
            return;
        }
        let mut r = Box::new([0u8; 64]);
        for x in self.exact.drain(..).chain(std::iter::once(v)) {
            hll_add(&mut r, x);
        }
        self.registers = Some(r);
    }

    pub fn count(&self) -> u64 {
        let Some(r) = &self.registers else {
            return self.exact.len() as u64;
        };
        let m = 64.0f64;
        let sum: f64 = r.iter().map(|&x| 2f64.powi(-i32::from(x))).sum();
        let e = 0.709 * m * m / sum;
        let zeros = r.iter().filter(|&&x| x == 0).count();
        if e <= 2.5 * m && zeros > 0 {
            (m * (m / zeros as f64).ln()).round() as u64
        } else {
            e.round() as u64
        }
    }

    pub fn bytes(&self) -> usize {
        self.exact.capacity() * 16 + if self.registers.is_some() { 64 } else { 0 }
    }
}

fn hll_add(r: &mut [u8; 64], v: u128) {
    // splitmix64's finaliser over both halves.
    let mut h = (v as u64) ^ ((v >> 64) as u64).rotate_left(29) ^ 0x9E37_79B9_7F4A_7C15;
    h = (h ^ (h >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    h ^= h >> 31;
    let idx = (h >> 58) as usize;
    let rank = ((h << 6) | 1 << 5).leading_zeros() as u8 + 1;
    if rank > r[idx] {
        r[idx] = rank;
    }
}

/// One actor.
#[derive(Clone, Debug)]
pub struct Actor {
    pub first_ns: i64,
    pub last_ns: i64,
    pub episodes: u32,
    /// Probes of its ended episodes.
    pub probes: u64,
    /// Ports and targets of its ended episodes.
    pub ports: Distinct,
    pub targets: Distinct,
    /// UTC day (days since 1970) of its last announcement, and the
    /// severity announced that day.
    day: i64,
    day_severity: u8,
}

impl Actor {
    fn bytes(&self) -> usize {
        std::mem::size_of::<Self>() + self.ports.bytes() + self.targets.bytes()
    }
}

/// The actors, and when to announce.
#[derive(Default)]
pub struct Actors {
    map: FxHashMap<ActorKey, Actor>,
    heap: usize,
    /// Actors forgotten after `actor_idle_s`.
    pub expired: u64,
}

impl Actors {
    /// A new episode of its actor: counts it and says whether it is
    /// announced (`true`: its record is `started`).
    pub fn begin(&mut self, ep: &Episode, severity: u8) -> bool {
        let day = ep.last_ns.div_euclid(DAY);
        let a = self
            .map
            .entry(ActorKey::of(&ep.key))
            .or_insert_with(|| Actor {
                first_ns: ep.first_ns,
                last_ns: ep.last_ns,
                episodes: 0,
                probes: 0,
                ports: Distinct::default(),
                targets: Distinct::default(),
                day: i64::MIN,
                day_severity: 0,
            });
        a.episodes += 1;
        a.first_ns = a.first_ns.min(ep.first_ns);
        a.last_ns = a.last_ns.max(ep.last_ns);
        announce(a, day, severity)
    }

    /// A running episode's severity rose to `severity`: is it announced now?
    pub fn rise(&mut self, ep: &Episode, severity: u8) -> bool {
        let day = ep.last_ns.div_euclid(DAY);
        match self.map.get_mut(&ActorKey::of(&ep.key)) {
            Some(a) => announce(a, day, severity),
            None => false,
        }
    }

    /// An episode ended: its totals join its actor's.
    pub fn end(&mut self, ep: &Episode) {
        let Some(a) = self.map.get_mut(&ActorKey::of(&ep.key)) else {
            return;
        };
        let before = a.bytes();
        a.last_ns = a.last_ns.max(ep.last_ns);
        a.probes += ep.probes;
        for p in ep.ports.iter() {
            a.ports.insert(u128::from(p));
        }
        for t in ep.targets.keys() {
            a.targets.insert(t);
        }
        self.heap = self.heap + a.bytes() - before;
    }

    /// What a record of `ep` says of its actor: none for its first episode
    /// until it recurs.
    pub fn summary(&self, ep: &Episode) -> Option<ActorSummary> {
        let a = self.map.get(&ActorKey::of(&ep.key))?;
        let mut ports = a.ports.clone();
        for p in ep.ports.iter() {
            ports.insert(u128::from(p));
        }
        let mut targets = a.targets.clone();
        for t in ep.targets.keys().take(4096) {
            targets.insert(t);
        }
        Some(ActorSummary {
            episodes: a.episodes,
            since: rfc3339_ns(i128::from(a.first_ns.min(ep.first_ns))),
            probes: a.probes + ep.probes,
            ports: ports.count().max(u64::from(ep.ports.len())),
            targets: targets.count().max(ep.targets.count()),
        })
    }

    /// Forgets actors without an episode since `before_ns` (those with an
    /// episode running are in `active`).
    pub fn expire(&mut self, before_ns: i64, active: impl Fn(&ActorKey) -> bool) {
        let mut freed = 0;
        let mut n = 0;
        self.map.retain(|k, a| {
            let keep = a.last_ns >= before_ns || active(k);
            if !keep {
                freed += a.bytes() - std::mem::size_of::<Actor>();
                n += 1;
            }
            keep
        });
        self.heap -= freed;
        self.expired += n;
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    pub fn bytes(&self) -> usize {
        self.map.capacity() * (std::mem::size_of::<(ActorKey, Actor)>() + 1) + self.heap
    }
}

/// Announces at most once per actor and UTC day, unless the severity rises.
fn announce(a: &mut Actor, day: i64, severity: u8) -> bool {
    if a.day != day {
        a.day = day;
        a.day_severity = severity;
        return true;
    }
    if severity > a.day_severity {
        a.day_severity = severity;
        return true;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distinct_counts_exactly_then_estimates() {
        let mut d = Distinct::default();
        for v in 0..8u128 {
            d.insert(v);
            d.insert(v);
        }
        assert_eq!(d.count(), 8);
        let mut d = Distinct::default();
        for v in 0..10_000u128 {
            d.insert(v * 7919);
        }
        let c = d.count() as f64;
        assert!((c - 10_000.0).abs() / 10_000.0 < 0.4, "estimate {c}");
        let mut d = Distinct::default();
        for v in 0..100u128 {
            d.insert(v);
        }
        let c = d.count() as f64;
        assert!((c - 100.0).abs() / 100.0 < 0.4, "estimate {c}");
    }
}
