//! The PostgreSQL alert store against a real PostgreSQL 15 server (see support/postgres.rs),
//! side by side with the SQLite store: same results, same schema, concurrent migrations,
//! reconnection after a server restart, the webhook with the server down, and the password
//! never in a message.

#[path = "support/postgres.rs"]
mod pg;
mod support;

use std::sync::{Arc, Barrier};

use chrono::{DateTime, TimeZone, Utc};
use pg::{Postgres, PASSWORD};
use rstest::rstest;
use support::*;
use vulngate_core::engine::SeverityCounts;
use vulngate_core::Outcome;
use vulngate_server::alerts::PostgresUrl;
use vulngate_server::{
    Alert, AlertAction, AlertBackend, AlertFilter, AlertStore, FailurePolicy, PostgresBackend,
    Server, SqliteBackend, StoreUrl,
};

fn t(secs: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(1_780_000_000 + secs, 0)
        .single()
        .expect("valid time")
}

fn alert(id: &str, secs: i64, action: AlertAction, ns: &str, rule: &str, image: &str) -> Alert {
    Alert {
        id: id.into(),
        time: t(secs),
        action,
        origin: Default::default(),
        decision: match action {
            AlertAction::Audit => Outcome::Audit,
            _ => Outcome::Deny,
        },
        cluster: Some("c1".into()),
        namespace: (!ns.is_empty()).then(|| ns.to_string()),
        kind: "Deployment".into(),
        name: Some("web".into()),
        operation: "CREATE".into(),
        user: Some("alice".into()),
        request_uid: format!("uid-{id}"),
        image: image.into(),
        digest: None,
        rule: (!rule.is_empty()).then(|| rule.to_string()),
        rule_snapshot: Some(std::sync::Arc::new(serde_json::json!({"name": rule}))),
        rules_version: Some("v1".into()),
        vulnerability: None,
        counts: SeverityCounts::default(),
        report: None,
        unscanned: None,
        reason: format!("reason {id}"),
        dry_run: id == "a3",
        break_glass: (action == AlertAction::BreakGlass).then(|| "INC-1".to_string()),
        workload_kind: None,
        workload_name: None,
        count: 1,
        last_seen: None,
        kinds: Vec::new(),
        explanation: Default::default(),
        review: Default::default(),
    }
}

fn sample() -> Vec<Alert> {
    use AlertAction::*;
    vec![
        alert(
            "a1",
            10,
            Deny,
            "prod",
            "deny-critical",
            "registry.example.com/shop/api:1.0",
        ),
        alert(
            "a2",
            20,
            Audit,
            "dev",
            "audit-high",
            "registry.example.com/shop/web:2.0",
        ),
        alert(
            "a3",
            30,
            Deny,
            "prod",
            "deny-critical",
            "docker.io/library/nginx:1.25",
        ),
        alert(
            "a4",
            30,
            BreakGlass,
            "prod",
            "deny-critical",
            "registry.example.com/shop/api:1.1",
        ),
        alert("a5", 40, Audit, "", "", "quay.io/team/tool:3"),
        // Same second as a3/a4: ordered by id.
        alert(
            "a0",
            30,
            Audit,
            "dev",
            "audit-high",
            "registry.example.com/shop/API:9",
        ),
    ]
}

/// (name, filter, expected ids newest first)
fn cases() -> Vec<(&'static str, AlertFilter, Vec<&'static str>)> {
    vec![
        (
            "all",
            AlertFilter::default(),
            vec!["a5", "a4", "a3", "a0", "a2", "a1"],
        ),
        (
            "since (inclusive)",
            AlertFilter {
                since: Some(t(30)),
                ..Default::default()
            },
            vec!["a5", "a4", "a3", "a0"],
        ),
        (
            "action deny",
            AlertFilter {
                action: Some(AlertAction::Deny),
                ..Default::default()
            },
            vec!["a3", "a1"],
        ),
        (
            "action break-glass",
            AlertFilter {
                action: Some(AlertAction::BreakGlass),
                ..Default::default()
            },
            vec!["a4"],
        ),
        (
            "namespace",
            AlertFilter {
                namespace: Some("dev".into()),
                ..Default::default()
            },
            vec!["a0", "a2"],
        ),
        (
            "rule",
            AlertFilter {
                rule: Some("deny-critical".into()),
                ..Default::default()
            },
            vec!["a4", "a3", "a1"],
        ),
        (
            "image substring, case-sensitive",
            AlertFilter {
                image: Some("shop/api".into()),
                ..Default::default()
            },
            vec!["a4", "a1"],
        ),
        (
            "image with LIKE wildcards is literal",
            AlertFilter {
                image: Some("shop_api".into()),
                ..Default::default()
            },
            vec![],
        ),
        (
            "combined",
            AlertFilter {
                since: Some(t(20)),
                action: Some(AlertAction::Deny),
                namespace: Some("prod".into()),
                rule: Some("deny-critical".into()),
                image: Some("nginx".into()),
                limit: None,
                origin: None,
                ..Default::default()
            },
            vec!["a3"],
        ),
        (
            "limit",
            AlertFilter {
                limit: Some(2),
                ..Default::default()
            },
            vec!["a5", "a4"],
        ),
        (
            "nothing matches",
            AlertFilter {
                namespace: Some("nope".into()),
                ..Default::default()
            },
            vec![],
        ),
    ]
}

fn check_backend(name: &str, b: &dyn AlertBackend) {
    let all = sample();
    // Two transactions: one alert, then the rest.
    b.record(&all[..1]).expect("record one");
    b.record(&all[1..]).expect("record the rest");
    for (case, filter, want) in cases() {
        let got: Vec<String> = b
            .list(&filter)
            .unwrap_or_else(|e| panic!("{name} {case}: {e}"))
            .into_iter()
            .map(|a| a.id)
            .collect();
        assert_eq!(got, want, "{name}: {case}");
    }
    for a in &all {
        assert_eq!(
            b.get(&a.id).expect("get").as_ref(),
            Some(a),
            "{name}: get {}",
            a.id
        );
    }
    assert_eq!(b.get("missing").expect("get"), None, "{name}");
    // All or nothing: a batch with a duplicate id records nothing.
    let batch = vec![
        alert("b1", 50, AlertAction::Deny, "prod", "r", "x:1"),
        alert("a1", 50, AlertAction::Deny, "prod", "r", "x:1"),
    ];
    assert!(b.record(&batch).is_err(), "{name}: duplicate id accepted");
    assert_eq!(
        b.get("b1").expect("get"),
        None,
        "{name}: partial batch kept"
    );
}

/// A rollout's alert of `kind`, `secs` after t(0), for de-duplication.
fn rollout_alert(id: &str, secs: i64, kind: &str, digest: &str) -> Alert {
    let mut a = alert(
        id,
        secs,
        AlertAction::Deny,
        "shop",
        "deny-web",
        "r.io/app:1",
    );
    a.kind = kind.into();
    a.name = Some(format!("web-{kind}"));
    a.workload_kind = Some("Deployment".into());
    a.workload_name = Some("web".into());
    a.digest = Some(digest.into());
    a.dry_run = false;
    a.kinds = vec![kind.into()];
    a
}

const DAY: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// De-duplication as both stores do it: one alert per key within the window, counted; the
/// first keeps its id; a replay of the same alerts counts nothing twice; a repeat's id finds
/// the alert that absorbed it; outside the window, or with another digest, a new alert.
fn check_dedup(name: &str, b: &dyn AlertBackend) {
    let d1 = "sha256:1111";
    let mut rollout = vec![
        rollout_alert("d-1", 0, "Deployment", d1),
        rollout_alert("d-2", 1, "ReplicaSet", d1),
    ];
    rollout.extend((0..100).map(|i| rollout_alert(&format!("d-p{i:03}"), 2 + i, "Pod", d1)));
    // Two transactions, as the writer's group commit may cut them.
    assert_eq!(
        b.record_merged(&rollout[..2], DAY).expect("store"),
        2,
        "{name}"
    );
    assert_eq!(
        b.record_merged(&rollout[2..], DAY).expect("store"),
        100,
        "{name}"
    );
    let all = |b: &dyn AlertBackend| {
        b.list(&AlertFilter {
            limit: Some(1000),
            ..Default::default()
        })
        .expect("store")
    };
    let got = all(b);
    assert_eq!(got.len(), 1, "{name}: {got:#?}");
    assert_eq!(got[0].id, "d-1", "{name}");
    assert_eq!(got[0].count, 102, "{name}");
    assert_eq!(got[0].last_seen, Some(t(101)), "{name}");
    assert_eq!(
        got[0].kinds,
        vec!["Deployment", "ReplicaSet", "Pod"],
        "{name}"
    );
    // A replay (the journal's) of what is stored: nothing counted twice.
    assert_eq!(b.record_merged(&rollout, DAY).expect("store"), 0, "{name}");
    assert_eq!(all(b)[0].count, 102, "{name}");
    assert_eq!(
        b.get("d-p042").expect("store").expect("store").id,
        "d-1",
        "{name}"
    );
    // Outside the window: a new alert, which absorbs its own repeats.
    let later = vec![
        rollout_alert("d-3", 24 * 3600 + 1, "Pod", d1),
        rollout_alert("d-4", 24 * 3600 + 2, "Pod", d1),
        // Another digest (a new image): another alert.
        rollout_alert("d-5", 24 * 3600 + 3, "Pod", "sha256:2222"),
    ];
    b.record_merged(&later, DAY).expect("store");
    let mut got: Vec<(String, u64)> = all(b).into_iter().map(|a| (a.id, a.count)).collect();
    got.sort();
    assert_eq!(
        got,
        vec![
            ("d-1".to_string(), 102),
            ("d-3".to_string(), 2),
            ("d-5".to_string(), 1)
        ],
        "{name}"
    );
    // One batch out of time order: each alert is absorbed by the earliest alert of its key
    // within its own window, whatever came before it in the batch. e-1 (2 days + 12 s) has
    // nothing within a day: new. e-2 (2 days + 1 s, earlier) reaches both d-3 (1 day + 1 s) and
    // e-1: absorbed by d-3, the earlier. e-3 (2 days + 20 s) no longer reaches d-3: into e-1.
    let shuffled = vec![
        rollout_alert("e-1", 2 * 24 * 3600 + 12, "Pod", d1),
        rollout_alert("e-2", 2 * 24 * 3600 + 1, "Pod", d1),
        rollout_alert("e-3", 2 * 24 * 3600 + 20, "Pod", d1),
        rollout_alert("e-4", 2 * 24 * 3600 + 21, "Pod", d1),
    ];
    assert_eq!(b.record_merged(&shuffled, DAY).expect("store"), 4, "{name}");
    let mut got: Vec<(String, u64)> = all(b).into_iter().map(|a| (a.id, a.count)).collect();
    got.sort();
    assert_eq!(
        got,
        vec![
            ("d-1".to_string(), 102),
            ("d-3".to_string(), 3),
            ("d-5".to_string(), 1),
            ("e-1".to_string(), 3)
        ],
        "{name}"
    );
    assert_eq!(
        b.get("e-2").expect("store").expect("e-2").id,
        "d-3",
        "{name}"
    );
    assert_eq!(
        b.get("e-4").expect("store").expect("e-4").id,
        "e-1",
        "{name}"
    );
}

#[test]
fn dedup_in_both_stores() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sqlite = SqliteBackend::open(&dir.path().join("alerts.db")).expect("sqlite");
    check_dedup("sqlite", &sqlite);
    let server = Postgres::start();
    let url = PostgresUrl::parse(&server.url()).expect("url");
    let postgres = PostgresBackend::open(&url, Some(&server.password_file())).expect("postgres");
    check_dedup("postgres", &postgres);
}

/// Two replicas writing the same rollout's alerts at once into one database: one alert.
#[test]
fn concurrent_replicas_make_one_alert() {
    let server = Postgres::start();
    let url = PostgresUrl::parse(&server.url()).expect("url");
    let pw = server.password_file();
    let barrier = Arc::new(Barrier::new(2));
    let handles: Vec<_> = (0..2)
        .map(|r| {
            let (url, pw, barrier) = (url.clone(), pw.clone(), barrier.clone());
            std::thread::spawn(move || {
                let b = PostgresBackend::open(&url, Some(&pw)).expect("open");
                barrier.wait();
                for i in 0..20 {
                    let a = rollout_alert(&format!("r{r}-{i}"), i, "Pod", "sha256:1111");
                    b.record_merged(&[a], DAY).expect("record");
                }
            })
        })
        .collect();
    for h in handles {
        h.join().expect("replica");
    }
    let b = PostgresBackend::open(&url, Some(&pw)).expect("open");
    let got = b.list(&AlertFilter::default()).expect("list");
    assert_eq!(got.len(), 1, "{got:#?}");
    assert_eq!(got[0].count, 40);
}

#[test]
fn same_results_in_both_stores() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sqlite = SqliteBackend::open(&dir.path().join("alerts.db")).expect("sqlite");
    check_backend("sqlite", &sqlite);

    let server = Postgres::start();
    let url = PostgresUrl::parse(&server.url()).expect("url");
    let postgres = PostgresBackend::open(&url, Some(&server.password_file())).expect("postgres");
    check_backend("postgres", &postgres);

    // And the two stores hold the same alerts.
    let f = AlertFilter {
        limit: Some(1000),
        ..Default::default()
    };
    assert_eq!(
        sqlite.list(&f).expect("list"),
        postgres.list(&f).expect("list")
    );
    // The namespaces of the stored alerts (the review listener's Kubernetes callers), in name
    // order and bounded, the same in both.
    let all = sqlite.namespaces(100).expect("namespaces");
    assert!(all.len() >= 2, "{all:?}");
    assert!(all.windows(2).all(|w| w[0] < w[1]), "{all:?}");
    assert_eq!(postgres.namespaces(100).expect("namespaces"), all);
    assert_eq!(postgres.namespaces(1).expect("namespaces"), all[..1]);
    assert_eq!(sqlite.namespaces(1).expect("namespaces"), all[..1]);
}

/// Column names of a table, in order: SQLite via PRAGMA, PostgreSQL via information_schema
/// (queried through the `postgres` binary's single-user mode would need the server stopped;
/// the `psql` client is not among the test tools, so the backend's own connection is used
/// through a raw tokio-postgres client here).
async fn pg_columns(url: &str, table: &str) -> Vec<String> {
    let mut cfg: tokio_postgres::Config = url.parse().expect("config");
    cfg.password(PASSWORD);
    let (client, conn) = cfg.connect(tokio_postgres::NoTls).await.expect("connect");
    tokio::spawn(conn);
    client
        .query(
            "SELECT column_name::TEXT FROM information_schema.columns \
             WHERE table_name = $1 ORDER BY ordinal_position",
            &[&table],
        )
        .await
        .expect("columns")
        .iter()
        .map(|r| r.get(0))
        .collect()
}

fn sqlite_columns(path: &std::path::Path, table: &str) -> Vec<String> {
    let conn = rusqlite_open(path);
    let mut stmt = conn
        .prepare(&format!(
            "SELECT name FROM pragma_table_info('{table}') ORDER BY cid"
        ))
        .expect("prepare");
    stmt.query_map([], |r| r.get::<_, String>(0))
        .expect("query")
        .map(|r| r.expect("row"))
        .collect()
}

fn rusqlite_open(path: &std::path::Path) -> rusqlite::Connection {
    rusqlite::Connection::open(path).expect("open sqlite")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schema_is_the_same_in_both_stores() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("alerts.db");
    drop(SqliteBackend::open(&db).expect("sqlite"));
    let server = Postgres::start();
    let url = PostgresUrl::parse(&server.url()).expect("url");
    drop(PostgresBackend::open(&url, Some(&server.password_file())).expect("postgres"));
    for table in [
        "alerts",
        "alert_reviews",
        "alert_vulns",
        "alert_repeats",
        "notify_outbox",
        "alert_images",
        "schema_migrations",
    ] {
        let s = sqlite_columns(&db, table);
        assert!(!s.is_empty(), "{table}");
        assert_eq!(s, pg_columns(&server.url(), table).await, "{table}");
    }
}

#[test]
fn two_replicas_migrating_a_fresh_database_at_once_both_succeed() {
    let server = Postgres::start();
    let url = PostgresUrl::parse(&server.url()).expect("url");
    let pw = server.password_file();
    for round in 0..3 {
        // Round 0 migrates a fresh database; later rounds find it migrated.
        let barrier = Arc::new(Barrier::new(4));
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let (url, pw, barrier) = (url.clone(), pw.clone(), barrier.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    PostgresBackend::open(&url, Some(&pw))
                })
            })
            .collect();
        let backends: Vec<PostgresBackend> = handles
            .into_iter()
            .map(|h| {
                h.join()
                    .expect("thread")
                    .unwrap_or_else(|e| panic!("round {round}: {e}"))
            })
            .collect();
        let id = format!("r{round}");
        backends[0]
            .record(&[alert(&id, round, AlertAction::Deny, "prod", "r", "x:1")])
            .expect("record");
        assert!(backends[3].get(&id).expect("get").is_some());
    }
    // Each migration applied exactly once.
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let versions: Vec<i64> = rt.block_on(async {
        let mut cfg: tokio_postgres::Config = server.url().parse().expect("config");
        cfg.password(PASSWORD);
        let (client, conn) = cfg.connect(tokio_postgres::NoTls).await.expect("connect");
        tokio::spawn(conn);
        client
            .query(
                "SELECT version FROM schema_migrations ORDER BY version",
                &[],
            )
            .await
            .expect("versions")
            .iter()
            .map(|r| r.get(0))
            .collect()
    });
    assert_eq!(
        versions,
        vec![1, 2, 3, 4, 5, 6, 7, 8],
        "every migration applied exactly once"
    );
}

#[test]
fn reconnects_after_the_server_restarts() {
    let mut server = Postgres::start();
    let url = PostgresUrl::parse(&server.url()).expect("url");
    let store = AlertStore::from_backend(Arc::new(
        PostgresBackend::open(&url, Some(&server.password_file())).expect("postgres"),
    ));
    let mk = |id: &str| alert(id, 1, AlertAction::Deny, "prod", "r", "x:1");
    store
        .record(&[mk("before")])
        .expect("record before the restart");

    server.stop();
    let e = store
        .record(&[mk("down")])
        .expect_err("server down")
        .to_string();
    assert!(
        e.starts_with(&format!("alert database {url}:")),
        "unclear error: {e}"
    );
    assert!(!e.contains(PASSWORD), "{e}");

    server.restart();
    // The pooled connection died with the server: the next call reconnects. It may fail once
    // (with a clear error) if the dead connection is only noticed mid-call; the one after
    // must succeed.
    let mut recorded = vec!["before"];
    match store.record(&[mk("after-1")]) {
        Ok(()) => recorded.push("after-1"),
        Err(e) => assert!(e.to_string().contains("alert database"), "{e}"),
    }
    store
        .record(&[mk("after-2")])
        .expect("record after the restart");
    recorded.push("after-2");
    let mut ids: Vec<String> = store
        .list(&AlertFilter::default())
        .expect("list")
        .into_iter()
        .map(|a| a.id)
        .collect();
    ids.sort();
    recorded.sort();
    assert_eq!(ids, recorded);
}

#[rstest]
#[case::unscanned(FailurePolicy::Unscanned, false)]
#[case::deny(FailurePolicy::Deny, false)]
#[case::allow(FailurePolicy::Allow, true)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_with_postgres_down_follows_the_failure_policy(
    #[case] policy: FailurePolicy,
    #[case] allowed: bool,
) {
    let mut server = Postgres::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = config(dir.path(), Some(RULES));
    cfg.failure_policy = policy;
    cfg.store = server.url().parse().expect("store url");
    cfg.store_password_file = Some(server.password_file());
    // No journal: the failure policy decides (with one: the test below).
    cfg.alert_writer.journal_max_bytes = 0;
    let webhook = Server::with_source(cfg, TestSource::new()).expect("server");

    // Up: audited and denied requests are recorded.
    let r = admit(&webhook, &create(&deployment("dev", &[DEBIAN]))).await;
    assert!(r.allowed);
    let id = r.audit_annotations["alert-id"].clone();
    assert!(webhook.alerts().get(&id).expect("get").is_some());

    server.stop();
    // Down, audit: the alert cannot be recorded, the failure policy decides.
    let r = admit(&webhook, &create(&deployment("dev", &[DEBIAN]))).await;
    assert_eq!(r.allowed, allowed, "{:?}", r.result);
    let all = format!(
        "{} {:?} {:?}",
        r.result.message, r.warnings, r.audit_annotations
    );
    assert!(!all.contains(PASSWORD), "leak: {all}");
    assert!(
        !all.contains("127.0.0.1"),
        "store detail in the response: {all}"
    );
    if !allowed {
        assert_eq!(r.result.code, 503);
        assert!(
            r.result.message.contains("could not record the alert"),
            "{all}"
        );
    }
    // Down, deny: denied stays denied.
    let r = admit(&webhook, &create(&deployment("prod-shop", &[DEBIAN]))).await;
    assert!(!r.allowed);
    assert!(r.result.message.contains("denied by rule"));
    assert_eq!(webhook.metrics().alert_failures(), 2);

    // Back up: recorded again (at most one failure while the dead connection is noticed).
    server.restart();
    let mut ok = false;
    for _ in 0..2 {
        let r = admit(&webhook, &create(&deployment("prod-shop", &[DEBIAN]))).await;
        if let Some(id) = r.audit_annotations.get("alert-id") {
            if webhook.alerts().get(id).ok().flatten().is_some() {
                ok = true;
                break;
            }
        }
    }
    assert!(ok, "alerts not recorded after the server came back");
}

#[test]
fn the_password_is_never_in_a_message() {
    let server = Postgres::start();
    let good = PostgresUrl::parse(&server.url_with_password(PASSWORD)).expect("url");
    let backend = PostgresBackend::open(&good, None).expect("password in the URL works");
    let mut messages = vec![
        format!("{backend:?}"),
        format!("{good:?}"),
        good.to_string(),
        format!("{:?}", StoreUrl::Postgres(good.clone())),
    ];
    let mut cfg = vulngate_server::Config {
        store: StoreUrl::Postgres(good.clone()),
        ..Default::default()
    };
    messages.push(format!("{cfg:?}"));
    messages.push(serde_yaml_ng::to_string(&cfg).expect("yaml"));
    cfg.store_password_file = Some(server.password_file());

    // Wrong password in the URL, in a file; a password file that does not exist.
    let wrong = "Wr0ng-Pa55-5ecret";
    let e = PostgresBackend::open(
        &PostgresUrl::parse(&server.url_with_password(wrong)).expect("url"),
        None,
    )
    .expect_err("wrong password");
    assert!(
        e.to_string().contains("password authentication failed"),
        "{e}"
    );
    messages.push(e.to_string());
    messages.push(format!("{e:?}"));
    let wrong_file = server.dir().join("wrong");
    std::fs::write(&wrong_file, wrong).expect("write");
    let url = PostgresUrl::parse(&server.url()).expect("url");
    let e = PostgresBackend::open(&url, Some(&wrong_file)).expect_err("wrong password");
    messages.push(e.to_string());
    messages.push(format!("{e:?}"));
    let e = PostgresBackend::open(&url, Some(&server.dir().join("absent"))).expect_err("absent");
    messages.push(e.to_string());
    // A bad URL holding the password.
    for bad in [
        format!("postgres://vulngate:{wrong}@127.0.0.1:notaport/db"),
        format!("postgres://vulngate:{wrong}@127.0.0.1/db?sslmode=prefer"),
        format!("postgres://vulngate:{wrong}@127.0.0.1/db?nosuch=1"),
    ] {
        messages.push(bad.parse::<StoreUrl>().expect_err("bad url"));
        let yaml = format!("store: \"{bad}\"\n");
        messages.push(
            vulngate_server::Config::parse(&yaml, "vulngate.yaml")
                .expect_err("bad config")
                .to_string(),
        );
    }
    // The server goes away while a store with the right password is open.
    let mut server = server;
    server.stop();
    let e = backend.record(&sample()).expect_err("down");
    messages.push(e.to_string());
    messages.push(format!("{e:?}"));
    // Connecting to a server that is not there.
    let e = PostgresBackend::open(&good, None).expect_err("down");
    messages.push(e.to_string());
    messages.push(format!("{e:?}"));

    for m in &messages {
        assert!(!m.contains(PASSWORD), "password in: {m}");
        assert!(!m.contains(wrong), "password in: {m}");
    }
    assert!(messages
        .iter()
        .any(|m| m.contains("vulngate:***@127.0.0.1")));
}

/// A CA and a server certificate for 127.0.0.1 signed by it: (CA PEM, cert chain PEM, key PEM).
fn ca_and_server_cert() -> (String, String, String) {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
    let mut ca = CertificateParams::new(Vec::<String>::new()).expect("params");
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    let issuer = CertifiedIssuer::self_signed(ca, KeyPair::generate().expect("key")).expect("ca");
    let leaf = CertificateParams::new(vec!["127.0.0.1".to_string()]).expect("params");
    let key = KeyPair::generate().expect("key");
    let cert = leaf.signed_by(&key, &*issuer).expect("cert");
    (issuer.pem(), cert.pem(), key.serialize_pem())
}

#[test]
fn tls_verify_full_against_a_tls_only_server() {
    use std::os::unix::fs::PermissionsExt;
    let (ca, cert, key) = ca_and_server_cert();
    let server = Postgres::start_prepared(
        &[
            ("ssl", "on"),
            ("ssl_cert_file", "../server.crt"),
            ("ssl_key_file", "../server.key"),
        ],
        |pg| {
            let (crt, key_path) = (pg.dir().join("server.crt"), pg.dir().join("server.key"));
            std::fs::write(&crt, &cert).expect("cert");
            std::fs::write(&key_path, &key).expect("key");
            std::fs::set_permissions(&key_path, std::fs::Permissions::from_mode(0o600))
                .expect("chmod");
            pg.give_to_server_user(&crt);
            pg.give_to_server_user(&key_path);
            // TCP only over TLS: a plain connection is refused by the server.
            std::fs::write(
                pg.dir().join("data/pg_hba.conf"),
                "local all all scram-sha-256\nhostssl all all 127.0.0.1/32 scram-sha-256\n",
            )
            .expect("pg_hba.conf");
        },
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, &ca).expect("ca");
    let (other_ca, _, _) = ca_and_server_cert();
    let other_ca_file = dir.path().join("other-ca.pem");
    std::fs::write(&other_ca_file, &other_ca).expect("ca");
    let pw = server.password_file();
    let base = format!(
        "postgres://{}@127.0.0.1:{}/{}",
        pg::USER,
        server.port(),
        pg::DATABASE
    );

    for mode in ["verify-full", "require"] {
        let url = PostgresUrl::parse(&format!(
            "{base}?sslmode={mode}&sslrootcert={}",
            ca_file.display()
        ))
        .expect("url");
        let b = PostgresBackend::open(&url, Some(&pw)).unwrap_or_else(|e| panic!("{mode}: {e}"));
        let a = alert(
            &format!("tls-{mode}"),
            1,
            AlertAction::Deny,
            "prod",
            "r",
            "x:1",
        );
        b.record(std::slice::from_ref(&a)).expect("record over TLS");
        assert_eq!(b.get(&a.id).expect("get"), Some(a));
    }

    // Another CA: the certificate is rejected.
    let url = PostgresUrl::parse(&format!(
        "{base}?sslmode=verify-full&sslrootcert={}",
        other_ca_file.display()
    ))
    .expect("url");
    let e = PostgresBackend::open(&url, Some(&pw))
        .expect_err("unknown issuer")
        .to_string();
    assert!(e.to_lowercase().contains("certificate"), "{e}");
    // No sslrootcert: the public roots do not know this CA either.
    let url = PostgresUrl::parse(&format!("{base}?sslmode=verify-full")).expect("url");
    assert!(PostgresBackend::open(&url, Some(&pw)).is_err());
    // sslmode=disable: this server wants TLS, so it refuses (proves the TLS runs above were TLS).
    let url = PostgresUrl::parse(&format!("{base}?sslmode=disable")).expect("url");
    let e = PostgresBackend::open(&url, Some(&pw))
        .expect_err("plain refused")
        .to_string();
    assert!(
        e.contains("pg_hba.conf") && e.contains("no encryption"),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_postgres_down_alerts_are_journaled_and_replayed_when_it_is_back() {
    let mut server = Postgres::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = config(dir.path(), Some(RULES));
    cfg.store = server.url().parse().expect("store url");
    cfg.store_password_file = Some(server.password_file());
    cfg.alert_writer.replay_interval = std::time::Duration::from_millis(200);
    let webhook = Server::with_source(cfg, TestSource::new()).expect("server");

    server.stop();
    // Down: answered as decided (no 503), the alerts journaled.
    let audit = admit(&webhook, &create(&deployment("dev", &[DEBIAN]))).await;
    assert!(audit.allowed, "{:?}", audit.result);
    let deny = admit(&webhook, &create(&deployment("prod-shop", &[DEBIAN]))).await;
    assert!(!deny.allowed);
    assert_eq!(deny.result.code, 403);
    assert_eq!(webhook.metrics().alert_store().journaled(), 2);
    assert_eq!(webhook.metrics().alert_failures(), 0);

    // Back: both replayed into PostgreSQL, once each.
    server.restart();
    let ids = [
        audit.audit_annotations["alert-id"].clone(),
        deny.audit_annotations["alert-id"].clone(),
    ];
    let mut replayed = false;
    for _ in 0..300 {
        if ids
            .iter()
            .all(|id| webhook.alerts().get(id).ok().flatten().is_some())
        {
            replayed = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(replayed, "journaled alerts not replayed into PostgreSQL");
    let all = webhook
        .alerts()
        .list(&AlertFilter::default())
        .expect("list");
    assert_eq!(all.len(), 2, "duplicates or strays: {all:?}");
}
