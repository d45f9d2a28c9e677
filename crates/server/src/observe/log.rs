//! Logging: the JSON log lines on stderr ([`init_logging`], through the batching writer of
//! [`super::sink`]) and the decision log line, defined here once ([`DecisionLine`]): its
//! fields, its `tracing` event and its direct JSON rendering, held to each other by a test.
//! Runtime alerts of the re-evaluation are logged here too ([`log_runtime_alert`]).

use chrono::Utc;
use kube::core::admission::Operation;

use super::sink::{LogFlushGuard, LogSink};
use crate::alerts::Alert;

/// Keeps the log writer thread; dropping it writes the lines still buffered.
pub type LogGuard = Option<LogFlushGuard>;

/// JSON log lines on stderr; `RUST_LOG` overrides `level`. Does nothing when a global
/// subscriber is already set.
///
/// Lines are formatted on the calling thread and appended to a buffer that a writer thread
/// writes to stderr in batches (every 20 ms, or at once past 256 KiB; see [`super::sink`]): a
/// request never waits for a `write(2)` to stderr nor wakes a thread per line. Nothing is
/// dropped: when 8 MiB are pending, logging waits. Keep the returned guard alive for as long
/// as the process logs.
pub fn init_logging(level: &str) -> LogGuard {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let (sink, guard) = match LogSink::spawn(std::io::stderr()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("vulngate: cannot start the log writer thread: {e}");
            return None;
        }
    };
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_writer(sink.clone())
        .with_current_span(false)
        .try_init()
        .ok()
        .map(|()| {
            // Decision lines are formatted by the handler and written here directly.
            let _ = DECISION_LOG.set(sink);
            guard
        })
}

/// The writer of `init_logging`'s subscriber, once it is the global one: decision lines go
/// to it directly, laid out as the subscriber's JSON formatter would (see [`decision_json`]
/// for why); under any other subscriber they are `tracing` events.
static DECISION_LOG: std::sync::OnceLock<LogSink> = std::sync::OnceLock::new();

fn decision_log_writer() -> Option<&'static LogSink> {
    DECISION_LOG.get()
}

/// The fields of a decision log line (target `vulngate::decision`), in the order the line has;
/// `None` fields are left out.
#[derive(Debug)]
pub(crate) struct DecisionLine<'a> {
    pub uid: &'a str,
    /// As `Debug` of kube's `Operation` writes it (`Create`), as before.
    pub operation: &'static str,
    pub cluster: Option<&'a str>,
    pub namespace: Option<&'a str>,
    pub kind: &'a str,
    pub name: Option<&'a str>,
    /// The top workload (`vulngate_core::owner`).
    pub workload_kind: Option<&'a str>,
    pub workload_name: Option<&'a str>,
    pub user: Option<&'a str>,
    pub image: &'a str,
    pub digest: Option<&'a str>,
    pub decision: &'a str,
    pub rule: Option<&'a str>,
    pub vulnerability: Option<&'a str>,
    pub reason: &'a str,
    pub rules_version: &'a str,
    pub dry_run: bool,
    pub break_glass: bool,
    pub alert_id: Option<&'a str>,
    /// How many warnings the image's lookup had (logged once, when it was looked up), when
    /// it had any.
    pub lookup_warnings: Option<usize>,
}

pub(crate) fn operation_name(op: &Operation) -> &'static str {
    match op {
        Operation::Create => "Create",
        Operation::Update => "Update",
        Operation::Delete => "Delete",
        Operation::Connect => "Connect",
    }
}

/// One decision log line. With the server's own logging (`init_logging`), the JSON line is
/// written here, in the format of tracing-subscriber's JSON formatter (`timestamp`, `level`,
/// `fields` with `message` first, `target`; absent fields left out), and handed to the same
/// lossless writer thread: the same line at a fraction of the cost of the formatter. Under any
/// other subscriber, a `tracing` event as before.
pub(crate) fn log_decision(line: &DecisionLine<'_>) {
    if !tracing::enabled!(target: "vulngate::decision", tracing::Level::INFO) {
        return;
    }
    if let Some(writer) = decision_log_writer() {
        thread_local! {
            // Reused per worker thread: no allocation per line.
            static LINE: std::cell::RefCell<Vec<u8>> =
                std::cell::RefCell::new(Vec::with_capacity(1024));
        }
        let written = LINE.with(|cell| {
            let Ok(mut buf) = cell.try_borrow_mut() else {
                return false;
            };
            buf.clear();
            decision_json(&mut buf, line, Utc::now());
            buf.push(b'\n');
            // One append: one line, never interleaved with another.
            writer.append(&buf);
            true
        });
        if written {
            return;
        }
    }
    trace_decision(line);
}

/// A decision line as a `tracing` event (any subscriber other than `init_logging`'s).
fn trace_decision(line: &DecisionLine<'_>) {
    tracing::info!(
        target: "vulngate::decision",
        uid = line.uid,
        operation = line.operation,
        cluster = line.cluster,
        namespace = line.namespace,
        kind = line.kind,
        name = line.name,
        workload_kind = line.workload_kind,
        workload_name = line.workload_name,
        user = line.user,
        image = line.image,
        digest = line.digest,
        decision = line.decision,
        rule = line.rule,
        vulnerability = line.vulnerability,
        reason = line.reason,
        rules_version = line.rules_version,
        dry_run = line.dry_run,
        break_glass = line.break_glass,
        alert_id = line.alert_id,
        lookup_warnings = line.lookup_warnings,
        "decision"
    );
}

/// The JSON of a decision line as tracing-subscriber's JSON formatter writes the event
/// (`timestamp` with microseconds, `level`, `fields`, `target`), without the newline.
///
/// Laid out here rather than by `serde_json::to_writer` on a derived `Serialize`: the keys
/// are constants, and the values (names, images, digests, reasons) almost never need
/// escaping, while serde_json escapes every byte of every key and value through a per-byte
/// table loop, about 7,500 instructions of a warm request's 56,000. Values are escaped by
/// serde_json when they need it ([`push_json_str`]). The test
/// `decision_line_matches_tracing_json_formatter` holds the layout to the formatter's.
fn decision_json(buf: &mut Vec<u8>, line: &DecisionLine<'_>, now: chrono::DateTime<Utc>) {
    // `,"key":` then the value; the keys need no escaping.
    fn field(buf: &mut Vec<u8>, key: &[u8], value: &str) {
        buf.extend_from_slice(key);
        push_json_str(buf, value);
    }
    fn opt(buf: &mut Vec<u8>, key: &[u8], value: Option<&str>) {
        if let Some(v) = value {
            field(buf, key, v);
        }
    }
    // chrono's RFC 3339 with microseconds is tracing's timestamp format (a hand-written
    // formatter saved about 350 instructions of 56,000 per request: not worth it).
    field(buf, b"{\"timestamp\":", &crate::alerts::rfc3339(now));
    // The event's message comes first, as tracing's JSON formatter writes it.
    buf.extend_from_slice(b",\"level\":\"INFO\",\"fields\":{\"message\":\"decision\"");
    field(buf, b",\"uid\":", line.uid);
    field(buf, b",\"operation\":", line.operation);
    opt(buf, b",\"cluster\":", line.cluster);
    opt(buf, b",\"namespace\":", line.namespace);
    field(buf, b",\"kind\":", line.kind);
    opt(buf, b",\"name\":", line.name);
    opt(buf, b",\"workload_kind\":", line.workload_kind);
    opt(buf, b",\"workload_name\":", line.workload_name);
    opt(buf, b",\"user\":", line.user);
    field(buf, b",\"image\":", line.image);
    opt(buf, b",\"digest\":", line.digest);
    field(buf, b",\"decision\":", line.decision);
    opt(buf, b",\"rule\":", line.rule);
    opt(buf, b",\"vulnerability\":", line.vulnerability);
    field(buf, b",\"reason\":", line.reason);
    field(buf, b",\"rules_version\":", line.rules_version);
    buf.extend_from_slice(if line.dry_run {
        b",\"dry_run\":true"
    } else {
        b",\"dry_run\":false"
    });
    buf.extend_from_slice(if line.break_glass {
        b",\"break_glass\":true"
    } else {
        b",\"break_glass\":false"
    });
    opt(buf, b",\"alert_id\":", line.alert_id);
    if let Some(n) = line.lookup_warnings {
        // Writing into a Vec cannot fail.
        let _ = std::io::Write::write_fmt(buf, format_args!(",\"lookup_warnings\":{n}"));
    }
    buf.extend_from_slice(b"},\"target\":\"vulngate::decision\"}");
}

/// Appends `s` as a JSON string, escaped exactly as serde_json escapes it (`"`, `\\` and
/// control characters below U+0020; nothing else). A string without those is copied as it
/// is; any other goes through serde_json.
pub(crate) fn push_json_str(buf: &mut Vec<u8>, s: &str) {
    // `fold`, not `any`: without the early exit the check compiles to vector instructions.
    let plain = s
        .bytes()
        .fold(true, |ok, b| ok & (b >= 0x20) & (b != b'"') & (b != b'\\'));
    if plain {
        buf.reserve(s.len() + 2);
        buf.push(b'"');
        buf.extend_from_slice(s.as_bytes());
        buf.push(b'"');
    } else {
        // Serialising a `str` into a `Vec` cannot fail.
        let _ = serde_json::to_writer(&mut *buf, s);
    }
}

/// The log line of a runtime alert (target `vulngate::decision`, `origin = "runtime"`).
pub(crate) fn log_runtime_alert(a: &Alert) {
    tracing::info!(
        target: "vulngate::decision",
        origin = "runtime", namespace = a.namespace.as_deref(),
        kind = %a.kind, name = a.name.as_deref(), image = %a.image,
        digest = a.digest.as_deref(), decision = a.decision.as_str(),
        rule = a.rule.as_deref(), reason = %a.reason, alert_id = %a.id,
        "runtime alert"
    );
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::sync::Arc;

    use serde_json::Value;

    use super::*;

    /// The decision line written directly is the line tracing-subscriber's JSON formatter
    /// (as `init_logging` sets it up) writes for the same event: same keys in the same order,
    /// same values; only the timestamp's instant differs.
    #[test]
    fn decision_line_matches_tracing_json_formatter() {
        #[derive(Clone, Default)]
        struct Capture(Arc<std::sync::Mutex<Vec<u8>>>);
        impl std::io::Write for Capture {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let full = DecisionLine {
            uid: "705ab4f5-\"quoted\"",
            operation: "Create",
            cluster: Some("prod-1"),
            namespace: Some("shop"),
            kind: "Deployment",
            name: Some("web-5d8f9c7b4-x2x9q"),
            workload_kind: Some("Deployment"),
            workload_name: Some("web"),
            user: Some("alice@example.com"),
            image: "registry.example/app@sha256:00",
            digest: Some("sha256:00"),
            decision: "deny",
            rule: Some("no-critical"),
            vulnerability: Some("CVE-2021-44228"),
            reason: "1 critical or higher vulnerability (CVE-2021-44228), more than the allowed count of 0\n\u{7}",
            rules_version: "3f2a",
            dry_run: true,
            break_glass: false,
            alert_id: Some("0193"),
            lookup_warnings: Some(2),
        };
        let sparse = DecisionLine {
            cluster: None,
            namespace: None,
            name: None,
            workload_kind: None,
            workload_name: None,
            user: None,
            digest: None,
            rule: None,
            vulnerability: None,
            alert_id: None,
            lookup_warnings: None,
            decision: "allow",
            reason: "",
            ..full
        };
        // Every string field with what needs escaping, and what must be left as it is
        // (DEL, non-ASCII, U+2028), each in its own position.
        const T: [&str; 12] = [
            "a\\b",
            "\"q\"",
            "\u{0}\u{1f}",
            "\t\r\n",
            "\u{7f}",
            "é/ü",
            "😀",
            "\u{2028}",
            "x\"",
            "\\",
            "\u{8}\u{c}",
            "",
        ];
        let tricky = DecisionLine {
            uid: T[0],
            cluster: Some(T[1]),
            namespace: Some(T[2]),
            kind: T[3],
            name: Some(T[4]),
            user: Some(T[5]),
            image: T[6],
            digest: Some(T[7]),
            decision: T[8],
            rule: Some(T[9]),
            vulnerability: Some(T[10]),
            reason: T[11],
            rules_version: T[0],
            alert_id: Some(T[1]),
            break_glass: true,
            dry_run: false,
            ..full
        };
        for line in [&full, &sparse, &tricky] {
            let capture = Capture::default();
            let subscriber = tracing_subscriber::fmt()
                .json()
                .with_writer({
                    let c = capture.clone();
                    move || c.clone()
                })
                .with_current_span(false)
                .finish();
            tracing::subscriber::with_default(subscriber, || trace_decision(line));
            let theirs = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
            let mut ours = Vec::new();
            decision_json(&mut ours, line, Utc::now());
            let ours = String::from_utf8(ours).unwrap();
            // Same text once the timestamps' values are set aside.
            let strip = |s: &str| {
                let v: Value = serde_json::from_str(s.trim_end()).unwrap();
                let ts = v["timestamp"].as_str().unwrap().to_string();
                assert_eq!(ts.len(), "2026-11-28T16:15:16.123456Z".len(), "{ts}");
                s.trim_end().replacen(&ts, "<ts>", 1)
            };
            assert_eq!(strip(&ours), strip(&theirs));
            assert!(theirs.ends_with('\n') && !ours.contains('\n'));
        }
    }
}
