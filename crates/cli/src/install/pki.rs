//! The webhook's CA and serving certificate for `vulngate install`.
//!
//! ECDSA P-256 with SHA-256 everywhere. Signatures are RFC 6979 deterministic (p256), the
//! serving key is derived from the CA key (HMAC-SHA256 over the names and the validity start)
//! and certificate serials are hashes of the public keys, so the same CA, names and day give
//! byte-identical certificates: a re-render with `--ca-cert/--ca-key` changes nothing.

use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use hmac::{Hmac, Mac};
use p256::ecdsa::signature::Signer;
use p256::pkcs8::{DecodePrivateKey, EncodePrivateKey, LineEnding};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
    KeyUsagePurpose, PublicKeyData, SignatureAlgorithm, SigningKey,
};
use sha2::Sha256;
use time::{Duration, OffsetDateTime};

/// CA validity: ten years.
pub const CA_DAYS: i64 = 3650;
/// Serving certificate validity: one year.
pub const LEAF_DAYS: i64 = 365;

/// A P-256 key usable by rcgen, signing deterministically (RFC 6979).
struct P256Key {
    secret: p256::SecretKey,
    signing: p256::ecdsa::SigningKey,
    point: Vec<u8>,
}

impl P256Key {
    fn new(secret: p256::SecretKey) -> P256Key {
        let point = secret.public_key().to_sec1_bytes().to_vec(); // uncompressed
        P256Key {
            signing: p256::ecdsa::SigningKey::from(&secret),
            secret,
            point,
        }
    }

    fn pem(&self) -> Result<String> {
        Ok(self
            .secret
            .to_pkcs8_pem(LineEnding::LF)
            .map_err(|e| anyhow!("encoding a private key: {e}"))?
            .to_string())
    }
}

impl PublicKeyData for P256Key {
    fn der_bytes(&self) -> &[u8] {
        &self.point
    }
    fn algorithm(&self) -> &'static SignatureAlgorithm {
        &rcgen::PKCS_ECDSA_P256_SHA256
    }
}

impl SigningKey for P256Key {
    fn sign(&self, msg: &[u8]) -> std::result::Result<Vec<u8>, rcgen::Error> {
        let sig: p256::ecdsa::Signature = self
            .signing
            .try_sign(msg)
            .map_err(|_| rcgen::Error::RemoteKeyError)?;
        Ok(sig.to_der().as_bytes().to_vec())
    }
}

/// The CA: its certificate (PEM) and key.
pub struct Ca {
    pub cert_pem: String,
    key: P256Key,
}

impl std::fmt::Debug for Ca {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ca").finish_non_exhaustive()
    }
}

/// The serving certificate and key, signed by the CA.
#[derive(Debug)]
pub struct Serving {
    /// Leaf, then the CA.
    pub chain_pem: String,
    pub key_pem: String,
}

fn start_of_day(t: OffsetDateTime) -> OffsetDateTime {
    t.replace_time(time::Time::MIDNIGHT)
}

impl Ca {
    /// A new CA valid for ten years from the start of `now`'s day (UTC).
    pub fn generate(now: OffsetDateTime) -> Result<Ca> {
        // ring draws the key (the system's CSPRNG); p256 signs with it.
        let drawn = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .context("generating the CA key")?;
        let secret = p256::SecretKey::from_pkcs8_der(&drawn.serialize_der())
            .map_err(|e| anyhow!("reading the generated CA key: {e}"))?;
        let key = P256Key::new(secret);
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params
            .distinguished_name
            .push(DnType::CommonName, "vulngate webhook CA");
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.not_before = start_of_day(now);
        params.not_after = params.not_before + Duration::days(CA_DAYS);
        let cert = params.self_signed(&key).context("signing the CA")?;
        Ok(Ca {
            cert_pem: cert.pem(),
            key,
        })
    }

    /// An existing CA: a PEM certificate and its PEM private key (PKCS#8 or SEC1, P-256).
    pub fn load(cert_file: &Path, key_file: &Path) -> Result<Ca> {
        let cert_pem = std::fs::read_to_string(cert_file)
            .with_context(|| format!("--ca-cert {}: cannot read", cert_file.display()))?;
        let key_pem = std::fs::read_to_string(key_file)
            .with_context(|| format!("--ca-key {}: cannot read", key_file.display()))?;
        let secret = p256::SecretKey::from_pkcs8_pem(&key_pem)
            .or_else(|_| p256::SecretKey::from_sec1_pem(&key_pem))
            .map_err(|_| {
                anyhow!(
                    "--ca-key {}: not a PEM ECDSA P-256 private key (PKCS#8 or SEC1)",
                    key_file.display()
                )
            })?;
        let key = P256Key::new(secret);
        let der = first_cert_der(&cert_pem)
            .with_context(|| format!("--ca-cert {}", cert_file.display()))?;
        let (_, x509) = x509_parser::parse_x509_certificate(&der)
            .map_err(|e| anyhow!("--ca-cert {}: {e}", cert_file.display()))?;
        if !x509.is_ca() {
            bail!("--ca-cert {}: not a CA certificate", cert_file.display());
        }
        if x509.public_key().subject_public_key.data.as_ref() != key.point.as_slice() {
            bail!(
                "--ca-key {} does not belong to --ca-cert {}",
                key_file.display(),
                cert_file.display()
            );
        }
        Ok(Ca { cert_pem, key })
    }

    /// The CA's private key (PKCS#8 PEM).
    pub fn key_pem(&self) -> Result<String> {
        self.key.pem()
    }

    /// A serving certificate for `names`, valid for one year from the start of `now`'s day
    /// (UTC). Its key is derived from the CA key, the names and that day.
    pub fn issue(&self, names: &[String], now: OffsetDateTime) -> Result<Serving> {
        let not_before = start_of_day(now);
        let leaf_key = P256Key::new(derive_key(&self.key, names, not_before)?);
        let issuer = Issuer::from_ca_cert_pem(&self.cert_pem, &self.key)
            .context("reading the CA certificate")?;
        let mut params = CertificateParams::new(names.to_vec())?;
        params
            .distinguished_name
            .push(DnType::CommonName, names.first().map_or("vulngate", |n| n));
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.use_authority_key_identifier_extension = true;
        params.not_before = not_before;
        params.not_after = not_before + Duration::days(LEAF_DAYS);
        let cert = params
            .signed_by(&leaf_key, &issuer)
            .context("signing the serving certificate")?;
        Ok(Serving {
            chain_pem: format!("{}{}", cert.pem(), self.cert_pem),
            key_pem: leaf_key.pem()?,
        })
    }
}

/// HMAC-SHA256 keyed with the CA's secret scalar over a label, the names and the day; retried
/// with a counter in the (negligible) case the output is not a valid scalar.
fn derive_key(ca: &P256Key, names: &[String], day: OffsetDateTime) -> Result<p256::SecretKey> {
    for counter in 0u32..16 {
        let mut mac = Hmac::<Sha256>::new_from_slice(&ca.secret.to_bytes())
            .map_err(|e| anyhow!("deriving the serving key: {e}"))?;
        mac.update(b"vulngate install serving key v1\0");
        for n in names {
            mac.update(n.as_bytes());
            mac.update(b"\0");
        }
        mac.update(&day.unix_timestamp().to_be_bytes());
        mac.update(&counter.to_be_bytes());
        let bytes = mac.finalize().into_bytes();
        if let Ok(k) = p256::SecretKey::from_slice(&bytes) {
            return Ok(k);
        }
    }
    bail!("deriving the serving key failed")
}

/// The DER of the first `CERTIFICATE` block of a PEM text.
pub fn first_cert_der(pem_text: &str) -> Result<Vec<u8>> {
    use rustls_pki_types::pem::PemObject;
    let mut certs = rustls_pki_types::CertificateDer::pem_slice_iter(pem_text.as_bytes());
    match certs.next() {
        Some(Ok(c)) => Ok(c.to_vec()),
        Some(Err(e)) => bail!("not a PEM certificate: {e}"),
        None => bail!("no PEM certificate found"),
    }
}
