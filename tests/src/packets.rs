//! Frames for BPF_PROG_TEST_RUN tests and benchmarks, built with
//! etherparse (and by hand only where a frame must be malformed).

use etherparse::{IpNumber, PacketBuilder, TcpHeader, VlanId};

/// MAC of the scanner side and of the router's wan0 in built frames.
pub const MAC_OUTSIDE: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
pub const MAC_WAN: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];

pub const INSIDE_V4: [u8; 4] = [198, 18, 1, 2];
pub const OUTSIDE_V4: [u8; 4] = [198, 18, 0, 2];
pub const OTHER_V4: [u8; 4] = [198, 18, 0, 99];
pub const INSIDE_V6: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];
pub const OUTSIDE_V6: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];
pub const OTHER_V6: [u8; 16] = [
    0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x99,
];

/// TCP flag bits as in the header's flag byte.
pub mod flags {
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const RST: u8 = 0x04;
    pub const PSH: u8 = 0x08;
    pub const ACK: u8 = 0x10;
    pub const URG: u8 = 0x20;
    pub const ECE: u8 = 0x40;
    pub const CWR: u8 = 0x80;
}

/// The transport part of a frame.
#[derive(Clone, Copy, Debug)]
pub enum L4 {
    Tcp {
        sport: u16,
        dport: u16,
        flags: u8,
    },
    Udp {
        sport: u16,
        dport: u16,
    },
    /// ICMP or ICMPv6 (by family): type, code, bytes 5-8 (echo id and sequence).
    Icmp {
        ty: u8,
        code: u8,
        rest: [u8; 4],
    },
    /// SCTP: the common header (verification tag 0, checksum not
    /// computed) and one chunk of type `chunk` (an INIT's 20 bytes for an
    /// INIT, else a bare 4-byte chunk header).
    Sctp {
        sport: u16,
        dport: u16,
        chunk: u8,
    },
    /// UDP-Lite (checksum coverage 8: the header), checksum not computed.
    UdpLite {
        sport: u16,
        dport: u16,
    },
    /// DCCP: a 16-byte generic header (extended sequence numbers) of type
    /// `ty`, and a Request's service code; checksum not computed.
    Dccp {
        sport: u16,
        dport: u16,
        ty: u8,
    },
    /// Any other protocol, with no header of its own.
    Raw {
        proto: u8,
    },
}

/// IP protocol numbers of the hand-built headers (this library does not
/// depend on `fireplot_common` without its `bench` feature).
const PROTO_SCTP: u8 = 132;
const PROTO_UDPLITE: u8 = 136;
const PROTO_DCCP: u8 = 33;

impl L4 {
    /// The protocol number and header bytes of the variants etherparse
    /// cannot build (SCTP, UDP-Lite, DCCP), hand-made.
    fn hand_built(self) -> Option<(u8, Vec<u8>)> {
        let ports = |s: u16, d: u16| [s.to_be_bytes(), d.to_be_bytes()].concat();
        match self {
            L4::Sctp {
                sport,
                dport,
                chunk,
            } => {
                let mut h = ports(sport, dport);
                h.extend_from_slice(&[0; 8]); // verification tag, checksum
                if chunk == 1 {
                    // INIT: type, flags, length 20, initiate tag, a_rwnd,
                    // outbound and inbound streams, initial TSN.
                    h.extend_from_slice(&[1, 0, 0, 20]);
                    h.extend_from_slice(&0x1234_5678u32.to_be_bytes());
                    h.extend_from_slice(&65535u32.to_be_bytes());
                    h.extend_from_slice(&[0, 10, 0, 10]);
                    h.extend_from_slice(&1u32.to_be_bytes());
                } else {
                    h.extend_from_slice(&[chunk, 0, 0, 4]);
                }
                Some((PROTO_SCTP, h))
            }
            L4::UdpLite { sport, dport } => {
                let mut h = ports(sport, dport);
                h.extend_from_slice(&[0, 8, 0, 0]); // coverage, checksum
                Some((PROTO_UDPLITE, h))
            }
            L4::Dccp { sport, dport, ty } => {
                let mut h = ports(sport, dport);
                let words = if ty == 0 { 5 } else { 4 };
                // data offset, CCVal/CsCov, checksum, Res|Type|X=1,
                // reserved, 48-bit sequence number.
                h.extend_from_slice(&[words, 0, 0, 0, (ty << 1) | 1, 0, 0, 0, 0, 0, 0, 1]);
                if ty == 0 {
                    h.extend_from_slice(&[0, 0, 0, 0]); // service code
                }
                Some((PROTO_DCCP, h))
            }
            _ => None,
        }
    }
}

/// VLAN tagging of a frame.
#[derive(Clone, Copy, Debug)]
pub enum Vlan {
    None,
    Single(u16),
    /// 802.1ad outer, 802.1Q inner.
    Double(u16, u16),
}

fn tcp_header(sport: u16, dport: u16, f: u8) -> TcpHeader {
    let mut h = TcpHeader::new(sport, dport, 0x1234_5678, 1024);
    h.fin = f & flags::FIN != 0;
    h.syn = f & flags::SYN != 0;
    h.rst = f & flags::RST != 0;
    h.psh = f & flags::PSH != 0;
    h.ack = f & flags::ACK != 0;
    h.urg = f & flags::URG != 0;
    h.ece = f & flags::ECE != 0;
    h.cwr = f & flags::CWR != 0;
    if h.ack {
        h.acknowledgment_number = 1;
    }
    h
}

macro_rules! finish {
    ($ip:expr, $l4:expr, $payload:expr, $icmp6:expr) => {{
        let mut out = Vec::new();
        match $l4 {
            L4::Tcp {
                sport,
                dport,
                flags,
            } => $ip
                .tcp_header(tcp_header(sport, dport, flags))
                .write(&mut out, $payload),
            L4::Udp { sport, dport } => $ip.udp(sport, dport).write(&mut out, $payload),
            L4::Icmp { ty, code, rest } if $icmp6 => {
                $ip.icmpv6_raw(ty, code, rest).write(&mut out, $payload)
            }
            L4::Icmp { ty, code, rest } => $ip.icmpv4_raw(ty, code, rest).write(&mut out, $payload),
            L4::Raw { proto } => $ip.write(&mut out, IpNumber(proto), $payload),
            l4 => {
                let (proto, mut body) = l4.hand_built().expect("a hand-built header");
                body.extend_from_slice($payload);
                $ip.write(&mut out, IpNumber(proto), &body)
            }
        }
        .expect("frame builds");
        out
    }};
}

fn vlan_id(v: u16) -> VlanId {
    VlanId::try_new(v).expect("vlan id < 4096")
}

/// An IPv4 frame from `src` to `dst` (TTL 64), with optional VLAN tags.
pub fn v4_vlan(vlan: Vlan, src: [u8; 4], dst: [u8; 4], l4: L4, payload: &[u8]) -> Vec<u8> {
    let eth = PacketBuilder::ethernet2(MAC_OUTSIDE, MAC_WAN);
    match vlan {
        Vlan::None => finish!(eth.ipv4(src, dst, 64), l4, payload, false),
        Vlan::Single(v) => finish!(
            eth.single_vlan(vlan_id(v)).ipv4(src, dst, 64),
            l4,
            payload,
            false
        ),
        Vlan::Double(o, i) => finish!(
            eth.double_vlan(vlan_id(o), vlan_id(i)).ipv4(src, dst, 64),
            l4,
            payload,
            false
        ),
    }
}

/// An IPv6 frame from `src` to `dst` (hop limit 64), with optional VLAN tags.
pub fn v6_vlan(vlan: Vlan, src: [u8; 16], dst: [u8; 16], l4: L4, payload: &[u8]) -> Vec<u8> {
    let eth = PacketBuilder::ethernet2(MAC_OUTSIDE, MAC_WAN);
    match vlan {
        Vlan::None => finish!(eth.ipv6(src, dst, 64), l4, payload, true),
        Vlan::Single(v) => finish!(
            eth.single_vlan(vlan_id(v)).ipv6(src, dst, 64),
            l4,
            payload,
            true
        ),
        Vlan::Double(o, i) => finish!(
            eth.double_vlan(vlan_id(o), vlan_id(i)).ipv6(src, dst, 64),
            l4,
            payload,
            true
        ),
    }
}

pub fn v4(src: [u8; 4], dst: [u8; 4], l4: L4) -> Vec<u8> {
    v4_vlan(Vlan::None, src, dst, l4, &[])
}

pub fn v6(src: [u8; 16], dst: [u8; 16], l4: L4) -> Vec<u8> {
    v6_vlan(Vlan::None, src, dst, l4, &[])
}

/// The IP part of a frame (what an ICMP error quotes).
pub fn ip_part(frame: &[u8]) -> Vec<u8> {
    frame[14..].to_vec()
}

/// Sets a byte of the IPv4 header and fixes the header checksum.
pub fn patch_v4(frame: &mut [u8], offset: usize, value: u8) {
    frame[14 + offset] = value;
    let ihl = ((frame[14] & 0x0f) as usize * 4)
        .clamp(20, 60)
        .min(frame.len() - 14);
    frame[14 + 10] = 0;
    frame[14 + 11] = 0;
    let mut sum: u32 = 0;
    for chunk in frame[14..14 + ihl].chunks(2) {
        sum += u16::from_be_bytes([chunk[0], *chunk.get(1).unwrap_or(&0)]) as u32;
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    let c = !(sum as u16);
    frame[14 + 10..14 + 12].copy_from_slice(&c.to_be_bytes());
}

/// An IPv4 frame with `options` (a multiple of 4 bytes) in the header.
pub fn v4_with_options(src: [u8; 4], dst: [u8; 4], l4: L4, options: &[u8]) -> Vec<u8> {
    assert!(options.len().is_multiple_of(4) && options.len() <= 40);
    let plain = v4(src, dst, l4);
    let mut f = plain[..34].to_vec();
    f.extend_from_slice(options);
    f.extend_from_slice(&plain[34..]);
    let total = (f.len() - 14) as u16;
    f[16..18].copy_from_slice(&total.to_be_bytes());
    let ihl = 5 + options.len() / 4;
    patch_v4(&mut f, 0, 0x40 | ihl as u8);
    f
}

/// A non-first IPv4 fragment (offset 185 × 8 bytes) carrying `proto` data.
pub fn v4_fragment(src: [u8; 4], dst: [u8; 4], proto: u8) -> Vec<u8> {
    let mut f = v4_vlan(Vlan::None, src, dst, L4::Raw { proto }, &[0xab; 64]);
    f[14 + 6] = 0x00;
    patch_v4(&mut f, 7, 185);
    f
}

/// An IPv6 frame with `hops` destination-options headers (8 bytes each)
/// before `l4`.
pub fn v6_with_ext(src: [u8; 16], dst: [u8; 16], hops: usize, l4: L4) -> Vec<u8> {
    let plain = v6(src, dst, l4);
    let l4_proto = plain[14 + 6];
    let mut f = plain[..54].to_vec();
    for i in 0..hops {
        let next = if i + 1 == hops { l4_proto } else { 60 };
        f.extend_from_slice(&[next, 0, 1, 4, 0, 0, 0, 0]); // PadN option
    }
    f.extend_from_slice(&plain[54..]);
    if hops > 0 {
        f[14 + 6] = 60;
    }
    let payload = (f.len() - 54) as u16;
    f[18..20].copy_from_slice(&payload.to_be_bytes());
    f
}

/// A non-first IPv6 fragment of a `proto` datagram.
pub fn v6_fragment(src: [u8; 16], dst: [u8; 16], proto: u8) -> Vec<u8> {
    let plain = v6(src, dst, L4::Raw { proto: 59 });
    let mut f = plain[..54].to_vec();
    // fragment header: next, reserved, offset 100 (×8) with M=0, id
    let off: u16 = 100 << 3;
    f.extend_from_slice(&[proto, 0]);
    f.extend_from_slice(&off.to_be_bytes());
    f.extend_from_slice(&0xdead_beefu32.to_be_bytes());
    f.extend_from_slice(&[0xcd; 64]);
    f[14 + 6] = 44;
    let payload = (f.len() - 54) as u16;
    f[18..20].copy_from_slice(&payload.to_be_bytes());
    f
}

/// An ARP request frame.
pub fn arp() -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&[0xff; 6]);
    f.extend_from_slice(&MAC_OUTSIDE);
    f.extend_from_slice(&[0x08, 0x06]);
    f.extend_from_slice(&[0, 1, 8, 0, 6, 4, 0, 1]);
    f.extend_from_slice(&MAC_OUTSIDE);
    f.extend_from_slice(&OUTSIDE_V4);
    f.extend_from_slice(&[0; 6]);
    f.extend_from_slice(&INSIDE_V4);
    f
}
