//! The HTTP side of the OCI distribution API: authenticated, guarded, size-capped, digest-checked.
//!
//! Why reqwest directly and not `oci-client`: oci-client builds its own reqwest client, so a
//! filtering DNS resolver, a redirect policy that re-checks every hop, and per-registry CA bundles
//! with the address guard cannot be installed; it also reads manifests and blobs whole before any
//! size check. Every request here goes through [`Repo::send`], which checks the URL with the guard,
//! applies the request timeout (client-wide), authenticates (bearer challenge or basic), and every
//! body is streamed through [`read_capped`], which stops at the limit and hashes as it reads.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use reqwest::header::{
    HeaderMap, HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE, WWW_AUTHENTICATE,
};
use reqwest::{Client, Method, StatusCode, Url};
use serde::Deserialize;

use crate::auth::Credentials;
use crate::config::RegistryConfig;
use crate::error::{describe_reqwest, Error, Result};
use crate::guard::{FilteringResolver, Guard};
use crate::oci::{self, Descriptor, Hasher, Manifest};

/// Shared by all lookups: clients, credentials, token cache.
#[derive(Debug)]
pub(crate) struct Transport {
    pub guard: Arc<Guard>,
    default_client: Client,
    /// Clients of registries with their own CA bundle.
    ca_clients: HashMap<String, Client>,
    creds: Credentials,
    tokens: Mutex<HashMap<String, (String, Instant)>>,
    /// Repositories (`host/name`) whose referrers endpoint answered a plain 404 (no such route: the
    /// registry predates the referrers API), with when; asked again after [`NO_REFERRERS_TTL`].
    /// Saves one round trip per referrers query on such registries (e.g. distribution 2.x).
    no_referrers_api: Mutex<HashMap<String, Instant>>,
    pub request_timeout: Duration,
}

/// How long a registry without the referrers API is remembered as such (an upgraded registry
/// is noticed after at most this long).
pub const NO_REFERRERS_TTL: Duration = Duration::from_secs(300);

fn build_client(guard: &Arc<Guard>, timeout: Duration, extra_ca: Option<&[u8]>) -> Result<Client> {
    let g = guard.clone();
    let policy = reqwest::redirect::Policy::custom(move |attempt| {
        if attempt.previous().len() >= 5 {
            return attempt.error("too many redirects (limit 5)");
        }
        match g.check_url(attempt.url()) {
            Ok(()) => attempt.follow(),
            Err(e) => attempt.error(e),
        }
    });
    let mut b = Client::builder()
        .use_rustls_tls()
        .dns_resolver(Arc::new(FilteringResolver(guard.clone())))
        .redirect(policy)
        // Proxies resolve names themselves, which would bypass the address guard.
        .no_proxy()
        .timeout(timeout)
        .connect_timeout(timeout)
        .user_agent(concat!("vulngate/", env!("CARGO_PKG_VERSION")));
    if let Some(pem) = extra_ca {
        let certs = reqwest::Certificate::from_pem_bundle(pem)
            .map_err(|e| Error::Config(format!("CA bundle: {}", describe_reqwest(&e))))?;
        if certs.is_empty() {
            return Err(Error::Config("CA bundle holds no certificate".into()));
        }
        for c in certs {
            b = b.add_root_certificate(c);
        }
    }
    b.build()
        .map_err(|e| Error::Config(format!("HTTP client: {}", describe_reqwest(&e))))
}

impl Transport {
    pub fn new(cfg: &RegistryConfig) -> Result<Transport> {
        let guard = Arc::new(Guard::new(cfg)?);
        let timeout = cfg.timeouts.request;
        let default_client = build_client(&guard, timeout, None)?;
        let mut ca_clients = HashMap::new();
        for (host, path) in &cfg.ca_bundles {
            let pem =
                vulngate_core::limits::read_capped(path, vulngate_core::limits::FileKind::Config)
                    .map_err(|e| Error::Config(format!("caBundles[{host}]: {e}")))?;
            let c = build_client(&guard, timeout, Some(&pem))
                .map_err(|e| Error::Config(format!("caBundles[{host}]: {e}")))?;
            ca_clients.insert(host.to_ascii_lowercase(), c);
        }
        Ok(Transport {
            guard,
            default_client,
            ca_clients,
            creds: Credentials::load(&cfg.auth)?,
            tokens: Mutex::new(HashMap::new()),
            no_referrers_api: Mutex::new(HashMap::new()),
            request_timeout: timeout,
        })
    }

    /// A repository handle; checks the registry host against the guard.
    /// `extra`: per-call credentials (a pod's pull secrets) that take precedence over the
    /// configured ones for their registries.
    pub fn repo<'a>(
        &'a self,
        registry: &str,
        repository: &str,
        push: bool,
        extra: Option<&'a Credentials>,
    ) -> Result<Repo<'a>> {
        // Docker Hub's API lives on registry-1.docker.io.
        let host = if registry == "docker.io" {
            "registry-1.docker.io".to_string()
        } else {
            registry.to_ascii_lowercase()
        };
        if !vulngate_core::image::is_valid_registry_host(&host) {
            return Err(Error::Invalid {
                what: format!("image reference {registry:?}"),
                reason: "registry is not a host name or IP address with an optional :port".into(),
            });
        }
        if !vulngate_core::image::is_valid_repository(repository) {
            return Err(Error::Invalid {
                what: format!("image reference {registry}/{repository:?}"),
                reason: "repository name does not match the OCI distribution spec grammar".into(),
            });
        }
        let scheme = if self.guard.is_insecure(&host) {
            "http"
        } else {
            "https"
        };
        let base = Url::parse(&format!("{scheme}://{host}/"))
            .map_err(|e| Error::Config(format!("registry {registry:?}: {e}")))?;
        self.guard.check_url(&base)?;
        let client = self.ca_clients.get(&host).unwrap_or(&self.default_client);
        // Tokens obtained with per-call credentials are cached under those credentials only
        // (a fingerprint of them), never shared with lookups that lack them.
        let extra = extra.filter(|c| c.get(registry, &host).is_some());
        let cred_tag = extra
            .and_then(|c| c.get(registry, &host))
            .map(|(u, p)| {
                use sha2::Digest as _;
                let h = sha2::Sha256::digest(format!("{u}:{p}").as_bytes());
                format!("|pod:{:x}", h)[..22].to_string()
            })
            .unwrap_or_default();
        Ok(Repo {
            t: self,
            extra,
            cred_tag,
            registry: registry.to_string(),
            host,
            base,
            name: repository.to_string(),
            client,
            scope: format!(
                "repository:{repository}:{}",
                if push { "pull,push" } else { "pull" }
            ),
        })
    }
}

/// A repository on a registry, with what it takes to talk to it.
#[derive(Debug)]
pub(crate) struct Repo<'a> {
    t: &'a Transport,
    /// Per-call credentials (only when they cover this registry).
    extra: Option<&'a Credentials>,
    /// Token cache key suffix for `extra` (empty: the configured credentials).
    cred_tag: String,
    /// As in the image reference (credentials are looked up under it).
    registry: String,
    host: String,
    base: Url,
    pub name: String,
    client: &'a Client,
    scope: String,
}

/// A fetched body, verified.
#[derive(Debug)]
pub(crate) struct Fetched {
    pub bytes: Vec<u8>,
    pub digest: String,
    pub content_type: Option<String>,
}

/// Reads a response body, at most `limit` bytes, hashing as it goes.
pub(crate) async fn read_capped(
    mut resp: reqwest::Response,
    limit: u64,
    what: &str,
    algo_like: &str,
) -> Result<(Vec<u8>, String)> {
    let declared = resp.content_length();
    if let Some(len) = declared {
        if len > limit {
            return Err(Error::TooLarge {
                what: what.to_string(),
                limit,
            });
        }
    }
    let mut buf = Vec::with_capacity(declared.unwrap_or(0).min(limit).min(1 << 20) as usize);
    let mut h = Hasher::for_digest(algo_like);
    loop {
        match resp.chunk().await {
            Ok(Some(c)) => {
                if buf.len() as u64 + c.len() as u64 > limit {
                    return Err(Error::TooLarge {
                        what: what.to_string(),
                        limit,
                    });
                }
                h.update(&c);
                buf.extend_from_slice(&c);
            }
            Ok(None) => break,
            Err(e) if e.is_timeout() => {
                return Err(Error::Timeout {
                    what: what.to_string(),
                    after: Duration::ZERO,
                })
            }
            Err(e) => {
                return Err(match declared {
                    Some(len) => Error::Truncated {
                        what: what.to_string(),
                        got: buf.len() as u64,
                        expected: len,
                    },
                    None => Error::Transport {
                        what: what.to_string(),
                        reason: describe_reqwest(&e),
                    },
                })
            }
        }
    }
    if let Some(len) = declared {
        if (buf.len() as u64) < len {
            return Err(Error::Truncated {
                what: what.to_string(),
                got: buf.len() as u64,
                expected: len,
            });
        }
    }
    Ok((buf, h.finish()))
}

/// `Bearer realm="..",service="..",scope=".."` -> (scheme, params).
fn parse_challenge(v: &str) -> (String, HashMap<String, String>) {
    let v = v.trim();
    let (scheme, rest) = v.split_once(' ').unwrap_or((v, ""));
    let mut params = HashMap::new();
    let mut chars = rest.chars().peekable();
    loop {
        while matches!(chars.peek(), Some(' ' | ',')) {
            chars.next();
        }
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
        if key.is_empty() {
            break;
        }
        let mut val = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => {
                        if let Some(n) = chars.next() {
                            val.push(n)
                        }
                    }
                    '"' => break,
                    c => val.push(c),
                }
            }
        } else {
            val = chars.by_ref().take_while(|c| *c != ',').collect();
        }
        params.insert(key.trim().to_ascii_lowercase(), val);
    }
    (scheme.to_ascii_lowercase(), params)
}

#[derive(Deserialize)]
struct TokenResponse {
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    access_token: Option<String>,
    #[serde(default)]
    expires_in: Option<u64>,
}

fn status_error(what: &str, resp: &reqwest::Response) -> Error {
    let what = what.to_string();
    let status = resp.status();
    match status {
        StatusCode::NOT_FOUND => Error::NotFound {
            what,
            json: resp
                .headers()
                .get(reqwest::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.to_ascii_lowercase().contains("json")),
        },
        StatusCode::UNAUTHORIZED => Error::Unauthorized {
            what,
            detail: String::new(),
        },
        StatusCode::FORBIDDEN => Error::Forbidden { what },
        StatusCode::TOO_MANY_REQUESTS => Error::RateLimited {
            what,
            retry: resp
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .map(|v| format!(", retry after {v}"))
                .unwrap_or_default(),
        },
        s if s.is_server_error() => Error::Server {
            what,
            status: s.as_u16(),
        },
        s => Error::Status {
            what,
            status: s.as_u16(),
        },
    }
}

/// A manifest reference (tag or digest) must match the distribution spec before it becomes
/// part of a URL path (a hostile index could name `../../admin`).
fn check_reference(what: &str, reference: &str) -> Result<()> {
    if vulngate_core::image::is_valid_tag(reference)
        || vulngate_core::image::is_valid_digest(reference)
    {
        Ok(())
    } else {
        Err(Error::Invalid {
            what: what.to_string(),
            reason: "reference is neither a tag nor a sha256/sha512 digest (OCI distribution spec)"
                .into(),
        })
    }
}

impl Repo<'_> {
    pub fn url(&self, path: &str) -> Result<Url> {
        self.base
            .join(&format!("v2/{}/{path}", self.name))
            .map_err(|e| Error::Config(format!("building URL for {path}: {e}")))
    }

    fn cached_token(&self) -> Option<String> {
        let key = format!("{}|{}{}", self.host, self.scope, self.cred_tag);
        let tokens = self.t.tokens.lock().ok()?;
        match tokens.get(&key) {
            Some((tok, until)) if *until > Instant::now() => Some(tok.clone()),
            _ => None,
        }
    }

    fn basic_header(&self) -> Option<HeaderValue> {
        let (u, p) = match self.extra.and_then(|c| c.get(&self.registry, &self.host)) {
            Some(c) => c,
            None => self.t.creds.get(&self.registry, &self.host)?,
        };
        let enc = base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"));
        let mut v = HeaderValue::from_str(&format!("Basic {enc}")).ok()?;
        v.set_sensitive(true);
        Some(v)
    }

    /// Runs the token flow of a `Bearer` challenge.
    async fn fetch_token(&self, params: &HashMap<String, String>, what: &str) -> Result<String> {
        let realm = params.get("realm").ok_or_else(|| Error::Unauthorized {
            what: what.to_string(),
            detail: ": bearer challenge without realm".into(),
        })?;
        let mut url = Url::parse(realm).map_err(|_| Error::Unauthorized {
            what: what.to_string(),
            detail: ": invalid token realm".into(),
        })?;
        self.t.guard.check_url(&url)?;
        {
            let mut q = url.query_pairs_mut();
            if let Some(s) = params.get("service") {
                q.append_pair("service", s);
            }
            q.append_pair("scope", &self.scope);
        }
        let mut req = self.client.get(url);
        if let Some(b) = self.basic_header() {
            req = req.header(AUTHORIZATION, b);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| self.transport_error("token request", &e))?;
        if !resp.status().is_success() {
            let e = status_error("token request", &resp);
            return Err(match e {
                Error::Unauthorized { .. } | Error::Forbidden { .. } => Error::Unauthorized {
                    what: what.to_string(),
                    detail: format!(": token endpoint refused ({})", resp.status().as_u16()),
                },
                other => other,
            });
        }
        let (body, _) = read_capped(resp, 256 << 10, "token response", "sha256:").await?;
        let tr: TokenResponse = serde_json::from_slice(&body).map_err(|_| Error::Unauthorized {
            what: what.to_string(),
            detail: ": token endpoint answered no JSON token".into(),
        })?;
        let tok = tr
            .token
            .or(tr.access_token)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| Error::Unauthorized {
                what: what.to_string(),
                detail: ": token endpoint answered no token".into(),
            })?;
        let ttl = Duration::from_secs(tr.expires_in.unwrap_or(60).clamp(10, 3600))
            - Duration::from_secs(5);
        if let Ok(mut m) = self.t.tokens.lock() {
            m.insert(
                format!("{}|{}{}", self.host, self.scope, self.cred_tag),
                (tok.clone(), Instant::now() + ttl),
            );
        }
        Ok(tok)
    }

    fn transport_error(&self, what: &str, e: &reqwest::Error) -> Error {
        if e.is_timeout() {
            return Error::Timeout {
                what: what.to_string(),
                after: self.t.request_timeout,
            };
        }
        // A guard refusal inside the resolver / redirect policy: surface it as such.
        use std::error::Error as _;
        let mut src = e.source();
        while let Some(s) = src {
            if let Some(g) = s.downcast_ref::<Error>() {
                return match g {
                    Error::AddressRefused {
                        host,
                        reason,
                        refusal,
                    } => Error::AddressRefused {
                        host: host.clone(),
                        reason: format!("{reason} (while requesting {what})"),
                        refusal: *refusal,
                    },
                    Error::HostNotAllowed {
                        host,
                        reason,
                        refusal,
                    } => Error::HostNotAllowed {
                        host: host.clone(),
                        reason: format!("{reason} (while requesting {what})"),
                        refusal: *refusal,
                    },
                    other => Error::Transport {
                        what: what.to_string(),
                        reason: other.to_string(),
                    },
                };
            }
            src = s.source();
        }
        Error::Transport {
            what: what.to_string(),
            reason: describe_reqwest(e),
        }
    }

    /// Sends a request with authentication; returns a successful (2xx) response.
    pub async fn send(
        &self,
        method: Method,
        url: Url,
        headers: HeaderMap,
        body: Option<Vec<u8>>,
        what: &str,
    ) -> Result<reqwest::Response> {
        self.t.guard.check_url(&url)?;
        let mut auth: Option<HeaderValue> = self.cached_token().and_then(|t| {
            let mut v = HeaderValue::from_str(&format!("Bearer {t}")).ok()?;
            v.set_sensitive(true);
            Some(v)
        });
        for attempt in 0..2 {
            let mut req = self
                .client
                .request(method.clone(), url.clone())
                .headers(headers.clone());
            if let Some(a) = &auth {
                req = req.header(AUTHORIZATION, a.clone());
            }
            if let Some(b) = &body {
                req = req.body(b.clone());
            }
            let resp = req
                .send()
                .await
                .map_err(|e| self.transport_error(what, &e))?;
            if resp.status() == StatusCode::UNAUTHORIZED && attempt == 0 {
                let challenge = resp
                    .headers()
                    .get(WWW_AUTHENTICATE)
                    .and_then(|v| v.to_str().ok())
                    .map(parse_challenge);
                match challenge {
                    Some((scheme, params)) if scheme == "bearer" => {
                        let tok = self.fetch_token(&params, what).await?;
                        let mut v =
                            HeaderValue::from_str(&format!("Bearer {tok}")).map_err(|_| {
                                Error::Unauthorized {
                                    what: what.to_string(),
                                    detail: ": token is not a valid header value".into(),
                                }
                            })?;
                        v.set_sensitive(true);
                        auth = Some(v);
                        continue;
                    }
                    Some((scheme, _)) if scheme == "basic" => match self.basic_header() {
                        Some(b) => {
                            auth = Some(b);
                            continue;
                        }
                        None => {
                            return Err(Error::Unauthorized {
                                what: what.to_string(),
                                detail: format!(
                                    ": no credentials configured for {}",
                                    self.registry
                                ),
                            })
                        }
                    },
                    _ => {}
                }
            }
            if resp.status().is_success() {
                return Ok(resp);
            }
            let mut e = status_error(what, &resp);
            if let Error::Unauthorized { detail, .. } = &mut e {
                if auth.is_some() {
                    *detail = ": credentials or token rejected".into();
                }
            }
            return Err(e);
        }
        Err(Error::Unauthorized {
            what: what.to_string(),
            detail: ": still unauthorized after authenticating".into(),
        })
    }

    /// GET a manifest by tag or digest, capped, digest-checked (against the digest reference,
    /// else against `Docker-Content-Digest` when the registry sends it).
    pub async fn get_manifest(
        &self,
        reference: &str,
        accept: &[&str],
        limit: u64,
    ) -> Result<Fetched> {
        let what = format!("manifest {}@{reference}", self.name);
        check_reference(&what, reference)?;
        let url = self.url(&format!("manifests/{reference}"))?;
        let mut h = HeaderMap::new();
        h.insert(
            ACCEPT,
            HeaderValue::from_str(&accept.join(", ")).map_err(|e| Error::Config(e.to_string()))?,
        );
        let resp = self.send(Method::GET, url, h, None, &what).await?;
        let content_type = resp
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|s| s.split(';').next().unwrap_or(s).trim().to_string());
        let header_digest = resp
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let is_digest = vulngate_core::image::is_valid_digest(reference);
        let algo = if is_digest {
            reference.to_string()
        } else {
            header_digest.clone().unwrap_or_default()
        };
        let (bytes, digest) = read_capped(resp, limit, &what, &algo).await?;
        let expected = if is_digest {
            Some(reference.to_string())
        } else {
            header_digest
        };
        if let Some(exp) = expected {
            if exp != digest {
                return Err(Error::DigestMismatch {
                    what,
                    expected: exp,
                    actual: digest,
                });
            }
        }
        Ok(Fetched {
            bytes,
            digest,
            content_type,
        })
    }

    /// GET a blob, capped at `min(limit, desc.size)`, checked against the descriptor.
    pub async fn get_blob(&self, desc: &Descriptor, limit: u64) -> Result<Vec<u8>> {
        let what = format!("blob {}@{}", self.name, desc.digest);
        if !vulngate_core::image::is_valid_digest(&desc.digest) {
            return Err(Error::Invalid {
                what,
                reason: "descriptor digest is not sha256/sha512".into(),
            });
        }
        if desc.size > limit {
            return Err(Error::TooLarge { what, limit });
        }
        let url = self.url(&format!("blobs/{}", desc.digest))?;
        let resp = self
            .send(Method::GET, url, HeaderMap::new(), None, &what)
            .await?;
        let (bytes, digest) = match read_capped(resp, desc.size, &what, &desc.digest).await {
            Err(Error::TooLarge { what, .. }) => {
                return Err(Error::Invalid {
                    what,
                    reason: format!("more bytes than the descriptor's size {}", desc.size),
                })
            }
            r => r?,
        };
        if bytes.len() as u64 != desc.size {
            return Err(Error::Truncated {
                what,
                got: bytes.len() as u64,
                expected: desc.size,
            });
        }
        if digest != desc.digest {
            return Err(Error::DigestMismatch {
                what,
                expected: desc.digest.clone(),
                actual: digest,
            });
        }
        Ok(bytes)
    }

    /// Key of [`Transport::no_referrers_api`]: per repository, so that one odd answer never
    /// turns the API off for a whole registry.
    fn referrers_key(&self) -> String {
        format!("{}/{}", self.host, self.name)
    }

    /// The referrers of `digest` through the referrers API, following `Link` pages.
    /// `Ok(None)` when the registry has no referrers API (404).
    pub async fn referrers_api(
        &self,
        digest: &str,
        artifact_type: Option<&str>,
        manifest_limit: u64,
        max: usize,
    ) -> Result<Option<Vec<Descriptor>>> {
        let what = format!("referrers of {}@{digest}", self.name);
        if !vulngate_core::image::is_valid_digest(digest) {
            return Err(Error::Invalid {
                what,
                reason: "not a sha256/sha512 digest".into(),
            });
        }
        let known_absent = self
            .t
            .no_referrers_api
            .lock()
            .ok()
            .and_then(|m| m.get(&self.referrers_key()).copied())
            .is_some_and(|at| at.elapsed() < NO_REFERRERS_TTL);
        if known_absent {
            return Ok(None);
        }
        let mut url = self.url(&format!("referrers/{digest}"))?;
        if let Some(t) = artifact_type {
            url.query_pairs_mut().append_pair("artifactType", t);
        }
        let mut out = Vec::new();
        let mut filtered_by_server = false;
        for page in 0..16 {
            let mut h = HeaderMap::new();
            h.insert(ACCEPT, HeaderValue::from_static(oci::OCI_INDEX));
            let resp = match self.send(Method::GET, url.clone(), h, None, &what).await {
                Err(Error::NotFound { json, .. }) if page == 0 => {
                    // Only a plain 404 says the route is missing; a JSON one (unknown
                    // repository) comes from a registry that has the API.
                    if !json {
                        if let Ok(mut m) = self.t.no_referrers_api.lock() {
                            m.insert(self.referrers_key(), Instant::now());
                        }
                    }
                    return Ok(None);
                }
                r => r?,
            };
            filtered_by_server |= resp
                .headers()
                .get("oci-filters-applied")
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.contains("artifactType"));
            let link = resp
                .headers()
                .get("link")
                .and_then(|v| v.to_str().ok())
                .and_then(parse_next_link);
            let (body, _) = read_capped(resp, manifest_limit, &what, "sha256:").await?;
            let idx: Manifest = serde_json::from_slice(&body).map_err(|e| Error::Invalid {
                what: what.clone(),
                reason: format!("not an OCI index: {e}"),
            })?;
            out.extend(idx.manifests);
            if out.len() >= max {
                out.truncate(max);
                break;
            }
            if page == 15 && link.is_some() {
                return Err(Error::Invalid {
                    what,
                    reason: "more than 16 pages of referrers: not all of them can be checked"
                        .into(),
                });
            }
            match link {
                Some(next) => {
                    url = url.join(&next).map_err(|_| Error::Invalid {
                        what: what.clone(),
                        reason: "invalid Link header".into(),
                    })?;
                    // Pages must stay on the registry.
                    if url.host_str() != self.base.host_str() || url.port() != self.base.port() {
                        return Err(Error::Invalid {
                            what,
                            reason: "Link header points to another host".into(),
                        });
                    }
                }
                None => break,
            }
        }
        if let (Some(t), false) = (artifact_type, filtered_by_server) {
            out.retain(|d| d.artifact_type.as_deref() == Some(t));
        }
        Ok(Some(out))
    }

    /// PUT a blob (monolithic upload: POST then PUT), unless it exists already.
    pub async fn push_blob(&self, bytes: &[u8], digest: &str) -> Result<()> {
        let what = format!("blob {}@{digest}", self.name);
        if !vulngate_core::image::is_valid_digest(digest) {
            return Err(Error::Invalid {
                what,
                reason: "not a sha256/sha512 digest".into(),
            });
        }
        let head = self.url(&format!("blobs/{digest}"))?;
        match self
            .send(Method::HEAD, head, HeaderMap::new(), None, &what)
            .await
        {
            Ok(_) => return Ok(()),
            Err(Error::NotFound { .. }) => {}
            Err(e) => return Err(e),
        }
        let start = self.url("blobs/uploads/")?;
        let resp = self
            .send(
                Method::POST,
                start,
                HeaderMap::new(),
                Some(Vec::new()),
                &what,
            )
            .await?;
        let loc = resp
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| Error::Invalid {
                what: what.clone(),
                reason: "upload start without Location".into(),
            })?;
        let mut url = self.base.join(loc).map_err(|_| Error::Invalid {
            what: what.clone(),
            reason: "invalid upload Location".into(),
        })?;
        url.query_pairs_mut().append_pair("digest", digest);
        let mut h = HeaderMap::new();
        h.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/octet-stream"),
        );
        self.send(Method::PUT, url, h, Some(bytes.to_vec()), &what)
            .await?;
        Ok(())
    }

    /// PUT a manifest under a reference (digest or tag); returns the `OCI-Subject` header when set.
    pub async fn push_manifest(
        &self,
        bytes: &[u8],
        media_type: &str,
        reference: &str,
    ) -> Result<Option<String>> {
        let what = format!("manifest {}@{reference}", self.name);
        check_reference(&what, reference)?;
        let url = self.url(&format!("manifests/{reference}"))?;
        let mut h = HeaderMap::new();
        h.insert(
            CONTENT_TYPE,
            HeaderValue::from_str(media_type).map_err(|e| Error::Config(e.to_string()))?,
        );
        let resp = self
            .send(Method::PUT, url, h, Some(bytes.to_vec()), &what)
            .await?;
        Ok(resp
            .headers()
            .get("oci-subject")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string))
    }
}

/// `<url>; rel="next"` -> url.
fn parse_next_link(v: &str) -> Option<String> {
    v.split(',').find_map(|part| {
        let (u, params) = part.split_once(';')?;
        if params.replace(' ', "").contains("rel=\"next\"") || params.contains("rel=next") {
            Some(
                u.trim()
                    .trim_start_matches('<')
                    .trim_end_matches('>')
                    .to_string(),
            )
        } else {
            None
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges_and_links() {
        let (s, p) = parse_challenge(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/nginx:pull""#,
        );
        assert_eq!(s, "bearer");
        assert_eq!(p["realm"], "https://auth.docker.io/token");
        assert_eq!(p["scope"], "repository:library/nginx:pull");
        let (s, p) = parse_challenge(r#"Basic realm="Registry Realm""#);
        assert_eq!(
            (s.as_str(), p["realm"].as_str()),
            ("basic", "Registry Realm")
        );
        assert_eq!(
            parse_next_link(r#"</v2/app/referrers/sha256:1?n=2&last=x>; rel="next""#).as_deref(),
            Some("/v2/app/referrers/sha256:1?n=2&last=x")
        );
        assert_eq!(parse_next_link(r#"</x>; rel="prev""#), None);
    }
}
