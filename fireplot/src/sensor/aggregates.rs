//! Reading the kernel's aggregates (`fireplot_common::agg`): the counts
//! of packets the classifier did not send one by one, summed over the CPUs
//! and deleted once their second is over.

use aya::maps::PerCpuHashMap;
use fireplot_common::agg::{AggKey, AggValue};

use super::{map_error, Error, Sensor};

impl Sensor {
    /// Takes the aggregates whose second is over (summed over the CPUs;
    /// `mixed` unless every packet came from `src`) (`before_sec`: the
    /// kernel clock's seconds; `None`: all, once the programs are
    /// detached), summed over the CPUs, in key order. A second is taken
    /// only once the kernel can no longer add to it, so no count is lost
    /// between the read and the delete.
    pub fn take_aggregates(
        &mut self,
        before_sec: Option<u64>,
    ) -> Result<Vec<(AggKey, AggValue)>, Error> {
        let mut out = self.take_aggregates_of("AGGREGATES", before_sec)?;
        out.extend(self.take_aggregates_of("AGG_COARSE", before_sec)?);
        Ok(out)
    }

    fn take_aggregates_of(
        &mut self,
        name: &'static str,
        before_sec: Option<u64>,
    ) -> Result<Vec<(AggKey, AggValue)>, Error> {
        let mut map = PerCpuHashMap::<_, AggKey, AggValue>::try_from(self.map_mut(name)?)
            .map_err(map_error(name))?;
        let mut keys: Vec<AggKey> = map
            .keys()
            .filter_map(Result::ok)
            .filter(|k| before_sec.is_none_or(|b| k.sec < b))
            .collect();
        // A key deleted during the walk restarts it: take each once.
        keys.sort_unstable();
        keys.dedup();
        let mut out = Vec::with_capacity(keys.len());
        for k in keys {
            let Ok(per_cpu) = map.get(&k, 0) else {
                continue;
            };
            let mut sum = AggValue::default();
            for v in per_cpu.iter().filter(|v| v.packets > 0) {
                if sum.packets == 0 {
                    sum.src = v.src;
                } else if sum.src != v.src {
                    sum.mixed = 1;
                }
                sum.mixed |= v.mixed;
                sum.packets += v.packets;
                sum.bytes += v.bytes;
                sum.tcp_flags |= v.tcp_flags;
            }
            map.remove(&k).map_err(map_error(name))?;
            if sum.packets > 0 {
                out.push((k, sum));
            }
        }
        Ok(out)
    }
}
