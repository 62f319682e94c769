//! port_surge: more distinct sources on one (protocol, port) than the
//! port's own history makes probable — the seed's waves: TCP/7547 with over
//! 1,000 sources in 12 h on a port that had a few a day, TCP/37777 with
//! ~200 in 24 h on a port nobody probed before.
//!
//! A source counts for a port once, when it first probes it (and only while
//! it is not reported as a scanner on its own). Each port keeps the number
//! of such new sources per bucket of `surge_bucket_s`, over the longest
//! horizon; older buckets roll into a decayed total (half-life
//! `surge_half_life_s`), so the baseline follows the port over weeks.
//!
//! At every new source, each horizon H of `surge_horizons_s` is tested: k
//! new sources in the last H against a Poisson count with mean λ·H, where λ
//! is the port's rate before the window, (`surge_prior_sources` + count) /
//! (`surge_prior_s` + observed time) — a weak prior, so a port nobody
//! probed has a small but non-zero rate. A horizon is tested once the port
//! has been watched for at least twice H and `surge_min_history_s`. The
//! port surges when P(X ≥ k) ≤ `surge_false_alarm` and k ≥
//! `surge_min_sources` and k ≥ `surge_min_ratio` × the expected count. The
//! episode ends once the port has not been significant for a quarter of
//! the horizon it was found at (at least `episode_idle_s`).
//!
//! Memory: one entry per (protocol, port) that ever drew a source, a bucket
//! ring of `u16` each: at most 2 × 65,536 entries (IPv4 and IPv6 sources of
//! a port count together: a wave is about the service, not the family).

use rustc_hash::FxHashMap;

use super::{
    alert::Alert,
    config::DetectConfig,
    context::{Context, SEC},
    detector::{Detector, Seen},
    episode::Said,
    episode::{Episode, Evidence, Key, Kind, KindSpec},
    probe::{Probe, Role},
    words::per_day,
    words::{human_secs, thousands},
};

pub static PORT_SURGE: KindSpec = KindSpec {
    name: "port_surge",
    names_tool: false,
    one_source: false,
    many_sources: true,
    orders_targets: false,
    routes_by_dst: false,
};

/// A surge's evidence: its strongest test, and the new sources of the
/// window before it started (the episode's own set holds those since).
struct Wave {
    test: SurgeTest,
    before: u64,
    /// The port's rate before the surge, new sources per day.
    baseline: f64,
}

impl Evidence for Wave {
    fn accepts(&self, _key: &Key, p: &Probe) -> bool {
        p.role == Role::Probe
    }

    fn summary(&self, ep: &Episode, s: &Said) -> String {
        let proto = &s.proto;
        let port = ep.port_sample.first().copied().unwrap_or(0);
        let base = per_day(self.test.baseline_per_day);
        if s.going {
            format!(
                "{proto}/{port}: {} distinct sources in {}, baseline {base}",
                thousands(self.test.sources),
                human_secs(self.test.horizon_s as f64)
            )
        } else {
            format!(
                "{proto}/{port}: {} distinct sources in {}, baseline {base}",
                thousands(self.before + ep.sources.count()),
                s.took
            )
        }
    }

    fn fields(&self, _ep: &Episode, _cfg: &DetectConfig, a: &mut Alert) {
        a.baseline = Some((self.baseline * 100.0).round() / 100.0);
        a.horizon_s = Some(self.test.horizon_s);
        a.horizon_sources = Some(self.test.sources);
        a.log10_p = Some((self.test.log10_p * 10.0).round() / 10.0);
    }
}

/// One port's history.
struct PortHistory {
    /// New sources per bucket; slot `bucket % len`.
    ring: Box<[u16]>,
    /// Newest bucket index held in the ring.
    head: i64,
    /// Sum of the ring, and of the newest `w` buckets for each horizon
    /// (kept as buckets come and go: a test costs no walk of the ring).
    in_ring: u64,
    window: Box<[u64]>,
    /// Decayed new sources of buckets that left the ring.
    old_count: f64,
    /// Decayed seconds those buckets cover.
    old_secs: f64,
    /// Time of the last significant test.
    last_significant_ns: i64,
}

/// What a significant test found, kept on the surge episode.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SurgeTest {
    pub horizon_s: i64,
    /// New sources within the horizon.
    pub sources: u64,
    /// The port's rate before the window, per day.
    pub baseline_per_day: f64,
    /// log10 of P(X ≥ sources).
    pub log10_p: f64,
}

/// The surge detector: every port's history.
#[derive(Default)]
pub struct Surge {
    ports: FxHashMap<(u8, u16), PortHistory>,
    /// The first bucket of event time: every port is watched from here.
    first_bucket: Option<i64>,
    /// Derived from the config once: buckets in the ring, each horizon's
    /// width in buckets, the decay per bucket.
    shape: Option<(usize, Vec<i64>, f64)>,
}

impl Detector for Surge {
    fn name(&self) -> &'static str {
        "port_surge"
    }

    /// A source reported on its own is not one of a wave's many sources.
    fn observe(&mut self, p: &Probe, seen: &Seen, cx: &mut Context) {
        if !seen.busy {
            self.observe_new(cx, p, seen.new_for_port);
        }
    }

    /// Over once the port has not been significant for a quarter of the
    /// horizon it was found at (at least `episode_idle_s`): a slow wave has
    /// long gaps between its sources, and is one episode.
    fn finished(&self, ep: &Episode, cx: &Context) -> bool {
        let Key::Port(_, proto, port) = ep.key else {
            return false;
        };
        let horizon = ep.evidence::<Wave>().map_or(0, |w| w.test.horizon_s);
        let idle = (cx.cfg.episode_idle_s as i64).max(horizon / 4) * SEC;
        self.ports
            .get(&(proto, port))
            .is_none_or(|h| cx.now - h.last_significant_ns > idle)
    }

    fn bytes(&self) -> usize {
        let ring = self.ports.values().next().map_or(0, |p| p.ring.len() * 2);
        self.ports.capacity() * (4 + std::mem::size_of::<PortHistory>() + 1)
            + self.ports.len() * ring
    }
}

/// log P(X ≥ k) for X ~ Poisson(mu), k ≥ 1.
pub fn poisson_log_sf(k: u64, mu: f64) -> f64 {
    if k == 0 {
        return 0.0;
    }
    if mu <= 0.0 {
        return f64::NEG_INFINITY;
    }
    let kf = k as f64;
    if kf <= mu {
        // Not in the upper tail: the sum is not small; say so (≥ ~0.5).
        return (0.5f64).ln();
    }
    // The first term, then the ratio series of the tail: each next term is
    // the last times mu / (j + 1), decreasing since j ≥ k > mu.
    let log_first = -mu + kf * mu.ln() - ln_gamma(kf + 1.0);
    let (mut sum, mut term) = (1.0f64, 1.0f64);
    let mut j = kf;
    for _ in 0..10_000 {
        j += 1.0;
        term *= mu / j;
        sum += term;
        if term < 1e-17 * sum {
            break;
        }
    }
    log_first + sum.ln()
}

/// ln Γ(x) for x ≥ 1 (Lanczos, g = 7; |error| < 1e-13 here).
fn ln_gamma(x: f64) -> f64 {
    const G: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    let x = x - 1.0;
    let mut a = G[0];
    let t = x + 7.5;
    for (i, g) in G.iter().enumerate().skip(1) {
        a += g / (x + i as f64);
    }
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + a.ln()
}

/// Moves the ring forward to `bucket`, rolling old buckets into the total.
/// `widths`: each horizon's number of buckets (at most the ring's length).
fn advance(
    h: &mut PortHistory,
    bucket: i64,
    widths: &[i64],
    bucket_s: f64,
    decay: f64,
    first: i64,
) {
    let n = h.ring.len() as i64;
    let steps = bucket - h.head;
    if steps <= 0 {
        return;
    }
    for k in (h.head + 1)..=(h.head + steps.min(n)) {
        // Bucket k - w leaves the window of width w.
        for (sum, w) in h.window.iter_mut().zip(widths) {
            *sum -= u64::from(h.ring[(k - w).rem_euclid(n) as usize]);
        }
        let idx = k.rem_euclid(n) as usize;
        // The bucket leaving the ring is the one `n` before `k`, if watched.
        if k - n >= first {
            h.old_count = h.old_count * decay + f64::from(h.ring[idx]);
            h.old_secs = h.old_secs * decay + bucket_s;
        }
        h.in_ring -= u64::from(h.ring[idx]);
        h.ring[idx] = 0;
    }
    // A gap longer than the ring: the skipped buckets were quiet.
    for _ in 0..(steps - n).clamp(0, 100_000) {
        h.old_count *= decay;
        h.old_secs = h.old_secs * decay + bucket_s;
    }
    h.head = bucket;
}

impl Surge {
    /// Counts a source's first probe of a port and tests the port.
    /// `new_for_port`: this source has not probed this port before.
    fn observe_new(&mut self, cx: &mut Context, p: &Probe, new_for_port: bool) {
        if p.role != Role::Probe || !super::probe::ported(p.proto) || !new_for_port {
            return;
        }
        let cfg = &cx.cfg;
        let surge = self;
        let bucket_s = cfg.surge_bucket_s as i64;
        let bucket = p.ts_ns.div_euclid(bucket_s * SEC);
        let first = *surge.first_bucket.get_or_insert(bucket);
        let (slots, widths, decay) = surge.shape.get_or_insert_with(|| {
            let slots = (cfg.surge_horizons_s.iter().copied().max().unwrap_or(1) as i64 / bucket_s)
                .max(1) as usize;
            let widths = cfg
                .surge_horizons_s
                .iter()
                .map(|h| (*h as i64 / bucket_s).clamp(1, slots as i64))
                .collect();
            let decay =
                (-(bucket_s as f64) * std::f64::consts::LN_2 / cfg.surge_half_life_s as f64).exp();
            (slots, widths, decay)
        });
        let (slots, decay, widths) = (*slots, *decay, widths.as_slice());
        let h = surge.ports.entry((p.proto, p.port)).or_insert_with(|| {
            // Watched since the first bucket: everything before was quiet.
            let before_ring = (bucket - slots as i64 + 1 - first).max(0);
            PortHistory {
                ring: vec![0u16; slots].into_boxed_slice(),
                head: bucket,
                in_ring: 0,
                window: vec![0u64; widths.len()].into_boxed_slice(),
                old_count: 0.0,
                old_secs: (before_ring * bucket_s) as f64,
                last_significant_ns: i64::MIN / 2,
            }
        });
        advance(h, bucket, widths, bucket_s as f64, decay, first);
        let idx = bucket.rem_euclid(slots as i64) as usize;
        if h.ring[idx] < u16::MAX {
            h.ring[idx] += 1;
            h.in_ring += 1;
            for sum in h.window.iter_mut() {
                *sum += 1;
            }
        }

        // Test each horizon: the newest `w` buckets against the rest.
        let watched_buckets = bucket - first + 1;
        let mut best: Option<SurgeTest> = None;
        let ln_alpha = cfg.surge_false_alarm.ln();
        for (&w, &k) in widths.iter().zip(h.window.iter()) {
            let horizon = (w * bucket_s) as u64;
            let before_buckets = watched_buckets - w;
            let before_secs_ring = (before_buckets.min(slots as i64 - w).max(0) * bucket_s) as f64;
            let before_secs = h.old_secs + before_secs_ring;
            if before_secs < (2 * horizon).max(cfg.surge_min_history_s) as f64 {
                continue;
            }
            // (Buckets before the first watched one are zero.)
            let before_count = h.old_count + (h.in_ring - k) as f64;
            if k < u64::from(cfg.surge_min_sources) {
                continue;
            }
            let rate =
                (cfg.surge_prior_sources + before_count) / (cfg.surge_prior_s as f64 + before_secs);
            let mu = rate * (w * bucket_s) as f64;
            if (k as f64) < cfg.surge_min_ratio * mu {
                continue;
            }
            let lp = poisson_log_sf(k, mu);
            if lp <= ln_alpha && best.is_none_or(|b| lp / std::f64::consts::LN_10 < b.log10_p) {
                best = Some(SurgeTest {
                    horizon_s: w * bucket_s,
                    sources: k,
                    baseline_per_day: rate * 86_400.0,
                    log10_p: lp / std::f64::consts::LN_10,
                });
            }
        }
        let Some(test) = best else {
            return;
        };
        h.last_significant_ns = p.ts_ns;
        let key = Key::Port(Kind(&PORT_SURGE), p.proto, p.port);
        if let Some(id) = cx.active(&key) {
            if let Some(w) = cx.book.get_mut(id).and_then(|ep| ep.evidence_mut::<Wave>()) {
                // Keep the strongest evidence for the end record.
                if test.sources > w.test.sources {
                    w.test = test;
                }
            }
            return;
        }
        let window_start = (bucket - test.horizon_s / bucket_s + 1) * bucket_s * SEC;
        let evidence = Box::new(Wave {
            test,
            before: test.sources - 1,
            baseline: test.baseline_per_day,
        });
        cx.start(Kind(&PORT_SURGE), key, p, evidence, |ep| {
            ep.sources.insert(p.src);
            ep.targets.insert(p.dst);
            ep.add_port(p.port);
            ep.probes = test.sources;
            ep.first_ns = window_start.max(p.ts_ns - test.horizon_s * SEC);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn poisson_tail_matches_direct_sums() {
        // P(X ≥ k) for small cases, summed directly.
        for (k, mu) in [(1u64, 0.5f64), (5, 2.0), (20, 3.0), (30, 10.0), (3, 2.5)] {
            let mut p = 0.0;
            let mut term = (-mu).exp();
            for j in 0..200u64 {
                if j >= k {
                    p += term;
                }
                term *= mu / (j + 1) as f64;
            }
            let got = poisson_log_sf(k, mu).exp();
            if (k as f64) > mu {
                assert!((got - p).abs() / p < 1e-9, "k {k} mu {mu}: {got} vs {p}");
            } else {
                assert!(got >= 0.4, "not in the tail: {got}");
            }
        }
        // Far tails stay finite in log space.
        let lp = poisson_log_sf(1104, 2.0);
        assert!(lp.is_finite() && lp < -3000.0, "{lp}");
    }
}
