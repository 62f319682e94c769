//! The Debian package: built by `cargo xtask package` (the test command
//! builds it first and passes it in FIREPLOT_DEB), checked by lintian, its
//! unit verified by systemd, installed into a throwaway root, and the
//! unit's own command run from there in the lab's router with only the
//! unit's capabilities.

use std::{
    collections::BTreeSet,
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use fireplot_tests::{addr, can_run, privileged, traffic::nmap, unique_prefix, Lab, Node};

fn deb(test: &str) -> Option<PathBuf> {
    let p = std::env::var_os("FIREPLOT_DEB").map(PathBuf::from);
    let ok = p.as_ref().is_some_and(|p| p.exists());
    if !can_run(
        test,
        ok,
        "FIREPLOT_DEB is not set: run through `cargo xtask test`, which builds the package",
    ) {
        return None;
    }
    p
}

/// `Key=value` lines of the unit's [Service] section.
fn unit_value(unit: &str, key: &str) -> String {
    unit.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("the unit has no {key}="))
        .to_string()
}

/// A command line of the unit, with its absolute paths inside `root`.
fn rooted(line: &str, root: &Path) -> Vec<String> {
    line.split_whitespace()
        .map(|w| {
            if w.starts_with("/usr/") || w.starts_with("/etc/") {
                format!("{}{w}", root.display())
            } else {
                w.to_string()
            }
        })
        .collect()
}

fn run_ok(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{cmd:?} failed: {text}");
    text
}

fn xdp_attached(lab: &Lab) -> bool {
    let out = lab
        .command(Node::Router, "ip")
        .args(["-d", "link", "show", "dev", "wan0"])
        .output()
        .expect("ip link");
    String::from_utf8_lossy(&out.stdout).contains("xdp")
}

/// Why the lintian test skips.
const LINTIAN_SKIP_REASON: &str = "needs lintian; `cargo xtask setup` installs it";

/// lintian, Debian's package checker, reports no error (`E:`) on the
/// package; its warnings are printed. No root needed.
#[test]
fn lintian_reports_no_error_on_the_package() {
    const TEST: &str = "lintian_reports_no_error_on_the_package";
    let Some(deb) = deb(TEST) else { return };
    let installed = Command::new("lintian")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !can_run(TEST, installed, LINTIAN_SKIP_REASON) {
        return;
    }
    // --fail-on none: the exit status says whether lintian ran, the E: lines
    // whether it found errors.
    let out = Command::new("lintian")
        .args([
            "--fail-on",
            "none",
            "--display-info",
            "--tag-display-limit",
            "0",
        ])
        .arg(&deb)
        .output()
        .expect("run lintian");
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "lintian failed ({}): {said}{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("lintian {}:\n{said}", deb.display());
    let errors: Vec<&str> = said.lines().filter(|l| l.starts_with("E:")).collect();
    assert!(
        errors.is_empty(),
        "lintian reports errors on {}:\n{}",
        deb.display(),
        errors.join("\n")
    );
}

#[test]
fn the_package_installs_verifies_and_runs_its_unit() {
    if !privileged("the_package_installs_verifies_and_runs_its_unit") {
        return;
    }
    let Some(deb) = deb("the_package_installs_verifies_and_runs_its_unit") else {
        return;
    };
    let root = std::env::temp_dir().join(format!("fireplot-test-deb-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).expect("root");
    assert_eq!(
        run_ok(
            Command::new("dpkg-deb")
                .args(["-f"])
                .arg(&deb)
                .arg("Package")
        )
        .trim(),
        "fireplot"
    );
    run_ok(Command::new("dpkg").arg("-x").arg(&deb).arg(&root));
    let conffiles = run_ok(Command::new("sh").arg("-c").arg(format!(
        "dpkg-deb --ctrl-tarfile {} | tar -xO ./conffiles",
        deb.display()
    )));
    assert!(
        conffiles.contains("/etc/fireplot/fireplot.toml"),
        "{conffiles}"
    );
    for f in [
        "usr/bin/fireplot",
        "lib/systemd/system/fireplot.service",
        "etc/fireplot/fireplot.toml",
        "usr/share/man/man1/fireplot.1.gz",
        "usr/share/doc/fireplot/README.md",
        "usr/share/doc/fireplot/docs/deployment.md",
        "usr/share/doc/fireplot/copyright",
        "usr/share/doc/fireplot/changelog.gz",
    ] {
        assert!(root.join(f).exists(), "{f} is installed");
    }
    // The man page renders (man -l reads a file).
    let man = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "zcat {}/usr/share/man/man1/fireplot.1.gz",
            root.display()
        ))
        .output()
        .expect("zcat");
    let man = String::from_utf8_lossy(&man.stdout);
    assert!(
        man.starts_with(".TH FIREPLOT 1") && man.contains("fireplot replay"),
        "man page"
    );

    // systemd's own check, against the installed files: no error, no warning.
    let units = root.join("lib/systemd/system");
    for e in std::fs::read_dir("/lib/systemd/system")
        .expect("system units")
        .flatten()
    {
        let n = e.file_name();
        if n.to_string_lossy().ends_with(".target") {
            let _ = std::fs::copy(e.path(), units.join(&n));
        }
    }
    let verify = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(format!("--root={}", root.display()))
        .arg("fireplot.service")
        .output()
        .expect("systemd-analyze (Debian's systemd package)");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&verify.stdout),
        String::from_utf8_lossy(&verify.stderr)
    );
    assert!(
        verify.status.success() && said.trim().is_empty(),
        "verify: {said}"
    );

    let unit = std::fs::read_to_string(units.join("fireplot.service")).expect("unit");
    let exec = rooted(&unit_value(&unit, "ExecStart"), &root);
    let pre = rooted(&unit_value(&unit, "ExecStartPre"), &root);
    assert_eq!(unit_value(&unit, "KillSignal"), "SIGTERM");
    let caps = unit_value(&unit, "AmbientCapabilities");
    assert_eq!(caps, "CAP_BPF CAP_NET_ADMIN CAP_PERFMON");
    let caps: Vec<String> = caps
        .split_whitespace()
        .map(|c| format!("+{}", c.trim_start_matches("CAP_").to_lowercase()))
        .collect();
    let caps = caps.join(",");
    // The admin points the history at the throwaway root; the rest is the package's.
    let state = root.join("var/lib/fireplot");
    std::fs::create_dir_all(&state).expect("state dir");
    let cfg_path = root.join("etc/fireplot/fireplot.toml");
    let cfg = std::fs::read_to_string(&cfg_path).expect("config");
    assert!(
        cfg.contains("db = \"/var/lib/fireplot/fireplot.db\""),
        "{cfg}"
    );
    let db = state.join("fireplot.db");
    std::fs::write(
        &cfg_path,
        cfg.replace("/var/lib/fireplot/fireplot.db", db.to_str().expect("utf-8")),
    )
    .expect("config");
    run_ok(Command::new(&pre[0]).args(&pre[1..]));
    // DynamicUser: an unprivileged uid owning the state directory.
    run_ok(
        Command::new("chown")
            .arg("-R")
            .arg("65534:65534")
            .arg(&state),
    );

    let lab = Lab::up(&unique_prefix("deb")).expect("lab");
    let mut child = lab
        .command(Node::Router, "setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            &format!("--inh-caps=-all,{caps}"),
            &format!("--ambient-caps=-all,{caps}"),
            &format!("--bounding-set=-all,{caps}"),
            "--no-new-privs",
        ])
        .args(&exec)
        .current_dir(&state)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("setpriv (util-linux)");
    let err = child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let log2 = log.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(err).lines().map_while(Result::ok) {
            if line.contains("fireplot attached to") {
                let _ = tx.send(());
            }
            log2.lock().expect("log").push_str(&(line + "\n"));
        }
    });
    if rx.recv_timeout(Duration::from_secs(60)).is_err() {
        let _ = child.kill();
        panic!(
            "the unit's command did not attach: {}",
            log.lock().expect("log")
        );
    }
    assert!(xdp_attached(&lab), "XDP on wan0 while it runs");
    nmap(&lab, &["-sS", "-p", "1-100", addr::LAN_V4]).expect("nmap");
    // The events reach the history (written within a second or so).
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut ports = BTreeSet::new();
    while Instant::now() < deadline && ports.len() < 100 {
        std::thread::sleep(Duration::from_millis(300));
        if let Ok(s) = fireplot::store::Store::open_read_only(&db) {
            ports.clear();
            let _ = s.for_each(&fireplot::store::Filter::range(0, i64::MAX), |r| {
                if r.src == Some(addr::INET_V4.parse().expect("addr")) {
                    ports.insert(r.dport);
                }
            });
        }
    }
    assert_eq!(
        ports.len(),
        100,
        "every probe stored: {}",
        log.lock().expect("log")
    );
    // Stopped as systemd would: the unit's KillSignal, within TimeoutStopSec.
    let timeout: u64 = unit_value(&unit, "TimeoutStopSec")
        .parse()
        .expect("seconds");
    // SAFETY: kill(2) on our own child (setpriv execs fireplot: same pid).
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(timeout);
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "not stopped within TimeoutStopSec"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(
        status.success(),
        "exit {status}: {}",
        log.lock().expect("log")
    );
    assert!(!xdp_attached(&lab), "XDP detached after the stop");
    let _ = std::fs::remove_dir_all(&root);
}
