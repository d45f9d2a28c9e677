//! Hostile input of the review listener, read into typed values: the alert filters of a
//! query string, the page cursor, and the JSON error every refusal is.

use std::str::FromStr;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{DEFAULT_PAGE, MAX_PAGE};
use crate::alerts::{AlertAction, AlertFilter, Cursor, ReviewState};

/// Longest filter value accepted, in bytes.
pub const MAX_FILTER_BYTES: usize = 256;
/// Longest cursor accepted, in bytes.
const MAX_CURSOR_BYTES: usize = 256;

/// An error answer: `{"error": {"status": 400, "code": "bad-filter", "message": "..."}}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct ErrorDetail {
    /// The HTTP status.
    pub status: u16,
    /// A stable code: `unauthorized`, `forbidden`, `not-found`, `bad-filter`, `bad-cursor`,
    /// `bad-body`, `body-too-large`, `conflict`, `store-unavailable`...
    pub code: String,
    /// What was wrong, for a person.
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }

    pub fn bad(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn unauthorized() -> ApiError {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "a valid bearer token is required (Authorization: Bearer TOKEN)",
        )
    }

    pub fn not_found(what: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not-found", what)
    }

    /// A store failure: the detail goes to the log, the caller learns only that the store
    /// failed.
    pub fn store(e: &crate::alerts::AlertError) -> ApiError {
        tracing::error!(error = %e, "review: alert store error");
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "store-unavailable",
            "the alert store cannot answer now",
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                status: self.status.as_u16(),
                code: self.code.to_string(),
                message: self.message,
            },
        };
        let mut r = (self.status, axum::Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            r.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer realm=\"vulngate\""),
            );
        }
        r
    }
}

/// The opaque cursor of the page after `c`: base64url of `TIME|ID`.
pub fn encode_cursor(c: &Cursor) -> String {
    URL_SAFE_NO_PAD.encode(format!("{}|{}", crate::alerts::rfc3339(c.time), c.id))
}

pub fn decode_cursor(s: &str) -> Result<Cursor, ApiError> {
    let bad = || ApiError::bad("bad-cursor", "cursor is not one this server gave out");
    if s.len() > MAX_CURSOR_BYTES {
        return Err(bad());
    }
    let raw = URL_SAFE_NO_PAD.decode(s).map_err(|_| bad())?;
    let text = String::from_utf8(raw).map_err(|_| bad())?;
    let (time, id) = text.split_once('|').ok_or_else(bad)?;
    let time = DateTime::parse_from_rfc3339(time)
        .map_err(|_| bad())?
        .with_timezone(&Utc);
    if id.is_empty() || id.len() > 64 || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    {
        return Err(bad());
    }
    Ok(Cursor {
        time,
        id: id.to_string(),
    })
}

/// The filters of a query string (`namespace`, `workload`, `image`, `rule`, `action`,
/// `cve`, `state`, `since`, `cursor`, `limit`). Unknown or repeated parameters, empty or
/// too long values are refused. Empty values from a form (the console) are skipped when
/// `from_form`.
pub fn filter_from_pairs(
    pairs: &[(String, String)],
    from_form: bool,
) -> Result<AlertFilter, ApiError> {
    let mut f = AlertFilter {
        limit: Some(DEFAULT_PAGE),
        ..AlertFilter::default()
    };
    let mut seen: Vec<&str> = Vec::new();
    for (k, v) in pairs {
        if from_form && v.is_empty() {
            continue;
        }
        let bad = |m: String| ApiError::bad("bad-filter", format!("{k}: {m}"));
        if seen.contains(&k.as_str()) {
            return Err(bad("given more than once".into()));
        }
        if v.is_empty() {
            return Err(bad("empty value".into()));
        }
        if v.len() > MAX_FILTER_BYTES {
            return Err(bad(format!("longer than {MAX_FILTER_BYTES} bytes")));
        }
        match k.as_str() {
            "namespace" => f.namespace = Some(v.clone()),
            "workload" => f.workload = Some(v.clone()),
            "image" => f.image = Some(v.clone()),
            "rule" => f.rule = Some(v.clone()),
            "cve" => f.cve = Some(v.clone()),
            "action" => f.action = Some(AlertAction::from_str(v).map_err(bad)?),
            "state" => f.state = Some(ReviewState::from_str(v).map_err(bad)?),
            "since" => f.since = Some(parse_since(v, Utc::now()).map_err(bad)?),
            "cursor" => f.after = Some(decode_cursor(v)?),
            "limit" => {
                let n: usize = v
                    .parse()
                    .map_err(|_| bad(format!("{v:?} is not a whole number")))?;
                if n == 0 || n > MAX_PAGE {
                    return Err(bad(format!("must be between 1 and {MAX_PAGE}")));
                }
                f.limit = Some(n);
            }
            _ => {
                return Err(ApiError::bad(
                    "bad-filter",
                    format!(
                        "unknown parameter {:?} (expected namespace, workload, image, rule, \
                         action, cve, state, since, cursor or limit)",
                        shorten(k)
                    ),
                ))
            }
        }
        seen.push(k.as_str());
    }
    Ok(f)
}

/// `since`: an RFC 3339 time, or a duration back from now (`24h`, `7d`, `30m`).
pub fn parse_since(v: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, String> {
    if let Ok(t) = DateTime::parse_from_rfc3339(v) {
        return Ok(t.with_timezone(&Utc));
    }
    let err = || {
        format!(
            "{:?} is neither an RFC 3339 time nor a duration such as 24h or 7d",
            shorten(v)
        )
    };
    let (num, unit) = v.split_at(v.find(|c: char| !c.is_ascii_digit()).ok_or_else(err)?);
    let n: i64 = num.parse().map_err(|_| err())?;
    let secs = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86400,
        _ => return Err(err()),
    };
    let back = n
        .checked_mul(secs)
        .filter(|s| *s <= 100 * 365 * 86400)
        .ok_or_else(|| format!("{:?} is too far back (at most 100 years)", shorten(v)))?;
    Ok(now - chrono::Duration::seconds(back))
}

/// A value as shown in an error: at most 64 characters.
pub fn shorten(s: &str) -> String {
    if s.chars().count() <= 64 {
        s.to_string()
    } else {
        format!("{}...", s.chars().take(64).collect::<String>())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(q: &[(&str, &str)]) -> Vec<(String, String)> {
        q.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn cursor_round_trips_and_rejects_forgeries() {
        let c = Cursor {
            time: Utc::now(),
            id: "0190c2d1-aaaa-7bbb-8ccc-0123456789ab".into(),
        };
        let s = encode_cursor(&c);
        let back = decode_cursor(&s).unwrap();
        assert_eq!(back.id, c.id);
        for bad in ["", "!!", "bm90IGEgY3Vyc29y", &"A".repeat(400)] {
            assert_eq!(decode_cursor(bad).unwrap_err().code, "bad-cursor", "{bad}");
        }
        // A well-formed time with an id that is not one.
        let forged = URL_SAFE_NO_PAD.encode("2026-01-01T00:00:00Z|x' OR 1=1 --");
        assert_eq!(decode_cursor(&forged).unwrap_err().code, "bad-cursor");
    }

    #[test]
    fn filters_are_typed_and_bounded() {
        let f = filter_from_pairs(
            &pairs(&[
                ("namespace", "prod"),
                ("state", "open"),
                ("limit", "10"),
                ("since", "24h"),
            ]),
            false,
        )
        .unwrap();
        assert_eq!(f.namespace.as_deref(), Some("prod"));
        assert_eq!(f.state, Some(ReviewState::Open));
        assert_eq!(f.limit, Some(10));
        assert!(f.since.is_some());
        assert_eq!(
            filter_from_pairs(&[], false).unwrap().limit,
            Some(DEFAULT_PAGE)
        );
        for q in [
            vec![("limit", "501")],
            vec![("limit", "0")],
            vec![("limit", "-1")],
            vec![("state", "closed")],
            vec![("action", "allow")],
            vec![("since", "yesterday")],
            vec![("since", "99999999999d")],
            vec![("bogus", "1")],
            vec![("namespace", "a"), ("namespace", "b")],
            vec![("namespace", "")],
        ] {
            let e = filter_from_pairs(&pairs(&q), false).unwrap_err();
            assert_eq!(e.status, StatusCode::BAD_REQUEST, "{q:?}");
            assert_eq!(e.code, "bad-filter", "{q:?}");
        }
        let long = "x".repeat(MAX_FILTER_BYTES + 1);
        assert!(filter_from_pairs(&pairs(&[("image", &long)]), false).is_err());
        // The console's empty form fields are no filter.
        let f = filter_from_pairs(&pairs(&[("namespace", ""), ("state", "")]), true).unwrap();
        assert_eq!(f.namespace, None);
    }
}
