//! The fireplot of a view, PNG or SVG (the renderer of `fireplot plot`),
//! and the cache of past ranges.

use super::*;
use crate::{plot::Groups, record::GroupBy};

// ---- plots ----

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
                if v.color != GroupBy::Proto {
                    d.color_by_groups(Groups::new(st.origin_groups(v.color).map_err(server)?));
                }
                d.fill(st, &v.filter).map_err(server)?;
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
