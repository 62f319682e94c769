//! `fireplot detect`: replay stored or saved events through the detectors.
//! The output depends only on the events, so the events file of a live run
//! gives that run's alerts again.

use std::{
    fs::File,
    io::{self, BufWriter, Write},
    path::PathBuf,
    sync::Arc,
};

use anyhow::{Context, Result};
use clap::Args;

use super::source::SourceArgs;
use crate::{
    detect::{Alert, DetectConfig, Engine},
    enrich::Enricher,
};

/// Detector settings of `detect`, `replay`, `ingest` and `serve --events`.
#[derive(Args, Debug, Clone, Default)]
pub struct DetectArgs {
    /// Detector thresholds from a TOML file (keys as in `fireplot detect --print-config`).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Override one detector setting, e.g. --set scan_ports=20 (repeatable; after --config).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
}

impl DetectArgs {
    pub fn load(&self) -> Result<DetectConfig> {
        Ok(DetectConfig::load(self.config.as_deref(), &self.set)?)
    }
}

/// Detector settings of `run`, whose `--config` is the daemon's file
/// (its `[detect]` table holds these settings).
#[derive(Args, Debug, Clone, Default)]
pub struct RunDetectArgs {
    /// Detector thresholds from a TOML file of their own (keys as in
    /// `fireplot detect --print-config`), over the --config file's [detect].
    /// Its id is its own: `run` has a `--config` (the daemon's file) too,
    /// and two arguments with one id make clap panic in debug builds.
    #[arg(id = "detect_config", long = "detect-config", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Override one detector setting, e.g. --set scan_ports=20 (repeatable; after the files).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
}

impl RunDetectArgs {
    pub fn load(&self) -> Result<DetectConfig> {
        Ok(DetectConfig::load(self.config.as_deref(), &self.set)?)
    }
}

/// Options of `fireplot detect`.
#[derive(Args, Debug, Clone)]
pub struct DetectCmdArgs {
    #[command(flatten)]
    pub source: SourceArgs,

    #[command(flatten)]
    pub detect: DetectArgs,

    /// Where alert JSON lines go (`-`: stdout).
    #[arg(long, value_name = "FILE", default_value = "-")]
    pub alerts: String,

    /// Print the detector settings in effect (TOML) and exit.
    #[arg(long)]
    pub print_config: bool,

    #[command(flatten)]
    pub enrich: super::args::EnrichArgs,

    #[command(flatten)]
    pub progress: super::args::ProgressArgs,
}

pub fn detect(args: &DetectCmdArgs) -> Result<()> {
    let cfg = args.detect.load()?;
    if args.print_config {
        print!("{}", cfg.to_documented_toml());
        return Ok(());
    }
    let source = args.source.open()?;
    let mut out: Box<dyn Write> = if args.alerts == "-" {
        Box::new(BufWriter::new(io::stdout()))
    } else {
        Box::new(BufWriter::new(
            File::create(&args.alerts)
                .with_context(|| format!("cannot create `{}`", args.alerts))?,
        ))
    };
    let enrich = args.enrich.open()?;
    // A fleet's history (--postgres): which sensor each interface is, for
    // the campaigns that span sensors.
    let sensor_of: std::collections::HashMap<u32, String> = match source.store() {
        Some(st) => st
            .interfaces()?
            .into_iter()
            .filter_map(|(i, _)| st.sensor_of(i).map(|s| (i, s)))
            .collect(),
        None => Default::default(),
    };
    let mut campaigns = (!sensor_of.is_empty()).then(|| crate::detect::fleet::Campaigns::new(&cfg));
    let mut engine = engine(cfg, enrich)?;
    let mut write_err: Option<io::Error> = None;
    let mut n_alerts = 0u64;
    let started = std::time::Instant::now();
    let (events, bad) = source.for_each_shown("detect", args.progress.quiet, |r| {
        if let (Some(c), Some(s)) = (campaigns.as_mut(), sensor_of.get(&r.ifindex)) {
            c.push(r, s);
        }
        engine.push(r);
        let fleet = campaigns.as_mut().map(|c| c.drain()).unwrap_or_default();
        for a in engine.drain().into_iter().chain(fleet) {
            n_alerts += 1;
            if write_err.is_none() {
                if let Err(e) = writeln!(out, "{}", a.to_json()) {
                    write_err = Some(e);
                }
            }
        }
    })?;
    let fleet = campaigns.as_mut().map(|c| c.finish()).unwrap_or_default();
    for a in engine.finish().into_iter().chain(fleet) {
        n_alerts += 1;
        writeln!(out, "{}", a.to_json()).context("cannot write alerts")?;
    }
    if let Some(e) = write_err {
        return Err(e).context("cannot write alerts");
    }
    out.flush().context("cannot write alerts")?;
    let st = engine.stats();
    eprintln!(
        "{events} events → {n_alerts} alert records in {:.2} s{}{}; {} sources evicted to stay in {} MiB",
        started.elapsed().as_secs_f64(),
        if bad > 0 { format!(" ({bad} unreadable lines skipped)") } else { String::new() },
        if st.alerts_ignored_by_tag > 0 {
            format!(" ({} not raised: the source has an ignored tag)", st.alerts_ignored_by_tag)
        } else {
            String::new()
        },
        st.sources_evicted,
        st.budget_bytes >> 20
    );
    Ok(())
}

/// The detectors with these settings, naming the alerts' sources with
/// `enrich`. `ignore_tags` needs a tag list to mean anything.
pub fn engine(cfg: DetectConfig, enrich: Option<Arc<Enricher>>) -> Result<Engine> {
    if enrich.is_none() && !cfg.ignore_tags.is_empty() {
        anyhow::bail!("ignore_tags is set but no --tag list is given: no source could carry a tag");
    }
    let mut engine = Engine::new(cfg);
    engine.set_enricher(enrich);
    Ok(engine)
}

/// An alert record's first and last time (ns), as the stores keep it.
pub fn alert_span(a: &Alert) -> (i64, i64) {
    let first = crate::record::parse_rfc3339_ns(&a.first_seen).unwrap_or(0);
    let last = crate::record::parse_rfc3339_ns(&a.last_seen).unwrap_or(first);
    (first, last)
}
