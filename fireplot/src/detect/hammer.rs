//! flood by hammering: one source sending `hammer_packets` packets to one
//! target port with no gap longer than `hammer_gap_s` between them, over
//! at least `hammer_min_span_s`, whatever the rate (a honeypot flood: one
//! source hammering one port for hours).
//!
//! Only probes count: answers are backscatter, and TCP packets with ACK
//! but no SYN are the middle of a connection whose state the sensor lost
//! (a chatty client after a timeout), not an attack; published services
//! never reach the detector as events at all.

use rustc_hash::FxHashMap;

use super::{
    context::{Context, SEC},
    detector::{Detector, Seen},
    episode::{Episode, Key, Kind},
    flood::{Flood, Run, FLOOD},
    probe::{Probe, Role, ACK, SYN},
    DetectStats,
};

/// Runs of packets from one source to one target port, keyed by a 64-bit
/// hash of (source, target, protocol, port): two runs share a slot with
/// odds of 2^-64 per pair, and the key hashes in one step.
#[derive(Default)]
pub struct Hammer {
    runs: FxHashMap<u64, RunCount>,
    /// Repeats not tracked because the table was full.
    untracked: u64,
}

#[derive(Clone, Copy)]
struct RunCount {
    count: u64,
    first_ns: i64,
    last_ns: i64,
}

fn run_key(src: u128, dst: u128, proto: u8, port: u16) -> u64 {
    let mix = |h: u64, v: u64| (h.rotate_left(5) ^ v).wrapping_mul(0x517c_c1b7_2722_0a95);
    let mut h = 0u64;
    for v in [
        src as u64,
        (src >> 64) as u64,
        dst as u64,
        (dst >> 64) as u64,
        (u64::from(proto) << 16) | u64::from(port),
    ] {
        h = mix(h, v);
    }
    h
}

/// Runs tracked at once; idle ones are pruned every second of event time.
const RUN_CAP: usize = 1 << 16;

impl Detector for Hammer {
    fn name(&self) -> &'static str {
        "hammer"
    }

    /// A run exists only for a tuple the source sent before: only a repeat
    /// can belong to one (this keeps the lookup off every other event).
    fn observe(&mut self, p: &Probe, seen: &Seen, cx: &mut Context) {
        use fireplot_common::event::Class;
        if !seen.repeat
            || p.class != Class::Unsolicited as u8
            || p.role == Role::Backscatter
            || (p.proto == 6 && p.flags & ACK != 0 && p.flags & SYN == 0)
        {
            return;
        }
        self.count(cx, p);
    }

    fn tick(&mut self, cx: &mut Context) {
        let (now, gap) = (cx.now, cx.cfg.hammer_gap_s as i64 * SEC);
        self.runs.retain(|_, r| now - r.last_ns <= gap);
    }

    /// The run it reported is spent.
    fn ended(&mut self, ep: &Episode, _cx: &mut Context) {
        let (Key::Src(kind, src, _), Some(f)) = (ep.key, ep.evidence::<Flood>()) else {
            return;
        };
        if kind != Kind(&FLOOD) {
            return;
        }
        if let Some(r) = f.run {
            self.runs.remove(&run_key(src, r.dst, r.proto, r.port));
        }
    }

    fn bytes(&self) -> usize {
        self.runs.capacity() * (8 + 24 + 1)
    }

    fn stats(&self, s: &mut DetectStats) {
        s.hammer_runs_untracked = self.untracked;
    }
}

impl Hammer {
    /// Counts a packet that repeats one the source sent before to the same
    /// target port.
    fn count(&mut self, cx: &mut Context, p: &Probe) {
        let k = run_key(p.src, p.dst, p.proto, p.port);
        let gap = cx.cfg.hammer_gap_s as i64 * SEC;
        let run = match self.runs.get_mut(&k) {
            Some(r) => {
                if p.ts_ns - r.last_ns > gap {
                    *r = RunCount {
                        count: 1,
                        first_ns: p.ts_ns,
                        last_ns: p.ts_ns,
                    };
                } else {
                    r.count += 1;
                    r.last_ns = r.last_ns.max(p.ts_ns);
                }
                *r
            }
            None => {
                if self.runs.len() >= RUN_CAP {
                    self.untracked += 1;
                    return;
                }
                // This packet and the one it repeats.
                let r = RunCount {
                    count: 2,
                    first_ns: p.ts_ns,
                    last_ns: p.ts_ns,
                };
                self.runs.insert(k, r);
                r
            }
        };
        if run.count < u64::from(cx.cfg.hammer_packets)
            || run.last_ns - run.first_ns < cx.cfg.hammer_min_span_s as i64 * SEC
        {
            return;
        }
        let run = Run {
            dst: p.dst,
            proto: p.proto,
            port: p.port,
            count: run.count,
            first_ns: run.first_ns,
            last_ns: run.last_ns,
        };
        let key = Key::Src(Kind(&FLOOD), p.src, 0);
        if let Some(id) = cx.active(&key) {
            // A rate flood of the same source: it now counts this run too.
            if let Some(f) = cx
                .book
                .get_mut(id)
                .and_then(|ep| ep.evidence_mut::<Flood>())
            {
                f.run.get_or_insert(run);
            }
            return;
        }
        let evidence = Box::new(Flood {
            run: Some(run),
            ..Flood::default()
        });
        cx.start(Kind(&FLOOD), key, p, evidence, |ep| {
            ep.seed_from(p);
            ep.first_ns = run.first_ns;
            ep.probes = run.count;
            ep.tools.add(p);
        });
    }
}
