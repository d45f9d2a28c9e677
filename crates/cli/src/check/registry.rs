//! The registry side of `check` and `attach`: the registry configuration (`--config`,
//! `--insecure-registry`, `--platform`), the client on a current-thread tokio runtime, and
//! concurrent lookups turned into what `check` evaluates.
//!
//! A lookup never fails: every registry problem is an `UnscannedReason` with its exact cause,
//! and the rules decide (exit 2 stays for bad input: flags, configuration).

use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;

use anyhow::{anyhow, Context, Result};
use vulngate_core::ImageRef;
use vulngate_registry::{AttachRequest, Attached, Found, Lookup, RegistryClient, RegistryConfig};

use super::model::{Entry, Source, SourceInfo};
use super::reports::{ImageFindings, LoadedReport};

/// Registry access, shared by `check` and `attach`.
#[derive(Debug, clap::Args)]
pub struct RegistryArgs {
    /// A registry reached over plain HTTP, and allowed to resolve to a loopback address
    /// (repeatable). Nothing else is ever contacted without TLS.
    #[arg(long = "insecure-registry", value_name = "HOST[:PORT]", value_parser = crate::parse::registry_host)]
    pub insecure_registries: Vec<String>,
    /// A vulngate.yaml whose `registry:` section configures registry access: allowed hosts,
    /// credentials, CA bundles, limits, timeouts, platform and trust policies (see
    /// docs/registry.md). The whole file is validated; its other sections are not used here.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

/// The `registry:` section of `--config` (the whole file validated as the server's
/// `vulngate.yaml`), with `--insecure-registry` hosts added and `--platform` applied.
pub fn config(args: &RegistryArgs, platform: Option<&str>) -> Result<RegistryConfig> {
    let mut cfg = match &args.config {
        None => RegistryConfig::default(),
        Some(path) => {
            // Paths in the file are resolved against its directory by `Config::load`, for
            // `check` and `serve` alike.
            let file = vulngate_server::Config::load(path).map_err(|e| anyhow!("{e}"))?;
            file.registry.unwrap_or_default()
        }
    };
    for host in &args.insecure_registries {
        if !cfg
            .insecure_registries
            .iter()
            .any(|h| h.eq_ignore_ascii_case(host))
        {
            cfg.insecure_registries.push(host.clone());
        }
    }
    if let Some(p) = platform {
        cfg.platform = p.to_string();
    }
    Ok(cfg)
}

/// A registry client and the runtime that drives it.
#[derive(Debug)]
pub struct Registry {
    rt: tokio::runtime::Runtime,
    client: Arc<RegistryClient>,
}

impl Registry {
    /// Validates the configuration and loads its trust material, CA bundles and credentials
    /// (an error here is bad input).
    pub fn new(cfg: RegistryConfig) -> Result<Registry> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("cannot start the async runtime")?;
        let client = {
            let _guard = rt.enter();
            RegistryClient::new(cfg).context("registry configuration")?
        };
        Ok(Registry {
            rt,
            client: Arc::new(client),
        })
    }

    /// Looks every image up, concurrently; results in the order of `images`.
    pub fn lookup_all(&self, images: &[ImageRef]) -> Vec<Lookup> {
        self.rt.block_on(async {
            let mut set = tokio::task::JoinSet::new();
            for (i, image) in images.iter().enumerate() {
                let client = self.client.clone();
                let image = image.clone();
                set.spawn(async move { (i, client.lookup(&image).await) });
            }
            let mut out: Vec<Option<Lookup>> = vec![None; images.len()];
            while let Some(joined) = set.join_next().await {
                match joined {
                    Ok((i, lookup)) => out[i] = Some(lookup),
                    // A panicking lookup is a bug; let it surface as one.
                    Err(e) => std::panic::resume_unwind(e.into_panic()),
                }
            }
            out.into_iter()
                .zip(images)
                .map(|(l, image)| {
                    l.unwrap_or_else(|| Lookup {
                        digest: image.digest.clone(),
                        platform_digest: None,
                        report: Err(vulngate_core::UnscannedReason::RegistryUnavailable(
                            "lookup did not complete".into(),
                        )),
                        platforms: Vec::new(),
                        warnings: Vec::new(),
                        unreachable: Some(vulngate_registry::ErrorKind::Unreachable),
                    })
                })
                .collect()
        })
    }

    pub fn attach(&self, req: &AttachRequest<'_>) -> vulngate_registry::Result<Attached> {
        self.rt.block_on(self.client.attach(req))
    }
}

/// What `check` evaluates for an image looked up in its registry: one entry, or one per
/// platform of a multi-arch image with `--platform all` ([`Lookup::judged`], as the webhook).
pub fn source(image: &ImageRef, lookup: Lookup) -> Source {
    let warnings = lookup.warnings.clone();
    let entry = |platform: Option<String>,
                 platform_digest: Option<String>,
                 report: Result<Found, vulngate_core::UnscannedReason>| {
        let mut info = SourceInfo {
            platform,
            platform_digest,
            warnings: warnings.clone(),
            ..SourceInfo::default()
        };
        let findings = match report {
            Ok(found) => {
                info.artifact_type = Some(found.artifact_type.clone());
                info.attached_to = Some(found.attached_to.clone());
                info.signatures = found.signatures.clone();
                ImageFindings::Report(Rc::new(LoadedReport {
                    source: format!(
                        "{}@{} (referrer of {})",
                        image.name(),
                        found.identity.digest.as_deref().unwrap_or("?"),
                        found.attached_to
                    ),
                    report: found.report,
                    identity: found.identity,
                    vex: found.vex,
                }))
            }
            Err(reason) => ImageFindings::Unscanned(reason),
        };
        Entry { findings, info }
    };
    let entries = lookup
        .judged()
        .into_iter()
        .map(|j| entry(j.platform, j.platform_digest, j.report))
        .collect();
    Source {
        digest: lookup.digest,
        registry: true,
        entries,
        warnings,
        unreachable: lookup.unreachable,
    }
}
