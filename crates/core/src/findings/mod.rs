//! Report parsers: every supported format normalised to one [`FindingsReport`], with
//! format auto-detection. See ARCHITECTURE.md section 4.
//!
//! Detection reads only the top-level keys of the document (values it does not need are skipped
//! without being built, and it stops as soon as the keys seen decide the format), then the format's
//! parser deserialises the document once into typed structs holding only the fields it maps. Errors
//! carry the format and the JSON path of the problem (`$.Results[0].Vulnerabilities[3].Severity`).
//! A document cut short is still detected from the keys before the cut, so its error names the format
//! and says it is truncated.
//!
//! One module per format; each documents its mapping decisions.

mod common;
mod cyclonedx;
mod grype;
mod intoto;
mod openvex;
mod sarif;
mod trivy;

use std::fmt;

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, Visitor};
use serde_json::Value;

use crate::model::{FindingsReport, ReportFormat, VexStatement};
use common::Fail;

/// The formats [`parse`] accepts, for messages.
pub const SUPPORTED_FORMATS: &str = "Trivy JSON (SchemaVersion 2, and the result list of releases before 0.20), Grype JSON, SARIF 2.1.0 (Trivy, Grype), \
     CycloneDX 1.4-1.7 with vulnerabilities, in-toto Statements (bare or in a DSSE envelope) with predicate \
     https://in-toto.io/attestation/vulns/v0.2, https://cosign.sigstore.dev/attestation/vuln/v1 (wrapping a \
     Trivy or Grype report) or OpenVEX, and OpenVEX 0.2 documents";

/// What a findings artifact turned out to be.
#[derive(Debug, Clone, PartialEq)]
pub enum Parsed {
    /// A vulnerability report.
    Report(FindingsReport),
    /// A VEX document (OpenVEX 0.2): suppressions, no findings.
    Vex(Vec<VexStatement>),
}

/// A report that cannot be parsed: which format, where in the JSON, what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{format} report: {path}: {message}")]
pub struct ParseError {
    /// Detected (or requested) format, `unknown` when detection failed.
    pub format: String,
    /// JSON path of the problem (`$.Results[0].Vulnerabilities[3].Severity`), `$` for the whole document.
    pub path: String,
    pub message: String,
}

/// Detects the format of `bytes` and parses it.
pub fn parse(bytes: &[u8]) -> Result<Parsed, ParseError> {
    let bytes = common::strip_bom(bytes);
    let (kind, hint) = detect(bytes)?;
    run(kind, bytes, hint.as_deref())
}

/// Parses `bytes` as the given format, without detection. For [`ReportFormat::IntotoVulns`] and
/// [`ReportFormat::CosignVuln`] the document may be a Statement, a DSSE envelope or a bare predicate,
/// and must carry that predicate.
pub fn parse_format(format: ReportFormat, bytes: &[u8]) -> Result<FindingsReport, ParseError> {
    let bytes = common::strip_bom(bytes);
    let name = format.as_str();
    match format {
        ReportFormat::Trivy => trivy::parse_slice(bytes).map_err(|f| f.with_format(name)),
        ReportFormat::Grype => grype::parse_slice(bytes).map_err(|f| f.with_format(name)),
        ReportFormat::Sarif => sarif::parse_slice(bytes).map_err(|f| f.with_format(name)),
        ReportFormat::Cyclonedx => cyclonedx::parse_slice(bytes).map_err(|f| f.with_format(name)),
        ReportFormat::IntotoVulns | ReportFormat::CosignVuln => {
            let (kind, hint) = detect(bytes).map_err(|e| ParseError {
                format: name.to_string(),
                ..e
            })?;
            if !matches!(kind, Kind::Envelope | Kind::Statement | Kind::BarePredicate) {
                return Err(Fail::new(
                    "$",
                    format!(
                        "expected a {name} attestation, found a {} document",
                        kind.name()
                    ),
                )
                .with_format(name));
            }
            match run(kind, bytes, hint.as_deref())? {
                Parsed::Report(r) if r.format == format => Ok(r),
                Parsed::Report(r) => Err(Fail::new(
                    "$.predicateType",
                    format!("expected a {name} attestation, found {}", r.format),
                )
                .with_format(name)),
                Parsed::Vex(_) => Err(Fail::new(
                    "$.predicateType",
                    format!("expected a {name} attestation, found an OpenVEX one"),
                )
                .with_format(name)),
            }
        }
    }
}

/// Parses a VEX document: OpenVEX (bare, or as an in-toto predicate, DSSE-enveloped or not), or a
/// CycloneDX BOM's `analysis` statements.
pub fn parse_vex(bytes: &[u8]) -> Result<Vec<VexStatement>, ParseError> {
    match parse(bytes)? {
        Parsed::Vex(statements) => Ok(statements),
        Parsed::Report(r) if r.format == ReportFormat::Cyclonedx => Ok(r.vex),
        Parsed::Report(r) => Err(Fail::new(
            "$",
            format!("expected a VEX document, found a {} report", r.format),
        )
        .with_format(r.format.as_str())),
    }
}

// -------------------------------------------------------------------------------------------------
// Detection

/// The document kinds detection tells apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Trivy,
    /// Trivy before SchemaVersion 2 (releases before 0.20): a bare list of results.
    TrivyLegacy,
    Grype,
    Sarif,
    Cyclonedx,
    Statement,
    Envelope,
    BarePredicate,
    OpenVex,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Trivy | Kind::TrivyLegacy => "trivy",
            Kind::Grype => "grype",
            Kind::Sarif => "sarif",
            Kind::Cyclonedx => "cyclonedx",
            Kind::Statement => "in-toto",
            Kind::Envelope => "dsse",
            Kind::BarePredicate => "in-toto",
            Kind::OpenVex => "openvex",
        }
    }
}

fn run(kind: Kind, bytes: &[u8], hint: Option<&str>) -> Result<Parsed, ParseError> {
    let name = kind.name();
    match kind {
        Kind::Trivy => trivy::parse_slice(bytes)
            .map(Parsed::Report)
            .map_err(|f| f.with_format(name)),
        Kind::TrivyLegacy => trivy::parse_legacy_slice(bytes)
            .map(Parsed::Report)
            .map_err(|f| f.with_format(name)),
        Kind::Grype => grype::parse_slice(bytes)
            .map(Parsed::Report)
            .map_err(|f| f.with_format(name)),
        Kind::Sarif => sarif::parse_slice(bytes)
            .map(Parsed::Report)
            .map_err(|f| f.with_format(name)),
        Kind::Cyclonedx => cyclonedx::parse_slice(bytes)
            .map(Parsed::Report)
            .map_err(|f| f.with_format(name)),
        Kind::OpenVex => openvex::parse_slice(bytes)
            .map(Parsed::Vex)
            .map_err(|f| f.with_format(name)),
        Kind::Statement => intoto::parse_statement(bytes, hint),
        Kind::Envelope => intoto::parse_envelope(bytes),
        Kind::BarePredicate => intoto::parse_bare_predicate(bytes),
    }
}

/// Top-level keys detection looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum Key {
    SchemaVersion,
    Results,
    ArtifactName,
    ArtifactType,
    TrivyInfo,
    Matches,
    Descriptor,
    Source,
    Runs,
    Version,
    BomFormat,
    SpecVersion,
    StatementType,
    PredicateType,
    PayloadType,
    Payload,
    Context,
    Scanner,
}

impl Key {
    fn of(key: &str) -> Option<Key> {
        Some(match key {
            "SchemaVersion" => Key::SchemaVersion,
            "Results" => Key::Results,
            "ArtifactName" => Key::ArtifactName,
            "ArtifactType" => Key::ArtifactType,
            "Trivy" => Key::TrivyInfo,
            "matches" => Key::Matches,
            "descriptor" => Key::Descriptor,
            "source" => Key::Source,
            "runs" => Key::Runs,
            "version" => Key::Version,
            "bomFormat" => Key::BomFormat,
            "specVersion" => Key::SpecVersion,
            "_type" => Key::StatementType,
            "predicateType" => Key::PredicateType,
            "payloadType" => Key::PayloadType,
            "payload" => Key::Payload,
            "@context" => Key::Context,
            "scanner" => Key::Scanner,
            _ => return None,
        })
    }

    /// Keys whose (small) value detection needs.
    fn captured(self) -> bool {
        matches!(
            self,
            Key::SchemaVersion
                | Key::Version
                | Key::BomFormat
                | Key::SpecVersion
                | Key::StatementType
                | Key::PredicateType
                | Key::PayloadType
                | Key::Context
        )
    }
}

/// What detection saw of the top level of a document.
#[derive(Debug, Default)]
struct Probe {
    seen: u32,
    values: Vec<(Key, Value)>,
    /// Stopped early: the keys seen already decide the format.
    done: bool,
}

impl Probe {
    fn has(&self, key: Key) -> bool {
        self.seen & (1 << key as u32) != 0
    }

    fn value(&self, key: Key) -> Option<&Value> {
        self.values.iter().find(|(k, _)| *k == key).map(|(_, v)| v)
    }

    fn str_value(&self, key: Key) -> Option<&str> {
        self.value(key).and_then(Value::as_str)
    }

    /// `SchemaVersion` with another Trivy key, or `Results` (no other format has a capitalised
    /// `Results`; the Trivy parser then requires `SchemaVersion` 2). Deciding on `Results` lets
    /// detection stop before the bulk of the report whatever the key order.
    fn is_trivy(&self) -> bool {
        self.has(Key::Results)
            || (self.has(Key::SchemaVersion)
                && [Key::ArtifactName, Key::ArtifactType, Key::TrivyInfo]
                    .iter()
                    .any(|k| self.has(*k)))
    }

    /// Whether the keys seen so far decide the format whatever follows.
    fn decisive(&self) -> bool {
        let captured = |k: Key| self.value(k).is_some();
        (captured(Key::PayloadType) && self.has(Key::Payload))
            || (captured(Key::StatementType) && captured(Key::PredicateType))
            || self
                .value(Key::Context)
                .is_some_and(openvex::is_openvex_context)
            || (captured(Key::BomFormat) && captured(Key::SpecVersion))
            || self.is_trivy()
            || (self.has(Key::Matches) && (self.has(Key::Descriptor) || self.has(Key::Source)))
            || (self.has(Key::Runs) && captured(Key::Version))
    }
}

struct ProbeSeed<'a>(&'a mut Probe);

impl<'de> DeserializeSeed<'de> for ProbeSeed<'_> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_map(self)
    }
}

const PROBE_DONE: &str = "vulngate: format detected";

impl<'de> Visitor<'de> for ProbeSeed<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let probe = self.0;
        while let Some(key) = map.next_key::<String>()? {
            let Some(key) = Key::of(&key) else {
                map.next_value::<IgnoredAny>()?;
                continue;
            };
            probe.seen |= 1 << key as u32;
            if key.captured() {
                let value: Value = map.next_value()?;
                probe.values.push((key, value));
            } else if probe.decisive() {
                probe.done = true;
                return Err(de::Error::custom(PROBE_DONE));
            } else {
                map.next_value::<IgnoredAny>()?;
            }
            if probe.decisive() {
                probe.done = true;
                return Err(de::Error::custom(PROBE_DONE));
            }
        }
        Ok(())
    }
}

fn unknown(message: String) -> ParseError {
    ParseError {
        format: "unknown".to_string(),
        path: "$".to_string(),
        message,
    }
}

/// Detects the kind of document, with the predicateType seen (for naming the format of errors).
fn detect(bytes: &[u8]) -> Result<(Kind, Option<String>), ParseError> {
    let mut probe = Probe::default();
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let error = match ProbeSeed(&mut probe).deserialize(&mut de) {
        Ok(()) => de.end().err(),
        Err(_) if probe.done => None,
        Err(e) => Some(e),
    };
    let complete = error.is_none();
    let hint = probe.str_value(Key::PredicateType).map(str::to_string);

    // Envelope and Statement first: their keys are the most specific.
    let (payload_type, payload) = (probe.has(Key::PayloadType), probe.has(Key::Payload));
    if (payload_type && payload) || (!complete && (payload_type || payload)) {
        return Ok((Kind::Envelope, hint));
    }
    let statement_type = probe
        .str_value(Key::StatementType)
        .is_some_and(|t| t.starts_with("https://in-toto.io/Statement"));
    if probe.has(Key::PredicateType)
        || statement_type
        || (!complete && probe.has(Key::StatementType))
    {
        return Ok((Kind::Statement, hint));
    }
    if probe.has(Key::Context) {
        match probe.value(Key::Context) {
            Some(c) if openvex::is_openvex_context(c) => return Ok((Kind::OpenVex, hint)),
            None if !complete => return Ok((Kind::OpenVex, hint)),
            _ => {}
        }
    }
    if probe.has(Key::BomFormat) {
        if let (Some(format), Some(version)) =
            (probe.value(Key::BomFormat), probe.value(Key::SpecVersion))
        {
            let format = format.as_str().unwrap_or_default();
            let version = version
                .as_str()
                .map_or_else(|| version.to_string(), str::to_string);
            cyclonedx::check_header(format, &version).map_err(|f| f.with_format("cyclonedx"))?;
        }
        return Ok((Kind::Cyclonedx, hint));
    }
    if probe.is_trivy() || (!complete && probe.has(Key::SchemaVersion)) {
        if let Some(version) = probe.value(Key::SchemaVersion) {
            trivy::check_schema_version(Some(version)).map_err(|f| f.with_format("trivy"))?;
        }
        return Ok((Kind::Trivy, hint));
    }
    if (probe.has(Key::Matches) && (probe.has(Key::Descriptor) || probe.has(Key::Source)))
        || (!complete && probe.has(Key::Matches))
    {
        return Ok((Kind::Grype, hint));
    }
    if probe.has(Key::Runs) && (probe.has(Key::Version) || !complete) {
        if let Some(version) = probe.value(Key::Version) {
            if version.as_str() != Some("2.1.0") {
                return Err(Fail::new(
                    "$.version",
                    format!("unsupported SARIF version {version} (only 2.1.0 is supported)"),
                )
                .with_format("sarif"));
            }
        }
        return Ok((Kind::Sarif, hint));
    }
    if probe.has(Key::Scanner) {
        return Ok((Kind::BarePredicate, hint));
    }
    if is_trivy_legacy(bytes) {
        return Ok((Kind::TrivyLegacy, hint));
    }

    Err(unknown(match error {
        Some(e) if e.is_eof() => format!(
            "unrecognised report format: the input is empty or truncated (unexpected end of file at line {}, \
             column {}); supported formats: {SUPPORTED_FORMATS}",
            e.line(),
            e.column()
        ),
        Some(e) => format!("unrecognised report format: not a JSON object ({e}); supported formats: {SUPPORTED_FORMATS}"),
        None => format!("unrecognised report format; supported formats: {SUPPORTED_FORMATS}"),
    }))
}

/// A non-empty JSON array of objects whose first one has Trivy's `Target` key: the report of a
/// Trivy release before SchemaVersion 2. (Only arrays are read twice: no other format is one.)
fn is_trivy_legacy(bytes: &[u8]) -> bool {
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'[') {
        return false;
    }
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Array(items)) => {
            items.first().and_then(|i| i.get("Target")).is_some()
                && items.iter().all(Value::is_object)
        }
        _ => false,
    }
}

/// Extensions of report files in a findings directory (`vulngate check --findings-dir`, the
/// webhook's `findingsDir`).
pub const REPORT_EXTENSIONS: [&str; 4] = [".json", ".sarif", ".cdx.json", ".intoto.json"];

/// The file name stem of an image's report in a findings directory: the reference as
/// written with '/', ':' and '@' replaced by '_'.
pub fn report_file_stem(reference: &str) -> String {
    reference.replace(['/', ':', '@'], "_")
}
