//! What keeps flowing: the live events (SSE) and the Logstalgia feed.

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

/// The rows stored after `after` that match `filter` (its time range
/// aside: whatever arrives from now on), polled every 500 ms (the first
/// poll at once if `now`) until the server stops. `permit` is the stream's
/// slot, held as long as it runs.
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
    futures_util::stream::unfold((after, permit, now), move |(after, permit, now)| {
        let (db, filter, stopping) = (db.clone(), filter.clone(), stopping.clone());
        async move {
            if !now {
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            if *stopping.borrow() {
                return None;
            }
            let rows = tokio::task::spawn_blocking(move || {
                db.open().ok()?.events_after(after, LIVE_BATCH).ok()
            })
            .await
            .ok()
            .flatten()
            .unwrap_or_default();
            let last = rows.last().map(|r| r.0);
            let records = rows
                .into_iter()
                .filter(|(_, r)| filter.matches(r))
                .map(|(_, r)| r)
                .collect();
            let batch = Batch { last, records };
            Some((batch, (last.unwrap_or(after), permit, false)))
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
