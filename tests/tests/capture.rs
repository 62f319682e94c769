//! Every capture the lab's own tools write reads whole: tcpdump with a
//! snap length of 96, with nanosecond timestamps, on `any` (Linux cooked
//! v1 and v2), on a tun device (raw IP, and as 228/229 after editcap),
//! tshark writing pcapng of two interfaces of two link types, and frames
//! with 802.1Q and QinQ tags. Each file replayed: every frame counted
//! (frames read = what tcpdump or capinfos counts), and the events and
//! kinds of the scans in it.

use std::{
    collections::BTreeSet,
    os::fd::AsRawFd,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Duration,
};

use fireplot_tests::{
    addr,
    packets::{flags::SYN, ip_part, v4, v4_vlan, v6, Vlan, L4},
    privileged,
    sensor::{fireplot_bin, read_collected, read_lines, Collected},
    traffic::{in_netns, nmap, Tap},
    unique_prefix, Lab, Node,
};
use serde_json::Value;

fn out_dir(test: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("fireplot-test-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("temp dir");
    d
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
    let name = path
        .file_name()
        .expect("name")
        .to_string_lossy()
        .to_string();
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
    [
        "src", "dst", "proto", "sport", "dport", "flags", "class", "len",
    ]
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
    addr::LAN_V4
        .parse::<std::net::Ipv4Addr>()
        .expect("v4")
        .octets()
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
    let lan6: [u8; 16] = addr::LAN_V6
        .parse::<std::net::Ipv6Addr>()
        .expect("v6")
        .octets();
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
                result = Err(anyhow::anyhow!(
                    "sendto: {}",
                    std::io::Error::last_os_error()
                ));
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
        assert!(
            out.status.success(),
            "ip {cmd}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let p = |name: &str| dir.join(name).to_string_lossy().to_string();
    // A large buffer (KiB): seven captures share two cores.
    let common = ["-n", "-U", "--immediate-mode", "-B", "16384"];
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
        start(
            Node::Router,
            "tcpdump",
            td("wan0", &["-s", "96"], "snap96.pcap"),
        ),
        start(
            Node::Router,
            "tcpdump",
            td("wan0", &["--time-stamp-precision", "nano"], "nano.pcap"),
        ),
        start(Node::Router, "tcpdump", td("tun0", &[], "tun.pcap")),
        start(
            Node::Lan,
            "tcpdump",
            td("any", &["-y", "LINUX_SLL"], "any.pcap"),
        ),
        start(Node::Lan, "tcpdump", td("any", &[], "any2.pcap")),
        start(
            Node::Router,
            "tshark",
            ["-i", "wan0", "-i", "tun0", "-B", "16", "-q", "-w"]
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

/// The SYNs (no ACK) of a capture as tshark reads it: source, destination
/// port, and the frame's length as Ethernet (14 bytes, 4 a VLAN tag, and
/// the IP datagram's own length, so a frame the snap length cut counts
/// whole).
fn tool_syns(path: &Path) -> Vec<(String, u64, u64)> {
    let out = Command::new("tshark")
        .args(["-n", "-r"])
        .arg(path)
        .args(["-T", "fields", "-E", "separator=;"])
        .args(["-e", "ip.src", "-e", "ipv6.src", "-e", "tcp.dstport"])
        .args([
            "-e",
            "ip.len",
            "-e",
            "ipv6.plen",
            "-e",
            "vlan.id",
            "-e",
            "ieee8021ad.id",
        ])
        .args([
            "-Y",
            "tcp.flags.syn == 1 && tcp.flags.ack == 0 && !icmp && !icmpv6",
        ])
        .output()
        .expect("tshark -r");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut v: Vec<(String, u64, u64)> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split(';').collect();
            let n = |s: &str| s.parse::<u64>().unwrap_or_else(|_| panic!("{l}"));
            let (src, ip_len) = if f[0].is_empty() {
                (f[1], n(f[4]) + 40)
            } else {
                (f[0], n(f[3]))
            };
            // 802.1Q tags, and the 802.1ad one of a QinQ frame.
            let tags: u64 = f[5..7]
                .iter()
                .map(|t| {
                    if t.is_empty() {
                        0
                    } else {
                        t.split(',').count() as u64
                    }
                })
                .sum();
            (src.to_string(), n(f[2]), 14 + 4 * tags + ip_len)
        })
        .collect();
    v.sort();
    v
}

/// The SYN events of a replay, as [`tool_syns`] lists them.
fn syn_events(c: &Collected) -> Vec<(String, u64, u64)> {
    let mut v: Vec<(String, u64, u64)> = c
        .events
        .iter()
        .filter(|e| e["proto"] == "tcp" && e["flags"] == "SYN")
        .map(|e| {
            let n = |k: &str| e[k].as_u64().unwrap_or_else(|| panic!("{k}: {e}"));
            (
                e["src"].as_str().unwrap_or("").to_string(),
                n("dport"),
                n("len"),
            )
        })
        .collect();
    v.sort();
    v
}

/// A capture replayed: every frame read, and a SYN event (with the
/// frame's length on the wire) for every SYN tshark finds in the file.
fn check(dir: &Path, file: &str) -> Collected {
    let path = dir.join(file);
    let c = replay(&path, dir);
    let want = tool_syns(&path);
    assert!(!want.is_empty(), "{file}: no SYN captured");
    assert_eq!(
        syn_events(&c),
        want,
        "{file}: one event per SYN, its length the wire's"
    );
    c
}

/// The link type in a pcap's file header (little-endian: written here).
fn link_type(path: &Path) -> u32 {
    let b = std::fs::read(path).expect("read");
    u32::from_le_bytes([b[20], b[21], b[22], b[23]])
}

/// The destination ports of the SYNs from `src` a capture holds.
fn syn_ports(syns: &[(String, u64, u64)], src: &str) -> BTreeSet<u64> {
    syns.iter().filter(|s| s.0 == src).map(|s| s.1).collect()
}

/// The corpus replayed, file by file.
fn check_corpus(dir: &Path) {
    let inet = addr::INET_V4;
    let tun4 = std::net::Ipv4Addr::from(TUN_SRC_V4).to_string();
    let tun6 = std::net::Ipv6Addr::from(TUN_SRC_V6).to_string();
    let vlan = std::net::Ipv4Addr::from(VLAN_SRC).to_string();
    // Ethernet, whole frames, µs; tagged frames among them.
    let eth = check(dir, "eth.pcap");
    assert!(kinds(&eth, inet).contains("port_scan"), "{:?}", eth.alerts);
    assert!(
        kinds(&eth, addr::INET_V6).contains("port_scan"),
        "{:?}",
        eth.alerts
    );
    let tagged = syn_ports(&syn_events(&eth), &vlan);
    assert!(
        tagged.iter().any(|p| *p < 4010) && tagged.iter().any(|p| *p >= 4010),
        "802.1Q and QinQ SYNs both replayed: {tagged:?}"
    );
    // Snap length 96: the cut frames counted, as many as tshark says.
    let snap = check(dir, "snap96.pcap");
    let cut = Command::new("tshark")
        .args(["-n", "-r"])
        .arg(dir.join("snap96.pcap"))
        .args(["-Y", "frame.len > frame.cap_len"])
        .output()
        .expect("tshark");
    let cut = cut.stdout.iter().filter(|b| **b == b'\n').count() as u64;
    assert!(cut > 0, "pings and tagged frames are longer than 96 bytes");
    assert_eq!(
        snap.stats["capture"]["cut"].as_u64(),
        Some(cut),
        "frames cut by -s 96"
    );
    assert!(
        kinds(&snap, inet).contains("port_scan"),
        "{:?}",
        snap.alerts
    );
    // Nanosecond timestamps kept (µs ones end in 000 ns).
    let nano = check(dir, "nano.pcap");
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
    // Linux cooked v1 (`-y LINUX_SLL`) and v2 (`-i any`'s default since
    // libpcap 1.10) on the LAN host; its answers are
    // the inside's (egress): no events from it.
    for (file, link) in [("any.pcap", 113), ("any2.pcap", 276)] {
        let c = check(dir, file);
        assert_eq!(link_type(&dir.join(file)), link, "{file}");
        assert!(
            kinds(&c, inet).contains("port_scan"),
            "{file}: {:?}",
            c.alerts
        );
        for lan in [addr::LAN_V4, addr::LAN_V6] {
            assert_eq!(from(&c, lan), Vec::<String>::new(), "{file}: from {lan}");
        }
    }
    // Raw IP from the tun (101), and the same frames as 228 and 229.
    let tun = check(dir, "tun.pcap");
    assert_eq!(link_type(&dir.join("tun.pcap")), 101);
    assert!(dports(&tun, &tun4).is_subset(&(3000..3020).collect()));
    assert!(dports(&tun, &tun6).is_subset(&(3000..3010).collect()));
    for (filter, encap, link) in [("ip", "rawip4", 228), ("ip6", "rawip6", 229)] {
        let one = dir.join(format!("tun-{filter}.pcap"));
        let out = Command::new("tcpdump")
            .args(["-n", "-r"])
            .arg(dir.join("tun.pcap"))
            .arg("-w")
            .arg(&one)
            .arg(filter)
            .output()
            .expect("tcpdump -r");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let typed = format!("tun-{encap}.pcap");
        let out = Command::new("editcap")
            .args(["-F", "pcap", "-T", encap])
            .arg(&one)
            .arg(dir.join(&typed))
            .output()
            .expect("editcap");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(link_type(&dir.join(&typed)), link, "editcap -T {encap}");
        check(dir, &typed);
    }
    // tshark's pcapng: wan0 (Ethernet) and tun0 (raw IP) in one file.
    let ng = check(dir, "two.pcapng");
    for src in [inet, tun4.as_str(), tun6.as_str()] {
        assert!(!from(&ng, src).is_empty(), "pcapng: events from {src}");
    }
    assert!(kinds(&ng, inet).contains("port_scan"), "{:?}", ng.alerts);
}
