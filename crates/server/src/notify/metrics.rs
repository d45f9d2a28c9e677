//! Per-sink notification metrics (registered by [`NotifyMetrics::register`] into the
//! server's registry, prefix `vulngate`).

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

type Labels = Vec<(&'static str, String)>;

/// The notification metrics; cheap to clone (shared handles).
#[derive(Debug, Clone, Default)]
pub struct NotifyMetrics {
    delivered: Family<Labels, Counter>,
    failed: Family<Labels, Counter>,
    dead: Family<Labels, Counter>,
    depth: Family<Labels, Gauge>,
}

fn sink(name: &str) -> Labels {
    vec![("sink", name.to_string())]
}

impl NotifyMetrics {
    pub fn register(registry: &mut Registry) -> NotifyMetrics {
        let m = NotifyMetrics::default();
        registry.register(
            "notifications_delivered",
            "Notifications delivered, per sink",
            m.delivered.clone(),
        );
        registry.register(
            "notification_attempts_failed",
            "Notification attempts that failed (each retried or dead-lettered), per sink",
            m.failed.clone(),
        );
        registry.register(
            "notifications_dead_lettered",
            "Notifications given up after notify.maxAttempts attempts, per sink",
            m.dead.clone(),
        );
        registry.register(
            "notification_outbox_depth",
            "Entries in the notification outbox, per sink and state (pending, dead)",
            m.depth.clone(),
        );
        m
    }

    pub(crate) fn delivered(&self, s: &str) {
        self.delivered.get_or_create(&sink(s)).inc();
    }

    pub(crate) fn failed(&self, s: &str) {
        self.failed.get_or_create(&sink(s)).inc();
    }

    pub(crate) fn dead(&self, s: &str) {
        self.dead.get_or_create(&sink(s)).inc();
    }

    pub(crate) fn set_depth(&self, s: &str, state: &str, n: u64) {
        self.depth
            .get_or_create(&vec![("sink", s.to_string()), ("state", state.to_string())])
            .set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    /// Delivered so far to `sink`.
    pub fn delivered_total(&self, s: &str) -> u64 {
        self.delivered.get_or_create(&sink(s)).get()
    }

    /// Failed attempts so far to `sink`.
    pub fn failed_total(&self, s: &str) -> u64 {
        self.failed.get_or_create(&sink(s)).get()
    }

    /// Dead-lettered so far for `sink`.
    pub fn dead_total(&self, s: &str) -> u64 {
        self.dead.get_or_create(&sink(s)).get()
    }
}
