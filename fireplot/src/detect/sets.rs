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
            Some(b) => {
                // Word by word, set bits only: an actor's end walks every
                // port of every bitmap, so 65,536 tests each would cost.
                let mut v = Vec::with_capacity(self.count as usize);
                for (w, &word) in b.iter().enumerate() {
                    let mut rest = word;
                    while rest != 0 {
                        let bit = rest.trailing_zeros();
                        v.push((w as u16) << 6 | bit as u16);
                        rest &= rest - 1;
                    }
                }
                v
            }
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

/// Distinct values, exactly up to max(8, M / 4), then estimated by HyperLogLog with
/// `M` registers (a power of two from 16: about 1.04/√M standard error; 64
/// registers, 13 %, 64 bytes; 256, 6.5 %), small counts by linear counting.
#[derive(Clone, Debug)]
pub struct Distinct<const M: usize = 64> {
    exact: Vec<u128>,
    registers: Option<Box<[u8; M]>>,
}

impl<const M: usize> Default for Distinct<M> {
    fn default() -> Self {
        Distinct {
            exact: Vec::new(),
            registers: None,
        }
    }
}

impl<const M: usize> Distinct<M> {
    /// Values kept exactly before the estimate: a quarter of the
    /// registers' bytes, at least 8.
    const EXACT: usize = if M / 4 > 8 { M / 4 } else { 8 };
    const BITS: u32 = M.trailing_zeros();

    pub fn insert(&mut self, v: u128) {
        if let Some(r) = self.registers.as_mut() {
            Self::add(r, v);
            return;
        }
        if self.exact.contains(&v) {
            return;
        }
        if self.exact.len() < Self::EXACT {
            self.exact.push(v);
            return;
        }
        let mut r = Box::new([0u8; M]);
        for x in self.exact.drain(..).chain(std::iter::once(v)) {
            Self::add(&mut r, x);
        }
        self.registers = Some(r);
    }

    fn add(r: &mut [u8; M], v: u128) {
        // splitmix64's finaliser over both halves.
        let mut h = (v as u64) ^ ((v >> 64) as u64).rotate_left(29) ^ 0x9E37_79B9_7F4A_7C15;
        h = (h ^ (h >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        h = (h ^ (h >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        h ^= h >> 31;
        let idx = (h >> (64 - Self::BITS)) as usize;
        let rank = ((h << Self::BITS) | 1 << (Self::BITS - 1)).leading_zeros() as u8 + 1;
        if rank > r[idx] {
            r[idx] = rank;
        }
    }

    pub fn count(&self) -> u64 {
        let Some(r) = &self.registers else {
            return self.exact.len() as u64;
        };
        let m = M as f64;
        // 2^-x from its bits: the exponent field of a double.
        let sum: f64 = r
            .iter()
            .map(|&x| f64::from_bits((1023 - u64::from(x)) << 52))
            .sum();
        let alpha = 0.7213 / (1.0 + 1.079 / m);
        let e = alpha * m * m / sum;
        let zeros = r.iter().filter(|&&x| x == 0).count();
        if e <= 2.5 * m && zeros > 0 {
            (m * (m / zeros as f64).ln()).round() as u64
        } else {
            e.round() as u64
        }
    }

    pub fn bytes(&self) -> usize {
        self.exact.capacity() * 16 + if self.registers.is_some() { M } else { 0 }
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
        // The bitmap lists its ports in order, the edges included.
        for p in [0u16, 1, 63, 64, 65_535] {
            s.insert(p);
        }
        let mut want: Vec<u16> = (0..100u16).map(|p| p * 3).chain([1, 64, 65_535]).collect();
        want.sort_unstable();
        want.dedup();
        assert_eq!(s.iter(), want);
        assert_eq!(s.iter().len() as u32, s.len());
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

    #[test]
    fn distinct_counts_exactly_then_estimates() {
        let mut d = Distinct::<64>::default();
        for v in 0..8u128 {
            d.insert(v);
            d.insert(v);
        }
        assert_eq!(d.count(), 8);
        for (n, m64, m256) in [(100u128, 0.4, 0.2), (10_000, 0.4, 0.2)] {
            let mut a = Distinct::<64>::default();
            let mut b = Distinct::<256>::default();
            for v in 0..n {
                a.insert(v * 7919);
                b.insert(v * 7919);
            }
            let err = |c: u64| (c as f64 - n as f64).abs() / n as f64;
            assert!(err(a.count()) < m64, "{n}: {}", a.count());
            assert!(err(b.count()) < m256, "{n}: {}", b.count());
        }
    }
}
