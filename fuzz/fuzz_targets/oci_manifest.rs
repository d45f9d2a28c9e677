//! OCI image manifests, indexes and referrers listings as the registry client reads them
//! (`oci::Manifest`, the union of manifest and index), and what the client derives from one:
//! index or not, the artifact type, platform names, referrers tags, digests. A manifest
//! that parsed must serialise and parse back to itself (the client re-serialises nothing,
//! but `attach` writes manifests with the same type).
#![no_main]

use libfuzzer_sys::fuzz_target;
use vulngate_registry::oci::{self, Manifest};

fuzz_target!(|data: &[u8]| {
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
});
