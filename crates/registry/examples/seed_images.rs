//! Seeds a loopback registry with distinct images, each with a Trivy report attached, and prints
//! one digest-pinned reference per line (used by scripts/bench-webhook.sh).
//!
//! ```text
//! cargo run --release -p vulngate-registry --example seed_images -- \
//!     --registry 127.0.0.1:5000 --count 10000 [--repo app] [--prefix bench] [--offset 0] \
//!     [--severity LOW] [--concurrency 8] > images.txt
//! ```

mod common;

use std::time::Instant;

fn main() -> Result<(), common::BoxError> {
    let mut registry = None;
    let mut count = 100usize;
    let mut repo = "app".to_string();
    let mut prefix = "bench".to_string();
    let mut offset = 0usize;
    let mut severity = "LOW".to_string();
    let mut concurrency = 8usize;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = || args.next().ok_or(format!("{a} needs a value"));
        match a.as_str() {
            "--registry" => registry = Some(val()?),
            "--count" => count = val()?.parse()?,
            "--repo" => repo = val()?,
            "--prefix" => prefix = val()?,
            "--offset" => offset = val()?.parse()?,
            "--severity" => severity = val()?,
            "--concurrency" => concurrency = val()?.parse()?,
            other => return Err(format!("unknown argument {other}").into()),
        }
    }
    let registry = registry.ok_or("--registry HOST:PORT is required")?;
    if !registry.starts_with("127.0.0.1:") && !registry.starts_with("localhost:") {
        return Err("only loopback registries (127.0.0.1:PORT) are seeded".into());
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let started = Instant::now();
    let seeded = rt.block_on(common::seed(
        &registry,
        &repo,
        &prefix,
        offset,
        count,
        &severity,
        concurrency,
    ))?;
    for s in &seeded {
        println!("{}", s.image);
    }
    eprintln!(
        "seeded {} images with reports into {registry}/{repo} in {:.1?}",
        seeded.len(),
        started.elapsed()
    );
    Ok(())
}
