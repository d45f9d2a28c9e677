//! A findings directory read the way `vulngate check --findings-dir` reads it.

use std::path::PathBuf;

use vulngate_core::engine::UnscannedReason;
use vulngate_core::ImageRef;
use vulngate_server::source::{FindingsSource, LocalFindings};

fn examples() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/findings")
}

#[tokio::test]
async fn naming_convention_without_index() {
    let src = LocalFindings::from_dir(&examples()).expect("examples load");
    let img = ImageRef::parse("registry.example.com/shop/api:1.4.2").expect("ref");
    let found = src
        .lookup(&img)
        .await
        .expect("lookup")
        .report
        .expect("a report");
    assert!(!found.report.findings.is_empty());
    assert!(!found.identity.verified);
    // The SARIF report is found by its extension too.
    let img = ImageRef::parse("registry.example.com/shop/orders-db:15.2").expect("ref");
    let found = src
        .lookup(&img)
        .await
        .expect("lookup")
        .report
        .expect("a report");
    assert_eq!(found.report.format.as_str(), "sarif");
    let other = ImageRef::parse("registry.example.com/shop/unknown:1").expect("ref");
    let l = src.lookup(&other).await.expect("lookup");
    assert_eq!(l.report.err(), Some(UnscannedReason::NoReport));
}

#[tokio::test]
async fn index_as_a_map_of_image_to_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::copy(
        examples().join("registry.example.com_shop_api_1.4.2.json"),
        dir.path().join("scan.json"),
    )
    .expect("copy");
    std::fs::write(dir.path().join("index.yaml"), "nginx:1.25: scan.json\n").expect("write");
    let src = LocalFindings::from_dir(dir.path()).expect("loads");
    let img = ImageRef::parse("docker.io/library/nginx:1.25").expect("ref");
    assert!(src.lookup(&img).await.expect("lookup").report.is_ok());
}

#[test]
fn a_bad_report_is_an_error_at_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("app_v1.json"),
        "{\"SchemaVersion\": 2, \"Results\": [",
    )
    .expect("write");
    let e = LocalFindings::from_dir(dir.path())
        .expect_err("bad report")
        .to_string();
    assert!(e.contains("app_v1.json") && e.contains("trivy"), "{e}");
}
