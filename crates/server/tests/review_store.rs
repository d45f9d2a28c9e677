//! The review side of both alert stores (issue 19 item 1): review state and history,
//! the new filters (workload, cve, state), keyset pagination, counts by state, and the
//! migration of a store made with the schema before review states (version 2): its alerts
//! are still there, `open`, and findable by their deciding vulnerability.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/postgres.rs"]
mod pg;

use chrono::{DateTime, TimeZone, Utc};
use pg::{Postgres, PASSWORD};
use vulngate_core::engine::{AffectedPackage, SeverityCounts, Violation, Vulnerability};
use vulngate_core::{Outcome, Severity};
use vulngate_server::alerts::{Cursor, Explanation, PostgresUrl, ReviewChange, ReviewState};
use vulngate_server::{
    Alert, AlertAction, AlertBackend, AlertError, AlertFilter, PostgresBackend, SqliteBackend,
};

fn t(secs: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(1_767_225_600 + secs, 0).unwrap()
}

fn vuln(id: &str, alias: Option<&str>) -> Vulnerability {
    let mut ids = vec![id.to_string()];
    ids.extend(alias.map(str::to_string));
    ids.sort();
    Vulnerability {
        id: id.into(),
        ids,
        severity: Severity::Critical,
        cvss: Some(9.8),
        fix_available: true,
        packages: vec![AffectedPackage {
            name: "openssl".into(),
            installed: Some("1.1.1".into()),
            fixed: vec!["1.1.1w".into()],
        }],
        published: None,
        known_exploited: None,
        epss: None,
    }
}

fn alert(id: &str, secs: i64, ns: &str, name: &str, cves: &[&str]) -> Alert {
    let violations: Vec<Violation> = cves
        .iter()
        .enumerate()
        .map(|(i, c)| Violation {
            vulnerability: vuln(c, (i == 0).then_some("GHSA-aaaa-bbbb-cccc")),
            deciding: i == 0,
            report: Some("sha256:feed".into()),
        })
        .collect();
    Alert {
        id: id.into(),
        time: t(secs),
        action: AlertAction::Deny,
        origin: Default::default(),
        decision: Outcome::Deny,
        cluster: Some("c1".into()),
        namespace: Some(ns.into()),
        kind: "Deployment".into(),
        name: Some(name.into()),
        operation: "CREATE".into(),
        user: Some("alice".into()),
        request_uid: format!("uid-{id}"),
        image: "registry.example.com/shop/api:1.0".into(),
        digest: Some("sha256:abcd".into()),
        rule: Some("deny-critical".into()),
        rule_snapshot: Some(std::sync::Arc::new(
            serde_json::json!({"metadata": {"name": "deny-critical"}}),
        )),
        rules_version: Some("v1".into()),
        vulnerability: violations.first().map(|v| v.vulnerability.clone()),
        counts: SeverityCounts::default(),
        report: None,
        unscanned: None,
        reason: format!("reason {id}"),
        dry_run: false,
        break_glass: None,
        workload_kind: None,
        workload_name: None,
        count: 1,
        last_seen: None,
        kinds: Vec::new(),
        explanation: Explanation {
            violations_total: violations.len(),
            violations,
            also_fired: Vec::new(),
        },
        review: Default::default(),
    }
}

fn change(to: ReviewState, by: &str, comment: &str, secs: i64) -> ReviewChange {
    ReviewChange {
        to,
        by: by.into(),
        comment: comment.into(),
        time: t(secs),
    }
}

fn ids(v: Vec<Alert>) -> Vec<String> {
    v.into_iter().map(|a| a.id).collect()
}

fn check_review(name: &str, b: &dyn AlertBackend) {
    b.record(&[
        alert("a1", 10, "prod", "web", &["CVE-2024-0001", "CVE-2024-0002"]),
        alert("a2", 20, "prod", "api", &["CVE-2024-0002"]),
        alert("a3", 20, "dev", "web", &[]),
        alert("a4", 30, "dev", "worker", &["CVE-2024-0003"]),
    ])
    .unwrap();
    let f = |tweak: &dyn Fn(&mut AlertFilter)| {
        let mut f = AlertFilter::default();
        tweak(&mut f);
        ids(b.list(&f).unwrap_or_else(|e| panic!("{name}: {e}")))
    };
    // New filters.
    assert_eq!(
        f(&|f| f.workload = Some("web".into())),
        ["a3", "a1"],
        "{name}"
    );
    assert_eq!(
        f(&|f| f.cve = Some("CVE-2024-0002".into())),
        ["a2", "a1"],
        "{name}"
    );
    // An alias of a violation finds the alert too.
    assert_eq!(
        f(&|f| f.cve = Some("GHSA-aaaa-bbbb-cccc".into())),
        ["a4", "a2", "a1"],
        "{name}"
    );
    assert_eq!(
        f(&|f| f.cve = Some("CVE-1999-9999".into())),
        Vec::<String>::new(),
        "{name}"
    );
    // Keyset pages: a2 and a3 share a time, ordered by id; no alert lost or repeated.
    let mut seen = Vec::new();
    let mut after: Option<Cursor> = None;
    loop {
        let page = b
            .list(&AlertFilter {
                after: after.clone(),
                limit: Some(1),
                ..Default::default()
            })
            .unwrap();
        let Some(a) = page.first() else { break };
        seen.push(a.id.clone());
        after = Some(Cursor::after(a));
    }
    assert_eq!(seen, ["a4", "a3", "a2", "a1"], "{name}");

    // Everything starts open, without history.
    let a1 = b.get("a1").unwrap().unwrap();
    assert_eq!(a1.review.state, ReviewState::Open, "{name}");
    assert!(a1.review.history.is_empty(), "{name}");
    assert_eq!(a1.explanation.violations.len(), 2, "{name}");
    assert!(a1.explanation.violations[0].deciding, "{name}");

    // open -> acknowledged -> resolved -> open, each change in the history.
    let got = b
        .review(
            "a1",
            &change(ReviewState::Acknowledged, "bob", "looking", 100),
        )
        .unwrap()
        .unwrap();
    assert_eq!(got.review.state, ReviewState::Acknowledged, "{name}");
    b.review(
        "a1",
        &change(ReviewState::Resolved, "bob", "fixed in 1.1.1w", 200),
    )
    .unwrap()
    .unwrap();
    // Not allowed: acknowledging a resolved alert; the state and history stay.
    match b.review("a1", &change(ReviewState::Acknowledged, "eve", "", 250)) {
        Err(AlertError::Transition { from, to, .. }) => {
            assert_eq!(
                (from, to),
                (ReviewState::Resolved, ReviewState::Acknowledged)
            )
        }
        other => panic!("{name}: {other:?}"),
    }
    b.review("a1", &change(ReviewState::Open, "carol", "came back", 300))
        .unwrap()
        .unwrap();
    let a1 = b.get("a1").unwrap().unwrap();
    assert_eq!(a1.review.state, ReviewState::Open, "{name}");
    let h: Vec<(&str, ReviewState, ReviewState, &str)> = a1
        .review
        .history
        .iter()
        .map(|e| (e.by.as_str(), e.from, e.to, e.comment.as_str()))
        .collect();
    assert_eq!(
        h,
        [
            (
                "bob",
                ReviewState::Open,
                ReviewState::Acknowledged,
                "looking"
            ),
            (
                "bob",
                ReviewState::Acknowledged,
                ReviewState::Resolved,
                "fixed in 1.1.1w"
            ),
            (
                "carol",
                ReviewState::Resolved,
                ReviewState::Open,
                "came back"
            ),
        ],
        "{name}"
    );
    assert_eq!(a1.review.history[0].time, t(100), "{name}");
    assert!(b
        .review("nope", &change(ReviewState::Resolved, "bob", "", 1))
        .unwrap()
        .is_none());

    b.review("a2", &change(ReviewState::Resolved, "bob", "", 400))
        .unwrap();
    assert_eq!(
        f(&|f| f.state = Some(ReviewState::Resolved)),
        ["a2"],
        "{name}"
    );
    assert_eq!(
        f(&|f| f.state = Some(ReviewState::Open)),
        ["a4", "a3", "a1"],
        "{name}"
    );
    // The list carries the state too (not the history).
    let listed = b.list(&AlertFilter::default()).unwrap();
    let a2 = listed.iter().find(|a| a.id == "a2").unwrap();
    assert_eq!(a2.review.state, ReviewState::Resolved, "{name}");
    // Counts by state, under the other filters.
    let counts = b
        .count_by_state(&AlertFilter {
            namespace: Some("prod".into()),
            state: Some(ReviewState::Open), // ignored by counts
            ..Default::default()
        })
        .unwrap();
    assert_eq!(
        counts,
        [
            (ReviewState::Open, 1),
            (ReviewState::Acknowledged, 0),
            (ReviewState::Resolved, 1)
        ],
        "{name}"
    );
}

#[test]
fn review_state_filters_and_pages_in_both_stores() {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = SqliteBackend::open(&dir.path().join("alerts.db")).unwrap();
    check_review("sqlite", &sqlite);

    let server = Postgres::start();
    let url = PostgresUrl::parse(&server.url()).unwrap();
    let postgres = PostgresBackend::open(&url, Some(&server.password_file())).unwrap();
    check_review("postgres", &postgres);
}

/// Today's schema (migrations 1 and 2, as the previous release wrote them), frozen here: the
/// store a user upgrades from.
const V2_SQLITE: &str = "
CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY NOT NULL, description TEXT NOT NULL, applied_at TEXT NOT NULL);
CREATE TABLE alerts (id TEXT PRIMARY KEY NOT NULL, time TEXT NOT NULL, action TEXT NOT NULL, cluster TEXT,
    namespace TEXT, kind TEXT NOT NULL, name TEXT, operation TEXT NOT NULL, user_name TEXT, image TEXT NOT NULL,
    digest TEXT, rule TEXT, dry_run INTEGER NOT NULL, data TEXT NOT NULL);
CREATE INDEX alerts_time ON alerts (time);
CREATE INDEX alerts_namespace ON alerts (namespace, time);
CREATE INDEX alerts_rule ON alerts (rule, time);
ALTER TABLE alerts ADD COLUMN origin TEXT NOT NULL DEFAULT 'admission';
INSERT INTO schema_migrations VALUES (1, 'alerts table', '2026-01-01T00:00:00.000000Z');
INSERT INTO schema_migrations VALUES (2, 'alert origin (admission, runtime)', '2026-01-01T00:00:00.000000Z');
";

const V2_POSTGRES: &str = r#"
CREATE TABLE schema_migrations (version BIGINT PRIMARY KEY NOT NULL, description TEXT NOT NULL, applied_at TEXT NOT NULL);
CREATE TABLE alerts (id TEXT COLLATE "C" PRIMARY KEY NOT NULL, time TEXT COLLATE "C" NOT NULL, action TEXT NOT NULL,
    cluster TEXT, namespace TEXT, kind TEXT NOT NULL, name TEXT, operation TEXT NOT NULL, user_name TEXT,
    image TEXT NOT NULL, digest TEXT, rule TEXT, dry_run BOOLEAN NOT NULL, data TEXT NOT NULL);
CREATE INDEX alerts_time ON alerts (time);
CREATE INDEX alerts_namespace ON alerts (namespace, time);
CREATE INDEX alerts_rule ON alerts (rule, time);
ALTER TABLE alerts ADD COLUMN origin TEXT NOT NULL DEFAULT 'admission';
INSERT INTO schema_migrations VALUES (1, 'alerts table', '2026-01-01T00:00:00.000000Z');
INSERT INTO schema_migrations VALUES (2, 'alert origin (admission, runtime)', '2026-01-01T00:00:00.000000Z');
"#;

/// An alert as the previous release stored it: its JSON without the fields this change
/// added (violations, alsoFired, state).
fn old_row(id: &str, secs: i64, cve: &str) -> (String, String, String) {
    let mut a = alert(id, secs, "prod", "web", &[cve]);
    a.explanation = Explanation::default();
    let mut v = serde_json::to_value(&a).unwrap();
    let o = v.as_object_mut().unwrap();
    o.remove("state");
    assert!(!o.contains_key("violations"));
    (
        id.to_string(),
        a.time.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        serde_json::to_string(&v).unwrap(),
    )
}

fn check_migrated(name: &str, b: &dyn AlertBackend) {
    let all = b.list(&AlertFilter::default()).unwrap();
    assert_eq!(ids(all.clone()), ["o2", "o1"], "{name}");
    assert!(
        all.iter().all(|a| a.review.state == ReviewState::Open),
        "{name}"
    );
    // The deciding vulnerability's ids were indexed by the migration.
    let by_cve = b
        .list(&AlertFilter {
            cve: Some("CVE-2023-1111".into()),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(ids(by_cve), ["o1"], "{name}");
    // And old alerts can be reviewed.
    let a = b
        .review(
            "o1",
            &change(ReviewState::Acknowledged, "bob", "old one", 50),
        )
        .unwrap()
        .unwrap();
    assert_eq!(a.review.state, ReviewState::Acknowledged, "{name}");
    assert_eq!(a.reason, "reason o1", "{name}");
}

#[test]
fn a_store_from_before_review_states_is_migrated_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("alerts.db");
    {
        let conn = rusqlite::Connection::open(&db).unwrap();
        conn.execute_batch(V2_SQLITE).unwrap();
        for (id, time, data) in [
            old_row("o1", 10, "CVE-2023-1111"),
            old_row("o2", 20, "CVE-2023-2222"),
        ] {
            conn.execute(
                "INSERT INTO alerts (id, time, action, cluster, namespace, kind, name, operation,
                 user_name, image, digest, rule, dry_run, data)
                 VALUES (?1, ?2, 'deny', 'c1', 'prod', 'Deployment', 'web', 'CREATE', 'alice',
                 'registry.example.com/shop/api:1.0', NULL, 'deny-critical', 0, ?3)",
                rusqlite::params![id, time, data],
            )
            .unwrap();
        }
    }
    let b = SqliteBackend::open(&db).unwrap();
    check_migrated("sqlite", &b);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_from_before_review_states_is_migrated_postgres() {
    let server = Postgres::start();
    {
        let mut cfg: tokio_postgres::Config = server.url().parse().unwrap();
        cfg.password(PASSWORD);
        let (client, conn) = cfg.connect(tokio_postgres::NoTls).await.unwrap();
        tokio::spawn(conn);
        client.batch_execute(V2_POSTGRES).await.unwrap();
        for (id, time, data) in [
            old_row("o1", 10, "CVE-2023-1111"),
            old_row("o2", 20, "CVE-2023-2222"),
        ] {
            client
                .execute(
                    "INSERT INTO alerts (id, time, action, cluster, namespace, kind, name, operation,
                     user_name, image, digest, rule, dry_run, data)
                     VALUES ($1, $2, 'deny', 'c1', 'prod', 'Deployment', 'web', 'CREATE', 'alice',
                     'registry.example.com/shop/api:1.0', NULL, 'deny-critical', false, $3)",
                    &[&id, &time, &data],
                )
                .await
                .unwrap();
        }
    }
    let url = PostgresUrl::parse(&server.url()).unwrap();
    let pw = server.password_file();
    tokio::task::spawn_blocking(move || {
        let b = PostgresBackend::open(&url, Some(&pw)).unwrap();
        check_migrated("postgres", &b);
    })
    .await
    .unwrap();
}
