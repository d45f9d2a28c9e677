//! `vulngate alerts list|show`: read the alert store that `vulngate serve` writes.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{anyhow, Result};
use chrono::{DateTime, Utc};
use clap::{Subcommand, ValueEnum};
use vulngate_server::{Alert, AlertAction, AlertFilter, AlertStore, StoreUrl};

use crate::text::escape;

#[derive(Debug, Subcommand)]
pub enum Command {
    /// List alerts, newest first.
    List(ListArgs),
    /// Show one alert in full (JSON).
    Show(ShowArgs),
}

/// Which alert store `vulngate alerts` reads: `--store`, else the `store` of `--config`;
/// SQLite in `--data-dir` (else the config's `dataDir`, else ./vulngate-data).
#[derive(Debug, clap::Args)]
pub struct StoreArgs {
    /// The vulngate.yaml of `vulngate serve` (its store, dataDir and storePasswordFile).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The data directory of `vulngate serve` [default: ./vulngate-data].
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Alert store: `sqlite`, a `postgres://` URL (password from the config's
    /// storePasswordFile, $VULNGATE_STORE_PASSWORD or $PGPASSWORD), or `kubernetes` (Alert
    /// objects; the config's kubernetes.kubeconfig, else in-cluster, $KUBECONFIG,
    /// ~/.kube/config).
    #[arg(long, value_name = "URL")]
    pub store: Option<String>,
}

#[derive(Debug, clap::Args)]
pub struct ListArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    /// Only alerts at or after this time (RFC 3339).
    #[arg(long, value_parser = crate::parse::time)]
    pub since: Option<DateTime<Utc>>,
    /// Only this action: audit, deny or break-glass.
    #[arg(long)]
    pub action: Option<String>,
    /// Only this namespace.
    #[arg(long)]
    pub namespace: Option<String>,
    /// Only this rule.
    #[arg(long)]
    pub rule: Option<String>,
    /// Only images containing this text.
    #[arg(long)]
    pub image: Option<String>,
    /// At most this many alerts.
    #[arg(long, default_value_t = 100)]
    pub limit: usize,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value_t = Output::Table)]
    pub output: Output,
}

#[derive(Debug, clap::Args)]
pub struct ShowArgs {
    /// Alert id.
    pub id: String,
    #[command(flatten)]
    pub store: StoreArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Table,
    Json,
}

/// The store `vulngate serve` writes: flags over `--config` over the defaults.
fn open(args: &StoreArgs) -> Result<AlertStore> {
    let cfg = match &args.config {
        Some(path) => vulngate_server::Config::load(path).map_err(|e| anyhow!("{e}"))?,
        None => vulngate_server::Config::default(),
    };
    let store = match &args.store {
        // Not echoed: the URL may hold a password.
        Some(s) => s.parse::<StoreUrl>().map_err(|e| anyhow!("--store: {e}"))?,
        None => cfg.store.clone(),
    };
    let data_dir = args.data_dir.clone().unwrap_or(cfg.data_dir.clone());
    match &store {
        StoreUrl::Sqlite => {
            if !data_dir.join(vulngate_server::alerts::SQLITE_FILE).exists() {
                return Err(anyhow!(
                    "no alert store in {}: pass the --data-dir (or --config, or --store) that \
                     vulngate serve uses",
                    data_dir.display()
                ));
            }
            AlertStore::open(&data_dir)
                .map_err(|e| anyhow!("opening the alert store in {}: {e}", data_dir.display()))
        }
        StoreUrl::Postgres(_) => {
            AlertStore::open_url(&store, &data_dir, cfg.store_password_file.as_deref())
                .map_err(|e| anyhow!("opening the alert store: {e}"))
        }
        // The config's kubernetes.kubeconfig when given, else in-cluster, $KUBECONFIG,
        // ~/.kube/config; reading every namespace needs list on alerts.vulngate.io.
        StoreUrl::Kubernetes => {
            let cfg = vulngate_server::Config {
                store: StoreUrl::Kubernetes,
                kubernetes: Some(cfg.kubernetes.clone().unwrap_or_default()),
                data_dir,
                ..cfg
            };
            AlertStore::open_config(&cfg).map_err(|e| anyhow!("opening the alert store: {e}"))
        }
    }
}

pub fn run(cmd: Command) -> Result<ExitCode> {
    match cmd {
        Command::List(a) => {
            let store = open(&a.store)?;
            let action = match a.action.as_deref() {
                None => None,
                Some("audit") => Some(AlertAction::Audit),
                Some("deny") => Some(AlertAction::Deny),
                Some("break-glass") => Some(AlertAction::BreakGlass),
                Some(other) => {
                    return Err(anyhow!(
                        "--action {other:?}: expected audit, deny or break-glass"
                    ))
                }
            };
            let filter = AlertFilter {
                since: a.since,
                action,
                origin: None,
                namespace: a.namespace,
                rule: a.rule,
                image: a.image,
                limit: Some(a.limit),
                ..AlertFilter::default()
            };
            let alerts = store.list(&filter).map_err(|e| anyhow!("{e}"))?;
            match a.output {
                Output::Json => println!("{}", serde_json::to_string_pretty(&alerts)?),
                Output::Table => print_table(&alerts),
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Show(a) => {
            let store = open(&a.store)?;
            match store.get(&a.id).map_err(|e| anyhow!("{e}"))? {
                Some(alert) => {
                    // Read on a terminal: C1 and bidi characters escaped too (same value).
                    println!("{}", crate::text::to_json_pretty(&alert)?);
                    Ok(ExitCode::SUCCESS)
                }
                None => Err(anyhow!("no alert with id {:?}", a.id)),
            }
        }
    }
}

fn print_table(alerts: &[Alert]) {
    println!(
        "{:<36}  {:<20}  {:<20}  {:>5}  {:<11}  {:<20}  {:<30}  {:<24}  IMAGE",
        "ID", "TIME", "LAST SEEN", "COUNT", "ACTION", "NAMESPACE", "WORKLOAD", "RULE"
    );
    let time = |t: chrono::DateTime<chrono::Utc>| t.format("%Y-%m-%dT%H:%M:%SZ").to_string();
    // Every string but the time and the action comes from a request or a rule: escaped.
    for a in alerts {
        // The top workload (a Pod's Deployment) and the object admitted when they differ
        // (`Alert::subject`), else the object.
        let workload = a
            .subject()
            .unwrap_or_else(|| format!("{}/{}", a.kind, a.name.as_deref().unwrap_or("-")));
        println!(
            "{:<36}  {:<20}  {:<20}  {:>5}  {:<11}  {:<20}  {:<30}  {:<24}  {}{}",
            escape(&a.id),
            time(a.time),
            time(a.last_seen.unwrap_or(a.time)),
            a.count,
            a.action.as_str(),
            escape(a.namespace.as_deref().unwrap_or("-")),
            escape(&workload),
            escape(a.rule.as_deref().unwrap_or("-")),
            escape(&a.image),
            if a.dry_run { " (dry run)" } else { "" }
        );
    }
    println!("{} alert(s)", alerts.len());
}
