//! The bodies of the cargo-fuzz targets in `fuzz/` (run them with `scripts/fuzz.sh`), shared
//! with the stable smoke test of the test command (`tests/smoke.rs`), so the two cannot drift.
//! Each target takes arbitrary bytes and panics only on a broken promise of the code it calls
//! (a crash, for the fuzzer). [`TARGETS`] lists them by name.
//!
//! What every findings target does with a report that parsed: prepare it for the engine
//! (VEX, alias merging, sorting) and evaluate the example rule sets against it, both
//! precedences. A report the parsers accept must never make the engine panic.

mod targets;
pub use targets::*;

/// A fuzz target: arbitrary bytes in, a panic only on a broken promise.
pub type Target = fn(&[u8]);

/// Every target, by the name of its cargo-fuzz binary.
pub const TARGETS: &[(&str, Target)] = &[
    (
        "admission_review",
        vulngate_server::fuzzing::admission_review,
    ),
    ("report_detect", report_detect),
    ("report_trivy", report_trivy),
    ("report_grype", report_grype),
    ("report_sarif", report_sarif),
    ("report_cyclonedx", report_cyclonedx),
    ("report_intoto", report_intoto),
    ("report_openvex", report_openvex),
    ("rules_yaml", rules_yaml),
    ("findings_index", findings_index),
    ("oci_manifest", oci_manifest),
    ("notation_jws", notation_jws),
    ("cosign_envelopes", cosign_envelopes),
];

use std::sync::OnceLock;

use chrono::{DateTime, Utc};
use vulngate_core::model::{FindingsReport, ReportIdentity, VexStatement};
use vulngate_core::rules::{Precedence, RuleSet};
use vulngate_core::{evaluate, AnalyzedReport, ImageRef, RequestContext, Subject};

/// The example rules (severity counts, cveIds, scopes, CEL conditions) and the defaults.
pub fn rule_sets() -> &'static [RuleSet] {
    static SETS: OnceLock<Vec<RuleSet>> = OnceLock::new();
    SETS.get_or_init(|| {
        let mut sets = vec![RuleSet::default_rules()];
        for (text, name) in [
            (include_str!("../../../examples/rules.yaml"), "rules.yaml"),
            (
                include_str!("../../../examples/exploitation/rules.yaml"),
                "exploitation/rules.yaml",
            ),
        ] {
            let rules = RuleSet::parse_yaml(text, name).expect("example rules parse");
            sets.push(RuleSet::new(rules).expect("example rules form a set"));
        }
        sets
    })
}

pub fn image() -> &'static ImageRef {
    static IMAGE: OnceLock<ImageRef> = OnceLock::new();
    IMAGE.get_or_init(|| {
        ImageRef::parse(
            "registry.example.com/shop/api@sha256:05d20e8740ef391bb7d5436d5dad4eb18cdf223eb520c7dec4cd151cd465ce00",
        )
        .expect("image reference")
    })
}

pub fn context() -> RequestContext {
    RequestContext {
        namespace: Some("prod-shop".into()),
        workload_kind: Some("Deployment".into()),
        workload_name: Some("api".into()),
        user: Some("alice@example.com".into()),
        ..RequestContext::default()
    }
}

pub fn now() -> DateTime<Utc> {
    "2026-11-28T12:00:00Z".parse().expect("time")
}

/// Analyses `report` (with `vex`) and evaluates every example rule set against it.
pub fn exercise_report(report: &FindingsReport, vex: &[VexStatement]) {
    let identity = ReportIdentity {
        digest: Some("sha256:00".into()),
        format: Some(report.format),
        scanner: Some(report.scanner.clone()),
        created: report.created,
        verified: false,
    };
    let analyzed = AnalyzedReport::new(report, identity, vex, Some(image()));
    let ctx = context();
    for rules in rule_sets() {
        for precedence in [Precedence::Default, Precedence::Strictest] {
            let d = evaluate(
                rules,
                precedence,
                &ctx,
                image(),
                Subject::Report(&analyzed),
                now(),
            );
            // The decision serialises (it becomes the alert and the audit response).
            serde_json::to_vec(&d).expect("a decision serialises");
        }
    }
}

/// A report with no findings (for VEX documents, which carry none).
pub fn empty_report() -> FindingsReport {
    FindingsReport {
        format: vulngate_core::model::ReportFormat::Trivy,
        subject_digest: None,
        artifact_name: None,
        scanner: Default::default(),
        created: None,
        findings: Vec::new(),
        vex: Vec::new(),
    }
}

/// The Trivy alpine 3.10 fixture, parsed (real findings for rules and VEX to act on).
pub fn fixture_report() -> &'static FindingsReport {
    static REPORT: OnceLock<FindingsReport> = OnceLock::new();
    REPORT.get_or_init(|| {
        vulngate_core::findings::parse_format(
            vulngate_core::model::ReportFormat::Trivy,
            include_bytes!("../../../crates/core/tests/data/reports/trivy/alpine-310.json"),
        )
        .expect("fixture report parses")
    })
}
