//! The run summary: what a sensor run counted, on the kernel's side of
//! the ring buffer and on userspace's, at one moment. One type for those
//! that write it (`run` and `replay`: to `--stats-out`, the history and
//! the fleet) and those that read it (`/metrics`, the console's counters),
//! so a field has one name everywhere.

use std::{borrow::Cow, collections::BTreeMap, fmt::Write as _};

use fireplot_common::{counters::Misc, event::Class};
use serde::{Deserialize, Serialize};

use crate::{
    detect::DetectStats,
    fleet::publish::PublishCounts,
    sensor::{
        stats::{ClassCount, CpuCount, PortCount},
        Counters,
    },
    store::writer::StoreCounts,
};

/// Ports the summary lists, most hit first.
const TOP_PORTS: usize = 10;

/// A summary at one moment. Every field has a default, so a summary
/// written by another version (or another command) still reads.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct RunSummary {
    pub ts: String,
    pub iface: String,
    pub uptime_s: f64,
    /// Packets by class, family and protocol, as the XDP classifier decided.
    pub classes: Vec<ClassCount>,
    /// The kernel's health and loss counters by name ([`Misc::name`]).
    pub kernel: BTreeMap<Cow<'static, str>, u64>,
    pub userspace: UserCounts,
    /// Detector counts, when detection runs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detect: Option<DetectSummary>,
    /// History store counts, when `--db` is set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub store: Option<StoreCounts>,
    /// Fleet publishing counts, when `--publish` is set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fleet: Option<PublishCounts>,
    pub top_ports: Vec<PortCount>,
    /// Per-CPU unsolicited packets, events and losses (receive spreading).
    pub per_cpu: Vec<CpuCount>,
    /// How the per-source budget is split, when the limiter is on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimitSummary>,
    /// What each watched interface brought (a live run; with several
    /// `--iface`, their sum is `userspace`'s).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub interfaces: Vec<IfaceCount>,
    /// What a replay read from its capture (`replay` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub capture: Option<CaptureCounts>,
}

/// Events and aggregated packets that arrived on one interface.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct IfaceCount {
    pub name: String,
    pub ifindex: u32,
    /// Events (one per unsolicited packet the kernel reported) from it.
    pub events: u64,
    /// Aggregates taken from it, and the packets they stand for.
    pub aggregates: u64,
    pub aggregated_packets: u64,
}

/// The frames of a replayed capture.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct CaptureCounts {
    /// Frames read from the file.
    pub frames: u64,
    /// Frames run through the kernel programs.
    pub replayed: u64,
    /// Frames of link types fireplot does not read (counted, not replayed).
    pub not_read: u64,
    /// Frames the capture cut short (snap length): classified on what it
    /// held, with their length on the wire.
    pub cut: u64,
    /// Frames longer than BPF_PROG_TEST_RUN takes whole, cut to fit.
    pub too_long: u64,
}

/// What userspace counted on its side of the ring buffer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct UserCounts {
    /// Records taken from the ring buffer.
    pub events_received: u64,
    /// Event lines written to `--events-out`.
    pub events_written: u64,
    /// Records too short to be an event (never expected; counted, not dropped silently).
    pub decode_errors: u64,
    /// Event lines that could not be written (I/O errors).
    pub write_errors: u64,
    /// Aggregates taken from the kernel (one per source prefix, port and
    /// second of a flood past the limits).
    pub aggregates_received: u64,
    /// Packets those aggregates stand for.
    pub aggregated_packets: u64,
}

/// What the live detector did.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct DetectSummary {
    #[serde(flatten)]
    pub stats: DetectCounts,
    /// Alert records written.
    pub alerts: u64,
    pub write_errors: u64,
    /// Episodes started, by kind and the severity they started with.
    pub by_kind: Vec<KindCount>,
    /// Attacks on our hosts in progress (at most 20, heaviest first).
    pub attacks: Vec<crate::detect::ddos::AttackNow>,
}

/// The engine's counters as the summary carries them.
pub type DetectCounts = DetectStats;

/// Episodes of one kind and severity.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct KindCount {
    pub kind: String,
    pub severity: u8,
    pub count: u64,
}

/// The per-source event budget and each CPU's share of it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RateLimitSummary {
    /// Events/s one source may cause over the whole sensor.
    pub rate_limit: u32,
    /// Events one source may cause at once over the whole sensor.
    pub rate_burst: u32,
    /// CPUs the budget is split across.
    pub cpus: u32,
    /// A CPU's share of the burst.
    pub cpu_burst: u64,
    /// A CPU's share of the rate, as nanoseconds between events.
    pub cpu_interval_ns: u64,
}

impl RunSummary {
    /// The kernel's counters `c` and userspace's `user`; the other stages'
    /// counts are the caller's to add.
    pub fn new(ts: String, iface: &str, uptime_s: f64, c: &Counters, user: UserCounts) -> Self {
        RunSummary {
            ts,
            iface: iface.to_string(),
            uptime_s,
            classes: c.classes.clone(),
            kernel: c.misc.iter().map(|&(n, v)| (Cow::Borrowed(n), v)).collect(),
            userspace: user,
            detect: None,
            store: None,
            fleet: None,
            top_ports: c.ports[..c.ports.len().min(TOP_PORTS)].to_vec(),
            per_cpu: c.per_cpu.clone(),
            rate_limit: None,
            interfaces: Vec::new(),
            capture: None,
        }
    }

    /// A kernel counter (0 when the summary has none).
    pub fn kernel(&self, m: Misc) -> u64 {
        self.kernel.get(m.name()).copied().unwrap_or(0)
    }

    /// Packets of `class` over all families and protocols.
    pub fn class_total(&self, class: Class) -> u64 {
        self.classes
            .iter()
            .filter(|c| c.class == class.name())
            .map(|c| c.packets)
            .sum()
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("summary serializes")
    }

    /// A few lines for a terminal.
    pub fn to_text(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "fireplot on {} — {:.1} s — {}",
            self.iface, self.uptime_s, self.ts
        );
        if let Some(c) = &self.capture {
            let _ = writeln!(
                s,
                "  capture: frames {} replayed {} | cut short by the snap length {} | longer than a test run takes {} | link types not read {}",
                c.frames, c.replayed, c.cut, c.too_long, c.not_read
            );
        }
        self.text_packets(&mut s);
        self.text_events(&mut s);
        if self.interfaces.len() > 1 {
            let each: Vec<String> = self
                .interfaces
                .iter()
                .map(|i| {
                    format!(
                        "{} {} events {} aggregated packets",
                        i.name, i.events, i.aggregated_packets
                    )
                })
                .collect();
            let _ = writeln!(s, "  interfaces: {}", each.join("; "));
        }
        self.text_stages(&mut s);
        let _ = writeln!(
            s,
            "  flows: created {} insert_failed {} live_insert_failed {} cache_misses {} egress_packets {} fragments {} ext_header_overflow {}",
            self.kernel(Misc::FlowsCreated),
            self.kernel(Misc::FlowInsertFailed),
            self.kernel(Misc::LiveInsertFailed),
            self.kernel(Misc::CacheMisses),
            self.kernel(Misc::EgressPackets),
            self.kernel(Misc::Fragments),
            self.kernel(Misc::ExtHeaderOverflow),
        );
        if !self.top_ports.is_empty() {
            let ports: Vec<String> = self
                .top_ports
                .iter()
                .map(|p| format!("{}/{}({}) {}", p.proto, p.port, p.family, p.hits))
                .collect();
            let _ = writeln!(s, "  top ports: {}", ports.join(", "));
        }
        s
    }

    /// Packets by class, and the unsolicited ones by family and protocol.
    fn text_packets(&self, s: &mut String) {
        let mut line = String::from("  packets:");
        for class in Class::ALL {
            let _ = write!(line, " {} {}", class.name(), self.class_total(class));
        }
        let _ = writeln!(s, "{line}");
        let mut unsol = String::from("  unsolicited by family/proto:");
        let mut any = false;
        for cc in self
            .classes
            .iter()
            .filter(|cc| cc.class == Class::Unsolicited.name())
        {
            any = true;
            let _ = write!(unsol, " {}/{} {}", cc.family, cc.proto, cc.packets);
        }
        if any {
            let _ = writeln!(s, "{unsol}");
        }
    }

    /// Events sent, taken and lost, and the packets aggregated instead.
    fn text_events(&self, s: &mut String) {
        let _ = writeln!(
            s,
            "  events: sent {} received {} written {} | lost: agg_lost {} decode_errors {} write_errors {}",
            self.kernel(Misc::EventsSent),
            self.userspace.events_received,
            self.userspace.events_written,
            self.kernel(Misc::AggLost),
            self.userspace.decode_errors,
            self.userspace.write_errors,
        );
        let _ = writeln!(
            s,
            "  aggregated (counted, not sent one by one): {} packets in {} aggregates | why: source over --rate-limit {} target over --target-limit {} over --event-budget {} ring full {} | without source (table full) {}",
            self.kernel(Misc::Aggregated),
            self.userspace.aggregates_received,
            self.kernel(Misc::Suppressed),
            self.kernel(Misc::TargetLimited),
            self.kernel(Misc::OverBudget),
            self.kernel(Misc::RingFull),
            self.kernel(Misc::AggCoarse),
        );
    }

    /// Detection, the history and the fleet, those that run.
    fn text_stages(&self, s: &mut String) {
        if let Some(d) = &self.detect {
            let _ = writeln!(
                s,
                "  detection: {} alert records ({} not raised: the source has an ignored tag), {} sources tracked, {} evicted, {} MiB of {} MiB",
                d.alerts,
                d.stats.alerts_ignored_by_tag,
                d.stats.sources_tracked,
                d.stats.sources_evicted,
                d.stats.state_bytes >> 20,
                d.stats.budget_bytes >> 20
            );
        }
        if let Some(st) = &self.store {
            let why: String = st
                .not_stored_by_reason()
                .iter()
                .map(|(r, n)| format!(" {} {n}", r.name()))
                .collect();
            let _ = writeln!(
                s,
                "  history: events stored {} not_stored {}{}, alerts stored {} not_stored {}, summaries stored {} not_stored {}",
                st.stored,
                st.not_stored,
                if why.is_empty() { String::new() } else { format!(" (why:{why})") },
                st.alerts_stored,
                st.alerts_not_stored,
                st.summaries_stored,
                st.summaries_not_stored
            );
        }
        if let Some(f) = &self.fleet {
            let _ = writeln!(
                s,
                "  fleet ({}, {}): published {} items in {} batches | spool: spooled {} drained {} queued {} batches ({} bytes) dropped (full) {} | errors: publish {} spool {}",
                f.sensor,
                if f.connected { "connected" } else { "not connected" },
                f.published_items,
                f.published_batches,
                f.spool.spooled_items,
                f.spool.drained_items,
                f.spool.queued_batches,
                f.spool.queued_bytes,
                f.spool.dropped_items,
                f.publish_errors,
                f.spool_errors
            );
        }
    }
}
