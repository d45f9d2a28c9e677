//! In-process cost of one warm `POST /validate`, against a fixed-response router in the same
//! run (no TLS, no sockets, no load generator): `tower::ServiceExt::oneshot` on
//! `Server::router()` with the image's report cached, and on a router that answers the same
//! fixed AdmissionReview as `examples/fixed_response.rs`. Rounds alternate; the best round of
//! each is reported (the machine is shared), with the per-request difference.
//!
//! The request and rule are those of `scripts/bench-webhook.sh` (a Deployment with one pinned
//! image whose report has one LOW finding; deny critical or unscanned: the answer is allow).
//! Decision log lines go as in `vulngate serve` (`vulngate_server::init_logging`, JSON at level
//! info, stderr: redirect it to a file as the load benchmark does); `--log none` disables them.
//!
//! `--object pod` sends a Pod of a Deployment's ReplicaSet instead (owner references and a
//! `pod-template-hash` label: the owner resolution's work); `--alerts` audits the image's LOW
//! finding, so every request writes an alert (de-duplicated into one with `alerts.dedupWindow`)
//! and waits for its commit: the answer then differs from the fixed one, which is not compared.
//!
//! `--compare` (issue 18) measures owner resolution and de-duplication side by side in one
//! run, rounds alternating which goes first: "off" is a Pod without ownerReferences (its own
//! workload: nothing to resolve) on a server with `alerts.dedupWindow: 0s`; "on" is the Pod
//! of a Deployment's ReplicaSet (`--object pod`) on a server with the default 24h window. No
//! switch turns owner resolution off, so the Pod without owners stands for it. With
//! `--alerts` both write an alert per request ("on": one alert, counted; "off": one each).
//! `--off same-bytes` makes "off" the same Pod, byte for byte as long, with the owner hints
//! renamed (`ownerReferencez`, an unknown key the parse skips; label `pod-template-hasz`): what
//! the API server sends for a controller's Pod either way, minus the resolution's work.
//!
//! ```text
//! cargo run --release -p vulngate-server --example handler_cost -- [--requests 20000] [--rounds 5] [--log none] [--object pod] [--alerts] [--compare [--off bare|same-bytes]] 2>/tmp/handler_cost.log
//! ```

// The same global allocator as the `vulngate` binary, so the ratio stays fair.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod common;

use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::DefaultBodyLimit;
use axum::http::{header, Request, StatusCode};
use axum::response::Response;
use axum::routing::post;
use axum::Router;
use tower::ServiceExt;
use vulngate_server::{Config, LocalFindings, Server};

const IMAGE: &str = "127.0.0.1:5000/bench/app@sha256:0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0";

const REVIEW: &str = r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"705ab4f5-6393-11e8-b7cc-42010a800002","kind":{"group":"apps","version":"v1","kind":"Deployment"},"resource":{"group":"apps","version":"v1","resource":"deployments"},"name":"web","namespace":"shop","operation":"CREATE","userInfo":{"username":"alice@example.com","groups":["system:authenticated"]},"object":{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"web","namespace":"shop","labels":{"app":"web"}},"spec":{"replicas":2,"selector":{"matchLabels":{"app":"web"}},"template":{"metadata":{"labels":{"app":"web"}},"spec":{"containers":[{"name":"web","image":"__IMAGE__","ports":[{"containerPort":8080}]}]}}}},"oldObject":null,"dryRun":false,"options":{"apiVersion":"meta.k8s.io/v1","kind":"CreateOptions"}}}"#;

/// The Pod `web-5d8f9c7b4-x2x9q` of ReplicaSet `web-5d8f9c7b4` (Deployment `web`).
const POD_REVIEW: &str = r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"705ab4f5-6393-11e8-b7cc-42010a800002","kind":{"group":"","version":"v1","kind":"Pod"},"resource":{"group":"","version":"v1","resource":"pods"},"name":"web-5d8f9c7b4-x2x9q","namespace":"shop","operation":"CREATE","userInfo":{"username":"system:serviceaccount:kube-system:replicaset-controller","groups":["system:serviceaccounts"]},"object":{"apiVersion":"v1","kind":"Pod","metadata":{"name":"web-5d8f9c7b4-x2x9q","generateName":"web-5d8f9c7b4-","namespace":"shop","labels":{"app":"web","pod-template-hash":"5d8f9c7b4"},"ownerReferences":[{"apiVersion":"apps/v1","kind":"ReplicaSet","name":"web-5d8f9c7b4","uid":"6c1f0c9e-3b1a-4a61-9d55-0f5e0f4b2a11","controller":true,"blockOwnerDeletion":true}]},"spec":{"containers":[{"name":"web","image":"__IMAGE__","ports":[{"containerPort":8080}]}]}},"oldObject":null,"dryRun":false,"options":{"apiVersion":"meta.k8s.io/v1","kind":"CreateOptions"}}}"#;

/// `--alerts`: every request audited (an alert each).
const AUDIT_RULES: &str = "apiVersion: vulngate.io/v1
kind: SecurityRule
metadata: { name: bench-audit-low }
spec:
  action: audit
  conditions: [{ severity: low, maxCount: 0 }]
";

const RULES: &str = "apiVersion: vulngate.io/v1
kind: SecurityRule
metadata: { name: bench-deny-critical-or-unscanned }
spec:
  action: deny
  blockUnscanned: true
  conditions: [{ severity: critical, maxCount: 0 }]
";

const REPORT: &str = r#"{"SchemaVersion":2,"CreatedAt":"2026-11-28T00:00:00Z","ArtifactName":"app","ArtifactType":"container_image","Results":[{"Target":"app (debian 12)","Class":"os-pkgs","Type":"debian","Vulnerabilities":[{"VulnerabilityID":"CVE-2099-1","PkgName":"openssl","InstalledVersion":"3.0.1","FixedVersion":"3.0.2","Severity":"LOW","CVSS":{"nvd":{"V3Score":5.3}}}]}]}"#;

async fn fixed(body: Bytes) -> Response {
    let _ = body.len();
    common::fixed_answer()
}

fn request(body: &Bytes) -> Request<Body> {
    let mut req = Request::new(Body::from(body.clone()));
    *req.method_mut() = axum::http::Method::POST;
    *req.uri_mut() = axum::http::Uri::from_static("/validate?timeout=10s");
    req.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    req
}

/// One request; the body of the answer, which must be a 200.
async fn answer(router: &Router, body: &Bytes) -> Result<Bytes, String> {
    let resp = router
        .clone()
        .oneshot(request(body))
        .await
        .map_err(|e| e.to_string())?;
    if resp.status() != StatusCode::OK {
        return Err(format!("status {}", resp.status()));
    }
    axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .map_err(|e| e.to_string())
}

/// `n` requests one after the other; the time per request.
async fn run(router: &Router, body: &Bytes, n: usize) -> Result<Duration, String> {
    let start = Instant::now();
    for _ in 0..n {
        let bytes = answer(router, body).await?;
        if !bytes
            .windows(b"\"allowed\":true".len())
            .any(|w| w == b"\"allowed\":true")
        {
            return Err(format!("not allowed: {}", String::from_utf8_lossy(&bytes)));
        }
    }
    Ok(start.elapsed() / n.max(1) as u32)
}

/// The CPU time of this process so far (user + system, `/proc/self/stat`, in clock ticks of
/// 10 ms): what a round costs whatever else the shared machine runs. Zero where unreadable.
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which may hold spaces), from field 3 on.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<u64> = rest
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    let ticks = f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0);
    Duration::from_millis(ticks * 10)
}

/// [`run`], and the process CPU time per request over it.
async fn run_cpu(router: &Router, body: &Bytes, n: usize) -> Result<(Duration, Duration), String> {
    let cpu = cpu_time();
    let wall = run(router, body, n).await?;
    Ok((wall, cpu_time().saturating_sub(cpu) / n.max(1) as u32))
}

/// `--compare`: owner resolution and de-duplication off and on, rounds alternating.
fn compare_owners_and_dedup(
    cfg: &Config,
    source: LocalFindings,
    requests: usize,
    rounds: usize,
    alerts: bool,
    same_bytes: bool,
) -> Result<(), Box<dyn std::error::Error>> {
    let source = std::sync::Arc::new(source);
    let server = |window: Duration, dir: &str| {
        let mut c = cfg.clone();
        c.data_dir = cfg.data_dir.join(dir);
        c.alerts.dedup_window = window;
        Server::with_source(c, source.clone())
    };
    let off = server(Duration::ZERO, "off")?;
    let on = server(Duration::from_secs(24 * 3600), "on")?;
    let owned = POD_REVIEW.replace("__IMAGE__", IMAGE);
    let bare = owned
        .replace(r#","pod-template-hash":"5d8f9c7b4""#, "")
        .replace(
            r#","ownerReferences":[{"apiVersion":"apps/v1","kind":"ReplicaSet","name":"web-5d8f9c7b4","uid":"6c1f0c9e-3b1a-4a61-9d55-0f5e0f4b2a11","controller":true,"blockOwnerDeletion":true}]"#,
            "",
        );
    let bare = if same_bytes {
        owned
            .replace(r#""ownerReferences""#, r#""ownerReferencez""#)
            .replace(r#""pod-template-hash""#, r#""pod-template-hasz""#)
    } else {
        bare
    };
    if bare.contains("ownerReferences") || bare.contains("pod-template-hash") {
        return Err("the Pod without owners still names one".into());
    }
    if same_bytes && bare.len() != owned.len() {
        return Err("--off same-bytes: the two Pods differ in length".into());
    }
    let (bare, owned) = (Bytes::from(bare), Bytes::from(owned));
    let (off_router, on_router) = (off.router(), on.router());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        run(&off_router, &bare, 100).await?;
        run(&on_router, &owned, 100).await?;
        let (mut best_off, mut best_on) = (Duration::MAX, Duration::MAX);
        let (mut ratios, mut cpu_ratios) = (Vec::new(), Vec::new());
        let (mut cpu_off, mut cpu_on) = (Duration::ZERO, Duration::ZERO);
        for r in 1..=rounds {
            let ((x, xc), (y, yc)) = if r % 2 == 1 {
                let x = run_cpu(&off_router, &bare, requests).await?;
                (x, run_cpu(&on_router, &owned, requests).await?)
            } else {
                let y = run_cpu(&on_router, &owned, requests).await?;
                (run_cpu(&off_router, &bare, requests).await?, y)
            };
            let ratio = y.as_secs_f64() / x.as_secs_f64();
            let cpu_ratio = yc.as_secs_f64() / xc.as_secs_f64().max(1e-12);
            ratios.push(ratio);
            cpu_ratios.push(cpu_ratio);
            cpu_off += xc;
            cpu_on += yc;
            println!(
                "round {r} ({} first): off {:.2} us/req ({:.2} us CPU), on {:.2} us/req ({:.2} us CPU), on/off {ratio:.3} (CPU {cpu_ratio:.3})",
                if r % 2 == 1 { "off" } else { "on" },
                x.as_secs_f64() * 1e6,
                xc.as_secs_f64() * 1e6,
                y.as_secs_f64() * 1e6,
                yc.as_secs_f64() * 1e6,
            );
            best_off = best_off.min(x);
            best_on = best_on.min(y);
        }
        ratios.sort_by(f64::total_cmp);
        cpu_ratios.sort_by(f64::total_cmp);
        let median = ratios[ratios.len() / 2];
        println!(
            "CPU per request over all rounds: off {:.2} us, on {:.2} us, on/off {:.3} (median of rounds {:.3})",
            cpu_off.as_secs_f64() * 1e6 / rounds as f64,
            cpu_on.as_secs_f64() * 1e6 / rounds as f64,
            cpu_on.as_secs_f64() / cpu_off.as_secs_f64().max(1e-12),
            cpu_ratios[cpu_ratios.len() / 2],
        );
        let count = |s: &Server| {
            s.alerts()
                .list(&vulngate_server::AlertFilter {
                    limit: Some(1_000_000),
                    ..Default::default()
                })
                .map(|l| (l.len(), l.iter().map(|a| a.count).sum::<u64>()))
                .unwrap_or_default()
        };
        println!(
            "best: off {:.2} us/req, on {:.2} us/req, on/off {:.3} (median of rounds {median:.3}); \
             {requests} requests x {rounds} rounds, alerts {alerts}; alerts (objects, count): \
             off {:?}, on {:?}",
            best_off.as_secs_f64() * 1e6,
            best_on.as_secs_f64() * 1e6,
            best_on.as_secs_f64() / best_off.as_secs_f64(),
            count(&off),
            count(&on),
        );
        Ok::<_, String>(())
    })?;
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (mut requests, mut rounds, mut log) = (20_000usize, 5usize, None::<String>);
    let (mut pod, mut alerts, mut compare, mut same_bytes) = (false, false, false, false);
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = || args.next().ok_or(format!("{a} needs a value"));
        match a.as_str() {
            "--requests" => requests = val()?.parse()?,
            "--rounds" => rounds = val()?.parse()?,
            "--log" => log = Some(val()?),
            "--object" => match val()?.as_str() {
                "pod" => pod = true,
                "deployment" => pod = false,
                other => return Err(format!("--object: pod or deployment, not {other}").into()),
            },
            "--alerts" => alerts = true,
            "--compare" => compare = true,
            "--off" => match val()?.as_str() {
                "bare" => same_bytes = false,
                "same-bytes" => same_bytes = true,
                other => return Err(format!("--off: bare or same-bytes, not {other}").into()),
            },
            other => return Err(format!("unknown argument {other}").into()),
        }
    }
    let dir = tempfile::tempdir()?;
    // The server's own logging (JSON at info on stderr): redirect stderr to a file.
    let _logs = match log.as_deref() {
        Some("none") => None,
        None => vulngate_server::init_logging("info"),
        Some(other) => return Err(format!("--log: only `none` is accepted, not {other}").into()),
    };
    let rules = dir.path().join("rules.yaml");
    std::fs::write(&rules, if alerts { AUDIT_RULES } else { RULES })?;
    let cfg = Config {
        data_dir: dir.path().join("data"),
        rules: Some(rules),
        ..Config::default()
    };
    let source = LocalFindings::empty().with_report(IMAGE, None, REPORT.as_bytes(), vec![])?;
    if compare {
        return compare_owners_and_dedup(&cfg, source, requests, rounds, alerts, same_bytes);
    }
    let server = Server::with_source(cfg.clone(), std::sync::Arc::new(source))?;
    let vulngate = server.router();
    let fixed = Router::new()
        .route("/validate", post(fixed))
        .layer(DefaultBodyLimit::max(cfg.max_request_bytes));
    let review = if pod { POD_REVIEW } else { REVIEW };
    let body = Bytes::from(review.replace("__IMAGE__", IMAGE));

    // Same runtime kind as `vulngate serve`.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        // Warm: the first request looks the report up and caches it.
        run(&vulngate, &body, 100).await?;
        // Both routers must send the same bytes, or the comparison is not fair.
        let sent = answer(&vulngate, &body).await?;
        if !alerts && sent.as_ref() != common::RESPONSE {
            return Err(format!(
                "vulngate's answer differs from the fixed one (update examples/common/mod.rs): {}",
                String::from_utf8_lossy(&sent)
            ));
        }
        run(&fixed, &body, 100).await?;
        let (mut best_v, mut best_f) = (Duration::MAX, Duration::MAX);
        for r in 1..=rounds {
            let f = run(&fixed, &body, requests).await?;
            let v = run(&vulngate, &body, requests).await?;
            println!(
                "round {r}: fixed {:.2} us/req, vulngate {:.2} us/req, difference {:.2} us",
                f.as_secs_f64() * 1e6,
                v.as_secs_f64() * 1e6,
                (v.as_secs_f64() - f.as_secs_f64()) * 1e6
            );
            best_v = best_v.min(v);
            best_f = best_f.min(f);
        }
        println!(
            "best: fixed {:.2} us/req, vulngate {:.2} us/req, handler cost {:.2} us/req ({} requests x {} rounds, cache hits {})",
            best_f.as_secs_f64() * 1e6,
            best_v.as_secs_f64() * 1e6,
            (best_v.as_secs_f64() - best_f.as_secs_f64()) * 1e6,
            requests,
            rounds,
            server.metrics().cache_hits()
        );
        Ok::<_, String>(())
    })?;
    Ok(())
}
