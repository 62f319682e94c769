//! The fireplot (DESIGN §6): time on x, destination port on a log y axis,
//! one dot per probe coloured by family and protocol (every protocol with
//! ports on the port axis), port-less protocols in their own lane, dense areas shaded rather than overdrawn.
//!
//! Rendering scales with the picture, not the data: events are binned per
//! pixel as they stream past ([`Density`]), then each occupied pixel is
//! painted once, its brightness growing with the log of its count.

mod density;
pub mod groups;
pub mod layout;
pub mod logstalgia;
pub mod periodic;
mod theme;

pub use density::Density;
pub use groups::Groups;
pub use theme::Theme;

use std::{path::Path, sync::Once};

use plotters::{
    prelude::*,
    style::{FontStyle, RGBColor},
};
use thiserror::Error;

use crate::record::Record;
use fireplot_common::proto::{has_ports, IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_TCP, IPPROTO_UDP};
use layout::{time_ticks, Lane, Layout, Zone};

/// Colour categories, in legend order (`Category::ALL[c.index()] == c`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Category {
    V4Tcp,
    V4Udp,
    V6Tcp,
    V6Udp,
    /// The other protocols with ports: SCTP, UDP-Lite, DCCP (both
    /// families), on the port axis.
    PortOther,
    Icmp,
    Icmp6,
    /// Protocols without ports, in their own lane.
    Other,
}

impl Category {
    pub const ALL: [Category; 8] = [
        Category::V4Tcp,
        Category::V4Udp,
        Category::V6Tcp,
        Category::V6Udp,
        Category::PortOther,
        Category::Icmp,
        Category::Icmp6,
        Category::Other,
    ];

    pub fn of(r: &Record) -> Category {
        Category::from_parts(r.family, r.proto)
    }

    pub fn from_parts(family: u8, proto: u8) -> Category {
        match (family, proto) {
            (4, IPPROTO_TCP) => Category::V4Tcp,
            (4, IPPROTO_UDP) => Category::V4Udp,
            (6, IPPROTO_TCP) => Category::V6Tcp,
            (6, IPPROTO_UDP) => Category::V6Udp,
            (_, IPPROTO_ICMP) => Category::Icmp,
            (_, IPPROTO_ICMPV6) => Category::Icmp6,
            (_, p) if has_ports(p) => Category::PortOther,
            _ => Category::Other,
        }
    }

    /// Position in [`Category::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

    pub fn label(self) -> &'static str {
        match self {
            Category::V4Tcp => "IPv4/TCP",
            Category::V4Udp => "IPv4/UDP",
            Category::V6Tcp => "IPv6/TCP",
            Category::V6Udp => "IPv6/UDP",
            Category::PortOther => "SCTP/UDP-Lite/DCCP",
            Category::Icmp => "ICMP",
            Category::Icmp6 => "ICMPv6",
            Category::Other => "other",
        }
    }
}

/// Errors of rendering.
#[derive(Debug, Error)]
pub enum PlotError {
    /// The output name has no known extension.
    #[error("cannot tell the format of `{}`: use a .png or .svg file name", path.display())]
    Format { path: std::path::PathBuf },
    /// Drawing failed (the drawing library's error, whichever backend).
    #[error("drawing the plot failed")]
    Draw(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// Writing the file failed.
    #[error("cannot write `{path}`")]
    Write {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// An alert drawn on the plot: a band over its time span and a label.
#[derive(Clone, Debug)]
pub struct Mark {
    pub from_ns: i64,
    pub to_ns: i64,
    pub label: String,
}

/// One mark per alert episode from stored alert rows (first_seen_ns,
/// last_seen_ns, kind, JSON): an episode's `ended` record replaces its
/// `started` one.
pub fn marks_from_alerts(rows: Vec<(i64, i64, String, String)>) -> Vec<Mark> {
    let mut by_id: Vec<(u64, Mark)> = Vec::new();
    for (from_ns, to_ns, kind, json) in rows {
        let v = serde_json::from_str::<serde_json::Value>(&json).unwrap_or_default();
        let id = v["id"].as_u64().unwrap_or(u64::MAX);
        let who = v["sources"].get(0).and_then(|s| s.as_str()).unwrap_or("");
        let mark = Mark {
            from_ns,
            to_ns,
            label: format!("{kind} {who}").trim().to_string(),
        };
        match by_id.iter_mut().find(|(i, _)| *i == id && id != u64::MAX) {
            Some(slot) => slot.1 = mark,
            None => by_id.push((id, mark)),
        }
    }
    by_id.into_iter().map(|(_, m)| m).collect()
}

/// What to draw besides the dots.
#[derive(Clone, Debug)]
pub struct Spec {
    pub width: u32,
    pub height: u32,
    pub theme: Theme,
    pub utc: bool,
    /// Interface (or source) named in the title.
    pub iface: String,
    pub marks: Vec<Mark>,
}

static FONT: Once = Once::new();

fn register_font() {
    FONT.call_once(|| {
        let bytes: &'static [u8] = include_bytes!("../../assets/DejaVuSans.ttf");
        if plotters::style::register_font("sans-serif", FontStyle::Normal, bytes).is_err() {
            log::error!("the built-in font could not be loaded; plot text will be missing");
        }
    });
}

fn draw_err<E: std::error::Error + Send + Sync + 'static>(e: E) -> PlotError {
    PlotError::Draw(Box::new(e))
}

/// Width of a character of an alert label (11 px sans), generously.
const MARK_CHAR_PX: i32 = 6;
/// Rows of alert labels at the top of the plot.
const MARK_ROWS: usize = 6;

/// A drawing area of any backend (PNG or SVG).
type Area<DB> = DrawingArea<DB, plotters::coord::Shift>;

/// The plot's sans-serif text in `fg`.
fn font(size: u32, fg: RGBColor) -> TextStyle<'static> {
    ("sans-serif", size).into_font().color(&fg)
}

/// Draws background, grid, axes, labels, legend and marks.
fn draw_frame<DB: DrawingBackend>(
    root: &Area<DB>,
    d: &Density,
    spec: &Spec,
) -> Result<(), PlotError>
where
    DB::ErrorType: 'static,
{
    let l = &d.layout;
    let theme = spec.theme;
    root.fill(&theme.background()).map_err(draw_err)?;
    let zone = Zone::new(spec.utc, l.from_ns);
    // Alert marks under everything else.
    draw_marks(root, l, spec)?;
    draw_grid(root, l, theme, &zone)?;
    draw_titles(root, d, spec, &zone)?;
    draw_legend(root, d, theme)
}

/// Alert marks: bands first, then all labels, so no band covers another's
/// label.
fn draw_marks<DB: DrawingBackend>(root: &Area<DB>, l: &Layout, spec: &Spec) -> Result<(), PlotError>
where
    DB::ErrorType: 'static,
{
    let theme = spec.theme;
    let spans: Vec<(usize, u32, u32)> = spec
        .marks
        .iter()
        .enumerate()
        .filter_map(|(i, m)| {
            let x0 = l.x(m.from_ns.max(l.from_ns))?;
            let x1 = l
                .x(m.to_ns.min(l.to_ns - 1))
                .unwrap_or(l.right - 1)
                .max(x0 + 1);
            Some((i, x0, x1))
        })
        .collect();
    let band = match theme {
        Theme::Dark => RGBColor(60, 20, 20),
        Theme::Light => RGBColor(255, 225, 225),
    };
    for &(_, x0, x1) in &spans {
        root.draw(&Rectangle::new(
            [
                (x0 as i32, l.top as i32),
                (x1 as i32, l.lane_bottom() as i32),
            ],
            band.filled(),
        ))
        .map_err(draw_err)?;
    }
    // Labels go in the first row where they overlap no other label; a
    // label with no free row is left out (its band is still drawn).
    let mut ends: Vec<i32> = Vec::new();
    let mut order: Vec<&(usize, u32, u32)> = spans.iter().collect();
    order.sort_by_key(|s| s.1);
    for &(i, x0, _) in order {
        let label = &spec.marks[i].label;
        let (start, width) = (x0 as i32 + 2, MARK_CHAR_PX * label.chars().count() as i32);
        let row = match ends.iter().position(|end| *end + 6 <= start) {
            Some(r) => r,
            None if ends.len() < MARK_ROWS => {
                ends.push(i32::MIN);
                ends.len() - 1
            }
            None => continue,
        };
        ends[row] = start + width;
        root.draw(&Text::new(
            label.clone(),
            (start, l.top as i32 + 2 + row as i32 * 13),
            font(11, theme.foreground()),
        ))
        .map_err(draw_err)?;
    }
    Ok(())
}

/// The port grid and ticks, the lanes, the time ticks and the frame.
fn draw_grid<DB: DrawingBackend>(
    root: &Area<DB>,
    l: &Layout,
    theme: Theme,
    zone: &Zone,
) -> Result<(), PlotError>
where
    DB::ErrorType: 'static,
{
    let fg = theme.foreground();
    for t in l.port_ticks(12) {
        let y = l.y_port(t) as i32;
        root.draw(&PathElement::new(
            vec![(l.left as i32, y), (l.right as i32, y)],
            theme.grid(),
        ))
        .map_err(draw_err)?;
        let label = t.to_string();
        let w = 7 * label.len() as i32;
        root.draw(&Text::new(
            label,
            (l.left as i32 - 6 - w, y - 6),
            font(12, fg),
        ))
        .map_err(draw_err)?;
    }
    for lane in Lane::ALL {
        let y = l.y_lane(lane) as i32;
        root.draw(&PathElement::new(
            vec![(l.left as i32, y), (l.right as i32, y)],
            theme.grid(),
        ))
        .map_err(draw_err)?;
        let label = lane.label();
        root.draw(&Text::new(
            label,
            (l.left as i32 - 8 - 6 * label.len() as i32, y - 6),
            font(11, fg),
        ))
        .map_err(draw_err)?;
    }
    let ticks = time_ticks(l.from_ns, l.to_ns, zone, l.plot_width());
    for (ts, label) in &ticks {
        if let Some(x) = l.x(*ts) {
            root.draw(&PathElement::new(
                vec![(x as i32, l.top as i32), (x as i32, l.lane_bottom() as i32)],
                theme.grid(),
            ))
            .map_err(draw_err)?;
            root.draw(&Text::new(
                label.clone(),
                (
                    x as i32 - 3 * label.len() as i32,
                    l.lane_bottom() as i32 + 6,
                ),
                font(12, fg),
            ))
            .map_err(draw_err)?;
        }
    }
    root.draw(&Rectangle::new(
        [
            (l.left as i32 - 1, l.top as i32 - 1),
            (l.right as i32, l.lane_bottom() as i32),
        ],
        fg.stroke_width(1),
    ))
    .map_err(draw_err)?;
    root.draw(&PathElement::new(
        vec![
            (l.left as i32, l.ports_bottom as i32 + 3),
            (l.right as i32, l.ports_bottom as i32 + 3),
        ],
        fg,
    ))
    .map_err(draw_err)?;
    Ok(())
}

/// The title, the axis name, and a note when there is nothing to show.
fn draw_titles<DB: DrawingBackend>(
    root: &Area<DB>,
    d: &Density,
    spec: &Spec,
    zone: &Zone,
) -> Result<(), PlotError>
where
    DB::ErrorType: 'static,
{
    let l = &d.layout;
    let fg = spec.theme.foreground();
    let title = format!(
        "fireplot — {} — {} to {} ({}) — {} probes",
        spec.iface,
        zone.format(l.from_ns, "%Y-%m-%d %H:%M:%S"),
        zone.format(l.to_ns, "%Y-%m-%d %H:%M:%S"),
        zone.name(),
        d.total()
    );
    root.draw(&Text::new(title, (l.left as i32, 12), font(16, fg)))
        .map_err(draw_err)?;
    root.draw(&Text::new(
        "dst port (log)",
        (6, l.top as i32 - 18),
        font(11, fg),
    ))
    .map_err(draw_err)?;
    if d.total() == 0 {
        let note = "no events in this range";
        root.draw(&Text::new(
            note,
            (
                (l.left + l.plot_width() / 2) as i32 - 70,
                ((l.top + l.ports_bottom) / 2) as i32,
            ),
            font(18, fg),
        ))
        .map_err(draw_err)?;
    }
    Ok(())
}

/// A swatch and count per category (or group), on one row, or two when
/// they do not fit (what fits in neither is left out).
fn draw_legend<DB: DrawingBackend>(
    root: &Area<DB>,
    d: &Density,
    theme: Theme,
) -> Result<(), PlotError>
where
    DB::ErrorType: 'static,
{
    let l = &d.layout;
    let items: Vec<(RGBColor, String, i32)> = d
        .legend(theme)
        .into_iter()
        .map(|(c, label)| {
            let w = 7 * label.chars().count() as i32 + 24;
            (c, label, w)
        })
        .collect();
    let room = l.width as i32 - l.left as i32;
    let one_row = items.iter().map(|i| i.2).sum::<i32>() <= room;
    let mut row = if one_row { 1 } else { 0 };
    let mut x = l.left as i32;
    for (color, label, w) in items {
        if x + w > l.width as i32 {
            row += 1;
            x = l.left as i32;
            if row > 1 {
                break;
            }
        }
        let y = l.height as i32 - 42 + 18 * row;
        root.draw(&Rectangle::new([(x, y), (x + 10, y + 10)], color.filled()))
            .map_err(draw_err)?;
        root.draw(&Text::new(
            label,
            (x + 14, y - 1),
            font(12, theme.foreground()),
        ))
        .map_err(draw_err)?;
        x += w;
    }
    Ok(())
}

/// What a render produced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rendered {
    pub events: u64,
    pub pixels: u64,
}

/// Renders to `out` (PNG or SVG by extension), written atomically (a
/// temporary file renamed over the target).
pub fn render(d: &Density, spec: &Spec, out: &Path) -> Result<Rendered, PlotError> {
    register_font();
    let ext = out
        .extension()
        .and_then(|e| e.to_str())
        .map(|e| e.to_ascii_lowercase())
        .unwrap_or_default();
    let tmp = out.with_extension(format!("{ext}.tmp"));
    let write_err = |source| PlotError::Write {
        path: out.display().to_string(),
        source,
    };
    let pixels = d.pixels(spec.theme);
    match ext.as_str() {
        "png" => {
            let (w, h) = (d.layout.width, d.layout.height);
            let mut buf = vec![0u8; (w * h * 3) as usize];
            {
                let root = BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area();
                draw_frame(&root, d, spec)?;
                root.present().map_err(draw_err)?;
            }
            for (x, y, c, intensity) in &pixels {
                let rgb = spec.theme.mix(*c, *intensity);
                // A 2×2 dot: one pixel is too small to see on a 1600-wide plot.
                for (dx, dy) in [(0, 0), (1, 0), (0, 1), (1, 1)] {
                    let (px, py) = (x + dx, y + dy);
                    if px < d.layout.right && py < d.layout.lane_bottom() {
                        let i = ((py * w + px) * 3) as usize;
                        buf[i..i + 3].copy_from_slice(&rgb);
                    }
                }
            }
            image::save_buffer_with_format(
                &tmp,
                &buf,
                w,
                h,
                image::ColorType::Rgb8,
                image::ImageFormat::Png,
            )
            .map_err(|e| write_err(std::io::Error::other(e)))?;
        }
        "svg" => {
            let mut s = String::new();
            {
                let root = SVGBackend::with_string(&mut s, (d.layout.width, d.layout.height))
                    .into_drawing_area();
                draw_frame(&root, d, spec)?;
                // Dots over the frame; adjacent pixels of one colour share a rect
                // would be smaller still, but 2×2 squares keep the file simple.
                for (x, y, c, intensity) in &pixels {
                    let [r, g, b] = spec.theme.mix(*c, *intensity);
                    root.draw(&Rectangle::new(
                        [(*x as i32, *y as i32), (*x as i32 + 2, *y as i32 + 2)],
                        RGBColor(r, g, b).filled(),
                    ))
                    .map_err(draw_err)?;
                }
                root.present().map_err(draw_err)?;
            }
            std::fs::write(&tmp, s).map_err(write_err)?;
        }
        _ => return Err(PlotError::Format { path: out.into() }),
    }
    std::fs::rename(&tmp, out).map_err(write_err)?;
    Ok(Rendered {
        events: d.total(),
        pixels: pixels.len() as u64,
    })
}

#[cfg(test)]
mod tests;
