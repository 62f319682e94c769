//! Classification of inbound packets (DESIGN §2) and event emission.

use aya_ebpf::{
    bindings::{BPF_RB_AVAIL_DATA, BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP},
    helpers::{bpf_ktime_get_coarse_ns, bpf_ktime_get_ns},
    programs::XdpContext,
};

use fireplot_common::{
    config::{service_bit, Config},
    counters::{class_index, port_table, Misc, PORT_CHUNK},
    event::{Class, Event, PKT_DARK_ADDR, PKT_DARK_PORT, PKT_FRAGMENT, PKT_VLAN},
    flow::{LiveKey, ORIGIN_INSIDE},
    proto::{
        has_ports, DCCP_REQUEST, FAMILY_NONE, FAMILY_V4, FAMILY_V6, IPPROTO_DCCP, IPPROTO_SCTP,
        IPPROTO_TCP, IPPROTO_UDP, IPPROTO_UDPLITE, SCTP_INIT, TCP_ACK, TCP_SYN,
    },
};

use crate::{
    aggregate::{aggregate, budget_allow, gcra},
    bump, config,
    flows::{in_table, lookup, now_jiffies, Family, V4, V6},
    parse::{
        icmp, ipv4_addrs, ipv6_addrs, parse, port_proto, tcp, udp, Bounds, Headers, ParseError,
    },
    EVENTS, LIVE_ADDRS, LIVE_PORTS, PORT_HITS, RATE, SERVICE_PORTS, TARGET,
};

/// Bytes waiting in the ring before the reader is woken (about 800 events).
const WAKEUP_BYTES: u64 = 64 * 1024;
/// Bytes past `WAKEUP_BYTES` within which events still force a wakeup.
const WAKEUP_WINDOW: u64 = 8 * 1024;

/// What an event needs beyond the class. Addresses as two words each
/// (IPv4 in the low 4 bytes of the first word, in packet byte order).
pub(crate) struct Probe {
    pub(crate) src: [u64; 2],
    pub(crate) dst: [u64; 2],
    pub(crate) family: u8,
    pub(crate) proto: u8,
    pub(crate) sport: u16,
    pub(crate) dport: u16,
    pub(crate) tcp_flags: u8,
    pub(crate) tcp_seq: u32,
    pub(crate) tcp_window: u16,
    pub(crate) icmp_type: u8,
    pub(crate) icmp_code: u8,
}

impl Probe {
    #[inline(always)]
    fn new(family: u8, proto: u8, src: [u64; 2], dst: [u64; 2]) -> Probe {
        Probe {
            src,
            dst,
            family,
            proto,
            sport: 0,
            dport: 0,
            tcp_flags: 0,
            tcp_seq: 0,
            tcp_window: 0,
            icmp_type: 0,
            icmp_code: 0,
        }
    }
}

/// Classifies one inbound frame; counts it and emits its event if it has one.
#[inline(always)]
pub fn classify(ctx: &XdpContext) {
    let Some(cfg) = config() else {
        return;
    };
    let b = Bounds::new(ctx.data(), ctx.data_end());
    match parse(&b) {
        Ok(h) if h.family == FAMILY_V4 => classify_family::<V4>(ctx, &b.within(&h), cfg, &h),
        Ok(h) => classify_family::<V6>(ctx, &b.within(&h), cfg, &h),
        Err(ParseError::NonIp) => bump(class_index(Class::NonIp, FAMILY_NONE, 0)),
        Err(ParseError::Malformed { family, proto, l3 }) => {
            malformed(ctx, &b, cfg, family, proto, l3)
        }
        Err(ParseError::ExtOverflow { l3 }) => {
            bump(Misc::ExtHeaderOverflow.index());
            malformed(ctx, &b, cfg, FAMILY_V6, 0, l3)
        }
    }
}

#[inline(always)]
fn service(udp: bool, port: u16) -> bool {
    let (word, bit) = service_bit(udp, port);
    match SERVICE_PORTS.get(word) {
        Some(w) => *w & bit != 0,
        None => false,
    }
}

/// Is a port published as a service (`--service-port`) when no flow
/// answers: TCP's and UDP's bitmaps; never for other protocols.
#[derive(Clone, Copy)]
enum Published {
    No,
    Tcp(u16),
    Udp(u16),
}

/// What a packet's headers say before the flow table is asked.
enum Step {
    /// Classified on its headers alone (a SYN, an INIT, ICMP, DHCP).
    Known(Class),
    /// A reply if the flow of the reversed tuple (local port, remote port)
    /// is known (inside-opened: reply; accepted: service); else
    /// `Published` decides between service and unsolicited.
    Ask(u16, u16, Published),
}

/// The class of a packet asked about: from its flow lookup; the service
/// bitmap is read only when no flow answered (a reply, the common case,
/// skips it).
#[inline(always)]
fn by_origin(origin: Option<u8>, published: Published) -> Class {
    match origin {
        Some(ORIGIN_INSIDE) => Class::Reply,
        Some(_) => Class::Service,
        None => {
            let served = match published {
                Published::No => false,
                Published::Tcp(port) => service(false, port),
                Published::Udp(port) => service(true, port),
            };
            if served {
                Class::Service
            } else {
                Class::Unsolicited
            }
        }
    }
}

/// Classifies a parsed IPv4 or IPv6 packet. Every packet that needs the
/// flow table reaches one lookup (one inlined copy per family, whatever
/// the protocol).
#[inline(always)]
fn classify_family<F: Family>(ctx: &XdpContext, b: &Bounds, cfg: &Config, h: &Headers) {
    let Some((src, dst)) = F::addrs(b, h.l3) else {
        return;
    };
    let now = now_jiffies(cfg);
    let mut p = Probe::new(F::FAMILY, h.proto, F::words(src), F::words(dst));
    let step = if h.fragment {
        // No ports: matched on the address pair.
        bump(Misc::Fragments.index());
        Step::Ask(0, 0, Published::No)
    } else {
        match l4_step::<F>(b, h, &mut p, cfg, now) {
            Some(step) => step,
            None => return malformed(ctx, b, cfg, F::FAMILY, h.proto, h.l3),
        }
    };
    let class = match step {
        Step::Known(class) => class,
        Step::Ask(local, remote, published) => {
            // The reply to a flow the inside opened has the flow's tuple
            // reversed.
            let key = F::key(dst, src, local, remote, h.proto);
            by_origin(lookup::<F>(cfg, &key, now), published)
        }
    };
    finish(ctx, cfg, h, &p, class)
}

/// Reads the L4 header of a first fragment or whole packet into `p`:
/// its class if the headers say it, else what to ask the flow table.
/// None: the header is cut short (malformed).
#[inline(always)]
fn l4_step<F: Family>(
    b: &Bounds,
    h: &Headers,
    p: &mut Probe,
    cfg: &Config,
    now: u64,
) -> Option<Step> {
    Some(match h.proto {
        IPPROTO_TCP => {
            let t = tcp(b, h.l4)?;
            p.sport = t.sport;
            p.dport = t.dport;
            p.tcp_flags = t.flags;
            p.tcp_seq = t.seq;
            p.tcp_window = t.window;
            if t.flags & (TCP_SYN | TCP_ACK) == TCP_SYN {
                // A SYN opens; it never answers an inside flow (simultaneous
                // open aside), so it skips the table.
                Step::Known(if service(false, t.dport) {
                    Class::Service
                } else {
                    Class::Unsolicited
                })
            } else {
                Step::Ask(t.dport, t.sport, Published::Tcp(t.dport))
            }
        }
        IPPROTO_UDP => {
            let (sport, dport) = udp(b, h.l4)?;
            p.sport = sport;
            p.dport = dport;
            if (sport, dport) == F::DHCP_REPLY {
                Step::Known(Class::Control)
            } else {
                Step::Ask(dport, sport, Published::Udp(dport))
            }
        }
        IPPROTO_SCTP | IPPROTO_UDPLITE | IPPROTO_DCCP => {
            let (sport, dport, ty) = port_proto(b, h.l4, h.proto)?;
            p.sport = sport;
            p.dport = dport;
            p.icmp_type = ty;
            if opens(h.proto, ty) {
                // Like a SYN: it never answers an inside flow.
                Step::Known(Class::Unsolicited)
            } else {
                Step::Ask(dport, sport, Published::No)
            }
        }
        x if x == F::ICMP => {
            let (ty, code, id) = icmp(b, h.l4)?;
            p.icmp_type = ty;
            p.icmp_code = code;
            if ty == F::ECHO_REPLY {
                p.sport = id;
                return Some(Step::Ask(id, 0, Published::No));
            }
            Step::Known(if ty == F::ECHO_REQUEST {
                p.sport = id;
                if cfg.service_icmp_echo != 0 {
                    Class::Service
                } else {
                    Class::Unsolicited
                }
            } else if F::is_error(ty) {
                if quoted::<F>(b, h.l4 + 8, cfg, now) {
                    Class::Related
                } else {
                    Class::Unsolicited
                }
            } else if F::is_control(ty) {
                Class::Control
            } else {
                Class::Unsolicited
            })
        }
        _ => Step::Ask(0, 0, Published::No),
    })
}

/// Does an SCTP or DCCP packet of type `ty` open an association (INIT,
/// Request)? UDP-Lite has no type: its datagrams may be replies.
#[inline(always)]
fn opens(proto: u8, ty: u8) -> bool {
    match proto {
        IPPROTO_SCTP => ty == SCTP_INIT,
        IPPROTO_DCCP => ty == DCCP_REQUEST,
        _ => false,
    }
}

/// Does the header quoted by an ICMP error at `off` belong to a flow the
/// inside opened? The quote is of an outbound packet: its source is local.
#[inline(always)]
fn quoted<F: Family>(b: &Bounds, off: usize, cfg: &Config, now: u64) -> bool {
    let Some((proto, src, dst, l4)) = F::inner(b, off) else {
        return false;
    };
    let (local_port, remote_port) = match proto {
        // The quote holds 8 bytes of L4 header at least (RFC 792, 4443):
        // every protocol with ports starts with them.
        p if has_ports(p) => match udp(b, l4) {
            Some(ports) => ports,
            None => return false,
        },
        x if x == F::ICMP => match icmp(b, l4) {
            Some((ty, _, id)) if ty == F::ECHO_REQUEST => (id, 0),
            _ => return false,
        },
        _ => (0, 0),
    };
    in_table::<F>(cfg, &F::key(src, dst, local_port, remote_port, proto), now)
}

/// Counts the packet; unsolicited ones also bump their port and send an event.
#[inline(always)]
fn finish(ctx: &XdpContext, cfg: &Config, h: &Headers, p: &Probe, class: Class) {
    bump(class_index(class, p.family, p.proto));
    if class as u8 != Class::Unsolicited as u8 {
        return;
    }
    if !h.fragment {
        if let Some(table) = port_table(p.family, p.proto) {
            let flat = table * 65536 + p.dport as usize;
            if let Some(chunk) = PORT_HITS.get_ptr_mut((flat / PORT_CHUNK) as u32) {
                // SAFETY: per-CPU value; index masked into the chunk.
                unsafe { (*chunk)[flat & (PORT_CHUNK - 1)] += 1 };
            }
        }
    }
    let mut pkt_flags = 0;
    if h.fragment {
        pkt_flags |= PKT_FRAGMENT;
    }
    if h.vlan {
        pkt_flags |= PKT_VLAN;
    }
    emit(ctx, cfg, p, class, h.ttl, h.ip_id, pkt_flags);
}

/// Counts a malformed frame and, if enabled, sends what could be read of it.
#[inline(always)]
fn malformed(ctx: &XdpContext, b: &Bounds, cfg: &Config, family: u8, proto: u8, l3: usize) {
    bump(class_index(Class::Malformed, family, proto));
    if cfg.emit_malformed == 0 {
        return;
    }
    let (src, dst) = match family {
        FAMILY_V4 => match ipv4_addrs(b, l3) {
            Some((s, d)) => ([s as u64, 0], [d as u64, 0]),
            None => ([0; 2], [0; 2]),
        },
        FAMILY_V6 => ipv6_addrs(b, l3).unwrap_or(([0; 2], [0; 2])),
        _ => ([0; 2], [0; 2]),
    };
    let p = Probe::new(family, proto, src, dst);
    emit(ctx, cfg, &p, Class::Malformed, 0, 0, 0);
}

/// `PKT_DARK_*` bits of an unsolicited packet: has its destination (or
/// its destination port) never answered anyone? Two lookups, paid only by
/// the events the limiter lets through.
#[inline(always)]
fn dark_bits(p: &Probe, pkt_flags: u8) -> u8 {
    let mut key = LiveKey {
        addr: p.dst,
        port: 0,
        proto: 0,
        family: p.family,
        _pad: [0; 4],
    };
    // SAFETY: lookups only; the values are not read.
    if unsafe { LIVE_ADDRS.get(&key) }.is_none() {
        return PKT_DARK_ADDR;
    }
    if has_ports(p.proto) && pkt_flags & PKT_FRAGMENT == 0 {
        key.port = p.dport;
        key.proto = p.proto;
        // SAFETY: as above.
        if unsafe { LIVE_PORTS.get(&key) }.is_none() {
            return PKT_DARK_PORT;
        }
    }
    0
}

#[inline(always)]
fn emit(
    ctx: &XdpContext,
    cfg: &Config,
    p: &Probe,
    class: Class,
    ttl: u8,
    ip_id: u16,
    pkt_flags: u8,
) {
    // The limiters run on the coarse clock (one tick, a few ms): a flood's
    // aggregated packets never pay for reading the clocksource.
    let coarse_ns = if cfg.replay != 0 {
        cfg.replay_ns
    } else {
        // SAFETY: a helper without arguments or preconditions.
        unsafe { bpf_ktime_get_coarse_ns() }
    };
    // A packet that is not sent one by one is counted by why, then in its
    // aggregate: a source over its limit, a target under a flood, the
    // CPU's budget spent, or (below) a full ring.
    let held = if !gcra(
        &RATE,
        p.src,
        p.family,
        0,
        0,
        cfg.rate_interval_ns,
        cfg.rate_tolerance_ns,
        coarse_ns,
    ) {
        Some(Misc::Suppressed)
    } else if !gcra(
        &TARGET,
        p.dst,
        p.family,
        p.proto,
        p.dport,
        cfg.target_interval_ns,
        cfg.target_tolerance_ns,
        coarse_ns,
    ) {
        Some(Misc::TargetLimited)
    } else if !budget_allow(cfg, coarse_ns) {
        Some(Misc::OverBudget)
    } else {
        None
    };
    if let Some(why) = held {
        bump(why.index());
        return aggregate(ctx, p, class, pkt_flags, coarse_ns);
    }
    let mut pkt_flags = pkt_flags;
    if cfg.mark_dark != 0 && class as u8 == Class::Unsolicited as u8 {
        pkt_flags |= dark_bits(p, pkt_flags);
    }
    let now_ns = if cfg.replay != 0 {
        cfg.replay_ns
    } else {
        // SAFETY: a helper without arguments or preconditions.
        unsafe { bpf_ktime_get_ns() }
    };
    let Some(mut entry) = EVENTS.reserve::<Event>(0) else {
        bump(Misc::RingFull.index());
        return aggregate(ctx, p, class, pkt_flags, coarse_ns);
    };
    let mut ev = Event::zeroed();
    ev.ts_ns = now_ns;
    // SAFETY: `src`/`dst` are 16-byte arrays at 8-aligned offsets.
    unsafe {
        *(ev.src.as_mut_ptr() as *mut [u64; 2]) = p.src;
        *(ev.dst.as_mut_ptr() as *mut [u64; 2]) = p.dst;
    }
    ev.ifindex = ctx.ingress_ifindex() as u32;
    ev.tcp_seq = p.tcp_seq;
    ev.pkt_len = (ctx.data_end() - ctx.data()) as u16;
    ev.sport = p.sport;
    ev.dport = p.dport;
    ev.ip_id = ip_id;
    ev.tcp_window = p.tcp_window;
    ev.family = p.family;
    ev.proto = p.proto;
    ev.tcp_flags = p.tcp_flags;
    ev.ttl = ttl;
    ev.class = class as u8;
    ev.pkt_flags = pkt_flags;
    ev.icmp_type = p.icmp_type;
    ev.icmp_code = p.icmp_code;
    entry.write(ev);
    // Waking the reader for every event costs more than the event itself
    // once it keeps up; wake it when a batch has just gathered. Past that
    // window the reader is awake (or the ring is full) and more wakeups
    // would only add cost. The loader also drains on a short timer, so a
    // lone event waits at most that long.
    let avail = EVENTS.query(BPF_RB_AVAIL_DATA as u64);
    let flags = if (WAKEUP_BYTES..WAKEUP_BYTES + WAKEUP_WINDOW).contains(&avail) {
        BPF_RB_FORCE_WAKEUP
    } else {
        BPF_RB_NO_WAKEUP
    };
    entry.submit(flags as u64);
    bump(Misc::EventsSent.index());
}
