//! The review listener (issue 19): a REST API over the alerts (`/api/v1/...`,
//! [`api`]) and a server-rendered web console (`/`, [`console`]) on their own address,
//! never on the webhook's. TLS from the webhook's certificate machinery, the webhook's
//! connection and header limits ([`crate::http`]), bearer tokens or a console session
//! ([`auth`]), and Kubernetes tokens authorised per namespace ([`kubernetes_auth`]).

pub mod api;
pub mod auth;
pub mod console;
pub mod kubernetes_auth;
pub mod notifications;
mod query;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::Router;
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;

use crate::State;
pub use kubernetes_auth::KubernetesAuthConfig;

/// The default review listen address (loopback).
pub const DEFAULT_REVIEW_LISTEN: &str = "127.0.0.1:8081";
/// Most alerts one page of `GET /api/v1/alerts` may ask for (`limit`), and the default.
pub const MAX_PAGE: usize = 500;
pub const DEFAULT_PAGE: usize = 50;

/// Who may do what on the review listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads alerts and rules, runs what-if evaluations.
    Reader,
    /// A reader who may also acknowledge, resolve and reopen alerts.
    Reviewer,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Reader => "reader",
            Role::Reviewer => "reviewer",
        }
    }
}

/// One API token: its name (recorded as who changed an alert), its role, and the file that
/// holds it (read once at start; never logged).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TokenConfig {
    pub name: String,
    pub role: Role,
    pub token_file: PathBuf,
}

/// `review:` in vulngate.yaml.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct ReviewConfig {
    /// Address of the review listener (HTTPS with the webhook's certificate).
    pub listen: SocketAddr,
    pub tokens: Vec<TokenConfig>,
    /// Most connections open at once on the review listener.
    pub max_connections: usize,
    /// Largest request body (JSON or form), in bytes: 413 beyond it.
    pub max_body_bytes: usize,
    /// How long a console session lasts after its login.
    #[serde(with = "crate::config::duration_str")]
    pub session_ttl: Duration,
    /// Most console sessions at once (the oldest is dropped beyond it).
    pub max_sessions: usize,
    /// Most images one what-if evaluation may name.
    pub max_evaluate_images: usize,
    /// Kubernetes tokens (TokenReview) authorised by SubjectAccessReviews; off by default.
    pub kubernetes: KubernetesAuthConfig,
}

impl Default for ReviewConfig {
    fn default() -> Self {
        ReviewConfig {
            listen: DEFAULT_REVIEW_LISTEN
                .parse()
                .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 8081))),
            tokens: Vec::new(),
            max_connections: 64,
            max_body_bytes: 1 << 20,
            session_ttl: Duration::from_secs(8 * 3600),
            max_sessions: 1024,
            max_evaluate_images: 64,
            kubernetes: KubernetesAuthConfig::default(),
        }
    }
}

impl ReviewConfig {
    /// Checks the values (field, message).
    pub fn validate(&self) -> Result<(), (String, String)> {
        let bad = |f: String, m: &str| Err((format!("review.{f}"), m.to_string()));
        for (i, t) in self.tokens.iter().enumerate() {
            if t.name.trim().is_empty() || t.name.len() > 64 {
                return bad(format!("tokens[{i}].name"), "must be 1 to 64 characters");
            }
            if self.tokens[..i].iter().any(|o| o.name == t.name) {
                return bad(format!("tokens[{i}].name"), "duplicate token name");
            }
        }
        if self.max_connections == 0 || self.max_connections > 65536 {
            return bad("maxConnections".into(), "must be between 1 and 65536");
        }
        if self.max_body_bytes < 1024 || self.max_body_bytes > 64 << 20 {
            return bad(
                "maxBodyBytes".into(),
                "must be between 1024 and 67108864 (64 MiB)",
            );
        }
        if self.session_ttl < Duration::from_secs(60) {
            return bad("sessionTtl".into(), "must be at least 1m");
        }
        if self.max_sessions == 0 || self.max_sessions > 1 << 20 {
            return bad("maxSessions".into(), "must be between 1 and 1048576");
        }
        if self.max_evaluate_images == 0 || self.max_evaluate_images > 1024 {
            return bad("maxEvaluateImages".into(), "must be between 1 and 1024");
        }
        self.kubernetes.validate()
    }
}

/// The review side of a server: its configuration, tokens and sessions, and (for tests) a
/// listener bound in advance.
#[derive(Debug)]
pub(crate) struct Review {
    pub config: ReviewConfig,
    pub auth: auth::Auth,
    /// `review.kubernetes` when enabled.
    pub kubernetes: Option<kubernetes_auth::KubernetesAuth>,
    pub listener: Mutex<Option<TcpListener>>,
}

impl Review {
    /// Reads the token files (and sets up the Kubernetes token reviews when enabled).
    pub fn load(config: &ReviewConfig) -> Result<Review, crate::Error> {
        Ok(Review {
            auth: auth::Auth::load(config)?,
            kubernetes: config
                .kubernetes
                .enabled
                .then(|| kubernetes_auth::KubernetesAuth::new(&config.kubernetes)),
            config: config.clone(),
            listener: Mutex::new(None),
        })
    }
}

/// What the review handlers share.
#[derive(Debug)]
pub(crate) struct Ctx {
    pub state: Arc<State>,
    pub review: Arc<Review>,
}

/// The review listener's routes: the API, its OpenAPI document and the console; JSON 404
/// under `/api/`, and security headers on every answer.
pub(crate) fn router(state: Arc<State>, review: Arc<Review>) -> Router {
    let limit = review.config.max_body_bytes;
    let ctx = Arc::new(Ctx { state, review });
    api::routes()
        .merge(notifications::routes())
        .merge(console::routes())
        .route("/healthz", axum::routing::get(|| async { "ok" }))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(limit))
        .layer(axum::middleware::map_response(security_headers))
        .with_state(ctx)
}

async fn not_found(uri: axum::http::Uri) -> axum::response::Response {
    use axum::response::IntoResponse;
    let e = query::ApiError::not_found(format!(
        "no such page or endpoint: {}",
        query::shorten(uri.path())
    ));
    if uri.path().starts_with("/api/") {
        e.into_response()
    } else {
        (e.status, "Not found. The console is at /.").into_response()
    }
}

/// No framing, no inline script, nothing cached, no referrer (the pages carry alert data
/// and CSRF tokens).
async fn security_headers(mut r: axum::response::Response) -> axum::response::Response {
    use axum::http::{header, HeaderValue};
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
             img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    r
}
