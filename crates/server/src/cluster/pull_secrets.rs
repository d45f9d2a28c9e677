//! Registry credentials the way the kubelet finds them: the pod's `imagePullSecrets`, then
//! its service account's (`serviceAccountName`, default `default`). Each Secret is read by
//! name (GET, never list), kept per (namespace, name) for `pullSecretsTtl`; a missing,
//! forbidden or unreadable Secret is logged by name (never its content) and ignored.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use kube::Api;
use serde_json::Value;
use tokio::time::Instant;
use vulngate_registry::Credentials;

/// What a pod spec says about its pull credentials.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PullSecretRefs {
    pub service_account: String,
    pub secrets: Vec<String>,
}

impl PullSecretRefs {
    /// From a pod's service account name and its pull secret names: the service account
    /// `default` when there is none (or it is empty); empty secret names left out.
    pub fn new<'n>(
        service_account: Option<&str>,
        secrets: impl IntoIterator<Item = &'n str>,
    ) -> PullSecretRefs {
        PullSecretRefs {
            service_account: service_account
                .filter(|s| !s.is_empty())
                .unwrap_or("default")
                .to_string(),
            secrets: secrets
                .into_iter()
                .filter(|n| !n.is_empty())
                .map(str::to_string)
                .collect(),
        }
    }

    /// From a pod spec (JSON, `spec` of a Pod or a template's `spec`).
    pub fn from_pod_spec(spec: &Value) -> PullSecretRefs {
        PullSecretRefs::new(
            spec.get("serviceAccountName").and_then(Value::as_str),
            spec.get("imagePullSecrets")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|s| s.get("name").and_then(Value::as_str)),
        )
    }

    /// From the fast parse of a pod spec (the same as [`from_pod_spec`](Self::from_pod_spec)
    /// on its JSON); `None`: no pod spec.
    pub fn from_slim(spec: Option<&vulngate_core::workload::slim::SlimSpec<'_>>) -> PullSecretRefs {
        PullSecretRefs::new(
            spec.and_then(|s| s.service_account_name.as_ref())
                .map(|s| s.as_str()),
            spec.and_then(|s| s.image_pull_secrets.as_ref())
                .into_iter()
                .flatten()
                .filter_map(|s| s.name.as_ref().map(|n| n.as_str())),
        )
    }

    /// From a workload object of any gated kind (the pod spec at its usual place).
    pub fn from_object(object: &Value) -> PullSecretRefs {
        let pointer = match object.get("kind").and_then(Value::as_str) {
            Some("Pod") => "/spec",
            Some("CronJob") => "/spec/jobTemplate/spec/template/spec",
            _ => "/spec/template/spec",
        };
        object
            .pointer(pointer)
            .map(PullSecretRefs::from_pod_spec)
            .unwrap_or_else(|| PullSecretRefs {
                service_account: "default".into(),
                secrets: Vec::new(),
            })
    }
}

type Cached<T> = Mutex<HashMap<(String, String), (Instant, T)>>;

/// Reads and caches pull secrets; cheap to clone.
#[derive(Debug, Clone)]
pub struct PullSecrets {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PullSecrets").finish_non_exhaustive()
    }
}

struct Inner {
    client: kube::Client,
    ttl: Duration,
    secrets: Cached<Option<Arc<Credentials>>>,
    accounts: Cached<Vec<String>>,
}

impl PullSecrets {
    pub fn new(client: kube::Client, ttl: Duration) -> PullSecrets {
        PullSecrets {
            inner: Arc::new(Inner {
                client,
                ttl,
                secrets: Mutex::new(HashMap::new()),
                accounts: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// The merged credentials of the pod's pull secrets then its service account's (the
    /// first secret naming a registry wins); None when there are none.
    pub async fn credentials(
        &self,
        namespace: &str,
        refs: &PullSecretRefs,
    ) -> Option<Arc<Credentials>> {
        let mut names = refs.secrets.clone();
        for n in self.account_secrets(namespace, &refs.service_account).await {
            if !names.contains(&n) {
                names.push(n);
            }
        }
        let mut merged: Option<Credentials> = None;
        for name in &names {
            if let Some(c) = self.secret(namespace, name).await {
                merged.get_or_insert_with(Credentials::default).merge(&c);
            }
        }
        merged.filter(|c| !c.is_empty()).map(Arc::new)
    }

    fn cached<T: Clone>(&self, map: &Cached<T>, key: &(String, String)) -> Option<T> {
        let m = map.lock().ok()?;
        match m.get(key) {
            Some((at, v)) if at.elapsed() < self.inner.ttl => Some(v.clone()),
            _ => None,
        }
    }

    fn store<T>(&self, map: &Cached<T>, key: (String, String), v: T) {
        if let Ok(mut m) = map.lock() {
            m.retain(|_, (at, _)| at.elapsed() < self.inner.ttl);
            m.insert(key, (Instant::now(), v));
        }
    }

    async fn account_secrets(&self, namespace: &str, account: &str) -> Vec<String> {
        let key = (namespace.to_string(), account.to_string());
        if let Some(v) = self.cached(&self.inner.accounts, &key) {
            return v;
        }
        let api: Api<ServiceAccount> = Api::namespaced(self.inner.client.clone(), namespace);
        let names = match api.get_opt(account).await {
            Ok(Some(sa)) => sa
                .image_pull_secrets
                .unwrap_or_default()
                .into_iter()
                .map(|r| r.name)
                .filter(|n| !n.is_empty())
                .collect(),
            Ok(None) => Vec::new(),
            Err(e) => {
                tracing::warn!(
                    namespace, service_account = account, error = %e,
                    "cannot read the service account's imagePullSecrets; ignored"
                );
                Vec::new()
            }
        };
        self.store(&self.inner.accounts, key, names.clone());
        names
    }

    async fn secret(&self, namespace: &str, name: &str) -> Option<Arc<Credentials>> {
        let key = (namespace.to_string(), name.to_string());
        if let Some(v) = self.cached(&self.inner.secrets, &key) {
            return v;
        }
        let api: Api<Secret> = Api::namespaced(self.inner.client.clone(), namespace);
        let creds = match api.get_opt(name).await {
            Ok(Some(s)) => parse_secret(namespace, name, &s),
            Ok(None) => {
                tracing::warn!(
                    namespace,
                    secret = name,
                    "image pull secret not found; ignored"
                );
                None
            }
            Err(e) => {
                // kube's error carries the API server's Status message, never the Secret.
                tracing::warn!(
                    namespace, secret = name, error = %e,
                    "cannot read image pull secret; ignored"
                );
                None
            }
        };
        self.store(&self.inner.secrets, key, creds.clone());
        creds
    }
}

fn parse_secret(namespace: &str, name: &str, s: &Secret) -> Option<Arc<Credentials>> {
    let data = s.data.as_ref();
    let ty = s.type_.as_deref().unwrap_or("");
    let parsed = match ty {
        "kubernetes.io/dockerconfigjson" => data
            .and_then(|d| d.get(".dockerconfigjson"))
            .map(|b| Credentials::from_docker_config_json(&b.0)),
        "kubernetes.io/dockercfg" => data
            .and_then(|d| d.get(".dockercfg"))
            .map(|b| Credentials::from_dockercfg(&b.0)),
        _ => {
            tracing::warn!(
                namespace,
                secret = name,
                secret_type = ty,
                "image pull secret has a type other than kubernetes.io/dockerconfigjson or kubernetes.io/dockercfg; ignored"
            );
            return None;
        }
    };
    match parsed {
        Some(Ok(c)) => Some(Arc::new(c)),
        Some(Err(e)) => {
            // The parse error names positions, never content.
            tracing::warn!(namespace, secret = name, error = %e, "image pull secret unreadable; ignored");
            None
        }
        None => {
            tracing::warn!(
                namespace,
                secret = name,
                "image pull secret lacks its data key; ignored"
            );
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refs_from_objects() {
        let pod = serde_json::json!({"kind": "Pod", "spec": {"serviceAccountName": "sa",
            "imagePullSecrets": [{"name": "a"}, {"name": ""}, {}]}});
        assert_eq!(
            PullSecretRefs::from_object(&pod),
            PullSecretRefs {
                service_account: "sa".into(),
                secrets: vec!["a".into()]
            }
        );
        let cj = serde_json::json!({"kind": "CronJob", "spec": {"jobTemplate": {"spec": {"template": {"spec": {"imagePullSecrets": [{"name": "b"}]}}}}}});
        let r = PullSecretRefs::from_object(&cj);
        assert_eq!(r.service_account, "default");
        assert_eq!(r.secrets, vec!["b".to_string()]);
    }
}
