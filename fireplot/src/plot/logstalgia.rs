//! The fireplot's dots as Logstalgia log lines (`time|source|PROTO:port|
//! code|size|1|colour`), each in the dot's colour, for `logstalgia --sync
//! -` to animate as the seed's author watched them: `fireplot export
//! --logstalgia` and the console's `/api/logstalgia`.

use super::{Category, Theme};
use crate::record::Record;

/// One event as a Logstalgia line (without newline): code 200 for TCP,
/// 404 for UDP, 500 for the rest.
pub fn line(r: &Record) -> String {
    let proto = match fireplot_common::proto::proto_label(r.proto) {
        Some(label) => label.to_string(),
        None => format!("P{}", r.proto),
    };
    let code = match r.proto {
        6 => 200,
        17 => 404,
        _ => 500,
    };
    let c = Theme::Dark.color(Category::of(r));
    format!(
        "{}|{}|{}:{}|{}|{}|1|{:02X}{:02X}{:02X}",
        r.ts_ns.div_euclid(1_000_000_000),
        r.src.map(|a| a.to_string()).unwrap_or_else(|| "-".into()),
        proto,
        if r.has_ports() { r.dport } else { 0 },
        code,
        r.len,
        c.0,
        c.1,
        c.2
    )
}
