//! The review API's alert list over a large store (issue 19 item 5): fills an alert store with
//! N alerts (default 1,000,000) shaped like a fleet's (namespaces, workloads, rules, images,
//! CVEs, three review states, 90 days), then times the list query behind
//! `GET /api/v1/alerts?limit=100` with each filter and with the next-page cursor, many times
//! with varied values, and prints p50/p99/max per filter. SQLite, and PostgreSQL when
//! `--postgres` is given (a real PostgreSQL 15 server started like the tests do).
//!
//! ```text
//! cargo run --release -p vulngate-server --example alerts_scale -- [--alerts N] [--postgres] [--runs R] [--db PATH]
//! ```
//! Figures: docs/benchmarks.md ("Review API over 1,000,000 alerts").
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../tests/support/postgres.rs"]
mod pg;

use std::time::{Duration, Instant};

use chrono::{DateTime, TimeZone, Utc};
use vulngate_core::engine::{AffectedPackage, SeverityCounts, Violation, Vulnerability};
use vulngate_core::{Outcome, Severity};
use vulngate_server::alerts::{Cursor, Explanation, PostgresUrl, ReviewChange, ReviewState};
use vulngate_server::{
    Alert, AlertAction, AlertBackend, AlertFilter, PostgresBackend, SqliteBackend,
};

const NAMESPACES: usize = 60;
const WORKLOADS: usize = 400;
const RULES: usize = 20;
const REPOS: usize = 500;
const CVES: usize = 8_000;
const DAYS: i64 = 90;
const BATCH: usize = 2_000;

fn start() -> DateTime<Utc> {
    Utc.timestamp_opt(1_764_547_200, 0).unwrap() // 2025-12-01
}

/// xorshift64, fixed seed: the same store every run.
struct Rng(u64);
impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

fn cve(i: usize) -> String {
    format!("CVE-2024-{:05}", i)
}

fn vuln(id: String) -> Vulnerability {
    Vulnerability {
        ids: vec![id.clone()],
        id,
        severity: Severity::Critical,
        cvss: Some(9.1),
        fix_available: true,
        packages: vec![AffectedPackage {
            name: "openssl".into(),
            installed: Some("3.0.1".into()),
            fixed: vec!["3.0.15".into()],
        }],
        published: None,
        known_exploited: None,
        epss: None,
    }
}

fn alert(i: usize, n: usize, rng: &mut Rng) -> Alert {
    let ns = format!("team-{:02}", rng.below(NAMESPACES));
    let workload = format!("svc-{:03}", rng.below(WORKLOADS));
    let rule = format!("rule-{:02}", rng.below(RULES));
    let repo = rng.below(REPOS);
    let deny = rng.below(3) == 0;
    let violations: Vec<Violation> = (0..1 + rng.below(3))
        .map(|k| Violation {
            vulnerability: vuln(cve(rng.below(CVES))),
            deciding: k == 0,
            report: Some("sha256:feed".into()),
        })
        .collect();
    // Oldest first, spread over DAYS.
    let secs = (i as i64) * DAYS * 86_400 / n as i64;
    Alert {
        id: format!("al-{i:08}"),
        time: start() + chrono::Duration::seconds(secs),
        action: if deny {
            AlertAction::Deny
        } else {
            AlertAction::Audit
        },
        origin: Default::default(),
        decision: if deny { Outcome::Deny } else { Outcome::Audit },
        cluster: Some("prod-eu".into()),
        namespace: Some(ns.clone()),
        kind: "Deployment".into(),
        name: Some(workload.clone()),
        operation: "CREATE".into(),
        user: Some("system:serviceaccount:kube-system:deployment-controller".into()),
        request_uid: format!("uid-{i}"),
        image: format!(
            "registry.example.com/fleet/repo-{repo:03}:1.{}",
            rng.below(40)
        ),
        digest: Some(format!("sha256:{:064x}", i)),
        rule: Some(rule.clone()),
        rule_snapshot: Some(std::sync::Arc::new(
            serde_json::json!({"metadata": {"name": rule}}),
        )),
        rules_version: Some("v1".into()),
        vulnerability: violations.first().map(|v| v.vulnerability.clone()),
        counts: SeverityCounts::default(),
        report: None,
        unscanned: None,
        reason: format!("{} critical vulnerabilities", violations.len()),
        dry_run: false,
        break_glass: None,
        workload_kind: Some("Deployment".into()),
        workload_name: Some(workload),
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

fn fill(b: &dyn AlertBackend, n: usize) -> Duration {
    let t = Instant::now();
    let mut rng = Rng(0x1234_5678_9abc_def1);
    let mut batch = Vec::with_capacity(BATCH);
    for i in 0..n {
        batch.push(alert(i, n, &mut rng));
        if batch.len() == BATCH || i + 1 == n {
            b.record(&batch).expect("record");
            batch.clear();
        }
    }
    // A few thousand alerts reviewed: acknowledged, then some resolved.
    for (k, i) in (0..n).step_by(n.div_ceil(4_000).max(1)).enumerate() {
        let id = format!("al-{i:08}");
        let to_ack = ReviewChange {
            to: ReviewState::Acknowledged,
            by: "alice".into(),
            comment: "looking".into(),
            time: Utc::now(),
        };
        b.review(&id, &to_ack).expect("acknowledge");
        // Every other one resolved (by its rank: the ids themselves step by an even number).
        if k % 2 == 0 {
            let to_res = ReviewChange {
                to: ReviewState::Resolved,
                ..to_ack
            };
            b.review(&id, &to_res).expect("resolve");
        }
    }
    t.elapsed()
}

type MakeFilter = fn(&mut Rng) -> AlertFilter;

fn filters() -> Vec<(&'static str, MakeFilter)> {
    fn page() -> AlertFilter {
        AlertFilter {
            limit: Some(100),
            ..AlertFilter::default()
        }
    }
    vec![
        ("no filter", |_| page()),
        ("namespace", |r| AlertFilter {
            namespace: Some(format!("team-{:02}", r.below(NAMESPACES))),
            ..page()
        }),
        ("rule + action", |r| AlertFilter {
            rule: Some(format!("rule-{:02}", r.below(RULES))),
            action: Some(AlertAction::Deny),
            ..page()
        }),
        ("workload", |r| AlertFilter {
            workload: Some(format!("svc-{:03}", r.below(WORKLOADS))),
            ..page()
        }),
        ("cve", |r| AlertFilter {
            cve: Some(cve(r.below(CVES))),
            ..page()
        }),
        ("state=acknowledged", |_| AlertFilter {
            state: Some(ReviewState::Acknowledged),
            ..page()
        }),
        ("state=open + namespace", |r| AlertFilter {
            state: Some(ReviewState::Open),
            namespace: Some(format!("team-{:02}", r.below(NAMESPACES))),
            ..page()
        }),
        ("since (last day)", |_| AlertFilter {
            since: Some(start() + chrono::Duration::days(DAYS - 1)),
            ..page()
        }),
        ("image substring", |r| AlertFilter {
            image: Some(format!("repo-{:03}", r.below(REPOS))),
            ..page()
        }),
        ("namespace + rule + action + since", |r| AlertFilter {
            namespace: Some(format!("team-{:02}", r.below(NAMESPACES))),
            rule: Some(format!("rule-{:02}", r.below(RULES))),
            action: Some(AlertAction::Audit),
            since: Some(start() + chrono::Duration::days(30)),
            ..page()
        }),
    ]
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1]
}

fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1e3)
}

fn measure(store: &str, b: &dyn AlertBackend, runs: usize) {
    println!(
        "| store | filter | results (first run) | p50 ms | p99 ms | max ms | next page p99 ms |"
    );
    println!("| --- | --- | ---: | ---: | ---: | ---: | ---: |");
    for (name, make) in filters() {
        let mut rng = Rng(0x0bad_cafe_d00d_f00d);
        let (mut first, mut next) = (Vec::with_capacity(runs), Vec::with_capacity(runs));
        let mut shown = None;
        for _ in 0..runs {
            let f = make(&mut rng);
            let t = Instant::now();
            let page = b.list(&f).expect("list");
            first.push(t.elapsed());
            shown.get_or_insert(page.len());
            if let Some(last) = page.last().filter(|_| page.len() == 100) {
                let f2 = AlertFilter {
                    after: Some(Cursor::after(last)),
                    ..f
                };
                let t = Instant::now();
                b.list(&f2).expect("next page");
                next.push(t.elapsed());
            }
        }
        first.sort();
        next.sort();
        let next_p99 = if next.is_empty() {
            "-".to_string()
        } else {
            ms(percentile(&next, 0.99))
        };
        println!(
            "| {store} | {name} | {} | {} | {} | {} | {next_p99} |",
            shown.unwrap_or(0),
            ms(percentile(&first, 0.5)),
            ms(percentile(&first, 0.99)),
            ms(*first.last().unwrap()),
        );
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let value = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .map(|v| {
                v.parse::<usize>()
                    .unwrap_or_else(|_| panic!("{flag}: a number"))
            })
    };
    let n = value("--alerts").unwrap_or(1_000_000);
    let runs = value("--runs").unwrap_or(200);
    let with_pg = args.iter().any(|a| a == "--postgres");

    let dir = tempfile::tempdir().expect("temp dir");
    // `--db PATH`: the SQLite file to fill, kept afterwards (to read its query plans).
    let db = args
        .iter()
        .position(|a| a == "--db")
        .and_then(|i| args.get(i + 1))
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| dir.path().join("alerts.db"));
    let sqlite = SqliteBackend::open(&db).expect("sqlite");
    let took = fill(&sqlite, n);
    eprintln!("sqlite: {n} alerts written in {:.1} s", took.as_secs_f64());
    measure("SQLite", &sqlite, runs);

    if with_pg {
        let server = pg::Postgres::start();
        let url = PostgresUrl::parse(&server.url()).expect("url");
        let postgres =
            PostgresBackend::open(&url, Some(&server.password_file())).expect("postgres");
        let took = fill(&postgres, n);
        eprintln!(
            "postgres: {n} alerts written in {:.1} s",
            took.as_secs_f64()
        );
        measure("PostgreSQL", &postgres, runs);
    }
}
