//! cosign signatures: sigstore bundles (`verify_cosign_bundle`), DSSE envelopes
//! (`verify_dsse`) and legacy simple-signing payloads (`verify_simple_signing`, the first
//! line being the signature annotation), against the captured test key and image digest.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use vulngate_registry::verify::{
    verify_cosign_bundle, verify_dsse, verify_simple_signing, CosignKey,
};

const IMAGE: &str = "sha256:05d20e8740ef391bb7d5436d5dad4eb18cdf223eb520c7dec4cd151cd465ce00";

fn keys() -> &'static [CosignKey] {
    static KEYS: OnceLock<Vec<CosignKey>> = OnceLock::new();
    KEYS.get_or_init(|| {
        vec![CosignKey::from_pem(
            include_bytes!("../../crates/registry/tests/data/manifests/cosign.pub"),
            "cosign.pub",
        )
        .expect("test key")]
    })
}

fuzz_target!(|data: &[u8]| {
    let _ = verify_cosign_bundle(data, keys(), IMAGE);
    let _ = verify_dsse(data, keys(), None, IMAGE);
    let _ = verify_dsse(data, keys(), Some(keys()[0].hint.as_str()), IMAGE);
    let (sig, payload) = match data.iter().position(|&b| b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (&b""[..], data),
    };
    if let Ok(sig) = std::str::from_utf8(sig) {
        let _ = verify_simple_signing(payload, sig, keys(), IMAGE);
    }
    // PEM public keys: the key loader is fuzzed on the same bytes.
    let _ = CosignKey::from_pem(data, "fuzz");
});
