//! The console's handlers. Pages are one embedded document whose script
//! asks the API; the API answers in JSON, images and text. Here: errors,
//! the store helper, pages and the view's geometry; plots, what is under
//! the pointer, the panels, the rate strip and the streams each have
//! their file.

mod hover;
mod panels;
mod plot;
mod rates;
mod streams;

pub use hover::at;
pub use panels::{alerts, metrics, source, stats, top};
pub use plot::{plot_png, plot_svg};
pub use rates::rates;
pub use streams::{live, logstalgia};

use std::{collections::HashMap, convert::Infallible, net::IpAddr, sync::Arc, time::Duration};

use axum::{
    extract::{Path, RawQuery, State},
    http::{header, HeaderMap, StatusCode},
    response::{
        sse::{Event as SseEvent, KeepAlive, Sse},
        IntoResponse, Response,
    },
};
use chrono::{Days, NaiveDate};
use serde_json::{json, Value};

use super::{
    assets,
    query::{clip, parse_ip, Bad, Params, View, VIEW_KEYS},
    url_pairs, Shared,
};
use crate::{
    plot::{
        layout::{Lane, Layout, Zone},
        marks_from_alerts, render, Category, Density, Spec,
    },
    record::{now_ns, Record},
    store::{Filter, History, Store},
};

/// What a handler can fail with.
pub enum WebError {
    /// The request cannot be answered as asked: the text says why (400).
    Bad(String),
    /// Too many heavy queries at once (503).
    Busy,
    /// Reading or drawing failed: logged with its causes, the client only
    /// told to look there (500).
    Server(Box<dyn std::error::Error + Send + Sync>),
}

impl From<Bad> for WebError {
    fn from(b: Bad) -> Self {
        WebError::Bad(b.0)
    }
}

impl IntoResponse for WebError {
    fn into_response(self) -> Response {
        match self {
            WebError::Bad(m) => (StatusCode::BAD_REQUEST, format!("{m}\n")).into_response(),
            WebError::Busy => (
                StatusCode::SERVICE_UNAVAILABLE,
                [(header::RETRY_AFTER, "2")],
                "busy: too many queries at once, try again\n",
            )
                .into_response(),
            WebError::Server(e) => {
                log::error!("web console: {}", crate::error_chain(e.as_ref()));
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "cannot read the history (the server log says why)\n",
                )
                    .into_response()
            }
        }
    }
}

type Answer = Result<Response, WebError>;

fn params(q: &Option<String>, allowed: &[&[&str]]) -> Result<Params, WebError> {
    Ok(Params::new(
        q.as_deref().map(url_pairs).unwrap_or_default(),
        allowed,
    )?)
}

/// Runs `f` on a read-only connection on a blocking thread, at most
/// `HEAVY` at once (a request that cannot get a turn in 5 s is told so).
async fn with_store<T: Send + 'static>(
    s: &Arc<Shared>,
    heavy: bool,
    f: impl FnOnce(&dyn History) -> Result<T, WebError> + Send + 'static,
) -> Result<T, WebError> {
    let permit = if heavy {
        Some(
            tokio::time::timeout(Duration::from_secs(5), s.heavy.clone().acquire_owned())
                .await
                .map_err(|_| WebError::Busy)?
                .map_err(|_| WebError::Busy)?,
        )
    } else {
        None
    };
    let spec = s.history.clone();
    tokio::task::spawn_blocking(move || {
        let _permit = permit;
        let store = spec.open().map_err(server)?;
        f(store.as_ref())
    })
    .await
    .map_err(|e| WebError::Server(format!("query task failed: {e}").into()))?
}

fn server<E: std::error::Error + Send + Sync + 'static>(e: E) -> WebError {
    WebError::Server(Box::new(e))
}

/// The view with its interface name resolved.
fn resolve(store: &dyn History, v: &mut View) -> Result<(), WebError> {
    if v.origin.any() && v.filter.sources.is_none() {
        let o = &v.origin;
        let set = store
            .sources_where(o.country.as_deref(), o.asn, o.tag.as_deref())
            .map_err(server)?;
        v.filter.sources = Some(std::sync::Arc::new(set));
    }
    if let Some(name) = &v.iface {
        match store.interface_index(name).map_err(server)? {
            Some(i) => v.filter.ifindex = Some(i),
            None => {
                return Err(WebError::Bad(format!(
                    "no events were recorded from interface `{}`",
                    clip(name)
                )))
            }
        }
    }
    Ok(())
}

// ---- shared by the handlers ----

/// The episodes overlapping a range: one object each, its `ended` record
/// where there is one, else its `started` one.
pub(super) fn episodes(st: &dyn History, from_ns: i64, to_ns: i64) -> Result<Vec<Value>, WebError> {
    let rows = st.alerts(from_ns, to_ns).map_err(server)?;
    let mut out: Vec<Value> = Vec::new();
    for (first, last, _kind, json) in rows {
        let Ok(mut v) = serde_json::from_str::<Value>(&json) else {
            continue;
        };
        v["first_ms"] = json!(first / 1_000_000);
        v["last_ms"] = json!(last / 1_000_000);
        // An episode is its sensor's (a fleet's sensors number theirs apart).
        let (id, sensor) = (v["id"].clone(), v["sensor"].clone());
        match out
            .iter_mut()
            .find(|e| e["id"] == id && e["sensor"] == sensor && !id.is_null())
        {
            Some(slot) => *slot = v,
            None => out.push(v),
        }
    }
    Ok(out)
}

/// The cache key of a request over a range that ended over a minute ago
/// (None: it may still change).
pub(super) fn past_key(path: &str, q: &Option<String>, v: &View) -> Option<String> {
    // Who a source is may change (`fireplot enrich`): not cached either.
    if v.filter.to_ns > now_ns() - 60_000_000_000
        || v.origin.any()
        || v.color != crate::record::GroupBy::Proto
    {
        return None;
    }
    let mut pairs: Vec<(String, String)> = q
        .as_deref()
        .map(url_pairs)
        .unwrap_or_default()
        .into_iter()
        .filter(|(k, _)| k != "token" && k != "download")
        .collect();
    pairs.sort();
    Some(format!("{path}?{pairs:?}"))
}

/// A protocol as the console names it: "TCP", "SCTP", "proto 47".
pub(super) fn proto_name(p: u8) -> String {
    match fireplot_common::proto::proto_label(p) {
        Some(label) => label.into(),
        None => format!("proto {p}"),
    }
}

// ---- pages ----

pub async fn page() -> Response {
    assets::index()
}

pub async fn day_page(Path(date): Path<String>) -> Answer {
    NaiveDate::parse_from_str(&date, "%Y-%m-%d")
        .map_err(|_| WebError::Bad(format!("`{}` is not a day (YYYY-MM-DD)", clip(&date))))?;
    Ok(assets::index())
}

pub async fn source_page(Path(ip): Path<String>) -> Answer {
    parse_ip(&ip)?;
    Ok(assets::index())
}

// ---- view geometry ----

/// Where the plot's areas are, the range, the day links: what the page
/// needs to turn a pointer position into a time and a port.
pub async fn view(State(s): State<Arc<Shared>>, RawQuery(q): RawQuery) -> Answer {
    let p = params(&q, &[VIEW_KEYS])?;
    let mut v = View::parse(&p, now_ns())?;
    let (label, file_view) = (s.label.clone(), s.file_view);
    let (v, ifs, span) = with_store(&s, false, move |st| {
        resolve(st, &mut v)?;
        let ifs = st.interfaces().map_err(server)?;
        let span = st.span().map_err(server)?;
        Ok((v, ifs, span))
    })
    .await?;
    let l = Layout::new(v.width, v.height, v.filter.from_ns, v.filter.to_ns);
    let zone = Zone::new(v.utc, v.filter.from_ns);
    let today = chrono::DateTime::<chrono::Utc>::from_timestamp_nanos(now_ns())
        .with_timezone(&zone.offset)
        .date_naive();
    let day = v.day.map(|d| {
        json!({
            "day": d.to_string(),
            "prev": d.checked_sub_days(Days::new(1)).map(|x| x.to_string()),
            "next": d.checked_add_days(Days::new(1)).map(|x| x.to_string()),
        })
    });
    Ok(axum::Json(json!({
        "label": label,
        "from_ns": v.filter.from_ns.to_string(),
        "to_ns": v.filter.to_ns.to_string(),
        "from_ms": v.filter.from_ns / 1_000_000,
        "to_ms": v.filter.to_ns / 1_000_000,
        // A file's view never grows: no live stream.
        "live": v.live && !file_view,
        "file_view": file_view,
        "width": l.width, "height": l.height,
        "left": l.left, "right": l.right, "top": l.top,
        "ports_bottom": l.ports_bottom, "lane_top": l.lane_top, "lane_row": l.lane_row,
        "lanes": Lane::ALL.iter().map(|x| x.label()).collect::<Vec<_>>(),
        // The plot's palette, by category index (the live dots' `cat`).
        "colors": Category::ALL.iter().map(|c| {
            let rgb = v.theme.color(*c);
            format!("#{:02x}{:02x}{:02x}", rgb.0, rgb.1, rgb.2)
        }).collect::<Vec<_>>(),
        "zone": zone.name(),
        "today": today.to_string(),
        "day": day,
        "interfaces": ifs.into_iter().map(|(_, n)| n).collect::<Vec<_>>(),
        "span_ms": span.map(|(a, b)| [a / 1_000_000, b / 1_000_000]),
    }))
    .into_response())
}
