//! The engine: decides allow / audit / deny for one image (ARCHITECTURE.md section 3).
//!
//! Pure and deterministic: the same rules, context, image, report and `now` give the same
//! decision, byte for byte once serialised.
//!
//! Semantics, restated as implemented:
//! 1. Applicable rules: enabled, scope matches, no live resource exemption matches.
//! 2. No report: the first applicable `blockUnscanned` rule in precedence order decides, else
//!    allow. A report older than a rule's `maxReportAge` is, for that rule, no report: such a
//!    rule fires before the walk if it blocks unscanned images, and is skipped otherwise.
//! 3. Findings are grouped into vulnerabilities (aliases merged) and sorted most severe first
//!    (severity, then CVSS, then display id). The walk visits, at each vulnerability, the rules
//!    in precedence order and each rule's conditions in order; the first condition fulfilled
//!    decides. Because a condition's count only depends on its own rule, the walk is computed
//!    per rule ("the first point at which this rule fires") and the decision is the earliest
//!    point in walk order; that also yields every other rule that would have fired.

mod analyze;
mod conditions;
mod scope;

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::image::ImageRef;
use crate::model::ReportIdentity;
use crate::rules::{Action, Precedence, Rule, RuleSet};

use crate::exploit::Catalogs;
pub use analyze::{AffectedPackage, AnalyzedReport, SeverityCounts, Vulnerability};
use conditions::{count_reason, counted_all, fire_point, Inputs};
use scope::{in_scope, resource_exempt};

/// What the request says about where the image runs (for scope and exemptions).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestContext {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload_kind: Option<String>,
    /// Workload name (the `deployment` scope field).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload_name: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// The requesting user (`userInfo.username`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// The requesting user's groups (`userInfo.groups`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
}

impl RequestContext {
    /// `NAMESPACE:NAME` when the user is a service account (`system:serviceaccount:NS:NAME`).
    pub fn service_account(&self) -> Option<&str> {
        self.user
            .as_deref()
            .and_then(|u| u.strip_prefix("system:serviceaccount:"))
            .filter(|sa| {
                sa.split_once(':')
                    .is_some_and(|(ns, n)| !ns.is_empty() && !n.is_empty())
            })
    }
}

/// Why an image has no valid findings artifact.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "detail", rename_all = "kebab-case")]
pub enum UnscannedReason {
    /// No findings artifact is attached to the image (or none was given).
    NoReport,
    /// An artifact exists but its signature is missing, invalid or untrusted.
    Unverified(String),
    /// An artifact exists but cannot be parsed.
    InvalidReport(String),
    /// The registry could not be asked (unreachable, deadline passed, error).
    RegistryUnavailable(String),
}

impl std::fmt::Display for UnscannedReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UnscannedReason::NoReport => f.write_str("no vulnerability findings artifact"),
            UnscannedReason::Unverified(d) => write!(f, "findings artifact not trusted: {d}"),
            UnscannedReason::InvalidReport(d) => write!(f, "findings artifact unreadable: {d}"),
            UnscannedReason::RegistryUnavailable(d) => write!(f, "registry unavailable: {d}"),
        }
    }
}

/// The image's findings, or why it has none.
#[derive(Debug, Clone, Copy)]
pub enum Subject<'a> {
    Report(&'a AnalyzedReport),
    Unscanned(&'a UnscannedReason),
}

/// The workload-level outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Allow,
    Audit,
    Deny,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Allow => "allow",
            Outcome::Audit => "audit",
            Outcome::Deny => "deny",
        }
    }

    /// Combines several images' outcomes: deny > audit > allow.
    pub fn combine(outcomes: impl IntoIterator<Item = Outcome>) -> Outcome {
        outcomes.into_iter().max().unwrap_or(Outcome::Allow)
    }
}

impl From<Action> for Outcome {
    fn from(a: Action) -> Outcome {
        match a {
            Action::Audit => Outcome::Audit,
            Action::Deny => Outcome::Deny,
        }
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which condition of the deciding rule was fulfilled.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FiredCondition {
    /// Index into the rule's `conditions`; `None` for the unscanned / stale-report path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<usize>,
    pub description: String,
}

/// One rule firing: the decision's, or one that would also have fired.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Firing {
    pub rule: String,
    pub action: Action,
    pub condition: FiredCondition,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vulnerability: Option<String>,
    pub reason: String,
}

/// The engine's answer for one image, explaining itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    pub image: String,
    pub digest: Option<String>,
    pub decision: Outcome,
    /// The deciding rule (null when nothing fired).
    pub rule: Option<String>,
    /// The deciding vulnerability's display id (null when none).
    pub vulnerability: Option<String>,
    pub reason: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub condition: Option<FiredCondition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vulnerability_detail: Option<Vulnerability>,
    /// Set when the image had no valid findings artifact.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unscanned: Option<UnscannedReason>,
    /// Vulnerabilities by severity (after VEX).
    pub counts: SeverityCounts,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report: Option<ReportIdentity>,
    /// Ids removed by VEX statements.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub suppressed: Vec<String>,
    /// Every other applicable rule that would also have fired, in walk order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub also_fired: Vec<Firing>,
    /// Version of the rule set that decided.
    pub rules_version: String,
}

/// Evaluates `rules` for one image, without exploitation catalogs (no vulnerability is known
/// exploited or has an EPSS score): [`evaluate_with`] and [`Catalogs::NONE`].
pub fn evaluate(
    rules: &RuleSet,
    precedence: Precedence,
    ctx: &RequestContext,
    image: &ImageRef,
    subject: Subject<'_>,
    now: DateTime<Utc>,
) -> Decision {
    evaluate_with(rules, precedence, ctx, image, subject, now, Catalogs::NONE)
}

/// Evaluates `rules` for one image, with the KEV catalog and EPSS scores in `catalogs`.
pub fn evaluate_with(
    rules: &RuleSet,
    precedence: Precedence,
    ctx: &RequestContext,
    image: &ImageRef,
    subject: Subject<'_>,
    now: DateTime<Utc>,
    catalogs: &Catalogs,
) -> Decision {
    // Precedence order: deny rules before audit rules, then the rule set's order.
    let mut applicable: Vec<&Rule> = rules
        .rules()
        .iter()
        .filter(|r| {
            r.spec.enabled && in_scope(r, ctx, image) && !resource_exempt(r, ctx, image, now)
        })
        .collect();
    applicable.sort_by_key(|r| std::cmp::Reverse(r.spec.action)); // stable: Deny first

    let mut firings: Vec<(Point, Firing, Option<usize>)> = Vec::new();
    let (report, counts, identity, unscanned) = match subject {
        Subject::Unscanned(reason) => (None, SeverityCounts::default(), None, Some(reason.clone())),
        Subject::Report(r) => (Some(r), r.counts, Some(r.identity.clone()), None),
    };

    for (rank, rule) in applicable.iter().enumerate() {
        let stale = report.is_some_and(|r| is_stale(rule, r, now));
        match report {
            Some(r) if !stale => {
                let inp = Inputs {
                    r,
                    catalogs,
                    image,
                    ctx,
                    now,
                };
                if let Some((vi, ci, counted)) = fire_point(rule, &inp) {
                    let v = &r.vulnerabilities[vi];
                    let cond = &rule.spec.conditions[ci];
                    firings.push((
                        Point {
                            vuln: vi as i64,
                            rank,
                        },
                        Firing {
                            rule: rule.name.clone(),
                            action: rule.spec.action,
                            condition: FiredCondition {
                                index: Some(ci),
                                description: cond.describe(),
                            },
                            vulnerability: Some(v.id.clone()),
                            reason: count_reason(rule, ci, vi, &counted, &inp),
                        },
                        Some(vi),
                    ));
                }
            }
            _ => {
                // No report, or a report too old for this rule: only blockUnscanned fires.
                if rule.spec.block_unscanned {
                    let reason = match (report, &unscanned) {
                        (Some(r), _) => stale_reason(rule, r),
                        (None, Some(u)) => format!("unscanned image: {u}"),
                        (None, None) => "unscanned image".to_string(),
                    };
                    firings.push((
                        Point { vuln: -1, rank },
                        Firing {
                            rule: rule.name.clone(),
                            action: rule.spec.action,
                            condition: FiredCondition {
                                index: None,
                                description: "blockUnscanned".into(),
                            },
                            vulnerability: None,
                            reason,
                        },
                        None,
                    ));
                }
            }
        }
    }

    // Walk order. Default: by vulnerability, then rule precedence. Strictest: every deny
    // firing before any audit firing.
    match precedence {
        Precedence::Default => firings.sort_by_key(|(p, _, _)| (p.vuln, p.rank)),
        Precedence::Strictest => {
            firings.sort_by_key(|(p, f, _)| (std::cmp::Reverse(f.action), p.vuln, p.rank))
        }
    }

    let mut it = firings.into_iter();
    let decider = it.next();
    let also_fired: Vec<Firing> = it.map(|(_, f, _)| f).collect();
    let suppressed = report.map(|r| r.suppressed.clone()).unwrap_or_default();
    match decider {
        Some((_, f, vi)) => Decision {
            image: image.original.clone(),
            digest: image.digest.clone(),
            decision: f.action.into(),
            rule: Some(f.rule.clone()),
            vulnerability: f.vulnerability.clone(),
            reason: f.reason.clone(),
            condition: Some(f.condition.clone()),
            vulnerability_detail: vi.and_then(|i| {
                report.map(|r| {
                    let mut v = r.vulnerabilities[i].clone();
                    v.known_exploited = catalogs.kev_of(&v).map(|(_, e)| e);
                    v.epss = catalogs.epss_of(&v).map(|(_, s)| s);
                    v
                })
            }),
            unscanned,
            counts,
            report: identity,
            suppressed,
            also_fired,
            rules_version: rules.version().to_string(),
        },
        None => {
            let reason = match (&unscanned, applicable.is_empty()) {
                (Some(u), _) => {
                    format!("unscanned image ({u}); no applicable rule blocks unscanned images")
                }
                (None, true) => "no rule applies to this image".to_string(),
                (None, false) => format!(
                    "no rule condition fulfilled ({} vulnerabilities)",
                    counts.total()
                ),
            };
            Decision {
                image: image.original.clone(),
                digest: image.digest.clone(),
                decision: Outcome::Allow,
                rule: None,
                vulnerability: None,
                reason,
                condition: None,
                vulnerability_detail: None,
                unscanned,
                counts,
                report: identity,
                suppressed,
                also_fired,
                rules_version: rules.version().to_string(),
            }
        }
    }
}

/// Position of a firing in the walk: vulnerability index (-1 = before the walk) and the
/// rule's precedence rank.
#[derive(Debug, Clone, Copy)]
struct Point {
    vuln: i64,
    rank: usize,
}

fn is_stale(rule: &Rule, r: &AnalyzedReport, now: DateTime<Utc>) -> bool {
    match (rule.spec.max_report_age, r.created) {
        (None, _) => false,
        // A report that does not say when it was made cannot prove it is fresh enough.
        (Some(_), None) => true,
        (Some(age), Some(created)) => now.signed_duration_since(created) > age.0,
    }
}

fn stale_reason(rule: &Rule, r: &AnalyzedReport) -> String {
    let age = rule
        .spec
        .max_report_age
        .map(|a| a.to_string())
        .unwrap_or_default();
    match r.created {
        Some(c) => format!(
            "unscanned image: findings report from {} is older than maxReportAge {age}",
            c.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        ),
        None => format!("unscanned image: findings report has no scan time, maxReportAge {age} cannot be checked"),
    }
}

/// One vulnerability that fulfilled the deciding condition (for review: an alert lists them
/// all, the deciding one marked).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Violation {
    #[serde(flatten)]
    pub vulnerability: Vulnerability,
    /// The vulnerability at which the rule fired.
    #[serde(default)]
    pub deciding: bool,
    /// Digest of the findings report it comes from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report: Option<String>,
}

/// The vulnerabilities that fulfilled `decision`'s deciding condition: every one the
/// condition counts over the whole report (not only up to the point where it fired), in walk
/// order, at most `cap`, and how many there are in all. Empty when nothing fired on a
/// vulnerability (allow, unscanned, stale report). Pure; it explains a decision taken by
/// [`evaluate_with`] with the same inputs and never changes it.
#[allow(clippy::too_many_arguments)]
pub fn violations(
    rules: &RuleSet,
    decision: &Decision,
    ctx: &RequestContext,
    image: &ImageRef,
    report: &AnalyzedReport,
    now: DateTime<Utc>,
    catalogs: &Catalogs,
    cap: usize,
) -> (Vec<Violation>, usize) {
    let (Some(name), Some(ci)) = (
        decision.rule.as_deref(),
        decision.condition.as_ref().and_then(|c| c.index),
    ) else {
        return (Vec::new(), 0);
    };
    let Some(rule) = rules.rules().iter().find(|r| r.name == name) else {
        return (Vec::new(), 0);
    };
    let inp = Inputs {
        r: report,
        catalogs,
        image,
        ctx,
        now,
    };
    let (idx, total) = counted_all(rule, ci, &inp, cap);
    let digest = report.identity.digest.clone();
    let out = idx
        .into_iter()
        .map(|i| {
            let mut v = report.vulnerabilities[i].clone();
            v.known_exploited = catalogs.kev_of(&v).map(|(_, e)| e);
            v.epss = catalogs.epss_of(&v).map(|(_, s)| s);
            Violation {
                deciding: decision.vulnerability.as_deref() == Some(v.id.as_str()),
                vulnerability: v,
                report: digest.clone(),
            }
        })
        .collect();
    (out, total)
}
