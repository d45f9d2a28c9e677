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

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};

use crate::image::ImageRef;
use crate::model::{FindingsReport, ReportIdentity, Severity, VexStatement};
use crate::rules::{
    is_live, Action, Condition, ExemptionField, Op, Precedence, Rule, RuleSet, ScopeField,
};

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
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
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

/// A vulnerability: findings merged by id and alias.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Vulnerability {
    /// The CVE id when it has one, else its smallest id.
    pub id: String,
    /// Every id and alias, sorted.
    pub ids: Vec<String>,
    pub severity: Severity,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cvss: Option<f32>,
    /// Every finding of it names a fixed version.
    pub fix_available: bool,
    pub packages: Vec<AffectedPackage>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AffectedPackage {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub installed: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fixed: Vec<String>,
}

/// Vulnerability counts by severity.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeverityCounts {
    pub critical: u32,
    pub high: u32,
    pub medium: u32,
    pub low: u32,
    pub negligible: u32,
    pub unknown: u32,
}

impl SeverityCounts {
    fn add(&mut self, s: Severity) {
        let slot = match s {
            Severity::Critical => &mut self.critical,
            Severity::High => &mut self.high,
            Severity::Medium => &mut self.medium,
            Severity::Low => &mut self.low,
            Severity::Negligible => &mut self.negligible,
            Severity::Unknown => &mut self.unknown,
        };
        *slot += 1;
    }

    pub fn get(&self, s: Severity) -> u32 {
        match s {
            Severity::Critical => self.critical,
            Severity::High => self.high,
            Severity::Medium => self.medium,
            Severity::Low => self.low,
            Severity::Negligible => self.negligible,
            Severity::Unknown => self.unknown,
        }
    }

    pub fn total(&self) -> u32 {
        Severity::ALL_DESC.iter().map(|s| self.get(*s)).sum()
    }
}

/// A report prepared for evaluation: VEX applied, findings grouped into vulnerabilities and
/// sorted most severe first. Independent of the rules, so it can be built once per report and
/// reused for every evaluation (the webhook caches it by artifact digest).
#[derive(Debug, Clone)]
pub struct AnalyzedReport {
    pub identity: ReportIdentity,
    pub created: Option<DateTime<Utc>>,
    pub vulnerabilities: Vec<Vulnerability>,
    pub counts: SeverityCounts,
    /// Ids of findings removed by VEX statements.
    pub suppressed: Vec<String>,
    /// Every id and alias -> index into `vulnerabilities`.
    index: FxHashMap<String, u32>,
    /// Indices of the vulnerabilities with / without a fix, in walk order.
    fixable: Vec<usize>,
    unfixable: Vec<usize>,
    /// `rank_end[r]`: how many vulnerabilities have a severity rank of at least `r`.
    rank_end: [usize; 5],
}

struct UnionFind(Vec<u32>);

impl UnionFind {
    fn find(&mut self, mut x: u32) -> u32 {
        while self.0[x as usize] != x {
            let p = self.0[x as usize];
            self.0[x as usize] = self.0[p as usize];
            x = p;
        }
        x
    }
    fn union(&mut self, a: u32, b: u32) {
        let (ra, rb) = (self.find(a), self.find(b));
        if ra != rb {
            let (lo, hi) = if ra < rb { (ra, rb) } else { (rb, ra) };
            self.0[hi as usize] = lo;
        }
    }
}

fn is_cve(id: &str) -> bool {
    id.len() > 4 && id[..4].eq_ignore_ascii_case("CVE-")
}

impl AnalyzedReport {
    /// Applies `vex` (plus the report's own VEX statements) and groups the findings.
    /// `image` lets image-scoped VEX statements apply; without it they do not.
    pub fn new(
        report: &FindingsReport,
        identity: ReportIdentity,
        vex: &[VexStatement],
        image: Option<&ImageRef>,
    ) -> AnalyzedReport {
        let statements: Vec<&VexStatement> = report
            .vex
            .iter()
            .chain(vex.iter())
            .filter(|s| s.status.suppresses())
            .collect();
        let mut suppressed = Vec::new();
        let kept: Vec<&crate::model::Finding> = report
            .findings
            .iter()
            .filter(|f| {
                let hit = statements
                    .iter()
                    .any(|s| crate::vex::suppresses(s, f, image));
                if hit {
                    suppressed.push(f.id.clone());
                }
                !hit
            })
            .collect();
        suppressed.sort();
        suppressed.dedup();

        // Union-find over ids: each finding joins its id with its aliases.
        let mut id_of: FxHashMap<&str, u32> = FxHashMap::default();
        id_of.reserve(kept.len() * 2);
        let mut names: Vec<&str> = Vec::with_capacity(kept.len() * 2);
        let mut uf = UnionFind(Vec::with_capacity(kept.len() * 2));
        let mut finding_root: Vec<u32> = Vec::with_capacity(kept.len());
        for f in &kept {
            let mut first: Option<u32> = None;
            for id in std::iter::once(f.id.as_str()).chain(f.aliases.iter().map(String::as_str)) {
                let n = match id_of.get(id) {
                    Some(n) => *n,
                    None => {
                        let n = names.len() as u32;
                        names.push(id);
                        uf.0.push(n);
                        id_of.insert(id, n);
                        n
                    }
                };
                match first {
                    None => first = Some(n),
                    Some(a) => uf.union(a, n),
                }
            }
            finding_root.push(first.unwrap_or(0));
        }
        // Number the groups (one per union-find root) and lay findings and ids out group by
        // group (a counting sort: no per-group allocation).
        let mut gid_of_root = vec![u32::MAX; names.len()];
        let mut ngroups = 0usize;
        let mut gid_of = |root: u32, uf: &mut UnionFind| -> usize {
            let root = uf.find(root) as usize;
            if gid_of_root[root] == u32::MAX {
                gid_of_root[root] = ngroups as u32;
                ngroups += 1;
            }
            gid_of_root[root] as usize
        };
        let finding_gid: Vec<usize> = finding_root.iter().map(|r| gid_of(*r, &mut uf)).collect();
        let name_gid: Vec<usize> = (0..names.len() as u32)
            .map(|n| gid_of(n, &mut uf))
            .collect();
        let by_group = |gids: &[usize]| -> (Vec<usize>, Vec<usize>) {
            let mut start = vec![0usize; ngroups + 1];
            for g in gids {
                start[g + 1] += 1;
            }
            for g in 0..ngroups {
                start[g + 1] += start[g];
            }
            let mut next = start.clone();
            let mut order = vec![0usize; gids.len()];
            for (i, g) in gids.iter().enumerate() {
                order[next[*g]] = i;
                next[*g] += 1;
            }
            (start, order)
        };
        let (fstart, forder) = by_group(&finding_gid);
        let (nstart, norder) = by_group(&name_gid);
        let mut vulnerabilities: Vec<Vulnerability> = Vec::with_capacity(ngroups);
        for g in 0..ngroups {
            let members = &forder[fstart[g]..fstart[g + 1]];
            let mut ids: Vec<String> = norder[nstart[g]..nstart[g + 1]]
                .iter()
                .map(|n| names[*n].to_string())
                .collect();
            ids.sort();
            let id = ids
                .iter()
                .find(|i| is_cve(i))
                .or_else(|| ids.first())
                .cloned()
                .unwrap_or_default();
            let mut severity = Severity::Unknown;
            let mut cvss: Option<f32> = None;
            let mut fix_available = true;
            let mut packages: Vec<AffectedPackage> = Vec::new();
            for fi in members {
                let f = kept[*fi];
                if f.severity.rank() > severity.rank()
                    || (f.severity.rank() == severity.rank() && f.severity == Severity::Negligible)
                {
                    severity = f.severity;
                }
                if let Some(c) = f.cvss {
                    if c.is_finite() && cvss.is_none_or(|m| c > m) {
                        cvss = Some(c);
                    }
                }
                fix_available &= f.has_fix();
                let known = packages.iter().any(|p| {
                    p.name == f.package.name
                        && p.installed == f.package.version
                        && p.fixed == f.fixed_versions
                });
                if !known {
                    packages.push(AffectedPackage {
                        name: f.package.name.clone(),
                        installed: f.package.version.clone(),
                        fixed: f.fixed_versions.clone(),
                    });
                }
            }
            packages.sort_by(|a, b| {
                (&a.name, &a.installed, &a.fixed).cmp(&(&b.name, &b.installed, &b.fixed))
            });
            vulnerabilities.push(Vulnerability {
                id,
                ids,
                severity,
                cvss,
                fix_available,
                packages,
            });
        }
        vulnerabilities.sort_by(|a, b| {
            b.severity
                .rank()
                .cmp(&a.severity.rank())
                .then_with(|| {
                    let (x, y) = (a.cvss.unwrap_or(-1.0), b.cvss.unwrap_or(-1.0));
                    y.total_cmp(&x)
                })
                .then_with(|| a.id.cmp(&b.id))
        });
        let mut counts = SeverityCounts::default();
        let mut index = FxHashMap::default();
        index.reserve(names.len());
        for (i, v) in vulnerabilities.iter().enumerate() {
            counts.add(v.severity);
            for id in &v.ids {
                index.insert(id.clone(), i as u32);
            }
        }
        let (fixable, unfixable): (Vec<usize>, Vec<usize>) =
            (0..vulnerabilities.len()).partition(|i| vulnerabilities[*i].fix_available);
        let mut rank_end = [0usize; 5];
        for (r, end) in rank_end.iter_mut().enumerate() {
            *end = vulnerabilities.partition_point(|v| usize::from(v.severity.rank()) >= r);
        }
        AnalyzedReport {
            identity,
            created: report.created,
            vulnerabilities,
            counts,
            suppressed,
            index,
            fixable,
            unfixable,
            rank_end,
        }
    }

    /// The vulnerability with this id or alias.
    pub fn find(&self, id: &str) -> Option<usize> {
        self.index.get(id).map(|i| *i as usize)
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

/// Evaluates `rules` for one image.
pub fn evaluate(
    rules: &RuleSet,
    precedence: Precedence,
    ctx: &RequestContext,
    image: &ImageRef,
    subject: Subject<'_>,
    now: DateTime<Utc>,
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
                if let Some((vi, ci, counted)) = fire_point(rule, r, now) {
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
                            reason: count_reason(cond, v, &counted, r),
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
            vulnerability_detail: vi.and_then(|i| report.map(|r| r.vulnerabilities[i].clone())),
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

/// Values of a scope field for this request; several when a value has two spellings (the image
/// as written and normalised). `None` when the request does not have the field.
fn field_values(
    field: ScopeField,
    key: Option<&str>,
    ctx: &RequestContext,
    image: &ImageRef,
) -> Option<Vec<String>> {
    let one = |v: &Option<String>| v.as_ref().map(|s| vec![s.clone()]);
    match field {
        ScopeField::Cluster => one(&ctx.cluster),
        ScopeField::Namespace => one(&ctx.namespace),
        ScopeField::Pod => one(&ctx.pod),
        ScopeField::Deployment => one(&ctx.workload_name),
        ScopeField::Image => {
            let n = image.normalized();
            Some(if n == image.original {
                vec![n]
            } else {
                vec![image.original.clone(), n]
            })
        }
        ScopeField::Registry => Some(vec![image.registry.clone()]),
        ScopeField::Repository => {
            let mut v = vec![image.repository.clone()];
            if let Some(short) = image.repository.strip_prefix("library/") {
                if image.registry == crate::image::DEFAULT_REGISTRY {
                    v.push(short.to_string());
                }
            }
            Some(v)
        }
        ScopeField::Label => key.and_then(|k| ctx.labels.get(k)).map(|v| vec![v.clone()]),
    }
}

/// `notEquals` is the negation of `equals` over every spelling; the other operators match
/// when any spelling matches.
fn op_matches(op: Op, values: Option<&[String]>, expected: &str) -> bool {
    match values {
        None => op.matches(None, expected),
        Some(vs) if op == Op::NotEquals => !vs.iter().any(|v| v == expected),
        Some(vs) => vs.iter().any(|v| op.matches(Some(v), expected)),
    }
}

fn in_scope(rule: &Rule, ctx: &RequestContext, image: &ImageRef) -> bool {
    rule.spec.scope.iter().all(|s| {
        let vals = field_values(s.field, s.key.as_deref(), ctx, image);
        op_matches(s.op, vals.as_deref(), &s.value)
    })
}

fn exemption_scope_field(f: ExemptionField) -> Option<ScopeField> {
    Some(match f {
        ExemptionField::Cve => return None,
        ExemptionField::Cluster => ScopeField::Cluster,
        ExemptionField::Deployment => ScopeField::Deployment,
        ExemptionField::Image => ScopeField::Image,
        ExemptionField::Namespace => ScopeField::Namespace,
        ExemptionField::Pod => ScopeField::Pod,
        ExemptionField::Registry => ScopeField::Registry,
        ExemptionField::Repository => ScopeField::Repository,
        ExemptionField::Label => ScopeField::Label,
    })
}

fn resource_exempt(
    rule: &Rule,
    ctx: &RequestContext,
    image: &ImageRef,
    now: DateTime<Utc>,
) -> bool {
    rule.spec.exemptions.iter().any(|e| {
        let Some(field) = exemption_scope_field(e.field) else {
            return false;
        };
        is_live(e.valid_until, now) && {
            let vals = field_values(field, e.key.as_deref(), ctx, image);
            op_matches(e.op, vals.as_deref(), &e.value)
        }
    })
}

/// Vulnerabilities this rule ignores (live allowances and live `cve` exemptions), as sorted
/// indices into the report's vulnerabilities (a short list: a rule allows a few ids).
fn ignored_by(rule: &Rule, r: &AnalyzedReport, now: DateTime<Utc>) -> Vec<usize> {
    let mut ignored = Vec::new();
    for a in &rule.spec.allowed_vulnerabilities {
        if is_live(a.valid_until, now) {
            ignored.extend(r.find(&a.id));
        }
    }
    for e in &rule.spec.exemptions {
        if e.field != ExemptionField::Cve || !is_live(e.valid_until, now) {
            continue;
        }
        if e.op == Op::Equals {
            ignored.extend(r.find(&e.value));
        } else {
            for (i, v) in r.vulnerabilities.iter().enumerate() {
                if op_matches(e.op, Some(&v.ids), &e.value) {
                    ignored.push(i);
                }
            }
        }
    }
    ignored.sort_unstable();
    ignored.dedup();
    ignored
}

fn passes_filters(rule: &Rule, ci: usize, c: &Condition, v: &Vulnerability) -> bool {
    if let Some(want) = c.fix_available {
        if v.fix_available != want {
            return false;
        }
    }
    if let Some(min) = c.cvss_at_least {
        if v.cvss.is_none_or(|s| s < min) {
            return false;
        }
    }
    if !c.packages.is_empty() {
        let globs = &rule.package_globs[ci];
        if !v
            .packages
            .iter()
            .any(|p| globs.iter().any(|g| g.matches(&p.name)))
        {
            return false;
        }
    }
    true
}

/// How many vulnerabilities a count condition counted when it was fulfilled, and the first
/// few of them (for the reason).
#[derive(Debug)]
struct Counted {
    n: usize,
    first: Vec<usize>,
}

const SHOWN: usize = 5;

/// The first point of the walk at which `rule` fires: (vulnerability index, condition index,
/// what was counted up to it).
fn fire_point(
    rule: &Rule,
    r: &AnalyzedReport,
    now: DateTime<Utc>,
) -> Option<(usize, usize, Counted)> {
    let ignored = ignored_by(rule, r, now);
    let counts = |i: usize| ignored.binary_search(&i).is_err();
    let mut best: Option<(usize, usize, Counted)> = None;
    for (ci, c) in rule.spec.conditions.iter().enumerate() {
        // Only an earlier vulnerability can beat the best so far (a later condition at the
        // same vulnerability comes after it).
        let limit = best.as_ref().map(|b| b.0).unwrap_or(usize::MAX);
        let hit = if c.is_cve_list() {
            c.cve_ids
                .iter()
                .filter_map(|id| r.find(id))
                .filter(|i| {
                    *i < limit && counts(*i) && passes_filters(rule, ci, c, &r.vulnerabilities[*i])
                })
                .min()
                .map(|i| {
                    (
                        i,
                        Counted {
                            n: 1,
                            first: vec![i],
                        },
                    )
                })
        } else if c.cvss_at_least.is_none() && c.packages.is_empty() {
            count_by_position(c, r, &ignored, limit)
        } else {
            let min_rank = c.severity.unwrap_or(Severity::Unknown).rank();
            let max = c.max_count.unwrap_or(0) as usize;
            let mut counted = Counted {
                n: 0,
                first: Vec::new(),
            };
            let mut found = None;
            for (i, v) in r.vulnerabilities.iter().enumerate() {
                if i >= limit || v.severity.rank() < min_rank {
                    break; // sorted most severe first: nothing later can count
                }
                if counts(i) && passes_filters(rule, ci, c, v) {
                    counted.n += 1;
                    if counted.first.len() < SHOWN {
                        counted.first.push(i);
                    }
                    if counted.n > max {
                        found = Some(i);
                        break;
                    }
                }
            }
            found.map(|i| (i, counted))
        };
        if let Some((i, counted)) = hit {
            best = Some((i, ci, counted));
        }
    }
    best
}

/// A count condition whose only filter is `fixAvailable`, computed from positions instead of a
/// walk: the candidates (all vulnerabilities, or the fixable / unfixable ones) are in walk
/// order, so the vulnerability that makes the count exceed `maxCount` is the candidate of rank
/// `maxCount + 1`, skipping the few the rule ignores. Same result as the walk, without it.
fn count_by_position(
    c: &Condition,
    r: &AnalyzedReport,
    ignored: &[usize],
    limit: usize,
) -> Option<(usize, Counted)> {
    let list: Option<&[usize]> = match c.fix_available {
        None => None,
        Some(true) => Some(&r.fixable),
        Some(false) => Some(&r.unfixable),
    };
    let cand = |j: usize| -> Option<usize> {
        match list {
            None => (j < r.vulnerabilities.len()).then_some(j),
            Some(l) => l.get(j).copied(),
        }
    };
    let is_cand = |i: usize| match c.fix_available {
        None => true,
        Some(want) => r.vulnerabilities[i].fix_available == want,
    };
    let end = r.rank_end[usize::from(c.severity.unwrap_or(Severity::Unknown).rank())].min(limit);
    let need = c.max_count.unwrap_or(0) as usize + 1;
    let mut skip = ignored.iter().copied().filter(|i| is_cand(*i)).peekable();
    let mut skipped = 0;
    let idx = loop {
        let idx = cand(need - 1 + skipped)?;
        let before = skipped;
        while skip.next_if(|g| *g <= idx).is_some() {
            skipped += 1;
        }
        if skipped == before {
            break idx;
        }
    };
    if idx >= end {
        return None;
    }
    let mut first = Vec::with_capacity(SHOWN.min(need));
    let mut j = 0;
    while first.len() < SHOWN.min(need) {
        let Some(i) = cand(j) else { break };
        if ignored.binary_search(&i).is_err() {
            first.push(i);
        }
        j += 1;
    }
    Some((idx, Counted { n: need, first }))
}

fn count_reason(c: &Condition, v: &Vulnerability, counted: &Counted, r: &AnalyzedReport) -> String {
    if c.is_cve_list() {
        return format!("{} is blocked", v.id);
    }
    let mut ids: Vec<&str> = counted
        .first
        .iter()
        .map(|i| r.vulnerabilities[*i].id.as_str())
        .collect();
    let more = counted.n.saturating_sub(counted.first.len());
    let more = if more > 0 {
        format!(" and {more} more")
    } else {
        String::new()
    };
    ids.dedup();
    let sev = c.severity.unwrap_or(Severity::Unknown);
    let n = counted.n;
    let noun = if n == 1 {
        "vulnerability"
    } else {
        "vulnerabilities"
    };
    let what = if sev.rank() == 0 {
        noun.to_string()
    } else {
        format!("{sev} or higher {noun}")
    };
    let mut filters = Vec::new();
    match c.fix_available {
        Some(true) => filters.push("with a fix".to_string()),
        Some(false) => filters.push("without a fix".to_string()),
        None => {}
    }
    if let Some(x) = c.cvss_at_least {
        filters.push(format!("with CVSS >= {x}"));
    }
    if !c.packages.is_empty() {
        filters.push(format!("in packages matching {}", c.packages.join(", ")));
    }
    let filters = if filters.is_empty() {
        String::new()
    } else {
        format!(" {}", filters.join(" "))
    };
    format!(
        "{n} {what}{filters} ({}{more}), more than the allowed count of {}",
        ids.join(", "),
        c.max_count.unwrap_or(0)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Finding, Package, ReportFormat, Scanner};

    /// The position shortcut must give exactly what the walk gives, for any report, threshold,
    /// fix filter and set of ignored vulnerabilities.
    #[test]
    fn count_by_position_equals_the_walk() {
        let mut seed: u64 = 1;
        let mut rnd = |n: u64| {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 33) % n
        };
        let sev = [
            Severity::Critical,
            Severity::High,
            Severity::Medium,
            Severity::Low,
            Severity::Unknown,
        ];
        for _ in 0..400 {
            let n = rnd(40) as usize;
            let findings = (0..n)
                .map(|i| Finding {
                    id: format!("CVE-{}", rnd(30)),
                    severity: sev[rnd(5) as usize],
                    package: Package {
                        name: format!("p{i}"),
                        ..Package::default()
                    },
                    fixed_versions: if rnd(2) == 0 {
                        vec!["1".into()]
                    } else {
                        vec![]
                    },
                    ..Finding::default()
                })
                .collect();
            let report = FindingsReport {
                format: ReportFormat::Trivy,
                subject_digest: None,
                artifact_name: None,
                scanner: Scanner::default(),
                created: None,
                findings,
                vex: Vec::new(),
            };
            let a = AnalyzedReport::new(&report, ReportIdentity::default(), &[], None);
            let len = a.vulnerabilities.len();
            let mut ignored: Vec<usize> = (0..rnd(4))
                .map(|_| rnd(len.max(1) as u64) as usize)
                .filter(|i| *i < len)
                .collect();
            ignored.sort_unstable();
            ignored.dedup();
            let c = Condition {
                severity: Some(sev[rnd(5) as usize]),
                max_count: Some(rnd(8) as u32),
                fix_available: [None, Some(true), Some(false)][rnd(3) as usize],
                ..Condition::default()
            };
            let limit = if rnd(3) == 0 {
                rnd(len as u64 + 1) as usize
            } else {
                usize::MAX
            };
            // Reference: the plain walk.
            let min_rank = c.severity.map(|s| s.rank()).unwrap_or(0);
            let mut seen = Vec::new();
            let mut want = None;
            for (i, v) in a.vulnerabilities.iter().enumerate() {
                if i >= limit || v.severity.rank() < min_rank {
                    break;
                }
                let fix_ok = c.fix_available.is_none_or(|f| f == v.fix_available);
                if fix_ok && ignored.binary_search(&i).is_err() {
                    seen.push(i);
                    if seen.len() > c.max_count.unwrap_or(0) as usize {
                        want = Some(i);
                        break;
                    }
                }
            }
            let got = count_by_position(&c, &a, &ignored, limit);
            assert_eq!(
                got.as_ref().map(|g| g.0),
                want,
                "{c:?} ignored {ignored:?} limit {limit}"
            );
            if let Some((_, counted)) = got {
                assert_eq!(counted.n, seen.len());
                assert_eq!(
                    counted.first,
                    seen.iter().copied().take(SHOWN).collect::<Vec<_>>()
                );
            }
        }
    }
}
