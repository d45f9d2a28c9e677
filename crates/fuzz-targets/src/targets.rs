//! One function per cargo-fuzz target (the file of the same name in `fuzz/fuzz_targets/` calls
//! it); each one's documentation says what it checks.

#![allow(clippy::missing_panics_doc)]

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use std::path::PathBuf;
use std::sync::OnceLock;
use vulngate_core::findings::{self, Parsed};
use vulngate_core::model::ReportFormat;
use vulngate_core::rules::{Precedence, RuleSet};
use vulngate_core::{evaluate, AnalyzedReport, Subject, UnscannedReason};
use vulngate_registry::oci::{self, Manifest};
use vulngate_registry::verify::{
    verify_cosign_bundle, verify_dsse, verify_notation_jws, verify_simple_signing, CosignKey,
    Target, TrustedIdentities,
};
use vulngate_server::LocalFindings;

/// Format detection and every parser behind it (`findings::parse`), then the engine on what
/// parsed. When detection and the format's own parser both accept a document they must
/// agree; `parse_vex` must never panic either.
pub fn report_detect(data: &[u8]) {
    match findings::parse(data) {
        Ok(Parsed::Report(r)) => {
            if let Ok(direct) = findings::parse_format(r.format, data) {
                assert_eq!(
                    direct, r,
                    "detection and parse_format({}) disagree",
                    r.format
                );
            }
            crate::exercise_report(&r, &r.vex);
        }
        Ok(Parsed::Vex(statements)) => {
            let empty = crate::empty_report();
            crate::exercise_report(&empty, &statements);
        }
        Err(e) => {
            // The error names the format and a JSON path.
            assert!(!e.format.is_empty() && e.path.starts_with('$'), "{e:?}");
        }
    }
    let _ = findings::parse_vex(data);
}

/// The Trivy parser on its own (`findings::parse_format`, no detection), then the engine on
/// what parsed.
pub fn report_trivy(data: &[u8]) {
    if let Ok(r) = findings::parse_format(ReportFormat::Trivy, data) {
        assert_eq!(r.format, ReportFormat::Trivy);
        crate::exercise_report(&r, &r.vex);
    }
}

/// The Grype parser on its own (`findings::parse_format`, no detection), then the engine on
/// what parsed.
pub fn report_grype(data: &[u8]) {
    if let Ok(r) = findings::parse_format(ReportFormat::Grype, data) {
        assert_eq!(r.format, ReportFormat::Grype);
        crate::exercise_report(&r, &r.vex);
    }
}

/// The Sarif parser on its own (`findings::parse_format`, no detection), then the engine on
/// what parsed.
pub fn report_sarif(data: &[u8]) {
    if let Ok(r) = findings::parse_format(ReportFormat::Sarif, data) {
        assert_eq!(r.format, ReportFormat::Sarif);
        crate::exercise_report(&r, &r.vex);
    }
}

/// The Cyclonedx parser on its own (`findings::parse_format`, no detection), then the engine on
/// what parsed.
pub fn report_cyclonedx(data: &[u8]) {
    if let Ok(r) = findings::parse_format(ReportFormat::Cyclonedx, data) {
        assert_eq!(r.format, ReportFormat::Cyclonedx);
        crate::exercise_report(&r, &r.vex);
    }
}

/// in-toto attestations (vulns v0.2 and the cosign vuln predicate; DSSE envelope, Statement or
/// bare predicate) through `findings::parse_format`, then the engine on what parsed.
pub fn report_intoto(data: &[u8]) {
    for format in [ReportFormat::IntotoVulns, ReportFormat::CosignVuln] {
        if let Ok(r) = findings::parse_format(format, data) {
            assert_eq!(r.format, format);
            crate::exercise_report(&r, &r.vex);
        }
    }
}

/// VEX documents (`findings::parse_vex`: OpenVEX bare or as an in-toto predicate, CycloneDX
/// analysis), then the statements applied to a fixed report by the engine.
pub fn report_openvex(data: &[u8]) {
    if let Ok(statements) = findings::parse_vex(data) {
        crate::exercise_report(crate::fixture_report(), &statements);
    }
}

/// The rule YAML (`RuleSet::parse_yaml`: multi-document, every field checked, CEL compiled),
/// the rule set built from it, and the engine with those rules on a fixed report and on an
/// unscanned image. A rule that parsed must also survive its own round trip
/// (`to_doc` -> YAML -> `parse_yaml`).
pub fn rules_yaml(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(rules) = RuleSet::parse_yaml(text, "fuzz") else {
        return;
    };
    for r in &rules {
        for c in &r.spec.conditions {
            let _ = c.describe();
        }
        let doc = serde_yaml_ng::to_string(&r.to_doc()).expect("a rule serialises");
        let again = RuleSet::parse_yaml(&doc, "round trip")
            .unwrap_or_else(|e| panic!("a parsed rule does not parse again: {e}\n{doc}"));
        assert_eq!(again.len(), 1);
        assert_eq!(
            again[0].to_doc(),
            r.to_doc(),
            "round trip changed the rule\n{doc}"
        );
    }
    let Ok(set) = RuleSet::new(rules) else {
        return;
    };
    let report = crate::fixture_report();
    let analyzed = AnalyzedReport::new(
        report,
        Default::default(),
        &report.vex,
        Some(crate::image()),
    );
    let unscanned = UnscannedReason::NoReport;
    let ctx = crate::context();
    for precedence in [Precedence::Default, Precedence::Strictest] {
        for subject in [Subject::Report(&analyzed), Subject::Unscanned(&unscanned)] {
            let d = evaluate(
                &set,
                precedence,
                &ctx,
                crate::image(),
                subject,
                crate::now(),
            );
            serde_json::to_vec(&d).expect("a decision serialises");
        }
    }
}

fn dir() -> &'static PathBuf {
    static DIR: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    &DIR.get_or_init(|| {
        let t = tempfile::tempdir().expect("temp dir");
        let p = t.path().to_path_buf();
        let files: [(&str, &[u8]); 3] = [
            (
                "report.json",
                include_bytes!(
                    "../../../examples/findings/registry.example.com_platform_toolbox_2.1.0.json"
                ),
            ),
            (
                "vex.json",
                include_bytes!("../../../crates/core/tests/data/reports/trivy/openvex.json"),
            ),
            (
                "grype.sarif",
                include_bytes!("../../../crates/core/tests/data/reports/grype/image.sarif"),
            ),
        ];
        for (name, bytes) in files {
            std::fs::write(p.join(name), bytes).expect("fixture written");
        }
        (t, p)
    })
    .1
}

/// The findings index (`index.yaml` of a findings directory, read by
/// `LocalFindings::from_dir` for `vulngate serve --findings-dir`): the fuzz input is the
/// index; the directory holds a small Trivy report and an OpenVEX document for it to name.
pub fn findings_index(data: &[u8]) {
    let dir = dir();
    std::fs::write(dir.join("index.yaml"), data).expect("index written");
    let _ = LocalFindings::from_dir(dir);
}

/// OCI image manifests, indexes and referrers listings as the registry client reads them
/// (`oci::Manifest`, the union of manifest and index), and what the client derives from one:
/// index or not, the artifact type, platform names, referrers tags, digests. A manifest
/// that parsed must serialise and parse back to itself (the client re-serialises nothing,
/// but `attach` writes manifests with the same type).
pub fn oci_manifest(data: &[u8]) {
    let Ok(m) = serde_json::from_slice::<Manifest>(data) else {
        return;
    };
    for ct in [
        None,
        Some(oci::OCI_INDEX),
        Some(oci::OCI_MANIFEST),
        Some(""),
    ] {
        let _ = m.is_index(ct);
    }
    let _ = m.effective_artifact_type();
    for d in m
        .manifests
        .iter()
        .chain(&m.layers)
        .chain(m.config.iter())
        .chain(m.subject.iter())
    {
        if let Some(p) = &d.platform {
            let _ = p.to_string();
        }
        let tag = oci::referrers_tag(&d.digest);
        assert!(!tag.contains(':') || d.digest.matches(':').count() > 1);
        let _ = oci::digest_of(data, &d.digest);
    }
    let bytes = serde_json::to_vec(&m).expect("a manifest serialises");
    let again: Manifest = serde_json::from_slice(&bytes).expect("a serialised manifest parses");
    assert_eq!(again, m);
}

fn roots() -> &'static [CertificateDer<'static>] {
    static ROOTS: OnceLock<Vec<CertificateDer<'static>>> = OnceLock::new();
    ROOTS.get_or_init(|| {
        CertificateDer::pem_slice_iter(include_bytes!(
            "../../../crates/registry/tests/data/manifests/notation-vulngate-test.crt"
        ))
        .collect::<Result<_, _>>()
        .expect("test certificate")
    })
}

/// Notary Project JWS signature envelopes (`verify::verify_notation_jws`: the JSON envelope,
/// base64url parts, the protected header and its critical headers, the x5c certificates, raw
/// ECDSA signatures, the chain and the payload), against the captured test certificate and
/// the target of the captured signature; and the trust policy's `trustedIdentities` DN
/// grammar (`TrustedIdentities::parse`, then `check` against the test certificate).
pub fn notation_jws(data: &[u8]) {
    let target = Target {
        digest: "sha256:3efa2e2f56e3de1c365e8d7a9d47988bc4981555371dd1ff360962cfdc543d1f",
        size: Some(733),
        media_type: Some("application/vnd.oci.image.manifest.v1+json"),
    };
    // Inside the test certificate's validity, as in tests/verify_fixtures.rs.
    let now = "2026-11-28T12:00:00Z".parse().expect("time");
    let _ = verify_notation_jws(data, roots(), &target, now);
    if let Ok(text) = std::str::from_utf8(data) {
        let list: Vec<String> = text.lines().take(16).map(str::to_string).collect();
        if let Ok(ids) = TrustedIdentities::parse(&list) {
            let _ = ids.check(&roots()[0]);
        }
    }
}

const COSIGN_ENVELOPES_IMAGE: &str =
    "sha256:05d20e8740ef391bb7d5436d5dad4eb18cdf223eb520c7dec4cd151cd465ce00";

fn keys() -> &'static [CosignKey] {
    static KEYS: OnceLock<Vec<CosignKey>> = OnceLock::new();
    KEYS.get_or_init(|| {
        vec![CosignKey::from_pem(
            include_bytes!("../../../crates/registry/tests/data/manifests/cosign.pub"),
            "cosign.pub",
        )
        .expect("test key")]
    })
}

/// cosign signatures: sigstore bundles (`verify_cosign_bundle`), DSSE envelopes
/// (`verify_dsse`) and legacy simple-signing payloads (`verify_simple_signing`, the first
/// line being the signature annotation), against the captured test key and image digest.
pub fn cosign_envelopes(data: &[u8]) {
    let _ = verify_cosign_bundle(data, keys(), COSIGN_ENVELOPES_IMAGE);
    let _ = verify_dsse(data, keys(), None, COSIGN_ENVELOPES_IMAGE);
    let _ = verify_dsse(
        data,
        keys(),
        Some(keys()[0].hint.as_str()),
        COSIGN_ENVELOPES_IMAGE,
    );
    let (sig, payload) = match data.iter().position(|&b| b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (&b""[..], data),
    };
    if let Ok(sig) = std::str::from_utf8(sig) {
        let _ = verify_simple_signing(payload, sig, keys(), COSIGN_ENVELOPES_IMAGE);
    }
    // PEM public keys: the key loader is fuzzed on the same bytes.
    let _ = CosignKey::from_pem(data, "fuzz");
}
