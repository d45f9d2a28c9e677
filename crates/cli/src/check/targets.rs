//! The images `check` evaluates, in their context: `--image` values and the containers of
//! `-f` manifests.

use std::path::Path;

use anyhow::{bail, Context, Result};
use vulngate_core::engine::RequestContext;
use vulngate_core::workload::{self, WorkloadError};
use vulngate_core::ImageRef;

use super::model::{Target, WorkloadInfo};
use super::Args;
use crate::text::escape;

/// The images to check: `--image` values first, then the manifests' containers in order.
pub fn targets(args: &Args) -> Result<Vec<Target>> {
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
                    // Kind and name are the manifest's text: escaped.
                    let note = format!(
                        "{name}: {}: skipping {kind}{}: not a workload kind",
                        doc.location(),
                        what.1
                            .as_deref()
                            .map(|n| format!(" {n}"))
                            .unwrap_or_default()
                    );
                    anstream::eprintln!("note: {}", escape(&note));
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
            anstream::eprintln!("note: {}: no workload with containers", escape(&name));
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
