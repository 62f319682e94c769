//! The TC egress flow recorder: every outbound packet that opens or
//! continues a flow writes `(proto, local, local port, remote, remote port)`
//! → last seen. RSTs and ICMP errors never create state, nor do SCTP's and
//! DCCP's answers to a stranger (ABORT, SHUTDOWN-COMPLETE, ERROR; Reset),
//! so a scanned host's answers do not whitelist the scanner.

use aya_ebpf::maps::LruHashMap;
use aya_ebpf::programs::TcContext;
use aya_log_ebpf::warn;
use fireplot_common::{
    config::Config,
    counters::Misc,
    flow::{FlowState, LiveKey, ORIGIN_ACCEPTED, ORIGIN_INSIDE},
    proto::{
        DCCP_CLOSE, DCCP_CLOSEREQ, DCCP_REQUEST, DCCP_RESET, DCCP_RESPONSE, FAMILY_V4,
        IPPROTO_DCCP, IPPROTO_SCTP, IPPROTO_TCP, IPPROTO_UDP, IPPROTO_UDPLITE, SCTP_ABORT,
        SCTP_ERROR, SCTP_INIT, SCTP_INIT_ACK, SCTP_SHUTDOWN, SCTP_SHUTDOWN_ACK,
        SCTP_SHUTDOWN_COMPLETE, TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN,
    },
};

use crate::{
    bump, config,
    flows::{now_jiffies, Family, V4, V6},
    parse::{icmp, parse, port_proto, tcp, udp, Bounds, Headers},
    LIVE_ADDRS, LIVE_PORTS,
};

/// Headers egress needs in the linear part of the skb.
const PULL_LEN: u32 = 128;

/// What an outbound packet does to its flow.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Action {
    /// Opens (or re-opens) a flow with this origin: SYN, SYN-ACK, UDP,
    /// UDP-Lite, echo request, SCTP INIT and INIT-ACK, DCCP Request and
    /// Response.
    Open(u8),
    /// Continues a flow; picks it up mid-stream if it is not known yet.
    Continue,
    /// FIN (SCTP SHUTDOWN, DCCP Close): the flow is closing (created
    /// closing if not known).
    Fin,
    /// RST (SCTP ABORT, DCCP Reset, ...): marks an existing flow closing,
    /// never creates one.
    Rst,
}

#[inline(always)]
fn tcp_action(flags: u8) -> Action {
    if flags & TCP_RST != 0 {
        Action::Rst
    } else if flags & TCP_SYN != 0 {
        if flags & TCP_ACK != 0 {
            Action::Open(ORIGIN_ACCEPTED)
        } else {
            Action::Open(ORIGIN_INSIDE)
        }
    } else if flags & TCP_FIN != 0 {
        Action::Fin
    } else {
        Action::Continue
    }
}

/// An outbound SCTP packet by its first chunk. ABORT, SHUTDOWN-COMPLETE
/// and ERROR are what a host sends to a stranger's packet of no
/// association (RFC 9260 §8.4, "out of the blue"): they never create state.
#[inline(always)]
fn sctp_action(chunk: u8) -> Action {
    match chunk {
        SCTP_INIT => Action::Open(ORIGIN_INSIDE),
        SCTP_INIT_ACK => Action::Open(ORIGIN_ACCEPTED),
        SCTP_SHUTDOWN | SCTP_SHUTDOWN_ACK => Action::Fin,
        SCTP_ABORT | SCTP_SHUTDOWN_COMPLETE | SCTP_ERROR => Action::Rst,
        _ => Action::Continue,
    }
}

/// An outbound DCCP packet by its type. A Reset is what a host sends to
/// a stranger's packet of no connection (RFC 4340 §8.3.1).
#[inline(always)]
fn dccp_action(ty: u8) -> Action {
    match ty {
        DCCP_REQUEST => Action::Open(ORIGIN_INSIDE),
        DCCP_RESPONSE => Action::Open(ORIGIN_ACCEPTED),
        DCCP_CLOSEREQ | DCCP_CLOSE => Action::Fin,
        DCCP_RESET => Action::Rst,
        _ => Action::Continue,
    }
}

pub fn record(ctx: &TcContext) {
    let Some(cfg) = config() else {
        return;
    };
    bump(Misc::EgressPackets.index());
    let mut b = Bounds::new(ctx.data(), ctx.data_end());
    if b.len() < PULL_LEN as usize && ctx.len() as usize > b.len() {
        let want = if ctx.len() < PULL_LEN {
            ctx.len()
        } else {
            PULL_LEN
        };
        if ctx.pull_data(want).is_err() {
            return;
        }
        b = Bounds::new(ctx.data(), ctx.data_end());
    }
    let Ok(h) = parse(&b) else {
        return;
    };
    if h.fragment {
        return;
    }
    let now = now_jiffies(cfg);
    let b = b.within(&h);
    if h.family == FAMILY_V4 {
        record_family::<V4>(ctx, &b, &h, cfg, now);
    } else {
        record_family::<V6>(ctx, &b, &h, cfg, now);
    }
}

/// Ports and action of an outbound packet, or `None` if it creates no state.
#[inline(always)]
fn ports_action(
    b: &Bounds,
    h: &Headers,
    echo_request: u8,
    icmp_proto: u8,
) -> Option<(u16, u16, Action)> {
    match h.proto {
        IPPROTO_TCP => {
            let t = tcp(b, h.l4)?;
            Some((t.sport, t.dport, tcp_action(t.flags)))
        }
        IPPROTO_UDP => {
            let (s, d) = udp(b, h.l4)?;
            Some((s, d, Action::Open(ORIGIN_INSIDE)))
        }
        IPPROTO_SCTP | IPPROTO_UDPLITE | IPPROTO_DCCP => {
            let (s, d, ty) = port_proto(b, h.l4, h.proto)?;
            let action = match h.proto {
                IPPROTO_SCTP => sctp_action(ty),
                IPPROTO_DCCP => dccp_action(ty),
                _ => Action::Open(ORIGIN_INSIDE),
            };
            Some((s, d, action))
        }
        p if p == icmp_proto => {
            let (ty, _, id) = icmp(b, h.l4)?;
            if ty == echo_request {
                Some((id, 0, Action::Open(ORIGIN_INSIDE)))
            } else {
                // Echo replies and errors never create state.
                None
            }
        }
        _ => Some((0, 0, Action::Open(ORIGIN_INSIDE))),
    }
}

/// Applies `action` to an existing entry. Returns true if it was refreshed
/// (then the address-pair entry is refreshed too).
#[inline(always)]
fn update(v: &mut FlowState, action: Action, cfg: &Config, now: u64) -> bool {
    let due = now.wrapping_sub(v.last_seen) >= cfg.refresh;
    match action {
        Action::Open(origin) => {
            if v.origin != origin || v.closing != 0 || due {
                v.origin = origin;
                v.closing = 0;
                v.last_seen = now;
                return true;
            }
        }
        Action::Continue => {
            if due {
                v.last_seen = now;
                return true;
            }
        }
        Action::Fin | Action::Rst => {
            if v.closing == 0 || due {
                v.closing = 1;
                v.last_seen = now;
                return true;
            }
        }
    }
    false
}

#[inline(always)]
fn new_state(action: Action, now: u64) -> Option<FlowState> {
    let (origin, closing) = match action {
        Action::Open(o) => (o, 0),
        Action::Continue => (ORIGIN_INSIDE, 0),
        Action::Fin => (ORIGIN_INSIDE, 1),
        Action::Rst => return None,
    };
    Some(FlowState {
        last_seen: now,
        origin,
        closing,
        _pad: [0; 6],
    })
}

/// Notes that `key` answered: written when missing or older than `refresh`.
#[inline(always)]
fn mark_live(map: &LruHashMap<LiveKey, u64>, key: &LiveKey, cfg: &Config, now: u64) {
    // SAFETY: read of a u64 map value; a racing writer stores a similar time.
    if let Some(v) = unsafe { map.get(key) } {
        if now.wrapping_sub(*v) < cfg.refresh {
            return;
        }
    }
    if map.insert(key, &now, 0).is_err() {
        bump(Misc::LiveInsertFailed.index());
    }
}

#[inline(always)]
fn live_key(addr: [u64; 2], family: u8, proto: u8, port: u16) -> LiveKey {
    LiveKey {
        addr,
        port,
        proto,
        family,
        _pad: [0; 4],
    }
}

#[inline(always)]
fn live_addr<F: Family>(src: F::Addr, cfg: &Config, now: u64) {
    if cfg.mark_dark != 0 {
        mark_live(
            &LIVE_ADDRS,
            &live_key(F::words(src), F::FAMILY, 0, 0),
            cfg,
            now,
        );
    }
}

/// Records an outbound packet of family `F`.
#[inline(always)]
fn record_family<F: Family>(ctx: &TcContext, b: &Bounds, h: &Headers, cfg: &Config, now: u64) {
    let Some((src, dst)) = F::addrs(b, h.l3) else {
        return;
    };
    let Some((sport, dport, action)) = ports_action(b, h, F::ECHO_REQUEST, F::ICMP) else {
        // Echo replies and ICMP errors create no flow, but their sender
        // answered: it is a live address.
        live_addr::<F>(src, cfg, now);
        return;
    };
    let key = F::key(src, dst, sport, dport, h.proto);
    let state = match F::table().get_ptr_mut(&key) {
        Some(v) => {
            // SAFETY: map value; racing writers store equivalent values.
            let v = unsafe { &mut *v };
            if !update(v, action, cfg, now) {
                return;
            }
            *v
        }
        None => {
            let Some(state) = new_state(action, now) else {
                // A RST answers too: the address lives (the port is closed).
                live_addr::<F>(src, cfg, now);
                return;
            };
            if let Err(e) = F::table().insert(&key, &state, 0) {
                bump(Misc::FlowInsertFailed.index());
                warn!(ctx, "flow table insert failed: {}", e);
                return;
            }
            bump(Misc::FlowsCreated.index());
            state
        }
    };
    // Created or refreshed (at most once per `refresh`): the address lives,
    // and a datagram or an accepted connection (SYN-ACK, INIT-ACK, DCCP
    // Response) says its port answers.
    live_addr::<F>(src, cfg, now);
    let answers = match h.proto {
        IPPROTO_UDP | IPPROTO_UDPLITE => true,
        _ => action == Action::Open(ORIGIN_ACCEPTED),
    };
    if answers && cfg.mark_dark != 0 {
        mark_live(
            &LIVE_PORTS,
            &live_key(F::words(src), F::FAMILY, h.proto, sport),
            cfg,
            now,
        );
    }
    if sport != 0 || dport != 0 {
        // The address pair stands for the flow's non-first fragments.
        let pair = F::key(src, dst, 0, 0, h.proto);
        if F::table().insert(&pair, &state, 0).is_err() {
            bump(Misc::FlowInsertFailed.index());
        }
    }
}
