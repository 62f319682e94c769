//! A source's heavy record: made when it sends a probe different from the
//! two its light record keeps (internet background sends one or two), and
//! fed every scan probe after. Port, sweep, protocol and flag scans read it.

use super::{
    context::Context,
    probe::{FlagType, Probe, Role},
    sources::{proto_slot, Heavy, Light, TargetPorts, PORTED_SLOTS},
    DetectConfig,
};

/// Makes sure `p.src` has a heavy record (within the memory budget); None
/// if this probe only repeats what the light record holds, or if the budget
/// evicted the source.
pub fn promote(cx: &mut Context, p: &Probe, seen: &Light) -> Option<Light> {
    if seen.heavy {
        // Already heavy: nothing to change in the light record.
        return Some(*seen);
    }
    let cfg = &cx.cfg;
    let l = cx.sources.light.get_mut(&p.src)?;
    if !l.heavy {
        let repeat =
            l.same_as_first(p.dst, p.port, p.proto) || l.same_as_second(p.dst, p.port, p.proto);
        // An odd flag mix to a port probed before is new evidence (flag
        // probing of one port: OS or firewall fingerprinting).
        // (The first probe is "the same as the first": it is no repeat.)
        if repeat && (l.probes <= 1 || !matches!(p.role, Role::Odd(_))) {
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
            if cfg.scan_ports > 2
                && cfg.scan_dark_ports > 2
                && cfg.sweep_targets > 2
                && cfg.sweep_dark_targets > 2
                && cfg.flag_probes > 2
                && cfg.protocols > 2
            {
                return None;
            }
        }
        l.heavy = true;
        let first = *l;
        let sweep_max = cfg.sweep_max_ports as usize;
        let th = Thresholds::of(cfg);
        let h = cx.sources.heavy_mut(p.src);
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
    cx.keep_budget();
    cx.sources.light.get(&p.src).copied()
}

/// The port_scan thresholds a target's ports are held to.
#[derive(Clone, Copy)]
pub struct Thresholds {
    ports: u32,
    dark_ports: u32,
}

impl Thresholds {
    pub fn of(cfg: &DetectConfig) -> Thresholds {
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
#[expect(
    clippy::too_many_arguments,
    reason = "one probe's fields and the thresholds, on the hottest path"
)]
pub fn record(
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
    let with_port = slot < PORTED_SLOTS;
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
