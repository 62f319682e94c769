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
mod load;
mod options;
pub mod ranges;

use std::{
    net::IpAddr,
    sync::{Arc, Mutex, RwLock},
    time::{Duration, Instant},
};

use rustc_hash::FxHashMap;
use thiserror::Error;

/// What the files say of an address (a record's type: events and alerts
/// carry it).
pub use crate::record::Origin;
pub use load::FileStats;
pub use load::LoadError;
use load::{country, load, mmdb, stamp, File, Loaded, Role};
pub use options::{Options, TagSpec, TagSpecError};

/// Errors of enrichment.
#[derive(Debug, Error)]
pub enum EnrichError {
    /// A file named by an option could not be used.
    #[error("{option}")]
    File {
        /// The option and, for a tag, its name (`--tag blocklist`).
        option: String,
        #[source]
        source: LoadError,
    },
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
    /// Reads every file of `args`.
    pub fn open(args: &Options) -> Result<Enricher, EnrichError> {
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
            let (data, stats) = load(&role, &path).map_err(|source| EnrichError::File {
                option: role.to_string(),
                source,
            })?;
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
                        crate::error_chain(&e)
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

/// The data sets `cargo xtask setup` fetches, and their attribution
/// (CC BY 4.0 asks for it wherever the data is used or shown).
pub const ATTRIBUTION: &str = "Country and ASN test data, when used: \
IP to Country Lite and IP to ASN Lite by DB-IP (https://db-ip.com), and \
IP to AS Number by Route Views (https://www.routeviews.org), CC BY 4.0, \
as packaged by ip-location-db (https://github.com/sapics/ip-location-db).";

#[cfg(test)]
mod tests;
