//! Shared test harness: fixtures, workloads, AdmissionReview requests, and findings sources
//! that count, fail or hang.
#![allow(dead_code, clippy::unwrap_used)]

pub mod crd_apiserver;
pub mod fake_api;
pub mod receiver;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use kube::core::admission::{AdmissionResponse, AdmissionReview};
use kube::core::DynamicObject;
use serde_json::{json, Value};
use tower::ServiceExt;
use vulngate_core::ImageRef;
use vulngate_server::source::BoxFuture;
use vulngate_server::{Config, FindingsSource, LocalFindings, Server, SourceError, SourceLookup};

pub const DEBIAN: &str = "registry.example.com/team/debian:buster"; // 1 critical, 1 low
pub const ALPINE: &str = "registry.example.com/team/alpine:3.10"; // 4 medium
pub const CENTOS: &str = "registry.example.com/team/centos:7"; // 2 low, 1 medium
pub const GRYPE: &str = "registry.example.com/team/grype-app:1"; // Grype: 1 critical, 1 low
pub const UNSCANNED: &str = "registry.example.com/team/unscanned:1";
pub const DEBIAN_DIGEST: &str =
    "sha256:1111111111111111111111111111111111111111111111111111111111111111";
pub const ALPINE_DIGEST: &str =
    "sha256:2222222222222222222222222222222222222222222222222222222222222222";

/// deny critical in `prod*` namespaces; audit high and critical everywhere.
pub const RULES: &str = r#"
apiVersion: vulngate.io/v1
kind: SecurityRule
metadata: { name: deny-critical-prod }
spec:
  action: deny
  scope: [{ field: namespace, op: startsWith, value: prod }]
  conditions: [{ severity: critical, maxCount: 0 }]
---
apiVersion: vulngate.io/v1
kind: SecurityRule
metadata: { name: audit-high }
spec:
  action: audit
  conditions: [{ severity: high, maxCount: 0 }]
"#;

/// Also blocks unscanned images in `prod*`.
pub const RULES_BLOCK_UNSCANNED: &str = r#"
apiVersion: vulngate.io/v1
kind: SecurityRule
metadata: { name: deny-unscanned-prod }
spec:
  action: deny
  scope: [{ field: namespace, op: startsWith, value: prod }]
  blockUnscanned: true
  conditions: [{ severity: critical, maxCount: 0 }]
"#;

pub fn fixture(rel: &str) -> Vec<u8> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../core/tests/data/reports")
        .join(rel);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// The three scanned images, from real Trivy fixtures.
pub fn local_findings() -> LocalFindings {
    LocalFindings::empty()
        .with_report(
            DEBIAN,
            Some(DEBIAN_DIGEST),
            &fixture("trivy/debian-buster.json"),
            vec![],
        )
        .unwrap()
        .with_report(
            ALPINE,
            Some(ALPINE_DIGEST),
            &fixture("trivy/alpine-310.json"),
            vec![],
        )
        .unwrap()
        .with_report(CENTOS, None, &fixture("trivy/centos-7.json"), vec![])
        .unwrap()
        .with_report(GRYPE, None, &fixture("grype/imgs.json"), vec![])
        .unwrap()
}

/// A source that counts its lookups, optionally fails, hangs, or waits for a gate.
#[derive(Debug)]
pub struct TestSource {
    pub inner: LocalFindings,
    pub calls: AtomicUsize,
    pub fail: bool,
    pub hang: bool,
    pub gate: Option<Arc<tokio::sync::Semaphore>>,
    /// Warnings every lookup returns (as the registry's about unsigned or dropped reports).
    pub warnings: Vec<String>,
}

impl TestSource {
    pub fn new() -> Arc<TestSource> {
        Arc::new(TestSource::with(false, false, None))
    }

    pub fn with(fail: bool, hang: bool, gate: Option<Arc<tokio::sync::Semaphore>>) -> TestSource {
        TestSource {
            inner: local_findings(),
            calls: AtomicUsize::new(0),
            fail,
            hang,
            gate,
            warnings: Vec::new(),
        }
    }

    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

impl FindingsSource for TestSource {
    fn lookup<'a>(
        &'a self,
        image: &'a ImageRef,
    ) -> BoxFuture<'a, Result<SourceLookup, SourceError>> {
        Box::pin(async move {
            self.calls.fetch_add(1, Ordering::SeqCst);
            if let Some(g) = &self.gate {
                let _permit = g.acquire().await.unwrap();
            }
            if self.hang {
                tokio::time::sleep(Duration::from_secs(60)).await;
            }
            if self.fail {
                return Err(SourceError(
                    "dial tcp 10.0.0.7:443: connection refused (internal detail)".into(),
                ));
            }
            let mut l = self.inner.lookup(image).await?;
            l.warnings.extend(self.warnings.iter().cloned());
            Ok(l)
        })
    }
}

/// A harness: a server with rules in a temp dir.
pub struct Harness {
    pub server: Server,
    pub dir: tempfile::TempDir,
    pub source: Arc<TestSource>,
}

impl Harness {
    pub fn rules_path(&self) -> PathBuf {
        self.dir.path().join("rules.yaml")
    }
}

pub fn config(dir: &Path, rules: Option<&str>) -> Config {
    let mut cfg = Config {
        data_dir: dir.join("data"),
        ..Config::default()
    };
    if let Some(r) = rules {
        let p = dir.join("rules.yaml");
        std::fs::write(&p, r).unwrap();
        cfg.rules = Some(p);
    }
    cfg
}

pub fn harness(rules: &str) -> Harness {
    harness_with(rules, TestSource::new(), |_| {})
}

pub fn harness_with(
    rules: &str,
    source: Arc<TestSource>,
    tweak: impl FnOnce(&mut Config),
) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path(), Some(rules));
    tweak(&mut cfg);
    let server = Server::with_source(cfg, source.clone()).unwrap();
    Harness {
        server,
        dir,
        source,
    }
}

pub fn pod_spec(images: &[&str]) -> Value {
    json!({
        "containers": images.iter().enumerate()
            .map(|(i, im)| json!({ "name": format!("c{i}"), "image": im }))
            .collect::<Vec<_>>()
    })
}

/// An object of `kind` running `images`.
pub fn workload(kind: &str, name: &str, ns: &str, images: &[&str]) -> Value {
    let labels = json!({ "app": name });
    let template = json!({ "metadata": { "labels": labels }, "spec": pod_spec(images) });
    let (api, spec) = match kind {
        "Pod" => ("v1", pod_spec(images)),
        "Deployment" | "ReplicaSet" | "StatefulSet" | "DaemonSet" => (
            "apps/v1",
            json!({ "selector": { "matchLabels": labels }, "template": template }),
        ),
        "Job" => ("batch/v1", json!({ "template": template })),
        "CronJob" => (
            "batch/v1",
            json!({ "schedule": "* * * * *", "jobTemplate": { "spec": { "template": template } } }),
        ),
        "ReplicationController" => ("v1", json!({ "template": template })),
        other => panic!("unknown kind {other}"),
    };
    let mut meta = json!({ "name": name, "namespace": ns });
    if kind == "Pod" {
        meta["labels"] = labels;
    }
    json!({ "apiVersion": api, "kind": kind, "metadata": meta, "spec": spec })
}

pub fn deployment(ns: &str, images: &[&str]) -> Value {
    workload("Deployment", "web", ns, images)
}

/// An AdmissionReview v1 request for `object` (as the API server sends it).
pub fn review(operation: &str, object: &Value, old: Option<&Value>) -> Value {
    let kind = object["kind"].as_str().unwrap().to_string();
    let api = object["apiVersion"].as_str().unwrap();
    let (group, version) = api.split_once('/').unwrap_or(("", api));
    let resource = format!("{}s", kind.to_lowercase());
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
            "kind": { "group": group, "version": version, "kind": kind },
            "resource": { "group": group, "version": version, "resource": resource },
            "name": object["metadata"]["name"],
            "namespace": object["metadata"]["namespace"],
            "operation": operation,
            "userInfo": { "username": "alice@example.com", "groups": ["system:authenticated"] },
            "object": object,
            "oldObject": old.cloned().unwrap_or(Value::Null),
            "dryRun": false,
            "options": { "apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions" }
        }
    })
}

pub fn create(object: &Value) -> Value {
    review("CREATE", object, None)
}

/// POSTs raw bytes to /validate; returns the status and body.
pub async fn post_raw(server: &Server, uri: &str, body: Vec<u8>) -> (StatusCode, Vec<u8>) {
    let req = Request::post(uri)
        .header("content-type", "application/json")
        .body(Body::from(body))
        .unwrap();
    let resp = server.router().oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap();
    (status, bytes.to_vec())
}

/// POSTs a review; expects HTTP 200 and returns the AdmissionResponse.
pub async fn admit(server: &Server, review: &Value) -> AdmissionResponse {
    admit_uri(server, "/validate?timeout=10s", review).await
}

pub async fn admit_uri(server: &Server, uri: &str, review: &Value) -> AdmissionResponse {
    let (status, body) = post_raw(server, uri, serde_json::to_vec(review).unwrap()).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "body: {}",
        String::from_utf8_lossy(&body)
    );
    let rv: AdmissionReview<DynamicObject> = serde_json::from_slice(&body).unwrap();
    assert_eq!(rv.types.api_version, "admission.k8s.io/v1");
    assert_eq!(rv.types.kind, "AdmissionReview");
    let resp = rv.response.expect("response");
    assert_eq!(resp.uid, "705ab4f5-6393-11e8-b7cc-42010a800002");
    resp
}

pub fn warnings(r: &AdmissionResponse) -> Vec<String> {
    r.warnings.clone().unwrap_or_default()
}

/// Captures every log line of this test binary (a global subscriber, so also the lines of
/// other threads, such as the alert writer's); the buffer of the first call.
pub fn capture_logs() -> Arc<std::sync::Mutex<Vec<u8>>> {
    #[derive(Clone)]
    struct Buf(Arc<std::sync::Mutex<Vec<u8>>>);
    impl std::io::Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let buf = Arc::new(std::sync::Mutex::new(Vec::new()));
    let w = Buf(buf.clone());
    let _ = tracing_subscriber::fmt()
        .with_ansi(false)
        .with_writer(move || w.clone())
        .try_init();
    buf
}

/// A client TLS stream to the webhook.
pub type TlsStream = tokio_rustls::client::TlsStream<tokio::net::TcpStream>;

/// A TLS connection (HTTP/1.1 by ALPN) to `port` on 127.0.0.1, trusting the CA in `ca`.
pub async fn tls_to(ca: &std::path::Path, port: u16) -> TlsStream {
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pki_types::CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cc = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    cc.alpn_protocols = vec![b"http/1.1".to_vec()];
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    tokio_rustls::TlsConnector::from(Arc::new(cc))
        .connect(name, tcp)
        .await
        .unwrap()
}
