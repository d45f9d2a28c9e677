//! The ValidatingWebhookConfiguration, and the pieces another webhook configuration of
//! vulngate's shares with it: the service it calls, the namespaces it skips, the workload
//! rules.

use k8s_openapi::api::admissionregistration::v1::{
    RuleWithOperations, ServiceReference, ValidatingWebhook, ValidatingWebhookConfiguration,
    WebhookClientConfig,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};
use k8s_openapi::ByteString;

use super::objects::{meta, strings};
use super::{Args, WebhookFailurePolicy, NAME};

/// The webhook's rules: CREATE and UPDATE of the eight workload kinds, UPDATE of
/// `pods/ephemeralcontainers`.
pub(super) fn webhook_rules() -> Vec<RuleWithOperations> {
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

/// How the API server reaches vulngate's Service at `path`, trusting `ca_bundle` (none: a CA
/// injector or a patch adds it).
pub(super) fn client_config(ns: &str, path: &str, ca_bundle: Option<&str>) -> WebhookClientConfig {
    WebhookClientConfig {
        ca_bundle: ca_bundle.map(|b| ByteString(b.as_bytes().to_vec())),
        service: Some(ServiceReference {
            name: NAME.into(),
            namespace: ns.into(),
            path: Some(path.into()),
            port: Some(443),
        }),
        url: None,
    }
}

/// Every namespace but kube-system and vulngate's own.
pub(super) fn namespace_selector(ns: &str) -> LabelSelector {
    LabelSelector {
        match_expressions: Some(vec![LabelSelectorRequirement {
            key: "kubernetes.io/metadata.name".into(),
            operator: "NotIn".into(),
            values: Some(vec!["kube-system".into(), ns.into()]),
        }]),
        ..Default::default()
    }
}

/// The API server's `failurePolicy` for `--failure-policy`.
pub(super) fn failure_policy(args: &Args) -> String {
    match args.failure_policy {
        WebhookFailurePolicy::Fail => "Fail",
        WebhookFailurePolicy::Ignore => "Ignore",
    }
    .into()
}

/// The ValidatingWebhookConfiguration: workload CREATE/UPDATE to `/validate`.
pub(super) fn validating(args: &Args, ca_bundle: Option<&str>) -> ValidatingWebhookConfiguration {
    let ns = args.namespace.as_str();
    ValidatingWebhookConfiguration {
        metadata: meta(&args.webhook_name, None),
        webhooks: Some(vec![ValidatingWebhook {
            name: args.webhook_name.clone(),
            admission_review_versions: strings(&["v1"]),
            client_config: client_config(ns, "/validate", ca_bundle),
            failure_policy: Some(failure_policy(args)),
            match_policy: Some("Equivalent".into()),
            namespace_selector: Some(namespace_selector(ns)),
            object_selector: Some(LabelSelector::default()),
            rules: Some(webhook_rules()),
            side_effects: "NoneOnDryRun".into(),
            timeout_seconds: Some(args.timeout),
            match_conditions: None,
        }]),
    }
}
