//! The webhook in process (`router().oneshot`): decisions, messages, policies, cache, alerts.

#![allow(clippy::unwrap_used)] // helpers outside #[test] functions

mod support;

use std::sync::Arc;

use axum::http::StatusCode;
use chrono::Utc;
use rstest::rstest;
use serde_json::json;
use support::*;
use vulngate_core::{evaluate, AnalyzedReport, ImageRef, Precedence, RequestContext, Subject};
use vulngate_server::{
    AlertAction, AlertFilter, AlertStore, BreakGlassConfig, Config, FailurePolicy, Server,
};

/// The engine's reason for `image` (with `fixture`) in `ns`, to check the exact message form.
fn engine_reason(
    rules_yaml: &str,
    fixture_path: &str,
    image: &str,
    digest: &str,
    ns: &str,
) -> String {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("r.yaml");
    std::fs::write(&p, rules_yaml).unwrap();
    let rules = vulngate_core::RuleSet::load(&p).unwrap();
    let report = match vulngate_core::findings::parse(&fixture(fixture_path)).unwrap() {
        vulngate_core::findings::Parsed::Report(r) => r,
        _ => panic!("not a report"),
    };
    let img = ImageRef::parse(image).unwrap().with_digest(digest);
    let analyzed = AnalyzedReport::new(&report, Default::default(), &[], Some(&img));
    let ctx = RequestContext {
        namespace: Some(ns.into()),
        ..Default::default()
    };
    evaluate(
        &rules,
        Precedence::Default,
        &ctx,
        &img,
        Subject::Report(&analyzed),
        Utc::now(),
    )
    .reason
}

#[tokio::test]
async fn deployment_denied_with_exact_message() {
    let h = harness(RULES);
    let r = admit(
        &h.server,
        &create(&deployment("prod-shop", &[DEBIAN, ALPINE])),
    )
    .await;
    assert!(!r.allowed);
    assert_eq!(r.result.code, 403);
    let reason = engine_reason(
        RULES,
        "trivy/debian-buster.json",
        DEBIAN,
        DEBIAN_DIGEST,
        "prod-shop",
    );
    assert_eq!(
        r.result.message,
        format!("{DEBIAN}@{DEBIAN_DIGEST}: denied by rule \"deny-critical-prod\": {reason}")
    );
    assert_eq!(r.audit_annotations["decision"], "deny");
    assert_eq!(r.audit_annotations["rule"], "deny-critical-prod");
    assert_eq!(r.audit_annotations["digest"], DEBIAN_DIGEST);
    // One alert, findable by the id in the annotations.
    let id = &r.audit_annotations["alert-id"];
    let a = h.server.alerts().get(id).unwrap().expect("alert");
    assert_eq!(a.action, AlertAction::Deny);
    assert_eq!(a.namespace.as_deref(), Some("prod-shop"));
    assert_eq!(a.kind, "Deployment");
    assert_eq!(a.name.as_deref(), Some("web"));
    assert_eq!(a.operation, "CREATE");
    assert_eq!(a.user.as_deref(), Some("alice@example.com"));
    assert_eq!(a.image, DEBIAN);
    assert_eq!(a.digest.as_deref(), Some(DEBIAN_DIGEST));
    assert_eq!(a.rule.as_deref(), Some("deny-critical-prod"));
    assert_eq!(
        a.rule_snapshot.as_ref().unwrap()["metadata"]["name"],
        "deny-critical-prod"
    );
    let v = a.vulnerability.as_ref().expect("deciding vulnerability");
    assert_eq!(v.severity, vulngate_core::Severity::Critical);
    assert!(!v.packages.is_empty());
    assert_eq!(a.counts.critical, 1);
    assert_eq!(a.counts.low, 1);
    let report = a.report.as_ref().expect("report identity");
    assert_eq!(
        report.scanner.as_ref().unwrap().name.to_lowercase(),
        "trivy"
    );
    assert!(report.digest.as_ref().unwrap().starts_with("sha256:"));
    assert_eq!(a.reason, reason);
    assert!(!a.dry_run);
}

#[tokio::test]
async fn two_denied_images_are_joined() {
    let h = harness(RULES);
    let r = admit(
        &h.server,
        &create(&deployment("prod-shop", &[DEBIAN, GRYPE])),
    )
    .await;
    assert!(!r.allowed);
    let lines: Vec<&str> = r.result.message.split("; ").collect();
    assert_eq!(lines.len(), 2, "{}", r.result.message);
    assert!(lines[0].starts_with(&format!("{DEBIAN}@{DEBIAN_DIGEST}: denied by rule")));
    assert!(lines[1].starts_with(&format!("{GRYPE}: denied by rule \"deny-critical-prod\": ")));
    assert_eq!(r.audit_annotations["alert-id"].split(',').count(), 2);
}

#[tokio::test]
async fn audited_with_warnings_and_annotations() {
    let h = harness(RULES);
    let r = admit(&h.server, &create(&deployment("dev", &[DEBIAN, ALPINE]))).await;
    assert!(r.allowed);
    let w = warnings(&r);
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(
        w[0].starts_with(&format!(
            "{DEBIAN}@{DEBIAN_DIGEST}: audited by rule \"audit-high\": "
        )),
        "{}",
        w[0]
    );
    assert_eq!(r.audit_annotations["decision"], "audit");
    assert_eq!(r.audit_annotations["rule"], "audit-high");
    assert_eq!(r.audit_annotations["digest"], DEBIAN_DIGEST);
    let a = h
        .server
        .alerts()
        .get(&r.audit_annotations["alert-id"])
        .unwrap()
        .unwrap();
    assert_eq!(a.action, AlertAction::Audit);
}

#[tokio::test]
async fn clean_images_allowed_without_alert() {
    let h = harness(RULES);
    let r = admit(
        &h.server,
        &create(&deployment("prod-shop", &[ALPINE, CENTOS])),
    )
    .await;
    assert!(r.allowed);
    assert!(r.warnings.is_none());
    assert!(r.audit_annotations.is_empty());
    assert!(h
        .server
        .alerts()
        .list(&AlertFilter::default())
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn unscanned_allowed_without_block_unscanned() {
    let h = harness(RULES);
    let r = admit(&h.server, &create(&deployment("prod-shop", &[UNSCANNED]))).await;
    assert!(r.allowed);
    assert!(r.warnings.is_none());
}

#[tokio::test]
async fn unscanned_denied_with_block_unscanned() {
    let h = harness(RULES_BLOCK_UNSCANNED);
    let r = admit(&h.server, &create(&deployment("prod-shop", &[UNSCANNED]))).await;
    assert!(!r.allowed);
    assert!(
        r.result.message.starts_with(&format!(
            "{UNSCANNED}: denied by rule \"deny-unscanned-prod\": "
        )),
        "{}",
        r.result.message
    );
    let a = h
        .server
        .alerts()
        .get(&r.audit_annotations["alert-id"])
        .unwrap()
        .unwrap();
    assert_eq!(a.unscanned, Some(vulngate_core::UnscannedReason::NoReport));
}

#[tokio::test]
async fn excluded_namespace_is_not_gated() {
    let h = harness(RULES);
    for ns in ["kube-system", "vulngate"] {
        let r = admit(&h.server, &create(&deployment(ns, &[DEBIAN]))).await;
        assert!(r.allowed && r.warnings.is_none(), "{ns}");
    }
    let h = harness_with(RULES, TestSource::new(), |c| {
        c.excluded_namespaces = vec!["prod-legacy".into()]
    });
    let r = admit(&h.server, &create(&deployment("prod-legacy", &[DEBIAN]))).await;
    assert!(r.allowed);
    assert_eq!(h.source.calls(), 0);
    let r = admit(&h.server, &create(&deployment("prod-shop", &[DEBIAN]))).await;
    assert!(!r.allowed);
}

#[tokio::test]
async fn skipped_images_are_not_gated() {
    let h = harness_with(RULES, TestSource::new(), |c| {
        c.skip_images = vec!["registry.example.com/team/debian:*".into()]
    });
    let r = admit(
        &h.server,
        &create(&deployment("prod-shop", &[DEBIAN, ALPINE])),
    )
    .await;
    assert!(r.allowed);
    assert_eq!(h.source.calls(), 1); // only alpine looked up
}

/// Issue 17.13: a dry run (`sideEffects: NoneOnDryRun`) is decided, answered and counted,
/// but writes nothing durable: no alert (before: an alert marked `dry_run`).
#[tokio::test]
async fn dry_run_is_answered_and_counted_but_writes_no_alert() {
    let h = harness(RULES);
    let mut rv = create(&deployment("prod-shop", &[DEBIAN]));
    rv["request"]["dryRun"] = json!(true);
    let r = admit(&h.server, &rv).await;
    assert!(!r.allowed);
    assert!(
        r.result.message.contains("denied by rule"),
        "{}",
        r.result.message
    );
    assert!(!r.audit_annotations.contains_key("alert-id"));
    assert!(h
        .server
        .alerts()
        .list(&Default::default())
        .unwrap()
        .is_empty());
    let metrics = h.server.metrics().encode();
    assert!(
        metrics.contains("vulngate_image_decisions_total{outcome=\"deny\"} 1"),
        "{metrics}"
    );
    // The same review, not a dry run, leaves its alert.
    rv["request"]["dryRun"] = json!(false);
    let r = admit(&h.server, &rv).await;
    assert!(h
        .server
        .alerts()
        .get(&r.audit_annotations["alert-id"])
        .unwrap()
        .is_some());
}

#[tokio::test]
async fn update_without_image_change_is_not_reevaluated() {
    let h = harness(RULES);
    let old = deployment("prod-shop", &[DEBIAN]);
    let mut new = old.clone();
    new["spec"]["replicas"] = json!(5);
    let r = admit(&h.server, &review("UPDATE", &new, Some(&old))).await;
    assert!(r.allowed);
    assert_eq!(h.source.calls(), 0);

    // An image change is evaluated.
    let changed = deployment("prod-shop", &[DEBIAN, ALPINE]);
    let r = admit(&h.server, &review("UPDATE", &changed, Some(&old))).await;
    assert!(!r.allowed);
    assert_eq!(
        h.server
            .alerts()
            .get(&r.audit_annotations["alert-id"])
            .unwrap()
            .unwrap()
            .operation,
        "UPDATE"
    );

    // Configurable: re-evaluate unchanged updates.
    let h = harness_with(RULES, TestSource::new(), |c| {
        c.reevaluate_unchanged_updates = true
    });
    let r = admit(&h.server, &review("UPDATE", &new, Some(&old))).await;
    assert!(!r.allowed);
}

#[tokio::test]
async fn delete_and_other_kinds_are_allowed() {
    let h = harness(RULES);
    let d = deployment("prod-shop", &[DEBIAN]);
    let mut rv = review("DELETE", &d, Some(&d));
    rv["request"]["object"] = json!(null);
    assert!(admit(&h.server, &rv).await.allowed);
    let cm = json!({ "apiVersion": "v1", "kind": "ConfigMap", "metadata": { "name": "c", "namespace": "prod-shop" } });
    assert!(admit(&h.server, &create(&cm)).await.allowed);
    assert_eq!(h.source.calls(), 0);
}

#[rstest]
#[case::not_json(b"{not json".to_vec(), "request body is not valid JSON")]
#[case::array(b"[]".to_vec(), "expected an AdmissionReview object, found an array")]
#[case::wrong_version(
    serde_json::to_vec(&json!({ "apiVersion": "admission.k8s.io/v1beta1", "kind": "AdmissionReview", "request": create(&deployment("a", &[DEBIAN]))["request"] })).unwrap(),
    "unsupported AdmissionReview apiVersion \"admission.k8s.io/v1beta1\""
)]
#[case::no_request(
    serde_json::to_vec(&json!({ "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview" })).unwrap(),
    "AdmissionReview has no request"
)]
#[case::bad_operation(
    { let mut r = create(&deployment("a", &[DEBIAN])); r["request"]["operation"] = json!("EXPLODE"); serde_json::to_vec(&r).unwrap() },
    "invalid AdmissionReview at request.operation"
)]
#[case::uid_type(
    { let mut r = create(&deployment("a", &[DEBIAN])); r["request"]["uid"] = json!(7); serde_json::to_vec(&r).unwrap() },
    "invalid AdmissionReview at request.uid"
)]
#[tokio::test]
async fn malformed_review_is_400(#[case] body: Vec<u8>, #[case] expected: &str) {
    let h = harness(RULES);
    let (status, body) = post_raw(&h.server, "/validate", body).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let text = String::from_utf8(body).unwrap();
    assert!(text.contains(expected), "{text}");
}

#[tokio::test]
async fn unreadable_object_follows_failure_policy() {
    let mut obj = deployment("prod-shop", &[DEBIAN]);
    obj["spec"]["template"]["spec"]["containers"] = json!("nginx");
    for (policy, allowed) in [
        (FailurePolicy::Unscanned, false),
        (FailurePolicy::Deny, false),
        (FailurePolicy::Allow, true),
    ] {
        let h = harness_with(RULES, TestSource::new(), |c| c.failure_policy = policy);
        let r = admit(&h.server, &create(&obj)).await;
        assert_eq!(r.allowed, allowed, "{policy:?}");
        let text = if allowed {
            warnings(&r)[0].clone()
        } else {
            r.result.message.clone()
        };
        assert!(
            text.starts_with("vulngate cannot read this Deployment: spec.template.spec.containers"),
            "{text}"
        );
    }
}

/// Issue 17.12: a decision the failure policy takes on an unreadable object leaves an alert
/// (deny for `deny`/`unscanned`, audit for `allow`), except for a dry run.
#[tokio::test]
async fn unreadable_object_decision_leaves_an_alert() {
    let mut obj = deployment("prod-shop", &[DEBIAN]);
    obj["spec"]["template"]["spec"]["containers"] = json!("nginx");
    for (policy, action) in [
        (FailurePolicy::Deny, AlertAction::Deny),
        (FailurePolicy::Unscanned, AlertAction::Deny),
        (FailurePolicy::Allow, AlertAction::Audit),
    ] {
        let h = harness_with(RULES, TestSource::new(), |c| c.failure_policy = policy);
        admit(&h.server, &create(&obj)).await;
        let alerts = h.server.alerts().list(&Default::default()).unwrap();
        assert_eq!(alerts.len(), 1, "{policy:?}");
        let a = &alerts[0];
        assert_eq!(a.action, action, "{policy:?}");
        assert_eq!(a.kind, "Deployment");
        assert_eq!(a.namespace.as_deref(), Some("prod-shop"));
        assert_eq!(a.request_uid, "705ab4f5-6393-11e8-b7cc-42010a800002");
        assert!(
            a.reason
                .starts_with("vulngate cannot read this Deployment: spec.template.spec.containers"),
            "{}",
            a.reason
        );
        let mut dry = create(&obj);
        dry["request"]["dryRun"] = json!(true);
        admit(&h.server, &dry).await;
        assert_eq!(
            h.server.alerts().list(&Default::default()).unwrap().len(),
            1
        );
    }
}

#[rstest]
#[case("Pod")]
#[case("Deployment")]
#[case("ReplicaSet")]
#[case("StatefulSet")]
#[case("DaemonSet")]
#[case("Job")]
#[case("CronJob")]
#[case("ReplicationController")]
#[tokio::test]
async fn every_workload_kind_is_gated(#[case] kind: &str) {
    let h = harness(RULES);
    let obj = workload(kind, "w1", "prod-shop", &[ALPINE, DEBIAN]);
    let r = admit(&h.server, &create(&obj)).await;
    assert!(!r.allowed, "{kind}");
    assert!(r
        .result
        .message
        .contains("denied by rule \"deny-critical-prod\""));
    let a = h
        .server
        .alerts()
        .get(&r.audit_annotations["alert-id"])
        .unwrap()
        .unwrap();
    assert_eq!(a.kind, kind);
    assert_eq!(a.name.as_deref(), Some("w1"));
    let r = admit(
        &h.server,
        &create(&workload(kind, "w2", "prod-shop", &[ALPINE])),
    )
    .await;
    assert!(r.allowed, "{kind}");
}

#[tokio::test]
async fn init_and_ephemeral_containers_are_gated() {
    let h = harness(RULES);
    let mut pod = workload("Pod", "p", "prod-shop", &[ALPINE]);
    pod["spec"]["initContainers"] = json!([{ "name": "init", "image": DEBIAN }]);
    let r = admit(&h.server, &create(&pod)).await;
    assert!(!r.allowed);
    assert!(r.result.message.starts_with(DEBIAN));

    // kubectl debug: UPDATE on the ephemeralcontainers subresource.
    let old = workload("Pod", "p", "prod-shop", &[ALPINE]);
    let mut new = old.clone();
    new["spec"]["ephemeralContainers"] = json!([{ "name": "debugger", "image": GRYPE }]);
    let mut rv = review("UPDATE", &new, Some(&old));
    rv["request"]["subResource"] = json!("ephemeralcontainers");
    let r = admit(&h.server, &rv).await;
    assert!(!r.allowed);
    assert!(r.result.message.starts_with(GRYPE), "{}", r.result.message);

    // Other subresources are not gated.
    rv["request"]["subResource"] = json!("status");
    assert!(admit(&h.server, &rv).await.allowed);
}

#[rstest]
#[case::unscanned_blocking(FailurePolicy::Unscanned, RULES_BLOCK_UNSCANNED, false)]
#[case::unscanned_not_blocking(FailurePolicy::Unscanned, RULES, true)]
#[case::allow(FailurePolicy::Allow, RULES_BLOCK_UNSCANNED, true)]
#[case::deny(FailurePolicy::Deny, RULES, false)]
#[tokio::test]
async fn failure_policy_when_source_errors(
    #[case] policy: FailurePolicy,
    #[case] rules: &str,
    #[case] allowed: bool,
) {
    let src = Arc::new(TestSource::with(true, false, None));
    let h = harness_with(rules, src, |c| c.failure_policy = policy);
    let r = admit(&h.server, &create(&deployment("prod-shop", &[ALPINE]))).await;
    assert_eq!(r.allowed, allowed, "{r:?}");
    let all = format!("{} {:?}", r.result.message, r.warnings);
    assert!(
        !all.contains("10.0.0.7") && !all.contains("internal"),
        "leak: {all}"
    );
    match (policy, allowed) {
        (FailurePolicy::Unscanned, false) => assert!(
            r.result.message.starts_with(&format!(
                "{ALPINE}: denied by rule \"deny-unscanned-prod\": "
            )),
            "{}",
            r.result.message
        ),
        (FailurePolicy::Deny, _) => assert_eq!(
            r.result.message,
            format!("{ALPINE}: denied by failure policy: findings source unavailable")
        ),
        (FailurePolicy::Allow, _) => assert_eq!(
            warnings(&r),
            vec![format!(
                "{ALPINE}: findings source unavailable; allowed by the failure policy"
            )]
        ),
        _ => assert!(r.warnings.is_none()),
    }
    // Failures are not cached: the next request asks again.
    admit(&h.server, &create(&deployment("prod-shop", &[ALPINE]))).await;
    assert_eq!(h.source.calls(), 2);
}

#[rstest]
#[case::unscanned(FailurePolicy::Unscanned, false)]
#[case::allow(FailurePolicy::Allow, true)]
#[case::deny(FailurePolicy::Deny, false)]
#[tokio::test]
async fn failure_policy_when_deadline_passes(#[case] policy: FailurePolicy, #[case] allowed: bool) {
    let src = Arc::new(TestSource::with(false, true, None));
    let h = harness_with(RULES_BLOCK_UNSCANNED, src, |c| {
        c.failure_policy = policy;
        c.deadline_margin = std::time::Duration::from_millis(700);
    });
    // timeout=1s, margin 700ms: the lookups get 300ms.
    let r = admit_uri(
        &h.server,
        "/validate?timeout=1s",
        &create(&deployment("prod-shop", &[ALPINE, DEBIAN])),
    )
    .await;
    assert_eq!(r.allowed, allowed);
    if !allowed {
        let lines: Vec<&str> = r.result.message.split("; ").collect();
        assert_eq!(lines.len(), 2, "{}", r.result.message);
        assert!(r
            .result
            .message
            .contains("did not finish before the admission deadline"));
    } else {
        assert_eq!(warnings(&r).len(), 2);
    }
}

#[tokio::test]
async fn findings_are_cached() {
    let h = harness(RULES);
    let rv = create(&deployment("prod-shop", &[DEBIAN]));
    let a = admit(&h.server, &rv).await;
    let b = admit(&h.server, &rv).await;
    assert_eq!(a.result.message, b.result.message);
    assert_eq!(h.source.calls(), 1);
    assert_eq!(h.server.metrics().cache_misses(), 1);
    assert_eq!(h.server.metrics().cache_hits(), 1);
    // The same image in another namespace: same cached findings, the context still applies.
    let c = admit(&h.server, &create(&deployment("dev", &[DEBIAN]))).await;
    assert!(c.allowed);
    assert_eq!(h.source.calls(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_identical_lookups_are_single_flight() {
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let src = Arc::new(TestSource::with(false, false, Some(gate.clone())));
    let h = harness_with(RULES, src.clone(), |_| {});
    let rv = create(&deployment("prod-shop", &[DEBIAN]));
    let mut tasks = Vec::new();
    for _ in 0..6 {
        let server = h.server.clone();
        let rv = rv.clone();
        tasks.push(tokio::spawn(async move { admit(&server, &rv).await }));
    }
    // Let every request reach the cache, then open the gate.
    while src.calls() == 0 {
        tokio::task::yield_now().await;
    }
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    gate.add_permits(100);
    for t in tasks {
        assert!(!t.await.unwrap().allowed);
    }
    assert_eq!(src.calls(), 1);
}

#[tokio::test]
async fn rule_reload_keeps_last_good_set_and_applies_good_edits_immediately() {
    let h = harness(RULES);
    let rv = create(&deployment("prod-shop", &[DEBIAN]));
    assert!(!admit(&h.server, &rv).await.allowed);
    let v1 = h.server.rules().current().version().to_string();

    // A bad edit: rejected, the last good set stays.
    std::fs::write(
        h.rules_path(),
        RULES.replace("action: deny", "action: block"),
    )
    .unwrap();
    assert!(h.server.rules().reload().is_err());
    assert_eq!(h.server.rules().current().version(), v1);
    assert_eq!(h.server.metrics().rules_reload_failures(), 1);
    assert!(!admit(&h.server, &rv).await.allowed);

    // A good edit (deny becomes audit) applies to the next request, cache or not.
    std::fs::write(
        h.rules_path(),
        RULES.replace("action: deny", "action: audit"),
    )
    .unwrap();
    h.server.rules().reload().unwrap();
    assert_ne!(h.server.rules().current().version(), v1);
    let r = admit(&h.server, &rv).await;
    assert!(r.allowed);
    assert_eq!(warnings(&r).len(), 1);
    assert_eq!(h.source.calls(), 1);
}

#[tokio::test]
async fn alert_is_written_before_the_response_and_survives_reopen() {
    let h = harness(RULES);
    let r = admit(&h.server, &create(&deployment("prod-shop", &[DEBIAN]))).await;
    let id = r.audit_annotations["alert-id"].clone();
    // At response time the alert is already in the database, for another connection too.
    let data_dir = h.server.config().data_dir.clone();
    let other = AlertStore::open(&data_dir).unwrap();
    assert_eq!(other.get(&id).unwrap().unwrap().id, id);
    drop(other);
    drop(h.server);
    let reopened = AlertStore::open(&data_dir).unwrap();
    let listed = reopened
        .list(&AlertFilter {
            namespace: Some("prod-shop".into()),
            action: Some(AlertAction::Deny),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].id, id);
}

#[derive(Debug)]
struct BrokenStore;

impl vulngate_server::AlertBackend for BrokenStore {
    fn record(&self, _: &[vulngate_server::Alert]) -> Result<(), vulngate_server::AlertError> {
        Err(vulngate_server::AlertError::Other(
            "disk full at /var/lib/secret".into(),
        ))
    }
    fn list(
        &self,
        _: &AlertFilter,
    ) -> Result<Vec<vulngate_server::Alert>, vulngate_server::AlertError> {
        Ok(vec![])
    }
    fn get(&self, _: &str) -> Result<Option<vulngate_server::Alert>, vulngate_server::AlertError> {
        Ok(None)
    }
}

#[rstest]
#[case::unscanned(FailurePolicy::Unscanned, false)]
#[case::deny(FailurePolicy::Deny, false)]
#[case::allow(FailurePolicy::Allow, true)]
#[tokio::test]
async fn alert_write_failure_follows_failure_policy(
    #[case] policy: FailurePolicy,
    #[case] allowed: bool,
) {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path(), Some(RULES));
    cfg.failure_policy = policy;
    // No journal either (with one, the alert is journaled: tests/alert_writer.rs).
    cfg.alert_writer.journal_max_bytes = 0;
    let store = AlertStore::from_backend(Arc::new(BrokenStore));
    let server = Server::with_parts(cfg, TestSource::new(), store).unwrap();
    // Audited: the alert cannot be recorded.
    let r = admit(&server, &create(&deployment("dev", &[DEBIAN]))).await;
    assert_eq!(r.allowed, allowed);
    let all = format!("{} {:?}", r.result.message, r.warnings);
    assert!(!all.contains("/var/lib/secret"), "leak: {all}");
    if !allowed {
        assert_eq!(r.result.code, 503);
        assert!(r.result.message.contains("could not record the alert"));
    }
    // Denied stays denied.
    let r = admit(&server, &create(&deployment("prod-shop", &[DEBIAN]))).await;
    assert!(!r.allowed);
    assert!(r.result.message.contains("denied by rule"));
}

#[tokio::test]
async fn break_glass_allows_and_alerts() {
    let h = harness_with(RULES, TestSource::new(), |c| {
        c.break_glass = Some(BreakGlassConfig {
            allowed_users: vec!["alice@example.com".into()],
            ..BreakGlassConfig::default()
        })
    });
    let mut d = deployment("prod-shop", &[DEBIAN, ALPINE]);
    d["metadata"]["annotations"] = json!({ "vulngate.io/break-glass": "INC-42 outage fix" });
    let r = admit(&h.server, &create(&d)).await;
    assert!(r.allowed);
    let w = warnings(&r);
    assert!(w[0].contains("break-glass"), "{w:?}");
    assert!(
        w.iter()
            .any(|l| l.contains("would be denied by rule \"deny-critical-prod\"")),
        "{w:?}"
    );
    assert_eq!(r.audit_annotations["decision"], "break-glass");
    let alerts = h.server.alerts().list(&AlertFilter::default()).unwrap();
    assert_eq!(alerts.len(), 2); // always alerted: every image
    assert!(alerts.iter().all(|a| a.action == AlertAction::BreakGlass
        && a.break_glass.as_deref() == Some("INC-42 outage fix")));

    // Off by default: the annotation does nothing.
    let h = harness(RULES);
    assert!(!admit(&h.server, &create(&d)).await.allowed);
}

#[tokio::test]
async fn embedded_defaults_allow_unscanned_images() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = Config {
        data_dir: dir.path().join("data"),
        ..Config::default()
    };
    let server = Server::from_config(cfg).unwrap();
    assert_eq!(
        server.rules().current().rules()[0].name,
        "default-audit-high-critical"
    );
    let r = admit(&server, &create(&deployment("prod-shop", &[DEBIAN]))).await;
    assert!(r.allowed && r.warnings.is_none());
}

#[tokio::test]
async fn findings_dir_source() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("findings");
    std::fs::create_dir(&f).unwrap();
    std::fs::write(f.join("debian.json"), fixture("trivy/debian-buster.json")).unwrap();
    std::fs::write(
        f.join("index.yaml"),
        format!(
            "images:\n  - image: {DEBIAN}\n    digest: {DEBIAN_DIGEST}\n    report: debian.json\n"
        ),
    )
    .unwrap();
    let mut cfg = config(dir.path(), None);
    cfg.findings_dir = Some(f);
    let server = Server::from_config(cfg).unwrap();
    let r = admit(&server, &create(&deployment("dev", &[DEBIAN]))).await;
    assert!(r.allowed);
    assert!(warnings(&r)[0].contains("audited by rule \"default-audit-high-critical\""));
}

#[tokio::test]
async fn health_ready_and_metrics() {
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;
    let h = harness(RULES);
    admit(&h.server, &create(&deployment("prod-shop", &[DEBIAN]))).await;
    for (path, needle) in [
        ("/healthz", "ok"),
        ("/readyz", "ready: rules "),
        (
            "/metrics",
            "vulngate_image_decisions_total{outcome=\"deny\"} 1",
        ),
    ] {
        // /metrics is on the metrics listener's router, not the webhook's.
        let router = if path == "/metrics" {
            h.server.metrics_router()
        } else {
            h.server.router()
        };
        let resp = router
            .oneshot(Request::get(path).body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .unwrap();
        let text = String::from_utf8_lossy(&body);
        assert!(text.contains(needle), "{path}: {text}");
        if path == "/metrics" {
            for m in [
                "vulngate_findings_cache_misses_total 1",
                "vulngate_admission_duration_seconds_bucket",
                "vulngate_alerts_written_total{action=\"deny\"} 1",
            ] {
                assert!(text.contains(m), "{m}: {text}");
            }
        }
    }
}

/// Issue 17.2: a review whose `request.kind` says CronJob while its object is a Deployment
/// contradicts itself: refused as malformed (400, naming both kinds), never evaluated as
/// either (before: a `debug_assert` in debug builds, the wrong kind recorded in release).
#[tokio::test]
async fn kind_mismatch_is_a_malformed_request() {
    let h = harness(RULES);
    let mut rv = create(&deployment("prod-shop", &[DEBIAN]));
    rv["request"]["kind"] = json!({ "group": "batch", "version": "v1", "kind": "CronJob" });
    let (status, body) = post_raw(
        &h.server,
        "/validate?timeout=10s",
        serde_json::to_vec(&rv).unwrap(),
    )
    .await;
    let body = String::from_utf8_lossy(&body);
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(
        body,
        "AdmissionReview request.kind is \"CronJob\" but request.object is a \"Deployment\""
    );
    assert!(h
        .server
        .alerts()
        .list(&Default::default())
        .unwrap()
        .is_empty());
}

/// Issue 17.3: a deadline message names the step that ran out and the configured deadline
/// (the webhook timeout and the margin it was made of), never an elapsed time.
#[tokio::test]
async fn deadline_message_names_the_step_and_the_configured_deadline() {
    let src = Arc::new(TestSource::with(false, true, None));
    let h = harness_with(RULES_BLOCK_UNSCANNED, src, |c| {
        c.failure_policy = FailurePolicy::Deny;
        c.deadline_margin = std::time::Duration::from_millis(700);
    });
    let r = admit_uri(
        &h.server,
        "/validate?timeout=1s",
        &create(&deployment("prod-shop", &[ALPINE])),
    )
    .await;
    assert!(!r.allowed);
    assert!(
        r.result.message.ends_with(
            "findings lookup did not finish before the admission deadline of 300ms \
             (webhook timeout 1s minus the deadline margin 700ms)"
        ),
        "{}",
        r.result.message
    );
    assert!(!r.result.message.contains("0ns"), "{}", r.result.message);
}
