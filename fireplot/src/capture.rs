//! Packet captures (pcap and pcapng, as tcpdump, tshark and dumpcap write
//! them) read frame by frame, each turned into the Ethernet frame the XDP
//! and TC programs parse, with its capture time and what the capture says
//! about its direction.

use std::{
    fs::File,
    io::{BufReader, Read},
    path::{Path, PathBuf},
};

use pcap_file::{
    pcap::PcapReader,
    pcapng::{blocks::interface_description::InterfaceDescriptionOption, Block, PcapNgReader},
    DataLink, PcapError,
};
use thiserror::Error;

/// Errors reading a capture. Frames read before an error stay valid.
#[derive(Debug, Error)]
pub enum CaptureError {
    #[error("cannot open capture `{path}`")]
    Open {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("`{path}` is not a pcap or pcapng capture ({detail})")]
    Format { path: PathBuf, detail: String },
    #[error(
        "`{path}` is cut short after frame {frames}: the rest of the file is not a whole frame"
    )]
    Truncated { path: PathBuf, frames: u64 },
    #[error("`{path}` is damaged after frame {frames}: {detail}")]
    Malformed {
        path: PathBuf,
        frames: u64,
        detail: String,
    },
}

/// One captured frame, as an Ethernet frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    /// Capture time, Unix ns.
    pub ts_ns: u64,
    /// The capture's interface (pcapng's interface id; 0 for pcap).
    pub iface: u32,
    /// Ethernet frame (a header is made up for captures without one).
    pub data: Vec<u8>,
    /// The frame's length on the wire, as `data` counts it: more than
    /// `data.len()` when the capture cut it (snap length).
    pub orig_len: usize,
    /// The source MAC, when the capture had Ethernet headers.
    pub src_mac: Option<[u8; 6]>,
    /// Linux cooked captures (`tcpdump -i any`) say whether the host sent it.
    pub outgoing: Option<bool>,
}

#[derive(Clone, Debug)]
struct Iface {
    link: DataLink,
    /// Nanoseconds per timestamp unit, as numerator/denominator.
    ns_num: u128,
    ns_den: u128,
}

enum Inner {
    Pcap(PcapReader<BufReader<File>>, DataLink),
    PcapNg(Box<PcapNgReader<BufReader<File>>>),
}

/// A capture being read.
pub struct Capture {
    path: PathBuf,
    inner: Inner,
    /// Interfaces of the current pcapng section.
    ifaces: Vec<Iface>,
    /// Every interface seen (id, name), in order.
    pub seen: Vec<(u32, String)>,
    /// Frames returned.
    pub frames: u64,
    /// Frames of link types fireplot does not read (counted, skipped).
    pub skipped: u64,
    done: bool,
}

const PCAPNG_MAGIC: [u8; 4] = [0x0a, 0x0d, 0x0d, 0x0a];

impl Capture {
    pub fn open(path: &Path) -> Result<Capture, CaptureError> {
        let open = || {
            File::open(path).map_err(|source| CaptureError::Open {
                path: path.into(),
                source,
            })
        };
        let mut magic = [0u8; 4];
        let got = open()?.read(&mut magic).unwrap_or(0);
        let format = |detail: String| CaptureError::Format {
            path: path.into(),
            detail,
        };
        if got < 4 {
            return Err(format("shorter than a file header".into()));
        }
        let r = BufReader::with_capacity(1 << 20, open()?);
        let inner = if magic == PCAPNG_MAGIC {
            Inner::PcapNg(Box::new(
                PcapNgReader::new(r).map_err(|e| format(e.to_string()))?,
            ))
        } else {
            let p = PcapReader::new(r).map_err(|e| format(e.to_string()))?;
            let link = p.header().datalink;
            Inner::Pcap(p, link)
        };
        let mut c = Capture {
            path: path.into(),
            inner,
            ifaces: Vec::new(),
            seen: Vec::new(),
            frames: 0,
            skipped: 0,
            done: false,
        };
        if let Inner::Pcap(_, link) = &c.inner {
            c.seen.push((0, format!("{link:?}").to_lowercase()));
        }
        Ok(c)
    }

    fn fail(&mut self, e: PcapError) -> CaptureError {
        self.done = true;
        let cut = match &e {
            PcapError::IncompleteBuffer => true,
            PcapError::IoError(io) => io.kind() == std::io::ErrorKind::UnexpectedEof,
            _ => false,
        };
        match e {
            _ if cut => CaptureError::Truncated {
                path: self.path.clone(),
                frames: self.frames,
            },
            e => CaptureError::Malformed {
                path: self.path.clone(),
                frames: self.frames,
                detail: e.to_string(),
            },
        }
    }

    /// The next frame fireplot can read, or the error that ends the file.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Option<Result<Frame, CaptureError>> {
        loop {
            if self.done {
                return None;
            }
            let (ts_ns, iface, link, data, orig) = match &mut self.inner {
                Inner::Pcap(r, link) => match r.next_packet()? {
                    Ok(p) => (
                        p.timestamp.as_nanos() as u64,
                        0,
                        *link,
                        p.data.into_owned(),
                        p.orig_len as usize,
                    ),
                    Err(e) => return Some(Err(self.fail(e))),
                },
                Inner::PcapNg(r) => {
                    let block = match r.next_block()? {
                        Ok(b) => b,
                        Err(e) => return Some(Err(self.fail(e))),
                    };
                    match block {
                        Block::SectionHeader(_) => {
                            self.ifaces.clear();
                            continue;
                        }
                        Block::InterfaceDescription(idb) => {
                            let mut resol = 6u8;
                            let mut name = None;
                            for o in &idb.options {
                                match o {
                                    InterfaceDescriptionOption::IfTsResol(v) => resol = *v,
                                    InterfaceDescriptionOption::IfName(n) => {
                                        name = Some(n.to_string())
                                    }
                                    _ => {}
                                }
                            }
                            // 10^-v s, or 2^-v s with the top bit set.
                            let (num, den) = if resol & 0x80 == 0 {
                                (1_000_000_000u128, 10u128.pow(resol.min(30) as u32))
                            } else {
                                (1_000_000_000u128, 1u128 << (resol & 0x7f).min(100))
                            };
                            let id = self.ifaces.len() as u32;
                            let name = name.unwrap_or_else(|| format!("if{id}"));
                            if !self.seen.iter().any(|(i, n)| *i == id && *n == name) {
                                self.seen.push((id, name));
                            }
                            self.ifaces.push(Iface {
                                link: idb.linktype,
                                ns_num: num,
                                ns_den: den,
                            });
                            continue;
                        }
                        Block::EnhancedPacket(p) => {
                            let Some(i) = self.ifaces.get(p.interface_id as usize) else {
                                self.done = true;
                                return Some(Err(CaptureError::Malformed {
                                    path: self.path.clone(),
                                    frames: self.frames,
                                    detail: format!(
                                        "a packet names interface {} before its description",
                                        p.interface_id
                                    ),
                                }));
                            };
                            let raw = p.timestamp.as_nanos();
                            let ts = raw.saturating_mul(i.ns_num) / i.ns_den;
                            (
                                ts.min(u64::MAX as u128) as u64,
                                p.interface_id,
                                i.link,
                                p.data.into_owned(),
                                p.original_len as usize,
                            )
                        }
                        Block::SimplePacket(p) => {
                            // No timestamp: the capture's order is all there is.
                            let Some(i) = self.ifaces.first() else {
                                self.skipped += 1;
                                continue;
                            };
                            let orig = p.original_len as usize;
                            (0, 0, i.link, p.data.into_owned(), orig)
                        }
                        _ => continue,
                    }
                }
            };
            match to_ethernet(link, &data) {
                Some((eth, src_mac, outgoing)) => {
                    self.frames += 1;
                    // The link header may have changed size; what was cut stays cut.
                    let orig_len = eth.len() + orig.saturating_sub(data.len());
                    return Some(Ok(Frame {
                        ts_ns,
                        iface,
                        data: eth,
                        orig_len,
                        src_mac,
                        outgoing,
                    }));
                }
                None => self.skipped += 1,
            }
        }
    }
}

const ETH_IPV4: [u8; 2] = [0x08, 0x00];
const ETH_IPV6: [u8; 2] = [0x86, 0xdd];

/// An Ethernet frame around an IP packet (made-up addresses).
fn wrap(ethertype: [u8; 2], payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(14 + payload.len());
    v.extend_from_slice(&[0u8; 12]);
    v.extend_from_slice(&ethertype);
    v.extend_from_slice(payload);
    v
}

fn by_version(ip: &[u8]) -> Option<Vec<u8>> {
    match ip.first()? >> 4 {
        4 => Some(wrap(ETH_IPV4, ip)),
        6 => Some(wrap(ETH_IPV6, ip)),
        _ => None,
    }
}

/// A frame as Ethernet, its source MAC, and whether the capture says the
/// host sent it.
pub type Converted = (Vec<u8>, Option<[u8; 6]>, Option<bool>);

/// The frame as Ethernet. `None`: a link type (or protocol) fireplot does
/// not read.
pub fn to_ethernet(link: DataLink, data: &[u8]) -> Option<Converted> {
    match link {
        DataLink::ETHERNET => {
            let mac: [u8; 6] = data.get(6..12)?.try_into().ok()?;
            Some((data.to_vec(), Some(mac), None))
        }
        DataLink::RAW | DataLink::IPV4 | DataLink::IPV6 => Some((by_version(data)?, None, None)),
        // BSD loopback: a 4-byte address family in either byte order.
        DataLink::NULL | DataLink::LOOP => Some((by_version(data.get(4..)?)?, None, None)),
        DataLink::LINUX_SLL => {
            // packet type, ARPHRD, address length, address (8), protocol.
            let kind = u16::from_be_bytes(data.get(0..2)?.try_into().ok()?);
            let proto: [u8; 2] = data.get(14..16)?.try_into().ok()?;
            let payload = data.get(16..)?;
            Some((wrap_proto(proto, payload)?, None, Some(kind == 4)))
        }
        DataLink::LINUX_SLL2 => {
            // protocol, reserved, ifindex, ARPHRD, packet type, address length, address (8).
            let proto: [u8; 2] = data.get(0..2)?.try_into().ok()?;
            let kind = *data.get(10)?;
            let payload = data.get(20..)?;
            Some((wrap_proto(proto, payload)?, None, Some(kind == 4)))
        }
        _ => None,
    }
}

fn wrap_proto(proto: [u8; 2], payload: &[u8]) -> Option<Vec<u8>> {
    match proto {
        ETH_IPV4 | ETH_IPV6 | [0x81, 0x00] | [0x88, 0xa8] => Some(wrap(proto, payload)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ipv4() -> Vec<u8> {
        let mut p = vec![0x45, 0, 0, 40];
        p.resize(40, 0);
        p
    }

    #[test]
    fn every_link_type_becomes_ethernet() {
        let ip = ipv4();
        let (e, mac, out) = to_ethernet(DataLink::RAW, &ip).unwrap();
        assert_eq!(&e[12..14], &ETH_IPV4);
        assert_eq!(&e[14..], &ip[..]);
        assert_eq!((mac, out), (None, None));
        let mut null = vec![2, 0, 0, 0];
        null.extend_from_slice(&ip);
        assert_eq!(to_ethernet(DataLink::NULL, &null).unwrap().0, e);
        let mut sll = vec![0, 4, 0, 1, 0, 6, 1, 2, 3, 4, 5, 6, 0, 0, 0x08, 0];
        sll.extend_from_slice(&ip);
        let (e2, _, out) = to_ethernet(DataLink::LINUX_SLL, &sll).unwrap();
        assert_eq!((e2, out), (e.clone(), Some(true)));
        let mut sll2 = vec![
            0x08, 0, 0, 0, 0, 0, 0, 3, 0, 1, 0, 6, 1, 2, 3, 4, 5, 6, 0, 0,
        ];
        sll2.extend_from_slice(&ip);
        let (e3, _, out) = to_ethernet(DataLink::LINUX_SLL2, &sll2).unwrap();
        assert_eq!((e3, out), (e.clone(), Some(false)));
        let mut eth = vec![1, 2, 3, 4, 5, 6, 0xa, 0xb, 0xc, 0xd, 0xe, 0xf, 0x08, 0];
        eth.extend_from_slice(&ip);
        let (e4, mac, _) = to_ethernet(DataLink::ETHERNET, &eth).unwrap();
        assert_eq!(e4, eth);
        assert_eq!(mac, Some([0xa, 0xb, 0xc, 0xd, 0xe, 0xf]));
        // Not IP, too short, or a link fireplot does not read: skipped.
        assert!(to_ethernet(DataLink::RAW, &[0x10, 0, 0]).is_none());
        assert!(to_ethernet(DataLink::LINUX_SLL, &sll[..10]).is_none());
        assert!(to_ethernet(DataLink::IEEE802_11, &eth).is_none());
    }

    fn temp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("fireplot-capture-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d.join(name)
    }

    fn eth(src_mac: u8) -> Vec<u8> {
        let mut f = vec![2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, src_mac, 0x08, 0];
        f.extend_from_slice(&ipv4());
        f
    }

    #[test]
    fn pcapng_with_two_interfaces_keeps_each_ones_clock_and_name() {
        use pcap_file::pcapng::{
            blocks::{
                enhanced_packet::EnhancedPacketBlock,
                interface_description::InterfaceDescriptionBlock,
            },
            PcapNgWriter,
        };
        use std::{borrow::Cow, time::Duration};
        let path = temp("two.pcapng");
        let mut w = PcapNgWriter::new(File::create(&path).unwrap()).unwrap();
        // wan0: Ethernet, ns timestamps; tun0: raw IP, the default µs.
        w.write_pcapng_block(InterfaceDescriptionBlock {
            linktype: DataLink::ETHERNET,
            snaplen: 0,
            options: vec![
                InterfaceDescriptionOption::IfName(Cow::Borrowed("wan0")),
                InterfaceDescriptionOption::IfTsResol(9),
            ],
        })
        .unwrap();
        w.write_pcapng_block(InterfaceDescriptionBlock {
            linktype: DataLink::RAW,
            snaplen: 0,
            options: vec![InterfaceDescriptionOption::IfName(Cow::Borrowed("tun0"))],
        })
        .unwrap();
        let t0: u64 = 1_800_000_000_123_456_789;
        let frames = [
            (0u32, t0, eth(7)),
            (1, t0 / 1000 + 5, ipv4()),
            (0, t0 + 10, eth(8)),
        ];
        for (id, units, data) in &frames {
            w.write_pcapng_block(EnhancedPacketBlock {
                interface_id: *id,
                // The writer stores the raw count: in the interface's units.
                timestamp: Duration::from_nanos(*units),
                original_len: data.len() as u32,
                data: Cow::Borrowed(data),
                options: vec![],
            })
            .unwrap();
        }
        drop(w);
        let mut c = Capture::open(&path).unwrap();
        let a = c.next().unwrap().unwrap();
        let b = c.next().unwrap().unwrap();
        let d = c.next().unwrap().unwrap();
        assert!(c.next().is_none());
        assert_eq!(
            (a.iface, a.ts_ns, a.src_mac),
            (0, t0, Some([2, 0, 0, 0, 0, 7]))
        );
        assert_eq!((b.iface, b.ts_ns), (1, (t0 / 1000 + 5) * 1000));
        assert_eq!(&b.data[14..], &ipv4()[..]);
        assert_eq!((d.iface, d.ts_ns), (0, t0 + 10));
        assert_eq!(
            c.seen,
            vec![(0, "wan0".to_string()), (1, "tun0".to_string())]
        );
        assert_eq!(c.frames, 3);
    }

    #[test]
    fn a_cut_or_foreign_file_is_a_clear_error_after_what_was_readable() {
        use pcap_file::pcap::{PcapPacket, PcapWriter};
        use std::time::Duration;
        let path = temp("cut.pcap");
        let mut w = PcapWriter::new(File::create(&path).unwrap()).unwrap();
        for i in 0..3u64 {
            let f = eth(i as u8);
            w.write_packet(&PcapPacket::new(
                Duration::from_micros(1_000_000 + i),
                f.len() as u32,
                &f,
            ))
            .unwrap();
        }
        drop(w);
        let whole = std::fs::read(&path).unwrap();
        std::fs::write(&path, &whole[..whole.len() - 10]).unwrap();
        let mut c = Capture::open(&path).unwrap();
        assert_eq!(c.next().unwrap().unwrap().ts_ns, 1_000_000_000);
        assert!(c.next().unwrap().is_ok());
        let e = c.next().unwrap().unwrap_err();
        assert!(
            matches!(e, CaptureError::Truncated { frames: 2, .. }),
            "{e}"
        );
        assert!(e.to_string().contains("cut short after frame 2"), "{e}");
        assert!(c.next().is_none(), "nothing after the error");

        let junk = temp("junk.pcap");
        std::fs::write(&junk, b"GET / HTTP/1.1\r\nHost: example\r\n\r\n").unwrap();
        let e = Capture::open(&junk).err().unwrap();
        assert!(e.to_string().contains("not a pcap or pcapng"), "{e}");
        std::fs::write(&junk, b"ab").unwrap();
        assert!(Capture::open(&junk).is_err());
        let e = Capture::open(&temp("missing.pcap")).err().unwrap();
        assert!(e.to_string().contains("cannot open capture"), "{e}");
    }
}
