//! Helpers shared by the format parsers: typed deserialisation with JSON paths, error values,
//! timestamps, purls, severities and small string utilities. Nothing here panics on any input.

use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;

use serde_json::Value;

use super::ParseError;
use crate::model::Severity;

/// A parse failure before the format name is attached: where (`$`-rooted JSON path) and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Fail {
    pub path: String,
    pub message: String,
}

impl Fail {
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Fail {
            path: path.into(),
            message: message.into(),
        }
    }

    /// Attaches the format name.
    pub fn with_format(self, format: &str) -> ParseError {
        ParseError {
            format: format.to_string(),
            path: self.path,
            message: self.message,
        }
    }

    /// Re-roots the path of a failure found inside a nested document (`$.predicate`, `$.payload`...)
    /// and says which nested document it was in (`what`, may be empty).
    pub fn nested(self, prefix: &str, what: &str) -> Self {
        let rest = self.path.strip_prefix('$').unwrap_or(&self.path);
        let message = if what.is_empty() {
            self.message
        } else {
            format!("{what}: {}", self.message)
        };
        Fail {
            path: format!("{prefix}{rest}"),
            message,
        }
    }

    fn from_json(path: String, err: &serde_json::Error) -> Self {
        let message = if err.is_eof() {
            format!(
                "truncated input: unexpected end of file (EOF) at line {}, column {}",
                err.line(),
                err.column()
            )
        } else if err.is_syntax() {
            format!("invalid JSON: {err}")
        } else {
            err.to_string()
        };
        Fail { path, message }
    }
}

/// Formats a serde_path_to_error path as `$.Results[0].Vulnerabilities[3].Severity`; keys that are
/// not plain identifiers use the bracket form (`$.runs[0].properties["security-severity"]`).
/// Positions serde cannot name are left out.
pub(crate) fn format_path(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let mut out = String::from("$");
    for segment in path.iter() {
        match segment {
            Segment::Seq { index } => {
                out.push('[');
                out.push_str(&index.to_string());
                out.push(']');
            }
            Segment::Map { key } => push_key(&mut out, key),
            Segment::Enum { variant } => push_key(&mut out, variant),
            // A position serde cannot name (e.g. where the next key of an object would start).
            Segment::Unknown => {}
        }
    }
    out
}

/// Appends `.key` or `["key"]` to a JSON path.
pub(crate) fn push_key(out: &mut String, key: &str) {
    let plain = key
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if plain {
        out.push('.');
        out.push_str(key);
    } else {
        out.push_str("[\"");
        for c in key.chars() {
            if c == '"' || c == '\\' {
                out.push('\\');
            }
            out.push(c);
        }
        out.push_str("\"]");
    }
}

/// Deserialises a whole document from bytes into `T`, rejecting trailing data. On failure the
/// document is read again with path tracking to report the JSON path of the problem (tracking costs
/// about as much as the parse itself, so the common, valid case runs without it).
pub(crate) fn from_slice<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Fail> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    if let Ok(value) = T::deserialize(&mut de) {
        if let Err(e) = de.end() {
            return Err(Fail::from_json("$".to_string(), &e));
        }
        return Ok(value);
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value: T = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = format_path(e.path());
        Fail::from_json(path, e.inner())
    })?;
    de.end().map_err(|e| Fail::from_json("$".to_string(), &e))?;
    Ok(value)
}

/// Deserialises an already parsed JSON value into `T`, recording the JSON path (relative to the
/// value) of any error.
pub(crate) fn from_value<T: DeserializeOwned>(value: &Value) -> Result<T, Fail> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = format_path(e.path());
        Fail::from_json(path, e.inner())
    })
}

/// Parses a JSON document given as a string inside another document (older cosign predicates).
pub(crate) fn value_from_str(s: &str) -> Result<Value, Fail> {
    from_slice::<Value>(s.as_bytes())
}

/// Strips a UTF-8 byte-order mark, which some Windows tools write before JSON.
pub(crate) fn strip_bom(bytes: &[u8]) -> &[u8] {
    bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes)
}

/// Parses an RFC 3339 timestamp. Absent or empty: `None`. Present but not a timestamp: an error at
/// `path` (a report whose age cannot be known must not pass for a fresh one).
pub(crate) fn timestamp(value: Option<&str>, path: &str) -> Result<Option<DateTime<Utc>>, Fail> {
    let Some(s) = value.map(str::trim).filter(|s| !s.is_empty()) else {
        return Ok(None);
    };
    DateTime::parse_from_rfc3339(s)
        .map(|t| Some(t.with_timezone(&Utc)))
        .map_err(|e| {
            Fail::new(
                path,
                format!("invalid timestamp {s:?} (expected RFC 3339): {e}"),
            )
        })
}

/// A vulnerability's publication date: RFC 3339, or a plain `YYYY-MM-DD` (midnight UTC). Anything
/// else is unknown (`None`), never an error: an unknown date counts for `publishedBefore`, the
/// conservative side, so a malformed date cannot make a vulnerability disappear.
pub(crate) fn published(value: Option<&str>) -> Option<DateTime<Utc>> {
    let s = value.map(str::trim).filter(|s| !s.is_empty())?;
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&Utc));
    }
    chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc())
}

/// A number that some producers write as a JSON string (`"security-severity": "8.2"`).
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[serde(untagged)]
pub(crate) enum NumberOrString {
    Number(f64),
    String(String),
}

impl NumberOrString {
    /// The number, if the string is one.
    pub fn value(&self) -> Option<f64> {
        match self {
            NumberOrString::Number(n) => Some(*n),
            NumberOrString::String(s) => s.trim().parse().ok(),
        }
    }

    /// The text of the value (numbers formatted as JSON does).
    pub fn text(&self) -> String {
        match self {
            NumberOrString::Number(n) => n.to_string(),
            NumberOrString::String(s) => s.trim().to_string(),
        }
    }
}

/// A non-empty, trimmed owned string.
pub(crate) fn non_empty(s: Option<&str>) -> Option<String> {
    s.map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

/// `Severity::parse_word`, with words no scanner vocabulary knows mapped to `Unknown`.
pub(crate) fn severity_word(s: &str) -> Severity {
    Severity::parse_word(s).unwrap_or(Severity::Unknown)
}

/// The more severe of two severities; on equal rank a known `Negligible` beats `Unknown`.
pub(crate) fn max_severity(a: Severity, b: Severity) -> Severity {
    if b.rank() > a.rank() || (b.rank() == a.rank() && a == Severity::Unknown) {
        b
    } else {
        a
    }
}

/// A usable CVSS base score: finite and within 0..=10. Anything else is ignored.
pub(crate) fn cvss_score(score: f64) -> Option<f32> {
    if score.is_finite() && (0.0..=10.0).contains(&score) {
        // Scores have one decimal; f32 holds them closely enough.
        Some(score as f32)
    } else {
        None
    }
}

/// The higher of two optional scores.
pub(crate) fn max_cvss(a: Option<f32>, b: Option<f32>) -> Option<f32> {
    match (a, b) {
        (Some(x), Some(y)) => Some(if y > x { y } else { x }),
        (x, None) => x,
        (None, y) => y,
    }
}

/// Pushes `id` onto `aliases` unless it is empty, the finding's own id, or already there.
pub(crate) fn push_alias(aliases: &mut Vec<String>, own_id: &str, id: &str) {
    let id = id.trim();
    if !id.is_empty() && id != own_id && !aliases.iter().any(|a| a == id) {
        aliases.push(id.to_string());
    }
}

/// Splits a comma-separated fixed-version list (`"1.2.1, 2.1.3"`), dropping empty parts.
pub(crate) fn split_versions(s: Option<&str>) -> Vec<String> {
    s.map(|s| {
        s.split(',')
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_string)
            .collect()
    })
    .unwrap_or_default()
}

/// The digest part of a `repo@sha256:...` reference, or the string itself when it is a bare digest
/// (`algorithm:encoded`, with the character sets of the OCI image spec).
pub(crate) fn digest_of_reference(reference: &str) -> Option<String> {
    let digest = reference
        .trim()
        .rsplit_once('@')
        .map_or(reference.trim(), |(_, d)| d);
    let (algorithm, encoded) = digest.split_once(':')?;
    let algorithm_ok = !algorithm.is_empty()
        && algorithm
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "+._-".contains(c));
    let encoded_ok = !encoded.is_empty()
        && encoded
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "=_-".contains(c));
    (algorithm_ok && encoded_ok).then(|| digest.to_string())
}

/// The parts of a package URL (`pkg:type/namespace/name@version?qualifiers#subpath`) a finding needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Purl {
    pub kind: String,
    pub name: String,
    pub version: Option<String>,
}

/// Parses the type, name and version of a purl; `None` when `s` is not a purl.
pub(crate) fn parse_purl(s: &str) -> Option<Purl> {
    let rest = s.trim().strip_prefix("pkg:")?;
    let rest = rest.split_once('#').map_or(rest, |(r, _)| r);
    let rest = rest.split_once('?').map_or(rest, |(r, _)| r);
    let rest = rest.trim_start_matches('/');
    let (kind, path) = rest.split_once('/')?;
    let (path, version) = match path.rsplit_once('@') {
        Some((p, v)) => (p, Some(percent_decode(v))),
        None => (path, None),
    };
    let name = path
        .trim_end_matches('/')
        .rsplit('/')
        .next()
        .map(percent_decode)?;
    if kind.is_empty() || name.is_empty() {
        return None;
    }
    Some(Purl {
        kind: kind.to_ascii_lowercase(),
        name,
        version: version.filter(|v| !v.is_empty()),
    })
}

/// Decodes `%XX` escapes (invalid escapes are kept as they are).
pub(crate) fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok());
            if let Some(v) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The value after `label` on the first line of `text` that starts with it (`"Package: "` ->
/// `"libssl1.1"`). Only for scanner outputs whose labelled text block is the sole place a value is
/// given (see the SARIF parser).
pub(crate) fn labelled_line<'a>(text: &'a str, label: &str) -> Option<&'a str> {
    text.lines()
        .find_map(|line| line.strip_prefix(label))
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn purls() {
        let p = parse_purl("pkg:apk/alpine/libcrypto1.1@1.1.1c-r0?arch=x86_64&distro=3.10.2");
        assert_eq!(
            p,
            Some(Purl {
                kind: "apk".into(),
                name: "libcrypto1.1".into(),
                version: Some("1.1.1c-r0".into())
            })
        );
        let p = parse_purl("pkg:npm/%40angular/core@1.0.0").map(|p| (p.name, p.version));
        assert_eq!(p, Some(("core".into(), Some("1.0.0".into()))));
        let p = parse_purl("pkg:oci/alpine@sha256%3Aabc?repository_url=x").and_then(|p| p.version);
        assert_eq!(p.as_deref(), Some("sha256:abc"));
        assert_eq!(parse_purl("not a purl"), None);
        assert_eq!(parse_purl("pkg:"), None);
        assert_eq!(parse_purl("pkg:npm/"), None);
        assert_eq!(percent_decode("%4"), "%4");
        assert_eq!(percent_decode("a%zz%41"), "a%zzA");
    }

    #[test]
    fn digests() {
        assert_eq!(
            digest_of_reference("r/a@sha256:abcd").as_deref(),
            Some("sha256:abcd")
        );
        assert_eq!(
            digest_of_reference("sha256:abcd").as_deref(),
            Some("sha256:abcd")
        );
        assert_eq!(digest_of_reference("r/a:tag"), None);
        assert_eq!(digest_of_reference("r/a@"), None);
    }

    #[test]
    fn keys() {
        let mut s = String::from("$");
        push_key(&mut s, "Results");
        push_key(&mut s, "security-severity");
        push_key(&mut s, "a\"b");
        assert_eq!(s, r#"$.Results["security-severity"]["a\"b"]"#);
    }

    #[test]
    fn severities() {
        assert_eq!(
            max_severity(Severity::Unknown, Severity::Negligible),
            Severity::Negligible
        );
        assert_eq!(
            max_severity(Severity::Negligible, Severity::Unknown),
            Severity::Negligible
        );
        assert_eq!(max_severity(Severity::High, Severity::Low), Severity::High);
        assert_eq!(severity_word("bogus"), Severity::Unknown);
        assert_eq!(cvss_score(f64::NAN), None);
        assert_eq!(cvss_score(10.5), None);
        assert_eq!(max_cvss(Some(1.0), Some(2.0)), Some(2.0));
    }
}
