//! The docs (README.md and docs/*.md) and the binary's `--help` agree: every
//! `fireplot` subcommand and flag the docs name exists, every subcommand and
//! every flag `--help` prints is documented, and every relative link
//! between the pages resolves. A failure says which flag is missing where
//! (`docs/page.md:LINE` or the `--help` that prints it).
//!
//! What counts as a fireplot command line in the docs:
//!
//! - In fenced code blocks, a line from the word `fireplot` (or a path
//!   ending in `/fireplot`, or `cargo xtask run --`) on: the words after it
//!   that are subcommands name the subcommand, its `--flags` and `-x` flags
//!   belong to it. A following line indented deeper than the command's own
//!   line, or after a trailing `\`, continues it (the synopses in
//!   deployment.md). The command ends at the end of that continuation, at a
//!   shell pipe (` | ` followed by a word that is not a flag: ` | ` before a
//!   flag is the synopses' "or"), at the next `fireplot`, or at a `#`
//!   comment. Lines with no `fireplot` command are other tools' (tcpdump,
//!   journalctl, curl, ...) and are not read.
//! - In prose, only code spans are read. A span holding `fireplot SUB ...`
//!   or starting with a subcommand and a flag (`run --publish`) is read as
//!   a command line as above. A span that starts with a flag (`--retain
//!   30d`) names flags of the command the same paragraph (a list item and a
//!   table row are paragraphs of their own) last named in a span: a
//!   fireplot subcommand, or another tool (a span starting with one of
//!   [`OTHER_TOOLS`], e.g. `cargo xtask bench` or `fireplot-bench
//!   --xdp-only`), whose flags are not fireplot's and are not read. With no
//!   command named before it in its paragraph, such a flag must be one of
//!   some subcommand.
//! - Flags with one dash are read only in command lines (nmap's `-sA` in
//!   prose is not fireplot's).
//!
//! `--help` is read from the binary cargo built for this test: the option
//! lines of `fireplot --help` and of each subcommand's (hidden flags are not
//! printed, so they need no documentation). `--help` and `--version` need
//! not be documented.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
    process::Command,
};

/// Programs whose flags appear in the docs and are not fireplot's.
const OTHER_TOOLS: &[&str] = &[
    "cargo",
    "fireplot-bench",
    "fireplot-flood",
    "nmap",
    "masscan",
    "zmap",
    "hping3",
    "tcpdump",
    "tshark",
    "ssh",
    "systemctl",
    "journalctl",
    "dmesg",
    "curl",
    "logstalgia",
    "chromium",
    "nats-server",
    "psql",
    "iptables",
    "ip6tables",
    "nft",
    "apt",
    "dpkg",
    "lintian",
    "setpriv",
];

/// A subcommand path (`[]` is `fireplot` itself, `["config", "check"]`).
type SubPath = Vec<String>;

/// What `--help` says: each subcommand's flags and subcommands.
#[derive(Default)]
struct Help {
    flags: BTreeMap<SubPath, BTreeSet<String>>,
    subcommands: BTreeMap<SubPath, BTreeSet<String>>,
}

fn help_text(path: &[String]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_fireplot"))
        .args(path)
        .arg("--help")
        .output()
        .expect("run the fireplot binary");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "`fireplot {} --help` failed: {}{}",
        path.join(" "),
        text,
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

/// The names an option line of clap's help defines: `  -i, --iface <IFACE>`
/// or `      --db [<PATH>]` (descriptions are indented further).
fn option_names(line: &str) -> Vec<String> {
    let Some(rest) = line.strip_prefix("  ") else {
        return Vec::new();
    };
    let rest = rest.strip_prefix("    ").unwrap_or(rest);
    let mut names = Vec::new();
    for word in rest.split_whitespace() {
        let name = word.trim_end_matches(',');
        if let Some(long) = name.strip_prefix("--") {
            let long: String = long
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
                .collect();
            names.push(format!("--{long}"));
            break;
        } else if name.len() == 2 && name.starts_with('-') {
            names.push(name.to_string());
            if !word.ends_with(',') {
                break;
            }
        } else {
            break;
        }
    }
    names
}

impl Help {
    fn read() -> Self {
        let mut help = Help::default();
        help.read_path(Vec::new());
        help
    }

    fn read_path(&mut self, path: SubPath) {
        let text = help_text(&path);
        let mut flags = BTreeSet::new();
        let mut subs = BTreeSet::new();
        let mut in_commands = false;
        for line in text.lines() {
            if line == "Commands:" {
                in_commands = true;
                continue;
            }
            if in_commands {
                match line
                    .strip_prefix("  ")
                    .and_then(|l| l.split_whitespace().next())
                {
                    Some(name) if !line.starts_with("   ") => {
                        if name != "help" {
                            subs.insert(name.to_string());
                        }
                    }
                    _ => in_commands = !line.trim().is_empty(),
                }
                continue;
            }
            flags.extend(option_names(line));
        }
        for sub in &subs {
            let mut p = path.clone();
            p.push(sub.clone());
            self.read_path(p);
        }
        self.flags.insert(path.clone(), flags);
        self.subcommands.insert(path, subs);
    }

    fn is_subcommand(&self, path: &[String], word: &str) -> bool {
        self.subcommands.get(path).is_some_and(|s| s.contains(word))
    }
}

/// Whose flags a stretch of the docs names.
#[derive(Clone, Debug, PartialEq)]
enum Owner {
    /// A fireplot subcommand's.
    Fireplot(SubPath),
    /// Another program's: not read.
    Other,
    /// No command named: the flag must be one of some subcommand.
    Unnamed,
}

/// One flag the docs name, and where.
#[derive(Debug)]
struct Mention {
    at: String,
    owner: Owner,
    flag: String,
}

/// A word of a command line with the markup around it removed.
fn bare(word: &str) -> &str {
    word.trim_start_matches(['[', '(', '`', '"', '\''])
        .trim_end_matches([']', ')', ',', ';', '.', ':', '`', '"', '\'', '…'])
}

/// The flags in one word: `--a/--b`, `[--limit|-n`, `--config=FILE`.
fn flags_in(word: &str, short_too: bool) -> Vec<String> {
    let mut out = Vec::new();
    for part in bare(word).split(['|', '/']) {
        let part = bare(part);
        if let Some(long) = part.strip_prefix("--") {
            let name: String = long
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
                .collect();
            let name = name.trim_end_matches('-');
            if name.starts_with(|c: char| c.is_ascii_alphanumeric()) {
                out.push(format!("--{name}"));
            }
        } else if short_too
            && part.len() == 2
            && part.starts_with('-')
            && part.as_bytes()[1].is_ascii_alphabetic()
        {
            out.push(part.to_string());
        }
    }
    out
}

/// Reads command lines, collecting the flags they name.
struct Scan<'a> {
    help: &'a Help,
    at: String,
    mentions: Vec<Mention>,
    /// Every subcommand a command line names (with its parents).
    named: BTreeSet<SubPath>,
    errors: Vec<String>,
}

/// What one line or code span named.
struct Read {
    /// Whose flags its last words were.
    last: Owner,
    /// The first fireplot command it named, if any.
    first_command: Option<Owner>,
}

impl Scan<'_> {
    /// Reads the words of one line or code span; `owner` is whose flags
    /// come first.
    fn words(&mut self, words: &[&str], mut owner: Owner) -> Read {
        let mut first_command = None;
        let mut i = 0;
        while i < words.len() {
            let w = bare(words[i]);
            let starts_fireplot =
                w == "fireplot" || w.ends_with("bin/fireplot") || w.ends_with("release/fireplot");
            let xtask_run = words.len() > i + 3
                && w == "cargo"
                && words[i + 1] == "xtask"
                && words[i + 2] == "run"
                && words[i + 3] == "--";
            if starts_fireplot || xtask_run {
                i += if xtask_run { 4 } else { 1 };
                let mut path = Vec::new();
                while let Some(next) = words.get(i).map(|w| bare(w)) {
                    if self.help.is_subcommand(&path, next) {
                        path.push(next.to_string());
                        i += 1;
                    } else {
                        if !self.help.subcommands[&path].is_empty()
                            && !words[i].starts_with(['(', '['])
                            && !next.is_empty()
                            && next.chars().all(|c| c.is_ascii_lowercase() || c == '-')
                            && !next.starts_with('-')
                        {
                            self.errors.push(format!(
                                "{}: `fireplot {}` names the subcommand `{next}`, which `fireplot {}--help` does not list",
                                self.at,
                                path.iter().map(|p| format!("{p} ")).collect::<String>() + next,
                                path.iter().map(|p| format!("{p} ")).collect::<String>(),
                            ));
                        }
                        break;
                    }
                }
                let is_command =
                    !path.is_empty() || words.get(i).is_some_and(|w| bare(w).starts_with('-'));
                if is_command {
                    for n in 1..=path.len() {
                        self.named.insert(path[..n].to_vec());
                    }
                }
                owner = if is_command {
                    Owner::Fireplot(path)
                } else {
                    Owner::Other
                };
                if is_command && first_command.is_none() {
                    first_command = Some(owner.clone());
                }
                continue;
            }
            if words[i] == "|" && words.get(i + 1).is_none_or(|n| !bare(n).starts_with('-')) {
                // A shell pipe: what follows is another program's.
                owner = Owner::Other;
            } else if words[i] == "&&" || words[i] == "||" {
                owner = Owner::Other;
            } else if owner != Owner::Other {
                let short_too = matches!(owner, Owner::Fireplot(_));
                for flag in flags_in(words[i], short_too) {
                    self.mentions.push(Mention {
                        at: self.at.clone(),
                        owner: owner.clone(),
                        flag,
                    });
                }
            }
            i += 1;
        }
        Read {
            last: owner,
            first_command,
        }
    }
}

fn docs_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// README.md and docs/*.md, with their names relative to the root.
fn pages() -> Vec<(String, String)> {
    let root = docs_root();
    let mut names = vec!["README.md".to_string()];
    let mut docs: Vec<String> = std::fs::read_dir(root.join("docs"))
        .expect("docs/")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".md"))
        .map(|n| format!("docs/{n}"))
        .collect();
    docs.sort();
    names.extend(docs);
    names
        .into_iter()
        .map(|n| {
            let text =
                std::fs::read_to_string(root.join(&n)).unwrap_or_else(|e| panic!("{n}: {e}"));
            (n, text)
        })
        .collect()
}

/// Code spans of a paragraph, each with its line number.
fn code_spans(lines: &[(usize, &str)]) -> Vec<(usize, String)> {
    let mut spans = Vec::new();
    let mut open: Option<(usize, String)> = None;
    for (n, line) in lines {
        for (k, piece) in line.split('`').enumerate() {
            if k > 0 {
                open = match open.take() {
                    Some(span) => {
                        spans.push(span);
                        None
                    }
                    None => Some((*n, String::new())),
                };
            }
            if let Some((_, text)) = open.as_mut() {
                text.push_str(piece);
            }
        }
        if let Some((_, text)) = open.as_mut() {
            text.push(' ');
        }
    }
    spans
}

/// Reads one page: code blocks line by line, prose paragraph by paragraph.
fn read_page(name: &str, text: &str, scan: &mut Scan) {
    let lines: Vec<(usize, &str)> = text.lines().enumerate().map(|(i, l)| (i + 1, l)).collect();
    let mut i = 0;
    while i < lines.len() {
        let (_, line) = lines[i];
        if line.trim_start().starts_with("```") {
            i += 1;
            // (owner of the command, its line's indent)
            let mut command: Option<(Owner, usize)> = None;
            let mut continued = false;
            while i < lines.len() && !lines[i].1.trim_start().starts_with("```") {
                let (n, l) = lines[i];
                scan.at = format!("{name}:{n}");
                let l = if l.trim_start().starts_with('#') {
                    ""
                } else {
                    l.split(" #").next().unwrap_or(l)
                };
                let indent = l.len() - l.trim_start().len();
                let owner = match &command {
                    Some((o, first)) if continued || indent > *first => o.clone(),
                    _ => {
                        command = None;
                        Owner::Other
                    }
                };
                let words: Vec<&str> = l.split_whitespace().collect();
                let read = scan.words(&words, owner);
                if command.is_none() {
                    // The line's first fireplot command owns its continuations.
                    command = read.first_command.map(|o| (o, indent));
                }
                continued = l.trim_end().ends_with('\\');
                i += 1;
            }
            i += 1;
            continue;
        }
        if line.trim().is_empty() {
            i += 1;
            continue;
        }
        // A paragraph: up to a blank line, a fence, a heading, a table row or
        // a new list item (each of those starts a paragraph of its own).
        let start = i;
        i += 1;
        let own_line = |l: &str| l.starts_with('#') || l.starts_with('|');
        if !own_line(line) {
            while i < lines.len() {
                let l = lines[i].1;
                let t = l.trim_start();
                let new_item =
                    (t.starts_with("- ") || t.starts_with("* ")) && l.len() - t.len() < 2;
                if l.trim().is_empty() || t.starts_with("```") || own_line(l) || new_item {
                    break;
                }
                i += 1;
            }
        }
        let mut owner = Owner::Unnamed;
        for (n, span) in code_spans(&lines[start..i]) {
            scan.at = format!("{name}:{n}");
            let words: Vec<&str> = span.split_whitespace().collect();
            let Some(first) = words.first().map(|w| bare(w)) else {
                continue;
            };
            let sub_led = words.len() > 1
                && scan.help.is_subcommand(&[], first)
                && bare(words[1]).starts_with('-');
            let mut with_fireplot;
            let words = if sub_led {
                with_fireplot = vec!["fireplot"];
                with_fireplot.extend(&words);
                &with_fireplot[..]
            } else {
                &words[..]
            };
            let start_owner = if first.starts_with("--") {
                owner.clone()
            } else {
                Owner::Other
            };
            let read = scan.words(words, start_owner);
            if read.first_command.is_some() {
                owner = read.last;
            } else if OTHER_TOOLS.contains(&first) {
                owner = Owner::Other;
            }
        }
    }
}

/// Every flag and subcommand the docs name, read by the rules above.
fn read_docs(help: &Help) -> Scan<'_> {
    let mut scan = Scan {
        help,
        at: String::new(),
        mentions: Vec::new(),
        named: BTreeSet::new(),
        errors: Vec::new(),
    };
    for (name, text) in pages() {
        read_page(&name, &text, &mut scan);
    }
    scan
}

#[test]
fn every_flag_the_docs_name_exists_and_every_flag_is_documented() {
    let help = Help::read();
    assert!(
        help.subcommands[&Vec::new()].contains("run"),
        "`fireplot --help` lists its subcommands"
    );
    let all: BTreeSet<&String> = help.flags.values().flatten().collect();
    let Scan {
        mentions,
        named,
        mut errors,
        ..
    } = read_docs(&help);
    for path in help.subcommands.keys() {
        if !path.is_empty() && !named.contains(path) {
            errors.push(format!(
                "`fireplot --help` lists `fireplot {}`, which no command line in README.md or docs/*.md names",
                path.join(" ")
            ));
        }
    }
    let mut documented: BTreeSet<&str> = BTreeSet::new();
    for m in &mentions {
        match &m.owner {
            Owner::Fireplot(path) => {
                let flags = &help.flags[path];
                if !flags.contains(&m.flag) {
                    errors.push(format!(
                        "{}: the docs give `fireplot {}{}`, but `fireplot {}--help` has no {}",
                        m.at,
                        path.iter().map(|p| format!("{p} ")).collect::<String>(),
                        m.flag,
                        path.iter().map(|p| format!("{p} ")).collect::<String>(),
                        m.flag
                    ));
                }
            }
            Owner::Unnamed => {
                if !all.contains(&m.flag) {
                    errors.push(format!(
                        "{}: the docs name {} (no command named before it in its paragraph), which no `fireplot SUB --help` has",
                        m.at, m.flag
                    ));
                }
            }
            Owner::Other => {}
        }
        documented.insert(&m.flag);
    }
    for (path, flags) in &help.flags {
        for flag in flags {
            if flag.starts_with("--")
                && flag != "--help"
                && flag != "--version"
                && !documented.contains(flag.as_str())
            {
                errors.push(format!(
                    "`fireplot {}--help` prints {flag}, which neither README.md nor docs/*.md mentions as a fireplot flag",
                    path.iter().map(|p| format!("{p} ")).collect::<String>()
                ));
            }
        }
    }
    errors.dedup();
    assert!(
        errors.is_empty(),
        "the docs and --help disagree:\n{}",
        errors.join("\n")
    );
    assert!(
        mentions.len() > 100,
        "the docs were read ({} flags found)",
        mentions.len()
    );
}

/// A heading's anchor as GitHub makes it: lower case, spaces to `-`,
/// punctuation other than `-` and `_` dropped.
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

fn anchors(text: &str) -> BTreeSet<String> {
    let mut in_code = false;
    let mut out = BTreeSet::new();
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            in_code = !in_code;
        } else if !in_code && line.starts_with('#') {
            out.insert(anchor(line.trim_start_matches('#')));
        }
    }
    out
}

#[test]
fn relative_links_between_the_pages_resolve() {
    let root = docs_root();
    let pages = pages();
    let mut errors = Vec::new();
    for (name, text) in &pages {
        let dir = Path::new(name).parent().unwrap_or(Path::new(""));
        for (k, piece) in text.split("](").enumerate().skip(1) {
            let Some(target) = piece.split(')').next() else {
                continue;
            };
            if target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            let line = 1 + text
                .split("](")
                .take(k)
                .map(|p| p.matches('\n').count())
                .sum::<usize>();
            let (file, frag) = target.split_once('#').unwrap_or((target, ""));
            let path = if file.is_empty() {
                PathBuf::from(name)
            } else {
                dir.join(file)
            };
            let full = root.join(&path);
            if !full.exists() {
                errors.push(format!("{name}:{line}: the link to {target} finds no file"));
                continue;
            }
            if !frag.is_empty() {
                let text = std::fs::read_to_string(&full).unwrap_or_default();
                if !anchors(&text).contains(frag) {
                    errors.push(format!(
                        "{name}:{line}: the link to {target}: {} has no heading #{frag}",
                        path.display()
                    ));
                }
            }
        }
    }
    assert!(errors.is_empty(), "broken links:\n{}", errors.join("\n"));
}
