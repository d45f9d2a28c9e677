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
/// Fuzz entry points (`crates/fuzz-targets`, `fuzz/`); not part of the server. Always compiled
/// (a feature would give the workspace's test build and `-p vulngate` two builds of this crate).
#[doc(hidden)]
pub mod fuzzing;
pub mod http;
pub mod notify;
pub mod observe;
mod record;
pub mod review;
pub mod rules;
pub mod source;
pub mod tls;
mod verdict;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, State as AxState};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

pub use alerts::{
    Alert, AlertAction, AlertBackend, AlertError, AlertFilter, AlertOrigin, AlertStore,
    KubernetesBackend, PostgresBackend, SqliteBackend, StoreUrl,
};
pub use config::{
    BreakGlassConfig, CacheConfig, Config, FailurePolicy, HttpConfig, MetricsConfig, TlsConfig,
};
pub use error::{Error, Result};
pub use metrics::Metrics;
pub use observe::log::{init_logging, LogGuard};
pub use observe::metrics;
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
    /// The registry lookup slots of admission reviews (`maxConcurrentLookups`).
    pub lookup_slots: admission::limits::LookupSlots,
    /// The watch cache confirming owners (kubernetes.watchOwners).
    pub owners: Option<Arc<cluster::owners::OwnerCache>>,
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
    /// The review listener's tokens and sessions (`review:`).
    review: Option<Arc<review::Review>>,
    /// The notification delivery (`notify:`), started by [`Server::start_notifier`].
    notifier: Option<Arc<notify::Notifier>>,
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
        config
            .validate()
            .map_err(|(field, message)| Error::Config {
                location: field,
                message,
            })?;
        let alerts = AlertStore::open_config(&config)?;
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
        // The outbox routes are in place before the writer replays its journal.
        if let Some(o) = alerts.outbox() {
            o.routes().set(
                config
                    .notify
                    .as_ref()
                    .map(|n| n.routes())
                    .unwrap_or_default(),
            );
        }
        let notifier = match &config.notify {
            Some(n) => Some(Arc::new(notify::Notifier::load(
                n,
                alerts.clone(),
                metrics.notify().clone(),
                config.cluster_name.as_deref(),
            )?)),
            None => None,
        };
        let alerts = alerts
            .with_dedup_window(config.alerts.dedup_window)
            .start_writer(
                &config.alert_writer,
                &config.data_dir,
                metrics.alert_store().clone(),
            )?;
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
        let lookup_slots = admission::limits::LookupSlots::new(&config, metrics.guard());
        let state = State {
            lookup_slots,
            config,
            rules,
            cache,
            alerts,
            metrics,
            catalogs,
            events: None,
            pull_secrets: None,
            owners: None,
            skip,
            ready: AtomicBool::new(ready),
        };
        let review = match &state.config.review {
            Some(r) => Some(Arc::new(review::Review::load(r)?)),
            None => None,
        };
        Ok(Server {
            state: Arc::new(state),
            review,
            notifier,
        })
    }

    /// Turns on the Kubernetes integration parts of the webhook that need `client`, as the
    /// `kubernetes` section says: Events (`events`), pull-secret credentials
    /// (`pullSecrets`), the owner watch cache (`watchOwners`) and the review listener's
    /// Kubernetes token reviews (`review.kubernetes`). Call right after construction, inside a Tokio runtime (the Event
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
        if let Some(kauth) = self.review.as_ref().and_then(|r| r.kubernetes.as_ref()) {
            kauth.set_client(client.clone());
        }
        if k.events {
            state.events = Some(cluster::events::EventRecorder::start(
                client.clone(),
                cluster::events::reporting_instance(),
                state.metrics.clone(),
            ));
        }
        if k.watch_owners {
            state.owners = Some(Arc::new(cluster::owners::OwnerCache::start(client.clone())));
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
        // Only the replica holding the Lease re-evaluates (and so writes PolicyReports and
        // runtime alerts) and applies the Kubernetes store's retention; an election is started
        // only when there is something to lead.
        let kube_store = self.state.config.store == StoreUrl::Kubernetes;
        let election = (k.leader_election.enabled && (!k.rescan_interval.is_zero() || kube_store))
            .then(|| cluster::leader::start(client.clone(), &k.leader_election));
        let leadership = election
            .as_ref()
            .map(|e| e.leadership.clone())
            .unwrap_or_else(cluster::leader::Leadership::always);
        if kube_store {
            tasks.push(alerts::kubernetes::spawn_retention(
                client.clone(),
                self.state.config.kubernetes_store.clone(),
                leadership.clone(),
            ));
        }
        if let Some(t) = rescan.spawn_led(leadership) {
            tasks.push(t);
        }
        cluster::ClusterTasks {
            tasks,
            client,
            reports,
            election,
        }
    }

    /// Starts delivering notifications (`notify:`) in the background; call once, inside a
    /// Tokio runtime ([`serve`](Self::serve) does). Without `notify`: nothing.
    pub fn start_notifier(&self) -> Option<tokio::task::JoinHandle<()>> {
        self.notifier.clone().map(notify::Notifier::spawn)
    }

    /// The owner watch cache, when `kubernetes.watchOwners` is on (tests wait for its sync).
    pub fn owner_cache(&self) -> Option<&cluster::owners::OwnerCache> {
        self.state.owners.as_deref()
    }

    /// Drops the cached findings.
    pub fn clear_cache(&self) {
        self.state.cache.clear();
    }

    /// The webhook's routes: `POST /validate`, `POST /mutate` (digest pinning), `GET /healthz`,
    /// `/readyz` (nothing else: the
    /// metrics are on their own listener, [`metrics_router`](Self::metrics_router)).
    pub fn router(&self) -> Router {
        Router::new()
            .route("/validate", post(admission::validate))
            .route("/mutate", post(admission::mutate::mutate))
            .route("/healthz", get(|| async { "ok" }))
            .route("/readyz", get(readyz))
            .layer(DefaultBodyLimit::max(self.state.config.max_request_bytes))
            .with_state(self.state.clone())
    }

    /// The review listener's routes (API and console), when `review` is configured.
    pub fn review_router(&self) -> Option<Router> {
        self.review
            .as_ref()
            .map(|r| review::router(self.state.clone(), r.clone()))
    }

    /// Serves the review listener on `tcp` instead of binding `review.listen` (tests: a
    /// port chosen by the system). Without `review` configured: nothing.
    pub fn with_review_listener(self, tcp: TcpListener) -> Server {
        if let Some(r) = &self.review {
            if let Ok(mut slot) = r.listener.lock() {
                *slot = Some(tcp);
            }
        }
        self
    }

    /// The metrics listener's routes: `GET /metrics` (Prometheus text) only.
    pub fn metrics_router(&self) -> Router {
        Router::new()
            .route("/metrics", get(metrics_handler))
            .layer(DefaultBodyLimit::max(4096))
            .with_state(self.state.clone())
    }

    /// Serves HTTPS on the configured address, and `/metrics` on `metrics.listen`, until
    /// SIGINT/SIGTERM, with the rule watcher.
    pub async fn serve(self) -> Result<()> {
        let tls = tls::setup(&self.state.config)?;
        let listener = bind(self.state.config.listen, "listen").await?;
        let metrics = match self.state.config.metrics.listen {
            Some(addr) => Some(bind(addr, "metrics.listen").await?),
            None => None,
        };
        self.serve_with(listener, metrics, tls.server_config, shutdown_signal())
            .await
    }

    /// Serves HTTPS on `listener` until `shutdown` completes (then finishes in-flight
    /// requests, for at most 10 seconds), without a metrics listener. Also runs the rule
    /// watcher.
    pub async fn serve_on(
        self,
        listener: TcpListener,
        tls: Arc<rustls::ServerConfig>,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<()> {
        self.serve_with(listener, None, tls, shutdown).await
    }

    /// Serves HTTPS on `listener` and, when given, `/metrics` in plain HTTP on
    /// `metrics_listener`, until `shutdown` completes (then finishes in-flight requests, for
    /// at most 10 seconds), under the `http` limits. Also runs the rule watcher.
    pub async fn serve_with(
        self,
        listener: TcpListener,
        metrics_listener: Option<TcpListener>,
        tls: Arc<rustls::ServerConfig>,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<()> {
        let addr: Option<SocketAddr> = listener.local_addr().ok();
        let metrics_addr = metrics_listener.as_ref().and_then(|l| l.local_addr().ok());
        let (this, mut cluster_tasks) = match self.state.config.kubernetes.clone() {
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
        let notifier = self_.start_notifier();
        let cfg = &self_.state.config;
        let nofile = http::raise_nofile_limit();
        let max_connections = http::fitted_max_connections(cfg.http.max_connections, nofile);
        tracing::info!(
            listen = ?addr,
            metrics_listen = ?metrics_addr,
            max_connections,
            open_file_limit = ?nofile,
            rules_version = self_.state.rules.current().version(),
            store = %cfg.store, // redacted: never the password
            "vulngate webhook serving"
        );
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let http_metrics = self_.state.metrics.http().clone();
        let webhook = http::Listener {
            name: "webhook",
            tcp: listener,
            tls: Some(TlsAcceptor::from(tls.clone())),
            router: self_.router(),
            limits: Arc::new(http::Limits::new(&cfg.http, max_connections)),
        }
        .spawn(http_metrics.clone(), stop_rx.clone());
        // The review listener: its own address, the webhook's certificate and limits.
        let review = match (&self_.review, &cfg.review) {
            (Some(r), Some(rc)) => {
                let bound = r.listener.lock().ok().and_then(|mut s| s.take());
                let tcp = match bound {
                    Some(t) => t,
                    None => bind(rc.listen, "review.listen").await?,
                };
                tracing::info!(listen = ?tcp.local_addr().ok(), tokens = rc.tokens.len(), "review listener serving");
                Some(
                    http::Listener {
                        name: "review",
                        tcp,
                        tls: Some(TlsAcceptor::from(tls.clone())),
                        router: review::router(self_.state.clone(), r.clone()),
                        limits: Arc::new(http::Limits::new(&cfg.http, rc.max_connections)),
                    }
                    .spawn(http_metrics.clone(), stop_rx.clone()),
                )
            }
            _ => None,
        };
        let metrics = metrics_listener.map(|tcp| {
            http::Listener {
                name: "metrics",
                tcp,
                tls: None,
                router: self_.metrics_router(),
                limits: Arc::new(http::Limits::new(&cfg.http, cfg.metrics.max_connections)),
            }
            .spawn(http_metrics, stop_rx.clone())
        });
        shutdown.await;
        let _ = stop_tx.send(true);
        if let Some(w) = watcher {
            w.abort();
        }
        if let Some(n) = notifier {
            n.abort(); // an attempt cut short is attempted again: at least once
        }
        tracing::info!("shutting down: finishing in-flight requests");
        let _ = tokio::time::timeout(http::SHUTDOWN_GRACE, async {
            webhook.drained().await;
            if let Some(m) = &metrics {
                m.drained().await;
            }
            if let Some(r) = &review {
                r.drained().await;
            }
        })
        .await;
        // Hand the re-evaluation over at once instead of after the Lease expires.
        if let Some(election) = cluster_tasks.as_mut().and_then(|c| c.election.take()) {
            election.stop().await;
        }
        drop(cluster_tasks);
        Ok(())
    }
}

async fn bind(addr: SocketAddr, field: &str) -> Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| Error::io(format!("binding {addr} ({field})"), e))
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
        let fut = crate::admission::validate(
            axum::extract::State(server.state.clone()),
            axum::http::Uri::from_static("/validate"),
            axum::body::Bytes::new(),
        );
        let size = std::mem::size_of_val(&fut);
        assert!(size <= 1536, "validate's future is {size} bytes");
    }
}
