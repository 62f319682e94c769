//! The text forms of durations, times, prefixes and protocols, as the
//! command line (clap parses its values with these `FromStr`s) and the
//! console's query parameters write them. (Published services are a
//! sensor concept: `sensor::service`.)

use std::{fmt, net::IpAddr, str::FromStr, time::Duration};

use thiserror::Error;

/// A value that does not read; the message says what would.
#[derive(Debug, Error)]
pub enum UnitError {
    /// Not a duration.
    #[error("invalid duration `{text}` ({reason}); use e.g. 30s, 5m, 1h, 2d")]
    Duration {
        text: String,
        reason: humantime::DurationError,
    },
    /// Not a time, `now` or a time ago.
    #[error("invalid time `{text}`; use RFC 3339 (2026-11-23T08:00:00Z), `now`, or how long ago (2h, 3d)")]
    Time { text: String },
    /// Not an address prefix.
    #[error("invalid prefix `{text}`; use e.g. 198.51.100.0/24 or 2001:db8::/32")]
    Prefix { text: String },
    /// Not a protocol name or number.
    #[error(
        "invalid protocol `{text}`; use tcp, udp, icmp, icmpv6, sctp, udplite, dccp or a number"
    )]
    Proto { text: String },
}

/// A duration such as `30s`, `5m`, `1h30m`, `2d`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HumanDuration(pub Duration);

impl FromStr for HumanDuration {
    type Err = UnitError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        humantime::parse_duration(s)
            .map(HumanDuration)
            .map_err(|reason| UnitError::Duration {
                text: s.into(),
                reason,
            })
    }
}

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", humantime::format_duration(self.0))
    }
}

/// A point in time: RFC 3339 (`2026-11-23T08:00:00Z`), `now`, or a
/// duration meaning that long ago (`2h`, `-2h`, `3d`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimeArg(pub i64);

impl FromStr for TimeArg {
    type Err = UnitError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if s == "now" {
            return Ok(TimeArg(crate::record::now_ns()));
        }
        if let Some(ns) = crate::record::parse_rfc3339_ns(s) {
            return Ok(TimeArg(ns));
        }
        let ago = s
            .strip_prefix('-')
            .unwrap_or(s)
            .strip_suffix(" ago")
            .unwrap_or(s.strip_prefix('-').unwrap_or(s));
        match humantime::parse_duration(ago) {
            Ok(d) => Ok(TimeArg(crate::record::now_ns() - d.as_nanos() as i64)),
            Err(_) => Err(UnitError::Time { text: s.into() }),
        }
    }
}

/// An address prefix such as `198.51.100.0/24` or `2001:db8::/32` (a bare
/// address is a /32 or /128).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr(pub IpAddr, pub u8);

impl FromStr for Cidr {
    type Err = UnitError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || UnitError::Prefix { text: s.into() };
        let (a, len) = match s.split_once('/') {
            Some((a, l)) => (a, Some(l.parse::<u8>().map_err(|_| err())?)),
            None => (s, None),
        };
        let addr: IpAddr = a.parse().map_err(|_| err())?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let len = len.unwrap_or(max);
        if len > max {
            return Err(err());
        }
        Ok(Cidr(addr, len))
    }
}

/// An IP protocol by name (tcp, udp, icmp, icmpv6, sctp, udplite, dccp)
/// or number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProtoArg(pub u8);

impl FromStr for ProtoArg {
    type Err = UnitError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        fireplot_common::proto::proto_named(s)
            .or_else(|| s.parse::<u8>().ok())
            .map(ProtoArg)
            .ok_or_else(|| UnitError::Proto { text: s.into() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_prefixes_protocols_parse() {
        assert_eq!(
            "2027-01-15T08:00:00Z".parse::<TimeArg>().unwrap().0,
            1_800_000_000_000_000_000
        );
        let now = crate::record::now_ns();
        let two_h = "2h".parse::<TimeArg>().unwrap().0;
        assert!((now - 7_200_000_000_000 - two_h).abs() < 5_000_000_000);
        assert_eq!(
            "-2h".parse::<TimeArg>().unwrap().0 / 1_000_000_000,
            two_h / 1_000_000_000
        );
        assert!("yesterday-ish".parse::<TimeArg>().is_err());
        assert_eq!(
            "198.18.0.0/15".parse::<Cidr>().unwrap(),
            Cidr("198.18.0.0".parse().unwrap(), 15)
        );
        assert_eq!("2001:db8::1".parse::<Cidr>().unwrap().1, 128);
        assert!("198.18.0.0/33".parse::<Cidr>().is_err());
        assert_eq!("TCP".parse::<ProtoArg>().unwrap().0, 6);
        assert_eq!("47".parse::<ProtoArg>().unwrap().0, 47);
        assert_eq!("sctp".parse::<ProtoArg>().unwrap().0, 132);
        assert_eq!("UDPLite".parse::<ProtoArg>().unwrap().0, 136);
        assert_eq!("dccp".parse::<ProtoArg>().unwrap().0, 33);
        assert!("gre?".parse::<ProtoArg>().is_err());
    }

    #[test]
    fn durations_parse() {
        assert_eq!(
            "5m".parse::<HumanDuration>().unwrap().0,
            Duration::from_secs(300)
        );
        assert_eq!(
            "1h30m".parse::<HumanDuration>().unwrap().0,
            Duration::from_secs(5400)
        );
        assert!("soon".parse::<HumanDuration>().is_err());
    }
}
