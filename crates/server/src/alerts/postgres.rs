//! The PostgreSQL store: the shared alert store of a multi-replica deployment.
//!
//! Why an internal runtime: [`AlertBackend`] is synchronous (the SQLite store is a blocking
//! library, `vulngate alerts` is a plain CLI, and the webhook already calls the backend from
//! `spawn_blocking`), so this backend owns a small current-thread tokio runtime on its own
//! thread where the `tokio-postgres` connections live. A call spawns its future there and
//! waits for the answer on a std channel: that works from any thread, inside or outside a
//! runtime (a `block_on` inside a runtime would panic), and dropping the backend stops the
//! thread, which closes the connections.
//!
//! Connections: a small pool (at most [`MAX_CONNECTIONS`]) of idle clients; a client that saw
//! any error, or whose connection closed (server restart), is dropped instead of being reused,
//! so the next call connects afresh. Every call is bounded by [`OPERATION_TIMEOUT`] (an
//! unreachable server must not hold the admission answer past the webhook's deadline).
//!
//! Writes: one transaction per `record`/`record_new` call (all alerts or none; the writer
//! groups many requests' alerts into one call, `record_new` skips ids already stored) with `synchronous_commit = on`
//! for that transaction, so a commit has reached the server's WAL on disk before the webhook
//! answers, whatever the server's default. Migrations run under a transaction-level advisory
//! lock, so replicas starting together apply each migration exactly once.

mod merge;
mod outbox;
mod read;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use tokio::sync::Semaphore;
use tokio_postgres::Client;

use super::sqlite::{parse_state, parse_time, with_state};
use super::{
    count_query, decode_seen, list_query, migrations, namespaces_query, rfc3339, state_counts,
    vuln_ids, Alert, AlertBackend, AlertError, AlertFilter, Dialect, ReviewChange, ReviewEvent,
    ReviewState,
};

/// Most connections one backend opens.
pub const MAX_CONNECTIONS: usize = 4;
/// Upper bound of one store call (connecting included).
pub const OPERATION_TIMEOUT: Duration = Duration::from_secs(5);
/// Connect timeout when the URL has no `connect_timeout`.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// `pg_advisory_xact_lock` key held while migrating ("vulngate" in ASCII).
const MIGRATION_LOCK: i64 = 0x76756c6e67617465;
/// The class of the per-key advisory locks of de-duplication (`pg_advisory_xact_lock(int, int)`).
const DEDUP_LOCK: i32 = 0x7667_6431;
const INSERT_SQL: &str = "INSERT INTO alerts (id, time, action, cluster, namespace, kind, name,
    operation, user_name, image, digest, rule, dry_run, data, origin, dedup_key)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)";
const INSERT_NEW_SQL: &str = "INSERT INTO alerts (id, time, action, cluster, namespace, kind, name,
    operation, user_name, image, digest, rule, dry_run, data, origin, dedup_key)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)
    ON CONFLICT (id) DO NOTHING";
const VULN_SQL: &str =
    "INSERT INTO alert_vulns (vuln_id, alert_id) VALUES ($1, $2) ON CONFLICT DO NOTHING";
/// The distinct image references (the image filter's candidates, `query.rs`).
const IMAGE_SQL: &str = "INSERT INTO alert_images (image) VALUES ($1) ON CONFLICT DO NOTHING";

/// `sslmode` of a store URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    /// Plain TCP (or a Unix socket).
    Disable,
    /// TLS with the server certificate checked against the roots (`sslrootcert`, else the
    /// Mozilla roots) and the host name: `require` and `verify-full` both mean this (vulngate
    /// never uses TLS without verifying the peer).
    VerifyFull,
}

/// A `postgres://` (or `postgresql://`) store URL. Its `Debug`/`Display` never show the
/// password (in the userinfo or a `password=` parameter).
#[derive(Clone, PartialEq)]
pub struct PostgresUrl {
    /// As written.
    raw: String,
    /// The URL with the password replaced by `***`.
    redacted: String,
    /// The URL given to tokio-postgres (vulngate's own parameters removed).
    base: String,
    ssl_mode: SslMode,
    ssl_root_cert: Option<PathBuf>,
}

impl fmt::Debug for PostgresUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted)
    }
}

impl fmt::Display for PostgresUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted)
    }
}

impl PostgresUrl {
    /// Parses and checks a store URL. Error messages never contain the password.
    ///
    /// Parameters handled by vulngate: `sslmode` (`disable`, `require`, `verify-full`;
    /// default `verify-full`) and `sslrootcert` (PEM file of trusted CAs). The others
    /// (`connect_timeout`, `application_name`, `options`, ...) go to tokio-postgres.
    pub fn parse(url: &str) -> Result<PostgresUrl, String> {
        let rest = url
            .strip_prefix("postgres://")
            .or_else(|| url.strip_prefix("postgresql://"))
            .ok_or_else(|| "a store URL starts with postgres:// or postgresql://".to_string())?;
        let scheme = &url[..url.len() - rest.len()];
        let (before_query, query) = match rest.split_once('?') {
            Some((b, q)) => (b, Some(q)),
            None => (rest, None),
        };
        // userinfo@hosts/db: the userinfo ends at the last '@' before the path.
        let authority_end = before_query.find('/').unwrap_or(before_query.len());
        let (authority, path) = before_query.split_at(authority_end);
        let redacted_authority = match authority.rsplit_once('@') {
            Some((userinfo, hosts)) => match userinfo.split_once(':') {
                Some((user, _password)) => format!("{user}:***@{hosts}"),
                None => authority.to_string(),
            },
            None => authority.to_string(),
        };
        let mut ssl_mode = SslMode::VerifyFull;
        let mut ssl_root_cert = None;
        let mut kept = Vec::new();
        let mut redacted_query = Vec::new();
        for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            match key {
                "sslmode" => {
                    ssl_mode = match value {
                        "disable" => SslMode::Disable,
                        "require" | "verify-full" => SslMode::VerifyFull,
                        other => {
                            return Err(format!(
                                "sslmode={other}: expected disable, require or verify-full \
                                 (vulngate always verifies the server certificate and host name)"
                            ))
                        }
                    };
                    redacted_query.push(pair.to_string());
                }
                "sslrootcert" => {
                    ssl_root_cert = Some(PathBuf::from(percent_decode(value)?));
                    redacted_query.push(pair.to_string());
                }
                "password" => {
                    kept.push(pair);
                    redacted_query.push("password=***".to_string());
                }
                _ => {
                    kept.push(pair);
                    redacted_query.push(pair.to_string());
                }
            }
        }
        let mut redacted = format!("{scheme}{redacted_authority}{path}");
        if !redacted_query.is_empty() {
            redacted = format!("{redacted}?{}", redacted_query.join("&"));
        }
        let mut base = format!("{scheme}{before_query}");
        if !kept.is_empty() {
            base = format!("{base}?{}", kept.join("&"));
        }
        // Let tokio-postgres check the rest (its messages name options, never values).
        base.parse::<tokio_postgres::Config>()
            .map_err(|e| format!("invalid store URL {redacted}: {}", with_causes(&e)))?;
        Ok(PostgresUrl {
            raw: url.to_string(),
            redacted,
            base,
            ssl_mode,
            ssl_root_cert,
        })
    }

    /// The URL as written (contains the password if one was written in it).
    pub fn as_str(&self) -> &str {
        &self.raw
    }

    pub fn ssl_mode(&self) -> SslMode {
        self.ssl_mode
    }

    /// Whether the URL carries a password itself.
    fn has_password(&self) -> bool {
        self.base
            .parse::<tokio_postgres::Config>()
            .ok()
            .and_then(|c| c.get_password().map(|_| ()))
            .is_some()
    }
}

/// A tokio-postgres error with its causes: its own Display is only the kind ("db error",
/// "error performing TLS handshake"); the server's message or the I/O / certificate error is
/// in the source chain. (None of them carries the password: tokio-postgres never echoes it.)
fn with_causes(e: &tokio_postgres::Error) -> String {
    let mut out = e.to_string();
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        out.push_str(": ");
        out.push_str(&c.to_string());
        cause = c.source();
    }
    out
}

/// `%XX` decoding of a query value.
fn percent_decode(s: &str) -> Result<String, String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| "invalid %-escape in a URL parameter".to_string())?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "URL parameter is not UTF-8".to_string())
}

/// Where the password comes from when the URL has none: `passwordFile`, else
/// `VULNGATE_STORE_PASSWORD`, else `PGPASSWORD`, else none (trust or peer authentication).
pub fn resolve_password(
    url: &PostgresUrl,
    password_file: Option<&Path>,
) -> Result<Option<String>, AlertError> {
    if url.has_password() {
        return Ok(None); // already in the URL
    }
    if let Some(path) = password_file {
        let text = std::fs::read_to_string(path).map_err(|e| {
            AlertError::Other(format!(
                "cannot read the store password file {}: {}",
                path.display(),
                e.kind()
            ))
        })?;
        let password = text.trim_end_matches(['\n', '\r']).to_string();
        if password.is_empty() {
            return Err(AlertError::Other(format!(
                "the store password file {} is empty",
                path.display()
            )));
        }
        return Ok(Some(password));
    }
    for var in ["VULNGATE_STORE_PASSWORD", "PGPASSWORD"] {
        if let Some(v) = std::env::var_os(var) {
            if let Some(v) = v.to_str().filter(|v| !v.is_empty()) {
                return Ok(Some(v.to_string()));
            }
        }
    }
    Ok(None)
}

/// PostgreSQL storage.
pub struct PostgresBackend {
    inner: Arc<Inner>,
    handle: tokio::runtime::Handle,
    /// Dropping it stops the runtime thread.
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl fmt::Debug for PostgresBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresBackend")
            .field("url", &self.inner.url)
            .finish_non_exhaustive()
    }
}

struct Inner {
    url: PostgresUrl,
    /// Password included (never printed: `tokio_postgres::Config`'s Debug redacts it).
    config: tokio_postgres::Config,
    tls: Option<tokio_postgres_rustls::MakeRustlsConnect>,
    idle: Mutex<Vec<Client>>,
    permits: Semaphore,
    /// The sinks new alerts are queued for (the notification outbox).
    routes: super::outbox::Routes,
}

impl PostgresBackend {
    /// Connects, and creates or migrates the schema. Fails if the server cannot be reached.
    pub fn open(
        url: &PostgresUrl,
        password_file: Option<&Path>,
    ) -> Result<PostgresBackend, AlertError> {
        let mut config: tokio_postgres::Config = url.base.parse().map_err(|e| {
            AlertError::Other(format!("invalid store URL {url}: {}", with_causes(&e)))
        })?;
        if let Some(p) = resolve_password(url, password_file)? {
            config.password(p);
        }
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(DEFAULT_CONNECT_TIMEOUT);
        }
        let tls = match url.ssl_mode {
            SslMode::Disable => {
                config.ssl_mode(tokio_postgres::config::SslMode::Disable);
                None
            }
            SslMode::VerifyFull => {
                config.ssl_mode(tokio_postgres::config::SslMode::Require);
                Some(tls_connector(url)?)
            }
        };
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let (handle_tx, handle_rx) = std::sync::mpsc::sync_channel(1);
        std::thread::Builder::new()
            .name("vulngate-postgres".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = handle_tx.send(Err(e.to_string()));
                        return;
                    }
                };
                let _ = handle_tx.send(Ok(rt.handle().clone()));
                // Runs the connections and calls until the backend is dropped.
                let _ = rt.block_on(stop_rx);
            })
            .map_err(|e| AlertError::Other(format!("cannot start the postgres thread: {e}")))?;
        let handle = handle_rx
            .recv()
            .map_err(|_| AlertError::Other("the postgres thread did not start".into()))?
            .map_err(|e| AlertError::Other(format!("cannot start the postgres runtime: {e}")))?;
        let backend = PostgresBackend {
            inner: Arc::new(Inner {
                url: url.clone(),
                config,
                tls,
                idle: Mutex::new(Vec::new()),
                permits: Semaphore::new(MAX_CONNECTIONS),
                routes: Default::default(),
            }),
            handle,
            _stop: stop_tx,
        };
        let inner = backend.inner.clone();
        backend.run(async move { inner.migrate().await })?;
        Ok(backend)
    }

    /// Runs `fut` on the backend's runtime and waits for it (bounded by OPERATION_TIMEOUT).
    fn run<T: Send + 'static>(
        &self,
        fut: impl std::future::Future<Output = Result<T, AlertError>> + Send + 'static,
    ) -> Result<T, AlertError> {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let url = self.inner.url.to_string();
        self.handle.spawn(async move {
            let r = match tokio::time::timeout(OPERATION_TIMEOUT, fut).await {
                Ok(r) => r,
                Err(_) => Err(AlertError::Postgres {
                    url,
                    message: format!("no answer within {}s", OPERATION_TIMEOUT.as_secs()),
                }),
            };
            let _ = tx.send(r);
        });
        rx.recv()
            .map_err(|_| AlertError::Other("the postgres runtime stopped".into()))?
    }
}

fn tls_connector(
    url: &PostgresUrl,
) -> Result<tokio_postgres_rustls::MakeRustlsConnect, AlertError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;
    let mut roots = rustls::RootCertStore::empty();
    match &url.ssl_root_cert {
        Some(path) => {
            let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
                .and_then(|it| it.collect::<Result<_, _>>())
                .map_err(|e| AlertError::Other(format!("sslrootcert {}: {e}", path.display())))?;
            if certs.is_empty() {
                return Err(AlertError::Other(format!(
                    "sslrootcert {}: no certificate in the file",
                    path.display()
                )));
            }
            for c in certs {
                roots.add(c).map_err(|e| {
                    AlertError::Other(format!("sslrootcert {}: {e}", path.display()))
                })?;
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| AlertError::Other(format!("TLS configuration: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(config))
}

/// A pooled client: back to the pool on `release`, dropped (connection closed) otherwise.
struct Lease<'a> {
    client: Option<Client>,
    inner: &'a Inner,
    _permit: tokio::sync::SemaphorePermit<'a>,
}

impl Lease<'_> {
    fn client(&mut self) -> Result<&mut Client, AlertError> {
        self.client
            .as_mut()
            .ok_or_else(|| AlertError::Other("connection already released".into()))
    }

    fn release(mut self) {
        if let Some(c) = self.client.take() {
            if !c.is_closed() {
                if let Ok(mut idle) = self.inner.idle.lock() {
                    idle.push(c);
                }
            }
        }
    }
}

impl Inner {
    fn err(&self, e: tokio_postgres::Error) -> AlertError {
        AlertError::Postgres {
            url: self.url.to_string(),
            message: with_causes(&e),
        }
    }

    async fn lease(&self) -> Result<Lease<'_>, AlertError> {
        let permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| AlertError::Other("connection pool closed".into()))?;
        let pooled = {
            let mut idle = self
                .idle
                .lock()
                .map_err(|_| AlertError::Other("connection pool lock poisoned".into()))?;
            let mut found = None;
            while let Some(c) = idle.pop() {
                if !c.is_closed() {
                    found = Some(c);
                    break;
                }
            }
            found
        };
        let client = match pooled {
            Some(c) => c,
            None => self.connect().await?,
        };
        Ok(Lease {
            client: Some(client),
            inner: self,
            _permit: permit,
        })
    }

    async fn connect(&self) -> Result<Client, AlertError> {
        let client = match &self.tls {
            None => {
                let (client, conn) = self
                    .config
                    .connect(tokio_postgres::NoTls)
                    .await
                    .map_err(|e| self.err(e))?;
                tokio::spawn(conn);
                client
            }
            Some(tls) => {
                let (client, conn) = self
                    .config
                    .connect(tls.clone())
                    .await
                    .map_err(|e| self.err(e))?;
                tokio::spawn(conn);
                client
            }
        };
        Ok(client)
    }

    async fn migrate(&self) -> Result<(), AlertError> {
        let mut lease = self.lease().await?;
        let client = lease.client()?;
        let tx = client.transaction().await.map_err(|e| self.err(e))?;
        // Serialises replicas migrating the same database; released at commit/rollback.
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
            .await
            .map_err(|e| self.err(e))?;
        tx.batch_execute(migrations::POSTGRES_VERSION_TABLE)
            .await
            .map_err(|e| self.err(e))?;
        let current: i64 = tx
            .query_one(
                "SELECT COALESCE(MAX(version), 0)::BIGINT FROM schema_migrations",
                &[],
            )
            .await
            .map_err(|e| self.err(e))?
            .try_get(0)
            .map_err(|e| self.err(e))?;
        let known = migrations::latest();
        if current > known {
            return Err(AlertError::SchemaTooNew {
                path: self.url.to_string(),
                found: current,
                known,
            });
        }
        for m in migrations::MIGRATIONS
            .iter()
            .filter(|m| m.version > current)
        {
            tx.batch_execute(m.postgres)
                .await
                .map_err(|e| self.err(e))?;
            tx.execute(
                "INSERT INTO schema_migrations (version, description, applied_at) \
                 VALUES ($1, $2, $3)",
                &[&m.version, &m.description, &rfc3339(Utc::now())],
            )
            .await
            .map_err(|e| self.err(e))?;
        }
        tx.commit().await.map_err(|e| self.err(e))?;
        lease.release();
        Ok(())
    }

    /// One transaction; `or_ignore`: skip ids already stored. Returns the rows inserted.
    async fn record(&self, alerts: &[Alert], or_ignore: bool) -> Result<usize, AlertError> {
        let mut lease = self.lease().await?;
        let client = lease.client()?;
        let tx = client.transaction().await.map_err(|e| self.err(e))?;
        tx.batch_execute("SET LOCAL synchronous_commit TO on")
            .await
            .map_err(|e| self.err(e))?;
        let mut inserted = 0;
        for a in alerts {
            inserted += self.insert_row(&tx, a, &a.dedup_key(), or_ignore).await?;
        }
        tx.commit().await.map_err(|e| self.err(e))?;
        lease.release();
        Ok(inserted)
    }

    /// Inserts `a` (`or_ignore`: an id already stored is skipped) and, when its row went in,
    /// its vulnerability ids, its image reference and its notification outbox entries.
    /// Returns the rows inserted (0 or 1).
    pub(super) async fn insert_row(
        &self,
        tx: &tokio_postgres::Transaction<'_>,
        a: &Alert,
        key: &Option<String>,
        or_ignore: bool,
    ) -> Result<usize, AlertError> {
        let data = serde_json::to_string(a).map_err(|e| AlertError::Corrupt {
            id: a.id.clone(),
            message: e.to_string(),
        })?;
        let n = tx
            .execute(
                if or_ignore {
                    INSERT_NEW_SQL
                } else {
                    INSERT_SQL
                },
                &[
                    &a.id,
                    &rfc3339(a.time),
                    &a.action.as_str(),
                    &a.cluster,
                    &a.namespace,
                    &a.kind,
                    &a.name,
                    &a.operation,
                    &a.user,
                    &a.image,
                    &a.digest,
                    &a.rule,
                    &a.dry_run,
                    &data,
                    &a.origin.as_str(),
                    key,
                ],
            )
            .await
            .map_err(|e| self.err(e))?;
        if n == 0 {
            return Ok(0);
        }
        for v in vuln_ids(a) {
            tx.execute(VULN_SQL, &[&v, &a.id])
                .await
                .map_err(|e| self.err(e))?;
        }
        tx.execute(IMAGE_SQL, &[&a.image])
            .await
            .map_err(|e| self.err(e))?;
        outbox::enqueue(tx, &self.routes, a)
            .await
            .map_err(|e| self.err(e))?;
        Ok(1)
    }

    async fn list(&self, f: &AlertFilter) -> Result<Vec<Alert>, AlertError> {
        let mut lease = self.lease().await?;
        let images = self.images(lease.client()?, f).await?;
        let (sql, args) = list_query(f, Dialect::Postgres, images.as_deref());
        let rows = self.query(lease.client()?, &sql, &args).await?;
        lease.release();
        rows.iter()
            .map(|r| {
                let id: String = r.try_get(0).map_err(|e| self.err(e))?;
                let data: String = r.try_get(1).map_err(|e| self.err(e))?;
                let state: String = r.try_get(2).map_err(|e| self.err(e))?;
                let seen = (|| Ok((r.try_get(3)?, r.try_get(4)?, r.try_get(5)?)))()
                    .map_err(|e| self.err(e))?;
                with_state(decode_seen(&id, &data, seen)?, &state)
            })
            .collect()
    }

    async fn get(&self, id: &str) -> Result<Option<Alert>, AlertError> {
        let mut lease = self.lease().await?;
        let client = lease.client()?;
        // A repeat's id names the alert that absorbed it.
        let target = client
            .query_opt(
                "SELECT alert_id FROM alert_repeats WHERE id = $1 \
                 AND NOT EXISTS (SELECT 1 FROM alerts WHERE id = $1)",
                &[&id],
            )
            .await
            .map_err(|e| self.err(e))?;
        let target: Option<String> = match target {
            Some(r) => Some(r.try_get(0).map_err(|e| self.err(e))?),
            None => None,
        };
        let id = target.as_deref().unwrap_or(id);
        let out = get_in(client, id).await;
        lease.release();
        out.map_err(|e| self.err(e))?.transpose()
    }

    async fn review(&self, id: &str, change: &ReviewChange) -> Result<Option<Alert>, AlertError> {
        let mut lease = self.lease().await?;
        let client = lease.client()?;
        let tx = client.transaction().await.map_err(|e| self.err(e))?;
        let row = tx
            .query_opt(
                "SELECT state, (SELECT COUNT(*) FROM alert_reviews WHERE alert_id = $1)::BIGINT
                 FROM alerts WHERE id = $1 FOR UPDATE",
                &[&id],
            )
            .await
            .map_err(|e| self.err(e))?;
        let Some(row) = row else {
            return Ok(None);
        };
        let state: String = row.try_get(0).map_err(|e| self.err(e))?;
        let seq: i64 = row.try_get(1).map_err(|e| self.err(e))?;
        let from = parse_state(id, &state)?;
        if !from.can_move_to(change.to) {
            return Err(AlertError::Transition {
                id: id.to_string(),
                from,
                to: change.to,
            });
        }
        tx.execute(
            "UPDATE alerts SET state = $2 WHERE id = $1",
            &[&id, &change.to.as_str()],
        )
        .await
        .map_err(|e| self.err(e))?;
        tx.execute(
            "INSERT INTO alert_reviews (alert_id, seq, time, user_name, from_state, to_state, comment)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
            &[
                &id,
                &(seq + 1),
                &rfc3339(change.time),
                &change.by,
                &from.as_str(),
                &change.to.as_str(),
                &change.comment,
            ],
        )
        .await
        .map_err(|e| self.err(e))?;
        let alert = get_in(&tx, id)
            .await
            .map_err(|e| self.err(e))?
            .transpose()?;
        tx.commit().await.map_err(|e| self.err(e))?;
        lease.release();
        Ok(alert)
    }

    async fn count_by_state(&self, f: &AlertFilter) -> Result<Vec<(ReviewState, u64)>, AlertError> {
        let mut lease = self.lease().await?;
        let images = self.images(lease.client()?, f).await?;
        let (sql, args) = count_query(f, Dialect::Postgres, images.as_deref());
        let sql = sql.replace("COUNT(*)", "COUNT(*)::BIGINT");
        let rows = self.query(lease.client()?, &sql, &args).await?;
        lease.release();
        let rows = rows
            .iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect::<Result<Vec<(String, i64)>, tokio_postgres::Error>>()
            .map_err(|e| self.err(e))?;
        Ok(state_counts(rows))
    }

    async fn namespaces(&self, max: usize) -> Result<Vec<String>, AlertError> {
        let mut lease = self.lease().await?;
        let (sql, args) = namespaces_query(max, Dialect::Postgres);
        let rows = self.query(lease.client()?, &sql, &args).await?;
        lease.release();
        rows.iter()
            .map(|r| r.try_get(0))
            .collect::<Result<Vec<String>, tokio_postgres::Error>>()
            .map_err(|e| self.err(e))
    }
}

/// The alert with its state and history (`Ok(None)`: no such id).
#[allow(clippy::type_complexity)]
async fn get_in<C: tokio_postgres::GenericClient>(
    client: &C,
    id: &str,
) -> Result<Option<Result<Alert, AlertError>>, tokio_postgres::Error> {
    let Some(row) = client
        .query_opt(
            "SELECT data, state, c.count, c.last_seen, c.kinds FROM alerts \
             LEFT JOIN alert_counts c ON c.alert_id = alerts.id WHERE id = $1",
            &[&id],
        )
        .await?
    else {
        return Ok(None);
    };
    let data: String = row.try_get(0)?;
    let state: String = row.try_get(1)?;
    let seen = (row.try_get(2)?, row.try_get(3)?, row.try_get(4)?);
    let rows = client
        .query(
            "SELECT time, user_name, from_state, to_state, comment FROM alert_reviews
             WHERE alert_id = $1 ORDER BY seq",
            &[&id],
        )
        .await?;
    let mut history = Vec::with_capacity(rows.len());
    for r in &rows {
        history.push((
            r.try_get::<_, String>(0)?,
            r.try_get::<_, String>(1)?,
            r.try_get::<_, String>(2)?,
            r.try_get::<_, String>(3)?,
            r.try_get::<_, String>(4)?,
        ));
    }
    Ok(Some((|| {
        let mut a = with_state(decode_seen(id, &data, seen)?, &state)?;
        for (time, by, from, to, comment) in history {
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

impl PostgresBackend {
    fn record_new_owned(&self, alerts: Vec<Alert>) -> Result<usize, AlertError> {
        let inner = self.inner.clone();
        self.run(async move { inner.record(&alerts, true).await })
    }

    fn record_merged_owned(
        &self,
        alerts: Vec<Alert>,
        window: std::time::Duration,
    ) -> Result<usize, AlertError> {
        let inner = self.inner.clone();
        self.run(async move { inner.merge(&alerts, window).await })
    }
}

impl AlertBackend for PostgresBackend {
    fn record(&self, alerts: &[Alert]) -> Result<(), AlertError> {
        let inner = self.inner.clone();
        let alerts = alerts.to_vec();
        self.run(async move { inner.record(&alerts, false).await.map(|_| ()) })
    }

    fn record_new(&self, alerts: &[Alert]) -> Result<usize, AlertError> {
        self.record_new_owned(alerts.to_vec())
    }

    /// The writer's batch, copied once into the async task (not once more by the default).
    fn record_new_refs(&self, alerts: &[&Alert]) -> Result<usize, AlertError> {
        self.record_new_owned(alerts.iter().map(|a| (*a).clone()).collect())
    }

    fn record_merged(
        &self,
        alerts: &[Alert],
        window: std::time::Duration,
    ) -> Result<usize, AlertError> {
        self.record_merged_owned(alerts.to_vec(), window)
    }

    fn record_merged_refs(
        &self,
        alerts: &[&Alert],
        window: std::time::Duration,
    ) -> Result<usize, AlertError> {
        self.record_merged_owned(alerts.iter().map(|a| (*a).clone()).collect(), window)
    }

    fn list(&self, filter: &AlertFilter) -> Result<Vec<Alert>, AlertError> {
        let inner = self.inner.clone();
        let filter = filter.clone();
        self.run(async move { inner.list(&filter).await })
    }

    fn get(&self, id: &str) -> Result<Option<Alert>, AlertError> {
        let inner = self.inner.clone();
        let id = id.to_string();
        self.run(async move { inner.get(&id).await })
    }

    fn review(&self, id: &str, change: &ReviewChange) -> Result<Option<Alert>, AlertError> {
        let inner = self.inner.clone();
        let id = id.to_string();
        let change = change.clone();
        self.run(async move { inner.review(&id, &change).await })
    }

    fn outbox(&self) -> Option<&dyn super::outbox::Outbox> {
        Some(self)
    }

    fn count_by_state(&self, filter: &AlertFilter) -> Result<Vec<(ReviewState, u64)>, AlertError> {
        let inner = self.inner.clone();
        let filter = filter.clone();
        self.run(async move { inner.count_by_state(&filter).await })
    }

    fn namespaces(&self, max: usize) -> Result<Vec<String>, AlertError> {
        let inner = self.inner.clone();
        self.run(async move { inner.namespaces(max).await })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_password_is_redacted_everywhere() {
        let u = PostgresUrl::parse(
            "postgres://vg:hunter2-secret@db.example:5432/alerts?sslmode=disable&password=other-secret",
        )
        .unwrap();
        for shown in [u.to_string(), format!("{u:?}")] {
            assert!(!shown.contains("hunter2-secret"), "{shown}");
            assert!(!shown.contains("other-secret"), "{shown}");
            assert!(shown.contains("vg:***@db.example:5432/alerts"), "{shown}");
        }
        assert_eq!(u.ssl_mode(), SslMode::Disable);
    }

    #[test]
    fn url_errors_never_show_the_password() {
        for bad in [
            "postgres://vg:hunter2-secret@db:notaport/alerts",
            "postgres://vg:hunter2-secret@db/alerts?sslmode=allow",
            "postgres://vg:hunter2-secret@db/alerts?bogus=1",
            "mysql://vg:hunter2-secret@db/alerts",
            "postgres://vg:hunter2-secret@db/alerts?sslrootcert=%zz",
        ] {
            let e = PostgresUrl::parse(bad).unwrap_err();
            assert!(!e.contains("hunter2"), "{bad}: {e}");
        }
    }

    #[test]
    fn sslmode_defaults_to_verify_full() {
        let u = PostgresUrl::parse("postgresql://vg@db/alerts").unwrap();
        assert_eq!(u.ssl_mode(), SslMode::VerifyFull);
        let u = PostgresUrl::parse("postgresql://vg@db/alerts?sslmode=require").unwrap();
        assert_eq!(u.ssl_mode(), SslMode::VerifyFull);
    }
}
