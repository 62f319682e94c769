//! Colour by who the sources are: each probe takes the colour of its
//! source's country or network instead of its family and protocol.
//!
//! The groups are not known before the data is read, so the counts are
//! kept sparse per (group, pixel) while events stream past. At the end the
//! busiest groups get the palette's colours, the rest are merged into
//! "other" and sources the store knows nothing of are "unknown".

use std::{collections::HashMap, net::IpAddr};

use plotters::style::RGBColor;
use rustc_hash::FxHashMap;

use super::Theme;

/// Groups with a colour of their own; the rest are "other".
pub const NAMED: usize = 10;

/// Ten hues far apart on black and on white (Tableau 10, brightened for
/// the dark theme).
const DARK: [(u8, u8, u8); NAMED] = [
    (0x4e, 0xa8, 0xff),
    (0xff, 0x9d, 0x2e),
    (0x5f, 0xe0, 0x5a),
    (0xff, 0x4d, 0x4f),
    (0xc3, 0x8b, 0xff),
    (0xd9, 0x9a, 0x6c),
    (0xff, 0x8f, 0xd8),
    (0x3d, 0xf0, 0xf0),
    (0xe8, 0xe8, 0x3a),
    (0xa0, 0xff, 0xc0),
];
const LIGHT: [(u8, u8, u8); NAMED] = [
    (0x1f, 0x77, 0xb4),
    (0xff, 0x7f, 0x0e),
    (0x2c, 0xa0, 0x2c),
    (0xd6, 0x27, 0x28),
    (0x94, 0x67, 0xbd),
    (0x8c, 0x56, 0x4b),
    (0xe3, 0x77, 0xc2),
    (0x17, 0xbe, 0xcf),
    (0xbc, 0xbd, 0x22),
    (0x2e, 0x8b, 0x57),
];

/// Per-pixel counts per group, sparse.
pub struct Groups {
    /// Who each source is (its group's index).
    of: HashMap<IpAddr, u32>,
    names: Vec<String>,
    /// (group, pixel index) → count. Group `names.len()` is "unknown".
    cells: FxHashMap<(u32, u32), u32>,
    totals: Vec<u64>,
}

/// A group as drawn: its colour, its legend label, its pixels.
pub struct Drawn {
    pub color: RGBColor,
    pub label: String,
    pub total: u64,
    /// pixel index → count
    pub cells: FxHashMap<u32, u32>,
}

impl Groups {
    /// `of`: each known source's group name (as [`GroupBy::key`](crate::record::GroupBy::key) gives it).
    pub fn new(of: HashMap<IpAddr, String>) -> Groups {
        let mut index: HashMap<String, u32> = HashMap::new();
        let mut names = Vec::new();
        let of = of
            .into_iter()
            .map(|(a, name)| {
                let i = *index.entry(name.clone()).or_insert_with(|| {
                    names.push(name);
                    names.len() as u32 - 1
                });
                (a, i)
            })
            .collect();
        let totals = vec![0; names.len() + 1];
        Groups {
            of,
            names,
            cells: FxHashMap::default(),
            totals,
        }
    }

    pub fn bump(&mut self, src: Option<IpAddr>, idx: u32, n: u64) {
        let unknown = self.names.len() as u32;
        let g = src
            .and_then(|a| self.of.get(&a).copied())
            .unwrap_or(unknown);
        self.totals[g as usize] += n;
        let c = self.cells.entry((g, idx)).or_insert(0);
        *c = c.saturating_add(n.min(u32::MAX as u64) as u32);
    }

    /// The groups to draw, busiest first: up to [`NAMED`] with their own
    /// colour, then "other" (the rest merged) and "unknown", each only
    /// when it has events.
    pub fn drawn(&self, theme: Theme) -> Vec<Drawn> {
        let unknown = self.names.len();
        let mut order: Vec<usize> = (0..unknown).filter(|&g| self.totals[g] > 0).collect();
        order.sort_by(|&a, &b| {
            self.totals[b]
                .cmp(&self.totals[a])
                .then(self.names[a].cmp(&self.names[b]))
        });
        let palette = match theme {
            Theme::Dark => DARK,
            Theme::Light => LIGHT,
        };
        let grey = match theme {
            Theme::Dark => (RGBColor(0x9a, 0x9a, 0x9a), RGBColor(0x5a, 0x5a, 0x5a)),
            Theme::Light => (RGBColor(0x70, 0x70, 0x70), RGBColor(0xb0, 0xb0, 0xb0)),
        };
        // Which slot each group is drawn in.
        let mut slot = vec![usize::MAX; unknown + 1];
        let mut out: Vec<Drawn> = Vec::new();
        for (rank, &g) in order.iter().enumerate() {
            let s = if rank < NAMED {
                let (r, gr, b) = palette[rank];
                out.push(Drawn {
                    color: RGBColor(r, gr, b),
                    label: self.names[g].clone(),
                    total: 0,
                    cells: FxHashMap::default(),
                });
                out.len() - 1
            } else {
                if rank == NAMED {
                    out.push(Drawn {
                        color: grey.0,
                        label: format!("{} others", order.len() - NAMED),
                        total: 0,
                        cells: FxHashMap::default(),
                    });
                }
                NAMED
            };
            slot[g] = s;
        }
        if self.totals[unknown] > 0 {
            out.push(Drawn {
                color: grey.1,
                label: "unknown".into(),
                total: 0,
                cells: FxHashMap::default(),
            });
            slot[unknown] = out.len() - 1;
        }
        for (&(g, idx), &c) in &self.cells {
            let d = &mut out[slot[g as usize]];
            let e = d.cells.entry(idx).or_insert(0);
            *e = e.saturating_add(c);
        }
        for (g, &t) in self.totals.iter().enumerate() {
            if t > 0 {
                out[slot[g]].total += t;
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn the_busiest_groups_get_colours_and_the_rest_merge() {
        let mut of = HashMap::new();
        // 12 countries; source i sends i+1 probes.
        let codes = [
            "AA", "BB", "CC", "DD", "EE", "FF", "GG", "HH", "II", "JJ", "KK", "LL",
        ];
        for (i, c) in codes.iter().enumerate() {
            of.insert(ip(&format!("192.0.2.{i}")), c.to_string());
        }
        let mut g = Groups::new(of);
        for (i, _) in codes.iter().enumerate() {
            for k in 0..=i {
                g.bump(Some(ip(&format!("192.0.2.{i}"))), k as u32, 1);
            }
        }
        g.bump(Some(ip("198.51.100.1")), 7, 5);
        g.bump(None, 7, 2);
        let d = g.drawn(Theme::Dark);
        // 10 named, busiest first, then the 2 least busy as "others", then unknown.
        assert_eq!(d.len(), 12);
        assert_eq!(d[0].label, "LL");
        assert_eq!(d[0].total, 12);
        assert_eq!(d[9].label, "CC");
        assert_eq!(d[10].label, "2 others");
        assert_eq!(d[10].total, 1 + 2);
        assert_eq!(d[11].label, "unknown");
        assert_eq!(d[11].total, 7);
        assert_eq!(d[11].cells[&7], 7);
        // "others" holds AA's 1 probe at pixel 0 and BB's 2 at pixels 0 and 1.
        assert_eq!(d[10].cells[&0], 2);
        assert_eq!(d[10].cells[&1], 1);
        let all: u64 = d.iter().map(|x| x.total).sum();
        assert_eq!(all, (1..=12).sum::<u64>() + 7);
        // Distinct colours for the named ones.
        let mut colors: Vec<_> = d[..10]
            .iter()
            .map(|x| (x.color.0, x.color.1, x.color.2))
            .collect();
        colors.sort();
        colors.dedup();
        assert_eq!(colors.len(), 10);
    }
}
