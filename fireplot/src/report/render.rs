//! A day's report as text, Markdown or one self-contained HTML file (its
//! fireplot embedded as a PNG data URI).

use std::fmt::Write as _;

use super::{port_name, ActorDay, Day, Totals, DAY_NS};
use crate::{detect::words::thousands, record::line::rfc3339_ns};

/// How the report is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Text,
    Markdown,
    Html,
}

/// One section: a title and its rows (or a line saying there are none).
struct Section {
    title: String,
    head: Vec<&'static str>,
    rows: Vec<Vec<String>>,
    none: &'static str,
}

fn date(ns: i64) -> String {
    rfc3339_ns(i128::from(ns))[..10].to_string()
}

fn sections(day: &Day) -> Vec<Section> {
    let mut out = Vec::new();
    let totals = day.totals();
    out.push(week(day, &totals));
    let attacks = day.episodes_of(&["ddos", "flood", "brute_force"]);
    out.push(Section {
        title: "Attacks on our hosts".into(),
        head: vec!["kind", "severity", "packets", "what"],
        rows: attacks
            .iter()
            .take(super::TOP)
            .map(|a| {
                vec![
                    a.kind.clone(),
                    a.severity.to_string(),
                    thousands(a.probes),
                    a.summary.clone(),
                ]
            })
            .collect(),
        none: "none",
    });
    let (new, recurring) = day.actors();
    out.push(actors("New actors", &new));
    out.push(actors("Recurring actors", &recurring));
    let surges = day.episodes_of(&["port_surge"]);
    out.push(Section {
        title: "Port surges".into(),
        head: vec!["severity", "what"],
        rows: surges
            .iter()
            .map(|a| vec![a.severity.to_string(), a.summary.clone()])
            .collect(),
        none: "none",
    });
    out.push(Section {
        title: "Ports nobody probed in the 7 days before".into(),
        head: vec!["port", "sources", "packets"],
        rows: day
            .new_ports()
            .iter()
            .map(|p| {
                vec![
                    port_name(p.proto, p.port),
                    thousands(p.sources),
                    thousands(p.probes),
                ]
            })
            .collect(),
        none: "none",
    });
    out
}

fn week(day: &Day, totals: &[Totals]) -> Section {
    let mut rows = Vec::new();
    for (i, t) in totals.iter().enumerate() {
        rows.push(vec![
            date(day.start_ns - (7 - i as i64) * DAY_NS),
            thousands(t.probes),
            thousands(t.sources),
            thousands(t.episodes),
            thousands(t.announced),
        ]);
    }
    let before = &totals[..7];
    let mean = |f: fn(&Totals) -> u64| before.iter().map(f).sum::<u64>() as f64 / 7.0;
    rows.push(vec![
        "mean of the 7 days before".into(),
        format!("{:.0}", mean(|t| t.probes)),
        format!("{:.0}", mean(|t| t.sources)),
        format!("{:.0}", mean(|t| t.episodes)),
        format!("{:.0}", mean(|t| t.announced)),
    ]);
    Section {
        title: "The day beside the 7 days before".into(),
        head: vec!["day (UTC)", "packets", "sources", "episodes", "announced"],
        rows,
        none: "",
    }
}

fn actors(title: &str, list: &[ActorDay]) -> Section {
    Section {
        title: title.into(),
        head: vec![
            "source", "kind", "severity", "episodes", "packets", "since", "what",
        ],
        rows: list
            .iter()
            .map(|a| {
                vec![
                    a.source.clone(),
                    a.kind.clone(),
                    a.severity.to_string(),
                    a.episodes.to_string(),
                    thousands(a.probes),
                    a.since
                        .as_deref()
                        .map(|s| s[..10].to_string())
                        .unwrap_or_default(),
                    a.summary.clone(),
                ]
            })
            .collect(),
        none: "none",
    }
}

/// The report. `png`: the day's fireplot (embedded in HTML; in Markdown
/// linked as `png_name`; in text, named).
pub fn render(day: &Day, format: Format, png: Option<&[u8]>, png_name: &str) -> String {
    let title = format!("fireplot — {} (UTC), {}", date(day.start_ns), day.label);
    let totals = day.totals();
    let today = &totals[7];
    let lead = format!(
        "{} packets from {} sources to {} ports; {} episodes, {} announced.",
        thousands(today.probes),
        thousands(today.sources),
        thousands(today.ports),
        thousands(today.episodes),
        thousands(today.announced)
    );
    let secs = sections(day);
    match format {
        Format::Text => text(&title, &lead, &secs, png.map(|_| png_name)),
        Format::Markdown => markdown(&title, &lead, &secs, png.map(|_| png_name)),
        Format::Html => html(&title, &lead, &secs, png),
    }
}

fn text(title: &str, lead: &str, secs: &[Section], png: Option<&str>) -> String {
    let mut s = format!("{title}\n{}\n\n{lead}\n", "=".repeat(title.chars().count()));
    if let Some(p) = png {
        let _ = writeln!(s, "The day's fireplot: {p}");
    }
    for sec in secs {
        let _ = write!(
            s,
            "\n{}\n{}\n",
            sec.title,
            "-".repeat(sec.title.chars().count())
        );
        if sec.rows.is_empty() {
            let _ = writeln!(s, "{}", sec.none);
            continue;
        }
        let mut width: Vec<usize> = sec.head.iter().map(|h| h.chars().count()).collect();
        for r in &sec.rows {
            for (w, c) in width.iter_mut().zip(r) {
                *w = (*w).max(c.chars().count());
            }
        }
        let line = |cells: Vec<String>| {
            let last = cells.len() - 1;
            cells
                .into_iter()
                .enumerate()
                .map(|(i, c)| {
                    if i == last {
                        c
                    } else {
                        format!("{c:<w$}", w = width[i])
                    }
                })
                .collect::<Vec<_>>()
                .join("  ")
        };
        let _ = writeln!(
            s,
            "{}",
            line(sec.head.iter().map(|h| h.to_string()).collect())
        );
        for r in &sec.rows {
            let _ = writeln!(s, "{}", line(r.clone()));
        }
    }
    s
}

fn md_cell(c: &str) -> String {
    c.replace('|', "\\|")
}

fn markdown(title: &str, lead: &str, secs: &[Section], png: Option<&str>) -> String {
    let mut s = format!("# {title}\n\n{lead}\n");
    if let Some(p) = png {
        let _ = write!(s, "\n![the day's fireplot]({p})\n");
    }
    for sec in secs {
        let _ = write!(s, "\n## {}\n\n", sec.title);
        if sec.rows.is_empty() {
            let _ = writeln!(s, "{}", sec.none);
            continue;
        }
        let _ = writeln!(s, "| {} |", sec.head.join(" | "));
        let _ = writeln!(s, "|{}", " --- |".repeat(sec.head.len()));
        for r in &sec.rows {
            let cells: Vec<String> = r.iter().map(|c| md_cell(c)).collect();
            let _ = writeln!(s, "| {} |", cells.join(" | "));
        }
    }
    s
}

fn esc(c: &str) -> String {
    c.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn html(title: &str, lead: &str, secs: &[Section], png: Option<&[u8]>) -> String {
    let mut s = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{t}</title>\n<style>\
         body{{font:14px/1.4 system-ui,sans-serif;margin:2em auto;max-width:1280px;background:#111;color:#ddd}}\
         h1,h2{{font-weight:600}}table{{border-collapse:collapse;margin:.5em 0 1.5em}}\
         td,th{{border-bottom:1px solid #333;padding:.25em .8em;text-align:left;vertical-align:top}}\
         th{{color:#9c9}}img{{max-width:100%;border:1px solid #333}}\
         </style></head><body>\n<h1>{t}</h1>\n<p>{l}</p>\n",
        t = esc(title),
        l = esc(lead)
    );
    if let Some(png) = png {
        let _ = writeln!(
            s,
            "<img alt=\"the day's fireplot\" src=\"data:image/png;base64,{}\">",
            base64(png)
        );
    }
    for sec in secs {
        let _ = writeln!(s, "<h2>{}</h2>", esc(&sec.title));
        if sec.rows.is_empty() {
            let _ = writeln!(s, "<p>{}</p>", esc(sec.none));
            continue;
        }
        s.push_str("<table><tr>");
        for h in &sec.head {
            let _ = write!(s, "<th>{}</th>", esc(h));
        }
        s.push_str("</tr>\n");
        for r in &sec.rows {
            s.push_str("<tr>");
            for c in r {
                let _ = write!(s, "<td>{}</td>", esc(c));
            }
            s.push_str("</tr>\n");
        }
        s.push_str("</table>\n");
    }
    s.push_str("</body></html>\n");
    s
}

/// Standard base64 (RFC 4648) with padding.
fn base64(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for c in bytes.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= c.len() {
                out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_is_rfc_4648() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
    }

    #[test]
    fn html_escapes_what_it_is_given() {
        assert_eq!(
            esc("<a href=\"x\">&</a>"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&lt;/a&gt;"
        );
        assert_eq!(md_cell("a|b"), "a\\|b");
    }
}
