//! The web console at `/` of the review listener: server-rendered HTML (maud), usable
//! without JavaScript (forms post and redirect); one small script refreshes the state
//! counts. Login with an API token (or, with `review.kubernetes`, a Kubernetes token: the
//! session keeps the Kubernetes user, authorised by access reviews on every page) makes a session (HttpOnly, Secure, SameSite=Strict
//! cookie); every form that changes something carries the session's CSRF token.

use std::sync::Arc;

use axum::extract::rejection::{FormRejection, QueryRejection};
use axum::extract::{Form, Path, Query, State as AxState};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use maud::{html, Markup, DOCTYPE};
use serde::Deserialize;

use super::api::{self, EvaluateAnswer, EvaluateRequest};
use super::auth::{csrf_ok, Auth, Session, SESSION_COOKIE};
use super::kubernetes_auth::{may_evaluate, may_read_rules};
use super::query::{filter_from_pairs, ApiError};
use super::{Ctx, Role};
use crate::alerts::{Alert, AlertAction, ReviewState};

const CSS: &str = include_str!("console.css");
const JS: &str = include_str!("console.js");

pub(crate) fn routes() -> Router<Arc<Ctx>> {
    Router::new()
        .route("/", get(alerts_page))
        .route("/login", get(login_page).post(login))
        .route("/logout", post(logout))
        .route("/alerts/{id}", get(alert_page).post(alert_change))
        .route("/rules", get(rules_page))
        .route("/evaluate", get(evaluate_page).post(evaluate_post))
        .route("/counts", get(counts))
        .route(
            "/static/console.css",
            get(|| async { asset("text/css", CSS) }),
        )
        .route(
            "/static/console.js",
            get(|| async { asset("text/javascript", JS) }),
        )
}

fn asset(kind: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, kind),
            (header::CACHE_CONTROL, "max-age=300"),
        ],
        body,
    )
        .into_response()
}

/// An error as a console page (the API's message, the API's status).
fn error_page(session: Option<&Session>, e: ApiError) -> Response {
    let body = layout(
        "Error",
        session,
        html! {
            h1 { "Error " (e.status.as_u16()) }
            p role="alert" { (e.message) }
            p { a href="/" { "Back to the alerts" } }
        },
    );
    (e.status, body).into_response()
}

fn layout(title: &str, session: Option<&Session>, main: Markup) -> Html<String> {
    Html(layout_markup(title, session, main).into_string())
}

fn layout_markup(title: &str, session: Option<&Session>, main: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " - vulngate review" }
                link rel="stylesheet" href="/static/console.css";
                script src="/static/console.js" defer {}
            }
            body {
                a class="skip" href="#main" { "Skip to content" }
                header {
                    nav aria-label="Main" {
                        span class="brand" { "vulngate review" }
                        a href="/" { "Alerts" }
                        a href="/rules" { "Rules" }
                        a href="/evaluate" { "What if" }
                        @if let Some(s) = session {
                            span class="who" { (s.principal.name) " (" (if s.principal.kubernetes.is_some() { "kubernetes" } else { s.principal.role.as_str() }) ")" }
                            form method="post" action="/logout" class="inline" {
                                input type="hidden" name="csrf" value=(s.csrf);
                                button type="submit" { "Log out" }
                            }
                        }
                    }
                }
                main id="main" tabindex="-1" { (main) }
            }
        }
    }
}

/// The session, or a redirect to the login page.
#[allow(clippy::result_large_err)]
fn session(ctx: &Ctx, headers: &HeaderMap) -> Result<Session, Response> {
    ctx.review
        .auth
        .session(headers)
        .ok_or_else(|| Redirect::to("/login").into_response())
}

#[derive(Debug, Deserialize)]
pub(crate) struct LoginForm {
    token: String,
}

async fn login_page() -> Html<String> {
    login_markup(None)
}

fn login_markup(error: Option<&str>) -> Html<String> {
    layout(
        "Log in",
        None,
        html! {
            h1 { "Log in" }
            @if let Some(e) = error { p class="error" role="alert" { (e) } }
            form method="post" action="/login" {
                label for="token" { "API token" }
                input id="token" name="token" type="password" autocomplete="current-password" required;
                button type="submit" { "Log in" }
            }
            p class="hint" { "Use a token from review.tokens (or a Kubernetes token when review.kubernetes is on). The session lasts until you log out or it expires." }
        },
    )
}

async fn login(
    AxState(ctx): AxState<Arc<Ctx>>,
    form: Result<Form<LoginForm>, FormRejection>,
) -> Response {
    let Ok(Form(f)) = form else {
        return (
            StatusCode::BAD_REQUEST,
            login_markup(Some("The form was not filled in.")),
        )
            .into_response();
    };
    let p = match api::token_principal(&ctx, f.token.trim()).await {
        Ok(p) => p,
        Err(e) if e.status == StatusCode::UNAUTHORIZED => {
            return (
                StatusCode::UNAUTHORIZED,
                login_markup(Some("That token is not valid.")),
            )
                .into_response();
        }
        Err(e) => return (e.status, login_markup(Some(&e.message))).into_response(),
    };
    tracing::info!(token = %p.name, "review console login");
    let id = ctx.review.auth.login(p);
    let cookie = format!(
        "{SESSION_COOKIE}={id}; Path=/; HttpOnly; Secure; SameSite=Strict; Max-Age={}",
        ctx.review.auth.ttl().as_secs()
    );
    let mut r = Redirect::to("/").into_response();
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

#[derive(Debug, Deserialize)]
pub(crate) struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

async fn logout(
    AxState(ctx): AxState<Arc<Ctx>>,
    headers: HeaderMap,
    form: Result<Form<CsrfForm>, FormRejection>,
) -> Response {
    let s = match session(&ctx, &headers) {
        Ok(s) => s,
        Err(r) => return r,
    };
    if !form.is_ok_and(|Form(f)| csrf_ok(&s, &f.csrf)) {
        return error_page(Some(&s), csrf_error());
    }
    if let Some(id) = Auth::session_id(&headers) {
        ctx.review.auth.logout(&id);
    }
    let mut r = Redirect::to("/login").into_response();
    r.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static(
            "vulngate_session=; Path=/; HttpOnly; Secure; SameSite=Strict; Max-Age=0",
        ),
    );
    r
}

fn csrf_error() -> ApiError {
    ApiError::new(
        StatusCode::FORBIDDEN,
        "forbidden",
        "the form's CSRF token is missing or wrong: reload the page and try again",
    )
}

fn action_options() -> [(&'static str, &'static str); 3] {
    [
        (AlertAction::Deny.as_str(), "deny"),
        (AlertAction::Audit.as_str(), "audit"),
        (AlertAction::BreakGlass.as_str(), "break-glass"),
    ]
}

fn get_pair<'a>(pairs: &'a [(String, String)], k: &str) -> &'a str {
    pairs
        .iter()
        .find(|(n, _)| n == k)
        .map(|(_, v)| v.as_str())
        .unwrap_or("")
}

async fn alerts_page(
    AxState(ctx): AxState<Arc<Ctx>>,
    headers: HeaderMap,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Response {
    let s = match session(&ctx, &headers) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let pairs = query.map(|Query(p)| p).unwrap_or_default();
    let filter = match filter_from_pairs(&pairs, true) {
        Ok(f) => f,
        Err(e) => return error_page(Some(&s), e),
    };
    let counts = match api::scoped_counts(&ctx, &s.principal, filter.clone()).await {
        Ok(c) => c,
        Err(e) => return error_page(Some(&s), e),
    };
    let page = match api::scoped_page(&ctx, &s.principal, filter).await {
        Ok(p) => p,
        Err(e) => return error_page(Some(&s), e),
    };
    let text = |k: &str| get_pair(&pairs, k).to_string();
    let next_link = page.next.as_ref().map(|c| {
        let mut q: Vec<(String, String)> = pairs
            .iter()
            .filter(|(k, v)| k != "cursor" && !v.is_empty())
            .cloned()
            .collect();
        q.push(("cursor".into(), c.clone()));
        format!("/?{}", encode_query(&q))
    });
    let count_query = encode_query(
        &pairs
            .iter()
            .filter(|(k, v)| k != "cursor" && k != "state" && k != "limit" && !v.is_empty())
            .cloned()
            .collect::<Vec<_>>(),
    );
    layout(
        "Alerts",
        Some(&s),
        html! {
            h1 { "Alerts" }
            section aria-labelledby="counts-h" {
                h2 id="counts-h" class="visually-hidden" { "Counts by state" }
                ul class="counts" id="counts" data-query=(count_query) aria-live="polite" {
                    @for (state, n) in &counts {
                        li { a href={"/?state=" (state.as_str())} {
                            span class="n" data-state=(state.as_str()) { (n) } " " (state.as_str())
                        } }
                    }
                }
            }
            form method="get" action="/" class="filters" aria-label="Filter alerts" {
                @for (name, label) in [("namespace", "Namespace"), ("workload", "Workload"), ("image", "Image contains"), ("rule", "Rule"), ("cve", "Vulnerability id"), ("since", "Since (24h, 7d or a time)")] {
                    div {
                        label for={"f-" (name)} { (label) }
                        input id={"f-" (name)} name=(name) type="text" value=(text(name)) maxlength="256";
                    }
                }
                div {
                    label for="f-action" { "Action" }
                    select id="f-action" name="action" {
                        option value="" { "any" }
                        @for (v, l) in action_options() {
                            option value=(v) selected[text("action") == v] { (l) }
                        }
                    }
                }
                div {
                    label for="f-state" { "State" }
                    select id="f-state" name="state" {
                        option value="" { "any" }
                        @for st in ReviewState::ALL {
                            option value=(st.as_str()) selected[text("state") == st.as_str()] { (st.as_str()) }
                        }
                    }
                }
                div { button type="submit" { "Filter" } " " a href="/" { "Clear" } }
            }
            @if page.items.is_empty() {
                p { "No alert matches." }
            } @else {
                table {
                    caption { "Alerts, newest first" }
                    thead { tr {
                        th scope="col" { "Time" } th scope="col" { "Action" } th scope="col" { "State" }
                        th scope="col" { "Namespace" } th scope="col" { "Workload" } th scope="col" { "Image" }
                        th scope="col" { "Rule" } th scope="col" { "Vulnerability" }
                    } }
                    tbody {
                        @for a in &page.items {
                            tr {
                                td { a href={"/alerts/" (a.id)} { (a.time.format("%Y-%m-%d %H:%M:%S")) } }
                                td { span class={"badge " (a.action.as_str())} { (a.action.as_str()) } }
                                td { (a.review.state.as_str()) }
                                td { (a.namespace.as_deref().unwrap_or("-")) }
                                td { (a.subject().unwrap_or_else(|| format!("{}/{}", a.kind, a.name.as_deref().unwrap_or("-")))) }
                                td class="mono" { (a.image) }
                                td { (a.rule.as_deref().unwrap_or("-")) }
                                td { (a.vulnerability.as_ref().map(|v| v.id.as_str()).unwrap_or("-")) }
                            }
                        }
                    }
                }
                @if let Some(l) = next_link { p { a href=(l) rel="next" { "Older alerts" } } }
            }
        },
    )
    .into_response()
}

fn encode_query(pairs: &[(String, String)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", pct(k), pct(v)))
        .collect::<Vec<_>>()
        .join("&")
}

fn pct(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `GET /counts?FILTERS`: the counts by state as JSON, for the page's script.
async fn counts(
    AxState(ctx): AxState<Arc<Ctx>>,
    headers: HeaderMap,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Response {
    let Some(s) = ctx.review.auth.session(&headers) else {
        return ApiError::unauthorized().into_response();
    };
    let pairs = query.map(|Query(p)| p).unwrap_or_default();
    let filter = match filter_from_pairs(&pairs, true) {
        Ok(f) => f,
        Err(e) => return e.into_response(),
    };
    match api::scoped_counts(&ctx, &s.principal, filter).await {
        Ok(c) => axum::Json(
            c.into_iter()
                .map(|(s, n)| (s.as_str().to_string(), n))
                .collect::<std::collections::BTreeMap<_, _>>(),
        )
        .into_response(),
        Err(e) => e.into_response(),
    }
}

fn pretty(v: &impl serde::Serialize) -> String {
    serde_json::to_string_pretty(v).unwrap_or_default()
}

fn alert_markup(a: &Alert, s: &Session, notice: Option<&str>) -> Markup {
    // A Kubernetes user's changes are authorised when posted (update on alerts).
    let reviewer = s.principal.role >= Role::Reviewer || s.principal.kubernetes.is_some();
    let st = a.review.state;
    let changes: Vec<(&str, &str)> = [
        ("acknowledge", "Acknowledge", ReviewState::Acknowledged),
        ("resolve", "Resolve", ReviewState::Resolved),
        ("reopen", "Reopen", ReviewState::Open),
    ]
    .into_iter()
    .filter(|(_, _, to)| st.can_move_to(*to))
    .map(|(v, l, _)| (v, l))
    .collect();
    html! {
        p { a href="/" { "All alerts" } }
        h1 { "Alert " span class="mono" { (a.id) } }
        @if let Some(n) = notice { p class="notice" role="status" { (n) } }
        dl class="facts" {
            dt { "State" } dd { strong id="state" { (st.as_str()) } }
            dt { "Action" } dd { span class={"badge " (a.action.as_str())} { (a.action.as_str()) } " (decision " (a.decision.as_str()) ", " (a.origin.as_str()) ")" }
            dt { "Time" } dd { (a.time.to_rfc3339()) }
            dt { "Cluster" } dd { (a.cluster.as_deref().unwrap_or("-")) }
            dt { "Namespace" } dd { (a.namespace.as_deref().unwrap_or("-")) }
            dt { "Object" } dd { (a.kind) "/" (a.name.as_deref().unwrap_or("-")) " (" (a.operation) ")" }
            @if let Some(s) = a.subject() { dt { "Workload" } dd { (s) } }
            dt { "Requested by" } dd { (a.user.as_deref().unwrap_or("-")) }
            dt { "Image" } dd class="mono" { (a.image) }
            dt { "Digest" } dd class="mono" { (a.digest.as_deref().unwrap_or("-")) }
            dt { "Rule" } dd { (a.rule.as_deref().unwrap_or("-")) " (rules " (a.rules_version.as_deref().unwrap_or("-")) ")" }
            dt { "Reason" } dd { (a.reason) }
            @if let Some(b) = &a.break_glass { dt { "Break-glass" } dd { (b) } }
        }
        h2 { "Violations" }
        @if a.explanation.violations.is_empty() {
            p { "No vulnerability listed (unscanned image, or an alert recorded before violations were)." }
        } @else {
            @if a.explanation.violations_total > a.explanation.violations.len() {
                p { "Showing the first " (a.explanation.violations.len()) " of " (a.explanation.violations_total) "." }
            }
            table {
                caption { "Vulnerabilities that fulfilled the deciding condition" }
                thead { tr {
                    th scope="col" { "Id" } th scope="col" { "Severity" } th scope="col" { "CVSS" }
                    th scope="col" { "Package" } th scope="col" { "Installed" } th scope="col" { "Fixed in" } th scope="col" { "Report" }
                } }
                tbody {
                    @for v in &a.explanation.violations {
                        @let vu = &v.vulnerability;
                        @for (i, p) in vu.packages.iter().enumerate() {
                            tr class=[v.deciding.then_some("deciding")] {
                                td { @if i == 0 { (vu.id) @if v.deciding { " " strong { "(deciding)" } } } }
                                td { @if i == 0 { (pretty(&vu.severity).trim_matches('"')) } }
                                td { @if i == 0 { (vu.cvss.map(|c| format!("{c:.1}")).unwrap_or_else(|| "-".into())) } }
                                td { (p.name) }
                                td { (p.installed.as_deref().unwrap_or("-")) }
                                td { (if p.fixed.is_empty() { "-".to_string() } else { p.fixed.join(", ") }) }
                                td class="mono" { (v.report.as_deref().unwrap_or("-")) }
                            }
                        }
                    }
                }
            }
        }
        @if !a.explanation.also_fired.is_empty() {
            h2 { "Other rules that would also have fired" }
            ul { @for f in &a.explanation.also_fired { li { (f.rule) ": " (f.reason) } } }
        }
        h2 { "Rule snapshot" }
        @match &a.rule_snapshot {
            Some(r) => pre class="snapshot" { code { (pretty(r)) } },
            None => p { "None (no rule decided)." },
        }
        h2 { "Review" }
        @if a.review.history.is_empty() {
            p { "No review yet." }
        } @else {
            ol class="history" {
                @for h in &a.review.history {
                    li { (h.time.format("%Y-%m-%d %H:%M:%S")) " " strong { (h.by) } " " (h.from.as_str()) " \u{2192} " (h.to.as_str())
                        @if !h.comment.is_empty() { ": " q { (h.comment) } } }
                }
            }
        }
        @if reviewer && !changes.is_empty() {
            form method="post" action={"/alerts/" (a.id)} class="review" {
                input type="hidden" name="csrf" value=(s.csrf);
                label for="comment" { "Comment" }
                textarea id="comment" name="comment" rows="3" maxlength="4096" {}
                div class="buttons" {
                    @for (v, l) in &changes {
                        button type="submit" name="change" value=(v) { (l) }
                    }
                }
            }
        } @else if !reviewer {
            p class="hint" { "Your token has the reader role: you cannot change alerts." }
        }
    }
}

async fn alert_page(
    AxState(ctx): AxState<Arc<Ctx>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let s = match session(&ctx, &headers) {
        Ok(s) => s,
        Err(r) => return r,
    };
    match api::fetch_for(&ctx, &s.principal, id).await {
        Ok(a) => layout("Alert", Some(&s), alert_markup(&a, &s, None)).into_response(),
        Err(e) => error_page(Some(&s), e),
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct ChangeForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    change: String,
    #[serde(default)]
    comment: String,
}

async fn alert_change(
    AxState(ctx): AxState<Arc<Ctx>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    form: Result<Form<ChangeForm>, FormRejection>,
) -> Response {
    let s = match session(&ctx, &headers) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let f = match form {
        Ok(Form(f)) if csrf_ok(&s, &f.csrf) => f,
        _ => return error_page(Some(&s), csrf_error()),
    };
    let to = match api::target_state(&f.change) {
        Ok(t) => t,
        Err(e) => return error_page(Some(&s), e),
    };
    match api::review(&ctx, &s.principal, id.clone(), to, f.comment).await {
        // Post/redirect/get: reloading the page does not post again.
        Ok(_) => Redirect::to(&format!("/alerts/{}", pct(&id))).into_response(),
        Err(e) => error_page(Some(&s), e),
    }
}

async fn rules_page(AxState(ctx): AxState<Arc<Ctx>>, headers: HeaderMap) -> Response {
    let s = match session(&ctx, &headers) {
        Ok(s) => s,
        Err(r) => return r,
    };
    if let Err(e) = may_read_rules(&ctx, &s.principal).await {
        return error_page(Some(&s), e);
    }
    let rules = api::rules_answer(&ctx.state.rules.current());
    layout(
        "Rules",
        Some(&s),
        html! {
            h1 { "Rules" }
            p { "Rule set version " span class="mono" { (rules.version) } "." }
            table {
                caption { "Rules in force, in precedence order of the rule set" }
                thead { tr { th scope="col" { "Name" } th scope="col" { "Action" } th scope="col" { "Status" }
                    th scope="col" { "Expired entries" } th scope="col" { "Description" } th scope="col" { "Source" } } }
                tbody {
                    @for r in &rules.items {
                        tr {
                            td { a href={"/?rule=" (pct(&r.name))} { (r.name) } }
                            td { span class={"badge " (r.action)} { (r.action) } }
                            td { (r.status) }
                            td { (r.expired_entries) }
                            td { (r.description.as_deref().unwrap_or("")) }
                            td class="mono" { (r.source.as_deref().unwrap_or("")) }
                        }
                    }
                }
            }
            @for r in &rules.items {
                details { summary { (r.name) " as a SecurityRule" } pre { code { (pretty(&r.document)) } } }
            }
        },
    )
    .into_response()
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct EvaluateForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    images: String,
    #[serde(default)]
    manifest: String,
    #[serde(default)]
    namespace: String,
    #[serde(default)]
    rules: String,
}

fn evaluate_markup(
    s: &Session,
    f: &EvaluateForm,
    answer: Option<&EvaluateAnswer>,
    error: Option<&str>,
) -> Markup {
    html! {
        h1 { "What if" }
        p { "Evaluates images or a workload manifest under the rules in force and optional draft rules, the way the webhook would. Nothing is recorded." }
        form method="post" action="/evaluate" class="evaluate" {
            input type="hidden" name="csrf" value=(s.csrf);
            label for="images" { "Images (one per line)" }
            textarea id="images" name="images" rows="3" { (f.images) }
            label for="manifest" { "Or a workload manifest (YAML)" }
            textarea id="manifest" name="manifest" rows="8" { (f.manifest) }
            label for="namespace" { "Namespace" }
            input id="namespace" name="namespace" type="text" value=(f.namespace);
            label for="rules" { "Draft rules (SecurityRule YAML; a draft replaces the rule of the same name)" }
            textarea id="rules" name="rules" rows="8" { (f.rules) }
            button type="submit" { "Evaluate" }
        }
        @if let Some(e) = error { p class="error" role="alert" { (e) } }
        @if let Some(a) = answer {
            h2 { "Decision: " span id="decision" class={"badge " (a.decision.as_str())} { (a.decision.as_str()) } }
            table {
                caption { "Per image" }
                thead { tr { th scope="col" { "Image" } th scope="col" { "Workload" } th scope="col" { "Decision" }
                    th scope="col" { "Rule" } th scope="col" { "Reason" } th scope="col" { "Violations" } } }
                tbody {
                    @for i in &a.images {
                        tr {
                            td class="mono" { (i.image) }
                            td { (i.workload.as_deref().unwrap_or("-")) }
                            td { span class={"badge " (i.decision.as_str())} { (i.decision.as_str()) } }
                            td { (i.rule.as_deref().unwrap_or("-")) }
                            td { (i.reason) }
                            td { (i.violations.iter().map(|v| v.vulnerability.id.clone()).collect::<Vec<_>>().join(", ")) }
                        }
                    }
                }
            }
        }
    }
}

async fn evaluate_page(AxState(ctx): AxState<Arc<Ctx>>, headers: HeaderMap) -> Response {
    let s = match session(&ctx, &headers) {
        Ok(s) => s,
        Err(r) => return r,
    };
    if let Err(e) = may_evaluate(&ctx, &s.principal).await {
        return error_page(Some(&s), e);
    }
    layout(
        "What if",
        Some(&s),
        evaluate_markup(&s, &EvaluateForm::default(), None, None),
    )
    .into_response()
}

async fn evaluate_post(
    AxState(ctx): AxState<Arc<Ctx>>,
    headers: HeaderMap,
    form: Result<Form<EvaluateForm>, FormRejection>,
) -> Response {
    let s = match session(&ctx, &headers) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let f = match form {
        Ok(Form(f)) if csrf_ok(&s, &f.csrf) => f,
        _ => return error_page(Some(&s), csrf_error()),
    };
    if let Err(e) = may_evaluate(&ctx, &s.principal).await {
        return error_page(Some(&s), e);
    }
    let req = EvaluateRequest {
        manifest: Some(f.manifest.clone()).filter(|m| !m.trim().is_empty()),
        images: f
            .images
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect(),
        namespace: Some(f.namespace.trim().to_string()).filter(|n| !n.is_empty()),
        labels: Default::default(),
        rules: Some(f.rules.clone()).filter(|r| !r.trim().is_empty()),
    };
    let (answer, error) = match api::what_if(&ctx, req).await {
        Ok(a) => (Some(a), None),
        Err(e) => (None, Some(e.message)),
    };
    let status = if error.is_some() {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    (
        status,
        layout(
            "What if",
            Some(&s),
            evaluate_markup(&s, &f, answer.as_ref(), error.as_deref()),
        ),
    )
        .into_response()
}
