//! The watch cache that confirms owners (`kubernetes.watchOwners`): the metadata of every
//! ReplicaSet and Job (kube-runtime reflectors over metadata watches, `managedFields`
//! dropped), so that [`vulngate_core::owner::resolve`] can follow Pod -> ReplicaSet ->
//! Deployment and Pod -> Job -> CronJob by the objects' own `ownerReferences`, not by names.
//!
//! An owner the cache has not seen (not synced yet, or created a moment ago) is `Unknown`,
//! and the naming rules decide, as without the integration.

use futures::StreamExt;
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::batch::v1::Job;
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Resource};
use vulngate_core::owner::{controller_of, Known, OwnerLookup};

/// The ReplicaSets and Jobs of the cluster (metadata only); tasks stop on drop.
pub struct OwnerCache {
    replica_sets: Store<PartialObjectMeta<ReplicaSet>>,
    jobs: Store<PartialObjectMeta<Job>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl std::fmt::Debug for OwnerCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OwnerCache")
            .field("replica_sets", &self.replica_sets.len())
            .field("jobs", &self.jobs.len())
            .finish()
    }
}

impl Drop for OwnerCache {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

fn watch<K>(client: kube::Client) -> (Store<PartialObjectMeta<K>>, tokio::task::JoinHandle<()>)
where
    K: Resource<DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    let (reader, writer) = reflector::store::<PartialObjectMeta<K>>();
    // `Api<PartialObjectMeta<K>>` makes metadata-only requests.
    let api: Api<PartialObjectMeta<K>> = Api::all(client);
    let stream = watcher(api, watcher::Config::default())
        .default_backoff()
        .modify(|o: &mut PartialObjectMeta<K>| o.metadata.managed_fields = None)
        .reflect(writer);
    let kind = K::kind(&());
    let task = tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        while let Some(ev) = stream.next().await {
            if let Err(e) = ev {
                tracing::warn!(kind = %kind, error = %e, "owner watch failed; retrying");
            }
        }
    });
    (reader, task)
}

impl OwnerCache {
    /// Starts the two watches (inside a Tokio runtime).
    pub fn start(client: kube::Client) -> OwnerCache {
        let (replica_sets, t1) = watch::<ReplicaSet>(client.clone());
        let (jobs, t2) = watch::<Job>(client);
        OwnerCache {
            replica_sets,
            jobs,
            tasks: vec![t1, t2],
        }
    }

    /// Waits until both watches have listed once (tests; the webhook never waits).
    pub async fn synced(&self) {
        let _ = self.replica_sets.wait_until_ready().await;
        let _ = self.jobs.wait_until_ready().await;
    }
}

fn known<K: Resource<DynamicType = ()> + Clone>(
    store: &Store<PartialObjectMeta<K>>,
    namespace: &str,
    name: &str,
    uid: Option<&str>,
) -> Known {
    let Some(obj) = store.get(&ObjectRef::new(name).within(namespace)) else {
        return Known::Unknown;
    };
    if uid.is_some_and(|u| obj.metadata.uid.as_deref() != Some(u)) {
        return Known::Unknown;
    }
    Known::Owner(controller_of(
        obj.metadata.owner_references.as_deref().unwrap_or(&[]),
    ))
}

impl OwnerLookup for OwnerCache {
    fn controller_of(&self, namespace: &str, kind: &str, name: &str, uid: Option<&str>) -> Known {
        match kind {
            "ReplicaSet" => known(&self.replica_sets, namespace, name, uid),
            "Job" => known(&self.jobs, namespace, name, uid),
            _ => Known::Unknown,
        }
    }
}
