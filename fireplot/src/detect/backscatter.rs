//! backscatter: unsolicited SYN-ACKs, RSTs and ICMP errors — answers to
//! something we never sent. Two shapes:
//! - many sources answering one of our addresses within
//!   `backscatter_window_s`: somebody spoofs that address in an attack
//!   elsewhere and the victims answer us (`many_sources`);
//! - one source answering `backscatter_victim_targets` of our addresses
//!   within `backscatter_victim_window_s`: that source is the victim of a
//!   spoofed flood whose forged sources include our addresses
//!   (`one_victim`).
//!
//! Answers never count toward scans or sweeps.

use rustc_hash::{FxHashMap, FxHashSet};

use super::{
    alert::Alert,
    config::DetectConfig,
    context::{Context, SEC},
    detector::{Detector, Seen},
    episode::Said,
    episode::{Episode, Evidence, Key, Kind, KindSpec},
    probe::{Probe, Role},
    words::thousands,
};

pub static BACKSCATTER: KindSpec = KindSpec {
    name: "backscatter",
    names_tool: false,
    one_source: false,
    many_sources: true,
    orders_targets: false,
    routes_by_dst: true,
};

/// A backscatter episode's evidence: its shape, and for one victim the
/// source port most of its answers come from.
struct Answers {
    one_victim: bool,
    sport: Option<u16>,
}

impl Evidence for Answers {
    fn accepts(&self, _key: &Key, p: &Probe) -> bool {
        p.role == Role::Backscatter
    }

    /// Someone else is attacked: 1, or 2 once 1,000 answer (many
    /// sources) or 256 of our addresses are answered (one victim).
    fn severity(&self, ep: &Episode, _cfg: &DetectConfig) -> u8 {
        let wide = if self.one_victim {
            ep.targets.count() >= 256
        } else {
            ep.sources.count() >= 1_000
        };
        1 + u8::from(wide)
    }

    fn summary(&self, ep: &Episode, s: &Said) -> String {
        let Said {
            going,
            src,
            target,
            targets,
            probes,
            took,
            ..
        } = s;
        if !self.one_victim {
            return format!(
                "{target} {} unsolicited SYN-ACK/RST/ICMP errors from {} sources: someone is spoofing this address in an attack elsewhere",
                if *going { "is getting" } else { "got" },
                thousands(ep.sources.count())
            );
        }
        let what = match (ep.proto, ep.flags & 0x14) {
            (6, 0x10) => "SYN-ACKs",
            (6, _) => "RSTs",
            _ => "ICMP errors",
        };
        let from = match self.sport {
            Some(port) if port != 0 => format!(" from port {port}"),
            _ => String::new(),
        };
        format!(
            "{src} {} a spoofed flood: {probes} {what}{from} to {targets} of our addresses in {took}",
            if *going { "is answering" } else { "answered" }
        )
    }

    fn fields(&self, _ep: &Episode, _cfg: &DetectConfig, a: &mut Alert) {
        a.shape = Some(
            if self.one_victim {
                "one_victim"
            } else {
                "many_sources"
            }
            .to_string(),
        );
    }
}

const TARGET_CAP: usize = 65_536;
const SOURCE_CAP: usize = 8192;

struct Window {
    start: i64,
    sources: FxHashSet<u128>,
    probes: u64,
}

/// One victim's answers to our addresses.
struct Victim {
    start: i64,
    targets: FxHashSet<u128>,
    probes: u64,
    /// The source port of its first answer, and how many answers came from it.
    sport: u16,
    same_sport: u64,
}

/// Is this answer (a RST, an ICMP error) part of its source's own scan:
/// sent to a (host, port) the source probed before — a stateless scanner
/// resetting the connections our hosts accepted — rather than an answer to
/// something spoofed in our name?
fn answers_own_probe(cx: &Context, p: &Probe) -> bool {
    let ported = super::probe::ported(p.proto);
    if cx.book.probed(p.src, p.dst, ported.then_some(p.port)) {
        return true;
    }
    let Some(l) = cx.sources.light.get(&p.src) else {
        return false;
    };
    let same = |dst: u128, port: u16, role: u8| {
        role == Role::Probe.code() && dst == p.dst && (!ported || port == p.port)
    };
    if same(l.first_dst, l.first_port, l.first_role)
        || (l.has_second && same(l.second_dst, l.second_port, l.second_role))
    {
        return true;
    }
    let Some(h) = cx.sources.heavy.get(&p.src) else {
        return false;
    };
    if ported {
        h.targets
            .get(&(p.dst, p.proto))
            .is_some_and(|t| t.ports.contains(p.port))
    } else {
        [6u8, 17, 0]
            .iter()
            .any(|pr| h.targets.contains_key(&(p.dst, *pr)))
    }
}

/// How often the windows are pruned and their size taken. A stale window
/// is reset when its address is next seen, so pruning is only for memory:
/// walking every window each second of traffic cost 40 % of the detector's
/// time on a busy mix.
const PRUNE_EVERY: i64 = 10 * SEC;

/// The backscatter detector.
#[derive(Default)]
pub struct Backscatter {
    win: FxHashMap<u128, Window>,
    victims: FxHashMap<u128, Victim>,
    next_prune: i64,
    /// The windows' size as of the last prune.
    bytes: usize,
}

impl Detector for Backscatter {
    fn name(&self) -> &'static str {
        "backscatter"
    }

    fn observe(&mut self, p: &Probe, _seen: &Seen, cx: &mut Context) {
        if p.role == Role::Backscatter && !answers_own_probe(cx, p) {
            self.observe_victim(cx, p);
            self.observe_target(cx, p);
        }
    }

    /// The windows that made it are spent.
    fn ended(&mut self, ep: &Episode, _cx: &mut Context) {
        if ep.kind != Kind(&BACKSCATTER) {
            return;
        }
        match ep.key {
            Key::Src(_, src, _) => {
                self.victims.remove(&src);
            }
            Key::Dst(_, dst) => {
                self.win.remove(&dst);
            }
            Key::Port(..) | Key::Target(..) => {}
        }
    }

    fn tick(&mut self, cx: &mut Context) {
        let (now, cfg) = (cx.now, &cx.cfg);
        if now < self.next_prune {
            return;
        }
        self.next_prune = now + PRUNE_EVERY;
        let w = cfg.backscatter_window_s as i64 * SEC;
        self.win.retain(|_, x| now - x.start <= w);
        let v = cfg.backscatter_victim_window_s as i64 * SEC;
        self.victims.retain(|_, x| now - x.start <= v);
        self.bytes = self.measure();
    }

    fn bytes(&self) -> usize {
        // Between prunes, the maps' own growth (their entries' sets as of
        // the last prune).
        self.bytes
            .max((self.win.capacity() + self.victims.capacity()) * 17)
    }
}

impl Backscatter {
    /// The windows' bytes, walking them.
    fn measure(&self) -> usize {
        self.win
            .values()
            .map(|w| 40 + w.sources.capacity() * 17)
            .sum::<usize>()
            + self.win.capacity() * 17
            + self
                .victims
                .values()
                .map(|v| 64 + v.targets.capacity() * 17)
                .sum::<usize>()
            + self.victims.capacity() * 17
    }

    /// One source answering many of our addresses.
    fn observe_victim(&mut self, cx: &mut Context, p: &Probe) {
        let window = cx.cfg.backscatter_victim_window_s as i64 * SEC;
        if self.victims.len() >= TARGET_CAP && !self.victims.contains_key(&p.src) {
            return;
        }
        let fresh = || Victim {
            start: p.ts_ns,
            targets: FxHashSet::default(),
            probes: 0,
            sport: p.sport,
            same_sport: 0,
        };
        let v = self.victims.entry(p.src).or_insert_with(fresh);
        if p.ts_ns - v.start > window {
            *v = fresh();
        }
        v.probes += 1;
        if p.sport == v.sport {
            v.same_sport += 1;
        }
        // Past the threshold the episode holds the targets: the set stops here.
        let room = v.targets.len() < (cx.cfg.backscatter_victim_targets as usize).min(SOURCE_CAP);
        let new = room && v.targets.insert(p.dst);
        let (n, start, probes, sport, same) =
            (v.targets.len(), v.start, v.probes, v.sport, v.same_sport);
        if !new || n < cx.cfg.backscatter_victim_targets as usize {
            return;
        }
        let key = Key::Src(Kind(&BACKSCATTER), p.src, 0);
        if cx.active(&key).is_some() {
            return;
        }
        let mut targets: Vec<u128> = self.victims[&p.src].targets.iter().copied().collect();
        targets.sort_unstable();
        // The service it answers from, when most answers share one port.
        let evidence = Box::new(Answers {
            one_victim: true,
            sport: (super::probe::ported(p.proto) && same * 10 >= probes * 9).then_some(sport),
        });
        cx.start(Kind(&BACKSCATTER), key, p, evidence, |ep| {
            ep.sources.insert(p.src);
            for t in targets {
                ep.targets.insert(t);
            }
            ep.first_ns = start;
            ep.probes = probes;
        });
    }

    /// Many sources answering one of our addresses.
    fn observe_target(&mut self, cx: &mut Context, p: &Probe) {
        let window = cx.cfg.backscatter_window_s as i64 * SEC;
        if self.win.len() >= TARGET_CAP && !self.win.contains_key(&p.dst) {
            return;
        }
        let w = self.win.entry(p.dst).or_insert_with(|| Window {
            start: p.ts_ns,
            sources: FxHashSet::default(),
            probes: 0,
        });
        if p.ts_ns - w.start > window {
            w.start = p.ts_ns;
            w.sources.clear();
            w.probes = 0;
        }
        w.probes += 1;
        let new = w.sources.len() < SOURCE_CAP && w.sources.insert(p.src);
        let (n, start, probes) = (w.sources.len(), w.start, w.probes);
        if !new || n < cx.cfg.backscatter_sources as usize {
            return;
        }
        let key = Key::Dst(Kind(&BACKSCATTER), p.dst);
        if cx.active(&key).is_some() {
            return;
        }
        let mut sources: Vec<u128> = self.win[&p.dst].sources.iter().copied().collect();
        sources.sort_unstable();
        let evidence = Box::new(Answers {
            one_victim: false,
            sport: None,
        });
        cx.start(Kind(&BACKSCATTER), key, p, evidence, |ep| {
            for s in sources {
                ep.sources.insert(s);
            }
            ep.targets.insert(p.dst);
            ep.first_ns = start;
            ep.probes = probes;
        });
    }
}
