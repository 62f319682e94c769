//! What to enrich with: the files of `--geoip`, `--asn` and `--tag
//! NAME=FILE` (the options themselves are the commands', `cmd::args`).

use std::{fmt, path::PathBuf, str::FromStr, sync::Arc};

use thiserror::Error;

use super::{EnrichError, Enricher};

/// The files to read.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Country of each source: MMDBs or CSVs of first,last,CC ranges.
    pub geoip: Vec<PathBuf>,
    /// ASN and organisation of each source: MMDBs or CSVs of
    /// first,last,ASN,org ranges.
    pub asn: Vec<PathBuf>,
    /// Lists of addresses, CIDRs and ranges, each a tag.
    pub tags: Vec<TagSpec>,
}

impl Options {
    pub fn any(&self) -> bool {
        !self.geoip.is_empty() || !self.asn.is_empty() || !self.tags.is_empty()
    }

    /// The enricher for these files, or None when there are none. Every
    /// file is read now: one that cannot be read is an error.
    pub fn open(&self) -> Result<Option<Arc<Enricher>>, EnrichError> {
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

/// A `NAME=FILE` that is not one.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum TagSpecError {
    /// No `=`.
    #[error("`{spec}`: expected NAME=FILE, e.g. research_scanner=/etc/fireplot/scanners.txt")]
    NoEquals { spec: String },
    /// The name is empty, too long or has other characters.
    #[error("tag name `{name}`: use 1 to 32 letters, digits, _ or -")]
    BadName { name: String },
    /// Nothing after the `=`.
    #[error("tag `{name}`: no file after =")]
    NoFile { name: String },
}

impl FromStr for TagSpec {
    type Err = TagSpecError;
    fn from_str(s: &str) -> Result<TagSpec, TagSpecError> {
        let Some((name, path)) = s.split_once('=') else {
            return Err(TagSpecError::NoEquals { spec: s.into() });
        };
        let ok = !name.is_empty()
            && name.len() <= 32
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if !ok {
            return Err(TagSpecError::BadName { name: name.into() });
        }
        if path.is_empty() {
            return Err(TagSpecError::NoFile { name: name.into() });
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
