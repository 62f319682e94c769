//! Published services: inbound traffic to them is `service`, not an event.

use std::str::FromStr;

use thiserror::Error;

/// Errors of reading a service.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ServiceError {
    /// Not `tcp/PORT`, `udp/PORT`, a range of either, or `icmp`.
    #[error("invalid service `{text}`; use tcp/PORT, udp/PORT, tcp/FIRST-LAST or icmp")]
    Invalid { text: String },
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
    type Err = ServiceError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let lower = s.to_ascii_lowercase();
        if lower == "icmp" || lower == "ping" {
            return Ok(Service::IcmpEcho);
        }
        let err = || ServiceError::Invalid { text: s.into() };
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
}
