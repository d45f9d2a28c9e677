//! in-toto attestations: DSSE envelopes, Statements (v0.1 and v1) and their predicates:
//! - `https://in-toto.io/attestation/vulns/v0.2` (and v0.1): one finding per `scanner.result[]`;
//! - `https://cosign.sigstore.dev/attestation/vuln/v1` (also without `https://`): the Trivy or Grype
//!   report in `scanner.result` is parsed with its own parser;
//! - OpenVEX (`https://openvex.dev/ns/...`): VEX statements.
//!
//! A predicate may be a JSON object or (older cosign) a string holding one. Bare predicates (the
//! `{scanner, metadata}` object `trivy --format cosign-vuln` writes, without a Statement) are accepted.
//!
//! in-toto vulns mapping: severity entries whose score is a severity word give the severity (the
//! highest word; the format marks no primary entry); numeric scores are CVSS scores (`cvss` = the
//! highest, CVSS v2 and EPSS methods excluded) and give the severity when no word does. Package data
//! comes from `annotations` (a list of maps, or one map), read with the keys producers use
//! (case, `_` and `-` ignored): package name `packageName`/`pkgName`/`package` (a string or an object
//! with `name`, `version`, `purl`, `type`), version `packageVersion`/`installedVersion`/`version`,
//! fixed versions `fixedVersion(s)`/`fixVersion(s)`/`fixedIn` (a string, comma-separated, or a list),
//! purl `purl`/`packageUrl`, type `packageType`/`pkgType`/`ecosystem`/`type`, aliases `aliases`.
//! The subject digest is `subject[0].digest.sha256` (`sha256:<hex>`).

use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use base64::Engine as _;
use serde::Deserialize;
use serde_json::Value;

use super::common::{
    self, cvss_score, max_cvss, max_severity, non_empty, parse_purl, push_alias, split_versions,
    Fail, NumberOrString,
};
use super::{cyclonedx, grype, openvex, sarif, trivy, ParseError, Parsed};
use crate::model::{Finding, FindingsReport, FixState, Package, ReportFormat, Scanner, Severity};

/// Supported Statement `_type`s.
pub(crate) const STATEMENT_TYPES: [&str; 2] = [
    "https://in-toto.io/Statement/v0.1",
    "https://in-toto.io/Statement/v1",
];
/// The DSSE `payloadType` of in-toto Statements.
pub(crate) const DSSE_PAYLOAD_TYPE: &str = "application/vnd.in-toto+json";
const VULNS_PREFIX: &str = "https://in-toto.io/attestation/vulns";
const COSIGN_VULN: &str = "https://cosign.sigstore.dev/attestation/vuln/v1";

/// What a `predicateType` says the predicate is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PredicateKind {
    Vulns,
    CosignVuln,
    OpenVex,
}

impl PredicateKind {
    pub fn of(predicate_type: &str) -> Option<Self> {
        let t = predicate_type.trim();
        if t.starts_with(VULNS_PREFIX) {
            Some(PredicateKind::Vulns)
        } else if t == COSIGN_VULN || Some(t) == COSIGN_VULN.strip_prefix("https://") {
            Some(PredicateKind::CosignVuln)
        } else if t.starts_with(openvex::CONTEXT_PREFIX) {
            Some(PredicateKind::OpenVex)
        } else {
            None
        }
    }

    /// The format name errors carry.
    pub fn format_name(kind: Option<Self>) -> &'static str {
        match kind {
            Some(PredicateKind::Vulns) => ReportFormat::IntotoVulns.as_str(),
            Some(PredicateKind::CosignVuln) => ReportFormat::CosignVuln.as_str(),
            Some(PredicateKind::OpenVex) => "openvex",
            None => "in-toto",
        }
    }
}

fn unsupported_predicate(predicate_type: &str) -> ParseError {
    Fail::new(
        "$.predicateType",
        format!(
            "unsupported in-toto predicateType {predicate_type:?} (supported: {VULNS_PREFIX}/v0.2, {COSIGN_VULN}, \
             {}/v0.2.0)",
            openvex::CONTEXT_PREFIX
        ),
    )
    .with_format("in-toto")
}

// ---------------------------------------------------------------------------------------------
// DSSE

#[derive(Debug, Deserialize)]
struct Envelope {
    #[serde(rename = "payloadType")]
    payload_type: String,
    payload: String,
    // `signatures` are checked by the registry layer against the trust policy, not here.
}

fn decode_base64(s: &str) -> Option<Vec<u8>> {
    let compact: String = s.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    [STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD]
        .iter()
        .find_map(|e| e.decode(&compact).ok())
}

/// Parses a DSSE envelope whose payload is an in-toto Statement. Signatures are not verified here.
pub(crate) fn parse_envelope(bytes: &[u8]) -> Result<Parsed, ParseError> {
    let envelope: Envelope = common::from_slice(bytes).map_err(|f| f.with_format("dsse"))?;
    if envelope.payload_type.trim() != DSSE_PAYLOAD_TYPE {
        return Err(Fail::new(
            "$.payloadType",
            format!(
                "unsupported DSSE payloadType {:?} (expected {DSSE_PAYLOAD_TYPE})",
                envelope.payload_type
            ),
        )
        .with_format("dsse"));
    }
    let Some(payload) = decode_base64(&envelope.payload) else {
        return Err(Fail::new("$.payload", "DSSE payload is not valid base64").with_format("dsse"));
    };
    parse_statement(common::strip_bom(&payload), None).map_err(|e| ParseError {
        path: format!("$.payload{}", e.path.strip_prefix('$').unwrap_or(&e.path)),
        message: format!("in the base64-decoded DSSE payload: {}", e.message),
        format: e.format,
    })
}

// ---------------------------------------------------------------------------------------------
// Statements

#[derive(Debug, Deserialize)]
struct Statement {
    #[serde(rename = "_type")]
    statement_type: String,
    #[serde(default)]
    subject: Option<Vec<Subject>>,
    #[serde(rename = "predicateType")]
    predicate_type: String,
    #[serde(default)]
    predicate: Option<Value>,
}

#[derive(Debug, Deserialize)]
struct Subject {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    digest: Option<serde_json::Map<String, Value>>,
}

impl Subject {
    /// `sha256:<hex>` (or another algorithm when sha256 is not given).
    fn digest(&self) -> Option<String> {
        let digests = self.digest.as_ref()?;
        let (algorithm, hex) = digests
            .get_key_value("sha256")
            .or_else(|| digests.iter().next())
            .and_then(|(k, v)| v.as_str().map(|v| (k, v.trim())))?;
        (!hex.is_empty()).then(|| format!("{algorithm}:{hex}"))
    }
}

/// Parses an in-toto Statement. `hint` is the predicateType detection saw, for naming the format of
/// an error in a document that cannot be read far enough to find it.
pub(crate) fn parse_statement(bytes: &[u8], hint: Option<&str>) -> Result<Parsed, ParseError> {
    let statement: Statement = common::from_slice(bytes)
        .map_err(|f| f.with_format(PredicateKind::format_name(hint.and_then(PredicateKind::of))))?;
    let Some(kind) = PredicateKind::of(&statement.predicate_type) else {
        return Err(unsupported_predicate(&statement.predicate_type));
    };
    let format = PredicateKind::format_name(Some(kind));
    if !STATEMENT_TYPES.contains(&statement.statement_type.trim()) {
        return Err(Fail::new(
            "$._type",
            format!(
                "unsupported in-toto Statement _type {:?} (supported: {})",
                statement.statement_type,
                STATEMENT_TYPES.join(", ")
            ),
        )
        .with_format(format));
    }
    let Some(predicate) = statement.predicate else {
        return Err(Fail::new("$", "in-toto Statement has no predicate").with_format(format));
    };
    let subject = statement.subject.as_ref().and_then(|s| s.first());
    let subject_digest = subject.and_then(Subject::digest);
    let subject_name = subject.and_then(|s| non_empty(s.name.as_deref()));
    let parsed =
        predicate_of(kind, &predicate, "$.predicate").map_err(|f| f.with_format(format))?;
    Ok(match parsed {
        Parsed::Report(mut report) => {
            // The attested subject is authoritative for what the report is about.
            if subject_digest.is_some() {
                report.subject_digest = subject_digest;
            }
            if report.artifact_name.is_none() {
                report.artifact_name = subject_name;
            }
            Parsed::Report(report)
        }
        vex => vex,
    })
}

/// Parses a predicate (object, or string holding JSON) found at `path`.
fn predicate_of(kind: PredicateKind, predicate: &Value, path: &str) -> Result<Parsed, Fail> {
    match predicate {
        Value::String(s) => {
            let what = "in the JSON string predicate";
            let inner = common::value_from_str(s).map_err(|f| f.nested(path, what))?;
            if !inner.is_object() {
                return Err(Fail::new(
                    path,
                    format!("{what}: the predicate is not a JSON object"),
                ));
            }
            predicate_object(kind, &inner, path)
                .map_err(|f| Fail::new(f.path, format!("{what}: {}", f.message)))
        }
        _ => predicate_object(kind, predicate, path),
    }
}

fn predicate_object(kind: PredicateKind, predicate: &Value, path: &str) -> Result<Parsed, Fail> {
    match kind {
        PredicateKind::Vulns => vulns_predicate(predicate, path).map(Parsed::Report),
        PredicateKind::CosignVuln => cosign_predicate(predicate, path).map(Parsed::Report),
        PredicateKind::OpenVex => openvex::parse_value(predicate)
            .map(Parsed::Vex)
            .map_err(|f| f.nested(path, "")),
    }
}

/// A bare predicate document (`{scanner, metadata}` without a Statement): `scanner.result` is a list
/// for in-toto vulns, a report object (or string) for the cosign vuln predicate.
pub(crate) fn parse_bare_predicate(bytes: &[u8]) -> Result<Parsed, ParseError> {
    let value: Value = common::from_slice(bytes).map_err(|f| f.with_format("in-toto"))?;
    let kind = match value.get("scanner").and_then(|s| s.get("result")) {
        Some(Value::Array(_)) => PredicateKind::Vulns,
        Some(Value::Object(_) | Value::String(_)) => PredicateKind::CosignVuln,
        Some(Value::Null) => {
            return Err(Fail::new(
                "$.scanner.result",
                "scanner.result is null: the predicate's scanner section carries no scan result",
            )
            .with_format("in-toto"))
        }
        _ => {
            return Err(Fail::new(
                "$.scanner",
                "a bare vulnerability predicate needs scanner.result (a list for in-toto vulns, a report for cosign vuln)",
            )
            .with_format("in-toto"))
        }
    };
    predicate_of(kind, &value, "$")
        .map_err(|f| f.with_format(PredicateKind::format_name(Some(kind))))
}

#[derive(Debug, Deserialize)]
struct ScanMetadata {
    #[serde(rename = "scanStartedOn", default)]
    started: Option<String>,
    #[serde(rename = "scanFinishedOn", default)]
    finished: Option<String>,
}

impl ScanMetadata {
    fn created(
        metadata: Option<&ScanMetadata>,
        path: &str,
    ) -> Result<Option<chrono::DateTime<chrono::Utc>>, Fail> {
        let Some(m) = metadata else { return Ok(None) };
        match m.finished.as_deref().filter(|s| !s.trim().is_empty()) {
            Some(f) => common::timestamp(Some(f), &format!("{path}.metadata.scanFinishedOn")),
            None => common::timestamp(
                m.started.as_deref(),
                &format!("{path}.metadata.scanStartedOn"),
            ),
        }
    }
}

#[derive(Debug, Deserialize)]
struct Db {
    #[serde(default)]
    version: Option<NumberOrString>,
    #[serde(rename = "lastUpdate", default)]
    last_update: Option<String>,
}

impl Db {
    fn describe(db: Option<&Db>) -> Option<String> {
        let db = db?;
        db.version
            .as_ref()
            .map(NumberOrString::text)
            .filter(|s| !s.is_empty())
            .or_else(|| non_empty(db.last_update.as_deref()))
    }
}

/// The scanner's name from its `uri`: a purl's name (`pkg:github/aquasecurity/trivy@...` -> `trivy`), a
/// GitHub/GitLab URL's repository (`https://github.com/anchore/grype/...` -> `grype`), else the uri.
fn scanner_name(uri: &str) -> String {
    let uri = uri.trim();
    if let Some(p) = parse_purl(uri) {
        return p.name;
    }
    let rest = uri.split_once("://").map_or(uri, |(_, r)| r);
    let mut parts = rest.split('/');
    if let (Some(host), Some(_owner), Some(repo)) = (parts.next(), parts.next(), parts.next()) {
        if (host.ends_with("github.com") || host.ends_with("gitlab.com")) && !repo.is_empty() {
            return repo.to_string();
        }
    }
    uri.to_string()
}

// ---------------------------------------------------------------------------------------------
// in-toto vulns predicate

#[derive(Debug, Deserialize)]
struct VulnsPredicate {
    scanner: VulnsScanner,
    #[serde(default)]
    metadata: Option<ScanMetadata>,
}

#[derive(Debug, Deserialize)]
struct VulnsScanner {
    #[serde(default)]
    uri: Option<String>,
    /// Not in the spec, but some producers add it.
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    version: Option<String>,
    #[serde(default)]
    db: Option<Db>,
    #[serde(default)]
    result: Option<Vec<VulnResult>>,
}

#[derive(Debug, Deserialize)]
struct VulnResult {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    severity: Option<Vec<SeverityEntry>>,
    #[serde(default)]
    annotations: Option<Value>,
    /// v0.1 documents nest `{id, severity, annotations}` here.
    #[serde(default)]
    vulnerability: Option<Box<VulnResult>>,
}

#[derive(Debug, Deserialize)]
struct SeverityEntry {
    #[serde(default)]
    method: Option<String>,
    #[serde(default)]
    score: Option<NumberOrString>,
}

fn normalise_key(k: &str) -> String {
    k.chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

/// Annotations of one result, flattened to (normalised key, value) pairs in document order.
fn annotation_pairs(annotations: Option<&Value>) -> Vec<(String, &Value)> {
    let mut out = Vec::new();
    let maps: Vec<&serde_json::Map<String, Value>> = match annotations {
        Some(Value::Object(m)) => vec![m],
        Some(Value::Array(items)) => items.iter().filter_map(Value::as_object).collect(),
        _ => Vec::new(),
    };
    for m in maps {
        for (k, v) in m {
            out.push((normalise_key(k), v));
        }
    }
    out
}

fn lookup<'a>(pairs: &[(String, &'a Value)], keys: &[&str]) -> Option<&'a Value> {
    keys.iter()
        .find_map(|k| pairs.iter().find(|(pk, _)| pk == k).map(|(_, v)| *v))
}

fn value_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => non_empty(Some(s)),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn value_list(v: &Value) -> Vec<String> {
    match v {
        Value::String(s) => split_versions(Some(s)),
        Value::Array(items) => items.iter().filter_map(value_text).collect(),
        _ => Vec::new(),
    }
}

/// Whether a numeric severity entry is a CVSS v3/v4 base score (not CVSS v2, not EPSS).
fn is_cvss_method(method: Option<&str>) -> bool {
    let m = normalise_key(method.unwrap_or_default());
    !(m.contains("epss") || m.contains("cvssv2") || m.contains("cvss2") || m.contains("ssvc"))
}

fn vulns_predicate(predicate: &Value, path: &str) -> Result<FindingsReport, Fail> {
    let p: VulnsPredicate = common::from_value(predicate).map_err(|f| f.nested(path, ""))?;
    let Some(results) = p.scanner.result else {
        let null = predicate
            .get("scanner")
            .and_then(|s| s.get("result"))
            .is_some_and(Value::is_null);
        return Err(if null {
            Fail::new(
                format!("{path}.scanner.result"),
                "scanner.result is null: the scanner section carries no scan result (an empty list means \
                 no vulnerabilities; null is not a scan)",
            )
        } else {
            Fail::new(
                format!("{path}.scanner"),
                "scanner.result is missing (an empty list means no vulnerabilities; an absent one is not a scan)",
            )
        });
    };
    let created = ScanMetadata::created(p.metadata.as_ref(), path)?;
    let uri = non_empty(p.scanner.uri.as_deref());
    let scanner = Scanner {
        name: non_empty(p.scanner.name.as_deref())
            .or_else(|| uri.as_deref().map(scanner_name))
            .unwrap_or_else(|| "unknown".to_string()),
        version: non_empty(p.scanner.version.as_deref()),
        db: Db::describe(p.scanner.db.as_ref()),
    };

    let mut findings = Vec::with_capacity(results.len());
    for (i, r) in results.iter().enumerate() {
        let r = match (&r.id, &r.vulnerability) {
            (None, Some(inner)) => inner.as_ref(),
            _ => r,
        };
        let Some(id) = non_empty(r.id.as_deref()) else {
            return Err(Fail::new(
                format!("{path}.scanner.result[{i}]"),
                "result has no id",
            ));
        };
        let mut word: Option<Severity> = None;
        let mut cvss = None;
        for entry in r.severity.iter().flatten() {
            let Some(score) = &entry.score else { continue };
            if let Some(n) = score.value() {
                if is_cvss_method(entry.method.as_deref()) {
                    cvss = max_cvss(cvss, cvss_score(n));
                }
            } else if let Some(s) = Severity::parse_word(&score.text()) {
                word = Some(word.map_or(s, |w| max_severity(w, s)));
            } else {
                word = Some(word.unwrap_or(Severity::Unknown));
            }
        }
        let severity = match (word, cvss) {
            (Some(Severity::Unknown), Some(c)) => Severity::from_cvss(c),
            (Some(w), _) => w,
            (None, Some(c)) => Severity::from_cvss(c),
            (None, None) => Severity::Unknown,
        };

        let pairs = annotation_pairs(r.annotations.as_ref());
        let package_obj = lookup(&pairs, &["package", "pkg"]).and_then(Value::as_object);
        let from_obj = |keys: &[&str]| {
            package_obj.and_then(|o| keys.iter().find_map(|k| o.get(*k)).and_then(value_text))
        };
        let text = |keys: &[&str]| lookup(&pairs, keys).and_then(value_text);
        let purl =
            text(&["purl", "packageurl", "pkgpurl", "packagepurl"]).or_else(|| from_obj(&["purl"]));
        let parsed_purl = purl.as_deref().and_then(parse_purl);
        let name = text(&["packagename", "pkgname", "package", "pkg", "componentname"])
            .or_else(|| from_obj(&["name"]))
            .or_else(|| parsed_purl.as_ref().map(|p| p.name.clone()))
            .unwrap_or_default();
        let version = text(&[
            "packageversion",
            "installedversion",
            "pkgversion",
            "version",
            "componentversion",
        ])
        .or_else(|| from_obj(&["version"]))
        .or_else(|| parsed_purl.as_ref().and_then(|p| p.version.clone()));
        let kind = text(&["packagetype", "pkgtype", "ecosystem", "type"])
            .or_else(|| from_obj(&["type"]))
            .or_else(|| parsed_purl.as_ref().map(|p| p.kind.clone()));
        let fixed_versions = lookup(
            &pairs,
            &[
                "fixedversion",
                "fixedversions",
                "fixversion",
                "fixversions",
                "fixedin",
            ],
        )
        .map(value_list)
        .unwrap_or_default();
        let mut aliases = Vec::new();
        for a in lookup(&pairs, &["aliases", "alias"])
            .map(value_list)
            .unwrap_or_default()
        {
            push_alias(&mut aliases, &id, &a);
        }
        findings.push(Finding {
            // The in-toto vulns predicate carries no publication date.
            published: None,
            fix_state: if fixed_versions.is_empty() {
                FixState::Unknown
            } else {
                FixState::Fixed
            },
            id,
            aliases,
            severity,
            cvss,
            package: Package {
                name,
                version,
                purl,
                kind,
            },
            fixed_versions,
        });
    }
    Ok(FindingsReport {
        format: ReportFormat::IntotoVulns,
        subject_digest: None,
        artifact_name: None,
        scanner,
        created,
        findings,
        vex: Vec::new(),
    })
}

// ---------------------------------------------------------------------------------------------
// cosign vuln predicate

#[derive(Debug, Deserialize)]
struct CosignPredicate {
    scanner: CosignScanner,
    #[serde(default)]
    metadata: Option<ScanMetadata>,
}

#[derive(Debug, Deserialize)]
struct CosignScanner {
    #[serde(default)]
    uri: Option<String>,
    #[serde(default)]
    version: Option<String>,
    #[serde(default)]
    db: Option<Db>,
    // `result` is read from the value in place (it can be a large report): not deserialised here.
}

fn cosign_predicate(predicate: &Value, path: &str) -> Result<FindingsReport, Fail> {
    let p: CosignPredicate = common::from_value(predicate).map_err(|f| f.nested(path, ""))?;
    let result_path = format!("{path}.scanner.result");
    let result =
        match predicate.get("scanner").and_then(|s| s.get("result")) {
            None => {
                return Err(Fail::new(
                    format!("{path}.scanner"),
                    "scanner.result (the wrapped scanner report) is missing",
                ))
            }
            // The scanner section says there is no result: not a scan (a clean scan still wraps the
            // scanner's report, with no findings in it).
            Some(Value::Null) => return Err(Fail::new(
                result_path,
                "scanner.result is null: the attestation's scanner section carries no scan result \
                 (a clean scan still wraps the scanner's report)",
            )),
            Some(result) => result,
        };
    let holder;
    let result = match result {
        Value::String(s) => {
            holder = common::value_from_str(s)
                .map_err(|f| f.nested(&result_path, "in the JSON string result"))?;
            &holder
        }
        other => other,
    };
    let has = |k: &str| result.get(k).is_some();
    let parsed = if has("SchemaVersion") || has("Results") {
        trivy::parse_wrapped(result)
            .map_err(|f| f.nested(&result_path, "in the wrapped Trivy report"))
    } else if has("matches") {
        grype::parse_value(result)
            .map_err(|f| f.nested(&result_path, "in the wrapped Grype report"))
    } else if has("runs") {
        sarif::parse_value(result)
            .map_err(|f| f.nested(&result_path, "in the wrapped SARIF report"))
    } else if has("bomFormat") {
        cyclonedx::parse_value(result)
            .map_err(|f| f.nested(&result_path, "in the wrapped CycloneDX report"))
    } else {
        Err(Fail::new(
            result_path,
            "scanner.result is neither a Trivy nor a Grype JSON report",
        ))
    };
    let mut report = parsed?;

    report.format = ReportFormat::CosignVuln;
    if report.scanner.version.is_none() {
        report.scanner.version = non_empty(p.scanner.version.as_deref());
    }
    if report.scanner.db.is_none() {
        report.scanner.db = Db::describe(p.scanner.db.as_ref());
    }
    if report.scanner.name.is_empty() || report.scanner.name == "unknown" {
        if let Some(uri) = non_empty(p.scanner.uri.as_deref()) {
            report.scanner.name = scanner_name(&uri);
        }
    }
    if report.created.is_none() {
        report.created = ScanMetadata::created(p.metadata.as_ref(), path)?;
    }
    Ok(report)
}
