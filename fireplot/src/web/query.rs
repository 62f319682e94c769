//! Query parameters of the console: every one parsed and bounded, unknown
//! ones refused. A bad parameter is a 400 with a message saying which and why.

use std::{collections::BTreeMap, net::IpAddr};

use chrono::{NaiveDate, TimeZone};

use crate::{
    plot::{layout::Zone, Theme},
    record::GroupBy,
    store::Filter,
    units::{Cidr, HumanDuration, ProtoArg, TimeArg, UnitError},
};

const NS: i64 = 1_000_000_000;
const DAY_NS: i64 = 86_400 * NS;
/// The longest range one request may cover.
pub const MAX_RANGE_NS: i64 = 400 * DAY_NS;
/// Longest value of any parameter (a CIDR or an RFC 3339 time is far shorter).
const MAX_VALUE: usize = 64;

/// A rejected request: the message goes back to the client as text.
#[derive(Debug, PartialEq, Eq)]
pub struct Bad(pub String);

impl std::fmt::Display for Bad {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Parameters every view takes.
pub const VIEW_KEYS: &[&str] = &[
    "from", "to", "last", "day", "since", "proto", "family", "src", "ports", "iface", "w", "h",
    "theme", "utc", "country", "asn", "tag", "color",
];

/// Raw parameters, checked against the keys an endpoint accepts. `token`
/// is the guard's and never reaches here as a filter.
#[derive(Debug)]
pub struct Params(BTreeMap<String, String>);

impl Params {
    pub fn new(raw: Vec<(String, String)>, allowed: &[&[&str]]) -> Result<Params, Bad> {
        let mut map = BTreeMap::new();
        for (k, v) in raw {
            if k == "token" {
                continue;
            }
            if !allowed.iter().any(|set| set.contains(&k.as_str())) {
                return Err(Bad(format!("unknown parameter `{}`", clip(&k))));
            }
            if v.len() > MAX_VALUE {
                return Err(Bad(format!("parameter `{k}` is too long")));
            }
            if map.insert(k.clone(), v).is_some() {
                return Err(Bad(format!("parameter `{k}` given twice")));
            }
        }
        Ok(Params(map))
    }

    pub fn get(&self, k: &str) -> Option<&str> {
        self.0.get(k).map(String::as_str).filter(|v| !v.is_empty())
    }

    /// An integer parameter within `lo..=hi`.
    pub fn int(&self, k: &str, lo: i64, hi: i64) -> Result<Option<i64>, Bad> {
        match self.get(k) {
            None => Ok(None),
            Some(v) => match v.parse::<i64>() {
                Ok(n) if (lo..=hi).contains(&n) => Ok(Some(n)),
                _ => Err(Bad(format!(
                    "parameter `{k}` must be an integer from {lo} to {hi}, not `{}`",
                    clip(v)
                ))),
            },
        }
    }

    pub fn flag(&self, k: &str) -> Result<bool, Bad> {
        match self.get(k) {
            None | Some("0") | Some("false") => Ok(false),
            Some("1") | Some("true") => Ok(true),
            Some(v) => Err(Bad(format!(
                "parameter `{k}` must be 0 or 1, not `{}`",
                clip(v)
            ))),
        }
    }
}

/// Text from a request, cut short and reduced to harmless characters
/// before it is put in a message (no markup, no control characters).
pub fn clip(s: &str) -> String {
    s.chars()
        .take(160)
        .map(|c| {
            if c.is_ascii_alphanumeric() || " .:-/_,()'`=+;".contains(c) {
                c
            } else {
                '?'
            }
        })
        .collect()
}

/// What one view of the history shows.
#[derive(Clone, Debug)]
pub struct View {
    pub filter: Filter,
    /// The interface name asked for (resolved into `filter.ifindex` by the caller).
    pub iface: Option<String>,
    pub width: u32,
    pub height: u32,
    pub theme: Theme,
    pub utc: bool,
    /// The day shown, for day pages (previous / next links).
    pub day: Option<NaiveDate>,
    /// A range that ends now (the live page).
    pub live: bool,
    /// Who the sources are (resolved into `filter.sources` by the caller).
    pub origin: OriginFilter,
    /// What the dots' colour says: protocol (default), country or network.
    pub color: GroupBy,
}

/// `country=NL`, `asn=64496` (or AS64496), `tag=research_scanner`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OriginFilter {
    pub country: Option<String>,
    pub asn: Option<u32>,
    pub tag: Option<String>,
}

impl OriginFilter {
    pub fn any(&self) -> bool {
        self.country.is_some() || self.asn.is_some() || self.tag.is_some()
    }

    fn parse(p: &Params) -> Result<OriginFilter, Bad> {
        let country = match p.get("country") {
            None => None,
            Some(v) if v.len() == 2 && v.chars().all(|c| c.is_ascii_alphabetic()) => {
                Some(v.to_ascii_uppercase())
            }
            Some(v) => {
                return Err(Bad(format!(
                    "parameter `country` must be a two-letter code, not `{}`",
                    clip(v)
                )))
            }
        };
        let asn = match p.get("asn") {
            None => None,
            Some(v) => Some(
                v.trim_start_matches("AS")
                    .trim_start_matches("as")
                    .parse::<u32>()
                    .map_err(|_| {
                        Bad(format!(
                            "parameter `asn` must be a number (64496 or AS64496), not `{}`",
                            clip(v)
                        ))
                    })?,
            ),
        };
        let tag = match p.get("tag") {
            None => None,
            Some(v)
                if !v.is_empty()
                    && v.len() <= 32
                    && v.chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') =>
            {
                Some(v.to_string())
            }
            Some(v) => {
                return Err(Bad(format!(
                    "parameter `tag` must be a tag name (letters, digits, _ and -), not `{}`",
                    clip(v)
                )))
            }
        };
        Ok(OriginFilter { country, asn, tag })
    }
}

impl View {
    /// The view the parameters ask for. They are checked in one order
    /// (the range, the filter, then how it is drawn), so a request with
    /// several bad ones is always told of the same one.
    pub fn parse(p: &Params, now_ns: i64) -> Result<View, Bad> {
        let utc = p.flag("utc")?;
        let zone = Zone::new(utc, now_ns);
        let range = Range::parse(p, now_ns, &zone)?;
        let mut filter = Filter::range(range.from, range.to);
        narrow(p, &mut filter)?;
        let theme = theme(p)?;
        let iface = iface(p)?;
        Ok(View {
            filter,
            iface,
            width: p.int("w", 320, 4000)?.unwrap_or(1600) as u32,
            height: p.int("h", 240, 3000)?.unwrap_or(800) as u32,
            theme,
            utc,
            day: range.day,
            live: range.live,
            origin: OriginFilter::parse(p)?,
            color: color(p)?,
        })
    }
}

/// The time range of a view: `day`, `last`, `since=midnight`, or
/// `from`/`to` (a day ending now by default).
struct Range {
    from: i64,
    to: i64,
    /// The day shown, for day pages.
    day: Option<NaiveDate>,
    /// It ends now.
    live: bool,
}

impl Range {
    fn parse(p: &Params, now_ns: i64, zone: &Zone) -> Result<Range, Bad> {
        let mut day = None;
        let mut live = false;
        let (from, to) = if let Some(d) = p.get("day") {
            if p.get("from").is_some() || p.get("to").is_some() || p.get("last").is_some() {
                return Err(Bad("`day` cannot be combined with from/to/last".into()));
            }
            let date = NaiveDate::parse_from_str(d, "%Y-%m-%d").map_err(|_| {
                Bad(format!(
                    "parameter `day` must be YYYY-MM-DD, not `{}`",
                    clip(d)
                ))
            })?;
            day = Some(date);
            day_range(date, zone).ok_or_else(|| Bad("that day is out of range".into()))?
        } else if let Some(l) = p.get("last") {
            if p.get("from").is_some() || p.get("to").is_some() {
                return Err(Bad("`last` cannot be combined with from/to".into()));
            }
            let d: HumanDuration = l.parse().map_err(|e| unit_bad("last", e))?;
            live = true;
            (
                now_ns.saturating_sub(d.0.as_nanos().min(i64::MAX as u128) as i64),
                now_ns,
            )
        } else if p.get("since") == Some("midnight") {
            live = true;
            let today = chrono::DateTime::<chrono::Utc>::from_timestamp_nanos(now_ns)
                .with_timezone(&zone.offset)
                .date_naive();
            (
                day_range(today, zone)
                    .map(|r| r.0)
                    .unwrap_or(now_ns - DAY_NS),
                now_ns,
            )
        } else if let Some(s) = p.get("since") {
            return Err(Bad(format!(
                "parameter `since` can only be `midnight`, not `{}`",
                clip(s)
            )));
        } else {
            let to = time(p, "to")?;
            let from = time(p, "from")?;
            live = to.is_none();
            let to = to.unwrap_or(now_ns);
            (from.unwrap_or(to - DAY_NS), to)
        };
        if to <= from {
            return Err(Bad("the range is empty: `to` must be after `from`".into()));
        }
        if to - from > MAX_RANGE_NS {
            return Err(Bad("the range is longer than 400 days".into()));
        }
        Ok(Range {
            from,
            to,
            day,
            live,
        })
    }
}

/// A text form that did not read, as parameter `k`'s rejection.
fn unit_bad(k: &str, e: UnitError) -> Bad {
    Bad(format!("parameter `{k}`: {}", clip(&e.to_string())))
}

/// `from` or `to`: Unix milliseconds (what the page sends after a zoom),
/// or a time as the command line takes it.
fn time(p: &Params, k: &str) -> Result<Option<i64>, Bad> {
    match p.get(k) {
        None => Ok(None),
        Some(v) => match v.parse::<i64>() {
            Ok(ms) if (0..=i64::MAX / 1_000_000).contains(&ms) => Ok(Some(ms * 1_000_000)),
            Ok(_) => Err(Bad(format!("parameter `{k}` is out of range"))),
            Err(_) => v
                .parse::<TimeArg>()
                .map(|t| Some(t.0))
                .map_err(|e| unit_bad(k, e)),
        },
    }
}

/// `proto`, `family`, `src` and `ports` into the filter.
fn narrow(p: &Params, filter: &mut Filter) -> Result<(), Bad> {
    if let Some(v) = p.get("proto") {
        filter.proto = Some(v.parse::<ProtoArg>().map_err(|e| unit_bad("proto", e))?.0);
    }
    filter.family = match p.get("family") {
        None => None,
        Some("4") => Some(4),
        Some("6") => Some(6),
        Some(v) => {
            return Err(Bad(format!(
                "parameter `family` must be 4 or 6, not `{}`",
                clip(v)
            )))
        }
    };
    if let Some(v) = p.get("src") {
        let c: Cidr = v.parse().map_err(|e| unit_bad("src", e))?;
        filter.src = Some((c.0, c.1));
    }
    if let Some(v) = p.get("ports") {
        filter.ports = Some(parse_ports(v)?);
    }
    Ok(())
}

fn theme(p: &Params) -> Result<Theme, Bad> {
    match p.get("theme") {
        None | Some("dark") => Ok(Theme::Dark),
        Some("light") => Ok(Theme::Light),
        Some(v) => Err(Bad(format!(
            "parameter `theme` must be dark or light, not `{}`",
            clip(v)
        ))),
    }
}

/// A kernel name (15 characters), a capture's `LABEL:NAME`, or a fleet's
/// `SENSOR/NAME`.
fn iface(p: &Params) -> Result<Option<String>, Bad> {
    match p.get("iface") {
        None => Ok(None),
        Some(v)
            if v.len() <= MAX_VALUE
                && !v.contains("..")
                && !v.starts_with('/')
                && v.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.@/:".contains(c)) =>
        {
            Ok(Some(v.to_string()))
        }
        Some(v) => Err(Bad(format!(
            "parameter `iface` is not an interface name: `{}`",
            clip(v)
        ))),
    }
}

fn color(p: &Params) -> Result<GroupBy, Bad> {
    match p.get("color") {
        None => Ok(GroupBy::Proto),
        Some(c) => GroupBy::parse(c).ok_or_else(|| {
            Bad(format!(
                "parameter `color` must be proto, country or asn, not `{}`",
                clip(c)
            ))
        }),
    }
}

/// `[midnight, next midnight)` of `date` in `zone`.
pub fn day_range(date: NaiveDate, zone: &Zone) -> Option<(i64, i64)> {
    let start = zone
        .offset
        .from_local_datetime(&date.and_hms_opt(0, 0, 0)?)
        .single()?
        .timestamp_nanos_opt()?;
    Some((start, start + DAY_NS))
}

/// `80`, `1-1024`.
pub fn parse_ports(v: &str) -> Result<(u16, u16), Bad> {
    let bad = || {
        Bad(format!(
            "parameter `ports` must be a port or a range like 1-1024, not `{}`",
            clip(v)
        ))
    };
    let (lo, hi) = match v.split_once('-') {
        Some((a, b)) => (
            a.trim().parse::<u16>().map_err(|_| bad())?,
            b.trim().parse::<u16>().map_err(|_| bad())?,
        ),
        None => {
            let p = v.trim().parse::<u16>().map_err(|_| bad())?;
            (p, p)
        }
    };
    if lo > hi {
        return Err(bad());
    }
    Ok((lo, hi))
}

/// An address from a path segment.
pub fn parse_ip(v: &str) -> Result<IpAddr, Bad> {
    v.parse()
        .map_err(|_| Bad(format!("`{}` is not an IP address", clip(v))))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(kv: &[(&str, &str)]) -> Result<Params, Bad> {
        Params::new(
            kv.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            &[VIEW_KEYS],
        )
    }

    const NOW: i64 = 1_800_000_000 * NS;

    #[test]
    fn unknown_repeated_and_long_parameters_are_refused() {
        assert!(params(&[("bogus", "1")])
            .unwrap_err()
            .0
            .contains("unknown parameter `bogus`"));
        assert!(params(&[("w", "1"), ("w", "2")]).is_err());
        assert!(params(&[("src", &"1".repeat(100))]).is_err());
        assert!(
            params(&[("token", "x")]).is_ok(),
            "the token is the guard's"
        );
    }

    #[test]
    fn views_are_bounded() {
        let v = |kv: &[(&str, &str)]| View::parse(&params(kv).unwrap(), NOW);
        let d = v(&[]).unwrap();
        assert_eq!(d.filter.to_ns - d.filter.from_ns, DAY_NS);
        assert!(d.live);
        assert!(v(&[
            ("from", "2027-01-01T00:00:00Z"),
            ("to", "2026-01-01T00:00:00Z")
        ])
        .is_err());
        assert!(v(&[
            ("from", "2020-01-01T00:00:00Z"),
            ("to", "2026-01-01T00:00:00Z")
        ])
        .unwrap_err()
        .0
        .contains("400 days"));
        assert!(v(&[("w", "100000")]).is_err());
        assert!(v(&[("src", "10.0.0.0/33")]).is_err());
        assert!(v(&[("src", "not-an-ip")]).is_err());
        assert!(v(&[("ports", "9-1")]).is_err());
        assert!(v(&[("ports", "70000")]).is_err());
        assert!(v(&[("family", "5")]).is_err());
        assert!(v(&[("theme", "pink")]).is_err());
        assert!(v(&[("iface", "../../etc")]).is_err());
        assert!(v(&[("day", "2026-13-01")]).is_err());
        assert!(v(&[("day", "2026-11-01"), ("from", "1")]).is_err());
        let day = v(&[("day", "2026-11-01"), ("utc", "1")]).unwrap();
        assert_eq!(day.filter.to_ns - day.filter.from_ns, DAY_NS);
        assert!(!day.live);
        let ms = v(&[("from", "1800000000000"), ("to", "1800000060000")]).unwrap();
        assert_eq!(ms.filter.from_ns, 1_800_000_000 * NS);
        assert_eq!(ms.filter.to_ns - ms.filter.from_ns, 60 * NS);
        let f = v(&[
            ("proto", "tcp"),
            ("family", "6"),
            ("ports", "1-1024"),
            ("src", "2001:db8::/32"),
        ])
        .unwrap();
        assert_eq!(f.filter.proto, Some(6));
        assert_eq!(f.filter.ports, Some((1, 1024)));
    }
}
