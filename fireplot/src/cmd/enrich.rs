//! `fireplot enrich --db PATH`: look up who every stored source is with
//! the files given now, and keep it in the database (history stored
//! before enrichment was configured, or after the files changed).

use std::{collections::HashSet, net::IpAddr, path::PathBuf};

use anyhow::{bail, Result};
use clap::Args;

use super::args::EnrichArgs;
use crate::{
    progress::{Progress, Unit},
    record::now_ns,
    store::{Filter, Store},
};

/// Options of `fireplot enrich`.
#[derive(Args, Debug, Clone)]
pub struct EnrichCmdArgs {
    /// The history database to enrich (it is changed in place; a running
    /// sensor may keep writing to it meanwhile).
    #[arg(long, value_name = "PATH")]
    pub db: PathBuf,

    #[command(flatten)]
    pub enrich: EnrichArgs,

    #[command(flatten)]
    pub progress: super::args::ProgressArgs,
}

pub fn enrich(args: &EnrichCmdArgs) -> Result<()> {
    let Some(e) = args.enrich.open()? else {
        bail!("nothing to enrich with: give --geoip, --asn or --tag");
    };
    let path = crate::store::existing_db(Some(&args.db))?;
    let mut store = Store::open(&path)?;
    let started = std::time::Instant::now();
    let quiet = args.progress.quiet;
    let mut sources: HashSet<IpAddr> = HashSet::new();
    let mut progress =
        Progress::start("enrich", Unit::Items("events"), Some(store.count()?), quiet);
    store.for_each_plot(&Filter::range(i64::MIN, i64::MAX), |r| {
        progress.add(1);
        // An aggregate's source is a /24 or /48, not one address.
        if let (Some(a), None) = (r.src, r.src_prefix()) {
            sources.insert(a);
        }
    })?;
    progress.finish();
    let total = Some(sources.len() as u64);
    let mut progress = Progress::start("enrich", Unit::Items("sources"), total, quiet);
    let (mut country, mut asn, mut tagged, mut none) = (0u64, 0u64, 0u64, 0u64);
    let mut batch = Vec::with_capacity(10_000);
    let now = now_ns();
    for a in sources.iter().copied() {
        progress.add(1);
        let o = (*e.lookup(a)).clone();
        country += u64::from(o.country.is_some());
        asn += u64::from(o.asn.is_some());
        tagged += u64::from(!o.tags.is_empty());
        none += u64::from(o.is_empty());
        batch.push((a, o));
        if batch.len() == 10_000 {
            store.set_origins(&batch, now)?;
            batch.clear();
        }
    }
    store.set_origins(&batch, now)?;
    progress.finish();
    println!(
        "{}: {} sources in {:.2} s: {country} with a country, {asn} with a network, {tagged} tagged, {none} unknown to the files",
        path.display(),
        sources.len(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
