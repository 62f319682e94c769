//! Per-pixel counts: events (or pre-binned minutes) binned as they stream
//! past, so rendering scales with the picture, not the data.

use plotters::style::RGBColor;

use super::{
    groups::Groups,
    layout::{Lane, Layout},
    Category, Theme,
};
use crate::record::Record;

/// Per-pixel counts per category, filled as events stream past.
pub struct Density {
    pub layout: Layout,
    pub(super) w: usize,
    h: usize,
    pub(super) cells: Vec<Vec<u32>>,
    /// Events per category in range.
    pub totals: [u64; Category::ALL.len()],
    /// Events outside the time range (not drawn).
    pub outside: u64,
    /// Colour by who the sources are instead of by category.
    groups: Option<Groups>,
}

impl Density {
    pub fn new(layout: Layout) -> Density {
        let (w, h) = (layout.width as usize, layout.height as usize);
        Density {
            layout,
            w,
            h,
            cells: vec![Vec::new(); Category::ALL.len()],
            totals: [0; Category::ALL.len()],
            outside: 0,
            groups: None,
        }
    }

    /// Colours dots by their source's group (country, network) instead of
    /// family and protocol. Events are then read one by one: the
    /// pre-binned minutes do not know their sources.
    pub fn color_by_groups(&mut self, groups: Groups) {
        self.groups = Some(groups);
    }

    /// Bins one event.
    pub fn add(&mut self, r: &Record) {
        let Some(x) = self.layout.x(r.ts_ns) else {
            self.outside += u64::from(r.count);
            return;
        };
        let cat = Category::of(r);
        let y = match cat {
            Category::Icmp | Category::Icmp6 => self.layout.y_lane(Lane::Icmp),
            Category::Other => self.layout.y_lane(Lane::Other),
            _ if !r.has_ports() || r.dport == 0 => self.layout.y_lane(Lane::NoPort),
            _ => self.layout.y_port(r.dport),
        };
        if let Some(g) = &mut self.groups {
            g.bump(r.src, y * self.w as u32 + x, u64::from(r.count));
        }
        self.bump(cat, x, y, u64::from(r.count));
    }

    /// Bins a tile of `n` events (its minute's middle stands for their times).
    pub fn add_tile(&mut self, t: &crate::store::tiles::Tile) {
        let Some(x) = self.layout.x(t.mid_ns) else {
            self.outside += t.n;
            return;
        };
        let cat = Category::from_parts(t.family, t.proto);
        let y = match cat {
            Category::Icmp | Category::Icmp6 => self.layout.y_lane(Lane::Icmp),
            Category::Other => self.layout.y_lane(Lane::Other),
            _ if t.row < 0 => self.layout.y_lane(Lane::NoPort),
            _ => self.layout.y_frac(crate::store::tiles::row_frac(t.row)),
        };
        self.bump(cat, x, y, t.n);
    }

    fn bump(&mut self, cat: Category, x: u32, y: u32, n: u64) {
        let i = cat.index();
        self.totals[i] += n;
        if self.groups.is_some() {
            return;
        }
        let cells = &mut self.cells[i];
        if cells.is_empty() {
            cells.resize(self.w * self.h, 0);
        }
        let idx = y as usize * self.w + x as usize;
        cells[idx] = cells[idx].saturating_add(n.min(u32::MAX as u64) as u32);
    }

    /// Can pre-binned minutes stand in for the events here? When a pixel
    /// spans at least half a minute (a tile's events then land at most a
    /// pixel from their own) and the port axis has no more pixels than the
    /// bins have rows.
    pub fn tiles_fit(&self) -> bool {
        let l = &self.layout;
        let ns_per_px = (l.to_ns - l.from_ns) / l.plot_width().max(1) as i64;
        ns_per_px >= crate::store::tiles::TILE_NS / 2
            && (l.ports_bottom - l.top) as i32 <= crate::store::tiles::ROWS
    }

    /// Fills the density from a store: from its pre-binned minutes when
    /// they fit ([`Density::tiles_fit`]) and the filter allows, else from
    /// the events. Returns the number of events.
    pub fn fill(
        &mut self,
        store: &dyn crate::store::History,
        filter: &crate::store::Filter,
    ) -> Result<u64, crate::store::StoreError> {
        if self.groups.is_none()
            && store.has_bins()
            && self.tiles_fit()
            && crate::store::Store::binnable(filter)
        {
            // Both closures bin into self; the store calls them in turn.
            let me = std::cell::RefCell::new(self);
            store.scan_tiled(filter, &mut |t| me.borrow_mut().add_tile(t), &mut |r| {
                me.borrow_mut().add(r)
            })
        } else {
            store.for_each_plot(filter, |r| self.add(r))
        }
    }

    pub fn total(&self) -> u64 {
        self.totals.iter().sum()
    }

    /// The legend: a colour and a label with its count per series.
    pub(super) fn legend(&self, theme: Theme) -> Vec<(RGBColor, String)> {
        match &self.groups {
            Some(g) => g
                .drawn(theme)
                .into_iter()
                .map(|d| (d.color, format!("{} {}", d.label, d.total)))
                .collect(),
            None => Category::ALL
                .iter()
                .enumerate()
                .map(|(i, c)| (theme.color(*c), format!("{} {}", c.label(), self.totals[i])))
                .collect(),
        }
    }

    /// Occupied pixels: (x, y, colour at full density, intensity), sparse
    /// first so dense pixels are painted last and stay on top. Each
    /// series is scaled by its own busiest pixel.
    pub(super) fn pixels(&self, theme: Theme) -> Vec<(u32, u32, RGBColor, f64)> {
        let mut out = Vec::new();
        let mut push =
            |color: RGBColor, cells: &mut dyn Iterator<Item = (usize, u32)>, max: u32| {
                let scale = (1.0 + max as f64).ln();
                for (idx, c) in cells {
                    let intensity = if max == 1 {
                        1.0
                    } else {
                        0.55 + 0.45 * (1.0 + c as f64).ln() / scale
                    };
                    out.push((
                        (idx % self.w) as u32,
                        (idx / self.w) as u32,
                        color,
                        intensity,
                    ));
                }
            };
        match &self.groups {
            Some(g) => {
                for d in g.drawn(theme) {
                    let max = d.cells.values().copied().max().unwrap_or(0);
                    push(
                        d.color,
                        &mut d.cells.iter().map(|(&i, &c)| (i as usize, c)),
                        max,
                    );
                }
            }
            None => {
                for (i, cells) in self.cells.iter().enumerate() {
                    let max = cells.iter().copied().max().unwrap_or(0);
                    if max == 0 {
                        continue;
                    }
                    push(
                        theme.color(Category::ALL[i]),
                        &mut cells.iter().copied().enumerate().filter(|&(_, c)| c > 0),
                        max,
                    );
                }
            }
        }
        // Ties in a fixed order, so one picture always renders the same.
        out.sort_by(|a, b| {
            a.3.total_cmp(&b.3)
                .then((a.1, a.0).cmp(&(b.1, b.0)))
                .then((a.2 .0, a.2 .1, a.2 .2).cmp(&(b.2 .0, b.2 .1, b.2 .2)))
        });
        out
    }
}
