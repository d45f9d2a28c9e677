//! Shared by the benchmark examples: fast seeding of a loopback registry with many distinct
//! images, each with a findings report attached as a referrer, and latency statistics.
//!
//! Images are pushed with plain HTTP requests (one shared config and layer blob; the manifest
//! differs by an annotation, so every image has its own digest); reports are attached with
//! `RegistryClient::attach` (the same code path as `vulngate attach`). Loopback only.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use vulngate_core::ImageRef;
use vulngate_registry::oci::{self, Descriptor, Manifest};
use vulngate_registry::{AttachRequest, RegistryClient, RegistryConfig};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

const CONFIG_MEDIA: &str = "application/vnd.oci.image.config.v1+json";
const LAYER_MEDIA: &str = "application/vnd.oci.image.layer.v1.tar";
const CONFIG: &[u8] = br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":["sha256:0000000000000000000000000000000000000000000000000000000000000000"]}}"#;
const LAYER: &[u8] = b"vulngate benchmark layer (not a real tar; registries do not look inside)";

/// One seeded image: `host/repo@digest` and the digest of the attached report artifact.
#[derive(Debug, Clone)]
pub struct Seeded {
    pub image: String,
    pub digest: String,
    pub artifact: String,
}

/// A Trivy report with one finding `CVE-2099-<n>` of `severity` (real Trivy JSON shape).
pub fn trivy_report(n: usize, severity: &str) -> Vec<u8> {
    format!(
        r#"{{"SchemaVersion":2,"CreatedAt":"2026-11-28T00:00:00Z","ArtifactName":"app","ArtifactType":"container_image","Results":[{{"Target":"app (debian 12)","Class":"os-pkgs","Type":"debian","Vulnerabilities":[{{"VulnerabilityID":"CVE-2099-{n}","PkgName":"openssl","InstalledVersion":"3.0.1","FixedVersion":"3.0.2","Severity":"{severity}","CVSS":{{"nvd":{{"V3Score":5.3}}}}}}]}}]}}"#
    )
    .into_bytes()
}

/// A client for pushing to a plain-HTTP loopback registry.
pub fn insecure_client(host: &str) -> Result<RegistryClient, BoxError> {
    Ok(RegistryClient::new(RegistryConfig {
        insecure_registries: vec![host.to_string()],
        ..RegistryConfig::default()
    })?)
}

async fn push_blob(http: &reqwest::Client, base: &str, bytes: &[u8]) -> Result<(), BoxError> {
    let digest = oci::digest_of(bytes, "sha256:");
    let head = http.head(format!("{base}/blobs/{digest}")).send().await?;
    if head.status().is_success() {
        return Ok(());
    }
    let start = http
        .post(format!("{base}/blobs/uploads/"))
        .header("content-length", "0")
        .send()
        .await?
        .error_for_status()?;
    let loc = start
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .ok_or("upload without Location")?
        .to_string();
    let host = base.split("/v2/").next().unwrap_or(base);
    let mut url = if loc.starts_with("http") {
        loc
    } else {
        format!("{host}{loc}")
    };
    url.push(if url.contains('?') { '&' } else { '?' });
    url.push_str("digest=");
    url.push_str(&digest);
    http.put(url)
        .header("content-type", "application/octet-stream")
        .body(bytes.to_vec())
        .send()
        .await?
        .error_for_status()?;
    Ok(())
}

fn descriptor(media: &str, bytes: &[u8]) -> Descriptor {
    Descriptor {
        media_type: media.to_string(),
        digest: oci::digest_of(bytes, "sha256:"),
        size: bytes.len() as u64,
        artifact_type: None,
        annotations: BTreeMap::new(),
        platform: None,
        data: None,
    }
}

/// Pushes `count` distinct images `host/repo@sha256:...` (annotation `<prefix>-<i>`), each with
/// a Trivy report (`CVE-2099-<offset+i>`, `severity`) attached; `concurrency` at a time.
pub async fn seed(
    host: &str,
    repo: &str,
    prefix: &str,
    offset: usize,
    count: usize,
    severity: &str,
    concurrency: usize,
) -> Result<Vec<Seeded>, BoxError> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()?;
    let base = format!("http://{host}/v2/{repo}");
    push_blob(&http, &base, CONFIG).await?;
    push_blob(&http, &base, LAYER).await?;
    // The empty config of every report artifact, pushed once up front: concurrent first uploads
    // of one blob can make docker-registry refuse a manifest (400) while it lands.
    push_blob(&http, &base, b"{}").await?;
    let client = Arc::new(insecure_client(host)?);
    let mut out: Vec<Option<Seeded>> = vec![None; count];
    let mut set = tokio::task::JoinSet::new();
    let mut next = 0usize;
    let mut done = 0usize;
    while done < count {
        while next < count && set.len() < concurrency.max(1) {
            let (http, base, client) = (http.clone(), base.clone(), client.clone());
            let (host, repo, prefix, severity) = (
                host.to_string(),
                repo.to_string(),
                prefix.to_string(),
                severity.to_string(),
            );
            let i = next;
            set.spawn(async move {
                let r: Result<Seeded, BoxError> = async {
                    let mut annotations = BTreeMap::new();
                    annotations.insert(
                        "dev.vulngate.bench.image".to_string(),
                        format!("{prefix}-{}", offset + i),
                    );
                    let m = Manifest {
                        schema_version: 2,
                        media_type: Some(oci::OCI_MANIFEST.to_string()),
                        artifact_type: None,
                        config: Some(descriptor(CONFIG_MEDIA, CONFIG)),
                        layers: vec![descriptor(LAYER_MEDIA, LAYER)],
                        manifests: Vec::new(),
                        subject: None,
                        annotations,
                    };
                    let bytes = serde_json::to_vec(&m)?;
                    let digest = oci::digest_of(&bytes, "sha256:");
                    http.put(format!("{base}/manifests/{digest}"))
                        .header("content-type", oci::OCI_MANIFEST)
                        .body(bytes)
                        .send()
                        .await?
                        .error_for_status()?;
                    let image = format!("{host}/{repo}@{digest}");
                    let iref = ImageRef::parse(&image).map_err(|e| e.to_string())?;
                    let report = trivy_report(offset + i, &severity);
                    let req = AttachRequest::new(&iref, &report);
                    let mut attempt = 0;
                    let attached = loop {
                        match client.attach(&req).await {
                            Ok(a) => break a,
                            Err(e) if attempt < 3 => {
                                attempt += 1;
                                eprintln!("attach {image}: {e}; retrying");
                                tokio::time::sleep(Duration::from_millis(100)).await;
                            }
                            Err(e) => return Err(e.into()),
                        }
                    };
                    Ok(Seeded {
                        image,
                        digest,
                        artifact: attached.artifact.digest,
                    })
                }
                .await;
                (i, r)
            });
            next += 1;
        }
        if let Some(j) = set.join_next().await {
            let (i, r) = j?;
            out[i] = Some(r?);
            done += 1;
        }
    }
    Ok(out.into_iter().flatten().collect())
}

/// Latency summary of a sample, in milliseconds.
#[derive(Debug, Clone, Copy)]
pub struct Stats {
    pub n: usize,
    pub p50: f64,
    pub p99: f64,
    pub max: f64,
    pub mean: f64,
}

pub fn stats(samples: &[Duration]) -> Stats {
    let mut ms: Vec<f64> = samples.iter().map(|d| d.as_secs_f64() * 1e3).collect();
    ms.sort_by(|a, b| a.total_cmp(b));
    let n = ms.len();
    if n == 0 {
        return Stats {
            n,
            p50: f64::NAN,
            p99: f64::NAN,
            max: f64::NAN,
            mean: f64::NAN,
        };
    }
    // Nearest rank.
    let rank = |q: f64| ms[((q * n as f64).ceil() as usize).clamp(1, n) - 1];
    Stats {
        n,
        p50: rank(0.50),
        p99: rank(0.99),
        max: ms[n - 1],
        mean: ms.iter().sum::<f64>() / n as f64,
    }
}
