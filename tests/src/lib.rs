//! The lab network of DESIGN §4, as one builder used by `cargo xtask lab`,
//! `cargo xtask demo`, the integration tests and the benchmarks:
//!
//! ```text
//! [{p}-inet]   inet0 198.18.0.2/24 2001:db8::2/64 (+ 198.18.0.10-.250)
//!     │ veth
//! [{p}-router] wan0 198.18.0.1/24 2001:db8::1/64   ← fireplot attaches here
//!              lan0 198.18.1.1/24 2001:db8:1::1/64  forwarding on
//!     │ veth
//! [{p}-lan]    eth0 198.18.1.2/24 2001:db8:1::2/64  default route via router
//! ```
//!
//! Only 198.18.0.0/15 and 2001:db8::/32 are used and nothing routes out of
//! the namespaces. A `Lab` tears itself down when dropped; `teardown` also
//! removes a lab left behind by a killed run.

pub mod fleet_lab;
#[cfg(feature = "bench")]
pub mod flood;
#[cfg(feature = "bench")]
pub mod lab_ebpf;
pub mod packets;
pub mod sensor;
pub mod servers;
pub mod traffic;
pub mod webdriver;

use std::{
    io::Write,
    process::{Command, Output, Stdio},
};

use anyhow::{bail, Context, Result};

/// Addresses of the lab.
pub mod addr {
    pub const INET_V4: &str = "198.18.0.2";
    pub const INET_V6: &str = "2001:db8::2";
    pub const WAN_V4: &str = "198.18.0.1";
    pub const WAN_V6: &str = "2001:db8::1";
    pub const LAN_GW_V4: &str = "198.18.1.1";
    pub const LAN_GW_V6: &str = "2001:db8:1::1";
    pub const LAN_V4: &str = "198.18.1.2";
    pub const LAN_V6: &str = "2001:db8:1::2";
    pub const LAN_NET_V4: &str = "198.18.1.0/24";
    pub const LAN_NET_V6: &str = "2001:db8:1::/64";
    /// Extra scanner source addresses on inet0: 198.18.0.10 ..= 198.18.0.250.
    pub const EXTRA_FIRST: u8 = 10;
    pub const EXTRA_LAST: u8 = 250;
    /// An extra source address.
    pub fn extra_v4(i: u8) -> String {
        format!("198.18.0.{i}")
    }
}

/// A namespace of the lab.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Node {
    Inet,
    Router,
    Lan,
}

impl Node {
    fn suffix(self) -> &'static str {
        match self {
            Node::Inet => "inet",
            Node::Router => "router",
            Node::Lan => "lan",
        }
    }
}

/// A running lab. Dropping it tears it down.
pub struct Lab {
    prefix: String,
    keep: bool,
}

fn run(cmd: &mut Command) -> Result<Output> {
    let out = cmd
        .output()
        .with_context(|| format!("cannot run {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(out)
}

fn ip_batch(ns: &str, script: &str) -> Result<()> {
    let mut child = Command::new("ip")
        .args(["-n", ns, "-batch", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot run `ip` (iproute2 missing? run `cargo xtask setup`)")?;
    child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(script.as_bytes())?;
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!(
            "ip -n {ns} -batch failed: {}\nscript:\n{script}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

fn sysctl(ns: &str, key: &str, value: &str) -> Result<()> {
    run(Command::new("ip").args([
        "netns",
        "exec",
        ns,
        "sysctl",
        "-qw",
        &format!("{key}={value}"),
    ]))?;
    Ok(())
}

/// Checks a prefix is short and plain enough for namespace names.
pub fn check_prefix(prefix: &str) -> Result<()> {
    if prefix.is_empty()
        || prefix.len() > 12
        || !prefix
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_')
    {
        bail!("lab prefix `{prefix}` must be 1-12 letters, digits or _");
    }
    Ok(())
}

impl Lab {
    /// Builds the lab. A lab left behind under the same prefix is removed first.
    pub fn up(prefix: &str) -> Result<Lab> {
        check_prefix(prefix)?;
        teardown(prefix);
        let lab = Lab {
            prefix: prefix.to_string(),
            keep: false,
        };
        lab.build()
            .with_context(|| format!("cannot build lab `{prefix}`"))?;
        Ok(lab)
    }

    fn build(&self) -> Result<()> {
        let (inet, router, lan) = (
            self.ns(Node::Inet),
            self.ns(Node::Router),
            self.ns(Node::Lan),
        );
        for ns in [&inet, &router, &lan] {
            run(Command::new("ip").args(["netns", "add", ns]))?;
        }
        run(Command::new("ip").args([
            "link", "add", "inet0", "netns", &inet, "type", "veth", "peer", "name", "wan0",
            "netns", &router,
        ]))?;
        run(Command::new("ip").args([
            "link", "add", "lan0", "netns", &router, "type", "veth", "peer", "name", "eth0",
            "netns", &lan,
        ]))?;
        for ns in [&inet, &router, &lan] {
            // No router advertisements or autoconf: addresses are static.
            sysctl(ns, "net.ipv6.conf.all.accept_ra", "0")?;
            sysctl(ns, "net.ipv6.conf.default.accept_ra", "0")?;
        }
        sysctl(&router, "net.ipv4.ip_forward", "1")?;
        sysctl(&router, "net.ipv6.conf.all.forwarding", "1")?;

        let mut script = String::from(
            "link set lo up\n\
             link set inet0 up\n\
             addr add 198.18.0.2/24 dev inet0\n\
             addr add 2001:db8::2/64 dev inet0 nodad\n\
             route add 198.18.1.0/24 via 198.18.0.1\n\
             route add 2001:db8:1::/64 via 2001:db8::1\n",
        );
        for i in addr::EXTRA_FIRST..=addr::EXTRA_LAST {
            script.push_str(&format!("addr add 198.18.0.{i}/32 dev inet0\n"));
        }
        ip_batch(&inet, &script)?;
        ip_batch(
            &router,
            "link set lo up\n\
             link set wan0 up\n\
             link set lan0 up\n\
             addr add 198.18.0.1/24 dev wan0\n\
             addr add 2001:db8::1/64 dev wan0 nodad\n\
             addr add 198.18.1.1/24 dev lan0\n\
             addr add 2001:db8:1::1/64 dev lan0 nodad\n",
        )?;
        ip_batch(
            &lan,
            "link set lo up\n\
             link set eth0 up\n\
             addr add 198.18.1.2/24 dev eth0\n\
             addr add 2001:db8:1::2/64 dev eth0 nodad\n\
             route add default via 198.18.1.1\n\
             route add default via 2001:db8:1::1\n",
        )?;
        Ok(())
    }

    /// A second uplink for a multi-homed router: `wan1` (198.18.2.1,
    /// 2001:db8:2::1) in the router, `inet1` (198.18.2.2, 2001:db8:2::2)
    /// on the inet side; and routing made asymmetric: the inet side
    /// reaches the lan through `wan1`, while the router still reaches the
    /// inet hosts through `wan0`. So a flow the lan opens leaves by wan0
    /// and its replies come back on wan1, from the address the flow went to
    /// (reverse-path filtering off, as on a router with asymmetric uplinks).
    pub fn add_second_uplink(&self) -> Result<()> {
        let (inet, router) = (self.ns(Node::Inet), self.ns(Node::Router));
        run(Command::new("ip").args([
            "link", "add", "inet1", "netns", &inet, "type", "veth", "peer", "name", "wan1",
            "netns", &router,
        ]))?;
        for key in ["all", "default", "wan0", "wan1"] {
            sysctl(&router, &format!("net.ipv4.conf.{key}.rp_filter"), "0")?;
        }
        ip_batch(
            &router,
            "link set wan1 up\n\
             addr add 198.18.2.1/24 dev wan1\n\
             addr add 2001:db8:2::1/64 dev wan1 nodad\n",
        )?;
        ip_batch(
            &inet,
            "link set inet1 up\n\
             addr add 198.18.2.2/24 dev inet1\n\
             addr add 2001:db8:2::2/64 dev inet1 nodad\n\
             route replace 198.18.1.0/24 via 198.18.2.1 dev inet1 src 198.18.0.2\n\
             route replace 2001:db8:1::/64 via 2001:db8:2::1 dev inet1 src 2001:db8::2\n",
        )?;
        Ok(())
    }

    /// The namespace name of a node.
    pub fn ns(&self, node: Node) -> String {
        format!("{}-{}", self.prefix, node.suffix())
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// A command that runs `program` inside `node`.
    pub fn command(&self, node: Node, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.ns(node), program]);
        c
    }

    /// Runs `program args` inside `node`, failing on a non-zero exit.
    pub fn exec(&self, node: Node, program: &str, args: &[&str]) -> Result<Output> {
        run(self.command(node, program).args(args))
    }

    /// MAC address of an interface inside a node.
    pub fn mac(&self, node: Node, iface: &str) -> Result<String> {
        let out = self.exec(node, "cat", &[&format!("/sys/class/net/{iface}/address")])?;
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    /// The router's WAN MAC, which masscan and zmap need as `--router-mac`/`-G`.
    pub fn router_wan_mac(&self) -> Result<String> {
        self.mac(Node::Router, "wan0")
    }

    /// Keeps the lab after this value is dropped (`cargo xtask lab up`).
    pub fn keep(mut self) {
        self.keep = true;
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if !self.keep {
            teardown(&self.prefix);
        }
    }
}

/// Removes the namespaces of a lab (and with them its veths). Idempotent.
pub fn teardown(prefix: &str) {
    for node in [Node::Inet, Node::Router, Node::Lan] {
        let ns = format!("{prefix}-{}", node.suffix());
        if std::path::Path::new("/var/run/netns").join(&ns).exists() {
            let _ = Command::new("ip")
                .args(["netns", "del", &ns])
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// A fresh, empty directory for `test`'s output under the temp dir.
pub fn out_dir(test: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("fireplot-test-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

/// A prefix unique to this process and call, for tests that run side by side.
pub fn unique_prefix(tag: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let pid = std::process::id() % 100_000;
    let tag: String = tag.chars().take(3).collect();
    format!("{tag}{pid}{n}")
}

/// Environment variable naming the file where skipped tests are recorded
/// (set by `cargo xtask test`, which counts them as skipped, not passed).
pub const SKIP_LOG_ENV: &str = "FIREPLOT_SKIP_LOG";

/// Why privileged tests skip; `cargo xtask test` prints it with the count.
pub const SKIP_REASON: &str =
    "needs root (network namespaces, XDP, BPF_PROG_TEST_RUN); run `sudo -E cargo xtask test`";

/// Gate for privileged tests: true when they can run. Under `CI=true` a
/// missing privilege is a failure, never a skip; elsewhere the test says
/// why it skips and records itself in `$FIREPLOT_SKIP_LOG` (libtest can only
/// count a test that returns as passed).
pub fn privileged(test: &str) -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    can_run(test, root, SKIP_REASON)
}

/// Why browser tests skip.
pub const BROWSER_SKIP_REASON: &str =
    "needs chromium and chromium-driver; `cargo xtask setup` installs them";

/// Gate for the browser tests: chromedriver must be installed.
pub fn browser(test: &str) -> bool {
    let found = std::process::Command::new("chromedriver")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    can_run(test, found, BROWSER_SKIP_REASON)
}

/// True when `ok`; otherwise a failure under CI, and elsewhere a skip
/// said on stderr and recorded in `$FIREPLOT_SKIP_LOG`.
pub fn can_run(test: &str, ok: bool, reason: &str) -> bool {
    if ok {
        return true;
    }
    if std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0") {
        panic!("{test}: this test must run under CI, but it cannot here: {reason}");
    }
    eprintln!("{test}: SKIPPED: {reason}");
    if let Some(path) = std::env::var_os(SKIP_LOG_ENV) {
        use std::io::Write;
        // One short line per skip: O_APPEND keeps lines of parallel tests whole.
        let line = format!("{test}\t{reason}\n");
        let written = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .and_then(|mut f| f.write_all(line.as_bytes()));
        if let Err(e) = written {
            panic!("{test}: cannot record the skip in {path:?}: {e}");
        }
    }
    false
}

/// Pins the calling thread to one CPU, so BPF_PROG_TEST_RUN runs the
/// program on that CPU's per-CPU maps (the rate limiter's share, counters).
pub fn pin_to_cpu(cpu: usize) {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; CPU_SET writes within it.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: as above; `cpu` is below CPU_SETSIZE for any machine we run on.
    unsafe { libc::CPU_SET(cpu, &mut set) };
    // SAFETY: pid 0 is the calling thread; the set is initialised.
    let rc = unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) };
    assert_eq!(
        rc,
        0,
        "sched_setaffinity to CPU {cpu}: {}",
        std::io::Error::last_os_error()
    );
}
