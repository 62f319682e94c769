//! The kernel's nf_log text: what iptables/ip6tables `-j LOG` and the
//! nftables `log` statement write (both go through `nf_log_syslog`), and
//! what journald keeps as a kernel record's MESSAGE.
//!
//! `[prefix] IN=wan0 OUT= MAC=… SRC=a DST=b LEN=60 TOS=… TTL=50 ID=1 DF
//! PROTO=TCP SPT=1 DPT=22 [SEQ=… ACK=…] WINDOW=1024 RES=0x00 SYN URGP=0
//! [OPT (…)]`. Facts a maintainer needs:
//! - `KEY=value` pairs separated by single spaces; a key may repeat (UDP
//!   logs its own `LEN=` after the IP one, ICMP its own `ID=`): the first
//!   one is the IP header's.
//! - IPv6 lines say `HOPLIMIT=` instead of `TTL=` and print addresses in
//!   full, zero-padded.
//! - TCP flags are bare words after `RES=` (`--log-tcp-sequence` adds
//!   `SEQ=`/`ACK=` before them, `--log-tcp-options` an `OPT (…)` after).
//! - A later fragment says `FRAG:N` (N > 0) and has no transport header;
//!   `--log-ip-options` adds an `OPT (…)` before `PROTO=`.
//! - Ports are logged for TCP, UDP and UDP-Lite (`PROTO=UDPLITE`) only:
//!   SCTP and DCCP are a bare `PROTO=132` / `PROTO=33` (`dump_ipv4_packet`
//!   and `dump_ipv6_packet` in net/netfilter/nf_log_syslog.c, Linux 6.18),
//!   so their events have ports 0 unless a line gives `SPT=`/`DPT=`; no
//!   line says an SCTP chunk or DCCP type (0).
//! - The text carries no time: the framing around it does ([`super::time`]).

use std::net::IpAddr;

use fireplot_common::{
    event::{Class, PKT_FRAGMENT},
    proto::{
        proto_named, tcp_flags_named, IPPROTO_DCCP, IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_SCTP,
        IPPROTO_TCP, IPPROTO_UDP, IPPROTO_UDPLITE,
    },
};
use thiserror::Error;

use crate::record::Record;

/// An nf_log line that cannot be read.
#[derive(Debug, Error)]
pub enum NflogError {
    /// `SRC=` is not an address.
    #[error("SRC=`{text}` is not an address")]
    Source { text: String },
    /// `DST=` is missing or not an address.
    #[error("no readable DST=")]
    Destination,
    /// Neither the framing nor a kernel stamp dates the line.
    #[error("no time on the line (add syslog or ISO times, or read dmesg with --time-format iso)")]
    NoTime,
    /// `PROTO=` is neither a known name nor a number.
    #[error("unknown PROTO={name}")]
    UnknownProtocol { name: String },
    /// No `PROTO=`.
    #[error("no PROTO=")]
    NoProtocol,
    /// A TCP, UDP or UDP-Lite first fragment (or whole packet) without ports.
    #[error("no readable SPT=/DPT=")]
    Ports,
}

/// The value of `KEY=` in nf_log's text.
fn field<'a>(s: &'a str, key: &str) -> Option<&'a str> {
    let mut start = 0;
    while let Some(i) = s[start..].find(key) {
        let at = start + i;
        let before_ok = at == 0 || s.as_bytes()[at - 1] == b' ';
        let after = at + key.len();
        if before_ok && s.as_bytes().get(after) == Some(&b'=') {
            let v = &s[after + 1..];
            return Some(v.split(' ').next().unwrap_or(""));
        }
        start = after;
    }
    None
}

/// `PROTO=`: TCP, UDP, UDPLITE, ICMP, ICMPv6 (and the other names of
/// `fireplot_common::proto::PROTO_NAMES`), else a number.
fn protocol(name: &str) -> Result<u8, NflogError> {
    proto_named(name)
        .or_else(|| name.parse::<u8>().ok())
        .ok_or_else(|| NflogError::UnknownProtocol { name: name.into() })
}

/// One nf_log line (its framing already split off) at time `ts`: the
/// event and the interface it came in on, or `None` when the text is not
/// an nf_log line (no `SRC=`, or neither `IN=` nor `DST=`).
pub fn parse_nflog(
    text: &str,
    ts: Option<i64>,
) -> Result<Option<(Record, Option<String>)>, NflogError> {
    let Some(src) = field(text, "SRC") else {
        return Ok(None);
    };
    if field(text, "IN").is_none() && field(text, "DST").is_none() {
        return Ok(None);
    }
    let Ok(src) = src.parse::<IpAddr>() else {
        return Err(NflogError::Source { text: src.into() });
    };
    let dst = match field(text, "DST").map(str::parse::<IpAddr>) {
        Some(Ok(d)) => d,
        _ => return Err(NflogError::Destination),
    };
    let ts = ts.ok_or(NflogError::NoTime)?;
    let num = |k: &str| field(text, k).and_then(|v| v.parse::<u64>().ok());
    let proto = protocol(field(text, "PROTO").ok_or(NflogError::NoProtocol)?)?;
    let family = if src.is_ipv4() { 4 } else { 6 };
    let mut r = Record::probe(ts, src, dst, proto, 0);
    r.family = family;
    r.sport = 0;
    r.tcp_flags = 0;
    r.icmp_type = 0;
    r.ifindex = 0;
    r.ttl = num("TTL").or(num("HOPLIMIT")).unwrap_or(0).min(255) as u8;
    r.len = num("LEN").unwrap_or(0).min(65535) as u16;
    r.ip_id = num("ID").unwrap_or(0) as u16;
    // "FRAG:N": a later fragment, no transport header (a first one has
    // only "MF" and its ports).
    let fragment = text
        .split(' ')
        .any(|w| w.starts_with("FRAG:") && w != "FRAG:0");
    if fragment {
        r.pkt_flags |= PKT_FRAGMENT;
    }
    match proto {
        IPPROTO_TCP | IPPROTO_UDP | IPPROTO_UDPLITE | IPPROTO_SCTP | IPPROTO_DCCP => {
            if !fragment {
                match (num("SPT"), num("DPT")) {
                    (Some(s), Some(d)) if s <= 65535 && d <= 65535 => {
                        r.sport = s as u16;
                        r.dport = d as u16;
                    }
                    // The kernel logs no ports for these (see above).
                    (None, None) if matches!(proto, IPPROTO_SCTP | IPPROTO_DCCP) => {}
                    _ => return Err(NflogError::Ports),
                }
            }
            if proto == IPPROTO_TCP {
                // Flags are the bare words after RES=.
                let after = text.find(" RES=").map(|i| &text[i..]).unwrap_or(text);
                r.tcp_flags = tcp_flags_named(after.split(' '));
                r.tcp_window = num("WINDOW").unwrap_or(0) as u16;
                r.tcp_seq = num("SEQ").unwrap_or(0) as u32;
            }
        }
        IPPROTO_ICMP | IPPROTO_ICMPV6 => {
            r.icmp_type = num("TYPE").unwrap_or(0) as u8;
            r.icmp_code = num("CODE").unwrap_or(0) as u8;
        }
        _ => {}
    }
    r.class = Class::Unsolicited as u8;
    let iface = field(text, "IN")
        .filter(|i| !i.is_empty())
        .map(String::from);
    Ok(Some((r, iface)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::input::{
        test_support::{event, ns, MAC},
        Format,
    };

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

    /// What Linux's nf_log writes for the other protocols with ports:
    /// UDP-Lite by name with its ports, SCTP and DCCP by number without.
    #[test]
    fn udplite_sctp_and_dccp_lines() {
        let (r, _) = event(Format::Iptables, "Nov 25 14:00:08 gw kernel: IN=eth0 OUT= SRC=203.0.113.5 DST=198.51.100.1 LEN=48 TOS=0x00 PREC=0x00 TTL=50 ID=1 PROTO=UDPLITE SPT=4000 DPT=5004 LEN=28 ");
        assert_eq!((r.proto, r.sport, r.dport), (136, 4000, 5004));
        assert!(r.has_ports());
        for (proto, number) in [(132, "132"), (33, "33")] {
            let (r, _) = event(
                Format::Iptables,
                &format!("Nov 25 14:00:09 gw kernel: IN=eth0 OUT= SRC=203.0.113.5 DST=198.51.100.1 LEN=80 TOS=0x00 PREC=0x00 TTL=50 ID=2 DF PROTO={number} "),
            );
            assert_eq!((r.proto, r.sport, r.dport, r.icmp_type), (proto, 0, 0, 0));
        }
        // One port without the other is a damaged line.
        assert!(matches!(
            parse_nflog("IN=eth0 SRC=1.2.3.4 DST=5.6.7.8 PROTO=132 DPT=9", Some(1)),
            Err(NflogError::Ports)
        ));
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
    fn the_text_alone_without_its_framing() {
        let text = "fw: IN=eth0 OUT= SRC=203.0.113.5 DST=198.51.100.1 LEN=40 TTL=9 ID=1 PROTO=SCTP SPT=7 DPT=2905 ";
        let (r, iface) = parse_nflog(text, Some(5)).unwrap().unwrap();
        assert_eq!((r.ts_ns, r.proto, r.sport, r.dport), (5, 132, 7, 2905));
        assert!(r.has_ports());
        assert_eq!(r.icmp_type, 0, "no line says the chunk");
        assert_eq!(r.class, Class::Unsolicited as u8);
        assert_eq!(iface.as_deref(), Some("eth0"));
        // `OUT=` empty is no interface; the first LEN= and ID= are the IP header's.
        let (r, iface) = parse_nflog(
            "IN= OUT=eth1 SRC=10.0.0.1 DST=10.0.0.2 LEN=30 ID=3 PROTO=ICMP TYPE=3 CODE=1 ID=9 LEN=8",
            Some(1),
        )
        .unwrap()
        .unwrap();
        assert_eq!((r.len, r.ip_id, r.icmp_type, r.icmp_code), (30, 3, 3, 1));
        assert_eq!(iface, None);
        // A key that only ends another key's name is not the key.
        assert_eq!(field("XSRC=1 SRC=2", "SRC"), Some("2"));
        assert!(parse_nflog("no keys here", Some(1)).unwrap().is_none());
        assert!(matches!(
            parse_nflog("SRC=1.2.3.4 DST=5.6.7.8 PROTO=TCP SPT=1 DPT=2", None),
            Err(NflogError::NoTime)
        ));
    }

    /// psad's Mirai pattern from iptables lines (no TCP sequence in a log):
    /// ten SYNs to TCP/23 of one host, then one to TCP/2323.
    #[test]
    fn mirai_default_credential_logins_from_log_lines() {
        use crate::{
            detect::{DetectConfig, Engine},
            input::{parse, test_support::clock, Parsed},
        };
        let clock = clock();
        let mut evs = Vec::new();
        let line = |t: u32, dpt: u16| {
            format!(
                "Jul 23 20:{:02}:{:02} fw kernel: [12345.678] DROP IN=eth0 OUT= MAC=00:11:22:33:44:55:66:77:88:99:aa:bb:08:00 SRC=203.0.113.66 DST=198.18.2.2 LEN=44 TOS=0x00 PREC=0x00 TTL=50 ID=0 PROTO=TCP SPT=5555 DPT={dpt} WINDOW=5840 RES=0x00 SYN URGP=0",
                t / 60,
                t % 60
            )
        };
        for t in 0..10u32 {
            match parse(Format::Iptables, &line(t * 6, 23), &clock, 1) {
                Parsed::Event(r, _) => evs.push(*r),
                other => panic!("{other:?}"),
            }
        }
        match parse(Format::Iptables, &line(61, 2323), &clock, 1) {
            Parsed::Event(r, _) => evs.push(*r),
            other => panic!("{other:?}"),
        }
        let run = |evs: &[crate::record::Record]| {
            let mut e = Engine::new(DetectConfig::default());
            let mut all = Vec::new();
            for r in evs {
                e.push(r);
                all.extend(e.drain());
            }
            all.extend(e.finish());
            all
        };
        let all = run(&evs);
        let b: Vec<&crate::detect::Alert> =
            all.iter().filter(|a| a.kind == "brute_force").collect();
        assert!(!b.is_empty(), "{all:#?}");
        assert_eq!(b[0].tool.as_deref(), Some("mirai"));
        assert_eq!(b[0].sources, ["203.0.113.66"]);
        assert!(b[0].summary.contains("TCP/2323"), "{}", b[0].summary);
        // Nine SYNs to 23 are not enough.
        let all = run(&evs[1..]);
        assert!(all.iter().all(|a| a.kind != "brute_force"), "{all:#?}");
    }
}
