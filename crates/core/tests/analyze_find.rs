//! `AnalyzedReport::find` by id and by alias, on both sides of the size below which a report
//! keeps no id index (a scan) and above which it does (a hash map): the same answers.

use vulngate_core::engine::AnalyzedReport;
use vulngate_core::model::{Finding, Package, ReportIdentity, Severity};

mod support;

/// `n` findings, each `CVE-2026-<i>` with alias `GHSA-<i>`, severities varied so that the
/// vulnerabilities are reordered (most severe first) against the findings.
fn report(n: usize) -> AnalyzedReport {
    let severities = [
        Severity::Low,
        Severity::Critical,
        Severity::Medium,
        Severity::High,
    ];
    let findings = (0..n)
        .map(|i| Finding {
            id: format!("CVE-2026-{i}"),
            aliases: vec![format!("GHSA-{i}")],
            severity: severities[i % severities.len()],
            package: Package {
                name: format!("pkg-{i}"),
                version: Some("1.0".into()),
                purl: None,
                kind: None,
            },
            ..Finding::default()
        })
        .collect();
    let r = support::trivy_report(findings, None);
    AnalyzedReport::new(&r, ReportIdentity::default(), &[], None)
}

#[test]
fn find_answers_alike_with_and_without_the_index() {
    // 8 findings: 16 ids (scanned); 9: 18 ids (indexed); 0 and 40 for the ends.
    for n in [0, 1, 8, 9, 40] {
        let r = report(n);
        assert_eq!(r.vulnerabilities.len(), n);
        for i in 0..n {
            let cve = format!("CVE-2026-{i}");
            let k = r
                .find(&cve)
                .unwrap_or_else(|| panic!("{cve} not found in {n}"));
            assert_eq!(r.vulnerabilities[k].id, cve, "n={n}");
            assert_eq!(
                r.find(&format!("GHSA-{i}")),
                Some(k),
                "alias of {cve}, n={n}"
            );
        }
        for missing in ["CVE-2026-999", "GHSA-", "", "cve-2026-1"] {
            assert_eq!(r.find(missing), None, "{missing:?} in {n}");
        }
    }
}
