//! `POST /mutate`: digest pinning. Every tag reference of the pod spec (containers,
//! initContainers, ephemeralContainers; a Pod or any workload template) becomes
//! `REF@<digest>`, with the digest the findings lookup resolved (the registry's answer, or
//! the `digest:` of a findings index entry), so that what the validating call judges is
//! what the kubelet pulls.
//!
//! The same parse, limits, admission gate, deadline and findings cache as `/validate`
//! ([`super::review`], [`crate::verdict::lookup_images`]): a warm request looks nothing up.
//! Never a denial: a reference that already carries a digest, that cannot be parsed, that
//! `skipImages` matches, or whose digest cannot be resolved (source error, deadline, a source
//! that does not know it) is left as written, and the validating call decides on it. A
//! malformed review gets the same 400 as `/validate`.
//!
//! The answer is kube's `AdmissionResponse::with_patch` (a `json_patch::Patch`) written
//! with the patch base64-encoded, as the API server's `[]byte` field is on the wire (kube's
//! serialiser writes a list of numbers, kube-rs/kube#1781). Each replaced image is preceded
//! by a `test` of the value it replaces: a patch built from a misread object fails instead
//! of pinning the wrong container.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State as AxState;
use axum::http::{header, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use json_patch::jsonptr::PointerBuf;
use json_patch::{Patch, PatchOperation, ReplaceOperation, TestOperation};
use kube::core::admission::{AdmissionResponse, Operation};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use serde::Serialize;
use serde_json::Value;
use tokio::time::Instant;
use vulngate_core::image::is_valid_digest;
use vulngate_core::workload::{ContainerKind, WorkloadKind};
use vulngate_core::ImageRef;

use super::answer::Answer;
use super::review::{parse_review, ParseOptions, Review, ReviewObject};
use super::{deadline_for, image_set, pull_credentials};
use crate::verdict::{self, Deadline};
use crate::State;

/// The `POST /mutate` handler.
pub(crate) async fn mutate(AxState(state): AxState<Arc<State>>, uri: Uri, body: Bytes) -> Response {
    let pins = state.metrics.pins();
    let timeout = match crate::http::timeout_from_query(uri.query(), state.config.default_timeout) {
        Ok(t) => t,
        Err(e) => {
            pins.request("invalid");
            tracing::warn!(error = %e, "malformed admission request URL (mutate)");
            return bad_request(e.to_string());
        }
    };
    let rv = match parse_review(&body, &ParseOptions::new(&state)) {
        Ok(rv) => rv,
        Err(e) => {
            pins.request("invalid");
            let message = e.to_string();
            tracing::warn!(error = %message, "malformed AdmissionReview (mutate)");
            return bad_request(message);
        }
    };
    let uid = rv.uid.clone();
    let ops = match plan(&state, rv, timeout) {
        // Boxed: the lookups' and the cache's futures would otherwise sit in the handler's
        // future, which axum boxes and moves on every request (see `mutate_future_stays_small`).
        Some(plan) => Box::pin(pin(&state, plan)).await,
        None => Vec::new(),
    };
    pins.request(if ops.is_empty() {
        "unchanged"
    } else {
        "patched"
    });
    let body = if ops.is_empty() {
        Answer::allow(&uid).to_review_json()
    } else {
        patched_review_json(&uid, Patch(ops))
    };
    match body {
        Ok(body) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            body,
        )
            .into_response(),
        Err(e) => {
            tracing::error!(error = %e, "cannot serialise the AdmissionReview response (mutate)");
            (StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response()
        }
    }
}

/// The 400 of a malformed request, worded as `/validate` words it.
fn bad_request(message: String) -> Response {
    (
        StatusCode::BAD_REQUEST,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        message,
    )
        .into_response()
}

/// What [`pin`] looks up and where the results go. Boxed (see `admission::Job`).
pub(crate) struct Plan {
    uid: String,
    /// The request's namespace (non-empty), for pull secrets.
    namespace: Option<String>,
    object: ReviewObject,
    kind: WorkloadKind,
    /// The tag references to pin, in pod spec order.
    targets: Vec<Target>,
    /// The distinct images of `targets`, looked up once each.
    images: Vec<String>,
    deadline: Deadline,
}

/// One container whose image is a tag reference.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Target {
    kind: ContainerKind,
    /// Its index in its list (`containers`, `initContainers`, `ephemeralContainers`).
    index: usize,
    /// Its image: an index into [`Plan::images`].
    image: usize,
}

/// The containers of the request to pin, or None when nothing is to be done: `pinDigests`
/// off, the admission gate passes the request (operation, subresource, kind, excluded
/// namespace), the object is unreadable (the validating call applies the failure policy), an
/// UPDATE changes no image (as `/validate`), or no container runs a tag reference.
fn plan(state: &State, mut rv: Review, timeout: Duration) -> Option<Box<Plan>> {
    if !state.config.pin_digests {
        return None;
    }
    let started = Instant::now();
    let kind = ParseOptions::new(state)
        .gate(
            &rv.operation,
            rv.sub_resource.as_deref(),
            &rv.kind.kind,
            rv.namespace.as_deref(),
        )
        .ok()?;
    let mut object = rv.object.take()?;
    let wl = std::mem::replace(&mut object.workload, Err(String::new())).ok()?;
    if rv.operation == Operation::Update
        && !state.config.reevaluate_unchanged_updates
        && rv
            .old_workload
            .as_ref()
            .is_some_and(|old| image_set(old) == image_set(&wl))
    {
        return None;
    }
    let lists = pinned_lists(kind, &rv.operation, rv.sub_resource.as_deref());
    let (mut targets, mut images) = (Vec::new(), Vec::<String>::new());
    let mut seen = [0usize; 3];
    for c in wl.containers {
        let slot = list_slot(c.kind);
        let index = seen[slot];
        seen[slot] += 1;
        if !lists.contains(&c.kind) {
            continue;
        }
        // Tag references only: a digest is left alone, an unparseable reference to the
        // validating call, a skipped image is never looked up.
        if !ImageRef::parse(&c.image).is_ok_and(|r| r.digest.is_none())
            || state.is_skipped(&c.image)
        {
            continue;
        }
        let image = match images.iter().position(|i| *i == c.image) {
            Some(i) => i,
            None => {
                images.push(c.image);
                images.len() - 1
            }
        };
        targets.push(Target {
            kind: c.kind,
            index,
            image,
        });
    }
    if targets.is_empty() {
        return None;
    }
    let budget = deadline_for(timeout, state.config.deadline_margin);
    Some(Box::new(Plan {
        uid: std::mem::take(&mut rv.uid),
        namespace: rv.namespace.take().filter(|n| !n.is_empty()),
        object,
        kind,
        targets,
        images,
        deadline: Deadline {
            at: started + budget,
            budget,
            timeout,
            margin: state.config.deadline_margin,
        },
    }))
}

/// The container lists a request may change: the `ephemeralcontainers` subresource only
/// changes ephemeral containers, and a Pod's main resource never does (the API server keeps
/// them from the old Pod); every list otherwise.
fn pinned_lists(
    kind: WorkloadKind,
    operation: &Operation,
    sub_resource: Option<&str>,
) -> &'static [ContainerKind] {
    const ALL: &[ContainerKind] = &[
        ContainerKind::Init,
        ContainerKind::Container,
        ContainerKind::Ephemeral,
    ];
    match (kind, operation, sub_resource) {
        (_, _, Some(_)) => &[ContainerKind::Ephemeral],
        (WorkloadKind::Pod, Operation::Update, None) => {
            &[ContainerKind::Init, ContainerKind::Container]
        }
        _ => ALL,
    }
}

fn list_slot(kind: ContainerKind) -> usize {
    match kind {
        ContainerKind::Init => 0,
        ContainerKind::Container => 1,
        ContainerKind::Ephemeral => 2,
    }
}

/// JSON pointer tokens from the object to its pod spec.
fn pod_spec_tokens(kind: WorkloadKind) -> &'static [&'static str] {
    match kind {
        WorkloadKind::Pod => &["spec"],
        WorkloadKind::CronJob => &["spec", "jobTemplate", "spec", "template", "spec"],
        _ => &["spec", "template", "spec"],
    }
}

/// Looks the plan's images up (the findings cache first, then the source, under the
/// deadline) and returns the patch operations pinning every target whose digest is known.
async fn pin(state: &State, plan: Box<Plan>) -> Vec<PatchOperation> {
    let credentials = pull_credentials(
        state,
        plan.namespace.as_deref(),
        &plan.object,
        plan.deadline,
    )
    .await;
    let lookups =
        verdict::lookup_images(state, &plan.uid, &plan.images, plan.deadline, credentials).await;
    let pins = state.metrics.pins();
    let mut digests: Vec<Option<String>> = Vec::with_capacity(plan.images.len());
    for (img, (lookup, r)) in plan.images.iter().zip(lookups) {
        let found = match lookup {
            Some(Ok(a)) => a,
            Some(Err(f)) => {
                unresolved(&plan.uid, img, &f.detail(), f.cause());
                digests.push(None);
                continue;
            }
            None => {
                unresolved(&plan.uid, img, "lookup task failed", "error");
                digests.push(None);
                continue;
            }
        };
        let digest = match &found.digest {
            Some(d) if is_valid_digest(d) => d.clone(),
            Some(d) => {
                // From a registry header or an index file: never written into an object
                // unless it is a digest.
                tracing::warn!(uid = %plan.uid, image = %img, digest = %d.escape_debug(), "resolved digest is malformed; not pinned");
                digests.push(None);
                continue;
            }
            None => {
                unresolved(
                    &plan.uid,
                    img,
                    "the findings source knows no digest",
                    "unknown",
                );
                digests.push(None);
                continue;
            }
        };
        // The validating call looks the pinned reference up: it finds these findings.
        if let Some(r) = &r {
            state.cache.remember_pinned(r, &found).await;
        }
        digests.push(Some(digest));
    }
    let spec = pod_spec_tokens(plan.kind);
    let mut ops = Vec::with_capacity(plan.targets.len() * 2);
    for t in &plan.targets {
        let image = &plan.images[t.image];
        match &digests[t.image] {
            Some(d) => {
                pins.image("pinned");
                let mut path = PointerBuf::from_tokens(spec.iter().copied());
                path.push_back(t.kind.field());
                path.push_back(t.index);
                path.push_back("image");
                ops.push(PatchOperation::Test(TestOperation {
                    path: path.clone(),
                    value: Value::String(image.clone()),
                }));
                ops.push(PatchOperation::Replace(ReplaceOperation {
                    path,
                    value: Value::String(format!("{}@{d}", image.trim())),
                }));
            }
            None => pins.image("unresolved"),
        }
    }
    tracing::debug!(uid = %plan.uid, pinned = ops.len() / 2, images = plan.targets.len(), "digest pinning");
    ops
}

fn unresolved(uid: &str, image: &str, detail: &str, cause: &str) {
    tracing::debug!(
        uid,
        image,
        cause,
        detail,
        "digest not resolved; the image is not pinned"
    );
}

/// The AdmissionReview v1 answer allowing the request with `patch`: kube's
/// `AdmissionResponse::with_patch`, its patch written base64-encoded.
pub(crate) fn patched_review_json(uid: &str, patch: Patch) -> serde_json::Result<Vec<u8>> {
    // kube builds a response from a typed `AdmissionRequest`, which the fast parse does not
    // make; `invalid` is its only other constructor, turned into an allowed answer here.
    let mut resp = AdmissionResponse::invalid("");
    resp.uid = uid.to_string();
    resp.allowed = true;
    resp.result = kube::core::Status::default();
    let mut resp = resp
        .with_patch(patch)
        .map_err(|e| serde::ser::Error::custom(e.to_string()))?;
    let bytes = resp.patch.take().unwrap_or_default();

    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Envelope<'a> {
        api_version: &'a str,
        kind: &'a str,
        response: Wire<'a>,
    }
    #[derive(Serialize)]
    struct Wire<'a> {
        #[serde(flatten)]
        response: &'a AdmissionResponse,
        /// Base64, as the API server reads a `[]byte`.
        patch: String,
    }
    let patch = base64::engine::general_purpose::STANDARD.encode(&bytes);
    let mut buf = Vec::with_capacity(160 + uid.len() + patch.len());
    serde_json::to_writer(
        &mut buf,
        &Envelope {
            api_version: &resp.types.api_version,
            kind: &resp.types.kind,
            response: Wire {
                response: &resp,
                patch,
            },
        },
    )?;
    Ok(buf)
}

/// `vulngate_mutate_requests` and `vulngate_digest_pins` (registered by `Metrics::new`).
#[derive(Debug, Clone)]
pub struct PinMetrics {
    requests: [Counter; 3],
    images: [Counter; 2],
}

impl PinMetrics {
    const RESPONSES: [&'static str; 3] = ["patched", "unchanged", "invalid"];
    const RESULTS: [&'static str; 2] = ["pinned", "unresolved"];

    pub(crate) fn register(registry: &mut Registry) -> PinMetrics {
        let requests = Family::<Vec<(&'static str, &'static str)>, Counter>::default();
        registry.register(
            "mutate_requests",
            "Digest-pinning (/mutate) requests by response (patched, unchanged, invalid)",
            requests.clone(),
        );
        let images = Family::<Vec<(&'static str, &'static str)>, Counter>::default();
        registry.register(
            "digest_pins",
            "Tag references seen by /mutate, by result (pinned, unresolved: left as written)",
            images.clone(),
        );
        PinMetrics {
            requests: Self::RESPONSES
                .map(|r| requests.get_or_create(&vec![("response", r)]).clone()),
            images: Self::RESULTS.map(|r| images.get_or_create(&vec![("result", r)]).clone()),
        }
    }

    fn request(&self, response: &str) {
        if let Some(i) = Self::RESPONSES.iter().position(|r| *r == response) {
            self.requests[i].inc();
        }
    }

    fn image(&self, result: &str) {
        if let Some(i) = Self::RESULTS.iter().position(|r| *r == result) {
            self.images[i].inc();
        }
    }

    /// `/mutate` requests answered with `response` (patched, unchanged, invalid).
    pub fn requests(&self, response: &str) -> u64 {
        Self::RESPONSES
            .iter()
            .position(|r| *r == response)
            .map_or(0, |i| self.requests[i].get())
    }

    /// Tag references with `result` (pinned, unresolved).
    pub fn images(&self, result: &str) -> u64 {
        Self::RESULTS
            .iter()
            .position(|r| *r == result)
            .map_or(0, |i| self.images[i].get())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use json_patch::jsonptr::PointerBuf;
    use kube::core::admission::{AdmissionRequest, AdmissionReview};
    use kube::core::DynamicObject;

    use super::*;
    use crate::admission::review::tests::{review_json, workload};

    #[test]
    fn patched_answer_is_kubes_with_the_patch_in_base64() {
        let rv: AdmissionReview<DynamicObject> =
            serde_json::from_value(review_json("CREATE", &workload("Pod", &["a"]), None)).unwrap();
        let req: AdmissionRequest<DynamicObject> = rv.try_into().unwrap();
        let patch = Patch(vec![PatchOperation::Replace(ReplaceOperation {
            path: PointerBuf::from_tokens(["spec", "containers", "0", "image"]),
            value: Value::String("a@sha256:00".into()),
        })]);
        let kube = AdmissionResponse::from(&req)
            .with_patch(patch.clone())
            .unwrap()
            .into_review();
        let mut want = serde_json::to_value(&kube).unwrap();
        let ours: Value =
            serde_json::from_slice(&patched_review_json(&req.uid, patch.clone()).unwrap()).unwrap();
        // kube writes the bytes as a list of numbers; the API server's field is base64.
        let b64 = ours["response"]["patch"].as_str().unwrap();
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap();
        assert_eq!(
            want["response"]["patch"],
            serde_json::to_value(&bytes).unwrap()
        );
        assert_eq!(serde_json::from_slice::<Patch>(&bytes).unwrap(), patch);
        want["response"]["patch"] = Value::String(b64.to_string());
        assert_eq!(ours, want);
        assert_eq!(ours["response"]["patchType"], "JSONPatch");
    }

    /// As `validate_future_stays_small` (lib.rs): axum boxes and moves the handler's future.
    #[test]
    fn mutate_future_stays_small() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = crate::Config {
            data_dir: dir.path().join("data"),
            ..crate::Config::default()
        };
        let server = crate::Server::from_config(cfg).unwrap();
        let fut = mutate(
            AxState(server.state.clone()),
            Uri::from_static("/mutate"),
            Bytes::new(),
        );
        let size = std::mem::size_of_val(&fut);
        assert!(size <= 1536, "mutate's future is {size} bytes");
    }

    #[test]
    fn pinned_lists_follow_what_the_api_server_lets_a_request_change() {
        use ContainerKind::*;
        assert_eq!(
            pinned_lists(WorkloadKind::Pod, &Operation::Create, None),
            &[Init, Container, Ephemeral]
        );
        assert_eq!(
            pinned_lists(WorkloadKind::Pod, &Operation::Update, None),
            &[Init, Container]
        );
        assert_eq!(
            pinned_lists(
                WorkloadKind::Pod,
                &Operation::Update,
                Some("ephemeralcontainers")
            ),
            &[Ephemeral]
        );
        assert_eq!(
            pinned_lists(WorkloadKind::Deployment, &Operation::Update, None),
            &[Init, Container, Ephemeral]
        );
    }
}
