//! Who is calling the review listener: a bearer token from `review.tokens` (compared in
//! constant time, as SHA-256 digests so that lengths leak nothing either), or a console
//! session made by logging in with such a token (an HttpOnly, Secure, SameSite=Strict cookie
//! and a CSRF token every form must carry). Tokens and session ids are never logged. Other
//! tokens may be Kubernetes ones ([`super::kubernetes_auth`]).

use std::collections::HashMap;
use std::io::Read;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::HeaderMap;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::{ReviewConfig, Role};
use crate::Error;

/// The console's session cookie.
pub const SESSION_COOKIE: &str = "vulngate_session";
/// Largest token file read, in bytes.
pub const MAX_TOKEN_FILE_BYTES: u64 = 4096;
/// Shortest token accepted, in characters.
pub const MIN_TOKEN_CHARS: usize = 16;

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The token's name, or the Kubernetes username (recorded as who changed an alert).
    pub name: String,
    /// A static token's role (a Kubernetes caller's is `reader`: it is authorised by access
    /// reviews instead).
    pub role: Role,
    /// The Kubernetes user of a Kubernetes token.
    pub kubernetes: Option<Arc<super::kubernetes_auth::KubernetesUser>>,
}

struct Token {
    name: String,
    role: Role,
    digest: [u8; 32],
}

impl std::fmt::Debug for Token {
    /// Never the token, nor its digest.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Token")
            .field("name", &self.name)
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

#[derive(Clone)]
pub(crate) struct Session {
    pub principal: Principal,
    pub csrf: String,
    expires: Instant,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("principal", &self.principal)
            .finish_non_exhaustive()
    }
}

/// The tokens and the console sessions.
pub(crate) struct Auth {
    tokens: Vec<Token>,
    sessions: Mutex<HashMap<[u8; 32], Session>>,
    ttl: Duration,
    max_sessions: usize,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth")
            .field("tokens", &self.tokens)
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

fn digest(s: &str) -> [u8; 32] {
    Sha256::digest(s.as_bytes()).into()
}

/// A fresh random secret (two v4 UUIDs: 244 random bits), as hex.
fn secret() -> String {
    format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

impl Auth {
    /// Reads every `tokenFile` (at most 4 KiB, trimmed, at least 16 characters).
    pub fn load(cfg: &ReviewConfig) -> Result<Auth, Error> {
        let mut tokens = Vec::with_capacity(cfg.tokens.len());
        for (i, t) in cfg.tokens.iter().enumerate() {
            let at = format!("review.tokens[{i}].tokenFile");
            let bad = |message: String| Error::Config {
                location: at.clone(),
                message,
            };
            let file = std::fs::File::open(&t.token_file)
                .map_err(|e| bad(format!("{}: {e}", t.token_file.display())))?;
            let mut text = String::new();
            file.take(MAX_TOKEN_FILE_BYTES + 1)
                .read_to_string(&mut text)
                .map_err(|e| bad(format!("{}: {e}", t.token_file.display())))?;
            if text.len() as u64 > MAX_TOKEN_FILE_BYTES {
                return Err(bad(format!(
                    "{}: larger than {MAX_TOKEN_FILE_BYTES} bytes",
                    t.token_file.display()
                )));
            }
            let token = text.trim();
            if token.chars().count() < MIN_TOKEN_CHARS
                || token.chars().any(|c| c.is_whitespace() || c.is_control())
            {
                return Err(bad(format!(
                    "{}: the token must be at least {MIN_TOKEN_CHARS} characters without spaces",
                    t.token_file.display()
                )));
            }
            tokens.push(Token {
                name: t.name.clone(),
                role: t.role,
                digest: digest(token),
            });
        }
        if tokens.is_empty() {
            tracing::warn!("review listener without tokens: every API call will be refused (401)");
        }
        Ok(Auth {
            tokens,
            sessions: Mutex::new(HashMap::new()),
            ttl: cfg.session_ttl,
            max_sessions: cfg.max_sessions,
        })
    }

    /// The token's owner; every configured token is compared (in constant time), whatever
    /// matches first.
    pub fn token(&self, presented: &str) -> Option<Principal> {
        let d = digest(presented);
        let mut found: Option<&Token> = None;
        for t in &self.tokens {
            if bool::from(t.digest.ct_eq(&d)) {
                found = Some(t);
            }
        }
        found.map(|t| Principal {
            name: t.name.clone(),
            role: t.role,
            kubernetes: None,
        })
    }

    /// Starts a console session; returns its id (the cookie's value).
    pub fn login(&self, principal: Principal) -> String {
        let id = secret();
        let now = Instant::now();
        if let Ok(mut s) = self.sessions.lock() {
            s.retain(|_, v| v.expires > now);
            while s.len() >= self.max_sessions {
                let oldest = s.iter().min_by_key(|(_, v)| v.expires).map(|(k, _)| *k);
                match oldest {
                    Some(k) => s.remove(&k),
                    None => break,
                };
            }
            s.insert(
                digest(&id),
                Session {
                    principal,
                    csrf: secret(),
                    expires: now + self.ttl,
                },
            );
        }
        id
    }

    pub fn logout(&self, id: &str) {
        if let Ok(mut s) = self.sessions.lock() {
            s.remove(&digest(id));
        }
    }

    /// The live session the request's cookie names.
    pub fn session(&self, headers: &HeaderMap) -> Option<Session> {
        let id = cookie(headers, SESSION_COOKIE)?;
        let s = self.sessions.lock().ok()?;
        s.get(&digest(&id))
            .filter(|v| v.expires > Instant::now())
            .cloned()
    }

    /// The session id of the request's cookie (for logout).
    pub fn session_id(headers: &HeaderMap) -> Option<String> {
        cookie(headers, SESSION_COOKIE)
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }
}

/// The token of `Authorization: Bearer TOKEN` (trimmed).
pub(crate) fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    Some(token.trim())
}

/// Whether a form's CSRF field matches the session's (constant time).
pub(crate) fn csrf_ok(session: &Session, presented: &str) -> bool {
    bool::from(digest(&session.csrf).ct_eq(&digest(presented)))
}

fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth(dir: &std::path::Path) -> Auth {
        std::fs::write(dir.join("r"), "reader-token-0123456789\n").unwrap();
        std::fs::write(dir.join("w"), "reviewer-token-0123456789").unwrap();
        let cfg = ReviewConfig {
            tokens: vec![
                super::super::TokenConfig {
                    name: "ro".into(),
                    role: Role::Reader,
                    token_file: dir.join("r"),
                },
                super::super::TokenConfig {
                    name: "rw".into(),
                    role: Role::Reviewer,
                    token_file: dir.join("w"),
                },
            ],
            ..ReviewConfig::default()
        };
        Auth::load(&cfg).unwrap()
    }

    #[test]
    fn tokens_are_matched_exactly() {
        let dir = tempfile::tempdir().unwrap();
        let a = auth(dir.path());
        assert_eq!(
            a.token("reader-token-0123456789").unwrap().role,
            Role::Reader
        );
        assert_eq!(a.token("reviewer-token-0123456789").unwrap().name, "rw");
        assert!(a.token("reader-token-012345678").is_none());
        assert!(a.token("").is_none());
        let mut h = HeaderMap::new();
        h.insert(
            "authorization",
            "Bearer reader-token-0123456789".parse().unwrap(),
        );
        assert_eq!(a.token(bearer_token(&h).unwrap()).unwrap().name, "ro");
        h.insert(
            "authorization",
            "Basic reader-token-0123456789".parse().unwrap(),
        );
        assert!(bearer_token(&h).is_none());
    }

    #[test]
    fn a_short_token_file_is_refused_without_showing_it() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("t"), "short-secret").unwrap();
        let cfg = ReviewConfig {
            tokens: vec![super::super::TokenConfig {
                name: "x".into(),
                role: Role::Reader,
                token_file: dir.path().join("t"),
            }],
            ..ReviewConfig::default()
        };
        let e = Auth::load(&cfg).unwrap_err().to_string();
        assert!(e.contains("at least 16"), "{e}");
        assert!(!e.contains("short-secret"), "{e}");
    }

    #[test]
    fn sessions_are_bounded_and_found_by_cookie() {
        let dir = tempfile::tempdir().unwrap();
        let mut a = auth(dir.path());
        a.max_sessions = 2;
        let p = a.token("reader-token-0123456789").unwrap();
        let first = a.login(p.clone());
        let _second = a.login(p.clone());
        let third = a.login(p);
        let mut h = HeaderMap::new();
        h.insert(
            "cookie",
            format!("x=1; {SESSION_COOKIE}={third}").parse().unwrap(),
        );
        let s = a.session(&h).unwrap();
        assert!(csrf_ok(&s, &s.csrf.clone()));
        assert!(!csrf_ok(&s, "nope"));
        h.insert(
            "cookie",
            format!("{SESSION_COOKIE}={first}").parse().unwrap(),
        );
        assert!(a.session(&h).is_none(), "the oldest session was dropped");
    }
}
