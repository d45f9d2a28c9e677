//! The webhook's Deployment (container, volumes, scheduling) and its PodDisruptionBudget.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::core::v1::{
    Affinity, Capabilities, ConfigMapVolumeSource, Container, ContainerPort, EmptyDirVolumeSource,
    EnvVar, EnvVarSource, HTTPGetAction, KeyToPath, ObjectFieldSelector, PodAffinityTerm,
    PodAntiAffinity, PodSecurityContext, PodSpec, PodTemplateSpec, Probe, ResourceRequirements,
    SeccompProfile, SecretKeySelector, SecretVolumeSource, SecurityContext,
    TopologySpreadConstraint, Volume, VolumeMount, WeightedPodAffinityTerm,
};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::objects::{self, labels, meta, strings};
use super::trust::{trust_keys, TRUST_DIR};
use super::{Args, CONFIG_MAP, CONFIG_PATH, DATA_DIR, METRICS_PORT, NAME, PORT, RUN_AS, TLS_DIR};

fn quantity(s: &str) -> Quantity {
    Quantity(s.to_string())
}

/// The Deployment of the webhook pods: two replicas by default, spread over nodes; a changed
/// configuration (`config_hash`) rolls them.
pub(super) fn deployment(args: &Args, config_hash: &str, tls_secret: &str) -> Deployment {
    let selector = objects::selector();
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
                    containers: vec![container(args)],
                    volumes: Some(volumes(tls_secret)),
                    ..Default::default()
                }),
            },
            ..Default::default()
        },
        ..Default::default()
    }
}

/// The webhook container: `serve --config`, hardened, probes on the HTTPS port.
fn container(args: &Args) -> Container {
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
    Container {
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
    }
}

/// The configuration (ConfigMap), the serving pair (never the CA key) and the data directory.
fn volumes(tls_secret: &str) -> Vec<Volume> {
    vec![
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
    ]
}

/// Keeps one webhook pod during voluntary disruptions.
pub(super) fn disruption_budget(ns: &str) -> PodDisruptionBudget {
    PodDisruptionBudget {
        metadata: meta(NAME, Some(ns)),
        spec: Some(PodDisruptionBudgetSpec {
            min_available: Some(IntOrString::Int(1)),
            selector: Some(LabelSelector {
                match_labels: Some(objects::selector()),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}
