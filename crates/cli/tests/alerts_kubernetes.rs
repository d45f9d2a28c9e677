//! `vulngate alerts list|show --store kubernetes` against a real API server (etcd + the
//! apiextensions API server of `tests/crd-apiserver`), with the CRDs that `vulngate install`
//! renders applied by kubectl, and alerts written by the Kubernetes store.
#![allow(clippy::unwrap_used)]

#[allow(dead_code)]
#[path = "../../server/tests/support/crd_apiserver.rs"]
mod crd_apiserver;

use std::process::{Command, Output};

use chrono::{Duration, Utc};
use crd_apiserver::CrdApiServer;
use serde_json::Value;
use vulngate_core::engine::SeverityCounts;
use vulngate_core::Outcome;
use vulngate_server::alerts::kubernetes::KubernetesStoreConfig;
use vulngate_server::{Alert, AlertAction, AlertBackend, AlertOrigin, KubernetesBackend};

fn vulngate(api: &CrdApiServer, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vulngate"))
        .args(args)
        .env("KUBECONFIG", &api.kubeconfig_path)
        .output()
        .expect("vulngate runs")
}

fn ok(out: Output) -> String {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn alert(id: &str, ns: &str, workload: &str, minutes_ago: i64) -> Alert {
    Alert {
        id: id.into(),
        time: Utc::now() - Duration::minutes(minutes_ago),
        action: AlertAction::Deny,
        origin: AlertOrigin::Admission,
        decision: Outcome::Deny,
        cluster: None,
        namespace: Some(ns.into()),
        kind: "Deployment".into(),
        name: Some(workload.into()),
        operation: "CREATE".into(),
        user: Some("alice".into()),
        request_uid: format!("uid-{id}"),
        image: format!("registry.example/{workload}:1.0"),
        digest: None,
        rule: Some("deny-critical".into()),
        rule_snapshot: None,
        rules_version: None,
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

#[test]
fn alerts_list_and_show_read_the_kubernetes_store() {
    let dir = tempfile::tempdir().unwrap();
    let api = CrdApiServer::start(&dir.path().join("api"));

    // Without the CRD: a clear error, exit 1.
    let out = vulngate(&api, &["alerts", "list", "--store", "kubernetes"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("alerts.vulngate.io) is not installed"),
        "{stderr}"
    );

    // The CRDs `vulngate install` renders, applied as they are.
    let rendered = ok(Command::new(env!("CARGO_BIN_EXE_vulngate"))
        .args(["install", "--allow-unsigned-reports"])
        .output()
        .unwrap());
    let crds: Vec<String> = serde_yaml_ng::Deserializer::from_str(&rendered)
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .filter(|v: &Value| v["kind"] == "CustomResourceDefinition")
        .map(|v| serde_yaml_ng::to_string(&v).unwrap())
        .collect();
    assert_eq!(crds.len(), 2);
    let file = dir.path().join("crds.yaml");
    std::fs::write(&file, crds.join("---\n")).unwrap();
    api.kubectl_ok(&["apply", "--validate=false", "-f", file.to_str().unwrap()]);
    api.kubectl_ok(&[
        "wait",
        "--for=condition=Established",
        "--timeout=30s",
        "crd/alerts.vulngate.io",
    ]);

    let store = KubernetesBackend::open(
        Some(&api.kubeconfig_path),
        &KubernetesStoreConfig::default(),
    )
    .unwrap();
    store
        .record_new(&[
            alert("id-1", "shop", "web", 3),
            alert("id-2", "shop", "web", 2), // the same key: counted on id-1's object
            alert("id-3", "billing", "api", 1),
        ])
        .unwrap();

    let json = ok(vulngate(
        &api,
        &["alerts", "list", "--store", "kubernetes", "-o", "json"],
    ));
    let listed: Vec<Value> = serde_json::from_str(&json).unwrap();
    let ids: Vec<&str> = listed.iter().map(|a| a["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["id-3", "id-1"]);
    let json = ok(vulngate(
        &api,
        &[
            "alerts",
            "list",
            "--store",
            "kubernetes",
            "--namespace",
            "shop",
            "-o",
            "json",
        ],
    ));
    let listed: Vec<Value> = serde_json::from_str(&json).unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["name"], "web");
    let table = ok(vulngate(&api, &["alerts", "list", "--store", "kubernetes"]));
    assert!(
        table.contains("id-3") && table.contains("billing"),
        "{table}"
    );

    let shown = ok(vulngate(
        &api,
        &["alerts", "show", "id-1", "--store", "kubernetes"],
    ));
    let shown: Value = serde_json::from_str(&shown).unwrap();
    assert_eq!(shown["reason"], "critical CVE-2024-3094");
    assert_eq!(shown["namespace"], "shop");
    let out = vulngate(&api, &["alerts", "show", "id-9", "--store", "kubernetes"]);
    assert!(!out.status.success());
}
