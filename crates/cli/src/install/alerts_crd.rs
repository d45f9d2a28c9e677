//! The alert store of the install (`store: kubernetes`, the default): the `Alert` custom
//! resource definition (generated from the server's type with kube-derive) and the RBAC the
//! webhook's ServiceAccount needs to write, read and expire alerts in every namespace.

use anyhow::{Context, Result};
use k8s_openapi::api::rbac::v1::PolicyRule;
use kube::CustomResourceExt;
use vulngate_server::alerts::kubernetes::AlertObject;

/// The store the install renders when `--store` is not given.
pub const DEFAULT_STORE: &str = "kubernetes";

/// The Alert CRD (`alerts.vulngate.io/v1`), as JSON.
pub fn crd() -> Result<serde_json::Value> {
    serde_json::to_value(AlertObject::crd()).context("serializing the Alert CRD")
}

/// Whether `store` (the install's `--store`, or its default) is the Kubernetes store.
pub fn is_kubernetes(store: Option<&str>) -> bool {
    store.unwrap_or(DEFAULT_STORE) == DEFAULT_STORE
}

/// The ClusterRole rules of the Kubernetes store, each with the reason it is needed.
pub fn rbac_rules() -> Vec<(PolicyRule, &'static str)> {
    let rule = |resources: &[&str], verbs: &[&str]| PolicyRule {
        api_groups: Some(vec!["vulngate.io".to_string()]),
        resources: Some(resources.iter().map(|s| s.to_string()).collect()),
        verbs: verbs.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    };
    vec![
        (
            rule(
                &["alerts"],
                &["create", "get", "update", "patch", "list", "delete"],
            ),
            "alerts create/get/update/patch/list/delete: the alert store (store: kubernetes), one Alert per de-duplication key in the workload's namespace; list and delete for the leader's retention",
        ),
        (
            rule(&["alerts/status"], &["get", "update", "patch"]),
            "alerts/status get/update/patch: an alert's count, last seen time and review state",
        ),
    ]
}
