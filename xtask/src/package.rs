//! `cargo xtask package`: a Debian package of the release build with
//! `dpkg-deb` (Debian's own tool; nothing else to install): the binary,
//! the systemd unit, a commented default configuration (a conffile), a man
//! page made from `--help`, the README.

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, Context, Result};

use crate::build::{root, run};

/// The subcommands documented in the man page, in its order.
const COMMANDS: [&str; 9] = [
    "run", "replay", "ingest", "config", "plot", "top", "detect", "serve", "export",
];

fn help(bin: &Path, args: &[&str]) -> Result<String> {
    let out = Command::new(bin)
        .args(args)
        .arg("--help")
        .output()
        .with_context(|| format!("cannot run {} --help", bin.display()))?;
    if !out.status.success() {
        bail!("`fireplot {} --help` failed", args.join(" "));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Text as roff lines that are shown as they are.
fn roff_verbatim(text: &str) -> String {
    let mut out = String::from(".nf\n");
    for line in text.lines() {
        let l = line.replace('\\', "\\e");
        // A leading dot or quote would be read as a request.
        if l.starts_with('.') || l.starts_with('\'') {
            out.push_str("\\&");
        }
        out.push_str(&l);
        out.push('\n');
    }
    out.push_str(".fi\n");
    out
}

fn man_page(bin: &Path, version: &str) -> Result<String> {
    let mut m = format!(
        ".TH FIREPLOT 1 \"\" \"fireplot {version}\" \"User Commands\"\n\
         .SH NAME\nfireplot \\- see the unsolicited traffic that hits a WAN interface (XDP sensor, history, plots, scan detection)\n\
         .SH SYNOPSIS\n.B fireplot\n\\fICOMMAND\\fR [\\fIOPTIONS\\fR]\n.SH DESCRIPTION\n"
    );
    m.push_str(&roff_verbatim(&help(bin, &[])?));
    for c in COMMANDS {
        m.push_str(&format!(".SH \"fireplot {c}\"\n"));
        m.push_str(&roff_verbatim(&help(bin, &[c])?));
    }
    m.push_str(
        ".SH FILES\n.TP\n/etc/fireplot/fireplot.toml\nthe daemon's settings (\\fBfireplot config check\\fR validates it)\n\
         .TP\n/var/lib/fireplot/fireplot.db\nthe history database\n\
         .SH SEE ALSO\n/usr/share/doc/fireplot/README.md\n",
    );
    Ok(m)
}

/// The packaged default configuration: the commented example, with the
/// history in the service's state directory.
fn default_config(bin: &Path) -> Result<String> {
    let out = Command::new(bin)
        .args(["config", "example"])
        .output()
        .context("fireplot config example")?;
    if !out.status.success() {
        bail!("`fireplot config example` failed");
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut replaced = false;
    let mut cfg = String::new();
    for line in text.lines() {
        if line.starts_with("# db = ") {
            cfg.push_str("db = \"/var/lib/fireplot/fireplot.db\"\n");
            replaced = true;
        } else {
            cfg.push_str(line);
            cfg.push('\n');
        }
    }
    if !replaced {
        bail!("the example configuration has no `db` key");
    }
    Ok(cfg)
}

/// Builds `target/debian/fireplot_<version>_<arch>.deb` from the release
/// binary at `bin`; returns its path.
pub fn package(bin: &Path) -> Result<PathBuf> {
    let root = root();
    let manifest = fs::read_to_string(root.join("Cargo.toml"))?;
    let version = manifest
        .lines()
        .find_map(|l| l.trim().strip_prefix("version = \""))
        .and_then(|v| v.strip_suffix('"'))
        .context("no version in Cargo.toml")?
        .to_string();
    let arch = Command::new("dpkg")
        .arg("--print-architecture")
        .output()
        .context("dpkg --print-architecture")?;
    let arch = String::from_utf8_lossy(&arch.stdout).trim().to_string();
    let name = format!("fireplot_{version}_{arch}");
    let out_dir = root.join("target/debian");
    let stage = out_dir.join(&name);
    let _ = fs::remove_dir_all(&stage);
    let put = |rel: &str, data: &[u8], mode: u32| -> Result<()> {
        use std::os::unix::fs::PermissionsExt;
        let p = stage.join(rel);
        fs::create_dir_all(p.parent().expect("a file in a folder"))?;
        fs::write(&p, data).with_context(|| format!("writing {}", p.display()))?;
        fs::set_permissions(&p, fs::Permissions::from_mode(mode))?;
        Ok(())
    };
    put("usr/bin/fireplot", &fs::read(bin)?, 0o755)?;
    // The release profile keeps debug info for the bench's profiles; a
    // router does not need it.
    let staged = stage.join("usr/bin/fireplot");
    if let Err(e) = run(Command::new("strip").arg("--strip-debug").arg(&staged)) {
        println!("package: not stripped ({e:#}); the binary keeps its debug info");
    }
    put(
        "lib/systemd/system/fireplot.service",
        &fs::read(root.join("packaging/fireplot.service"))?,
        0o644,
    )?;
    put(
        "etc/fireplot/fireplot.toml",
        default_config(bin)?.as_bytes(),
        0o644,
    )?;
    let man = man_page(bin, &version)?;
    let mut gz = Vec::new();
    {
        let mut c = Command::new("gzip")
            .args(["-9n"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .context("gzip")?;
        use std::io::Write;
        c.stdin.take().expect("stdin").write_all(man.as_bytes())?;
        let o = c.wait_with_output()?;
        gz.extend_from_slice(&o.stdout);
    }
    put("usr/share/man/man1/fireplot.1.gz", &gz, 0o644)?;
    put(
        "usr/share/doc/fireplot/README.md",
        &fs::read(root.join("README.md"))?,
        0o644,
    )?;
    let size_kib = (fs::metadata(bin)?.len() + man.len() as u64) / 1024;
    let control = format!(
        "Package: fireplot\n\
         Version: {version}\n\
         Architecture: {arch}\n\
         Maintainer: fireplot developers <fireplot@example.invalid>\n\
         Section: net\n\
         Priority: optional\n\
         Depends: libc6\n\
         Recommends: systemd\n\
         Installed-Size: {size_kib}\n\
         Description: XDP sensor for unsolicited traffic on a WAN interface\n \
         fireplot classifies every inbound packet on a WAN interface in the kernel\n \
         (XDP, without conntrack), keeps the history of unsolicited probes, draws\n \
         fireplots, detects scans and serves a web console. It also replays packet\n \
         captures and reads firewall logs.\n"
    );
    put("DEBIAN/control", control.as_bytes(), 0o644)?;
    put("DEBIAN/conffiles", b"/etc/fireplot/fireplot.toml\n", 0o644)?;
    let deb = out_dir.join(format!("{name}.deb"));
    run(Command::new("dpkg-deb")
        .args(["--root-owner-group", "-Zxz", "--build"])
        .arg(&stage)
        .arg(&deb))?;
    Ok(deb)
}
