//! The AdmissionReview parse: one typed view of the request ([`Review`]), built by the fast
//! parse (borrowed, no `Value` tree) for a well-formed review and by the slow one, which
//! words every error, otherwise; the two agree (tested field by field). The admission gate
//! ([`ParseOptions::gate`]) decides how much of the objects is read.

use kube::core::admission::{AdmissionRequest, AdmissionReview, Operation};
use kube::core::{DynamicObject, GroupVersionKind};
use serde_json::Value;
use vulngate_core::workload::{self, Workload, WorkloadKind};

use crate::cluster::pull_secrets::PullSecretRefs;
use crate::State;

pub(crate) const ADMISSION_API_VERSION: &str = "admission.k8s.io/v1";

/// A request the server refuses with HTTP 400 (not an AdmissionReview we can answer): what
/// was wrong, as a kind callers can match; the message names it for the client.
#[derive(Debug, thiserror::Error)]
pub enum BadReview {
    #[error("request body is not valid JSON: {0}")]
    NotJson(#[source] serde_json::Error),
    #[error("expected an AdmissionReview object, found {found}")]
    NotAnObject { found: &'static str },
    /// The review does not deserialise; `path` names the field (None: the whole review).
    #[error("invalid AdmissionReview{}: {message}", path.as_deref().map(|p| format!(" at {p}")).unwrap_or_default())]
    Invalid {
        path: Option<String>,
        message: String,
    },
    #[error("expected kind AdmissionReview, found {found:?}")]
    WrongKind { found: String },
    #[error("unsupported AdmissionReview apiVersion {found:?}: expected {ADMISSION_API_VERSION}")]
    UnsupportedApiVersion { found: String },
    #[error("AdmissionReview has no request")]
    NoRequest,
    #[error("AdmissionReview request.uid is empty")]
    EmptyUid,
    /// `request.kind` names one kind and the object is another: the review contradicts
    /// itself, so neither can be trusted to say what is admitted.
    #[error("AdmissionReview request.kind is {request:?} but request.object is a {object:?}")]
    KindMismatch { request: String, object: String },
}

/// Why a request is answered without evaluating its images (the admission gate).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pass {
    /// Not CREATE or UPDATE.
    Operation,
    /// A subresource other than `ephemeralcontainers` (status, scale...: no new image).
    SubResource,
    /// Not a workload kind vulngate gates.
    Kind,
    /// An excluded namespace.
    ExcludedNamespace,
}

/// What [`prepare`](super::prepare) and [`decide`](super::decide) read of an AdmissionReview: the request's fields and, for
/// a request it evaluates, what the objects say. Built by the fast parse ([`parse_review`]) or, when that
/// cannot tell, by the slow one (`serde_json::Value`, typed request, `workload::extract`),
/// which words every error; both give the same `Review` for the same body.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Review {
    pub uid: String,
    pub operation: Operation,
    pub sub_resource: Option<String>,
    pub kind: GroupVersionKind,
    pub name: String,
    /// As sent (possibly empty).
    pub namespace: Option<String>,
    pub username: Option<String>,
    /// `userInfo.groups` (for the `group` scope field and break-glass).
    pub groups: Vec<String>,
    pub dry_run: bool,
    /// The object, only for a request that is evaluated ([`ParseOptions::evaluates`]);
    /// `None` otherwise and when the request carries none.
    pub object: Option<ReviewObject>,
    /// The old object's workload when it is compared (UPDATE of an evaluated request,
    /// `reevaluateUnchangedUpdates` off) and readable.
    pub old_workload: Option<Workload>,
}

/// The object of an evaluated request (its `apiVersion` and `kind` filled from the request
/// when absent, as the API server's objects always carry them).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ReviewObject {
    /// The workload, or why it cannot be read.
    pub workload: Result<Workload, String>,
    pub api_version: Option<String>,
    pub kind: Option<String>,
    pub name: Option<String>,
    pub generate_name: Option<String>,
    pub uid: Option<String>,
    /// The break-glass annotation's value (trimmed; not empty, not `false`).
    pub break_glass: Option<String>,
    /// The pull-secret references, when pull secrets are on.
    pub pull_secrets: Option<PullSecretRefs>,
}

/// What the parse needs of the configuration to know how much of the objects to read.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct ParseOptions<'c> {
    pub excluded_namespaces: &'c [String],
    pub break_glass_annotation: Option<&'c str>,
    pub pull_secrets: bool,
    /// UPDATEs are compared with the old object (`reevaluateUnchangedUpdates` off).
    pub compare_old: bool,
}

impl<'c> ParseOptions<'c> {
    pub fn new(state: &'c State) -> ParseOptions<'c> {
        ParseOptions {
            excluded_namespaces: &state.config.excluded_namespaces,
            break_glass_annotation: state
                .config
                .break_glass
                .as_ref()
                .map(|b| b.annotation.as_str()),
            pull_secrets: state.pull_secrets.is_some(),
            compare_old: !state.config.reevaluate_unchanged_updates,
        }
    }

    /// The admission gate, the one place it is written: whether the request's images are
    /// evaluated (CREATE or UPDATE, no subresource but `ephemeralcontainers`, a gated kind,
    /// not an excluded namespace) and for which workload kind, or why not. The parse reads
    /// the objects only of a request that passes; [`prepare`](super::prepare) answers the
    /// others.
    pub fn gate(
        &self,
        operation: &Operation,
        sub_resource: Option<&str>,
        kind: &str,
        namespace: Option<&str>,
    ) -> Result<WorkloadKind, Pass> {
        if !matches!(operation, Operation::Create | Operation::Update) {
            return Err(Pass::Operation);
        }
        if sub_resource.is_some_and(|s| s != "ephemeralcontainers") {
            return Err(Pass::SubResource);
        }
        let kind = WorkloadKind::from_kind(kind).ok_or(Pass::Kind)?;
        if namespace
            .filter(|n| !n.is_empty())
            .is_some_and(|ns| self.excluded_namespaces.iter().any(|e| e == ns))
        {
            return Err(Pass::ExcludedNamespace);
        }
        Ok(kind)
    }

    fn evaluates(
        &self,
        operation: &Operation,
        sub_resource: Option<&str>,
        kind: &str,
        namespace: Option<&str>,
    ) -> bool {
        self.gate(operation, sub_resource, kind, namespace).is_ok()
    }
}

/// `group/version`, or `version` for the core group.
fn api_version_of(kind: &GroupVersionKind) -> String {
    if kind.group.is_empty() {
        kind.version.clone()
    } else {
        format!("{}/{}", kind.group, kind.version)
    }
}

fn break_glass_value(v: Option<&str>) -> Option<String> {
    v.map(str::trim)
        .filter(|v| !v.is_empty() && !v.eq_ignore_ascii_case("false"))
        .map(str::to_string)
}

/// Parses an AdmissionReview v1 body: the fast parse for a well-formed review, else the slow
/// one (same result, and the precise error for a malformed review or object). An object we
/// cannot read is answered per failure policy by [`prepare`](super::prepare) and [`decide`](super::decide), not refused.
pub(crate) fn parse_review(body: &[u8], opts: &ParseOptions<'_>) -> Result<Review, BadReview> {
    match fast::parse(body, opts) {
        Some(r) => Ok(r),
        None => parse_review_slow(body, opts),
    }
}

/// The slow parse: the body as a `Value`; the objects are taken out before the typed parse
/// of the request and read by `workload::extract` (with path-naming errors).
pub(crate) fn parse_review_slow(body: &[u8], opts: &ParseOptions<'_>) -> Result<Review, BadReview> {
    let mut v: Value = serde_json::from_slice(body).map_err(BadReview::NotJson)?;
    if !v.is_object() {
        return Err(BadReview::NotAnObject {
            found: json_type(&v),
        });
    }
    let (mut object, mut old_object) = (None, None);
    if let Some(req) = v.get_mut("request").and_then(Value::as_object_mut) {
        object = req.remove("object").filter(|o| !o.is_null());
        old_object = req.remove("oldObject").filter(|o| !o.is_null());
    }
    // Without path tracking first (it costs about as much as the deserialisation); on error,
    // again with it, for a message that names the field.
    let review: AdmissionReview<DynamicObject> = match serde::Deserialize::deserialize(&v) {
        Ok(r) => r,
        Err(_) => serde_path_to_error::deserialize(v).map_err(|e| {
            let path = e.path().to_string();
            BadReview::Invalid {
                path: (path != ".").then_some(path),
                message: e.into_inner().to_string(),
            }
        })?,
    };
    if review.types.kind != "AdmissionReview" {
        return Err(BadReview::WrongKind {
            found: review.types.kind,
        });
    }
    if review.types.api_version != ADMISSION_API_VERSION {
        return Err(BadReview::UnsupportedApiVersion {
            found: review.types.api_version,
        });
    }
    let request: AdmissionRequest<DynamicObject> =
        review.try_into().map_err(|_| BadReview::NoRequest)?;
    if request.uid.is_empty() {
        return Err(BadReview::EmptyUid);
    }
    let evaluates = opts.evaluates(
        &request.operation,
        request.sub_resource.as_deref(),
        &request.kind.kind,
        request.namespace.as_deref(),
    );
    let (mut object_out, mut old_workload) = (None, None);
    if evaluates {
        if let Some(Value::String(k)) = object.as_ref().and_then(|o| o.get("kind")) {
            if *k != request.kind.kind {
                return Err(BadReview::KindMismatch {
                    request: request.kind.kind.clone(),
                    object: k.clone(),
                });
            }
        }
        object_out = object.map(|mut object| {
            if let Value::Object(map) = &mut object {
                // Objects in reviews carry apiVersion/kind; fill them from the request if absent.
                map.entry("apiVersion")
                    .or_insert_with(|| Value::String(api_version_of(&request.kind)));
                map.entry("kind")
                    .or_insert_with(|| Value::String(request.kind.kind.clone()));
            }
            let text = |v: Option<&Value>| v.and_then(Value::as_str).map(str::to_string);
            let meta = object.get("metadata");
            ReviewObject {
                workload: read_workload(&object).map_err(|e| e.to_string()),
                api_version: text(object.get("apiVersion")),
                kind: text(object.get("kind")),
                name: text(meta.and_then(|m| m.get("name"))),
                generate_name: text(meta.and_then(|m| m.get("generateName"))),
                uid: text(meta.and_then(|m| m.get("uid"))),
                break_glass: opts.break_glass_annotation.and_then(|key| {
                    break_glass_value(
                        object
                            .pointer("/metadata/annotations")
                            .and_then(|a| a.get(key))
                            .and_then(Value::as_str),
                    )
                }),
                pull_secrets: opts
                    .pull_secrets
                    .then(|| PullSecretRefs::from_object(&object)),
            }
        });
        if opts.compare_old && request.operation == Operation::Update {
            old_workload = old_object.and_then(|o| read_workload(&o).ok());
        }
    }
    Ok(Review {
        uid: request.uid,
        operation: request.operation,
        sub_resource: request.sub_resource,
        kind: request.kind,
        name: request.name,
        namespace: request.namespace,
        username: request.user_info.username,
        groups: request.user_info.groups.unwrap_or_default(),
        dry_run: request.dry_run,
        object: object_out,
        old_workload,
    })
}
/// The workload of one object as the fast parse reads it: the fields vulngate reads, typed;
/// the others not checked (see `vulngate_core::workload::slim`). The strict reader
/// (`workload::extract`, k8s-openapi types) runs only when the slim one cannot answer, to word
/// the error. Both parses read objects this way, so they agree on every body: before, an
/// object whose unread fields were ill-typed had a workload on the fast path and none on the
/// slow one (found by the `admission_review` fuzz target).
fn read_workload(object: &Value) -> Result<Workload, workload::WorkloadError> {
    use serde::Deserialize;
    if let Ok(slim) = workload::slim::SlimObject::deserialize(object) {
        if let Some(w) = slim.workload(None, None) {
            return Ok(w);
        }
    }
    workload::extract(object)
}

/// The fast parse: the body deserialised straight into the fields [`prepare`](super::super::prepare) and [`decide`](super::super::decide)
/// read (borrowed where no unescaping is needed), no `Value` tree, no k8s-openapi objects. It answers only
/// for a well-formed review whose objects `workload::extract` reads without error, and then
/// exactly as the slow parse; anything else (an error to word, a duplicate key, an unusual
/// shape) gets `None`, and the slow parse decides. Not checked here: the types of object
/// fields vulngate does not read (see `vulngate_core::workload::slim`).
mod fast {
    use serde::de::IgnoredAny;
    use serde::Deserialize;
    use vulngate_core::workload::slim::{SlimObject, Text, Tri};

    use super::*;

    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Envelope<'a> {
        #[serde(borrow)]
        api_version: Option<Text<'a>>,
        #[serde(borrow)]
        kind: Option<Text<'a>>,
        #[serde(borrow)]
        request: Option<Request<'a>>,
        response: Option<IgnoredAny>,
    }

    /// `GroupVersionKind` (every field required, as in kube's type).
    #[derive(Deserialize)]
    struct Gvk<'a> {
        #[serde(borrow)]
        group: Text<'a>,
        #[serde(borrow)]
        version: Text<'a>,
        #[serde(borrow)]
        kind: Text<'a>,
    }

    /// `GroupVersionResource` (kube's type also reads `api_version`, a string, by that name).
    #[derive(Deserialize)]
    #[allow(dead_code)]
    struct Gvr<'a> {
        #[serde(borrow)]
        group: Text<'a>,
        #[serde(borrow)]
        version: Text<'a>,
        #[serde(borrow)]
        resource: Text<'a>,
        #[serde(default, borrow)]
        api_version: Text<'a>,
    }

    /// k8s-openapi's `UserInfo`, every field typed (`extra` checked, not kept).
    #[derive(Deserialize)]
    #[allow(dead_code)]
    struct UserInfo<'a> {
        #[serde(borrow)]
        username: Option<Text<'a>>,
        #[serde(borrow)]
        uid: Option<Text<'a>>,
        #[serde(borrow)]
        groups: Option<Vec<Text<'a>>>,
        extra: Option<StringLists>,
    }

    /// A list of strings, checked and dropped (`Vec<String>` without the vector).
    struct Strings;

    impl<'de> Deserialize<'de> for Strings {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Strings, D::Error> {
            struct V;
            impl<'de> serde::de::Visitor<'de> for V {
                type Value = Strings;
                fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                    f.write_str("a sequence of strings")
                }
                fn visit_seq<A: serde::de::SeqAccess<'de>>(
                    self,
                    mut seq: A,
                ) -> Result<Strings, A::Error> {
                    while seq.next_element::<Text<'de>>()?.is_some() {}
                    Ok(Strings)
                }
            }
            d.deserialize_seq(V)
        }
    }

    /// A map of strings to lists of strings, checked and dropped
    /// (`BTreeMap<String, Vec<String>>` without the map).
    struct StringLists;

    impl<'de> Deserialize<'de> for StringLists {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<StringLists, D::Error> {
            struct V;
            impl<'de> serde::de::Visitor<'de> for V {
                type Value = StringLists;
                fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                    f.write_str("a map of string lists")
                }
                fn visit_map<A: serde::de::MapAccess<'de>>(
                    self,
                    mut map: A,
                ) -> Result<StringLists, A::Error> {
                    while map.next_entry::<Text<'de>, Strings>()?.is_some() {}
                    Ok(StringLists)
                }
            }
            d.deserialize_map(V)
        }
    }

    /// kube's `AdmissionRequest`, every field typed as there (the objects slim).
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    #[allow(dead_code)]
    struct Request<'a> {
        #[serde(borrow)]
        uid: Text<'a>,
        #[serde(borrow)]
        kind: Gvk<'a>,
        #[serde(borrow)]
        resource: Gvr<'a>,
        #[serde(default, borrow)]
        sub_resource: Option<Text<'a>>,
        #[serde(default, borrow)]
        request_kind: Option<Gvk<'a>>,
        #[serde(default, borrow)]
        request_resource: Option<Gvr<'a>>,
        #[serde(default, borrow)]
        request_sub_resource: Option<Text<'a>>,
        #[serde(default, borrow)]
        name: Text<'a>,
        #[serde(default, borrow)]
        namespace: Option<Text<'a>>,
        operation: Operation,
        #[serde(borrow)]
        user_info: UserInfo<'a>,
        // Boxed: the objects are most of this struct's size, and the deserialiser moves the
        // struct several times on its way out.
        #[serde(default, borrow)]
        object: Option<Box<SlimObject<'a>>>,
        #[serde(default, borrow)]
        old_object: Option<Box<SlimObject<'a>>>,
        #[serde(default)]
        dry_run: bool,
        #[serde(default)]
        options: Option<IgnoredAny>,
    }

    fn owned(t: &Option<Text<'_>>) -> Option<String> {
        t.as_ref().map(Text::to_owned_string)
    }

    pub(crate) fn parse(body: &[u8], opts: &ParseOptions<'_>) -> Option<Review> {
        // The whole body is checked for UTF-8 once (std's check is word-at-a-time on ASCII),
        // then read as `str`: serde_json then skips its per-string check (about a third less
        // time for the whole parse). A body that is not UTF-8 goes to the slow path's error.
        let text = std::str::from_utf8(body).ok()?;
        let env: Envelope<'_> = serde_json::from_str(text).ok()?;
        if env.api_version?.as_str() != ADMISSION_API_VERSION
            || env.kind?.as_str() != "AdmissionReview"
            || env.response.is_some()
        {
            return None;
        }
        let req = env.request?;
        if req.uid.as_str().is_empty() {
            return None;
        }
        let kind = GroupVersionKind {
            group: req.kind.group.to_owned_string(),
            version: req.kind.version.to_owned_string(),
            kind: req.kind.kind.to_owned_string(),
        };
        let evaluates = opts.evaluates(
            &req.operation,
            req.sub_resource.as_ref().map(Text::as_str),
            &kind.kind,
            req.namespace.as_ref().map(Text::as_str),
        );
        let (mut object, mut old_workload) = (None, None);
        if evaluates {
            if let Some(o) = &req.object {
                // The request's group/version, built only for an object without apiVersion.
                let default_api =
                    matches!(o.api_version, Tri::Absent).then(|| api_version_of(&kind));
                let default_api = default_api.as_deref();
                let workload = o.workload(default_api, Some(&kind.kind))?;
                let obj_kind = o.kind(Some(&kind.kind));
                if obj_kind != Some(kind.kind.as_str()) {
                    // A kind mismatch (or an odd kind): the slow parse words it.
                    return None;
                }
                let meta = o.metadata.as_ref();
                object = Some(ReviewObject {
                    workload: Ok(workload),
                    api_version: o.api_version(default_api).map(str::to_string),
                    kind: obj_kind.map(str::to_string),
                    name: meta.and_then(|m| owned(&m.name)),
                    generate_name: meta.and_then(|m| owned(&m.generate_name)),
                    uid: meta.and_then(|m| owned(&m.uid)),
                    break_glass: opts
                        .break_glass_annotation
                        .and_then(|key| break_glass_value(o.annotation(key))),
                    pull_secrets: opts
                        .pull_secrets
                        .then(|| PullSecretRefs::from_slim(o.pod_spec(obj_kind))),
                });
            }
            if opts.compare_old && req.operation == Operation::Update {
                if let Some(old) = &req.old_object {
                    // Not filled from the request: as `workload::extract(oldObject)`.
                    old_workload = Some(old.workload(None, None)?);
                }
            }
        }
        Some(Review {
            uid: req.uid.to_owned_string(),
            operation: req.operation,
            sub_resource: owned(&req.sub_resource),
            kind,
            name: req.name.to_owned_string(),
            namespace: owned(&req.namespace),
            username: owned(&req.user_info.username),
            groups: req
                .user_info
                .groups
                .as_deref()
                .unwrap_or_default()
                .iter()
                .map(Text::to_owned_string)
                .collect(),
            dry_run: req.dry_run,
            object,
            old_workload,
        })
    }
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub(crate) mod tests {
    use serde_json::json;

    use super::*;

    pub(crate) const BREAK_GLASS: &str = "vulngate.io/break-glass";

    pub(crate) fn all_on() -> ParseOptions<'static> {
        static EXCLUDED: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
        ParseOptions {
            excluded_namespaces: EXCLUDED.get_or_init(|| vec!["kube-system".to_string()]),
            break_glass_annotation: Some(BREAK_GLASS),
            pull_secrets: true,
            compare_old: true,
        }
    }

    fn pod_spec(images: &[&str]) -> Value {
        json!({
            "serviceAccountName": "builder",
            "imagePullSecrets": [{ "name": "regcred" }, { "name": "" }, {}],
            "initContainers": [{ "name": "init", "image": "example.com/init:1" }],
            "containers": images.iter().enumerate()
                .map(|(i, im)| json!({ "name": format!("c{i}"), "image": im, "ports": [{ "containerPort": 80 }] }))
                .collect::<Vec<_>>(),
            "ephemeralContainers": [{ "name": "debug", "image": "busybox:1.36" }]
        })
    }

    /// An object of `kind` running `images` (as `tests/support`, with more pod spec fields).
    pub(crate) fn workload(kind: &str, images: &[&str]) -> Value {
        let labels = json!({ "app": "web", "tier": "a\"b" });
        let template = json!({ "metadata": { "labels": labels }, "spec": pod_spec(images) });
        let (api, spec) = match kind {
            "Pod" => ("v1", pod_spec(images)),
            "Deployment" | "ReplicaSet" | "StatefulSet" | "DaemonSet" => (
                "apps/v1",
                json!({ "replicas": 2, "selector": { "matchLabels": labels }, "template": template }),
            ),
            "Job" => ("batch/v1", json!({ "template": template })),
            "CronJob" => (
                "batch/v1",
                json!({ "schedule": "* * * * *", "jobTemplate": { "spec": { "template": template } } }),
            ),
            "ReplicationController" => ("v1", json!({ "template": template })),
            other => panic!("unknown kind {other}"),
        };
        let mut meta = json!({
            "name": "web", "namespace": "shop", "uid": "0b7f",
            "annotations": {
                BREAK_GLASS: " INC-42 ",
                "kubectl.kubernetes.io/last-applied-configuration": "{\"kind\":\"x\"}\n"
            },
            "managedFields": [{ "manager": "kubectl", "fieldsV1": { "f:spec": {} } }]
        });
        if kind == "Pod" {
            meta["labels"] = labels;
        }
        json!({ "apiVersion": api, "kind": kind, "metadata": meta, "spec": spec, "status": {} })
    }

    pub(crate) fn review_json(operation: &str, object: &Value, old: Option<&Value>) -> Value {
        let kind = object["kind"].as_str().unwrap_or("Deployment").to_string();
        let api = object["apiVersion"].as_str().unwrap_or("apps/v1");
        let (group, version) = api.split_once('/').unwrap_or(("", api));
        json!({
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "request": {
                "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
                "kind": { "group": group, "version": version, "kind": kind },
                "resource": { "group": group, "version": version, "resource": "things" },
                "requestKind": { "group": group, "version": version, "kind": kind },
                "name": "web",
                "namespace": "shop",
                "operation": operation,
                "userInfo": { "username": "alice@example.com", "uid": "1", "groups": ["system:authenticated"], "extra": { "scopes": ["a"] } },
                "object": object,
                "oldObject": old.cloned().unwrap_or(Value::Null),
                "dryRun": false,
                "options": { "apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions" }
            }
        })
    }

    /// The fast parse, when it answers, answers as the slow one; returns it.
    fn agree(body: &[u8], opts: &ParseOptions<'_>) -> Option<Review> {
        let fast = fast::parse(body, opts);
        match (&fast, parse_review_slow(body, opts)) {
            (Some(f), Ok(s)) => assert_eq!(f, &s, "{}", String::from_utf8_lossy(body)),
            (Some(_), Err(e)) => panic!(
                "fast parse accepts what the slow one refuses ({}): {}",
                e,
                String::from_utf8_lossy(body)
            ),
            (None, _) => {}
        }
        fast
    }

    pub(crate) fn bytes(v: &Value) -> Vec<u8> {
        serde_json::to_vec(v).unwrap()
    }

    /// `base`'s bytes with every `from` replaced by `to` (for duplicate keys, which a `Value`
    /// cannot hold); fails when `from` is not there.
    fn dup(base: &Value, from: &str, to: &str) -> Vec<u8> {
        let text = String::from_utf8(bytes(base)).unwrap();
        assert!(text.contains(from), "{from} not in {text}");
        text.replace(from, to).into_bytes()
    }

    const KINDS: [&str; 8] = [
        "Pod",
        "Deployment",
        "ReplicaSet",
        "StatefulSet",
        "DaemonSet",
        "Job",
        "CronJob",
        "ReplicationController",
    ];

    #[test]
    fn fast_parse_agrees_on_every_kind() {
        for kind in KINDS {
            let obj = workload(kind, &["example.com/a:1", "example.com/b:2"]);
            for opts in [all_on(), ParseOptions::default()] {
                let r = agree(&bytes(&review_json("CREATE", &obj, None)), &opts)
                    .unwrap_or_else(|| panic!("{kind}: no fast parse"));
                let o = r.object.as_ref().unwrap();
                let w = o.workload.as_ref().unwrap();
                assert_eq!(w.containers.len(), 4, "{kind}");
                if opts.pull_secrets {
                    assert_eq!(
                        o.pull_secrets.as_ref().unwrap().secrets,
                        vec!["regcred".to_string()]
                    );
                    assert_eq!(o.break_glass.as_deref(), Some("INC-42"));
                }
                // UPDATE: the old object is read too (same, other, or unreadable images).
                for old in [
                    obj.clone(),
                    workload(kind, &["example.com/c:3"]),
                    json!({ "kind": kind }),
                ] {
                    agree(&bytes(&review_json("UPDATE", &obj, Some(&old))), &opts);
                }
                let r = agree(&bytes(&review_json("UPDATE", &obj, Some(&obj))), &opts).unwrap();
                assert_eq!(r.old_workload.is_some(), opts.compare_old);
            }
        }
    }

    #[test]
    fn fast_parse_agrees_on_fixtures() {
        for body in [
            include_bytes!("../../../../examples/admission-review.json").as_slice(),
            br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"705ab4f5-6393-11e8-b7cc-42010a800002","kind":{"group":"apps","version":"v1","kind":"Deployment"},"resource":{"group":"apps","version":"v1","resource":"deployments"},"name":"web","namespace":"shop","operation":"CREATE","userInfo":{"username":"alice@example.com","groups":["system:authenticated"]},"object":{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"web","namespace":"shop","labels":{"app":"web"}},"spec":{"replicas":2,"selector":{"matchLabels":{"app":"web"}},"template":{"metadata":{"labels":{"app":"web"}},"spec":{"containers":[{"name":"web","image":"127.0.0.1:5000/bench/app@sha256:0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0","ports":[{"containerPort":8080}]}]}}}},"oldObject":null,"dryRun":false,"options":{"apiVersion":"meta.k8s.io/v1","kind":"CreateOptions"}}}"#.as_slice(),
        ] {
            for opts in [all_on(), ParseOptions::default()] {
                assert!(agree(body, &opts).is_some());
            }
        }
    }

    #[test]
    fn fast_parse_agrees_on_unusual_requests() {
        let d = workload("Deployment", &["example.com/a:1"]);
        let base = review_json("CREATE", &d, None);
        let with = |f: &dyn Fn(&mut Value)| {
            let mut v = base.clone();
            f(&mut v);
            bytes(&v)
        };
        let mut cases: Vec<Vec<u8>> = vec![
            b"{not json".to_vec(),
            b"[]".to_vec(),
            b"null".to_vec(),
            with(&|v| v["apiVersion"] = json!("admission.k8s.io/v1beta1")),
            with(&|v| v["kind"] = json!("Review")),
            with(&|v| v["response"] = json!({ "uid": "x", "allowed": true })),
            with(&|v| v["request"] = json!(null)),
            with(&|v| v["request"]["uid"] = json!("")),
            with(&|v| v["request"]["uid"] = json!(7)),
            with(&|v| v["request"]["operation"] = json!("EXPLODE")),
            with(&|v| v["request"]["dryRun"] = json!(null)),
            with(&|v| v["request"]["dryRun"] = json!(true)),
            with(&|v| v["request"]["name"] = json!(null)),
            with(&|v| v["request"]["userInfo"] = json!(null)),
            with(&|v| {
                v["request"].as_object_mut().unwrap().remove("userInfo");
            }),
            with(&|v| v["request"]["userInfo"]["groups"] = json!("x")),
            with(&|v| v["request"]["namespace"] = json!("kube-system")),
            with(&|v| v["request"]["namespace"] = json!("")),
            with(&|v| v["request"]["subResource"] = json!("status")),
            with(&|v| v["request"]["subResource"] = json!("ephemeralcontainers")),
            with(&|v| v["request"]["operation"] = json!("DELETE")),
            with(&|v| v["request"]["operation"] = json!("CONNECT")),
            with(&|v| v["request"]["kind"]["kind"] = json!("ConfigMap")),
            with(&|v| v["request"]["object"] = json!(null)),
            with(&|v| v["request"]["object"] = json!("nginx")),
            with(&|v| {
                let o = v["request"]["object"].as_object_mut().unwrap();
                o.remove("apiVersion");
                o.remove("kind");
            }),
            with(&|v| v["request"]["object"]["kind"] = json!(null)),
            with(&|v| v["request"]["object"]["apiVersion"] = json!("extensions/v1beta1")),
            with(&|v| v["request"]["object"]["kind"] = json!("Pod")),
            with(&|v| {
                v["request"]["object"]["spec"]["template"]["spec"]["containers"] = json!("nginx")
            }),
            with(&|v| {
                v["request"]["object"]["spec"]["template"]["spec"]["containers"][0]["image"] =
                    json!("")
            }),
            with(&|v| v["request"]["object"]["metadata"]["annotations"][BREAK_GLASS] = json!(1)),
            with(&|v| {
                v["request"]["object"]["metadata"]["annotations"][BREAK_GLASS] = json!("false")
            }),
            with(&|v| v["request"]["object"]["metadata"]["name"] = json!(null)),
            with(&|v| v["request"]["object"]["metadata"] = json!(null)),
        ];
        // Duplicate keys: the slow parse takes the last value.
        cases.push(
            String::from_utf8(bytes(&base))
                .unwrap()
                .replacen("\"dryRun\":false", "\"dryRun\":false,\"dryRun\":true", 1)
                .into_bytes(),
        );
        // `userInfo.groups` is kept and `extra` checked, not kept: the well-formed ones take the
        // fast parse, the others are refused by both as the slow one words it.
        let user_info = |ui: Value| with(&|v| v["request"]["userInfo"] = ui.clone());
        let good = [
            user_info(json!({ "username": "a", "groups": [] })),
            user_info(json!({ "username": "a", "groups": null, "extra": null })),
            user_info(
                json!({ "groups": ["a", "b\n\u{e9}"], "extra": { "k": ["v", "w"], "l": [] } }),
            ),
            user_info(json!({ "username": "a", "uid": "u", "extra": {} })),
            // Defaulted from the request: apiVersion alone missing.
            with(&|v| {
                v["request"]["object"]
                    .as_object_mut()
                    .unwrap()
                    .remove("apiVersion");
            }),
            // A label or annotation key twice: the last value counts, in both parses.
            dup(&base, "\"app\":\"web\"", "\"app\":\"web\",\"app\":\"shop\""),
            dup(
                &base,
                &format!("\"{BREAK_GLASS}\":\" INC-42 \""),
                &format!("\"{BREAK_GLASS}\":\" INC-42 \",\"{BREAK_GLASS}\":\"false\""),
            ),
            dup(
                &base,
                &format!("\"{BREAK_GLASS}\":\" INC-42 \""),
                &format!("\"{BREAK_GLASS}\":\"false\",\"{BREAK_GLASS}\":\"INC-7\""),
            ),
        ];
        for body in &good {
            for opts in [all_on(), ParseOptions::default()] {
                assert!(fast::parse(body, &opts).is_some());
                assert!(agree(body, &opts).is_some());
            }
        }
        let object = |i: usize| fast::parse(&good[i], &all_on()).unwrap().object.unwrap();
        let labels = object(5).workload.unwrap().labels;
        assert_eq!(labels.get("app").map(String::as_str), Some("shop"));
        assert_eq!(object(6).break_glass, None);
        assert_eq!(object(7).break_glass.as_deref(), Some("INC-7"));
        for ui in [
            json!({ "groups": [1] }),
            json!({ "groups": ["a", null] }),
            json!({ "groups": {} }),
            json!({ "extra": { "k": "v" } }),
            json!({ "extra": { "k": [1] } }),
            json!({ "extra": { "k": null } }),
            json!({ "extra": ["k"] }),
            json!({ "uid": 1 }),
        ] {
            let body = user_info(ui);
            assert!(fast::parse(&body, &all_on()).is_none());
            cases.push(body);
        }
        // Not UTF-8 inside a string vulngate never reads, and (escaped) in one it reads.
        let invalid_utf8 = String::from_utf8(bytes(&base))
            .unwrap()
            .replacen("\"CreateOptions\"", "\"Create\u{1}Options\"", 1)
            .into_bytes()
            .into_iter()
            .map(|b| if b == 1 { 0xff } else { b })
            .collect::<Vec<u8>>();
        assert!(std::str::from_utf8(&invalid_utf8).is_err());
        assert!(fast::parse(&invalid_utf8, &all_on()).is_none());
        assert!(parse_review_slow(&invalid_utf8, &all_on()).is_err());
        let escaped = String::from_utf8(bytes(&base))
            .unwrap()
            .replacen("\"alice@example.com\"", "\"al\\u00efce\\n\"", 1)
            .into_bytes();
        let parsed = agree(&escaped, &all_on()).expect("escaped strings take the fast parse");
        assert_eq!(parsed.username.as_deref(), Some("al\u{ef}ce\n"));
        assert_eq!(parsed.groups, ["system:authenticated"]);
        let groups = agree(&good[2], &all_on()).expect("fast");
        assert_eq!(groups.groups, ["a", "b\n\u{e9}"]);
        for body in &cases {
            for opts in [all_on(), ParseOptions::default()] {
                agree(body, &opts);
            }
        }
        // The fast parse answers the well-formed ones.
        for i in [11, 16, 17, 18, 19, 20, 21, 22, 23, 25, 32, 33, 34] {
            assert!(
                fast::parse(&cases[i], &all_on()).is_some(),
                "case {i}: {}",
                String::from_utf8_lossy(&cases[i])
            );
        }
    }
}
