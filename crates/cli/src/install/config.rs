//! The `vulngate.yaml` of the ConfigMap (only what differs from the embedded defaults), with
//! the trust files beside it, and the hash that rolls the pods when either changes.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{anyhow, Result};
use k8s_openapi::api::core::v1::ConfigMap;
use sha2::Digest;

use super::objects::{meta, value};
use super::output::to_yaml;
use super::trust::{registry_section, trust_files};
use super::{Args, Rendered, CONFIG_MAP, DATA_DIR, METRICS_PORT, PORT, TLS_DIR};

/// Pushes the ConfigMap (vulngate.yaml and the trust files) and the notes about signatures
/// and the alert store; returns the configuration's hash (the pods' `config-sha256`).
pub(super) fn render(args: &Args, out: &mut Rendered) -> Result<String> {
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
    out.push(
        "config.yaml",
        "vulngate.yaml, mounted at /etc/vulngate/vulngate.yaml.",
        &ConfigMap {
            metadata: meta(CONFIG_MAP, Some(&args.namespace)),
            data: Some(config_data),
            ..Default::default()
        },
    )?;
    if args.store.as_deref() == Some("sqlite") {
        out.notes.push(
            "warning: --store sqlite: alerts are kept in SQLite on each pod's emptyDir, per \
             replica, and lost when a pod is deleted"
                .into(),
        );
    }
    Ok(config_hash)
}

/// The `vulngate.yaml` text of the ConfigMap, with comments on the store and on signatures.
fn config_text(args: &Args) -> Result<String> {
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
        let store = args
            .store
            .as_deref()
            .unwrap_or(super::alerts_crd::DEFAULT_STORE);
        m.insert("store".into(), serde_json::Value::String(store.to_string()));
    }
    let mut text = String::from(
        "# vulngate.yaml rendered by `vulngate install` (see docs/configuration.md).\n\
         # Rules come from SecurityRule resources (kubernetes.rulesFrom: cluster).\n",
    );
    if super::alerts_crd::is_kubernetes(args.store.as_deref()) {
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
