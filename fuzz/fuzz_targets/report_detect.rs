//! Format detection and every parser behind it (`findings::parse`), then the engine on what
//! parsed. When detection and the format's own parser both accept a document they must
//! agree; `parse_vex` must never panic either.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vulngate_core::findings::{self, Parsed};

fuzz_target!(|data: &[u8]| {
    match findings::parse(data) {
        Ok(Parsed::Report(r)) => {
            if let Ok(direct) = findings::parse_format(r.format, data) {
                assert_eq!(
                    direct, r,
                    "detection and parse_format({}) disagree",
                    r.format
                );
            }
            vulngate_fuzz::exercise_report(&r, &r.vex);
        }
        Ok(Parsed::Vex(statements)) => {
            let empty = vulngate_fuzz::empty_report();
            vulngate_fuzz::exercise_report(&empty, &statements);
        }
        Err(e) => {
            // The error names the format and a JSON path.
            assert!(!e.format.is_empty() && e.path.starts_with('$'), "{e:?}");
        }
    }
    let _ = findings::parse_vex(data);
});
