//! Kubernetes tokens on the review listener (`review.kubernetes`, issue 19) against a real API
//! server: tests/crd-apiserver (k8s.io/apiextensions-apiserver + etcd) serving TokenReview from
//! the upstream static token file authenticator and SubjectAccessReview from RBAC rules
//! (`tests/crd-apiserver/reviews.go`). A namespace's team sees and counts only its alerts; a
//! cluster-wide reader sees all; `update` is needed to acknowledge, and the history names the
//! Kubernetes user; unknown and oversized tokens are 401 (oversized without a review); answers
//! are cached; static tokens keep working; an API server that is down is a 503.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::Path;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::Router;
use serde_json::Value;
use support::crd_apiserver::CrdApiServer;
use support::*;
use tower::ServiceExt;
use vulngate_server::config::{KubernetesConfig, RulesFrom};
use vulngate_server::review::{KubernetesAuthConfig, ReviewConfig, Role, TokenConfig};
use vulngate_server::Server;

const STATIC_READER: &str = "static-reader-token-0123456789";
/// team-a: get/list alerts in prod-shop.
const ALICE: &str = "alice-token-0123456789abcdef";
/// bob: get/list/update alerts in prod-shop.
const BOB: &str = "bob-token-0123456789abcdef";
/// auditors: get/list alerts and securityrules everywhere.
const CAROL: &str = "carol-token-0123456789abcdef";

const TOKENS_CSV: &str = "\
alice-token-0123456789abcdef,alice,uid-alice,\"team-a\"
bob-token-0123456789abcdef,bob,uid-bob,\"team-a-reviewers\"
carol-token-0123456789abcdef,carol,uid-carol,\"auditors,system:authenticated\"
";

const POLICY: &str = r#"
{"group": "team-a", "namespace": "prod-shop", "rules": [{"apiGroups": ["vulngate.io"], "resources": ["alerts"], "verbs": ["get", "list"]}]}
{"user": "bob", "namespace": "prod-shop", "rules": [{"apiGroups": ["vulngate.io"], "resources": ["alerts"], "verbs": ["get", "list", "update"]}]}
{"group": "auditors", "rules": [{"apiGroups": ["vulngate.io"], "resources": ["alerts", "securityrules"], "verbs": ["get", "list"]}]}
"#;

fn api_server(dir: &Path) -> CrdApiServer {
    std::fs::write(dir.join("tokens.csv"), TOKENS_CSV).unwrap();
    std::fs::write(dir.join("policy.jsonl"), POLICY).unwrap();
    CrdApiServer::start_with_args(
        &dir.join("api"),
        &[
            format!("--token-auth-file={}", dir.join("tokens.csv").display()),
            format!(
                "--access-review-policy-file={}",
                dir.join("policy.jsonl").display()
            ),
        ],
    )
}

/// A server whose review listener takes the static reader token and Kubernetes tokens, with
/// three alerts: prod-shop (deny), dev (audit), prod-tools (deny).
async fn server(api: &CrdApiServer, dir: &Path) -> (Harness, Router) {
    std::fs::write(dir.join("reader.token"), STATIC_READER).unwrap();
    let kcfg = KubernetesConfig {
        kubeconfig: Some(api.kubeconfig_path.clone()),
        rules_from: RulesFrom::Files,
        policy_reports: false,
        events: false,
        pull_secrets: false,
        watch_owners: false,
        rescan_interval: Duration::ZERO,
        ..Default::default()
    };
    let review = ReviewConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        tokens: vec![TokenConfig {
            name: "ci-reader".into(),
            role: Role::Reader,
            token_file: dir.join("reader.token"),
        }],
        kubernetes: KubernetesAuthConfig {
            enabled: true,
            timeout: Duration::from_secs(3),
            ..Default::default()
        },
        ..ReviewConfig::default()
    };
    let k = kcfg.clone();
    let h = harness_with(RULES, TestSource::new(), move |c| {
        c.review = Some(review);
        c.kubernetes = Some(k);
    });
    let client = vulngate_server::cluster::client(&kcfg).await.unwrap();
    let Harness {
        server,
        dir: hdir,
        source,
    } = h;
    let server: Server = server.with_kubernetes(client).unwrap();
    let h = Harness {
        server,
        dir: hdir,
        source,
    };
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

async fn send(router: &Router, req: Request<Body>) -> (StatusCode, Value, Option<String>) {
    let resp = router.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let cookie = resp
        .headers()
        .get("set-cookie")
        .map(|v| v.to_str().unwrap().to_string());
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap();
    let v = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    (status, v, cookie)
}

async fn call(router: &Router, method: &str, uri: &str, token: &str) -> (StatusCode, Value) {
    let req = Request::builder()
        .method(method)
        .uri(uri)
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json")
        .body(Body::from(if method == "POST" { "{}" } else { "" }))
        .unwrap();
    let (s, v, _) = send(router, req).await;
    (s, v)
}

fn namespaces(page: &Value) -> Vec<String> {
    let mut ns: Vec<String> = page["items"]
        .as_array()
        .unwrap_or_else(|| panic!("not a page: {page}"))
        .iter()
        .map(|a| a["namespace"].as_str().unwrap().to_string())
        .collect();
    ns.sort();
    ns
}

fn id_in(page: &Value, ns: &str) -> String {
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["namespace"] == ns)
        .unwrap_or_else(|| panic!("no alert in {ns}: {page}"))["id"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Logs in to the console with `token`; the session cookie.
async fn login(router: &Router, token: &str) -> String {
    let req = Request::post("/login")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Body::from(format!("token={token}")))
        .unwrap();
    let (status, body, cookie) = send(router, req).await;
    assert_eq!(status, StatusCode::SEE_OTHER, "login: {body}");
    let cookie = cookie.expect("a session cookie");
    cookie.split(';').next().unwrap().to_string()
}

async fn console_counts(router: &Router, cookie: &str, query: &str) -> (StatusCode, Value) {
    let req = Request::get(format!("/counts{query}"))
        .header("cookie", cookie)
        .body(Body::empty())
        .unwrap();
    let (s, v, _) = send(router, req).await;
    (s, v)
}

fn total(counts: &Value) -> u64 {
    counts
        .as_object()
        .unwrap_or_else(|| panic!("not counts: {counts}"))
        .values()
        .map(|n| n.as_u64().unwrap())
        .sum()
}

#[tokio::test]
async fn a_namespace_team_sees_counts_and_changes_only_what_its_rbac_allows() {
    let dir = tempfile::tempdir().unwrap();
    let api = api_server(dir.path());
    let (_h, r) = server(&api, dir.path()).await;

    // Static tokens still work, without any review.
    let (s, all) = call(&r, "GET", "/api/v1/alerts", STATIC_READER).await;
    assert_eq!(s, StatusCode::OK, "{all}");
    assert_eq!(namespaces(&all), ["dev", "prod-shop", "prod-tools"]);
    assert_eq!(api.review_counters(), (0, 0), "a static token is no review");
    let shop = id_in(&all, "prod-shop");
    let dev = id_in(&all, "dev");

    // team-a lists only prod-shop's alert.
    let (s, page) = call(&r, "GET", "/api/v1/alerts", ALICE).await;
    assert_eq!(s, StatusCode::OK, "{page}");
    assert_eq!(namespaces(&page), ["prod-shop"]);
    let (tokens, reviews) = api.review_counters();
    assert_eq!(tokens, 1, "one TokenReview");
    // Cluster-wide list, then one per namespace of the stored alerts.
    assert_eq!(reviews, 4, "SubjectAccessReviews");
    // The same request again: answered from the caches.
    let (s, again) = call(&r, "GET", "/api/v1/alerts", ALICE).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(again["items"], page["items"]);
    assert_eq!(
        api.review_counters(),
        (1, 4),
        "the second request reviewed again"
    );

    // An explicit namespace outside the allowed ones: 403; inside: that namespace.
    let (s, e) = call(&r, "GET", "/api/v1/alerts?namespace=dev", ALICE).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{e}");
    assert!(
        e["error"]["message"].as_str().unwrap().contains("\"dev\""),
        "{e}"
    );
    let (s, p) = call(&r, "GET", "/api/v1/alerts?namespace=prod-shop", ALICE).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(namespaces(&p), ["prod-shop"]);

    // One alert: its own namespace's, yes; another namespace's: as if there were none.
    let (s, a) = call(&r, "GET", &format!("/api/v1/alerts/{shop}"), ALICE).await;
    assert_eq!(s, StatusCode::OK, "{a}");
    let (s, e) = call(&r, "GET", &format!("/api/v1/alerts/{dev}"), ALICE).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{e}");
    let (_, missing) = call(
        &r,
        "GET",
        "/api/v1/alerts/0190c2d1-aaaa-7bbb-8ccc-0123456789ab",
        ALICE,
    )
    .await;
    assert_eq!(e["error"]["code"], missing["error"]["code"]);

    // Rules and what-if need list on securityrules.
    let (s, e) = call(&r, "GET", "/api/v1/rules", ALICE).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{e}");
    let (s, rules) = call(&r, "GET", "/api/v1/rules", CAROL).await;
    assert_eq!(s, StatusCode::OK, "{rules}");

    // get/list only: no acknowledging.
    let ack = format!("/api/v1/alerts/{shop}/acknowledge");
    let (s, e) = call(&r, "POST", &ack, ALICE).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{e}");
    assert!(
        e["error"]["message"].as_str().unwrap().contains("update"),
        "{e}"
    );
    // bob may update in prod-shop (not in dev: he cannot even see that one).
    let (s, a) = call(&r, "POST", &ack, BOB).await;
    assert_eq!(s, StatusCode::OK, "{a}");
    assert_eq!(a["state"], "acknowledged", "{a}");
    let (s, e) = call(
        &r,
        "POST",
        &format!("/api/v1/alerts/{dev}/acknowledge"),
        BOB,
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{e}");
    let (_, a) = call(&r, "GET", &format!("/api/v1/alerts/{shop}"), STATIC_READER).await;
    let history = a["history"].as_array().unwrap_or_else(|| panic!("{a}"));
    assert_eq!(history.len(), 1, "{a}");
    assert_eq!(history[0]["by"], "bob", "{a}");

    // The cluster-wide reader sees everything.
    let (s, page) = call(&r, "GET", "/api/v1/alerts", CAROL).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(namespaces(&page), ["dev", "prod-shop", "prod-tools"]);

    // Console sessions from Kubernetes tokens: counts restricted as the list is.
    let alice = login(&r, ALICE).await;
    let (s, c) = console_counts(&r, &alice, "").await;
    assert_eq!(s, StatusCode::OK, "{c}");
    assert_eq!(total(&c), 1, "team-a counts prod-shop only: {c}");
    assert_eq!(c["acknowledged"], 1, "{c}");
    let (s, _) = console_counts(&r, &alice, "?namespace=prod-tools").await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let carol = login(&r, CAROL).await;
    let (_, c) = console_counts(&r, &carol, "").await;
    assert_eq!(total(&c), 3, "{c}");
    let req = Request::get("/")
        .header("cookie", &alice)
        .body(Body::empty())
        .unwrap();
    let (s, html, _) = send(&r, req).await;
    assert_eq!(s, StatusCode::OK);
    let html = html.as_str().unwrap();
    assert!(html.contains("alice (kubernetes)"), "{html}");
    assert!(
        !html.contains("prod-tools"),
        "another namespace on team-a's page"
    );

    // Unknown tokens: the 401 of a wrong static token, reviewed once, then cached.
    let (tokens_before, _) = api.review_counters();
    let (s, unknown) = call(&r, "GET", "/api/v1/alerts", "nobody-token-0123456789").await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{unknown}");
    let (_, wrong_static) = call(&r, "GET", "/api/v1/alerts", &STATIC_READER[1..]).await;
    assert_eq!(unknown, wrong_static);
    assert!(!unknown.to_string().contains("nobody-token"), "{unknown}");
    // One review each for the unknown token and the wrong static one; the repeat is cached.
    call(&r, "GET", "/api/v1/alerts", "nobody-token-0123456789").await;
    assert_eq!(
        api.review_counters().0,
        tokens_before + 2,
        "refusals are cached too"
    );

    // An oversized token: 401 without a review.
    let long = "x".repeat(9000);
    let (s, e) = call(&r, "GET", "/api/v1/alerts", &long).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{e}");
    assert_eq!(
        api.review_counters().0,
        tokens_before + 2,
        "an 8 KiB+ token was sent"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_server_that_is_down_is_a_503_not_a_401() {
    let dir = tempfile::tempdir().unwrap();
    let mut api = api_server(dir.path());
    let (_h, r) = server(&api, dir.path()).await;
    let (s, _) = call(&r, "GET", "/api/v1/alerts", ALICE).await;
    assert_eq!(s, StatusCode::OK);
    tokio::task::block_in_place(|| api.stop_apiserver());

    for token in [BOB, "nobody-token-0123456789"] {
        let (s, e) = call(&r, "GET", "/api/v1/alerts", token).await;
        assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{e}");
        assert_eq!(e["error"]["code"], "kubernetes-unavailable", "{e}");
        assert!(
            e["error"]["message"]
                .as_str()
                .unwrap()
                .contains("TokenReview"),
            "{e}"
        );
        assert!(!e.to_string().contains(token), "{e}");
    }
    // Static tokens do not need the API server.
    let (s, _) = call(&r, "GET", "/api/v1/alerts", STATIC_READER).await;
    assert_eq!(s, StatusCode::OK);
}
