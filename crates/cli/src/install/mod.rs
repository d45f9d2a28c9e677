//! `vulngate install`: everything a cluster needs, as multi-document YAML on stdout
//! (`vulngate install | kubectl apply -f -`), or as a kustomize base (`--write-kustomize DIR`).
//!
//! Every object is a k8s-openapi type (the SecurityRule CRD comes from kube-derive); only the
//! PolicyReport CRDs, which have no Rust type, are a hand-written file (deploy/crds/). Output is
//! deterministic: keys sorted, documents in a fixed order, certificates reproducible from the
//! same CA (see `pki`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{anyhow, bail, Context, Result};
use k8s_openapi::api::admissionregistration::v1::{
    RuleWithOperations, ServiceReference, ValidatingWebhook, ValidatingWebhookConfiguration,
    WebhookClientConfig,
};
use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::core::v1::{
    Affinity, Capabilities, ConfigMap, ConfigMapVolumeSource, Container, ContainerPort,
    EmptyDirVolumeSource, EnvVar, EnvVarSource, HTTPGetAction, KeyToPath, Namespace,
    ObjectFieldSelector, PodAffinityTerm, PodAntiAffinity, PodSecurityContext, PodSpec,
    PodTemplateSpec, Probe, ResourceRequirements, SeccompProfile, Secret, SecretKeySelector,
    SecretVolumeSource, SecurityContext, Service, ServiceAccount, ServicePort, ServiceSpec,
    TopologySpreadConstraint, Volume, VolumeMount, WeightedPodAffinityTerm,
};
use k8s_openapi::api::networking::v1::{
    NetworkPolicy, NetworkPolicyIngressRule, NetworkPolicyPeer, NetworkPolicyPort,
    NetworkPolicySpec,
};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::api::rbac::v1::{
    ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding, RoleRef, Subject,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    LabelSelector, LabelSelectorRequirement, ObjectMeta,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::ByteString;
use kube::CustomResourceExt;
use serde::Serialize;
use sha2::Digest;

use crate::{InstallArgs, WebhookFailurePolicy};

mod alerts_crd;
mod mutating;
pub mod pki;
mod trust;

use trust::{registry_section, trust_files, trust_keys, TRUST_DIR};

/// The PolicyReport and ClusterPolicyReport CRDs (`wgpolicyk8s.io/v1alpha2`), written by hand
/// from the wg-policy API types: no Rust type exists for them.
pub const POLICY_REPORT_CRDS: &str =
    include_str!("../../../../deploy/crds/wgpolicyk8s.io_policyreports.yaml");

/// The name of the Service, ServiceAccount, Deployment and cluster RBAC objects.
pub const NAME: &str = "vulngate";
/// The release image `--image` defaults to: where `scripts/build-image.sh --print-ref` says this
/// version is published (docs/install.md: build it and push it to your registry).
pub const RELEASE_IMAGE: &str = concat!("ghcr.io/vulngate/vulngate:", env!("CARGO_PKG_VERSION"));
const CONFIG_MAP: &str = "vulngate-config";
const LEADER_ROLE: &str = "vulngate-leader-election";
/// The default name of the TLS Secret.
pub const TLS_SECRET: &str = "vulngate-tls";
const PORT: i32 = 8443;
/// The plain-HTTP `/metrics` port (its own listener: `metrics.listen`).
const METRICS_PORT: i32 = 9090;
/// The namespace the rendered NetworkPolicy lets reach the metrics port (an example).
const MONITORING_NAMESPACE: &str = "monitoring";
const CONFIG_PATH: &str = "/etc/vulngate/vulngate.yaml";
const TLS_DIR: &str = "/etc/vulngate/tls";
const DATA_DIR: &str = "/var/lib/vulngate";
const RUN_AS: i64 = 65532;

/// One rendered object: the kustomize file it belongs to, a comment, and its JSON value.
#[derive(Debug)]
pub struct Doc {
    pub file: &'static str,
    pub comment: String,
    pub value: serde_json::Value,
}

/// What `run` prints besides the YAML: warnings and notes for stderr.
#[derive(Debug, Default)]
pub struct Rendered {
    pub docs: Vec<Doc>,
    pub notes: Vec<String>,
}

fn labels() -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/name".to_string(), NAME.to_string()),
        (
            "app.kubernetes.io/component".to_string(),
            "webhook".to_string(),
        ),
    ])
}

fn meta(name: &str, namespace: Option<&str>) -> ObjectMeta {
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

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// Serializes a k8s-openapi object with its `apiVersion` and `kind`.
fn value<T: Serialize>(obj: &T) -> Result<serde_json::Value> {
    serde_json::to_value(obj).context("serializing an object")
}

/// A serde_json value as YAML with every mapping's keys sorted.
fn sorted_yaml(v: &serde_json::Value) -> serde_yaml_ng::Value {
    use serde_yaml_ng::Value as Y;
    match v {
        serde_json::Value::Null => Y::Null,
        serde_json::Value::Bool(b) => Y::Bool(*b),
        serde_json::Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                Y::Number(i.into())
            } else if let Some(u) = n.as_u64() {
                Y::Number(u.into())
            } else {
                Y::Number(n.as_f64().unwrap_or(0.0).into())
            }
        }
        serde_json::Value::String(s) => Y::String(s.clone()),
        serde_json::Value::Array(a) => Y::Sequence(a.iter().map(sorted_yaml).collect()),
        serde_json::Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            let mut out = serde_yaml_ng::Mapping::new();
            for k in keys {
                out.insert(Y::String(k.clone()), sorted_yaml(&m[k]));
            }
            Y::Mapping(out)
        }
    }
}

/// YAML text of a value, keys sorted.
pub fn to_yaml(v: &serde_json::Value) -> Result<String> {
    serde_yaml_ng::to_string(&sorted_yaml(v)).context("writing YAML")
}

fn comment(text: &str) -> String {
    text.lines().map(|l| format!("# {l}\n")).collect()
}

/// Documents as one multi-document YAML stream.
pub fn stream(docs: &[&Doc]) -> Result<String> {
    let mut out = String::new();
    for d in docs {
        out.push_str("---\n");
        out.push_str(&comment(&d.comment));
        out.push_str(&to_yaml(&d.value)?);
    }
    Ok(out)
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

/// The webhook's rules: CREATE and UPDATE of the eight workload kinds, UPDATE of
/// `pods/ephemeralcontainers`.
fn webhook_rules() -> Vec<RuleWithOperations> {
    let rule = |group: &str, version: &str, resources: &[&str], ops: &[&str]| RuleWithOperations {
        api_groups: Some(vec![group.to_string()]),
        api_versions: Some(vec![version.to_string()]),
        operations: Some(strings(ops)),
        resources: Some(strings(resources)),
        scope: Some("Namespaced".to_string()),
    };
    vec![
        rule(
            "",
            "v1",
            &["pods", "replicationcontrollers"],
            &["CREATE", "UPDATE"],
        ),
        rule("", "v1", &["pods/ephemeralcontainers"], &["UPDATE"]),
        rule(
            "apps",
            "v1",
            &["daemonsets", "deployments", "replicasets", "statefulsets"],
            &["CREATE", "UPDATE"],
        ),
        rule("batch", "v1", &["cronjobs", "jobs"], &["CREATE", "UPDATE"]),
    ]
}

/// The `vulngate.yaml` of the ConfigMap, and whether alerts are on SQLite.
fn config_text(args: &InstallArgs) -> Result<String> {
    use vulngate_server::config::{KubernetesConfig, RulesFrom};
    let cfg = vulngate_server::Config {
        listen: std::net::SocketAddr::from(([0, 0, 0, 0], PORT as u16)),
        metrics: vulngate_server::MetricsConfig {
            listen: Some(std::net::SocketAddr::from((
                [0, 0, 0, 0],
                METRICS_PORT as u16,
            ))),
            ..Default::default()
        },
        data_dir: PathBuf::from(DATA_DIR),
        tls: vulngate_server::TlsConfig {
            cert_file: Some(PathBuf::from(format!("{TLS_DIR}/tls.crt"))),
            key_file: Some(PathBuf::from(format!("{TLS_DIR}/tls.key"))),
            self_signed_names: Vec::new(),
        },
        cluster_name: args.cluster_name.clone(),
        excluded_namespaces: vec!["kube-system".to_string(), args.namespace.clone()],
        failure_policy: args.registry_failure_policy.into(),
        registry: Some(Default::default()),
        kubernetes: Some(KubernetesConfig {
            rules_from: RulesFrom::Cluster,
            policy_reports: !args.no_policy_reports,
            ..Default::default()
        }),
        ..Default::default()
    };
    cfg.validate()
        .map_err(|(f, m)| anyhow!("the rendered configuration is invalid: {f}: {m}"))?;
    // Only what differs from the embedded defaults (the kubernetes section in full), so that
    // new defaults of a later version apply after an upgrade.
    let mut v = value(&cfg)?;
    let defaults = value(&vulngate_server::Config::default())?;
    if let (Some(m), Some(d)) = (v.as_object_mut(), defaults.as_object()) {
        m.retain(|k, val| k == "excludedNamespaces" || d.get(k) != Some(val));
        if let Some(k) = m.get_mut("kubernetes").and_then(|k| k.as_object_mut()) {
            k.retain(|_, val| !val.is_null());
        }
        if let Some(t) = m.get_mut("tls").and_then(|k| k.as_object_mut()) {
            t.retain(|_, val| val.as_array().is_none_or(|a| !a.is_empty()));
        }
        // Registry lookups on their defaults (anonymous; pull secrets from the cluster), with
        // a trust policy that requires signed reports unless --allow-unsigned-reports.
        m.insert("registry".into(), registry_section(args));
        // The alert store's URL (the password stays out of it: $VULNGATE_STORE_PASSWORD), or
        // the default: Alert objects in the cluster.
        let store = args.store.as_deref().unwrap_or(alerts_crd::DEFAULT_STORE);
        m.insert("store".into(), serde_json::Value::String(store.to_string()));
    }
    let mut text = String::from(
        "# vulngate.yaml rendered by `vulngate install` (see docs/configuration.md).\n\
         # Rules come from SecurityRule resources (kubernetes.rulesFrom: cluster).\n",
    );
    if alerts_crd::is_kubernetes(args.store.as_deref()) {
        text.push_str(
            "# Alerts: Alert objects (alerts.vulngate.io) in the workloads' namespaces, shared by the\n\
             # replicas: `kubectl get alerts.vulngate.io -A`. Retention: kubernetesStore.\n",
        );
    } else if args.store.as_deref() == Some("sqlite") {
        text.push_str(
            "# Alerts: SQLite in dataDir, an emptyDir: each replica keeps its own alerts, and they\n\
             # are lost when its pod is deleted.\n",
        );
    } else {
        text.push_str(
            "# Alerts: the shared store; its password comes from $VULNGATE_STORE_PASSWORD.\n",
        );
    }
    if args.allow_unsigned_reports {
        text.push_str(
            "# Findings reports are accepted UNSIGNED (--allow-unsigned-reports): anyone who can push\n\
             # to a registry can attach reports; the worst case over all of an image's reports counts.\n",
        );
    } else {
        text.push_str(
            "# Findings reports must be signed (Notation or cosign): registry.trustPolicies.\n",
        );
    }
    text.push_str(&to_yaml(&v)?);
    Ok(text)
}

fn quantity(s: &str) -> Quantity {
    Quantity(s.to_string())
}

fn deployment(args: &InstallArgs, config_hash: &str, tls_secret: &str) -> Deployment {
    let selector = BTreeMap::from([("app.kubernetes.io/name".to_string(), NAME.to_string())]);
    let field_env = |name: &str, path: &str| EnvVar {
        name: name.into(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: path.into(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    // POD_NAME: the replica's identity in the leader Lease and in Events.
    let mut env = vec![
        field_env("POD_NAMESPACE", "metadata.namespace"),
        field_env("POD_NAME", "metadata.name"),
    ];
    if let Some(secret) = &args.store_password_secret {
        env.push(EnvVar {
            name: "VULNGATE_STORE_PASSWORD".into(),
            value_from: Some(EnvVarSource {
                secret_key_ref: Some(SecretKeySelector {
                    name: secret.clone(),
                    key: "password".into(),
                    optional: Some(false),
                }),
                ..Default::default()
            }),
            ..Default::default()
        });
    }
    let probe = |path: &str, period: i32| Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.into()),
            port: IntOrString::String("https".into()),
            scheme: Some("HTTPS".into()),
            ..Default::default()
        }),
        period_seconds: Some(period),
        timeout_seconds: Some(3),
        failure_threshold: Some(3),
        ..Default::default()
    };
    let mount = |name: &str, path: &str, ro: bool| VolumeMount {
        name: name.into(),
        mount_path: path.into(),
        read_only: Some(ro),
        ..Default::default()
    };
    let container = Container {
        name: NAME.into(),
        image: Some(args.image.clone()),
        image_pull_policy: Some("IfNotPresent".into()),
        args: Some(strings(&["serve", "--config", CONFIG_PATH])),
        ports: Some(vec![
            ContainerPort {
                name: Some("https".into()),
                container_port: PORT,
                protocol: Some("TCP".into()),
                ..Default::default()
            },
            ContainerPort {
                name: Some("metrics".into()),
                container_port: METRICS_PORT,
                protocol: Some("TCP".into()),
                ..Default::default()
            },
        ]),
        env: Some(env),
        readiness_probe: Some(probe("/readyz", 5)),
        liveness_probe: Some(probe("/healthz", 10)),
        resources: Some(ResourceRequirements {
            requests: Some(BTreeMap::from([
                ("cpu".to_string(), quantity("100m")),
                ("memory".to_string(), quantity("128Mi")),
            ])),
            limits: Some(BTreeMap::from([("memory".to_string(), quantity("256Mi"))])),
            ..Default::default()
        }),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            capabilities: Some(Capabilities {
                drop: Some(strings(&["ALL"])),
                ..Default::default()
            }),
            read_only_root_filesystem: Some(true),
            run_as_non_root: Some(true),
            run_as_user: Some(RUN_AS),
            run_as_group: Some(RUN_AS),
            seccomp_profile: Some(SeccompProfile {
                type_: "RuntimeDefault".into(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        volume_mounts: Some(
            vec![
                // One file (subPath): a changed ConfigMap rolls the pods (config-sha256 below).
                VolumeMount {
                    sub_path: Some("vulngate.yaml".into()),
                    ..mount("config", CONFIG_PATH, true)
                },
                mount("tls", TLS_DIR, true),
                mount("data", DATA_DIR, false),
            ]
            .into_iter()
            .chain(trust_keys(args).into_iter().map(|(k, _)| VolumeMount {
                sub_path: Some(k.clone()),
                ..mount("config", &format!("{TRUST_DIR}/{k}"), true)
            }))
            .collect(),
        ),
        ..Default::default()
    };
    let volumes = vec![
        Volume {
            name: "config".into(),
            config_map: Some(ConfigMapVolumeSource {
                name: CONFIG_MAP.into(),
                ..Default::default()
            }),
            ..Default::default()
        },
        Volume {
            name: "tls".into(),
            // Only the serving pair is mounted: never the CA key.
            secret: Some(SecretVolumeSource {
                secret_name: Some(tls_secret.to_string()),
                items: Some(vec![
                    KeyToPath {
                        key: "tls.crt".into(),
                        path: "tls.crt".into(),
                        ..Default::default()
                    },
                    KeyToPath {
                        key: "tls.key".into(),
                        path: "tls.key".into(),
                        ..Default::default()
                    },
                ]),
                default_mode: Some(0o440),
                ..Default::default()
            }),
            ..Default::default()
        },
        Volume {
            name: "data".into(),
            empty_dir: Some(EmptyDirVolumeSource {
                size_limit: Some(quantity("1Gi")),
                ..Default::default()
            }),
            ..Default::default()
        },
    ];
    let topology = args.topology_spread.then(|| {
        vec![TopologySpreadConstraint {
            max_skew: 1,
            topology_key: "topology.kubernetes.io/zone".into(),
            when_unsatisfiable: "ScheduleAnyway".into(),
            label_selector: Some(LabelSelector {
                match_labels: Some(selector.clone()),
                ..Default::default()
            }),
            ..Default::default()
        }]
    });
    let mut pod_labels = labels();
    pod_labels.insert("app.kubernetes.io/part-of".into(), NAME.into());
    Deployment {
        metadata: meta(NAME, Some(&args.namespace)),
        spec: DeploymentSpec {
            replicas: Some(args.replicas),
            selector: LabelSelector {
                match_labels: Some(selector.clone()),
                ..Default::default()
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(pod_labels),
                    // A changed configuration rolls the pods.
                    annotations: Some(BTreeMap::from([(
                        "vulngate.io/config-sha256".to_string(),
                        config_hash.to_string(),
                    )])),
                    ..Default::default()
                }),
                spec: Some(PodSpec {
                    service_account_name: Some(NAME.into()),
                    automount_service_account_token: Some(true),
                    security_context: Some(PodSecurityContext {
                        run_as_non_root: Some(true),
                        run_as_user: Some(RUN_AS),
                        run_as_group: Some(RUN_AS),
                        fs_group: Some(RUN_AS),
                        seccomp_profile: Some(SeccompProfile {
                            type_: "RuntimeDefault".into(),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }),
                    affinity: Some(Affinity {
                        pod_anti_affinity: Some(PodAntiAffinity {
                            preferred_during_scheduling_ignored_during_execution: Some(vec![
                                WeightedPodAffinityTerm {
                                    weight: 100,
                                    pod_affinity_term: PodAffinityTerm {
                                        topology_key: "kubernetes.io/hostname".into(),
                                        label_selector: Some(LabelSelector {
                                            match_labels: Some(selector.clone()),
                                            ..Default::default()
                                        }),
                                        ..Default::default()
                                    },
                                },
                            ]),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }),
                    topology_spread_constraints: topology,
                    containers: vec![container],
                    volumes: Some(volumes),
                    ..Default::default()
                }),
            },
            ..Default::default()
        },
        ..Default::default()
    }
}

/// Reads a CA bundle file: one or more PEM certificates.
fn read_bundle(path: &Path) -> Result<String> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("--ca-bundle {}: cannot read", path.display()))?;
    pki::first_cert_der(&text).with_context(|| format!("--ca-bundle {}", path.display()))?;
    Ok(text)
}

/// Renders every object for `args`.
pub fn render(args: &InstallArgs) -> Result<Rendered> {
    let ns = args.namespace.as_str();
    let mut out = Rendered::default();
    let mut push = |file: &'static str, comment: &str, value: serde_json::Value| {
        out.docs.push(Doc {
            file,
            comment: comment.to_string(),
            value,
        })
    };

    push(
        "namespace.yaml",
        "vulngate's namespace (excluded from the webhook).",
        value(&Namespace {
            metadata: meta(ns, None),
            ..Default::default()
        })?,
    );
    push(
        "crds.yaml",
        "SecurityRule: the rule set (generated from the rule types, vulngate.io/v1).",
        value(&vulngate_core::rules::SecurityRule::crd())?,
    );
    if args.policy_report_crds {
        let docs: Vec<serde_json::Value> =
            serde_yaml_ng::Deserializer::from_str(POLICY_REPORT_CRDS)
                .map(|d| {
                    serde::Deserialize::deserialize(d).context("the bundled PolicyReport CRDs")
                })
                .collect::<Result<_>>()?;
        for d in docs {
            push(
                "crds.yaml",
                "wg-policy PolicyReport API (wgpolicyk8s.io/v1alpha2); leave out when Kyverno or policy-reporter installed it.",
                d,
            );
        }
    }
    let kube_store = alerts_crd::is_kubernetes(args.store.as_deref());
    if kube_store {
        push(
            "crds.yaml",
            "Alert: the alert store (store: kubernetes), one per de-duplication key, in the workload's namespace (generated, vulngate.io/v1).",
            alerts_crd::crd()?,
        );
    }
    push(
        "rbac.yaml",
        "The identity of the webhook pods.",
        value(&ServiceAccount {
            metadata: meta(NAME, Some(ns)),
            automount_service_account_token: Some(true),
            ..Default::default()
        })?,
    );
    let mut rules = rbac_rules();
    if kube_store {
        rules.extend(alerts_crd::rbac_rules());
    }
    let why: String = rules
        .iter()
        .map(|(_, w)| format!("- {w}\n"))
        .collect::<String>();
    push(
        "rbac.yaml",
        &format!(
            "Least privilege; nothing else is granted (no wildcard, no list/watch of secrets):\n{why}"
        ),
        value(&ClusterRole {
            metadata: meta(NAME, None),
            rules: Some(rules.into_iter().map(|(r, _)| r).collect()),
            ..Default::default()
        })?,
    );
    push(
        "rbac.yaml",
        "Grants the ClusterRole to vulngate's service account.",
        value(&ClusterRoleBinding {
            metadata: meta(NAME, None),
            role_ref: RoleRef {
                api_group: Some("rbac.authorization.k8s.io".into()),
                kind: "ClusterRole".into(),
                name: NAME.into(),
            },
            subjects: Some(vec![Subject {
                kind: "ServiceAccount".into(),
                name: NAME.into(),
                namespace: Some(ns.into()),
                ..Default::default()
            }]),
        })?,
    );
    if !args.allow_unsigned_reports
        && args.notation_trust_store.is_empty()
        && args.cosign_public_key.is_empty()
    {
        bail!(
            "findings reports must be signed: give --notation-trust-store FILE and/or \
             --cosign-public-key FILE (the rendered trust policy requires a signature by them), \
             or --allow-unsigned-reports to accept unsigned reports"
        );
    }
    push(
        "rbac.yaml",
        "Leader election, in vulngate's namespace only: leases get/create/patch/update on the one \
         Lease (`kubernetes.leaderElection.leaseName`) that elects the replica that re-evaluates \
         running workloads and writes PolicyReports.",
        value(&Role {
            metadata: meta(LEADER_ROLE, Some(ns)),
            rules: Some(vec![PolicyRule {
                api_groups: Some(vec!["coordination.k8s.io".into()]),
                resources: Some(strings(&["leases"])),
                verbs: strings(&["get", "create", "patch", "update"]),
                ..Default::default()
            }]),
        })?,
    );
    push(
        "rbac.yaml",
        "Grants the leader-election Role to vulngate's service account.",
        value(&RoleBinding {
            metadata: meta(LEADER_ROLE, Some(ns)),
            role_ref: RoleRef {
                api_group: Some("rbac.authorization.k8s.io".into()),
                kind: "Role".into(),
                name: LEADER_ROLE.into(),
            },
            subjects: Some(vec![Subject {
                kind: "ServiceAccount".into(),
                name: NAME.into(),
                namespace: Some(ns.into()),
                ..Default::default()
            }]),
        })?,
    );
    let config = config_text(args)?;
    let trust = trust_files(args)?;
    let config_hash = {
        let mut h = sha2::Sha256::new();
        h.update(config.as_bytes());
        for (k, v) in &trust {
            h.update(k.as_bytes());
            h.update(v.as_bytes());
        }
        h.finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    };
    if args.allow_unsigned_reports {
        out.notes.push(
            "warning: --allow-unsigned-reports: findings reports are accepted unsigned (anyone who \
             can push can attach them; the worst case over all of an image's reports counts)"
                .into(),
        );
    } else {
        out.notes.push(format!(
            "note: findings reports must be signed: the trust policy requires a signature by {}",
            trust.keys().cloned().collect::<Vec<_>>().join(", ")
        ));
    }
    let mut config_data = BTreeMap::from([("vulngate.yaml".to_string(), config)]);
    config_data.extend(trust);
    push(
        "config.yaml",
        "vulngate.yaml, mounted at /etc/vulngate/vulngate.yaml.",
        value(&ConfigMap {
            metadata: meta(CONFIG_MAP, Some(ns)),
            data: Some(config_data),
            ..Default::default()
        })?,
    );
    if args.store.as_deref() == Some("sqlite") {
        out.notes.push(
            "warning: --store sqlite: alerts are kept in SQLite on each pod's emptyDir, per \
             replica, and lost when a pod is deleted"
                .into(),
        );
    }

    // TLS: a Secret rendered here, or one managed elsewhere (cert-manager).
    let service_names = vec![
        format!("{NAME}.{ns}.svc"),
        format!("{NAME}.{ns}.svc.cluster.local"),
    ];
    let tls_secret = args.tls_secret.clone().unwrap_or_else(|| TLS_SECRET.into());
    let ca_bundle: Option<String> = match &args.tls_secret {
        Some(_) => match &args.ca_bundle {
            Some(p) => Some(read_bundle(p)?),
            None => {
                out.notes.push(format!(
                    "note: --tls-secret {tls_secret} without --ca-bundle: the webhook has no caBundle; \
                     cert-manager's CA injector or a patch must add it (docs/install.md)"
                ));
                None
            }
        },
        None => {
            let now = match args.now {
                Some(t) => time::OffsetDateTime::from_unix_timestamp(t.timestamp())
                    .map_err(|e| anyhow!("--now: {e}"))?,
                None => time::OffsetDateTime::now_utc(),
            };
            let ca = match (&args.ca_cert, &args.ca_key) {
                (Some(c), Some(k)) => pki::Ca::load(c, k)?,
                _ => pki::Ca::generate(now)?,
            };
            let serving = ca.issue(&service_names, now)?;
            let ca_key = ca.key_pem()?;
            if let Some(dir) = &args.ca_out {
                write_ca(dir, &ca.cert_pem, &ca_key)?;
                out.notes.push(format!(
                    "the CA was written to {} and {} (keep the key safe; re-render with --ca-cert/--ca-key)",
                    dir.join("ca.crt").display(),
                    dir.join("ca.key").display()
                ));
            }
            let data = BTreeMap::from([
                (
                    "ca.crt".to_string(),
                    ByteString(ca.cert_pem.clone().into_bytes()),
                ),
                ("ca.key".to_string(), ByteString(ca_key.into_bytes())),
                (
                    "tls.crt".to_string(),
                    ByteString(serving.chain_pem.into_bytes()),
                ),
                (
                    "tls.key".to_string(),
                    ByteString(serving.key_pem.into_bytes()),
                ),
            ]);
            push(
                "tls.yaml",
                &format!(
                    "Serving certificate for {}\nsigned by the CA in ca.crt (ca.key: the CA's key, for re-rendering;\n\
                     only tls.crt and tls.key are mounted into the pods).",
                    service_names.join(", ")
                ),
                value(&Secret {
                    metadata: meta(&tls_secret, Some(ns)),
                    type_: Some("kubernetes.io/tls".into()),
                    data: Some(data),
                    ..Default::default()
                })?,
            );
            Some(ca.cert_pem)
        }
    };

    let selector = BTreeMap::from([("app.kubernetes.io/name".to_string(), NAME.to_string())]);
    push(
        "service.yaml",
        "The webhook endpoint the API server calls: 443 -> https (8443); metrics: 9090 (plain HTTP /metrics).",
        value(&Service {
            metadata: meta(NAME, Some(ns)),
            spec: Some(ServiceSpec {
                selector: Some(selector.clone()),
                ports: Some(vec![
                    ServicePort {
                        name: Some("https".into()),
                        port: 443,
                        target_port: Some(IntOrString::String("https".into())),
                        protocol: Some("TCP".into()),
                        ..Default::default()
                    },
                    ServicePort {
                        name: Some("metrics".into()),
                        port: METRICS_PORT,
                        target_port: Some(IntOrString::String("metrics".into())),
                        protocol: Some("TCP".into()),
                        ..Default::default()
                    },
                ]),
                ..Default::default()
            }),
            ..Default::default()
        })?,
    );
    push(
        "deployment.yaml",
        "The webhook: hardened, two replicas spread over nodes by default.",
        value(&deployment(args, &config_hash, &tls_secret))?,
    );
    push(
        "deployment.yaml",
        "Keeps one webhook pod during voluntary disruptions (failurePolicy Fail needs one).",
        value(&PodDisruptionBudget {
            metadata: meta(NAME, Some(ns)),
            spec: Some(PodDisruptionBudgetSpec {
                min_available: Some(IntOrString::Int(1)),
                selector: Some(LabelSelector {
                    match_labels: Some(selector.clone()),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        })?,
    );
    push(
        "service.yaml",
        "Ingress: port 8443 from anywhere (webhook calls from the API server, whose address\n\
         cannot be known in general; probes); the metrics port 9090 (/metrics, plain HTTP,\n\
         unauthenticated) only from the `monitoring` namespace: an example, change the\n\
         namespace to where Prometheus runs. Egress is not restricted: DNS, the API server and every image registry are needed.",
        value(&NetworkPolicy {
            metadata: meta(NAME, Some(ns)),
            spec: Some(NetworkPolicySpec {
                pod_selector: Some(LabelSelector {
                    match_labels: Some(selector),
                    ..Default::default()
                }),
                policy_types: Some(strings(&["Ingress"])),
                ingress: Some(vec![
                    NetworkPolicyIngressRule {
                        ports: Some(vec![NetworkPolicyPort {
                            port: Some(IntOrString::Int(PORT)),
                            protocol: Some("TCP".into()),
                            ..Default::default()
                        }]),
                        ..Default::default()
                    },
                    NetworkPolicyIngressRule {
                        ports: Some(vec![NetworkPolicyPort {
                            port: Some(IntOrString::Int(METRICS_PORT)),
                            protocol: Some("TCP".into()),
                            ..Default::default()
                        }]),
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
        })?,
    );
    let failure_policy = match args.failure_policy {
        WebhookFailurePolicy::Fail => "Fail",
        WebhookFailurePolicy::Ignore => "Ignore",
    };
    let validating = ValidatingWebhookConfiguration {
        metadata: meta(&args.webhook_name, None),
        webhooks: Some(vec![ValidatingWebhook {
            name: args.webhook_name.clone(),
            admission_review_versions: strings(&["v1"]),
            client_config: WebhookClientConfig {
                ca_bundle: ca_bundle.map(|b| ByteString(b.into_bytes())),
                service: Some(ServiceReference {
                    name: NAME.into(),
                    namespace: ns.into(),
                    path: Some("/validate".into()),
                    port: Some(443),
                }),
                url: None,
            },
            failure_policy: Some(failure_policy.into()),
            match_policy: Some("Equivalent".into()),
            namespace_selector: Some(LabelSelector {
                match_expressions: Some(vec![LabelSelectorRequirement {
                    key: "kubernetes.io/metadata.name".into(),
                    operator: "NotIn".into(),
                    values: Some(vec!["kube-system".into(), ns.into()]),
                }]),
                ..Default::default()
            }),
            object_selector: Some(LabelSelector::default()),
            rules: Some(webhook_rules()),
            side_effects: "NoneOnDryRun".into(),
            timeout_seconds: Some(args.timeout),
            match_conditions: None,
        }]),
    };
    if !args.no_pin_digests {
        push(
            "webhook.yaml",
            mutating::COMMENT,
            value(&mutating::configuration(&validating)?)?,
        );
    }
    push(
        "webhook.yaml",
        "The API server sends workload CREATE/UPDATE here (not in kube-system or vulngate's namespace).",
        value(&validating)?,
    );
    if !args.no_default_rule {
        push(
            "rules.yaml",
            "The default rule (what `vulngate serve` runs without rules): audit images with high or\n\
             critical vulnerabilities, in force from the first minute. Edit or delete it like any\n\
             SecurityRule (then upgrade with --no-default-rule, or apply would restore it).",
            default_security_rule()?,
        );
    }
    Ok(out)
}

/// The built-in default rule of `vulngate serve` (`RuleSet::default_rules`, the one definition) as
/// a SecurityRule object.
fn default_security_rule() -> Result<serde_json::Value> {
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

fn write_ca(dir: &Path, cert: &str, key: &str) -> Result<()> {
    use std::io::Write;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    std::fs::write(dir.join("ca.crt"), cert)
        .with_context(|| format!("writing {}", dir.join("ca.crt").display()))?;
    let path = dir.join("ca.key");
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    opts.open(&path)
        .and_then(|mut f| f.write_all(key.as_bytes()))
        .with_context(|| format!("writing {}", path.display()))
}

/// The files of the kustomize base: one per resource group, and `kustomization.yaml`.
pub fn kustomize_files(rendered: &Rendered, command: &str) -> Result<Vec<(String, String)>> {
    let header = format!(
        "# Generated by `{command}`: do not edit.\n\
         # Regenerate with that command (or UPDATE_DEPLOY=1 cargo test -p vulngate --test install).\n"
    );
    let mut files: Vec<(String, String)> = Vec::new();
    for d in &rendered.docs {
        if d.file == "tls.yaml" {
            bail!("the kustomize base holds no private key: give --tls-secret NAME");
        }
        let text = stream(&[d])?;
        match files.iter_mut().find(|(f, _)| f == d.file) {
            Some((_, t)) => t.push_str(&text),
            None => files.push((d.file.to_string(), format!("{header}{text}"))),
        }
    }
    let mut kustomization = serde_json::json!({
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": files.iter().map(|(f, _)| f.clone()).collect::<Vec<_>>(),
    });
    // `images:` names the Deployment's image, so an overlay (or `kustomize edit set image`)
    // points it at another registry's copy.
    let image = rendered
        .docs
        .iter()
        .find(|d| d.value["kind"] == "Deployment")
        .and_then(|d| d.value["spec"]["template"]["spec"]["containers"][0]["image"].as_str());
    if let Some(image) = image {
        kustomization["images"] = serde_json::json!([kustomize_image(image)]);
    }
    files.push((
        "kustomization.yaml".into(),
        format!(
            "{header}# The TLS Secret and the webhook's caBundle are not here: see docs/install.md.\n{}",
            to_yaml(&kustomization)?
        ),
    ));
    Ok(files)
}

/// A kustomize `images:` entry for a reference: its name, and its tag or digest.
fn kustomize_image(image: &str) -> serde_json::Value {
    if let Some((name, digest)) = image.split_once('@') {
        return serde_json::json!({ "name": name, "digest": digest });
    }
    match image.rsplit_once(':') {
        Some((name, tag)) if !tag.contains('/') => {
            serde_json::json!({ "name": name, "newTag": tag })
        }
        _ => serde_json::json!({ "name": image }),
    }
}

/// The command line that regenerates `deploy/base`.
pub const BASE_COMMAND: &str =
    "vulngate install --tls-secret vulngate-tls --allow-unsigned-reports --write-kustomize deploy/base";

pub fn run(args: InstallArgs) -> Result<ExitCode> {
    if args.write_kustomize.is_some() && args.tls_secret.is_none() {
        bail!("--write-kustomize: the kustomize base holds no private key: give --tls-secret NAME");
    }
    let rendered = render(&args)?;
    match &args.write_kustomize {
        Some(dir) => {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            for (name, text) in kustomize_files(&rendered, BASE_COMMAND)? {
                let path = dir.join(&name);
                std::fs::write(&path, text)
                    .with_context(|| format!("writing {}", path.display()))?;
            }
            eprintln!("wrote the kustomize base to {}", dir.display());
        }
        None => {
            let docs: Vec<&Doc> = rendered.docs.iter().collect();
            print!("{}", stream(&docs)?);
        }
    }
    for n in &rendered.notes {
        eprintln!("{n}");
    }
    Ok(ExitCode::SUCCESS)
}
