//! Option groups several commands share, each mapped to the plain
//! options of the module it configures: enrichment (`enrich::Options`),
//! NATS connections (`fleet::nats::NatsOptions`) and publishing to the
//! fleet (`fleet::publish::PublishOptions`).

use std::{path::PathBuf, sync::Arc};

use clap::Args;

use crate::{
    enrich::{self, EnrichError, Enricher, TagSpec},
    fleet::{
        nats::NatsOptions,
        publish::{PublishError, PublishOptions, Publisher},
    },
};

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

/// Connection options shared by `run --publish` and `collect`.
#[derive(Args, Debug, Clone, Default)]
pub struct NatsArgs {
    /// A NATS credentials file (JWT and NKey seed, `.creds`).
    #[arg(long, value_name = "FILE")]
    pub nats_creds: Option<PathBuf>,

    /// User name for NATS; its password comes from --nats-password-file.
    #[arg(long, value_name = "USER", requires = "nats_password_file")]
    pub nats_user: Option<String>,

    /// File holding the NATS password (not on the command line, where
    /// `ps` shows it).
    #[arg(long, value_name = "FILE", requires = "nats_user")]
    pub nats_password_file: Option<PathBuf>,

    /// File holding a NATS token.
    #[arg(long, value_name = "FILE")]
    pub nats_token_file: Option<PathBuf>,

    /// CA certificate (PEM) to verify the server with; implies TLS.
    #[arg(long, value_name = "FILE")]
    pub nats_tls_ca: Option<PathBuf>,

    /// Client certificate (PEM) for mutual TLS, with --nats-tls-key.
    #[arg(long, value_name = "FILE", requires = "nats_tls_key")]
    pub nats_tls_cert: Option<PathBuf>,

    /// Client key (PEM) for mutual TLS.
    #[arg(long, value_name = "FILE", requires = "nats_tls_cert")]
    pub nats_tls_key: Option<PathBuf>,

    /// Refuse a connection without TLS (also `tls://` URLs).
    #[arg(long)]
    pub nats_require_tls: bool,

    /// The JetStream stream (created when missing, subjects `fireplot.>`).
    #[arg(long, value_name = "NAME", default_value = "FIREPLOT")]
    pub stream: String,
}

impl NatsArgs {
    pub fn options(&self) -> NatsOptions {
        NatsOptions {
            creds: self.nats_creds.clone(),
            // clap requires the user and the password file together, and
            // the certificate and the key.
            user: self.nats_user.clone().zip(self.nats_password_file.clone()),
            token_file: self.nats_token_file.clone(),
            tls_ca: self.nats_tls_ca.clone(),
            tls_client: self.nats_tls_cert.clone().zip(self.nats_tls_key.clone()),
            require_tls: self.nats_require_tls,
            stream: self.stream.clone(),
        }
    }
}

/// `run|replay|ingest --publish`.
#[derive(Args, Debug, Clone, Default)]
#[command(next_help_heading = "Fleet: publish to NATS JetStream")]
pub struct PublishArgs {
    /// Send events, alerts and counter summaries to this NATS JetStream
    /// server (nats://HOST:PORT, tls://HOST:PORT, several separated by
    /// commas), in batches the broker acknowledges. When it cannot be
    /// reached the sensor keeps running and spools to disk (--spool-dir),
    /// then sends the spool in order when it can. `fireplot collect` takes
    /// them into PostgreSQL.
    #[arg(long, value_name = "URL")]
    pub publish: Option<String>,

    /// This sensor's name in the fleet (letters, digits, - and _; default:
    /// the host name). Part of every subject (`fireplot.NAME.events`) and of
    /// every event's key (NAME, sequence number).
    #[arg(long, value_name = "NAME", requires = "publish")]
    pub sensor: Option<String>,

    /// Where the spool and the sequence number live (default
    /// /var/lib/fireplot/fleet as root, ./fireplot-fleet otherwise).
    #[arg(long, value_name = "DIR", requires = "publish")]
    pub spool_dir: Option<PathBuf>,

    /// The spool's bound; past it new batches are dropped and counted
    /// (what is spooled is kept, in order).
    #[arg(long, value_name = "MIB", default_value_t = 1024)]
    pub spool_max_mib: u64,

    #[command(flatten)]
    pub nats: NatsArgs,
}

impl PublishArgs {
    pub fn options(&self) -> PublishOptions {
        PublishOptions {
            url: self.publish.clone(),
            sensor: self.sensor.clone(),
            spool_dir: self.spool_dir.clone(),
            spool_max_mib: self.spool_max_mib,
            nats: self.nats.options(),
            wait: None,
        }
    }

    /// Checks the options before anything starts.
    pub fn check(&self) -> Result<(), PublishError> {
        self.options().check()
    }

    /// Starts the publisher (None without --publish). Must run inside the
    /// tokio runtime.
    pub async fn start(&self) -> Result<Option<Publisher>, PublishError> {
        self.options().start().await
    }
}

/// How a file input keeps everything it reads (`ingest`, `replay`): its
/// reader waits for the history and the fleet instead of losing events.
#[derive(Args, Debug, Clone)]
pub struct FileInputArgs {
    /// How long a file input waits for a history database that cannot be
    /// written (disk full, locked), or a full fleet spool, before it stops
    /// with an error. Everything stored before is kept (committed).
    #[arg(long, value_name = "DURATION", default_value = "60s")]
    pub store_wait: crate::units::HumanDuration,

    /// Batches the history writer's queue holds before the reader waits
    /// (tests: 1 makes the reader wait on every batch).
    #[arg(long, hide = true, default_value_t = crate::store::writer::FILE_QUEUE_BATCHES)]
    pub store_queue: usize,
}

impl FileInputArgs {
    /// The history writer of a file input.
    pub fn store_writer(&self, path: PathBuf) -> crate::store::writer::StoreWriter {
        crate::store::writer::StoreWriter::waiting(path, self.store_queue, self.store_wait.0)
    }
}

/// `--quiet` of the commands that show progress on long work.
#[derive(Args, Debug, Clone, Default)]
pub struct ProgressArgs {
    /// No progress: neither the bar on a terminal nor the periodic log
    /// line otherwise.
    #[arg(long, short = 'q')]
    pub quiet: bool,
}
