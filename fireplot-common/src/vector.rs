//! Attack vectors as the kernel's aggregates key them and the attack
//! detector names them: the TCP flag class of a segment, and the UDP
//! source ports of reflection and amplification. One table for the kernel,
//! the detector and the docs.

use crate::proto::{TCP_ACK, TCP_FIN, TCP_PSH, TCP_RST, TCP_SYN};

/// [`tcp_vector`] of a SYN: SYN without ACK, RST or FIN (ECE, CWR, PSH
/// and URG ignored).
pub const VECTOR_SYN: u8 = 1;
/// [`tcp_vector`] of a SYN-ACK (SYN and ACK, no RST).
pub const VECTOR_SYN_ACK: u8 = 2;
/// [`tcp_vector`] of an ACK: ACK or ACK|PSH (ECE, CWR ignored).
pub const VECTOR_ACK: u8 = 3;
/// [`tcp_vector`] of any segment with RST.
pub const VECTOR_RST: u8 = 4;
/// [`tcp_vector`] of every other flag mix (FIN, SYN|FIN, NULL, Xmas, ...).
pub const VECTOR_TCP_OTHER: u8 = 5;

/// The vector class of a TCP flag byte (one of the `VECTOR_*` above).
/// ECE and CWR (ECN) never change it: a SYN|ECE|CWR flood is a SYN flood.
#[inline(always)]
pub const fn tcp_vector(flags: u8) -> u8 {
    let f = flags & 0x3f;
    if f & TCP_RST != 0 {
        VECTOR_RST
    } else if f & (TCP_SYN | TCP_ACK) == TCP_SYN | TCP_ACK {
        VECTOR_SYN_ACK
    } else if f & (TCP_SYN | TCP_FIN) == TCP_SYN {
        VECTOR_SYN
    } else if f == TCP_ACK || f == TCP_ACK | TCP_PSH {
        VECTOR_ACK
    } else {
        VECTOR_TCP_OTHER
    }
}

/// Defines [`REFLECTION`] and [`is_reflection_port`] from one list, so
/// the kernel's check and the table cannot disagree.
macro_rules! reflection_ports {
    ($(($port:literal, $name:literal)),* $(,)?) => {
        /// UDP source ports of services abused for reflection and
        /// amplification, with their names (US-CERT TA14-017A, Akvorado's
        /// and FastNetMon's lists), in port order. A UDP datagram from one
        /// of them keeps its source port in its aggregate
        /// (`AggKey::sport`); from any other port, the port is 0.
        pub const REFLECTION: [(u16, &str); reflection_ports!(@count $($port)*)] =
            [$(($port, $name)),*];

        /// Is `port` in [`REFLECTION`]? A `match` on constants: LLVM lowers
        /// it to a few compares and bit tests (no table in memory, nothing
        /// for the verifier to bound), cheap enough for every aggregated
        /// packet.
        #[inline(always)]
        pub const fn is_reflection_port(port: u16) -> bool {
            matches!(port, $($port)|*)
        }
    };
    (@count) => { 0 };
    (@count $head:literal $($tail:literal)*) => { 1 + reflection_ports!(@count $($tail)*) };
}

reflection_ports![
    (17, "qotd"),
    (19, "chargen"),
    (53, "DNS"),
    (69, "TFTP"),
    (111, "portmap"),
    (123, "NTP"),
    (137, "NetBIOS"),
    (161, "SNMP"),
    (389, "CLDAP"),
    (520, "RIP"),
    (1900, "SSDP"),
    (3283, "Apple Remote Desktop"),
    (3702, "WS-Discovery"),
    (5353, "mDNS"),
    (10001, "Ubiquiti discovery"),
    (11211, "memcached"),
    (27015, "Steam"),
    (37810, "DVR discovery"),
];

/// The service name of a reflection port.
pub fn reflector(port: u16) -> Option<&'static str> {
    REFLECTION
        .iter()
        .find(|(p, _)| *p == port)
        .map(|(_, name)| *name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{TCP_CWR, TCP_ECE, TCP_URG};

    #[test]
    fn the_check_and_the_table_agree_on_every_port() {
        for port in 0..=u16::MAX {
            assert_eq!(
                is_reflection_port(port),
                REFLECTION.iter().any(|(p, _)| *p == port),
                "port {port}"
            );
        }
        assert_eq!(REFLECTION.len(), 18);
        assert!(REFLECTION.windows(2).all(|w| w[0].0 < w[1].0), "in order");
        assert_eq!(reflector(11211), Some("memcached"));
        assert_eq!(reflector(40000), None);
    }

    #[test]
    fn tcp_flags_fall_in_one_class() {
        for (flags, want) in [
            (TCP_SYN, VECTOR_SYN),
            (TCP_SYN | TCP_ECE | TCP_CWR, VECTOR_SYN),
            (TCP_SYN | TCP_PSH | TCP_URG, VECTOR_SYN),
            (TCP_SYN | TCP_ACK, VECTOR_SYN_ACK),
            (TCP_SYN | TCP_ACK | TCP_ECE, VECTOR_SYN_ACK),
            (TCP_ACK, VECTOR_ACK),
            (TCP_ACK | TCP_PSH | TCP_CWR, VECTOR_ACK),
            (TCP_RST, VECTOR_RST),
            (TCP_RST | TCP_ACK, VECTOR_RST),
            (TCP_SYN | TCP_RST, VECTOR_RST),
            (TCP_SYN | TCP_FIN, VECTOR_TCP_OTHER),
            (TCP_FIN, VECTOR_TCP_OTHER),
            (TCP_FIN | TCP_ACK, VECTOR_TCP_OTHER),
            (TCP_FIN | TCP_PSH | TCP_URG, VECTOR_TCP_OTHER),
            (0, VECTOR_TCP_OTHER),
        ] {
            assert_eq!(tcp_vector(flags), want, "flags {flags:#04x}");
        }
    }
}
