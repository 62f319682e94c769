//! `cargo xtask fuzz --minutes N`: the property tests of `cargo xtask test`
//! (XDP frames through BPF_PROG_TEST_RUN, the event-line decoder, the
//! detector config parser), round after round with a fresh seed and many
//! more cases, until the time is up. Each round prints its seed, so a
//! failure can be replayed with the same `FIREPLOT_FUZZ_SEED` /
//! `PROPTEST_RNG_SEED`.

use std::time::{Duration, Instant};

use anyhow::{bail, Result};

use crate::build::{cargo_test, ebpf_object};

pub fn fuzz(minutes: u64) -> Result<()> {
    if minutes == 0 {
        bail!("--minutes must be at least 1");
    }
    let until = Instant::now() + Duration::from_secs(minutes * 60);
    let mut round = 0u64;
    while Instant::now() < until {
        round += 1;
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_nanos() as u64;
        println!("fuzz round {round}: seed {seed:#x}");
        let mut c = cargo_test();
        c.args([
            "--release",
            "--package",
            "fireplot",
            "--lib",
            "--",
            "proptests",
            "props",
        ])
        .env("PROPTEST_CASES", "200000")
        .env("PROPTEST_RNG_SEED", seed.to_string());
        crate::build::run(&mut c)?;
        let mut c = cargo_test();
        c.args([
            "--release",
            "--package",
            "fireplot-tests",
            "--test",
            "xdp_fuzz",
        ])
        .env("FIREPLOT_EBPF_OBJECT", ebpf_object())
        .env("FIREPLOT_FUZZ_FRAMES", "5000000")
        .env("FIREPLOT_FUZZ_SEED", format!("{seed:x}"));
        crate::build::run(&mut c)?;
    }
    println!("fuzz: {round} rounds, no failure");
    Ok(())
}
