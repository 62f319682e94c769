//! `fireplot serve`: the web console over a history database (or an events
//! file, loaded into a private database first, with the alerts the
//! detectors find in it).

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
};

use anyhow::{bail, Context, Result};
use clap::Args;

use super::{
    detect::{alert_span, DetectArgs},
    history::HistorySpec,
};
use crate::{
    detect::{Alert, Engine},
    record::{read_lines, Record},
    store::{existing_db, HistorySource, Store, StoreError},
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

    /// Show an events JSON-lines file instead: a view of the file, not
    /// live. It is read once into a private database in the temporary
    /// directory (removed at exit), and the detectors run over it as
    /// `fireplot detect --events FILE` does (settings from --config and
    /// --set), so the alerts panel, the bands and the source pages show the
    /// alerts `detect` gives.
    #[arg(long, value_name = "FILE")]
    pub events: Option<PathBuf>,

    /// With --events: the detectors' settings.
    #[command(flatten)]
    pub detect: DetectArgs,

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

/// Events stored per transaction while a file is loaded.
const LOAD_BATCH: usize = 8192;

/// Reads an events file into a private database and runs `engine` over
/// it on the way, in file order as `detect --events` does, so the alert
/// records are the ones `detect` prints. They are stored beside the
/// events (on disk, like them, so no bound in memory is needed): every
/// reader of alerts — the panel, the bands on the plot, hover, the source
/// page — finds them as it finds a daemon's.
fn load_events(events: &Path, mut engine: Engine) -> Result<Scratch> {
    let path = std::env::temp_dir().join(format!(
        "fireplot-serve-{}-{:x}.db",
        std::process::id(),
        crate::record::now_ns()
    ));
    let scratch = Scratch(path.clone());
    let mut store = Store::open(&path)?;
    let f = std::fs::File::open(events)
        .with_context(|| format!("cannot open events file `{}`", events.display()))?;
    let mut batch = Vec::with_capacity(LOAD_BATCH);
    let mut alerts = Vec::new();
    let mut n_alerts = 0usize;
    let mut err = None;
    let mut flush = |store: &mut Store, batch: &mut Vec<Record>, alerts: &mut Vec<Alert>| {
        store.insert(batch)?;
        batch.clear();
        n_alerts += alerts.len();
        for a in alerts.drain(..) {
            let (first, last) = alert_span(&a);
            store.insert_alert(first, last, &a.kind, &a.to_json())?;
        }
        Ok::<_, StoreError>(())
    };
    let read = read_lines(
        std::io::BufReader::with_capacity(1 << 20, f),
        |r, _| {
            engine.push(&r);
            alerts.extend(engine.drain());
            batch.push(r);
            if batch.len() == LOAD_BATCH {
                if let Err(e) = flush(&mut store, &mut batch, &mut alerts) {
                    err.get_or_insert(e);
                }
            }
        },
        |_| {},
    )?;
    alerts.extend(engine.finish());
    flush(&mut store, &mut batch, &mut alerts)?;
    if let Some(msg) = read.none_usable(&events.display().to_string()) {
        bail!(msg);
    }
    if let Some(e) = err {
        return Err(e.into());
    }
    log::info!(
        "{}: {} events loaded{}, {n_alerts} alert records from the detectors",
        events.display(),
        read.ok,
        if read.bad > 0 {
            format!(", {} unreadable lines skipped", read.bad)
        } else {
            String::new()
        }
    );
    Ok(scratch)
}

pub async fn serve(args: ServeArgs) -> Result<()> {
    let token = args.token()?;
    let mut _scratch = None;
    let (db, label) = match &args.events {
        Some(events) => {
            let engine = super::detect::engine(args.detect.load()?, None)?;
            let scratch = load_events(events, engine)?;
            let path = scratch.0.clone();
            _scratch = Some(scratch);
            (HistorySpec::Sqlite(path), events.display().to_string())
        }
        None => {
            if args.detect.config.is_some() || !args.detect.set.is_empty() {
                bail!("--config and --set are for --events (a database's alerts are those its sensor stored)");
            }
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
        file_view: args.events.is_some(),
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

#[cfg(test)]
mod tests {
    use std::{collections::BTreeMap, sync::Arc};

    use serde_json::Value;

    use super::*;
    use crate::cmd::{detect::DetectCmdArgs, source::SourceArgs};

    /// 2027-01-15T08:00:00Z.
    const T0: i64 = 1_800_000_000_000_000_000;
    const MS: i64 = 1_000_000;

    fn probe(ts: i64, src: &str, dport: u16) -> Record {
        let (src, dst) = (src.parse().unwrap(), "198.18.1.2".parse().unwrap());
        Record::probe(ts, src, dst, 6, dport)
    }

    /// Per episode id: its kind and sources, from alert records (the last
    /// record of an episode wins, as in the console).
    fn episodes<'a>(records: impl Iterator<Item = &'a Value>) -> BTreeMap<u64, (String, Value)> {
        records
            .map(|a| {
                let id = a["id"].as_u64().expect("an id");
                (
                    id,
                    (
                        a["kind"].as_str().unwrap().to_string(),
                        a["sources"].clone(),
                    ),
                )
            })
            .collect()
    }

    /// `serve --events` shows the alerts `detect --events` prints: a
    /// 100-port scan and a flood (the flood rate lowered with --set, as
    /// both commands take it).
    #[tokio::test]
    async fn a_file_view_shows_the_alerts_detect_gives() {
        let dir = std::env::temp_dir().join(format!("fireplot-serve-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut recs: Vec<Record> = (0..100)
            .map(|i| probe(T0 + i * 10 * MS, "198.51.100.7", 1 + i as u16 * 600))
            .collect();
        recs.extend((0..1500).map(|i| probe(T0 + 60_000 * MS + i * 500_000, "192.0.2.70", 80)));
        let file = dir.join("events.jsonl");
        let text: String = recs
            .iter()
            .map(|r| serde_json::to_string(&r.to_json_record()).unwrap() + "\n")
            .collect();
        std::fs::write(&file, text).unwrap();
        let settings = DetectArgs {
            config: None,
            set: vec!["flood_pps=500".into()],
        };

        let printed = dir.join("alerts.jsonl");
        crate::cmd::detect::detect(&DetectCmdArgs {
            source: SourceArgs {
                events: Some(file.clone()),
                ..Default::default()
            },
            detect: settings.clone(),
            alerts: printed.display().to_string(),
            print_config: false,
            enrich: Default::default(),
            progress: Default::default(),
        })
        .expect("detect --events");
        let printed: Vec<Value> = std::fs::read_to_string(&printed)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let want = episodes(printed.iter());
        let kinds: Vec<&str> = want.values().map(|(k, _)| k.as_str()).collect();
        assert!(
            kinds.contains(&"port_scan") && kinds.contains(&"flood"),
            "{want:?}"
        );

        let engine = crate::cmd::detect::engine(settings.load().unwrap(), None).unwrap();
        let scratch = load_events(&file, engine).expect("load the file");
        let app = crate::web::tests::app_with(&WebOptions {
            listen: "127.0.0.1:0".parse().unwrap(),
            token: None,
            history: Arc::new(HistorySpec::Sqlite(scratch.0.clone())),
            label: file.display().to_string(),
            file_view: true,
        });
        let range = format!(
            "from={}&to={}",
            (T0 - 60_000 * MS) / MS,
            (T0 + 120_000 * MS) / MS
        );
        let shown = crate::web::tests::json(&app, &format!("/api/alerts?{range}")).await;
        let got = episodes(shown.as_array().unwrap().iter());
        assert_eq!(got, want, "the console's episodes are detect's");
        // Only the scan's half of the range: only the scan.
        let first = format!(
            "from={}&to={}",
            (T0 - 60_000 * MS) / MS,
            (T0 + 30_000 * MS) / MS
        );
        let shown = crate::web::tests::json(&app, &format!("/api/alerts?{first}")).await;
        let kinds: Vec<&str> = shown
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|a| a["kind"].as_str())
            .collect();
        assert_eq!(kinds, ["port_scan"]);
        // The source page lists the scanner's alert; the page is not live.
        let src =
            crate::web::tests::json(&app, &format!("/api/source?ip=198.51.100.7&{range}")).await;
        assert_eq!(src["alerts"][0]["kind"], "port_scan", "{src}");
        let view = crate::web::tests::json(&app, &format!("/api/view?{range}")).await;
        assert_eq!(
            (view["file_view"].as_bool(), view["live"].as_bool()),
            (Some(true), Some(false))
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
