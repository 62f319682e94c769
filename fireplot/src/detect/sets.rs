//! Sets an episode and a source record keep: ports (a short list, then a
//! bitmap), addresses (exact up to a cap, then counted), and the order in
//! which values came (ascending, descending, random).

use rustc_hash::FxHashSet;

use super::probe::addr;

/// Ascending / descending / random, from successive values.
#[derive(Clone, Copy, Debug, Default)]
pub struct Order {
    last: Option<u128>,
    up: u64,
    down: u64,
}

impl Order {
    pub fn push(&mut self, v: u128) {
        if let Some(l) = self.last {
            if v > l {
                self.up += 1;
            } else if v < l {
                self.down += 1;
            }
        }
        self.last = Some(v);
    }

    pub fn name(&self) -> &'static str {
        let steps = self.up + self.down;
        if steps < 2 {
            "random"
        } else if self.up * 10 >= steps * 8 {
            "ascending"
        } else if self.down * 10 >= steps * 8 {
            "descending"
        } else {
            "random"
        }
    }
}

/// A set of ports: a short list, then a 65,536-bit bitmap.
#[derive(Clone, Debug, Default)]
pub struct PortSet {
    small: Vec<u16>,
    bits: Option<Box<[u64; 1024]>>,
    count: u32,
}

impl PortSet {
    const SMALL: usize = 24;

    /// Adds a port; true if it was new.
    pub fn insert(&mut self, p: u16) -> bool {
        if let Some(b) = self.bits.as_mut() {
            let (w, bit) = ((p >> 6) as usize, 1u64 << (p & 63));
            if b[w] & bit != 0 {
                return false;
            }
            b[w] |= bit;
            self.count += 1;
            return true;
        }
        if self.small.contains(&p) {
            return false;
        }
        if self.small.len() < Self::SMALL {
            self.small.push(p);
        } else {
            let mut b = Box::new([0u64; 1024]);
            for q in self.small.drain(..).chain(std::iter::once(p)) {
                b[(q >> 6) as usize] |= 1u64 << (q & 63);
            }
            self.bits = Some(b);
        }
        self.count += 1;
        true
    }

    pub fn len(&self) -> u32 {
        self.count
    }

    /// The ports, in insertion order while the set is small.
    pub fn iter(&self) -> Vec<u16> {
        match &self.bits {
            None => self.small.clone(),
            Some(b) => (0..=u16::MAX)
                .filter(|p| b[(p >> 6) as usize] & (1u64 << (p & 63)) != 0)
                .collect(),
        }
    }

    /// Does the set hold more than its short list (a bitmap)?
    pub fn is_bitmap(&self) -> bool {
        self.bits.is_some()
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    pub fn contains(&self, p: u16) -> bool {
        match &self.bits {
            Some(b) => b[(p >> 6) as usize] & (1u64 << (p & 63)) != 0,
            None => self.small.contains(&p),
        }
    }

    pub fn bytes(&self) -> usize {
        std::mem::size_of::<Self>()
            + self.small.capacity() * 2
            + if self.bits.is_some() { 8192 } else { 0 }
    }
}

/// Addresses: exact up to a cap, then only counted.
#[derive(Clone, Debug, Default)]
pub struct AddrSet {
    set: FxHashSet<u128>,
    first: Vec<u128>,
    pub over: u64,
}

impl AddrSet {
    const CAP: usize = 65_536;
    const SAMPLE: usize = 5;

    pub fn insert(&mut self, a: u128) -> bool {
        if self.set.len() >= Self::CAP {
            if !self.set.contains(&a) {
                self.over += 1;
            }
            return false;
        }
        let new = self.set.insert(a);
        if new && self.first.len() < Self::SAMPLE {
            self.first.push(a);
        }
        new
    }

    pub fn count(&self) -> u64 {
        self.set.len() as u64 + self.over
    }

    pub fn sample(&self) -> Vec<String> {
        self.first.iter().map(|a| addr(*a).to_string()).collect()
    }

    /// All members, sorted (for small sets such as the sources of a group).
    pub fn sorted(&self, limit: usize) -> Vec<String> {
        let mut v: Vec<u128> = self.set.iter().copied().collect();
        v.sort_unstable();
        v.into_iter()
            .take(limit)
            .map(|a| addr(a).to_string())
            .collect()
    }

    pub fn contains(&self, a: u128) -> bool {
        self.set.contains(&a)
    }

    /// Every member kept (all of them up to the cap) as keys, in no order.
    pub fn keys(&self) -> impl Iterator<Item = u128> + '_ {
        self.set.iter().copied()
    }

    /// Every member kept (all of them up to the cap), in no order.
    pub fn iter(&self) -> impl Iterator<Item = std::net::IpAddr> + '_ {
        self.set.iter().map(|a| addr(*a))
    }

    pub fn bytes(&self) -> usize {
        self.set.capacity() * 17 + self.first.capacity() * 16
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_set_grows_into_a_bitmap() {
        let mut s = PortSet::default();
        for p in 0..100u16 {
            assert!(s.insert(p * 3));
            assert!(!s.insert(p * 3));
        }
        assert_eq!(s.len(), 100);
        assert!(s.bytes() > 8192);
    }

    #[test]
    fn order_is_named() {
        let mut o = Order::default();
        (1..=50u128).for_each(|v| o.push(v));
        assert_eq!(o.name(), "ascending");
        let mut o = Order::default();
        (1..=50u128).rev().for_each(|v| o.push(v));
        assert_eq!(o.name(), "descending");
        let mut o = Order::default();
        [5u128, 1, 9, 3, 7, 2, 8].iter().for_each(|v| o.push(*v));
        assert_eq!(o.name(), "random");
    }
}
