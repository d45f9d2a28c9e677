//! `vulngate check` output: a human table, JSON, SARIF 2.1.0. The table's cells are
//! escaped ([`crate::text::escape`]): images, workloads, rules, ids and reasons come from
//! manifests, reports and registries. JSON and SARIF carry the exact strings.

use std::io::Write;

use anstyle::{AnsiColor, Style};
use anyhow::Result;
use serde::Serialize;
use serde_json::{json, Value};
use vulngate_core::engine::{Decision, Outcome};
use vulngate_core::model::Severity;
use vulngate_core::RuleSet;

use super::model::{Checked, SourceInfo, WorkloadInfo};
use crate::text::escape;

#[derive(Serialize)]
struct JsonOutput<'a> {
    decision: Outcome,
    images: Vec<JsonImage<'a>>,
}

#[derive(Serialize)]
struct JsonImage<'a> {
    #[serde(flatten)]
    decision: &'a Decision,
    #[serde(skip_serializing_if = "Option::is_none")]
    workload: Option<JsonWorkload<'a>>,
    /// Registry lookups: platform, artifact type, signatures, warnings.
    #[serde(flatten)]
    info: &'a SourceInfo,
}

#[derive(Serialize)]
struct JsonWorkload<'a> {
    kind: &'a str,
    name: Option<&'a str>,
    namespace: Option<&'a str>,
    container: &'a str,
    container_kind: &'a str,
}

impl<'a> From<&'a WorkloadInfo> for JsonWorkload<'a> {
    fn from(w: &'a WorkloadInfo) -> Self {
        JsonWorkload {
            kind: &w.kind,
            name: w.name.as_deref(),
            namespace: w.namespace.as_deref(),
            container: &w.container,
            container_kind: w.container_kind.as_str(),
        }
    }
}

/// `{"decision": ..., "images": [Decision + "workload" + registry details]}`.
pub fn json(overall: Outcome, checked: &[Checked]) -> Result<()> {
    let out = JsonOutput {
        decision: overall,
        images: checked
            .iter()
            .map(|c| JsonImage {
                decision: &c.decision,
                workload: c.workload.as_ref().map(JsonWorkload::from),
                info: &c.info,
            })
            .collect(),
    };
    let mut stdout = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut stdout, &out)?;
    writeln!(stdout)?;
    Ok(())
}

fn decision_style(o: Outcome) -> Style {
    match o {
        Outcome::Deny => Style::new().bold().fg_color(Some(AnsiColor::Red.into())),
        Outcome::Audit => Style::new().bold().fg_color(Some(AnsiColor::Yellow.into())),
        Outcome::Allow => Style::new().fg_color(Some(AnsiColor::Green.into())),
    }
}

fn severity_style(s: Option<Severity>) -> Style {
    match s {
        Some(Severity::Critical) => Style::new().bold().fg_color(Some(AnsiColor::Red.into())),
        Some(Severity::High) => Style::new().fg_color(Some(AnsiColor::Red.into())),
        Some(Severity::Medium) => Style::new().fg_color(Some(AnsiColor::Yellow.into())),
        Some(Severity::Low) => Style::new().fg_color(Some(AnsiColor::Cyan.into())),
        _ => Style::new(),
    }
}

/// `Deployment/shop-api (init migrate)`.
fn workload_cell(w: &WorkloadInfo) -> String {
    let mut s = w.kind.clone();
    if let Some(n) = &w.name {
        s.push('/');
        s.push_str(n);
    }
    match w.container_kind {
        vulngate_core::workload::ContainerKind::Container => {
            s.push_str(&format!(" ({})", w.container))
        }
        k => s.push_str(&format!(" ({k} {})", w.container)),
    }
    s
}

struct Cell {
    text: String,
    style: Style,
}

/// The human table, coloured by decision and severity when stdout is a terminal (anstream
/// strips the colours otherwise), then a one-line summary.
pub fn table(overall: Outcome, checked: &[Checked]) -> Result<()> {
    let with_workload = checked.iter().any(|c| c.workload.is_some());
    let mut header: Vec<&str> = Vec::new();
    if with_workload {
        header.push("WORKLOAD");
    }
    header.extend(["IMAGE", "DECISION", "RULE", "VULNERABILITY", "REASON"]);
    let plain = |text: String| Cell {
        text: escape(&text).into_owned(),
        style: Style::new(),
    };
    let rows: Vec<Vec<Cell>> = checked
        .iter()
        .map(|c| {
            let d = &c.decision;
            let mut row = Vec::new();
            if with_workload {
                row.push(plain(
                    c.workload.as_ref().map(workload_cell).unwrap_or_default(),
                ));
            }
            let mut image = match (&d.digest, d.image.contains('@')) {
                (Some(digest), false) => format!("{}@{}", d.image, short_digest(digest)),
                _ => d.image.clone(),
            };
            if let Some(p) = &c.info.platform {
                image.push_str(&format!(" [{p}]"));
            }
            row.push(plain(image));
            row.push(Cell {
                text: d.decision.as_str().to_string(),
                style: decision_style(d.decision),
            });
            row.push(plain(d.rule.clone().unwrap_or_else(|| "-".into())));
            let vulnerability = match (&d.vulnerability, c.severity) {
                (Some(v), Some(s)) => format!("{v} ({s})"),
                (Some(v), None) => v.clone(),
                (None, _) => "-".into(),
            };
            row.push(Cell {
                text: escape(&vulnerability).into_owned(),
                style: severity_style(c.severity),
            });
            row.push(plain(d.reason.clone()));
            row
        })
        .collect();
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.text.chars().count());
        }
    }
    let mut out = anstream::stdout().lock();
    let last = header.len() - 1;
    let bold = Style::new().bold();
    for (i, h) in header.iter().enumerate() {
        let pad = if i == last {
            0
        } else {
            widths[i] - h.len() + 2
        };
        write!(out, "{bold}{h}{bold:#}{:pad$}", "")?;
    }
    writeln!(out)?;
    for row in &rows {
        for (i, cell) in row.iter().enumerate() {
            let pad = if i == last {
                0
            } else {
                widths[i] - cell.text.chars().count() + 2
            };
            let style = cell.style;
            write!(out, "{style}{}{style:#}{:pad$}", cell.text, "")?;
        }
        writeln!(out)?;
    }
    let count = |o: Outcome| checked.iter().filter(|c| c.decision.decision == o).count();
    let what = if with_workload {
        "container images"
    } else {
        "images"
    };
    let style = decision_style(overall);
    writeln!(
        out,
        "\n{style}{}{style:#}: {} {what} checked: {} denied, {} audited, {} allowed",
        overall.as_str(),
        checked.len(),
        count(Outcome::Deny),
        count(Outcome::Audit),
        count(Outcome::Allow)
    )?;
    Ok(())
}

/// `sha256:0123456789ab` (12 hex digits) for the table.
fn short_digest(d: &str) -> String {
    match d.split_once(':') {
        Some((alg, hex)) if hex.len() > 12 => format!("{alg}:{}", &hex[..12]),
        _ => d.to_string(),
    }
}

const SARIF_SCHEMA: &str =
    "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json";

/// SARIF 2.1.0: one reportingDescriptor per security rule that decided an audit or a deny,
/// one result per audited (warning) or denied (error) image, located by logical location.
pub fn sarif(rules: &RuleSet, checked: &[Checked]) -> Result<()> {
    let mut rule_ids: Vec<&str> = Vec::new();
    let mut results: Vec<Value> = Vec::new();
    for c in checked {
        let d = &c.decision;
        let level = match d.decision {
            Outcome::Allow => continue,
            Outcome::Audit => "warning",
            Outcome::Deny => "error",
        };
        let Some(rule) = d.rule.as_deref() else {
            continue; // audit/deny always names its rule
        };
        let index = match rule_ids.iter().position(|r| *r == rule) {
            Some(i) => i,
            None => {
                rule_ids.push(rule);
                rule_ids.len() - 1
            }
        };
        let fq = match &d.digest {
            Some(digest) if !d.image.contains('@') => format!("{}@{digest}", d.image),
            _ => d.image.clone(),
        };
        let mut logical = vec![json!({
            "name": d.image,
            "fullyQualifiedName": fq,
            "kind": "resource",
        })];
        if let Some(w) = &c.workload {
            let name = w.name.as_deref().unwrap_or("");
            let ns = w.namespace.as_deref().unwrap_or("");
            logical.push(json!({
                "name": w.container,
                "fullyQualifiedName": format!("{ns}/{}/{name}/{}", w.kind, w.container),
                "kind": "object",
            }));
        }
        let mut properties = json!({
            "decision": d.decision,
            "image": d.image,
            "digest": d.digest,
            "vulnerability": d.vulnerability,
            "counts": d.counts,
        });
        if let Some(s) = c.severity {
            properties["severity"] = json!(s);
        }
        if let Some(r) = &d.report {
            properties["report"] = json!(r);
        }
        if let Some(p) = &c.info.platform {
            properties["platform"] = json!(p);
        }
        if let Some(w) = &c.workload {
            properties["workload"] = serde_json::to_value(JsonWorkload::from(w))?;
        }
        results.push(json!({
            "ruleId": rule,
            "ruleIndex": index,
            "level": level,
            "message": { "text": d.reason },
            "locations": [{ "logicalLocations": logical }],
            "properties": properties,
        }));
    }
    let descriptors: Vec<Value> = rule_ids
        .iter()
        .map(|id| {
            let r = rules.rules().iter().find(|r| r.name == *id);
            let short = r
                .and_then(|r| r.spec.description.clone())
                .unwrap_or_else(|| id.to_string());
            let mut desc = json!({
                "id": id,
                "shortDescription": { "text": short },
            });
            if let Some(r) = r {
                let conditions: Vec<String> =
                    r.spec.conditions.iter().map(|c| c.describe()).collect();
                let mut full = format!("{}: {}", r.spec.action, conditions.join("; or "));
                if r.spec.block_unscanned {
                    full.push_str("; or the image is unscanned");
                }
                desc["fullDescription"] = json!({ "text": full });
                desc["defaultConfiguration"] = json!({
                    "level": if r.spec.action == vulngate_core::Action::Deny { "error" } else { "warning" }
                });
                desc["properties"] = json!({ "action": r.spec.action });
            }
            desc
        })
        .collect();
    let log = json!({
        "$schema": SARIF_SCHEMA,
        "version": "2.1.0",
        "runs": [{
            "tool": {
                "driver": {
                    "name": "vulngate",
                    "version": env!("CARGO_PKG_VERSION"),
                    "informationUri": env!("CARGO_PKG_REPOSITORY"),
                    "rules": descriptors,
                }
            },
            "results": results,
        }]
    });
    let mut stdout = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut stdout, &log)?;
    writeln!(stdout)?;
    Ok(())
}
