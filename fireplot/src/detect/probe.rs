//! What a detector needs to know about one event, derived once.

use std::net::IpAddr;

use super::vector::Vector;
use crate::record::Record;

/// TCP flag bits, as fireplot-common defines them.
pub use fireplot_common::proto::{
    TCP_ACK as ACK, TCP_FIN as FIN, TCP_PSH as PSH, TCP_RST as RST, TCP_SYN as SYN, TCP_URG as URG,
};

/// How an event counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// A probe a scanner sends: SYN, ACK, UDP, ICMP echo, SCTP INIT, DCCP
    /// Request, another protocol.
    Probe,
    /// A TCP flag mix no stack sends to open a connection.
    Odd(FlagType),
    /// An answer to something we never sent: SYN-ACK, RST, ICMP error,
    /// SCTP INIT-ACK or ABORT, DCCP Response or Reset.
    Backscatter,
}

/// Named flag mixes of flag scans.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FlagType {
    Null,
    Fin,
    Xmas,
    Maimon,
    SynFin,
    Other,
}

impl Role {
    /// The compact form kept in a source's first-probe record.
    pub fn code(self) -> u8 {
        match self {
            Role::Probe => 0,
            Role::Odd(t) => 1 + t as u8,
            Role::Backscatter => 255,
        }
    }
}

impl FlagType {
    const ALL: [FlagType; 6] = [
        FlagType::Null,
        FlagType::Fin,
        FlagType::Xmas,
        FlagType::Maimon,
        FlagType::SynFin,
        FlagType::Other,
    ];

    /// The inverse of `Role::code` for odd probes.
    pub fn from_code(c: u8) -> Option<FlagType> {
        Self::ALL.get((c as usize).checked_sub(1)?).copied()
    }

    pub fn name(self) -> &'static str {
        match self {
            FlagType::Null => "null",
            FlagType::Fin => "fin",
            FlagType::Xmas => "xmas",
            FlagType::Maimon => "maimon",
            FlagType::SynFin => "syn_fin",
            FlagType::Other => "other",
        }
    }

    /// The flag byte a type stands for, where it names one (a first probe
    /// keeps only its type).
    pub fn flags(self) -> Option<u8> {
        match self {
            FlagType::Null => Some(0),
            FlagType::Fin => Some(FIN),
            FlagType::Xmas => Some(FIN | PSH | URG),
            FlagType::Maimon => Some(FIN | ACK),
            FlagType::SynFin => Some(SYN | FIN),
            FlagType::Other => None,
        }
    }

    pub fn title(self) -> &'static str {
        match self {
            FlagType::Null => "NULL",
            FlagType::Fin => "FIN",
            FlagType::Xmas => "Xmas",
            FlagType::Maimon => "Maimon",
            FlagType::SynFin => "SYN|FIN",
            FlagType::Other => "odd-flag",
        }
    }
}

/// The role of a TCP flag byte.
pub fn tcp_role(flags: u8) -> Role {
    let f = flags & 0x3f; // ECE/CWR do not change the role
    if f & SYN != 0 && f & FIN != 0 {
        return Role::Odd(FlagType::SynFin);
    }
    if f & RST != 0 || (f & SYN != 0 && f & ACK != 0) {
        return Role::Backscatter;
    }
    if f & SYN != 0 {
        return Role::Probe;
    }
    if f & ACK != 0 {
        // FIN|ACK opening nothing is nmap's Maimon scan; other ACK mixes are
        // what an ACK scan (-sA) sends: a probe.
        return if f & FIN != 0 && f & (PSH | URG) == 0 {
            Role::Odd(FlagType::Maimon)
        } else {
            Role::Probe
        };
    }
    Role::Odd(match f {
        0 => FlagType::Null,
        FIN => FlagType::Fin,
        x if x == FIN | PSH | URG => FlagType::Xmas,
        _ => FlagType::Other,
    })
}

/// An event reduced to what the detectors use.
#[derive(Clone, Copy, Debug)]
pub struct Probe {
    pub ts_ns: i64,
    pub src: u128,
    pub dst: u128,
    pub src_ip: IpAddr,
    pub dst_ip: IpAddr,
    pub proto: u8,
    /// Destination port of a protocol with ports ([`ported`]), 0 otherwise.
    pub port: u16,
    pub flags: u8,
    pub role: Role,
    /// Source port of a protocol with ports (ICMP echo id), 0 otherwise.
    pub sport: u16,
    /// Fields scanner fingerprints read.
    pub ip_id: u16,
    pub tcp_seq: u32,
    pub tcp_window: u16,
    /// Frame length.
    pub len: u16,
    /// The event's class (`Class` value): only `unsolicited` counts for
    /// hammering, so state the sensor lost track of is not an attack.
    pub class: u8,
    /// The destination (address, or TCP/UDP port) had never answered anyone.
    pub dark: bool,
    /// What kind of packet it is, as an attack on its destination.
    pub vector: Vector,
}

/// Does the protocol start with 16-bit source and destination ports: TCP,
/// UDP, and those with UDP's port layout (SCTP, UDP-Lite, DCCP)? The
/// kernel parser's own list.
pub fn ported(proto: u8) -> bool {
    fireplot_common::proto::has_ports(proto)
}

/// The role of an SCTP packet by its first chunk (the event's
/// `icmp_type`, JSON `sctp_chunk`). INIT (`nmap -sY`) and COOKIE-ECHO
/// (`nmap -sZ`) open; INIT-ACK, HEARTBEAT-ACK, ABORT, SHUTDOWN-ACK,
/// ERROR, COOKIE-ACK and SHUTDOWN-COMPLETE answer (from a stranger:
/// backscatter of someone spoofing our address); any other chunk is
/// counted as a probe.
pub fn sctp_role(chunk: u8) -> Role {
    match chunk {
        2 | 5 | 6 | 8 | 9 | 11 | 14 => Role::Backscatter,
        _ => Role::Probe,
    }
}

/// The role of a DCCP packet by its type (the event's `icmp_type`, JSON
/// `dccp_type`): Response, Reset and SyncAck answer; a Request and any
/// other type are probes.
pub fn dccp_role(ty: u8) -> Role {
    match ty {
        1 | 7 | 9 => Role::Backscatter,
        _ => Role::Probe,
    }
}

/// An address as a u128 key (IPv4 mapped).
pub fn key(a: IpAddr) -> u128 {
    match a {
        IpAddr::V4(v) => u128::from(v.to_ipv6_mapped()),
        IpAddr::V6(v) => u128::from(v),
    }
}

/// The address a key stands for.
pub fn addr(k: u128) -> IpAddr {
    let v6 = std::net::Ipv6Addr::from(k);
    match v6.to_ipv4_mapped() {
        Some(v4) => IpAddr::V4(v4),
        None => IpAddr::V6(v6),
    }
}

impl Probe {
    /// A probe standing for traffic counted in bulk (a kernel aggregate, an
    /// attack's second): its source, destination and vector, nothing else.
    pub fn of_traffic(ts_ns: i64, src: u128, dst: u128, vector: Vector) -> Probe {
        let (proto, flags) = match vector {
            Vector::Syn => (6, SYN),
            Vector::SynAck => (6, SYN | ACK),
            Vector::Ack => (6, ACK),
            Vector::Rst => (6, RST),
            Vector::TcpOther => (6, 0),
            Vector::Reflection(_) | Vector::Udp => (17, 0),
            Vector::Icmp(_) => (if addr(dst).is_ipv4() { 1 } else { 58 }, 0),
            Vector::Fragment => (0, 0),
            Vector::Other(p) => (p, 0),
        };
        Probe {
            ts_ns,
            src,
            dst,
            src_ip: addr(src),
            dst_ip: addr(dst),
            proto,
            port: 0,
            flags,
            role: Role::Probe,
            sport: match vector {
                Vector::Reflection(p) => p,
                _ => 0,
            },
            ip_id: 0,
            tcp_seq: 0,
            tcp_window: 0,
            len: 0,
            class: fireplot_common::event::Class::Unsolicited as u8,
            dark: false,
            vector,
        }
    }

    /// None for events without addresses (malformed).
    pub fn from_record(r: &Record) -> Option<Probe> {
        let (src_ip, dst_ip) = (r.src?, r.dst?);
        let role = match r.proto {
            6 if r.has_ports() => tcp_role(r.tcp_flags),
            132 if r.has_ports() => sctp_role(r.icmp_type),
            33 if r.has_ports() => dccp_role(r.icmp_type),
            1 if matches!(r.icmp_type, 3 | 4 | 5 | 11 | 12) => Role::Backscatter,
            58 if matches!(r.icmp_type, 1..=4) => Role::Backscatter,
            _ => Role::Probe,
        };
        Some(Probe {
            ts_ns: r.ts_ns,
            src: key(src_ip),
            dst: key(dst_ip),
            src_ip,
            dst_ip,
            proto: r.proto,
            port: if r.has_ports() { r.dport } else { 0 },
            flags: if r.proto == 6 { r.tcp_flags } else { 0 },
            role,
            sport: r.sport,
            ip_id: r.ip_id,
            tcp_seq: r.tcp_seq,
            tcp_window: r.tcp_window,
            len: r.len,
            class: r.class,
            dark: r.dark(),
            vector: Vector::of(r),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flag_roles() {
        assert_eq!(tcp_role(SYN), Role::Probe);
        assert_eq!(tcp_role(SYN | 0xc0), Role::Probe);
        assert_eq!(tcp_role(ACK), Role::Probe);
        assert_eq!(tcp_role(0), Role::Odd(FlagType::Null));
        assert_eq!(tcp_role(FIN), Role::Odd(FlagType::Fin));
        assert_eq!(tcp_role(FIN | PSH | URG), Role::Odd(FlagType::Xmas));
        assert_eq!(tcp_role(FIN | ACK), Role::Odd(FlagType::Maimon));
        assert_eq!(tcp_role(SYN | FIN), Role::Odd(FlagType::SynFin));
        assert_eq!(tcp_role(PSH), Role::Odd(FlagType::Other));
        assert_eq!(tcp_role(SYN | ACK), Role::Backscatter);
        assert_eq!(tcp_role(RST), Role::Backscatter);
        assert_eq!(tcp_role(RST | ACK), Role::Backscatter);
    }

    #[test]
    fn sctp_and_dccp_roles() {
        assert_eq!(sctp_role(1), Role::Probe, "INIT");
        assert_eq!(sctp_role(10), Role::Probe, "COOKIE-ECHO");
        for answer in [2, 5, 6, 8, 9, 11, 14] {
            assert_eq!(sctp_role(answer), Role::Backscatter, "{answer}");
        }
        assert_eq!(dccp_role(0), Role::Probe, "Request");
        for answer in [1, 7, 9] {
            assert_eq!(dccp_role(answer), Role::Backscatter, "{answer}");
        }
        let mut r = super::super::tests::ev(0, "192.0.2.1", "198.18.1.2", 132, 80, 0);
        r.icmp_type = 2;
        assert_eq!(Probe::from_record(&r).unwrap().role, Role::Backscatter);
        r.icmp_type = 1;
        let p = Probe::from_record(&r).unwrap();
        assert_eq!((p.role, p.port), (Role::Probe, 80));
        // A fragment has no chunk: a probe, without a port.
        r.pkt_flags = fireplot_common::event::PKT_FRAGMENT;
        r.icmp_type = 0;
        let p = Probe::from_record(&r).unwrap();
        assert_eq!((p.role, p.port), (Role::Probe, 0));
        for p in [6, 17, 33, 132, 136] {
            assert!(ported(p) && fireplot_common::proto::has_ports(p));
        }
        assert!(!ported(1) && !ported(47));
    }

    #[test]
    fn keys_round_trip() {
        for a in ["198.18.0.2", "2001:db8::2", "::ffff:1.2.3.4"] {
            let ip: IpAddr = a.parse().unwrap();
            let back = addr(key(ip));
            if a.starts_with("::ffff") {
                assert_eq!(back, "1.2.3.4".parse::<IpAddr>().unwrap());
            } else {
                assert_eq!(back, ip);
            }
        }
    }
}
