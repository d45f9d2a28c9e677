//! Benchmark (issue 3): cold `RegistryClient::lookup` (resolve + referrers + pull + verify +
//! parse) against real registries on 127.0.0.1, with the network floor measured in the same run.
//!
//! ```text
//! source ~/.cache/vulngate-tools/env.sh
//! cargo run --release -p vulngate-registry --example cold_lookup -- [--images 200] [--signed 200]
//! ```
//!
//! For each registry (docker-registry: referrers tag schema, signed with cosign; ferro-oci-server:
//! referrers API, signed with notation) it pushes distinct images with a Trivy report attached
//! each, then looks every digest up exactly once:
//!
//! - `lookup, new client`: a fresh `RegistryClient` per lookup (no pooled connection, no token,
//!   no state), unsigned reports accepted (no trust policy);
//! - `lookup, shared client`: one client for all lookups (pooled keep-alive connections, as in
//!   `vulngate serve`), other distinct digests;
//! - `lookup signed, new client`: a trust policy requiring a signature; cosign (docker-registry)
//!   or notation (ferro) signatures of the report artifacts.
//!
//! Baselines, interleaved with the lookups they compare to (same registry, same moment):
//! `GET /v2/` on a new connection / on a kept-alive connection (the network floor), and the raw
//! HTTP request sequence of a lookup with plain reqwest (manifest, referrers API or tag index,
//! artifact manifest, report blob; no verification, no parsing) on a new connection.

#[path = "../tests/support/mod.rs"]
mod support;

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::{stats, BoxError, Seeded, Stats};
use support::{Kind, Registry};
use vulngate_core::ImageRef;
use vulngate_registry::config::{CosignTrust, NotationTrust};
use vulngate_registry::{RegistryClient, RegistryConfig, TrustPolicy};

struct Row {
    registry: &'static str,
    case: &'static str,
    lookup: Stats,
    baseline_name: &'static str,
    baseline: Stats,
}

fn plain(host: &str) -> RegistryConfig {
    RegistryConfig {
        insecure_registries: vec![host.to_string()],
        ..RegistryConfig::default()
    }
}

fn signed_config(host: &str, notation: Option<PathBuf>, cosign: Option<PathBuf>) -> RegistryConfig {
    let mut cfg = plain(host);
    cfg.trust_policies.push(TrustPolicy {
        scope: "*".into(),
        require: None, // any configured signature
        notation: notation.map(|c| NotationTrust {
            trust_store: vec![c],
            ..Default::default()
        }),
        cosign: cosign.map(|k| CosignTrust {
            public_keys: vec![k],
            keyless: None,
        }),
    });
    cfg
}

fn new_http() -> Result<reqwest::Client, BoxError> {
    Ok(reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()?)
}

/// `GET /v2/` once; returns the elapsed time.
async fn ping(http: &reqwest::Client, host: &str) -> Result<Duration, BoxError> {
    let t = Instant::now();
    let r = http.get(format!("http://{host}/v2/")).send().await?;
    let status = r.status();
    r.bytes().await?;
    let e = t.elapsed();
    if !status.is_success() {
        return Err(format!("GET /v2/: {status}").into());
    }
    Ok(e)
}

async fn get(
    http: &reqwest::Client,
    url: String,
    accept: &str,
) -> Result<(u16, Vec<u8>), BoxError> {
    let r = http.get(url).header("accept", accept).send().await?;
    let s = r.status().as_u16();
    Ok((s, r.bytes().await?.to_vec()))
}

/// The HTTP requests of a lookup with plain reqwest, nothing verified or parsed beyond the
/// digests needed for the next request.
async fn raw_sequence(
    http: &reqwest::Client,
    host: &str,
    digest: &str,
) -> Result<Duration, BoxError> {
    let base = format!("http://{host}/v2/app");
    let t = Instant::now();
    let (s, _) = get(
        http,
        format!("{base}/manifests/{digest}"),
        vulngate_registry::oci::OCI_MANIFEST,
    )
    .await?;
    if s != 200 {
        return Err(format!("manifest: {s}").into());
    }
    let idx = index_of(http, &base, digest).await?;
    let art = first_digest(&idx, "manifests").ok_or("no referrer")?;
    let (_, m) = get(
        http,
        format!("{base}/manifests/{art}"),
        vulngate_registry::oci::OCI_MANIFEST,
    )
    .await?;
    let blob = first_digest(&m, "layers").ok_or("no layer")?;
    let (s, _) = get(http, format!("{base}/blobs/{blob}"), "*/*").await?;
    if s != 200 {
        return Err(format!("blob: {s}").into());
    }
    Ok(t.elapsed())
}

async fn index_of(http: &reqwest::Client, base: &str, digest: &str) -> Result<Vec<u8>, BoxError> {
    let index = vulngate_registry::oci::OCI_INDEX;
    let (s, body) = get(http, format!("{base}/referrers/{digest}"), index).await?;
    if s == 200 {
        return Ok(body);
    }
    let tag = vulngate_registry::oci::referrers_tag(digest);
    let (s, body) = get(http, format!("{base}/manifests/{tag}"), index).await?;
    if s != 200 {
        return Err(format!("referrers tag index: {s}").into());
    }
    Ok(body)
}

fn first_digest(json: &[u8], field: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(json).ok()?;
    v[field][0]["digest"].as_str().map(str::to_string)
}

async fn timed_lookup(
    client: &RegistryClient,
    s: &Seeded,
    want_signature: bool,
) -> Result<Duration, BoxError> {
    let image = ImageRef::parse(&s.image).map_err(|e| e.to_string())?;
    let t = Instant::now();
    let l = client.lookup(&image).await;
    let e = t.elapsed();
    match &l.report {
        Ok(f) if want_signature && f.signatures.is_empty() => {
            Err(format!("{}: report not verified", s.image).into())
        }
        Ok(f) if f.report.findings.is_empty() => Err(format!("{}: no findings", s.image).into()),
        Ok(_) => Ok(e),
        Err(r) => Err(format!("{}: unscanned: {r} ({:?})", s.image, l.warnings).into()),
    }
}

/// Signs every report artifact, two signing processes at a time.
fn sign_all(artifacts: &[String], sign: &(dyn Fn(&str) + Sync)) {
    let half = artifacts.len().div_ceil(2);
    std::thread::scope(|s| {
        for chunk in artifacts.chunks(half.max(1)) {
            s.spawn(move || chunk.iter().for_each(|a| sign(a)));
        }
    });
}

async fn bench(kind: Kind, n: usize, m: usize, rows: &mut Vec<Row>) -> Result<(), BoxError> {
    let name = match kind {
        Kind::Distribution => "docker-registry 2.8 (tag schema)",
        Kind::Ferro => "ferro-oci-server (referrers API)",
    };
    let reg = Registry::start(kind);
    let host = reg.host.clone();
    let t = Instant::now();
    let fresh = common::seed(&host, "app", "fresh", 0, n, "HIGH", 4).await?;
    let shared = common::seed(&host, "app", "shared", n, n, "HIGH", 4).await?;
    let signed = common::seed(&host, "app", "signed", 2 * n, m, "HIGH", 4).await?;
    eprintln!("{name}: seeded {} images in {:.1?}", 2 * n + m, t.elapsed());

    let t = Instant::now();
    let arts: Vec<String> = signed.iter().map(|s| s.artifact.clone()).collect();
    let signed_cfg = match kind {
        Kind::Ferro => {
            let crt = reg.notation_cert("vulngate-bench");
            sign_all(&arts, &|a| reg.notation_sign(a));
            signed_config(&host, Some(crt), None)
        }
        Kind::Distribution => {
            let (key, public) = reg.cosign_keys("bench");
            sign_all(&arts, &|a| reg.cosign_sign(&key, a));
            signed_config(&host, None, Some(public))
        }
    };
    let sig = match kind {
        Kind::Ferro => "notation",
        Kind::Distribution => "cosign",
    };
    eprintln!(
        "{name}: signed {m} reports with {sig} in {:.1?}",
        t.elapsed()
    );

    // 1. New client per lookup, with GET /v2/ and the raw request sequence on new connections.
    let cfg = plain(&host);
    let (mut look, mut floor, mut raw) = (Vec::new(), Vec::new(), Vec::new());
    for (i, s) in fresh.iter().enumerate() {
        floor.push(ping(&new_http()?, &host).await?);
        let client = RegistryClient::new(cfg.clone())?;
        let http = new_http()?;
        // Alternate the order so neither side always runs second.
        if i % 2 == 0 {
            raw.push(raw_sequence(&http, &host, &s.digest).await?);
            look.push(timed_lookup(&client, s, false).await?);
        } else {
            look.push(timed_lookup(&client, s, false).await?);
            raw.push(raw_sequence(&http, &host, &s.digest).await?);
        }
    }
    let lookup_fresh = stats(&look);
    rows.push(Row {
        registry: name,
        case: "lookup, new client",
        lookup: lookup_fresh,
        baseline_name: "GET /v2/, new connection",
        baseline: stats(&floor),
    });
    rows.push(Row {
        registry: name,
        case: "lookup, new client",
        lookup: lookup_fresh,
        baseline_name: "raw lookup requests (reqwest), new connection",
        baseline: stats(&raw),
    });

    // 2. One client for all lookups (pooled connections), distinct digests.
    let client = RegistryClient::new(cfg.clone())?;
    let http = new_http()?;
    ping(&http, &host).await?;
    timed_lookup(&client, &fresh[0], false).await?; // opens the pooled connection
    let (mut look, mut floor) = (Vec::new(), Vec::new());
    for s in &shared {
        floor.push(ping(&http, &host).await?);
        look.push(timed_lookup(&client, s, false).await?);
    }
    rows.push(Row {
        registry: name,
        case: "lookup, shared client",
        lookup: stats(&look),
        baseline_name: "GET /v2/, kept-alive connection",
        baseline: stats(&floor),
    });

    // 3. Signed reports, trust policy requiring a signature, new client per lookup.
    let (mut look, mut floor) = (Vec::new(), Vec::new());
    for s in &signed {
        floor.push(ping(&new_http()?, &host).await?);
        let client = RegistryClient::new(signed_cfg.clone())?;
        look.push(timed_lookup(&client, s, true).await?);
    }
    rows.push(Row {
        registry: name,
        case: if sig == "cosign" {
            "lookup cosign-signed, new client"
        } else {
            "lookup notation-signed, new client"
        },
        lookup: stats(&look),
        baseline_name: "GET /v2/, new connection",
        baseline: stats(&floor),
    });
    Ok(())
}

fn main() -> Result<(), BoxError> {
    let mut n = 200usize;
    let mut m = None;
    let mut only = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = || args.next().ok_or(format!("{a} needs a value"));
        match a.as_str() {
            "--images" => n = val()?.parse()?,
            "--signed" => m = Some(val()?.parse()?),
            "--only" => only = Some(val()?),
            other => return Err(format!("unknown argument {other}").into()),
        }
    }
    let m = m.unwrap_or(n);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let mut rows = Vec::new();
    for kind in [Kind::Distribution, Kind::Ferro] {
        let key = match kind {
            Kind::Distribution => "distribution",
            Kind::Ferro => "ferro",
        };
        if only.as_deref().is_some_and(|o| o != key) {
            continue;
        }
        rt.block_on(bench(kind, n, m, &mut rows))?;
    }
    println!(
        "| registry | case | n | p50 ms | p99 ms | max ms | baseline | baseline p50 ms | baseline p99 ms | p50 ratio | p99 ratio |"
    );
    println!("| --- | --- | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: |");
    for r in &rows {
        println!(
            "| {} | {} | {} | {:.2} | {:.2} | {:.2} | {} | {:.2} | {:.2} | {:.1}x | {:.1}x |",
            r.registry,
            r.case,
            r.lookup.n,
            r.lookup.p50,
            r.lookup.p99,
            r.lookup.max,
            r.baseline_name,
            r.baseline.p50,
            r.baseline.p99,
            r.lookup.p50 / r.baseline.p50,
            r.lookup.p99 / r.baseline.p99,
        );
    }
    let worst = rows.iter().map(|r| r.lookup.p99).fold(0.0f64, f64::max);
    println!(
        "\nworst lookup p99: {worst:.2} ms (goal <= 50 ms: {})",
        if worst <= 50.0 { "met" } else { "NOT met" }
    );
    Ok(())
}
