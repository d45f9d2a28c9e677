//! Entry points for the fuzz targets (`crates/fuzz-targets`, run by `fuzz/` and the smoke
//! test). They call the crate's own parse functions and assert the properties the
//! code promises; no behaviour of the server depends on this module.

use crate::admission::review::{parse_review, parse_review_slow, ParseOptions, Review};

/// The AdmissionReview parse, fast and slow paths, under the two extreme configurations
/// (every object-reading option on, and the defaults). Panics (the fuzzer's crash) when:
/// the two paths disagree on accept/reject, on the parsed review (which includes the
/// extracted images of the object and of the old object) or on the error; or when a parse
/// panics.
pub fn admission_review(body: &[u8]) {
    slim_reads_what_strict_reads(body);
    let excluded = ["kube-system".to_string()];
    let all_on = ParseOptions {
        excluded_namespaces: &excluded,
        break_glass_annotation: Some("vulngate.io/break-glass"),
        pull_secrets: true,
        compare_old: true,
    };
    for opts in [all_on, ParseOptions::default()] {
        // `parse_review` is the fast parse when it answers, else the slow one: compared with
        // the slow parse alone, any difference is the fast parse's.
        let either = parse_review(body, &opts);
        let slow = parse_review_slow(body, &opts);
        match (&either, &slow) {
            (Ok(a), Ok(b)) => {
                assert_eq!(a, b, "fast and slow parses disagree");
                assert_eq!(images(a), images(b), "extracted images differ");
            }
            (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string()),
            (Ok(_), Err(e)) => panic!("fast parse accepts what the slow one refuses: {e}"),
            (Err(e), Ok(_)) => panic!("the slow parse gives two answers: {e}"),
        }
    }
}

/// The images of a review's object and old object, as the gate evaluates them.
fn images(r: &Review) -> Vec<String> {
    let object = r
        .object
        .as_ref()
        .and_then(|o| o.workload.as_ref().ok())
        .map(|w| {
            w.containers
                .iter()
                .map(|c| c.image.clone())
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    let old = r
        .old_workload
        .as_ref()
        .map(|w| {
            w.containers
                .iter()
                .map(|c| c.image.clone())
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    object
        .into_iter()
        .chain(["--".to_string()])
        .chain(old)
        .collect()
}

/// Both parses read objects with the slim reader (the strict one only words errors), so the
/// comparison above cannot see the slim reader drift from the strict one. This does: every
/// object the strict reader (`workload::extract`, k8s-openapi types) accepts, the slim reader
/// reads to the same workload. (The converse does not hold by design: the slim reader does not
/// check the types of fields vulngate never reads.)
fn slim_reads_what_strict_reads(body: &[u8]) {
    use serde::Deserialize;
    use vulngate_core::workload::{extract, slim::SlimObject};
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) else {
        return;
    };
    for key in ["object", "oldObject"] {
        let Some(object) = v.get("request").and_then(|r| r.get(key)) else {
            continue;
        };
        if let Ok(strict) = extract(object) {
            let slim = SlimObject::deserialize(object)
                .ok()
                .and_then(|s| s.workload(None, None));
            assert_eq!(
                slim.as_ref(),
                Some(&strict),
                "the slim reader differs on {key}"
            );
        }
    }
}
