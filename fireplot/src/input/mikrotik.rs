//! Mikrotik RouterOS firewall log lines (a rule with `log=yes`), as the
//! router's own log, `/log print` or its remote syslog writes them.
//!
//! `[prefix] input: in:ether1 out:(unknown 0), src-mac 00:0c:…, proto TCP
//! (SYN), 203.0.113.5:54321->198.51.100.1:23, len 44`. Facts a maintainer
//! needs:
//! - the protocol's details are in parentheses after its name: TCP flags
//!   as `(ACK,FIN,PSH)` (upper case, comma-separated), ICMP as `(type 8,
//!   code 0)`; UDP, SCTP, UDP-Lite and DCCP have none;
//! - IPv6 endpoints are bracketed (`[2001:db8::9]:41000`); ICMP and other
//!   port-less protocols have bare addresses;
//! - NAT'd connections add `NAT (a:p->b:q)->(…)` after the connection,
//!   which is not read;
//! - `len` is the IP packet's length;
//! - the time is in the framing ([`super::time`]): syslog, `nov/25/2026
//!   18:00:00`, or a bare `18:00:00` for today.

use std::net::IpAddr;

use fireplot_common::proto::{
    proto_named, tcp_flags_named, IPPROTO_GRE, IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_TCP,
    IPPROTO_UDP,
};
use thiserror::Error;

use crate::record::Record;

/// A Mikrotik firewall line that cannot be read.
#[derive(Debug, Error)]
pub enum MikrotikError {
    /// Nothing in the framing dates the line.
    #[error("no time on the line")]
    NoTime,
    /// `proto` is neither a known name nor a number.
    #[error("unknown proto `{name}`")]
    UnknownProtocol { name: String },
    /// The protocol's details in parentheses are not closed.
    #[error("unclosed `(` after proto")]
    UnclosedDetails,
    /// The word after the protocol is not `source->destination`.
    #[error("`{text}` is not source->destination")]
    NotAConnection { text: String },
    /// An endpoint of the connection is not an address (and port).
    #[error("unreadable addresses `{text}`")]
    Addresses { text: String },
    /// TCP or UDP without a destination port.
    #[error("{proto} without a destination port: `{text}`")]
    NoPort { proto: String, text: String },
}

/// `a.b.c.d:port` or `[v6]:port` or a bare address.
fn endpoint(s: &str) -> Option<(IpAddr, Option<u16>)> {
    if let Some(v6) = s.strip_prefix('[') {
        let (a, rest) = v6.split_once(']')?;
        let port = match rest.strip_prefix(':') {
            Some(p) => Some(p.parse().ok()?),
            None => None,
        };
        return Some((a.parse().ok()?, port));
    }
    if let Ok(a) = s.parse::<IpAddr>() {
        return Some((a, None));
    }
    let (a, p) = s.rsplit_once(':')?;
    Some((a.parse().ok()?, Some(p.parse().ok()?)))
}

/// `proto NAME`: the names of `fireplot_common::proto::PROTO_NAMES`
/// (`udp-lite` as RouterOS spells it), `gre`, or a number.
fn protocol(name: &str) -> Result<u8, MikrotikError> {
    proto_named(name)
        .or_else(|| name.eq_ignore_ascii_case("gre").then_some(IPPROTO_GRE))
        .or_else(|| name.parse().ok())
        .ok_or_else(|| MikrotikError::UnknownProtocol { name: name.into() })
}

/// One Mikrotik firewall line (its framing already split off) at time
/// `ts`: the event and the interface it came in on, or `None` when the
/// text is not a firewall line (no `proto `, no `->`).
pub fn parse_mikrotik(
    text: &str,
    ts: Option<i64>,
) -> Result<Option<(Record, Option<String>)>, MikrotikError> {
    let Some(p) = text.find("proto ") else {
        return Ok(None);
    };
    if !text.contains("->") {
        return Ok(None);
    }
    let ts = ts.ok_or(MikrotikError::NoTime)?;
    let after = &text[p + 6..];
    let name = after.split([' ', ',']).next().unwrap_or("");
    let proto = protocol(name)?;
    let after = &after[name.len()..];
    // "(SYN)" or "(ACK,PSH)" or "(type 8, code 0)"
    let (details, rest) = match after.trim_start().strip_prefix('(') {
        Some(inner) => inner
            .split_once(')')
            .ok_or(MikrotikError::UnclosedDetails)?,
        None => ("", after),
    };
    let rest = rest.trim_start_matches([',', ' ']);
    let conn = rest.split([',', ' ']).next().unwrap_or("");
    let Some((a, b)) = conn.split_once("->") else {
        return Err(MikrotikError::NotAConnection { text: conn.into() });
    };
    let (Some((src, sport)), Some((dst, dport))) = (endpoint(a), endpoint(b)) else {
        return Err(MikrotikError::Addresses { text: conn.into() });
    };
    let mut r = Record::probe(ts, src, dst, proto, dport.unwrap_or(0));
    r.family = if src.is_ipv4() { 4 } else { 6 };
    r.sport = sport.unwrap_or(0);
    r.ifindex = 0;
    r.ttl = 0;
    r.tcp_flags = 0;
    // No line says an SCTP chunk or a DCCP type.
    r.icmp_type = 0;
    if let Some(i) = rest.find("len ") {
        r.len = rest[i + 4..]
            .split(|c: char| !c.is_ascii_digit())
            .next()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
    }
    match proto {
        IPPROTO_TCP => r.tcp_flags = tcp_flags_named(details.split(',').map(str::trim)),
        IPPROTO_ICMP | IPPROTO_ICMPV6 => {
            for kv in details.split(',') {
                let mut w = kv.split_whitespace();
                match (w.next(), w.next().and_then(|v| v.parse::<u8>().ok())) {
                    (Some("type"), Some(v)) => r.icmp_type = v,
                    (Some("code"), Some(v)) => r.icmp_code = v,
                    _ => {}
                }
            }
        }
        _ => {}
    }
    if matches!(proto, IPPROTO_TCP | IPPROTO_UDP) && dport.is_none() {
        return Err(MikrotikError::NoPort {
            proto: name.into(),
            text: conn.into(),
        });
    }
    let iface = text
        .split([' ', ','])
        .find_map(|w| w.strip_prefix("in:"))
        .filter(|i| !i.is_empty())
        .map(String::from);
    Ok(Some((r, iface)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::input::{
        test_support::{event, ns},
        Format,
    };

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
        // The other protocols with ports, when RouterOS names their ports.
        let (r, _) = event(Format::Mikrotik, "Nov 25 14:00:10 router firewall,info input: in:ether1 out:(unknown 0), proto sctp, 203.0.113.9:40000->198.51.100.1:2905, len 68");
        assert_eq!(
            (r.proto, r.sport, r.dport, r.icmp_type),
            (132, 40000, 2905, 0)
        );
        assert!(r.has_ports());
        let (r, _) = event(Format::Mikrotik, "Nov 25 14:00:11 router firewall,info input: in:ether1 out:(unknown 0), proto udp-lite, 203.0.113.9:4000->198.51.100.1:5004, len 48");
        assert_eq!((r.proto, r.dport), (136, 5004));
        let (r, _) = event(Format::Mikrotik, "Nov 25 14:00:12 router firewall,info input: in:ether1 out:(unknown 0), proto dccp, [2001:db8::9]:4000->[2001:db8:1::1]:5001, len 80");
        assert_eq!((r.family, r.proto, r.dport), (6, 33, 5001));
    }

    #[test]
    fn the_text_alone_without_its_framing() {
        let (r, iface) = parse_mikrotik(
            "input: in:ether2 out:(unknown 0), proto gre, 203.0.113.9->198.51.100.1, len 100",
            Some(7),
        )
        .unwrap()
        .unwrap();
        assert_eq!((r.ts_ns, r.proto, r.dport, r.len), (7, 47, 0, 100));
        assert_eq!(iface.as_deref(), Some("ether2"));
        assert!(matches!(
            parse_mikrotik("proto TCP (SYN), 1.2.3.4:1->5.6.7.8:2", None),
            Err(MikrotikError::NoTime)
        ));
        assert!(parse_mikrotik("system,info user admin logged in", Some(1))
            .unwrap()
            .is_none());
        assert_eq!(
            endpoint("[2001:db8::1]"),
            Some(("2001:db8::1".parse().unwrap(), None))
        );
        assert_eq!(endpoint("[2001:db8::1]:x"), None);
    }
}
