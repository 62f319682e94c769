//! The fleet's PostgreSQL as a [`History`]: what `plot`, `top`,
//! `detect` and `serve --postgres` read. Synchronous like the SQLite
//! store (a small runtime of its own drives tokio-postgres), so it is
//! used from the same places: the commands' threads and the console's
//! blocking threads.
//!
//! Interfaces are the fleet's: each (sensor, interface index) pair gets an
//! index of its own here, named `SENSOR/NAME`, so a record says which
//! sensor saw it and `--iface r1/wan0` selects one sensor's interface.

use std::{
    collections::{HashMap, HashSet},
    net::IpAddr,
};

use futures_util::StreamExt;
use tokio_postgres::{types::ToSql, Client, Row};

use crate::{
    record::{GroupBy, Origin, Record},
    store::{Filter, History, StoreError},
};

/// A read-only view of the fleet's database.
pub struct PgStore {
    rt: tokio::runtime::Runtime,
    client: Client,
    label: String,
    /// Only this sensor (`--sensor`).
    sensor: Option<i32>,
    /// (sensor id, interface index) → the index records carry here.
    iface_ids: HashMap<(i32, i64), u32>,
    /// index → (sensor id, interface index, "SENSOR/NAME").
    ifaces: Vec<(i32, i64, String)>,
    /// sensor id → name.
    sensors: HashMap<i32, String>,
}

fn pg_err(what: &str) -> impl Fn(tokio_postgres::Error) -> StoreError + '_ {
    move |source| StoreError::Postgres {
        what: what.to_string(),
        source,
    }
}

const EVENT_SELECT: &str = "SELECT sensor_id, ts_ns, family, proto, src, dst, sport, dport, tcp_flags, ttl, len, class, ifindex, ip_id, tcp_seq, tcp_window, icmp_type, icmp_code, pkt_flags, count, id FROM events";

impl PgStore {
    /// Connects, checks the schema, learns the sensors and interfaces.
    pub fn open(url: &str, sensor: Option<&str>) -> Result<PgStore, StoreError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(StoreError::PostgresRuntime)?;
        let label = super::pg::redact(url);
        let client = rt.block_on(async {
            let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
                .await
                .map_err(|source| StoreError::PostgresConnect {
                    url: label.clone(),
                    source,
                })?;
            tokio::spawn(async move {
                let _ = conn.await;
            });
            Ok::<_, StoreError>(client)
        })?;
        let mut s = PgStore {
            rt,
            client,
            label,
            sensor: None,
            iface_ids: HashMap::new(),
            ifaces: Vec::new(),
            sensors: HashMap::new(),
        };
        let version: Option<i32> =
            s.rt.block_on(
                s.client
                    .query("SELECT max(version) FROM fireplot_schema", &[]),
            )
            .map_err(|source| StoreError::NotFleet {
                url: s.label.clone(),
                source,
            })?
            .first()
            .and_then(|r| r.get(0));
        match version {
            Some(v) if v <= super::pg::VERSION => {}
            Some(v) => {
                return Err(StoreError::PostgresTooNew {
                    url: s.label.clone(),
                    found: v,
                    supported: super::pg::VERSION,
                })
            }
            None => {
                return Err(StoreError::PostgresEmpty {
                    url: s.label.clone(),
                })
            }
        }
        for r in s.query("reading sensors", "SELECT id, name FROM sensors", &[])? {
            s.sensors.insert(r.get(0), r.get(1));
        }
        if let Some(name) = sensor {
            let id = s.sensors.iter().find(|(_, n)| *n == name).map(|(i, _)| *i);
            match id {
                Some(i) => s.sensor = Some(i),
                None => {
                    let mut known: Vec<String> = s.sensors.values().cloned().collect();
                    known.sort();
                    return Err(StoreError::NoSensor {
                        url: s.label.clone(),
                        name: name.to_string(),
                        known,
                    });
                }
            }
        }
        let rows = s.query(
            "reading interfaces",
            "SELECT i.sensor_id, i.ifindex, s.name || '/' || i.name FROM interfaces i JOIN sensors s ON s.id = i.sensor_id ORDER BY 3",
            &[],
        )?;
        for r in rows {
            let (sid, idx, name): (i32, i64, String) = (r.get(0), r.get(1), r.get(2));
            if s.sensor.is_some_and(|only| only != sid) {
                continue;
            }
            s.ifaces.push((sid, idx, name));
            s.iface_ids.insert((sid, idx), s.ifaces.len() as u32);
        }
        Ok(s)
    }

    fn query(
        &self,
        what: &str,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, StoreError> {
        self.rt
            .block_on(self.client.query(sql, params))
            .map_err(pg_err(what))
    }

    /// The index records carry for a sensor's interface.
    fn iface_id(&self, sensor: i32, ifindex: i64) -> u32 {
        self.iface_ids.get(&(sensor, ifindex)).copied().unwrap_or(0)
    }

    fn record(&self, r: &Row) -> Record {
        let g16 = |i: usize| r.get::<_, i16>(i) as u8;
        Record {
            ts_ns: r.get(1),
            family: g16(2),
            proto: g16(3),
            src: r.get::<_, Option<IpAddr>>(4),
            dst: r.get::<_, Option<IpAddr>>(5),
            sport: r.get::<_, i32>(6) as u16,
            dport: r.get::<_, i32>(7) as u16,
            tcp_flags: g16(8),
            ttl: g16(9),
            len: r.get::<_, i32>(10) as u16,
            class: g16(11),
            ifindex: self.iface_id(r.get(0), r.get(12)),
            ip_id: r.get::<_, i32>(13) as u16,
            tcp_seq: r.get::<_, i64>(14) as u32,
            tcp_window: r.get::<_, i32>(15) as u16,
            icmp_type: g16(16),
            icmp_code: g16(17),
            pkt_flags: g16(18),
            count: r.get::<_, i64>(19) as u32,
        }
    }

    /// The WHERE clause and parameters of a filter: time, sensor,
    /// interface, family, protocol and source prefix in SQL; the rest is
    /// checked on each record.
    fn where_of(&self, f: &Filter) -> (String, Vec<Box<dyn ToSql + Sync + Send>>) {
        let mut w = String::from(" WHERE ts_ns >= $1 AND ts_ns < $2");
        let mut p: Vec<Box<dyn ToSql + Sync + Send>> = vec![Box::new(f.from_ns), Box::new(f.to_ns)];
        if let Some(sid) = self.sensor {
            p.push(Box::new(sid));
            w.push_str(&format!(" AND sensor_id = ${}", p.len()));
        }
        if let Some(i) = f.ifindex {
            let (sid, idx) = self
                .ifaces
                .get((i as usize).wrapping_sub(1))
                .map(|x| (x.0, x.1))
                .unwrap_or((-1, -1));
            p.push(Box::new(sid));
            p.push(Box::new(idx));
            w.push_str(&format!(
                " AND sensor_id = ${} AND ifindex = ${}",
                p.len() - 1,
                p.len()
            ));
        }
        if let Some(fam) = f.family {
            p.push(Box::new(fam as i16));
            w.push_str(&format!(" AND family = ${}", p.len()));
        }
        if let Some(proto) = f.proto {
            p.push(Box::new(proto as i16));
            w.push_str(&format!(" AND proto = ${}", p.len()));
        }
        if let Some((a, len)) = f.src {
            p.push(Box::new(format!("{a}/{len}")));
            w.push_str(&format!(" AND src <<= (${}::text)::inet", p.len()));
        }
        (w, p)
    }

    fn stream(
        &self,
        what: &str,
        sql: String,
        params: Vec<Box<dyn ToSql + Sync + Send>>,
        f: &mut dyn FnMut(&Row),
    ) -> Result<(), StoreError> {
        self.rt
            .block_on(async {
                let refs: Vec<&(dyn ToSql + Sync)> = params
                    .iter()
                    .map(|b| b.as_ref() as &(dyn ToSql + Sync))
                    .collect();
                let rows = self.client.query_raw(&sql, refs).await?;
                let mut rows = std::pin::pin!(rows);
                while let Some(r) = rows.next().await {
                    f(&r?);
                }
                Ok::<_, tokio_postgres::Error>(())
            })
            .map_err(pg_err(what))
    }

    fn scan_sql(
        &self,
        filter: &Filter,
        order: &str,
        f: &mut dyn FnMut(Record),
    ) -> Result<u64, StoreError> {
        let (w, p) = self.where_of(filter);
        let mut n = 0;
        self.stream(
            "reading events",
            format!("{EVENT_SELECT}{w}{order}"),
            p,
            &mut |row| {
                let r = self.record(row);
                if filter.matches(&r) {
                    n += 1;
                    f(r);
                }
            },
        )?;
        Ok(n)
    }
}

impl History for PgStore {
    fn label(&self) -> String {
        match self.sensor.and_then(|s| self.sensors.get(&s)) {
            Some(name) => format!("{} (sensor {name})", self.label),
            None => self.label.clone(),
        }
    }

    fn scan(&self, filter: &Filter, f: &mut dyn FnMut(Record)) -> Result<u64, StoreError> {
        // One merged stream in event time across sensors.
        self.scan_sql(filter, " ORDER BY ts_ns, sensor_id, seq", f)
    }

    fn scan_unordered(
        &self,
        filter: &Filter,
        f: &mut dyn FnMut(&Record),
    ) -> Result<u64, StoreError> {
        self.scan_sql(filter, "", &mut |r| f(&r))
    }

    fn alerts(
        &self,
        from_ns: i64,
        to_ns: i64,
    ) -> Result<Vec<(i64, i64, String, String)>, StoreError> {
        // Each alert says which sensor raised it.
        let rows = self.query(
            "reading alerts",
            "SELECT a.first_ns, a.last_ns, a.kind, jsonb_set(a.body, '{sensor}', to_jsonb(s.name))::text \
             FROM alerts a JOIN sensors s ON s.id = a.sensor_id \
             WHERE a.last_ns >= $1 AND a.first_ns < $2 AND ($3::int IS NULL OR a.sensor_id = $3) \
             ORDER BY a.first_ns, a.sensor_id, a.seq",
            &[&from_ns, &to_ns, &self.sensor],
        )?;
        Ok(rows
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
            .collect())
    }

    fn interfaces(&self) -> Result<Vec<(u32, String)>, StoreError> {
        Ok(self
            .ifaces
            .iter()
            .enumerate()
            .map(|(i, x)| (i as u32 + 1, x.2.clone()))
            .collect())
    }

    fn sensor_of(&self, ifindex: u32) -> Option<String> {
        let (sid, _, _) = self.ifaces.get((ifindex as usize).checked_sub(1)?)?;
        self.sensors.get(sid).cloned()
    }

    fn span(&self) -> Result<Option<(i64, i64)>, StoreError> {
        let rows = self.query(
            "reading the span",
            "SELECT min(ts_ns), max(ts_ns) FROM events WHERE ($1::int IS NULL OR sensor_id = $1)",
            &[&self.sensor],
        )?;
        Ok(rows.first().and_then(|r| {
            let (a, b): (Option<i64>, Option<i64>) = (r.get(0), r.get(1));
            a.zip(b)
        }))
    }

    fn last_counters(&self) -> Result<Option<(i64, String, String)>, StoreError> {
        let rows = self.query(
            "reading counters",
            "SELECT c.ts_ns, s.name, c.body::text FROM counters c JOIN sensors s ON s.id = c.sensor_id \
             WHERE ($1::int IS NULL OR c.sensor_id = $1) ORDER BY c.ts_ns DESC LIMIT 1",
            &[&self.sensor],
        )?;
        Ok(rows.first().map(|r| (r.get(0), r.get(1), r.get(2))))
    }

    fn last_cursor(&self) -> Result<i64, StoreError> {
        let rows = self.query(
            "reading the last event",
            "SELECT coalesce(max(id), 0) FROM events",
            &[],
        )?;
        Ok(rows.first().map(|r| r.get(0)).unwrap_or(0))
    }

    fn events_after(&self, after: i64, limit: u32) -> Result<Vec<(i64, Record)>, StoreError> {
        self.events_after_and_in(after, &[], limit)
    }

    /// Two collectors commit at once: the one with the lower ids may
    /// commit last, after a reader has passed them.
    fn late_rows(&self) -> bool {
        true
    }

    fn events_after_and_in(
        &self,
        after: i64,
        gaps: &[(i64, i64)],
        limit: u32,
    ) -> Result<Vec<(i64, Record)>, StoreError> {
        let mut out = Vec::new();
        let mut params: Vec<Box<dyn ToSql + Sync + Send>> =
            vec![Box::new(self.sensor), Box::new(after)];
        let mut which = String::from("id > $2");
        for &(lo, hi) in gaps {
            params.push(Box::new(lo));
            params.push(Box::new(hi));
            which.push_str(&format!(
                " OR (id > ${} AND id < ${})",
                params.len() - 1,
                params.len()
            ));
        }
        let sql = format!(
            "{EVENT_SELECT} WHERE ($1::int IS NULL OR sensor_id = $1) AND ({which}) ORDER BY id LIMIT {}",
            limit.max(1)
        );
        self.stream("reading new events", sql, params, &mut |row| {
            out.push((row.get::<_, i64>(20), self.record(row)))
        })?;
        Ok(out)
    }

    fn origin(&self, a: IpAddr) -> Result<Option<Origin>, StoreError> {
        let rows = self.query(
            "reading an origin",
            "SELECT country, asn, as_org, tags FROM origins WHERE src = $1",
            &[&a],
        )?;
        Ok(rows.first().map(origin_row))
    }

    fn sources_where(
        &self,
        country: Option<&str>,
        asn: Option<u32>,
        tag: Option<&str>,
    ) -> Result<HashSet<IpAddr>, StoreError> {
        let rows = self.query(
            "selecting sources by origin",
            "SELECT src, tags FROM origins WHERE ($1::text IS NULL OR country = $1) AND ($2::bigint IS NULL OR asn = $2)",
            &[&country, &asn.map(i64::from)],
        )?;
        Ok(rows
            .iter()
            .filter(|r| {
                tag.is_none_or(|t| {
                    r.get::<_, Option<String>>(1)
                        .is_some_and(|ts| ts.split(',').any(|x| x == t))
                })
            })
            .map(|r| r.get(0))
            .collect())
    }

    fn origin_groups(&self, by: GroupBy) -> Result<HashMap<IpAddr, String>, StoreError> {
        let rows = self.query(
            "reading origins",
            "SELECT src, country, asn, as_org, tags FROM origins",
            &[],
        )?;
        Ok(rows
            .iter()
            .filter_map(|r| {
                let o = Origin {
                    country: r.get(1),
                    asn: r.get::<_, Option<i64>>(2).map(|a| a as u32),
                    as_org: r.get(3),
                    tags: Vec::new(),
                };
                Some((r.get::<_, IpAddr>(0), by.key(&o)?))
            })
            .collect())
    }
}

fn origin_row(r: &Row) -> Origin {
    Origin {
        country: r.get(0),
        asn: r.get::<_, Option<i64>>(1).map(|a| a as u32),
        as_org: r.get(2),
        tags: crate::store::split_tags(r.get::<_, Option<&str>>(3)),
    }
}
