//! Kubernetes Events (`events.k8s.io/v1`) for audit and deny decisions: on the admitted
//! workload (webhook) and on the Pod (runtime alerts of the re-evaluation).
//!
//! [`EventRecorder::record`] never blocks and never fails: the event goes into a bounded
//! queue (dropped, and counted, when full) that a background task sends to the API server.
//! Sending errors are logged and counted; they never reach an admission response.

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::PostParams;
use kube::Api;
use tokio::sync::mpsc;

use crate::metrics::Metrics;

pub const REPORTING_CONTROLLER: &str = "vulngate.io/vulngate";
pub const REASON_DENIED: &str = "VulngateDenied";
pub const REASON_AUDITED: &str = "VulngateAudited";
pub const REASON_RUNTIME_AUDIT: &str = "VulngateRuntimeAudit";
pub const REASON_RUNTIME_DENY: &str = "VulngateRuntimeDeny";
/// The longest note (the API server refuses more than 1 kB).
pub const MAX_NOTE: usize = 1024;
/// Events waiting to be sent; more are dropped.
pub const QUEUE: usize = 256;

/// The object an Event is about.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Regarding {
    pub api_version: String,
    pub kind: String,
    pub name: String,
    pub namespace: Option<String>,
    /// None for an object being created (not persisted yet).
    pub uid: Option<String>,
}

/// One Event to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventSpec {
    pub regarding: Regarding,
    pub reason: &'static str,
    pub action: &'static str,
    pub note: String,
}

/// Sends Events in the background; cheap to clone.
#[derive(Debug, Clone)]
pub struct EventRecorder {
    tx: mpsc::Sender<EventSpec>,
    metrics: Metrics,
}

impl EventRecorder {
    /// Starts the sender task (needs a Tokio runtime). `instance` is the reporting instance
    /// (see [`reporting_instance`]).
    pub fn start(client: kube::Client, instance: String, metrics: Metrics) -> EventRecorder {
        let (tx, mut rx) = mpsc::channel::<EventSpec>(QUEUE);
        let m = metrics.clone();
        tokio::spawn(async move {
            while let Some(spec) = rx.recv().await {
                let ns = spec
                    .regarding
                    .namespace
                    .clone()
                    .unwrap_or_else(|| "default".to_string());
                let event = build_event(&spec, &instance);
                let api: Api<Event> = Api::namespaced(client.clone(), &ns);
                match api.create(&PostParams::default(), &event).await {
                    Ok(_) => m.event("sent"),
                    Err(e) => {
                        m.event("failed");
                        tracing::warn!(
                            namespace = %ns, kind = %spec.regarding.kind,
                            name = %spec.regarding.name, reason = spec.reason, error = %e,
                            "cannot create Kubernetes Event"
                        );
                    }
                }
            }
        });
        EventRecorder { tx, metrics }
    }

    /// Queues an Event; never blocks (a full queue drops it, counted as `dropped`).
    pub fn record(&self, spec: EventSpec) {
        if self.tx.try_send(spec).is_err() {
            self.metrics.event("dropped");
        }
    }
}

/// The reporting instance: `$POD_NAME`, else the host name, else `vulngate`.
pub fn reporting_instance() -> String {
    std::env::var("POD_NAME")
        .ok()
        .filter(|s| !s.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|s| s.trim().to_string())
        })
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "vulngate".to_string())
}

/// Cuts `s` to at most `max` bytes on a character boundary.
pub fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

fn build_event(spec: &EventSpec, instance: &str) -> Event {
    let now = k8s_openapi::jiff::Timestamp::now();
    let r = &spec.regarding;
    let base = if r.name.is_empty() {
        r.kind.to_ascii_lowercase()
    } else {
        r.name.clone()
    };
    let suffix = uuid::Uuid::now_v7().simple().to_string();
    Event {
        metadata: ObjectMeta {
            // Like client-go: the object's name and a unique suffix.
            name: Some(format!("{base}.{}", &suffix[suffix.len() - 16..])),
            namespace: r.namespace.clone(),
            ..ObjectMeta::default()
        },
        event_time: Some(MicroTime(now)),
        type_: Some("Warning".to_string()),
        reason: Some(spec.reason.to_string()),
        action: Some(spec.action.to_string()),
        note: Some(truncate(&spec.note, MAX_NOTE)),
        reporting_controller: Some(REPORTING_CONTROLLER.to_string()),
        reporting_instance: Some(instance.to_string()),
        regarding: Some(ObjectReference {
            api_version: Some(r.api_version.clone()),
            kind: Some(r.kind.clone()),
            name: Some(r.name.clone()),
            namespace: r.namespace.clone(),
            uid: r.uid.clone(),
            ..ObjectReference::default()
        }),
        ..Event::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncates_on_char_boundaries() {
        assert_eq!(truncate("abc", 5), "abc");
        assert_eq!(truncate("aé", 2), "a");
        assert_eq!(truncate(&"x".repeat(2000), MAX_NOTE).len(), MAX_NOTE);
    }
}
