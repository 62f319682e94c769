//! The time framings of log lines, and the clock that reads them.
//!
//! A firewall line's time comes from its framing, not from the firewall's
//! text (nf_log prints none):
//! - ISO / RFC 3339 (syslog-ng, rsyslog's high-precision format,
//!   `dmesg --time-format iso`): `2026-11-25T18:00:00.123456+00:00 host
//!   tag: …`, a comma accepted before the fraction, no zone read in the
//!   [`Clock`]'s zone;
//! - RFC 3164 syslog: `Nov 25 18:00:00 host tag: …`, no year and no zone:
//!   the year is the latest that does not put the line more than a day
//!   ahead of now (a December line read in January is last year's);
//! - Mikrotik's own: `nov/25/2026 18:00:00 …`, or `18:00:00 topics …`
//!   (today's);
//! - the kernel's `[12345.678901]` stamp: seconds since boot, used only
//!   when nothing else dates the line (boot time from `/proc/stat`'s
//!   `btime`, so it holds for lines of this boot only).

use chrono::{
    DateTime, Datelike, FixedOffset, Local, NaiveDate, NaiveDateTime, NaiveTime, Offset, TimeZone,
    Utc,
};
use thiserror::Error;

/// A line's time framing that cannot be read.
#[derive(Debug, Error)]
pub enum TimeError {
    /// An ISO time that is not one.
    #[error("unreadable time `{text}`")]
    Iso { text: String },
    /// A syslog month without a day and a time after it.
    #[error("unreadable syslog time")]
    SyslogFields,
    /// A syslog time that is not a time (or not a date of the year).
    #[error("unreadable syslog time `{text}`")]
    Syslog { text: String },
    /// A Mikrotik `mon/dd/yyyy hh:mm:ss` that is not a time.
    #[error("unreadable time `{date} {time}`")]
    Mikrotik { date: String, time: String },
}

/// A `--tz` that is not a zone.
#[derive(Debug, Error)]
#[error("`{text}` is not a zone: use utc, local or an offset like +01:00")]
pub struct ZoneError {
    /// What was given.
    pub text: String,
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
    /// This machine's clock: now, and its boot time.
    pub fn system(zone: FixedOffset, year: Option<i32>) -> Clock {
        Clock {
            zone,
            year,
            now_ns: crate::record::now_ns(),
            boot_ns: boot_time_ns(),
        }
    }

    fn local(&self, t: NaiveDateTime) -> Option<i64> {
        self.zone
            .from_local_datetime(&t)
            .single()?
            .timestamp_nanos_opt()
    }
}

/// This machine's boot time, Unix ns (`btime` of `/proc/stat`).
fn boot_time_ns() -> Option<i64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let btime: i64 = stat
        .lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()?;
    Some(btime * 1_000_000_000)
}

/// A zone: `utc` (or `z`), `local` (this machine's offset now) or an
/// offset like `+01:00`, `-05:30`, `+2`.
pub fn parse_zone(s: &str) -> Result<FixedOffset, ZoneError> {
    match s.to_ascii_lowercase().as_str() {
        "utc" | "z" => return Ok(Utc.fix()),
        "local" => return Ok(Local::now().offset().fix()),
        _ => {}
    }
    let err = || ZoneError { text: s.into() };
    let (sign, rest) = match s.as_bytes().first() {
        Some(b'+') => (1, &s[1..]),
        Some(b'-') => (-1, &s[1..]),
        _ => return Err(err()),
    };
    let (h, m) = rest.split_once(':').unwrap_or((rest, "0"));
    let (h, m): (i32, i32) = (h.parse().map_err(|_| err())?, m.parse().map_err(|_| err())?);
    if h > 14 || m > 59 {
        return Err(err());
    }
    FixedOffset::east_opt(sign * (h * 3600 + m * 60)).ok_or_else(err)
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
    let t = NaiveTime::parse_from_str(hms, "%H:%M:%S%.f").ok()?;
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

/// Splits the time framing off a log line (see the module's doc for the
/// framings). Returns the time (None: no time in the line) and the rest,
/// the host and tag of a syslog line skipped.
pub fn split_time<'a>(line: &'a str, clock: &Clock) -> Result<(Option<i64>, &'a str), TimeError> {
    let line = line.trim_start();
    let first = line.split_whitespace().next().unwrap_or("");
    let b = first.as_bytes();
    let (ts, rest) = if first.len() >= 19 && b[4] == b'-' && b[10] == b'T' {
        iso(first, line, clock)?
    } else if let Some(mon) = month(first) {
        syslog(mon, line, clock)?
    } else if first.len() == 11 && b[3] == b'/' {
        mikrotik_date(first, line, clock)?
    } else if first.len() == 8 && b[2] == b':' && b[5] == b':' {
        today(first, line, clock)
    } else {
        (None, line)
    };
    Ok(kernel_stamp(ts, rest, clock))
}

/// `2026-11-25T18:00:00.123456+00:00 host tag: …` (or with a comma, or
/// no zone).
fn iso<'a>(first: &str, line: &'a str, clock: &Clock) -> Result<(Option<i64>, &'a str), TimeError> {
    let norm = first.replacen(',', ".", 1);
    let ts = DateTime::parse_from_rfc3339(&norm)
        .ok()
        .and_then(|t| t.timestamp_nanos_opt())
        .or_else(|| {
            NaiveDateTime::parse_from_str(&norm, "%Y-%m-%dT%H:%M:%S%.f")
                .ok()
                .and_then(|t| clock.local(t))
        });
    if ts.is_none() {
        return Err(TimeError::Iso { text: first.into() });
    }
    Ok((ts, skip_host_tag(line[first.len()..].trim_start())))
}

/// `Nov 25 18:00:00 host kernel: …`.
fn syslog<'a>(mon: u32, line: &'a str, clock: &Clock) -> Result<(Option<i64>, &'a str), TimeError> {
    let mut it = line.split_whitespace();
    let (_, day, hms) = (it.next(), it.next(), it.next());
    let (Some(day), Some(hms)) = (day.and_then(|d| d.parse().ok()), hms) else {
        return Err(TimeError::SyslogFields);
    };
    let ts = syslog_time(mon, day, hms, clock);
    if ts.is_none() {
        return Err(TimeError::Syslog { text: hms.into() });
    }
    let skip = line.find(hms).map(|i| i + hms.len()).unwrap_or(0);
    Ok((ts, skip_host_tag(line[skip..].trim_start())))
}

/// Mikrotik's `nov/25/2026 18:00:00 …`.
fn mikrotik_date<'a>(
    first: &str,
    line: &'a str,
    clock: &Clock,
) -> Result<(Option<i64>, &'a str), TimeError> {
    let mut p = first.split('/');
    let (m, d, y) = (p.next(), p.next(), p.next());
    let hms = line.split_whitespace().nth(1).unwrap_or("");
    let date = m
        .and_then(month)
        .zip(d.and_then(|d| d.parse().ok()))
        .zip(y.and_then(|y| y.parse().ok()))
        .and_then(|((m, d), y)| NaiveDate::from_ymd_opt(y, m, d));
    let t = NaiveTime::parse_from_str(hms, "%H:%M:%S").ok();
    let ts = date.zip(t).and_then(|(d, t)| clock.local(d.and_time(t)));
    if ts.is_none() {
        return Err(TimeError::Mikrotik {
            date: first.into(),
            time: hms.into(),
        });
    }
    let skip = line.find(hms).map(|i| i + hms.len()).unwrap_or(0);
    Ok((ts, line[skip..].trim_start()))
}

/// Mikrotik's own log: `18:00:00 firewall,info …`, today's (None when
/// it is not a time).
fn today<'a>(first: &str, line: &'a str, clock: &Clock) -> (Option<i64>, &'a str) {
    let t = NaiveTime::parse_from_str(first, "%H:%M:%S").ok();
    let today = DateTime::from_timestamp_nanos(clock.now_ns)
        .with_timezone(&clock.zone)
        .date_naive();
    let ts = t.and_then(|t| clock.local(today.and_time(t)));
    (ts, line[first.len()..].trim_start())
}

/// A kernel stamp `[12345.678901] ` (seconds since boot) at the start of
/// `rest` is skipped; it dates the line only when nothing else did.
fn kernel_stamp<'a>(ts: Option<i64>, rest: &'a str, clock: &Clock) -> (Option<i64>, &'a str) {
    let Some(inner) = rest.strip_prefix('[') else {
        return (ts, rest);
    };
    let Some(end) = inner.find(']') else {
        return (ts, rest);
    };
    let Ok(up) = inner[..end].trim().parse::<f64>() else {
        return (ts, rest);
    };
    let ts = ts.or_else(|| clock.boot_ns.map(|b| b + (up * 1e9) as i64));
    (ts, inner[end + 1..].trim_start())
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::input::test_support::{clock, ns};

    fn split(line: &str) -> (Option<i64>, &str) {
        split_time(line, &clock()).unwrap_or_else(|e| panic!("{line}\n→ {e}"))
    }

    #[test]
    fn each_framing_gives_its_time_and_the_text_after_it() {
        let boot = clock().boot_ns.unwrap();
        assert_eq!(
            split("[ 1234.567890] fw: IN=eth0"),
            (Some(boot + 1_234_567_890_000), "fw: IN=eth0")
        );
        assert_eq!(
            split("Nov 25 14:00:01 gw kernel: [1234.5] fw: IN=eth0"),
            (Some(ns("2026-11-25T14:00:01Z")), "fw: IN=eth0"),
            "the syslog time wins over the uptime, which is skipped"
        );
        assert_eq!(
            split("2026-11-25T14:00:03.123456+01:00 gw kernel: IN=wan0"),
            (Some(ns("2026-11-25T13:00:03.123456Z")), "IN=wan0")
        );
        assert_eq!(
            split("2026-11-25T14:00:04,5 fw: IN=wan0").0,
            Some(ns("2026-11-25T14:00:04.5Z")),
            "a comma before the fraction, no zone: the clock's"
        );
        assert_eq!(
            split("nov/25/2026 14:00:07 firewall,info input: in:ether1"),
            (
                Some(ns("2026-11-25T14:00:07Z")),
                "firewall,info input: in:ether1"
            )
        );
        assert_eq!(
            split("14:00:06 firewall,info drop"),
            (Some(ns("2026-11-25T14:00:06Z")), "firewall,info drop")
        );
        assert_eq!(
            split("Nov 25 14:00:05 router firewall,info input: in:ether1"),
            (Some(ns("2026-11-25T14:00:05Z")), "input: in:ether1"),
            "Mikrotik over syslog: host and topics skipped"
        );
        assert_eq!(split("fw: IN=eth0"), (None, "fw: IN=eth0"));
    }

    #[test]
    fn syslog_years_and_zones_come_from_the_clock() {
        let mut c = clock();
        // Now is 2026-11-25: a December line is last year's, a line of
        // tomorrow this year's, one of the day after last year's.
        let at = |line: &str, c: &Clock| split_time(line, c).unwrap().0.unwrap();
        assert_eq!(
            at("Dec 31 23:59:59 gw k: x", &c),
            ns("2025-12-31T23:59:59Z")
        );
        assert_eq!(
            at("Nov 26 15:00:00 gw k: x", &c),
            ns("2026-11-26T15:00:00Z")
        );
        assert_eq!(
            at("Nov 27 15:00:00 gw k: x", &c),
            ns("2025-11-27T15:00:00Z")
        );
        c.year = Some(2020);
        assert_eq!(
            at("Dec 31 23:59:59 gw k: x", &c),
            ns("2020-12-31T23:59:59Z")
        );
        c.zone = parse_zone("+02:00").unwrap();
        assert_eq!(
            at("Jan 01 02:00:00 gw k: x", &c),
            ns("2020-01-01T00:00:00Z")
        );
        assert_eq!(
            at("2026-11-25T14:00:00Z gw k: x", &c),
            ns("2026-11-25T14:00:00Z"),
            "a time with its zone keeps it"
        );
        // Without a boot time a bare uptime dates nothing.
        c.boot_ns = None;
        assert_eq!(split_time("[ 1.0] fw: x", &c).unwrap(), (None, "fw: x"));
    }

    #[test]
    fn unreadable_framings_are_named() {
        for (line, want) in [
            (
                "2026-13-45T99:00:00Z gw kernel: x",
                "unreadable time `2026-13-45T99:00:00Z`",
            ),
            ("Nov gw kernel: x", "unreadable syslog time"),
            ("Nov 25 gw kernel: x", "unreadable syslog time `gw`"),
            (
                "Feb 30 10:00:00 gw kernel: x",
                "unreadable syslog time `10:00:00`",
            ),
            (
                "nov/31/2026 10:00:00 x",
                "unreadable time `nov/31/2026 10:00:00`",
            ),
        ] {
            let e = split_time(line, &clock()).unwrap_err();
            assert_eq!(e.to_string(), want, "{line}");
        }
    }

    #[test]
    fn zones_parse() {
        assert_eq!(parse_zone("utc").unwrap().local_minus_utc(), 0);
        assert_eq!(parse_zone("+01:00").unwrap().local_minus_utc(), 3600);
        assert_eq!(parse_zone("-05:30").unwrap().local_minus_utc(), -19800);
        assert!(parse_zone("local").is_ok());
        for bad in ["+25:00", "CET", "1", "+01:99"] {
            assert!(parse_zone(bad).is_err(), "{bad}");
        }
    }
}
