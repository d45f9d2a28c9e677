//! Continuous re-evaluation of running workloads.
//!
//! Every `rescanInterval`, on [`Rescanner::trigger`] and whenever the active rule set's
//! version differs from the last scan's (checked every [`VERSION_CHECK`]), the Pods of all
//! namespaces are listed (paged) and each running container's image is evaluated at the
//! digest it actually runs (`status.*containerStatuses[].imageID`), with the webhook's
//! findings cache and the current rules. Registry lookups (cache misses) are limited to
//! `rescanLookupsPerSecond`; cache hits are not.
//!
//! Audit and deny decisions raise `runtime` alerts, once per (namespace, workload,
//! container, digest, rule, decision): the set seen at the last scan is kept in memory, so
//! an unchanged finding is not alerted again, a changed one is. After a restart every
//! finding is alerted once more. Each namespace's results go to every [`ResultSink`].

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use k8s_openapi::api::core::v1::{ContainerStatus, Pod};
use kube::api::{ApiResource, DynamicObject, ListParams};
use kube::Api;
use serde_json::Value;
use tokio::sync::{Mutex, Notify};
use tokio::time::Instant;
use vulngate_core::image::is_valid_digest;
use vulngate_core::owner::{self, OwnerLookup};
use vulngate_core::{Decision, ImageRef, Outcome, RequestContext};

use super::events::{EventSpec, Regarding, REASON_RUNTIME_AUDIT, REASON_RUNTIME_DENY};
use super::leader::Leadership;
use super::pull_secrets::PullSecretRefs;
use super::{ImageResult, ResultSink};
use crate::alerts::{Alert, AlertAction, AlertOrigin};
use crate::config::FailurePolicy;
use crate::record::{self, AlertSubject};
use crate::verdict::{Judge, Lookup, LookupFailure, Verdict};
use crate::{Server, State};

/// How often the rule set version is compared with the last scan's.
pub const VERSION_CHECK: Duration = Duration::from_secs(5);
/// Pods per list page.
pub const PAGE_SIZE: u32 = 500;

/// What one scan did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScanSummary {
    pub rules_version: String,
    /// Running pods evaluated (not excluded).
    pub pods: usize,
    /// Container results.
    pub images: usize,
    /// Registry lookups made (cache misses).
    pub lookups: usize,
    pub lookup_errors: usize,
    /// Runtime alerts raised.
    pub alerts: usize,
    /// Pods skipped because they could not be read.
    pub malformed: usize,
}

/// (namespace, workload kind, workload name, container, digest, rule, decision).
type SeenKey = (String, String, String, String, String, String, String);

#[derive(Debug, Default)]
struct LastScan {
    version: Option<String>,
    seen: HashSet<SeenKey>,
    namespaces: BTreeSet<String>,
    /// Whether the sinks' results from before this process (reports of an earlier run) were
    /// read into `namespaces`: done once, retried at the next scan when listing fails.
    adopted: bool,
}

/// The re-evaluation; cheap to clone.
#[derive(Debug, Clone)]
pub struct Rescanner {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rescanner").finish_non_exhaustive()
    }
}

struct Inner {
    state: Arc<State>,
    client: kube::Client,
    sinks: Vec<Arc<dyn ResultSink>>,
    notify: Notify,
    last: Mutex<LastScan>,
    limiter: Mutex<TokenBucket>,
    page_size: std::sync::atomic::AtomicU32,
}

impl Rescanner {
    /// A re-evaluation of `server`'s cluster through `client`, handing results to `sinks`.
    pub fn new(server: &Server, client: kube::Client, sinks: Vec<Arc<dyn ResultSink>>) -> Self {
        let rate = server
            .state
            .config
            .kubernetes
            .as_ref()
            .map(|k| k.rescan_lookups_per_second)
            .unwrap_or(20)
            .max(1);
        Rescanner {
            inner: Arc::new(Inner {
                state: server.state.clone(),
                client,
                sinks,
                notify: Notify::new(),
                last: Mutex::new(LastScan::default()),
                limiter: Mutex::new(TokenBucket::new(rate)),
                page_size: std::sync::atomic::AtomicU32::new(PAGE_SIZE),
            }),
        }
    }

    /// Pods per list page (default [`PAGE_SIZE`]).
    pub fn set_page_size(&self, n: u32) {
        self.inner
            .page_size
            .store(n.max(1), std::sync::atomic::Ordering::Relaxed);
    }

    /// Asks for a scan now (the rule set changed); the running loop picks it up.
    pub fn trigger(&self) {
        self.inner.notify.notify_one();
    }

    /// Runs the loop: a scan now, then every `rescanInterval`, on [`trigger`](Self::trigger)
    /// and when the rule set version changed. None when `rescanInterval` is 0.
    pub fn spawn(&self) -> Option<tokio::task::JoinHandle<()>> {
        self.spawn_led(Leadership::always())
    }

    /// [`spawn`](Self::spawn), scanning only while `leadership` says this replica is the
    /// leader: a follower waits, and a scan is cut short when leadership is lost (nothing more
    /// is written by this replica; the new leader scans from the start).
    pub fn spawn_led(&self, mut leadership: Leadership) -> Option<tokio::task::JoinHandle<()>> {
        let interval = self
            .inner
            .state
            .config
            .kubernetes
            .as_ref()
            .map(|k| k.rescan_interval)
            .filter(|d| !d.is_zero())?;
        let this = self.clone();
        Some(tokio::spawn(async move {
            let mut check = tokio::time::interval(VERSION_CHECK);
            check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                leadership.until_leader().await;
                tracing::info!("re-evaluating running workloads");
                let mut lost = leadership.clone();
                tokio::select! {
                    res = this.scan_once() => {
                        if let Err(e) = res {
                            tracing::warn!(error = %e, "re-evaluation of running workloads failed");
                        }
                    }
                    _ = lost.until_lost() => {
                        tracing::info!("re-evaluation stopped: this replica is no longer the leader");
                        continue;
                    }
                }
                let next = Instant::now() + interval;
                loop {
                    tokio::select! {
                        _ = tokio::time::sleep_until(next) => break,
                        _ = this.inner.notify.notified() => break,
                        _ = check.tick() => {
                            if this.rules_changed().await {
                                break;
                            }
                        }
                        // Lost, then won again: the new term starts with a scan.
                        _ = lost.until_lost() => break,
                    }
                }
            }
        }))
    }

    async fn rules_changed(&self) -> bool {
        let current = self.inner.state.rules.current().version().to_string();
        self.inner.last.lock().await.version.as_deref() != Some(current.as_str())
    }

    /// One scan of every running pod. Fails only when the pods cannot be listed.
    pub async fn scan_once(&self) -> Result<ScanSummary, kube::Error> {
        let started = Instant::now();
        let res = self.scan().await;
        let metrics = &self.inner.state.metrics;
        metrics.rescan(
            if res.is_ok() { "ok" } else { "error" },
            started.elapsed().as_secs_f64(),
        );
        res
    }

    async fn list_pods(&self) -> Result<(Vec<Pod>, usize), kube::Error> {
        let ar = ApiResource::erase::<Pod>(&());
        let api: Api<DynamicObject> = Api::all_with(self.inner.client.clone(), &ar);
        let mut pods = Vec::new();
        let mut malformed = 0;
        let mut token: Option<String> = None;
        loop {
            let mut lp = ListParams::default().limit(
                self.inner
                    .page_size
                    .load(std::sync::atomic::Ordering::Relaxed),
            );
            if let Some(t) = &token {
                lp = lp.continue_token(t);
            }
            let page = api.list(&lp).await?;
            for obj in page.items {
                let name = obj.metadata.name.clone().unwrap_or_default();
                let ns = obj.metadata.namespace.clone().unwrap_or_default();
                match serde_json::to_value(&obj).and_then(serde_json::from_value::<Pod>) {
                    Ok(p) => pods.push(p),
                    Err(e) => {
                        malformed += 1;
                        tracing::warn!(namespace = %ns, pod = %name, error = %e, "malformed Pod skipped");
                    }
                }
            }
            token = page.metadata.continue_.filter(|t| !t.is_empty());
            if token.is_none() {
                break;
            }
        }
        Ok((pods, malformed))
    }

    async fn scan(&self) -> Result<ScanSummary, kube::Error> {
        let state = &self.inner.state;
        let mut last = self.inner.last.lock().await;
        let rules = state.rules.current();
        let (pods, malformed) = self.list_pods().await?;
        if !last.adopted {
            // A namespace emptied while vulngate was down still has a report: clear it too.
            let mut adopted = true;
            for sink in &self.inner.sinks {
                match sink.existing_namespaces().await {
                    Ok(found) => last.namespaces.extend(found),
                    Err(e) => {
                        adopted = false;
                        tracing::warn!(error = %e, "cannot list existing reports; retried at the next scan");
                    }
                }
            }
            last.adopted = adopted;
        }
        let mut summary = ScanSummary {
            rules_version: rules.version().to_string(),
            malformed,
            ..ScanSummary::default()
        };
        let now = Utc::now();
        let mut lookups: HashMap<String, Lookup> = HashMap::new();
        let mut results: BTreeMap<String, Vec<ImageResult>> = BTreeMap::new();
        let mut seen: HashSet<SeenKey> = HashSet::new();
        let mut alerts: Vec<(SeenKey, Alert, EventSpec)> = Vec::new();
        let (mut allow, mut audit, mut deny, mut unscanned) = (0i64, 0i64, 0i64, 0i64);

        let owners = state.owners.as_deref();
        for pod in &pods {
            let Some(rp) = RunningPod::read(pod, owners.map(|c| c as &dyn OwnerLookup)) else {
                continue;
            };
            if state.config.excluded_namespaces.contains(&rp.namespace) {
                continue;
            }
            summary.pods += 1;
            let credentials = match &state.pull_secrets {
                Some(ps) => ps.credentials(&rp.namespace, &rp.pull_refs).await,
                None => None,
            };
            let ctx = RequestContext {
                cluster: state.config.cluster_name.clone(),
                namespace: Some(rp.namespace.clone()),
                pod: Some(rp.name.clone()),
                workload_kind: Some(rp.workload.kind.clone()),
                workload_name: Some(rp.workload.name.clone()),
                labels: rp.labels.clone(),
                user: None,
                groups: Vec::new(),
            };
            for c in &rp.containers {
                if state.is_skipped(&c.spec_image) {
                    continue;
                }
                let key = c.pinned.normalized();
                if !lookups.contains_key(&key) {
                    let r = match state.cache.peek(&c.pinned).await {
                        Some(a) => Ok(a),
                        None => {
                            self.inner.limiter.lock().await.acquire().await;
                            summary.lookups += 1;
                            match state
                                .cache
                                .get_with_credentials(&c.pinned, credentials.clone())
                                .await
                            {
                                Ok(a) => Ok(a),
                                Err(e) => {
                                    summary.lookup_errors += 1;
                                    state.metrics.rescan_lookup_error();
                                    tracing::warn!(
                                        image = %key, error = %e,
                                        "re-evaluation: findings lookup failed"
                                    );
                                    Err(LookupFailure::Source(e))
                                }
                            }
                        }
                    };
                    lookups.insert(key.clone(), r);
                }
                let lookup = lookups.get(&key).cloned();
                let errored = !matches!(lookup, Some(Ok(_)));
                // Judged as the webhook judges (verdict.rs); a failed lookup counts as
                // unscanned, whatever the failure policy.
                let catalogs = state.catalogs.current();
                let judge = Judge {
                    catalogs: &catalogs,
                    rules: &rules,
                    precedence: state.config.precedence,
                    ctx: &ctx,
                    now,
                    policy: FailurePolicy::Unscanned,
                    pin_resolved: false,
                    max_violations: state.config.alert_writer.max_violations,
                };
                let verdict = judge.verdict(&c.spec_image, lookup, Some(c.pinned.clone()));
                let decision = &verdict.decision;
                match decision.decision {
                    Outcome::Deny => deny += 1,
                    Outcome::Audit => audit += 1,
                    Outcome::Allow if decision.unscanned.is_some() => unscanned += 1,
                    Outcome::Allow => allow += 1,
                }
                summary.images += 1;
                let digest = c.pinned.digest.clone().unwrap_or_default();
                if errored {
                    // No new alert from a failed lookup; what was known stays known.
                    for k in last.seen.iter().filter(|k| {
                        k.0 == rp.namespace
                            && k.1 == rp.workload.kind
                            && k.2 == rp.workload.name
                            && k.3 == c.name
                            && k.4 == digest
                    }) {
                        seen.insert(k.clone());
                    }
                } else if decision.decision != Outcome::Allow {
                    let k: SeenKey = (
                        rp.namespace.clone(),
                        rp.workload.kind.clone(),
                        rp.workload.name.clone(),
                        c.name.clone(),
                        digest.clone(),
                        decision.rule.clone().unwrap_or_default(),
                        decision.decision.as_str().to_string(),
                    );
                    if !last.seen.contains(&k) && !seen.contains(&k) {
                        alerts.push((
                            k.clone(),
                            runtime_alert(&verdict, &ctx, &rp, c),
                            runtime_event(decision, &rp),
                        ));
                    }
                    seen.insert(k);
                }
                results
                    .entry(rp.namespace.clone())
                    .or_default()
                    .push(ImageResult {
                        namespace: rp.namespace.clone(),
                        workload_api_version: rp.workload.api_version.clone(),
                        workload_kind: rp.workload.kind.clone(),
                        workload_name: rp.workload.name.clone(),
                        workload_uid: rp.workload.uid.clone(),
                        pod: Some(rp.name.clone()),
                        container: c.name.clone(),
                        decision: Arc::new(verdict.decision),
                    });
            }
        }

        // Alerts (then Events) for what is new or changed.
        if !alerts.is_empty() {
            let batch = alerts.iter().map(|(_, a, ev)| (a.clone(), ev.clone()));
            match record::runtime(state, batch).await {
                Ok(()) => summary.alerts = alerts.len(),
                Err(e) => {
                    tracing::error!(error = %e, "cannot record runtime alerts; retried at the next scan");
                    for (k, _, _) in &alerts {
                        seen.remove(k);
                    }
                }
            }
        }

        state.metrics.running_images(allow, audit, deny, unscanned);

        // Sinks: every namespace with results, and those that had some last time.
        let namespaces: BTreeSet<String> = results.keys().cloned().collect();
        for ns in namespaces.union(&last.namespaces) {
            let list = results.get(ns).map(Vec::as_slice).unwrap_or(&[]);
            for sink in &self.inner.sinks {
                if let Err(e) = sink.sync_namespace(ns, list).await {
                    tracing::warn!(namespace = %ns, error = %e, "result sink failed");
                }
            }
        }

        *last = LastScan {
            version: Some(rules.version().to_string()),
            seen,
            namespaces,
            adopted: last.adopted,
        };
        tracing::info!(
            rules_version = %summary.rules_version, pods = summary.pods,
            images = summary.images, lookups = summary.lookups,
            lookup_errors = summary.lookup_errors, alerts = summary.alerts,
            "re-evaluation of running workloads done"
        );
        Ok(summary)
    }
}

/// The workload a pod belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    pub api_version: String,
    pub kind: String,
    pub name: String,
    pub uid: Option<String>,
}

/// The workload to report for a pod: its top owner, resolved by the function admission
/// uses ([`vulngate_core::owner::resolve`]), confirmed by the owner watch cache when given.
pub fn resolve_owner(pod: &Pod, lookup: Option<&dyn OwnerLookup>) -> Owner {
    let meta = &pod.metadata;
    let no_labels = BTreeMap::new();
    let owner = owner::controller_of(meta.owner_references.as_deref().unwrap_or(&[]));
    let top = owner::resolve(
        &owner::Object {
            api_version: "v1",
            kind: "Pod",
            name: meta.name.as_deref(),
            namespace: meta.namespace.as_deref(),
            uid: meta.uid.as_deref(),
            labels: meta.labels.as_ref().unwrap_or(&no_labels),
            owner: owner.as_ref(),
        },
        lookup,
    );
    Owner {
        api_version: top.api_version,
        kind: top.kind,
        name: top.name,
        uid: top.uid,
    }
}

/// The digest an `imageID` names: `docker-pullable://repo@sha256:…`, `repo@sha256:…` or
/// `sha256:…`; with the repository when it names one.
pub fn running_digest(image_id: &str) -> Option<(Option<String>, String)> {
    let s = image_id.trim();
    let s = s.strip_prefix("docker-pullable://").unwrap_or(s);
    let (repo, digest) = match s.rsplit_once('@') {
        Some((r, d)) => (Some(r.to_string()), d),
        None => (None, s),
    };
    is_valid_digest(digest).then(|| (repo, digest.to_string()))
}

#[derive(Debug)]
struct RunningContainer {
    name: String,
    spec_image: String,
    pinned: ImageRef,
}

#[derive(Debug)]
struct RunningPod {
    namespace: String,
    name: String,
    uid: Option<String>,
    labels: BTreeMap<String, String>,
    workload: Owner,
    pull_refs: PullSecretRefs,
    containers: Vec<RunningContainer>,
}

impl RunningPod {
    /// A running pod's containers at their running digests; None for pods not running.
    fn read(pod: &Pod, lookup: Option<&dyn OwnerLookup>) -> Option<RunningPod> {
        let name = pod.metadata.name.clone()?;
        let namespace = pod.metadata.namespace.clone()?;
        let status = pod.status.as_ref()?;
        if status.phase.as_deref() != Some("Running") {
            return None;
        }
        let spec = pod.spec.as_ref()?;
        let mut spec_images: HashMap<(&str, &str), &str> = HashMap::new();
        for c in &spec.containers {
            if let Some(i) = c.image.as_deref() {
                spec_images.insert(("c", c.name.as_str()), i);
            }
        }
        for c in spec.init_containers.iter().flatten() {
            if let Some(i) = c.image.as_deref() {
                spec_images.insert(("i", c.name.as_str()), i);
            }
        }
        for c in spec.ephemeral_containers.iter().flatten() {
            if let Some(i) = c.image.as_deref() {
                spec_images.insert(("e", c.name.as_str()), i);
            }
        }
        let lists: [(&str, Option<&Vec<ContainerStatus>>); 3] = [
            ("i", status.init_container_statuses.as_ref()),
            ("c", status.container_statuses.as_ref()),
            ("e", status.ephemeral_container_statuses.as_ref()),
        ];
        let mut containers = Vec::new();
        for (list, statuses) in lists {
            for st in statuses.into_iter().flatten() {
                let Some((repo, digest)) = running_digest(&st.image_id) else {
                    tracing::debug!(namespace = %namespace, pod = %name, container = %st.name,
                        image_id = %st.image_id, "no running digest; container skipped");
                    continue;
                };
                let spec_image = spec_images
                    .get(&(list, st.name.as_str()))
                    .map(|s| s.to_string())
                    .unwrap_or_else(|| st.image.clone());
                let pinned = match ImageRef::parse(&spec_image) {
                    Ok(r) => r.with_digest(&digest),
                    Err(_) => match repo
                        .as_deref()
                        .and_then(|r| ImageRef::parse(&format!("{r}@{digest}")).ok())
                    {
                        Some(r) => r,
                        None => {
                            tracing::warn!(namespace = %namespace, pod = %name, container = %st.name,
                                image = %spec_image, "image reference unreadable; container skipped");
                            continue;
                        }
                    },
                };
                containers.push(RunningContainer {
                    name: st.name.clone(),
                    spec_image,
                    pinned,
                });
            }
        }
        let spec_json = serde_json::to_value(spec).unwrap_or(Value::Null);
        Some(RunningPod {
            workload: resolve_owner(pod, lookup),
            uid: pod.metadata.uid.clone(),
            labels: pod.metadata.labels.clone().unwrap_or_default(),
            pull_refs: PullSecretRefs::from_pod_spec(&spec_json),
            namespace,
            name,
            containers,
        })
    }
}

fn runtime_alert(
    v: &Verdict,
    ctx: &RequestContext,
    rp: &RunningPod,
    c: &RunningContainer,
) -> Alert {
    let action = if v.decision.decision == Outcome::Deny {
        AlertAction::Deny
    } else {
        AlertAction::Audit
    };
    record::alert(
        uuid::Uuid::now_v7().to_string(),
        action,
        v,
        ctx,
        AlertSubject {
            origin: AlertOrigin::Runtime,
            kind: rp.workload.kind.clone(),
            namespace: Some(rp.namespace.clone()),
            name: Some(rp.workload.name.clone()),
            operation: "RUNTIME".into(),
            user: None,
            request_uid: rp.uid.clone().unwrap_or_default(),
            image: c.spec_image.clone(),
            dry_run: false,
            break_glass: None,
        },
    )
}

fn runtime_event(d: &Decision, rp: &RunningPod) -> EventSpec {
    let verb = if d.decision == Outcome::Deny {
        "would be denied"
    } else {
        "audited"
    };
    let image = match &d.digest {
        Some(dg) if !d.image.contains('@') => format!("{}@{dg}", d.image),
        _ => d.image.clone(),
    };
    // The top workload and the Pod, when they differ (`owner::subject`); else the Pod,
    // which the Event is about.
    let subject = owner::subject(
        Some(&rp.namespace),
        (&rp.workload.kind, &rp.workload.name),
        ("Pod", Some(&rp.name)),
        owner::Seen::Running,
    );
    let what = match subject {
        Some(s) => format!("{s}: {image}"),
        None => format!("running {image}"),
    };
    let note = match &d.rule {
        Some(rule) => format!("{what}: {verb} by rule \"{rule}\": {}", d.reason),
        None => format!("{what}: {verb}: {}", d.reason),
    };
    EventSpec {
        regarding: Regarding {
            api_version: "v1".into(),
            kind: "Pod".into(),
            name: rp.name.clone(),
            namespace: Some(rp.namespace.clone()),
            uid: rp.uid.clone(),
        },
        reason: if d.decision == Outcome::Deny {
            REASON_RUNTIME_DENY
        } else {
            REASON_RUNTIME_AUDIT
        },
        action: "Rescan",
        note,
    }
}

/// A token bucket: `rate` tokens per second, at most `rate` stored (a one-second burst).
#[derive(Debug)]
struct TokenBucket {
    rate: f64,
    tokens: f64,
    at: Instant,
}

impl TokenBucket {
    fn new(rate: u32) -> TokenBucket {
        TokenBucket {
            rate: f64::from(rate),
            tokens: f64::from(rate),
            at: Instant::now(),
        }
    }

    async fn acquire(&mut self) {
        loop {
            let now = Instant::now();
            let elapsed = now.duration_since(self.at).as_secs_f64();
            self.tokens = (self.tokens + elapsed * self.rate).min(self.rate);
            self.at = now;
            if self.tokens >= 1.0 {
                self.tokens -= 1.0;
                return;
            }
            let wait = (1.0 - self.tokens) / self.rate;
            tokio::time::sleep(Duration::from_secs_f64(wait.max(0.001))).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vulngate_core::owner::{Known, OwnerRef};

    /// A cache that knows ReplicaSet `web-5d8f9c7b4` as Deployment `frontend`'s.
    struct Cache;
    impl OwnerLookup for Cache {
        fn controller_of(&self, _: &str, kind: &str, name: &str, _: Option<&str>) -> Known {
            if (kind, name) == ("ReplicaSet", "web-5d8f9c7b4") {
                Known::Owner(Some(OwnerRef {
                    api_version: "apps/v1".into(),
                    kind: "Deployment".into(),
                    name: "frontend".into(),
                    uid: None,
                }))
            } else {
                Known::Unknown
            }
        }
    }

    /// Admission (the review's object read by `workload::extract`) and the re-evaluation
    /// (a listed Pod) name the same workload, with and without a cache: one function.
    #[test]
    fn admission_and_rescan_resolve_owners_alike() {
        let owner = |api: &str, kind: &str, name: &str, controller: bool| {
            serde_json::json!([{ "apiVersion": api, "kind": kind, "name": name, "uid": "u",
                                 "controller": controller }])
        };
        let cases = [
            (
                serde_json::json!({ "pod-template-hash": "5d8f9c7b4" }),
                owner("apps/v1", "ReplicaSet", "web-5d8f9c7b4", true),
                "web",
            ),
            (
                serde_json::json!({ "pod-template-hash": "0000" }),
                owner("apps/v1", "ReplicaSet", "web-5d8f9c7b4", true),
                "web-5d8f9c7b4",
            ),
            (
                serde_json::json!({}),
                owner("batch/v1", "Job", "backup-29123456", true),
                "backup",
            ),
            (
                serde_json::json!({}),
                owner("apps/v1", "StatefulSet", "db", true),
                "db",
            ),
            (
                serde_json::json!({}),
                owner("apps/v1", "DaemonSet", "agent", true),
                "agent",
            ),
            (
                serde_json::json!({}),
                owner("apps/v1", "ReplicaSet", "web-5d8f9c7b4", false),
                "p",
            ),
            (serde_json::json!({}), serde_json::json!([]), "p"),
        ];
        for (labels, refs, want) in cases {
            let obj = serde_json::json!({
                "apiVersion": "v1", "kind": "Pod",
                "metadata": { "name": "p", "namespace": "shop", "labels": labels,
                              "ownerReferences": refs },
                "spec": { "containers": [{ "name": "c", "image": "nginx:1" }] }
            });
            let pod: Pod = serde_json::from_value(obj.clone()).unwrap();
            let wl = vulngate_core::workload::extract(&obj).unwrap();
            for lookup in [None, Some(&Cache as &dyn OwnerLookup)] {
                let runtime = resolve_owner(&pod, lookup);
                let admitted = wl.top(lookup);
                assert_eq!(
                    (runtime.kind.as_str(), runtime.name.as_str()),
                    (admitted.kind.as_str(), admitted.name.as_str()),
                    "{obj}"
                );
                if lookup.is_none() {
                    assert_eq!(runtime.name, want, "{obj}");
                }
            }
        }
        // The cache's answer counts for both.
        let obj = serde_json::json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": { "name": "p", "namespace": "shop",
                          "labels": { "pod-template-hash": "5d8f9c7b4" },
                          "ownerReferences": owner("apps/v1", "ReplicaSet", "web-5d8f9c7b4", true) },
            "spec": { "containers": [{ "name": "c", "image": "nginx:1" }] }
        });
        let pod: Pod = serde_json::from_value(obj.clone()).unwrap();
        assert_eq!(resolve_owner(&pod, Some(&Cache)).name, "frontend");
    }

    #[test]
    fn running_digest_forms() {
        let d = format!("sha256:{}", "a".repeat(64));
        assert_eq!(
            running_digest(&format!("docker-pullable://r.io/app@{d}")),
            Some((Some("r.io/app".into()), d.clone()))
        );
        assert_eq!(
            running_digest(&format!("r.io/app@{d}")),
            Some((Some("r.io/app".into()), d.clone()))
        );
        assert_eq!(running_digest(&d), Some((None, d.clone())));
        assert_eq!(running_digest(""), None);
        assert_eq!(running_digest("docker://abc"), None);
    }
}
