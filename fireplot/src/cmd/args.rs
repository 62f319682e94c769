//! Option groups several commands share, each mapped to the plain
//! options of the module it configures: enrichment (`enrich::Options`).

use std::{path::PathBuf, sync::Arc};

use clap::Args;

use crate::enrich::{self, EnrichError, Enricher, TagSpec};

const ENRICH_HEADING: &str = "Enrichment (offline files; nothing is downloaded)";

/// The enrichment options (`run`, `replay`, `ingest`, `detect`, `top`).
#[derive(Args, Debug, Clone, Default)]
pub struct EnrichArgs {
    /// Country of each source, from an MMDB (MaxMind GeoLite2/GeoIP2
    /// Country or City, DB-IP, ip-location-db's dbip-country-mmdb) or a CSV
    /// of first,last,CC ranges. Repeatable; re-read when it changes.
    #[arg(long, value_name = "FILE", help_heading = ENRICH_HEADING)]
    pub geoip: Vec<PathBuf>,

    /// ASN and organisation of each source, from an MMDB (GeoLite2-ASN,
    /// ip-location-db's asn-mmdb) or a CSV of first,last,ASN,org ranges
    /// (ip-location-db's asn-ipv4.csv and asn-ipv6.csv: give both).
    /// Repeatable; re-read when it changes.
    #[arg(long, value_name = "FILE", help_heading = ENRICH_HEADING)]
    pub asn: Vec<PathBuf>,

    /// Tag sources listed in FILE as NAME (letters, digits, _ and -), e.g.
    /// --tag research_scanner=/etc/fireplot/scanners.txt --tag
    /// blocklist=/var/lib/fireplot/drop.txt. One address, CIDR or range
    /// per line; # and ; start comments; FireHOL, Spamhaus DROP, DShield
    /// and plain ip,comment lists read as they are. Repeatable; re-read
    /// when it changes.
    #[arg(long = "tag", value_name = "NAME=FILE", help_heading = ENRICH_HEADING)]
    pub tags: Vec<TagSpec>,
}

impl EnrichArgs {
    pub fn options(&self) -> enrich::Options {
        enrich::Options {
            geoip: self.geoip.clone(),
            asn: self.asn.clone(),
            tags: self.tags.clone(),
        }
    }

    /// The enricher for these options, or None when none was given.
    /// Every file is read now: one that cannot be read is an error.
    pub fn open(&self) -> Result<Option<Arc<Enricher>>, EnrichError> {
        self.options().open()
    }
}
