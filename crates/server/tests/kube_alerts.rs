//! The Kubernetes alert store (`store: kubernetes`) on a real API server for custom resources
//! (k8s.io/apiextensions-apiserver + etcd, tests/crd-apiserver): the Alert CRD generated from
//! the Rust type applied with kubectl; two stores (two replicas) writing the same
//! de-duplication key converge on one object; list/get/filter; kubectl reads them; review
//! state in the status subresource; the API server stopped: alerts journaled, replayed once it
//! is back; retention deletes old and over-cap objects, on the leader only.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use kube::CustomResourceExt;
use serde_json::Value;
use support::crd_apiserver::CrdApiServer;
use support::*;
use vulngate_core::engine::SeverityCounts;
use vulngate_core::Outcome;
use vulngate_server::alerts::kubernetes::{
    object_name, AlertObject, KubernetesStoreConfig, ReviewState,
};
use vulngate_server::alerts::{AlertMetrics, AlertWriterConfig, Durable};
use vulngate_server::config::{KubernetesConfig, LeaderElectionConfig, RulesFrom};
use vulngate_server::{
    Alert, AlertAction, AlertBackend, AlertFilter, AlertOrigin, AlertStore, KubernetesBackend,
    Server, StoreUrl,
};

const LEASE_CRD: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: leases.coordination.k8s.io
  annotations:
    api-approved.kubernetes.io: "https://github.com/kubernetes/kubernetes/pull/61488"
spec:
  group: coordination.k8s.io
  scope: Namespaced
  names: { plural: leases, singular: lease, kind: Lease, listKind: LeaseList }
  versions:
    - name: v1
      served: true
      storage: true
      schema:
        openAPIV3Schema:
          type: object
          properties:
            spec:
              type: object
              properties:
                holderIdentity: { type: string }
                leaseDurationSeconds: { type: integer, format: int32 }
                acquireTime: { type: string, format: date-time }
                renewTime: { type: string, format: date-time }
                leaseTransitions: { type: integer, format: int32 }
"#;

fn alert(id: &str, ns: Option<&str>, workload: &str, time: DateTime<Utc>) -> Alert {
    Alert {
        id: id.into(),
        time,
        action: AlertAction::Deny,
        origin: AlertOrigin::Admission,
        decision: Outcome::Deny,
        cluster: Some("prod-1".into()),
        namespace: ns.map(str::to_string),
        kind: "Deployment".into(),
        name: Some(workload.into()),
        operation: "CREATE".into(),
        user: Some("alice".into()),
        request_uid: format!("uid-{id}"),
        image: "registry.example/shop/web:1.0".into(),
        digest: Some(format!("sha256:{}", "ab".repeat(32))),
        rule: Some("deny-critical".into()),
        rule_snapshot: None,
        rules_version: Some("0123456789abcdef".into()),
        vulnerability: None,
        counts: SeverityCounts::default(),
        report: None,
        unscanned: None,
        reason: "critical CVE-2024-3094".into(),
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

async fn eventually<F: FnMut() -> bool>(what: &str, mut f: F) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !f() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The API server with the Alert CRD (rendered from the Rust type) established.
fn api_with_crd(dir: &Path) -> CrdApiServer {
    let api = CrdApiServer::start(dir);
    let p = dir.join("alerts-crd.yaml");
    std::fs::write(&p, serde_yaml_ng::to_string(&AlertObject::crd()).unwrap()).unwrap();
    api.kubectl_ok(&["apply", "--validate=false", "-f", p.to_str().unwrap()]);
    api.kubectl_ok(&[
        "wait",
        "--for=condition=Established",
        "--timeout=30s",
        "crd/alerts.vulngate.io",
    ]);
    api
}

fn store_cfg() -> KubernetesStoreConfig {
    KubernetesStoreConfig {
        namespace: Some("vulngate-system".into()),
        ..Default::default()
    }
}

fn backend(api: &CrdApiServer, cfg: &KubernetesStoreConfig) -> KubernetesBackend {
    KubernetesBackend::open(Some(&api.kubeconfig_path), cfg).unwrap()
}

/// `kubectl get alerts.vulngate.io -A -o json`: the items.
fn kubectl_alerts(api: &CrdApiServer) -> Vec<Value> {
    let out = api.kubectl_ok(&["get", "alerts.vulngate.io", "-A", "-o", "json"]);
    let v: Value = serde_json::from_str(&out).unwrap();
    v["items"].as_array().unwrap().clone()
}

#[test]
fn replicas_converge_on_one_object_per_key() {
    let dir = tempfile::tempdir().unwrap();
    let api = api_with_crd(dir.path());
    let a = Arc::new(backend(&api, &store_cfg()));
    let b = Arc::new(backend(&api, &store_cfg()));
    let t0 = Utc::now() - chrono::Duration::minutes(10);
    let at = move |s: i64| t0 + chrono::Duration::seconds(s);

    // Two replicas record the same key at once, 8 alerts each, one at a time (every write
    // races the other replica's: create 409, update 409 on the resourceVersion).
    let writers: Vec<_> = [(a.clone(), "a"), (b.clone(), "b")]
        .into_iter()
        .map(|(store, tag)| {
            std::thread::spawn(move || {
                for i in 0..8 {
                    let x = alert(&format!("{tag}-{i}"), Some("shop"), "web", at(i));
                    // How many were new is this call's view (the first alert of a fresh object
                    // may be counted by the other replica's write); the count below is exact.
                    assert!(store.record_new(&[x]).unwrap() <= 1);
                }
            })
        })
        .collect();
    for w in writers {
        w.join().unwrap();
    }
    let items = kubectl_alerts(&api);
    assert_eq!(items.len(), 1, "one object for one key: {items:#?}");
    let obj = &items[0];
    let first = alert("a-0", Some("shop"), "web", at(0));
    assert_eq!(obj["metadata"]["name"], object_name(&first));
    assert_eq!(obj["metadata"]["namespace"], "shop");
    assert_eq!(obj["status"]["count"], 16);
    assert_eq!(obj["status"]["kinds"], serde_json::json!(["Deployment"]));
    assert_eq!(obj["status"]["review"]["state"], "open");
    // The spec is the first alert, as serialised; the first alert keeps its id.
    let spec_id = obj["spec"]["id"].as_str().unwrap().to_string();
    assert!(spec_id.ends_with("-0"), "{spec_id}");
    assert_eq!(obj["spec"]["reason"], "critical CVE-2024-3094");
    assert_eq!(obj["spec"]["rulesVersion"], "0123456789abcdef");

    // A replay (the journal) of alerts already counted changes nothing, from either replica.
    let again = alert("b-3", Some("shop"), "web", at(3));
    assert_eq!(a.record_new(std::slice::from_ref(&again)).unwrap(), 0);
    assert_eq!(b.record_new(std::slice::from_ref(&again)).unwrap(), 0);
    // `record` (not idempotent) refuses it.
    assert!(a.record(&[again]).is_err());
    assert_eq!(kubectl_alerts(&api)[0]["status"]["count"], 16);

    // Different keys: separate objects. One batch with a repeat (grouped into one write), an
    // audit of the same workload, another workload, another namespace, and a cluster-scoped
    // object (no namespace: vulngate's own namespace).
    let mut audit = alert("c-1", Some("shop"), "web", at(20));
    audit.action = AlertAction::Audit;
    audit.origin = AlertOrigin::Runtime;
    let mut pod = alert("c-2", Some("shop"), "web", at(21));
    pod.kind = "Pod".into();
    let mut cluster_scoped = alert("c-5", None, "node-agent", at(24));
    cluster_scoped.kind = "ClusterThing".into();
    let batch = vec![
        alert("c-0", Some("shop"), "api", at(19)),
        audit.clone(),
        pod,
        alert("c-3", Some("shop"), "api", at(22)),
        alert("c-4", Some("billing"), "web", at(23)),
        cluster_scoped.clone(),
    ];
    assert_eq!(b.record_new(&batch).unwrap(), 6);
    let items = kubectl_alerts(&api);
    assert_eq!(items.len(), 6, "{items:#?}");
    let names: BTreeSet<String> = items
        .iter()
        .map(|o| o["metadata"]["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names.len(), 6);
    let by_name = |n: &str| items.iter().find(|o| o["metadata"]["name"] == n).unwrap();
    assert_eq!(
        by_name(&object_name(&batch[0]))["status"]["count"],
        2,
        "a repeat in one batch"
    );
    let cs = by_name(&object_name(&cluster_scoped));
    assert_eq!(cs["metadata"]["namespace"], "vulngate-system");
    assert!(cs["spec"].get("namespace").is_none());

    // kubectl's table: the printer columns.
    let table = api.kubectl_ok(&["get", "alerts.vulngate.io", "-A"]);
    let header = table.lines().next().unwrap();
    for col in [
        "NAMESPACE",
        "NAME",
        "ACTION",
        "WORKLOAD",
        "RULE",
        "COUNT",
        "REVIEW",
    ] {
        assert!(header.contains(col), "{table}");
    }
    assert!(
        table
            .lines()
            .any(|l| l.contains("web") && l.contains(" 16 ")),
        "{table}"
    );
    let in_ns = api.kubectl_ok(&["get", "alerts.vulngate.io", "-n", "billing", "-o", "name"]);
    assert_eq!(in_ns.lines().count(), 1, "{in_ns}");

    // list: newest first, filters, limit; get by the first alert's id and by object name.
    let all = a.list(&AlertFilter::default()).unwrap();
    let ids: Vec<&str> = all.iter().map(|x| x.id.as_str()).collect();
    assert_eq!(ids, ["c-5", "c-4", "c-2", "c-1", "c-0", spec_id.as_str()]);
    let f =
        |f: AlertFilter| -> Vec<String> { a.list(&f).unwrap().into_iter().map(|x| x.id).collect() };
    assert_eq!(
        f(AlertFilter {
            action: Some(AlertAction::Audit),
            ..Default::default()
        }),
        ["c-1"]
    );
    assert_eq!(
        f(AlertFilter {
            origin: Some(AlertOrigin::Runtime),
            ..Default::default()
        }),
        ["c-1"]
    );
    assert_eq!(
        f(AlertFilter {
            namespace: Some("billing".into()),
            ..Default::default()
        }),
        ["c-4"]
    );
    // vulngate's namespace holds the cluster-scoped alert, which has no namespace.
    assert!(f(AlertFilter {
        namespace: Some("vulngate-system".into()),
        ..Default::default()
    })
    .is_empty());
    assert_eq!(
        f(AlertFilter {
            since: Some(at(22)),
            ..Default::default()
        }),
        ["c-5", "c-4"]
    );
    assert_eq!(
        f(AlertFilter {
            image: Some("shop/web".into()),
            limit: Some(2),
            ..Default::default()
        }),
        ["c-5", "c-4"]
    );
    assert!(f(AlertFilter {
        rule: Some("other-rule".into()),
        ..Default::default()
    })
    .is_empty());
    assert_eq!(
        a.get("c-4").unwrap().unwrap().namespace.as_deref(),
        Some("billing")
    );
    let by_obj = b.get(&object_name(&audit)).unwrap().unwrap();
    assert_eq!(by_obj.id, "c-1");
    assert!(
        a.get("c-3").unwrap().is_none(),
        "a repeat has no object of its own"
    );
    assert!(a.get("nope").unwrap().is_none());

    // Review state in the status subresource, with its history; counting goes on.
    assert!(a
        .review(
            &spec_id,
            ReviewState::Acknowledged,
            Some("alice"),
            Some("JIRA-7")
        )
        .unwrap());
    assert!(!a.review("nope", ReviewState::Resolved, None, None).unwrap());
    b.record_new(&[alert("b-9", Some("shop"), "web", at(30))])
        .unwrap();
    let status = b.status(&spec_id).unwrap().unwrap();
    assert_eq!(status.count, 17);
    let review = status.review.unwrap();
    assert_eq!(review.state, ReviewState::Acknowledged);
    assert_eq!(review.history.len(), 2);
    assert_eq!(review.history[1].by.as_deref(), Some("alice"));
    assert_eq!(review.history[1].note.as_deref(), Some("JIRA-7"));
    let out = api.kubectl_ok(&[
        "get",
        "alerts.vulngate.io",
        "-n",
        "shop",
        &object_name(&first),
        "-o",
        "jsonpath={.status.review.state} {.status.count} {.status.lastSeen}",
    ]);
    assert!(out.starts_with("acknowledged 17 "), "{out}");
    // Resolved, then seen again: open again.
    a.review(&spec_id, ReviewState::Resolved, Some("bob"), None)
        .unwrap();
    a.record_new(&[alert("a-10", Some("shop"), "web", at(31))])
        .unwrap();
    let review = a.status(&spec_id).unwrap().unwrap().review.unwrap();
    assert_eq!(review.state, ReviewState::Open);
    assert_eq!(review.history.len(), 4);

    // Fields this version does not know (a newer replica's) survive a status update.
    let name = object_name(&first);
    api.kubectl_ok(&[
        "patch",
        "alerts.vulngate.io",
        "-n",
        "shop",
        &name,
        "--subresource=status",
        "--type=merge",
        "-p",
        r#"{"status":{"assignee":"team-a"}}"#,
    ]);
    a.record_new(&[alert("a-11", Some("shop"), "web", at(32))])
        .unwrap();
    let out = api.kubectl_ok(&[
        "get",
        "alerts.vulngate.io",
        "-n",
        "shop",
        &name,
        "-o",
        "jsonpath={.status.assignee} {.status.count}",
    ]);
    assert_eq!(out, "team-a 19");
}

#[test]
fn without_the_crd_the_store_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let api = CrdApiServer::start(dir.path());
    let e = KubernetesBackend::open(Some(&api.kubeconfig_path), &store_cfg()).unwrap_err();
    assert!(
        matches!(&e, vulngate_server::AlertError::Kubernetes { message, .. }
            if message.contains("alerts.vulngate.io) is not installed")),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_server_down_alerts_are_journaled_then_replayed() {
    let dir = tempfile::tempdir().unwrap();
    let mut api = api_with_crd(dir.path());
    let backend = Arc::new(backend(&api, &store_cfg()));
    let metrics = AlertMetrics::default();
    let wcfg = AlertWriterConfig {
        replay_interval: Duration::from_millis(300),
        ..Default::default()
    };
    let data = dir.path().join("data");
    let store = AlertStore::from_backend(backend.clone())
        .start_writer(&wcfg, &data, metrics.clone())
        .unwrap();
    let now = Utc::now();
    // Up: stored before the deadline.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(8);
    let r = store
        .record_within(vec![alert("up-1", Some("shop"), "web", now)], deadline)
        .await
        .unwrap();
    assert_eq!(r, Durable::Stored);

    tokio::task::block_in_place(|| api.stop_apiserver());
    // Down: the deadline passes, the alerts go to the journal (fsync'd) and the answer is on
    // time.
    let started = std::time::Instant::now();
    let deadline = tokio::time::Instant::now() + Duration::from_millis(500);
    let down = vec![
        alert("down-1", Some("shop"), "web", now),
        alert("down-2", Some("shop"), "api", now),
    ];
    let r = store.record_within(down, deadline).await.unwrap();
    assert_eq!(r, Durable::Journaled);
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(metrics.journaled() >= 2);
    assert!(
        backend.list(&AlertFilter::default()).is_err(),
        "the API server is down"
    );

    // Back: the writer replays the journal into the store; each alert counted once.
    tokio::task::block_in_place(|| api.restart_apiserver());
    let b = backend.clone();
    eventually("the journal replayed into the API server", || {
        b.list(&AlertFilter::default())
            .map(|l| l.len() == 2)
            .unwrap_or(false)
    })
    .await;
    eventually("the journal emptied", || metrics.journal().1 == 0).await;
    let items = tokio::task::block_in_place(|| kubectl_alerts(&api));
    let counts: BTreeSet<(String, i64)> = items
        .iter()
        .map(|o| {
            (
                o["spec"]["name"].as_str().unwrap().to_string(),
                o["status"]["count"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        counts,
        BTreeSet::from([("api".to_string(), 1), ("web".to_string(), 2)])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_deletes_old_and_over_cap_alerts_on_the_leader_only() {
    let dir = tempfile::tempdir().unwrap();
    let api = api_with_crd(dir.path());
    let lease_crd = dir.path().join("lease-crd.yaml");
    std::fs::write(&lease_crd, LEASE_CRD).unwrap();
    api.kubectl_ok(&[
        "apply",
        "--validate=false",
        "-f",
        lease_crd.to_str().unwrap(),
    ]);
    api.kubectl_ok(&[
        "wait",
        "--for=condition=Established",
        "--timeout=30s",
        "crd/leases.coordination.k8s.io",
    ]);
    // Another replica holds the Lease (renewed now, for an hour).
    let lease = dir.path().join("lease.yaml");
    std::fs::write(
        &lease,
        format!(
            "apiVersion: coordination.k8s.io/v1\nkind: Lease\nmetadata:\n  name: vulngate-reevaluation\n  \
             namespace: vulngate-system\nspec:\n  holderIdentity: replica-b\n  leaseDurationSeconds: 3600\n  \
             renewTime: \"{}\"\n",
            Utc::now().format("%Y-%m-%dT%H:%M:%S%.6fZ")
        ),
    )
    .unwrap();
    api.kubectl_ok(&["apply", "--validate=false", "-f", lease.to_str().unwrap()]);

    // 2 alerts last seen 100 days ago, 4 recent ones (distinct keys); keep at most 3.
    let kcfg = KubernetesStoreConfig {
        namespace: Some("vulngate-system".into()),
        retention: Duration::from_secs(90 * 86400),
        max_objects: 3,
        retention_interval: Duration::from_secs(1),
    };
    let b = backend(&api, &kcfg);
    let now = Utc::now();
    let old = now - chrono::Duration::days(100);
    let mut alerts = vec![
        alert("old-1", Some("shop"), "old-a", old),
        alert("old-2", None, "old-b", old),
    ];
    for i in 0..4 {
        alerts.push(alert(
            &format!("new-{i}"),
            Some("shop"),
            &format!("w{i}"),
            now - chrono::Duration::minutes(10 - i),
        ));
    }
    // One old key seen again recently: kept (retention follows lastSeen).
    alerts.push(alert("old-3", Some("shop"), "w3", old));
    b.record_new(&alerts).unwrap();
    assert_eq!(kubectl_alerts(&api).len(), 6);

    let mut cfg = config(dir.path(), None);
    cfg.store = StoreUrl::Kubernetes;
    cfg.kubernetes_store = kcfg.clone();
    cfg.kubernetes = Some(KubernetesConfig {
        kubeconfig: Some(api.kubeconfig_path.clone()),
        rules_from: RulesFrom::Files,
        rescan_interval: Duration::ZERO, // nothing to re-evaluate: the store alone elects
        leader_election: LeaderElectionConfig {
            identity: Some("replica-a".into()),
            namespace: Some("vulngate-system".into()),
            lease_duration: Duration::from_secs(3),
            renew_grace: Duration::from_secs(1),
            ..Default::default()
        },
        ..Default::default()
    });
    cfg.rules = Some(dir.path().join("rules.yaml"));
    std::fs::write(
        dir.path().join("rules.yaml"),
        "apiVersion: vulngate.io/v1\nkind: SecurityRule\nmetadata: { name: r }\n\
         spec: { action: audit, conditions: [ { severity: critical } ] }\n",
    )
    .unwrap();
    let server = tokio::task::block_in_place(|| {
        Server::with_source(cfg, Arc::new(local_findings())).unwrap()
    });
    let client = vulngate_server::cluster::client(&KubernetesConfig {
        kubeconfig: Some(api.kubeconfig_path.clone()),
        ..Default::default()
    })
    .await
    .unwrap();
    let tasks = server.start_cluster(client);
    let election = tasks
        .election
        .as_ref()
        .expect("an election for the store's retention");
    // A follower: several retention intervals pass, nothing is deleted.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(!election.leadership.is_leader());
    assert_eq!(
        tokio::task::block_in_place(|| kubectl_alerts(&api)).len(),
        6
    );

    // The other replica goes away: this one leads, and the retention runs.
    tokio::task::block_in_place(|| {
        api.kubectl_ok(&[
            "delete",
            "lease.coordination.k8s.io",
            "-n",
            "vulngate-system",
            "vulngate-reevaluation",
        ])
    });
    let leadership = election.leadership.clone();
    eventually("this replica leads", || leadership.is_leader()).await;
    eventually("retention applied", || {
        tokio::task::block_in_place(|| kubectl_alerts(&api)).len() == 3
    })
    .await;
    let left: BTreeSet<String> = tokio::task::block_in_place(|| kubectl_alerts(&api))
        .iter()
        .map(|o| o["spec"]["name"].as_str().unwrap().to_string())
        .collect();
    // The old ones expired; of the 4 recent ones, the least recently seen (w0) went over the
    // cap; w3 was first seen 100 days ago but seen again now.
    assert_eq!(
        left,
        BTreeSet::from(["w1".to_string(), "w2".to_string(), "w3".to_string()])
    );
    drop(tasks);
}

/// An alert of Deployment `web` in `shop`, raised on `kind` `name`, at `time`.
fn web_alert(id: &str, kind: &str, name: &str, time: DateTime<Utc>) -> Alert {
    let mut a = alert(id, Some("shop"), name, time);
    a.kind = kind.into();
    a.workload_kind = Some("Deployment".into());
    a.workload_name = Some("web".into());
    a
}

/// The objects of Deployment web's key (`a-<hex>` and its later generations), oldest
/// generation first: (name, first alert id, count).
fn generations(api: &CrdApiServer, base: &str) -> Vec<(String, String, i64)> {
    let mut v: Vec<(String, String, i64)> = kubectl_alerts(api)
        .iter()
        .filter(|o| o["metadata"]["name"].as_str().unwrap().starts_with(base))
        .map(|o| {
            (
                o["metadata"]["name"].as_str().unwrap().to_string(),
                o["spec"]["id"].as_str().unwrap().to_string(),
                o["status"]["count"].as_i64().unwrap(),
            )
        })
        .collect();
    v.sort_by_key(|(n, _, _)| (n.len(), n.clone()));
    v
}

/// Issue 18: `store: kubernetes` applies `alerts.dedupWindow` as the SQL stores do
/// (`record_merged`): a repeat within the window of the first alert's time is counted into
/// it (count, lastSeen, kinds); after it, the key starts a new alert (new id, count 1) in a
/// new object; replays count once; two replicas starting the same new alert converge.
#[test]
fn the_dedup_window_starts_a_new_alert_once_it_has_passed() {
    let dir = tempfile::tempdir().unwrap();
    let api = api_with_crd(dir.path());
    let a = Arc::new(backend(&api, &store_cfg()));
    let b = Arc::new(backend(&api, &store_cfg()));
    let w = Duration::from_secs(3600);
    // Whole seconds: the API server keeps times to the microsecond.
    let t0 = DateTime::from_timestamp(Utc::now().timestamp() - 10 * 3600, 0).unwrap();
    let at = move |m: i64| t0 + chrono::Duration::minutes(m);
    let first = web_alert("d-0", "Deployment", "web", at(0));
    let base = object_name(&first);

    // One rollout within the window: one alert, count 3.
    let batch = [
        first.clone(),
        web_alert("rs-0", "ReplicaSet", "web-5d9f7c", at(1)),
        web_alert("p-0", "Pod", "web-5d9f7c-abcde", at(2)),
    ];
    assert_eq!(a.record_merged(&batch, w).unwrap(), 3);
    // At the window's end (inclusive, as in SQL), from the other replica: the same alert.
    assert_eq!(
        b.record_merged(&[web_alert("p-1", "Pod", "web-5d9f7c-fghij", at(60))], w)
            .unwrap(),
        1
    );
    assert_eq!(generations(&api, &base), [(base.clone(), "d-0".into(), 4)]);
    let g1 = a.get("d-0").unwrap().unwrap();
    assert_eq!(g1.count, 4);
    assert_eq!(g1.kinds, ["Deployment", "Pod", "ReplicaSet"]);
    assert_eq!(g1.last_seen, Some(at(60)));

    // Past the window: a new alert, its own id, count 1, in the key's next object.
    let late = web_alert("p-2", "Pod", "web-7f8e9d-klmno", at(61));
    assert_eq!(a.record_merged(std::slice::from_ref(&late), w).unwrap(), 1);
    let g2_name = format!("{base}-2");
    assert_eq!(
        generations(&api, &base),
        [
            (base.clone(), "d-0".into(), 4),
            (g2_name.clone(), "p-2".into(), 1)
        ]
    );
    let g2 = b.get("p-2").unwrap().unwrap();
    assert_eq!((g2.id.as_str(), g2.count), ("p-2", 1));
    assert_eq!(g2.kinds, ["Pod"]);
    assert_eq!(
        b.get(&g2_name).unwrap().unwrap().id,
        "p-2",
        "by object name"
    );
    // Both alerts of the key are listed.
    let listed: Vec<(String, u64)> = a
        .list(&AlertFilter::default())
        .unwrap()
        .into_iter()
        .map(|x| (x.id, x.count))
        .collect();
    assert_eq!(listed, [("p-2".to_string(), 1), ("d-0".to_string(), 4)]);

    // A repeat within the new alert's window goes to it; a replay of an alert already
    // counted (the journal) counts nothing, in whichever object it was counted.
    assert_eq!(
        b.record_merged(&[web_alert("p-3", "Pod", "web-7f8e9d-pqrst", at(100))], w)
            .unwrap(),
        1
    );
    assert_eq!(
        a.record_merged(&[web_alert("p-1", "Pod", "web-5d9f7c-fghij", at(60))], w)
            .unwrap(),
        0
    );
    assert_eq!(a.record_merged(std::slice::from_ref(&late), w).unwrap(), 0);
    // One batch spanning two windows: each alert to its own window's object.
    let batch = [
        web_alert("p-4", "Pod", "x", at(121)),
        web_alert("p-5", "Pod", "y", at(200)),
        web_alert("p-6", "ReplicaSet", "z", at(201)),
    ];
    assert_eq!(b.record_merged(&batch, w).unwrap(), 3);
    let g3_name = format!("{base}-3");
    assert_eq!(
        generations(&api, &base),
        [
            (base.clone(), "d-0".into(), 4),
            (g2_name.clone(), "p-2".into(), 3),
            (g3_name.clone(), "p-5".into(), 2)
        ]
    );

    // Two replicas both see the window passed at once: they converge on one new alert.
    let writers: Vec<_> = [(a.clone(), 300), (b.clone(), 301)]
        .into_iter()
        .map(|(store, m)| {
            std::thread::spawn(move || {
                let x = web_alert(&format!("r-{m}"), "Pod", "p", at(m));
                store.record_merged(&[x], w).unwrap()
            })
        })
        .collect();
    for t in writers {
        // This call's view (the other replica's write may count the first alert of a fresh
        // object); the count below is exact.
        assert!(t.join().unwrap() <= 1);
    }
    let gens = generations(&api, &base);
    assert_eq!(gens.len(), 4, "{gens:#?}");
    assert_eq!(gens[3].0, format!("{base}-4"));
    assert_eq!(gens[3].2, 2);
    // Every object of the key carries the key label.
    let labelled = api.kubectl_ok(&[
        "get",
        "alerts.vulngate.io",
        "-n",
        "shop",
        "-l",
        &format!(
            "{}={}",
            vulngate_server::alerts::kubernetes::LABEL_KEY,
            &base[2..]
        ),
        "-o",
        "name",
    ]);
    assert_eq!(labelled.lines().count(), 4, "{labelled}");
    // kubectl's table: the top workload and the object first admitted, side by side.
    let table = web_alert_table(&api);
    assert!(
        table.lines().any(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            cols.windows(3)
                .any(|w| w == ["web", "Pod", "web-7f8e9d-klmno"])
        }),
        "{table}"
    );
}

/// Issue 18: a rollout of a 100-replica Deployment through the webhook (the Deployment,
/// its ReplicaSet and 100 Pods, with the controllers' ownerReferences) leaves one Alert
/// object, count 102, with `store: kubernetes` and the default de-duplication window.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_replica_rollout_is_one_alert_object() {
    let dir = tempfile::tempdir().unwrap();
    let api = tokio::task::block_in_place(|| api_with_crd(dir.path()));
    let mut cfg = config(
        dir.path(),
        Some(
            "apiVersion: vulngate.io/v1\nkind: SecurityRule\nmetadata: { name: deny-web }\n\
             spec:\n  action: deny\n  scope: [{ field: deployment, op: equals, value: web }]\n  \
             conditions: [{ severity: critical, maxCount: 0 }]\n",
        ),
    );
    cfg.store = StoreUrl::Kubernetes;
    cfg.kubernetes_store = store_cfg();
    cfg.kubernetes = Some(KubernetesConfig {
        kubeconfig: Some(api.kubeconfig_path.clone()),
        rules_from: RulesFrom::Files,
        ..Default::default()
    });
    let server =
        tokio::task::block_in_place(|| Server::with_source(cfg, TestSource::new()).unwrap());
    let owner = |api: &str, kind: &str, name: &str| {
        serde_json::json!([{ "apiVersion": api, "kind": kind, "name": name,
            "uid": format!("uid-{name}"), "controller": true, "blockOwnerDeletion": true }])
    };
    let hash = "5d8f9c7b4";
    let rs_name = format!("web-{hash}");
    let mut rs = workload("ReplicaSet", &rs_name, "shop", &[DEBIAN]);
    rs["metadata"]["labels"] = serde_json::json!({ "app": "web", "pod-template-hash": hash });
    rs["metadata"]["ownerReferences"] = owner("apps/v1", "Deployment", "web");
    let mut reviews = vec![workload("Deployment", "web", "shop", &[DEBIAN]), rs];
    for i in 0..100 {
        let mut p = workload("Pod", &format!("{rs_name}-p{i:03}"), "shop", &[DEBIAN]);
        p["metadata"]["labels"] = serde_json::json!({ "app": "web", "pod-template-hash": hash });
        p["metadata"]["ownerReferences"] = owner("apps/v1", "ReplicaSet", &rs_name);
        reviews.push(p);
    }
    for obj in &reviews {
        let r = admit(&server, &create(obj)).await;
        assert!(!r.allowed, "{}", obj["metadata"]["name"]);
    }
    // Stored before each answer, or journaled and replayed: the count ends at 102.
    eventually("one alert, count 102", || {
        let items = tokio::task::block_in_place(|| kubectl_alerts(&api));
        items.len() == 1 && items[0]["status"]["count"] == 102
    })
    .await;
    let items = tokio::task::block_in_place(|| kubectl_alerts(&api));
    let obj = &items[0];
    assert_eq!(obj["spec"]["kind"], "Deployment");
    assert_eq!(obj["spec"]["workloadName"], "web");
    // kubectl's columns name the workload and the first object admitted.
    let p = web_alert_table(&api);
    assert!(p.contains("WORKLOAD") && p.contains("OBJECT"), "{p}");
    assert_eq!(
        obj["status"]["kinds"],
        serde_json::json!(["Deployment", "Pod", "ReplicaSet"])
    );
}

/// `kubectl get alerts.vulngate.io -A` (the printer columns).
fn web_alert_table(api: &CrdApiServer) -> String {
    api.kubectl_ok(&["get", "alerts.vulngate.io", "-A"])
}

/// Issue 19 on the install default store: the review API's changes of state and its counts
/// (they answered "this store keeps no review state"), the state filter, and a next page
/// that follows the cursor (it returned the first page again).
#[test]
fn review_changes_counts_and_pages_on_the_kubernetes_store() {
    use vulngate_server::alerts::{AlertError, Cursor, ReviewChange, ReviewState as State};
    let dir = tempfile::tempdir().unwrap();
    let api = api_with_crd(dir.path());
    let store = backend(&api, &store_cfg());
    let t0 = Utc::now() - chrono::Duration::minutes(10);
    let alerts: Vec<Alert> = (0..3)
        .map(|i| {
            alert(
                &format!("rv-{i}"),
                Some("shop"),
                &format!("web{i}"),
                t0 + chrono::Duration::seconds(i),
            )
        })
        .collect();
    store.record(&alerts).unwrap();

    let ack = ReviewChange {
        to: State::Acknowledged,
        by: "bob".into(),
        comment: "on it".into(),
        time: Utc::now(),
    };
    let a = AlertBackend::review(&store, "rv-1", &ack)
        .unwrap()
        .expect("rv-1 is stored");
    assert_eq!(a.id, "rv-1");
    assert_eq!(a.review.state, State::Acknowledged);
    assert_eq!(a.review.history.len(), 1, "{:?}", a.review.history);
    let h = &a.review.history[0];
    assert_eq!(
        (h.by.as_str(), h.from, h.to, h.comment.as_str()),
        ("bob", State::Open, State::Acknowledged, "on it")
    );
    // Acknowledged twice: not a transition the state allows.
    match AlertBackend::review(&store, "rv-1", &ack) {
        Err(AlertError::Transition { from, to, .. }) => {
            assert_eq!((from, to), (State::Acknowledged, State::Acknowledged))
        }
        other => panic!("expected a refused transition, got {other:?}"),
    }
    assert!(AlertBackend::review(&store, "rv-none", &ack)
        .unwrap()
        .is_none());
    let resolve = ReviewChange {
        to: State::Resolved,
        comment: String::new(),
        ..ack.clone()
    };
    let a = AlertBackend::review(&store, "rv-1", &resolve)
        .unwrap()
        .unwrap();
    assert_eq!(a.review.history.len(), 2);
    assert_eq!(
        (a.review.history[1].from, a.review.history[1].to),
        (State::Acknowledged, State::Resolved)
    );

    let got = store.get("rv-1").unwrap().unwrap();
    assert_eq!(got.review.state, State::Resolved);
    let ids = |f: &AlertFilter| -> Vec<String> {
        store.list(f).unwrap().into_iter().map(|a| a.id).collect()
    };
    let resolved = AlertFilter {
        state: Some(State::Resolved),
        ..AlertFilter::default()
    };
    assert_eq!(ids(&resolved), ["rv-1"]);
    let counts = store.count_by_state(&AlertFilter::default()).unwrap();
    assert_eq!(
        counts,
        [
            (State::Open, 2),
            (State::Acknowledged, 0),
            (State::Resolved, 1)
        ]
    );

    let first = AlertFilter {
        limit: Some(2),
        ..AlertFilter::default()
    };
    let page1 = store.list(&first).unwrap();
    assert_eq!(
        page1.iter().map(|a| a.id.as_str()).collect::<Vec<_>>(),
        ["rv-2", "rv-1"]
    );
    let next = AlertFilter {
        after: Some(Cursor::after(page1.last().unwrap())),
        ..first
    };
    assert_eq!(ids(&next), ["rv-0"]);
}
