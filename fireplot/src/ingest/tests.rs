//! A hand-checked corpus: each line's fields read off by hand.

use super::*;

const NOW: i64 = 1_795_629_600_000_000_000; // 2026-11-25T15:20:00Z

fn clock() -> Clock {
    Clock {
        zone: FixedOffset::east_opt(0).unwrap(),
        year: None,
        now_ns: NOW,
        boot_ns: Some(1_795_600_000_000_000_000),
    }
}

fn ns(s: &str) -> i64 {
    DateTime::parse_from_rfc3339(s)
        .unwrap()
        .timestamp_nanos_opt()
        .unwrap()
}

fn event(f: Format, line: &str) -> (Record, Option<String>) {
    match parse(f, line, &clock(), 1) {
        Parsed::Event(r, i) => (*r, i),
        other => panic!("{line}\n→ {other:?}"),
    }
}

fn bad(f: Format, line: &str) -> String {
    match parse(f, line, &clock(), 1) {
        Parsed::Bad(why) => why,
        other => panic!("{line}\n→ {other:?}, wanted Bad"),
    }
}

const MAC: &str = "MAC=52:54:00:12:34:56:52:54:00:65:43:21:08:00";

#[test]
fn iptables_lines_in_every_framing() {
    // Plain kernel log: only an uptime, so boot time + uptime.
    let (r, iface) = event(
        Format::Iptables,
        &format!("[ 1234.567890] fw-drop: IN=eth0 OUT= {MAC} SRC=203.0.113.5 DST=198.51.100.1 LEN=44 TOS=0x00 PREC=0x00 TTL=243 ID=54321 PROTO=TCP SPT=51234 DPT=23 WINDOW=1024 RES=0x00 SYN URGP=0"),
    );
    assert_eq!(r.ts_ns, 1_795_600_000_000_000_000 + 1_234_567_890_000);
    assert_eq!(iface.as_deref(), Some("eth0"));
    assert_eq!((r.family, r.proto, r.sport, r.dport), (4, 6, 51234, 23));
    assert_eq!(r.src, Some("203.0.113.5".parse().unwrap()));
    assert_eq!(r.dst, Some("198.51.100.1".parse().unwrap()));
    assert_eq!(
        (r.ttl, r.len, r.ip_id, r.tcp_window, r.tcp_flags),
        (243, 44, 54321, 1024, 0x02)
    );

    // Syslog, with --log-tcp-sequence and --log-tcp-options; the year is this one.
    let (r, _) = event(
        Format::Iptables,
        &format!("Nov 25 14:00:01 gw kernel: [1234.567890] fw-drop: IN=eth0 OUT= {MAC} SRC=203.0.113.5 DST=198.51.100.1 LEN=60 TOS=0x00 PREC=0x00 TTL=50 ID=0 DF PROTO=TCP SPT=40000 DPT=22 SEQ=123456789 ACK=0 WINDOW=64240 RES=0x00 SYN URGP=0 OPT (020405B40402080A0000000000000000)"),
    );
    assert_eq!(
        r.ts_ns,
        ns("2026-11-25T14:00:01Z"),
        "the syslog time wins over the uptime"
    );
    assert_eq!((r.tcp_seq, r.tcp_window, r.dport), (123_456_789, 64240, 22));
    // A December line read in November is last year's.
    let (r, _) = event(Format::Iptables, &format!("Dec 31 23:59:59 gw kernel: IN=eth0 OUT= {MAC} SRC=203.0.113.5 DST=198.51.100.1 LEN=40 TTL=9 ID=1 PROTO=TCP SPT=1 DPT=80 WINDOW=0 RES=0x00 ACK FIN URGP=0"));
    assert_eq!(r.ts_ns, ns("2025-12-31T23:59:59Z"));
    assert_eq!(r.tcp_flags, 0x11);

    // ip6tables over syslog: zero-padded addresses, HOPLIMIT, UDP's own LEN after the IP one.
    let (r, _) = event(
        Format::Iptables,
        "Nov 25 14:00:02 gw kernel: IN=eth0 OUT= SRC=2001:0db8:0000:0000:0000:0000:0000:0005 DST=2001:0db8:0001:0000:0000:0000:0000:0001 LEN=80 TC=0 HOPLIMIT=57 FLOWLBL=0 PROTO=UDP SPT=5353 DPT=161 LEN=40",
    );
    assert_eq!(
        (r.family, r.proto, r.dport, r.ttl, r.len),
        (6, 17, 161, 57, 80)
    );
    assert_eq!(r.src, Some("2001:db8::5".parse().unwrap()));

    // ISO times: rsyslog's precise format and `dmesg --time-format iso`.
    let (r, _) = event(Format::Iptables, &format!("2026-11-25T14:00:03.123456+01:00 gw kernel: [ 99.1] fw: IN=wan0 OUT= {MAC} SRC=198.51.100.7 DST=198.18.1.2 LEN=28 TTL=64 ID=7 PROTO=ICMP TYPE=8 CODE=0 ID=99 SEQ=1"));
    assert_eq!(r.ts_ns, ns("2026-11-25T13:00:03.123456Z"));
    assert_eq!((r.proto, r.icmp_type, r.icmp_code, r.ip_id), (1, 8, 0, 7));
    let (r, _) = event(Format::Iptables, "2026-11-25T14:00:04,000001+00:00 fw: IN=wan0 OUT= SRC=2001:db8::7 DST=2001:db8:1::2 LEN=64 TC=0 HOPLIMIT=64 FLOWLBL=1 PROTO=ICMPv6 TYPE=128 CODE=0 ID=5 SEQ=1");
    assert_eq!(r.ts_ns, ns("2026-11-25T14:00:04.000001Z"));
    assert_eq!((r.family, r.proto, r.icmp_type), (6, 58, 128));

    // --log-ip-options, a later fragment (no ports), a protocol by number.
    let (r, _) = event(Format::Iptables, "Nov 25 14:00:05 gw kernel: IN=eth0 OUT= SRC=203.0.113.5 DST=198.51.100.1 LEN=1500 TOS=0x00 PREC=0x00 TTL=50 ID=4242 MF FRAG:185 OPT (07270400) PROTO=UDP ");
    assert_eq!(r.pkt_flags & PKT_FRAGMENT, PKT_FRAGMENT);
    assert!(!r.has_ports());
    let (r, _) = event(Format::Iptables, "Nov 25 14:00:06 gw kernel: IN=eth0 OUT= SRC=203.0.113.5 DST=198.51.100.1 LEN=40 TTL=50 ID=1 PROTO=47 ");
    assert_eq!(r.proto, 47);
}

#[test]
fn nftables_log_lines_read_the_same() {
    let (r, iface) = event(Format::Nftables, "Nov 25 14:00:07 gw kernel: nft-wan-drop: IN=wan0 OUT= MAC=02:00:00:00:00:01:02:00:00:00:00:02:86:dd SRC=2001:db8::9 DST=2001:db8:1::2 LEN=80 TC=0 HOPLIMIT=63 FLOWLBL=0 PROTO=TCP SPT=41000 DPT=3389 WINDOW=1024 RES=0x00 SYN URGP=0 ");
    assert_eq!(iface.as_deref(), Some("wan0"));
    assert_eq!(
        (r.family, r.proto, r.dport, r.tcp_flags),
        (6, 6, 3389, 0x02)
    );
}

#[test]
fn mikrotik_lines() {
    let (r, iface) = event(Format::Mikrotik, "Nov 25 14:00:05 router firewall,info input: in:ether1 out:(unknown 0), src-mac 00:0c:42:11:22:33, proto TCP (SYN), 203.0.113.9:41000->198.51.100.1:8291, len 60");
    assert_eq!(r.ts_ns, ns("2026-11-25T14:00:05Z"));
    assert_eq!(iface.as_deref(), Some("ether1"));
    assert_eq!(
        (r.proto, r.sport, r.dport, r.tcp_flags, r.len),
        (6, 41000, 8291, 0x02, 60)
    );
    let (r, _) = event(Format::Mikrotik, "14:00:06 firewall,info drop input: in:ether1 out:(unknown 0), src-mac 00:0c:42:11:22:33, proto UDP, 203.0.113.9:5060->198.51.100.1:5060, len 420");
    assert_eq!(
        r.ts_ns,
        ns("2026-11-25T14:00:06Z"),
        "a bare time is today's"
    );
    assert_eq!((r.proto, r.dport, r.len), (17, 5060, 420));
    let (r, iface) = event(Format::Mikrotik, "nov/25/2026 14:00:07 firewall,info input: in:pppoe-out1 out:(unknown 0), proto ICMP (type 8, code 0), 203.0.113.9->198.51.100.1, len 84");
    assert_eq!(r.ts_ns, ns("2026-11-25T14:00:07Z"));
    assert_eq!(iface.as_deref(), Some("pppoe-out1"));
    assert_eq!((r.proto, r.icmp_type, r.icmp_code, r.dport), (1, 8, 0, 0));
    let (r, _) = event(Format::Mikrotik, "Nov 25 14:00:08 router firewall,info input: in:ether1 out:(unknown 0), src-mac 00:0c:42:11:22:33, proto TCP (ACK,FIN,PSH), [2001:db8::9]:41000->[2001:db8:1::1]:22, len 80");
    assert_eq!((r.family, r.dport, r.tcp_flags), (6, 22, 0x19));
    assert_eq!(r.src, Some("2001:db8::9".parse().unwrap()));
    // NAT details after the connection do not confuse it.
    let (r, _) = event(Format::Mikrotik, "Nov 25 14:00:09 router firewall,info forward: in:ether1 out:bridge, proto TCP (SYN), 203.0.113.9:1->198.51.100.1:443, NAT (203.0.113.9:1->10.0.0.2:443)->(203.0.113.9:1->10.0.0.2:443), len 52");
    assert_eq!(r.dport, 443);
}

#[test]
fn journald_records() {
    let (r, _) = event(
        Format::Journald,
        r#"{"__REALTIME_TIMESTAMP":"1795629609123456","_TRANSPORT":"kernel","PRIORITY":"4","MESSAGE":"fw-drop: IN=eth0 OUT= SRC=203.0.113.5 DST=198.51.100.1 LEN=44 TTL=50 ID=1 PROTO=TCP SPT=1 DPT=445 WINDOW=1024 RES=0x00 SYN URGP=0 "}"#,
    );
    assert_eq!(r.ts_ns, 1_795_629_609_123_456_000);
    assert_eq!(r.dport, 445);
    // A MESSAGE that is not UTF-8 comes as bytes.
    let bytes: Vec<String> = "IN=eth0 OUT= SRC=203.0.113.5 DST=198.51.100.1 LEN=44 TTL=50 ID=1 PROTO=UDP SPT=1 DPT=1900 LEN=24"
        .bytes()
        .map(|b| b.to_string())
        .collect();
    let line = format!(
        r#"{{"__REALTIME_TIMESTAMP":"1795629609000000","MESSAGE":[{}]}}"#,
        bytes.join(",")
    );
    assert_eq!(event(Format::Journald, &line).0.dport, 1900);
    assert_eq!(
        parse(
            Format::Journald,
            r#"{"__REALTIME_TIMESTAMP":"1","MESSAGE":"usb 1-1: new high-speed USB device"}"#,
            &clock(),
            1
        ),
        Parsed::Other
    );
}

#[test]
fn events_lines_round_trip() {
    let r = Record::probe(
        NOW,
        "198.51.100.7".parse().unwrap(),
        "198.18.1.2".parse().unwrap(),
        6,
        22,
    );
    let mut j = r.to_json_record();
    j.iface = Some("wan0".into());
    let (back, iface) = event(Format::Events, &j.to_json());
    assert_eq!(back.dport, 22);
    assert_eq!(back.ts_ns, NOW);
    assert_eq!(iface.as_deref(), Some("wan0"));
}

#[test]
fn every_malformed_case_is_named_never_fatal() {
    for (f, line, want) in [
        (Format::Iptables, "Nov 25 14:00:00 gw kernel: IN=eth0 OUT= SRC=300.1.2.3 DST=198.51.100.1 PROTO=TCP SPT=1 DPT=2", "SRC="),
        (Format::Iptables, "Nov 25 14:00:00 gw kernel: IN=eth0 OUT= SRC=203.0.113.5 PROTO=TCP SPT=1 DPT=2", "DST="),
        (Format::Iptables, "Nov 25 14:00:00 gw kernel: IN=eth0 OUT= SRC=203.0.113.5 DST=198.51.100.1 PROTO=FOO", "PROTO=FOO"),
        (Format::Iptables, "Nov 25 14:00:00 gw kernel: IN=eth0 OUT= SRC=203.0.113.5 DST=198.51.100.1 LEN=40", "PROTO="),
        (Format::Iptables, "Nov 25 14:00:00 gw kernel: IN=eth0 OUT= SRC=203.0.113.5 DST=198.51.100.1 PROTO=TCP SPT=1", "SPT="),
        (Format::Iptables, "Nov 25 14:00:00 gw kernel: IN=eth0 OUT= SRC=203.0.113.5 DST=198.51.100.1 PROTO=UDP SPT=1 DPT=70000", "SPT="),
        (Format::Iptables, "fw: IN=eth0 OUT= SRC=203.0.113.5 DST=198.51.100.1 PROTO=TCP SPT=1 DPT=2", "no time"),
        (Format::Iptables, "2026-13-45T99:00:00Z gw kernel: IN=eth0 SRC=203.0.113.5 DST=1.2.3.4 PROTO=TCP SPT=1 DPT=2", "unreadable time"),
        (Format::Iptables, "Nov 99 gw kernel: IN=eth0 SRC=1.2.3.4", "syslog time"),
        (Format::Mikrotik, "Nov 25 14:00:00 router firewall,info input: proto TCP (SYN), 203.0.113.9:x->198.51.100.1:22, len 60", "unreadable addresses"),
        (Format::Mikrotik, "Nov 25 14:00:00 router firewall,info input: proto TCP (SYN), 203.0.113.9->198.51.100.1, len 60", "without a destination port"),
        (Format::Mikrotik, "Nov 25 14:00:00 router firewall,info input: proto WAT, 203.0.113.9->198.51.100.1, len 60", "unknown proto"),
        (Format::Mikrotik, "Nov 25 14:00:00 router firewall,info input: proto TCP (SYN, 203.0.113.9:1->198.51.100.1:2", "unclosed"),
        (Format::Journald, "{not json", "not a JSON record"),
        (Format::Journald, r#"{"MESSAGE":"IN=eth0 SRC=203.0.113.5 DST=198.51.100.1 PROTO=TCP SPT=1 DPT=2"}"#, "__REALTIME_TIMESTAMP"),
        (Format::Events, "{\"ts\":\"yesterday\"}", "not an event line"),
    ] {
        let why = bad(f, line);
        assert!(why.contains(want), "{line}\n→ `{why}` lacks `{want}`");
    }
    // Ordinary log lines are not firewall lines.
    for (f, line) in [
        (
            Format::Iptables,
            "Nov 25 14:00:00 gw sshd[123]: Accepted publickey for root from 203.0.113.5",
        ),
        (Format::Iptables, "[    0.000000] Linux version 6.18.0"),
        (
            Format::Mikrotik,
            "14:00:00 system,info,account user admin logged in from 203.0.113.5 via ssh",
        ),
        (Format::Iptables, ""),
    ] {
        assert_eq!(parse(f, line, &clock(), 1), Parsed::Other, "{line}");
    }
}
