//! Packet captures (pcap and pcapng, as tcpdump, tshark and dumpcap write
//! them) read frame by frame, each turned into the Ethernet frame the XDP
//! and TC programs parse ([`super::link`]), with its capture time and what
//! the capture says about its direction. The formats: [`pcap`] (record by
//! record) and [`pcapng`] (block by block), both read here as libpcap
//! reads them (pcap-file's readers refuse what tcpdump writes with a snap
//! length, and stop at blocks that carry no frame).
//!
//! Facts a maintainer needs:
//! - pcap has one link type and one clock for the file (µs, or ns with the
//!   nanosecond magic), in either byte order; pcapng has sections, each
//!   with its own interfaces, link types and clocks.
//! - A frame may be shorter than it was on the wire (a snap length): the
//!   record keeps both lengths, and so does [`Frame`].
//! - A file that ends in the middle of a record is cut short (a capture
//!   still being written, or copied early); every frame before it is good.

mod pcap;
mod pcapng;

use std::{
    fs::File,
    io::{BufReader, Read},
    path::{Path, PathBuf},
};

use pcap_file::DataLink;
use thiserror::Error;

pub use super::frame::Frame;
use super::link::to_ethernet;
use pcap::{PcapFile, Record};
use pcapng::{PcapNgFile, Step};

/// Errors reading a capture. Frames read before an error stay valid;
/// `frames` counts the file's frames before the error.
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
    #[error("`{path}` is not a pcap or pcapng capture (neither format's magic number)")]
    Format { path: PathBuf },
    /// The file ends in the middle of a record.
    #[error(
        "`{path}` is cut short after frame {frames}: the rest of the file is not a whole frame"
    )]
    Truncated { path: PathBuf, frames: u64 },
    /// The file cannot be read on, after `frames` good frames.
    #[error("cannot read `{path}` after frame {frames}")]
    Read {
        path: PathBuf,
        frames: u64,
        #[source]
        source: std::io::Error,
    },
    /// A record or block that cannot be one, after `frames` good frames.
    #[error("`{path}` is damaged after frame {frames}: {reason}")]
    Damaged {
        path: PathBuf,
        frames: u64,
        reason: String,
    },
    /// A pcapng packet of an interface its section did not describe.
    #[error("`{path}` is damaged after frame {frames}: a packet names interface {interface} before its description")]
    UnknownInterface {
        path: PathBuf,
        frames: u64,
        interface: u32,
    },
}

enum Inner {
    /// The file and its one interface, named after its link type.
    Pcap(PcapFile<File>, Vec<(u32, String)>),
    PcapNg(PcapNgFile<File>),
}

/// A frame as the file holds it, before its link type is converted.
struct Raw {
    ts_ns: u64,
    iface: u32,
    link: DataLink,
    data: Vec<u8>,
    orig_len: usize,
}

/// A capture being read.
pub struct Capture {
    path: PathBuf,
    inner: Inner,
    /// Frames read from the file, returned or not.
    pub read: u64,
    /// Frames of link types (or with link headers) fireplot does not read:
    /// counted, not returned.
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
        let r = BufReader::with_capacity(1 << 20, open()?);
        let inner = if magic == PCAPNG_MAGIC {
            Inner::PcapNg(PcapNgFile::open(r))
        } else {
            match PcapFile::open(r) {
                Ok(Some(p)) => {
                    let name = format!("{:?}", p.link).to_lowercase();
                    Inner::Pcap(p, vec![(0, name)])
                }
                Ok(None) => return Err(CaptureError::Format { path: path.into() }),
                Err(_) => return Err(CaptureError::TooShort { path: path.into() }),
            }
        };
        Ok(Capture {
            path: path.into(),
            inner,
            read: 0,
            skipped: 0,
            done: false,
        })
    }

    /// Every interface seen so far (id, name), in order.
    pub fn interfaces(&self) -> &[(u32, String)] {
        match &self.inner {
            Inner::Pcap(_, seen) => seen,
            Inner::PcapNg(r) => &r.seen,
        }
    }

    /// Ends the capture with `e`.
    fn end(&mut self, e: CaptureError) -> Option<Result<Frame, CaptureError>> {
        self.done = true;
        Some(Err(e))
    }

    /// A read error: the file cut short, or unreadable.
    fn failed(&mut self, e: std::io::Error) -> CaptureError {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            self.truncated()
        } else {
            CaptureError::Read {
                path: self.path.clone(),
                frames: self.read,
                source: e,
            }
        }
    }

    fn damaged(&self, reason: String) -> CaptureError {
        CaptureError::Damaged {
            path: self.path.clone(),
            frames: self.read,
            reason,
        }
    }

    fn truncated(&self) -> CaptureError {
        CaptureError::Truncated {
            path: self.path.clone(),
            frames: self.read,
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
                Inner::Pcap(r, _) => match r.next() {
                    Ok(Record::Frame(raw)) => raw,
                    Ok(Record::End) => return None,
                    Ok(Record::Cut) => return self.end(self.truncated()),
                    Ok(Record::TooLong(len)) => {
                        let e = self.damaged(format!(
                            "a record of {len} bytes (libpcap writes at most {})",
                            pcap::MAX_RECORD
                        ));
                        return self.end(e);
                    }
                    Err(io) => {
                        let e = self.failed(io);
                        return self.end(e);
                    }
                },
                Inner::PcapNg(r) => match r.next() {
                    Ok(Step::Frame(raw)) => raw,
                    Ok(Step::NotFrame) => continue,
                    Ok(Step::End) => return None,
                    Ok(Step::Unplaced) => {
                        self.read += 1;
                        self.skipped += 1;
                        continue;
                    }
                    Ok(Step::Undescribed(interface)) => {
                        let e = CaptureError::UnknownInterface {
                            path: self.path.clone(),
                            frames: self.read,
                            interface,
                        };
                        return self.end(e);
                    }
                    Ok(Step::Cut) => return self.end(self.truncated()),
                    Ok(Step::Damaged(reason)) => {
                        let e = self.damaged(reason);
                        return self.end(e);
                    }
                    Err(io) => {
                        let e = self.failed(io);
                        return self.end(e);
                    }
                },
            };
            self.read += 1;
            match to_ethernet(raw.link, &raw.data) {
                Some((eth, src_mac, outgoing)) => {
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::input::test_support::{eth, ipv4, pcap_bytes, temp};
    use pcap_file::pcapng::blocks::interface_description::{
        InterfaceDescriptionBlock, InterfaceDescriptionOption,
    };

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
            c.interfaces(),
            vec![(0, "wan0".to_string()), (1, "tun0".to_string())]
        );
        assert_eq!(c.read, 3);
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
        assert_eq!(c.interfaces(), vec![(0, "if0".to_string())]);
    }

    /// A pcapng file of `n` Ethernet frames on one interface.
    fn pcapng_of(n: u8) -> Vec<u8> {
        use pcap_file::pcapng::{blocks::enhanced_packet::EnhancedPacketBlock, PcapNgWriter};
        use std::{borrow::Cow, time::Duration};
        let mut w = PcapNgWriter::new(Vec::new()).unwrap();
        w.write_pcapng_block(InterfaceDescriptionBlock {
            linktype: DataLink::ETHERNET,
            snaplen: 0,
            options: vec![],
        })
        .unwrap();
        for i in 0..n {
            let f = eth(i);
            w.write_pcapng_block(EnhancedPacketBlock {
                interface_id: 0,
                timestamp: Duration::from_micros(u64::from(i)),
                original_len: f.len() as u32,
                data: Cow::Owned(f),
                options: vec![],
            })
            .unwrap();
        }
        w.into_inner()
    }

    /// Reads `bytes` as a capture: the frames, and the error that ended it.
    fn read_all(name: &str, bytes: &[u8]) -> (Vec<Frame>, Option<CaptureError>) {
        let path = temp(name);
        std::fs::write(&path, bytes).unwrap();
        let mut c = Capture::open(&path).unwrap();
        let mut frames = Vec::new();
        while let Some(f) = c.next() {
            match f {
                Ok(f) => frames.push(f),
                Err(e) => {
                    assert!(c.next().is_none(), "nothing after the error");
                    return (frames, Some(e));
                }
            }
        }
        (frames, None)
    }

    #[test]
    fn a_pcapng_cut_in_its_last_block_keeps_the_frames_before() {
        let whole = pcapng_of(3);
        let (frames, e) = read_all("whole.pcapng", &whole);
        assert_eq!((frames.len(), e.is_none()), (3, true));
        for cut in [3, 30] {
            let (frames, e) = read_all("cut.pcapng", &whole[..whole.len() - cut]);
            assert_eq!(frames.len(), 2);
            let e = e.unwrap();
            assert!(
                matches!(e, CaptureError::Truncated { frames: 2, .. }),
                "{e}"
            );
            assert!(e.to_string().contains("cut short after frame 2"), "{e}");
        }
    }

    #[test]
    fn a_damaged_pcapng_block_is_named_after_the_frames_before_it() {
        let mut bytes = pcapng_of(3);
        // The last block's trailing length made to disagree with its head.
        let n = bytes.len();
        bytes[n - 4..].copy_from_slice(&999u32.to_le_bytes());
        let (frames, e) = read_all("damaged.pcapng", &bytes);
        assert_eq!(frames.len(), 2);
        let e = e.unwrap();
        assert!(matches!(e, CaptureError::Damaged { frames: 2, .. }), "{e}");
        assert!(e.to_string().contains("is damaged after frame 2"), "{e}");
    }

    #[test]
    fn every_link_type_and_vlan_tags_read_from_a_pcap() {
        let ip = ipv4();
        let mut tagged = eth(1);
        tagged.splice(12..12, [0x88, 0xa8, 0, 100, 0x81, 0, 0, 7]);
        let mut sll = vec![0, 4, 0, 1, 0, 6, 1, 2, 3, 4, 5, 6, 0, 0, 0x08, 0];
        sll.extend_from_slice(&ip);
        let mut sll2 = vec![
            0x08, 0, 0, 0, 0, 0, 0, 3, 0, 1, 0, 0, 6, 1, 2, 3, 4, 5, 6, 0,
        ];
        sll2.extend_from_slice(&ip);
        let mut null = vec![2, 0, 0, 0];
        null.extend_from_slice(&ip);
        let cases: [(u32, &[u8]); 9] = [
            (1, &tagged),
            (113, &sll),
            (276, &sll2),
            (101, &ip),
            (228, &ip),
            (12, &ip),
            (14, &ip),
            (0, &null),
            (108, &null),
        ];
        for (link, data) in cases {
            for big in [false, true] {
                // Each cut to 30 bytes of the original (snap length 30).
                let keep = data.len().min(30);
                let bytes = pcap_bytes(
                    big,
                    true,
                    30,
                    link,
                    &[(7, &data[..keep], data.len() as u32 + 100)],
                );
                let (frames, e) = read_all("link.pcap", &bytes);
                assert!(e.is_none(), "link {link}: {e:?}");
                let f = &frames[0];
                assert_eq!(f.ts_ns, 7, "link {link}");
                // The wire length, as Ethernet: what the link header
                // added or took away is the same in both lengths.
                assert_eq!(
                    f.orig_len as isize - f.data.len() as isize,
                    data.len() as isize + 100 - keep as isize,
                    "link {link}"
                );
                let want = if link == 1 { [0x88, 0xa8] } else { [0x08, 0] };
                assert_eq!(f.data[12..14], want, "link {link}");
            }
        }
        // A link type fireplot does not read: read, counted, not returned.
        let bytes = pcap_bytes(
            false,
            false,
            65535,
            105,
            &[(1, &eth(1), 54), (2, &eth(2), 54)],
        );
        let path = temp("wifi.pcap");
        std::fs::write(&path, bytes).unwrap();
        let mut c = Capture::open(&path).unwrap();
        assert!(c.next().is_none());
        assert_eq!((c.read, c.skipped), (2, 2));
    }

    #[test]
    fn a_snap_length_cuts_frames_and_every_one_still_reads() {
        // tcpdump -s 96: the file header says 96, every record holds 96
        // bytes of a longer frame, from the first on.
        let f = {
            let mut f = eth(1);
            f.resize(96, 0xab);
            f
        };
        let records: Vec<(u64, &[u8], u32)> = (0..385u64)
            .map(|i| (1_795_600_000_000_000_000 + i * 1000, &f[..], 300 + i as u32))
            .collect();
        let path = temp("snap96.pcap");
        std::fs::write(&path, pcap_bytes(false, false, 96, 1, &records)).unwrap();
        let mut c = Capture::open(&path).unwrap();
        let mut n = 0;
        while let Some(frame) = c.next() {
            let frame = frame.unwrap();
            assert_eq!((frame.data.len(), frame.orig_len), (96, 300 + n));
            n += 1;
        }
        assert_eq!((n, c.read, c.skipped), (385, 385, 0));
    }

    #[test]
    fn a_damaged_record_length_is_damage_with_its_frame_number() {
        let f = eth(1);
        let mut bytes = pcap_bytes(true, true, 65535, 1, &[(1, &f, 54), (2, &f, 54)]);
        let second = 24 + 16 + f.len();
        bytes[second + 8..second + 12].copy_from_slice(&u32::MAX.to_be_bytes());
        let path = temp("damaged.pcap");
        std::fs::write(&path, bytes).unwrap();
        let mut c = Capture::open(&path).unwrap();
        assert!(c.next().unwrap().is_ok());
        let e = c.next().unwrap().unwrap_err();
        assert!(
            e.to_string()
                .ends_with("is damaged after frame 1: a record of 4294967295 bytes (libpcap writes at most 262144)"),
            "{e}"
        );
        assert!(c.next().is_none());
    }

    #[test]
    fn pcapng_sections_in_both_byte_orders_keep_their_offsets_and_lengths() {
        use pcap_file::{
            pcapng::{
                blocks::{enhanced_packet::EnhancedPacketBlock, simple_packet::SimplePacketBlock},
                PcapNgBlock, PcapNgWriter,
            },
            Endianness,
        };
        use std::{borrow::Cow, time::Duration};
        let section = |endianness,
                       idb: InterfaceDescriptionBlock<'static>,
                       blocks: Vec<pcap_file::pcapng::Block<'static>>| {
            let mut w = PcapNgWriter::with_endianness(Vec::new(), endianness).unwrap();
            w.write_pcapng_block(idb).unwrap();
            for b in &blocks {
                w.write_block(b).unwrap();
            }
            w.into_inner()
        };
        // Little-endian: ns, 100 s ahead; a timed frame and a simple one
        // of 42 bytes (padded to 44 in the block).
        let mut spb = eth(2);
        spb.truncate(42);
        let a = section(
            Endianness::Little,
            InterfaceDescriptionBlock {
                linktype: DataLink::ETHERNET,
                snaplen: 0,
                options: vec![
                    InterfaceDescriptionOption::IfName(Cow::Borrowed("lan")),
                    InterfaceDescriptionOption::IfTsResol(9),
                    InterfaceDescriptionOption::IfTsOffset(100),
                ],
            },
            vec![
                EnhancedPacketBlock {
                    interface_id: 0,
                    timestamp: Duration::from_nanos(5),
                    original_len: 54,
                    data: Cow::Owned(eth(1)),
                    options: vec![],
                }
                .into_block(),
                SimplePacketBlock {
                    original_len: 42,
                    data: Cow::Owned(spb),
                }
                .into_block(),
            ],
        );
        // Big-endian: raw IP, µs, 10 s behind; a frame cut to 40 of 1500 bytes.
        let t_us = 1_795_600_000_000_000u64;
        let b = section(
            Endianness::Big,
            InterfaceDescriptionBlock {
                linktype: DataLink::RAW,
                snaplen: 40,
                options: vec![
                    InterfaceDescriptionOption::IfName(Cow::Borrowed("tun0")),
                    InterfaceDescriptionOption::IfTsOffset((-10i64) as u64),
                ],
            },
            vec![EnhancedPacketBlock {
                interface_id: 0,
                timestamp: Duration::from_nanos(t_us),
                original_len: 1500,
                data: Cow::Owned(ipv4()),
                options: vec![],
            }
            .into_block()],
        );
        let path = temp("sections.pcapng");
        std::fs::write(&path, [a, b].concat()).unwrap();
        let mut c = Capture::open(&path).unwrap();
        let x = c.next().unwrap().unwrap();
        assert_eq!((x.ts_ns, x.data.len()), (100_000_000_005, 54));
        let y = c.next().unwrap().unwrap();
        assert_eq!(
            (y.ts_ns, y.data.len(), y.orig_len),
            (0, 42, 42),
            "padding is not the frame"
        );
        let z = c.next().unwrap().unwrap();
        assert_eq!(z.ts_ns, t_us * 1000 - 10_000_000_000);
        assert_eq!((z.iface, z.data.len(), z.orig_len), (0, 14 + 40, 14 + 1500));
        assert!(c.next().is_none());
        assert_eq!(
            c.interfaces(),
            vec![(0, "lan".to_string()), (0, "tun0".to_string())]
        );
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
