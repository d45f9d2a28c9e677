//! The Cyclonedx parser on its own (`findings::parse_format`, no detection), then the engine on
//! what parsed.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vulngate_core::findings;
use vulngate_core::model::ReportFormat;

fuzz_target!(|data: &[u8]| {
    if let Ok(r) = findings::parse_format(ReportFormat::Cyclonedx, data) {
        assert_eq!(r.format, ReportFormat::Cyclonedx);
        vulngate_fuzz::exercise_report(&r, &r.vex);
    }
});
