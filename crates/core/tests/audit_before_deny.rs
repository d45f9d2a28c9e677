//! The case reported missed by `vulngate rules lint` (issue 18, item 8): an `audit` rule on
//! critical followed by a `deny` rule on medium with `maxCount: 3`. Per docs/architecture.md
//! section 3 the deny rule can decide (an image without a critical vulnerability and with more
//! than 3 of medium or higher is denied), but under the default precedence the audit rule decides
//! first for every image that has a critical vulnerability: the walk reaches the critical first,
//! where the deny rule has counted 1 of its 4 (deny rules are visited first, but do not fire), and
//! the audit rule fires there. `precedence: strictest` denies those images. So lint reports the
//! deny rule as shadowed (for an image with 1 critical and 3 medium vulnerabilities), not as a rule
//! that never fires; crates/cli/tests/rules_lint.rs checks lint says so.

use chrono::{DateTime, Utc};
use vulngate_core::engine::{evaluate, AnalyzedReport, Decision, Outcome, RequestContext, Subject};
use vulngate_core::model::{Finding, Package, ReportIdentity, Severity};
use vulngate_core::rules::{Precedence, RuleSet};
use vulngate_core::ImageRef;

mod support;

const RULES: &str = "\
apiVersion: vulngate.io/v1
kind: SecurityRule
metadata: { name: audit-critical }
spec:
  action: audit
  conditions: [ { severity: critical, maxCount: 0 } ]
---
apiVersion: vulngate.io/v1
kind: SecurityRule
metadata: { name: deny-medium }
spec:
  action: deny
  conditions: [ { severity: medium, maxCount: 3 } ]
";

fn now() -> DateTime<Utc> {
    "2026-06-01T12:00:00Z".parse().expect("time")
}

fn decide(severities: &[Severity], precedence: Precedence) -> Decision {
    let rules =
        RuleSet::new(RuleSet::parse_yaml(RULES, "rules.yaml").expect("parses")).expect("rule set");
    let findings = severities
        .iter()
        .enumerate()
        .map(|(i, s)| Finding {
            id: format!("CVE-2024-{:04}", i + 1),
            severity: *s,
            package: Package {
                name: "pkg".into(),
                version: Some("1.0".into()),
                ..Package::default()
            },
            ..Finding::default()
        })
        .collect();
    let report = support::trivy_report(findings, Some(now()));
    let image = ImageRef::parse("registry.example.com/shop/app:v1").expect("image");
    let analyzed = AnalyzedReport::new(&report, ReportIdentity::default(), &[], Some(&image));
    evaluate(
        &rules,
        precedence,
        &RequestContext::default(),
        &image,
        Subject::Report(&analyzed),
        now(),
    )
}

use Severity::{Critical, High, Low, Medium};

#[test]
fn the_deny_rule_decides_an_image_without_a_critical() {
    let d = decide(&[High, Medium, Medium, Medium], Precedence::Default);
    assert_eq!(d.decision, Outcome::Deny, "{d:?}");
    assert_eq!(d.rule.as_deref(), Some("deny-medium"));
    // Fulfilled at the vulnerability that makes its count exceed 3: the fourth.
    assert_eq!(d.vulnerability.as_deref(), Some("CVE-2024-0004"));
    // Three are not enough; lows do not count.
    let d = decide(&[High, Medium, Medium, Low, Low], Precedence::Default);
    assert_eq!(d.decision, Outcome::Allow, "{d:?}");
}

#[test]
fn the_audit_rule_decides_first_when_there_is_a_critical() {
    let image = [Critical, Medium, Medium, Medium];
    let d = decide(&image, Precedence::Default);
    assert_eq!(d.decision, Outcome::Audit, "{d:?}");
    assert_eq!(d.rule.as_deref(), Some("audit-critical"));
    assert_eq!(d.vulnerability.as_deref(), Some("CVE-2024-0001"));
    // The deny rule would also have fired, further down the walk.
    let also: Vec<&str> = d.also_fired.iter().map(|f| f.rule.as_str()).collect();
    assert_eq!(also, ["deny-medium"]);

    // The more severe image is only audited while the less severe one above is denied; the
    // strictest precedence walks deny rules first and denies it.
    let d = decide(&image, Precedence::Strictest);
    assert_eq!(d.decision, Outcome::Deny, "{d:?}");
    assert_eq!(d.rule.as_deref(), Some("deny-medium"));

    // Several criticals do not change it: the audit rule fires at the first one.
    let d = decide(
        &[Critical, Critical, Critical, Critical],
        Precedence::Default,
    );
    assert_eq!(d.rule.as_deref(), Some("audit-critical"));
}
