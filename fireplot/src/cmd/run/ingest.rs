//! `fireplot ingest`: firewall logs (and fireplot's own event lines) into
//! the same outputs as `run`: event lines, the history database, live
//! detection. A file, standard input, a file followed across rotation, or
//! the kernel's journal as it is written.

use std::{
    collections::BTreeMap,
    fs::File,
    io::{self, BufRead, BufReader, Read, Seek, SeekFrom},
    os::unix::fs::MetadataExt,
    path::PathBuf,
    process::{Command, Stdio},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _};
use chrono::{FixedOffset, Local, Offset};
use clap::Args;

use super::{
    sinks::{db_path, EventSink},
    OutputArgs,
};
use crate::{
    cmd::detect::DetectArgs,
    ingest::{parse, Clock, Format, Parsed},
    store::{writer::StoreWriter, Store},
};

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
    pub format: Format,

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
    #[arg(long, default_value = "local", value_parser = parse_tz)]
    pub tz: FixedOffset,

    /// The year of syslog times (they carry none). Default: the latest year
    /// that does not put a line more than a day in the future.
    #[arg(long)]
    pub year: Option<i32>,

    #[command(flatten)]
    pub output: OutputArgs,

    #[command(flatten)]
    pub detect: DetectArgs,
}

fn parse_tz(s: &str) -> Result<FixedOffset, String> {
    match s.to_ascii_lowercase().as_str() {
        "utc" | "z" => return Ok(FixedOffset::east_opt(0).expect("zero")),
        "local" => return Ok(Local::now().offset().fix()),
        _ => {}
    }
    let err = || format!("`{s}` is not a zone: use utc, local or an offset like +01:00");
    let (sign, rest) = match s.as_bytes().first() {
        Some(b'+') => (1, &s[1..]),
        Some(b'-') => (-1, &s[1..]),
        _ => return Err(err()),
    };
    let (h, m) = rest.split_once(':').unwrap_or((rest, "0"));
    let (h, m): (i32, i32) = (h.parse().map_err(|_| err())?, m.parse().map_err(|_| err())?);
    if h > 14 || m > 59 {
        return Err(err());
    }
    FixedOffset::east_opt(sign * (h * 3600 + m * 60)).ok_or_else(err)
}

/// What an ingest read.
#[derive(Debug, Default)]
struct Tally {
    lines: u64,
    events: u64,
    other: u64,
    bad: u64,
    shown: Vec<String>,
}

const SHOW_BAD: usize = 5;

fn boot_ns() -> Option<i64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let btime: i64 = stat
        .lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()?;
    Some(btime * 1_000_000_000)
}

/// Lines from a file that may grow and be rotated.
struct Follower {
    path: PathBuf,
    reader: BufReader<File>,
    inode: u64,
    pos: u64,
}

impl Follower {
    fn open(path: &PathBuf) -> io::Result<Follower> {
        let f = File::open(path)?;
        let inode = f.metadata()?.ino();
        Ok(Follower {
            path: path.clone(),
            reader: BufReader::new(f),
            inode,
            pos: 0,
        })
    }

    /// Rotated (another file under the name) or truncated: start over.
    fn check_rotation(&mut self) -> io::Result<bool> {
        let Ok(meta) = std::fs::metadata(&self.path) else {
            return Ok(false); // between the rename and the new file
        };
        if meta.ino() != self.inode {
            // Whatever the old file still had was read before this check.
            *self = Follower::open(&self.path)?;
            return Ok(true);
        }
        if meta.len() < self.pos {
            self.reader.seek(SeekFrom::Start(0))?;
            self.pos = 0;
            return Ok(true);
        }
        Ok(false)
    }
}

pub async fn ingest(args: IngestArgs) -> anyhow::Result<()> {
    let detect_cfg = args.detect.load()?;
    // Where the lines come from.
    let stop = Arc::new(AtomicBool::new(false));
    let mut child = None;
    enum Input {
        Stream(BufReader<Box<dyn Read + Send>>),
        Follow(Follower),
    }
    let input = match (&args.file, args.format, args.follow) {
        (None, Format::Journald, true) => {
            let mut c = Command::new("journalctl")
                .args(["-k", "-o", "json", "-f", "-n", "0"])
                .stdout(Stdio::piped())
                .spawn()
                .context("cannot run `journalctl -k -o json -f` (give a FILE or `-` instead)")?;
            let out = c.stdout.take().context("journalctl's output")?;
            child = Some(c);
            Input::Stream(BufReader::with_capacity(1 << 20, Box::new(out)))
        }
        (None, _, _) => bail!("give the log FILE, or `-` for standard input"),
        (Some(p), _, _) if p.as_os_str() == "-" => {
            Input::Stream(BufReader::with_capacity(1 << 20, Box::new(io::stdin())))
        }
        (Some(p), _, true) => Input::Follow(
            Follower::open(p).with_context(|| format!("cannot open `{}`", p.display()))?,
        ),
        (Some(p), _, false) => Input::Stream(BufReader::with_capacity(
            1 << 20,
            Box::new(File::open(p).with_context(|| format!("cannot open `{}`", p.display()))?),
        )),
    };
    let mut sink = EventSink::with_outputs(&args.output, detect_cfg)?;
    if args.output.none() {
        log::warn!("none of --events-out, --db, --alerts: the ingest only counts");
    }
    let db_path = db_path(args.output.db.as_deref());
    if let Some(path) = db_path.clone() {
        Store::open(&path)?;
        sink.store = Some(StoreWriter::start(path, None, None));
        sink.store_origins();
    }
    sink.start_publishing(&args.output.fleet, None).await?;
    {
        let stop = stop.clone();
        // A stop also ends `journalctl -f`, so the blocked read sees its end.
        let child_pid = child.as_ref().map(|c: &std::process::Child| c.id() as i32);
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
                // SAFETY: kill(2) on our own child, still unreaped (we wait for it later).
                unsafe { libc::kill(pid, libc::SIGTERM) };
            }
        });
    }
    let format = args.format;
    let follow = args.follow;
    let clock = Clock {
        zone: args.tz,
        year: args.year,
        now_ns: crate::record::now_ns(),
        boot_ns: boot_ns(),
    };
    let what = args
        .file
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "journalctl -k -f".into());
    let stop2 = stop.clone();
    let what2 = what.clone();
    let (sink, tally, ifaces, secs) = tokio::task::spawn_blocking(move || {
        let started = Instant::now();
        let mut sink = sink;
        let mut tally = Tally::default();
        let mut ifaces: BTreeMap<String, u32> = BTreeMap::new();
        let mut buf = Vec::with_capacity(4096);
        let mut input = input;
        let mut handle = |buf: &[u8], tally: &mut Tally, sink: &mut EventSink| {
            tally.lines += 1;
            let line = String::from_utf8_lossy(buf);
            let mut clock = clock;
            if follow {
                clock.now_ns = crate::record::now_ns();
            }
            match parse(format, &line, &clock, tally.lines as usize) {
                Parsed::Event(mut rec, iface) => {
                    tally.events += 1;
                    if let Some(name) = &iface {
                        let n = ifaces.len() as u32;
                        rec.ifindex = *ifaces.entry(name.clone()).or_insert(IFINDEX_BASE + n);
                    }
                    sink.push(*rec, iface.as_deref());
                }
                Parsed::Other => tally.other += 1,
                Parsed::Bad(why) => {
                    tally.bad += 1;
                    if tally.shown.len() < SHOW_BAD {
                        let l: String = line.trim_end().chars().take(160).collect();
                        tally
                            .shown
                            .push(format!("line {}: {why}: {l}", tally.lines));
                    }
                }
            }
        };
        loop {
            if stop2.load(Ordering::Relaxed) {
                break;
            }
            buf.clear();
            let n = match &mut input {
                Input::Stream(r) => r.read_until(b'\n', &mut buf),
                Input::Follow(f) => {
                    let n = f.reader.read_until(b'\n', &mut buf);
                    if let Ok(k) = n {
                        f.pos += k as u64;
                    }
                    n
                }
            };
            match n {
                Ok(0) => {
                    let Input::Follow(f) = &mut input else { break };
                    sink.flush();
                    sink.store_batch(true);
                    match f.check_rotation() {
                        Ok(true) => {
                            log::info!("{} was rotated; reading the new file", f.path.display())
                        }
                        Ok(false) => std::thread::sleep(Duration::from_millis(200)),
                        Err(e) => {
                            log::warn!("cannot reopen {}: {e}; retrying", f.path.display());
                            std::thread::sleep(Duration::from_millis(500));
                        }
                    }
                }
                Ok(_) => {
                    if follow && !buf.ends_with(b"\n") {
                        // Half a line: wait for the rest.
                        if let Input::Follow(f) = &mut input {
                            let mut rest = Vec::new();
                            let deadline = Instant::now() + Duration::from_secs(2);
                            while !rest.ends_with(b"\n")
                                && Instant::now() < deadline
                                && !stop2.load(Ordering::Relaxed)
                            {
                                std::thread::sleep(Duration::from_millis(50));
                                let mut more = Vec::new();
                                if let Ok(k) = f.reader.read_until(b'\n', &mut more) {
                                    f.pos += k as u64;
                                    rest.extend_from_slice(&more);
                                }
                            }
                            buf.extend_from_slice(&rest);
                        }
                    }
                    handle(&buf, &mut tally, &mut sink);
                    // A stream that paused (a pipe, journalctl -f): what came
                    // so far is written now, not at the end.
                    // (A fast pipe hands over up to its whole 64 KiB at a
                    // time, so batches stay hundreds of events.)
                    if let Input::Stream(r) = &input {
                        if r.buffer().is_empty() {
                            sink.flush();
                            sink.store_batch(true);
                        }
                    }
                }
                Err(e) => {
                    log::error!("reading {what2} failed after line {}: {e}", tally.lines);
                    break;
                }
            }
        }
        (sink, tally, ifaces, started.elapsed().as_secs_f64())
    })
    .await
    .context("the ingest task failed")?;
    if let Some(mut c) = child {
        let _ = c.kill();
        let _ = c.wait();
    }
    let mut sink = sink;
    if let Some(p) = &sink.publish {
        for (name, idx) in &ifaces {
            p.set_interface(*idx, name);
        }
    }
    sink.finish();
    if let Some(p) = &sink.publish {
        // The interfaces' names travel with a batch: one last one.
        p.counters(
            serde_json::json!({"ingest": true, "lines": tally.lines, "ts": crate::record::line::rfc3339_ns(crate::record::now_ns() as i128)})
                .to_string(),
        );
    }
    sink.stop_publishing().await;
    let stored = sink.store.take().map(|w| w.close());
    if let Some(path) = &db_path {
        let s = Store::open(path)?;
        for (name, idx) in &ifaces {
            s.set_interface(*idx, name)?;
        }
    }
    eprintln!(
        "ingest: {} lines in {secs:.2} s ({:.0} lines/s): {} events, {} other lines skipped, {} unreadable{}{}",
        tally.lines,
        tally.lines as f64 / secs.max(1e-9),
        tally.events,
        tally.other,
        tally.bad,
        sink.detect
            .as_ref()
            .map(|d| format!(", {} alert records", d.alerts))
            .unwrap_or_default(),
        stored
            .map(|c| format!(", {} stored, {} not stored", c.stored, c.not_stored))
            .unwrap_or_default(),
    );
    for s in &tally.shown {
        eprintln!("  unreadable: {s}");
    }
    if tally.bad > tally.shown.len() as u64 {
        eprintln!("  … and {} more", tally.bad - tally.shown.len() as u64);
    }
    if tally.lines > 0 && tally.events == 0 {
        log::warn!(
            "no line of {what} was a {:?} firewall line; is --format right?",
            format
        );
    }
    Ok(())
}

/// Interface indexes of ingested logs, apart from live and replayed ones.
const IFINDEX_BASE: u32 = 2_000_000;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zones_parse() {
        assert_eq!(parse_tz("utc").unwrap().local_minus_utc(), 0);
        assert_eq!(parse_tz("+01:00").unwrap().local_minus_utc(), 3600);
        assert_eq!(parse_tz("-05:30").unwrap().local_minus_utc(), -19800);
        assert!(parse_tz("local").is_ok());
        for bad in ["+25:00", "CET", "1", "+01:99"] {
            assert!(parse_tz(bad).is_err(), "{bad}");
        }
    }
}
