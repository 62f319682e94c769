//! Property test of the XDP classifier: at least 10^6 random and mutated
//! frames (built on valid Ethernet/VLAN/IPv4/IPv6/TCP/UDP/ICMP/SCTP/UDP-Lite/
//! DCCP headers, then
//! truncated, bit-flipped, extension chains lengthened) go through the real
//! program with BPF_PROG_TEST_RUN. Whatever the frame:
//! - the action is XDP_PASS (monitor mode never drops);
//! - the class counters grow by exactly the number of frames (one class each);
//! - events are only `unsolicited`, or `malformed` when asked for;
//! - every unsolicited (and asked-for malformed) frame is an event, a
//!   packet held back (source or target limit, budget, full ring) and then
//!   aggregated or counted as lost, and userspace gets every event sent.
//!
//! The generator is seeded: a failure prints the seed and frame to replay.
//! `FIREPLOT_FUZZ_FRAMES` sets the count (default 1,000,000; `cargo xtask
//! fuzz` runs more), `FIREPLOT_FUZZ_SEED` the seed.

use std::collections::BTreeMap;

use aya::maps::{MapData, RingBuf};
use fireplot::sensor::{Limits, LoadOptions, Sensor, PROG_INGRESS};
use fireplot_common::{
    counters::Misc,
    event::{Class, Event},
};
use fireplot_tests::{
    packets::{flags::*, *},
    privileged,
};

const XDP_PASS: u32 = 2;
/// Frames between counter checks (the ring holds far more events).
const BATCH: u64 = 20_000;

/// xorshift64*: small, fast, and the same sequence for the same seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
    fn port(&mut self) -> u16 {
        match self.below(4) {
            0 => [22, 23, 53, 80, 123, 443, 7547, 37777][self.below(8) as usize],
            _ => self.next() as u16,
        }
    }
}

/// Flows the inside opened (recorded by the real egress program), so that
/// some generated frames are replies and related ICMP errors.
const FLOWS: [(u16, u16); 4] = [(40000, 443), (40001, 80), (40002, 53), (40003, 123)];

fn v4_addr(rng: &mut Rng, inside: bool) -> [u8; 4] {
    if inside {
        INSIDE_V4
    } else {
        match rng.below(3) {
            0 => OUTSIDE_V4,
            1 => OTHER_V4,
            _ => [
                198,
                18 + rng.below(2) as u8,
                rng.next() as u8,
                rng.next() as u8,
            ],
        }
    }
}

fn v6_addr(rng: &mut Rng, inside: bool) -> [u8; 16] {
    if inside {
        INSIDE_V6
    } else if rng.chance(50) {
        OUTSIDE_V6
    } else {
        let mut a = OTHER_V6;
        a[8..].copy_from_slice(&rng.next().to_be_bytes());
        a
    }
}

fn l4(rng: &mut Rng, v6: bool) -> L4 {
    let reply = rng.chance(25);
    let (flow_sport, flow_dport) = FLOWS[rng.below(FLOWS.len() as u64) as usize];
    match rng.below(10) {
        0..=4 => L4::Tcp {
            sport: if reply { flow_dport } else { rng.port() },
            dport: if reply { flow_sport } else { rng.port() },
            flags: match rng.below(4) {
                0 => SYN,
                1 => SYN | ACK,
                2 => ACK,
                _ => rng.next() as u8,
            },
        },
        5..=7 => L4::Udp {
            sport: if reply { flow_dport } else { rng.port() },
            dport: if reply { flow_sport } else { rng.port() },
        },
        8 => {
            let ty = match (v6, rng.below(4)) {
                (false, 0) => 8,
                (false, 1) => 3,
                (false, 2) => 0,
                (true, 0) => 128,
                (true, 1) => 1,
                (true, 2) => 135,
                _ => rng.next() as u8,
            };
            L4::Icmp {
                ty,
                code: rng.below(4) as u8,
                rest: (rng.next() as u32).to_be_bytes(),
            }
        }
        9 if rng.chance(50) => {
            let (sport, dport) = if reply {
                (flow_dport, flow_sport)
            } else {
                (rng.port(), rng.port())
            };
            port_proto(rng, sport, dport)
        }
        // (IPv6 extension-header numbers are not "raw": the builder would
        // need their headers; the chains are built by `v6_with_ext`.)
        _ if v6 => L4::Raw {
            proto: [47, 50, 132, 41, 255][rng.below(5) as usize],
        },
        _ => L4::Raw {
            proto: [47, 50, 132, 41, 0, 255][rng.below(6) as usize],
        },
    }
}

/// SCTP (mostly INIT and its answers), UDP-Lite or DCCP (any type).
fn port_proto(rng: &mut Rng, sport: u16, dport: u16) -> L4 {
    match rng.below(3) {
        0 => L4::Sctp {
            sport,
            dport,
            chunk: match rng.below(5) {
                0 => 2,
                1 => 6,
                2 => 10,
                3 => rng.next() as u8,
                _ => 1,
            },
        },
        1 => L4::UdpLite { sport, dport },
        _ => L4::Dccp {
            sport,
            dport,
            ty: rng.below(16) as u8,
        },
    }
}

fn vlan(rng: &mut Rng) -> Vlan {
    match rng.below(8) {
        0 => Vlan::Single(rng.below(4095) as u16 + 1),
        1 => Vlan::Double(rng.below(4095) as u16 + 1, rng.below(4095) as u16 + 1),
        _ => Vlan::None,
    }
}

/// A valid frame of a random shape.
fn frame(rng: &mut Rng) -> Vec<u8> {
    let payload = vec![0xa5u8; rng.below(64) as usize];
    match rng.below(10) {
        0..=4 => {
            let (src, dst) = (v4_addr(rng, false), v4_addr(rng, true));
            match rng.below(10) {
                0 => v4_fragment(src, dst, [6, 17, 1][rng.below(3) as usize]),
                1 => {
                    let opts = vec![1u8; 4 * rng.below(11) as usize];
                    v4_with_options(src, dst, l4(rng, false), &opts)
                }
                _ => {
                    let l = l4(rng, false);
                    v4_vlan(vlan(rng), src, dst, l, &payload)
                }
            }
        }
        5..=8 => {
            let (src, dst) = (v6_addr(rng, false), v6_addr(rng, true));
            match rng.below(6) {
                0 => v6_fragment(src, dst, [6, 17, 58][rng.below(3) as usize]),
                // Extension chains up to past the walk bound (8).
                1 | 2 => {
                    let hops = rng.below(12) as usize;
                    let l = l4(rng, true);
                    v6_with_ext(src, dst, hops, l)
                }
                _ => {
                    let l = l4(rng, true);
                    v6_vlan(vlan(rng), src, dst, l, &payload)
                }
            }
        }
        9 if rng.chance(50) => related(rng),
        _ => arp(),
    }
}

/// An ICMP error from outside quoting the start of a packet of an inside flow.
fn related(rng: &mut Rng) -> Vec<u8> {
    let (sport, dport) = FLOWS[rng.below(FLOWS.len() as u64) as usize];
    let quoted_l4 = if rng.chance(50) {
        L4::Tcp {
            sport,
            dport,
            flags: SYN,
        }
    } else {
        L4::Udp { sport, dport }
    };
    let rest = [0u8; 4];
    if rng.chance(50) {
        let quoted = ip_part(&v4(INSIDE_V4, OUTSIDE_V4, quoted_l4));
        let icmp = L4::Icmp {
            ty: 3,
            code: 3,
            rest,
        };
        v4_vlan(Vlan::None, OUTSIDE_V4, INSIDE_V4, icmp, &quoted[..28])
    } else {
        let quoted = ip_part(&v6(INSIDE_V6, OUTSIDE_V6, quoted_l4));
        let icmp = L4::Icmp {
            ty: 1,
            code: 4,
            rest,
        };
        v6_vlan(Vlan::None, OUTSIDE_V6, INSIDE_V6, icmp, &quoted[..48])
    }
}

/// Truncates, flips bits or overwrites bytes, mostly in the headers.
fn mutate(rng: &mut Rng, f: &mut Vec<u8>) {
    match rng.below(10) {
        0..=3 => {}
        4 | 5 => {
            // Never below an Ethernet header: the kernel refuses those.
            let len = 14 + rng.below(f.len() as u64 - 13) as usize;
            f.truncate(len);
        }
        6..=8 => {
            for _ in 0..=rng.below(4) {
                let at = rng.below(f.len().min(96) as u64) as usize;
                f[at] ^= 1 << rng.below(8);
            }
        }
        _ => {
            let at = rng.below(f.len() as u64) as usize;
            f[at] = rng.next() as u8;
        }
    }
}

#[derive(Default, Debug, Clone, Copy)]
struct Totals {
    classes: u64,
    unsolicited: u64,
    malformed: u64,
    sent: u64,
    /// Not sent one by one, for any reason (source or target limit,
    /// budget, full ring): aggregated or counted as lost.
    held: u64,
    aggregated: u64,
    agg_lost: u64,
}

fn totals(s: &Sensor) -> Totals {
    let c = s.counters().expect("read counters");
    Totals {
        classes: c.classes.iter().map(|k| k.packets).sum(),
        unsolicited: c.class_total(Class::Unsolicited),
        malformed: c.class_total(Class::Malformed),
        sent: c.misc(Misc::EventsSent),
        held: c.misc(Misc::Suppressed)
            + c.misc(Misc::TargetLimited)
            + c.misc(Misc::OverBudget)
            + c.misc(Misc::RingFull),
        aggregated: c.misc(Misc::Aggregated),
        agg_lost: c.misc(Misc::AggLost),
    }
}

fn drain(ring: &mut RingBuf<MapData>, classes: &mut BTreeMap<u8, u64>) -> u64 {
    let mut n = 0;
    while let Some(item) = ring.next() {
        let ev = Event::from_bytes(&item).expect("an event record");
        *classes.entry(ev.class).or_default() += 1;
        n += 1;
    }
    n
}

/// Runs `frames` generated frames through one sensor configured with
/// `limits`; checks the properties after every batch.
fn run_phase(limits: Limits, frames: u64, seed: u64) {
    let emit_malformed = limits.emit_malformed;
    let mut sensor = Sensor::load(&LoadOptions::default()).expect("load sensor");
    sensor.configure(&limits, &[]).expect("configure");
    let mut ring = sensor.take_events().expect("ring");
    for (sport, dport) in FLOWS {
        for f in [
            v4(
                INSIDE_V4,
                OUTSIDE_V4,
                L4::Tcp {
                    sport,
                    dport,
                    flags: SYN,
                },
            ),
            v4(INSIDE_V4, OUTSIDE_V4, L4::Udp { sport, dport }),
            v6(
                INSIDE_V6,
                OUTSIDE_V6,
                L4::Tcp {
                    sport,
                    dport,
                    flags: SYN,
                },
            ),
            v6(INSIDE_V6, OUTSIDE_V6, L4::Udp { sport, dport }),
            v4(
                INSIDE_V4,
                OUTSIDE_V4,
                L4::Sctp {
                    sport,
                    dport,
                    chunk: 1,
                },
            ),
            v6(INSIDE_V6, OUTSIDE_V6, L4::UdpLite { sport, dport }),
            v4(
                INSIDE_V4,
                OUTSIDE_V4,
                L4::Dccp {
                    sport,
                    dport,
                    ty: 0,
                },
            ),
        ] {
            sensor.test_run_egress(&f, 1).expect("egress");
        }
    }
    let mut rng = Rng(seed);
    let mut before = totals(&sensor);
    let mut event_classes: BTreeMap<u8, u64> = BTreeMap::new();
    let mut done = 0u64;
    while done < frames {
        let batch = BATCH.min(frames - done);
        let mut received = 0;
        for i in 0..batch {
            let mut f = frame(&mut rng);
            mutate(&mut rng, &mut f);
            let (action, _) = sensor.test_run(PROG_INGRESS, &f, 1).unwrap_or_else(|e| {
                panic!("seed {seed:#x} frame {}: test_run: {e}; {f:02x?}", done + i)
            });
            assert_eq!(
                action,
                XDP_PASS,
                "seed {seed:#x} frame {}: every frame passes; {f:02x?}",
                done + i
            );
            if i % 4096 == 4095 {
                received += drain(&mut ring, &mut event_classes);
            }
        }
        received += drain(&mut ring, &mut event_classes);
        let after = totals(&sensor);
        let d = |a: u64, b: u64| a - b;
        assert_eq!(
            d(after.classes, before.classes),
            batch,
            "seed {seed:#x}: one class per frame ({before:?} → {after:?})"
        );
        let eventful = d(after.unsolicited, before.unsolicited)
            + if emit_malformed {
                d(after.malformed, before.malformed)
            } else {
                0
            };
        assert_eq!(
            d(after.sent, before.sent) + d(after.held, before.held),
            eventful,
            "seed {seed:#x}: every eventful frame is an event or held back"
        );
        assert_eq!(
            d(after.held, before.held),
            d(after.aggregated, before.aggregated) + d(after.agg_lost, before.agg_lost),
            "seed {seed:#x}: every frame held back is aggregated or a counted loss"
        );
        assert_eq!(
            received,
            d(after.sent, before.sent),
            "seed {seed:#x}: userspace got every event sent"
        );
        done += batch;
        before = after;
    }
    let allowed: Vec<u8> = if emit_malformed {
        vec![Class::Unsolicited as u8, Class::Malformed as u8]
    } else {
        vec![Class::Unsolicited as u8]
    };
    for (class, n) in &event_classes {
        assert!(
            allowed.contains(class),
            "seed {seed:#x}: {n} events of class {class}, only {allowed:?} may send events"
        );
    }
    let t = totals(&sensor);
    assert!(
        t.unsolicited > frames / 10,
        "the generator reaches unsolicited: {t:?}"
    );
    assert!(
        t.malformed > frames / 20,
        "the mutations reach malformed: {t:?}"
    );
    let c = sensor.counters().expect("counters");
    for class in [Class::Reply, Class::Related, Class::Control, Class::NonIp] {
        assert!(
            c.class_total(class) > 0,
            "the generator reaches {class:?}: {:?}",
            c.classes
        );
    }
    eprintln!(
        "fuzz phase (emit_malformed {emit_malformed}, rate limit {}): {frames} frames, {t:?}, events by class {event_classes:?}",
        limits.rate_limit
    );
}

#[test]
fn a_million_random_and_mutated_frames_always_pass_and_add_up() {
    if !privileged("a_million_random_and_mutated_frames_always_pass_and_add_up") {
        return;
    }
    let frames: u64 = std::env::var("FIREPLOT_FUZZ_FRAMES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let seed: u64 = std::env::var("FIREPLOT_FUZZ_SEED")
        .ok()
        .and_then(|v| u64::from_str_radix(v.trim_start_matches("0x"), 16).ok())
        .unwrap_or(0x5eed_f12e_b107_0001);
    // Half with the limiter off and malformed events on (every eventful
    // frame must be an event), half with the default limiter.
    run_phase(
        Limits {
            rate_limit: 0,
            target_limit: 0,
            event_budget: 0,
            emit_malformed: true,
            ..Limits::default()
        },
        frames / 2,
        seed,
    );
    run_phase(Limits::default(), frames - frames / 2, seed ^ 0xffff);
}
