//! OCI image-spec / distribution-spec types and media types (only the fields vulngate reads).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256, Sha512};

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const OCI_EMPTY: &str = "application/vnd.oci.empty.v1+json";
/// The empty JSON object `{}` (OCI image-spec "empty descriptor").
pub const EMPTY_DIGEST: &str =
    "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a";

pub const VULNGATE_REPORT: &str = "application/vnd.vulngate.report+json";
pub const IN_TOTO: &str = "application/vnd.in-toto+json";
pub const SIGSTORE_BUNDLE_V03: &str = "application/vnd.dev.sigstore.bundle.v0.3+json";
pub const SARIF: &str = "application/sarif+json";
pub const CYCLONEDX: &str = "application/vnd.cyclonedx+json";
pub const OPENVEX: &str = "application/openvex+json";
pub const NOTATION_SIGNATURE: &str = "application/vnd.cncf.notary.signature";
pub const JWS: &str = "application/jose+json";
pub const COSE: &str = "application/cose";
pub const DSSE_ENVELOPE: &str = "application/vnd.dsse.envelope.v1+json";
pub const COSIGN_SIMPLESIGNING: &str = "application/vnd.dev.cosign.simplesigning.v1+json";

pub const ANN_CREATED: &str = "org.opencontainers.image.created";
pub const ANN_TITLE: &str = "org.opencontainers.image.title";
pub const ANN_INTOTO_PREDICATE: &str = "in-toto.io/predicate-type";
pub const ANN_SIGSTORE_PREDICATE: &str = "dev.sigstore.bundle.predicateType";
pub const ANN_COSIGN_SIGNATURE: &str = "dev.cosignproject.cosign/signature";
pub const COSIGN_SIGN_PREDICATE: &str = "https://sigstore.dev/cosign/sign/v1";

/// Every manifest media type the resolver asks for.
pub const MANIFEST_ACCEPT: &[&str] = &[
    OCI_INDEX,
    OCI_MANIFEST,
    DOCKER_MANIFEST_LIST,
    DOCKER_MANIFEST,
];

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Platform {
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    #[serde(default)]
    pub media_type: String,
    pub digest: String,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<String>,
}

/// An image manifest or an index (the union of both; `mediaType` tells which).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<Descriptor>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub layers: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub manifests: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<Descriptor>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

impl Manifest {
    pub fn is_index(&self, content_type: Option<&str>) -> bool {
        let mt = self.media_type.as_deref().or(content_type).unwrap_or("");
        mt == OCI_INDEX
            || mt == DOCKER_MANIFEST_LIST
            || (mt.is_empty() && !self.manifests.is_empty())
    }

    /// The artifact type as the image spec defines it: `artifactType`, else the config media
    /// type unless it is the empty descriptor's (how notation signatures are typed).
    pub fn effective_artifact_type(&self) -> Option<&str> {
        match self.artifact_type.as_deref() {
            Some(t) if !t.is_empty() => Some(t),
            _ => self
                .config
                .as_ref()
                .map(|c| c.media_type.as_str())
                .filter(|t| !t.is_empty() && *t != OCI_EMPTY),
        }
    }
}

/// `sha256:<hex>` (or sha512) of `bytes`, in the algorithm of `like` (default sha256).
pub fn digest_of(bytes: &[u8], like: &str) -> String {
    if like.starts_with("sha512:") {
        format!("sha512:{}", hex(&Sha512::digest(bytes)))
    } else {
        format!("sha256:{}", hex(&Sha256::digest(bytes)))
    }
}

pub fn hex(bytes: &[u8]) -> String {
    const H: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(H[(b >> 4) as usize] as char);
        s.push(H[(b & 15) as usize] as char);
    }
    s
}

/// The referrers tag schema tag of a digest: `sha256-<hex>`.
pub fn referrers_tag(digest: &str) -> String {
    digest.replacen(':', "-", 1)
}

/// Incremental digest in the algorithm of an expected digest.
pub(crate) enum Hasher {
    S256(Sha256),
    S512(Sha512),
}

impl Hasher {
    pub fn for_digest(expected: &str) -> Hasher {
        if expected.starts_with("sha512:") {
            Hasher::S512(Sha512::new())
        } else {
            Hasher::S256(Sha256::new())
        }
    }
    pub fn update(&mut self, b: &[u8]) {
        match self {
            Hasher::S256(h) => h.update(b),
            Hasher::S512(h) => h.update(b),
        }
    }
    pub fn finish(self) -> String {
        match self {
            Hasher::S256(h) => format!("sha256:{}", hex(&h.finalize())),
            Hasher::S512(h) => format!("sha512:{}", hex(&h.finalize())),
        }
    }
}
