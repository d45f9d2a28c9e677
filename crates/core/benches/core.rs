//! Engine and parser benchmarks (criterion). Every number is read as a ratio against a
//! baseline measured in the same run, because the machines are noisy:
//! - `parse/trivy_10mb` against `parse/serde_ignored_any_10mb` (just walking the same JSON);
//! - `engine/*` against `rego/*`: the same decision as a Rego policy evaluated by regorus.
//!
//! Run: `cargo bench -p vulngate-core --bench core`. Results go to docs/benchmarks.md.

use std::alloc::System;
use std::hint::black_box;
use std::time::Duration;

use chrono::{DateTime, Utc};
use criterion::{BenchmarkId, Criterion, Throughput};
use serde_json::{json, Value};
use stats_alloc::{Region, StatsAlloc, INSTRUMENTED_SYSTEM};
use vulngate_core::engine::{evaluate, AnalyzedReport, Outcome, RequestContext, Subject};
use vulngate_core::findings::{parse, Parsed};
use vulngate_core::model::{
    Finding, FindingsReport, Package, ReportFormat, ReportIdentity, Scanner, Severity,
};
use vulngate_core::rules::{Precedence, RuleSet};
use vulngate_core::ImageRef;

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// Small deterministic generator (no `rand` dependency needed for a fixed data set).
struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

const TRIVY_FIXTURE: &str = include_str!("../tests/data/reports/trivy/alpine-310.json");

/// A Trivy report of at least `bytes` bytes, shaped like the real alpine-310 fixture.
fn big_trivy_report(bytes: usize) -> (Vec<u8>, usize) {
    let mut doc: Value = serde_json::from_str(TRIVY_FIXTURE).expect("fixture parses");
    let template = doc["Results"][0]["Vulnerabilities"][0].clone();
    let one = serde_json::to_vec(&template).expect("json").len();
    let n = bytes / one + 1;
    let mut rng = Lcg(7);
    let sev = ["CRITICAL", "HIGH", "MEDIUM", "LOW", "UNKNOWN"];
    let vulns: Vec<Value> = (0..n)
        .map(|i| {
            let mut v = template.clone();
            v["VulnerabilityID"] = json!(format!("CVE-2020-{:05}", i));
            v["PkgName"] = json!(format!("pkg-{}", rng.below(500)));
            v["Severity"] = json!(sev[rng.below(5) as usize]);
            v
        })
        .collect();
    doc["Results"][0]["Vulnerabilities"] = Value::Array(vulns);
    (serde_json::to_vec(&doc).expect("json"), n)
}

/// 10,000 findings: ~8,000 vulnerabilities (some in several packages, some GHSA with a CVE
/// alias), severity spread like real images.
fn synthetic_report(findings: usize) -> FindingsReport {
    let mut rng = Lcg(42);
    let mut out = Vec::with_capacity(findings);
    for i in 0..findings {
        let vuln = if rng.below(5) == 0 && i > 0 {
            rng.below(i as u64) as usize
        } else {
            i
        };
        let severity = match rng.below(100) {
            0..=1 => Severity::Critical,
            2..=11 => Severity::High,
            12..=51 => Severity::Medium,
            52..=81 => Severity::Low,
            _ => Severity::Unknown,
        };
        let (id, aliases) = if vuln % 10 == 0 {
            (
                format!("GHSA-{vuln:04x}-bench"),
                vec![format!("CVE-2021-{vuln:05}")],
            )
        } else {
            (format!("CVE-2021-{vuln:05}"), vec![])
        };
        out.push(Finding {
            id,
            aliases,
            severity,
            cvss: Some((rng.below(100) as f32) / 10.0),
            package: Package {
                name: format!("lib{}", rng.below(300)),
                version: Some("1.0.0".into()),
                purl: None,
                kind: Some("deb".into()),
            },
            fixed_versions: if rng.below(2) == 0 {
                vec!["1.0.1".into()]
            } else {
                vec![]
            },
            ..Finding::default()
        });
    }
    FindingsReport {
        format: ReportFormat::Trivy,
        subject_digest: None,
        artifact_name: None,
        scanner: Scanner {
            name: "trivy".into(),
            version: Some("0.59.0".into()),
            db: None,
        },
        created: Some(now()),
        findings: out,
        vex: Vec::new(),
    }
}

fn now() -> DateTime<Utc> {
    "2026-06-01T00:00:00Z".parse().expect("time")
}

/// 100 rules: a third deny, scopes of every kind, count thresholds high enough that most
/// rules walk far before firing (or never fire), cveIds lists, filters and allowances.
fn synthetic_rules(n: usize) -> (String, Value) {
    let sev = ["critical", "high", "medium", "low"];
    let mut yaml = String::new();
    let mut json_rules = Vec::new();
    for i in 0..n {
        let action = if i % 3 == 0 { "deny" } else { "audit" };
        let (scope_yaml, scope_json) = match i % 4 {
            0 => (String::new(), json!([])),
            1 => (
                "  scope: [ { field: namespace, op: startsWith, value: prod- } ]\n".to_string(),
                json!([{"field": "namespace", "op": "startsWith", "value": "prod-"}]),
            ),
            2 => (
                format!(
                    "  scope: [ {{ field: namespace, op: equals, value: prod-{} }} ]\n",
                    i % 7
                ),
                json!([{"field": "namespace", "op": "equals", "value": format!("prod-{}", i % 7)}]),
            ),
            _ => (
                "  scope: [ { field: label, key: team, op: equals, value: shop } ]\n".to_string(),
                json!([{"field": "label", "key": "team", "op": "equals", "value": "shop"}]),
            ),
        };
        let s = sev[i % 4];
        let max = 150 + i * 40;
        let fix = i % 5 == 0;
        let cves: Vec<String> = (0..5)
            .map(|k| format!("CVE-1999-{:04}", i * 5 + k))
            .collect();
        let allowed: Vec<String> = (0..3)
            .map(|k| format!("CVE-2021-{:05}", i * 3 + k))
            .collect();
        yaml.push_str(&format!(
            "apiVersion: vulngate.io/v1\nkind: SecurityRule\nmetadata: {{ name: rule-{i:03} }}\nspec:\n  action: {action}\n{scope_yaml}  conditions:\n    - {{ severity: {s}, maxCount: {max}{} }}\n    - {{ cveIds: [{}] }}\n  allowedVulnerabilities: [{}]\n---\n",
            if fix { ", fixAvailable: true" } else { "" },
            cves.join(", "),
            allowed.iter().map(|a| format!("{{ id: {a} }}")).collect::<Vec<_>>().join(", "),
        ));
        let mut count_cond = json!({"severity": s, "maxCount": max});
        if fix {
            count_cond["fixAvailable"] = json!(true);
        }
        json_rules.push(json!({
            "name": format!("rule-{i:03}"),
            "action": action,
            "scope": scope_json,
            "conditions": [count_cond, {"cveIds": cves}],
            "allowed": allowed,
        }));
    }
    (yaml, Value::Array(json_rules))
}

fn context() -> RequestContext {
    RequestContext {
        cluster: Some("aks-prod-1".into()),
        namespace: Some("prod-3".into()),
        labels: [("team".to_string(), "shop".to_string())].into(),
        ..RequestContext::default()
    }
}

fn rego_input(a: &AnalyzedReport, rules: &Value) -> Value {
    let ctx = context();
    json!({
        "context": {
            "cluster": ctx.cluster, "namespace": ctx.namespace, "labels": ctx.labels,
        },
        "rules": rules,
        "vulnerabilities": a.vulnerabilities.iter().map(|v| json!({
            "id": v.id, "ids": v.ids, "severity": v.severity.as_str(),
            "cvss": v.cvss.unwrap_or(0.0), "fix": v.fix_available,
        })).collect::<Vec<_>>(),
    })
}

fn memory_report(trivy: &[u8], n: usize) {
    let reg = Region::new(GLOBAL);
    let parsed = parse(trivy).expect("big report parses");
    let stats = reg.change();
    let Parsed::Report(r) = &parsed else {
        panic!("expected a report")
    };
    assert_eq!(r.findings.len(), n);
    let live = stats.bytes_allocated as isize - stats.bytes_deallocated as isize;
    println!(
        "memory: parsed {} findings from {} bytes: {} bytes live, {} bytes per finding (peak allocations {} bytes total)",
        n,
        trivy.len(),
        live,
        live / n as isize,
        stats.bytes_allocated
    );
    let report = synthetic_report(10_000);
    let reg = Region::new(GLOBAL);
    let a = AnalyzedReport::new(&report, ReportIdentity::default(), &[], None);
    let stats = reg.change();
    let live = stats.bytes_allocated as isize - stats.bytes_deallocated as isize;
    println!(
        "memory: analyzed report of 10000 findings / {} vulnerabilities: {} bytes live, {} bytes per finding",
        a.vulnerabilities.len(),
        live,
        live / 10_000
    );
    black_box(parsed);
}

fn main() {
    let (trivy, n) = big_trivy_report(10 * 1024 * 1024);
    memory_report(&trivy, n);

    let mut c = Criterion::default()
        .configure_from_args()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));

    {
        let mut g = c.benchmark_group("parse");
        g.throughput(Throughput::Bytes(trivy.len() as u64));
        g.sample_size(20);
        g.bench_function("serde_ignored_any_10mb", |b| {
            b.iter(|| {
                serde_json::from_slice::<serde::de::IgnoredAny>(black_box(&trivy))
                    .expect("valid json")
            })
        });
        g.bench_function("trivy_10mb", |b| {
            b.iter(|| parse(black_box(&trivy)).expect("parses"))
        });
        g.finish();
    }

    let (rules_yaml, rules_json) = synthetic_rules(100);
    let rules =
        RuleSet::new(RuleSet::parse_yaml(&rules_yaml, "bench").expect("rules")).expect("set");
    let image = ImageRef::parse("registry.example.com/shop/app:v1").expect("image");
    let ctx = context();
    let report = synthetic_report(10_000);
    let analyzed = AnalyzedReport::new(&report, ReportIdentity::default(), &[], Some(&image));

    // The Rego policy must reach the same decision, or the comparison means nothing.
    let mut engine = regorus::Engine::new();
    engine
        .add_policy("policy.rego".into(), include_str!("policy.rego").into())
        .expect("policy compiles");
    let input = rego_input(&analyzed, &rules_json);
    let input_value = regorus::Value::from_json_str(&input.to_string()).expect("input");
    engine.set_input(input_value.clone());
    let rego_decision = engine
        .eval_rule("data.vulngate.decision".into())
        .expect("rego evaluates");
    let ours = evaluate(
        &rules,
        Precedence::Strictest,
        &ctx,
        &image,
        Subject::Report(&analyzed),
        now(),
    );
    assert_eq!(
        rego_decision.as_string().expect("string").as_ref(),
        ours.decision.as_str(),
        "rego and engine disagree"
    );
    assert_ne!(
        ours.decision,
        Outcome::Allow,
        "the bench input must make rules fire"
    );
    println!(
        "engine decision: {} by {:?} at {:?} ({} vulnerabilities, {} also fired)",
        ours.decision,
        ours.rule,
        ours.vulnerability,
        analyzed.vulnerabilities.len(),
        ours.also_fired.len()
    );

    {
        let mut g = c.benchmark_group("engine_10k_findings_100_rules");
        g.sample_size(50);
        for (name, p) in [
            ("default", Precedence::Default),
            ("strictest", Precedence::Strictest),
        ] {
            g.bench_with_input(BenchmarkId::new("evaluate", name), &p, |b, p| {
                b.iter(|| {
                    evaluate(
                        black_box(&rules),
                        *p,
                        &ctx,
                        &image,
                        Subject::Report(&analyzed),
                        now(),
                    )
                })
            });
        }
        g.bench_function("analyze_and_evaluate", |b| {
            b.iter(|| {
                let a = AnalyzedReport::new(
                    black_box(&report),
                    ReportIdentity::default(),
                    &[],
                    Some(&image),
                );
                evaluate(
                    &rules,
                    Precedence::Strictest,
                    &ctx,
                    &image,
                    Subject::Report(&a),
                    now(),
                )
            })
        });
        g.finish();
    }
    // CEL conditions against the same filters written natively: one rule that walks every
    // high-or-critical vulnerability (maxCount is never reached), so the filter runs ~1,200
    // times per evaluation.
    {
        let one = |cond: &str| {
            let yaml = format!(
                "apiVersion: vulngate.io/v1\nkind: SecurityRule\nmetadata: {{ name: r }}\nspec:\n  action: deny\n  conditions: [ {cond} ]\n"
            );
            RuleSet::new(RuleSet::parse_yaml(&yaml, "bench").expect("rule")).expect("set")
        };
        let native =
            one("{ severity: high, maxCount: 100000, cvssAtLeast: 9.0, fixAvailable: true }");
        let cel = one(
            "{ severity: high, maxCount: 100000, cel: \"vuln.cvss >= 9.0 && vuln.fixAvailable\" }",
        );
        let decide = |rules: &RuleSet, a: &AnalyzedReport| {
            evaluate(
                rules,
                Precedence::Default,
                &ctx,
                &image,
                Subject::Report(a),
                now(),
            )
        };
        assert_eq!(
            decide(&native, &analyzed).decision,
            decide(&cel, &analyzed).decision,
            "CEL and native disagree"
        );
        let mut g = c.benchmark_group("cel_vs_native_10k_findings");
        g.sample_size(30);
        for (name, rules) in [("native", &native), ("cel", &cel)] {
            g.bench_function(BenchmarkId::new("evaluate", name), |b| {
                b.iter(|| decide(black_box(rules), &analyzed))
            });
            g.bench_function(BenchmarkId::new("analyze_and_evaluate", name), |b| {
                b.iter(|| {
                    let a = AnalyzedReport::new(
                        black_box(&report),
                        ReportIdentity::default(),
                        &[],
                        Some(&image),
                    );
                    decide(rules, &a)
                })
            });
        }
        g.finish();
    }
    // The exploitation and age conditions (issue 22) beside the native severity walk they
    // refine, same report, same walk: each rule walks every high-or-critical vulnerability
    // (maxCount is never reached) and applies its filter to each. The KEV catalog lists every
    // tenth vulnerability, the EPSS file scores every one (issue 23 item 5).
    {
        use vulngate_core::exploit::{Catalogs, EpssScores, KevCatalog};
        let one = |cond: &str| {
            let yaml = format!(
                "apiVersion: vulngate.io/v1\nkind: SecurityRule\nmetadata: {{ name: r }}\nspec:\n  action: deny\n  conditions: [ {cond} ]\n"
            );
            RuleSet::new(RuleSet::parse_yaml(&yaml, "bench").expect("rule")).expect("set")
        };
        let cves: Vec<&str> = analyzed
            .vulnerabilities
            .iter()
            .map(|v| v.id.as_str())
            .filter(|id| id.starts_with("CVE-"))
            .collect();
        let kev_entries: Vec<Value> = cves
            .iter()
            .step_by(10)
            .map(|id| json!({"cveID": id, "dateAdded": "2024-01-02"}))
            .collect();
        let kev = json!({"catalogVersion": "bench", "count": kev_entries.len(), "vulnerabilities": kev_entries});
        let mut epss = String::from("cve,epss,percentile\n");
        for (i, id) in cves.iter().enumerate() {
            let score = (i % 100) as f64 / 100.0;
            epss.push_str(&format!("{id},{score:.5},{score:.5}\n"));
        }
        let catalogs = Catalogs {
            kev: Some(std::sync::Arc::new(
                KevCatalog::parse(kev.to_string().as_bytes()).expect("kev"),
            )),
            epss: Some(std::sync::Arc::new(
                EpssScores::parse(epss.as_bytes(), 1 << 30).expect("epss"),
            )),
        };
        let rules = [
            // Severity (and fixAvailable) are decided from the report's counts (no walk); a native filter
            // (cvssAtLeast) walks like the conditions below do.
            ("native_counts", one("{ severity: high, maxCount: 100000 }")),
            (
                "native_walk",
                one("{ severity: high, maxCount: 100000, cvssAtLeast: 9.0 }"),
            ),
            (
                "kev",
                one("{ severity: high, maxCount: 100000, knownExploited: true }"),
            ),
            (
                "epss",
                one("{ severity: high, maxCount: 100000, epssAtLeast: 0.5 }"),
            ),
            (
                "age",
                one("{ severity: high, maxCount: 100000, publishedBefore: 30d }"),
            ),
        ];
        let decide = |rules: &RuleSet| {
            vulngate_core::engine::evaluate_with(
                rules,
                Precedence::Default,
                &ctx,
                &image,
                Subject::Report(&analyzed),
                now(),
                &catalogs,
            )
        };
        for (name, r) in &rules {
            println!("condition {name}: {}", decide(r).decision);
        }
        let mut g = c.benchmark_group("conditions_10k_findings");
        g.sample_size(30);
        for (name, r) in &rules {
            g.bench_function(BenchmarkId::new("evaluate", name), |b| {
                b.iter(|| decide(black_box(r)))
            });
        }
        g.finish();
    }
    {
        let mut g = c.benchmark_group("rego_10k_findings_100_rules");
        g.sample_size(10);
        g.measurement_time(Duration::from_secs(10));
        g.bench_function("regorus_eval", |b| {
            b.iter(|| {
                engine.set_input(input_value.clone());
                engine
                    .eval_rule("data.vulngate.decision".into())
                    .expect("eval")
            })
        });
        g.finish();
    }
    c.final_summary();
}
