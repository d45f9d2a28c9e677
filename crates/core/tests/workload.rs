//! Image extraction from Kubernetes objects (`vulngate_core::workload`).
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use rstest::rstest;
use serde_json::{json, Value};
use vulngate_core::workload::{
    extract, parse_manifests, slim, ContainerImage, ContainerKind, Workload, WorkloadError,
    WorkloadKind,
};

/// The fast path (`slim::extract_slice` on the JSON bytes) agrees with `extract`: the same
/// workload for a readable object, no answer (take the slow path) for an unreadable one.
fn fast_agrees(obj: &Value) -> Option<Workload> {
    let fast = slim::extract_slice(&serde_json::to_vec(obj).unwrap());
    match extract(obj) {
        // `None` is allowed (the caller takes the slow path); a different answer is not.
        Ok(w) => assert!(
            fast.as_ref().is_none_or(|f| f == &w),
            "fast path differs on {obj}"
        ),
        Err(e) => assert_eq!(
            fast, None,
            "fast path accepts what extract refuses ({e}): {obj}"
        ),
    }
    fast
}

/// A pod spec with one init container, two containers and one ephemeral container.
fn pod_spec() -> Value {
    json!({
        "initContainers": [{ "name": "migrate", "image": "example.com/app/migrate:1" }],
        "containers": [
            { "name": "app", "image": "example.com/app/api:2" },
            { "name": "proxy", "image": "envoyproxy/envoy:v1.30" }
        ],
        "ephemeralContainers": [{ "name": "debug", "image": "busybox:1.36" }]
    })
}

fn template() -> Value {
    json!({ "metadata": { "labels": { "app": "shop", "tier": "api" } }, "spec": pod_spec() })
}

fn object(api_version: &str, kind: &str, spec: Value) -> Value {
    json!({
        "apiVersion": api_version,
        "kind": kind,
        "metadata": { "name": "web", "namespace": "prod-shop", "labels": { "owner-label": "x" } },
        "spec": spec
    })
}

fn selector() -> Value {
    json!({ "matchLabels": { "app": "shop" } })
}

fn expected_containers() -> Vec<ContainerImage> {
    let c = |name: &str, image: &str, kind| ContainerImage {
        name: name.into(),
        image: image.into(),
        kind,
    };
    vec![
        c("migrate", "example.com/app/migrate:1", ContainerKind::Init),
        c("app", "example.com/app/api:2", ContainerKind::Container),
        c("proxy", "envoyproxy/envoy:v1.30", ContainerKind::Container),
        c("debug", "busybox:1.36", ContainerKind::Ephemeral),
    ]
}

#[rstest]
#[case::deployment(WorkloadKind::Deployment, object("apps/v1", "Deployment", json!({ "selector": selector(), "template": template() })))]
#[case::replica_set(WorkloadKind::ReplicaSet, object("apps/v1", "ReplicaSet", json!({ "selector": selector(), "template": template() })))]
#[case::stateful_set(WorkloadKind::StatefulSet, object("apps/v1", "StatefulSet", json!({ "selector": selector(), "serviceName": "web", "template": template() })))]
#[case::daemon_set(WorkloadKind::DaemonSet, object("apps/v1", "DaemonSet", json!({ "selector": selector(), "template": template() })))]
#[case::job(WorkloadKind::Job, object("batch/v1", "Job", json!({ "template": template() })))]
#[case::cron_job(WorkloadKind::CronJob, object("batch/v1", "CronJob", json!({ "schedule": "*/5 * * * *", "jobTemplate": { "spec": { "template": template() } } })))]
#[case::replication_controller(WorkloadKind::ReplicationController, object("v1", "ReplicationController", json!({ "template": template() })))]
fn controllers_use_the_pod_template(#[case] kind: WorkloadKind, #[case] obj: Value) {
    assert!(fast_agrees(&obj).is_some());
    let w = extract(&obj).unwrap();
    assert_eq!(w.kind, kind);
    assert_eq!(w.name.as_deref(), Some("web"));
    assert_eq!(w.namespace.as_deref(), Some("prod-shop"));
    assert_eq!(w.pod_name, None, "only a Pod has a pod name");
    // The pod template's labels, not the controller's own.
    let labels: BTreeMap<String, String> = [("app", "shop"), ("tier", "api")]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    assert_eq!(w.labels, labels);
    assert_eq!(w.containers, expected_containers());
}

#[test]
fn pod_uses_its_own_labels_and_name() {
    let obj = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": { "generateName": "web-", "labels": { "app": "shop" } },
        "spec": pod_spec()
    });
    assert!(fast_agrees(&obj).is_some());
    let w = extract(&obj).unwrap();
    assert_eq!(w.kind, WorkloadKind::Pod);
    assert_eq!(
        w.name.as_deref(),
        Some("web-"),
        "generateName when there is no name"
    );
    assert_eq!(w.pod_name.as_deref(), Some("web-"));
    assert_eq!(w.namespace, None);
    assert_eq!(w.labels.get("app").map(String::as_str), Some("shop"));
    assert_eq!(w.containers, expected_containers());

    let ctx = w.to_context(Some("aks-prod-1".into()));
    assert_eq!(ctx.cluster.as_deref(), Some("aks-prod-1"));
    assert_eq!(ctx.pod.as_deref(), Some("web-"));
    assert_eq!(ctx.workload_kind.as_deref(), Some("Pod"));
    assert_eq!(ctx.workload_name.as_deref(), Some("web-"));
    assert_eq!(ctx.namespace, None);
    assert_eq!(ctx.labels, w.labels);
    // The moving form gives the same context.
    assert_eq!(w.into_context(Some("aks-prod-1".into())), ctx);
}

#[test]
fn controller_context_has_no_pod() {
    let obj = object(
        "apps/v1",
        "Deployment",
        json!({ "selector": selector(), "template": template() }),
    );
    let ctx = extract(&obj).unwrap().to_context(None);
    assert_eq!(extract(&obj).unwrap().into_context(None), ctx);
    assert_eq!(ctx.cluster, None);
    assert_eq!(ctx.pod, None);
    assert_eq!(ctx.namespace.as_deref(), Some("prod-shop"));
    assert_eq!(ctx.workload_kind.as_deref(), Some("Deployment"));
    assert_eq!(ctx.workload_name.as_deref(), Some("web"));
    assert_eq!(ctx.labels.get("tier").map(String::as_str), Some("api"));
    assert!(!ctx.labels.contains_key("owner-label"));
}

fn deployment_with(containers: Value) -> Value {
    object(
        "apps/v1",
        "Deployment",
        json!({ "selector": selector(), "template": { "spec": { "containers": containers } } }),
    )
}

#[rstest]
#[case::unsupported_kind(
    json!({ "apiVersion": "v1", "kind": "Service", "metadata": { "name": "s" } }),
    WorkloadError::UnsupportedKind { kind: "Service".into() },
    "unsupported kind \"Service\"; supported kinds: Pod (v1), Deployment (apps/v1), ReplicaSet (apps/v1), StatefulSet (apps/v1), DaemonSet (apps/v1), Job (batch/v1), CronJob (batch/v1), ReplicationController (v1)"
)]
#[case::old_api_version(
    json!({ "apiVersion": "extensions/v1beta1", "kind": "Deployment", "spec": {} }),
    WorkloadError::UnsupportedApiVersion { kind: WorkloadKind::Deployment, api_version: "extensions/v1beta1".into(), expected: "apps/v1" },
    "unsupported apiVersion \"extensions/v1beta1\" for kind Deployment: expected apps/v1"
)]
#[case::missing_kind(
    json!({ "apiVersion": "v1" }),
    WorkloadError::MissingField { path: "kind".into() },
    "missing required field kind"
)]
#[case::missing_api_version(
    json!({ "kind": "Pod" }),
    WorkloadError::MissingField { path: "apiVersion".into() },
    "missing required field apiVersion"
)]
#[case::kind_not_a_string(
    json!({ "apiVersion": "v1", "kind": 3 }),
    WorkloadError::InvalidField { path: "kind".into(), message: "expected a string, found a number".into() },
    "kind: expected a string, found a number"
)]
#[case::not_an_object(
    json!(["a"]),
    WorkloadError::NotAnObject { found: "a sequence" },
    "not a Kubernetes object: expected a mapping, found a sequence"
)]
#[case::missing_template(
    object("apps/v1", "Deployment", json!({ "selector": selector() })),
    WorkloadError::MissingPodTemplate { kind: WorkloadKind::Deployment, path: "spec.template".into() },
    "missing spec.template"
)]
#[case::null_template(
    object("apps/v1", "StatefulSet", json!({ "selector": selector(), "template": null })),
    WorkloadError::MissingPodTemplate { kind: WorkloadKind::StatefulSet, path: "spec.template".into() },
    "missing spec.template"
)]
#[case::missing_pod_spec(
    object("batch/v1", "Job", json!({ "template": { "metadata": {} } })),
    WorkloadError::MissingPodTemplate { kind: WorkloadKind::Job, path: "spec.template.spec".into() },
    "missing spec.template.spec"
)]
#[case::cron_job_missing_job_template(
    object("batch/v1", "CronJob", json!({ "schedule": "@daily" })),
    WorkloadError::MissingPodTemplate { kind: WorkloadKind::CronJob, path: "spec.jobTemplate".into() },
    "missing spec.jobTemplate"
)]
#[case::missing_spec(
    json!({ "apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": { "name": "d" } }),
    WorkloadError::MissingField { path: "spec".into() },
    "missing required field spec"
)]
#[case::pod_without_containers(
    json!({ "apiVersion": "v1", "kind": "Pod", "spec": { "initContainers": [] } }),
    WorkloadError::MissingField { path: "spec.containers".into() },
    "missing required field spec.containers"
)]
#[case::image_wrong_type(
    deployment_with(json!([{ "name": "app", "image": 42 }])),
    WorkloadError::InvalidField { path: "spec.template.spec.containers[0].image".into(), message: "invalid type: integer `42`, expected a string".into() },
    "spec.template.spec.containers[0].image: invalid type: integer `42`, expected a string"
)]
#[case::containers_wrong_type(
    deployment_with(json!({ "name": "app" })),
    WorkloadError::InvalidField { path: "spec.template.spec.containers".into(), message: "invalid type: map, expected a sequence".into() },
    "spec.template.spec.containers: invalid type: map, expected a sequence"
)]
#[case::labels_wrong_type(
    json!({ "apiVersion": "v1", "kind": "Pod", "metadata": { "labels": { "app": ["x"] } }, "spec": { "containers": [] } }),
    WorkloadError::InvalidField { path: "metadata.labels.app".into(), message: "invalid type: sequence, expected a string".into() },
    "metadata.labels.app: invalid type: sequence, expected a string"
)]
#[case::container_without_image(
    deployment_with(json!([{ "name": "app", "image": "nginx" }, { "name": "sidecar" }])),
    WorkloadError::MissingImage { path: "spec.template.spec.containers[1].image".into(), container: "sidecar".into() },
    "spec.template.spec.containers[1].image: container \"sidecar\" has no image"
)]
#[case::ephemeral_with_empty_image(
    json!({ "apiVersion": "v1", "kind": "Pod", "spec": { "containers": [{ "name": "a", "image": "nginx" }], "ephemeralContainers": [{ "name": "dbg", "image": " " }] } }),
    WorkloadError::MissingImage { path: "spec.ephemeralContainers[0].image".into(), container: "dbg".into() },
    "spec.ephemeralContainers[0].image: container \"dbg\" has no image"
)]
#[case::cron_job_init_without_image(
    object("batch/v1", "CronJob", json!({ "schedule": "@daily", "jobTemplate": { "spec": { "template": { "spec": { "initContainers": [{ "name": "i" }], "containers": [{ "name": "c", "image": "x" }] } } } } })),
    WorkloadError::MissingImage { path: "spec.jobTemplate.spec.template.spec.initContainers[0].image".into(), container: "i".into() },
    "spec.jobTemplate.spec.template.spec.initContainers[0].image: container \"i\" has no image"
)]
fn errors_are_precise(#[case] obj: Value, #[case] want: WorkloadError, #[case] message: &str) {
    assert_eq!(fast_agrees(&obj), None);
    let err = extract(&obj).unwrap_err();
    assert_eq!(err, want);
    assert_eq!(err.to_string(), message);
}

#[test]
fn multi_document_yaml_and_lists() {
    let text = r#"
apiVersion: v1
kind: Pod
metadata: { name: one }
spec:
  containers: [{ name: a, image: "nginx:1.25" }]
---
# an empty document is skipped
---
apiVersion: v1
kind: List
items:
  - apiVersion: batch/v1
    kind: Job
    metadata: { name: two }
    spec:
      template:
        spec:
          containers: [{ name: b, image: "alpine:3.20" }]
  - apiVersion: v1
    kind: Service
    metadata: { name: svc }
---
{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "three"}, "spec": {"containers": [{"name": "c", "image": "redis"}]}}
"#;
    let docs = parse_manifests(text).unwrap();
    let locations: Vec<String> = docs.iter().map(|d| d.location()).collect();
    assert_eq!(
        locations,
        [
            "document 1",
            "document 3, items[0]",
            "document 3, items[1]",
            "document 4"
        ]
    );
    let names: Vec<Option<String>> = docs
        .iter()
        .map(|d| extract(&d.value).ok().and_then(|w| w.name))
        .collect();
    assert_eq!(
        names,
        [
            Some("one".into()),
            Some("two".into()),
            None,
            Some("three".into())
        ]
    );
    // The Service inside the list is reported, not silently dropped.
    assert!(matches!(
        extract(&docs[2].value),
        Err(WorkloadError::UnsupportedKind { kind }) if kind == "Service"
    ));
}

#[test]
fn yaml_merge_keys_are_applied() {
    let text = r#"
apiVersion: v1
kind: Pod
metadata: { name: p }
spec:
  containers:
    - &base { name: a, image: "nginx:1" }
    - <<: *base
      name: b
"#;
    let docs = parse_manifests(text).unwrap();
    let w = extract(&docs[0].value).unwrap();
    let images: Vec<(&str, &str)> = w
        .containers
        .iter()
        .map(|c| (c.name.as_str(), c.image.as_str()))
        .collect();
    assert_eq!(images, [("a", "nginx:1"), ("b", "nginx:1")]);
}

#[rstest]
#[case::syntax("apiVersion: v1\nkind: Pod\n---\nmetadata: [unclosed\n", 2)]
#[case::items_not_a_list("apiVersion: v1\nkind: List\nitems: {a: 1}\n", 1)]
fn manifest_errors_name_the_document(#[case] text: &str, #[case] document: usize) {
    let err = parse_manifests(text).unwrap_err();
    assert_eq!(err.document, document);
    assert!(
        err.to_string()
            .starts_with(&format!("document {document}: ")),
        "{err}"
    );
}

/// Shapes the fast path reads differently from the typed parse if it is careless: escaped
/// strings, nulls, missing optional parts, generateName, duplicate images, unknown fields.
#[rstest]
#[case::escaped(json!({ "apiVersion": "v1", "kind": "Pod", "metadata": { "name": "w\"eb", "labels": { "a\\u00e9": "x\ny" } }, "spec": { "containers": [{ "name": "c\t1", "image": "r.example/a\u{e9}:1" }] } }))]
#[case::null_labels(json!({ "apiVersion": "v1", "kind": "Pod", "metadata": { "name": "web", "labels": null, "namespace": null }, "spec": { "containers": [{ "image": "nginx" }] } }))]
#[case::no_metadata(json!({ "apiVersion": "apps/v1", "kind": "Deployment", "spec": { "template": { "spec": { "containers": [{ "name": "a", "image": "nginx" }, { "name": "b", "image": "nginx" }] } } } }))]
#[case::template_metadata_null(json!({ "apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": { "generateName": "ds-" }, "spec": { "template": { "metadata": null, "spec": { "containers": [{ "name": "a", "image": "nginx" }] } } } }))]
#[case::init_null(json!({ "apiVersion": "batch/v1", "kind": "Job", "spec": { "template": { "spec": { "initContainers": null, "containers": [], "ephemeralContainers": [] } } } }))]
#[case::unknown_fields(json!({ "apiVersion": "apps/v1", "kind": "StatefulSet", "status": { "replicas": 3 }, "metadata": { "name": "s", "managedFields": [{ "manager": "kubectl" }], "annotations": { "kubectl.kubernetes.io/last-applied-configuration": "{\"a\":1}\n" } }, "spec": { "replicas": 2, "selector": { "matchLabels": { "a": "b" } }, "template": { "metadata": { "labels": { "a": "b" }, "annotations": { "x": "y" } }, "spec": { "containers": [{ "name": "a", "image": "nginx", "ports": [{ "containerPort": 80 }], "env": [{ "name": "X", "value": "1" }] }], "volumes": [] } } } }))]
#[case::pod_spec_with_foreign_field(json!({ "apiVersion": "v1", "kind": "Pod", "spec": { "template": 5, "containers": [{ "name": "a", "image": "nginx" }] } }))]
#[case::blank_image(json!({ "apiVersion": "v1", "kind": "Pod", "spec": { "containers": [{ "name": "a", "image": "  " }] } }))]
#[case::kind_null(json!({ "apiVersion": "v1", "kind": null, "spec": { "containers": [] } }))]
#[case::metadata_wrong_type(json!({ "apiVersion": "v1", "kind": "Pod", "metadata": [], "spec": { "containers": [] } }))]
#[case::annotation_wrong_type(json!({ "apiVersion": "v1", "kind": "Pod", "metadata": { "annotations": { "a": 1 } }, "spec": { "containers": [] } }))]
#[case::cron_job_no_template(json!({ "apiVersion": "batch/v1", "kind": "CronJob", "spec": { "jobTemplate": { "spec": {} } } }))]
#[case::rc_null_spec(json!({ "apiVersion": "v1", "kind": "ReplicationController", "spec": null }))]
fn fast_path_agrees_with_extract(#[case] obj: Value) {
    fast_agrees(&obj);
}

/// An object given twice the same key is refused by the fast path (it takes the slow path),
/// which reads the last value as the typed parse does.
#[test]
fn duplicate_keys_take_the_slow_path() {
    let text = br#"{"apiVersion":"v1","kind":"Pod","spec":{"containers":[{"name":"a","image":"x"}]},"spec":{"containers":[{"name":"a","image":"y"}]}}"#;
    assert_eq!(slim::extract_slice(text), None);
    let v: Value = serde_json::from_slice(text).unwrap();
    assert_eq!(extract(&v).unwrap().containers[0].image, "y");
}
