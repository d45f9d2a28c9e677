//! Metrics of the alert writer and journal (registered by [`AlertMetrics::register`] into the
//! server's registry; an unregistered set, as tests build, just counts).

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

type Labels = Vec<(&'static str, &'static str)>;

/// The alert writer's metrics; cheap to clone (every field is a shared handle).
#[derive(Debug, Clone)]
pub struct AlertMetrics {
    pub(crate) queue_depth: Gauge,
    pub(crate) in_transaction: Gauge,
    pub(crate) journal_bytes: Gauge,
    pub(crate) journal_records: Gauge,
    pub(crate) journaled: Counter,
    pub(crate) journal_corrupt: Counter,
    pub(crate) replays: Counter,
    pub(crate) replayed: Counter,
    pub(crate) transactions: Family<Labels, Counter>,
    pub(crate) batch_alerts: Histogram,
    pub(crate) write_seconds: Family<Labels, Histogram>,
}

fn write_histogram() -> Histogram {
    // 0.5 ms .. ~16 s
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

impl Default for AlertMetrics {
    fn default() -> Self {
        AlertMetrics {
            queue_depth: Gauge::default(),
            in_transaction: Gauge::default(),
            journal_bytes: Gauge::default(),
            journal_records: Gauge::default(),
            journaled: Counter::default(),
            journal_corrupt: Counter::default(),
            replays: Counter::default(),
            replayed: Counter::default(),
            transactions: Family::default(),
            batch_alerts: Histogram::new(exponential_buckets(1.0, 2.0, 11)),
            write_seconds: Family::new_with_constructor(write_histogram),
        }
    }
}

impl AlertMetrics {
    /// A new set, registered into `registry` (the server's, prefix `vulngate`).
    pub fn register(registry: &mut Registry) -> AlertMetrics {
        let m = AlertMetrics::default();
        registry.register(
            "alert_queue_depth",
            "Alerts waiting in the alert writer's queue",
            m.queue_depth.clone(),
        );
        registry.register(
            "alert_store_in_transaction",
            "Alerts in the alert store transaction under way",
            m.in_transaction.clone(),
        );
        registry.register(
            "alert_journal_bytes",
            "Size of the local alert journal (alerts not yet in the store)",
            m.journal_bytes.clone(),
        );
        registry.register(
            "alert_journal_records",
            "Records in the local alert journal (alerts not yet in the store)",
            m.journal_records.clone(),
        );
        registry.register(
            "alerts_journaled",
            "Alerts written to the local journal because the store did not take them in time",
            m.journaled.clone(),
        );
        registry.register(
            "alert_journal_corrupt_records",
            "Corrupt or truncated journal records skipped at replay",
            m.journal_corrupt.clone(),
        );
        registry.register(
            "alert_journal_replays",
            "Journal replays that moved alerts into the store",
            m.replays.clone(),
        );
        registry.register(
            "alerts_replayed",
            "Alerts read back from the journal and stored (already stored ones included)",
            m.replayed.clone(),
        );
        registry.register(
            "alert_store_transactions",
            "Alert store transactions by result (ok, error); many alerts per transaction",
            m.transactions.clone(),
        );
        registry.register(
            "alert_store_batch_alerts",
            "Alerts per alert store transaction",
            m.batch_alerts.clone(),
        );
        registry.register(
            "alert_write_seconds",
            "Time a request waited for its alerts to be durable, by where they went (store, journal, failed)",
            m.write_seconds.clone(),
        );
        m
    }

    /// Alerts now waiting in the writer's queue.
    pub fn queue_depth(&self) -> i64 {
        self.queue_depth.get()
    }

    /// Alerts in the store transaction under way.
    pub fn in_transaction(&self) -> i64 {
        self.in_transaction.get()
    }

    /// Bytes and records now in the journal.
    pub fn journal(&self) -> (i64, i64) {
        (self.journal_bytes.get(), self.journal_records.get())
    }

    /// Alerts journaled so far.
    pub fn journaled(&self) -> u64 {
        self.journaled.get()
    }

    pub fn journal_corrupt(&self) -> u64 {
        self.journal_corrupt.get()
    }

    pub fn replays(&self) -> u64 {
        self.replays.get()
    }

    /// Store transactions with `result` (`ok`, `error`).
    pub fn transactions(&self, result: &'static str) -> u64 {
        self.transactions
            .get_or_create(&vec![("result", result)])
            .get()
    }

    pub(crate) fn transaction(&self, ok: bool, alerts: usize) {
        let result = if ok { "ok" } else { "error" };
        self.transactions
            .get_or_create(&vec![("result", result)])
            .inc();
        if ok {
            self.batch_alerts.observe(alerts as f64);
        }
    }

    pub(crate) fn wrote(&self, to: &'static str, seconds: f64) {
        self.write_seconds
            .get_or_create(&vec![("to", to)])
            .observe(seconds);
    }

    pub(crate) fn set_journal(&self, bytes: u64, records: u64) {
        self.journal_bytes.set(bytes.min(i64::MAX as u64) as i64);
        self.journal_records
            .set(records.min(i64::MAX as u64) as i64);
    }
}
