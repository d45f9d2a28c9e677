//! vulngate's admission webhook: a Kubernetes validating webhook that gates container images
//! on their vulnerability findings (ARCHITECTURE.md sections 1 and 6).
//!
//! ```no_run
//! # async fn f() -> Result<(), vulngate_server::Error> {
//! let server = vulngate_server::Server::from_config(vulngate_server::Config::default())?;
//! let app = server.router(); // drive it in process with tower::ServiceExt::oneshot...
//! server.serve().await // ...or over TLS
//! # }
//! ```
#![forbid(unsafe_code)]

pub mod admission;
pub mod alerts;
pub mod cache;
pub mod catalog;
pub mod cluster;
pub mod config;
mod error;
pub mod logsink;
pub mod metrics;
pub mod rules;
pub mod source;
pub mod tls;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State as AxState};
use axum::http::{header, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

pub use alerts::{
    Alert, AlertAction, AlertBackend, AlertError, AlertFilter, AlertOrigin, AlertStore,
    PostgresBackend, SqliteBackend, StoreUrl,
};
pub use config::{BreakGlassConfig, CacheConfig, Config, FailurePolicy, TlsConfig};
pub use error::{Error, Result};
pub use metrics::Metrics;
pub use rules::ActiveRules;
pub use source::{
    FindingsSource, FoundReport, LocalFindings, RegistrySource, SourceError, SourceLookup,
};
pub use tls::TlsSetup;

use cache::FindingsCache;

/// Shared state of the handlers.
#[derive(Debug)]
pub(crate) struct State {
    pub config: Config,
    pub rules: ActiveRules,
    pub cache: FindingsCache,
    pub alerts: AlertStore,
    pub metrics: Metrics,
    /// The exploitation catalogs (`kev:`, `epss:`), refreshed in the background.
    pub catalogs: Arc<catalog::CatalogStore>,
    /// Kubernetes Events for audit/deny decisions (kubernetes.events; see `with_kubernetes`).
    pub events: Option<cluster::events::EventRecorder>,
    /// Registry credentials from pull secrets (kubernetes.pullSecrets).
    pub pull_secrets: Option<cluster::pull_secrets::PullSecrets>,
    skip: Vec<glob::Pattern>,
    ready: AtomicBool,
}

impl State {
    /// Whether `image` matches a `skipImages` glob (as written or normalised).
    pub fn is_skipped(&self, image: &str) -> bool {
        if self.skip.is_empty() {
            return false;
        }
        let normalized = vulngate_core::ImageRef::parse(image)
            .ok()
            .map(|r| r.normalized());
        self.skip
            .iter()
            .any(|p| p.matches(image) || normalized.as_deref().is_some_and(|n| p.matches(n)))
    }
}

/// The webhook server.
#[derive(Debug, Clone)]
pub struct Server {
    state: Arc<State>,
}

impl Server {
    /// Builds the server from its configuration: rules, findings source (a findings directory
    /// when `findingsDir` is set and `registry` is not; otherwise the registries, with anonymous
    /// access on embedded defaults), alert store per `store` (SQLite in the data directory by
    /// default).
    pub fn from_config(config: Config) -> Result<Server> {
        let source: Arc<dyn FindingsSource> = match (&config.registry, &config.findings_dir) {
            (None, Some(dir)) => Arc::new(LocalFindings::from_dir(dir)?),
            (r, _) => Arc::new(RegistrySource::new(Arc::new(
                vulngate_registry::RegistryClient::new(r.clone().unwrap_or_default())?,
            ))),
        };
        Server::with_source(config, source)
    }

    /// Like [`from_config`](Self::from_config) with the given findings source.
    pub fn with_source(config: Config, source: Arc<dyn FindingsSource>) -> Result<Server> {
        let alerts = AlertStore::open_url(
            &config.store,
            &config.data_dir,
            config.store_password_file.as_deref(),
        )?;
        Server::with_parts(config, source, alerts)
    }

    /// Everything given: the findings source and the alert store.
    pub fn with_parts(
        config: Config,
        source: Arc<dyn FindingsSource>,
        alerts: AlertStore,
    ) -> Result<Server> {
        config
            .validate()
            .map_err(|(field, message)| Error::Config {
                location: field,
                message,
            })?;
        let metrics = Metrics::new();
        let mode = config.kubernetes.as_ref().map(|k| k.rules_from);
        let rules = ActiveRules::load_with_mode(config.rules.as_deref(), mode, metrics.clone())?;
        // With rules from the cluster, not ready (no admission) until they are synced.
        let ready = !matches!(
            mode,
            Some(config::RulesFrom::Cluster | config::RulesFrom::Both)
        );
        let cache = FindingsCache::new(source, &config.cache, metrics.clone());
        let skip = config
            .skip_images
            .iter()
            .map(|g| glob::Pattern::new(g))
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| Error::Config {
                location: "skipImages".into(),
                message: e.to_string(),
            })?;
        let catalogs =
            Arc::new(
                catalog::CatalogStore::load(&config).map_err(|e| Error::Config {
                    location: "kev/epss".into(),
                    message: e.to_string(),
                })?,
            );
        let state = State {
            config,
            rules,
            cache,
            alerts,
            metrics,
            catalogs,
            events: None,
            pull_secrets: None,
            skip,
            ready: AtomicBool::new(ready),
        };
        Ok(Server {
            state: Arc::new(state),
        })
    }

    /// Turns on the Kubernetes integration parts of the webhook that need `client`, as the
    /// `kubernetes` section says: Events (`events`) and pull-secret credentials
    /// (`pullSecrets`). Call right after construction, inside a Tokio runtime (the Event
    /// sender is a task); a server already shared (cloned) is refused.
    pub fn with_kubernetes(mut self, client: kube::Client) -> Result<Server> {
        let Some(state) = Arc::get_mut(&mut self.state) else {
            return Err(Error::Config {
                location: "kubernetes".into(),
                message: "with_kubernetes must be called before the server is shared".into(),
            });
        };
        let Some(k) = state.config.kubernetes.clone() else {
            return Ok(self);
        };
        if k.events {
            state.events = Some(cluster::events::EventRecorder::start(
                client.clone(),
                cluster::events::reporting_instance(),
                state.metrics.clone(),
            ));
        }
        if k.pull_secrets {
            state.pull_secrets = Some(cluster::pull_secrets::PullSecrets::new(
                client,
                k.pull_secrets_ttl,
            ));
        }
        Ok(self)
    }

    pub fn config(&self) -> &Config {
        &self.state.config
    }

    /// The active rules (`reload()` for an immediate reload).
    pub fn rules(&self) -> &ActiveRules {
        &self.state.rules
    }

    pub fn metrics(&self) -> &Metrics {
        &self.state.metrics
    }

    pub fn alerts(&self) -> &AlertStore {
        &self.state.alerts
    }

    /// Whether `/readyz` answers ready (rules loaded, cluster rules synced when configured).
    pub fn is_ready(&self) -> bool {
        self.state.ready.load(Ordering::SeqCst)
    }

    /// Starts the Kubernetes integration on `client`: the SecurityRule watcher (unless
    /// `rulesFrom: files`) and the PolicyReport writer. The tasks stop when the returned
    /// handle is dropped.
    pub fn start_cluster(&self, client: kube::Client) -> cluster::ClusterTasks {
        let mut tasks = Vec::new();
        let k = self.state.config.kubernetes.clone().unwrap_or_default();
        if k.rules_from != config::RulesFrom::Files {
            let state = self.state.clone();
            let watcher =
                cluster::rules::RuleWatcher::new(client.clone(), self.state.rules.clone())
                    .on_rules(Arc::new(move |set| {
                        if !state.ready.swap(true, Ordering::SeqCst) {
                            tracing::info!(
                                rules_version = set.version(),
                                "cluster rules synced; ready"
                            );
                        }
                    }));
            tasks.push(tokio::spawn(watcher.run()));
        }
        let reports: Option<Arc<dyn cluster::ResultSink>> = k
            .policy_reports
            .then(|| Arc::new(cluster::reports::PolicyReports::new(client.clone())) as _);
        let sinks: Vec<Arc<dyn cluster::ResultSink>> = reports.iter().cloned().collect();
        let rescan = cluster::rescan::Rescanner::new(self, client.clone(), sinks);
        if let Some(t) = rescan.spawn() {
            tasks.push(t);
        }
        cluster::ClusterTasks {
            tasks,
            client,
            reports,
        }
    }

    /// Drops the cached findings.
    pub fn clear_cache(&self) {
        self.state.cache.clear();
    }

    /// The HTTP routes: `POST /validate`, `GET /healthz`, `/readyz`, `/metrics`.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/validate", post(validate))
            .route("/healthz", get(|| async { "ok" }))
            .route("/readyz", get(readyz))
            .route("/metrics", get(metrics_handler))
            .layer(DefaultBodyLimit::max(self.state.config.max_request_bytes))
            .with_state(self.state.clone())
    }

    /// Serves HTTPS on the configured address until SIGINT/SIGTERM, with the rule watcher.
    pub async fn serve(self) -> Result<()> {
        let tls = tls::setup(&self.state.config)?;
        let listener = TcpListener::bind(self.state.config.listen)
            .await
            .map_err(|e| Error::io(format!("binding {}", self.state.config.listen), e))?;
        self.serve_on(listener, tls.server_config, shutdown_signal())
            .await
    }

    /// Serves HTTPS on `listener` until `shutdown` completes (then finishes in-flight
    /// requests, for at most 10 seconds). Also runs the rule watcher.
    pub async fn serve_on(
        self,
        listener: TcpListener,
        tls: Arc<rustls::ServerConfig>,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<()> {
        let addr: Option<SocketAddr> = listener.local_addr().ok();
        let (this, _cluster) = match self.state.config.kubernetes.clone() {
            Some(k) => {
                let client = cluster::client(&k).await.map_err(|e| Error::Config {
                    location: "kubernetes".into(),
                    message: format!("cannot build a Kubernetes client: {e}"),
                })?;
                let this = self.with_kubernetes(client.clone())?;
                let tasks = this.start_cluster(client);
                (this, Some(tasks))
            }
            None => (self, None),
        };
        this.state
            .catalogs
            .spawn_refresh(this.state.metrics.clone());
        let self_ = this;
        let watcher = self_
            .state
            .rules
            .spawn_watcher(self_.state.config.rules_reload_interval);
        tracing::info!(
            listen = ?addr,
            rules_version = self_.state.rules.current().version(),
            store = %self_.state.config.store, // redacted: never the password
            "vulngate webhook serving"
        );
        let acceptor = TlsAcceptor::from(tls);
        let service = TowerToHyperService::new(self_.router());
        let graceful = GracefulShutdown::new();
        let mut shutdown = std::pin::pin!(shutdown);
        loop {
            let (tcp, peer) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                _ = &mut shutdown => break,
            };
            let _ = tcp.set_nodelay(true);
            let acceptor = acceptor.clone();
            let service = service.clone();
            let watcher = graceful.watcher();
            tokio::spawn(async move {
                let tls = match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp))
                    .await
                {
                    Ok(Ok(s)) => s,
                    Ok(Err(e)) => {
                        tracing::debug!(%peer, error = %e, "TLS handshake failed");
                        return;
                    }
                    Err(_) => {
                        tracing::debug!(%peer, "TLS handshake timed out");
                        return;
                    }
                };
                let builder = auto::Builder::new(TokioExecutor::new());
                let conn = builder.serve_connection(TokioIo::new(tls), service);
                if let Err(e) = watcher.watch(conn).await {
                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                }
            });
        }
        drop(listener);
        if let Some(w) = watcher {
            w.abort();
        }
        tracing::info!("shutting down: finishing in-flight requests");
        let _ = tokio::time::timeout(Duration::from_secs(10), graceful.shutdown()).await;
        Ok(())
    }
}

/// Completes on SIGINT (Ctrl-C) or SIGTERM: what [`Server::serve`] stops on. Also ends the
/// benchmark's baseline server (`examples/fixed_response`) the same way.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}

/// `vulngate serve`: JSON logs, then the server on its configuration until SIGINT/SIGTERM.
pub async fn run(config: Config) -> Result<()> {
    let _logs = init_logging(&config.log_level);
    let server = Server::from_config(config)?;
    server.serve().await
    // `_logs` drops here: the log lines still buffered are written.
}

/// Keeps the log writer thread; dropping it writes the lines still buffered.
pub type LogGuard = Option<logsink::LogFlushGuard>;

/// JSON log lines on stderr; `RUST_LOG` overrides `level`. Does nothing when a global
/// subscriber is already set.
///
/// Lines are formatted on the calling thread and appended to a buffer that a writer thread
/// writes to stderr in batches (every 20 ms, or at once past 256 KiB; see [`logsink`]): a
/// request never waits for a `write(2)` to stderr nor wakes a thread per line. Nothing is
/// dropped: when 8 MiB are pending, logging waits. Keep the returned guard alive for as long
/// as the process logs.
pub fn init_logging(level: &str) -> LogGuard {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let (sink, guard) = match logsink::LogSink::spawn(std::io::stderr()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("vulngate: cannot start the log writer thread: {e}");
            return None;
        }
    };
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_writer(sink.clone())
        .with_current_span(false)
        .try_init()
        .ok()
        .map(|()| {
            // Decision lines are formatted by the handler and written here directly.
            let _ = DECISION_LOG.set(sink);
            guard
        })
}

/// The writer of `init_logging`'s subscriber, once it is the global one.
static DECISION_LOG: std::sync::OnceLock<logsink::LogSink> = std::sync::OnceLock::new();

pub(crate) fn decision_log_writer() -> Option<&'static logsink::LogSink> {
    DECISION_LOG.get()
}

fn json_response(status: StatusCode, body: Vec<u8>) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

async fn validate(AxState(state): AxState<Arc<State>>, uri: Uri, body: Bytes) -> Response {
    let started = tokio::time::Instant::now();
    let timeout = admission::timeout_from_query(uri.query(), state.config.default_timeout);
    let rv = match admission::parse_review(&body, &admission::ParseOptions::new(&state)) {
        Ok(rv) => rv,
        Err(admission::BadReview(message)) => {
            state
                .metrics
                .request("invalid", started.elapsed().as_secs_f64());
            tracing::warn!(error = %message, "malformed AdmissionReview");
            return (
                StatusCode::BAD_REQUEST,
                [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                message,
            )
                .into_response();
        }
    };
    // Synchronous first: the future of this handler, which axum boxes and moves, stays small.
    let resp = match admission::prepare(&state, rv, timeout) {
        admission::Prepared::Evaluate(job) => admission::decide(&state, job).await,
        admission::Prepared::Answered(answer) => answer,
    };
    state.metrics.request(
        if resp.allowed { "allowed" } else { "denied" },
        started.elapsed().as_secs_f64(),
    );
    match resp.to_review_json() {
        Ok(body) => json_response(StatusCode::OK, body),
        Err(e) => {
            tracing::error!(error = %e, "cannot serialise the AdmissionReview response");
            (StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response()
        }
    }
}

async fn readyz(AxState(state): AxState<Arc<State>>) -> Response {
    if state.ready.load(Ordering::Relaxed) {
        (
            StatusCode::OK,
            format!("ready: rules {}", state.rules.current().version()),
        )
            .into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "rules not loaded").into_response()
    }
}

async fn metrics_handler(AxState(state): AxState<Arc<State>>) -> Response {
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.encode(),
    )
        .into_response()
}
#[cfg(test)]
mod tests {
    /// axum boxes the handler's future and moves it on every request: it must not carry the
    /// review's state (5 KB before `admission::Job` was boxed and the lookups' futures were).
    #[test]
    fn validate_future_stays_small() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = crate::Config {
            data_dir: dir.path().join("data"),
            ..crate::Config::default()
        };
        let server = crate::Server::from_config(cfg).unwrap();
        let fut = super::validate(
            axum::extract::State(server.state.clone()),
            axum::http::Uri::from_static("/validate"),
            axum::body::Bytes::new(),
        );
        let size = std::mem::size_of_val(&fut);
        assert!(size <= 1536, "validate's future is {size} bytes");
    }
}
