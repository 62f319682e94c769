//! `fireplot report`: one day written up — its fireplot, attacks, top
//! actors (new and recurring), surges, new ports, and the 7 days before.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use chrono::NaiveDate;
use clap::Args;

use super::{detect::DetectArgs, source::SourceArgs};
use crate::{
    detect::{Alert, Engine},
    plot::{layout::Layout, render, Density, Spec, Theme},
    report::{self, Day, Format},
};

/// Options of `fireplot report`.
#[derive(Args, Debug, Clone)]
pub struct ReportArgs {
    /// The day (UTC): YYYY-MM-DD.
    #[arg(long, value_name = "YYYY-MM-DD")]
    pub day: NaiveDate,

    #[command(flatten)]
    pub source: SourceArgs,

    /// text, md (Markdown; the fireplot is written beside it as FILE.png)
    /// or html (one self-contained file, the fireplot embedded).
    #[arg(long, value_enum, default_value = "text")]
    pub format: FormatArg,

    /// Where the report goes (default: standard output; Markdown with a
    /// fireplot needs a file to put the PNG beside).
    #[arg(long, short = 'o', value_name = "FILE")]
    pub out: Option<PathBuf>,

    /// With --events: the detector settings (as `fireplot detect`); a
    /// database's report reads its stored alerts.
    #[command(flatten)]
    pub detect: DetectArgs,
}

/// The report formats.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum FormatArg {
    Text,
    Md,
    Html,
}

pub fn report(args: &ReportArgs) -> Result<()> {
    if args.source.last.is_some() || args.source.from.is_some() || args.source.to.is_some() {
        bail!("report covers --day and the 7 days before it: --last, --from and --to do not apply");
    }
    let start = args
        .day
        .and_hms_opt(0, 0, 0)
        .and_then(|t| t.and_utc().timestamp_nanos_opt())
        .context("--day is out of range")?;
    let mut source = args.source.open()?;
    let mut day = Day::new(start, source.label.clone());
    (source.filter.from_ns, source.filter.to_ns) = day.range();
    let from_file = source.store().is_none();
    let mut engine = if from_file {
        Some(Engine::new(args.detect.load()?))
    } else {
        None
    };
    let mut alerts: Vec<Alert> = Vec::new();
    let (n, _bad) = source.for_each(|r| {
        day.add(r);
        if let Some(e) = engine.as_mut() {
            e.push(r);
            alerts.extend(e.drain());
        }
    })?;
    if let Some(mut e) = engine {
        alerts.extend(e.finish());
    } else {
        for (_, _, _, json) in source.alerts()? {
            let sensor = serde_json::from_str::<serde_json::Value>(&json)
                .ok()
                .and_then(|v| v["sensor"].as_str().map(str::to_string))
                .unwrap_or_default();
            if let Ok(a) = serde_json::from_str::<Alert>(&json) {
                day.alert(&sensor, a);
            }
        }
    }
    for a in alerts {
        day.alert("", a);
    }
    let format = match args.format {
        FormatArg::Text => Format::Text,
        FormatArg::Md => Format::Markdown,
        FormatArg::Html => Format::Html,
    };
    let png = match (format, &args.out) {
        (Format::Html, _) | (Format::Markdown, Some(_)) => Some(plot_day(&mut source, start)?),
        _ => None,
    };
    let png_path = args.out.as_ref().map(|o| o.with_extension("png"));
    let png_name = png_path
        .as_ref()
        .and_then(|p| p.file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let text = report::render(&day, format, png.as_deref(), &png_name);
    match &args.out {
        None => print!("{text}"),
        Some(out) => {
            std::fs::write(out, &text)
                .with_context(|| format!("cannot write `{}`", out.display()))?;
            if let (Format::Markdown, Some(png), Some(p)) = (format, &png, &png_path) {
                std::fs::write(p, png)
                    .with_context(|| format!("cannot write `{}`", p.display()))?;
            }
            eprintln!(
                "{}: the report of {} ({n} records read)",
                out.display(),
                args.day
            );
        }
    }
    Ok(())
}

/// The day's fireplot as PNG bytes.
fn plot_day(source: &mut super::source::Source, start: i64) -> Result<Vec<u8>> {
    let end = start + 86_400_000_000_000;
    let week = (source.filter.from_ns, source.filter.to_ns);
    (source.filter.from_ns, source.filter.to_ns) = (start, end);
    let mut density = Density::new(Layout::new(1600, 900, start, end));
    let filled = source.fill(&mut density, true);
    (source.filter.from_ns, source.filter.to_ns) = week;
    filled?;
    let spec = Spec {
        width: 1600,
        height: 900,
        theme: Theme::Dark,
        utc: true,
        iface: source.label.clone(),
        marks: Vec::new(),
    };
    let dir = tempdir()?;
    let path = dir.join("day.png");
    render(&density, &spec, &path).context("cannot render the day's fireplot")?;
    let bytes = std::fs::read(&path)?;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(bytes)
}

fn tempdir() -> Result<PathBuf> {
    let d = std::env::temp_dir().join(format!(
        "fireplot-report-{}-{}",
        std::process::id(),
        crate::record::now_ns()
    ));
    std::fs::create_dir_all(&d).with_context(|| format!("cannot create `{}`", d.display()))?;
    Ok(d)
}
