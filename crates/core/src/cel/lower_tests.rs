//! The lowered CEL conditions (`lower.rs`) give the interpreter's answer: both are asked for
//! every vulnerability of real reports, for a list of hand-written expressions and for
//! generated ones.

use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::{CelCondition, CelFilter, Scope};
use crate::engine::{AnalyzedReport, RequestContext, Vulnerability};
use crate::exploit::{Catalogs, EpssScores, KevCatalog};
use crate::findings::{self, Parsed};
use crate::image::ImageRef;
use crate::model::{ReportIdentity, Severity};

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");

/// The real reports' vulnerabilities, then variants of each with other scores, fixes, dates
/// and severities (the fixtures are small; the variants reach every branch of the comparisons,
/// NaN and missing values included).
pub(super) fn vulnerability_sets() -> Vec<Vec<Vulnerability>> {
    let mut sets: Vec<Vec<Vulnerability>> =
        reports().into_iter().map(|r| r.vulnerabilities).collect();
    let base: Vec<Vulnerability> = sets.iter().flatten().cloned().collect();
    let severities = [
        Severity::Unknown,
        Severity::Negligible,
        Severity::Low,
        Severity::Medium,
        Severity::High,
        Severity::Critical,
    ];
    let scores = [
        None,
        Some(0.0),
        Some(4.5),
        Some(7.0),
        Some(9.0),
        Some(9.8),
        Some(f32::NAN),
    ];
    let dates = [
        None,
        Some("2014-04-07T00:00:00Z"),
        Some("2026-11-20T00:00:00Z"),
    ];
    let mut variants = Vec::new();
    for (k, v) in base.iter().enumerate() {
        for (j, cvss) in scores.iter().enumerate() {
            let mut x = v.clone();
            x.cvss = *cvss;
            x.fix_available = (k + j) % 2 == 0;
            x.severity = severities[(k + j) % severities.len()];
            x.published = dates[(k + j) % dates.len()].map(|d| d.parse().expect("date"));
            if j == 0 {
                x.packages.clear();
            }
            variants.push(x);
        }
    }
    sets.push(variants);
    sets
}

fn reports() -> Vec<AnalyzedReport> {
    let image = image();
    [
        "crates/core/tests/data/reports/trivy/alpine-310.json",
        "crates/core/tests/data/reports/trivy/centos-7.json",
        "crates/core/tests/data/reports/trivy/debian-buster.json",
        "crates/core/tests/data/reports/trivy/alpine-310.sarif",
        "examples/exploitation/report.json",
    ]
    .iter()
    .map(|path| {
        let bytes = std::fs::read(format!("{ROOT}/{path}")).expect(path);
        let Parsed::Report(r) = findings::parse(&bytes).expect(path) else {
            panic!("{path} is not a report")
        };
        AnalyzedReport::new(&r, ReportIdentity::default(), &r.vex, Some(&image))
    })
    .collect()
}

pub(super) fn catalogs() -> Catalogs {
    let kev = std::fs::read(format!("{ROOT}/examples/exploitation/kev.json")).expect("kev");
    let epss = std::fs::read(format!("{ROOT}/examples/exploitation/epss.csv")).expect("epss");
    Catalogs {
        kev: Some(Arc::new(KevCatalog::parse(&kev).expect("kev parses"))),
        epss: Some(Arc::new(
            EpssScores::parse(&epss, 1 << 20).expect("epss parses"),
        )),
    }
}

fn image() -> ImageRef {
    ImageRef::parse("registry.example.com/shop/api:1.4.2").expect("image")
}

fn context() -> RequestContext {
    RequestContext {
        cluster: Some("prod-eu".into()),
        namespace: Some("shop".into()),
        workload_kind: Some("Deployment".into()),
        workload_name: Some("api".into()),
        pod: Some("api-7d9f-x2".into()),
        user: Some("system:serviceaccount:shop:deployer".into()),
        groups: vec!["system:serviceaccounts".into(), "team-shop".into()],
        ..RequestContext::default()
    }
}

fn now() -> DateTime<Utc> {
    "2026-12-01T00:00:00Z".parse().expect("time")
}

/// Asks the evaluators for every vulnerability of every report: the compiled expression (what
/// the engine runs), the lowered tree it was compiled from, and the interpreter. Returns how many
/// vulnerabilities were compared.
pub(super) fn compare(source: &str, sets: &[Vec<Vulnerability>], catalogs: &Catalogs) -> usize {
    let cond = CelCondition::compile(source).unwrap_or_else(|e| panic!("{source}: {e}"));
    let (image, ctx) = (image(), context());
    let mut n = 0;
    for vulns in sets {
        let filter = CelFilter::new(Scope::new(vulns, catalogs, &image, &ctx, now()), &cond);
        let scope = &filter.scope;
        for (i, v) in vulns.iter().enumerate() {
            let compiled = scope.eval(&cond, i);
            let interpreted = scope.interpret(&cond, i);
            assert_eq!(
                compiled, interpreted,
                "{source} on {v:?}: compiled and interpreted differ"
            );
            assert_eq!(filter.counts(i, v), interpreted != Ok(false));
            if let Some(tree) = scope.eval_lowered(&cond, i) {
                assert_eq!(
                    compiled,
                    Ok(tree),
                    "{source} on {v:?}: compiled and lowered tree differ"
                );
            }
            n += 1;
        }
    }
    n
}

#[test]
fn lowered_expressions_agree_with_the_interpreter() {
    let (reports, catalogs) = (vulnerability_sets(), catalogs());
    let lowered = [
        "vuln.cvss >= 9.0 && vuln.fixAvailable",
        "9.0 <= vuln.cvss",
        "vuln.cvss > 7.5 || vuln.knownExploited",
        "!vuln.fixAvailable",
        "vuln.fixAvailable == false",
        "vuln.knownExploited != true",
        "vuln.epss >= 0.5 || vuln.epssPercentile > 0.95",
        "vuln.severityRank >= 3 && vuln.ageDays > 30",
        "vuln.ageDays < 0",
        "vuln.severity == 'critical'",
        "vuln.severity != 'high'",
        "vuln.severity in ['critical', 'high']",
        "'CVE-2021-44228' in vuln.ids",
        "'1.1.1d-r0' in vuln.fixedVersions",
        "vuln.id.startsWith('CVE-2019') || vuln.id.endsWith('0') || vuln.id.contains('-20')",
        "vuln.fixedVersion != ''",
        "vuln.fixedVersion.contains('r0')",
        "image.registry == 'registry.example.com' && image.repository.startsWith('shop/')",
        "image.tag == '1.4.2' && image.digest == '' && image.reference.endsWith(':1.4.2')",
        "workload.namespace == 'shop' && workload.kind == 'Deployment' && workload.name == 'api'",
        "workload.cluster == 'prod-eu' && workload.pod.startsWith('api-')",
        "workload.user.contains('deployer') && workload.serviceAccount == 'shop:deployer'",
        "'team-shop' in workload.groups && !('admins' in workload.groups)",
        "true && (false || vuln.cvss == 0.0)",
    ];
    for source in lowered {
        let cond = CelCondition::compile(source).expect(source);
        assert!(cond.is_lowered(), "{source} should be lowered");
        let n = compare(source, &reports, &catalogs);
        assert!(n >= 90, "{source}: compared on {n} vulnerabilities only");
    }
    // Outside the subset: the interpreter answers (and `eval` agrees with itself).
    for source in [
        "vuln.cvss >= 9",
        "workload.labels['app'] == 'web'",
        "vuln.packages.exists(p, p.name == 'openssl')",
        "size(vuln.ids) > 1",
        "vuln.cvss * 2.0 > 15.0",
        "vuln.fixAvailable ? vuln.cvss > 5.0 : false",
        "vuln.published < '2020-01-01'",
    ] {
        let cond = CelCondition::compile(source).expect(source);
        assert!(!cond.is_lowered(), "{source} should not be lowered");
        compare(source, &reports, &catalogs);
    }
}

/// Deterministic expressions built from the subset's atoms (xorshift, fixed seed).
#[test]
fn generated_expressions_agree_with_the_interpreter() {
    let (reports, catalogs) = (vulnerability_sets(), catalogs());
    let atoms = [
        "vuln.cvss >= 7.0",
        "vuln.cvss < 4.5",
        "vuln.cvss != 0.0",
        "vuln.fixAvailable",
        "vuln.knownExploited",
        "vuln.epss > 0.1",
        "vuln.epssPercentile <= 0.5",
        "vuln.severityRank == 4",
        "vuln.ageDays >= 365",
        "vuln.severity == 'medium'",
        "vuln.severity in ['low', 'unknown']",
        "'CVE-2014-0160' in vuln.ids",
        "vuln.id.startsWith('CVE-2018')",
        "vuln.fixedVersion == ''",
        "image.tag.endsWith('.2')",
        "workload.namespace != 'kube-system'",
        "true",
        "false",
    ];
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move |n: usize| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % n as u64) as usize
    };
    fn build(depth: usize, atoms: &[&str], next: &mut dyn FnMut(usize) -> usize) -> String {
        if depth == 0 {
            return atoms[next(atoms.len())].to_string();
        }
        let (a, b) = (
            build(depth - 1, atoms, next),
            build(next(depth), atoms, next),
        );
        match next(3) {
            0 => format!("({a}) && ({b})"),
            1 => format!("({a}) || ({b})"),
            _ => format!("!({a})"),
        }
    }
    let mut compared = 0;
    for _ in 0..120 {
        let depth = 1 + next(4);
        let source = build(depth, &atoms, &mut next);
        assert!(
            CelCondition::compile(&source).expect(&source).is_lowered(),
            "{source} should be lowered"
        );
        compared += compare(&source, &reports, &catalogs);
    }
    assert!(compared > 10_000, "compared {compared}");
}
