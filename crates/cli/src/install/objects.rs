//! The shared object helpers (metadata, labels) and the small objects: Namespace, CRDs, RBAC,
//! Service, NetworkPolicy and the default SecurityRule.

use std::collections::BTreeMap;

use anyhow::{anyhow, Context, Result};
use k8s_openapi::api::core::v1::{Namespace, Service, ServiceAccount, ServicePort, ServiceSpec};
use k8s_openapi::api::networking::v1::{
    NetworkPolicy, NetworkPolicyIngressRule, NetworkPolicyPeer, NetworkPolicyPort,
    NetworkPolicySpec,
};
use k8s_openapi::api::rbac::v1::{
    ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding, RoleRef, Subject,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::CustomResourceExt;
use serde::Serialize;

use super::{
    Args, Rendered, LEADER_ROLE, METRICS_PORT, MONITORING_NAMESPACE, NAME, POLICY_REPORT_CRDS, PORT,
};

/// The pods' labels.
pub(super) fn labels() -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/name".to_string(), NAME.to_string()),
        (
            "app.kubernetes.io/component".to_string(),
            "webhook".to_string(),
        ),
    ])
}

/// What selects the webhook pods (Deployment, PDB, Service, NetworkPolicy, affinity).
pub(super) fn selector() -> BTreeMap<String, String> {
    BTreeMap::from([("app.kubernetes.io/name".to_string(), NAME.to_string())])
}

/// Metadata of every object: its name, namespace and `app.kubernetes.io/part-of`.
pub(super) fn meta(name: &str, namespace: Option<&str>) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_string()),
        namespace: namespace.map(str::to_string),
        labels: Some(BTreeMap::from([(
            "app.kubernetes.io/part-of".to_string(),
            NAME.to_string(),
        )])),
        ..Default::default()
    }
}

pub(super) fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// Serializes a k8s-openapi object with its `apiVersion` and `kind`.
pub(super) fn value<T: Serialize>(obj: &T) -> Result<serde_json::Value> {
    serde_json::to_value(obj).context("serializing an object")
}

/// The Namespace, the SecurityRule CRD and, with `--policy-report-crds`, the PolicyReport CRDs.
pub(super) fn namespace_and_crds(args: &Args, out: &mut Rendered) -> Result<()> {
    out.push(
        "namespace.yaml",
        "vulngate's namespace (excluded from the webhook).",
        &Namespace {
            metadata: meta(&args.namespace, None),
            ..Default::default()
        },
    )?;
    out.push(
        "crds.yaml",
        "SecurityRule: the rule set (generated from the rule types, vulngate.io/v1).",
        &vulngate_core::rules::SecurityRule::crd(),
    )?;
    if args.policy_report_crds {
        let docs: Vec<serde_json::Value> =
            serde_yaml_ng::Deserializer::from_str(POLICY_REPORT_CRDS)
                .map(|d| {
                    serde::Deserialize::deserialize(d).context("the bundled PolicyReport CRDs")
                })
                .collect::<Result<_>>()?;
        for d in docs {
            out.push_value(
                "crds.yaml",
                "wg-policy PolicyReport API (wgpolicyk8s.io/v1alpha2); leave out when Kyverno or policy-reporter installed it.",
                d,
            );
        }
    }
    if super::alerts_crd::is_kubernetes(args.store.as_deref()) {
        out.push_value(
            "crds.yaml",
            "Alert: the alert store (store: kubernetes), one per de-duplication key, in the workload's namespace (generated, vulngate.io/v1).",
            super::alerts_crd::crd()?,
        );
    }
    Ok(())
}

/// The RBAC rules, each with the reason it is needed.
fn rbac_rules() -> Vec<(PolicyRule, &'static str)> {
    let rule = |group: &str, resources: &[&str], verbs: &[&str]| PolicyRule {
        api_groups: Some(vec![group.to_string()]),
        resources: Some(strings(resources)),
        verbs: strings(verbs),
        ..Default::default()
    };
    vec![
        (
            rule("vulngate.io", &["securityrules"], &["get", "list", "watch"]),
            "securityrules get/list/watch: the rule set comes from SecurityRule resources (rulesFrom: cluster)",
        ),
        (
            rule("vulngate.io", &["securityrules/status"], &["get", "patch", "update"]),
            "securityrules/status get/patch/update: each rule's Accepted condition is written back",
        ),
        (
            rule(
                "wgpolicyk8s.io",
                &["policyreports"],
                &["list", "create", "patch", "delete"],
            ),
            "policyreports list/create/patch/delete: one report per namespace, written with server-side apply, deleted when empty; listed once at start to clear reports of emptied namespaces",
        ),
        (
            rule("events.k8s.io", &["events"], &["create", "patch"]),
            "events create/patch: an Event on the workload for each audit or deny decision",
        ),
        (
            rule("", &["pods"], &["get", "list", "watch"]),
            "pods get/list/watch: running Pods are re-evaluated when the rules change and every rescanInterval",
        ),
        (
            rule("apps", &["replicasets"], &["list", "watch"]),
            "replicasets list/watch (metadata): a Pod's ReplicaSet is confirmed as its Deployment's (watchOwners)",
        ),
        (
            rule("batch", &["jobs"], &["list", "watch"]),
            "jobs list/watch (metadata): a Pod's Job is confirmed as its CronJob's (watchOwners)",
        ),
        (
            rule("", &["serviceaccounts"], &["get"]),
            "serviceaccounts get: a Pod's service account names more imagePullSecrets",
        ),
        (
            rule("", &["secrets"], &["get"]),
            "secrets get (no list, no watch): the pull secrets a Pod names are read by name, nothing else",
        ),
    ]
}

/// The service account, its ClusterRole (least privilege) and the leader-election Role, with
/// their bindings.
pub(super) fn rbac(ns: &str, kube_store: bool, out: &mut Rendered) -> Result<()> {
    let subjects = || {
        Some(vec![Subject {
            kind: "ServiceAccount".into(),
            name: NAME.into(),
            namespace: Some(ns.into()),
            ..Default::default()
        }])
    };
    out.push(
        "rbac.yaml",
        "The identity of the webhook pods.",
        &ServiceAccount {
            metadata: meta(NAME, Some(ns)),
            automount_service_account_token: Some(true),
            ..Default::default()
        },
    )?;
    let mut rules = rbac_rules();
    if kube_store {
        rules.extend(super::alerts_crd::rbac_rules());
    }
    let why: String = rules
        .iter()
        .map(|(_, w)| format!("- {w}\n"))
        .collect::<String>();
    out.push(
        "rbac.yaml",
        &format!(
            "Least privilege; nothing else is granted (no wildcard, no list/watch of secrets):\n{why}"
        ),
        &ClusterRole {
            metadata: meta(NAME, None),
            rules: Some(rules.into_iter().map(|(r, _)| r).collect()),
            ..Default::default()
        },
    )?;
    out.push(
        "rbac.yaml",
        "Grants the ClusterRole to vulngate's service account.",
        &ClusterRoleBinding {
            metadata: meta(NAME, None),
            role_ref: RoleRef {
                api_group: Some("rbac.authorization.k8s.io".into()),
                kind: "ClusterRole".into(),
                name: NAME.into(),
            },
            subjects: subjects(),
        },
    )?;
    out.push(
        "rbac.yaml",
        "Leader election, in vulngate's namespace only: leases get/create/patch/update on the one \
         Lease (`kubernetes.leaderElection.leaseName`) that elects the replica that re-evaluates \
         running workloads and writes PolicyReports.",
        &Role {
            metadata: meta(LEADER_ROLE, Some(ns)),
            rules: Some(vec![PolicyRule {
                api_groups: Some(vec!["coordination.k8s.io".into()]),
                resources: Some(strings(&["leases"])),
                verbs: strings(&["get", "create", "patch", "update"]),
                ..Default::default()
            }]),
        },
    )?;
    out.push(
        "rbac.yaml",
        "Grants the leader-election Role to vulngate's service account.",
        &RoleBinding {
            metadata: meta(LEADER_ROLE, Some(ns)),
            role_ref: RoleRef {
                api_group: Some("rbac.authorization.k8s.io".into()),
                kind: "Role".into(),
                name: LEADER_ROLE.into(),
            },
            subjects: subjects(),
        },
    )
}

/// The webhook endpoint (443 -> https) and the metrics port.
pub(super) fn service(ns: &str) -> Service {
    let port = |name: &str, port: i32| ServicePort {
        name: Some(name.into()),
        port,
        target_port: Some(IntOrString::String(name.into())),
        protocol: Some("TCP".into()),
        ..Default::default()
    };
    Service {
        metadata: meta(NAME, Some(ns)),
        spec: Some(ServiceSpec {
            selector: Some(selector()),
            ports: Some(vec![port("https", 443), port("metrics", METRICS_PORT)]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Ingress to the webhook port from anywhere, to the metrics port from the monitoring
/// namespace only (an example).
pub(super) fn network_policy(ns: &str) -> NetworkPolicy {
    let port = |p: i32| {
        Some(vec![NetworkPolicyPort {
            port: Some(IntOrString::Int(p)),
            protocol: Some("TCP".into()),
            ..Default::default()
        }])
    };
    NetworkPolicy {
        metadata: meta(NAME, Some(ns)),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(LabelSelector {
                match_labels: Some(selector()),
                ..Default::default()
            }),
            policy_types: Some(strings(&["Ingress"])),
            ingress: Some(vec![
                NetworkPolicyIngressRule {
                    ports: port(PORT),
                    ..Default::default()
                },
                NetworkPolicyIngressRule {
                    ports: port(METRICS_PORT),
                    from: Some(vec![NetworkPolicyPeer {
                        namespace_selector: Some(LabelSelector {
                            match_labels: Some(BTreeMap::from([(
                                "kubernetes.io/metadata.name".to_string(),
                                MONITORING_NAMESPACE.to_string(),
                            )])),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }]),
                },
            ]),
            ..Default::default()
        }),
    }
}

/// The built-in default rule of `vulngate serve` (`RuleSet::default_rules`, the one definition) as
/// a SecurityRule object.
pub(super) fn default_security_rule() -> Result<serde_json::Value> {
    let defaults = vulngate_core::rules::RuleSet::default_rules();
    let rule = defaults
        .rules()
        .first()
        .ok_or_else(|| anyhow!("the built-in default rule set is empty"))?;
    let mut doc = rule.to_doc();
    doc.metadata.labels =
        BTreeMap::from([("app.kubernetes.io/part-of".to_string(), NAME.to_string())]);
    value(&doc)
}
