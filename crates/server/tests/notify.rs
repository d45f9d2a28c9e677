//! Notifications (issue 19 item 4) against real HTTP receivers on 127.0.0.1: each sink type's
//! body and headers (the HMAC verified), at-least-once delivery through a failing receiver
//! that recovers, dead-lettering and retry through the review API, an admission answer
//! never waiting for a receiver, filters, de-duplication, and the PostgreSQL outbox. (The
//! restart of `vulngate serve` is crates/cli/tests/notify_restart.rs.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/postgres.rs"]
mod pg;
mod support;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::Router;
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;
use support::receiver::{Mode, Receiver};
use support::*;
use tower::ServiceExt;
use vulngate_core::Severity;
use vulngate_server::alerts::PostgresUrl;
use vulngate_server::notify::{NotifyConfig, SinkConfig, SinkKind, SinkUrl};
use vulngate_server::review::{ReviewConfig, Role, TokenConfig};
use vulngate_server::{Alert, AlertAction, AlertFilter, AlertStore, PostgresBackend, Server};

const SECRET: &str = "a-notification-secret-0123456789";
const READER: &str = "reader-token-0123456789abcdef";
const REVIEWER: &str = "reviewer-token-0123456789abcdef";

fn sink(name: &str, kind: SinkKind, url: &str, secret: Option<&Path>) -> SinkConfig {
    SinkConfig {
        name: name.into(),
        kind,
        url: SinkUrl::parse(url).unwrap(),
        secret_file: secret.map(Path::to_path_buf),
        source: None,
        actions: Vec::new(),
        min_severity: None,
        namespaces: Vec::new(),
    }
}

/// Fast retries for tests.
fn notify(sinks: Vec<SinkConfig>) -> NotifyConfig {
    NotifyConfig {
        sinks,
        timeout: Duration::from_secs(5),
        connect_timeout: Duration::from_secs(1),
        initial_backoff: Duration::from_millis(50),
        max_backoff: Duration::from_millis(200),
        poll_interval: Duration::from_millis(50),
        ..NotifyConfig::default()
    }
}

fn review_config(dir: &Path) -> ReviewConfig {
    std::fs::write(dir.join("reader.token"), READER).unwrap();
    std::fs::write(dir.join("reviewer.token"), REVIEWER).unwrap();
    ReviewConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        tokens: vec![
            TokenConfig {
                name: "ci-reader".into(),
                role: Role::Reader,
                token_file: dir.join("reader.token"),
            },
            TokenConfig {
                name: "sec-team".into(),
                role: Role::Reviewer,
                token_file: dir.join("reviewer.token"),
            },
        ],
        ..ReviewConfig::default()
    }
}

/// A server with `notify` (and the review API), its notifier started; the temp dir holds the
/// secret and token files.
fn served(rules: &str, cfg: NotifyConfig, files: &Path) -> (Harness, tokio::task::JoinHandle<()>) {
    let review = review_config(files);
    let h = harness_with(rules, TestSource::new(), |c| {
        c.notify = Some(cfg);
        c.review = Some(review);
    });
    let task = h.server.start_notifier().expect("notify configured");
    (h, task)
}

fn secret_file(dir: &Path) -> std::path::PathBuf {
    let p = dir.join("notify.secret");
    std::fs::write(&p, format!("{SECRET}\n")).unwrap();
    p
}

fn alerts(server: &Server) -> Vec<Alert> {
    server.alerts().list(&AlertFilter::default()).unwrap()
}

async fn api(router: &Router, method: &str, uri: &str, token: &str) -> (StatusCode, Value) {
    let req = Request::builder()
        .method(method)
        .uri(uri)
        .header("authorization", format!("Bearer {token}"))
        .body(Body::empty())
        .unwrap();
    let resp = router.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap();
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

fn verify(secret: &str, timestamp: &str, body: &[u8], signature: &str) {
    assert!(
        verifies(secret, timestamp, body, signature),
        "the HMAC-SHA256 signature verifies"
    );
}

fn verifies(secret: &str, timestamp: &str, body: &[u8], signature: &str) -> bool {
    let hex = signature
        .strip_prefix("sha256=")
        .unwrap_or_else(|| panic!("signature {signature:?} has no sha256= prefix"));
    let tag: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect();
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.verify_slice(&tag).is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_sink_type_receives_its_body_and_headers() {
    let files = tempfile::tempdir().unwrap();
    let rx = Receiver::start(Mode::Ok).await;
    let secret = secret_file(files.path());
    let mut ce = sink(
        "events",
        SinkKind::Cloudevents,
        &rx.url("/ce"),
        Some(&secret),
    );
    ce.source = Some("/clusters/test".into());
    let cfg = notify(vec![
        sink("soc", SinkKind::Webhook, &rx.url("/hook"), Some(&secret)),
        ce,
        sink("chat", SinkKind::Slack, &rx.url("/services/T0/B0/x"), None),
    ]);
    let (h, _task) = served(RULES, cfg, files.path());
    let answer = admit(&h.server, &create(&deployment("prod-shop", &[DEBIAN]))).await;
    assert!(!answer.allowed);
    let stored = alerts(&h.server);
    assert_eq!(stored.len(), 1);
    let alert = &stored[0];
    let got = rx.wait_for("three deliveries", |g| g.len() >= 3).await;
    let by_path = |p: &str| got.iter().find(|r| r.path == p).unwrap().clone();

    // webhook: the alert as JSON, signed over "<timestamp>.<body>".
    let hook = by_path("/hook");
    assert!(hook.header("content-type").starts_with("application/json"));
    let body = hook.json();
    assert_eq!(body["id"], alert.id.as_str());
    assert_eq!(body["action"], "deny");
    assert_eq!(body["rule"], "deny-critical-prod");
    assert_eq!(body["namespace"], "prod-shop");
    assert_eq!(body["image"], DEBIAN);
    assert_eq!(
        body["vulnerability"]["id"],
        alert.vulnerability.as_ref().unwrap().id.as_str()
    );
    assert!(body["violations"].as_array().is_some_and(|v| !v.is_empty()));
    let ts = hook.header("x-vulngate-timestamp");
    assert!(ts.parse::<i64>().is_ok(), "timestamp {ts:?}");
    verify(SECRET, ts, &hook.body, hook.header("x-vulngate-signature"));
    assert!(!hook.header("x-vulngate-delivery").is_empty());
    // A different key does not verify.
    let sig = hook.header("x-vulngate-signature");
    assert!(!verifies("another-secret-0123456789", ts, &hook.body, sig));
    assert!(!verifies(SECRET, "1", &hook.body, sig));

    // CloudEvents 1.0, structured mode.
    let ce = by_path("/ce");
    assert!(ce
        .header("content-type")
        .starts_with("application/cloudevents+json"));
    let ev = ce.json();
    assert_eq!(ev["specversion"], "1.0");
    assert_eq!(ev["type"], "io.vulngate.alert.created");
    assert_eq!(ev["source"], "/clusters/test");
    assert_eq!(ev["id"], ce.header("x-vulngate-delivery"));
    assert_eq!(ev["subject"], alert.id.as_str());
    assert_eq!(ev["datacontenttype"], "application/json");
    assert!(chrono::DateTime::parse_from_rfc3339(ev["time"].as_str().unwrap()).is_ok());
    assert_eq!(ev["data"]["id"], alert.id.as_str());
    assert_eq!(ev["data"]["action"], "deny");
    verify(
        SECRET,
        ce.header("x-vulngate-timestamp"),
        &ce.body,
        ce.header("x-vulngate-signature"),
    );

    // Slack: text plus blocks naming action, rule, image, workload, namespace and the
    // deciding vulnerability; not signed.
    let slack = by_path("/services/T0/B0/x");
    let msg = slack.json();
    let vuln = &alert.vulnerability.as_ref().unwrap().id;
    let text = msg["text"].as_str().unwrap();
    for part in [
        "deny",
        DEBIAN,
        "prod-shop",
        "Deployment/web",
        "deny-critical-prod",
        vuln,
    ] {
        assert!(text.contains(part), "{part} in {text:?}");
    }
    let fields: Vec<String> = msg["blocks"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|b| b["fields"].as_array().cloned().unwrap_or_default())
        .map(|f| f["text"].as_str().unwrap().to_string())
        .collect();
    for (name, value) in [
        ("Action", "deny"),
        ("Rule", "deny-critical-prod"),
        ("Image", DEBIAN),
        ("Workload", "Deployment/web"),
        ("Namespace", "prod-shop"),
        ("Vulnerability", &format!("{vuln} (critical)")),
    ] {
        assert!(
            fields.contains(&format!("*{name}*\n{value}")),
            "{name}: {value} in {fields:?}"
        );
    }
    assert_eq!(slack.header("x-vulngate-signature"), "");

    // Per-sink metrics, and nothing left in the outbox.
    rx.wait_for("no more", |g| g.len() == 3).await;
    let m = h.server.metrics();
    for s in ["soc", "events", "chat"] {
        eventually(|| m.notify().delivered_total(s) == 1, s).await;
    }
    eventually(|| outbox_len(&h.server) == 0, "outbox drained").await;
    let text = m.encode();
    assert!(
        text.contains("vulngate_notifications_delivered_total{sink=\"soc\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("vulngate_notification_outbox_depth"),
        "{text}"
    );
}

fn outbox_len(server: &Server) -> usize {
    server
        .alerts()
        .outbox()
        .unwrap()
        .notifications(None, None, 1000)
        .unwrap()
        .len()
}

async fn eventually(cond: impl Fn() -> bool, what: &str) {
    for _ in 0..3000 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{what}: not within 60s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_receiver_that_recovers_gets_the_notification_exactly_once() {
    let files = tempfile::tempdir().unwrap();
    let rx = Receiver::start(Mode::Ok).await;
    rx.fail_first(3);
    let secret = secret_file(files.path());
    let cfg = notify(vec![sink(
        "soc",
        SinkKind::Webhook,
        &rx.url("/hook"),
        Some(&secret),
    )]);
    let (h, _task) = served(RULES, cfg, files.path());
    admit(&h.server, &create(&deployment("prod-shop", &[DEBIAN]))).await;
    let alert_id = alerts(&h.server)[0].id.clone();
    let got = rx
        .wait_for("a delivery", |g| g.iter().any(|r| r.answered == 200))
        .await;
    assert_eq!(
        got.iter().map(|r| r.answered).collect::<Vec<_>>(),
        vec![500, 500, 500, 200]
    );
    // Every attempt carried the same delivery id and the same alert.
    let ids: std::collections::BTreeSet<&str> = got
        .iter()
        .map(|r| r.header("x-vulngate-delivery"))
        .collect();
    assert_eq!(ids.len(), 1);
    assert!(got.iter().all(|r| r.json()["id"] == alert_id.as_str()));
    // Delivered, the entry leaves the outbox; nothing is sent again.
    eventually(|| outbox_len(&h.server) == 0, "outbox drained").await;
    let m = h.server.metrics().notify();
    eventually(|| m.delivered_total("soc") == 1, "counted").await;
    assert_eq!((m.failed_total("soc"), m.delivered_total("soc")), (3, 1));
    tokio::time::sleep(Duration::from_millis(500)).await; // ten poll intervals
    assert_eq!(rx.delivered().len(), 1);
    assert_eq!(rx.received().len(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_max_attempts_a_notification_is_dead_and_a_retry_delivers_it() {
    let files = tempfile::tempdir().unwrap();
    let rx = Receiver::start(Mode::Fail(503)).await;
    let secret = secret_file(files.path());
    let mut cfg = notify(vec![sink(
        "soc",
        SinkKind::Webhook,
        &rx.url("/hook"),
        Some(&secret),
    )]);
    cfg.max_attempts = 3;
    let (h, _task) = served(RULES, cfg, files.path());
    let router = h.server.review_router().unwrap();
    admit(&h.server, &create(&deployment("prod-shop", &[DEBIAN]))).await;
    let alert_id = alerts(&h.server)[0].id.clone();
    rx.wait_for("three attempts", |g| g.len() >= 3).await;
    let m = h.server.metrics().notify();
    eventually(|| m.dead_total("soc") == 1, "dead-lettered").await;

    let (status, page) = api(&router, "GET", "/api/v1/notifications?state=dead", READER).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let items = page["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{page}");
    let dead = &items[0];
    assert_eq!(dead["state"], "dead");
    assert_eq!(dead["sink"], "soc");
    assert_eq!(dead["alertId"], alert_id.as_str());
    assert_eq!(dead["attempts"], 3);
    assert_eq!(dead["lastError"], "HTTP 503");
    let id = dead["id"].as_str().unwrap().to_string();
    // No more attempts once dead.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(rx.received().len(), 3);
    let (_, pending) = api(
        &router,
        "GET",
        "/api/v1/notifications?state=pending",
        READER,
    )
    .await;
    assert_eq!(pending["items"].as_array().unwrap().len(), 0, "{pending}");
    let (status, _) = api(&router, "GET", "/api/v1/notifications?state=gone", READER).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = api(&router, "GET", "/api/v1/notifications", "wrong-token").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // A reader cannot retry; a reviewer can, and the recovered receiver gets it once.
    let retry = format!("/api/v1/notifications/{id}/retry");
    let (status, _) = api(&router, "POST", &retry, READER).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    rx.set_mode(Mode::Ok);
    let (status, body) = api(&router, "POST", &retry, REVIEWER).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["state"], "pending");
    assert_eq!(body["attempts"], 0);
    let got = rx
        .wait_for("the retried delivery", |g| {
            g.iter().any(|r| r.answered == 200)
        })
        .await;
    assert_eq!(got.iter().filter(|r| r.answered == 200).count(), 1);
    assert_eq!(got.last().unwrap().header("x-vulngate-delivery"), id);
    eventually(|| outbox_len(&h.server) == 0, "outbox drained").await;
    let (status, _) = api(&router, "POST", &retry, REVIEWER).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // The OpenAPI document names both endpoints.
    let (_, doc) = api(&router, "GET", "/api/openapi.json", READER).await;
    assert!(doc["paths"]["/api/v1/notifications"]["get"].is_object());
    assert!(doc["paths"]["/api/v1/notifications/{id}/retry"]["post"].is_object());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_that_never_answers_does_not_delay_the_admission_answer() {
    let files = tempfile::tempdir().unwrap();
    let rx = Receiver::start(Mode::Hang).await;
    let secret = secret_file(files.path());
    let mut cfg = notify(vec![sink(
        "soc",
        SinkKind::Webhook,
        &rx.url("/hook"),
        Some(&secret),
    )]);
    cfg.timeout = Duration::from_secs(3600);
    let (h, _task) = served(RULES, cfg, files.path());
    // The first alert's notification is held by the receiver...
    admit(&h.server, &create(&deployment("prod-shop", &[DEBIAN]))).await;
    rx.wait_for("the receiver holds a request", |g| !g.is_empty())
        .await;
    assert_eq!(rx.hanging(), 1);
    // ...and another review (another workload: another alert) is answered meanwhile.
    let answer = admit(
        &h.server,
        &create(&workload("Deployment", "api", "prod-shop", &[DEBIAN])),
    )
    .await;
    assert!(!answer.allowed);
    assert_eq!(alerts(&h.server).len(), 2);
    assert!(rx.hanging() >= 1, "the receiver is still blocked");
    assert!(rx.received().iter().all(|r| r.answered == 0));
    assert_eq!(h.server.metrics().notify().delivered_total("soc"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sink_that_never_answers_does_not_hold_back_the_others() {
    let files = tempfile::tempdir().unwrap();
    let stuck = Receiver::start(Mode::Hang).await;
    let rx = Receiver::start(Mode::Ok).await;
    let secret = secret_file(files.path());
    let mut cfg = notify(vec![
        sink(
            "stuck",
            SinkKind::Webhook,
            &stuck.url("/hook"),
            Some(&secret),
        ),
        sink("soc", SinkKind::Webhook, &rx.url("/hook"), Some(&secret)),
    ]);
    cfg.timeout = Duration::from_secs(3600);
    let (h, _task) = served(RULES, cfg, files.path());
    admit(&h.server, &create(&deployment("prod-shop", &[DEBIAN]))).await;
    stuck
        .wait_for("the stuck sink holds a request", |g| !g.is_empty())
        .await;
    // A later alert still reaches the sink that answers.
    admit(
        &h.server,
        &create(&workload("Deployment", "api", "prod-shop", &[DEBIAN])),
    )
    .await;
    let got = rx.wait_for("both alerts", |g| g.len() >= 2).await;
    let mut ids: Vec<String> = got
        .iter()
        .map(|r| r.json()["id"].as_str().unwrap().to_string())
        .collect();
    ids.sort();
    let mut stored: Vec<String> = alerts(&h.server).into_iter().map(|a| a.id).collect();
    stored.sort();
    assert_eq!(ids, stored);
    assert!(stuck.received().iter().all(|r| r.answered == 0));
}

fn filter_rules() -> String {
    format!(
        "{RULES}---
apiVersion: vulngate.io/v1
kind: SecurityRule
metadata: {{ name: audit-medium-qa }}
spec:
  action: audit
  scope: [{{ field: namespace, op: equals, value: qa }}]
  conditions: [{{ severity: medium, maxCount: 0 }}]
"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_select_the_sinks_an_alert_goes_to() {
    let files = tempfile::tempdir().unwrap();
    let rx = Receiver::start(Mode::Ok).await;
    let secret = secret_file(files.path());
    let webhook = |name: &str| {
        sink(
            name,
            SinkKind::Webhook,
            &rx.url(&format!("/{name}")),
            Some(&secret),
        )
    };
    let mut deny_only = webhook("deny-only");
    deny_only.actions = vec![AlertAction::Deny];
    let mut dev_only = webhook("dev-only");
    dev_only.namespaces = vec!["dev".into()];
    let mut critical = webhook("critical");
    critical.min_severity = Some(Severity::Critical);
    let mut audit_qa = webhook("audit-qa");
    audit_qa.actions = vec![AlertAction::Audit];
    audit_qa.namespaces = vec!["qa".into()];
    let all = webhook("all");
    let cfg = notify(vec![deny_only, dev_only, critical, audit_qa, all]);
    let (h, _task) = served(&filter_rules(), cfg, files.path());
    // deny (critical) in prod-shop; audit (critical) in dev; audit (medium) in qa.
    admit(&h.server, &create(&deployment("prod-shop", &[DEBIAN]))).await;
    admit(&h.server, &create(&deployment("dev", &[DEBIAN]))).await;
    admit(&h.server, &create(&deployment("qa", &[ALPINE]))).await;
    let stored = alerts(&h.server);
    assert_eq!(stored.len(), 3);
    let in_ns = |ns: &str| {
        stored
            .iter()
            .find(|a| a.namespace.as_deref() == Some(ns))
            .unwrap()
    };
    assert_eq!(in_ns("qa").action, AlertAction::Audit);
    assert_eq!(
        in_ns("qa").vulnerability.as_ref().unwrap().severity,
        Severity::Medium
    );
    let expected = [
        ("deny-only", vec!["prod-shop"]),
        ("dev-only", vec!["dev"]),
        ("critical", vec!["dev", "prod-shop"]),
        ("audit-qa", vec!["qa"]),
        ("all", vec!["dev", "prod-shop", "qa"]),
    ];
    let total: usize = expected.iter().map(|(_, v)| v.len()).sum();
    rx.wait_for("every selected delivery", |g| g.len() >= total)
        .await;
    eventually(|| outbox_len(&h.server) == 0, "outbox drained").await;
    let got = rx.received();
    assert_eq!(got.len(), total);
    for (name, namespaces) in expected {
        let mut seen: Vec<String> = got
            .iter()
            .filter(|r| r.path == format!("/{name}"))
            .map(|r| r.json()["namespace"].as_str().unwrap().to_string())
            .collect();
        seen.sort();
        assert_eq!(seen, namespaces, "sink {name}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeat_absorbed_by_deduplication_or_a_dry_run_does_not_notify() {
    let files = tempfile::tempdir().unwrap();
    let rx = Receiver::start(Mode::Ok).await;
    let secret = secret_file(files.path());
    let cfg = notify(vec![sink(
        "soc",
        SinkKind::Webhook,
        &rx.url("/hook"),
        Some(&secret),
    )]);
    let (h, _task) = served(RULES, cfg, files.path());
    let review = create(&deployment("prod-shop", &[DEBIAN]));
    admit(&h.server, &review).await;
    rx.wait_for("the first delivery", |g| !g.is_empty()).await;
    admit(&h.server, &review).await;
    let stored = alerts(&h.server);
    assert_eq!((stored.len(), stored[0].count), (1, 2));
    // A dry run records no alert, so it notifies nobody either.
    let mut dry = create(&deployment("prod-dry", &[DEBIAN]));
    dry["request"]["dryRun"] = Value::Bool(true);
    assert!(!admit(&h.server, &dry).await.allowed);
    tokio::time::sleep(Duration::from_millis(500)).await; // ten poll intervals
    assert_eq!(outbox_len(&h.server), 0);
    assert_eq!(rx.received().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transport_error_is_recorded_without_the_urls_secret_path() {
    let files = tempfile::tempdir().unwrap();
    // A port nobody listens on: connection refused.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let url = format!("http://127.0.0.1:{port}/services/T0/B0/s3cr3t-path");
    let mut cfg = notify(vec![sink("chat", SinkKind::Slack, &url, None)]);
    cfg.max_attempts = 1;
    let (h, _task) = served(RULES, cfg, files.path());
    admit(&h.server, &create(&deployment("prod-shop", &[DEBIAN]))).await;
    let m = h.server.metrics().notify();
    eventually(|| m.dead_total("chat") == 1, "dead-lettered").await;
    let dead = h
        .server
        .alerts()
        .outbox()
        .unwrap()
        .notifications(None, Some("chat"), 10)
        .unwrap();
    let error = dead[0].last_error.clone().unwrap();
    assert!(error.starts_with("cannot connect"), "{error}");
    assert!(!error.contains("s3cr3t"), "{error}");
}

#[test]
fn notify_is_refused_with_the_kubernetes_store_and_webhooks_need_a_secret() {
    let err = vulngate_server::Config::parse(
        "store: kubernetes\nkubernetes: {rulesFrom: cluster}\nnotify:\n  sinks:\n    - {name: chat, type: slack, url: \"https://hooks.example/x\"}\n",
        "vulngate.yaml",
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("notify") && err.contains("store: kubernetes"),
        "{err}"
    );
    let err = vulngate_server::Config::parse(
        "notify:\n  sinks:\n    - {name: soc, type: webhook, url: \"https://hooks.example/x\"}\n",
        "vulngate.yaml",
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("secretFile"), "{err}");
    // A Slack URL's path (its secret) is not printed by `serve --check-config`.
    let cfg = vulngate_server::Config::parse(
        "notify:\n  sinks:\n    - {name: chat, type: slack, url: \"https://hooks.example/services/T/B/s3cr3t\", actions: [deny], minSeverity: high}\n",
        "vulngate.yaml",
    )
    .unwrap();
    let printed = serde_yaml_ng::to_string(&cfg).unwrap();
    assert!(!printed.contains("s3cr3t"), "{printed}");
    assert!(printed.contains("https://hooks.example/"), "{printed}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_postgres_outbox_delivers_retries_and_dead_letters() {
    let pg = pg::Postgres::start();
    let url = PostgresUrl::parse(&pg.url()).unwrap();
    let files = tempfile::tempdir().unwrap();
    let rx = Receiver::start(Mode::Ok).await;
    rx.fail_first(1);
    let dead_rx = Receiver::start(Mode::Fail(500)).await;
    let secret = secret_file(files.path());
    let mut cfg = notify(vec![
        sink("soc", SinkKind::Webhook, &rx.url("/hook"), Some(&secret)),
        sink("down", SinkKind::Cloudevents, &dead_rx.url("/ce"), None),
    ]);
    cfg.max_attempts = 2;
    let backend = PostgresBackend::open(&url, Some(&pg.password_file())).unwrap();
    let store = AlertStore::from_backend(Arc::new(backend));
    let mut config = support::config(files.path(), Some(RULES));
    config.notify = Some(cfg);
    let server = Server::with_parts(config, TestSource::new(), store).unwrap();
    let _task = server.start_notifier().unwrap();
    admit(&server, &create(&deployment("prod-shop", &[DEBIAN]))).await;
    admit(&server, &create(&deployment("prod-shop", &[DEBIAN]))).await; // absorbed
    let alert_id = alerts(&server)[0].id.clone();
    let got = rx
        .wait_for("a delivery", |g| g.iter().any(|r| r.answered == 200))
        .await;
    assert_eq!(
        got.iter().map(|r| r.answered).collect::<Vec<_>>(),
        vec![500, 200]
    );
    assert_eq!(got[1].json()["id"], alert_id.as_str());
    let m = server.metrics().notify();
    eventually(|| m.dead_total("down") == 1, "dead-lettered").await;
    let outbox = server.alerts().outbox().unwrap();
    let dead = outbox
        .notifications(
            Some(vulngate_server::alerts::outbox::DeliveryState::Dead),
            None,
            10,
        )
        .unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!((dead[0].sink.as_str(), dead[0].attempts), ("down", 2));
    assert_eq!(outbox.notifications(None, None, 10).unwrap().len(), 1);
    dead_rx.set_mode(Mode::Ok);
    let retried = outbox.retry(&dead[0].id, chrono::Utc::now()).unwrap();
    assert!(matches!(
        retried,
        vulngate_server::alerts::outbox::Retried::Retried(_)
    ));
    dead_rx
        .wait_for("the retried delivery", |g| {
            g.iter().any(|r| r.answered == 200)
        })
        .await;
    eventually(
        || outbox.notifications(None, None, 10).unwrap().is_empty(),
        "drained",
    )
    .await;
    assert_eq!(rx.delivered().len(), 1);
}
