//! `vulngate attach`: push a findings report to an image's registry as a referrer of the image.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::ValueEnum;
use serde_json::json;
use vulngate_core::findings::{self, Parsed};
use vulngate_core::ImageRef;
use vulngate_registry::{oci, AttachRequest, Error};

use crate::check::registry::{self, RegistryArgs};
use crate::text::escape;

const AFTER_HELP: &str = "\
The report is parsed first (Trivy JSON, Grype JSON, SARIF 2.1.0, CycloneDX, in-toto/cosign
vulnerability attestations, or an OpenVEX document, which is attached as
application/openvex+json unless --artifact-type says otherwise) and pushed unchanged as an OCI
image manifest whose subject is the image (a tag is resolved to its digest first). On
registries without the referrers API, the referrers tag schema index (sha256-<hex>) is
updated as well, as oras does. Sign the pushed artifact with `notation sign` or `cosign sign`
(REPOSITORY@DIGEST printed below) to make it trusted under a trust policy.

Exit codes: 0 attached, 1 the registry failed (unreachable, refused, authentication...),
2 bad input (flags, image reference, report, configuration).";

#[derive(Debug, clap::Args)]
#[command(after_long_help = AFTER_HELP)]
pub struct Args {
    /// The image the report belongs to (tag or digest).
    #[arg(long, value_name = "REF")]
    pub image: String,
    /// The findings report to push.
    #[arg(long, value_name = "FILE")]
    pub report: PathBuf,
    /// Artifact type of the referrer [default: application/vnd.vulngate.report+json].
    #[arg(long, value_name = "TYPE", value_parser = crate::parse::media_type)]
    pub artifact_type: Option<String>,
    #[command(flatten)]
    pub registry: RegistryArgs,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value_t = Output::Text)]
    pub output: Output,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Text,
    Json,
}

pub fn run(args: Args) -> Result<ExitCode> {
    let image = ImageRef::parse(&args.image).context("--image")?;
    let path = &args.report;
    let bytes = vulngate_core::limits::read_capped(path, vulngate_core::limits::FileKind::Report)
        .context("cannot read report")?;
    // Never push something `check` could not use.
    let parsed = findings::parse(&bytes)
        .with_context(|| format!("cannot parse report {}", path.display()))?;
    let (what, default_type) = match &parsed {
        Parsed::Report(r) => {
            let scanner = match &r.scanner.version {
                Some(v) => format!("{} {v}", r.scanner.name),
                None => r.scanner.name.clone(),
            };
            (
                format!(
                    "{} report ({scanner}, {} findings)",
                    r.format,
                    r.findings.len()
                ),
                oci::VULNGATE_REPORT,
            )
        }
        Parsed::Vex(statements) => (
            format!("OpenVEX document ({} statements)", statements.len()),
            oci::OPENVEX,
        ),
    };
    let artifact_type = args
        .artifact_type
        .clone()
        .unwrap_or_else(|| default_type.to_string());

    let cfg = registry::config(&args.registry, None)?;
    if !cfg.accepted_artifact_types.contains(&artifact_type) {
        anstream::eprintln!(
            "warning: artifact type {artifact_type} is not among the accepted artifact types{}: vulngate will not look at it",
            if args.registry.config.is_some() { " of --config" } else { "" }
        );
    }
    let insecure = cfg
        .insecure_registries
        .iter()
        .any(|h| h.eq_ignore_ascii_case(&image.registry));
    let client = registry::Registry::new(cfg)?;

    let mut req = AttachRequest::new(&image, &bytes);
    req.artifact_type = Some(&artifact_type);
    let title = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .filter(|n| !n.is_empty());
    req.title = title.as_deref();

    let attached = match client.attach(&req) {
        Ok(a) => a,
        Err(e @ Error::Config(_)) => return Err(e).context("registry configuration"),
        Err(e) => {
            let hint = match &e {
                Error::AddressRefused { .. } | Error::HostNotAllowed { .. } if !insecure => {
                    format!(
                        " (pass --insecure-registry {} for a plain-HTTP or loopback registry)",
                        image.registry
                    )
                }
                Error::Transport { .. } if !insecure => format!(
                    " (if {} serves plain HTTP, pass --insecure-registry {})",
                    image.registry, image.registry
                ),
                _ => String::new(),
            };
            // The registry's answer is in `e`: escaped like every message printed here.
            let message = format!(
                "cannot attach {} to {}: {e}{hint}",
                path.display(),
                image.original
            );
            anstream::eprintln!("error: {}", escape(&message));
            return Ok(ExitCode::from(1));
        }
    };

    let repository = image.name();
    let method = if attached.referrers_api {
        "referrers-api"
    } else {
        "tag-schema"
    };
    let mut out = std::io::stdout().lock();
    match args.output {
        Output::Json => {
            let v = json!({
                "image": image.original,
                "subject": {
                    "digest": attached.subject.digest,
                    "media_type": attached.subject.media_type,
                },
                "digest": attached.artifact.digest,
                "reference": format!("{repository}@{}", attached.artifact.digest),
                "artifact_type": artifact_type,
                "size": attached.artifact.size,
                "created": attached.artifact.annotations.get(oci::ANN_CREATED),
                "referrers_api": attached.referrers_api,
                "method": method,
            });
            serde_json::to_writer_pretty(&mut out, &v)?;
            writeln!(out)?;
        }
        Output::Text => {
            // The scanner's name and version come from the report: escaped.
            writeln!(
                out,
                "attached {} to {repository}@{}",
                escape(&what),
                attached.subject.digest
            )?;
            writeln!(out, "referrer: {repository}@{}", attached.artifact.digest)?;
            writeln!(out, "artifact type: {artifact_type}")?;
            if attached.referrers_api {
                writeln!(out, "discovery: referrers API")?;
            } else {
                writeln!(
                    out,
                    "discovery: referrers tag schema (no referrers API; index {} updated)",
                    oci::referrers_tag(&attached.subject.digest)
                )?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
