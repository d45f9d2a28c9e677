//! End to end through the Kubernetes API server's own validating webhook plugin
//! (`tests/apiserver-harness`, built by `scripts/install-test-tools.sh` against Debian's
//! `golang-k8s-apiserver-dev`): vulngate served in process over real TLS (self-signed CA given to
//! the plugin as `caBundle`), findings attached with `oras` to images pushed with `crane` into a
//! real docker-registry, and the plugin's verdict checked as kube-apiserver would return it.
//! A missing or outdated harness fails the test (run `scripts/install-test-tools.sh`).

#![allow(clippy::unwrap_used)] // helpers outside #[test] functions

mod support;

#[path = "../../registry/tests/support/mod.rs"]
mod registry_support;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use chrono::Utc;
use serde_json::Value;
use sha2::{Digest, Sha256};
use support::{fixture, workload};
use vulngate_core::{evaluate, AnalyzedReport, ImageRef, Precedence, RequestContext, Subject};
use vulngate_server::Server;

const WEBHOOK: &str = "vulngate.vulngate.io";
const REPORT_TYPE: &str = "application/vnd.vulngate.report+json";

/// Deny critical (and unscanned images) in `prod*`; audit high and critical everywhere.
const RULES: &str = r#"
apiVersion: vulngate.io/v1
kind: SecurityRule
metadata: { name: deny-critical-prod }
spec:
  action: deny
  scope: [{ field: namespace, op: startsWith, value: prod }]
  blockUnscanned: true
  conditions: [{ severity: critical, maxCount: 0 }]
---
apiVersion: vulngate.io/v1
kind: SecurityRule
metadata: { name: audit-high }
spec:
  action: audit
  conditions: [{ severity: high, maxCount: 0 }]
"#;

/// The registry's warning when no trust policy is configured.
const UNSIGNED: &str =
    "no trust policy configured: findings artifacts are accepted unsigned (verified: false)";

fn tools_dir() -> PathBuf {
    std::env::var_os("VULNGATE_TOOLS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/root".into()))
                .join(".cache/vulngate-tools")
        })
}

/// The same hash as `harness_source_hash` in scripts/install-test-tools.sh: sha256 of the
/// `sha256sum` lines (`<hex>  ./<file>`) of every .go file, sorted by path.
fn harness_source_hash() -> String {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/apiserver-harness");
    let mut files = Vec::new();
    let mut stack = vec![src.clone()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "go") {
                files.push(format!(
                    "./{}",
                    p.strip_prefix(&src).unwrap().to_string_lossy()
                ));
            }
        }
    }
    files.sort();
    let mut lines = String::new();
    for f in files {
        let hex = format!("{:x}", Sha256::digest(std::fs::read(src.join(&f)).unwrap()));
        lines.push_str(&format!("{hex}  {f}\n"));
    }
    format!("{:x}", Sha256::digest(lines.as_bytes()))
}

/// The harness binary; panics with the install hint when it is missing or older than its source.
fn harness_bin() -> PathBuf {
    let bin = tools_dir().join("go/bin/apiserver-harness");
    let stamp = tools_dir().join("go/bin/apiserver-harness.stamp");
    assert!(
        bin.exists(),
        "the API server harness {} is missing: run scripts/install-test-tools.sh",
        bin.display()
    );
    let stamp = std::fs::read_to_string(&stamp).unwrap_or_default();
    let want = format!("source {}", harness_source_hash());
    assert!(
        stamp.lines().any(|l| l == want),
        "the API server harness {} was built from another version of tests/apiserver-harness: \
         run scripts/install-test-tools.sh",
        bin.display()
    );
    bin
}

/// What the harness prints: the API server's verdict.
#[derive(Debug)]
struct Verdict {
    allowed: bool,
    error: String,
    code: i64,
    warnings: Vec<String>,
    annotations: serde_json::Map<String, Value>,
    calls: i64,
    /// With `--mutate-url`: the mutating webhook's calls and the object it left.
    mutate_calls: i64,
    object: Option<Value>,
}

/// Runs the harness on `object` with extra flags.
async fn admit_via_apiserver(
    url: &str,
    ca: Option<&Path>,
    object: &Value,
    flags: &[&str],
) -> Verdict {
    let mut args: Vec<String> = vec!["--url".into(), url.into()];
    if let Some(ca) = ca {
        args.push("--ca-file".into());
        args.push(ca.display().to_string());
    }
    args.extend(flags.iter().map(|s| s.to_string()));
    let body = serde_json::to_vec(object).unwrap();
    let bin = harness_bin();
    let out = tokio::task::spawn_blocking(move || {
        let mut child = Command::new(&bin)
            .args(&args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("{}: {e}: run scripts/install-test-tools.sh", bin.display())
            });
        child.stdin.take().unwrap().write_all(&body).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "apiserver-harness {args:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        out
    })
    .await
    .unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "harness output {:?}: {e}",
            String::from_utf8_lossy(&out.stdout)
        )
    });
    Verdict {
        allowed: v["allowed"].as_bool().unwrap(),
        error: v["error"].as_str().unwrap_or_default().to_string(),
        code: v["code"].as_i64().unwrap_or_default(),
        warnings: v["warnings"]
            .as_array()
            .unwrap()
            .iter()
            .map(|w| w.as_str().unwrap().to_string())
            .collect(),
        annotations: v["auditAnnotations"].as_object().unwrap().clone(),
        calls: v["webhookCalls"].as_i64().unwrap(),
        mutate_calls: v["mutateCalls"].as_i64().unwrap_or_default(),
        object: v.get("object").cloned(),
    }
}

/// The engine's reason for `image` (with the Trivy `fixture`) in `ns`: the exact message check.
fn engine_reason(fixture_path: &str, image: &str, digest: &str, ns: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("r.yaml");
    std::fs::write(&p, RULES).unwrap();
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

/// A registry with three images (Trivy reports attached to two of them) and vulngate serving
/// over TLS with findings from that registry.
struct Env {
    reg: registry_support::Registry,
    _dir: tempfile::TempDir,
    url: String,
    ca: PathBuf,
    debian: (String, String), // (image, digest): 1 critical, 1 low
    alpine: (String, String), // 4 medium
    unscanned: (String, String),
    metrics: vulngate_server::metrics::Metrics,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<vulngate_server::Result<()>>>,
}

impl Env {
    async fn start() -> Env {
        let harness = harness_bin(); // fail first, before anything is started
        assert!(harness.exists());
        let reg = tokio::task::spawn_blocking(|| {
            registry_support::Registry::start(registry_support::Kind::Distribution)
        })
        .await
        .unwrap();
        let push = |tag: &'static str, report: Option<&'static str>| {
            let d = reg.push_image(tag, tag);
            if let Some(r) = report {
                reg.oras_attach(&d, REPORT_TYPE, &fixture(r), None);
            }
            (format!("{}/app:{tag}", reg.host), d)
        };
        let debian = push("debian", Some("trivy/debian-buster.json"));
        let alpine = push("alpine", Some("trivy/alpine-310.json"));
        let unscanned = push("unscanned", None);

        let dir = tempfile::tempdir().unwrap();
        let mut cfg = support::config(dir.path(), Some(RULES));
        cfg.listen = "127.0.0.1:0".parse().unwrap();
        cfg.registry = Some(vulngate_registry::RegistryConfig {
            insecure_registries: vec![reg.host.clone()],
            ..Default::default()
        });
        let server = Server::from_config(cfg.clone()).unwrap();
        let metrics = server.metrics().clone();
        let tls = vulngate_server::tls::setup(&cfg).unwrap();
        let ca = tls.ca_file.clone().expect("self-signed CA bundle");
        let listener = tokio::net::TcpListener::bind(cfg.listen).await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(server.serve_on(listener, tls.server_config, async {
            let _ = stop_rx.await;
        }));
        Env {
            reg,
            _dir: dir,
            url: format!("https://127.0.0.1:{port}/validate"),
            ca,
            debian,
            alpine,
            unscanned,
            metrics,
            stop: Some(stop_tx),
            task: Some(task),
        }
    }

    async fn admit(&self, object: &Value, flags: &[&str]) -> Verdict {
        admit_via_apiserver(&self.url, Some(&self.ca), object, flags).await
    }

    /// Stops vulngate (the port then refuses connections).
    async fn stop(&mut self) {
        if let Some(s) = self.stop.take() {
            s.send(()).unwrap();
        }
        if let Some(t) = self.task.take() {
            t.await.unwrap().unwrap();
        }
    }
}

fn denied_prefix(image: &(String, String), rule: &str) -> String {
    format!(
        "admission webhook \"{WEBHOOK}\" denied the request: {}@{}: denied by rule \"{rule}\": ",
        image.0, image.1
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vulnerable_deployment_denied_and_audited_one_admitted_with_warning() {
    let mut env = Env::start().await;
    let (img, digest) = env.debian.clone();

    // Denied in prod: the exact text kube-apiserver returns (kubectl prints it after
    // "Error from server (Forbidden): ..."), HTTP 403, audit annotations prefixed by the webhook.
    let v = env
        .admit(&workload("Deployment", "web", "prod-shop", &[&img]), &[])
        .await;
    assert!(!v.allowed);
    let reason = engine_reason("trivy/debian-buster.json", &img, &digest, "prod-shop");
    assert_eq!(
        v.error,
        format!(
            "{}{reason}",
            denied_prefix(&env.debian, "deny-critical-prod")
        )
    );
    assert!(reason.contains("CVE-2019-18224"), "{reason}");
    assert_eq!(v.code, 403);
    assert_eq!(v.calls, 1);
    assert_eq!(v.annotations[&format!("{WEBHOOK}/decision")], "deny");
    assert_eq!(
        v.annotations[&format!("{WEBHOOK}/rule")],
        "deny-critical-prod"
    );
    assert_eq!(v.annotations[&format!("{WEBHOOK}/digest")], digest.as_str());
    assert!(v.annotations.contains_key(&format!("{WEBHOOK}/alert-id")));

    // Audited elsewhere: admitted, with the warning kubectl would print.
    let v = env
        .admit(&workload("Deployment", "web", "dev-shop", &[&img]), &[])
        .await;
    assert!(v.allowed, "{}", v.error);
    let reason = engine_reason("trivy/debian-buster.json", &img, &digest, "dev-shop");
    // The registry has no trust policy (`registry: {}`): every answer says so.
    assert_eq!(
        v.warnings,
        [
            format!("{img}@{digest}: audited by rule \"audit-high\": {reason}"),
            format!("vulngate: {img}: {UNSIGNED}")
        ]
    );
    assert_eq!(v.annotations[&format!("{WEBHOOK}/decision")], "audit");
    assert_eq!(v.annotations[&format!("{WEBHOOK}/rule")], "audit-high");

    // Medium findings only: admitted, no annotation, only the registry's warning.
    let v = env
        .admit(
            &workload("Deployment", "web", "prod-shop", &[&env.alpine.0]),
            &[],
        )
        .await;
    assert!(v.allowed, "{}", v.error);
    assert_eq!(
        v.warnings,
        [format!("vulngate: {}: {UNSIGNED}", env.alpine.0)],
        "{:?}",
        v.warnings
    );
    assert!(v.annotations.is_empty(), "{:?}", v.annotations);
    assert_eq!(v.calls, 1);

    // UPDATE is sent too; DELETE is not (the rules list CREATE and UPDATE only).
    let obj = workload("Deployment", "web", "prod-shop", &[&img]);
    let old = workload("Deployment", "web", "prod-shop", &[&env.alpine.0]);
    let old_file = env.reg.work().join("old.json");
    std::fs::write(&old_file, serde_json::to_vec(&old).unwrap()).unwrap();
    let v = env
        .admit(
            &obj,
            &[
                "--operation",
                "UPDATE",
                "--old-object",
                old_file.to_str().unwrap(),
            ],
        )
        .await;
    assert!(!v.allowed);
    assert!(v
        .error
        .starts_with(&denied_prefix(&env.debian, "deny-critical-prod")));
    let v = env.admit(&obj, &["--operation", "DELETE"]).await;
    assert!(v.allowed);
    assert_eq!(v.calls, 0);
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unscanned_image_with_and_without_block_unscanned() {
    let mut env = Env::start().await;
    let un = env.unscanned.clone();
    // prod*: deny-critical-prod has blockUnscanned.
    let v = env
        .admit(&workload("Deployment", "web", "prod-shop", &[&un.0]), &[])
        .await;
    assert!(!v.allowed);
    assert!(
        v.error
            .starts_with(&denied_prefix(&un, "deny-critical-prod")),
        "{}",
        v.error
    );
    assert_eq!(v.code, 403);
    // No blockUnscanned rule applies elsewhere: admitted, with only the registry's warning
    // that no trust policy is configured.
    let v = env
        .admit(&workload("Deployment", "web", "dev-shop", &[&un.0]), &[])
        .await;
    assert!(v.allowed, "{}", v.error);
    assert_eq!(
        v.warnings,
        [format!("vulngate: {}: {UNSIGNED}", un.0)],
        "{:?}",
        v.warnings
    );
    assert!(v.annotations.is_empty(), "{:?}", v.annotations);
    assert_eq!(v.calls, 1);
    env.stop().await;
}

/// Issue 17 item 9: with `registry: {}` (no trust policy), a newer clean unsigned report attached
/// to the vulnerable image does not turn deny into allow (the worst case over all of the image's
/// reports counts), and the merged unsigned report is a warning the API server passes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newer_clean_unsigned_report_does_not_clear_a_vulnerable_image() {
    let mut env = Env::start().await;
    let (img, digest) = env.debian.clone();
    let now = Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string();
    let clean = format!(
        r#"{{"SchemaVersion":2,"CreatedAt":"{now}","ArtifactName":"app","ArtifactType":"container_image","Results":[]}}"#
    );
    let reg = &env.reg;
    reg.oras_attach(&digest, REPORT_TYPE, clean.as_bytes(), Some(&now));
    let v = env
        .admit(&workload("Deployment", "web", "prod-shop", &[&img]), &[])
        .await;
    assert!(!v.allowed, "allowed: {:?}", v.warnings);
    assert!(
        v.error
            .starts_with(&denied_prefix(&env.debian, "deny-critical-prod")),
        "{}",
        v.error
    );
    assert!(
        v.warnings.iter().any(|w| w.contains("(unsigned) merged")),
        "{:?}",
        v.warnings
    );
    // Counted: the no-trust-policy warning and the merged report.
    assert!(env.metrics.lookup_warnings_total() >= 2);
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn excluded_namespaces_are_never_sent() {
    let mut env = Env::start().await;
    let img = env.debian.0.clone();
    let exclude = ["--exclude-namespaces", "kube-system,vulngate"];
    for ns in ["kube-system", "vulngate"] {
        let v = env
            .admit(&workload("Deployment", "web", ns, &[&img]), &exclude)
            .await;
        assert!(v.allowed, "{ns}: {}", v.error);
        assert_eq!(v.calls, 0, "{ns}: the API server must not call the webhook");
        assert!(v.annotations.is_empty());
    }
    // The same selector still sends other namespaces (matched by their labels, which the
    // API server sets: kubernetes.io/metadata.name)...
    let v = env
        .admit(
            &workload("Deployment", "web", "prod-shop", &[&img]),
            &exclude,
        )
        .await;
    assert!(!v.allowed);
    assert_eq!(v.calls, 1);
    // ...and a label selector on the namespace works as in a cluster.
    let sel = [
        "--namespace-selector",
        r#"{"matchLabels":{"vulngate.io/gate":"on"}}"#,
    ];
    let v = env
        .admit(&workload("Deployment", "web", "prod-shop", &[&img]), &sel)
        .await;
    assert!(v.allowed);
    assert_eq!(v.calls, 0);
    let mut labeled = sel.to_vec();
    labeled.extend(["--namespace-labels", "vulngate.io/gate=on"]);
    let v = env
        .admit(
            &workload("Deployment", "web", "prod-shop", &[&img]),
            &labeled,
        )
        .await;
    assert!(!v.allowed);

    // Not sent means not even attempted: with vulngate down and failurePolicy Fail, the
    // excluded namespace is still admitted.
    env.stop().await;
    let v = env
        .admit(
            &workload("Deployment", "web", "kube-system", &[&img]),
            &exclude,
        )
        .await;
    assert!(v.allowed, "{}", v.error);
    assert_eq!(v.calls, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pod_and_every_workload_kind_are_gated() {
    let mut env = Env::start().await;
    let (img, digest) = env.debian.clone();
    let reason = engine_reason("trivy/debian-buster.json", &img, &digest, "prod-shop");
    for kind in [
        "Pod",
        "Deployment",
        "ReplicaSet",
        "StatefulSet",
        "DaemonSet",
        "Job",
        "CronJob",
        "ReplicationController",
    ] {
        // The vulnerable image next to a clean one, in every kind.
        let v = env
            .admit(
                &workload(kind, "web", "prod-shop", &[&env.alpine.0, &img]),
                &[],
            )
            .await;
        assert!(!v.allowed, "{kind}");
        assert_eq!(
            v.error,
            format!(
                "{}{reason}",
                denied_prefix(&env.debian, "deny-critical-prod")
            ),
            "{kind}"
        );
        assert_eq!(v.calls, 1, "{kind}");
        let v = env
            .admit(&workload(kind, "web", "prod-shop", &[&env.alpine.0]), &[])
            .await;
        assert!(v.allowed, "{kind}: {}", v.error);
    }
    // Init containers of a Pod are gated too.
    let mut pod = workload("Pod", "web", "prod-shop", &[&env.alpine.0]);
    pod["spec"]["initContainers"] = serde_json::json!([{ "name": "init", "image": img }]);
    let v = env.admit(&pod, &[]).await;
    assert!(!v.allowed);
    assert!(v
        .error
        .starts_with(&denied_prefix(&env.debian, "deny-critical-prod")));
    // `kubectl debug`: an UPDATE of pods/ephemeralcontainers adding the vulnerable image.
    let old = workload("Pod", "web", "prod-shop", &[&env.alpine.0]);
    let old_file = env.reg.work().join("old-pod.json");
    std::fs::write(&old_file, serde_json::to_vec(&old).unwrap()).unwrap();
    let mut debug = old.clone();
    debug["spec"]["ephemeralContainers"] = serde_json::json!([{ "name": "dbg", "image": img }]);
    let v = env
        .admit(
            &debug,
            &[
                "--operation",
                "UPDATE",
                "--subresource",
                "ephemeralcontainers",
                "--old-object",
                old_file.to_str().unwrap(),
            ],
        )
        .await;
    assert!(!v.allowed);
    assert_eq!(v.calls, 1);
    assert!(v
        .error
        .starts_with(&denied_prefix(&env.debian, "deny-critical-prod")));
    // A kind outside the rules (a ConfigMap) is not sent.
    let cm = serde_json::json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": { "name": "c", "namespace": "prod-shop" }, "data": { "image": img }
    });
    let v = env.admit(&cm, &[]).await;
    assert!(v.allowed);
    assert_eq!(v.calls, 0);
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vulngate_down_failure_policy_fail_rejects_ignore_admits() {
    let mut env = Env::start().await;
    let obj = workload("Deployment", "web", "prod-shop", &[&env.alpine.0]);
    let v = env.admit(&obj, &["--failure-policy", "Fail"]).await;
    assert!(v.allowed, "{}", v.error);

    // A wrong caBundle is a call failure too (the certificate is checked).
    let other_ca = env.reg.work().join("other-ca.crt");
    let other = tempfile::tempdir().unwrap();
    let mut cfg = support::config(other.path(), None);
    cfg.tls.self_signed_names = vec!["other.example".into()];
    let other_tls = vulngate_server::tls::setup(&cfg).unwrap();
    std::fs::copy(other_tls.ca_file.unwrap(), &other_ca).unwrap();
    let v = admit_via_apiserver(&env.url, Some(&other_ca), &obj, &[]).await;
    assert!(!v.allowed);
    assert!(
        v.error.starts_with(&format!(
            "Internal error occurred: failed calling webhook \"{WEBHOOK}\": failed to call webhook: Post \"{}?timeout=10s\": tls: failed to verify certificate: x509: certificate signed by unknown authority",
            env.url
        )),
        "{}",
        v.error
    );

    // Server stopped: nothing listens on its port any more.
    env.stop().await;
    let v = env.admit(&obj, &["--failure-policy", "Fail"]).await;
    assert!(!v.allowed);
    assert_eq!(v.code, 500);
    assert!(
        v.error.starts_with(&format!(
            "Internal error occurred: failed calling webhook \"{WEBHOOK}\": failed to call webhook: Post \"{}?timeout=10s\": dial tcp ",
            env.url
        )),
        "{}",
        v.error
    );
    assert!(
        v.error.ends_with("connect: connection refused"),
        "{}",
        v.error
    );
    assert_eq!(v.calls, 1);

    let v = env
        .admit(
            &obj,
            &["--failure-policy", "Ignore", "--timeout-seconds", "3"],
        )
        .await;
    assert!(v.allowed, "{}", v.error);
    assert_eq!(
        v.annotations["failed-open.validating.webhook.admission.k8s.io/round_0_index_0"],
        WEBHOOK
    );

    // Never started: a free port.
    let url = format!(
        "https://127.0.0.1:{}/validate",
        registry_support::free_port()
    );
    let v = admit_via_apiserver(&url, Some(&env.ca), &obj, &["--failure-policy", "Fail"]).await;
    assert!(!v.allowed);
    assert!(v.error.contains("failed calling webhook"), "{}", v.error);
    let v = admit_via_apiserver(&url, Some(&env.ca), &obj, &["--failure-policy", "Ignore"]).await;
    assert!(v.allowed);
}

/// Digest pinning through the API server's own mutating webhook plugin, then its validating
/// one (as kube-apiserver chains them): the plugin applies vulngate's JSONPatch, so the
/// validating call and the stored object carry `tag@digest` of the registry's digest, for
/// containers and init containers; a digest reference and an unresolvable tag are unchanged,
/// and the denial names the pinned digest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mutating_plugin_applies_the_digest_pins() {
    let env = Env::start().await;
    let mutate_url = env.url.replace("/validate", "/mutate");
    let flags = ["--mutate-url", mutate_url.as_str()];
    let (alpine, alpine_digest) = env.alpine.clone();
    let (unscanned, unscanned_digest) = env.unscanned.clone();
    let missing = format!("{}/app:missing", env.reg.host);
    let by_digest = format!("{}@{}", env.debian.0, env.debian.1);
    let mut obj = workload(
        "Deployment",
        "web",
        "dev-shop",
        &[&alpine, &by_digest, &missing],
    );
    obj["spec"]["template"]["spec"]["initContainers"] =
        serde_json::json!([{ "name": "init", "image": unscanned }]);
    let v = env.admit(&obj, &flags).await;
    assert_eq!(v.mutate_calls, 1);
    assert_eq!(v.calls, 1);
    let out = v.object.expect("the mutated object");
    let spec = &out["spec"]["template"]["spec"];
    assert_eq!(
        spec["initContainers"][0]["image"],
        format!("{unscanned}@{unscanned_digest}")
    );
    assert_eq!(
        spec["containers"][0]["image"],
        format!("{alpine}@{alpine_digest}")
    );
    assert_eq!(spec["containers"][1]["image"], by_digest.as_str());
    assert_eq!(spec["containers"][2]["image"], missing.as_str());
    // The unresolvable image is unscanned and the other two allowed in dev-shop.
    assert!(v.allowed, "{}", v.error);

    // In prod: the validating call judges the pinned reference (its message names it once).
    let (debian, digest) = env.debian.clone();
    let v = env
        .admit(
            &workload("Deployment", "web", "prod-shop", &[&debian]),
            &flags,
        )
        .await;
    assert_eq!(v.mutate_calls, 1);
    assert!(!v.allowed);
    assert!(
        v.error.starts_with(&format!(
            "admission webhook \"{WEBHOOK}\" denied the request: {debian}@{digest}: denied by rule \"deny-critical-prod\": "
        )),
        "{}",
        v.error
    );
    assert!(v.object.is_some());
}
