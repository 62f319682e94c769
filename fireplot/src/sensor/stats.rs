//! Per-CPU counters summed over CPUs.

use std::borrow::Cow;

use aya::maps::{Map, PerCpuArray};
use fireplot_common::{
    counters::{
        Misc, COUNTERS_LEN, FAMILY_SLOTS, FAMILY_SLOT_NAMES, PORT_CHUNK, PORT_HITS_LEN,
        PORT_TABLE_NAMES, PROTO_SLOTS, PROTO_SLOT_NAMES,
    },
    event::Class,
};
use serde::{Deserialize, Serialize};

use super::Error;

/// Packets of one (class, family, protocol slot). The names are the
/// kernel side's own (borrowed) when read from the maps, owned when read
/// back from a summary.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ClassCount {
    pub class: Cow<'static, str>,
    pub family: Cow<'static, str>,
    pub proto: Cow<'static, str>,
    pub packets: u64,
}

/// Unsolicited hits on one destination port.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PortCount {
    pub family: Cow<'static, str>,
    pub proto: Cow<'static, str>,
    pub port: u16,
    pub hits: u64,
}

/// What one CPU counted: where the receive side spread the traffic, and
/// how each CPU's share of the rate limit was used.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct CpuCount {
    pub cpu: u32,
    pub unsolicited: u64,
    pub events_sent: u64,
    pub suppressed: u64,
    pub ring_full: u64,
}

/// A snapshot of all kernel counters.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Counters {
    /// Non-zero class counters.
    pub classes: Vec<ClassCount>,
    /// Loss and health counters by name.
    pub misc: Vec<(&'static str, u64)>,
    /// Non-zero port counters, most hit first.
    pub ports: Vec<PortCount>,
    /// CPUs that counted any unsolicited packet or event.
    pub per_cpu: Vec<CpuCount>,
}

use super::map_error as map_err;

impl Counters {
    /// Reads `COUNTERS` and `PORT_HITS`.
    pub fn read(counters: &Map, port_hits: &Map) -> Result<Counters, Error> {
        let counters = PerCpuArray::<_, u64>::try_from(counters).map_err(map_err("COUNTERS"))?;
        let mut flat = vec![0u64; COUNTERS_LEN as usize];
        let mut per_cpu: Vec<CpuCount> = Vec::new();
        let unsolicited_base = Class::Unsolicited as usize * FAMILY_SLOTS * PROTO_SLOTS;
        let unsolicited = unsolicited_base..unsolicited_base + FAMILY_SLOTS * PROTO_SLOTS;
        for (i, slot) in flat.iter_mut().enumerate() {
            let values = counters.get(&(i as u32), 0).map_err(map_err("COUNTERS"))?;
            *slot = values.iter().sum();
            if per_cpu.is_empty() {
                per_cpu = (0..values.len() as u32)
                    .map(|cpu| CpuCount {
                        cpu,
                        ..CpuCount::default()
                    })
                    .collect();
            }
            for (c, v) in per_cpu.iter_mut().zip(values.iter()) {
                match i {
                    _ if unsolicited.contains(&i) => c.unsolicited += v,
                    _ if i == Misc::EventsSent.index() as usize => c.events_sent += v,
                    _ if i == Misc::Suppressed.index() as usize => c.suppressed += v,
                    _ if i == Misc::RingFull.index() as usize => c.ring_full += v,
                    _ => {}
                }
            }
        }
        let mut out = Counters {
            per_cpu: per_cpu
                .into_iter()
                .filter(|c| c.unsolicited + c.events_sent + c.suppressed + c.ring_full > 0)
                .collect(),
            ..Counters::default()
        };
        for class in Class::ALL {
            for (f, family) in FAMILY_SLOT_NAMES.iter().enumerate() {
                for (p, proto) in PROTO_SLOT_NAMES.iter().enumerate() {
                    let idx = (class as usize * FAMILY_SLOTS + f) * PROTO_SLOTS + p;
                    if flat[idx] > 0 {
                        out.classes.push(ClassCount {
                            class: Cow::Borrowed(class.name()),
                            family: Cow::Borrowed(family),
                            proto: Cow::Borrowed(proto),
                            packets: flat[idx],
                        });
                    }
                }
            }
        }
        for m in Misc::ALL {
            out.misc.push((m.name(), flat[m.index() as usize]));
        }
        let hits = PerCpuArray::<_, [u64; PORT_CHUNK]>::try_from(port_hits)
            .map_err(map_err("PORT_HITS"))?;
        for chunk in 0..PORT_HITS_LEN {
            let values = hits.get(&chunk, 0).map_err(map_err("PORT_HITS"))?;
            let mut sum = [0u64; PORT_CHUNK];
            for cpu in values.iter() {
                for (s, v) in sum.iter_mut().zip(cpu.iter()) {
                    *s += v;
                }
            }
            for (i, &h) in sum.iter().enumerate() {
                if h > 0 {
                    let flat = chunk as usize * PORT_CHUNK + i;
                    let (family, proto) = PORT_TABLE_NAMES[flat / 65536];
                    out.ports.push(PortCount {
                        family: Cow::Borrowed(family),
                        proto: Cow::Borrowed(proto),
                        port: (flat % 65536) as u16,
                        hits: h,
                    });
                }
            }
        }
        out.ports
            .sort_by(|a, b| b.hits.cmp(&a.hits).then(a.port.cmp(&b.port)));
        Ok(out)
    }

    /// Packets of `class` over all families and protocols.
    pub fn class_total(&self, class: Class) -> u64 {
        self.classes
            .iter()
            .filter(|c| c.class == class.name())
            .map(|c| c.packets)
            .sum()
    }

    /// Packets of one (class, family name, proto slot name).
    pub fn class_count(&self, class: Class, family: &str, proto: &str) -> u64 {
        self.classes
            .iter()
            .filter(|c| c.class == class.name() && c.family == family && c.proto == proto)
            .map(|c| c.packets)
            .sum()
    }

    /// A misc counter.
    pub fn misc(&self, m: Misc) -> u64 {
        self.misc
            .iter()
            .find(|(n, _)| *n == m.name())
            .map(|(_, v)| *v)
            .unwrap_or(0)
    }
}
