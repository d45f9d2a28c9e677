//! Prometheus metrics (`/metrics`, OpenMetrics text).

use std::sync::Arc;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

type Labels = Vec<(&'static str, String)>;

/// Label values counted on every request: their counters are looked up (and the label set
/// built) once, not per request. A family's counter is shared with its handle, and created
/// on first use only, so `/metrics` shows exactly the same series.
const FREQUENT_DECISIONS: [&str; 3] = ["allow", "audit", "deny"];
const FREQUENT_RESPONSES: [&str; 2] = ["allowed", "denied"];

fn cached(family: &Family<Labels, Counter>, label: &'static str, value: &str) -> Counter {
    family
        .get_or_create(&vec![(label, value.to_string())])
        .clone()
}

/// Increments `family`'s counter for `label=value`, through its cached handle in `cells`
/// when `value` is one of `frequent` (same index).
fn inc(
    family: &Family<Labels, Counter>,
    label: &'static str,
    value: &str,
    frequent: &[&str],
    cells: &[std::sync::OnceLock<Counter>],
) {
    match frequent.iter().position(|o| *o == value) {
        Some(n) => cells[n].get_or_init(|| cached(family, label, value)).inc(),
        None => cached(family, label, value).inc(),
    };
}

#[derive(Debug)]
struct Inner {
    registry: Registry,
    decisions: Family<Labels, Counter>,
    requests: Family<Labels, Counter>,
    /// prometheus-client's own: measured faster than the lock-free one we had (11.9 against
    /// 23.1 ns per observation on 2 threads, `benches/observe.rs`, docs/benchmarks.md).
    latency: Histogram,
    cache_hits: Counter,
    cache_misses: Counter,
    source_failures: Family<Labels, Counter>,
    lookup_warnings: Counter,
    alerts_written: Family<Labels, Counter>,
    alert_failures: Counter,
    rules_reload_failures: Counter,
    rules_reloads: Counter,
    rules_count: Gauge,
    catalog_age: Family<Labels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    catalog_refresh_failures: Family<Labels, Counter>,
    running_images: Family<Labels, Gauge>,
    rescans: Family<Labels, Counter>,
    rescan_duration: Histogram,
    rescan_lookup_errors: Counter,
    events: Family<Labels, Counter>,
    alert_store: crate::alerts::AlertMetrics,
    notify: crate::notify::NotifyMetrics,
    pins: crate::admission::mutate::PinMetrics,
    decision_counters: [std::sync::OnceLock<Counter>; FREQUENT_DECISIONS.len()],
    request_counters: [std::sync::OnceLock<Counter>; FREQUENT_RESPONSES.len()],
    http: crate::http::HttpMetrics,
    guard: crate::admission::limits::GuardMetrics,
}

/// The server's metrics; cheap to clone.
#[derive(Debug, Clone)]
pub struct Metrics(Arc<Inner>);

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("vulngate");
        let decisions = Family::<Labels, Counter>::default();
        registry.register(
            "image_decisions",
            "Image decisions by outcome (allow, audit, deny, skipped, excluded, break_glass)",
            decisions.clone(),
        );
        let requests = Family::<Labels, Counter>::default();
        registry.register(
            "admission_requests",
            "Admission requests by response (allowed, denied, invalid)",
            requests.clone(),
        );
        let latency = Histogram::new(exponential_buckets(0.0005, 2.5, 14));
        registry.register(
            "admission_duration_seconds",
            "Time to answer an admission request",
            latency.clone(),
        );
        let cache_hits = Counter::default();
        registry.register(
            "findings_cache_hits",
            "Findings cache hits",
            cache_hits.clone(),
        );
        let cache_misses = Counter::default();
        registry.register(
            "findings_cache_misses",
            "Findings cache misses (source lookups)",
            cache_misses.clone(),
        );
        let source_failures = Family::<Labels, Counter>::default();
        registry.register(
            "findings_source_failures",
            "Images whose findings could not be obtained, by cause (error, deadline)",
            source_failures.clone(),
        );
        let lookup_warnings = Counter::default();
        registry.register(
            "findings_lookup_warnings",
            "Registry lookup warnings returned with admission responses (reports merged unsigned or unverified, artifacts dropped, no trust policy)",
            lookup_warnings.clone(),
        );
        let alerts_written = Family::<Labels, Counter>::default();
        registry.register(
            "alerts_written",
            "Alerts recorded by action",
            alerts_written.clone(),
        );
        let alert_failures = Counter::default();
        registry.register(
            "alert_write_failures",
            "Requests whose alerts could not be recorded",
            alert_failures.clone(),
        );
        let rules_reloads = Counter::default();
        registry.register(
            "rules_reloads",
            "Successful rule set (re)loads",
            rules_reloads.clone(),
        );
        let rules_reload_failures = Counter::default();
        registry.register(
            "rules_reload_failures",
            "Rule reloads rejected (the last good rule set stays active)",
            rules_reload_failures.clone(),
        );
        let rules_count = Gauge::default();
        registry.register(
            "rules_active",
            "Rules in the active rule set",
            rules_count.clone(),
        );
        let catalog_age = Family::<Labels, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
        registry.register(
            "catalog_age_seconds",
            "Age of the exploitation catalog in use (kev, epss): time since it was fetched or its file changed",
            catalog_age.clone(),
        );
        let catalog_refresh_failures = Family::<Labels, Counter>::default();
        registry.register(
            "catalog_refresh_failures",
            "Failed refreshes of an exploitation catalog (the last good copy stays in use)",
            catalog_refresh_failures.clone(),
        );
        let running_images = Family::<Labels, Gauge>::default();
        registry.register(
            "running_images",
            "Running container images by decision at the last re-evaluation (allow, audit, deny, unscanned)",
            running_images.clone(),
        );
        let rescans = Family::<Labels, Counter>::default();
        registry.register(
            "rescans",
            "Re-evaluations of running workloads by result (ok, error)",
            rescans.clone(),
        );
        let rescan_duration = Histogram::new(exponential_buckets(0.01, 2.5, 12));
        registry.register(
            "rescan_duration_seconds",
            "Time of one re-evaluation of the running workloads",
            rescan_duration.clone(),
        );
        let rescan_lookup_errors = Counter::default();
        registry.register(
            "rescan_lookup_errors",
            "Findings lookups of the re-evaluation that failed",
            rescan_lookup_errors.clone(),
        );
        let events = Family::<Labels, Counter>::default();
        registry.register(
            "kubernetes_events",
            "Kubernetes Events by result (sent, failed, dropped: queue full)",
            events.clone(),
        );
        let http = crate::http::HttpMetrics::register(&mut registry);
        let guard = crate::admission::limits::GuardMetrics::register(&mut registry);
        Metrics(Arc::new(Inner {
            http,
            guard,
            running_images,
            rescans,
            rescan_duration,
            rescan_lookup_errors,
            events,
            decision_counters: Default::default(),
            request_counters: Default::default(),
            alert_store: crate::alerts::AlertMetrics::register(&mut registry),
            notify: crate::notify::NotifyMetrics::register(&mut registry),
            pins: crate::admission::mutate::PinMetrics::register(&mut registry),
            registry,
            decisions,
            requests,
            latency,
            cache_hits,
            cache_misses,
            source_failures,
            lookup_warnings,
            alerts_written,
            alert_failures,
            rules_reload_failures,
            rules_reloads,
            rules_count,
            catalog_age,
            catalog_refresh_failures,
        }))
    }

    pub fn decision(&self, outcome: &str) {
        let i = &self.0;
        inc(
            &i.decisions,
            "outcome",
            outcome,
            &FREQUENT_DECISIONS,
            &i.decision_counters,
        );
    }

    pub fn request(&self, response: &str, seconds: f64) {
        let i = &self.0;
        inc(
            &i.requests,
            "response",
            response,
            &FREQUENT_RESPONSES,
            &i.request_counters,
        );
        i.latency.observe(seconds);
    }

    /// The listeners' connection metrics.
    pub fn http(&self) -> &crate::http::HttpMetrics {
        &self.0.http
    }

    /// The review limits' and break-glass metrics (defined in `admission::limits`).
    pub fn guard(&self) -> &crate::admission::limits::GuardMetrics {
        &self.0.guard
    }

    /// Digest pinning (`/mutate`).
    pub fn pins(&self) -> &crate::admission::mutate::PinMetrics {
        &self.0.pins
    }

    /// The alert writer's and journal's metrics (defined in `alerts::metrics`).
    /// The notification metrics (per sink).
    pub fn notify(&self) -> &crate::notify::NotifyMetrics {
        &self.0.notify
    }

    pub fn alert_store(&self) -> &crate::alerts::AlertMetrics {
        &self.0.alert_store
    }

    pub fn cache_hit(&self) {
        self.0.cache_hits.inc();
    }

    pub fn cache_miss(&self) {
        self.0.cache_misses.inc();
    }

    pub fn cache_hits(&self) -> u64 {
        self.0.cache_hits.get()
    }

    pub fn cache_misses(&self) -> u64 {
        self.0.cache_misses.get()
    }

    pub fn catalog_age(&self, catalog: &str, seconds: f64) {
        self.0
            .catalog_age
            .get_or_create(&vec![("catalog", catalog.to_string())])
            .set(seconds);
    }

    pub fn catalog_refresh_failed(&self, catalog: &str) {
        self.0
            .catalog_refresh_failures
            .get_or_create(&vec![("catalog", catalog.to_string())])
            .inc();
    }

    pub fn source_failure(&self, cause: &str) {
        self.0
            .source_failures
            .get_or_create(&vec![("cause", cause.to_string())])
            .inc();
    }

    pub fn lookup_warnings(&self, n: usize) {
        self.0.lookup_warnings.inc_by(n as u64);
    }

    /// `vulngate_findings_lookup_warnings_total`.
    pub fn lookup_warnings_total(&self) -> u64 {
        self.0.lookup_warnings.get()
    }

    pub fn alert_written(&self, action: &str) {
        self.0
            .alerts_written
            .get_or_create(&vec![("action", action.to_string())])
            .inc();
    }

    pub fn alert_failure(&self) {
        self.0.alert_failures.inc();
    }

    pub fn alert_failures(&self) -> u64 {
        self.0.alert_failures.get()
    }

    pub fn rules_loaded(&self, count: usize) {
        self.0.rules_reloads.inc();
        self.0.rules_count.set(count as i64);
    }

    pub fn rules_reload_failed(&self) {
        self.0.rules_reload_failures.inc();
    }

    pub fn rules_reload_failures(&self) -> u64 {
        self.0.rules_reload_failures.get()
    }

    /// Sets the running-images gauges (every decision label, so a vanished one reads 0).
    pub fn running_images(&self, allow: i64, audit: i64, deny: i64, unscanned: i64) {
        for (d, v) in [
            ("allow", allow),
            ("audit", audit),
            ("deny", deny),
            ("unscanned", unscanned),
        ] {
            self.0
                .running_images
                .get_or_create(&vec![("decision", d.to_string())])
                .set(v);
        }
    }

    pub fn running_images_get(&self, decision: &str) -> i64 {
        self.0
            .running_images
            .get_or_create(&vec![("decision", decision.to_string())])
            .get()
    }

    pub fn rescan(&self, result: &str, seconds: f64) {
        self.0
            .rescans
            .get_or_create(&vec![("result", result.to_string())])
            .inc();
        self.0.rescan_duration.observe(seconds);
    }

    pub fn rescans(&self, result: &str) -> u64 {
        self.0
            .rescans
            .get_or_create(&vec![("result", result.to_string())])
            .get()
    }

    pub fn rescan_lookup_error(&self) {
        self.0.rescan_lookup_errors.inc();
    }

    pub fn rescan_lookup_errors(&self) -> u64 {
        self.0.rescan_lookup_errors.get()
    }

    pub fn event(&self, result: &str) {
        self.0
            .events
            .get_or_create(&vec![("result", result.to_string())])
            .inc();
    }

    pub fn events(&self, result: &str) -> u64 {
        self.0
            .events
            .get_or_create(&vec![("result", result.to_string())])
            .get()
    }

    /// OpenMetrics text.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = encode(&mut out, &self.0.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Request latencies from several threads at once are all counted, in their buckets.
    #[test]
    fn request_latencies_from_several_threads_are_counted() {
        let m = Metrics::new();
        std::thread::scope(|s| {
            for t in 0..4 {
                let m = m.clone();
                s.spawn(move || {
                    for i in 0..1_000 {
                        m.request("allowed", if (i + t) % 2 == 0 { 0.0004 } else { 0.004 });
                    }
                });
            }
        });
        let text = m.encode();
        assert!(
            text.contains("admission_duration_seconds_count 4000"),
            "{text}"
        );
        assert!(
            text.contains("admission_duration_seconds_bucket{le=\"0.0005\"} 2000"),
            "{text}"
        );
        assert!(
            text.contains("admission_duration_seconds_bucket{le=\"+Inf\"} 4000"),
            "{text}"
        );
    }
}
