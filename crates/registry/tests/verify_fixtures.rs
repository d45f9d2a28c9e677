//! The verifiers against real signatures captured from notation 1.3.2 and cosign 3.1.1
//! (tests/data/manifests, byte-exact).

use chrono::{DateTime, Utc};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use vulngate_registry::oci::digest_of;
use vulngate_registry::verify::{
    verify_cosign_bundle, verify_dsse, verify_notation_jws, verify_simple_signing, CosignKey,
    Target,
};

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/manifests/");

fn read(name: &str) -> Vec<u8> {
    std::fs::read(format!("{DIR}{name}")).unwrap_or_else(|e| panic!("{name}: {e}"))
}

const IMAGE: &str = "sha256:05d20e8740ef391bb7d5436d5dad4eb18cdf223eb520c7dec4cd151cd465ce00";
const REPORT: &str = "sha256:3efa2e2f56e3de1c365e8d7a9d47988bc4981555371dd1ff360962cfdc543d1f";
const AMD64: &str = "sha256:9dda3d9cb7a4b9396e324e078cb7ca960f6d33d08d3d380a25775355d7c59e0d";

fn key() -> Vec<CosignKey> {
    vec![CosignKey::from_pem(&read("cosign.pub"), "cosign.pub").expect("key")]
}

fn other_key() -> Vec<CosignKey> {
    // A P-256 SubjectPublicKeyInfo that is not the signing key (real second keys are generated
    // with cosign in tests/registries.rs).
    let pem = b"-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEQiVI+I+3gv+17KN0RFLHKh5Vj71v\nc75eSOkyMsxFxbFsTNEMTLjVuKFxOelIgsiZJXKZNCX0FBmrfpCkKklCcg==\n-----END PUBLIC KEY-----\n";
    vec![CosignKey::from_pem(pem, "other.pub").expect("other key")]
}

fn roots() -> Vec<CertificateDer<'static>> {
    CertificateDer::pem_slice_iter(&read("notation-vulngate-test.crt"))
        .collect::<Result<_, _>>()
        .expect("cert")
}

fn report_target() -> Target<'static> {
    Target {
        digest: REPORT,
        size: Some(733),
        media_type: Some("application/vnd.oci.image.manifest.v1+json"),
    }
}

fn now() -> DateTime<Utc> {
    // Within the test certificate's one-day validity: without a trusted timestamp the chain is
    // checked at the verification time.
    "2026-11-28T12:00:00Z".parse().expect("time")
}

#[test]
fn fixtures_are_byte_exact() {
    assert_eq!(digest_of(&read("image.manifest.json"), "sha256:"), IMAGE);
    assert_eq!(
        digest_of(&read("oras-report.manifest.json"), "sha256:"),
        REPORT
    );
    assert_eq!(
        digest_of(&read("image-amd64.manifest.json"), "sha256:"),
        AMD64
    );
}

#[test]
fn cosign_key_hint_matches_bundle() {
    assert_eq!(
        key()[0].hint,
        "qJWmuxo113vnj+0VxInSQlDE9PQb9OmS6hgXhC7mwoU="
    );
}

#[test]
fn cosign_attestation_bundle_verifies_for_the_image() {
    let st = verify_cosign_bundle(&read("cosign-attestation.bundle.json"), &key(), IMAGE)
        .expect("verifies");
    assert_eq!(
        st.predicate_type,
        "https://cosign.sigstore.dev/attestation/vuln/v1"
    );
    // What it carries parses as a cosign vuln report.
    let parsed = vulngate_core::findings::parse(&st.envelope_json).expect("parses");
    assert!(matches!(parsed, vulngate_core::findings::Parsed::Report(r) if r.findings.len() == 1));
}

#[test]
fn cosign_attestation_bundle_refused_for_another_digest_or_key() {
    let e = verify_cosign_bundle(&read("cosign-attestation.bundle.json"), &key(), AMD64)
        .expect_err("wrong subject");
    assert!(e.contains("not for"), "{e}");
    let e = verify_cosign_bundle(&read("cosign-attestation.bundle.json"), &other_key(), IMAGE)
        .expect_err("wrong key");
    assert!(e.contains("does not verify"), "{e}");
}

#[test]
fn cosign_bundle_with_tampered_payload_is_refused() {
    let mut v: serde_json::Value =
        serde_json::from_slice(&read("cosign-attestation.bundle.json")).expect("json");
    let p = v["dsseEnvelope"]["payload"]
        .as_str()
        .expect("payload")
        .to_string();
    // Flip one base64 character inside the payload.
    let mut b = p.into_bytes();
    b[40] = if b[40] == b'A' { b'B' } else { b'A' };
    v["dsseEnvelope"]["payload"] = serde_json::Value::String(String::from_utf8(b).expect("utf8"));
    let e = verify_cosign_bundle(&serde_json::to_vec(&v).expect("json"), &key(), IMAGE)
        .expect_err("tampered");
    assert!(
        e.contains("does not verify") || e.contains("statement"),
        "{e}"
    );
}

#[test]
fn cosign_signature_bundle_verifies_for_the_report() {
    let st = verify_cosign_bundle(&read("cosign-signature.bundle.json"), &key(), REPORT)
        .expect("verifies");
    assert_eq!(st.predicate_type, "https://sigstore.dev/cosign/sign/v1");
    assert!(verify_cosign_bundle(&read("cosign-signature.bundle.json"), &key(), IMAGE).is_err());
}

#[test]
fn cosign_legacy_dsse_and_simplesigning() {
    let st = verify_dsse(
        &read("cosign-legacy-attestation.dsse.json"),
        &key(),
        None,
        AMD64,
    )
    .expect("legacy att");
    assert_eq!(
        st.predicate_type,
        "https://cosign.sigstore.dev/attestation/vuln/v1"
    );
    let m: serde_json::Value =
        serde_json::from_slice(&read("cosign-legacy-signature.manifest.json")).expect("json");
    let sig = m["layers"][0]["annotations"]["dev.cosignproject.cosign/signature"]
        .as_str()
        .expect("sig");
    let payload = read("cosign-legacy-signature.simplesigning.json");
    verify_simple_signing(&payload, sig, &key(), AMD64).expect("legacy sig");
    let e = verify_simple_signing(&payload, sig, &key(), IMAGE).expect_err("other digest");
    assert!(e.contains("not for"), "{e}");
    assert!(verify_simple_signing(&payload, sig, &other_key(), AMD64).is_err());
}

#[test]
fn notation_jws_verifies_at_verification_time() {
    let env = read("notation-signature.envelope.jws.json");
    let v = verify_notation_jws(&env, &roots(), &report_target(), now()).expect("verifies");
    assert_eq!(v.signing_time.to_rfc3339(), "2026-11-28T03:02:00+00:00");
    // A year later the certificate has expired: its signingTime (inside the validity) is the
    // signer's own claim, not a trusted timestamp, and does not save it.
    let later = "2027-11-28T00:00:00Z".parse().expect("time");
    let e = verify_notation_jws(&env, &roots(), &report_target(), later).expect_err("expired");
    assert!(
        e.contains("verification time") && e.contains("CertExpired"),
        "{e}"
    );
}

#[test]
fn notation_jws_refusals() {
    let env = read("notation-signature.envelope.jws.json");
    // Another artifact.
    let other = Target {
        digest: IMAGE,
        ..report_target()
    };
    let e = verify_notation_jws(&env, &roots(), &other, now()).expect_err("other digest");
    assert!(e.contains("signature is for sha256:3efa"), "{e}");
    // Wrong size.
    let e = verify_notation_jws(
        &env,
        &roots(),
        &Target {
            size: Some(734),
            ..report_target()
        },
        now(),
    )
    .expect_err("size");
    assert!(e.contains("size"), "{e}");
    // Untrusted: no roots / a root that did not issue it.
    let e = verify_notation_jws(&env, &[], &report_target(), now()).expect_err("no roots");
    assert!(e.contains("no trusted root"), "{e}");
    let webpki_root = CertificateDer::from_pem_slice(OTHER_CA.as_bytes()).expect("pem");
    let e =
        verify_notation_jws(&env, &[webpki_root], &report_target(), now()).expect_err("untrusted");
    assert!(e.contains("not trusted"), "{e}");
    // Tampered payload.
    let mut v: serde_json::Value = serde_json::from_slice(&env).expect("json");
    let p = v["payload"].as_str().expect("payload").replace('M', "N");
    v["payload"] = serde_json::Value::String(p);
    let e = verify_notation_jws(
        &serde_json::to_vec(&v).expect("json"),
        &roots(),
        &report_target(),
        now(),
    )
    .expect_err("tampered");
    assert!(e.contains("does not verify"), "{e}");
}

/// A self-signed CA unrelated to the notation test certificate (ISRG Root X1).
const OTHER_CA: &str = "-----BEGIN CERTIFICATE-----
MIIFazCCA1OgAwIBAgIRAIIQz7DSQONZRGPgu2OCiwAwDQYJKoZIhvcNAQELBQAw
TzELMAkGA1UEBhMCVVMxKTAnBgNVBAoTIEludGVybmV0IFNlY3VyaXR5IFJlc2Vh
cmNoIEdyb3VwMRUwEwYDVQQDEwxJU1JHIFJvb3QgWDEwHhcNMTUwNjA0MTEwNDM4
WhcNMzUwNjA0MTEwNDM4WjBPMQswCQYDVQQGEwJVUzEpMCcGA1UEChMgSW50ZXJu
ZXQgU2VjdXJpdHkgUmVzZWFyY2ggR3JvdXAxFTATBgNVBAMTDElTUkcgUm9vdCBY
MTCCAiIwDQYJKoZIhvcNAQEBBQADggIPADCCAgoCggIBAK3oJHP0FDfzm54rVygc
h77ct984kIxuPOZXoHj3dcKi/vVqbvYATyjb3miGbESTtrFj/RQSa78f0uoxmyF+
0TM8ukj13Xnfs7j/EvEhmkvBioZxaUpmZmyPfjxwv60pIgbz5MDmgK7iS4+3mX6U
A5/TR5d8mUgjU+g4rk8Kb4Mu0UlXjIB0ttov0DiNewNwIRt18jA8+o+u3dpjq+sW
T8KOEUt+zwvo/7V3LvSye0rgTBIlDHCNAymg4VMk7BPZ7hm/ELNKjD+Jo2FR3qyH
B5T0Y3HsLuJvW5iB4YlcNHlsdu87kGJ55tukmi8mxdAQ4Q7e2RCOFvu396j3x+UC
B5iPNgiV5+I3lg02dZ77DnKxHZu8A/lJBdiB3QW0KtZB6awBdpUKD9jf1b0SHzUv
KBds0pjBqAlkd25HN7rOrFleaJ1/ctaJxQZBKT5ZPt0m9STJEadao0xAH0ahmbWn
OlFuhjuefXKnEgV4We0+UXgVCwOPjdAvBbI+e0ocS3MFEvzG6uBQE3xDk3SzynTn
jh8BCNAw1FtxNrQHusEwMFxIt4I7mKZ9YIqioymCzLq9gwQbooMDQaHWBfEbwrbw
qHyGO0aoSCqI3Haadr8faqU9GY/rOPNk3sgrDQoo//fb4hVC1CLQJ13hef4Y53CI
rU7m2Ys6xt0nUW7/vGT1M0NPAgMBAAGjQjBAMA4GA1UdDwEB/wQEAwIBBjAPBgNV
HRMBAf8EBTADAQH/MB0GA1UdDgQWBBR5tFnme7bl5AFzgAiIyBpY9umbbjANBgkq
hkiG9w0BAQsFAAOCAgEAVR9YqbyyqFDQDLHYGmkgJykIrGF1XIpu+ILlaS/V9lZL
ubhzEFnTIZd+50xx+7LSYK05qAvqFyFWhfFQDlnrzuBZ6brJFe+GnY+EgPbk6ZGQ
3BebYhtF8GaV0nxvwuo77x/Py9auJ/GpsMiu/X1+mvoiBOv/2X/qkSsisRcOj/KK
NFtY2PwByVS5uCbMiogziUwthDyC3+6WVwW6LLv3xLfHTjuCvjHIInNzktHCgKQ5
ORAzI4JMPJ+GslWYHb4phowim57iaztXOoJwTdwJx4nLCgdNbOhdjsnvzqvHu7Ur
TkXWStAmzOVyyghqpZXjFaH3pO3JLF+l+/+sKAIuvtd7u+Nxe5AW0wdeRlN8NwdC
jNPElpzVmbUq4JUagEiuTDkHzsxHpFKVK7q4+63SM1N95R1NbdWhscdCb+ZAJzVc
oyi3B43njTOQ5yOf+1CceWxG1bQVs5ZufpsMljq4Ui0/1lvh+wjChP4kqKOJ2qxq
4RgqsahDYVvTH9w7jXbyLeiNdd8XM2w9U/t7y0Ff/9yi0GE44Za4rF2LN9d11TPA
mRGunUHBcnWEvgJBQl9nJEiU0Zsnvgc/ubhPgXRR4Xq37Z0j4r7g1SgEEzwxA57d
emyPxgcYxn/eR44/KJ4EBs+lVDR3veyJm+kXQ99b21/+jh5Xos1AnX5iItreGCc=
-----END CERTIFICATE-----
";
