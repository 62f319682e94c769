//! The detector trait: one shape of evidence, with its own state, fed
//! every probe in event time.
//!
//! A detector owns its windows and tables and its episodes' evidence type
//! ([`super::episode::Evidence`]); it reads and writes what all detectors
//! share through the [`Context`] (the clock, the source table, the episode
//! book, group memberships). Adding one is a new file and one line in the
//! engine's list ([`super::registered`]).

use super::{context::Context, episode::Episode, probe::Probe, sources::Light, DetectStats};
use crate::record::Record;

/// What the engine learnt of a probe before the detectors see it.
#[derive(Clone, Copy, Debug)]
pub struct Seen {
    /// The source's record as it was before this probe.
    pub light: Light,
    /// The source's events in this second of event time, this one included.
    pub sec_count: u32,
    /// The source has an active episode of its own (a scan, a sweep, a
    /// flood...): it is not one of many sharing work or making a wave.
    pub busy: bool,
    /// The source sent this very probe (target, protocol, port) before.
    pub repeat: bool,
    /// The source had not probed this (protocol, port) before.
    pub new_for_port: bool,
}

pub trait Detector: Send {
    /// Its name, in state accounting.
    fn name(&self) -> &'static str;

    /// One probe (an event with addresses), after the episodes it belongs
    /// to counted it.
    fn observe(&mut self, p: &Probe, seen: &Seen, cx: &mut Context);

    /// One kernel aggregate: packets of one second the kernel counted
    /// instead of sending them one by one (DESIGN §7).
    fn observe_aggregate(&mut self, _r: &Record, _cx: &mut Context) {}

    /// A hint before the engine's own work on the probe (e.g. to prefetch
    /// a table slot the probe will need).
    fn prefetch(&self, _p: &Probe) {}

    /// Once per second of event time: forget what left its windows.
    fn tick(&mut self, _cx: &mut Context) {}

    /// Is its episode over? By default once it has been quiet for longer
    /// than its pace allows ([`Episode::idle_ns`]).
    fn finished(&self, ep: &Episode, cx: &Context) -> bool {
        cx.now - ep.last_ns > ep.idle_ns(&cx.cfg)
    }

    /// An episode ended (every detector hears of every end; each looks at
    /// the kinds it raises): what it reported is spent, so a new episode of
    /// the same actor needs new evidence above the threshold (state the
    /// ended episode already reported must not cross it again).
    fn ended(&mut self, _ep: &Episode, _cx: &mut Context) {}

    /// Bytes of its state, as accounted.
    fn bytes(&self) -> usize;

    /// Its counters in the engine's summary.
    fn stats(&self, _s: &mut DetectStats) {}
}
