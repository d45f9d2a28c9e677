//! Kubernetes integration (the `kubernetes` section of vulngate.yaml): `SecurityRule` custom
//! resources as rules (`rules`), PolicyReports (`reports`), Events (`events`), continuous
//! re-evaluation of running Pods (`rescan`) by the replica that holds the leader Lease
//! (`leader`), and registry credentials from image pull
//! secrets (`pull_secrets`).
//!
//! Everything here talks to the API server through one `kube::Client`; tests give it a real
//! apiextensions-apiserver (custom resources) or an in-process fake (core resources).

pub mod events;
pub mod leader;
pub mod owners;
pub mod pull_secrets;
pub mod rescan;

use std::sync::Arc;

use futures::future::BoxFuture;

pub mod reports;
pub mod rules;

use vulngate_core::engine::Decision;

/// One evaluated container image of a workload (admitted or running), the unit of a
/// PolicyReport result and of a runtime alert.
#[derive(Debug, Clone)]
pub struct ImageResult {
    pub namespace: String,
    /// The workload that owns the pod (Deployment, StatefulSet, ... or the Pod itself).
    pub workload_api_version: String,
    pub workload_kind: String,
    pub workload_name: String,
    pub workload_uid: Option<String>,
    /// The pod the image runs in, when known (runtime results).
    pub pod: Option<String>,
    pub container: String,
    pub decision: Arc<Decision>,
}

/// Where evaluated results go (PolicyReports); the re-evaluation hands each namespace's
/// complete, current result list to every sink.
pub trait ResultSink: Send + Sync + std::fmt::Debug {
    /// Replaces what is known about `namespace` with `results` (all of its workload images).
    fn sync_namespace<'a>(
        &'a self,
        namespace: &'a str,
        results: &'a [ImageResult],
    ) -> BoxFuture<'a, Result<(), kube::Error>>;

    /// Namespaces this sink holds results for from before this process started (a report
    /// left by an earlier run), so that the first scan also clears those that are now empty.
    fn existing_namespaces(&self) -> BoxFuture<'_, Result<Vec<String>, kube::Error>> {
        Box::pin(async { Ok(Vec::new()) })
    }
}

/// The running Kubernetes integration; its tasks are aborted on drop.
pub struct ClusterTasks {
    pub(crate) tasks: Vec<tokio::task::JoinHandle<()>>,
    pub client: kube::Client,
    /// The PolicyReport writer (when `policyReports` is on).
    pub reports: Option<Arc<dyn ResultSink>>,
    /// The leader election (when `leaderElection.enabled`); dropping it releases the Lease.
    pub election: Option<leader::Election>,
}

impl std::fmt::Debug for ClusterTasks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterTasks")
            .field("tasks", &self.tasks.len())
            .field("reports", &self.reports)
            .field("election", &self.election)
            .finish_non_exhaustive()
    }
}

impl Drop for ClusterTasks {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// A client from the configuration: `kubeconfig` when set, else in-cluster, `$KUBECONFIG`,
/// `~/.kube/config` (kube's inference).
pub async fn client(cfg: &crate::config::KubernetesConfig) -> Result<kube::Client, kube::Error> {
    kube::Client::try_from(client_config(cfg).await?)
}

/// The client configuration [`client`] uses (its `cluster_url` names the API server).
pub async fn client_config(
    cfg: &crate::config::KubernetesConfig,
) -> Result<kube::Config, kube::Error> {
    match &cfg.kubeconfig {
        Some(path) => {
            let kc =
                kube::config::Kubeconfig::read_from(path).map_err(kube::Error::InferKubeconfig)?;
            kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
                .await
                .map_err(kube::Error::InferKubeconfig)
        }
        None => kube::Config::infer()
            .await
            .map_err(kube::Error::InferConfig),
    }
}
