//! Parsing of command-line units: durations and published services.

use std::{fmt, str::FromStr, time::Duration};

/// A duration such as `30s`, `5m`, `1h30m`, `2d`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HumanDuration(pub Duration);

impl FromStr for HumanDuration {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        humantime::parse_duration(s)
            .map(HumanDuration)
            .map_err(|e| format!("invalid duration `{s}` ({e}); use e.g. 30s, 5m, 1h, 2d"))
    }
}

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", humantime::format_duration(self.0))
    }
}

/// A published service: `tcp/443`, `udp/53`, `tcp/8000-8080`, or `icmp`
/// (the router answers echo requests).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Service {
    Tcp { first: u16, last: u16 },
    Udp { first: u16, last: u16 },
    IcmpEcho,
}

impl FromStr for Service {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let lower = s.to_ascii_lowercase();
        if lower == "icmp" || lower == "ping" {
            return Ok(Service::IcmpEcho);
        }
        let err =
            || format!("invalid service `{s}`; use tcp/PORT, udp/PORT, tcp/FIRST-LAST or icmp");
        let (proto, ports) = lower.split_once('/').ok_or_else(err)?;
        let (first, last) = match ports.split_once('-') {
            Some((a, b)) => (
                a.parse::<u16>().map_err(|_| err())?,
                b.parse::<u16>().map_err(|_| err())?,
            ),
            None => {
                let p = ports.parse::<u16>().map_err(|_| err())?;
                (p, p)
            }
        };
        if first > last {
            return Err(err());
        }
        match proto {
            "tcp" => Ok(Service::Tcp { first, last }),
            "udp" => Ok(Service::Udp { first, last }),
            _ => Err(err()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn services_parse() {
        assert_eq!(
            "tcp/443".parse::<Service>().unwrap(),
            Service::Tcp {
                first: 443,
                last: 443
            }
        );
        assert_eq!(
            "UDP/53".parse::<Service>().unwrap(),
            Service::Udp {
                first: 53,
                last: 53
            }
        );
        assert_eq!(
            "tcp/8000-8080".parse::<Service>().unwrap(),
            Service::Tcp {
                first: 8000,
                last: 8080
            }
        );
        assert_eq!("icmp".parse::<Service>().unwrap(), Service::IcmpEcho);
        for bad in ["tcp", "tcp/", "tcp/70000", "sctp/1", "tcp/9-1", "443"] {
            assert!(bad.parse::<Service>().is_err(), "{bad} should not parse");
        }
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
