//! The SQLite store: one file in the data directory, WAL mode with `synchronous=FULL` (a
//! committed alert survives a crash), one connection behind a mutex. Writes take the write
//! lock at `BEGIN` (`IMMEDIATE`), so a locked database fails the transaction before any work.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use chrono::Utc;
use rusqlite::{params, Connection, OptionalExtension};

use super::{decode, migrations, rfc3339, Alert, AlertBackend, AlertError, AlertFilter};

/// SQLite storage.
#[derive(Debug)]
pub struct SqliteBackend {
    path: PathBuf,
    conn: Mutex<Connection>,
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
        migrate(&mut conn, path)?;
        Ok(SqliteBackend {
            path: path.to_path_buf(),
            conn: Mutex::new(conn),
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
    fn insert(&self, alerts: &[Alert], or_ignore: bool) -> Result<usize, AlertError> {
        let mut conn = self.conn()?;
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(|e| self.err(e))?;
        let verb = if or_ignore {
            "INSERT OR IGNORE"
        } else {
            "INSERT"
        };
        let mut inserted = 0;
        {
            let mut stmt = tx
                .prepare_cached(&format!(
                    "{verb} INTO alerts (id, time, action, cluster, namespace, kind, name,
                        operation, user_name, image, digest, rule, dry_run, data, origin, dedup_key)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)"
                ))
                .map_err(|e| self.err(e))?;
            for a in alerts {
                let data = serde_json::to_string(a).map_err(|e| AlertError::Corrupt {
                    id: a.id.clone(),
                    message: e.to_string(),
                })?;
                inserted += stmt
                    .execute(params![
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
                        a.dedup_key()
                    ])
                    .map_err(|e| self.err(e))?;
            }
        }
        tx.commit().map_err(|e| self.err(e))?;
        Ok(inserted)
    }
}

impl SqliteBackend {
    /// One transaction: each alert not stored yet (as an alert or as an absorbed repeat) is
    /// absorbed by the earliest alert of its de-duplication key within `window` of its time,
    /// else inserted. Returns the alerts taken (inserted or absorbed).
    fn merge(&self, alerts: &[Alert], window: std::time::Duration) -> Result<usize, AlertError> {
        let window = chrono::Duration::from_std(window).unwrap_or(chrono::Duration::MAX);
        let mut conn = self.conn()?;
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(|e| self.err(e))?;
        let mut taken = 0;
        for a in alerts {
            let known: Option<i64> = tx
                .prepare_cached(
                    "SELECT 1 FROM alerts WHERE id = ?1 UNION ALL \
                     SELECT 1 FROM alert_repeats WHERE id = ?1 LIMIT 1",
                )
                .and_then(|mut st| st.query_row([&a.id], |r| r.get(0)).optional())
                .map_err(|e| self.err(e))?;
            if known.is_some() {
                continue;
            }
            let key = a.dedup_key();
            if let Some(key) = &key {
                let lo = a.time.checked_sub_signed(window).unwrap_or(a.time);
                let hi = a.time.checked_add_signed(window).unwrap_or(a.time);
                let first: Option<(String, String)> = tx
                    .prepare_cached(
                        "SELECT id, data FROM alerts WHERE dedup_key = ?1 AND time >= ?2 \
                         AND time <= ?3 ORDER BY time, id LIMIT 1",
                    )
                    .and_then(|mut st| {
                        st.query_row(params![key, rfc3339(lo), rfc3339(hi)], |r| {
                            Ok((r.get(0)?, r.get(1)?))
                        })
                        .optional()
                    })
                    .map_err(|e| self.err(e))?;
                if let Some((id, data)) = first {
                    let mut first = decode(&id, &data)?;
                    first.absorb(a);
                    let data = serde_json::to_string(&first).map_err(|e| AlertError::Corrupt {
                        id: id.clone(),
                        message: e.to_string(),
                    })?;
                    tx.execute(
                        "UPDATE alerts SET data = ?2 WHERE id = ?1",
                        params![id, data],
                    )
                    .map_err(|e| self.err(e))?;
                    tx.execute(
                        "INSERT INTO alert_repeats (id, alert_id, time) VALUES (?1, ?2, ?3)",
                        params![a.id, id, rfc3339(a.time)],
                    )
                    .map_err(|e| self.err(e))?;
                    taken += 1;
                    continue;
                }
            }
            let data = serde_json::to_string(a).map_err(|e| AlertError::Corrupt {
                id: a.id.clone(),
                message: e.to_string(),
            })?;
            tx.prepare_cached(
                "INSERT INTO alerts (id, time, action, cluster, namespace, kind, name,
                    operation, user_name, image, digest, rule, dry_run, data, origin, dedup_key)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)",
            )
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
            taken += 1;
        }
        tx.commit().map_err(|e| self.err(e))?;
        Ok(taken)
    }
}

impl AlertBackend for SqliteBackend {
    fn record_merged(
        &self,
        alerts: &[Alert],
        window: std::time::Duration,
    ) -> Result<usize, AlertError> {
        self.merge(alerts, window)
    }

    fn record(&self, alerts: &[Alert]) -> Result<(), AlertError> {
        self.insert(alerts, false).map(|_| ())
    }

    fn record_new(&self, alerts: &[Alert]) -> Result<usize, AlertError> {
        self.insert(alerts, true)
    }

    fn list(&self, f: &AlertFilter) -> Result<Vec<Alert>, AlertError> {
        let conn = self.conn()?;
        let mut sql = String::from("SELECT id, data FROM alerts WHERE 1=1");
        let mut args: Vec<Box<dyn rusqlite::ToSql>> = Vec::new();
        let mut add = |clause: &str, v: Box<dyn rusqlite::ToSql>| {
            args.push(v);
            sql.push_str(&clause.replace('?', &format!("?{}", args.len())));
        };
        if let Some(t) = f.since {
            add(" AND time >= ?", Box::new(rfc3339(t)));
        }
        if let Some(a) = f.action {
            add(" AND action = ?", Box::new(a.as_str()));
        }
        if let Some(o) = f.origin {
            add(" AND origin = ?", Box::new(o.as_str()));
        }
        if let Some(n) = &f.namespace {
            add(" AND namespace = ?", Box::new(n.clone()));
        }
        if let Some(r) = &f.rule {
            add(" AND rule = ?", Box::new(r.clone()));
        }
        if let Some(i) = &f.image {
            add(" AND instr(image, ?) > 0", Box::new(i.clone()));
        }
        let limit = f.limit.unwrap_or(100).min(i64::MAX as usize) as i64;
        add(" ORDER BY time DESC, id DESC LIMIT ?", Box::new(limit));
        let mut stmt = conn.prepare(&sql).map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(rusqlite::params_from_iter(args.iter()), |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
            })
            .map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        for row in rows {
            let (id, data) = row.map_err(|e| self.err(e))?;
            out.push(decode(&id, &data)?);
        }
        Ok(out)
    }

    /// The alert `id`, or the alert that absorbed the repeat `id`.
    fn get(&self, id: &str) -> Result<Option<Alert>, AlertError> {
        let conn = self.conn()?;
        let row: Option<(String, String)> = conn
            .query_row(
                "SELECT id, data FROM alerts WHERE id = ?1 UNION ALL \
                 SELECT a.id, a.data FROM alert_repeats r JOIN alerts a ON a.id = r.alert_id \
                 WHERE r.id = ?1 LIMIT 1",
                [id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(|e| self.err(e))?;
        row.map(|(id, d)| decode(&id, &d)).transpose()
    }
}
