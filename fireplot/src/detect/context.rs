//! What the detectors share: the configuration, the clock (event time), the
//! source table, the episode book and the group memberships, and the
//! memory budget over all of it.

use rustc_hash::FxHashMap;

use super::{
    book::Book,
    config::DetectConfig,
    episode::{Episode, Evidence, Key, Kind},
    probe::Probe,
    sources::Sources,
};

pub const SEC: i64 = 1_000_000_000;

/// Sources reported as a group, not one by one: the members of lockstep
/// groups (written by the group's detector, read by the per-source ones),
/// and the sources still co-probing in a pair not yet judged.
#[derive(Default)]
pub struct Groups {
    members: FxHashMap<u128, u64>,
    /// Open (undecided) pairs each source is in.
    open: FxHashMap<u128, u32>,
}

impl Groups {
    pub fn is_member(&self, src: u128) -> bool {
        !self.members.is_empty() && self.members.contains_key(&src)
    }

    /// Does `src` co-probe with another source in a pair not yet decided?
    pub fn in_open_pair(&self, src: u128) -> bool {
        self.open.get(&src).is_some_and(|n| *n > 0)
    }

    /// `src` is now reported as group `id`.
    pub fn enrol(&mut self, src: u128, id: u64) {
        self.members.insert(src, id);
    }

    /// A pair of co-probing sources opened (`true`) or was decided or
    /// forgotten (`false`).
    pub fn pair(&mut self, a: u128, b: u128, open: bool) {
        for s in [a, b] {
            if open {
                *self.open.entry(s).or_default() += 1;
            } else if let Some(n) = self.open.get_mut(&s) {
                *n -= 1;
                if *n == 0 {
                    self.open.remove(&s);
                }
            }
        }
    }

    /// Group `id` ended: its members are on their own again.
    pub fn forget(&mut self, id: u64) {
        if !self.members.is_empty() {
            self.members.retain(|_, g| *g != id);
        }
    }

    pub fn bytes(&self) -> usize {
        self.members.capacity() * 25 + self.open.capacity() * 21
    }
}

/// The detectors' shared state.
pub struct Context {
    pub cfg: DetectConfig,
    /// Event time: the largest timestamp seen.
    pub now: i64,
    pub sources: Sources,
    pub book: Book,
    pub groups: Groups,
    /// Bytes all detector state may take.
    pub budget: usize,
    /// Bytes of everything but the source table, as of the last sweep.
    pub other_bytes: usize,
    /// The detector being called: episodes it starts are its own.
    pub owner: u8,
}

impl Context {
    pub fn new(cfg: DetectConfig) -> Context {
        let budget = (cfg.memory_mib as usize) << 20;
        Context {
            sources: Sources::with_budget(budget * 6 / 10),
            now: i64::MIN,
            book: Book::new(),
            groups: Groups::default(),
            budget,
            other_bytes: 0,
            owner: 0,
            cfg,
        }
    }

    /// Is an episode with this key active?
    pub fn active(&self, key: &Key) -> Option<u64> {
        self.book.active(key)
    }

    /// Starts an episode of the calling detector unless one with this key
    /// is active (see [`Book::start`]).
    pub fn start(
        &mut self,
        kind: Kind,
        key: Key,
        p: &Probe,
        evidence: Box<dyn Evidence>,
        seed: impl FnOnce(&mut Episode),
    ) -> u64 {
        self.book
            .start(&self.cfg, self.owner, kind, key, p, evidence, seed)
    }

    /// Ends an episode: its `ended` record; a group's members are released.
    pub fn end(&mut self, id: u64) -> Option<Episode> {
        let ep = self.book.end(id, &self.cfg)?;
        if let Key::Dst(..) = ep.key {
            self.groups.forget(id);
        }
        Some(ep)
    }

    /// Evicts the least recently seen sources until the state fits.
    pub fn keep_budget(&mut self) {
        while self.sources.bytes() + self.other_bytes > self.budget
            && self.sources.evict_front(None)
        {}
    }
}
