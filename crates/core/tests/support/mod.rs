//! What the engine's integration tests share.

use chrono::{DateTime, Utc};
use vulngate_core::model::{Finding, FindingsReport, ReportFormat, Scanner};

/// A Trivy report holding `findings` (no VEX, no subject), created at `created`.
pub fn trivy_report(findings: Vec<Finding>, created: Option<DateTime<Utc>>) -> FindingsReport {
    FindingsReport {
        format: ReportFormat::Trivy,
        subject_digest: None,
        artifact_name: None,
        scanner: Scanner {
            name: "trivy".into(),
            version: None,
            db: None,
        },
        created,
        findings,
        vex: Vec::new(),
    }
}
