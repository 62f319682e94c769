//! Protocol numbers and flag bits used in events and counters.

/// IP protocol numbers the classifier knows by name.
pub const IPPROTO_ICMP: u8 = 1;
pub const IPPROTO_TCP: u8 = 6;
pub const IPPROTO_UDP: u8 = 17;
pub const IPPROTO_DCCP: u8 = 33;
pub const IPPROTO_ICMPV6: u8 = 58;
pub const IPPROTO_SCTP: u8 = 132;
pub const IPPROTO_UDPLITE: u8 = 136;
/// IP protocol number firewall logs name (the classifier reads it by
/// number only).
pub const IPPROTO_GRE: u8 = 47;

/// Does a `proto` header start with a 16-bit source and a 16-bit
/// destination port? TCP, UDP, SCTP (RFC 9260 §3.1), UDP-Lite (RFC 3828)
/// and DCCP (RFC 4340 §5.1) do; every check for "has ports" asks this.
#[inline(always)]
pub const fn has_ports(proto: u8) -> bool {
    matches!(
        proto,
        IPPROTO_TCP | IPPROTO_UDP | IPPROTO_SCTP | IPPROTO_UDPLITE | IPPROTO_DCCP
    )
}

/// The protocols known by name: the name of the JSON `proto` field, the
/// command line and `/metrics` labels, and the label people read (plot
/// legends, the console's hover).
pub const PROTO_NAMES: [(u8, &str, &str); 7] = [
    (IPPROTO_TCP, "tcp", "TCP"),
    (IPPROTO_UDP, "udp", "UDP"),
    (IPPROTO_ICMP, "icmp", "ICMP"),
    (IPPROTO_ICMPV6, "icmpv6", "ICMPv6"),
    (IPPROTO_SCTP, "sctp", "SCTP"),
    (IPPROTO_UDPLITE, "udplite", "UDP-Lite"),
    (IPPROTO_DCCP, "dccp", "DCCP"),
];

/// The row of `proto` in [`PROTO_NAMES`].
const fn named(proto: u8) -> Option<(u8, &'static str, &'static str)> {
    let mut i = 0;
    while i < PROTO_NAMES.len() {
        if PROTO_NAMES[i].0 == proto {
            return Some(PROTO_NAMES[i]);
        }
        i += 1;
    }
    None
}

/// The name of `proto`, if it has one (else it is written as its number).
pub const fn proto_name(proto: u8) -> Option<&'static str> {
    match named(proto) {
        Some((_, name, _)) => Some(name),
        None => None,
    }
}

/// The label people read for `proto` ("SCTP", "UDP-Lite"), if it has a name.
pub const fn proto_label(proto: u8) -> Option<&'static str> {
    match named(proto) {
        Some((_, _, label)) => Some(label),
        None => None,
    }
}

/// The protocol named `name` (any case; `ipv6-icmp` and `udp-lite` as
/// /etc/protocols and iptables spell them). Numbers are not names.
pub fn proto_named(name: &str) -> Option<u8> {
    let alias = [("ipv6-icmp", IPPROTO_ICMPV6), ("udp-lite", IPPROTO_UDPLITE)];
    PROTO_NAMES
        .iter()
        .map(|(p, n, _)| (*n, *p))
        .chain(alias)
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, p)| p)
}

// SCTP chunk types (RFC 9260 §3.2) the classifier and the detectors act
// on. An event of an SCTP packet carries the type of its first chunk.
/// Opens an association: the probe of an SCTP scan (`nmap -sY`).
pub const SCTP_INIT: u8 = 1;
/// Accepts an association: the answer of an open port.
pub const SCTP_INIT_ACK: u8 = 2;
pub const SCTP_ABORT: u8 = 6;
pub const SCTP_SHUTDOWN: u8 = 7;
pub const SCTP_SHUTDOWN_ACK: u8 = 8;
pub const SCTP_ERROR: u8 = 9;
/// The probe of a COOKIE-ECHO scan (`nmap -sZ`).
pub const SCTP_COOKIE_ECHO: u8 = 10;
pub const SCTP_SHUTDOWN_COMPLETE: u8 = 14;

// DCCP packet types (RFC 4340 §5.1). An event of a DCCP packet carries
// its type.
/// Opens a connection: DCCP's probe.
pub const DCCP_REQUEST: u8 = 0;
pub const DCCP_RESPONSE: u8 = 1;
pub const DCCP_CLOSEREQ: u8 = 5;
pub const DCCP_CLOSE: u8 = 6;
pub const DCCP_RESET: u8 = 7;

/// Address family of an event, as in the JSON `family` field.
pub const FAMILY_V4: u8 = 4;
pub const FAMILY_V6: u8 = 6;
/// Non-IP frames and frames too short to tell.
pub const FAMILY_NONE: u8 = 0;

/// TCP flag bits, in the order of the TCP header's flag byte.
pub const TCP_FIN: u8 = 0x01;
pub const TCP_SYN: u8 = 0x02;
pub const TCP_RST: u8 = 0x04;
pub const TCP_PSH: u8 = 0x08;
pub const TCP_ACK: u8 = 0x10;
pub const TCP_URG: u8 = 0x20;
pub const TCP_ECE: u8 = 0x40;
pub const TCP_CWR: u8 = 0x80;

/// Names of the TCP flag bits, lowest bit first.
pub const TCP_FLAG_NAMES: [&str; 8] = ["FIN", "SYN", "RST", "PSH", "ACK", "URG", "ECE", "CWR"];

/// The flag bits named by `words`, as firewall logs spell them (nf_log's
/// bare words after `RES=`, Mikrotik's `(ACK,FIN,PSH)`): each word that
/// is exactly one of [`TCP_FLAG_NAMES`] sets its bit; other words are
/// ignored.
pub fn tcp_flags_named<'a>(words: impl IntoIterator<Item = &'a str>) -> u8 {
    words.into_iter().fold(0, |flags, word| {
        match TCP_FLAG_NAMES.iter().position(|name| *name == word) {
            Some(bit) => flags | 1 << bit,
            None => flags,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flag_words_set_their_bits_and_nothing_else() {
        assert_eq!(tcp_flags_named("RES=0x00 SYN URGP=0".split(' ')), TCP_SYN);
        assert_eq!(
            tcp_flags_named(["ACK", "FIN", "PSH"]),
            TCP_ACK | TCP_FIN | TCP_PSH
        );
        assert_eq!(
            tcp_flags_named(TCP_FLAG_NAMES),
            0xff,
            "every name is its own bit"
        );
        // Exact words only: case, prefixes and empty words set nothing.
        assert_eq!(tcp_flags_named(["syn", "SYNACK", "", "ECN"]), 0);
    }

    #[test]
    fn port_protocols_have_ports_and_names() {
        for p in [6, 17, 33, 132, 136] {
            assert!(has_ports(p), "{p}");
        }
        for p in [0, 1, 47, 50, 58, 255] {
            assert!(!has_ports(p), "{p}");
        }
        for (p, n, label) in PROTO_NAMES {
            assert_eq!(proto_name(p), Some(n));
            assert_eq!(proto_named(n), Some(p));
            assert_eq!(proto_label(p), Some(label));
            assert_eq!(proto_named(label), Some(p), "labels read back");
        }
        assert_eq!(proto_named("SCTP"), Some(IPPROTO_SCTP));
        assert_eq!(proto_named("UDP-Lite"), Some(IPPROTO_UDPLITE));
        assert_eq!(proto_named("ipv6-icmp"), Some(IPPROTO_ICMPV6));
        assert_eq!(proto_named("132"), None, "numbers are not names");
        assert_eq!(proto_name(47), None);
    }
}
