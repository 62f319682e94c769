//! Text formats: address lists for tags, and CSV range tables for
//! countries and ASNs.
//!
//! A list has one entry per line: an address, a CIDR or a range
//! (`a-b`, or `a b` as DShield's block list writes its start and end).
//! Comments start with `#` or `;` (and run to the end of the line, as in
//! Spamhaus DROP's `1.2.3.0/24 ; SBL123`), or `//`; blank lines are
//! skipped. Anything after the first field (a comma, a tab, a space) is
//! ignored, so FireHOL netsets, Emerging Threats, blocklist.de, Tor exit
//! lists, DShield block.txt and plain `ip,comment` CSVs all read. A
//! line that is none of these is counted, not fatal.
//!
//! A CSV range table has `first,last,value...` per line, the addresses as
//! text (ip-location-db's `asn-ipv4.csv`, `dbip-country-ipv4.csv`):
//! `first,last,ASN,organisation` for ASNs and `first,last,CC` for
//! countries; a header line and quoted fields are understood.

use std::net::IpAddr;

use super::ranges::parse_range;

/// What reading a file gave: ranges and the lines that were not entries.
#[derive(Debug)]
pub struct Parsed<V> {
    pub ranges: Vec<(IpAddr, IpAddr, V)>,
    pub bad_lines: u64,
    /// The first bad line (number, text), for the message.
    pub first_bad: Option<(u64, String)>,
}

impl<V> Default for Parsed<V> {
    fn default() -> Parsed<V> {
        Parsed {
            ranges: Vec::new(),
            bad_lines: 0,
            first_bad: None,
        }
    }
}

impl<V> Parsed<V> {
    fn bad(&mut self, n: u64, line: &str) {
        self.bad_lines += 1;
        if self.first_bad.is_none() {
            self.first_bad = Some((n, line.chars().take(80).collect()));
        }
    }
}

/// The entry of one list line, without its comment; None for a comment
/// or blank line, Some(Err) for a line that is no entry.
fn list_entry(line: &str) -> Option<Result<(IpAddr, IpAddr), ()>> {
    let mut s = line;
    for c in ["#", ";", "//"] {
        if let Some(i) = s.find(c) {
            s = &s[..i];
        }
    }
    let s = s.trim();
    if s.is_empty() {
        return None;
    }
    let s = s.replace(" - ", "-");
    let mut fields = s.split([',', '\t', ' ', '|']).filter(|f| !f.is_empty());
    let first = fields.next()?;
    // DShield's block.txt: start, end, prefix length, ...; a header line
    // ("Start End Netblock ...") is not an entry.
    if let (Ok(a), Some(Ok(b))) = (
        first.parse::<IpAddr>(),
        fields.next().map(|f| f.parse::<IpAddr>()),
    ) {
        return Some(if a.is_ipv4() == b.is_ipv4() && a <= b {
            Ok((a, b))
        } else {
            Err(())
        });
    }
    Some(parse_range(first).ok_or(()))
}

/// Reads a list of addresses, CIDRs and ranges.
pub fn parse_list(text: &str) -> Parsed<()> {
    let mut p = Parsed::default();
    for (i, line) in text.lines().enumerate() {
        match list_entry(line) {
            None => {}
            Some(Ok((a, b))) => p.ranges.push((a, b, ())),
            Some(Err(())) => p.bad(i as u64 + 1, line),
        }
    }
    p
}

/// Splits one CSV line (RFC 4180 quoting; no line breaks inside fields).
pub fn csv_fields(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                cur.push('"');
                chars.next();
            }
            ('"', true) => quoted = false,
            ('"', false) if cur.is_empty() => quoted = true,
            (',', false) => out.push(std::mem::take(&mut cur)),
            (c, _) => cur.push(c),
        }
    }
    out.push(cur);
    out
}

/// Reads a CSV range table; `value` turns the fields after the two
/// addresses into a value (None: a bad line).
pub fn parse_csv<V>(text: &str, value: impl Fn(&[String]) -> Option<V>) -> Parsed<V> {
    let mut p = Parsed::default();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let f = csv_fields(line);
        let (a, b) = match (
            f.first().and_then(|s| s.trim().parse::<IpAddr>().ok()),
            f.get(1).and_then(|s| s.trim().parse::<IpAddr>().ok()),
        ) {
            (Some(a), Some(b)) => (a, b),
            // A header line is not counted as bad.
            _ if i == 0 => continue,
            _ => {
                p.bad(i as u64 + 1, line);
                continue;
            }
        };
        if a.is_ipv4() != b.is_ipv4() || a > b {
            p.bad(i as u64 + 1, line);
            continue;
        }
        match value(&f[2..]) {
            Some(v) => p.ranges.push((a, b, v)),
            None => p.bad(i as u64 + 1, line),
        }
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn common_block_list_formats_read_and_bad_lines_are_counted() {
        let text = "\
# FireHOL-style netset
198.51.100.0/24
203.0.113.7
; Spamhaus DROP
192.0.2.0/25 ; SBL000001
// a C-style comment line
2001:db8:1::/48 # an IPv6 network

Start\tEnd\tNetblock\tAttacks
198.18.5.0\t198.18.5.255\t24\t1234\tsome org
198.18.7.1,scanner seen on 2026-11-01
198.18.8.1-198.18.8.9
not-an-address
10.0.0.0/40
198.18.9.9 - 198.18.9.1
";
        let p = parse_list(text);
        let got: Vec<(IpAddr, IpAddr)> = p.ranges.iter().map(|r| (r.0, r.1)).collect();
        assert_eq!(
            got,
            vec![
                (ip("198.51.100.0"), ip("198.51.100.255")),
                (ip("203.0.113.7"), ip("203.0.113.7")),
                (ip("192.0.2.0"), ip("192.0.2.127")),
                (
                    ip("2001:db8:1::"),
                    ip("2001:db8:1:ffff:ffff:ffff:ffff:ffff")
                ),
                (ip("198.18.5.0"), ip("198.18.5.255")),
                (ip("198.18.7.1"), ip("198.18.7.1")),
                (ip("198.18.8.1"), ip("198.18.8.9")),
            ]
        );
        // The header, the non-address, the /40 and the reversed range.
        assert_eq!(p.bad_lines, 4);
        assert_eq!(p.first_bad.unwrap().0, 9);
    }

    #[test]
    fn csv_ranges_with_quotes_headers_and_bad_lines() {
        let text = "\
ip_range_start,ip_range_end,autonomous_system_number,autonomous_system_organization
1.0.0.0,1.0.0.255,13335,\"Cloudflare, Inc.\"
1.0.4.0,1.0.7.255,38803,Gtelecom Pty Ltd
2001:db8::,2001:db8:ffff:ffff:ffff:ffff:ffff:ffff,64496,\"Doc \"\"Net\"\"\"
1.0.8.0,1.0.8.255,notanumber,x
1.0.9.0,2001:db8::1,1,x
1.0.10.0
";
        let p = parse_csv(text, |f| {
            Some((f.first()?.trim().parse::<u32>().ok()?, f.get(1)?.clone()))
        });
        assert_eq!(p.ranges.len(), 3);
        assert_eq!(p.ranges[0].2, (13335, "Cloudflare, Inc.".to_string()));
        assert_eq!(p.ranges[2].2, (64496, "Doc \"Net\"".to_string()));
        assert_eq!(p.bad_lines, 3);
    }
}
