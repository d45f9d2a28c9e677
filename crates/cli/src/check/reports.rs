//! Local findings reports: which file belongs to which image (`--report`, `--findings-dir`),
//! loading and parsing them, and local VEX documents (`--vex`).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use anyhow::{anyhow, bail, Context, Result};
use sha2::{Digest, Sha256};
use vulngate_core::findings::{self, Parsed};
use vulngate_core::limits::{self, FileKind};
use vulngate_core::model::{FindingsReport, ReportIdentity, VexStatement};
use vulngate_core::{ImageRef, UnscannedReason};

/// Extensions tried, in this order, for a report named after an image in `--findings-dir`.
pub use vulngate_core::findings::REPORT_EXTENSIONS;

/// The index file of a findings directory.
pub const INDEX_FILE: &str = "index.yaml";

/// A parsed report and its identity.
#[derive(Debug)]
pub struct LoadedReport {
    /// Where it came from (the file name), for messages.
    pub source: String,
    pub report: FindingsReport,
    pub identity: ReportIdentity,
    /// Suppressions that came with the report (a registry lookup also finds attached VEX).
    pub vex: Vec<VexStatement>,
}

/// An image's findings, or why it has none.
#[derive(Debug, Clone)]
pub enum ImageFindings {
    Report(Rc<LoadedReport>),
    Unscanned(UnscannedReason),
}

/// Two spellings of the same image: as written, or once normalised.
pub fn same_image(a: &ImageRef, b: &ImageRef) -> bool {
    a.original == b.original || a.normalized() == b.normalized()
}

pub use vulngate_core::findings::report_file_stem as file_stem;

#[derive(Debug)]
struct Pair {
    image: ImageRef,
    path: PathBuf,
}

#[derive(Debug)]
enum FindingsDir {
    /// `DIR/index.yaml`: image reference -> file name relative to DIR.
    Index {
        index: PathBuf,
        entries: Vec<(ImageRef, PathBuf)>,
    },
    /// Files named after the references.
    Named(PathBuf),
}

/// Finds the local report file of an image.
#[derive(Debug)]
pub struct Locator {
    single: Option<PathBuf>,
    pairs: Vec<Pair>,
    dir: Option<FindingsDir>,
}

impl Locator {
    /// Validates `--report` values against the images being checked (`images`: one entry
    /// per distinct reference as written).
    pub fn new(
        reports: &[String],
        findings_dir: Option<&Path>,
        images: &[ImageRef],
    ) -> Result<Locator> {
        let mut single: Vec<PathBuf> = Vec::new();
        let mut pairs: Vec<Pair> = Vec::new();
        for value in reports {
            // An existing file whose name contains '=' is a file, not IMAGE=FILE.
            match value.split_once('=') {
                Some((image, file)) if !Path::new(value).exists() => {
                    let image =
                        ImageRef::parse(image).with_context(|| format!("--report {value}"))?;
                    if file.is_empty() {
                        bail!("--report {value}: missing FILE after '='");
                    }
                    pairs.push(Pair {
                        image,
                        path: PathBuf::from(file),
                    });
                }
                _ => single.push(PathBuf::from(value)),
            }
        }
        let mut distinct: Vec<&ImageRef> = Vec::new();
        for i in images {
            if !distinct.iter().any(|d| d.normalized() == i.normalized()) {
                distinct.push(i);
            }
        }
        let listed = || {
            distinct
                .iter()
                .map(|i| i.original.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        };
        if !single.is_empty() {
            if single.len() > 1 || !pairs.is_empty() {
                bail!(
                    "--report FILE (without IMAGE=) can only be given once, for a single image; use --report IMAGE=FILE for each image"
                );
            }
            if distinct.len() != 1 {
                bail!(
                    "--report {} needs exactly one image to check, but there are {} ({}); use --report IMAGE=FILE",
                    single[0].display(),
                    distinct.len(),
                    listed()
                );
            }
        }
        for (n, p) in pairs.iter().enumerate() {
            if !images.iter().any(|i| same_image(i, &p.image)) {
                bail!(
                    "--report {}={}: {} is not among the images checked ({})",
                    p.image.original,
                    p.path.display(),
                    p.image.original,
                    listed()
                );
            }
            if let Some(q) = pairs[..n]
                .iter()
                .find(|q| same_image(&q.image, &p.image) && q.path != p.path)
            {
                bail!(
                    "two reports for image {}: {} and {}",
                    p.image.original,
                    q.path.display(),
                    p.path.display()
                );
            }
        }
        let dir = match findings_dir {
            None => None,
            Some(d) => {
                if !d.is_dir() {
                    bail!("--findings-dir {}: not a directory", d.display());
                }
                let index = d.join(INDEX_FILE);
                if index.is_file() {
                    Some(FindingsDir::Index {
                        entries: read_index(&index, d)?,
                        index,
                    })
                } else {
                    Some(FindingsDir::Named(d.to_path_buf()))
                }
            }
        };
        Ok(Locator {
            single: single.pop(),
            pairs,
            dir,
        })
    }

    /// The report file of `image`, if there is one locally.
    pub fn locate(&self, image: &ImageRef) -> Result<Option<PathBuf>> {
        if let Some(p) = &self.single {
            return Ok(Some(p.clone()));
        }
        if let Some(p) = self.pairs.iter().find(|p| same_image(&p.image, image)) {
            return Ok(Some(p.path.clone()));
        }
        match &self.dir {
            None => Ok(None),
            Some(FindingsDir::Index { index, entries }) => {
                match entries.iter().find(|(i, _)| same_image(i, image)) {
                    None => Ok(None),
                    Some((_, path)) if path.is_file() => Ok(Some(path.clone())),
                    Some((_, path)) => Err(anyhow!(
                        "{} maps {} to {}, which is not a file",
                        index.display(),
                        image.original,
                        path.display()
                    )),
                }
            }
            Some(FindingsDir::Named(dir)) => {
                let stem = file_stem(&image.original);
                let found: Vec<PathBuf> = REPORT_EXTENSIONS
                    .iter()
                    .map(|ext| dir.join(format!("{stem}{ext}")))
                    .filter(|p| p.is_file())
                    .collect();
                match found.as_slice() {
                    [] => Ok(None),
                    [one] => Ok(Some(one.clone())),
                    many => Err(anyhow!(
                        "several reports for {} in {}: {}",
                        image.original,
                        dir.display(),
                        many.iter()
                            .map(|p| p.display().to_string())
                            .collect::<Vec<_>>()
                            .join(", ")
                    )),
                }
            }
        }
    }
}

fn read_index(index: &Path, dir: &Path) -> Result<Vec<(ImageRef, PathBuf)>> {
    let text = limits::read_to_string_capped(index, FileKind::Config)?;
    let map: BTreeMap<String, String> = serde_yaml_ng::from_str(&text).with_context(|| {
        format!(
            "{}: expected a mapping of image references to report file names",
            index.display()
        )
    })?;
    map.into_iter()
        .map(|(image, file)| {
            let image = ImageRef::parse(&image).with_context(|| format!("{}", index.display()))?;
            Ok((image, dir.join(file)))
        })
        .collect()
}

/// `sha256:<hex>` of some bytes.
pub fn sha256_digest(bytes: &[u8]) -> String {
    let hash = Sha256::digest(bytes);
    let mut s = String::with_capacity(7 + 64);
    s.push_str("sha256:");
    for b in hash {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

/// Loads and parses report files, each once.
#[derive(Debug, Default)]
pub struct ReportCache {
    loaded: HashMap<PathBuf, Rc<LoadedReport>>,
}

impl ReportCache {
    pub fn load(&mut self, path: &Path) -> Result<Rc<LoadedReport>> {
        if let Some(r) = self.loaded.get(path) {
            return Ok(r.clone());
        }
        let r = Rc::new(load_report(path)?);
        self.loaded.insert(path.to_path_buf(), r.clone());
        Ok(r)
    }
}

/// Reads and parses one findings report. A file that is not a report is an error.
pub fn load_report(path: &Path) -> Result<LoadedReport> {
    let bytes = limits::read_capped(path, FileKind::Report).context("cannot read report")?;
    let parsed = findings::parse(&bytes)
        .with_context(|| format!("cannot parse report {}", path.display()))?;
    let report = match parsed {
        Parsed::Report(r) => r,
        Parsed::Vex(_) => bail!(
            "{} is a VEX document, not a findings report (pass it with --vex)",
            path.display()
        ),
    };
    let identity = ReportIdentity {
        digest: Some(sha256_digest(&bytes)),
        format: Some(report.format),
        scanner: Some(report.scanner.clone()),
        created: report.created,
        verified: false,
    };
    Ok(LoadedReport {
        source: path.display().to_string(),
        report,
        identity,
        vex: Vec::new(),
    })
}

/// Reads one OpenVEX document.
pub fn load_vex(path: &Path) -> Result<Vec<VexStatement>> {
    let bytes = limits::read_capped(path, FileKind::Report).context("cannot read VEX document")?;
    match findings::parse(&bytes)
        .with_context(|| format!("cannot parse VEX document {}", path.display()))?
    {
        Parsed::Vex(statements) => Ok(statements),
        Parsed::Report(_) => bail!(
            "--vex {}: a findings report, not a VEX document (pass it with --report)",
            path.display()
        ),
    }
}
