//! The webhook on a multi-arch image with `platform: all`, against a real docker-registry:
//! every platform's report is judged, the worst decision counts, a platform without a report
//! is unscanned (as `vulngate check --platform all` judges it: `Lookup::judged`).

#![allow(clippy::unwrap_used)]

#[path = "../../registry/tests/support/mod.rs"]
mod registry_support;
mod support;

use registry_support::{Kind, Registry};
use support::*;
use vulngate_server::Server;

/// Deny medium and above; deny unscanned images in `gated`.
const DENY_MEDIUM: &str = r#"
apiVersion: vulngate.io/v1
kind: SecurityRule
metadata: { name: deny-medium }
spec:
  action: deny
  conditions: [{ severity: medium, maxCount: 0 }]
---
apiVersion: vulngate.io/v1
kind: SecurityRule
metadata: { name: block-unscanned }
spec:
  action: deny
  scope: [{ field: namespace, op: equals, value: gated }]
  blockUnscanned: true
  conditions: [{ cveIds: [CVE-0000-0000] }]
"#;

fn server(reg: &Registry, platform: &str, dir: &std::path::Path) -> Server {
    let mut cfg = config(dir, Some(DENY_MEDIUM));
    cfg.registry = Some(vulngate_registry::RegistryConfig {
        insecure_registries: vec![reg.host.clone()],
        platform: platform.to_string(),
        ..Default::default()
    });
    Server::from_config(cfg).unwrap()
}

fn alpine_report() -> Vec<u8> {
    fixture("trivy/alpine-310.json")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vulnerable_arm64_platform_denies_the_image_with_platform_all() {
    let reg = Registry::start(Kind::Distribution);
    let (_index, _amd64, arm64) = reg.push_multiarch("m1");
    // Only the arm64 manifest has a report, and it is vulnerable (4 medium).
    reg.oras_attach(
        &arm64,
        "application/vnd.vulngate.report+json",
        &alpine_report(),
        None,
    );
    let image = format!("{}/app:m1", reg.host);
    let dir = tempfile::tempdir().unwrap();

    // platform: all -> the arm64 report counts: denied, and the message names the platform.
    let s = server(&reg, "all", dir.path());
    let r = admit(
        &s,
        &create(&workload("Deployment", "web", "shop", &[&image])),
    )
    .await;
    assert!(!r.allowed, "allowed: {:?}", r.warnings);
    assert!(
        r.result.message.contains("platform linux/arm64"),
        "{}",
        r.result.message
    );
    assert_eq!(r.audit_annotations["rule"], "deny-medium");

    // The default platform (linux/amd64) has no report: unscanned, allowed outside `gated`.
    let dir2 = tempfile::tempdir().unwrap();
    let s = server(&reg, "linux/amd64", dir2.path());
    let r = admit(
        &s,
        &create(&workload("Deployment", "web", "shop", &[&image])),
    )
    .await;
    assert!(r.allowed, "{}", r.result.message);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_platform_without_a_report_is_unscanned_with_platform_all() {
    let reg = Registry::start(Kind::Distribution);
    let (_index, amd64, _arm64) = reg.push_multiarch("m2");
    // amd64 has a clean report (an empty Trivy result); arm64 none.
    let clean = br#"{"SchemaVersion":2,"ArtifactName":"app","ArtifactType":"container_image","Results":[]}"#;
    reg.oras_attach(&amd64, "application/vnd.vulngate.report+json", clean, None);
    let image = format!("{}/app:m2", reg.host);
    let dir = tempfile::tempdir().unwrap();
    let s = server(&reg, "all", dir.path());
    // In `gated`, the unscanned arm64 platform is denied by block-unscanned.
    let r = admit(
        &s,
        &create(&workload("Deployment", "web", "gated", &[&image])),
    )
    .await;
    assert!(!r.allowed);
    assert_eq!(r.audit_annotations["rule"], "block-unscanned");
    assert!(
        r.result.message.contains("platform linux/arm64"),
        "{}",
        r.result.message
    );
    // Elsewhere nothing fires on either platform.
    let r = admit(
        &s,
        &create(&workload("Deployment", "web", "shop", &[&image])),
    )
    .await;
    assert!(r.allowed, "{}", r.result.message);
}
