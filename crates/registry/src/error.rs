//! Errors of the registry client. Messages never carry credentials: URLs are built without
//! userinfo, and neither `Authorization` values nor token responses are ever formatted.

use std::time::Duration;

/// What went wrong talking to a registry or checking what it served.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("host {host:?} is not allowed by the registry host policy: {reason}")]
    HostNotAllowed {
        host: String,
        reason: String,
        refusal: Refusal,
    },
    #[error("refused to connect to {host}: {reason}")]
    AddressRefused {
        host: String,
        reason: String,
        refusal: Refusal,
    },
    #[error("{what}: not found (404)")]
    NotFound {
        what: String,
        /// The 404 came with a JSON body (an OCI error such as `NAME_UNKNOWN`): the endpoint
        /// exists. A plain 404 (e.g. `404 page not found`) means the route itself is unknown.
        json: bool,
    },
    #[error("{what}: authentication failed (401){detail}")]
    Unauthorized { what: String, detail: String },
    #[error("{what}: access denied (403)")]
    Forbidden { what: String },
    #[error("{what}: rate limited by the registry (429){retry}")]
    RateLimited { what: String, retry: String },
    #[error("{what}: registry error (HTTP {status})")]
    Server { what: String, status: u16 },
    #[error("{what}: unexpected HTTP status {status}")]
    Status { what: String, status: u16 },
    #[error("{what}: larger than the limit of {limit} bytes")]
    TooLarge { what: String, limit: u64 },
    #[error("{what}: body ended after {got} of {expected} bytes")]
    Truncated {
        what: String,
        got: u64,
        expected: u64,
    },
    #[error("{what}: digest mismatch: expected {expected}, got {actual}")]
    DigestMismatch {
        what: String,
        expected: String,
        actual: String,
    },
    #[error("{what}: invalid content: {reason}")]
    Invalid { what: String, reason: String },
    #[error("{what}: timed out after {after:?}")]
    Timeout { what: String, after: Duration },
    #[error("{what}: {reason}")]
    Transport { what: String, reason: String },
}

/// Why the host policy refused a host or an address: what an operator can do about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Refusal {
    /// `allowHosts` / `denyHosts`: the configured policy.
    Policy,
    /// Plain HTTP, or a loopback address: allowed only for a `host:port` listed in
    /// `insecureRegistries` (or `allowHosts`, for loopback).
    NeedsInsecure,
    /// Never contacted, whatever the configuration: cloud metadata, link-local, not unicast.
    Never,
}

/// What kind of failure an [`Error`] is. Callers branch on this, never on the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The client's configuration is invalid.
    Config,
    /// The host policy refused the host or address.
    Refused(Refusal),
    /// The registry could not be reached or its answer not read (connection, TLS, transport).
    Unreachable,
    /// A request (or the whole lookup) ran out of time.
    Timeout,
    /// The registry says the thing does not exist (404).
    NotFound,
    /// Authentication failed or access was denied (401, 403).
    Unauthorized,
    /// Rate limited (429).
    RateLimited,
    /// A registry error (5xx) or an unexpected status.
    Server,
    /// A configured limit was hit (size, number of referrers or artifacts).
    LimitHit,
    /// The bytes are not what was asked for (digest mismatch, truncated body).
    VerificationFailed,
    /// The content is not what the protocol says (not a manifest, bad JSON).
    Invalid,
}

impl Error {
    /// The kind of failure, for callers that act on it.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Config(_) => ErrorKind::Config,
            Error::HostNotAllowed { refusal, .. } | Error::AddressRefused { refusal, .. } => {
                ErrorKind::Refused(*refusal)
            }
            Error::NotFound { .. } => ErrorKind::NotFound,
            Error::Unauthorized { .. } | Error::Forbidden { .. } => ErrorKind::Unauthorized,
            Error::RateLimited { .. } => ErrorKind::RateLimited,
            Error::Server { .. } | Error::Status { .. } => ErrorKind::Server,
            Error::TooLarge { .. } => ErrorKind::LimitHit,
            Error::Truncated { .. } | Error::DigestMismatch { .. } => ErrorKind::VerificationFailed,
            Error::Invalid { .. } => ErrorKind::Invalid,
            Error::Timeout { .. } => ErrorKind::Timeout,
            Error::Transport { .. } => ErrorKind::Unreachable,
        }
    }

    /// Whether the registry says the thing does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::NotFound { .. })
    }

    /// Integrity failures: the registry served bytes that are not what was asked for.
    pub fn is_integrity(&self) -> bool {
        matches!(
            self,
            Error::DigestMismatch { .. } | Error::Truncated { .. } | Error::TooLarge { .. }
        )
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Formats a reqwest error without its URL query (token endpoints carry scopes there, never
/// secrets, but keep messages short) and with its source chain, which names the real cause.
pub(crate) fn describe_reqwest(e: &reqwest::Error) -> String {
    use std::error::Error as _;
    let mut msg = if e.is_timeout() {
        "timed out".to_string()
    } else if e.is_connect() {
        "connection failed".to_string()
    } else if e.is_redirect() {
        "redirect refused".to_string()
    } else if e.is_body() || e.is_decode() {
        "reading the response failed".to_string()
    } else {
        "request failed".to_string()
    };
    let mut src = e.source();
    while let Some(s) = src {
        let t = s.to_string();
        if !msg.contains(&t) {
            msg.push_str(": ");
            msg.push_str(&t);
        }
        src = s.source();
    }
    msg
}
