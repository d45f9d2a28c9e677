//! TLS: rustls (ring provider only; TLS 1.2 and 1.3; ALPN h2 and http/1.1) with the configured
//! certificate, or a self-signed CA and server certificate generated into the data directory.
//!
//! Generated files: `ca.crt` (the CA bundle to give the API server as `caBundle`), `tls.crt`,
//! `tls.key` and `tls.names` (the names the certificate was made for). They are reused on
//! restart while the names are unchanged, so the CA bundle stays valid; otherwise regenerated.
//!
//! A configured certificate is reloaded when its files change (checked at most every few
//! seconds, at a TLS handshake): cert-manager or a Secret update rotates it without a restart.
//! A pair that cannot be loaded keeps the last good one and is logged.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;

use crate::config::Config;
use crate::error::{Error, Result};

pub const CA_FILE: &str = "ca.crt";
pub const CERT_FILE: &str = "tls.crt";
pub const KEY_FILE: &str = "tls.key";
const NAMES_FILE: &str = "tls.names";

/// The server's TLS configuration and, when generated, where its CA bundle is.
#[derive(Debug, Clone)]
pub struct TlsSetup {
    pub server_config: Arc<ServerConfig>,
    /// `ca.crt` in the data directory when the certificate is self-signed.
    pub ca_file: Option<PathBuf>,
}

/// Loads the configured certificate, or generates (or reuses) a self-signed one.
pub fn setup(cfg: &Config) -> Result<TlsSetup> {
    let (cert, key, ca_file) = match (&cfg.tls.cert_file, &cfg.tls.key_file) {
        (Some(c), Some(k)) => (c.clone(), k.clone(), None),
        _ => {
            let names = self_signed_names(cfg);
            let ca = ensure_self_signed(&cfg.data_dir, &names)?;
            (
                cfg.data_dir.join(CERT_FILE),
                cfg.data_dir.join(KEY_FILE),
                Some(ca),
            )
        }
    };
    let resolver = ReloadingCert::new(cert, key, RELOAD_CHECK_INTERVAL)?;
    Ok(TlsSetup {
        server_config: Arc::new(server_config_with(Arc::new(resolver))?),
        ca_file,
    })
}

/// How often, at most, the certificate files are checked for a change.
pub const RELOAD_CHECK_INTERVAL: Duration = Duration::from_secs(5);

fn load_pair(cert: &Path, key: &Path) -> Result<Arc<CertifiedKey>> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| Error::Tls(format!("{}: {e}", cert.display())))?
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| Error::Tls(format!("{}: {e}", cert.display())))?;
    if chain.is_empty() {
        return Err(Error::Tls(format!(
            "{}: no PEM certificate found",
            cert.display()
        )));
    }
    let key_der = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| Error::Tls(format!("{}: {e}", key.display())))?;
    let signing = rustls::crypto::ring::sign::any_supported_type(&key_der)
        .map_err(|e| Error::Tls(format!("{}: {e}", key.display())))?;
    let ck = CertifiedKey::new(chain, signing);
    ck.keys_match()
        .map_err(|e| Error::Tls(format!("certificate and key do not match: {e}")))?;
    Ok(Arc::new(ck))
}

fn mtimes(cert: &Path, key: &Path) -> (Option<SystemTime>, Option<SystemTime>) {
    let m = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    (m(cert), m(key))
}

/// A certificate resolver that reloads the certificate and key files when they change.
#[derive(Debug)]
pub struct ReloadingCert {
    cert: PathBuf,
    key: PathBuf,
    every: Duration,
    state: Mutex<CertState>,
}

#[derive(Debug)]
struct CertState {
    checked: Instant,
    stamp: (Option<SystemTime>, Option<SystemTime>),
    current: Arc<CertifiedKey>,
}

impl ReloadingCert {
    /// Loads the pair now (an error if it cannot be loaded).
    pub fn new(cert: PathBuf, key: PathBuf, every: Duration) -> Result<ReloadingCert> {
        let current = load_pair(&cert, &key)?;
        let stamp = mtimes(&cert, &key);
        Ok(ReloadingCert {
            state: Mutex::new(CertState {
                checked: Instant::now(),
                stamp,
                current,
            }),
            cert,
            key,
            every,
        })
    }

    /// The certificate to serve, reloaded first if the files changed since the last check.
    pub fn current(&self) -> Arc<CertifiedKey> {
        let mut st = match self.state.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        if st.checked.elapsed() >= self.every {
            st.checked = Instant::now();
            let stamp = mtimes(&self.cert, &self.key);
            if stamp != st.stamp {
                match load_pair(&self.cert, &self.key) {
                    Ok(ck) => {
                        st.current = ck;
                        st.stamp = stamp;
                        tracing::info!(cert = %self.cert.display(), "reloaded the serving certificate");
                    }
                    Err(e) => {
                        // Keep serving the last good pair; try again at the next change.
                        st.stamp = stamp;
                        tracing::warn!(error = %e, "cannot reload the serving certificate; keeping the last good one");
                    }
                }
            }
        }
        st.current.clone()
    }
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

/// ring provider, TLS 1.3 and 1.2, no client certificates.
fn builder() -> Result<rustls::ConfigBuilder<ServerConfig, rustls::server::WantsServerCert>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| Error::Tls(e.to_string()))?
        .with_no_client_auth())
}

fn with_alpn(mut sc: ServerConfig) -> ServerConfig {
    sc.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    sc
}

/// A rustls server configuration with one fixed certificate: ring provider, TLS 1.3 and 1.2,
/// ALPN h2 then http/1.1.
pub fn server_config(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<ServerConfig> {
    let sc = builder()?
        .with_single_cert(chain, key)
        .map_err(|e| Error::Tls(format!("certificate and key: {e}")))?;
    Ok(with_alpn(sc))
}

fn server_config_with(resolver: Arc<dyn ResolvesServerCert>) -> Result<ServerConfig> {
    Ok(with_alpn(builder()?.with_cert_resolver(resolver)))
}

/// localhost, 127.0.0.1, ::1, the listen address (unless unspecified) and the configured names.
fn self_signed_names(cfg: &Config) -> Vec<String> {
    let mut names = vec![
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        "::1".to_string(),
    ];
    let ip: IpAddr = cfg.listen.ip();
    if !ip.is_unspecified() {
        names.push(ip.to_string());
    }
    names.extend(cfg.tls.self_signed_names.iter().cloned());
    let mut seen = std::collections::BTreeSet::new();
    names.retain(|n| seen.insert(n.clone()));
    names
}

fn ensure_self_signed(dir: &Path, names: &[String]) -> Result<PathBuf> {
    let ca = dir.join(CA_FILE);
    let want = names.join("\n");
    let have = std::fs::read_to_string(dir.join(NAMES_FILE)).ok();
    if have.as_deref() == Some(want.as_str())
        && ca.is_file()
        && dir.join(CERT_FILE).is_file()
        && dir.join(KEY_FILE).is_file()
    {
        tracing::info!(ca_bundle = %ca.display(), "using the self-signed certificate in the data directory");
        return Ok(ca);
    }
    std::fs::create_dir_all(dir)
        .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
    let gen = |e: rcgen::Error| Error::Tls(format!("generating a self-signed certificate: {e}"));

    let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(gen)?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "vulngate self-signed CA");
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_key = KeyPair::generate().map_err(gen)?;
    let issuer = CertifiedIssuer::self_signed(ca_params, ca_key).map_err(gen)?;

    let mut leaf = CertificateParams::new(names.to_vec()).map_err(gen)?;
    leaf.distinguished_name.push(DnType::CommonName, "vulngate");
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    let leaf_key = KeyPair::generate().map_err(gen)?;
    let cert = leaf.signed_by(&leaf_key, &*issuer).map_err(gen)?;

    write_private(&dir.join(KEY_FILE), leaf_key.serialize_pem().as_bytes())?;
    write_file(
        &dir.join(CERT_FILE),
        format!("{}{}", cert.pem(), issuer.pem()).as_bytes(),
    )?;
    write_file(&ca, issuer.pem().as_bytes())?;
    write_file(&dir.join(NAMES_FILE), want.as_bytes())?;
    tracing::info!(
        ca_bundle = %ca.display(),
        names = ?names,
        "generated a self-signed certificate; give the API server this CA bundle (caBundle)"
    );
    Ok(ca)
}

/// A CA and a serving certificate it signed (PEM), as `vulngate install` puts them in the
/// TLS Secret and the webhook's caBundle.
#[derive(Debug, Clone)]
pub struct GeneratedPair {
    pub ca_pem: String,
    /// Leaf then CA.
    pub cert_chain_pem: String,
    pub key_pem: String,
}

/// Generates a fresh CA (ECDSA P-256) and a server certificate for `names` signed by it.
pub fn generate_pair(names: &[String], ca_name: &str) -> Result<GeneratedPair> {
    let gen = |e: rcgen::Error| Error::Tls(format!("generating a certificate: {e}"));
    // `today + days` as a certificate date (whole days, UTC).
    let day = |days: i64| {
        use chrono::Datelike;
        let d = (chrono::Utc::now() + chrono::Duration::days(days)).date_naive();
        rcgen::date_time_ymd(d.year(), d.month() as u8, d.day() as u8)
    };
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(gen)?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca_params
        .distinguished_name
        .push(DnType::CommonName, ca_name);
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    ca_params.not_before = day(0);
    ca_params.not_after = day(3650);
    let ca_key = KeyPair::generate().map_err(gen)?;
    let issuer = CertifiedIssuer::self_signed(ca_params, ca_key).map_err(gen)?;
    let mut leaf = CertificateParams::new(names.to_vec()).map_err(gen)?;
    leaf.distinguished_name.push(
        DnType::CommonName,
        names.first().map(String::as_str).unwrap_or("vulngate"),
    );
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    leaf.not_before = day(0);
    leaf.not_after = day(365);
    let leaf_key = KeyPair::generate().map_err(gen)?;
    let cert = leaf.signed_by(&leaf_key, &*issuer).map_err(gen)?;
    Ok(GeneratedPair {
        ca_pem: issuer.pem(),
        cert_chain_pem: format!("{}{}", cert.pem(), issuer.pem()),
        key_pem: leaf_key.serialize_pem(),
    })
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    std::fs::write(path, bytes).map_err(|e| Error::io(format!("writing {}", path.display()), e))
}

/// Writes a private key readable by the owner only.
fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts
        .open(path)
        .map_err(|e| Error::io(format!("writing {}", path.display()), e))?;
    f.write_all(bytes)
        .and_then(|_| f.sync_all())
        .map_err(|e| Error::io(format!("writing {}", path.display()), e))
}

#[cfg(test)]
mod reload_tests {
    use super::*;

    fn write_pair(dir: &Path, name: &str) -> Vec<u8> {
        let key = KeyPair::generate().expect("key");
        let params = CertificateParams::new(vec![name.to_string()]).expect("params");
        let cert = params.self_signed(&key).expect("cert");
        std::fs::write(dir.join("tls.crt"), cert.pem()).expect("write cert");
        std::fs::write(dir.join("tls.key"), key.serialize_pem()).expect("write key");
        cert.der().to_vec()
    }

    #[test]
    fn a_changed_certificate_is_served_and_a_broken_one_is_not() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first = write_pair(dir.path(), "first.example");
        let r = ReloadingCert::new(
            dir.path().join("tls.crt"),
            dir.path().join("tls.key"),
            Duration::ZERO,
        )
        .expect("loads");
        assert_eq!(r.current().cert[0].as_ref(), first.as_slice());
        // A new pair, with a later modification time than the first.
        let second = write_pair(dir.path(), "second.example");
        let later = SystemTime::now() + Duration::from_secs(60);
        for f in ["tls.crt", "tls.key"] {
            let file = std::fs::File::options()
                .write(true)
                .open(dir.path().join(f))
                .expect("open");
            file.set_modified(later).expect("set mtime");
        }
        assert_eq!(r.current().cert[0].as_ref(), second.as_slice());
        // A broken edit keeps the last good pair.
        std::fs::write(dir.path().join("tls.crt"), "not a certificate").expect("write");
        let file = std::fs::File::options()
            .write(true)
            .open(dir.path().join("tls.crt"))
            .expect("open");
        file.set_modified(later + Duration::from_secs(60))
            .expect("set mtime");
        assert_eq!(r.current().cert[0].as_ref(), second.as_slice());
    }
}
