//! What is under the pointer.

use super::*;

// ---- hover ----

/// Source (or an aggregate's prefix), protocol, port: one line of a hover.
type GroupKey = (Option<crate::store::Source>, u8, u16);

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
        let mut groups: HashMap<GroupKey, (u64, i64, i64, Vec<u32>)> = HashMap::new();
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
            total += u64::from(r.count);
            let port = if r.has_ports() { r.dport } else { 0 };
            let g = groups
                .entry((crate::store::Source::of(&r), r.proto, port))
                .or_insert((0, r.ts_ns, r.ts_ns, Vec::new()));
            g.0 += u64::from(r.count);
            g.1 = g.1.min(r.ts_ns);
            g.2 = g.2.max(r.ts_ns);
            if !g.3.contains(&r.ifindex) && g.3.len() < 64 {
                g.3.push(r.ifindex);
            }
        })
        .map_err(server)?;
        let mut list: Vec<_> = groups.into_iter().collect();
        // Most probes first; among equals, the one drawn nearest the pointer.
        let dist = |port: u16, proto: u8| {
            if fireplot_common::proto::has_ports(proto) && port > 0 {
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
            .map(|((src, proto, port), (n, first, last, ifs))| {
                // The fleet: which sensors saw these probes.
                let mut sensors: Vec<String> =
                    ifs.iter().filter_map(|i| st.sensor_of(*i)).collect();
                sensors.sort();
                sensors.dedup();
                let src_s = src.map(|a| a.to_string());
                let aggregate = src.is_some_and(|s| s.prefix.is_some());
                let alert = src_s.as_deref().and_then(|ip| {
                    episodes.iter().find(|e| {
                        e["sources"]
                            .as_array()
                            .is_some_and(|a| a.iter().any(|x| x.as_str() == Some(ip)))
                    })
                });
                let origin = src
                    .filter(|s| s.prefix.is_none())
                    .and_then(|s| st.origin(s.addr).ok().flatten());
                json!({
                    "src": src_s,
                    "origin": origin,
                    "sensors": (!sensors.is_empty()).then_some(sensors),
                    "aggregate": aggregate,
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
