//! pcapng (what tshark and dumpcap write), read block by block here.
//!
//! Read by hand rather than with pcap-file's block parser, which stops the
//! whole file at a block it finds fault with even when the block carries
//! no frame (an odd name-resolution record, an interface option of an
//! unexpected length). Here only what frames need is read; any other
//! block is skipped whole, as its length says.
//!
//! Facts a maintainer needs:
//! - Every block: type, total length, body, the total length again (a
//!   multiple of 4). A section header (type 0x0a0d0d0a, the same in both
//!   byte orders) starts with a byte-order magic (0x1a2b3c4d) that sets
//!   the order of the section's every field.
//! - A file has sections, each with its own interfaces (description
//!   blocks, type 1: link type, snap length, options); an interface id
//!   counts the interfaces of its section, and a new section starts them
//!   over.
//! - An interface's `if_tsresol` (option 9) sets its clock (10^-v s, or
//!   2^-v s with the top bit set; µs when absent) and `if_tsoffset`
//!   (option 14) adds whole seconds to every timestamp of it (signed).
//! - Packets: enhanced (type 6: interface, 64-bit timestamp, captured and
//!   original lengths, data), simple (type 3: original length and data, no
//!   time, the first interface; its captured length is the block's, so it
//!   is cut to the original length) and the obsolete packet block (type 2,
//!   16-bit interface id) old tools still write.

use std::io::{self, BufReader, Read};

use pcap_file::DataLink;

use super::{pcap::read_full, Raw};

const SECTION_HEADER: u32 = 0x0a0d_0d0a;
const BYTE_ORDER_MAGIC: u32 = 0x1a2b_3c4d;
const INTERFACE_DESCRIPTION: u32 = 1;
const PACKET: u32 = 2;
const SIMPLE_PACKET: u32 = 3;
const ENHANCED_PACKET: u32 = 6;
const OPT_IF_NAME: u16 = 2;
const OPT_IF_TSRESOL: u16 = 9;
const OPT_IF_TSOFFSET: u16 = 14;
/// Longer than any block a capture writes (a 256 KB frame and its
/// options): a length past it is damage.
pub const MAX_BLOCK: u32 = 16 << 20;

/// A pcapng interface of the current section.
#[derive(Clone, Debug)]
struct Iface {
    link: DataLink,
    /// Nanoseconds per timestamp unit, as numerator/denominator.
    ns_num: u128,
    ns_den: u128,
    /// `if_tsoffset`, in ns.
    offset_ns: i128,
}

impl Iface {
    /// A timestamp of this interface (in its units) in Unix ns.
    fn ns(&self, units: u128) -> u64 {
        let ns = (units.saturating_mul(self.ns_num) / self.ns_den) as i128 + self.offset_ns;
        ns.clamp(0, u64::MAX as i128) as u64
    }
}

/// What one block was.
pub(super) enum Step {
    Frame(Raw),
    /// A block that is not a frame.
    NotFrame,
    /// A simple packet block before any interface: a frame without a link type.
    Unplaced,
    /// A packet of an interface its section did not describe.
    Undescribed(u32),
    /// A block that cannot be one (why).
    Damaged(String),
    /// The file ends inside a block.
    Cut,
    /// The file ended between blocks.
    End,
}

/// A pcapng file being read.
pub(super) struct PcapNgFile<R> {
    r: BufReader<R>,
    big_endian: bool,
    /// A section header has been read (the file must start with one).
    in_section: bool,
    /// Interfaces of the current section.
    ifaces: Vec<Iface>,
    /// Every interface seen (id, name), in order.
    pub seen: Vec<(u32, String)>,
}

impl<R: Read> PcapNgFile<R> {
    pub fn open(r: BufReader<R>) -> PcapNgFile<R> {
        PcapNgFile {
            r,
            big_endian: false,
            in_section: false,
            ifaces: Vec::new(),
            seen: Vec::new(),
        }
    }

    fn u32(&self, b: &[u8]) -> u32 {
        let b = [b[0], b[1], b[2], b[3]];
        if self.big_endian {
            u32::from_be_bytes(b)
        } else {
            u32::from_le_bytes(b)
        }
    }

    fn u16(&self, b: &[u8]) -> u16 {
        let b = [b[0], b[1]];
        if self.big_endian {
            u16::from_be_bytes(b)
        } else {
            u16::from_le_bytes(b)
        }
    }

    /// The next block.
    pub fn next(&mut self) -> io::Result<Step> {
        let mut head = [0u8; 8];
        match read_full(&mut self.r, &mut head)? {
            0 => return Ok(Step::End),
            8 => {}
            _ => return Ok(Step::Cut),
        }
        // The type reads the same in both orders only for a section header.
        let is_section = head[..4] == SECTION_HEADER.to_be_bytes();
        let mut body_start = Vec::new();
        if is_section {
            let mut magic = [0u8; 4];
            if read_full(&mut self.r, &mut magic)? < 4 {
                return Ok(Step::Cut);
            }
            self.big_endian = match u32::from_be_bytes(magic) {
                BYTE_ORDER_MAGIC => true,
                m if m.swap_bytes() == BYTE_ORDER_MAGIC => false,
                m => {
                    return Ok(Step::Damaged(format!(
                        "a section header with byte-order magic {m:#010x}"
                    )))
                }
            };
            self.in_section = true;
            self.ifaces.clear();
            body_start.extend_from_slice(&magic);
        } else if !self.in_section {
            return Ok(Step::Damaged(
                "it does not start with a section header".into(),
            ));
        }
        let kind = self.u32(&head[..4]);
        let len = self.u32(&head[4..8]);
        if len < 12 + body_start.len() as u32 || !len.is_multiple_of(4) || len > MAX_BLOCK {
            return Ok(Step::Damaged(format!(
                "a block (type {kind:#x}) of length {len}"
            )));
        }
        let mut body = body_start;
        let have = body.len();
        body.resize(len as usize - 12, 0);
        if read_full(&mut self.r, &mut body[have..])? < body.len() - have {
            return Ok(Step::Cut);
        }
        let mut trailer = [0u8; 4];
        if read_full(&mut self.r, &mut trailer)? < 4 {
            return Ok(Step::Cut);
        }
        if self.u32(&trailer) != len {
            return Ok(Step::Damaged(format!(
                "a block (type {kind:#x}) whose lengths disagree ({len} and {})",
                self.u32(&trailer)
            )));
        }
        Ok(match kind {
            SECTION_HEADER => Step::NotFrame,
            INTERFACE_DESCRIPTION => self.describe(&body),
            ENHANCED_PACKET | PACKET => self.packet(kind, &body),
            SIMPLE_PACKET => self.simple(&body),
            _ => Step::NotFrame,
        })
    }

    /// An enhanced (or obsolete) packet block.
    fn packet(&self, kind: u32, b: &[u8]) -> Step {
        if b.len() < 20 {
            return Step::Damaged(format!("a packet block of {} bytes", b.len() + 12));
        }
        let iface = if kind == PACKET {
            u32::from(self.u16(&b[..2]))
        } else {
            self.u32(&b[..4])
        };
        let units = u128::from(self.u32(&b[4..8])) << 32 | u128::from(self.u32(&b[8..12]));
        let (caplen, orig_len) = (self.u32(&b[12..16]) as usize, self.u32(&b[16..20]));
        let Some(data) = b.get(20..20 + caplen) else {
            return Step::Damaged(format!(
                "a packet of {caplen} bytes in a block of {}",
                b.len() + 12
            ));
        };
        let Some(i) = self.ifaces.get(iface as usize) else {
            return Step::Undescribed(iface);
        };
        Step::Frame(Raw {
            ts_ns: i.ns(units),
            iface,
            link: i.link,
            data: data.to_vec(),
            orig_len: orig_len as usize,
        })
    }

    /// A simple packet block: no time, the first interface.
    fn simple(&self, b: &[u8]) -> Step {
        if b.len() < 4 {
            return Step::Damaged("a simple packet block without its length".into());
        }
        let Some(i) = self.ifaces.first() else {
            return Step::Unplaced;
        };
        let orig_len = self.u32(&b[..4]) as usize;
        let data = &b[4..];
        Step::Frame(Raw {
            ts_ns: 0,
            iface: 0,
            link: i.link,
            data: data[..orig_len.min(data.len())].to_vec(),
            orig_len,
        })
    }

    /// A pcapng interface: its link type, its clock and its name. Options
    /// it cannot read are left out (the frames do not need them).
    fn describe(&mut self, b: &[u8]) -> Step {
        if b.len() < 8 {
            return Step::Damaged(format!(
                "an interface description of {} bytes",
                b.len() + 12
            ));
        }
        let link = DataLink::from(u32::from(self.u16(&b[..2])));
        let mut resol = 6u8;
        let mut offset_s = 0i64;
        let mut name = None;
        let mut opts = &b[8..];
        while opts.len() >= 4 {
            let (code, len) = (self.u16(&opts[..2]), self.u16(&opts[2..4]) as usize);
            let Some(value) = opts.get(4..4 + len) else {
                break;
            };
            match (code, value.len()) {
                (0, _) => break,
                (OPT_IF_NAME, _) => {
                    name = Some(
                        String::from_utf8_lossy(value)
                            .trim_end_matches('\0')
                            .to_string(),
                    )
                }
                (OPT_IF_TSRESOL, 1) => resol = value[0],
                (OPT_IF_TSOFFSET, 8) => {
                    let v: [u8; 8] = value.try_into().unwrap_or_default();
                    offset_s = if self.big_endian {
                        i64::from_be_bytes(v)
                    } else {
                        i64::from_le_bytes(v)
                    };
                }
                _ => {}
            }
            opts = opts.get(4 + len.next_multiple_of(4)..).unwrap_or_default();
        }
        // 10^-v s, or 2^-v s with the top bit set.
        let ns_den = if resol & 0x80 == 0 {
            10u128.pow(u32::from(resol.min(30)))
        } else {
            1u128 << (resol & 0x7f).min(100)
        };
        let id = self.ifaces.len() as u32;
        let name = name.unwrap_or_else(|| format!("if{id}"));
        if !self.seen.iter().any(|(i, n)| *i == id && *n == name) {
            self.seen.push((id, name));
        }
        self.ifaces.push(Iface {
            link,
            ns_num: 1_000_000_000,
            ns_den,
            offset_ns: i128::from(offset_s) * 1_000_000_000,
        });
        Step::NotFrame
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A block as the writer's byte order puts it.
    fn block(big: bool, kind: u32, body: &[u8]) -> Vec<u8> {
        let w = |x: u32| {
            if big {
                x.to_be_bytes()
            } else {
                x.to_le_bytes()
            }
        };
        let mut body = body.to_vec();
        body.resize(body.len().next_multiple_of(4), 0);
        let len = body.len() as u32 + 12;
        [&w(kind)[..], &w(len), &body, &w(len)].concat()
    }

    fn words(big: bool, xs: &[u32]) -> Vec<u8> {
        xs.iter()
            .flat_map(|x| {
                if big {
                    x.to_be_bytes()
                } else {
                    x.to_le_bytes()
                }
            })
            .collect()
    }

    fn read_all(bytes: &[u8]) -> (Vec<Raw>, Step) {
        let mut f = PcapNgFile::open(BufReader::new(bytes));
        let mut frames = Vec::new();
        loop {
            match f.next().unwrap() {
                Step::Frame(r) => frames.push(r),
                Step::NotFrame => {}
                end => return (frames, end),
            }
        }
    }

    /// A section: its header, one interface (`link`, ns clock, an
    /// option fireplot does not know with an odd length), then `rest`.
    fn section(big: bool, link: u16, rest: &[Vec<u8>]) -> Vec<u8> {
        let h = |x: u16| {
            if big {
                x.to_be_bytes()
            } else {
                x.to_le_bytes()
            }
        };
        let mut shb = words(big, &[BYTE_ORDER_MAGIC]);
        shb.extend_from_slice(&[h(1), h(0)].concat());
        shb.extend_from_slice(&[0xff; 8]); // section length: unknown
        let mut idb = [h(link), h(0)].concat();
        idb.extend_from_slice(&words(big, &[0]));
        idb.extend_from_slice(&[h(OPT_IF_TSRESOL), h(1)].concat());
        idb.extend_from_slice(&[9, 0, 0, 0]);
        idb.extend_from_slice(&[h(0x4321), h(3)].concat());
        idb.extend_from_slice(&[1, 2, 3, 0]);
        idb.extend_from_slice(&[h(0), h(0)].concat());
        let mut v = block(big, SECTION_HEADER, &shb);
        v.extend(block(big, INTERFACE_DESCRIPTION, &idb));
        for b in rest {
            v.extend_from_slice(b);
        }
        v
    }

    #[test]
    fn blocks_without_frames_are_skipped_whatever_they_hold() {
        for big in [false, true] {
            // A name resolution block of nonsense, a custom block, then an
            // obsolete packet block (16-bit interface id) cut by a snap
            // length of 4 from 60 bytes.
            let nrb = block(big, 4, &[0xde, 0xad, 0xbe, 0xef, 0, 9]);
            let custom = block(big, 0x0000_0bad, b"anything at all");
            let mut pb = vec![0u8; 4]; // interface 0, no drops
            pb.extend(words(big, &[0, 1_000_000_007, 4, 60]));
            pb.extend_from_slice(&[0x45, 0, 0, 60]);
            let bytes = section(big, 101, &[nrb, custom, block(big, PACKET, &pb)]);
            let (frames, end) = read_all(&bytes);
            assert!(matches!(end, Step::End), "big {big}");
            assert_eq!(frames.len(), 1);
            let f = &frames[0];
            assert_eq!(
                (f.ts_ns, f.link, f.iface),
                (1_000_000_007, DataLink::RAW, 0)
            );
            assert_eq!((f.data.len(), f.orig_len), (4, 60));
        }
    }

    #[test]
    fn damage_and_a_cut_are_told_apart() {
        let epb = |n: u32| {
            let mut b = words(false, &[0, 0, n, 4, 4]);
            b.extend_from_slice(&[0x45, 0, 0, 4]);
            block(false, ENHANCED_PACKET, &b)
        };
        let whole = section(false, 1, &[epb(1), epb(2)]);
        let (frames, end) = read_all(&whole[..whole.len() - 5]);
        assert_eq!(frames.len(), 1);
        assert!(matches!(end, Step::Cut));
        // A length that is not a multiple of 4; a packet longer than its block.
        let mut odd = whole.clone();
        let second = whole.len() - epb(2).len();
        odd[second + 4..second + 8].copy_from_slice(&33u32.to_le_bytes());
        let (frames, end) = read_all(&odd);
        assert_eq!(frames.len(), 1);
        assert!(matches!(end, Step::Damaged(ref r) if r.contains("of length 33")));
        let mut long = whole.clone();
        long[second + 20..second + 24].copy_from_slice(&400u32.to_le_bytes());
        let (frames, end) = read_all(&long);
        assert_eq!(frames.len(), 1);
        assert!(matches!(end, Step::Damaged(ref r) if r.contains("a packet of 400 bytes")));
        // Not starting with a section header.
        let (frames, end) = read_all(&epb(1));
        assert!(frames.is_empty());
        assert!(matches!(end, Step::Damaged(ref r) if r.contains("section header")));
    }
}
