//! Notary Project JWS signature envelopes (`verify::verify_notation_jws`: the JSON envelope,
//! base64url parts, the protected header and its critical headers, the x5c certificates, raw
//! ECDSA signatures, the chain and the payload), against the captured test certificate and
//! the target of the captured signature; and the trust policy's `trustedIdentities` DN
//! grammar (`TrustedIdentities::parse`, then `check` against the test certificate).
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use vulngate_registry::verify::{verify_notation_jws, Target, TrustedIdentities};

fn roots() -> &'static [CertificateDer<'static>] {
    static ROOTS: OnceLock<Vec<CertificateDer<'static>>> = OnceLock::new();
    ROOTS.get_or_init(|| {
        CertificateDer::pem_slice_iter(include_bytes!(
            "../../crates/registry/tests/data/manifests/notation-vulngate-test.crt"
        ))
        .collect::<Result<_, _>>()
        .expect("test certificate")
    })
}

fuzz_target!(|data: &[u8]| {
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
});
