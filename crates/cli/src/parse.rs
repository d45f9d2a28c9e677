//! Value parsers shared by the commands' clap arguments (each command's `Args` lives beside
//! its code and names these in `value_parser = ...`).

use chrono::{DateTime, Utc};

/// An RFC 1123 label (namespace names): lowercase alphanumerics and '-', at most 63.
pub fn dns_label(s: &str) -> Result<String, String> {
    let ok = !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-');
    if ok {
        Ok(s.to_string())
    } else {
        Err(format!(
            "{s:?} is not a valid namespace name: at most 63 lowercase letters, digits and '-', starting and ending with a letter or digit"
        ))
    }
}

/// An RFC 1123 subdomain (object names): dot-separated labels, at most 253.
pub fn dns_subdomain(s: &str) -> Result<String, String> {
    if s.len() <= 253 && s.split('.').all(|l| dns_label(l).is_ok()) {
        Ok(s.to_string())
    } else {
        Err(format!(
            "{s:?} is not a valid name: lowercase letters, digits, '-' and '.', at most 253"
        ))
    }
}

/// A webhook name: a DNS subdomain with at least one dot (the API server requires it).
pub fn webhook_name(s: &str) -> Result<String, String> {
    let name = dns_subdomain(s)?;
    if name.contains('.') {
        Ok(name)
    } else {
        Err(format!(
            "{s:?}: a webhook name must be a fully qualified name such as vulngate.example.com"
        ))
    }
}

pub fn label(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("expected KEY=VALUE, found {s:?}")),
    }
}

/// `HOST` or `HOST:PORT` (no scheme, no path), lowercased as the registry client compares it.
pub fn registry_host(s: &str) -> Result<String, String> {
    let bad = s.is_empty()
        || s.contains("://")
        || s.contains(['/', '@', '?', '#', '*'])
        || s.chars().any(char::is_whitespace)
        || !vulngate_core::image::is_valid_registry_host(&s.to_ascii_lowercase());
    if bad {
        return Err(format!(
            "expected a registry HOST or HOST:PORT such as 127.0.0.1:5000 (no scheme or path), found {s:?}"
        ));
    }
    Ok(s.to_ascii_lowercase())
}

pub fn platform(s: &str) -> Result<String, String> {
    vulngate_registry::PlatformSelector::parse(s).map(|_| s.to_string())
}

/// `type/subtype[+suffix]`, as OCI artifact types are.
pub fn media_type(s: &str) -> Result<String, String> {
    let ok = match s.split_once('/') {
        Some((t, sub)) => {
            let token = |x: &str| {
                !x.is_empty()
                    && x.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"!#$&-^_.+".contains(&b))
            };
            token(t) && token(sub)
        }
        None => false,
    };
    if ok {
        Ok(s.to_string())
    } else {
        Err(format!(
            "expected a media type such as application/vnd.vulngate.report+json, found {s:?}"
        ))
    }
}

/// An RFC 3339 time (`--now`, `--since`).
pub fn time(s: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| format!("expected an RFC 3339 time such as 2026-01-31T12:00:00Z: {e}"))
}
