//! One captured frame as the sensor's programs take it in a replay: the
//! frame itself (always Ethernet, see [`super::link`]), the way it goes
//! (the XDP ingress or the TC egress program), and its fit to what
//! `BPF_PROG_TEST_RUN` accepts.
//!
//! Facts a maintainer needs: `BPF_PROG_TEST_RUN` hands an XDP program one
//! page less its headroom and tail (about 3,400 bytes); past that the
//! kernel splits the frame into fragments the classifier does not read.
//! Captures taken before GRO/TSO hold frames of up to 64 KB, and captures
//! with a snap length hold frames shorter than they were on the wire.

use std::net::IpAddr;

/// One captured frame, as an Ethernet frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    /// Capture time, Unix ns.
    pub ts_ns: u64,
    /// The capture's interface (pcapng's interface id; 0 for pcap).
    pub iface: u32,
    /// Ethernet frame (a header is made up for captures without one).
    pub data: Vec<u8>,
    /// The frame's length on the wire, as `data` counts it: more than
    /// `data.len()` when the capture cut it (snap length).
    pub orig_len: usize,
    /// The source MAC, when the capture had Ethernet headers.
    pub src_mac: Option<[u8; 6]>,
    /// Linux cooked captures (`tcpdump -i any`) say whether the host sent it.
    pub outgoing: Option<bool>,
}

/// An Ethernet header's length.
const ETH_HLEN: usize = 14;
const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;

/// The offset of the frame's IP header and its EtherType, past up to two
/// VLAN tags (802.1Q, 802.1ad), as the kernel parser walks them.
fn l3(frame: &[u8]) -> Option<(usize, u16)> {
    let mut off = 12;
    let mut ethertype = u16::from_be_bytes(frame.get(off..off + 2)?.try_into().ok()?);
    for _ in 0..2 {
        if !matches!(ethertype, 0x8100 | 0x88a8) {
            break;
        }
        off += 4;
        ethertype = u16::from_be_bytes(frame.get(off..off + 2)?.try_into().ok()?);
    }
    Some((off + 2, ethertype))
}

/// The frame's source address (Ethernet frame, up to two VLAN tags).
pub fn source_addr(frame: &[u8]) -> Option<IpAddr> {
    let (l3, ethertype) = l3(frame)?;
    let ip = frame.get(l3..)?;
    match ethertype {
        ETH_P_IP => {
            let a: [u8; 4] = ip.get(12..16)?.try_into().ok()?;
            Some(a.into())
        }
        ETH_P_IPV6 => {
            let a: [u8; 16] = ip.get(8..24)?.try_into().ok()?;
            Some(a.into())
        }
        _ => None,
    }
}

/// Which way frames went, and why: a frame goes to the egress program (it
/// is the inside's) when its source address is the inside's, or its
/// source MAC is the router's, or a Linux cooked capture marks it
/// outgoing, in that order; every other frame is inbound (XDP).
#[derive(Debug, Default, Clone, Copy)]
pub struct Directions {
    /// To egress: the source address is the inside's.
    pub by_inside: u64,
    /// To egress: the source MAC is the router's.
    pub by_mac: u64,
    /// To egress: a Linux cooked capture says the host sent it.
    pub by_cooked: u64,
    /// To the XDP ingress program.
    pub inbound: u64,
}

impl Directions {
    /// Whether `frame` goes to the egress program (counted by the reason).
    pub fn egress(
        &mut self,
        frame: &Frame,
        is_inside: impl Fn(IpAddr) -> bool,
        router_mac: Option<[u8; 6]>,
    ) -> bool {
        if source_addr(&frame.data).is_some_and(is_inside) {
            self.by_inside += 1;
            true
        } else if router_mac.is_some() && frame.src_mac == router_mac {
            self.by_mac += 1;
            true
        } else if frame.outgoing == Some(true) {
            self.by_cooked += 1;
            true
        } else {
            self.inbound += 1;
            false
        }
    }

    /// Frames sent to the egress program, for any reason.
    pub fn to_egress(&self) -> u64 {
        self.by_inside + self.by_mac + self.by_cooked
    }
}

/// The longest frame BPF_PROG_TEST_RUN hands an XDP program whole (a
/// page less its headroom and tail; past it the kernel splits the frame
/// into fragments the classifier does not read).
pub const TEST_RUN_MAX: usize = 3_400;

/// What [`fit_frame`] did to a frame.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Fit {
    /// The capture held less than the wire had (snap length).
    pub cut: bool,
    /// Longer than BPF_PROG_TEST_RUN takes whole: cut to fit.
    pub too_long: bool,
}

/// Makes a captured frame one BPF_PROG_TEST_RUN takes whole, with nothing
/// in its headers the capture did not hold.
///
/// - Cut short by the capture (snap length): the IP header's length is
///   made what was captured, and zeros after it bring the frame back to
///   its wire length. The classifier reads the IP datagram only, so it
///   sees the captured headers and nothing made up: a header the cut went
///   through is malformed, as the kernel parser calls a short header; the
///   frame (and an aggregate's bytes) keeps its wire length. A frame cut
///   inside its IP header is left as captured (malformed, or not IP).
/// - Longer than [`TEST_RUN_MAX`] (GRO or offloads coalesced it before
///   the capture): cut to fit the same way, headers intact.
/// - Shorter than an Ethernet header: padded to one, without an EtherType
///   (not IP).
pub fn fit_frame(data: &mut Vec<u8>, orig_len: usize) -> Fit {
    let wire = orig_len.max(data.len());
    let fit = Fit {
        cut: data.len() < orig_len,
        too_long: wire > TEST_RUN_MAX,
    };
    data.truncate(TEST_RUN_MAX);
    if data.len() < ETH_HLEN {
        data.resize(ETH_HLEN, 0);
        data[12..ETH_HLEN].fill(0);
    } else if (fit.cut || fit.too_long) && shorten_ip_length(data) {
        data.resize(wire.min(TEST_RUN_MAX), 0);
    }
    fit
}

/// Makes the IP header's length (and the IPv4 header checksum) end the
/// datagram within the frame's bytes, if it went past them. False when
/// the frame holds no whole IP header.
fn shorten_ip_length(data: &mut [u8]) -> bool {
    let Some((l3, ethertype)) = l3(data) else {
        return false;
    };
    let held = data.len().saturating_sub(l3);
    match ethertype {
        ETH_P_IP if held >= 20 => {
            let ip = &mut data[l3..];
            if usize::from(u16::from_be_bytes([ip[2], ip[3]])) > held {
                ip[2..4].copy_from_slice(&(held.min(0xffff) as u16).to_be_bytes());
                let ihl = ((ip[0] & 0x0f) as usize * 4).clamp(20, 60).min(held);
                ip[10..12].copy_from_slice(&[0, 0]);
                let sum = ipv4_checksum(&ip[..ihl]);
                ip[10..12].copy_from_slice(&sum.to_be_bytes());
            }
            true
        }
        ETH_P_IPV6 if held >= 40 => {
            let ip = &mut data[l3..];
            let payload = held - 40;
            if usize::from(u16::from_be_bytes([ip[4], ip[5]])) > payload {
                ip[4..6].copy_from_slice(&(payload.min(0xffff) as u16).to_be_bytes());
            }
            true
        }
        _ => false,
    }
}

/// The IPv4 header checksum of `header` (its checksum field zeroed).
fn ipv4_checksum(header: &[u8]) -> u16 {
    let mut sum: u32 = header
        .chunks(2)
        .map(|c| u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]) as u32)
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_parse() {
        let mut f = vec![0u8; 12];
        f.extend_from_slice(&[0x81, 0, 0, 5, 0x08, 0]);
        let mut ip = vec![0x45u8; 20];
        ip[12..16].copy_from_slice(&[198, 18, 0, 9]);
        f.extend_from_slice(&ip);
        assert_eq!(source_addr(&f), Some("198.18.0.9".parse().unwrap()));
        assert_eq!(source_addr(&f[..20]), None);
    }

    #[test]
    fn directions_follow_inside_then_mac_then_cooked() {
        let frame = |src: [u8; 4], mac: u8, outgoing: Option<bool>| {
            let mut data = vec![0, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, mac, 0x08, 0];
            let mut ip = vec![0x45u8; 20];
            ip[12..16].copy_from_slice(&src);
            data.extend_from_slice(&ip);
            Frame {
                ts_ns: 1,
                iface: 0,
                orig_len: data.len(),
                data,
                src_mac: Some([2, 0, 0, 0, 0, mac]),
                outgoing,
            }
        };
        let inside = |a: IpAddr| a == IpAddr::from([198, 18, 1, 2]);
        let router = Some([2, 0, 0, 0, 0, 9]);
        let mut d = Directions::default();
        assert!(d.egress(&frame([198, 18, 1, 2], 9, Some(true)), inside, router));
        assert!(d.egress(&frame([203, 0, 113, 5], 9, Some(true)), inside, router));
        assert!(d.egress(&frame([203, 0, 113, 5], 1, Some(true)), inside, router));
        assert!(!d.egress(&frame([203, 0, 113, 5], 1, Some(false)), inside, router));
        assert!(!d.egress(&frame([203, 0, 113, 5], 9, None), inside, None));
        assert_eq!(
            (d.by_inside, d.by_mac, d.by_cooked, d.inbound, d.to_egress()),
            (1, 1, 1, 2, 3)
        );
    }

    fn v4_frame(len: usize) -> Vec<u8> {
        let mut f = vec![2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2, 0x08, 0];
        let mut ip = vec![
            0x45u8, 0, 0, 0, 0, 1, 0x40, 0, 64, 6, 0, 0, 198, 18, 0, 9, 198, 18, 1, 2,
        ];
        ip[2..4].copy_from_slice(&((len - 14) as u16).to_be_bytes());
        f.extend_from_slice(&ip);
        f.extend_from_slice(&[
            0x9c, 0x40, 0, 80, 0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x10, 4, 0, 0, 0, 0, 0,
        ]);
        f.resize(len, 0xab);
        f
    }

    fn checksum_ok(h: &[u8]) -> bool {
        ipv4_checksum(h) == 0
    }

    fn ip_len(f: &[u8]) -> usize {
        u16::from_be_bytes([f[16], f[17]]) as usize
    }

    #[test]
    fn whole_frames_are_untouched() {
        let mut f = v4_frame(60);
        assert_eq!(fit_frame(&mut f, 60), Fit::default());
        assert_eq!(f, v4_frame(60));
    }

    #[test]
    fn a_cut_frame_keeps_its_headers_and_its_wire_length_and_nothing_made_up() {
        // Snap length 54: the TCP header whole, the payload gone. The IP
        // length says what was captured; zeros after it are padding.
        let mut f = v4_frame(300)[..54].to_vec();
        let fit = fit_frame(&mut f, 300);
        assert_eq!((fit.cut, fit.too_long), (true, false));
        assert_eq!(f.len(), 300, "the wire's length");
        assert_eq!(
            ip_len(&f),
            54 - 14,
            "the datagram ends where the capture did"
        );
        assert!(checksum_ok(&f[14..34]));
        assert_eq!(
            &f[34..54],
            &v4_frame(300)[34..54],
            "the TCP header as captured"
        );
        assert!(f[54..].iter().all(|b| *b == 0));
        // Cut inside the TCP header (snap length 40): the datagram ends
        // inside it, so the kernel reads no TCP header (malformed) rather
        // than flags and ports of zeros.
        let mut f = v4_frame(300)[..40].to_vec();
        assert!(fit_frame(&mut f, 300).cut);
        assert_eq!((f.len(), ip_len(&f)), (300, 40 - 14));
        // Cut inside the IP header: left as captured.
        let mut f = v4_frame(300)[..30].to_vec();
        assert!(fit_frame(&mut f, 300).cut);
        assert_eq!(f, v4_frame(300)[..30]);
        // Cut inside the Ethernet header: an Ethernet header without a type.
        let mut f = v4_frame(300)[..13].to_vec();
        fit_frame(&mut f, 300);
        assert_eq!(f.len(), 14);
        assert_eq!(&f[12..14], &[0, 0]);
        // Only the Ethernet trailer cut: the IP length stands.
        let mut f = v4_frame(60);
        f[16..18].copy_from_slice(&40u16.to_be_bytes());
        let whole = f.clone();
        f.truncate(56);
        assert!(fit_frame(&mut f, 60).cut);
        assert_eq!(&f[..56], &whole[..56]);
        assert_eq!((f.len(), ip_len(&f)), (60, 40));
    }

    #[test]
    fn a_cut_frame_behind_two_vlan_tags_and_an_ipv6_one_are_shortened_too() {
        let mut f = v4_frame(200);
        f.splice(12..12, [0x88, 0xa8, 0, 7, 0x81, 0, 0, 9]);
        f.truncate(70);
        assert!(fit_frame(&mut f, 208).cut);
        assert_eq!(f.len(), 208);
        assert_eq!(u16::from_be_bytes([f[24], f[25]]) as usize, 70 - 22);
        assert_eq!(source_addr(&f), Some("198.18.0.9".parse().unwrap()));
        let mut f6 = vec![2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2, 0x86, 0xdd, 0x60];
        f6.resize(14 + 40 + 8, 0);
        f6[18..20].copy_from_slice(&500u16.to_be_bytes());
        assert!(fit_frame(&mut f6, 14 + 40 + 500).cut);
        assert_eq!(f6.len(), 554);
        assert_eq!(u16::from_be_bytes([f6[18], f6[19]]), 8);
    }

    #[test]
    fn a_coalesced_frame_is_cut_to_fit_with_its_headers_intact() {
        let mut f = v4_frame(60_000);
        let fit = fit_frame(&mut f, 60_000);
        assert_eq!((fit.cut, fit.too_long), (false, true));
        assert_eq!(f.len(), TEST_RUN_MAX);
        assert_eq!(ip_len(&f), TEST_RUN_MAX - 14);
        assert!(checksum_ok(&f[14..34]));
        assert_eq!(
            &f[34..54],
            &v4_frame(60)[34..54],
            "the TCP header is intact"
        );
        // IPv6: the payload length.
        let mut f6 = vec![2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2, 0x86, 0xdd, 0x60];
        f6.resize(9_000, 0);
        f6[18..20].copy_from_slice(&((9_000 - 54) as u16).to_be_bytes());
        assert!(fit_frame(&mut f6, 9_000).too_long);
        assert_eq!(
            u16::from_be_bytes([f6[18], f6[19]]) as usize,
            TEST_RUN_MAX - 14 - 40
        );
        // Both: 64 KB on the wire, 200 bytes captured.
        let mut f = v4_frame(60_000)[..200].to_vec();
        let fit = fit_frame(&mut f, 60_000);
        assert_eq!((fit.cut, fit.too_long), (true, true));
        assert_eq!((f.len(), ip_len(&f)), (TEST_RUN_MAX, 200 - 14));
    }
}
