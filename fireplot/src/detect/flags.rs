//! flag_scan: `flag_probes` probes (distinct target and port) with a TCP
//! flag mix no stack sends first (NULL, FIN, Xmas, Maimon, SYN|FIN, ...),
//! or `flag_combos` distinct odd mixes from one source even to one port
//! (OS and firewall fingerprinting: nmap -O's T2, T3, T7). Those probes do
//! not count toward port_scan, so an Xmas scan is a flag_scan, not both.

use super::{
    alert::Alert,
    context::Context,
    detector::{Detector, Seen},
    episode::Said,
    episode::{Episode, Evidence, Key, Kind, KindSpec, Via},
    probe::{FlagType, Probe, Role},
    promote::promote,
    scan::SCAN_STEPS,
    sets::PortSet,
    sources::Light,
    words::scan_severity,
    DetectConfig,
};
use crate::record::line::flags_string;

pub static FLAG_SCAN: KindSpec = KindSpec {
    name: "flag_scan",
    names_tool: true,
    one_source: true,
    many_sources: false,
    orders_targets: false,
    routes_by_dst: false,
};

/// A flag scan's evidence: the most common odd mix, and every mix seen.
struct OddFlags {
    flag_type: FlagType,
    /// Distinct odd flag bytes (a 256-bit set).
    combos: [u64; 4],
}

fn combo_count(c: &[u64; 4]) -> u32 {
    c.iter().map(|w| w.count_ones()).sum()
}

/// The flag combinations of a set, named ("NULL" for none).
fn combo_names(c: &[u64; 4]) -> Vec<String> {
    (0..=255u8)
        .filter(|f| c[(f >> 6) as usize] & (1u64 << (f & 63)) != 0)
        .map(|f| {
            let s = flags_string(f);
            if s.is_empty() {
                "NULL".to_string()
            } else {
                s
            }
        })
        .collect()
}

impl Evidence for OddFlags {
    fn accepts(&self, _key: &Key, p: &Probe) -> bool {
        matches!(p.role, Role::Odd(_))
    }

    /// As a port scan by its ports; fingerprinting (several odd mixes) at
    /// least 2.
    fn severity(&self, ep: &Episode, _cfg: &DetectConfig) -> u8 {
        let s = scan_severity(u64::from(ep.ports.len()), SCAN_STEPS, ep.duration_s());
        if combo_count(&self.combos) > 1 {
            s.max(2)
        } else {
            s
        }
    }

    fn add(&mut self, p: &Probe, _via: Via) {
        if let Role::Odd(_) = p.role {
            self.combos[(p.flags >> 6) as usize] |= 1u64 << (p.flags & 63);
        }
    }

    fn summary(&self, ep: &Episode, s: &Said) -> String {
        let Said {
            going,
            src,
            target,
            ports,
            probes,
            took,
            ..
        } = s;
        if combo_count(&self.combos) > 1 {
            let names = combo_names(&self.combos);
            return format!(
                "{src} {} {} different odd TCP flag combinations ({}) to {ports} port{} of {target}: OS or firewall fingerprinting",
                if *going { "has sent" } else { "sent" },
                names.len(),
                names.iter().take(6).cloned().collect::<Vec<_>>().join(", ")
                    + if names.len() > 6 { ", ..." } else { "" },
                if ep.ports.len() == 1 { "" } else { "s" }
            );
        }
        let t = self.flag_type.title();
        let fl = flags_string(ep.flags);
        format!(
            "{src} {} {probes} {t} ({}) probes to {ports} TCP ports of {target} in {took}",
            if *going { "has sent" } else { "sent" },
            if fl.is_empty() {
                "no flags".to_string()
            } else {
                fl
            }
        )
    }

    fn fields(&self, _ep: &Episode, _cfg: &DetectConfig, a: &mut Alert) {
        a.flag_type = Some(self.flag_type.name().to_string());
        a.combos = Some(combo_names(&self.combos));
    }
}

/// The flag scan detector.
pub struct FlagScans;

impl Detector for FlagScans {
    fn name(&self) -> &'static str {
        "flag_scan"
    }

    fn observe(&mut self, p: &Probe, seen: &Seen, cx: &mut Context) {
        if let Role::Odd(t) = p.role {
            observe(cx, p, t, &seen.light);
        }
    }

    /// Its odd probes are spent.
    fn ended(&mut self, ep: &Episode, cx: &mut Context) {
        let Key::Src(kind, src, _) = ep.key else {
            return;
        };
        if kind != Kind(&FLAG_SCAN) {
            return;
        }
        cx.sources.spend(src);
        if let Some(h) = cx.sources.heavy.get_mut(&src) {
            h.odd.clear();
            h.odd_types.clear();
            h.odd_combos = [0; 4];
        }
        cx.sources.reaccount(src);
    }

    fn bytes(&self) -> usize {
        0
    }
}

/// A probe with an odd TCP flag mix.
fn observe(cx: &mut Context, p: &Probe, t: FlagType, seen: &Light) {
    let Some(light) = promote(cx, p, seen) else {
        return;
    };
    let cap = cx.cfg.flag_probes as usize * 4;
    {
        let h = cx.sources.heavy_mut(p.src);
        if h.odd.len() < cap {
            h.odd.insert((p.dst, p.port));
        }
        match h.odd_types.iter_mut().find(|(ft, _, _)| *ft == t) {
            Some(x) => x.1 += 1,
            None => h.odd_types.push((t, 1, p.flags)),
        }
        h.odd_combos[(p.flags >> 6) as usize] |= 1u64 << (p.flags & 63);
        // The flags of a type seeded from a first probe are learnt now.
        if let Some(x) = h
            .odd_types
            .iter_mut()
            .find(|(ft, _, f)| *ft == t && *f == 0 && p.flags != 0)
        {
            x.2 = p.flags;
        }
    }
    cx.sources.reaccount(p.src);
    let key = Key::Src(Kind(&FLAG_SCAN), p.src, 6);
    let h = &cx.sources.heavy[&p.src];
    let combos: u32 = combo_count(&h.odd_combos);
    if (h.odd.len() < cx.cfg.flag_probes as usize && combos < cx.cfg.flag_combos)
        || cx.active(&key).is_some()
    {
        return;
    }
    let odd_combos = h.odd_combos;
    let (flag_type, n, flags) = h
        .odd_types
        .iter()
        .copied()
        .max_by(|a, b| a.1.cmp(&b.1).then(b.0.cmp(&a.0)))
        .unwrap_or((t, 1, p.flags));
    let mut ports = PortSet::default();
    let mut targets: Vec<u128> = Vec::new();
    let mut odd: Vec<(u128, u16)> = h.odd.iter().copied().collect();
    odd.sort_unstable();
    for (d, port) in odd {
        ports.insert(port);
        if !targets.contains(&d) {
            targets.push(d);
        }
    }
    let odd_total: u64 = h.odd_types.iter().map(|x| x.1 as u64).sum();
    let evidence = Box::new(OddFlags {
        flag_type,
        combos: odd_combos,
    });
    cx.start(Kind(&FLAG_SCAN), key, p, evidence, |ep| {
        ep.sources.insert(p.src);
        ep.first_ns = light.first_ns;
        ep.probes = odd_total.max(n as u64);
        for port in ports.iter() {
            ep.add_port(port);
        }
        for d in targets {
            ep.targets.insert(d);
        }
        ep.flags = flags;
    });
}
