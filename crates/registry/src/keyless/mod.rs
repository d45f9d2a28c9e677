//! cosign keyless verification, offline: a Sigstore bundle (v0.1 to v0.3) whose Fulcio
//! certificate chains to a certificate authority of a `trusted_root.json` file, whose Rekor entry
//! is proven by the signed entry timestamp (SET) and, from bundle v0.2 on, by a Merkle inclusion
//! proof up to a signed checkpoint, whose certificate was valid at the log's integrated time, and
//! whose certificate identity (OIDC issuer and subject) is one the trust policy names.
//!
//! Written on the workspace's own crates (rustls-webpki and ring, x509-parser, sha2) rather than
//! the `sigstore` crate: sigstore 0.15's bundle verifier leaves the Merkle inclusion proof and the
//! SET unchecked (`TODO ... sigstore-rs#285` in `bundle/verify/verifier.rs`), its `verify`
//! feature pulls `fulcio`/`rekor`/`oauth` (reqwest 0.13, openidconnect) and a second crypto stack
//! (RustCrypto `p256`/`ecdsa` 0.17 pre-releases; `rustls-tls` means aws-lc-rs, `native-tls`
//! OpenSSL), and a trusted root from a file needs `sigstore-trust-root` (tough, a TUF client).
//! What is hand-written here is the glue: the bundle and trusted-root JSON, RFC 9162 audit-path
//! hashing, the signed-note checkpoint format and the SET's canonical JSON; every signature and
//! path check is webpki's.
//!
//! Not verified: embedded SCTs (certificate transparency of the Fulcio certificate), RFC 3161
//! timestamps, Rekor v2 entries (which need RFC 3161 timestamps). A bundle that needs them is
//! refused with a message that says so.

pub(crate) mod tlog;
mod trust_root;

use base64::Engine as _;
use chrono::{DateTime, Utc};
use rustls_pki_types::{CertificateDer, SignatureVerificationAlgorithm, UnixTime};
use serde::Deserialize;
use sha2::{Digest as _, Sha256};
use webpki::ring as alg;

pub use tlog::VerifiedEntry;
pub use trust_root::{CertificateAuthority, LogKey, TrustedRoot, ValidFor};

use crate::verify::DsseEnvelope;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// Most certificates in one certificate authority's chain (trusted root) or in a bundle's
/// `x509CertificateChain`.
pub const MAX_CHAIN_LEN: usize = 8;
/// Most transparency log entries read from one bundle.
pub const MAX_TLOG_ENTRIES: usize = 8;
/// Most identities one keyless policy may list.
pub const MAX_IDENTITIES: usize = 256;
/// Largest `subjectRegExp` / `issuerRegExp` compiled (bytes of compiled program).
const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// id-kp-codeSigning (1.3.6.1.5.5.7.3.3), DER contents of the OID.
const EKU_CODE_SIGNING: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x03];
/// Fulcio's OIDC issuer extensions: v1 (raw string, deprecated) and v2 (DER UTF8String).
const OID_ISSUER_V1: &str = "1.3.6.1.4.1.57264.1.1";
const OID_ISSUER_V2: &str = "1.3.6.1.4.1.57264.1.8";

/// Why a keyless bundle was refused: one kind per check, so callers (and tests) match on kinds.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeylessError {
    #[error("trusted root: {0}")]
    TrustedRoot(String),
    #[error("bundle: {0}")]
    Bundle(String),
    #[error("not supported: {0}")]
    Unsupported(String),
    #[error("signature: {0}")]
    Signature(String),
    #[error("transparency log: {0}")]
    UnknownLog(String),
    #[error("transparency log: {0}")]
    TransparencyLog(String),
    #[error("transparency log: signed entry timestamp: {0}")]
    SignedEntryTimestamp(String),
    #[error("transparency log: inclusion proof: {0}")]
    InclusionProof(String),
    #[error("transparency log: checkpoint: {0}")]
    Checkpoint(String),
    #[error("transparency log: the entry does not match the bundle: {0}")]
    LogEntryMismatch(String),
    #[error("certificate: {0}")]
    CertificateValidity(String),
    #[error("certificate chain: {0}")]
    CertificateChain(String),
    #[error("identity: {0}")]
    Identity(String),
    #[error("subject: {0}")]
    Subject(String),
}

/// One accepted certificate identity: an OIDC issuer (exact or pattern) and a subject (SAN URI or
/// email; exact or pattern). Patterns must match the whole value.
#[derive(Debug, Clone)]
pub struct Identity {
    issuer: Matcher,
    subject: Matcher,
}

#[derive(Debug, Clone)]
enum Matcher {
    Exact(String),
    Pattern(regex::Regex),
}

impl Matcher {
    fn new(exact: Option<&str>, pattern: Option<&str>, what: &str) -> Result<Matcher, String> {
        match (exact, pattern) {
            (Some(e), None) if !e.is_empty() => Ok(Matcher::Exact(e.to_string())),
            (None, Some(p)) if !p.is_empty() => regex::RegexBuilder::new(&format!("^(?:{p})$"))
                .size_limit(REGEX_SIZE_LIMIT)
                .build()
                .map(Matcher::Pattern)
                .map_err(|e| format!("{what}RegExp {p:?}: {e}")),
            (Some(_), Some(_)) => Err(format!("give either {what} or {what}RegExp, not both")),
            _ => Err(format!(
                "{what} or {what}RegExp is required (and not empty)"
            )),
        }
    }

    fn matches(&self, v: &str) -> bool {
        match self {
            Matcher::Exact(e) => e == v,
            Matcher::Pattern(p) => p.is_match(v),
        }
    }
}

impl std::fmt::Display for Matcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Matcher::Exact(e) => write!(f, "{e:?}"),
            Matcher::Pattern(p) => write!(f, "/{}/", p.as_str()),
        }
    }
}

impl Identity {
    /// An identity from the policy's fields; exactly one of each pair must be given.
    pub fn new(
        issuer: Option<&str>,
        issuer_regexp: Option<&str>,
        subject: Option<&str>,
        subject_regexp: Option<&str>,
    ) -> Result<Identity, String> {
        Ok(Identity {
            issuer: Matcher::new(issuer, issuer_regexp, "issuer")?,
            subject: Matcher::new(subject, subject_regexp, "subject")?,
        })
    }
}

/// What a keyless trust policy holds: the trusted root and the accepted identities.
#[derive(Debug, Clone)]
pub struct KeylessPolicy {
    pub root: TrustedRoot,
    pub identities: Vec<Identity>,
}

/// The identity a Fulcio certificate was issued to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertIdentity {
    pub issuer: String,
    /// SAN URIs and email addresses.
    pub subjects: Vec<String>,
}

/// A verified keyless bundle.
#[derive(Debug, Clone)]
pub struct KeylessVerified {
    pub identity: CertIdentity,
    /// The subject value that matched the policy.
    pub subject: String,
    pub entries: Vec<VerifiedEntry>,
    /// DSSE bundles: the statement's predicate type, subjects and the envelope JSON.
    pub statement: Option<crate::verify::VerifiedStatement>,
}

impl KeylessVerified {
    /// `"<subject> (issuer <issuer>), Rekor log index N at <time>"`, for messages.
    pub fn describe(&self) -> String {
        let e = self.entries.first();
        format!(
            "keyless {} (issuer {}), Rekor log index {} at {}",
            self.subject,
            self.identity.issuer,
            e.map(|e| e.log_index).unwrap_or_default(),
            e.map(|e| e.integrated_time.to_rfc3339())
                .unwrap_or_default()
        )
    }
}

/// What the bundle must be a signature of.
#[derive(Debug, Clone, Copy)]
pub enum Content<'a> {
    /// A DSSE bundle whose in-toto statement names this digest (`sha256:<hex>`) as a subject.
    StatementSubject(&'a str),
    /// A message-signature bundle over these bytes.
    Artifact(&'a [u8]),
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Bundle {
    media_type: String,
    verification_material: Material,
    #[serde(default)]
    dsse_envelope: Option<DsseEnvelope>,
    #[serde(default)]
    message_signature: Option<MessageSignature>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Material {
    #[serde(default)]
    certificate: Option<RawBytes>,
    #[serde(default)]
    x509_certificate_chain: Option<Chain>,
    #[serde(default)]
    public_key: Option<serde_json::Value>,
    #[serde(default)]
    tlog_entries: Vec<tlog::TlogEntry>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawBytes {
    raw_bytes: String,
}

#[derive(Deserialize)]
struct Chain {
    #[serde(default)]
    certificates: Vec<RawBytes>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct MessageSignature {
    #[serde(default)]
    message_digest: Option<HashOutput>,
    signature: String,
}

#[derive(Deserialize)]
struct HashOutput {
    algorithm: String,
    digest: String,
}

/// The bundle's minor version (1, 2 or 3).
fn bundle_version(media_type: &str) -> Result<u8, KeylessError> {
    match media_type.replace(' ', "").as_str() {
        "application/vnd.dev.sigstore.bundle+json;version=0.1" => Ok(1),
        "application/vnd.dev.sigstore.bundle+json;version=0.2"
        | "application/vnd.dev.sigstore.bundle.v0.2+json" => Ok(2),
        "application/vnd.dev.sigstore.bundle+json;version=0.3"
        | "application/vnd.dev.sigstore.bundle.v0.3+json" => Ok(3),
        _ => Err(KeylessError::Bundle(format!(
            "unsupported bundle media type {media_type:?} (v0.1 to v0.3 are supported)"
        ))),
    }
}

const LEAF_ALGS: &[&dyn SignatureVerificationAlgorithm] = &[
    alg::ECDSA_P256_SHA256,
    alg::ECDSA_P384_SHA384,
    alg::ECDSA_P256_SHA384,
    alg::ECDSA_P384_SHA256,
    alg::RSA_PKCS1_2048_8192_SHA256,
    alg::RSA_PSS_2048_8192_SHA256_LEGACY_KEY,
    alg::ED25519,
];

fn leaf_verifies(leaf: &webpki::EndEntityCert<'_>, msg: &[u8], sig: &[u8]) -> bool {
    LEAF_ALGS
        .iter()
        .any(|a| leaf.verify_signature(*a, msg, sig).is_ok())
}

/// Verifies a keyless bundle offline against `policy` (see the module documentation for every
/// check and its order). `now` bounds the integrated time (a log entry from the future is
/// refused); the certificate itself is checked at the integrated time, never at `now`.
pub fn verify_keyless_bundle(
    bundle: &[u8],
    policy: &KeylessPolicy,
    content: Content<'_>,
    now: DateTime<Utc>,
) -> Result<KeylessVerified, KeylessError> {
    let b: Bundle = serde_json::from_slice(bundle)
        .map_err(|e| KeylessError::Bundle(format!("not a Sigstore bundle: {e}")))?;
    let version = bundle_version(&b.media_type)?;
    let vm = b.verification_material;
    if vm.public_key.is_some() {
        return Err(KeylessError::Bundle(
            "the bundle is signed with a key, not a Fulcio certificate (use cosign.publicKeys)"
                .into(),
        ));
    }
    // 1. The signing (leaf) certificate. Any further certificates of a v0.1/v0.2 chain are not
    //    used: the path is built from the trusted root's certificate authorities only.
    let leaf_der: CertificateDer<'static> = match (vm.certificate, vm.x509_certificate_chain) {
        (Some(c), None) => B64
            .decode(c.raw_bytes.trim())
            .map(CertificateDer::from)
            .map_err(|_| KeylessError::Bundle("certificate.rawBytes is not base64".into()))?,
        (None, Some(ch)) => {
            if ch.certificates.len() > MAX_CHAIN_LEN {
                return Err(KeylessError::Bundle(format!(
                    "x509CertificateChain of {} certificates, more than {MAX_CHAIN_LEN}",
                    ch.certificates.len()
                )));
            }
            let first = ch.certificates.first().ok_or_else(|| {
                KeylessError::Bundle("x509CertificateChain has no certificate".into())
            })?;
            B64.decode(first.raw_bytes.trim())
                .map(CertificateDer::from)
                .map_err(|_| KeylessError::Bundle("certificate rawBytes is not base64".into()))?
        }
        (Some(_), Some(_)) => {
            return Err(KeylessError::Bundle(
                "the bundle has both certificate and x509CertificateChain".into(),
            ))
        }
        (None, None) => {
            return Err(KeylessError::Bundle(
                "the bundle has no signing certificate".into(),
            ))
        }
    };
    let (_, cert) = x509_parser::parse_x509_certificate(leaf_der.as_ref())
        .map_err(|e| KeylessError::Bundle(format!("signing certificate: {e}")))?;
    let leaf = webpki::EndEntityCert::try_from(&leaf_der)
        .map_err(|e| KeylessError::Bundle(format!("signing certificate: {e}")))?;

    // 2. The signature over the content, with the leaf's key.
    let env_payload = match &b.dsse_envelope {
        Some(env) => B64
            .decode(env.payload.trim())
            .map_err(|_| KeylessError::Bundle("DSSE payload is not base64".into()))?,
        None => Vec::new(),
    };
    let dsse_sigs: Vec<String> = b
        .dsse_envelope
        .iter()
        .flat_map(|e| e.signatures.iter().map(|s| s.sig.clone()))
        .collect();
    let message_digest: [u8; 32];
    let message_sig: Vec<u8>;
    let logged = match (&b.dsse_envelope, &b.message_signature) {
        (Some(env), None) => {
            if env.payload_type != crate::oci::IN_TOTO {
                return Err(KeylessError::Bundle(format!(
                    "DSSE payload type {:?} is not in-toto",
                    env.payload_type
                )));
            }
            if env.signatures.len() != 1 {
                return Err(KeylessError::Bundle(format!(
                    "a keyless DSSE envelope carries exactly one signature, not {}",
                    env.signatures.len()
                )));
            }
            let sig = B64
                .decode(env.signatures[0].sig.trim())
                .map_err(|_| KeylessError::Signature("DSSE signature is not base64".into()))?;
            if !leaf_verifies(
                &leaf,
                &crate::verify::pae(&env.payload_type, &env_payload),
                &sig,
            ) {
                return Err(KeylessError::Signature(
                    "the DSSE signature does not verify with the signing certificate's key".into(),
                ));
            }
            tlog::Logged::Dsse {
                payload_b64: &env.payload,
                payload: &env_payload,
                signatures: &dsse_sigs,
            }
        }
        (None, Some(ms)) => {
            let Content::Artifact(artifact) = content else {
                return Err(KeylessError::Unsupported(
                    "a message-signature bundle signs a blob, not an in-toto statement (DSSE bundles only here)".into(),
                ));
            };
            message_digest = Sha256::digest(artifact).into();
            if let Some(d) = &ms.message_digest {
                let theirs = B64.decode(d.digest.trim()).map_err(|_| {
                    KeylessError::Bundle("messageDigest.digest is not base64".into())
                })?;
                if d.algorithm != "SHA2_256" || theirs != message_digest {
                    return Err(KeylessError::Subject(format!(
                        "the bundle's message digest ({} {}) is not the artifact's sha256:{}",
                        d.algorithm,
                        d.digest,
                        tlog_hex(&message_digest)
                    )));
                }
            }
            message_sig = B64
                .decode(ms.signature.trim())
                .map_err(|_| KeylessError::Signature("message signature is not base64".into()))?;
            if !leaf_verifies(&leaf, artifact, &message_sig) {
                return Err(KeylessError::Signature(
                    "the message signature does not verify with the signing certificate's key"
                        .into(),
                ));
            }
            tlog::Logged::Message {
                digest: &message_digest,
                signature: &message_sig,
            }
        }
        (Some(_), Some(_)) => {
            return Err(KeylessError::Bundle(
                "the bundle has both a DSSE envelope and a message signature".into(),
            ))
        }
        (None, None) => {
            return Err(KeylessError::Bundle(
                "the bundle has no DSSE envelope and no message signature".into(),
            ))
        }
    };

    // 3. The transparency log entries: every one must verify.
    if vm.tlog_entries.is_empty() {
        return Err(KeylessError::TransparencyLog(
            "the bundle has no transparency log entry".into(),
        ));
    }
    if vm.tlog_entries.len() > MAX_TLOG_ENTRIES {
        return Err(KeylessError::TransparencyLog(format!(
            "{} transparency log entries, more than {MAX_TLOG_ENTRIES}",
            vm.tlog_entries.len()
        )));
    }
    let mut entries = Vec::new();
    for e in &vm.tlog_entries {
        entries.push(tlog::verify_entry(
            e,
            &policy.root,
            &logged,
            &leaf_der,
            version >= 2,
        )?);
    }

    // 4. The certificate at each integrated time: validity, then the chain to a CA of the
    //    trusted root valid at that time.
    let not_before = cert.validity().not_before.timestamp();
    let not_after = cert.validity().not_after.timestamp();
    for e in &entries {
        let t = e.integrated_time;
        if t > now + chrono::Duration::minutes(5) {
            return Err(KeylessError::TransparencyLog(format!(
                "integrated time {} is in the future",
                t.to_rfc3339()
            )));
        }
        if t.timestamp() < not_before || t.timestamp() > not_after {
            return Err(KeylessError::CertificateValidity(format!(
                "the signing certificate is valid from {} to {}, not at the log's integrated time {}",
                fmt_ts(not_before),
                fmt_ts(not_after),
                t.to_rfc3339()
            )));
        }
        check_chain(&leaf, &policy.root, t)?;
    }

    // 5. The identity.
    let identity = cert_identity(&cert)?;
    let subject = policy
        .identities
        .iter()
        .find_map(|id| {
            if !id.issuer.matches(&identity.issuer) {
                return None;
            }
            identity
                .subjects
                .iter()
                .find(|s| id.subject.matches(s))
                .cloned()
        })
        .ok_or_else(|| {
            KeylessError::Identity(format!(
                "certificate identity {} (issuer {}) is not an identity of this trust policy ({})",
                identity.subjects.join(", "),
                identity.issuer,
                policy
                    .identities
                    .iter()
                    .map(|i| format!("issuer {} subject {}", i.issuer, i.subject))
                    .collect::<Vec<_>>()
                    .join("; ")
            ))
        })?;

    // 6. What was signed.
    let statement = match (&b.dsse_envelope, content) {
        (Some(env), Content::StatementSubject(target)) => {
            let (predicate_type, subjects) =
                crate::verify::statement_subjects(&env_payload, target)
                    .map_err(KeylessError::Subject)?;
            Some(crate::verify::VerifiedStatement {
                predicate_type,
                subjects,
                envelope_json: serde_json::to_vec(&serde_json::json!({
                    "payload": env.payload,
                    "payloadType": env.payload_type,
                    "signatures": env.signatures.iter().map(|s| serde_json::json!({"sig": s.sig})).collect::<Vec<_>>(),
                }))
                .map_err(|e| KeylessError::Bundle(e.to_string()))?,
                key: String::new(),
            })
        }
        (Some(_), Content::Artifact(a)) => {
            let target = format!("sha256:{}", tlog_hex(&Sha256::digest(a)));
            let (predicate_type, subjects) =
                crate::verify::statement_subjects(&env_payload, &target)
                    .map_err(KeylessError::Subject)?;
            Some(crate::verify::VerifiedStatement {
                predicate_type,
                subjects,
                envelope_json: Vec::new(),
                key: String::new(),
            })
        }
        (None, _) => None,
    };
    let mut out = KeylessVerified {
        identity,
        subject,
        entries,
        statement,
    };
    let d = out.describe();
    if let Some(st) = out.statement.as_mut() {
        st.key = d;
    }
    Ok(out)
}

fn tlog_hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn fmt_ts(t: i64) -> String {
    DateTime::<Utc>::from_timestamp(t, 0)
        .map(|d| d.to_rfc3339())
        .unwrap_or_else(|| t.to_string())
}

fn check_chain(
    leaf: &webpki::EndEntityCert<'_>,
    root: &TrustedRoot,
    t: DateTime<Utc>,
) -> Result<(), KeylessError> {
    let secs = u64::try_from(t.timestamp())
        .map_err(|_| KeylessError::CertificateChain("time before 1970".into()))?;
    let at = UnixTime::since_unix_epoch(std::time::Duration::from_secs(secs));
    let mut tried = Vec::new();
    for ca in &root.certificate_authorities {
        if !ca.valid_for.contains(t) {
            continue;
        }
        let Some((anchor_der, intermediates)) = ca.chain.split_last() else {
            continue;
        };
        let Ok(anchor) = webpki::anchor_from_trusted_cert(anchor_der) else {
            continue;
        };
        match leaf.verify_for_usage(
            webpki::ALL_VERIFICATION_ALGS,
            &[anchor],
            intermediates,
            at,
            webpki::KeyUsage::required(EKU_CODE_SIGNING),
            None,
            None,
        ) {
            Ok(_) => return Ok(()),
            Err(e) => tried.push(format!("{} ({}): {e:?}", ca.uri, ca.valid_for)),
        }
    }
    Err(KeylessError::CertificateChain(if tried.is_empty() {
        format!(
            "no certificate authority of the trusted root {} is valid at the log's integrated time {}",
            root.source,
            t.to_rfc3339()
        )
    } else {
        format!(
            "the signing certificate does not chain to a certificate authority of the trusted root {} at {}: {}",
            root.source,
            t.to_rfc3339(),
            tried.join("; ")
        )
    }))
}

/// A DER UTF8String's contents.
fn der_utf8(v: &[u8]) -> Option<&str> {
    let (&tag, rest) = v.split_first()?;
    if tag != 0x0c {
        return None;
    }
    let (&len0, rest) = rest.split_first()?;
    let (len, rest) = if len0 < 0x80 {
        (usize::from(len0), rest)
    } else {
        let n = usize::from(len0 & 0x7f);
        if n == 0 || n > 2 || rest.len() < n {
            return None;
        }
        let mut l = 0usize;
        for b in &rest[..n] {
            l = (l << 8) | usize::from(*b);
        }
        (l, &rest[n..])
    };
    if rest.len() != len {
        return None;
    }
    std::str::from_utf8(rest).ok()
}

/// The OIDC issuer (Fulcio extension .1.8, else .1.1) and the SAN URIs and emails.
pub fn cert_identity(
    cert: &x509_parser::certificate::X509Certificate<'_>,
) -> Result<CertIdentity, KeylessError> {
    let mut v1 = None;
    let mut v2 = None;
    for ext in cert.extensions() {
        match ext.oid.to_id_string().as_str() {
            OID_ISSUER_V1 => v1 = std::str::from_utf8(ext.value).ok().map(str::to_string),
            OID_ISSUER_V2 => {
                v2 = Some(der_utf8(ext.value).map(str::to_string).ok_or_else(|| {
                    KeylessError::Identity(
                        "the issuer extension 1.3.6.1.4.1.57264.1.8 is not a UTF8String".into(),
                    )
                })?)
            }
            _ => {}
        }
    }
    if let (Some(a), Some(b)) = (&v1, &v2) {
        if a != b {
            return Err(KeylessError::Identity(format!(
                "the certificate names two issuers: {a:?} (1.3.6.1.4.1.57264.1.1) and {b:?} (1.3.6.1.4.1.57264.1.8)"
            )));
        }
    }
    let issuer = v2.or(v1).ok_or_else(|| {
        KeylessError::Identity(
            "the certificate has no OIDC issuer extension (not issued by Fulcio)".into(),
        )
    })?;
    let san = cert
        .subject_alternative_name()
        .map_err(|e| KeylessError::Identity(format!("subjectAltName: {e}")))?
        .ok_or_else(|| KeylessError::Identity("the certificate has no subjectAltName".into()))?;
    let subjects: Vec<String> = san
        .value
        .general_names
        .iter()
        .filter_map(|g| match g {
            x509_parser::extensions::GeneralName::URI(u) => Some(u.to_string()),
            x509_parser::extensions::GeneralName::RFC822Name(e) => Some(e.to_string()),
            _ => None,
        })
        .collect();
    if subjects.is_empty() {
        return Err(KeylessError::Identity(
            "the certificate's subjectAltName has no URI or email".into(),
        ));
    }
    Ok(CertIdentity { issuer, subjects })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn der_utf8_strings() {
        assert_eq!(der_utf8(&[0x0c, 2, b'h', b'i']), Some("hi"));
        assert_eq!(der_utf8(&[0x0c, 3, b'h', b'i']), None);
        assert_eq!(der_utf8(&[0x13, 2, b'h', b'i']), None);
        let mut long = vec![0x0c, 0x81, 200];
        long.extend(std::iter::repeat_n(b'a', 200));
        assert_eq!(der_utf8(&long).map(str::len), Some(200));
    }

    #[test]
    fn identity_fields() {
        assert!(Identity::new(Some("i"), None, Some("s"), None).is_ok());
        assert!(Identity::new(Some("i"), Some("i"), Some("s"), None).is_err());
        assert!(Identity::new(None, None, Some("s"), None).is_err());
        assert!(Identity::new(Some("i"), None, None, Some("(")).is_err());
        let id =
            Identity::new(Some("i"), None, None, Some("https://github.com/org/.*")).expect("ok");
        assert!(id.subject.matches("https://github.com/org/repo"));
        // Anchored: a prefix or a suffix elsewhere does not match.
        assert!(!id
            .subject
            .matches("https://evil.example/https://github.com/org/repo"));
    }
}
