//! Workload manifests: which images a Kubernetes object runs.
//!
//! [`extract`] reads one object (as a `serde_json::Value`, the way an AdmissionReview or a
//! manifest file carries it) into a [`Workload`]: its kind, name, namespace, pod labels and
//! every container image (containers, initContainers, ephemeralContainers). The object is
//! deserialised into the k8s-openapi type of its kind, so a field of the wrong type is an
//! error naming its JSON path (`spec.template.spec.containers[0].image`).
//!
//! [`parse_manifests`] splits a multi-document YAML (or JSON) text, and `kind: List`
//! objects, into single objects. Pure: no IO.

use std::collections::BTreeMap;
use std::fmt;

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{Pod, PodSpec, PodTemplateSpec, ReplicationController};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::engine::RequestContext;
use crate::owner::{self, OwnerLookup, OwnerRef, TopWorkload};

/// The workload kinds whose images are gated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum WorkloadKind {
    Pod,
    Deployment,
    ReplicaSet,
    StatefulSet,
    DaemonSet,
    Job,
    CronJob,
    ReplicationController,
}

impl WorkloadKind {
    /// Every supported kind, in the order error messages list them.
    pub const ALL: [WorkloadKind; 8] = [
        WorkloadKind::Pod,
        WorkloadKind::Deployment,
        WorkloadKind::ReplicaSet,
        WorkloadKind::StatefulSet,
        WorkloadKind::DaemonSet,
        WorkloadKind::Job,
        WorkloadKind::CronJob,
        WorkloadKind::ReplicationController,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            WorkloadKind::Pod => "Pod",
            WorkloadKind::Deployment => "Deployment",
            WorkloadKind::ReplicaSet => "ReplicaSet",
            WorkloadKind::StatefulSet => "StatefulSet",
            WorkloadKind::DaemonSet => "DaemonSet",
            WorkloadKind::Job => "Job",
            WorkloadKind::CronJob => "CronJob",
            WorkloadKind::ReplicationController => "ReplicationController",
        }
    }

    /// The apiVersion this kind is accepted in.
    pub fn api_version(self) -> &'static str {
        match self {
            WorkloadKind::Pod | WorkloadKind::ReplicationController => "v1",
            WorkloadKind::Deployment
            | WorkloadKind::ReplicaSet
            | WorkloadKind::StatefulSet
            | WorkloadKind::DaemonSet => "apps/v1",
            WorkloadKind::Job | WorkloadKind::CronJob => "batch/v1",
        }
    }

    pub fn from_kind(kind: &str) -> Option<WorkloadKind> {
        WorkloadKind::ALL.into_iter().find(|k| k.as_str() == kind)
    }

    /// Path segments from the object to its pod spec's `containers`.
    fn containers_path(self) -> &'static [&'static str] {
        match self {
            WorkloadKind::Pod => &["spec", "containers"],
            WorkloadKind::CronJob => &[
                "spec",
                "jobTemplate",
                "spec",
                "template",
                "spec",
                "containers",
            ],
            _ => &["spec", "template", "spec", "containers"],
        }
    }

    /// JSON path prefix of the pod spec (`spec.template.spec`).
    fn pod_spec_path(self) -> String {
        let p = self.containers_path();
        p[..p.len() - 1].join(".")
    }
}

impl fmt::Display for WorkloadKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `Pod (v1), Deployment (apps/v1), ...` for error messages.
fn supported_list() -> String {
    WorkloadKind::ALL
        .iter()
        .map(|k| format!("{k} ({})", k.api_version()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Which list of the pod spec a container is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ContainerKind {
    Container,
    Init,
    Ephemeral,
}

impl ContainerKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ContainerKind::Container => "container",
            ContainerKind::Init => "init",
            ContainerKind::Ephemeral => "ephemeral",
        }
    }

    /// The pod spec field holding this kind of container.
    pub fn field(self) -> &'static str {
        match self {
            ContainerKind::Container => "containers",
            ContainerKind::Init => "initContainers",
            ContainerKind::Ephemeral => "ephemeralContainers",
        }
    }
}

impl fmt::Display for ContainerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One container and the image it runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerImage {
    pub name: String,
    /// The image reference as written in the manifest.
    pub image: String,
    pub kind: ContainerKind,
}

/// A workload and the images it runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Workload {
    pub kind: WorkloadKind,
    /// `metadata.name`, else `metadata.generateName`.
    pub name: Option<String>,
    pub namespace: Option<String>,
    /// The pod template's labels (for a Pod: its own labels).
    pub labels: BTreeMap<String, String>,
    /// The pod's name, only for kind Pod.
    pub pod_name: Option<String>,
    /// The controller owner (`metadata.ownerReferences[]` with `controller: true`).
    pub owner: Option<OwnerRef>,
    /// Init containers first (they run first), then containers, then ephemeral containers;
    /// each list in manifest order.
    pub containers: Vec<ContainerImage>,
}

impl Workload {
    /// The engine's view of where the images run (a copy; see [`into_context`](Self::into_context)).
    pub fn to_context(&self, cluster: Option<String>) -> RequestContext {
        self.clone().into_context(cluster)
    }

    /// The engine's view of where the images run, taking the names and labels; the
    /// workload (the `deployment` scope field) is the top owner by the naming rules
    /// ([`owner::resolve`] without a cache).
    pub fn into_context(self, cluster: Option<String>) -> RequestContext {
        self.into_context_with(cluster, None).0
    }

    /// The top workload of this object ([`owner::resolve`]), confirmed through `lookup` when
    /// given.
    pub fn top(&self, lookup: Option<&dyn OwnerLookup>) -> TopWorkload {
        owner::resolve(
            &owner::Object {
                api_version: self.kind.api_version(),
                kind: self.kind.as_str(),
                name: self.name.as_deref(),
                namespace: self.namespace.as_deref(),
                uid: None,
                labels: &self.labels,
                owner: self.owner.as_ref(),
            },
            lookup,
        )
    }

    /// [`into_context`](Self::into_context) with the top owner confirmed through `lookup`;
    /// also returns the top workload.
    pub fn into_context_with(
        self,
        cluster: Option<String>,
        lookup: Option<&dyn OwnerLookup>,
    ) -> (RequestContext, TopWorkload) {
        let top = self.top(lookup);
        let ctx = RequestContext {
            cluster,
            namespace: self.namespace,
            pod: self.pod_name,
            workload_kind: Some(top.kind.clone()),
            workload_name: Some(top.name.clone()).filter(|n| !n.is_empty()),
            labels: self.labels,
            user: None,
            groups: Vec::new(),
        };
        (ctx, top)
    }
}

/// Why an object's images cannot be extracted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WorkloadError {
    #[error("not a Kubernetes object: expected a mapping, found {found}")]
    NotAnObject { found: &'static str },
    #[error("missing required field {path}")]
    MissingField { path: String },
    #[error("unsupported kind {kind:?}; supported kinds: {}", supported_list())]
    UnsupportedKind { kind: String },
    #[error("unsupported apiVersion {api_version:?} for kind {kind}: expected {expected}")]
    UnsupportedApiVersion {
        kind: WorkloadKind,
        api_version: String,
        expected: &'static str,
    },
    /// The pod template (or its pod spec) is absent; `kind` says which object it is.
    #[error("missing {path}")]
    MissingPodTemplate { kind: WorkloadKind, path: String },
    #[error("{path}: {message}")]
    InvalidField { path: String, message: String },
    #[error("{path}: container {container:?} has no image")]
    MissingImage { path: String, container: String },
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a sequence",
        Value::Object(_) => "a mapping",
    }
}

/// A required top-level string field.
fn string_field<'a>(obj: &'a Value, field: &str) -> Result<&'a str, WorkloadError> {
    match obj.get(field) {
        None | Some(Value::Null) => Err(WorkloadError::MissingField { path: field.into() }),
        Some(Value::String(s)) => Ok(s),
        Some(other) => Err(WorkloadError::InvalidField {
            path: field.into(),
            message: format!("expected a string, found {}", type_name(other)),
        }),
    }
}

/// Finds the first missing (or null) mapping key along `path`. A segment that is present
/// but not a mapping is left to the typed deserialisation, which names the wrong type.
fn first_missing(obj: &Value, path: &[&str]) -> Option<String> {
    let mut cur = obj;
    for (i, seg) in path.iter().enumerate() {
        let Value::Object(map) = cur else {
            return None;
        };
        match map.get(*seg) {
            None | Some(Value::Null) => return Some(path[..=i].join(".")),
            Some(v) => cur = v,
        }
    }
    None
}

/// Deserialises `obj` with path tracking, for a message that names the field. One
/// instantiation per workload type: a plain first attempt (tracking costs about as much as the
/// deserialisation itself) doubled the k8s-openapi deserialisers generated here, 14% of this
/// crate's LLVM IR (`cargo llvm-lines`: 1.02 M lines with it, 0.87 M without), for no gain on the
/// admission hot path, which reads objects with the slim reader (`slim`) and comes here only
/// when that one cannot answer.
fn typed<T: serde::de::DeserializeOwned>(obj: &Value) -> Result<T, WorkloadError> {
    serde_path_to_error::deserialize(obj).map_err(|e| {
        let path = e.path().to_string();
        WorkloadError::InvalidField {
            path: if path == "." { String::new() } else { path },
            message: e.into_inner().to_string(),
        }
    })
}

fn template_spec(t: PodTemplateSpec) -> (Option<ObjectMeta>, Option<PodSpec>) {
    (t.metadata, t.spec)
}

/// Extracts the images of one Kubernetes object.
pub fn extract(obj: &Value) -> Result<Workload, WorkloadError> {
    if !obj.is_object() {
        return Err(WorkloadError::NotAnObject {
            found: type_name(obj),
        });
    }
    let kind_str = string_field(obj, "kind")?;
    let kind = WorkloadKind::from_kind(kind_str).ok_or_else(|| WorkloadError::UnsupportedKind {
        kind: kind_str.to_string(),
    })?;
    let api_version = string_field(obj, "apiVersion")?;
    if api_version != kind.api_version() {
        return Err(WorkloadError::UnsupportedApiVersion {
            kind,
            api_version: api_version.to_string(),
            expected: kind.api_version(),
        });
    }
    let required = kind.containers_path();
    if let Some(path) = first_missing(obj, required) {
        // `spec` itself, the template (`spec.template`, `spec.jobTemplate...`) or the pod spec.
        return Err(if kind == WorkloadKind::Pod || path == "spec" {
            WorkloadError::MissingField { path }
        } else {
            WorkloadError::MissingPodTemplate { kind, path }
        });
    }

    // Deserialise into the kind's type: wrong types are reported with their JSON path.
    let (meta, template_meta, pod_spec): (ObjectMeta, Option<ObjectMeta>, Option<PodSpec>) =
        match kind {
            WorkloadKind::Pod => {
                let p: Pod = typed(obj)?;
                (p.metadata, None, p.spec)
            }
            WorkloadKind::Deployment => {
                let d: Deployment = typed(obj)?;
                let (m, s) = template_spec(d.spec.template);
                (d.metadata, m, s)
            }
            WorkloadKind::ReplicaSet => {
                let r: ReplicaSet = typed(obj)?;
                let (m, s) = r.spec.template.map(template_spec).unwrap_or_default();
                (r.metadata, m, s)
            }
            WorkloadKind::StatefulSet => {
                let s: StatefulSet = typed(obj)?;
                let (m, ps) = template_spec(s.spec.template);
                (s.metadata, m, ps)
            }
            WorkloadKind::DaemonSet => {
                let d: DaemonSet = typed(obj)?;
                let (m, s) = template_spec(d.spec.template);
                (d.metadata, m, s)
            }
            WorkloadKind::Job => {
                let j: Job = typed(obj)?;
                let (m, s) = j
                    .spec
                    .map(|s| template_spec(s.template))
                    .unwrap_or_default();
                (j.metadata, m, s)
            }
            WorkloadKind::CronJob => {
                let c: CronJob = typed(obj)?;
                let (m, s) = c
                    .spec
                    .job_template
                    .spec
                    .map(|s| template_spec(s.template))
                    .unwrap_or_default();
                (c.metadata, m, s)
            }
            WorkloadKind::ReplicationController => {
                let r: ReplicationController = typed(obj)?;
                let (m, s) = r
                    .spec
                    .and_then(|s| s.template)
                    .map(template_spec)
                    .unwrap_or_default();
                (r.metadata, m, s)
            }
        };
    let spec_path = kind.pod_spec_path();
    // Checked above: the pod spec is present (an explicit null was reported as missing).
    let Some(pod_spec) = pod_spec else {
        return Err(WorkloadError::MissingPodTemplate {
            kind,
            path: spec_path,
        });
    };

    let mut containers = Vec::new();
    let mut push = |ck: ContainerKind, i: usize, name: String, image: Option<String>| match image
        .filter(|s| !s.trim().is_empty())
    {
        Some(image) => {
            containers.push(ContainerImage {
                name,
                image,
                kind: ck,
            });
            Ok(())
        }
        None => Err(WorkloadError::MissingImage {
            path: format!("{spec_path}.{}[{i}].image", ck.field()),
            container: name,
        }),
    };
    for (i, c) in pod_spec
        .init_containers
        .unwrap_or_default()
        .into_iter()
        .enumerate()
    {
        push(ContainerKind::Init, i, c.name, c.image)?;
    }
    for (i, c) in pod_spec.containers.into_iter().enumerate() {
        push(ContainerKind::Container, i, c.name, c.image)?;
    }
    for (i, c) in pod_spec
        .ephemeral_containers
        .unwrap_or_default()
        .into_iter()
        .enumerate()
    {
        push(ContainerKind::Ephemeral, i, c.name, c.image)?;
    }

    let name = meta.name.clone().or(meta.generate_name.clone());
    let owner = owner::controller_of(meta.owner_references.as_deref().unwrap_or(&[]));
    let labels = match kind {
        WorkloadKind::Pod => meta.labels.clone(),
        _ => template_meta.and_then(|m| m.labels),
    }
    .unwrap_or_default();
    Ok(Workload {
        kind,
        pod_name: (kind == WorkloadKind::Pod).then(|| name.clone()).flatten(),
        name,
        namespace: meta.namespace,
        labels,
        owner,
        containers,
    })
}

/// One object read from a manifest text.
#[derive(Debug, Clone, PartialEq)]
pub struct ManifestDoc {
    /// 1-based YAML document number.
    pub document: usize,
    /// Index in the document's `items` when the document is a `kind: List` (or `*List`).
    pub item: Option<usize>,
    pub value: Value,
}

impl ManifestDoc {
    /// `document 2` or `document 2, items[3]`.
    pub fn location(&self) -> String {
        match self.item {
            Some(i) => format!("document {}, items[{i}]", self.document),
            None => format!("document {}", self.document),
        }
    }
}

/// A manifest text that cannot be split into objects.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("document {document}: {message}")]
pub struct ManifestError {
    pub document: usize,
    pub message: String,
}

/// Splits a multi-document YAML (or JSON) text into objects: empty documents are skipped,
/// `kind: List` documents (and typed lists such as `DeploymentList`) are replaced by their
/// `items`. YAML merge keys (`<<`) are applied.
pub fn parse_manifests(text: &str) -> Result<Vec<ManifestDoc>, ManifestError> {
    let mut out = Vec::new();
    for (i, doc) in serde_yaml_ng::Deserializer::from_str(text).enumerate() {
        let document = i + 1;
        let err = |message: String| ManifestError { document, message };
        let mut yaml = serde_yaml_ng::Value::deserialize(doc).map_err(|e| err(e.to_string()))?;
        if yaml.is_null() {
            continue;
        }
        yaml.apply_merge().map_err(|e| err(e.to_string()))?;
        let value: Value = serde_json::to_value(&yaml).map_err(|e| err(e.to_string()))?;
        let is_list = value
            .get("kind")
            .and_then(Value::as_str)
            .is_some_and(|k| k.ends_with("List"));
        if is_list {
            let items = match value.get("items") {
                Some(Value::Array(items)) => items.clone(),
                None | Some(Value::Null) => Vec::new(),
                Some(other) => {
                    return Err(err(format!(
                        "items: expected a sequence, found {}",
                        type_name(other)
                    )))
                }
            };
            out.extend(items.into_iter().enumerate().map(|(n, value)| ManifestDoc {
                document,
                item: Some(n),
                value,
            }));
        } else {
            out.push(ManifestDoc {
                document,
                item: None,
                value,
            });
        }
    }
    Ok(out)
}

/// The fast path of the admission webhook: an object deserialised straight from the request
/// bytes into the few fields vulngate reads (borrowing the strings that need no unescaping),
/// without a `serde_json::Value` tree or the full k8s-openapi types.
///
/// [`slim::SlimObject::workload`] answers only for well-formed objects, with exactly what
/// [`extract`] returns for them; whenever `extract` would fail (or the slim view cannot tell),
/// it answers `None` and the caller takes the slow path (`Value` + [`extract`]) for the
/// precise, path-naming error. What the slim view does not check: the types of fields it
/// does not read (a `spec.replicas` that is a string is an error for `extract`, not here); the
/// API server has validated those against the object's schema before any webhook sees it.
pub mod slim {
    use std::borrow::Cow;
    use std::collections::BTreeMap;
    use std::fmt;

    use serde::de::{Deserializer, Visitor};
    use serde::Deserialize;

    use super::{ContainerImage, ContainerKind, OwnerRef, Workload, WorkloadKind};

    /// A JSON string, borrowed from the input when it has no escape sequence.
    #[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
    pub struct Text<'a>(pub Cow<'a, str>);

    impl Text<'_> {
        pub fn as_str(&self) -> &str {
            &self.0
        }
        pub fn to_owned_string(&self) -> String {
            self.0.as_ref().to_owned()
        }
    }

    impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Text<'a>, D::Error> {
            struct V;
            impl<'de> Visitor<'de> for V {
                type Value = Text<'de>;
                fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                    f.write_str("a string")
                }
                fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Text<'de>, E> {
                    Ok(Text(Cow::Borrowed(v)))
                }
                fn visit_str<E>(self, v: &str) -> Result<Text<'de>, E> {
                    Ok(Text(Cow::Owned(v.to_owned())))
                }
                fn visit_string<E>(self, v: String) -> Result<Text<'de>, E> {
                    Ok(Text(Cow::Owned(v)))
                }
            }
            d.deserialize_str(V)
        }
    }

    /// A JSON object of strings to strings (labels, annotations), in document order. A vector,
    /// not a map: most objects carry a handful of entries, which a map would put in a node of
    /// eleven slots each time. Where a key repeats, the last value counts, as in a map.
    #[derive(Debug, Clone, Default, PartialEq, Eq)]
    pub struct Pairs<'a>(pub Vec<(Text<'a>, Text<'a>)>);

    impl Pairs<'_> {
        /// The value of `key` (the last one, should the key repeat).
        pub fn get(&self, key: &str) -> Option<&str> {
            self.0
                .iter()
                .rev()
                .find(|(k, _)| k.as_str() == key)
                .map(|(_, v)| v.as_str())
        }
    }

    impl<'de: 'a, 'a> Deserialize<'de> for Pairs<'a> {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Pairs<'a>, D::Error> {
            struct V;
            impl<'de> Visitor<'de> for V {
                type Value = Pairs<'de>;
                fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                    f.write_str("a map of strings")
                }
                fn visit_map<A: serde::de::MapAccess<'de>>(
                    self,
                    mut map: A,
                ) -> Result<Pairs<'de>, A::Error> {
                    let mut out = Vec::with_capacity(map.size_hint().unwrap_or(0).min(16));
                    while let Some(entry) = map.next_entry::<Text<'de>, Text<'de>>()? {
                        out.push(entry);
                    }
                    Ok(Pairs(out))
                }
            }
            d.deserialize_map(V)
        }
    }

    /// A field that may be absent (`Absent`, with `#[serde(default)]`), null, or a value.
    #[derive(Debug, Clone, Default, PartialEq, Eq)]
    pub enum Tri<T> {
        #[default]
        Absent,
        Null,
        Value(T),
    }

    impl<'de, T: Deserialize<'de>> Deserialize<'de> for Tri<T> {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Tri<T>, D::Error> {
            Ok(match Option::<T>::deserialize(d)? {
                None => Tri::Null,
                Some(v) => Tri::Value(v),
            })
        }
    }

    /// `metadata`: only what the webhook reads.
    #[derive(Debug, Default, Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub struct SlimMeta<'a> {
        #[serde(borrow)]
        pub name: Option<Text<'a>>,
        #[serde(borrow)]
        pub generate_name: Option<Text<'a>>,
        #[serde(borrow)]
        pub namespace: Option<Text<'a>>,
        #[serde(borrow)]
        pub uid: Option<Text<'a>>,
        #[serde(borrow)]
        pub labels: Option<Pairs<'a>>,
        #[serde(borrow)]
        pub annotations: Option<Pairs<'a>>,
        #[serde(borrow)]
        pub owner_references: Option<Vec<SlimOwnerRef<'a>>>,
    }

    /// `metadata.ownerReferences[]` (typed as k8s-openapi's `OwnerReference`).
    #[derive(Debug, Default, Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub struct SlimOwnerRef<'a> {
        #[serde(borrow)]
        pub api_version: Option<Text<'a>>,
        #[serde(borrow)]
        pub kind: Option<Text<'a>>,
        #[serde(borrow)]
        pub name: Option<Text<'a>>,
        #[serde(borrow)]
        pub uid: Option<Text<'a>>,
        pub controller: Option<bool>,
        pub block_owner_deletion: Option<bool>,
    }

    /// The controller owner, as `extract` reads it; `Err` when a reference lacks a required
    /// field (`extract` fails: take the slow path).
    fn controller_owner(refs: Option<&[SlimOwnerRef<'_>]>) -> Result<Option<OwnerRef>, ()> {
        let mut found = None;
        for r in refs.into_iter().flatten() {
            let (Some(a), Some(k), Some(n), Some(u)) = (&r.api_version, &r.kind, &r.name, &r.uid)
            else {
                return Err(());
            };
            if found.is_none() && r.controller == Some(true) {
                found = Some(OwnerRef {
                    api_version: a.to_owned_string(),
                    kind: k.to_owned_string(),
                    name: n.to_owned_string(),
                    uid: Some(u.to_owned_string()).filter(|u| !u.is_empty()),
                });
            }
        }
        Ok(found)
    }

    /// A container, an init container or an ephemeral container.
    #[derive(Debug, Default, Deserialize)]
    pub struct SlimContainer<'a> {
        #[serde(borrow)]
        pub name: Option<Text<'a>>,
        #[serde(borrow)]
        pub image: Option<Text<'a>>,
    }

    /// `imagePullSecrets[]`.
    #[derive(Debug, Default, Deserialize)]
    pub struct SlimLocalRef<'a> {
        #[serde(borrow)]
        pub name: Option<Text<'a>>,
    }

    /// A `spec` of any gated kind, or a pod spec: the pod spec fields, a pod template
    /// (`template`) and a job template (`jobTemplate`). Which ones apply depends on the kind.
    #[derive(Debug, Default, Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub struct SlimSpec<'a> {
        #[serde(borrow)]
        pub containers: Option<Vec<SlimContainer<'a>>>,
        #[serde(borrow)]
        pub init_containers: Option<Vec<SlimContainer<'a>>>,
        #[serde(borrow)]
        pub ephemeral_containers: Option<Vec<SlimContainer<'a>>>,
        #[serde(borrow)]
        pub image_pull_secrets: Option<Vec<SlimLocalRef<'a>>>,
        #[serde(borrow)]
        pub service_account_name: Option<Text<'a>>,
        #[serde(borrow)]
        pub template: Option<Box<SlimTemplate<'a>>>,
        #[serde(borrow)]
        pub job_template: Option<Box<SlimTemplate<'a>>>,
    }

    /// A pod template (`metadata`, `spec`), or a job template (its `spec` holds `template`).
    #[derive(Debug, Default, Deserialize)]
    pub struct SlimTemplate<'a> {
        #[serde(borrow)]
        pub metadata: Option<SlimMeta<'a>>,
        #[serde(borrow)]
        pub spec: Option<Box<SlimSpec<'a>>>,
    }

    /// A Kubernetes object, as far as the webhook reads it.
    #[derive(Debug, Default, Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub struct SlimObject<'a> {
        #[serde(default, borrow)]
        pub api_version: Tri<Text<'a>>,
        #[serde(default, borrow)]
        pub kind: Tri<Text<'a>>,
        #[serde(borrow)]
        pub metadata: Option<SlimMeta<'a>>,
        #[serde(borrow)]
        pub spec: Option<SlimSpec<'a>>,
    }

    fn filled<'s>(field: &'s Tri<Text<'_>>, default: Option<&'s str>) -> Option<&'s str> {
        match field {
            Tri::Absent => default,
            Tri::Null => None,
            Tri::Value(t) => Some(t.as_str()),
        }
    }

    fn strings(pairs: &Option<Pairs<'_>>) -> BTreeMap<String, String> {
        pairs
            .iter()
            .flat_map(|p| &p.0)
            .map(|(k, v)| (k.to_owned_string(), v.to_owned_string()))
            .collect()
    }

    impl<'a> SlimObject<'a> {
        /// `apiVersion`, or `default` when the object has none (as the webhook fills it from
        /// the request); `None` for an explicit null.
        pub fn api_version<'s>(&'s self, default: Option<&'s str>) -> Option<&'s str> {
            filled(&self.api_version, default)
        }

        /// `kind`, or `default` when absent; `None` for an explicit null.
        pub fn kind<'s>(&'s self, default: Option<&'s str>) -> Option<&'s str> {
            filled(&self.kind, default)
        }

        /// The pod spec at its usual place for `kind`, if present.
        pub fn pod_spec(&self, kind: Option<&str>) -> Option<&SlimSpec<'a>> {
            let spec = self.spec.as_ref()?;
            let template = match kind {
                Some("Pod") => return Some(spec),
                Some("CronJob") => spec
                    .job_template
                    .as_ref()?
                    .spec
                    .as_ref()?
                    .template
                    .as_ref()?,
                _ => spec.template.as_ref()?,
            };
            template.spec.as_deref()
        }

        /// A string annotation of the object itself.
        pub fn annotation(&self, key: &str) -> Option<&str> {
            self.metadata.as_ref()?.annotations.as_ref()?.get(key)
        }

        /// What [`extract`](super::extract) returns for this object with `apiVersion` and
        /// `kind` defaulted as given when absent; `None` when `extract` would fail (take the
        /// slow path for its error).
        pub fn workload(
            &self,
            default_api_version: Option<&str>,
            default_kind: Option<&str>,
        ) -> Option<Workload> {
            let kind = WorkloadKind::from_kind(self.kind(default_kind)?)?;
            if self.api_version(default_api_version)? != kind.api_version() {
                return None;
            }
            let spec = self.spec.as_ref()?;
            let (template_meta, pod) = match kind {
                WorkloadKind::Pod => (None, spec),
                WorkloadKind::CronJob => {
                    let job = spec.job_template.as_ref()?.spec.as_ref()?;
                    let t = job.template.as_ref()?;
                    (t.metadata.as_ref(), t.spec.as_deref()?)
                }
                _ => {
                    let t = spec.template.as_ref()?;
                    (t.metadata.as_ref(), t.spec.as_deref()?)
                }
            };
            let lists = [
                (ContainerKind::Init, pod.init_containers.as_deref()),
                (ContainerKind::Container, Some(pod.containers.as_deref()?)),
                (
                    ContainerKind::Ephemeral,
                    pod.ephemeral_containers.as_deref(),
                ),
            ];
            let count = lists.iter().map(|(_, l)| l.map_or(0, <[_]>::len)).sum();
            let mut containers = Vec::with_capacity(count);
            for (ck, list) in lists {
                for c in list.into_iter().flatten() {
                    let image = c.image.as_ref().filter(|i| !i.as_str().trim().is_empty())?;
                    containers.push(ContainerImage {
                        name: c
                            .name
                            .as_ref()
                            .map(Text::to_owned_string)
                            .unwrap_or_default(),
                        image: image.to_owned_string(),
                        kind: ck,
                    });
                }
            }
            let meta = self.metadata.as_ref();
            let text = |t: Option<&Text<'_>>| t.map(Text::to_owned_string);
            let name = text(meta.and_then(|m| m.name.as_ref()))
                .or_else(|| text(meta.and_then(|m| m.generate_name.as_ref())));
            let labels = match kind {
                WorkloadKind::Pod => meta.map(|m| strings(&m.labels)),
                _ => template_meta.map(|m| strings(&m.labels)),
            }
            .unwrap_or_default();
            let owner = controller_owner(meta.and_then(|m| m.owner_references.as_deref())).ok()?;
            Some(Workload {
                kind,
                pod_name: (kind == WorkloadKind::Pod).then(|| name.clone()).flatten(),
                name,
                namespace: text(meta.and_then(|m| m.namespace.as_ref())),
                labels,
                owner,
                containers,
            })
        }
    }

    /// Parses `bytes` as one object and returns what [`extract`](super::extract) would, when
    /// the fast view can tell; `None` otherwise.
    pub fn extract_slice(bytes: &[u8]) -> Option<Workload> {
        serde_json::from_slice::<SlimObject<'_>>(bytes)
            .ok()?
            .workload(None, None)
    }
}
