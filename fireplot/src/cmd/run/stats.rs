//! The sensor's counter summaries: to `--stats-out` (or stderr) as text
//! or JSON lines, to the store and to the fleet, and for the console.

use std::{
    fs::File,
    io::{self, Write},
    time::Instant,
};

use anyhow::Context as _;

use super::sinks::EventSink;
use crate::{
    record::line::rfc3339_ns,
    sensor::{
        clock::{monotonic_ns, monotonic_to_wall_offset},
        Counters, Sensor,
    },
    store::writer::StoreWriter,
    summary::{CaptureCounts, DetectSummary, KindCount, RateLimitSummary, RunSummary, UserCounts},
};

pub(super) struct StatsWriter {
    pub(super) out: Box<dyn Write + Send>,
    pub(super) json: bool,
    pub(super) rate_limit: Option<RateLimitSummary>,
    /// A replay's frames, for its summary.
    pub(super) capture: Option<CaptureCounts>,
}

impl StatsWriter {
    /// Summaries to `--stats-out FILE` (appended) or stderr.
    pub(super) fn open(path: Option<&std::path::Path>, json: bool) -> anyhow::Result<StatsWriter> {
        Ok(StatsWriter {
            out: match path {
                Some(p) => Box::new(
                    File::options()
                        .create(true)
                        .append(true)
                        .open(p)
                        .with_context(|| format!("cannot open stats file `{}`", p.display()))?,
                ),
                None => Box::new(io::stderr()),
            },
            json,
            rate_limit: None,
            capture: None,
        })
    }

    pub(super) fn write(
        &mut self,
        sensor: &Sensor,
        iface: &str,
        started: Instant,
        sink: &EventSink,
    ) {
        let user = sink.counts;
        let counters = match sensor.counters() {
            Ok(c) => c,
            Err(e) => {
                log::error!("cannot read counters: {e}");
                return;
            }
        };
        let summary = self.summary(&counters, iface, started, sink, user);
        if let Some(w) = &sink.store {
            w.counters(crate::record::now_ns(), iface, summary.to_json());
        }
        if let Some(p) = &sink.publish {
            p.counters(summary.to_json());
        }
        let text = if self.json {
            summary.to_json() + "\n"
        } else {
            summary.to_text()
        };
        if let Err(e) = self
            .out
            .write_all(text.as_bytes())
            .and_then(|_| self.out.flush())
        {
            log::error!("cannot write stats: {e}");
        }
    }

    /// The summary as JSON, for the web console (nothing written).
    pub(super) fn summary_json(
        &self,
        sensor: &Sensor,
        iface: &str,
        started: Instant,
        sink: &EventSink,
    ) -> Option<String> {
        let counters = sensor.counters().ok()?;
        Some(
            self.summary(&counters, iface, started, sink, sink.counts)
                .to_json(),
        )
    }

    fn summary(
        &self,
        counters: &Counters,
        iface: &str,
        started: Instant,
        sink: &EventSink,
        user: UserCounts,
    ) -> RunSummary {
        let now = rfc3339_ns(monotonic_ns() as i128 + monotonic_to_wall_offset());
        let mut summary =
            RunSummary::new(now, iface, started.elapsed().as_secs_f64(), counters, user);
        summary.store = sink.store.as_ref().map(StoreWriter::counts);
        summary.fleet = sink.publish.as_ref().map(|p| p.counts());
        summary.rate_limit = self.rate_limit;
        summary.interfaces = sink.ifaces.clone();
        summary.capture = self.capture;
        summary.detect = sink.detect.as_ref().map(|d| DetectSummary {
            stats: d.engine.stats(),
            alerts: d.alerts,
            write_errors: d.write_errors,
            by_kind: d
                .by_kind
                .iter()
                .map(|((kind, severity), count)| KindCount {
                    kind: kind.clone(),
                    severity: *severity,
                    count: *count,
                })
                .collect(),
            attacks: d.engine.attacks(20),
        });
        summary
    }
}
