//! Digest pinning's warm path against the validating one, side by side (criterion), in
//! process (`tower::ServiceExt::oneshot` on `Server::router()`, no TLS, no sockets):
//! - `warm/validate_tag`: `POST /validate` of a Deployment running a tag reference whose
//!   findings are cached (an allow: the report has one LOW finding);
//! - `warm/mutate_tag`: `POST /mutate` of the same review: the digest from the same cache
//!   entry, answered with a JSONPatch pinning the tag;
//! - `warm/validate_pinned`: `POST /validate` of the object the patch gives (`tag@digest`),
//!   what the API server sends after `/mutate`: cached under the pinned reference by the
//!   first `/mutate`.
//!
//! Run: `cargo bench -p vulngate-server --bench mutate`. Results go to docs/benchmarks.md.

// The same global allocator as the `vulngate` binary.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::hint::black_box;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{header, Request, StatusCode};
use axum::Router;
use criterion::Criterion;
use tower::ServiceExt;
use vulngate_server::{Config, LocalFindings, Server};

const IMAGE: &str = "127.0.0.1:5000/bench/app:1.0";
const DIGEST: &str = "sha256:0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0";

const REVIEW: &str = r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"705ab4f5-6393-11e8-b7cc-42010a800002","kind":{"group":"apps","version":"v1","kind":"Deployment"},"resource":{"group":"apps","version":"v1","resource":"deployments"},"name":"web","namespace":"shop","operation":"CREATE","userInfo":{"username":"alice@example.com","groups":["system:authenticated"]},"object":{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"web","namespace":"shop","labels":{"app":"web"}},"spec":{"replicas":2,"selector":{"matchLabels":{"app":"web"}},"template":{"metadata":{"labels":{"app":"web"}},"spec":{"containers":[{"name":"web","image":"__IMAGE__","ports":[{"containerPort":8080}]}]}}}},"oldObject":null,"dryRun":false,"options":{"apiVersion":"meta.k8s.io/v1","kind":"CreateOptions"}}}"#;

const RULES: &str = "apiVersion: vulngate.io/v1
kind: SecurityRule
metadata: { name: bench-deny-critical-or-unscanned }
spec:
  action: deny
  blockUnscanned: true
  conditions: [{ severity: critical, maxCount: 0 }]
";

const REPORT: &str = r#"{"SchemaVersion":2,"CreatedAt":"2026-11-28T00:00:00Z","ArtifactName":"app","ArtifactType":"container_image","Results":[{"Target":"app (debian 12)","Class":"os-pkgs","Type":"debian","Vulnerabilities":[{"VulnerabilityID":"CVE-2099-1","PkgName":"openssl","InstalledVersion":"3.0.1","FixedVersion":"3.0.2","Severity":"LOW","CVSS":{"nvd":{"V3Score":5.3}}}]}]}"#;

fn request(uri: &'static str, body: &Bytes) -> Request<Body> {
    let mut req = Request::new(Body::from(body.clone()));
    *req.method_mut() = axum::http::Method::POST;
    *req.uri_mut() = axum::http::Uri::from_static(uri);
    req.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    req
}

/// One request; the answer's body (a 200, or the bench aborts).
async fn answer(router: &Router, uri: &'static str, body: &Bytes) -> Bytes {
    let resp = router
        .clone()
        .oneshot(request(uri, body))
        .await
        .expect("infallible");
    assert_eq!(resp.status(), StatusCode::OK);
    axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .expect("body")
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let rules = dir.path().join("rules.yaml");
    std::fs::write(&rules, RULES).expect("rules");
    let cfg = Config {
        data_dir: dir.path().join("data"),
        rules: Some(rules),
        ..Config::default()
    };
    // A findings index entry: the tag, the digest it resolves to, the report.
    let source = LocalFindings::empty()
        .with_report(IMAGE, Some(DIGEST), REPORT.as_bytes(), vec![])
        .expect("report");
    let server = Server::with_source(cfg, std::sync::Arc::new(source)).expect("server");
    let router = server.router();
    let tag = Bytes::from(REVIEW.replace("__IMAGE__", IMAGE));
    let pinned = Bytes::from(REVIEW.replace("__IMAGE__", &format!("{IMAGE}@{DIGEST}")));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");

    // Warm every path, and check each answers what it is measured for.
    rt.block_on(async {
        let v = answer(&router, "/validate?timeout=10s", &tag).await;
        assert!(contains(&v, "\"allowed\":true") && !contains(&v, "patch"));
        let m = answer(&router, "/mutate?timeout=10s", &tag).await;
        assert!(contains(&m, "\"patchType\":\"JSONPatch\""), "{m:?}");
        let p = answer(&router, "/validate?timeout=10s", &pinned).await;
        assert!(contains(&p, "\"allowed\":true"));
    });
    let misses = server.metrics().cache_misses();

    let mut g = c.benchmark_group("warm");
    g.measurement_time(Duration::from_secs(5));
    for (name, uri, body) in [
        ("validate_tag", "/validate?timeout=10s", &tag),
        ("mutate_tag", "/mutate?timeout=10s", &tag),
        ("validate_pinned", "/validate?timeout=10s", &pinned),
    ] {
        g.bench_function(name, |b| {
            b.iter(|| rt.block_on(async { black_box(answer(&router, uri, body).await) }))
        });
    }
    g.finish();
    assert_eq!(
        server.metrics().cache_misses(),
        misses,
        "a warm request looked something up"
    );
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    bench(&mut c);
    c.final_summary();
}
