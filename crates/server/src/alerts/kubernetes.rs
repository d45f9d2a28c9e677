//! The Kubernetes store (`store: kubernetes`): alerts as `Alert` custom resources
//! (`alerts.vulngate.io/v1`, namespaced), shared by every replica and kept across rollouts,
//! readable with `kubectl get alerts.vulngate.io -A` and governed by RBAC per namespace.
//!
//! One object per de-duplication key ([`dedup_key`]: cluster, namespace, workload, image
//! digest, rule, action) and de-duplication window (`alerts.dedupWindow`: a repeat after
//! the window starts a new object of the key, `a-<hex>-2`..., as the SQL stores start a new
//! alert; `write.rs`), named from it ([`object_name`]), so replicas converge: a write
//! creates the object, or on 409 AlreadyExists reads it and updates its status (count,
//! lastSeen, the kinds seen) with its `resourceVersion`, retrying on a conflict. The object's
//! `spec` is the first alert of the key, as serialised (`x-kubernetes-preserve-unknown-fields`:
//! fields added to [`Alert`] later flow through); its `status` (the status subresource) holds
//! the count, first and last seen, the kinds seen, the ids already counted (so a journal
//! replay never counts an alert twice) and the review state with its history. An alert on a
//! cluster-scoped object goes to vulngate's own namespace.
//!
//! Like the PostgreSQL store, the backend owns a current-thread runtime on its own thread
//! where the kube client lives, and answers the synchronous [`AlertBackend`] calls over a
//! channel. Every call is bounded ([`WRITE_TIMEOUT`], [`READ_TIMEOUT`]); what the writer could
//! not store before the answer deadline goes to the local journal (`alerts/writer.rs`).
//!
//! Retention (`retention.rs`, [`spawn_retention`]) runs on the replica holding the leader Lease only: objects
//! last seen more than `retention` ago are deleted, then the oldest beyond `maxObjects`.

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use kube::api::{Api, ListParams, ObjectMeta};
use kube::CustomResource;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::{Alert, AlertBackend, AlertError, AlertFilter};

mod retention;
mod review;
mod write;
pub use retention::{retention_once, spawn_retention, RetentionReport};
pub use write::LABEL_KEY;

/// API group of the Alert custom resource.
pub const GROUP: &str = "vulngate.io";
/// Label on every object this store writes (`app.kubernetes.io/managed-by=vulngate`).
pub const LABEL_MANAGED_BY: &str = "app.kubernetes.io/managed-by";
/// The alert id of the object's first alert (or `h<hash>` when the id is not a label value).
pub const LABEL_ID: &str = "vulngate.io/alert-id";
/// `audit`, `deny` or `break-glass`.
pub const LABEL_ACTION: &str = "vulngate.io/action";
/// `admission` or `runtime`.
pub const LABEL_ORIGIN: &str = "vulngate.io/origin";
/// The deciding rule (when its name is a valid label value).
pub const LABEL_RULE: &str = "vulngate.io/rule";
/// Alert ids remembered per object to keep replays idempotent (the newest are kept).
pub const MAX_RECENT_IDS: usize = 128;
/// Review history entries kept per object (the newest are kept).
pub const MAX_REVIEW_HISTORY: usize = 100;
/// Objects written at once by one batch.
pub const WRITE_CONCURRENCY: usize = 8;
/// Attempts of one object update that keeps losing the `resourceVersion` race.
pub const MAX_CONFLICT_RETRIES: u32 = 10;
/// Upper bound of one write call (a batch of alerts, every object of it).
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Upper bound of one read call (`list`, `get`: every page).
pub const READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Objects per list page.
pub const LIST_PAGE: u32 = 500;
/// Most objects one `list` call reads before it gives up (narrow the filter).
pub const MAX_LISTED: usize = 200_000;
/// Most objects one retention run reads (it works on those when there are more).
pub const MAX_RETENTION_SCAN: usize = 1_000_000;

/// `kubernetesStore:` in vulngate.yaml: the Kubernetes store's namespace and retention.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct KubernetesStoreConfig {
    /// Namespace of alerts on cluster-scoped objects (default `$POD_NAMESPACE`, else
    /// `vulngate`). Alerts on namespaced objects are kept in the object's namespace.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Alerts last seen longer ago than this are deleted (by the leader).
    #[serde(with = "crate::config::duration_str")]
    pub retention: Duration,
    /// At most this many Alert objects are kept; the least recently seen go first.
    pub max_objects: usize,
    /// How often the leader applies the retention.
    #[serde(with = "crate::config::duration_str")]
    pub retention_interval: Duration,
}

impl Default for KubernetesStoreConfig {
    fn default() -> Self {
        KubernetesStoreConfig {
            namespace: None,
            retention: Duration::from_secs(90 * 24 * 3600),
            max_objects: 10_000,
            retention_interval: Duration::from_secs(600),
        }
    }
}

impl KubernetesStoreConfig {
    /// Checks the values (field, message).
    pub fn validate(&self) -> Result<(), (String, String)> {
        let bad = |f: &str, m: &str| Err((format!("kubernetesStore.{f}"), m.to_string()));
        if let Some(ns) = &self.namespace {
            if !is_dns_label(ns) {
                return bad("namespace", "must be a namespace name (a DNS-1123 label)");
            }
        }
        if self.retention < Duration::from_secs(60) {
            return bad("retention", "must be at least 60s");
        }
        if self.max_objects == 0 || self.max_objects > 1_000_000 {
            return bad("maxObjects", "must be between 1 and 1000000");
        }
        if self.retention_interval < Duration::from_secs(1) {
            return bad("retentionInterval", "must be at least 1s");
        }
        Ok(())
    }

    /// The namespace of alerts on cluster-scoped objects.
    pub fn own_namespace(&self) -> String {
        self.namespace
            .clone()
            .filter(|s| !s.is_empty())
            .or_else(|| {
                std::env::var("POD_NAMESPACE")
                    .ok()
                    .filter(|s| !s.is_empty())
            })
            .unwrap_or_else(|| "vulngate".to_string())
    }
}

fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// The Alert custom resource's spec: the first alert of its key, as [`Alert`] serialises.
#[derive(CustomResource, Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[kube(
    group = "vulngate.io",
    version = "v1",
    kind = "Alert",
    plural = "alerts",
    singular = "alert",
    root = "AlertObject",
    namespaced,
    status = "AlertObjectStatus",
    shortname = "vgalert",
    category = "vulngate",
    doc = "A vulngate alert: an audited, denied or break-glass image of a workload, de-duplicated by (cluster, namespace, workload, image digest, rule, action)",
    printcolumn = r#"{"name":"Action","type":"string","jsonPath":".spec.action"}"#,
    printcolumn = r#"{"name":"Workload","type":"string","jsonPath":".spec.workloadName","description":"The top workload (a Pod's Deployment)"}"#,
    printcolumn = r#"{"name":"Kind","type":"string","jsonPath":".spec.kind","description":"The first object admitted: its kind"}"#,
    printcolumn = r#"{"name":"Object","type":"string","jsonPath":".spec.name","description":"The first object admitted: its name"}"#,
    printcolumn = r#"{"name":"Image","type":"string","jsonPath":".spec.image"}"#,
    printcolumn = r#"{"name":"Rule","type":"string","jsonPath":".spec.rule"}"#,
    printcolumn = r#"{"name":"Count","type":"integer","jsonPath":".status.count"}"#,
    printcolumn = r#"{"name":"Review","type":"string","jsonPath":".status.review.state"}"#,
    printcolumn = r#"{"name":"Last Seen","type":"date","jsonPath":".status.lastSeen"}"#
)]
#[serde(transparent)]
pub struct AlertSpec(pub Map<String, Value>);

impl schemars::JsonSchema for AlertSpec {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "AlertSpec".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        // Tolerant: every field of the serialised alert is kept, whatever this version
        // declares; the few declared here are the printer columns'.
        schemars::json_schema!({
            "type": "object",
            "description": "The first alert of this key, as vulngate serialises it (docs/configuration.md)",
            "x-kubernetes-preserve-unknown-fields": true,
            "properties": {
                "id": { "type": "string" },
                "action": { "type": "string" },
                "kind": { "type": "string" },
                "name": { "type": "string" },
                "workloadKind": { "type": "string" },
                "workloadName": { "type": "string" },
                "namespace": { "type": "string" },
                "image": { "type": "string" },
                "digest": { "type": "string" },
                "rule": { "type": "string" },
                "time": { "type": "string", "format": "date-time" }
            }
        })
    }
}

/// The review state of an alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ReviewState {
    #[default]
    Open,
    Acknowledged,
    Resolved,
}

/// One review step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReviewEntry {
    pub state: ReviewState,
    pub at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// The review of an alert: its state and how it got there (newest last).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Review {
    pub state: ReviewState,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<ReviewEntry>,
    /// Fields of a newer version, kept as they are.
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

/// The Alert custom resource's status (the status subresource).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AlertObjectStatus {
    /// Alerts of this key counted (the first included).
    #[serde(default)]
    pub count: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_seen: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_seen: Option<DateTime<Utc>>,
    /// The object kinds the alerts were raised on (sorted).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub kinds: Vec<String>,
    /// The ids of the newest counted alerts (at most [`MAX_RECENT_IDS`]): a replayed alert
    /// is not counted twice.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub recent_ids: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub review: Option<Review>,
    /// Fields of a newer version, kept as they are.
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

impl schemars::JsonSchema for AlertObjectStatus {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "AlertObjectStatus".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        let tolerant_object = |props: Value| {
            serde_json::json!({
                "type": "object",
                "x-kubernetes-preserve-unknown-fields": true,
                "properties": props
            })
        };
        let strings = serde_json::json!({ "type": "array", "items": { "type": "string" } });
        let time = serde_json::json!({ "type": "string", "format": "date-time" });
        let entry = tolerant_object(serde_json::json!({
            "state": { "type": "string" },
            "at": time,
            "by": { "type": "string" },
            "note": { "type": "string" }
        }));
        let review = tolerant_object(serde_json::json!({
            "state": { "type": "string", "description": "open, acknowledged or resolved" },
            "history": { "type": "array", "items": entry }
        }));
        let mut status = tolerant_object(serde_json::json!({
            "count": { "type": "integer", "format": "int64", "minimum": 0 },
            "firstSeen": time,
            "lastSeen": time,
            "kinds": strings,
            "recentIds": strings,
            "review": review
        }));
        if let Some(m) = status.as_object_mut() {
            m.insert(
                "description".into(),
                "Count, first and last seen, kinds seen and the review state".into(),
            );
        }
        schemars::Schema::try_from(status).unwrap_or_default()
    }
}

/// The de-duplication key of an alert: [`Alert::dedup_key`] (cluster, namespace, top
/// workload, image digest or the image as written, rule, action), the SQL stores' key.
pub fn dedup_key(a: &Alert) -> String {
    // The stores' one key (cluster, namespace, top workload, digest, rule, action); an alert
    // without a workload name keeps the key of what it names.
    if let Some(k) = a.dedup_key() {
        return k;
    }
    let image = a.digest.as_deref().unwrap_or(&a.image);
    serde_json::json!([
        "v1",
        a.cluster,
        a.namespace,
        a.kind,
        a.name,
        image,
        a.rule,
        a.action.as_str(),
    ])
    .to_string()
}

/// The object name of an alert's key: `a-` and the first 32 hex digits of its SHA-256 (a
/// valid DNS-1123 name whatever the key holds).
pub fn object_name(a: &Alert) -> String {
    let d = Sha256::digest(dedup_key(a).as_bytes());
    let hex: String = d[..16].iter().map(|b| format!("{b:02x}")).collect();
    format!("a-{hex}")
}

/// Whether `s` could be an object name from [`object_name`] (or a later generation of its
/// key, `a-<hex>-<n>`: see `window.rs`).
fn looks_like_object_name(s: &str) -> bool {
    let base = s.get(..34).unwrap_or(s);
    base.len() == 34
        && base.starts_with("a-")
        && base[2..].bytes().all(|b| b.is_ascii_hexdigit())
        && write::generation_of(base, s).is_some()
}

/// Whether `s` is a valid label value (RFC 1123 with `_` and `.`, at most 63 bytes).
fn is_label_value(s: &str) -> bool {
    s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
        && s.bytes().next().is_none_or(|b| b.is_ascii_alphanumeric())
        && s.bytes().last().is_none_or(|b| b.is_ascii_alphanumeric())
}

/// The `vulngate.io/alert-id` label value of an alert id.
pub fn id_label(id: &str) -> String {
    if !id.is_empty() && is_label_value(id) {
        id.to_string()
    } else {
        let d = Sha256::digest(id.as_bytes());
        let hex: String = d[..20].iter().map(|b| format!("{b:02x}")).collect();
        format!("h{hex}")
    }
}

/// The new object of an alert (status empty: it is written next, through the subresource).
fn new_object(
    a: &Alert,
    namespace: &str,
    name: &str,
    key: &str,
) -> Result<AlertObject, AlertError> {
    let Value::Object(spec) = serde_json::to_value(a).map_err(|e| AlertError::Corrupt {
        id: a.id.clone(),
        message: e.to_string(),
    })?
    else {
        return Err(AlertError::Corrupt {
            id: a.id.clone(),
            message: "an alert does not serialise to an object".into(),
        });
    };
    let mut labels = std::collections::BTreeMap::from([
        (LABEL_MANAGED_BY.to_string(), "vulngate".to_string()),
        (LABEL_ID.to_string(), id_label(&a.id)),
        (LABEL_ACTION.to_string(), a.action.as_str().to_string()),
        (LABEL_ORIGIN.to_string(), a.origin.as_str().to_string()),
        (LABEL_KEY.to_string(), key.to_string()),
    ]);
    if let Some(rule) = a.rule.as_deref().filter(|r| is_label_value(r)) {
        labels.insert(LABEL_RULE.to_string(), rule.to_string());
    }
    Ok(AlertObject {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            namespace: Some(namespace.to_string()),
            labels: Some(labels),
            ..Default::default()
        },
        spec: AlertSpec(spec),
        status: None,
    })
}

/// The alert of an object's spec (the first alert of its key).
fn spec_alert(obj: &AlertObject) -> Result<Alert, AlertError> {
    let name = obj.metadata.name.clone().unwrap_or_default();
    serde_json::from_value(Value::Object(obj.spec.0.clone())).map_err(|e| AlertError::Corrupt {
        id: name,
        message: format!("Alert object spec: {e}"),
    })
}

/// The alert an object stands for: its spec, with the status's `count`, `firstSeen`,
/// `lastSeen` and `kinds` laid over it (an [`Alert`] with those fields reads them).
pub fn object_alert(obj: &AlertObject) -> Result<Alert, AlertError> {
    let mut spec = obj.spec.0.clone();
    if let Some(s) = obj.status.as_ref().filter(|s| s.count > 0) {
        spec.insert("count".into(), s.count.into());
        let time = |t: &DateTime<Utc>| Value::String(super::rfc3339(*t));
        if let Some(t) = &s.first_seen {
            spec.insert("firstSeen".into(), time(t));
        }
        if let Some(t) = &s.last_seen {
            spec.insert("lastSeen".into(), time(t));
        }
        if !s.kinds.is_empty() {
            spec.insert("kinds".into(), s.kinds.clone().into());
        }
    }
    let name = obj.metadata.name.clone().unwrap_or_default();
    let mut alert: Alert =
        serde_json::from_value(Value::Object(spec)).map_err(|e| AlertError::Corrupt {
            id: name,
            message: format!("Alert object spec: {e}"),
        })?;
    alert.review = review::alert_review(obj.status.as_ref());
    Ok(alert)
}

/// Counts `alerts` into `status` (ids already counted are skipped); returns how many were
/// new, or the first id already counted when `strict`. "New" is this call's view: when two
/// replicas race on a fresh object, the first alert may be counted by the other's write.
fn merge_status(
    status: &mut AlertObjectStatus,
    first: &Alert,
    alerts: &[&Alert],
    strict: bool,
) -> Result<usize, String> {
    // Created but its status not written yet (just created, or a crash or timeout after the
    // create): the spec's alert is the first one counted.
    let seeded = status.count == 0;
    if seeded {
        status.count = 1;
        status.first_seen = Some(first.time);
        status.last_seen = Some(first.time);
        status.kinds = vec![first.kind.clone()];
        status.recent_ids = vec![first.id.clone()];
    }
    let mut new = 0;
    let mut kinds: BTreeSet<String> = status.kinds.iter().cloned().collect();
    let mut first_credited = false;
    for a in alerts {
        if seeded && !first_credited && a.id == first.id {
            // Counted by the seeding above, on behalf of this call.
            first_credited = true;
            new += 1;
            continue;
        }
        if status.recent_ids.iter().any(|id| id == &a.id) {
            if strict && a.id != first.id {
                return Err(a.id.clone());
            }
            continue;
        }
        new += 1;
        status.count = status.count.saturating_add(1);
        status.recent_ids.push(a.id.clone());
        status.first_seen = Some(status.first_seen.map_or(a.time, |t| t.min(a.time)));
        status.last_seen = Some(status.last_seen.map_or(a.time, |t| t.max(a.time)));
        kinds.insert(a.kind.clone());
    }
    if status.recent_ids.len() > MAX_RECENT_IDS {
        let drop = status.recent_ids.len() - MAX_RECENT_IDS;
        status.recent_ids.drain(..drop);
    }
    status.kinds = kinds.into_iter().collect();
    let last = status.last_seen.unwrap_or(first.time);
    match &mut status.review {
        None => {
            status.review = Some(Review {
                state: ReviewState::Open,
                history: vec![ReviewEntry {
                    state: ReviewState::Open,
                    at: status.first_seen.unwrap_or(first.time),
                    by: None,
                    note: None,
                }],
                other: Map::new(),
            })
        }
        // A resolved alert seen again is open again.
        Some(r) if r.state == ReviewState::Resolved && new > 0 => {
            r.state = ReviewState::Open;
            push_history(
                r,
                ReviewEntry {
                    state: ReviewState::Open,
                    at: last,
                    by: None,
                    note: Some("seen again after it was resolved".into()),
                },
            );
        }
        Some(_) => {}
    }
    Ok(new)
}

fn push_history(r: &mut Review, e: ReviewEntry) {
    r.history.push(e);
    if r.history.len() > MAX_REVIEW_HISTORY {
        let drop = r.history.len() - MAX_REVIEW_HISTORY;
        r.history.drain(..drop);
    }
}

pub(crate) fn api_code(e: &kube::Error) -> Option<u16> {
    match e {
        kube::Error::Api(s) => Some(s.code),
        _ => None,
    }
}

/// The Kubernetes store.
pub struct KubernetesBackend {
    inner: Arc<Inner>,
    handle: tokio::runtime::Handle,
    /// Dropping it stops the runtime thread.
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl fmt::Debug for KubernetesBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KubernetesBackend")
            .field("server", &self.inner.server)
            .field("namespace", &self.inner.namespace)
            .finish_non_exhaustive()
    }
}

struct Inner {
    client: kube::Client,
    /// The API server's URL (for messages).
    server: String,
    /// Where alerts on cluster-scoped objects go.
    namespace: String,
}

impl KubernetesBackend {
    /// Builds the kube client (`kubeconfig`, else in-cluster, `$KUBECONFIG`, `~/.kube/config`)
    /// and checks that the Alert resource is served. Fails when the API server cannot be
    /// reached or the CRD is not installed.
    pub fn open(
        kubeconfig: Option<&Path>,
        cfg: &KubernetesStoreConfig,
    ) -> Result<KubernetesBackend, AlertError> {
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let (handle_tx, handle_rx) = std::sync::mpsc::sync_channel(1);
        std::thread::Builder::new()
            .name("vulngate-kube-alerts".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = handle_tx.send(Err(e.to_string()));
                        return;
                    }
                };
                let _ = handle_tx.send(Ok(rt.handle().clone()));
                // Runs the client and the calls until the backend is dropped.
                let _ = rt.block_on(stop_rx);
            })
            .map_err(|e| other(format!("cannot start the Kubernetes store thread: {e}")))?;
        let handle = handle_rx
            .recv()
            .map_err(|_| other("the Kubernetes store thread did not start".into()))?
            .map_err(|e| other(format!("cannot start the Kubernetes store runtime: {e}")))?;
        let kubeconfig: Option<PathBuf> = kubeconfig.map(Path::to_path_buf);
        let namespace = cfg.own_namespace();
        // The client's connection pool and tasks live on the store's runtime.
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        handle.spawn(async move {
            let k = crate::config::KubernetesConfig {
                kubeconfig,
                ..Default::default()
            };
            let r = tokio::time::timeout(READ_TIMEOUT, async {
                let config = crate::cluster::client_config(&k).await?;
                let server = config.cluster_url.to_string();
                kube::Client::try_from(config).map(|c| (c, server))
            })
            .await;
            let _ = tx.send(r);
        });
        let (client, server) = match rx.recv() {
            Ok(Ok(Ok(c))) => c,
            Ok(Ok(Err(e))) => {
                return Err(kube_err(
                    "(no API server)",
                    format!("cannot build a client: {e}"),
                ))
            }
            Ok(Err(_)) => {
                return Err(kube_err(
                    "(no API server)",
                    "no client configuration within the timeout".into(),
                ))
            }
            Err(_) => return Err(other("the Kubernetes store runtime stopped".into())),
        };
        let backend = KubernetesBackend {
            inner: Arc::new(Inner {
                server,
                client,
                namespace,
            }),
            handle,
            _stop: stop_tx,
        };
        let inner = backend.inner.clone();
        backend.run(READ_TIMEOUT, async move { inner.check().await })?;
        Ok(backend)
    }

    /// Runs `fut` on the store's runtime and waits for it (bounded by `timeout`).
    fn run<T: Send + 'static>(
        &self,
        timeout: Duration,
        fut: impl std::future::Future<Output = Result<T, AlertError>> + Send + 'static,
    ) -> Result<T, AlertError> {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let server = self.inner.server.clone();
        self.handle.spawn(async move {
            let r = match tokio::time::timeout(timeout, fut).await {
                Ok(r) => r,
                Err(_) => Err(kube_err(
                    &server,
                    format!("no answer within {}s", timeout.as_secs()),
                )),
            };
            let _ = tx.send(r);
        });
        rx.recv()
            .map_err(|_| other("the Kubernetes store runtime stopped".into()))?
    }

    /// The namespace of alerts on cluster-scoped objects.
    pub fn own_namespace(&self) -> &str {
        &self.inner.namespace
    }

    /// The status of the object that holds alert `id` (its first alert's id, or its name).
    pub fn status(&self, id: &str) -> Result<Option<AlertObjectStatus>, AlertError> {
        let inner = self.inner.clone();
        let id = id.to_string();
        self.run(READ_TIMEOUT, async move {
            Ok(inner.find(&id).await?.map(|o| o.status.unwrap_or_default()))
        })
    }

    /// Sets the review state of the object that holds alert `id` (its first alert's id, or its
    /// name), with a history entry; false when there is no such alert.
    pub fn review(
        &self,
        id: &str,
        state: ReviewState,
        by: Option<&str>,
        note: Option<&str>,
    ) -> Result<bool, AlertError> {
        let inner = self.inner.clone();
        let id = id.to_string();
        let entry = ReviewEntry {
            state,
            at: Utc::now(),
            by: by.map(str::to_string),
            note: note.map(str::to_string),
        };
        self.run(WRITE_TIMEOUT, async move { inner.review(&id, entry).await })
    }
}

fn other(message: String) -> AlertError {
    AlertError::Other(message)
}

fn kube_err(server: &str, message: String) -> AlertError {
    AlertError::Kubernetes {
        server: server.to_string(),
        message,
    }
}

impl Inner {
    fn err(&self, what: &str, e: kube::Error) -> AlertError {
        kube_err(&self.server, format!("{what}: {e}"))
    }

    fn api(&self, namespace: &str) -> Api<AlertObject> {
        Api::namespaced(self.client.clone(), namespace)
    }

    /// The Alert resource is served.
    async fn check(&self) -> Result<(), AlertError> {
        match self
            .api(&self.namespace)
            .list(&ListParams::default().limit(1))
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if api_code(&e) == Some(404) => Err(kube_err(
                &self.server,
                "the Alert custom resource (alerts.vulngate.io) is not installed: apply the \
                 CustomResourceDefinition that `vulngate install` renders"
                    .into(),
            )),
            Err(e) => Err(self.err("listing alerts.vulngate.io", e)),
        }
    }

    /// The object that holds alert `id`: by name when `id` is an object name, else by the
    /// first alert's id label.
    async fn find(&self, id: &str) -> Result<Option<AlertObject>, AlertError> {
        let all: Api<AlertObject> = Api::all(self.client.clone());
        let lp = if looks_like_object_name(id) {
            ListParams::default().fields(&format!("metadata.name={id}"))
        } else {
            ListParams::default().labels(&format!("{LABEL_ID}={}", id_label(id)))
        };
        let list = all
            .list(&lp)
            .await
            .map_err(|e| self.err("listing alerts.vulngate.io", e))?;
        for o in list.items {
            if o.metadata.name.as_deref() == Some(id)
                || o.spec.0.get("id").and_then(Value::as_str) == Some(id)
            {
                return Ok(Some(o));
            }
        }
        Ok(None)
    }

    async fn review(&self, id: &str, entry: ReviewEntry) -> Result<bool, AlertError> {
        let stored = self
            .change_review(id, |r| {
                r.state = entry.state;
                push_history(r, entry.clone());
                Ok(())
            })
            .await?;
        Ok(stored.is_some())
    }

    async fn list(&self, f: &AlertFilter) -> Result<Vec<Alert>, AlertError> {
        let api: Api<AlertObject> = match &f.namespace {
            Some(ns) if is_dns_label(ns) => self.api(ns),
            Some(_) => return Ok(Vec::new()), // no namespace has that name
            None => Api::all(self.client.clone()),
        };
        let mut selector = vec![format!("{LABEL_MANAGED_BY}=vulngate")];
        if let Some(a) = f.action {
            selector.push(format!("{LABEL_ACTION}={}", a.as_str()));
        }
        if let Some(o) = f.origin {
            selector.push(format!("{LABEL_ORIGIN}={}", o.as_str()));
        }
        if let Some(r) = f.rule.as_deref().filter(|r| is_label_value(r)) {
            selector.push(format!("{LABEL_RULE}={r}"));
        }
        let limit = f.limit.unwrap_or(100);
        let mut out: Vec<Alert> = Vec::new();
        let mut seen = 0usize;
        let mut lp = ListParams::default()
            .labels(&selector.join(","))
            .limit(LIST_PAGE);
        loop {
            let page = api
                .list(&lp)
                .await
                .map_err(|e| self.err("listing alerts.vulngate.io", e))?;
            seen += page.items.len();
            if seen > MAX_LISTED {
                return Err(kube_err(
                    &self.server,
                    format!(
                        "more than {MAX_LISTED} Alert objects match: narrow the filter \
                         (namespace, action, rule)"
                    ),
                ));
            }
            for obj in &page.items {
                let a = object_alert(obj)?;
                if review::matches_filter(&a, f) {
                    out.push(a);
                }
            }
            out.sort_by(|x, y| y.time.cmp(&x.time).then_with(|| y.id.cmp(&x.id)));
            out.truncate(limit);
            match page.metadata.continue_.filter(|c| !c.is_empty()) {
                Some(c) => lp.continue_token = Some(c),
                None => break,
            }
        }
        Ok(out)
    }

    async fn get(&self, id: &str) -> Result<Option<Alert>, AlertError> {
        match self.find(id).await? {
            Some(o) => object_alert(&o).map(Some),
            None => Ok(None),
        }
    }
}

/// Sleep before retry `attempt` of a conflicting update: 10, 20, 40... ms, at most 320 ms,
/// with jitter from the clock so that replicas spread out.
fn backoff(attempt: u32) -> Duration {
    let base = 10u64 << attempt.min(5);
    let jitter = u64::from(Utc::now().timestamp_subsec_micros()) % base.max(1);
    Duration::from_millis(base + jitter / 2)
}

impl KubernetesBackend {
    /// `record_new` (no window) and `record_merged` over alerts the task owns.
    fn record_owned(
        &self,
        alerts: Vec<Alert>,
        window: Option<Duration>,
    ) -> Result<usize, AlertError> {
        let inner = self.inner.clone();
        self.run(WRITE_TIMEOUT, async move {
            inner.record(&alerts, false, window).await
        })
    }
}

impl AlertBackend for KubernetesBackend {
    /// Not a transaction: each object is written on its own; a failed call may have stored
    /// some of the alerts (a retry through `record_new` counts each once).
    fn record(&self, alerts: &[Alert]) -> Result<(), AlertError> {
        let inner = self.inner.clone();
        let alerts = alerts.to_vec();
        self.run(WRITE_TIMEOUT, async move {
            inner.record(&alerts, true, None).await.map(|_| ())
        })
    }

    fn record_new(&self, alerts: &[Alert]) -> Result<usize, AlertError> {
        self.record_owned(alerts.to_vec(), None)
    }

    /// The writer's batch, copied once into the async task (not once more by the default).
    fn record_new_refs(&self, alerts: &[&Alert]) -> Result<usize, AlertError> {
        self.record_owned(alerts.iter().map(|a| (*a).clone()).collect(), None)
    }

    /// With the window: the SQL stores' semantics (a repeat after the window starts a new
    /// object, `window.rs`); zero is no window.
    fn record_merged(&self, alerts: &[Alert], window: Duration) -> Result<usize, AlertError> {
        self.record_owned(alerts.to_vec(), (!window.is_zero()).then_some(window))
    }

    fn record_merged_refs(&self, alerts: &[&Alert], window: Duration) -> Result<usize, AlertError> {
        let alerts = alerts.iter().map(|a| (*a).clone()).collect();
        self.record_owned(alerts, (!window.is_zero()).then_some(window))
    }

    fn list(&self, filter: &AlertFilter) -> Result<Vec<Alert>, AlertError> {
        let inner = self.inner.clone();
        let filter = filter.clone();
        self.run(READ_TIMEOUT, async move { inner.list(&filter).await })
    }

    fn get(&self, id: &str) -> Result<Option<Alert>, AlertError> {
        let inner = self.inner.clone();
        let id = id.to_string();
        self.run(READ_TIMEOUT, async move { inner.get(&id).await })
    }

    /// The review API's change of state: the object's `status.review` (the state checked
    /// against the change, the history appended).
    fn review(&self, id: &str, change: &super::ReviewChange) -> Result<Option<Alert>, AlertError> {
        let inner = self.inner.clone();
        let (id, change) = (id.to_string(), change.clone());
        self.run(WRITE_TIMEOUT, async move {
            inner.review_change(&id, &change).await
        })
    }

    /// Counted over the objects `filter` lists (at most `MAX_LISTED`, as a list).
    fn count_by_state(
        &self,
        filter: &AlertFilter,
    ) -> Result<Vec<(super::ReviewState, u64)>, AlertError> {
        let f = AlertFilter {
            state: None,
            after: None,
            limit: Some(usize::MAX),
            ..filter.clone()
        };
        Ok(review::count_states(&self.list(&f)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alerts::{AlertAction, AlertOrigin};
    use vulngate_core::engine::SeverityCounts;
    use vulngate_core::Outcome;

    fn alert(id: &str, kind: &str, time: i64) -> Alert {
        Alert {
            id: id.into(),
            time: DateTime::from_timestamp(time, 0).unwrap(),
            action: AlertAction::Deny,
            origin: AlertOrigin::Admission,
            decision: Outcome::Deny,
            cluster: Some("prod-1".into()),
            namespace: Some("shop".into()),
            kind: kind.into(),
            name: Some("web".into()),
            operation: "CREATE".into(),
            user: None,
            request_uid: "u".into(),
            image: "nginx:1.25".into(),
            digest: Some("sha256:aa".into()),
            rule: Some("deny-critical".into()),
            rule_snapshot: None,
            rules_version: None,
            vulnerability: None,
            counts: SeverityCounts::default(),
            report: None,
            unscanned: None,
            reason: "r".into(),
            dry_run: false,
            break_glass: None,
            workload_kind: None,
            workload_name: None,
            count: 1,
            last_seen: None,
            kinds: Vec::new(),
            explanation: Default::default(),
            review: Default::default(),
        }
    }

    #[test]
    fn names_are_dns_labels_and_follow_the_key_only() {
        let a = alert("1", "Deployment", 10);
        let n = object_name(&a);
        assert!(is_dns_label(&n) && looks_like_object_name(&n), "{n}");
        // Another id, time, user or request: the same key.
        let mut b = alert("2", "Deployment", 20);
        b.user = Some("bob".into());
        b.request_uid = "other".into();
        b.image = "nginx@sha256:aa".into();
        assert_eq!(object_name(&b), n);
        // Each field of the key changes the name.
        let variants: [fn(&mut Alert); 7] = [
            |a| a.cluster = None,
            |a| a.namespace = Some("dev".into()),
            |a| a.kind = "Pod".into(),
            |a| a.name = Some("api".into()),
            |a| a.digest = Some("sha256:bb".into()),
            |a| a.rule = Some("other".into()),
            |a| a.action = AlertAction::Audit,
        ];
        for change in variants {
            let mut c = alert("3", "Deployment", 10);
            change(&mut c);
            assert_ne!(object_name(&c), n, "{}", dedup_key(&c));
        }
        // No digest: the image as written.
        let mut d = alert("4", "Deployment", 10);
        d.digest = None;
        let mut e = d.clone();
        e.image = "nginx:1.26".into();
        assert_ne!(object_name(&d), object_name(&e));
    }

    #[test]
    fn merge_counts_each_id_once_and_tracks_times_and_kinds() {
        let first = alert("1", "Deployment", 100);
        let mut s = AlertObjectStatus::default();
        let b = alert("2", "ReplicaSet", 50);
        let c = alert("3", "Pod", 200);
        assert_eq!(merge_status(&mut s, &first, &[&first, &b], false), Ok(2));
        assert_eq!(s.count, 2);
        assert_eq!(merge_status(&mut s, &first, &[&b, &c], false), Ok(1));
        assert_eq!(s.count, 3);
        assert_eq!(s.first_seen, Some(b.time));
        assert_eq!(s.last_seen, Some(c.time));
        assert_eq!(s.kinds, vec!["Deployment", "Pod", "ReplicaSet"]);
        assert_eq!(s.review.as_ref().unwrap().state, ReviewState::Open);
        // Strict (`record`): an id already counted is an error.
        assert_eq!(merge_status(&mut s, &first, &[&c], true), Err("3".into()));
    }

    #[test]
    fn a_resolved_alert_seen_again_reopens() {
        let first = alert("1", "Pod", 100);
        let mut s = AlertObjectStatus::default();
        merge_status(&mut s, &first, &[&first], false).unwrap();
        s.review.as_mut().unwrap().state = ReviewState::Resolved;
        merge_status(&mut s, &first, &[&first], false).unwrap();
        assert_eq!(s.review.as_ref().unwrap().state, ReviewState::Resolved);
        merge_status(&mut s, &first, &[&alert("2", "Pod", 300)], false).unwrap();
        let r = s.review.unwrap();
        assert_eq!(r.state, ReviewState::Open);
        assert_eq!(r.history.last().unwrap().at.timestamp(), 300);
    }

    #[test]
    fn recent_ids_are_bounded() {
        let first = alert("0", "Pod", 1);
        let mut s = AlertObjectStatus::default();
        let many: Vec<Alert> = (1..400).map(|i| alert(&i.to_string(), "Pod", i)).collect();
        let refs: Vec<&Alert> = many.iter().collect();
        assert_eq!(merge_status(&mut s, &first, &refs, false), Ok(399));
        assert_eq!(s.count, 400);
        assert_eq!(s.recent_ids.len(), MAX_RECENT_IDS);
        assert_eq!(s.recent_ids.last().map(String::as_str), Some("399"));
    }

    #[test]
    fn unknown_status_fields_survive_a_round_trip() {
        let v = serde_json::json!({
            "count": 2, "recentIds": ["a"], "assignee": "team-a",
            "review": { "state": "acknowledged", "ticket": "JIRA-1" }
        });
        let s: AlertObjectStatus = serde_json::from_value(v).unwrap();
        let back = serde_json::to_value(&s).unwrap();
        assert_eq!(back["assignee"], "team-a");
        assert_eq!(back["review"]["ticket"], "JIRA-1");
        assert_eq!(back["review"]["state"], "acknowledged");
    }

    #[test]
    fn id_labels_are_label_values() {
        assert_eq!(
            id_label("0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"),
            "0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"
        );
        for odd in ["", "-x", "a/b", &"x".repeat(64)] {
            let l = id_label(odd);
            assert!(is_label_value(&l) && l.starts_with('h'), "{odd:?} -> {l}");
        }
    }

    #[test]
    fn config_defaults_and_limits() {
        let c = KubernetesStoreConfig::default();
        assert_eq!(c.retention, Duration::from_secs(90 * 86400));
        assert_eq!(c.max_objects, 10_000);
        assert!(c.validate().is_ok());
        let bad = KubernetesStoreConfig {
            max_objects: 0,
            ..Default::default()
        };
        assert_eq!(bad.validate().unwrap_err().0, "kubernetesStore.maxObjects");
        let bad = KubernetesStoreConfig {
            namespace: Some("Not_A_Namespace".into()),
            ..Default::default()
        };
        assert_eq!(bad.validate().unwrap_err().0, "kubernetesStore.namespace");
    }
}
