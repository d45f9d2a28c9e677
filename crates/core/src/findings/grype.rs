//! Grype JSON reports (`grype -o json`).
//!
//! Mapping: one finding per `matches[]`. id = `vulnerability.id`; aliases = the
//! `relatedVulnerabilities[].id` (deduplicated, without the id itself), so a GHSA match keeps its CVE
//! as an alias; severity = `vulnerability.severity`; cvss = the highest `metrics.baseScore` of the v3.x
//! and v4 `cvss[]` entries of the vulnerability and of its related vulnerabilities; fix from
//! `vulnerability.fix {versions, state}`; package from `artifact`. Reports of 2021 Grype releases
//! have `vulnerability.fixedInVersion` (one version) and `vulnerability.cvssV3.baseScore` instead of
//! `fix` and `cvss[]`: read the same way (`cvssV2` is not used). Scanner from `descriptor`
//! (db = the database build time when given); subject digest from `source.target.manifestDigest`.

use serde::Deserialize;
use serde_json::Value;

use super::common::{
    self, cvss_score, digest_of_reference, max_cvss, non_empty, push_alias, severity_word, Fail,
};
use crate::model::{Finding, FindingsReport, FixState, Package, ReportFormat, Scanner};

#[derive(Debug, Deserialize)]
struct Report {
    #[serde(default)]
    matches: Option<Vec<Match>>,
    #[serde(default)]
    source: Option<Source>,
    #[serde(default)]
    descriptor: Option<Descriptor>,
}

#[derive(Debug, Deserialize)]
struct Match {
    vulnerability: Vulnerability,
    #[serde(rename = "relatedVulnerabilities", default)]
    related: Option<Vec<Related>>,
    artifact: Artifact,
}

#[derive(Debug, Deserialize)]
struct Vulnerability {
    id: String,
    #[serde(default)]
    severity: Option<String>,
    #[serde(default)]
    cvss: Option<Vec<Cvss>>,
    #[serde(default)]
    fix: Option<Fix>,
    /// Grype before the `fix` object (2021): one fixed version.
    #[serde(rename = "fixedInVersion", default)]
    fixed_in_version: Option<String>,
    /// Grype before the `cvss[]` list (2021): the CVSS v3 score (`cvssV2` is never used).
    #[serde(rename = "cvssV3", default)]
    cvss_v3: Option<Metrics>,
}

#[derive(Debug, Deserialize)]
struct Related {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    cvss: Option<Vec<Cvss>>,
}

#[derive(Debug, Deserialize)]
struct Cvss {
    #[serde(default)]
    version: Option<String>,
    #[serde(default)]
    metrics: Option<Metrics>,
}

#[derive(Debug, Deserialize)]
struct Metrics {
    #[serde(rename = "baseScore", default)]
    base_score: Option<f64>,
}

#[derive(Debug, Deserialize)]
struct Fix {
    #[serde(default)]
    versions: Option<Vec<String>>,
    #[serde(default)]
    state: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Artifact {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    version: Option<String>,
    #[serde(default)]
    purl: Option<String>,
    #[serde(rename = "type", default)]
    kind: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Source {
    /// An object for images (`userInput`, `manifestDigest`, ...), a string for directories/files.
    #[serde(default)]
    target: Option<Value>,
}

#[derive(Debug, Deserialize)]
struct Descriptor {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    version: Option<String>,
    #[serde(default)]
    timestamp: Option<String>,
    /// `{built, schemaVersion, ...}` (older Grype) or `{status: {built, ...}, providers}` (newer).
    #[serde(default)]
    db: Option<Value>,
}

pub(crate) fn parse_slice(bytes: &[u8]) -> Result<FindingsReport, Fail> {
    convert(common::from_slice(bytes)?)
}

pub(crate) fn parse_value(value: &Value) -> Result<FindingsReport, Fail> {
    convert(common::from_value(value)?)
}

/// Highest v3.x / v4 base score of a Grype `cvss[]` list.
fn best_cvss(list: Option<&Vec<Cvss>>) -> Option<f32> {
    list.into_iter()
        .flatten()
        .filter(|c| {
            c.version
                .as_deref()
                .is_some_and(|v| v.trim().starts_with('3') || v.trim().starts_with('4'))
        })
        .filter_map(|c| {
            c.metrics
                .as_ref()
                .and_then(|m| m.base_score)
                .and_then(cvss_score)
        })
        .fold(None, |best, s| max_cvss(best, Some(s)))
}

fn fix_state(state: Option<&str>, has_versions: bool) -> FixState {
    match state.map(str::trim).unwrap_or_default() {
        "fixed" => FixState::Fixed,
        "not-fixed" => FixState::NotFixed,
        "wont-fix" => FixState::WontFix,
        _ if has_versions => FixState::Fixed,
        _ => FixState::Unknown,
    }
}

fn db_of(db: Option<&Value>) -> Option<String> {
    let db = db?;
    let built = db
        .get("built")
        .or_else(|| db.get("status").and_then(|s| s.get("built")));
    non_empty(built.and_then(Value::as_str))
}

fn convert(report: Report) -> Result<FindingsReport, Fail> {
    let descriptor = report.descriptor;
    let created = common::timestamp(
        descriptor.as_ref().and_then(|d| d.timestamp.as_deref()),
        "$.descriptor.timestamp",
    )?;
    let target = report.source.and_then(|s| s.target);
    let (subject_digest, artifact_name) = match &target {
        Some(Value::Object(t)) => (
            t.get("manifestDigest")
                .and_then(Value::as_str)
                .and_then(digest_of_reference),
            non_empty(t.get("userInput").and_then(Value::as_str)),
        ),
        Some(Value::String(s)) => (None, non_empty(Some(s))),
        _ => (None, None),
    };

    let mut findings = Vec::new();
    for m in report.matches.unwrap_or_default() {
        let v = m.vulnerability;
        let id = v.id.trim().to_string();
        let mut aliases = Vec::new();
        let mut cvss = best_cvss(v.cvss.as_ref());
        cvss = max_cvss(
            cvss,
            v.cvss_v3
                .as_ref()
                .and_then(|m| m.base_score)
                .and_then(cvss_score),
        );
        for r in m.related.iter().flatten() {
            push_alias(&mut aliases, &id, r.id.as_deref().unwrap_or_default());
            cvss = max_cvss(cvss, best_cvss(r.cvss.as_ref()));
        }
        let (versions, state) = match v.fix {
            Some(f) => (f.versions.unwrap_or_default(), f.state),
            None => (v.fixed_in_version.into_iter().collect(), None),
        };
        let fixed_versions: Vec<String> = versions
            .iter()
            .map(|s| s.trim())
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect();
        let a = m.artifact;
        findings.push(Finding {
            // Grype's JSON carries no publication date.
            published: None,
            fix_state: fix_state(state.as_deref(), !fixed_versions.is_empty()),
            id,
            aliases,
            severity: v.severity.as_deref().map(severity_word).unwrap_or_default(),
            cvss,
            package: Package {
                name: a.name.unwrap_or_default(),
                version: non_empty(a.version.as_deref()),
                purl: non_empty(a.purl.as_deref()),
                kind: non_empty(a.kind.as_deref()),
            },
            fixed_versions,
        });
    }

    let scanner = match descriptor {
        Some(d) => Scanner {
            name: non_empty(d.name.as_deref()).unwrap_or_else(|| "grype".to_string()),
            version: non_empty(d.version.as_deref()),
            db: db_of(d.db.as_ref()),
        },
        None => Scanner {
            name: "grype".to_string(),
            version: None,
            db: None,
        },
    };
    Ok(FindingsReport {
        format: ReportFormat::Grype,
        subject_digest,
        artifact_name,
        scanner,
        created,
        findings,
        vex: Vec::new(),
    })
}
