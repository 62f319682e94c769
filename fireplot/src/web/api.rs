//! The console's handlers. Pages are one embedded document whose script
//! asks the API; the API answers in JSON, images and text.

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
    store::{Filter, Store},
};

/// What a handler can fail with.
pub enum WebError {
    Bad(String),
    Busy,
    Server(String),
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
            WebError::Server(m) => {
                log::error!("web console: {m}");
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
    f: impl FnOnce(&Store) -> Result<T, WebError> + Send + 'static,
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
    let db = s.db.clone();
    tokio::task::spawn_blocking(move || {
        let _permit = permit;
        let store = Store::open_read_only(&db).map_err(|e| WebError::Server(e.to_string()))?;
        f(&store)
    })
    .await
    .map_err(|e| WebError::Server(format!("query task failed: {e}")))?
}

fn server<E: std::fmt::Display>(e: E) -> WebError {
    WebError::Server(e.to_string())
}

/// The view with its interface name resolved.
fn resolve(store: &Store, v: &mut View) -> Result<(), WebError> {
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
    let label = s.label.clone();
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
        "live": v.live,
        "width": l.width, "height": l.height,
        "left": l.left, "right": l.right, "top": l.top,
        "ports_bottom": l.ports_bottom, "lane_top": l.lane_top, "lane_row": l.lane_row,
        "lanes": Lane::ALL.iter().map(|x| x.label()).collect::<Vec<_>>(),
        "zone": zone.name(),
        "today": today.to_string(),
        "day": day,
        "interfaces": ifs.into_iter().map(|(_, n)| n).collect::<Vec<_>>(),
        "span_ms": span.map(|(a, b)| [a / 1_000_000, b / 1_000_000]),
    }))
    .into_response())
}

// ---- plots ----

/// The cache key of a request over a range that ended over a minute ago
/// (None: it may still change).
fn past_key(path: &str, q: &Option<String>, v: &View) -> Option<String> {
    if v.filter.to_ns > now_ns() - 60_000_000_000 {
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

fn spec(s: &Shared, v: &View, marks: Vec<crate::plot::Mark>) -> Spec {
    Spec {
        width: v.width,
        height: v.height,
        theme: v.theme,
        utc: v.utc,
        iface: v.iface.clone().unwrap_or_else(|| s.label.clone()),
        marks,
    }
}

async fn plot(s: Arc<Shared>, q: Option<String>, ext: &'static str) -> Answer {
    let p = params(&q, &[VIEW_KEYS, &["marks", "download"]])?;
    let mut v = View::parse(&p, now_ns())?;
    let marks = !matches!(p.get("marks"), Some("0"));
    let download = p.flag("download")?;
    let shared = s.clone();
    let key = past_key(ext, &q, &v);
    let cached = key.as_deref().and_then(|k| s.plots.get(k));
    let (bytes, events) = match cached {
        Some(hit) => hit,
        None => {
            let got = with_store(&s, true, move |st| {
                resolve(st, &mut v)?;
                let mut d = Density::new(Layout::new(
                    v.width,
                    v.height,
                    v.filter.from_ns,
                    v.filter.to_ns,
                ));
                st.for_each_plot(&v.filter, |r| d.add(r)).map_err(server)?;
                let marks = if marks {
                    marks_from_alerts(
                        st.alerts(v.filter.from_ns, v.filter.to_ns)
                            .map_err(server)?,
                    )
                } else {
                    Vec::new()
                };
                let path = shared.scratch.join(format!(
                    "plot-{:x}-{:?}.{ext}",
                    now_ns(),
                    std::thread::current().id()
                ));
                let r = render(&d, &spec(&shared, &v, marks), &path);
                let bytes = std::fs::read(&path);
                let _ = std::fs::remove_file(&path);
                r.map_err(server)?;
                Ok((bytes.map_err(server)?, d.total()))
            })
            .await?;
            if let Some(k) = key {
                s.plots.put(k, got.clone());
            }
            got
        }
    };
    let ctype = if ext == "png" {
        "image/png"
    } else {
        "image/svg+xml"
    };
    let mut h = HeaderMap::new();
    h.insert(header::CONTENT_TYPE, ctype.parse().expect("static"));
    h.insert("x-fireplot-events", events.into());
    if download {
        h.insert(
            header::CONTENT_DISPOSITION,
            format!("attachment; filename=\"fireplot.{ext}\"")
                .parse()
                .expect("ascii"),
        );
    }
    Ok((h, bytes).into_response())
}

pub async fn plot_png(State(s): State<Arc<Shared>>, RawQuery(q): RawQuery) -> Answer {
    plot(s, q, "png").await
}

pub async fn plot_svg(State(s): State<Arc<Shared>>, RawQuery(q): RawQuery) -> Answer {
    plot(s, q, "svg").await
}

// ---- hover ----

/// Source, protocol, port: one line of a hover.
type GroupKey = (Option<IpAddr>, u8, u16);

/// Pixels around the pointer a hover covers (a dot is drawn 2×2).
const HOVER_PX: i64 = 2;

/// What is under the pointer at plot pixel (x, y): the probes of those
/// pixels grouped by source → PROTO/port, and the alerts they belong to.
pub async fn at(State(s): State<Arc<Shared>>, RawQuery(q): RawQuery) -> Answer {
    let p = params(&q, &[VIEW_KEYS, &["x", "y"]])?;
    let mut v = View::parse(&p, now_ns())?;
    let x = p
        .int("x", 0, 4000)?
        .ok_or_else(|| Bad("`x` is required".into()))?;
    let y = p
        .int("y", 0, 3000)?
        .ok_or_else(|| Bad("`y` is required".into()))?;
    let l = Layout::new(v.width, v.height, v.filter.from_ns, v.filter.to_ns);
    if x < l.left as i64 - HOVER_PX || x >= l.right as i64 + HOVER_PX {
        return Ok(axum::Json(json!({"groups": [], "total": 0})).into_response());
    }
    // The time of pixel columns x-2..=x (a dot at x covers x and x+1).
    let span = (l.to_ns - l.from_ns) as f64;
    let col = |px: i64| {
        l.from_ns + ((px - l.left as i64) as f64 / l.plot_width() as f64 * span).max(0.0) as i64
    };
    let (t0, t1) = (
        col(x - HOVER_PX).max(l.from_ns),
        col(x + 1).min(l.to_ns).max(col(x - HOVER_PX) + 1),
    );
    let rows = (y - HOVER_PX).max(0) as u32..=(y + 1).max(0) as u32;
    let lane = Lane::ALL
        .iter()
        .copied()
        .find(|lane| rows.contains(&l.y_lane(*lane)));
    let port_rows = rows.clone();
    let in_ports = *rows.start() < l.ports_bottom && *rows.end() >= l.top;
    if lane.is_none() && !in_ports {
        return Ok(axum::Json(json!({"groups": [], "total": 0})).into_response());
    }
    let from_ns = t0;
    let to_ns = t1;
    let out = with_store(&s, true, move |st| {
        resolve(st, &mut v)?;
        let mut f: Filter = v.filter.clone();
        f.from_ns = from_ns.max(v.filter.from_ns);
        f.to_ns = to_ns.min(v.filter.to_ns);
        let mut groups: HashMap<GroupKey, (u64, i64, i64)> = HashMap::new();
        let mut total = 0u64;
        st.for_each(&f, |r| {
            let cat = Category::of(&r);
            let y_of = match cat {
                Category::Icmp | Category::Icmp6 => Some(l.y_lane(Lane::Icmp)),
                Category::Other => Some(l.y_lane(Lane::Other)),
                _ if !r.has_ports() || r.dport == 0 => Some(l.y_lane(Lane::NoPort)),
                _ => None,
            };
            let hit = match y_of {
                Some(ly) => port_rows.contains(&ly),
                None => in_ports && port_rows.contains(&l.y_port(r.dport)),
            };
            if !hit {
                return;
            }
            total += 1;
            let port = if r.has_ports() { r.dport } else { 0 };
            let g = groups
                .entry((r.src, r.proto, port))
                .or_insert((0, r.ts_ns, r.ts_ns));
            g.0 += 1;
            g.1 = g.1.min(r.ts_ns);
            g.2 = g.2.max(r.ts_ns);
        })
        .map_err(server)?;
        let mut list: Vec<_> = groups.into_iter().collect();
        // Most probes first; among equals, the one drawn nearest the pointer.
        let dist = |port: u16, proto: u8| {
            if matches!(proto, 6 | 17) && port > 0 {
                (l.y_port(port) as i64 - y).abs()
            } else {
                0
            }
        };
        list.sort_by(|a, b| {
            b.1 .0
                .cmp(&a.1 .0)
                .then(dist(a.0 .2, a.0 .1).cmp(&dist(b.0 .2, b.0 .1)))
                .then(a.0.cmp(&b.0))
        });
        list.truncate(12);
        let episodes = if list.is_empty() {
            Vec::new()
        } else {
            episodes(st, f.from_ns, f.to_ns)?
        };
        let groups: Vec<Value> = list
            .into_iter()
            .map(|((src, proto, port), (n, first, last))| {
                let src_s = src.map(|a| a.to_string());
                let alert = src_s.as_deref().and_then(|ip| {
                    episodes.iter().find(|e| {
                        e["sources"]
                            .as_array()
                            .is_some_and(|a| a.iter().any(|x| x.as_str() == Some(ip)))
                    })
                });
                json!({
                    "src": src_s,
                    "proto": proto_name(proto),
                    "port": port,
                    "count": n,
                    "first_ms": first / 1_000_000,
                    "last_ms": last / 1_000_000,
                    "alert": alert.map(|a| json!({"id": a["id"], "kind": a["kind"], "summary": a["summary"]})),
                })
            })
            .collect();
        Ok(json!({"from_ms": f.from_ns / 1_000_000, "to_ms": f.to_ns / 1_000_000, "groups": groups, "total": total}))
    })
    .await?;
    Ok(axum::Json(out).into_response())
}

fn proto_name(p: u8) -> String {
    match p {
        6 => "TCP".into(),
        17 => "UDP".into(),
        1 => "ICMP".into(),
        58 => "ICMPv6".into(),
        n => format!("proto {n}"),
    }
}

// ---- alerts ----

/// The episodes overlapping a range: one object each, its `ended` record
/// where there is one, else its `started` one.
fn episodes(st: &Store, from_ns: i64, to_ns: i64) -> Result<Vec<Value>, WebError> {
    let rows = st.alerts(from_ns, to_ns).map_err(server)?;
    let mut out: Vec<Value> = Vec::new();
    for (first, last, _kind, json) in rows {
        let Ok(mut v) = serde_json::from_str::<Value>(&json) else {
            continue;
        };
        v["first_ms"] = json!(first / 1_000_000);
        v["last_ms"] = json!(last / 1_000_000);
        let id = v["id"].clone();
        match out.iter_mut().find(|e| e["id"] == id && !id.is_null()) {
            Some(slot) => *slot = v,
            None => out.push(v),
        }
    }
    Ok(out)
}

/// The episodes in view, most severe first, with what the panel shows.
pub async fn alerts(State(s): State<Arc<Shared>>, RawQuery(q): RawQuery) -> Answer {
    let p = params(&q, &[VIEW_KEYS])?;
    let v = View::parse(&p, now_ns())?;
    let (from, to) = (v.filter.from_ns, v.filter.to_ns);
    let mut list = with_store(&s, false, move |st| episodes(st, from, to)).await?;
    // With a source filter: the episodes one of whose sources is in it.
    if let Some((net, len)) = v.filter.src {
        list.retain(|a| {
            a["sources"].as_array().is_some_and(|srcs| {
                srcs.iter()
                    .filter_map(|x| x.as_str()?.parse::<IpAddr>().ok())
                    .any(|ip| crate::store::in_prefix(ip, net, len))
            })
        });
    }
    list.sort_by(|a, b| {
        b["severity"]
            .as_u64()
            .cmp(&a["severity"].as_u64())
            .then(a["first_ms"].as_i64().cmp(&b["first_ms"].as_i64()))
    });
    list.truncate(500);
    let slim: Vec<Value> = list
        .into_iter()
        .map(|a| {
            let sources = a["sources"].as_array().cloned().unwrap_or_default();
            json!({
                "id": a["id"], "kind": a["kind"], "status": a["status"],
                "severity": a["severity"], "summary": a["summary"],
                "first_ms": a["first_ms"], "last_ms": a["last_ms"],
                "sources": sources.into_iter().take(8).collect::<Vec<_>>(),
                "source_count": a["source_count"], "proto": a["proto"], "tool": a["tool"],
            })
        })
        .collect();
    Ok(axum::Json(slim).into_response())
}

// ---- top ports, sources ----

pub async fn top(State(s): State<Arc<Shared>>, RawQuery(q): RawQuery) -> Answer {
    let p = params(&q, &[VIEW_KEYS, &["n"]])?;
    let mut v = View::parse(&p, now_ns())?;
    let n = p.int("n", 1, 100)?.unwrap_or(10) as usize;
    let key = past_key("top", &q, &v);
    if let Some(hit) = key.as_deref().and_then(|k| s.tops.get(k)) {
        return Ok(axum::Json(hit).into_response());
    }
    let out = with_store(&s, true, move |st| {
        resolve(st, &mut v)?;
        let (total, ports, srcs) = if v.filter.src.is_none() {
            // Counted by SQLite: no row is decoded.
            st.top(&v.filter, n).map_err(server)?
        } else {
            let mut ports: HashMap<(u8, u16), u64> = HashMap::new();
            let mut sources: HashMap<IpAddr, u64> = HashMap::new();
            let mut total = 0u64;
            st.for_each(&v.filter, |r| {
                total += 1;
                if r.has_ports() {
                    *ports.entry((r.proto, r.dport)).or_default() += 1;
                }
                if let Some(a) = r.src {
                    *sources.entry(a).or_default() += 1;
                }
            })
            .map_err(server)?;
            let mut ports: Vec<_> = ports.into_iter().map(|((p, d), c)| (p, d, c)).collect();
            ports.sort_by(|a, b| b.2.cmp(&a.2).then((a.0, a.1).cmp(&(b.0, b.1))));
            ports.truncate(n);
            let mut srcs: Vec<_> = sources.into_iter().collect();
            srcs.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
            srcs.truncate(n);
            (total, ports, srcs)
        };
        Ok(json!({
            "total": total,
            "ports": ports.into_iter().map(|(pr, port, c)| json!({"proto": proto_name(pr), "port": port, "count": c})).collect::<Vec<_>>(),
            "sources": srcs.into_iter().map(|(a, c)| json!({"src": a.to_string(), "count": c})).collect::<Vec<_>>(),
        }))
    })
    .await?;
    if let Some(k) = key {
        s.tops.put(k, out.clone());
    }
    Ok(axum::Json(out).into_response())
}

// ---- one source ----

pub async fn source(State(s): State<Arc<Shared>>, RawQuery(q): RawQuery) -> Answer {
    let p = params(&q, &[VIEW_KEYS, &["ip"]])?;
    let ip = parse_ip(p.get("ip").ok_or_else(|| Bad("`ip` is required".into()))?)?;
    let mut v = View::parse(&p, now_ns())?;
    v.filter.src = Some((ip, if ip.is_ipv4() { 32 } else { 128 }));
    let out = with_store(&s, true, move |st| {
        resolve(st, &mut v)?;
        let (mut n, mut first, mut last) = (0u64, i64::MAX, i64::MIN);
        let mut ports: HashMap<(u8, u16), u64> = HashMap::new();
        let mut targets: HashMap<IpAddr, u64> = HashMap::new();
        st.for_each(&v.filter, |r| {
            n += 1;
            first = first.min(r.ts_ns);
            last = last.max(r.ts_ns);
            *ports
                .entry((r.proto, if r.has_ports() { r.dport } else { 0 }))
                .or_default() += 1;
            if let Some(d) = r.dst {
                *targets.entry(d).or_default() += 1;
            }
        })
        .map_err(server)?;
        let ip_s = ip.to_string();
        let alerts: Vec<Value> = episodes(st, v.filter.from_ns, v.filter.to_ns)?
            .into_iter()
            .filter(|e| {
                e["sources"]
                    .as_array()
                    .is_some_and(|a| a.iter().any(|x| x.as_str() == Some(&ip_s)))
            })
            .map(|a| json!({"id": a["id"], "kind": a["kind"], "severity": a["severity"], "summary": a["summary"], "first_ms": a["first_ms"], "last_ms": a["last_ms"]}))
            .collect();
        let mut ports: Vec<_> = ports.into_iter().collect();
        ports.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        Ok(json!({
            "ip": ip_s,
            "probes": n,
            "first_ms": (n > 0).then_some(first / 1_000_000),
            "last_ms": (n > 0).then_some(last / 1_000_000),
            "ports": ports.iter().take(20).map(|((pr, port), c)| json!({"proto": proto_name(*pr), "port": port, "count": c})).collect::<Vec<_>>(),
            "distinct_ports": ports.len(),
            "targets": targets.len(),
            "alerts": alerts,
        }))
    })
    .await?;
    Ok(axum::Json(out).into_response())
}

// ---- counters ----

/// The latest counter summary: the daemon's own when it serves, else the
/// last one stored.
async fn summary(s: &Arc<Shared>) -> Result<Option<(String, Value)>, WebError> {
    if let Some(rx) = &s.live_summary {
        let latest = rx.borrow().clone();
        if let Some(j) = latest {
            return Ok(serde_json::from_str(&j).ok().map(|v| ("live".into(), v)));
        }
    }
    let row = with_store(s, false, |st| st.last_counters().map_err(server)).await?;
    Ok(row.and_then(|(_, _, j)| serde_json::from_str(&j).ok().map(|v| ("stored".into(), v))))
}

pub async fn stats(State(s): State<Arc<Shared>>, RawQuery(q): RawQuery) -> Answer {
    params(&q, &[])?;
    let out = match summary(&s).await? {
        Some((origin, v)) => json!({"origin": origin, "summary": v}),
        None => json!({"origin": null, "summary": null}),
    };
    Ok(axum::Json(out).into_response())
}

pub async fn metrics(State(s): State<Arc<Shared>>, RawQuery(q): RawQuery) -> Answer {
    params(&q, &[])?;
    let text = match summary(&s).await? {
        Some((_, v)) => super::metrics::render(&v),
        None => super::metrics::render(&Value::Null),
    };
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response())
}

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
