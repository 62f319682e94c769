//! Address range tables: a sorted list of disjoint ranges, each with a
//! value, looked up by binary search. Built from ranges that may touch,
//! overlap or nest: where several cover an address, the narrowest wins
//! (a /24 listed inside its /16 names the /24's holder), and between
//! equally narrow ones the one listed last.

use std::{
    collections::BinaryHeap,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

/// One family's table: `starts[i]..=ends[i]` has `values[i]`.
#[derive(Debug, Default, Clone)]
pub struct Table<K, V> {
    starts: Vec<K>,
    ends: Vec<K>,
    values: Vec<V>,
}

/// Addresses as integers of their family.
pub trait Key: Copy + Ord + std::fmt::Debug {
    const MAX: Self;
    fn succ(self) -> Option<Self>;
    fn pred(self) -> Option<Self>;
    /// Width - 1 (as u128, for comparing narrowness).
    fn span(lo: Self, hi: Self) -> u128;
}

impl Key for u32 {
    const MAX: u32 = u32::MAX;
    fn succ(self) -> Option<u32> {
        self.checked_add(1)
    }
    fn pred(self) -> Option<u32> {
        self.checked_sub(1)
    }
    fn span(lo: u32, hi: u32) -> u128 {
        u128::from(hi - lo)
    }
}

impl Key for u128 {
    const MAX: u128 = u128::MAX;
    fn succ(self) -> Option<u128> {
        self.checked_add(1)
    }
    fn pred(self) -> Option<u128> {
        self.checked_sub(1)
    }
    fn span(lo: u128, hi: u128) -> u128 {
        hi - lo
    }
}

impl<K: Key, V: Clone + PartialEq> Table<K, V> {
    /// Builds the table from `(first, last, value)` ranges in any order
    /// (ranges with last < first are skipped).
    pub fn build(mut ranges: Vec<(K, K, V)>) -> Table<K, V> {
        ranges.retain(|r| r.0 <= r.1);
        // Elementary pieces start at every range start and after every end.
        let mut cuts: Vec<K> = Vec::with_capacity(ranges.len() * 2);
        for r in &ranges {
            cuts.push(r.0);
            if let Some(n) = r.1.succ() {
                cuts.push(n);
            }
        }
        cuts.sort_unstable();
        cuts.dedup();
        let mut order: Vec<usize> = (0..ranges.len()).collect();
        order.sort_by_key(|&i| ranges[i].0);
        // Active ranges, narrowest (then latest listed) on top.
        let mut active: BinaryHeap<(std::cmp::Reverse<u128>, usize)> = BinaryHeap::new();
        let mut next = 0;
        let mut t: Table<K, V> = Table {
            starts: Vec::new(),
            ends: Vec::new(),
            values: Vec::new(),
        };
        for (ci, &at) in cuts.iter().enumerate() {
            while next < order.len() && ranges[order[next]].0 <= at {
                let i = order[next];
                active.push((std::cmp::Reverse(K::span(ranges[i].0, ranges[i].1)), i));
                next += 1;
            }
            while active.peek().is_some_and(|&(_, i)| ranges[i].1 < at) {
                active.pop();
            }
            let Some(&(_, i)) = active.peek() else {
                continue;
            };
            let end = match cuts.get(ci + 1) {
                Some(n) => n.pred().expect("a later cut is above 0"),
                None => K::MAX,
            };
            let end = end.min(ranges[i].1);
            let v = &ranges[i].2;
            // Merge with the previous piece when it touches and says the same.
            if let (Some(pe), Some(pv)) = (t.ends.last_mut(), t.values.last()) {
                if pv == v && (*pe).succ() == Some(at) {
                    *pe = end;
                    continue;
                }
            }
            t.starts.push(at);
            t.ends.push(end);
            t.values.push(v.clone());
        }
        t
    }

    pub fn get(&self, k: K) -> Option<&V> {
        let i = self.starts.partition_point(|s| *s <= k);
        if i == 0 || self.ends[i - 1] < k {
            return None;
        }
        Some(&self.values[i - 1])
    }

    pub fn len(&self) -> usize {
        self.starts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.starts.is_empty()
    }

    /// Bytes held by the table itself (values' own heap data not counted).
    pub fn bytes(&self) -> usize {
        self.starts.capacity() * 2 * std::mem::size_of::<K>()
            + self.values.capacity() * std::mem::size_of::<V>()
    }
}

/// Both families.
#[derive(Debug, Clone)]
pub struct IpTable<V> {
    pub v4: Table<u32, V>,
    pub v6: Table<u128, V>,
}

impl<V: Clone + PartialEq> IpTable<V> {
    /// From ranges of either family (`first` and `last` of the same family;
    /// mixed pairs are refused by [`parse_range`]).
    pub fn build(ranges: Vec<(IpAddr, IpAddr, V)>) -> IpTable<V> {
        let (mut v4, mut v6) = (Vec::new(), Vec::new());
        for (a, b, v) in ranges {
            match (a, b) {
                (IpAddr::V4(a), IpAddr::V4(b)) => v4.push((u32::from(a), u32::from(b), v)),
                (IpAddr::V6(a), IpAddr::V6(b)) => v6.push((u128::from(a), u128::from(b), v)),
                _ => {}
            }
        }
        IpTable {
            v4: Table::build(v4),
            v6: Table::build(v6),
        }
    }

    pub fn get(&self, a: IpAddr) -> Option<&V> {
        match a {
            IpAddr::V4(a) => self.v4.get(u32::from(a)),
            IpAddr::V6(a) => match a.to_ipv4_mapped() {
                Some(v4) => self.v4.get(u32::from(v4)),
                None => self.v6.get(u128::from(a)),
            },
        }
    }

    pub fn len(&self) -> usize {
        self.v4.len() + self.v6.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn bytes(&self) -> usize {
        self.v4.bytes() + self.v6.bytes()
    }
}

/// `a/len` as (first, last), or None if the length is too long.
pub fn cidr(a: IpAddr, len: u8) -> Option<(IpAddr, IpAddr)> {
    match a {
        IpAddr::V4(a) => {
            if len > 32 {
                return None;
            }
            let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
            let lo = u32::from(a) & mask;
            Some((
                IpAddr::V4(Ipv4Addr::from(lo)),
                IpAddr::V4(Ipv4Addr::from(lo | !mask)),
            ))
        }
        IpAddr::V6(a) => {
            if len > 128 {
                return None;
            }
            let mask = if len == 0 {
                0
            } else {
                u128::MAX << (128 - len)
            };
            let lo = u128::from(a) & mask;
            Some((
                IpAddr::V6(Ipv6Addr::from(lo)),
                IpAddr::V6(Ipv6Addr::from(lo | !mask)),
            ))
        }
    }
}

/// An address, a CIDR (`a/len`) or a range (`a-b`) as (first, last).
pub fn parse_range(s: &str) -> Option<(IpAddr, IpAddr)> {
    let s = s.trim();
    if let Some((a, len)) = s.split_once('/') {
        return cidr(a.trim().parse().ok()?, len.trim().parse().ok()?);
    }
    if let Some((a, b)) = s.split_once('-') {
        let (a, b): (IpAddr, IpAddr) = (a.trim().parse().ok()?, b.trim().parse().ok()?);
        return (a.is_ipv4() == b.is_ipv4() && a <= b).then_some((a, b));
    }
    let a: IpAddr = s.parse().ok()?;
    Some((a, a))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(ranges: &[(u32, u32, &'static str)]) -> Table<u32, &'static str> {
        Table::build(ranges.to_vec())
    }

    #[test]
    fn adjacent_ranges_stay_apart_and_gaps_are_empty() {
        let t = t(&[(10, 19, "a"), (20, 29, "b"), (40, 49, "c")]);
        assert_eq!(t.get(9), None);
        assert_eq!(t.get(10), Some(&"a"));
        assert_eq!(t.get(19), Some(&"a"));
        assert_eq!(t.get(20), Some(&"b"));
        assert_eq!(t.get(29), Some(&"b"));
        assert_eq!(t.get(30), None);
        assert_eq!(t.get(49), Some(&"c"));
        assert_eq!(t.get(50), None);
    }

    #[test]
    fn the_narrowest_covering_range_wins() {
        // A /16-like range with a nested one and one that overlaps its end.
        let t = t(&[(0, 99, "wide"), (40, 49, "inner"), (90, 120, "tail")]);
        assert_eq!(t.get(39), Some(&"wide"));
        assert_eq!(t.get(40), Some(&"inner"));
        assert_eq!(t.get(49), Some(&"inner"));
        assert_eq!(t.get(50), Some(&"wide"));
        // 90..=99 is covered by both; "tail" (31 wide) is narrower than "wide" (100).
        assert_eq!(t.get(89), Some(&"wide"));
        assert_eq!(t.get(95), Some(&"tail"));
        assert_eq!(t.get(120), Some(&"tail"));
        assert_eq!(t.get(121), None);
    }

    #[test]
    fn touching_pieces_of_one_value_merge_and_the_ends_of_the_space_work() {
        let t = t(&[
            (0, 9, "x"),
            (10, 19, "x"),
            (u32::MAX - 5, u32::MAX, "top"),
            (7, 7, "x"),
        ]);
        assert_eq!(t.len(), 2);
        assert_eq!(t.get(0), Some(&"x"));
        assert_eq!(t.get(19), Some(&"x"));
        assert_eq!(t.get(u32::MAX), Some(&"top"));
        assert_eq!(t.get(u32::MAX - 6), None);
        // Empty input, reversed range.
        assert!(Table::<u32, u8>::build(vec![(5, 4, 1)]).is_empty());
    }

    #[test]
    fn ipv6_ranges_and_mapped_ipv4() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let table = IpTable::build(vec![
            (
                ip("2001:db8::"),
                ip("2001:db8:ffff:ffff:ffff:ffff:ffff:ffff"),
                1,
            ),
            (
                ip("2001:db8:1::"),
                ip("2001:db8:1:ffff:ffff:ffff:ffff:ffff"),
                2,
            ),
            (ip("198.51.100.0"), ip("198.51.100.255"), 3),
            (ip("::"), ip("::"), 4),
        ]);
        assert_eq!(table.get(ip("2001:db8::1")), Some(&1));
        assert_eq!(table.get(ip("2001:db8:1::7")), Some(&2));
        assert_eq!(table.get(ip("2001:db8:2::7")), Some(&1));
        assert_eq!(table.get(ip("2001:db9::")), None);
        assert_eq!(table.get(ip("198.51.100.7")), Some(&3));
        assert_eq!(table.get(ip("::ffff:198.51.100.7")), Some(&3));
        assert_eq!(table.get(ip("::")), Some(&4));
        assert_eq!(table.get(ip("203.0.113.1")), None);
    }

    #[test]
    fn ranges_parse_from_addresses_cidrs_and_pairs() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(
            parse_range("198.51.100.0/24"),
            Some((ip("198.51.100.0"), ip("198.51.100.255")))
        );
        assert_eq!(
            parse_range("198.51.100.77/24"),
            Some((ip("198.51.100.0"), ip("198.51.100.255")))
        );
        assert_eq!(
            parse_range("2001:db8::/32"),
            Some((
                ip("2001:db8::"),
                ip("2001:db8:ffff:ffff:ffff:ffff:ffff:ffff")
            ))
        );
        assert_eq!(
            parse_range("0.0.0.0/0"),
            Some((ip("0.0.0.0"), ip("255.255.255.255")))
        );
        assert_eq!(
            parse_range("192.0.2.1 - 192.0.2.9"),
            Some((ip("192.0.2.1"), ip("192.0.2.9")))
        );
        assert_eq!(parse_range("192.0.2.9-192.0.2.1"), None);
        assert_eq!(parse_range("192.0.2.1-2001:db8::"), None);
        assert_eq!(parse_range("192.0.2.0/33"), None);
        assert_eq!(parse_range("not an address"), None);
    }
}
