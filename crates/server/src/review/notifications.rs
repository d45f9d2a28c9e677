//! The notification outbox in the review API: `GET /api/v1/notifications` (pending and
//! dead-lettered entries) and `POST /api/v1/notifications/{id}/retry` (a dead entry
//! attempted again).

use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State as AxState};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::Utc;
use serde::{Deserialize, Serialize};

use super::api::{blocking, caller};
use super::kubernetes_auth::{may_cluster, Verb};
use super::query::{shorten, ApiError, ErrorBody};
use super::Ctx;
use crate::alerts::outbox::{DeliveryState, Notification, Retried};

pub(crate) fn routes() -> Router<Arc<Ctx>> {
    Router::new()
        .route("/api/v1/notifications", get(list_notifications))
        .route("/api/v1/notifications/{id}/retry", post(retry_notification))
}

/// Outbox entries, newest first.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct NotificationPage {
    #[schema(value_type = Vec<NotificationSchema>)]
    pub items: Vec<Notification>,
}

/// An outbox entry: `id` (also the CloudEvents id and the `X-Vulngate-Delivery` header),
/// `alertId`, `sink`, `state` (`pending` or `dead`), `attempts`, `created`, `nextAttempt`
/// (when pending; when it died, when dead) and `lastError` (an HTTP status or transport
/// error).
#[derive(utoipa::ToSchema)]
#[schema(value_type = Object)]
#[allow(dead_code)]
pub(crate) struct NotificationSchema(serde_json::Value);

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NotificationQuery {
    state: Option<String>,
    sink: Option<String>,
    limit: Option<usize>,
}

/// Lists notification outbox entries (delivered ones are gone from it): `state=dead` for
/// the dead-lettered ones, `state=pending` for those waiting, `sink` for one sink's.
#[utoipa::path(
    get,
    path = "/api/v1/notifications",
    params(
        ("state" = Option<String>, Query, description = "pending or dead"),
        ("sink" = Option<String>, Query, description = "a sink name (notify.sinks)"),
        ("limit" = Option<usize>, Query, description = "1 to 500, default 50"),
    ),
    responses(
        (status = 200, body = NotificationPage),
        (status = 400, body = ErrorBody, description = "bad filter"),
        (status = 401, body = ErrorBody),
    )
)]
pub(crate) async fn list_notifications(
    AxState(ctx): AxState<Arc<Ctx>>,
    headers: HeaderMap,
    query: Result<Query<NotificationQuery>, QueryRejection>,
) -> Result<Json<NotificationPage>, ApiError> {
    let who = caller(&ctx, &headers).await?;
    may_cluster(
        &ctx,
        &who,
        Verb::List,
        "alerts",
        "read the notification outbox",
    )
    .await?;
    let Query(q) = query.map_err(|e| ApiError::bad("bad-filter", e.body_text()))?;
    let state = match q.state.as_deref() {
        None | Some("") => None,
        Some(s) => Some(
            s.parse::<DeliveryState>()
                .map_err(|m| ApiError::bad("bad-filter", format!("state: {}", shorten(&m))))?,
        ),
    };
    let limit = q.limit.unwrap_or(super::DEFAULT_PAGE);
    if limit == 0 || limit > super::MAX_PAGE {
        return Err(ApiError::bad(
            "bad-filter",
            format!("limit: must be between 1 and {}", super::MAX_PAGE),
        ));
    }
    if q.sink.as_ref().is_some_and(|s| s.len() > 64) {
        return Err(ApiError::bad("bad-filter", "sink: longer than 64 bytes"));
    }
    let store = ctx.state.alerts.clone();
    let sink = q.sink.filter(|s| !s.is_empty());
    let items = blocking(move || match store.outbox() {
        Some(o) => o.notifications(state, sink.as_deref(), limit),
        None => Ok(Vec::new()),
    })
    .await?;
    Ok(Json(NotificationPage { items }))
}

/// Attempts a dead-lettered notification again (reviewer tokens only): it becomes pending,
/// due now, with its attempts reset. 409 when it is not dead.
#[utoipa::path(
    post,
    path = "/api/v1/notifications/{id}/retry",
    params(("id" = String, Path, description = "the outbox entry's id")),
    responses(
        (status = 200, body = NotificationSchema, description = "the entry, pending again"),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody, description = "a reader token"),
        (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "the entry is not dead"),
    )
)]
pub(crate) async fn retry_notification(
    AxState(ctx): AxState<Arc<Ctx>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Notification>, ApiError> {
    let who = caller(&ctx, &headers).await?;
    may_cluster(&ctx, &who, Verb::Update, "alerts", "retry notifications").await?;
    let missing = || ApiError::not_found(format!("no notification {:?}", shorten(&id)));
    if id.is_empty() || id.len() > 64 || !id.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-') {
        return Err(missing());
    }
    let store = ctx.state.alerts.clone();
    let key = id.clone();
    let res = blocking(move || match store.outbox() {
        Some(o) => o.retry(&key, Utc::now()),
        None => Ok(Retried::NotFound),
    })
    .await?;
    match res {
        Retried::Retried(n) => {
            tracing::info!(notification = %n.id, sink = %n.sink, by = %who.name, "notification retried");
            Ok(Json(n))
        }
        Retried::NotDead(n) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "conflict",
            format!(
                "the notification is {}: only dead ones are retried",
                n.state.as_str()
            ),
        )),
        Retried::NotFound => Err(missing()),
    }
}
