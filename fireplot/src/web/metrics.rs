//! `/metrics`: the daemon's counters in Prometheus' text format (0.0.4),
//! from its latest counter summary. Counters end in `_total`; every loss
//! has its reason as a label.

use std::fmt::Write as _;

use serde_json::Value;

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
}

fn n(v: &Value) -> u64 {
    v.as_u64().unwrap_or(0)
}

/// The exposition of one summary (`Value::Null`: only `fireplot_up 0`).
pub fn render(s: &Value) -> String {
    let mut o = Out(String::new());
    o.head(
        "fireplot_up",
        "gauge",
        "1 when a counter summary is available (from the running daemon or the history)",
    );
    o.sample("fireplot_up", &[], u64::from(!s.is_null()));
    if s.is_null() {
        return o.0;
    }
    o.head(
        "fireplot_packets_total",
        "counter",
        "Inbound packets by class, family and protocol, as the XDP classifier decided",
    );
    for c in s["classes"].as_array().into_iter().flatten() {
        o.sample(
            "fireplot_packets_total",
            &[
                ("class", c["class"].as_str().unwrap_or("")),
                ("family", c["family"].as_str().unwrap_or("")),
                ("proto", c["proto"].as_str().unwrap_or("")),
            ],
            n(&c["packets"]),
        );
    }
    let k = &s["kernel"];
    o.head(
        "fireplot_events_sent_total",
        "counter",
        "Events the kernel wrote to the ring buffer",
    );
    o.sample("fireplot_events_sent_total", &[], n(&k["events_sent"]));
    o.head(
        "fireplot_events_received_total",
        "counter",
        "Events userspace took from the ring buffer",
    );
    o.sample(
        "fireplot_events_received_total",
        &[],
        n(&s["userspace"]["events_received"]),
    );
    o.head(
        "fireplot_packets_aggregated_total",
        "counter",
        "Unsolicited packets counted in aggregates instead of sent one by one, by why",
    );
    for (reason, v) in [
        ("rate_limited", n(&k["suppressed"])),
        ("target_limited", n(&k["target_limited"])),
        ("over_budget", n(&k["over_budget"])),
        ("ring_full", n(&k["ring_full"])),
    ] {
        o.sample(
            "fireplot_packets_aggregated_total",
            &[("reason", reason)],
            v,
        );
    }
    o.head(
        "fireplot_events_lost_total",
        "counter",
        "Packets or events not sent or not kept, by reason",
    );
    let st = &s["store"];
    for (reason, v) in [
        ("agg_lost", n(&k["agg_lost"])),
        ("decode_error", n(&s["userspace"]["decode_errors"])),
        ("write_error", n(&s["userspace"]["write_errors"])),
        ("not_stored", n(&st["not_stored"])),
    ] {
        o.sample("fireplot_events_lost_total", &[("reason", reason)], v);
    }
    o.head(
        "fireplot_kernel_errors_total",
        "counter",
        "Kernel-side failures and notable packets, by name",
    );
    for name in [
        "flow_insert_failed",
        "live_insert_failed",
        "ext_header_overflow",
        "fragments",
        "cache_misses",
    ] {
        o.sample(
            "fireplot_kernel_errors_total",
            &[("counter", name)],
            n(&k[name]),
        );
    }
    o.head(
        "fireplot_flows_created_total",
        "counter",
        "Flows the egress recorder created",
    );
    o.sample("fireplot_flows_created_total", &[], n(&k["flows_created"]));
    if !st.is_null() {
        o.head(
            "fireplot_store_items_total",
            "counter",
            "Items handed to the history writer, by kind and outcome",
        );
        for (kind, ok, field) in [
            ("events", "stored", "stored"),
            ("events", "not_stored", "not_stored"),
            ("alerts", "stored", "alerts_stored"),
            ("alerts", "not_stored", "alerts_not_stored"),
            ("summaries", "stored", "summaries_stored"),
            ("summaries", "not_stored", "summaries_not_stored"),
        ] {
            o.sample(
                "fireplot_store_items_total",
                &[("kind", kind), ("outcome", ok)],
                n(&st[field]),
            );
        }
        o.head(
            "fireplot_store_queue_events",
            "gauge",
            "Events waiting in the history writer's queue (its lag)",
        );
        o.sample("fireplot_store_queue_events", &[], n(&st["queued"]));
    }
    let d = &s["detect"];
    if !d.is_null() {
        o.head(
            "fireplot_alerts_total",
            "counter",
            "Alert records written, by kind and severity",
        );
        for a in d["by_kind"].as_array().into_iter().flatten() {
            let sev = a["severity"].as_u64().unwrap_or(0).to_string();
            o.sample(
                "fireplot_alerts_total",
                &[
                    ("kind", a["kind"].as_str().unwrap_or("")),
                    ("severity", &sev),
                ],
                n(&a["count"]),
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
            n(&d["state_bytes"]),
        );
        o.sample(
            "fireplot_detector_state_bytes",
            &[("of", "budget")],
            n(&d["budget_bytes"]),
        );
        o.head(
            "fireplot_detector_sources",
            "gauge",
            "Sources the detector tracks",
        );
        o.sample("fireplot_detector_sources", &[], n(&d["sources_tracked"]));
        o.head(
            "fireplot_detector_sources_dropped_total",
            "counter",
            "Sources the detector forgot, by reason",
        );
        o.sample(
            "fireplot_detector_sources_dropped_total",
            &[("reason", "evicted")],
            n(&d["sources_evicted"]),
        );
        o.sample(
            "fireplot_detector_sources_dropped_total",
            &[("reason", "expired")],
            n(&d["sources_expired"]),
        );
    }
    o.head(
        "fireplot_uptime_seconds",
        "gauge",
        "Seconds since the sensor started",
    );
    let _ = writeln!(
        o.0,
        "fireplot_uptime_seconds {}",
        s["uptime_s"].as_f64().unwrap_or(0.0)
    );
    o.0
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every sample line is `name{labels} value` with a declared name.
    #[test]
    fn exposition_is_well_formed() {
        let s = serde_json::json!({
            "uptime_s": 3.5,
            "classes": [{"class": "unsolicited", "family": "ipv4", "proto": "tcp", "packets": 7}],
            "kernel": {"events_sent": 7, "ring_full": 1, "suppressed": 2},
            "userspace": {"events_received": 7},
            "store": {"stored": 5, "not_stored": 2, "queued": 0},
            "detect": {"state_bytes": 10, "budget_bytes": 20, "by_kind": [{"kind": "port_scan", "severity": 3, "count": 2}]},
        });
        let text = render(&s);
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
        assert!(text.contains("fireplot_packets_aggregated_total{reason=\"ring_full\"} 1"));
        assert!(text.contains("fireplot_alerts_total{kind=\"port_scan\",severity=\"3\"} 2"));
        assert_eq!(render(&Value::Null).lines().last(), Some("fireplot_up 0"));
        assert_eq!(esc("a\"b\\c\n"), "a\\\"b\\\\c\\n");
    }
}
