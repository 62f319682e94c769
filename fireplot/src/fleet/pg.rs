//! The fleet's PostgreSQL database: its schema (versioned and migrated
//! like the SQLite store's) and how the collector writes a batch of
//! messages: COPY into a session table, then one INSERT ... ON CONFLICT DO
//! NOTHING per table, all in one transaction. A batch written twice (a
//! collector crashed after the commit but before its acknowledgement,
//! several collectors, a sensor that re-sent) is stored once: every row
//! is keyed by (sensor, sequence number).

use std::{collections::HashMap, net::IpAddr};

use thiserror::Error;
use tokio_postgres::{binary_copy::BinaryCopyInWriter, types::Type, Client, Transaction};

use super::wire::{Batch, Body, Kind};
use crate::record::Record;

/// The schema this build writes and reads.
pub const VERSION: i32 = 1;

/// A PostgreSQL URL with its password hidden, for messages and labels.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..s + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

const DAY_NS: i64 = 86_400_000_000_000;

/// Version 1. Events are partitioned by day on `ts_ns` (retention drops
/// whole partitions); their key includes the partition column, as
/// PostgreSQL requires, and (sensor, seq) fixes ts_ns anyway.
const V1: &str = "
CREATE TABLE sensors (
    id serial PRIMARY KEY,
    name text UNIQUE NOT NULL
);
CREATE TABLE interfaces (
    sensor_id integer NOT NULL REFERENCES sensors(id),
    ifindex bigint NOT NULL,
    name text NOT NULL,
    PRIMARY KEY (sensor_id, ifindex)
);
CREATE SEQUENCE events_id_seq;
CREATE TABLE events (
    sensor_id integer NOT NULL,
    seq bigint NOT NULL,
    ts_ns bigint NOT NULL,
    family smallint NOT NULL,
    proto smallint NOT NULL,
    src inet,
    dst inet,
    sport integer NOT NULL,
    dport integer NOT NULL,
    tcp_flags smallint NOT NULL,
    ttl smallint NOT NULL,
    len integer NOT NULL,
    class smallint NOT NULL,
    ifindex bigint NOT NULL,
    ip_id integer NOT NULL,
    tcp_seq bigint NOT NULL,
    tcp_window integer NOT NULL,
    icmp_type smallint NOT NULL,
    icmp_code smallint NOT NULL,
    pkt_flags smallint NOT NULL,
    count bigint NOT NULL,
    id bigint NOT NULL DEFAULT nextval('events_id_seq'),
    PRIMARY KEY (sensor_id, seq, ts_ns)
) PARTITION BY RANGE (ts_ns);
CREATE INDEX events_ts ON events (ts_ns);
CREATE INDEX events_id ON events (id);
CREATE TABLE alerts (
    sensor_id integer NOT NULL,
    seq bigint NOT NULL,
    first_ns bigint NOT NULL,
    last_ns bigint NOT NULL,
    kind text NOT NULL,
    body jsonb NOT NULL,
    PRIMARY KEY (sensor_id, seq)
);
CREATE INDEX alerts_last ON alerts (last_ns);
CREATE TABLE counters (
    sensor_id integer NOT NULL,
    seq bigint NOT NULL,
    ts_ns bigint NOT NULL,
    body jsonb NOT NULL,
    PRIMARY KEY (sensor_id, seq)
);
CREATE TABLE batches (
    sensor_id integer NOT NULL,
    first_seq bigint NOT NULL,
    kind smallint NOT NULL,
    items integer NOT NULL,
    stream_seq bigint NOT NULL,
    collected_ns bigint NOT NULL,
    PRIMARY KEY (sensor_id, first_seq)
);
CREATE TABLE origins (
    src inet PRIMARY KEY,
    country text,
    asn bigint,
    as_org text,
    tags text,
    updated_ns bigint NOT NULL
);
";

/// The columns of an event row, in COPY order.
const EVENT_COLS: &str = "sensor_id, seq, ts_ns, family, proto, src, dst, sport, dport, tcp_flags, ttl, len, class, ifindex, ip_id, tcp_seq, tcp_window, icmp_type, icmp_code, pkt_flags, count";

const EVENT_TYPES: [Type; 21] = [
    Type::INT4,
    Type::INT8,
    Type::INT8,
    Type::INT2,
    Type::INT2,
    Type::INET,
    Type::INET,
    Type::INT4,
    Type::INT4,
    Type::INT2,
    Type::INT2,
    Type::INT4,
    Type::INT2,
    Type::INT8,
    Type::INT4,
    Type::INT8,
    Type::INT4,
    Type::INT2,
    Type::INT2,
    Type::INT2,
    Type::INT8,
];

/// Errors of the fleet's PostgreSQL database, as the collector writes it.
#[derive(Debug, Error)]
pub enum PgError {
    /// A statement failed (the connection, a constraint, the disk).
    #[error("{what}")]
    Sql {
        what: String,
        #[source]
        source: tokio_postgres::Error,
    },
    /// The database's schema is newer than this build's.
    #[error("the database's fireplot schema is version {found}; this build knows up to {VERSION}: upgrade fireplot")]
    TooNew { found: i32 },
}

type Result<T> = std::result::Result<T, PgError>;

/// Whether an error with this SQLSTATE comes back however often the same
/// statement is tried again: the database refuses it (a schema that is
/// not ours, a missing table or column, no permission, no such database,
/// a failed login). Anything else — the connection lost (08), a
/// serialization failure or deadlock (40), an administrator's shutdown
/// (57), no space or memory (53), an unknown code — may pass and is
/// retried.
pub fn permanent_sqlstate(code: &str) -> bool {
    const CLASSES: [&str; 6] = [
        "28", // invalid authorization (a wrong password, no such role)
        "3D", // invalid catalog name (no such database)
        "3F", // invalid schema name
        "42", // syntax error or access rule violation: 42501 permission
        //       denied, 42P01 undefined table, 42703 undefined column,
        //       42804 datatype mismatch
        "0A", // feature not supported (a server too old for the schema)
        "2B", // dependent privilege descriptors still exist
    ];
    // A NOT NULL column the collector does not fill: a schema that is
    // not the one it made.
    code == "23502" || CLASSES.iter().any(|c| code.starts_with(c))
}

/// The SQLSTATE of a database's answer (None: no answer, e.g. the
/// connection broke).
pub fn sqlstate(e: &tokio_postgres::Error) -> Option<&str> {
    e.as_db_error().map(|d| d.code().code())
}

impl PgError {
    /// The error comes back on every retry (see `permanent_sqlstate`);
    /// a newer schema too.
    pub fn is_permanent(&self) -> bool {
        match self {
            PgError::Sql { source, .. } => sqlstate(source).is_some_and(permanent_sqlstate),
            PgError::TooNew { .. } => true,
        }
    }
}

/// `map_err` for a statement that failed while doing `what`.
fn sql(what: impl Into<String>) -> impl FnOnce(tokio_postgres::Error) -> PgError {
    let what = what.into();
    move |source| PgError::Sql { what, source }
}

/// Creates or migrates the schema; one transaction, serialised between
/// collectors by an advisory lock. A database newer than this build is
/// refused, not touched.
pub async fn migrate(client: &mut Client) -> Result<()> {
    const WHAT: &str = "migrating the schema";
    let tx = client.transaction().await.map_err(sql(WHAT))?;
    tx.execute("SELECT pg_advisory_xact_lock(7318245601)", &[])
        .await
        .map_err(sql(WHAT))?;
    tx.batch_execute("CREATE TABLE IF NOT EXISTS fireplot_schema (version integer NOT NULL)")
        .await
        .map_err(sql(WHAT))?;
    let have: Option<i32> = tx
        .query_opt("SELECT max(version) FROM fireplot_schema", &[])
        .await
        .map_err(sql(WHAT))?
        .and_then(|r| r.get(0));
    let have = have.unwrap_or(0);
    if have > VERSION {
        return Err(PgError::TooNew { found: have });
    }
    if have < 1 {
        tx.batch_execute(V1)
            .await
            .map_err(sql("creating schema 1"))?;
    }
    if have < VERSION {
        tx.execute("DELETE FROM fireplot_schema", &[])
            .await
            .map_err(sql(WHAT))?;
        tx.execute("INSERT INTO fireplot_schema VALUES ($1)", &[&VERSION])
            .await
            .map_err(sql(WHAT))?;
        log::info!("PostgreSQL: fireplot schema {have} → {VERSION}");
    }
    tx.commit().await.map_err(sql(WHAT))?;
    Ok(())
}

/// The day partition of `ts_ns`: its name and range.
pub fn partition_of(ts_ns: i64) -> (String, i64, i64) {
    let day = ts_ns.div_euclid(DAY_NS);
    let from = day * DAY_NS;
    let date = chrono::DateTime::<chrono::Utc>::from_timestamp_nanos(from)
        .format("%Y%m%d")
        .to_string();
    (format!("events_p{date}"), from, from + DAY_NS)
}

/// What one write did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Written {
    pub events: u64,
    pub events_duplicate: u64,
    pub alerts: u64,
    pub counters: u64,
    pub duplicates: u64,
}

/// The collector's connection with what it learnt: sensor ids and the
/// partitions that exist.
pub struct Writer {
    pub client: Client,
    sensors: HashMap<String, i32>,
    partitions: std::collections::HashSet<String>,
    staged: bool,
}

impl Writer {
    pub fn new(client: Client) -> Writer {
        Writer {
            client,
            sensors: HashMap::new(),
            partitions: Default::default(),
            staged: false,
        }
    }

    async fn sensor_id(&mut self, name: &str) -> Result<i32> {
        if let Some(&id) = self.sensors.get(name) {
            return Ok(id);
        }
        let row = self
            .client
            .query_one(
                "INSERT INTO sensors (name) VALUES ($1) ON CONFLICT (name) DO UPDATE SET name = EXCLUDED.name RETURNING id",
                &[&name],
            )
            .await
            .map_err(sql(format!("registering sensor `{name}`")))?;
        let id: i32 = row.get(0);
        self.sensors.insert(name.to_string(), id);
        Ok(id)
    }

    /// Creates the day partitions `events` needs (each once, in its own
    /// short transaction, serialised between collectors).
    async fn partitions(&mut self, events: &[&Record]) -> Result<()> {
        let mut need: Vec<(String, i64, i64)> = Vec::new();
        for r in events {
            let p = partition_of(r.ts_ns);
            if !self.partitions.contains(&p.0) && !need.iter().any(|n| n.0 == p.0) {
                need.push(p);
            }
        }
        for (name, from, to) in need {
            let what = || format!("creating partition {name}");
            let tx = self.client.transaction().await.map_err(sql(what()))?;
            tx.execute("SELECT pg_advisory_xact_lock(7318245602)", &[])
                .await
                .map_err(sql(what()))?;
            tx.batch_execute(&format!(
                "CREATE TABLE IF NOT EXISTS {name} PARTITION OF events FOR VALUES FROM ({from}) TO ({to})"
            ))
            .await
            .map_err(sql(what()))?;
            tx.commit().await.map_err(sql(what()))?;
            self.partitions.insert(name);
        }
        Ok(())
    }

    /// Writes decoded batches in one transaction. Nothing is written when
    /// it fails (the caller acknowledges nothing, and the broker sends the
    /// batches again).
    /// `stream_seqs`: each batch's sequence number in the JetStream stream
    /// (kept in `batches`: what arrived, in which order).
    pub async fn write(&mut self, batches: &[Batch], stream_seqs: &[u64]) -> Result<Written> {
        let mut ids = Vec::with_capacity(batches.len());
        for b in batches {
            ids.push(self.sensor_id(&b.sensor).await?);
        }
        let events: Vec<&Record> = batches
            .iter()
            .flat_map(|b| match &b.body {
                Body::Events(e) => e.iter().collect::<Vec<_>>(),
                Body::Lines(..) => Vec::new(),
            })
            .collect();
        self.partitions(&events).await?;
        if !self.staged {
            self.client
                .batch_execute(&format!(
                    "CREATE TEMP TABLE IF NOT EXISTS events_in AS SELECT {EVENT_COLS} FROM events WITH NO DATA"
                ))
                .await
                .map_err(sql("creating the staging table"))?;
            self.staged = true;
        }
        let mut w = Written::default();
        let tx = self
            .client
            .transaction()
            .await
            .map_err(sql("starting a transaction"))?;
        let staged = stage_events(&tx, batches, &ids).await?;
        if staged > 0 {
            w.events = tx
                .execute(
                    &format!(
                        "INSERT INTO events ({EVENT_COLS}) SELECT {EVENT_COLS} FROM events_in ON CONFLICT DO NOTHING"
                    ),
                    &[],
                )
                .await
                .map_err(sql("storing events"))?;
            w.events_duplicate = staged - w.events;
        }
        record_batches(&tx, batches, &ids, stream_seqs).await?;
        for (b, &sid) in batches.iter().zip(&ids) {
            store_interfaces(&tx, b, sid).await?;
            if let Body::Lines(kind, lines) = &b.body {
                store_lines(&tx, b, *kind, lines, sid, &mut w).await?;
            }
        }
        tx.commit().await.map_err(sql("committing"))?;
        Ok(w)
    }

    /// Drops the day partitions wholly older than `keep_from_ns`.
    pub async fn drop_older(&mut self, keep_from_ns: i64) -> Result<Vec<String>> {
        let rows = self
            .client
            .query(
                "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid \
                 JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = 'events'",
                &[],
            )
            .await
            .map_err(sql("listing the partitions"))?;
        let mut dropped = Vec::new();
        for r in rows {
            let name: String = r.get(0);
            let Some(date) = name.strip_prefix("events_p") else {
                continue;
            };
            let Ok(d) = chrono::NaiveDate::parse_from_str(date, "%Y%m%d") else {
                continue;
            };
            let end = d
                .succ_opt()
                .and_then(|n| n.and_hms_opt(0, 0, 0))
                .map(|t| t.and_utc().timestamp_nanos_opt().unwrap_or(i64::MAX))
                .unwrap_or(i64::MAX);
            if end <= keep_from_ns {
                self.client
                    .batch_execute(&format!("DROP TABLE IF EXISTS {name}"))
                    .await
                    .map_err(sql(format!("dropping {name}")))?;
                self.partitions.remove(&name);
                dropped.push(name);
            }
        }
        Ok(dropped)
    }
}

/// COPYs the batches' events into the session's `events_in`; returns how
/// many.
async fn stage_events(tx: &Transaction<'_>, batches: &[Batch], ids: &[i32]) -> Result<u64> {
    const WHAT: &str = "staging events";
    tx.batch_execute("TRUNCATE events_in")
        .await
        .map_err(sql(WHAT))?;
    let mut staged = 0u64;
    let sink = tx
        .copy_in(&format!(
            "COPY events_in ({EVENT_COLS}) FROM STDIN (FORMAT binary)"
        ))
        .await
        .map_err(sql(WHAT))?;
    let writer = BinaryCopyInWriter::new(sink, &EVENT_TYPES);
    let mut writer = std::pin::pin!(writer);
    for (b, &sid) in batches.iter().zip(ids) {
        let Body::Events(recs) = &b.body else {
            continue;
        };
        for (i, r) in recs.iter().enumerate() {
            let seq = (b.first_seq + i as u64) as i64;
            let (family, proto) = (r.family as i16, r.proto as i16);
            let (sport, dport) = (r.sport as i32, r.dport as i32);
            let (flags, ttl, class) = (r.tcp_flags as i16, r.ttl as i16, r.class as i16);
            let len = r.len as i32;
            let ifindex = r.ifindex as i64;
            let ip_id = r.ip_id as i32;
            let tcp_seq = r.tcp_seq as i64;
            let win = r.tcp_window as i32;
            let (it, ic, pf) = (r.icmp_type as i16, r.icmp_code as i16, r.pkt_flags as i16);
            let count = r.count as i64;
            let (src, dst): (Option<IpAddr>, Option<IpAddr>) = (r.src, r.dst);
            writer
                .as_mut()
                .write(&[
                    &sid, &seq, &r.ts_ns, &family, &proto, &src, &dst, &sport, &dport, &flags,
                    &ttl, &len, &class, &ifindex, &ip_id, &tcp_seq, &win, &it, &ic, &pf, &count,
                ])
                .await
                .map_err(sql(WHAT))?;
            staged += 1;
        }
    }
    writer.as_mut().finish().await.map_err(sql(WHAT))?;
    Ok(staged)
}

/// Notes each batch: what arrived from whom, in which order.
async fn record_batches(
    tx: &Transaction<'_>,
    batches: &[Batch],
    ids: &[i32],
    stream_seqs: &[u64],
) -> Result<()> {
    let now = crate::record::now_ns();
    for ((b, &sid), &sseq) in batches.iter().zip(ids).zip(stream_seqs) {
        tx.execute(
            "INSERT INTO batches (sensor_id, first_seq, kind, items, stream_seq, collected_ns) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
            &[
                &sid,
                &(b.first_seq as i64),
                &(b.kind() as i16),
                &(b.len() as i32),
                &(sseq as i64),
                &now,
            ],
        )
        .await
        .map_err(sql("storing the batches"))?;
    }
    Ok(())
}

/// The names of the interfaces a batch names.
async fn store_interfaces(tx: &Transaction<'_>, b: &Batch, sid: i32) -> Result<()> {
    for (i, n) in &b.interfaces {
        tx.execute(
            "INSERT INTO interfaces (sensor_id, ifindex, name) VALUES ($1, $2, $3) \
             ON CONFLICT (sensor_id, ifindex) DO UPDATE SET name = EXCLUDED.name",
            &[&sid, &(*i as i64), n],
        )
        .await
        .map_err(sql("storing interface names"))?;
    }
    Ok(())
}

/// A batch's alert records or counter summaries, each once; its
/// `bad_lines` (JSON PostgreSQL would refuse, failing the transaction)
/// left out.
async fn store_lines(
    tx: &Transaction<'_>,
    b: &Batch,
    kind: Kind,
    lines: &[String],
    sid: i32,
    w: &mut Written,
) -> Result<()> {
    for (i, line) in lines.iter().enumerate() {
        // In order of index: decode lists them so.
        if b.bad_lines
            .binary_search_by_key(&i, |&(bad, _)| bad)
            .is_ok()
        {
            continue;
        }
        let seq = (b.first_seq + i as u64) as i64;
        let v: serde_json::Value = serde_json::from_str(line).unwrap_or_default();
        let n = match kind {
            Kind::Alerts => {
                let first = v["first_seen"]
                    .as_str()
                    .and_then(crate::record::parse_rfc3339_ns)
                    .unwrap_or(0);
                let last = v["last_seen"]
                    .as_str()
                    .and_then(crate::record::parse_rfc3339_ns)
                    .unwrap_or(first);
                let kind = v["kind"].as_str().unwrap_or("?");
                let n = tx
                    .execute(
                        "INSERT INTO alerts (sensor_id, seq, first_ns, last_ns, kind, body) \
                         VALUES ($1, $2, $3, $4, $5, ($6::text)::jsonb) ON CONFLICT DO NOTHING",
                        &[&sid, &seq, &first, &last, &kind, line],
                    )
                    .await
                    .map_err(sql("storing alerts"))?;
                w.alerts += n;
                n
            }
            _ => {
                let ts = v["ts"]
                    .as_str()
                    .and_then(crate::record::parse_rfc3339_ns)
                    .unwrap_or_else(crate::record::now_ns);
                let n = tx
                    .execute(
                        "INSERT INTO counters (sensor_id, seq, ts_ns, body) \
                         VALUES ($1, $2, $3, ($4::text)::jsonb) ON CONFLICT DO NOTHING",
                        &[&sid, &seq, &ts, line],
                    )
                    .await
                    .map_err(sql("storing counter summaries"))?;
                w.counters += n;
                n
            }
        };
        if n == 0 {
            w.duplicates += 1;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn permanent_errors_by_sqlstate_class() {
        use super::permanent_sqlstate as p;
        for code in [
            "42501", "42P01", "42703", "42804", "28P01", "28000", "3D000", "3F000", "23502",
        ] {
            assert!(p(code), "{code} is permanent");
        }
        for code in [
            "40001", "40P01", "08006", "08001", "57P01", "57014", "53100", "XX000", "23505",
        ] {
            assert!(!p(code), "{code} is retried");
        }
    }

    #[test]
    fn partitions_are_utc_days() {
        let t = 1_800_000_000_000_000_000i64; // 2027-01-15T08:00:00Z
        let (name, from, to) = super::partition_of(t);
        assert_eq!(name, "events_p20270115");
        assert!(from <= t && t < to);
        assert_eq!(to - from, super::DAY_NS);
        assert_eq!(super::partition_of(from).0, name);
        assert_eq!(super::partition_of(to).0, "events_p20270116");
        assert_eq!(super::partition_of(-1).0, "events_p19691231");
    }
}
