//! brute_force with `tool: mirai`: Mirai's default-credential phase. Its
//! scanner opens telnet on a host it found, TCP/23, and one time in ten
//! TCP/2323 instead (Antonakakis et al., "Understanding the Mirai Botnet",
//! USENIX Security 2017; psad names the same pattern): at least
//! `mirai_telnet_syns` SYNs from one source to TCP/23 of one host, and one
//! to TCP/2323 of that host. Only the ports and flags count, so firewall
//! logs (which carry no TCP sequence, Mirai's probe signature) show it too.

use rustc_hash::FxHashMap;

use super::{
    alert::Alert,
    config::DetectConfig,
    context::{Context, SEC},
    detector::{Detector, Seen},
    episode::{Episode, Evidence, Key, Kind, KindSpec, Said},
    probe::{Probe, Role, ACK, SYN},
    words::thousands,
};

pub static BRUTE_FORCE: KindSpec = KindSpec {
    name: "brute_force",
    names_tool: true,
    one_source: true,
    many_sources: false,
    orders_targets: false,
    routes_by_dst: false,
};

/// (source, host) pairs followed at once; quiet ones leave after an hour.
const CAP: usize = 1 << 16;
const QUIET_S: i64 = 3600;

/// A brute force's evidence: its SYNs to each telnet port.
struct Telnet {
    syns_23: u64,
    syns_2323: u64,
}

impl Evidence for Telnet {
    fn accepts(&self, _key: &Key, p: &Probe) -> bool {
        p.role == Role::Probe && p.proto == 6 && matches!(p.port, 23 | 2323)
    }

    fn add(&mut self, p: &Probe, _via: super::episode::Via) {
        if p.port == 23 {
            self.syns_23 += 1;
        } else {
            self.syns_2323 += 1;
        }
    }

    /// Logins with default credentials are an attack, not a look: 3.
    fn severity(&self, _ep: &Episode, _cfg: &DetectConfig) -> u8 {
        3
    }

    fn summary(&self, _ep: &Episode, s: &Said) -> String {
        format!(
            "{} {} Mirai's default-credential logins on {}: {} SYNs to TCP/23 and {} to TCP/2323 in {}",
            s.src,
            if s.going { "is trying" } else { "tried" },
            s.target,
            thousands(self.syns_23),
            thousands(self.syns_2323),
            s.took
        )
    }

    fn fields(&self, _ep: &Episode, _cfg: &DetectConfig, a: &mut Alert) {
        a.tool = Some("mirai".into());
    }
}

#[derive(Clone, Copy)]
struct Count {
    syns_23: u64,
    first_ns: i64,
    last_ns: i64,
}

/// The Mirai detector: SYNs to TCP/23 per (source, host).
#[derive(Default)]
pub struct Mirai {
    pairs: FxHashMap<(u128, u128), Count>,
}

impl Detector for Mirai {
    fn name(&self) -> &'static str {
        "mirai"
    }

    fn observe(&mut self, p: &Probe, _seen: &Seen, cx: &mut Context) {
        if p.role != Role::Probe
            || p.proto != 6
            || p.flags & (SYN | ACK) != SYN
            || !matches!(p.port, 23 | 2323)
        {
            return;
        }
        let k = (p.src, p.dst);
        if p.port == 23 {
            if self.pairs.len() >= CAP && !self.pairs.contains_key(&k) {
                return;
            }
            let c = self.pairs.entry(k).or_insert(Count {
                syns_23: 0,
                first_ns: p.ts_ns,
                last_ns: p.ts_ns,
            });
            c.syns_23 += 1;
            c.last_ns = c.last_ns.max(p.ts_ns);
            return;
        }
        let Some(c) = self.pairs.get(&k).copied() else {
            return;
        };
        if c.syns_23 < u64::from(cx.cfg.mirai_telnet_syns) {
            return;
        }
        let key = Key::Src(Kind(&BRUTE_FORCE), p.src, 6);
        if cx.active(&key).is_some() {
            return;
        }
        let evidence = Box::new(Telnet {
            syns_23: c.syns_23,
            syns_2323: 1,
        });
        cx.start(Kind(&BRUTE_FORCE), key, p, evidence, |ep| {
            ep.sources.insert(p.src);
            ep.targets.insert(p.dst);
            ep.add_port(23);
            ep.add_port(2323);
            ep.first_ns = c.first_ns;
            ep.probes = c.syns_23 + 1;
        });
    }

    fn tick(&mut self, cx: &mut Context) {
        let before = cx.now - QUIET_S * SEC;
        self.pairs.retain(|_, c| c.last_ns >= before);
    }

    /// Its counts are spent.
    fn ended(&mut self, ep: &Episode, _cx: &mut Context) {
        if let Key::Src(kind, src, _) = ep.key {
            if kind == Kind(&BRUTE_FORCE) {
                self.pairs.retain(|(s, _), _| *s != src);
            }
        }
    }

    fn bytes(&self) -> usize {
        self.pairs.capacity() * (32 + 24 + 1)
    }
}
