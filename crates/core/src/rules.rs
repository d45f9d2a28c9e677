//! The `SecurityRule` schema (ARCHITECTURE.md section 2), strict loading and validation.
//!
//! Unknown fields are always an error: every struct here is `deny_unknown_fields`, and
//! every error names the file, the YAML document, the rule and the field path.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};

use crate::model::Severity;

pub const API_VERSION: &str = "vulngate.io/v1";
pub const KIND: &str = "SecurityRule";

/// What a rule does when it decides.
#[cfg_attr(feature = "crd", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Let the workload deploy, raise an alert for review, warn the user.
    Audit,
    /// Reject the workload, raise an alert.
    Deny,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Audit => "audit",
            Action::Deny => "deny",
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Fields a scope selector can test.
#[cfg_attr(feature = "crd", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ScopeField {
    Cluster,
    Namespace,
    Pod,
    /// The workload's name (Deployment, StatefulSet, ... or the Pod's owner-less name).
    Deployment,
    Image,
    Registry,
    Repository,
    Label,
    /// The requesting user (`userInfo.username`). Pods are usually created by a controller:
    /// see docs/rules.md ("Who deploys").
    User,
    /// One of the requesting user's groups (`userInfo.groups`): `equals` is membership.
    Group,
    /// `NAMESPACE:NAME` of the requesting service account (`system:serviceaccount:NS:NAME`).
    ServiceAccount,
}

/// Fields an exemption can test: the scope fields (but cluster stays available) plus `cve`.
#[cfg_attr(feature = "crd", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ExemptionField {
    Cve,
    Cluster,
    Deployment,
    Image,
    Namespace,
    Pod,
    Registry,
    Repository,
    Label,
}

/// String comparison operators (case-sensitive).
#[cfg_attr(feature = "crd", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Op {
    Equals,
    NotEquals,
    StartsWith,
    EndsWith,
    Contains,
}

impl Op {
    /// Applies the operator. A value the request does not have matches only `notEquals`.
    pub fn matches(self, actual: Option<&str>, expected: &str) -> bool {
        match actual {
            None => self == Op::NotEquals,
            Some(a) => match self {
                Op::Equals => a == expected,
                Op::NotEquals => a != expected,
                Op::StartsWith => a.starts_with(expected),
                Op::EndsWith => a.ends_with(expected),
                Op::Contains => a.contains(expected),
            },
        }
    }
}

#[cfg_attr(feature = "crd", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Selector {
    pub field: ScopeField,
    /// Label key (only with `field: label`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    pub op: Op,
    pub value: String,
}

/// One condition of a rule. Either a count condition (`severity` and/or `maxCount`) or a
/// `cveIds` condition; the filters narrow which vulnerabilities count for either.
#[cfg_attr(feature = "crd", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Condition {
    /// Vulnerabilities of this severity or higher count (default: every severity).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub severity: Option<Severity>,
    /// Fulfilled once more than this many count (default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_count: Option<u32>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cve_ids: Vec<String>,
    /// `true`: only fixable vulnerabilities count; `false`: only unfixable ones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fix_available: Option<bool>,
    /// Only vulnerabilities with a CVSS base score at least this high count.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cvss_at_least: Option<f32>,
    /// Only vulnerabilities in a package whose name matches one of these globs count.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub packages: Vec<String>,
    /// `true`: only vulnerabilities in the CISA KEV catalog count; `false`: only the others.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub known_exploited: Option<bool>,
    /// Only vulnerabilities with an EPSS score at least this high count (0.0 to 1.0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epss_at_least: Option<f32>,
    /// Only vulnerabilities with an EPSS percentile at least this high count (0.0 to 1.0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epss_percentile_at_least: Option<f32>,
    /// Only vulnerabilities for which this CEL expression is true count (variables `vuln`,
    /// `image`, `workload`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cel: Option<String>,
    /// Only vulnerabilities published at least this long ago count (unknown date: counts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub published_before: Option<ReportAge>,
}

impl Condition {
    pub fn is_cve_list(&self) -> bool {
        !self.cve_ids.is_empty()
    }

    /// Whether the condition uses a filter of its own (exploitation, CEL): such a condition is
    /// complete without severity or maxCount (it counts more than 0 of any severity).
    pub fn has_standalone_filter(&self) -> bool {
        self.known_exploited.is_some()
            || self.epss_at_least.is_some()
            || self.epss_percentile_at_least.is_some()
            || self.cel.is_some()
    }

    /// Whether `fixAvailable` is the only filter (the engine counts such a condition from
    /// positions, without a walk).
    pub(crate) fn only_fix_filter(&self) -> bool {
        self.cvss_at_least.is_none()
            && self.packages.is_empty()
            && !self.has_standalone_filter()
            && self.published_before.is_none()
    }

    /// The filter phrases (`with a fix`, `CVSS >= 8`, `in KEV`, ...), for messages.
    pub(crate) fn filter_phrases(&self, verbose: bool) -> Vec<String> {
        let mut filters = Vec::new();
        match self.fix_available {
            Some(true) => filters.push("with a fix".to_string()),
            Some(false) => filters.push("without a fix".to_string()),
            None => {}
        }
        if let Some(c) = self.cvss_at_least {
            filters.push(if verbose {
                format!("with CVSS >= {c}")
            } else {
                format!("CVSS >= {c}")
            });
        }
        if !self.packages.is_empty() {
            filters.push(if verbose {
                format!("in packages matching {}", self.packages.join(", "))
            } else {
                format!("in packages {}", self.packages.join(", "))
            });
        }
        match self.known_exploited {
            Some(true) => filters.push("in KEV".to_string()),
            Some(false) => filters.push("not in KEV".to_string()),
            None => {}
        }
        if let Some(x) = self.epss_at_least {
            filters.push(format!("with EPSS >= {x}"));
        }
        if let Some(x) = self.epss_percentile_at_least {
            filters.push(format!("with EPSS percentile >= {x}"));
        }
        if let Some(age) = self.published_before {
            filters.push(format!("published at least {age} ago"));
        }
        if let Some(c) = &self.cel {
            filters.push(format!("matching CEL {c:?}"));
        }
        filters
    }

    /// Human summary: `more than 0 critical or higher vulnerabilities`.
    pub fn describe(&self) -> String {
        let mut s = if self.is_cve_list() {
            format!("any of {}", self.cve_ids.join(", "))
        } else {
            let sev = self.severity.unwrap_or(Severity::Unknown);
            let what = if sev.rank() == 0 {
                "vulnerabilities of any severity".to_string()
            } else {
                format!("{sev} or higher vulnerabilities")
            };
            format!("more than {} {what}", self.max_count.unwrap_or(0))
        };
        let filters = self.filter_phrases(false);
        if !filters.is_empty() {
            s.push_str(" (");
            s.push_str(&filters.join(", "));
            s.push(')');
        }
        s
    }
}

#[cfg_attr(feature = "crd", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Allowance {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid_until: Option<NaiveDate>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub justification: Option<String>,
}

#[cfg_attr(feature = "crd", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Exemption {
    pub field: ExemptionField,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    pub op: Op,
    pub value: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid_until: Option<NaiveDate>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub justification: Option<String>,
}

/// `validUntil` applies through the end of that day (UTC).
pub fn is_live(valid_until: Option<NaiveDate>, now: DateTime<Utc>) -> bool {
    valid_until.is_none_or(|d| now.date_naive() <= d)
}

/// A report age such as `7d`, `12h`, `1w2d`, `90m`, `30s`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReportAge(pub chrono::Duration);

impl ReportAge {
    pub fn parse(s: &str) -> Result<ReportAge, String> {
        let bad = || {
            format!("invalid duration {s:?}: expected a number and a unit (s, m, h, d, w), e.g. 7d or 1d12h")
        };
        let mut total: i64 = 0;
        let mut num = String::new();
        let mut any = false;
        for c in s.trim().chars() {
            if c.is_ascii_digit() {
                num.push(c);
                continue;
            }
            let n: i64 = num.parse().map_err(|_| bad())?;
            num.clear();
            let mult = match c {
                's' => 1,
                'm' => 60,
                'h' => 3600,
                'd' => 86_400,
                'w' => 604_800,
                _ => return Err(bad()),
            };
            total = n
                .checked_mul(mult)
                .and_then(|v| total.checked_add(v))
                .ok_or_else(bad)?;
            any = true;
        }
        if !num.is_empty() || !any || total <= 0 {
            return Err(bad());
        }
        chrono::Duration::try_seconds(total)
            .map(ReportAge)
            .ok_or_else(bad)
    }
}

impl fmt::Display for ReportAge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut secs = self.0.num_seconds();
        for (unit, size) in [
            ("w", 604_800),
            ("d", 86_400),
            ("h", 3600),
            ("m", 60),
            ("s", 1),
        ] {
            if secs >= size {
                write!(f, "{}{unit}", secs / size)?;
                secs %= size;
            }
        }
        Ok(())
    }
}

impl Serialize for ReportAge {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(feature = "crd")]
impl schemars::JsonSchema for ReportAge {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "ReportAge".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "pattern": "^([0-9]+[smhdw])+$",
            "description": "A report age such as 7d, 12h, 1w2d, 90m or 30s"
        })
    }
}

impl<'de> Deserialize<'de> for ReportAge {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        ReportAge::parse(&s).map_err(serde::de::Error::custom)
    }
}

fn default_true() -> bool {
    true
}

fn is_true(b: &bool) -> bool {
    *b
}

fn is_false(b: &bool) -> bool {
    !*b
}

#[cfg_attr(feature = "crd", derive(schemars::JsonSchema, kube::CustomResource))]
#[cfg_attr(
    feature = "crd",
    kube(
        group = "vulngate.io",
        version = "v1",
        kind = "SecurityRule",
        status = "SecurityRuleStatus",
        shortname = "srule",
        category = "vulngate",
        doc = "A vulngate security rule: scope, conditions on vulnerabilities and an action",
        printcolumn = r#"{"name":"Action","type":"string","jsonPath":".spec.action"}"#,
        printcolumn = r#"{"name":"Enabled","type":"boolean","jsonPath":".spec.enabled"}"#,
        printcolumn = r#"{"name":"Accepted","type":"string","jsonPath":".status.conditions[?(@.type=='Accepted')].status"}"#,
        printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
    )
)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RuleSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// A disabled rule is kept but never fires.
    #[serde(default = "default_true", skip_serializing_if = "is_true")]
    #[cfg_attr(feature = "crd", schemars(extend("default" = true)))]
    pub enabled: bool,
    pub action: Action,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scope: Vec<Selector>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub block_unscanned: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_report_age: Option<ReportAge>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_vulnerabilities: Vec<Allowance>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exemptions: Vec<Exemption>,
}

/// Status of a `SecurityRule` custom resource, written by vulngate's rule watcher.
#[cfg(feature = "crd")]
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecurityRuleStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Accepted` (True: the rule is in force; False: reason `Invalid` with the exact error,
    /// the last good version of the rule, if any, stays in force).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition>,
    /// Ids of allowed vulnerabilities whose `validUntil` has passed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub expired_allowances: Vec<String>,
    /// Exemptions whose `validUntil` has passed (`field op value`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub expired_exemptions: Vec<String>,
    /// Version of the rule set this rule is part of (keys cached decisions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule_set_version: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Metadata {
    pub name: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// One `SecurityRule` document as written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SecurityRuleDoc {
    pub api_version: String,
    pub kind: String,
    pub metadata: Metadata,
    pub spec: RuleSpec,
}

/// A validated rule, ready for the engine.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Rule {
    pub name: String,
    #[serde(flatten)]
    pub spec: RuleSpec,
    /// Where the rule was read from (`file.yaml#2`), for messages.
    #[serde(skip)]
    pub source: Option<String>,
    #[serde(skip)]
    pub(crate) package_globs: Vec<Vec<glob::Pattern>>,
    /// The compiled `cel` of each condition (`None` where it has none).
    #[serde(skip)]
    pub(crate) cel: Vec<Option<crate::cel::CelCondition>>,
}

impl Rule {
    /// Validates a spec into a rule. `name` must be a DNS subdomain name (so the same rule
    /// can be a Kubernetes object).
    pub fn new(name: &str, spec: RuleSpec) -> Result<Rule, FieldError> {
        validate_name(name).map_err(|m| FieldError::new("metadata.name", m))?;
        let mut package_globs = Vec::with_capacity(spec.conditions.len());
        let mut cel = Vec::with_capacity(spec.conditions.len());
        for (i, c) in spec.conditions.iter().enumerate() {
            let at = |f: &str| format!("spec.conditions[{i}]{f}");
            if c.is_cve_list() {
                if c.severity.is_some() || c.max_count.is_some() {
                    return Err(FieldError::new(
                        at(""),
                        "a condition is either a count (severity, maxCount) or a cveIds list, not both",
                    ));
                }
                for (j, id) in c.cve_ids.iter().enumerate() {
                    if id.trim().is_empty() {
                        return Err(FieldError::new(at(&format!(".cveIds[{j}]")), "empty id"));
                    }
                }
            } else if c.severity.is_none() && c.max_count.is_none() && !c.has_standalone_filter() {
                return Err(FieldError::new(
                    at(""),
                    "a condition needs severity and/or maxCount, or cveIds (or one of knownExploited, epssAtLeast, epssPercentileAtLeast, cel)",
                ));
            }
            for (name, v) in [
                ("epssAtLeast", c.epss_at_least),
                ("epssPercentileAtLeast", c.epss_percentile_at_least),
            ] {
                if let Some(v) = v {
                    if !(0.0..=1.0).contains(&v) || v.is_nan() {
                        return Err(FieldError::new(
                            at(&format!(".{name}")),
                            format!("{v} is not an EPSS value (0.0 to 1.0)"),
                        ));
                    }
                }
            }
            cel.push(match &c.cel {
                None => None,
                Some(src) => Some(
                    crate::cel::CelCondition::compile(src)
                        .map_err(|m| FieldError::new(at(".cel"), m))?,
                ),
            });
            if let Some(v) = c.cvss_at_least {
                if !(0.0..=10.0).contains(&v) || v.is_nan() {
                    return Err(FieldError::new(
                        at(".cvssAtLeast"),
                        format!("{v} is not a CVSS score (0.0 to 10.0)"),
                    ));
                }
            }
            let mut globs = Vec::with_capacity(c.packages.len());
            for (j, p) in c.packages.iter().enumerate() {
                let g = glob::Pattern::new(p).map_err(|e| {
                    FieldError::new(
                        at(&format!(".packages[{j}]")),
                        format!("invalid glob {p:?}: {e}"),
                    )
                })?;
                globs.push(g);
            }
            package_globs.push(globs);
        }
        for (i, s) in spec.scope.iter().enumerate() {
            check_key(
                s.field == ScopeField::Label,
                &s.key,
                &format!("spec.scope[{i}]"),
            )?;
        }
        for (i, e) in spec.exemptions.iter().enumerate() {
            check_key(
                e.field == ExemptionField::Label,
                &e.key,
                &format!("spec.exemptions[{i}]"),
            )?;
        }
        for (i, a) in spec.allowed_vulnerabilities.iter().enumerate() {
            if a.id.trim().is_empty() {
                return Err(FieldError::new(
                    format!("spec.allowedVulnerabilities[{i}].id"),
                    "empty id",
                ));
            }
        }
        Ok(Rule {
            name: name.to_string(),
            spec,
            source: None,
            package_globs,
            cel,
        })
    }

    /// The rule as a `SecurityRule` document.
    pub fn to_doc(&self) -> SecurityRuleDoc {
        SecurityRuleDoc {
            api_version: API_VERSION.to_string(),
            kind: KIND.to_string(),
            metadata: Metadata {
                name: self.name.clone(),
                labels: BTreeMap::new(),
                annotations: BTreeMap::new(),
            },
            spec: self.spec.clone(),
        }
    }
}

fn check_key(is_label: bool, key: &Option<String>, at: &str) -> Result<(), FieldError> {
    match (is_label, key) {
        (true, None) => Err(FieldError::new(
            format!("{at}.key"),
            "field label needs a key",
        )),
        (true, Some(k)) if k.is_empty() => {
            Err(FieldError::new(format!("{at}.key"), "empty label key"))
        }
        (false, Some(_)) => Err(FieldError::new(
            format!("{at}.key"),
            "key is only allowed with field: label",
        )),
        _ => Ok(()),
    }
}

fn validate_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 253
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name.as_bytes()[name.len() - 1].is_ascii_alphanumeric();
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid rule name {name:?}: lowercase letters, digits, '-' and '.', starting and ending with a letter or digit, at most 253 characters"
        ))
    }
}

/// How the engine orders deny and audit rules (ARCHITECTURE.md section 3, items 3 and 5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precedence {
    /// One walk; at each vulnerability deny rules before audit rules.
    #[default]
    Default,
    /// A walk with deny rules only, then one with audit rules only.
    Strictest,
}

impl std::str::FromStr for Precedence {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "default" => Ok(Precedence::Default),
            "strictest" => Ok(Precedence::Strictest),
            _ => Err(format!(
                "unknown precedence {s:?} (expected default or strictest)"
            )),
        }
    }
}

/// An ordered, validated set of rules with a content version.
#[derive(Debug, Clone)]
pub struct RuleSet {
    rules: Vec<Rule>,
    version: String,
    /// Each rule as a `SecurityRule` document (JSON), built on first use and shared by every
    /// alert the rule decides ([`RuleSet::snapshot`]): not rebuilt per decision.
    snapshots: std::sync::OnceLock<Vec<Option<std::sync::Arc<serde_json::Value>>>>,
}

impl RuleSet {
    pub fn new(rules: Vec<Rule>) -> Result<RuleSet, RuleError> {
        let mut seen: BTreeMap<&str, Option<&str>> = BTreeMap::new();
        for r in &rules {
            if let Some(prev) = seen.insert(&r.name, r.source.as_deref()) {
                return Err(RuleError {
                    location: r.source.clone(),
                    rule: Some(r.name.clone()),
                    path: "metadata.name".into(),
                    message: format!(
                        "duplicate rule name {:?} (first defined in {})",
                        r.name,
                        prev.unwrap_or("an earlier document")
                    ),
                });
            }
        }
        let mut h = Sha256::new();
        for r in &rules {
            // Serialising our own types cannot fail; a failure would only weaken the version.
            h.update(serde_json::to_vec(r).unwrap_or_default());
            h.update(b"\n");
        }
        let version = format!("{:x}", h.finalize())[..16].to_string();
        Ok(RuleSet {
            rules,
            version,
            snapshots: std::sync::OnceLock::new(),
        })
    }

    /// The default rule set: one audit rule for high and critical vulnerabilities, like the
    /// managed product's default rule.
    pub fn default_rules() -> RuleSet {
        let spec = RuleSpec {
            description: Some(
                "Default rule: audit images with high or critical vulnerabilities".into(),
            ),
            enabled: true,
            action: Action::Audit,
            scope: Vec::new(),
            conditions: vec![Condition {
                severity: Some(Severity::High),
                max_count: Some(0),
                ..Condition::default()
            }],
            block_unscanned: false,
            max_report_age: None,
            allowed_vulnerabilities: Vec::new(),
            exemptions: Vec::new(),
        };
        let mut rule = match Rule::new("default-audit-high-critical", spec) {
            Ok(r) => r,
            Err(e) => unreachable!("the built-in default rule is valid: {e}"),
        };
        rule.source = Some("built-in default".into());
        match RuleSet::new(vec![rule]) {
            Ok(rs) => rs,
            Err(e) => unreachable!("the built-in default rule set is valid: {e}"),
        }
    }

    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// Content hash of the rules (changes with any rule edit; keys cached decisions).
    pub fn version(&self) -> &str {
        &self.version
    }

    /// The rule `name` as a `SecurityRule` document (JSON), as this rule set has it: what an
    /// alert keeps of the rule that decided. Built once per rule set, then shared.
    pub fn snapshot(&self, name: &str) -> Option<std::sync::Arc<serde_json::Value>> {
        let docs = self.snapshots.get_or_init(|| {
            self.rules
                .iter()
                .map(|r| {
                    serde_json::to_value(r.to_doc())
                        .ok()
                        .map(std::sync::Arc::new)
                })
                .collect()
        });
        let i = self.rules.iter().position(|r| r.name == name)?;
        docs.get(i).cloned().flatten()
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Parses rules from YAML text (one or more documents). `source` names the text in errors.
    pub fn parse_yaml(text: &str, source: &str) -> Result<Vec<Rule>, RuleError> {
        let mut out = Vec::new();
        for (i, doc) in serde_yaml_ng::Deserializer::from_str(text).enumerate() {
            let n = i + 1;
            let src = format!("{source}: document {n}");
            let value: serde_yaml_ng::Value =
                serde_path_to_error::deserialize(doc).map_err(|e| RuleError {
                    location: Some(src.clone()),
                    rule: None,
                    path: path_of(e.path()),
                    message: e.into_inner().to_string(),
                })?;
            if value.is_null() {
                continue; // an empty document (`---` at the end)
            }
            let name_hint = value
                .get("metadata")
                .and_then(|m| m.get("name"))
                .and_then(|n| n.as_str())
                .map(str::to_string);
            let doc: SecurityRuleDoc =
                serde_path_to_error::deserialize(value).map_err(|e| RuleError {
                    location: Some(src.clone()),
                    rule: name_hint.clone(),
                    path: path_of(e.path()),
                    message: e.into_inner().to_string(),
                })?;
            let err = |path: &str, message: String| RuleError {
                location: Some(src.clone()),
                rule: Some(doc.metadata.name.clone()),
                path: path.into(),
                message,
            };
            if doc.api_version != API_VERSION {
                return Err(err(
                    "apiVersion",
                    format!("expected {API_VERSION}, found {:?}", doc.api_version),
                ));
            }
            if doc.kind != KIND {
                return Err(err(
                    "kind",
                    format!("expected {KIND}, found {:?}", doc.kind),
                ));
            }
            let mut rule = Rule::new(&doc.metadata.name, doc.spec.clone())
                .map_err(|e| err(&e.path, e.message))?;
            rule.source = Some(src);
            out.push(rule);
        }
        Ok(out)
    }

    /// Loads a rule set from a YAML file or a directory of `*.yaml`/`*.yml` files (sorted by
    /// name; the rule set's order is the files' order, then the documents' order).
    pub fn load(path: &Path) -> Result<RuleSet, RuleError> {
        let io_err = |p: &Path, e: std::io::Error| RuleError {
            location: Some(p.display().to_string()),
            rule: None,
            path: String::new(),
            message: format!("cannot read: {e}"),
        };
        let files: Vec<PathBuf> = if path.is_dir() {
            let mut v = Vec::new();
            for entry in std::fs::read_dir(path).map_err(|e| io_err(path, e))? {
                let p = entry.map_err(|e| io_err(path, e))?.path();
                let yaml = p
                    .extension()
                    .and_then(|e| e.to_str())
                    .is_some_and(|e| e == "yaml" || e == "yml");
                if yaml && p.is_file() {
                    v.push(p);
                }
            }
            v.sort();
            if v.is_empty() {
                return Err(RuleError {
                    location: Some(path.display().to_string()),
                    rule: None,
                    path: String::new(),
                    message: "directory holds no .yaml or .yml rule files".into(),
                });
            }
            v
        } else {
            vec![path.to_path_buf()]
        };
        let mut rules = Vec::new();
        for f in &files {
            let text = crate::limits::read_to_string_capped(f, crate::limits::FileKind::Config)
                .map_err(|e| RuleError {
                    location: Some(f.display().to_string()),
                    rule: None,
                    path: String::new(),
                    message: e.to_string(),
                })?;
            rules.extend(Self::parse_yaml(&text, &f.display().to_string())?);
        }
        RuleSet::new(rules)
    }
}

fn path_of(p: &serde_path_to_error::Path) -> String {
    let s = p.to_string();
    if s == "." {
        String::new()
    } else {
        s
    }
}

/// A validation error inside one rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub path: String,
    pub message: String,
}

impl FieldError {
    fn new(path: impl Into<String>, message: impl Into<String>) -> FieldError {
        FieldError {
            path: path.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// A rule that cannot be loaded: where, which rule, which field, why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct RuleError {
    /// `file: document N`.
    pub location: Option<String>,
    pub rule: Option<String>,
    /// Field path inside the document (`spec.conditions[0].maxCount`).
    pub path: String,
    pub message: String,
}

impl fmt::Display for RuleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(s) = &self.location {
            write!(f, "{s}: ")?;
        }
        if let Some(r) = &self.rule {
            write!(f, "rule {r:?}: ")?;
        }
        if !self.path.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        f.write_str(&self.message)
    }
}
