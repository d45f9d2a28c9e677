//! One re-evaluator among the replicas (`kubernetes.leaderElection`).
//!
//! Every replica answers the webhook, but only one re-evaluates running workloads and writes
//! PolicyReports and runtime alerts: the holder of a `coordination.k8s.io/v1` Lease, taken and
//! renewed as client-go's leader election does it: read the Lease, then update it with its
//! `resourceVersion` (an optimistic lock: of two replicas updating at once, one gets 409 and
//! stays a follower); an expired Lease (`renewTime + leaseDurationSeconds` in the past) is taken
//! over. Written here rather than with `kube-lease-manager` (the maintained kube-rs crate):
//! that crate writes the Lease with strategic-merge patches, which only the built-in Lease API
//! accepts; an API server that serves Leases from a CustomResourceDefinition (our test API
//! server) answers 415, while a read-then-update with `resourceVersion` works on both.
//!
//! The leader steps down on its own when it could not renew for `leaseDuration - renewGrace`
//! (API server unreachable, conflicts): it stops before the Lease expires for the others, so two
//! replicas never re-evaluate at the same time because one lost the API server.
//!
//! A leader killed without releasing (kill -9, node loss) is replaced after at most
//! `leaseDuration` plus one retry (default 10 s); a leader that stops normally releases the
//! Lease and is replaced at once.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, PostParams};
use tokio::sync::{oneshot, watch};

use crate::config::LeaderElectionConfig;

/// Whether this replica is the re-evaluating one, as it changes.
#[derive(Debug, Clone)]
pub struct Leadership {
    rx: watch::Receiver<bool>,
}

impl Leadership {
    /// Always the leader: leader election is off (one replica).
    pub fn always() -> Leadership {
        let (_tx, rx) = watch::channel(true);
        Leadership { rx }
    }

    /// True while this replica holds the Lease.
    pub fn is_leader(&self) -> bool {
        *self.rx.borrow()
    }

    /// Returns once this replica is the leader (at once when it is).
    pub async fn until_leader(&mut self) {
        self.until(true).await
    }

    /// Returns once this replica is no longer the leader; never when election is off.
    pub async fn until_lost(&mut self) {
        self.until(false).await
    }

    async fn until(&mut self, want: bool) {
        loop {
            if *self.rx.borrow_and_update() == want {
                return;
            }
            if self.rx.changed().await.is_err() {
                // The election ended (shutdown, or election off): the last value stays.
                if *self.rx.borrow() == want {
                    return;
                }
                std::future::pending::<()>().await;
            }
        }
    }
}

/// The running election; dropping it releases the Lease (best effort) and stops.
#[derive(Debug)]
pub struct Election {
    pub leadership: Leadership,
    pub identity: String,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Election {
    /// Stops the election and releases the Lease if this replica holds it; waits for the
    /// release (bounded by the client's timeouts), so that another replica takes over at once.
    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        let task = std::mem::replace(&mut self.task, tokio::spawn(async {}));
        let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
    }
}

impl Drop for Election {
    fn drop(&mut self) {
        // The task sees the closed channel, releases the Lease and ends; when the runtime
        // stops first, the Lease simply expires.
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

/// This replica's identity: `identity`, else `$POD_NAME`, else the host name and process id
/// (two processes on one host stay distinct).
pub fn identity(cfg: &LeaderElectionConfig) -> String {
    if let Some(id) = cfg.identity.as_ref().filter(|s| !s.is_empty()) {
        return id.clone();
    }
    if let Some(pod) = std::env::var("POD_NAME").ok().filter(|s| !s.is_empty()) {
        return pod;
    }
    let host = std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "vulngate".to_string());
    format!("{host}-{}", std::process::id())
}

/// The Lease's namespace: `namespace`, else `$POD_NAMESPACE`, else `vulngate`.
pub fn namespace(cfg: &LeaderElectionConfig) -> String {
    cfg.namespace
        .clone()
        .filter(|s| !s.is_empty())
        .or_else(|| {
            std::env::var("POD_NAMESPACE")
                .ok()
                .filter(|s| !s.is_empty())
        })
        .unwrap_or_else(|| "vulngate".to_string())
}

/// How often the Lease is read (followers) or renewed (leader): a fifth of its duration,
/// between 1 and 5 seconds (client-go: 2 s for 15 s).
fn retry_period(duration: Duration) -> Duration {
    (duration / 5).clamp(Duration::from_secs(1), Duration::from_secs(5))
}

fn millis(t: &MicroTime) -> i64 {
    t.0.as_millisecond()
}

/// One attempt to take or renew the Lease: `Ok(true)` when this replica holds it afterwards.
async fn acquire_or_renew(
    api: &Api<Lease>,
    name: &str,
    id: &str,
    duration: Duration,
) -> Result<bool, kube::Error> {
    let now = MicroTime(Timestamp::now());
    let seconds = i32::try_from(duration.as_secs()).unwrap_or(i32::MAX);
    let Some(mut lease) = api.get_opt(name).await? else {
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(name.to_string()),
                ..Default::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(id.to_string()),
                lease_duration_seconds: Some(seconds),
                acquire_time: Some(now.clone()),
                renew_time: Some(now),
                lease_transitions: Some(0),
                ..Default::default()
            }),
        };
        return match api.create(&PostParams::default(), &lease).await {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(false), // another replica was first
            Err(e) => Err(e),
        };
    };
    let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
    let holder = spec.holder_identity.clone().filter(|h| !h.is_empty());
    let held_for = i64::from(spec.lease_duration_seconds.unwrap_or(seconds).max(1)) * 1000;
    let expired = match &spec.renew_time {
        Some(renewed) => millis(renewed).saturating_add(held_for) < millis(&now),
        None => true,
    };
    if holder.as_deref() == Some(id) {
        spec.renew_time = Some(now);
        spec.lease_duration_seconds = Some(seconds);
    } else if holder.is_none() || expired {
        spec.holder_identity = Some(id.to_string());
        spec.acquire_time = Some(now.clone());
        spec.renew_time = Some(now);
        spec.lease_duration_seconds = Some(seconds);
        spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0).saturating_add(1));
    } else {
        return Ok(false);
    }
    // `replace` sends the resourceVersion read above: a concurrent writer makes it 409.
    match api.replace(name, &PostParams::default(), &lease).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
        Err(e) => Err(e),
    }
}

/// Clears the holder when it is this replica, so that a follower takes over at once.
async fn release(api: &Api<Lease>, name: &str, id: &str) -> Result<bool, kube::Error> {
    let Some(mut lease) = api.get_opt(name).await? else {
        return Ok(false);
    };
    let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
    if spec.holder_identity.as_deref() != Some(id) {
        return Ok(false);
    }
    spec.holder_identity = None;
    spec.renew_time = Some(MicroTime(Timestamp::now()));
    spec.lease_duration_seconds = Some(1);
    api.replace(name, &PostParams::default(), &lease).await?;
    Ok(true)
}

/// Starts the election on `client` (the config has been validated: whole seconds, grace below
/// the duration).
pub fn start(client: kube::Client, cfg: &LeaderElectionConfig) -> Election {
    let (tx, rx) = watch::channel(false);
    let (stop_tx, mut stop_rx) = oneshot::channel::<()>();
    let id = identity(cfg);
    let ns = namespace(cfg);
    let name = cfg.lease_name.clone();
    let duration = cfg.lease_duration.max(Duration::from_secs(2));
    let grace = cfg
        .renew_grace
        .clamp(Duration::from_secs(1), duration - Duration::from_secs(1));
    let task_id = id.clone();
    let task = tokio::spawn(async move {
        let id = task_id;
        let api: Api<Lease> = Api::namespaced(client, &ns);
        let retry = retry_period(duration);
        // The leader must renew within this long of its last renewal, or step down.
        let renew_deadline = duration - grace;
        let mut last_renewal: Option<tokio::time::Instant> = None;
        let mut failing = false;
        let mut said_follower = false;
        loop {
            // Each attempt is bounded: a hung API call must not keep a stale leader.
            let attempt = tokio::time::timeout(
                retry.max(Duration::from_secs(2)),
                acquire_or_renew(&api, &name, &id, duration),
            );
            let result = tokio::select! {
                r = attempt => r,
                _ = &mut stop_rx => break,
            };
            let was = *tx.borrow();
            let now = tokio::time::Instant::now();
            let is_leader = match result {
                Ok(Ok(held)) => {
                    failing = false;
                    last_renewal = held.then_some(now);
                    held
                }
                Ok(Err(e)) => {
                    if !failing {
                        tracing::warn!(lease = %name, namespace = %ns, error = %e,
                            "leader election: the Lease cannot be read or written; retrying");
                    }
                    failing = true;
                    was && last_renewal.is_some_and(|t| now - t < renew_deadline)
                }
                Err(_) => {
                    if !failing {
                        tracing::warn!(lease = %name, namespace = %ns,
                            "leader election: the API server did not answer in time; retrying");
                    }
                    failing = true;
                    was && last_renewal.is_some_and(|t| now - t < renew_deadline)
                }
            };
            if is_leader && !was {
                tracing::info!(lease = %name, namespace = %ns, identity = %id,
                    "leader election: this replica is the leader; it re-evaluates running workloads");
                said_follower = false;
            } else if was && !is_leader && failing {
                tracing::warn!(lease = %name, identity = %id,
                    "leader election: the Lease could not be renewed in time; no longer the leader");
            }
            if !is_leader && !failing && !said_follower {
                tracing::info!(lease = %name, namespace = %ns, identity = %id,
                    "leader election: another replica holds the Lease");
                said_follower = true;
            }
            if is_leader != was {
                tx.send_replace(is_leader);
            }
            tokio::select! {
                _ = tokio::time::sleep(retry) => {}
                _ = &mut stop_rx => break,
            }
        }
        if *tx.borrow() {
            tx.send_replace(false);
            match tokio::time::timeout(Duration::from_secs(5), release(&api, &name, &id)).await {
                Ok(Ok(true)) => tracing::info!(lease = %name, identity = %id,
                    "leader election: Lease released on shutdown"),
                Ok(Ok(false)) => {}
                Ok(Err(e)) => tracing::warn!(lease = %name, error = %e,
                    "leader election: Lease not released; it expires by itself"),
                Err(_) => tracing::warn!(lease = %name,
                    "leader election: Lease not released in time; it expires by itself"),
            }
        }
    });
    Election {
        leadership: Leadership { rx },
        identity: id,
        stop: Some(stop_tx),
        task,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn always_is_leader_and_never_lost() {
        let mut l = Leadership::always();
        assert!(l.is_leader());
        l.until_leader().await;
        let lost = tokio::time::timeout(Duration::from_millis(50), l.until_lost()).await;
        assert!(lost.is_err(), "an always-leader never loses leadership");
    }

    #[tokio::test]
    async fn until_follows_the_channel() {
        let (tx, rx) = watch::channel(false);
        let mut l = Leadership { rx };
        assert!(!l.is_leader());
        let waiter = tokio::spawn({
            let mut l = l.clone();
            async move { l.until_leader().await }
        });
        tx.send_replace(true);
        waiter.await.unwrap();
        l.until_leader().await;
        tx.send_replace(false);
        l.until_lost().await;
        assert!(!l.is_leader());
        drop(tx);
        // Closed while not the leader: until_lost returns, until_leader waits forever.
        l.until_lost().await;
        let never = tokio::time::timeout(Duration::from_millis(50), l.until_leader()).await;
        assert!(never.is_err());
    }

    #[test]
    fn identity_prefers_config_then_pod_name() {
        let cfg = LeaderElectionConfig {
            identity: Some("replica-a".into()),
            ..Default::default()
        };
        assert_eq!(identity(&cfg), "replica-a");
        let id = identity(&LeaderElectionConfig::default());
        if std::env::var("POD_NAME")
            .map(|s| s.is_empty())
            .unwrap_or(true)
        {
            assert!(id.ends_with(&format!("-{}", std::process::id())), "{id}");
        }
    }
}
