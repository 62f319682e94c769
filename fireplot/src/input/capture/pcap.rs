//! Classic pcap (libpcap's own format), read record by record.
//!
//! Read here rather than with pcap-file's `PcapReader`, which refuses a
//! record whose original length exceeds the file's snap length ("orig_len >
//! snap_len") — what every frame a snap length cut is (`tcpdump -s 96`) —
//! and one whose captured length does (libpcap reads both). The format:
//!
//! - a 24-byte file header: magic (0xa1b2c3d4 µs, 0xa1b23c4d ns, in the
//!   writer's byte order, which the whole file then uses), version, two
//!   unused words, snap length, link type (the low 28 bits; the top four
//!   can say the frames carry an FCS);
//! - records: seconds, µs or ns, captured length, original length (16
//!   bytes), then the captured bytes.
//!
//! libpcap refuses a record longer than 262,144 bytes (its `MAXIMUM_SNAPLEN`
//! for every link fireplot reads): a length past it is damage, not a frame.

use std::io::{self, BufReader, Read};

use pcap_file::DataLink;

use super::Raw;

const MAGIC_US: u32 = 0xa1b2_c3d4;
const MAGIC_NS: u32 = 0xa1b2_3c4d;
/// The link type's bits of the header's link word (libpcap's `LT_LINKTYPE`;
/// the top bits say how many bytes of FCS end each frame).
const LINKTYPE_MASK: u32 = 0x03ff_ffff;
/// The longest record libpcap reads for the link types fireplot reads.
pub const MAX_RECORD: u32 = 262_144;

/// What the next record was.
pub(super) enum Record {
    Frame(Raw),
    /// The file ended between records.
    End,
    /// The file ends inside this record.
    Cut,
    /// A record header that cannot be one (its length).
    TooLong(u32),
}

/// A pcap file after its header.
pub(super) struct PcapFile<R> {
    r: BufReader<R>,
    big_endian: bool,
    nanos: bool,
    pub link: DataLink,
}

impl<R: Read> PcapFile<R> {
    /// Reads the file header. `None`: not pcap's magic.
    pub fn open(mut r: BufReader<R>) -> io::Result<Option<PcapFile<R>>> {
        let mut h = [0u8; 24];
        if read_full(&mut r, &mut h)? < h.len() {
            return Ok(None);
        }
        let magic = [h[0], h[1], h[2], h[3]];
        let (big_endian, nanos) = match (u32::from_be_bytes(magic), u32::from_le_bytes(magic)) {
            (MAGIC_US, _) => (true, false),
            (MAGIC_NS, _) => (true, true),
            (_, MAGIC_US) => (false, false),
            (_, MAGIC_NS) => (false, true),
            _ => return Ok(None),
        };
        let mut f = PcapFile {
            r,
            big_endian,
            nanos,
            link: DataLink::NULL,
        };
        f.link = DataLink::from(f.word(&h[20..24]) & LINKTYPE_MASK);
        Ok(Some(f))
    }

    fn word(&self, b: &[u8]) -> u32 {
        let b: [u8; 4] = b.try_into().expect("four bytes");
        if self.big_endian {
            u32::from_be_bytes(b)
        } else {
            u32::from_le_bytes(b)
        }
    }

    /// The next record.
    pub fn next(&mut self) -> io::Result<Record> {
        let mut h = [0u8; 16];
        match read_full(&mut self.r, &mut h)? {
            0 => return Ok(Record::End),
            16 => {}
            _ => return Ok(Record::Cut),
        }
        let (sec, frac) = (self.word(&h[0..4]), self.word(&h[4..8]));
        let (incl, orig) = (self.word(&h[8..12]), self.word(&h[12..16]));
        if incl > MAX_RECORD {
            return Ok(Record::TooLong(incl));
        }
        let mut data = vec![0u8; incl as usize];
        if read_full(&mut self.r, &mut data)? < data.len() {
            return Ok(Record::Cut);
        }
        let frac_ns = if self.nanos {
            u64::from(frac)
        } else {
            u64::from(frac) * 1_000
        };
        Ok(Record::Frame(Raw {
            ts_ns: u64::from(sec) * 1_000_000_000 + frac_ns,
            iface: 0,
            link: self.link,
            data,
            orig_len: orig as usize,
        }))
    }
}

/// Reads until `buf` is full or the file ends; how much was read.
pub(super) fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::input::test_support::pcap_bytes;

    fn read_all(bytes: &[u8]) -> (DataLink, Vec<Raw>, Record) {
        let mut f = PcapFile::open(BufReader::new(bytes)).unwrap().unwrap();
        let mut frames = Vec::new();
        loop {
            match f.next().unwrap() {
                Record::Frame(r) => frames.push(r),
                end => return (f.link, frames, end),
            }
        }
    }

    #[test]
    fn both_byte_orders_and_both_resolutions_read_the_same() {
        let t = 1_795_600_000_123_456_789u64;
        let a = [1u8; 60];
        let b = [2u8; 96];
        for big in [false, true] {
            for nanos in [false, true] {
                // Snap length 96: the second frame was 300 bytes on the wire.
                let bytes = pcap_bytes(big, nanos, 96, 1, &[(t, &a, 60), (t + 1, &b, 300)]);
                let (link, frames, end) = read_all(&bytes);
                assert_eq!(link, DataLink::ETHERNET);
                assert!(matches!(end, Record::End));
                let want_ts = if nanos { t } else { t / 1000 * 1000 };
                assert_eq!(frames[0].ts_ns, want_ts, "big {big} nanos {nanos}");
                assert_eq!((frames[0].data.len(), frames[0].orig_len), (60, 60));
                assert_eq!((frames[1].data.len(), frames[1].orig_len), (96, 300));
                assert_eq!(frames[1].data, b);
            }
        }
    }

    #[test]
    fn the_fcs_bits_of_the_link_word_are_not_the_link_type() {
        // Link type 1 with "4 bytes of FCS" (0x1 << 28 | 0x4000000).
        let bytes = pcap_bytes(false, false, 65535, 0x1400_0001, &[]);
        assert_eq!(read_all(&bytes).0, DataLink::ETHERNET);
    }

    #[test]
    fn a_cut_record_and_a_damaged_length_are_told_apart() {
        let f = [7u8; 60];
        let whole = pcap_bytes(false, false, 65535, 1, &[(1, &f, 60), (2, &f, 60)]);
        // Cut inside the last record's data, then inside its header.
        for cut in [10, 16 + 50] {
            let (_, frames, end) = read_all(&whole[..whole.len() - cut]);
            assert_eq!(frames.len(), 1);
            assert!(matches!(end, Record::Cut));
        }
        let mut damaged = whole.clone();
        let second = 24 + 16 + 60;
        damaged[second + 8..second + 12].copy_from_slice(&0x7fff_0000u32.to_le_bytes());
        let (_, frames, end) = read_all(&damaged);
        assert_eq!(frames.len(), 1);
        assert!(matches!(end, Record::TooLong(0x7fff_0000)));
        assert!(
            PcapFile::open(BufReader::new(&b"\x0a\x0d\x0d\x0a rest"[..]))
                .unwrap()
                .is_none()
        );
    }
}
