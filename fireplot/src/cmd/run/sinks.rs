//! Where a running sensor's output goes: event lines, the history store,
//! live detection and its alerts, and counter summaries. None of them ever
//! makes the event loop wait; what cannot be written is counted.

use std::{
    fs::File,
    io::{self, BufWriter, Write},
};

use std::sync::Arc;

use anyhow::Context as _;
use aya::maps::{MapData, RingBuf};
use fireplot_common::{
    agg::{AggKey, AggValue},
    event::Event,
};

use crate::summary::{IfaceCount, UserCounts};
use crate::{
    detect::{Alert, Engine},
    enrich::Enricher,
    record::{line::EventRecord, Record},
    sensor::{
        clock::{monotonic_ns, monotonic_to_wall_offset},
        Sensor,
    },
    store::writer::StoreWriter,
};

/// Events per store transaction (more are sent every flush tick).
const STORE_BATCH: usize = 8192;

/// Where events go: JSON lines and the history store.
pub(super) struct EventSink {
    pub(super) out: Option<Box<dyn Write + Send>>,
    pub(super) counts: UserCounts,
    pub(super) write_error_reported: bool,
    pub(super) store: Option<StoreWriter>,
    pub(super) batch: Vec<Record>,
    pub(super) iface: Option<String>,
    /// The watched interfaces of a live run and what each brought; an
    /// event's line names the one its ifindex says.
    pub(super) ifaces: Vec<IfaceCount>,
    /// Stands for the kernel's interface index (a replay's capture interfaces).
    pub(super) ifindex: Option<u32>,
    /// Stands for the frame length the kernel saw (a replay: the frame's
    /// length on the wire, whatever the capture or the test run held).
    pub(super) pkt_len: Option<u16>,
    pub(super) detect: Option<Detection>,
    /// Country, network and tags of each event's source, for its line.
    pub(super) enrich: Option<Arc<Enricher>>,
    /// The fleet: batches to NATS JetStream (`--publish`).
    pub(super) publish: Option<crate::fleet::publish::Publisher>,
}

/// The detection engine of a live run and where its alerts go.
pub(super) struct Detection {
    pub(super) engine: Engine,
    pub(super) out: Option<Box<dyn Write + Send>>,
    pub(super) alerts: u64,
    pub(super) write_errors: u64,
    /// Episodes started, by kind and severity (for /metrics).
    pub(super) by_kind: std::collections::BTreeMap<(String, u8), u64>,
}

/// The database a `--db [PATH]` option names (the default one without a value).
pub(super) fn db_path(db: Option<&std::path::Path>) -> Option<std::path::PathBuf> {
    db.map(|db| {
        if db.as_os_str().is_empty() {
            crate::store::default_path()
        } else {
            db.to_path_buf()
        }
    })
}

impl Detection {
    /// Live detection when its alerts go somewhere: `--alerts FILE|-`
    /// (appended) or the database.
    pub(super) fn open(
        alerts: Option<&str>,
        with_db: bool,
        cfg: crate::detect::DetectConfig,
    ) -> anyhow::Result<Option<Detection>> {
        if alerts.is_none() && !with_db {
            return Ok(None);
        }
        let out: Option<Box<dyn Write + Send>> = match alerts {
            None => None,
            Some("-") => Some(Box::new(io::stdout())),
            Some(path) => Some(Box::new(
                File::options()
                    .create(true)
                    .append(true)
                    .open(path)
                    .with_context(|| format!("cannot open alerts file `{path}`"))?,
            )),
        };
        Ok(Some(Detection {
            engine: Engine::new(cfg),
            out,
            alerts: 0,
            write_errors: 0,
            by_kind: Default::default(),
        }))
    }

    pub(super) fn emit(
        &mut self,
        alerts: Vec<Alert>,
        store: Option<&StoreWriter>,
        publish: Option<&crate::fleet::publish::Publisher>,
    ) {
        for a in alerts {
            self.alerts += 1;
            if a.status == "started" {
                *self
                    .by_kind
                    .entry((a.kind.clone(), a.severity))
                    .or_default() += 1;
            }
            let line = a.to_json();
            if let Some(out) = self.out.as_mut() {
                if writeln!(out, "{line}").is_err() {
                    self.write_errors += 1;
                }
            }
            if let Some(p) = publish {
                p.alert(line.clone());
            }
            if let Some(w) = store {
                let (first, last) = crate::cmd::detect::alert_span(&a);
                w.alert(first, last, &a.kind, line);
            }
            log::info!("alert {} {}: {}", a.status, a.kind, a.summary);
        }
        if let Some(out) = self.out.as_mut() {
            let _ = out.flush();
        }
    }
}

impl EventSink {
    /// The sink of `--events-out`, with live detection when alerts go
    /// somewhere (`--alerts`, `--db`).
    pub(super) fn with_outputs(
        o: &super::OutputArgs,
        cfg: crate::detect::DetectConfig,
    ) -> anyhow::Result<EventSink> {
        let mut sink = EventSink::open(o.events_out.as_deref())?;
        o.fleet.check()?;
        sink.detect = Detection::open(
            o.alerts.as_deref(),
            o.db.is_some() || o.fleet.publish.is_some(),
            cfg,
        )?;
        sink.enrich = o.enrich.open()?;
        if let Some(e) = &sink.enrich {
            for f in e.stats() {
                log::info!(
                    "{} {}: {} ({} ranges, {} lines skipped, {:.1} MiB)",
                    f.option,
                    f.path.display(),
                    f.format,
                    f.ranges,
                    f.bad_lines,
                    f.bytes as f64 / 1048576.0
                );
            }
            if let Some(d) = sink.detect.as_mut() {
                d.engine.set_enricher(Some(e.clone()));
            }
        } else if sink
            .detect
            .as_ref()
            .is_some_and(|d| !d.engine.config().ignore_tags.is_empty())
        {
            anyhow::bail!(
                "ignore_tags is set but no --tag list is given: no source could carry a tag"
            );
        }
        Ok(sink)
    }

    pub(super) fn open(spec: Option<&str>) -> anyhow::Result<EventSink> {
        let out: Option<Box<dyn Write + Send>> = match spec {
            None => None,
            Some("-") => Some(Box::new(BufWriter::with_capacity(1 << 16, io::stdout()))),
            Some(path) => {
                let f = File::options()
                    .create(true)
                    .append(true)
                    .open(path)
                    .with_context(|| format!("cannot open events file `{path}`"))?;
                Some(Box::new(BufWriter::with_capacity(1 << 20, f)))
            }
        };
        Ok(EventSink {
            out,
            counts: UserCounts::default(),
            write_error_reported: false,
            store: None,
            batch: Vec::new(),
            iface: None,
            ifaces: Vec::new(),
            ifindex: None,
            pkt_len: None,
            detect: None,
            enrich: None,
            publish: None,
        })
    }

    pub(super) fn record(&mut self, bytes: &[u8], wall_offset: i128) {
        self.counts.events_received += 1;
        let Some(mut ev) = Event::from_bytes(bytes) else {
            self.counts.decode_errors += 1;
            return;
        };
        if let Some(i) = self.ifindex {
            ev.ifindex = i;
        }
        if let Some(l) = self.pkt_len {
            ev.pkt_len = l;
        }
        if let Some(i) = self.ifaces.iter_mut().find(|i| i.ifindex == ev.ifindex) {
            i.events += 1;
        }
        if self.keeps() || self.detect.is_some() {
            let rec = Record::from_event(&ev, wall_offset);
            self.detect(&rec);
            if self.keeps() {
                self.batch.push(rec);
            }
        }
        if self.out.is_none() {
            return;
        }
        let mut rec = EventRecord::from_event(&ev, wall_offset);
        rec.iface = self.iface_name(ev.ifindex);
        rec.origin = self.origin(rec.src);
        let out = self.out.as_mut().expect("checked");
        let written = writeln!(out, "{}", rec.to_json());
        self.count_write(written);
    }

    /// Takes the kernel's aggregates: to detection (floods at their real
    /// rate), the store (weighted rows) and the event lines (`"aggregate":
    /// true` with a `count`), like events.
    pub(super) fn aggregates(&mut self, aggs: &[(AggKey, AggValue)], wall_offset: i128) {
        for (k, v) in aggs {
            let mut rec = Record::from_aggregate(k, v, wall_offset);
            if let Some(i) = self.ifindex {
                rec.ifindex = i;
            }
            self.counts.aggregates_received += 1;
            self.counts.aggregated_packets += u64::from(rec.count);
            if let Some(i) = self.ifaces.iter_mut().find(|i| i.ifindex == rec.ifindex) {
                i.aggregates += 1;
                i.aggregated_packets += u64::from(rec.count);
            }
            self.detect(&rec);
            if self.out.is_some() {
                let mut line = rec.to_json_record();
                line.iface = self.iface_name(rec.ifindex);
                line.origin = self.origin(rec.src);
                let out = self.out.as_mut().expect("checked");
                let written = writeln!(out, "{}", line.to_json());
                self.count_write(written);
            }
            if self.keeps() {
                self.batch.push(rec);
            }
        }
        self.store_batch(false);
    }

    /// The name of the interface `ifindex` (a live run's), else the one
    /// name this sink was given.
    fn iface_name(&self, ifindex: u32) -> Option<String> {
        match self.ifaces.iter().find(|i| i.ifindex == ifindex) {
            Some(i) => Some(i.name.clone()),
            None => self.iface.clone(),
        }
    }

    /// Feeds live detection (when it runs) and emits the alerts it gives.
    fn detect(&mut self, rec: &Record) {
        if let Some(d) = self.detect.as_mut() {
            d.engine.push(rec);
            let alerts = d.engine.drain();
            if !alerts.is_empty() {
                d.emit(alerts, self.store.as_ref(), self.publish.as_ref());
            }
        }
    }

    /// Counts an event line written or lost (the first loss is logged).
    fn count_write(&mut self, written: io::Result<()>) {
        match written {
            Ok(()) => self.counts.events_written += 1,
            Err(e) => {
                self.counts.write_errors += 1;
                if !self.write_error_reported {
                    log::error!("cannot write events: {e}; counting what is lost and going on");
                    self.write_error_reported = true;
                }
            }
        }
    }

    /// Takes a record that did not come from the kernel (`ingest`): to
    /// detection, the store and the event lines, as [`EventSink::record`].
    pub(super) fn push(&mut self, rec: Record, iface: Option<&str>) {
        self.counts.events_received += 1;
        self.detect(&rec);
        if self.out.is_some() {
            let mut line = rec.to_json_record();
            line.iface = iface.map(String::from);
            line.origin = self.origin(rec.src);
            let out = self.out.as_mut().expect("checked");
            let written = writeln!(out, "{}", line.to_json());
            self.count_write(written);
        }
        if self.keeps() {
            self.batch.push(rec);
        }
        self.store_batch(false);
    }

    /// Hands records to the store writer in batches of at least
    /// `STORE_BATCH` (one transaction each), or whatever is pending when
    /// `force` (every flush tick and at exit).
    pub(super) fn store_batch(&mut self, force: bool) {
        if self.batch.is_empty() || !(force || self.batch.len() >= STORE_BATCH) {
            return;
        }
        if let Some(p) = &self.publish {
            p.events(&self.batch);
        }
        match &self.store {
            Some(w) => w.events(std::mem::take(&mut self.batch)),
            None => self.batch.clear(),
        }
    }

    /// Why a file input must stop reading: its history (or its fleet
    /// spool) could not take anything for the whole `--store-wait`.
    pub(super) fn failure(&self) -> Option<String> {
        let store = self.store.as_ref().and_then(|w| w.failure());
        let fleet = self.publish.as_ref().and_then(|p| p.failure());
        store.or(fleet).map(String::from)
    }

    /// Records are batched: for the store, the fleet, or both.
    fn keeps(&self) -> bool {
        self.store.is_some() || self.publish.is_some()
    }

    /// Starts publishing (`--publish`), naming the interfaces (ifindex,
    /// name) in the batches when there is one. `wait`: a file input's bound
    /// (see `PublishOptions::wait`); None for a live one.
    pub(super) async fn start_publishing(
        &mut self,
        args: &crate::cmd::args::PublishArgs,
        ifaces: &[(u32, String)],
        wait: Option<std::time::Duration>,
    ) -> anyhow::Result<()> {
        let mut options = args.options();
        options.wait = wait;
        self.publish = options.start().await?;
        if let Some(p) = &self.publish {
            for (i, n) in ifaces {
                p.set_interface(*i, n);
            }
        }
        Ok(())
    }

    /// Sends what is queued for the fleet (or spools it) and stops
    /// publishing; says what was sent.
    pub(super) async fn stop_publishing(&mut self) -> Option<crate::fleet::publish::PublishCounts> {
        let c = self.publish.take()?.close().await;
        log::info!(
            "fleet: sensor `{}` published {} items in {} batches; spooled {}, drained {}, dropped (spool full) {}, still spooled {} batches",
            c.sensor,
            c.published_items,
            c.published_batches,
            c.spool.spooled_items,
            c.spool.drained_items,
            c.spool.dropped_items,
            c.spool.queued_batches
        );
        Some(c)
    }

    /// At the end of the input: the event lines flushed, the episodes
    /// still open ended (as at the end of a replay), everything handed to
    /// the store and written.
    pub(super) fn finish(&mut self) {
        self.flush();
        if let Some(mut d) = self.detect.take() {
            let alerts = d.engine.finish();
            d.emit(alerts, self.store.as_ref(), self.publish.as_ref());
            self.detect = Some(d);
        }
        self.store_batch(true);
        if let Some(w) = &self.store {
            w.flush();
        }
    }

    /// With both a store and enrichment files: the store keeps who each
    /// source is. Call once the store is set.
    pub(super) fn store_origins(&self) {
        if let (Some(w), Some(e)) = (&self.store, &self.enrich) {
            w.set_enricher(e.clone());
        }
    }

    /// What the enrichment files say of a source (nothing without them).
    fn origin(&self, src: Option<std::net::IpAddr>) -> crate::enrich::Origin {
        match (&self.enrich, src) {
            (Some(e), Some(a)) => (*e.lookup(a)).clone(),
            _ => Default::default(),
        }
    }

    pub(super) fn flush(&mut self) {
        if let Some(e) = &self.enrich {
            // At most every few seconds: files changed on disk are re-read.
            e.reload_changed(false);
        }
        if let Some(out) = self.out.as_mut() {
            if let Err(e) = out.flush() {
                log::error!("cannot flush events: {e}");
            }
        }
    }
}

/// Takes every record now in the ring buffer.
/// Takes the kernel's aggregates of the seconds that are over (all of
/// them when `all`: the programs are detached) into the sink. A failure to
/// read the map is logged; the counts stay in the kernel for the next try.
pub(super) fn drain_aggregates(sensor: &mut Sensor, sink: &mut EventSink, all: bool) {
    // A second is over for the kernel once its coarse clock (at most a
    // tick behind) has passed it: two seconds of margin.
    let before = (!all).then(|| (monotonic_ns() / 1_000_000_000).saturating_sub(1));
    match sensor.take_aggregates(before) {
        Ok(aggs) => sink.aggregates(&aggs, monotonic_to_wall_offset()),
        Err(e) => log::error!("cannot read the kernel's aggregates: {e}"),
    }
}

pub(super) fn drain(ring: &mut RingBuf<MapData>, sink: &mut EventSink) -> usize {
    let offset = monotonic_to_wall_offset();
    let mut n = 0;
    while let Some(item) = ring.next() {
        sink.record(&item, offset);
        n += 1;
    }
    sink.store_batch(false);
    n
}
