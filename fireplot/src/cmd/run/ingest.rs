//! `fireplot ingest`: firewall logs (and fireplot's own event lines) into
//! the same outputs as `run`: event lines, the history database, live
//! detection. A file, standard input, a file followed across rotation, or
//! the kernel's journal as it is written. The lines are read and parsed
//! by [`crate::input`]; this file holds the arguments and the wiring.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Instant,
};

use anyhow::{bail, Context as _};
use chrono::FixedOffset;
use clap::Args;

use super::{
    kept::Kept,
    sinks::{db_path, EventSink},
    OutputArgs,
};
use crate::{
    cmd::{
        args::{FileInputArgs, ProgressArgs},
        detect::DetectArgs,
    },
    input::{
        follow::Got,
        parse,
        time::{parse_zone, Clock},
        Format, LineSource, Parsed,
    },
    progress::{Progress, Unit},
    store::Store,
};

/// The formats `fireplot ingest` reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum FormatArg {
    /// fireplot's own event JSON lines (`--events-out`).
    Events,
    /// iptables / ip6tables `-j LOG` lines (kernel log, syslog, dmesg).
    Iptables,
    /// nftables `log` statement lines (the same kernel format).
    Nftables,
    /// Mikrotik RouterOS firewall log lines (`... proto TCP (SYN), a:p->b:q, len N`).
    Mikrotik,
    /// `journalctl -k -o json` records.
    Journald,
}

impl From<FormatArg> for Format {
    fn from(f: FormatArg) -> Format {
        match f {
            FormatArg::Events => Format::Events,
            FormatArg::Iptables => Format::Iptables,
            FormatArg::Nftables => Format::Nftables,
            FormatArg::Mikrotik => Format::Mikrotik,
            FormatArg::Journald => Format::Journald,
        }
    }
}

/// Options of `fireplot ingest`.
#[derive(Args, Debug, Clone)]
#[command(after_help = "Examples:\n  \
fireplot ingest --format iptables /var/log/kern.log --db fw.db --alerts -\n  \
journalctl -k -o json | fireplot ingest --format journald - --events-out fw.jsonl\n  \
fireplot ingest --format journald --follow --db fw.db        (reads `journalctl -k -f`)\n  \
fireplot ingest --format mikrotik /var/log/mikrotik.log --follow --db fw.db\n  \
dmesg --time-format iso | fireplot ingest --format nftables - --alerts -\n\n\
Every line a firewall logged is one unsolicited event (the firewall judged it). Lines \
that are not firewall lines are skipped and counted; firewall lines that cannot be read \
are counted and the first ones shown. Neither stops the ingest.")]
pub struct IngestArgs {
    /// What the lines are.
    #[arg(long, value_enum)]
    pub format: FormatArg,

    /// The log file, or `-` for standard input. With --format journald and
    /// --follow it may be left out: `journalctl -k -o json -f` is read.
    #[arg(value_name = "FILE")]
    pub file: Option<PathBuf>,

    /// Keep reading as the file grows, across rotation (a new file under
    /// the same name, or the file cut short), until SIGINT/SIGTERM.
    #[arg(long)]
    pub follow: bool,

    /// The time zone of times that carry none (syslog, Mikrotik): `utc`,
    /// `local` (the default) or an offset like +01:00.
    #[arg(long, default_value = "local", value_parser = parse_zone)]
    pub tz: FixedOffset,

    /// The year of syslog times (they carry none). Default: the latest year
    /// that does not put a line more than a day in the future.
    #[arg(long)]
    pub year: Option<i32>,

    #[command(flatten)]
    pub output: OutputArgs,

    #[command(flatten)]
    pub file_input: FileInputArgs,

    #[command(flatten)]
    pub detect: DetectArgs,

    #[command(flatten)]
    pub progress: ProgressArgs,
}

/// Interface indexes of ingested logs, apart from live and replayed ones.
const IFINDEX_BASE: u32 = 2_000_000;

/// Unreadable lines shown at the end (the rest are counted).
const SHOW_BAD: usize = 5;

/// How lines become events.
struct Reading {
    format: Format,
    clock: Clock,
    /// Following: "now" (for times without a year or date) moves on.
    follow: bool,
    /// A pipe or `journalctl`: what came is written out whenever it
    /// pauses. (A file never pauses: its batches stay whole.)
    may_pause: bool,
    /// The input, as messages name it.
    what: String,
    /// The file's size, for progress (a file read once).
    size: Option<u64>,
    quiet: bool,
}

/// What an ingest read.
#[derive(Debug, Default)]
struct Tally {
    lines: u64,
    events: u64,
    other: u64,
    bad: u64,
    shown: Vec<String>,
    /// Interface names of the lines, with the indexes given them.
    ifaces: BTreeMap<String, u32>,
    secs: f64,
    /// Why reading stopped before the end: the history or the fleet could
    /// not take more for the whole `--store-wait`.
    stopped: Option<String>,
    /// The line of each of the last [`RECENT`] events (event number, line
    /// number): where to resume when the history gave up on the last ones.
    recent: std::collections::VecDeque<(u64, u64)>,
}

/// Events whose line is remembered: more than the writer's queue and the
/// sink's batch hold (all that may be handed over but not stored).
const RECENT: usize = 1 << 18;

pub async fn ingest(args: IngestArgs) -> anyhow::Result<()> {
    let detect_cfg = args.detect.load()?;
    let source = open_source(&args)?;
    let mut sink = EventSink::with_outputs(&args.output, detect_cfg)?;
    if args.output.none() {
        log::warn!("none of --events-out, --db, --alerts: the ingest only counts");
    }
    let db_path = db_path(args.output.db.as_deref());
    if let Some(path) = db_path.clone() {
        crate::store::open_waiting(&path)?;
        sink.store = Some(args.file_input.store_writer(path));
        sink.store_origins();
    }
    let wait = Some(args.file_input.store_wait.0);
    sink.start_publishing(&args.output.fleet, &[], wait).await?;
    let stop = Arc::new(AtomicBool::new(false));
    stop_on_signal(stop.clone(), source.child_pid());
    let reading = reading(&args);
    // The reader waits for the store and the fleet: a blocking task, so
    // the runtime's workers go on (the publisher is one of their tasks).
    let (source, sink, reading, tally) = tokio::task::spawn_blocking(move || {
        let (mut source, mut sink) = (source, sink);
        let tally = read_all(&mut source, &mut sink, &reading, &stop);
        if let Some(p) = &sink.publish {
            for (name, idx) in &tally.ifaces {
                p.set_interface(*idx, name);
            }
        }
        sink.finish();
        (source, sink, reading, tally)
    })
    .await
    .context("the ingest task failed")?;
    source.close();
    let kept = close(sink, &tally, db_path.as_deref()).await?;
    report(&tally, &reading);
    let stopped = tally.stopped.as_ref().map(|why| {
        format!(
            "reading stopped after line {}: {why}{}",
            tally.lines,
            resume_at(&tally, &kept, &reading)
        )
    });
    kept.check(tally.events, stopped.as_deref())
}

/// Where to go on when the history gave up: the first line whose event
/// was not stored (those before it are, in order).
fn resume_at(tally: &Tally, kept: &Kept, reading: &Reading) -> String {
    let Some(stored) = kept.store.map(|c| c.stored) else {
        return String::new();
    };
    match tally.recent.iter().find(|(n, _)| *n == stored + 1) {
        Some((_, line)) => format!(
            "; every event before line {line} is stored: resume from there (`tail -n +{line} {}`)",
            reading.what
        ),
        None => String::new(),
    }
}

/// How the lines of `args`' input become events.
fn reading(args: &IngestArgs) -> Reading {
    let file = args.file.as_ref().filter(|p| p.as_os_str() != "-");
    Reading {
        format: args.format.into(),
        clock: Clock::system(args.tz, args.year),
        follow: args.follow,
        may_pause: file.is_none(),
        what: args
            .file
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "journalctl -k -f".into()),
        size: file
            .filter(|_| !args.follow)
            .and_then(|p| std::fs::metadata(p).ok())
            .map(|m| m.len()),
        quiet: args.progress.quiet || args.follow,
    }
}

/// Where the lines come from: `-`, a FILE (followed or not), or the
/// journal with `--format journald --follow` and no FILE.
fn open_source(args: &IngestArgs) -> anyhow::Result<LineSource> {
    Ok(match (&args.file, args.format, args.follow) {
        (None, FormatArg::Journald, true) => LineSource::journal()?,
        (None, _, _) => bail!("give the log FILE, or `-` for standard input"),
        (Some(p), _, _) if p.as_os_str() == "-" => LineSource::stdin(),
        (Some(p), _, true) => LineSource::follow(p)?,
        (Some(p), _, false) => LineSource::file(p)?,
    })
}

/// Sets `stop` on SIGINT/SIGTERM. A stop also ends `journalctl -f`
/// (`child_pid`), so the blocked read sees its end.
fn stop_on_signal(stop: Arc<AtomicBool>, child_pid: Option<i32>) {
    tokio::spawn(async move {
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            return;
        };
        tokio::select! { _ = term.recv() => {}, _ = int.recv() => {} }
        stop.store(true, Ordering::Relaxed);
        if let Some(pid) = child_pid {
            // SAFETY: kill(2) on our own child, still unreaped (it is
            // waited for when the source is closed).
            unsafe { libc::kill(pid, libc::SIGTERM) };
        }
    });
}

/// Reads lines into the sink until the input ends, it fails, or `stop`.
fn read_all(
    source: &mut LineSource,
    sink: &mut EventSink,
    reading: &Reading,
    stop: &AtomicBool,
) -> Tally {
    let started = Instant::now();
    let mut tally = Tally::default();
    let mut buf = Vec::with_capacity(4096);
    let mut progress = Progress::start("ingest", Unit::Bytes, reading.size, reading.quiet);
    while !stop.load(Ordering::Relaxed) {
        if let Some(why) = sink.failure() {
            tally.stopped = Some(why);
            break;
        }
        match source.read_line(&mut buf, stop) {
            Ok(Got::Line) => {
                progress.add(buf.len() as u64);
                tally.take_line(&buf, reading, sink);
                if reading.may_pause && source.paused() {
                    sink.flush();
                    sink.store_batch(true);
                }
            }
            Ok(Got::CaughtUp) => {
                sink.flush();
                sink.store_batch(true);
                source.wait_for_more();
            }
            Ok(Got::End) => break,
            Err(e) => {
                log::error!(
                    "reading {} failed after line {}: {e}",
                    reading.what,
                    tally.lines
                );
                break;
            }
        }
    }
    progress.finish();
    tally.secs = started.elapsed().as_secs_f64();
    tally
}

impl Tally {
    /// One line: its event to the sink, or counted (and the first
    /// unreadable ones kept to show).
    fn take_line(&mut self, buf: &[u8], reading: &Reading, sink: &mut EventSink) {
        self.lines += 1;
        let line = String::from_utf8_lossy(buf);
        let mut clock = reading.clock;
        if reading.follow {
            clock.now_ns = crate::record::now_ns();
        }
        match parse(reading.format, &line, &clock, self.lines as usize) {
            Parsed::Event(mut rec, iface) => {
                self.events += 1;
                if self.recent.len() == RECENT {
                    self.recent.pop_front();
                }
                self.recent.push_back((self.events, self.lines));
                if let Some(name) = &iface {
                    let n = self.ifaces.len() as u32;
                    rec.ifindex = *self.ifaces.entry(name.clone()).or_insert(IFINDEX_BASE + n);
                }
                sink.push(*rec, iface.as_deref());
            }
            Parsed::Other => self.other += 1,
            Parsed::Bad(why) => {
                self.bad += 1;
                if self.shown.len() < SHOW_BAD {
                    let l: String = line.trim_end().chars().take(160).collect();
                    let why = crate::error_chain(&why);
                    self.shown.push(format!("line {}: {why}: {l}", self.lines));
                }
            }
        }
    }
}

/// Ends the outputs (the last batches are handed over already): the
/// fleet's last batch, the store (whose counts go in the closing line)
/// and the interfaces' names.
async fn close(mut sink: EventSink, tally: &Tally, db_path: Option<&Path>) -> anyhow::Result<Kept> {
    if let Some(p) = &sink.publish {
        // The interfaces' names travel with a batch: one last one.
        p.counters(
            serde_json::json!({"ingest": true, "lines": tally.lines, "ts": crate::record::line::rfc3339_ns(crate::record::now_ns() as i128)})
                .to_string(),
        );
    }
    let fleet = sink.stop_publishing().await;
    let store = sink.store.take().map(|w| w.close());
    if let Some(path) = db_path {
        // The names are a nicety: a full disk must not hide the counts.
        let named = Store::open(path).and_then(|s| {
            tally
                .ifaces
                .iter()
                .try_for_each(|(name, idx)| s.set_interface(*idx, name))
        });
        if let Err(e) = named {
            log::warn!(
                "the interfaces' names are not stored: {}",
                crate::error_chain(&e)
            );
        }
    }
    if let Some(c) = store.filter(|c| c.waited_ms > 0) {
        log::info!(
            "the reader waited {:.1} s in all for the history database (it writes more slowly than the input reads)",
            c.waited_ms as f64 / 1000.0
        );
    }
    let kept = Kept { store, fleet };
    closing_line(tally, &sink, &kept);
    Ok(kept)
}

/// The closing line: what was read, what became of it.
fn closing_line(tally: &Tally, sink: &EventSink, kept: &Kept) {
    eprintln!(
        "ingest: {} lines in {:.2} s ({:.0} lines/s): {} events, {} other lines skipped, {} unreadable{}{}",
        tally.lines,
        tally.secs,
        tally.lines as f64 / tally.secs.max(1e-9),
        tally.events,
        tally.other,
        tally.bad,
        sink.detect
            .as_ref()
            .map(|d| format!(", {} alert records", d.alerts))
            .unwrap_or_default(),
        kept.text(),
    );
}

/// The unreadable lines shown, and a hint when nothing was read.
fn report(tally: &Tally, reading: &Reading) {
    for s in &tally.shown {
        eprintln!("  unreadable: {s}");
    }
    if tally.bad > tally.shown.len() as u64 {
        eprintln!("  … and {} more", tally.bad - tally.shown.len() as u64);
    }
    if tally.lines > 0 && tally.events == 0 {
        log::warn!(
            "no line of {} was a {:?} firewall line; is --format right?",
            reading.what,
            reading.format
        );
    }
}
