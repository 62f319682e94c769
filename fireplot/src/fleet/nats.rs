//! Connecting to NATS JetStream: the options every fleet command shares
//! (credentials and TLS as NATS clients usually offer them) and the
//! stream the sensors write and the collectors read.

use std::{path::PathBuf, time::Duration};

use async_nats::jetstream::{self, stream};
use thiserror::Error;

/// The JetStream stream of the fleet: every sensor's subjects.
pub const SUBJECTS: &str = "fireplot.>";

/// How to connect: credentials and TLS (the options of `run --publish`
/// and `collect`, `cmd::args::NatsArgs`).
#[derive(Debug, Clone, Default)]
pub struct NatsOptions {
    /// A NATS credentials file (JWT and NKey seed, `.creds`).
    pub creds: Option<PathBuf>,
    /// User name and the file holding its password.
    pub user: Option<(String, PathBuf)>,
    /// File holding a token.
    pub token_file: Option<PathBuf>,
    /// CA certificate (PEM) to verify the server with; implies TLS.
    pub tls_ca: Option<PathBuf>,
    /// Client certificate and key (PEM) for mutual TLS.
    pub tls_client: Option<(PathBuf, PathBuf)>,
    /// Refuse a connection without TLS.
    pub require_tls: bool,
    /// The JetStream stream (created when missing, subjects `fireplot.>`).
    pub stream: String,
}

/// Errors of connecting to NATS JetStream.
#[derive(Debug, Error)]
pub enum NatsError {
    /// A URL that is not a server address.
    #[error("`{part}` is not a NATS server address (nats://HOST:PORT, tls://HOST:PORT; several separated by commas)")]
    BadUrl { part: String },
    /// A password or token file could not be read.
    #[error("cannot read the {what} file `{}`", path.display())]
    ReadSecret {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A password or token file is empty.
    #[error("the {what} file `{}` is empty", path.display())]
    EmptySecret { what: &'static str, path: PathBuf },
    /// The credentials file could not be read.
    #[error("cannot read the NATS credentials `{}`", path.display())]
    Credentials {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The CA certificate is not there.
    #[error("the CA certificate `{}` does not exist", path.display())]
    NoCaCertificate { path: PathBuf },
    /// The client certificate or key is not there.
    #[error("`{}` does not exist", path.display())]
    NoClientFile { path: PathBuf },
    /// The stream could not be found or created.
    #[error(
        "cannot find or create the JetStream stream `{name}` (is the server started with -js?)"
    )]
    Stream {
        name: String,
        #[source]
        source: async_nats::jetstream::context::CreateStreamError,
    },
}

fn read_secret(path: &PathBuf, what: &'static str) -> Result<String, NatsError> {
    let s = std::fs::read_to_string(path).map_err(|source| NatsError::ReadSecret {
        what,
        path: path.clone(),
        source,
    })?;
    let s = s.trim().to_string();
    if s.is_empty() {
        return Err(NatsError::EmptySecret {
            what,
            path: path.clone(),
        });
    }
    Ok(s)
}

impl NatsOptions {
    /// Client options; `background` connects in the background (a sensor
    /// starts, and spools, whether the broker is up or not).
    pub async fn options(
        &self,
        name: &str,
        background: bool,
    ) -> Result<async_nats::ConnectOptions, NatsError> {
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
        if let Some(c) = &self.creds {
            o = o
                .credentials_file(c)
                .await
                .map_err(|source| NatsError::Credentials {
                    path: c.clone(),
                    source,
                })?;
        }
        if let Some((u, p)) = &self.user {
            o = o.user_and_password(u.clone(), read_secret(p, "NATS password")?);
        }
        if let Some(t) = &self.token_file {
            o = o.token(read_secret(t, "NATS token")?);
        }
        if let Some(ca) = &self.tls_ca {
            if !ca.exists() {
                return Err(NatsError::NoCaCertificate { path: ca.clone() });
            }
            o = o.add_root_certificates(ca.clone()).require_tls(true);
        }
        if let Some((c, k)) = &self.tls_client {
            for f in [c, k] {
                if !f.exists() {
                    return Err(NatsError::NoClientFile { path: f.clone() });
                }
            }
            o = o.add_client_certificate(c.clone(), k.clone());
        }
        if self.require_tls {
            o = o.require_tls(true);
        }
        Ok(o)
    }
}

/// Creates the stream when it is missing: file storage, subjects
/// `fireplot.>`, a two-minute window in which a batch sent twice (its
/// `Nats-Msg-Id` is the sensor and its first sequence number) is kept once.
pub async fn ensure_stream(
    js: &jetstream::Context,
    name: &str,
) -> Result<stream::Stream, NatsError> {
    js.get_or_create_stream(stream::Config {
        name: name.to_string(),
        subjects: vec![SUBJECTS.to_string()],
        storage: stream::StorageType::File,
        duplicate_window: Duration::from_secs(120),
        ..Default::default()
    })
    .await
    .map_err(|source| NatsError::Stream {
        name: name.to_string(),
        source,
    })
}

/// A NATS URL, checked before anything starts: `nats://host:port`,
/// `tls://host:port`, or a comma-separated list of them.
pub fn check_url(url: &str) -> Result<(), NatsError> {
    for part in url.split(',') {
        let part = part.trim();
        let rest = ["nats://", "tls://", "ws://", "wss://"]
            .iter()
            .find_map(|p| part.strip_prefix(p))
            .unwrap_or(part);
        let hostport = rest.rsplit('@').next().unwrap_or(rest);
        if hostport.is_empty() || hostport.contains('/') || hostport.contains(' ') {
            return Err(NatsError::BadUrl { part: part.into() });
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
