//! Loading, configuring and attaching the kernel programs, and reading what
//! they produce: the event ring buffer and the per-CPU counters.
//!
//! Needs Linux ≥ 5.9 for XDP bpf_link and `bpf_jiffies64`, ≥ 5.8 for
//! BPF_MAP_TYPE_RINGBUF; TC egress uses TCX links on ≥ 6.6 and a clsact
//! qdisc before that.

mod aggregates;
pub mod clock;
pub mod limits;
pub mod service;
pub mod stats;

use std::{io, mem::size_of};

use aya::{
    maps::{Array, MapData, RingBuf},
    programs::{
        tc::{self, SchedClassifier, TcAttachType},
        ProgramError, TestRun, TestRunOptions, Xdp, XdpMode,
    },
    Ebpf, EbpfError, EbpfLoader,
};
use fireplot_common::config::{service_bit, Config, SERVICE_WORDS};
use thiserror::Error;

pub use clock::Clock;
pub use limits::{Limits, LimitsError};
pub use service::Service;
pub use stats::Counters;

/// The production eBPF object (`fireplot-ebpf`'s `fireplot` bin) built by
/// `cargo xtask build`: the sensor's programs and maps only (the lab's
/// generator and baseline are in another object, see `fireplot-tests`).
/// Empty if it was not built.
pub static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/fireplot.bpf.o"));

/// Names of the programs in the object.
pub const PROG_INGRESS: &str = "fireplot_ingress";
pub const PROG_EGRESS: &str = "fireplot_egress";
pub const PROG_CLOCK: &str = "fireplot_clock";

/// Errors of loading and attaching the sensor.
#[derive(Debug, Error)]
pub enum Error {
    /// The binary was built without the eBPF object.
    #[error("this fireplot binary has no eBPF object built in; build it with `cargo xtask build` (or run it with `cargo xtask run -- ...`)")]
    ObjectMissing,
    /// Not root and without the capabilities eBPF needs.
    #[error("fireplot needs root, or CAP_BPF + CAP_NET_ADMIN + CAP_PERFMON, to load eBPF programs ({detail})")]
    NotPrivileged { detail: String },
    /// The interface does not exist.
    #[error("unknown network interface `{iface}` (see `ip link`)")]
    UnknownInterface { iface: String },
    /// Another XDP program is attached; fireplot never replaces it.
    #[error("another XDP program is already attached to `{iface}`; fireplot will not replace it. Inspect it with `ip link show dev {iface}` / `bpftool net`, detach it (`ip link set dev {iface} xdp off`) if it is not needed, or attach fireplot elsewhere")]
    XdpBusy { iface: String },
    /// The interface's driver has no native XDP and native mode was asked for.
    #[error("`{iface}` does not support native XDP ({source}); use --xdp-mode skb or auto")]
    NativeUnsupported {
        iface: String,
        #[source]
        source: ProgramError,
    },
    /// The kernel verifier rejected a program.
    #[error("the kernel verifier rejected `{program}`: {io_error}\n--- verifier log (last lines) ---\n{log_tail}")]
    Verifier {
        program: &'static str,
        io_error: io::Error,
        log_tail: String,
    },
    /// The object could not be parsed or its maps created.
    #[error("failed to load the eBPF object")]
    Load(#[source] EbpfError),
    /// An operation on a program failed.
    #[error("failed to {action} `{program}`")]
    Program {
        action: &'static str,
        program: &'static str,
        #[source]
        source: ProgramError,
    },
    /// A map or program is not in the object (a build mismatch).
    #[error("`{name}` is not in the eBPF object (a binary built from another version?)")]
    Missing { name: &'static str },
    /// An operation on a map failed.
    #[error("map `{name}`")]
    Map {
        name: &'static str,
        #[source]
        source: aya::maps::MapError,
    },
    /// A limit or timeout cannot be used.
    #[error(transparent)]
    Limits(#[from] LimitsError),
    /// The CPUs that can run XDP could not be read.
    #[error("cannot read the online CPUs from {path}")]
    Cpus {
        path: &'static str,
        #[source]
        source: io::Error,
    },
    /// Reading the clocks failed.
    #[error("failed to calibrate the kernel clock")]
    Clock(#[source] io::Error),
}

/// Sizes fixed at load time.
#[derive(Clone, Debug)]
pub struct LoadOptions {
    /// Ring buffer size in bytes (a power of two, multiple of the page size).
    pub ring_bytes: u32,
    /// Entries of the IPv4 flow table (the IPv6 table gets half).
    pub flow_table_size: u32,
    /// Entries of the aggregate table (source prefix × port × second);
    /// the table without sources gets a quarter.
    pub aggregate_entries: u32,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            ring_bytes: 16 * 1024 * 1024,
            flow_table_size: 262_144,
            aggregate_entries: 65_536,
        }
    }
}

/// How XDP is attached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum XdpModeChoice {
    /// Native (driver) mode, falling back to generic (skb) mode.
    Auto,
    /// Native (driver) mode only.
    Native,
    /// Generic (skb) mode.
    Skb,
}

/// The loaded sensor.
pub struct Sensor {
    ebpf: Ebpf,
    /// Kernel clock facts: HZ and the monotonic→wall offset.
    pub clock: Clock,
    /// CPUs that can run the XDP program (the rate limit is split across them).
    pub cpus: u32,
    attached_xdp: Option<&'static str>,
    /// The configuration last written to `CONFIG`.
    config: Config,
}

/// Number of online CPUs: each runs XDP for the queues it serves.
pub fn online_cpus() -> Result<u32, Error> {
    aya::util::online_cpus()
        .map(|c| c.len().max(1) as u32)
        .map_err(|(path, source)| Error::Cpus { path, source })
}

/// Checks root / capabilities before touching bpf(2), for a clear error.
pub fn check_privileges() -> Result<(), Error> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        return Ok(());
    }
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let cap_eff = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .unwrap_or(0);
    const CAP_NET_ADMIN: u64 = 12;
    const CAP_PERFMON: u64 = 38;
    const CAP_BPF: u64 = 39;
    let need = [CAP_BPF, CAP_NET_ADMIN, CAP_PERFMON];
    if need.iter().all(|c| cap_eff & (1 << c) != 0) {
        Ok(())
    } else {
        Err(Error::NotPrivileged {
            // SAFETY: geteuid has no preconditions.
            detail: format!("running as uid {} with capabilities {cap_eff:#x}", unsafe {
                libc::geteuid()
            }),
        })
    }
}

fn is_permission(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EPERM) | Some(libc::EACCES))
}

fn tail(log: &str, lines: usize) -> String {
    let all: Vec<&str> = log.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

fn load_error(program: &'static str, e: ProgramError) -> Error {
    match e {
        ProgramError::LoadError {
            io_error,
            verifier_log,
        } => {
            if is_permission(&io_error) && verifier_log.to_string().trim().is_empty() {
                return Error::NotPrivileged {
                    detail: io_error.to_string(),
                };
            }
            Error::Verifier {
                program,
                io_error,
                log_tail: tail(&verifier_log.to_string(), 25),
            }
        }
        source => Error::Program {
            action: "load",
            program,
            source,
        },
    }
}

fn syscall_errno(e: &ProgramError) -> Option<i32> {
    match e {
        ProgramError::SyscallError(s) => s.io_error.raw_os_error(),
        _ => None,
    }
}

impl Sensor {
    /// Loads the object and all its programs, measures the kernel's HZ and
    /// writes default limits. Attaches nothing.
    pub fn load(opts: &LoadOptions) -> Result<Sensor, Error> {
        if OBJECT.is_empty() {
            return Err(Error::ObjectMissing);
        }
        check_privileges()?;
        let mut ebpf =
            EbpfLoader::new()
                .map_max_entries("EVENTS", opts.ring_bytes)
                .map_max_entries("FLOWS_V4", opts.flow_table_size)
                .map_max_entries("FLOWS_V6", (opts.flow_table_size / 2).max(1024))
                .map_max_entries("AGGREGATES", opts.aggregate_entries.max(1))
                .map_max_entries("AGG_COARSE", (opts.aggregate_entries / 4).max(1))
                .load(OBJECT)
                .map_err(|e| match e {
                    EbpfError::MapError(aya::maps::MapError::CreateError {
                        ref io_error, ..
                    }) if is_permission(io_error) => Error::NotPrivileged {
                        detail: io_error.to_string(),
                    },
                    e => Error::Load(e),
                })?;
        for name in [PROG_INGRESS, PROG_CLOCK] {
            let prog: &mut Xdp = program(&mut ebpf, name)?;
            prog.load().map_err(|e| load_error(name, e))?;
        }
        let egress: &mut SchedClassifier = program(&mut ebpf, PROG_EGRESS)?;
        egress.load().map_err(|e| load_error(PROG_EGRESS, e))?;

        let mut sensor = Sensor {
            ebpf,
            clock: Clock::default(),
            cpus: online_cpus()?,
            attached_xdp: None,
            config: Config::default(),
        };
        sensor.clock = sensor.calibrate()?;
        sensor.configure(&Limits::default(), &[])?;
        Ok(sensor)
    }

    /// Measures HZ by sampling jiffies and ktime in the kernel twice.
    fn calibrate(&mut self) -> Result<Clock, Error> {
        let first = self.sample_kernel_clock()?;
        std::thread::sleep(std::time::Duration::from_millis(120));
        let second = self.sample_kernel_clock()?;
        Clock::from_samples(first, second).map_err(Error::Clock)
    }

    fn sample_kernel_clock(&mut self) -> Result<[u64; 2], Error> {
        let frame = [0u8; 64];
        self.test_run(PROG_CLOCK, &frame, 1)?;
        let map = Array::<_, [u64; 2]>::try_from(self.map("CLOCK")?).map_err(map_error("CLOCK"))?;
        map.get(&0, 0).map_err(map_error("CLOCK"))
    }

    fn map(&self, name: &'static str) -> Result<&aya::maps::Map, Error> {
        self.ebpf.map(name).ok_or(Error::Missing { name })
    }

    fn map_mut(&mut self, name: &'static str) -> Result<&mut aya::maps::Map, Error> {
        self.ebpf.map_mut(name).ok_or(Error::Missing { name })
    }

    /// Validates limits, then writes them and the published services into
    /// the kernel maps.
    pub fn configure(&mut self, limits: &Limits, services: &[Service]) -> Result<(), Error> {
        limits.validate(self.cpus)?;
        let mut limits = limits.clone();
        limits.service_icmp_echo |= services.contains(&Service::IcmpEcho);
        let mut words = vec![0u64; SERVICE_WORDS as usize];
        for s in services {
            let (udp, first, last) = match *s {
                Service::Tcp { first, last } => (false, first, last),
                Service::Udp { first, last } => (true, first, last),
                Service::IcmpEcho => continue,
            };
            for port in first..=last {
                let (w, bit) = service_bit(udp, port);
                words[w as usize] |= bit;
            }
        }
        let map_err = map_error;
        let mut ports = Array::<_, u64>::try_from(self.map_mut("SERVICE_PORTS")?)
            .map_err(map_err("SERVICE_PORTS"))?;
        for (i, w) in words.iter().enumerate() {
            ports
                .set(i as u32, w, 0)
                .map_err(map_err("SERVICE_PORTS"))?;
        }
        let config = limits.to_config(self.clock.hz, self.cpus);
        self.write_config(config)
    }

    fn write_config(&mut self, config: Config) -> Result<(), Error> {
        let mut cfg =
            Array::<_, Config>::try_from(self.map_mut("CONFIG")?).map_err(map_error("CONFIG"))?;
        cfg.set(0, config, 0).map_err(map_error("CONFIG"))?;
        self.config = config;
        Ok(())
    }

    /// Runs one captured frame through the ingress (XDP) or egress (TC)
    /// program, with the kernel's clocks standing at `ts_ns`, the frame's
    /// capture time (`fireplot replay`): flow timeouts, the rate limiter
    /// and event times all run on the capture's clock. Returns the
    /// program's action.
    pub fn replay_frame(&mut self, egress: bool, frame: &[u8], ts_ns: u64) -> Result<u32, Error> {
        let mut c = self.config;
        c.replay = 1;
        c.replay_ns = ts_ns;
        c.replay_jiffies = (ts_ns as u128 * self.clock.hz as u128 / 1_000_000_000) as u64;
        self.write_config(c)?;
        let (action, _) = if egress {
            self.test_run_egress(frame, 1)?
        } else {
            self.test_run(PROG_INGRESS, frame, 1)?
        };
        Ok(action)
    }

    /// Attaches XDP ingress and TC egress to `iface`. Returns the XDP mode used.
    pub fn attach(&mut self, iface: &str, mode: XdpModeChoice) -> Result<&'static str, Error> {
        let c_iface = std::ffi::CString::new(iface).map_err(|_| Error::UnknownInterface {
            iface: iface.into(),
        })?;
        // SAFETY: valid NUL-terminated string.
        if unsafe { libc::if_nametoindex(c_iface.as_ptr()) } == 0 {
            return Err(Error::UnknownInterface {
                iface: iface.into(),
            });
        }
        let xdp: &mut Xdp = program(&mut self.ebpf, PROG_INGRESS)?;
        let busy =
            |e: &ProgramError| matches!(syscall_errno(e), Some(libc::EBUSY) | Some(libc::EEXIST));
        let used = match mode {
            XdpModeChoice::Skb => {
                xdp.attach(iface, XdpMode::Skb)
                    .map_err(|e| attach_error(iface, e, busy))?;
                "skb"
            }
            XdpModeChoice::Native => {
                xdp.attach(iface, XdpMode::Driver).map_err(|e| {
                    if busy(&e) {
                        Error::XdpBusy {
                            iface: iface.into(),
                        }
                    } else {
                        Error::NativeUnsupported {
                            iface: iface.into(),
                            source: e,
                        }
                    }
                })?;
                "native"
            }
            XdpModeChoice::Auto => match xdp.attach(iface, XdpMode::Driver) {
                Ok(_) => "native",
                Err(e) if busy(&e) => {
                    return Err(Error::XdpBusy {
                        iface: iface.into(),
                    })
                }
                Err(e) => {
                    log::info!(
                        "native XDP not available on {iface} ({e}); using generic (skb) mode"
                    );
                    xdp.attach(iface, XdpMode::Skb)
                        .map_err(|e| attach_error(iface, e, busy))?;
                    "skb"
                }
            },
        };
        self.attached_xdp = Some(used);
        let egress: &mut SchedClassifier = program(&mut self.ebpf, PROG_EGRESS)?;
        if let Err(first) = egress.attach(iface, TcAttachType::Egress) {
            // Kernels before 6.6 have no TCX: attach through a clsact qdisc.
            let _ = tc::qdisc_add_clsact(iface);
            egress
                .attach(iface, TcAttachType::Egress)
                .map_err(|_| Error::Program {
                    action: "attach (tc egress)",
                    program: PROG_EGRESS,
                    source: first,
                })?;
        }
        Ok(used)
    }

    /// Takes the event ring buffer (once).
    pub fn take_events(&mut self) -> Result<RingBuf<MapData>, Error> {
        let map = self
            .ebpf
            .take_map("EVENTS")
            .ok_or(Error::Missing { name: "EVENTS" })?;
        RingBuf::try_from(map).map_err(map_error("EVENTS"))
    }

    /// Sums the per-CPU counters.
    pub fn counters(&self) -> Result<Counters, Error> {
        Counters::read(self.map("COUNTERS")?, self.map("PORT_HITS")?)
    }

    /// Runs a loaded XDP program once per `repeat` over `frame` with
    /// BPF_PROG_TEST_RUN; returns (action, average duration).
    pub fn test_run(
        &mut self,
        name: &'static str,
        frame: &[u8],
        repeat: u32,
    ) -> Result<(u32, std::time::Duration), Error> {
        let prog: &mut Xdp = program(&mut self.ebpf, name)?;
        let mut opts = TestRunOptions::new();
        opts.data_in = Some(frame);
        opts.repeat = repeat;
        let r = prog.test_run(opts).map_err(|source| Error::Program {
            action: "test-run",
            program: name,
            source,
        })?;
        Ok((r.return_value, r.duration))
    }

    /// Runs the TC egress program over `frame` once per `repeat` (to record
    /// flows without live traffic, and to measure it).
    pub fn test_run_egress(
        &mut self,
        frame: &[u8],
        repeat: u32,
    ) -> Result<(u32, std::time::Duration), Error> {
        let prog: &mut SchedClassifier = program(&mut self.ebpf, PROG_EGRESS)?;
        let mut opts = TestRunOptions::new();
        opts.data_in = Some(frame);
        opts.repeat = repeat;
        let r = prog.test_run(opts).map_err(|source| Error::Program {
            action: "test-run",
            program: PROG_EGRESS,
            source,
        })?;
        Ok((r.return_value, r.duration))
    }

    /// Detaches and unloads the programs; maps stay readable.
    pub fn detach(&mut self) {
        for name in [PROG_INGRESS, PROG_CLOCK] {
            if let Ok(p) = program::<Xdp>(&mut self.ebpf, name) {
                let _ = p.unload();
            }
        }
        if let Ok(p) = program::<SchedClassifier>(&mut self.ebpf, PROG_EGRESS) {
            let _ = p.unload();
        }
        self.attached_xdp = None;
    }

    /// Gives access to maps for tests and tools.
    pub fn ebpf_mut(&mut self) -> &mut Ebpf {
        &mut self.ebpf
    }
}

fn attach_error(iface: &str, e: ProgramError, busy: impl Fn(&ProgramError) -> bool) -> Error {
    if busy(&e) {
        Error::XdpBusy {
            iface: iface.into(),
        }
    } else {
        Error::Program {
            action: "attach",
            program: PROG_INGRESS,
            source: e,
        }
    }
}

fn program<'a, T>(ebpf: &'a mut Ebpf, name: &'static str) -> Result<&'a mut T, Error>
where
    &'a mut T: TryFrom<&'a mut aya::programs::Program, Error = ProgramError>,
{
    let prog = ebpf.program_mut(name).ok_or(Error::Missing { name })?;
    prog.try_into().map_err(|source| Error::Program {
        action: "find",
        program: name,
        source,
    })
}

/// Wraps a map error with the map's name.
pub(crate) fn map_error(name: &'static str) -> impl Fn(aya::maps::MapError) -> Error {
    move |source| Error::Map { name, source }
}

/// Size of one event record, for ring-buffer sizing messages.
pub const EVENT_SIZE: usize = size_of::<fireplot_common::event::Event>();
