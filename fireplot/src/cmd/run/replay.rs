//! `fireplot replay --pcap FILE`: a capture through the live sensor's own
//! kernel programs. Every frame, in capture order, goes to the XDP ingress
//! or the TC egress program with BPF_PROG_TEST_RUN, the kernel's clocks set
//! to the frame's capture time, so flow state, timeouts, the rate limiter
//! and the services behave as they would have on the wire. Events go to
//! the same sinks as `run`'s.

use std::{path::PathBuf, time::Instant};

use clap::Args;

use super::{
    sinks::{db_path, EventSink},
    stats::StatsWriter,
    ClassifierArgs, OutputArgs,
};
use crate::{
    capture::Capture,
    cmd::detect::DetectArgs,
    sensor::Sensor,
    store::{in_prefix, writer::StoreWriter, Store},
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
    /// The capture: pcap or pcapng (tcpdump, tshark, dumpcap), Ethernet,
    /// raw IP, Linux cooked (v1, v2) or BSD loopback frames.
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

/// Why a frame went where it went.
#[derive(Debug, Default, Clone, Copy)]
pub struct Directions {
    pub by_inside: u64,
    pub by_mac: u64,
    pub by_cooked: u64,
    pub inbound: u64,
}

/// The frame's source address (Ethernet frame, optionally one VLAN tag).
fn source_addr(frame: &[u8]) -> Option<std::net::IpAddr> {
    let mut off = 12;
    let mut ethertype = u16::from_be_bytes(frame.get(off..off + 2)?.try_into().ok()?);
    if matches!(ethertype, 0x8100 | 0x88a8) {
        off += 4;
        ethertype = u16::from_be_bytes(frame.get(off..off + 2)?.try_into().ok()?);
    }
    let ip = frame.get(off + 2..)?;
    match ethertype {
        0x0800 => {
            let a: [u8; 4] = ip.get(12..16)?.try_into().ok()?;
            Some(a.into())
        }
        0x86dd => {
            let a: [u8; 16] = ip.get(8..24)?.try_into().ok()?;
            Some(a.into())
        }
        _ => None,
    }
}

/// The longest frame BPF_PROG_TEST_RUN hands an XDP program whole (a
/// page less its headroom and tail; past it the kernel splits the frame
/// into fragments the classifier does not read).
const TEST_RUN_MAX: usize = 3_400;

/// Makes a captured frame what the wire had, as far as the classifier
/// reads it: a frame the capture cut short (snap length) is padded back to
/// its length, and one longer than BPF_PROG_TEST_RUN takes (coalesced by
/// GRO or offloads before the capture) is cut to fit with its IP length
/// fields rewritten, headers intact. Returns the length on the wire when
/// the frame was changed.
fn fit_frame(data: &mut Vec<u8>, orig_len: usize) -> Option<usize> {
    let want = orig_len.max(data.len());
    if want == data.len() && want <= TEST_RUN_MAX {
        return None;
    }
    let target = want.min(TEST_RUN_MAX);
    data.resize(target, 0);
    if target < want {
        // The IP header's own length, and the IPv4 header checksum with it.
        let mut off = 12;
        let mut ethertype = u16::from_be_bytes([data[off], data[off + 1]]);
        if matches!(ethertype, 0x8100 | 0x88a8) && data.len() >= off + 6 {
            off += 4;
            ethertype = u16::from_be_bytes([data[off], data[off + 1]]);
        }
        let l3 = off + 2;
        match ethertype {
            0x0800 if data.len() >= l3 + 20 => {
                let ihl = ((data[l3] & 0x0f) as usize * 4).clamp(20, 60);
                let tot = (target - l3) as u16;
                data[l3 + 2..l3 + 4].copy_from_slice(&tot.to_be_bytes());
                data[l3 + 10..l3 + 12].copy_from_slice(&[0, 0]);
                let end = (l3 + ihl).min(data.len());
                let mut sum: u32 = data[l3..end]
                    .chunks(2)
                    .map(|c| u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]) as u32)
                    .sum();
                while sum > 0xffff {
                    sum = (sum & 0xffff) + (sum >> 16);
                }
                data[l3 + 10..l3 + 12].copy_from_slice(&(!(sum as u16)).to_be_bytes());
            }
            0x86dd if data.len() >= l3 + 40 => {
                let pl = (target - l3 - 40) as u16;
                data[l3 + 4..l3 + 6].copy_from_slice(&pl.to_be_bytes());
            }
            _ => {}
        }
    }
    Some(want)
}

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
    // Capture interfaces are numbered apart from live ones.
    const IFINDEX_BASE: u32 = 1_000_000;
    if let Some(path) = db_path.clone() {
        Store::open(&path)?;
        log::info!("storing history in {}", path.display());
        sink.store = Some(StoreWriter::start(path, None, None));
        sink.store_origins();
    }
    sink.ifindex = Some(IFINDEX_BASE);
    sink.start_publishing(&args.output.fleet, None).await?;
    let mut ring = sensor.take_events()?;
    // Per-CPU state (flow cache, rate buckets) must be one CPU's throughout.
    pin_to_current_cpu();

    let started = Instant::now();
    let mut dirs = Directions::default();
    let mut failure: Option<anyhow::Error> = None;
    let mut fitted = 0u64;
    let mut last_ts = 0u64;
    let mut frames = 0u64;
    let mut agg_sec = 0u64;
    while let Some(next) = capture.next() {
        let frame = match next {
            Ok(f) => f,
            Err(e) => {
                failure = Some(e.into());
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
        let egress = if source_addr(&frame.data)
            .is_some_and(|a| args.inside.iter().any(|c| in_prefix(a, c.0, c.1)))
        {
            dirs.by_inside += 1;
            true
        } else if args.router_mac.is_some() && frame.src_mac == args.router_mac {
            dirs.by_mac += 1;
            true
        } else if frame.outgoing == Some(true) {
            dirs.by_cooked += 1;
            true
        } else {
            dirs.inbound += 1;
            false
        };
        sink.ifindex = Some(IFINDEX_BASE + frame.iface);
        let mut data = frame.data;
        let wire = fit_frame(&mut data, frame.orig_len);
        if wire.is_some() {
            fitted += 1;
        }
        sink.pkt_len = wire.map(|w| w.min(u16::MAX as usize) as u16);
        if let Err(e) = sensor.replay_frame(egress, &data, ts) {
            failure =
                Some(anyhow::Error::new(e).context(format!("frame {} of the capture", frames + 1)));
            break;
        }
        frames += 1;
        while let Some(item) = ring.next() {
            sink.record(&item, 0);
        }
        // Aggregates of the capture's seconds that are over (its clock
        // stands for the kernel's).
        let sec = ts / 1_000_000_000;
        if sec > agg_sec + 1 {
            agg_sec = sec;
            take_aggregates(&mut sensor, &mut sink, Some(sec - 1));
        }
        sink.store_batch(false);
    }
    take_aggregates(&mut sensor, &mut sink, None);
    let secs = started.elapsed().as_secs_f64();
    sink.finish();
    log::info!(
        "replay: {frames} frames in {secs:.2} s ({:.0} frames/s), {fitted} cut or padded to their wire length, \
         {} skipped (link types fireplot does not read); \
         to egress: {} by --inside, {} by --router-mac, {} marked outgoing by the capture; {} inbound (XDP)",
        frames as f64 / secs.max(1e-9),
        capture.skipped,
        dirs.by_inside,
        dirs.by_mac,
        dirs.by_cooked,
        dirs.inbound
    );
    if let Some(p) = &sink.publish {
        // Named in the last batches (the collector keeps the names).
        for (id, name) in &capture.seen {
            p.set_interface(IFINDEX_BASE + id, &format!("{label}:{name}"));
        }
    }
    stats.write(&sensor, &label, started, &sink);
    sink.stop_publishing().await;
    if let Some(w) = sink.store.take() {
        w.close();
    }
    if let Some(path) = db_path {
        let s = Store::open(&path)?;
        for (id, name) in &capture.seen {
            s.set_interface(IFINDEX_BASE + id, &format!("{label}:{name}"))?;
        }
    }
    if frames > 0 && dirs.by_inside + dirs.by_mac + dirs.by_cooked == 0 {
        log::warn!(
            "no frame went to egress: every reply in the capture was judged unsolicited. \
             Give --inside (or --router-mac) if the capture holds both directions"
        );
    }
    match failure {
        Some(e) => Err(e.context(format!(
            "the {frames} frames before it were replayed and their events kept"
        ))),
        None => Ok(()),
    }
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
    fn macs_and_sources_parse() {
        assert_eq!(
            parse_mac("02:00:5e:10:00:01").unwrap(),
            [2, 0, 0x5e, 0x10, 0, 1]
        );
        assert_eq!(parse_mac("02-00-5E-10-00-01").unwrap()[2], 0x5e);
        for bad in ["02:00:5e:10:00", "zz:00:5e:10:00:01", "0200.5e10.0001", ""] {
            assert!(parse_mac(bad).is_err(), "{bad}");
        }
        let mut f = vec![0u8; 12];
        f.extend_from_slice(&[0x81, 0, 0, 5, 0x08, 0]);
        let mut ip = vec![0x45u8; 20];
        ip[12..16].copy_from_slice(&[198, 18, 0, 9]);
        f.extend_from_slice(&ip);
        assert_eq!(source_addr(&f), Some("198.18.0.9".parse().unwrap()));
        assert_eq!(source_addr(&f[..20]), None);
    }

    fn v4_frame(len: usize) -> Vec<u8> {
        let mut f = vec![2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2, 0x08, 0];
        let mut ip = vec![
            0x45u8, 0, 0, 0, 0, 1, 0x40, 0, 64, 6, 0, 0, 198, 18, 0, 9, 198, 18, 1, 2,
        ];
        ip[2..4].copy_from_slice(&((len - 14) as u16).to_be_bytes());
        f.extend_from_slice(&ip);
        f.extend_from_slice(&[
            0x9c, 0x40, 0, 80, 0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x10, 4, 0, 0, 0, 0, 0,
        ]);
        f.resize(len, 0xab);
        f
    }

    fn checksum_ok(h: &[u8]) -> bool {
        let mut sum: u32 = h
            .chunks(2)
            .map(|c| u16::from_be_bytes([c[0], c[1]]) as u32)
            .sum();
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        sum == 0xffff
    }

    #[test]
    fn frames_are_fitted_to_what_the_wire_had() {
        // Whole and small: untouched.
        let mut f = v4_frame(60);
        assert_eq!(fit_frame(&mut f, 60), None);
        assert_eq!(f, v4_frame(60));
        // Cut by a snap length of 54: padded back to its 60 bytes.
        let mut f = v4_frame(60)[..54].to_vec();
        assert_eq!(fit_frame(&mut f, 60), Some(60));
        assert_eq!(f.len(), 60);
        assert_eq!(&f[..54], &v4_frame(60)[..54]);
        // Coalesced to 64 KB (GRO): cut to fit, its IP length and checksum rewritten.
        let mut f = v4_frame(60_000);
        assert_eq!(fit_frame(&mut f, 60_000), Some(60_000));
        assert_eq!(f.len(), TEST_RUN_MAX);
        assert_eq!(
            u16::from_be_bytes([f[16], f[17]]) as usize,
            TEST_RUN_MAX - 14
        );
        assert!(checksum_ok(&f[14..34]));
        assert_eq!(
            &f[34..54],
            &v4_frame(60)[34..54],
            "the TCP header is intact"
        );
        // IPv6: the payload length.
        let mut f6 = vec![2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2, 0x86, 0xdd, 0x60];
        f6.resize(9_000, 0);
        assert_eq!(fit_frame(&mut f6, 9_000), Some(9_000));
        assert_eq!(
            u16::from_be_bytes([f6[18], f6[19]]) as usize,
            TEST_RUN_MAX - 14 - 40
        );
    }
}
