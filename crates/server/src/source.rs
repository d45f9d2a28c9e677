//! Where findings come from: the [`FindingsSource`] trait, a local directory / in-memory
//! implementation ([`LocalFindings`]) and the OCI registry client ([`RegistrySource`]).

use std::collections::HashMap;
use std::fmt::Debug;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;

use serde::Deserialize;
use sha2::{Digest, Sha256};
use vulngate_core::findings::{self, Parsed};
use vulngate_core::limits::{self, FileKind};
use vulngate_core::model::{FindingsReport, ReportIdentity, VexStatement};
use vulngate_core::{ImageRef, UnscannedReason};
use vulngate_registry::{Credentials, RegistryClient};

use crate::error::{Error, Result};

/// A boxed, sendable future (the trait is used as `Arc<dyn FindingsSource>`).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A findings report with where it came from and the VEX statements that apply to the image.
#[derive(Debug, Clone, PartialEq)]
pub struct FoundReport {
    pub report: FindingsReport,
    pub identity: ReportIdentity,
    pub vex: Vec<VexStatement>,
}

/// What a source knows about an image.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceLookup {
    /// The digest the reference resolves to, when known.
    pub digest: Option<String>,
    /// The report, or why the image has none (no report, untrusted, unparseable).
    pub report: Result<FoundReport, UnscannedReason>,
    /// What the operator should know about the lookup (reports dropped, unverified or merged,
    /// no trust policy): logged and returned as admission warnings.
    pub warnings: Vec<String>,
    /// `platform: all` on a multi-arch image: each platform's report, or why it has none (the
    /// decision is the worst over them; `report` is then the index's own). Empty otherwise.
    pub platforms: Vec<PlatformFound>,
}

/// One platform of a multi-arch image and its report.
#[derive(Debug, Clone, PartialEq)]
pub struct PlatformFound {
    pub platform: String,
    pub digest: Option<String>,
    pub report: Result<FoundReport, UnscannedReason>,
}

/// The source could not answer (unreachable, internal error). The failure policy decides;
/// the message is logged, never returned to the API server.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SourceError(pub String);

/// Looks up the findings of an image.
pub trait FindingsSource: Send + Sync + Debug {
    fn lookup<'a>(
        &'a self,
        image: &'a ImageRef,
    ) -> BoxFuture<'a, std::result::Result<SourceLookup, SourceError>>;

    /// [`lookup`](Self::lookup) with a pod's registry credentials (pull secrets). Sources
    /// that need no credentials ignore them (the default).
    fn lookup_with_credentials<'a>(
        &'a self,
        image: &'a ImageRef,
        credentials: Option<&'a Credentials>,
    ) -> BoxFuture<'a, std::result::Result<SourceLookup, SourceError>> {
        let _ = credentials;
        self.lookup(image)
    }
}

// -------------------------------------------------------------------------------------------------

/// Findings held locally, keyed by image reference (normalised, so `nginx:1.25` and
/// `docker.io/library/nginx:1.25` are one key) and by digest. An image not listed has no report.
#[derive(Debug, Clone, Default)]
pub struct LocalFindings {
    by_ref: HashMap<String, Arc<LocalEntry>>,
    by_digest: HashMap<String, Arc<LocalEntry>>,
    /// Reports found by the file naming convention (no `index.yaml`), by file stem.
    by_stem: HashMap<String, Arc<LocalEntry>>,
}

#[derive(Debug)]
struct LocalEntry {
    digest: Option<String>,
    report: std::result::Result<FoundReport, UnscannedReason>,
}

/// `index.yaml` of a findings directory: a list of entries, or (as `vulngate check` reads it)
/// a map from image reference to report file.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum IndexFile {
    List(LocalIndex),
    Map(std::collections::BTreeMap<String, PathBuf>),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LocalIndex {
    images: Vec<LocalIndexEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LocalIndexEntry {
    image: String,
    #[serde(default)]
    digest: Option<String>,
    report: PathBuf,
    #[serde(default)]
    vex: Vec<PathBuf>,
}

impl LocalFindings {
    /// No findings at all: every image is unscanned (the embedded defaults).
    pub fn empty() -> LocalFindings {
        LocalFindings::default()
    }

    /// Adds a report for `image` (a reference, optionally pinned). `digest` is what the
    /// reference resolves to (defaults to the reference's own digest). Report bytes are parsed
    /// with format detection; the report identity's digest is the SHA-256 of the bytes.
    pub fn with_report(
        self,
        image: &str,
        digest: Option<&str>,
        report: &[u8],
        vex: Vec<VexStatement>,
    ) -> Result<LocalFindings> {
        let found = found_report(report).map_err(Error::Findings)?;
        self.with_found(image, digest, Ok(FoundReport { vex, ..found }))
    }

    /// Adds an entry with an explicit result (a report, or a reason such as `Unverified`).
    pub fn with_found(
        mut self,
        image: &str,
        digest: Option<&str>,
        report: std::result::Result<FoundReport, UnscannedReason>,
    ) -> Result<LocalFindings> {
        let r = ImageRef::parse(image).map_err(|e| Error::Findings(e.to_string()))?;
        let digest = digest.map(str::to_string).or(r.digest.clone());
        let entry = Arc::new(LocalEntry {
            digest: digest.clone(),
            report,
        });
        self.by_ref.insert(r.normalized(), entry.clone());
        if let Some(d) = digest {
            self.by_digest.insert(d, entry);
        }
        Ok(self)
    }

    /// Reads a findings directory, the same way `vulngate check --findings-dir` does:
    /// `index.yaml` lists `{ image, digest?, report: FILE, vex?: [FILE] }` entries (or maps image
    /// references to files), paths relative to the dir; without it, each report is the file
    /// named after the image reference as written ('/', ':', '@' replaced by '_') with one of
    /// [`findings::REPORT_EXTENSIONS`]. Every report is read and parsed now: a bad one is an
    /// error at start, not a surprise at admission.
    pub fn from_dir(dir: &Path) -> Result<LocalFindings> {
        let index_path = dir.join("index.yaml");
        if !index_path.exists() {
            return Self::from_convention(dir);
        }
        // Capped like every file vulngate reads (`VULNGATE_MAX_CONFIG_BYTES`).
        let text = limits::read_to_string_capped(&index_path, FileKind::Config)
            .map_err(|e| Error::Findings(e.to_string()))?;
        let index: IndexFile = serde_yaml_ng::from_str(&text).map_err(|e| {
            Error::Findings(format!(
                "{}: expected `images: [{{image, digest?, report, vex?}}]` or a map of image to report file: {e}",
                index_path.display()
            ))
        })?;
        let entries = match index {
            IndexFile::List(l) => l.images,
            IndexFile::Map(m) => m
                .into_iter()
                .map(|(image, report)| LocalIndexEntry {
                    image,
                    digest: None,
                    report,
                    vex: Vec::new(),
                })
                .collect(),
        };
        let mut out = LocalFindings::empty();
        for (i, e) in entries.iter().enumerate() {
            let at =
                |m: String| Error::Findings(format!("{}: images[{i}]: {m}", index_path.display()));
            let read = |p: &Path| {
                let p = dir.join(p);
                limits::read_capped(&p, FileKind::Report).map_err(|err| at(err.to_string()))
            };
            let mut vex = Vec::new();
            for v in &e.vex {
                let bytes = read(v)?;
                vex.extend(findings::parse_vex(&bytes).map_err(|err| at(err.to_string()))?);
            }
            let bytes = read(&e.report)?;
            out = out
                .with_report(&e.image, e.digest.as_deref(), &bytes, vex)
                .map_err(|err| at(err.to_string()))?;
        }
        Ok(out)
    }

    fn from_convention(dir: &Path) -> Result<LocalFindings> {
        let listing = std::fs::read_dir(dir)
            .map_err(|e| Error::io(format!("reading findings directory {}", dir.display()), e))?;
        let mut out = LocalFindings::empty();
        for entry in listing {
            let path = entry
                .map_err(|e| Error::io(format!("reading findings directory {}", dir.display()), e))?
                .path();
            let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            // The longest matching extension: `a.cdx.json` has the stem `a`.
            let Some(stem) = findings::REPORT_EXTENSIONS
                .iter()
                .filter_map(|ext| name.strip_suffix(ext))
                .min_by_key(|s| s.len())
            else {
                continue;
            };
            if !path.is_file() {
                continue;
            }
            let bytes = limits::read_capped(&path, FileKind::Report)
                .map_err(|e| Error::Findings(e.to_string()))?;
            let found = found_report(&bytes)
                .map_err(|m| Error::Findings(format!("{}: {m}", path.display())))?;
            let entry = Arc::new(LocalEntry {
                digest: None,
                report: Ok(found),
            });
            if out.by_stem.insert(stem.to_string(), entry).is_some() {
                return Err(Error::Findings(format!(
                    "{}: two reports for {stem}",
                    dir.display()
                )));
            }
        }
        Ok(out)
    }
}

fn found_report(bytes: &[u8]) -> std::result::Result<FoundReport, String> {
    let parsed = parse_report(bytes)?;
    let identity = ReportIdentity {
        digest: Some(format!("sha256:{:x}", Sha256::digest(bytes))),
        format: Some(parsed.format),
        scanner: Some(parsed.scanner.clone()),
        created: parsed.created,
        verified: false,
    };
    Ok(FoundReport {
        report: parsed,
        identity,
        vex: Vec::new(),
    })
}

fn parse_report(bytes: &[u8]) -> std::result::Result<FindingsReport, String> {
    match findings::parse(bytes) {
        Ok(Parsed::Report(r)) => Ok(r),
        Ok(Parsed::Vex(_)) => Err("expected a findings report, found a VEX document".into()),
        Err(e) => Err(e.to_string()),
    }
}

impl FindingsSource for LocalFindings {
    fn lookup<'a>(
        &'a self,
        image: &'a ImageRef,
    ) -> BoxFuture<'a, std::result::Result<SourceLookup, SourceError>> {
        Box::pin(async move {
            let entry = image
                .digest
                .as_ref()
                .and_then(|d| self.by_digest.get(d))
                .or_else(|| self.by_ref.get(&image.normalized()))
                .or_else(|| {
                    self.by_stem
                        .get(&findings::report_file_stem(&image.original))
                });
            Ok(match entry {
                Some(e) => SourceLookup {
                    digest: e.digest.clone().or(image.digest.clone()),
                    report: e.report.clone(),
                    warnings: Vec::new(),
                    platforms: Vec::new(),
                },
                None => SourceLookup {
                    digest: image.digest.clone(),
                    report: Err(UnscannedReason::NoReport),
                    warnings: Vec::new(),
                    platforms: Vec::new(),
                },
            })
        })
    }
}

// -------------------------------------------------------------------------------------------------

/// Findings from OCI registries (referrers of the image), via `vulngate-registry`.
#[derive(Debug, Clone)]
pub struct RegistrySource {
    client: Arc<RegistryClient>,
}

impl RegistrySource {
    pub fn new(client: Arc<RegistryClient>) -> RegistrySource {
        RegistrySource { client }
    }
}

impl FindingsSource for RegistrySource {
    fn lookup<'a>(
        &'a self,
        image: &'a ImageRef,
    ) -> BoxFuture<'a, std::result::Result<SourceLookup, SourceError>> {
        self.lookup_with_credentials(image, None)
    }

    fn lookup_with_credentials<'a>(
        &'a self,
        image: &'a ImageRef,
        credentials: Option<&'a Credentials>,
    ) -> BoxFuture<'a, std::result::Result<SourceLookup, SourceError>> {
        Box::pin(async move {
            let l = self.client.lookup_with(image, credentials).await;
            let found = |f: vulngate_registry::Found| FoundReport {
                report: f.report,
                identity: f.identity,
                vex: f.vex,
            };
            // The registry could not be asked (for the image or one of its platforms): that
            // is the failure policy's call.
            if let Err(UnscannedReason::RegistryUnavailable(detail)) = &l.report {
                return Err(SourceError(detail.clone()));
            }
            let mut platforms = Vec::new();
            if !l.platforms.is_empty() {
                for j in l.judged() {
                    if let Err(UnscannedReason::RegistryUnavailable(detail)) = j.report {
                        return Err(SourceError(detail));
                    }
                    platforms.push(PlatformFound {
                        platform: j.platform.unwrap_or_default(),
                        digest: j.platform_digest,
                        report: j.report.map(found),
                    });
                }
            }
            Ok(SourceLookup {
                digest: l.digest,
                warnings: l.warnings,
                report: l.report.map(found),
                platforms,
            })
        })
    }
}
