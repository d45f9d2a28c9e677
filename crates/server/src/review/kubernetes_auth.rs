//! Kubernetes callers of the review listener (`review.kubernetes`): a bearer token that is not
//! one of `review.tokens` is sent to the API server in a TokenReview (`authentication.k8s.io/v1`);
//! the user it names is then authorised per request by SubjectAccessReviews
//! (`authorization.k8s.io/v1`) on the `alerts` resource of the `vulngate.io` group (the Alert
//! CRD's) in the alert's namespace: `get` to read an alert, `list` to list and count, `update` to
//! acknowledge, resolve or reopen one; `list` on `securityrules` (cluster-wide) for the rules and
//! what-if. Both answers are cached (keyed by the token's SHA-256, by the user and the request),
//! bounded in size and time; an API server that does not answer within `timeout` is a 503, never
//! an allow. Tokens are never logged, echoed or kept (only their digests).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use futures::StreamExt;
use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use kube::api::{Api, PostParams};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::auth::Principal;
use super::query::ApiError;
use super::{Ctx, Role};
use crate::alerts::Alert;

/// Longest token sent to a TokenReview, in bytes (longer ones are refused, 401, without one).
pub const MAX_KUBERNETES_TOKEN_BYTES: usize = 8192;
/// The API group of the resources the SubjectAccessReviews name (the Alert and SecurityRule
/// CRDs').
pub const API_GROUP: &str = "vulngate.io";
/// Most SubjectAccessReviews one listing sends at once (over the namespaces of the alerts).
const CONCURRENT_REVIEWS: usize = 8;

/// `review.kubernetes` in vulngate.yaml.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct KubernetesAuthConfig {
    /// Accept Kubernetes tokens (needs the `kubernetes` section: its client).
    pub enabled: bool,
    /// How long an authenticated token and an allowed access review are remembered.
    #[serde(with = "crate::config::duration_str")]
    pub cache_ttl: Duration,
    /// How long a refused token and a denied access review are remembered.
    #[serde(with = "crate::config::duration_str")]
    pub negative_cache_ttl: Duration,
    /// Most token answers remembered (the least recently used go first).
    pub max_cached_tokens: u64,
    /// Most access review answers remembered.
    pub max_cached_decisions: u64,
    /// Longest wait for one TokenReview or SubjectAccessReview (then 503).
    #[serde(with = "crate::config::duration_str")]
    pub timeout: Duration,
    /// The audiences a token must be valid for (TokenReview `spec.audiences`); empty: the API
    /// server's own.
    pub audiences: Vec<String>,
    /// Most namespaces of stored alerts reviewed for one listing by a caller without
    /// cluster-wide `list` (the first ones by name; alerts in the others are not listed).
    pub max_namespaces: usize,
}

impl Default for KubernetesAuthConfig {
    fn default() -> Self {
        KubernetesAuthConfig {
            enabled: false,
            cache_ttl: Duration::from_secs(60),
            negative_cache_ttl: Duration::from_secs(10),
            max_cached_tokens: 10_000,
            max_cached_decisions: 100_000,
            timeout: Duration::from_secs(5),
            audiences: Vec::new(),
            max_namespaces: 256,
        }
    }
}

impl KubernetesAuthConfig {
    /// Checks the values (field under `review.kubernetes`, message).
    pub fn validate(&self) -> Result<(), (String, String)> {
        let bad = |f: &str, m: &str| Err((format!("review.kubernetes.{f}"), m.to_string()));
        if self.cache_ttl > Duration::from_secs(3600) {
            return bad("cacheTtl", "must be at most 1h");
        }
        if self.negative_cache_ttl > self.cache_ttl {
            return bad("negativeCacheTtl", "must be at most cacheTtl");
        }
        if self.max_cached_tokens == 0 || self.max_cached_tokens > 1 << 20 {
            return bad("maxCachedTokens", "must be between 1 and 1048576");
        }
        if self.max_cached_decisions == 0 || self.max_cached_decisions > 1 << 22 {
            return bad("maxCachedDecisions", "must be between 1 and 4194304");
        }
        if self.timeout < Duration::from_millis(100) || self.timeout > Duration::from_secs(60) {
            return bad("timeout", "must be between 100ms and 60s");
        }
        if self.audiences.iter().any(|a| a.is_empty() || a.len() > 256) {
            return bad("audiences", "each audience must be 1 to 256 characters");
        }
        if self.max_namespaces == 0 || self.max_namespaces > 10_000 {
            return bad("maxNamespaces", "must be between 1 and 10000");
        }
        Ok(())
    }
}

/// A user the API server authenticated (TokenReview `status.user`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KubernetesUser {
    pub username: String,
    pub uid: Option<String>,
    pub groups: Vec<String>,
    pub extra: BTreeMap<String, Vec<String>>,
}

impl KubernetesUser {
    /// The digest of everything an access review sends about the user.
    fn key(&self) -> [u8; 32] {
        let mut h = Sha256::new();
        let mut field = |s: &str| {
            h.update((s.len() as u64).to_le_bytes());
            h.update(s.as_bytes());
        };
        field(&self.username);
        field(self.uid.as_deref().unwrap_or(""));
        for g in &self.groups {
            field(g);
        }
        field("");
        for (k, vs) in &self.extra {
            field(k);
            for v in vs {
                field(v);
            }
            field("");
        }
        h.finalize().into()
    }
}

/// An access review: the verb on a resource of [`API_GROUP`] in a namespace ("": cluster-wide).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Verb {
    Get,
    List,
    Update,
}

impl Verb {
    pub fn as_str(self) -> &'static str {
        match self {
            Verb::Get => "get",
            Verb::List => "list",
            Verb::Update => "update",
        }
    }
}

type DecisionKey = ([u8; 32], Verb, &'static str, String);

/// Cached answers live `cache_ttl` when positive, `negative_cache_ttl` when negative.
struct Ttl {
    positive: Duration,
    negative: Duration,
}

impl moka::Expiry<[u8; 32], Option<KubernetesUser>> for Ttl {
    fn expire_after_create(
        &self,
        _: &[u8; 32],
        v: &Option<KubernetesUser>,
        _: Instant,
    ) -> Option<Duration> {
        Some(if v.is_some() {
            self.positive
        } else {
            self.negative
        })
    }
}

impl moka::Expiry<DecisionKey, bool> for Ttl {
    fn expire_after_create(&self, _: &DecisionKey, allowed: &bool, _: Instant) -> Option<Duration> {
        Some(if *allowed {
            self.positive
        } else {
            self.negative
        })
    }
}

/// The Kubernetes side of the review listener's authentication and authorisation.
pub(crate) struct KubernetesAuth {
    config: KubernetesAuthConfig,
    client: OnceLock<kube::Client>,
    tokens: moka::future::Cache<[u8; 32], Option<KubernetesUser>>,
    decisions: moka::future::Cache<DecisionKey, bool>,
    /// The namespaces of the stored alerts, read at most once per `cache_ttl`.
    namespaces: Mutex<Option<(Instant, Arc<Vec<String>>)>>,
}

impl std::fmt::Debug for KubernetesAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubernetesAuth")
            .field("config", &self.config)
            .field("client", &self.client.get().is_some())
            .finish_non_exhaustive()
    }
}

fn unavailable(what: &str, e: impl std::fmt::Display) -> ApiError {
    tracing::warn!(error = %e, "review: {what} failed");
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "kubernetes-unavailable",
        format!("the Kubernetes API server did not answer the {what}: {e}"),
    )
}

impl KubernetesAuth {
    pub fn new(config: &KubernetesAuthConfig) -> KubernetesAuth {
        let ttl = || Ttl {
            positive: config.cache_ttl,
            negative: config.negative_cache_ttl,
        };
        KubernetesAuth {
            config: config.clone(),
            client: OnceLock::new(),
            tokens: moka::future::Cache::builder()
                .max_capacity(config.max_cached_tokens)
                .expire_after(ttl())
                .build(),
            decisions: moka::future::Cache::builder()
                .max_capacity(config.max_cached_decisions)
                .expire_after(ttl())
                .build(),
            namespaces: Mutex::new(None),
        }
    }

    /// The client the reviews go through (the server's, set once it has one).
    pub fn set_client(&self, client: kube::Client) {
        let _ = self.client.set(client);
    }

    fn client(&self) -> Result<kube::Client, ApiError> {
        self.client.get().cloned().ok_or_else(|| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "kubernetes-unavailable",
                "review.kubernetes is on but the server has no Kubernetes client yet",
            )
        })
    }

    /// The caller a Kubernetes token names (a TokenReview, or its cached answer): 401 when
    /// the API server does not authenticate it (or it is longer than
    /// [`MAX_KUBERNETES_TOKEN_BYTES`]: no review sent), 503 when the API server does not answer.
    pub async fn principal(&self, token: &str) -> Result<Principal, ApiError> {
        if token.is_empty() || token.len() > MAX_KUBERNETES_TOKEN_BYTES {
            return Err(ApiError::unauthorized());
        }
        let key: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let user = self
            .tokens
            .try_get_with(key, self.token_review(token))
            .await
            .map_err(|e| (*e).clone())?;
        let user = user.ok_or_else(ApiError::unauthorized)?;
        Ok(Principal {
            name: user.username.clone(),
            // Every check of a role refuses what a reader may not do: a Kubernetes caller is
            // authorised by access reviews, never by a role.
            role: Role::Reader,
            kubernetes: Some(Arc::new(user)),
        })
    }

    /// Creates `review` (a TokenReview or SubjectAccessReview: cluster-scoped, answered in
    /// its status) within `review.kubernetes.timeout`; `what` names it in the 503.
    async fn create<K>(&self, what: &str, client: kube::Client, review: &K) -> Result<K, ApiError>
    where
        K: kube::Resource<Scope = k8s_openapi::ClusterResourceScope>
            + Clone
            + std::fmt::Debug
            + serde::de::DeserializeOwned
            + Serialize,
        K::DynamicType: Default,
    {
        let api: Api<K> = Api::all(client);
        tokio::time::timeout(
            self.config.timeout,
            api.create(&PostParams::default(), review),
        )
        .await
        .map_err(|_| {
            unavailable(
                what,
                format!(
                    "no answer within {:?} (review.kubernetes.timeout)",
                    self.config.timeout
                ),
            )
        })?
        .map_err(|e| unavailable(what, e))
    }

    async fn token_review(&self, token: &str) -> Result<Option<KubernetesUser>, ApiError> {
        let client = self.client()?;
        let review = TokenReview {
            spec: TokenReviewSpec {
                token: token.to_string(),
                audiences: (!self.config.audiences.is_empty())
                    .then(|| self.config.audiences.clone()),
            },
            ..TokenReview::default()
        };
        let answer = self.create("TokenReview", client, &review).await?;
        let status = answer.status.unwrap_or_default();
        if status.authenticated != Some(true) {
            if let Some(e) = status.error.filter(|e| !e.is_empty()) {
                tracing::debug!(error = %e, "review: the API server did not authenticate a token");
            }
            return Ok(None);
        }
        if !self.config.audiences.is_empty() {
            let valid = status.audiences.unwrap_or_default();
            if !self.config.audiences.iter().any(|a| valid.contains(a)) {
                tracing::debug!("review: a token is not valid for review.kubernetes.audiences");
                return Ok(None);
            }
        }
        let Some(user) = status.user else {
            return Ok(None);
        };
        let Some(username) = user.username.filter(|u| !u.is_empty()) else {
            return Ok(None);
        };
        Ok(Some(KubernetesUser {
            username,
            uid: user.uid.filter(|u| !u.is_empty()),
            groups: user.groups.unwrap_or_default(),
            extra: user.extra.unwrap_or_default(),
        }))
    }

    /// Whether `user` may `verb` the `resource` of [`API_GROUP`] in `namespace` ("":
    /// cluster-wide): a SubjectAccessReview, or its cached answer.
    pub async fn allowed(
        &self,
        user: &KubernetesUser,
        verb: Verb,
        resource: &'static str,
        namespace: &str,
    ) -> Result<bool, ApiError> {
        let key = (user.key(), verb, resource, namespace.to_string());
        self.decisions
            .try_get_with(key, self.access_review(user, verb, resource, namespace))
            .await
            .map_err(|e| (*e).clone())
    }

    async fn access_review(
        &self,
        user: &KubernetesUser,
        verb: Verb,
        resource: &'static str,
        namespace: &str,
    ) -> Result<bool, ApiError> {
        let client = self.client()?;
        let review = SubjectAccessReview {
            spec: SubjectAccessReviewSpec {
                user: Some(user.username.clone()),
                uid: user.uid.clone(),
                groups: Some(user.groups.clone()),
                extra: (!user.extra.is_empty()).then(|| user.extra.clone()),
                resource_attributes: Some(ResourceAttributes {
                    group: Some(API_GROUP.into()),
                    resource: Some(resource.into()),
                    verb: Some(verb.as_str().into()),
                    namespace: (!namespace.is_empty()).then(|| namespace.to_string()),
                    ..ResourceAttributes::default()
                }),
                ..SubjectAccessReviewSpec::default()
            },
            ..SubjectAccessReview::default()
        };
        let answer = self.create("SubjectAccessReview", client, &review).await?;
        let status = answer.status.unwrap_or_default();
        if let Some(e) = status.evaluation_error.as_deref().filter(|e| !e.is_empty()) {
            tracing::debug!(error = %e, user = %user.username, "review: access review evaluation error");
        }
        Ok(status.allowed && status.denied != Some(true))
    }

    /// The namespaces of the stored alerts (at most `maxNamespaces`), read again after
    /// `cacheTtl`.
    async fn stored_namespaces(&self, ctx: &Ctx) -> Result<Arc<Vec<String>>, ApiError> {
        if let Ok(g) = self.namespaces.lock() {
            if let Some((at, ns)) = g.as_ref() {
                if at.elapsed() < self.config.cache_ttl {
                    return Ok(ns.clone());
                }
            }
        }
        let store = ctx.state.alerts.clone();
        let max = self.config.max_namespaces;
        let ns = match tokio::task::spawn_blocking(move || store.namespaces(max)).await {
            Ok(Ok(ns)) => Arc::new(ns),
            Ok(Err(e)) => {
                tracing::error!(error = %e, "review: listing the namespaces of the alerts");
                return Err(ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "store-unavailable",
                    "the alert store cannot list the namespaces of its alerts: without \
                     cluster-wide list on alerts.vulngate.io, give namespace=",
                ));
            }
            Err(e) => {
                return Err(ApiError::store(&crate::alerts::AlertError::Other(
                    e.to_string(),
                )))
            }
        };
        if let Ok(mut g) = self.namespaces.lock() {
            *g = Some((Instant::now(), ns.clone()));
        }
        Ok(ns)
    }
}

/// The alerts a caller may list and count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Visible {
    /// Every alert (a static token, or cluster-wide `list`).
    All,
    /// The alerts of these namespaces only (maybe none).
    Namespaces(Vec<String>),
}

fn forbidden(user: &str, what: String) -> ApiError {
    ApiError::new(
        StatusCode::FORBIDDEN,
        "forbidden",
        format!("Kubernetes user {user:?} cannot {what}"),
    )
}

/// What `who` may list under `namespace` (the `namespace=` filter): everything with a static
/// token or cluster-wide `list` on alerts; else with a filter, that namespace if `list` is
/// allowed there (403 otherwise); without one, the namespaces of the stored alerts (the first
/// `maxNamespaces` by name) where `list` is allowed.
pub(crate) async fn visible(
    ctx: &Ctx,
    who: &Principal,
    namespace: Option<&str>,
) -> Result<Visible, ApiError> {
    let (Some(user), Some(k)) = (who.kubernetes.as_deref(), ctx.review.kubernetes.as_ref()) else {
        return Ok(Visible::All);
    };
    if k.allowed(user, Verb::List, "alerts", "").await? {
        return Ok(Visible::All);
    }
    if let Some(ns) = namespace {
        return if k.allowed(user, Verb::List, "alerts", ns).await? {
            Ok(Visible::Namespaces(vec![ns.to_string()]))
        } else {
            Err(forbidden(
                &user.username,
                format!("list alerts.{API_GROUP} in namespace {ns:?}"),
            ))
        };
    }
    let stored = k.stored_namespaces(ctx).await?;
    let answers: Vec<(String, Result<bool, ApiError>)> =
        futures::stream::iter(stored.iter().cloned())
            .map(|ns| async move {
                let r = k.allowed(user, Verb::List, "alerts", &ns).await;
                (ns, r)
            })
            .buffered(CONCURRENT_REVIEWS)
            .collect()
            .await;
    let mut allowed = Vec::new();
    for (ns, r) in answers {
        if r? {
            allowed.push(ns);
        }
    }
    Ok(Visible::Namespaces(allowed))
}

/// Whether `who` may read `alert` (`get` in its namespace; cluster-wide for an alert without
/// one). A Kubernetes caller who may not is told there is no such alert (404): whether an
/// alert exists in a namespace is not revealed.
pub(crate) async fn may_read(ctx: &Ctx, who: &Principal, alert: &Alert) -> Result<(), ApiError> {
    let (Some(user), Some(k)) = (who.kubernetes.as_deref(), ctx.review.kubernetes.as_ref()) else {
        return Ok(());
    };
    let ns = alert.namespace.as_deref().unwrap_or("");
    if k.allowed(user, Verb::Get, "alerts", ns).await? {
        Ok(())
    } else {
        Err(ApiError::not_found(format!(
            "no alert {}",
            super::query::shorten(&alert.id)
        )))
    }
}

/// Whether `who` may change `alert`'s review state: a reviewer token, or `update` on alerts in
/// its namespace (403 otherwise; [`may_read`] first).
pub(crate) async fn may_change(ctx: &Ctx, who: &Principal, alert: &Alert) -> Result<(), ApiError> {
    let (Some(user), Some(k)) = (who.kubernetes.as_deref(), ctx.review.kubernetes.as_ref()) else {
        return if who.role >= Role::Reviewer {
            Ok(())
        } else {
            Err(reader_refused(who, "change alerts"))
        };
    };
    let ns = alert.namespace.as_deref().unwrap_or("");
    if k.allowed(user, Verb::Update, "alerts", ns).await? {
        Ok(())
    } else {
        Err(forbidden(
            &user.username,
            if ns.is_empty() {
                format!("update alerts.{API_GROUP} cluster-wide")
            } else {
                format!("update alerts.{API_GROUP} in namespace {ns:?}")
            },
        ))
    }
}

/// The 403 of a reader token.
pub(crate) fn reader_refused(who: &Principal, what: &str) -> ApiError {
    ApiError::new(
        StatusCode::FORBIDDEN,
        "forbidden",
        format!("token {:?} has the reader role: it cannot {what}", who.name),
    )
}

/// Whether `who` may read the rules (`list` on `securityrules` cluster-wide for a Kubernetes
/// caller; every token holder otherwise): the API's and the console's rules views.
pub(crate) async fn may_read_rules(ctx: &Ctx, who: &Principal) -> Result<(), ApiError> {
    may_cluster(ctx, who, Verb::List, "securityrules", "read the rules").await
}

/// Whether `who` may run what-if evaluations (the same permission as reading the rules): the
/// API's `POST /api/v1/evaluate` and the console's what-if form.
pub(crate) async fn may_evaluate(ctx: &Ctx, who: &Principal) -> Result<(), ApiError> {
    may_cluster(
        ctx,
        who,
        Verb::List,
        "securityrules",
        "run what-if evaluations",
    )
    .await
}

/// Whether `who` may `verb` `resource` of [`API_GROUP`] cluster-wide: any token for reading
/// (a reviewer token for `update`); a Kubernetes caller by an access review (403 otherwise).
/// The rules and what-if need `list` on `securityrules`; the notification outbox `list`
/// (reading) and `update` (retry) on `alerts`, cluster-wide.
pub(crate) async fn may_cluster(
    ctx: &Ctx,
    who: &Principal,
    verb: Verb,
    resource: &'static str,
    what: &str,
) -> Result<(), ApiError> {
    let (Some(user), Some(k)) = (who.kubernetes.as_deref(), ctx.review.kubernetes.as_ref()) else {
        return if verb != Verb::Update || who.role >= Role::Reviewer {
            Ok(())
        } else {
            Err(reader_refused(who, what))
        };
    };
    if k.allowed(user, verb, resource, "").await? {
        Ok(())
    } else {
        Err(forbidden(
            &user.username,
            format!(
                "{what}: that needs {} on {resource}.{API_GROUP} cluster-wide",
                verb.as_str()
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_are_valid_and_bounds_are_checked() {
        let c = KubernetesAuthConfig::default();
        assert!(!c.enabled);
        c.validate().unwrap();
        for (bad, field) in [
            (
                KubernetesAuthConfig {
                    max_cached_tokens: 0,
                    ..c.clone()
                },
                "review.kubernetes.maxCachedTokens",
            ),
            (
                KubernetesAuthConfig {
                    timeout: Duration::from_secs(600),
                    ..c.clone()
                },
                "review.kubernetes.timeout",
            ),
            (
                KubernetesAuthConfig {
                    negative_cache_ttl: Duration::from_secs(120),
                    ..c.clone()
                },
                "review.kubernetes.negativeCacheTtl",
            ),
            (
                KubernetesAuthConfig {
                    max_namespaces: 0,
                    ..c.clone()
                },
                "review.kubernetes.maxNamespaces",
            ),
        ] {
            assert_eq!(bad.validate().unwrap_err().0, field);
        }
    }

    #[test]
    fn the_user_key_tells_users_apart() {
        let u = KubernetesUser {
            username: "alice".into(),
            uid: None,
            groups: vec!["team-a".into()],
            extra: BTreeMap::new(),
        };
        let mut other_groups = u.clone();
        other_groups.groups = vec!["team-a".into(), "admins".into()];
        let mut joined = u.clone();
        joined.username = "aliceteam-a".into();
        joined.groups.clear();
        assert_ne!(u.key(), other_groups.key());
        assert_ne!(u.key(), joined.key());
        assert_eq!(u.key(), u.clone().key());
    }

    #[tokio::test]
    async fn an_oversized_or_empty_token_is_refused_without_a_review() {
        // No client: a review would be a 503, not the 401 of a refused token.
        let k = KubernetesAuth::new(&KubernetesAuthConfig::default());
        let e = k
            .principal(&"x".repeat(MAX_KUBERNETES_TOKEN_BYTES + 1))
            .await
            .unwrap_err();
        assert_eq!(e.status, StatusCode::UNAUTHORIZED);
        assert_eq!(
            k.principal("").await.unwrap_err().status,
            StatusCode::UNAUTHORIZED
        );
        let e = k.principal("some-token").await.unwrap_err();
        assert_eq!(e.status, StatusCode::SERVICE_UNAVAILABLE, "{e:?}");
    }
}
