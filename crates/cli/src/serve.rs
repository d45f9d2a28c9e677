//! `vulngate serve`: the admission webhook, on `--config` with flags overriding it, or on
//! embedded defaults (127.0.0.1:8443, self-signed TLS, SQLite alerts in the data directory
//! unless `store`/`--store` names PostgreSQL,
//! the default rule, no registry).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{anyhow, Context, Result};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// vulngate.yaml (see docs/configuration.md); the flags below override it.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Security rules: a YAML file or a directory of them (reloaded when they change).
    #[arg(long, value_name = "FILE|DIR")]
    pub rules: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:8443].
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<std::net::SocketAddr>,
    /// Address of the plain-HTTP `/metrics` listener [default: 127.0.0.1:9090].
    #[arg(long, value_name = "ADDR")]
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// Directory for the alert store and the generated certificate [default: ./vulngate-data].
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Alert store: `sqlite` (in the data directory) or `postgres://user@host:port/db?sslmode=...`
    /// (password from `storePasswordFile`, $VULNGATE_STORE_PASSWORD or $PGPASSWORD).
    #[arg(long, value_name = "URL")]
    pub store: Option<String>,
    /// A registry reached over plain HTTP, and allowed on loopback (repeatable).
    #[arg(long = "insecure-registry", value_name = "HOST[:PORT]", value_parser = crate::parse::registry_host)]
    pub insecure_registries: Vec<String>,
    /// Serving certificate (PEM); reloaded when it changes. Without it, a self-signed one.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// Serving certificate's private key (PEM).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Validate the configuration, print it with the flags applied, and exit.
    #[arg(long)]
    pub check_config: bool,
}

/// The configuration `serve` runs with: the file (or the defaults), then the flags.
pub fn config(args: &Args) -> Result<vulngate_server::Config> {
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

pub fn run(args: Args) -> Result<ExitCode> {
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
