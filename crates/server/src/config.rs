//! `vulngate.yaml`: the server's configuration. Every field is documented in
//! `docs/configuration.md`; unknown fields are an error.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use vulngate_core::Precedence;
use vulngate_registry::RegistryConfig;

use crate::alerts::StoreUrl;
use crate::error::{Error, Result};

/// `maxImagesPerRequest`'s default.
pub const DEFAULT_MAX_IMAGES_PER_REQUEST: usize = 256;
/// The default listen address (loopback: the embedded defaults are for trying vulngate out).
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8443";
/// The default data directory, relative to the working directory.
pub const DEFAULT_DATA_DIR: &str = "vulngate-data";
/// The annotation that lets a workload through (when `breakGlass` is configured without one).
pub const DEFAULT_BREAK_GLASS_ANNOTATION: &str = "vulngate.io/break-glass";

/// What to do when findings cannot be obtained (source error, deadline passed), the object
/// cannot be read, or an alert cannot be recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FailurePolicy {
    /// Treat the image as unscanned (`UnscannedReason::RegistryUnavailable`): the rules decide
    /// (a `blockUnscanned` rule fires, else allow).
    #[default]
    Unscanned,
    /// Allow the image (a warning is returned).
    Allow,
    /// Deny the request.
    Deny,
}

/// Where an exploitation catalog (`kev:`, `epss:`) comes from: a `file`, or a `url` fetched
/// every `refreshInterval` (the last good copy is kept in the data directory).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct CatalogConfig {
    pub file: Option<PathBuf>,
    pub url: Option<String>,
    /// How often the URL is fetched (or the file re-read).
    #[serde(with = "duration_str")]
    pub refresh_interval: Duration,
    /// A catalog older than this is stale: a warning in the log at each refresh.
    #[serde(with = "duration_str")]
    pub max_age: Duration,
    /// Size cap of the file or download (and of decompressed EPSS data). Default: 32 MiB for
    /// KEV, 64 MiB for EPSS.
    pub max_bytes: Option<u64>,
    /// Deadline of one download.
    #[serde(with = "duration_str")]
    pub timeout: Duration,
}

impl Default for CatalogConfig {
    fn default() -> Self {
        CatalogConfig {
            file: None,
            url: None,
            refresh_interval: Duration::from_secs(24 * 3600),
            max_age: Duration::from_secs(7 * 24 * 3600),
            max_bytes: None,
            timeout: Duration::from_secs(60),
        }
    }
}

impl CatalogConfig {
    fn validate(&self, at: &str) -> std::result::Result<(), (String, String)> {
        let err = |f: &str, m: &str| Err((format!("{at}{f}"), m.to_string()));
        match (&self.file, &self.url) {
            (Some(_), Some(_)) => return err("", "give file or url, not both"),
            (None, None) => return err("", "needs file or url"),
            (None, Some(u)) if !(u.starts_with("https://") || u.starts_with("http://")) => {
                return err(".url", "must be an http:// or https:// URL")
            }
            _ => {}
        }
        if self.refresh_interval.is_zero() || self.timeout.is_zero() {
            return err(
                ".refreshInterval",
                "refreshInterval and timeout must be more than 0s",
            );
        }
        if self.max_bytes == Some(0) {
            return err(".maxBytes", "must be more than 0");
        }
        Ok(())
    }
}

/// The full configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct Config {
    /// Address the HTTPS server listens on.
    pub listen: SocketAddr,
    /// Directory for the alert database, the generated certificates and other state.
    pub data_dir: PathBuf,
    /// Alert store: `sqlite` (`alerts.db` in the data directory), a `postgres://` URL, or
    /// `kubernetes` (`Alert` custom resources; needs the `kubernetes` section).
    pub store: StoreUrl,
    /// The Kubernetes store (`store: kubernetes`): namespace of cluster-scoped alerts,
    /// retention.
    pub kubernetes_store: crate::alerts::KubernetesStoreConfig,
    /// File holding the PostgreSQL password (else `VULNGATE_STORE_PASSWORD`, `PGPASSWORD`).
    pub store_password_file: Option<PathBuf>,
    /// The alert writer: queue, group commit, local journal (docs/configuration.md).
    pub alert_writer: crate::alerts::AlertWriterConfig,
    /// What alerts stand for: de-duplication (docs/configuration.md).
    pub alerts: AlertsConfig,
    pub tls: TlsConfig,
    /// Rule file or directory of `*.yaml`/`*.yml` files. None: the built-in default rule.
    pub rules: Option<PathBuf>,
    /// How often the rules path is checked for changes (0s disables hot reload).
    #[serde(with = "duration_str")]
    pub rules_reload_interval: Duration,
    pub precedence: Precedence,
    /// Cluster name given to the `cluster` scope field and recorded in alerts.
    pub cluster_name: Option<String>,
    /// Namespaces never gated. The default is `kube-system` and vulngate's own namespace
    /// (`$POD_NAMESPACE`, else `vulngate`).
    pub excluded_namespaces: Vec<String>,
    /// Image globs never gated, matched against the reference as written and normalised.
    pub skip_images: Vec<String>,
    pub failure_policy: FailurePolicy,
    /// Re-evaluate an UPDATE whose images did not change (default: allow it unevaluated).
    pub reevaluate_unchanged_updates: bool,
    /// `POST /mutate` pins tag references to the digest the findings lookup resolved (off:
    /// it answers allowed with no patch).
    pub pin_digests: bool,
    /// Break-glass annotation (off when absent).
    pub break_glass: Option<BreakGlassConfig>,
    /// The webhook timeout assumed when the request URL has no `?timeout=`.
    #[serde(with = "duration_str")]
    pub default_timeout: Duration,
    /// Time kept in reserve below the webhook timeout to answer.
    #[serde(with = "duration_str")]
    pub deadline_margin: Duration,
    /// Largest AdmissionReview body accepted.
    pub max_request_bytes: usize,
    /// Most distinct images one review may name (after de-duplication and `skipImages`);
    /// beyond it the failure policy decides the review, with one alert.
    pub max_images_per_request: usize,
    /// Most registry lookups one review runs at once.
    pub max_concurrent_lookups_per_request: usize,
    /// Most registry lookups all reviews run at once (a review waits for a slot until its
    /// deadline).
    pub max_concurrent_lookups: usize,
    pub cache: CacheConfig,
    /// Directory of local findings (`index.yaml`). Exclusive with `registry`.
    pub findings_dir: Option<PathBuf>,
    /// Look findings up in OCI registries. None (and no `findingsDir`): no findings source,
    /// every image is unscanned.
    pub registry: Option<RegistryConfig>,
    /// Log filter (`tracing-subscriber` EnvFilter syntax; `RUST_LOG` overrides it).
    pub log_level: String,
    /// Kubernetes integration (SecurityRule custom resources, PolicyReports, Events, running
    /// workloads, pull secrets). None: off.
    pub kubernetes: Option<KubernetesConfig>,
    /// Connection limits and timeouts of the HTTPS listener (`docs/security.md`, HTTP limits).
    pub http: HttpConfig,
    /// The Prometheus `/metrics` listener (plain HTTP, its own port).
    pub metrics: MetricsConfig,
    /// The CISA KEV catalog, for `knownExploited` conditions (docs/configuration.md).
    pub kev: Option<CatalogConfig>,
    /// FIRST EPSS scores, for `epssAtLeast` / `epssPercentileAtLeast` conditions.
    pub epss: Option<CatalogConfig>,
    /// The review listener (REST API and web console); off when absent.
    pub review: Option<crate::review::ReviewConfig>,
    /// Notification sinks (webhook, CloudEvents, Slack); off when absent.
    pub notify: Option<crate::notify::NotifyConfig>,
}

/// `alerts:` in vulngate.yaml.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct AlertsConfig {
    /// Alerts of one (cluster, namespace, top workload, image digest, rule, action) within
    /// this long of the first are one alert with a count (0s: every review its own alert).
    #[serde(with = "duration_str")]
    pub dedup_window: Duration,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        AlertsConfig {
            dedup_window: Duration::from_secs(24 * 3600),
        }
    }
}

/// The default metrics listen address (loopback; `vulngate install` renders `0.0.0.0:9090`).
pub const DEFAULT_METRICS_LISTEN: &str = "127.0.0.1:9090";

/// Limits of the webhook's HTTPS listener: what one client may hold, and for how long.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct HttpConfig {
    /// Most connections open at once (TLS handshakes included); beyond it new connections
    /// wait in the kernel's accept queue until one closes. Lowered at start to fit the open
    /// file limit.
    pub max_connections: usize,
    /// Time for the TLS handshake.
    #[serde(with = "duration_str")]
    pub tls_handshake_timeout: Duration,
    /// Time from the end of the TLS handshake (or from the first byte of a later request)
    /// to the end of the request's headers.
    #[serde(with = "duration_str")]
    pub header_read_timeout: Duration,
    /// Time from the request's headers to its answer, body read included (408 after it).
    #[serde(with = "duration_str")]
    pub request_timeout: Duration,
    /// A keep-alive connection with no request for this long is closed.
    #[serde(with = "duration_str")]
    pub idle_timeout: Duration,
    /// Largest request head (request line and headers), in bytes (HTTP/1.1: 431 beyond it).
    pub max_header_bytes: usize,
    /// Most header fields in one request (HTTP/1.1: 431 beyond it).
    pub max_headers: usize,
    /// HTTP/2: most concurrent streams per connection.
    pub http2_max_concurrent_streams: u32,
    /// HTTP/2: largest header list (HPACK-decoded), in bytes.
    pub http2_max_header_list_bytes: u32,
    /// HTTP/2: most streams reset by the client before the server accepted them, at once
    /// (rapid reset, CVE-2023-44487); beyond it the connection is closed.
    pub http2_max_pending_reset_streams: usize,
    /// HTTP/2: most streams the server resets because of the client's protocol errors,
    /// per connection; beyond it the connection is closed.
    pub http2_max_local_error_reset_streams: usize,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            max_connections: 1024,
            tls_handshake_timeout: Duration::from_secs(5),
            header_read_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(120),
            max_header_bytes: 32 << 10,
            max_headers: 100,
            http2_max_concurrent_streams: 64,
            http2_max_header_list_bytes: 32 << 10,
            http2_max_pending_reset_streams: 20,
            http2_max_local_error_reset_streams: 256,
        }
    }
}

/// The metrics listener: `/metrics` (Prometheus text), and nothing else; plain HTTP.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct MetricsConfig {
    /// Address of the metrics listener; `null` turns it off.
    pub listen: Option<SocketAddr>,
    /// Most connections open at once on the metrics listener.
    pub max_connections: usize,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            listen: Some(DEFAULT_METRICS_LISTEN.parse().unwrap_or_else(|_| {
                SocketAddr::from(([127, 0, 0, 1], 9090)) // the constant always parses
            })),
            max_connections: 16,
        }
    }
}

/// Where the rules come from when the Kubernetes integration is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum RulesFrom {
    /// SecurityRule custom resources only (`rules` must be unset).
    #[default]
    Cluster,
    /// The `rules` file or directory only (the custom resources are not watched).
    Files,
    /// Both; a rule name defined in both places is an error reported on the custom resource,
    /// and the file's rule stays in force.
    Both,
}

/// The Kubernetes integration. Credentials: in-cluster service account, else `kubeconfig`
/// (or `$KUBECONFIG`, `~/.kube/config`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct KubernetesConfig {
    /// Kubeconfig file (default: in-cluster, then `$KUBECONFIG`, then `~/.kube/config`).
    pub kubeconfig: Option<PathBuf>,
    pub rules_from: RulesFrom,
    /// Write PolicyReports (`wgpolicyk8s.io/v1alpha2`), one per namespace.
    pub policy_reports: bool,
    /// Write Events (`events.k8s.io/v1`) on workloads for audit and deny decisions.
    pub events: bool,
    /// Re-evaluate running Pods this often (and whenever the rules change); 0s disables it.
    #[serde(with = "duration_str")]
    pub rescan_interval: Duration,
    /// Most registry lookups per second made by the re-evaluation (the webhook is not limited).
    pub rescan_lookups_per_second: u32,
    /// Read registry credentials from the Pods' `imagePullSecrets` and their service accounts'.
    pub pull_secrets: bool,
    /// How long credentials read from Secrets are kept before they are read again.
    #[serde(with = "duration_str")]
    pub pull_secrets_ttl: Duration,
    /// Watch the metadata of ReplicaSets and Jobs to confirm a Pod's Deployment or CronJob
    /// (`vulngate_core::owner`); off: the naming rules alone.
    pub watch_owners: bool,
    /// One re-evaluator among the replicas: a `coordination.k8s.io/v1` Lease elects the replica
    /// that re-evaluates running workloads and writes PolicyReports (every replica answers the
    /// webhook).
    pub leader_election: LeaderElectionConfig,
}

/// The Lease that elects the re-evaluating replica (`kubernetes.leaderElection`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct LeaderElectionConfig {
    /// Off: every replica re-evaluates (a single replica, or tests).
    pub enabled: bool,
    /// The Lease's name.
    pub lease_name: String,
    /// The Lease's namespace (default `$POD_NAMESPACE`, else `vulngate`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// This replica's identity in the Lease (default `$POD_NAME`, else the host name and the
    /// process id).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub identity: Option<String>,
    /// How long a held Lease stays valid without renewal: a leader that died is replaced after
    /// at most this long plus one retry.
    #[serde(with = "duration_str")]
    pub lease_duration: Duration,
    /// How long before the Lease expires the leader renews it (also the tolerated clock skew).
    #[serde(with = "duration_str")]
    pub renew_grace: Duration,
}

impl Default for LeaderElectionConfig {
    fn default() -> Self {
        LeaderElectionConfig {
            enabled: true,
            lease_name: "vulngate-reevaluation".to_string(),
            namespace: None,
            identity: None,
            lease_duration: Duration::from_secs(10),
            renew_grace: Duration::from_secs(4),
        }
    }
}

impl Default for KubernetesConfig {
    fn default() -> Self {
        KubernetesConfig {
            kubeconfig: None,
            rules_from: RulesFrom::Cluster,
            policy_reports: true,
            events: true,
            rescan_interval: Duration::from_secs(3600),
            rescan_lookups_per_second: 20,
            pull_secrets: true,
            pull_secrets_ttl: Duration::from_secs(300),
            watch_owners: true,
            leader_election: LeaderElectionConfig::default(),
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: DEFAULT_LISTEN.parse().unwrap_or_else(|_| {
                SocketAddr::from(([127, 0, 0, 1], 8443)) // the constant always parses
            }),
            data_dir: PathBuf::from(DEFAULT_DATA_DIR),
            store: StoreUrl::Sqlite,
            kubernetes_store: Default::default(),
            store_password_file: None,
            alert_writer: Default::default(),
            alerts: AlertsConfig::default(),
            tls: TlsConfig::default(),
            rules: None,
            rules_reload_interval: Duration::from_secs(5),
            precedence: Precedence::Default,
            cluster_name: None,
            excluded_namespaces: default_excluded_namespaces(),
            skip_images: Vec::new(),
            failure_policy: FailurePolicy::Unscanned,
            reevaluate_unchanged_updates: false,
            pin_digests: true,
            break_glass: None,
            default_timeout: Duration::from_secs(10),
            deadline_margin: Duration::from_secs(1),
            max_request_bytes: 4 << 20,
            max_images_per_request: DEFAULT_MAX_IMAGES_PER_REQUEST,
            max_concurrent_lookups_per_request: 8,
            max_concurrent_lookups: 64,
            cache: CacheConfig::default(),
            findings_dir: None,
            registry: None,
            log_level: "info".to_string(),
            kubernetes: None,
            http: HttpConfig::default(),
            metrics: MetricsConfig::default(),
            kev: None,
            epss: None,
            review: None,
            notify: None,
        }
    }
}

/// `kube-system` and vulngate's own namespace.
pub fn default_excluded_namespaces() -> Vec<String> {
    let own = std::env::var("POD_NAMESPACE")
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "vulngate".to_string());
    vec!["kube-system".to_string(), own]
}

/// TLS: certificate files, or a self-signed certificate generated into the data directory.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct TlsConfig {
    /// PEM certificate chain (leaf first). With `keyFile`; both or neither.
    pub cert_file: Option<PathBuf>,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: Option<PathBuf>,
    /// Extra DNS names / IPs for the generated certificate (besides localhost, 127.0.0.1,
    /// ::1 and the listen address), e.g. `vulngate.vulngate.svc`.
    pub self_signed_names: Vec<String>,
}

/// Break-glass: a workload carrying the annotation, sent by a user named here, is allowed,
/// and every image is alerted. Nobody is named by default: the annotation is then refused
/// (the review is judged as if it were absent, and the response says so).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct BreakGlassConfig {
    /// Annotation key on the object's metadata; its value (non-empty, not `false`) is the
    /// justification recorded in the alerts.
    pub annotation: String,
    /// Users (`userInfo.username`, exact) who may use it.
    pub allowed_users: Vec<String>,
    /// Groups (`userInfo.groups`, exact) whose members may use it.
    pub allowed_groups: Vec<String>,
}

impl Default for BreakGlassConfig {
    fn default() -> Self {
        BreakGlassConfig {
            annotation: DEFAULT_BREAK_GLASS_ANNOTATION.to_string(),
            allowed_users: Vec::new(),
            allowed_groups: Vec::new(),
        }
    }
}

impl BreakGlassConfig {
    /// Whether `user` (or one of `groups`) may use break-glass.
    pub fn allows(&self, user: Option<&str>, groups: &[String]) -> bool {
        user.is_some_and(|u| self.allowed_users.iter().any(|a| a == u))
            || groups.iter().any(|g| self.allowed_groups.contains(g))
    }
}

/// The findings cache (per image reference or digest; decisions are recomputed per request).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct CacheConfig {
    /// Most images kept (0 disables the cache).
    pub max_entries: u64,
    /// How long a found report is kept.
    #[serde(with = "duration_str")]
    pub ttl: Duration,
    /// How long "no valid report" is kept.
    #[serde(with = "duration_str")]
    pub unscanned_ttl: Duration,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            max_entries: 10_000,
            ttl: Duration::from_secs(300),
            unscanned_ttl: Duration::from_secs(30),
        }
    }
}

impl Config {
    /// Reads and validates a `vulngate.yaml`. Relative paths in it are resolved against the
    /// file's directory.
    pub fn load(path: &Path) -> Result<Config> {
        let text = vulngate_core::limits::read_to_string_capped(
            path,
            vulngate_core::limits::FileKind::Config,
        )
        .map_err(|e| Error::Config {
            location: path.display().to_string(),
            message: e.to_string(),
        })?;
        let mut cfg = Config::parse(&text, &path.display().to_string())?;
        if let Some(base) = path.parent() {
            cfg.resolve_relative(base);
        }
        Ok(cfg)
    }

    /// Parses and validates configuration text; `source` names it in errors.
    pub fn parse(text: &str, source: &str) -> Result<Config> {
        let de = serde_yaml_ng::Deserializer::from_str(text);
        let cfg: Option<Config> = serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            Error::Config {
                location: if path == "." {
                    source.to_string()
                } else {
                    format!("{source}: {path}")
                },
                message: e.into_inner().to_string(),
            }
        })?;
        let cfg = cfg.unwrap_or_default(); // an empty file is the defaults
        cfg.validate().map_err(|(field, message)| Error::Config {
            location: format!("{source}: {field}"),
            message,
        })?;
        Ok(cfg)
    }

    /// `--insecure-registry HOST`: adds a plain-HTTP registry (enabling the registry source).
    pub fn add_insecure_registry(&mut self, host: &str) {
        let r = self.registry.get_or_insert_with(RegistryConfig::default);
        if !r.insecure_registries.iter().any(|h| h == host) {
            r.insecure_registries.push(host.to_string());
        }
    }

    fn resolve_relative(&mut self, base: &Path) {
        let fix = |p: &mut PathBuf| {
            if p.is_relative() && !base.as_os_str().is_empty() {
                *p = base.join(&*p);
            }
        };
        for p in [
            self.rules.as_mut(),
            self.findings_dir.as_mut(),
            self.tls.cert_file.as_mut(),
            self.tls.key_file.as_mut(),
            self.kubernetes.as_mut().and_then(|k| k.kubeconfig.as_mut()),
            self.store_password_file.as_mut(),
        ]
        .into_iter()
        .flatten()
        {
            fix(p);
        }
        if let Some(r) = self.review.as_mut() {
            r.tokens.iter_mut().for_each(|t| fix(&mut t.token_file));
        }
        if let Some(n) = self.notify.as_mut() {
            n.sinks
                .iter_mut()
                .filter_map(|s| s.secret_file.as_mut())
                .for_each(fix);
        }
        // Files named in the registry section: credentials, CA bundles, trust material.
        if let Some(r) = self.registry.as_mut() {
            if let Some(p) = r.auth.docker_config.as_mut() {
                fix(p);
            }
            for b in &mut r.auth.basic {
                if let Some(p) = b.password_file.as_mut() {
                    fix(p);
                }
            }
            r.ca_bundles.values_mut().for_each(fix);
            for policy in &mut r.trust_policies {
                if let Some(n) = policy.notation.as_mut() {
                    n.trust_store.iter_mut().for_each(fix);
                }
                if let Some(c) = policy.cosign.as_mut() {
                    c.public_keys.iter_mut().for_each(fix);
                    if let Some(k) = c.keyless.as_mut() {
                        fix(&mut k.trusted_root);
                    }
                }
            }
        }
    }

    /// Checks what serde cannot: `(field, message)` on error.
    pub fn validate(&self) -> std::result::Result<(), (String, String)> {
        if let Some(k) = &self.kev {
            k.validate("kev")?;
        }
        if let Some(e) = &self.epss {
            e.validate("epss")?;
        }
        if self.tls.cert_file.is_some() != self.tls.key_file.is_some() {
            return Err((
                "tls".into(),
                "certFile and keyFile must be given together".into(),
            ));
        }
        if self.findings_dir.is_some() && self.registry.is_some() {
            return Err((
                "findingsDir".into(),
                "findingsDir and registry are exclusive: choose one findings source".into(),
            ));
        }
        for (i, g) in self.skip_images.iter().enumerate() {
            glob::Pattern::new(g).map_err(|e| {
                (
                    format!("skipImages[{i}]"),
                    format!("invalid glob {g:?}: {e}"),
                )
            })?;
        }
        if let Some(b) = &self.break_glass {
            if b.annotation.trim().is_empty() {
                return Err((
                    "breakGlass.annotation".into(),
                    "empty annotation key".into(),
                ));
            }
            for (i, u) in b.allowed_users.iter().enumerate() {
                if u.trim().is_empty() {
                    return Err((format!("breakGlass.allowedUsers[{i}]"), "empty name".into()));
                }
            }
            for (i, g) in b.allowed_groups.iter().enumerate() {
                if g.trim().is_empty() {
                    return Err((
                        format!("breakGlass.allowedGroups[{i}]"),
                        "empty name".into(),
                    ));
                }
            }
        }
        if self.default_timeout.is_zero() || self.default_timeout > Duration::from_secs(30) {
            return Err((
                "defaultTimeout".into(),
                "must be between 1s and 30s (the webhook timeout range)".into(),
            ));
        }
        self.alert_writer.validate()?;
        self.kubernetes_store.validate()?;
        if self.store == StoreUrl::Kubernetes && self.kubernetes.is_none() {
            return Err((
                "store".into(),
                "store: kubernetes needs the kubernetes section (its client, and the leader \
                 election that runs the retention); `kubernetes: {rulesFrom: files}` keeps the \
                 rules in files"
                    .into(),
            ));
        }
        if self.alerts.dedup_window > Duration::from_secs(366 * 24 * 3600) {
            return Err((
                "alerts.dedupWindow".into(),
                "must be at most 8784h (a year)".into(),
            ));
        }
        if let Some(r) = &self.review {
            r.validate()?;
            if r.kubernetes.enabled && self.kubernetes.is_none() {
                return Err((
                    "review.kubernetes.enabled".into(),
                    "Kubernetes tokens need the kubernetes section (its client sends the \
                     TokenReviews and SubjectAccessReviews); `kubernetes: {rulesFrom: files}` \
                     keeps the rules in files"
                        .into(),
                ));
            }
        }
        if let Some(n) = &self.notify {
            n.validate()?;
            if self.store == StoreUrl::Kubernetes {
                return Err((
                    "notify".into(),
                    "notifications need the notification outbox of the sqlite or postgres \
                     store: store: kubernetes keeps none (remove notify, or use postgres)"
                        .into(),
                ));
            }
        }
        if self.max_request_bytes < 1024 {
            return Err(("maxRequestBytes".into(), "must be at least 1024".into()));
        }
        for (f, v) in [
            ("maxImagesPerRequest", self.max_images_per_request),
            (
                "maxConcurrentLookupsPerRequest",
                self.max_concurrent_lookups_per_request,
            ),
            ("maxConcurrentLookups", self.max_concurrent_lookups),
        ] {
            // Semaphore permits are capped well below usize::MAX; so is anything sensible.
            if v == 0 || v > 65_536 {
                return Err((f.into(), "must be between 1 and 65536".into()));
            }
        }
        if self.data_dir.as_os_str().is_empty() {
            return Err(("dataDir".into(), "empty path".into()));
        }
        self.validate_http()?;
        if let Some(k) = &self.kubernetes {
            match (k.rules_from, &self.rules) {
                (RulesFrom::Cluster, Some(_)) => return Err((
                    "kubernetes.rulesFrom".into(),
                    "rulesFrom cluster ignores the rules path: unset rules, or use rulesFrom: both"
                        .into(),
                )),
                (RulesFrom::Files | RulesFrom::Both, None) => {
                    return Err((
                        "rules".into(),
                        "kubernetes.rulesFrom files/both needs a rules path".into(),
                    ))
                }
                _ => {}
            }
            if k.rescan_lookups_per_second == 0 {
                return Err((
                    "kubernetes.rescanLookupsPerSecond".into(),
                    "must be at least 1".into(),
                ));
            }
            let le = &k.leader_election;
            if le.enabled {
                let whole = |d: Duration| d.subsec_nanos() == 0;
                if le.lease_duration < Duration::from_secs(2)
                    || le.lease_duration > Duration::from_secs(300)
                    || !whole(le.lease_duration)
                {
                    return Err((
                        "kubernetes.leaderElection.leaseDuration".into(),
                        "must be whole seconds between 2s and 300s".into(),
                    ));
                }
                if le.renew_grace.is_zero()
                    || le.renew_grace >= le.lease_duration
                    || !whole(le.renew_grace)
                {
                    return Err((
                        "kubernetes.leaderElection.renewGrace".into(),
                        "must be whole seconds, at least 1s and less than leaseDuration".into(),
                    ));
                }
                if le.lease_name.is_empty()
                    || le.lease_name.len() > 253
                    || !le.lease_name.bytes().all(|b| {
                        b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.'
                    })
                {
                    return Err((
                        "kubernetes.leaderElection.leaseName".into(),
                        "must be a DNS subdomain name (lowercase letters, digits, '-', '.')".into(),
                    ));
                }
            }
        }
        Ok(())
    }
}

impl Config {
    /// The `http` and `metrics` sections.
    fn validate_http(&self) -> std::result::Result<(), (String, String)> {
        let h = &self.http;
        let err = |f: &str, m: &str| Err((format!("http.{f}"), m.to_string()));
        if h.max_connections == 0 {
            return err("maxConnections", "must be at least 1");
        }
        for (f, d) in [
            ("tlsHandshakeTimeout", h.tls_handshake_timeout),
            ("headerReadTimeout", h.header_read_timeout),
            ("requestTimeout", h.request_timeout),
            ("idleTimeout", h.idle_timeout),
        ] {
            if d.is_zero() || d > Duration::from_secs(3600) {
                return err(f, "must be between 1ms and 1h");
            }
        }
        if !(1024..=1 << 20).contains(&h.max_header_bytes) {
            return err("maxHeaderBytes", "must be between 1024 and 1048576");
        }
        if h.max_headers == 0 || h.max_headers > 1000 {
            return err("maxHeaders", "must be between 1 and 1000");
        }
        if h.http2_max_concurrent_streams == 0 {
            return err("http2MaxConcurrentStreams", "must be at least 1");
        }
        if !(1024..=1 << 20).contains(&h.http2_max_header_list_bytes) {
            return err(
                "http2MaxHeaderListBytes",
                "must be between 1024 and 1048576",
            );
        }
        if let Some(m) = self.metrics.listen {
            if m == self.listen && m.port() != 0 {
                return Err((
                    "metrics.listen".into(),
                    format!("{m} is the webhook's listen address: give metrics its own port"),
                ));
            }
        }
        if self.metrics.max_connections == 0 {
            return Err(("metrics.maxConnections".into(), "must be at least 1".into()));
        }
        Ok(())
    }
}

/// Parses `500ms`, `10s`, `5m`, `1h` (and sums such as `1m30s`).
pub fn parse_duration(s: &str) -> std::result::Result<Duration, String> {
    let t = s.trim();
    if t.is_empty() {
        return Err("empty duration".into());
    }
    let mut total = Duration::ZERO;
    let mut rest = t;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(format!(
                "invalid duration {s:?} (expected e.g. 500ms, 10s, 5m, 1h)"
            ));
        }
        let n: u64 = rest[..digits]
            .parse()
            .map_err(|_| format!("invalid duration {s:?}: number too large"))?;
        rest = &rest[digits..];
        let unit = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
        let d = match &rest[..unit] {
            "ms" => Duration::from_millis(n),
            "s" => Duration::from_secs(n),
            "m" => Duration::from_secs(n.saturating_mul(60)),
            "h" => Duration::from_secs(n.saturating_mul(3600)),
            _ => {
                return Err(format!(
                    "invalid duration {s:?}: unit must be ms, s, m or h"
                ))
            }
        };
        rest = &rest[unit..];
        total = total.saturating_add(d);
    }
    Ok(total)
}

/// Formats a duration the way [`parse_duration`] reads it.
pub fn format_duration(d: Duration) -> String {
    if d.subsec_millis() != 0 || d.is_zero() {
        format!("{}ms", d.as_millis())
    } else {
        format!("{}s", d.as_secs())
    }
}

pub(crate) mod duration_str {
    use super::*;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&format_duration(*d))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Duration, D::Error> {
        let s = String::deserialize(d)?;
        parse_duration(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10s").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("1m30s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert!(parse_duration("10").is_err());
        assert!(parse_duration("1d").is_err());
    }

    #[test]
    fn unknown_fields_are_errors() {
        let e = Config::parse("listen: 0.0.0.0:8443\nlistn: x\n", "vulngate.yaml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("listn"), "{e}");
        let e = Config::parse("cache: { ttl: 5m, maxEntris: 3 }\n", "vulngate.yaml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("cache") && e.contains("maxEntris"), "{e}");
    }

    #[test]
    fn review_kubernetes_needs_the_kubernetes_section_and_known_fields() {
        let e = Config::parse("review: { kubernetes: { enabled: true } }\n", "x")
            .unwrap_err()
            .to_string();
        assert!(e.contains("review.kubernetes.enabled"), "{e}");
        let c = Config::parse(
            "rules: r.yaml\nkubernetes: { rulesFrom: files }\nreview: { kubernetes: { enabled: true, timeout: 2s } }\n",
            "x",
        )
        .unwrap();
        let k = &c.review.as_ref().unwrap().kubernetes;
        assert!(k.enabled);
        assert_eq!(k.timeout, Duration::from_secs(2));
        assert_eq!(k.cache_ttl, Duration::from_secs(60));
        let e = Config::parse("review: { kubernetes: { cacheTTL: 5s } }\n", "x")
            .unwrap_err()
            .to_string();
        assert!(e.contains("cacheTTL"), "{e}");
        let e = Config::parse("review: { kubernetes: { maxCachedTokens: 0 } }\n", "x")
            .unwrap_err()
            .to_string();
        assert!(e.contains("review.kubernetes.maxCachedTokens"), "{e}");
    }

    #[test]
    fn empty_file_is_defaults() {
        assert_eq!(Config::parse("", "x").unwrap(), Config::default());
    }

    #[test]
    fn keyless_trusted_root_is_relative_to_the_file() {
        let mut c = Config::parse(
            "registry: { trustPolicies: [{ scope: '*', cosign: { keyless: { trustedRoot: trusted_root.json, identities: [{ issuer: i, subject: s }] } } }] }\n",
            "x",
        )
        .unwrap();
        c.resolve_relative(Path::new("/etc/vulngate"));
        let r = c.registry.as_ref().unwrap();
        let k = r.trust_policies[0]
            .cosign
            .as_ref()
            .unwrap()
            .keyless
            .as_ref()
            .unwrap();
        assert_eq!(
            k.trusted_root,
            PathBuf::from("/etc/vulngate/trusted_root.json")
        );
    }

    #[test]
    fn exclusive_sources() {
        let e = Config::parse("findingsDir: f\nregistry: {}\n", "x")
            .unwrap_err()
            .to_string();
        assert!(e.contains("exclusive"), "{e}");
    }
}
