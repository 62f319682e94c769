//! Protocol numbers and flag bits used in events and counters.

/// IP protocol numbers the classifier knows by name.
pub const IPPROTO_ICMP: u8 = 1;
pub const IPPROTO_TCP: u8 = 6;
pub const IPPROTO_UDP: u8 = 17;
pub const IPPROTO_ICMPV6: u8 = 58;
/// IP protocol numbers firewall logs name (the classifier reads them by
/// number only).
pub const IPPROTO_GRE: u8 = 47;
pub const IPPROTO_SCTP: u8 = 132;
pub const IPPROTO_UDPLITE: u8 = 136;

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
}
