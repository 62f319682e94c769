//! Connecting to NATS JetStream: the options every fleet command shares
//! (credentials and TLS as NATS clients usually offer them) and the
//! stream the sensors write and the collectors read.

use std::{path::PathBuf, time::Duration};

use anyhow::{Context, Result};
use async_nats::jetstream::{self, stream};
use clap::Args;

/// The JetStream stream of the fleet: every sensor's subjects.
pub const SUBJECTS: &str = "fireplot.>";

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

fn read_secret(path: &PathBuf, what: &str) -> Result<String> {
    let s = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the {what} file `{}`", path.display()))?;
    let s = s.trim().to_string();
    if s.is_empty() {
        anyhow::bail!("the {what} file `{}` is empty", path.display());
    }
    Ok(s)
}

impl NatsArgs {
    /// Client options; `background` connects in the background (a sensor
    /// starts, and spools, whether the broker is up or not).
    pub async fn options(
        &self,
        name: &str,
        background: bool,
    ) -> Result<async_nats::ConnectOptions> {
        let mut o = async_nats::ConnectOptions::new()
            .name(name)
            .connection_timeout(Duration::from_secs(5))
            .max_reconnects(None)
            .event_callback(|e| async move {
                match e {
                    async_nats::Event::Connected => log::info!("NATS: connected"),
                    async_nats::Event::Disconnected => log::warn!("NATS: disconnected"),
                    other => log::debug!("NATS: {other}"),
                }
            });
        if background {
            o = o.retry_on_initial_connect();
        }
        if let Some(c) = &self.nats_creds {
            o = o
                .credentials_file(c)
                .await
                .with_context(|| format!("cannot read the NATS credentials `{}`", c.display()))?;
        }
        if let (Some(u), Some(p)) = (&self.nats_user, &self.nats_password_file) {
            o = o.user_and_password(u.clone(), read_secret(p, "NATS password")?);
        }
        if let Some(t) = &self.nats_token_file {
            o = o.token(read_secret(t, "NATS token")?);
        }
        if let Some(ca) = &self.nats_tls_ca {
            if !ca.exists() {
                anyhow::bail!("the CA certificate `{}` does not exist", ca.display());
            }
            o = o.add_root_certificates(ca.clone()).require_tls(true);
        }
        if let (Some(c), Some(k)) = (&self.nats_tls_cert, &self.nats_tls_key) {
            for f in [c, k] {
                if !f.exists() {
                    anyhow::bail!("`{}` does not exist", f.display());
                }
            }
            o = o.add_client_certificate(c.clone(), k.clone());
        }
        if self.nats_require_tls {
            o = o.require_tls(true);
        }
        Ok(o)
    }
}

/// Creates the stream when it is missing: file storage, subjects
/// `fireplot.>`, a two-minute window in which a batch sent twice (its
/// `Nats-Msg-Id` is the sensor and its first sequence number) is kept once.
pub async fn ensure_stream(js: &jetstream::Context, name: &str) -> Result<stream::Stream> {
    js.get_or_create_stream(stream::Config {
        name: name.to_string(),
        subjects: vec![SUBJECTS.to_string()],
        storage: stream::StorageType::File,
        duplicate_window: Duration::from_secs(120),
        ..Default::default()
    })
    .await
    .with_context(|| {
        format!(
            "cannot find or create the JetStream stream `{name}` (is the server started with -js?)"
        )
    })
}

/// A NATS URL, checked before anything starts: `nats://host:port`,
/// `tls://host:port`, or a comma-separated list of them.
pub fn check_url(url: &str) -> Result<(), String> {
    for part in url.split(',') {
        let part = part.trim();
        let rest = ["nats://", "tls://", "ws://", "wss://"]
            .iter()
            .find_map(|p| part.strip_prefix(p))
            .unwrap_or(part);
        let hostport = rest.rsplit('@').next().unwrap_or(rest);
        if hostport.is_empty() || hostport.contains('/') || hostport.contains(' ') {
            return Err(format!(
                "`{part}` is not a NATS server address (nats://HOST:PORT, tls://HOST:PORT; several separated by commas)"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn urls_are_checked() {
        for ok in [
            "nats://127.0.0.1:4222",
            "tls://broker:4222",
            "nats://a:1,nats://b:2",
            "localhost:4222",
        ] {
            assert!(super::check_url(ok).is_ok(), "{ok}");
        }
        for bad in ["", "nats://", "nats://a b:1", "http://x/y"] {
            assert!(super::check_url(bad).is_err(), "{bad}");
        }
    }
}
