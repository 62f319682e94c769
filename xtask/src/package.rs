//! `cargo xtask package`: a Debian package of the release build with
//! Debian's own tools (`dpkg-deb`, `dpkg-shlibdeps`, `strip`; dpkg-dev and
//! binutils): the stripped binary, the systemd unit, a commented default
//! configuration (a conffile), a man page made from `--help`, and in
//! /usr/share/doc/fireplot the README, the docs/ pages, the copyright file
//! (machine-readable, see `copyright`) and the changelog
//! (packaging/changelog). `lintian` reports no error on it (the package
//! test checks).

mod copyright;

use std::{
    fs,
    io::Write,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use anyhow::{bail, Context, Result};

use crate::build::{root, run};

/// The package's maintainer, in the control file, the changelog and the
/// copyright file.
const MAINTAINER: &str = "fireplot developers <fireplot@example.invalid>";

/// The subcommands documented in the man page, in its order.
const COMMANDS: [&str; 11] = [
    "run", "replay", "ingest", "config", "plot", "top", "detect", "serve", "export", "enrich",
    "collect",
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
         .SH SEE ALSO\n/usr/share/doc/fireplot/README.md and the pages in /usr/share/doc/fireplot/docs/\n",
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

/// `data` compressed as `gzip -9n` does (no name, no time stamp: the same
/// input gives the same bytes).
fn gzip(data: &[u8]) -> Result<Vec<u8>> {
    let mut c = Command::new("gzip")
        .arg("-9n")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .context("gzip")?;
    let mut stdin = c.stdin.take().expect("piped stdin");
    let data = data.to_vec();
    // Written from a thread: gzip's output pipe could fill before it has
    // read all of its input.
    let writer = std::thread::spawn(move || stdin.write_all(&data));
    let out = c.wait_with_output()?;
    writer.join().expect("gzip writer")?;
    if !out.status.success() {
        bail!("gzip -9n failed ({})", out.status);
    }
    Ok(out.stdout)
}

/// The package's changelog (packaging/changelog, a Debian changelog);
/// its latest entry must be `version`.
fn changelog(root: &Path, version: &str) -> Result<Vec<u8>> {
    let text =
        fs::read_to_string(root.join("packaging/changelog")).context("packaging/changelog")?;
    let top = text.lines().next().unwrap_or("");
    if !top.starts_with(&format!("fireplot ({version}) ")) {
        bail!(
            "packaging/changelog starts with `{top}`: add an entry for version {version} (Cargo.toml) on top"
        );
    }
    let signed = text.lines().find(|l| l.starts_with(" -- ")).unwrap_or("");
    if !signed.starts_with(&format!(" -- {MAINTAINER}  ")) {
        bail!("packaging/changelog: the latest entry must be signed ` -- {MAINTAINER}  DATE`, not `{signed}`");
    }
    gzip(text.as_bytes())
}

/// The shared libraries the binary needs, as Debian dependencies with
/// their minimum versions (`dpkg-shlibdeps`).
fn shlib_depends(out_dir: &Path, binary: &Path) -> Result<String> {
    // dpkg-shlibdeps reads debian/control from where it runs.
    let work = out_dir.join("shlibdeps");
    fs::create_dir_all(work.join("debian"))?;
    fs::write(
        work.join("debian/control"),
        "Source: fireplot\n\nPackage: fireplot\nArchitecture: any\n",
    )?;
    let out = Command::new("dpkg-shlibdeps")
        .args(["-O", "-e"])
        .arg(binary)
        .current_dir(&work)
        .output()
        .context("dpkg-shlibdeps (dpkg-dev; `cargo xtask setup` installs it)")?;
    if !out.status.success() {
        bail!(
            "dpkg-shlibdeps failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let _ = fs::remove_dir_all(&work);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("shlibs:Depends="))
        .map(str::to_string)
        .context("dpkg-shlibdeps printed no shlibs:Depends")
}

/// Sets every directory under `dir` to 0755 (files keep the mode they were
/// written with) and returns the size of the files in KiB, rounded up as
/// Installed-Size counts it.
fn seal(dir: &Path) -> Result<u64> {
    fs::set_permissions(dir, fs::Permissions::from_mode(0o755))?;
    let mut bytes = 0;
    for e in fs::read_dir(dir)? {
        let e = e?;
        let meta = fs::symlink_metadata(e.path())?;
        if meta.is_dir() {
            bytes += seal(&e.path())? * 1024;
        } else {
            bytes += meta.len().div_ceil(1024) * 1024;
        }
    }
    Ok(bytes / 1024)
}

/// The files under `dir`, relative to it, in order.
fn files_under(dir: &Path, rel: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let mut entries: Vec<_> = fs::read_dir(dir.join(rel))?.flatten().collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let r = rel.join(e.file_name());
        if e.file_type()?.is_dir() {
            files_under(dir, &r, out)?;
        } else {
            out.push(r);
        }
    }
    Ok(())
}

/// DEBIAN/md5sums as dh_md5sums writes it: `md5sum` of every file but the
/// conffiles (dpkg keeps theirs itself).
fn md5sums(stage: &Path, conffiles: &[&str]) -> Result<Vec<u8>> {
    let mut files = Vec::new();
    files_under(stage, Path::new(""), &mut files)?;
    files.retain(|f| {
        !conffiles
            .iter()
            .any(|c| Path::new(c.trim_start_matches('/')) == f)
    });
    let out = Command::new("md5sum")
        .arg("--")
        .args(&files)
        .current_dir(stage)
        .output()
        .context("md5sum")?;
    if !out.status.success() {
        bail!("md5sum failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(out.stdout)
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
        let p = stage.join(rel);
        fs::create_dir_all(p.parent().expect("a file in a folder"))?;
        fs::write(&p, data).with_context(|| format!("writing {}", p.display()))?;
        fs::set_permissions(&p, fs::Permissions::from_mode(mode))?;
        Ok(())
    };
    put("usr/bin/fireplot", &fs::read(bin)?, 0o755)?;
    // The release profile keeps debug info for the bench's profiles; a
    // router needs neither it nor the symbol table (lintian:
    // unstripped-binary-or-object). The flags are dh_strip's.
    let staged = stage.join("usr/bin/fireplot");
    run(Command::new("strip")
        .args([
            "--remove-section=.comment",
            "--remove-section=.note",
            "--strip-unneeded",
        ])
        .arg(&staged))
    .context("strip (binutils) the packaged binary")?;
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
    put(
        "usr/share/man/man1/fireplot.1.gz",
        &gzip(man.as_bytes())?,
        0o644,
    )?;
    let doc = "usr/share/doc/fireplot";
    put(
        &format!("{doc}/README.md"),
        &fs::read(root.join("README.md"))?,
        0o644,
    )?;
    // docs/ beside the README, so that the README's links and pictures work.
    for sub in ["docs", "docs/img"] {
        let mut files: Vec<PathBuf> = fs::read_dir(root.join(sub))
            .with_context(|| sub.to_string())?
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.is_file())
            .collect();
        files.sort();
        for f in files {
            let file = f.file_name().expect("a file name").to_string_lossy();
            put(&format!("{doc}/{sub}/{file}"), &fs::read(&f)?, 0o644)?;
        }
    }
    put(
        &format!("{doc}/copyright"),
        copyright::copyright()?.as_bytes(),
        0o644,
    )?;
    put(
        &format!("{doc}/changelog.gz"),
        &changelog(&root, &version)?,
        0o644,
    )?;
    let depends = shlib_depends(&out_dir, &staged)?;
    let size_kib = seal(&stage)?;
    let conffiles = ["/etc/fireplot/fireplot.toml"];
    let sums = md5sums(&stage, &conffiles)?;
    let control = format!(
        "Package: fireplot\n\
         Version: {version}\n\
         Architecture: {arch}\n\
         Maintainer: {MAINTAINER}\n\
         Section: net\n\
         Priority: optional\n\
         Depends: {depends}\n\
         Recommends: systemd\n\
         Installed-Size: {size_kib}\n\
         Description: XDP sensor for unsolicited traffic on a WAN interface\n \
         fireplot classifies every inbound packet on a WAN interface in the kernel\n \
         (XDP, without conntrack), keeps the history of unsolicited probes, draws\n \
         fireplots, detects scans and serves a web console. It also replays packet\n \
         captures and reads firewall logs.\n"
    );
    put("DEBIAN/control", control.as_bytes(), 0o644)?;
    put(
        "DEBIAN/conffiles",
        format!("{}\n", conffiles.join("\n")).as_bytes(),
        0o644,
    )?;
    put("DEBIAN/md5sums", &sums, 0o644)?;
    seal(&stage.join("DEBIAN"))?;
    let deb = out_dir.join(format!("{name}.deb"));
    run(Command::new("dpkg-deb")
        .args(["--root-owner-group", "-Zxz", "--build"])
        .arg(&stage)
        .arg(&deb))?;
    Ok(deb)
}
