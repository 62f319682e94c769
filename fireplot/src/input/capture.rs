//! Packet captures (pcap and pcapng, as tcpdump, tshark and dumpcap write
//! them) read frame by frame, each turned into the Ethernet frame the XDP
//! and TC programs parse ([`super::link`]), with its capture time and what
//! the capture says about its direction.
//!
//! Facts a maintainer needs:
//! - pcap has one link type and one clock for the file (µs, or ns with
//!   the nanosecond magic); pcapng has sections, each with its own
//!   interfaces, and an interface's `if_tsresol` sets its clock (10^-v s,
//!   or 2^-v s with the top bit set; µs when absent). The reader counts
//!   timestamps in raw units, converted here.
//! - A pcapng interface id counts the interfaces of its section; a new
//!   section starts them over.
//! - Simple packet blocks carry no time and belong to the first interface.
//! - A file that ends in the middle of a record is cut short (a capture
//!   still being written, or copied early); every frame before it is good.

use std::{
    fs::File,
    io::{BufReader, Read},
    path::{Path, PathBuf},
};

use pcap_file::{
    pcap::PcapReader,
    pcapng::{
        blocks::interface_description::{InterfaceDescriptionBlock, InterfaceDescriptionOption},
        Block, PcapNgReader,
    },
    DataLink, PcapError,
};
use thiserror::Error;

pub use super::frame::Frame;
use super::link::to_ethernet;

/// Errors reading a capture. Frames read before an error stay valid.
#[derive(Debug, Error)]
pub enum CaptureError {
    /// The file cannot be opened.
    #[error("cannot open capture `{path}`")]
    Open {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file is too short for any capture's file header.
    #[error("`{path}` is not a pcap or pcapng capture (shorter than a file header)")]
    TooShort { path: PathBuf },
    /// The file header is neither pcap's nor pcapng's.
    #[error("`{path}` is not a pcap or pcapng capture ({reason})")]
    Format { path: PathBuf, reason: PcapError },
    /// The file ends in the middle of a record.
    #[error(
        "`{path}` is cut short after frame {frames}: the rest of the file is not a whole frame"
    )]
    Truncated { path: PathBuf, frames: u64 },
    /// A record that cannot be read, after `frames` good ones.
    #[error("`{path}` is damaged after frame {frames}")]
    Malformed {
        path: PathBuf,
        frames: u64,
        #[source]
        source: PcapError,
    },
    /// A pcapng packet of an interface its section did not describe.
    #[error("`{path}` is damaged after frame {frames}: a packet names interface {interface} before its description")]
    UnknownInterface {
        path: PathBuf,
        frames: u64,
        interface: u32,
    },
}

/// A pcapng interface of the current section.
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

/// A frame as the file holds it, before its link type is converted.
struct Raw {
    ts_ns: u64,
    iface: u32,
    link: DataLink,
    data: Vec<u8>,
    orig_len: usize,
}

/// What one pcapng block was.
enum Step {
    Frame(Raw),
    /// A block that is not a frame, or a frame fireplot cannot place.
    Skip,
    End(CaptureError),
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
    /// Opens a capture: pcapng by its section header's magic, pcap
    /// otherwise (either byte order, µs or ns).
    pub fn open(path: &Path) -> Result<Capture, CaptureError> {
        let open = || {
            File::open(path).map_err(|source| CaptureError::Open {
                path: path.into(),
                source,
            })
        };
        let mut magic = [0u8; 4];
        let got = open()?.read(&mut magic).unwrap_or(0);
        if got < 4 {
            return Err(CaptureError::TooShort { path: path.into() });
        }
        let format = |reason| CaptureError::Format {
            path: path.into(),
            reason,
        };
        let r = BufReader::with_capacity(1 << 20, open()?);
        let inner = if magic == PCAPNG_MAGIC {
            Inner::PcapNg(Box::new(PcapNgReader::new(r).map_err(format)?))
        } else {
            let p = PcapReader::new(r).map_err(format)?;
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
        if cut {
            CaptureError::Truncated {
                path: self.path.clone(),
                frames: self.frames,
            }
        } else {
            CaptureError::Malformed {
                path: self.path.clone(),
                frames: self.frames,
                source: e,
            }
        }
    }

    /// The next frame fireplot can read, or the error that ends the file.
    #[expect(
        clippy::should_implement_trait,
        reason = "an error ends the capture: the caller stops at the first Err, which Iterator does not say"
    )]
    pub fn next(&mut self) -> Option<Result<Frame, CaptureError>> {
        loop {
            if self.done {
                return None;
            }
            let raw = match &mut self.inner {
                Inner::Pcap(r, link) => match r.next_packet()? {
                    Ok(p) => Raw {
                        ts_ns: p.timestamp.as_nanos() as u64,
                        iface: 0,
                        link: *link,
                        data: p.data.into_owned(),
                        orig_len: p.orig_len as usize,
                    },
                    Err(e) => return Some(Err(self.fail(e))),
                },
                Inner::PcapNg(r) => {
                    // Owned (its data copied once, as a frame's is anyway),
                    // so the block outlives the reader's borrow.
                    let block = match r.next_block()? {
                        Ok(b) => b.into_owned(),
                        Err(e) => return Some(Err(self.fail(e))),
                    };
                    match self.pcapng_block(block) {
                        Step::Frame(raw) => raw,
                        Step::Skip => continue,
                        Step::End(e) => return Some(Err(e)),
                    }
                }
            };
            match to_ethernet(raw.link, &raw.data) {
                Some((eth, src_mac, outgoing)) => {
                    self.frames += 1;
                    // The link header may have changed size; what was cut stays cut.
                    let orig_len = eth.len() + raw.orig_len.saturating_sub(raw.data.len());
                    return Some(Ok(Frame {
                        ts_ns: raw.ts_ns,
                        iface: raw.iface,
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

    /// A pcapng block: a frame, or the section and interface bookkeeping.
    fn pcapng_block(&mut self, block: Block<'_>) -> Step {
        match block {
            Block::SectionHeader(_) => {
                self.ifaces.clear();
                Step::Skip
            }
            Block::InterfaceDescription(idb) => {
                self.describe(&idb);
                Step::Skip
            }
            Block::EnhancedPacket(p) => {
                let Some(i) = self.ifaces.get(p.interface_id as usize) else {
                    self.done = true;
                    return Step::End(CaptureError::UnknownInterface {
                        path: self.path.clone(),
                        frames: self.frames,
                        interface: p.interface_id,
                    });
                };
                let raw = p.timestamp.as_nanos();
                let ts = raw.saturating_mul(i.ns_num) / i.ns_den;
                Step::Frame(Raw {
                    ts_ns: ts.min(u64::MAX as u128) as u64,
                    iface: p.interface_id,
                    link: i.link,
                    data: p.data.into_owned(),
                    orig_len: p.original_len as usize,
                })
            }
            Block::SimplePacket(p) => {
                // No timestamp: the capture's order is all there is.
                let Some(i) = self.ifaces.first() else {
                    self.skipped += 1;
                    return Step::Skip;
                };
                Step::Frame(Raw {
                    ts_ns: 0,
                    iface: 0,
                    link: i.link,
                    orig_len: p.original_len as usize,
                    data: p.data.into_owned(),
                })
            }
            _ => Step::Skip,
        }
    }

    /// A pcapng interface: its link type, its clock and its name.
    fn describe(&mut self, idb: &InterfaceDescriptionBlock<'_>) {
        let mut resol = 6u8;
        let mut name = None;
        for o in &idb.options {
            match o {
                InterfaceDescriptionOption::IfTsResol(v) => resol = *v,
                InterfaceDescriptionOption::IfName(n) => name = Some(n.to_string()),
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
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::input::test_support::{eth, ipv4, temp};

    #[test]
    fn pcapng_with_two_interfaces_keeps_each_ones_clock_and_name() {
        use pcap_file::pcapng::{blocks::enhanced_packet::EnhancedPacketBlock, PcapNgWriter};
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
    fn a_packet_of_an_undescribed_interface_ends_the_file_with_its_frame_number() {
        use pcap_file::pcapng::{blocks::enhanced_packet::EnhancedPacketBlock, PcapNgWriter};
        use std::{borrow::Cow, time::Duration};
        let path = temp("undescribed.pcapng");
        let mut w = PcapNgWriter::new(File::create(&path).unwrap()).unwrap();
        w.write_pcapng_block(InterfaceDescriptionBlock {
            linktype: DataLink::ETHERNET,
            snaplen: 0,
            options: vec![],
        })
        .unwrap();
        for _ in 0..2 {
            let f = eth(1);
            w.write_pcapng_block(EnhancedPacketBlock {
                interface_id: 0,
                timestamp: Duration::from_micros(1),
                original_len: f.len() as u32,
                data: Cow::Owned(f),
                options: vec![],
            })
            .unwrap();
        }
        drop(w);
        // The writer refuses an undescribed interface: the last packet's
        // id (after its block type and length) is made 3 in the file.
        let mut bytes = std::fs::read(&path).unwrap();
        let n = bytes.len();
        let last = u32::from_le_bytes(bytes[n - 4..].try_into().unwrap()) as usize;
        bytes[n - last + 8..n - last + 12].copy_from_slice(&3u32.to_le_bytes());
        std::fs::write(&path, bytes).unwrap();
        let mut c = Capture::open(&path).unwrap();
        assert!(c.next().unwrap().is_ok());
        let e = c.next().unwrap().unwrap_err();
        assert!(
            e.to_string().ends_with(
                "is damaged after frame 1: a packet names interface 3 before its description"
            ),
            "{e}"
        );
        assert!(c.next().is_none(), "nothing after the error");
        assert_eq!(c.seen, vec![(0, "if0".to_string())]);
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
