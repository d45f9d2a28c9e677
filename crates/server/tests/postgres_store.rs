//! The PostgreSQL alert store against a real PostgreSQL 15 server (started per test by
//! tests/support/postgres.rs): the same cases as SQLite, alerts surviving a restart of
//! vulngate and of PostgreSQL, concurrent migrations, the webhook with the database down,
//! and the password never in any message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::Path;
use std::sync::Arc;

use support::postgres::{Postgres, PASSWORD};
use support::*;
use vulngate_server::alerts::StoreUrl;
use vulngate_server::{AlertAction, AlertFilter, AlertStore, Server};

fn store_url(pg: &Postgres) -> StoreUrl {
    pg.url_with_password("postgres").parse().expect("store URL")
}

fn server_with(dir: &Path, store: StoreUrl) -> Server {
    let mut cfg = config(dir, Some(RULES));
    cfg.store = store;
    Server::with_source(cfg, Arc::new(local_findings())).expect("server")
}

/// Two audits (dev, staging), one deny (prod-shop), one allow (no alert).
async fn make_alerts(s: &Server) {
    assert!(
        admit(s, &create(&deployment("dev", &[DEBIAN])))
            .await
            .allowed
    );
    assert!(
        admit(s, &create(&deployment("staging", &[DEBIAN])))
            .await
            .allowed
    );
    assert!(
        !admit(s, &create(&deployment("prod-shop", &[DEBIAN])))
            .await
            .allowed
    );
    assert!(
        admit(s, &create(&deployment("dev", &[ALPINE])))
            .await
            .allowed
    );
}

fn summary(store: &AlertStore, f: &AlertFilter) -> Vec<(String, String, String)> {
    let mut v: Vec<_> = store
        .list(f)
        .unwrap()
        .into_iter()
        .map(|a| {
            (
                a.action.as_str().to_string(),
                a.namespace.unwrap_or_default(),
                a.rule.unwrap_or_default(),
            )
        })
        .collect();
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_and_sqlite_answer_the_same_and_alerts_survive_restarts() {
    let pg = Postgres::start();
    let dir = tempfile::tempdir().unwrap();
    let sqlite_dir = dir.path().join("sqlite");
    let pg_dir = dir.path().join("pg");
    std::fs::create_dir_all(&sqlite_dir).unwrap();
    std::fs::create_dir_all(&pg_dir).unwrap();
    {
        let a = server_with(&sqlite_dir, StoreUrl::Sqlite);
        let b = server_with(&pg_dir, store_url(&pg));
        make_alerts(&a).await;
        make_alerts(&b).await;
    } // both servers gone: reopen the stores as `vulngate alerts` would
    let sqlite = AlertStore::open_url(&StoreUrl::Sqlite, &sqlite_dir.join("data"), None).unwrap();
    let postgres = AlertStore::open_url(&store_url(&pg), &pg_dir.join("data"), None).unwrap();
    assert!(
        !pg_dir.join("data").join("alerts.db").exists(),
        "the postgres store writes no SQLite file"
    );
    let cases = [
        AlertFilter::default(),
        AlertFilter {
            action: Some(AlertAction::Deny),
            ..AlertFilter::default()
        },
        AlertFilter {
            action: Some(AlertAction::Audit),
            ..AlertFilter::default()
        },
        AlertFilter {
            namespace: Some("staging".into()),
            ..AlertFilter::default()
        },
        AlertFilter {
            rule: Some("deny-critical-prod".into()),
            ..AlertFilter::default()
        },
        AlertFilter {
            image: Some("debian".into()),
            ..AlertFilter::default()
        },
        AlertFilter {
            image: Some("alpine".into()),
            ..AlertFilter::default()
        },
        AlertFilter {
            since: Some(chrono::Utc::now() + chrono::Duration::hours(1)),
            ..AlertFilter::default()
        },
        AlertFilter {
            limit: Some(1),
            ..AlertFilter::default()
        },
    ];
    for f in &cases {
        assert_eq!(summary(&sqlite, f), summary(&postgres, f), "filter {f:?}");
    }
    assert_eq!(summary(&postgres, &AlertFilter::default()).len(), 3);
    assert_eq!(
        summary(
            &postgres,
            &AlertFilter {
                action: Some(AlertAction::Deny),
                ..AlertFilter::default()
            }
        ),
        [(
            "deny".to_string(),
            "prod-shop".to_string(),
            "deny-critical-prod".to_string()
        )]
    );
    // Full alerts round-trip identically, and get() by id.
    let newest = postgres.list(&AlertFilter::default()).unwrap();
    for a in &newest {
        assert_eq!(postgres.get(&a.id).unwrap().as_ref(), Some(a));
    }
    assert_eq!(postgres.get("no-such-id").unwrap(), None);
    let deny = newest
        .iter()
        .find(|a| a.action == AlertAction::Deny)
        .unwrap();
    assert!(deny.vulnerability.is_some());
    assert_eq!(deny.counts.critical, 1);
    assert!(deny.rule_snapshot.is_some());

    // PostgreSQL restarts under a running store: the next write reconnects.
    let mut pg = pg;
    pg.stop();
    let down = postgres.record(std::slice::from_ref(deny));
    let err = down.expect_err("the database is down").to_string();
    assert!(!err.contains(PASSWORD), "password leaked: {err}");
    pg.start_server();
    let mut again = deny.clone();
    again.id = "0190f0f0-0000-7000-8000-000000000001".into();
    postgres.record(&[again.clone()]).expect("reconnected");
    assert_eq!(postgres.get(&again.id).unwrap(), Some(again));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_migrating_a_fresh_database_at_once_both_succeed() {
    let pg = Postgres::start();
    let url = store_url(&pg);
    let dir = tempfile::tempdir().unwrap();
    let handles: Vec<_> = (0..2)
        .map(|_| {
            let url = url.clone();
            let d = dir.path().to_path_buf();
            std::thread::spawn(move || AlertStore::open_url(&url, &d, None).map(|_| ()))
        })
        .collect();
    for h in handles {
        h.join().unwrap().expect("migration under concurrency");
    }
    // And a third open finds the schema current.
    let s = AlertStore::open_url(&url, dir.path(), None).unwrap();
    assert!(s.list(&AlertFilter::default()).unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_with_the_database_down_follows_the_failure_policy_and_leaks_nothing() {
    let mut pg = Postgres::start();
    let dir = tempfile::tempdir().unwrap();
    let s = server_with(dir.path(), store_url(&pg));
    pg.stop();
    // Audit needs an alert: under the default policy the request is refused (503).
    let r = admit(&s, &create(&deployment("dev", &[DEBIAN]))).await;
    assert!(!r.allowed);
    assert_eq!(r.result.code, 503);
    assert!(
        r.result.message.contains("could not record the alert"),
        "{}",
        r.result.message
    );
    let all = format!("{} {:?}", r.result.message, r.warnings);
    assert!(
        !all.contains(PASSWORD) && !all.contains("127.0.0.1"),
        "leak: {all}"
    );
    // An allowed image needs no alert.
    assert!(
        admit(&s, &create(&deployment("dev", &[ALPINE])))
            .await
            .allowed
    );
    pg.start_server();
    assert!(
        admit(&s, &create(&deployment("dev", &[DEBIAN])))
            .await
            .allowed
    );
}

#[test]
fn the_password_is_in_no_message() {
    let pg = Postgres::start();
    // Wrong password: a clear error without it.
    let wrong: StoreUrl = format!(
        "postgres://vulngate:not-{PASSWORD}@127.0.0.1:{}/postgres?sslmode=disable",
        pg.port
    )
    .parse()
    .unwrap();
    let err = AlertStore::open_url(&wrong, Path::new("/nonexistent"), None)
        .expect_err("wrong password")
        .to_string();
    assert!(!err.contains(PASSWORD), "{err}");
    assert!(
        err.contains("password") || err.contains("authentication"),
        "{err}"
    );
    let right = store_url(&pg);
    for shown in [
        right.to_string(),
        format!("{right:?}"),
        serde_yaml_ng::to_string(&right).unwrap(),
    ] {
        assert!(!shown.contains(PASSWORD), "{shown}");
        assert!(shown.contains("127.0.0.1"), "{shown}");
    }
    // The password from the environment variable works (URL without one).
    let bare: StoreUrl = pg.url("postgres").parse().unwrap();
    let pwfile = pg.dir.path().join("password-file");
    std::fs::write(&pwfile, format!("{PASSWORD}\n")).unwrap();
    AlertStore::open_url(&bare, Path::new("/nonexistent"), Some(&pwfile)).expect("password file");
}
