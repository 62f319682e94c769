//! `/metrics`: the daemon's counters in Prometheus' text format (0.0.4),
//! from its latest counter summary ([`RunSummary`], the type the daemon
//! writes). Counters end in `_total`; every loss has its reason as a label.

use std::fmt::Write as _;

use fireplot_common::counters::Misc;

use crate::{
    store::writer::{NotStored, StoreCounts},
    summary::{DetectSummary, RunSummary},
};

/// Escapes a label value (backslash, quote, newline).
fn esc(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

struct Out(String);

impl Out {
    fn head(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {help}");
        let _ = writeln!(self.0, "# TYPE {name} {kind}");
    }
    fn sample(&mut self, name: &str, labels: &[(&str, &str)], v: u64) {
        self.0.push_str(name);
        if !labels.is_empty() {
            self.0.push('{');
            for (i, (k, val)) in labels.iter().enumerate() {
                if i > 0 {
                    self.0.push(',');
                }
                let _ = write!(self.0, "{k}=\"{}\"", esc(val));
            }
            self.0.push('}');
        }
        let _ = writeln!(self.0, " {v}");
    }
    /// A metric of one sample without labels.
    fn single(&mut self, name: &str, kind: &str, help: &str, v: u64) {
        self.head(name, kind, help);
        self.sample(name, &[], v);
    }
}

/// The exposition of one summary (None: only `fireplot_up 0`).
pub fn render(s: Option<&RunSummary>) -> String {
    let mut o = Out(String::new());
    o.single(
        "fireplot_up",
        "gauge",
        "1 when a counter summary is available (from the running daemon or the history)",
        u64::from(s.is_some()),
    );
    let Some(s) = s else {
        return o.0;
    };
    packets(&mut o, s);
    losses(&mut o, s);
    kernel(&mut o, s);
    if let Some(st) = &s.store {
        store(&mut o, st);
    }
    if let Some(d) = &s.detect {
        detection(&mut o, d);
    }
    o.head(
        "fireplot_uptime_seconds",
        "gauge",
        "Seconds since the sensor started",
    );
    let _ = writeln!(o.0, "fireplot_uptime_seconds {}", s.uptime_s);
    o.0
}

/// Packets as classified, and events sent and received.
fn packets(o: &mut Out, s: &RunSummary) {
    o.head(
        "fireplot_packets_total",
        "counter",
        "Inbound packets by class, family and protocol, as the XDP classifier decided",
    );
    for c in &s.classes {
        o.sample(
            "fireplot_packets_total",
            &[
                ("class", &c.class),
                ("family", &c.family),
                ("proto", &c.proto),
            ],
            c.packets,
        );
    }
    o.single(
        "fireplot_events_sent_total",
        "counter",
        "Events the kernel wrote to the ring buffer",
        s.kernel(Misc::EventsSent),
    );
    o.single(
        "fireplot_events_received_total",
        "counter",
        "Events userspace took from the ring buffer",
        s.userspace.events_received,
    );
    if !s.interfaces.is_empty() {
        o.head(
            "fireplot_interface_events_total",
            "counter",
            "Events by the WAN interface their packet arrived on",
        );
        for i in &s.interfaces {
            o.sample(
                "fireplot_interface_events_total",
                &[("iface", &i.name)],
                i.events,
            );
        }
        o.head(
            "fireplot_interface_aggregated_packets_total",
            "counter",
            "Packets counted in the kernel's aggregates, by the WAN interface they arrived on",
        );
        for i in &s.interfaces {
            o.sample(
                "fireplot_interface_aggregated_packets_total",
                &[("iface", &i.name)],
                i.aggregated_packets,
            );
        }
    }
}

/// Packets aggregated instead of sent, and what was lost, by why.
fn losses(o: &mut Out, s: &RunSummary) {
    o.head(
        "fireplot_packets_aggregated_total",
        "counter",
        "Unsolicited packets counted in aggregates instead of sent one by one, by why",
    );
    for (reason, m) in [
        ("rate_limited", Misc::Suppressed),
        ("target_limited", Misc::TargetLimited),
        ("over_budget", Misc::OverBudget),
        ("ring_full", Misc::RingFull),
    ] {
        o.sample(
            "fireplot_packets_aggregated_total",
            &[("reason", reason)],
            s.kernel(m),
        );
    }
    o.head(
        "fireplot_events_lost_total",
        "counter",
        "Packets or events not sent or not kept, by reason",
    );
    for (reason, v) in [
        ("agg_lost", s.kernel(Misc::AggLost)),
        ("decode_error", s.userspace.decode_errors),
        ("write_error", s.userspace.write_errors),
        ("not_stored", s.store.map_or(0, |st| st.not_stored)),
    ] {
        o.sample("fireplot_events_lost_total", &[("reason", reason)], v);
    }
}

/// The kernel side's failures and notable packets, and its flows.
fn kernel(o: &mut Out, s: &RunSummary) {
    o.head(
        "fireplot_kernel_errors_total",
        "counter",
        "Kernel-side failures and notable packets, by name",
    );
    for m in [
        Misc::FlowInsertFailed,
        Misc::LiveInsertFailed,
        Misc::ExtHeaderOverflow,
        Misc::Fragments,
        Misc::CacheMisses,
    ] {
        o.sample(
            "fireplot_kernel_errors_total",
            &[("counter", m.name())],
            s.kernel(m),
        );
    }
    o.single(
        "fireplot_flows_created_total",
        "counter",
        "Flows the egress recorder created",
        s.kernel(Misc::FlowsCreated),
    );
}

/// The history writer: what it stored, what it could not, its queue.
fn store(o: &mut Out, st: &StoreCounts) {
    o.head(
        "fireplot_store_items_total",
        "counter",
        "Items handed to the history writer, by kind and outcome",
    );
    for (kind, outcome, v) in [
        ("events", "stored", st.stored),
        ("events", "not_stored", st.not_stored),
        ("alerts", "stored", st.alerts_stored),
        ("alerts", "not_stored", st.alerts_not_stored),
        ("summaries", "stored", st.summaries_stored),
        ("summaries", "not_stored", st.summaries_not_stored),
    ] {
        o.sample(
            "fireplot_store_items_total",
            &[("kind", kind), ("outcome", outcome)],
            v,
        );
    }
    o.head(
        "fireplot_store_events_not_stored_total",
        "counter",
        "Events the history writer could not store, by reason",
    );
    for (reason, v) in [
        (NotStored::QueueFull, st.not_stored_queue_full),
        (NotStored::DiskFull, st.not_stored_disk_full),
        (NotStored::DbError, st.not_stored_db_error),
    ] {
        o.sample(
            "fireplot_store_events_not_stored_total",
            &[("reason", reason.name())],
            v,
        );
    }
    o.single(
        "fireplot_store_queue_events",
        "gauge",
        "Events waiting in the history writer's queue (its lag)",
        st.queued,
    );
}

/// The detector: alerts, its state against its budget, its sources.
fn detection(o: &mut Out, d: &DetectSummary) {
    o.head(
        "fireplot_alerts_total",
        "counter",
        "Alert records written, by kind and severity",
    );
    for a in &d.by_kind {
        o.sample(
            "fireplot_alerts_total",
            &[("kind", &a.kind), ("severity", &a.severity.to_string())],
            a.count,
        );
    }
    o.head(
        "fireplot_detector_state_bytes",
        "gauge",
        "Bytes of detector state, and its budget",
    );
    o.sample(
        "fireplot_detector_state_bytes",
        &[("of", "used")],
        d.stats.state_bytes,
    );
    o.sample(
        "fireplot_detector_state_bytes",
        &[("of", "budget")],
        d.stats.budget_bytes,
    );
    o.single(
        "fireplot_detector_sources",
        "gauge",
        "Sources the detector tracks",
        d.stats.sources_tracked,
    );
    o.head(
        "fireplot_detector_sources_dropped_total",
        "counter",
        "Sources the detector forgot, by reason",
    );
    o.sample(
        "fireplot_detector_sources_dropped_total",
        &[("reason", "evicted")],
        d.stats.sources_evicted,
    );
    o.sample(
        "fireplot_detector_sources_dropped_total",
        &[("reason", "expired")],
        d.stats.sources_expired,
    );
    o.single(
        "fireplot_detector_actors",
        "gauge",
        "Actors (a source, host or port and kind over time) the detector remembers",
        d.stats.actors,
    );
    attacks(o, d);
}

/// Attacks on our hosts in progress: one series per destination and
/// vector, only while under attack (a bounded set: at most 20).
fn attacks(o: &mut Out, d: &DetectSummary) {
    o.single(
        "fireplot_attacks_in_progress",
        "gauge",
        "Attacks on our hosts in progress (ddos episodes)",
        d.attacks.len() as u64,
    );
    for (name, help, v) in [
        (
            "fireplot_attack_packets_per_second",
            "An attack's last second, packets, by destination and vector",
            (|a: &crate::detect::ddos::AttackNow| a.pps) as fn(&_) -> u64,
        ),
        (
            "fireplot_attack_bits_per_second",
            "An attack's last second, bits, by destination and vector",
            |a| a.bps,
        ),
        (
            "fireplot_attack_sources",
            "An attack's distinct sources, by destination and vector",
            |a| a.sources,
        ),
    ] {
        o.head(name, "gauge", help);
        for a in &d.attacks {
            o.sample(
                name,
                &[("destination", &a.destination), ("vector", &a.vector)],
                v(a),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::{
        fleet::{publish::PublishCounts, spool::SpoolCounts},
        sensor::stats::ClassCount,
        summary::{DetectCounts, KindCount, UserCounts},
    };

    /// The samples of an exposition: `name{labels}` → value.
    fn samples(text: &str) -> BTreeMap<String, String> {
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .map(|l| {
                let (k, v) = l.rsplit_once(' ').expect("name and value");
                (k.to_string(), v.to_string())
            })
            .collect()
    }

    /// Every sample line is `name{labels} value` with a declared name.
    #[test]
    fn exposition_is_well_formed() {
        let s = serde_json::json!({
            "uptime_s": 3.5,
            "classes": [
                {"class": "unsolicited", "family": "ipv4", "proto": "tcp", "packets": 7},
                {"class": "unsolicited", "family": "ipv6", "proto": "sctp", "packets": 3},
            ],
            "kernel": {"events_sent": 7, "ring_full": 1, "suppressed": 2},
            "userspace": {"events_received": 7},
            "store": {"stored": 5, "not_stored": 2, "queued": 0},
            "detect": {"state_bytes": 10, "budget_bytes": 20, "by_kind": [{"kind": "port_scan", "severity": 3, "count": 2}]},
        });
        let text = render(Some(&serde_json::from_value(s).expect("a summary")));
        let mut declared = Vec::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                declared.push(rest.split(' ').next().unwrap().to_string());
                continue;
            }
            if line.starts_with('#') {
                continue;
            }
            let (name_labels, value) = line.rsplit_once(' ').unwrap();
            assert!(value.parse::<f64>().is_ok(), "{line}");
            let name = name_labels.split('{').next().unwrap();
            assert!(declared.iter().any(|d| d == name), "{name} undeclared");
            assert!(name.starts_with("fireplot_"));
        }
        assert!(text.contains(
            "fireplot_packets_total{class=\"unsolicited\",family=\"ipv4\",proto=\"tcp\"} 7"
        ));
        assert!(text.contains(
            "fireplot_packets_total{class=\"unsolicited\",family=\"ipv6\",proto=\"sctp\"} 3"
        ));
        assert!(text.contains("fireplot_packets_aggregated_total{reason=\"ring_full\"} 1"));
        assert!(text.contains("fireplot_alerts_total{kind=\"port_scan\",severity=\"3\"} 2"));
        assert_eq!(render(None).lines().last(), Some("fireplot_up 0"));
        assert_eq!(esc("a\"b\\c\n"), "a\\\"b\\\\c\\n");
    }

    /// A summary as the daemon writes it, every counter a different
    /// number, read back as the console reads it: each metric shows its
    /// own counter. A summary field renamed or mapped to the wrong metric
    /// fails here.
    #[test]
    fn every_metric_shows_its_counter() {
        let mut next = 100u64;
        let mut n = || {
            next += 1;
            next
        };
        let s = RunSummary {
            uptime_s: 12.5,
            classes: vec![ClassCount {
                class: "unsolicited".into(),
                family: "ipv6".into(),
                proto: "udp".into(),
                packets: n(),
            }],
            kernel: Misc::ALL.iter().map(|m| (m.name().into(), n())).collect(),
            userspace: UserCounts {
                events_received: n(),
                events_written: n(),
                decode_errors: n(),
                write_errors: n(),
                aggregates_received: n(),
                aggregated_packets: n(),
            },
            detect: Some(DetectSummary {
                stats: DetectCounts {
                    sources_evicted: n(),
                    sources_expired: n(),
                    sources_tracked: n(),
                    state_bytes: n(),
                    budget_bytes: n(),
                    actors: n(),
                    ..DetectCounts::default()
                },
                alerts: n(),
                write_errors: n(),
                by_kind: vec![KindCount {
                    kind: "port_scan".into(),
                    severity: 4,
                    count: n(),
                }],
                attacks: vec![crate::detect::ddos::AttackNow {
                    destination: "198.18.1.6".into(),
                    vector: "udp_reflection".into(),
                    pps: n(),
                    bps: n(),
                    peak_pps: n(),
                    sources: n(),
                }],
            }),
            store: Some(StoreCounts {
                stored: n(),
                not_stored: n(),
                alerts_stored: n(),
                alerts_not_stored: n(),
                summaries_stored: n(),
                summaries_not_stored: n(),
                not_stored_queue_full: n(),
                not_stored_disk_full: n(),
                not_stored_db_error: n(),
                queued: n(),
                waited_ms: n(),
            }),
            fleet: Some(PublishCounts {
                spool: SpoolCounts::default(),
                ..PublishCounts::default()
            }),
            interfaces: vec![crate::summary::IfaceCount {
                name: "wan1".into(),
                ifindex: 7,
                events: n(),
                aggregates: n(),
                aggregated_packets: n(),
            }],
            ..RunSummary::default()
        };
        let read: RunSummary = serde_json::from_str(&s.to_json()).expect("the summary reads back");
        let got = samples(&render(Some(&read)));
        let k = |m: Misc| s.kernel[m.name()].to_string();
        let d = s.detect.as_ref().expect("set").stats;
        let attack = s.detect.as_ref().expect("set").attacks[0].clone();
        let st = s.store.expect("set");
        let want: Vec<(&str, String)> = vec![
            ("fireplot_up", "1".into()),
            (
                "fireplot_packets_total{class=\"unsolicited\",family=\"ipv6\",proto=\"udp\"}",
                s.classes[0].packets.to_string(),
            ),
            ("fireplot_events_sent_total", k(Misc::EventsSent)),
            (
                "fireplot_events_received_total",
                s.userspace.events_received.to_string(),
            ),
            (
                "fireplot_interface_events_total{iface=\"wan1\"}",
                s.interfaces[0].events.to_string(),
            ),
            (
                "fireplot_interface_aggregated_packets_total{iface=\"wan1\"}",
                s.interfaces[0].aggregated_packets.to_string(),
            ),
            (
                "fireplot_packets_aggregated_total{reason=\"rate_limited\"}",
                k(Misc::Suppressed),
            ),
            (
                "fireplot_packets_aggregated_total{reason=\"target_limited\"}",
                k(Misc::TargetLimited),
            ),
            (
                "fireplot_packets_aggregated_total{reason=\"over_budget\"}",
                k(Misc::OverBudget),
            ),
            (
                "fireplot_packets_aggregated_total{reason=\"ring_full\"}",
                k(Misc::RingFull),
            ),
            (
                "fireplot_events_lost_total{reason=\"agg_lost\"}",
                k(Misc::AggLost),
            ),
            (
                "fireplot_events_lost_total{reason=\"decode_error\"}",
                s.userspace.decode_errors.to_string(),
            ),
            (
                "fireplot_events_lost_total{reason=\"write_error\"}",
                s.userspace.write_errors.to_string(),
            ),
            (
                "fireplot_events_lost_total{reason=\"not_stored\"}",
                st.not_stored.to_string(),
            ),
            (
                "fireplot_kernel_errors_total{counter=\"flow_insert_failed\"}",
                k(Misc::FlowInsertFailed),
            ),
            (
                "fireplot_kernel_errors_total{counter=\"live_insert_failed\"}",
                k(Misc::LiveInsertFailed),
            ),
            (
                "fireplot_kernel_errors_total{counter=\"ext_header_overflow\"}",
                k(Misc::ExtHeaderOverflow),
            ),
            (
                "fireplot_kernel_errors_total{counter=\"fragments\"}",
                k(Misc::Fragments),
            ),
            (
                "fireplot_kernel_errors_total{counter=\"cache_misses\"}",
                k(Misc::CacheMisses),
            ),
            ("fireplot_flows_created_total", k(Misc::FlowsCreated)),
            (
                "fireplot_store_items_total{kind=\"events\",outcome=\"stored\"}",
                st.stored.to_string(),
            ),
            (
                "fireplot_store_items_total{kind=\"events\",outcome=\"not_stored\"}",
                st.not_stored.to_string(),
            ),
            (
                "fireplot_store_items_total{kind=\"alerts\",outcome=\"stored\"}",
                st.alerts_stored.to_string(),
            ),
            (
                "fireplot_store_items_total{kind=\"alerts\",outcome=\"not_stored\"}",
                st.alerts_not_stored.to_string(),
            ),
            (
                "fireplot_store_items_total{kind=\"summaries\",outcome=\"stored\"}",
                st.summaries_stored.to_string(),
            ),
            (
                "fireplot_store_items_total{kind=\"summaries\",outcome=\"not_stored\"}",
                st.summaries_not_stored.to_string(),
            ),
            (
                "fireplot_store_events_not_stored_total{reason=\"queue_full\"}",
                st.not_stored_queue_full.to_string(),
            ),
            (
                "fireplot_store_events_not_stored_total{reason=\"disk_full\"}",
                st.not_stored_disk_full.to_string(),
            ),
            (
                "fireplot_store_events_not_stored_total{reason=\"db_error\"}",
                st.not_stored_db_error.to_string(),
            ),
            ("fireplot_store_queue_events", st.queued.to_string()),
            (
                "fireplot_alerts_total{kind=\"port_scan\",severity=\"4\"}",
                s.detect.as_ref().expect("set").by_kind[0].count.to_string(),
            ),
            (
                "fireplot_detector_state_bytes{of=\"used\"}",
                d.state_bytes.to_string(),
            ),
            (
                "fireplot_detector_state_bytes{of=\"budget\"}",
                d.budget_bytes.to_string(),
            ),
            ("fireplot_detector_sources", d.sources_tracked.to_string()),
            (
                "fireplot_detector_sources_dropped_total{reason=\"evicted\"}",
                d.sources_evicted.to_string(),
            ),
            (
                "fireplot_detector_sources_dropped_total{reason=\"expired\"}",
                d.sources_expired.to_string(),
            ),
            ("fireplot_detector_actors", d.actors.to_string()),
            ("fireplot_attacks_in_progress", "1".into()),
            (
                "fireplot_attack_packets_per_second{destination=\"198.18.1.6\",vector=\"udp_reflection\"}",
                attack.pps.to_string(),
            ),
            (
                "fireplot_attack_bits_per_second{destination=\"198.18.1.6\",vector=\"udp_reflection\"}",
                attack.bps.to_string(),
            ),
            (
                "fireplot_attack_sources{destination=\"198.18.1.6\",vector=\"udp_reflection\"}",
                attack.sources.to_string(),
            ),
            ("fireplot_uptime_seconds", "12.5".into()),
        ];
        for (metric, value) in &want {
            assert_eq!(got.get(*metric), Some(value), "{metric}");
        }
        assert_eq!(got.len(), want.len(), "a metric without a check: {got:?}");
    }
}
