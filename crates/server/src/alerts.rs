//! Alerts: one per audited, denied or break-glass image, recorded durably before the
//! admission response is sent.
//!
//! [`AlertStore`] is the public face (the webhook writes, `vulngate alerts` reads); storage is
//! behind [`AlertBackend`] so another database (PostgreSQL) can be added. The SQLite backend
//! keeps its file in the data directory, in WAL mode with `synchronous=FULL` (a committed alert
//! survives a crash), its schema managed by a `schema_migrations` table.

use std::fmt::Debug;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, SecondsFormat, Utc};
use rusqlite::{params, Connection, OptionalExtension};
use serde::{Deserialize, Serialize};
use vulngate_core::engine::{SeverityCounts, Vulnerability};
use vulngate_core::model::ReportIdentity;
use vulngate_core::{Outcome, UnscannedReason};

/// File name of the SQLite database in the data directory.
pub const SQLITE_FILE: &str = "alerts.db";

/// Why an alert was raised.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AlertAction {
    Audit,
    Deny,
    /// The workload carried the break-glass annotation: allowed whatever the rules say.
    BreakGlass,
}

impl AlertAction {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertAction::Audit => "audit",
            AlertAction::Deny => "deny",
            AlertAction::BreakGlass => "break-glass",
        }
    }
}

impl std::fmt::Display for AlertAction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for AlertAction {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "audit" => Ok(AlertAction::Audit),
            "deny" => Ok(AlertAction::Deny),
            "break-glass" => Ok(AlertAction::BreakGlass),
            _ => Err(format!(
                "unknown alert action {s:?} (expected audit, deny or break-glass)"
            )),
        }
    }
}

/// One alert.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Alert {
    /// UUID v7 (time-ordered).
    pub id: String,
    pub time: DateTime<Utc>,
    pub action: AlertAction,
    /// The engine's decision for the image (for break-glass alerts: what it would have been).
    pub decision: Outcome,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Workload kind (`Deployment`).
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// `CREATE` or `UPDATE`.
    pub operation: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// The AdmissionReview request uid.
    pub request_uid: String,
    /// The image as written in the workload.
    pub image: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// The deciding rule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    /// The deciding rule as it was when it decided (a `SecurityRule` document).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule_snapshot: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rules_version: Option<String>,
    /// The deciding vulnerability (id, severity, packages with installed and fixed versions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vulnerability: Option<Vulnerability>,
    pub counts: SeverityCounts,
    /// The findings artifact (digest, scanner, scan time).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report: Option<ReportIdentity>,
    /// Set when the image had no valid findings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unscanned: Option<UnscannedReason>,
    pub reason: String,
    pub dry_run: bool,
    /// The break-glass annotation's value (the justification).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub break_glass: Option<String>,
}

/// Which alerts to list (all given criteria must match).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AlertFilter {
    /// Alerts at or after this time.
    pub since: Option<DateTime<Utc>>,
    pub action: Option<AlertAction>,
    pub namespace: Option<String>,
    pub rule: Option<String>,
    /// Substring of the image reference.
    pub image: Option<String>,
    /// At most this many, newest first (default 100).
    pub limit: Option<usize>,
}

#[derive(Debug, thiserror::Error)]
pub enum AlertError {
    #[error("alert database {path}: {source}")]
    Sqlite {
        path: String,
        #[source]
        source: rusqlite::Error,
    },
    #[error(
        "alert database {path}: schema version {found} is newer than this vulngate knows ({known})"
    )]
    SchemaTooNew {
        path: String,
        found: i64,
        known: i64,
    },
    #[error("cannot create data directory {path}: {source}")]
    DataDir {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("alert {id}: stored data unreadable: {message}")]
    Corrupt { id: String, message: String },
    #[error("alert store: {0}")]
    Other(String),
}

/// Alert storage.
pub trait AlertBackend: Send + Sync + Debug {
    /// Records alerts atomically (all or none) and durably.
    fn record(&self, alerts: &[Alert]) -> Result<(), AlertError>;
    fn list(&self, filter: &AlertFilter) -> Result<Vec<Alert>, AlertError>;
    fn get(&self, id: &str) -> Result<Option<Alert>, AlertError>;
}

/// The alert store.
#[derive(Debug, Clone)]
pub struct AlertStore {
    backend: Arc<dyn AlertBackend>,
}

impl AlertStore {
    /// Opens (creating if needed) the SQLite store in `data_dir`.
    pub fn open(data_dir: &Path) -> Result<AlertStore, AlertError> {
        std::fs::create_dir_all(data_dir).map_err(|source| AlertError::DataDir {
            path: data_dir.display().to_string(),
            source,
        })?;
        let backend = SqliteBackend::open(&data_dir.join(SQLITE_FILE))?;
        Ok(AlertStore::from_backend(Arc::new(backend)))
    }

    pub fn from_backend(backend: Arc<dyn AlertBackend>) -> AlertStore {
        AlertStore { backend }
    }

    pub fn record(&self, alerts: &[Alert]) -> Result<(), AlertError> {
        if alerts.is_empty() {
            return Ok(());
        }
        self.backend.record(alerts)
    }

    /// [`record`](Self::record) on the blocking thread pool.
    pub async fn record_async(&self, alerts: Vec<Alert>) -> Result<(), AlertError> {
        if alerts.is_empty() {
            return Ok(());
        }
        let backend = self.backend.clone();
        tokio::task::spawn_blocking(move || backend.record(&alerts))
            .await
            .map_err(|e| AlertError::Other(format!("writer task failed: {e}")))?
    }

    /// Alerts matching `filter`, newest first.
    pub fn list(&self, filter: &AlertFilter) -> Result<Vec<Alert>, AlertError> {
        self.backend.list(filter)
    }

    pub fn get(&self, id: &str) -> Result<Option<Alert>, AlertError> {
        self.backend.get(id)
    }
}

// -------------------------------------------------------------------------------------------------

/// Schema migrations, applied in order; the applied versions are kept in `schema_migrations`.
const MIGRATIONS: &[(i64, &str, &str)] = &[(
    1,
    "alerts table",
    "CREATE TABLE alerts (
        id         TEXT PRIMARY KEY NOT NULL,
        time       TEXT NOT NULL,
        action     TEXT NOT NULL,
        cluster    TEXT,
        namespace  TEXT,
        kind       TEXT NOT NULL,
        name       TEXT,
        operation  TEXT NOT NULL,
        user_name  TEXT,
        image      TEXT NOT NULL,
        digest     TEXT,
        rule       TEXT,
        dry_run    INTEGER NOT NULL,
        data       TEXT NOT NULL
    );
    CREATE INDEX alerts_time ON alerts (time);
    CREATE INDEX alerts_namespace ON alerts (namespace, time);
    CREATE INDEX alerts_rule ON alerts (rule, time);",
)];

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
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
            version     INTEGER PRIMARY KEY NOT NULL,
            description TEXT NOT NULL,
            applied_at  TEXT NOT NULL
        );",
    )
    .map_err(err)?;
    let current: i64 = conn
        .query_row(
            "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
            [],
            |r| r.get(0),
        )
        .map_err(err)?;
    let known = MIGRATIONS.last().map(|m| m.0).unwrap_or(0);
    if current > known {
        return Err(AlertError::SchemaTooNew {
            path: path.display().to_string(),
            found: current,
            known,
        });
    }
    for (version, description, sql) in MIGRATIONS.iter().filter(|m| m.0 > current) {
        let tx = conn.transaction().map_err(err)?;
        tx.execute_batch(sql).map_err(err)?;
        tx.execute(
            "INSERT INTO schema_migrations (version, description, applied_at) VALUES (?1, ?2, ?3)",
            params![version, description, rfc3339(Utc::now())],
        )
        .map_err(err)?;
        tx.commit().map_err(err)?;
    }
    Ok(())
}

/// Fixed-width RFC 3339 (sorts as text).
fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

impl AlertBackend for SqliteBackend {
    fn record(&self, alerts: &[Alert]) -> Result<(), AlertError> {
        let mut conn = self.conn()?;
        let tx = conn.transaction().map_err(|e| self.err(e))?;
        for a in alerts {
            let data = serde_json::to_string(a).map_err(|e| AlertError::Corrupt {
                id: a.id.clone(),
                message: e.to_string(),
            })?;
            tx.execute(
                "INSERT INTO alerts (id, time, action, cluster, namespace, kind, name, operation,
                                     user_name, image, digest, rule, dry_run, data)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
                params![
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
                    data
                ],
            )
            .map_err(|e| self.err(e))?;
        }
        tx.commit().map_err(|e| self.err(e))
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

    fn get(&self, id: &str) -> Result<Option<Alert>, AlertError> {
        let conn = self.conn()?;
        let data: Option<String> = conn
            .query_row("SELECT data FROM alerts WHERE id = ?1", [id], |r| r.get(0))
            .optional()
            .map_err(|e| self.err(e))?;
        data.map(|d| decode(id, &d)).transpose()
    }
}

fn decode(id: &str, data: &str) -> Result<Alert, AlertError> {
    serde_json::from_str(data).map_err(|e| AlertError::Corrupt {
        id: id.to_string(),
        message: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alert(id: &str, action: AlertAction, ns: &str) -> Alert {
        Alert {
            id: id.into(),
            time: Utc::now(),
            action,
            decision: Outcome::Deny,
            cluster: None,
            namespace: Some(ns.into()),
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
        }
    }

    #[test]
    fn record_list_get_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let store = AlertStore::open(dir.path()).unwrap();
        store
            .record(&[
                alert("a", AlertAction::Deny, "prod"),
                alert("b", AlertAction::Audit, "dev"),
            ])
            .unwrap();
        drop(store);
        let store = AlertStore::open(dir.path()).unwrap();
        assert_eq!(store.list(&AlertFilter::default()).unwrap().len(), 2);
        let only = store
            .list(&AlertFilter {
                action: Some(AlertAction::Audit),
                ..Default::default()
            })
            .unwrap();
        assert_eq!(only.len(), 1);
        assert_eq!(only[0].id, "b");
        let by_ns = store
            .list(&AlertFilter {
                namespace: Some("prod".into()),
                image: Some("nginx".into()),
                ..Default::default()
            })
            .unwrap();
        assert_eq!(by_ns[0], alert_with_time(&by_ns[0], "a"));
        assert!(store.get("zzz").unwrap().is_none());
        assert_eq!(store.get("a").unwrap().unwrap().reason, "because");
    }

    fn alert_with_time(stored: &Alert, id: &str) -> Alert {
        Alert {
            time: stored.time,
            ..alert(id, AlertAction::Deny, "prod")
        }
    }
}
