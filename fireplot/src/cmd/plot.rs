//! `fireplot plot`: render a fireplot from the history or an events file.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;

use super::source::SourceArgs;
use crate::plot::{layout::Layout, marks_from_alerts, render, Density, Groups, Spec, Theme};
use crate::record::GroupBy;

/// Options of `fireplot plot`.
#[derive(Args, Debug, Clone)]
pub struct PlotArgs {
    #[command(flatten)]
    pub source: SourceArgs,

    /// Output file; .png or .svg decides the format.
    #[arg(long, short = 'o', value_name = "FILE")]
    pub out: PathBuf,

    #[arg(long, default_value_t = 1600)]
    pub width: u32,

    #[arg(long, default_value_t = 900)]
    pub height: u32,

    /// dark: the original fireplot on black; light: the same hues on white.
    #[arg(long, value_enum, default_value = "dark")]
    pub theme: Theme,

    /// Label times in UTC instead of local time.
    #[arg(long)]
    pub utc: bool,

    /// Mark the alerts stored in the database over their time span.
    #[arg(long)]
    pub mark_alerts: bool,

    /// What the dots' colour says: proto (family and protocol, the
    /// fireplot's palette), country or asn (the source's, as stored by
    /// enrichment: `run`/`ingest --geoip/--asn` or `fireplot enrich`). The
    /// ten busiest get a colour each; the rest are "others", sources with
    /// nothing stored "unknown". Needs the database.
    #[arg(long, value_name = "BY", default_value = "proto", value_parser = parse_color_by)]
    pub color_by: GroupBy,

    #[command(flatten)]
    pub progress: super::args::ProgressArgs,
}

fn parse_color_by(s: &str) -> Result<GroupBy, String> {
    GroupBy::parse(s).ok_or_else(|| format!("`{s}` is not proto, country or asn"))
}

/// Renders and says what it drew.
pub fn plot(args: &PlotArgs) -> Result<()> {
    if !(320..=20_000).contains(&args.width) || !(240..=20_000).contains(&args.height) {
        anyhow::bail!("--width must be 320..20000 and --height 240..20000");
    }
    let source = args.source.open()?;
    let layout = Layout::new(
        args.width,
        args.height,
        source.filter.from_ns,
        source.filter.to_ns,
    );
    let mut density = Density::new(layout);
    if args.color_by != GroupBy::Proto {
        let Some(store) = source.store() else {
            anyhow::bail!("--color-by country|asn reads who the sources are from the database: use --db, not --events");
        };
        let groups = store.origin_groups(args.color_by)?;
        if groups.is_empty() {
            log::warn!(
                "the database knows no source's {}: every dot is \"unknown\" (store origins with --geoip/--asn, or `fireplot enrich`)",
                if args.color_by == GroupBy::Country { "country" } else { "network" }
            );
        }
        density.color_by_groups(Groups::new(groups));
    }
    let started = std::time::Instant::now();
    let (n, bad) = source.fill(&mut density, args.progress.quiet)?;
    let marks = if args.mark_alerts {
        marks_from_alerts(source.alerts()?)
    } else {
        Vec::new()
    };
    let spec = Spec {
        width: args.width,
        height: args.height,
        theme: args.theme,
        utc: args.utc,
        iface: args
            .source
            .iface
            .clone()
            .unwrap_or_else(|| source.label.clone()),
        marks,
    };
    let r = render(&density, &spec, &args.out)
        .with_context(|| format!("cannot render `{}`", args.out.display()))?;
    eprintln!(
        "{}: {} events ({} pixels) in {:.2} s{}",
        args.out.display(),
        r.events,
        r.pixels,
        started.elapsed().as_secs_f64(),
        if bad > 0 {
            format!(", {bad} unreadable lines skipped")
        } else {
            String::new()
        }
    );
    let _ = n;
    Ok(())
}

impl clap::ValueEnum for Theme {
    fn value_variants<'a>() -> &'a [Self] {
        &[Theme::Dark, Theme::Light]
    }

    fn to_possible_value(&self) -> Option<clap::builder::PossibleValue> {
        use clap::builder::PossibleValue;
        Some(match self {
            Theme::Dark => {
                PossibleValue::new("dark").help("The original fireplot: black background")
            }
            Theme::Light => {
                PossibleValue::new("light").help("White background, the same hues made readable")
            }
        })
    }
}
