//! Attacks by someone who can push to the registry but holds no signing key (issue 24, and
//! issue 17 item 9), against a real docker-registry (referrers tag schema) with reports attached
//! by oras and signed by the real notation and cosign: rollback to an older clean report,
//! hiding reports or signatures behind caps, back-dated Notation signatures, certificates that
//! chain to the root but are not trusted identities, and unsigned clean reports.

mod support;

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use support::{trivy_report, Kind, Registry};
use vulngate_core::{ImageRef, UnscannedReason};
use vulngate_registry::config::{CosignTrust, NotationTrust};
use vulngate_registry::{Lookup, RegistryClient, RegistryConfig, TrustPolicy};

const REPORT_TYPE: &str = "application/vnd.vulngate.report+json";

fn config(reg: &Registry) -> RegistryConfig {
    RegistryConfig {
        insecure_registries: vec![reg.host.clone()],
        ..RegistryConfig::default()
    }
}

fn notation_policy(reg: &Registry, root: &Path, identities: &[&str]) -> RegistryConfig {
    let mut cfg = config(reg);
    cfg.trust_policies.push(TrustPolicy {
        scope: "*".into(),
        require: None,
        notation: Some(NotationTrust {
            trust_store: vec![root.to_path_buf()],
            trusted_identities: identities.iter().map(|s| s.to_string()).collect(),
        }),
        cosign: None,
    });
    cfg
}

fn cosign_policy(reg: &Registry, key: &Path) -> RegistryConfig {
    let mut cfg = config(reg);
    cfg.trust_policies.push(TrustPolicy {
        scope: "*".into(),
        require: None,
        notation: None,
        cosign: Some(CosignTrust {
            public_keys: vec![key.to_path_buf()],
            keyless: None,
        }),
    });
    cfg
}

fn image(reg: &Registry, digest: &str) -> ImageRef {
    ImageRef::parse(&format!("{}/app@{digest}", reg.host)).expect("reference")
}

async fn lookup(cfg: RegistryConfig, img: &ImageRef) -> Lookup {
    RegistryClient::new(cfg).expect("client").lookup(img).await
}

fn ids(l: &Lookup) -> Vec<String> {
    match &l.report {
        Ok(f) => {
            let mut v: Vec<String> = f.report.findings.iter().map(|f| f.id.clone()).collect();
            v.sort();
            v
        }
        Err(r) => panic!("expected a report, got: {r}\nwarnings: {:?}", l.warnings),
    }
}

/// A Trivy report without findings (`created`: its scan time inside the payload, if any).
fn clean_report(created: Option<&str>) -> Vec<u8> {
    let at = created
        .map(|c| format!(r#""CreatedAt":"{c}","#))
        .unwrap_or_default();
    format!(
        r#"{{"SchemaVersion":2,{at}"ArtifactName":"app","ArtifactType":"container_image","Results":[{{"Target":"app","Vulnerabilities":[]}}]}}"#
    )
    .into_bytes()
}

fn days_ago(d: i64) -> String {
    (chrono::Utc::now() - chrono::Duration::days(d))
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// Rewrites the referrers tag schema index of `subject` (`sha256-<hex>`) as an attacker with
/// push access can: keeps only the entries `keep` accepts.
fn rewrite_tag_index(reg: &Registry, subject: &str, keep: impl Fn(&serde_json::Value) -> bool) {
    let tag = format!("{}/app:{}", reg.host, subject.replacen(':', "-", 1));
    let raw = reg.tool("oras", &["manifest", "fetch", "--plain-http", &tag]);
    let mut idx: serde_json::Value = serde_json::from_str(&raw).expect("index");
    let kept: Vec<serde_json::Value> = idx["manifests"]
        .as_array()
        .expect("manifests")
        .iter()
        .filter(|d| keep(d))
        .cloned()
        .collect();
    idx["manifests"] = serde_json::Value::Array(kept);
    let f = reg.work().join("index.json");
    std::fs::write(&f, serde_json::to_vec(&idx).expect("json")).expect("write");
    reg.tool(
        "oras",
        &[
            "manifest",
            "push",
            "--plain-http",
            "--media-type",
            "application/vnd.oci.image.index.v1+json",
            &tag,
            "index.json",
        ],
    );
}

// -------------------------------------------------------------------------------------------------
// 1. Rollback

/// An older signed clean report re-dated 2099 in the unsigned index annotation must not outvote
/// the newer signed vulnerable one (the old code took the newest by annotation and stopped).
#[tokio::test]
async fn rollback_by_index_created_annotation_is_refused() {
    // Tag schema (docker-registry) and referrers API (ferro-oci-server).
    for kind in [Kind::Distribution, Kind::Ferro] {
        let reg = Registry::start(kind);
        let crt = reg.notation_cert("vulngate-test");
        let digest = reg.push_image("v1", "rollback");
        let old = reg.oras_attach(
            &digest,
            REPORT_TYPE,
            &clean_report(Some(&days_ago(3))),
            Some("2099-01-01T00:00:00Z"),
        );
        reg.notation_sign(&old);
        let new = reg.oras_attach(
            &digest,
            REPORT_TYPE,
            &trivy_report("CVE-2024-1001", &days_ago(1)),
            Some(&days_ago(1)),
        );
        reg.notation_sign(&new);
        let l = lookup(notation_policy(&reg, &crt, &[]), &image(&reg, &digest)).await;
        assert_eq!(ids(&l), ["CVE-2024-1001"]);
        let f = l.report.as_ref().expect("found");
        assert!(f.identity.verified);
        // Named by the signed scan time, never by the annotation.
        assert_eq!(f.identity.digest.as_deref(), Some(new.as_str()));
        assert!(f.identity.created.expect("scan time") < chrono::Utc::now());
        assert_eq!(f.reports.len(), 2);
    }
}

/// The newer vulnerable report dropped from the index: only the older clean one is left. Its
/// freshness comes from inside the signed payload; a report without a scan time there has none
/// (so `maxReportAge` treats it as unscanned), never the 2099 of the index annotation.
#[tokio::test]
async fn dropped_newer_report_leaves_only_the_signed_scan_time() {
    let reg = Registry::start(Kind::Distribution);
    let crt = reg.notation_cert("vulngate-test");
    let digest = reg.push_image("v1", "dropped");
    let old = reg.oras_attach(
        &digest,
        REPORT_TYPE,
        &clean_report(None),
        Some("2099-01-01T00:00:00Z"),
    );
    reg.notation_sign(&old);
    let new = reg.oras_attach(
        &digest,
        REPORT_TYPE,
        &trivy_report("CVE-2024-1002", &days_ago(1)),
        Some(&days_ago(1)),
    );
    reg.notation_sign(&new);
    let cfg = notation_policy(&reg, &crt, &[]);
    assert_eq!(
        ids(&lookup(cfg.clone(), &image(&reg, &digest)).await),
        ["CVE-2024-1002"]
    );

    rewrite_tag_index(&reg, &digest, |d| d["digest"] != new.as_str());
    let l = lookup(cfg, &image(&reg, &digest)).await;
    assert!(ids(&l).is_empty());
    let f = l.report.as_ref().expect("found");
    assert!(f.identity.verified);
    assert_eq!(f.identity.created, None, "the unsigned annotation counted");
}

/// Only the signature of the newer vulnerable report dropped: it fails verification, and its
/// findings still count (worst case) instead of a silent fallback to the older clean report.
#[tokio::test]
async fn dropped_signature_of_the_newer_report_never_falls_back() {
    let reg = Registry::start(Kind::Distribution);
    let crt = reg.notation_cert("vulngate-test");
    let digest = reg.push_image("v1", "unsigned-newer");
    let old = reg.oras_attach(
        &digest,
        REPORT_TYPE,
        &clean_report(Some(&days_ago(3))),
        Some(&days_ago(3)),
    );
    reg.notation_sign(&old);
    let new = reg.oras_attach(
        &digest,
        REPORT_TYPE,
        &trivy_report("CVE-2024-1003", &days_ago(1)),
        Some(&days_ago(1)),
    );
    reg.notation_sign(&new);
    rewrite_tag_index(&reg, &new, |_| false);
    let l = lookup(notation_policy(&reg, &crt, &[]), &image(&reg, &digest)).await;
    assert_eq!(ids(&l), ["CVE-2024-1003"]);
    let f = l.report.as_ref().expect("found");
    // The verified report names the result; the unverified one adds findings only.
    assert_eq!(f.identity.digest.as_deref(), Some(old.as_str()));
    assert!(
        l.warnings
            .iter()
            .any(|w| w.contains(&new) && w.contains("not trusted") && w.contains("still count")),
        "{:?}",
        l.warnings
    );
}

// -------------------------------------------------------------------------------------------------
// 2. Caps that fail open

/// 16 junk referrers attached to the report before its signature: the old code looked at the
/// first 16 referrers of any type and never saw the signature.
#[tokio::test]
async fn junk_referrers_do_not_hide_the_signature() {
    let reg = Registry::start(Kind::Distribution);
    let crt = reg.notation_cert("vulngate-test");
    let digest = reg.push_image("v1", "junk");
    let art = reg.oras_attach(
        &digest,
        REPORT_TYPE,
        &trivy_report("CVE-2024-2001", &days_ago(1)),
        None,
    );
    for i in 0..16 {
        reg.oras_attach(
            &art,
            "application/vnd.example.junk",
            format!("junk {i}").as_bytes(),
            None,
        );
    }
    reg.notation_sign(&art);
    let l = lookup(notation_policy(&reg, &crt, &[]), &image(&reg, &digest)).await;
    assert_eq!(ids(&l), ["CVE-2024-2001"]);
    assert!(l.report.as_ref().expect("found").identity.verified);

    // More signature candidates than limits.maxSignatures: the failure policy decides (the
    // server maps RegistryUnavailable to it), with the knob named.
    let mut cfg = notation_policy(&reg, &crt, &[]);
    cfg.limits.max_signatures = 1;
    reg.notation_sign(&art);
    match lookup(cfg, &image(&reg, &digest)).await.report {
        Err(UnscannedReason::RegistryUnavailable(m)) => {
            assert!(m.contains("limits.maxSignatures (1)"), "{m}")
        }
        other => panic!("expected the cap to reach the failure policy, got {other:?}"),
    }
}

/// The same on the referrers API (ferro-oci-server).
#[tokio::test]
async fn junk_referrers_do_not_hide_the_signature_on_the_referrers_api() {
    let reg = Registry::start(Kind::Ferro);
    let crt = reg.notation_cert("vulngate-test");
    let digest = reg.push_image("v1", "junk");
    let art = reg.oras_attach(
        &digest,
        REPORT_TYPE,
        &trivy_report("CVE-2024-2001", &days_ago(1)),
        None,
    );
    for i in 0..16 {
        reg.oras_attach(
            &art,
            "application/vnd.example.junk",
            format!("junk {i}").as_bytes(),
            None,
        );
    }
    reg.notation_sign(&art);
    let l = lookup(notation_policy(&reg, &crt, &[]), &image(&reg, &digest)).await;
    assert_eq!(ids(&l), ["CVE-2024-2001"]);
    assert!(l.report.as_ref().expect("found").identity.verified);
}

/// 32 unsigned reports dated 2099 pushed after the signed vulnerable one: the old code checked
/// only the 32 newest candidates (by annotation) and never reached the signed one.
#[tokio::test]
async fn unsigned_2099_reports_do_not_hide_the_signed_one() {
    let reg = Registry::start(Kind::Distribution);
    let (key, public) = reg.cosign_keys("good");
    let digest = reg.push_image("v1", "flood");
    let art = reg.oras_attach(
        &digest,
        REPORT_TYPE,
        &trivy_report("CVE-2024-2002", &days_ago(1)),
        Some(&days_ago(1)),
    );
    reg.cosign_sign(&key, &art);
    for i in 0..32 {
        reg.oras_attach(
            &digest,
            REPORT_TYPE,
            &clean_report(Some(&format!("2099-01-01T00:00:{i:02}Z"))),
            Some("2099-01-01T00:00:00Z"),
        );
    }
    let cfg = cosign_policy(&reg, &public);
    let l = lookup(cfg.clone(), &image(&reg, &digest)).await;
    assert_eq!(ids(&l), ["CVE-2024-2002"]);
    let f = l.report.as_ref().expect("found");
    assert!(f.identity.verified);
    assert_eq!(f.identity.digest.as_deref(), Some(art.as_str()));

    // A cap that would drop candidates: the failure policy decides, never a partial answer.
    let mut cfg = cfg;
    cfg.limits.max_findings_artifacts = 8;
    match lookup(cfg.clone(), &image(&reg, &digest)).await.report {
        Err(UnscannedReason::RegistryUnavailable(m)) => assert!(
            m.contains("33 findings artifacts") && m.contains("limits.maxFindingsArtifacts (8)"),
            "{m}"
        ),
        other => panic!("expected the cap to reach the failure policy, got {other:?}"),
    }
    cfg.limits.max_findings_artifacts = 64;
    cfg.limits.max_referrers = 10;
    match lookup(cfg, &image(&reg, &digest)).await.report {
        Err(UnscannedReason::RegistryUnavailable(m)) => {
            assert!(m.contains("limits.maxReferrers (10)"), "{m}")
        }
        other => panic!("expected the cap to reach the failure policy, got {other:?}"),
    }
}

// -------------------------------------------------------------------------------------------------
// 5. No trust policy (issue 17 item 9)

/// With `registry: {}` (no trust material), a newer clean unsigned report attached to a
/// vulnerable image must not turn deny into allow: the worst case over all reports counts, and
/// every unsigned report is a warning.
#[tokio::test]
async fn unsigned_newer_clean_report_cannot_clear_an_image() {
    let reg = Registry::start(Kind::Distribution);
    let digest = reg.push_image("v1", "no-policy");
    reg.oras_attach(
        &digest,
        REPORT_TYPE,
        &trivy_report("CVE-2024-5001", &days_ago(2)),
        Some(&days_ago(2)),
    );
    let clean = reg.oras_attach(
        &digest,
        REPORT_TYPE,
        &clean_report(Some(&days_ago(0))),
        Some(&days_ago(0)),
    );
    let l = lookup(config(&reg), &image(&reg, &digest)).await;
    assert_eq!(ids(&l), ["CVE-2024-5001"]);
    let f = l.report.as_ref().expect("found");
    assert!(!f.identity.verified);
    assert_eq!(f.identity.digest.as_deref(), Some(clean.as_str()));
    assert!(
        l.warnings.iter().any(|w| w.contains("accepted unsigned")),
        "{:?}",
        l.warnings
    );
    assert!(
        l.warnings.iter().any(|w| w.contains("(unsigned) merged")),
        "{:?}",
        l.warnings
    );
}

// -------------------------------------------------------------------------------------------------
// 3 and 4. Notation certificates: validity at verification time, trusted identities

struct Pki {
    root: PathBuf,
    issuer: CertifiedIssuer<'static, KeyPair>,
    dir: PathBuf,
}

impl Pki {
    fn new(dir: &Path) -> Pki {
        let mut p = CertificateParams::new(Vec::<String>::new()).expect("params");
        p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        p.distinguished_name.push(DnType::CountryName, "US");
        p.distinguished_name.push(DnType::StateOrProvinceName, "WA");
        p.distinguished_name
            .push(DnType::OrganizationName, "vulngate-test-ca");
        p.distinguished_name
            .push(DnType::CommonName, "vulngate test root");
        p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        p.not_before = (SystemTime::now() - Duration::from_secs(86_400)).into();
        p.not_after = (SystemTime::now() + Duration::from_secs(86_400 * 30)).into();
        let issuer =
            CertifiedIssuer::self_signed(p, KeyPair::generate().expect("key")).expect("root");
        let root = dir.join("root.pem");
        std::fs::write(&root, issuer.pem()).expect("write");
        Pki {
            root,
            issuer,
            dir: dir.to_path_buf(),
        }
    }

    /// A code-signing leaf for `org`, valid until `not_after`; returns (key, chain) files.
    fn leaf(&self, name: &str, org: &str, not_after: SystemTime) -> (PathBuf, PathBuf) {
        let mut p = CertificateParams::new(Vec::<String>::new()).expect("params");
        p.distinguished_name.push(DnType::CountryName, "US");
        p.distinguished_name.push(DnType::StateOrProvinceName, "WA");
        p.distinguished_name.push(DnType::OrganizationName, org);
        p.distinguished_name.push(DnType::CommonName, name);
        p.is_ca = IsCa::ExplicitNoCa;
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::CodeSigning];
        p.not_before = (SystemTime::now() - Duration::from_secs(86_400)).into();
        p.not_after = not_after.into();
        let key = KeyPair::generate().expect("key");
        let cert = p.signed_by(&key, &self.issuer).expect("leaf");
        let k = self.dir.join(format!("{name}.key"));
        let c = self.dir.join(format!("{name}.crt"));
        std::fs::write(&k, key.serialize_pem()).expect("write");
        std::fs::write(&c, format!("{}{}", cert.pem(), self.issuer.pem())).expect("write");
        (k, c)
    }
}

/// Signs `digest` with notation using a key and certificate chain from files (notation's
/// `signingkeys.json`, as `notation key add` would write it for a local key).
fn notation_sign_with(reg: &Registry, name: &str, key: &Path, chain: &Path, digest: &str) {
    let d = reg.scratch().join("xdg/notation");
    std::fs::create_dir_all(&d).expect("mkdir");
    let keys = serde_json::json!({
        "default": name,
        "keys": [{ "name": name, "keyPath": key, "certPath": chain }],
    });
    std::fs::write(d.join("signingkeys.json"), keys.to_string()).expect("write");
    let r = format!("{}/app@{digest}", reg.host);
    reg.tool(
        "notation",
        &["sign", "--insecure-registry", "--key", name, &r],
    );
}

/// A signature made while the certificate was valid, checked after it expired, without a
/// trusted timestamp: refused (its signingTime lies inside the validity, which proves nothing).
/// The old code checked the chain at signingTime and accepted it.
#[tokio::test]
async fn back_dated_notation_signature_from_an_expired_certificate_is_refused() {
    let reg = Registry::start(Kind::Distribution);
    let pki = Pki::new(reg.scratch());
    let expires = SystemTime::now() + Duration::from_secs(4);
    let (key, chain) = pki.leaf("short-lived", "acme", expires);
    let digest = reg.push_image("v1", "expired");
    let art = reg.oras_attach(
        &digest,
        REPORT_TYPE,
        &trivy_report("CVE-2024-3001", &days_ago(1)),
        None,
    );
    notation_sign_with(&reg, "short-lived", &key, &chain, &art);
    // Wait until the certificate has expired (ordering only, no timing assertion).
    while SystemTime::now() <= expires + Duration::from_secs(1) {
        std::thread::sleep(Duration::from_millis(200));
    }
    let l = lookup(notation_policy(&reg, &pki.root, &[]), &image(&reg, &digest)).await;
    match &l.report {
        Err(UnscannedReason::Unverified(m)) => {
            assert!(
                m.contains("verification time") && m.contains("Expired"),
                "{m}"
            )
        }
        other => panic!("expected Unverified, got {other:?}"),
    }

    // A valid certificate of the same CA verifies (the refusal is the expiry, nothing else).
    let (key, chain) = pki.leaf(
        "long-lived",
        "acme",
        SystemTime::now() + Duration::from_secs(86_400),
    );
    notation_sign_with(&reg, "long-lived", &key, &chain, &art);
    let l = lookup(notation_policy(&reg, &pki.root, &[]), &image(&reg, &digest)).await;
    assert_eq!(ids(&l), ["CVE-2024-3001"]);
}

/// A certificate that chains to the trusted root but is not a trusted identity of the scope is
/// refused; the same root with the signer's subject listed (or `*`) accepts it.
#[tokio::test]
async fn notation_trusted_identities_restrict_signers_under_the_root() {
    let reg = Registry::start(Kind::Distribution);
    let pki = Pki::new(reg.scratch());
    let day = SystemTime::now() + Duration::from_secs(86_400);
    let (key, chain) = pki.leaf("intruder", "other-team", day);
    let digest = reg.push_image("v1", "identities");
    let art = reg.oras_attach(
        &digest,
        REPORT_TYPE,
        &clean_report(Some(&days_ago(1))),
        None,
    );
    notation_sign_with(&reg, "intruder", &key, &chain, &art);
    let only_acme = ["x509.subject: C=US, ST=WA, O=acme"];
    let l = lookup(
        notation_policy(&reg, &pki.root, &only_acme),
        &image(&reg, &digest),
    )
    .await;
    match &l.report {
        Err(UnscannedReason::Unverified(m)) => {
            assert!(m.contains("not a trusted identity"), "{m}")
        }
        other => panic!("expected Unverified, got {other:?}"),
    }
    let l = lookup(
        notation_policy(&reg, &pki.root, &["*"]),
        &image(&reg, &digest),
    )
    .await;
    assert!(l.report.as_ref().expect("found").identity.verified);

    let (key, chain) = pki.leaf("scanner", "acme", day);
    notation_sign_with(&reg, "scanner", &key, &chain, &art);
    let l = lookup(
        notation_policy(&reg, &pki.root, &only_acme),
        &image(&reg, &digest),
    )
    .await;
    assert!(l.report.as_ref().expect("found").identity.verified);

    // Invalid identities are configuration errors.
    for (bad, expect) in [
        ("x509.subject: C=US, O=acme", "lacks ST"),
        ("C=US, ST=WA, O=acme", "expected"),
        (
            "x509.subject: C=US, ST=WA, O=acme, XX=1",
            "unknown attribute type",
        ),
    ] {
        let e = RegistryClient::new(notation_policy(&reg, &pki.root, &[bad]))
            .expect_err(bad)
            .to_string();
        assert!(e.contains(expect), "{bad}: {e}");
    }
}
