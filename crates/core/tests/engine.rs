//! Engine semantics (ARCHITECTURE.md section 3): one named test per statement, with the cases
//! written as data in `tests/data/engine/cases.yaml`.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::Value;
use std::sync::Arc;
use vulngate_core::engine::{
    evaluate_with, AnalyzedReport, Outcome, RequestContext, Subject, UnscannedReason,
};
use vulngate_core::exploit::{Catalogs, EpssScores, KevCatalog};
use vulngate_core::model::{
    Finding, FindingsReport, Package, ReportFormat, ReportIdentity, Scanner, Severity, VexStatement,
};
use vulngate_core::rules::{Precedence, RuleSet};
use vulngate_core::ImageRef;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    name: String,
    /// The sentence of the semantics this case shows.
    statement: String,
    /// SecurityRule documents; absent = the default rule set.
    #[serde(default)]
    rules: Option<String>,
    #[serde(default)]
    context: RequestContext,
    /// A Kubernetes object (YAML): the context is read from it as admission reads it
    /// (`workload::extract`, then its top owner by `owner::resolve`), with `context.cluster`.
    #[serde(default)]
    object: Option<Value>,
    #[serde(default = "default_image")]
    image: String,
    #[serde(default = "default_now")]
    now: DateTime<Utc>,
    #[serde(default)]
    precedence: Precedence,
    /// Findings; absent together with `unscanned` = the image is unscanned.
    #[serde(default)]
    findings: Option<Vec<F>>,
    #[serde(default)]
    created: Option<DateTime<Utc>>,
    /// The report does not say when the scan ran.
    #[serde(default)]
    no_scan_time: bool,
    #[serde(default)]
    unscanned: Option<UnscannedReason>,
    #[serde(default)]
    vex: Vec<VexStatement>,
    /// CVE ids in the KEV catalog given to the engine (absent: no catalog).
    #[serde(default)]
    kev: Option<Vec<String>>,
    /// EPSS scores given to the engine: CVE id -> [score, percentile] (absent: none).
    #[serde(default)]
    epss: Option<BTreeMap<String, [f32; 2]>>,
    expect: BTreeMap<String, Value>,
}

/// A finding in short form.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct F {
    id: String,
    severity: Severity,
    #[serde(default)]
    cvss: Option<f32>,
    #[serde(default = "default_pkg")]
    package: String,
    #[serde(default = "default_version")]
    version: String,
    #[serde(default)]
    purl: Option<String>,
    #[serde(default)]
    fixed: Vec<String>,
    #[serde(default)]
    aliases: Vec<String>,
    #[serde(default)]
    published: Option<DateTime<Utc>>,
}

fn default_image() -> String {
    "registry.example.com/shop/app:v1@sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa".into()
}
fn default_now() -> DateTime<Utc> {
    "2026-06-01T12:00:00Z".parse().expect("valid time")
}
fn default_pkg() -> String {
    "pkg".into()
}
fn default_version() -> String {
    "1.0".into()
}

fn cases() -> Vec<Case> {
    let text = include_str!("data/engine/cases.yaml");
    serde_yaml_ng::from_str(text).expect("cases.yaml parses")
}

fn report_of(case: &Case) -> Option<FindingsReport> {
    case.findings.as_ref().map(|fs| FindingsReport {
        format: ReportFormat::Trivy,
        subject_digest: None,
        artifact_name: None,
        scanner: Scanner {
            name: "trivy".into(),
            version: Some("0.59.0".into()),
            db: None,
        },
        created: if case.no_scan_time {
            None
        } else {
            case.created.or(Some(case.now))
        },
        findings: fs
            .iter()
            .map(|f| Finding {
                id: f.id.clone(),
                aliases: f.aliases.clone(),
                severity: f.severity,
                cvss: f.cvss,
                package: Package {
                    name: f.package.clone(),
                    version: Some(f.version.clone()),
                    purl: f.purl.clone(),
                    kind: None,
                },
                fixed_versions: f.fixed.clone(),
                published: f.published,
                ..Finding::default()
            })
            .collect(),
        vex: Vec::new(),
    })
}

/// The case's catalogs, written in the real file formats and parsed by the real parsers.
fn catalogs_of(case: &Case) -> Catalogs {
    let kev = case.kev.as_ref().map(|ids| {
        let feed = serde_json::json!({
            "title": "CISA Catalog of Known Exploited Vulnerabilities",
            "catalogVersion": "2026.05.31",
            "dateReleased": "2026-05-31T17:00:00.000Z",
            "count": ids.len(),
            "vulnerabilities": ids.iter().map(|id| serde_json::json!({
                "cveID": id, "vendorProject": "Example", "product": "Product",
                "vulnerabilityName": "Example vulnerability", "dateAdded": "2021-12-10",
                "shortDescription": "...", "requiredAction": "Apply updates.",
                "dueDate": "2021-12-24", "knownRansomwareCampaignUse": "Known",
                "notes": "", "cwes": ["CWE-20"]
            })).collect::<Vec<_>>(),
        });
        Arc::new(KevCatalog::parse(feed.to_string().as_bytes()).expect("KEV parses"))
    });
    let epss = case.epss.as_ref().map(|scores| {
        let mut csv = String::from(
            "#model_version:v2025.03.14,score_date:2026-05-31T12:55:00Z\ncve,epss,percentile\n",
        );
        for (id, [s, p]) in scores {
            csv.push_str(&format!("{id},{s},{p}\n"));
        }
        Arc::new(EpssScores::parse(csv.as_bytes(), 1 << 20).expect("EPSS parses"))
    });
    Catalogs { kev, epss }
}

fn decide(case: &Case) -> Value {
    let rules = match &case.rules {
        Some(text) => RuleSet::new(RuleSet::parse_yaml(text, &case.name).expect("rules parse"))
            .expect("rule set"),
        None => RuleSet::default_rules(),
    };
    let image = ImageRef::parse(&case.image).expect("image parses");
    let report = report_of(case);
    let analyzed = report
        .as_ref()
        .map(|r| AnalyzedReport::new(r, ReportIdentity::default(), &case.vex, Some(&image)));
    let no_report = case.unscanned.clone().unwrap_or(UnscannedReason::NoReport);
    let subject = match &analyzed {
        Some(a) => Subject::Report(a),
        None => Subject::Unscanned(&no_report),
    };
    let catalogs = catalogs_of(case);
    let ctx = match &case.object {
        Some(o) => vulngate_core::workload::extract(o)
            .expect("object reads")
            .into_context(case.context.cluster.clone()),
        None => case.context.clone(),
    };
    let d = evaluate_with(
        &rules,
        case.precedence,
        &ctx,
        &image,
        subject,
        case.now,
        &catalogs,
    );
    serde_json::to_value(&d).expect("decision serialises")
}

fn run_case(name: &str) {
    let all = cases();
    let case = all
        .iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no case named {name} in cases.yaml"));
    assert!(!case.statement.is_empty());
    let got = decide(case);
    for (key, want) in &case.expect {
        match key.as_str() {
            "reason_contains" => {
                let reason = got["reason"].as_str().unwrap_or_default();
                for part in want
                    .as_array()
                    .cloned()
                    .unwrap_or_else(|| vec![want.clone()])
                {
                    let part = part.as_str().expect("reason_contains holds strings");
                    assert!(
                        reason.contains(part),
                        "{name}: reason {reason:?} lacks {part:?}"
                    );
                }
            }
            "also_fired" => {
                let rules: Vec<Value> = got["also_fired"]
                    .as_array()
                    .map(|a| a.iter().map(|f| f["rule"].clone()).collect())
                    .unwrap_or_default();
                assert_eq!(&Value::Array(rules), want, "{name}: also_fired rules");
            }
            _ => {
                let at = key.split('.').fold(&got, |v, k| match k.parse::<usize>() {
                    Ok(i) => &v[i],
                    Err(_) => &v[k],
                });
                assert_eq!(at, want, "{name}: field {key} (decision: {got:#})");
            }
        }
    }
}

macro_rules! cases {
    ($($name:ident),* $(,)?) => {
        $( #[test] fn $name() { run_case(stringify!($name)); } )*
        const NAMED: &[&str] = &[$(stringify!($name)),*];
    };
}

cases!(
    audit_lets_the_workload_deploy_and_raises_an_alert,
    deny_rejects_the_workload_and_raises_an_alert,
    several_rules_affect_one_image,
    evaluation_runs_from_the_most_severe_to_the_least_severe_vulnerability,
    evaluation_stops_at_the_first_condition_fulfilled,
    deny_rules_before_audit_rules_at_each_vulnerability,
    rule_set_order_among_rules_of_one_action,
    conditions_of_a_rule_are_visited_in_order,
    count_condition_fulfilled_when_count_exceeds_max_count,
    count_condition_not_fulfilled_at_max_count,
    severity_threshold_counts_that_severity_or_higher,
    count_condition_without_severity_counts_every_severity,
    aliases_are_one_vulnerability,
    a_vulnerability_counts_once_however_many_packages_carry_it,
    severity_is_the_highest_of_its_findings,
    cvss_is_the_highest_base_score,
    display_id_is_the_cve_id,
    ties_broken_by_cvss_then_id,
    negligible_and_unknown_rank_lowest,
    fix_available_true_counts_only_fixable,
    fix_available_false_counts_only_unfixable,
    fix_needs_every_finding_to_name_a_fixed_version,
    cvss_at_least_filter,
    package_glob_filter,
    cve_ids_condition_fulfilled_at_first_listed_vulnerability,
    cve_ids_match_aliases,
    allowed_vulnerability_is_ignored_by_that_rule_only,
    allowance_applies_through_the_end_of_its_valid_until_day,
    expired_allowance_is_ignored,
    resource_exemption_makes_rule_not_applicable,
    expired_exemption_is_ignored,
    cve_exemption_ignores_the_vulnerability,
    empty_scope_matches_everything,
    scope_selectors_are_anded,
    scope_ops_starts_with_ends_with_contains,
    missing_field_matches_only_not_equals,
    label_selector,
    registry_and_repository_selectors,
    image_selector_matches_written_or_normalised_reference,
    disabled_rule_is_ignored,
    unscanned_image_first_block_unscanned_rule_decides,
    unscanned_deny_rule_before_audit_rule,
    unscanned_without_block_unscanned_rule_is_allowed,
    unscanned_reason_is_carried,
    stale_report_fires_block_unscanned_rule_before_the_walk,
    stale_report_skips_rule_without_block_unscanned,
    fresh_report_is_not_stale,
    report_without_scan_time_is_stale_for_max_report_age,
    strictest_precedence_walks_deny_rules_first,
    default_precedence_lets_audit_decide_first,
    vex_not_affected_removes_the_finding,
    vex_affected_keeps_the_finding,
    vex_scoped_to_another_image_does_not_apply,
    nothing_fulfilled_allows,
    no_applicable_rule_allows,
    default_rule_audits_high_and_critical,
    default_rule_allows_medium,
    decision_explains_vulnerability_packages_and_counts,
    known_exploited_counts_vulnerabilities_in_kev,
    known_exploited_matches_through_an_alias,
    known_exploited_without_a_catalog_counts_nothing,
    known_exploited_false_counts_the_others,
    epss_at_least_counts_scores_at_or_above,
    epss_percentile_at_least,
    epss_unknown_score_does_not_count,
    kev_and_epss_appear_in_the_reason_of_any_condition,
    cel_condition_over_the_vulnerability,
    cel_condition_over_image_and_workload,
    cel_runtime_error_counts_the_vulnerability,
    published_before_counts_only_old_enough_vulnerabilities,
    published_before_unknown_date_counts,
    published_date_is_the_earliest_of_its_findings,
    user_scope_field,
    group_scope_field_is_membership,
    service_account_scope_field,
    deployment_exemption_covers_its_replicaset,
    deployment_exemption_covers_its_pods,
    deployment_scope_catches_its_pods,
    pod_whose_template_hash_does_not_match_is_not_the_deployments,
    cronjob_scope_catches_the_pods_of_its_jobs,
    pod_without_controller_owner_is_its_own_workload,
);

#[test]
fn every_case_has_a_named_test_and_no_duplicates() {
    let all = cases();
    let mut names: Vec<&str> = all.iter().map(|c| c.name.as_str()).collect();
    names.sort();
    let before = names.len();
    names.dedup();
    assert_eq!(before, names.len(), "duplicate case names");
    let mut named: Vec<&str> = NAMED.to_vec();
    named.sort();
    assert_eq!(names, named, "cases.yaml and the named tests differ");
}

#[test]
fn decisions_are_deterministic_byte_for_byte() {
    for case in cases() {
        let a = serde_json::to_vec(&decide(&case)).expect("json");
        let b = serde_json::to_vec(&decide(&case)).expect("json");
        assert_eq!(a, b, "{}", case.name);
    }
}

#[test]
fn finding_order_does_not_change_the_decision() {
    for mut case in cases() {
        let a = decide(&case);
        if let Some(f) = case.findings.as_mut() {
            f.reverse();
        }
        let b = decide(&case);
        assert_eq!(a, b, "{}", case.name);
    }
}

#[test]
fn combine_is_deny_over_audit_over_allow() {
    use Outcome::*;
    assert_eq!(Outcome::combine([Allow, Audit, Allow]), Audit);
    assert_eq!(Outcome::combine([Audit, Deny, Allow]), Deny);
    assert_eq!(Outcome::combine([Allow, Allow]), Allow);
    assert_eq!(Outcome::combine([]), Allow);
}
