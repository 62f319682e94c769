//! Counter summaries: one screen of text, or one JSON object per line.

use std::fmt::Write as _;

use fireplot_common::{counters::Misc, event::Class};
use serde::Serialize;

use crate::sensor::Counters;

/// What userspace counted on its side of the ring buffer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
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
#[derive(Clone, Debug, Serialize)]
pub struct DetectSummary {
    #[serde(flatten)]
    pub stats: crate::detect::DetectStats,
    /// Alert records written.
    pub alerts: u64,
    pub write_errors: u64,
    /// Episodes started, by kind and the severity they started with.
    pub by_kind: Vec<KindCount>,
}

/// Episodes of one kind and severity.
#[derive(Clone, Debug, Serialize)]
pub struct KindCount {
    pub kind: String,
    pub severity: u8,
    pub count: u64,
}

/// A summary at one moment.
#[derive(Clone, Debug, Serialize)]
pub struct Summary<'a> {
    pub ts: String,
    pub iface: &'a str,
    pub uptime_s: f64,
    pub classes: &'a [crate::sensor::stats::ClassCount],
    pub kernel: std::collections::BTreeMap<&'static str, u64>,
    pub userspace: UserCounts,
    /// Detector counts, when detection runs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detect: Option<DetectSummary>,
    /// History store counts, when `--db` is set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub store: Option<crate::store::writer::StoreCounts>,
    /// Fleet publishing counts, when `--publish` is set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fleet: Option<crate::fleet::publish::PublishCounts>,
    pub top_ports: &'a [crate::sensor::stats::PortCount],
    /// Per-CPU unsolicited packets, events and losses (receive spreading).
    pub per_cpu: &'a [crate::sensor::stats::CpuCount],
    /// How the per-source budget is split, when the limiter is on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimitSummary>,
}

/// The per-source event budget and each CPU's share of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
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

impl<'a> Summary<'a> {
    pub fn new(
        ts: String,
        iface: &'a str,
        uptime_s: f64,
        c: &'a Counters,
        user: UserCounts,
    ) -> Summary<'a> {
        Summary {
            ts,
            iface,
            uptime_s,
            classes: &c.classes,
            kernel: c.misc.iter().copied().collect(),
            userspace: user,
            store: None,
            fleet: None,
            detect: None,
            top_ports: &c.ports[..c.ports.len().min(10)],
            per_cpu: &c.per_cpu,
            rate_limit: None,
        }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("summary serializes")
    }

    /// A few lines for a terminal.
    pub fn to_text(&self, c: &Counters) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "fireplot on {} — {:.1} s — {}",
            self.iface, self.uptime_s, self.ts
        );
        let mut line = String::from("  packets:");
        for class in Class::ALL {
            let n = c.class_total(class);
            let _ = write!(line, " {} {}", class.name(), n);
        }
        let _ = writeln!(s, "{line}");
        let mut unsol = String::from("  unsolicited by family/proto:");
        let mut any = false;
        for cc in c
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
        let _ = writeln!(
            s,
            "  events: sent {} received {} written {} | lost: agg_lost {} decode_errors {} write_errors {}",
            c.misc(Misc::EventsSent),
            self.userspace.events_received,
            self.userspace.events_written,
            c.misc(Misc::AggLost),
            self.userspace.decode_errors,
            self.userspace.write_errors,
        );
        let _ = writeln!(
            s,
            "  aggregated (counted, not sent one by one): {} packets in {} aggregates | why: source over --rate-limit {} target over --target-limit {} over --event-budget {} ring full {} | without source (table full) {}",
            c.misc(Misc::Aggregated),
            self.userspace.aggregates_received,
            c.misc(Misc::Suppressed),
            c.misc(Misc::TargetLimited),
            c.misc(Misc::OverBudget),
            c.misc(Misc::RingFull),
            c.misc(Misc::AggCoarse),
        );
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
            let _ = writeln!(
                s,
                "  history: events stored {} not_stored {}, alerts stored {} not_stored {}, summaries stored {} not_stored {}",
                st.stored,
                st.not_stored,
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
        let _ = writeln!(
            s,
            "  flows: created {} insert_failed {} live_insert_failed {} cache_misses {} egress_packets {} fragments {} ext_header_overflow {}",
            c.misc(Misc::FlowsCreated),
            c.misc(Misc::FlowInsertFailed),
            c.misc(Misc::LiveInsertFailed),
            c.misc(Misc::CacheMisses),
            c.misc(Misc::EgressPackets),
            c.misc(Misc::Fragments),
            c.misc(Misc::ExtHeaderOverflow),
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
}
