//! pcapng (what tshark and dumpcap write), block by block, with pcap-file's
//! block parser; the sections, interfaces and clocks are kept here.
//!
//! Facts a maintainer needs:
//! - A file has sections, each with its own byte order and interfaces; an
//!   interface id counts the interfaces of its section, and a new section
//!   starts them over.
//! - An interface's `if_tsresol` sets its clock (10^-v s, or 2^-v s with
//!   the top bit set; µs when absent) and `if_tsoffset` adds whole seconds
//!   to every timestamp of it (signed). The reader hands out timestamps in
//!   raw units (its `Duration` is a count, not nanoseconds).
//! - Simple packet blocks carry no time and belong to the first interface;
//!   their captured length is the block's, padding included, so it is cut
//!   to the original length.
//! - Packet blocks (obsolete, type 2) still come from old tools.

use std::{fs::File, io::BufReader};

use pcap_file::{
    pcapng::{
        blocks::interface_description::{InterfaceDescriptionBlock, InterfaceDescriptionOption},
        Block, PcapNgReader,
    },
    DataLink, PcapError,
};

use super::Raw;

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
    Error(PcapError),
    End,
}

/// A pcapng file being read.
pub(super) struct PcapNgFile {
    r: Box<PcapNgReader<BufReader<File>>>,
    /// Interfaces of the current section.
    ifaces: Vec<Iface>,
    /// Every interface seen (id, name), in order.
    pub seen: Vec<(u32, String)>,
}

impl PcapNgFile {
    /// Reads the first section header.
    pub fn open(r: BufReader<File>) -> Result<PcapNgFile, PcapError> {
        Ok(PcapNgFile {
            r: Box::new(PcapNgReader::new(r)?),
            ifaces: Vec::new(),
            seen: Vec::new(),
        })
    }

    /// The next block.
    pub fn next(&mut self) -> Step {
        // Owned (its data copied once, as a frame's is anyway), so the
        // block outlives the reader's borrow.
        let block = match self.r.next_block() {
            None => return Step::End,
            Some(Ok(b)) => b.into_owned(),
            Some(Err(e)) => return Step::Error(e),
        };
        match block {
            Block::SectionHeader(_) => {
                self.ifaces.clear();
                Step::NotFrame
            }
            Block::InterfaceDescription(idb) => {
                self.describe(&idb);
                Step::NotFrame
            }
            Block::EnhancedPacket(p) => self.frame(
                p.interface_id,
                p.timestamp.as_nanos(),
                p.data.into_owned(),
                p.original_len,
            ),
            Block::Packet(p) => self.frame(
                p.interface_id.into(),
                p.timestamp.into(),
                p.data.into_owned(),
                p.original_len,
            ),
            Block::SimplePacket(p) => {
                // No timestamp: the capture's order is all there is.
                let Some(i) = self.ifaces.first() else {
                    return Step::Unplaced;
                };
                let mut data = p.data.into_owned();
                data.truncate(p.original_len as usize);
                Step::Frame(Raw {
                    ts_ns: 0,
                    iface: 0,
                    link: i.link,
                    orig_len: p.original_len as usize,
                    data,
                })
            }
            _ => Step::NotFrame,
        }
    }

    fn frame(&self, iface: u32, units: u128, data: Vec<u8>, orig_len: u32) -> Step {
        let Some(i) = self.ifaces.get(iface as usize) else {
            return Step::Undescribed(iface);
        };
        Step::Frame(Raw {
            ts_ns: i.ns(units),
            iface,
            link: i.link,
            data,
            orig_len: orig_len as usize,
        })
    }

    /// A pcapng interface: its link type, its clock and its name.
    fn describe(&mut self, idb: &InterfaceDescriptionBlock<'_>) {
        let mut resol = 6u8;
        let mut offset_s = 0i64;
        let mut name = None;
        for o in &idb.options {
            match o {
                InterfaceDescriptionOption::IfTsResol(v) => resol = *v,
                // Signed in the format; pcap-file reads the bits unsigned.
                InterfaceDescriptionOption::IfTsOffset(s) => offset_s = *s as i64,
                InterfaceDescriptionOption::IfName(n) => name = Some(n.to_string()),
                _ => {}
            }
        }
        // 10^-v s, or 2^-v s with the top bit set.
        let (ns_num, ns_den) = if resol & 0x80 == 0 {
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
            ns_num,
            ns_den,
            offset_ns: i128::from(offset_s) * 1_000_000_000,
        });
    }
}
