//! The normalised findings model every report format is parsed into.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Vulnerability severity. `Unknown` and `Negligible` share the lowest rank
/// (ARCHITECTURE.md section 3: critical > high > medium > low > negligible/unknown).
#[cfg_attr(feature = "crd", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    #[default]
    Unknown,
    Negligible,
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    /// All severities from the most to the least severe (display order).
    pub const ALL_DESC: [Severity; 6] = [
        Severity::Critical,
        Severity::High,
        Severity::Medium,
        Severity::Low,
        Severity::Negligible,
        Severity::Unknown,
    ];

    /// Rank used for ordering and thresholds: negligible and unknown are equal.
    pub fn rank(self) -> u8 {
        match self {
            Severity::Unknown | Severity::Negligible => 0,
            Severity::Low => 1,
            Severity::Medium => 2,
            Severity::High => 3,
            Severity::Critical => 4,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Unknown => "unknown",
            Severity::Negligible => "negligible",
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }

    /// Parses the severity words scanners use (case-insensitive). `None` when the
    /// word is not a severity (the caller decides whether that is an error).
    pub fn parse_word(s: &str) -> Option<Severity> {
        let s = s.trim();
        let eq = |w: &str| s.eq_ignore_ascii_case(w);
        Some(if eq("critical") {
            Severity::Critical
        } else if eq("high") || eq("important") {
            Severity::High
        } else if eq("medium") || eq("moderate") {
            Severity::Medium
        } else if eq("low") {
            Severity::Low
        } else if eq("negligible") || eq("none") || eq("info") || eq("informational") {
            Severity::Negligible
        } else if eq("unknown") || eq("unspecified") || eq("untriaged") {
            Severity::Unknown
        } else {
            return None;
        })
    }

    /// The CVSS v3 qualitative rating of a base score.
    pub fn from_cvss(score: f32) -> Severity {
        if score >= 9.0 {
            Severity::Critical
        } else if score >= 7.0 {
            Severity::High
        } else if score >= 4.0 {
            Severity::Medium
        } else if score > 0.0 {
            Severity::Low
        } else {
            Severity::Negligible
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Severity {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Severity::parse_word(s).ok_or_else(|| {
            format!("unknown severity {s:?} (expected critical, high, medium, low, negligible or unknown)")
        })
    }
}

/// Whether a fix exists for a finding, as the scanner says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum FixState {
    Fixed,
    NotFixed,
    WontFix,
    #[default]
    Unknown,
}

/// The package a finding is in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Package {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub purl: Option<String>,
    /// Ecosystem / package type (apk, deb, rpm, npm, gomod, ...).
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
}

/// One finding: one vulnerability id in one package.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Finding {
    pub id: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<String>,
    pub severity: Severity,
    /// Highest CVSS base score (v3.x or v4) any source gives, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cvss: Option<f32>,
    pub package: Package,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fixed_versions: Vec<String>,
    #[serde(default)]
    pub fix_state: FixState,
    /// When the vulnerability was published, as the report says (Trivy `PublishedDate`,
    /// CycloneDX `published`); `None` when the format does not carry it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub published: Option<DateTime<Utc>>,
}

impl Finding {
    /// A finding has a fix when it names a fixed version.
    pub fn has_fix(&self) -> bool {
        !self.fixed_versions.is_empty()
    }
}

/// Which format a report was parsed from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ReportFormat {
    Trivy,
    Grype,
    Sarif,
    Cyclonedx,
    IntotoVulns,
    CosignVuln,
}

impl ReportFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            ReportFormat::Trivy => "trivy",
            ReportFormat::Grype => "grype",
            ReportFormat::Sarif => "sarif",
            ReportFormat::Cyclonedx => "cyclonedx",
            ReportFormat::IntotoVulns => "in-toto-vulns",
            ReportFormat::CosignVuln => "cosign-vuln",
        }
    }
}

impl fmt::Display for ReportFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The scanner that produced a report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Scanner {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Vulnerability database version or update time, when the report says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub db: Option<String>,
}

/// VEX status (OpenVEX 0.2 / CycloneDX analysis state mapped onto it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VexStatus {
    NotAffected,
    Affected,
    Fixed,
    UnderInvestigation,
}

impl VexStatus {
    /// `not_affected` and `fixed` suppress a finding; the others do not.
    pub fn suppresses(self) -> bool {
        matches!(self, VexStatus::NotAffected | VexStatus::Fixed)
    }
}

/// One VEX statement: a vulnerability, optionally limited to products and their subcomponents.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VexStatement {
    /// Vulnerability id (CVE, GHSA, ...).
    pub vulnerability: String,
    /// Other ids of the same vulnerability named by the statement.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<String>,
    /// Products (image references or purls). Empty: every product.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub products: Vec<String>,
    /// Packages (purls) within the products. Empty: every package.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subcomponents: Vec<String>,
    pub status: VexStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub justification: Option<String>,
}

/// A parsed, normalised scanner report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FindingsReport {
    pub format: ReportFormat,
    /// Digest of the scanned image, when the report names it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject_digest: Option<String>,
    /// Name of the scanned artifact as the report gives it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_name: Option<String>,
    pub scanner: Scanner,
    /// When the scan ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<DateTime<Utc>>,
    pub findings: Vec<Finding>,
    /// VEX statements carried inside the report itself (CycloneDX `analysis`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub vex: Vec<VexStatement>,
}

/// Where a report came from, for decisions and alerts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ReportIdentity {
    /// Digest of the findings artifact (registry) or of the report file (local).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<ReportFormat>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scanner: Option<Scanner>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<DateTime<Utc>>,
    /// Whether a signature over the artifact was verified against the trust policy.
    pub verified: bool,
}
