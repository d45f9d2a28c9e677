//! `vulngate check`: the engine for CI pipelines (ARCHITECTURE.md section 6).

use std::collections::HashMap;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use chrono::Utc;
use serde::Serialize;
use vulngate_core::engine::{AnalyzedReport, Decision, Outcome, RequestContext, Subject};
use vulngate_core::image::is_valid_digest;
use vulngate_core::model::{Severity, VexStatement};
use vulngate_core::workload::{self, ContainerKind, WorkloadError};
use vulngate_core::{
    evaluate_with, Catalogs, EpssScores, ImageRef, KevCatalog, RuleSet, UnscannedReason,
};

use crate::reports::{self, ImageFindings, LoadedReport, Locator, ReportCache};
use crate::{output, registry, CheckArgs, FailOn};

/// Where an image came from, when it came from a manifest.
#[derive(Debug, Clone)]
pub struct WorkloadInfo {
    pub kind: String,
    pub name: Option<String>,
    /// The namespace evaluated (the manifest's, else `--namespace`).
    pub namespace: Option<String>,
    pub container: String,
    pub container_kind: ContainerKind,
}

/// One image to evaluate, in its context.
#[derive(Debug)]
struct Target {
    image: ImageRef,
    ctx: RequestContext,
    workload: Option<WorkloadInfo>,
}

/// Where an image's findings came from: a local report, or its registry.
#[derive(Debug)]
pub struct Source {
    /// The digest the reference resolved to in its registry (the decision's digest).
    pub digest: Option<String>,
    /// Looked up in the registry (else a local report or `--offline`).
    pub registry: bool,
    /// What to evaluate: one entry, or one per platform (`--platform all`).
    pub entries: Vec<Entry>,
    /// The registry's warnings (printed once per image on stderr).
    pub warnings: Vec<String>,
}

impl Source {
    fn local(findings: ImageFindings) -> Source {
        Source {
            digest: None,
            registry: false,
            entries: vec![Entry {
                findings,
                info: SourceInfo::default(),
            }],
            warnings: Vec::new(),
        }
    }
}

#[derive(Debug)]
pub struct Entry {
    pub findings: ImageFindings,
    pub info: SourceInfo,
}

/// What the registry adds to an image's decision in the JSON output (all optional).
#[derive(Debug, Clone, Default, Serialize)]
pub struct SourceInfo {
    /// The platform evaluated (`--platform all`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub platform: Option<String>,
    /// The platform manifest of a multi-arch image (the decision's digest is the index).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub platform_digest: Option<String>,
    /// The artifact type the report was found under.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    /// The manifest or index the report is attached to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attached_to: Option<String>,
    /// What verified the report (`notation: ...`, `cosign: ...`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub signatures: Vec<String>,
    /// The registry's warnings for this image.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// One evaluated image.
#[derive(Debug)]
pub struct Checked {
    pub decision: Decision,
    pub workload: Option<WorkloadInfo>,
    /// Severity of the deciding vulnerability, if any.
    pub severity: Option<Severity>,
    pub info: SourceInfo,
}

pub fn run(args: CheckArgs) -> Result<ExitCode> {
    let now = args.now.unwrap_or_else(Utc::now);
    let rules = match &args.rules {
        Some(p) => RuleSet::load(p).context("invalid rules")?,
        None => RuleSet::default_rules(),
    };
    let mut vex: Vec<VexStatement> = Vec::new();
    for p in &args.vex {
        vex.extend(reports::load_vex(p)?);
    }

    let catalogs = load_catalogs(&args)?;
    let targets = targets(&args)?;
    // Distinct images, as written (a findings directory names reports after that spelling).
    let mut images: Vec<ImageRef> = Vec::new();
    for t in &targets {
        if !images.iter().any(|i| i.original == t.image.original) {
            images.push(t.image.clone());
        }
    }
    let locator = Locator::new(&args.reports, args.findings_dir.as_deref(), &images)?;
    // A bad configuration is bad input even when no image needs the registry.
    let registry_cfg = registry::config(&args.registry, args.platform.as_deref())?;
    let mut cache = ReportCache::default();
    let mut sources: HashMap<String, Source> = HashMap::new();
    let mut remote: Vec<ImageRef> = Vec::new();
    for image in &images {
        let findings = match locator.locate(image)? {
            Some(path) => ImageFindings::Report(cache.load(&path)?),
            None if args.offline => ImageFindings::Unscanned(UnscannedReason::NoReport),
            None => {
                remote.push(image.clone());
                continue;
            }
        };
        sources.insert(image.original.clone(), Source::local(findings));
    }
    if !remote.is_empty() || args.registry.config.is_some() {
        let client = registry::Registry::new(registry_cfg)?;
        let all = registry::all_platforms(client.config());
        // One lookup per image, however it is spelled.
        let mut distinct: Vec<ImageRef> = Vec::new();
        for image in &remote {
            if !distinct
                .iter()
                .any(|d| d.normalized() == image.normalized())
            {
                distinct.push(image.clone());
            }
        }
        let lookups = client.lookup_all(&distinct);
        for image in &remote {
            let Some(i) = distinct
                .iter()
                .position(|d| d.normalized() == image.normalized())
            else {
                bail!("internal error: {} was not looked up", image.original);
            };
            let source = registry::source(image, lookups[i].clone(), all);
            for w in &source.warnings {
                anstream::eprintln!("warning: {}: {w}", image.original);
            }
            let refused = source.entries.iter().any(|e| {
                matches!(&e.findings,
                    ImageFindings::Unscanned(UnscannedReason::RegistryUnavailable(d))
                        if d.contains("insecureRegistries"))
            });
            if refused {
                anstream::eprintln!(
                    "note: {}: pass --insecure-registry {} to reach a plain-HTTP or loopback registry",
                    image.original,
                    image.registry
                );
            }
            sources.insert(image.original.clone(), source);
        }
    }

    let precedence = args.precedence.into();
    let mut checked = Vec::with_capacity(targets.len());
    for t in targets {
        let Some(src) = sources.get(&t.image.original) else {
            bail!(
                "internal error: no findings looked up for {}",
                t.image.original
            );
        };
        // The registry resolved the reference: the decision names that digest.
        let resolved = match &src.digest {
            Some(d) => t.image.with_digest(d),
            None => t.image.clone(),
        };
        for entry in &src.entries {
            let decision = match &entry.findings {
                ImageFindings::Report(r) => evaluate_report(
                    &rules, precedence, &t, &resolved, src, r, &vex, now, &catalogs,
                ),
                ImageFindings::Unscanned(reason) => evaluate_with(
                    &rules,
                    precedence,
                    &t.ctx,
                    &resolved,
                    Subject::Unscanned(reason),
                    now,
                    &catalogs,
                ),
            };
            let severity = decision.vulnerability_detail.as_ref().map(|v| v.severity);
            checked.push(Checked {
                decision,
                workload: t.workload.clone(),
                severity,
                info: entry.info.clone(),
            });
        }
    }

    let overall = Outcome::combine(checked.iter().map(|c| c.decision.decision));
    match args.output {
        crate::CheckOutput::Json => output::json(overall, &checked)?,
        crate::CheckOutput::Sarif => output::sarif(&rules, &checked)?,
        crate::CheckOutput::Table => output::table(overall, &checked)?,
    }
    let fail = match args.fail_on {
        FailOn::Deny => overall == Outcome::Deny,
        FailOn::Audit => overall >= Outcome::Audit,
        FailOn::Never => false,
    };
    Ok(if fail {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// Evaluates one image against a report (local or from its registry).
#[allow(clippy::too_many_arguments)]
fn evaluate_report(
    rules: &RuleSet,
    precedence: vulngate_core::Precedence,
    t: &Target,
    resolved: &ImageRef,
    src: &Source,
    r: &LoadedReport,
    vex: &[VexStatement],
    now: chrono::DateTime<Utc>,
    catalogs: &Catalogs,
) -> Decision {
    let image = if src.registry {
        resolved.clone()
    } else {
        match (&t.image.digest, &r.report.subject_digest) {
            // The report knows which digest it scanned: the decision names it.
            (None, Some(d)) if is_valid_digest(d) => t.image.with_digest(d),
            (Some(pinned), Some(d)) if pinned != d => {
                // Not an error: an index digest and a platform manifest digest differ.
                anstream::eprintln!(
                    "note: {} scanned {d}, but {} pins {pinned}",
                    r.source,
                    t.image.original
                );
                t.image.clone()
            }
            _ => t.image.clone(),
        }
    };
    let statements: Vec<VexStatement> = r.vex.iter().chain(vex.iter()).cloned().collect();
    let analyzed = AnalyzedReport::new(&r.report, r.identity.clone(), &statements, Some(&image));
    evaluate_with(
        rules,
        precedence,
        &t.ctx,
        &image,
        Subject::Report(&analyzed),
        now,
        catalogs,
    )
}

/// `--kev` and `--epss`, read with their size caps.
fn load_catalogs(args: &CheckArgs) -> Result<Catalogs> {
    use std::io::Read;
    use vulngate_core::exploit::{DEFAULT_EPSS_MAX_BYTES, DEFAULT_KEV_MAX_BYTES};
    let read = |p: &std::path::Path, limit: u64, flag: &str| -> Result<Vec<u8>> {
        let f = std::fs::File::open(p).with_context(|| format!("{flag} {}", p.display()))?;
        let mut bytes = Vec::new();
        f.take(limit + 1)
            .read_to_end(&mut bytes)
            .with_context(|| format!("{flag} {}", p.display()))?;
        if bytes.len() as u64 > limit {
            bail!("{flag} {}: larger than {limit} bytes", p.display());
        }
        Ok(bytes)
    };
    let mut catalogs = Catalogs::default();
    if let Some(p) = &args.kev {
        let bytes = read(p, DEFAULT_KEV_MAX_BYTES, "--kev")?;
        let kev = KevCatalog::parse(&bytes).with_context(|| format!("--kev {}", p.display()))?;
        catalogs.kev = Some(std::sync::Arc::new(kev));
    }
    if let Some(p) = &args.epss {
        let bytes = read(p, DEFAULT_EPSS_MAX_BYTES, "--epss")?;
        let epss = EpssScores::parse(&bytes, DEFAULT_EPSS_MAX_BYTES)
            .with_context(|| format!("--epss {}", p.display()))?;
        catalogs.epss = Some(std::sync::Arc::new(epss));
    }
    Ok(catalogs)
}

/// The images to check: `--image` values first, then the manifests' containers in order.
fn targets(args: &CheckArgs) -> Result<Vec<Target>> {
    let labels: Vec<(String, String)> = args.labels.clone();
    let mut out = Vec::new();
    for reference in &args.images {
        let image = ImageRef::parse(reference).context("--image")?;
        if out
            .iter()
            .any(|t: &Target| t.image.original == image.original)
        {
            continue;
        }
        out.push(Target {
            image,
            ctx: RequestContext {
                cluster: args.cluster.clone(),
                namespace: args.namespace.clone(),
                labels: labels.iter().cloned().collect(),
                ..RequestContext::default()
            },
            workload: None,
        });
    }
    let mut stdin_read = false;
    for file in &args.files {
        let name = file.display().to_string();
        let text = if file == Path::new("-") {
            if stdin_read {
                bail!("-f -: standard input can only be read once");
            }
            stdin_read = true;
            let kind = vulngate_core::limits::FileKind::Report;
            let bytes = vulngate_core::limits::read_capped_from(
                std::io::stdin().lock(),
                Path::new("standard input"),
                kind.cap()?,
                kind.knob(),
            )
            .context("cannot read manifests")?;
            String::from_utf8(bytes).context("manifests on standard input are not UTF-8")?
        } else {
            vulngate_core::limits::read_to_string_capped(
                file,
                vulngate_core::limits::FileKind::Report,
            )
            .context("cannot read manifest")?
        };
        let name = if name == "-" {
            "<stdin>".to_string()
        } else {
            name
        };
        let docs =
            workload::parse_manifests(&text).with_context(|| format!("invalid manifest {name}"))?;
        let before = out.len();
        for doc in docs {
            let what = describe(&doc.value);
            let w = match workload::extract(&doc.value) {
                Ok(w) => w,
                // Manifests carry Services, ConfigMaps...: only workloads have images.
                Err(WorkloadError::UnsupportedKind { kind }) => {
                    anstream::eprintln!(
                        "note: {name}: {}: skipping {kind}{}: not a workload kind",
                        doc.location(),
                        what.1
                            .as_deref()
                            .map(|n| format!(" {n}"))
                            .unwrap_or_default()
                    );
                    continue;
                }
                Err(e) => {
                    return Err(anyhow::Error::new(e).context(format!(
                        "invalid manifest {name}: {}{}",
                        doc.location(),
                        what.0
                    )))
                }
            };
            let namespace = match (&w.namespace, &args.namespace) {
                (Some(m), Some(flag)) if m != flag => bail!(
                    "{name}: {}{}: the namespace from the object ({m}) does not match --namespace {flag}",
                    doc.location(),
                    what.0
                ),
                (Some(m), _) => Some(m.clone()),
                (None, flag) => flag.clone(),
            };
            let mut ctx = w.to_context(args.cluster.clone());
            ctx.namespace = namespace.clone();
            ctx.labels.extend(labels.iter().cloned());
            for c in &w.containers {
                let image = ImageRef::parse(&c.image).with_context(|| {
                    format!(
                        "invalid manifest {name}: {}{}: {} container {:?}",
                        doc.location(),
                        what.0,
                        c.kind,
                        c.name
                    )
                })?;
                out.push(Target {
                    image,
                    ctx: ctx.clone(),
                    workload: Some(WorkloadInfo {
                        kind: w.kind.as_str().to_string(),
                        name: w.name.clone(),
                        namespace: namespace.clone(),
                        container: c.name.clone(),
                        container_kind: c.kind,
                    }),
                });
            }
        }
        if out.len() == before {
            anstream::eprintln!("note: {name}: no workload with containers");
        }
    }
    if out.is_empty() {
        bail!("nothing to check: the manifests hold no workload with containers");
    }
    Ok(out)
}

/// ` (Deployment shop-api)` for messages, and the object's name.
fn describe(v: &serde_json::Value) -> (String, Option<String>) {
    let kind = v.get("kind").and_then(|k| k.as_str());
    let meta = v.get("metadata");
    let name = meta
        .and_then(|m| m.get("name").or_else(|| m.get("generateName")))
        .and_then(|n| n.as_str())
        .map(str::to_string);
    let text = match (kind, &name) {
        (Some(k), Some(n)) => format!(" ({k} {n})"),
        (Some(k), None) => format!(" ({k})"),
        (None, Some(n)) => format!(" ({n})"),
        (None, None) => String::new(),
    };
    (text, name)
}
