//! in-toto attestations (vulns v0.2 and the cosign vuln predicate; DSSE envelope, Statement or
//! bare predicate) through `findings::parse_format`, then the engine on what parsed.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vulngate_core::findings;
use vulngate_core::model::ReportFormat;

fuzz_target!(|data: &[u8]| {
    for format in [ReportFormat::IntotoVulns, ReportFormat::CosignVuln] {
        if let Ok(r) = findings::parse_format(format, data) {
            assert_eq!(r.format, format);
            vulngate_fuzz::exercise_report(&r, &r.vex);
        }
    }
});
