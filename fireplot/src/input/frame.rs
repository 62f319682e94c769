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

/// The frame's source address (Ethernet frame, optionally one VLAN tag).
pub fn source_addr(frame: &[u8]) -> Option<IpAddr> {
    let mut off = 12;
    let mut ethertype = u16::from_be_bytes(frame.get(off..off + 2)?.try_into().ok()?);
    if matches!(ethertype, 0x8100 | 0x88a8) {
        off += 4;
        ethertype = u16::from_be_bytes(frame.get(off..off + 2)?.try_into().ok()?);
    }
    let ip = frame.get(off + 2..)?;
    match ethertype {
        0x0800 => {
            let a: [u8; 4] = ip.get(12..16)?.try_into().ok()?;
            Some(a.into())
        }
        0x86dd => {
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

/// Makes a captured frame what the wire had, as far as the classifier
/// reads it: a frame the capture cut short (snap length) is padded back to
/// its length, and one longer than BPF_PROG_TEST_RUN takes (coalesced by
/// GRO or offloads before the capture) is cut to fit with its IP length
/// fields rewritten, headers intact. Returns the length on the wire when
/// the frame was changed.
pub fn fit_frame(data: &mut Vec<u8>, orig_len: usize) -> Option<usize> {
    let want = orig_len.max(data.len());
    if want == data.len() && want <= TEST_RUN_MAX {
        return None;
    }
    let target = want.min(TEST_RUN_MAX);
    data.resize(target, 0);
    if target < want {
        rewrite_ip_length(data, target);
    }
    Some(want)
}

/// The IP header's own length for a frame cut to `target` bytes, and the
/// IPv4 header checksum with it.
fn rewrite_ip_length(data: &mut [u8], target: usize) {
    let mut off = 12;
    let mut ethertype = u16::from_be_bytes([data[off], data[off + 1]]);
    if matches!(ethertype, 0x8100 | 0x88a8) && data.len() >= off + 6 {
        off += 4;
        ethertype = u16::from_be_bytes([data[off], data[off + 1]]);
    }
    let l3 = off + 2;
    match ethertype {
        0x0800 if data.len() >= l3 + 20 => {
            let ihl = ((data[l3] & 0x0f) as usize * 4).clamp(20, 60);
            let tot = (target - l3) as u16;
            data[l3 + 2..l3 + 4].copy_from_slice(&tot.to_be_bytes());
            data[l3 + 10..l3 + 12].copy_from_slice(&[0, 0]);
            let end = (l3 + ihl).min(data.len());
            let mut sum: u32 = data[l3..end]
                .chunks(2)
                .map(|c| u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]) as u32)
                .sum();
            while sum > 0xffff {
                sum = (sum & 0xffff) + (sum >> 16);
            }
            data[l3 + 10..l3 + 12].copy_from_slice(&(!(sum as u16)).to_be_bytes());
        }
        0x86dd if data.len() >= l3 + 40 => {
            let pl = (target - l3 - 40) as u16;
            data[l3 + 4..l3 + 6].copy_from_slice(&pl.to_be_bytes());
        }
        _ => {}
    }
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
        let mut sum: u32 = h
            .chunks(2)
            .map(|c| u16::from_be_bytes([c[0], c[1]]) as u32)
            .sum();
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        sum == 0xffff
    }

    #[test]
    fn frames_are_fitted_to_what_the_wire_had() {
        // Whole and small: untouched.
        let mut f = v4_frame(60);
        assert_eq!(fit_frame(&mut f, 60), None);
        assert_eq!(f, v4_frame(60));
        // Cut by a snap length of 54: padded back to its 60 bytes.
        let mut f = v4_frame(60)[..54].to_vec();
        assert_eq!(fit_frame(&mut f, 60), Some(60));
        assert_eq!(f.len(), 60);
        assert_eq!(&f[..54], &v4_frame(60)[..54]);
        // Coalesced to 64 KB (GRO): cut to fit, its IP length and checksum rewritten.
        let mut f = v4_frame(60_000);
        assert_eq!(fit_frame(&mut f, 60_000), Some(60_000));
        assert_eq!(f.len(), TEST_RUN_MAX);
        assert_eq!(
            u16::from_be_bytes([f[16], f[17]]) as usize,
            TEST_RUN_MAX - 14
        );
        assert!(checksum_ok(&f[14..34]));
        assert_eq!(
            &f[34..54],
            &v4_frame(60)[34..54],
            "the TCP header is intact"
        );
        // IPv6: the payload length.
        let mut f6 = vec![2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2, 0x86, 0xdd, 0x60];
        f6.resize(9_000, 0);
        assert_eq!(fit_frame(&mut f6, 9_000), Some(9_000));
        assert_eq!(
            u16::from_be_bytes([f6[18], f6[19]]) as usize,
            TEST_RUN_MAX - 14 - 40
        );
    }
}
