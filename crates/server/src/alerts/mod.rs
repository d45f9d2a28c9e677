//! Alerts: one per audited, denied or break-glass image, recorded durably before the
//! admission response is sent.
//!
//! [`AlertStore`] is the public face (the webhook writes, `vulngate alerts` reads); storage is
//! behind [`AlertBackend`]: [`SqliteBackend`] (a file in the data directory, the default),
//! [`PostgresBackend`] (shared by replicas) or [`KubernetesBackend`] (`Alert` custom resources,
//! shared by replicas, the default of `vulngate install`), chosen by [`StoreUrl`] (`store:` in
//! vulngate.yaml). The SQL stores have the same tables, columns and migration numbers (side by
//! side in the private `migrations` module).

pub mod journal;
pub mod kubernetes;
pub mod metrics;
mod migrations;
pub mod outbox;
pub mod postgres;
mod query;
pub mod sqlite;
pub mod writer;

use std::fmt::Debug;
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

pub use kubernetes::{KubernetesBackend, KubernetesStoreConfig};
pub use metrics::AlertMetrics;
pub use postgres::{PostgresBackend, PostgresUrl};
pub(crate) use query::{
    count_query, image_candidates, list_query, namespaces_query, per_image, state_counts, Dialect,
    SqlArg,
};
pub use sqlite::SqliteBackend;
use vulngate_core::engine::{Firing, SeverityCounts, Violation, Vulnerability};
use vulngate_core::model::ReportIdentity;
use vulngate_core::{Outcome, UnscannedReason};
pub use writer::{AlertWriterConfig, Durable};

/// File name of the SQLite database in the data directory.
pub const SQLITE_FILE: &str = "alerts.db";

/// Why an alert was raised.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AlertAction {
    Audit,
    Deny,
    /// The workload carried the break-glass annotation: allowed whatever the rules say.
    BreakGlass,
}

impl AlertAction {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertAction::Audit => "audit",
            AlertAction::Deny => "deny",
            AlertAction::BreakGlass => "break-glass",
        }
    }
}

impl std::fmt::Display for AlertAction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for AlertAction {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "audit" => Ok(AlertAction::Audit),
            "deny" => Ok(AlertAction::Deny),
            "break-glass" => Ok(AlertAction::BreakGlass),
            _ => Err(format!(
                "unknown alert action {s:?} (expected audit, deny or break-glass)"
            )),
        }
    }
}

/// Where an alert was raised: at admission (the webhook) or by the re-evaluation of
/// running workloads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AlertOrigin {
    #[default]
    Admission,
    Runtime,
}

impl AlertOrigin {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertOrigin::Admission => "admission",
            AlertOrigin::Runtime => "runtime",
        }
    }
}

/// One alert.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Alert {
    /// UUID v7 (time-ordered).
    pub id: String,
    pub time: DateTime<Utc>,
    pub action: AlertAction,
    /// `admission` (the webhook; the default for alerts stored before origins existed) or
    /// `runtime` (a running workload re-evaluated).
    #[serde(default)]
    pub origin: AlertOrigin,
    /// The engine's decision for the image (for break-glass alerts: what it would have been).
    pub decision: Outcome,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Workload kind (`Deployment`).
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// `CREATE` or `UPDATE` (`RUNTIME` for runtime alerts).
    pub operation: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// The AdmissionReview request uid.
    pub request_uid: String,
    /// The image as written in the workload.
    pub image: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// The deciding rule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    /// The deciding rule as it was when it decided (a `SecurityRule` document).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule_snapshot: Option<Arc<serde_json::Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rules_version: Option<String>,
    /// The deciding vulnerability (id, severity, packages with installed and fixed versions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vulnerability: Option<Vulnerability>,
    pub counts: SeverityCounts,
    /// The findings artifact (digest, scanner, scan time).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report: Option<ReportIdentity>,
    /// Set when the image had no valid findings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unscanned: Option<UnscannedReason>,
    pub reason: String,
    pub dry_run: bool,
    /// The break-glass annotation's value (the justification).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub break_glass: Option<String>,
    /// The top workload (`vulngate_core::owner`): the Deployment of a ReplicaSet's Pod.
    /// `kind` and `name` above name the object admitted (at runtime: the workload).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload_kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload_name: Option<String>,
    /// How many reviews (and re-evaluations) this alert stands for: repeats of its
    /// de-duplication key within `alerts.dedupWindow` are counted here, not stored apart.
    #[serde(default = "one")]
    pub count: u64,
    /// When the last repeat was seen (`time` is the first).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_seen: Option<DateTime<Utc>>,
    /// The kinds of the objects this alert was raised for (`Deployment`, `ReplicaSet`, `Pod`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub kinds: Vec<String>,
    /// Every vulnerability that fulfilled the deciding condition, and the other rules that
    /// would also have fired (empty for alerts stored before they were recorded).
    #[serde(flatten)]
    pub explanation: Explanation,
    /// Where the review of the alert stands (stored apart from the alert: `open` when
    /// recorded).
    #[serde(flatten)]
    pub review: Review,
}

/// Why an alert was raised, in full (issue 19 item 1).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Explanation {
    /// Every vulnerability that fulfilled the deciding condition, in walk order, the
    /// deciding one marked; at most `alertWriter.maxViolations`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub violations: Vec<Violation>,
    /// How many vulnerabilities fulfilled it (more than `violations` holds when capped).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub violations_total: usize,
    /// Every other rule that would also have fired, in walk order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub also_fired: Vec<Firing>,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// The review state of an alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReviewState {
    #[default]
    Open,
    Acknowledged,
    Resolved,
}

impl ReviewState {
    pub const ALL: [ReviewState; 3] = [
        ReviewState::Open,
        ReviewState::Acknowledged,
        ReviewState::Resolved,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ReviewState::Open => "open",
            ReviewState::Acknowledged => "acknowledged",
            ReviewState::Resolved => "resolved",
        }
    }

    /// Whether a reviewer may move an alert from `self` to `to`: acknowledge an open alert,
    /// resolve an open or acknowledged one, reopen an acknowledged or resolved one.
    pub fn can_move_to(self, to: ReviewState) -> bool {
        use ReviewState::*;
        matches!(
            (self, to),
            (Open, Acknowledged)
                | (Open | Acknowledged, Resolved)
                | (Acknowledged | Resolved, Open)
        )
    }
}

impl std::fmt::Display for ReviewState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ReviewState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ReviewState::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| {
                format!("unknown review state {s:?} (expected open, acknowledged or resolved)")
            })
    }
}

/// An alert's review: its state and every change of it.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Review {
    #[serde(default)]
    pub state: ReviewState,
    /// Oldest first; only [`AlertStore::get`] fills it (lists leave it empty).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<ReviewEvent>,
}

/// One change of an alert's review state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReviewEvent {
    pub time: DateTime<Utc>,
    /// Who changed it (the API token's name, or the Kubernetes user).
    pub by: String,
    pub from: ReviewState,
    pub to: ReviewState,
    #[serde(default)]
    pub comment: String,
}

/// Where a page of alerts ends: the last alert's time and id (the list's order). Shown to
/// clients as an opaque string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    pub time: DateTime<Utc>,
    pub id: String,
}

impl Cursor {
    pub fn after(a: &Alert) -> Cursor {
        Cursor {
            time: a.time,
            id: a.id.clone(),
        }
    }
}

fn one() -> u64 {
    1
}

impl Alert {
    /// The de-duplication key: (cluster, namespace, top workload, image digest, rule,
    /// action), the image as written when there is no digest. None for a dry run (never
    /// stored) or an alert without a workload.
    pub fn dedup_key(&self) -> Option<String> {
        if self.dry_run {
            return None;
        }
        let workload_kind = self.workload_kind.as_deref().unwrap_or(&self.kind);
        let workload_name = self.workload_name.as_deref().or(self.name.as_deref())?;
        let parts = [
            self.cluster.as_deref().unwrap_or(""),
            self.namespace.as_deref().unwrap_or(""),
            workload_kind,
            workload_name,
            self.digest.as_deref().unwrap_or(&self.image),
            self.rule.as_deref().unwrap_or(""),
            self.action.as_str(),
        ];
        // JSON: unambiguous whatever the parts hold.
        serde_json::to_string(&parts).ok()
    }

    /// The top workload and the object the alert was raised on, when they differ
    /// (`Deployment shop/web (admitted: Pod shop/web-5d9f7c-abcde)`), as the answer and the
    /// Event named them (`vulngate_core::owner::subject`); None when the object is its own
    /// workload.
    pub fn subject(&self) -> Option<String> {
        let seen = match self.origin {
            AlertOrigin::Admission => vulngate_core::owner::Seen::Admitted,
            AlertOrigin::Runtime => vulngate_core::owner::Seen::Running,
        };
        vulngate_core::owner::subject(
            self.namespace.as_deref(),
            (
                self.workload_kind.as_deref().unwrap_or(&self.kind),
                self.workload_name.as_deref()?,
            ),
            (&self.kind, self.name.as_deref()),
            seen,
        )
    }

    /// Counts `repeat` (same key) into this alert: one more, the latest time, its kind.
    pub fn absorb(&mut self, repeat: &Alert) {
        self.count = self.count.saturating_add(repeat.count.max(1));
        let last = repeat.last_seen.unwrap_or(repeat.time).max(repeat.time);
        self.last_seen = Some(self.last_seen.unwrap_or(self.time).max(last));
        for k in std::iter::once(&repeat.kind).chain(&repeat.kinds) {
            if !self.kinds.contains(k) {
                self.kinds.push(k.clone());
            }
        }
    }
}

/// Which alerts to list (all given criteria must match).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AlertFilter {
    /// Alerts at or after this time.
    pub since: Option<DateTime<Utc>>,
    pub action: Option<AlertAction>,
    pub origin: Option<AlertOrigin>,
    pub namespace: Option<String>,
    pub rule: Option<String>,
    /// Substring of the image reference.
    pub image: Option<String>,
    /// The workload's (object's) name.
    pub workload: Option<String>,
    /// A vulnerability id (or alias) among the alert's violations.
    pub cve: Option<String>,
    pub state: Option<ReviewState>,
    /// Only alerts after this one in the list's order (the next page).
    pub after: Option<Cursor>,
    /// At most this many, newest first (default 100).
    pub limit: Option<usize>,
}

/// Every vulnerability id and alias an alert is about (the `cve` filter's index).
pub(crate) fn vuln_ids(a: &Alert) -> Vec<&str> {
    let mut ids: Vec<&str> = a
        .explanation
        .violations
        .iter()
        .flat_map(|v| v.vulnerability.ids.iter().map(String::as_str))
        .chain(
            a.vulnerability
                .iter()
                .flat_map(|v| v.ids.iter().map(String::as_str)),
        )
        .collect();
    ids.sort_unstable();
    ids.dedup();
    ids
}

/// A change of an alert's review state, by whom and why.
#[derive(Debug, Clone, PartialEq)]
pub struct ReviewChange {
    pub to: ReviewState,
    pub by: String,
    pub comment: String,
    pub time: DateTime<Utc>,
}

#[derive(Debug, thiserror::Error)]
pub enum AlertError {
    #[error("alert database {path}: {source}")]
    Sqlite {
        path: String,
        #[source]
        source: rusqlite::Error,
    },
    #[error(
        "alert database {path}: schema version {found} is newer than this vulngate knows ({known})"
    )]
    SchemaTooNew {
        path: String,
        found: i64,
        known: i64,
    },
    #[error("cannot create data directory {path}: {source}")]
    DataDir {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("alert {id}: stored data unreadable: {message}")]
    Corrupt { id: String, message: String },
    /// `url` is the redacted store URL; `message` the error with its causes. Nothing here
    /// carries the password.
    #[error("alert database {url}: {message}")]
    Postgres { url: String, message: String },
    /// `server` is the API server's URL; `message` what failed (never a token).
    #[error("alert store (Kubernetes API server {server}): {message}")]
    Kubernetes { server: String, message: String },
    #[error(transparent)]
    Journal(journal::JournalError),
    /// Neither the store (`store`: why) nor the journal took the alerts.
    #[error("alerts not durable: {store}, and {journal}")]
    NotDurable {
        store: String,
        #[source]
        journal: journal::JournalError,
    },
    /// The alert's review state does not allow the change (acknowledging a resolved alert).
    #[error("alert {id} is {from}: it cannot become {to}")]
    Transition {
        id: String,
        from: ReviewState,
        to: ReviewState,
    },
    #[error("alert store: {0}")]
    Other(String),
}

/// Where alerts are kept: `store:` in vulngate.yaml, `--store` on the command line.
/// `sqlite` (the default): `alerts.db` in the data directory; a `postgres://` URL: a
/// PostgreSQL database; `kubernetes`: `Alert` custom resources (`kubernetesStore:`). Shown
/// (Debug, Display, serialised) without the password.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum StoreUrl {
    #[default]
    Sqlite,
    Postgres(PostgresUrl),
    Kubernetes,
}

impl FromStr for StoreUrl {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == "sqlite" {
            return Ok(StoreUrl::Sqlite);
        }
        if s == "kubernetes" {
            return Ok(StoreUrl::Kubernetes);
        }
        if s.starts_with("postgres://") || s.starts_with("postgresql://") {
            return PostgresUrl::parse(s).map(StoreUrl::Postgres);
        }
        Err("expected sqlite, kubernetes or a postgres:// URL".to_string())
    }
}

impl std::fmt::Display for StoreUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreUrl::Sqlite => f.write_str("sqlite"),
            StoreUrl::Postgres(u) => std::fmt::Display::fmt(u, f),
            StoreUrl::Kubernetes => f.write_str("kubernetes"),
        }
    }
}

impl Serialize for StoreUrl {
    /// Redacted: `serve --check-config` prints the configuration.
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for StoreUrl {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Alert storage.
pub trait AlertBackend: Send + Sync + Debug {
    /// Records alerts atomically (all or none) and durably; an id already stored is an error.
    fn record(&self, alerts: &[Alert]) -> Result<(), AlertError>;
    /// Records, atomically and durably in one transaction, the alerts whose id is not stored
    /// yet, and returns how many were new: what the writer (many requests' alerts per
    /// transaction) and the journal replay (maybe already stored) call. The default is
    /// [`record`](Self::record), which is not idempotent: the SQLite and PostgreSQL stores
    /// override it.
    fn record_new(&self, alerts: &[Alert]) -> Result<usize, AlertError> {
        self.record(alerts).map(|()| alerts.len())
    }
    /// [`record_new`](Self::record_new) with de-duplication: an alert whose
    /// [`dedup_key`](Alert::dedup_key) matches a stored alert's within `window` of its time is
    /// absorbed by the earliest such alert ([`Alert::absorb`]: count, lastSeen, kinds; the
    /// first keeps its id) and its id remembered, so that a replay absorbs it once. The
    /// default does not de-duplicate.
    fn record_merged(&self, alerts: &[Alert], window: Duration) -> Result<usize, AlertError> {
        let _ = window;
        self.record_new(alerts)
    }
    /// [`record_new`](Self::record_new) over borrowed alerts: the writer's batch borrows the
    /// alerts of the requests it commits for. The default copies them; SQLite writes them as
    /// they are, and the PostgreSQL and Kubernetes stores copy them once, into their async task.
    fn record_new_refs(&self, alerts: &[&Alert]) -> Result<usize, AlertError> {
        let owned: Vec<Alert> = alerts.iter().map(|a| (*a).clone()).collect();
        self.record_new(&owned)
    }
    /// [`record_merged`](Self::record_merged) over borrowed alerts (see
    /// [`record_new_refs`](Self::record_new_refs)).
    fn record_merged_refs(&self, alerts: &[&Alert], window: Duration) -> Result<usize, AlertError> {
        let owned: Vec<Alert> = alerts.iter().map(|a| (*a).clone()).collect();
        self.record_merged(&owned, window)
    }
    /// [`record_merged_refs`](Self::record_merged_refs) with a hint from the writer:
    /// `unstored[i]` says that alert `i` cannot be in the store yet (its request still waits
    /// for this commit, so it never went to the journal, and ids are new per alert), and the
    /// store may skip looking its id up. The default ignores the hint.
    fn record_merged_hinted(
        &self,
        alerts: &[&Alert],
        unstored: &[bool],
        window: Duration,
    ) -> Result<usize, AlertError> {
        let _ = unstored;
        self.record_merged_refs(alerts, window)
    }
    /// Alerts matching `filter`, newest first, with their review state (not its history).
    fn list(&self, filter: &AlertFilter) -> Result<Vec<Alert>, AlertError>;
    /// The alert `id` (or the alert that absorbed the repeat `id`) with its review state
    /// and history.
    fn get(&self, id: &str) -> Result<Option<Alert>, AlertError>;
    /// Changes an alert's review state and appends the change to its history, in one
    /// transaction; `None` when no alert has this id, [`AlertError::Transition`] when its
    /// current state does not allow the change. The default: not supported.
    fn review(&self, id: &str, change: &ReviewChange) -> Result<Option<Alert>, AlertError> {
        let _ = (id, change);
        Err(AlertError::Other("this store keeps no review state".into()))
    }
    /// How many alerts match `filter` (its state, `after` and `limit` ignored) in each review
    /// state. The default: not supported.
    fn count_by_state(&self, filter: &AlertFilter) -> Result<Vec<(ReviewState, u64)>, AlertError> {
        let _ = filter;
        Err(AlertError::Other("this store keeps no review state".into()))
    }
    /// The notification outbox ([`outbox`]), when this store keeps one. The default: none.
    fn outbox(&self) -> Option<&dyn outbox::Outbox> {
        None
    }
    /// The distinct namespaces of the stored alerts, in name order, at most `max` (the review
    /// listener's namespace-restricted callers). The default: not supported.
    fn namespaces(&self, max: usize) -> Result<Vec<String>, AlertError> {
        let _ = max;
        Err(AlertError::Other(
            "this store cannot list the namespaces of its alerts".into(),
        ))
    }
}

/// The alert store. Reads go to the backend; the webhook's writes go through the writer
/// (see [`start_writer`](Self::start_writer) and [`record_within`](Self::record_within)).
#[derive(Debug, Clone)]
pub struct AlertStore {
    backend: Arc<dyn AlertBackend>,
    writer: Option<Arc<writer::Writer>>,
    /// `alerts.dedupWindow` (None: every alert stored apart).
    dedup: Option<Duration>,
}

impl AlertStore {
    /// Opens (creating if needed) the SQLite store in `data_dir`.
    pub fn open(data_dir: &Path) -> Result<AlertStore, AlertError> {
        std::fs::create_dir_all(data_dir).map_err(|source| AlertError::DataDir {
            path: data_dir.display().to_string(),
            source,
        })?;
        let backend = SqliteBackend::open(&data_dir.join(SQLITE_FILE))?;
        Ok(AlertStore::from_backend(Arc::new(backend)))
    }

    /// Opens the store `url` names: SQLite in `data_dir`, PostgreSQL (connecting and
    /// migrating; the password from the URL, `password_file`, `VULNGATE_STORE_PASSWORD` or
    /// `PGPASSWORD`, in that order), or the Kubernetes store with its defaults and the
    /// inferred client (in-cluster, `$KUBECONFIG`, `~/.kube/config`).
    pub fn open_url(
        url: &StoreUrl,
        data_dir: &Path,
        password_file: Option<&Path>,
    ) -> Result<AlertStore, AlertError> {
        match url {
            StoreUrl::Sqlite => AlertStore::open(data_dir),
            StoreUrl::Postgres(u) => Ok(AlertStore::from_backend(Arc::new(PostgresBackend::open(
                u,
                password_file,
            )?))),
            StoreUrl::Kubernetes => Ok(AlertStore::from_backend(Arc::new(
                KubernetesBackend::open(None, &KubernetesStoreConfig::default())?,
            ))),
        }
    }

    /// Opens the store a configuration names (`store`, `dataDir`, `storePasswordFile`; for
    /// `store: kubernetes` the client of `kubernetes.kubeconfig` and `kubernetesStore`).
    pub fn open_config(config: &crate::Config) -> Result<AlertStore, AlertError> {
        match &config.store {
            StoreUrl::Kubernetes => {
                let kubeconfig = config
                    .kubernetes
                    .as_ref()
                    .and_then(|k| k.kubeconfig.as_deref());
                Ok(AlertStore::from_backend(Arc::new(KubernetesBackend::open(
                    kubeconfig,
                    &config.kubernetes_store,
                )?)))
            }
            url => {
                AlertStore::open_url(url, &config.data_dir, config.store_password_file.as_deref())
            }
        }
    }

    pub fn from_backend(backend: Arc<dyn AlertBackend>) -> AlertStore {
        AlertStore {
            backend,
            writer: None,
            dedup: None,
        }
    }

    /// This store de-duplicating within `window` (`alerts.dedupWindow`; zero: off). Set
    /// before [`start_writer`](Self::start_writer).
    pub fn with_dedup_window(mut self, window: Duration) -> AlertStore {
        self.dedup = (!window.is_zero()).then_some(window);
        self
    }

    /// This store with its writer running: a thread with a bounded queue and group commit,
    /// and the journal `alerts.journal` in `data_dir` (replayed now and every
    /// `replayInterval`). Already started: unchanged.
    pub fn start_writer(
        self,
        cfg: &AlertWriterConfig,
        data_dir: &Path,
        metrics: AlertMetrics,
    ) -> Result<AlertStore, AlertError> {
        if self.writer.is_some() {
            return Ok(self);
        }
        let w = writer::Writer::start(self.backend.clone(), cfg, data_dir, metrics, self.dedup)?;
        Ok(AlertStore {
            backend: self.backend,
            writer: Some(Arc::new(w)),
            dedup: self.dedup,
        })
    }

    pub fn record(&self, alerts: &[Alert]) -> Result<(), AlertError> {
        if alerts.is_empty() {
            return Ok(());
        }
        match self.dedup {
            Some(w) => self.backend.record_merged(alerts, w).map(|_| ()),
            None => self.backend.record(alerts),
        }
    }

    /// Makes `alerts` durable without waiting past `deadline` for the store: with the writer
    /// started, committed by it (group commit) if it can before `deadline`, else appended to
    /// the journal and fsync'd (replayed into the store later). Err only when neither took
    /// them (journal full or off, disk error): the caller applies its failure policy. Without
    /// a writer: [`record`](Self::record) on the blocking pool, bounded by nothing but the
    /// backend.
    ///
    /// The alerts are shared, not copied: the caller keeps its reference for its log lines and
    /// metrics, and the writer drops its own before it answers, so that the alerts are freed
    /// on the request's thread (a free from the writer thread is a cross-thread free; measured
    /// in the deny storm, docs/benchmarks.md).
    pub async fn record_within(
        &self,
        alerts: impl Into<Arc<[Alert]>>,
        deadline: tokio::time::Instant,
    ) -> Result<Durable, AlertError> {
        let alerts: Arc<[Alert]> = alerts.into();
        if alerts.is_empty() {
            return Ok(Durable::Stored);
        }
        if let Some(w) = &self.writer {
            return w.record(alerts, deadline).await;
        }
        let store = self.clone();
        tokio::task::spawn_blocking(move || store.record(&alerts))
            .await
            .map_err(|e| AlertError::Other(format!("writer task failed: {e}")))??;
        Ok(Durable::Stored)
    }

    /// [`record_within`](Self::record_within) with `alertWriter.writeTimeout` as the deadline
    /// (for writers without a request deadline, such as the runtime re-evaluation).
    pub async fn record_async(&self, alerts: impl Into<Arc<[Alert]>>) -> Result<(), AlertError> {
        let deadline = match &self.writer {
            Some(w) => w.default_deadline(),
            None => tokio::time::Instant::now() + Duration::from_secs(3600),
        };
        self.record_within(alerts, deadline).await.map(|_| ())
    }

    /// Alerts matching `filter`, newest first.
    pub fn list(&self, filter: &AlertFilter) -> Result<Vec<Alert>, AlertError> {
        self.backend.list(filter)
    }

    pub fn get(&self, id: &str) -> Result<Option<Alert>, AlertError> {
        self.backend.get(id)
    }

    /// See [`AlertBackend::review`].
    pub fn review(&self, id: &str, change: &ReviewChange) -> Result<Option<Alert>, AlertError> {
        self.backend.review(id, change)
    }

    /// The store's notification outbox (SQLite and PostgreSQL).
    pub fn outbox(&self) -> Option<&dyn outbox::Outbox> {
        self.backend.outbox()
    }

    /// See [`AlertBackend::namespaces`].
    pub fn namespaces(&self, max: usize) -> Result<Vec<String>, AlertError> {
        self.backend.namespaces(max)
    }

    /// See [`AlertBackend::count_by_state`].
    pub fn count_by_state(
        &self,
        filter: &AlertFilter,
    ) -> Result<Vec<(ReviewState, u64)>, AlertError> {
        self.backend.count_by_state(filter)
    }
}

/// Fixed-width RFC 3339 (sorts as text).
pub(crate) fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// How often an alert was seen once it absorbed repeats: its `count`, `lastSeen` and `kinds`,
/// kept in their own small row (`alert_counts`, migration 7) in the SQL stores, not in the
/// alert's `data`. Absorbing a repeat then writes that row instead of decoding, re-encoding
/// and rewriting the whole alert (its violations and rule snapshot): in a deny storm, the
/// writer thread's largest cost (docs/benchmarks.md, deny storm).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Seen {
    pub count: u64,
    pub last_seen: Option<DateTime<Utc>>,
    pub kinds: Vec<String>,
}

impl Seen {
    /// As `a` stands (before it absorbs anything more).
    pub(crate) fn of(a: &Alert) -> Seen {
        let mut kinds = a.kinds.clone();
        if kinds.is_empty() {
            kinds.push(a.kind.clone());
        }
        Seen {
            count: a.count.max(1),
            last_seen: a.last_seen,
            kinds,
        }
    }

    /// Counts the repeat `r` in ([`Alert::absorb`]'s rule, over the counts alone).
    pub(crate) fn absorb(&mut self, first_time: DateTime<Utc>, r: &Alert) {
        self.count = self.count.saturating_add(r.count.max(1));
        let last = r.last_seen.unwrap_or(r.time).max(r.time);
        self.last_seen = Some(self.last_seen.unwrap_or(first_time).max(last));
        for k in std::iter::once(&r.kind).chain(&r.kinds) {
            if !self.kinds.contains(k) {
                self.kinds.push(k.clone());
            }
        }
    }

    /// The `alert_counts` row's columns: count, lastSeen (RFC 3339), kinds (a JSON array).
    pub(crate) fn columns(&self) -> (i64, Option<String>, String) {
        (
            i64::try_from(self.count).unwrap_or(i64::MAX),
            // Nanoseconds, as the alert's own data keeps times (not an index key).
            self.last_seen
                .map(|t| t.to_rfc3339_opts(SecondsFormat::Nanos, true)),
            serde_json::to_string(&self.kinds).unwrap_or_else(|_| "[]".into()),
        )
    }

    /// Reads an `alert_counts` row (`id` names the alert in errors).
    pub(crate) fn from_columns(
        id: &str,
        count: i64,
        last_seen: Option<&str>,
        kinds: &str,
    ) -> Result<Seen, AlertError> {
        let corrupt = |message: String| AlertError::Corrupt {
            id: id.to_string(),
            message,
        };
        Ok(Seen {
            count: u64::try_from(count).map_err(|_| corrupt(format!("count {count}")))?,
            last_seen: last_seen
                .map(|t| {
                    DateTime::parse_from_rfc3339(t)
                        .map(|t| t.with_timezone(&Utc))
                        .map_err(|e| corrupt(format!("lastSeen {t:?}: {e}")))
                })
                .transpose()?,
            kinds: serde_json::from_str(kinds).map_err(|e| corrupt(format!("kinds: {e}")))?,
        })
    }

    /// Puts these counts on the alert read from `data`.
    pub(crate) fn apply(self, a: &mut Alert) {
        a.count = self.count;
        a.last_seen = self.last_seen;
        a.kinds = self.kinds;
    }
}

/// The alert that absorbs a key's repeats in one merge transaction (the SQLite and the
/// PostgreSQL store's `merge`): its id and time, its counts, and for which alert it was
/// looked up. The SQLite store keeps them from one transaction to the next (its merge cache).
#[derive(Debug)]
pub(crate) struct Held {
    pub id: String,
    pub time: DateTime<Utc>,
    pub seen: Seen,
    /// The time of the alert it was looked up (or inserted) for.
    pub looked_up_for: DateTime<Utc>,
    /// Absorbed a repeat since it was read: its counts row is to be written.
    pub dirty: bool,
}

impl Held {
    /// `a`, just inserted: the earliest of its key for any later alert of the batch whose
    /// window still reaches it.
    pub(crate) fn inserted(a: &Alert) -> Held {
        Held {
            id: a.id.clone(),
            time: a.time,
            seen: Seen::of(a),
            looked_up_for: a.time,
            dirty: false,
        }
    }

    /// Whether the store's lookup for an alert at `time` (the earliest alert of the key in
    /// `[lo, hi]`) would give this one: the lookup was for an earlier time and this alert is
    /// still in the window. (For an earlier `time` an older alert could be in the window: look
    /// it up again.)
    pub(crate) fn answers(
        &self,
        time: DateTime<Utc>,
        lo: DateTime<Utc>,
        hi: DateTime<Utc>,
    ) -> bool {
        time >= self.looked_up_for && self.time >= lo && self.time <= hi
    }
}

/// `[t - window, t + window]`, saturating: the times of the alerts that may absorb `t`'s.
pub(crate) fn window_bounds(
    t: DateTime<Utc>,
    window: chrono::Duration,
) -> (DateTime<Utc>, DateTime<Utc>) {
    (
        t.checked_sub_signed(window).unwrap_or(t),
        t.checked_add_signed(window).unwrap_or(t),
    )
}

/// Decodes an alert's `data` and puts its `alert_counts` row on it, when it has one.
pub(crate) fn decode_seen(
    id: &str,
    data: &str,
    seen: (Option<i64>, Option<String>, Option<String>),
) -> Result<Alert, AlertError> {
    let mut a = decode(id, data)?;
    if let (Some(count), last, Some(kinds)) = seen {
        Seen::from_columns(id, count, last.as_deref(), &kinds)?.apply(&mut a);
    }
    Ok(a)
}

pub(crate) fn decode(id: &str, data: &str) -> Result<Alert, AlertError> {
    serde_json::from_str(data).map_err(|e| AlertError::Corrupt {
        id: id.to_string(),
        message: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alert(id: &str, action: AlertAction, ns: &str) -> Alert {
        Alert {
            id: id.into(),
            time: Utc::now(),
            action,
            origin: AlertOrigin::Admission,
            decision: Outcome::Deny,
            cluster: None,
            namespace: Some(ns.into()),
            kind: "Deployment".into(),
            name: Some("web".into()),
            operation: "CREATE".into(),
            user: Some("alice".into()),
            request_uid: "u1".into(),
            image: "nginx:1.25".into(),
            digest: None,
            rule: Some("r".into()),
            rule_snapshot: None,
            rules_version: None,
            vulnerability: None,
            counts: SeverityCounts::default(),
            report: None,
            unscanned: None,
            reason: "because".into(),
            dry_run: false,
            break_glass: None,
            workload_kind: None,
            workload_name: None,
            count: 1,
            last_seen: None,
            kinds: Vec::new(),
            explanation: Explanation::default(),
            review: Review::default(),
        }
    }

    /// Regression (deny storm): absorbing a repeat decoded, re-encoded and rewrote the whole
    /// absorbing alert in each batch. Now its counts go to `alert_counts` and its `data` is
    /// never written again; list and get read the counts back.
    #[test]
    fn a_repeat_writes_its_counts_not_the_alert() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("alerts.db");
        let store = sqlite::SqliteBackend::open(&path).unwrap();
        let window = std::time::Duration::from_secs(3600);
        let t0 = Utc::now();
        let first = alert("first", AlertAction::Deny, "prod");
        assert_eq!(
            store
                .record_merged(std::slice::from_ref(&first), window)
                .unwrap(),
            1
        );
        let raw = rusqlite::Connection::open(&path).unwrap();
        let data = |id: &str| -> String {
            raw.query_row("SELECT data FROM alerts WHERE id = ?1", [id], |r| r.get(0))
                .unwrap()
        };
        let before = data("first");
        // Three repeats in two batches: a ReplicaSet's and two Pods'.
        let repeat = |id: &str, kind: &str, secs: i64| {
            let mut a = alert(id, AlertAction::Deny, "prod");
            a.kind = kind.into();
            a.workload_kind = Some("Deployment".into());
            a.time = t0 + chrono::Duration::seconds(secs);
            a
        };
        let batch1 = [repeat("r1", "ReplicaSet", 1), repeat("r2", "Pod", 2)];
        assert_eq!(store.record_merged(&batch1, window).unwrap(), 2);
        let last = repeat("r3", "Pod", 3);
        assert_eq!(
            store
                .record_merged(std::slice::from_ref(&last), window)
                .unwrap(),
            1
        );
        assert_eq!(data("first"), before, "the absorbing alert was rewritten");
        let got = store
            .get("r2")
            .unwrap()
            .expect("the repeat names its absorber");
        assert_eq!(got.id, "first");
        assert_eq!(got.count, 4);
        assert_eq!(got.last_seen, Some(last.time));
        assert_eq!(got.kinds, ["Deployment", "ReplicaSet", "Pod"]);
        let listed = store.list(&AlertFilter::default()).unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(
            (listed[0].count, listed[0].last_seen, &listed[0].kinds),
            (got.count, got.last_seen, &got.kinds)
        );
        // A replay of a repeat counts nothing twice.
        assert_eq!(store.record_merged(&[last], window).unwrap(), 0);
        assert_eq!(store.get("first").unwrap().unwrap().count, 4);
    }

    /// The SQLite merge keeps each key's absorbing alert and counts between transactions.
    /// Regression for that cache: it must not outlive a change by another connection (here a
    /// second process's store on the same file) or an insert outside the merge.
    #[test]
    fn the_merge_cache_follows_other_writers() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("alerts.db");
        let a = sqlite::SqliteBackend::open(&path).unwrap();
        let b = sqlite::SqliteBackend::open(&path).unwrap();
        let window = std::time::Duration::from_secs(3600);
        let t0 = Utc::now();
        let at = |id: &str, secs: i64| {
            let mut x = alert(id, AlertAction::Deny, "prod");
            x.time = t0 + chrono::Duration::seconds(secs);
            x
        };
        assert_eq!(a.record_merged(&[at("first", 0)], window).unwrap(), 1);
        assert_eq!(a.record_merged(&[at("r1", 1)], window).unwrap(), 1);
        // The other process absorbs a repeat: its count must not be lost by `a`'s next merge.
        assert_eq!(b.record_merged(&[at("r2", 2)], window).unwrap(), 1);
        assert_eq!(a.record_merged(&[at("r3", 3)], window).unwrap(), 1);
        assert_eq!(a.get("first").unwrap().unwrap().count, 4);
        // An earlier alert of the key stored outside the merge is the absorber from then on.
        a.record(&[at("earlier", -5)]).unwrap();
        assert_eq!(a.record_merged(&[at("r4", 4)], window).unwrap(), 1);
        assert_eq!(a.get("r4").unwrap().unwrap().id, "earlier");
        // The same through the other process.
        b.record(&[at("earliest", -9)]).unwrap();
        assert_eq!(a.record_merged(&[at("r5", 5)], window).unwrap(), 1);
        assert_eq!(a.get("r5").unwrap().unwrap().id, "earliest");
        assert_eq!(a.get("first").unwrap().unwrap().count, 4);
    }

    /// The writer's hint: an alert marked unstored is not looked up by id; one that is not
    /// marked is, and a replay of a stored alert or repeat adds nothing.
    #[test]
    fn a_hinted_merge_looks_up_only_unmarked_alerts() {
        let dir = tempfile::tempdir().unwrap();
        let store = sqlite::SqliteBackend::open(&dir.path().join("alerts.db")).unwrap();
        let window = std::time::Duration::from_secs(3600);
        let first = alert("first", AlertAction::Deny, "prod");
        let mut again = alert("again", AlertAction::Deny, "prod");
        again.time = first.time + chrono::Duration::seconds(1);
        let batch = [&first, &again];
        assert_eq!(
            store
                .record_merged_hinted(&batch, &[true, true], window)
                .unwrap(),
            2
        );
        assert_eq!(
            store
                .record_merged_hinted(&batch, &[false, false], window)
                .unwrap(),
            0
        );
        assert_eq!(store.get("first").unwrap().unwrap().count, 2);
    }

    /// An alert stored before migration 7 holds its counts in its data: they stand until it
    /// absorbs a repeat, which then counts on from them.
    #[test]
    fn counts_stored_in_an_alerts_data_carry_on() {
        let dir = tempfile::tempdir().unwrap();
        let store = sqlite::SqliteBackend::open(&dir.path().join("alerts.db")).unwrap();
        let window = std::time::Duration::from_secs(3600);
        let mut old = alert("old", AlertAction::Deny, "prod");
        old.count = 5;
        old.last_seen = Some(old.time + chrono::Duration::seconds(5));
        old.kinds = vec!["Deployment".into(), "Pod".into()];
        store.record(std::slice::from_ref(&old)).unwrap();
        let got = store.get("old").unwrap().unwrap();
        assert_eq!((got.count, got.last_seen), (5, old.last_seen));
        let mut r = alert("again", AlertAction::Deny, "prod");
        r.kind = "ReplicaSet".into();
        r.workload_kind = Some("Deployment".into());
        r.time = old.time + chrono::Duration::seconds(10);
        assert_eq!(store.record_merged(&[r.clone()], window).unwrap(), 1);
        let got = store.get("old").unwrap().unwrap();
        assert_eq!(got.count, 6);
        assert_eq!(got.last_seen, Some(r.time));
        assert_eq!(got.kinds, ["Deployment", "Pod", "ReplicaSet"]);
    }

    /// Regression: with STAT4 compiled in, SQLite re-prepared a merge statement on every step
    /// (rebinding a range bound), 5% of the server's CPU in a deny storm.
    #[test]
    fn merge_statements_are_prepared_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = sqlite::SqliteBackend::open(&dir.path().join("alerts.db")).unwrap();
        let window = std::time::Duration::from_secs(300);
        for batch in 0..3 {
            let mut alerts = Vec::new();
            for i in 0..20 {
                let mut a = alert(&format!("b{batch}-{i}"), AlertAction::Deny, "prod");
                a.time = Utc::now() + chrono::Duration::milliseconds(i);
                alerts.push(a);
            }
            // A second key, so that the lookup runs with different values.
            alerts.push(alert(&format!("b{batch}-other"), AlertAction::Deny, "dev"));
            assert_eq!(store.record_merged(&alerts, window).unwrap(), alerts.len());
        }
        assert_eq!(
            store.list(&AlertFilter::default()).unwrap().len(),
            2,
            "each key is one alert"
        );
        let counts = store.merge_reprepares();
        assert!(
            counts.iter().all(|(_, n)| *n == 0),
            "statements re-prepared: {counts:?}"
        );
    }

    #[test]
    fn namespaces_are_distinct_sorted_and_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let store = sqlite::SqliteBackend::open(&dir.path().join("alerts.db")).unwrap();
        let mut alerts: Vec<Alert> = [("1", "shop"), ("2", "dev"), ("3", "shop"), ("4", "tools")]
            .iter()
            .map(|(id, ns)| alert(id, AlertAction::Deny, ns))
            .collect();
        let mut cluster_scoped = alert("5", AlertAction::Audit, "x");
        cluster_scoped.namespace = None;
        alerts.push(cluster_scoped);
        store.record(&alerts).unwrap();
        assert_eq!(store.namespaces(10).unwrap(), ["dev", "shop", "tools"]);
        assert_eq!(store.namespaces(2).unwrap(), ["dev", "shop"]);
        assert!(store.namespaces(0).unwrap().is_empty());
    }

    /// Regression: without statistics SQLite walked `alerts_action` (3 values) for namespace +
    /// rule + action + since, 104 ms p50 over 1,000,000 alerts (examples/alerts_scale.rs);
    /// the low-cardinality columns now only filter when a selective one is given.
    #[test]
    fn list_leads_with_a_selective_index() {
        let dir = tempfile::tempdir().unwrap();
        let store = sqlite::SqliteBackend::open(&dir.path().join("alerts.db")).unwrap();
        let mut alerts = Vec::new();
        for (i, (action, ns)) in [
            (AlertAction::Audit, "prod"),
            (AlertAction::Deny, "prod"),
            (AlertAction::Audit, "dev"),
        ]
        .into_iter()
        .enumerate()
        {
            let mut a = alert(&format!("a{i}"), action, ns);
            a.rule = Some("r1".into());
            alerts.push(a);
        }
        store.record(&alerts).unwrap();
        let f = AlertFilter {
            namespace: Some("prod".into()),
            rule: Some("r1".into()),
            action: Some(AlertAction::Audit),
            state: Some(ReviewState::Open),
            since: Some(Utc::now() - chrono::Duration::days(30)),
            limit: Some(100),
            ..AlertFilter::default()
        };
        let plan = store.list_plan(&f).join("; ");
        assert!(
            !plan.contains("alerts_action") && !plan.contains("alerts_state"),
            "a low-cardinality index leads: {plan}"
        );
        assert!(plan.contains("alerts_namespace"), "{plan}");
        let ids: Vec<String> = store.list(&f).unwrap().into_iter().map(|a| a.id).collect();
        assert_eq!(ids, ["a0"]);
        // Alone, a low-cardinality filter may still use its index (nothing better to lead).
        let only_action = AlertFilter {
            action: Some(AlertAction::Deny),
            ..AlertFilter::default()
        };
        let ids: Vec<String> = store
            .list(&only_action)
            .unwrap()
            .into_iter()
            .map(|a| a.id)
            .collect();
        assert_eq!(ids, ["a1"]);
    }

    /// The image filter's per-image plan (alerts/query.rs) gives what the substring test
    /// gives, page after page, and the same counts; an unknown image nothing; more matching
    /// references than the plan takes fall back to the substring test.
    #[test]
    fn image_filter_reads_per_image_and_agrees_with_the_substring_test() {
        let dir = tempfile::tempdir().unwrap();
        let store = sqlite::SqliteBackend::open(&dir.path().join("alerts.db")).unwrap();
        let t0 = Utc::now() - chrono::Duration::hours(1);
        let mut all = Vec::new();
        for (k, image) in ["reg/a/app:1", "reg/a/app:2", "reg/b/app:1"]
            .iter()
            .enumerate()
        {
            for i in 0..10i64 {
                let mut a = alert(&format!("i{k}-{i:02}"), AlertAction::Deny, "prod");
                a.image = image.to_string();
                // Two alerts share each time, so the id breaks ties across images.
                a.time = t0 + chrono::Duration::seconds(i * 2 + (k as i64 % 2));
                all.push(a);
            }
        }
        store.record(&all).unwrap();
        let mut expected: Vec<&Alert> = all.iter().filter(|a| a.image.contains("reg/a")).collect();
        expected.sort_by(|x, y| (y.time, &y.id).cmp(&(x.time, &x.id)));
        let expected: Vec<&str> = expected.iter().map(|a| a.id.as_str()).collect();
        let mut f = AlertFilter {
            image: Some("reg/a".into()),
            limit: Some(6),
            ..AlertFilter::default()
        };
        assert!(store.list_plan(&f).join("; ").contains("alerts_image"));
        let mut got = Vec::new();
        loop {
            let page = store.list(&f).unwrap();
            got.extend(page.iter().map(|a| a.id.clone()));
            match page.last() {
                Some(last) if page.len() == 6 => f.after = Some(Cursor::after(last)),
                _ => break,
            }
        }
        assert_eq!(got, expected);
        let counts = store.count_by_state(&f).unwrap();
        assert_eq!(counts[0], (ReviewState::Open, 20));
        let none = AlertFilter {
            image: Some("zzz".into()),
            ..AlertFilter::default()
        };
        assert!(store.list(&none).unwrap().is_empty());
        assert_eq!(
            store.count_by_state(&none).unwrap()[0],
            (ReviewState::Open, 0)
        );

        let many: Vec<Alert> = (0..=query::MAX_IMAGE_BRANCHES)
            .map(|i| {
                let mut a = alert(&format!("m{i:03}"), AlertAction::Deny, "dev");
                a.image = format!("reg/many/app{i}:1");
                a
            })
            .collect();
        store.record(&many).unwrap();
        let f = AlertFilter {
            image: Some("reg/many".into()),
            ..AlertFilter::default()
        };
        assert!(!store.list_plan(&f).join("; ").contains("alerts_image"));
        assert_eq!(store.list(&f).unwrap().len(), many.len());
    }

    #[test]
    fn record_list_get_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let store = AlertStore::open(dir.path()).unwrap();
        store
            .record(&[
                alert("a", AlertAction::Deny, "prod"),
                alert("b", AlertAction::Audit, "dev"),
            ])
            .unwrap();
        drop(store);
        let store = AlertStore::open(dir.path()).unwrap();
        assert_eq!(store.list(&AlertFilter::default()).unwrap().len(), 2);
        let only = store
            .list(&AlertFilter {
                action: Some(AlertAction::Audit),
                ..Default::default()
            })
            .unwrap();
        assert_eq!(only.len(), 1);
        assert_eq!(only[0].id, "b");
        let by_ns = store
            .list(&AlertFilter {
                namespace: Some("prod".into()),
                image: Some("nginx".into()),
                ..Default::default()
            })
            .unwrap();
        assert_eq!(by_ns[0], alert_with_time(&by_ns[0], "a"));
        assert!(store.get("zzz").unwrap().is_none());
        assert_eq!(store.get("a").unwrap().unwrap().reason, "because");
    }

    #[test]
    fn a_version_2_store_migrates_and_keeps_its_alerts() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(SQLITE_FILE);
        // A store as versions 1 and 2 left it, with an alert written before de-duplication
        // (no count, no key).
        let old = alert("old", AlertAction::Deny, "prod");
        {
            let conn = rusqlite::Connection::open(&path).unwrap();
            conn.execute_batch(migrations::SQLITE_VERSION_TABLE)
                .unwrap();
            for m in &migrations::MIGRATIONS[..2] {
                conn.execute_batch(m.sqlite).unwrap();
                conn.execute(
                    "INSERT INTO schema_migrations VALUES (?1, ?2, '2026-01-01T00:00:00Z')",
                    rusqlite::params![m.version, m.description],
                )
                .unwrap();
            }
            let mut data = serde_json::to_value(&old).unwrap();
            for k in ["count", "lastSeen", "kinds", "workloadKind", "workloadName"] {
                data.as_object_mut().unwrap().remove(k);
            }
            conn.execute(
                "INSERT INTO alerts (id, time, action, namespace, kind, name, operation, image,
                    rule, dry_run, data) VALUES ('old', ?1, 'deny', 'prod', 'Deployment', 'web',
                    'CREATE', 'nginx:1.25', 'r', 0, ?2)",
                rusqlite::params![rfc3339(old.time), data.to_string()],
            )
            .unwrap();
        }
        let store = AlertStore::open(dir.path())
            .unwrap()
            .with_dedup_window(Duration::from_secs(3600));
        let got = store.get("old").unwrap().unwrap();
        assert_eq!((got.count, got.kinds.len()), (1, 0));
        // Alerts from before have no key: a repeat of theirs starts a new alert, whose own
        // repeats it then absorbs.
        store
            .record(&[alert("new", AlertAction::Deny, "prod")])
            .unwrap();
        store
            .record(&[alert("new2", AlertAction::Deny, "prod")])
            .unwrap();
        let all = store.list(&AlertFilter::default()).unwrap();
        let mut counts: Vec<(String, u64)> = all.into_iter().map(|a| (a.id, a.count)).collect();
        counts.sort();
        assert_eq!(counts, vec![("new".into(), 2), ("old".into(), 1)]);
    }

    fn alert_with_time(stored: &Alert, id: &str) -> Alert {
        Alert {
            time: stored.time,
            ..alert(id, AlertAction::Deny, "prod")
        }
    }
}
