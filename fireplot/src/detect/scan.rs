//! port_scan, port_sweep, protocol_scan and flag_scan: one source's probes.
//!
//! port_scan: one target, many ports (`scan_ports` distinct ports on one
//! target, or `scan_dark_ports` dark ones). port_sweep: many targets
//! (`sweep_targets`, or `sweep_dark_targets` dark ones), few ports (at most
//! `sweep_max_ports` over all targets). A dark destination never answered
//! anyone since the sensor started (the kernel marks it, `PKT_DARK_*`): a
//! probe to it is a failed connection in TRW's sense, stronger evidence
//! than one a live service might have wanted. protocol_scan: `protocols` distinct IP
//! protocols. flag_scan: `flag_probes` probes with a TCP flag mix no stack
//! sends first (NULL, FIN, Xmas, Maimon, SYN|FIN, ...); those probes do not
//! count toward port_scan, so an Xmas scan is a flag_scan, not both.
//! Sources that are part of a synchronized group (a decoy scan) are
//! reported as that group, not one by one.

use super::{
    episode::{Key, Kind, PortSet},
    probe::{FlagType, Probe},
    sources::{proto_slot, Heavy, Light, TargetPorts},
    Engine,
};

/// Makes sure `p.src` has a heavy record (within the memory budget); None
/// if this probe only repeats what the light record holds, or if the budget
/// evicted the source.
fn promote(e: &mut Engine, p: &Probe, seen: &Light) -> Option<Light> {
    if seen.heavy {
        // Already heavy: nothing to change in the light record.
        return Some(*seen);
    }
    let l = e.sources.light.get_mut(&p.src)?;
    if !l.heavy {
        let repeat =
            l.same_as_first(p.dst, p.port, p.proto) || l.same_as_second(p.dst, p.port, p.proto);
        // An odd flag mix to a port probed before is new evidence (flag
        // probing of one port: OS or firewall fingerprinting).
        // (The first probe is "the same as the first": it is no repeat.)
        if repeat && (l.probes <= 1 || !matches!(p.role, super::probe::Role::Odd(_))) {
            return None;
        }
        if !repeat && !l.has_second {
            l.has_second = true;
            l.second_dst = p.dst;
            l.second_port = p.port;
            l.second_proto = p.proto;
            l.second_role = p.role.code();
            l.second_dark = p.dark;
            // Two different probes are still background unless the
            // thresholds are that low; a third makes the source heavy.
            if e.cfg.scan_ports > 2
                && e.cfg.scan_dark_ports > 2
                && e.cfg.sweep_targets > 2
                && e.cfg.sweep_dark_targets > 2
                && e.cfg.flag_probes > 2
                && e.cfg.protocols > 2
            {
                return None;
            }
        }
        l.heavy = true;
        let first = *l;
        let sweep_max = e.cfg.sweep_max_ports as usize;
        let th = Thresholds::of(&e.cfg);
        let h = e.sources.heavy_mut(p.src);
        let mut seeds = vec![(
            first.first_dst,
            first.first_port,
            first.first_proto,
            first.first_role,
            first.first_dark,
        )];
        if first.has_second
            && !(first.second_dst == p.dst
                && first.second_port == p.port
                && first.second_proto == p.proto)
        {
            seeds.push((
                first.second_dst,
                first.second_port,
                first.second_proto,
                first.second_role,
                first.second_dark,
            ));
        }
        for (dst, port, proto, role, dark) in seeds {
            match role {
                0 => record(h, dst, port, proto, dark, sweep_max, th, true),
                255 => {}
                c => {
                    if let Some(t) = FlagType::from_code(c) {
                        h.odd.insert((dst, port));
                        if let Some(f) = t.flags() {
                            h.odd_combos[(f >> 6) as usize] |= 1u64 << (f & 63);
                        }
                        match h.odd_types.iter_mut().find(|(ft, _, _)| *ft == t) {
                            Some(x) => x.1 += 1,
                            None => h.odd_types.push((t, 1, 0)),
                        }
                    }
                }
            }
        }
    }
    // A new heavy record: make room for it, which may take this very
    // source (then there is nothing to learn from it now).
    e.keep_budget();
    e.sources.light.get(&p.src).copied()
}

/// The port_scan thresholds a target's ports are held to.
#[derive(Clone, Copy)]
struct Thresholds {
    ports: u32,
    dark_ports: u32,
}

impl Thresholds {
    fn of(cfg: &super::DetectConfig) -> Thresholds {
        Thresholds {
            ports: cfg.scan_ports,
            dark_ports: cfg.scan_dark_ports,
        }
    }
}

/// Adds a scan probe to a heavy record. `dark`: its destination (address or
/// port) had never answered anyone.
/// `ports`: whether per-target port sets still matter (not once the source
/// is reported as a port scanner of this protocol: the episode has them).
#[allow(clippy::too_many_arguments)]
fn record(
    h: &mut Heavy,
    dst: u128,
    port: u16,
    proto: u8,
    dark: bool,
    sweep_max: usize,
    th: Thresholds,
    ports: bool,
) {
    h.protocols[(proto >> 6) as usize] |= 1u64 << (proto & 63);
    h.target_order.push(dst);
    let slot = proto_slot(proto);
    let with_port = slot < 2;
    if with_port {
        h.port_order.push(port as u128);
    }
    let key = (dst, if with_port { proto } else { 0 });
    let room = h.targets.len() < Heavy::MAX_TARGETS;
    let tp = match h.targets.entry(key) {
        std::collections::hash_map::Entry::Occupied(o) => Some(o.into_mut()),
        std::collections::hash_map::Entry::Vacant(v) => {
            h.target_counts[slot] += 1;
            if dark {
                h.dark_targets[slot] += 1;
            }
            room.then(|| v.insert(TargetPorts::default()))
        }
    };
    if with_port && ports {
        if let Some(tp) = tp {
            let was_bitmap = tp.ports.is_bitmap();
            if tp.ports.insert(port) && dark {
                tp.dark += 1;
            }
            if !was_bitmap && tp.ports.is_bitmap() {
                h.bitmaps += 1;
            }
            h.scan_target[slot] |= tp.is_scan(th.ports, th.dark_ports);
        }
        if !h.union_over[slot] && !h.union_ports[slot].contains(&port) {
            h.union_ports[slot].push(port);
            if h.union_ports[slot].len() > sweep_max {
                h.union_over[slot] = true;
            }
        }
    }
}

/// A scan probe (SYN, ACK, UDP, ICMP echo, another protocol).
pub fn observe(e: &mut Engine, p: &Probe, seen: &Light) {
    let Some(light) = promote(e, p, seen) else {
        return;
    };
    let scanning = e
        .active(&Key::Src(Kind::PortScan, p.src, p.proto))
        .is_some();
    let cfg = &e.cfg;
    let slot = proto_slot(p.proto);
    let (scan, sweep, protocols) = {
        let super::sources::Sources {
            heavy, heavy_bytes, ..
        } = &mut e.sources;
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
            slot < 2 && h.scan_target[slot],
            (h.target_counts[slot] >= cfg.sweep_targets as u64
                || h.dark_targets[slot] >= cfg.sweep_dark_targets as u64)
                && !h.union_over[slot],
            h.protocol_count() >= cfg.protocols,
        )
    };
    if !(scan || sweep || protocols) {
        return;
    }
    let grouped = e.sync.is_member(p.src);
    // A scan or sweep seen only through dark destinations waits while the
    // source co-probes with another not yet judged: lockstep sources are
    // reported as their group (which needs `sync_ports` co-probes), not one
    // by one. The plain thresholds apply as always.
    let (scan, sweep) = if grouped {
        (scan, sweep)
    } else {
        let h = &e.sources.heavy[&p.src];
        let plain_scan = slot < 2
            && h.targets
                .get(&(p.dst, p.proto))
                .is_some_and(|t| t.ports.len() >= e.cfg.scan_ports);
        let plain_sweep = h.target_counts[slot] >= e.cfg.sweep_targets as u64;
        let new = |kind| e.active(&Key::Src(kind, p.src, p.proto)).is_none();
        let dark_only = (scan && !plain_scan && new(Kind::PortScan))
            || (sweep && !plain_sweep && new(Kind::PortSweep));
        if dark_only && e.sync.in_open_pair(p.src) {
            (scan && plain_scan, sweep && plain_sweep)
        } else {
            (scan, sweep)
        }
    };
    let h = &e.sources.heavy[&p.src];
    let tools = h.tools;

    if scan
        && !grouped
        && e.active(&Key::Src(Kind::PortScan, p.src, p.proto))
            .is_none()
    {
        let ports: Vec<u16> = h
            .targets
            .get(&(p.dst, p.proto))
            .map(|t| t.ports.iter())
            .unwrap_or_default();
        let order = h.port_order;
        e.start(
            Kind::PortScan,
            Key::Src(Kind::PortScan, p.src, p.proto),
            p,
            |ep| {
                seed(ep, &light, p);
                ep.tools = tools;
                ep.targets.insert(p.dst);
                for port in ports {
                    ep.add_port(port);
                }
                ep.order = order;
            },
        );
    }
    if sweep
        && !grouped
        && e.active(&Key::Src(Kind::PortSweep, p.src, p.proto))
            .is_none()
    {
        let h = &e.sources.heavy[&p.src];
        let want = if slot < 2 { p.proto } else { 0 };
        let mut targets: Vec<u128> = h
            .targets
            .keys()
            .filter(|(_, pr)| *pr == want)
            .map(|(d, _)| *d)
            .collect();
        targets.sort_unstable();
        let ports = h.union_ports[slot].clone();
        let order = h.target_order;
        e.start(
            Kind::PortSweep,
            Key::Src(Kind::PortSweep, p.src, p.proto),
            p,
            |ep| {
                seed(ep, &light, p);
                ep.tools = tools;
                for t in targets {
                    ep.targets.insert(t);
                }
                if matches!(p.proto, 6 | 17) {
                    for port in ports {
                        ep.add_port(port);
                    }
                }
                ep.order = order;
            },
        );
    }
    if protocols && e.active(&Key::Src(Kind::ProtocolScan, p.src, 0)).is_none() {
        let bits = e.sources.heavy[&p.src].protocols;
        e.start(
            Kind::ProtocolScan,
            Key::Src(Kind::ProtocolScan, p.src, 0),
            p,
            |ep| {
                seed(ep, &light, p);
                ep.tools = tools;
                ep.targets.insert(p.dst);
                ep.protocols = Some(bits);
                ep.proto = 0;
            },
        );
    }
}

/// What every per-source episode starts with: the source, its first
/// probe's time, its probe count so far.
fn seed(ep: &mut super::episode::Episode, light: &Light, p: &Probe) {
    ep.sources.insert(p.src);
    ep.first_ns = light.first_ns;
    ep.last_ns = p.ts_ns;
    ep.probes = light.probes as u64;
}

/// A probe with an odd TCP flag mix.
pub fn observe_odd(e: &mut Engine, p: &Probe, t: FlagType, seen: &Light) {
    let Some(light) = promote(e, p, seen) else {
        return;
    };
    let cap = e.cfg.flag_probes as usize * 4;
    {
        let h = e.sources.heavy_mut(p.src);
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
    e.sources.reaccount(p.src);
    let h = &e.sources.heavy[&p.src];
    let combos: u32 = h.odd_combos.iter().map(|w| w.count_ones()).sum();
    if (h.odd.len() < e.cfg.flag_probes as usize && combos < e.cfg.flag_combos)
        || e.active(&Key::Src(Kind::FlagScan, p.src, 6)).is_some()
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
    e.start(
        Kind::FlagScan,
        Key::Src(Kind::FlagScan, p.src, 6),
        p,
        |ep| {
            ep.sources.insert(p.src);
            ep.first_ns = light.first_ns;
            ep.probes = odd_total.max(n as u64);
            for port in ports.iter() {
                ep.add_port(port);
            }
            for d in targets {
                ep.targets.insert(d);
            }
            ep.flag_type = Some(flag_type);
            ep.flags = flags;
            ep.combos = Some(odd_combos);
        },
    );
}
