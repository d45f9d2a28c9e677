//! The SQLite store's notification outbox (the `notify_outbox` table, migration 5).

use chrono::{DateTime, Utc};
use rusqlite::{params, Connection, OptionalExtension};

use super::super::outbox::{
    from_row, new_id, DeliveryState, Notification, Outbox, Retried, Routes, Row, COLUMNS,
};
use super::super::{rfc3339, Alert, AlertError};
use super::SqliteBackend;

/// Queues `a` (just inserted, in `tx`) for every sink its routes select.
pub(super) fn enqueue(tx: &Connection, routes: &Routes, a: &Alert) -> rusqlite::Result<()> {
    let sinks = routes.sinks_for(a);
    if sinks.is_empty() {
        return Ok(());
    }
    let now = rfc3339(Utc::now());
    let mut stmt = tx.prepare_cached(
        "INSERT OR IGNORE INTO notify_outbox (id, alert_id, sink, state, attempts, created, next_at)
         VALUES (?1, ?2, ?3, 'pending', 0, ?4, ?4)",
    )?;
    for sink in sinks {
        stmt.execute(params![new_id(), a.id, sink, now])?;
    }
    Ok(())
}

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Row> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
        r.get(6)?,
        r.get(7)?,
    ))
}

fn get(conn: &Connection, id: &str) -> rusqlite::Result<Option<Row>> {
    conn.query_row(
        &format!("SELECT {COLUMNS} FROM notify_outbox WHERE id = ?1"),
        [id],
        row,
    )
    .optional()
}

impl Outbox for SqliteBackend {
    fn routes(&self) -> &Routes {
        &self.routes
    }

    fn claim(
        &self,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: usize,
        sinks: &[String],
    ) -> Result<Vec<Notification>, AlertError> {
        if sinks.is_empty() {
            return Ok(Vec::new());
        }
        let mut conn = self.conn()?;
        // Deferred: a round with nothing due takes no write lock.
        let tx = conn.transaction().map_err(|e| self.err(e))?;
        let marks: Vec<String> = (0..sinks.len()).map(|i| format!("?{}", i + 3)).collect();
        let marks = marks.join(", ");
        let mut args: Vec<rusqlite::types::Value> = vec![
            rfc3339(now).into(),
            (limit.min(i64::MAX as usize) as i64).into(),
        ];
        args.extend(sinks.iter().map(|s| s.clone().into()));
        let ids: Vec<String> = tx
            .prepare_cached(&format!(
                "SELECT id FROM notify_outbox WHERE state = 'pending' AND next_at <= ?1
                 AND sink IN ({marks}) ORDER BY next_at, id LIMIT ?2"
            ))
            .and_then(|mut st| {
                st.query_map(rusqlite::params_from_iter(args), |r| r.get(0))?
                    .collect()
            })
            .map_err(|e| self.err(e))?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            tx.execute(
                "UPDATE notify_outbox SET attempts = attempts + 1, next_at = ?2 WHERE id = ?1",
                params![id, rfc3339(lease_until)],
            )
            .map_err(|e| self.err(e))?;
            if let Some(r) = get(&tx, &id).map_err(|e| self.err(e))? {
                out.push(from_row(r)?);
            }
        }
        tx.commit().map_err(|e| self.err(e))?;
        Ok(out)
    }

    fn delivered(&self, id: &str) -> Result<(), AlertError> {
        let conn = self.conn()?;
        conn.execute("DELETE FROM notify_outbox WHERE id = ?1", [id])
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    fn failed(
        &self,
        id: &str,
        retry_at: Option<DateTime<Utc>>,
        error: &str,
    ) -> Result<(), AlertError> {
        let conn = self.conn()?;
        let (state, at) = match retry_at {
            Some(t) => (DeliveryState::Pending, t),
            None => (DeliveryState::Dead, Utc::now()),
        };
        conn.execute(
            "UPDATE notify_outbox SET state = ?2, next_at = ?3, last_error = ?4 WHERE id = ?1",
            params![id, state.as_str(), rfc3339(at), error],
        )
        .map_err(|e| self.err(e))?;
        Ok(())
    }

    fn notifications(
        &self,
        state: Option<DeliveryState>,
        sink: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Notification>, AlertError> {
        let conn = self.conn()?;
        let rows: Vec<Row> = conn
            .prepare_cached(&format!(
                "SELECT {COLUMNS} FROM notify_outbox
                 WHERE (?1 IS NULL OR state = ?1) AND (?2 IS NULL OR sink = ?2)
                 ORDER BY created DESC, id DESC LIMIT ?3"
            ))
            .and_then(|mut st| {
                st.query_map(
                    params![
                        state.map(DeliveryState::as_str),
                        sink,
                        limit.min(i64::MAX as usize) as i64
                    ],
                    row,
                )?
                .collect()
            })
            .map_err(|e| self.err(e))?;
        rows.into_iter().map(from_row).collect()
    }

    fn retry(&self, id: &str, now: DateTime<Utc>) -> Result<Retried, AlertError> {
        let mut conn = self.conn()?;
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(|e| self.err(e))?;
        let n = tx
            .execute(
                "UPDATE notify_outbox SET state = 'pending', attempts = 0, next_at = ?2
                 WHERE id = ?1 AND state = 'dead'",
                params![id, rfc3339(now)],
            )
            .map_err(|e| self.err(e))?;
        let found = get(&tx, id).map_err(|e| self.err(e))?;
        tx.commit().map_err(|e| self.err(e))?;
        Ok(match found {
            None => Retried::NotFound,
            Some(r) if n > 0 => Retried::Retried(from_row(r)?),
            Some(r) => Retried::NotDead(from_row(r)?),
        })
    }

    fn depth(&self) -> Result<Vec<(String, DeliveryState, u64)>, AlertError> {
        let conn = self.conn()?;
        let rows: Vec<(String, String, i64)> = conn
            .prepare_cached("SELECT sink, state, COUNT(*) FROM notify_outbox GROUP BY sink, state")
            .and_then(|mut st| {
                st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                    .collect()
            })
            .map_err(|e| self.err(e))?;
        rows.into_iter()
            .map(|(sink, state, n)| {
                let state = state.parse().map_err(|message| AlertError::Corrupt {
                    id: format!("outbox of {sink}"),
                    message,
                })?;
                Ok((sink, state, n.max(0) as u64))
            })
            .collect()
    }
}
