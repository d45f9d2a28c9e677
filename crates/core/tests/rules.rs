//! Rule loading: strict schema, errors naming file, document, rule and field.

use std::fs;

use rstest::rstest;
use vulngate_core::rules::{Action, RuleSet, ScopeField};
use vulngate_core::Severity;

const GOOD: &str = r#"
apiVersion: vulngate.io/v1
kind: SecurityRule
metadata: { name: deny-critical-prod }
spec:
  description: No critical vulnerabilities in production namespaces
  enabled: true
  action: deny
  scope:
    - { field: cluster,    op: equals,     value: aks-prod-1 }
    - { field: namespace,  op: startsWith, value: prod- }
    - { field: label, key: app.kubernetes.io/part-of, op: equals, value: shop }
  conditions:
    - severity: critical
      maxCount: 0
    - cveIds: [CVE-2021-44228, CVE-2024-3094]
    - severity: high
      maxCount: 5
      fixAvailable: true
      cvssAtLeast: 8.0
      packages: ["openssl*"]
  blockUnscanned: true
  maxReportAge: 7d
  allowedVulnerabilities:
    - { id: CVE-2023-0001, validUntil: 2026-12-31, justification: "not reachable, JIRA-123" }
  exemptions:
    - { field: namespace, op: equals, value: sandbox, validUntil: 2027-01-31, justification: "..." }
---
apiVersion: vulngate.io/v1
kind: SecurityRule
metadata: { name: audit-high }
spec: { action: audit, conditions: [ { severity: high } ] }
---
"#;

#[test]
fn every_field_of_the_architecture_example_loads() {
    let rules = RuleSet::parse_yaml(GOOD, "rules.yaml").expect("valid");
    assert_eq!(rules.len(), 2, "trailing empty document is skipped");
    let r = &rules[0];
    assert_eq!(r.name, "deny-critical-prod");
    assert_eq!(r.spec.action, Action::Deny);
    assert_eq!(r.spec.scope.len(), 3);
    assert_eq!(r.spec.scope[2].field, ScopeField::Label);
    assert_eq!(
        r.spec.scope[2].key.as_deref(),
        Some("app.kubernetes.io/part-of")
    );
    assert_eq!(r.spec.conditions.len(), 3);
    assert_eq!(r.spec.conditions[0].severity, Some(Severity::Critical));
    assert_eq!(
        r.spec.conditions[1].cve_ids,
        vec!["CVE-2021-44228", "CVE-2024-3094"]
    );
    assert_eq!(r.spec.conditions[2].cvss_at_least, Some(8.0));
    assert_eq!(r.spec.conditions[2].fix_available, Some(true));
    assert!(r.spec.block_unscanned);
    assert_eq!(r.spec.max_report_age.map(|a| a.0.num_days()), Some(7));
    assert_eq!(
        r.spec.allowed_vulnerabilities[0]
            .valid_until
            .map(|d| d.to_string()),
        Some("2026-12-31".into())
    );
    assert_eq!(r.source.as_deref(), Some("rules.yaml: document 1"));
    assert!(rules[1].spec.enabled, "enabled defaults to true");
    let set = RuleSet::new(rules).expect("no duplicates");
    assert_eq!(set.version().len(), 16);
}

fn err_of(yaml: &str) -> String {
    match RuleSet::parse_yaml(yaml, "r.yaml").and_then(RuleSet::new) {
        Ok(_) => panic!("expected an error for:\n{yaml}"),
        Err(e) => e.to_string(),
    }
}

const HEAD: &str = "apiVersion: vulngate.io/v1\nkind: SecurityRule\nmetadata: { name: x }\n";

#[rstest]
#[case::unknown_spec_field("spec: { action: deny, blockUnscaned: true }", &["r.yaml: document 1", "rule \"x\"", "spec", "unknown field `blockUnscaned`"])]
#[case::unknown_condition_field("spec: { action: deny, conditions: [ { severity: high, maxcount: 1 } ] }", &["spec.conditions[0]", "unknown field `maxcount`"])]
#[case::wrong_type("spec: { action: deny, conditions: [ { severity: high, maxCount: many } ] }", &["spec.conditions[0].maxCount", "invalid type"])]
#[case::negative_count("spec: { action: deny, conditions: [ { severity: high, maxCount: -1 } ] }", &["spec.conditions[0].maxCount"])]
#[case::bad_action("spec: { action: block }", &["spec.action", "unknown variant `block`"])]
#[case::bad_severity("spec: { action: deny, conditions: [ { severity: severe } ] }", &["spec.conditions[0].severity", "severe"])]
#[case::bad_date("spec: { action: deny, allowedVulnerabilities: [ { id: CVE-1, validUntil: 2026-13-01 } ] }", &["spec.allowedVulnerabilities[0].validUntil"])]
#[case::bad_duration("spec: { action: deny, maxReportAge: 7days }", &["spec.maxReportAge", "invalid duration \"7days\""])]
#[case::bad_scope_field("spec: { action: deny, scope: [ { field: node, op: equals, value: a } ] }", &["spec.scope[0].field", "unknown variant `node`"])]
#[case::bad_op("spec: { action: deny, scope: [ { field: namespace, op: matches, value: a } ] }", &["spec.scope[0].op"])]
#[case::label_without_key("spec: { action: deny, scope: [ { field: label, op: equals, value: a } ] }", &["spec.scope[0].key", "needs a key"])]
#[case::key_without_label("spec: { action: deny, scope: [ { field: namespace, key: k, op: equals, value: a } ] }", &["spec.scope[0].key", "only allowed with field: label"])]
#[case::count_and_cves("spec: { action: deny, conditions: [ { severity: high, cveIds: [CVE-1] } ] }", &["spec.conditions[0]", "not both"])]
#[case::empty_condition("spec: { action: deny, conditions: [ { fixAvailable: true } ] }", &["spec.conditions[0]", "needs severity"])]
#[case::cvss_range("spec: { action: deny, conditions: [ { severity: low, cvssAtLeast: 11 } ] }", &["spec.conditions[0].cvssAtLeast", "not a CVSS score"])]
#[case::bad_glob("spec: { action: deny, conditions: [ { severity: low, packages: [\"a[\"] } ] }", &["spec.conditions[0].packages[0]", "invalid glob"])]
#[case::missing_action("spec: { enabled: true }", &["missing field `action`"])]
#[case::known_exploited_type("spec: { action: deny, conditions: [ { knownExploited: yes please } ] }", &["spec.conditions[0].knownExploited", "invalid type"])]
#[case::epss_range("spec: { action: deny, conditions: [ { epssAtLeast: 50 } ] }", &["spec.conditions[0].epssAtLeast", "not an EPSS value (0.0 to 1.0)"])]
#[case::epss_percentile_range("spec: { action: deny, conditions: [ { epssPercentileAtLeast: -0.1 } ] }", &["spec.conditions[0].epssPercentileAtLeast", "not an EPSS value"])]
#[case::epss_typo("spec: { action: deny, conditions: [ { epssAtleast: 0.5 } ] }", &["spec.conditions[0]", "unknown field `epssAtleast`"])]
#[case::published_before_bad("spec: { action: deny, conditions: [ { severity: high, publishedBefore: 30 days } ] }", &["spec.conditions[0].publishedBefore", "invalid duration"])]
#[case::published_before_alone("spec: { action: deny, conditions: [ { publishedBefore: 30d } ] }", &["spec.conditions[0]", "needs severity"])]
#[case::cel_syntax("spec: { action: deny, conditions: [ { cel: \"vuln.cvss >= \" } ] }", &["spec.conditions[0].cel", "invalid CEL expression"])]
#[case::cel_unknown_variable("spec: { action: deny, conditions: [ { cel: \"vulnerability.cvss > 1.0\" } ] }", &["spec.conditions[0].cel", "unknown variable \"vulnerability\""])]
#[case::cel_unknown_field("spec: { action: deny, conditions: [ { cel: \"vuln.cvs > 1.0\" } ] }", &["spec.conditions[0].cel", "vuln has no field \"cvs\""])]
#[case::cel_empty("spec: { action: deny, conditions: [ { cel: \" \" } ] }", &["spec.conditions[0].cel", "empty CEL expression"])]
#[case::bad_new_scope_field("spec: { action: deny, scope: [ { field: serviceaccount, op: equals, value: a } ] }", &["spec.scope[0].field", "unknown variant `serviceaccount`"])]
fn schema_errors_name_the_field(#[case] spec: &str, #[case] parts: &[&str]) {
    let e = err_of(&format!("{HEAD}{spec}\n"));
    for p in parts {
        assert!(e.contains(p), "error {e:?} lacks {p:?}");
    }
}

#[test]
fn second_document_is_named() {
    let yaml = format!("{HEAD}spec: {{ action: deny }}\n---\napiVersion: vulngate.io/v1\nkind: SecurityRule\nmetadata: {{ name: y }}\nspec: {{ action: deny, extra: 1 }}\n");
    let e = err_of(&yaml);
    assert!(
        e.starts_with("r.yaml: document 2: rule \"y\": spec.extra: unknown field `extra`"),
        "{e}"
    );
}

#[test]
fn wrong_api_version_and_kind() {
    let e = err_of(
        "apiVersion: v1\nkind: SecurityRule\nmetadata: { name: x }\nspec: { action: deny }\n",
    );
    assert!(e.contains("apiVersion: expected vulngate.io/v1"), "{e}");
    let e = err_of(
        "apiVersion: vulngate.io/v1\nkind: Rule\nmetadata: { name: x }\nspec: { action: deny }\n",
    );
    assert!(e.contains("kind: expected SecurityRule"), "{e}");
}

#[test]
fn unknown_top_level_and_metadata_fields() {
    let e = err_of(&format!("{HEAD}spec: {{ action: deny }}\nstatus: {{}}\n"));
    assert!(e.contains("unknown field `status`"), "{e}");
    let e = err_of("apiVersion: vulngate.io/v1\nkind: SecurityRule\nmetadata: { name: x, namespace: y }\nspec: { action: deny }\n");
    assert!(
        e.contains("metadata") && e.contains("unknown field `namespace`"),
        "{e}"
    );
}

#[test]
fn invalid_rule_name() {
    let e = err_of("apiVersion: vulngate.io/v1\nkind: SecurityRule\nmetadata: { name: Deny_All }\nspec: { action: deny }\n");
    assert!(
        e.contains("metadata.name") && e.contains("invalid rule name"),
        "{e}"
    );
}

#[test]
fn duplicate_rule_names_across_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    fs::write(
        dir.path().join("a.yaml"),
        format!("{HEAD}spec: {{ action: deny }}\n"),
    )
    .expect("write");
    fs::write(
        dir.path().join("b.yml"),
        format!("{HEAD}spec: {{ action: audit }}\n"),
    )
    .expect("write");
    let e = RuleSet::load(dir.path())
        .expect_err("duplicate")
        .to_string();
    assert!(e.contains("b.yml: document 1"), "{e}");
    assert!(
        e.contains("duplicate rule name \"x\"") && e.contains("a.yaml: document 1"),
        "{e}"
    );
}

#[test]
fn directory_is_loaded_in_file_name_order_ignoring_other_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rule = |n: &str| {
        format!("apiVersion: vulngate.io/v1\nkind: SecurityRule\nmetadata: {{ name: {n} }}\nspec: {{ action: audit }}\n")
    };
    fs::write(dir.path().join("20-b.yaml"), rule("b")).expect("write");
    fs::write(dir.path().join("10-a.yml"), rule("a")).expect("write");
    fs::write(dir.path().join("README.md"), "not rules").expect("write");
    let set = RuleSet::load(dir.path()).expect("loads");
    let names: Vec<&str> = set.rules().iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, vec!["a", "b"]);
}

#[test]
fn empty_directory_and_missing_file_are_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let e = RuleSet::load(dir.path()).expect_err("empty").to_string();
    assert!(e.contains("no .yaml or .yml rule files"), "{e}");
    let e = RuleSet::load(&dir.path().join("nope.yaml"))
        .expect_err("missing")
        .to_string();
    assert!(e.contains("nope.yaml") && e.contains("cannot read"), "{e}");
}

#[test]
fn yaml_syntax_error_names_the_document_and_line() {
    let e = err_of(&format!("{HEAD}spec: {{ action: deny\n"));
    assert!(
        e.contains("r.yaml: document 1") && e.contains("line"),
        "{e}"
    );
}

#[test]
fn version_changes_with_any_edit() {
    let a = RuleSet::new(
        RuleSet::parse_yaml(&format!("{HEAD}spec: {{ action: deny }}\n"), "a").expect("ok"),
    )
    .expect("ok");
    let b = RuleSet::new(
        RuleSet::parse_yaml(&format!("{HEAD}spec: {{ action: audit }}\n"), "a").expect("ok"),
    )
    .expect("ok");
    let a2 = RuleSet::new(
        RuleSet::parse_yaml(&format!("{HEAD}spec: {{ action: deny }}\n"), "other").expect("ok"),
    )
    .expect("ok");
    assert_ne!(a.version(), b.version());
    assert_eq!(
        a.version(),
        a2.version(),
        "the version is the content, not the file name"
    );
}

#[test]
fn rule_round_trips_through_its_document() {
    let rules = RuleSet::parse_yaml(GOOD, "rules.yaml").expect("valid");
    let doc = serde_yaml_ng::to_string(&rules[0].to_doc()).expect("serialise");
    let again = RuleSet::parse_yaml(&doc, "again").expect("re-parse");
    assert_eq!(again[0].spec, rules[0].spec);
}

#[test]
fn default_rule_set_is_one_audit_rule_for_high() {
    let set = RuleSet::default_rules();
    assert_eq!(set.rules().len(), 1);
    let r = &set.rules()[0];
    assert_eq!(r.spec.action, Action::Audit);
    assert!(r.spec.scope.is_empty());
    assert_eq!(r.spec.conditions[0].severity, Some(Severity::High));
    assert_eq!(r.spec.conditions[0].max_count, Some(0));
}

#[test]
fn cel_nesting_beyond_the_parser_limit_is_an_error_not_a_crash() {
    let deep = format!("{}true{}", "(".repeat(1000), ")".repeat(1000));
    let e = err_of(&format!(
        "{HEAD}spec: {{ action: deny, conditions: [ {{ cel: \"{deep}\" }} ] }}\n"
    ));
    assert!(e.contains("spec.conditions[0].cel"), "{e}");
    assert!(e.contains("nested"), "{e}");
    for hostile in [
        format!("{}true", "!".repeat(2000)),
        format!("{}1", "-".repeat(2000)),
        format!("{}true", "true && ".repeat(500)),
        format!("{}1{}", "[".repeat(31), "]".repeat(31)),
        "x".repeat(5000),
    ] {
        // An error or a rule, never a crash.
        let _ = RuleSet::parse_yaml(
            &format!("{HEAD}spec: {{ action: deny, conditions: [ {{ cel: \"{hostile}\" }} ] }}\n"),
            "r.yaml",
        );
    }
}

#[test]
fn new_condition_fields_load_and_round_trip() {
    let yaml = format!(
        "{HEAD}spec:\n  action: deny\n  scope: [ {{ field: group, op: equals, value: dev }}, {{ field: user, op: notEquals, value: admin }}, {{ field: serviceAccount, op: startsWith, value: 'ci:' }} ]\n  conditions:\n    - {{ knownExploited: true }}\n    - {{ epssAtLeast: 0.5, epssPercentileAtLeast: 0.95 }}\n    - {{ severity: critical, publishedBefore: 30d }}\n    - {{ cel: \"vuln.cvss >= 9.0 && vuln.fixedVersion != ''\" }}\n"
    );
    let rules = RuleSet::parse_yaml(&yaml, "r.yaml").expect("loads");
    let doc = serde_yaml_ng::to_string(&rules[0].to_doc()).expect("yaml");
    let again = RuleSet::parse_yaml(&doc, "again").expect("round trip loads");
    assert_eq!(rules[0].spec, again[0].spec);
}

/// An alert's rule snapshot is the rule's `SecurityRule` document, built once per rule set and
/// shared by every decision (not rebuilt per alert); none for a rule the set does not have.
#[test]
fn rule_snapshots_are_the_documents_built_once() {
    let rules = RuleSet::default_rules();
    let name = rules.rules()[0].name.clone();
    let a = rules.snapshot(&name).expect("snapshot");
    let b = rules.snapshot(&name).expect("snapshot");
    assert!(std::sync::Arc::ptr_eq(&a, &b), "built once, shared");
    assert_eq!(*a, serde_json::to_value(rules.rules()[0].to_doc()).unwrap());
    assert_eq!(a["metadata"]["name"], name.as_str());
    assert!(rules.snapshot("no-such-rule").is_none());
}
