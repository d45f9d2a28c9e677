//! `engine::violations`: every vulnerability that fulfilled the deciding condition, the
//! deciding one marked, allowed ones left out; nothing for an allow.

use chrono::{TimeZone, Utc};
use vulngate_core::engine::{
    evaluate, violations, AnalyzedReport, Outcome, RequestContext, Subject,
};
use vulngate_core::model::{Finding, Package, ReportIdentity, Severity};
use vulngate_core::rules::{Precedence, RuleSet};
use vulngate_core::{Catalogs, ImageRef};

mod support;

fn finding(id: &str, severity: Severity, cvss: f32, fixed: &[&str]) -> Finding {
    Finding {
        id: id.into(),
        severity,
        cvss: Some(cvss),
        package: Package {
            name: format!("pkg-{id}"),
            version: Some("1.0".into()),
            purl: None,
            kind: None,
        },
        fixed_versions: fixed.iter().map(|s| s.to_string()).collect(),
        ..Finding::default()
    }
}

fn report(findings: Vec<Finding>) -> AnalyzedReport {
    let r = support::trivy_report(
        findings,
        Some(Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap()),
    );
    let identity = ReportIdentity {
        digest: Some("sha256:feed".into()),
        ..ReportIdentity::default()
    };
    AnalyzedReport::new(&r, identity, &[], None)
}

const RULES: &str = r#"
apiVersion: vulngate.io/v1
kind: SecurityRule
metadata: { name: no-high }
spec:
  action: deny
  conditions:
    - severity: high
      maxCount: 1
  allowedVulnerabilities:
    - { id: CVE-2024-0003, justification: "not reachable" }
"#;

#[test]
fn every_counted_vulnerability_is_listed_and_the_deciding_one_marked() {
    let rules = RuleSet::new(RuleSet::parse_yaml(RULES, "t").unwrap()).unwrap();
    let image = ImageRef::parse("registry.example/app:1").unwrap();
    let ctx = RequestContext::default();
    let now = Utc.with_ymd_and_hms(2026, 1, 2, 0, 0, 0).unwrap();
    let r = report(vec![
        finding("CVE-2024-0001", Severity::Critical, 9.8, &["1.1"]),
        finding("CVE-2024-0002", Severity::High, 8.0, &[]),
        finding("CVE-2024-0003", Severity::High, 7.9, &[]),
        finding("CVE-2024-0004", Severity::High, 7.5, &[]),
        finding("CVE-2024-0005", Severity::Medium, 5.0, &[]),
    ]);
    let d = evaluate(
        &rules,
        Precedence::Default,
        &ctx,
        &image,
        Subject::Report(&r),
        now,
    );
    assert_eq!(d.decision, Outcome::Deny);
    assert_eq!(d.vulnerability.as_deref(), Some("CVE-2024-0002"));
    let (v, total) = violations(&rules, &d, &ctx, &image, &r, now, Catalogs::NONE, 100);
    let ids: Vec<(&str, bool)> = v
        .iter()
        .map(|v| (v.vulnerability.id.as_str(), v.deciding))
        .collect();
    // Past the firing point too (0004), the allowed one (0003) and the medium one left out.
    assert_eq!(
        ids,
        [
            ("CVE-2024-0001", false),
            ("CVE-2024-0002", true),
            ("CVE-2024-0004", false)
        ]
    );
    assert_eq!(total, 3);
    assert_eq!(v[0].report.as_deref(), Some("sha256:feed"));
    assert_eq!(v[0].vulnerability.packages[0].fixed, ["1.1"]);
    // The cap keeps the first ones in walk order and still says how many there are.
    let (v, total) = violations(&rules, &d, &ctx, &image, &r, now, Catalogs::NONE, 2);
    assert_eq!(v.len(), 2);
    assert_eq!(total, 3);
}

#[test]
fn an_allow_has_no_violations() {
    let rules = RuleSet::new(RuleSet::parse_yaml(RULES, "t").unwrap()).unwrap();
    let image = ImageRef::parse("registry.example/app:1").unwrap();
    let ctx = RequestContext::default();
    let now = Utc.with_ymd_and_hms(2026, 1, 2, 0, 0, 0).unwrap();
    let r = report(vec![finding("CVE-2024-0005", Severity::Medium, 5.0, &[])]);
    let d = evaluate(
        &rules,
        Precedence::Default,
        &ctx,
        &image,
        Subject::Report(&r),
        now,
    );
    assert_eq!(d.decision, Outcome::Allow);
    let (v, total) = violations(&rules, &d, &ctx, &image, &r, now, Catalogs::NONE, 100);
    assert!(v.is_empty());
    assert_eq!(total, 0);
}
