//! `vulngate install`: what it renders, and the rendered ValidatingWebhookConfiguration and
//! TLS Secret driven by the API server's own webhook plugin (tests/apiserver-harness) against
//! the real `vulngate serve` running on the rendered certificate.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use kube::CustomResourceExt;
use serde::Deserialize;
use serde_json::{json, Value};

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_vulngate")
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn install(args: &[&str]) -> (i32, Vec<Value>, String) {
    let out = Command::new(bin())
        .arg("install")
        .args(args)
        .output()
        .expect("vulngate install runs");
    let text = String::from_utf8(out.stdout).expect("utf-8");
    let docs = serde_yaml_ng::Deserializer::from_str(&text)
        .map(|d| Value::deserialize(d).expect("YAML"))
        .filter(|v| !v.is_null())
        .collect();
    (
        out.status.code().unwrap_or(-1),
        docs,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn find<'a>(docs: &'a [Value], kind: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind}"))
}

#[test]
fn renders_every_object_hardened_and_least_privileged() {
    let (code, docs, stderr) = install(&[
        "--namespace",
        "gate",
        "--timeout",
        "7",
        "--failure-policy",
        "ignore",
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("lost when a pod is deleted"), "{stderr}");
    let kinds: Vec<&str> = docs.iter().map(|d| d["kind"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        [
            "Namespace",
            "CustomResourceDefinition",
            "ServiceAccount",
            "ClusterRole",
            "ClusterRoleBinding",
            "ConfigMap",
            "Secret",
            "Deployment",
            "PodDisruptionBudget",
            "Service",
            "NetworkPolicy",
            "ValidatingWebhookConfiguration"
        ]
    );
    // The CRD is the one generated from the rule types.
    assert_eq!(
        find(&docs, "CustomResourceDefinition"),
        &serde_json::to_value(vulngate_core::rules::SecurityRule::crd()).unwrap()
    );
    // RBAC: no wildcard; Secrets only `get`.
    let rules = find(&docs, "ClusterRole")["rules"].as_array().unwrap();
    for r in rules {
        for field in ["apiGroups", "resources", "verbs"] {
            assert!(!r[field].as_array().unwrap().contains(&json!("*")), "{r}");
        }
        if r["resources"]
            .as_array()
            .unwrap()
            .contains(&json!("secrets"))
        {
            assert_eq!(r["verbs"], json!(["get"]), "{r}");
        }
    }
    // Hardened pods, 2 replicas, a PDB.
    let dep = find(&docs, "Deployment");
    assert_eq!(dep["metadata"]["namespace"], "gate");
    assert_eq!(dep["spec"]["replicas"], 2);
    let pod = &dep["spec"]["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    let c = &pod["containers"][0];
    assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(c["securityContext"]["allowPrivilegeEscalation"], false);
    assert_eq!(c["securityContext"]["capabilities"]["drop"], json!(["ALL"]));
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert!(pod["affinity"]["podAntiAffinity"].is_object());
    assert_eq!(
        find(&docs, "PodDisruptionBudget")["spec"]["minAvailable"],
        1
    );
    // The webhook: service, kinds, selector, flags.
    let wh = &find(&docs, "ValidatingWebhookConfiguration")["webhooks"][0];
    assert_eq!(wh["clientConfig"]["service"]["namespace"], "gate");
    assert_eq!(wh["timeoutSeconds"], 7);
    assert_eq!(wh["failurePolicy"], "Ignore");
    assert_eq!(wh["sideEffects"], "NoneOnDryRun");
    assert_eq!(
        wh["namespaceSelector"]["matchExpressions"][0]["values"],
        json!(["kube-system", "gate"])
    );
    let resources: Vec<&str> = wh["rules"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| {
            r["resources"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_str().unwrap())
        })
        .collect();
    for r in [
        "pods",
        "pods/ephemeralcontainers",
        "replicationcontrollers",
        "deployments",
        "replicasets",
        "statefulsets",
        "daemonsets",
        "jobs",
        "cronjobs",
    ] {
        assert!(resources.contains(&r), "{r} missing from {resources:?}");
    }
    // Defaults: Fail, 10 s.
    let (_, docs, _) = install(&[]);
    let wh = &find(&docs, "ValidatingWebhookConfiguration")["webhooks"][0];
    assert_eq!(wh["failurePolicy"], "Fail");
    assert_eq!(wh["timeoutSeconds"], 10);
}

#[test]
fn the_rendered_configuration_passes_check_config() {
    let (_, docs, _) = install(&[
        "--cluster-name",
        "prod-eu",
        "--registry-failure-policy",
        "deny",
    ]);
    let text = find(&docs, "ConfigMap")["data"]["vulngate.yaml"]
        .as_str()
        .unwrap()
        .to_string();
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("vulngate.yaml");
    std::fs::write(&p, &text).unwrap();
    let out = Command::new(bin())
        .args(["serve", "--check-config", "--config"])
        .arg(&p)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(printed.contains("clusterName: prod-eu"), "{printed}");
    assert!(printed.contains("rulesFrom: cluster"), "{printed}");
    assert!(printed.contains("failurePolicy: deny"), "{printed}");
}

#[test]
fn bad_flags_are_clear_errors() {
    for (args, want) in [
        (vec!["--timeout", "0"], "0 is not in 1..=30"),
        (vec!["--timeout", "31"], "31 is not in 1..=30"),
        (vec!["--namespace", "Bad_NS"], "not a valid namespace name"),
        (vec!["--store", "mysql://x"], "--store"),
    ] {
        let (code, _, stderr) = install(&args);
        assert_eq!(code, 2, "{args:?}: {stderr}");
        assert!(stderr.contains(want), "{args:?}: {stderr}");
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap()
}

fn harness_bin() -> PathBuf {
    let dir = std::env::var_os("VULNGATE_TOOLS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap()).join(".cache/vulngate-tools")
        });
    let b = dir.join("bin/apiserver-harness");
    assert!(
        b.exists(),
        "{} is missing: run scripts/install-test-tools.sh",
        b.display()
    );
    b
}

fn harness(webhook: &Path, endpoint: &str, object: &Path) -> Value {
    let out = Command::new(harness_bin())
        .arg("--webhook-config")
        .arg(webhook)
        .args(["--service-endpoint", endpoint, "--object"])
        .arg(object)
        .output()
        .expect("apiserver-harness runs");
    assert!(
        out.status.success(),
        "apiserver-harness: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The rendered webhook configuration (service reference + caBundle) and TLS Secret, driven
/// by k8s.io/apiserver's validating webhook plugin against `vulngate serve` on that Secret's
/// certificate: TLS is verified for `vulngate.<ns>.svc` against the caBundle.
#[test]
fn the_api_servers_webhook_plugin_calls_vulngate_through_the_rendered_configuration() {
    let (_, docs, _) = install(&["--namespace", "gate"]);
    let dir = tempfile::tempdir().unwrap();
    let secret = &find(&docs, "Secret")["stringData"];
    std::fs::write(
        dir.path().join("tls.crt"),
        secret["tls.crt"].as_str().unwrap(),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("tls.key"),
        secret["tls.key"].as_str().unwrap(),
    )
    .unwrap();
    let webhook = dir.path().join("webhook.yaml");
    std::fs::write(
        &webhook,
        serde_yaml_ng::to_string(find(&docs, "ValidatingWebhookConfiguration")).unwrap(),
    )
    .unwrap();
    let port = free_port();
    let mut child = Command::new(bin())
        .args(["serve", "--config"])
        .arg(repo().join("examples/vulngate.yaml"))
        .args(["--listen", &format!("127.0.0.1:{port}"), "--data-dir"])
        .arg(dir.path().join("data"))
        .arg("--tls-cert")
        .arg(dir.path().join("tls.crt"))
        .arg("--tls-key")
        .arg(dir.path().join("tls.key"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "vulngate serve did not start"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // The vulnerable Deployment of examples/workloads.yaml, in prod-shop: denied.
    let text = std::fs::read_to_string(repo().join("examples/workloads.yaml")).unwrap();
    let first = serde_yaml_ng::Deserializer::from_str(&text)
        .map(|d| Value::deserialize(d).unwrap())
        .find(|v| v["kind"] == "Deployment")
        .unwrap();
    let obj = dir.path().join("deployment.json");
    std::fs::write(&obj, serde_json::to_vec(&first).unwrap()).unwrap();
    let endpoint = format!("127.0.0.1:{port}");
    let r = harness(&webhook, &endpoint, &obj);
    assert_eq!(r["allowed"], false, "{r}");
    assert_eq!(r["webhookCalls"], 1, "{r}");
    let err = r["error"].as_str().unwrap();
    assert!(
        err.starts_with("admission webhook \"vulngate.vulngate.io\" denied the request: ")
            && err.contains("denied by rule \"deny-critical-prod\""),
        "{err}"
    );
    // vulngate's own namespace is excluded by the rendered namespaceSelector: never called.
    let mut own = first.clone();
    own["metadata"]["namespace"] = json!("gate");
    std::fs::write(&obj, serde_json::to_vec(&own).unwrap()).unwrap();
    let r = harness(&webhook, &endpoint, &obj);
    assert_eq!(r["allowed"], true, "{r}");
    assert_eq!(r["webhookCalls"], 0, "{r}");
    // vulngate down: the rendered failurePolicy (Fail) rejects.
    let _ = child.kill();
    let _ = child.wait();
    std::fs::write(&obj, serde_json::to_vec(&first).unwrap()).unwrap();
    let r = harness(&webhook, &endpoint, &obj);
    assert_eq!(r["allowed"], false, "{r}");
    assert!(
        r["error"]
            .as_str()
            .unwrap()
            .contains("failed calling webhook"),
        "{r}"
    );
}
