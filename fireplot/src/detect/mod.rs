//! Streaming scan detection: say in words what the fireplot shows.
//!
//! The engine consumes events in order and keeps all time in event time
//! (the largest timestamp seen), never the wall clock, so replaying the
//! same events gives the same alerts. It is a list of detectors
//! ([`detector::Detector`], one file each, [`registered`]) and what they
//! share ([`context::Context`]): the per-source table ([`sources`]), the
//! clock, group memberships and the episode book ([`book`]): one `started`
//! record when a threshold is crossed, one `ended` record with totals when
//! the episode's detector says it is over (by default after
//! `episode_idle_s` without evidence), or at the end of the input.

pub mod alert;
mod backscatter;
mod book;
pub mod config;
mod context;
pub mod detector;
mod distributed;
pub mod episode;
mod flags;
pub mod fleet;
mod flood;
mod hammer;
pub mod origins;
pub mod probe;
mod promote;
mod scan;
pub mod sets;
pub mod sources;
mod surge;
mod tools;
mod words;

use serde::Serialize;

use crate::record::Record;
pub use alert::Alert;
pub use config::DetectConfig;
use context::{Context, SEC};
use detector::{Detector, Seen};
use probe::Probe;

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

/// The detectors, in the order they see each probe. The order is part of
/// the output: episodes are numbered as they start, and a probe that
/// crosses two thresholds starts two episodes in this order.
fn registered() -> Vec<Box<dyn Detector>> {
    vec![
        Box::new(flood::SourceRate),
        Box::new(hammer::Hammer::default()),
        Box::new(scan::Scans),
        Box::new(flags::FlagScans),
        Box::new(backscatter::Backscatter::default()),
        Box::new(distributed::Lockstep::default()),
        Box::new(distributed::SharedWork::default()),
        Box::new(surge::Surge::default()),
        Box::new(flood::PortRate::default()),
    ]
}

/// The detection engine: the detectors and what they share.
pub struct Engine {
    detectors: Vec<Box<dyn Detector>>,
    cx: Context,
    next_sweep: i64,
    events: u64,
}

impl Engine {
    pub fn new(cfg: DetectConfig) -> Engine {
        Engine {
            detectors: registered(),
            cx: Context::new(cfg),
            next_sweep: i64::MIN,
            events: 0,
        }
    }

    /// Names the alerts' sources' countries, networks and tags, and lets
    /// `ignore_tags` keep per-source alerts of tagged sources quiet.
    pub fn set_enricher(&mut self, e: Option<std::sync::Arc<crate::enrich::Enricher>>) {
        self.cx.book.set_enricher(e);
    }

    pub fn config(&self) -> &DetectConfig {
        &self.cx.cfg
    }

    /// Feeds one event. Alerts it causes are collected for [`Engine::drain`].
    pub fn push(&mut self, r: &Record) {
        self.events += 1;
        if r.is_aggregate() {
            // Counts of a flood the kernel did not send one by one: they
            // count for floods (at their real rate), not for per-source work.
            for (i, d) in self.detectors.iter_mut().enumerate() {
                self.cx.owner = i as u8;
                d.observe_aggregate(r, &mut self.cx);
            }
            return;
        }
        let Some(p) = Probe::from_record(r) else {
            return;
        };
        for d in &self.detectors {
            d.prefetch(&p);
        }
        if p.ts_ns > self.cx.now {
            self.cx.now = p.ts_ns;
        }
        if self.cx.now >= self.next_sweep {
            self.sweep();
        }
        let seen = self.see(&p);
        for (i, d) in self.detectors.iter_mut().enumerate() {
            self.cx.owner = i as u8;
            d.observe(&p, &seen, &mut self.cx);
        }
    }

    /// Counts the probe in its source's record and in the episodes it
    /// belongs to, and says what the detectors need to know of it.
    fn see(&mut self, p: &Probe) -> Seen {
        let sec = p.ts_ns.div_euclid(SEC);
        let (light, new) = self.cx.sources.touch(p);
        light.last_ns = light.last_ns.max(p.ts_ns);
        light.probes = light.probes.saturating_add(1);
        if light.sec != sec {
            light.sec = sec;
            light.sec_count = 0;
        }
        light.sec_count += 1;
        let sec_count = light.sec_count;
        let light = *light;
        let busy = self.cx.book.route(p, sec_count);
        // A source reported on its own whose record is heavy no longer keeps
        // its port sets (the episode has them): it is neither a repeat to
        // count for hammering nor one of a wave's many sources.
        let (repeat, new_for_port) = if busy && light.heavy {
            (false, false)
        } else {
            self.seen_before(p, &light, new)
        };
        Seen {
            light,
            sec_count,
            busy,
            repeat,
            new_for_port,
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
        let Some(h) = self.cx.sources.heavy.get(&p.src) else {
            return (false, false);
        };
        let slot = sources::proto_slot(p.proto);
        let with_port = slot < sources::PORTED_SLOTS;
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

    /// Once per second of event time: end finished episodes, expire idle
    /// sources, prune windows, keep to the memory budget.
    fn sweep(&mut self) {
        let now = self.cx.now;
        self.next_sweep = now.div_euclid(SEC) * SEC + SEC;
        let mut done: Vec<u64> = self
            .cx
            .book
            .episodes()
            .filter(|e| self.detectors[e.owner as usize].finished(e, &self.cx))
            .map(|e| e.id)
            .collect();
        done.sort_unstable();
        for id in done {
            self.cx.end(id);
        }
        let idle = self.cx.cfg.source_idle_s as i64 * SEC;
        self.cx.sources.expire(now - idle, 100_000);
        for d in &mut self.detectors {
            d.tick(&mut self.cx);
        }
        self.cx.other_bytes = self.state_bytes() - self.cx.sources.bytes();
        self.cx.keep_budget();
    }

    fn state_bytes(&self) -> usize {
        self.cx.sources.bytes()
            + self.cx.book.bytes()
            + self.cx.groups.bytes()
            + self.detectors.iter().map(|d| d.bytes()).sum::<usize>()
    }

    /// Alerts produced since the last call, in order.
    pub fn drain(&mut self) -> Vec<Alert> {
        self.cx.book.drain()
    }

    /// Ends every open episode (end of input or shutdown).
    pub fn finish(&mut self) -> Vec<Alert> {
        for id in self.cx.book.ids() {
            self.cx.end(id);
        }
        self.drain()
    }

    pub fn stats(&self) -> DetectStats {
        let s = &self.cx.sources;
        let mut st = DetectStats {
            events: self.events,
            alerts_started: self.cx.book.started,
            alerts_ended: self.cx.book.ended,
            alerts_ignored_by_tag: self.cx.book.ignored_by_tag,
            sources_evicted: s.evicted,
            sources_expired: s.expired,
            sources_tracked: s.light.len() as u64,
            state_bytes: self.state_bytes() as u64,
            budget_bytes: self.cx.budget as u64,
            ..DetectStats::default()
        };
        for d in &self.detectors {
            d.stats(&mut st);
        }
        st
    }
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_pace;
