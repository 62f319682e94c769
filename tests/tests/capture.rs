//! Every capture the lab's own tools write reads whole: tcpdump with a
//! snap length of 96, with nanosecond timestamps, on `any` (Linux cooked
//! v1 and v2), on a tun device (raw IP, and as 228/229 after editcap),
//! tshark writing pcapng of two interfaces of two link types, and frames
//! with 802.1Q and QinQ tags. Each file replayed: every frame counted
//! (frames read = what tcpdump or capinfos counts), and the events and
//! kinds of the scans in it.

use std::{
    collections::BTreeSet,
    io::{BufRead, BufReader},
    os::fd::AsRawFd,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use fireplot_tests::{
    addr,
    packets::{flags::SYN, ip_part, v4, v4_vlan, v6, Vlan, L4},
    privileged,
    sensor::{fireplot_bin, read_collected, read_lines, Collected},
    traffic::{in_netns, nmap},
    unique_prefix, Lab, Node,
};
use serde_json::Value;

fn out_dir(test: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("fireplot-test-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

/// A capturing process (tcpdump or tshark) in a lab node, until stopped
/// or dropped.
struct Tap(Child);

impl Tap {
    fn start(lab: &Lab, node: Node, program: &str, args: &[&str]) -> Tap {
        let mut child = lab
            .command(node, program)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("{program} (installed by `cargo xtask setup`): {e}"));
        let err = child.stderr.take().expect("stderr");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
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
    fn stop(mut self) {
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

/// Frames in a capture as the tools count them: tcpdump, or capinfos for
/// a pcapng of several link types (libpcap reads one link type a file).
fn tools_count(path: &Path) -> u64 {
    let out = Command::new("capinfos")
        .args(["-c", "-M"])
        .arg(path)
        .output()
        .expect("capinfos");
    let text = String::from_utf8_lossy(&out.stdout);
    let n: u64 = text
        .lines()
        .find_map(|l| l.split_once("Number of packets:"))
        .and_then(|(_, n)| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("capinfos {}: {text}", path.display()));
    let tcpdump = Command::new("tcpdump")
        .args(["-n", "-r"])
        .arg(path)
        .stderr(Stdio::null())
        .output()
        .expect("tcpdump -r");
    if tcpdump.status.success() {
        let lines = tcpdump.stdout.iter().filter(|b| **b == b'\n').count() as u64;
        assert_eq!(lines, n, "tcpdump -r and capinfos count {}", path.display());
    }
    n
}

/// `fireplot replay` of a capture (the LAN inside), its events, alerts and
/// summary.
fn replay(path: &Path, dir: &Path) -> Collected {
    let name = path.file_name().expect("name").to_string_lossy().to_string();
    let (events, stats, alerts) = (
        dir.join(format!("{name}.events")),
        dir.join(format!("{name}.stats")),
        dir.join(format!("{name}.alerts")),
    );
    let out = Command::new(fireplot_bin())
        .args(["replay", "--pcap"])
        .arg(path)
        .args(["--inside", addr::LAN_NET_V4, "--inside", addr::LAN_NET_V6])
        .args(["--stats-json", "--stats-out"])
        .arg(&stats)
        .arg("--events-out")
        .arg(&events)
        .arg("--alerts")
        .arg(&alerts)
        .output()
        .expect("fireplot replay");
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "replay of {name} failed: {log}");
    let mut c = read_collected(&events, &stats).expect("read");
    c.alerts = read_lines(&alerts).expect("alerts");
    // Every frame accounted for: read = what the tools count, and each
    // read frame replayed (every link type here is one fireplot reads).
    let cap = &c.stats["capture"];
    let frames = cap["frames"].as_u64().expect("capture.frames");
    assert_eq!(frames, tools_count(path), "{name}: frames read");
    assert_eq!(cap["not_read"], 0, "{name}: {cap}");
    assert_eq!(cap["replayed"].as_u64(), Some(frames), "{name}: {cap}");
    c
}

/// An event without its time and TTL, as a comparable line.
fn key(e: &Value) -> String {
    ["src", "dst", "proto", "sport", "dport", "flags", "class", "len"]
        .iter()
        .map(|k| format!("{k}={}", e[*k]))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The events from `src`, sorted.
fn from(c: &Collected, src: &str) -> Vec<String> {
    let mut v: Vec<String> = c
        .events
        .iter()
        .filter(|e| e["src"] == src)
        .map(key)
        .collect();
    v.sort();
    v
}

/// The destination ports of the events from `src`.
fn dports(c: &Collected, src: &str) -> BTreeSet<u64> {
    c.events
        .iter()
        .filter(|e| e["src"] == src)
        .filter_map(|e| e["dport"].as_u64())
        .collect()
}

/// The kinds of alert naming `src`.
fn kinds(c: &Collected, src: &str) -> BTreeSet<String> {
    c.alerts
        .iter()
        .filter(|a| a["sources"].to_string().contains(&format!("\"{src}\"")))
        .filter_map(|a| a["kind"].as_str().map(str::to_string))
        .collect()
}

const TUN_SRC_V4: [u8; 4] = [198, 18, 2, 9];
const TUN_SRC_V6: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9];
const VLAN_SRC: [u8; 4] = [198, 18, 0, 77];

fn lan_v4() -> [u8; 4] {
    addr::LAN_V4.parse::<std::net::Ipv4Addr>().expect("v4").octets()
}

fn syn(dport: u16) -> L4 {
    L4::Tcp {
        sport: 40000,
        dport,
        flags: SYN,
    }
}

/// Writes IP packets into tun device `name` of namespace `ns` (they
/// arrive on it as received): 20 IPv4 SYNs to ports 3000-3019 and 10
/// IPv6 ones to 3000-3009.
fn through_tun(ns: &str, name: &'static str) {
    let lan6: [u8; 16] = addr::LAN_V6.parse::<std::net::Ipv6Addr>().expect("v6").octets();
    let lan4 = lan_v4();
    in_netns(ns, move || {
        let tun = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/net/tun")?;
        // struct ifreq: the name, then ifr_flags (IFF_TUN | IFF_NO_PI).
        let mut ifr = [0u8; 40];
        ifr[..name.len()].copy_from_slice(name.as_bytes());
        ifr[16..18].copy_from_slice(&(0x0001u16 | 0x1000).to_ne_bytes());
        const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
        // SAFETY: TUNSETIFF with a 40-byte ifreq on our own fd.
        if unsafe { libc::ioctl(tun.as_raw_fd(), TUNSETIFF, ifr.as_mut_ptr()) } != 0 {
            anyhow::bail!("TUNSETIFF: {}", std::io::Error::last_os_error());
        }
        let mut packets: Vec<Vec<u8>> = (0..20)
            .map(|i| ip_part(&v4(TUN_SRC_V4, lan4, syn(3000 + i))))
            .collect();
        packets.extend((0..10).map(|i| ip_part(&v6(TUN_SRC_V6, lan6, syn(3000 + i)))));
        for p in packets {
            use std::io::Write;
            (&tun).write_all(&p)?;
            std::thread::sleep(Duration::from_millis(2));
        }
        // Time for the kernel's replies to go out before the fd closes.
        std::thread::sleep(Duration::from_millis(200));
        Ok(())
    })
    .join()
    .expect("tun thread")
    .expect("tun writes");
}

/// Sends 10 SYNs with one 802.1Q tag (ports 4000-4009) and 10 with two
/// (802.1ad outer, ports 4010-4019) out of `iface` of namespace `ns`.
fn tagged(ns: &str, iface: &'static str) {
    let lan4 = lan_v4();
    in_netns(ns, move || {
        // SAFETY: a packet socket of our own, closed below.
        let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0) };
        if fd < 0 {
            anyhow::bail!("AF_PACKET: {}", std::io::Error::last_os_error());
        }
        let cname = std::ffi::CString::new(iface)?;
        // SAFETY: a NUL-terminated name.
        let ifindex = unsafe { libc::if_nametoindex(cname.as_ptr()) };
        // SAFETY: zeroed sockaddr_ll is valid; fields set below.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_ifindex = ifindex as i32;
        sll.sll_halen = 6;
        let mut result = Ok(());
        for i in 0..20u16 {
            let tags = if i < 10 {
                Vlan::Single(7)
            } else {
                Vlan::Double(100, 7)
            };
            let f = v4_vlan(tags, VLAN_SRC, lan4, syn(4000 + i), &[]);
            // SAFETY: sendto with our buffer and a sockaddr_ll.
            let n = unsafe {
                libc::sendto(
                    fd,
                    f.as_ptr().cast(),
                    f.len(),
                    0,
                    (&sll as *const libc::sockaddr_ll).cast(),
                    std::mem::size_of::<libc::sockaddr_ll>() as u32,
                )
            };
            if n != f.len() as isize {
                result = Err(anyhow::anyhow!("sendto: {}", std::io::Error::last_os_error()));
                break;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        // SAFETY: our fd.
        unsafe { libc::close(fd) };
        result
    })
    .join()
    .expect("vlan thread")
    .expect("tagged frames");
}

#[test]
fn every_capture_the_lab_writes_replays_whole() {
    if !privileged("every_capture_the_lab_writes_replays_whole") {
        return;
    }
    let lab = Lab::up(&unique_prefix("cap")).expect("lab");
    let dir = out_dir("capture");
    let router = lab.ns(Node::Router);
    // A tun device on the router (raw IP), routed like a third network.
    for cmd in [
        "tuntap add dev tun0 mode tun",
        "link set tun0 up",
        "addr add 198.18.2.1/24 dev tun0",
        "addr add 2001:db8:2::1/64 dev tun0 nodad",
    ] {
        let mut a = vec!["-n", &router];
        a.extend(cmd.split(' '));
        let out = Command::new("ip").args(&a).output().expect("ip");
        assert!(out.status.success(), "ip {cmd}: {}", String::from_utf8_lossy(&out.stderr));
    }
    let p = |name: &str| dir.join(name).to_string_lossy().to_string();
    let common = ["-n", "-U", "--immediate-mode"];
    let td = |iface: &str, extra: &[&str], file: &str| -> Vec<String> {
        let mut a: Vec<String> = vec!["-i".into(), iface.into()];
        a.extend(common.iter().map(|s| s.to_string()));
        a.extend(extra.iter().map(|s| s.to_string()));
        a.extend(["-w".to_string(), p(file)]);
        a
    };
    let start = |node: Node, program: &str, args: Vec<String>| {
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        Tap::start(&lab, node, program, &a)
    };
    let taps = vec![
        start(Node::Router, "tcpdump", td("wan0", &[], "eth.pcap")),
        start(Node::Router, "tcpdump", td("wan0", &["-s", "96"], "snap96.pcap")),
        start(
            Node::Router,
            "tcpdump",
            td("wan0", &["--time-stamp-precision", "nano"], "nano.pcap"),
        ),
        start(Node::Router, "tcpdump", td("tun0", &[], "tun.pcap")),
        start(Node::Lan, "tcpdump", td("any", &[], "any.pcap")),
        start(Node::Lan, "tcpdump", td("any", &["-y", "LINUX_SLL2"], "any2.pcap")),
        start(
            Node::Router,
            "tshark",
            ["-i", "wan0", "-i", "tun0", "-q", "-w"]
                .iter()
                .map(|s| s.to_string())
                .chain([p("two.pcapng")])
                .collect(),
        ),
    ];
    // Scans from the inet side (v4 and v6), pings, tagged frames on the
    // WAN link, and packets arriving by the tun.
    nmap(&lab, &["-sS", "-p", "1-100", addr::LAN_V4]).expect("nmap");
    nmap(&lab, &["-6", "-sS", "-p", "1-50", addr::LAN_V6]).expect("nmap -6");
    for (flag, to) in [("-4", addr::LAN_V4), ("-6", addr::LAN_V6)] {
        lab.exec(Node::Inet, "ping", &[flag, "-c", "2", "-i", "0.2", to])
            .expect("ping");
    }
    tagged(&lab.ns(Node::Inet), "inet0");
    through_tun(&router, "tun0");
    std::thread::sleep(Duration::from_millis(500));
    for t in taps {
        t.stop();
    }
    drop(lab);
    check_corpus(&dir);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The corpus replayed, file by file.
fn check_corpus(dir: &Path) {
    let inet = addr::INET_V4;
    let tun4 = std::net::Ipv4Addr::from(TUN_SRC_V4).to_string();
    let tun6 = std::net::Ipv6Addr::from(TUN_SRC_V6).to_string();
    let vlan = std::net::Ipv4Addr::from(VLAN_SRC).to_string();
    // Ethernet, whole frames: the reference.
    let eth = replay(&dir.join("eth.pcap"), dir);
    let scan = from(&eth, inet);
    assert!(scan.len() >= 100, "the v4 scan's probes: {}", scan.len());
    assert!(from(&eth, addr::INET_V6).len() >= 50, "the v6 scan's probes");
    assert!(kinds(&eth, inet).contains("port_scan"), "{:?}", eth.alerts);
    assert_eq!(
        dports(&eth, &vlan),
        (4000..4020).collect(),
        "802.1Q and QinQ tagged SYNs, each an event"
    );
    // Snap length 96: every frame read, the cut ones counted, the same
    // events with their lengths on the wire.
    let snap = replay(&dir.join("snap96.pcap"), dir);
    let cut = snap.stats["capture"]["cut"].as_u64().unwrap_or(0);
    let longer = frames_longer_than(&dir.join("eth.pcap"), 96);
    assert_eq!(cut, longer, "frames cut by -s 96");
    assert!(cut > 0, "some frames were longer than 96 bytes");
    for src in [inet, addr::INET_V6, vlan.as_str()] {
        assert_eq!(from(&snap, src), from(&eth, src), "snap 96, from {src}");
    }
    assert_eq!(kinds(&snap, inet), kinds(&eth, inet));
    // Nanosecond timestamps: the same events, times within a millisecond.
    let nano = replay(&dir.join("nano.pcap"), dir);
    for src in [inet, addr::INET_V6, vlan.as_str()] {
        assert_eq!(from(&nano, src), from(&eth, src), "nano, from {src}");
    }
    // µs times end in 000 ns; the nanosecond capture's do not all.
    let sub_us = |c: &Collected| {
        c.events
            .iter()
            .filter_map(|e| e["ts"].as_str())
            .filter(|t| !t.ends_with("000Z"))
            .count()
    };
    assert_eq!(sub_us(&eth), 0, "µs times");
    assert!(
        sub_us(&nano) > nano.events.len() / 2,
        "nanosecond times kept: {:?}",
        nano.events.first().map(|e| e["ts"].clone())
    );
    // Linux cooked v1 and v2 on the LAN host (`-i any`): the scans'
    // probes as they arrived there (one hop on: the TTL differs).
    for file in ["any.pcap", "any2.pcap"] {
        let c = replay(&dir.join(file), dir);
        for src in [inet, addr::INET_V6] {
            assert_eq!(from(&c, src), from(&eth, src), "{file}, from {src}");
        }
        assert!(kinds(&c, inet).contains("port_scan"), "{file}: {:?}", c.alerts);
        // The LAN host's answers are the inside's (egress): no events.
        for lan in [addr::LAN_V4, addr::LAN_V6] {
            assert_eq!(from(&c, lan), Vec::<String>::new(), "{file}: from {lan}");
        }
        let header = std::fs::read(dir.join(file)).expect("read");
        let link = u16::from_le_bytes([header[20], header[21]]);
        assert_eq!(link, if file == "any.pcap" { 113 } else { 276 }, "{file}'s link type");
    }
    // Raw IP (101), and the same as 228 and 229.
    let tun = replay(&dir.join("tun.pcap"), dir);
    assert_eq!(std::fs::read(dir.join("tun.pcap")).expect("read")[20], 101, "raw IP");
    assert_eq!(dports(&tun, &tun4), (3000..3020).collect(), "raw IPv4 SYNs");
    assert_eq!(dports(&tun, &tun6), (3000..3010).collect(), "raw IPv6 SYNs");
    for (filter, encap, src, ports) in [
        ("ip", "rawip4", &tun4, 3000..3020),
        ("ip6", "rawip6", &tun6, 3000..3010),
    ] {
        let one = dir.join(format!("tun-{filter}.pcap"));
        let out = Command::new("tcpdump")
            .args(["-n", "-r"])
            .arg(dir.join("tun.pcap"))
            .arg("-w")
            .arg(&one)
            .arg(filter)
            .output()
            .expect("tcpdump -r");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let typed = dir.join(format!("tun-{encap}.pcap"));
        let out = Command::new("editcap")
            .args(["-F", "pcap", "-T", encap])
            .arg(&one)
            .arg(&typed)
            .output()
            .expect("editcap");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let want = if encap == "rawip4" { 228u8 } else { 229 };
        let bytes = std::fs::read(&typed).expect("typed");
        assert_eq!(bytes[20], want, "editcap wrote link type {want}");
        let c = replay(&typed, dir);
        assert_eq!(dports(&c, src), ports.collect(), "{encap}");
    }
    // tshark's pcapng: wan0 (Ethernet) and tun0 (raw IP) in one file.
    let ng = replay(&dir.join("two.pcapng"), dir);
    for src in [inet, addr::INET_V6, vlan.as_str(), &tun4, &tun6] {
        let reference = if src.starts_with("198.18.2") || src.starts_with("2001:db8:2") {
            &tun
        } else {
            &eth
        };
        assert_eq!(from(&ng, src), from(reference, src), "pcapng, from {src}");
    }
    assert_eq!(kinds(&ng, inet), kinds(&eth, inet));
}

/// Frames of a whole-frame pcap longer than `snap` bytes (what a snap
/// length of `snap` cuts).
fn frames_longer_than(path: &Path, snap: usize) -> u64 {
    let mut r = pcap_file::pcap::PcapReader::new(std::fs::File::open(path).expect("pcap"))
        .expect("pcap");
    let mut n = 0;
    while let Some(p) = r.next_packet() {
        n += u64::from(p.expect("packet").orig_len as usize > snap);
    }
    n
}
