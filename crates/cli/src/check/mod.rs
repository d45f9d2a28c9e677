//! `vulngate check`: the engine for CI pipelines (ARCHITECTURE.md section 6).
//!
//! `model` holds the shared types; `targets` finds the images, `reports` their local reports
//! and `registry` looks the others up; `output` prints the decisions. This module parses the
//! arguments and runs those steps in order; none of them imports it back (except for `Args`).

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use chrono::{DateTime, Utc};
use clap::{ArgGroup, ValueEnum};
use vulngate_core::engine::{AnalyzedReport, Decision, Outcome, Subject};
use vulngate_core::image::is_valid_digest;
use vulngate_core::model::VexStatement;
use vulngate_core::{
    evaluate_with, Catalogs, EpssScores, ImageRef, KevCatalog, RuleSet, UnscannedReason,
};
use vulngate_registry::{ErrorKind, Refusal};

pub mod model;
mod output;
pub mod registry;
mod reports;
mod targets;

use crate::text::escape;
use model::{Checked, Source, Target};
use registry::RegistryArgs;
use reports::{ImageFindings, LoadedReport, Locator, ReportCache};

const AFTER_HELP: &str = "\
Finding the report of an image (first match wins):
  1. --report FILE           the only image being checked (exactly one image in total)
     --report IMAGE=FILE     the image IMAGE (as written, or the same image normalised:
                             nginx = docker.io/library/nginx:latest)
  2. --findings-dir DIR      if DIR/index.yaml exists, it maps image references to file names
                             relative to DIR, e.g.
                                 registry.example.com/shop/api:1.4.2: api-scan.json
                             and is the only source in DIR. Otherwise the report is the file
                             named after the image reference as written, with '/', ':' and '@'
                             replaced by '_', and one of the extensions .json, .sarif, .cdx.json
                             or .intoto.json:
                                 registry.example.com/shop/api:1.4.2
                                   -> DIR/registry.example.com_shop_api_1.4.2.json
                                 ghcr.io/o/app@sha256:ab..
                                   -> DIR/ghcr.io_o_app_sha256_ab...sarif
  3. the image's registry    (unless --offline): the tag is resolved to a digest, the
                             findings artifacts attached to it as referrers are discovered,
                             verified against the trust policies of --config and parsed; the
                             newest valid one decides. An image whose registry cannot be asked,
                             or has no valid report, is unscanned, with the exact reason (a
                             blockUnscanned rule decides; never exit 2). Plain HTTP, and
                             loopback addresses, only for --insecure-registry hosts.
     --offline               never contact a registry: no local report means unscanned
Reports are detected from their content: Trivy JSON, Grype JSON, SARIF 2.1.0, CycloneDX,
in-toto/cosign vulnerability attestations. A local report that cannot be parsed is an error
(exit 2). Registry warnings (e.g. a report accepted unsigned) are printed on stderr.

Exit codes: 0 allowed, 1 denied (or audited with --fail-on audit), 2 bad input.";

#[derive(Debug, clap::Args)]
#[command(
    group(ArgGroup::new("targets").required(true).multiple(true).args(["images", "files"])),
    after_long_help = AFTER_HELP
)]
pub struct Args {
    /// An image reference to check (repeatable).
    #[arg(long = "image", value_name = "REF")]
    pub images: Vec<String>,
    /// Kubernetes manifests whose images to check: multi-document YAML or JSON, `kind: List`
    /// included; `-` reads standard input (repeatable). Supported kinds: Pod,
    /// Deployment, ReplicaSet, StatefulSet, DaemonSet, Job, CronJob, ReplicationController.
    #[arg(short = 'f', long = "filename", value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// A findings report: `FILE` when exactly one image is checked, else `IMAGE=FILE`
    /// (repeatable).
    #[arg(long = "report", value_name = "[IMAGE=]FILE")]
    pub reports: Vec<String>,
    /// A directory of findings reports named after the image references (see below).
    #[arg(long, value_name = "DIR")]
    pub findings_dir: Option<PathBuf>,
    /// An OpenVEX document whose not_affected/fixed statements suppress findings
    /// (repeatable).
    #[arg(long = "vex", value_name = "FILE")]
    pub vex: Vec<PathBuf>,
    /// Security rules: a YAML file or a directory of them [default: the built-in rule,
    /// audit high and critical vulnerabilities].
    #[arg(long, value_name = "FILE|DIR")]
    pub rules: Option<PathBuf>,
    /// Namespace of the images; for manifests, the namespace of objects that name none (an
    /// object naming another namespace is an error, as with kubectl).
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
    /// A pod label (repeatable); merged over the manifests' pod template labels.
    #[arg(long = "label", value_name = "KEY=VALUE", value_parser = crate::parse::label)]
    pub labels: Vec<(String, String)>,
    /// Cluster name, for rules scoped to a cluster.
    #[arg(long)]
    pub cluster: Option<String>,
    /// Rule precedence: `default` walks vulnerabilities most severe first (deny before audit
    /// at each); `strictest` tries every deny rule before any audit rule.
    #[arg(long, value_enum, default_value_t = PrecedenceArg::Default)]
    pub precedence: PrecedenceArg,
    /// The CISA KEV catalog (its JSON feed, at most 32 MiB), for `knownExploited` conditions.
    #[arg(long, value_name = "FILE")]
    pub kev: Option<PathBuf>,
    /// FIRST EPSS scores (the CSV, plain or gzip, at most 64 MiB), for `epssAtLeast` and
    /// `epssPercentileAtLeast` conditions.
    #[arg(long, value_name = "FILE")]
    pub epss: Option<PathBuf>,
    /// Never contact a registry: an image without a report is unscanned.
    #[arg(long)]
    pub offline: bool,
    #[command(flatten)]
    pub registry: RegistryArgs,
    /// Platform of a multi-arch image whose findings count: os/arch[/variant], or `all` to
    /// evaluate every platform of the index [default: the config's `platform`, linux/amd64].
    #[arg(long, value_name = "OS/ARCH|all", value_parser = crate::parse::platform)]
    pub platform: Option<String>,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value_t = Output::Table)]
    pub output: Output,
    /// Which overall decision makes the exit code 1.
    #[arg(long, value_enum, default_value_t = FailOn::Deny)]
    pub fail_on: FailOn,
    /// Evaluation time (RFC 3339), for reproducible runs.
    #[arg(long, hide = true, value_parser = crate::parse::time)]
    pub now: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PrecedenceArg {
    Default,
    Strictest,
}

impl From<PrecedenceArg> for vulngate_core::Precedence {
    fn from(p: PrecedenceArg) -> Self {
        match p {
            PrecedenceArg::Default => vulngate_core::Precedence::Default,
            PrecedenceArg::Strictest => vulngate_core::Precedence::Strictest,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Table,
    Json,
    Sarif,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FailOn {
    Deny,
    Audit,
    Never,
}

pub fn run(args: Args) -> Result<ExitCode> {
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
    let targets = targets::targets(&args)?;
    let sources = find_sources(&args, &targets)?;

    let inputs = Inputs {
        rules: &rules,
        precedence: args.precedence.into(),
        vex: &vex,
        now,
        catalogs: &catalogs,
    };
    let mut checked = Vec::with_capacity(targets.len());
    for t in targets {
        let Some(src) = sources.get(&t.image.original) else {
            bail!(
                "internal error: no findings looked up for {}",
                t.image.original
            );
        };
        checked.extend(inputs.evaluate(&t, src));
    }

    let overall = Outcome::combine(checked.iter().map(|c| c.decision.decision));
    match args.output {
        Output::Json => output::json(overall, &checked)?,
        Output::Sarif => output::sarif(&rules, &checked)?,
        Output::Table => output::table(overall, &checked)?,
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

/// Where each distinct image (as written) gets its findings: a local report, `--offline`, or
/// its registry (looked up concurrently, once per image however it is spelled).
fn find_sources(args: &Args, targets: &[Target]) -> Result<HashMap<String, Source>> {
    // Distinct images, as written (a findings directory names reports after that spelling).
    let mut images: Vec<ImageRef> = Vec::new();
    for t in targets {
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
    if remote.is_empty() && args.registry.config.is_none() {
        return Ok(sources);
    }
    let client = registry::Registry::new(registry_cfg)?;
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
        let source = registry::source(image, lookups[i].clone());
        for w in &source.warnings {
            anstream::eprintln!("warning: {}: {}", image.original, escape(w));
        }
        // Only `--insecure-registry` lets the registry be reached: say so.
        if matches!(
            source.unreachable,
            Some(ErrorKind::Refused(Refusal::NeedsInsecure))
        ) {
            anstream::eprintln!(
                "note: {}: pass --insecure-registry {} to reach a plain-HTTP or loopback registry",
                image.original,
                image.registry
            );
        }
        sources.insert(image.original.clone(), source);
    }
    Ok(sources)
}

/// What every image is evaluated with.
struct Inputs<'a> {
    rules: &'a RuleSet,
    precedence: vulngate_core::Precedence,
    /// `--vex` statements (a report's own come with it).
    vex: &'a [VexStatement],
    now: DateTime<Utc>,
    catalogs: &'a Catalogs,
}

impl Inputs<'_> {
    /// One decision per entry of the image's source (one, or one per platform).
    fn evaluate(&self, t: &Target, src: &Source) -> Vec<Checked> {
        // The registry resolved the reference: the decision names that digest.
        let resolved = match &src.digest {
            Some(d) => t.image.with_digest(d),
            None => t.image.clone(),
        };
        src.entries
            .iter()
            .map(|entry| {
                let decision = match &entry.findings {
                    ImageFindings::Report(r) => self.evaluate_report(t, &resolved, src, r),
                    ImageFindings::Unscanned(reason) => evaluate_with(
                        self.rules,
                        self.precedence,
                        &t.ctx,
                        &resolved,
                        Subject::Unscanned(reason),
                        self.now,
                        self.catalogs,
                    ),
                };
                let severity = decision.vulnerability_detail.as_ref().map(|v| v.severity);
                Checked {
                    decision,
                    workload: t.workload.clone(),
                    severity,
                    info: entry.info.clone(),
                }
            })
            .collect()
    }

    /// Evaluates one image against a report (local or from its registry).
    fn evaluate_report(
        &self,
        t: &Target,
        resolved: &ImageRef,
        src: &Source,
        r: &LoadedReport,
    ) -> Decision {
        let image = if src.registry {
            resolved.clone()
        } else {
            match (&t.image.digest, &r.report.subject_digest) {
                // The report knows which digest it scanned: the decision names it.
                (None, Some(d)) if is_valid_digest(d) => t.image.with_digest(d),
                (Some(pinned), Some(d)) if pinned != d => {
                    // Not an error: an index digest and a platform manifest digest differ.
                    // The report's digest is its own text: escaped.
                    let note = format!(
                        "{} scanned {d}, but {} pins {pinned}",
                        r.source, t.image.original
                    );
                    anstream::eprintln!("note: {}", escape(&note));
                    t.image.clone()
                }
                _ => t.image.clone(),
            }
        };
        let statements: Vec<VexStatement> = r.vex.iter().chain(self.vex.iter()).cloned().collect();
        let analyzed =
            AnalyzedReport::new(&r.report, r.identity.clone(), &statements, Some(&image));
        evaluate_with(
            self.rules,
            self.precedence,
            &t.ctx,
            &image,
            Subject::Report(&analyzed),
            self.now,
            self.catalogs,
        )
    }
}

/// `--kev` and `--epss`, read with their size caps.
fn load_catalogs(args: &Args) -> Result<Catalogs> {
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
