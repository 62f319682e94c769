//! The daemon's event loop: load and attach the sensor, drain the ring
//! buffer into the sinks, write summaries and plots on their ticks, and on
//! a signal or `--duration` detach first, then flush everything.

use std::{path::PathBuf, time::Instant};

use anyhow::Context as _;
use tokio::{
    io::{unix::AsyncFd, Interest},
    signal::unix::{signal, SignalKind},
    sync::{oneshot, watch},
    task::JoinHandle,
};

use super::{
    sinks::{db_path, drain, drain_aggregates, EventSink},
    stats::StatsWriter,
    RunArgs,
};
use crate::{
    plot::periodic::Periodic, sensor::Sensor, store::writer::StoreWriter,
    summary::RateLimitSummary, web::ServeError,
};

/// Runs the sensor until a signal or `--duration`.
pub async fn run(args: RunArgs) -> anyhow::Result<()> {
    // Every value is checked before anything is opened or loaded.
    args.check()?;
    let (mut sensor, mut sink, mut stats) = attach(&args)?;
    let db_path = keep_history(&args, &mut sink)?;
    sink.start_publishing(&args.output.fleet, &interfaces(&args), None)
        .await?;
    // The console: checked before anything else listens, stopped with the run.
    let mut console = Console::start(&args, db_path.clone()).await?;
    let periodic = periodic_plots(&args, db_path.as_ref());
    let label = args.label();
    let mut plot_task: Option<JoinHandle<()>> = None;
    let mut plot_tick = tokio::time::interval(args.plot_every.0);
    plot_tick.tick().await;
    let ring = sensor.take_events()?;
    // SAFETY: the ring buffer owns its map fd, which stays open and unchanged
    // for as long as the AsyncFd owns the ring buffer.
    let mut ring = unsafe { AsyncFd::register_with_interest(ring, Interest::READABLE) }
        .map_err(|e| e.into_parts().1)
        .context("cannot poll the event ring buffer")?;

    let started = Instant::now();
    let mut sigterm = signal(SignalKind::terminate()).context("cannot install SIGTERM handler")?;
    let mut sigint = signal(SignalKind::interrupt()).context("cannot install SIGINT handler")?;
    let mut tick = tokio::time::interval(args.stats_every.0);
    tick.tick().await;
    let mut flush_tick = tokio::time::interval(std::time::Duration::from_millis(500));
    // The kernel wakes us only when a batch is waiting (see `WAKEUP_BYTES`
    // in fireplot-ebpf); this tick picks up the rest within 20 ms.
    let mut drain_tick = tokio::time::interval(std::time::Duration::from_millis(20));
    drain_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    // Aggregates are taken once their second is over.
    let mut agg_tick = tokio::time::interval(std::time::Duration::from_millis(500));
    agg_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let deadline = args.duration.map(|d| tokio::time::Instant::now() + d.0);
    let until_deadline = async {
        match deadline {
            Some(d) => tokio::time::sleep_until(d).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(until_deadline);

    loop {
        tokio::select! {
            guard = ring.readable_mut() => {
                let mut guard = guard.context("event ring buffer poll failed")?;
                drain(guard.get_inner_mut(), &mut sink);
                guard.clear_ready();
            }
            _ = tick.tick() => stats.write(&sensor, &label, started, &sink),
            _ = console.tick.tick(), if console.task.is_some() => {
                let summary = stats.summary_json(&sensor, &label, started, &sink);
                console.update(summary).await;
            }
            _ = drain_tick.tick() => {
                drain(ring.get_mut(), &mut sink);
            }
            _ = agg_tick.tick() => drain_aggregates(&mut sensor, &mut sink, false),
            _ = flush_tick.tick() => {
                sink.flush();
                sink.store_batch(true);
            }
            _ = plot_tick.tick(), if !periodic.is_empty() => {
                // One render at a time; a slow one skips the next tick.
                if plot_task.as_ref().is_none_or(|t| t.is_finished()) {
                    let p = periodic.clone();
                    plot_task = Some(tokio::task::spawn_blocking(move || {
                        p.iter().for_each(Periodic::tick)
                    }));
                }
            }
            _ = sigterm.recv() => { log::info!("SIGTERM: stopping"); break; }
            _ = sigint.recv() => { log::info!("SIGINT: stopping"); break; }
            _ = &mut until_deadline => break,
        }
    }

    // Detach first so nothing new arrives, then take what is left.
    sensor.detach();
    console.stop().await;
    drain(ring.get_mut(), &mut sink);
    drain_aggregates(&mut sensor, &mut sink, true);
    sink.finish();
    stats.write(&sensor, &label, started, &sink);
    sink.stop_publishing().await;
    if let Some(w) = sink.store.take() {
        w.close();
    }
    if let Some(t) = plot_task.take() {
        let _ = t.await;
    }
    if !periodic.is_empty() {
        // The last pictures include everything this run saw.
        let _ = tokio::task::spawn_blocking(move || periodic.iter().for_each(Periodic::tick)).await;
    }
    Ok(())
}

/// The outputs opened, the sensor loaded, configured and attached.
fn attach(args: &RunArgs) -> anyhow::Result<(Sensor, EventSink, StatsWriter)> {
    let limits = args.classifier.limits();
    limits.validate(crate::sensor::online_cpus()?)?;
    let detect_cfg = args.detect.load()?;
    let mut stats = StatsWriter::open(args.stats_out.as_deref(), args.stats_json)?;
    let mut sink = EventSink::with_outputs(&args.output, detect_cfg)?;
    sink.iface = Some(args.label());
    sink.ifaces = interfaces(args)
        .into_iter()
        .map(|(ifindex, name)| crate::summary::IfaceCount {
            name,
            ifindex,
            ..Default::default()
        })
        .collect();
    if args.output.events_out.is_none() && args.output.db.is_none() {
        log::warn!("neither --events-out nor --db: events are counted but not kept anywhere");
    }

    let mut sensor = Sensor::load(&args.classifier.load_options())?;
    sensor.configure(&limits, &args.classifier.services)?;
    stats.rate_limit = limits.cpu_share(sensor.cpus).map(|share| RateLimitSummary {
        rate_limit: limits.rate_limit,
        rate_burst: limits.rate_burst,
        cpus: sensor.cpus,
        cpu_burst: share.burst,
        cpu_interval_ns: share.interval_ns,
    });
    let mut modes = Vec::new();
    for iface in &args.iface {
        // A failure detaches what was attached (the sensor is dropped).
        let mode = sensor.attach(iface, args.xdp_mode)?;
        modes.push(format!("{iface} (XDP {mode}, TC egress)"));
    }
    log::info!(
        "fireplot attached to {}, HZ {}",
        modes.join(", "),
        sensor.clock.hz
    );
    Ok((sensor, sink, stats))
}

/// The history database, when there is one (`--db` without a value: the
/// default): its writer started. Returns its path.
fn keep_history(args: &RunArgs, sink: &mut EventSink) -> anyhow::Result<Option<PathBuf>> {
    let db_path = db_path(args.output.db.as_deref());
    if let Some(path) = db_path.clone() {
        if args.web.is_some() {
            // The console reads the database from the start: create it (and
            // its WAL mode) now, before the writer's thread opens it too.
            crate::store::Store::open(&path)?;
        }
        log::info!("storing history in {}", path.display());
        if let Some(d) = sink.detect.as_mut() {
            warm_up(&mut d.engine, &path, args.warm_up.0)?;
        }
        sink.store = Some(StoreWriter::start(
            path,
            args.retain.map(|r| r.0),
            interfaces(args),
        ));
        sink.store_origins();
    }
    Ok(db_path)
}

/// Live detection learns from the last `window` of stored history before
/// the first packet (baselines of ports and hosts, sources, actors and
/// today's announcements), so a restart is not blind; and numbers its
/// episodes after the stored ones.
fn warm_up(
    engine: &mut crate::detect::Engine,
    path: &std::path::Path,
    window: std::time::Duration,
) -> anyhow::Result<()> {
    if !path.exists() {
        return Ok(());
    }
    let store = crate::store::Store::open(path)?;
    engine.number_from(store.max_alert_id()? + 1);
    if window.is_zero() {
        return Ok(());
    }
    let to = crate::record::now_ns();
    let from = to - i64::try_from(window.as_nanos()).unwrap_or(i64::MAX);
    let started = Instant::now();
    engine.start_warm_up();
    let n = store.for_each(&crate::store::Filter::range(from, to), |r| engine.push(&r));
    engine.end_warm_up();
    let n = n?;
    if n > 0 {
        log::info!(
            "detection warmed up on {n} stored events of the last {} in {:.1} s",
            humantime::format_duration(window),
            started.elapsed().as_secs_f64()
        );
    }
    Ok(())
}

/// Plots of the last `--plot-window` every `--plot-every`, with
/// `--plot-dir` and a history to draw them from: one per interface.
fn periodic_plots(args: &RunArgs, db_path: Option<&PathBuf>) -> Vec<Periodic> {
    let (Some(dir), Some(db)) = (&args.plot_dir, db_path) else {
        return Vec::new();
    };
    let started_ns = crate::record::now_ns();
    interfaces(args)
        .into_iter()
        .map(|(ifindex, iface)| Periodic {
            dir: dir.clone(),
            iface,
            ifindex,
            db: db.clone(),
            window: args.plot_window.0,
            svg: args.plot_svg,
            theme: args.plot_theme,
            utc: args.plot_utc,
            started_ns,
        })
        .collect()
}

/// The watched interfaces: (ifindex, name), in `--iface` order.
fn interfaces(args: &RunArgs) -> Vec<(u32, String)> {
    args.iface
        .iter()
        .map(|n| (ifindex_of(n), n.clone()))
        .collect()
}

/// The web console inside the daemon (`--web`): its task, and the latest
/// counter summary it is handed every tick.
struct Console {
    summary_tx: watch::Sender<Option<String>>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), ServeError>>>,
    tick: tokio::time::Interval,
}

impl Console {
    /// Listens now when `--web` is given with a history to show.
    async fn start(args: &RunArgs, db_path: Option<PathBuf>) -> anyhow::Result<Console> {
        let (summary_tx, summary_rx) = watch::channel(None::<String>);
        let (stop, stopped) = oneshot::channel::<()>();
        let mut task = None;
        if let (Some(listen), Some(path)) = (args.web, db_path) {
            let token = args.web_token()?;
            let opts = crate::web::WebOptions {
                listen,
                token,
                history: std::sync::Arc::new(crate::store::SqliteHistory(path)),
                label: args.label(),
                file_view: false,
            };
            let listener = crate::web::bind(&opts).await?;
            task = Some(tokio::spawn(crate::web::serve(
                listener,
                opts,
                Some(summary_rx),
                async move {
                    let _ = stopped.await;
                },
            )));
        }
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(2));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        Ok(Console {
            summary_tx,
            stop: Some(stop),
            task,
            tick,
        })
    }

    /// Hands the console the latest summary; notes a console that failed.
    async fn update(&mut self, summary: Option<String>) {
        let _ = self.summary_tx.send(summary);
        if self.task.as_ref().is_some_and(|t| t.is_finished()) {
            // It failed (its error says why): the sensor goes on.
            if let Some(t) = self.task.take() {
                if let Ok(Err(e)) = t.await {
                    log::error!("web console stopped: {}", crate::error_chain(&e));
                }
            }
        }
    }

    async fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.task.take() {
            // Live streams end within half a second of the stop; a request
            // still running gets at most a few seconds more.
            match tokio::time::timeout(std::time::Duration::from_secs(5), t).await {
                Ok(Ok(Err(e))) => log::error!("web console: {}", crate::error_chain(&e)),
                Ok(_) => {}
                Err(_) => log::warn!("web console did not stop within 5 s; leaving it"),
            }
        }
    }
}

fn ifindex_of(iface: &str) -> u32 {
    let Ok(c) = std::ffi::CString::new(iface) else {
        return 0;
    };
    // SAFETY: valid NUL-terminated string.
    unsafe { libc::if_nametoindex(c.as_ptr()) }
}
