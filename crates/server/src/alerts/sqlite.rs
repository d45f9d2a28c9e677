//! The SQLite store: one file in the data directory, WAL mode with `synchronous=FULL` (a
//! committed alert survives a crash), one connection behind a mutex. Writes take the write
//! lock at `BEGIN` (`IMMEDIATE`), so a locked database fails the transaction before any work.

mod outbox;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use rusqlite::{params, Connection, OptionalExtension};

use super::{
    count_query, decode, decode_seen, image_candidates, list_query, migrations, namespaces_query,
    per_image, rfc3339, state_counts, vuln_ids, window_bounds, Alert, AlertBackend, AlertError,
    AlertFilter, Dialect, Held, ReviewChange, ReviewEvent, ReviewState, Seen, SqlArg,
};

/// The merge's statements (cached: prepared once per connection). With the query planner
/// stability guarantee on (`open`), binding new values never re-prepares them; without it,
/// SQLite (built with STAT4) re-prepared FIRST_SQL (its time range is bound) on every step: 5% of the server's CPU in
/// a deny storm (perf, docs/benchmarks.md).
const KNOWN_SQL: &str = "SELECT 1 FROM alerts WHERE id = ?1 UNION ALL \
                         SELECT 1 FROM alert_repeats WHERE id = ?1 LIMIT 1";
/// The earliest alert of a key in a window, with its counts row (NULLs when it has none).
const FIRST_SQL: &str = "SELECT a.id, a.time, c.count, c.last_seen, c.kinds FROM alerts a \
                         LEFT JOIN alert_counts c ON c.alert_id = a.id \
                         WHERE a.dedup_key = ?1 AND a.time >= ?2 AND a.time <= ?3 \
                         ORDER BY a.time, a.id LIMIT 1";
/// The alert's `data`, for the counts of an alert that has no counts row yet.
const DATA_SQL: &str = "SELECT data FROM alerts WHERE id = ?1";
const REPEAT_SQL: &str = "INSERT INTO alert_repeats (id, alert_id, time) VALUES (?1, ?2, ?3)";
const INSERT_SQL: &str = "INSERT INTO alerts (id, time, action, cluster, namespace, kind, name,
                    operation, user_name, image, digest, rule, dry_run, data, origin, dedup_key)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)";
const INSERT_NEW_SQL: &str = "INSERT OR IGNORE INTO alerts (id, time, action, cluster, namespace,
                    kind, name, operation, user_name, image, digest, rule, dry_run, data, origin,
                    dedup_key)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)";
const VULN_SQL: &str = "INSERT OR IGNORE INTO alert_vulns (vuln_id, alert_id) VALUES (?1, ?2)";
/// The distinct image references (the image filter's candidates, `query.rs`).
const IMAGE_SQL: &str = "INSERT OR IGNORE INTO alert_images (image) VALUES (?1)";
/// An absorbing alert's counts (a small row: the alert itself is not rewritten).
const COUNTS_SQL: &str = "INSERT INTO alert_counts (alert_id, count, last_seen, kinds) \
                          VALUES (?1, ?2, ?3, ?4) ON CONFLICT (alert_id) DO UPDATE SET \
                          count = excluded.count, last_seen = excluded.last_seen, \
                          kinds = excluded.kinds";

/// SQLite storage.
#[derive(Debug)]
pub struct SqliteBackend {
    path: PathBuf,
    conn: Mutex<Connection>,
    /// The sinks new alerts are queued for (the notification outbox).
    routes: super::outbox::Routes,
    /// The absorbing alert of each de-duplication key merged lately (locked after `conn`).
    merge_cache: Mutex<MergeCache>,
}

/// Most keys [`MergeCache`] remembers; past it, it starts over (a look-up each, once).
const MERGE_CACHE_KEYS: usize = 4096;

/// What the merge learned of each key ([`Held`]: the earliest alert of the key in the
/// window it was looked up for, and its counts), kept from one transaction to the next so
/// that a storm of repeats does not look the same keys up again in every batch (measured:
/// docs/benchmarks.md, deny storm). It is only true while nothing else changed the alerts:
/// it is dropped when another connection committed (`PRAGMA data_version` moved), when this
/// connection inserted alerts outside the merge, and when a merge failed.
#[derive(Debug, Default)]
struct MergeCache {
    data_version: Option<i64>,
    /// The window the entries were looked up with (a new one starts over).
    window: Option<chrono::Duration>,
    held: HashMap<String, Held>,
}

impl SqliteBackend {
    pub fn open(path: &Path) -> Result<SqliteBackend, AlertError> {
        let err = |source| AlertError::Sqlite {
            path: path.display().to_string(),
            source,
        };
        let mut conn = Connection::open(path).map_err(err)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(err)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(err)?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(err)?;
        // Query planner stability: a statement's plan does not depend on the values bound, so
        // rebinding never re-prepares it (see KNOWN_SQL).
        conn.set_db_config(
            rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG,
            true,
        )
        .map_err(err)?;
        migrate(&mut conn, path)?;
        Ok(SqliteBackend {
            path: path.to_path_buf(),
            conn: Mutex::new(conn),
            routes: Default::default(),
            merge_cache: Default::default(),
        })
    }

    fn err(&self, source: rusqlite::Error) -> AlertError {
        AlertError::Sqlite {
            path: self.path.display().to_string(),
            source,
        }
    }

    fn conn(&self) -> Result<std::sync::MutexGuard<'_, Connection>, AlertError> {
        self.conn
            .lock()
            .map_err(|_| AlertError::Other("connection lock poisoned".into()))
    }

    /// The image references an image filter matches, for the per-image plan (`query.rs`);
    /// None without an image filter or when too many match.
    fn images(
        &self,
        conn: &Connection,
        f: &AlertFilter,
    ) -> Result<Option<Vec<String>>, AlertError> {
        let Some(needle) = &f.image else {
            return Ok(None);
        };
        let (sql, args) = image_candidates(needle, Dialect::Sqlite);
        let mut st = conn.prepare_cached(&sql).map_err(|e| self.err(e))?;
        let found = st
            .query_map(rusqlite::params_from_iter(args.iter().map(bind)), |r| {
                r.get(0)
            })
            .map_err(|e| self.err(e))?
            .collect::<Result<Vec<String>, _>>()
            .map_err(|e| self.err(e))?;
        Ok(per_image(found))
    }

    /// SQLite's plan for the list query of `f` (tests): the `detail` of each step.
    #[cfg(test)]
    pub(crate) fn list_plan(&self, f: &AlertFilter) -> Vec<String> {
        let conn = self.conn().expect("connection");
        let images = self.images(&conn, f).expect("images");
        let (sql, args) = list_query(f, Dialect::Sqlite, images.as_deref());
        let mut st = conn
            .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
            .expect("plan");
        st.query_map(rusqlite::params_from_iter(args.iter().map(bind)), |r| {
            r.get::<_, String>(3)
        })
        .expect("plan rows")
        .collect::<Result<_, _>>()
        .expect("plan row")
    }

    /// How often each of the merge's cached statements was re-prepared (tests).
    #[cfg(test)]
    pub(crate) fn merge_reprepares(&self) -> Vec<(&'static str, i32)> {
        let conn = self.conn().expect("connection");
        [
            KNOWN_SQL, FIRST_SQL, REPEAT_SQL, INSERT_SQL, VULN_SQL, COUNTS_SQL,
        ]
        .into_iter()
        .map(|sql| {
            let st = conn.prepare_cached(sql).expect("statement");
            (sql, st.get_status(rusqlite::StatementStatus::RePrepare))
        })
        .collect()
    }
}

fn migrate(conn: &mut Connection, path: &Path) -> Result<(), AlertError> {
    let err = |source| AlertError::Sqlite {
        path: path.display().to_string(),
        source,
    };
    conn.execute_batch(migrations::SQLITE_VERSION_TABLE)
        .map_err(err)?;
    let current: i64 = conn
        .query_row(
            "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
            [],
            |r| r.get(0),
        )
        .map_err(err)?;
    let known = migrations::latest();
    if current > known {
        return Err(AlertError::SchemaTooNew {
            path: path.display().to_string(),
            found: current,
            known,
        });
    }
    for m in migrations::MIGRATIONS
        .iter()
        .filter(|m| m.version > current)
    {
        let tx = conn.transaction().map_err(err)?;
        tx.execute_batch(m.sqlite).map_err(err)?;
        tx.execute(
            "INSERT INTO schema_migrations (version, description, applied_at) VALUES (?1, ?2, ?3)",
            params![m.version, m.description, rfc3339(Utc::now())],
        )
        .map_err(err)?;
        tx.commit().map_err(err)?;
    }
    Ok(())
}

impl SqliteBackend {
    /// One transaction; `or_ignore`: skip ids already stored. Returns the rows inserted.
    fn insert(&self, alerts: &[&Alert], or_ignore: bool) -> Result<usize, AlertError> {
        let mut conn = self.conn()?;
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(|e| self.err(e))?;
        let sql = if or_ignore {
            INSERT_NEW_SQL
        } else {
            INSERT_SQL
        };
        // New alerts outside the merge may change what it looks up.
        if let Ok(mut cache) = self.merge_cache.lock() {
            cache.held.clear();
        }
        let mut inserted = 0;
        for &a in alerts {
            inserted += self.insert_row(&tx, a, a.dedup_key().as_deref(), sql)?;
        }
        tx.commit().map_err(|e| self.err(e))?;
        Ok(inserted)
    }
}

impl SqliteBackend {
    /// One transaction: each alert not stored yet (as an alert or as an absorbed repeat) is
    /// absorbed by the earliest alert of its de-duplication key within `window` of its time,
    /// else inserted. Returns the alerts taken (inserted or absorbed).
    /// `unstored[i]`: alert `i` is known not to be stored yet (no look-up by id).
    fn merge(
        &self,
        alerts: &[&Alert],
        unstored: Option<&[bool]>,
        window: std::time::Duration,
    ) -> Result<usize, AlertError> {
        let window = chrono::Duration::from_std(window).unwrap_or(chrono::Duration::MAX);
        let mut conn = self.conn()?;
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(|e| self.err(e))?;
        // The absorbing alert of each key (its id, time and counts), read once and its counts
        // row written once per batch: a storm of repeats of one key costs one small row per
        // batch and never rewrites the alert. Taken out of the cache: a failed merge leaves
        // it empty.
        let mut cache = self
            .merge_cache
            .lock()
            .map_err(|_| AlertError::Other("merge cache lock poisoned".into()))?;
        let version: i64 = tx
            .prepare_cached("PRAGMA data_version")
            .and_then(|mut st| st.query_row([], |r| r.get(0)))
            .map_err(|e| self.err(e))?;
        let mut held = std::mem::take(&mut cache.held);
        if cache.data_version != Some(version)
            || cache.window != Some(window)
            || held.len() > MERGE_CACHE_KEYS
        {
            held.clear();
        }
        let mut taken = 0;
        for (i, &a) in alerts.iter().enumerate() {
            if unstored.is_none_or(|u| u.get(i) != Some(&true)) {
                let known: Option<i64> = tx
                    .prepare_cached(KNOWN_SQL)
                    .and_then(|mut st| st.query_row([&a.id], |r| r.get(0)).optional())
                    .map_err(|e| self.err(e))?;
                if known.is_some() {
                    continue;
                }
            }
            let key = a.dedup_key();
            if let Some(key) = &key {
                let (lo, hi) = window_bounds(a.time, window);
                if !held.get(key).is_some_and(|h| h.answers(a.time, lo, hi)) {
                    if let Some(h) = held.remove(key) {
                        self.write_held(&tx, &h)?;
                    }
                    if let Some(h) = self.first(&tx, key, lo, hi, a.time)? {
                        held.insert(key.clone(), h);
                    }
                }
                if let Some(h) = held.get_mut(key) {
                    if h.id == a.id {
                        // Already stored, as the absorbing alert itself.
                        continue;
                    }
                    h.seen.absorb(h.time, a);
                    h.dirty = true;
                    tx.prepare_cached(REPEAT_SQL)
                        .and_then(|mut st| st.execute(params![a.id, h.id, rfc3339(a.time)]))
                        .map_err(|e| self.err(e))?;
                    taken += 1;
                    continue;
                }
            }
            self.insert_row(&tx, a, key.as_deref(), INSERT_SQL)?;
            if let Some(key) = key {
                // Inserted: the earliest of its key for any later alert of this batch whose
                // window still reaches it (nothing older was within its own window).
                held.insert(key, Held::inserted(a));
            }
            taken += 1;
        }
        for h in held.values() {
            self.write_held(&tx, h)?;
        }
        tx.commit().map_err(|e| self.err(e))?;
        for h in held.values_mut() {
            h.dirty = false;
        }
        cache.held = held;
        cache.data_version = Some(version);
        cache.window = Some(window);
        Ok(taken)
    }
}

impl SqliteBackend {
    /// Inserts `a` with `sql` (`INSERT_SQL`, or `INSERT_NEW_SQL` to skip an id already
    /// stored) and, when its row went in, its vulnerability ids, its image reference and its
    /// notification outbox entries. Returns the rows inserted (0 or 1).
    fn insert_row(
        &self,
        tx: &rusqlite::Transaction<'_>,
        a: &Alert,
        key: Option<&str>,
        sql: &str,
    ) -> Result<usize, AlertError> {
        let data = serde_json::to_string(a).map_err(|e| AlertError::Corrupt {
            id: a.id.clone(),
            message: e.to_string(),
        })?;
        let n = tx
            .prepare_cached(sql)
            .and_then(|mut st| {
                st.execute(params![
                    a.id,
                    rfc3339(a.time),
                    a.action.as_str(),
                    a.cluster,
                    a.namespace,
                    a.kind,
                    a.name,
                    a.operation,
                    a.user,
                    a.image,
                    a.digest,
                    a.rule,
                    a.dry_run,
                    data,
                    a.origin.as_str(),
                    key
                ])
            })
            .map_err(|e| self.err(e))?;
        if n == 0 {
            return Ok(0);
        }
        for v in vuln_ids(a) {
            tx.prepare_cached(VULN_SQL)
                .and_then(|mut st| st.execute(params![v, a.id]))
                .map_err(|e| self.err(e))?;
        }
        tx.prepare_cached(IMAGE_SQL)
            .and_then(|mut st| st.execute([&a.image]))
            .map_err(|e| self.err(e))?;
        outbox::enqueue(tx, &self.routes, a).map_err(|e| self.err(e))?;
        Ok(n)
    }
}

impl SqliteBackend {
    /// The earliest stored alert of `key` in `[lo, hi]`, with its counts: from its counts
    /// row, or (no row yet: it absorbed nothing since migration 7) from its `data`.
    fn first(
        &self,
        tx: &rusqlite::Transaction<'_>,
        key: &str,
        lo: DateTime<Utc>,
        hi: DateTime<Utc>,
        looked_up_for: DateTime<Utc>,
    ) -> Result<Option<Held>, AlertError> {
        type Row = (String, String, Option<i64>, Option<String>, Option<String>);
        let row: Option<Row> = tx
            .prepare_cached(FIRST_SQL)
            .and_then(|mut st| {
                st.query_row(params![key, rfc3339(lo), rfc3339(hi)], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
                })
                .optional()
            })
            .map_err(|e| self.err(e))?;
        let Some((id, time, count, last_seen, kinds)) = row else {
            return Ok(None);
        };
        let time = parse_time(&id, &time)?;
        let seen = match (count, kinds) {
            (Some(count), Some(kinds)) => {
                Seen::from_columns(&id, count, last_seen.as_deref(), &kinds)?
            }
            _ => {
                let data: String = tx
                    .prepare_cached(DATA_SQL)
                    .and_then(|mut st| st.query_row([&id], |r| r.get(0)))
                    .map_err(|e| self.err(e))?;
                Seen::of(&decode(&id, &data)?)
            }
        };
        Ok(Some(Held {
            id,
            time,
            seen,
            looked_up_for,
            dirty: false,
        }))
    }

    fn write_held(&self, tx: &rusqlite::Transaction<'_>, h: &Held) -> Result<(), AlertError> {
        if !h.dirty {
            return Ok(());
        }
        let (count, last_seen, kinds) = h.seen.columns();
        tx.prepare_cached(COUNTS_SQL)
            .and_then(|mut st| st.execute(params![h.id, count, last_seen, kinds]))
            .map_err(|e| self.err(e))?;
        Ok(())
    }
}

impl AlertBackend for SqliteBackend {
    fn record_merged(
        &self,
        alerts: &[Alert],
        window: std::time::Duration,
    ) -> Result<usize, AlertError> {
        self.merge(&alerts.iter().collect::<Vec<_>>(), None, window)
    }

    fn record_merged_refs(
        &self,
        alerts: &[&Alert],
        window: std::time::Duration,
    ) -> Result<usize, AlertError> {
        self.merge(alerts, None, window)
    }

    fn record_merged_hinted(
        &self,
        alerts: &[&Alert],
        unstored: &[bool],
        window: std::time::Duration,
    ) -> Result<usize, AlertError> {
        self.merge(alerts, Some(unstored), window)
    }

    fn record(&self, alerts: &[Alert]) -> Result<(), AlertError> {
        self.insert(&alerts.iter().collect::<Vec<_>>(), false)
            .map(|_| ())
    }

    fn record_new(&self, alerts: &[Alert]) -> Result<usize, AlertError> {
        self.insert(&alerts.iter().collect::<Vec<_>>(), true)
    }

    fn record_new_refs(&self, alerts: &[&Alert]) -> Result<usize, AlertError> {
        self.insert(alerts, true)
    }

    fn list(&self, f: &AlertFilter) -> Result<Vec<Alert>, AlertError> {
        let conn = self.conn()?;
        let images = self.images(&conn, f)?;
        let (sql, args) = list_query(f, Dialect::Sqlite, images.as_deref());
        let mut stmt = conn.prepare_cached(&sql).map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(rusqlite::params_from_iter(args.iter().map(bind)), |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    (r.get(3)?, r.get(4)?, r.get(5)?),
                ))
            })
            .map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        for row in rows {
            let (id, data, state, seen) = row.map_err(|e| self.err(e))?;
            out.push(with_state(decode_seen(&id, &data, seen)?, &state)?);
        }
        Ok(out)
    }

    /// The alert `id`, or the alert that absorbed the repeat `id`.
    fn get(&self, id: &str) -> Result<Option<Alert>, AlertError> {
        let conn = self.conn()?;
        // A repeat's id names the alert that absorbed it.
        let target: Option<String> = conn
            .query_row(
                "SELECT alert_id FROM alert_repeats WHERE id = ?1 \
                 AND NOT EXISTS (SELECT 1 FROM alerts WHERE id = ?1)",
                [id],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| self.err(e))?;
        let id = target.as_deref().unwrap_or(id);
        get_in(&conn, id).map_err(|e| self.err(e))?.transpose()
    }

    fn review(&self, id: &str, change: &ReviewChange) -> Result<Option<Alert>, AlertError> {
        let mut conn = self.conn()?;
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(|e| self.err(e))?;
        let current: Option<(String, i64)> = tx
            .query_row(
                "SELECT state, (SELECT COUNT(*) FROM alert_reviews WHERE alert_id = ?1)
                 FROM alerts WHERE id = ?1",
                [id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(|e| self.err(e))?;
        let Some((state, seq)) = current else {
            return Ok(None);
        };
        let from = parse_state(id, &state)?;
        if !from.can_move_to(change.to) {
            return Err(AlertError::Transition {
                id: id.to_string(),
                from,
                to: change.to,
            });
        }
        tx.execute(
            "UPDATE alerts SET state = ?2 WHERE id = ?1",
            params![id, change.to.as_str()],
        )
        .map_err(|e| self.err(e))?;
        tx.execute(
            "INSERT INTO alert_reviews (alert_id, seq, time, user_name, from_state, to_state, comment)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                id,
                seq + 1,
                rfc3339(change.time),
                change.by,
                from.as_str(),
                change.to.as_str(),
                change.comment
            ],
        )
        .map_err(|e| self.err(e))?;
        let alert = get_in(&tx, id).map_err(|e| self.err(e))?.transpose()?;
        tx.commit().map_err(|e| self.err(e))?;
        Ok(alert)
    }

    fn outbox(&self) -> Option<&dyn super::outbox::Outbox> {
        Some(self)
    }

    fn count_by_state(&self, f: &AlertFilter) -> Result<Vec<(ReviewState, u64)>, AlertError> {
        let conn = self.conn()?;
        let images = self.images(&conn, f)?;
        let (sql, args) = count_query(f, Dialect::Sqlite, images.as_deref());
        let mut stmt = conn.prepare_cached(&sql).map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(rusqlite::params_from_iter(args.iter().map(bind)), |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))
            })
            .map_err(|e| self.err(e))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| self.err(e))?;
        Ok(state_counts(rows))
    }

    fn namespaces(&self, max: usize) -> Result<Vec<String>, AlertError> {
        let conn = self.conn()?;
        let (sql, args) = namespaces_query(max, Dialect::Sqlite);
        let mut stmt = conn.prepare_cached(&sql).map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(rusqlite::params_from_iter(args.iter().map(bind)), |r| {
                r.get::<_, String>(0)
            })
            .map_err(|e| self.err(e))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| self.err(e))?;
        Ok(rows)
    }
}

fn bind(a: &SqlArg) -> rusqlite::types::Value {
    match a {
        SqlArg::Text(s) => rusqlite::types::Value::Text(s.clone()),
        SqlArg::Int(i) => rusqlite::types::Value::Integer(*i),
    }
}

pub(crate) fn parse_state(id: &str, s: &str) -> Result<ReviewState, AlertError> {
    s.parse().map_err(|message| AlertError::Corrupt {
        id: id.to_string(),
        message,
    })
}

pub(crate) fn with_state(mut a: Alert, state: &str) -> Result<Alert, AlertError> {
    a.review.state = parse_state(&a.id, state)?;
    Ok(a)
}

/// The alert with its state and history (`Ok(None)`: no such id).
#[allow(clippy::type_complexity)]
fn get_in(conn: &Connection, id: &str) -> rusqlite::Result<Option<Result<Alert, AlertError>>> {
    type Seen = (Option<i64>, Option<String>, Option<String>);
    let row: Option<(String, String, Seen)> = conn
        .query_row(
            "SELECT data, state, c.count, c.last_seen, c.kinds FROM alerts \
             LEFT JOIN alert_counts c ON c.alert_id = alerts.id WHERE id = ?1",
            [id],
            |r| Ok((r.get(0)?, r.get(1)?, (r.get(2)?, r.get(3)?, r.get(4)?))),
        )
        .optional()?;
    let Some((data, state, seen)) = row else {
        return Ok(None);
    };
    let mut stmt = conn.prepare_cached(
        "SELECT time, user_name, from_state, to_state, comment FROM alert_reviews
         WHERE alert_id = ?1 ORDER BY seq",
    )?;
    let rows: Vec<(String, String, String, String, String)> = stmt
        .query_map([id], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
        })?
        .collect::<rusqlite::Result<_>>()?;
    Ok(Some((|| {
        let mut a = with_state(decode_seen(id, &data, seen)?, &state)?;
        for (time, by, from, to, comment) in rows {
            a.review.history.push(ReviewEvent {
                time: parse_time(id, &time)?,
                by,
                from: parse_state(id, &from)?,
                to: parse_state(id, &to)?,
                comment,
            });
        }
        Ok(a)
    })()))
}

pub(crate) fn parse_time(id: &str, t: &str) -> Result<chrono::DateTime<Utc>, AlertError> {
    chrono::DateTime::parse_from_rfc3339(t)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| AlertError::Corrupt {
            id: id.to_string(),
            message: format!("review time {t:?}: {e}"),
        })
}
