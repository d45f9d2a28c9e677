//! The alert writer: one task (a thread: the backends are blocking) per store, a bounded
//! queue in front of it, and group commit: the writer takes every alert waiting (up to
//! `maxBatch`) into one transaction, so a storm of denials costs one commit (one fsync) per
//! batch instead of one per request.
//!
//! A request waits for its alerts' commit only until its deadline. Whatever the store did not
//! take by then (queue full, store locked or down, deadline passed) goes to the local
//! [`Journal`], fsync'd before the answer; the writer replays the journal into the store at
//! start and every `replayInterval`. The stores skip alert ids they already have, so an alert
//! that reaches both the store (late) and the journal is stored once.

use std::path::Path;
use std::sync::mpsc::{self, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::journal::{Journal, JournalError, JOURNAL_FILE};
use super::metrics::AlertMetrics;
use super::{Alert, AlertBackend, AlertError};

/// `alertWriter:` in vulngate.yaml.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct AlertWriterConfig {
    /// Requests (each with its alerts) that may wait for the writer; beyond it, alerts go
    /// straight to the journal.
    pub queue_depth: usize,
    /// Most alerts in one store transaction.
    pub max_batch: usize,
    /// Largest journal file; at the limit, alerts the store cannot take are not durable and
    /// the failure policy decides. 0 turns the journal off.
    pub journal_max_bytes: u64,
    /// How often the journal is replayed into the store (also once at start).
    #[serde(with = "crate::config::duration_str")]
    pub replay_interval: Duration,
    /// How long a write without a request deadline (runtime re-evaluation) waits for the
    /// store before journaling.
    #[serde(with = "crate::config::duration_str")]
    pub write_timeout: Duration,
    /// Most vulnerabilities an alert lists as violations (the ones that fulfilled the
    /// deciding condition, most severe first); the alert still says how many there were.
    pub max_violations: usize,
}

impl Default for AlertWriterConfig {
    fn default() -> Self {
        AlertWriterConfig {
            queue_depth: 1024,
            max_batch: 512,
            journal_max_bytes: 64 << 20,
            replay_interval: Duration::from_secs(10),
            write_timeout: Duration::from_secs(5),
            max_violations: 500,
        }
    }
}

impl AlertWriterConfig {
    /// Checks the values (field, message).
    pub fn validate(&self) -> Result<(), (String, String)> {
        let bad = |f: &str, m: &str| Err((format!("alertWriter.{f}"), m.to_string()));
        if self.queue_depth == 0 || self.queue_depth > 1 << 20 {
            return bad("queueDepth", "must be between 1 and 1048576");
        }
        if self.max_batch == 0 || self.max_batch > 65536 {
            return bad("maxBatch", "must be between 1 and 65536");
        }
        if self.max_violations == 0 || self.max_violations > 100_000 {
            return bad("maxViolations", "must be between 1 and 100000");
        }
        if self.replay_interval < Duration::from_millis(100) {
            return bad("replayInterval", "must be at least 100ms");
        }
        if self.write_timeout.is_zero() || self.write_timeout > Duration::from_secs(60) {
            return bad("writeTimeout", "must be between 1ms and 60s");
        }
        Ok(())
    }
}

struct Job {
    /// Shared with the request, which frees them (see `AlertStore::record_within`).
    alerts: Arc<[Alert]>,
    done: tokio::sync::oneshot::Sender<Result<(), String>>,
}

/// The running writer of one store (stops when the last handle is dropped).
#[derive(Debug)]
pub(crate) struct Writer {
    tx: SyncSender<Job>,
    journal: Option<Arc<Journal>>,
    metrics: AlertMetrics,
    write_timeout: Duration,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Job({} alerts)", self.alerts.len())
    }
}

/// Where a write went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durable {
    /// Committed to the store.
    Stored,
    /// fsync'd to the local journal (replayed into the store later).
    Journaled,
}

impl Writer {
    /// Opens the journal in `data_dir` and starts the writer thread.
    pub(crate) fn start(
        backend: Arc<dyn AlertBackend>,
        cfg: &AlertWriterConfig,
        data_dir: &Path,
        metrics: AlertMetrics,
        dedup: Option<Duration>,
    ) -> Result<Writer, AlertError> {
        let journal = if cfg.journal_max_bytes == 0 {
            None
        } else {
            std::fs::create_dir_all(data_dir).map_err(|source| AlertError::DataDir {
                path: data_dir.display().to_string(),
                source,
            })?;
            let j = Journal::open(&data_dir.join(JOURNAL_FILE), cfg.journal_max_bytes)?;
            let (bytes, records) = j.stats();
            metrics.set_journal(bytes, records);
            if records > 0 {
                tracing::warn!(
                    journal = %j.path().display(), records, bytes,
                    "alert journal holds alerts not yet in the store; replaying"
                );
            }
            Some(Arc::new(j))
        };
        let (tx, rx) = mpsc::sync_channel::<Job>(cfg.queue_depth);
        let run = Run {
            backend,
            journal: journal.clone(),
            metrics: metrics.clone(),
            max_batch: cfg.max_batch,
            replay_interval: cfg.replay_interval,
            dedup,
        };
        std::thread::Builder::new()
            .name("vulngate-alerts".into())
            .spawn(move || run.run(rx))
            .map_err(|e| AlertError::Other(format!("cannot start the alert writer: {e}")))?;
        Ok(Writer {
            tx,
            journal,
            metrics,
            write_timeout: cfg.write_timeout,
        })
    }

    pub(crate) fn default_deadline(&self) -> tokio::time::Instant {
        tokio::time::Instant::now() + self.write_timeout
    }

    /// Makes `alerts` durable: in the store if it commits them before `deadline`, else in the
    /// journal. Err only when neither took them.
    pub(crate) async fn record(
        &self,
        alerts: Arc<[Alert]>,
        deadline: tokio::time::Instant,
    ) -> Result<Durable, AlertError> {
        let started = Instant::now();
        let n = alerts.len();
        let why = if tokio::time::Instant::now() >= deadline {
            "the deadline had passed".to_string()
        } else {
            let (done, wait) = tokio::sync::oneshot::channel();
            let job = Job {
                alerts: Arc::clone(&alerts),
                done,
            };
            self.metrics.queue_depth.inc_by(n as i64);
            match self.tx.try_send(job) {
                Ok(()) => {
                    let mut wait = wait;
                    let (reply, timed_out) =
                        match tokio::time::timeout_at(deadline, &mut wait).await {
                            Ok(r) => (r.ok(), false),
                            Err(_) => {
                                // Gave up: close the channel first, so that the writer either
                                // sent its reply before (taken here, not journaled) or sees
                                // the request gone (and looks the ids up: they may be
                                // journaled).
                                wait.close();
                                (wait.try_recv().ok(), true)
                            }
                        };
                    match reply {
                        Some(Ok(())) => {
                            self.metrics.wrote("store", started.elapsed().as_secs_f64());
                            return Ok(Durable::Stored);
                        }
                        Some(Err(e)) => format!("the store failed: {e}"),
                        None if timed_out => {
                            "the store did not commit before the deadline".to_string()
                        }
                        None => "the alert writer stopped".to_string(),
                    }
                }
                Err(TrySendError::Full(_)) => {
                    self.metrics.queue_depth.dec_by(n as i64);
                    "the alert writer's queue is full (alertWriter.queueDepth)".to_string()
                }
                Err(TrySendError::Disconnected(_)) => {
                    self.metrics.queue_depth.dec_by(n as i64);
                    "the alert writer stopped".to_string()
                }
            }
        };
        let Some(journal) = self.journal.clone() else {
            self.metrics
                .wrote("failed", started.elapsed().as_secs_f64());
            return Err(AlertError::Other(format!(
                "{why}; the journal is off (alertWriter.journalMaxBytes: 0)"
            )));
        };
        let appended = tokio::task::spawn_blocking(move || journal.append(&alerts))
            .await
            .map_err(|e| AlertError::Other(format!("journal task failed: {e}")))?;
        match appended {
            Ok((bytes, records)) => {
                self.metrics.journaled.inc_by(n as u64);
                self.metrics.set_journal(bytes, records);
                self.metrics
                    .wrote("journal", started.elapsed().as_secs_f64());
                tracing::warn!(
                    alerts = n, journal_records = records,
                    "alert store did not take the alerts in time ({why}); journaled, replayed later"
                );
                Ok(Durable::Journaled)
            }
            Err(e) => {
                self.metrics
                    .wrote("failed", started.elapsed().as_secs_f64());
                Err(AlertError::NotDurable {
                    store: why,
                    journal: e,
                })
            }
        }
    }
}

/// The writer thread's state.
struct Run {
    backend: Arc<dyn AlertBackend>,
    journal: Option<Arc<Journal>>,
    metrics: AlertMetrics,
    max_batch: usize,
    replay_interval: Duration,
    /// `alerts.dedupWindow`.
    dedup: Option<Duration>,
}

impl Run {
    /// Stores what is not stored yet (idempotent by id, also for absorbed repeats).
    /// `unstored`: the alerts known not to be in the store yet (see `run`); None: any may be.
    fn store_refs(
        &self,
        alerts: &[&Alert],
        unstored: Option<&[bool]>,
    ) -> Result<usize, AlertError> {
        match (self.dedup, unstored) {
            (Some(w), Some(u)) => self.backend.record_merged_hinted(alerts, u, w),
            (Some(w), None) => self.backend.record_merged_refs(alerts, w),
            (None, _) => self.backend.record_new_refs(alerts),
        }
    }

    fn run(self, rx: mpsc::Receiver<Job>) {
        let mut next_replay = Instant::now(); // once at start
        loop {
            if Instant::now() >= next_replay {
                self.replay();
                next_replay = Instant::now() + self.replay_interval;
            }
            let wait = next_replay.saturating_duration_since(Instant::now());
            let first = match rx.recv_timeout(wait) {
                Ok(job) => job,
                Err(RecvTimeoutError::Timeout) => continue,
                Err(RecvTimeoutError::Disconnected) => return,
            };
            // Group commit: everything already waiting, up to max_batch alerts.
            let mut jobs = Vec::new();
            let mut n = 0;
            let mut next = Some(first);
            while let Some(job) = next.take() {
                self.metrics.queue_depth.dec_by(job.alerts.len() as i64);
                n += job.alerts.len();
                jobs.push(job);
                if n < self.max_batch {
                    next = rx.try_recv().ok();
                }
            }
            // The batch borrows the requests' alerts (no copy).
            let batch: Vec<&Alert> = jobs.iter().flat_map(|j| j.alerts.iter()).collect();
            // An alert whose request still waits cannot be in the store: its id is new, the
            // request journals only after it gave up waiting (which closes `done`, and then
            // takes a reply sent before that instead of journaling), and only this thread
            // replays the journal, never during a batch. The store may skip its look-up by id.
            let unstored: Vec<bool> = jobs
                .iter()
                .flat_map(|j| {
                    let waiting = !j.done.is_closed();
                    j.alerts.iter().map(move |_| waiting)
                })
                .collect();
            self.metrics.in_transaction.set(n as i64);
            let result = self.store_refs(&batch, Some(&unstored));
            drop(batch);
            self.metrics.in_transaction.set(0);
            self.metrics.transaction(result.is_ok(), n);
            let reply = result.map(|_| ()).map_err(|e| {
                tracing::warn!(alerts = n, error = %e, "alert store write failed");
                e.to_string()
            });
            for job in jobs {
                // Drop the writer's reference first: the request frees the alerts.
                let Job { alerts, done } = job;
                drop(alerts);
                let _ = done.send(reply.clone());
            }
        }
    }

    /// Moves the journal's alerts into the store (idempotent), then drops them from the
    /// journal. On a store error everything stays for the next replay.
    fn replay(&self) {
        let Some(journal) = &self.journal else {
            return;
        };
        if journal.stats().0 == 0 {
            return;
        }
        let read = match journal.read_all() {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the alert journal");
                return;
            }
        };
        for chunk in read.alerts.chunks(self.max_batch) {
            let refs: Vec<&Alert> = chunk.iter().collect();
            let r = self.store_refs(&refs, None);
            self.metrics.transaction(r.is_ok(), chunk.len());
            if let Err(e) = r {
                tracing::warn!(
                    error = %e, journaled = read.alerts.len(),
                    "alert store not available for the journal replay yet; retried in {:?}",
                    self.replay_interval
                );
                return;
            }
        }
        if let Err(e) = journal.drop_prefix(read.end) {
            // The alerts are stored; a later replay stores them again harmlessly.
            tracing::error!(error = %e, "cannot compact the alert journal");
        }
        let (bytes, records) = journal.stats();
        self.metrics.set_journal(bytes, records);
        self.metrics.replays.inc();
        self.metrics.replayed.inc_by(read.alerts.len() as u64);
        self.metrics.journal_corrupt.inc_by(read.corrupt);
        tracing::info!(
            alerts = read.alerts.len(),
            corrupt_skipped = read.corrupt,
            journal_left = records,
            "alert journal replayed into the store"
        );
    }
}

impl From<JournalError> for AlertError {
    fn from(e: JournalError) -> Self {
        AlertError::Journal(e)
    }
}

#[cfg(test)]
mod tests {
    use super::super::journal::tests::alert;
    use super::*;
    use std::sync::Mutex;

    /// Records the hints each merge gets; the first merge waits for `gate`.
    #[derive(Debug, Default)]
    struct Hints {
        seen: Mutex<Vec<Vec<(String, bool)>>>,
        gate: Mutex<Option<std::sync::mpsc::Receiver<()>>>,
    }

    impl AlertBackend for Hints {
        fn record(&self, _: &[Alert]) -> Result<(), AlertError> {
            Ok(())
        }
        fn record_merged_hinted(
            &self,
            alerts: &[&Alert],
            unstored: &[bool],
            _: Duration,
        ) -> Result<usize, AlertError> {
            if let Some(gate) = self.gate.lock().unwrap().take() {
                let _ = gate.recv_timeout(Duration::from_secs(10));
            }
            let batch = alerts
                .iter()
                .map(|a| a.id.clone())
                .zip(unstored.iter().copied());
            self.seen.lock().unwrap().push(batch.collect());
            Ok(alerts.len())
        }
        fn list(&self, _: &super::super::AlertFilter) -> Result<Vec<Alert>, AlertError> {
            Ok(Vec::new())
        }
        fn get(&self, _: &str) -> Result<Option<Alert>, AlertError> {
            Ok(None)
        }
    }

    /// The writer tells the store which alerts cannot be stored yet: those whose request
    /// still waits. A request that gave up (and journaled its alerts) before its batch ran
    /// makes the store look its alerts up by id.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn only_alerts_of_waiting_requests_are_hinted_unstored() {
        let dir = tempfile::tempdir().unwrap();
        let (open, gate) = std::sync::mpsc::channel();
        let backend = Arc::new(Hints {
            gate: Mutex::new(Some(gate)),
            ..Default::default()
        });
        let cfg = AlertWriterConfig::default();
        let w = Arc::new(
            Writer::start(
                backend.clone(),
                &cfg,
                dir.path(),
                AlertMetrics::default(),
                Some(Duration::from_secs(60)),
            )
            .unwrap(),
        );
        let far = tokio::time::Instant::now() + Duration::from_secs(10);
        // The first batch holds the writer until the gate opens.
        let first = tokio::spawn({
            let w = w.clone();
            async move { w.record(Arc::from(vec![alert("a")]), far).await }
        });
        tokio::time::sleep(Duration::from_millis(200)).await;
        // Queued behind it: one request gives up after 100 ms, one waits.
        let soon = tokio::time::Instant::now() + Duration::from_millis(100);
        let gave_up = w.record(Arc::from(vec![alert("b")]), soon).await.unwrap();
        assert_eq!(gave_up, Durable::Journaled);
        let waiting = tokio::spawn({
            let w = w.clone();
            async move { w.record(Arc::from(vec![alert("c")]), far).await }
        });
        tokio::time::sleep(Duration::from_millis(200)).await;
        open.send(()).unwrap();
        assert_eq!(first.await.unwrap().unwrap(), Durable::Stored);
        assert_eq!(waiting.await.unwrap().unwrap(), Durable::Stored);
        let seen: Vec<(String, bool)> = backend.seen.lock().unwrap().concat();
        let hint = |id: &str| seen.iter().find(|(i, _)| i == id).map(|(_, u)| *u);
        assert_eq!(hint("a"), Some(true));
        assert_eq!(hint("b"), Some(false), "a request that gave up: look it up");
        assert_eq!(hint("c"), Some(true));
    }
}
