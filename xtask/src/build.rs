//! Building the eBPF objects and the userspace binary, and running tests.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, Context, Result};

/// The workspace root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .expect("workspace root")
}

/// Path of the built production eBPF object (embedded in `fireplot`).
pub fn ebpf_object() -> PathBuf {
    root().join("fireplot-ebpf/target/bpfel-unknown-none/release/fireplot")
}

/// Path of the built lab eBPF object (the generator and the trivial
/// baseline; embedded in `fireplot-tests` with its `bench` feature only).
pub fn lab_object() -> PathBuf {
    root().join("fireplot-ebpf/target/bpfel-unknown-none/release/fireplot-lab")
}

pub fn run(cmd: &mut Command) -> Result<()> {
    let status = cmd
        .status()
        .with_context(|| format!("cannot run {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed ({status})");
    }
    Ok(())
}

/// A cargo command free of the variables the outer `cargo xtask` set, so
/// that `+nightly` and the eBPF crate's own toolchain file take effect.
pub fn cargo(toolchain: Option<&str>) -> Command {
    let mut c = Command::new("cargo");
    if let Some(t) = toolchain {
        c.arg(format!("+{t}"));
    }
    for var in [
        "RUSTUP_TOOLCHAIN",
        "RUSTC",
        "RUSTC_WRAPPER",
        "RUSTDOC",
        "CARGO_TARGET_DIR",
        "RUSTFLAGS",
    ] {
        c.env_remove(var);
    }
    c
}

/// Builds the eBPF objects (the production one and the lab's), then
/// fireplot with the production one embedded. Returns the binary.
pub fn build(release: bool) -> Result<PathBuf> {
    let root = root();
    run(cargo(Some("nightly"))
        .current_dir(root.join("fireplot-ebpf"))
        .args([
            "build",
            "--release",
            "-Z",
            "build-std=core",
            "--target",
            "bpfel-unknown-none",
        ]))
    .context("building the eBPF objects failed (is `cargo xtask setup` done?)")?;
    for object in [ebpf_object(), lab_object()] {
        if !object.exists() {
            bail!("eBPF object missing at {}", object.display());
        }
    }
    let object = ebpf_object();
    let mut c = cargo(None);
    c.current_dir(&root)
        .args(["build", "--package", "fireplot"])
        .env("FIREPLOT_EBPF_OBJECT", &object);
    if release {
        c.arg("--release");
    }
    run(&mut c)?;
    Ok(root.join(if release {
        "target/release/fireplot"
    } else {
        "target/debug/fireplot"
    }))
}

/// `cargo test` in the workspace, free of the outer cargo's variables.
pub fn cargo_test() -> Command {
    let mut c = cargo(None);
    c.current_dir(root()).arg("test");
    c
}

/// Unit tests and privileged integration tests, in release mode so the
/// binary the lab tests run is the one just built.
pub fn test(extra: &[String], deb: Option<&Path>) -> Result<()> {
    let root = root();
    let skip_log = root.join("target/test-skips.tsv");
    let _ = std::fs::remove_file(&skip_log);
    let mut c = cargo(None);
    c.current_dir(&root)
        // `bench`: the lab's packet generator (fireplot-flood) for the flood test.
        .args([
            "test",
            "--release",
            "--workspace",
            "--features",
            "fireplot-tests/bench",
        ])
        .env("FIREPLOT_EBPF_OBJECT", ebpf_object())
        .env("FIREPLOT_EBPF_LAB_OBJECT", lab_object())
        .env("FIREPLOT_BIN", root.join("target/release/fireplot"))
        .env(fireplot_tests::SKIP_LOG_ENV, &skip_log)
        .env("FIREPLOT_ENRICH_DATA", crate::setup::enrich_dir());
    if let Some(deb) = deb {
        c.env("FIREPLOT_DEB", deb);
    }
    c.args(extra);
    if !extra.iter().any(|a| a == "--") {
        // Lab tests each build their own namespaces, but scanners compete for
        // two cores: one test at a time keeps their timing honest.
        c.args(["--", "--test-threads=1"]);
    }
    // Pass the output through and total the per-binary results, so the run
    // ends with one line that counts every test (the last per-binary line
    // is often a crate with no doc tests).
    c.stdout(std::process::Stdio::piped());
    let mut child = c.spawn().context("cannot run cargo test")?;
    let stdout = child.stdout.take().expect("piped stdout");
    let mut tally = Tally::default();
    for line in std::io::BufRead::lines(std::io::BufReader::new(stdout)).map_while(Result::ok) {
        println!("{line}");
        tally.add_line(&line);
    }
    let status = child.wait()?;
    let skips = std::fs::read_to_string(&skip_log).unwrap_or_default();
    for (reason, n) in tally.take_skips(&skips) {
        println!("skipped {n} privileged tests: {reason}");
    }
    let Tally {
        passed,
        failed,
        skipped,
    } = tally;
    println!("tests: {passed} passed, {failed} failed, {skipped} skipped");
    if !status.success() {
        bail!("cargo test failed ({status})");
    }
    if passed == 0 {
        bail!("no test ran");
    }
    Ok(())
}

/// Totals of a `cargo test` run.
#[derive(Debug, Default, PartialEq, Eq)]
struct Tally {
    passed: u64,
    failed: u64,
    skipped: u64,
}

impl Tally {
    /// Adds one libtest `test result:` line (other lines are ignored).
    fn add_line(&mut self, line: &str) {
        let Some(rest) = line.strip_prefix("test result: ") else {
            return;
        };
        for part in rest.split(';') {
            let mut words = part.split_whitespace().rev();
            let (Some(what), Some(n)) = (words.next(), words.next()) else {
                continue;
            };
            let Ok(n) = n.parse::<u64>() else { continue };
            match what {
                "passed" => self.passed += n,
                "failed" => self.failed += n,
                "ignored" => self.skipped += n,
                _ => {}
            }
        }
    }

    /// A skipped privileged test returns early, which libtest counts as
    /// passed: moves the tests of the skip log (`name\treason` lines) from
    /// passed to skipped, and returns the count per reason.
    fn take_skips(&mut self, log: &str) -> Vec<(String, u64)> {
        let mut reasons: std::collections::BTreeMap<String, u64> = Default::default();
        for line in log.lines().filter(|l| !l.trim().is_empty()) {
            let reason = line.split_once('\t').map_or("", |(_, r)| r);
            *reasons.entry(reason.to_string()).or_default() += 1;
        }
        let skipped: u64 = reasons.values().sum();
        self.passed = self.passed.saturating_sub(skipped);
        self.skipped += skipped;
        reasons.into_iter().collect()
    }
}

/// Runs the benchmark binary; it prints the table and writes
/// `target/bench/results.json`.
pub fn bench(quick: bool) -> Result<()> {
    let root = root();
    // The lab's generator, next to the bench binary.
    let mut g = cargo(None);
    g.current_dir(&root)
        .args([
            "build",
            "--release",
            "--quiet",
            "--package",
            "fireplot-tests",
            "--features",
            "bench",
            "--bin",
            "fireplot-flood",
        ])
        .env("FIREPLOT_EBPF_OBJECT", ebpf_object())
        .env("FIREPLOT_EBPF_LAB_OBJECT", lab_object());
    run(&mut g)?;
    let mut c = cargo(None);
    c.current_dir(&root)
        .args([
            "run",
            "--release",
            "--quiet",
            "--package",
            "fireplot-tests",
            "--features",
            "bench",
            "--bin",
            "fireplot-bench",
            "--",
        ])
        .arg("--json")
        .arg(root.join("target/bench/results.json"))
        .env("FIREPLOT_EBPF_OBJECT", ebpf_object())
        .env("FIREPLOT_EBPF_LAB_OBJECT", lab_object())
        .env("FIREPLOT_ENRICH_DATA", crate::setup::enrich_dir());
    if quick {
        c.arg("--quick");
    }
    run(&mut c)
}

#[cfg(test)]
mod tests {
    use super::Tally;

    #[test]
    fn skipped_privileged_tests_are_not_counted_as_passed() {
        let mut t = Tally::default();
        t.add_line("test result: ok. 60 passed; 0 failed; 2 ignored; 0 measured; 0 filtered out; finished in 1.00s");
        t.add_line("test result: FAILED. 7 passed; 1 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.00s");
        t.add_line("test lab::x ... ok");
        let reasons = t.take_skips("a\tneeds root\nb\tneeds root\n\n");
        assert_eq!(reasons, vec![("needs root".to_string(), 2)]);
        assert_eq!(
            t,
            Tally {
                passed: 65,
                failed: 1,
                skipped: 4
            }
        );
    }
}
