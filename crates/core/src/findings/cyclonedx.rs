//! CycloneDX BOMs with `vulnerabilities` (VDR / VEX BOMs, e.g. `trivy --format cyclonedx --scanners vuln`).
//!
//! Mapping: one finding per vulnerability and affected component (`affects[].ref` looked up by
//! `bom-ref` among `components`, nested components and `metadata.component`; a ref that names no
//! component is used as the package name, or parsed when it is a purl); a vulnerability without
//! `affects` gives one finding with an empty package. Severity: the highest of the `ratings` (CycloneDX
//! marks no primary rating); a CVSS v3/v4 rating without a severity word counts through its score.
//! cvss = the highest score of the ratings whose method is CVSSv3, CVSSv31 or CVSSv4. aliases =
//! `references[].id`. CycloneDX has no fixed-version field (only prose `recommendation`), so
//! `fixed_versions` stays empty and the fix state `Unknown`. `analysis.state` becomes a VEX statement
//! in `report.vex` (subcomponents = the affected components' purls, or their names when they have
//! no purl).
//!
//! A BOM without a `vulnerabilities` array is an SBOM, not a vulnerability report: an error, so that
//! an SBOM is never taken for a clean scan. Spec versions 1.4 to 1.7 are accepted (1.7 changed
//! nothing this parser reads, and current Trivy writes it).

use std::collections::HashMap;

use serde::Deserialize;
use serde_json::Value;

use super::common::{
    self, cvss_score, max_cvss, max_severity, non_empty, parse_purl, push_alias, severity_word,
    Fail,
};
use crate::model::{
    Finding, FindingsReport, FixState, Package, ReportFormat, Scanner, Severity, VexStatement,
    VexStatus,
};

/// Accepted `specVersion` values.
pub(crate) const SPEC_VERSIONS: [&str; 4] = ["1.4", "1.5", "1.6", "1.7"];

#[derive(Debug, Deserialize)]
struct Bom {
    #[serde(rename = "bomFormat")]
    bom_format: String,
    #[serde(rename = "specVersion")]
    spec_version: String,
    #[serde(default)]
    metadata: Option<Metadata>,
    #[serde(default)]
    components: Option<Vec<Component>>,
    #[serde(default)]
    vulnerabilities: Option<Vec<Vulnerability>>,
}

#[derive(Debug, Deserialize)]
struct Metadata {
    #[serde(default)]
    timestamp: Option<String>,
    /// 1.4: an array of `{vendor, name, version}`; 1.5+: `{components: [...], services: [...]}`.
    #[serde(default)]
    tools: Option<Value>,
    #[serde(default)]
    component: Option<Component>,
}

#[derive(Debug, Deserialize)]
struct Component {
    #[serde(rename = "bom-ref", default)]
    bom_ref: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    version: Option<String>,
    #[serde(default)]
    purl: Option<String>,
    #[serde(default)]
    components: Option<Vec<Component>>,
}

#[derive(Debug, Deserialize)]
struct Vulnerability {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    references: Option<Vec<Reference>>,
    #[serde(default)]
    ratings: Option<Vec<Rating>>,
    #[serde(default)]
    affects: Option<Vec<Affects>>,
    #[serde(default)]
    analysis: Option<Analysis>,
    #[serde(default)]
    published: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Reference {
    #[serde(default)]
    id: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Rating {
    #[serde(default)]
    score: Option<f64>,
    #[serde(default)]
    severity: Option<String>,
    #[serde(default)]
    method: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Affects {
    #[serde(rename = "ref")]
    reference: String,
}

#[derive(Debug, Deserialize)]
struct Analysis {
    #[serde(default)]
    state: Option<String>,
    #[serde(default)]
    justification: Option<String>,
}

pub(crate) fn parse_slice(bytes: &[u8]) -> Result<FindingsReport, Fail> {
    convert(common::from_slice(bytes)?)
}

pub(crate) fn parse_value(value: &Value) -> Result<FindingsReport, Fail> {
    convert(common::from_value(value)?)
}

/// Checks `bomFormat` and `specVersion`.
pub(crate) fn check_header(bom_format: &str, spec_version: &str) -> Result<(), Fail> {
    if bom_format != "CycloneDX" {
        return Err(Fail::new(
            "$.bomFormat",
            format!("bomFormat is {bom_format:?}, expected \"CycloneDX\""),
        ));
    }
    if !SPEC_VERSIONS.contains(&spec_version.trim()) {
        return Err(Fail::new(
            "$.specVersion",
            format!(
                "unsupported CycloneDX specVersion {spec_version:?} (supported: {})",
                SPEC_VERSIONS.join(", ")
            ),
        ));
    }
    Ok(())
}

fn is_cvss_v3_or_v4(method: &str) -> bool {
    matches!(method.trim(), "CVSSv3" | "CVSSv31" | "CVSSv4" | "CVSSv40")
}

fn vex_status(state: &str) -> Option<VexStatus> {
    Some(match state.trim() {
        "not_affected" | "false_positive" => VexStatus::NotAffected,
        "resolved" | "resolved_with_pedigree" => VexStatus::Fixed,
        "exploitable" => VexStatus::Affected,
        "in_triage" => VexStatus::UnderInvestigation,
        _ => return None,
    })
}

/// First tool named in `metadata.tools`, in either the 1.4 or the 1.5+ shape.
fn scanner_of(tools: Option<&Value>) -> Option<Scanner> {
    let tools = tools?;
    let first = match tools {
        Value::Array(list) => list.first(),
        Value::Object(obj) => obj
            .get("components")
            .and_then(Value::as_array)
            .and_then(|l| l.first())
            .or_else(|| {
                obj.get("services")
                    .and_then(Value::as_array)
                    .and_then(|l| l.first())
            }),
        _ => None,
    }?;
    let name = non_empty(first.get("name").and_then(Value::as_str))?;
    Some(Scanner {
        name,
        version: non_empty(first.get("version").and_then(Value::as_str)),
        db: None,
    })
}

fn index_components<'a>(
    roots: impl Iterator<Item = &'a Component>,
    index: &mut HashMap<&'a str, &'a Component>,
) {
    let mut stack: Vec<&Component> = roots.collect();
    while let Some(c) = stack.pop() {
        if let Some(r) = c.bom_ref.as_deref() {
            index.entry(r).or_insert(c);
        }
        stack.extend(c.components.iter().flatten());
    }
}

fn package_of(reference: &str, index: &HashMap<&str, &Component>) -> Package {
    if let Some(c) = index.get(reference) {
        let purl = non_empty(c.purl.as_deref());
        return Package {
            name: c.name.clone().unwrap_or_default(),
            version: non_empty(c.version.as_deref()),
            kind: purl.as_deref().and_then(parse_purl).map(|p| p.kind),
            purl,
        };
    }
    match parse_purl(reference) {
        Some(p) => Package {
            name: p.name,
            version: p.version,
            purl: Some(reference.to_string()),
            kind: Some(p.kind),
        },
        None => Package {
            name: reference.to_string(),
            ..Package::default()
        },
    }
}

fn convert(bom: Bom) -> Result<FindingsReport, Fail> {
    check_header(&bom.bom_format, &bom.spec_version)?;
    let Some(vulnerabilities) = bom.vulnerabilities else {
        return Err(Fail::new(
            "$",
            "CycloneDX document has no \"vulnerabilities\" array: it is an SBOM, not a vulnerability report",
        ));
    };
    let metadata = bom.metadata;
    let created = common::timestamp(
        metadata.as_ref().and_then(|m| m.timestamp.as_deref()),
        "$.metadata.timestamp",
    )?;
    let scanner =
        scanner_of(metadata.as_ref().and_then(|m| m.tools.as_ref())).unwrap_or_else(|| Scanner {
            name: "unknown".to_string(),
            version: None,
            db: None,
        });
    let subject = metadata.as_ref().and_then(|m| m.component.as_ref());
    // An image's own component carries its digest as the version of a `pkg:oci` purl.
    let subject_digest = subject
        .and_then(|c| c.purl.as_deref())
        .and_then(parse_purl)
        .filter(|p| p.kind == "oci")
        .and_then(|p| p.version)
        .filter(|v| v.contains(':'));
    let artifact_name = subject.and_then(|c| non_empty(c.name.as_deref()));

    let mut index = HashMap::new();
    index_components(bom.components.iter().flatten().chain(subject), &mut index);

    let mut findings = Vec::new();
    let mut vex = Vec::new();
    for (i, v) in vulnerabilities.iter().enumerate() {
        let Some(id) = non_empty(v.id.as_deref()) else {
            return Err(Fail::new(
                format!("$.vulnerabilities[{i}]"),
                "vulnerability has no id",
            ));
        };
        let mut aliases = Vec::new();
        for r in v.references.iter().flatten() {
            push_alias(&mut aliases, &id, r.id.as_deref().unwrap_or_default());
        }
        let mut severity = Severity::Unknown;
        let mut cvss = None;
        for rating in v.ratings.iter().flatten() {
            let cvss_rating = rating.method.as_deref().is_some_and(is_cvss_v3_or_v4);
            let score = rating.score.and_then(cvss_score).filter(|_| cvss_rating);
            cvss = max_cvss(cvss, score);
            let rated = match (rating.severity.as_deref(), score) {
                (Some(word), _) => severity_word(word),
                (None, Some(s)) => Severity::from_cvss(s),
                (None, None) => Severity::Unknown,
            };
            severity = max_severity(severity, rated);
        }

        let mut refs: Vec<&str> = Vec::new();
        for a in v.affects.iter().flatten() {
            let r = a.reference.trim();
            if !r.is_empty() && !refs.contains(&r) {
                refs.push(r);
            }
        }
        let packages: Vec<Package> = if refs.is_empty() {
            vec![Package::default()]
        } else {
            refs.iter().map(|r| package_of(r, &index)).collect()
        };

        if let Some(analysis) = &v.analysis {
            if let Some(status) = analysis.state.as_deref().and_then(vex_status) {
                let subcomponents = refs
                    .iter()
                    .zip(&packages)
                    .map(|(r, p)| match (&p.purl, p.name.is_empty()) {
                        (Some(purl), _) => purl.clone(),
                        (None, false) => p.name.clone(),
                        (None, true) => (*r).to_string(),
                    })
                    .collect();
                vex.push(VexStatement {
                    vulnerability: id.clone(),
                    aliases: aliases.clone(),
                    products: Vec::new(),
                    subcomponents,
                    status,
                    justification: non_empty(analysis.justification.as_deref()),
                });
            }
        }

        for package in packages {
            findings.push(Finding {
                id: id.clone(),
                aliases: aliases.clone(),
                severity,
                cvss,
                package,
                fixed_versions: Vec::new(),
                fix_state: FixState::Unknown,
                published: common::published(v.published.as_deref()),
            });
        }
    }

    Ok(FindingsReport {
        format: ReportFormat::Cyclonedx,
        subject_digest,
        artifact_name,
        scanner,
        created,
        findings,
        vex,
    })
}
