//! The compiled closures (`compile.rs`) give the lowered tree's and the interpreter's answer:
//! one expression per specialised node (every comparison of every numeric field, `&&` and `||`
//! at the top and nested, of two operands and of more, with unknown operands on either side),
//! each asked for every vulnerability of the reports `lower_tests.rs` uses (NaN scores and
//! missing values included).

use super::lower_tests::{catalogs, compare, vulnerability_sets};
use super::CelCondition;

#[test]
fn every_compiled_node_agrees_with_the_tree_and_the_interpreter() {
    let (sets, catalogs) = (vulnerability_sets(), catalogs());
    let mut sources = Vec::new();
    for op in ["==", "!=", "<", "<=", ">", ">="] {
        for field in ["cvss", "epss", "epssPercentile"] {
            sources.push(format!("vuln.{field} {op} 0.5"));
            sources.push(format!("vuln.{field} {op} 9.0"));
            sources.push(format!("vuln.{field} {op} 0.0"));
        }
        for field in ["severityRank", "ageDays"] {
            sources.push(format!("vuln.{field} {op} 3"));
            sources.push(format!("vuln.{field} {op} -1"));
        }
    }
    for s in [
        // `&&` / `||` of two operands, an unknown (NaN) operand first or second.
        "vuln.cvss >= 9.0 && vuln.fixAvailable",
        "vuln.fixAvailable && vuln.cvss >= 9.0",
        "vuln.cvss < 5.0 && vuln.cvss != 0.0",
        "vuln.cvss >= 9.0 || vuln.fixAvailable",
        "vuln.fixAvailable || vuln.cvss >= 9.0",
        "vuln.cvss < 5.0 || vuln.cvss > 7.0",
        "!(vuln.cvss >= 9.0) && !vuln.fixAvailable",
        "!(vuln.cvss >= 9.0 || vuln.knownExploited)",
        // Three and more operands.
        "vuln.cvss >= 7.0 && vuln.fixAvailable && vuln.severityRank >= 4",
        "vuln.fixAvailable && vuln.cvss > 1.0 && vuln.cvss < 9.5 && vuln.ageDays > 100",
        "vuln.cvss >= 9.5 || vuln.knownExploited || vuln.epss > 0.2",
        "vuln.fixAvailable || vuln.cvss == 4.5 || vuln.cvss == 7.0 || vuln.ageDays < 0",
        "(vuln.cvss > 4.0 || vuln.fixAvailable) && (vuln.cvss < 9.0 || !vuln.fixAvailable)",
        // Nested (under `!` or the other operator): the closures of two operands and of more.
        "!(vuln.cvss < 5.0 && vuln.cvss != 0.0)",
        "!(vuln.fixAvailable && vuln.cvss >= 9.0)",
        "vuln.knownExploited || (vuln.cvss >= 9.0 && vuln.fixAvailable)",
        "!(vuln.cvss < 5.0 || vuln.cvss > 7.0)",
        "!(vuln.fixAvailable || vuln.cvss >= 9.0)",
        "!(vuln.cvss >= 7.0 && vuln.fixAvailable && vuln.severityRank >= 4)",
        "!(vuln.cvss >= 9.5 || vuln.knownExploited || vuln.cvss == 0.0)",
        // Constants, strings and lists.
        "true",
        "false",
        "!true || vuln.cvss == 9.8",
        "vuln.severity == 'high' && vuln.id != ''",
        "vuln.severity in ['critical', 'high', 'medium'] || vuln.id.contains('2019')",
        "vuln.fixedVersion.startsWith('1.') || vuln.fixedVersion.endsWith('r0')",
        "'CVE-2014-0160' in vuln.ids || '1.1.1d-r0' in vuln.fixedVersions",
        "'team-shop' in workload.groups && image.tag != ''",
    ] {
        sources.push(s.to_string());
    }
    let mut compared = 0;
    for source in &sources {
        let cond = CelCondition::compile(source).expect(source);
        assert!(cond.is_lowered(), "{source} should be lowered");
        compared += compare(source, &sets, &catalogs);
    }
    assert!(compared > 9_000, "compared {compared}");
}
