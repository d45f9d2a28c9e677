//! Retention of the Kubernetes store, run by the replica that holds the leader Lease only:
//! objects last seen more than `retention` ago are deleted, then the least recently seen
//! beyond `maxObjects`.

use std::time::Duration;

use chrono::{DateTime, Utc};
use kube::api::{Api, DeleteParams, ListParams, Preconditions};
use serde_json::Value;

use super::{
    api_code, AlertObject, KubernetesStoreConfig, LABEL_MANAGED_BY, LIST_PAGE, MAX_RETENTION_SCAN,
};
use crate::cluster::leader::Leadership;

/// What one retention run did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RetentionReport {
    /// Objects read.
    pub scanned: usize,
    /// Deleted: last seen before `now - retention`.
    pub expired: usize,
    /// Deleted: the least recently seen beyond `maxObjects`.
    pub over_cap: usize,
    /// Not deleted because they changed since they were read (a new alert), or were gone.
    pub skipped: usize,
}

/// When an object was last seen: its status's `lastSeen`, else its alert's time, else its
/// creation time.
fn last_seen(o: &AlertObject) -> Option<DateTime<Utc>> {
    o.status
        .as_ref()
        .and_then(|s| s.last_seen)
        .or_else(|| {
            o.spec
                .0
                .get("time")
                .and_then(Value::as_str)
                .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                .map(|t| t.with_timezone(&Utc))
        })
        .or_else(|| {
            o.metadata
                .creation_timestamp
                .as_ref()
                .and_then(|t| DateTime::from_timestamp_millis(t.0.as_millisecond()))
        })
}

/// One retention pass over every Alert object vulngate wrote: deletes those last seen before
/// `now - retention`, then the least recently seen beyond `maxObjects`. Deletes carry the
/// `resourceVersion` read, so an alert updated meanwhile is kept (counted in `skipped`).
pub async fn retention_once(
    client: &kube::Client,
    cfg: &KubernetesStoreConfig,
    now: DateTime<Utc>,
) -> Result<RetentionReport, kube::Error> {
    let all: Api<AlertObject> = Api::all(client.clone());
    let mut lp = ListParams::default()
        .labels(&format!("{LABEL_MANAGED_BY}=vulngate"))
        .limit(LIST_PAGE);
    // (last seen, namespace, name, resourceVersion)
    let mut objects: Vec<(Option<DateTime<Utc>>, String, String, String)> = Vec::new();
    loop {
        let page = all.list(&lp).await?;
        for o in &page.items {
            objects.push((
                last_seen(o),
                o.metadata.namespace.clone().unwrap_or_default(),
                o.metadata.name.clone().unwrap_or_default(),
                o.metadata.resource_version.clone().unwrap_or_default(),
            ));
        }
        if objects.len() >= MAX_RETENTION_SCAN {
            tracing::warn!(
                scanned = objects.len(),
                "alert retention: more Alert objects than one run reads; the rest next run"
            );
            break;
        }
        match page.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(c) => lp.continue_token = Some(c),
            None => break,
        }
    }
    let mut report = RetentionReport {
        scanned: objects.len(),
        ..Default::default()
    };
    let cutoff = chrono::Duration::from_std(cfg.retention)
        .ok()
        .and_then(|d| now.checked_sub_signed(d));
    // Oldest first (unknown times count as oldest).
    objects.sort();
    let mut kept = Vec::new();
    for o in objects {
        let expired = match (o.0, cutoff) {
            (Some(t), Some(c)) => t < c,
            (None, _) => false,
            (Some(_), None) => false,
        };
        if expired {
            match delete(client, &o.1, &o.2, &o.3).await? {
                true => report.expired += 1,
                false => report.skipped += 1,
            }
        } else {
            kept.push(o);
        }
    }
    let over = kept.len().saturating_sub(cfg.max_objects);
    for o in kept.iter().take(over) {
        match delete(client, &o.1, &o.2, &o.3).await? {
            true => report.over_cap += 1,
            false => report.skipped += 1,
        }
    }
    Ok(report)
}

/// Deletes one object if it still has `resource_version`; false when it changed or is gone.
async fn delete(
    client: &kube::Client,
    ns: &str,
    name: &str,
    resource_version: &str,
) -> Result<bool, kube::Error> {
    let api: Api<AlertObject> = Api::namespaced(client.clone(), ns);
    let dp = DeleteParams {
        preconditions: Some(Preconditions {
            resource_version: Some(resource_version.to_string()),
            uid: None,
        }),
        ..Default::default()
    };
    match api.delete(name, &dp).await {
        Ok(_) => Ok(true),
        Err(e) if matches!(api_code(&e), Some(404 | 409)) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Runs the retention every `retentionInterval` while this replica is the leader.
pub fn spawn_retention(
    client: kube::Client,
    cfg: KubernetesStoreConfig,
    leadership: Leadership,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut leadership = leadership;
        loop {
            leadership.until_leader().await;
            let mut lost = leadership.clone();
            let run = tokio::time::timeout(
                cfg.retention_interval.max(Duration::from_secs(60)),
                retention_once(&client, &cfg, Utc::now()),
            );
            tokio::select! {
                r = run => match r {
                    Ok(Ok(rep)) if rep.expired + rep.over_cap > 0 => tracing::info!(
                        scanned = rep.scanned, expired = rep.expired, over_cap = rep.over_cap,
                        skipped = rep.skipped, "alert retention: old Alert objects deleted"),
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => tracing::warn!(error = %e,
                        "alert retention: cannot list or delete Alert objects; retried later"),
                    Err(_) => tracing::warn!("alert retention: the run did not finish in time"),
                },
                _ = lost.until_lost() => {
                    tracing::info!("alert retention: no longer the leader; stopped");
                }
            }
            tokio::time::sleep(cfg.retention_interval).await;
        }
    })
}
