//! `fireplot serve`: the web console over a history database (or an events
//! file, loaded into a private database first).

use std::{net::SocketAddr, path::PathBuf};

use anyhow::{bail, Context, Result};
use clap::Args;

use super::history::HistorySpec;
use crate::{
    record::read_lines,
    store::{existing_db, HistorySource, Store},
    web::{self, WebOptions},
};

/// Options of `fireplot serve`.
#[derive(Args, Debug, Clone)]
pub struct ServeArgs {
    /// The history database to show (default: the daemon's,
    /// /var/lib/fireplot/fireplot.db as root, ./fireplot.db otherwise).
    #[arg(long, value_name = "PATH", num_args = 0..=1, default_missing_value = "", conflicts_with_all = ["events", "postgres"])]
    pub db: Option<PathBuf>,

    /// Show the fleet's PostgreSQL database (what `fireplot collect`
    /// keeps) instead: every sensor's events, interfaces named
    /// SENSOR/IFACE, alerts with their sensor.
    #[arg(long, value_name = "URL", conflicts_with = "events")]
    pub postgres: Option<String>,

    /// With --postgres: only this sensor.
    #[arg(long, value_name = "NAME", requires = "postgres")]
    pub sensor: Option<String>,

    /// Show an events JSON-lines file instead (read once into a private
    /// database in the temporary directory, removed at exit).
    #[arg(long, value_name = "FILE")]
    pub events: Option<PathBuf>,

    /// Address to listen on. Loopback by default: reach it from elsewhere
    /// through an SSH tunnel (ssh -L 8780:127.0.0.1:8780 router). Any other
    /// address needs --token or --token-file.
    #[arg(long, default_value = web::DEFAULT_LISTEN, value_name = "ADDR:PORT")]
    pub listen: SocketAddr,

    /// A secret every request must carry (`?token=` in the address, or
    /// `Authorization: Bearer`). At least 16 characters. Prefer
    /// --token-file: a token on the command line is visible to `ps`.
    #[arg(
        long,
        conflicts_with = "token_file",
        env = "FIREPLOT_TOKEN",
        hide_env_values = true
    )]
    pub token: Option<String>,

    /// Read the token from the first line of this file.
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
}

impl ServeArgs {
    pub fn token(&self) -> Result<Option<String>> {
        match (&self.token, &self.token_file) {
            (Some(t), _) => Ok(Some(t.clone())),
            (None, Some(p)) => Ok(Some(web::read_token_file(p)?)),
            (None, None) => Ok(None),
        }
    }
}

/// A database made from an events file, removed when dropped.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        for ext in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{ext}", self.0.display()));
        }
    }
}

pub async fn serve(args: ServeArgs) -> Result<()> {
    let token = args.token()?;
    let mut _scratch = None;
    let (db, label) = match &args.events {
        Some(events) => {
            let path =
                std::env::temp_dir().join(format!("fireplot-serve-{}.db", std::process::id()));
            let scratch = Scratch(path.clone());
            let mut store = Store::open(&path)?;
            let f = std::fs::File::open(events)
                .with_context(|| format!("cannot open events file `{}`", events.display()))?;
            let mut batch = Vec::with_capacity(8192);
            let mut err = None;
            let read = read_lines(
                std::io::BufReader::with_capacity(1 << 20, f),
                |r, _| {
                    batch.push(r);
                    if batch.len() == 8192 {
                        if let Err(e) = store.insert(&batch) {
                            err.get_or_insert(e);
                        }
                        batch.clear();
                    }
                },
                |_| {},
            )?;
            store.insert(&batch)?;
            if let Some(msg) = read.none_usable(&events.display().to_string()) {
                bail!(msg);
            }
            if let Some(e) = err {
                return Err(e.into());
            }
            log::info!(
                "{}: {} events loaded{}",
                events.display(),
                read.ok,
                if read.bad > 0 {
                    format!(", {} unreadable lines skipped", read.bad)
                } else {
                    String::new()
                }
            );
            _scratch = Some(scratch);
            (HistorySpec::Sqlite(path), events.display().to_string())
        }
        None => {
            let spec = match &args.postgres {
                Some(url) => HistorySpec::Postgres {
                    url: url.clone(),
                    sensor: args.sensor.clone(),
                },
                None => HistorySpec::Sqlite(existing_db(args.db.as_deref())?),
            };
            // Fails now, with a clear message, if it is not a fireplot history.
            let label = tokio::task::spawn_blocking({
                let spec = spec.clone();
                move || spec.open().map(|h| h.label())
            })
            .await??;
            (spec, label)
        }
    };
    let opts = WebOptions {
        listen: args.listen,
        token,
        history: std::sync::Arc::new(db),
        label,
    };
    let shutdown = async {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = match signal(SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => return std::future::pending().await,
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        log::info!("stopping the web console");
    };
    let listener = web::bind(&opts).await?;
    Ok(web::serve(listener, opts, None, shutdown).await?)
}
