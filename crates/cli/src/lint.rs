//! `vulngate rules lint`: schema errors (exit 2) and warnings (exit 1): expired entries,
//! rules that can never fire, audit rules that decide before deny rules (shadowing).
//!
//! Shadowing is found by probing the real engine: for each condition of each deny rule, a
//! synthetic report that fulfils it and a request that is in the deny rule's scope (alone,
//! and combined with each audit rule's scope) are evaluated with both precedences; when the
//! default precedence decides audit and the strictest decides deny by that rule, the audit
//! rule shadows it. A count condition is probed with its vulnerabilities at its severity, and
//! with the most severe one raised to each higher severity: an audit rule on critical decides at
//! the first critical, before a deny rule on `medium, maxCount: 3` has counted its fourth
//! vulnerability further down the walk (docs/rules.md, "Audit rules that decide first").

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use clap::{Subcommand, ValueEnum};
use serde::Serialize;
use vulngate_core::engine::{AnalyzedReport, Outcome, RequestContext, Subject};
use vulngate_core::model::{
    Finding, FindingsReport, FixState, Package, ReportFormat, ReportIdentity, Scanner,
};
use vulngate_core::rules::{is_live, Condition, ExemptionField, Op, Rule, ScopeField, Selector};
use vulngate_core::{evaluate, Action, ImageRef, Precedence, RuleSet, Severity};

use crate::text::escape;

#[derive(Debug, Subcommand)]
pub enum RulesCommand {
    /// Check a rule set: schema errors (exit 2), and warnings (exit 1) for expired
    /// allowances/exemptions, rules that can never fire and audit rules that shadow deny rules.
    Lint(Args),
}

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Security rules: a YAML file or a directory of them.
    #[arg(long, value_name = "FILE|DIR")]
    pub rules: PathBuf,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value_t = Output::Text)]
    pub output: Output,
    /// Date and time (RFC 3339) at which validUntil dates are checked [default: now].
    #[arg(long, value_parser = crate::parse::time)]
    pub now: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Text,
    Json,
}

/// Probes larger than this (a huge `maxCount`) are not built.
const MAX_PROBE_VULNERABILITIES: u32 = 10_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
enum WarningKind {
    Expired,
    NeverFires,
    Shadowed,
}

#[derive(Debug, Serialize)]
struct Warning {
    kind: WarningKind,
    rule: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    source: Option<String>,
    message: String,
}

#[derive(Serialize)]
struct JsonReport<'a> {
    rules: usize,
    warnings: &'a [Warning],
}

pub fn run(args: Args) -> Result<ExitCode> {
    let now = args.now.unwrap_or_else(Utc::now);
    let rules = RuleSet::load(&args.rules).context("invalid rules")?;
    let warnings = lint(&rules, now);
    let mut out = anstream::stdout().lock();
    match args.output {
        Output::Json => {
            serde_json::to_writer_pretty(
                &mut out,
                &JsonReport {
                    rules: rules.rules().len(),
                    warnings: &warnings,
                },
            )?;
            writeln!(out)?;
        }
        Output::Text => {
            let style = anstyle::Style::new()
                .bold()
                .fg_color(Some(anstyle::AnsiColor::Yellow.into()));
            for w in &warnings {
                let src = w
                    .source
                    .as_deref()
                    .map(|s| format!("{s}: "))
                    .unwrap_or_default();
                // Rule names, sources and messages quote the rule files: escaped.
                let line = format!("{src}rule {:?}: {}", w.rule, w.message);
                writeln!(out, "{style}warning{style:#}: {}", escape(&line))?;
            }
            let n = rules.rules().len();
            writeln!(
                out,
                "{n} rule{}, {} warning{}",
                if n == 1 { "" } else { "s" },
                warnings.len(),
                if warnings.len() == 1 { "" } else { "s" }
            )?;
        }
    }
    Ok(if warnings.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn lint(rules: &RuleSet, now: DateTime<Utc>) -> Vec<Warning> {
    let mut warnings = Vec::new();
    for rule in rules.rules() {
        let mut warn = |kind, message: String| {
            warnings.push(Warning {
                kind,
                rule: rule.name.clone(),
                source: rule.source.clone(),
                message,
            })
        };
        let today = now.date_naive();
        for (i, a) in rule.spec.allowed_vulnerabilities.iter().enumerate() {
            if let Some(d) = a.valid_until.filter(|_| !is_live(a.valid_until, now)) {
                warn(
                    WarningKind::Expired,
                    format!(
                        "spec.allowedVulnerabilities[{i}] ({}) expired on {d} (today is {today}): it is ignored; renew or remove it",
                        a.id
                    ),
                );
            }
        }
        for (i, e) in rule.spec.exemptions.iter().enumerate() {
            if let Some(d) = e.valid_until.filter(|_| !is_live(e.valid_until, now)) {
                warn(
                    WarningKind::Expired,
                    format!(
                        "spec.exemptions[{i}] ({}) expired on {d} (today is {today}): it is ignored; renew or remove it",
                        describe_exemption(e)
                    ),
                );
            }
        }
        for message in never_fires(rule) {
            warn(WarningKind::NeverFires, message);
        }
    }
    warnings.extend(shadowed(rules, now));
    warnings
}

fn op_str(op: Op) -> &'static str {
    match op {
        Op::Equals => "equals",
        Op::NotEquals => "notEquals",
        Op::StartsWith => "startsWith",
        Op::EndsWith => "endsWith",
        Op::Contains => "contains",
    }
}

fn field_str(f: ScopeField) -> &'static str {
    match f {
        ScopeField::Cluster => "cluster",
        ScopeField::Namespace => "namespace",
        ScopeField::Pod => "pod",
        ScopeField::Deployment => "deployment",
        ScopeField::Image => "image",
        ScopeField::Registry => "registry",
        ScopeField::Repository => "repository",
        ScopeField::Label => "label",
        ScopeField::User => "user",
        ScopeField::Group => "group",
        ScopeField::ServiceAccount => "serviceAccount",
    }
}

fn describe_exemption(e: &vulngate_core::rules::Exemption) -> String {
    let field = match e.field {
        ExemptionField::Cve => "cve",
        ExemptionField::Cluster => "cluster",
        ExemptionField::Deployment => "deployment",
        ExemptionField::Image => "image",
        ExemptionField::Namespace => "namespace",
        ExemptionField::Pod => "pod",
        ExemptionField::Registry => "registry",
        ExemptionField::Repository => "repository",
        ExemptionField::Label => "label",
    };
    match &e.key {
        Some(k) => format!("{field} {k} {} {}", op_str(e.op), e.value),
        None => format!("{field} {} {}", op_str(e.op), e.value),
    }
}

fn describe_field(s: &Selector) -> String {
    match &s.key {
        Some(k) => format!("label {k}"),
        None => field_str(s.field).to_string(),
    }
}

/// A scope field and its label key.
type FieldKey<'a> = (&'static str, Option<&'a str>);

/// Why a rule, or one of its conditions, can never fire.
fn never_fires(rule: &Rule) -> Vec<String> {
    let spec = &rule.spec;
    if !spec.enabled {
        return vec!["the rule is disabled (enabled: false): it never fires".into()];
    }
    let mut out = Vec::new();
    if spec.conditions.is_empty() && !spec.block_unscanned {
        out.push(
            "the rule has no conditions and does not block unscanned images: it never fires".into(),
        );
    }
    // Contradictory scope: one field equal to two values, or equal to and not equal to one.
    // (field, label key) -> the `equals` selectors on it: (scope index, value).
    let mut equals: BTreeMap<FieldKey<'_>, Vec<(usize, &str)>> = BTreeMap::new();
    for (i, s) in spec.scope.iter().enumerate() {
        if s.op == Op::Equals {
            equals
                .entry((field_str(s.field), s.key.as_deref()))
                .or_default()
                .push((i, &s.value));
        }
    }
    for (i, s) in spec.scope.iter().enumerate() {
        if s.op == Op::Equals {
            let values = &equals[&(field_str(s.field), s.key.as_deref())];
            if let Some((j, other)) = values.iter().find(|(j, v)| *j > i && *v != s.value) {
                out.push(format!(
                    "spec.scope[{i}] and spec.scope[{j}] require {} to equal both {:?} and {:?}: the rule never applies",
                    describe_field(s),
                    s.value,
                    other
                ));
            }
        }
        if s.op == Op::NotEquals {
            if let Some(values) = equals.get(&(field_str(s.field), s.key.as_deref())) {
                if let Some((j, _)) = values.iter().find(|(_, v)| *v == s.value) {
                    out.push(format!(
                        "spec.scope[{j}] and spec.scope[{i}] require {} to equal and not to equal {:?}: the rule never applies",
                        describe_field(s),
                        s.value
                    ));
                }
            }
        }
    }
    // A cveIds condition whose ids are all permanently allowed by the rule itself.
    let permanent: Vec<&str> = spec
        .allowed_vulnerabilities
        .iter()
        .filter(|a| a.valid_until.is_none())
        .map(|a| a.id.as_str())
        .chain(
            spec.exemptions
                .iter()
                .filter(|e| {
                    e.field == ExemptionField::Cve && e.op == Op::Equals && e.valid_until.is_none()
                })
                .map(|e| e.value.as_str()),
        )
        .collect();
    for (i, c) in spec.conditions.iter().enumerate() {
        if c.is_cve_list() && c.cve_ids.iter().all(|id| permanent.contains(&id.as_str())) {
            out.push(format!(
                "spec.conditions[{i}] (cveIds {}) never fires: every id is permanently allowed by this rule",
                c.cve_ids.join(", ")
            ));
        }
    }
    out
}

/// A synthetic value for one field that passes the given selectors, if one is found simply.
fn synth_value(selectors: &[(Op, &str)], default: Option<&str>) -> Option<String> {
    let mut cur: Option<String> = None;
    for (op, v) in selectors {
        if *op == Op::Equals {
            cur = Some(v.to_string());
        }
    }
    for (op, v) in selectors {
        cur = match (*op, cur) {
            (Op::StartsWith, Some(c)) if c.starts_with(v) => Some(c),
            (Op::StartsWith, Some(c)) => Some(format!("{v}{c}")),
            (Op::StartsWith, None) => Some(format!("{v}x")),
            (Op::EndsWith, Some(c)) if c.ends_with(v) => Some(c),
            (Op::EndsWith, Some(c)) => Some(format!("{c}{v}")),
            (Op::EndsWith, None) => Some(format!("x{v}")),
            (Op::Contains, Some(c)) if c.contains(v) => Some(c),
            (Op::Contains, Some(c)) => Some(format!("{c}{v}")),
            (Op::Contains, None) => Some(v.to_string()),
            (_, c) => c,
        };
    }
    for (op, v) in selectors {
        if *op == Op::NotEquals && cur.as_deref() == Some(v) {
            cur = cur.map(|c| format!("{c}-x"));
        }
    }
    cur.or_else(|| default.map(str::to_string))
}

/// A request context and image that the selectors select (best effort; the engine checks).
fn probe_context(
    selectors: &[&Selector],
    described: &mut Vec<String>,
) -> Option<(RequestContext, ImageRef)> {
    let on = |f: ScopeField, key: Option<&str>| -> Vec<(Op, &str)> {
        selectors
            .iter()
            .filter(|s| s.field == f && s.key.as_deref() == key)
            .map(|s| (s.op, s.value.as_str()))
            .collect()
    };
    let mut labels = BTreeMap::new();
    let mut keys: Vec<&str> = selectors.iter().filter_map(|s| s.key.as_deref()).collect();
    keys.sort();
    keys.dedup();
    for k in keys {
        if let Some(v) = synth_value(&on(ScopeField::Label, Some(k)), None) {
            labels.insert(k.to_string(), v);
        }
    }
    let ctx = RequestContext {
        cluster: synth_value(&on(ScopeField::Cluster, None), None),
        namespace: synth_value(&on(ScopeField::Namespace, None), None),
        pod: synth_value(&on(ScopeField::Pod, None), None),
        workload_kind: Some("Deployment".into()),
        workload_name: synth_value(&on(ScopeField::Deployment, None), None),
        labels,
        user: synth_value(&on(ScopeField::User, None), None).or_else(|| {
            synth_value(&on(ScopeField::ServiceAccount, None), None)
                .map(|sa| format!("system:serviceaccount:{sa}"))
        }),
        groups: synth_value(&on(ScopeField::Group, None), None)
            .into_iter()
            .collect(),
    };
    let image_sel = on(ScopeField::Image, None);
    let reference = if image_sel.is_empty() {
        let registry = synth_value(
            &on(ScopeField::Registry, None),
            Some("registry.example.com"),
        )?;
        let repository = synth_value(&on(ScopeField::Repository, None), Some("probe/app"))?;
        format!("{registry}/{repository}:v1")
    } else {
        synth_value(&image_sel, None)?
    };
    let image = ImageRef::parse(&reference).ok()?;
    let mut parts = Vec::new();
    if let Some(c) = &ctx.cluster {
        parts.push(format!("cluster {c}"));
    }
    if let Some(n) = &ctx.namespace {
        parts.push(format!("namespace {n}"));
    }
    if let Some(p) = &ctx.pod {
        parts.push(format!("pod {p}"));
    }
    if let Some(w) = &ctx.workload_name {
        parts.push(format!("deployment {w}"));
    }
    for (k, v) in &ctx.labels {
        parts.push(format!("label {k}={v}"));
    }
    let image_scoped = selectors.iter().any(|s| {
        matches!(
            s.field,
            ScopeField::Image | ScopeField::Registry | ScopeField::Repository
        )
    });
    if image_scoped {
        parts.push(format!("image {reference}"));
    }
    *described = parts;
    Some((ctx, image))
}

/// A package name matching the glob: `openssl*` -> `opensslx`.
fn package_for(globs: &[String]) -> String {
    for g in globs {
        let name: String = g
            .chars()
            .filter(|c| !matches!(c, '[' | ']' | '!'))
            .map(|c| if c == '*' || c == '?' { 'x' } else { c })
            .collect();
        if glob::Pattern::new(g).is_ok_and(|p| p.matches(&name)) {
            return name;
        }
    }
    "probe-package".into()
}

/// Sets of vulnerabilities that fulfil `c`, each with a description. For a count condition: its
/// `maxCount + 1` vulnerabilities at its severity, then the same count with the most severe one
/// raised to each higher severity (an audit rule on a higher severity fires at that first
/// vulnerability, before the deny rule's count is reached further down the walk).
fn probe_findings(rule: &Rule, c: &Condition) -> Vec<(Vec<Finding>, String)> {
    let Some((findings, what)) = probe_findings_at(rule, c) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let n = findings.len();
    if let (false, Some(base)) = (
        c.is_cve_list() || n < 2,
        findings.first().map(|f| f.severity),
    ) {
        for higher in [
            Severity::Low,
            Severity::Medium,
            Severity::High,
            Severity::Critical,
        ] {
            if higher.rank() <= base.rank() {
                continue;
            }
            let mut mixed = findings.clone();
            mixed[0].severity = higher;
            let what = what.replacen(
                &format!("{n} {base} "),
                &format!("1 {higher} and {} {base} ", n - 1),
                1,
            );
            out.push((mixed, what));
        }
    }
    out.insert(0, (findings, what));
    out
}

/// Vulnerabilities that fulfil `c`, and a description of them.
fn probe_findings_at(rule: &Rule, c: &Condition) -> Option<(Vec<Finding>, String)> {
    let fixable = c.fix_available != Some(false);
    let cvss = c.cvss_at_least.map_or(9.9, |m| m.max(9.9));
    let package = package_for(&c.packages);
    let finding = |id: String, severity: Severity| Finding {
        id,
        aliases: Vec::new(),
        severity,
        cvss: Some(cvss),
        package: Package {
            name: package.clone(),
            version: Some("1.0.0".into()),
            purl: None,
            kind: None,
        },
        published: None,
        fixed_versions: if fixable {
            vec!["1.0.1".into()]
        } else {
            Vec::new()
        },
        fix_state: if fixable {
            FixState::Fixed
        } else {
            FixState::NotFixed
        },
    };
    let fix = if fixable { "fixable" } else { "unfixable" };
    if c.is_cve_list() {
        let allowed: Vec<&str> = rule
            .spec
            .allowed_vulnerabilities
            .iter()
            .map(|a| a.id.as_str())
            .collect();
        let id = c
            .cve_ids
            .iter()
            .find(|id| !allowed.contains(&id.as_str()))?;
        return Some((
            vec![finding(id.clone(), Severity::Critical)],
            format!("{id} (critical, CVSS {cvss}, {fix}, package {package})"),
        ));
    }
    let max = c.max_count.unwrap_or(0);
    if max >= MAX_PROBE_VULNERABILITIES {
        return None;
    }
    let severity = c
        .severity
        .filter(|s| s.rank() > 0)
        .unwrap_or(Severity::Critical);
    let n = max + 1;
    let findings = (0..n)
        .map(|i| finding(format!("CVE-9999-{:05}", i + 1), severity))
        .collect();
    let noun = if n == 1 {
        "vulnerability"
    } else {
        "vulnerabilities"
    };
    Some((
        findings,
        format!("{n} {severity} {noun} (CVSS {cvss}, {fix}, package {package})"),
    ))
}

/// Audit rules that decide before deny rules under the default precedence.
fn shadowed(rules: &RuleSet, now: DateTime<Utc>) -> Vec<Warning> {
    let audit_rules: Vec<&Rule> = rules
        .rules()
        .iter()
        .filter(|r| r.spec.enabled && r.spec.action == Action::Audit)
        .collect();
    let mut seen: Vec<(String, String)> = Vec::new();
    let mut out = Vec::new();
    for deny in rules
        .rules()
        .iter()
        .filter(|r| r.spec.enabled && r.spec.action == Action::Deny)
    {
        // Scopes to probe: the deny rule's alone, then combined with each audit rule's.
        let mut scopes: Vec<Vec<&Selector>> = vec![deny.spec.scope.iter().collect()];
        for a in &audit_rules {
            if !a.spec.scope.is_empty() {
                scopes.push(deny.spec.scope.iter().chain(a.spec.scope.iter()).collect());
            }
        }
        for (findings, what) in deny
            .spec
            .conditions
            .iter()
            .flat_map(|c| probe_findings(deny, c))
        {
            let report = FindingsReport {
                format: ReportFormat::Trivy,
                subject_digest: None,
                artifact_name: None,
                scanner: Scanner {
                    name: "vulngate-lint-probe".into(),
                    version: None,
                    db: None,
                },
                created: Some(now),
                findings,
                vex: Vec::new(),
            };
            for scope in &scopes {
                let mut where_parts = Vec::new();
                let Some((ctx, image)) = probe_context(scope, &mut where_parts) else {
                    continue;
                };
                let analyzed =
                    AnalyzedReport::new(&report, ReportIdentity::default(), &[], Some(&image));
                let subject = Subject::Report(&analyzed);
                let default = evaluate(rules, Precedence::Default, &ctx, &image, subject, now);
                let strictest = evaluate(rules, Precedence::Strictest, &ctx, &image, subject, now);
                let (Some(a), Some(d)) = (default.rule.as_deref(), strictest.rule.as_deref())
                else {
                    continue;
                };
                if default.decision != Outcome::Audit
                    || strictest.decision != Outcome::Deny
                    || d != deny.name
                {
                    continue;
                }
                let key = (a.to_string(), d.to_string());
                if seen.contains(&key) {
                    continue;
                }
                seen.push(key);
                let probe = if where_parts.is_empty() {
                    format!("an image with {what}")
                } else {
                    format!("an image with {what} in {}", where_parts.join(", "))
                };
                out.push(Warning {
                    kind: WarningKind::Shadowed,
                    rule: deny.name.clone(),
                    source: deny.source.clone(),
                    message: format!(
                        "audit rule {a} decides before deny rule {d} for {probe}; use precedence: strictest or tighten {a}"
                    ),
                });
            }
        }
    }
    out
}
