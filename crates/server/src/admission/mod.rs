//! `POST /validate`: AdmissionReview v1 in, AdmissionReview v1 out.
//!
//! The HTTP layer never decides. A review is parsed once ([`review`]); the admission gate
//! ([`review::ParseOptions::gate`]) says whether its images are evaluated; [`prepare`] picks
//! the images; [`decide`] looks them up and evaluates them ([`crate::verdict`]), records the
//! alerts, metrics and log lines ([`crate::record`]) and answers ([`answer`]); the Event is
//! queued last. Internal errors are logged, never returned.

pub mod answer;
mod breakglass;
pub mod limits;
pub mod mutate;
pub mod review;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State as AxState;
use axum::http::{header, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use kube::core::admission::Operation;
use tokio::time::Instant;
use vulngate_core::workload::{Workload, WorkloadKind};
use vulngate_core::RequestContext;

pub use answer::{AUDIT_ALERT_ID, AUDIT_DECISION, AUDIT_DIGEST, AUDIT_RULE};
pub use review::BadReview;

use crate::cluster::events::{EventSpec, Regarding};
use crate::config::FailurePolicy;
use crate::record::{self, Admitted};
use crate::verdict::{self, Deadline, Judge, Verdict};
use crate::State;
use answer::{deny, Answer};
use review::{parse_review, ParseOptions, Pass, Review, ReviewObject};

/// The `POST /validate` handler.
pub(crate) async fn validate(
    AxState(state): AxState<Arc<State>>,
    uri: Uri,
    body: Bytes,
) -> Response {
    let started = tokio::time::Instant::now();
    let timeout = match crate::http::timeout_from_query(uri.query(), state.config.default_timeout) {
        Ok(t) => t,
        Err(e) => {
            state
                .metrics
                .request("invalid", started.elapsed().as_secs_f64());
            tracing::warn!(error = %e, "malformed admission request URL");
            return (
                StatusCode::BAD_REQUEST,
                [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                e.to_string(),
            )
                .into_response();
        }
    };
    let rv = match parse_review(&body, &ParseOptions::new(&state)) {
        Ok(rv) => rv,
        Err(e) => {
            state
                .metrics
                .request("invalid", started.elapsed().as_secs_f64());
            let message = e.to_string();
            tracing::warn!(error = %message, "malformed AdmissionReview");
            return (
                StatusCode::BAD_REQUEST,
                [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                message,
            )
                .into_response();
        }
    };
    // Synchronous first: the future of this handler, which axum boxes and moves, stays small.
    let resp = match prepare(&state, rv, timeout) {
        Prepared::Evaluate(job) => decide(&state, job).await,
        Prepared::Answered(answer) => answer,
        Prepared::Unreadable(u) => Box::pin(record_unreadable(&state, u)).await,
    };
    state.metrics.request(
        if resp.allowed { "allowed" } else { "denied" },
        started.elapsed().as_secs_f64(),
    );
    match resp.to_review_json() {
        Ok(body) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            body,
        )
            .into_response(),
        Err(e) => {
            tracing::error!(error = %e, "cannot serialise the AdmissionReview response");
            (StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response()
        }
    }
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

/// What [`decide`] reads after [`prepare`]. Boxed: the handler's future, which
/// axum boxes and moves on every request, then holds a pointer instead of kilobytes of state
/// (5 KB before; 0.8 KB now, checked by a test in lib.rs).
pub(crate) struct Job {
    rv: Review,
    /// The request's namespace (non-empty).
    namespace: Option<String>,
    object: ReviewObject,
    kind: WorkloadKind,
    /// The admitted object's name (the context's workload is its top owner).
    object_name: Option<String>,
    ctx: RequestContext,
    break_glass: Option<String>,
    /// The warning of a refused break-glass annotation.
    break_glass_refused: Option<String>,
    /// The images to evaluate: distinct, not skipped.
    images: Vec<String>,
    deadline: Deadline,
    resp: Answer,
}

/// What [`prepare`] leaves to do.
pub(crate) enum Prepared {
    /// Nothing to look up: the answer.
    Answered(Answer),
    /// The images to look up and evaluate.
    Evaluate(Box<Job>),
    /// The failure policy's answer for an unreadable object, once its alert is recorded.
    Unreadable(Box<(Answer, record::Unreadable)>),
}

/// Records the alert of an unreadable object's answer; when the store cannot take it, an
/// allowed answer says so in a warning (a denied one stays denied).
async fn record_unreadable(state: &State, u: Box<(Answer, record::Unreadable)>) -> Answer {
    let (mut resp, u) = *u;
    if !record::unreadable(state, u).await && resp.allowed {
        resp.warnings
            .get_or_insert_with(Vec::new)
            .push("vulngate: the alert for this request could not be recorded".into());
    }
    resp
}

/// Looks the job's images up, evaluates them, records what is to be recorded and answers.
/// The second step of a review, after [`prepare`] (split so that the server's handler holds
/// no large future). Never fails: every problem becomes a response.
pub(crate) async fn decide(state: &State, mut job: Box<Job>) -> Answer {
    // Registry credentials from the pod's pull secrets (kubernetes.pullSecrets).
    let credentials =
        pull_credentials(state, job.namespace.as_deref(), &job.object, job.deadline).await;
    let lookups =
        verdict::lookup_images(state, &job.rv.uid, &job.images, job.deadline, credentials).await;

    let Job {
        rv,
        object,
        kind,
        object_name,
        ctx,
        break_glass,
        break_glass_refused,
        images,
        resp,
        deadline,
        ..
    } = &mut *job;
    // The store is waited for until the lookup deadline at most (then the journal).
    let store_deadline = deadline.at;
    let (rv, object, kind, ctx) = (&*rv, &*object, *kind, &*ctx);

    // Evaluate.
    let rules = state.rules.current();
    let policy = state.config.failure_policy;
    let catalogs = state.catalogs.current();
    let judge = Judge {
        catalogs: &catalogs,
        rules: &rules,
        precedence: state.config.precedence,
        ctx,
        now: Utc::now(),
        policy,
        pin_resolved: true,
        max_violations: state.config.alert_writer.max_violations,
    };
    let mut verdicts: Vec<Verdict> = images
        .iter()
        .zip(lookups)
        .map(|(img, (lookup, r))| {
            let v = judge.verdict(img, lookup, r);
            if let Some(failure) = &v.failure {
                state.metrics.source_failure(failure.cause());
                tracing::warn!(
                    uid = %rv.uid, image = %img, cause = failure.cause(),
                    detail = %failure.detail(), policy = ?policy,
                    "findings unavailable; applying the failure policy"
                );
            }
            v
        })
        .collect();

    // Alerts (before answering), metrics, decision lines.
    let recorded = record::admission(
        state,
        &Admitted {
            uid: &rv.uid,
            operation: &rv.operation,
            kind,
            name: object_name.as_deref(),
            ctx,
            dry_run: rv.dry_run,
            break_glass: break_glass.as_deref(),
            deadline: Some(store_deadline),
        },
        &mut verdicts,
    )
    .await;

    state
        .metrics
        .lookup_warnings(verdicts.iter().map(|v| v.warnings.len()).sum());
    // The top workload and the object admitted, when they differ: named by the answer (and
    // so by the Event's note) as by the alert. Only worded when the answer says something
    // about a decision (the warm allow path formats nothing).
    let says = verdicts
        .iter()
        .any(|v| v.decision.decision != vulngate_core::Outcome::Allow || v.failure.is_some());
    let subject = says
        .then(|| record::admitted_subject(kind, object_name.as_deref(), ctx))
        .flatten();
    answer::respond(
        resp,
        &verdicts,
        &recorded,
        subject.as_deref(),
        break_glass.as_deref(),
        state.config.break_glass.as_ref(),
        policy,
    );
    if let Some(w) = break_glass_refused.take() {
        resp.warnings.get_or_insert_with(Vec::new).insert(0, w);
    }

    // The Event for a denied or audited request (never for dry runs or break-glass).
    if !rv.dry_run && break_glass.is_none() {
        if let Some((reason, note)) = answer::event_note(resp) {
            record::event(
                state,
                EventSpec {
                    regarding: regarding(rv, object),
                    reason,
                    action: "Admission",
                    note,
                },
            );
        }
    }
    std::mem::take(&mut job.resp)
}

/// The object an admission Event is about.
fn regarding(req: &Review, object: &ReviewObject) -> Regarding {
    let name = object
        .name
        .clone()
        .or_else(|| Some(req.name.clone()).filter(|n| !n.is_empty()))
        .or_else(|| object.generate_name.clone())
        .unwrap_or_default();
    Regarding {
        api_version: object.api_version.clone().unwrap_or_default(),
        kind: object.kind.clone().unwrap_or_else(|| req.kind.kind.clone()),
        name,
        namespace: req.namespace.clone().filter(|n| !n.is_empty()),
        uid: object.uid.clone().filter(|u| !u.is_empty()),
    }
}

/// The synchronous part of a review up to the image lookups: an answer for a request that is
/// not evaluated (the gate: wrong operation or kind, excluded namespace; an unreadable
/// object; an UPDATE changing no image), else the job.
pub(crate) fn prepare(state: &State, mut rv: Review, timeout: Duration) -> Prepared {
    let started = Instant::now();
    let budget = deadline_for(timeout, state.config.deadline_margin);
    let deadline = Deadline {
        at: started + budget,
        budget,
        timeout,
        margin: state.config.deadline_margin,
    };
    let object = rv.object.take();
    let req = &rv;
    let resp = Answer::allow(&req.uid);

    let kind_name = req.kind.kind.as_str();
    let kind = match ParseOptions::new(state).gate(
        &req.operation,
        req.sub_resource.as_deref(),
        kind_name,
        req.namespace.as_deref(),
    ) {
        Ok(kind) => kind,
        Err(Pass::Kind) => {
            tracing::debug!(uid = %req.uid, kind = %kind_name, "kind not gated; allowed");
            return Prepared::Answered(resp);
        }
        Err(Pass::ExcludedNamespace) => {
            state.metrics.decision("excluded");
            return Prepared::Answered(resp);
        }
        Err(Pass::Operation | Pass::SubResource) => return Prepared::Answered(resp),
    };
    let namespace = req.namespace.clone().filter(|n| !n.is_empty());

    // The object, as a workload (read by the parse: the gate passed).
    let Some(mut object) = object else {
        return unreadable(state, req, resp, "the request carries no object");
    };
    let mut wl = match std::mem::replace(&mut object.workload, Err(String::new())) {
        Ok(w) => w,
        Err(e) => return unreadable(state, req, resp, &e),
    };

    // UPDATE that changes no image.
    if req.operation == Operation::Update && !state.config.reevaluate_unchanged_updates {
        let old = req.old_workload.as_ref();
        if old.is_some_and(|old| image_set(old) == image_set(&wl)) {
            tracing::debug!(uid = %req.uid, "update changes no image; allowed");
            return Prepared::Answered(resp);
        }
    }

    // The images to evaluate: distinct (linear), not skipped, at most maxImagesPerRequest
    // (taken from the workload, not copied).
    let images = limits::distinct_images(std::mem::take(&mut wl.containers), |image| {
        let skipped = state.is_skipped(image);
        if skipped {
            state.metrics.decision("skipped");
        }
        skipped
    });
    let cap = state.config.max_images_per_request;
    if images.len() > cap {
        state.metrics.guard().over_image_limit();
        let message = limits::too_many_images_message(kind_name, images.len(), cap);
        return by_failure_policy(
            state,
            req,
            resp,
            message,
            "over-image-limit",
            403,
            "Forbidden",
        );
    }

    let (break_glass, break_glass_refused) = match breakglass::judge(
        state,
        breakglass::Requester {
            uid: &req.uid,
            user: req.username.as_deref(),
            groups: &req.groups,
            namespace: namespace.as_deref(),
            name: &req.name,
        },
        object.break_glass.take(),
    ) {
        breakglass::BreakGlass::Absent => (None, None),
        breakglass::BreakGlass::Accepted(j) => (Some(j), None),
        breakglass::BreakGlass::Refused(w) => (None, Some(w)),
    };

    // The object's own name, then its top workload (the `deployment` scope field), resolved
    // as the re-evaluation resolves it (`vulngate_core::owner`), confirmed by the watch cache.
    let object_name = wl
        .name
        .clone()
        .or_else(|| Some(req.name.clone()).filter(|n| !n.is_empty()));
    if wl.namespace.is_none() {
        wl.namespace = namespace.clone();
    }
    let lookup = state
        .owners
        .as_deref()
        .map(|c| c as &dyn vulngate_core::owner::OwnerLookup);
    let (mut ctx, _top): (RequestContext, _) =
        wl.into_context_with(state.config.cluster_name.clone(), lookup);
    if ctx.workload_name.is_none() {
        ctx.workload_name = object_name.clone();
    }
    // The user and groups are read from the context from here on.
    ctx.user = rv.username.take();
    ctx.groups = std::mem::take(&mut rv.groups);
    Prepared::Evaluate(Box::new(Job {
        rv,
        namespace,
        object,
        kind,
        object_name,
        ctx,
        break_glass,
        break_glass_refused,
        images,
        deadline,
        resp,
    }))
}

/// The pod's pull-secret credentials (None when off or none); waits at most until the
/// deadline.
///
/// The lookup's future (Kubernetes API calls under a timer) is several kilobytes: it is boxed,
/// and built only when pull secrets are configured and referenced, so that the handler's
/// future, which axum boxes and moves on every request, stays small.
async fn pull_credentials(
    state: &State,
    namespace: Option<&str>,
    object: &ReviewObject,
    deadline: Deadline,
) -> Option<Arc<vulngate_registry::Credentials>> {
    let (ps, ns) = (state.pull_secrets.as_ref()?, namespace?);
    let refs = object.pull_secrets.as_ref()?;
    match Box::pin(tokio::time::timeout_at(
        deadline.at,
        ps.credentials(ns, refs),
    ))
    .await
    {
        Ok(c) => c,
        Err(_) => {
            tracing::warn!(
                namespace = %ns,
                "{}; the images are looked up without them",
                deadline.describe("reading the pull-secret credentials")
            );
            None
        }
    }
}

fn image_set(w: &Workload) -> BTreeSet<&str> {
    w.containers.iter().map(|c| c.image.as_str()).collect()
}

/// A well-formed review whose object cannot be read: the failure policy answers (see
/// [`by_failure_policy`]).
fn unreadable(state: &State, req: &Review, resp: Answer, detail: &str) -> Prepared {
    let kind = req.kind.kind.as_str();
    let message = format!("vulngate cannot read this {kind}: {detail}");
    by_failure_policy(state, req, resp, message, "unreadable", 400, "BadRequest")
}

/// A review whose images are not evaluated (unreadable object, more images than
/// `maxImagesPerRequest`): the failure policy answers (`allow` allows with a warning; `deny`
/// and `unscanned` deny with `code`, since no image is evaluated), and the decision leaves
/// one alert. `outcome` labels the decision metric.
fn by_failure_policy(
    state: &State,
    req: &Review,
    resp: Answer,
    message: String,
    outcome: &str,
    code: u16,
    reason: &'static str,
) -> Prepared {
    state.metrics.decision(outcome);
    let allowed = state.config.failure_policy == FailurePolicy::Allow;
    tracing::warn!(
        uid = %resp.uid, kind = %req.kind.kind, message = %message, allowed,
        "images not evaluated; applying the failure policy"
    );
    let resp = if allowed {
        let mut resp = resp;
        resp.warnings = Some(vec![format!("{message}; allowed by the failure policy")]);
        resp
    } else {
        deny(resp, message.clone(), code, reason)
    };
    Prepared::Unreadable(Box::new((
        resp,
        record::Unreadable {
            uid: req.uid.clone(),
            operation: req.operation.clone(),
            kind: req.kind.kind.clone(),
            namespace: req.namespace.clone().filter(|n| !n.is_empty()),
            name: Some(req.name.clone()).filter(|n| !n.is_empty()),
            user: req.username.clone(),
            dry_run: req.dry_run,
            reason: message,
            allowed,
        },
    )))
}
