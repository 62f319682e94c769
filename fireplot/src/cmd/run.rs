//! `fireplot run`: the sensor daemon.

use std::{
    fs::File,
    io::{self, BufWriter, Write},
    path::PathBuf,
    time::Instant,
};

use anyhow::Context as _;
use aya::maps::{MapData, RingBuf};
use clap::Args;
use fireplot_common::event::Event;
use tokio::{
    io::{unix::AsyncFd, Interest},
    signal::unix::{signal, SignalKind},
};

use super::detect::DetectArgs;
use crate::detect::{Alert, Engine};
use crate::{
    output::{
        event::{rfc3339_ns, EventRecord},
        summary::{Summary, UserCounts},
    },
    plot::{periodic::Periodic, Theme},
    record::Record,
    sensor::{
        clock::{monotonic_ns, monotonic_to_wall_offset},
        Limits, LoadOptions, Sensor, XdpModeChoice,
    },
    store::{default_path, writer::StoreWriter},
    units::{HumanDuration, Service},
};

/// Options of `fireplot run`.
#[derive(Args, Debug, Clone)]
pub struct RunArgs {
    /// WAN interface to watch (XDP ingress and TC egress attach here).
    #[arg(long, short = 'i')]
    pub iface: String,

    /// How to attach XDP: native (driver) with fallback to generic, native only, or generic.
    #[arg(long, value_enum, default_value = "auto")]
    pub xdp_mode: XdpModeChoice,

    /// A published service whose inbound traffic is `service`, not an event:
    /// tcp/443, udp/53, tcp/8000-8080, icmp. Repeatable.
    #[arg(long = "service", value_name = "PROTO/PORT")]
    pub services: Vec<Service>,

    /// Write one JSON line per event to FILE (`-` for stdout). Appends.
    #[arg(long, value_name = "FILE")]
    pub events_out: Option<String>,

    /// Store every event (and counter summaries, alerts) in this SQLite
    /// database. Without a value: /var/lib/fireplot/fireplot.db as root,
    /// ./fireplot.db otherwise.
    #[arg(long, value_name = "PATH", num_args = 0..=1, default_missing_value = "")]
    pub db: Option<PathBuf>,

    /// Delete stored history older than this, in the background (e.g. 30d).
    #[arg(long, value_name = "DURATION", requires = "db")]
    pub retain: Option<HumanDuration>,

    /// Keep fireplots in DIR: fireplot-<iface>.png over --plot-window, and
    /// one per finished day (fireplot-<iface>-YYYY-MM-DD.png). Needs --db.
    #[arg(long, value_name = "DIR", requires = "db")]
    pub plot_dir: Option<PathBuf>,

    /// How often the rolling plot is redrawn.
    #[arg(long, default_value = "5m", value_name = "DURATION")]
    pub plot_every: HumanDuration,

    /// Time span of the rolling plot.
    #[arg(long, default_value = "24h", value_name = "DURATION")]
    pub plot_window: HumanDuration,

    /// Also write SVG next to each PNG.
    #[arg(long)]
    pub plot_svg: bool,

    /// Plot colours.
    #[arg(long, value_enum, default_value = "dark")]
    pub plot_theme: Theme,

    /// Plot times in UTC instead of local time.
    #[arg(long)]
    pub plot_utc: bool,

    /// Write alert JSON lines to FILE (`-` for stdout); alerts also go to --db.
    #[arg(long, value_name = "FILE")]
    pub alerts: Option<String>,

    #[command(flatten)]
    pub detect: DetectArgs,

    /// Print a counter summary this often (and always at exit).
    #[arg(long, default_value = "60s", value_name = "DURATION")]
    pub stats_every: HumanDuration,

    /// Summaries as JSON lines instead of text.
    #[arg(long)]
    pub stats_json: bool,

    /// Write summaries to FILE instead of stderr.
    #[arg(long, value_name = "FILE")]
    pub stats_out: Option<PathBuf>,

    /// Stop after this long (default: run until SIGINT/SIGTERM).
    #[arg(long, value_name = "DURATION")]
    pub duration: Option<HumanDuration>,

    /// Events per second one source may cause over the whole sensor before
    /// the kernel suppresses (and counts) the rest; 0 = unlimited. The
    /// buckets are per CPU (no lock on the hot path), so the budget is split:
    /// each of the C CPUs that run XDP holds N/C events/s and ⌊burst/C⌋ of
    /// burst. A source never gets more than N/s in total, whatever the
    /// receive-side spreading; one whose packets all land on one CPU gets
    /// that CPU's share. Suppressed packets are still counted (classes,
    /// ports) and show as `suppressed` in the summaries.
    #[arg(long, default_value_t = Limits::default().rate_limit, verbatim_doc_comment)]
    pub rate_limit: u32,

    /// Events one source may cause at once, over the whole sensor, before
    /// --rate-limit applies (split across CPUs like the rate; at least the
    /// number of CPUs).
    #[arg(long, default_value_t = Limits::default().rate_burst, verbatim_doc_comment)]
    pub rate_burst: u32,

    /// Idle timeout of TCP flows, seconds.
    #[arg(long, default_value_t = Limits::default().tcp_timeout_s)]
    pub tcp_timeout: u64,
    /// Idle timeout of TCP flows after FIN/RST from the inside, seconds.
    #[arg(long, default_value_t = Limits::default().tcp_closing_timeout_s)]
    pub tcp_closing_timeout: u64,
    /// Idle timeout of UDP flows, seconds.
    #[arg(long, default_value_t = Limits::default().udp_timeout_s)]
    pub udp_timeout: u64,
    /// Idle timeout of ICMP echo flows, seconds.
    #[arg(long, default_value_t = Limits::default().icmp_timeout_s)]
    pub icmp_timeout: u64,
    /// Idle timeout of other protocols, seconds.
    #[arg(long, default_value_t = Limits::default().other_timeout_s)]
    pub other_timeout: u64,

    /// Also send events for malformed packets.
    #[arg(long)]
    pub emit_malformed: bool,

    /// Ring buffer size in MiB (a power of two).
    #[arg(long, default_value_t = 16, value_parser = parse_ring_mib)]
    pub ring_mib: u32,

    /// Entries of the IPv4 flow table (IPv6 gets half, at least 1024).
    #[arg(long, default_value_t = LoadOptions::default().flow_table_size, value_parser = parse_flow_table_size)]
    pub flow_table_size: u32,
}

fn parse_flow_table_size(s: &str) -> Result<u32, String> {
    let v: u32 = s
        .parse()
        .map_err(|_| format!("`{s}` is not a number of entries"))?;
    if !(1024..=64 << 20).contains(&v) {
        return Err(format!(
            "the flow table needs between 1024 and {} entries, not {v}",
            64 << 20
        ));
    }
    Ok(v)
}

fn parse_ring_mib(s: &str) -> Result<u32, String> {
    let v: u32 = s
        .parse()
        .map_err(|_| format!("`{s}` is not a number of MiB"))?;
    if v == 0 || !v.is_power_of_two() || v > 1024 {
        return Err(format!(
            "ring size must be a power of two between 1 and 1024 MiB, not {v}"
        ));
    }
    Ok(v)
}

impl RunArgs {
    fn limits(&self) -> Limits {
        Limits {
            tcp_timeout_s: self.tcp_timeout,
            tcp_closing_timeout_s: self.tcp_closing_timeout,
            udp_timeout_s: self.udp_timeout,
            icmp_timeout_s: self.icmp_timeout,
            other_timeout_s: self.other_timeout,
            rate_limit: self.rate_limit,
            rate_burst: self.rate_burst,
            emit_malformed: self.emit_malformed,
            service_icmp_echo: false,
        }
    }
}

/// Events per store transaction (more are sent every flush tick).
const STORE_BATCH: usize = 8192;

/// Where events go: JSON lines and the history store.
struct EventSink {
    out: Option<Box<dyn Write + Send>>,
    counts: UserCounts,
    write_error_reported: bool,
    store: Option<StoreWriter>,
    batch: Vec<Record>,
    iface: Option<String>,
    detect: Option<Detection>,
}

/// The detection engine of a live run and where its alerts go.
struct Detection {
    engine: Engine,
    out: Option<Box<dyn Write + Send>>,
    alerts: u64,
    write_errors: u64,
}

impl Detection {
    fn emit(&mut self, alerts: Vec<Alert>, store: Option<&StoreWriter>) {
        for a in alerts {
            self.alerts += 1;
            let line = a.to_json();
            if let Some(out) = self.out.as_mut() {
                if writeln!(out, "{line}").is_err() {
                    self.write_errors += 1;
                }
            }
            if let Some(w) = store {
                let first = crate::record::parse_rfc3339_ns(&a.first_seen).unwrap_or(0);
                let last = crate::record::parse_rfc3339_ns(&a.last_seen).unwrap_or(first);
                w.alert(first, last, &a.kind, line);
            }
            log::info!("alert {} {}: {}", a.status, a.kind, a.summary);
        }
        if let Some(out) = self.out.as_mut() {
            let _ = out.flush();
        }
    }
}

impl EventSink {
    fn open(spec: Option<&str>) -> anyhow::Result<EventSink> {
        let out: Option<Box<dyn Write + Send>> = match spec {
            None => None,
            Some("-") => Some(Box::new(BufWriter::with_capacity(1 << 16, io::stdout()))),
            Some(path) => {
                let f = File::options()
                    .create(true)
                    .append(true)
                    .open(path)
                    .with_context(|| format!("cannot open events file `{path}`"))?;
                Some(Box::new(BufWriter::with_capacity(1 << 20, f)))
            }
        };
        Ok(EventSink {
            out,
            counts: UserCounts::default(),
            write_error_reported: false,
            store: None,
            batch: Vec::new(),
            iface: None,
            detect: None,
        })
    }

    fn record(&mut self, bytes: &[u8], wall_offset: i128) {
        self.counts.events_received += 1;
        let Some(ev) = Event::from_bytes(bytes) else {
            self.counts.decode_errors += 1;
            return;
        };
        if self.store.is_some() || self.detect.is_some() {
            let rec = Record::from_event(&ev, wall_offset);
            if let Some(d) = self.detect.as_mut() {
                d.engine.push(&rec);
                let alerts = d.engine.drain();
                if !alerts.is_empty() {
                    d.emit(alerts, self.store.as_ref());
                }
            }
            if self.store.is_some() {
                self.batch.push(rec);
            }
        }
        let Some(out) = self.out.as_mut() else {
            return;
        };
        let mut rec = EventRecord::from_event(&ev, wall_offset);
        rec.iface = self.iface.clone();
        let line = rec.to_json();
        match writeln!(out, "{line}") {
            Ok(()) => self.counts.events_written += 1,
            Err(e) => {
                self.counts.write_errors += 1;
                if !self.write_error_reported {
                    log::error!("cannot write events: {e}; counting what is lost and going on");
                    self.write_error_reported = true;
                }
            }
        }
    }

    /// Hands records to the store writer in batches of at least
    /// `STORE_BATCH` (one transaction each), or whatever is pending when
    /// `force` (every flush tick and at exit).
    fn store_batch(&mut self, force: bool) {
        if let Some(w) = &self.store {
            if force || self.batch.len() >= STORE_BATCH {
                w.events(std::mem::take(&mut self.batch));
            }
        }
    }

    fn flush(&mut self) {
        if let Some(out) = self.out.as_mut() {
            if let Err(e) = out.flush() {
                log::error!("cannot flush events: {e}");
            }
        }
    }
}

/// Takes every record now in the ring buffer.
fn drain(ring: &mut RingBuf<MapData>, sink: &mut EventSink) -> usize {
    let offset = monotonic_to_wall_offset();
    let mut n = 0;
    while let Some(item) = ring.next() {
        sink.record(&item, offset);
        n += 1;
    }
    sink.store_batch(false);
    n
}

struct StatsWriter {
    out: Box<dyn Write + Send>,
    json: bool,
    rate_limit: Option<crate::output::summary::RateLimitSummary>,
}

impl StatsWriter {
    fn write(&mut self, sensor: &Sensor, iface: &str, started: Instant, sink: &EventSink) {
        let user = sink.counts;
        let counters = match sensor.counters() {
            Ok(c) => c,
            Err(e) => {
                log::error!("cannot read counters: {e}");
                return;
            }
        };
        let now = rfc3339_ns(monotonic_ns() as i128 + monotonic_to_wall_offset());
        let mut summary =
            Summary::new(now, iface, started.elapsed().as_secs_f64(), &counters, user);
        summary.store = sink.store.as_ref().map(StoreWriter::counts);
        summary.rate_limit = self.rate_limit;
        summary.detect = sink
            .detect
            .as_ref()
            .map(|d| crate::output::summary::DetectSummary {
                stats: d.engine.stats(),
                alerts: d.alerts,
                write_errors: d.write_errors,
            });
        if let Some(w) = &sink.store {
            w.counters(crate::record::now_ns(), iface, summary.to_json());
        }
        let text = if self.json {
            summary.to_json() + "\n"
        } else {
            summary.to_text(&counters)
        };
        if let Err(e) = self
            .out
            .write_all(text.as_bytes())
            .and_then(|_| self.out.flush())
        {
            log::error!("cannot write stats: {e}");
        }
    }
}

/// Runs the sensor until a signal or `--duration`.
pub async fn run(args: RunArgs) -> anyhow::Result<()> {
    let mut stats = StatsWriter {
        out: match &args.stats_out {
            Some(p) => Box::new(
                File::options()
                    .create(true)
                    .append(true)
                    .open(p)
                    .with_context(|| format!("cannot open stats file `{}`", p.display()))?,
            ),
            None => Box::new(io::stderr()),
        },
        json: args.stats_json,
        rate_limit: None,
    };
    // Every limit is checked before anything is opened or loaded.
    let limits = args.limits();
    limits.validate(crate::sensor::online_cpus()?)?;
    let mut sink = EventSink::open(args.events_out.as_deref())?;
    sink.iface = Some(args.iface.clone());
    let detect_cfg = args.detect.load()?;
    if args.alerts.is_some() || args.db.is_some() {
        let out: Option<Box<dyn Write + Send>> = match args.alerts.as_deref() {
            None => None,
            Some("-") => Some(Box::new(io::stdout())),
            Some(path) => Some(Box::new(
                File::options()
                    .create(true)
                    .append(true)
                    .open(path)
                    .with_context(|| format!("cannot open alerts file `{path}`"))?,
            )),
        };
        sink.detect = Some(Detection {
            engine: Engine::new(detect_cfg),
            out,
            alerts: 0,
            write_errors: 0,
        });
    }
    if args.events_out.is_none() && args.db.is_none() {
        log::warn!("neither --events-out nor --db: events are counted but not kept anywhere");
    }

    let load = LoadOptions {
        ring_bytes: args.ring_mib * 1024 * 1024,
        flow_table_size: args.flow_table_size,
    };
    let mut sensor = Sensor::load(&load)?;
    sensor.configure(&limits, &args.services)?;
    stats.rate_limit =
        limits
            .cpu_share(sensor.cpus)
            .map(|share| crate::output::summary::RateLimitSummary {
                rate_limit: limits.rate_limit,
                rate_burst: limits.rate_burst,
                cpus: sensor.cpus,
                cpu_burst: share.burst,
                cpu_interval_ns: share.interval_ns,
            });
    let mode = sensor.attach(&args.iface, args.xdp_mode)?;
    log::info!(
        "fireplot attached to {} (XDP {mode}, TC egress), HZ {}",
        args.iface,
        sensor.clock.hz
    );
    if let Some(db) = &args.db {
        let path = if db.as_os_str().is_empty() {
            default_path()
        } else {
            db.clone()
        };
        let ifindex = ifindex_of(&args.iface);
        log::info!("storing history in {}", path.display());
        sink.store = Some(StoreWriter::start(
            path,
            args.retain.map(|r| r.0),
            Some((ifindex, args.iface.clone())),
        ));
    }
    let periodic = match (&args.plot_dir, &args.db) {
        (Some(dir), Some(db)) => Some(Periodic {
            dir: dir.clone(),
            iface: args.iface.clone(),
            ifindex: ifindex_of(&args.iface),
            db: if db.as_os_str().is_empty() {
                default_path()
            } else {
                db.clone()
            },
            window: args.plot_window.0,
            svg: args.plot_svg,
            theme: args.plot_theme,
            utc: args.plot_utc,
            started_ns: crate::record::now_ns(),
        }),
        _ => None,
    };
    let mut plot_task: Option<tokio::task::JoinHandle<()>> = None;
    let mut plot_tick =
        tokio::time::interval(args.plot_every.0.max(std::time::Duration::from_secs(1)));
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
    let mut tick = tokio::time::interval(
        args.stats_every
            .0
            .max(std::time::Duration::from_millis(100)),
    );
    tick.tick().await;
    let mut flush_tick = tokio::time::interval(std::time::Duration::from_millis(500));
    // The kernel wakes us only when a batch is waiting (see `WAKEUP_BYTES`
    // in fireplot-ebpf); this tick picks up the rest within 20 ms.
    let mut drain_tick = tokio::time::interval(std::time::Duration::from_millis(20));
    drain_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
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
            _ = tick.tick() => stats.write(&sensor, &args.iface, started, &sink),
            _ = drain_tick.tick() => {
                drain(ring.get_mut(), &mut sink);
            }
            _ = flush_tick.tick() => {
                sink.flush();
                sink.store_batch(true);
            }
            _ = plot_tick.tick(), if periodic.is_some() => {
                // One render at a time; a slow one skips the next tick.
                if plot_task.as_ref().is_none_or(|t| t.is_finished()) {
                    let p = periodic.clone().expect("checked by the guard");
                    plot_task = Some(tokio::task::spawn_blocking(move || p.tick()));
                }
            }
            _ = sigterm.recv() => { log::info!("SIGTERM: stopping"); break; }
            _ = sigint.recv() => { log::info!("SIGINT: stopping"); break; }
            _ = &mut until_deadline => break,
        }
    }

    // Detach first so nothing new arrives, then take what is left.
    sensor.detach();
    drain(ring.get_mut(), &mut sink);
    sink.flush();
    if let Some(mut d) = sink.detect.take() {
        // Episodes still open end with the run, as they do at the end of a replay.
        let alerts = d.engine.finish();
        d.emit(alerts, sink.store.as_ref());
        sink.detect = Some(d);
    }
    sink.store_batch(true);
    if let Some(w) = &sink.store {
        w.flush();
    }
    stats.write(&sensor, &args.iface, started, &sink);
    if let Some(w) = sink.store.take() {
        w.close();
    }
    if let Some(t) = plot_task.take() {
        let _ = t.await;
    }
    if let Some(p) = periodic {
        // The last picture includes everything this run saw.
        let _ = tokio::task::spawn_blocking(move || p.tick()).await;
    }
    Ok(())
}

fn ifindex_of(iface: &str) -> u32 {
    let Ok(c) = std::ffi::CString::new(iface) else {
        return 0;
    };
    // SAFETY: valid NUL-terminated string.
    unsafe { libc::if_nametoindex(c.as_ptr()) }
}
