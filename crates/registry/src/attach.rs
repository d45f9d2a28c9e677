//! `RegistryClient::attach`: push a report as a referrer of an image.

use std::collections::BTreeMap;

use base64::Engine as _;
use chrono::{DateTime, SecondsFormat, Utc};
use vulngate_core::ImageRef;

use crate::error::{Error, Result};
use crate::oci::{self, Descriptor, Manifest};
use crate::RegistryClient;

/// What to attach.
#[derive(Debug, Clone)]
pub struct AttachRequest<'a> {
    /// The image (tag or digest; a tag is resolved first).
    pub image: &'a ImageRef,
    /// The report bytes, pushed as is.
    pub report: &'a [u8],
    /// Default `application/vnd.vulngate.report+json`.
    pub artifact_type: Option<&'a str>,
    /// Layer media type, default `application/json`.
    pub media_type: Option<&'a str>,
    /// `org.opencontainers.image.title` of the layer, default `report.json`.
    pub title: Option<&'a str>,
    /// Extra manifest annotations.
    pub annotations: BTreeMap<String, String>,
    /// `org.opencontainers.image.created`, default now.
    pub created: Option<DateTime<Utc>>,
}

impl<'a> AttachRequest<'a> {
    pub fn new(image: &'a ImageRef, report: &'a [u8]) -> AttachRequest<'a> {
        AttachRequest {
            image,
            report,
            artifact_type: None,
            media_type: None,
            title: None,
            annotations: BTreeMap::new(),
            created: None,
        }
    }
}

/// What `attach` pushed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attached {
    /// The image manifest (or index) the report is attached to.
    pub subject: Descriptor,
    /// The artifact manifest pushed.
    pub artifact: Descriptor,
    /// Whether the registry serves the referrers API; when not, the `sha256-<hex>` tag schema index
    /// was updated as well.
    pub referrers_api: bool,
}

impl RegistryClient {
    /// Pushes `req.report` as an OCI artifact whose `subject` is the image: an image manifest with
    /// `artifactType`, the empty config descriptor, one layer, and the created annotation. On
    /// registries without the referrers API the `sha256-<hex>` referrers index is updated too.
    pub async fn attach(&self, req: &AttachRequest<'_>) -> Result<Attached> {
        let image = req.image;
        let repo = self
            .transport
            .repo(&image.registry, &image.repository, true, None)?;
        let limit = self.cfg.limits.manifest_bytes;
        let reference = image
            .digest
            .clone()
            .or_else(|| image.tag.clone())
            .unwrap_or_else(|| "latest".into());
        let subj = repo
            .get_manifest(&reference, oci::MANIFEST_ACCEPT, limit)
            .await?;
        let subj_manifest: Manifest =
            serde_json::from_slice(&subj.bytes).map_err(|e| Error::Invalid {
                what: format!("manifest {}", image.normalized()),
                reason: e.to_string(),
            })?;
        let subject = Descriptor {
            media_type: subj_manifest
                .media_type
                .clone()
                .or(subj.content_type.clone())
                .unwrap_or_else(|| oci::OCI_MANIFEST.to_string()),
            digest: subj.digest.clone(),
            size: subj.bytes.len() as u64,
            artifact_type: None,
            annotations: BTreeMap::new(),
            platform: None,
            data: None,
        };

        // Blobs: the empty config and the report.
        repo.push_blob(b"{}", oci::EMPTY_DIGEST).await?;
        let report_digest = oci::digest_of(req.report, "sha256:");
        repo.push_blob(req.report, &report_digest).await?;

        let artifact_type = req
            .artifact_type
            .unwrap_or(oci::VULNGATE_REPORT)
            .to_string();
        let created = req
            .created
            .unwrap_or_else(Utc::now)
            .to_rfc3339_opts(SecondsFormat::Secs, true);
        let mut annotations = req.annotations.clone();
        annotations.insert(oci::ANN_CREATED.to_string(), created);
        let mut layer_ann = BTreeMap::new();
        layer_ann.insert(
            oci::ANN_TITLE.to_string(),
            req.title.unwrap_or("report.json").to_string(),
        );
        let manifest = Manifest {
            schema_version: 2,
            media_type: Some(oci::OCI_MANIFEST.to_string()),
            artifact_type: Some(artifact_type.clone()),
            config: Some(Descriptor {
                media_type: oci::OCI_EMPTY.to_string(),
                digest: oci::EMPTY_DIGEST.to_string(),
                size: 2,
                artifact_type: None,
                annotations: BTreeMap::new(),
                platform: None,
                data: Some(base64::engine::general_purpose::STANDARD.encode(b"{}")),
            }),
            layers: vec![Descriptor {
                media_type: req.media_type.unwrap_or("application/json").to_string(),
                digest: report_digest,
                size: req.report.len() as u64,
                artifact_type: None,
                annotations: layer_ann,
                platform: None,
                data: None,
            }],
            manifests: Vec::new(),
            subject: Some(subject.clone()),
            annotations: annotations.clone(),
        };
        let bytes = serde_json::to_vec(&manifest).map_err(|e| Error::Config(e.to_string()))?;
        let digest = oci::digest_of(&bytes, "sha256:");
        let oci_subject = repo
            .push_manifest(&bytes, oci::OCI_MANIFEST, &digest)
            .await?;
        let artifact = Descriptor {
            media_type: oci::OCI_MANIFEST.to_string(),
            digest,
            size: bytes.len() as u64,
            artifact_type: Some(artifact_type),
            annotations,
            platform: None,
            data: None,
        };

        // Referrers API present? (`OCI-Subject` on the push says so; else ask.)
        let api = oci_subject.is_some()
            || repo
                .referrers_api(&subject.digest, None, limit, 1)
                .await?
                .is_some();
        if !api {
            self.update_tag_index(&repo, &subject.digest, &artifact, limit)
                .await?;
        }
        Ok(Attached {
            subject,
            artifact,
            referrers_api: api,
        })
    }

    async fn update_tag_index(
        &self,
        repo: &crate::http::Repo<'_>,
        subject: &str,
        artifact: &Descriptor,
        limit: u64,
    ) -> Result<()> {
        let tag = oci::referrers_tag(subject);
        let mut index = match repo.get_manifest(&tag, &[oci::OCI_INDEX], limit).await {
            Ok(f) => serde_json::from_slice::<Manifest>(&f.bytes).map_err(|e| Error::Invalid {
                what: format!("referrers tag index {tag}"),
                reason: e.to_string(),
            })?,
            Err(e) if e.is_not_found() => Manifest {
                schema_version: 2,
                media_type: Some(oci::OCI_INDEX.to_string()),
                artifact_type: None,
                config: None,
                layers: Vec::new(),
                manifests: Vec::new(),
                subject: None,
                annotations: BTreeMap::new(),
            },
            Err(e) => return Err(e),
        };
        if index.manifests.iter().any(|d| d.digest == artifact.digest) {
            return Ok(());
        }
        index.manifests.push(artifact.clone());
        let bytes = serde_json::to_vec(&index).map_err(|e| Error::Config(e.to_string()))?;
        repo.push_manifest(&bytes, oci::OCI_INDEX, &tag).await?;
        Ok(())
    }
}
