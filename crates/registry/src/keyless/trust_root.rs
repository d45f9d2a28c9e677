//! Sigstore `TrustedRoot` files (`application/vnd.dev.sigstore.trustedroot+json;version=0.1`):
//! the Fulcio certificate authorities and the Rekor transparency logs a keyless bundle is checked
//! against, each with its `validFor` window. Loaded from a file the operator names; nothing is
//! fetched (no TUF client).

use std::path::Path;

use base64::Engine as _;
use chrono::{DateTime, Utc};
use rustls_pki_types::{CertificateDer, SignatureVerificationAlgorithm, SubjectPublicKeyInfoDer};
use serde::Deserialize;
use sha2::{Digest as _, Sha256};
use webpki::ring as alg;

use super::{KeylessError, MAX_CHAIN_LEN};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// Most certificate authorities, transparency logs and CT logs one trusted root may list.
const MAX_ENTRIES: usize = 64;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawRoot {
    media_type: String,
    #[serde(default)]
    tlogs: Vec<RawLog>,
    #[serde(default)]
    certificate_authorities: Vec<RawCa>,
    #[serde(default)]
    ctlogs: Vec<RawLog>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawLog {
    #[serde(default)]
    base_url: Option<String>,
    public_key: RawKey,
    log_id: RawLogId,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawLogId {
    key_id: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawKey {
    raw_bytes: String,
    key_details: String,
    valid_for: Option<RawRange>,
}

#[derive(Deserialize)]
struct RawRange {
    start: Option<DateTime<Utc>>,
    #[serde(default)]
    end: Option<DateTime<Utc>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawCa {
    #[serde(default)]
    uri: Option<String>,
    cert_chain: RawChain,
    valid_for: Option<RawRange>,
}

#[derive(Deserialize)]
struct RawChain {
    #[serde(default)]
    certificates: Vec<RawCert>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawCert {
    raw_bytes: String,
}

/// A closed validity interval `[start, end]` (`end` open-ended when absent).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ValidFor {
    pub start: DateTime<Utc>,
    pub end: Option<DateTime<Utc>>,
}

impl ValidFor {
    pub fn contains(&self, t: DateTime<Utc>) -> bool {
        t >= self.start && self.end.is_none_or(|e| t <= e)
    }
}

impl std::fmt::Display for ValidFor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.end {
            Some(e) => write!(f, "{} to {}", self.start.to_rfc3339(), e.to_rfc3339()),
            None => write!(f, "{} on", self.start.to_rfc3339()),
        }
    }
}

fn range(r: Option<RawRange>, what: &str) -> Result<ValidFor, String> {
    let r = r.ok_or_else(|| format!("{what}: validFor is missing"))?;
    let start = r
        .start
        .ok_or_else(|| format!("{what}: validFor.start is missing"))?;
    if let Some(end) = r.end {
        if end < start {
            return Err(format!("{what}: validFor ends before it starts"));
        }
    }
    Ok(ValidFor { start, end: r.end })
}

/// A transparency log (Rekor) or CT log key.
#[derive(Debug, Clone)]
pub struct LogKey {
    /// The log id (`logId.keyId`), raw bytes.
    pub key_id: Vec<u8>,
    pub base_url: String,
    spki: SubjectPublicKeyInfoDer<'static>,
    algorithm: &'static dyn SignatureVerificationAlgorithm,
    pub valid_for: ValidFor,
}

impl LogKey {
    /// Verifies a DER (ECDSA) or raw (Ed25519) signature over `msg` with this log's key.
    pub fn verify(&self, msg: &[u8], sig: &[u8]) -> bool {
        webpki::RawPublicKeyEntity::try_from(&self.spki)
            .is_ok_and(|k| k.verify_signature(self.algorithm, msg, sig).is_ok())
    }

    /// The key hint of signed notes (checkpoints): the first 4 bytes of SHA-256 over the SPKI.
    pub fn note_hint(&self) -> [u8; 4] {
        let d = Sha256::digest(self.spki.as_ref());
        [d[0], d[1], d[2], d[3]]
    }
}

/// A Fulcio certificate authority: its chain (intermediates first, root last).
#[derive(Debug, Clone)]
pub struct CertificateAuthority {
    pub uri: String,
    pub chain: Vec<CertificateDer<'static>>,
    pub valid_for: ValidFor,
}

/// A parsed, checked trusted root.
#[derive(Debug, Clone)]
pub struct TrustedRoot {
    pub source: String,
    pub tlogs: Vec<LogKey>,
    /// Logs whose key type is not supported (`logId` bytes, why): an entry of one is refused as
    /// unsupported rather than as unknown.
    pub unsupported_tlogs: Vec<(Vec<u8>, String)>,
    pub certificate_authorities: Vec<CertificateAuthority>,
    /// How many CT logs the file lists; they are not used: embedded SCTs are not verified (see
    /// docs/registry.md).
    pub ctlogs: usize,
}

fn key_algorithm(details: &str) -> Option<&'static dyn SignatureVerificationAlgorithm> {
    Some(match details {
        "PKIX_ECDSA_P256_SHA_256" => alg::ECDSA_P256_SHA256,
        "PKIX_ECDSA_P384_SHA_384" => alg::ECDSA_P384_SHA384,
        "PKIX_ED25519" => alg::ED25519,
        "PKIX_RSA_PKCS1V15_2048_SHA256"
        | "PKIX_RSA_PKCS1V15_3072_SHA256"
        | "PKIX_RSA_PKCS1V15_4096_SHA256" => alg::RSA_PKCS1_2048_8192_SHA256,
        _ => return None,
    })
}

fn log_key(l: RawLog, what: &str) -> Result<LogKey, String> {
    let der = B64
        .decode(l.public_key.raw_bytes.trim())
        .map_err(|_| format!("{what}: publicKey.rawBytes is not base64"))?;
    let spki = SubjectPublicKeyInfoDer::from(der);
    webpki::RawPublicKeyEntity::try_from(&spki)
        .map_err(|e| format!("{what}: unusable public key: {e}"))?;
    let algorithm = key_algorithm(&l.public_key.key_details).ok_or_else(|| {
        format!(
            "{what}: unsupported keyDetails {:?}",
            l.public_key.key_details
        )
    })?;
    let key_id = B64
        .decode(l.log_id.key_id.trim())
        .map_err(|_| format!("{what}: logId.keyId is not base64"))?;
    if key_id.is_empty() {
        return Err(format!("{what}: logId.keyId is empty"));
    }
    Ok(LogKey {
        key_id,
        base_url: l.base_url.unwrap_or_default(),
        spki,
        algorithm,
        valid_for: range(l.public_key.valid_for, what)?,
    })
}

impl TrustedRoot {
    /// Parses a trusted root document. `source` names it in errors.
    pub fn parse(bytes: &[u8], source: &str) -> Result<TrustedRoot, KeylessError> {
        let bad = |m: String| KeylessError::TrustedRoot(format!("{source}: {m}"));
        let raw: RawRoot = serde_json::from_slice(bytes)
            .map_err(|e| bad(format!("not a Sigstore trusted root: {e}")))?;
        let mt = raw.media_type.replace(' ', "");
        if mt != "application/vnd.dev.sigstore.trustedroot+json;version=0.1"
            && mt != "application/vnd.dev.sigstore.trustedroot.v0.1+json"
        {
            return Err(bad(format!(
                "unsupported mediaType {:?} (expected application/vnd.dev.sigstore.trustedroot+json;version=0.1)",
                raw.media_type
            )));
        }
        if raw.tlogs.len() > MAX_ENTRIES
            || raw.certificate_authorities.len() > MAX_ENTRIES
            || raw.ctlogs.len() > MAX_ENTRIES
        {
            return Err(bad(format!(
                "more than {MAX_ENTRIES} logs or certificate authorities"
            )));
        }
        let mut tlogs = Vec::new();
        let mut unsupported_tlogs = Vec::new();
        for (i, l) in raw.tlogs.into_iter().enumerate() {
            let what = format!("tlogs[{i}]");
            if key_algorithm(&l.public_key.key_details).is_none() {
                let id = B64
                    .decode(l.log_id.key_id.trim())
                    .map_err(|_| bad(format!("{what}: logId.keyId is not base64")))?;
                unsupported_tlogs.push((
                    id,
                    format!(
                        "{what} ({}): key type {}",
                        l.base_url.unwrap_or_default(),
                        l.public_key.key_details
                    ),
                ));
                continue;
            }
            tlogs.push(log_key(l, &what).map_err(bad)?);
        }
        // CT logs are not used (embedded SCTs are not verified): only counted. Their keys may be
        // of types webpki does not read (the staging root has a PKCS#1 RSA key).
        let ctlogs = raw.ctlogs.len();
        let mut cas = Vec::new();
        for (i, ca) in raw.certificate_authorities.into_iter().enumerate() {
            let what = format!("certificateAuthorities[{i}]");
            let n = ca.cert_chain.certificates.len();
            if n == 0 {
                return Err(bad(format!("{what}: empty certChain")));
            }
            if n > MAX_CHAIN_LEN {
                return Err(bad(format!(
                    "{what}: certChain of {n} certificates, more than {MAX_CHAIN_LEN}"
                )));
            }
            let chain = ca
                .cert_chain
                .certificates
                .iter()
                .map(|c| B64.decode(c.raw_bytes.trim()).map(CertificateDer::from))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|_| bad(format!("{what}: certificate rawBytes is not base64")))?;
            for c in &chain {
                x509_parser::parse_x509_certificate(c.as_ref())
                    .map_err(|e| bad(format!("{what}: not an X.509 certificate: {e}")))?;
            }
            if let Some(root) = chain.last() {
                webpki::anchor_from_trusted_cert(root)
                    .map_err(|e| bad(format!("{what}: unusable root certificate: {e}")))?;
            }
            cas.push(CertificateAuthority {
                uri: ca.uri.unwrap_or_default(),
                chain,
                valid_for: range(ca.valid_for, &what).map_err(bad)?,
            });
        }
        if tlogs.is_empty() {
            return Err(bad("no transparency log (tlogs)".into()));
        }
        if cas.is_empty() {
            return Err(bad("no certificate authority".into()));
        }
        Ok(TrustedRoot {
            source: source.to_string(),
            tlogs,
            unsupported_tlogs,
            certificate_authorities: cas,
            ctlogs,
        })
    }

    /// Reads and parses a trusted root file (read capped like every configuration file).
    pub fn load(path: &Path) -> Result<TrustedRoot, KeylessError> {
        let bytes =
            vulngate_core::limits::read_capped(path, vulngate_core::limits::FileKind::Config)
                .map_err(|e| KeylessError::TrustedRoot(e.to_string()))?;
        TrustedRoot::parse(&bytes, &path.display().to_string())
    }

    /// The transparency log with this log id.
    pub fn tlog(&self, key_id: &[u8]) -> Option<&LogKey> {
        self.tlogs.iter().find(|l| l.key_id == key_id)
    }
}
