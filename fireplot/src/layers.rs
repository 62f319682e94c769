//! Layers point down (STYLE.md): a module names only modules of a lower
//! layer. The table is the order; the test reads every `crate::…` and
//! `super::…` path in `src/` and fails on one that names its own layer's
//! neighbour or a higher layer.

/// From the bottom up. A module may use the modules of the layers below
/// its own, never its own layer's other modules or a higher layer.
/// `lib` is the crate root (`error_chain`); `main.rs` (the binary) sits
/// on top and is not scanned.
const LAYERS: &[&[&str]] = &[
    // The crate root's helpers, and this table.
    &["lib", "layers"],
    // A long job's progress: a bar on a terminal, a log line otherwise.
    &["progress"],
    // Load, attach and read the kernel side (fireplot-common's types).
    &["sensor"],
    // The event as userspace holds it, its JSON lines and who its source is.
    &["record"],
    // Who sources are (offline files); the text forms of times, durations,
    // prefixes and protocols (command line and console queries alike).
    &["enrich", "units"],
    // The history: SQLite, and the `History` trait PostgreSQL implements too.
    &["store"],
    // Readers of records and the history: detection and the fireplot.
    &["detect", "plot"],
    // Whole stages: the fleet (NATS, PostgreSQL), and the inputs that feed
    // the sinks (captures, firewall logs).
    &["fleet", "input", "report"],
    // The sensor run's summary: every stage's counts in one type.
    &["summary"],
    // The console and /metrics.
    &["web"],
    // The commands: arguments, the choice of backends, the process loops.
    &["cmd"],
];

#[cfg(test)]
mod tests {
    use std::{
        collections::BTreeSet,
        path::{Path, PathBuf},
    };

    use super::LAYERS;

    fn layer_of(module: &str) -> Option<usize> {
        LAYERS.iter().position(|l| l.contains(&module))
    }

    /// Every `.rs` file under `dir`.
    fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).expect("readable source directory") {
            let path = entry.expect("directory entry").path();
            if path.is_dir() {
                rust_files(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }

    /// The code of a file without comments, strings and character literals
    /// (a URL in a string or a path in a doc comment is not an import).
    fn code_only(src: &str) -> String {
        let b = src.as_bytes();
        let mut out = String::with_capacity(src.len());
        let mut i = 0;
        while i < b.len() {
            let rest = &src[i..];
            if rest.starts_with("//") {
                i += rest.find('\n').unwrap_or(rest.len());
            } else if rest.starts_with("/*") {
                let mut depth = 0;
                while i < b.len() {
                    if src[i..].starts_with("/*") {
                        depth += 1;
                        i += 2;
                    } else if src[i..].starts_with("*/") {
                        depth -= 1;
                        i += 2;
                        if depth == 0 {
                            break;
                        }
                    } else {
                        i += 1;
                    }
                }
            } else if let Some(hashes) = raw_string_start(rest) {
                let close = format!("\"{}", "#".repeat(hashes));
                let body = i + 2 + hashes;
                i = body
                    + src[body..]
                        .find(&close)
                        .map_or(src.len() - body, |n| n + close.len());
                out.push_str("\"\"");
            } else if b[i] == b'"' {
                i += 1;
                while i < b.len() && b[i] != b'"' {
                    i += if b[i] == b'\\' { 2 } else { 1 };
                }
                i += 1;
                out.push_str("\"\"");
            } else if b[i] == b'\'' && char_literal_len(rest).is_some() {
                i += char_literal_len(rest).expect("checked");
                out.push_str("' '");
            } else {
                let c = rest.chars().next().expect("not at the end");
                out.push(c);
                i += c.len_utf8();
            }
        }
        out
    }

    /// `r"`, `r#"`, `br##"`…: the number of `#`s.
    fn raw_string_start(s: &str) -> Option<usize> {
        let s = s.strip_prefix('b').unwrap_or(s).strip_prefix('r')?;
        let hashes = s.bytes().take_while(|&c| c == b'#').count();
        (s.as_bytes().get(hashes) == Some(&b'"')).then_some(hashes)
    }

    /// `'a'`, `'\n'`, `'\u{1F600}'` (not a lifetime `'a`).
    fn char_literal_len(s: &str) -> Option<usize> {
        let body = &s[1..];
        if let Some(esc) = body.strip_prefix('\\') {
            let end = esc.find('\'')?;
            return Some(1 + 1 + end + 1);
        }
        let c = body.chars().next()?;
        (body[c.len_utf8()..].starts_with('\'')).then_some(1 + c.len_utf8() + 1)
    }

    /// The module path of a file: `web/api/mod.rs` is `web::api`.
    fn module_path(rel: &Path) -> Vec<String> {
        let mut parts: Vec<String> = rel
            .iter()
            .map(|p| p.to_string_lossy().trim_end_matches(".rs").to_string())
            .collect();
        if parts.last().is_some_and(|p| p == "mod" || p == "lib") {
            parts.pop();
        }
        parts
    }

    /// The first segment of every path a `use` group names:
    /// `{a::b, c::{d, e}, f}` gives a, c, f.
    fn group_heads(group: &str) -> Vec<String> {
        let mut heads = Vec::new();
        let mut depth = 0;
        let mut item = String::new();
        for c in group.chars() {
            match c {
                '{' => depth += 1,
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    heads.push(std::mem::take(&mut item));
                    continue;
                }
                _ => {}
            }
            if depth == 0 {
                item.push(c);
            }
        }
        heads.push(item);
        heads
            .iter()
            .filter_map(|i| {
                let head = i.trim().split("::").next()?.trim().to_string();
                (!head.is_empty()).then_some(head)
            })
            .collect()
    }

    fn is_ident(c: char) -> bool {
        c.is_ascii_alphanumeric() || c == '_'
    }

    /// The top-level modules a file's code names, through `crate::` or
    /// enough `super::`s to reach the crate root.
    fn named_modules(code: &str, module: &[String]) -> BTreeSet<String> {
        let mut names = BTreeSet::new();
        let mut i = 0;
        while i < code.len() {
            let rest = &code[i..];
            let before = code[..i].chars().next_back();
            let starts_path = !before.is_some_and(|c| is_ident(c) || c == ':');
            let (depth, after) = if starts_path && rest.starts_with("crate::") {
                (0, &rest["crate::".len()..])
            } else if starts_path && rest.starts_with("super::") {
                let mut supers = 0;
                let mut r = rest;
                while let Some(next) = r.strip_prefix("super::") {
                    supers += 1;
                    r = next;
                }
                // More `super`s than the file's path has: an inline module
                // (`mod tests`) counts too; the root is as far as it goes.
                (module.len().saturating_sub(supers), r)
            } else {
                i += rest.chars().next().map_or(1, char::len_utf8);
                continue;
            };
            i += rest.len() - after.len();
            if depth > 0 {
                // Still inside the file's own top-level module.
                continue;
            }
            if let Some(group) = after.strip_prefix('{') {
                let mut level = 1;
                let end = group
                    .char_indices()
                    .find(|&(_, c)| {
                        level += match c {
                            '{' => 1,
                            '}' => -1,
                            _ => 0,
                        };
                        level == 0
                    })
                    .map_or(group.len(), |(n, _)| n);
                names.extend(group_heads(&group[..end]));
            } else {
                let head: String = after.chars().take_while(|&c| is_ident(c)).collect();
                if !head.is_empty() {
                    names.insert(head);
                }
            }
        }
        names
    }

    /// What each file names that is not below it, as messages.
    fn violations(src: &Path) -> Vec<String> {
        let top_level: BTreeSet<String> = std::fs::read_dir(src)
            .expect("readable src")
            .map(|e| {
                let p = e.expect("entry").path();
                p.file_stem()
                    .expect("a name")
                    .to_string_lossy()
                    .into_owned()
            })
            .collect();
        let mut files = Vec::new();
        rust_files(src, &mut files);
        files.sort();
        let mut bad = Vec::new();
        for path in files {
            let rel = path.strip_prefix(src).expect("under src");
            if rel == Path::new("main.rs") {
                continue;
            }
            let module = module_path(rel);
            let own = module.first().map_or("lib", String::as_str);
            let Some(own_layer) = layer_of(own) else {
                bad.push(format!(
                    "{}: module `{own}` is in no layer: add it to LAYERS",
                    rel.display()
                ));
                continue;
            };
            let code = code_only(&std::fs::read_to_string(&path).expect("readable file"));
            for name in named_modules(&code, &module) {
                if name == own || name == "self" || !top_level.contains(&name) {
                    // Itself, or an item of the crate root (`error_chain`).
                    continue;
                }
                match layer_of(&name) {
                    None => bad.push(format!(
                        "{}: names `{name}`, which is in no layer: add it to LAYERS",
                        rel.display()
                    )),
                    Some(l) if l >= own_layer => bad.push(format!(
                        "{}: `{own}` names `{name}`, {}",
                        rel.display(),
                        if l == own_layer {
                            "its neighbour in the same layer"
                        } else {
                            "a higher layer"
                        }
                    )),
                    Some(_) => {}
                }
            }
        }
        bad
    }

    #[test]
    fn layers_point_down() {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let bad = violations(&src);
        assert!(
            bad.is_empty(),
            "imports against the layers (fireplot/src/layers.rs):\n{}",
            bad.join("\n")
        );
    }

    #[test]
    fn the_scanner_sees_paths_and_not_text() {
        let module = vec!["store".to_string(), "history".to_string()];
        let code = code_only(
            "use crate::{plot::ColorBy, record::{Record, line}, enrich};\n\
             // crate::cmd in a comment\n\
             /* crate::web */ let u = \"nats://crate::fleet\"; let c = '\"';\n\
             let r = r#\"crate::cmd\"#; fn f<'a>(x: &'a str) {}\n\
             let p = super::super::fleet::Thing; let q = super::Filter;\n\
             let l = crate::plot::Layout::default();",
        );
        let names = named_modules(&code, &module);
        let want: BTreeSet<String> = ["plot", "record", "enrich", "fleet"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(names, want);
    }
}
