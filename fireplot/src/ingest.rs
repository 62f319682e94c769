//! Firewall logs as events: iptables/ip6tables and nftables `LOG`/`log`
//! lines (the kernel's nf_log format, with kernel-log, syslog, ISO or
//! journald framing), Mikrotik firewall log lines, `journalctl -k -o json`
//! records, and fireplot's own event lines. A logged packet is unsolicited
//! by the firewall's own judgement: every parsed line is one event.
//!
//! Each parser says one of three things about a line: an event, not a
//! firewall line (ordinary log traffic, skipped and counted), or a
//! firewall line it cannot read (counted and shown, never fatal).

use std::net::IpAddr;

use chrono::{DateTime, Datelike, FixedOffset, NaiveDate, NaiveDateTime, TimeZone};
use fireplot_common::event::{Class, PKT_FRAGMENT};

use crate::record::{line::EventRecord, Record};

/// What a line was.
#[derive(Debug, PartialEq)]
pub enum Parsed {
    Event(Box<Record>, Option<String>),
    /// Not a firewall line.
    Other,
    /// A firewall line that cannot be read, and why.
    Bad(String),
}

/// The formats `fireplot ingest` reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// fireplot's own event JSON lines (`--events-out`).
    Events,
    /// iptables / ip6tables `-j LOG` lines (kernel log, syslog, dmesg).
    Iptables,
    /// nftables `log` statement lines (the same kernel format).
    Nftables,
    /// Mikrotik RouterOS firewall log lines (`... proto TCP (SYN), a:p->b:q, len N`).
    Mikrotik,
    /// `journalctl -k -o json` records.
    Journald,
}

/// How times without a zone or year are read.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    /// The zone of times that carry none.
    pub zone: FixedOffset,
    /// The year of syslog times that carry none (None: the latest year that
    /// does not put the time more than a day in the future).
    pub year: Option<i32>,
    /// Now, Unix ns.
    pub now_ns: i64,
    /// This machine's boot time, Unix ns (for bare `[uptime]` kernel lines).
    pub boot_ns: Option<i64>,
}

impl Clock {
    fn local(&self, t: NaiveDateTime) -> Option<i64> {
        self.zone
            .from_local_datetime(&t)
            .single()?
            .timestamp_nanos_opt()
    }
}

/// Parses one line of `format`.
pub fn parse(format: Format, line: &str, clock: &Clock, lineno: usize) -> Parsed {
    let line = line.trim_end_matches(['\r', '\n']);
    if line.trim().is_empty() {
        return Parsed::Other;
    }
    match format {
        Format::Events => parse_event_line(line, lineno),
        Format::Iptables | Format::Nftables => {
            let (ts, rest) = match split_time(line, clock) {
                Ok(x) => x,
                Err(e) => return e,
            };
            parse_nflog(rest, ts)
        }
        Format::Mikrotik => {
            let (ts, rest) = match split_time(line, clock) {
                Ok(x) => x,
                Err(e) => return e,
            };
            parse_mikrotik(rest, ts)
        }
        Format::Journald => parse_journald(line, clock),
    }
}

fn parse_event_line(line: &str, lineno: usize) -> Parsed {
    let r: EventRecord = match serde_json::from_str(line) {
        Ok(r) => r,
        Err(e) => return Parsed::Bad(format!("not an event line: {e}")),
    };
    match Record::try_from((&r, lineno)) {
        Ok(rec) => Parsed::Event(Box::new(rec), r.iface.clone()),
        Err(e) => Parsed::Bad(e.to_string()),
    }
}

const MONTHS: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];

fn month(s: &str) -> Option<u32> {
    let s = s.to_ascii_lowercase();
    MONTHS.iter().position(|m| *m == s).map(|i| i as u32 + 1)
}

/// A syslog time without a year ("Nov 25 18:00:00"): the year given, or
/// the latest that is not more than a day ahead of now.
fn syslog_time(mon: u32, day: u32, hms: &str, clock: &Clock) -> Option<i64> {
    let t = chrono::NaiveTime::parse_from_str(hms, "%H:%M:%S%.f").ok()?;
    let at = |y: i32| NaiveDate::from_ymd_opt(y, mon, day).and_then(|d| clock.local(d.and_time(t)));
    if let Some(y) = clock.year {
        return at(y);
    }
    let this = DateTime::from_timestamp_nanos(clock.now_ns)
        .with_timezone(&clock.zone)
        .year();
    match at(this) {
        Some(ns) if ns <= clock.now_ns + 86_400_000_000_000 => Some(ns),
        _ => at(this - 1),
    }
}

/// Splits the time framing off a log line: ISO/RFC 3339 (syslog-ng,
/// rsyslog's high-precision format, `dmesg --time-format iso`), RFC 3164
/// syslog ("Nov 25 18:00:00 host tag: "), Mikrotik's own
/// ("nov/25/2026 18:00:00" or "18:00:00 topics "), and a kernel
/// `[uptime]` stamp. Returns the time (None: no time in the line) and the
/// rest.
fn split_time<'a>(line: &'a str, clock: &Clock) -> Result<(Option<i64>, &'a str), Parsed> {
    let mut ts = None;
    let mut rest = line.trim_start();
    let first = rest.split_whitespace().next().unwrap_or("");
    if first.len() >= 19 && first.as_bytes()[4] == b'-' && first.as_bytes()[10] == b'T' {
        // 2026-11-25T18:00:00.123456+00:00 (or with a comma, or no zone).
        let norm = first.replacen(',', ".", 1);
        ts = DateTime::parse_from_rfc3339(&norm)
            .ok()
            .and_then(|t| t.timestamp_nanos_opt())
            .or_else(|| {
                NaiveDateTime::parse_from_str(&norm, "%Y-%m-%dT%H:%M:%S%.f")
                    .ok()
                    .and_then(|t| clock.local(t))
            });
        if ts.is_none() {
            return Err(Parsed::Bad(format!("unreadable time `{first}`")));
        }
        rest = rest[first.len()..].trim_start();
        rest = skip_host_tag(rest);
    } else if let Some(mon) = month(first) {
        // Nov 25 18:00:00 host kernel: ...
        let mut it = rest.split_whitespace();
        let (_, day, hms) = (it.next(), it.next(), it.next());
        let (Some(day), Some(hms)) = (day.and_then(|d| d.parse().ok()), hms) else {
            return Err(Parsed::Bad("unreadable syslog time".into()));
        };
        ts = syslog_time(mon, day, hms, clock);
        if ts.is_none() {
            return Err(Parsed::Bad(format!("unreadable syslog time `{hms}`")));
        }
        let skip = rest.find(hms).map(|i| i + hms.len()).unwrap_or(0);
        rest = skip_host_tag(rest[skip..].trim_start());
    } else if first.len() == 11 && first.as_bytes()[3] == b'/' {
        // Mikrotik: nov/25/2026 18:00:00
        let mut p = first.split('/');
        let (m, d, y) = (p.next(), p.next(), p.next());
        let hms = rest.split_whitespace().nth(1).unwrap_or("");
        let date = m
            .and_then(month)
            .zip(d.and_then(|d| d.parse().ok()))
            .zip(y.and_then(|y| y.parse().ok()))
            .and_then(|((m, d), y)| NaiveDate::from_ymd_opt(y, m, d));
        let t = chrono::NaiveTime::parse_from_str(hms, "%H:%M:%S").ok();
        ts = date.zip(t).and_then(|(d, t)| clock.local(d.and_time(t)));
        if ts.is_none() {
            return Err(Parsed::Bad(format!("unreadable time `{first} {hms}`")));
        }
        let skip = rest.find(hms).map(|i| i + hms.len()).unwrap_or(0);
        rest = rest[skip..].trim_start();
    } else if first.len() == 8 && first.as_bytes()[2] == b':' && first.as_bytes()[5] == b':' {
        // Mikrotik's own log: "18:00:00 firewall,info ..." (today).
        let t = chrono::NaiveTime::parse_from_str(first, "%H:%M:%S").ok();
        let today = DateTime::from_timestamp_nanos(clock.now_ns)
            .with_timezone(&clock.zone)
            .date_naive();
        ts = t.and_then(|t| clock.local(today.and_time(t)));
        rest = rest[first.len()..].trim_start();
    }
    // A kernel stamp: "[12345.678901] " (seconds since boot).
    if let Some(inner) = rest.strip_prefix('[') {
        if let Some(end) = inner.find(']') {
            if let Ok(up) = inner[..end].trim().parse::<f64>() {
                if ts.is_none() {
                    ts = clock.boot_ns.map(|b| b + (up * 1e9) as i64);
                }
                rest = inner[end + 1..].trim_start();
            }
        }
    }
    Ok((ts, rest))
}

/// Skips "host tag: " after a syslog time, when there is one.
fn skip_host_tag(s: &str) -> &str {
    // "host kernel: ..." / "host kernel: [123.4] ..." / "router firewall,info ..."
    let mut words = s.splitn(3, ' ');
    let (host, tag, rest) = (words.next(), words.next(), words.next());
    match (host, tag, rest) {
        (Some(_), Some(tag), Some(rest)) if tag.ends_with(':') => rest,
        (Some(_), Some(tag), Some(rest))
            if tag.contains(',') && !tag.contains('=') && !tag.contains(':') =>
        {
            // Mikrotik over syslog: "router firewall,info input: ..."
            rest
        }
        _ => s,
    }
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

fn has_word(s: &str, w: &str) -> bool {
    s.split(' ').any(|x| x == w)
}

/// The kernel's nf_log text (iptables `LOG`, nftables `log`):
/// `prefix IN=wan0 OUT= MAC=... SRC=a DST=b LEN=60 ... TTL=50 ID=1 DF
/// PROTO=TCP SPT=1 DPT=22 [SEQ=.. ACK=..] WINDOW=1024 RES=0x00 SYN URGP=0 [OPT (..)]`.
pub fn parse_nflog(text: &str, ts: Option<i64>) -> Parsed {
    let Some(src) = field(text, "SRC") else {
        return Parsed::Other;
    };
    if field(text, "IN").is_none() && field(text, "DST").is_none() {
        return Parsed::Other;
    }
    let Ok(src) = src.parse::<IpAddr>() else {
        return Parsed::Bad(format!("SRC=`{src}` is not an address"));
    };
    let dst = match field(text, "DST").map(str::parse::<IpAddr>) {
        Some(Ok(d)) => d,
        _ => return Parsed::Bad("no readable DST=".into()),
    };
    let Some(ts) = ts else {
        return Parsed::Bad(
            "no time on the line (add syslog or ISO times, or read dmesg with --time-format iso)"
                .into(),
        );
    };
    let num = |k: &str| field(text, k).and_then(|v| v.parse::<u64>().ok());
    let proto = match field(text, "PROTO") {
        Some("TCP") => 6,
        Some("UDP") => 17,
        Some("UDPLITE") => 136,
        Some("ICMP") => 1,
        Some("ICMPv6") => 58,
        Some("SCTP") => 132,
        Some(p) => match p.parse::<u8>() {
            Ok(n) => n,
            Err(_) => return Parsed::Bad(format!("unknown PROTO={p}")),
        },
        None => return Parsed::Bad("no PROTO=".into()),
    };
    let family = if src.is_ipv4() { 4 } else { 6 };
    let mut r = Record::probe(ts, src, dst, proto, 0);
    r.family = family;
    r.sport = 0;
    r.tcp_flags = 0;
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
        6 | 17 | 136 | 132 => {
            if !fragment {
                match (num("SPT"), num("DPT")) {
                    (Some(s), Some(d)) if s <= 65535 && d <= 65535 => {
                        r.sport = s as u16;
                        r.dport = d as u16;
                    }
                    _ => return Parsed::Bad("no readable SPT=/DPT=".into()),
                }
            }
            if proto == 6 {
                const FLAGS: [(&str, u8); 8] = [
                    ("FIN", 0x01),
                    ("SYN", 0x02),
                    ("RST", 0x04),
                    ("PSH", 0x08),
                    ("ACK", 0x10),
                    ("URG", 0x20),
                    ("ECE", 0x40),
                    ("CWR", 0x80),
                ];
                // Flags are the bare words after RES=.
                let after = text.find(" RES=").map(|i| &text[i..]).unwrap_or(text);
                for (w, bit) in FLAGS {
                    if has_word(after, w) {
                        r.tcp_flags |= bit;
                    }
                }
                r.tcp_window = num("WINDOW").unwrap_or(0) as u16;
                r.tcp_seq = num("SEQ").unwrap_or(0) as u32;
            }
        }
        1 | 58 => {
            r.icmp_type = num("TYPE").unwrap_or(0) as u8;
            r.icmp_code = num("CODE").unwrap_or(0) as u8;
        }
        _ => {}
    }
    r.class = Class::Unsolicited as u8;
    let iface = field(text, "IN")
        .filter(|i| !i.is_empty())
        .map(String::from);
    Parsed::Event(Box::new(r), iface)
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

/// A Mikrotik firewall log line: `input: in:ether1 out:(unknown 0),
/// src-mac 00:..., proto TCP (SYN), 203.0.113.5:54321->198.51.100.1:23,
/// len 44` (IPv6 addresses in brackets; ICMP as `proto ICMP (type 8, code
/// 0), a->b, len 84`).
pub fn parse_mikrotik(text: &str, ts: Option<i64>) -> Parsed {
    let Some(p) = text.find("proto ") else {
        return Parsed::Other;
    };
    if !text.contains("->") {
        return Parsed::Other;
    }
    let Some(ts) = ts else {
        return Parsed::Bad("no time on the line".into());
    };
    let after = &text[p + 6..];
    let name = after.split([' ', ',']).next().unwrap_or("");
    let proto: u8 = match name.to_ascii_uppercase().as_str() {
        "TCP" => 6,
        "UDP" => 17,
        "ICMP" => 1,
        "ICMPV6" | "IPV6-ICMP" => 58,
        "GRE" => 47,
        "SCTP" => 132,
        n => match n.parse() {
            Ok(v) => v,
            Err(_) => return Parsed::Bad(format!("unknown proto `{name}`")),
        },
    };
    let after = &after[name.len()..];
    // "(SYN)" or "(ACK,PSH)" or "(type 8, code 0)"
    let (paren, rest) = match after.trim_start().strip_prefix('(') {
        Some(inner) => match inner.split_once(')') {
            Some((p, r)) => (p, r),
            None => return Parsed::Bad("unclosed `(` after proto".into()),
        },
        None => ("", after),
    };
    let rest = rest.trim_start_matches([',', ' ']);
    let conn = rest.split([',', ' ']).next().unwrap_or("");
    let Some((a, b)) = conn.split_once("->") else {
        return Parsed::Bad(format!("`{conn}` is not source->destination"));
    };
    let (Some((src, sport)), Some((dst, dport))) = (endpoint(a), endpoint(b)) else {
        return Parsed::Bad(format!("unreadable addresses `{conn}`"));
    };
    let mut r = Record::probe(ts, src, dst, proto, dport.unwrap_or(0));
    r.family = if src.is_ipv4() { 4 } else { 6 };
    r.sport = sport.unwrap_or(0);
    r.ifindex = 0;
    r.ttl = 0;
    r.tcp_flags = 0;
    if let Some(i) = rest.find("len ") {
        r.len = rest[i + 4..]
            .split(|c: char| !c.is_ascii_digit())
            .next()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
    }
    match proto {
        6 => {
            for f in paren.split(',').map(str::trim) {
                r.tcp_flags |= match f {
                    "FIN" => 0x01,
                    "SYN" => 0x02,
                    "RST" => 0x04,
                    "PSH" => 0x08,
                    "ACK" => 0x10,
                    "URG" => 0x20,
                    "ECE" => 0x40,
                    "CWR" => 0x80,
                    _ => 0,
                };
            }
        }
        1 | 58 => {
            for kv in paren.split(',') {
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
    if matches!(proto, 6 | 17) && dport.is_none() {
        return Parsed::Bad(format!("{name} without a destination port: `{conn}`"));
    }
    let iface = text
        .split([' ', ','])
        .find_map(|w| w.strip_prefix("in:"))
        .filter(|i| !i.is_empty())
        .map(String::from);
    Parsed::Event(Box::new(r), iface)
}

/// A `journalctl -o json` record: its MESSAGE read as nf_log text, its
/// time from `__REALTIME_TIMESTAMP` (µs).
pub fn parse_journald(line: &str, _clock: &Clock) -> Parsed {
    let v: serde_json::Value = match serde_json::from_str(line) {
        Ok(v) => v,
        Err(e) => return Parsed::Bad(format!("not a JSON record: {e}")),
    };
    // MESSAGE is a string, or an array of bytes when it is not UTF-8.
    let msg = match &v["MESSAGE"] {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Array(a) => {
            let bytes: Vec<u8> = a
                .iter()
                .filter_map(|b| b.as_u64())
                .map(|b| b as u8)
                .collect();
            String::from_utf8_lossy(&bytes).into_owned()
        }
        _ => return Parsed::Other,
    };
    let ts = v["__REALTIME_TIMESTAMP"]
        .as_str()
        .and_then(|s| s.parse::<i64>().ok())
        .map(|us| us * 1000);
    if ts.is_none() && msg.contains("SRC=") {
        return Parsed::Bad("no __REALTIME_TIMESTAMP".into());
    }
    // The kernel's own "[uptime]" is not in MESSAGE; a prefix may be.
    parse_nflog(&msg, ts)
}

#[cfg(test)]
mod tests;
