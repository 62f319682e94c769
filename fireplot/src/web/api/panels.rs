//! The panels beside the plot: alerts, top ports and sources, one source,
//! the counters and `/metrics`.

use super::*;
use crate::store::Source;

// ---- alerts ----

/// An attack on our hosts: `ddos`, or a `flood`.
fn is_attack(a: &Value) -> bool {
    matches!(a["kind"].as_str(), Some("ddos" | "flood"))
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
    // Attacks on our hosts first (an operator's first question), then by
    // severity.
    list.sort_by(|a, b| {
        is_attack(b)
            .cmp(&is_attack(a))
            .then(b["severity"].as_u64().cmp(&a["severity"].as_u64()))
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
                "origins": a["origins"], "asns": a["asns"], "countries": a["countries"],
                "sensor": a["sensor"], "sensors": a["sensors"],
                "attack": is_attack(&a),
                "destination": a["targets"]["sample"].get(0),
                "ports": a["ports"]["sample"],
                "vector": a["vector"], "reflector_port": a["reflector_port"],
                "peak_pps": a["peak_pps"], "peak_bps": a["peak_bps"],
                "probes": a["probes"], "bytes": a["bytes"], "prefix_len": a["prefix_len"],
            })
        })
        .collect();
    Ok(axum::Json(slim).into_response())
}

// ---- top ports, sources ----

pub async fn top(State(s): State<Arc<Shared>>, RawQuery(q): RawQuery) -> Answer {
    let p = params(&q, &[VIEW_KEYS, &["n", "part"]])?;
    let mut v = View::parse(&p, now_ns())?;
    let n = p.int("n", 1, 100)?.unwrap_or(10) as usize;
    // The ports come from the pre-binned hours, the sources from the
    // events: the page asks for them apart so the ports do not wait.
    let (want_ports, want_sources) = match p.get("part") {
        None | Some("all") => (true, true),
        Some("ports") => (true, false),
        Some("sources") => (false, true),
        Some(x) => {
            return Err(Bad(format!(
                "`part` must be ports, sources or all, not `{}`",
                clip(x)
            ))
            .into())
        }
    };
    let key = past_key("top", &q, &v);
    if let Some(hit) = key.as_deref().and_then(|k| s.tops.get(k)) {
        return Ok(axum::Json(hit).into_response());
    }
    let out = with_store(&s, true, move |st| {
        resolve(st, &mut v)?;
        let (total, ports, srcs) = if Store::binnable(&v.filter) && st.has_bins() {
            let (mut total, mut ports, mut srcs) = (0, Vec::new(), Vec::new());
            if want_ports {
                (total, ports) = st.top_ports(&v.filter, n).map_err(server)?;
            }
            if want_sources {
                (total, srcs) = st.top_sources(&v.filter, n).map_err(server)?;
            }
            (total, ports, srcs)
        } else {
            let mut ports: HashMap<(u8, u16), u64> = HashMap::new();
            let mut sources: HashMap<Source, u64> = HashMap::new();
            let mut total = 0u64;
            st.for_each(&v.filter, |r| {
                let n = u64::from(r.count);
                total += n;
                if r.has_ports() {
                    *ports.entry((r.proto, r.dport)).or_default() += n;
                }
                if let Some(a) = Source::of(&r) {
                    *sources.entry(a).or_default() += n;
                }
            })
            .map_err(server)?;
            let mut ports: Vec<_> = ports.into_iter().map(|((p, d), c)| (p, d, c)).collect();
            ports.sort_by(|a, b| b.2.cmp(&a.2).then((a.0, a.1).cmp(&(b.0, b.1))));
            ports.truncate(if want_ports { n } else { 0 });
            let mut srcs: Vec<_> = sources.into_iter().collect();
            srcs.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
            srcs.truncate(if want_sources { n } else { 0 });
            (total, ports, srcs)
        };
        Ok(json!({
            "total": total,
            "ports": ports.into_iter().map(|(pr, port, c)| json!({"proto": proto_name(pr), "port": port, "count": c})).collect::<Vec<_>>(),
            "sources": srcs.into_iter().map(|(a, c)| {
                let origin = a.prefix.is_none().then(|| st.origin(a.addr).ok().flatten()).flatten();
                json!({"src": a.to_string(), "aggregate": a.prefix.is_some(), "count": c, "origin": origin})
            }).collect::<Vec<_>>(),
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
            let c = u64::from(r.count);
            n += c;
            first = first.min(r.ts_ns);
            last = last.max(r.ts_ns);
            *ports
                .entry((r.proto, if r.has_ports() { r.dport } else { 0 }))
                .or_default() += c;
            if let Some(d) = r.dst {
                *targets.entry(d).or_default() += c;
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
            "origin": st.origin(ip).map_err(server)?,
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
    // A summary that does not read as one (another version's, with a
    // field of another type) shows as up, with what it could not say as 0.
    let text = match summary(&s).await? {
        Some((_, v)) => {
            crate::web::metrics::render(Some(&serde_json::from_value(v).unwrap_or_default()))
        }
        None => crate::web::metrics::render(None),
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
