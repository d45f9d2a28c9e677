//! The rule YAML (`RuleSet::parse_yaml`: multi-document, every field checked, CEL compiled),
//! the rule set built from it, and the engine with those rules on a fixed report and on an
//! unscanned image. A rule that parsed must also survive its own round trip
//! (`to_doc` -> YAML -> `parse_yaml`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use vulngate_core::rules::{Precedence, RuleSet};
use vulngate_core::{evaluate, AnalyzedReport, Subject, UnscannedReason};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(rules) = RuleSet::parse_yaml(text, "fuzz") else {
        return;
    };
    for r in &rules {
        let _ = r.spec.conditions.iter().map(|c| c.describe()).count();
        let doc = serde_yaml_ng::to_string(&r.to_doc()).expect("a rule serialises");
        let again = RuleSet::parse_yaml(&doc, "round trip")
            .unwrap_or_else(|e| panic!("a parsed rule does not parse again: {e}\n{doc}"));
        assert_eq!(again.len(), 1);
        assert_eq!(
            again[0].to_doc(),
            r.to_doc(),
            "round trip changed the rule\n{doc}"
        );
    }
    let Ok(set) = RuleSet::new(rules) else {
        return;
    };
    let report = vulngate_fuzz::fixture_report();
    let analyzed = AnalyzedReport::new(
        report,
        Default::default(),
        &report.vex,
        Some(vulngate_fuzz::image()),
    );
    let unscanned = UnscannedReason::NoReport;
    let ctx = vulngate_fuzz::context();
    for precedence in [Precedence::Default, Precedence::Strictest] {
        for subject in [Subject::Report(&analyzed), Subject::Unscanned(&unscanned)] {
            let d = evaluate(
                &set,
                precedence,
                &ctx,
                vulngate_fuzz::image(),
                subject,
                vulngate_fuzz::now(),
            );
            serde_json::to_vec(&d).expect("a decision serialises");
        }
    }
});
