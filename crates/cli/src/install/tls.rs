//! TLS for the webhook: a Secret rendered here (a new or given CA signs the serving
//! certificate; see `pki`), or one managed elsewhere (`--tls-secret`, e.g. cert-manager); and
//! the caBundle the webhook configurations trust.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{anyhow, Context, Result};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::ByteString;

use super::objects::meta;
use super::{pki, Args, Rendered, NAME, TLS_SECRET};

/// What the Deployment mounts and the webhook configurations trust.
#[derive(Debug)]
pub(super) struct Tls {
    /// The name of the kubernetes.io/tls Secret.
    pub secret: String,
    /// The CA bundle (PEM) for `caBundle`; `None` when a CA injector adds it.
    pub ca_bundle: Option<String>,
}

/// Pushes the TLS Secret (unless `--tls-secret`) and the notes about the CA.
pub(super) fn render(args: &Args, out: &mut Rendered) -> Result<Tls> {
    let secret = args.tls_secret.clone().unwrap_or_else(|| TLS_SECRET.into());
    let ca_bundle = match &args.tls_secret {
        Some(_) => match &args.ca_bundle {
            Some(p) => Some(read_bundle(p)?),
            None => {
                out.notes.push(format!(
                    "note: --tls-secret {secret} without --ca-bundle: the webhook has no caBundle; \
                     cert-manager's CA injector or a patch must add it (docs/install.md)"
                ));
                None
            }
        },
        None => Some(render_secret(args, &secret, out)?),
    };
    Ok(Tls { secret, ca_bundle })
}

/// The Secret with the CA and the serving pair; returns the CA certificate (PEM).
fn render_secret(args: &Args, name: &str, out: &mut Rendered) -> Result<String> {
    let ns = args.namespace.as_str();
    let service_names = vec![
        format!("{NAME}.{ns}.svc"),
        format!("{NAME}.{ns}.svc.cluster.local"),
    ];
    let now = match args.now {
        Some(t) => time::OffsetDateTime::from_unix_timestamp(t.timestamp())
            .map_err(|e| anyhow!("--now: {e}"))?,
        None => time::OffsetDateTime::now_utc(),
    };
    let ca = match (&args.ca_cert, &args.ca_key) {
        (Some(c), Some(k)) => pki::Ca::load(c, k)?,
        _ => pki::Ca::generate(now)?,
    };
    let serving = ca.issue(&service_names, now)?;
    let ca_key = ca.key_pem()?;
    if let Some(dir) = &args.ca_out {
        write_ca(dir, &ca.cert_pem, &ca_key)?;
        out.notes.push(format!(
            "the CA was written to {} and {} (keep the key safe; re-render with --ca-cert/--ca-key)",
            dir.join("ca.crt").display(),
            dir.join("ca.key").display()
        ));
    }
    let data = BTreeMap::from([
        (
            "ca.crt".to_string(),
            ByteString(ca.cert_pem.clone().into_bytes()),
        ),
        ("ca.key".to_string(), ByteString(ca_key.into_bytes())),
        (
            "tls.crt".to_string(),
            ByteString(serving.chain_pem.into_bytes()),
        ),
        (
            "tls.key".to_string(),
            ByteString(serving.key_pem.into_bytes()),
        ),
    ]);
    out.push(
        "tls.yaml",
        &format!(
            "Serving certificate for {}\nsigned by the CA in ca.crt (ca.key: the CA's key, for re-rendering;\n\
             only tls.crt and tls.key are mounted into the pods).",
            service_names.join(", ")
        ),
        &Secret {
            metadata: meta(name, Some(ns)),
            type_: Some("kubernetes.io/tls".into()),
            data: Some(data),
            ..Default::default()
        },
    )?;
    Ok(ca.cert_pem)
}

/// Reads a CA bundle file: one or more PEM certificates.
fn read_bundle(path: &Path) -> Result<String> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("--ca-bundle {}: cannot read", path.display()))?;
    pki::first_cert_der(&text).with_context(|| format!("--ca-bundle {}", path.display()))?;
    Ok(text)
}

/// Writes the CA (`--ca-out`): the key readable by its owner only.
fn write_ca(dir: &Path, cert: &str, key: &str) -> Result<()> {
    use std::io::Write;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    std::fs::write(dir.join("ca.crt"), cert)
        .with_context(|| format!("writing {}", dir.join("ca.crt").display()))?;
    let path = dir.join("ca.key");
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    opts.open(&path)
        .and_then(|mut f| f.write_all(key.as_bytes()))
        .with_context(|| format!("writing {}", path.display()))
}
