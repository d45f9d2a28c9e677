//! The PostgreSQL store's de-duplicating write (`record_merged`): SQLite's merge
//! (`alerts/sqlite.rs`), in as few round trips as its semantics allow.
//!
//! Written first one statement at a time, per alert (the known-id check, the earliest alert of
//! the key `FOR UPDATE`, its counts, the repeat): four sequential round trips per alert, so one
//! replica's writer stored about 1,500 denies per second whatever the cores (the deny storm of
//! `scripts/bench-scale-out.sh`, docs/scaling.md). Now per batch: the advisory locks, the
//! known ids, and the earliest alert of each key are each sent as one pipelined burst; the
//! batch is then merged in memory, in order, as SQLite does (an alert whose time the looked-up
//! alert does not answer is looked up again, alone); the repeats and the counts go back in one
//! statement each. New alerts are inserted one by one, as before.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use futures::future::try_join_all;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Statement, Transaction};

use super::{Inner, DEDUP_LOCK};
use crate::alerts::sqlite::parse_time;
use crate::alerts::{decode, rfc3339, window_bounds, Alert, AlertError, Held, Seen};

/// The earliest alert of a key in a window, with its counts row (NULLs when it has none),
/// locked for the transaction (replicas serialise on it as on the advisory lock).
const FIRST_SQL: &str = "SELECT a.id, a.time, c.count, c.last_seen, c.kinds FROM alerts a \
                         LEFT JOIN alert_counts c ON c.alert_id = a.id \
                         WHERE a.dedup_key = $1 AND a.time >= $2 AND a.time <= $3 \
                         ORDER BY a.time, a.id LIMIT 1 FOR UPDATE OF a";

impl Inner {
    /// One transaction: each alert not stored yet (as an alert or an absorbed repeat) is
    /// absorbed by the earliest alert of its key within `window`, else inserted. Replicas
    /// sharing the database serialise on each key (transaction-level advisory locks, taken in
    /// key order so that two batches cannot deadlock).
    pub(super) async fn merge(
        &self,
        alerts: &[Alert],
        window: std::time::Duration,
    ) -> Result<usize, AlertError> {
        let window = chrono::Duration::from_std(window).unwrap_or(chrono::Duration::MAX);
        let mut lease = self.lease().await?;
        let client = lease.client()?;
        let tx = client.transaction().await.map_err(|e| self.err(e))?;
        tx.batch_execute("SET LOCAL synchronous_commit TO on")
            .await
            .map_err(|e| self.err(e))?;
        let keyed: Vec<(&Alert, Option<String>)> =
            alerts.iter().map(|a| (a, a.dedup_key())).collect();
        let mut keys: Vec<&str> = keyed.iter().filter_map(|(_, k)| k.as_deref()).collect();
        keys.sort_unstable();
        keys.dedup();
        // Prepared once per transaction (a query given as text is prepared at every call).
        let (lock, first) = futures::future::try_join(
            tx.prepare("SELECT pg_advisory_xact_lock($1, hashtext($2))"),
            tx.prepare(FIRST_SQL),
        )
        .await
        .map_err(|e| self.err(e))?;
        // Pipelined: sent in this order on the one connection, executed in this order.
        let lock_params: Vec<[&(dyn ToSql + Sync); 2]> =
            keys.iter().map(|k| [&DEDUP_LOCK as _, k as _]).collect();
        try_join_all(lock_params.iter().map(|p| tx.execute(&lock, p)))
            .await
            .map_err(|e| self.err(e))?;
        let ids: Vec<&str> = alerts.iter().map(|a| a.id.as_str()).collect();
        let known: HashSet<String> = tx
            .query(
                "SELECT id FROM alerts WHERE id = ANY($1) UNION ALL \
                 SELECT id FROM alert_repeats WHERE id = ANY($1)",
                &[&ids],
            )
            .await
            .map_err(|e| self.err(e))?
            .iter()
            .map(|r| r.try_get(0))
            .collect::<Result<_, _>>()
            .map_err(|e| self.err(e))?;
        // The earliest alert of each key for the first new alert of that key, pipelined.
        let mut firsts: Vec<(&str, DateTime<Utc>)> = Vec::new();
        let mut seen_keys: HashSet<&str> = HashSet::new();
        for (a, k) in &keyed {
            if let Some(k) = k.as_deref() {
                if !known.contains(&a.id) && seen_keys.insert(k) {
                    firsts.push((k, a.time));
                }
            }
        }
        let looked_up = try_join_all(
            firsts
                .iter()
                .map(|(k, t)| self.first(&tx, &first, k, window_bounds(*t, window), *t)),
        )
        .await?;
        let mut held: HashMap<String, Held> = HashMap::new();
        // Keys whose first lookup found nothing, with the time it was made for.
        let mut absent: HashMap<&str, DateTime<Utc>> = HashMap::new();
        for ((k, t), h) in firsts.iter().zip(looked_up) {
            match h {
                Some(h) => {
                    held.insert((*k).to_string(), h);
                }
                None => {
                    absent.insert(k, *t);
                }
            }
        }
        let mut repeats: (Vec<&str>, Vec<String>, Vec<String>) = Default::default();
        let mut done: HashSet<&str> = HashSet::new();
        let mut taken = 0;
        for (a, key) in &keyed {
            // An id stored before, or met earlier in this batch, counts once.
            if known.contains(&a.id) || !done.insert(&a.id) {
                continue;
            }
            if let Some(key) = key {
                let (lo, hi) = window_bounds(a.time, window);
                let prefetched_none = absent.get(key.as_str()) == Some(&a.time);
                if !prefetched_none && !held.get(key).is_some_and(|h| h.answers(a.time, lo, hi)) {
                    // Times out of order, or past the window: look it up again, alone, after
                    // writing what the held alert absorbed (as SQLite's merge does).
                    if let Some(h) = held.remove(key) {
                        self.write_counts(&tx, [&h]).await?;
                    }
                    if let Some(h) = self.first(&tx, &first, key, (lo, hi), a.time).await? {
                        held.insert(key.clone(), h);
                    }
                }
                absent.remove(key.as_str());
                if let Some(h) = held.get_mut(key) {
                    h.seen.absorb(h.time, a);
                    h.dirty = true;
                    repeats.0.push(&a.id);
                    repeats.1.push(h.id.clone());
                    repeats.2.push(rfc3339(a.time));
                    taken += 1;
                    continue;
                }
            }
            self.insert_row(&tx, a, key, false).await?;
            if let Some(key) = key {
                // Inserted: the earliest of its key for any later alert of this batch whose
                // window still reaches it.
                held.insert(key.clone(), Held::inserted(a));
            }
            taken += 1;
        }
        if !repeats.0.is_empty() {
            tx.execute(
                "INSERT INTO alert_repeats (id, alert_id, time) \
                 SELECT * FROM unnest($1::text[], $2::text[], $3::text[])",
                &[&repeats.0, &repeats.1, &repeats.2],
            )
            .await
            .map_err(|e| self.err(e))?;
        }
        self.write_counts(&tx, held.values()).await?;
        tx.commit().await.map_err(|e| self.err(e))?;
        lease.release();
        Ok(taken)
    }

    /// The earliest stored alert of `key` in `[lo, hi]`, locked, with its counts: from its
    /// counts row, or (none yet: it absorbed nothing since migration 7) from its `data`.
    async fn first(
        &self,
        tx: &Transaction<'_>,
        first: &Statement,
        key: &str,
        (lo, hi): (DateTime<Utc>, DateTime<Utc>),
        looked_up_for: DateTime<Utc>,
    ) -> Result<Option<Held>, AlertError> {
        let row = tx
            .query_opt(first, &[&key, &rfc3339(lo), &rfc3339(hi)])
            .await
            .map_err(|e| self.err(e))?;
        let Some(row) = row else {
            return Ok(None);
        };
        let (id, time, count, last_seen, kinds) = (|| {
            Ok::<_, tokio_postgres::Error>((
                row.try_get::<_, String>(0)?,
                row.try_get::<_, String>(1)?,
                row.try_get::<_, Option<i64>>(2)?,
                row.try_get::<_, Option<String>>(3)?,
                row.try_get::<_, Option<String>>(4)?,
            ))
        })()
        .map_err(|e| self.err(e))?;
        let seen = match (count, kinds) {
            (Some(count), Some(kinds)) => {
                Seen::from_columns(&id, count, last_seen.as_deref(), &kinds)?
            }
            _ => {
                let row = tx
                    .query_one("SELECT data FROM alerts WHERE id = $1", &[&id])
                    .await
                    .map_err(|e| self.err(e))?;
                let data: String = row.try_get(0).map_err(|e| self.err(e))?;
                Seen::of(&decode(&id, &data)?)
            }
        };
        Ok(Some(Held {
            time: parse_time(&id, &time)?,
            id,
            seen,
            looked_up_for,
            dirty: false,
        }))
    }

    /// The counts rows of the held alerts that absorbed repeats, in one statement.
    async fn write_counts<'h>(
        &self,
        tx: &Transaction<'_>,
        held: impl IntoIterator<Item = &'h Held>,
    ) -> Result<(), AlertError> {
        let (mut ids, mut counts, mut lasts, mut kinds_col) =
            (Vec::<&str>::new(), Vec::new(), Vec::new(), Vec::new());
        for h in held.into_iter().filter(|h| h.dirty) {
            let (count, last_seen, kinds) = h.seen.columns();
            ids.push(h.id.as_str());
            counts.push(count);
            lasts.push(last_seen);
            kinds_col.push(kinds);
        }
        if ids.is_empty() {
            return Ok(());
        }
        tx.execute(
            "INSERT INTO alert_counts (alert_id, count, last_seen, kinds) \
             SELECT * FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[]) \
             ON CONFLICT (alert_id) DO UPDATE SET count = excluded.count, \
             last_seen = excluded.last_seen, kinds = excluded.kinds",
            &[&ids, &counts, &lasts, &kinds_col],
        )
        .await
        .map_err(|e| self.err(e))?;
        Ok(())
    }
}
