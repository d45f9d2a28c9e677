//! What each sink type sends: the body, its content type and the signature headers.

use chrono::{DateTime, SecondsFormat, Utc};
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;

use super::config::SinkKind;
use crate::alerts::outbox::Notification;
use crate::alerts::Alert;

/// The CloudEvents `type` of a new alert.
pub const EVENT_TYPE: &str = "io.vulngate.alert.created";
/// Header: `sha256=<hex HMAC-SHA256 of "<timestamp>.<body>">`.
pub const SIGNATURE_HEADER: &str = "x-vulngate-signature";
/// Header: the Unix time (seconds) the signature covers.
pub const TIMESTAMP_HEADER: &str = "x-vulngate-timestamp";
/// Header: the outbox entry's id (the same on every attempt).
pub const DELIVERY_HEADER: &str = "x-vulngate-delivery";
/// Header: `alert.created`.
pub const EVENT_HEADER: &str = "x-vulngate-event";

/// A key read from a file: never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub(crate) Vec<u8>);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// One request to send.
#[derive(Debug)]
pub struct Request {
    pub content_type: &'static str,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
}

/// `sha256=<hex>` over `<timestamp>.<body>`.
pub fn signature(secret: &Secret, timestamp: i64, body: &[u8]) -> String {
    // HMAC takes keys of any length.
    let mut mac = match Hmac::<Sha256>::new_from_slice(&secret.0) {
        Ok(m) => m,
        Err(_) => return String::new(),
    };
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    let tag = mac.finalize().into_bytes();
    let mut out = String::with_capacity(7 + tag.len() * 2);
    out.push_str("sha256=");
    for b in tag {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

/// What a sink needs to build its request.
#[derive(Debug)]
pub struct Sink<'a> {
    pub kind: SinkKind,
    pub secret: Option<&'a Secret>,
    /// CloudEvents `source`.
    pub source: &'a str,
}

/// The request for `n` (an `alert`) to `sink` at `now`.
pub fn build(sink: &Sink<'_>, n: &Notification, alert: &Alert, now: DateTime<Utc>) -> Request {
    let (content_type, body) = match sink.kind {
        SinkKind::Webhook => ("application/json", to_vec(&json!(alert))),
        SinkKind::Cloudevents => (
            "application/cloudevents+json; charset=utf-8",
            to_vec(&cloud_event(sink.source, n, alert)),
        ),
        SinkKind::Slack => ("application/json", to_vec(&slack(alert))),
    };
    let mut headers = vec![
        (DELIVERY_HEADER, n.id.clone()),
        (EVENT_HEADER, "alert.created".to_string()),
    ];
    if let Some(secret) = sink.secret {
        let ts = now.timestamp();
        headers.push((TIMESTAMP_HEADER, ts.to_string()));
        headers.push((SIGNATURE_HEADER, signature(secret, ts, &body)));
    }
    Request {
        content_type,
        headers,
        body,
    }
}

fn to_vec(v: &Value) -> Vec<u8> {
    serde_json::to_vec(v).unwrap_or_default()
}

/// A CloudEvents 1.0 event (JSON format) carrying the alert.
pub fn cloud_event(source: &str, n: &Notification, alert: &Alert) -> Value {
    json!({
        "specversion": "1.0",
        "id": n.id,
        "source": source,
        "type": EVENT_TYPE,
        "subject": alert.id,
        "time": alert.time.to_rfc3339_opts(SecondsFormat::Micros, true),
        "datacontenttype": "application/json",
        "data": alert,
    })
}

/// Slack `mrkdwn` text: `&`, `<`, `>` escaped (no links or mentions from alert data),
/// at most `max` characters.
fn mrkdwn(s: &str, max: usize) -> String {
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i == max {
            out.push('…');
            break;
        }
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// The workload an alert names: `Deployment/web` (its top workload, else the object).
pub fn workload(a: &Alert) -> String {
    let kind = a.workload_kind.as_deref().unwrap_or(&a.kind);
    let name = a
        .workload_name
        .as_deref()
        .or(a.name.as_deref())
        .unwrap_or("-");
    format!("{kind}/{name}")
}

/// The deciding vulnerability: `CVE-2019-18224 (critical)`, or why there is none.
pub fn vulnerability(a: &Alert) -> String {
    match (&a.vulnerability, &a.unscanned) {
        (Some(v), _) => {
            let sev = serde_json::to_value(v.severity)
                .ok()
                .and_then(|s| s.as_str().map(str::to_string))
                .unwrap_or_default();
            format!("{} ({sev})", v.id)
        }
        (None, Some(_)) => "none (image unscanned)".to_string(),
        (None, None) => "none".to_string(),
    }
}

/// A Slack incoming-webhook message: a one-line `text` (the notification fallback) and
/// blocks naming action, rule, image, workload, namespace and deciding vulnerability.
pub fn slack(a: &Alert) -> Value {
    const MAX: usize = 300;
    let ns = a.namespace.as_deref().unwrap_or("-");
    let rule = a.rule.as_deref().unwrap_or("-");
    let text = format!(
        "vulngate {}: {} in {} ({}), rule {}, {}",
        a.action,
        mrkdwn(&a.image, MAX),
        mrkdwn(ns, MAX),
        mrkdwn(&workload(a), MAX),
        mrkdwn(rule, MAX),
        mrkdwn(&vulnerability(a), MAX),
    );
    let field = |name: &str, value: &str| json!({ "type": "mrkdwn", "text": format!("*{name}*\n{}", mrkdwn(value, MAX)) });
    json!({
        "text": text,
        "blocks": [
            {
                "type": "section",
                "text": { "type": "mrkdwn", "text": format!("*vulngate alert: {}*", a.action) }
            },
            {
                "type": "section",
                "fields": [
                    field("Action", a.action.as_str()),
                    field("Rule", rule),
                    field("Image", &a.image),
                    field("Workload", &workload(a)),
                    field("Namespace", ns),
                    field("Vulnerability", &vulnerability(a)),
                ]
            },
            {
                "type": "context",
                "elements": [
                    { "type": "mrkdwn", "text": format!("alert {}", mrkdwn(&a.id, 64)) }
                ]
            }
        ]
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_is_hmac_sha256_of_timestamp_dot_body() {
        // RFC 4231 test case 2 key and data, through our "<ts>.<body>" framing.
        let s = Secret(b"Jefe".to_vec());
        let got = signature(&s, 1, b"body");
        let mut mac = Hmac::<Sha256>::new_from_slice(b"Jefe").unwrap();
        mac.update(b"1.body");
        mac.verify_slice(&hex(&got["sha256=".len()..])).unwrap();
        assert_eq!(format!("{s:?}"), "Secret(<redacted>)");
    }

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn slack_text_cannot_inject_links_or_mentions() {
        assert_eq!(
            mrkdwn("<!channel> & <http://x|y>", 100),
            "&lt;!channel&gt; &amp; &lt;http://x|y&gt;"
        );
        assert_eq!(mrkdwn("abcdef", 3), "abc…");
    }
}
