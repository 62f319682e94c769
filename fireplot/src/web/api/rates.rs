//! The rate strip under the fireplot: packets and bytes per time bin by
//! attack vector ([`Vector::of`], the detector's), from the stored events
//! and kernel aggregates of the view (an aggregate counts its packets, at
//! its packets times its length in bytes).

use super::*;
use crate::detect::vector::Vector;

/// The most bins one request may ask for (about one per pixel of a wide
/// plot).
pub const MAX_BINS: u64 = 600;
/// The longest range the strip reads: it counts every stored record of
/// the range (the plot's hourly bins hold no vector).
pub const MAX_RATE_RANGE_NS: i64 = 31 * 86_400 * 1_000_000_000;
/// Series drawn apart, the heaviest; the others are summed in one.
pub const MAX_SERIES: usize = 10;

/// One vector's counts per bin.
struct Series {
    vector: Option<Vector>,
    packets: Vec<u64>,
    bytes: Vec<u64>,
}

impl Series {
    fn new(vector: Option<Vector>, bins: usize) -> Series {
        Series {
            vector,
            packets: vec![0; bins],
            bytes: vec![0; bins],
        }
    }

    fn total(&self) -> u64 {
        self.packets.iter().sum()
    }

    fn json(&self) -> Value {
        let (name, label, code) = match self.vector {
            Some(v) => (v.name(), v.label(), Some(v.code())),
            None => ("rest", "other vectors".to_string(), None),
        };
        json!({
            "vector": name, "label": label, "code": code,
            "packets_total": self.total(), "bytes_total": self.bytes.iter().sum::<u64>(),
            "packets": self.packets, "bytes": self.bytes,
        })
    }
}

/// The bin of a time in `bins` equal bins over `[from, to)`.
pub(crate) fn bin_of(ts: i64, from: i64, to: i64, bins: usize) -> Option<usize> {
    if ts < from || ts >= to {
        return None;
    }
    let i = (ts - from) as i128 * bins as i128 / (to - from) as i128;
    Some((i as usize).min(bins - 1))
}

/// Counts a view's records per bin and vector: the heaviest
/// [`MAX_SERIES`] vectors apart, the rest in one series.
fn count(st: &dyn History, v: &View, bins: usize) -> Result<(Vec<Series>, u64), WebError> {
    let (from, to) = (v.filter.from_ns, v.filter.to_ns);
    let mut by: HashMap<Vector, Series> = HashMap::new();
    st.for_each_plot(&v.filter, |r| {
        let Some(i) = bin_of(r.ts_ns, from, to, bins) else {
            return;
        };
        let packets = u64::from(r.count.max(1));
        let vector = Vector::of(r);
        let s = by
            .entry(vector)
            .or_insert_with(|| Series::new(Some(vector), bins));
        s.packets[i] += packets;
        s.bytes[i] += u64::from(r.len) * packets;
    })
    .map_err(server)?;
    let mut all: Vec<Series> = by.into_values().collect();
    all.sort_by(|a, b| b.total().cmp(&a.total()).then(a.vector.cmp(&b.vector)));
    let total = all.iter().map(Series::total).sum();
    if all.len() > MAX_SERIES {
        let mut rest = Series::new(None, bins);
        for s in all.drain(MAX_SERIES - 1..) {
            for i in 0..bins {
                rest.packets[i] += s.packets[i];
                rest.bytes[i] += s.bytes[i];
            }
        }
        all.push(rest);
    }
    Ok((all, total))
}

/// `/api/rates`: the view's parameters and `bins` (1 to 600, default 600).
pub async fn rates(State(s): State<Arc<Shared>>, RawQuery(q): RawQuery) -> Answer {
    let p = params(&q, &[VIEW_KEYS, &["bins"]])?;
    let mut v = View::parse(&p, now_ns())?;
    let bins = p
        .int("bins", 1, MAX_BINS as i64)?
        .unwrap_or(MAX_BINS as i64) as usize;
    let (from, to) = (v.filter.from_ns, v.filter.to_ns);
    if to - from > MAX_RATE_RANGE_NS {
        return Err(Bad(
            "the rate strip covers at most 31 days (it counts every stored record): narrow the range"
                .into(),
        )
        .into());
    }
    let (series, total) = with_store(&s, true, move |st| {
        resolve(st, &mut v)?;
        count(st, &v, bins)
    })
    .await?;
    let bin_s = (to - from) as f64 / bins as f64 / 1e9;
    Ok(axum::Json(json!({
        "from_ms": from / 1_000_000,
        "to_ms": to / 1_000_000,
        "bins": bins,
        "bin_s": bin_s,
        "packets_total": total,
        "series": series.iter().map(Series::json).collect::<Vec<_>>(),
    }))
    .into_response())
}
