//! The episode book: the active episodes, found by key, by source, by
//! (protocol, port) and by destination, and their actors; starting one
//! (its `started` record when it is announced, else an `update` of its
//! actor), routing later probes to it, its `update` records while it runs,
//! ending it (its `ended` record with the totals). Records wait in order
//! for the engine's `drain`.

use std::sync::Arc;

use rustc_hash::FxHashMap;

use super::{
    actors::Actors,
    alert::Alert,
    config::DetectConfig,
    episode::{Episode, Evidence, Key, Kind, Via},
    origins,
    probe::{Probe, Role},
};
use crate::enrich::Enricher;

/// The active episodes and the records they gave.
#[derive(Default)]
pub struct Book {
    next_id: u64,
    episodes: FxHashMap<u64, Episode>,
    by_key: FxHashMap<Key, u64>,
    by_src: FxHashMap<u128, Vec<u64>>,
    by_port: FxHashMap<(u8, u16), Vec<u64>>,
    by_dst: FxHashMap<u128, Vec<u64>>,
    out: Vec<Alert>,
    pub actors: Actors,
    /// Records given: `started` (announced), `update`, `ended`.
    pub started: u64,
    pub updates: u64,
    pub ended: u64,
    /// Per-source records not raised: the source has a tag in `ignore_tags`.
    pub ignored_by_tag: u64,
    /// Country, ASN and tags for the alerts' sources.
    enrich: Option<Arc<Enricher>>,
    /// Warming up on stored history: no records.
    pub silent: bool,
}

impl Book {
    pub fn new() -> Book {
        Book {
            next_id: 1,
            ..Book::default()
        }
    }

    /// Numbers the next episode `id` (a daemon continues its store's).
    pub fn set_next_id(&mut self, id: u64) {
        self.next_id = self.next_id.max(id);
    }

    pub fn set_enricher(&mut self, e: Option<Arc<Enricher>>) {
        self.enrich = e;
    }

    /// Queues the record of `ep` with this status and its actor.
    fn record(&mut self, ep: &mut Episode, status: &str, cfg: &DetectConfig) {
        if self.silent {
            // Warming up on history: the records were given back then.
            ep.said_severity = ep.evidence.severity(ep, cfg);
            ep.said_probes = ep.probes;
            ep.said_ns = ep.last_ns;
            return;
        }
        let mut a = ep.alert(status, cfg);
        let last_ns = ep.last_ns;
        ep.evidence.said(last_ns);
        ep.said_severity = a.severity;
        ep.said_probes = ep.probes;
        ep.said_ns = ep.last_ns;
        a.actor = self.actors.summary(ep);
        match status {
            "started" => self.started += 1,
            "update" => self.updates += 1,
            _ => self.ended += 1,
        }
        self.emit(a, ep, cfg);
    }

    /// Queues an alert record, decorated with its sources' origins; a
    /// per-source one of an ignored tag is counted instead.
    fn emit(&mut self, alert: Alert, ep: &Episode, cfg: &DetectConfig) {
        match &self.enrich {
            None => self.out.push(alert),
            Some(e) => match origins::decorate(alert, ep, e, &cfg.ignore_tags) {
                Some(a) => self.out.push(a),
                None => self.ignored_by_tag += 1,
            },
        }
    }

    /// Is an episode with this key active?
    pub fn active(&self, key: &Key) -> Option<u64> {
        self.by_key.get(key).copied()
    }

    pub fn get_mut(&mut self, id: u64) -> Option<&mut Episode> {
        self.episodes.get_mut(&id)
    }

    /// Every active episode, in no particular order.
    pub fn episodes(&self) -> impl Iterator<Item = &Episode> {
        self.episodes.values()
    }

    pub fn episodes_mut(&mut self) -> impl Iterator<Item = &mut Episode> {
        self.episodes.values_mut()
    }

    pub fn is_empty(&self) -> bool {
        self.episodes.is_empty()
    }

    /// Starts an episode unless one with this key is active; `seed` fills
    /// in the evidence gathered before the threshold was crossed. Emits the
    /// `started` record. Returns the episode id.
    #[expect(
        clippy::too_many_arguments,
        reason = "one call: what, why, whose, how seeded"
    )]
    pub fn start(
        &mut self,
        cfg: &DetectConfig,
        owner: u8,
        kind: Kind,
        key: Key,
        p: &Probe,
        evidence: Box<dyn Evidence>,
        seed: impl FnOnce(&mut Episode),
    ) -> u64 {
        if let Some(id) = self.active(&key) {
            return id;
        }
        let id = self.next_id;
        self.next_id += 1;
        let mut ep = Episode::new(id, kind, key, owner, p, evidence);
        seed(&mut ep);
        if ep.probes == 0 {
            ep.add(p, Via::Source { sec_count: 0 });
        }
        match key {
            Key::Src(_, src, _) => self.by_src.entry(src).or_default().push(id),
            Key::Port(_, proto, port) => self.by_port.entry((proto, port)).or_default().push(id),
            Key::Dst(k, dst) if k.0.routes_by_dst => self.by_dst.entry(dst).or_default().push(id),
            Key::Dst(_, _) | Key::Target(..) => {}
        }
        let severity = ep.evidence.severity(&ep, cfg);
        ep.announced = self.actors.begin(&ep, severity);
        let status = if ep.announced { "started" } else { "update" };
        self.record(&mut ep, status, cfg);
        self.by_key.insert(key, id);
        self.episodes.insert(id, ep);
        id
    }

    /// Has one of the source's running episodes of its own probed this
    /// target (and this port, when given)?
    pub fn probed(&self, src: u128, dst: u128, port: Option<u16>) -> bool {
        let Some(ids) = self.by_src.get(&src) else {
            return false;
        };
        ids.iter().filter_map(|id| self.episodes.get(id)).any(|ep| {
            matches!(ep.key, Key::Src(..))
                && ep.targets.contains(dst)
                && port.is_none_or(|p| ep.ports.contains(p))
        })
    }

    /// Routes a source's later probes to a group episode too.
    pub fn join(&mut self, id: u64, src: u128) {
        let ids = self.by_src.entry(src).or_default();
        if !ids.contains(&id) {
            ids.push(id);
        }
    }

    /// Adds the probe to the active episodes it belongs to. True if the
    /// source has an active episode of its own (scan, sweep, flood...).
    pub fn route(&mut self, p: &Probe, sec_count: u32) -> bool {
        let mut busy = false;
        if let Some(ids) = self.by_src.get(&p.src) {
            for id in ids {
                let Some(ep) = self.episodes.get_mut(id) else {
                    continue;
                };
                busy |= matches!(ep.key, Key::Src(..));
                if ep.evidence.accepts(&ep.key, p) {
                    ep.add(p, Via::Source { sec_count });
                }
            }
        }
        if !self.by_port.is_empty() {
            if let Some(ids) = self.by_port.get(&(p.proto, p.port)) {
                for id in ids {
                    if let Some(ep) = self.episodes.get_mut(id) {
                        if ep.evidence.accepts(&ep.key, p) {
                            ep.add(p, Via::Port);
                        }
                    }
                }
            }
        }
        if p.role == Role::Backscatter && !self.by_dst.is_empty() {
            if let Some(ids) = self.by_dst.get(&p.dst) {
                for id in ids {
                    if let Some(ep) = self.episodes.get_mut(id) {
                        if ep.evidence.accepts(&ep.key, p) {
                            ep.add(p, Via::Dst);
                        }
                    }
                }
            }
        }
        busy
    }

    /// Ends an episode: unlinks it and emits its `ended` record. Returns it.
    pub fn end(&mut self, id: u64, cfg: &DetectConfig) -> Option<Episode> {
        let mut ep = self.episodes.remove(&id)?;
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
        }
        self.record(&mut ep, "ended", cfg);
        self.actors.end(&ep);
        Some(ep)
    }

    /// The `update` records of running episodes whose severity rose or
    /// whose probes doubled since their last record, at most once per
    /// `update_interval_s`; one whose severity rose above what its actor
    /// was announced at today is announced (`started`) instead.
    pub fn refresh(&mut self, now: i64, cfg: &DetectConfig) {
        let every = cfg.update_interval_s as i64 * super::context::SEC;
        let mut due: Vec<u64> = self
            .episodes
            .values()
            .filter(|e| e.probes != e.said_probes && now - e.said_ns >= every)
            .map(|e| e.id)
            .collect();
        due.sort_unstable();
        for id in due {
            let Some(ep) = self.episodes.get(&id) else {
                continue;
            };
            let severity = ep.evidence.severity(ep, cfg);
            let grown = ep.probes >= ep.said_probes.saturating_mul(2);
            if severity <= ep.said_severity && !grown && !ep.evidence.wants_update(ep) {
                continue;
            }
            let Some(mut ep) = self.episodes.remove(&id) else {
                continue;
            };
            let announce = severity > ep.said_severity && self.actors.rise(&ep, severity);
            let status = if announce && !ep.announced {
                ep.announced = true;
                "started"
            } else {
                "update"
            };
            self.record(&mut ep, status, cfg);
            self.episodes.insert(id, ep);
        }
    }

    /// Ids of every active episode, ascending.
    pub fn ids(&self) -> Vec<u64> {
        let mut ids: Vec<u64> = self.episodes.keys().copied().collect();
        ids.sort_unstable();
        ids
    }

    /// Records given since the last call, in order.
    pub fn drain(&mut self) -> Vec<Alert> {
        std::mem::take(&mut self.out)
    }

    pub fn bytes(&self) -> usize {
        self.episodes.values().map(Episode::bytes).sum::<usize>() + self.actors.bytes()
    }
}
