//! `fireplot export --logstalgia`: events in Logstalgia's custom log format,
//! to watch them as the seed's author did (`| logstalgia --sync -`).

use std::{
    fs::File,
    io::{self, BufWriter, Write},
    path::PathBuf,
};

use anyhow::{bail, Context, Result};
use clap::Args;

use super::source::SourceArgs;
use crate::plot::logstalgia;

/// Options of `fireplot export`.
#[derive(Args, Debug, Clone)]
pub struct ExportArgs {
    #[command(flatten)]
    pub source: SourceArgs,

    /// Logstalgia's custom format: `time|source|PROTO:port|code|size|1|colour`
    /// (code 200 TCP, 404 UDP, 500 other; the fireplot's colour per dot).
    #[arg(long, required = true)]
    pub logstalgia: bool,

    /// Write here instead of standard output.
    #[arg(long, short = 'o', value_name = "FILE")]
    pub out: Option<PathBuf>,
}

pub fn export(args: &ExportArgs) -> Result<()> {
    if !args.logstalgia {
        bail!("say which format: --logstalgia");
    }
    let source = args.source.open()?;
    let mut out: Box<dyn Write> = match &args.out {
        Some(p) => Box::new(BufWriter::new(
            File::create(p).with_context(|| format!("cannot create `{}`", p.display()))?,
        )),
        None => Box::new(BufWriter::new(io::stdout().lock())),
    };
    let mut err = None;
    let mut n = 0u64;
    source.for_each(|r| {
        if err.is_none() {
            if let Err(e) = writeln!(out, "{}", logstalgia::line(r)) {
                err = Some(e);
            } else {
                n += 1;
            }
        }
    })?;
    if let Some(e) = err {
        // A closed pipe (logstalgia quit) is the reader's choice, not an error.
        if e.kind() != io::ErrorKind::BrokenPipe {
            return Err(e).context("cannot write the export");
        }
    }
    out.flush().or_else(|e| {
        if e.kind() == io::ErrorKind::BrokenPipe {
            Ok(())
        } else {
            Err(e)
        }
    })?;
    eprintln!("{n} events exported");
    Ok(())
}
