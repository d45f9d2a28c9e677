//! Every exemption field (docs/architecture.md section 2: cve, cluster, deployment, image,
//! namespace, pod, registry, repository, label) and its `validUntil` (issue 18, item 8): a live
//! exemption that matches makes the rule not apply (for `cve`: ignore that vulnerability), one that
//! does not match changes nothing, and one whose `validUntil` day has passed is ignored. The
//! entry applies through the end of its day (UTC).

use chrono::{DateTime, Utc};
use rstest::rstest;
use vulngate_core::engine::{evaluate, AnalyzedReport, Decision, Outcome, RequestContext, Subject};
use vulngate_core::model::{Finding, FindingsReport, Package, ReportIdentity, Severity};
use vulngate_core::rules::{Precedence, RuleSet};
use vulngate_core::ImageRef;

mod support;

/// The last instant the exemptions below (validUntil 2026-12-31) are live, and the first one they
/// are not.
const LAST_LIVE: &str = "2026-12-31T23:59:59Z";
const FIRST_EXPIRED: &str = "2027-01-01T00:00:00Z";

fn ts(s: &str) -> DateTime<Utc> {
    s.parse().expect("timestamp")
}

/// Where the image runs: every field an exemption can name has a value.
fn context() -> RequestContext {
    RequestContext {
        cluster: Some("aks-prod-1".into()),
        namespace: Some("shop".into()),
        pod: Some("api-7d9f8-abcde".into()),
        workload_kind: Some("Deployment".into()),
        workload_name: Some("api".into()),
        labels: [("app.kubernetes.io/part-of".to_string(), "shop".to_string())]
            .into_iter()
            .collect(),
        user: None,
        groups: Vec::new(),
    }
}

fn finding(id: &str, severity: Severity) -> Finding {
    Finding {
        id: id.into(),
        severity,
        package: Package {
            name: "openssl".into(),
            version: Some("3.0.0".into()),
            ..Package::default()
        },
        ..Finding::default()
    }
}

fn report() -> FindingsReport {
    support::trivy_report(
        vec![
            finding("CVE-2024-0001", Severity::Critical),
            finding("CVE-2024-0002", Severity::Critical),
        ],
        Some(ts("2026-12-01T00:00:00Z")),
    )
}

/// One deny rule on any critical vulnerability, with `exemption` (a flow mapping) as its only
/// exemption.
fn rules(exemption: &str) -> RuleSet {
    let text = format!(
        "apiVersion: vulngate.io/v1\nkind: SecurityRule\nmetadata: {{name: deny-critical}}\nspec:\n  \
         action: deny\n  conditions: [{{severity: critical, maxCount: 0}}]\n  blockUnscanned: true\n  \
         exemptions:\n    - {exemption}\n"
    );
    RuleSet::new(RuleSet::parse_yaml(&text, "rules.yaml").expect("rules parse")).expect("rule set")
}

fn decide_with(
    exemption: &str,
    ctx: &RequestContext,
    image: &str,
    report: Option<&FindingsReport>,
    now: &str,
) -> Decision {
    let image = ImageRef::parse(image).expect("image");
    let analyzed =
        report.map(|r| AnalyzedReport::new(r, ReportIdentity::default(), &[], Some(&image)));
    let no_report = vulngate_core::engine::UnscannedReason::NoReport;
    let subject = match &analyzed {
        Some(a) => Subject::Report(a),
        None => Subject::Unscanned(&no_report),
    };
    evaluate(
        &rules(exemption),
        Precedence::Default,
        ctx,
        &image,
        subject,
        ts(now),
    )
}

const IMAGE: &str = "registry.example.com/shop/api:1.4.2";

fn decide(exemption: &str, now: &str) -> Decision {
    decide_with(exemption, &context(), IMAGE, Some(&report()), now)
}

/// Resource fields: a matching live exemption makes the rule not apply, through the last second of
/// its validUntil day; from the next day it is ignored; a non-matching one never applies.
#[rstest]
#[case::cluster(
    "field: cluster, op: equals, value: aks-prod-1",
    "field: cluster, op: equals, value: aks-prod-2"
)]
#[case::namespace(
    "field: namespace, op: equals, value: shop",
    "field: namespace, op: equals, value: sandbox"
)]
#[case::pod(
    "field: pod, op: startsWith, value: api-",
    "field: pod, op: startsWith, value: web-"
)]
#[case::deployment(
    "field: deployment, op: equals, value: api",
    "field: deployment, op: equals, value: web"
)]
#[case::image(
    "field: image, op: equals, value: \"registry.example.com/shop/api:1.4.2\"",
    "field: image, op: equals, value: \"registry.example.com/shop/api:1.4.3\""
)]
#[case::registry(
    "field: registry, op: equals, value: registry.example.com",
    "field: registry, op: equals, value: docker.io"
)]
#[case::repository(
    "field: repository, op: equals, value: shop/api",
    "field: repository, op: equals, value: shop/web"
)]
#[case::label(
    "field: label, key: app.kubernetes.io/part-of, op: equals, value: shop",
    "field: label, key: app.kubernetes.io/part-of, op: equals, value: blog"
)]
fn resource_exemption_field(#[case] matching: &str, #[case] other: &str) {
    let live = |e: &str| format!("{{{e}, validUntil: 2026-12-31, justification: test}}");

    let d = decide(&live(matching), LAST_LIVE);
    assert_eq!(d.decision, Outcome::Allow, "{matching}: {d:?}");
    assert_eq!(d.rule, None);
    assert_eq!(d.reason, "no rule applies to this image", "{matching}");

    let d = decide(&live(matching), FIRST_EXPIRED);
    assert_eq!(d.decision, Outcome::Deny, "{matching} expired: {d:?}");
    assert_eq!(d.rule.as_deref(), Some("deny-critical"));

    let d = decide(&live(other), LAST_LIVE);
    assert_eq!(d.decision, Outcome::Deny, "{other} does not match: {d:?}");

    // Without validUntil the exemption never expires.
    let d = decide(&format!("{{{matching}}}"), "2099-01-01T00:00:00Z");
    assert_eq!(d.decision, Outcome::Allow, "{matching} without validUntil");

    // A resource exemption makes the rule not apply at all: not even blockUnscanned fires.
    let d = decide_with(&live(matching), &context(), IMAGE, None, LAST_LIVE);
    assert_eq!(d.decision, Outcome::Allow, "{matching}, unscanned: {d:?}");
    let d = decide_with(&live(matching), &context(), IMAGE, None, FIRST_EXPIRED);
    assert_eq!(d.decision, Outcome::Deny, "{matching}, unscanned, expired");
}

/// The fields the request may not have: an exemption naming a value does not match a request
/// without that field (a label absent, no cluster name configured, no workload).
#[rstest]
#[case::cluster("field: cluster, op: equals, value: aks-prod-1")]
#[case::deployment("field: deployment, op: equals, value: api")]
#[case::pod("field: pod, op: equals, value: api-7d9f8-abcde")]
#[case::label("field: label, key: app.kubernetes.io/part-of, op: equals, value: shop")]
fn exemption_on_a_field_the_request_lacks_does_not_match(#[case] exemption: &str) {
    let ctx = RequestContext {
        namespace: Some("shop".into()),
        ..RequestContext::default()
    };
    let d = decide_with(
        &format!("{{{exemption}}}"),
        &ctx,
        IMAGE,
        Some(&report()),
        LAST_LIVE,
    );
    assert_eq!(d.decision, Outcome::Deny, "{exemption}: {d:?}");
    // ... and `notEquals` matches it.
    let negated = exemption.replace("op: equals", "op: notEquals");
    let d = decide_with(
        &format!("{{{negated}}}"),
        &ctx,
        IMAGE,
        Some(&report()),
        LAST_LIVE,
    );
    assert_eq!(d.decision, Outcome::Allow, "{negated}: {d:?}");
}

#[test]
fn image_and_repository_exemptions_match_every_spelling() {
    let image = "nginx:1.25";
    let decide_nginx = |e: &str| {
        decide_with(
            &format!("{{{e}}}"),
            &context(),
            image,
            Some(&report()),
            LAST_LIVE,
        )
        .decision
    };
    for e in [
        "field: image, op: equals, value: \"nginx:1.25\"",
        "field: image, op: equals, value: \"docker.io/library/nginx:1.25\"",
        "field: repository, op: equals, value: nginx",
        "field: repository, op: equals, value: library/nginx",
        "field: registry, op: equals, value: docker.io",
    ] {
        assert_eq!(decide_nginx(e), Outcome::Allow, "{e}");
    }
    // notEquals is the negation over all spellings: nginx is not "not nginx".
    assert_eq!(
        decide_nginx("field: repository, op: notEquals, value: nginx"),
        Outcome::Deny
    );
}

/// `cve`: the rule still applies, but ignores the matching vulnerabilities while the exemption is
/// live.
#[test]
fn cve_exemption_field_and_its_expiry() {
    // Both criticals exempted: nothing counts.
    let both = "{field: cve, op: startsWith, value: CVE-2024-, validUntil: 2026-12-31}";
    let d = decide(both, LAST_LIVE);
    assert_eq!(d.decision, Outcome::Allow, "{d:?}");
    let d = decide(both, FIRST_EXPIRED);
    assert_eq!(d.decision, Outcome::Deny);
    assert_eq!(d.vulnerability.as_deref(), Some("CVE-2024-0001"));

    // One exempted: the other one decides, so the rule still applies.
    let one = "{field: cve, op: equals, value: CVE-2024-0001, validUntil: 2026-12-31}";
    let d = decide(one, LAST_LIVE);
    assert_eq!(d.decision, Outcome::Deny);
    assert_eq!(d.vulnerability.as_deref(), Some("CVE-2024-0002"));
    let d = decide(one, FIRST_EXPIRED);
    assert_eq!(d.vulnerability.as_deref(), Some("CVE-2024-0001"));

    // A cve exemption does not exempt the resource: an unscanned image is still blocked.
    let d = decide_with(both, &context(), IMAGE, None, LAST_LIVE);
    assert_eq!(d.decision, Outcome::Deny, "{d:?}");
}
