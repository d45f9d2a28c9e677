//! The AdmissionReview parse: the fast (borrowed) and slow (`Value`) paths must agree on
//! accept/reject, on every field of the parsed review and on the extracted images, under the
//! two extreme parse configurations (see `vulngate_server::fuzzing::admission_review`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    vulngate_server::fuzzing::admission_review(data);
});
