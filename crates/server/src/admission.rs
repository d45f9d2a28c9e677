//! `POST /validate`: AdmissionReview v1 in, AdmissionReview v1 out.
//!
//! The HTTP layer never decides: it extracts the images, gets their findings (cache, source),
//! calls the pure engine per image, combines the outcomes, records the alerts and turns the
//! decisions into an `AdmissionResponse`. Internal errors are logged, never returned.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use kube::core::admission::{AdmissionRequest, AdmissionReview, Operation};
use kube::core::{DynamicObject, GroupVersionKind};
use serde::Serialize;
use serde_json::Value;
use tokio::time::Instant;
use vulngate_core::engine::SeverityCounts;
use vulngate_core::workload::{self, Workload, WorkloadKind};
use vulngate_core::{
    evaluate, evaluate_with, Decision, ImageRef, Outcome, RequestContext, RuleSet, Subject,
    UnscannedReason,
};

use crate::alerts::{Alert, AlertAction};
use crate::cache::Analyzed;
use crate::cluster::pull_secrets::PullSecretRefs;
use crate::config::{parse_duration, FailurePolicy};
use crate::source::SourceError;
use crate::State;

/// The audit annotation keys. The API server prefixes them with the webhook's name
/// (`<webhook name>/decision`), so they carry no prefix of their own.
pub const AUDIT_DECISION: &str = "decision";
pub const AUDIT_RULE: &str = "rule";
pub const AUDIT_DIGEST: &str = "digest";
pub const AUDIT_ALERT_ID: &str = "alert-id";

const ADMISSION_API_VERSION: &str = "admission.k8s.io/v1";

/// A request the server refuses with HTTP 400 (not an AdmissionReview we can answer).
#[derive(Debug)]
pub struct BadReview(pub String);

/// What [`prepare`] and [`decide`] read of an AdmissionReview: the request's fields and, for
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

    /// Whether [`prepare`] evaluates the request's images (reads its object): CREATE or
    /// UPDATE, no subresource but `ephemeralcontainers`, a gated kind, not an excluded
    /// namespace.
    fn evaluates(
        &self,
        operation: &Operation,
        sub_resource: Option<&str>,
        kind: &str,
        namespace: Option<&str>,
    ) -> bool {
        matches!(operation, Operation::Create | Operation::Update)
            && sub_resource.is_none_or(|s| s == "ephemeralcontainers")
            && WorkloadKind::from_kind(kind).is_some()
            && !namespace
                .filter(|n| !n.is_empty())
                .is_some_and(|ns| self.excluded_namespaces.iter().any(|e| e == ns))
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
/// cannot read is answered per failure policy by [`prepare`] and [`decide`], not refused.
pub(crate) fn parse_review(body: &[u8], opts: &ParseOptions<'_>) -> Result<Review, BadReview> {
    match fast::parse(body, opts) {
        Some(r) => Ok(r),
        None => parse_review_slow(body, opts),
    }
}

/// The slow parse: the body as a `Value`; the objects are taken out before the typed parse
/// of the request and read by `workload::extract` (with path-naming errors).
pub(crate) fn parse_review_slow(body: &[u8], opts: &ParseOptions<'_>) -> Result<Review, BadReview> {
    let mut v: Value = serde_json::from_slice(body)
        .map_err(|e| BadReview(format!("request body is not valid JSON: {e}")))?;
    if !v.is_object() {
        return Err(BadReview(format!(
            "expected an AdmissionReview object, found {}",
            json_type(&v)
        )));
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
            let inner = e.into_inner();
            if path == "." {
                BadReview(format!("invalid AdmissionReview: {inner}"))
            } else {
                BadReview(format!("invalid AdmissionReview at {path}: {inner}"))
            }
        })?,
    };
    if review.types.kind != "AdmissionReview" {
        return Err(BadReview(format!(
            "expected kind AdmissionReview, found {:?}",
            review.types.kind
        )));
    }
    if review.types.api_version != ADMISSION_API_VERSION {
        return Err(BadReview(format!(
            "unsupported AdmissionReview apiVersion {:?}: expected {ADMISSION_API_VERSION}",
            review.types.api_version
        )));
    }
    let request: AdmissionRequest<DynamicObject> = review
        .try_into()
        .map_err(|_| BadReview("AdmissionReview has no request".into()))?;
    if request.uid.is_empty() {
        return Err(BadReview("AdmissionReview request.uid is empty".into()));
    }
    let evaluates = opts.evaluates(
        &request.operation,
        request.sub_resource.as_deref(),
        &request.kind.kind,
        request.namespace.as_deref(),
    );
    let (mut object_out, mut old_workload) = (None, None);
    if evaluates {
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
                workload: workload::extract(&object).map_err(|e| e.to_string()),
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
            old_workload = old_object.and_then(|o| workload::extract(&o).ok());
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
        dry_run: request.dry_run,
        object: object_out,
        old_workload,
    })
}

/// The fast parse: the body deserialised straight into the fields [`prepare`] and [`decide`]
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

    /// k8s-openapi's `UserInfo`, every field typed (`groups` and `extra` checked, not kept).
    #[derive(Deserialize)]
    #[allow(dead_code)]
    struct UserInfo<'a> {
        #[serde(borrow)]
        username: Option<Text<'a>>,
        #[serde(borrow)]
        uid: Option<Text<'a>>,
        groups: Option<Strings>,
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

    pub(super) fn parse(body: &[u8], opts: &ParseOptions<'_>) -> Option<Review> {
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

/// The webhook timeout from the URL's query (`?timeout=10s`, as the API server sends it).
pub(crate) fn timeout_from_query(query: Option<&str>, default: Duration) -> Duration {
    query
        .into_iter()
        .flat_map(|q| q.split('&'))
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == "timeout")
        .and_then(|(_, v)| parse_duration(v).ok())
        .filter(|d| !d.is_zero())
        .unwrap_or(default)
}

/// The time by which every lookup must be done: the timeout minus the margin (half the
/// timeout when the margin does not fit).
pub(crate) fn deadline_for(timeout: Duration, margin: Duration) -> Duration {
    if timeout > margin {
        timeout - margin
    } else {
        timeout / 2
    }
}

/// Why an image's findings are missing after the lookup.
#[derive(Debug, Clone)]
enum LookupFailure {
    Source(SourceError),
    Deadline,
    InvalidReference(String),
}

impl LookupFailure {
    /// What may be said to the API server (no internals).
    fn public(&self) -> &'static str {
        match self {
            LookupFailure::Source(_) => "findings source unavailable",
            LookupFailure::Deadline => {
                "findings lookup did not finish before the admission deadline"
            }
            LookupFailure::InvalidReference(_) => "image reference cannot be parsed",
        }
    }

    /// The detail, for the log only.
    fn detail(&self) -> String {
        match self {
            LookupFailure::Source(e) => e.0.clone(),
            LookupFailure::Deadline => "deadline passed".into(),
            LookupFailure::InvalidReference(e) => e.clone(),
        }
    }

    fn cause(&self) -> &'static str {
        match self {
            LookupFailure::Source(_) => "error",
            LookupFailure::Deadline => "deadline",
            LookupFailure::InvalidReference(_) => "invalid-reference",
        }
    }
}

/// One evaluated image.
struct Evaluated {
    decision: Decision,
    alert_id: Option<String>,
}

/// What [`decide`] reads after [`prepare`]. Boxed: the handler's future, which
/// axum boxes and moves on every request, then holds a pointer instead of kilobytes of state
/// (5 KB before; 0.8 KB now, checked by a test in lib.rs).
pub(crate) struct Job {
    rv: Review,
    /// The request's namespace (non-empty).
    namespace: Option<String>,
    object: ReviewObject,
    kind: WorkloadKind,
    ctx: RequestContext,
    break_glass: Option<String>,
    /// The images to evaluate: distinct, not skipped.
    images: Vec<String>,
    deadline: Instant,
    resp: Answer,
}

/// What [`prepare`] leaves to do.
pub(crate) enum Prepared {
    /// Nothing to look up: the answer.
    Answered(Answer),
    /// The images to look up and evaluate.
    Evaluate(Box<Job>),
}

/// The lookup of each image of a [`Job`] (same order), and its parsed reference.
type Lookups = Vec<(
    Option<Result<Arc<Analyzed>, LookupFailure>>,
    Option<ImageRef>,
)>;

/// Looks the job's images up, evaluates them, records the alerts and answers. The second
/// step of a review, after [`prepare`] (split so that the server's handler holds no large
/// future). Never fails: every problem becomes a response.
pub(crate) async fn decide(state: &State, mut job: Box<Job>) -> Answer {
    // Registry credentials from the pod's pull secrets (kubernetes.pullSecrets).
    let credentials =
        pull_credentials(state, job.namespace.as_deref(), &job.object, job.deadline).await;
    let lookups = lookup_images(state, &job, credentials).await;
    finish(state, &mut job, lookups).await;
    job.resp
}

/// The synchronous part of a review up to the image lookups: an answer for a request that is
/// not evaluated (wrong operation or kind, excluded namespace, unreadable object, UPDATE
/// changing no image), else the job.
pub(crate) fn prepare(state: &State, mut rv: Review, timeout: Duration) -> Prepared {
    let started = Instant::now();
    let deadline = started + deadline_for(timeout, state.config.deadline_margin);
    let object = rv.object.take();
    let req = &rv;
    let resp = Answer::allow(&req.uid);

    if !matches!(req.operation, Operation::Create | Operation::Update) {
        return Prepared::Answered(resp);
    }
    if let Some(sub) = req.sub_resource.as_deref() {
        // Only the ephemeral containers subresource adds images; status, scale... do not.
        if sub != "ephemeralcontainers" {
            return Prepared::Answered(resp);
        }
    }
    let kind_name = req.kind.kind.as_str();
    let Some(kind) = WorkloadKind::from_kind(kind_name) else {
        tracing::debug!(uid = %req.uid, kind = %kind_name, "kind not gated; allowed");
        return Prepared::Answered(resp);
    };
    let namespace = req.namespace.clone().filter(|n| !n.is_empty());
    if let Some(ns) = &namespace {
        if state.config.excluded_namespaces.iter().any(|e| e == ns) {
            state.metrics.decision("excluded");
            return Prepared::Answered(resp);
        }
    }

    // The object, as a workload (read by the parse: `ParseOptions::evaluates` holds here).
    let Some(mut object) = object else {
        return Prepared::Answered(unreadable(
            state,
            resp,
            kind_name,
            "the request carries no object",
        ));
    };
    let mut wl = match std::mem::replace(&mut object.workload, Err(String::new())) {
        Ok(w) => w,
        Err(e) => return Prepared::Answered(unreadable(state, resp, kind_name, &e)),
    };
    debug_assert_eq!(wl.kind, kind);

    // UPDATE that changes no image.
    if req.operation == Operation::Update && !state.config.reevaluate_unchanged_updates {
        let old = req.old_workload.as_ref();
        if old.is_some_and(|old| image_set(old) == image_set(&wl)) {
            tracing::debug!(uid = %req.uid, "update changes no image; allowed");
            return Prepared::Answered(resp);
        }
    }

    let break_glass = state
        .config
        .break_glass
        .as_ref()
        .and(object.break_glass.clone());

    // The images to evaluate: distinct, not skipped (taken from the workload, not copied).
    let mut images: Vec<String> = Vec::with_capacity(wl.containers.len());
    for c in std::mem::take(&mut wl.containers) {
        if images.contains(&c.image) {
            continue;
        }
        if state.is_skipped(&c.image) {
            state.metrics.decision("skipped");
            continue;
        }
        images.push(c.image);
    }

    let mut ctx: RequestContext = wl.into_context(state.config.cluster_name.clone());
    if ctx.namespace.is_none() {
        ctx.namespace = namespace.clone();
    }
    if ctx.workload_name.is_none() && !req.name.is_empty() {
        ctx.workload_name = Some(req.name.clone());
    }
    // The user is read from the context from here on.
    ctx.user = rv.username.take();
    Prepared::Evaluate(Box::new(Job {
        rv,
        namespace,
        object,
        kind,
        ctx,
        break_glass,
        images,
        deadline,
        resp,
    }))
}

/// Looks every image of `job` up concurrently, under its deadline. Cached images are answered
/// in place; only misses get a task (a spawn wakes another worker: tens of microseconds).
async fn lookup_images(
    state: &State,
    job: &Job,
    credentials: Option<Arc<vulngate_registry::Credentials>>,
) -> Lookups {
    let deadline = job.deadline;
    let mut out: Lookups = Vec::with_capacity(job.images.len());
    let mut tasks = tokio::task::JoinSet::new();
    for (i, img) in job.images.iter().enumerate() {
        match ImageRef::parse(img) {
            Ok(r) => {
                // Boxed: moka's lookup future is about 800 bytes, which would otherwise sit in
                // every request's future (see `Job`).
                if let Some(hit) = Box::pin(state.cache.get_cached(&r)).await {
                    out.push((Some(Ok(hit)), Some(r)));
                    continue;
                }
                let cache = state.cache.clone();
                let credentials = credentials.clone();
                let key = r.clone();
                tasks.spawn(async move {
                    let res = match tokio::time::timeout_at(
                        deadline,
                        cache.get_with_credentials(&key, credentials),
                    )
                    .await
                    {
                        Ok(Ok(a)) => Ok(a),
                        Ok(Err(e)) => Err(LookupFailure::Source(e)),
                        Err(_) => Err(LookupFailure::Deadline),
                    };
                    (i, res)
                });
                out.push((None, Some(r)));
            }
            Err(e) => out.push((
                Some(Err(LookupFailure::InvalidReference(e.to_string()))),
                None,
            )),
        }
    }
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok((i, res)) => out[i].0 = Some(res),
            Err(e) => tracing::error!(uid = %job.rv.uid, error = %e, "lookup task failed"),
        }
    }
    out
}

/// Evaluates the looked-up images, records the alerts (before answering), logs one line per
/// image and fills `job.resp`.
async fn finish(state: &State, job: &mut Job, lookups: Lookups) {
    let Job {
        rv: req,
        object,
        kind,
        ctx,
        break_glass,
        images,
        resp,
        ..
    } = job;
    let (req, object, kind, ctx, break_glass) = (&*req, &*object, *kind, &*ctx, &*break_glass);

    // Evaluate.
    let rules = state.rules.current();
    let catalogs = state.catalogs.current();
    let now = Utc::now();
    let policy = state.config.failure_policy;
    let mut evaluated: Vec<Evaluated> = Vec::with_capacity(images.len());
    for (img, (lookup, r)) in images.iter().zip(lookups) {
        let lookup =
            lookup.unwrap_or_else(|| Err(LookupFailure::Source(SourceError("task failed".into()))));
        let decision = match (lookup, r) {
            (Ok(a), Some(mut pinned)) => {
                // Pinned to the digest the lookup resolved (in place, not copied).
                if let Some(d) = &a.digest {
                    pinned.set_digest(d);
                }
                let subject = match &a.subject {
                    Ok(report) => Subject::Report(report),
                    Err(reason) => Subject::Unscanned(reason),
                };
                evaluate_with(
                    &rules,
                    state.config.precedence,
                    ctx,
                    &pinned,
                    subject,
                    now,
                    &catalogs,
                )
            }
            (res, r) => {
                let failure = match res {
                    Err(f) => f,
                    Ok(_) => LookupFailure::InvalidReference("unparsed".into()),
                };
                state.metrics.source_failure(failure.cause());
                tracing::warn!(
                    uid = %req.uid, image = %img, cause = failure.cause(),
                    detail = %failure.detail(), policy = ?policy,
                    "findings unavailable; applying the failure policy"
                );
                failed_decision(&rules, ctx, img, r.as_ref(), &failure, policy, now, state)
            }
        };
        evaluated.push(Evaluated {
            decision,
            alert_id: None,
        });
    }

    // Alerts, recorded before answering.
    let mut alerts = Vec::new();
    for ev in &mut evaluated {
        let d = &ev.decision;
        let action = match (&break_glass, d.decision) {
            (Some(_), _) => AlertAction::BreakGlass,
            (None, Outcome::Deny) => AlertAction::Deny,
            (None, Outcome::Audit) => AlertAction::Audit,
            (None, Outcome::Allow) => continue,
        };
        let id = uuid::Uuid::now_v7().to_string();
        ev.alert_id = Some(id.clone());
        alerts.push(make_alert(
            id,
            action,
            d,
            &rules,
            ctx,
            req,
            kind,
            break_glass.clone(),
        ));
    }
    let alerts_ok = match state.alerts.record_async(alerts.clone()).await {
        Ok(()) => {
            for a in &alerts {
                state.metrics.alert_written(a.action.as_str());
            }
            true
        }
        Err(e) => {
            state.metrics.alert_failure();
            // Not silently lost: the full alerts go to the log.
            tracing::error!(
                uid = %req.uid, error = %e,
                alerts = %serde_json::to_string(&alerts).unwrap_or_default(),
                "cannot record alerts; applying the failure policy"
            );
            false
        }
    };

    // One structured log line per image decision.
    for ev in &evaluated {
        let d = &ev.decision;
        state.metrics.decision(d.decision.as_str());
        log_decision(&DecisionLine {
            uid: &req.uid,
            operation: operation_name(&req.operation),
            cluster: ctx.cluster.as_deref(),
            namespace: ctx.namespace.as_deref(),
            kind: kind.as_str(),
            name: ctx.workload_name.as_deref(),
            user: ctx.user.as_deref(),
            image: &d.image,
            digest: d.digest.as_deref(),
            decision: d.decision.as_str(),
            rule: d.rule.as_deref(),
            vulnerability: d.vulnerability.as_deref(),
            reason: &d.reason,
            rules_version: &d.rules_version,
            dry_run: req.dry_run,
            break_glass: break_glass.is_some(),
            alert_id: ev.alert_id.as_deref(),
        });
    }

    // The response.
    let combined = Outcome::combine(evaluated.iter().map(|e| e.decision.decision));
    let mut warnings = Vec::new();
    let mut denials = Vec::new();
    for ev in &evaluated {
        let d = &ev.decision;
        match (d.decision, &break_glass) {
            (Outcome::Deny, None) => denials.push(line(d, "denied")),
            (Outcome::Audit, None) => warnings.push(line(d, "audited")),
            (Outcome::Deny, Some(_)) => {
                warnings.push(format!("break-glass: {}", line(d, "would be denied")))
            }
            (Outcome::Audit, Some(_)) => {
                warnings.push(format!("break-glass: {}", line(d, "would be audited")))
            }
            (Outcome::Allow, _) => {
                if let Some(r) = failure_note(d) {
                    warnings.push(r);
                }
            }
        }
    }
    if let (Some(b), Some(bg)) = (&break_glass, &state.config.break_glass) {
        warnings.insert(
            0,
            format!(
                "vulngate: break-glass annotation {} set ({b}): allowed and recorded",
                bg.annotation
            ),
        );
    }

    let alerted: Vec<&Evaluated> = evaluated.iter().filter(|e| e.alert_id.is_some()).collect();
    if !alerted.is_empty() && alerts_ok {
        let join = |f: &dyn Fn(&Evaluated) -> Option<String>| {
            let mut seen = BTreeSet::new();
            alerted
                .iter()
                .filter_map(|e| f(e))
                .filter(|v| seen.insert(v.clone()))
                .collect::<Vec<_>>()
                .join(",")
        };
        let mut ann = BTreeMap::new();
        ann.insert(
            AUDIT_DECISION.to_string(),
            if break_glass.is_some() {
                "break-glass".to_string()
            } else {
                combined.as_str().to_string()
            },
        );
        ann.insert(AUDIT_RULE.to_string(), join(&|e| e.decision.rule.clone()));
        ann.insert(
            AUDIT_DIGEST.to_string(),
            join(&|e| e.decision.digest.clone()),
        );
        ann.insert(AUDIT_ALERT_ID.to_string(), join(&|e| e.alert_id.clone()));
        ann.retain(|_, v| !v.is_empty());
        resp.audit_annotations = ann;
    }

    let final_outcome = if break_glass.is_some() {
        Outcome::Allow
    } else {
        combined
    };
    match final_outcome {
        Outcome::Deny => {
            *resp = deny(std::mem::take(resp), denials.join("; "), 403, "Forbidden");
        }
        Outcome::Audit | Outcome::Allow if !alerts_ok && !alerts.is_empty() => {
            if policy == FailurePolicy::Allow {
                warnings.push("vulngate: the alert for this request could not be recorded".into());
            } else {
                *resp = deny(
                    std::mem::take(resp),
                    "vulngate could not record the alert for this request; try again later"
                        .to_string(),
                    503,
                    "ServiceUnavailable",
                );
            }
        }
        _ => {}
    }
    if !warnings.is_empty() {
        resp.warnings = Some(warnings);
    }
    record_event(state, req, object, resp, break_glass.is_some());
}

/// The fields of a decision log line (target `vulngate::decision`), in the order the line has;
/// `None` fields are left out.
#[derive(Debug)]
struct DecisionLine<'a> {
    uid: &'a str,
    /// As `Debug` of kube's `Operation` writes it (`Create`), as before.
    operation: &'static str,
    cluster: Option<&'a str>,
    namespace: Option<&'a str>,
    kind: &'a str,
    name: Option<&'a str>,
    user: Option<&'a str>,
    image: &'a str,
    digest: Option<&'a str>,
    decision: &'a str,
    rule: Option<&'a str>,
    vulnerability: Option<&'a str>,
    reason: &'a str,
    rules_version: &'a str,
    dry_run: bool,
    break_glass: bool,
    alert_id: Option<&'a str>,
}

fn operation_name(op: &Operation) -> &'static str {
    match op {
        Operation::Create => "Create",
        Operation::Update => "Update",
        Operation::Delete => "Delete",
        Operation::Connect => "Connect",
    }
}

/// One decision log line. With the server's own logging (`init_logging`), the JSON line is
/// written here, in the format of tracing-subscriber's JSON formatter (`timestamp`, `level`,
/// `fields` with `message` first, `target`; absent fields left out), and handed to the same
/// lossless writer thread: the same line at a fraction of the cost of the formatter. Under any
/// other subscriber, a `tracing` event as before.
fn log_decision(line: &DecisionLine<'_>) {
    if !tracing::enabled!(target: "vulngate::decision", tracing::Level::INFO) {
        return;
    }
    if let Some(writer) = crate::decision_log_writer() {
        thread_local! {
            // Reused per worker thread: no allocation per line.
            static LINE: std::cell::RefCell<Vec<u8>> =
                std::cell::RefCell::new(Vec::with_capacity(1024));
        }
        let written = LINE.with(|cell| {
            let Ok(mut buf) = cell.try_borrow_mut() else {
                return false;
            };
            buf.clear();
            decision_json(&mut buf, line, Utc::now());
            buf.push(b'\n');
            // One append: one line, never interleaved with another.
            writer.append(&buf);
            true
        });
        if written {
            return;
        }
    }
    trace_decision(line);
}

/// A decision line as a `tracing` event (any subscriber other than `init_logging`'s).
fn trace_decision(line: &DecisionLine<'_>) {
    tracing::info!(
        target: "vulngate::decision",
        uid = line.uid,
        operation = line.operation,
        cluster = line.cluster,
        namespace = line.namespace,
        kind = line.kind,
        name = line.name,
        user = line.user,
        image = line.image,
        digest = line.digest,
        decision = line.decision,
        rule = line.rule,
        vulnerability = line.vulnerability,
        reason = line.reason,
        rules_version = line.rules_version,
        dry_run = line.dry_run,
        break_glass = line.break_glass,
        alert_id = line.alert_id,
        "decision"
    );
}

/// The JSON of a decision line as tracing-subscriber's JSON formatter writes the event
/// (`timestamp` with microseconds, `level`, `fields`, `target`), without the newline.
///
/// Laid out here rather than by `serde_json::to_writer` on a derived `Serialize`: the keys
/// are constants, and the values (names, images, digests, reasons) almost never need
/// escaping, while serde_json escapes every byte of every key and value through a per-byte
/// table loop, about 7,500 instructions of a warm request's 56,000. Values are escaped by
/// serde_json when they need it ([`push_json_str`]). The test
/// `decision_line_matches_tracing_json_formatter` holds the layout to the formatter's.
fn decision_json(buf: &mut Vec<u8>, line: &DecisionLine<'_>, now: chrono::DateTime<Utc>) {
    // `,"key":` then the value; the keys need no escaping.
    fn field(buf: &mut Vec<u8>, key: &[u8], value: &str) {
        buf.extend_from_slice(key);
        push_json_str(buf, value);
    }
    fn opt(buf: &mut Vec<u8>, key: &[u8], value: Option<&str>) {
        if let Some(v) = value {
            field(buf, key, v);
        }
    }
    // chrono's RFC 3339 with microseconds is tracing's timestamp format (a hand-written
    // formatter saved about 350 instructions of 56,000 per request: not worth it).
    field(buf, b"{\"timestamp\":", &crate::alerts::rfc3339(now));
    // The event's message comes first, as tracing's JSON formatter writes it.
    buf.extend_from_slice(b",\"level\":\"INFO\",\"fields\":{\"message\":\"decision\"");
    field(buf, b",\"uid\":", line.uid);
    field(buf, b",\"operation\":", line.operation);
    opt(buf, b",\"cluster\":", line.cluster);
    opt(buf, b",\"namespace\":", line.namespace);
    field(buf, b",\"kind\":", line.kind);
    opt(buf, b",\"name\":", line.name);
    opt(buf, b",\"user\":", line.user);
    field(buf, b",\"image\":", line.image);
    opt(buf, b",\"digest\":", line.digest);
    field(buf, b",\"decision\":", line.decision);
    opt(buf, b",\"rule\":", line.rule);
    opt(buf, b",\"vulnerability\":", line.vulnerability);
    field(buf, b",\"reason\":", line.reason);
    field(buf, b",\"rules_version\":", line.rules_version);
    buf.extend_from_slice(if line.dry_run {
        b",\"dry_run\":true"
    } else {
        b",\"dry_run\":false"
    });
    buf.extend_from_slice(if line.break_glass {
        b",\"break_glass\":true"
    } else {
        b",\"break_glass\":false"
    });
    opt(buf, b",\"alert_id\":", line.alert_id);
    buf.extend_from_slice(b"},\"target\":\"vulngate::decision\"}");
}

/// Appends `s` as a JSON string, escaped exactly as serde_json escapes it (`"`, `\\` and
/// control characters below U+0020; nothing else). A string without those is copied as it
/// is; any other goes through serde_json.
fn push_json_str(buf: &mut Vec<u8>, s: &str) {
    // `fold`, not `any`: without the early exit the check compiles to vector instructions.
    let plain = s
        .bytes()
        .fold(true, |ok, b| ok & (b >= 0x20) & (b != b'"') & (b != b'\\'));
    if plain {
        buf.reserve(s.len() + 2);
        buf.push(b'"');
        buf.extend_from_slice(s.as_bytes());
        buf.push(b'"');
    } else {
        // Serialising a `str` into a `Vec` cannot fail.
        let _ = serde_json::to_writer(&mut *buf, s);
    }
}

/// The pod's pull-secret credentials (None when off or none); waits at most until `deadline`.
///
/// The lookup's future (Kubernetes API calls under a timer) is several kilobytes: it is boxed,
/// and built only when pull secrets are configured and referenced, so that the handler's
/// future, which axum boxes and moves on every request, stays small.
async fn pull_credentials(
    state: &State,
    namespace: Option<&str>,
    object: &ReviewObject,
    deadline: Instant,
) -> Option<Arc<vulngate_registry::Credentials>> {
    let (ps, ns) = (state.pull_secrets.as_ref()?, namespace?);
    let refs = object.pull_secrets.as_ref()?;
    Box::pin(tokio::time::timeout_at(deadline, ps.credentials(ns, refs)))
        .await
        .ok()
        .flatten()
}

/// Queues a Kubernetes Event for a denied or audited request (never for dry runs or
/// break-glass; never blocks: the response is already decided).
fn record_event(
    state: &State,
    req: &Review,
    object: &ReviewObject,
    resp: &Answer,
    break_glass: bool,
) {
    use crate::cluster::events::{EventSpec, Regarding, REASON_AUDITED, REASON_DENIED};
    let Some(rec) = &state.events else { return };
    if req.dry_run || break_glass {
        return;
    }
    let (reason, note) = if !resp.allowed {
        (REASON_DENIED, resp.status.message.clone())
    } else if resp
        .audit_annotations
        .get(AUDIT_DECISION)
        .map(String::as_str)
        == Some("audit")
    {
        (
            REASON_AUDITED,
            resp.warnings.clone().unwrap_or_default().join("; "),
        )
    } else {
        return;
    };
    let name = object
        .name
        .clone()
        .or_else(|| Some(req.name.clone()).filter(|n| !n.is_empty()))
        .or_else(|| object.generate_name.clone())
        .unwrap_or_default();
    rec.record(EventSpec {
        regarding: Regarding {
            api_version: object.api_version.clone().unwrap_or_default(),
            kind: object.kind.clone().unwrap_or_else(|| req.kind.kind.clone()),
            name,
            namespace: req.namespace.clone().filter(|n| !n.is_empty()),
            uid: object.uid.clone().filter(|u| !u.is_empty()),
        },
        reason,
        action: "Admission",
        note,
    });
}

fn image_set(w: &Workload) -> BTreeSet<&str> {
    w.containers.iter().map(|c| c.image.as_str()).collect()
}

fn deny(mut resp: Answer, message: String, code: u16, reason: &'static str) -> Answer {
    resp.allowed = false;
    resp.status = AnswerStatus {
        status: Some("Failure"),
        code,
        message,
        reason,
    };
    resp
}

/// `<image>@<digest>: <verb> by rule "<name>": <reason>`.
fn line(d: &Decision, verb: &str) -> String {
    let image = match &d.digest {
        Some(dg) if !d.image.contains('@') => format!("{}@{dg}", d.image),
        _ => d.image.clone(),
    };
    match &d.rule {
        Some(rule) => format!("{image}: {verb} by rule \"{rule}\": {}", d.reason),
        None => format!("{image}: {verb} by failure policy: {}", d.reason),
    }
}

/// A warning for an image allowed by the `allow` failure policy.
fn failure_note(d: &Decision) -> Option<String> {
    if d.rule.is_none() && d.unscanned.is_some() && d.reason.contains("failure policy") {
        Some(format!("{}: {}", d.image, d.reason))
    } else {
        None
    }
}

/// The decision for an image whose findings could not be obtained.
#[allow(clippy::too_many_arguments)]
fn failed_decision(
    rules: &RuleSet,
    ctx: &RequestContext,
    img: &str,
    r: Option<&ImageRef>,
    failure: &LookupFailure,
    policy: FailurePolicy,
    now: chrono::DateTime<Utc>,
    state: &State,
) -> Decision {
    let reason = UnscannedReason::RegistryUnavailable(failure.public().to_string());
    if let (FailurePolicy::Unscanned, Some(r)) = (policy, r) {
        return evaluate(
            rules,
            state.config.precedence,
            ctx,
            r,
            Subject::Unscanned(&reason),
            now,
        );
    }
    let (outcome, text) = match policy {
        FailurePolicy::Allow => (
            Outcome::Allow,
            format!("{}; allowed by the failure policy", failure.public()),
        ),
        // `unscanned` with a reference that cannot be parsed: nothing to evaluate.
        FailurePolicy::Deny | FailurePolicy::Unscanned => {
            (Outcome::Deny, failure.public().to_string())
        }
    };
    Decision {
        image: img.to_string(),
        digest: r.and_then(|r| r.digest.clone()),
        decision: outcome,
        rule: None,
        vulnerability: None,
        reason: text,
        condition: None,
        vulnerability_detail: None,
        unscanned: Some(reason),
        counts: SeverityCounts::default(),
        report: None,
        suppressed: Vec::new(),
        also_fired: Vec::new(),
        rules_version: rules.version().to_string(),
    }
}

#[allow(clippy::too_many_arguments)]
fn make_alert(
    id: String,
    action: AlertAction,
    d: &Decision,
    rules: &RuleSet,
    ctx: &RequestContext,
    req: &Review,
    kind: WorkloadKind,
    break_glass: Option<String>,
) -> Alert {
    let rule_snapshot = d.rule.as_ref().and_then(|name| {
        rules
            .rules()
            .iter()
            .find(|r| &r.name == name)
            .and_then(|r| serde_json::to_value(r.to_doc()).ok())
    });
    Alert {
        id,
        time: Utc::now(),
        action,
        origin: Default::default(),
        decision: d.decision,
        cluster: ctx.cluster.clone(),
        namespace: ctx.namespace.clone(),
        kind: kind.as_str().to_string(),
        name: ctx.workload_name.clone(),
        operation: match req.operation {
            Operation::Create => "CREATE",
            Operation::Update => "UPDATE",
            Operation::Delete => "DELETE",
            Operation::Connect => "CONNECT",
        }
        .to_string(),
        user: ctx.user.clone(),
        request_uid: req.uid.clone(),
        image: d.image.clone(),
        digest: d.digest.clone(),
        rule: d.rule.clone(),
        rule_snapshot,
        rules_version: Some(d.rules_version.clone()),
        vulnerability: d.vulnerability_detail.clone(),
        counts: d.counts,
        report: d.report.clone(),
        unscanned: d.unscanned.clone(),
        reason: d.reason.clone(),
        dry_run: req.dry_run,
        break_glass,
    }
}

/// A well-formed review whose object cannot be read: the failure policy answers (`allow`
/// allows with a warning; `deny` and `unscanned` deny, since no image can be evaluated).
fn unreadable(state: &State, resp: Answer, kind: &str, detail: &str) -> Answer {
    let message = format!("vulngate cannot read this {kind}: {detail}");
    state.metrics.decision("unreadable");
    tracing::warn!(uid = %resp.uid, kind, detail, "object unreadable; applying the failure policy");
    match state.config.failure_policy {
        FailurePolicy::Allow => {
            let mut resp = resp;
            resp.warnings = Some(vec![format!("{message}; allowed by the failure policy")]);
            resp
        }
        FailurePolicy::Deny | FailurePolicy::Unscanned => deny(resp, message, 400, "BadRequest"),
    }
}

/// The AdmissionResponse: what kube's `AdmissionResponse` serialises for a validating webhook
/// (the same fields in the same order, `status` always present), written straight to bytes.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Answer {
    pub uid: String,
    pub allowed: bool,
    pub status: AnswerStatus,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub audit_annotations: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warnings: Option<Vec<String>>,
}

/// The response's `status` (kube's `Status`; empty when allowed).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub(crate) struct AnswerStatus {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<&'static str>,
    #[serde(skip_serializing_if = "is_zero")]
    pub code: u16,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub message: String,
    #[serde(skip_serializing_if = "str::is_empty")]
    pub reason: &'static str,
}

fn is_zero(v: &u16) -> bool {
    *v == 0
}

impl Answer {
    /// Allowed, nothing to say.
    pub fn allow(uid: &str) -> Answer {
        Answer {
            uid: uid.to_string(),
            allowed: true,
            ..Answer::default()
        }
    }

    /// The AdmissionReview v1 carrying this response, as JSON.
    pub fn to_review_json(&self) -> serde_json::Result<Vec<u8>> {
        if self.allowed
            && self.status == AnswerStatus::default()
            && self.audit_annotations.is_empty()
            && self.warnings.is_none()
        {
            // The answer to almost every request: laid out directly (the derived serialiser
            // escapes every key byte by byte, about 2,000 instructions). Same bytes (tested).
            const HEAD: &[u8] =
                br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":{"uid":"#;
            const TAIL: &[u8] = br#","allowed":true,"status":{}}}"#;
            let mut buf = Vec::with_capacity(HEAD.len() + self.uid.len() + 2 + TAIL.len());
            buf.extend_from_slice(HEAD);
            push_json_str(&mut buf, &self.uid);
            buf.extend_from_slice(TAIL);
            return Ok(buf);
        }
        #[derive(Serialize)]
        #[serde(rename_all = "camelCase")]
        struct Envelope<'a> {
            api_version: &'static str,
            kind: &'static str,
            response: &'a Answer,
        }
        let extra = self.status.message.len()
            + self
                .warnings
                .iter()
                .flatten()
                .map(|w| w.len() + 4)
                .sum::<usize>()
            + self
                .audit_annotations
                .iter()
                .map(|(k, v)| k.len() + v.len() + 6)
                .sum::<usize>();
        let mut buf = Vec::with_capacity(160 + self.uid.len() + extra);
        serde_json::to_writer(
            &mut buf,
            &Envelope {
                api_version: ADMISSION_API_VERSION,
                kind: "AdmissionReview",
                response: self,
            },
        )?;
        Ok(buf)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use kube::core::admission::AdmissionResponse;
    use serde_json::json;

    use super::*;

    const BREAK_GLASS: &str = "vulngate.io/break-glass";

    fn all_on() -> ParseOptions<'static> {
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
    fn workload(kind: &str, images: &[&str]) -> Value {
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

    fn review_json(operation: &str, object: &Value, old: Option<&Value>) -> Value {
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
                e.0,
                String::from_utf8_lossy(body)
            ),
            (None, _) => {}
        }
        fast
    }

    fn bytes(v: &Value) -> Vec<u8> {
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
            include_bytes!("../../../examples/admission-review.json").as_slice(),
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
        // `userInfo.groups` and `extra` are checked, not kept: the well-formed ones take the
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

    /// The decision line written directly is the line tracing-subscriber's JSON formatter
    /// (as `init_logging` sets it up) writes for the same event: same keys in the same order,
    /// same values; only the timestamp's instant differs.
    #[test]
    fn decision_line_matches_tracing_json_formatter() {
        #[derive(Clone, Default)]
        struct Capture(Arc<std::sync::Mutex<Vec<u8>>>);
        impl std::io::Write for Capture {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let full = DecisionLine {
            uid: "705ab4f5-\"quoted\"",
            operation: "Create",
            cluster: Some("prod-1"),
            namespace: Some("shop"),
            kind: "Deployment",
            name: Some("web"),
            user: Some("alice@example.com"),
            image: "registry.example/app@sha256:00",
            digest: Some("sha256:00"),
            decision: "deny",
            rule: Some("no-critical"),
            vulnerability: Some("CVE-2021-44228"),
            reason: "1 critical or higher vulnerability (CVE-2021-44228), more than the allowed count of 0\n\u{7}",
            rules_version: "3f2a",
            dry_run: true,
            break_glass: false,
            alert_id: Some("0193"),
        };
        let sparse = DecisionLine {
            cluster: None,
            namespace: None,
            name: None,
            user: None,
            digest: None,
            rule: None,
            vulnerability: None,
            alert_id: None,
            decision: "allow",
            reason: "",
            ..full
        };
        // Every string field with what needs escaping, and what must be left as it is
        // (DEL, non-ASCII, U+2028), each in its own position.
        const T: [&str; 12] = [
            "a\\b",
            "\"q\"",
            "\u{0}\u{1f}",
            "\t\r\n",
            "\u{7f}",
            "é/ü",
            "😀",
            "\u{2028}",
            "x\"",
            "\\",
            "\u{8}\u{c}",
            "",
        ];
        let tricky = DecisionLine {
            uid: T[0],
            cluster: Some(T[1]),
            namespace: Some(T[2]),
            kind: T[3],
            name: Some(T[4]),
            user: Some(T[5]),
            image: T[6],
            digest: Some(T[7]),
            decision: T[8],
            rule: Some(T[9]),
            vulnerability: Some(T[10]),
            reason: T[11],
            rules_version: T[0],
            alert_id: Some(T[1]),
            break_glass: true,
            dry_run: false,
            ..full
        };
        for line in [&full, &sparse, &tricky] {
            let capture = Capture::default();
            let subscriber = tracing_subscriber::fmt()
                .json()
                .with_writer({
                    let c = capture.clone();
                    move || c.clone()
                })
                .with_current_span(false)
                .finish();
            tracing::subscriber::with_default(subscriber, || trace_decision(line));
            let theirs = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
            let mut ours = Vec::new();
            decision_json(&mut ours, line, Utc::now());
            let ours = String::from_utf8(ours).unwrap();
            // Same text once the timestamps' values are set aside.
            let strip = |s: &str| {
                let v: Value = serde_json::from_str(s.trim_end()).unwrap();
                let ts = v["timestamp"].as_str().unwrap().to_string();
                assert_eq!(ts.len(), "2026-11-28T16:15:16.123456Z".len(), "{ts}");
                s.trim_end().replacen(&ts, "<ts>", 1)
            };
            assert_eq!(strip(&ours), strip(&theirs));
            assert!(theirs.ends_with('\n') && !ours.contains('\n'));
        }
    }

    #[test]
    fn answer_serialises_as_kube_admission_response() {
        let rv: AdmissionReview<DynamicObject> =
            serde_json::from_value(review_json("CREATE", &workload("Pod", &["a"]), None)).unwrap();
        let req: AdmissionRequest<DynamicObject> = rv.try_into().unwrap();
        let as_value =
            |a: &Answer| -> Value { serde_json::from_slice(&a.to_review_json().unwrap()).unwrap() };
        // Allowed (laid out directly): the same bytes, with a uid that needs escaping too.
        for uid in [req.uid.as_str(), "a\"b\\c\u{1}\u{7f}é\n"] {
            let mut req = req.clone();
            req.uid = uid.to_string();
            let kube = AdmissionResponse::from(&req);
            let ours = Answer::allow(&req.uid);
            assert_eq!(
                serde_json::to_string(&kube.into_review()).unwrap(),
                String::from_utf8(ours.to_review_json().unwrap()).unwrap()
            );
        }
        // Allowed with a warning: the derived serialiser, as kube's.
        let mut kube = AdmissionResponse::from(&req);
        kube.warnings = Some(vec!["vulngate: w".into()]);
        let mut ours = Answer::allow(&req.uid);
        ours.warnings = kube.warnings.clone();
        assert_eq!(
            serde_json::to_value(kube.into_review()).unwrap(),
            as_value(&ours)
        );
        // Denied, with warnings and audit annotations.
        let mut kube = AdmissionResponse::from(&req).deny("no \"way\"");
        kube.result = kube::core::Status::failure("no \"way\"", "Forbidden").with_code(403);
        kube.warnings = Some(vec!["w1".into(), "w2".into()]);
        kube.audit_annotations = [("decision", "deny"), ("rule", "r1,r2")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let mut ours = deny(
            Answer::allow(&req.uid),
            "no \"way\"".into(),
            403,
            "Forbidden",
        );
        ours.warnings = kube.warnings.clone();
        ours.audit_annotations = kube.audit_annotations.clone().into_iter().collect();
        assert_eq!(
            serde_json::to_value(kube.into_review()).unwrap(),
            as_value(&ours)
        );
    }
}
