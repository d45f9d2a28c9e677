//! VEX documents (`findings::parse_vex`: OpenVEX bare or as an in-toto predicate, CycloneDX
//! analysis), then the statements applied to a fixed report by the engine.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vulngate_core::findings;

fuzz_target!(|data: &[u8]| {
    if let Ok(statements) = findings::parse_vex(data) {
        vulngate_fuzz::exercise_report(vulngate_fuzz::fixture_report(), &statements);
    }
});
