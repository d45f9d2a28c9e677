//! The Kubernetes integration for core resources (Pods, Secrets, ServiceAccounts, Events)
//! against the in-process fake API server (`support::fake_api`): the re-evaluation of running
//! workloads, Events for webhook decisions, and pull-secret credentials (with a real
//! htpasswd-protected docker-registry).
#![allow(clippy::unwrap_used)]

mod support;

#[path = "../../registry/tests/support/mod.rs"]
mod registry_support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::Method;
use base64::Engine as _;
use futures::future::BoxFuture;
use serde_json::{json, Value};
use support::fake_api::FakeApi;
use support::*;
use vulngate_core::ImageRef;
use vulngate_server::cluster::rescan::Rescanner;
use vulngate_server::cluster::{ImageResult, ResultSink};
use vulngate_server::config::{KubernetesConfig, RulesFrom};
use vulngate_server::source::BoxFuture as SourceFuture;
use vulngate_server::{
    AlertFilter, AlertOrigin, Config, FindingsSource, LocalFindings, Server, SourceError,
    SourceLookup,
};

fn kube_cfg(events: bool, pull_secrets: bool) -> impl FnOnce(&mut Config) {
    move |c: &mut Config| {
        c.kubernetes = Some(KubernetesConfig {
            rules_from: RulesFrom::Files,
            events,
            pull_secrets,
            policy_reports: false,
            ..KubernetesConfig::default()
        })
    }
}

/// A Pod; `containers`: (list: "c"|"i", name, spec image, imageID).
fn pod(
    ns: &str,
    name: &str,
    owner: Option<(&str, &str, &str)>,
    labels: Value,
    containers: &[(&str, &str, &str, &str)],
    phase: &str,
) -> Value {
    let spec_list = |l: &str| -> Vec<Value> {
        containers
            .iter()
            .filter(|c| c.0 == l)
            .map(|c| json!({"name": c.1, "image": c.2}))
            .collect()
    };
    let status_list = |l: &str| -> Vec<Value> {
        containers
            .iter()
            .filter(|c| c.0 == l)
            .map(|c| json!({"name": c.1, "image": c.2, "imageID": c.3, "ready": true, "restartCount": 0}))
            .collect()
    };
    let mut meta =
        json!({"name": name, "namespace": ns, "uid": format!("uid-{name}"), "labels": labels});
    if let Some((api, kind, oname)) = owner {
        meta["ownerReferences"] = json!([{"apiVersion": api, "kind": kind, "name": oname,
            "uid": format!("uid-{oname}"), "controller": true}]);
    }
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": meta,
        "spec": {"containers": spec_list("c"), "initContainers": spec_list("i")},
        "status": {"phase": phase, "containerStatuses": status_list("c"),
                   "initContainerStatuses": status_list("i")}})
}

const UNKNOWN_DIGEST: &str =
    "sha256:3333333333333333333333333333333333333333333333333333333333333333";

fn insert_pods(api: &FakeApi, with_prod: bool) {
    api.clear_kind("Pod");
    if with_prod {
        // Deployment web -> ReplicaSet web-7d9f8 -> Pod; runs debian (critical): deny in prod.
        api.insert(pod(
            "prod-a",
            "web-7d9f8-abcde",
            Some(("apps/v1", "ReplicaSet", "web-7d9f8")),
            json!({"app": "web", "pod-template-hash": "7d9f8"}),
            &[
                (
                    "c",
                    "app",
                    DEBIAN,
                    &format!("docker-pullable://registry.example.com/team/debian@{DEBIAN_DIGEST}"),
                ),
                ("i", "init", ALPINE, ALPINE_DIGEST),
            ],
            "Running",
        ));
    }
    // CronJob nightly -> Job nightly-28000000 -> Pod. The spec tags lie: the running digests
    // decide (c1 says debian but runs alpine; c2 says alpine but runs debian).
    api.insert(pod(
        "dev",
        "nightly-28000000-xyz",
        Some(("batch/v1", "Job", "nightly-28000000")),
        json!({"job-name": "nightly-28000000"}),
        &[
            (
                "c",
                "c1",
                DEBIAN,
                &format!("registry.example.com/team/debian@{ALPINE_DIGEST}"),
            ),
            ("c", "c2", ALPINE, DEBIAN_DIGEST),
        ],
        "Running",
    ));
    // A bare Pod.
    api.insert(pod(
        "dev",
        "solo",
        None,
        json!({}),
        &[("c", "main", DEBIAN, DEBIAN_DIGEST)],
        "Running",
    ));
    // A StatefulSet pod: allow (alpine) and an unscanned image.
    api.insert(pod(
        "data",
        "db-0",
        Some(("apps/v1", "StatefulSet", "db")),
        json!({}),
        &[
            ("c", "db", ALPINE, ALPINE_DIGEST),
            ("c", "sidecar", UNSCANNED, UNKNOWN_DIGEST),
        ],
        "Running",
    ));
    // Excluded namespace, a pending pod, a malformed pod: none is evaluated.
    api.insert(pod(
        "kube-system",
        "proxy",
        None,
        json!({}),
        &[("c", "p", DEBIAN, DEBIAN_DIGEST)],
        "Running",
    ));
    api.insert(pod(
        "dev",
        "pending",
        None,
        json!({}),
        &[("c", "p", DEBIAN, DEBIAN_DIGEST)],
        "Pending",
    ));
    api.insert(json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "broken", "namespace": "dev"},
        "spec": {"containers": "not-a-list"}, "status": {"phase": "Running"}}));
}

/// (workload kind, workload name, pod, container, decision, rule).
type Row = (String, String, String, String, String, String);

#[derive(Debug, Default)]
struct RecordingSink {
    calls: Mutex<Vec<(String, Vec<Row>)>>,
}

impl RecordingSink {
    fn take(&self) -> Vec<(String, Vec<Row>)> {
        std::mem::take(&mut *self.calls.lock().unwrap())
    }
}

impl ResultSink for RecordingSink {
    fn sync_namespace<'a>(
        &'a self,
        namespace: &'a str,
        results: &'a [ImageResult],
    ) -> BoxFuture<'a, Result<(), kube::Error>> {
        let mut rows: Vec<Row> = results
            .iter()
            .map(|r| {
                assert_eq!(r.namespace, namespace);
                (
                    r.workload_kind.clone(),
                    r.workload_name.clone(),
                    r.pod.clone().unwrap_or_default(),
                    r.container.clone(),
                    r.decision.decision.as_str().to_string(),
                    r.decision.rule.clone().unwrap_or_default(),
                )
            })
            .collect();
        rows.sort();
        self.calls
            .lock()
            .unwrap()
            .push((namespace.to_string(), rows));
        Box::pin(async { Ok(()) })
    }
}

/// A sink holding reports from an earlier run: answers `existing_namespaces` from a queue
/// (`None` = the API fails), and records syncs like [`RecordingSink`].
#[derive(Debug, Default)]
struct AdoptingSink {
    inner: RecordingSink,
    answers: Mutex<std::collections::VecDeque<Option<Vec<String>>>>,
    asked: Mutex<u32>,
}

impl ResultSink for AdoptingSink {
    fn sync_namespace<'a>(
        &'a self,
        namespace: &'a str,
        results: &'a [ImageResult],
    ) -> BoxFuture<'a, Result<(), kube::Error>> {
        self.inner.sync_namespace(namespace, results)
    }

    fn existing_namespaces(&self) -> BoxFuture<'_, Result<Vec<String>, kube::Error>> {
        *self.asked.lock().unwrap() += 1;
        let answer = self.answers.lock().unwrap().pop_front().flatten();
        Box::pin(async move {
            answer.ok_or_else(|| {
                kube::Error::Api(Box::new(
                    serde_json::from_value(json!({"code": 503, "message": "unavailable"})).unwrap(),
                ))
            })
        })
    }
}

fn row(k: &str, n: &str, p: &str, c: &str, d: &str, r: &str) -> Row {
    (k.into(), n.into(), p.into(), c.into(), d.into(), r.into())
}

fn runtime_alerts(server: &Server) -> Vec<vulngate_server::Alert> {
    server
        .alerts()
        .list(&AlertFilter {
            origin: Some(AlertOrigin::Runtime),
            limit: Some(1000),
            ..AlertFilter::default()
        })
        .unwrap()
}

#[tokio::test]
async fn fake_api_rescan_running_digests_owners_alerts_sinks_and_metrics() {
    let h = harness_with(RULES, TestSource::new(), kube_cfg(false, false));
    let api = FakeApi::new();
    insert_pods(&api, true);
    let sink = Arc::new(RecordingSink::default());
    let rescan = Rescanner::new(&h.server, api.client(), vec![sink.clone()]);
    rescan.set_page_size(2);

    let s = rescan.scan_once().await.unwrap();
    assert_eq!(s.pods, 4, "{s:?}"); // excluded, pending and malformed pods are not evaluated
    assert_eq!(s.malformed, 1);
    assert_eq!(s.images, 7);
    assert_eq!(s.alerts, 3);
    // Paged: limit=2 on every request, continue tokens after the first.
    let lists = support::fake_api::paged_requests(&api, "/api/v1/pods");
    assert_eq!(lists.len(), 4, "{lists:?}"); // 7 pods in pages of 2
    assert!(lists
        .iter()
        .all(|q| q.as_deref().unwrap().contains("limit=2")));
    assert!(lists[1].as_deref().unwrap().contains("continue=2"));

    let calls = sink.take();
    let by_ns: std::collections::BTreeMap<_, _> = calls.into_iter().collect();
    assert_eq!(by_ns.keys().collect::<Vec<_>>(), ["data", "dev", "prod-a"]);
    assert_eq!(
        by_ns["prod-a"],
        vec![
            row(
                "Deployment",
                "web",
                "web-7d9f8-abcde",
                "app",
                "deny",
                "deny-critical-prod"
            ),
            row("Deployment", "web", "web-7d9f8-abcde", "init", "allow", ""),
        ]
    );
    assert_eq!(
        by_ns["dev"],
        vec![
            row(
                "CronJob",
                "nightly",
                "nightly-28000000-xyz",
                "c1",
                "allow",
                ""
            ),
            row(
                "CronJob",
                "nightly",
                "nightly-28000000-xyz",
                "c2",
                "audit",
                "audit-high"
            ),
            row("Pod", "solo", "solo", "main", "audit", "audit-high"),
        ]
    );
    assert_eq!(
        by_ns["data"],
        vec![
            row("StatefulSet", "db", "db-0", "db", "allow", ""),
            row("StatefulSet", "db", "db-0", "sidecar", "allow", ""),
        ]
    );

    // Metrics.
    let m = h.server.metrics();
    assert_eq!(m.running_images_get("deny"), 1);
    assert_eq!(m.running_images_get("audit"), 2);
    assert_eq!(m.running_images_get("allow"), 3);
    assert_eq!(m.running_images_get("unscanned"), 1);
    assert_eq!(m.rescans("ok"), 1);
    let text = m.encode();
    assert!(
        text.contains("vulngate_rescan_duration_seconds_count 1"),
        "{text}"
    );

    // Runtime alerts: one per finding, at the running digest, for the workload.
    let alerts = runtime_alerts(&h.server);
    let mut keys: Vec<(String, String, String, String, String)> = alerts
        .iter()
        .map(|a| {
            assert_eq!(a.operation, "RUNTIME");
            (
                a.namespace.clone().unwrap(),
                format!("{}/{}", a.kind, a.name.clone().unwrap()),
                a.action.as_str().to_string(),
                a.digest.clone().unwrap(),
                a.rule.clone().unwrap(),
            )
        })
        .collect();
    keys.sort();
    assert_eq!(
        keys,
        vec![
            (
                "dev".into(),
                "CronJob/nightly".into(),
                "audit".into(),
                DEBIAN_DIGEST.into(),
                "audit-high".into()
            ),
            (
                "dev".into(),
                "Pod/solo".into(),
                "audit".into(),
                DEBIAN_DIGEST.into(),
                "audit-high".into()
            ),
            (
                "prod-a".into(),
                "Deployment/web".into(),
                "deny".into(),
                DEBIAN_DIGEST.into(),
                "deny-critical-prod".into()
            ),
        ]
    );

    // The same findings again: no new alert.
    let s = rescan.scan_once().await.unwrap();
    assert_eq!(s.alerts, 0);
    assert_eq!(runtime_alerts(&h.server).len(), 3);

    // A rule change (audit-high becomes deny): the changed decisions are alerted again,
    // the unchanged one (prod-a, deny-critical-prod) is not.
    std::fs::write(
        h.rules_path(),
        RULES.replace("action: audit", "action: deny"),
    )
    .unwrap();
    h.server.rules().reload().unwrap();
    let s = rescan.scan_once().await.unwrap();
    assert_eq!(s.alerts, 2, "{s:?}");
    let alerts = runtime_alerts(&h.server);
    assert_eq!(alerts.len(), 5);
    assert_eq!(
        alerts
            .iter()
            .filter(|a| a.action.as_str() == "deny" && a.rule.as_deref() == Some("audit-high"))
            .count(),
        2
    );
    assert_eq!(m.running_images_get("deny"), 3);
    assert_eq!(m.running_images_get("audit"), 0);

    // prod-a's pods are gone: its sink gets an empty list.
    sink.take();
    insert_pods(&api, false);
    rescan.scan_once().await.unwrap();
    let calls: std::collections::BTreeMap<_, _> = sink.take().into_iter().collect();
    assert_eq!(calls["prod-a"], Vec::<Row>::new());
    assert_eq!(calls["dev"].len(), 3);
    // The next scan no longer reports prod-a at all.
    rescan.scan_once().await.unwrap();
    assert!(!sink.take().iter().any(|(ns, _)| ns == "prod-a"));
}

#[tokio::test]
async fn fake_api_rescan_failing_pod_list_is_an_error_counted() {
    let h = harness_with(RULES, TestSource::new(), kube_cfg(false, false));
    let api = FakeApi::new();
    api.fail(Method::GET, "/api/v1/pods", 403);
    let rescan = Rescanner::new(&h.server, api.client(), vec![]);
    let e = rescan.scan_once().await.unwrap_err().to_string();
    assert!(e.contains("403") || e.contains("Forbidden"), "{e}");
    assert_eq!(h.server.metrics().rescans("error"), 1);
}

/// A source that notes the (virtual) time of every lookup.
#[derive(Debug, Default)]
struct TimedSource {
    at: Mutex<Vec<tokio::time::Instant>>,
}

impl FindingsSource for TimedSource {
    fn lookup<'a>(
        &'a self,
        image: &'a ImageRef,
    ) -> SourceFuture<'a, Result<SourceLookup, SourceError>> {
        self.at.lock().unwrap().push(tokio::time::Instant::now());
        Box::pin(async move { LocalFindings::empty().lookup(image).await })
    }
}

#[tokio::test(start_paused = true)]
async fn fake_api_rescan_rate_limits_registry_lookups_but_not_cache_hits() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path(), Some(RULES));
    kube_cfg(false, false)(&mut cfg);
    if let Some(k) = cfg.kubernetes.as_mut() {
        k.rescan_lookups_per_second = 5;
    }
    let source = Arc::new(TimedSource::default());
    let server = Server::with_source(cfg, source.clone()).unwrap();
    let api = FakeApi::new();
    for i in 0..30 {
        let digest = format!("sha256:{i:064x}");
        api.insert(pod(
            "dev",
            &format!("p{i}"),
            None,
            json!({}),
            &[("c", "c", UNSCANNED, &digest)],
            "Running",
        ));
    }
    let rescan = Rescanner::new(&server, api.client(), vec![]);
    let s = rescan.scan_once().await.unwrap();
    assert_eq!((s.images, s.lookups), (30, 30));
    let at = source.at.lock().unwrap().clone();
    assert_eq!(at.len(), 30);
    // A bucket of 5 refilled at 5/s: at most 10 lookups in any one-second window, and the
    // 30 lookups span at least (30 - 5) / 5 = 5 seconds (of paused, virtual time).
    for (i, t) in at.iter().enumerate() {
        let in_window = at[i..]
            .iter()
            .take_while(|u| u.duration_since(*t) < Duration::from_secs(1))
            .count();
        assert!(
            in_window <= 10,
            "{in_window} lookups within 1s of lookup {i}"
        );
    }
    assert!(at[29].duration_since(at[0]) >= Duration::from_millis(4990));

    // Everything is cached now: no lookup, no token needed.
    let s = rescan.scan_once().await.unwrap();
    assert_eq!((s.images, s.lookups), (30, 0));
    assert_eq!(source.at.lock().unwrap().len(), 30);
}

#[tokio::test]
async fn fake_api_rescan_clears_reports_left_by_an_earlier_run() {
    let h = harness_with(RULES, TestSource::new(), kube_cfg(false, false));
    let api = FakeApi::new();
    insert_pods(&api, true);
    let sink = Arc::new(AdoptingSink::default());
    sink.answers
        .lock()
        .unwrap()
        .extend([None, Some(vec!["gone".to_string(), "dev".to_string()])]);
    let rescan = Rescanner::new(&h.server, api.client(), vec![sink.clone()]);
    let synced = |calls: &[(String, Vec<Row>)]| -> Vec<(String, bool)> {
        calls
            .iter()
            .map(|(ns, rows)| (ns.clone(), rows.is_empty()))
            .collect()
    };

    // The listing fails: the scan goes on with what it sees, and retries the listing next time.
    rescan.scan_once().await.unwrap();
    let first = synced(&sink.inner.take());
    assert!(!first.iter().any(|(ns, _)| ns == "gone"), "{first:?}");
    assert!(first.contains(&("dev".to_string(), false)), "{first:?}");
    // Listed: the namespace without workloads gets its (empty) results, i.e. its report deleted.
    rescan.scan_once().await.unwrap();
    let second = synced(&sink.inner.take());
    assert!(second.contains(&("gone".to_string(), true)), "{second:?}");
    assert!(second.contains(&("dev".to_string(), false)), "{second:?}");
    // Once listed, never again; "gone" is forgotten after its report was cleared.
    rescan.scan_once().await.unwrap();
    let third = synced(&sink.inner.take());
    assert!(!third.iter().any(|(ns, _)| ns == "gone"), "{third:?}");
    assert_eq!(*sink.asked.lock().unwrap(), 2);
}

#[tokio::test(start_paused = true)]
async fn fake_api_rescan_loop_follows_rule_versions_and_triggers() {
    let h = harness_with(RULES, TestSource::new(), kube_cfg(false, false));
    let api = FakeApi::new();
    insert_pods(&api, true);
    let rescan = Rescanner::new(&h.server, api.client(), vec![]);
    let task = rescan.spawn().expect("rescanInterval is 1h by default");
    let m = h.server.metrics().clone();
    let wait_scans = |n: u64| {
        let m = m.clone();
        async move {
            while m.rescans("ok") < n {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    wait_scans(1).await;
    // A rule edit is picked up by the version check (every 5 s), long before the hour.
    std::fs::write(
        h.rules_path(),
        RULES.replace("action: audit", "action: deny"),
    )
    .unwrap();
    h.server.rules().reload().unwrap();
    wait_scans(2).await;
    assert_eq!(h.server.metrics().running_images_get("deny"), 3);
    // trigger() runs a scan now.
    rescan.trigger();
    wait_scans(3).await;
    task.abort();
}

// -------------------------------------------------------------------------------------------------
// Events

async fn wait_for<T>(mut f: impl FnMut() -> Option<T>) -> T {
    for _ in 0..1000 {
        if let Some(v) = f() {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("condition not met within 10 s");
}

#[tokio::test]
async fn fake_api_events_for_denied_and_audited_admissions_not_for_dry_runs() {
    std::env::set_var("POD_NAME", "vulngate-7c9d-test");
    let api = FakeApi::new();
    let h = harness_with(RULES, TestSource::new(), kube_cfg(true, false));
    let server = h.server.clone().with_kubernetes(api.client());
    // The harness still holds a clone: with_kubernetes refuses a shared server.
    assert!(server.is_err());
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path(), Some(RULES));
    kube_cfg(true, false)(&mut cfg);
    let server = Server::with_source(cfg, TestSource::new())
        .unwrap()
        .with_kubernetes(api.client())
        .unwrap();

    // A dry run first: denied, no Event.
    let dep = deployment("prod-a", &[DEBIAN]);
    let mut dry = create(&dep);
    dry["request"]["dryRun"] = json!(true);
    assert!(!admit(&server, &dry).await.allowed);

    // Denied.
    let resp = admit(&server, &create(&dep)).await;
    assert!(!resp.allowed);
    let ev = wait_for(|| api.posted("events").into_iter().next()).await;
    // The sender is FIFO: had the dry run produced an Event, it would be the first.
    assert_eq!(ev["reason"], "VulngateDenied", "{ev}");
    assert_eq!(ev["apiVersion"], "events.k8s.io/v1");
    assert_eq!(ev["kind"], "Event");
    assert_eq!(ev["type"], "Warning");
    assert_eq!(ev["action"], "Admission");
    assert_eq!(ev["note"], json!(resp.result.message));
    assert_eq!(ev["reportingController"], "vulngate.io/vulngate");
    assert_eq!(ev["reportingInstance"], "vulngate-7c9d-test");
    assert_eq!(ev["metadata"]["namespace"], "prod-a");
    assert!(ev["metadata"]["name"].as_str().unwrap().starts_with("web."));
    assert!(ev["eventTime"].is_string());
    assert_eq!(
        ev["regarding"],
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "name": "web", "namespace": "prod-a"})
    );
    let posts: Vec<_> = api
        .requests()
        .into_iter()
        .filter(|r| r.method == Method::POST)
        .collect();
    assert_eq!(
        posts[0].path,
        "/apis/events.k8s.io/v1/namespaces/prod-a/events"
    );

    // Audited, on an UPDATE of a persisted object (with its uid).
    let mut dep = deployment("dev", &[DEBIAN]);
    dep["metadata"]["uid"] = json!("7f0c1c3e-uid");
    let old = deployment("dev", &[ALPINE]);
    let resp = admit(&server, &review("UPDATE", &dep, Some(&old))).await;
    assert!(resp.allowed);
    let ev = wait_for(|| api.posted("events").get(1).cloned()).await;
    assert_eq!(ev["reason"], "VulngateAudited");
    assert_eq!(ev["note"], json!(warnings(&resp).join("; ")));
    assert_eq!(ev["regarding"]["uid"], "7f0c1c3e-uid");
    assert_eq!(server.metrics().events("sent"), 2);

    // Allowed: nothing. (A denied request after it is the second... third Event.)
    assert!(
        admit(&server, &create(&deployment("dev", &[ALPINE])))
            .await
            .allowed
    );
    admit(&server, &create(&deployment("prod-b", &[DEBIAN]))).await;
    let ev = wait_for(|| api.posted("events").get(2).cloned()).await;
    assert_eq!(ev["metadata"]["namespace"], "prod-b");
    assert_eq!(api.posted("events").len(), 3);
}

/// Issue 18: the Events of a Pod admitted, and of a Pod running, name its top workload and
/// the Pod (the note the answer or the re-evaluation words); an object that is its own
/// workload reads as before.
#[tokio::test]
async fn fake_api_events_name_the_top_workload_and_the_pod() {
    let api = FakeApi::new();
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path(), Some(RULES));
    kube_cfg(true, false)(&mut cfg);
    let server = Server::with_source(cfg, TestSource::new())
        .unwrap()
        .with_kubernetes(api.client())
        .unwrap();

    // A Pod of ReplicaSet web-7d9f8 of Deployment web, as the controllers create it: denied.
    let p = pod(
        "prod-a",
        "web-7d9f8-abcde",
        Some(("apps/v1", "ReplicaSet", "web-7d9f8")),
        json!({"app": "web", "pod-template-hash": "7d9f8"}),
        &[("c", "app", DEBIAN, DEBIAN_DIGEST)],
        "Pending",
    );
    let resp = admit(&server, &create(&p)).await;
    assert!(!resp.allowed);
    let subject = "Deployment prod-a/web (admitted: Pod prod-a/web-7d9f8-abcde)";
    assert!(
        resp.result
            .message
            .starts_with(&format!("{subject}: {DEBIAN}")),
        "{}",
        resp.result.message
    );
    let ev = wait_for(|| api.posted("events").first().cloned()).await;
    assert_eq!(ev["reason"], "VulngateDenied");
    assert_eq!(ev["note"], json!(resp.result.message));
    assert_eq!(ev["regarding"]["kind"], "Pod");

    // Audited (dev): the warning and the Event's note.
    let mut p = p.clone();
    p["metadata"]["namespace"] = json!("dev");
    let resp = admit(&server, &create(&p)).await;
    assert!(resp.allowed);
    let subject = "Deployment dev/web (admitted: Pod dev/web-7d9f8-abcde)";
    let w = warnings(&resp);
    assert!(w[0].starts_with(&format!("{subject}: {DEBIAN}")), "{w:?}");
    let ev = wait_for(|| api.posted("events").get(1).cloned()).await;
    assert_eq!(ev["reason"], "VulngateAudited");
    assert_eq!(ev["note"], json!(w.join("; ")));

    // The Deployment itself: its own workload, the note as before.
    let resp = admit(&server, &create(&deployment("prod-a", &[DEBIAN]))).await;
    assert!(
        resp.result.message.starts_with(&format!("{DEBIAN}@")),
        "{}",
        resp.result.message
    );

    // The re-evaluation: the running Pod's Event names the Deployment and the Pod.
    insert_pods(&api, true);
    let rescan = Rescanner::new(&server, api.client(), vec![]);
    rescan.scan_once().await.unwrap();
    let notes = wait_for(|| {
        let notes: Vec<String> = api
            .posted("events")
            .iter()
            .filter(|e| e["action"] == "Rescan")
            .map(|e| e["note"].as_str().unwrap().to_string())
            .collect();
        (notes.len() >= 3).then_some(notes)
    })
    .await;
    assert!(
        notes.iter().any(|n| n.starts_with(
            "Deployment prod-a/web (running: Pod prod-a/web-7d9f8-abcde): registry.example.com/"
        ) && n.contains(": would be denied by rule \"deny-critical-prod\"")),
        "{notes:#?}"
    );
    // A bare Pod (its own workload) as before.
    assert!(
        notes.iter().any(|n| n.starts_with("running ")),
        "{notes:#?}"
    );
}

#[tokio::test]
async fn fake_api_failing_events_api_does_not_change_admission() {
    let api = FakeApi::new();
    api.fail(Method::POST, "/apis/events.k8s.io", 500);
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path(), Some(RULES));
    kube_cfg(true, false)(&mut cfg);
    let with_events = Server::with_source(cfg, TestSource::new())
        .unwrap()
        .with_kubernetes(api.client())
        .unwrap();
    let plain = harness(RULES);
    for (dep, op) in [
        (deployment("prod-a", &[DEBIAN]), "CREATE"),
        (deployment("dev", &[DEBIAN]), "CREATE"),
    ] {
        let a = admit(&with_events, &review(op, &dep, None)).await;
        let b = admit(&plain.server, &review(op, &dep, None)).await;
        assert_eq!(a.allowed, b.allowed);
        assert_eq!(a.result.message, b.result.message);
        assert_eq!(a.result.code, b.result.code);
        assert_eq!(warnings(&a), warnings(&b));
    }
    let m = with_events.metrics().clone();
    wait_for(|| (m.events("failed") == 2).then_some(())).await;
    assert_eq!(m.events("sent"), 0);
}

// -------------------------------------------------------------------------------------------------
// Pull secrets, against a real htpasswd-protected docker-registry

const USER: &str = "pull-user";
const PASSWORD: &str = "S3cret-pull-pa55-9c1e";

/// Captures log output of the current thread (the tests run on one thread).
#[derive(Clone, Default)]
struct LogBuf(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for LogBuf {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn fake_api_pull_secrets_unlock_a_private_registry() {
    let logs = LogBuf::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let files = tempfile::tempdir().unwrap();
    let htpasswd = files.path().join("htpasswd");
    std::fs::write(
        &htpasswd,
        format!("{USER}:{}\n", bcrypt::hash(PASSWORD, 5).unwrap()),
    )
    .unwrap();
    let reg = registry_support::Registry::start_with(
        registry_support::Kind::Distribution,
        registry_support::Options {
            htpasswd: Some(htpasswd),
            ..Default::default()
        },
    );
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let auth = b64(&format!("{USER}:{PASSWORD}"));
    let docker_config = format!(r#"{{"auths":{{"{}":{{"auth":"{auth}"}}}}}}"#, reg.host);
    std::fs::write(reg.scratch().join("docker/config.json"), &docker_config).unwrap();
    let digest = reg.push_image("v1", "pull secrets");
    reg.oras_attach(
        &digest,
        "application/vnd.vulngate.report+json",
        &registry_support::trivy_report("CVE-2024-7777", "2026-11-28T00:00:00Z"),
        None,
    );
    let image = format!("{}/app@{digest}", reg.host);

    let api = FakeApi::new();
    // ns team: the pod names `regcred` (valid) and `forbidden-cred` (403); its service
    // account names `missing-cred` (404). ns other: no secrets at all.
    api.insert(
        json!({"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/dockerconfigjson",
        "metadata": {"name": "regcred", "namespace": "team"},
        "data": {".dockerconfigjson": b64(&docker_config)}}),
    );
    api.insert(json!({"apiVersion": "v1", "kind": "ServiceAccount",
        "metadata": {"name": "builder", "namespace": "team"},
        "imagePullSecrets": [{"name": "missing-cred"}]}));
    api.fail(
        Method::GET,
        "/api/v1/namespaces/team/secrets/forbidden-cred",
        403,
    );

    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path(), Some(RULES));
    kube_cfg(false, true)(&mut cfg);
    cfg.registry = Some(vulngate_registry::RegistryConfig {
        insecure_registries: vec![reg.host.clone()],
        ..Default::default()
    });
    // No findings cache: each request shows what its own credentials reach.
    cfg.cache.max_entries = 0;
    let server = Server::from_config(cfg)
        .unwrap()
        .with_kubernetes(api.client())
        .unwrap();

    let pod_obj = |ns: &str, secrets: &[&str]| {
        let mut p = workload("Pod", "app", ns, &[&image]);
        p["spec"]["serviceAccountName"] = json!("builder");
        p["spec"]["imagePullSecrets"] = json!(secrets
            .iter()
            .map(|s| json!({"name": s}))
            .collect::<Vec<_>>());
        p
    };
    // Without a pull secret: the registry refuses, the image is unscanned (allowed).
    let resp = admit(&server, &create(&pod_obj("other", &[]))).await;
    assert!(resp.allowed);
    assert!(resp.audit_annotations.is_empty(), "{resp:?}");
    // With it: the report is found, and the high finding is audited.
    let resp = admit(
        &server,
        &create(&pod_obj("team", &["forbidden-cred", "regcred"])),
    )
    .await;
    assert!(resp.allowed);
    assert_eq!(
        resp.audit_annotations.get("decision").map(String::as_str),
        Some("audit")
    );
    assert!(
        warnings(&resp).join(" ").contains("CVE-2024-7777"),
        "{resp:?}"
    );
    // Secrets are read by name, never listed.
    let secret_reqs: Vec<_> = api
        .requests()
        .into_iter()
        .filter(|r| r.path.contains("/secrets"))
        .collect();
    assert!(secret_reqs
        .iter()
        .all(|r| r.method == Method::GET && !r.path.ends_with("/secrets")));

    // The re-evaluation reads the running Pod's secrets the same way.
    let doc = {
        let mut v = pod(
            "team",
            "app-1",
            None,
            json!({}),
            &[("c", "app", &format!("{}/app:v1", reg.host), &digest)],
            "Running",
        );
        v["spec"]["imagePullSecrets"] = json!([{"name": "regcred"}]);
        v
    };
    api.insert(doc);
    let sink = Arc::new(RecordingSink::default());
    let rescan = Rescanner::new(&server, api.client(), vec![sink.clone()]);
    rescan.scan_once().await.unwrap();
    let calls = sink.take();
    assert_eq!(calls[0].1[0].4, "audit", "{calls:?}");

    // Logs name the unreadable secrets, and never carry the credentials.
    let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert!(text.contains("forbidden-cred"), "{text}");
    assert!(text.contains("missing-cred"), "{text}");
    assert!(!text.contains(PASSWORD), "{text}");
    assert!(!text.contains(&auth), "{text}");
    assert!(!text.contains(&b64(&docker_config)), "{text}");
}
