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
    sets::Distinct,
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
