//! `POST /validate`: AdmissionReview v1 in, AdmissionReview v1 out.
//!
//! The HTTP layer never decides: it extracts the images, gets their findings (cache, source),
//! calls the pure engine per image, combines the outcomes, records the alerts and turns the
//! decisions into an `AdmissionResponse`. Internal errors are logged, never returned.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview, Operation};
use kube::core::{DynamicObject, Status};
use serde_json::Value;
use tokio::time::Instant;
use vulngate_core::engine::SeverityCounts;
use vulngate_core::workload::{self, Workload, WorkloadKind};
use vulngate_core::{
    evaluate, Decision, ImageRef, Outcome, RequestContext, RuleSet, Subject, UnscannedReason,
};

use crate::alerts::{Alert, AlertAction};
use crate::cache::Analyzed;
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

/// The parsed review: the request (without its objects) and the raw objects.
pub(crate) struct Review {
    pub request: AdmissionRequest<DynamicObject>,
    pub object: Option<Value>,
    pub old_object: Option<Value>,
}

/// Parses an AdmissionReview v1 body. The objects are taken out before the typed parse and
/// kept as JSON: `workload::extract` reads them with precise, path-naming errors, and an
/// object we cannot read is then answered per failure policy rather than refused.
pub(crate) fn parse_review(body: &[u8]) -> Result<Review, BadReview> {
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
    Ok(Review {
        request,
        object,
        old_object,
    })
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

/// Answers one review. Never fails: every problem becomes a response.
pub(crate) async fn review(state: &State, rv: Review, timeout: Duration) -> AdmissionResponse {
    let started = Instant::now();
    let deadline = started + deadline_for(timeout, state.config.deadline_margin);
    let req = &rv.request;
    let mut resp = AdmissionResponse::from(req);

    if !matches!(req.operation, Operation::Create | Operation::Update) {
        return resp;
    }
    if let Some(sub) = req.sub_resource.as_deref() {
        // Only the ephemeral containers subresource adds images; status, scale... do not.
        if sub != "ephemeralcontainers" {
            return resp;
        }
    }
    let kind_name = req.kind.kind.clone();
    let Some(kind) = WorkloadKind::from_kind(&kind_name) else {
        tracing::debug!(uid = %req.uid, kind = %kind_name, "kind not gated; allowed");
        return resp;
    };
    let namespace = req.namespace.clone().filter(|n| !n.is_empty());
    if let Some(ns) = &namespace {
        if state.config.excluded_namespaces.iter().any(|e| e == ns) {
            state.metrics.decision("excluded");
            return resp;
        }
    }

    // The object, as a workload.
    let Some(mut object) = rv.object else {
        return unreadable(state, resp, &kind_name, "the request carries no object");
    };
    if let Value::Object(map) = &mut object {
        // Objects in reviews carry apiVersion/kind; fill them from the request if absent.
        map.entry("apiVersion").or_insert_with(|| {
            Value::String(if req.kind.group.is_empty() {
                req.kind.version.clone()
            } else {
                format!("{}/{}", req.kind.group, req.kind.version)
            })
        });
        map.entry("kind")
            .or_insert_with(|| Value::String(kind_name.clone()));
    }
    let wl = match workload::extract(&object) {
        Ok(w) => w,
        Err(e) => return unreadable(state, resp, &kind_name, &e.to_string()),
    };
    debug_assert_eq!(wl.kind, kind);

    // UPDATE that changes no image.
    if req.operation == Operation::Update && !state.config.reevaluate_unchanged_updates {
        let old = rv
            .old_object
            .as_ref()
            .and_then(|o| workload::extract(o).ok());
        if old.is_some_and(|old| image_set(&old) == image_set(&wl)) {
            tracing::debug!(uid = %req.uid, "update changes no image; allowed");
            return resp;
        }
    }

    let break_glass = state.config.break_glass.as_ref().and_then(|b| {
        object
            .pointer("/metadata/annotations")
            .and_then(|a| a.get(&b.annotation))
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|v| !v.is_empty() && !v.eq_ignore_ascii_case("false"))
            .map(str::to_string)
    });

    let mut ctx: RequestContext = wl.to_context(state.config.cluster_name.clone());
    ctx.user = req.user_info.username.clone();
    if ctx.namespace.is_none() {
        ctx.namespace = namespace.clone();
    }
    if ctx.workload_name.is_none() && !req.name.is_empty() {
        ctx.workload_name = Some(req.name.clone());
    }

    // The images to evaluate: distinct, not skipped.
    let mut images: Vec<String> = Vec::new();
    for c in &wl.containers {
        if images.contains(&c.image) {
            continue;
        }
        if state.is_skipped(&c.image) {
            state.metrics.decision("skipped");
            continue;
        }
        images.push(c.image.clone());
    }

    // Registry credentials from the pod's pull secrets (kubernetes.pullSecrets).
    let credentials = pull_credentials(state, namespace.as_deref(), &object, deadline).await;

    // Look every image up concurrently, under one deadline. Cached images are answered in
    // place; only misses get a task (a spawn wakes another worker: tens of microseconds).
    let mut lookups: Vec<Option<Result<Arc<Analyzed>, LookupFailure>>> = vec![None; images.len()];
    let mut refs: Vec<Option<ImageRef>> = Vec::with_capacity(images.len());
    let mut tasks = tokio::task::JoinSet::new();
    for (i, img) in images.iter().enumerate() {
        match ImageRef::parse(img) {
            Ok(r) => {
                if let Some(hit) = state.cache.get_cached(&r).await {
                    refs.push(Some(r));
                    lookups[i] = Some(Ok(hit));
                    continue;
                }
                refs.push(Some(r.clone()));
                let cache = state.cache.clone();
                let credentials = credentials.clone();
                tasks.spawn(async move {
                    let res = match tokio::time::timeout_at(
                        deadline,
                        cache.get_with_credentials(&r, credentials),
                    )
                    .await
                    {
                        Ok(Ok(a)) => Ok(a),
                        Ok(Err(e)) => Err(LookupFailure::Source(e)),
                        Err(_) => Err(LookupFailure::Deadline),
                    };
                    (i, res)
                });
            }
            Err(e) => {
                refs.push(None);
                lookups[i] = Some(Err(LookupFailure::InvalidReference(e.to_string())));
            }
        }
    }
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok((i, res)) => lookups[i] = Some(res),
            Err(e) => tracing::error!(uid = %req.uid, error = %e, "lookup task failed"),
        }
    }

    // Evaluate.
    let rules = state.rules.current();
    let now = Utc::now();
    let policy = state.config.failure_policy;
    let mut evaluated: Vec<Evaluated> = Vec::with_capacity(images.len());
    for (i, img) in images.iter().enumerate() {
        let lookup = lookups[i]
            .take()
            .unwrap_or_else(|| Err(LookupFailure::Source(SourceError("task failed".into()))));
        let decision = match (lookup, &refs[i]) {
            (Ok(a), Some(r)) => {
                let pinned = match &a.digest {
                    Some(d) => r.with_digest(d),
                    None => r.clone(),
                };
                let subject = match &a.subject {
                    Ok(report) => Subject::Report(report),
                    Err(reason) => Subject::Unscanned(reason),
                };
                evaluate(&rules, state.config.precedence, &ctx, &pinned, subject, now)
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
                failed_decision(&rules, &ctx, img, r.as_ref(), &failure, policy, now, state)
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
            &ctx,
            req,
            &wl,
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
        tracing::info!(
            target: "vulngate::decision",
            uid = %req.uid,
            operation = ?req.operation,
            cluster = ctx.cluster.as_deref(),
            namespace = ctx.namespace.as_deref(),
            kind = %wl.kind,
            name = ctx.workload_name.as_deref(),
            user = ctx.user.as_deref(),
            image = %d.image,
            digest = d.digest.as_deref(),
            decision = d.decision.as_str(),
            rule = d.rule.as_deref(),
            vulnerability = d.vulnerability.as_deref(),
            reason = %d.reason,
            rules_version = %d.rules_version,
            dry_run = req.dry_run,
            break_glass = break_glass.is_some(),
            alert_id = ev.alert_id.as_deref(),
            "decision"
        );
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
        let mut ann = HashMap::new();
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
            resp = deny(resp, denials.join("; "), 403, "Forbidden");
        }
        Outcome::Audit | Outcome::Allow if !alerts_ok && !alerts.is_empty() => {
            if policy == FailurePolicy::Allow {
                warnings.push("vulngate: the alert for this request could not be recorded".into());
            } else {
                resp = deny(
                    resp,
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
    record_event(state, req, &object, &resp, break_glass.is_some());
    resp
}

/// The pod's pull-secret credentials (None when off or none); waits at most until `deadline`.
async fn pull_credentials(
    state: &State,
    namespace: Option<&str>,
    object: &Value,
    deadline: Instant,
) -> Option<Arc<vulngate_registry::Credentials>> {
    let (ps, ns) = (state.pull_secrets.as_ref()?, namespace?);
    let refs = crate::cluster::pull_secrets::PullSecretRefs::from_object(object);
    tokio::time::timeout_at(deadline, ps.credentials(ns, &refs))
        .await
        .ok()
        .flatten()
}

/// Queues a Kubernetes Event for a denied or audited request (never for dry runs or
/// break-glass; never blocks: the response is already decided).
fn record_event(
    state: &State,
    req: &AdmissionRequest<DynamicObject>,
    object: &Value,
    resp: &AdmissionResponse,
    break_glass: bool,
) {
    use crate::cluster::events::{EventSpec, Regarding, REASON_AUDITED, REASON_DENIED};
    let Some(rec) = &state.events else { return };
    if req.dry_run || break_glass {
        return;
    }
    let (reason, note) = if !resp.allowed {
        (REASON_DENIED, resp.result.message.clone())
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
    let meta = object.get("metadata");
    let text = |v: Option<&Value>| v.and_then(Value::as_str).map(str::to_string);
    let name = text(meta.and_then(|m| m.get("name")))
        .or_else(|| Some(req.name.clone()).filter(|n| !n.is_empty()))
        .or_else(|| text(meta.and_then(|m| m.get("generateName"))))
        .unwrap_or_default();
    rec.record(EventSpec {
        regarding: Regarding {
            api_version: text(object.get("apiVersion")).unwrap_or_default(),
            kind: text(object.get("kind")).unwrap_or_else(|| req.kind.kind.clone()),
            name,
            namespace: req.namespace.clone().filter(|n| !n.is_empty()),
            uid: text(meta.and_then(|m| m.get("uid"))).filter(|u| !u.is_empty()),
        },
        reason,
        action: "Admission",
        note,
    });
}

fn image_set(w: &Workload) -> BTreeSet<&str> {
    w.containers.iter().map(|c| c.image.as_str()).collect()
}

fn deny(resp: AdmissionResponse, message: String, code: u16, reason: &str) -> AdmissionResponse {
    let mut resp = resp.deny(&message);
    resp.result = Status::failure(&message, reason).with_code(code);
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
    req: &AdmissionRequest<DynamicObject>,
    wl: &Workload,
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
        kind: wl.kind.as_str().to_string(),
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
fn unreadable(
    state: &State,
    resp: AdmissionResponse,
    kind: &str,
    detail: &str,
) -> AdmissionResponse {
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
