//! SecurityRule custom resources and PolicyReports against a real API server for custom
//! resources (k8s.io/apiextensions-apiserver + etcd, tests/crd-apiserver): the CRD rendered
//! from the rule types applied with kubectl; rules created, edited, broken and deleted with
//! kubectl while vulngate's rule set and the rules' statuses follow; PolicyReports written,
//! updated and deleted; a restart of the API server survived by the watcher.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use kube::api::{Api, ApiResource, DynamicObject};
use kube::CustomResourceExt;
use serde_json::{json, Value};
use support::crd_apiserver::CrdApiServer;
use support::*;
use vulngate_core::rules::SecurityRule;
use vulngate_server::cluster::{ImageResult, ResultSink};
use vulngate_server::config::{KubernetesConfig, RulesFrom};
use vulngate_server::Server;

const POLICY_REPORT_CRDS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../deploy/crds/wgpolicyk8s.io_policyreports.yaml"
);

fn kubectl(api: &CrdApiServer, args: &[&str]) -> String {
    api.kubectl_ok(args)
}

fn apply(api: &CrdApiServer, dir: &Path, name: &str, yaml: &str) {
    let p = dir.join(format!("{name}.yaml"));
    std::fs::write(&p, yaml).unwrap();
    kubectl(
        api,
        &["apply", "--validate=false", "-f", p.to_str().unwrap()],
    );
}

fn rule_yaml(name: &str, spec: &str) -> String {
    format!(
        "apiVersion: vulngate.io/v1\nkind: SecurityRule\nmetadata:\n  name: {name}\nspec:\n{spec}"
    )
}

async fn eventually<F: FnMut() -> bool>(what: &str, mut f: F) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !f() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn status_of(api: &CrdApiServer, name: &str) -> Value {
    let out = kubectl(api, &["get", "securityrule", name, "-o", "json"]);
    let v: Value = serde_json::from_str(&out).unwrap();
    v["status"].clone()
}

fn accepted(status: &Value) -> (String, String) {
    let c = status["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == "Accepted"))
        .cloned()
        .unwrap_or(Value::Null);
    (
        c["status"].as_str().unwrap_or("").to_string(),
        c["message"].as_str().unwrap_or("").to_string(),
    )
}

fn crd_file(dir: &Path) -> PathBuf {
    let p = dir.join("securityrules-crd.yaml");
    std::fs::write(&p, serde_yaml_ng::to_string(&SecurityRule::crd()).unwrap()).unwrap();
    p
}

fn server(dir: &Path, api: &CrdApiServer, mode: RulesFrom, rules: Option<&str>) -> Server {
    let mut cfg = config(dir, rules);
    cfg.kubernetes = Some(KubernetesConfig {
        kubeconfig: Some(api.kubeconfig_path.clone()),
        rules_from: mode,
        ..KubernetesConfig::default()
    });
    Server::with_source(cfg, std::sync::Arc::new(local_findings())).unwrap()
}

async fn client(api: &CrdApiServer) -> kube::Client {
    vulngate_server::cluster::client(&KubernetesConfig {
        kubeconfig: Some(api.kubeconfig_path.clone()),
        ..KubernetesConfig::default()
    })
    .await
    .unwrap()
}

fn rule_names(s: &Server) -> Vec<String> {
    s.rules()
        .current()
        .rules()
        .iter()
        .map(|r| r.name.clone())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn security_rules_follow_kubectl_and_survive_an_api_server_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut api = CrdApiServer::start(dir.path());
    let crd = crd_file(dir.path());
    kubectl(
        &api,
        &["apply", "--validate=false", "-f", crd.to_str().unwrap()],
    );
    kubectl(
        &api,
        &[
            "wait",
            "--for=condition=Established",
            "--timeout=30s",
            "crd/securityrules.vulngate.io",
        ],
    );

    let s = server(dir.path(), &api, RulesFrom::Cluster, None);
    assert!(
        !s.is_ready(),
        "not ready before the cluster's rules are synced"
    );
    let _tasks = s.start_cluster(client(&api).await);
    eventually("first sync", || s.is_ready()).await;
    assert!(rule_names(&s).is_empty(), "no SecurityRules yet: no rules");

    // Create: in force, Accepted, and the webhook uses it.
    apply(
        &api,
        dir.path(),
        "r1",
        &rule_yaml(
            "deny-critical-prod",
            "  action: deny\n  scope: [{field: namespace, op: startsWith, value: prod}]\n  conditions: [{severity: critical, maxCount: 0}]\n",
        ),
    );
    eventually("rule in force", || rule_names(&s) == ["deny-critical-prod"]).await;
    let v1 = s.rules().current().version().to_string();
    let resp = admit(&s, &create(&deployment("prod-shop", &[DEBIAN]))).await;
    assert!(!resp.allowed, "denied by the cluster's rule");
    assert!(
        resp.result
            .message
            .contains("denied by rule \"deny-critical-prod\""),
        "{}",
        resp.result.message
    );
    eventually("status Accepted", || {
        let st = status_of(&api, "deny-critical-prod");
        accepted(&st).0 == "True" && st["observedGeneration"] == 1
    })
    .await;
    let st = status_of(&api, "deny-critical-prod");
    assert_eq!(st["ruleSetVersion"], v1.as_str());
    let printed = kubectl(&api, &["get", "securityrules"]);
    assert!(
        printed.contains("ACTION") && printed.contains("deny"),
        "{printed}"
    );

    // Edit: a new version, observedGeneration follows.
    apply(
        &api,
        dir.path(),
        "r1",
        &rule_yaml(
            "deny-critical-prod",
            "  action: audit\n  scope: [{field: namespace, op: startsWith, value: prod}]\n  conditions: [{severity: critical, maxCount: 0}]\n",
        ),
    );
    eventually("edit applied", || {
        s.rules()
            .current()
            .rules()
            .first()
            .map(|r| r.spec.action.as_str())
            == Some("audit")
    })
    .await;
    assert_ne!(s.rules().current().version(), v1);
    let resp = admit(&s, &create(&deployment("prod-shop", &[DEBIAN]))).await;
    assert!(resp.allowed, "now only audited");
    eventually("observedGeneration 2", || {
        status_of(&api, "deny-critical-prod")["observedGeneration"] == 2
    })
    .await;
    let v2 = s.rules().current().version().to_string();

    // Break it (the OpenAPI schema allows both shapes; vulngate does not): Invalid with the
    // exact error, the last good version stays in force.
    apply(
        &api,
        dir.path(),
        "r1",
        &rule_yaml(
            "deny-critical-prod",
            "  action: deny\n  conditions: [{severity: critical, cveIds: [CVE-2021-44228]}]\n",
        ),
    );
    eventually("Invalid status", || {
        accepted(&status_of(&api, "deny-critical-prod")).0 == "False"
    })
    .await;
    let (_, msg) = accepted(&status_of(&api, "deny-critical-prod"));
    assert_eq!(
        msg,
        "spec.conditions[0]: a condition is either a count (severity, maxCount) or a cveIds list, not both (the last accepted version of this rule stays in force)"
    );
    assert_eq!(s.rules().current().version(), v2, "last good set kept");
    assert_eq!(s.rules().current().rules()[0].spec.action.as_str(), "audit");

    // A new rule that never was valid is not in force; an expired allowance is reported.
    apply(
        &api,
        dir.path(),
        "r2",
        &rule_yaml(
            "bad-glob",
            "  action: deny\n  conditions: [{severity: low, packages: ['[']}]\n",
        ),
    );
    apply(
        &api,
        dir.path(),
        "r3",
        &rule_yaml(
            "audit-high",
            "  action: audit\n  conditions: [{severity: high}]\n  allowedVulnerabilities:\n  - {id: CVE-2019-0001, validUntil: 2020-01-31}\n  - {id: CVE-2019-0002}\n",
        ),
    );
    eventually("audit-high in force", || {
        rule_names(&s) == ["audit-high", "deny-critical-prod"]
    })
    .await;
    eventually("bad-glob Invalid", || {
        accepted(&status_of(&api, "bad-glob")).0 == "False"
    })
    .await;
    let (_, msg) = accepted(&status_of(&api, "bad-glob"));
    assert!(
        msg.starts_with("spec.conditions[0].packages[0]: invalid glob \"[\"")
            && msg.ends_with("(the rule is not in force)"),
        "{msg}"
    );
    eventually("expired allowance reported", || {
        status_of(&api, "audit-high")["expiredAllowances"] == json!(["CVE-2019-0001"])
    })
    .await;

    // Delete: removed from the set.
    kubectl(&api, &["delete", "securityrule", "audit-high"]);
    eventually("audit-high removed", || {
        rule_names(&s) == ["deny-critical-prod"]
    })
    .await;

    // Restart the API server: the watcher reconnects and sees new rules.
    api.restart_apiserver();
    apply(
        &api,
        dir.path(),
        "r4",
        &rule_yaml(
            "after-restart",
            "  action: audit\n  conditions: [{cveIds: [CVE-2024-3094]}]\n",
        ),
    );
    eventually("rule created after the restart is in force", || {
        rule_names(&s).contains(&"after-restart".to_string())
    })
    .await;
    eventually("status after restart", || {
        accepted(&status_of(&api, "after-restart")).0 == "True"
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_from_files_and_cluster_combine_and_a_name_clash_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let api = CrdApiServer::start(dir.path());
    let crd = crd_file(dir.path());
    kubectl(
        &api,
        &["apply", "--validate=false", "-f", crd.to_str().unwrap()],
    );
    kubectl(
        &api,
        &[
            "wait",
            "--for=condition=Established",
            "--timeout=30s",
            "crd/securityrules.vulngate.io",
        ],
    );
    let s = server(dir.path(), &api, RulesFrom::Both, Some(RULES));
    assert!(!s.is_ready());
    let _tasks = s.start_cluster(client(&api).await);
    eventually("synced", || s.is_ready()).await;
    assert_eq!(rule_names(&s), ["deny-critical-prod", "audit-high"]);

    apply(
        &api,
        dir.path(),
        "c1",
        &rule_yaml(
            "cluster-cve",
            "  action: deny\n  conditions: [{cveIds: [CVE-2021-44228]}]\n",
        ),
    );
    apply(
        &api,
        dir.path(),
        "c2",
        &rule_yaml(
            "audit-high",
            "  action: deny\n  conditions: [{severity: low}]\n",
        ),
    );
    eventually("file rules first, then the cluster's", || {
        rule_names(&s) == ["deny-critical-prod", "audit-high", "cluster-cve"]
    })
    .await;
    eventually("clash reported", || {
        accepted(&status_of(&api, "audit-high")).0 == "False"
    })
    .await;
    let (_, msg) = accepted(&status_of(&api, "audit-high"));
    assert!(
        msg.contains("a rule file already defines a rule named \"audit-high\""),
        "{msg}"
    );
    // The file's audit-high (audit) is the one in force.
    let rules = s.rules().current();
    let ah = rules
        .rules()
        .iter()
        .find(|r| r.name == "audit-high")
        .unwrap();
    assert_eq!(ah.spec.action.as_str(), "audit");
}

fn image_result(ns: &str, name: &str, decision: &str, rule: Option<&str>) -> ImageResult {
    let d: vulngate_core::engine::Decision = serde_json::from_value(json!({
        "image": format!("registry.example/{name}:1"),
        "digest": "sha256:1111111111111111111111111111111111111111111111111111111111111111",
        "decision": decision,
        "rule": rule,
        "vulnerability": rule.map(|_| "CVE-2021-44228"),
        "reason": if rule.is_some() { "1 critical or higher vulnerabilities (CVE-2021-44228), more than the allowed count of 0" } else { "no rule fired" },
        "counts": {"critical": 1, "high": 0, "medium": 0, "low": 0, "negligible": 0, "unknown": 0},
        "rules_version": "0123456789abcdef",
    }))
    .unwrap();
    ImageResult {
        namespace: ns.into(),
        workload_api_version: "apps/v1".into(),
        workload_kind: "Deployment".into(),
        workload_name: name.into(),
        workload_uid: None,
        pod: None,
        container: "app".into(),
        decision: std::sync::Arc::new(d),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_reports_are_written_updated_and_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let api = CrdApiServer::start(dir.path());
    kubectl(
        &api,
        &["apply", "--validate=false", "-f", POLICY_REPORT_CRDS],
    );
    kubectl(
        &api,
        &[
            "wait",
            "--for=condition=Established",
            "--timeout=30s",
            "crd/policyreports.wgpolicyk8s.io",
        ],
    );
    let reports = vulngate_server::cluster::reports::PolicyReports::new(client(&api).await);

    reports
        .sync_namespace(
            "shop",
            &[
                image_result("shop", "web", "deny", Some("deny-critical")),
                image_result("shop", "api", "allow", None),
            ],
        )
        .await
        .unwrap();
    let got: Value = serde_json::from_str(&kubectl(
        &api,
        &[
            "get",
            "policyreport",
            "-n",
            "shop",
            "vulngate",
            "-o",
            "json",
        ],
    ))
    .unwrap();
    assert_eq!(got["summary"]["fail"], 1);
    assert_eq!(got["summary"]["pass"], 1);
    let results = got["results"].as_array().unwrap();
    assert_eq!(results.len(), 2);
    let fail = results.iter().find(|r| r["result"] == "fail").unwrap();
    assert_eq!(fail["policy"], "deny-critical");
    assert_eq!(fail["resources"][0]["name"], "web");
    assert_eq!(fail["properties"]["image"], "registry.example/web:1");
    let rv1 = got["metadata"]["resourceVersion"].clone();

    // A later process finds the reports of this one (vulngate's name and label only).
    let foreign = dir.path().join("foreign.json");
    std::fs::write(
        &foreign,
        serde_json::to_vec(&json!({
            "apiVersion": "wgpolicyk8s.io/v1alpha2", "kind": "PolicyReport",
            "metadata": {"name": "kyverno-report", "namespace": "other"},
            "results": [], "summary": {"pass": 0, "fail": 0, "warn": 0, "error": 0, "skip": 0}
        }))
        .unwrap(),
    )
    .unwrap();
    kubectl(
        &api,
        &[
            "create",
            "--validate=false",
            "-f",
            foreign.to_str().unwrap(),
        ],
    );
    let later = vulngate_server::cluster::reports::PolicyReports::new(client(&api).await);
    assert_eq!(
        later.existing_namespaces().await.unwrap(),
        vec!["shop".to_string()]
    );

    // The same results again: nothing written.
    reports
        .sync_namespace(
            "shop",
            &[
                image_result("shop", "web", "deny", Some("deny-critical")),
                image_result("shop", "api", "allow", None),
            ],
        )
        .await
        .unwrap();
    let again: Value = serde_json::from_str(&kubectl(
        &api,
        &[
            "get",
            "policyreport",
            "-n",
            "shop",
            "vulngate",
            "-o",
            "json",
        ],
    ))
    .unwrap();
    assert_eq!(again["metadata"]["resourceVersion"], rv1);

    // Updated: web fixed.
    reports
        .sync_namespace("shop", &[image_result("shop", "web", "allow", None)])
        .await
        .unwrap();
    let updated: Value = serde_json::from_str(&kubectl(
        &api,
        &[
            "get",
            "policyreport",
            "-n",
            "shop",
            "vulngate",
            "-o",
            "json",
        ],
    ))
    .unwrap();
    assert_eq!(updated["summary"]["fail"], 0);
    assert_eq!(updated["results"].as_array().unwrap().len(), 1);

    // No workloads left: deleted.
    reports.sync_namespace("shop", &[]).await.unwrap();
    let list = kubectl(&api, &["get", "policyreports", "-n", "shop", "-o", "json"]);
    let list: Value = serde_json::from_str(&list).unwrap();
    assert_eq!(list["items"], json!([]));

    // Readable with kube-rs as the dynamic resource too.
    let pr: Api<DynamicObject> = Api::namespaced_with(
        client(&api).await,
        "shop",
        &ApiResource::from_gvk_with_plural(
            &kube::api::GroupVersionKind::gvk("wgpolicyk8s.io", "v1alpha2", "PolicyReport"),
            "policyreports",
        ),
    );
    assert!(pr.get_opt("vulngate").await.unwrap().is_none());
}
