//! `vulngate serve`: the admission webhook, on `--config` with flags overriding it, or on
//! embedded defaults (127.0.0.1:8443, self-signed TLS, SQLite alerts in the data directory
//! unless `store`/`--store` names PostgreSQL,
//! the default rule, no registry).

use std::process::ExitCode;

use anyhow::{anyhow, Context, Result};

use crate::ServeArgs;

/// The configuration `serve` runs with: the file (or the defaults), then the flags.
pub fn config(args: &ServeArgs) -> Result<vulngate_server::Config> {
    let mut cfg = match &args.config {
        Some(path) => vulngate_server::Config::load(path).map_err(|e| anyhow!("{e}"))?,
        None => vulngate_server::Config::default(),
    };
    if let Some(r) = &args.rules {
        cfg.rules = Some(r.clone());
    }
    if let Some(l) = args.listen {
        cfg.listen = l;
    }
    if let Some(l) = args.metrics_listen {
        cfg.metrics.listen = Some(l);
    }
    if let Some(d) = &args.data_dir {
        cfg.data_dir = d.clone();
    }
    if let Some(s) = &args.store {
        // Not echoed: the URL may hold a password.
        cfg.store = s.parse().map_err(|e| anyhow!("--store: {e}"))?;
    }
    if let Some(c) = &args.tls_cert {
        cfg.tls.cert_file = Some(c.clone());
    }
    if let Some(k) = &args.tls_key {
        cfg.tls.key_file = Some(k.clone());
    }
    for host in &args.insecure_registries {
        cfg.add_insecure_registry(host);
    }
    cfg.validate()
        .map_err(|(field, message)| anyhow!("configuration: {field}: {message}"))?;
    Ok(cfg)
}

pub fn run(args: ServeArgs) -> Result<ExitCode> {
    let cfg = config(&args)?;
    if args.check_config {
        println!(
            "{}",
            serde_yaml_ng::to_string(&cfg).context("printing the configuration")?
        );
        return Ok(ExitCode::SUCCESS);
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(vulngate_server::run(cfg))
        .map_err(|e| anyhow!("{e}"))?;
    Ok(ExitCode::SUCCESS)
}
