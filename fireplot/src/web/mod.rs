//! The web console: `fireplot serve` over a history database, and the same
//! server inside the daemon (`fireplot run --web`).
//!
//! Read-only by construction: every route is a GET, the store is opened
//! read-only per request, and no request names a file. Everything served is
//! compiled into the binary. On any address but loopback a token is
//! required, checked on every request (pages, API, live stream, metrics);
//! it is never logged. Query parameters are parsed and bounded
//! (`query.rs`); heavy queries run at most two at a time and every request
//! but the live stream is cut off after `REQUEST_TIMEOUT`.

mod api;
mod assets;
pub mod metrics;
pub mod query;

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use axum::{
    extract::{Request, State},
    http::{header, HeaderValue, StatusCode},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::get,
    Router,
};
use thiserror::Error;
use tokio::sync::{watch, Semaphore};
use tower_http::{limit::RequestBodyLimitLayer, timeout::TimeoutLayer};

/// Errors of starting and running the console's server.
#[derive(Debug, Error)]
pub enum ServeError {
    /// A non-loopback address without a token.
    #[error("the console's address {listen} is reachable from other machines: give --token or --token-file (or listen on 127.0.0.1 and reach it through an SSH tunnel)")]
    NoToken { listen: SocketAddr },
    /// A token too short or with spaces.
    #[error("the token must be at least 16 characters, without spaces")]
    WeakToken,
    /// The token file could not be read.
    #[error("cannot read token file `{}`", path.display())]
    TokenFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The token file's first line is empty.
    #[error("token file `{}` is empty", path.display())]
    EmptyTokenFile { path: PathBuf },
    /// The private directory plots are rendered in.
    #[error("cannot create `{}`", path.display())]
    Scratch {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The address is taken or not ours.
    #[error("cannot listen on {listen}")]
    Listen {
        listen: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    /// The server stopped on an error.
    #[error("web server failed")]
    Server(#[source] std::io::Error),
}

/// The console's default address: loopback only.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8780";
/// Longest time one request (other than the live stream) may take.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
/// Heavy queries (plots, hovers, tops) running at once.
const HEAVY: usize = 2;
/// Live streams open at once.
const STREAMS: usize = 16;

/// What the server needs to know.
#[derive(Clone, Debug)]
pub struct WebOptions {
    pub listen: SocketAddr,
    pub token: Option<String>,
    /// The history: a SQLite file or the fleet's PostgreSQL.
    pub history: Arc<dyn crate::store::HistorySource>,
    /// What the title calls the input.
    pub label: String,
    /// The history is a file's, loaded once (`serve --events`): nothing
    /// new arrives, so the page is a view of the file, not live.
    pub file_view: bool,
}

impl WebOptions {
    /// Refuses a non-loopback address without a token.
    pub fn check(&self) -> Result<(), ServeError> {
        if !self.listen.ip().is_loopback() && self.token.is_none() {
            return Err(ServeError::NoToken {
                listen: self.listen,
            });
        }
        if let Some(t) = &self.token {
            if t.len() < 16 || t.chars().any(|c| c.is_control() || c.is_whitespace()) {
                return Err(ServeError::WeakToken);
            }
        }
        Ok(())
    }
}

/// Reads a token file: the first line, trimmed.
pub fn read_token_file(path: &Path) -> Result<String, ServeError> {
    let s = std::fs::read_to_string(path).map_err(|source| ServeError::TokenFile {
        path: path.into(),
        source,
    })?;
    let t = s.lines().next().unwrap_or("").trim().to_string();
    if t.is_empty() {
        return Err(ServeError::EmptyTokenFile { path: path.into() });
    }
    Ok(t)
}

/// Answers for ranges that ended a while ago, which cannot change (but for
/// retention): a past day is drawn once, then served from memory.
pub struct Cache<T> {
    items: std::sync::Mutex<std::collections::VecDeque<(String, std::time::Instant, T)>>,
}

impl<T: Clone> Cache<T> {
    /// Entries kept, and how long.
    const ITEMS: usize = 32;
    const AGE: Duration = Duration::from_secs(600);

    fn new() -> Cache<T> {
        Cache {
            items: std::sync::Mutex::new(std::collections::VecDeque::new()),
        }
    }

    pub fn get(&self, key: &str) -> Option<T> {
        let items = self.items.lock().ok()?;
        items
            .iter()
            .find(|(k, at, _)| k == key && at.elapsed() < Self::AGE)
            .map(|(_, _, v)| v.clone())
    }

    pub fn put(&self, key: String, v: T) {
        if let Ok(mut items) = self.items.lock() {
            items.retain(|(k, at, _)| *k != key && at.elapsed() < Self::AGE);
            if items.len() >= Self::ITEMS {
                items.pop_front();
            }
            items.push_back((key, std::time::Instant::now(), v));
        }
    }
}

/// Shared by every request.
pub struct Shared {
    pub history: Arc<dyn crate::store::HistorySource>,
    pub label: String,
    /// A file's history (`WebOptions::file_view`).
    pub file_view: bool,
    pub token: Option<String>,
    /// The daemon's latest counter summary (JSON), when running inside it.
    pub live_summary: Option<watch::Receiver<Option<String>>>,
    /// Where plots are rendered before they are sent (private to this process).
    pub scratch: PathBuf,
    pub heavy: Arc<Semaphore>,
    pub streams: Arc<Semaphore>,
    /// True once the server is stopping: live streams end, so a graceful
    /// shutdown does not wait on browsers that keep them open.
    pub stopping: watch::Receiver<bool>,
    /// Rendered plots (bytes, events) and tops of past ranges.
    pub plots: Cache<(Vec<u8>, u64)>,
    pub tops: Cache<serde_json::Value>,
}

impl Shared {
    pub fn new(
        opts: &WebOptions,
        live_summary: Option<watch::Receiver<Option<String>>>,
        stopping: watch::Receiver<bool>,
    ) -> Result<Shared, ServeError> {
        let scratch = std::env::temp_dir().join(format!(
            "fireplot-web-{}-{:x}",
            std::process::id(),
            crate::record::now_ns()
        ));
        {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new()
                .mode(0o700)
                .create(&scratch)
                .map_err(|source| ServeError::Scratch {
                    path: scratch.clone(),
                    source,
                })?;
        }
        Ok(Shared {
            history: opts.history.clone(),
            label: opts.label.clone(),
            file_view: opts.file_view,
            token: opts.token.clone(),
            live_summary,
            scratch,
            heavy: Arc::new(Semaphore::new(HEAVY)),
            streams: Arc::new(Semaphore::new(STREAMS)),
            stopping,
            plots: Cache::new(),
            tops: Cache::new(),
        })
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.scratch);
    }
}

/// Every route.
pub fn router(state: Arc<Shared>) -> Router {
    let bounded = Router::new()
        .route("/", get(api::page))
        .route("/day/{date}", get(api::day_page))
        .route("/source/{ip}", get(api::source_page))
        .route("/api/view", get(api::view))
        .route("/api/at", get(api::at))
        .route("/api/alerts", get(api::alerts))
        .route("/api/top", get(api::top))
        .route("/api/source", get(api::source))
        .route("/api/stats", get(api::stats))
        .route("/api/rates", get(api::rates))
        .route("/plot.png", get(api::plot_png))
        .route("/plot.svg", get(api::plot_svg))
        .route("/metrics", get(api::metrics))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            REQUEST_TIMEOUT,
        ));
    // Long-lived: no request timeout (they end when the server stops).
    let streams = Router::new()
        .route("/api/live", get(api::live))
        .route("/export/logstalgia", get(api::logstalgia));
    let guarded = bounded
        .merge(streams)
        .route_layer(middleware::from_fn_with_state(state.clone(), guard));
    Router::new()
        .route("/static/app.js", get(assets::app_js))
        .route("/static/app.css", get(assets::app_css))
        .merge(guarded)
        .fallback(|| async { (StatusCode::NOT_FOUND, "no such page\n") })
        .layer(RequestBodyLimitLayer::new(1024))
        .layer(middleware::from_fn(headers))
        .with_state(state)
}

/// Constant-time comparison: how long it takes says nothing about the token.
fn same(a: &[u8], b: &[u8]) -> bool {
    let mut diff = a.len() ^ b.len();
    for i in 0..a.len().max(b.len()) {
        diff |= (a.get(i).copied().unwrap_or(0) ^ b.get(i).copied().unwrap_or(1)) as usize;
    }
    diff == 0
}

/// The token from `Authorization: Bearer` or the `token` parameter (the
/// page passes it on, since an EventSource cannot set headers).
fn token_of(req: &Request) -> Option<String> {
    if let Some(h) = req.headers().get(header::AUTHORIZATION) {
        if let Some(t) = h.to_str().ok().and_then(|v| v.strip_prefix("Bearer ")) {
            return Some(t.trim().to_string());
        }
    }
    let q = req.uri().query()?;
    url_pairs(q)
        .into_iter()
        .find(|(k, _)| k == "token")
        .map(|(_, v)| v)
}

/// `a=1&b=2` decoded.
fn url_pairs(q: &str) -> Vec<(String, String)> {
    serde_urlencoded::from_str::<Vec<(String, String)>>(q).unwrap_or_default()
}

async fn guard(State(s): State<Arc<Shared>>, req: Request, next: Next) -> Response {
    let Some(want) = &s.token else {
        return next.run(req).await;
    };
    match token_of(&req) {
        Some(got) if same(got.as_bytes(), want.as_bytes()) => next.run(req).await,
        _ => (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            "a token is required: add ?token=... to the address or send Authorization: Bearer ...\n",
        )
            .into_response(),
    }
}

/// Standard headers on every response.
async fn headers(req: Request, next: Next) -> Response {
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    let set = |h: &mut axum::http::HeaderMap, k: &'static str, v: &'static str| {
        h.insert(k, HeaderValue::from_static(v));
    };
    set(
        h,
        "content-security-policy",
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; \
         connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
    );
    set(h, "x-content-type-options", "nosniff");
    set(h, "x-frame-options", "DENY");
    set(h, "referrer-policy", "no-referrer");
    set(h, "cross-origin-opener-policy", "same-origin");
    set(h, "cross-origin-resource-policy", "same-origin");
    if !h.contains_key(header::CACHE_CONTROL) {
        set(h, "cache-control", "no-store");
    }
    resp
}

/// Checks the options and takes the address (so that a busy port is an
/// error at start, not later).
pub async fn bind(opts: &WebOptions) -> Result<tokio::net::TcpListener, ServeError> {
    opts.check()?;
    tokio::net::TcpListener::bind(opts.listen)
        .await
        .map_err(|source| ServeError::Listen {
            listen: opts.listen,
            source,
        })
}

/// Serves on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    opts: WebOptions,
    live_summary: Option<watch::Receiver<Option<String>>>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let (stop_tx, stop_rx) = watch::channel(false);
    let state = Arc::new(Shared::new(&opts, live_summary, stop_rx)?);
    let shutdown = async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    };
    let addr = listener.local_addr().unwrap_or(opts.listen);
    log::info!(
        "web console on http://{addr}/{}",
        if opts.token.is_some() {
            " (token required)"
        } else {
            ""
        }
    );
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(ServeError::Server)
}

#[cfg(test)]
pub(crate) mod tests;
