//! Plots the daemon keeps up to date: `DIR/fireplot-<iface>.png` over the
//! last `window`, replaced atomically every `every`, and one finished plot
//! per day, `DIR/fireplot-<iface>-YYYY-MM-DD.png` (00:00–24:00 local time,
//! like the original fireplot's daily pages).

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use chrono::{Local, NaiveDate, TimeZone};
use thiserror::Error;

use super::{layout::Layout, render, Density, PlotError, Spec, Theme};
use crate::{
    record::now_ns,
    store::{Filter, Store, StoreError},
};

/// Why a periodic plot was not drawn (logged; the sensor keeps running).
#[derive(Debug, Error)]
pub enum PeriodicError {
    /// The history could not be read.
    #[error("cannot read the history")]
    Store(#[from] StoreError),
    /// The picture could not be drawn or written.
    #[error("cannot draw the plot")]
    Plot(#[from] PlotError),
}

/// Settings of the daemon's plots.
#[derive(Clone, Debug)]
pub struct Periodic {
    pub dir: PathBuf,
    pub iface: String,
    pub ifindex: u32,
    pub db: PathBuf,
    pub window: Duration,
    pub svg: bool,
    pub theme: Theme,
    pub utc: bool,
    /// When the daemon started (a day before it is not drawn).
    pub started_ns: i64,
}

fn render_range(p: &Periodic, from_ns: i64, to_ns: i64, out: &Path) -> Result<u64, PeriodicError> {
    let store = Store::open_read_only(&p.db)?;
    let mut filter = Filter::range(from_ns, to_ns);
    filter.ifindex = (p.ifindex != 0).then_some(p.ifindex);
    let mut d = Density::new(Layout::new(1600, 900, from_ns, to_ns));
    store.for_each(&filter, |r| d.add(&r))?;
    let spec = Spec {
        width: 1600,
        height: 900,
        theme: p.theme,
        utc: p.utc,
        iface: p.iface.clone(),
        marks: super::marks_from_alerts(store.alerts(from_ns, to_ns)?),
    };
    let r = render(&d, &spec, out)?;
    if p.svg {
        render(&d, &spec, &out.with_extension("svg"))?;
    }
    Ok(r.events)
}

fn local_midnight_ns(day: NaiveDate) -> Option<i64> {
    let t = Local
        .from_local_datetime(&day.and_hms_opt(0, 0, 0)?)
        .earliest()?;
    t.timestamp_nanos_opt()
}

impl Periodic {
    pub fn rolling_path(&self) -> PathBuf {
        self.dir.join(format!("fireplot-{}.png", self.iface))
    }

    pub fn daily_path(&self, day: NaiveDate) -> PathBuf {
        self.dir.join(format!(
            "fireplot-{}-{}.png",
            self.iface,
            day.format("%Y-%m-%d")
        ))
    }

    /// Renders the rolling plot, and yesterday's daily plot if it is due.
    /// Errors are logged, never fatal: the sensor keeps running.
    pub fn tick(&self) {
        if let Err(e) = std::fs::create_dir_all(&self.dir) {
            log::error!("cannot create plot directory {}: {e}", self.dir.display());
            return;
        }
        let now = now_ns();
        let from = now - self.window.as_nanos() as i64;
        let out = self.rolling_path();
        match render_range(self, from, now, &out) {
            Ok(n) => log::debug!("{}: {n} events", out.display()),
            Err(e) => log::error!(
                "cannot render {}: {}",
                out.display(),
                crate::error_chain(&e)
            ),
        }
        let today = Local::now().date_naive();
        let Some(yesterday) = today.pred_opt() else {
            return;
        };
        let (Some(start), Some(end)) = (local_midnight_ns(yesterday), local_midnight_ns(today))
        else {
            return;
        };
        let daily = self.daily_path(yesterday);
        if self.started_ns < end && !daily.exists() {
            match render_range(self, start, end, &daily) {
                Ok(n) => log::info!("daily fireplot {} ({n} events)", daily.display()),
                Err(e) => log::error!(
                    "cannot render {}: {}",
                    daily.display(),
                    crate::error_chain(&e)
                ),
            }
        }
    }
}
