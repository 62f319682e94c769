//! The event pushed through the ring buffer for every unsolicited (and,
//! when enabled, malformed) inbound packet.

use crate::assert_size;

/// Packet classes, as decided by the XDP classifier (DESIGN §2).
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Class {
    /// Reply to a flow the inside opened.
    Reply = 0,
    /// ICMP error quoting a flow the inside opened.
    Related = 1,
    /// Inbound to a published service, or part of a connection the inside accepted.
    Service = 2,
    /// Network control traffic: ICMPv6 ND/RA/MLD, DHCP and DHCPv6 replies.
    Control = 3,
    /// Nobody inside asked for it: the traffic a fireplot shows.
    Unsolicited = 4,
    /// Could not be parsed: truncated headers, bad lengths, too many IPv6 extension headers.
    Malformed = 5,
    /// Not IPv4 or IPv6 (ARP, LLDP, ...).
    NonIp = 6,
}

impl Class {
    /// Number of classes, for counter layouts.
    pub const COUNT: usize = 7;
    /// All classes in counter order.
    pub const ALL: [Class; Class::COUNT] = [
        Class::Reply,
        Class::Related,
        Class::Service,
        Class::Control,
        Class::Unsolicited,
        Class::Malformed,
        Class::NonIp,
    ];

    /// The name used in JSON and on the command line.
    pub const fn name(self) -> &'static str {
        match self {
            Class::Reply => "reply",
            Class::Related => "related",
            Class::Service => "service",
            Class::Control => "control",
            Class::Unsolicited => "unsolicited",
            Class::Malformed => "malformed",
            Class::NonIp => "non_ip",
        }
    }

    /// The class with this numeric value, if any.
    pub const fn from_u8(v: u8) -> Option<Class> {
        if (v as usize) < Class::COUNT {
            Some(Class::ALL[v as usize])
        } else {
            None
        }
    }
}

/// `Event::pkt_flags` bit: the packet is a non-first IPv4/IPv6 fragment (no L4 header).
pub const PKT_FRAGMENT: u8 = 0x01;
/// `Event::pkt_flags` bit: the frame carried at least one VLAN tag.
pub const PKT_VLAN: u8 = 0x02;
/// `Event::pkt_flags` bit: the L4 header was cut short; ports and flags are zero.
pub const PKT_L4_TRUNCATED: u8 = 0x04;
/// `Event::pkt_flags` bit: the destination address never sent a packet out
/// since the sensor started (a dark address: nothing lives there, or it
/// never answered anyone).
pub const PKT_DARK_ADDR: u8 = 0x08;
/// `Event::pkt_flags` bit: the destination (address, protocol, port) never
/// answered anyone: no outbound SYN-ACK (TCP), datagram (UDP, UDP-Lite),
/// INIT-ACK (SCTP) or Response (DCCP) from it. Set for protocols with ports
/// only, and only when the address is live (`PKT_DARK_ADDR` is the stronger
/// statement).
pub const PKT_DARK_PORT: u8 = 0x10;
/// Record flag (userspace only, never set by the kernel on an event): the
/// record is an aggregate of many packets (`fireplot_common::agg`): its
/// source is the /24 or /48 they came from (none when the kernel's table
/// was full), its destination theirs, its count the packets, its length
/// their mean (bytes ≈ length × count).
pub const PKT_AGGREGATE: u8 = 0x20;
/// Record flag (userspace only): an aggregate whose packets all came from
/// one source; its `src` is that exact address, not a prefix.
pub const PKT_AGG_ONE_SOURCE: u8 = 0x40;
/// Record flag (userspace only): an aggregate of the coarse table, whose
/// `dst` is the /24 or /64 of its destinations (`agg::DST_PREFIX_V4`,
/// `agg::DST_PREFIX_V6`), not one address.
pub const PKT_AGG_DST_PREFIX: u8 = 0x80;

/// One inbound packet the classifier reported.
///
/// Addresses are 16 bytes in network order; IPv4 addresses use the first 4.
/// Ports are those of TCP, UDP, SCTP, UDP-Lite and DCCP
/// (`proto::has_ports`). For ICMP/ICMPv6, `sport` carries the echo
/// identifier (0 for other types) and `dport` is 0; type and code are in
/// their own fields. `icmp_type` is also the type byte of the two other
/// protocols that have one: SCTP's first chunk (`proto::SCTP_*`, an INIT
/// is a probe) and DCCP's packet type (`proto::DCCP_*`, a Request is one).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Event {
    /// `CLOCK_MONOTONIC` (bpf_ktime_get_ns) when the packet was seen.
    pub ts_ns: u64,
    pub src: [u8; 16],
    pub dst: [u8; 16],
    /// Interface the packet arrived on.
    pub ifindex: u32,
    /// First TCP sequence number (0 if not TCP), kept for tool fingerprints.
    pub tcp_seq: u32,
    /// Frame length in bytes as seen by XDP (from the Ethernet header on).
    pub pkt_len: u16,
    pub sport: u16,
    pub dport: u16,
    /// IPv4 identification (0 for IPv6).
    pub ip_id: u16,
    /// TCP window (0 if not TCP).
    pub tcp_window: u16,
    /// `FAMILY_V4`, `FAMILY_V6` or `FAMILY_NONE`.
    pub family: u8,
    /// IP protocol number (after IPv6 extension headers).
    pub proto: u8,
    pub tcp_flags: u8,
    /// IPv4 TTL or IPv6 hop limit.
    pub ttl: u8,
    /// A `Class` value.
    pub class: u8,
    /// `PKT_*` bits.
    pub pkt_flags: u8,
    /// ICMP/ICMPv6 type; SCTP: type of the first chunk; DCCP: packet type;
    /// 0 for other protocols.
    pub icmp_type: u8,
    /// ICMP/ICMPv6 code; 0 for other protocols.
    pub icmp_code: u8,
    pub _pad: [u8; 4],
}
assert_size!(Event, 72);

impl Event {
    /// An all-zero event, the starting point the kernel fills in.
    pub const fn zeroed() -> Event {
        Event {
            ts_ns: 0,
            src: [0; 16],
            dst: [0; 16],
            ifindex: 0,
            tcp_seq: 0,
            pkt_len: 0,
            sport: 0,
            dport: 0,
            ip_id: 0,
            tcp_window: 0,
            family: 0,
            proto: 0,
            tcp_flags: 0,
            ttl: 0,
            class: 0,
            pkt_flags: 0,
            icmp_type: 0,
            icmp_code: 0,
            _pad: [0; 4],
        }
    }
}

#[cfg(feature = "user")]
mod user {
    use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};

    use super::Event;
    use crate::proto::{FAMILY_V4, FAMILY_V6};

    // SAFETY: `Event` is `repr(C)`, has no implicit padding (size asserted)
    // and every bit pattern is valid.
    unsafe impl aya::Pod for Event {}

    impl Event {
        /// The source address, if the event is IPv4 or IPv6.
        pub fn src_addr(&self) -> Option<IpAddr> {
            addr(self.family, &self.src)
        }

        /// The destination address, if the event is IPv4 or IPv6.
        pub fn dst_addr(&self) -> Option<IpAddr> {
            addr(self.family, &self.dst)
        }

        /// Decodes an event from the bytes of one ring buffer record.
        pub fn from_bytes(bytes: &[u8]) -> Option<Event> {
            if bytes.len() < core::mem::size_of::<Event>() {
                return None;
            }
            // SAFETY: length checked above; `Event` is Pod, read_unaligned
            // copes with any alignment of the ring buffer record.
            Some(unsafe { core::ptr::read_unaligned(bytes.as_ptr().cast::<Event>()) })
        }
    }

    fn addr(family: u8, bytes: &[u8; 16]) -> Option<IpAddr> {
        match family {
            FAMILY_V4 => Some(IpAddr::V4(Ipv4Addr::new(
                bytes[0], bytes[1], bytes[2], bytes[3],
            ))),
            FAMILY_V6 => Some(IpAddr::V6(Ipv6Addr::from(*bytes))),
            _ => None,
        }
    }
}
