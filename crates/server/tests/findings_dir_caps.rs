//! The files of a findings directory (`serve --findings-dir`) are read capped, like every
//! file vulngate reads (issue 17 item 15; docs/security.md): an index or a report past its cap
//! is an error naming the cap's knob, not an unbounded read. The caps are the defaults (the
//! knobs are environment variables, shared by the whole test process: not set here).

use std::io::Write;

use vulngate_core::limits::{DEFAULT_CONFIG_BYTES, DEFAULT_REPORT_BYTES};
use vulngate_server::source::LocalFindings;
use vulngate_server::Error;

fn findings_error(dir: &std::path::Path) -> String {
    match LocalFindings::from_dir(dir) {
        Err(Error::Findings(m)) => m,
        Err(other) => panic!("expected a findings error, got {other}"),
        Ok(_) => panic!("a file past its cap was read whole"),
    }
}

#[test]
fn an_index_past_the_config_cap_is_refused_naming_the_knob() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut f = std::fs::File::create(dir.path().join("index.yaml")).expect("index");
    // A valid (empty) index followed by comments, one byte past the cap.
    f.write_all(b"images: []\n").expect("write");
    let line = format!("#{}\n", "x".repeat(1022));
    let mut written = 11u64;
    while written <= DEFAULT_CONFIG_BYTES {
        f.write_all(line.as_bytes()).expect("write");
        written += line.len() as u64;
    }
    drop(f);
    let m = findings_error(dir.path());
    assert!(m.contains("VULNGATE_MAX_CONFIG_BYTES"), "{m}");
    assert!(m.contains("index.yaml"), "{m}");
}

#[test]
fn reports_past_the_report_cap_are_refused_naming_the_knob() {
    // Sparse files: one byte past the cap, no disk used.
    let big = |path: &std::path::Path| {
        std::fs::File::create(path)
            .and_then(|f| f.set_len(DEFAULT_REPORT_BYTES + 1))
            .expect("sparse file");
    };
    // Listed in an index.
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(
        dir.path().join("index.yaml"),
        "images:\n  - image: registry.example.com/shop/api:1\n    report: big.json\n",
    )
    .expect("index");
    big(&dir.path().join("big.json"));
    let m = findings_error(dir.path());
    assert!(m.contains("VULNGATE_MAX_REPORT_BYTES"), "{m}");
    assert!(m.contains("images[0]"), "{m}");
    // Found by the naming convention (no index).
    let dir = tempfile::tempdir().expect("temp dir");
    big(&dir.path().join("registry.example.com_shop_api_1.json"));
    let m = findings_error(dir.path());
    assert!(m.contains("VULNGATE_MAX_REPORT_BYTES"), "{m}");
}
