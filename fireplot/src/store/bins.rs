//! Writing the bins: counting a batch per minute and log-port row, per
//! hour and port, and merging the counts into their BLOBs in place
//! (schema 5); and the migration of schema 4's row-per-bin tables.

use rusqlite::{params, Transaction};

use super::tiles::{bin, entries, port_row, ENTRY, HOUR_NS, NO_PORT, ROWS, TILE_NS};
use crate::record::Record;

/// Ports per `port_counts` row: 4,096 (a row of a busy hour holds a few
/// KiB; a batch of random ports touches 16 rows per hour and protocol).
const PAGE_BITS: u32 = 12;

/// `old` with `new` (sorted by key) added.
fn merged(old: &[u8], new: &[(u16, u64)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(old.len() + new.len() * ENTRY);
    let mut push = |k: u16, n: u64| {
        out.extend_from_slice(&k.to_le_bytes());
        out.extend_from_slice(&n.to_le_bytes());
    };
    let mut a = entries(old).peekable();
    let mut b = new.iter().copied().peekable();
    loop {
        match (a.peek().copied(), b.peek().copied()) {
            (Some((ka, na)), Some((kb, nb))) => {
                if ka < kb {
                    push(ka, na);
                    a.next();
                } else if kb < ka {
                    push(kb, nb);
                    b.next();
                } else {
                    push(ka, na.saturating_add(nb));
                    a.next();
                    b.next();
                }
            }
            (Some((k, n)), None) | (None, Some((k, n))) => {
                push(k, n);
                a.next();
                b.next();
            }
            (None, None) => break,
        }
    }
    out
}

/// Counts per (bin, interface, family, protocol, key), with the cheap Fx
/// hash: the keys are small integers from timestamps and ports (spoofed
/// ports at worst make one batch's map slower, never the store wrong).
type Bins = rustc_hash::FxHashMap<(i64, u32, u8, u8, u16), u64>;

/// Adds the bins of `records` (within the insert's transaction).
pub(super) fn add(tx: &Transaction<'_>, records: &[Record]) -> rusqlite::Result<()> {
    let mut tiles: Bins = Bins::with_capacity_and_hasher(records.len(), Default::default());
    let mut ports: Bins = Bins::with_capacity_and_hasher(records.len(), Default::default());
    for r in records {
        let row = if r.has_ports() && r.dport != 0 {
            port_row(r.dport)
        } else {
            NO_PORT
        };
        *tiles
            .entry((
                bin(r.ts_ns, TILE_NS),
                r.ifindex,
                r.family,
                r.proto,
                (row + 1) as u16,
            ))
            .or_default() += u64::from(r.count);
        if r.has_ports() {
            *ports
                .entry((bin(r.ts_ns, HOUR_NS), r.ifindex, r.family, r.proto, r.dport))
                .or_default() += u64::from(r.count);
        }
    }
    let mut tiles: Vec<_> = tiles.into_iter().collect();
    tiles.sort_unstable();
    let minute = |k: &(i64, u32, u8, u8, u16)| (k.0, k.1, k.2, k.3);
    for group in tiles.chunk_by(|a, b| minute(&a.0) == minute(&b.0)) {
        let (m, i, f, p, _) = group[0].0;
        let new: Vec<(u16, u64)> = group.iter().map(|&(k, n)| (k.4, n)).collect();
        put(
            tx,
            "tile_counts",
            "minute = ?1 AND ifindex = ?2 AND family = ?3 AND proto = ?4",
            [m, i as i64, f as i64, p as i64],
            &new,
        )?;
    }
    let mut ports: Vec<_> = ports.into_iter().collect();
    ports.sort_unstable();
    let page = |k: &(i64, u32, u8, u8, u16)| (k.0, k.1, k.2, k.3, k.4 >> PAGE_BITS);
    for group in ports.chunk_by(|a, b| page(&a.0) == page(&b.0)) {
        let (h, i, f, p, pg) = page(&group[0].0);
        let new: Vec<(u16, u64)> = group.iter().map(|&(k, n)| (k.4, n)).collect();
        put(
            tx,
            "port_counts",
            "hour = ?1 AND ifindex = ?2 AND family = ?3 AND proto = ?4 AND page = ?5",
            [h, i as i64, f as i64, p as i64, pg as i64],
            &new,
        )?;
    }
    Ok(())
}

/// Adds `new` to the counts BLOB of `table`'s row keyed by `key` (the
/// columns before `counts`, in order, matched by `cond`), creating it if
/// needed.
fn put<const K: usize>(
    tx: &Transaction<'_>,
    table: &str,
    cond: &str,
    key: [i64; K],
    new: &[(u16, u64)],
) -> rusqlite::Result<()> {
    let mut select =
        tx.prepare_cached(&format!("SELECT rowid, counts FROM {table} WHERE {cond}"))?;
    for (i, v) in key.iter().enumerate() {
        select.raw_bind_parameter(i + 1, v)?;
    }
    let mut rows = select.raw_query();
    match rows.next()? {
        Some(r) => {
            let rowid: i64 = r.get(0)?;
            let counts = merged(r.get_ref(1)?.as_blob()?, new);
            drop(rows);
            tx.prepare_cached(&format!("UPDATE {table} SET counts = ?2 WHERE rowid = ?1"))?
                .execute(params![rowid, counts])?;
        }
        None => {
            drop(rows);
            let marks = vec!["?"; K + 1].join(",");
            let mut insert = tx.prepare_cached(&format!("INSERT INTO {table} VALUES ({marks})"))?;
            for (i, v) in key.iter().enumerate() {
                insert.raw_bind_parameter(i + 1, v)?;
            }
            insert.raw_bind_parameter(K + 1, merged(&[], new))?;
            insert.raw_execute()?;
        }
    }
    Ok(())
}

/// Moves schema 4's bins (`tiles`, `port_hours`: one row per count) into
/// the BLOB tables (the migration to schema 5), streaming them in key order.
pub(super) fn migrate_bins(tx: &Transaction<'_>) -> rusqlite::Result<()> {
    let tables = [
        (
            "SELECT minute, ifindex, family, proto, row, n FROM tiles \
             ORDER BY minute, ifindex, family, proto, row",
            "tile_counts",
            "minute = ?1 AND ifindex = ?2 AND family = ?3 AND proto = ?4",
            false,
        ),
        (
            "SELECT hour, ifindex, family, proto, dport, n FROM port_hours \
             ORDER BY hour, ifindex, family, proto, dport",
            "port_counts",
            "hour = ?1 AND ifindex = ?2 AND family = ?3 AND proto = ?4 AND page = ?5",
            true,
        ),
    ];
    for (select, table, cond, paged) in tables {
        let mut stmt = tx.prepare(select)?;
        let mut rows = stmt.query([])?;
        let mut key: Option<[i64; 5]> = None;
        let mut group: Vec<(u16, u64)> = Vec::new();
        let flush = |key: [i64; 5], group: &mut Vec<(u16, u64)>| -> rusqlite::Result<()> {
            if paged {
                put(tx, table, cond, key, group)?;
            } else {
                put(tx, table, cond, [key[0], key[1], key[2], key[3]], group)?;
            }
            group.clear();
            Ok(())
        };
        while let Some(r) = rows.next()? {
            let k4: i64 = r.get(4)?;
            let n: i64 = r.get(5)?;
            let (entry, page) = if paged {
                (k4.clamp(0, 65535) as u16, k4.clamp(0, 65535) >> PAGE_BITS)
            } else {
                ((k4 + 1).clamp(0, ROWS as i64) as u16, 0)
            };
            let k = [r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, page];
            if key.is_some_and(|old| old != k) {
                flush(key.expect("checked"), &mut group)?;
            }
            key = Some(k);
            group.push((entry, n.max(0) as u64));
        }
        if let Some(k) = key {
            flush(k, &mut group)?;
        }
    }
    tx.execute_batch("DROP TABLE tiles; DROP TABLE port_hours;")
}
