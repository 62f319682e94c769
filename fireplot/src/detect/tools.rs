//! Scanner fingerprints, from fields every event carries. A tool is named
//! only when its signature holds for `tool_min_share` of at least
//! `tool_min_probes` probes; otherwise the tool is `unknown`. The first
//! `SAMPLE` probes of a source or episode are checked: the share is settled
//! long before, and a scan of a million ports need not pay per probe.
//!
//! - zmap: IP id 54321 on every probe (its default since 2013).
//! - masscan: IP id = (destination address ^ destination port ^ TCP
//!   sequence) & 0xffff, its stateless cookie (checked on real masscan in
//!   the lab: 774 probes of 774).
//! - Mirai and its descendants: TCP sequence = destination address.
//! - nmap SYN scan: window 1024/2048/3072/4096 and a 24-byte TCP header
//!   (only the MSS option): a 58-byte IPv4 frame (78 for IPv6).
//! - hping3 defaults: window 512, no TCP options (54-byte IPv4 frame).
//!
//! (unicornscan is not packaged for this platform; without probes of it to
//! check a signature against, it is not claimed.)

use std::net::IpAddr;

use super::probe::{Probe, Role, SYN};

/// Probes checked per tally.
pub const SAMPLE: u32 = 256;

/// How many checked probes carried each tool's signature.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ToolVotes {
    pub checked: u32,
    zmap: u32,
    masscan: u32,
    mirai: u32,
    nmap: u32,
    hping3: u32,
}

/// Is the frame `want` bytes long, untagged or with one or two VLAN tags?
fn frame_len_is(p: &Probe, want: u16) -> bool {
    [want, want + 4, want + 8].contains(&p.len)
}

impl ToolVotes {
    /// Checks one probe (scan probes only: answers carry no scanner's marks).
    pub fn add(&mut self, p: &Probe) {
        if p.role != Role::Probe || self.checked >= SAMPLE {
            return;
        }
        self.checked = self.checked.saturating_add(1);
        let v4 = match p.dst_ip {
            IpAddr::V4(a) => Some(u32::from(a)),
            IpAddr::V6(_) => None,
        };
        let syn = p.proto == 6 && p.flags & 0x3f == SYN;
        if v4.is_some() && p.ip_id == 54_321 {
            self.zmap += 1;
        }
        if let (Some(dst), true) = (v4, syn) {
            if (dst ^ u32::from(p.port) ^ p.tcp_seq) & 0xffff == u32::from(p.ip_id) {
                self.masscan += 1;
            }
            if p.tcp_seq == dst {
                self.mirai += 1;
            }
        }
        if syn {
            let (nmap_len, plain_len) = if v4.is_some() { (58, 54) } else { (78, 74) };
            if matches!(p.tcp_window, 1024 | 2048 | 3072 | 4096) && frame_len_is(p, nmap_len) {
                self.nmap += 1;
            }
            if p.tcp_window == 512 && frame_len_is(p, plain_len) {
                self.hping3 += 1;
            }
        }
    }

    /// The tool whose signature the probes carry, or `unknown`.
    pub fn name(&self, min_probes: u32, min_share: f64) -> &'static str {
        if self.checked < min_probes {
            return "unknown";
        }
        let need = (min_share * f64::from(self.checked)).ceil() as u32;
        // Most specific first: a relation between fields beats a constant.
        [
            ("mirai", self.mirai),
            ("masscan", self.masscan),
            ("zmap", self.zmap),
            ("nmap", self.nmap),
            ("hping3", self.hping3),
        ]
        .into_iter()
        .find(|(_, n)| *n >= need)
        .map_or("unknown", |(t, _)| t)
    }
}
