//! Link types of a capture, each turned into the Ethernet frame the XDP
//! and TC programs parse (they read Ethernet only).
//!
//! Facts a maintainer needs (numbers from tcpdump.org/linktypes.html):
//! - Ethernet (1): as is; its source MAC says who sent it.
//! - Raw IP (101; 228 IPv4, 229 IPv6; 12 and 14, the platforms' own
//!   `DLT_RAW` numbers some tools write to files): the IP version nibble
//!   picks the EtherType; the MACs are made up (zero).
//! - BSD loopback/null (0, 108): a 4-byte address family, in the writer's
//!   byte order or network order, before the IP header; the version
//!   nibble is read instead.
//! - Linux cooked v1 (113, `tcpdump -i any`): 16 bytes — packet type (0
//!   to us … 4 outgoing), ARPHRD, address length, 8 address bytes,
//!   protocol. Linux cooked v2 (276): 20 bytes — protocol, reserved,
//!   ifindex, ARPHRD, packet type, address length, 8 address bytes. Both
//!   say whether the host sent the frame (packet type 4).
//! - A cooked header's protocol becomes the EtherType, whatever it is:
//!   ARP and the rest reach the classifier as Ethernet would bring them
//!   (counted `non_ip`), so every frame of the capture is counted there.
//! - The link header's length changes (cooked v1 16 → 14, v2 20 → 14, raw
//!   0 → 14): a frame's length is its length as Ethernet.

use pcap_file::DataLink;

const ETH_IPV4: [u8; 2] = [0x08, 0x00];
const ETH_IPV6: [u8; 2] = [0x86, 0xdd];
/// `DLT_RAW` as BSDs number it (12, or 14 on OpenBSD and BSD/OS).
const DLT_RAW_BSD: [DataLink; 2] = [DataLink::Unknown(12), DataLink::Unknown(14)];
/// Linux cooked packet type: sent by this host.
const PACKET_OUTGOING: u16 = 4;

/// A frame as Ethernet, its source MAC, and whether the capture says the
/// host sent it.
pub type Converted = (Vec<u8>, Option<[u8; 6]>, Option<bool>);

/// The frame as Ethernet. `None`: a link type (or protocol) fireplot does
/// not read.
pub fn to_ethernet(link: DataLink, data: &[u8]) -> Option<Converted> {
    match link {
        DataLink::ETHERNET => {
            let mac: [u8; 6] = data.get(6..12)?.try_into().ok()?;
            Some((data.to_vec(), Some(mac), None))
        }
        DataLink::RAW | DataLink::IPV4 | DataLink::IPV6 => Some((by_version(data)?, None, None)),
        l if DLT_RAW_BSD.contains(&l) => Some((by_version(data)?, None, None)),
        DataLink::NULL | DataLink::LOOP => Some((by_version(data.get(4..)?)?, None, None)),
        DataLink::LINUX_SLL => {
            let kind = u16::from_be_bytes(data.get(0..2)?.try_into().ok()?);
            let proto: [u8; 2] = data.get(14..16)?.try_into().ok()?;
            let payload = data.get(16..)?;
            Some((wrap(proto, payload), None, Some(kind == PACKET_OUTGOING)))
        }
        DataLink::LINUX_SLL2 => {
            let proto: [u8; 2] = data.get(0..2)?.try_into().ok()?;
            let kind = *data.get(10)?;
            let payload = data.get(20..)?;
            Some((
                wrap(proto, payload),
                None,
                Some(kind as u16 == PACKET_OUTGOING),
            ))
        }
        _ => None,
    }
}

/// An Ethernet frame around an IP packet (made-up addresses).
fn wrap(ethertype: [u8; 2], payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(14 + payload.len());
    v.extend_from_slice(&[0u8; 12]);
    v.extend_from_slice(&ethertype);
    v.extend_from_slice(payload);
    v
}

fn by_version(ip: &[u8]) -> Option<Vec<u8>> {
    match ip.first()? >> 4 {
        4 => Some(wrap(ETH_IPV4, ip)),
        6 => Some(wrap(ETH_IPV6, ip)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::input::test_support::ipv4;

    #[test]
    fn every_link_type_becomes_ethernet() {
        let ip = ipv4();
        let (e, mac, out) = to_ethernet(DataLink::RAW, &ip).unwrap();
        assert_eq!(&e[12..14], &ETH_IPV4);
        assert_eq!(&e[14..], &ip[..]);
        assert_eq!((mac, out), (None, None));
        let mut null = vec![2, 0, 0, 0];
        null.extend_from_slice(&ip);
        assert_eq!(to_ethernet(DataLink::NULL, &null).unwrap().0, e);
        // The family word in the other byte order, and the other raw numbers.
        null[..4].copy_from_slice(&[0, 0, 0, 2]);
        assert_eq!(to_ethernet(DataLink::NULL, &null).unwrap().0, e);
        for raw in [12, 14, 228] {
            assert_eq!(to_ethernet(DataLink::from(raw), &ip).unwrap().0, e, "{raw}");
        }
        let mut sll = vec![0, 4, 0, 1, 0, 6, 1, 2, 3, 4, 5, 6, 0, 0, 0x08, 0];
        sll.extend_from_slice(&ip);
        let (e2, _, out) = to_ethernet(DataLink::LINUX_SLL, &sll).unwrap();
        assert_eq!((e2, out), (e.clone(), Some(true)));
        let mut sll2 = vec![
            0x08, 0, 0, 0, 0, 0, 0, 3, 0, 1, 0, 6, 1, 2, 3, 4, 5, 6, 0, 0,
        ];
        sll2.extend_from_slice(&ip);
        let (e3, _, out) = to_ethernet(DataLink::LINUX_SLL2, &sll2).unwrap();
        assert_eq!((e3, out), (e.clone(), Some(false)));
        let mut eth = vec![1, 2, 3, 4, 5, 6, 0xa, 0xb, 0xc, 0xd, 0xe, 0xf, 0x08, 0];
        eth.extend_from_slice(&ip);
        let (e4, mac, _) = to_ethernet(DataLink::ETHERNET, &eth).unwrap();
        assert_eq!(e4, eth);
        assert_eq!(mac, Some([0xa, 0xb, 0xc, 0xd, 0xe, 0xf]));
        // Not IP, too short, or a link fireplot does not read: skipped.
        assert!(to_ethernet(DataLink::RAW, &[0x10, 0, 0]).is_none());
        assert!(to_ethernet(DataLink::LINUX_SLL, &sll[..10]).is_none());
        assert!(to_ethernet(DataLink::IEEE802_11, &eth).is_none());
    }

    #[test]
    fn cooked_headers_keep_vlans_and_other_protocols() {
        let mut sll = vec![0, 0, 0, 1, 0, 6, 1, 2, 3, 4, 5, 6, 0, 0, 0x81, 0];
        sll.extend_from_slice(&[0, 5, 0x08, 0]);
        sll.extend_from_slice(&ipv4());
        let (e, _, out) = to_ethernet(DataLink::LINUX_SLL, &sll).unwrap();
        assert_eq!(&e[12..16], &[0x81, 0, 0, 5], "the tag stays for the parser");
        assert_eq!(out, Some(false), "packet type 0: to us");
        sll[14..16].copy_from_slice(&[0x08, 0x06]); // ARP: the classifier counts it
        assert_eq!(
            &to_ethernet(DataLink::LINUX_SLL, &sll).unwrap().0[12..14],
            &[0x08, 0x06]
        );
        // A loopback frame with the family in network order reads the same.
        let mut null = vec![0, 0, 0, 24];
        let mut v6 = vec![0x60u8];
        v6.resize(40, 0);
        null.extend_from_slice(&v6);
        assert_eq!(
            &to_ethernet(DataLink::LOOP, &null).unwrap().0[12..14],
            &ETH_IPV6
        );
    }
}
