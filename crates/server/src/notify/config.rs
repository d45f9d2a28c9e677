//! `notify:` in vulngate.yaml: the sinks, their filters, and the delivery limits.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use vulngate_core::Severity;

use crate::alerts::outbox::Route;
use crate::alerts::AlertAction;

/// `notify:` in vulngate.yaml.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct NotifyConfig {
    pub sinks: Vec<SinkConfig>,
    /// Whole-attempt timeout (connect, send, response headers).
    #[serde(with = "crate::config::duration_str")]
    pub timeout: Duration,
    #[serde(with = "crate::config::duration_str")]
    pub connect_timeout: Duration,
    /// Attempts before an entry is dead-lettered.
    pub max_attempts: u32,
    /// Wait after the first failed attempt; doubled after each further one...
    #[serde(with = "crate::config::duration_str")]
    pub initial_backoff: Duration,
    /// ...up to this.
    #[serde(with = "crate::config::duration_str")]
    pub max_backoff: Duration,
    /// How often the outbox is checked for due entries.
    #[serde(with = "crate::config::duration_str")]
    pub poll_interval: Duration,
    /// Most attempts in flight at once (each in its own task).
    pub batch_size: usize,
    /// Largest request body sent; a larger one is dead-lettered at once.
    pub max_body_bytes: usize,
}

impl Default for NotifyConfig {
    fn default() -> Self {
        NotifyConfig {
            sinks: Vec::new(),
            timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(5),
            max_attempts: 10,
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(300),
            poll_interval: Duration::from_secs(1),
            batch_size: 32,
            max_body_bytes: 1 << 20,
        }
    }
}

/// What a sink speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SinkKind {
    /// The alert as JSON, signed with HMAC-SHA256 (`X-Vulngate-Signature`).
    Webhook,
    /// A CloudEvents 1.0 event in structured mode (`application/cloudevents+json`).
    Cloudevents,
    /// A Slack-compatible incoming webhook (`{"text": ..., "blocks": [...]}`).
    Slack,
}

impl SinkKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SinkKind::Webhook => "webhook",
            SinkKind::Cloudevents => "cloudevents",
            SinkKind::Slack => "slack",
        }
    }
}

/// One sink.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SinkConfig {
    /// Names the sink in metrics, logs and the outbox (letters, digits, `-`, `_`, `.`).
    pub name: String,
    #[serde(rename = "type")]
    pub kind: SinkKind,
    /// The only address this sink sends to (no redirect is followed, no proxy used).
    pub url: SinkUrl,
    /// The HMAC-SHA256 key (webhook: required; cloudevents: optional; slack: not allowed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_file: Option<PathBuf>,
    /// CloudEvents `source` (default `/vulngate`, or `/vulngate/CLUSTER` with
    /// `clusterName`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// Only alerts of these actions (`audit`, `deny`, `break-glass`); empty: all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub actions: Vec<AlertAction>,
    /// Only alerts whose deciding vulnerability is at least this severe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_severity: Option<Severity>,
    /// Only alerts in these namespaces; empty: all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub namespaces: Vec<String>,
}

/// A sink's URL: `http` or `https`, no user information. Printed without its path and
/// query (a Slack webhook URL's path is its secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SinkUrl(pub reqwest::Url);

impl SinkUrl {
    pub fn parse(s: &str) -> Result<SinkUrl, String> {
        let u = reqwest::Url::parse(s).map_err(|e| format!("invalid URL: {e}"))?;
        if !matches!(u.scheme(), "http" | "https") {
            return Err("the URL must be http:// or https://".into());
        }
        if u.host_str().is_none_or(str::is_empty) {
            return Err("the URL has no host".into());
        }
        if !u.username().is_empty() || u.password().is_some() {
            return Err("no user or password in the URL (use secretFile)".into());
        }
        Ok(SinkUrl(u))
    }

    /// `scheme://host:port/…`: what logs and `serve --check-config` show.
    pub fn redacted(&self) -> String {
        let u = &self.0;
        let port = u.port().map(|p| format!(":{p}")).unwrap_or_default();
        format!(
            "{}://{}{port}/…",
            u.scheme(),
            u.host_str().unwrap_or_default()
        )
    }
}

impl std::fmt::Display for SinkUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl Serialize for SinkUrl {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for SinkUrl {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        SinkUrl::parse(&s).map_err(serde::de::Error::custom)
    }
}

impl NotifyConfig {
    /// Checks what serde cannot: `(field, message)` on error.
    pub fn validate(&self) -> Result<(), (String, String)> {
        let bad = |f: String, m: &str| Err((format!("notify.{f}"), m.to_string()));
        for (i, s) in self.sinks.iter().enumerate() {
            if s.name.is_empty()
                || s.name.len() > 64
                || !s
                    .name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
            {
                return bad(
                    format!("sinks[{i}].name"),
                    "must be 1 to 64 letters, digits, '-', '_' or '.'",
                );
            }
            if self.sinks[..i].iter().any(|o| o.name == s.name) {
                return bad(format!("sinks[{i}].name"), "duplicate sink name");
            }
            match (s.kind, &s.secret_file) {
                (SinkKind::Webhook, None) => {
                    return bad(
                        format!("sinks[{i}].secretFile"),
                        "a webhook sink needs secretFile (the HMAC-SHA256 key)",
                    )
                }
                (SinkKind::Slack, Some(_)) => {
                    return bad(
                        format!("sinks[{i}].secretFile"),
                        "a slack sink is not signed (its URL is the secret)",
                    )
                }
                _ => {}
            }
            if s.source.is_some() && s.kind != SinkKind::Cloudevents {
                return bad(
                    format!("sinks[{i}].source"),
                    "only cloudevents sinks have a source",
                );
            }
            if s.source.as_deref().is_some_and(str::is_empty) {
                return bad(format!("sinks[{i}].source"), "empty source");
            }
        }
        if self.max_attempts == 0 || self.max_attempts > 1000 {
            return bad("maxAttempts".into(), "must be between 1 and 1000");
        }
        for (f, d) in [
            ("timeout", self.timeout),
            ("connectTimeout", self.connect_timeout),
            ("initialBackoff", self.initial_backoff),
            ("pollInterval", self.poll_interval),
        ] {
            if d < Duration::from_millis(10) || d > Duration::from_secs(3600) {
                return bad(f.into(), "must be between 10ms and 1h");
            }
        }
        if self.max_backoff < self.initial_backoff || self.max_backoff > Duration::from_secs(86400)
        {
            return bad(
                "maxBackoff".into(),
                "must be at least initialBackoff and at most 24h",
            );
        }
        if self.batch_size == 0 || self.batch_size > 1024 {
            return bad("batchSize".into(), "must be between 1 and 1024");
        }
        if self.max_body_bytes < 4096 || self.max_body_bytes > 64 << 20 {
            return bad(
                "maxBodyBytes".into(),
                "must be between 4096 and 67108864 (64 MiB)",
            );
        }
        Ok(())
    }

    /// The outbox routes of the sinks.
    pub fn routes(&self) -> Vec<Route> {
        self.sinks
            .iter()
            .map(|s| Route {
                sink: s.name.clone(),
                actions: s.actions.clone(),
                min_severity: s.min_severity,
                namespaces: s.namespaces.clone(),
            })
            .collect()
    }

    /// The wait before attempt `attempts + 1`, after `attempts` failed ones (at least 1):
    /// `initialBackoff * 2^(attempts-1)`, at most `maxBackoff`.
    pub fn backoff(&self, attempts: u32) -> Duration {
        let doublings = attempts.saturating_sub(1).min(31);
        self.initial_backoff
            .saturating_mul(1u32 << doublings)
            .min(self.max_backoff)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let c = NotifyConfig {
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(10),
            ..NotifyConfig::default()
        };
        let got: Vec<u64> = (1..=6).map(|a| c.backoff(a).as_secs()).collect();
        assert_eq!(got, vec![1, 2, 4, 8, 10, 10]);
        assert_eq!(c.backoff(1000), Duration::from_secs(10));
    }

    #[test]
    fn urls_are_printed_without_path_or_query() {
        let u = SinkUrl::parse("https://hooks.slack.com/services/T0/B0/secret?x=1").unwrap();
        assert_eq!(u.to_string(), "https://hooks.slack.com/…");
        assert!(SinkUrl::parse("ftp://x/").is_err());
        assert!(SinkUrl::parse("https://u:p@x/").is_err());
    }
}
