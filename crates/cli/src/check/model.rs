//! The shared types of `check`: what is evaluated (a target in its context, where its
//! findings came from) and what was decided. `registry` and `output` depend on these; `mod`
//! orchestrates.

use serde::Serialize;
use vulngate_core::engine::{Decision, RequestContext};
use vulngate_core::model::Severity;
use vulngate_core::workload::ContainerKind;
use vulngate_core::ImageRef;

use super::reports::ImageFindings;

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
pub struct Target {
    pub image: ImageRef,
    pub ctx: RequestContext,
    pub workload: Option<WorkloadInfo>,
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
    /// Why the registry could not be asked about the image, when it could not.
    pub unreachable: Option<vulngate_registry::ErrorKind>,
}

impl Source {
    pub fn local(findings: ImageFindings) -> Source {
        Source {
            digest: None,
            registry: false,
            entries: vec![Entry {
                findings,
                info: SourceInfo::default(),
            }],
            warnings: Vec::new(),
            unreachable: None,
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
