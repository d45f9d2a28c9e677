//! The review REST API (issue 19 item 2), in process (`Server::review_router`) and over
//! real TLS on its own listener: tokens and roles, alert content, filters and cursor pages,
//! review changes, what-if evaluation that writes nothing, the OpenAPI document, hostile
//! input, and the webhook port not serving any of it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::Path;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::Router;
use serde_json::{json, Value};
use support::*;
use tower::ServiceExt;
use vulngate_server::review::{ReviewConfig, Role, TokenConfig};
use vulngate_server::Server;

const READER: &str = "reader-token-0123456789abcdef";
const REVIEWER: &str = "reviewer-token-0123456789abcdef";

fn review_config(dir: &Path) -> ReviewConfig {
    std::fs::write(dir.join("reader.token"), format!("{READER}\n")).unwrap();
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
        max_body_bytes: 64 << 10,
        ..ReviewConfig::default()
    }
}

/// A server with the review listener configured and three alerts: a deny in prod-shop
/// (debian: critical), an audit in dev (debian: high/critical everywhere), a deny of a Pod
/// in prod-tools (grype: critical).
async fn seeded() -> (Harness, Router) {
    let tokens = tempfile::tempdir().unwrap();
    let cfg = review_config(tokens.path());
    let h = harness_with(RULES, TestSource::new(), |c| c.review = Some(cfg));
    std::mem::forget(tokens); // read at construction; kept for the test's life
    admit(
        &h.server,
        &create(&deployment("prod-shop", &[DEBIAN, ALPINE])),
    )
    .await;
    admit(
        &h.server,
        &create(&workload("Deployment", "api", "dev", &[DEBIAN])),
    )
    .await;
    admit(
        &h.server,
        &create(&workload("Pod", "tool", "prod-tools", &[GRYPE])),
    )
    .await;
    let router = h.server.review_router().expect("review configured");
    (h, router)
}

async fn call(
    router: &Router,
    method: &str,
    uri: &str,
    token: Option<&str>,
    body: Option<Vec<u8>>,
) -> (StatusCode, Value) {
    let mut req = Request::builder().method(method).uri(uri);
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    if body.is_some() {
        req = req.header("content-type", "application/json");
    }
    let req = req.body(Body::from(body.unwrap_or_default())).unwrap();
    let resp = router.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap();
    let v = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    (status, v)
}

async fn get(router: &Router, uri: &str) -> (StatusCode, Value) {
    call(router, "GET", uri, Some(READER), None).await
}

async fn post(router: &Router, uri: &str, token: &str, body: Value) -> (StatusCode, Value) {
    call(
        router,
        "POST",
        uri,
        Some(token),
        Some(serde_json::to_vec(&body).unwrap()),
    )
    .await
}

fn error_code(v: &Value) -> &str {
    v["error"]["code"]
        .as_str()
        .unwrap_or_else(|| panic!("not an API error: {v}"))
}

#[tokio::test]
async fn every_endpoint_needs_a_valid_token() {
    let (_h, r) = seeded().await;
    for (method, uri) in [
        ("GET", "/api/v1/alerts"),
        ("GET", "/api/v1/alerts/0190c2d1-aaaa-7bbb-8ccc-0123456789ab"),
        (
            "POST",
            "/api/v1/alerts/0190c2d1-aaaa-7bbb-8ccc-0123456789ab/resolve",
        ),
        ("GET", "/api/v1/rules"),
        ("POST", "/api/v1/evaluate"),
    ] {
        for token in [
            None,
            Some("wrong-token-0123456789abcdef"),
            Some(&READER[..READER.len() - 1]),
        ] {
            let (status, body) = call(&r, method, uri, token, Some(b"{}".to_vec())).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {uri} {token:?}");
            assert_eq!(error_code(&body), "unauthorized");
            // The presented token is never echoed.
            assert!(!body.to_string().contains("wrong-token"), "{body}");
        }
    }
    // A bearer token in another scheme is no token.
    let req = Request::get("/api/v1/alerts")
        .header("authorization", format!("Basic {READER}"))
        .body(Body::empty())
        .unwrap();
    assert_eq!(
        r.clone().oneshot(req).await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    // The OpenAPI document is public.
    let (status, _) = call(&r, "GET", "/api/openapi.json", None, None).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn an_alert_holds_every_violation_the_rule_and_who_asked() {
    let (_h, r) = seeded().await;
    let (status, page) = get(&r, "/api/v1/alerts?namespace=prod-shop").await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let items = page["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{page}");
    let a = &items[0];
    assert_eq!(a["action"], "deny");
    assert_eq!(a["state"], "open");
    assert_eq!(a["image"], DEBIAN);
    assert_eq!(a["digest"], DEBIAN_DIGEST);
    assert_eq!(a["user"], "alice@example.com");
    assert_eq!(a["kind"], "Deployment");
    assert_eq!(a["name"], "web");
    assert_eq!(a["rule"], "deny-critical-prod");
    assert_eq!(a["ruleSnapshot"]["metadata"]["name"], "deny-critical-prod");
    // Every vulnerability that fulfilled the condition, the deciding one marked, with
    // package, installed and fixed versions, CVSS and the report it came from.
    let v = a["violations"].as_array().unwrap();
    assert!(!v.is_empty(), "{a}");
    let deciding: Vec<&Value> = v.iter().filter(|x| x["deciding"] == true).collect();
    assert_eq!(deciding.len(), 1, "{a}");
    assert_eq!(deciding[0]["id"], a["vulnerability"]["id"]);
    assert_eq!(deciding[0]["severity"], "critical");
    assert!(deciding[0]["packages"][0]["name"].is_string(), "{a}");
    assert!(deciding[0]["packages"][0]["installed"].is_string(), "{a}");
    assert_eq!(a["violationsTotal"].as_u64().unwrap() as usize, v.len());
    // audit-high would also have fired.
    assert_eq!(a["alsoFired"][0]["rule"], "audit-high", "{a}");

    // The same alert by id, with an (empty) history.
    let id = a["id"].as_str().unwrap();
    let (status, one) = get(&r, &format!("/api/v1/alerts/{id}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(one["id"], id);
    assert_eq!(one["violations"], a["violations"]);
}

#[tokio::test]
async fn filters_and_cursor_pages() {
    let (_h, r) = seeded().await;
    let (_, all) = get(&r, "/api/v1/alerts").await;
    let all_ids: Vec<String> = all["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(all_ids.len(), 3, "{all}");
    assert!(all["next"].is_null());
    // One per page, following `next`: the same alerts in the same order.
    let mut seen = Vec::new();
    let mut uri = "/api/v1/alerts?limit=1".to_string();
    loop {
        let (status, page) = get(&r, &uri).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        for a in page["items"].as_array().unwrap() {
            seen.push(a["id"].as_str().unwrap().to_string());
        }
        match page["next"].as_str() {
            Some(c) => uri = format!("/api/v1/alerts?limit=1&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(seen, all_ids);

    let count = |v: &Value| v["items"].as_array().unwrap().len();
    let (_, p) = get(&r, "/api/v1/alerts?action=audit").await;
    assert_eq!(count(&p), 1, "{p}");
    assert_eq!(p["items"][0]["namespace"], "dev");
    let (_, p) = get(&r, "/api/v1/alerts?workload=tool").await;
    assert_eq!(count(&p), 1, "{p}");
    assert_eq!(p["items"][0]["kind"], "Pod");
    let (_, p) = get(&r, "/api/v1/alerts?image=grype-app").await;
    assert_eq!(count(&p), 1);
    let (_, p) = get(&r, "/api/v1/alerts?rule=deny-critical-prod").await;
    assert_eq!(count(&p), 2);
    let (_, p) = get(&r, "/api/v1/alerts?state=open").await;
    assert_eq!(count(&p), 3);
    let (_, p) = get(&r, "/api/v1/alerts?state=resolved").await;
    assert_eq!(count(&p), 0);
    let (_, p) = get(&r, "/api/v1/alerts?since=1h").await;
    assert_eq!(count(&p), 3);
    let (_, p) = get(&r, "/api/v1/alerts?since=2999-01-01T00:00:00Z").await;
    assert_eq!(count(&p), 0);
    // By vulnerability id: the two debian alerts share their deciding CVE.
    let (_, shop) = get(&r, "/api/v1/alerts?namespace=prod-shop").await;
    let cve = shop["items"][0]["vulnerability"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (_, p) = get(&r, &format!("/api/v1/alerts?cve={cve}")).await;
    assert_eq!(count(&p), 2, "{p}");
}

#[tokio::test]
async fn reviewers_change_state_readers_cannot() {
    let (_h, r) = seeded().await;
    let (_, all) = get(&r, "/api/v1/alerts?namespace=prod-shop").await;
    let id = all["items"][0]["id"].as_str().unwrap().to_string();
    let ack = format!("/api/v1/alerts/{id}/acknowledge");

    let (status, body) = post(&r, &ack, READER, json!({"comment": "mine"})).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(error_code(&body), "forbidden");

    let (status, a) = post(
        &r,
        &ack,
        REVIEWER,
        json!({"comment": "patching base image"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{a}");
    assert_eq!(a["state"], "acknowledged");
    assert_eq!(a["history"][0]["by"], "sec-team");
    assert_eq!(a["history"][0]["from"], "open");
    assert_eq!(a["history"][0]["to"], "acknowledged");
    assert_eq!(a["history"][0]["comment"], "patching base image");

    // Acknowledging twice is a conflict, and says why.
    let (status, body) = post(&r, &ack, REVIEWER, json!({})).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("acknowledged"));

    let (status, a) = post(
        &r,
        &format!("/api/v1/alerts/{id}/resolve"),
        REVIEWER,
        json!({"comment": "rebuilt"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{a}");
    assert_eq!(a["state"], "resolved");
    // An empty body is an empty comment.
    let (status, a) = call(
        &r,
        "POST",
        &format!("/api/v1/alerts/{id}/reopen"),
        Some(REVIEWER),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{a}");
    assert_eq!(a["state"], "open");
    assert_eq!(a["history"].as_array().unwrap().len(), 3);

    // Listed with its state; filtered by it.
    post(
        &r,
        &format!("/api/v1/alerts/{id}/resolve"),
        REVIEWER,
        json!({}),
    )
    .await;
    let (_, p) = get(&r, "/api/v1/alerts?state=resolved").await;
    assert_eq!(p["items"][0]["id"], id.as_str());
    assert_eq!(p["items"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn hostile_input_gets_a_clear_4xx_json_error() {
    let (_h, r) = seeded().await;
    let cases: Vec<(&str, StatusCode, &str)> = vec![
        (
            "/api/v1/alerts?cursor=not-a-cursor",
            StatusCode::BAD_REQUEST,
            "bad-cursor",
        ),
        (
            "/api/v1/alerts?cursor=MjAyNi0wMS0wMVQwMDowMDowMFp8JyBPUiAxPTE",
            StatusCode::BAD_REQUEST,
            "bad-cursor",
        ),
        (
            "/api/v1/alerts?limit=501",
            StatusCode::BAD_REQUEST,
            "bad-filter",
        ),
        (
            "/api/v1/alerts?limit=abc",
            StatusCode::BAD_REQUEST,
            "bad-filter",
        ),
        (
            "/api/v1/alerts?state=closed",
            StatusCode::BAD_REQUEST,
            "bad-filter",
        ),
        (
            "/api/v1/alerts?action=allow",
            StatusCode::BAD_REQUEST,
            "bad-filter",
        ),
        (
            "/api/v1/alerts?since=tomorrow",
            StatusCode::BAD_REQUEST,
            "bad-filter",
        ),
        (
            "/api/v1/alerts?namespace=a&namespace=b",
            StatusCode::BAD_REQUEST,
            "bad-filter",
        ),
        (
            "/api/v1/alerts?order=asc",
            StatusCode::BAD_REQUEST,
            "bad-filter",
        ),
        (
            "/api/v1/alerts/0190c2d1-aaaa-7bbb-8ccc-0123456789ab",
            StatusCode::NOT_FOUND,
            "not-found",
        ),
        (
            "/api/v1/alerts/..%2F..%2Fetc%2Fpasswd",
            StatusCode::NOT_FOUND,
            "not-found",
        ),
        ("/api/v2/alerts", StatusCode::NOT_FOUND, "not-found"),
    ];
    for (uri, want, code) in cases {
        let (status, body) = get(&r, uri).await;
        assert_eq!(status, want, "{uri}: {body}");
        assert_eq!(error_code(&body), code, "{uri}");
        assert!(!body["error"]["message"].as_str().unwrap().is_empty());
    }
    let long = "x".repeat(300);
    let (status, body) = get(&r, &format!("/api/v1/alerts?image={long}")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body["error"]["message"].as_str().unwrap().contains("256"),
        "{body}"
    );

    let unknown = "/api/v1/alerts/0190c2d1-aaaa-7bbb-8ccc-0123456789ab/resolve";
    let (status, body) = post(&r, unknown, REVIEWER, json!({})).await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::NOT_FOUND, "not-found")
    );
    let (_, all) = get(&r, "/api/v1/alerts").await;
    let id = all["items"][0]["id"].as_str().unwrap().to_string();
    let (status, body) = post(
        &r,
        &format!("/api/v1/alerts/{id}/delete"),
        REVIEWER,
        json!({}),
    )
    .await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::NOT_FOUND, "not-found")
    );
    let (status, body) = post(
        &r,
        &format!("/api/v1/alerts/{id}/resolve"),
        REVIEWER,
        json!({"comment": 5}),
    )
    .await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::BAD_REQUEST, "bad-body"),
        "{body}"
    );
    let (status, body) = post(
        &r,
        &format!("/api/v1/alerts/{id}/resolve"),
        REVIEWER,
        json!({"coment": "typo"}),
    )
    .await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::BAD_REQUEST, "bad-body"),
        "{body}"
    );
    let (status, body) = post(
        &r,
        &format!("/api/v1/alerts/{id}/resolve"),
        REVIEWER,
        json!({"comment": "x".repeat(5000)}),
    )
    .await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::BAD_REQUEST, "bad-body"),
        "{body}"
    );
    // A body over review.maxBodyBytes (64 KiB here).
    let huge = serde_json::to_vec(&json!({"comment": "x".repeat(100 << 10)})).unwrap();
    let (status, body) = call(
        &r,
        "POST",
        &format!("/api/v1/alerts/{id}/resolve"),
        Some(REVIEWER),
        Some(huge),
    )
    .await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::PAYLOAD_TOO_LARGE, "body-too-large"),
        "{body}"
    );
    let (status, body) = call(
        &r,
        "POST",
        "/api/v1/evaluate",
        Some(READER),
        Some(b"{not json".to_vec()),
    )
    .await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::BAD_REQUEST, "bad-body"),
        "{body}"
    );
    // Nothing changed.
    let (_, a) = get(&r, &format!("/api/v1/alerts/{id}")).await;
    assert_eq!(a["state"], "open");
}

#[tokio::test]
async fn rules_are_listed_with_their_status() {
    let (_h, r) = seeded().await;
    let (status, rules) = get(&r, "/api/v1/rules").await;
    assert_eq!(status, StatusCode::OK, "{rules}");
    let items = rules["items"].as_array().unwrap();
    let names: Vec<&str> = items.iter().map(|i| i["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["deny-critical-prod", "audit-high"]);
    assert!(items.iter().all(|i| i["status"] == "active"));
    assert_eq!(items[0]["action"], "deny");
    assert_eq!(items[0]["document"]["kind"], "SecurityRule");
    assert!(rules["version"].as_str().is_some_and(|v| !v.is_empty()));
}

#[tokio::test]
async fn evaluate_is_a_what_if_that_writes_nothing() {
    let (h, r) = seeded().await;
    let before = h.server.alerts().list(&Default::default()).unwrap().len();
    // Images in a namespace, under the rules in force.
    let (status, a) = post(
        &r,
        "/api/v1/evaluate",
        READER,
        json!({"images": [DEBIAN, ALPINE], "namespace": "prod-x"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{a}");
    assert_eq!(a["decision"], "deny");
    assert_eq!(a["images"][0]["rule"], "deny-critical-prod");
    assert_eq!(a["images"][0]["violations"][0]["deciding"], true);
    assert_eq!(a["images"][1]["decision"], "allow");
    // A draft that turns the deny rule off: the audit rule decides.
    let draft = "apiVersion: vulngate.io/v1\nkind: SecurityRule\nmetadata: { name: deny-critical-prod }\nspec:\n  enabled: false\n  action: deny\n  conditions: [{ severity: critical, maxCount: 0 }]\n";
    let (status, a) = post(
        &r,
        "/api/v1/evaluate",
        READER,
        json!({"images": [DEBIAN], "namespace": "prod-x", "rules": draft}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{a}");
    assert_eq!(a["decision"], "audit", "{a}");
    assert_eq!(a["images"][0]["rule"], "audit-high");
    // A manifest: each container, with the workload named.
    let manifest =
        serde_yaml_ng::to_string(&workload("Deployment", "shop", "prod-a", &[DEBIAN])).unwrap();
    let (status, a) = post(
        &r,
        "/api/v1/evaluate",
        READER,
        json!({"manifest": manifest}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{a}");
    assert_eq!(a["decision"], "deny");
    assert_eq!(a["images"][0]["workload"], "Deployment/shop");
    // Bad input.
    for (body, code) in [
        (json!({}), "bad-body"),
        (json!({"images": [""]}), "bad-image"),
        (
            json!({"manifest": "kind: Secret\napiVersion: v1\nmetadata: {name: s}"}),
            "bad-manifest",
        ),
        (json!({"manifest": ": : :"}), "bad-manifest"),
        (
            json!({"images": [DEBIAN], "rules": "kind: SecurityRule\nspec: {bogus: 1}"}),
            "bad-rules",
        ),
        (json!({"images": [DEBIAN], "extra": 1}), "bad-body"),
        (json!({"images": vec![DEBIAN; 65]}), "bad-body"),
    ] {
        let (status, e) = post(&r, "/api/v1/evaluate", READER, body.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {e}");
        assert_eq!(error_code(&e), code, "{body}: {e}");
    }
    // Nothing recorded.
    assert_eq!(
        h.server.alerts().list(&Default::default()).unwrap().len(),
        before
    );
}

#[tokio::test]
async fn the_openapi_document_is_generated_from_the_handlers() {
    let (_h, r) = seeded().await;
    let (status, doc) = call(&r, "GET", "/api/openapi.json", None, None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."), "{doc}");
    let paths = doc["paths"].as_object().unwrap();
    for p in [
        "/api/v1/alerts",
        "/api/v1/alerts/{id}",
        "/api/v1/alerts/{id}/{change}",
        "/api/v1/rules",
        "/api/v1/evaluate",
    ] {
        assert!(paths.contains_key(p), "{p} missing: {:?}", paths.keys());
    }
    let params: Vec<&str> = doc["paths"]["/api/v1/alerts"]["get"]["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    for f in [
        "namespace",
        "workload",
        "image",
        "rule",
        "action",
        "cve",
        "state",
        "since",
        "cursor",
        "limit",
    ] {
        assert!(params.contains(&f), "{f}");
    }
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
}

#[tokio::test]
async fn the_webhook_router_does_not_serve_the_review_api() {
    let (h, _r) = seeded().await;
    for uri in ["/api/v1/alerts", "/api/openapi.json", "/", "/login"] {
        let req = Request::get(uri)
            .header("authorization", format!("Bearer {READER}"))
            .body(Body::empty())
            .unwrap();
        let status = h.server.router().oneshot(req).await.unwrap().status();
        assert_eq!(status, StatusCode::NOT_FOUND, "{uri}");
    }
}

#[tokio::test]
async fn no_review_section_no_review_listener() {
    let h = harness(RULES);
    assert!(h.server.review_router().is_none());
}

#[tokio::test]
async fn a_token_file_too_short_is_a_config_error() {
    let dir = tempfile::tempdir().unwrap();
    let mut rc = review_config(dir.path());
    std::fs::write(dir.path().join("reader.token"), "short").unwrap();
    rc.tokens.truncate(1);
    let mut cfg = config(dir.path(), Some(RULES));
    cfg.review = Some(rc);
    let e = Server::with_source(cfg, TestSource::new())
        .unwrap_err()
        .to_string();
    assert!(e.contains("review.tokens[0].tokenFile"), "{e}");
    assert!(e.contains("at least 16"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_tls_on_its_own_listener() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path(), Some(RULES));
    cfg.listen = "127.0.0.1:0".parse().unwrap();
    cfg.metrics.listen = None;
    cfg.review = Some(review_config(dir.path()));
    let server = Server::with_source(cfg.clone(), TestSource::new()).unwrap();
    admit(&server, &create(&deployment("prod-shop", &[DEBIAN]))).await;
    let tls = vulngate_server::tls::setup(&cfg).unwrap();
    let ca = reqwest::Certificate::from_pem(&std::fs::read(tls.ca_file.clone().unwrap()).unwrap())
        .unwrap();
    let webhook = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let review = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (wport, rport) = (
        webhook.local_addr().unwrap().port(),
        review.local_addr().unwrap().port(),
    );
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(server.with_review_listener(review).serve_on(
        webhook,
        tls.server_config,
        async {
            let _ = stop_rx.await;
        },
    ));
    for http2 in [false, true] {
        let mut b = reqwest::Client::builder()
            .use_rustls_tls()
            .tls_built_in_root_certs(false)
            .add_root_certificate(ca.clone());
        b = if http2 {
            b.http2_prior_knowledge()
        } else {
            b.http1_only()
        };
        let client = b.build().unwrap();
        let resp = client
            .get(format!("https://localhost:{rport}/api/v1/alerts"))
            .bearer_auth(READER)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let page: Value = serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap();
        assert_eq!(page["items"][0]["namespace"], "prod-shop");
        let resp = client
            .get(format!("https://localhost:{rport}/api/v1/alerts"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 401);
        assert!(resp.headers().contains_key("www-authenticate"));
        // The webhook port answers admission only.
        let resp = client
            .get(format!("https://localhost:{wport}/api/v1/alerts"))
            .bearer_auth(READER)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 404);
        // And the review port does not admit.
        let resp = client
            .post(format!("https://localhost:{rport}/validate"))
            .body("{}")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 404);
    }
    stop_tx.send(()).unwrap();
    task.await.unwrap().unwrap();
}
