//! What keeps flowing: the live events (SSE) and the Logstalgia feed.

use std::time::Instant;

use futures_util::StreamExt;

use super::*;

// ---- live ----

/// Most events one live message carries.
const LIVE_BATCH: u32 = 2000;

/// New events as server-sent events: one message per batch, `id` the last
/// row sent, so a browser that reconnects (with `Last-Event-ID`) resumes
/// where it was. Events are polled from the store every 500 ms: what the
/// daemon stores (it commits every 500 ms) is on the page within about a
/// second.
pub async fn live(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Answer {
    let p = params(&q, &[VIEW_KEYS, &["after"]])?;
    let mut v = View::parse(&p, now_ns())?;
    if v.origin.any() {
        // The sources known now to be of that country, network or tag.
        let o = v.origin.clone();
        let set = with_store(&s, false, move |st| {
            st.sources_where(o.country.as_deref(), o.asn, o.tag.as_deref())
                .map_err(server)
        })
        .await?;
        v.filter.sources = Some(Arc::new(set));
    }
    let permit = s
        .streams
        .clone()
        .try_acquire_owned()
        .map_err(|_| WebError::Busy)?;
    let resume = headers
        .get("last-event-id")
        .and_then(|h| h.to_str().ok())
        .and_then(|t| t.parse::<i64>().ok());
    let after = match resume.or(p.int("after", 0, i64::MAX)?) {
        Some(a) => a,
        None => with_store(&s, false, |st| st.last_cursor().map_err(server)).await?,
    };
    let stream = follow(&s, after, &v.filter, permit, true).map(|batch| {
        let ev = match batch.last {
            Some(last) => {
                let items: Vec<Value> = batch.records.iter().map(live_item).collect();
                SseEvent::default()
                    .event("events")
                    .id(last.to_string())
                    .data(Value::Array(items).to_string())
            }
            // Nothing new (or the store is busy): a comment keeps proxies awake.
            None => SseEvent::default().comment("idle"),
        };
        Ok::<_, Infallible>(ev)
    });
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response())
}

/// What one poll of the store found.
struct Batch {
    /// The last row read, if any was (it may match no filter).
    last: Option<i64>,
    /// The rows read that match the filter.
    records: Vec<Record>,
}

/// How long a gap below the live cursor is read again: a transaction
/// that took its cursors longer than this before its commit shows at the
/// next redraw only.
const GAP_LIFE: Duration = Duration::from_secs(30);

/// Gaps read again at most (the oldest are given up first).
const MAX_GAPS: usize = 64;

/// Where a live stream is: the newest cursor it read and, for a history
/// whose rows may become visible late (`History::late_rows`), the recent
/// gaps below it: cursors not seen, which a transaction still open may
/// fill (or one rolled back, or rows of another sensor, never will).
#[derive(Debug, Clone)]
struct Cursor {
    after: i64,
    /// Open intervals (lo, hi), in order, each with when it was seen.
    gaps: Vec<(i64, i64, Instant)>,
}

impl Cursor {
    fn new(after: i64) -> Cursor {
        Cursor {
            after,
            gaps: Vec::new(),
        }
    }

    fn gaps(&self) -> Vec<(i64, i64)> {
        self.gaps.iter().map(|g| (g.0, g.1)).collect()
    }

    /// Notes the cursors of the rows read (in order): each closes the
    /// part of a gap it was in, or moves the cursor on, leaving a gap
    /// behind when `late` and it skipped some. Gaps older than `GAP_LIFE`
    /// and beyond `MAX_GAPS` are given up.
    fn saw(&mut self, ids: impl Iterator<Item = i64>, late: bool, now: Instant) {
        for id in ids {
            if id > self.after {
                if late && id > self.after + 1 {
                    self.gaps.push((self.after, id, now));
                }
                self.after = id;
            } else if let Some(i) = self.gaps.iter().position(|g| g.0 < id && id < g.1) {
                let (lo, hi, since) = self.gaps[i];
                self.gaps.remove(i);
                let parts = [(id, hi), (lo, id)];
                for (a, b) in parts {
                    if b - a > 1 {
                        self.gaps.insert(i, (a, b, since));
                    }
                }
            }
        }
        self.gaps
            .retain(|g| now.saturating_duration_since(g.2) < GAP_LIFE);
        let extra = self.gaps.len().saturating_sub(MAX_GAPS);
        self.gaps.drain(..extra);
    }
}

/// The rows stored after `after` that match `filter` (its time range
/// aside: whatever arrives from now on), polled every 500 ms (the first
/// poll at once if `now`) until the server stops. `permit` is the stream's
/// slot, held as long as it runs. Over a history whose rows may commit out
/// of cursor order (PostgreSQL), each poll also reads the gaps left behind
/// in the last `GAP_LIFE`, so a row committed late is still sent (once).
fn follow(
    s: &Shared,
    after: i64,
    filter: &Filter,
    permit: tokio::sync::OwnedSemaphorePermit,
    now: bool,
) -> impl futures_util::Stream<Item = Batch> {
    let mut filter = filter.clone();
    filter.from_ns = i64::MIN;
    filter.to_ns = i64::MAX;
    let (db, stopping) = (s.history.clone(), s.stopping.clone());
    let cursor = Cursor::new(after);
    futures_util::stream::unfold((cursor, permit, now), move |(mut cursor, permit, now)| {
        let (db, filter, stopping) = (db.clone(), filter.clone(), stopping.clone());
        async move {
            if !now {
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            if *stopping.borrow() {
                return None;
            }
            let (after, gaps) = (cursor.after, cursor.gaps());
            let (late, rows) = tokio::task::spawn_blocking(move || {
                let db = db.open().ok()?;
                let late = db.late_rows();
                let rows = db.events_after_and_in(after, &gaps, LIVE_BATCH).ok()?;
                Some((late, rows))
            })
            .await
            .ok()
            .flatten()
            .unwrap_or_default();
            cursor.saw(rows.iter().map(|r| r.0), late, Instant::now());
            let last = (!rows.is_empty()).then_some(cursor.after);
            let records = rows
                .into_iter()
                .filter(|(_, r)| filter.matches(r))
                .map(|(_, r)| r)
                .collect();
            let batch = Batch { last, records };
            Some((batch, (cursor, permit, false)))
        }
    })
}

/// One live event: [unix ms, category index, port (-1: lane), source, proto].
fn live_item(r: &Record) -> Value {
    let cat = Category::of(r);
    let ci = cat.index();
    let port: i64 = match cat {
        Category::Icmp | Category::Icmp6 => -1,
        Category::Other => -2,
        _ if !r.has_ports() || r.dport == 0 => -3,
        _ => r.dport as i64,
    };
    json!([
        r.ts_ns / 1_000_000,
        ci,
        port,
        r.src.map(|a| a.to_string()),
        r.proto
    ])
}

// ---- Logstalgia ----

/// The view's events in Logstalgia's format (at most a million lines), or
/// with `follow=1` the events stored from now on, as they come: pipe it
/// into `logstalgia --sync -`.
pub async fn logstalgia(State(s): State<Arc<Shared>>, RawQuery(q): RawQuery) -> Answer {
    use crate::plot::logstalgia;
    let p = params(&q, &[VIEW_KEYS, &["follow"]])?;
    let mut v = View::parse(&p, now_ns())?;
    let text_plain = [(header::CONTENT_TYPE, "text/plain; charset=utf-8")];
    if p.flag("follow")? {
        let permit = s
            .streams
            .clone()
            .try_acquire_owned()
            .map_err(|_| WebError::Busy)?;
        let after = with_store(&s, false, |st| st.last_cursor().map_err(server)).await?;
        let stream = follow(&s, after, &v.filter, permit, false).map(|batch| {
            let mut text = String::new();
            for r in &batch.records {
                text.push_str(&logstalgia::line(r));
                text.push('\n');
            }
            Ok::<_, Infallible>(text)
        });
        return Ok((text_plain, axum::body::Body::from_stream(stream)).into_response());
    }
    let text = with_store(&s, true, move |st| {
        resolve(st, &mut v)?;
        let mut out = String::new();
        let mut n = 0u32;
        st.for_each(&v.filter, |r| {
            if n < 1_000_000 {
                out.push_str(&logstalgia::line(&r));
                out.push('\n');
                n += 1;
            }
        })
        .map_err(server)?;
        Ok(out)
    })
    .await?;
    Ok((text_plain, text).into_response())
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::{Cursor, GAP_LIFE, MAX_GAPS};

    #[test]
    fn a_late_row_fills_its_gap_and_is_read_once() {
        let t = Instant::now();
        let mut c = Cursor::new(10);
        // 11 and 12 are still in an open transaction; 13..=14 committed.
        c.saw([13, 14].into_iter(), true, t);
        assert_eq!((c.after, c.gaps()), (14, vec![(10, 13)]));
        // 12 commits: the gap shrinks to 11.
        c.saw([12].into_iter(), true, t);
        assert_eq!(c.gaps(), vec![(10, 12)]);
        c.saw([11, 15].into_iter(), true, t);
        assert_eq!((c.after, c.gaps()), (15, vec![]));
        // A row inside a gap splits it.
        c.saw([20].into_iter(), true, t);
        c.saw([17].into_iter(), true, t);
        assert_eq!(c.gaps(), vec![(15, 17), (17, 20)]);
        // Without late rows (SQLite) no gap is kept.
        let mut s = Cursor::new(0);
        s.saw([5, 9].into_iter(), false, t);
        assert_eq!((s.after, s.gaps()), (9, vec![]));
    }

    #[test]
    fn gaps_are_given_up_when_old_or_too_many() {
        let t = Instant::now();
        let mut c = Cursor::new(0);
        c.saw([2].into_iter(), true, t);
        c.saw([].into_iter(), true, t + GAP_LIFE + Duration::from_secs(1));
        assert_eq!(c.gaps(), vec![]);
        let ids: Vec<i64> = (1..=(MAX_GAPS as i64 + 10)).map(|i| 2 + 2 * i).collect();
        c.saw(ids.iter().copied(), true, t + GAP_LIFE * 2);
        assert_eq!(c.gaps().len(), MAX_GAPS);
        // The newest are kept.
        let last = *ids.last().unwrap();
        assert_eq!(c.gaps().last(), Some(&(last - 2, last)));
    }
}
