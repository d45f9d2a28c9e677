//! Reports as other scanner versions write them (issue 18, item 7): real outputs of older Trivy
//! releases (tests/data/reports/trivy/*-template.sarif, *-legacy.json; origins in
//! tests/data/reports/NOTICE), the shapes of Trivy's 0.15-era SARIF template, UNKNOWN severities in
//! SARIF, and cosign vulnerability attestations without a scan result.

// Expected findings are written as tuples of their fields, one per row.
#![allow(clippy::type_complexity)]

use std::path::PathBuf;

use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use vulngate_core::engine::{evaluate, AnalyzedReport, Outcome, RequestContext, Subject};
use vulngate_core::findings::{parse, ParseError, Parsed};
use vulngate_core::model::{FindingsReport, FixState, ReportFormat, ReportIdentity, Severity};
use vulngate_core::rules::{Precedence, RuleSet};
use vulngate_core::ImageRef;

fn data(rel: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/reports")
        .join(rel);
    std::fs::read(&path).unwrap_or_else(|e| panic!("reading {rel}: {e}"))
}

fn to_bytes(v: &Value) -> Vec<u8> {
    serde_json::to_vec(v).expect("serialisable")
}

#[track_caller]
fn report_of(bytes: &[u8]) -> FindingsReport {
    match parse(bytes) {
        Ok(Parsed::Report(r)) => r,
        other => panic!("expected a report, got {other:?}"),
    }
}

#[track_caller]
fn error_of(bytes: &[u8]) -> ParseError {
    match parse(bytes) {
        Err(e) => e,
        Ok(p) => panic!("expected an error, got {p:?}"),
    }
}

fn now() -> DateTime<Utc> {
    "2026-06-01T12:00:00Z".parse().expect("time")
}

/// The decision of `rules` (YAML) on `report` for a plain image.
fn decide(rules: &str, report: &FindingsReport) -> vulngate_core::engine::Decision {
    let rules = RuleSet::new(RuleSet::parse_yaml(rules, "rules.yaml").expect("rules parse"))
        .expect("rule set");
    let image = ImageRef::parse("registry.example.com/shop/app:v1").expect("image");
    let analyzed = AnalyzedReport::new(report, ReportIdentity::default(), &[], Some(&image));
    evaluate(
        &rules,
        Precedence::Default,
        &RequestContext::default(),
        &image,
        Subject::Report(&analyzed),
        now(),
    )
}

// ------------------------------------------------------------------------------------------------
// Trivy 0.15-era SARIF template: rule ids `CVE-2019-1234/pkgname`

/// A rule and a result as Trivy's 0.15-era `contrib/sarif.tpl` wrote them: the rule id is
/// `<VulnerabilityID>/<PkgName>`, one rule per vulnerability and package, the labelled help text.
fn template_015_rule(id: &str, pkg: &str, severity: &str, level: &str) -> (Value, Value) {
    let rule_id = format!("{id}/{pkg}");
    let rule = json!({
        "id": rule_id,
        "name": "OS Package Vulnerability (Alpine)",
        "shortDescription": {"text": format!("{id} Package: {pkg}")},
        "fullDescription": {"text": "openssl: information disclosure in fork()."},
        "defaultConfiguration": {"level": level},
        "helpUri": format!("https://avd.aquasec.com/nvd/{}", id.to_lowercase()),
        "help": {"text": format!("Vulnerability {id}\nSeverity: {severity}\nPackage: {pkg}\nInstalled Version: 1.1.1c-r0\nFixed Version: 1.1.1d-r0\nLink: [{id}](https://avd.aquasec.com/nvd/{})", id.to_lowercase())},
        "properties": {"tags": ["vulnerability", severity], "precision": "very-high"}
    });
    let result = json!({
        "ruleId": rule_id,
        "level": level,
        "message": {"text": "OpenSSL 1.1.1 introduced a rewritten random number generator (RNG)."},
        "locations": [{"physicalLocation": {"artifactLocation": {"uri": "alpine:3.10 (alpine 3.10.2)", "uriBaseId": "ROOTPATH"}, "region": {"startLine": 1}}}]
    });
    (rule, result)
}

fn template_015_log(rules: Vec<(Value, Value)>) -> Value {
    let (rules, results): (Vec<Value>, Vec<Value>) = rules
        .into_iter()
        .enumerate()
        .map(|(i, (rule, mut result))| {
            result["ruleIndex"] = json!(i);
            (rule, result)
        })
        .unzip();
    json!({
        "$schema": "https://raw.githubusercontent.com/oasis-tcs/sarif-spec/master/Schemata/sarif-schema-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {"name": "Trivy", "informationUri": "https://github.com/aquasecurity/trivy",
                                "fullName": "Trivy Vulnerability Scanner", "version": "0.15.0", "rules": rules}},
            "results": results,
            "columnKind": "utf16CodeUnits"
        }]
    })
}

#[test]
fn sarif_trivy_015_rule_ids_are_split_into_id_and_package() {
    let log = template_015_log(vec![
        template_015_rule("CVE-2019-1549", "libcrypto1.1", "MEDIUM", "warning"),
        template_015_rule("CVE-2019-1549", "libssl1.1", "MEDIUM", "warning"),
        template_015_rule("CVE-2019-1551", "libssl1.1", "HIGH", "error"),
    ]);
    let r = report_of(&to_bytes(&log));
    let got: Vec<(&str, &str, Severity)> = r
        .findings
        .iter()
        .map(|f| (f.id.as_str(), f.package.name.as_str(), f.severity))
        .collect();
    assert_eq!(
        got,
        [
            ("CVE-2019-1549", "libcrypto1.1", Severity::Medium),
            ("CVE-2019-1549", "libssl1.1", Severity::Medium),
            ("CVE-2019-1551", "libssl1.1", Severity::High),
        ]
    );
    assert!(r
        .findings
        .iter()
        .all(|f| f.package.version.as_deref() == Some("1.1.1c-r0")
            && f.fixed_versions == ["1.1.1d-r0"]
            && f.fix_state == FixState::Fixed));

    // Counts are not inflated: one CVE in two packages is one vulnerability.
    let analyzed = AnalyzedReport::new(&r, ReportIdentity::default(), &[], None);
    assert_eq!(analyzed.vulnerabilities.len(), 2);
    assert_eq!(analyzed.counts.get(Severity::Medium), 1);

    // cveIds and allowlists match the split id.
    let cve_rule = "apiVersion: vulngate.io/v1\nkind: SecurityRule\nmetadata: {name: no-fork-leak}\nspec:\n  action: deny\n  conditions:\n    - cveIds: [CVE-2019-1549]\n";
    let d = decide(cve_rule, &r);
    assert_eq!(d.decision, Outcome::Deny, "{d:?}");
    assert_eq!(d.vulnerability.as_deref(), Some("CVE-2019-1549"));
    let allowed = "apiVersion: vulngate.io/v1\nkind: SecurityRule\nmetadata: {name: medium}\nspec:\n  action: deny\n  conditions:\n    - {severity: medium, maxCount: 0}\n  allowedVulnerabilities:\n    - {id: CVE-2019-1549}\n    - {id: CVE-2019-1551}\n";
    assert_eq!(decide(allowed, &r).decision, Outcome::Allow);
}

#[test]
fn sarif_id_with_package_suffix_and_no_labels_names_the_package() {
    // No help text and no message labels: the package comes from the rule id.
    let log = json!({"version": "2.1.0", "runs": [{"tool": {"driver": {"name": "Trivy", "version": "0.15.0", "rules": [
        {"id": "CVE-2021-3711/libssl1.1", "properties": {"tags": ["vulnerability", "CRITICAL"]}},
        {"id": "GHSA-jfh8-c2jp-5v3q/org.apache.logging.log4j:log4j-core", "properties": {"tags": ["vulnerability", "CRITICAL"]}},
        {"id": "not-an-id/with-slash", "properties": {"tags": ["vulnerability", "LOW"]}}
    ]}}, "results": [
        {"ruleId": "CVE-2021-3711/libssl1.1", "ruleIndex": 0, "message": {"text": "SM2 decryption buffer overflow."}},
        {"ruleId": "GHSA-jfh8-c2jp-5v3q/org.apache.logging.log4j:log4j-core", "ruleIndex": 1, "message": {"text": "Log4Shell"}},
        {"ruleId": "not-an-id/with-slash", "ruleIndex": 2, "message": {"text": "?"}}
    ]}]});
    let r = report_of(&to_bytes(&log));
    let got: Vec<(&str, &str)> = r
        .findings
        .iter()
        .map(|f| (f.id.as_str(), f.package.name.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            ("CVE-2021-3711", "libssl1.1"),
            ("GHSA-jfh8-c2jp-5v3q", "org.apache.logging.log4j:log4j-core"),
            // Not a vulnerability id before the slash: kept whole.
            ("not-an-id/with-slash", ""),
        ]
    );
}

#[test]
fn sarif_trivy_template_target_package_version_id_rule_ids() {
    // Another Trivy template of the same era: `<target>: <package>-<version> <id>`.
    let log = json!({"version": "2.1.0", "runs": [{"tool": {"driver": {"name": "Trivy", "version": "0.15.0", "rules": [
        {"id": "docker.io/fluxcd/flux:1.24.1 (alpine 3.14.2): libcurl-7.78.0-r0 CVE-2021-22945",
         "help": {"text": "Vulnerability CVE-2021-22945\nSeverity: CRITICAL\nPackage: libcurl\nInstalled Version: 7.78.0-r0\nFixed Version: 7.79.0-r0\nLink: [CVE-2021-22945](https://avd.aquasec.com/nvd/cve-2021-22945)"},
         "properties": {"tags": ["vulnerability", "CRITICAL"]}}
    ]}}, "results": [
        {"ruleId": "docker.io/fluxcd/flux:1.24.1 (alpine 3.14.2): libcurl-7.78.0-r0 CVE-2021-22945", "ruleIndex": 0, "level": "error", "message": {"text": "UAF and double-free in MQTT sending"}}
    ]}]});
    let r = report_of(&to_bytes(&log));
    let f = &r.findings[0];
    assert_eq!(
        (f.id.as_str(), f.package.name.as_str(), f.severity),
        ("CVE-2021-22945", "libcurl", Severity::Critical)
    );
    assert_eq!(f.package.version.as_deref(), Some("7.78.0-r0"));
}

// ------------------------------------------------------------------------------------------------
// UNKNOWN severity in SARIF

#[test]
fn sarif_unknown_tag_is_not_read_as_low_from_the_note_level() {
    // Trivy writes UNKNOWN with level `note` (as LOW) and a made-up security-severity.
    let trivy = json!({"version": "2.1.0", "runs": [{"tool": {"driver": {"name": "Trivy", "version": "0.50.0", "rules": [
        {"id": "CVE-2023-0001", "defaultConfiguration": {"level": "note"},
         "properties": {"tags": ["vulnerability", "security", "UNKNOWN"], "security-severity": "0.0"}},
        {"id": "CVE-2023-0002", "defaultConfiguration": {"level": "note"},
         "properties": {"tags": ["vulnerability", "security", "UNKNOWN"]}},
        {"id": "CVE-2023-0003", "defaultConfiguration": {"level": "note"},
         "properties": {"tags": ["vulnerability", "security", "LOW"], "security-severity": "2.0"}}
    ]}}, "results": [
        {"ruleId": "CVE-2023-0001", "ruleIndex": 0, "level": "note", "message": {"text": "Package: a\nInstalled Version: 1\nVulnerability CVE-2023-0001\nSeverity: UNKNOWN\nFixed Version: \nLink: [CVE-2023-0001](x)"}},
        {"ruleId": "CVE-2023-0002", "ruleIndex": 1, "level": "note", "message": {"text": "Package: b\nInstalled Version: 1"}},
        {"ruleId": "CVE-2023-0003", "ruleIndex": 2, "level": "note", "message": {"text": "Package: c\nInstalled Version: 1"}}
    ]}]});
    let r = report_of(&to_bytes(&trivy));
    let got: Vec<Severity> = r.findings.iter().map(|f| f.severity).collect();
    assert_eq!(got, [Severity::Unknown, Severity::Unknown, Severity::Low]);

    // Any tool: an UNKNOWN tag and only a level is unknown, not the level's severity.
    let other = json!({"version": "2.1.0", "runs": [{"tool": {"driver": {"name": "scanner-x", "rules": [
        {"id": "CVE-2023-0004", "properties": {"tags": ["security", "UNKNOWN"]}}
    ]}}, "results": [{"ruleId": "CVE-2023-0004", "level": "note"}, {"ruleId": "CVE-2023-0005", "level": "note"}]}]});
    let r = report_of(&to_bytes(&other));
    let got: Vec<Severity> = r.findings.iter().map(|f| f.severity).collect();
    assert_eq!(
        got,
        [Severity::Unknown, Severity::Low],
        "the result without a rule keeps its level"
    );

    // So a rule on low and above does not count them.
    let low = "apiVersion: vulngate.io/v1\nkind: SecurityRule\nmetadata: {name: low}\nspec:\n  action: deny\n  conditions:\n    - {severity: low, maxCount: 1}\n";
    let r = report_of(&to_bytes(&trivy));
    assert_eq!(decide(low, &r).decision, Outcome::Allow);
}

// ------------------------------------------------------------------------------------------------
// cosign vulnerability attestation with `scanner.result: null`

fn cosign_statement(result: Value) -> Value {
    json!({
        "_type": "https://in-toto.io/Statement/v0.1",
        "subject": [{"name": "registry.example.com/shop/app", "digest": {"sha256": "9dda3d9cb7a4b9396e324e078cb7ca960f6d33d08d3d380a25775355d7c59e0d"}}],
        "predicateType": "https://cosign.sigstore.dev/attestation/vuln/v1",
        "predicate": {
            "invocation": {"parameters": null, "uri": "", "event_id": "", "builder.id": ""},
            "scanner": {"uri": "pkg:github/aquasecurity/trivy@0.59.0", "version": "0.59.0",
                        "db": {"uri": "", "version": ""}, "result": result},
            "metadata": {"scanStartedOn": "2026-11-28T00:00:00Z", "scanFinishedOn": "2026-11-28T00:00:01Z"}
        }
    })
}

#[test]
fn cosign_vuln_null_result_is_refused_naming_the_missing_result() {
    let e = error_of(&to_bytes(&cosign_statement(Value::Null)));
    assert_eq!(e.format, "cosign-vuln");
    assert_eq!(e.path, "$.predicate.scanner.result");
    assert!(
        e.message.contains("scanner.result is null") && e.message.contains("no scan result"),
        "{e}"
    );
    assert!(!e.message.contains("neither"), "wrong cause named: {e}");

    // The bare predicate (what `trivy --format cosign-vuln` writes) says the same.
    let bare = cosign_statement(Value::Null)["predicate"].clone();
    let e = error_of(&to_bytes(&bare));
    assert_eq!(e.path, "$.scanner.result");
    assert!(e.message.contains("scanner.result is null"), "{e}");

    // An in-toto vulns predicate with a null result: also named as such.
    let mut vulns = cosign_statement(Value::Null);
    vulns["predicateType"] = json!("https://in-toto.io/attestation/vulns/v0.2");
    let e = error_of(&to_bytes(&vulns));
    assert_eq!(e.path, "$.predicate.scanner.result");
    assert!(e.message.contains("scanner.result is null"), "{e}");

    // A result that is a report of no known format still gets the format message.
    let e = error_of(&to_bytes(&cosign_statement(json!({"foo": 1}))));
    assert!(e.message.contains("neither a Trivy nor a Grype"), "{e}");
}

// ------------------------------------------------------------------------------------------------
// Real outputs of older scanner versions

#[test]
fn sarif_trivy_template_era_alpine_310() {
    // Trivy's SARIF template before the built-in writer (rule ids `[SEVERITY] CVE-...`, every
    // result at level `error`, the package name as a third tag, package data in the help text).
    let r = report_of(&data("trivy/alpine-310-template.sarif"));
    assert_eq!(r.format, ReportFormat::Sarif);
    assert_eq!(r.scanner.name, "Trivy");
    assert_eq!(r.scanner.version, None);
    assert_eq!(r.created, None);
    let got: Vec<(&str, Severity, &str, Option<&str>, Vec<&str>)> = r
        .findings
        .iter()
        .map(|f| {
            (
                f.id.as_str(),
                f.severity,
                f.package.name.as_str(),
                f.package.version.as_deref(),
                f.fixed_versions.iter().map(String::as_str).collect(),
            )
        })
        .collect();
    let m = Severity::Medium;
    let v = Some("1.1.1c-r0");
    assert_eq!(
        got,
        [
            ("CVE-2019-1549", m, "openssl", v, vec!["1.1.1d-r0"]),
            ("CVE-2019-1551", m, "openssl", v, vec!["1.1.1d-r2"]),
            ("CVE-2019-1563", m, "openssl", v, vec!["1.1.1d-r0"]),
            ("CVE-2020-1967", m, "openssl", v, vec!["1.1.1g-r0"]),
            // The tag says LOW: the result's `error` level must not make it high.
            (
                "CVE-2019-1547",
                Severity::Low,
                "openssl",
                v,
                vec!["1.1.1d-r0"]
            ),
        ]
    );
    assert!(r.findings.iter().all(|f| f.cvss.is_none()));
}

#[test]
fn grype_json_of_2021() {
    // Before `fix {versions, state}` and `cvss[]`: `fixedInVersion` and `cvssV3` (cvssV2 unused).
    let r = report_of(&data("grype/imgs-2021.json"));
    assert_eq!(r.format, ReportFormat::Grype);
    assert_eq!(r.scanner.name, "grype");
    assert_eq!(r.scanner.version.as_deref(), Some("[not provided]"));
    assert_eq!(r.created, None);
    assert_eq!(
        r.subject_digest.as_deref(),
        Some("sha256:ee4cdbd03ad61d95aeb4d32e06452840d23ed37390fc6f1ae9a0cb5626282c32")
    );
    assert_eq!(r.artifact_name.as_deref(), Some("user-input"));
    let got: Vec<(&str, Severity, Option<f32>, Vec<&str>, FixState)> = r
        .findings
        .iter()
        .map(|f| {
            (
                f.id.as_str(),
                f.severity,
                f.cvss,
                f.fixed_versions.iter().map(String::as_str).collect(),
                f.fix_state,
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            (
                "CVE-1999-0001",
                Severity::Low,
                Some(4.0),
                vec!["the-next-version"],
                FixState::Fixed
            ),
            (
                "CVE-1999-0002",
                Severity::Critical,
                None,
                vec![],
                FixState::Unknown
            ),
            (
                "CVE-1999-0003",
                Severity::High,
                None,
                vec!["the-other-next-version"],
                FixState::Fixed
            ),
        ]
    );
    assert!(r.findings.iter().all(|f| f.package.name == "package-1"
        && f.package.version.as_deref() == Some("1.1.1")
        && f.package.kind.as_deref() == Some("deb")
        && f.package.purl.is_none()));
}

#[test]
fn grype_sarif_of_2021() {
    // Driver "Anchore Grype Scan", `<id>-<package>` rule ids, severity only from security-severity.
    let r = report_of(&data("grype/image-2021.sarif"));
    assert_eq!(r.format, ReportFormat::Sarif);
    assert_eq!(r.scanner.name, "Anchore Grype Scan");
    assert_eq!(r.scanner.version.as_deref(), Some("0.0.0-dev"));
    let got: Vec<(
        &str,
        Severity,
        Option<f32>,
        &str,
        Option<&str>,
        Option<&str>,
    )> = r
        .findings
        .iter()
        .map(|f| {
            (
                f.id.as_str(),
                f.severity,
                f.cvss,
                f.package.name.as_str(),
                f.package.version.as_deref(),
                f.package.kind.as_deref(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            (
                "CVE-1999-0001",
                Severity::Low,
                Some(1.0),
                "package-1",
                Some("1.0.1"),
                Some("deb")
            ),
            (
                "CVE-1999-0002",
                Severity::Critical,
                Some(9.0),
                "package-2",
                Some("2.0.1"),
                Some("deb")
            ),
        ]
    );
    assert!(r
        .findings
        .iter()
        .all(|f| f.fixed_versions.is_empty() && f.fix_state == FixState::Unknown));
}

#[test]
fn trivy_json_before_schema_version_2() {
    // Trivy before 0.20 printed a bare list of results.
    let r = report_of(&data("trivy/centos-7-critical-legacy.json"));
    assert_eq!(r.format, ReportFormat::Trivy);
    assert_eq!(r.scanner.name, "trivy");
    assert_eq!(r.scanner.version, None);
    assert_eq!(r.created, None, "no scan time: stale for maxReportAge");
    assert_eq!(r.subject_digest, None);
    assert_eq!(
        r.artifact_name.as_deref(),
        Some("testdata/fixtures/centos-7.tar.gz")
    );
    let got: Vec<(&str, &str, &str, &str)> = r
        .findings
        .iter()
        .map(|f| {
            (
                f.id.as_str(),
                f.package.name.as_str(),
                f.package.version.as_deref().unwrap_or_default(),
                f.fixed_versions[0].as_str(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            (
                "CVE-2018-14618",
                "curl",
                "7.29.0-51.el7",
                "7.29.0-51.el7_6.3"
            ),
            (
                "CVE-2018-14618",
                "libcurl",
                "7.29.0-51.el7",
                "7.29.0-51.el7_6.3"
            ),
            (
                "CVE-2019-3855",
                "libssh2",
                "1.4.3-12.el7",
                "1.4.3-12.el7_6.2"
            ),
            ("CVE-2018-15686", "systemd", "219-62.el7_6.5", "219-67.el7"),
            (
                "CVE-2018-15686",
                "systemd-libs",
                "219-62.el7_6.5",
                "219-67.el7"
            ),
            (
                "CVE-2019-12735",
                "vim-minimal",
                "2:7.4.160-5.el7",
                "2:7.4.160-6.el7_6"
            ),
        ]
    );
    assert!(r.findings.iter().all(|f| f.severity == Severity::Critical
        && f.fix_state == FixState::Fixed
        && f.cvss.is_none()));
    // 6 findings, 4 vulnerabilities.
    let analyzed = AnalyzedReport::new(&r, ReportIdentity::default(), &[], None);
    assert_eq!(analyzed.counts.get(Severity::Critical), 4);

    // Other arrays are still no known format.
    for other in [&b"[]"[..], b"[{\"id\": 1}]", b"[{\"Target\": \"x\"}, 2]"] {
        let e = error_of(other);
        assert_eq!(e.format, "unknown", "{e}");
    }
    // A damaged legacy report names the format and the place.
    let e = error_of(br#"[{"Target": "x", "Vulnerabilities": [{"PkgName": "a"}]}]"#);
    assert_eq!(e.format, "trivy");
    assert!(e.path.starts_with("$[0].Vulnerabilities[0]"), "{e}");
}
