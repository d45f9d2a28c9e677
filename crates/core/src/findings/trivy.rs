//! Trivy JSON reports (`trivy image --format json`, SchemaVersion 2), and the bare result list of
//! releases before 0.20 (same vulnerability fields; no scan time, version or digest).
//!
//! Mapping: one finding per `Results[].Vulnerabilities[]`. `Severity` is Trivy's primary severity and
//! wins over `VendorSeverity`; `cvss` is the highest `V3Score`/`V40Score` over the `CVSS` sources
//! (`V2Score` is never used); `FixedVersion` is split on commas; `Status` gives the fix state
//! (without a status: fixed when a fixed version is named, else not fixed). The subject digest comes
//! from `Metadata.RepoDigests` only (`ImageID` is the config digest, not the manifest digest).

use std::fmt;

use serde::de::{Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::Value;

use super::common::{
    self, cvss_score, digest_of_reference, max_cvss, non_empty, severity_word, split_versions, Fail,
};
use crate::model::{Finding, FindingsReport, FixState, Package, ReportFormat, Scanner};

#[derive(Debug, Deserialize)]
struct Report {
    #[serde(rename = "SchemaVersion", default)]
    schema_version: Option<Value>,
    #[serde(rename = "Trivy", default)]
    trivy: Option<TrivyInfo>,
    #[serde(rename = "CreatedAt", default)]
    created_at: Option<String>,
    #[serde(rename = "ArtifactName", default)]
    artifact_name: Option<String>,
    #[serde(rename = "Metadata", default)]
    metadata: Option<Metadata>,
    #[serde(rename = "Results", default)]
    results: Option<Vec<ResultEntry>>,
}

/// One result of a report of Trivy before SchemaVersion 2 (releases before 0.20), which printed a
/// bare list of these.
#[derive(Debug, Deserialize)]
struct LegacyResult {
    #[serde(rename = "Target")]
    target: String,
    #[serde(rename = "Type", default)]
    kind: Option<String>,
    #[serde(rename = "Vulnerabilities", default)]
    vulnerabilities: Option<Vec<Vulnerability>>,
}

#[derive(Debug, Deserialize)]
struct TrivyInfo {
    #[serde(rename = "Version", default)]
    version: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Metadata {
    #[serde(rename = "RepoDigests", default)]
    repo_digests: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
struct ResultEntry {
    #[serde(rename = "Type", default)]
    kind: Option<String>,
    #[serde(rename = "Vulnerabilities", default)]
    vulnerabilities: Option<Vec<Vulnerability>>,
}

#[derive(Debug, Deserialize)]
struct Vulnerability {
    #[serde(rename = "VulnerabilityID")]
    id: String,
    #[serde(rename = "PkgName", default)]
    pkg_name: Option<String>,
    #[serde(rename = "PkgIdentifier", default)]
    pkg_identifier: Option<PkgIdentifier>,
    #[serde(rename = "InstalledVersion", default)]
    installed_version: Option<String>,
    #[serde(rename = "FixedVersion", default)]
    fixed_version: Option<String>,
    #[serde(rename = "Status", default)]
    status: Option<String>,
    #[serde(rename = "Severity", default)]
    severity: Option<String>,
    #[serde(rename = "CVSS", default)]
    cvss: Option<MaxCvss>,
    #[serde(rename = "PublishedDate", default)]
    published_date: Option<String>,
}

#[derive(Debug, Deserialize)]
struct PkgIdentifier {
    #[serde(rename = "PURL", default)]
    purl: Option<String>,
}

#[derive(Debug, Deserialize)]
struct CvssEntry {
    #[serde(rename = "V3Score", default)]
    v3_score: Option<f64>,
    #[serde(rename = "V40Score", default)]
    v40_score: Option<f64>,
}

/// The highest v3/v4 score of a Trivy `CVSS` map, computed while reading it (no map is built).
#[derive(Debug, Default)]
struct MaxCvss(Option<f32>);

impl<'de> Deserialize<'de> for MaxCvss {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = MaxCvss;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map of CVSS sources")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<MaxCvss, A::Error> {
                let mut best = None;
                while let Some(IgnoredAny) = map.next_key()? {
                    let Some(entry) = map.next_value::<Option<CvssEntry>>()? else {
                        continue;
                    };
                    for score in [entry.v3_score, entry.v40_score].into_iter().flatten() {
                        best = max_cvss(best, cvss_score(score));
                    }
                }
                Ok(MaxCvss(best))
            }
        }
        deserializer.deserialize_map(V)
    }
}

pub(crate) fn parse_slice(bytes: &[u8]) -> Result<FindingsReport, Fail> {
    convert(common::from_slice(bytes)?, true)
}

/// Parses a report wrapped in another document (the cosign vuln predicate's `scanner.result`). There
/// the wrapper already says what the report is, and producers write minimal reports without a
/// `SchemaVersion`: a missing one is accepted, a wrong one is still an error.
pub(crate) fn parse_wrapped(value: &Value) -> Result<FindingsReport, Fail> {
    convert(common::from_value(value)?, false)
}

/// Checks `SchemaVersion` (only 2 is supported).
pub(crate) fn check_schema_version(version: Option<&Value>) -> Result<(), Fail> {
    match version {
        Some(v) if v.as_u64() == Some(2) => Ok(()),
        Some(v) => Err(Fail::new(
            "$.SchemaVersion",
            format!("unsupported Trivy SchemaVersion {v} (only SchemaVersion 2 is supported)"),
        )),
        None => Err(Fail::new(
            "$",
            "missing SchemaVersion (only Trivy SchemaVersion 2 is supported)",
        )),
    }
}

fn fix_state(status: Option<&str>, has_fixed_version: bool) -> FixState {
    let by_version = if has_fixed_version {
        FixState::Fixed
    } else {
        FixState::NotFixed
    };
    match status.map(str::trim).unwrap_or_default() {
        "fixed" => FixState::Fixed,
        "affected" | "fix_deferred" | "under_investigation" => FixState::NotFixed,
        "will_not_fix" | "end_of_life" => FixState::WontFix,
        "unknown" => FixState::Unknown,
        _ => by_version,
    }
}

fn convert(report: Report, require_schema_version: bool) -> Result<FindingsReport, Fail> {
    if require_schema_version || report.schema_version.is_some() {
        check_schema_version(report.schema_version.as_ref())?;
    }
    let created = common::timestamp(report.created_at.as_deref(), "$.CreatedAt")?;
    let subject_digest = report
        .metadata
        .and_then(|m| m.repo_digests)
        .and_then(|d| d.iter().find_map(|r| digest_of_reference(r)));
    let mut findings = Vec::new();
    for result in report.results.unwrap_or_default() {
        push_findings(&mut findings, result.kind, result.vulnerabilities);
    }
    Ok(FindingsReport {
        format: ReportFormat::Trivy,
        subject_digest,
        artifact_name: non_empty(report.artifact_name.as_deref()),
        scanner: Scanner {
            name: "trivy".to_string(),
            version: report.trivy.and_then(|t| non_empty(t.version.as_deref())),
            db: None,
        },
        created,
        findings,
        vex: Vec::new(),
    })
}

/// Parses the report of a Trivy release before SchemaVersion 2: a list of results (`Target`,
/// `Type`, `Vulnerabilities`), with no scan time, scanner version or image digest (so a rule with
/// `maxReportAge` treats it as stale). The vulnerabilities have the fields of SchemaVersion 2.
pub(crate) fn parse_legacy_slice(bytes: &[u8]) -> Result<FindingsReport, Fail> {
    let results: Vec<LegacyResult> = common::from_slice(bytes)?;
    let artifact_name = results.first().and_then(|r| {
        // `image:tag (os version)`: the artifact is the part before the OS.
        let t = r.target.trim();
        non_empty(Some(t.rsplit_once(" (").map_or(t, |(a, _)| a)))
    });
    let mut findings = Vec::new();
    for result in results {
        push_findings(&mut findings, result.kind, result.vulnerabilities);
    }
    Ok(FindingsReport {
        format: ReportFormat::Trivy,
        subject_digest: None,
        artifact_name,
        scanner: Scanner {
            name: "trivy".to_string(),
            version: None,
            db: None,
        },
        created: None,
        findings,
        vex: Vec::new(),
    })
}

fn push_findings(
    findings: &mut Vec<Finding>,
    kind: Option<String>,
    vulnerabilities: Option<Vec<Vulnerability>>,
) {
    let kind = non_empty(kind.as_deref());
    for v in vulnerabilities.unwrap_or_default() {
        let fixed_versions = split_versions(v.fixed_version.as_deref());
        findings.push(Finding {
            fix_state: fix_state(v.status.as_deref(), !fixed_versions.is_empty()),
            id: v.id.trim().to_string(),
            aliases: Vec::new(),
            severity: v.severity.as_deref().map(severity_word).unwrap_or_default(),
            cvss: v.cvss.and_then(|c| c.0),
            package: Package {
                name: v.pkg_name.unwrap_or_default(),
                version: non_empty(v.installed_version.as_deref()),
                purl: v.pkg_identifier.and_then(|p| non_empty(p.purl.as_deref())),
                kind: kind.clone(),
            },
            fixed_versions,
            published: common::published(v.published_date.as_deref()),
        });
    }
}
