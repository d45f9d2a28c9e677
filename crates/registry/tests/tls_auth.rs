//! TLS and authentication against a real docker-registry: a registry served with a certificate
//! from a private CA (trusted only through `caBundles`), and one behind htpasswd basic auth
//! (credentials from `auth.basic`, a docker `config.json`, or a mounted `.dockerconfigjson`).

mod support;

use std::path::{Path, PathBuf};

use base64::Engine as _;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use support::{trivy_report, Kind, Options, Registry, Tls};
use vulngate_core::{ImageRef, UnscannedReason};
use vulngate_registry::config::{AuthConfig, BasicAuth};
use vulngate_registry::{Lookup, RegistryClient, RegistryConfig};

const REPORT_TYPE: &str = "application/vnd.vulngate.report+json";
const USER: &str = "vgate-ci";
const PASSWORD: &str = "Pa55-w0rd-never-printed-7f3a";

/// A CA and a server certificate for 127.0.0.1 issued by it, written to `dir`.
fn tls_files(dir: &Path) -> Tls {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "vulngate test registry CA");
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca =
        CertifiedIssuer::self_signed(ca_params, KeyPair::generate().expect("key")).expect("CA");
    let mut leaf = CertificateParams::new(vec!["127.0.0.1".to_string()]).expect("params");
    leaf.distinguished_name
        .push(DnType::CommonName, "test registry");
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    let key = KeyPair::generate().expect("key");
    let cert = leaf.signed_by(&key, &*ca).expect("leaf");
    let t = Tls {
        cert: dir.join("server.crt"),
        key: dir.join("server.key"),
        ca: dir.join("ca.pem"),
    };
    std::fs::write(&t.cert, cert.pem()).expect("write");
    std::fs::write(&t.key, key.serialize_pem()).expect("write");
    std::fs::write(&t.ca, ca.pem()).expect("write");
    t
}

/// An htpasswd file with one bcrypt entry.
fn htpasswd(dir: &Path) -> PathBuf {
    let p = dir.join("htpasswd");
    let hash = bcrypt::hash(PASSWORD, 5).expect("bcrypt");
    std::fs::write(&p, format!("{USER}:{hash}\n")).expect("write");
    p
}

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

fn image(reg: &Registry) -> ImageRef {
    ImageRef::parse(&format!("{}/app:v1", reg.host)).expect("reference")
}

async fn lookup(cfg: RegistryConfig, img: &ImageRef) -> Lookup {
    RegistryClient::new(cfg).expect("client").lookup(img).await
}

fn finding_ids(l: &Lookup) -> Vec<String> {
    match &l.report {
        Ok(f) => f.report.findings.iter().map(|f| f.id.clone()).collect(),
        Err(r) => panic!("expected a report, got: {r}\nwarnings: {:?}", l.warnings),
    }
}

fn unavailable(l: &Lookup) -> String {
    match &l.report {
        Err(UnscannedReason::RegistryUnavailable(r)) => r.clone(),
        other => panic!("expected RegistryUnavailable, got {other:?}"),
    }
}

/// Nothing the lookup says (reasons, warnings, anything in its Debug form) holds the password.
fn assert_no_password(l: &Lookup) {
    let all = format!("{l:?} {}", l.warnings.join(" "));
    let reason = l.report.as_ref().err().map(|r| r.to_string());
    assert!(!all.contains(PASSWORD), "password leaked: {all}");
    assert!(
        !all.contains(&b64(&format!("{USER}:{PASSWORD}"))),
        "credentials leaked: {all}"
    );
    if let Some(r) = reason {
        assert!(!r.contains(PASSWORD), "password leaked: {r}");
    }
}

#[tokio::test]
async fn tls_registry_needs_its_ca_bundle() {
    let certs = tempfile::tempdir().expect("tempdir");
    let tls = tls_files(certs.path());
    let reg = Registry::start_with(
        Kind::Distribution,
        Options {
            tls: Some(tls.clone()),
            ..Options::default()
        },
    );
    let digest = reg.push_image("v1", "tls");
    reg.oras_attach(
        &digest,
        REPORT_TYPE,
        &trivy_report("CVE-2024-0100", "2026-11-28T00:00:00Z"),
        None,
    );
    // HTTPS on loopback: an exact allowHosts entry permits the address; no insecureRegistries.
    let base = RegistryConfig {
        allow_hosts: vec![reg.host.clone()],
        ..RegistryConfig::default()
    };

    let mut cfg = base.clone();
    cfg.ca_bundles.insert(reg.host.clone(), tls.ca.clone());
    let l = lookup(cfg, &image(&reg)).await;
    assert_eq!(l.digest.as_deref(), Some(digest.as_str()));
    assert_eq!(finding_ids(&l), ["CVE-2024-0100"]);

    // Without the bundle the system roots do not know the CA: unavailable, never plain HTTP.
    let l = lookup(base.clone(), &image(&reg)).await;
    let r = unavailable(&l);
    assert!(r.to_ascii_lowercase().contains("certificate"), "{r}");
    assert!(l.digest.is_none());

    // A bundle for another registry does not help this one.
    let mut cfg = base;
    cfg.ca_bundles.insert("127.0.0.1:1".into(), tls.ca.clone());
    let r = unavailable(&lookup(cfg, &image(&reg)).await);
    assert!(r.to_ascii_lowercase().contains("certificate"), "{r}");
}

#[tokio::test]
async fn htpasswd_registry_with_basic_and_docker_config() {
    let files = tempfile::tempdir().expect("tempdir");
    let reg = Registry::start_with(
        Kind::Distribution,
        Options {
            htpasswd: Some(htpasswd(files.path())),
            ..Options::default()
        },
    );
    // crane and oras read $DOCKER_CONFIG/config.json (the scratch `docker` dir).
    let auth = b64(&format!("{USER}:{PASSWORD}"));
    std::fs::write(
        reg.scratch().join("docker/config.json"),
        format!(r#"{{"auths":{{"{}":{{"auth":"{auth}"}}}}}}"#, reg.host),
    )
    .expect("write");
    let digest = reg.push_image("v1", "auth");
    reg.oras_attach(
        &digest,
        REPORT_TYPE,
        &trivy_report("CVE-2024-0200", "2026-11-28T00:00:00Z"),
        None,
    );
    let base = RegistryConfig {
        insecure_registries: vec![reg.host.clone()],
        ..RegistryConfig::default()
    };
    let with_auth = |auth: AuthConfig| RegistryConfig {
        auth,
        ..base.clone()
    };
    let basic = |password: Option<&str>, password_file: Option<PathBuf>| BasicAuth {
        registry: reg.host.clone(),
        username: USER.into(),
        password: password.map(str::to_string),
        password_file,
    };

    // No credentials: unscanned with an authentication error.
    let l = lookup(base.clone(), &image(&reg)).await;
    let r = unavailable(&l);
    assert!(r.contains("401"), "{r}");
    assert_no_password(&l);

    // A wrong password: the same, and neither password is echoed.
    let l = lookup(
        with_auth(AuthConfig {
            basic: vec![basic(Some("wrong-password-123"), None)],
            ..AuthConfig::default()
        }),
        &image(&reg),
    )
    .await;
    let r = unavailable(&l);
    assert!(r.contains("401"), "{r}");
    assert!(!r.contains("wrong-password-123"), "{r}");

    // auth.basic, inline and from a file (a mounted Secret, trailing newline).
    let cfg = with_auth(AuthConfig {
        basic: vec![basic(Some(PASSWORD), None)],
        ..AuthConfig::default()
    });
    let client = RegistryClient::new(cfg).expect("client");
    assert!(!format!("{client:?}").contains(PASSWORD));
    let l = client.lookup(&image(&reg)).await;
    assert_eq!(l.digest.as_deref(), Some(digest.as_str()));
    assert_eq!(finding_ids(&l), ["CVE-2024-0200"]);
    assert_no_password(&l);
    let pw_file = files.path().join("password");
    std::fs::write(&pw_file, format!("{PASSWORD}\n")).expect("write");
    let l = lookup(
        with_auth(AuthConfig {
            basic: vec![basic(None, Some(pw_file))],
            ..AuthConfig::default()
        }),
        &image(&reg),
    )
    .await;
    assert_eq!(finding_ids(&l), ["CVE-2024-0200"]);

    // auth.dockerConfig: a docker config.json (`auth` = base64 user:password)...
    let docker = files.path().join("config.json");
    std::fs::write(
        &docker,
        format!(
            r#"{{"auths":{{"{}":{{"auth":"{auth}"}}}},"credsStore":"none"}}"#,
            reg.host
        ),
    )
    .expect("write");
    let l = lookup(
        with_auth(AuthConfig {
            docker_config: Some(docker),
            ..AuthConfig::default()
        }),
        &image(&reg),
    )
    .await;
    assert_eq!(finding_ids(&l), ["CVE-2024-0200"]);
    assert_no_password(&l);

    // ...and the `.dockerconfigjson` of a kubernetes.io/dockerconfigjson Secret mounted as a
    // file (URL-style key, username/password fields).
    let secret = files.path().join(".dockerconfigjson");
    std::fs::write(
        &secret,
        format!(
            r#"{{"auths":{{"http://{}/v2/":{{"username":"{USER}","password":"{PASSWORD}","email":"ci@example.com"}}}}}}"#,
            reg.host
        ),
    )
    .expect("write");
    let l = lookup(
        with_auth(AuthConfig {
            docker_config: Some(secret),
            ..AuthConfig::default()
        }),
        &image(&reg),
    )
    .await;
    assert_eq!(finding_ids(&l), ["CVE-2024-0200"]);

    // A docker config for another registry: unauthenticated here, nothing leaked.
    let other = files.path().join("other.json");
    std::fs::write(
        &other,
        format!(r#"{{"auths":{{"registry.example:5000":{{"auth":"{auth}"}}}}}}"#),
    )
    .expect("write");
    let l = lookup(
        with_auth(AuthConfig {
            docker_config: Some(other),
            ..AuthConfig::default()
        }),
        &image(&reg),
    )
    .await;
    assert!(unavailable(&l).contains("401"));
    assert_no_password(&l);
}
