//! Bounded header walk shared by the XDP ingress and TC egress programs:
//! Ethernet, up to two VLAN tags, IPv4 (options, fragments), IPv6 with a
//! bounded extension-header walk, then the L4 header's ports and types. Every read is checked against the end of
//! the packet; every offset stays bounded so the verifier can follow it.

use core::mem::size_of;

use fireplot_common::proto::{FAMILY_V4, FAMILY_V6, IPPROTO_DCCP, IPPROTO_SCTP};

/// Extension headers walked before an IPv6 packet counts as malformed.
pub const MAX_IPV6_EXT: usize = 8;
/// Offsets past this are malformed (keeps verifier ranges small).
const MAX_L4_OFFSET: usize = 512;

const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;
const ETH_P_8021Q: u16 = 0x8100;
const ETH_P_8021AD: u16 = 0x88a8;

/// The linear part of a packet, and how much of it a read may use.
#[derive(Clone, Copy)]
pub struct Bounds {
    pub data: usize,
    pub end: usize,
    /// Reads stop here: the frame's end, or the IP datagram's end once it
    /// is known (so Ethernet padding is never read as a header).
    pub limit: usize,
}

impl Bounds {
    #[inline(always)]
    pub fn new(data: usize, end: usize) -> Bounds {
        Bounds {
            data,
            end,
            limit: end,
        }
    }

    /// The same packet with reads limited to the IP datagram.
    #[inline(always)]
    pub fn within(&self, h: &Headers) -> Bounds {
        Bounds {
            limit: self.data + h.ip_end,
            ..*self
        }
    }

    /// A pointer to a `T` at `off`, if the whole `T` lies inside the packet.
    #[inline(always)]
    pub fn ptr<T>(&self, off: usize) -> Option<*const T> {
        let start = self.data + off;
        // The first check is for the verifier (packet pointer against
        // data_end), the second for the datagram's own length.
        if start + size_of::<T>() > self.end || start + size_of::<T>() > self.limit {
            return None;
        }
        Some(start as *const T)
    }

    #[inline(always)]
    pub fn len(&self) -> usize {
        self.end - self.data
    }
}

/// Why a frame produced no `Headers`.
#[derive(Clone, Copy)]
pub enum ParseError {
    /// Not IPv4/IPv6.
    NonIp,
    /// Bad or truncated IP header; family known from the EtherType, `l3`
    /// is the offset of the IP header (addresses may still be readable).
    Malformed { family: u8, proto: u8, l3: usize },
    /// IPv6 extension-header chain longer than `MAX_IPV6_EXT`.
    ExtOverflow { l3: usize },
}

/// Layer-3 facts of a parsed packet. Addresses are read from `l3` on demand
/// so the hot path copies nothing it does not need.
#[derive(Clone, Copy)]
pub struct Headers {
    pub family: u8,
    /// IP protocol after extension headers.
    pub proto: u8,
    /// Offset of the IP header.
    pub l3: usize,
    /// Offset of the L4 header (nothing there for a non-first fragment).
    pub l4: usize,
    /// Offset of the end of the IP datagram (frame bytes after it are padding).
    pub ip_end: usize,
    pub ttl: u8,
    pub vlan: bool,
    /// Non-first fragment: no L4 header.
    pub fragment: bool,
    pub ip_id: u16,
}

#[inline(always)]
fn be16(p: *const u8) -> u16 {
    // SAFETY: callers pass pointers checked by `Bounds::ptr` for 2 bytes.
    unsafe { u16::from_be(*(p as *const u16)) }
}

/// Parses L2 and L3 of the frame.
#[inline(always)]
pub fn parse(b: &Bounds) -> Result<Headers, ParseError> {
    let eth: *const [u8; 14] = b.ptr(0).ok_or(ParseError::NonIp)?;
    // SAFETY: 14 bytes checked.
    let mut ethertype = be16(unsafe { (eth as *const u8).add(12) });
    let mut off = 14usize;
    let mut vlan = false;
    if ethertype == ETH_P_8021Q || ethertype == ETH_P_8021AD {
        vlan = true;
        let cut = ParseError::Malformed {
            family: 0,
            proto: 0,
            l3: off,
        };
        let tag: *const [u8; 4] = b.ptr(off).ok_or(cut)?;
        // SAFETY: `tag` points at 4 bytes checked by `Bounds::ptr`; +2 stays inside.
        ethertype = be16(unsafe { (tag as *const u8).add(2) });
        off += 4;
        if ethertype == ETH_P_8021Q || ethertype == ETH_P_8021AD {
            let cut = ParseError::Malformed {
                family: 0,
                proto: 0,
                l3: off,
            };
            let tag: *const [u8; 4] = b.ptr(off).ok_or(cut)?;
            // SAFETY: as above, for the second tag.
            ethertype = be16(unsafe { (tag as *const u8).add(2) });
            off += 4;
        }
    }
    match ethertype {
        ETH_P_IP => parse_ipv4(b, off, vlan),
        ETH_P_IPV6 => parse_ipv6(b, off, vlan),
        // A third tag is more than the design supports: it is not guessed.
        ETH_P_8021Q | ETH_P_8021AD => Err(ParseError::Malformed {
            family: 0,
            proto: 0,
            l3: off,
        }),
        _ => Err(ParseError::NonIp),
    }
}

#[inline(always)]
fn parse_ipv4(b: &Bounds, off: usize, vlan: bool) -> Result<Headers, ParseError> {
    let bad = ParseError::Malformed {
        family: FAMILY_V4,
        proto: 0,
        l3: off,
    };
    let ip = b.ptr::<[u8; 20]>(off).ok_or(bad)? as *const u8;
    // SAFETY: 20 bytes checked above.
    let (vihl, proto, ttl) = unsafe { (*ip, *ip.add(9), *ip.add(8)) };
    let bad = ParseError::Malformed {
        family: FAMILY_V4,
        proto,
        l3: off,
    };
    if vihl >> 4 != 4 {
        return Err(bad);
    }
    let ihl = ((vihl & 0x0f) as usize) * 4;
    if ihl < 20 {
        return Err(bad);
    }
    // SAFETY: `ip` points at the 20-byte header checked by `Bounds::ptr`.
    let total_len = be16(unsafe { ip.add(2) }) as usize;
    if total_len < ihl || off + total_len > b.len() {
        return Err(bad);
    }
    let l4 = off + ihl;
    if b.data + l4 > b.end {
        return Err(bad);
    }
    // SAFETY: as above; bytes 4..8 are inside the checked header.
    let frag = be16(unsafe { ip.add(6) });
    Ok(Headers {
        family: FAMILY_V4,
        proto,
        l3: off,
        l4,
        ip_end: off + total_len,
        ttl,
        vlan,
        fragment: frag & 0x1fff != 0,
        // SAFETY: as above.
        ip_id: be16(unsafe { ip.add(4) }),
    })
}

#[inline(always)]
fn parse_ipv6(b: &Bounds, off: usize, vlan: bool) -> Result<Headers, ParseError> {
    let bad = ParseError::Malformed {
        family: FAMILY_V6,
        proto: 0,
        l3: off,
    };
    let ip = b.ptr::<[u8; 40]>(off).ok_or(bad)? as *const u8;
    // SAFETY: 40 bytes checked above.
    let (ver, mut nh, hop) = unsafe { (*ip >> 4, *ip.add(6), *ip.add(7)) };
    let payload_len = be16(unsafe { ip.add(4) }) as usize;
    // payload_len 0 with a hop-by-hop header is a jumbogram (RFC 2675),
    // which never crosses a WAN link.
    if ver != 6 || (payload_len == 0 && nh == 0) || off + 40 + payload_len > b.len() {
        return Err(ParseError::Malformed {
            family: FAMILY_V6,
            proto: nh,
            l3: off,
        });
    }
    let b = &Bounds {
        limit: b.data + off + 40 + payload_len,
        ..*b
    };
    let mut l4 = off + 40;
    let mut fragment = false;
    let mut i = 0;
    while i < MAX_IPV6_EXT {
        match nh {
            // hop-by-hop, routing, destination options: (len + 1) * 8 bytes
            0 | 43 | 60 => {
                let h = b.ptr::<[u8; 2]>(l4).ok_or(bad)? as *const u8;
                // SAFETY: 2 bytes checked by `Bounds::ptr`.
                let (next, len) = unsafe { (*h, *h.add(1)) };
                nh = next;
                l4 += (len as usize + 1) * 8;
            }
            // fragment header: 8 bytes
            44 => {
                let h = b.ptr::<[u8; 8]>(l4).ok_or(bad)? as *const u8;
                // SAFETY: 8 bytes checked by `Bounds::ptr`.
                nh = unsafe { *h };
                // SAFETY: as above.
                let frag_off = be16(unsafe { h.add(2) }) >> 3;
                l4 += 8;
                if frag_off != 0 {
                    fragment = true;
                    break;
                }
            }
            // authentication header: (len + 2) * 4 bytes
            51 => {
                let h = b.ptr::<[u8; 2]>(l4).ok_or(bad)? as *const u8;
                // SAFETY: 2 bytes checked by `Bounds::ptr`.
                let (next, len) = unsafe { (*h, *h.add(1)) };
                nh = next;
                l4 += (len as usize + 2) * 4;
            }
            _ => break,
        }
        if l4 > MAX_L4_OFFSET {
            return Err(ParseError::Malformed {
                family: FAMILY_V6,
                proto: nh,
                l3: off,
            });
        }
        i += 1;
    }
    if i == MAX_IPV6_EXT {
        return Err(ParseError::ExtOverflow { l3: off });
    }
    if b.data + l4 > b.end {
        return Err(ParseError::Malformed {
            family: FAMILY_V6,
            proto: nh,
            l3: off,
        });
    }
    Ok(Headers {
        family: FAMILY_V6,
        proto: nh,
        l3: off,
        l4,
        ip_end: off + 40 + payload_len,
        ttl: hop,
        vlan,
        fragment,
        ip_id: 0,
    })
}

/// The first 16 bytes of a TCP header we read: ports, sequence, flags, window.
pub struct Tcp {
    pub sport: u16,
    pub dport: u16,
    pub seq: u32,
    pub flags: u8,
    pub window: u16,
}

/// Reads the TCP header at `off` (20 bytes must be present).
#[inline(always)]
pub fn tcp(b: &Bounds, off: usize) -> Option<Tcp> {
    let h = b.ptr::<[u8; 20]>(off)? as *const u8;
    // SAFETY: 20 bytes checked.
    unsafe {
        Some(Tcp {
            sport: be16(h),
            dport: be16(h.add(2)),
            seq: u32::from_be(*(h.add(4) as *const u32)),
            flags: *h.add(13),
            window: be16(h.add(14)),
        })
    }
}

/// Reads UDP ports at `off` (8 bytes must be present).
#[inline(always)]
pub fn udp(b: &Bounds, off: usize) -> Option<(u16, u16)> {
    let h = b.ptr::<[u8; 8]>(off)? as *const u8;
    // SAFETY: 8 bytes checked by `Bounds::ptr`.
    Some((be16(h), be16(unsafe { h.add(2) })))
}

/// Reads the ports of SCTP, UDP-Lite or DCCP at `off`, and the type byte
/// of the two that have one: SCTP's first chunk (after the 12-byte common
/// header, RFC 9260 §3.1; its 4-byte chunk header must be present), DCCP's
/// packet type (in its generic header, 12 bytes at least, RFC 4340 §5.1).
/// UDP-Lite's header is UDP's (RFC 3828), and its type is 0.
#[inline(always)]
pub fn port_proto(b: &Bounds, off: usize, proto: u8) -> Option<(u16, u16, u8)> {
    match proto {
        IPPROTO_SCTP => {
            let h = b.ptr::<[u8; 16]>(off)? as *const u8;
            // SAFETY: 16 bytes checked by `Bounds::ptr`.
            unsafe { Some((be16(h), be16(h.add(2)), *h.add(12))) }
        }
        IPPROTO_DCCP => {
            let h = b.ptr::<[u8; 12]>(off)? as *const u8;
            // SAFETY: 12 bytes checked by `Bounds::ptr`; the type is bits
            // 1..=4 of byte 8 (after 3 reserved bits).
            unsafe { Some((be16(h), be16(h.add(2)), (*h.add(8) >> 1) & 0x0f)) }
        }
        _ => {
            let (sport, dport) = udp(b, off)?;
            Some((sport, dport, 0))
        }
    }
}

/// Reads ICMP/ICMPv6 type, code and echo identifier at `off` (8 bytes).
#[inline(always)]
pub fn icmp(b: &Bounds, off: usize) -> Option<(u8, u8, u16)> {
    let h = b.ptr::<[u8; 8]>(off)? as *const u8;
    // SAFETY: 8 bytes checked.
    unsafe { Some((*h, *h.add(1), be16(h.add(4)))) }
}

/// IPv4 source and destination, as stored in packets (network order bytes
/// in a native `u32`).
#[inline(always)]
pub fn ipv4_addrs(b: &Bounds, l3: usize) -> Option<(u32, u32)> {
    let h = b.ptr::<[u8; 20]>(l3)? as *const u8;
    // SAFETY: 20 bytes checked.
    unsafe { Some((*(h.add(12) as *const u32), *(h.add(16) as *const u32))) }
}

/// IPv6 source and destination as two words each.
#[inline(always)]
pub fn ipv6_addrs(b: &Bounds, l3: usize) -> Option<([u64; 2], [u64; 2])> {
    let h = b.ptr::<[u8; 40]>(l3)? as *const u8;
    // SAFETY: 40 bytes checked.
    unsafe {
        Some((
            [*(h.add(8) as *const u64), *(h.add(16) as *const u64)],
            [*(h.add(24) as *const u64), *(h.add(32) as *const u64)],
        ))
    }
}
