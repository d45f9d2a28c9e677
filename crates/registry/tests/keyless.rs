//! cosign keyless verification, offline, on real Sigstore material: bundles signed by the
//! public-good instance (Fulcio + Rekor) from the sigstore-conformance suite, checked against the
//! public-good `trusted_root.json` (see tests/data/keyless/NOTICE). Each refusal is matched on the
//! kind of check that failed.

mod support;

use std::path::PathBuf;

use base64::Engine as _;
use chrono::{DateTime, Utc};
use serde_json::Value;
use sha2::{Digest as _, Sha256};
use support::{trivy_report, Kind, Registry};
use vulngate_core::{ImageRef, UnscannedReason};
use vulngate_registry::config::{CosignTrust, KeylessIdentity, KeylessTrust};
use vulngate_registry::keyless::{
    verify_keyless_bundle, Content, Identity, KeylessError, KeylessPolicy, TrustedRoot,
};
use vulngate_registry::verify::{verify_cosign_bundle, verify_cosign_bundle_with};
use vulngate_registry::{RegistryClient, RegistryConfig, TrustPolicy};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;
const GITHUB: &str = "https://token.actions.githubusercontent.com";
const BEACON: &str = "https://github.com/sigstore-conformance/extremely-dangerous-public-oidc-beacon/.github/workflows/extremely-dangerous-oidc-beacon.yml@refs/heads/main";
/// The DSSE bundle: in-toto statement over a.txt, Rekor dsse 0.0.1 entry, bundle v0.3.
const DSSE: &str = "happy-path-intoto-in-dsse-v3";

fn path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/keyless")
        .join(name)
}

fn read(name: &str) -> Vec<u8> {
    std::fs::read(path(name)).expect("fixture")
}

fn bundle(name: &str) -> Vec<u8> {
    read(&format!("{name}.sigstore.json"))
}

fn json(name: &str) -> Value {
    serde_json::from_slice(&bundle(name)).expect("json")
}

fn root(name: &str) -> TrustedRoot {
    TrustedRoot::load(&path(name)).expect("trusted root")
}

fn public_good() -> TrustedRoot {
    root("trusted_root.public-good.json")
}

fn policy(root: TrustedRoot, issuer: &str, subject: &str) -> KeylessPolicy {
    KeylessPolicy {
        root,
        identities: vec![Identity::new(Some(issuer), None, Some(subject), None).expect("identity")],
    }
}

fn beacon() -> KeylessPolicy {
    policy(public_good(), GITHUB, BEACON)
}

fn a_txt() -> Vec<u8> {
    read("a.txt")
}

fn a_digest() -> String {
    format!("sha256:{:x}", Sha256::digest(a_txt()))
}

fn now() -> DateTime<Utc> {
    Utc::now()
}

fn verify_dsse(b: &[u8], p: &KeylessPolicy) -> Result<String, KeylessError> {
    let target = a_digest();
    verify_keyless_bundle(b, p, Content::StatementSubject(&target), now()).map(|v| v.describe())
}

fn verify_blob(b: &[u8], p: &KeylessPolicy) -> Result<String, KeylessError> {
    verify_keyless_bundle(b, p, Content::Artifact(&a_txt()), now()).map(|v| v.describe())
}

fn to_vec(v: &Value) -> Vec<u8> {
    serde_json::to_vec(v).expect("json")
}

/// Flips the last bit of a base64 string's decoded bytes.
fn flip(b64: &str) -> String {
    let mut raw = B64.decode(b64).expect("base64");
    let last = raw.len() - 1;
    raw[last] ^= 1;
    B64.encode(raw)
}

fn entry(v: &mut Value) -> &mut Value {
    &mut v["verificationMaterial"]["tlogEntries"][0]
}

// -------------------------------------------------------------------------------------------------
// Accepted

#[test]
fn public_good_dsse_bundle_verifies_with_its_identity() {
    let target = a_digest();
    let v = verify_keyless_bundle(
        &bundle(DSSE),
        &beacon(),
        Content::StatementSubject(&target),
        now(),
    )
    .expect("verifies");
    assert_eq!(v.identity.issuer, GITHUB);
    assert_eq!(v.subject, BEACON);
    assert_eq!(v.entries.len(), 1);
    assert_eq!(v.entries[0].log_index, 155_690_850);
    assert_eq!(v.entries[0].integrated_time.timestamp(), 1_734_374_576);
    assert!(
        v.entries[0].inclusion_proof,
        "inclusion proof and checkpoint checked"
    );
    let st = v.statement.expect("statement");
    assert_eq!(st.predicate_type, "https://slsa.dev/provenance/v1");
    assert!(st.subjects.contains(&target));
    assert!(
        st.key.contains(BEACON) && st.key.contains("155690850"),
        "{}",
        st.key
    );
}

#[test]
fn public_good_message_signature_bundles_v01_to_v03_verify() {
    for name in ["happy-path-v0.1", "happy-path-v0.2", "happy-path-v0.3"] {
        verify_blob(&bundle(name), &beacon()).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}

#[test]
fn subject_and_issuer_patterns_must_match_the_whole_value() {
    let id = |issuer: Option<&str>, ire: Option<&str>, s: Option<&str>, sre: Option<&str>| {
        KeylessPolicy {
            root: public_good(),
            identities: vec![Identity::new(issuer, ire, s, sre).expect("identity")],
        }
    };
    let ok = id(
        None,
        Some(r"https://token\.actions\.githubusercontent\.com"),
        None,
        Some(r"https://github\.com/sigstore-conformance/.*@refs/heads/main"),
    );
    verify_dsse(&bundle(DSSE), &ok).expect("pattern matches");
    // A pattern that matches only a part of the subject does not match.
    let partial = id(
        Some(GITHUB),
        None,
        None,
        Some("https://github.com/sigstore-conformance"),
    );
    assert!(matches!(
        verify_dsse(&bundle(DSSE), &partial),
        Err(KeylessError::Identity(_))
    ));
    // Several identities: one matching is enough.
    let mut two = policy(public_good(), GITHUB, "https://github.com/other/repo");
    two.identities
        .push(Identity::new(Some(GITHUB), None, Some(BEACON), None).expect("identity"));
    verify_dsse(&bundle(DSSE), &two).expect("second identity matches");
}

#[test]
fn custom_trust_root_with_intoto_entry_verifies() {
    // Conformance material of a test instance (its own Fulcio and Rekor keys), Rekor intoto 0.0.2.
    let p = policy(root("trusted_root.mock.json"), GITHUB, BEACON);
    let d = read("d.txt");
    verify_keyless_bundle(
        &bundle("intoto-with-custom-trust-root"),
        &p,
        Content::Artifact(&d),
        now(),
    )
    .expect("verifies");
}

// -------------------------------------------------------------------------------------------------
// Identity

#[test]
fn wrong_issuer_or_subject_is_refused() {
    let wrong_issuer = policy(public_good(), "https://accounts.google.com", BEACON);
    let e = verify_dsse(&bundle(DSSE), &wrong_issuer).expect_err("refused");
    assert!(matches!(e, KeylessError::Identity(_)), "{e}");
    assert!(
        e.to_string().contains(GITHUB),
        "names the certificate's issuer: {e}"
    );

    let wrong_subject = policy(
        public_good(),
        GITHUB,
        "https://github.com/sigstore-conformance/extremely-dangerous-public-oidc-beacon/.github/workflows/other.yml@refs/heads/main",
    );
    let e = verify_dsse(&bundle(DSSE), &wrong_subject).expect_err("refused");
    assert!(matches!(e, KeylessError::Identity(_)), "{e}");
    assert!(
        e.to_string().contains(BEACON),
        "names the certificate's subject: {e}"
    );
}

// -------------------------------------------------------------------------------------------------
// Tampering

#[test]
fn tampered_dsse_signature_is_refused() {
    let mut v = json(DSSE);
    let sig = v["dsseEnvelope"]["signatures"][0]["sig"]
        .as_str()
        .expect("sig")
        .to_string();
    v["dsseEnvelope"]["signatures"][0]["sig"] = Value::from(flip(&sig));
    let e = verify_dsse(&to_vec(&v), &beacon()).expect_err("refused");
    assert!(matches!(e, KeylessError::Signature(_)), "{e}");
    // The conformance suite's bundle with an invalid DSSE signature.
    let e = verify_dsse(&bundle("dsse-invalid-sig_fail"), &beacon()).expect_err("refused");
    assert!(matches!(e, KeylessError::Signature(_)), "{e}");
}

#[test]
fn tampered_payload_is_refused() {
    // Another statement: the signature no longer verifies.
    let mut v = json(DSSE);
    let other = B64.encode(br#"{"_type":"https://in-toto.io/Statement/v1","subject":[{"name":"x","digest":{"sha256":"00"}}],"predicateType":"x","predicate":{}}"#);
    v["dsseEnvelope"]["payload"] = Value::from(other);
    let e = verify_dsse(&to_vec(&v), &beacon()).expect_err("refused");
    assert!(matches!(e, KeylessError::Signature(_)), "{e}");
    // A validly signed envelope that is not the one logged.
    let e = verify_dsse(&bundle("dsse-mismatch-envelope_fail"), &beacon()).expect_err("refused");
    assert!(matches!(e, KeylessError::LogEntryMismatch(_)), "{e}");
}

#[test]
fn tampered_inclusion_proof_is_refused() {
    let mut v = json(DSSE);
    let h = entry(&mut v)["inclusionProof"]["hashes"][3]
        .as_str()
        .expect("hash")
        .to_string();
    entry(&mut v)["inclusionProof"]["hashes"][3] = Value::from(flip(&h));
    let e = verify_dsse(&to_vec(&v), &beacon()).expect_err("refused");
    assert!(matches!(e, KeylessError::InclusionProof(_)), "{e}");

    // Another leaf index: the path leads elsewhere.
    let mut v = json(DSSE);
    entry(&mut v)["inclusionProof"]["logIndex"] = Value::from("33786587");
    let e = verify_dsse(&to_vec(&v), &beacon()).expect_err("refused");
    assert!(matches!(e, KeylessError::InclusionProof(_)), "{e}");

    // Bundle v0.3 without an inclusion proof.
    let mut v = json(DSSE);
    entry(&mut v)
        .as_object_mut()
        .expect("entry")
        .remove("inclusionProof");
    let e = verify_dsse(&to_vec(&v), &beacon()).expect_err("refused");
    assert!(matches!(e, KeylessError::InclusionProof(_)), "{e}");

    let e = verify_blob(&bundle("inclusion-proof-corrupted-hash_fail"), &beacon())
        .expect_err("refused");
    assert!(matches!(e, KeylessError::InclusionProof(_)), "{e}");
}

#[test]
fn tampered_checkpoint_is_refused() {
    // The checkpoint's text altered (another tree size): its signature no longer verifies.
    let mut v = json(DSSE);
    let cp = entry(&mut v)["inclusionProof"]["checkpoint"]["envelope"]
        .as_str()
        .expect("checkpoint")
        .to_string();
    let forged = cp.replacen("\n33786589\n", "\n33786590\n", 1);
    assert_ne!(forged, cp);
    entry(&mut v)["inclusionProof"]["checkpoint"]["envelope"] = Value::from(forged);
    let e = verify_dsse(&to_vec(&v), &beacon()).expect_err("refused");
    assert!(matches!(e, KeylessError::Checkpoint(_)), "{e}");
    assert!(e.to_string().contains("does not verify"), "{e}");

    // The signature line itself altered.
    let mut v = json(DSSE);
    let (text, sig) = cp.split_once("\n\n").expect("note");
    let (name, s) = sig.trim_end().rsplit_once(' ').expect("sig line");
    let tampered = format!("{text}\n\n{name} {}\n", flip(s));
    entry(&mut v)["inclusionProof"]["checkpoint"]["envelope"] = Value::from(tampered);
    let e = verify_dsse(&to_vec(&v), &beacon()).expect_err("refused");
    assert!(matches!(e, KeylessError::Checkpoint(_)), "{e}");

    // Without a checkpoint.
    let mut v = json(DSSE);
    entry(&mut v)["inclusionProof"]
        .as_object_mut()
        .expect("proof")
        .remove("checkpoint");
    let e = verify_dsse(&to_vec(&v), &beacon()).expect_err("refused");
    assert!(matches!(e, KeylessError::Checkpoint(_)), "{e}");

    let e =
        verify_blob(&bundle("invalid-checkpoint-signature_fail"), &beacon()).expect_err("refused");
    assert!(matches!(e, KeylessError::Checkpoint(_)), "{e}");
    assert!(e.to_string().contains("does not verify"), "{e}");
    // A genuine checkpoint of the log, for another tree than the inclusion proof's.
    let e = verify_blob(&bundle("checkpoint-wrong-roothash_fail"), &beacon()).expect_err("refused");
    assert!(matches!(e, KeylessError::Checkpoint(_)), "{e}");
    assert!(
        e.to_string().contains("the inclusion proof is for size"),
        "{e}"
    );
}

#[test]
fn forged_integrated_time_or_set_is_refused() {
    // Moving the integrated time (e.g. into an expired certificate's validity) breaks the SET.
    let mut v = json(DSSE);
    entry(&mut v)["integratedTime"] = Value::from("1734374500");
    let e = verify_dsse(&to_vec(&v), &beacon()).expect_err("refused");
    assert!(matches!(e, KeylessError::SignedEntryTimestamp(_)), "{e}");

    let mut v = json(DSSE);
    entry(&mut v)
        .as_object_mut()
        .expect("entry")
        .remove("inclusionPromise");
    let e = verify_dsse(&to_vec(&v), &beacon()).expect_err("refused");
    assert!(matches!(e, KeylessError::SignedEntryTimestamp(_)), "{e}");

    let e = verify_blob(&bundle("set-invalid-signature_fail"), &beacon()).expect_err("refused");
    assert!(matches!(e, KeylessError::SignedEntryTimestamp(_)), "{e}");

    // A log entry from the future (the verifier's clock before the integrated time).
    let before = DateTime::from_timestamp(1_734_370_000, 0).expect("time");
    let target = a_digest();
    let e = verify_keyless_bundle(
        &bundle(DSSE),
        &beacon(),
        Content::StatementSubject(&target),
        before,
    )
    .expect_err("refused");
    assert!(e.to_string().contains("in the future"), "{e}");
}

// -------------------------------------------------------------------------------------------------
// Trust root and time

#[test]
fn wrong_trusted_root_is_refused() {
    // Production bundle, test-instance root: the Rekor log is unknown.
    let mock = policy(root("trusted_root.mock.json"), GITHUB, BEACON);
    let e = verify_dsse(&bundle(DSSE), &mock).expect_err("refused");
    assert!(matches!(e, KeylessError::UnknownLog(_)), "{e}");
    // Staging bundle, production root.
    let e =
        verify_blob(&bundle("bundle-from-wrong-instance_fail"), &beacon()).expect_err("refused");
    assert!(matches!(e, KeylessError::UnknownLog(_)), "{e}");
    // Staging root, production bundle.
    let staging = policy(root("trusted_root.staging.json"), GITHUB, BEACON);
    let e = verify_dsse(&bundle(DSSE), &staging).expect_err("refused");
    assert!(matches!(e, KeylessError::UnknownLog(_)), "{e}");

    // Production Rekor keys but another Fulcio: the chain fails.
    let mut pg: Value =
        serde_json::from_slice(&read("trusted_root.public-good.json")).expect("json");
    let mock: Value = serde_json::from_slice(&read("trusted_root.mock.json")).expect("json");
    pg["certificateAuthorities"] = mock["certificateAuthorities"].clone();
    let mixed = TrustedRoot::parse(&to_vec(&pg), "mixed").expect("root");
    let e = verify_dsse(&bundle(DSSE), &policy(mixed, GITHUB, BEACON)).expect_err("refused");
    assert!(matches!(e, KeylessError::CertificateChain(_)), "{e}");

    // Production Fulcio whose validity window ends before the signature.
    let mut pg: Value =
        serde_json::from_slice(&read("trusted_root.public-good.json")).expect("json");
    for ca in pg["certificateAuthorities"].as_array_mut().expect("cas") {
        ca["validFor"]["end"] = Value::from("2024-01-01T00:00:00Z");
    }
    let ended = TrustedRoot::parse(&to_vec(&pg), "ended").expect("root");
    let e = verify_dsse(&bundle(DSSE), &policy(ended, GITHUB, BEACON)).expect_err("refused");
    assert!(matches!(e, KeylessError::CertificateChain(_)), "{e}");
    assert!(
        e.to_string().contains("2024-12-16T18:42:56"),
        "names the time: {e}"
    );
}

#[test]
fn certificate_outside_its_validity_at_integrated_time_is_refused() {
    // Public good: a genuine SET whose integrated time (15:34:11) is after the 10-minute
    // certificate expired (15:28:10).
    let p = policy(
        public_good(),
        "https://accounts.google.com",
        "untrusted-sa@sigstore-conformance.iam.gserviceaccount.com",
    );
    let later = DateTime::from_timestamp(1_900_000_000, 0).expect("time");
    let e = verify_keyless_bundle(
        &bundle("integrated-time-in-future_fail"),
        &p,
        Content::Artifact(&a_txt()),
        later,
    )
    .expect_err("refused");
    assert!(matches!(e, KeylessError::CertificateValidity(_)), "{e}");
    assert!(
        e.to_string().contains("2026-05-07T15:28:10")
            && e.to_string().contains("2026-05-07T15:34:11"),
        "names the validity and the integrated time: {e}"
    );

    // A SET validly signed by the (test) log, at a time after the 10-minute certificate expired.
    let p = policy(root("trusted_root.mock.json"), GITHUB, BEACON);
    let d = read("d.txt");
    let e = verify_keyless_bundle(
        &bundle("intoto-set-outside-signing-cert-validity_fail"),
        &p,
        Content::Artifact(&d),
        now(),
    )
    .expect_err("refused");
    assert!(matches!(e, KeylessError::CertificateValidity(_)), "{e}");
    assert!(
        e.to_string().contains("2023-02-01T00:10:00")
            && e.to_string().contains("2023-02-02T00:00:00"),
        "names the validity and the integrated time: {e}"
    );
}

#[test]
fn statement_for_another_subject_is_refused() {
    let other = format!("sha256:{}", "0".repeat(64));
    let e = verify_keyless_bundle(
        &bundle(DSSE),
        &beacon(),
        Content::StatementSubject(&other),
        now(),
    )
    .expect_err("refused");
    assert!(matches!(e, KeylessError::Subject(_)), "{e}");
    // A message signature over other bytes.
    let e = verify_keyless_bundle(
        &bundle("happy-path-v0.3"),
        &beacon(),
        Content::Artifact(b"other"),
        now(),
    )
    .expect_err("refused");
    assert!(matches!(e, KeylessError::Subject(_)), "{e}");
}

#[test]
fn malformed_trusted_roots_are_refused() {
    let pg: Value = serde_json::from_slice(&read("trusted_root.public-good.json")).expect("json");
    let mut no_start = pg.clone();
    no_start["tlogs"][0]["publicKey"]["validFor"]
        .as_object_mut()
        .expect("validFor")
        .remove("start");
    let e = TrustedRoot::parse(&to_vec(&no_start), "r").expect_err("refused");
    assert!(matches!(e, KeylessError::TrustedRoot(_)), "{e}");
    let mut long = pg.clone();
    let cert = long["certificateAuthorities"][1]["certChain"]["certificates"][0].clone();
    long["certificateAuthorities"][1]["certChain"]["certificates"] =
        Value::Array(vec![cert; vulngate_registry::keyless::MAX_CHAIN_LEN + 1]);
    let e = TrustedRoot::parse(&to_vec(&long), "r").expect_err("refused");
    assert!(e.to_string().contains("more than"), "{e}");
    let mut mt = pg;
    mt["mediaType"] = Value::from("application/json");
    assert!(TrustedRoot::parse(&to_vec(&mt), "r").is_err());
    assert!(TrustedRoot::parse(b"[]", "r").is_err());
}

// -------------------------------------------------------------------------------------------------
// cosign bundle dispatch (what the lookup calls)

#[test]
fn cosign_bundle_dispatch_needs_a_keyless_policy_for_certificate_bundles() {
    let target = a_digest();
    let e = verify_cosign_bundle(&bundle(DSSE), &[], &target).expect_err("keys only");
    assert!(e.contains("cosign.keyless"), "{e}");
    let e = verify_cosign_bundle_with(&bundle(DSSE), &[], None, &target, now())
        .expect_err("no keyless policy");
    assert!(e.contains("cosign.keyless"), "{e}");
    let st = verify_cosign_bundle_with(&bundle(DSSE), &[], Some(&beacon()), &target, now())
        .expect("keyless policy");
    assert!(st.key.starts_with("keyless "), "{}", st.key);
    // The envelope handed to the findings parsers is the bundle's DSSE envelope.
    let env: Value = serde_json::from_slice(&st.envelope_json).expect("json");
    assert_eq!(env["payload"], json(DSSE)["dsseEnvelope"]["payload"]);
}

// -------------------------------------------------------------------------------------------------
// Lookup wiring, against a real docker-registry
//
// No real keyless bundle signs an artifact that can be pushed (the public-good bundles sign a.txt,
// not an OCI manifest, and a keyless signature cannot be made offline), so the real bundle is
// attached with `oras attach` as the cosign signature of a pushed report: the lookup must run
// every keyless check on it and refuse it only because the statement is for a.txt's digest,
// or earlier, for an identity or trust root the policy does not accept.

fn keyless_config(reg: &Registry, trusted_root: &str, subject: &str) -> RegistryConfig {
    RegistryConfig {
        insecure_registries: vec![reg.host.clone()],
        trust_policies: vec![TrustPolicy {
            scope: "*".into(),
            require: None,
            notation: None,
            cosign: Some(CosignTrust {
                public_keys: Vec::new(),
                keyless: Some(KeylessTrust {
                    trusted_root: path(trusted_root),
                    identities: vec![KeylessIdentity {
                        issuer: Some(GITHUB.into()),
                        subject: Some(subject.into()),
                        ..KeylessIdentity::default()
                    }],
                }),
            }),
        }],
        ..RegistryConfig::default()
    }
}

/// Attaches the real keyless bundle to `subject` as cosign 3 attaches a signature bundle.
fn attach_bundle(reg: &Registry, subject: &str) -> String {
    std::fs::write(reg.work().join("sig.sigstore.json"), bundle(DSSE)).expect("write");
    let r = format!("{}/app@{subject}", reg.host);
    reg.tool(
        "oras",
        &[
            "attach",
            "--plain-http",
            "--artifact-type",
            "application/vnd.dev.sigstore.bundle.v0.3+json",
            "--annotation",
            "dev.sigstore.bundle.predicateType=https://sigstore.dev/cosign/sign/v1",
            "--format",
            "go-template",
            "--template",
            "{{.digest}}",
            &r,
            "sig.sigstore.json:application/vnd.dev.sigstore.bundle.v0.3+json",
        ],
    )
}

async fn unverified(cfg: RegistryConfig, img: &ImageRef) -> String {
    let l = RegistryClient::new(cfg).expect("client").lookup(img).await;
    match l.report {
        Err(UnscannedReason::Unverified(m)) => m,
        other => panic!("expected Unverified, got {other:?}"),
    }
}

#[tokio::test]
async fn lookup_runs_keyless_verification_on_cosign_signature_bundles() {
    let reg = Registry::start(Kind::Distribution);
    let digest = reg.push_image("v1", "keyless");
    let art = reg.oras_attach(
        &digest,
        "application/vnd.vulngate.report+json",
        &trivy_report("CVE-2024-3003", "2026-01-01T00:00:00Z"),
        None,
    );
    attach_bundle(&reg, &art);
    let img = ImageRef::parse(&format!("{}/app@{digest}", reg.host)).expect("reference");

    // Right trusted root and identity: chain, Rekor entry, time and identity pass; the statement
    // names a.txt, not the report, so the report is not trusted.
    let m = unverified(
        keyless_config(&reg, "trusted_root.public-good.json", BEACON),
        &img,
    )
    .await;
    assert!(
        m.contains("subject: signed statement is for")
            && m.contains(&a_digest())
            && m.contains(&art),
        "{m}"
    );

    // Another identity: refused for the identity.
    let m = unverified(
        keyless_config(
            &reg,
            "trusted_root.public-good.json",
            "https://github.com/org/repo/.github/workflows/scan.yml@refs/heads/main",
        ),
        &img,
    )
    .await;
    assert!(
        m.contains("identity: certificate identity") && m.contains(BEACON),
        "{m}"
    );

    // Another trusted root: refused for the transparency log.
    let m = unverified(
        keyless_config(&reg, "trusted_root.staging.json", BEACON),
        &img,
    )
    .await;
    assert!(
        m.contains("transparency log")
            && m.contains("is not a transparency log of the trusted root"),
        "{m}"
    );

    // A policy with keys only names what is missing.
    let (_, public) = reg.cosign_keys("k");
    let mut cfg = keyless_config(&reg, "trusted_root.public-good.json", BEACON);
    if let Some(c) = cfg.trust_policies[0].cosign.as_mut() {
        c.keyless = None;
        c.public_keys = vec![public];
    }
    let m = unverified(cfg, &img).await;
    assert!(m.contains("has no cosign.keyless"), "{m}");
}

#[test]
fn keyless_policy_configuration_is_checked() {
    let base = |identities: Vec<KeylessIdentity>, root: &str| RegistryConfig {
        trust_policies: vec![TrustPolicy {
            scope: "*".into(),
            require: None,
            notation: None,
            cosign: Some(CosignTrust {
                public_keys: Vec::new(),
                keyless: Some(KeylessTrust {
                    trusted_root: path(root),
                    identities,
                }),
            }),
        }],
        ..RegistryConfig::default()
    };
    let id = KeylessIdentity {
        issuer: Some(GITHUB.into()),
        subject: Some(BEACON.into()),
        ..KeylessIdentity::default()
    };
    RegistryClient::new(base(vec![id.clone()], "trusted_root.public-good.json")).expect("valid");
    let err = |c| RegistryClient::new(c).expect_err("refused").to_string();
    let e = err(base(Vec::new(), "trusted_root.public-good.json"));
    assert!(e.contains("identities is empty"), "{e}");
    let e = err(base(vec![id.clone()], "a.txt"));
    assert!(e.contains("trustedRoot") && e.contains("a.txt"), "{e}");
    let e = err(base(vec![id.clone()], "missing.json"));
    assert!(e.contains("missing.json"), "{e}");
    let no_subject = KeylessIdentity {
        issuer: Some(GITHUB.into()),
        ..KeylessIdentity::default()
    };
    let e = err(base(vec![no_subject], "trusted_root.public-good.json"));
    assert!(e.contains("identities[0]") && e.contains("subject"), "{e}");
}
