//! Signature verification of findings artifacts: Notary Project JWS envelopes and cosign
//! (sigstore bundle v0.3 DSSE, legacy simple-signing). Pure functions over bytes.
//!
//! The cryptography is rustls-webpki's (ring underneath): X.509 path building with a required
//! code-signing EKU at a given time (`EndEntityCert::verify_for_usage`), signature checks with a
//! certificate's key (`EndEntityCert::verify_signature`) or a bare SPKI (`RawPublicKeyEntity`).
//! What is written by hand here is only the glue no reviewed crate offers without a large
//! dependency tree (a JOSE or sigstore library): decoding the envelopes, the DSSE pre-authentication
//! encoding, mapping JWS `alg` names to webpki algorithms, and re-encoding JWS ECDSA signatures
//! (raw `r||s`) as the DER webpki expects. Every check fails closed.

use std::path::PathBuf;

use base64::Engine as _;
use chrono::{DateTime, Utc};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{
    CertificateDer, SignatureVerificationAlgorithm, SubjectPublicKeyInfoDer, UnixTime,
};
use serde::Deserialize;
use sha2::{Digest as _, Sha256};
use webpki::ring as alg;

use crate::error::{Error, Result};

/// id-kp-codeSigning (1.3.6.1.5.5.7.3.3), DER contents of the OID.
const EKU_CODE_SIGNING: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x03];

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;
const B64URL: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;

fn b64url(s: &str) -> std::result::Result<Vec<u8>, String> {
    B64URL
        .decode(s.trim_end_matches('='))
        .map_err(|_| "invalid base64url".to_string())
}

/// A cosign public key.
#[derive(Debug, Clone)]
pub struct CosignKey {
    pub source: String,
    spki: SubjectPublicKeyInfoDer<'static>,
    /// base64(sha256(SPKI DER)): the `publicKey.hint` cosign writes into bundles.
    pub hint: String,
}

impl CosignKey {
    pub fn from_pem(pem: &[u8], source: &str) -> Result<CosignKey> {
        let spki = SubjectPublicKeyInfoDer::from_pem_slice(pem)
            .map_err(|e| Error::Config(format!("{source}: not a PEM public key: {e}")))?;
        webpki::RawPublicKeyEntity::try_from(&spki)
            .map_err(|e| Error::Config(format!("{source}: unusable public key: {e}")))?;
        let hint = B64.encode(Sha256::digest(spki.as_ref()));
        Ok(CosignKey {
            source: source.to_string(),
            spki,
            hint,
        })
    }

    /// Verifies a DER (ASN.1) ECDSA, PKCS#1 v1.5 RSA or Ed25519 signature over `msg`.
    pub fn verify(&self, msg: &[u8], sig: &[u8]) -> bool {
        const ALGS: &[&dyn SignatureVerificationAlgorithm] = &[
            alg::ECDSA_P256_SHA256,
            alg::ECDSA_P384_SHA384,
            alg::ECDSA_P384_SHA256,
            alg::ECDSA_P256_SHA384,
            alg::RSA_PKCS1_2048_8192_SHA256,
            alg::ED25519,
        ];
        let Ok(k) = webpki::RawPublicKeyEntity::try_from(&self.spki) else {
            return false;
        };
        ALGS.iter()
            .any(|a| k.verify_signature(*a, msg, sig).is_ok())
    }
}

/// Trust material of one policy, loaded from its files.
#[derive(Debug, Clone, Default)]
pub struct TrustMaterial {
    pub notation_roots: Vec<CertificateDer<'static>>,
    /// Which signing certificates (below the roots) may sign for the policy's scope.
    pub notation_identities: TrustedIdentities,
    pub cosign_keys: Vec<CosignKey>,
    /// cosign keyless: the trusted root and the certificate identities accepted.
    pub cosign_keyless: Option<crate::keyless::KeylessPolicy>,
    pub has_notation: bool,
    pub has_cosign: bool,
}

impl TrustMaterial {
    pub fn load(
        roots: &[PathBuf],
        identities: &[String],
        keys: &[PathBuf],
        notation: bool,
        cosign: bool,
    ) -> Result<TrustMaterial> {
        TrustMaterial::load_with_keyless(roots, identities, keys, notation, cosign, None)
    }

    /// [`TrustMaterial::load`] with cosign keyless material (`cosign.keyless`).
    pub fn load_with_keyless(
        roots: &[PathBuf],
        identities: &[String],
        keys: &[PathBuf],
        notation: bool,
        cosign: bool,
        keyless: Option<&crate::config::KeylessTrust>,
    ) -> Result<TrustMaterial> {
        let mut m = TrustMaterial {
            has_notation: notation,
            has_cosign: cosign,
            notation_identities: TrustedIdentities::parse(identities)
                .map_err(|e| Error::Config(format!("notation.trustedIdentities: {e}")))?,
            ..TrustMaterial::default()
        };
        for p in roots {
            let bytes = std::fs::read(p)
                .map_err(|e| Error::Config(format!("notation trust store {}: {e}", p.display())))?;
            let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&bytes)
                .collect::<std::result::Result<_, _>>()
                .map_err(|e| Error::Config(format!("notation trust store {}: {e}", p.display())))?;
            if certs.is_empty() {
                return Err(Error::Config(format!(
                    "notation trust store {}: no PEM certificate",
                    p.display()
                )));
            }
            for c in &certs {
                webpki::anchor_from_trusted_cert(c).map_err(|e| {
                    Error::Config(format!(
                        "notation trust store {}: unusable certificate: {e}",
                        p.display()
                    ))
                })?;
            }
            m.notation_roots.extend(certs);
        }
        for p in keys {
            let bytes = std::fs::read(p)
                .map_err(|e| Error::Config(format!("cosign public key {}: {e}", p.display())))?;
            m.cosign_keys
                .push(CosignKey::from_pem(&bytes, &p.display().to_string())?);
        }
        if notation && m.notation_roots.is_empty() {
            return Err(Error::Config(
                "notation.trustStore lists no certificate".into(),
            ));
        }
        if let Some(k) = keyless {
            m.cosign_keyless = Some(load_keyless(k)?);
        }
        if cosign && m.cosign_keys.is_empty() && m.cosign_keyless.is_none() {
            return Err(Error::Config(
                "cosign lists no public key (publicKeys) and no keyless trust (keyless)".into(),
            ));
        }
        Ok(m)
    }
}

fn load_keyless(k: &crate::config::KeylessTrust) -> Result<crate::keyless::KeylessPolicy> {
    use crate::keyless::{Identity, KeylessPolicy, TrustedRoot, MAX_IDENTITIES};
    let root = TrustedRoot::load(&k.trusted_root)
        .map_err(|e| Error::Config(format!("cosign.keyless.trustedRoot: {e}")))?;
    if k.identities.is_empty() {
        return Err(Error::Config(
            "cosign.keyless.identities is empty: name at least one issuer and subject (any \
             account of a public OIDC provider can get a Fulcio certificate)"
                .into(),
        ));
    }
    if k.identities.len() > MAX_IDENTITIES {
        return Err(Error::Config(format!(
            "cosign.keyless.identities lists more than {MAX_IDENTITIES} identities"
        )));
    }
    let identities = k
        .identities
        .iter()
        .enumerate()
        .map(|(i, id)| {
            Identity::new(
                id.issuer.as_deref(),
                id.issuer_reg_exp.as_deref(),
                id.subject.as_deref(),
                id.subject_reg_exp.as_deref(),
            )
            .map_err(|e| Error::Config(format!("cosign.keyless.identities[{i}]: {e}")))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(KeylessPolicy { root, identities })
}

/// What a signature must be over: the findings artifact's manifest descriptor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target<'a> {
    pub digest: &'a str,
    pub size: Option<u64>,
    pub media_type: Option<&'a str>,
}

// -------------------------------------------------------------------------------------------------
// Notary Project JWS

#[derive(Deserialize)]
struct Jws {
    payload: String,
    protected: String,
    #[serde(default)]
    header: JwsHeader,
    signature: String,
}

#[derive(Deserialize, Default)]
struct JwsHeader {
    #[serde(default)]
    x5c: Vec<String>,
}

#[derive(Deserialize)]
struct Protected {
    alg: String,
    #[serde(default)]
    crit: Vec<String>,
    #[serde(default)]
    cty: Option<String>,
    #[serde(rename = "io.cncf.notary.signingScheme")]
    signing_scheme: Option<String>,
    #[serde(rename = "io.cncf.notary.signingTime")]
    signing_time: Option<DateTime<Utc>>,
    #[serde(rename = "io.cncf.notary.expiry")]
    expiry: Option<DateTime<Utc>>,
    #[serde(flatten)]
    rest: serde_json::Map<String, serde_json::Value>,
}

#[derive(Deserialize)]
struct NotaryPayload {
    #[serde(rename = "targetArtifact")]
    target: TargetArtifact,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TargetArtifact {
    digest: String,
    #[serde(default)]
    media_type: Option<String>,
    #[serde(default)]
    size: Option<u64>,
}

/// A verified Notary Project signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotationVerified {
    pub signing_time: DateTime<Utc>,
    /// The signing (leaf) certificate, DER.
    pub leaf: CertificateDer<'static>,
}

/// Notary Project `trustedIdentities` (trust store and trust policy specification): `*`, or
/// `x509.subject: C=.., ST=.., O=..[, ...]` entries; a signing certificate is trusted when its
/// subject holds every attribute of one entry (a partial DN matches a fuller subject).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum TrustedIdentities {
    /// Any certificate that chains to the trust store (`*`, or none configured).
    #[default]
    Any,
    /// At least one entry must match the leaf's subject.
    Subjects(Vec<Vec<(String, String)>>),
}

/// Short names of the DN attribute types, by OID.
const DN_ATTRS: &[(&str, &str)] = &[
    ("2.5.4.3", "CN"),
    ("2.5.4.6", "C"),
    ("2.5.4.7", "L"),
    ("2.5.4.8", "ST"),
    ("2.5.4.9", "STREET"),
    ("2.5.4.10", "O"),
    ("2.5.4.11", "OU"),
    ("2.5.4.5", "SERIALNUMBER"),
    ("0.9.2342.19200300.100.1.25", "DC"),
    ("1.2.840.113549.1.9.1", "EMAILADDRESS"),
];

/// Splits a DN string at unescaped `,` and unescapes `\,`, `\;`, `\\` and `\ `.
fn parse_dn(dn: &str) -> std::result::Result<Vec<(String, String)>, String> {
    let mut parts = Vec::new();
    let mut cur = String::new();
    let mut chars = dn.chars();
    // Each part keeps a marker of escaped leading/trailing spaces by unescaping after trim.
    let mut raw_parts = Vec::new();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(n) => {
                    cur.push('\\');
                    cur.push(n);
                }
                None => return Err(format!("{dn:?}: trailing backslash")),
            },
            ',' => raw_parts.push(std::mem::take(&mut cur)),
            c => cur.push(c),
        }
    }
    raw_parts.push(cur);
    for p in raw_parts {
        let p = p.trim();
        let (k, v) = p
            .split_once('=')
            .ok_or_else(|| format!("{dn:?}: {p:?} is not TYPE=value"))?;
        let k = k.trim().to_ascii_uppercase();
        let v = v.trim_start();
        let mut val = String::new();
        let mut it = v.chars();
        while let Some(c) = it.next() {
            if c == '\\' {
                if let Some(n) = it.next() {
                    val.push(n);
                }
            } else {
                val.push(c);
            }
        }
        if k.is_empty() || val.is_empty() {
            return Err(format!("{dn:?}: empty attribute in {p:?}"));
        }
        if !DN_ATTRS.iter().any(|(_, n)| *n == k) {
            return Err(format!("{dn:?}: unknown attribute type {k:?}"));
        }
        parts.push((k, val));
    }
    Ok(parts)
}

impl TrustedIdentities {
    /// Parses the policy's list; empty or `["*"]` is [`TrustedIdentities::Any`].
    pub fn parse(list: &[String]) -> std::result::Result<TrustedIdentities, String> {
        if list.is_empty() || (list.len() == 1 && list[0].trim() == "*") {
            return Ok(TrustedIdentities::Any);
        }
        let mut out = Vec::new();
        for item in list {
            if item.trim() == "*" {
                return Err("\"*\" must be the only entry".into());
            }
            let dn = item.trim().strip_prefix("x509.subject:").ok_or_else(|| {
                format!("{item:?}: expected \"x509.subject: C=.., ST=.., O=..\" or \"*\"")
            })?;
            let attrs = parse_dn(dn)?;
            for need in ["C", "ST", "O"] {
                if !attrs.iter().any(|(k, _)| k == need) {
                    return Err(format!("{item:?}: lacks {need} (C, ST and O are required)"));
                }
            }
            out.push(attrs);
        }
        Ok(TrustedIdentities::Subjects(out))
    }

    /// Whether the signing certificate's subject is a trusted identity.
    pub fn check(&self, leaf: &CertificateDer<'_>) -> std::result::Result<(), String> {
        let TrustedIdentities::Subjects(list) = self else {
            return Ok(());
        };
        let (_, cert) = x509_parser::parse_x509_certificate(leaf.as_ref())
            .map_err(|e| format!("signing certificate: {e}"))?;
        let mut subject: Vec<(String, String)> = Vec::new();
        for rdn in cert.subject().iter() {
            for a in rdn.iter() {
                let oid = a.attr_type().to_id_string();
                let name = DN_ATTRS
                    .iter()
                    .find(|(o, _)| *o == oid)
                    .map(|(_, n)| n.to_string())
                    .unwrap_or(oid);
                let value = a
                    .as_str()
                    .map_err(|e| format!("signing certificate subject: {e}"))?;
                subject.push((name, value.to_string()));
            }
        }
        if list
            .iter()
            .any(|want| want.iter().all(|w| subject.contains(w)))
        {
            return Ok(());
        }
        Err(format!(
            "signing certificate subject {:?} is not a trusted identity of this trust policy",
            cert.subject().to_string()
        ))
    }
}

fn jws_alg(name: &str) -> Option<(&'static dyn SignatureVerificationAlgorithm, bool)> {
    // (algorithm, raw r||s ECDSA signature that needs DER re-encoding)
    Some(match name {
        "PS256" => (alg::RSA_PSS_2048_8192_SHA256_LEGACY_KEY, false),
        "PS384" => (alg::RSA_PSS_2048_8192_SHA384_LEGACY_KEY, false),
        "PS512" => (alg::RSA_PSS_2048_8192_SHA512_LEGACY_KEY, false),
        "ES256" => (alg::ECDSA_P256_SHA256, true),
        "ES384" => (alg::ECDSA_P384_SHA384, true),
        _ => return None,
    })
}

/// JWS ECDSA signatures are `r||s`; webpki takes the DER `SEQUENCE { INTEGER r, INTEGER s }`.
fn ecdsa_raw_to_der(raw: &[u8]) -> Option<Vec<u8>> {
    if raw.is_empty() || raw.len() % 2 != 0 || raw.len() > 96 {
        return None;
    }
    let int = |b: &[u8]| {
        let mut b = b;
        while b.len() > 1 && b[0] == 0 {
            b = &b[1..];
        }
        let mut v = vec![0x02];
        let pad = b[0] & 0x80 != 0;
        v.push((b.len() + usize::from(pad)) as u8);
        if pad {
            v.push(0);
        }
        v.extend_from_slice(b);
        v
    };
    let (r, s) = raw.split_at(raw.len() / 2);
    let (r, s) = (int(r), int(s));
    let mut out = vec![0x30, (r.len() + s.len()) as u8];
    out.extend(r);
    out.extend(s);
    Some(out)
}

const KNOWN_CRIT: &[&str] = &["io.cncf.notary.signingScheme", "io.cncf.notary.expiry"];

/// Verifies a Notary Project JWS envelope (`application/jose+json`) over `target`:
/// the signature with the leaf certificate of `x5c`, the chain to one of `roots` with the
/// code-signing EKU, the critical headers, expiry, and that the payload's target descriptor is
/// `target`.
///
/// The chain is checked at `now`, the verification time: without a trusted timestamp (RFC 3161
/// countersignature, which the `notary.x509` scheme does not carry) the signer's own
/// `signingTime` proves nothing, and a signature whose certificate has expired is invalid
/// (Notary Project trust policy specification, "Authentic timestamp").
pub fn verify_notation_jws(
    envelope: &[u8],
    roots: &[CertificateDer<'_>],
    target: &Target<'_>,
    now: DateTime<Utc>,
) -> std::result::Result<NotationVerified, String> {
    let jws: Jws =
        serde_json::from_slice(envelope).map_err(|e| format!("not a JWS JSON envelope: {e}"))?;
    let prot_bytes = b64url(&jws.protected).map_err(|e| format!("protected header: {e}"))?;
    let prot: Protected =
        serde_json::from_slice(&prot_bytes).map_err(|e| format!("protected header: {e}"))?;
    for c in &prot.crit {
        if !KNOWN_CRIT.contains(&c.as_str()) {
            return Err(format!("unsupported critical header {c:?}"));
        }
        let present = match c.as_str() {
            "io.cncf.notary.signingScheme" => prot.signing_scheme.is_some(),
            "io.cncf.notary.expiry" => prot.expiry.is_some(),
            _ => prot.rest.contains_key(c),
        };
        if !present {
            return Err(format!("critical header {c:?} is missing"));
        }
    }
    if !prot
        .crit
        .iter()
        .any(|c| c == "io.cncf.notary.signingScheme")
    {
        return Err("io.cncf.notary.signingScheme is not marked critical".into());
    }
    if prot.expiry.is_some() && !prot.crit.iter().any(|c| c == "io.cncf.notary.expiry") {
        return Err("io.cncf.notary.expiry is not marked critical".into());
    }
    match prot.signing_scheme.as_deref() {
        Some("notary.x509") => {}
        Some("notary.x509.signingAuthority") => {
            return Err(
                "signing scheme notary.x509.signingAuthority (timestamped) is not supported".into(),
            )
        }
        other => return Err(format!("unknown signing scheme {other:?}")),
    }
    if prot.cty.as_deref() != Some("application/vnd.cncf.notary.payload.v1+json") {
        return Err(format!("unexpected payload content type {:?}", prot.cty));
    }
    let signing_time = prot
        .signing_time
        .ok_or("io.cncf.notary.signingTime is missing")?;
    if signing_time > now + chrono::Duration::minutes(5) {
        return Err(format!("signing time {signing_time} is in the future"));
    }
    if let Some(exp) = prot.expiry {
        if exp <= now {
            return Err(format!("signature expired at {exp}"));
        }
    }
    let (algorithm, raw_ecdsa) =
        jws_alg(&prot.alg).ok_or_else(|| format!("unsupported JWS algorithm {:?}", prot.alg))?;

    let chain: Vec<CertificateDer<'static>> = jws
        .header
        .x5c
        .iter()
        .map(|c| B64.decode(c).map(CertificateDer::from))
        .collect::<std::result::Result<_, _>>()
        .map_err(|_| "x5c: invalid base64".to_string())?;
    let leaf_der = chain.first().ok_or("x5c: no certificate")?;
    let leaf = webpki::EndEntityCert::try_from(leaf_der).map_err(|e| format!("x5c[0]: {e}"))?;

    let mut sig = b64url(&jws.signature).map_err(|e| format!("signature: {e}"))?;
    if raw_ecdsa {
        sig = ecdsa_raw_to_der(&sig).ok_or("signature: malformed ECDSA signature")?;
    }
    let signing_input = format!("{}.{}", jws.protected, jws.payload);
    leaf.verify_signature(algorithm, signing_input.as_bytes(), &sig)
        .map_err(|e| format!("signature does not verify with the x5c leaf certificate: {e}"))?;

    if roots.is_empty() {
        return Err("no trusted root certificate configured".into());
    }
    let anchors: Vec<_> = roots
        .iter()
        .filter_map(|r| webpki::anchor_from_trusted_cert(r).ok())
        .collect();
    let secs = u64::try_from(now.timestamp()).map_err(|_| "verification time before 1970")?;
    let at = UnixTime::since_unix_epoch(std::time::Duration::from_secs(secs));
    leaf.verify_for_usage(
        webpki::ALL_VERIFICATION_ALGS,
        &anchors,
        &chain[1..],
        at,
        webpki::KeyUsage::required(EKU_CODE_SIGNING),
        None,
        None,
    )
    .map_err(|e| {
        format!(
            "certificate chain not trusted at verification time {} (signature not timestamped; signingTime {signing_time} is not trusted): {e:?}",
            now.to_rfc3339()
        )
    })?;

    let payload = b64url(&jws.payload).map_err(|e| format!("payload: {e}"))?;
    let p: NotaryPayload = serde_json::from_slice(&payload)
        .map_err(|e| format!("payload is not a Notary payload: {e}"))?;
    if p.target.digest != target.digest {
        return Err(format!(
            "signature is for {}, not for {}",
            p.target.digest, target.digest
        ));
    }
    if let (Some(a), Some(b)) = (p.target.size, target.size) {
        if a != b {
            return Err(format!("signed size {a} differs from the artifact's {b}"));
        }
    }
    if let (Some(a), Some(b)) = (p.target.media_type.as_deref(), target.media_type) {
        if a != b {
            return Err(format!(
                "signed media type {a} differs from the artifact's {b}"
            ));
        }
    }
    Ok(NotationVerified {
        signing_time,
        leaf: leaf_der.clone().into_owned(),
    })
}

// -------------------------------------------------------------------------------------------------
// cosign / sigstore

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DsseEnvelope {
    pub payload: String,
    pub payload_type: String,
    #[serde(default)]
    pub signatures: Vec<DsseSignature>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct DsseSignature {
    pub sig: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Bundle {
    media_type: String,
    verification_material: VerificationMaterial,
    #[serde(default)]
    dsse_envelope: Option<serde_json::Value>,
    #[serde(default)]
    message_signature: Option<serde_json::Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct VerificationMaterial {
    #[serde(default)]
    public_key: Option<PublicKeyHint>,
    #[serde(default)]
    certificate: Option<serde_json::Value>,
    #[serde(default)]
    x509_certificate_chain: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct PublicKeyHint {
    #[serde(default)]
    hint: Option<String>,
}

/// The in-toto statement a DSSE envelope carried, once verified.
#[derive(Debug, Clone)]
pub struct VerifiedStatement {
    pub predicate_type: String,
    /// `sha256:<hex>` digests of the statement's subjects.
    pub subjects: Vec<String>,
    /// The envelope JSON (what the findings parsers accept).
    pub envelope_json: Vec<u8>,
    /// Which key verified it.
    pub key: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Statement {
    #[serde(rename = "_type")]
    kind: String,
    #[serde(default)]
    subject: Vec<StatementSubject>,
    #[serde(default)]
    predicate_type: String,
}

#[derive(Deserialize)]
struct StatementSubject {
    #[serde(default)]
    digest: std::collections::BTreeMap<String, String>,
}

/// DSSE pre-authentication encoding.
pub fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut v = format!(
        "DSSEv1 {} {} {} ",
        payload_type.len(),
        payload_type,
        payload.len()
    )
    .into_bytes();
    v.extend_from_slice(payload);
    v
}

/// Verifies a DSSE envelope with `keys` (a `hint` narrows the keys tried), then checks that its
/// in-toto statement names `target` as a subject.
pub fn verify_dsse(
    env_json: &[u8],
    keys: &[CosignKey],
    hint: Option<&str>,
    target: &str,
) -> std::result::Result<VerifiedStatement, String> {
    let env: DsseEnvelope =
        serde_json::from_slice(env_json).map_err(|e| format!("not a DSSE envelope: {e}"))?;
    if env.payload_type != crate::oci::IN_TOTO {
        return Err(format!(
            "DSSE payload type {:?} is not in-toto",
            env.payload_type
        ));
    }
    let payload = B64
        .decode(env.payload.trim())
        .map_err(|_| "DSSE payload: invalid base64")?;
    if keys.is_empty() {
        return Err("no cosign public key configured".into());
    }
    let candidates: Vec<&CosignKey> = match hint {
        Some(h) if keys.iter().any(|k| k.hint == h) => {
            keys.iter().filter(|k| k.hint == h).collect()
        }
        _ => keys.iter().collect(),
    };
    let msg = pae(&env.payload_type, &payload);
    let mut key = None;
    'outer: for s in &env.signatures {
        let Ok(sig) = B64.decode(s.sig.trim()) else {
            continue;
        };
        for k in &candidates {
            if k.verify(&msg, &sig) {
                key = Some(k.source.clone());
                break 'outer;
            }
        }
    }
    let key = key.ok_or_else(|| {
        if env.signatures.is_empty() {
            "DSSE envelope has no signature".to_string()
        } else {
            "DSSE signature does not verify with any configured cosign public key".to_string()
        }
    })?;
    let (predicate_type, subjects) = statement_subjects(&payload, target)?;
    Ok(VerifiedStatement {
        predicate_type,
        subjects,
        envelope_json: env_json.to_vec(),
        key,
    })
}

/// Parses a signed in-toto statement and checks that `target` (`sha256:<hex>`) is one of its
/// subjects: `(predicateType, subjects)`.
pub(crate) fn statement_subjects(
    payload: &[u8],
    target: &str,
) -> std::result::Result<(String, Vec<String>), String> {
    let st: Statement = serde_json::from_slice(payload)
        .map_err(|e| format!("DSSE payload is not an in-toto statement: {e}"))?;
    if !st.kind.starts_with("https://in-toto.io/Statement/") {
        return Err(format!("unknown statement type {:?}", st.kind));
    }
    let subjects: Vec<String> = st
        .subject
        .iter()
        .flat_map(|s| s.digest.iter().map(|(a, h)| format!("{a}:{h}")))
        .collect();
    if !subjects.iter().any(|s| s == target) {
        return Err(format!(
            "signed statement is for {}, not for {target}",
            if subjects.is_empty() {
                "no subject".to_string()
            } else {
                subjects.join(", ")
            }
        ));
    }
    Ok((st.predicate_type, subjects))
}

/// Verifies a sigstore bundle with a DSSE envelope over `target` with the trust policy's cosign
/// material: a bundle with a Fulcio certificate against `keyless` (offline: chain, Rekor entry,
/// identity; see [`crate::keyless`]), a bundle with a key hint against `keys`.
pub fn verify_cosign_bundle_with(
    bundle: &[u8],
    keys: &[CosignKey],
    keyless: Option<&crate::keyless::KeylessPolicy>,
    target: &str,
    now: DateTime<Utc>,
) -> std::result::Result<VerifiedStatement, String> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Peek {
        verification_material: PeekMaterial,
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct PeekMaterial {
        #[serde(default)]
        certificate: Option<serde::de::IgnoredAny>,
        #[serde(default)]
        x509_certificate_chain: Option<serde::de::IgnoredAny>,
    }
    let p: Peek =
        serde_json::from_slice(bundle).map_err(|e| format!("not a sigstore bundle: {e}"))?;
    let vm = p.verification_material;
    if vm.certificate.is_none() && vm.x509_certificate_chain.is_none() {
        return verify_cosign_bundle(bundle, keys, target);
    }
    let Some(policy) = keyless else {
        return Err(
            "keyless (Fulcio certificate) bundle, but this trust policy has no cosign.keyless"
                .into(),
        );
    };
    let v = crate::keyless::verify_keyless_bundle(
        bundle,
        policy,
        crate::keyless::Content::StatementSubject(target),
        now,
    )
    .map_err(|e| e.to_string())?;
    v.statement
        .ok_or_else(|| "a keyless bundle without DSSE envelope".to_string())
}

/// Verifies a sigstore bundle v0.3 with a DSSE envelope (what cosign 3 writes for `attest` and
/// `sign`) against public keys, offline. Bundles with a Fulcio certificate are refused here:
/// [`verify_cosign_bundle_with`] verifies them against a keyless policy.
pub fn verify_cosign_bundle(
    bundle: &[u8],
    keys: &[CosignKey],
    target: &str,
) -> std::result::Result<VerifiedStatement, String> {
    let b: Bundle =
        serde_json::from_slice(bundle).map_err(|e| format!("not a sigstore bundle: {e}"))?;
    if !b
        .media_type
        .starts_with("application/vnd.dev.sigstore.bundle")
    {
        return Err(format!("unexpected bundle media type {:?}", b.media_type));
    }
    if b.verification_material.certificate.is_some()
        || b.verification_material.x509_certificate_chain.is_some()
    {
        return Err(
            "keyless (Fulcio certificate) bundle, but this trust policy has no cosign.keyless"
                .into(),
        );
    }
    let hint = b.verification_material.public_key.and_then(|p| p.hint);
    let env = match (b.dsse_envelope, b.message_signature) {
        (Some(e), _) => e,
        (None, Some(_)) => {
            return Err("message-signature bundles are not supported (DSSE only)".into())
        }
        _ => return Err("bundle has no DSSE envelope".into()),
    };
    let env_json = serde_json::to_vec(&env).map_err(|e| e.to_string())?;
    verify_dsse(&env_json, keys, hint.as_deref(), target)
}

#[derive(Deserialize)]
struct SimpleSigning {
    critical: SimpleCritical,
}

#[derive(Deserialize)]
struct SimpleCritical {
    image: SimpleImage,
    #[serde(rename = "type")]
    kind: String,
}

#[derive(Deserialize)]
struct SimpleImage {
    #[serde(rename = "docker-manifest-digest")]
    digest: String,
}

/// Verifies a legacy cosign `.sig` layer: the simple-signing payload and the base64 DER signature
/// from the `dev.cosignproject.cosign/signature` annotation.
pub fn verify_simple_signing(
    payload: &[u8],
    sig_b64: &str,
    keys: &[CosignKey],
    target: &str,
) -> std::result::Result<String, String> {
    let sig = B64
        .decode(sig_b64.trim())
        .map_err(|_| "signature annotation: invalid base64")?;
    let key = keys
        .iter()
        .find(|k| k.verify(payload, &sig))
        .ok_or("simple-signing signature does not verify with any configured cosign public key")?;
    let s: SimpleSigning = serde_json::from_slice(payload)
        .map_err(|e| format!("not a simple-signing payload: {e}"))?;
    if s.critical.kind != "cosign container image signature" {
        return Err(format!(
            "unexpected simple-signing type {:?}",
            s.critical.kind
        ));
    }
    if s.critical.image.digest != target {
        return Err(format!(
            "signature is for {}, not for {target}",
            s.critical.image.digest
        ));
    }
    Ok(key.source.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn der_reencoding() {
        let mut raw = vec![0u8; 64];
        raw[0] = 0x80;
        raw[63] = 1;
        let der = ecdsa_raw_to_der(&raw).expect("der");
        assert_eq!(der[0], 0x30);
        assert_eq!(&der[2..5], &[0x02, 33, 0x00]);
        assert!(ecdsa_raw_to_der(&[1, 2, 3]).is_none());
    }

    #[test]
    fn pae_encoding() {
        assert_eq!(pae("t", b"ab"), b"DSSEv1 1 t 2 ab".to_vec());
    }
}
