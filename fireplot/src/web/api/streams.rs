//! What keeps flowing: the live events (SSE) and the Logstalgia feed.

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
    let v = View::parse(&p, now_ns())?;
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
        None => with_store(&s, false, |st| st.last_rowid().map_err(server)).await?,
    };
    let mut filter = v.filter.clone();
    // Live: whatever arrives from now on, in the view's other filters.
    filter.from_ns = i64::MIN;
    filter.to_ns = i64::MAX;
    let db = s.db.clone();
    let stopping = s.stopping.clone();
    let stream = futures_util::stream::unfold(
        (after, db, filter, permit, true),
        move |(after, db, filter, permit, first)| {
            let stopping = stopping.clone();
            async move {
                if !first {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                if *stopping.borrow() {
                    return None;
                }
                let f2 = filter.clone();
                let db2 = db.clone();
                let got = tokio::task::spawn_blocking(move || {
                    let st = Store::open_read_only(&db2).ok()?;
                    st.events_after(after, LIVE_BATCH).ok()
                })
                .await
                .ok()
                .flatten();
                let (next, ev) = match got {
                    Some(rows) if !rows.is_empty() => {
                        let last = rows.last().map(|r| r.0).unwrap_or(after);
                        let items: Vec<Value> = rows
                            .iter()
                            .filter(|(_, r)| f2.matches(r))
                            .map(|(_, r)| live_item(r))
                            .collect();
                        let ev = SseEvent::default()
                            .event("events")
                            .id(last.to_string())
                            .data(Value::Array(items).to_string());
                        (last, ev)
                    }
                    // Nothing new (or the store is busy): a comment keeps proxies awake.
                    _ => (after, SseEvent::default().comment("idle")),
                };
                Some((Ok::<_, Infallible>(ev), (next, db, filter, permit, false)))
            }
        },
    );
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response())
}

/// One live event: [unix ms, category index, port (-1: lane), source, proto].
fn live_item(r: &Record) -> Value {
    let cat = Category::of(r);
    let ci = Category::ALL.iter().position(|c| *c == cat).unwrap_or(6);
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
    use crate::cmd::export::logstalgia_line;
    let p = params(&q, &[VIEW_KEYS, &["follow"]])?;
    let mut v = View::parse(&p, now_ns())?;
    let text_plain = [(header::CONTENT_TYPE, "text/plain; charset=utf-8")];
    if p.flag("follow")? {
        let permit = s
            .streams
            .clone()
            .try_acquire_owned()
            .map_err(|_| WebError::Busy)?;
        let after = with_store(&s, false, |st| st.last_rowid().map_err(server)).await?;
        let mut filter = v.filter.clone();
        filter.from_ns = i64::MIN;
        filter.to_ns = i64::MAX;
        let (db, stopping) = (s.db.clone(), s.stopping.clone());
        let stream = futures_util::stream::unfold((after, permit), move |(after, permit)| {
            let (db, filter, stopping) = (db.clone(), filter.clone(), stopping.clone());
            async move {
                tokio::time::sleep(Duration::from_millis(500)).await;
                if *stopping.borrow() {
                    return None;
                }
                let rows = tokio::task::spawn_blocking(move || {
                    Store::open_read_only(&db)
                        .ok()?
                        .events_after(after, LIVE_BATCH)
                        .ok()
                })
                .await
                .ok()
                .flatten()
                .unwrap_or_default();
                let next = rows.last().map(|r| r.0).unwrap_or(after);
                let mut text = String::new();
                for (_, r) in rows.iter().filter(|(_, r)| filter.matches(r)) {
                    text.push_str(&logstalgia_line(r));
                    text.push('\n');
                }
                Some((Ok::<_, Infallible>(text), (next, permit)))
            }
        });
        return Ok((text_plain, axum::body::Body::from_stream(stream)).into_response());
    }
    let text = with_store(&s, true, move |st| {
        resolve(st, &mut v)?;
        let mut out = String::new();
        let mut n = 0u32;
        st.for_each(&v.filter, |r| {
            if n < 1_000_000 {
                out.push_str(&logstalgia_line(&r));
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
