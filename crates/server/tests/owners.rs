//! Workloads judged as what they are (issue 18): the `deployment` scope field and exemptions
//! name a Pod's or ReplicaSet's top owner, and one rollout leaves one alert.

#![allow(clippy::unwrap_used)] // helpers outside #[test] functions

mod support;

use std::collections::BTreeSet;

use serde_json::{json, Value};
use support::*;
use vulngate_server::{AlertAction, AlertFilter};

const HASH: &str = "5d8f9c7b4";

/// deny critical everywhere, except the Deployment `web`.
const EXEMPT_WEB: &str = r#"
apiVersion: vulngate.io/v1
kind: SecurityRule
metadata: { name: deny-critical }
spec:
  action: deny
  conditions: [{ severity: critical, maxCount: 0 }]
  exemptions:
    - { field: deployment, op: equals, value: web, justification: "owned by the platform team" }
"#;

/// deny critical in the Deployment `web` only.
const DENY_WEB: &str = r#"
apiVersion: vulngate.io/v1
kind: SecurityRule
metadata: { name: deny-web }
spec:
  action: deny
  scope: [{ field: deployment, op: equals, value: web }]
  conditions: [{ severity: critical, maxCount: 0 }]
"#;

fn owner_ref(api: &str, kind: &str, name: &str) -> Value {
    json!({ "apiVersion": api, "kind": kind, "name": name, "uid": format!("uid-{name}"),
            "controller": true, "blockOwnerDeletion": true })
}

/// The ReplicaSet `web-<HASH>` of Deployment `web`, as the Deployment controller creates it.
fn replica_set(ns: &str, deployment: &str, images: &[&str]) -> Value {
    let mut rs = workload("ReplicaSet", &format!("{deployment}-{HASH}"), ns, images);
    rs["metadata"]["labels"] = json!({ "app": deployment, "pod-template-hash": HASH });
    rs["metadata"]["ownerReferences"] = json!([owner_ref("apps/v1", "Deployment", deployment)]);
    rs["spec"]["template"]["metadata"]["labels"]["pod-template-hash"] = json!(HASH);
    rs
}

/// Pod `i` of that ReplicaSet, labelled with `hash`.
fn pod(ns: &str, deployment: &str, hash: &str, i: usize, images: &[&str]) -> Value {
    let rs = format!("{deployment}-{HASH}");
    let mut p = workload("Pod", &format!("{rs}-p{i:03}"), ns, images);
    p["metadata"]["labels"] = json!({ "app": deployment, "pod-template-hash": hash });
    p["metadata"]["ownerReferences"] = json!([owner_ref("apps/v1", "ReplicaSet", &rs)]);
    p
}

/// The reviews of a rollout of `replicas` Pods: Deployment, ReplicaSet, Pods.
fn rollout(ns: &str, replicas: usize, images: &[&str]) -> Vec<Value> {
    let mut objects = vec![
        workload("Deployment", "web", ns, images),
        replica_set(ns, "web", images),
    ];
    objects.extend((0..replicas).map(|i| pod(ns, "web", HASH, i, images)));
    objects
}

#[tokio::test]
async fn an_exempted_deployment_exempts_its_replicaset_and_pods() {
    let h = harness(EXEMPT_WEB);
    for obj in rollout("shop", 2, &[DEBIAN]) {
        let r = admit(&h.server, &create(&obj)).await;
        assert!(
            r.allowed,
            "{} {}: {}",
            obj["kind"], obj["metadata"]["name"], r.result.message
        );
    }
    // Another Deployment's Pods are not exempted.
    let other = pod("shop", "api", HASH, 0, &[DEBIAN]);
    let r = admit(&h.server, &create(&other)).await;
    assert!(!r.allowed);
}

#[tokio::test]
async fn a_deployment_scoped_deny_denies_its_pods() {
    let h = harness(DENY_WEB);
    for obj in rollout("shop", 2, &[DEBIAN]) {
        let r = admit(&h.server, &create(&obj)).await;
        assert!(
            !r.allowed,
            "{} {} allowed",
            obj["kind"], obj["metadata"]["name"]
        );
        assert_eq!(r.audit_annotations["rule"], "deny-web");
    }
    let r = admit(&h.server, &create(&pod("shop", "api", HASH, 0, &[DEBIAN]))).await;
    assert!(r.allowed, "{}", r.result.message);
}

#[tokio::test]
async fn a_pod_whose_template_hash_does_not_match_is_its_replicasets() {
    let h = harness(EXEMPT_WEB);
    let p = pod("shop", "web", "0000000", 0, &[DEBIAN]);
    let r = admit(&h.server, &create(&p)).await;
    assert!(!r.allowed, "the exemption of Deployment web applied");
    let a = h
        .server
        .alerts()
        .get(&r.audit_annotations["alert-id"])
        .unwrap()
        .unwrap();
    assert_eq!(a.kind, "Pod");
    assert_eq!(a.name.as_deref(), Some("web-5d8f9c7b4-p000"));
    assert_eq!(a.workload_kind.as_deref(), Some("ReplicaSet"));
    assert_eq!(a.workload_name.as_deref(), Some("web-5d8f9c7b4"));
}

/// Every review of the rollout leaves its alert id, and all name one alert.
async fn one_alert_per_rollout(replicas: usize) {
    let h = harness(DENY_WEB);
    let reviews = rollout("shop", replicas, &[DEBIAN]);
    let mut ids = BTreeSet::new();
    for obj in &reviews {
        let r = admit(&h.server, &create(obj)).await;
        assert!(!r.allowed);
        ids.insert(r.audit_annotations["alert-id"].clone());
    }
    let all = h
        .server
        .alerts()
        .list(&AlertFilter {
            limit: Some(10_000),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(all.len(), 1, "{all:#?}");
    let a = &all[0];
    assert_eq!(a.count, reviews.len() as u64);
    assert_eq!(a.action, AlertAction::Deny);
    // The first review's alert keeps its id: the Deployment's.
    assert_eq!(a.kind, "Deployment");
    assert_eq!(a.workload_kind.as_deref(), Some("Deployment"));
    assert_eq!(a.workload_name.as_deref(), Some("web"));
    assert_eq!(a.kinds, vec!["Deployment", "ReplicaSet", "Pod"]);
    assert!(a.last_seen.unwrap() >= a.time);
    // The id every answer gave finds that alert.
    assert_eq!(ids.len(), reviews.len());
    for id in &ids {
        assert_eq!(h.server.alerts().get(id).unwrap().unwrap().id, a.id);
    }
}

#[tokio::test]
async fn a_two_replica_rollout_leaves_one_alert() {
    one_alert_per_rollout(2).await;
}

#[tokio::test]
async fn a_hundred_replica_rollout_leaves_one_alert() {
    one_alert_per_rollout(100).await;
}

#[tokio::test]
async fn without_a_dedup_window_every_review_has_its_alert() {
    let h = harness_with(DENY_WEB, TestSource::new(), |c| {
        c.alerts.dedup_window = std::time::Duration::ZERO;
    });
    for obj in rollout("shop", 2, &[DEBIAN]) {
        admit(&h.server, &create(&obj)).await;
    }
    let all = h.server.alerts().list(&AlertFilter::default()).unwrap();
    assert_eq!(all.len(), 4);
    assert!(all.iter().all(|a| a.count == 1));
}

#[tokio::test]
async fn other_images_rules_and_namespaces_are_other_alerts() {
    let h = harness(RULES);
    // Deployment web in prod-shop: DEBIAN denied (deny-critical-prod); in dev-shop audited.
    for ns in ["prod-shop", "dev-shop"] {
        for obj in rollout(ns, 2, &[DEBIAN]) {
            admit(&h.server, &create(&obj)).await;
        }
    }
    let all = h.server.alerts().list(&AlertFilter::default()).unwrap();
    let mut keys: Vec<(Option<String>, AlertAction, u64)> = all
        .iter()
        .map(|a| (a.namespace.clone(), a.action, a.count))
        .collect();
    keys.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        keys,
        vec![
            (Some("dev-shop".into()), AlertAction::Audit, 4),
            (Some("prod-shop".into()), AlertAction::Deny, 4),
        ]
    );
}

/// audit critical in the Deployment `web` only.
const AUDIT_WEB: &str = r#"
apiVersion: vulngate.io/v1
kind: SecurityRule
metadata: { name: audit-web }
spec:
  action: audit
  scope: [{ field: deployment, op: equals, value: web }]
  conditions: [{ severity: critical, maxCount: 0 }]
"#;

/// Issue 18: the answer names the top workload and the object admitted when they differ
/// (the denial message, each warning), the alert holds both and words them alike; the
/// Deployment itself, its own workload, reads as before.
#[tokio::test]
async fn answers_and_alerts_name_the_top_workload_and_the_object_admitted() {
    let h = harness_with(DENY_WEB, TestSource::new(), |c| {
        c.alerts.dedup_window = std::time::Duration::ZERO;
    });
    let [dep, rs, p] = <[Value; 3]>::try_from(rollout("shop", 1, &[DEBIAN])).unwrap();
    let rs_name = format!("web-{HASH}");
    let pod_name = format!("web-{HASH}-p000");
    for (obj, subject) in [
        (&dep, None),
        (
            &rs,
            Some(format!(
                "Deployment shop/web (admitted: ReplicaSet shop/{rs_name})"
            )),
        ),
        (
            &p,
            Some(format!(
                "Deployment shop/web (admitted: Pod shop/{pod_name})"
            )),
        ),
    ] {
        let r = admit(&h.server, &create(obj)).await;
        assert!(!r.allowed);
        let plain = format!("{DEBIAN}@{DEBIAN_DIGEST}: denied by rule \"deny-web\": ");
        match &subject {
            Some(s) => assert!(
                r.result.message.starts_with(&format!("{s}: {plain}")),
                "{}",
                r.result.message
            ),
            None => assert!(r.result.message.starts_with(&plain), "{}", r.result.message),
        }
        let a = h
            .server
            .alerts()
            .get(&r.audit_annotations["alert-id"])
            .unwrap()
            .unwrap();
        assert_eq!(a.subject(), subject);
        assert_eq!(a.workload_name.as_deref(), Some("web"));
    }

    // Audited: each warning opens with the subject.
    let h = harness(AUDIT_WEB);
    let r = admit(&h.server, &create(&p)).await;
    assert!(r.allowed);
    let w = warnings(&r);
    assert!(
        w[0].starts_with(&format!(
            "Deployment shop/web (admitted: Pod shop/{pod_name}): {DEBIAN}@{DEBIAN_DIGEST}: \
             audited by rule \"audit-web\": "
        )),
        "{w:?}"
    );
}
