//! Who each stored source is: its country, network and tags, as the
//! enrichment files said when the source was stored (or when `fireplot
//! enrich --db` last looked it up). One row per source address, not per
//! event: the plots, top lists and pages join on the source.

use std::{collections::HashMap, net::IpAddr};

use rusqlite::{params, OptionalExtension};

use super::{Store, StoreError};
use crate::record::{GroupBy, Origin};

pub(super) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS origins (
    src BLOB PRIMARY KEY, country TEXT, asn INTEGER, as_org TEXT, tags TEXT,
    updated_ns INTEGER NOT NULL
) WITHOUT ROWID;
";

fn key(a: IpAddr) -> Vec<u8> {
    match a {
        IpAddr::V4(v) => v.octets().to_vec(),
        IpAddr::V6(v) => v.octets().to_vec(),
    }
}

/// The tags of a stored origin: a comma-separated column (SQLite and
/// PostgreSQL alike).
pub(crate) fn split_tags(t: Option<&str>) -> Vec<String> {
    t.map(|t| {
        t.split(',')
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect()
    })
    .unwrap_or_default()
}

fn row(r: &rusqlite::Row<'_>, base: usize) -> rusqlite::Result<Origin> {
    let tags: Option<String> = r.get(base + 3)?;
    Ok(Origin {
        country: r.get(base)?,
        asn: r.get::<_, Option<i64>>(base + 1)?.map(|a| a as u32),
        as_org: r.get(base + 2)?,
        tags: split_tags(tags.as_deref()),
    })
}

impl Store {
    /// Records what is known of these sources (replacing what was). An
    /// empty origin removes the row: nothing is known any more.
    pub fn set_origins(
        &mut self,
        items: &[(IpAddr, Origin)],
        now_ns: i64,
    ) -> Result<(), StoreError> {
        let path = self.path.clone();
        let write = |conn: &mut rusqlite::Connection| -> rusqlite::Result<()> {
            let tx = conn.transaction()?;
            {
                let mut put = tx.prepare_cached(
                    "INSERT OR REPLACE INTO origins (src, country, asn, as_org, tags, updated_ns) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )?;
                let mut del = tx.prepare_cached("DELETE FROM origins WHERE src = ?1")?;
                for (a, o) in items {
                    if o.is_empty() {
                        del.execute(params![key(*a)])?;
                    } else {
                        put.execute(params![
                            key(*a),
                            o.country,
                            o.asn.map(i64::from),
                            o.as_org,
                            (!o.tags.is_empty()).then(|| o.tags.join(",")),
                            now_ns
                        ])?;
                    }
                }
            }
            tx.commit()
        };
        write(&mut self.conn).map_err(|source| StoreError::Sql {
            path,
            action: "storing origins",
            source,
        })
    }

    /// What is stored of one source.
    pub fn origin(&self, a: IpAddr) -> Result<Option<Origin>, StoreError> {
        self.conn
            .prepare_cached("SELECT country, asn, as_org, tags FROM origins WHERE src = ?1")
            .and_then(|mut s| s.query_row(params![key(a)], |r| row(r, 0)).optional())
            .map_err(self.sql("reading an origin"))
    }

    /// The sources stored as in `country`, in network `asn` and with
    /// `tag` (each when given).
    pub fn sources_where(
        &self,
        country: Option<&str>,
        asn: Option<u32>,
        tag: Option<&str>,
    ) -> Result<std::collections::HashSet<IpAddr>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT src, tags FROM origins WHERE (?1 IS NULL OR country = ?1) \
                 AND (?2 IS NULL OR asn = ?2)",
            )
            .map_err(self.sql("selecting sources by origin"))?;
        let mut rows = stmt
            .query(params![country, asn.map(i64::from)])
            .map_err(self.sql("selecting sources by origin"))?;
        let mut out = std::collections::HashSet::new();
        while let Some(r) = rows
            .next()
            .map_err(self.sql("selecting sources by origin"))?
        {
            if let Some(t) = tag {
                let tags: Option<String> =
                    r.get(1).map_err(self.sql("selecting sources by origin"))?;
                if !tags.is_some_and(|ts| ts.split(',').any(|x| x == t)) {
                    continue;
                }
            }
            let b: Vec<u8> = r.get(0).map_err(self.sql("selecting sources by origin"))?;
            if let Some(a) = crate::record::bytes_addr(Some(&b)) {
                out.insert(a);
            }
        }
        Ok(out)
    }

    /// Every stored source's group for colouring a plot (its country, or
    /// its network); sources without one are left out.
    pub fn origin_groups(&self, by: GroupBy) -> Result<HashMap<IpAddr, String>, StoreError> {
        let what = "reading origins for colouring";
        let mut stmt = self
            .conn
            .prepare_cached("SELECT src, country, asn, as_org, tags FROM origins")
            .map_err(self.sql(what))?;
        let mut rows = stmt.query([]).map_err(self.sql(what))?;
        let mut out = HashMap::new();
        while let Some(r) = rows.next().map_err(self.sql(what))? {
            let b: Vec<u8> = r.get(0).map_err(self.sql(what))?;
            let o = row(r, 1).map_err(self.sql(what))?;
            if let (Some(a), Some(k)) = (crate::record::bytes_addr(Some(&b)), by.key(&o)) {
                out.insert(a, k);
            }
        }
        Ok(out)
    }

    /// Sources with a stored origin.
    pub fn origins_count(&self) -> Result<u64, StoreError> {
        self.conn
            .query_row("SELECT count(*) FROM origins", [], |r| r.get::<_, i64>(0))
            .map(|n| n as u64)
            .map_err(self.sql("counting origins"))
    }
}
