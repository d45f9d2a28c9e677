//! Which findings count for an image: every findings artifact attached to it is evaluated, and
//! the result is the worst case over them. Pure: no IO.
//!
//! - Trusted reports (verified against the trust policy, or every report when no policy
//!   requires signatures) are merged: the union of their findings. A report can add findings,
//!   never remove another's.
//! - A report that fails verification still adds its findings when it can be read (worst case);
//!   it never removes any, never makes the image look scanned and never sets the scan time.
//! - The scan time is the newest one inside a trusted report's payload (never the unsigned
//!   `org.opencontainers.image.created` annotation of the referrers index), ignoring times in
//!   the future.
//! - VEX (attached OpenVEX or a report's own CycloneDX analysis) removes findings, so it counts
//!   only when its artifact was verified.
//! - Every artifact dropped or counted unverified is a warning.

use chrono::{DateTime, Duration, Utc};
use vulngate_core::model::{FindingsReport, ReportIdentity, VexStatement};
use vulngate_core::UnscannedReason;

use crate::Found;

/// How far in the future a scan time may be (clock skew) before it is ignored.
pub(crate) const CLOCK_SKEW: Duration = Duration::minutes(5);

/// What verification said about one artifact.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Verdict {
    /// Verified against the trust policy, by these signatures.
    Verified(Vec<String>),
    /// No policy requires a signature: accepted unsigned.
    Unsigned,
    /// A policy requires a signature and verification failed.
    Failed(String),
}

/// The parsed content of one artifact.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Content {
    Report(Box<FindingsReport>),
    Vex(Vec<VexStatement>),
}

/// One findings artifact, evaluated.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Evaluated {
    pub digest: String,
    pub artifact_type: String,
    pub subject: String,
    pub content: Content,
    pub verdict: Verdict,
}

impl Evaluated {
    fn trusted(&self) -> bool {
        !matches!(self.verdict, Verdict::Failed(_))
    }
}

/// Merges the evaluated artifacts of an image. `errors`: artifacts that could not be read
/// (already reported as warnings by the caller), used for the reason when nothing counts.
pub(crate) fn merge(
    mut items: Vec<Evaluated>,
    errors: &[UnscannedReason],
    now: DateTime<Utc>,
    warnings: &mut Vec<String>,
) -> Result<Found, UnscannedReason> {
    items.sort_by(|a, b| a.digest.cmp(&b.digest));
    items.dedup_by(|a, b| a.digest == b.digest);
    let credible = |t: Option<DateTime<Utc>>| t.filter(|t| *t <= now + CLOCK_SKEW);
    for e in &items {
        if let Content::Report(r) = &e.content {
            if let Some(t) = r.created.filter(|t| *t > now + CLOCK_SKEW) {
                warnings.push(format!(
                    "findings artifact {}: scan time {} is in the future: its findings count, its scan time does not",
                    e.digest,
                    t.to_rfc3339()
                ));
            }
        }
    }
    // The base: the trusted report with the newest credible scan time (digest breaks ties).
    let base = items
        .iter()
        .filter(|e| e.trusted())
        .filter_map(|e| match &e.content {
            Content::Report(r) => Some((credible(r.created), e)),
            Content::Vex(_) => None,
        })
        .max_by(|(ta, a), (tb, b)| ta.cmp(tb).then_with(|| b.digest.cmp(&a.digest)))
        .map(|(_, e)| e.clone());
    let Some(base) = base else {
        for e in &items {
            if let Verdict::Failed(reason) = &e.verdict {
                warnings.push(format!(
                    "findings artifact {} ({}) not trusted: {reason}",
                    e.digest, e.artifact_type
                ));
            }
        }
        let first_failed = items.iter().find_map(|e| match &e.verdict {
            Verdict::Failed(r) => Some(UnscannedReason::Unverified(r.clone())),
            _ => None,
        });
        return Err(first_failed
            .or_else(|| errors.first().cloned())
            .unwrap_or(UnscannedReason::NoReport));
    };
    let Content::Report(base_report) = &base.content else {
        unreachable!("the base is a report");
    };
    let mut report = (**base_report).clone();
    report.created = items
        .iter()
        .filter(|e| e.trusted())
        .filter_map(|e| match &e.content {
            Content::Report(r) => credible(r.created),
            Content::Vex(_) => None,
        })
        .max();
    let verified = matches!(base.verdict, Verdict::Verified(_));
    if !verified {
        report.vex.clear();
    }
    let mut signatures = match &base.verdict {
        Verdict::Verified(s) => s.clone(),
        _ => Vec::new(),
    };
    let mut vex = Vec::new();
    let mut reports = vec![base.digest.clone()];
    for e in &items {
        if e.digest == base.digest {
            if let (Content::Report(r), false) = (&e.content, r_vex_empty(&e.content)) {
                if !verified {
                    warnings.push(format!(
                        "findings artifact {}: its {} VEX statement(s) are ignored: VEX from an unverified artifact never removes findings",
                        e.digest,
                        r.vex.len()
                    ));
                }
            }
            continue;
        }
        match (&e.content, &e.verdict) {
            (Content::Vex(v), Verdict::Verified(s)) => {
                vex.extend(v.iter().cloned());
                signatures.extend(s.iter().cloned());
            }
            (Content::Vex(v), Verdict::Unsigned) => warnings.push(format!(
                "VEX artifact {} ignored ({} statement(s)): it is not signed, and unverified VEX never removes findings",
                e.digest,
                v.len()
            )),
            (Content::Vex(_), Verdict::Failed(reason)) => warnings.push(format!(
                "VEX artifact {} ignored: not trusted: {reason}",
                e.digest
            )),
            (Content::Report(r), verdict) => {
                report.findings.extend(r.findings.iter().cloned());
                reports.push(e.digest.clone());
                match verdict {
                    Verdict::Verified(s) => {
                        report.vex.extend(r.vex.iter().cloned());
                        signatures.extend(s.iter().cloned());
                    }
                    Verdict::Unsigned => {
                        warnings.push(format!(
                            "findings artifact {} (unsigned) merged: its {} finding(s) count; it cannot remove findings",
                            e.digest,
                            r.findings.len()
                        ));
                    }
                    Verdict::Failed(reason) => warnings.push(format!(
                        "findings artifact {} ({}) not trusted: {reason}; its {} finding(s) still count (worst case), it sets no scan time and removes nothing",
                        e.digest,
                        e.artifact_type,
                        r.findings.len()
                    )),
                }
            }
        }
    }
    signatures.sort();
    signatures.dedup();
    let identity = ReportIdentity {
        digest: Some(base.digest.clone()),
        format: Some(report.format),
        scanner: Some(report.scanner.clone()),
        created: report.created,
        verified,
    };
    Ok(Found {
        report,
        identity,
        vex,
        attached_to: base.subject.clone(),
        artifact_type: base.artifact_type.clone(),
        signatures,
        reports,
    })
}

fn r_vex_empty(c: &Content) -> bool {
    match c {
        Content::Report(r) => r.vex.is_empty(),
        Content::Vex(_) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vulngate_core::model::{Finding, Package, ReportFormat, Scanner, Severity};

    fn report(ids: &[&str], created: Option<&str>) -> Content {
        Content::Report(Box::new(FindingsReport {
            format: ReportFormat::Trivy,
            subject_digest: None,
            artifact_name: None,
            scanner: Scanner::default(),
            created: created.map(|c| c.parse().expect("time")),
            findings: ids
                .iter()
                .map(|id| Finding {
                    id: id.to_string(),
                    aliases: Vec::new(),
                    severity: Severity::High,
                    cvss: None,
                    package: Package::default(),
                    fixed_versions: Vec::new(),
                    fix_state: Default::default(),
                    published: None,
                })
                .collect(),
            vex: Vec::new(),
        }))
    }

    fn item(d: &str, content: Content, verdict: Verdict) -> Evaluated {
        Evaluated {
            digest: d.into(),
            artifact_type: "t".into(),
            subject: "sha256:img".into(),
            content,
            verdict,
        }
    }

    fn now() -> DateTime<Utc> {
        "2026-12-01T00:00:00Z".parse().expect("time")
    }

    #[test]
    fn worst_case_union_and_signed_scan_time() {
        let mut w = Vec::new();
        let f = merge(
            vec![
                item(
                    "sha256:a",
                    report(&[], Some("2026-11-01T00:00:00Z")),
                    Verdict::Verified(vec!["n".into()]),
                ),
                item(
                    "sha256:b",
                    report(&["CVE-1"], Some("2026-11-20T00:00:00Z")),
                    Verdict::Verified(vec!["n2".into()]),
                ),
                // Unsigned, dated in the future: adds its finding, sets no time.
                item(
                    "sha256:c",
                    report(&["CVE-2"], Some("2099-01-01T00:00:00Z")),
                    Verdict::Failed("no signature".into()),
                ),
            ],
            &[],
            now(),
            &mut w,
        )
        .expect("found");
        let mut ids: Vec<_> = f.report.findings.iter().map(|f| f.id.as_str()).collect();
        ids.sort();
        assert_eq!(ids, ["CVE-1", "CVE-2"]);
        assert_eq!(f.identity.digest.as_deref(), Some("sha256:b"));
        assert_eq!(
            f.identity.created,
            Some("2026-11-20T00:00:00Z".parse().expect("time"))
        );
        assert!(f.identity.verified);
        assert_eq!(f.reports.len(), 3);
        assert!(w.iter().any(|w| w.contains("sha256:c")), "{w:?}");
    }

    #[test]
    fn nothing_trusted_is_unverified_and_unsigned_vex_never_counts() {
        let mut w = Vec::new();
        let r = merge(
            vec![item(
                "sha256:a",
                report(&[], None),
                Verdict::Failed("bad".into()),
            )],
            &[],
            now(),
            &mut w,
        );
        assert_eq!(r, Err(UnscannedReason::Unverified("bad".into())));
        let mut w = Vec::new();
        let f = merge(
            vec![
                item("sha256:a", report(&["CVE-1"], None), Verdict::Unsigned),
                item("sha256:v", Content::Vex(Vec::new()), Verdict::Unsigned),
            ],
            &[],
            now(),
            &mut w,
        )
        .expect("found");
        assert!(f.vex.is_empty());
        assert!(!f.identity.verified);
        assert!(
            w.iter().any(|w| w.contains("VEX artifact sha256:v")),
            "{w:?}"
        );
    }
}
