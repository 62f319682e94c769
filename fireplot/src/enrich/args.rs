//! The enrichment options: `--geoip`, `--asn`, `--tag NAME=FILE`.

use std::{fmt, path::PathBuf, str::FromStr, sync::Arc};

use anyhow::Result;
use clap::Args;

use super::Enricher;

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
