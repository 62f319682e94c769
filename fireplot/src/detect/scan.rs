//! port_scan, port_sweep and protocol_scan: one source's scan probes.
//!
//! port_scan: one target, many ports (`scan_ports` distinct ports on one
//! target, or `scan_dark_ports` dark ones). port_sweep: many targets
//! (`sweep_targets`, or `sweep_dark_targets` dark ones), few ports (at most
//! `sweep_max_ports` over all targets). A dark destination never answered
//! anyone since the sensor started (the kernel marks it, `PKT_DARK_*`): a
//! probe to it is a failed connection in TRW's sense, stronger evidence
//! than one a live service might have wanted. protocol_scan: `protocols`
//! distinct IP protocols. Odd TCP flag mixes are the flag detector's
//! (`flags.rs`): an Xmas scan is a flag_scan, not both. Sources that are
//! part of a synchronized group (a decoy scan) are reported as that group,
//! not one by one.

use super::{
    context::Context,
    detector::{Detector, Seen},
    episode::Said,
    episode::{Episode, Evidence, Key, Kind, KindSpec},
    probe::{Probe, Role},
    promote::{promote, record, Thresholds},
    sources::{proto_slot, Light, PORTED_SLOTS},
    DetectConfig,
};
use crate::detect::alert::Alert;

pub static PORT_SCAN: KindSpec = KindSpec {
    name: "port_scan",
    names_tool: true,
    one_source: true,
    many_sources: false,
    orders_targets: false,
    routes_by_dst: false,
};

pub static PORT_SWEEP: KindSpec = KindSpec {
    name: "port_sweep",
    orders_targets: true,
    ..PORT_SCAN
};

pub static PROTOCOL_SCAN: KindSpec = KindSpec {
    name: "protocol_scan",
    ..PORT_SCAN
};

/// A port scan's or sweep's evidence: its probes of one protocol.
struct Scan;

impl Evidence for Scan {
    fn accepts(&self, key: &Key, p: &Probe) -> bool {
        matches!(key, Key::Src(_, _, proto) if p.role == Role::Probe && p.proto == *proto)
    }

    fn summary(&self, ep: &Episode, s: &Said) -> String {
        let Said {
            going,
            proto,
            src,
            target,
            ports,
            targets,
            took,
            speed,
            order,
            ..
        } = s;
        if ep.kind == Kind(&PORT_SWEEP) {
            let list = ep
                .port_sample
                .iter()
                .map(|p| p.to_string())
                .collect::<Vec<_>>()
                .join(", ");
            let on = if list.is_empty() {
                format!("with {proto}")
            } else {
                format!(
                    "on {proto} port{} {list}",
                    if ep.port_sample.len() > 1 { "s" } else { "" }
                )
            };
            return if *going {
                format!("{src} is sweeping hosts {on}: {targets} hosts in {took} so far ({speed})")
            } else {
                format!("{src} swept {targets} hosts {on} in {took}, {order} order")
            };
        }
        if *going {
            format!(
                "{src} is scanning {proto} ports of {target}: {ports} ports in {took} so far ({speed}, {order} order)"
            )
        } else {
            format!(
                "{src} probed {ports} {proto} ports of {} in {took}, {order}{}",
                if ep.targets.count() > 1 {
                    format!("{targets} hosts (first {target})")
                } else {
                    target.clone()
                },
                if *speed == "slow" { ", slowly" } else { "" }
            )
        }
    }
}

/// A protocol scan's evidence: the IP protocols probed.
struct Protocols {
    bits: [u64; 4],
}

impl Protocols {
    fn list(&self) -> Vec<u8> {
        (0..=255u8)
            .filter(|p| self.bits[(p >> 6) as usize] & (1u64 << (p & 63)) != 0)
            .collect()
    }
}

impl Evidence for Protocols {
    fn accepts(&self, _key: &Key, p: &Probe) -> bool {
        p.role == Role::Probe
    }

    fn add(&mut self, p: &Probe, _via: super::episode::Via) {
        self.bits[(p.proto >> 6) as usize] |= 1u64 << (p.proto & 63);
    }

    fn summary(&self, _ep: &Episode, s: &Said) -> String {
        format!(
            "{} {} {} IP protocols of {} in {}",
            s.src,
            if s.going { "is probing" } else { "probed" },
            self.list().len(),
            s.target,
            s.took
        )
    }

    fn fields(&self, _ep: &Episode, _cfg: &DetectConfig, a: &mut Alert) {
        a.protocols = Some(self.list());
    }
}

/// The port, sweep and protocol scan detector.
pub struct Scans;

impl Detector for Scans {
    fn name(&self) -> &'static str {
        "scan"
    }

    fn observe(&mut self, p: &Probe, seen: &Seen, cx: &mut Context) {
        if p.role == Role::Probe {
            observe(cx, p, &seen.light);
        }
    }

    fn bytes(&self) -> usize {
        0
    }
}

/// A scan probe (SYN, ACK, UDP, ICMP echo, another protocol).
fn observe(cx: &mut Context, p: &Probe, seen: &Light) {
    let Some(light) = promote(cx, p, seen) else {
        return;
    };
    let scan_key = Key::Src(Kind(&PORT_SCAN), p.src, p.proto);
    let sweep_key = Key::Src(Kind(&PORT_SWEEP), p.src, p.proto);
    let protocol_key = Key::Src(Kind(&PROTOCOL_SCAN), p.src, 0);
    let scanning = cx.active(&scan_key).is_some();
    let cfg = &cx.cfg;
    let slot = proto_slot(p.proto);
    let (scan, sweep, protocols) = {
        let super::sources::Sources {
            heavy, heavy_bytes, ..
        } = &mut cx.sources;
        let h = heavy.entry(p.src).or_default();
        record(
            h,
            p.dst,
            p.port,
            p.proto,
            p.dark,
            cfg.sweep_max_ports as usize,
            Thresholds::of(cfg),
            !scanning,
        );
        // Once reported, the episode tallies the signatures.
        if !scanning {
            h.tools.add(p);
        }
        let b = h.estimate_bytes();
        *heavy_bytes = *heavy_bytes + b - h.bytes;
        h.bytes = b;
        (
            slot < PORTED_SLOTS && h.scan_target[slot],
            (h.target_counts[slot] >= cfg.sweep_targets as u64
                || h.dark_targets[slot] >= cfg.sweep_dark_targets as u64)
                && !h.union_over[slot],
            h.protocol_count() >= cfg.protocols,
        )
    };
    if !(scan || sweep || protocols) {
        return;
    }
    let grouped = cx.groups.is_member(p.src);
    // A scan or sweep seen only through dark destinations waits while the
    // source co-probes with another not yet judged: lockstep sources are
    // reported as their group (which needs `sync_ports` co-probes), not one
    // by one. The plain thresholds apply as always.
    let (scan, sweep) = if grouped {
        (scan, sweep)
    } else {
        let h = &cx.sources.heavy[&p.src];
        let plain_scan = slot < PORTED_SLOTS
            && h.targets
                .get(&(p.dst, p.proto))
                .is_some_and(|t| t.ports.len() >= cx.cfg.scan_ports);
        let plain_sweep = h.target_counts[slot] >= cx.cfg.sweep_targets as u64;
        let new = |key| cx.active(&key).is_none();
        let dark_only =
            (scan && !plain_scan && new(scan_key)) || (sweep && !plain_sweep && new(sweep_key));
        if dark_only && cx.groups.in_open_pair(p.src) {
            (scan && plain_scan, sweep && plain_sweep)
        } else {
            (scan, sweep)
        }
    };
    let h = &cx.sources.heavy[&p.src];
    let tools = h.tools;

    if scan && !grouped && cx.active(&scan_key).is_none() {
        let ports: Vec<u16> = h
            .targets
            .get(&(p.dst, p.proto))
            .map(|t| t.ports.iter())
            .unwrap_or_default();
        let order = h.port_order;
        cx.start(Kind(&PORT_SCAN), scan_key, p, Box::new(Scan), |ep| {
            seed(ep, &light, p);
            ep.tools = tools;
            ep.targets.insert(p.dst);
            for port in ports {
                ep.add_port(port);
            }
            ep.order = order;
        });
    }
    if sweep && !grouped && cx.active(&sweep_key).is_none() {
        let h = &cx.sources.heavy[&p.src];
        let want = if slot < PORTED_SLOTS { p.proto } else { 0 };
        let mut targets: Vec<u128> = h
            .targets
            .keys()
            .filter(|(_, pr)| *pr == want)
            .map(|(d, _)| *d)
            .collect();
        targets.sort_unstable();
        let ports = h.union_ports[slot].clone();
        let order = h.target_order;
        cx.start(Kind(&PORT_SWEEP), sweep_key, p, Box::new(Scan), |ep| {
            seed(ep, &light, p);
            ep.tools = tools;
            for t in targets {
                ep.targets.insert(t);
            }
            if super::probe::ported(p.proto) {
                for port in ports {
                    ep.add_port(port);
                }
            }
            ep.order = order;
        });
    }
    if protocols && cx.active(&protocol_key).is_none() {
        let bits = cx.sources.heavy[&p.src].protocols;
        cx.start(
            Kind(&PROTOCOL_SCAN),
            protocol_key,
            p,
            Box::new(Protocols { bits }),
            |ep| {
                seed(ep, &light, p);
                ep.tools = tools;
                ep.targets.insert(p.dst);
                ep.proto = 0;
            },
        );
    }
}

/// What every per-source episode starts with: the source, its first
/// probe's time, its probe count so far.
pub(super) fn seed(ep: &mut Episode, light: &Light, p: &Probe) {
    ep.sources.insert(p.src);
    ep.first_ns = light.first_ns;
    ep.last_ns = p.ts_ns;
    ep.probes = light.probes as u64;
}
