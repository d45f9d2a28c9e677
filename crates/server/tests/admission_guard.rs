//! The webhook in process: what one review may cost (issue 17 item 5: `maxImagesPerRequest`,
//! linear de-duplication, lookup slots per review and in total) and who may break the glass
//! (item 10: `breakGlass.allowedUsers` / `allowedGroups`).
//!
//! The lookup-slot tests run the real registry client against a small mock HTTP server on
//! 127.0.0.1 (fault injection: slow or silent answers) that counts the requests in flight.

#![allow(clippy::unwrap_used)] // helpers outside #[test] functions

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rstest::rstest;
use serde_json::{json, Value};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use vulngate_server::{AlertAction, AlertFilter, BreakGlassConfig, Config, FailurePolicy, Server};

const BREAK_GLASS: &str = "vulngate.io/break-glass";

/// A review of a Deployment in `ns` running `images` (one container each).
fn many(ns: &str, images: &[String]) -> Value {
    let images: Vec<&str> = images.iter().map(String::as_str).collect();
    create(&deployment(ns, &images))
}

#[rstest]
#[case::unscanned(FailurePolicy::Unscanned, false)]
#[case::deny(FailurePolicy::Deny, false)]
#[case::allow(FailurePolicy::Allow, true)]
#[tokio::test]
async fn ten_thousand_images_are_decided_by_the_failure_policy_with_one_alert(
    #[case] policy: FailurePolicy,
    #[case] allowed: bool,
) {
    let h = harness_with(RULES_BLOCK_UNSCANNED, TestSource::new(), |c| {
        c.failure_policy = policy;
    });
    let images: Vec<String> = (0..10_000)
        .map(|i| format!("registry.example.com/team/app{i}:1"))
        .collect();
    let r = admit(&h.server, &many("prod-shop", &images)).await;
    assert_eq!(r.allowed, allowed);
    let said = if allowed {
        let w = warnings(&r);
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(w[0].ends_with("; allowed by the failure policy"), "{w:?}");
        w[0].clone()
    } else {
        assert_eq!(r.result.code, 403);
        r.result.message.clone()
    };
    assert_eq!(
        said.trim_end_matches("; allowed by the failure policy"),
        "vulngate will not evaluate this Deployment: it names 10000 distinct images, more than \
         maxImagesPerRequest (256)"
    );
    // Nothing looked up, and exactly one alert, carrying the message.
    assert_eq!(h.source.calls(), 0);
    assert_eq!(h.server.metrics().cache_misses(), 0);
    assert_eq!(h.server.metrics().guard().over_image_limit_total(), 1);
    let alerts = h.server.alerts().list(&AlertFilter::default()).unwrap();
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    let a = &alerts[0];
    assert_eq!(
        a.action,
        if allowed {
            AlertAction::Audit
        } else {
            AlertAction::Deny
        }
    );
    assert_eq!(
        a.reason,
        said.trim_end_matches("; allowed by the failure policy")
    );
    assert_eq!(a.user.as_deref(), Some("alice@example.com"));
    assert_eq!(a.namespace.as_deref(), Some("prod-shop"));
}

#[tokio::test]
async fn repeated_images_count_once_against_the_cap() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("rules.yaml"), RULES).unwrap();
    let cfg = Config::parse(
        &format!(
            "dataDir: {}\nrules: {}\nmaxImagesPerRequest: 2\nmaxConcurrentLookupsPerRequest: 2\n\
             maxConcurrentLookups: 4\n",
            dir.path().join("data").display(),
            dir.path().join("rules.yaml").display()
        ),
        "vulngate.yaml",
    )
    .unwrap();
    let source = TestSource::new();
    let server = Server::with_source(cfg, source.clone()).unwrap();
    // 300 containers, two distinct images: under the cap of 2, judged normally.
    let images: Vec<String> = (0..300)
        .map(|i| if i % 2 == 0 { DEBIAN } else { ALPINE }.to_string())
        .collect();
    let r = admit(&server, &many("prod-shop", &images)).await;
    assert!(!r.allowed);
    assert!(
        r.result
            .message
            .starts_with(&format!("{DEBIAN}@{DEBIAN_DIGEST}: denied by rule")),
        "{}",
        r.result.message
    );
    assert_eq!(source.calls(), 2);
    let alerts = server.alerts().list(&AlertFilter::default()).unwrap();
    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0].image, DEBIAN);

    // A third distinct image: over the cap.
    let mut images = images;
    images.push(CENTOS.to_string());
    let r = admit(&server, &many("prod-shop", &images)).await;
    assert!(!r.allowed);
    assert!(
        r.result
            .message
            .contains("names 3 distinct images, more than maxImagesPerRequest (2)"),
        "{}",
        r.result.message
    );
    assert_eq!(source.calls(), 2);

    // Skipped images do not count.
    let h = harness_with(RULES, TestSource::new(), |c| {
        c.max_images_per_request = 1;
        c.skip_images = vec!["registry.example.com/team/centos*".into()];
    });
    let r = admit(
        &h.server,
        &many("prod-shop", &[ALPINE.into(), CENTOS.into()]),
    )
    .await;
    assert!(r.allowed, "{}", r.result.message);
    assert_eq!(h.source.calls(), 1);
}

#[test]
fn limits_are_validated() {
    for key in [
        "maxImagesPerRequest",
        "maxConcurrentLookupsPerRequest",
        "maxConcurrentLookups",
    ] {
        let e = Config::parse(&format!("{key}: 0\n"), "vulngate.yaml")
            .unwrap_err()
            .to_string();
        assert!(e.contains(key) && e.contains("between 1 and 65536"), "{e}");
    }
    let d = Config::default();
    assert_eq!(
        (
            d.max_images_per_request,
            d.max_concurrent_lookups_per_request,
            d.max_concurrent_lookups
        ),
        (256, 8, 64)
    );
}

/// A fault-injection registry: every request is answered `404` after `delay` (never, when
/// `delay` is None), one request per connection; counts the requests and the most in flight.
struct SlowRegistry {
    host: String,
    requests: Arc<AtomicUsize>,
    max_in_flight: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for SlowRegistry {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn slow_registry(delay: Option<Duration>) -> SlowRegistry {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let host = listener.local_addr().unwrap().to_string();
    let requests = Arc::new(AtomicUsize::new(0));
    let max_in_flight = Arc::new(AtomicUsize::new(0));
    let in_flight = Arc::new(AtomicUsize::new(0));
    let (req, max) = (requests.clone(), max_in_flight.clone());
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut conn, _)) = listener.accept().await else {
                return;
            };
            let (req, max, in_flight) = (req.clone(), max.clone(), in_flight.clone());
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match conn.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                req.fetch_add(1, Ordering::SeqCst);
                let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                max.fetch_max(now, Ordering::SeqCst);
                match delay {
                    Some(d) => tokio::time::sleep(d).await,
                    None => std::future::pending::<()>().await,
                }
                in_flight.fetch_sub(1, Ordering::SeqCst);
                let _ = conn
                    .write_all(
                        b"HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\n\
                          Content-Length: 2\r\nConnection: close\r\n\r\n{}",
                    )
                    .await;
            });
        }
    });
    SlowRegistry {
        host,
        requests,
        max_in_flight,
        task,
    }
}

fn registry_server(
    reg: &SlowRegistry,
    tweak: impl FnOnce(&mut Config),
) -> (Server, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path(), Some(RULES));
    cfg.add_insecure_registry(&reg.host);
    cfg.cache.max_entries = 0;
    tweak(&mut cfg);
    (Server::from_config(cfg).unwrap(), dir)
}

fn registry_images(reg: &SlowRegistry, prefix: &str, n: usize) -> Vec<String> {
    (0..n)
        .map(|i| format!("{}/{prefix}{i}:1", reg.host))
        .collect()
}

#[tokio::test]
async fn lookups_per_review_are_bounded() {
    let reg = slow_registry(Some(Duration::from_millis(150))).await;
    let (server, _dir) = registry_server(&reg, |c| c.max_concurrent_lookups_per_request = 3);
    let r = admit(&server, &many("dev", &registry_images(&reg, "app", 12))).await;
    assert!(r.allowed, "{}", r.result.message);
    // Every image was asked for, never more than 3 at once.
    assert!(reg.requests.load(Ordering::SeqCst) >= 12);
    let max = reg.max_in_flight.load(Ordering::SeqCst);
    assert!((1..=3).contains(&max), "{max} requests in flight at once");
}

#[tokio::test]
async fn lookups_across_reviews_are_bounded() {
    let reg = slow_registry(Some(Duration::from_millis(150))).await;
    let (server, _dir) = registry_server(&reg, |c| {
        c.max_concurrent_lookups_per_request = 4;
        c.max_concurrent_lookups = 5;
    });
    let (a, b) = (
        many("dev", &registry_images(&reg, "a", 8)),
        many("dev", &registry_images(&reg, "b", 8)),
    );
    let (ra, rb) = tokio::join!(admit(&server, &a), admit(&server, &b));
    assert!(ra.allowed && rb.allowed);
    assert!(reg.requests.load(Ordering::SeqCst) >= 16);
    let max = reg.max_in_flight.load(Ordering::SeqCst);
    assert!((1..=5).contains(&max), "{max} requests in flight at once");
}

#[tokio::test]
async fn waiting_for_a_lookup_slot_ends_at_the_deadline() {
    // The registry never answers; one slot per review: the second image waits for it until
    // the deadline (3s webhook timeout minus the 1s margin), and says so.
    let reg = slow_registry(None).await;
    let (server, _dir) = registry_server(&reg, |c| {
        c.max_concurrent_lookups_per_request = 1;
        c.failure_policy = FailurePolicy::Allow;
    });
    let started = std::time::Instant::now();
    let r = admit_uri(
        &server,
        "/validate?timeout=3s",
        &many("dev", &registry_images(&reg, "app", 2)),
    )
    .await;
    assert!(started.elapsed() < Duration::from_secs(3));
    assert!(r.allowed);
    let w = warnings(&r);
    let step = "waiting for one of the review's 1 registry lookup slots \
                (maxConcurrentLookupsPerRequest) did not finish before the admission deadline \
                of 2s (webhook timeout 3s minus the deadline margin 1s); allowed by the failure \
                policy";
    assert!(w.iter().any(|l| l.ends_with(step)), "{w:?}");
    assert_eq!(reg.requests.load(Ordering::SeqCst), 1);
}

/// `review` as sent by `user` in `groups`, with the break-glass annotation.
fn break_glass_review(user: &str, groups: &[&str]) -> Value {
    let mut d = deployment("prod-shop", &[DEBIAN, ALPINE]);
    d["metadata"]["annotations"] = json!({ BREAK_GLASS: "INC-42 outage fix" });
    let mut r = create(&d);
    r["request"]["userInfo"] = json!({ "username": user, "groups": groups });
    r
}

fn break_glass(users: &[&str], groups: &[&str]) -> impl FnOnce(&mut Config) {
    let cfg = BreakGlassConfig {
        allowed_users: users.iter().map(|s| s.to_string()).collect(),
        allowed_groups: groups.iter().map(|s| s.to_string()).collect(),
        ..BreakGlassConfig::default()
    };
    move |c: &mut Config| c.break_glass = Some(cfg)
}

#[rstest]
#[case::user(&["alice@example.com"], &[], "alice@example.com", &["system:authenticated"])]
#[case::group(&[], &["sre"], "bob@example.com", &["system:authenticated", "sre"])]
#[tokio::test]
async fn allowed_user_breaks_the_glass_with_an_alert(
    #[case] users: &[&str],
    #[case] groups: &[&str],
    #[case] user: &str,
    #[case] user_groups: &[&str],
) {
    let h = harness_with(RULES, TestSource::new(), break_glass(users, groups));
    // The store keeps times to the millisecond: a second of slack below.
    let before = chrono::Utc::now() - chrono::Duration::seconds(1);
    let r = admit(&h.server, &break_glass_review(user, user_groups)).await;
    assert!(r.allowed, "{}", r.result.message);
    assert_eq!(r.audit_annotations["decision"], "break-glass");
    let alerts = h.server.alerts().list(&AlertFilter::default()).unwrap();
    assert_eq!(alerts.len(), 2, "{alerts:?}"); // one per image
    for a in &alerts {
        assert_eq!(a.action, AlertAction::BreakGlass);
        assert_eq!(a.user.as_deref(), Some(user));
        assert_eq!(a.break_glass.as_deref(), Some("INC-42 outage fix"));
        assert!(a.time >= before && a.time <= chrono::Utc::now());
    }
    let g = h.server.metrics().guard();
    assert_eq!(
        (
            g.break_glass_total("accepted"),
            g.break_glass_total("refused")
        ),
        (1, 0)
    );
}

#[rstest]
#[case::other_user(&["bob@example.com"], &["sre"])]
#[case::nobody_by_default(&[], &[])]
#[tokio::test]
async fn other_users_are_refused_and_judged_normally(
    #[case] users: &[&str],
    #[case] groups: &[&str],
) {
    let h = harness_with(RULES, TestSource::new(), break_glass(users, groups));
    let r = admit(
        &h.server,
        &break_glass_review("alice@example.com", &["system:authenticated", "dev"]),
    )
    .await;
    // Deny stays deny, with the refusal in the warnings.
    assert!(!r.allowed);
    assert_eq!(r.result.code, 403);
    assert!(r
        .result
        .message
        .contains("denied by rule \"deny-critical-prod\""));
    assert_eq!(r.audit_annotations["decision"], "deny");
    let w = warnings(&r);
    assert_eq!(
        w[0],
        "vulngate: break-glass annotation vulngate.io/break-glass refused for user \
         \"alice@example.com\": not in breakGlass.allowedUsers or breakGlass.allowedGroups; \
         the request is judged normally"
    );
    let alerts = h.server.alerts().list(&AlertFilter::default()).unwrap();
    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0].action, AlertAction::Deny);
    assert_eq!(alerts[0].break_glass, None);
    let g = h.server.metrics().guard();
    assert_eq!(
        (
            g.break_glass_total("accepted"),
            g.break_glass_total("refused")
        ),
        (0, 1)
    );
    // The default configuration section names nobody.
    assert_eq!(
        Config::parse("breakGlass: {}\n", "x").unwrap().break_glass,
        Some(BreakGlassConfig::default())
    );
    assert!(BreakGlassConfig::default().allowed_users.is_empty());
    assert!(BreakGlassConfig::default().allowed_groups.is_empty());
}

#[tokio::test]
async fn groups_reach_the_group_scope_field() {
    // `group` scope (docs/rules.md, Who deploys) reads userInfo.groups.
    let rules = r#"
apiVersion: vulngate.io/v1
kind: SecurityRule
metadata: { name: deny-contractors }
spec:
  action: deny
  scope: [{ field: group, op: equals, value: contractors }]
  conditions: [{ severity: critical, maxCount: 0 }]
"#;
    let h = harness(rules);
    let mut r = create(&deployment("dev", &[DEBIAN]));
    r["request"]["userInfo"]["groups"] = json!(["system:authenticated", "contractors"]);
    assert!(!admit(&h.server, &r).await.allowed);
    r["request"]["userInfo"]["groups"] = json!(["system:authenticated"]);
    assert!(admit(&h.server, &r).await.allowed);
}
