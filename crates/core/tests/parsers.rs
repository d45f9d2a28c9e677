//! Report parser tests: every fixture under tests/data/reports (real scanner outputs and hand-made
//! documents in the real formats), detection, error paths and robustness.

use std::path::PathBuf;

use chrono::{DateTime, Utc};
use rstest::rstest;
use serde_json::{json, Value};
use vulngate_core::findings::{parse, parse_format, parse_vex, ParseError, Parsed};
use vulngate_core::model::{
    Finding, FindingsReport, FixState, Package, ReportFormat, Scanner, Severity, VexStatement,
    VexStatus,
};

fn path(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/reports")
        .join(rel)
}

fn data(rel: &str) -> Vec<u8> {
    std::fs::read(path(rel)).unwrap_or_else(|e| panic!("reading {rel}: {e}"))
}

fn json_of(rel: &str) -> Value {
    serde_json::from_slice(&data(rel)).unwrap_or_else(|e| panic!("{rel} is not JSON: {e}"))
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
fn report(rel: &str) -> FindingsReport {
    report_of(&data(rel))
}

#[track_caller]
fn error_of(bytes: &[u8]) -> ParseError {
    match parse(bytes) {
        Err(e) => e,
        Ok(p) => panic!("expected an error, got {p:?}"),
    }
}

fn ts(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s)
        .expect("test timestamp")
        .with_timezone(&Utc)
}

fn scanner(name: &str, version: Option<&str>, db: Option<&str>) -> Scanner {
    Scanner {
        name: name.into(),
        version: version.map(Into::into),
        db: db.map(Into::into),
    }
}

fn strings(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

/// Checks the fields every finding has.
#[track_caller]
#[allow(clippy::too_many_arguments)]
fn check(
    f: &Finding,
    id: &str,
    severity: Severity,
    cvss: Option<f32>,
    name: &str,
    version: Option<&str>,
    fixed: &[&str],
    fix_state: FixState,
) {
    assert_eq!(f.id, id, "id of {f:?}");
    assert_eq!(f.severity, severity, "severity of {id}");
    assert_eq!(f.cvss, cvss, "cvss of {id}");
    assert_eq!(f.package.name, name, "package of {id}");
    assert_eq!(f.package.version.as_deref(), version, "version of {id}");
    assert_eq!(f.fixed_versions, strings(fixed), "fixed versions of {id}");
    assert_eq!(f.fix_state, fix_state, "fix state of {id}");
}

fn unique_ids(r: &FindingsReport) -> Vec<&str> {
    let mut ids: Vec<&str> = r.findings.iter().map(|f| f.id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    ids
}

// ------------------------------------------------------------------------------------------------
// Trivy JSON

#[test]
fn trivy_alpine_310() {
    let r = report("trivy/alpine-310.json");
    assert_eq!(r.format, ReportFormat::Trivy);
    assert_eq!(r.scanner, scanner("trivy", Some("dev"), None));
    assert_eq!(r.created, Some(ts("2021-08-25T12:20:30.000000005Z")));
    assert_eq!(
        r.artifact_name.as_deref(),
        Some("testdata/fixtures/images/alpine-310.tar.gz")
    );
    // No RepoDigests in this report; ImageID is the config digest and must not be used.
    assert_eq!(r.subject_digest, None);
    assert!(r.vex.is_empty());
    assert_eq!(r.findings.len(), 4);
    assert_eq!(unique_ids(&r), ["CVE-2019-1549", "CVE-2019-1551"]);
    let f = &r.findings;
    check(
        &f[0],
        "CVE-2019-1549",
        Severity::Medium,
        Some(5.3),
        "libcrypto1.1",
        Some("1.1.1c-r0"),
        &["1.1.1d-r0"],
        FixState::Fixed,
    );
    check(
        &f[1],
        "CVE-2019-1551",
        Severity::Medium,
        Some(5.3),
        "libcrypto1.1",
        Some("1.1.1c-r0"),
        &["1.1.1d-r2"],
        FixState::Fixed,
    );
    check(
        &f[2],
        "CVE-2019-1549",
        Severity::Medium,
        Some(5.3),
        "libssl1.1",
        Some("1.1.1c-r0"),
        &["1.1.1d-r0"],
        FixState::Fixed,
    );
    check(
        &f[3],
        "CVE-2019-1551",
        Severity::Medium,
        Some(5.3),
        "libssl1.1",
        Some("1.1.1c-r0"),
        &["1.1.1d-r2"],
        FixState::Fixed,
    );
    assert_eq!(
        f[0].package,
        Package {
            name: "libcrypto1.1".into(),
            version: Some("1.1.1c-r0".into()),
            purl: Some("pkg:apk/alpine/libcrypto1.1@1.1.1c-r0?arch=x86_64&distro=3.10.2".into()),
            kind: Some("alpine".into()),
        }
    );
    assert_eq!(
        f[3].package.purl.as_deref(),
        Some("pkg:apk/alpine/libssl1.1@1.1.1c-r0?arch=x86_64&distro=3.10.2")
    );
    assert!(f.iter().all(|f| f.aliases.is_empty() && f.has_fix()));
}

#[test]
fn trivy_centos_7() {
    let r = report("trivy/centos-7.json");
    assert_eq!(r.format, ReportFormat::Trivy);
    assert_eq!(r.scanner, scanner("trivy", Some("dev"), None));
    assert_eq!(r.created, Some(ts("2021-08-25T12:20:30.000000005Z")));
    assert_eq!(
        r.artifact_name.as_deref(),
        Some("testdata/fixtures/images/centos-7.tar.gz")
    );
    assert_eq!(r.subject_digest, None);
    assert_eq!(r.findings.len(), 3);
    let f = &r.findings;
    // Severity LOW is Trivy's primary severity; VendorSeverity nvd 3 (HIGH) must not win. V2Score 7.2 ignored.
    check(
        &f[0],
        "CVE-2019-18276",
        Severity::Low,
        Some(7.8),
        "bash",
        Some("4.2.46-31.el7"),
        &[],
        FixState::WontFix,
    );
    check(
        &f[1],
        "CVE-2019-1559",
        Severity::Medium,
        Some(5.9),
        "openssl-libs",
        Some("1:1.0.2k-16.el7"),
        &["1:1.0.2k-19.el7"],
        FixState::Fixed,
    );
    check(
        &f[2],
        "CVE-2018-0734",
        Severity::Low,
        Some(5.9),
        "openssl-libs",
        Some("1:1.0.2k-16.el7"),
        &["1:1.0.2k-19.el7"],
        FixState::Fixed,
    );
    assert_eq!(f[0].package.kind.as_deref(), Some("centos"));
    assert_eq!(
        f[1].package.purl.as_deref(),
        Some(
            "pkg:rpm/centos/openssl-libs@1.0.2k-16.el7?arch=x86_64&distro=centos-7.6.1810&epoch=1"
        )
    );
}

#[test]
fn trivy_debian_buster() {
    let r = report("trivy/debian-buster.json");
    assert_eq!(r.scanner, scanner("trivy", Some("dev"), None));
    assert_eq!(r.created, Some(ts("2021-08-25T12:20:30.000000005Z")));
    assert_eq!(
        r.artifact_name.as_deref(),
        Some("testdata/fixtures/images/debian-buster.tar.gz")
    );
    assert_eq!(r.findings.len(), 2);
    let f = &r.findings;
    check(
        &f[0],
        "CVE-2019-18276",
        Severity::Low,
        Some(7.8),
        "bash",
        Some("5.0-4"),
        &[],
        FixState::NotFixed,
    );
    check(
        &f[1],
        "CVE-2019-18224",
        Severity::Critical,
        Some(9.8),
        "libidn2-0",
        Some("2.0.5-1"),
        &["2.0.5-1+deb10u1"],
        FixState::Fixed,
    );
    assert_eq!(
        f[1].package.purl.as_deref(),
        Some("pkg:deb/debian/libidn2-0@2.0.5-1?arch=amd64&distro=debian-10.1")
    );
    assert_eq!(f[1].package.kind.as_deref(), Some("debian"));
    assert!(!f[0].has_fix());
}

fn trivy_with_vuln(vuln: Value) -> Vec<u8> {
    to_bytes(&json!({
        "SchemaVersion": 2,
        "ArtifactName": "registry.example.com/app:1",
        "Metadata": {"ImageID": "sha256:ffff", "RepoDigests": ["registry.example.com/app@sha256:0123abcd"]},
        "Results": [
            {"Target": "x", "Class": "lang-pkgs", "Type": "gomod", "Vulnerabilities": [vuln]},
            {"Target": "secrets", "Class": "secret"},
            {"Target": "empty", "Vulnerabilities": null}
        ]
    }))
}

#[rstest]
#[case::fixed(Some("fixed"), Some("1.2.3"), FixState::Fixed)]
#[case::affected(Some("affected"), None, FixState::NotFixed)]
#[case::will_not_fix(Some("will_not_fix"), None, FixState::WontFix)]
#[case::fix_deferred(Some("fix_deferred"), None, FixState::NotFixed)]
#[case::end_of_life(Some("end_of_life"), None, FixState::WontFix)]
#[case::unknown(Some("unknown"), None, FixState::Unknown)]
#[case::no_status_fixed(None, Some("1.2.3"), FixState::Fixed)]
#[case::no_status_unfixed(None, None, FixState::NotFixed)]
fn trivy_fix_states(
    #[case] status: Option<&str>,
    #[case] fixed: Option<&str>,
    #[case] expected: FixState,
) {
    let mut v = json!({"VulnerabilityID": "CVE-2024-0001", "PkgName": "p", "InstalledVersion": "1.0", "Severity": "HIGH"});
    if let Some(s) = status {
        v["Status"] = json!(s);
    }
    if let Some(f) = fixed {
        v["FixedVersion"] = json!(f);
    }
    let r = report_of(&trivy_with_vuln(v));
    assert_eq!(r.findings.len(), 1);
    assert_eq!(r.findings[0].fix_state, expected);
}

#[test]
fn trivy_details() {
    let r = report_of(&trivy_with_vuln(json!({
        "VulnerabilityID": "GHSA-abcd-efgh-ijkl",
        "PkgName": "golang.org/x/net",
        "InstalledVersion": "v0.30.0",
        "FixedVersion": "0.33.0, 0.34.0,, ",
        "Severity": "SUPER-BAD",
        "VendorSeverity": {"nvd": 4},
        "CVSS": {
            "nvd": {"V2Score": 9.9, "V3Score": 7.5},
            "ghsa": {"V40Score": 8.7, "V3Score": 5.0},
            "weird": null,
            "bogus": {"V3Score": 42.0}
        }
    })));
    assert_eq!(r.subject_digest.as_deref(), Some("sha256:0123abcd"));
    assert_eq!(
        r.artifact_name.as_deref(),
        Some("registry.example.com/app:1")
    );
    assert_eq!(r.scanner, scanner("trivy", None, None));
    assert_eq!(r.created, None);
    let f = &r.findings[0];
    // Unknown severity words are Unknown, not an error; out-of-range scores are ignored.
    check(
        f,
        "GHSA-abcd-efgh-ijkl",
        Severity::Unknown,
        Some(8.7),
        "golang.org/x/net",
        Some("v0.30.0"),
        &["0.33.0", "0.34.0"],
        FixState::Fixed,
    );
    assert_eq!(f.package.kind.as_deref(), Some("gomod"));
    assert_eq!(f.package.purl, None);
}

#[test]
fn trivy_without_results_is_a_clean_report() {
    let r = report_of(
        br#"{"SchemaVersion": 2, "ArtifactName": "x", "ArtifactType": "container_image"}"#,
    );
    assert_eq!(r.format, ReportFormat::Trivy);
    assert!(r.findings.is_empty());
}

// ------------------------------------------------------------------------------------------------
// Grype JSON

#[test]
fn grype_imgs() {
    let r = report("grype/imgs.json");
    assert_eq!(r.format, ReportFormat::Grype);
    assert_eq!(r.scanner, scanner("grype", Some("[not provided]"), None));
    assert_eq!(r.created, None, "empty descriptor.timestamp");
    assert_eq!(
        r.subject_digest.as_deref(),
        Some("sha256:ca738abb87a8d58f112d3400ebb079b61ceae7dc290beb34bda735be4b1941d5")
    );
    assert_eq!(r.artifact_name.as_deref(), Some("user-input"));
    assert_eq!(r.findings.len(), 2);
    let f = &r.findings;
    check(
        &f[0],
        "CVE-1999-0001",
        Severity::Low,
        Some(8.2),
        "package-1",
        Some("1.1.1"),
        &["1.2.1", "2.1.3", "3.4.0"],
        FixState::Fixed,
    );
    assert_eq!(f[0].package.purl, None, "empty purl");
    assert_eq!(f[0].package.kind.as_deref(), Some("rpm"));
    check(
        &f[1],
        "CVE-1999-0002",
        Severity::Critical,
        Some(8.5),
        "package-2",
        Some("2.2.2"),
        &[],
        FixState::Unknown,
    );
    assert_eq!(
        f[1].package.purl.as_deref(),
        Some("pkg:deb/package-2@2.2.2")
    );
    assert_eq!(f[1].package.kind.as_deref(), Some("deb"));
    assert!(f.iter().all(|f| f.aliases.is_empty()));
}

#[test]
fn grype_ghsa_with_related_cve() {
    let doc = json!({
        "matches": [{
            "vulnerability": {
                "id": "GHSA-jfh8-c2jp-5v3q",
                "severity": "Critical",
                "cvss": [{"version": "2.0", "metrics": {"baseScore": 9.3}}],
                "fix": {"versions": ["2.15.0"], "state": "fixed"}
            },
            "relatedVulnerabilities": [
                {"id": "CVE-2021-44228", "cvss": [
                    {"version": "3.1", "metrics": {"baseScore": 10.0}},
                    {"version": "2.0", "metrics": {"baseScore": 9.3}}
                ]},
                {"id": "GHSA-jfh8-c2jp-5v3q"},
                {"id": "CVE-2021-44228"}
            ],
            "artifact": {"name": "log4j-core", "version": "2.14.1", "type": "java-archive",
                         "purl": "pkg:maven/org.apache.logging.log4j/log4j-core@2.14.1"}
        }, {
            "vulnerability": {"id": "CVE-2024-0002", "severity": "bogus", "fix": {"versions": [], "state": "wont-fix"}},
            "artifact": {"name": "zlib", "version": "1.2.11"}
        }, {
            "vulnerability": {"id": "CVE-2024-0003", "severity": "Negligible", "fix": {"state": "not-fixed"},
                              "cvss": [{"version": "4.0", "metrics": {"baseScore": 2.1}}]},
            "artifact": {"name": "zlib", "version": "1.2.11"}
        }],
        "source": {"type": "directory", "target": "/src"},
        "descriptor": {"name": "grype", "version": "0.80.0", "timestamp": "2024-09-01T10:00:00.123456789+02:00",
                       "db": {"status": {"schemaVersion": "v6.0.2", "built": "2024-09-01T01:30:00Z"}}}
    });
    let r = report_of(&to_bytes(&doc));
    assert_eq!(
        r.scanner,
        scanner("grype", Some("0.80.0"), Some("2024-09-01T01:30:00Z"))
    );
    assert_eq!(r.created, Some(ts("2024-09-01T08:00:00.123456789Z")));
    assert_eq!(r.artifact_name.as_deref(), Some("/src"));
    assert_eq!(r.subject_digest, None);
    let f = &r.findings;
    check(
        &f[0],
        "GHSA-jfh8-c2jp-5v3q",
        Severity::Critical,
        Some(10.0),
        "log4j-core",
        Some("2.14.1"),
        &["2.15.0"],
        FixState::Fixed,
    );
    assert_eq!(f[0].aliases, strings(&["CVE-2021-44228"]));
    check(
        &f[1],
        "CVE-2024-0002",
        Severity::Unknown,
        None,
        "zlib",
        Some("1.2.11"),
        &[],
        FixState::WontFix,
    );
    check(
        &f[2],
        "CVE-2024-0003",
        Severity::Negligible,
        Some(2.1),
        "zlib",
        Some("1.2.11"),
        &[],
        FixState::NotFixed,
    );
    // Older Grype: db.built at the top of db.
    let mut old = doc.clone();
    old["descriptor"]["db"] = json!({"built": "2023-01-01T00:00:00Z", "schemaVersion": 5});
    assert_eq!(
        report_of(&to_bytes(&old)).scanner.db.as_deref(),
        Some("2023-01-01T00:00:00Z")
    );
}

// ------------------------------------------------------------------------------------------------
// SARIF

#[test]
fn sarif_trivy_alpine_310() {
    let r = report("trivy/alpine-310.sarif");
    assert_eq!(r.format, ReportFormat::Sarif);
    assert_eq!(r.scanner, scanner("Trivy", Some("dev"), None));
    assert_eq!(r.created, None);
    assert_eq!(
        r.artifact_name.as_deref(),
        Some("testdata/fixtures/images/alpine-310.tar.gz")
    );
    assert_eq!(r.subject_digest, None, "repoDigests is null");
    assert_eq!(r.findings.len(), 4);
    let f = &r.findings;
    // Severity from the tag word (MEDIUM), cvss from cvssv3_baseScore, package from the message lines.
    check(
        &f[0],
        "CVE-2019-1549",
        Severity::Medium,
        Some(5.3),
        "libcrypto1.1",
        Some("1.1.1c-r0"),
        &["1.1.1d-r0"],
        FixState::Fixed,
    );
    check(
        &f[1],
        "CVE-2019-1551",
        Severity::Medium,
        Some(5.3),
        "libcrypto1.1",
        Some("1.1.1c-r0"),
        &["1.1.1d-r2"],
        FixState::Fixed,
    );
    check(
        &f[2],
        "CVE-2019-1549",
        Severity::Medium,
        Some(5.3),
        "libssl1.1",
        Some("1.1.1c-r0"),
        &["1.1.1d-r0"],
        FixState::Fixed,
    );
    check(
        &f[3],
        "CVE-2019-1551",
        Severity::Medium,
        Some(5.3),
        "libssl1.1",
        Some("1.1.1c-r0"),
        &["1.1.1d-r2"],
        FixState::Fixed,
    );
    assert!(f
        .iter()
        .all(|f| f.package.purl.is_none() && f.package.kind.is_none()));
}

#[test]
fn sarif_grype_image() {
    let r = report("grype/image.sarif");
    assert_eq!(r.format, ReportFormat::Sarif);
    assert_eq!(r.scanner, scanner("grype", Some("0.0.0-dev"), None));
    assert_eq!(r.created, None);
    assert_eq!(r.findings.len(), 2);
    let f = &r.findings;
    // Rule ids are "<vuln>-<package>"; the vuln id comes back from the help text's "Vulnerability" line.
    // Severity from security-severity (Grype's severity word is only in prose).
    check(
        &f[0],
        "CVE-1999-0001",
        Severity::High,
        Some(8.2),
        "package-1",
        Some("1.1.1"),
        &["1.2.1", "2.1.3", "3.4.0"],
        FixState::Fixed,
    );
    assert_eq!(f[0].package.kind.as_deref(), Some("rpm"));
    assert_eq!(f[0].package.purl, None);
    check(
        &f[1],
        "CVE-1999-0002",
        Severity::High,
        Some(8.5),
        "package-2",
        Some("2.2.2"),
        &[],
        FixState::Unknown,
    );
    assert_eq!(
        f[1].package.purl.as_deref(),
        Some("pkg:deb/package-2@2.2.2")
    );
    assert_eq!(f[1].package.kind.as_deref(), Some("deb"));
}

#[test]
fn sarif_rule_lookup_levels_and_skips() {
    let doc = json!({
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {"name": "scanner-x", "semanticVersion": "1.2.3", "rules": [
                {"id": "CVE-2024-0001", "properties": {"security-severity": 9.1}},
                {"id": "CVE-2024-0002", "defaultConfiguration": {"level": "warning"}},
                {"id": "AVD-KSV-0001", "properties": {"tags": ["misconfiguration", "security", "HIGH"]}},
                {"id": "[CRITICAL] CVE-2024-0003", "properties": {"tags": ["vulnerability", "CRITICAL", "pkg"],
                  "security-severity": "not a number", "purls": ["pkg:npm/lodash@4.17.20"]}},
                {"id": "CVE-2024-0004", "properties": {"tags": ["vulnerability", "security", "UNKNOWN"],
                  "security-severity": "5.0", "cvssv3_baseScore": 6.1, "cvssv40_baseScore": "6.9"}}
            ]}},
            "invocations": [{"executionSuccessful": true, "startTimeUtc": "2024-06-01T10:00:00Z", "endTimeUtc": "2024-06-01T10:05:00Z"}],
            "properties": {"imageName": "img", "repoDigests": ["img@sha256:beef"]},
            "results": [
                {"ruleId": "CVE-2024-0001", "ruleIndex": 1, "message": {"text": "prose only"}},
                {"ruleId": "CVE-2024-0002", "level": "error"},
                {"ruleId": "CVE-2024-0002"},
                {"ruleId": "AVD-KSV-0001", "ruleIndex": 2},
                {"rule": {"index": 3}},
                {"ruleId": "CVE-2024-0004", "ruleIndex": 99},
                {"ruleId": "CVE-2024-0005"}
            ]
        }]
    });
    let r = report_of(&to_bytes(&doc));
    assert_eq!(r.scanner, scanner("scanner-x", Some("1.2.3"), None));
    assert_eq!(r.created, Some(ts("2024-06-01T10:05:00Z")));
    assert_eq!(r.subject_digest.as_deref(), Some("sha256:beef"));
    assert_eq!(r.artifact_name.as_deref(), Some("img"));
    let ids: Vec<&str> = r.findings.iter().map(|f| f.id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "CVE-2024-0001",
            "CVE-2024-0002",
            "CVE-2024-0002",
            "CVE-2024-0003",
            "CVE-2024-0004",
            "CVE-2024-0005"
        ]
    );
    let f = &r.findings;
    // ruleIndex 1 names another rule: the ruleId wins.
    assert_eq!((f[0].severity, f[0].cvss), (Severity::Critical, Some(9.1)));
    assert_eq!(
        (f[1].severity, f[1].cvss),
        (Severity::High, None),
        "result level error"
    );
    assert_eq!(
        (f[2].severity, f[2].cvss),
        (Severity::Medium, None),
        "rule default level warning"
    );
    assert_eq!((f[3].severity, f[3].cvss), (Severity::Critical, None));
    assert_eq!(f[3].package.name, "lodash");
    assert_eq!(f[3].package.version.as_deref(), Some("4.17.20"));
    assert_eq!(f[3].package.kind.as_deref(), Some("npm"));
    assert_eq!(f[3].package.purl.as_deref(), Some("pkg:npm/lodash@4.17.20"));
    // UNKNOWN tag: security-severity decides; explicit CVSS properties win for cvss.
    assert_eq!((f[4].severity, f[4].cvss), (Severity::Medium, Some(6.9)));
    assert_eq!(
        (f[5].severity, f[5].cvss),
        (Severity::Unknown, None),
        "no rule at all"
    );
}

#[test]
fn sarif_trivy_without_cvss_does_not_invent_one() {
    let doc = json!({"version": "2.1.0", "runs": [{"tool": {"driver": {"name": "Trivy", "version": "0.50.0", "rules": [
        {"id": "CVE-2024-1", "properties": {"tags": ["vulnerability", "security", "HIGH"], "security-severity": "8.0"}}
    ]}}, "results": [{"ruleId": "CVE-2024-1", "ruleIndex": 0,
        "message": {"text": "Package: zlib\nInstalled Version: 1.2.11\nVulnerability CVE-2024-1\nSeverity: HIGH\nFixed Version: \nLink: [CVE-2024-1](x)"}}]}]});
    let r = report_of(&to_bytes(&doc));
    check(
        &r.findings[0],
        "CVE-2024-1",
        Severity::High,
        None,
        "zlib",
        Some("1.2.11"),
        &[],
        FixState::Unknown,
    );
}

#[test]
fn sarif_result_without_rule_id_is_an_error() {
    let doc = json!({"version": "2.1.0", "runs": [{"tool": {"driver": {"name": "x"}}, "results": [{"message": {"text": "?"}}]}]});
    let e = error_of(&to_bytes(&doc));
    assert_eq!(
        (e.format.as_str(), e.path.as_str()),
        ("sarif", "$.runs[0].results[0]")
    );
}

// ------------------------------------------------------------------------------------------------
// CycloneDX

#[test]
fn cyclonedx_trivy_npm() {
    let r = report("trivy/npm-cyclonedx.json");
    assert_eq!(r.format, ReportFormat::Cyclonedx);
    assert_eq!(r.scanner, scanner("trivy", Some("dev"), None));
    assert_eq!(r.created, Some(ts("2021-08-25T12:20:30Z")));
    assert_eq!(
        r.artifact_name.as_deref(),
        Some("testdata/fixtures/repo/npm")
    );
    assert_eq!(r.subject_digest, None);
    assert_eq!(r.findings.len(), 1);
    let f = &r.findings[0];
    // Ratings: medium everywhere, ubuntu low -> medium; cvss: nvd CVSSv31 6.1 > redhat CVSSv3 5.6 (CVSSv2 4.3 ignored).
    check(
        f,
        "CVE-2019-11358",
        Severity::Medium,
        Some(6.1),
        "jquery",
        Some("3.3.9"),
        &[],
        FixState::Unknown,
    );
    assert_eq!(f.package.purl.as_deref(), Some("pkg:npm/jquery@3.3.9"));
    assert_eq!(f.package.kind.as_deref(), Some("npm"));
    assert!(f.aliases.is_empty());
    assert!(r.vex.is_empty());
}

#[test]
fn cyclonedx_1_6_analysis_and_tools_components() {
    let r = report("handmade/cyclonedx-1.6.json");
    assert_eq!(r.format, ReportFormat::Cyclonedx);
    assert_eq!(r.scanner, scanner("trivy", Some("0.51.1"), None));
    assert_eq!(r.created, Some(ts("2024-05-02T08:15:00Z")));
    assert_eq!(
        r.artifact_name.as_deref(),
        Some("registry.example.com/shop/api:1.4.2")
    );
    assert_eq!(
        r.subject_digest.as_deref(),
        Some("sha256:4f5b1a1a2e6b1e1c3d9f4b5a7c6d8e9f0a1b2c3d4e5f60718293a4b5c6d7e8f9")
    );
    assert_eq!(r.findings.len(), 5);
    let f = &r.findings;
    check(
        &f[0],
        "CVE-2021-44228",
        Severity::Critical,
        Some(10.0),
        "log4j-core",
        Some("2.14.1"),
        &[],
        FixState::Unknown,
    );
    assert_eq!(f[0].aliases, strings(&["GHSA-jfh8-c2jp-5v3q"]));
    assert_eq!(
        f[0].package.kind.as_deref(),
        Some("maven"),
        "nested component found by bom-ref"
    );
    // A CVSSv4 rating without a severity word counts through its score (7.5 -> high) over "low".
    check(
        &f[1],
        "CVE-2022-0778",
        Severity::High,
        Some(7.5),
        "openssl",
        Some("3.0.2-0ubuntu1.10"),
        &[],
        FixState::Unknown,
    );
    check(
        &f[2],
        "CVE-2022-0778",
        Severity::High,
        Some(7.5),
        "libssl3",
        Some("3.0.2-0ubuntu1.10"),
        &[],
        FixState::Unknown,
    );
    check(
        &f[3],
        "CVE-2023-9999",
        Severity::Unknown,
        None,
        "",
        None,
        &[],
        FixState::Unknown,
    );
    check(
        &f[4],
        "GHSA-xvch-5gv4-984h",
        Severity::Critical,
        Some(9.8),
        "minimist",
        Some("1.2.5"),
        &[],
        FixState::Unknown,
    );
    assert_eq!(f[4].aliases, strings(&["CVE-2021-44906"]));
    assert_eq!(f[4].package.purl.as_deref(), Some("pkg:npm/minimist@1.2.5"));

    let vex = |vulnerability: &str,
               aliases: &[&str],
               subs: &[&str],
               status,
               justification: Option<&str>| VexStatement {
        vulnerability: vulnerability.into(),
        aliases: strings(aliases),
        products: Vec::new(),
        subcomponents: strings(subs),
        status,
        justification: justification.map(Into::into),
    };
    assert_eq!(
        r.vex,
        vec![
            vex(
                "CVE-2021-44228",
                &["GHSA-jfh8-c2jp-5v3q"],
                &["pkg:maven/org.apache.logging.log4j/log4j-core@2.14.1"],
                VexStatus::NotAffected,
                Some("code_not_reachable")
            ),
            vex(
                "CVE-2022-0778",
                &[],
                &[
                    "pkg:deb/ubuntu/openssl@3.0.2-0ubuntu1.10?arch=amd64",
                    "pkg:deb/ubuntu/libssl3@3.0.2-0ubuntu1.10?arch=amd64"
                ],
                VexStatus::UnderInvestigation,
                None
            ),
            vex("CVE-2023-9999", &[], &[], VexStatus::Fixed, None),
            vex(
                "GHSA-xvch-5gv4-984h",
                &["CVE-2021-44906"],
                &["pkg:npm/minimist@1.2.5"],
                VexStatus::Affected,
                None
            ),
        ]
    );
    assert_eq!(
        parse_vex(&data("handmade/cyclonedx-1.6.json"))
            .expect("vex")
            .len(),
        4
    );
}

#[rstest]
#[case("1.4")]
#[case("1.5")]
#[case("1.7")]
fn cyclonedx_versions_and_1_4_tools(#[case] version: &str) {
    let doc = json!({
        "bomFormat": "CycloneDX", "specVersion": version, "version": 1,
        "metadata": {"tools": [{"vendor": "anchore", "name": "grype", "version": "0.70.0"}]},
        "components": [{"bom-ref": "c1", "name": "zlib", "version": "1.2.11"}],
        "vulnerabilities": [
            {"id": "CVE-2024-0001", "ratings": [{"severity": "info"}], "affects": [{"ref": "c1"}, {"ref": "c1"}, {"ref": "ghost"}],
             "analysis": {"state": "false_positive"}},
            {"id": "CVE-2024-0002", "analysis": {"state": "resolved_with_pedigree"}}
        ]
    });
    let r = report_of(&to_bytes(&doc));
    assert_eq!(r.scanner, scanner("grype", Some("0.70.0"), None));
    assert_eq!(r.findings.len(), 3, "duplicate refs count once");
    check(
        &r.findings[0],
        "CVE-2024-0001",
        Severity::Negligible,
        None,
        "zlib",
        Some("1.2.11"),
        &[],
        FixState::Unknown,
    );
    assert_eq!(
        r.findings[1].package.name, "ghost",
        "a ref naming no component"
    );
    assert_eq!(r.vex[0].status, VexStatus::NotAffected);
    assert_eq!(
        r.vex[0].subcomponents,
        strings(&["zlib", "ghost"]),
        "no purls: the package names"
    );
    assert_eq!(r.vex[1].status, VexStatus::Fixed);
}

#[test]
fn cyclonedx_sbom_without_vulnerabilities_is_not_a_clean_scan() {
    let e = error_of(br#"{"bomFormat": "CycloneDX", "specVersion": "1.5", "components": []}"#);
    assert_eq!((e.format.as_str(), e.path.as_str()), ("cyclonedx", "$"));
    assert!(e.message.contains("SBOM"), "{e}");
}

// ------------------------------------------------------------------------------------------------
// in-toto, DSSE, cosign

fn intoto_expected_findings() -> Vec<Finding> {
    vec![
        Finding {
            id: "CVE-2019-1549".into(),
            aliases: vec![],
            severity: Severity::Medium,
            cvss: Some(5.3),
            package: Package {
                name: "libssl1.1".into(),
                version: Some("1.1.1c-r0".into()),
                purl: Some("pkg:apk/alpine/libssl1.1@1.1.1c-r0?arch=x86_64&distro=3.10.2".into()),
                kind: Some("apk".into()),
            },
            fixed_versions: strings(&["1.1.1d-r0"]),
            fix_state: FixState::Fixed,
            published: None,
        },
        Finding {
            id: "GHSA-jfh8-c2jp-5v3q".into(),
            aliases: strings(&["CVE-2021-44228"]),
            severity: Severity::Critical,
            cvss: Some(10.0),
            package: Package {
                name: "org.apache.logging.log4j:log4j-core".into(),
                version: Some("2.14.1".into()),
                purl: Some("pkg:maven/org.apache.logging.log4j/log4j-core@2.14.1".into()),
                kind: Some("jar".into()),
            },
            fixed_versions: strings(&["2.15.0", "2.12.2"]),
            fix_state: FixState::Fixed,
            published: None,
        },
        Finding {
            id: "CVE-2023-0001".into(),
            aliases: vec![],
            severity: Severity::Unknown,
            cvss: None,
            package: Package::default(),
            fixed_versions: vec![],
            fix_state: FixState::Unknown,
            published: None,
        },
    ]
}

#[test]
fn intoto_vulns_statement() {
    let r = report("handmade/intoto-vulns.json");
    assert_eq!(r.format, ReportFormat::IntotoVulns);
    assert_eq!(
        r.scanner,
        scanner("trivy", Some("0.50.1"), Some("v1-2024031812"))
    );
    assert_eq!(r.created, Some(ts("2024-03-18T12:10:42Z")));
    assert_eq!(
        r.subject_digest.as_deref(),
        Some("sha256:4f5b1a1a2e6b1e1c3d9f4b5a7c6d8e9f0a1b2c3d4e5f60718293a4b5c6d7e8f9")
    );
    assert_eq!(
        r.artifact_name.as_deref(),
        Some("registry.example.com/shop/api")
    );
    // The epss score and the CVSSv2 score are not CVSS v3/v4 scores.
    assert_eq!(r.findings, intoto_expected_findings());
    assert_eq!(
        parse_format(
            ReportFormat::IntotoVulns,
            &data("handmade/intoto-vulns.json")
        )
        .expect("parse_format"),
        r
    );
}

#[test]
fn intoto_vulns_in_dsse_envelope() {
    let r = report("handmade/intoto-vulns.dsse.json");
    assert_eq!(r, report("handmade/intoto-vulns.json"));
    assert_eq!(
        parse_format(
            ReportFormat::IntotoVulns,
            &data("handmade/intoto-vulns.dsse.json")
        )
        .expect("parse_format"),
        r
    );
    let e = parse_format(
        ReportFormat::CosignVuln,
        &data("handmade/intoto-vulns.dsse.json"),
    )
    .expect_err("wrong predicate");
    assert_eq!(e.format, "cosign-vuln");
}

#[test]
fn intoto_vulns_v0_1_shape_and_scanner_uri() {
    let doc = json!({
        "_type": "https://in-toto.io/Statement/v0.1",
        "subject": [{"name": "x", "digest": {"sha512": "abcd"}}],
        "predicateType": "https://in-toto.io/attestation/vulns/v0.1",
        "predicate": {
            "scanner": {"uri": "https://github.com/anchore/grype/releases/tag/v0.74.7", "db": {"lastUpdate": "2024-01-27T19:48:49Z"},
                        "result": [{"vulnerability": {"id": "CVE-2024-7", "severity": [{"method": "nvd", "score": "HIGH"}, {"method": "ghsa", "score": "critical"}]}}]},
            "metadata": {"scanStartedOn": "2024-01-27T19:48:00Z"}
        }
    });
    let r = report_of(&to_bytes(&doc));
    assert_eq!(
        r.scanner,
        scanner("grype", None, Some("2024-01-27T19:48:49Z"))
    );
    assert_eq!(r.created, Some(ts("2024-01-27T19:48:00Z")));
    assert_eq!(r.subject_digest.as_deref(), Some("sha512:abcd"));
    check(
        &r.findings[0],
        "CVE-2024-7",
        Severity::Critical,
        None,
        "",
        None,
        &[],
        FixState::Unknown,
    );
}

#[test]
fn cosign_vuln_wrapping_trivy() {
    let r = report("handmade/cosign-vuln-trivy.json");
    let trivy = report("trivy/alpine-310.json");
    assert_eq!(r.format, ReportFormat::CosignVuln);
    assert_eq!(r.findings, trivy.findings);
    assert_eq!(r.findings.len(), 4);
    assert_eq!(r.scanner, scanner("trivy", Some("dev"), None));
    assert_eq!(r.created, trivy.created);
    assert_eq!(r.artifact_name, trivy.artifact_name);
    // The attested subject is the subject digest.
    assert_eq!(
        r.subject_digest.as_deref(),
        Some("sha256:be7e0e99d0e7acf6c3465bd7087640a75743e53dcec3d29c83a567dd95e4bc19")
    );
    assert_eq!(
        parse_format(
            ReportFormat::CosignVuln,
            &data("handmade/cosign-vuln-trivy.json")
        )
        .expect("parse_format"),
        r
    );
}

#[test]
fn cosign_vuln_string_predicate_wrapping_grype() {
    let r = report("handmade/cosign-vuln-grype.json");
    let grype = report("grype/imgs.json");
    assert_eq!(r.format, ReportFormat::CosignVuln);
    assert_eq!(r.findings, grype.findings);
    assert_eq!(r.findings.len(), 2);
    // Name and version from the wrapped report, db from the predicate (the report has none).
    assert_eq!(
        r.scanner,
        scanner("grype", Some("[not provided]"), Some("5"))
    );
    // The wrapped report has no timestamp: the predicate's scanFinishedOn.
    assert_eq!(r.created, Some(ts("2024-01-27T19:48:49Z")));
    assert_eq!(
        r.subject_digest.as_deref(),
        Some("sha256:ca738abb87a8d58f112d3400ebb079b61ceae7dc290beb34bda735be4b1941d5")
    );
}

/// The shape cosign 3 attests with `cosign attest --type vuln` given a minimal Trivy result (no
/// `SchemaVersion`, no package data), in a DSSE envelope.
#[test]
fn cosign_vuln_minimal_trivy_result_in_dsse() {
    let statement = json!({
        "_type": "https://in-toto.io/Statement/v0.1",
        "subject": [{"name": "127.0.0.1:5000/app", "digest": {"sha256": "9dda3d9cb7a4b9396e324e078cb7ca960f6d33d08d3d380a25775355d7c59e0d"}}],
        "predicateType": "https://cosign.sigstore.dev/attestation/vuln/v1",
        "predicate": {
            "invocation": {"builder.id": "", "event_id": "", "parameters": null, "uri": ""},
            "metadata": {"scanFinishedOn": "2026-11-28T00:00:01Z", "scanStartedOn": "2026-11-28T00:00:00Z"},
            "scanner": {"db": {"uri": "", "version": ""},
                        "result": {"Results": [{"Target": "app", "Vulnerabilities": [{"Severity": "HIGH", "VulnerabilityID": "CVE-2024-0001"}]}]},
                        "uri": "pkg:github/aquasecurity/trivy@0.59.0", "version": "0.59.0"}
        }
    });
    use base64::Engine as _;
    let envelope = json!({
        "payloadType": "application/vnd.in-toto+json",
        "payload": base64::engine::general_purpose::STANDARD.encode(to_bytes(&statement)),
        "signatures": [{"keyid": "", "sig": "MEUCIQ=="}]
    });
    let r = report_of(&to_bytes(&envelope));
    assert_eq!(r.format, ReportFormat::CosignVuln);
    assert_eq!(r.scanner, scanner("trivy", Some("0.59.0"), None));
    assert_eq!(r.created, Some(ts("2026-11-28T00:00:01Z")));
    assert_eq!(
        r.subject_digest.as_deref(),
        Some("sha256:9dda3d9cb7a4b9396e324e078cb7ca960f6d33d08d3d380a25775355d7c59e0d")
    );
    assert_eq!(r.artifact_name.as_deref(), Some("127.0.0.1:5000/app"));
    assert_eq!(r.findings.len(), 1);
    check(
        &r.findings[0],
        "CVE-2024-0001",
        Severity::High,
        None,
        "",
        None,
        &[],
        FixState::NotFixed,
    );

    // A wrapped report that names a SchemaVersion must name 2.
    let mut old = statement.clone();
    old["predicate"]["scanner"]["result"]["SchemaVersion"] = json!(1);
    let e = error_of(&to_bytes(&old));
    assert_eq!(
        (e.format.as_str(), e.path.as_str()),
        ("cosign-vuln", "$.predicate.scanner.result.SchemaVersion")
    );
}

#[test]
fn bare_cosign_predicate() {
    // What `trivy image --format cosign-vuln` writes: the predicate alone.
    let predicate = json_of("handmade/cosign-vuln-trivy.json")["predicate"].clone();
    let r = report_of(&to_bytes(&predicate));
    assert_eq!(r.format, ReportFormat::CosignVuln);
    assert_eq!(r.findings, report("trivy/alpine-310.json").findings);
    assert_eq!(r.subject_digest, None);
    let bare_vulns = json_of("handmade/intoto-vulns.json")["predicate"].clone();
    assert_eq!(
        report_of(&to_bytes(&bare_vulns)).findings,
        intoto_expected_findings()
    );
}

#[test]
fn openvex_in_a_dsse_statement() {
    let statement = json!({
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{"name": "img", "digest": {"sha256": "ab"}}],
        "predicateType": "https://openvex.dev/ns/v0.2.0",
        "predicate": json_of("trivy/openvex.json")
    });
    use base64::Engine as _;
    let envelope = json!({
        "payloadType": "application/vnd.in-toto+json",
        "payload": base64::engine::general_purpose::STANDARD.encode(to_bytes(&statement)),
        "signatures": []
    });
    let expected = parse(&data("trivy/openvex.json")).expect("openvex");
    assert_eq!(parse(&to_bytes(&envelope)).expect("dsse"), expected);
}

// ------------------------------------------------------------------------------------------------
// OpenVEX

#[test]
fn openvex_trivy() {
    let statements = match parse(&data("trivy/openvex.json")) {
        Ok(Parsed::Vex(s)) => s,
        other => panic!("expected VEX, got {other:?}"),
    };
    assert_eq!(
        statements,
        vec![VexStatement {
            vulnerability: "CVE-2022-23628".into(),
            aliases: vec![],
            products: strings(&["pkg:golang/github.com/testdata/testdata"]),
            subcomponents: strings(&["pkg:golang/github.com/open-policy-agent/opa@v0.35.0"]),
            status: VexStatus::NotAffected,
            justification: Some("vulnerable_code_not_in_execute_path".into()),
        }]
    );
    assert_eq!(
        parse_vex(&data("trivy/openvex.json")).expect("vex"),
        statements
    );
}

#[test]
fn openvex_names_aliases_and_old_shapes() {
    let doc = json!({
        "@context": "https://openvex.dev/ns/v0.2.0",
        "statements": [
            {"vulnerability": {"@id": "https://nvd.nist.gov/vuln/detail/CVE-2021-44228", "name": "CVE-2021-44228",
                               "aliases": ["GHSA-jfh8-c2jp-5v3q", "CVE-2021-44228"]},
             "products": [{"@id": "registry.example.com/app", "identifiers": {"purl": "pkg:oci/app"},
                           "subcomponents": [{"@id": "pkg:maven/log4j-core@2.14.1"}]}],
             "status": "fixed"},
            {"vulnerability": {"@id": "GHSA-aaaa-bbbb-cccc", "name": "CVE-2024-1"}, "status": "under_investigation"},
            {"vulnerability": "CVE-2020-0001", "products": ["pkg:oci/app"], "subcomponents": ["pkg:npm/a@1"], "status": "affected"}
        ]
    });
    let statements = match parse(&to_bytes(&doc)) {
        Ok(Parsed::Vex(s)) => s,
        other => panic!("expected VEX, got {other:?}"),
    };
    assert_eq!(statements[0].vulnerability, "CVE-2021-44228");
    assert_eq!(
        statements[0].aliases,
        strings(&["GHSA-jfh8-c2jp-5v3q"]),
        "URL @id is not an alias"
    );
    assert_eq!(
        statements[0].products,
        strings(&["registry.example.com/app", "pkg:oci/app"])
    );
    assert_eq!(
        statements[0].subcomponents,
        strings(&["pkg:maven/log4j-core@2.14.1"])
    );
    assert_eq!(statements[0].status, VexStatus::Fixed);
    assert_eq!(statements[1].aliases, strings(&["GHSA-aaaa-bbbb-cccc"]));
    assert!(statements[1].products.is_empty());
    assert_eq!(statements[1].status, VexStatus::UnderInvestigation);
    assert_eq!(statements[2].vulnerability, "CVE-2020-0001");
    assert_eq!(statements[2].products, strings(&["pkg:oci/app"]));
    assert_eq!(statements[2].subcomponents, strings(&["pkg:npm/a@1"]));
    assert_eq!(statements[2].status, VexStatus::Affected);

    let mut bad = doc.clone();
    bad["statements"][1]["status"] = json!("maybe");
    let e = error_of(&to_bytes(&bad));
    assert_eq!(
        (e.format.as_str(), e.path.as_str()),
        ("openvex", "$.statements[1].status")
    );
}

// ------------------------------------------------------------------------------------------------
// Errors

/// Every fixture, its expected format name (as errors give it).
const FIXTURES: [(&str, &str); 13] = [
    ("trivy/alpine-310.json", "trivy"),
    ("trivy/centos-7.json", "trivy"),
    ("trivy/debian-buster.json", "trivy"),
    ("trivy/alpine-310.sarif", "sarif"),
    ("trivy/npm-cyclonedx.json", "cyclonedx"),
    ("trivy/openvex.json", "openvex"),
    ("grype/imgs.json", "grype"),
    ("grype/image.sarif", "sarif"),
    ("handmade/intoto-vulns.json", "in-toto-vulns"),
    ("handmade/intoto-vulns.dsse.json", "dsse"),
    ("handmade/cosign-vuln-trivy.json", "cosign-vuln"),
    ("handmade/cosign-vuln-grype.json", "cosign-vuln"),
    ("handmade/cyclonedx-1.6.json", "cyclonedx"),
];

#[test]
fn every_fixture_parses() {
    for (rel, _) in FIXTURES {
        parse(&data(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"));
    }
}

#[test]
fn truncated_files_name_the_format_and_say_eof() {
    for (rel, format) in FIXTURES {
        let bytes = data(rel);
        let half = bytes.get(..bytes.len() / 2).expect("half");
        let e = error_of(half);
        assert_eq!(e.format, format, "{rel}: {e}");
        assert!(
            e.message.contains("truncated") && e.message.contains("EOF"),
            "{rel}: {e}"
        );
        assert!(e.message.contains("line "), "{rel}: {e}");
        assert!(e.path.starts_with('$'), "{rel}: {e}");
    }
}

#[test]
fn truncated_trivy_error_has_the_path_and_position() {
    let bytes = data("trivy/alpine-310.json");
    let cut = String::from_utf8(bytes).expect("utf8");
    let at = cut.find("\"Severity\": \"MEDIUM\"").expect("a severity");
    let e = error_of(cut.get(..at + 14).expect("prefix").as_bytes());
    assert_eq!(e.format, "trivy");
    assert_eq!(e.path, "$.Results[0].Vulnerabilities[0].Severity");
    assert!(
        e.message
            .starts_with("truncated input: unexpected end of file (EOF) at line 99, column 24"),
        "{e}"
    );
    assert_eq!(
        e.to_string(),
        format!("trivy report: {}: {}", e.path, e.message)
    );
}

#[test]
fn wrong_type_gives_the_json_path() {
    let mut doc = json_of("trivy/alpine-310.json");
    doc["Results"][0]["Vulnerabilities"][0]["Severity"] = json!(5);
    let e = error_of(&to_bytes(&doc));
    assert_eq!(e.format, "trivy");
    assert_eq!(e.path, "$.Results[0].Vulnerabilities[0].Severity");
    assert!(e.message.contains("invalid type: integer `5`"), "{e}");

    let mut doc = json_of("trivy/alpine-310.json");
    doc["Results"][0]["Vulnerabilities"][2]
        .as_object_mut()
        .expect("object")
        .remove("VulnerabilityID");
    let e = error_of(&to_bytes(&doc));
    assert_eq!(e.path, "$.Results[0].Vulnerabilities[2]");
    assert!(e.message.contains("missing field `VulnerabilityID`"), "{e}");

    let mut doc = json_of("grype/imgs.json");
    doc["matches"][1]["vulnerability"]["cvss"][0]["metrics"]["baseScore"] = json!("high");
    let e = error_of(&to_bytes(&doc));
    assert_eq!(
        (e.format.as_str(), e.path.as_str()),
        (
            "grype",
            "$.matches[1].vulnerability.cvss[0].metrics.baseScore"
        )
    );

    let mut doc = json_of("trivy/alpine-310.sarif");
    doc["runs"][0]["tool"]["driver"]["rules"][1]["properties"]["tags"] = json!("HIGH");
    let e = error_of(&to_bytes(&doc));
    assert_eq!(
        (e.format.as_str(), e.path.as_str()),
        ("sarif", "$.runs[0].tool.driver.rules[1].properties.tags")
    );

    let mut doc = json_of("trivy/npm-cyclonedx.json");
    doc["vulnerabilities"][0]["affects"][0]["ref"] = json!(null);
    let e = error_of(&to_bytes(&doc));
    assert_eq!(
        (e.format.as_str(), e.path.as_str()),
        ("cyclonedx", "$.vulnerabilities[0].affects[0].ref")
    );

    let mut doc = json_of("trivy/alpine-310.json");
    doc["CreatedAt"] = json!("yesterday");
    let e = error_of(&to_bytes(&doc));
    assert_eq!(
        (e.format.as_str(), e.path.as_str()),
        ("trivy", "$.CreatedAt")
    );
}

#[test]
fn nested_errors_are_rooted_at_the_outer_document() {
    let mut doc = json_of("handmade/cosign-vuln-trivy.json");
    doc["predicate"]["scanner"]["result"]["Results"][0]["Vulnerabilities"][0]["Severity"] =
        json!(5);
    let e = error_of(&to_bytes(&doc));
    assert_eq!(e.format, "cosign-vuln");
    assert_eq!(
        e.path,
        "$.predicate.scanner.result.Results[0].Vulnerabilities[0].Severity"
    );
    assert!(e.message.contains("wrapped Trivy report"), "{e}");

    let mut statement = json_of("handmade/intoto-vulns.json");
    statement["predicate"]["scanner"]["result"][1]["id"] = json!(7);
    use base64::Engine as _;
    let envelope = json!({
        "payloadType": "application/vnd.in-toto+json",
        "payload": base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(to_bytes(&statement)),
        "signatures": [{"sig": "x"}]
    });
    let e = error_of(&to_bytes(&envelope));
    assert_eq!(e.format, "in-toto-vulns");
    assert_eq!(e.path, "$.payload.predicate.scanner.result[1].id");
    assert!(e.message.contains("DSSE payload"), "{e}");

    let mut grype = json_of("handmade/cosign-vuln-grype.json");
    grype["predicate"] = json!(r#"{"scanner": {"result": {"matches": [{}]}}}"#);
    let e = error_of(&to_bytes(&grype));
    assert_eq!(
        (e.format.as_str(), e.path.as_str()),
        ("cosign-vuln", "$.predicate.scanner.result.matches[0]")
    );
    assert!(e.message.contains("JSON string predicate"), "{e}");
}

#[rstest]
#[case::empty_object(b"{}".as_slice())]
#[case::other_object(br#"{"hello": "world", "matches": 1}"#.as_slice())]
#[case::array(b"[1, 2, 3]".as_slice())]
#[case::string(br#""trivy""#.as_slice())]
#[case::not_json(b"Package: x\nSeverity: HIGH".as_slice())]
#[case::empty(b"".as_slice())]
#[case::whitespace(b"  \n ".as_slice())]
#[case::other_context(br#"{"@context": "https://schema.org", "statements": []}"#.as_slice())]
fn unknown_formats(#[case] bytes: &[u8]) {
    let e = error_of(bytes);
    assert_eq!(e.format, "unknown", "{e}");
    assert_eq!(e.path, "$");
    assert!(
        e.message.contains("supported formats") && e.message.contains("Trivy JSON"),
        "{e}"
    );
}

#[test]
fn unsupported_versions() {
    let mut doc = json_of("trivy/alpine-310.json");
    doc["SchemaVersion"] = json!(1);
    let e = error_of(&to_bytes(&doc));
    assert_eq!(
        (e.format.as_str(), e.path.as_str()),
        ("trivy", "$.SchemaVersion")
    );
    assert!(e.message.contains("SchemaVersion 1"), "{e}");
    let e = parse_format(ReportFormat::Trivy, &to_bytes(&doc)).expect_err("v1");
    assert!(e.message.contains("SchemaVersion 1"), "{e}");

    let mut doc = json_of("trivy/npm-cyclonedx.json");
    doc["specVersion"] = json!("1.2");
    let e = error_of(&to_bytes(&doc));
    assert_eq!(
        (e.format.as_str(), e.path.as_str()),
        ("cyclonedx", "$.specVersion")
    );
    assert!(
        e.message.contains("\"1.2\"") && e.message.contains("1.4, 1.5, 1.6"),
        "{e}"
    );
    assert!(parse_format(ReportFormat::Cyclonedx, &to_bytes(&doc)).is_err());

    let mut doc = json_of("grype/image.sarif");
    doc["version"] = json!("2.0.0");
    let e = error_of(&to_bytes(&doc));
    assert_eq!((e.format.as_str(), e.path.as_str()), ("sarif", "$.version"));

    let mut doc = json_of("handmade/intoto-vulns.json");
    doc["_type"] = json!("https://in-toto.io/Statement/v9");
    let e = error_of(&to_bytes(&doc));
    assert_eq!(
        (e.format.as_str(), e.path.as_str()),
        ("in-toto-vulns", "$._type")
    );

    let mut doc = json_of("handmade/intoto-vulns.json");
    doc["predicateType"] = json!("https://slsa.dev/provenance/v1");
    let e = error_of(&to_bytes(&doc));
    assert_eq!(
        (e.format.as_str(), e.path.as_str()),
        ("in-toto", "$.predicateType")
    );
    assert!(e.message.contains("slsa.dev"), "{e}");
}

#[test]
fn dsse_envelope_errors() {
    let mut env = json_of("handmade/intoto-vulns.dsse.json");
    env["payloadType"] = json!("application/json");
    let e = error_of(&to_bytes(&env));
    assert_eq!(
        (e.format.as_str(), e.path.as_str()),
        ("dsse", "$.payloadType")
    );

    let mut env = json_of("handmade/intoto-vulns.dsse.json");
    env["payload"] = json!("%%% not base64 %%%");
    let e = error_of(&to_bytes(&env));
    assert_eq!((e.format.as_str(), e.path.as_str()), ("dsse", "$.payload"));

    use base64::Engine as _;
    let mut env = json_of("handmade/intoto-vulns.dsse.json");
    env["payload"] =
        json!(base64::engine::general_purpose::STANDARD.encode(data("trivy/alpine-310.json")));
    let e = error_of(&to_bytes(&env));
    assert_eq!(e.path, "$.payload", "{e}");
    assert!(e.message.contains("missing field"), "{e}");
}

#[test]
fn other_rejections() {
    // Trailing data after the document.
    let mut bytes = data("grype/imgs.json");
    bytes.extend_from_slice(b" {}");
    let e = error_of(&bytes);
    assert_eq!((e.format.as_str(), e.path.as_str()), ("grype", "$"));
    assert!(e.message.contains("trailing"), "{e}");

    // A requested format that does not fit.
    let e = parse_format(ReportFormat::Trivy, &data("grype/imgs.json")).expect_err("not trivy");
    assert_eq!(e.format, "trivy");
    let e =
        parse_format(ReportFormat::CosignVuln, &data("grype/imgs.json")).expect_err("not cosign");
    assert_eq!(e.format, "cosign-vuln");
    let e = parse_vex(&data("grype/imgs.json")).expect_err("not vex");
    assert_eq!(e.format, "grype");

    // A vulns predicate without results is not a clean scan.
    let mut doc = json_of("handmade/intoto-vulns.json");
    doc["predicate"]["scanner"]
        .as_object_mut()
        .expect("object")
        .remove("result");
    let e = error_of(&to_bytes(&doc));
    assert_eq!(
        (e.format.as_str(), e.path.as_str()),
        ("in-toto-vulns", "$.predicate.scanner")
    );
}

#[test]
fn byte_order_mark_is_accepted() {
    let mut bytes = b"\xEF\xBB\xBF".to_vec();
    bytes.extend(data("trivy/debian-buster.json"));
    assert_eq!(report_of(&bytes), report("trivy/debian-buster.json"));
}

#[test]
fn explicit_formats() {
    let cases = [
        (ReportFormat::Trivy, "trivy/centos-7.json"),
        (ReportFormat::Grype, "grype/imgs.json"),
        (ReportFormat::Sarif, "grype/image.sarif"),
        (ReportFormat::Cyclonedx, "trivy/npm-cyclonedx.json"),
    ];
    for (format, rel) in cases {
        assert_eq!(parse_format(format, &data(rel)).expect(rel), report(rel));
    }
}

/// No input makes a parser panic: every prefix (at a stride) and byte-level corruptions of every
/// fixture give a report or an error.
#[test]
fn never_panics_on_damaged_input() {
    let garbage: [&[u8]; 6] = [b"\"", b"}", b"]", b"\x00", b"\xFF\xFE", b"{\"a\":"];
    for (rel, _) in FIXTURES {
        let bytes = data(rel);
        for end in (0..bytes.len()).step_by(61) {
            let _ = parse(bytes.get(..end).expect("prefix"));
        }
        for (i, at) in (0..bytes.len()).step_by(173).enumerate() {
            let mut damaged = bytes.clone();
            let g = garbage[i % garbage.len()];
            damaged.splice(at..(at + 1).min(bytes.len()), g.iter().copied());
            let _ = parse(&damaged);
        }
    }
    // Deep nesting stops at the JSON recursion limit instead of overflowing the stack.
    let deep = format!(
        "{{\"SchemaVersion\": 2, \"Results\": {}{}",
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    assert!(parse(deep.as_bytes()).is_err());
    let deep = format!("{{\"x\": {}1{}}}", "[".repeat(100_000), "]".repeat(100_000));
    assert_eq!(error_of(deep.as_bytes()).format, "unknown");
}

/// A 10 MB Trivy report (the alpine fixture's vulnerabilities repeated, key order as Trivy writes it)
/// parses completely. Its speed is measured by `benches/core.rs`, never asserted here.
#[test]
fn large_trivy_report() {
    let text = String::from_utf8(data("trivy/alpine-310.json")).expect("utf8");
    let open = "\"Vulnerabilities\": [";
    let start = text.find(open).expect("vulnerabilities") + open.len();
    let end = text.rfind("]\n    }\n  ]").expect("end of vulnerabilities");
    let items = text.get(start..end).expect("items").trim();
    let copies = (10 * 1024 * 1024) / items.len() + 1;
    let body = vec![items; copies].join(",\n");
    let bytes = format!(
        "{}{body}{}",
        text.get(..start).expect("head"),
        text.get(end..).expect("tail")
    )
    .into_bytes();
    assert!(bytes.len() >= 10 * 1024 * 1024);
    let r = report_of(&bytes);
    assert_eq!(r.findings.len(), copies * 4);
}
