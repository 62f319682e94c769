//! Reading the files: MMDBs, CSV range tables and lists, with what each
//! gave (ranges, lines skipped, memory).

use std::{
    fmt,
    net::IpAddr,
    path::{Path, PathBuf},
    sync::Arc,
    time::SystemTime,
};

use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::{lists, ranges::IpTable};

/// Errors of reading one file.
#[derive(Debug, Error)]
pub enum LoadError {
    /// The file could not be read.
    #[error("cannot read {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// It looks like an MMDB but does not read as one.
    #[error("{} is not a readable MMDB", path.display())]
    Mmdb {
        path: PathBuf,
        #[source]
        source: maxminddb::MaxMindDbError,
    },
    /// Not one line of it is an entry.
    #[error("{option} {}: no entries in it ({bad_lines} line(s) not understood)", path.display())]
    Empty {
        option: String,
        path: PathBuf,
        bad_lines: u64,
    },
}

/// What one file is for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Role {
    Geo,
    Asn,
    Tag(String),
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Role::Geo => write!(f, "--geoip"),
            Role::Asn => write!(f, "--asn"),
            Role::Tag(n) => write!(f, "--tag {n}"),
        }
    }
}

/// The contents of one file.
pub(super) enum Loaded {
    Mmdb(maxminddb::Reader<Vec<u8>>),
    Country(IpTable<[u8; 2]>),
    Asn {
        table: IpTable<u32>,
        orgs: FxHashMap<u32, String>,
    },
    List(IpTable<()>),
}

/// The fields fireplot reads from an MMDB record, in both schemas.
#[derive(Deserialize, Default)]
pub(super) struct MmdbRecord {
    pub country_code: Option<String>,
    pub country: Option<Iso>,
    pub registered_country: Option<Iso>,
    pub autonomous_system_number: Option<u32>,
    pub autonomous_system_organization: Option<String>,
}

#[derive(Deserialize, Default)]
pub(super) struct Iso {
    pub iso_code: Option<String>,
}

/// A real country code: two letters, not DB-IP's/MaxMind's "ZZ"
/// (unknown) or "EU"/"AP" (regions).
pub(super) fn country(code: &str) -> Option<String> {
    let c = code.trim().to_ascii_uppercase();
    let ok = c.len() == 2 && c.chars().all(|x| x.is_ascii_uppercase());
    (ok && !matches!(c.as_str(), "ZZ" | "EU" | "AP" | "XX")).then_some(c)
}

/// One file as loaded, with what is needed to notice a change.
pub(super) struct File {
    pub role: Role,
    pub path: PathBuf,
    pub stamp: Option<(SystemTime, u64)>,
    pub data: Arc<Loaded>,
    pub stats: FileStats,
}

/// What a file gave, for summaries and `--version`-style reports.
#[derive(Clone, Debug, Default, Serialize)]
pub struct FileStats {
    pub option: String,
    pub path: PathBuf,
    /// "mmdb", "csv" or "list".
    pub format: String,
    /// Ranges in the compiled table (0 for an MMDB).
    pub ranges: usize,
    /// Lines that were not entries.
    pub bad_lines: u64,
    /// Bytes the loaded table or MMDB holds in memory.
    pub bytes: usize,
    pub reloads: u64,
}

pub(super) fn stamp(path: &Path) -> Option<(SystemTime, u64)> {
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len()))
}

fn is_mmdb(bytes: &[u8]) -> bool {
    const MARK: &[u8] = b"\xab\xcd\xefMaxMind.com";
    let tail = &bytes[bytes.len().saturating_sub(128 * 1024)..];
    tail.windows(MARK.len()).any(|w| w == MARK)
}

pub(super) fn load(role: &Role, path: &Path) -> Result<(Loaded, FileStats), LoadError> {
    let bytes = std::fs::read(path).map_err(|source| LoadError::Read {
        path: path.into(),
        source,
    })?;
    let mut stats = FileStats {
        option: role.to_string(),
        path: path.into(),
        ..FileStats::default()
    };
    if !matches!(role, Role::Tag(_)) && is_mmdb(&bytes) {
        stats.format = "mmdb".into();
        stats.bytes = bytes.len();
        let r = maxminddb::Reader::from_source(bytes).map_err(|source| LoadError::Mmdb {
            path: path.into(),
            source,
        })?;
        return Ok((Loaded::Mmdb(r), stats));
    }
    let text = String::from_utf8_lossy(&bytes);
    let loaded = match role {
        Role::Tag(_) => Loaded::List(compile(
            role,
            path,
            &mut stats,
            "list",
            lists::parse_list(&text),
        )),
        Role::Geo => {
            // Any two letters (ZZ too: a range known to be unassigned is
            // not a bad line); the lookup keeps only real countries.
            let p = lists::parse_csv(&text, |f| {
                let c = f.first()?.trim().to_ascii_uppercase();
                let b = c.as_bytes();
                (b.len() == 2 && b.iter().all(u8::is_ascii_uppercase)).then_some([b[0], b[1]])
            });
            Loaded::Country(compile(role, path, &mut stats, "csv", p))
        }
        Role::Asn => {
            let mut orgs: FxHashMap<u32, String> = FxHashMap::default();
            let p = lists::parse_csv(&text, |f| {
                let asn = f
                    .first()?
                    .trim()
                    .trim_start_matches("AS")
                    .parse::<u32>()
                    .ok()?;
                Some((asn, f.get(1).map(|o| o.trim().to_string())))
            });
            let p = lists::Parsed {
                ranges: p
                    .ranges
                    .into_iter()
                    .map(|(a, b, (asn, org))| {
                        if let Some(o) = org.filter(|o| !o.is_empty()) {
                            orgs.entry(asn).or_insert(o);
                        }
                        (a, b, asn)
                    })
                    .collect(),
                bad_lines: p.bad_lines,
                first_bad: p.first_bad,
            };
            let table = compile(role, path, &mut stats, "csv", p);
            stats.bytes += orgs.values().map(|o| o.len() + 32).sum::<usize>();
            Loaded::Asn { table, orgs }
        }
    };
    if stats.ranges == 0 {
        return Err(LoadError::Empty {
            option: role.to_string(),
            path: path.into(),
            bad_lines: stats.bad_lines,
        });
    }
    Ok((loaded, stats))
}

/// Says which lines of a file were not entries, compiles its ranges and
/// notes what it gave.
fn compile<V: Clone + PartialEq>(
    role: &Role,
    path: &Path,
    stats: &mut FileStats,
    format: &str,
    p: lists::Parsed<V>,
) -> IpTable<V> {
    if let Some((n, line)) = &p.first_bad {
        log::warn!(
            "{role} {}: {} line(s) are not entries and were skipped (first, line {n}: `{line}`)",
            path.display(),
            p.bad_lines
        );
    }
    stats.format = format.into();
    stats.bad_lines = p.bad_lines;
    let t = IpTable::build(p.ranges);
    stats.ranges = t.len();
    stats.bytes = t.bytes();
    t
}

pub(super) fn mmdb(r: &maxminddb::Reader<Vec<u8>>, a: IpAddr) -> MmdbRecord {
    r.lookup(a)
        .ok()
        .and_then(|l| l.decode::<MmdbRecord>().ok().flatten())
        .unwrap_or_default()
}
