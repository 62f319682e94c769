//! The lab's Mpps packet generator: the `fireplot_flood` XDP program run
//! with BPF_PROG_TEST_RUN in live-frame mode (Linux ≥ 5.18) on an
//! interface of the namespace the caller is in. The kernel builds each
//! frame from a template (new source address and ports from a seed and a
//! per-CPU sequence, checksums fixed) and transmits it with XDP_TX: the
//! frames leave the interface as a NIC would send them, without a socket
//! or a userspace copy per packet.

use std::{
    net::IpAddr,
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};
use aya::{
    maps::Array,
    programs::{TestRun, TestRunAttrs, TestRunOptions},
};
use fireplot_common::flood::{FloodConfig, TEMPLATE_MAX};

use crate::{
    lab_ebpf::{LabPrograms, MAP_FLOOD, PROG_FLOOD},
    packets::{v4_vlan, v6_vlan, Vlan, L4},
};

/// Frames the kernel runs per batch before it flushes them out.
const BATCH: u32 = 64;

/// One kind of traffic: a template and what varies in it.
#[derive(Clone, Debug)]
pub struct Spec {
    /// The template's source; its lowest `src_bits` bits (IPv6: of bytes
    /// 4..8) are drawn per frame.
    pub src: IpAddr,
    pub src_bits: u8,
    pub dst: IpAddr,
    /// 6 (TCP SYN), 17 (UDP) or 1/58 (ICMP echo request).
    pub proto: u8,
    pub dport: u16,
    /// Destination ports `dport .. dport + span` (0: just `dport`).
    pub dport_span: u16,
}

impl Spec {
    fn frame(&self, src_mac: [u8; 6], dst_mac: [u8; 6]) -> Result<Vec<u8>> {
        let payload = [0u8; 32];
        let (l4, payload): (L4, &[u8]) = match self.proto {
            6 => (
                L4::Tcp {
                    sport: 40000,
                    dport: self.dport,
                    flags: 0x02,
                },
                &[],
            ),
            17 => (
                L4::Udp {
                    sport: 40000,
                    dport: self.dport,
                },
                &payload,
            ),
            1 | 58 => (
                L4::Icmp {
                    ty: if self.proto == 1 { 8 } else { 128 },
                    code: 0,
                    rest: [0, 1, 0, 1],
                },
                &payload,
            ),
            p => bail!("the generator sends TCP, UDP or ICMP, not protocol {p}"),
        };
        let mut f = match (self.src, self.dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                v4_vlan(Vlan::None, s.octets(), d.octets(), l4, payload)
            }
            (IpAddr::V6(s), IpAddr::V6(d)) => {
                v6_vlan(Vlan::None, s.octets(), d.octets(), l4, payload)
            }
            _ => bail!("source and destination of one family"),
        };
        f[0..6].copy_from_slice(&dst_mac);
        f[6..12].copy_from_slice(&src_mac);
        Ok(f)
    }

    fn config(&self, seed: u64, frame: &[u8]) -> FloodConfig {
        let mut c = FloodConfig {
            seed,
            src_bits: self.src_bits.min(32),
            family: if self.src.is_ipv4() { 4 } else { 6 },
            proto: self.proto,
            dport_base: self.dport,
            dport_span: self.dport_span,
            ..FloodConfig::default()
        };
        let n = frame.len().min(TEMPLATE_MAX);
        c.template[..n].copy_from_slice(&frame[..n]);
        c.template_len = n as u32;
        c
    }
}

/// What a `send` did.
#[derive(Clone, Debug, Default)]
pub struct Report {
    /// Frames built and handed to XDP_TX, per spec.
    pub runs: Vec<u64>,
    pub secs: f64,
}

impl Report {
    pub fn total(&self) -> u64 {
        self.runs.iter().sum()
    }
}

/// The loaded generator, bound to one interface.
pub struct Generator {
    programs: LabPrograms,
    ifindex: u32,
    frames: Vec<(FloodConfig, Vec<u8>)>,
}

/// Parses "aa:bb:cc:dd:ee:ff".
pub fn parse_mac(s: &str) -> Result<[u8; 6]> {
    let parts: Vec<u8> = s
        .trim()
        .split(':')
        .map(|p| u8::from_str_radix(p, 16))
        .collect::<Result<_, _>>()
        .with_context(|| format!("`{s}` is not a MAC address"))?;
    parts
        .try_into()
        .map_err(|_| anyhow::anyhow!("`{s}` is not a MAC address"))
}

impl Generator {
    /// Loads the program for `iface` (in this namespace), sending to
    /// `dst_mac`, with one template per spec (mixed in proportion by
    /// `send`). `seed` makes the addresses reproducible.
    pub fn new(iface: &str, dst_mac: [u8; 6], specs: &[Spec], seed: u64) -> Result<Generator> {
        if specs.is_empty() {
            bail!("nothing to send: no spec");
        }
        let src_mac = parse_mac(
            &std::fs::read_to_string(format!("/sys/class/net/{iface}/address"))
                .with_context(|| format!("no interface `{iface}` here"))?,
        )?;
        let ifindex = std::fs::read_to_string(format!("/sys/class/net/{iface}/ifindex"))?
            .trim()
            .parse()?;
        let programs = LabPrograms::load()?;
        let mut frames = Vec::new();
        for (i, s) in specs.iter().enumerate() {
            let frame = s.frame(src_mac, dst_mac)?;
            frames.push((
                s.config(seed.wrapping_add(i as u64 * 0x1000_0000), &frame),
                frame,
            ));
        }
        Ok(Generator {
            programs,
            ifindex,
            frames,
        })
    }

    fn run(&mut self, spec: usize, count: u32) -> Result<()> {
        let (cfg, frame) = &self.frames[spec];
        let mut map = Array::<_, FloodConfig>::try_from(
            self.programs
                .ebpf_mut()
                .map_mut(MAP_FLOOD)
                .context("no FLOOD map")?,
        )?;
        map.set(0, *cfg, 0)?;
        // struct xdp_md: data, data_end, data_meta, ingress_ifindex,
        // rx_queue_index, egress_ifindex.
        let md: [u32; 6] = [0, frame.len() as u32, 0, self.ifindex, 0, 0];
        let ctx: Vec<u8> = md.iter().flat_map(|w| w.to_ne_bytes()).collect();
        let prog = self.programs.program(PROG_FLOOD)?;
        let mut opts = TestRunOptions::new();
        opts.data_in = Some(frame);
        opts.ctx_in = Some(&ctx);
        opts.repeat = count;
        opts.attrs = TestRunAttrs::new().xdp_live_frames(BATCH);
        prog.test_run(opts)
            .context("live-frame test_run (needs Linux ≥ 5.18 and root)")?;
        Ok(())
    }

    /// Sends `count` frames, the specs in turn (equal shares), as fast as
    /// the kernel can, or at `rate` frames/s (paced over 100 ms windows).
    /// Stops early at `deadline`.
    pub fn send(&mut self, count: u64, rate: Option<f64>, deadline: Duration) -> Result<Report> {
        let n = self.frames.len();
        let mut report = Report {
            runs: vec![0; n],
            secs: 0.0,
        };
        let start = Instant::now();
        // Each BPF_PROG_TEST_RUN call costs a fixed ~25 ms here (its page
        // pool is set up and torn down), so frames go in large calls: at a
        // set rate, a tenth of a second's worth at full speed, then a
        // pause (the rate holds over 100 ms windows, not per packet).
        let slice = match rate {
            Some(r) if r > 0.0 => ((r / 10.0).ceil() as u64).clamp(1, 1 << 20),
            _ => 1 << 16,
        };
        // Every spec gets its share even of a small count.
        let slice = slice.min(count.div_ceil(n as u64).max(1));
        let mut sent = 0u64;
        let mut turn = 0usize;
        while sent < count && start.elapsed() < deadline {
            let chunk = slice.min(count - sent);
            self.run(turn % n, chunk as u32)?;
            report.runs[turn % n] += chunk;
            turn += 1;
            sent += chunk;
            if let Some(r) = rate.filter(|r| *r > 0.0) {
                let due = Duration::from_secs_f64(sent as f64 / r);
                let now = start.elapsed();
                if due > now {
                    std::thread::sleep(due - now);
                }
            }
        }
        report.secs = start.elapsed().as_secs_f64();
        Ok(report)
    }
}
