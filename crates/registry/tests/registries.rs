//! End to end against real registries and real signing tools: docker-registry (referrers tag
//! schema) and ferro-oci-server (referrers API); images pushed with crane, reports attached with
//! oras, signed with notation and cosign; vulngate resolves, discovers, pulls, verifies, parses.

mod support;

use std::path::PathBuf;
use std::time::Instant;

use support::{cosign_vuln_predicate, trivy_report, Kind, Options, Registry};
use vulngate_core::{ImageRef, UnscannedReason};
use vulngate_registry::config::{CosignTrust, NotationTrust};
use vulngate_registry::{
    AttachRequest, Lookup, RegistryClient, RegistryConfig, Require, TrustPolicy,
};

const REPORT_TYPE: &str = "application/vnd.vulngate.report+json";

fn config(reg: &Registry) -> RegistryConfig {
    RegistryConfig {
        insecure_registries: vec![reg.host.clone()],
        ..RegistryConfig::default()
    }
}

fn with_policy(
    mut cfg: RegistryConfig,
    roots: &[&PathBuf],
    keys: &[&PathBuf],
    require: Option<Require>,
) -> RegistryConfig {
    let own = |v: &[&PathBuf]| v.iter().map(|p| (*p).clone()).collect::<Vec<_>>();
    cfg.trust_policies.push(TrustPolicy {
        scope: "*".into(),
        require,
        notation: (!roots.is_empty()).then(|| NotationTrust {
            trust_store: own(roots),
            ..NotationTrust::default()
        }),
        cosign: (!keys.is_empty()).then(|| CosignTrust {
            public_keys: own(keys),
            keyless: None,
        }),
    });
    cfg
}

fn image(reg: &Registry, reference: &str) -> ImageRef {
    ImageRef::parse(&format!("{}/app{reference}", reg.host)).expect("reference")
}

async fn lookup(cfg: RegistryConfig, img: &ImageRef) -> Lookup {
    RegistryClient::new(cfg).expect("client").lookup(img).await
}

fn finding_ids(l: &Lookup) -> Vec<String> {
    match &l.report {
        Ok(f) => f.report.findings.iter().map(|f| f.id.clone()).collect(),
        Err(r) => panic!("expected a report, got: {r}\nwarnings: {:?}", l.warnings),
    }
}

fn sorted_ids(l: &Lookup) -> Vec<String> {
    let mut v = finding_ids(l);
    v.sort();
    v
}

fn unverified(l: &Lookup) -> String {
    match &l.report {
        Err(UnscannedReason::Unverified(r)) => r.clone(),
        other => panic!("expected Unverified, got {other:?}"),
    }
}

#[tokio::test]
async fn ferro_referrers_api_notation_signed_report() {
    let reg = Registry::start(Kind::Ferro);
    let digest = reg.push_image("v1", "one");
    let art = reg.oras_attach(
        &digest,
        REPORT_TYPE,
        &trivy_report("CVE-2024-0001", "2026-11-28T00:00:00Z"),
        None,
    );
    let crt = reg.notation_cert("vulngate-test");
    reg.notation_sign(&art);

    // By tag: resolved, found through the referrers API, verified with notation, parsed.
    let cfg = with_policy(config(&reg), &[&crt], &[], None);
    let l = lookup(cfg.clone(), &image(&reg, ":v1")).await;
    assert_eq!(l.digest.as_deref(), Some(digest.as_str()));
    assert_eq!(finding_ids(&l), ["CVE-2024-0001"]);
    let f = l.report.as_ref().expect("found");
    assert!(f.identity.verified);
    assert_eq!(f.identity.digest.as_deref(), Some(art.as_str()));
    assert!(
        f.signatures[0].starts_with("notation: signature"),
        "{:?}",
        f.signatures
    );

    // By digest: no resolve needed, same result.
    let l = lookup(cfg, &image(&reg, &format!("@{digest}"))).await;
    assert_eq!(finding_ids(&l), ["CVE-2024-0001"]);

    // No trust material at all: accepted unsigned, with a warning.
    let l = lookup(config(&reg), &image(&reg, ":v1")).await;
    assert!(!l.report.as_ref().expect("found").identity.verified);
    assert!(
        l.warnings.iter().any(|w| w.contains("accepted unsigned")),
        "{:?}",
        l.warnings
    );
}

/// docker-registry 2.x has no referrers API (a plain `404 page not found`): a client asks once
/// per repository and then goes straight to the tag schema; a registry with the API (ferro) is
/// asked every time, so reports attached only through the API keep being found.
#[tokio::test]
async fn a_missing_referrers_api_is_asked_once_per_repository() {
    let reg = Registry::start_with(
        Kind::Distribution,
        Options {
            access_log: true,
            ..Options::default()
        },
    );
    let d1 = reg.push_image("v1", "one");
    let d2 = reg.push_image("v2", "two");
    for (d, cve) in [(&d1, "CVE-2024-0011"), (&d2, "CVE-2024-0012")] {
        reg.oras_attach(
            d,
            REPORT_TYPE,
            &trivy_report(cve, "2026-11-28T00:00:00Z"),
            None,
        );
    }
    let client = RegistryClient::new(config(&reg)).expect("client");
    let referrers_calls = || reg.log().matches("/referrers/sha256:").count();
    let before = referrers_calls();
    let l = client.lookup(&image(&reg, &format!("@{d1}"))).await;
    assert_eq!(finding_ids(&l), ["CVE-2024-0011"]);
    assert_eq!(referrers_calls() - before, 1, "{}", reg.log());
    let l = client.lookup(&image(&reg, &format!("@{d2}"))).await;
    assert_eq!(finding_ids(&l), ["CVE-2024-0012"]);
    let l = client.lookup(&image(&reg, &format!("@{d1}"))).await;
    assert_eq!(finding_ids(&l), ["CVE-2024-0011"]);
    assert_eq!(referrers_calls() - before, 1, "asked once: {}", reg.log());
    // Another client (a restart) asks again.
    let other = RegistryClient::new(config(&reg)).expect("client");
    let l = other.lookup(&image(&reg, &format!("@{d2}"))).await;
    assert_eq!(finding_ids(&l), ["CVE-2024-0012"]);
    assert_eq!(referrers_calls() - before, 2, "{}", reg.log());

    let ferro = Registry::start(Kind::Ferro);
    let d = ferro.push_image("v1", "one");
    ferro.oras_attach(
        &d,
        REPORT_TYPE,
        &trivy_report("CVE-2024-0013", "2026-11-28T00:00:00Z"),
        None,
    );
    let client = RegistryClient::new(config(&ferro)).expect("client");
    for _ in 0..3 {
        let l = client.lookup(&image(&ferro, &format!("@{d}"))).await;
        assert_eq!(finding_ids(&l), ["CVE-2024-0013"]);
    }
}

#[tokio::test]
async fn distribution_tag_schema_cosign_signed_report_and_attestation() {
    let reg = Registry::start(Kind::Distribution);
    let digest = reg.push_image("v1", "two");
    let art = reg.oras_attach(
        &digest,
        REPORT_TYPE,
        &trivy_report("CVE-2024-0002", "2026-11-28T00:00:00Z"),
        Some("2026-11-28T01:00:00Z"),
    );
    let (key, public) = reg.cosign_keys("good");
    reg.cosign_sign(&key, &art);
    let cfg = with_policy(config(&reg), &[], &[&public], None);
    let l = lookup(cfg.clone(), &image(&reg, ":v1")).await;
    assert_eq!(finding_ids(&l), ["CVE-2024-0002"]);
    let f = l.report.as_ref().expect("found");
    assert!(f.identity.verified);
    assert!(
        f.signatures[0].starts_with("cosign: signature"),
        "{:?}",
        f.signatures
    );

    // A newer cosign attestation (sigstore bundle; its tag-schema entry says artifactType
    // application/vnd.oci.empty.v1+json) is found too: the worst case over both counts, and the
    // newer signed scan time names the report.
    reg.cosign_attest_vuln(&key, &digest, &cosign_vuln_predicate("CVE-2024-0003"));
    let l = lookup(cfg, &image(&reg, ":v1")).await;
    assert_eq!(sorted_ids(&l), ["CVE-2024-0002", "CVE-2024-0003"]);
    let f = l.report.as_ref().expect("found");
    assert_eq!(
        f.artifact_type,
        "application/vnd.dev.sigstore.bundle.v0.3+json"
    );
    assert!(f.identity.verified);
    assert!(
        f.signatures
            .iter()
            .any(|s| s.starts_with("cosign: attestation")),
        "{:?}",
        f.signatures
    );
}

#[tokio::test]
async fn multiarch_index_and_platform_reports() {
    let reg = Registry::start(Kind::Ferro);
    let (index, amd64, arm64) = reg.push_multiarch("v2");
    reg.oras_attach(
        &index,
        REPORT_TYPE,
        &trivy_report("CVE-2024-0010", "2026-11-28T00:00:00Z"),
        Some("2026-11-28T01:00:00Z"),
    );
    reg.oras_attach(
        &amd64,
        REPORT_TYPE,
        &trivy_report("CVE-2024-0011", "2026-11-28T00:00:00Z"),
        Some("2026-11-28T02:00:00Z"),
    );

    // Default linux/amd64: the index's and the platform's reports both count.
    let l = lookup(config(&reg), &image(&reg, ":v2")).await;
    assert_eq!(l.digest.as_deref(), Some(index.as_str()));
    assert_eq!(l.platform_digest.as_deref(), Some(amd64.as_str()));
    assert_eq!(sorted_ids(&l), ["CVE-2024-0010", "CVE-2024-0011"]);

    // linux/arm64 has nothing of its own: the index's report counts.
    let mut cfg = config(&reg);
    cfg.platform = "linux/arm64".into();
    let l = lookup(cfg, &image(&reg, ":v2")).await;
    assert_eq!(l.platform_digest.as_deref(), Some(arm64.as_str()));
    assert_eq!(finding_ids(&l), ["CVE-2024-0010"]);

    // All platforms.
    let mut cfg = config(&reg);
    cfg.platform = "all".into();
    let l = lookup(cfg, &image(&reg, ":v2")).await;
    assert_eq!(l.platforms.len(), 2);
    let by = |d: &str| {
        let p = l
            .platforms
            .iter()
            .find(|p| p.digest == d)
            .expect("platform");
        let mut ids: Vec<String> = p
            .report
            .as_ref()
            .expect("report")
            .report
            .findings
            .iter()
            .map(|f| f.id.clone())
            .collect();
        ids.sort();
        ids.join(",")
    };
    assert_eq!(by(&amd64), "CVE-2024-0010,CVE-2024-0011");
    assert_eq!(by(&arm64), "CVE-2024-0010");
    assert_eq!(finding_ids(&l), ["CVE-2024-0010"]);

    // An absent platform: index findings only, with a warning.
    let mut cfg = config(&reg);
    cfg.platform = "linux/s390x".into();
    let l = lookup(cfg, &image(&reg, ":v2")).await;
    assert_eq!(l.platform_digest, None);
    assert_eq!(finding_ids(&l), ["CVE-2024-0010"]);
    assert!(
        l.warnings.iter().any(|w| w.contains("no linux/s390x")),
        "{:?}",
        l.warnings
    );
}

#[tokio::test]
async fn forged_and_untrusted_reports_are_refused() {
    let reg = Registry::start(Kind::Distribution);
    let digest = reg.push_image("v1", "three");
    let crt = reg.notation_cert("vulngate-test");
    let (_, good_pub) = reg.cosign_keys("good");
    let (bad_key, _) = reg.cosign_keys("bad");

    // 1. Unsigned report, trust configured -> refused.
    reg.oras_attach(
        &digest,
        REPORT_TYPE,
        &trivy_report("CVE-2024-0020", "2026-11-28T00:00:00Z"),
        None,
    );
    let l = lookup(
        with_policy(config(&reg), &[&crt], &[], None),
        &image(&reg, ":v1"),
    )
    .await;
    assert!(
        unverified(&l).contains("no Notary Project signature attached"),
        "{l:?}"
    );
    let l = lookup(
        with_policy(config(&reg), &[], &[&good_pub], None),
        &image(&reg, ":v1"),
    )
    .await;
    assert!(
        unverified(&l).contains("no cosign signature attached"),
        "{l:?}"
    );

    // 2. Signed by an untrusted key.
    let digest2 = reg.push_image("v2", "four");
    let art2 = reg.oras_attach(
        &digest2,
        REPORT_TYPE,
        &trivy_report("CVE-2024-0021", "2026-11-28T00:00:00Z"),
        None,
    );
    reg.cosign_sign(&bad_key, &art2);
    let l = lookup(
        with_policy(config(&reg), &[], &[&good_pub], None),
        &image(&reg, ":v2"),
    )
    .await;
    assert!(
        unverified(&l).contains("does not verify with any configured cosign public key"),
        "{l:?}"
    );

    // 3. Notation signed, but the policy requires both notation and cosign.
    reg.notation_sign(&art2);
    let cfg = with_policy(config(&reg), &[&crt], &[&good_pub], Some(Require::All));
    let r = unverified(&lookup(cfg, &image(&reg, ":v2")).await);
    assert!(r.contains("cosign:") && !r.contains("notation:"), "{r}");
    // ...and `any` accepts it.
    let cfg = with_policy(config(&reg), &[&crt], &[&good_pub], Some(Require::Any));
    assert_eq!(
        finding_ids(&lookup(cfg, &image(&reg, ":v2")).await),
        ["CVE-2024-0021"]
    );

    // 4. A policy whose scope does not cover the image, while trust is configured.
    let mut cfg = with_policy(config(&reg), &[&crt], &[], None);
    cfg.trust_policies[0].scope = "ghcr.io/*".into();
    assert!(unverified(&lookup(cfg, &image(&reg, ":v2")).await).contains("no trust policy covers"));
}

#[tokio::test]
async fn signature_for_another_digest_is_refused() {
    // A real notation signature of report A, re-attached (same JWS) to report B.
    let reg = Registry::start(Kind::Ferro);
    let crt = reg.notation_cert("vulngate-test");
    let d1 = reg.push_image("a", "a");
    let a = reg.oras_attach(
        &d1,
        REPORT_TYPE,
        &trivy_report("CVE-2024-0030", "2026-11-28T00:00:00Z"),
        None,
    );
    reg.notation_sign(&a);
    let d2 = reg.push_image("b", "b");
    let b = reg.oras_attach(
        &d2,
        REPORT_TYPE,
        &trivy_report("CVE-2024-0031", "2026-11-28T00:00:00Z"),
        None,
    );
    let sigs = reg.tool(
        "oras",
        &[
            "discover",
            "--plain-http",
            "--format",
            "json",
            "--artifact-type",
            "application/vnd.cncf.notary.signature",
            &format!("{}/app@{a}", reg.host),
        ],
    );
    let v: serde_json::Value = serde_json::from_str(&sigs).expect("json");
    let sig = v["referrers"][0]["digest"]
        .as_str()
        .expect("signature digest")
        .to_string();
    let raw = reg.tool(
        "oras",
        &[
            "manifest",
            "fetch",
            "--plain-http",
            &format!("{}/app@{sig}", reg.host),
        ],
    );
    let mut m: serde_json::Value = serde_json::from_str(&raw).expect("json");
    let bm = reg.tool(
        "oras",
        &[
            "manifest",
            "fetch",
            "--plain-http",
            "--descriptor",
            &format!("{}/app@{b}", reg.host),
        ],
    );
    m["subject"] = serde_json::from_str(&bm).expect("descriptor");
    let forged = reg.work().join("forged.json");
    std::fs::write(&forged, serde_json::to_vec(&m).expect("json")).expect("write");
    reg.tool(
        "oras",
        &[
            "manifest",
            "push",
            "--plain-http",
            "--media-type",
            "application/vnd.oci.image.manifest.v1+json",
            &format!("{}/app", reg.host),
            &forged.display().to_string(),
        ],
    );
    let l = lookup(
        with_policy(config(&reg), &[&crt], &[], None),
        &image(&reg, ":b"),
    )
    .await;
    let r = unverified(&l);
    assert!(
        r.contains(&format!("signature is for {a}, not for {b}")),
        "{r}"
    );
}

#[tokio::test]
async fn swapped_blob_is_a_digest_mismatch() {
    let reg = Registry::start(Kind::Distribution);
    let digest = reg.push_image("v1", "five");
    let report = trivy_report("CVE-2024-0040", "2026-11-28T00:00:00Z");
    reg.oras_attach(&digest, REPORT_TYPE, &report, None);
    // Swap the stored bytes of the report blob (same length) behind the registry's back.
    let hex = vulngate_registry::oci::digest_of(&report, "sha256:")[7..].to_string();
    let path = reg.scratch().join(format!(
        "data/docker/registry/v2/blobs/sha256/{}/{hex}/data",
        &hex[..2]
    ));
    let swapped = String::from_utf8(report.clone())
        .expect("utf8")
        .replace("HIGH", "NONE");
    std::fs::write(&path, swapped).expect("swap");
    let l = lookup(config(&reg), &image(&reg, ":v1")).await;
    let r = unverified(&l);
    assert!(r.contains("digest mismatch"), "{r}");
}

#[tokio::test]
async fn attach_then_lookup_on_both_registry_kinds() {
    for kind in [Kind::Distribution, Kind::Ferro] {
        let reg = Registry::start(kind);
        let digest = reg.push_image("v1", "six");
        let client = RegistryClient::new(config(&reg)).expect("client");
        let img = image(&reg, ":v1");
        let older = trivy_report("CVE-2024-0050", "2026-11-28T00:00:00Z");
        let mut req = AttachRequest::new(&img, &older);
        req.created = Some("2026-11-28T01:00:00Z".parse().expect("time"));
        let a1 = client.attach(&req).await.expect("attach");
        assert_eq!(a1.subject.digest, digest);
        assert_eq!(a1.referrers_api, kind == Kind::Ferro);
        let newer = trivy_report("CVE-2024-0051", "2026-11-28T03:00:00Z");
        let mut req = AttachRequest::new(&img, &newer);
        req.created = Some("2026-11-28T02:00:00Z".parse().expect("time"));
        let a2 = client.attach(&req).await.expect("attach");

        // Both count (worst case); the newer scan time names the report.
        let l = client.lookup(&img).await;
        assert_eq!(
            sorted_ids(&l),
            ["CVE-2024-0050", "CVE-2024-0051"],
            "{kind:?}"
        );
        assert_eq!(
            l.report.as_ref().expect("found").identity.digest.as_deref(),
            Some(a2.artifact.digest.as_str())
        );

        // oras sees both (interoperability of the pushed artifacts and tag index).
        let out = reg.tool(
            "oras",
            &[
                "discover",
                "--plain-http",
                "--format",
                "json",
                &format!("{}/app@{digest}", reg.host),
            ],
        );
        assert!(
            out.contains(&a1.artifact.digest) && out.contains(&a2.artifact.digest),
            "{kind:?}: {out}"
        );
    }
}

#[tokio::test]
async fn cold_lookup_latency_on_loopback() {
    // Informational: resolve + referrers + pull + verify (notation) + parse, fresh client each time.
    let reg = Registry::start(Kind::Ferro);
    let digest = reg.push_image("v1", "seven");
    let art = reg.oras_attach(
        &digest,
        REPORT_TYPE,
        &trivy_report("CVE-2024-0060", "2026-11-28T00:00:00Z"),
        None,
    );
    let crt = reg.notation_cert("vulngate-test");
    reg.notation_sign(&art);
    let cfg = with_policy(config(&reg), &[&crt], &[], None);
    let img = image(&reg, ":v1");
    let mut times = Vec::new();
    for _ in 0..30 {
        let client = RegistryClient::new(cfg.clone()).expect("client");
        let t = Instant::now();
        let l = client.lookup(&img).await;
        times.push(t.elapsed());
        assert!(l.report.is_ok());
    }
    times.sort();
    eprintln!(
        "cold lookup (debug build) p50 {:?} max {:?}",
        times[times.len() / 2],
        times[times.len() - 1]
    );
}
