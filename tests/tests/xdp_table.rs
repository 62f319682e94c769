//! Table-driven BPF_PROG_TEST_RUN tests of the XDP classifier: each row is
//! a built frame, the expected action (always XDP_PASS), the expected
//! counter effect and the expected event. Flows are recorded by running
//! the real TC egress program over outbound frames first.

use std::{
    collections::BTreeMap,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

use aya::maps::{MapData, RingBuf};
use fireplot::{
    sensor::Service,
    sensor::{Limits, LoadOptions, Sensor, PROG_INGRESS},
};
use fireplot_common::{
    event::{Class, Event, PKT_DARK_ADDR, PKT_DARK_PORT, PKT_FRAGMENT, PKT_VLAN},
    proto::{
        has_ports, IPPROTO_DCCP, IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_SCTP, IPPROTO_TCP,
        IPPROTO_UDP, IPPROTO_UDPLITE,
    },
};
use fireplot_tests::{
    packets::{flags::*, *},
    pin_to_cpu, privileged,
};

const XDP_PASS: u32 = 2;
/// TC_ACT_UNSPEC as the u32 test_run returns.
const TC_NEXT: u32 = u32::MAX;

struct Harness {
    sensor: Sensor,
    ring: RingBuf<MapData>,
}

type ClassKey = (String, String, String);

fn class_map(s: &Sensor) -> (BTreeMap<ClassKey, u64>, BTreeMap<&'static str, u64>) {
    let c = s.counters().expect("read counters");
    let classes = c
        .classes
        .iter()
        .map(|c| {
            (
                (
                    c.class.to_string(),
                    c.family.to_string(),
                    c.proto.to_string(),
                ),
                c.packets,
            )
        })
        .collect();
    (classes, c.misc.iter().copied().collect())
}

/// What one frame changed.
struct Effect {
    action: u32,
    classes: BTreeMap<ClassKey, u64>,
    misc: BTreeMap<&'static str, u64>,
    events: Vec<Event>,
}

impl Harness {
    fn new(limits: Limits, services: &[Service], ring_bytes: u32) -> Harness {
        let mut sensor = Sensor::load(&LoadOptions {
            ring_bytes,
            ..LoadOptions::default()
        })
        .expect("load sensor (is the eBPF object built? `cargo xtask build`)");
        sensor.configure(&limits, services).expect("configure");
        let ring = sensor.take_events().expect("ring buffer");
        Harness { sensor, ring }
    }

    fn default() -> Harness {
        Harness::new(
            Limits::default(),
            &[Service::Tcp {
                first: 443,
                last: 443,
            }],
            1 << 20,
        )
    }

    fn egress(&mut self, frame: &[u8]) {
        let (rc, _) = self
            .sensor
            .test_run_egress(frame, 1)
            .expect("egress test_run");
        assert_eq!(rc, TC_NEXT, "egress must hand every packet on unchanged");
    }

    fn drain(&mut self) -> Vec<Event> {
        let mut out = Vec::new();
        while let Some(item) = self.ring.next() {
            out.push(Event::from_bytes(&item).expect("event record"));
        }
        out
    }

    fn ingress(&mut self, frame: &[u8]) -> Effect {
        self.drain();
        let (c0, m0) = class_map(&self.sensor);
        let (action, _) = self
            .sensor
            .test_run(PROG_INGRESS, frame, 1)
            .expect("xdp test_run");
        let (c1, m1) = class_map(&self.sensor);
        let classes = c1
            .iter()
            .filter_map(|(k, v)| {
                let d = v - c0.get(k).copied().unwrap_or(0);
                (d > 0).then(|| (k.clone(), d))
            })
            .collect();
        let misc = m1
            .iter()
            .filter_map(|(k, v)| {
                let d = v - m0.get(k).copied().unwrap_or(0);
                (d > 0).then_some((*k, d))
            })
            .collect();
        Effect {
            action,
            classes,
            misc,
            events: self.drain(),
        }
    }
}

/// Expected event fields.
#[derive(Clone, Debug)]
struct Expect {
    src: IpAddr,
    dst: IpAddr,
    proto: u8,
    sport: u16,
    dport: u16,
    tcp_flags: u8,
    /// ICMP type, SCTP chunk or DCCP packet type.
    icmp_type: u8,
    pkt_flags: u8,
}

struct Row {
    name: &'static str,
    frame: Vec<u8>,
    class: Class,
    family: &'static str,
    proto: &'static str,
    /// Some: exactly this event; None: no event.
    event: Option<Expect>,
    /// Misc counters that must move by one.
    misc: &'static [&'static str],
}

fn a4(o: [u8; 4]) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(o))
}
fn a6(o: [u8; 16]) -> IpAddr {
    IpAddr::V6(Ipv6Addr::from(o))
}

fn tcp(sport: u16, dport: u16, flags: u8) -> L4 {
    L4::Tcp {
        sport,
        dport,
        flags,
    }
}
fn udp(sport: u16, dport: u16) -> L4 {
    L4::Udp { sport, dport }
}
fn sctp(sport: u16, dport: u16, chunk: u8) -> L4 {
    L4::Sctp {
        sport,
        dport,
        chunk,
    }
}
fn dccp(sport: u16, dport: u16, ty: u8) -> L4 {
    L4::Dccp { sport, dport, ty }
}
fn udplite(sport: u16, dport: u16) -> L4 {
    L4::UdpLite { sport, dport }
}
/// SCTP chunk types and DCCP packet types the rows use.
const INIT: u8 = 1;
const INIT_ACK: u8 = 2;
const ABORT: u8 = 6;
const COOKIE_ECHO: u8 = 10;
const REQUEST: u8 = 0;
const RESPONSE: u8 = 1;
const RESET: u8 = 7;

fn icmp(ty: u8, code: u8, id: u16) -> L4 {
    let b = id.to_be_bytes();
    L4::Icmp {
        ty,
        code,
        rest: [b[0], b[1], 0, 1],
    }
}

fn ev4(src: [u8; 4], l4: L4) -> Option<Expect> {
    Some(expect(a4(src), a4(INSIDE_V4), l4))
}
fn ev6(src: [u8; 16], l4: L4) -> Option<Expect> {
    Some(expect(a6(src), a6(INSIDE_V6), l4))
}
fn expect(src: IpAddr, dst: IpAddr, l4: L4) -> Expect {
    let v6 = src.is_ipv6();
    let (proto, sport, dport, tcp_flags, icmp_type) = match l4 {
        L4::Tcp {
            sport,
            dport,
            flags,
        } => (IPPROTO_TCP, sport, dport, flags, 0),
        L4::Udp { sport, dport } => (IPPROTO_UDP, sport, dport, 0, 0),
        L4::Icmp { ty, rest, .. } => {
            let echo = matches!(ty, 0 | 8 | 128 | 129);
            let id = if echo {
                u16::from_be_bytes([rest[0], rest[1]])
            } else {
                0
            };
            (if v6 { IPPROTO_ICMPV6 } else { IPPROTO_ICMP }, id, 0, 0, ty)
        }
        L4::Sctp {
            sport,
            dport,
            chunk,
        } => (IPPROTO_SCTP, sport, dport, 0, chunk),
        L4::UdpLite { sport, dport } => (IPPROTO_UDPLITE, sport, dport, 0, 0),
        L4::Dccp { sport, dport, ty } => (IPPROTO_DCCP, sport, dport, 0, ty),
        L4::Raw { proto } => (proto, 0, 0, 0, 0),
    };
    Expect {
        src,
        dst,
        proto,
        sport,
        dport,
        tcp_flags,
        icmp_type,
        pkt_flags: 0,
    }
}

/// Outbound frames from the inside that the egress recorder turns into flows.
fn record_inside_flows(h: &mut Harness) {
    let eg4 = |l4| v4(INSIDE_V4, OUTSIDE_V4, l4);
    let eg6 = |l4| v6(INSIDE_V6, OUTSIDE_V6, l4);
    h.egress(&eg4(tcp(40000, 443, SYN)));
    h.egress(&eg4(udp(5000, 53)));
    h.egress(&eg4(icmp(8, 0, 0x1234)));
    h.egress(&eg4(tcp(22, 50000, SYN | ACK))); // the inside accepted a connection
    h.egress(&eg4(tcp(23, 60000, RST | ACK))); // answering a probe: no state
    h.egress(&eg4(L4::Raw { proto: 47 }));
    h.egress(&eg6(tcp(40000, 443, SYN)));
    h.egress(&eg6(udp(5000, 53)));
    h.egress(&eg6(icmp(128, 0, 0x4321)));
    // The other protocols with ports: an INIT, a UDP-Lite datagram and a
    // DCCP Request open flows; an INIT-ACK accepts an association; an
    // ABORT and a Reset answer a stranger (no state).
    h.egress(&eg4(sctp(5001, 2905, INIT)));
    h.egress(&eg4(sctp(2906, 40000, INIT_ACK)));
    h.egress(&eg4(sctp(36412, 60000, ABORT)));
    h.egress(&eg4(udplite(5002, 5004)));
    h.egress(&eg4(dccp(5003, 5001, REQUEST)));
    h.egress(&eg4(dccp(5005, 60000, RESET)));
    h.egress(&eg6(sctp(5001, 2905, INIT)));
    h.egress(&eg6(udplite(5002, 5004)));
    h.egress(&eg6(dccp(5003, 5001, REQUEST)));
}

fn rows() -> Vec<Row> {
    let r = |name, frame, class, family, proto, event| Row {
        name,
        frame,
        class,
        family,
        proto,
        event,
        misc: &[],
    };
    let quoted_udp_v4 = ip_part(&v4(INSIDE_V4, OUTSIDE_V4, udp(5000, 53)));
    let quoted_unknown_v4 = ip_part(&v4(INSIDE_V4, OTHER_V4, udp(5001, 53)));
    let quoted_tcp_v6 = ip_part(&v6(INSIDE_V6, OUTSIDE_V6, tcp(40000, 443, SYN)));
    let unreach = L4::Icmp {
        ty: 3,
        code: 3,
        rest: [0; 4],
    };
    let unreach6 = L4::Icmp {
        ty: 1,
        code: 4,
        rest: [0; 4],
    };
    let syn80 = tcp(55555, 80, SYN);
    let mut rows = vec![
        // --- replies and related (no events) ---
        r(
            "v4 syn-ack reply",
            v4(OUTSIDE_V4, INSIDE_V4, tcp(443, 40000, SYN | ACK)),
            Class::Reply,
            "ipv4",
            "tcp",
            None,
        ),
        r(
            "v4 ack reply",
            v4(OUTSIDE_V4, INSIDE_V4, tcp(443, 40000, ACK | PSH)),
            Class::Reply,
            "ipv4",
            "tcp",
            None,
        ),
        r(
            "v4 udp reply",
            v4(OUTSIDE_V4, INSIDE_V4, udp(53, 5000)),
            Class::Reply,
            "ipv4",
            "udp",
            None,
        ),
        r(
            "v4 echo reply",
            v4(OUTSIDE_V4, INSIDE_V4, icmp(0, 0, 0x1234)),
            Class::Reply,
            "ipv4",
            "icmp",
            None,
        ),
        r(
            "v4 gre reply",
            v4(OUTSIDE_V4, INSIDE_V4, L4::Raw { proto: 47 }),
            Class::Reply,
            "ipv4",
            "other",
            None,
        ),
        r(
            "v4 icmp error quoting an inside udp flow",
            v4_vlan(Vlan::None, OTHER_V4, INSIDE_V4, unreach, &quoted_udp_v4),
            Class::Related,
            "ipv4",
            "icmp",
            None,
        ),
        r(
            "v6 syn-ack reply",
            v6(OUTSIDE_V6, INSIDE_V6, tcp(443, 40000, SYN | ACK)),
            Class::Reply,
            "ipv6",
            "tcp",
            None,
        ),
        r(
            "v6 udp reply",
            v6(OUTSIDE_V6, INSIDE_V6, udp(53, 5000)),
            Class::Reply,
            "ipv6",
            "udp",
            None,
        ),
        r(
            "v6 echo reply",
            v6(OUTSIDE_V6, INSIDE_V6, icmp(129, 0, 0x4321)),
            Class::Reply,
            "ipv6",
            "icmpv6",
            None,
        ),
        r(
            "v6 icmp error quoting an inside tcp flow",
            v6_vlan(Vlan::None, OTHER_V6, INSIDE_V6, unreach6, &quoted_tcp_v6),
            Class::Related,
            "ipv6",
            "icmpv6",
            None,
        ),
        // --- services and control ---
        r(
            "v4 syn to published tcp/443",
            v4(OUTSIDE_V4, INSIDE_V4, tcp(50001, 443, SYN)),
            Class::Service,
            "ipv4",
            "tcp",
            None,
        ),
        r(
            "v4 ack on a connection the inside accepted",
            v4(OUTSIDE_V4, INSIDE_V4, tcp(50000, 22, ACK)),
            Class::Service,
            "ipv4",
            "tcp",
            None,
        ),
        r(
            "v6 syn to published tcp/443",
            v6(OUTSIDE_V6, INSIDE_V6, tcp(50001, 443, SYN)),
            Class::Service,
            "ipv6",
            "tcp",
            None,
        ),
        r(
            "v4 dhcp reply",
            v4(OUTSIDE_V4, INSIDE_V4, udp(67, 68)),
            Class::Control,
            "ipv4",
            "udp",
            None,
        ),
        r(
            "v6 dhcpv6 reply",
            v6(OUTSIDE_V6, INSIDE_V6, udp(547, 546)),
            Class::Control,
            "ipv6",
            "udp",
            None,
        ),
        r(
            "v6 neighbour solicitation",
            v6(OUTSIDE_V6, INSIDE_V6, icmp(135, 0, 0)),
            Class::Control,
            "ipv6",
            "icmpv6",
            None,
        ),
        r(
            "v6 router advertisement",
            v6(OUTSIDE_V6, INSIDE_V6, icmp(134, 0, 0)),
            Class::Control,
            "ipv6",
            "icmpv6",
            None,
        ),
        r("arp", arp(), Class::NonIp, "none", "other", None),
        // --- unsolicited (events) ---
        r(
            "v4 syn probe",
            v4(OUTSIDE_V4, INSIDE_V4, syn80),
            Class::Unsolicited,
            "ipv4",
            "tcp",
            ev4(OUTSIDE_V4, syn80),
        ),
        r(
            "v4 syn to the port the inside answered with RST",
            v4(OUTSIDE_V4, INSIDE_V4, tcp(60000, 23, SYN)),
            Class::Unsolicited,
            "ipv4",
            "tcp",
            ev4(OUTSIDE_V4, tcp(60000, 23, SYN)),
        ),
        r(
            "v4 ack from the scanner the inside answered with RST",
            v4(OUTSIDE_V4, INSIDE_V4, tcp(60000, 23, ACK)),
            Class::Unsolicited,
            "ipv4",
            "tcp",
            ev4(OUTSIDE_V4, tcp(60000, 23, ACK)),
        ),
        r(
            "v4 reply-shaped packet from a stranger",
            v4(OTHER_V4, INSIDE_V4, tcp(443, 40000, SYN | ACK)),
            Class::Unsolicited,
            "ipv4",
            "tcp",
            ev4(OTHER_V4, tcp(443, 40000, SYN | ACK)),
        ),
        r(
            "v4 udp probe",
            v4(OUTSIDE_V4, INSIDE_V4, udp(40001, 161)),
            Class::Unsolicited,
            "ipv4",
            "udp",
            ev4(OUTSIDE_V4, udp(40001, 161)),
        ),
        r(
            "v4 echo request",
            v4(OUTSIDE_V4, INSIDE_V4, icmp(8, 0, 7)),
            Class::Unsolicited,
            "ipv4",
            "icmp",
            ev4(OUTSIDE_V4, icmp(8, 0, 7)),
        ),
        r(
            "v4 echo reply nobody asked for",
            v4(OUTSIDE_V4, INSIDE_V4, icmp(0, 0, 0x9999)),
            Class::Unsolicited,
            "ipv4",
            "icmp",
            ev4(OUTSIDE_V4, icmp(0, 0, 0x9999)),
        ),
        r(
            "v4 icmp error quoting an unknown flow (backscatter)",
            v4_vlan(Vlan::None, OTHER_V4, INSIDE_V4, unreach, &quoted_unknown_v4),
            Class::Unsolicited,
            "ipv4",
            "icmp",
            Some(expect(a4(OTHER_V4), a4(INSIDE_V4), unreach)),
        ),
        r(
            "v4 gre from a stranger",
            v4(OTHER_V4, INSIDE_V4, L4::Raw { proto: 47 }),
            Class::Unsolicited,
            "ipv4",
            "other",
            ev4(OTHER_V4, L4::Raw { proto: 47 }),
        ),
        r(
            "v4 syn with ip options",
            v4_with_options(OUTSIDE_V4, INSIDE_V4, syn80, &[1, 1, 1, 0, 7, 7, 4, 0]),
            Class::Unsolicited,
            "ipv4",
            "tcp",
            ev4(OUTSIDE_V4, syn80),
        ),
        r(
            "v6 syn probe",
            v6(OUTSIDE_V6, INSIDE_V6, syn80),
            Class::Unsolicited,
            "ipv6",
            "tcp",
            ev6(OUTSIDE_V6, syn80),
        ),
        r(
            "v6 udp probe",
            v6(OUTSIDE_V6, INSIDE_V6, udp(40001, 53)),
            Class::Unsolicited,
            "ipv6",
            "udp",
            ev6(OUTSIDE_V6, udp(40001, 53)),
        ),
        r(
            "v6 echo request",
            v6(OUTSIDE_V6, INSIDE_V6, icmp(128, 0, 9)),
            Class::Unsolicited,
            "ipv6",
            "icmpv6",
            ev6(OUTSIDE_V6, icmp(128, 0, 9)),
        ),
        r(
            "v6 syn behind two extension headers",
            v6_with_ext(OUTSIDE_V6, INSIDE_V6, 2, syn80),
            Class::Unsolicited,
            "ipv6",
            "tcp",
            ev6(OUTSIDE_V6, syn80),
        ),
        r(
            "v6 raw protocol 253",
            v6(OTHER_V6, INSIDE_V6, L4::Raw { proto: 253 }),
            Class::Unsolicited,
            "ipv6",
            "other",
            ev6(OTHER_V6, L4::Raw { proto: 253 }),
        ),
    ];
    rows.extend(port_protocol_rows());
    // Every TCP flag mix a scanner uses, as an event with its flags.
    for (name, f) in [
        ("NULL", 0),
        ("FIN", FIN),
        ("Xmas", FIN | PSH | URG),
        ("Maimon", FIN | ACK),
        ("SYN|FIN", SYN | FIN),
        ("ACK", ACK),
        ("SYN|ECE|CWR", SYN | ECE | CWR),
        ("all flags", 0xff),
    ] {
        let l4 = tcp(33333, 8080, f);
        rows.push(Row {
            name: Box::leak(format!("v4 tcp flags {name}").into_boxed_str()),
            frame: v4(OUTSIDE_V4, INSIDE_V4, l4),
            class: Class::Unsolicited,
            family: "ipv4",
            proto: "tcp",
            event: ev4(OUTSIDE_V4, l4),
            misc: &[],
        });
    }
    // VLAN and QinQ.
    let mut vlan_ev = ev4(OUTSIDE_V4, syn80).unwrap();
    vlan_ev.pkt_flags = PKT_VLAN;
    rows.push(Row {
        name: "v4 syn in a vlan",
        frame: v4_vlan(Vlan::Single(100), OUTSIDE_V4, INSIDE_V4, syn80, &[]),
        class: Class::Unsolicited,
        family: "ipv4",
        proto: "tcp",
        event: Some(vlan_ev.clone()),
        misc: &[],
    });
    rows.push(Row {
        name: "v4 syn in qinq",
        frame: v4_vlan(Vlan::Double(200, 100), OUTSIDE_V4, INSIDE_V4, syn80, &[]),
        class: Class::Unsolicited,
        family: "ipv4",
        proto: "tcp",
        event: Some(vlan_ev),
        misc: &[],
    });
    rows.push(Row {
        name: "v4 udp reply in qinq",
        frame: v4_vlan(
            Vlan::Double(200, 100),
            OUTSIDE_V4,
            INSIDE_V4,
            udp(53, 5000),
            &[],
        ),
        class: Class::Reply,
        family: "ipv4",
        proto: "udp",
        event: None,
        misc: &[],
    });
    let mut v6vlan = ev6(OUTSIDE_V6, syn80).unwrap();
    v6vlan.pkt_flags = PKT_VLAN;
    rows.push(Row {
        name: "v6 syn in a vlan",
        frame: v6_vlan(Vlan::Single(7), OUTSIDE_V6, INSIDE_V6, syn80, &[]),
        class: Class::Unsolicited,
        family: "ipv6",
        proto: "tcp",
        event: Some(v6vlan),
        misc: &[],
    });
    // Fragments: classified by addresses and protocol only.
    rows.push(Row {
        name: "v4 non-first fragment of an inside udp flow",
        frame: v4_fragment(OUTSIDE_V4, INSIDE_V4, IPPROTO_UDP),
        class: Class::Reply,
        family: "ipv4",
        proto: "udp",
        event: None,
        misc: &["fragments"],
    });
    let mut frag = expect(a4(OTHER_V4), a4(INSIDE_V4), L4::Raw { proto: IPPROTO_UDP });
    frag.pkt_flags = PKT_FRAGMENT;
    rows.push(Row {
        name: "v4 non-first fragment from a stranger",
        frame: v4_fragment(OTHER_V4, INSIDE_V4, IPPROTO_UDP),
        class: Class::Unsolicited,
        family: "ipv4",
        proto: "udp",
        event: Some(frag),
        misc: &["fragments"],
    });
    rows.push(Row {
        name: "v6 non-first fragment of an inside udp flow",
        frame: v6_fragment(OUTSIDE_V6, INSIDE_V6, IPPROTO_UDP),
        class: Class::Reply,
        family: "ipv6",
        proto: "udp",
        event: None,
        misc: &["fragments"],
    });
    let mut frag6 = expect(a6(OTHER_V6), a6(INSIDE_V6), L4::Raw { proto: IPPROTO_UDP });
    frag6.pkt_flags = PKT_FRAGMENT;
    rows.push(Row {
        name: "v6 non-first fragment from a stranger",
        frame: v6_fragment(OTHER_V6, INSIDE_V6, IPPROTO_UDP),
        class: Class::Unsolicited,
        family: "ipv6",
        proto: "udp",
        event: Some(frag6),
        misc: &["fragments"],
    });
    // A large frame is parsed like any other.
    let big = v4_vlan(Vlan::None, OUTSIDE_V4, INSIDE_V4, syn80, &[0x5a; 3000]);
    rows.push(r(
        "v4 3 KB syn",
        big,
        Class::Unsolicited,
        "ipv4",
        "tcp",
        ev4(OUTSIDE_V4, syn80),
    ));
    rows
}

/// Rows of SCTP, UDP-Lite and DCCP: ports (and SCTP's chunk, DCCP's
/// type) in events, replies to the flows `record_inside_flows` opened.
fn port_protocol_rows() -> Vec<Row> {
    let r = |name, frame, class, family, proto, event| Row {
        name,
        frame,
        class,
        family,
        proto,
        event,
        misc: &[],
    };
    let quoted_sctp_v4 = ip_part(&v4(INSIDE_V4, OUTSIDE_V4, sctp(5001, 2905, INIT)));
    let unreach = L4::Icmp {
        ty: 3,
        code: 3,
        rest: [0; 4],
    };
    let (init4, init6) = (sctp(40000, 2905, INIT), sctp(40001, 38412, INIT));
    vec![
        // --- replies and services (no events) ---
        r(
            "v4 sctp init-ack reply",
            v4(OUTSIDE_V4, INSIDE_V4, sctp(2905, 5001, INIT_ACK)),
            Class::Reply,
            "ipv4",
            "sctp",
            None,
        ),
        r(
            "v4 sctp abort reply",
            v4(OUTSIDE_V4, INSIDE_V4, sctp(2905, 5001, ABORT)),
            Class::Reply,
            "ipv4",
            "sctp",
            None,
        ),
        r(
            "v6 sctp init-ack reply",
            v6(OUTSIDE_V6, INSIDE_V6, sctp(2905, 5001, INIT_ACK)),
            Class::Reply,
            "ipv6",
            "sctp",
            None,
        ),
        r(
            "v4 sctp cookie-echo on an association the inside accepted",
            v4(OUTSIDE_V4, INSIDE_V4, sctp(40000, 2906, COOKIE_ECHO)),
            Class::Service,
            "ipv4",
            "sctp",
            None,
        ),
        r(
            "v4 icmp error quoting an inside sctp flow",
            v4_vlan(Vlan::None, OTHER_V4, INSIDE_V4, unreach, &quoted_sctp_v4),
            Class::Related,
            "ipv4",
            "icmp",
            None,
        ),
        r(
            "v4 udplite reply",
            v4(OUTSIDE_V4, INSIDE_V4, udplite(5004, 5002)),
            Class::Reply,
            "ipv4",
            "udplite",
            None,
        ),
        r(
            "v6 udplite reply",
            v6(OUTSIDE_V6, INSIDE_V6, udplite(5004, 5002)),
            Class::Reply,
            "ipv6",
            "udplite",
            None,
        ),
        r(
            "v4 dccp response reply",
            v4(OUTSIDE_V4, INSIDE_V4, dccp(5001, 5003, RESPONSE)),
            Class::Reply,
            "ipv4",
            "dccp",
            None,
        ),
        r(
            "v6 dccp response reply",
            v6(OUTSIDE_V6, INSIDE_V6, dccp(5001, 5003, RESPONSE)),
            Class::Reply,
            "ipv6",
            "dccp",
            None,
        ),
        // --- unsolicited (events) ---
        r(
            "v4 sctp init probe",
            v4(OUTSIDE_V4, INSIDE_V4, init4),
            Class::Unsolicited,
            "ipv4",
            "sctp",
            ev4(OUTSIDE_V4, init4),
        ),
        r(
            "v6 sctp init probe",
            v6(OUTSIDE_V6, INSIDE_V6, init6),
            Class::Unsolicited,
            "ipv6",
            "sctp",
            ev6(OUTSIDE_V6, init6),
        ),
        r(
            "v4 sctp init reusing the ports of an inside flow",
            v4(OUTSIDE_V4, INSIDE_V4, sctp(2905, 5001, INIT)),
            Class::Unsolicited,
            "ipv4",
            "sctp",
            ev4(OUTSIDE_V4, sctp(2905, 5001, INIT)),
        ),
        r(
            "v4 sctp cookie-echo from the scanner the inside answered with ABORT",
            v4(OUTSIDE_V4, INSIDE_V4, sctp(60000, 36412, COOKIE_ECHO)),
            Class::Unsolicited,
            "ipv4",
            "sctp",
            ev4(OUTSIDE_V4, sctp(60000, 36412, COOKIE_ECHO)),
        ),
        r(
            "v4 sctp abort from a stranger (backscatter)",
            v4(OTHER_V4, INSIDE_V4, sctp(2905, 5001, ABORT)),
            Class::Unsolicited,
            "ipv4",
            "sctp",
            ev4(OTHER_V4, sctp(2905, 5001, ABORT)),
        ),
        r(
            "v4 udplite probe",
            v4(OUTSIDE_V4, INSIDE_V4, udplite(40002, 5004)),
            Class::Unsolicited,
            "ipv4",
            "udplite",
            ev4(OUTSIDE_V4, udplite(40002, 5004)),
        ),
        r(
            "v6 udplite probe",
            v6(OUTSIDE_V6, INSIDE_V6, udplite(40002, 5004)),
            Class::Unsolicited,
            "ipv6",
            "udplite",
            ev6(OUTSIDE_V6, udplite(40002, 5004)),
        ),
        r(
            "v4 dccp request probe",
            v4(OUTSIDE_V4, INSIDE_V4, dccp(40003, 5001, REQUEST)),
            Class::Unsolicited,
            "ipv4",
            "dccp",
            ev4(OUTSIDE_V4, dccp(40003, 5001, REQUEST)),
        ),
        r(
            "v6 dccp request probe",
            v6(OUTSIDE_V6, INSIDE_V6, dccp(40003, 5001, REQUEST)),
            Class::Unsolicited,
            "ipv6",
            "dccp",
            ev6(OUTSIDE_V6, dccp(40003, 5001, REQUEST)),
        ),
        r(
            "v4 dccp data from the stranger the inside answered with Reset",
            v4(OUTSIDE_V4, INSIDE_V4, dccp(60000, 5005, 2)),
            Class::Unsolicited,
            "ipv4",
            "dccp",
            ev4(OUTSIDE_V4, dccp(60000, 5005, 2)),
        ),
    ]
}

/// The dark bits an event of the table carries after `record_inside_flows`:
/// both inside addresses sent packets out; only TCP/22 (v4, a SYN-ACK),
/// SCTP/2906 (v4, an INIT-ACK), UDP/5000 (both families, a datagram) and
/// UDP-Lite/5002 (both families) answered. An inside SYN (TCP/40000), INIT
/// or DCCP Request does not make its port a server.
fn table_dark(x: &Expect) -> u8 {
    let inside = x.dst == a4(INSIDE_V4) || x.dst == a6(INSIDE_V6);
    if !inside {
        return PKT_DARK_ADDR;
    }
    if !has_ports(x.proto) || x.pkt_flags & PKT_FRAGMENT != 0 {
        return 0;
    }
    let served = match (x.proto, x.dport) {
        (IPPROTO_TCP, 22) | (IPPROTO_SCTP, 2906) => x.dst.is_ipv4(),
        (IPPROTO_UDP, 5000) | (IPPROTO_UDPLITE, 5002) => true,
        _ => false,
    };
    if served {
        0
    } else {
        PKT_DARK_PORT
    }
}

fn check_row(h: &mut Harness, row: &Row) {
    let e = h.ingress(&row.frame);
    let name = row.name;
    assert_eq!(
        e.action, XDP_PASS,
        "{name}: monitor mode must pass every packet"
    );
    let want: BTreeMap<ClassKey, u64> = [(
        (
            row.class.name().to_string(),
            row.family.to_string(),
            row.proto.to_string(),
        ),
        1,
    )]
    .into();
    assert_eq!(e.classes, want, "{name}: class counters");
    for m in row.misc {
        assert_eq!(
            e.misc.get(m).copied(),
            Some(1),
            "{name}: counter {m} must move by one: {:?}",
            e.misc
        );
    }
    match &row.event {
        None => {
            assert!(
                e.events.is_empty(),
                "{name}: no event expected, got {:?}",
                e.events
            );
            assert!(
                !e.misc.contains_key("events_sent"),
                "{name}: events_sent moved"
            );
        }
        Some(x) => {
            assert_eq!(e.events.len(), 1, "{name}: exactly one event");
            assert_eq!(
                e.misc.get("events_sent").copied(),
                Some(1),
                "{name}: events_sent"
            );
            let ev = &e.events[0];
            assert_eq!(ev.src_addr(), Some(x.src), "{name}: src");
            assert_eq!(ev.dst_addr(), Some(x.dst), "{name}: dst");
            assert_eq!(ev.proto, x.proto, "{name}: proto");
            assert_eq!(ev.sport, x.sport, "{name}: sport");
            assert_eq!(ev.dport, x.dport, "{name}: dport");
            assert_eq!(ev.tcp_flags, x.tcp_flags, "{name}: tcp flags");
            assert_eq!(ev.icmp_type, x.icmp_type, "{name}: icmp type");
            assert_eq!(
                ev.pkt_flags,
                x.pkt_flags | table_dark(x),
                "{name}: packet flags"
            );
            assert_eq!(ev.class, Class::Unsolicited as u8, "{name}: class");
            assert_eq!(ev.ttl, 64, "{name}: ttl");
            assert_eq!(ev.pkt_len as usize, row.frame.len(), "{name}: length");
            assert!(ev.ts_ns > 0, "{name}: timestamp");
            if ev.proto == IPPROTO_TCP && ev.pkt_flags & PKT_FRAGMENT == 0 {
                assert_eq!(ev.tcp_seq, 0x1234_5678, "{name}: seq");
                assert_eq!(ev.tcp_window, 1024, "{name}: window");
            }
        }
    }
}

#[test]
fn classification_table() {
    if !privileged("classification_table") {
        return;
    }
    let mut h = Harness::default();
    record_inside_flows(&mut h);
    let rows = rows();
    assert!(rows.len() >= 40, "table has {} rows", rows.len());
    for row in &rows {
        check_row(&mut h, row);
    }
}

/// What `dark` means, step by step: an address that never sent anything is
/// dark; once it answers (even with a RST or an ICMP error) only its
/// unanswered ports are; a SYN-ACK or a datagram from a port lights that
/// port. With marking off, nothing is marked.
#[test]
fn dark_targets_are_marked() {
    if !privileged("dark_targets_are_marked") {
        return;
    }
    for six in [false, true] {
        let fam = if six { "v6" } else { "v4" };
        let mut h = Harness::new(Limits::default(), &[], 1 << 20);
        let inbound = |l4| {
            if six {
                v6(OUTSIDE_V6, INSIDE_V6, l4)
            } else {
                v4(OUTSIDE_V4, INSIDE_V4, l4)
            }
        };
        let outbound = |l4| {
            if six {
                v6(INSIDE_V6, OUTSIDE_V6, l4)
            } else {
                v4(INSIDE_V4, OUTSIDE_V4, l4)
            }
        };
        let flags_of = |h: &mut Harness, l4: L4| -> u8 {
            let e = h.ingress(&inbound(l4));
            assert_eq!(e.events.len(), 1, "{fam}: one event");
            e.events[0].pkt_flags & (PKT_DARK_ADDR | PKT_DARK_PORT)
        };
        let syn80 = || tcp(50000, 80, SYN);
        let udp161 = || udp(50001, 161);
        assert_eq!(
            flags_of(&mut h, syn80()),
            PKT_DARK_ADDR,
            "{fam}: silent host"
        );
        let echo = if six { icmp(128, 0, 9) } else { icmp(8, 0, 9) };
        assert_eq!(
            flags_of(&mut h, echo),
            PKT_DARK_ADDR,
            "{fam}: ping to a silent host"
        );
        // The host answers the SYN with a RST: alive, port 80 still dark.
        h.egress(&outbound(tcp(80, 50000, RST | ACK)));
        assert_eq!(
            flags_of(&mut h, syn80()),
            PKT_DARK_PORT,
            "{fam}: closed port"
        );
        assert_eq!(
            flags_of(&mut h, udp161()),
            PKT_DARK_PORT,
            "{fam}: closed udp port"
        );
        assert_eq!(
            flags_of(&mut h, echo),
            0,
            "{fam}: ping to a live host: no port to be dark"
        );
        // A SYN-ACK from port 80 and a datagram from 161: both answer.
        h.egress(&outbound(tcp(80, 50002, SYN | ACK)));
        h.egress(&outbound(udp(161, 50001)));
        assert_eq!(
            flags_of(&mut h, tcp(50003, 80, SYN)),
            0,
            "{fam}: served tcp port"
        );
        assert_eq!(
            flags_of(&mut h, udp(50004, 161)),
            0,
            "{fam}: served udp port"
        );
        // An inside client's SYN does not make its source port a server.
        h.egress(&outbound(tcp(40000, 443, SYN)));
        assert_eq!(
            flags_of(&mut h, tcp(50005, 40000, SYN)),
            PKT_DARK_PORT,
            "{fam}: a client port is not served"
        );
    }
    // An ICMP error (port unreachable) from a silent host makes it live.
    let mut h = Harness::new(Limits::default(), &[], 1 << 20);
    let quoted = ip_part(&v4(OUTSIDE_V4, INSIDE_V4, udp(50001, 9)));
    let unreach = L4::Icmp {
        ty: 3,
        code: 3,
        rest: [0; 4],
    };
    h.egress(&v4_vlan(
        Vlan::None,
        INSIDE_V4,
        OUTSIDE_V4,
        unreach,
        &quoted,
    ));
    let e = h.ingress(&v4(OUTSIDE_V4, INSIDE_V4, udp(50001, 9)));
    assert_eq!(
        e.events[0].pkt_flags, PKT_DARK_PORT,
        "host that sent an ICMP error"
    );
    // Marking off: no bits, whatever the tables hold.
    let limits = Limits {
        mark_dark: false,
        ..Limits::default()
    };
    let mut h = Harness::new(limits, &[], 1 << 20);
    let e = h.ingress(&v4(OUTSIDE_V4, INSIDE_V4, tcp(1, 80, SYN)));
    assert_eq!(e.events[0].pkt_flags, 0, "marking off");
}

/// Truncated, inconsistent and oversized headers: counted as malformed,
/// passed, and reported as events when malformed events are on.
#[test]
fn malformed_corpus() {
    if !privileged("malformed_corpus") {
        return;
    }
    let limits = Limits {
        emit_malformed: true,
        ..Limits::default()
    };
    let mut h = Harness::new(limits, &[], 1 << 20);
    let syn4 = v4(OUTSIDE_V4, INSIDE_V4, tcp(1234, 80, SYN));
    let syn6 = v6(OUTSIDE_V6, INSIDE_V6, tcp(1234, 80, SYN));
    let udp6 = v6(OUTSIDE_V6, INSIDE_V6, udp(1234, 53));
    let qinq = v4_vlan(
        Vlan::Double(1, 2),
        OUTSIDE_V4,
        INSIDE_V4,
        tcp(1, 2, SYN),
        &[],
    );
    let mut corpus: Vec<(String, Vec<u8>, &str)> = Vec::new();
    // Truncated at every header boundary (and inside each header).
    for cut in [14, 24, 34, 40, 53] {
        corpus.push((format!("v4 syn cut at {cut}"), syn4[..cut].to_vec(), "ipv4"));
    }
    for cut in [14, 30, 54, 60, 73] {
        corpus.push((format!("v6 syn cut at {cut}"), syn6[..cut].to_vec(), "ipv6"));
    }
    corpus.push(("v6 udp cut at 61".into(), udp6[..61].to_vec(), "ipv6"));
    for cut in [16, 20] {
        corpus.push((format!("qinq cut at {cut}"), qinq[..cut].to_vec(), "none"));
    }
    // IP total length consistent but no room for the TCP header.
    let mut no_l4 = syn4[..34].to_vec();
    no_l4[16..18].copy_from_slice(&20u16.to_be_bytes());
    patch_v4(&mut no_l4, 2, 0);
    corpus.push(("v4 tcp without its header".into(), no_l4, "ipv4"));
    // SCTP, UDP-Lite and DCCP headers shorter than what is read of them,
    // inside consistent IP lengths.
    for (name, l4, keep) in [
        ("v4 sctp without its chunk header", sctp(1, 2, INIT), 12),
        ("v4 sctp cut inside its chunk header", sctp(1, 2, INIT), 15),
        (
            "v4 dccp cut inside its generic header",
            dccp(1, 2, REQUEST),
            11,
        ),
        ("v4 udplite cut inside its header", udplite(1, 2), 7),
    ] {
        let mut f = v4(OUTSIDE_V4, INSIDE_V4, l4)[..34 + keep].to_vec();
        f[16..18].copy_from_slice(&(20 + keep as u16).to_be_bytes());
        patch_v4(&mut f, 2, 0);
        corpus.push((name.into(), f, "ipv4"));
    }
    let mut sctp6 = v6(OUTSIDE_V6, INSIDE_V6, sctp(1, 2, INIT))[..54 + 13].to_vec();
    sctp6[18..20].copy_from_slice(&13u16.to_be_bytes());
    corpus.push(("v6 sctp cut inside its chunk header".into(), sctp6, "ipv6"));
    let mut ihl4 = syn4.clone();
    patch_v4(&mut ihl4, 0, 0x44);
    corpus.push(("v4 ihl 4".into(), ihl4, "ipv4"));
    let mut ihl0 = syn4.clone();
    patch_v4(&mut ihl0, 0, 0x40);
    corpus.push(("v4 ihl 0".into(), ihl0, "ipv4"));
    let mut ihl_past = syn4.clone();
    patch_v4(&mut ihl_past, 0, 0x4f);
    ihl_past.truncate(14 + 40);
    ihl_past[16..18].copy_from_slice(&40u16.to_be_bytes());
    corpus.push(("v4 ihl past the end".into(), ihl_past, "ipv4"));
    let mut long_total = syn4.clone();
    long_total[16..18].copy_from_slice(&1500u16.to_be_bytes());
    corpus.push(("v4 total length past the frame".into(), long_total, "ipv4"));
    let mut wrong_version = syn4.clone();
    patch_v4(&mut wrong_version, 0, 0x65);
    corpus.push((
        "version 6 in an ipv4 ethertype".into(),
        wrong_version,
        "ipv4",
    ));
    let mut jumbo = syn6.clone();
    jumbo[18..20].copy_from_slice(&0u16.to_be_bytes());
    corpus.push(("v6 jumbogram (payload length 0)".into(), jumbo, "ipv6"));
    let mut v6_long = syn6.clone();
    v6_long[18..20].copy_from_slice(&4000u16.to_be_bytes());
    corpus.push(("v6 payload length past the frame".into(), v6_long, "ipv6"));
    corpus.push((
        "v6 extension chain past the bound".into(),
        v6_with_ext(OUTSIDE_V6, INSIDE_V6, 9, tcp(1, 2, SYN)),
        "ipv6",
    ));
    let mut triple = qinq.clone();
    triple.splice(20..20, [0x81, 0x00, 0x00, 0x03]);
    corpus.push(("three vlan tags".into(), triple, "none"));

    for (name, frame, family) in &corpus {
        let e = h.ingress(frame);
        assert_eq!(e.action, XDP_PASS, "{name}: must pass");
        let malformed: u64 = e
            .classes
            .iter()
            .filter(|(k, _)| k.0 == "malformed" && k.1 == *family)
            .map(|(_, v)| v)
            .sum();
        assert_eq!(
            malformed, 1,
            "{name}: one malformed {family} packet, got {:?}",
            e.classes
        );
        assert_eq!(
            e.classes.values().sum::<u64>(),
            1,
            "{name}: nothing else counted"
        );
        assert_eq!(e.events.len(), 1, "{name}: one malformed event");
        assert_eq!(
            e.events[0].class,
            Class::Malformed as u8,
            "{name}: event class"
        );
        if name.contains("extension chain") {
            assert_eq!(
                e.misc.get("ext_header_overflow").copied(),
                Some(1),
                "{name}: overflow counter"
            );
        }
    }
    // Frames shorter than Ethernet never reach XDP: the kernel refuses them
    // and nothing is counted.
    let before = class_map(&h.sensor).0;
    for len in [0usize, 13] {
        assert!(
            h.sensor.test_run(PROG_INGRESS, &syn4[..len], 1).is_err(),
            "a {len}-byte frame must be refused by BPF_PROG_TEST_RUN"
        );
    }
    assert_eq!(
        class_map(&h.sensor).0,
        before,
        "refused frames change no counter"
    );
}

/// Malformed packets are counted but send no event unless asked to.
#[test]
fn malformed_events_are_off_by_default() {
    if !privileged("malformed_events_are_off_by_default") {
        return;
    }
    let mut h = Harness::new(Limits::default(), &[], 1 << 20);
    let syn4 = v4(OUTSIDE_V4, INSIDE_V4, tcp(1234, 80, SYN));
    let e = h.ingress(&syn4[..30]);
    assert_eq!(e.action, XDP_PASS);
    assert_eq!(
        e.classes
            .get(&("malformed".into(), "ipv4".into(), "other".into()))
            .copied(),
        Some(1)
    );
    assert!(e.events.is_empty());
}

/// The per-source limiter holds back a flooding source and counts it,
/// while a second source keeps its events. The budget is split across the
/// CPUs: pinned to one CPU, a source gets exactly that CPU's share.
#[test]
fn rate_limit_is_per_source_and_counted() {
    if !privileged("rate_limit_is_per_source_and_counted") {
        return;
    }
    pin_to_cpu(0);
    let cpus = fireplot::sensor::online_cpus().expect("online CPUs");
    let per_cpu_burst = 5u64;
    let limits = Limits {
        rate_limit: 1,
        // Two CPUs of 5 plus a remainder that rounds away: never more than the flag.
        rate_burst: (per_cpu_burst * cpus as u64 + (cpus as u64 - 1)) as u32,
        ..Limits::default()
    };
    let share = limits.cpu_share(cpus).expect("limiter on");
    assert_eq!(share.burst, per_cpu_burst, "each CPU holds ⌊burst / CPUs⌋");
    let mut h = Harness::new(limits, &[], 1 << 20);
    let flood = v4(OUTSIDE_V4, INSIDE_V4, tcp(1000, 80, SYN));
    let (rc, _) = h.sensor.test_run(PROG_INGRESS, &flood, 100).expect("flood");
    assert_eq!(rc, XDP_PASS);
    let flood_events = h.drain();
    let c = h.sensor.counters().unwrap();
    assert_eq!(
        flood_events.len() as u64,
        per_cpu_burst,
        "one CPU's share of the burst passes"
    );
    assert_eq!(
        c.misc(fireplot_common::counters::Misc::Suppressed),
        100 - per_cpu_burst,
        "the rest is counted as suppressed"
    );
    assert_eq!(
        c.per_cpu.iter().map(|p| p.cpu).collect::<Vec<_>>(),
        vec![0],
        "everything ran on the pinned CPU"
    );
    assert_eq!(
        c.class_total(Class::Unsolicited),
        100,
        "every probe is still counted"
    );
    let other = v4(OTHER_V4, INSIDE_V4, tcp(1000, 80, SYN));
    let (rc, _) = h
        .sensor
        .test_run(PROG_INGRESS, &other, 3)
        .expect("second source");
    assert_eq!(rc, XDP_PASS);
    let events = h.drain();
    assert_eq!(
        events.len(),
        3,
        "a second source is not held back by the first"
    );
    assert!(events.iter().all(|e| e.src_addr() == Some(a4(OTHER_V4))));
    if cpus > 1 {
        // The same source on another CPU gets that CPU's share, no more:
        // over the sensor it has had the whole burst.
        pin_to_cpu(1);
        let (rc, _) = h.sensor.test_run(PROG_INGRESS, &flood, 100).expect("flood");
        assert_eq!(rc, XDP_PASS);
        assert_eq!(h.drain().len() as u64, per_cpu_burst, "CPU 1's share");
        pin_to_cpu(0);
    }
}

/// A full ring buffer loses events, and every lost one is counted.
#[test]
fn ring_full_is_counted() {
    if !privileged("ring_full_is_counted") {
        return;
    }
    let limits = Limits {
        rate_limit: 0,
        ..Limits::default()
    };
    let page = 4096;
    let mut h = Harness::new(limits, &[], page);
    let frame = v4(OUTSIDE_V4, INSIDE_V4, tcp(1000, 80, SYN));
    let (rc, _) = h.sensor.test_run(PROG_INGRESS, &frame, 200).expect("run");
    assert_eq!(rc, XDP_PASS);
    let received = h.drain().len() as u64;
    let c = h.sensor.counters().unwrap();
    use fireplot_common::counters::Misc;
    assert!(
        c.misc(Misc::RingFull) > 0,
        "a 4 KiB ring cannot hold 200 events"
    );
    assert_eq!(
        c.misc(Misc::EventsSent),
        received,
        "userspace got every event the kernel sent"
    );
    assert_eq!(
        c.misc(Misc::EventsSent) + c.misc(Misc::RingFull),
        200,
        "sent + lost = probes"
    );
}

/// Flows time out: a reply after the idle timeout is unsolicited again.
#[test]
fn flows_expire_after_their_timeout() {
    if !privileged("flows_expire_after_their_timeout") {
        return;
    }
    let limits = Limits {
        udp_timeout_s: 1,
        ..Limits::default()
    };
    let mut h = Harness::new(limits, &[], 1 << 20);
    h.egress(&v4(INSIDE_V4, OUTSIDE_V4, udp(7000, 53)));
    let reply = v4(OUTSIDE_V4, INSIDE_V4, udp(53, 7000));
    let e = h.ingress(&reply);
    assert_eq!(e.classes.keys().next().map(|k| k.0.as_str()), Some("reply"));
    std::thread::sleep(std::time::Duration::from_millis(2500));
    let e = h.ingress(&reply);
    assert_eq!(
        e.classes.keys().next().map(|k| k.0.as_str()),
        Some("unsolicited"),
        "expired flow"
    );
    assert_eq!(e.events.len(), 1);
}

/// Every unsolicited packet is in exactly one of: an event, an aggregate,
/// or a counted loss; and the counters say so.
fn assert_accounted(h: &mut Harness, frames: u64, events: u64, aggregated: u64) {
    use fireplot_common::counters::Misc;
    let c = h.sensor.counters().unwrap();
    assert_eq!(c.misc(Misc::EventsSent), events, "events the kernel sent");
    assert_eq!(
        c.misc(Misc::Aggregated),
        aggregated,
        "packets in the aggregates userspace took"
    );
    assert_eq!(
        events + aggregated + c.misc(Misc::AggLost),
        frames,
        "event + aggregate + counted loss = frames"
    );
    assert_eq!(
        c.misc(Misc::Suppressed)
            + c.misc(Misc::TargetLimited)
            + c.misc(Misc::OverBudget)
            + c.misc(Misc::RingFull),
        aggregated + c.misc(Misc::AggLost),
        "each packet not sent has one reason"
    );
    assert_eq!(c.class_total(Class::Unsolicited), frames);
}

/// Runs `frame` through XDP `n` times with the kernel's clocks stopped at
/// one instant (the replay clock): limiter refills and second boundaries
/// cannot depend on how fast the machine runs the test.
fn frozen(h: &mut Harness, frame: &[u8], n: u32) {
    const AT_NS: u64 = 1_800_000_000_250_000_000;
    for _ in 0..n {
        let rc = h.sensor.replay_frame(false, frame, AT_NS).unwrap();
        assert_eq!(rc, XDP_PASS, "monitor mode passes everything");
    }
}

fn take_aggs(
    h: &mut Harness,
) -> Vec<(fireplot_common::agg::AggKey, fireplot_common::agg::AggValue)> {
    h.sensor.take_aggregates(None).expect("aggregates")
}

/// Past the event budget, a burst is aggregated per source /24, port and
/// second; past the ring's room too. Nothing is lost.
#[test]
fn a_burst_past_the_budget_or_the_ring_is_aggregated() {
    if !privileged("a_burst_past_the_budget_or_the_ring_is_aggregated") {
        return;
    }
    use fireplot_common::{agg::PREFIX_V4, counters::Misc};
    pin_to_cpu(0);
    let cpus = fireplot::sensor::online_cpus().expect("online CPUs");
    let per_cpu = 20u64;
    let limits = Limits {
        rate_limit: 0,
        target_limit: 0,
        // One second's worth of burst: this CPU holds `per_cpu` events.
        event_budget: (per_cpu * cpus as u64) as u32,
        ..Limits::default()
    };
    let mut h = Harness::new(limits, &[], 1 << 20);
    let frame = v4(OUTSIDE_V4, INSIDE_V4, tcp(1000, 80, SYN));
    frozen(&mut h, &frame, 1000);
    let events = h.drain();
    assert_eq!(events.len() as u64, per_cpu, "the budget's burst passes");
    let aggs = take_aggs(&mut h);
    let packets: u64 = aggs.iter().map(|(_, v)| v.packets).sum();
    assert_eq!(packets, 1000 - per_cpu, "the rest is in aggregates");
    for (k, v) in &aggs {
        assert_eq!(k.prefix, PREFIX_V4);
        assert_eq!(k.dport, 80);
        assert_eq!(k.proto, IPPROTO_TCP);
        assert_eq!(k.class, Class::Unsolicited as u8);
        assert_eq!(k.src[0].to_le_bytes()[..4], [198, 18, 0, 0], "the /24");
        assert_eq!(v.tcp_flags, SYN);
        assert_eq!(v.bytes, v.packets * frame.len() as u64);
        assert_eq!(
            (v.mixed, v.src[0].to_le_bytes()[..4].to_vec()),
            (0, OUTSIDE_V4.to_vec()),
            "one source, named"
        );
    }
    assert_eq!(aggs.len(), 1, "one entry: one /24, port and second");
    assert_accounted(&mut h, 1000, per_cpu, 1000 - per_cpu);
    let c = h.sensor.counters().unwrap();
    assert_eq!(c.misc(Misc::OverBudget), 1000 - per_cpu);
    assert!(take_aggs(&mut h).is_empty(), "taken once");

    // A ring of one page holds ~50 events: the rest of a burst is aggregated.
    let limits = Limits {
        rate_limit: 0,
        target_limit: 0,
        event_budget: 0,
        ..Limits::default()
    };
    let mut h = Harness::new(limits, &[], 4096);
    let (rc, _) = h.sensor.test_run(PROG_INGRESS, &frame, 300).unwrap();
    assert_eq!(rc, XDP_PASS);
    let sent = h.drain().len() as u64;
    let c = h.sensor.counters().unwrap();
    assert!(c.misc(Misc::RingFull) > 0, "a 4 KiB ring cannot hold 300");
    let packets: u64 = take_aggs(&mut h).iter().map(|(_, v)| v.packets).sum();
    assert_eq!(packets, c.misc(Misc::RingFull));
    assert_accounted(&mut h, 300, sent, 300 - sent);
}

/// A spoofed flood on one target port from many /24s is aggregated past
/// the target limit, while a scan of other ports from another source stays
/// events, every one.
#[test]
fn a_flood_on_one_target_is_aggregated_and_a_scan_keeps_its_events() {
    if !privileged("a_flood_on_one_target_is_aggregated_and_a_scan_keeps_its_events") {
        return;
    }
    use fireplot_common::counters::Misc;
    pin_to_cpu(0);
    let cpus = fireplot::sensor::online_cpus().expect("online CPUs") as u64;
    let per_cpu_burst = 10u64;
    let limits = Limits {
        rate_limit: 0,
        target_limit: 1,
        target_burst: (per_cpu_burst * cpus) as u32,
        ..Limits::default()
    };
    let mut h = Harness::new(limits, &[], 1 << 20);
    let mut frames = 0u64;
    let mut scan = 0u64;
    for i in 0..40u8 {
        // 40 sources in 8 /24s, 25 packets each, to one port.
        let src = [198, 19, i % 8, 1 + i];
        let flood = v4(src, INSIDE_V4, tcp(2000 + i as u16, 80, SYN));
        frozen(&mut h, &flood, 25);
        frames += 25;
        // In between, a scanner probes other ports of the same host.
        let probe = v4(OTHER_V4, INSIDE_V4, tcp(40000, 1000 + i as u16, SYN));
        frozen(&mut h, &probe, 1);
        frames += 1;
        scan += 1;
    }
    let events = h.drain();
    let scan_events = events
        .iter()
        .filter(|e| e.src_addr() == Some(a4(OTHER_V4)))
        .count() as u64;
    assert_eq!(scan_events, scan, "every probe of the scan is an event");
    let flood_events = events.len() as u64 - scan_events;
    assert_eq!(flood_events, per_cpu_burst, "the target's burst passes");
    let aggs = take_aggs(&mut h);
    let packets: u64 = aggs.iter().map(|(_, v)| v.packets).sum();
    assert_eq!(packets, 40 * 25 - per_cpu_burst);
    let prefixes: std::collections::BTreeSet<u64> = aggs.iter().map(|(k, _)| k.src[0]).collect();
    assert_eq!(prefixes.len(), 8, "the eight /24s");
    assert!(aggs.iter().all(|(k, _)| k.dport == 80));
    assert_eq!(aggs.len(), 8, "one aggregate per /24 (one second)");
    assert!(
        aggs.iter().all(|(_, v)| v.mixed == 1),
        "5 sources in each /24: not one source's"
    );
    let c = h.sensor.counters().unwrap();
    assert_eq!(c.misc(Misc::TargetLimited), packets);
    assert_accounted(&mut h, frames, events.len() as u64, packets);
}

/// An address as the kernel's key holds it: two native-endian words of
/// packet-order bytes.
fn words(a: IpAddr) -> [u64; 2] {
    let mut b = [0u8; 16];
    match a {
        IpAddr::V4(v) => b[..4].copy_from_slice(&v.octets()),
        IpAddr::V6(v) => b = v.octets(),
    }
    [
        u64::from_le_bytes(b[..8].try_into().unwrap()),
        u64::from_le_bytes(b[8..].try_into().unwrap()),
    ]
}

/// A harness whose every unsolicited packet is aggregated (at the frozen
/// instant): the CPU's budget of one event went to a first packet.
fn aggregating() -> Harness {
    pin_to_cpu(0);
    let cpus = fireplot::sensor::online_cpus().expect("online CPUs");
    let limits = Limits {
        rate_limit: 0,
        target_limit: 0,
        event_budget: cpus,
        ..Limits::default()
    };
    let mut h = Harness::new(limits, &[], 1 << 20);
    frozen(&mut h, &v4(OTHER_V4, INSIDE_V4, tcp(1, 9, SYN)), 1);
    assert_eq!(h.drain().len(), 1, "the budget's one event");
    h
}

/// What an aggregate's key says of its packets' destination and vector:
/// (destination, protocol, source port, destination port, vector, fragment).
type VectorKey = ([u64; 2], u8, u16, u16, u8, u8);

/// Aggregate keys, row by row: each frame and the key it is counted
/// under. The destination is in the key; TCP is split by flag class (a SYN
/// and an ACK to one port are two aggregates, ECE/CWR change nothing);
/// UDP keeps its source port only when it is a reflection port; ICMP keeps
/// its type; a fragment is marked.
#[test]
fn aggregate_keys_hold_destination_and_vector() {
    if !privileged("aggregate_keys_hold_destination_and_vector") {
        return;
    }
    use fireplot_common::{
        agg::{PREFIX_V4, PREFIX_V6},
        vector::{VECTOR_ACK, VECTOR_RST, VECTOR_SYN, VECTOR_SYN_ACK, VECTOR_TCP_OTHER},
    };
    const OTHER_INSIDE_V4: [u8; 4] = [198, 18, 1, 3];
    let (d4, d6) = (words(a4(INSIDE_V4)), words(a6(INSIDE_V6)));
    let (u, t) = (IPPROTO_UDP, IPPROTO_TCP);
    let rows: Vec<(&str, Vec<u8>, VectorKey)> = vec![
        (
            "SYN",
            v4(OUTSIDE_V4, INSIDE_V4, tcp(1000, 80, SYN)),
            (d4, t, 0, 80, VECTOR_SYN, 0),
        ),
        (
            "SYN|ECE|CWR: a SYN",
            v4(OUTSIDE_V4, INSIDE_V4, tcp(1001, 80, SYN | ECE | CWR)),
            (d4, t, 0, 80, VECTOR_SYN, 0),
        ),
        (
            "ACK, same port",
            v4(OUTSIDE_V4, INSIDE_V4, tcp(1000, 80, ACK)),
            (d4, t, 0, 80, VECTOR_ACK, 0),
        ),
        (
            "ACK|PSH: an ACK",
            v4(OUTSIDE_V4, INSIDE_V4, tcp(1000, 80, ACK | PSH)),
            (d4, t, 0, 80, VECTOR_ACK, 0),
        ),
        (
            "SYN-ACK",
            v4(OUTSIDE_V4, INSIDE_V4, tcp(80, 40001, SYN | ACK)),
            (d4, t, 0, 40001, VECTOR_SYN_ACK, 0),
        ),
        (
            "RST|ACK: a RST",
            v4(OUTSIDE_V4, INSIDE_V4, tcp(80, 40001, RST | ACK)),
            (d4, t, 0, 40001, VECTOR_RST, 0),
        ),
        (
            "FIN|PSH|URG: other",
            v4(OUTSIDE_V4, INSIDE_V4, tcp(1000, 80, FIN | PSH | URG)),
            (d4, t, 0, 80, VECTOR_TCP_OTHER, 0),
        ),
        (
            "SYN to another host",
            v4(OUTSIDE_V4, OTHER_INSIDE_V4, tcp(1000, 80, SYN)),
            (words(a4(OTHER_INSIDE_V4)), t, 0, 80, VECTOR_SYN, 0),
        ),
        (
            "UDP from DNS",
            v4(OUTSIDE_V4, INSIDE_V4, udp(53, 40000)),
            (d4, u, 53, 40000, 0, 0),
        ),
        (
            "UDP from memcached",
            v4(OUTSIDE_V4, INSIDE_V4, udp(11211, 40000)),
            (d4, u, 11211, 40000, 0, 0),
        ),
        (
            "UDP from 40000: port dropped",
            v4(OUTSIDE_V4, INSIDE_V4, udp(40000, 40000)),
            (d4, u, 0, 40000, 0, 0),
        ),
        (
            "UDP from 40001: the same",
            v4(OUTSIDE_V4, INSIDE_V4, udp(40001, 40000)),
            (d4, u, 0, 40000, 0, 0),
        ),
        (
            "ICMP echo",
            v4(OUTSIDE_V4, INSIDE_V4, icmp(8, 0, 7)),
            (d4, IPPROTO_ICMP, 0, 0, 8, 0),
        ),
        (
            "ICMP echo, another id",
            v4(OUTSIDE_V4, INSIDE_V4, icmp(8, 0, 9)),
            (d4, IPPROTO_ICMP, 0, 0, 8, 0),
        ),
        (
            "ICMP timestamp",
            v4(OUTSIDE_V4, INSIDE_V4, icmp(13, 0, 0)),
            (d4, IPPROTO_ICMP, 0, 0, 13, 0),
        ),
        (
            "IPv4 fragment",
            v4_fragment(OUTSIDE_V4, INSIDE_V4, u),
            (d4, u, 0, 0, 0, 1),
        ),
        (
            "IPv6 SYN",
            v6(OUTSIDE_V6, INSIDE_V6, tcp(1000, 80, SYN)),
            (d6, t, 0, 80, VECTOR_SYN, 0),
        ),
        (
            "IPv6 UDP from NTP",
            v6(OUTSIDE_V6, INSIDE_V6, udp(123, 40000)),
            (d6, u, 123, 40000, 0, 0),
        ),
        (
            "ICMPv6 echo",
            v6(OUTSIDE_V6, INSIDE_V6, icmp(128, 0, 7)),
            (d6, IPPROTO_ICMPV6, 0, 0, 128, 0),
        ),
        (
            "IPv6 fragment",
            v6_fragment(OUTSIDE_V6, INSIDE_V6, t),
            (d6, t, 0, 0, 0, 1),
        ),
    ];
    let mut h = aggregating();
    let mut want: BTreeMap<VectorKey, (u64, Vec<&str>)> = BTreeMap::new();
    for (i, (what, frame, key)) in rows.iter().enumerate() {
        let n = 2 + i as u32;
        frozen(&mut h, frame, n);
        let w = want.entry(*key).or_default();
        w.0 += u64::from(n);
        w.1.push(what);
    }
    assert!(h.drain().is_empty(), "every packet was aggregated");
    let mut got: BTreeMap<VectorKey, u64> = BTreeMap::new();
    for (k, v) in take_aggs(&mut h) {
        let (prefix, src) = if k.family == 4 {
            (
                PREFIX_V4,
                [u64::from(u32::from_le_bytes([198, 18, 0, 0])), 0],
            )
        } else {
            (PREFIX_V6, [words(a6(OUTSIDE_V6))[0] & 0xFFFF_FFFF_FFFF, 0])
        };
        assert_eq!((k.prefix, k.src, k.dst_prefix), (prefix, src, 0), "{k:?}");
        assert_eq!(
            v.bytes % v.packets,
            0,
            "one frame size per row: {k:?} {v:?}"
        );
        let key = (k.dst, k.proto, k.sport, k.dport, k.vector, k.fragment);
        assert!(
            got.insert(key, v.packets).is_none(),
            "one entry per key: {k:?}"
        );
    }
    for (key, (packets, whats)) in &want {
        assert_eq!(
            got.get(key),
            Some(packets),
            "{whats:?} → {key:?}; got {got:?}"
        );
    }
    assert_eq!(got.len(), want.len(), "no other aggregate: {got:?}");
}

/// When the aggregate table is full, packets are counted without their
/// source; when that table is full too, they are lost and counted.
#[test]
fn a_full_aggregate_table_falls_back_then_counts_its_losses() {
    if !privileged("a_full_aggregate_table_falls_back_then_counts_its_losses") {
        return;
    }
    use fireplot_common::counters::Misc;
    pin_to_cpu(0);
    let mut sensor = Sensor::load(&LoadOptions {
        ring_bytes: 1 << 20,
        // Room for 8 source prefixes, and 2 entries without source.
        aggregate_entries: 8,
        ..LoadOptions::default()
    })
    .expect("load");
    sensor
        .configure(
            &Limits {
                rate_limit: 0,
                target_limit: 0,
                event_budget: 0,
                ..Limits::default()
            },
            &[],
        )
        .unwrap();
    // The budget set so that nothing is an event: a 1 event/s budget
    // whose burst went to the first packet.
    let limits = Limits {
        rate_limit: 0,
        target_limit: 0,
        event_budget: 1,
        ..Limits::default()
    };
    let cpus = fireplot::sensor::online_cpus().unwrap();
    let limits = Limits {
        event_budget: cpus,
        ..limits
    };
    sensor.configure(&limits, &[]).unwrap();
    let ring = sensor.take_events().unwrap();
    let mut h = Harness { sensor, ring };
    let mut frames = 0;
    // 12 /24s on two ports of 12 hosts of one /24 (carpet bombing): 8 get
    // their entry; the others go to the coarse table (one entry per port:
    // no source, the destinations' /24), a third port finds it full.
    for i in 0..12u8 {
        let port = if i % 2 == 0 { 80 } else { 443 };
        let f = v4([198, 19, i, 1], [198, 18, 1, 2 + i], tcp(3000, port, SYN));
        frozen(&mut h, &f, 3);
        frames += 3;
    }
    let f = v4([198, 19, 100, 1], INSIDE_V4, tcp(3000, 8080, SYN));
    frozen(&mut h, &f, 2);
    frames += 2;
    let events = h.drain().len() as u64;
    assert_eq!(events, 1, "the budget's one event");
    let c = h.sensor.counters().unwrap();
    assert_eq!(
        c.misc(Misc::AggLost),
        2,
        "the third port found both tables full"
    );
    let aggs = take_aggs(&mut h);
    let with_src = aggs.iter().filter(|(k, _)| k.prefix != 0).count();
    let coarse: Vec<_> = aggs.iter().filter(|(k, _)| k.prefix == 0).collect();
    assert_eq!(with_src, 8);
    assert_eq!(coarse.len(), 2, "{coarse:?}");
    assert!(coarse.iter().all(|(k, _)| k.src == [0, 0]));
    assert!(
        coarse
            .iter()
            .all(|(k, _)| (k.dst, k.dst_prefix) == (words(a4([198, 18, 1, 0])), 24)),
        "the destinations' /24: {coarse:?}"
    );
    assert!(
        aggs.iter()
            .filter(|(k, _)| k.prefix != 0)
            .all(|(k, _)| k.dst_prefix == 0),
        "exact destinations in the main table"
    );
    let packets: u64 = aggs.iter().map(|(_, v)| v.packets).sum();
    assert_eq!(
        c.misc(Misc::AggCoarse),
        coarse.iter().map(|(_, v)| v.packets).sum::<u64>()
    );
    assert_accounted(&mut h, frames, events, packets);
}
