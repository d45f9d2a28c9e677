//! The alert writer and journal (issue 17, item 6) with a real SQLite store: answers never
//! wait past the deadline for a locked store, journaled alerts are replayed exactly once,
//! corrupt journal records are skipped, and concurrent alerts share transactions.

#![allow(clippy::unwrap_used)]

mod support;

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use kube::core::admission::AdmissionResponse;
use support::*;
use vulngate_core::engine::SeverityCounts;
use vulngate_core::Outcome;
use vulngate_server::alerts::journal::{encode, JOURNAL_FILE};
use vulngate_server::alerts::{AlertMetrics, AlertOrigin, AlertWriterConfig, Durable, SQLITE_FILE};
use vulngate_server::{Alert, AlertAction, AlertFilter, AlertStore, FailurePolicy, Server};

/// Holds an exclusive transaction on the SQLite store until `release` (or 30 s) in a thread.
struct Locker {
    release: std::sync::mpsc::Sender<()>,
    released: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Locker {
    fn lock(db: &Path) -> Locker {
        let (locked_tx, locked_rx) = std::sync::mpsc::channel();
        let (release, release_rx) = std::sync::mpsc::channel::<()>();
        let released = Arc::new(AtomicBool::new(false));
        let flag = released.clone();
        let db = db.to_path_buf();
        let thread = std::thread::spawn(move || {
            let conn = rusqlite::Connection::open(&db).unwrap();
            conn.execute_batch("BEGIN EXCLUSIVE").unwrap();
            locked_tx.send(()).unwrap();
            let _ = release_rx.recv_timeout(Duration::from_secs(30));
            flag.store(true, Ordering::SeqCst);
            conn.execute_batch("COMMIT").unwrap();
        });
        locked_rx.recv().unwrap();
        Locker {
            release,
            released,
            thread: Some(thread),
        }
    }

    fn still_holding(&self) -> bool {
        !self.released.load(Ordering::SeqCst)
    }

    fn release(mut self) {
        let _ = self.release.send(());
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }
}

fn all_alerts(store: &AlertStore) -> Vec<Alert> {
    store
        .list(&AlertFilter {
            limit: Some(100_000),
            ..Default::default()
        })
        .unwrap()
}

/// The same Deployment's review (a denied image), 20 times at once; their answers.
async fn deny_twenty_at_once(server: &Server, uri: &'static str) -> Vec<AdmissionResponse> {
    let review = create(&deployment("prod-shop", &[DEBIAN]));
    let mut answers = Vec::new();
    for _ in 0..20 {
        let server = server.clone();
        let review = review.clone();
        answers.push(tokio::spawn(async move {
            admit_uri(&server, uri, &review).await
        }));
    }
    let mut out = Vec::new();
    for a in answers {
        out.push(a.await.unwrap());
    }
    out
}

/// Polls `f` until it holds (the writer replays in the background); fails after 60 s.
async fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    for _ in 0..600 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("never happened: {what}");
}

/// Quick replays; every review its own alert (these tests count alerts per request; the
/// de-duplication of replays is checked in postgres.rs `dedup_in_both_stores`).
fn quick_replay(c: &mut vulngate_server::Config) {
    c.alert_writer.replay_interval = Duration::from_millis(200);
    c.alerts.dedup_window = Duration::ZERO;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn denies_are_answered_while_the_store_is_locked_and_replayed_once() {
    let h = harness_with(RULES, TestSource::new(), quick_replay);
    let data_dir = h.server.config().data_dir.clone();
    let locker = Locker::lock(&data_dir.join(SQLITE_FILE));

    let mut ids = BTreeSet::new();
    for r in deny_twenty_at_once(&h.server, "/validate?timeout=3s").await {
        assert!(!r.allowed);
        assert_eq!(r.result.code, 403, "{}", r.result.message);
        assert!(
            r.result.message.contains("denied by rule"),
            "{}",
            r.result.message
        );
        ids.insert(r.audit_annotations["alert-id"].clone());
    }
    // Every answer came while the lock was held: none of them waited for the store.
    assert!(
        locker.still_holding(),
        "answers came only after the lock was released"
    );
    assert_eq!(ids.len(), 20);
    let m = h.server.metrics().alert_store();
    assert_eq!(m.journaled(), 20);
    assert_eq!(m.journal().1, 20);
    // Nothing can be in the store yet (another connection reads the committed state).
    let reader = rusqlite::Connection::open(data_dir.join(SQLITE_FILE)).unwrap();
    let count: i64 = reader
        .query_row("SELECT COUNT(*) FROM alerts", [], |r| r.get(0))
        .unwrap();
    assert_eq!(count, 0);
    let text = h.server.metrics().encode();
    for name in [
        "vulngate_alert_queue_depth",
        "vulngate_alert_journal_bytes",
        "vulngate_alert_journal_records 20",
        "vulngate_alert_journal_replays_total",
        "vulngate_alert_write_seconds_bucket",
    ] {
        assert!(text.contains(name), "{name} missing from /metrics:\n{text}");
    }

    locker.release();
    // Replayed from the journal; the writer's late commits of the same alerts add nothing.
    let store = h.server.alerts().clone();
    eventually("the journal replayed and the queue drained", || {
        m.journal().1 == 0 && m.queue_depth() == 0 && all_alerts(&store).len() >= 20
    })
    .await;
    let stored = all_alerts(&store);
    let stored_ids: BTreeSet<String> = stored.iter().map(|a| a.id.clone()).collect();
    assert_eq!(stored.len(), 20, "duplicates or strays");
    assert_eq!(stored_ids, ids);
    assert!(stored.iter().all(|a| a.action == AlertAction::Deny));
    assert!(m.replays() >= 1);
}

/// The same with de-duplication on (the default): the 20 denials are one alert counted 20
/// times, although each also reached the store late (the writer's commit after the request
/// gave up and journaled it). The writer skips the look-up by id only for alerts whose
/// request still waits; a request that gave up makes it look them up, so neither the late
/// commit nor the replay counts an alert twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn deduplicated_denies_journaled_while_locked_are_counted_once() {
    let h = harness_with(RULES, TestSource::new(), |c| {
        c.alert_writer.replay_interval = Duration::from_millis(200);
        c.alerts.dedup_window = Duration::from_secs(3600);
    });
    let data_dir = h.server.config().data_dir.clone();
    let locker = Locker::lock(&data_dir.join(SQLITE_FILE));
    let mut ids = BTreeSet::new();
    for r in deny_twenty_at_once(&h.server, "/validate?timeout=2s").await {
        assert_eq!(r.result.code, 403, "{}", r.result.message);
        ids.insert(r.audit_annotations["alert-id"].clone());
    }
    assert!(locker.still_holding());
    let m = h.server.metrics().alert_store();
    assert_eq!(m.journaled(), 20);
    locker.release();
    let store = h.server.alerts().clone();
    eventually("the journal replayed and the queue drained", || {
        m.journal().1 == 0 && m.queue_depth() == 0 && !all_alerts(&store).is_empty()
    })
    .await;
    // Let any late commit still queued land.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let stored = all_alerts(&store);
    assert_eq!(
        stored.len(),
        1,
        "one alert for one workload, image and rule"
    );
    assert_eq!(stored[0].count, 20, "each denial counted once");
    for id in &ids {
        let got = store
            .get(id)
            .unwrap()
            .expect("every answer's alert id is found");
        assert_eq!(got.id, stored[0].id);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_audit_is_answered_normally_when_the_store_fails_but_the_journal_takes_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path(), Some(RULES));
    cfg.failure_policy = FailurePolicy::Deny;
    let store = AlertStore::from_backend(Arc::new(BrokenStore));
    let server = Server::with_parts(cfg, TestSource::new(), store).unwrap();
    let r = admit(&server, &create(&deployment("dev", &[DEBIAN]))).await;
    assert!(r.allowed, "{}", r.result.message);
    assert_eq!(r.audit_annotations["decision"], "audit");
    assert_eq!(server.metrics().alert_store().journaled(), 1);
    let journal = std::fs::read(dir.path().join("data").join(JOURNAL_FILE)).unwrap();
    let id = &r.audit_annotations["alert-id"];
    assert!(String::from_utf8_lossy(&journal).contains(id.as_str()));
}

#[derive(Debug)]
struct BrokenStore;

impl vulngate_server::AlertBackend for BrokenStore {
    fn record(&self, _: &[Alert]) -> Result<(), vulngate_server::AlertError> {
        Err(vulngate_server::AlertError::Other("disk full".into()))
    }
    fn list(&self, _: &AlertFilter) -> Result<Vec<Alert>, vulngate_server::AlertError> {
        Ok(vec![])
    }
    fn get(&self, _: &str) -> Result<Option<Alert>, vulngate_server::AlertError> {
        Ok(None)
    }
}

fn alert(id: &str) -> Alert {
    Alert {
        id: id.into(),
        time: Utc::now(),
        action: AlertAction::Deny,
        origin: AlertOrigin::Admission,
        decision: Outcome::Deny,
        cluster: None,
        namespace: Some("prod".into()),
        kind: "Deployment".into(),
        name: Some("web".into()),
        operation: "CREATE".into(),
        user: Some("alice".into()),
        request_uid: "u1".into(),
        image: "nginx:1.25".into(),
        digest: None,
        rule: Some("r".into()),
        rule_snapshot: None,
        rules_version: None,
        vulnerability: None,
        counts: SeverityCounts::default(),
        report: None,
        unscanned: None,
        reason: "because".into(),
        dry_run: false,
        break_glass: None,
        workload_kind: None,
        workload_name: None,
        count: 1,
        last_seen: None,
        kinds: Vec::new(),
        explanation: Default::default(),
        review: Default::default(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_record_and_a_truncated_tail_are_skipped_and_the_rest_replayed() {
    let logs = capture_logs();
    let dir = tempfile::tempdir().unwrap();
    let mut journal = Vec::new();
    journal.extend(encode(&alert("a-good")).unwrap());
    journal.extend(encode(&alert("b-good")).unwrap());
    // Where the flipped record starts, from the records written (an alert's time is encoded
    // with as many fraction digits as it needs, so a second encoding may differ in length).
    let flipped_at = journal.len();
    let mut bad = encode(&alert("c-flipped")).unwrap();
    let at = bad.len() - 10;
    bad[at] ^= 0x01; // one bit: the checksum no longer matches
    journal.extend(bad);
    journal.extend(encode(&alert("d-good")).unwrap());
    let tail = encode(&alert("e-cut")).unwrap();
    journal.extend(&tail[..tail.len() / 2]); // a crash in the middle of the append
    std::fs::write(dir.path().join(JOURNAL_FILE), &journal).unwrap();

    let metrics = AlertMetrics::default();
    let cfg = AlertWriterConfig {
        replay_interval: Duration::from_millis(200),
        ..Default::default()
    };
    let store = AlertStore::open(dir.path())
        .unwrap()
        .start_writer(&cfg, dir.path(), metrics.clone())
        .unwrap();
    eventually("the journal replayed", || metrics.replays() >= 1).await;
    let ids: BTreeSet<String> = all_alerts(&store).into_iter().map(|a| a.id).collect();
    assert_eq!(
        ids,
        ["a-good", "b-good", "d-good"]
            .iter()
            .map(|s| s.to_string())
            .collect()
    );
    assert_eq!(metrics.journal_corrupt(), 2);
    assert_eq!(metrics.journal(), (0, 0), "the replayed journal is emptied");
    let logs = String::from_utf8(logs.lock().unwrap().clone()).unwrap();
    assert!(
        logs.contains("corrupt record skipped: checksum mismatch"),
        "{logs}"
    );
    assert!(
        logs.contains("truncated record at the end of the journal"),
        "{logs}"
    );
    assert!(logs.contains(&format!("offset={flipped_at}")), "{logs}");

    // The journal keeps working after its torn tail: a new record appended and replayed.
    let late = store
        .record_within(vec![alert("f-late")], tokio::time::Instant::now())
        .await
        .unwrap();
    assert_eq!(late, Durable::Journaled, "deadline already passed");
    eventually("the late record replayed", || {
        store.get("f-late").unwrap().is_some()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_alerts_share_transactions() {
    let dir = tempfile::tempdir().unwrap();
    let metrics = AlertMetrics::default();
    let store = AlertStore::open(dir.path())
        .unwrap()
        .start_writer(&AlertWriterConfig::default(), dir.path(), metrics.clone())
        .unwrap();
    // While another connection holds the database, the writer's first transaction (one
    // alert) waits for it and the other requests queue behind; released, the queue is taken
    // as one transaction.
    let locker = Locker::lock(&dir.path().join(SQLITE_FILE));
    const N: usize = 64;
    let submit = |i: usize| {
        let store = store.clone();
        tokio::spawn(async move {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
            store
                .record_within(vec![alert(&format!("alert-{i:03}"))], deadline)
                .await
                .unwrap()
        })
    };
    let mut tasks = vec![submit(0)];
    eventually("the writer took the first alert", || {
        metrics.in_transaction() == 1
    })
    .await;
    tasks.extend((1..N).map(submit));
    eventually("every other request queued", || {
        metrics.queue_depth() == (N - 1) as i64
    })
    .await;
    locker.release();
    let mut stored = 0;
    for t in tasks {
        if t.await.unwrap() == Durable::Stored {
            stored += 1;
        }
    }
    eventually("every alert stored", || all_alerts(&store).len() == N).await;
    let tx = metrics.transactions("ok");
    assert!(stored > 0);
    assert!(
        tx < N as u64,
        "{tx} transactions for {N} alerts: no group commit"
    );
}
