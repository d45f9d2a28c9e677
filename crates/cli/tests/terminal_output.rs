//! Strings that requests, reports and rule files choose reach the reader's terminal escaped
//! (issue 17 item 14): `alerts list`/`show`, `check`'s table and `rules lint` show control
//! characters and bidi overrides as `\x1b`, `\u{202e}`...; the JSON and SARIF outputs carry
//! the exact strings.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

use chrono::{TimeZone, Utc};
use serde_json::{json, Value};
use vulngate_core::engine::SeverityCounts;
use vulngate_core::Outcome;
use vulngate_server::{Alert, AlertAction, AlertStore};

const NOW: &str = "2026-11-28T12:00:00Z";

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn vulngate(args: &[&str]) -> Run {
    let out = Command::new(env!("CARGO_BIN_EXE_vulngate"))
        .current_dir(workspace())
        .env_remove("CLICOLOR_FORCE")
        .args(args)
        .output()
        .unwrap();
    Run {
        code: out.status.code().expect("exit code"),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
    }
}

/// No terminal control left: no ESC, BEL, C1 or bidi override (line breaks are layout).
fn assert_terminal_safe(text: &str) {
    let bad: Vec<char> = text
        .chars()
        .filter(|c| {
            matches!(c, '\u{0}'..='\u{8}' | '\u{b}'..='\u{1f}' | '\u{7f}'..='\u{9f}'
                | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
        })
        .collect();
    assert!(bad.is_empty(), "raw control characters {bad:?} in:\n{text}");
}

const EVIL_IMAGE: &str = "registry.example.com/shop/api\u{1b}[31m:1.0\u{202e}gpj.exe";
const EVIL_NAME: &str = "web\u{1b}]8;;https://evil.example/\u{7}click\u{9b}2J";

fn evil_alert() -> Alert {
    Alert {
        id: "0190a0a0-0000-7000-8000-000000000001".into(),
        time: Utc.timestamp_opt(1_780_000_000, 0).single().unwrap(),
        action: AlertAction::Deny,
        origin: Default::default(),
        decision: Outcome::Deny,
        cluster: None,
        namespace: Some("prod\u{1b}[2J".into()),
        kind: "Deployment".into(),
        name: Some(EVIL_NAME.into()),
        operation: "CREATE".into(),
        user: Some("mallory".into()),
        request_uid: "uid-1".into(),
        image: EVIL_IMAGE.into(),
        digest: None,
        rule: Some("deny-critical".into()),
        rule_snapshot: None,
        rules_version: Some("v1".into()),
        vulnerability: None,
        counts: SeverityCounts::default(),
        report: None,
        unscanned: None,
        reason: "denied\u{1b}[0m".into(),
        dry_run: false,
        break_glass: None,
        workload_kind: None,
        workload_name: None,
        count: 1,
        last_seen: None,
        kinds: Vec::new(),
        explanation: Default::default(),
        review: Default::default(),
    }
}

#[test]
fn alerts_list_and_show_escape_what_requests_chose() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = AlertStore::open(dir.path()).unwrap();
        store.record(&[evil_alert()]).unwrap();
    }
    let data = dir.path().to_str().unwrap();

    let run = vulngate(&["alerts", "list", "--data-dir", data]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_terminal_safe(&run.stdout);
    assert!(
        run.stdout
            .contains("registry.example.com/shop/api\\x1b[31m:1.0\\u{202e}gpj.exe"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .contains("Deployment/web\\x1b]8;;https://evil.example/\\x07click\\u{9b}2J"),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("prod\\x1b[2J"), "{}", run.stdout);

    // JSON: the exact strings.
    let run = vulngate(&["alerts", "list", "--data-dir", data, "-o", "json"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let list: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(list[0]["image"], EVIL_IMAGE);
    assert_eq!(list[0]["name"], EVIL_NAME);

    // `show` is JSON read on a terminal: C1 and bidi characters are \u escapes too, and the
    // value parses back exactly.
    let run = vulngate(&[
        "alerts",
        "show",
        "0190a0a0-0000-7000-8000-000000000001",
        "--data-dir",
        data,
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_terminal_safe(&run.stdout);
    let shown: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(shown["image"], EVIL_IMAGE);
    assert_eq!(shown["name"], EVIL_NAME);
    assert_eq!(shown["reason"], "denied\u{1b}[0m");
}

const DENY_CRITICAL: &str = r#"
apiVersion: vulngate.io/v1
kind: SecurityRule
metadata: { name: deny-critical }
spec:
  action: deny
  conditions: [{ severity: critical, maxCount: 0 }]
"#;

const EVIL_ID: &str = "CVE-2024-1000\u{1b}[2J\u{202e}";

#[test]
fn check_table_escapes_report_strings_and_json_sarif_stay_exact() {
    let dir = tempfile::tempdir().unwrap();
    let report = json!({
        "SchemaVersion": 2,
        "CreatedAt": "2026-11-27T10:00:00Z",
        "ArtifactName": "app",
        "ArtifactType": "container_image",
        "Results": [{
            "Target": "app (debian 12.8)",
            "Class": "os-pkgs",
            "Type": "debian",
            "Vulnerabilities": [{
                "VulnerabilityID": EVIL_ID,
                "PkgName": "openssl\u{1b}[8m",
                "InstalledVersion": "1.0.0",
                "FixedVersion": "3.0.14",
                "Severity": "CRITICAL",
            }],
        }]
    });
    let report_path = dir.path().join("report.json");
    std::fs::write(&report_path, report.to_string()).unwrap();
    let rules_path = dir.path().join("rules.yaml");
    std::fs::write(&rules_path, DENY_CRITICAL).unwrap();
    let args = |output: &'static str| {
        vec![
            "check".to_string(),
            "--image".into(),
            "ghcr.io/o/app:1".into(),
            "--report".into(),
            report_path.display().to_string(),
            "--rules".into(),
            rules_path.display().to_string(),
            "--now".into(),
            NOW.into(),
            "-o".into(),
            output.into(),
        ]
    };
    let run_with = |output| {
        let a = args(output);
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        vulngate(&a)
    };

    let run = run_with("table");
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert_terminal_safe(&run.stdout);
    assert!(
        run.stdout
            .contains("CVE-2024-1000\\x1b[2J\\u{202e} (critical)"),
        "{}",
        run.stdout
    );

    let run = run_with("json");
    assert_eq!(run.code, 1, "{}", run.stderr);
    let out: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(out["images"][0]["vulnerability"], EVIL_ID);

    let run = run_with("sarif");
    assert_eq!(run.code, 1, "{}", run.stderr);
    let out: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(
        out["runs"][0]["results"][0]["properties"]["vulnerability"],
        EVIL_ID
    );
}

#[test]
fn rules_lint_text_escapes_rule_values_and_json_stays_exact() {
    let dir = tempfile::tempdir().unwrap();
    let rules = r#"
apiVersion: vulngate.io/v1
kind: SecurityRule
metadata: { name: audit-high }
spec:
  action: audit
  conditions: [{ severity: high, maxCount: 0 }]
  exemptions:
    - { field: namespace, op: equals, value: "sandbox\e[31m\u202E", validUntil: 2025-01-31, justification: x }
"#;
    let path = dir.path().join("rules.yaml");
    std::fs::write(&path, rules).unwrap();
    let path = path.display().to_string();

    let run = vulngate(&["rules", "lint", "--rules", &path, "--now", NOW]);
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    assert_terminal_safe(&run.stdout);
    assert!(
        run.stdout
            .contains("namespace equals sandbox\\x1b[31m\\u{202e}) expired"),
        "{}",
        run.stdout
    );

    let run = vulngate(&[
        "rules", "lint", "--rules", &path, "--now", NOW, "-o", "json",
    ]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    let out: Value = serde_json::from_str(&run.stdout).unwrap();
    let message = out["warnings"][0]["message"].as_str().unwrap();
    assert!(
        message.contains("namespace equals sandbox\u{1b}[31m\u{202e}) expired"),
        "{message}"
    );
}
