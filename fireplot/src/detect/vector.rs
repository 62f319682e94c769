//! Attack vectors: what kind of unsolicited packet hits one of our hosts,
//! from its protocol, TCP flags, UDP source port, ICMP type and fragment
//! bit — the same for an event and for a kernel aggregate.
//!
//! UDP from one of the well-known amplifiers' ports is reflection (an
//! attacker spoofed our address in small requests to many servers, which
//! answer us with large ones); the ports are
//! `fireplot_common::vector::REFLECTION`, the one table the kernel's
//! aggregates, this detector and the docs read; the TCP flag classes are
//! its `tcp_vector`, the kernel's too.

use fireplot_common::vector::reflector;
use fireplot_common::{
    event::PKT_FRAGMENT,
    vector::{is_reflection_port, tcp_vector, VECTOR_ACK, VECTOR_RST, VECTOR_SYN, VECTOR_SYN_ACK},
};

use crate::record::Record;

/// One vector.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Vector {
    Syn,
    SynAck,
    Ack,
    Rst,
    /// Other TCP flag mixes (FIN, PSH, Xmas, NULL, ...).
    TcpOther,
    /// UDP from an amplifier's port.
    Reflection(u16),
    Udp,
    /// ICMP or ICMPv6 of one type.
    Icmp(u8),
    /// IP fragments (no ports to read).
    Fragment,
    /// Another IP protocol.
    Other(u8),
}

impl Vector {
    /// The vector of an event or aggregate.
    pub fn of(r: &Record) -> Vector {
        if r.pkt_flags & PKT_FRAGMENT != 0 {
            return Vector::Fragment;
        }
        match r.proto {
            6 => match tcp_vector(r.tcp_flags) {
                VECTOR_SYN => Vector::Syn,
                VECTOR_SYN_ACK => Vector::SynAck,
                VECTOR_ACK => Vector::Ack,
                VECTOR_RST => Vector::Rst,
                _ => Vector::TcpOther,
            },
            17 if is_reflection_port(r.sport) => Vector::Reflection(r.sport),
            17 => Vector::Udp,
            1 | 58 => Vector::Icmp(r.icmp_type),
            p => Vector::Other(p),
        }
    }

    /// A number that keys it (with the destination).
    pub fn code(self) -> u32 {
        match self {
            Vector::Syn => 1,
            Vector::SynAck => 2,
            Vector::Ack => 3,
            Vector::Rst => 4,
            Vector::TcpOther => 5,
            Vector::Reflection(p) => 0x1_0000 | u32::from(p),
            Vector::Udp => 6,
            Vector::Icmp(t) => 0x2_0000 | u32::from(t),
            Vector::Fragment => 7,
            Vector::Other(p) => 0x3_0000 | u32::from(p),
        }
    }

    /// The short name in records and labels: `syn`, `udp_reflection`, ...
    pub fn name(self) -> &'static str {
        match self {
            Vector::Syn => "syn",
            Vector::SynAck => "syn_ack",
            Vector::Ack => "ack",
            Vector::Rst => "rst",
            Vector::TcpOther => "tcp_other",
            Vector::Reflection(_) => "udp_reflection",
            Vector::Udp => "udp",
            Vector::Icmp(_) => "icmp",
            Vector::Fragment => "fragment",
            Vector::Other(_) => "other",
        }
    }

    /// In words: "TCP SYN flood", "UDP reflection (DNS, source port 53)".
    pub fn title(self) -> String {
        match self {
            Vector::Syn => "TCP SYN flood".into(),
            Vector::SynAck => "TCP SYN-ACK flood".into(),
            Vector::Ack => "TCP ACK flood".into(),
            Vector::Rst => "TCP RST flood".into(),
            Vector::TcpOther => "TCP flood of odd flags".into(),
            Vector::Reflection(p) => format!(
                "UDP reflection ({}, source port {p})",
                reflector(p).unwrap_or("?")
            ),
            Vector::Udp => "UDP flood".into(),
            Vector::Icmp(8) | Vector::Icmp(128) => "ICMP echo flood".into(),
            Vector::Icmp(t) => format!("ICMP type {t} flood"),
            Vector::Fragment => "IP fragment flood".into(),
            Vector::Other(p) => format!("IP protocol {p} flood"),
        }
    }

    /// For a legend of traffic (not all of it an attack): "TCP SYN",
    /// "UDP from port 53 (DNS)", "ICMP type 8", "IP fragments".
    pub fn label(self) -> String {
        match self {
            Vector::Syn => "TCP SYN".into(),
            Vector::SynAck => "TCP SYN-ACK".into(),
            Vector::Ack => "TCP ACK".into(),
            Vector::Rst => "TCP RST".into(),
            Vector::TcpOther => "TCP other flags".into(),
            Vector::Reflection(p) => {
                format!("UDP from port {p} ({})", reflector(p).unwrap_or("?"))
            }
            Vector::Udp => "UDP".into(),
            Vector::Icmp(t) => format!("ICMP type {t}"),
            Vector::Fragment => "IP fragments".into(),
            Vector::Other(p) => format!("IP protocol {p}"),
        }
    }

    /// Answers to something we never sent (SYN-ACK, RST, ICMP errors):
    /// backscatter unless their rate makes them an attack on us.
    pub fn is_answer(self) -> bool {
        match self {
            Vector::SynAck | Vector::Rst => true,
            Vector::Icmp(t) => matches!(t, 3 | 4 | 5 | 11 | 12) || (1..=4).contains(&t),
            _ => false,
        }
    }

    /// Reflection needs many sources: one source is a flood, not reflection.
    pub fn is_reflection(self) -> bool {
        matches!(self, Vector::Reflection(_))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(proto: u8, flags: u8, sport: u16) -> Record {
        let mut r = Record::probe(
            0,
            "192.0.2.1".parse().unwrap(),
            "198.18.1.6".parse().unwrap(),
            proto,
            80,
        );
        r.tcp_flags = flags;
        r.sport = sport;
        r
    }

    #[test]
    fn vectors_are_named_from_the_headers() {
        assert_eq!(Vector::of(&rec(6, 0x02, 1234)), Vector::Syn);
        assert_eq!(Vector::of(&rec(6, 0xc2, 1234)), Vector::Syn, "ECE|CWR");
        assert_eq!(Vector::of(&rec(6, 0x12, 80)), Vector::SynAck);
        assert_eq!(Vector::of(&rec(6, 0x10, 80)), Vector::Ack);
        assert_eq!(Vector::of(&rec(6, 0x14, 80)), Vector::Rst);
        assert_eq!(Vector::of(&rec(6, 0x29, 80)), Vector::TcpOther);
        assert_eq!(Vector::of(&rec(17, 0, 53)), Vector::Reflection(53));
        assert_eq!(Vector::of(&rec(17, 0, 40000)), Vector::Udp);
        let mut f = rec(17, 0, 0);
        f.pkt_flags = PKT_FRAGMENT;
        assert_eq!(Vector::of(&f), Vector::Fragment);
        assert_eq!(Vector::Reflection(53).label(), "UDP from port 53 (DNS)");
        assert_eq!(Vector::Icmp(8).label(), "ICMP type 8");
        assert_eq!(
            Vector::Reflection(11211).title(),
            "UDP reflection (memcached, source port 11211)"
        );
        let codes: std::collections::BTreeSet<u32> = [
            Vector::Syn,
            Vector::SynAck,
            Vector::Ack,
            Vector::Rst,
            Vector::TcpOther,
            Vector::Reflection(53),
            Vector::Udp,
            Vector::Icmp(8),
            Vector::Fragment,
            Vector::Other(47),
        ]
        .iter()
        .map(|v| v.code())
        .collect();
        assert_eq!(codes.len(), 10);
    }
}
