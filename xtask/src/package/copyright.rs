//! `usr/share/doc/fireplot/copyright` in Debian's machine-readable format
//! (<https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/>):
//! fireplot's own licences (the MIT text in full, Apache-2.0 by reference to
//! `/usr/share/common-licenses`, as Debian policy §12.5 asks), and the
//! crates linked into the binary and its embedded eBPF object with the
//! licence each declares, read from `cargo metadata`.

use std::{collections::BTreeSet, path::Path};

use anyhow::{bail, Context, Result};

use crate::build::{cargo, root};

/// Who holds the copyright, as LICENSE-MIT says.
const HOLDER: &str = "The fireplot developers";

/// A copyright-file field value: continuation lines start with a space, an
/// empty line is ` .`.
fn field_lines(text: &str) -> String {
    text.lines()
        .map(|l| {
            if l.trim().is_empty() {
                " .\n".to_string()
            } else {
                format!(" {l}\n")
            }
        })
        .collect()
}

/// The MIT licence's text from LICENSE-MIT, without its title and
/// copyright line (those are the Copyright field's).
fn mit_text(root: &Path) -> Result<String> {
    let text = std::fs::read_to_string(root.join("LICENSE-MIT")).context("LICENSE-MIT")?;
    let start = text
        .find("Permission is hereby granted")
        .context("LICENSE-MIT has no MIT permission notice")?;
    Ok(text[start..].to_string())
}

/// The host's target triple (`rustc -vV`).
fn host_triple() -> Result<String> {
    let out = std::process::Command::new("rustc")
        .arg("-vV")
        .output()
        .context("rustc -vV")?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("host: "))
        .map(str::to_string)
        .context("rustc -vV names no host")
}

/// A crate that only the compiler runs (its dependencies are not linked
/// into what it is used in).
fn is_proc_macro(package: &serde_json::Value) -> bool {
    package["targets"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|t| {
            t["kind"]
                .as_array()
                .is_some_and(|k| k.iter().any(|k| k == "proc-macro"))
        })
}

/// `name version (licence)` of every crate linked into `package` for
/// `platform`: its normal dependencies, transitively, without proc macros
/// and what only they use (they run in the compiler), and without the
/// workspace's own crates.
fn linked_crates(manifest: &Path, package: &str, platform: &str) -> Result<Vec<String>> {
    let out = cargo(None)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--offline",
            "--manifest-path",
        ])
        .arg(manifest)
        .args(["--filter-platform", platform])
        .output()
        .context("cargo metadata")?;
    if !out.status.success() {
        bail!(
            "cargo metadata failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let packages = meta["packages"].as_array().context("no packages")?;
    let by_id = |id: &str| packages.iter().find(|p| p["id"] == id);
    let members: BTreeSet<&str> = meta["workspace_members"]
        .as_array()
        .context("no workspace members")?
        .iter()
        .filter_map(|m| m.as_str())
        .collect();
    let nodes = meta["resolve"]["nodes"].as_array().context("no resolve")?;
    let start = packages
        .iter()
        .find(|p| p["name"] == package)
        .and_then(|p| p["id"].as_str())
        .with_context(|| format!("no package {package}"))?;
    let mut seen = BTreeSet::new();
    let mut todo = vec![start.to_string()];
    while let Some(id) = todo.pop() {
        if !seen.insert(id.clone()) {
            continue;
        }
        if by_id(&id).is_some_and(is_proc_macro) {
            continue;
        }
        let node = nodes
            .iter()
            .find(|n| n["id"] == id.as_str())
            .with_context(|| format!("{id} is not in the resolve graph"))?;
        for dep in node["deps"].as_array().into_iter().flatten() {
            let normal = dep["dep_kinds"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|k| k["kind"].is_null());
            if normal {
                if let Some(pkg) = dep["pkg"].as_str() {
                    todo.push(pkg.to_string());
                }
            }
        }
    }
    let mut crates = Vec::new();
    for id in &seen {
        let p = by_id(id).with_context(|| format!("no package {id}"))?;
        // A path dependency (no registry source) is the project's own.
        let own = members.contains(id.as_str()) || p["source"].is_null();
        if is_proc_macro(p) || own {
            continue;
        }
        let license = p["license"]
            .as_str()
            .map(str::to_string)
            .or_else(|| p["license_file"].as_str().map(|f| format!("see its {f}")))
            .unwrap_or_else(|| "no licence declared".into());
        crates.push(format!(
            "{} {} ({license})",
            p["name"].as_str().unwrap_or("?"),
            p["version"].as_str().unwrap_or("?")
        ));
    }
    crates.sort();
    Ok(crates)
}

/// The copyright file's text.
pub fn copyright() -> Result<String> {
    let root = root();
    let userspace = linked_crates(&root.join("Cargo.toml"), "fireplot", &host_triple()?)?;
    let kernel = linked_crates(
        &root.join("fireplot-ebpf/Cargo.toml"),
        "fireplot-ebpf",
        "bpfel-unknown-none",
    )?;
    let sqlite = if userspace.iter().any(|c| c.starts_with("libsqlite3-sys ")) {
        " SQLite itself, compiled in by libsqlite3-sys, is in the public domain."
    } else {
        ""
    };
    let bundled = format!(
        "The binary is statically linked with the Rust standard library (MIT or\n\
         Apache-2.0) and with these crates, each under the licence its Cargo.toml\n\
         declares.{sqlite}\n\n{}\n\n\
         The eBPF object embedded in the binary is built with Rust's core library\n\
         (MIT or Apache-2.0) and these crates:\n\n{}",
        userspace.join("\n"),
        kernel.join("\n"),
    );
    let apache = "Licensed under the Apache License, Version 2.0 (the \"License\");\n\
        you may not use this file except in compliance with the License.\n\
        You may obtain a copy of the License at\n\n\
        http://www.apache.org/licenses/LICENSE-2.0\n\n\
        Unless required by applicable law or agreed to in writing, software\n\
        distributed under the License is distributed on an \"AS IS\" BASIS,\n\
        WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.\n\
        See the License for the specific language governing permissions and\n\
        limitations under the License.\n\n\
        On Debian systems, the complete text of the Apache License, Version 2.0\n\
        can be found in \"/usr/share/common-licenses/Apache-2.0\".";
    Ok(format!(
        "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\
         Upstream-Name: fireplot\n\
         Upstream-Contact: {maintainer}\n\
         \n\
         Files: *\n\
         Copyright: {HOLDER}\n\
         License: Expat or Apache-2.0\n\
         Comment: Expat is the MIT licence of LICENSE-MIT; Cargo.toml says\n \
         \"MIT OR Apache-2.0\".\n \
         .\n\
         {bundled}\
         \n\
         License: Expat\n\
         {mit}\
         \n\
         License: Apache-2.0\n\
         {apache}",
        maintainer = super::MAINTAINER,
        bundled = field_lines(&bundled),
        mit = field_lines(&mit_text(&root)?),
        apache = field_lines(apache),
    ))
}

#[cfg(test)]
mod tests {
    use super::field_lines;

    #[test]
    fn field_lines_indent_and_mark_empty_lines() {
        assert_eq!(field_lines("a\n\nb"), " a\n .\n b\n");
    }
}
