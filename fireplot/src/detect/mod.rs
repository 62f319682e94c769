//! Streaming scan detection: say in words what the fireplot shows.
//!
//! The engine consumes events in order and keeps all time in event time
//! (the largest timestamp seen), never the wall clock, so replaying the
//! same events gives the same alerts. Each detector lives in its own file;
//! they share the per-source table ([`sources`]) and the episode book
//! ([`episode`]): one `started` record when a threshold is crossed, one
//! `ended` record with totals after `episode_idle_s` without evidence (or
//! at the end of the input).

pub mod alert;
mod backscatter;
pub mod config;
mod distributed;
pub mod episode;
pub mod fleet;
mod flood;
pub mod origins;
pub mod probe;
mod scan;
pub mod sources;
mod surge;
mod tools;
mod words;

use rustc_hash::FxHashMap;
use serde::Serialize;

use crate::record::Record;
pub use alert::Alert;
pub use config::DetectConfig;
use episode::{Episode, Key, Kind};
use probe::{Probe, Role};
use sources::Sources;

const SEC: i64 = 1_000_000_000;

/// Counters of the engine, for summaries.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct DetectStats {
    pub events: u64,
    pub alerts_started: u64,
    pub alerts_ended: u64,
    /// Sources dropped to stay in the memory budget (oldest first).
    pub sources_evicted: u64,
    /// Sources forgotten after `source_idle_s`.
    pub sources_expired: u64,
    pub sources_tracked: u64,
    /// Co-probing pairs not tracked because the lockstep pair table was full.
    pub sync_pairs_untracked: u64,
    /// Repeated probes not tracked for hammering because its table was full.
    pub hammer_runs_untracked: u64,
    /// Bytes of detector state, as accounted.
    pub state_bytes: u64,
    pub budget_bytes: u64,
    /// Per-source alert records not raised: the source has a tag in
    /// `ignore_tags`.
    pub alerts_ignored_by_tag: u64,
}

/// The detection engine.
pub struct Engine {
    cfg: DetectConfig,
    now: i64,
    next_sweep: i64,
    next_id: u64,
    sources: Sources,
    episodes: FxHashMap<u64, Episode>,
    by_key: FxHashMap<Key, u64>,
    by_src: FxHashMap<u128, Vec<u64>>,
    by_port: FxHashMap<(u8, u16), Vec<u64>>,
    by_dst: FxHashMap<u128, Vec<u64>>,
    sync: distributed::Sync,
    shared: distributed::Shared,
    surge: surge::Surge,
    back: backscatter::Backscatter,
    port_flood: flood::PortFlood,
    agg_seconds: flood::AggSeconds,
    hammer: flood::Hammer,
    out: Vec<Alert>,
    stats: DetectStats,
    budget: usize,
    /// Bytes of everything but the source table, as of the last sweep.
    other_bytes: usize,
    /// Country, ASN and tags for the alerts' sources.
    enrich: Option<std::sync::Arc<crate::enrich::Enricher>>,
}

impl Engine {
    pub fn new(cfg: DetectConfig) -> Engine {
        let budget = (cfg.memory_mib as usize) << 20;
        Engine {
            sources: Sources::with_budget(budget * 6 / 10),
            now: i64::MIN,
            next_sweep: i64::MIN,
            next_id: 1,
            episodes: FxHashMap::default(),
            by_key: FxHashMap::default(),
            by_src: FxHashMap::default(),
            by_port: FxHashMap::default(),
            by_dst: FxHashMap::default(),
            sync: distributed::Sync::default(),
            shared: distributed::Shared::default(),
            surge: surge::Surge::default(),
            back: backscatter::Backscatter::default(),
            port_flood: flood::PortFlood::default(),
            agg_seconds: flood::AggSeconds::default(),
            hammer: flood::Hammer::default(),
            out: Vec::new(),
            stats: DetectStats::default(),
            budget,
            other_bytes: 0,
            enrich: None,
            cfg,
        }
    }

    /// Names the alerts' sources' countries, networks and tags, and lets
    /// `ignore_tags` keep per-source alerts of tagged sources quiet.
    pub fn set_enricher(&mut self, e: Option<std::sync::Arc<crate::enrich::Enricher>>) {
        self.enrich = e;
    }

    /// Queues an alert record, decorated with its sources' origins; a
    /// per-source one of an ignored tag is counted instead.
    fn emit(&mut self, alert: Alert, ep: &Episode) {
        match &self.enrich {
            None => self.out.push(alert),
            Some(e) => match origins::decorate(alert, ep, e, &self.cfg.ignore_tags) {
                Some(a) => self.out.push(a),
                None => self.stats.alerts_ignored_by_tag += 1,
            },
        }
    }

    pub fn config(&self) -> &DetectConfig {
        &self.cfg
    }

    /// Feeds one event. Alerts it causes are collected for [`Engine::drain`].
    pub fn push(&mut self, r: &Record) {
        self.stats.events += 1;
        if r.is_aggregate() {
            // Counts of a flood the kernel did not send one by one: they
            // count for floods (at their real rate), not for per-source work.
            return flood::observe_aggregate(self, r);
        }
        let Some(p) = Probe::from_record(r) else {
            return;
        };
        distributed::prefetch(self, &p);
        if p.ts_ns > self.now {
            self.now = p.ts_ns;
        }
        if self.now >= self.next_sweep {
            self.sweep();
        }
        let sec = p.ts_ns.div_euclid(SEC);
        let (light, _new) = self.sources.touch(&p);
        light.last_ns = light.last_ns.max(p.ts_ns);
        light.probes = light.probes.saturating_add(1);
        if light.sec != sec {
            light.sec = sec;
            light.sec_count = 0;
        }
        light.sec_count += 1;
        let sec_count = light.sec_count;
        let snapshot = *light;

        // A source already reported as a scanner, sweeper or flooder is
        // not part of a surge or of shared work: skip those detectors.
        let busy = self.route(&p, sec_count);
        // A source reported on its own whose record is heavy no longer keeps
        // its port sets (the episode has them): it is neither a repeat to
        // count for hammering nor one of a wave's many sources.
        let (repeat, new_for_port) = if busy && snapshot.heavy {
            (false, false)
        } else {
            self.seen_before(&p, &snapshot, _new)
        };
        flood::observe_source(self, &p, sec_count);
        flood::observe_hammer(self, &p, repeat);
        match p.role {
            Role::Probe => scan::observe(self, &p, &snapshot),
            Role::Odd(t) => scan::observe_odd(self, &p, t, &snapshot),
            Role::Backscatter => backscatter::observe(self, &p),
        }
        if p.role != Role::Backscatter {
            distributed::observe(self, &p, busy);
            if !busy {
                // A port flood is many sources at once; a source reported
                // on its own is counted there, not here.
                surge::observe(self, &p, new_for_port);
                flood::observe_port(self, &p, sec_count);
            }
        }
    }

    /// Has the source sent this very probe (target, protocol, port) before,
    /// and has it probed this (protocol, port) before — from its record as
    /// it was before this probe.
    fn seen_before(&self, p: &Probe, l: &sources::Light, new_source: bool) -> (bool, bool) {
        if new_source {
            return (false, true);
        }
        if !l.heavy {
            let repeat =
                l.same_as_first(p.dst, p.port, p.proto) || l.same_as_second(p.dst, p.port, p.proto);
            let port_seen = (l.first_port == p.port && l.first_proto == p.proto)
                || (l.has_second && l.second_port == p.port && l.second_proto == p.proto);
            return (repeat, !port_seen);
        }
        let Some(h) = self.sources.heavy.get(&p.src) else {
            return (false, false);
        };
        let slot = sources::proto_slot(p.proto);
        let with_port = slot < 2;
        let repeat = h
            .targets
            .get(&(p.dst, if with_port { p.proto } else { 0 }))
            .is_some_and(|t| !with_port || t.ports.contains(p.port));
        // A source past `sweep_max_ports` ports is scanning, not one of a
        // wave's many sources.
        let new_for_port =
            with_port && !h.union_over[slot] && !h.union_ports[slot].contains(&p.port);
        (repeat, new_for_port)
    }

    /// Adds the event to the active episodes it belongs to.
    /// True if the source has an active per-source episode (scan, sweep, flood...).
    fn route(&mut self, p: &Probe, sec_count: u32) -> bool {
        let mut busy = false;
        if let Some(ids) = self.by_src.get(&p.src) {
            for id in ids {
                let Some(ep) = self.episodes.get_mut(id) else {
                    continue;
                };
                busy |= matches!(ep.key, Key::Src(..));
                let accepts = match (ep.kind, ep.key) {
                    (Kind::PortScan | Kind::PortSweep, Key::Src(_, _, proto)) => {
                        p.role == Role::Probe && p.proto == proto
                    }
                    (Kind::FlagScan, _) => matches!(p.role, Role::Odd(_)),
                    (Kind::Backscatter, Key::Src(..)) => p.role == Role::Backscatter,
                    (Kind::ProtocolScan, _) => p.role == Role::Probe,
                    (Kind::Flood, _) => true,
                    (Kind::DistributedScan, Key::Dst(_, dst)) => {
                        p.role != Role::Backscatter && p.dst == dst
                    }
                    _ => false,
                };
                if accepts {
                    ep.add(p);
                    if ep.kind == Kind::Flood {
                        ep.peak_pps = ep.peak_pps.max(sec_count as u64);
                    }
                }
            }
        }
        if !self.by_port.is_empty() {
            if let Some(ids) = self.by_port.get(&(p.proto, p.port)) {
                for id in ids {
                    if let Some(ep) = self.episodes.get_mut(id) {
                        if ep.kind == Kind::Flood || p.role == Role::Probe {
                            ep.add(p);
                        }
                    }
                }
            }
        }
        if p.role == Role::Backscatter && !self.by_dst.is_empty() {
            if let Some(ids) = self.by_dst.get(&p.dst) {
                for id in ids {
                    if let Some(ep) = self.episodes.get_mut(id) {
                        if ep.kind == Kind::Backscatter {
                            ep.add(p);
                        }
                    }
                }
            }
        }
        busy
    }

    /// Is an episode with this key active?
    fn active(&self, key: &Key) -> Option<u64> {
        self.by_key.get(key).copied()
    }

    /// Starts an episode unless one with this key is active; `seed` fills
    /// in the evidence gathered before the threshold was crossed. Emits the
    /// `started` record. Returns the episode id.
    fn start(&mut self, kind: Kind, key: Key, p: &Probe, seed: impl FnOnce(&mut Episode)) -> u64 {
        if let Some(id) = self.active(&key) {
            return id;
        }
        let id = self.next_id;
        self.next_id += 1;
        let mut ep = Episode::new(id, kind, key, p);
        seed(&mut ep);
        if ep.probes == 0 {
            ep.add(p);
        }
        match key {
            Key::Src(_, src, _) => self.by_src.entry(src).or_default().push(id),
            Key::Port(_, proto, port) => self.by_port.entry((proto, port)).or_default().push(id),
            Key::Dst(Kind::Backscatter, dst) => self.by_dst.entry(dst).or_default().push(id),
            Key::Dst(_, _) => {}
        }
        let a = ep.alert("started", &self.cfg);
        self.emit(a, &ep);
        self.stats.alerts_started += 1;
        self.by_key.insert(key, id);
        self.episodes.insert(id, ep);
        id
    }

    /// Routes a source's later probes to a group episode too.
    fn join(&mut self, id: u64, src: u128) {
        let ids = self.by_src.entry(src).or_default();
        if !ids.contains(&id) {
            ids.push(id);
        }
    }

    fn end(&mut self, id: u64) {
        let Some(ep) = self.episodes.remove(&id) else {
            return;
        };
        self.by_key.remove(&ep.key);
        let unlink = |m: &mut Vec<u64>| m.retain(|x| *x != id);
        let srcs: Vec<u128> = self
            .by_src
            .iter()
            .filter(|(_, v)| v.contains(&id))
            .map(|(k, _)| *k)
            .collect();
        for s in srcs {
            if let Some(v) = self.by_src.get_mut(&s) {
                unlink(v);
                if v.is_empty() {
                    self.by_src.remove(&s);
                }
            }
        }
        if let Key::Port(_, proto, port) = ep.key {
            if let Some(v) = self.by_port.get_mut(&(proto, port)) {
                unlink(v);
                if v.is_empty() {
                    self.by_port.remove(&(proto, port));
                }
            }
        }
        if let Key::Dst(_, dst) = ep.key {
            if let Some(v) = self.by_dst.get_mut(&dst) {
                unlink(v);
                if v.is_empty() {
                    self.by_dst.remove(&dst);
                }
            }
            self.sync.forget_group(id);
        }
        let a = ep.alert("ended", &self.cfg);
        self.emit(a, &ep);
        self.stats.alerts_ended += 1;
    }

    /// Once per second of event time: end idle episodes, expire idle
    /// sources, prune windows, keep to the memory budget.
    fn sweep(&mut self) {
        let now = self.now;
        self.next_sweep = now.div_euclid(SEC) * SEC + SEC;
        let idle = self.cfg.episode_idle_s as i64 * SEC;
        let mut done: Vec<u64> = self
            .episodes
            .values()
            .filter(|e| {
                if e.kind == Kind::PortSurge {
                    surge::finished(self, e)
                } else {
                    now - e.last_ns > idle
                }
            })
            .map(|e| e.id)
            .collect();
        done.sort_unstable();
        for id in done {
            self.end(id);
        }
        self.sources
            .expire(now - self.cfg.source_idle_s as i64 * SEC, 100_000);
        self.sync.prune(now, &self.cfg, &mut self.stats);
        self.hammer.prune(now, self.cfg.hammer_gap_s);
        self.shared.prune(now, &self.cfg);
        self.back.prune(now, &self.cfg);
        self.other_bytes = self.state_bytes() - self.sources.bytes();
        self.keep_budget();
    }

    /// Evicts the least recently seen sources until the state fits.
    fn keep_budget(&mut self) {
        while self.sources.bytes() + self.other_bytes > self.budget
            && self.sources.evict_front(None)
        {}
    }

    fn state_bytes(&self) -> usize {
        self.sources.bytes()
            + self.episodes.values().map(Episode::bytes).sum::<usize>()
            + self.sync.bytes()
            + self.shared.bytes()
            + self.surge.bytes()
            + self.back.bytes()
            + self.port_flood.bytes()
            + self.agg_seconds.bytes()
            + self.hammer.bytes()
    }

    /// Alerts produced since the last call, in order.
    pub fn drain(&mut self) -> Vec<Alert> {
        std::mem::take(&mut self.out)
    }

    /// Ends every open episode (end of input or shutdown).
    pub fn finish(&mut self) -> Vec<Alert> {
        let mut ids: Vec<u64> = self.episodes.keys().copied().collect();
        ids.sort_unstable();
        for id in ids {
            self.end(id);
        }
        self.drain()
    }

    pub fn stats(&self) -> DetectStats {
        DetectStats {
            sources_evicted: self.sources.evicted,
            sources_expired: self.sources.expired,
            sources_tracked: self.sources.light.len() as u64,
            state_bytes: self.state_bytes() as u64,
            budget_bytes: self.budget as u64,
            hammer_runs_untracked: self.hammer.untracked,
            ..self.stats
        }
    }
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_pace;
