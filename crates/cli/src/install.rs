//! `vulngate install`: everything a cluster needs, as one multi-document YAML for
//! `kubectl apply -f -` (docs/install.md). The objects are built as JSON values in the shape of
//! the Kubernetes API (the CRD from the rule types) and printed in a fixed order.

use std::process::ExitCode;

use anyhow::{anyhow, Result};
use clap::{Args, ValueEnum};
use kube::CustomResourceExt;
use serde_json::{json, Value};
use vulngate_core::rules::SecurityRule;

const POLICY_REPORT_CRDS: &str =
    include_str!("../../../deploy/crds/wgpolicyk8s.io_policyreports.yaml");
const NAME: &str = "vulngate";
const WEBHOOK: &str = "vulngate.vulngate.io";
const CONFIG_PATH: &str = "/etc/vulngate/vulngate.yaml";

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum WebhookFailurePolicy {
    Fail,
    Ignore,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RegistryFailurePolicy {
    Unscanned,
    Allow,
    Deny,
}

#[derive(Debug, Args)]
pub struct InstallArgs {
    /// Namespace vulngate runs in (excluded from gating).
    #[arg(long, default_value = NAME)]
    pub namespace: String,
    /// Container image of vulngate.
    #[arg(long, default_value = concat!("ghcr.io/vulngate/vulngate:", env!("CARGO_PKG_VERSION")))]
    pub image: String,
    /// Replicas (2 or more keeps admission up during node drains; the PDB keeps one).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..))]
    pub replicas: u32,
    /// The webhook's timeoutSeconds (1-30).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=30))]
    pub timeout: u32,
    /// The webhook's failurePolicy when vulngate cannot be reached (Fail: nothing deploys
    /// unchecked; the deployment is highly available).
    #[arg(long, value_enum, default_value_t = WebhookFailurePolicy::Fail)]
    pub failure_policy: WebhookFailurePolicy,
    /// What vulngate does when an image's registry cannot be asked (vulngate.yaml failurePolicy).
    #[arg(long, value_enum, default_value_t = RegistryFailurePolicy::Unscanned)]
    pub registry_failure_policy: RegistryFailurePolicy,
    /// The cluster's name, for the `cluster` scope field and alerts.
    #[arg(long)]
    pub cluster_name: Option<String>,
    /// Shared PostgreSQL alert store (postgres://user@host:port/db); the password comes from
    /// the Secret named by --store-password-secret (key `password`).
    #[arg(long, value_name = "URL")]
    pub store: Option<String>,
    #[arg(long, value_name = "SECRET", requires = "store")]
    pub store_password_secret: Option<String>,
    /// Also install the PolicyReport and ClusterPolicyReport CRDs (wgpolicyk8s.io/v1alpha2);
    /// leave off when Kyverno, Kubewarden or policy-reporter installed them.
    #[arg(long)]
    pub policy_report_crds: bool,
}

fn dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

pub fn run(args: InstallArgs) -> Result<ExitCode> {
    let docs = render(&args)?;
    if args.store.is_none() {
        eprintln!(
            "warning: alerts are kept in SQLite inside each pod ({} replicas): they are per replica \
             and lost when a pod is deleted; use --store postgres://... for a shared, durable store",
            args.replicas
        );
    }
    let mut out = String::from("# Rendered by `vulngate install` (docs/install.md).\n");
    for d in docs {
        out.push_str("---\n");
        out.push_str(&serde_yaml_ng::to_string(&d).map_err(|e| anyhow!("rendering YAML: {e}"))?);
    }
    print!("{out}");
    Ok(ExitCode::SUCCESS)
}

/// The objects, in apply order.
pub fn render(a: &InstallArgs) -> Result<Vec<Value>> {
    if !dns_label(&a.namespace) {
        return Err(anyhow!(
            "--namespace {:?}: not a valid namespace name (lowercase letters, digits and '-', at most 63)",
            a.namespace
        ));
    }
    if let Some(s) = &a.store {
        s.parse::<vulngate_server::alerts::StoreUrl>()
            .map_err(|e| anyhow!("--store: {e}"))?;
    }
    let ns = a.namespace.as_str();
    let labels = json!({ "app.kubernetes.io/name": NAME, "app.kubernetes.io/part-of": NAME });
    let svc_names = vec![
        format!("{NAME}.{ns}.svc"),
        format!("{NAME}.{ns}.svc.cluster.local"),
    ];
    let pair = vulngate_server::tls::generate_pair(&svc_names, "vulngate webhook CA")
        .map_err(|e| anyhow!("{e}"))?;
    let meta = |name: &str| json!({ "name": name, "namespace": ns, "labels": labels });

    let mut docs = vec![json!({
        "apiVersion": "v1", "kind": "Namespace",
        "metadata": { "name": ns, "labels": labels },
    })];
    docs.push(serde_json::to_value(SecurityRule::crd())?);
    if a.policy_report_crds {
        for d in serde_yaml_ng::Deserializer::from_str(POLICY_REPORT_CRDS) {
            let v = Value::deserialize(d).map_err(|e| anyhow!("PolicyReport CRDs: {e}"))?;
            if !v.is_null() {
                docs.push(v);
            }
        }
    }
    docs.push(json!({ "apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta(NAME) }));
    docs.push(json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
        "metadata": { "name": NAME, "labels": labels },
        "rules": [
            // the rules: watch SecurityRules, write their status
            { "apiGroups": ["vulngate.io"], "resources": ["securityrules"], "verbs": ["get", "list", "watch"] },
            { "apiGroups": ["vulngate.io"], "resources": ["securityrules/status"], "verbs": ["get", "patch", "update"] },
            // PolicyReports, one per namespace
            { "apiGroups": ["wgpolicyk8s.io"], "resources": ["policyreports", "clusterpolicyreports"],
              "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"] },
            // Events on workloads for audit/deny decisions
            { "apiGroups": ["events.k8s.io"], "resources": ["events"], "verbs": ["create", "patch"] },
            // re-evaluation of running Pods at their running digests
            { "apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"] },
            // image pull secrets: the service account's list, then each named Secret (never listed)
            { "apiGroups": [""], "resources": ["serviceaccounts"], "verbs": ["get"] },
            { "apiGroups": [""], "resources": ["secrets"], "verbs": ["get"] },
        ],
    }));
    docs.push(json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
        "metadata": { "name": NAME, "labels": labels },
        "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": NAME },
        "subjects": [{ "kind": "ServiceAccount", "name": NAME, "namespace": ns }],
    }));

    let mut config = json!({
        "listen": "0.0.0.0:8443",
        "dataDir": "/var/lib/vulngate",
        "tls": { "certFile": "/etc/vulngate/tls/tls.crt", "keyFile": "/etc/vulngate/tls/tls.key" },
        "excludedNamespaces": ["kube-system", ns],
        "failurePolicy": match a.registry_failure_policy {
            RegistryFailurePolicy::Unscanned => "unscanned",
            RegistryFailurePolicy::Allow => "allow",
            RegistryFailurePolicy::Deny => "deny",
        },
        "registry": {},
        "kubernetes": { "rulesFrom": "cluster" },
    });
    if let Some(c) = &a.cluster_name {
        config["clusterName"] = json!(c);
    }
    if let Some(s) = &a.store {
        config["store"] = json!(s);
    }
    let config_yaml = serde_yaml_ng::to_string(&config)?;
    docs.push(json!({
        "apiVersion": "v1", "kind": "ConfigMap", "metadata": meta(NAME),
        "data": { "vulngate.yaml": config_yaml },
    }));
    docs.push(json!({
        "apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
        "metadata": meta(&format!("{NAME}-tls")),
        "stringData": { "tls.crt": pair.cert_chain_pem, "tls.key": pair.key_pem, "ca.crt": pair.ca_pem },
    }));
    let mut env = vec![
        json!({ "name": "POD_NAMESPACE", "valueFrom": { "fieldRef": { "fieldPath": "metadata.namespace" } } }),
        json!({ "name": "POD_NAME", "valueFrom": { "fieldRef": { "fieldPath": "metadata.name" } } }),
    ];
    if let Some(secret) = &a.store_password_secret {
        env.push(json!({ "name": "VULNGATE_STORE_PASSWORD",
            "valueFrom": { "secretKeyRef": { "name": secret, "key": "password" } } }));
    }
    let probe = |path: &str| json!({ "httpGet": { "path": path, "port": 8443, "scheme": "HTTPS" }, "periodSeconds": 10 });
    docs.push(json!({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta(NAME),
        "spec": {
            "replicas": a.replicas,
            "selector": { "matchLabels": { "app.kubernetes.io/name": NAME } },
            "template": {
                "metadata": { "labels": labels },
                "spec": {
                    "serviceAccountName": NAME,
                    "automountServiceAccountToken": true,
                    "securityContext": { "runAsNonRoot": true, "runAsUser": 65532, "runAsGroup": 65532,
                        "seccompProfile": { "type": "RuntimeDefault" } },
                    "affinity": { "podAntiAffinity": { "preferredDuringSchedulingIgnoredDuringExecution": [{
                        "weight": 100,
                        "podAffinityTerm": { "topologyKey": "kubernetes.io/hostname",
                            "labelSelector": { "matchLabels": { "app.kubernetes.io/name": NAME } } } }] } },
                    "containers": [{
                        "name": NAME,
                        "image": a.image,
                        "args": ["serve", "--config", CONFIG_PATH],
                        "ports": [{ "name": "https", "containerPort": 8443 }],
                        "env": env,
                        "readinessProbe": probe("/readyz"),
                        "livenessProbe": probe("/healthz"),
                        "resources": { "requests": { "cpu": "100m", "memory": "128Mi" },
                                       "limits": { "memory": "256Mi" } },
                        "securityContext": { "readOnlyRootFilesystem": true, "allowPrivilegeEscalation": false,
                            "capabilities": { "drop": ["ALL"] } },
                        "volumeMounts": [
                            { "name": "config", "mountPath": "/etc/vulngate", "readOnly": true },
                            { "name": "tls", "mountPath": "/etc/vulngate/tls", "readOnly": true },
                            { "name": "data", "mountPath": "/var/lib/vulngate" },
                        ],
                    }],
                    "volumes": [
                        { "name": "config", "configMap": { "name": NAME } },
                        { "name": "tls", "secret": { "secretName": format!("{NAME}-tls") } },
                        { "name": "data", "emptyDir": {} },
                    ],
                },
            },
        },
    }));
    docs.push(json!({
        "apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": meta(NAME),
        "spec": { "minAvailable": 1, "selector": { "matchLabels": { "app.kubernetes.io/name": NAME } } },
    }));
    docs.push(json!({
        "apiVersion": "v1", "kind": "Service", "metadata": meta(NAME),
        "spec": { "selector": { "app.kubernetes.io/name": NAME },
                  "ports": [{ "name": "https", "port": 443, "targetPort": 8443 }] },
    }));
    // Ingress: only the webhook port (the API server's address is not knowable in general).
    // Egress stays open: the API server and the registries vulngate asks.
    docs.push(json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": meta(NAME),
        "spec": { "podSelector": { "matchLabels": { "app.kubernetes.io/name": NAME } },
                  "policyTypes": ["Ingress"],
                  "ingress": [{ "ports": [{ "protocol": "TCP", "port": 8443 }] }] },
    }));
    let ops = json!(["CREATE", "UPDATE"]);
    docs.push(json!({
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingWebhookConfiguration",
        "metadata": { "name": WEBHOOK, "labels": labels },
        "webhooks": [{
            "name": WEBHOOK,
            "clientConfig": {
                "service": { "name": NAME, "namespace": ns, "path": "/validate", "port": 443 },
                "caBundle": base64_std(pair.ca_pem.as_bytes()),
            },
            "rules": [
                { "operations": ops, "apiGroups": [""], "apiVersions": ["v1"],
                  "resources": ["pods", "pods/ephemeralcontainers", "replicationcontrollers"] },
                { "operations": ops, "apiGroups": ["apps"], "apiVersions": ["v1"],
                  "resources": ["deployments", "replicasets", "statefulsets", "daemonsets"] },
                { "operations": ops, "apiGroups": ["batch"], "apiVersions": ["v1"],
                  "resources": ["jobs", "cronjobs"] },
            ],
            "namespaceSelector": { "matchExpressions": [{
                "key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": ["kube-system", ns] }] },
            "objectSelector": {},
            "sideEffects": "NoneOnDryRun",
            "admissionReviewVersions": ["v1"],
            "timeoutSeconds": a.timeout,
            "failurePolicy": match a.failure_policy {
                WebhookFailurePolicy::Fail => "Fail",
                WebhookFailurePolicy::Ignore => "Ignore",
            },
            "matchPolicy": "Equivalent",
        }],
    }));
    Ok(docs)
}

fn base64_std(b: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(b)
}

use serde::Deserialize;
