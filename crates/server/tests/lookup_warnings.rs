//! A cached lookup's warnings (unsigned or unverified reports, dropped artifacts) are logged
//! once, when the image is looked up; each admission that reads the cached result counts them
//! in its decision line and carries them in its answer, without another warning line.
//! (Before, every admission logged them again: a tenth of a warm request's CPU at load.)

#![allow(clippy::unwrap_used)] // helpers outside #[test] functions

mod support;

use std::sync::Arc;

use support::*;

#[tokio::test]
async fn a_cached_lookups_warnings_are_logged_once_and_counted_per_decision() {
    let logs = capture_logs();
    let mut source = TestSource::with(false, false, None);
    source.warnings =
        vec!["report sha256:aa is not signed (merged: it can only add findings)".into()];
    let h = harness_with(RULES, Arc::new(source), |_| {});
    let rv = create(&deployment("prod-shop", &[DEBIAN]));
    for _ in 0..3 {
        let r = admit(&h.server, &rv).await;
        let all = format!("{:?}", r.warnings);
        assert!(
            all.contains("is not signed"),
            "the answer carries it: {all}"
        );
    }
    assert_eq!(h.source.calls(), 1, "one lookup, then the cache");
    let text = String::from_utf8(logs.lock().unwrap().clone()).unwrap();
    let warned = text.matches("findings lookup warning").count();
    assert_eq!(
        warned, 1,
        "logged once per lookup, not per admission:\n{text}"
    );
    let decisions: Vec<&str> = text.lines().filter(|l| l.contains(" decision ")).collect();
    assert_eq!(decisions.len(), 3, "{text}");
    assert!(
        decisions.iter().all(|l| l.contains("lookup_warnings=1")),
        "{decisions:#?}"
    );
}
