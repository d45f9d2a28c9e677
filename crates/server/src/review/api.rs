//! The review REST API (`/api/v1/...`) and its OpenAPI document (`/api/openapi.json`,
//! generated from these handlers with utoipa). Every answer is JSON; every refusal is an
//! [`ApiError`](super::query::ApiError).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Path, Query, State as AxState};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::Utc;
use serde::{Deserialize, Serialize};
use utoipa::OpenApi;
use vulngate_core::engine::{Firing, SeverityCounts, Violation};
use vulngate_core::workload::{extract, parse_manifests};
use vulngate_core::{Outcome, RequestContext, Rule, RuleSet, UnscannedReason};

use super::auth::{bearer_token, Principal};
use super::kubernetes_auth::{self as kauth, Visible};
use super::query::{encode_cursor, filter_from_pairs, shorten, ApiError, ErrorBody};
use super::{Ctx, Role};
use crate::alerts::{Alert, AlertError, AlertFilter, Cursor, ReviewChange, ReviewState};
use crate::verdict::{lookup_images, Deadline, Judge, Verdict};

/// Longest review comment, in characters.
pub const MAX_COMMENT_CHARS: usize = 4096;

pub(crate) fn routes() -> Router<Arc<Ctx>> {
    Router::new()
        .route("/api/v1/alerts", get(list_alerts))
        .route("/api/v1/alerts/{id}", get(get_alert))
        .route("/api/v1/alerts/{id}/{change}", post(change_state))
        .route("/api/v1/rules", get(list_rules))
        .route("/api/v1/evaluate", post(evaluate))
        .route("/api/openapi.json", get(openapi))
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "vulngate review API",
        description = "Alerts raised by vulngate's admission webhook and re-evaluation: list, read, \
                       acknowledge, resolve, reopen; the rules in force; what-if evaluation; \
                       the notification outbox (dead-lettered notifications, retry). \
                       Authenticate with `Authorization: Bearer TOKEN` (review.tokens, or a \
                       Kubernetes token with review.kubernetes: access reviews on \
                       alerts.vulngate.io in the alert's namespace)."
    ),
    paths(
        list_alerts, get_alert, change_state, list_rules, evaluate, openapi,
        super::notifications::list_notifications, super::notifications::retry_notification
    ),
    components(schemas(
        AlertPage, AlertSchema, CommentBody, RulesAnswer, RuleStatus, EvaluateRequest,
        EvaluateAnswer, ImageVerdict, ErrorBody, super::notifications::NotificationPage,
        super::notifications::NotificationSchema
    )),
    modifiers(&BearerAuth),
    security(("bearer" = []))
)]
pub(crate) struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let c = openapi.components.get_or_insert_with(Default::default);
        c.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The caller of an API request: a static token (`review.tokens`), else with
/// `review.kubernetes` a token the API server authenticates; 401 otherwise (503 when the API
/// server does not answer).
pub(crate) async fn caller(ctx: &Ctx, headers: &HeaderMap) -> Result<Principal, ApiError> {
    let token = bearer_token(headers).ok_or_else(ApiError::unauthorized)?;
    token_principal(ctx, token).await
}

/// The owner of `token`: a static token, else (with `review.kubernetes`) a Kubernetes user.
pub(crate) async fn token_principal(ctx: &Ctx, token: &str) -> Result<Principal, ApiError> {
    if let Some(p) = ctx.review.auth.token(token) {
        return Ok(p);
    }
    match &ctx.review.kubernetes {
        Some(k) => k.principal(token).await,
        None => Err(ApiError::unauthorized()),
    }
}

/// Runs a store call off the async workers.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, AlertError> + Send + 'static,
) -> Result<T, ApiError> {
    match tokio::task::spawn_blocking(f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(ApiError::store(&e)),
        Err(e) => Err(ApiError::store(&AlertError::Other(e.to_string()))),
    }
}

/// One page of alerts, newest first.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct AlertPage {
    #[schema(value_type = Vec<AlertSchema>)]
    pub items: Vec<Alert>,
    /// The cursor of the next page (`?cursor=`); null on the last page.
    pub next: Option<String>,
}

/// An alert (the fields `vulngate alerts show --output json` prints): id, time, action,
/// origin, decision, cluster, namespace, kind, name, operation, user, requestUid, image,
/// digest, rule, ruleSnapshot, rulesVersion, vulnerability, counts, report, unscanned,
/// reason, dryRun, breakGlass, violations (each marked `deciding` or not, with `report`),
/// violationsTotal, alsoFired, state (`open`, `acknowledged`, `resolved`) and history
/// (`{time, by, from, to, comment}`, only on `GET /api/v1/alerts/{id}`).
#[derive(utoipa::ToSchema)]
#[schema(value_type = Object)]
#[allow(dead_code)]
pub(crate) struct AlertSchema(serde_json::Value);

/// A review change's reason.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CommentBody {
    /// Why (at most 4096 characters).
    #[serde(default)]
    pub comment: String,
}

/// Lists alerts: filters (all must match), newest first, `limit` (default 50, at most
/// 500) per page; `next` is the cursor of the following page.
#[utoipa::path(
    get,
    path = "/api/v1/alerts",
    params(
        ("namespace" = Option<String>, Query, description = "exact namespace"),
        ("workload" = Option<String>, Query, description = "exact workload (object) name"),
        ("image" = Option<String>, Query, description = "substring of the image reference"),
        ("rule" = Option<String>, Query, description = "deciding rule"),
        ("action" = Option<String>, Query, description = "audit, deny or break-glass"),
        ("cve" = Option<String>, Query, description = "vulnerability id or alias among the violations"),
        ("state" = Option<String>, Query, description = "open, acknowledged or resolved"),
        ("since" = Option<String>, Query, description = "RFC 3339 time, or a duration back from now (24h, 7d)"),
        ("cursor" = Option<String>, Query, description = "the previous page's next"),
        ("limit" = Option<usize>, Query, description = "1 to 500, default 50"),
    ),
    responses(
        (status = 200, body = AlertPage),
        (status = 400, body = ErrorBody, description = "bad filter or cursor"),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody, description = "a Kubernetes caller without list on alerts in that namespace"),
        (status = 503, body = ErrorBody, description = "the alert store or the Kubernetes API server does not answer"),
    )
)]
pub(crate) async fn list_alerts(
    AxState(ctx): AxState<Arc<Ctx>>,
    headers: HeaderMap,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Json<AlertPage>, ApiError> {
    let who = caller(&ctx, &headers).await?;
    let Query(pairs) = query.map_err(|e| ApiError::bad("bad-filter", e.body_text()))?;
    let filter = filter_from_pairs(&pairs, false)?;
    Ok(Json(scoped_page(&ctx, &who, filter).await?))
}

/// One page for `filter` of the alerts `who` may list ([`kauth::visible`]): for a caller
/// restricted to some namespaces, the newest of each namespace's page, merged.
pub(crate) async fn scoped_page(
    ctx: &Ctx,
    who: &Principal,
    filter: AlertFilter,
) -> Result<AlertPage, ApiError> {
    match kauth::visible(ctx, who, filter.namespace.as_deref()).await? {
        Visible::All => page(ctx, filter).await,
        Visible::Namespaces(namespaces) => {
            let limit = filter.limit.unwrap_or(super::DEFAULT_PAGE);
            let store = ctx.state.alerts.clone();
            let mut items = blocking(move || {
                let mut all = Vec::new();
                for ns in namespaces {
                    all.extend(store.list(&AlertFilter {
                        namespace: Some(ns),
                        limit: Some(limit + 1),
                        ..filter.clone()
                    })?);
                }
                // The stores' order: newest first, then the greater id.
                all.sort_by(|a, b| (b.time, &b.id).cmp(&(a.time, &a.id)));
                Ok(all)
            })
            .await?;
            let next = if items.len() > limit {
                items.truncate(limit);
                items.last().map(|a| encode_cursor(&Cursor::after(a)))
            } else {
                None
            };
            Ok(AlertPage { items, next })
        }
    }
}

/// The counts by review state for `filter` of the alerts `who` may list.
pub(crate) async fn scoped_counts(
    ctx: &Ctx,
    who: &Principal,
    filter: AlertFilter,
) -> Result<Vec<(ReviewState, u64)>, ApiError> {
    let visible = kauth::visible(ctx, who, filter.namespace.as_deref()).await?;
    let store = ctx.state.alerts.clone();
    blocking(move || match visible {
        Visible::All => store.count_by_state(&filter),
        Visible::Namespaces(namespaces) => {
            let mut sum: Vec<(ReviewState, u64)> =
                ReviewState::ALL.iter().map(|s| (*s, 0)).collect();
            for ns in namespaces {
                let counts = store.count_by_state(&AlertFilter {
                    namespace: Some(ns),
                    ..filter.clone()
                })?;
                for (state, n) in counts {
                    if let Some(slot) = sum.iter_mut().find(|(s, _)| *s == state) {
                        slot.1 += n;
                    }
                }
            }
            Ok(sum)
        }
    })
    .await
}

/// One page for `filter` (one more row fetched to know whether a next page exists).
pub(crate) async fn page(ctx: &Ctx, mut filter: AlertFilter) -> Result<AlertPage, ApiError> {
    let limit = filter.limit.unwrap_or(super::DEFAULT_PAGE);
    filter.limit = Some(limit + 1);
    let store = ctx.state.alerts.clone();
    let mut items = blocking(move || store.list(&filter)).await?;
    let next = if items.len() > limit {
        items.truncate(limit);
        items.last().map(|a| encode_cursor(&Cursor::after(a)))
    } else {
        None
    };
    Ok(AlertPage { items, next })
}

/// One alert with its review history.
#[utoipa::path(
    get,
    path = "/api/v1/alerts/{id}",
    params(("id" = String, Path, description = "the alert id")),
    responses(
        (status = 200, body = AlertSchema),
        (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody, description = "no such alert, or a Kubernetes caller without get on alerts in its namespace"),
    )
)]
pub(crate) async fn get_alert(
    AxState(ctx): AxState<Arc<Ctx>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Alert>, ApiError> {
    let who = caller(&ctx, &headers).await?;
    Ok(Json(fetch_for(&ctx, &who, id).await?))
}

/// The alert `id` if `who` may read it (404 otherwise, as if there were none).
pub(crate) async fn fetch_for(ctx: &Ctx, who: &Principal, id: String) -> Result<Alert, ApiError> {
    let a = fetch(ctx, id).await?;
    kauth::may_read(ctx, who, &a).await?;
    Ok(a)
}

pub(crate) async fn fetch(ctx: &Ctx, id: String) -> Result<Alert, ApiError> {
    check_id(&id)?;
    let store = ctx.state.alerts.clone();
    let key = id.clone();
    blocking(move || store.get(&key))
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no alert {}", shorten(&id))))
}

fn check_id(id: &str) -> Result<(), ApiError> {
    if id.is_empty() || id.len() > 64 || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    {
        return Err(ApiError::not_found(format!("no alert {:?}", shorten(id))));
    }
    Ok(())
}

/// What a review change asks for: `acknowledge`, `resolve` or `reopen`.
pub(crate) fn target_state(change: &str) -> Result<ReviewState, ApiError> {
    match change {
        "acknowledge" => Ok(ReviewState::Acknowledged),
        "resolve" => Ok(ReviewState::Resolved),
        "reopen" => Ok(ReviewState::Open),
        other => Err(ApiError::not_found(format!(
            "no action {:?} on alerts (expected acknowledge, resolve or reopen)",
            shorten(other)
        ))),
    }
}

/// Acknowledges, resolves or reopens an alert (reviewer tokens only), with a comment; the
/// change is appended to the alert's history. Acknowledge: open alerts; resolve: open or
/// acknowledged ones; reopen: acknowledged or resolved ones (else 409).
#[utoipa::path(
    post,
    path = "/api/v1/alerts/{id}/{change}",
    params(
        ("id" = String, Path, description = "the alert id"),
        ("change" = String, Path, description = "acknowledge, resolve or reopen"),
    ),
    request_body = CommentBody,
    responses(
        (status = 200, body = AlertSchema, description = "the alert after the change"),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody, description = "a reader token, or a Kubernetes caller without update on alerts in the alert's namespace"),
        (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "the alert's state does not allow it"),
        (status = 413, body = ErrorBody),
    )
)]
pub(crate) async fn change_state(
    AxState(ctx): AxState<Arc<Ctx>>,
    headers: HeaderMap,
    Path((id, change)): Path<(String, String)>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Alert>, ApiError> {
    let who = caller(&ctx, &headers).await?;
    let to = target_state(&change)?;
    let body = body_bytes(body)?;
    let req: CommentBody = if body.iter().all(u8::is_ascii_whitespace) {
        CommentBody::default()
    } else {
        json_body(&body)?
    };
    Ok(Json(review(&ctx, &who, id, to, req.comment).await?))
}

/// Applies a review change for `who` (403 unless a reviewer token, or a Kubernetes caller
/// with `update` on alerts in the alert's namespace).
pub(crate) async fn review(
    ctx: &Ctx,
    who: &Principal,
    id: String,
    to: ReviewState,
    comment: String,
) -> Result<Alert, ApiError> {
    if who.kubernetes.is_none() && who.role < Role::Reviewer {
        return Err(kauth::reader_refused(who, "change alerts"));
    }
    check_id(&id)?;
    if comment.chars().count() > MAX_COMMENT_CHARS {
        return Err(ApiError::bad(
            "bad-body",
            format!("comment: longer than {MAX_COMMENT_CHARS} characters"),
        ));
    }
    if who.kubernetes.is_some() {
        let a = fetch_for(ctx, who, id.clone()).await?;
        kauth::may_change(ctx, who, &a).await?;
    }
    let change = ReviewChange {
        to,
        by: who.name.clone(),
        comment,
        time: Utc::now(),
    };
    let store = ctx.state.alerts.clone();
    let key = id.clone();
    let res = tokio::task::spawn_blocking(move || store.review(&key, &change)).await;
    match res {
        Ok(Ok(Some(a))) => {
            tracing::info!(alert = %id, by = %who.name, to = %to, "alert review state changed");
            Ok(a)
        }
        Ok(Ok(None)) => Err(ApiError::not_found(format!("no alert {}", shorten(&id)))),
        Ok(Err(AlertError::Transition { from, to, .. })) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "conflict",
            format!("the alert is {from}: it cannot become {to}"),
        )),
        Ok(Err(e)) => Err(ApiError::store(&e)),
        Err(e) => Err(ApiError::store(&AlertError::Other(e.to_string()))),
    }
}

pub(crate) fn body_bytes(body: Result<Bytes, BytesRejection>) -> Result<Bytes, ApiError> {
    body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body-too-large",
                "request body larger than review.maxBodyBytes",
            )
        } else {
            ApiError::bad("bad-body", e.body_text())
        }
    })
}

fn json_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let de = &mut serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(de).map_err(|e| {
        ApiError::bad(
            "bad-body",
            format!(
                "request body: {}: {}",
                e.path(),
                shorten(&e.inner().to_string())
            ),
        )
    })
}

/// The rules in force.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RulesAnswer {
    /// The rule set's version (alerts carry the version that decided them).
    pub version: String,
    pub items: Vec<RuleStatus>,
}

/// One rule and its status.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RuleStatus {
    pub name: String,
    /// `audit` or `deny`.
    pub action: String,
    /// `active` or `disabled`.
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Where it was read from (a file and document, or the custom resource).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// Allowances and exemptions past their validUntil (ignored by the engine).
    pub expired_entries: usize,
    /// The rule as a SecurityRule document.
    #[schema(value_type = Object)]
    pub document: serde_json::Value,
}

pub(crate) fn rules_answer(rules: &RuleSet) -> RulesAnswer {
    let now = Utc::now();
    RulesAnswer {
        version: rules.version().to_string(),
        items: rules
            .rules()
            .iter()
            .map(|r| RuleStatus {
                name: r.name.clone(),
                action: serde_json::to_value(r.spec.action)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default(),
                status: if r.spec.enabled { "active" } else { "disabled" }.into(),
                description: r.spec.description.clone(),
                source: r.source.clone(),
                expired_entries: r
                    .spec
                    .allowed_vulnerabilities
                    .iter()
                    .map(|a| a.valid_until)
                    .chain(r.spec.exemptions.iter().map(|e| e.valid_until))
                    .filter(|v| !vulngate_core::rules::is_live(*v, now))
                    .count(),
                document: serde_json::to_value(r.to_doc()).unwrap_or_default(),
            })
            .collect(),
    }
}

/// The rules in force, with their status.
#[utoipa::path(
    get,
    path = "/api/v1/rules",
    responses(
        (status = 200, body = RulesAnswer),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody, description = "a Kubernetes caller without cluster-wide list on securityrules"),
    )
)]
pub(crate) async fn list_rules(
    AxState(ctx): AxState<Arc<Ctx>>,
    headers: HeaderMap,
) -> Result<Json<RulesAnswer>, ApiError> {
    let who = caller(&ctx, &headers).await?;
    kauth::may_read_rules(&ctx, &who).await?;
    Ok(Json(rules_answer(&ctx.state.rules.current())))
}

/// A what-if evaluation: a workload manifest (YAML or JSON, one or more objects) or a list
/// of images, in a namespace with labels, under the rules in force plus draft rules (a draft
/// with the name of a rule in force replaces it). Nothing is recorded.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct EvaluateRequest {
    pub manifest: Option<String>,
    pub images: Vec<String>,
    /// For `images`, and for manifest objects without a namespace.
    pub namespace: Option<String>,
    /// For `images`.
    pub labels: BTreeMap<String, String>,
    /// Draft SecurityRule documents (YAML).
    pub rules: Option<String>,
}

/// The what-if decision.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct EvaluateAnswer {
    /// `allow`, `audit` or `deny`: the strictest of the images'.
    #[schema(value_type = String)]
    pub decision: Outcome,
    /// The version of the rule set evaluated (drafts included).
    pub rules_version: String,
    pub images: Vec<ImageVerdict>,
}

/// One image's what-if verdict.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ImageVerdict {
    pub image: String,
    /// `Deployment/web` for manifest objects.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workload: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    #[schema(value_type = String)]
    pub decision: Outcome,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vulnerability: Option<String>,
    pub reason: String,
    #[schema(value_type = Vec<Object>)]
    pub violations: Vec<Violation>,
    pub violations_total: usize,
    #[schema(value_type = Vec<Object>)]
    pub also_fired: Vec<Firing>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub unscanned: Option<UnscannedReason>,
    #[schema(value_type = Object)]
    pub counts: SeverityCounts,
}

/// What-if: the decision and violations for a manifest or images, under the rules in force
/// and optional draft rules. Judged by the webhook's own code path (lookup, then the engine
/// through `verdict.rs`); writes no alert.
#[utoipa::path(
    post,
    path = "/api/v1/evaluate",
    request_body = EvaluateRequest,
    responses(
        (status = 200, body = EvaluateAnswer),
        (status = 400, body = ErrorBody, description = "bad manifest, image or draft rule"),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody, description = "a Kubernetes caller without cluster-wide list on securityrules"),
        (status = 413, body = ErrorBody),
    )
)]
pub(crate) async fn evaluate(
    AxState(ctx): AxState<Arc<Ctx>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<EvaluateAnswer>, ApiError> {
    let who = caller(&ctx, &headers).await?;
    kauth::may_evaluate(&ctx, &who).await?;
    let body = body_bytes(body)?;
    let req: EvaluateRequest = json_body(&body)?;
    Ok(Json(what_if(&ctx, req).await?))
}

/// The images to evaluate, each with its context and workload label.
fn targets(
    ctx: &Ctx,
    req: &EvaluateRequest,
) -> Result<Vec<(String, RequestContext, Option<String>)>, ApiError> {
    let cluster = ctx.state.config.cluster_name.clone();
    let mut out = Vec::new();
    if let Some(text) = req.manifest.as_deref().filter(|t| !t.trim().is_empty()) {
        let docs = parse_manifests(text)
            .map_err(|e| ApiError::bad("bad-manifest", format!("manifest: {e}")))?;
        if docs.is_empty() {
            return Err(ApiError::bad("bad-manifest", "manifest: no object in it"));
        }
        for d in docs {
            let w = extract(&d.value).map_err(|e| {
                ApiError::bad("bad-manifest", format!("manifest, {}: {e}", d.location()))
            })?;
            let label = format!("{}/{}", w.kind.as_str(), w.name.as_deref().unwrap_or("-"));
            let images: Vec<String> = w.containers.iter().map(|c| c.image.clone()).collect();
            let mut c = w.into_context(cluster.clone());
            if c.namespace.is_none() {
                c.namespace.clone_from(&req.namespace);
            }
            for i in images {
                out.push((i, c.clone(), Some(label.clone())));
            }
        }
    }
    let c = RequestContext {
        cluster,
        namespace: req.namespace.clone(),
        labels: req.labels.clone(),
        ..RequestContext::default()
    };
    for i in &req.images {
        if i.trim().is_empty() {
            return Err(ApiError::bad("bad-image", "images: empty image reference"));
        }
        out.push((i.trim().to_string(), c.clone(), None));
    }
    if out.is_empty() {
        return Err(ApiError::bad(
            "bad-body",
            "give a manifest or a list of images to evaluate",
        ));
    }
    let max = ctx.review.config.max_evaluate_images;
    if out.len() > max {
        return Err(ApiError::bad(
            "bad-body",
            format!(
                "{} images to evaluate: at most {max} (review.maxEvaluateImages)",
                out.len()
            ),
        ));
    }
    Ok(out)
}

/// The rules in force with the drafts laid over them.
fn with_drafts(active: Arc<RuleSet>, drafts: Option<&str>) -> Result<Arc<RuleSet>, ApiError> {
    let Some(text) = drafts.filter(|t| !t.trim().is_empty()) else {
        return Ok(active);
    };
    let drafts = RuleSet::parse_yaml(text, "draft")
        .map_err(|e| ApiError::bad("bad-rules", format!("draft rules: {e}")))?;
    let mut all: Vec<Rule> = active
        .rules()
        .iter()
        .filter(|r| !drafts.iter().any(|d| d.name == r.name))
        .cloned()
        .collect();
    all.extend(drafts);
    RuleSet::new(all)
        .map(Arc::new)
        .map_err(|e| ApiError::bad("bad-rules", format!("draft rules: {e}")))
}

pub(crate) async fn what_if(ctx: &Ctx, req: EvaluateRequest) -> Result<EvaluateAnswer, ApiError> {
    let state = &ctx.state;
    let targets = targets(ctx, &req)?;
    let rules = with_drafts(state.rules.current(), req.rules.as_deref())?;
    let timeout = state.config.default_timeout;
    let margin = state.config.deadline_margin;
    let budget = if timeout > margin {
        timeout - margin
    } else {
        timeout / 2
    };
    let deadline = Deadline {
        at: tokio::time::Instant::now() + budget,
        budget,
        timeout,
        margin,
    };
    let images: Vec<String> = targets.iter().map(|t| t.0.clone()).collect();
    let lookups = lookup_images(state, "what-if", &images, deadline, None).await;
    let catalogs = state.catalogs.current();
    let now = Utc::now();
    let mut out = Vec::with_capacity(targets.len());
    for ((image, rctx, workload), (lookup, r)) in targets.iter().zip(lookups) {
        let judge = Judge {
            rules: &rules,
            precedence: state.config.precedence,
            ctx: rctx,
            now,
            policy: state.config.failure_policy,
            catalogs: &catalogs,
            pin_resolved: true,
            max_violations: state.config.alert_writer.max_violations,
        };
        let v: Verdict = judge.verdict(image, lookup, r);
        let d = v.decision;
        out.push(ImageVerdict {
            image: image.clone(),
            workload: workload.clone(),
            digest: d.digest,
            decision: d.decision,
            rule: d.rule,
            vulnerability: d.vulnerability,
            reason: d.reason,
            violations: v.violations,
            violations_total: v.violations_total,
            also_fired: d.also_fired,
            unscanned: d.unscanned,
            counts: d.counts,
        });
    }
    Ok(EvaluateAnswer {
        decision: Outcome::combine(out.iter().map(|i| i.decision)),
        rules_version: rules.version().to_string(),
        images: out,
    })
}

/// This API's OpenAPI 3.1 document (no token needed).
#[utoipa::path(
    get,
    path = "/api/openapi.json",
    security(()),
    responses((status = 200, description = "the OpenAPI document", content_type = "application/json"))
)]
pub(crate) async fn openapi() -> Response {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        ApiDoc::openapi().to_pretty_json().unwrap_or_default(),
    )
        .into_response()
}
