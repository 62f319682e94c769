//! `fireplot replay --pcap FILE`: a capture through the live sensor's own
//! kernel programs. Every frame, in capture order, goes to the XDP ingress
//! or the TC egress program with BPF_PROG_TEST_RUN, the kernel's clocks set
//! to the frame's capture time, so flow state, timeouts, the rate limiter
//! and the services behave as they would have on the wire. Events go to
//! the same sinks as `run`'s. The capture is read, and its frames fitted
//! and directed, by [`crate::input`]; this file holds the arguments and
//! the wiring.

use std::{path::PathBuf, time::Instant};

use aya::maps::{MapData, RingBuf};

use clap::Args;

use super::{
    kept::Kept,
    sinks::{db_path, EventSink},
    stats::StatsWriter,
    ClassifierArgs, OutputArgs,
};
use crate::{
    cmd::{
        args::{FileInputArgs, ProgressArgs},
        detect::DetectArgs,
    },
    input::{
        frame::{fit_frame, Directions},
        Capture,
    },
    progress::{Progress, Unit},
    sensor::Sensor,
    store::{in_prefix, Store},
    summary::CaptureCounts,
    units::Cidr,
};

/// Options of `fireplot replay`.
#[derive(Args, Debug, Clone)]
#[command(
    after_help = "Direction: a frame goes to the egress program (it is the inside's) when \
its source address is in an --inside network, or its source MAC is --router-mac, or a Linux \
cooked capture (tcpdump -i any) marks it outgoing; every other frame is inbound (XDP). With \
none of these, everything is inbound: nothing is a reply, so give --inside for captures that \
hold both directions.\n\nExample:\n  tcpdump -i wan0 -w wan.pcap\n  fireplot replay --pcap wan.pcap \
--inside 198.18.1.0/24 --db replay.db --alerts -"
)]
pub struct ReplayArgs {
    /// The capture: pcap (µs or ns) or pcapng (tcpdump, tshark, dumpcap),
    /// any snap length; Ethernet (802.1Q and QinQ tags too), raw IP, Linux
    /// cooked (v1, v2: tcpdump -i any) or BSD loopback frames.
    #[arg(long, value_name = "FILE")]
    pub pcap: PathBuf,

    /// The inside's addresses: frames from them go to the egress program.
    /// Repeatable (e.g. --inside 192.0.2.0/24 --inside 2001:db8:1::/48).
    #[arg(long, value_name = "CIDR")]
    pub inside: Vec<Cidr>,

    /// The router's MAC address on the captured link: frames from it go to
    /// the egress program.
    #[arg(long, value_name = "MAC", value_parser = parse_mac)]
    pub router_mac: Option<[u8; 6]>,

    #[command(flatten)]
    pub classifier: ClassifierArgs,

    #[command(flatten)]
    pub output: OutputArgs,

    #[command(flatten)]
    pub detect: DetectArgs,

    #[command(flatten)]
    pub file_input: FileInputArgs,

    #[command(flatten)]
    pub progress: ProgressArgs,

    /// The summary as a JSON line instead of text.
    #[arg(long)]
    pub stats_json: bool,

    /// Write the summary to FILE instead of stderr.
    #[arg(long, value_name = "FILE")]
    pub stats_out: Option<PathBuf>,
}

fn parse_mac(s: &str) -> Result<[u8; 6], String> {
    let parts: Vec<&str> = s.split([':', '-']).collect();
    let err = || format!("`{s}` is not a MAC address (e.g. 02:00:5e:10:00:01)");
    if parts.len() != 6 {
        return Err(err());
    }
    let mut mac = [0u8; 6];
    for (m, p) in mac.iter_mut().zip(parts) {
        if p.len() != 2 {
            return Err(err());
        }
        *m = u8::from_str_radix(p, 16).map_err(|_| err())?;
    }
    Ok(mac)
}

/// Capture interfaces are numbered apart from live ones.
const IFINDEX_BASE: u32 = 1_000_000;

/// Replays the capture; the summary at the end is `run`'s.
pub async fn replay(args: ReplayArgs) -> anyhow::Result<()> {
    let limits = args.classifier.limits();
    // One CPU runs every frame: its bucket holds the whole rate limit.
    limits.validate(1)?;
    let detect_cfg = args.detect.load()?;
    let mut capture = Capture::open(&args.pcap)?;
    let label = format!(
        "pcap:{}",
        args.pcap
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    );
    let mut stats = StatsWriter::open(args.stats_out.as_deref(), args.stats_json)?;
    let mut sink = EventSink::with_outputs(&args.output, detect_cfg)?;
    sink.iface = Some(label.clone());
    if args.output.none() {
        log::warn!("none of --events-out, --db, --alerts: the replay only counts");
    }
    let mut sensor = Sensor::load(&args.classifier.load_options())?;
    sensor.cpus = 1;
    sensor.configure(&limits, &args.classifier.services)?;
    let db_path = db_path(args.output.db.as_deref());
    if let Some(path) = db_path.clone() {
        crate::store::open_waiting(&path)?;
        log::info!("storing history in {}", path.display());
        sink.store = Some(args.file_input.store_writer(path));
        sink.store_origins();
    }
    sink.ifindex = Some(IFINDEX_BASE);
    let wait = Some(args.file_input.store_wait.0);
    sink.start_publishing(&args.output.fleet, &[], wait).await?;
    let mut ring = sensor.take_events()?;

    let started = Instant::now();
    // The frames wait for the store and the fleet: this thread leaves the
    // runtime's work to the others meanwhile (the publisher is a task).
    let (run, secs) = tokio::task::block_in_place(|| {
        // Per-CPU state (flow cache, rate buckets) must be one CPU's throughout.
        pin_to_current_cpu();
        let run = replay_frames(&mut capture, &mut sensor, &mut ring, &mut sink, &args);
        let secs = started.elapsed().as_secs_f64();
        sink.finish();
        (run, secs)
    });
    let Replayed {
        mut counts,
        dirs,
        failure,
        stopped,
    } = run;
    counts.frames = capture.read;
    counts.not_read = capture.skipped;
    let frames = counts.replayed;
    log::info!(
        "replay: {frames} frames in {secs:.2} s ({:.0} frames/s); {} cut short by the capture's snap length \
         (classified on what it held), {} longer than a test run takes (cut to fit), \
         {} skipped (link types fireplot does not read); \
         to egress: {} by --inside, {} by --router-mac, {} marked outgoing by the capture; {} inbound (XDP)",
        frames as f64 / secs.max(1e-9),
        counts.cut,
        counts.too_long,
        counts.not_read,
        dirs.by_inside,
        dirs.by_mac,
        dirs.by_cooked,
        dirs.inbound
    );
    stats.capture = Some(counts);
    if let Some(p) = &sink.publish {
        // Named in the last batches (the collector keeps the names).
        for (id, name) in capture.interfaces() {
            p.set_interface(IFINDEX_BASE + id, &format!("{label}:{name}"));
        }
    }
    stats.write(&sensor, &label, started, &sink);
    let fleet = sink.stop_publishing().await;
    let handed =
        sink.counts.events_received - sink.counts.decode_errors + sink.counts.aggregates_received;
    let stored = sink.store.take().map(|w| w.close());
    if let Some(path) = db_path {
        // The names are a nicety: a full disk must not hide the counts.
        let named = Store::open(&path).and_then(|s| {
            capture.interfaces().iter().try_for_each(|(id, name)| {
                s.set_interface(IFINDEX_BASE + id, &format!("{label}:{name}"))
            })
        });
        if let Err(e) = named {
            log::warn!(
                "the interfaces' names are not stored: {}",
                crate::error_chain(&e)
            );
        }
    }
    if frames > 0 && dirs.to_egress() == 0 {
        log::warn!(
            "no frame went to egress: every reply in the capture was judged unsolicited. \
             Give --inside (or --router-mac) if the capture holds both directions"
        );
    }
    if let Some(e) = failure {
        return Err(e.context(format!(
            "the {frames} frames before it were replayed and their events kept"
        )));
    }
    Kept {
        store: stored,
        fleet,
    }
    .check(handed, stopped.as_deref())
}

/// What the frames of a capture did.
struct Replayed {
    /// Frames replayed, cut and too long (the file's counts are the
    /// capture's).
    counts: CaptureCounts,
    dirs: Directions,
    /// What ended the capture early: a damaged file, or a frame the
    /// kernel refused.
    failure: Option<anyhow::Error>,
    /// Why reading stopped early: the history or the fleet could not take
    /// more for the whole `--store-wait`.
    stopped: Option<String>,
}

/// Every frame of the capture through the kernel programs, in order, on
/// the capture's clock; events and aggregates to the sink as they come.
fn replay_frames(
    capture: &mut Capture,
    sensor: &mut Sensor,
    ring: &mut RingBuf<MapData>,
    sink: &mut EventSink,
    args: &ReplayArgs,
) -> Replayed {
    let mut run = Replayed {
        counts: CaptureCounts::default(),
        dirs: Directions::default(),
        failure: None,
        stopped: None,
    };
    let is_inside = |a| args.inside.iter().any(|c| in_prefix(a, c.0, c.1));
    let mut last_ts = 0u64;
    let mut agg_sec = 0u64;
    let size = std::fs::metadata(&args.pcap).ok().map(|m| m.len());
    let mut progress = Progress::start("replay", Unit::Bytes, size, args.progress.quiet);
    // Where the reader is, estimated from the frames (pcap's 16-byte
    // record header each): the capture's reader does not say.
    let mut position = 24u64;
    while let Some(next) = capture.next() {
        if let Some(why) = sink.failure() {
            run.stopped = Some(format!(
                "reading stopped after frame {}: {why}",
                capture.read
            ));
            break;
        }
        let frame = match next {
            Ok(f) => f,
            Err(e) => {
                run.failure = Some(e.into());
                break;
            }
        };
        // A frame without a time (pcapng simple packets) keeps the last one.
        let ts = if frame.ts_ns == 0 {
            last_ts
        } else {
            frame.ts_ns
        };
        last_ts = ts;
        position += 16 + frame.data.len() as u64;
        progress.set(position.min(size.unwrap_or(u64::MAX).saturating_sub(1)));
        let egress = run.dirs.egress(&frame, is_inside, args.router_mac);
        sink.ifindex = Some(IFINDEX_BASE + frame.iface);
        // Events say the wire's length, whatever the test run was given.
        let wire = frame.orig_len.max(frame.data.len());
        sink.pkt_len = Some(wire.min(u16::MAX as usize) as u16);
        let mut data = frame.data;
        let fit = fit_frame(&mut data, frame.orig_len);
        run.counts.cut += u64::from(fit.cut);
        run.counts.too_long += u64::from(fit.too_long);
        if let Err(e) = sensor.replay_frame(egress, &data, ts) {
            run.failure = Some(
                anyhow::Error::new(e).context(format!("frame {} of the capture", capture.read)),
            );
            break;
        }
        run.counts.replayed += 1;
        while let Some(item) = ring.next() {
            sink.record(&item, 0);
        }
        // Aggregates of the capture's seconds that are over (its clock
        // stands for the kernel's).
        let sec = ts / 1_000_000_000;
        if sec > agg_sec + 1 {
            agg_sec = sec;
            take_aggregates(sensor, sink, Some(sec - 1));
        }
        sink.store_batch(false);
    }
    take_aggregates(sensor, sink, None);
    progress.finish();
    run
}

fn take_aggregates(sensor: &mut Sensor, sink: &mut EventSink, before_sec: Option<u64>) {
    match sensor.take_aggregates(before_sec) {
        Ok(aggs) => sink.aggregates(&aggs, 0),
        Err(e) => log::error!("cannot read the kernel's aggregates: {e}"),
    }
}

fn pin_to_current_cpu() {
    // SAFETY: plain syscalls on this thread with a zeroed, then filled, set.
    unsafe {
        let cpu = libc::sched_getcpu();
        if cpu < 0 {
            return;
        }
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu as usize, &mut set);
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            log::warn!("cannot pin the replay to one CPU; per-CPU state may split");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macs_parse() {
        assert_eq!(
            parse_mac("02:00:5e:10:00:01").unwrap(),
            [2, 0, 0x5e, 0x10, 0, 1]
        );
        assert_eq!(parse_mac("02-00-5E-10-00-01").unwrap()[2], 0x5e);
        for bad in ["02:00:5e:10:00", "zz:00:5e:10:00:01", "0200.5e10.0001", ""] {
            assert!(parse_mac(bad).is_err(), "{bad}");
        }
    }
}
