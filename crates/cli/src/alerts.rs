//! `vulngate alerts list|show`: read the alert store that `vulngate serve` writes.

use std::process::ExitCode;

use anyhow::{anyhow, Result};
use vulngate_server::{Alert, AlertAction, AlertFilter, AlertStore, StoreUrl};

use crate::{AlertsCommand, AlertsOutput, StoreArgs};

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

pub fn run(cmd: AlertsCommand) -> Result<ExitCode> {
    match cmd {
        AlertsCommand::List(a) => {
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
                AlertsOutput::Json => println!("{}", serde_json::to_string_pretty(&alerts)?),
                AlertsOutput::Table => print_table(&alerts),
            }
            Ok(ExitCode::SUCCESS)
        }
        AlertsCommand::Show(a) => {
            let store = open(&a.store)?;
            match store.get(&a.id).map_err(|e| anyhow!("{e}"))? {
                Some(alert) => {
                    println!("{}", serde_json::to_string_pretty(&alert)?);
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
    for a in alerts {
        // The top workload (a Pod's Deployment), else the object.
        let workload = match (&a.workload_kind, &a.workload_name) {
            (Some(k), Some(n)) => format!("{k}/{n}"),
            _ => format!("{}/{}", a.kind, a.name.as_deref().unwrap_or("-")),
        };
        println!(
            "{:<36}  {:<20}  {:<20}  {:>5}  {:<11}  {:<20}  {:<30}  {:<24}  {}{}",
            a.id,
            time(a.time),
            time(a.last_seen.unwrap_or(a.time)),
            a.count,
            a.action.as_str(),
            a.namespace.as_deref().unwrap_or("-"),
            workload,
            a.rule.as_deref().unwrap_or("-"),
            a.image,
            if a.dry_run { " (dry run)" } else { "" }
        );
    }
    println!("{} alert(s)", alerts.len());
}
