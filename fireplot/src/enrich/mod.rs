//! Who a source is, offline: its country, its network (ASN and
//! organisation) and the lists it is on (tags such as `research_scanner`
//! or `blocklist`), from files given on the command line. Nothing is
//! fetched at run time.
//!
//! - `--geoip FILE`: an MMDB with a country (MaxMind GeoLite2/GeoIP2
//!   Country or City: `country.iso_code`; DB-IP and ip-location-db's
//!   `*-country-mmdb`: `country_code`), or a CSV of `first,last,CC`.
//! - `--asn FILE`: an MMDB with `autonomous_system_number` and
//!   `autonomous_system_organization` (GeoLite2-ASN, ip-location-db's
//!   `asn-mmdb`), or a CSV of `first,last,ASN,organisation`
//!   (ip-location-db's `asn-ipv4.csv`/`asn-ipv6.csv`), compiled once into
//!   a sorted range table ([`ranges`]).
//! - `--tag NAME=FILE`: a list of addresses, CIDRs and ranges in the
//!   common block-list formats ([`lists`]).
//!
//! Each option can be given more than once (the IPv4 and IPv6 halves of a
//! data set); the first file that knows an address answers. Files are
//! checked for changes every few seconds by whoever holds the
//! [`Enricher`] and re-read in place: a file that no longer reads keeps
//! its last good contents and says why in the log. Lookups are cached
//! per address.

pub mod lists;
pub mod ranges;

use std::{
    fmt,
    net::IpAddr,
    path::{Path, PathBuf},
    str::FromStr,
    sync::{Arc, Mutex, RwLock},
    time::{Duration, Instant, SystemTime},
};

use anyhow::{bail, Context as _, Result};
use clap::Args;
use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};

use ranges::IpTable;

const HEADING: &str = "Enrichment (offline files; nothing is downloaded)";

/// The enrichment options (`run`, `replay`, `ingest`, `detect`, `top`).
#[derive(Args, Debug, Clone, Default)]
pub struct EnrichArgs {
    /// Country of each source, from an MMDB (MaxMind GeoLite2/GeoIP2
    /// Country or City, DB-IP, ip-location-db's dbip-country-mmdb) or a CSV
    /// of first,last,CC ranges. Repeatable; re-read when it changes.
    #[arg(long, value_name = "FILE", help_heading = HEADING)]
    pub geoip: Vec<PathBuf>,

    /// ASN and organisation of each source, from an MMDB (GeoLite2-ASN,
    /// ip-location-db's asn-mmdb) or a CSV of first,last,ASN,org ranges
    /// (ip-location-db's asn-ipv4.csv and asn-ipv6.csv: give both).
    /// Repeatable; re-read when it changes.
    #[arg(long, value_name = "FILE", help_heading = HEADING)]
    pub asn: Vec<PathBuf>,

    /// Tag sources listed in FILE as NAME (letters, digits, _ and -), e.g.
    /// --tag research_scanner=/etc/fireplot/scanners.txt --tag
    /// blocklist=/var/lib/fireplot/drop.txt. One address, CIDR or range
    /// per line; # and ; start comments; FireHOL, Spamhaus DROP, DShield
    /// and plain ip,comment lists read as they are. Repeatable; re-read
    /// when it changes.
    #[arg(long = "tag", value_name = "NAME=FILE", help_heading = HEADING)]
    pub tags: Vec<TagSpec>,
}

impl EnrichArgs {
    pub fn any(&self) -> bool {
        !self.geoip.is_empty() || !self.asn.is_empty() || !self.tags.is_empty()
    }

    /// The enricher for these options, or None when none was given.
    /// Every file is read now: one that cannot be read is an error.
    pub fn open(&self) -> Result<Option<Arc<Enricher>>> {
        if !self.any() {
            return Ok(None);
        }
        Enricher::open(self).map(|e| Some(Arc::new(e)))
    }
}

/// `--tag NAME=FILE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagSpec {
    pub name: String,
    pub path: PathBuf,
}

impl FromStr for TagSpec {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<TagSpec, String> {
        let Some((name, path)) = s.split_once('=') else {
            return Err(format!(
                "`{s}`: expected NAME=FILE, e.g. research_scanner=/etc/fireplot/scanners.txt"
            ));
        };
        let ok = !name.is_empty()
            && name.len() <= 32
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if !ok {
            return Err(format!(
                "tag name `{name}`: use 1 to 32 letters, digits, _ or -"
            ));
        }
        if path.is_empty() {
            return Err(format!("tag `{name}`: no file after ="));
        }
        Ok(TagSpec {
            name: name.into(),
            path: path.into(),
        })
    }
}

impl fmt::Display for TagSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}", self.name, self.path.display())
    }
}

/// What is known of one address. Empty when nothing is.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Origin {
    /// ISO 3166-1 alpha-2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub asn: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub as_org: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
}

impl Origin {
    pub fn is_empty(&self) -> bool {
        self.country.is_none() && self.asn.is_none() && self.tags.is_empty()
    }

    /// "AS64496 Example Org" (or "AS64496"), if the ASN is known.
    pub fn as_label(&self) -> Option<String> {
        self.asn.map(|a| match &self.as_org {
            Some(o) => format!("AS{a} {o}"),
            None => format!("AS{a}"),
        })
    }
}

/// What one file is for.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Role {
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
enum Loaded {
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
struct MmdbRecord {
    country_code: Option<String>,
    country: Option<Iso>,
    registered_country: Option<Iso>,
    autonomous_system_number: Option<u32>,
    autonomous_system_organization: Option<String>,
}

#[derive(Deserialize, Default)]
struct Iso {
    iso_code: Option<String>,
}

/// A real country code: two letters, not DB-IP's/MaxMind's "ZZ"
/// (unknown) or "EU"/"AP" (regions).
fn country(code: &str) -> Option<String> {
    let c = code.trim().to_ascii_uppercase();
    let ok = c.len() == 2 && c.chars().all(|x| x.is_ascii_uppercase());
    (ok && !matches!(c.as_str(), "ZZ" | "EU" | "AP" | "XX")).then_some(c)
}

/// One file as loaded, with what is needed to notice a change.
struct File {
    role: Role,
    path: PathBuf,
    stamp: Option<(SystemTime, u64)>,
    data: Arc<Loaded>,
    stats: FileStats,
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

fn stamp(path: &Path) -> Option<(SystemTime, u64)> {
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len()))
}

fn is_mmdb(bytes: &[u8]) -> bool {
    const MARK: &[u8] = b"\xab\xcd\xefMaxMind.com";
    let tail = &bytes[bytes.len().saturating_sub(128 * 1024)..];
    tail.windows(MARK.len()).any(|w| w == MARK)
}

fn load(role: &Role, path: &Path) -> Result<(Loaded, FileStats)> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut stats = FileStats {
        option: role.to_string(),
        path: path.into(),
        ..FileStats::default()
    };
    if !matches!(role, Role::Tag(_)) && is_mmdb(&bytes) {
        stats.format = "mmdb".into();
        stats.bytes = bytes.len();
        let r = maxminddb::Reader::from_source(bytes)
            .with_context(|| format!("{} is not a readable MMDB", path.display()))?;
        return Ok((Loaded::Mmdb(r), stats));
    }
    let text = String::from_utf8_lossy(&bytes);
    let report = |bad: u64, first: &Option<(u64, String)>| {
        if let Some((n, line)) = first {
            log::warn!(
                "{role} {}: {bad} line(s) are not entries and were skipped (first, line {n}: `{line}`)",
                path.display()
            );
        }
    };
    let loaded = match role {
        Role::Tag(_) => {
            let p = lists::parse_list(&text);
            report(p.bad_lines, &p.first_bad);
            stats.format = "list".into();
            stats.bad_lines = p.bad_lines;
            let t = IpTable::build(p.ranges);
            stats.ranges = t.len();
            stats.bytes = t.bytes();
            Loaded::List(t)
        }
        Role::Geo => {
            // Any two letters (ZZ too: a range known to be unassigned is
            // not a bad line); the lookup keeps only real countries.
            let p = lists::parse_csv(&text, |f| {
                let c = f.first()?.trim().to_ascii_uppercase();
                let b = c.as_bytes();
                (b.len() == 2 && b.iter().all(u8::is_ascii_uppercase)).then_some([b[0], b[1]])
            });
            report(p.bad_lines, &p.first_bad);
            stats.format = "csv".into();
            stats.bad_lines = p.bad_lines;
            let t = IpTable::build(p.ranges);
            stats.ranges = t.len();
            stats.bytes = t.bytes();
            Loaded::Country(t)
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
            report(p.bad_lines, &p.first_bad);
            let ranges = p
                .ranges
                .into_iter()
                .map(|(a, b, (asn, org))| {
                    if let Some(o) = org.filter(|o| !o.is_empty()) {
                        orgs.entry(asn).or_insert(o);
                    }
                    (a, b, asn)
                })
                .collect();
            stats.format = "csv".into();
            stats.bad_lines = p.bad_lines;
            let t = IpTable::build(ranges);
            stats.ranges = t.len();
            stats.bytes = t.bytes() + orgs.values().map(|o| o.len() + 32).sum::<usize>();
            Loaded::Asn { table: t, orgs }
        }
    };
    if stats.ranges == 0 {
        bail!(
            "{role} {}: no entries in it ({} line(s) not understood)",
            path.display(),
            stats.bad_lines
        );
    }
    Ok((loaded, stats))
}

/// How often files are checked for changes.
const CHECK_EVERY: Duration = Duration::from_secs(5);
/// Addresses remembered before the cache starts over.
const CACHE: usize = 200_000;

/// The loaded files and a cache of answers; shared by every thread that
/// enriches.
pub struct Enricher {
    files: RwLock<Vec<File>>,
    /// Bumped whenever a file is re-read.
    generation: std::sync::atomic::AtomicU64,
    cache: Mutex<FxHashMap<IpAddr, Arc<Origin>>>,
    last_check: Mutex<Instant>,
}

impl Enricher {
    /// Reads every file named by `args`.
    pub fn open(args: &EnrichArgs) -> Result<Enricher> {
        let mut files = Vec::new();
        let roles = args
            .geoip
            .iter()
            .map(|p| (Role::Geo, p.clone()))
            .chain(args.asn.iter().map(|p| (Role::Asn, p.clone())))
            .chain(
                args.tags
                    .iter()
                    .map(|t| (Role::Tag(t.name.clone()), t.path.clone())),
            );
        for (role, path) in roles {
            let stamp = stamp(&path);
            let (data, stats) = load(&role, &path).with_context(|| format!("{role}"))?;
            files.push(File {
                role,
                path,
                stamp,
                data: Arc::new(data),
                stats,
            });
        }
        Ok(Enricher {
            files: RwLock::new(files),
            generation: Default::default(),
            cache: Mutex::new(FxHashMap::default()),
            last_check: Mutex::new(Instant::now()),
        })
    }

    /// Re-reads the files that changed on disk (checked at most every few
    /// seconds; `force` checks now). Returns how many were re-read. A
    /// file that no longer reads keeps its old contents; the log says why.
    pub fn reload_changed(&self, force: bool) -> usize {
        {
            let mut last = self.last_check.lock().expect("not poisoned");
            if !force && last.elapsed() < CHECK_EVERY {
                return 0;
            }
            *last = Instant::now();
        }
        let changed: Vec<usize> = {
            let files = self.files.read().expect("not poisoned");
            files
                .iter()
                .enumerate()
                .filter(|(_, f)| stamp(&f.path) != f.stamp)
                .map(|(i, _)| i)
                .collect()
        };
        let mut n = 0;
        for i in changed {
            let (role, path) = {
                let files = self.files.read().expect("not poisoned");
                (files[i].role.clone(), files[i].path.clone())
            };
            let st = stamp(&path);
            match load(&role, &path) {
                Ok((data, mut stats)) => {
                    let mut files = self.files.write().expect("not poisoned");
                    stats.reloads = files[i].stats.reloads + 1;
                    log::info!(
                        "{role} {}: re-read ({} ranges, {} lines skipped)",
                        path.display(),
                        stats.ranges,
                        stats.bad_lines
                    );
                    files[i].data = Arc::new(data);
                    files[i].stats = stats;
                    files[i].stamp = st;
                    n += 1;
                }
                Err(e) => {
                    log::error!(
                        "{role} {}: changed but cannot be re-read ({}); keeping what was loaded before",
                        path.display(),
                        crate::error_chain(e.as_ref())
                    );
                    // Not retried until it changes again.
                    self.files.write().expect("not poisoned")[i].stamp = st;
                }
            }
        }
        if n > 0 {
            self.cache.lock().expect("not poisoned").clear();
            self.generation
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        n
    }

    /// How many times files were re-read: what was looked up before a
    /// change may be stale.
    pub fn generation(&self) -> u64 {
        self.generation.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// What the files say about `a` (cached).
    pub fn lookup(&self, a: IpAddr) -> Arc<Origin> {
        if let Some(o) = self.cache.lock().expect("not poisoned").get(&a) {
            return o.clone();
        }
        let o = Arc::new(self.lookup_uncached(a));
        let mut cache = self.cache.lock().expect("not poisoned");
        if cache.len() >= CACHE {
            cache.clear();
        }
        cache.insert(a, o.clone());
        o
    }

    /// [`Enricher::lookup`] without the cache (for the bench).
    pub fn lookup_uncached(&self, a: IpAddr) -> Origin {
        let files = self.files.read().expect("not poisoned");
        let mut o = Origin::default();
        for f in files.iter() {
            match (&f.role, f.data.as_ref()) {
                (Role::Geo, Loaded::Mmdb(r)) if o.country.is_none() => {
                    let rec = mmdb(r, a);
                    o.country = rec
                        .country_code
                        .as_deref()
                        .or(rec.country.as_ref().and_then(|c| c.iso_code.as_deref()))
                        .or(rec
                            .registered_country
                            .as_ref()
                            .and_then(|c| c.iso_code.as_deref()))
                        .and_then(country);
                }
                (Role::Geo, Loaded::Country(t)) if o.country.is_none() => {
                    o.country = t.get(a).and_then(|c| country(&String::from_utf8_lossy(c)));
                }
                (Role::Asn, Loaded::Mmdb(r)) if o.asn.is_none() => {
                    let rec = mmdb(r, a);
                    o.asn = rec.autonomous_system_number.filter(|n| *n != 0);
                    if o.asn.is_some() {
                        o.as_org = rec.autonomous_system_organization;
                    }
                }
                (Role::Asn, Loaded::Asn { table, orgs }) if o.asn.is_none() => {
                    if let Some(&n) = table.get(a).filter(|n| **n != 0) {
                        o.asn = Some(n);
                        o.as_org = orgs.get(&n).cloned();
                    }
                }
                (Role::Tag(name), Loaded::List(t))
                    if t.get(a).is_some() && !o.tags.contains(name) =>
                {
                    o.tags.push(name.clone());
                }
                _ => {}
            }
        }
        o
    }

    /// The tag names, in the order given.
    pub fn tag_names(&self) -> Vec<String> {
        let mut v: Vec<String> = Vec::new();
        for f in self.files.read().expect("not poisoned").iter() {
            if let Role::Tag(n) = &f.role {
                if !v.contains(n) {
                    v.push(n.clone());
                }
            }
        }
        v
    }

    /// What each file gave.
    pub fn stats(&self) -> Vec<FileStats> {
        self.files
            .read()
            .expect("not poisoned")
            .iter()
            .map(|f| f.stats.clone())
            .collect()
    }
}

fn mmdb(r: &maxminddb::Reader<Vec<u8>>, a: IpAddr) -> MmdbRecord {
    r.lookup(a)
        .ok()
        .and_then(|l| l.decode::<MmdbRecord>().ok().flatten())
        .unwrap_or_default()
}

/// The data sets `cargo xtask setup` fetches, and their attribution
/// (CC BY 4.0 asks for it wherever the data is used or shown).
pub const ATTRIBUTION: &str = "Country and ASN test data, when used: \
IP to Country Lite and IP to ASN Lite by DB-IP (https://db-ip.com), and \
IP to AS Number by Route Views (https://www.routeviews.org), CC BY 4.0, \
as packaged by ip-location-db (https://github.com/sapics/ip-location-db).";

#[cfg(test)]
mod tests;
