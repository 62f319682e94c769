//! ddos: an attack on one of our hosts (or one of our /24s or /64s: carpet
//! bombing), per vector ([`Vector`]), sized in packets and bits per second
//! from events and the kernel's aggregates alike; and short bursts from
//! one source to one host, which are that source's `flood`.
//!
//! Every unsolicited packet is counted per (destination, vector) and per
//! (destination prefix, vector), second by second of event time. A second
//! is an attack when it is above both an absolute floor suited to edge
//! links (`ddos_min_pps` packets or `ddos_min_bps` bits per second) and
//! `ddos_rate_factor` times the destination's own recent rate for the
//! vector (an exponentially weighted mean over `ddos_baseline_s`, in which
//! a second under attack weighs a tenth, so a busy server's background does
//! not alarm and a rate that lasts for hours becomes the new normal), from
//! at least `ddos_min_sources` distinct sources in the minute
//! (`ddos_reflection_sources` for reflection; fewer sources are floods of
//! their own: a burst of `flood_burst_packets` from one source to one host
//! within a second is that source's `flood`, naming the host). Whatever the
//! rate, `ddos_spoofed_sources` distinct sources in a minute on one vector
//! to one host, above `ddos_rate_factor` times its recent rate, is a
//! spoofed flood. An attack is detected on the packet
//! that crosses the threshold, gives `update` records while it lasts, and
//! ends `ddos_quiet_s` after its last second above it.
//!
//! Aggregates arrive a second or two after their second; they count in
//! the second they are of, while it is one of the last two.

use rustc_hash::FxHashMap;

use super::{
    alert::{Alert, TopSource},
    config::DetectConfig,
    context::{Context, SEC},
    detector::{Detector, Seen},
    episode::{Episode, Evidence, Key, Kind, KindSpec, Said},
    flood::{Flood, FLOOD},
    probe::{addr, key as addr_key, Probe},
    sets::Distinct,
    vector::Vector,
    words::thousands,
};
use crate::record::Record;

pub static DDOS: KindSpec = KindSpec {
    name: "ddos",
    names_tool: false,
    one_source: false,
    many_sources: true,
    orders_targets: false,
    routes_by_dst: false,
};

/// (Destination or prefix, vector code | PREFIX bit): one entry.
type EntryKey = (u128, u32);
/// The bit of a vector code that marks a prefix entry.
const PREFIX: u32 = 1 << 31;
/// Entries kept at once; idle ones leave first.
const ENTRY_CAP: usize = 1 << 16;
/// Sources followed per entry and second for bursts (Misra-Gries).
const TOP: usize = 4;

/// One destination's (or prefix's) traffic of one vector.
struct Entry {
    vector: Vector,
    /// The current second and the one before: packets, bytes.
    sec: i64,
    packets: u64,
    bytes: u64,
    prev_packets: u64,
    prev_bytes: u64,
    /// Packets per second before now, seconds under attack left out.
    baseline: f64,
    /// Distinct sources (and source prefixes of aggregates) this minute.
    minute: i64,
    sources: Distinct<256>,
    sources_now: u64,
    inserts: u32,
    /// Destinations of a prefix entry this minute.
    hosts: Hosts,
    /// Heavy sources of the current second.
    top: [(u128, u64); TOP],
    /// The last second above the threshold, and the attack's episode.
    attack_sec: i64,
    episode: Option<u64>,
}

impl Entry {
    fn new(vector: Vector, sec: i64) -> Entry {
        Entry {
            vector,
            sec,
            packets: 0,
            bytes: 0,
            prev_packets: 0,
            prev_bytes: 0,
            baseline: 0.0,
            minute: sec.div_euclid(60),
            sources: Distinct::default(),
            sources_now: 0,
            inserts: 0,
            hosts: Hosts::default(),
            top: [(0, 0); TOP],
            attack_sec: i64::MIN,
            episode: None,
        }
    }

    /// Moves to second `sec`, folding the seconds left behind into the
    /// baseline (quiet seconds as zeros) unless they were an attack.
    fn advance(&mut self, sec: i64, tau: f64) {
        if sec <= self.sec {
            return;
        }
        let keep = 1.0 - 1.0 / tau;
        // A second under attack counts ten times less: an attack does not
        // become the baseline at once, a rate that lasts for hours does.
        let w = if self.attack_sec == self.sec {
            0.1
        } else {
            1.0
        };
        self.baseline += w * (self.packets as f64 - self.baseline) / tau;
        let gap = sec - self.sec - 1;
        if gap > 0 {
            self.baseline *= keep.powf(gap.min(1 << 20) as f64);
        }
        (self.prev_packets, self.prev_bytes) = if gap == 0 {
            (self.packets, self.bytes)
        } else {
            (0, 0)
        };
        self.sec = sec;
        self.packets = 0;
        self.bytes = 0;
        self.top = [(0, 0); TOP];
        let minute = sec.div_euclid(60);
        if minute != self.minute {
            self.minute = minute;
            self.sources = Distinct::default();
            self.hosts = Hosts::default();
            self.sources_now = 0;
        }
    }

    /// Counts `count` packets of `src` in the heavy sources; returns its
    /// count this second if it is followed.
    fn count_source(&mut self, src: u128, count: u64) -> u64 {
        if let Some(t) = self.top.iter_mut().find(|t| t.1 > 0 && t.0 == src) {
            t.1 += count;
            return t.1;
        }
        if let Some(t) = self.top.iter_mut().find(|t| t.1 == 0) {
            *t = (src, count);
            return count;
        }
        let mut left = count;
        for t in self.top.iter_mut() {
            let d = t.1.min(left);
            t.1 -= d;
            left = left.max(d) - d;
        }
        0
    }
}

/// The hosts of a prefix that were hit: exact for an IPv4 /24 (a bitmap
/// of the last octet), estimated for an IPv6 /64.
#[derive(Default)]
struct Hosts {
    v4: [u64; 4],
    v6: Distinct,
}

impl Hosts {
    fn insert(&mut self, dst: u128) {
        if addr(dst).is_ipv4() {
            let o = (dst & 0xff) as usize;
            self.v4[o >> 6] |= 1 << (o & 63);
        } else {
            self.v6.insert(dst);
        }
    }

    fn count(&self) -> u64 {
        self.v4
            .iter()
            .map(|w| u64::from(w.count_ones()))
            .sum::<u64>()
            + self.v6.count()
    }

    fn bytes(&self) -> usize {
        32 + self.v6.bytes()
    }
}

/// An attack's evidence.
struct Attack {
    vector: Vector,
    /// A prefix (carpet bombing), and how many of its hosts were hit.
    prefix: Option<u8>,
    hosts: u64,
    bytes: u64,
    peak_pps: u64,
    peak_bps: u64,
    /// The last full second's rate.
    pps: u64,
    bps: u64,
    /// The heaviest sources seen in its seconds, packets each.
    top: Vec<(u128, u64)>,
    /// Distinct sources, and source prefixes of aggregates, estimated.
    sources: Distinct<256>,
    said_ns: i64,
}

impl Attack {
    fn note_top(&mut self, src: u128, n: u64) {
        if let Some(t) = self.top.iter_mut().find(|t| t.0 == src) {
            t.1 = t.1.max(n);
        } else if self.top.len() < 5 {
            self.top.push((src, n));
        } else if let Some(min) = self.top.iter_mut().min_by_key(|t| t.1) {
            if n > min.1 {
                *min = (src, n);
            }
        }
    }
}

fn mbit(bps: u64) -> String {
    format!("{:.1} Mbit/s", bps as f64 / 1e6)
}

impl Evidence for Attack {
    fn accepts(&self, _key: &Key, _p: &Probe) -> bool {
        false
    }

    /// An attack on our hosts is 5.
    fn severity(&self, _ep: &Episode, _cfg: &DetectConfig) -> u8 {
        5
    }

    fn summary(&self, ep: &Episode, s: &Said) -> String {
        let port = match ep.port_sample.as_slice() {
            [p] => format!(" {}/{p}", s.proto),
            _ => String::new(),
        };
        let who = match self.prefix {
            Some(len) => format!(
                "{}/{len} ({} hosts)",
                addr(match ep.key {
                    Key::Target(_, a, _) => a,
                    _ => 0,
                }),
                thousands(self.hosts)
            ),
            None => format!("{}{port}", s.target),
        };
        let also = if self.vector.is_answer() {
            " (answers to packets spoofed in its name: backscatter at an attack's rate)"
        } else {
            ""
        };
        let sources = thousands(self.sources.count().max(ep.sources.count()));
        if s.going {
            format!(
                "{who} is under {}{also}: {} packets/s, {}, peak {} packets/s, {} sources so far",
                self.vector.title(),
                thousands(self.pps),
                mbit(self.bps),
                thousands(self.peak_pps),
                sources
            )
        } else {
            format!(
                "{who} was under {}{also}: peak {} packets/s, {}, {sources} sources, {} packets in {}",
                self.vector.title(),
                thousands(self.peak_pps),
                mbit(self.peak_bps),
                s.probes,
                s.took
            )
        }
    }

    fn fields(&self, _ep: &Episode, _cfg: &DetectConfig, a: &mut Alert) {
        a.vector = Some(self.vector.name().to_string());
        if let Vector::Reflection(p) = self.vector {
            a.reflector_port = Some(p);
        }
        a.peak_pps = Some(self.peak_pps);
        a.peak_bps = Some(self.peak_bps);
        a.pps = Some(self.pps);
        a.bps = Some(self.bps);
        a.bytes = Some(self.bytes);
        a.prefix_len = self.prefix;
        a.source_count = a.source_count.max(self.sources.count());
        let mut top = self.top.clone();
        top.sort_by(|x, y| y.1.cmp(&x.1).then(x.0.cmp(&y.0)));
        a.top_sources = Some(
            top.into_iter()
                .map(|(s, packets)| TopSource {
                    src: addr(s).to_string(),
                    packets,
                })
                .collect(),
        );
    }

    /// While it lasts: an update every `update_interval_s`.
    fn wants_update(&self, ep: &Episode) -> bool {
        ep.last_ns > self.said_ns
    }

    fn said(&mut self, last_ns: i64) {
        self.said_ns = last_ns;
    }
}

/// An attack in progress, as `/metrics` shows it.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AttackNow {
    /// The host, or the prefix ("198.18.3.0/24").
    pub destination: String,
    pub vector: String,
    /// The last second's packets and bits.
    pub pps: u64,
    pub bps: u64,
    pub peak_pps: u64,
    /// Distinct sources (estimated past 64).
    pub sources: u64,
}

impl AttackNow {
    /// The attack an episode is, if it is one.
    pub fn of(ep: &Episode) -> Option<AttackNow> {
        let a = ep.evidence::<Attack>()?;
        let Key::Target(_, who, _) = ep.key else {
            return None;
        };
        Some(AttackNow {
            destination: match a.prefix {
                Some(len) => format!("{}/{len}", addr(who)),
                None => addr(who).to_string(),
            },
            vector: a.vector.name().to_string(),
            pps: a.pps,
            bps: a.bps,
            peak_pps: a.peak_pps,
            sources: a.sources.count().max(ep.sources.count()),
        })
    }
}

/// The attack detector.
#[derive(Default)]
pub struct Ddos {
    entries: FxHashMap<EntryKey, Entry>,
    /// Packets not accounted because the table was full.
    pub untracked: u64,
}

/// One unit of traffic: an event, or an aggregate's packets.
struct Traffic {
    ts_ns: i64,
    src: u128,
    /// An exact source (an event, or an aggregate of one source).
    exact: bool,
    dst: u128,
    /// `dst` is a network (a coarse aggregate's /24 or /64), not a host.
    dst_net: bool,
    vector: Vector,
    packets: u64,
    bytes: u64,
}

impl Detector for Ddos {
    fn name(&self) -> &'static str {
        "ddos"
    }

    fn observe(&mut self, p: &Probe, _seen: &Seen, cx: &mut Context) {
        if p.class != fireplot_common::event::Class::Unsolicited as u8 {
            return;
        }
        let t = Traffic {
            ts_ns: p.ts_ns,
            src: p.src,
            exact: true,
            dst: p.dst,
            dst_net: false,
            vector: p.vector,
            packets: 1,
            bytes: u64::from(p.len),
        };
        self.account(cx, &t, Some(p));
    }

    /// An aggregate counts its packets and bytes (its mean length times
    /// its count) on its destination and vector; one of the kernel's
    /// coarse table, whose destination is a /24 or /64, on that network
    /// only.
    fn observe_aggregate(&mut self, r: &Record, cx: &mut Context) {
        let Some(dst) = r.dst else {
            return;
        };
        if r.class != fireplot_common::event::Class::Unsolicited as u8 {
            return;
        }
        let packets = u64::from(r.count.max(1));
        let t = Traffic {
            ts_ns: r.ts_ns,
            src: r.src.map_or(0, addr_key),
            exact: r.src.is_some() && r.src_prefix().is_none(),
            dst: addr_key(dst),
            dst_net: r.dst_prefix().is_some(),
            vector: Vector::of(r),
            packets,
            bytes: u64::from(r.len) * packets,
        };
        match r.dst_prefix() {
            Some(len) => {
                let key = (t.dst, t.vector.code() | PREFIX);
                self.account_one(cx, &t, None, key, Some(len));
            }
            None => self.account(cx, &t, None),
        }
    }

    fn finished(&self, ep: &Episode, cx: &Context) -> bool {
        cx.now - ep.last_ns > cx.cfg.ddos_quiet_s as i64 * SEC
    }

    fn ended(&mut self, ep: &Episode, _cx: &mut Context) {
        if let Key::Target(kind, a, code) = ep.key {
            if kind == Kind(&DDOS) {
                if let Some(e) = self.entries.get_mut(&(a, code)) {
                    e.episode = None;
                }
            }
        }
    }

    fn tick(&mut self, cx: &mut Context) {
        if self.entries.len() < ENTRY_CAP / 2 {
            return;
        }
        // Entries quiet for a minute and not under attack leave.
        let sec = cx.now.div_euclid(SEC);
        self.entries
            .retain(|_, e| e.episode.is_some() || sec - e.sec <= 60);
    }

    fn bytes(&self) -> usize {
        self.entries.capacity() * (std::mem::size_of::<(EntryKey, Entry)>() + 1)
            + self
                .entries
                .values()
                .map(|e| e.sources.bytes() + e.hosts.bytes())
                .sum::<usize>()
    }

    fn stats(&self, s: &mut super::DetectStats) {
        s.ddos_untracked = self.untracked;
    }
}

impl Ddos {
    fn account(&mut self, cx: &mut Context, t: &Traffic, p: Option<&Probe>) {
        let v6 = addr(t.dst).is_ipv6();
        let (mask, len) = if v6 {
            (!0u128 << 64, 64u8)
        } else {
            (!0u128 << 8, 24u8)
        };
        self.account_one(cx, t, p, (t.dst, t.vector.code()), None);
        self.account_one(
            cx,
            t,
            p,
            (t.dst & mask, t.vector.code() | PREFIX),
            Some(len),
        );
    }

    fn account_one(
        &mut self,
        cx: &mut Context,
        t: &Traffic,
        p: Option<&Probe>,
        key: EntryKey,
        prefix: Option<u8>,
    ) {
        let cfg = &cx.cfg;
        let sec = t.ts_ns.div_euclid(SEC);
        if self.entries.len() >= ENTRY_CAP && !self.entries.contains_key(&key) {
            self.untracked += t.packets;
            return;
        }
        let e = self
            .entries
            .entry(key)
            .or_insert_with(|| Entry::new(t.vector, sec));
        e.advance(sec, cfg.ddos_baseline_s as f64);
        // A late aggregate of the second before counts there.
        let (packets, bytes) = if sec == e.sec {
            e.packets += t.packets;
            e.bytes += t.bytes;
            (e.packets, e.bytes)
        } else if sec == e.sec - 1 {
            e.prev_packets += t.packets;
            e.prev_bytes += t.bytes;
            (e.prev_packets, e.prev_bytes)
        } else {
            (0, 0)
        };
        e.sources.insert(t.src);
        // The estimate sums the registers: refreshed while it is small (it
        // may cross a threshold soon), then every 64 updates.
        e.inserts = e.inserts.wrapping_add(1);
        if e.sources_now < 64 || e.inserts.is_multiple_of(64) {
            e.sources_now = e.sources.count();
        }
        if prefix.is_some() && !t.dst_net {
            e.hosts.insert(t.dst);
        }
        let heavy = if t.exact && prefix.is_none() && sec == e.sec {
            e.count_source(t.src, t.packets)
        } else {
            0
        };
        let burst = heavy + e.prev_packets.min(heavy) >= u64::from(cfg.flood_burst_packets);
        let min_sources = if e.vector.is_reflection() {
            cfg.ddos_reflection_sources
        } else {
            cfg.ddos_min_sources
        };
        let above = u64::max(packets, 1) as f64 >= cfg.ddos_rate_factor * e.baseline
            && (packets >= u64::from(cfg.ddos_min_pps) || bytes * 8 >= cfg.ddos_min_bps)
            && e.sources_now >= u64::from(min_sources);
        let spoofed = e.sources_now >= u64::from(cfg.ddos_spoofed_sources)
            && u64::max(packets, 1) as f64 >= cfg.ddos_rate_factor * e.baseline;
        // A prefix is carpet bombing only when no one host explains it.
        let attacking = (above || spoofed) && (prefix.is_none() || e.hosts.count() >= 8);
        if attacking && sec >= e.sec - 1 {
            e.attack_sec = e.attack_sec.max(sec);
        }
        let (vector, episode) = (e.vector, e.episode);
        // The sources of its minute so far are an attack's own.
        let sources = if episode.is_none() && attacking {
            e.sources.clone()
        } else {
            Distinct::default()
        };
        let hosts = if prefix.is_some() && (attacking || episode.is_some()) {
            e.hosts.count()
        } else {
            0
        };
        // A burst within an attack is one of its top sources, not a
        // flood of its own.
        if burst && episode.is_none() && !attacking {
            burst_flood(cx, t, p, heavy);
        }
        if episode.is_none() && !attacking {
            return;
        }
        let id = match episode {
            Some(id) => id,
            None => {
                let first = First {
                    vector,
                    prefix,
                    packets,
                    bytes,
                    hosts,
                    sources,
                };
                let id = start(cx, t, key, first);
                if let Some(e) = self.entries.get_mut(&key) {
                    e.episode = Some(id);
                }
                id
            }
        };
        let Some(ep) = cx.book.get_mut(id) else {
            return;
        };
        ep.probes += t.packets;
        if attacking {
            ep.last_ns = ep.last_ns.max(t.ts_ns);
        }
        if let Some(p) = p {
            if ep.sources.count() < 65_536 {
                ep.sources.insert(p.src);
            }
            if prefix.is_some() {
                ep.targets.insert(p.dst);
            }
            if super::probe::ported(p.proto) && ep.ports.len() < 1024 {
                ep.add_port(p.port);
            }
        } else if ep.sources.count() < 65_536 && t.src != 0 {
            ep.sources.insert(t.src);
        }
        if let Some(a) = ep.evidence_mut::<Attack>() {
            a.bytes += t.bytes;
            a.hosts = a.hosts.max(hosts);
            a.sources.insert(t.src);
            if packets > a.peak_pps {
                a.peak_pps = packets;
            }
            a.peak_bps = a.peak_bps.max(bytes * 8);
            a.pps = packets;
            a.bps = bytes * 8;
            if heavy > 0 {
                a.note_top(t.src, heavy);
            }
        }
    }
}

/// What an attack's first second showed.
struct First {
    vector: Vector,
    prefix: Option<u8>,
    packets: u64,
    bytes: u64,
    hosts: u64,
    sources: Distinct<256>,
}

/// Starts an attack episode.
fn start(cx: &mut Context, t: &Traffic, key: EntryKey, f: First) -> u64 {
    let k = Key::Target(Kind(&DDOS), key.0, key.1);
    let probe = Probe::of_traffic(t.ts_ns, t.src, key.0, f.vector);
    let packets = f.packets;
    let evidence = Box::new(Attack {
        vector: f.vector,
        prefix: f.prefix,
        hosts: f.hosts,
        bytes: 0,
        peak_pps: packets,
        peak_bps: f.bytes * 8,
        pps: packets,
        bps: f.bytes * 8,
        top: Vec::new(),
        sources: f.sources,
        said_ns: i64::MIN,
    });
    let sec = t.ts_ns.div_euclid(SEC);
    cx.start(Kind(&DDOS), k, &probe, evidence, |ep| {
        ep.targets.insert(key.0);
        ep.first_ns = sec * SEC;
        // The packets so far this second; the caller adds this one.
        ep.probes = packets.saturating_sub(t.packets).max(1);
    })
}

/// A source sending `flood_burst_packets` to one host within a second: its
/// flood, naming the host.
fn burst_flood(cx: &mut Context, t: &Traffic, p: Option<&Probe>, heavy: u64) {
    let key = Key::Src(Kind(&FLOOD), t.src, 0);
    if let Some(id) = cx.active(&key) {
        if let Some(f) = cx
            .book
            .get_mut(id)
            .and_then(|ep| ep.evidence_mut::<Flood>())
        {
            f.peak_pps = f.peak_pps.max(heavy);
        }
        return;
    }
    let probe = match p {
        Some(p) => *p,
        None => Probe::of_traffic(t.ts_ns, t.src, t.dst, t.vector),
    };
    let sec = t.ts_ns.div_euclid(SEC);
    let evidence = Box::new(Flood {
        peak_pps: heavy,
        ..Flood::default()
    });
    cx.start(Kind(&FLOOD), key, &probe, evidence, |ep| {
        ep.seed_from(&probe);
        ep.first_ns = sec * SEC;
        ep.probes = heavy;
    });
}
