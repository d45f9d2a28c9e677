//! SARIF 2.1.0 logs, in Trivy's and Grype's flavours (and any tool that follows GitHub's
//! `security-severity` convention).
//!
//! One finding per `runs[].results[]`, with the rule found by `ruleIndex` (when it points at a rule
//! with the same id) or else by `ruleId`.
//!
//! Severity, from structured fields only, in this order: a severity word in the rule's
//! `properties.tags` (Trivy puts its primary severity there: `["vulnerability", "security", "HIGH"]`),
//! then `properties["security-severity"]` through [`Severity::from_cvss`], then the result's (or the
//! rule's default) `level` (error -> high, warning -> medium, note -> low). A tag that says UNKNOWN
//! (and no other severity word) keeps the finding unknown: the level is never used for it (Trivy
//! writes `note` for UNKNOWN as for LOW), and for Trivy, whose tag is its primary severity, neither
//! is `security-severity`; other tools' `security-severity` still applies. Grype's SARIF carries its
//! own severity word only in prose (help text, descriptions), so its findings get the severity of
//! their `security-severity`, which Grype fills with the best CVSS score it has.
//!
//! CVSS: Trivy's `cvssv3_baseScore` / `cvssv40_baseScore` rule properties when present, else
//! `security-severity` (except for Trivy, which fills `security-severity` with a made-up value from
//! the severity word when it has no CVSS score).
//!
//! Package data: SARIF has no field for it. Trivy writes it only as labelled lines in the result
//! message (`Package: x\nInstalled Version: y\n...Fixed Version: z`), Grype only as labelled lines in
//! the rule help text (`Package:`, `Version:`, `Fix Version:`, `Type:`; Grype makes one rule per
//! vulnerability and package). Those labelled lines are the only place the data exists, so they are
//! read, result message first; a `purls` property (Grype) is preferred for the purl and fills the name
//! and version when no label gives them.
//!
//! Vulnerability id: the rule id. Grype's rule ids are `<vuln id>-<package name>`; the real id is the
//! value of the help text's `Vulnerability <id>` line when the rule id starts with it, else the rule id
//! with the `-<package name>` suffix removed. Trivy's old template ids lose what is not the id:
//! `[HIGH] CVE-...` the prefix, `CVE-2019-1234/pkgname` (0.15 era) the `/<package>` suffix (the
//! package name when no label gives one), `<target>: <package>-<version> CVE-...` everything before
//! the help text's id. So the same CVE in two packages is one vulnerability, and allowlists, VEX
//! and `cveIds` match it.
//! Trivy's misconfiguration, secret and license results (tagged so) are not vulnerabilities: skipped.

use std::collections::HashMap;

use serde::Deserialize;
use serde_json::Value;

use super::common::{
    self, cvss_score, digest_of_reference, labelled_line, max_cvss, non_empty, parse_purl,
    split_versions, Fail, NumberOrString,
};
use crate::model::{Finding, FindingsReport, FixState, Package, ReportFormat, Scanner, Severity};

#[derive(Debug, Deserialize)]
struct Log {
    version: String,
    runs: Vec<Run>,
}

#[derive(Debug, Deserialize)]
struct Run {
    tool: Tool,
    #[serde(default)]
    results: Option<Vec<SarifResult>>,
    #[serde(default)]
    invocations: Option<Vec<Invocation>>,
    #[serde(default)]
    properties: Option<RunProperties>,
}

#[derive(Debug, Deserialize)]
struct Tool {
    driver: Driver,
}

#[derive(Debug, Deserialize)]
struct Driver {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    version: Option<String>,
    #[serde(rename = "semanticVersion", default)]
    semantic_version: Option<String>,
    #[serde(default)]
    rules: Option<Vec<Rule>>,
}

#[derive(Debug, Deserialize)]
struct Invocation {
    #[serde(rename = "startTimeUtc", default)]
    start: Option<String>,
    #[serde(rename = "endTimeUtc", default)]
    end: Option<String>,
}

#[derive(Debug, Deserialize)]
struct RunProperties {
    #[serde(rename = "imageName", default)]
    image_name: Option<String>,
    #[serde(rename = "repoDigests", default)]
    repo_digests: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
struct Rule {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    help: Option<Message>,
    #[serde(rename = "defaultConfiguration", default)]
    default_configuration: Option<Configuration>,
    #[serde(default)]
    properties: Option<Properties>,
}

#[derive(Debug, Deserialize)]
struct Configuration {
    #[serde(default)]
    level: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct Properties {
    #[serde(rename = "security-severity", default)]
    security_severity: Option<NumberOrString>,
    #[serde(default)]
    tags: Option<Vec<Value>>,
    #[serde(default)]
    purls: Option<Vec<String>>,
    #[serde(rename = "cvssv3_baseScore", default)]
    cvss_v3: Option<NumberOrString>,
    #[serde(rename = "cvssv40_baseScore", default)]
    cvss_v40: Option<NumberOrString>,
}

#[derive(Debug, Deserialize)]
struct Message {
    #[serde(default)]
    text: Option<String>,
}

#[derive(Debug, Deserialize)]
struct SarifResult {
    #[serde(rename = "ruleId", default)]
    rule_id: Option<String>,
    #[serde(rename = "ruleIndex", default)]
    rule_index: Option<i64>,
    #[serde(default)]
    rule: Option<RuleReference>,
    #[serde(default)]
    level: Option<String>,
    #[serde(default)]
    message: Option<Message>,
    #[serde(default)]
    properties: Option<Properties>,
}

#[derive(Debug, Deserialize)]
struct RuleReference {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    index: Option<i64>,
}

pub(crate) fn parse_slice(bytes: &[u8]) -> Result<FindingsReport, Fail> {
    convert(common::from_slice(bytes)?)
}

pub(crate) fn parse_value(value: &Value) -> Result<FindingsReport, Fail> {
    convert(common::from_value(value)?)
}

fn level_severity(level: &str) -> Option<Severity> {
    match level.trim() {
        "error" => Some(Severity::High),
        "warning" => Some(Severity::Medium),
        "note" => Some(Severity::Low),
        "none" => Some(Severity::Unknown),
        _ => None,
    }
}

fn tag_strings(props: Option<&Properties>) -> impl Iterator<Item = &str> {
    props
        .and_then(|p| p.tags.as_ref())
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
}

/// Trivy's non-vulnerability results (misconfigurations, secrets, licenses), recognised by their tags.
fn is_non_vulnerability(props: Option<&Properties>) -> bool {
    let mut other = false;
    for tag in tag_strings(props) {
        if tag.eq_ignore_ascii_case("vulnerability") {
            return false;
        }
        other |= ["misconfiguration", "secret", "license"]
            .iter()
            .any(|t| tag.eq_ignore_ascii_case(t));
    }
    other
}

/// Strips the `[SEVERITY] ` prefix of Trivy's old SARIF template rule ids.
fn strip_severity_prefix(id: &str) -> &str {
    id.strip_prefix('[')
        .and_then(|rest| rest.split_once("] "))
        .filter(|(word, _)| Severity::parse_word(word).is_some())
        .map_or(id, |(_, rest)| rest.trim())
}

fn convert(log: Log) -> Result<FindingsReport, Fail> {
    if log.version.trim() != "2.1.0" {
        return Err(Fail::new(
            "$.version",
            format!(
                "unsupported SARIF version {:?} (only 2.1.0 is supported)",
                log.version
            ),
        ));
    }
    let mut scanner = None;
    let mut created = None;
    let mut subject_digest = None;
    let mut artifact_name = None;
    let mut findings = Vec::new();

    for (run_index, run) in log.runs.iter().enumerate() {
        let driver = &run.tool.driver;
        let driver_name =
            non_empty(driver.name.as_deref()).unwrap_or_else(|| "unknown".to_string());
        let trivy = driver_name.eq_ignore_ascii_case("trivy");
        if scanner.is_none() {
            scanner = Some(Scanner {
                name: driver_name.clone(),
                version: non_empty(driver.version.as_deref())
                    .or_else(|| non_empty(driver.semantic_version.as_deref())),
                db: None,
            });
        }
        if created.is_none() {
            if let Some(inv) = run.invocations.as_ref().and_then(|i| i.first()) {
                let (field, value) = match inv.end.as_deref() {
                    Some(end) => ("endTimeUtc", Some(end)),
                    None => ("startTimeUtc", inv.start.as_deref()),
                };
                created = common::timestamp(
                    value,
                    &format!("$.runs[{run_index}].invocations[0].{field}"),
                )?;
            }
        }
        if let Some(props) = &run.properties {
            if subject_digest.is_none() {
                subject_digest = props
                    .repo_digests
                    .iter()
                    .flatten()
                    .find_map(|r| digest_of_reference(r));
            }
            if artifact_name.is_none() {
                artifact_name = non_empty(props.image_name.as_deref());
            }
        }

        let rules: &[Rule] = driver.rules.as_deref().unwrap_or_default();
        let mut by_id: HashMap<&str, &Rule> = HashMap::with_capacity(rules.len());
        for rule in rules {
            if let Some(id) = rule.id.as_deref() {
                by_id.entry(id).or_insert(rule);
            }
        }

        for (result_index, result) in run.results.iter().flatten().enumerate() {
            let rule_id = result
                .rule_id
                .as_deref()
                .or_else(|| result.rule.as_ref().and_then(|r| r.id.as_deref()))
                .map(str::trim)
                .filter(|s| !s.is_empty());
            let index = result
                .rule_index
                .or_else(|| result.rule.as_ref().and_then(|r| r.index));
            let by_index = index
                .and_then(|i| usize::try_from(i).ok())
                .and_then(|i| rules.get(i))
                .filter(|r| rule_id.is_none() || r.id.as_deref().map(str::trim) == rule_id);
            let rule = by_index.or_else(|| rule_id.and_then(|id| by_id.get(id).copied()));
            let Some(raw_id) = rule_id.or_else(|| rule.and_then(|r| r.id.as_deref())) else {
                return Err(Fail::new(
                    format!("$.runs[{run_index}].results[{result_index}]"),
                    "result has no ruleId (nor rule.id) naming its vulnerability",
                ));
            };
            let rule_props = rule.and_then(|r| r.properties.as_ref());
            if is_non_vulnerability(rule_props) {
                continue;
            }
            findings.push(finding(raw_id, rule, result, trivy));
        }
    }

    Ok(FindingsReport {
        format: ReportFormat::Sarif,
        subject_digest,
        artifact_name,
        scanner: scanner.unwrap_or_else(|| Scanner {
            name: "unknown".to_string(),
            version: None,
            db: None,
        }),
        created,
        findings,
        vex: Vec::new(),
    })
}

fn finding(raw_id: &str, rule: Option<&Rule>, result: &SarifResult, trivy: bool) -> Finding {
    let rule_props = rule.and_then(|r| r.properties.as_ref());
    let result_props = result.properties.as_ref();
    let props = [result_props, rule_props];

    // Severity: tag word, then security-severity, then level.
    let tag_words: Vec<Severity> = props
        .iter()
        .flat_map(|p| tag_strings(*p))
        .filter_map(Severity::parse_word)
        .collect();
    let tag_severity = tag_words.iter().copied().find(|s| *s != Severity::Unknown);
    // A tag that says UNKNOWN is the scanner saying it has no severity. Trivy's level for it is
    // `note`, the same as for LOW, so the level must not turn it into low; for Trivy the tag is the
    // primary severity (as `Severity` in its JSON), so its made-up `security-severity` does not
    // either.
    let tag_unknown = tag_severity.is_none() && tag_words.contains(&Severity::Unknown);
    let security_severity = props
        .iter()
        .find_map(|p| {
            p.and_then(|p| p.security_severity.as_ref())
                .and_then(NumberOrString::value)
        })
        .and_then(cvss_score);
    let level = result
        .level
        .as_deref()
        .or_else(|| {
            rule.and_then(|r| r.default_configuration.as_ref())
                .and_then(|c| c.level.as_deref())
        })
        .and_then(level_severity);
    let severity = tag_severity
        .or_else(|| (tag_unknown && trivy).then_some(Severity::Unknown))
        .or_else(|| security_severity.map(Severity::from_cvss))
        .or(if tag_unknown {
            Some(Severity::Unknown)
        } else {
            level
        })
        .unwrap_or_default();

    let explicit_cvss = props
        .iter()
        .flat_map(|p| {
            p.map(|p| [p.cvss_v3.as_ref(), p.cvss_v40.as_ref()])
                .into_iter()
                .flatten()
        })
        .flatten()
        .filter_map(|n| n.value().and_then(cvss_score))
        .fold(None, |best, s| max_cvss(best, Some(s)));
    let cvss = match explicit_cvss {
        Some(c) => Some(c),
        None if trivy => None,
        None => security_severity,
    };

    // Labelled lines: result message first (Trivy), then rule help text (Grype).
    let message = result
        .message
        .as_ref()
        .and_then(|m| m.text.as_deref())
        .unwrap_or_default();
    let help = rule
        .and_then(|r| r.help.as_ref())
        .and_then(|h| h.text.as_deref())
        .unwrap_or_default();
    let label = |l: &str| labelled_line(message, l).or_else(|| labelled_line(help, l));

    let purl = props.iter().find_map(|p| {
        p.and_then(|p| p.purls.as_ref())
            .and_then(|v| v.iter().find_map(|s| non_empty(Some(s))))
    });
    let parsed_purl = purl.as_deref().and_then(parse_purl);
    let labelled_name = label("Package: ")
        .map(str::to_string)
        .or_else(|| parsed_purl.as_ref().map(|p| p.name.clone()));
    let version = label("Installed Version: ")
        .or_else(|| label("Version: "))
        .map(str::to_string)
        .or_else(|| parsed_purl.as_ref().and_then(|p| p.version.clone()));
    let kind = parsed_purl
        .as_ref()
        .map(|p| p.kind.clone())
        .or_else(|| label("Type: ").map(str::to_string));
    let fixed_versions =
        split_versions(label("Fixed Version: ").or_else(|| label("Fix Version: ")));

    let (id, id_package) = vulnerability_id(
        strip_severity_prefix(raw_id),
        labelled_line(help, "Vulnerability ").or_else(|| labelled_line(message, "Vulnerability ")),
        labelled_name.as_deref().unwrap_or_default(),
    );
    let name = labelled_name.or(id_package).unwrap_or_default();
    Finding {
        // SARIF carries no publication date.
        published: None,
        id,
        aliases: Vec::new(),
        severity,
        cvss,
        fix_state: if fixed_versions.is_empty() {
            FixState::Unknown
        } else {
            FixState::Fixed
        },
        package: Package {
            name,
            version,
            purl,
            kind,
        },
        fixed_versions,
    }
}

/// The vulnerability id of a rule id (see the module docs), and the package name the rule id
/// carries when it is `<vulnerability id>/<package>` and no label names the package.
fn vulnerability_id(
    rule_id: &str,
    help_id: Option<&str>,
    package: &str,
) -> (String, Option<String>) {
    if let Some(help_id) = help_id {
        let after = rule_id.strip_prefix(help_id);
        if after.is_some_and(|rest| rest.is_empty() || rest.starts_with(['-', '/']))
            || rule_id
                .strip_suffix(help_id)
                .is_some_and(|head| head.ends_with(' '))
        {
            let id_package = after
                .and_then(|rest| rest.strip_prefix('/'))
                .filter(|p| package.is_empty() && !p.trim().is_empty())
                .map(|p| p.trim().to_string());
            return (help_id.to_string(), id_package);
        }
    }
    if !package.is_empty() {
        if let Some(stripped) = rule_id
            .strip_suffix(package)
            .and_then(|r| r.strip_suffix(['-', '/']))
        {
            if !stripped.is_empty() {
                return (stripped.to_string(), None);
            }
        }
    }
    // Trivy 0.15-era template ids `CVE-2019-1234/pkgname`, without any label naming the package.
    if let Some((id, pkg)) = rule_id.split_once('/') {
        if looks_like_vulnerability_id(id) && !pkg.trim().is_empty() {
            let id_package = package.is_empty().then(|| pkg.trim().to_string());
            return (id.to_string(), id_package);
        }
    }
    (rule_id.to_string(), None)
}

/// Whether `s` has the shape of a vulnerability id of a public database: an upper-case prefix, a
/// dash, then letters, digits and separators with at least one digit (`CVE-2019-1234`,
/// `GHSA-jfh8-c2jp-5v3q`, `RUSTSEC-2023-0071`, `GO-2024-2575`, `ALAS2-2021-1234`).
fn looks_like_vulnerability_id(s: &str) -> bool {
    let Some((prefix, rest)) = s.split_once('-') else {
        return false;
    };
    prefix.len() >= 2
        && prefix.starts_with(|c: char| c.is_ascii_uppercase())
        && prefix
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
        && !rest.is_empty()
        && rest.chars().any(|c| c.is_ascii_digit())
        && rest
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-._:".contains(c))
}
