//! Events in blocks (schema 5): the write-optimised layout.
//!
//! Schema 4 kept one SQLite row per event (19 columns and a time index):
//! about 1 µs of SQLite work per event, a third of the insert time (the
//! bins were the rest). Now events go in blocks of up to [`BLOCK_ROWS`]
//! fixed-width rows ([`ROW`] bytes each, little-endian) in one BLOB, with
//! the block's time span, row and packet counts in indexed columns:
//!
//! - **Writing** a batch is a few BLOB writes, not thousands of rows. The
//!   last block stays *open*: it is created at full size (zero-filled) and
//!   later batches are written into it in place (SQLite's incremental BLOB
//!   I/O touches only the pages written), so a quiet sensor that stores a
//!   few events a second does not make a block per batch nor rewrite one.
//! - **Reading** a time range selects the blocks that overlap it (by the
//!   `(ts_hi, ts_lo)` index) and decodes them in Rust; every filter is
//!   checked on the decoded record. Rows inside a block are in arrival
//!   order; [`Store::for_each`](super::Store::for_each) merges blocks into
//!   time order as it streams.
//! - **The live console** follows new rows by a cursor, `block id ×
//!   BLOCK_ROWS + row`: rows are only ever appended to the open block, so
//!   a cursor never skips one. Retention rewrites a block it cuts through
//!   and closes it, so that no row is appended after a rewrite.

use std::net::IpAddr;

use rusqlite::{params, OptionalExtension, Transaction};

use super::Filter;
use crate::record::Record;

/// Bytes per event row as this build writes them. Each block records its
/// rows' width, so a later build can write wider rows (new fields at the
/// end) into new blocks and still read these.
pub(crate) const ROW: usize = 72;
/// Rows per block. Also the step of the console's cursor.
pub(super) const BLOCK_ROWS: usize = 4096;

pub(super) const SCHEMA_V5: &str = "
CREATE TABLE IF NOT EXISTS event_blocks (
    id INTEGER PRIMARY KEY,
    ts_lo INTEGER NOT NULL, ts_hi INTEGER NOT NULL,
    rows INTEGER NOT NULL, packets INTEGER NOT NULL, open INTEGER NOT NULL,
    width INTEGER NOT NULL, data BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS event_blocks_hi ON event_blocks (ts_hi, ts_lo);
CREATE INDEX IF NOT EXISTS event_blocks_lo ON event_blocks (ts_lo);
";

fn put_addr(b: &mut [u8], kind: &mut u8, a: Option<IpAddr>) {
    match a {
        Some(IpAddr::V4(v)) => {
            *kind = 4;
            b[..4].copy_from_slice(&v.octets());
        }
        Some(IpAddr::V6(v)) => {
            *kind = 6;
            b.copy_from_slice(&v.octets());
        }
        None => *kind = 0,
    }
}

fn get_addr(b: &[u8], kind: u8) -> Option<IpAddr> {
    match kind {
        4 => Some(IpAddr::from(<[u8; 4]>::try_from(&b[..4]).ok()?)),
        6 => Some(IpAddr::from(<[u8; 16]>::try_from(b).ok()?)),
        _ => None,
    }
}

/// Writes `r` into `b` (exactly [`ROW`] bytes).
pub(crate) fn encode(r: &Record, b: &mut [u8]) {
    b.fill(0);
    b[0..8].copy_from_slice(&r.ts_ns.to_le_bytes());
    b[8] = r.family;
    b[9] = r.proto;
    let (mut sk, mut dk) = (0u8, 0u8);
    put_addr(&mut b[12..28], &mut sk, r.src);
    put_addr(&mut b[28..44], &mut dk, r.dst);
    b[10] = sk;
    b[11] = dk;
    b[44..46].copy_from_slice(&r.sport.to_le_bytes());
    b[46..48].copy_from_slice(&r.dport.to_le_bytes());
    b[48] = r.tcp_flags;
    b[49] = r.ttl;
    b[50..52].copy_from_slice(&r.len.to_le_bytes());
    b[52] = r.class;
    b[53] = r.icmp_type;
    b[54] = r.icmp_code;
    b[55] = r.pkt_flags;
    b[56..60].copy_from_slice(&r.ifindex.to_le_bytes());
    b[60..62].copy_from_slice(&r.ip_id.to_le_bytes());
    b[62..64].copy_from_slice(&r.tcp_window.to_le_bytes());
    b[64..68].copy_from_slice(&r.tcp_seq.to_le_bytes());
    b[68..72].copy_from_slice(&r.count.to_le_bytes());
}

fn u16_at(b: &[u8], i: usize) -> u16 {
    u16::from_le_bytes([b[i], b[i + 1]])
}

fn u32_at(b: &[u8], i: usize) -> u32 {
    u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]])
}

/// The time of the row `b` without decoding the rest.
pub(super) fn ts_of(b: &[u8]) -> i64 {
    i64::from_le_bytes(b[0..8].try_into().expect("8 bytes"))
}

/// Reads a row written by [`encode`].
pub(crate) fn decode(b: &[u8]) -> Record {
    Record {
        ts_ns: ts_of(b),
        family: b[8],
        proto: b[9],
        src: get_addr(&b[12..28], b[10]),
        dst: get_addr(&b[28..44], b[11]),
        sport: u16_at(b, 44),
        dport: u16_at(b, 46),
        tcp_flags: b[48],
        ttl: b[49],
        len: u16_at(b, 50),
        class: b[52],
        icmp_type: b[53],
        icmp_code: b[54],
        pkt_flags: b[55],
        ifindex: u32_at(b, 56),
        ip_id: u16_at(b, 60),
        tcp_window: u16_at(b, 62),
        tcp_seq: u32_at(b, 64),
        count: u32_at(b, 68),
    }
}

fn encode_all(records: &[Record], rows: usize) -> Vec<u8> {
    let mut data = vec![0u8; rows.max(records.len()) * ROW];
    for (r, b) in records.iter().zip(data.chunks_exact_mut(ROW)) {
        encode(r, b);
    }
    data
}

fn span(records: &[Record]) -> (i64, i64, i64) {
    records
        .iter()
        .fold((i64::MAX, i64::MIN, 0), |(lo, hi, n), r| {
            (lo.min(r.ts_ns), hi.max(r.ts_ns), n + i64::from(r.count))
        })
}

/// Appends `records` (within the insert's transaction): into the open
/// block while it has room, then into new blocks; the last one, if not
/// full, is the new open block.
pub(super) fn append(tx: &Transaction<'_>, records: &[Record]) -> rusqlite::Result<()> {
    let mut rest = records;
    let open: Option<(i64, i64)> = tx
        .query_row(
            // (An open block of another width stays as it is.)
            "SELECT id, rows FROM event_blocks WHERE open = 1 AND width = ?1 \
             ORDER BY id DESC LIMIT 1",
            [ROW as i64],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    if let Some((id, rows)) = open {
        let rows = rows.clamp(0, BLOCK_ROWS as i64) as usize;
        let take = (BLOCK_ROWS - rows).min(rest.len());
        if take > 0 {
            let (part, later) = rest.split_at(take);
            {
                let mut blob = tx.blob_open(c"main", c"event_blocks", c"data", id, false)?;
                blob.write_at(&encode_all(part, 0), rows * ROW)?;
            }
            let (lo, hi, packets) = span(part);
            tx.prepare_cached(
                "UPDATE event_blocks SET rows = rows + ?2, packets = packets + ?3, \
                 ts_lo = min(ts_lo, ?4), ts_hi = max(ts_hi, ?5), open = ?6 WHERE id = ?1",
            )?
            .execute(params![
                id,
                take as i64,
                packets,
                lo,
                hi,
                rows + take < BLOCK_ROWS
            ])?;
            rest = later;
        }
    }
    for chunk in rest.chunks(BLOCK_ROWS) {
        insert_block(tx, chunk, chunk.len() < BLOCK_ROWS)?;
    }
    Ok(())
}

/// Stores `records` as a new block. An open one is written at full size,
/// to be filled in place by later batches.
fn insert_block(
    conn: &rusqlite::Connection,
    records: &[Record],
    open: bool,
) -> rusqlite::Result<()> {
    let (lo, hi, packets) = span(records);
    let data = encode_all(records, if open { BLOCK_ROWS } else { 0 });
    conn.prepare_cached(
        "INSERT INTO event_blocks (ts_lo, ts_hi, rows, packets, open, width, data) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(params![
        lo,
        hi,
        records.len() as i64,
        packets,
        open,
        ROW as i64,
        data
    ])?;
    Ok(())
}

/// One block as read: its first time, its rows' width and bytes.
pub(super) struct Block {
    pub ts_lo: i64,
    pub width: usize,
    pub data: Vec<u8>,
}

impl Block {
    pub fn rows(&self) -> impl Iterator<Item = &[u8]> {
        self.data.chunks_exact(self.width)
    }
}

/// A block's row width as stored: at least the first build's 72 bytes.
fn width(w: i64) -> usize {
    (w.max(0) as usize).max(72)
}

/// Calls `f` with every block overlapping `[from, to)`, by `ts_lo` when
/// `ordered`, else in whatever order the index gives.
pub(super) fn for_each_block(
    conn: &rusqlite::Connection,
    from: i64,
    to: i64,
    ordered: bool,
    mut f: impl FnMut(Block) -> rusqlite::Result<()>,
) -> rusqlite::Result<()> {
    let sql = format!(
        "SELECT ts_lo, rows, width, data FROM event_blocks WHERE ts_hi >= ?1 AND ts_lo < ?2{}",
        if ordered { " ORDER BY ts_lo, id" } else { "" }
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let mut rows = stmt.query(params![from, to])?;
    while let Some(row) = rows.next()? {
        let n = row.get::<_, i64>(1)?.clamp(0, BLOCK_ROWS as i64) as usize;
        let width = width(row.get(2)?);
        let mut data: Vec<u8> = row.get(3)?;
        data.truncate(n * width);
        f(Block {
            ts_lo: row.get(0)?,
            width,
            data,
        })?;
    }
    Ok(())
}

/// Streams the records matching `filter` in time order: blocks come by
/// their first time; whatever is buffered before the next block's first
/// time is final and goes out. Memory holds the blocks that overlap in time.
pub(super) fn for_each_ordered(
    conn: &rusqlite::Connection,
    filter: &Filter,
    mut f: impl FnMut(Record),
) -> rusqlite::Result<u64> {
    let mut buf: Vec<Record> = Vec::new();
    let mut n = 0u64;
    for_each_block(conn, filter.from_ns, filter.to_ns, true, |b| {
        let k = buf.partition_point(|r| r.ts_ns < b.ts_lo);
        for r in buf.drain(..k) {
            n += u64::from(r.count);
            f(r);
        }
        let before = buf.len();
        buf.extend(b.rows().map(decode).filter(|r| filter.matches(r)));
        if buf.len() > before {
            // Two sorted runs (or one): the stable sort merges them.
            buf.sort_by_key(|r| r.ts_ns);
        }
        Ok(())
    })?;
    for r in buf {
        n += u64::from(r.count);
        f(r);
    }
    Ok(n)
}

/// The records matching `filter`, in no particular order.
pub(super) fn for_each_unordered(
    conn: &rusqlite::Connection,
    filter: &Filter,
    mut f: impl FnMut(&Record),
) -> rusqlite::Result<u64> {
    let mut n = 0u64;
    for_each_block(conn, filter.from_ns, filter.to_ns, false, |b| {
        for row in b.rows() {
            let t = ts_of(row);
            if t < filter.from_ns || t >= filter.to_ns {
                continue;
            }
            let r = decode(row);
            if filter.matches(&r) {
                n += u64::from(r.count);
                f(&r);
            }
        }
        Ok(())
    })?;
    Ok(n)
}

/// The console's cursor of row `i` of block `id`.
pub(super) fn cursor(id: i64, i: usize) -> i64 {
    id * BLOCK_ROWS as i64 + i as i64
}

/// Up to `limit` rows after cursor `after`, in cursor order.
pub(super) fn after(
    conn: &rusqlite::Connection,
    after: i64,
    limit: u32,
) -> rusqlite::Result<Vec<(i64, Record)>> {
    let mut out = Vec::new();
    let first = after.max(0) / BLOCK_ROWS as i64;
    let mut stmt = conn.prepare_cached(
        "SELECT id, rows, width, data FROM event_blocks WHERE id >= ?1 ORDER BY id",
    )?;
    let mut rows = stmt.query(params![first])?;
    while let Some(row) = rows.next()? {
        let id: i64 = row.get(0)?;
        let n = row.get::<_, i64>(1)?.clamp(0, BLOCK_ROWS as i64) as usize;
        let width = width(row.get(2)?);
        let data = row.get_ref(3)?.as_blob()?;
        for (i, b) in data.chunks_exact(width).take(n).enumerate() {
            let c = cursor(id, i);
            if c > after {
                out.push((c, decode(b)));
                if out.len() >= limit as usize {
                    return Ok(out);
                }
            }
        }
    }
    Ok(out)
}

/// The cursor of the last stored row (0 when there is none).
pub(super) fn last_cursor(conn: &rusqlite::Connection) -> rusqlite::Result<i64> {
    Ok(conn
        .query_row(
            "SELECT id, rows FROM event_blocks ORDER BY id DESC LIMIT 1",
            [],
            |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?)),
        )
        .optional()?
        .map_or(0, |(id, n)| cursor(id, n.max(1) as usize - 1)))
}

/// Deletes events older than `before`: whole blocks first (at least one,
/// then until `chunk` rows went); if that was less than `chunk`, the
/// blocks that straddle `before` are rewritten without their old rows
/// (and closed).
/// Returns the events deleted.
pub(super) fn delete_older(
    conn: &rusqlite::Connection,
    before: i64,
    chunk: u32,
) -> rusqlite::Result<usize> {
    let whole: Vec<(i64, i64)> = {
        let mut stmt = conn.prepare_cached(
            "SELECT id, rows FROM event_blocks WHERE ts_hi < ?1 ORDER BY ts_hi LIMIT ?2",
        )?;
        let rows = stmt.query_map(params![before, chunk.max(1)], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })?;
        rows.collect::<Result<_, _>>()?
    };
    let mut n = 0usize;
    for (id, rows) in whole {
        if n >= chunk as usize {
            break;
        }
        conn.execute("DELETE FROM event_blocks WHERE id = ?1", params![id])?;
        n += rows.max(0) as usize;
    }
    if n >= chunk as usize {
        return Ok(n);
    }
    let cut: Vec<(i64, i64, i64, Vec<u8>)> = {
        let mut stmt = conn.prepare_cached(
            "SELECT id, rows, width, data FROM event_blocks WHERE ts_lo < ?1 AND ts_hi >= ?1",
        )?;
        let rows = stmt.query_map(params![before], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
        })?;
        rows.collect::<Result<_, _>>()?
    };
    for (id, rows, w, data) in cut {
        // Rewritten in this build's width.
        let keep: Vec<Record> = data
            .chunks_exact(width(w))
            .take(rows.clamp(0, BLOCK_ROWS as i64) as usize)
            .filter(|b| ts_of(b) >= before)
            .map(decode)
            .collect();
        n += rows.max(0) as usize - keep.len();
        let (lo, hi, packets) = span(&keep);
        conn.execute(
            "UPDATE event_blocks SET ts_lo = ?2, ts_hi = ?3, rows = ?4, packets = ?5, open = 0, \
             width = ?6, data = ?7 WHERE id = ?1",
            params![
                id,
                lo,
                hi,
                keep.len() as i64,
                packets,
                ROW as i64,
                encode_all(&keep, 0)
            ],
        )?;
    }
    Ok(n)
}

/// Writes the events of a schema-4 `events` table into blocks, in rowid
/// order (the migration to schema 5). Returns the number of events.
pub(super) fn migrate_rows(tx: &Transaction<'_>) -> rusqlite::Result<u64> {
    let mut stmt = tx.prepare(&format!(
        "SELECT {} FROM events ORDER BY rowid",
        super::COLUMNS
    ))?;
    let mut rows = stmt.query([])?;
    let mut batch = Vec::with_capacity(BLOCK_ROWS);
    let mut n = 0u64;
    let flush = |batch: &mut Vec<Record>| -> rusqlite::Result<()> {
        if !batch.is_empty() {
            insert_block(tx, batch, false)?;
            batch.clear();
        }
        Ok(())
    };
    while let Some(row) = rows.next()? {
        batch.push(super::decode_row(row, 0)?);
        n += 1;
        if batch.len() == BLOCK_ROWS {
            flush(&mut batch)?;
        }
    }
    flush(&mut batch)?;
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_row_round_trips_with_and_without_addresses() {
        let mut r = crate::store::tests::sample(3);
        let mut b = [0u8; ROW];
        encode(&r, &mut b);
        assert_eq!(decode(&b), r);
        r.src = None;
        r.dst = Some("198.18.1.2".parse().unwrap());
        r.count = u32::MAX;
        r.ts_ns = i64::MIN;
        encode(&r, &mut b);
        assert_eq!(decode(&b), r);
    }
}
