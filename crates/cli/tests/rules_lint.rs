//! `vulngate rules lint`, run as the real binary.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

const NOW: &str = "2026-11-28T12:00:00Z";

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn lint(args: &[&str]) -> Run {
    let out = Command::new(env!("CARGO_BIN_EXE_vulngate"))
        .current_dir(workspace())
        .args(["rules", "lint"])
        .args(args)
        .output()
        .unwrap();
    Run {
        code: out.status.code().unwrap(),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
    }
}

fn rule(name: &str, spec: &str) -> String {
    format!("---\napiVersion: vulngate.io/v1\nkind: SecurityRule\nmetadata: {{ name: {name} }}\nspec:\n{spec}")
}

fn write(dir: &tempfile::TempDir, name: &str, text: &str) -> String {
    let p = dir.path().join(name);
    std::fs::write(&p, text).unwrap();
    p.display().to_string()
}

/// Warnings from the JSON output, as (kind, rule, message).
fn warnings(run: &Run) -> Vec<(String, String, String)> {
    let v: Value = serde_json::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}\n{}", run.stdout, run.stderr));
    v["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| {
            (
                w["kind"].as_str().unwrap().to_string(),
                w["rule"].as_str().unwrap().to_string(),
                w["message"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn examples_are_clean() {
    let run = lint(&["--rules", "examples/rules.yaml", "--now", NOW]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert_eq!(run.stdout.trim(), "3 rules, 0 warnings");
    let run = lint(&[
        "--rules",
        "examples/rules.yaml",
        "--output",
        "json",
        "--now",
        NOW,
    ]);
    assert_eq!(run.code, 0);
    let v: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(v["rules"], 3);
    assert_eq!(v["warnings"], serde_json::json!([]));
}

#[test]
fn expired_allowances_and_exemptions_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let text = rule(
        "deny-critical",
        r#"  action: deny
  conditions: [{ severity: critical, maxCount: 0 }]
  allowedVulnerabilities:
    - { id: CVE-2023-0001, validUntil: 2026-11-27, justification: "JIRA-1" }
    - { id: CVE-2023-0002, validUntil: 2026-11-28 }
  exemptions:
    - { field: namespace, op: equals, value: sandbox, validUntil: 2025-01-31 }
"#,
    );
    let file = write(&dir, "rules.yaml", &text);
    let run = lint(&["--rules", &file, "--output", "json", "--now", NOW]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    let w = warnings(&run);
    // validUntil is inclusive: the allowance that ends today is still live.
    assert_eq!(w.len(), 2, "{w:?}");
    assert_eq!(w[0].0, "expired");
    assert_eq!(w[0].1, "deny-critical");
    assert!(
        w[0].2
            .starts_with("spec.allowedVulnerabilities[0] (CVE-2023-0001) expired on 2026-11-27"),
        "{}",
        w[0].2
    );
    assert!(
        w[1].2
            .starts_with("spec.exemptions[0] (namespace equals sandbox) expired on 2025-01-31"),
        "{}",
        w[1].2
    );
    // The text output names the file and document.
    let run = lint(&["--rules", &file, "--now", NOW]);
    assert_eq!(run.code, 1);
    assert!(
        run.stdout.contains(&format!(
            "warning: {file}: document 1: rule \"deny-critical\": spec.allowedVulnerabilities[0]"
        )),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.ends_with("1 rule, 2 warnings\n"),
        "{}",
        run.stdout
    );
    // A day earlier nothing had expired yet... except the exemption.
    let run = lint(&[
        "--rules",
        &file,
        "--output",
        "json",
        "--now",
        "2026-11-27T23:59:59Z",
    ]);
    assert_eq!(warnings(&run).len(), 1);
}

#[test]
fn rules_that_can_never_fire_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let text = [
        rule(
            "disabled",
            "  enabled: false\n  action: deny\n  conditions: [{ severity: low }]\n",
        ),
        rule("no-conditions", "  action: audit\n"),
        rule(
            "two-namespaces",
            "  action: deny\n  scope:\n    - { field: namespace, op: equals, value: a }\n    - { field: namespace, op: equals, value: b }\n  conditions: [{ severity: critical }]\n",
        ),
        rule(
            "two-label-values",
            "  action: deny\n  scope:\n    - { field: label, key: team, op: equals, value: x }\n    - { field: label, key: tier, op: equals, value: y }\n    - { field: label, key: team, op: equals, value: z }\n  conditions: [{ severity: critical }]\n",
        ),
        rule(
            "all-allowed",
            "  action: deny\n  conditions:\n    - severity: critical\n    - cveIds: [CVE-2021-44228, CVE-2024-3094]\n  allowedVulnerabilities:\n    - { id: CVE-2021-44228 }\n    - { id: CVE-2024-3094, justification: not shipped }\n",
        ),
        // Not reported: an unscanned-only rule fires; an allowance with an end date is temporary.
        rule("unscanned-only", "  action: deny\n  blockUnscanned: true\n"),
        rule(
            "temporarily-allowed",
            "  action: deny\n  conditions: [{ cveIds: [CVE-2021-44228] }]\n  allowedVulnerabilities: [{ id: CVE-2021-44228, validUntil: 2030-01-01 }]\n",
        ),
    ]
    .concat();
    let file = write(&dir, "rules.yaml", &text);
    let run = lint(&["--rules", &file, "--output", "json", "--now", NOW]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    let w = warnings(&run);
    let rules: Vec<&str> = w.iter().map(|x| x.1.as_str()).collect();
    assert_eq!(
        rules,
        [
            "disabled",
            "no-conditions",
            "two-namespaces",
            "two-label-values",
            "all-allowed"
        ],
        "{w:#?}"
    );
    assert!(w.iter().all(|x| x.0 == "never-fires"), "{w:#?}");
    assert!(w[0].2.contains("disabled"), "{}", w[0].2);
    assert!(w[1].2.contains("no conditions"), "{}", w[1].2);
    assert_eq!(
        w[2].2,
        "spec.scope[0] and spec.scope[1] require namespace to equal both \"a\" and \"b\": the rule never applies"
    );
    assert!(
        w[3].2
            .starts_with("spec.scope[0] and spec.scope[2] require label team"),
        "{}",
        w[3].2
    );
    assert_eq!(
        w[4].2,
        "spec.conditions[1] (cveIds CVE-2021-44228, CVE-2024-3094) never fires: every id is permanently allowed by this rule"
    );
}

#[test]
fn audit_rules_shadowing_deny_rules_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let text = [
        // Denies from 3 criticals on, in prod-; the audit rule fires at the first high.
        rule(
            "deny-many-critical",
            "  action: deny\n  scope: [{ field: namespace, op: startsWith, value: prod- }]\n  conditions: [{ severity: critical, maxCount: 2, packages: [\"openssl*\"] }]\n",
        ),
        rule(
            "audit-high",
            "  action: audit\n  conditions: [{ severity: high, maxCount: 0 }]\n",
        ),
        // Not shadowed: at the same vulnerability a deny rule goes first.
        rule(
            "deny-log4shell",
            "  action: deny\n  conditions: [{ cveIds: [CVE-2021-44228] }]\n",
        ),
        rule(
            "deny-two-high",
            "  action: deny\n  scope: [{ field: namespace, op: startsWith, value: staging- }]\n  conditions: [{ severity: high, maxCount: 1 }]\n",
        ),
        rule(
            "audit-team-x",
            "  action: audit\n  scope: [{ field: label, key: team, op: equals, value: x }]\n  conditions: [{ severity: medium, maxCount: 0 }]\n",
        ),
    ]
    .concat();
    let file = write(&dir, "rules.yaml", &text);
    let run = lint(&["--rules", &file, "--output", "json", "--now", NOW]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    let w = warnings(&run);
    let pairs: Vec<(&str, &str)> = w.iter().map(|x| (x.0.as_str(), x.1.as_str())).collect();
    assert_eq!(
        pairs,
        [
            ("shadowed", "deny-many-critical"),
            ("shadowed", "deny-two-high")
        ],
        "{w:#?}"
    );
    assert_eq!(
        w[0].2,
        "audit rule audit-high decides before deny rule deny-many-critical for an image with 3 critical vulnerabilities (CVSS 9.9, fixable, package opensslx) in namespace prod-x; use precedence: strictest or tighten audit-high"
    );
    assert!(
        w[1].2.starts_with("audit rule audit-high decides before deny rule deny-two-high for an image with 2 high vulnerabilities"),
        "{}",
        w[1].2
    );

    // Text output: one line per warning, with the rule's file and document.
    let run = lint(&["--rules", &file, "--now", NOW]);
    assert_eq!(run.code, 1);
    assert!(
        run.stdout.contains(&format!(
            "warning: {file}: document 1: rule \"deny-many-critical\": audit rule audit-high decides before"
        )),
        "{}",
        run.stdout
    );
}

#[test]
fn shadowing_within_an_audit_rules_scope_is_found() {
    let dir = tempfile::tempdir().unwrap();
    let text = [
        rule(
            "deny-two-high",
            "  action: deny\n  conditions: [{ severity: high, maxCount: 1 }]\n",
        ),
        rule(
            "audit-team-x",
            "  action: audit\n  scope: [{ field: label, key: team, op: equals, value: x }]\n  conditions: [{ severity: high, maxCount: 0 }]\n",
        ),
    ]
    .concat();
    let file = write(&dir, "rules.yaml", &text);
    let run = lint(&["--rules", &file, "--output", "json", "--now", NOW]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    let w = warnings(&run);
    assert_eq!(w.len(), 1, "{w:#?}");
    assert_eq!(
        w[0].2,
        "audit rule audit-team-x decides before deny rule deny-two-high for an image with 2 high vulnerabilities (CVSS 9.9, fixable, package probe-package) in label team=x; use precedence: strictest or tighten audit-team-x"
    );
}

/// Issue 18, item 8: an audit rule on critical before a deny rule on medium with maxCount 3. The
/// deny rule can decide (an image with 4 medium vulnerabilities is denied: it never-fires is not
/// reported), but the audit rule decides first for an image with a critical among them
/// (crates/core/tests/audit_before_deny.rs shows both decisions): reported as shadowed.
#[test]
fn audit_on_critical_shadows_deny_on_medium_with_max_count() {
    let dir = tempfile::tempdir().unwrap();
    let text = [
        rule(
            "audit-critical",
            "  action: audit\n  conditions: [{ severity: critical, maxCount: 0 }]\n",
        ),
        rule(
            "deny-medium",
            "  action: deny\n  conditions: [{ severity: medium, maxCount: 3 }]\n",
        ),
    ]
    .concat();
    let file = write(&dir, "rules.yaml", &text);
    let run = lint(&["--rules", &file, "--output", "json", "--now", NOW]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    let w = warnings(&run);
    assert_eq!(w.len(), 1, "{w:#?}");
    assert_eq!(
        (w[0].0.as_str(), w[0].1.as_str()),
        ("shadowed", "deny-medium")
    );
    assert_eq!(
        w[0].2,
        "audit rule audit-critical decides before deny rule deny-medium for an image with 1 critical and 3 medium vulnerabilities (CVSS 9.9, fixable, package probe-package); use precedence: strictest or tighten audit-critical"
    );

    // The deny rule first: the same (the precedence puts deny rules first anyway).
    let text = [
        rule(
            "deny-medium",
            "  action: deny\n  conditions: [{ severity: medium, maxCount: 3 }]\n",
        ),
        rule(
            "audit-critical",
            "  action: audit\n  conditions: [{ severity: critical, maxCount: 0 }]\n",
        ),
    ]
    .concat();
    let file = write(&dir, "rules2.yaml", &text);
    let run = lint(&["--rules", &file, "--output", "json", "--now", NOW]);
    assert_eq!(warnings(&run).len(), 1, "{}", run.stdout);

    // maxCount 0: at the critical the deny rule has already counted it and goes first: clean.
    let text = [
        rule(
            "audit-critical",
            "  action: audit\n  conditions: [{ severity: critical, maxCount: 0 }]\n",
        ),
        rule(
            "deny-medium",
            "  action: deny\n  conditions: [{ severity: medium, maxCount: 0 }]\n",
        ),
    ]
    .concat();
    let file = write(&dir, "rules3.yaml", &text);
    let run = lint(&["--rules", &file, "--output", "json", "--now", NOW]);
    assert_eq!(run.code, 0, "{}", run.stdout);
}

#[test]
fn schema_errors_exit_2_naming_file_document_rule_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let text = [
        rule("ok", "  action: audit\n  conditions: [{ severity: high }]\n"),
        rule(
            "bad-scope",
            "  action: deny\n  scope: [{ field: namespace, op: beginsWith, value: prod- }]\n  conditions: [{ severity: high }]\n",
        ),
    ]
    .concat();
    let file = write(&dir, "rules.yaml", &text);
    let run = lint(&["--rules", &file, "--now", NOW]);
    assert_eq!(run.code, 2, "{}", run.stdout);
    assert!(run.stdout.is_empty());
    let err = run.stderr.trim();
    assert!(err.starts_with("error: invalid rules: "), "{err}");
    for part in [
        format!("{file}: document 2"),
        "rule \"bad-scope\"".to_string(),
        "spec.scope[0].op".to_string(),
        "beginsWith".to_string(),
    ] {
        assert!(err.contains(&part), "{part:?} missing from {err}");
    }
    // A directory without rule files is an error too.
    let empty = tempfile::tempdir().unwrap();
    let run = lint(&["--rules", &empty.path().display().to_string()]);
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.contains("holds no .yaml or .yml rule files"),
        "{}",
        run.stderr
    );
}
