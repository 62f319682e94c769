//! The lab's eBPF object (`fireplot-ebpf`'s `fireplot-lab` bin), built by
//! `cargo xtask build` beside the sensor's and embedded here, never in the
//! `fireplot` binary: the packet generator (`fireplot_flood`, driven by
//! `crate::flood`) and the trivial XDP_PASS program the benchmarks
//! compare the sensor against (`fireplot_baseline`).

use std::time::Duration;

use anyhow::{bail, Context, Result};
use aya::{
    programs::{TestRun, TestRunOptions, Xdp},
    Ebpf,
};

/// The lab's object; empty if it was not built.
pub static OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/fireplot-lab.bpf.o"));

/// The line-rate generator: XDP_TX of a varied template frame, run with
/// BPF_PROG_TEST_RUN in live-frame mode.
pub const PROG_FLOOD: &str = "fireplot_flood";
/// The trivial program: XDP_PASS and nothing else.
pub const PROG_BASELINE: &str = "fireplot_baseline";
/// The generator's settings (a `FloodConfig` at index 0).
pub const MAP_FLOOD: &str = "FLOOD";

/// The lab's object loaded and its programs verified; nothing attached.
/// Dropping it detaches and unloads what it holds.
pub struct LabPrograms {
    ebpf: Ebpf,
}

impl LabPrograms {
    /// Loads the object and both programs (needs root).
    pub fn load() -> Result<LabPrograms> {
        if OBJECT.is_empty() {
            bail!("the lab's eBPF object is not built in; build it with `cargo xtask build`");
        }
        let mut ebpf = Ebpf::load(OBJECT).context("loading the lab's eBPF object")?;
        for name in [PROG_FLOOD, PROG_BASELINE] {
            xdp(&mut ebpf, name)?
                .load()
                .with_context(|| format!("loading `{name}`"))?;
        }
        Ok(LabPrograms { ebpf })
    }

    /// One of the lab's XDP programs (`PROG_FLOOD`, `PROG_BASELINE`).
    pub fn program(&mut self, name: &str) -> Result<&mut Xdp> {
        xdp(&mut self.ebpf, name)
    }

    /// The object's maps and programs.
    pub fn ebpf_mut(&mut self) -> &mut Ebpf {
        &mut self.ebpf
    }

    /// Runs the trivial program `repeat` times over `frame` with
    /// BPF_PROG_TEST_RUN; returns the average duration.
    pub fn baseline_run(&mut self, frame: &[u8], repeat: u32) -> Result<Duration> {
        let mut opts = TestRunOptions::new();
        opts.data_in = Some(frame);
        opts.repeat = repeat;
        let r = self
            .program(PROG_BASELINE)?
            .test_run(opts)
            .context("test_run of the baseline")?;
        Ok(r.duration)
    }
}

fn xdp<'a>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut Xdp> {
    Ok(ebpf
        .program_mut(name)
        .with_context(|| format!("no `{name}` in the lab's eBPF object"))?
        .try_into()?)
}
