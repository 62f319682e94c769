//! Which events a query returns: a time range and optional family,
//! protocol, interface, source prefix and port range.

use std::net::IpAddr;

use crate::record::Record;

/// Which events a query returns.
#[derive(Clone, Debug, Default)]
pub struct Filter {
    /// Inclusive start, exclusive end, Unix ns.
    pub from_ns: i64,
    pub to_ns: i64,
    pub family: Option<u8>,
    pub proto: Option<u8>,
    pub ifindex: Option<u32>,
    /// Source network (address, prefix length).
    pub src: Option<(IpAddr, u8)>,
    /// Destination ports, inclusive (protocols without ports never match).
    pub ports: Option<(u16, u16)>,
    /// Only these source addresses (who they are: a country, network or
    /// tag resolved against the store's `origins`).
    pub sources: Option<std::sync::Arc<std::collections::HashSet<IpAddr>>>,
}

impl Filter {
    /// Everything in `[from, to)`.
    pub fn range(from_ns: i64, to_ns: i64) -> Filter {
        Filter {
            from_ns,
            to_ns,
            ..Filter::default()
        }
    }

    /// Does `r` match? (Blocks are chosen by time in SQL; every record
    /// of them is checked here.)
    pub fn matches(&self, r: &Record) -> bool {
        if r.ts_ns < self.from_ns || r.ts_ns >= self.to_ns {
            return false;
        }
        if self.family.is_some_and(|f| f != r.family) || self.proto.is_some_and(|p| p != r.proto) {
            return false;
        }
        if self.ifindex.is_some_and(|i| i != r.ifindex) {
            return false;
        }
        if let Some((lo, hi)) = self.ports {
            if !r.has_ports() || r.dport < lo || r.dport > hi {
                return false;
            }
        }
        if let Some(set) = &self.sources {
            if r.src_prefix().is_some() || !r.src.is_some_and(|a| set.contains(&a)) {
                return false;
            }
        }
        match (self.src, r.src) {
            (None, _) => true,
            (Some((net, len)), Some(a)) => in_prefix(a, net, len),
            (Some(_), None) => false,
        }
    }
}

/// Is `a` inside `net/len`?
pub fn in_prefix(a: IpAddr, net: IpAddr, len: u8) -> bool {
    match (a, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            let len = len.min(32) as u32;
            let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            let len = len.min(128) as u32;
            let mask = if len == 0 {
                0
            } else {
                u128::MAX << (128 - len)
            };
            u128::from(a) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}
