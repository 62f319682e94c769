//! Ordinary traffic for the lab: servers on the inet side and clients on the
//! lan side, run on threads that enter a namespace with setns(2), plus
//! wrappers for the scanners. Every loop is bounded in count and time.

use std::{
    fs::File,
    io::{Read, Write},
    net::{SocketAddr, TcpListener, TcpStream, UdpSocket},
    os::fd::AsRawFd,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};

use crate::{addr, Lab, Node};

/// Runs `f` on a new thread inside network namespace `ns`.
pub fn in_netns<T, F>(ns: &str, f: F) -> JoinHandle<Result<T>>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T> + Send + 'static,
{
    let path = format!("/var/run/netns/{ns}");
    std::thread::spawn(move || {
        let file = File::open(&path).with_context(|| format!("cannot open {path}"))?;
        // SAFETY: valid fd of a network namespace; affects this thread only.
        if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            bail!("setns({path}): {}", std::io::Error::last_os_error());
        }
        f()
    })
}

/// TCP and UDP echo servers in the inet namespace (dual-stack on `[::]`).
pub struct Servers {
    stop: Arc<AtomicBool>,
    handles: Vec<JoinHandle<Result<u64>>>,
    pub tcp_port: u16,
    pub udp_port: u16,
}

impl Servers {
    pub fn start(lab: &Lab, tcp_port: u16, udp_port: u16) -> Result<Servers> {
        let stop = Arc::new(AtomicBool::new(false));
        let ns = lab.ns(Node::Inet);
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<()>>();
        let s = stop.clone();
        let tx = ready_tx.clone();
        let tcp = in_netns(&ns, move || {
            let l = match TcpListener::bind(("::", tcp_port)) {
                Ok(l) => l,
                Err(e) => {
                    let _ = tx.send(Err(e.into()));
                    bail!("bind tcp");
                }
            };
            l.set_nonblocking(true)?;
            let _ = tx.send(Ok(()));
            let mut served = 0;
            while !s.load(Ordering::Relaxed) {
                match l.accept() {
                    Ok((mut c, _)) => {
                        c.set_nonblocking(false)?;
                        c.set_read_timeout(Some(Duration::from_secs(2)))?;
                        let mut buf = [0u8; 2048];
                        while let Ok(n) = c.read(&mut buf) {
                            if n == 0 || c.write_all(&buf[..n]).is_err() {
                                break;
                            }
                        }
                        served += 1;
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
            Ok(served)
        });
        let s = stop.clone();
        let tx = ready_tx;
        let udp = in_netns(&ns, move || {
            let sock = match UdpSocket::bind(("::", udp_port)) {
                Ok(s) => s,
                Err(e) => {
                    let _ = tx.send(Err(e.into()));
                    bail!("bind udp");
                }
            };
            sock.set_read_timeout(Some(Duration::from_millis(50)))?;
            let _ = tx.send(Ok(()));
            let mut served = 0;
            let mut buf = [0u8; 2048];
            while !s.load(Ordering::Relaxed) {
                if let Ok((n, peer)) = sock.recv_from(&mut buf) {
                    sock.send_to(&buf[..n], peer)?;
                    served += 1;
                }
            }
            Ok(served)
        });
        for _ in 0..2 {
            ready_rx
                .recv_timeout(Duration::from_secs(10))
                .context("servers did not start")??;
        }
        Ok(Servers {
            stop,
            handles: vec![tcp, udp],
            tcp_port,
            udp_port,
        })
    }

    /// Stops the servers; returns how many TCP connections and UDP datagrams they served.
    pub fn stop(self) -> Result<(u64, u64)> {
        self.stop.store(true, Ordering::Relaxed);
        let mut counts = Vec::new();
        for h in self.handles {
            counts.push(
                h.join()
                    .map_err(|_| anyhow::anyhow!("server thread panicked"))??,
            );
        }
        Ok((counts[0], counts[1]))
    }
}

/// What the lan-side clients did.
#[derive(Debug, Default, Clone, Copy)]
pub struct Outbound {
    pub tcp_ok: u32,
    pub udp_ok: u32,
    pub ping_ok: u32,
    /// Distinct flows the clients opened: (protocol, local, remote) tuples,
    /// plus one per ping. The kernel may give a new UDP socket a port a
    /// closed one just used, so this is not always one per exchange.
    pub flows: usize,
}

/// Ordinary outbound traffic from the lan host to the inet servers, over
/// IPv4 and IPv6: `rounds` TCP echo exchanges and UDP echo exchanges per
/// family, and pings. Every reply must come back through the sensor.
pub fn outbound(lab: &Lab, servers: &Servers, rounds: u32) -> Result<Outbound> {
    let (tcp_port, udp_port) = (servers.tcp_port, servers.udp_port);
    let client = in_netns(&lab.ns(Node::Lan), move || {
        let mut o = Outbound::default();
        let mut tuples = std::collections::BTreeSet::new();
        for round in 0..rounds {
            for host in [addr::INET_V4, addr::INET_V6] {
                let ip: std::net::IpAddr = host.parse()?;
                let payload = format!("fireplot round {round} to {host}");
                let mut c = TcpStream::connect_timeout(
                    &SocketAddr::new(ip, tcp_port),
                    Duration::from_secs(3),
                )?;
                c.set_read_timeout(Some(Duration::from_secs(3)))?;
                tuples.insert((6u8, c.local_addr()?, c.peer_addr()?));
                c.write_all(payload.as_bytes())?;
                let mut buf = vec![0u8; payload.len()];
                c.read_exact(&mut buf)?;
                if buf == payload.as_bytes() {
                    o.tcp_ok += 1;
                }
                drop(c);
                let bind: SocketAddr = if ip.is_ipv4() {
                    "0.0.0.0:0".parse()?
                } else {
                    "[::]:0".parse()?
                };
                let u = UdpSocket::bind(bind)?;
                u.set_read_timeout(Some(Duration::from_secs(2)))?;
                u.send_to(payload.as_bytes(), SocketAddr::new(ip, udp_port))?;
                tuples.insert((17u8, u.local_addr()?, SocketAddr::new(ip, udp_port)));
                let mut buf = [0u8; 2048];
                if let Ok((n, _)) = u.recv_from(&mut buf) {
                    if &buf[..n] == payload.as_bytes() {
                        o.udp_ok += 1;
                    }
                }
            }
        }
        o.flows = tuples.len();
        Ok(o)
    });
    let mut o = client
        .join()
        .map_err(|_| anyhow::anyhow!("client thread panicked"))??;
    for host in [addr::INET_V4, addr::INET_V6] {
        let out = lab
            .command(Node::Lan, "ping")
            .args(["-c", "3", "-i", "0.2", "-W", "2", host])
            .output()
            .context("cannot run ping (iputils-ping missing? run `cargo xtask setup`)")?;
        if out.status.success() {
            o.ping_ok += 1;
            o.flows += 1;
        }
    }
    Ok(o)
}

/// A TCP port held open in a namespace (the kernel completes handshakes;
/// nothing is accepted), until dropped.
pub struct Listener {
    stop: std::sync::mpsc::Sender<()>,
    handle: Option<JoinHandle<Result<()>>>,
}

impl Listener {
    pub fn open(lab: &Lab, node: Node, port: u16) -> Result<Listener> {
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<std::result::Result<(), String>>();
        let handle = in_netns(&lab.ns(node), move || {
            let l = match TcpListener::bind(("::", port)) {
                Ok(l) => l,
                Err(e) => {
                    let _ = ready_tx.send(Err(e.to_string()));
                    bail!("bind tcp/{port}: {e}");
                }
            };
            let _ = ready_tx.send(Ok(()));
            // Bounded: a forgotten listener closes by itself.
            let _ = stopped.recv_timeout(Duration::from_secs(300));
            drop(l);
            Ok(())
        });
        match ready_rx.recv_timeout(Duration::from_secs(10)) {
            Ok(Ok(())) => Ok(Listener {
                stop,
                handle: Some(handle),
            }),
            Ok(Err(e)) => bail!("listener on tcp/{port}: {e}"),
            Err(_) => bail!("listener on tcp/{port} did not start"),
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        let _ = self.stop.send(());
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// zmap from `src` (an extra inet address) through the router's wan0, with
/// an empty blocklist (its default refuses 198.18.0.0/15).
pub fn zmap(
    lab: &Lab,
    target: &str,
    port: u16,
    src: &str,
    dir: &std::path::Path,
) -> Result<std::process::Output> {
    let mac = lab.router_wan_mac()?;
    let blocklist = dir.join("zmap-blocklist.conf");
    std::fs::write(&blocklist, "").context("zmap blocklist")?;
    let port = port.to_string();
    scanner(
        lab,
        "zmap",
        &[
            "-p",
            &port,
            "-i",
            "inet0",
            "-G",
            &mac,
            "-S",
            src,
            "-b",
            blocklist.to_str().context("path")?,
            "-r",
            "2000",
            "--cooldown-time",
            "1",
            "-o",
            "-",
            "-q",
            target,
        ],
        SCAN_LIMIT,
    )
}

/// Time limit of one lab scan.
pub const SCAN_LIMIT: Duration = Duration::from_secs(120);

/// An nmap SYN scan of `ports` on the lan host from the extra inet address
/// `src` (one probe per port).
pub fn nmap_syn_from(lab: &Lab, src: &str, ports: &str) -> Result<std::process::Output> {
    nmap(
        lab,
        &["-sS", "-S", src, "-e", "inet0", "-p", ports, addr::LAN_V4],
    )
}

/// nmap from the inet side with what every lab scan shares: no DNS, no host
/// discovery, no retransmissions (so each probe is sent once).
pub fn nmap(lab: &Lab, args: &[&str]) -> Result<std::process::Output> {
    let mut a = vec!["-n", "-Pn", "--max-retries", "0"];
    a.extend_from_slice(args);
    scanner(lab, "nmap", &a, SCAN_LIMIT)
}

/// masscan from the inet side, from `src` (an extra inet address), through
/// the router's wan0.
pub fn masscan(
    lab: &Lab,
    target: &str,
    ports: &str,
    rate: u32,
    src: &str,
) -> Result<std::process::Output> {
    let mac = lab.router_wan_mac()?;
    let ports = format!("-p{ports}");
    let rate = rate.to_string();
    scanner(
        lab,
        "masscan",
        &[
            target,
            &ports,
            "--rate",
            &rate,
            "--wait",
            "1",
            "--router-mac",
            &mac,
            "--adapter-ip",
            src,
            "-e",
            "inet0",
        ],
        SCAN_LIMIT,
    )
}

/// An hping3 SYN flood of port 80 of the lan host for `secs` seconds
/// (started; wait on the child).
pub fn hping3_flood(lab: &Lab, secs: u32) -> Result<std::process::Child> {
    lab.command(Node::Inet, "timeout")
        .args([
            "-s",
            "INT",
            &secs.to_string(),
            "hping3",
            "--flood",
            "-q",
            "-S",
            "-p",
            "80",
            addr::LAN_V4,
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .context("cannot start hping3")
}

/// Runs a scanner in the inet namespace with a time bound; its output is
/// returned, its failure is an error.
pub fn scanner(
    lab: &Lab,
    program: &str,
    args: &[&str],
    limit: Duration,
) -> Result<std::process::Output> {
    let started = Instant::now();
    let out = run_bounded(lab, program, args, limit)?;
    if !out.status.success() {
        bail!(
            "{program} {args:?} failed after {:.1} s ({}): {}",
            started.elapsed().as_secs_f64(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(out)
}

/// hping3 from the inet side, time-bounded, checked by what it says it
/// sent: it exits 1 when nothing answered, which for spoofed or one-way
/// traffic is the normal case, not a failure.
pub fn hping3_sent(lab: &Lab, args: &[&str], count: u32, limit: Duration) -> Result<()> {
    let out = run_bounded(lab, "hping3", args, limit)?;
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    let want = format!("{count} packets transmitted");
    if !text.contains(&want) {
        bail!(
            "hping3 {args:?} did not send its {count} packets ({}): {}",
            out.status,
            text.trim()
        );
    }
    Ok(())
}

/// Runs a program in the inet namespace under `timeout`; its output,
/// whatever its exit status.
fn run_bounded(
    lab: &Lab,
    program: &str,
    args: &[&str],
    limit: Duration,
) -> Result<std::process::Output> {
    let child = lab
        .command(Node::Inet, "timeout")
        .args([
            "--kill-after=5",
            &format!("{}", limit.as_secs().max(1)),
            program,
        ])
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start {program}"))?;
    Ok(child.wait_with_output()?)
}

/// tcpdump on wan0 writing `pcap`, for counting what of a source reached
/// the sensor's interface (a flood can overflow the veth queue before the
/// sensor sees a packet, which is not the sensor's loss). The filter runs
/// in the kernel, so a flood does not crowd the capture buffer.
pub struct WanCapture {
    child: std::process::Child,
    log: JoinHandle<String>,
}

impl WanCapture {
    /// Starts tcpdump and waits until it listens.
    pub fn start(lab: &Lab, pcap: &std::path::Path, filter: &str) -> Result<WanCapture> {
        use std::io::BufRead;
        let mut child = lab
            .command(Node::Router, "tcpdump")
            .args(["-i", "wan0", "-n", "-U", "-w"])
            .arg(pcap)
            .arg(filter)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .context("cannot start tcpdump")?;
        let stderr = child.stderr.take().context("piped stderr")?;
        let (tx, rx) = std::sync::mpsc::channel();
        let log = std::thread::spawn(move || {
            let mut all = String::new();
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                if line.contains("listening on") {
                    let _ = tx.send(());
                }
                all.push_str(&line);
                all.push('\n');
            }
            all
        });
        if rx.recv_timeout(Duration::from_secs(30)).is_err() {
            let _ = child.kill();
            let _ = child.wait();
            bail!("tcpdump did not start listening within 30 s");
        }
        Ok(WanCapture { child, log })
    }

    /// Stops tcpdump (SIGINT) and returns the packets it captured.
    pub fn stop(mut self) -> Result<u64> {
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
        self.child.wait()?;
        let text = self
            .log
            .join()
            .map_err(|_| anyhow::anyhow!("tcpdump's log reader panicked"))?;
        text.lines()
            .find(|l| l.contains("packets captured"))
            .and_then(|l| l.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .with_context(|| format!("no packet count in tcpdump's log: {text}"))
    }
}

/// One iptables `-j LOG` line of an inbound TCP SYN, as the kernel logs it,
/// at second `sec` (of 2026-11-20, UTC) and `micros` after it: what the
/// fleet's tests and bench feed `fireplot ingest`.
pub fn iptables_syn(sec: usize, micros: usize, src: &str, dst: &str, dport: u16) -> String {
    format!(
        "2026-11-20T{:02}:{:02}:{:02}.{:06}Z router kernel: [1.0] IN=eth0 OUT= MAC=00 SRC={src} DST={dst} LEN=60 TOS=0x00 PREC=0x00 TTL=50 ID=1 PROTO=TCP SPT=40000 DPT={dport} WINDOW=1024 RES=0x00 SYN URGP=0\n",
        (sec / 3600) % 24,
        (sec / 60) % 60,
        sec % 60,
        micros % 1_000_000
    )
}

/// `n` iptables/ip6tables `-j LOG` lines, one event each, in time order
/// from 2026-11-20 00:00 UTC (20 µs apart), in the bench detector's
/// realistic mix (`fireplot-bench`'s `mix`): 20 % background noise (one or
/// two probes per source to common ports), 60 % from 500 scanners walking
/// ports of 8 hosts, 15 % from 100 sweepers of port 443 over 256 hosts,
/// 5 % backscatter (SYN-ACKs from 20,000 victims); one line in ten UDP, one
/// in twenty IPv6. Written to `out`; returns the bytes written.
pub fn iptables_mix(n: usize, out: &mut impl std::io::Write) -> std::io::Result<u64> {
    let common = [
        22u16, 23, 80, 443, 445, 3389, 8080, 5060, 7547, 37777, 53, 123,
    ];
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    let mut bytes = 0u64;
    let mut line = String::with_capacity(256);
    for i in 0..n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let kind = x % 100;
        let (src, dport, flags): (u32, u16, &str) = match kind {
            0..=19 => (
                0x0b00_0000 + (i / 10) as u32 + (x >> 60) as u32 % 2,
                common[(x >> 8) as usize % common.len()],
                "SYN",
            ),
            20..=79 => (
                0x0c00_0000 + (x >> 40) as u32 % 500,
                (x >> 16) as u16 | 1,
                "SYN",
            ),
            80..=94 => (0x0d00_0000 + (x >> 40) as u32 % 100, 443, "SYN"),
            _ => (
                0x0e00_0000 + (x >> 20) as u32 % 20_000,
                (x >> 24) as u16 | 1024,
                "ACK SYN",
            ),
        };
        let host = (x >> 56) as u32 % if (80..=94).contains(&kind) { 256 } else { 8 };
        let t = i * 20;
        let (sec, micros) = (t / 1_000_000, t % 1_000_000);
        let stamp = format!(
            "2026-11-20T{:02}:{:02}:{:02}.{micros:06}Z router kernel: [1.0] IN=eth0 OUT= MAC=00 ",
            (sec / 3600) % 24,
            (sec / 60) % 60,
            sec % 60
        );
        line.clear();
        line.push_str(&stamp);
        let (a, d) = (std::net::Ipv4Addr::from(src), 0xc612_0000u32 + 256 + host);
        let dst = std::net::Ipv4Addr::from(d);
        let l4 = if x % 10 == 3 {
            format!("PROTO=UDP SPT=40000 DPT={dport} LEN=20")
        } else {
            format!("PROTO=TCP SPT=40000 DPT={dport} WINDOW=1024 RES=0x00 {flags} URGP=0")
        };
        if x % 20 == 7 {
            line.push_str(&format!(
                "SRC=2001:db8:{:x}:{:x}::1 DST=2001:db8:1::{:x} LEN=80 TC=0 HOPLIMIT=50 FLOWLBL=0 {l4}\n",
                src >> 16,
                src & 0xffff,
                host + 2
            ));
        } else {
            line.push_str(&format!(
                "SRC={a} DST={dst} LEN=60 TOS=0x00 PREC=0x00 TTL=50 ID=1 {l4}\n"
            ));
        }
        out.write_all(line.as_bytes())?;
        bytes += line.len() as u64;
    }
    Ok(bytes)
}

/// [`iptables_mix`] into a new file at `path`.
pub fn write_iptables_mix(path: &std::path::Path, n: usize) -> std::io::Result<u64> {
    use std::io::Write;
    let mut f = std::io::BufWriter::new(std::fs::File::create(path)?);
    let bytes = iptables_mix(n, &mut f)?;
    f.flush()?;
    Ok(bytes)
}

/// A capturing process (tcpdump or tshark) in a lab node, until stopped
/// or dropped.
pub struct Tap(std::process::Child);

impl Tap {
    pub fn start(lab: &Lab, node: Node, program: &str, args: &[&str]) -> Tap {
        let mut child = lab
            .command(node, program)
            .args(args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("{program} (installed by `cargo xtask setup`): {e}"));
        let err = child.stderr.take().expect("stderr");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufRead::lines(std::io::BufReader::new(err)).map_while(Result::ok)
            {
                // tcpdump: "listening on"; tshark: "Capturing on".
                if line.contains("listening on") || line.contains("Capturing on") {
                    let _ = tx.send(());
                }
            }
        });
        let tap = Tap(child);
        if rx.recv_timeout(Duration::from_secs(20)).is_err() {
            panic!("{program} {args:?} did not start capturing within 20 s");
        }
        tap
    }

    /// Stops it as an operator would (SIGINT: it writes what it has).
    pub fn stop(mut self) {
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(self.0.id() as i32, libc::SIGINT) };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("a capture did not stop within 10 s of SIGINT");
    }
}

impl Drop for Tap {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}
