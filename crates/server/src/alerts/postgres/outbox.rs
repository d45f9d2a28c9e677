//! The PostgreSQL store's notification outbox (the `notify_outbox` table, migration 5).
//! Replicas sharing the database claim entries with `FOR UPDATE SKIP LOCKED`, so one entry
//! is attempted by one replica at a time.

use chrono::{DateTime, Utc};
use tokio_postgres::GenericClient;

use super::super::outbox::{
    from_row, new_id, DeliveryState, Notification, Outbox, Retried, Routes, Row, COLUMNS,
};
use super::super::{rfc3339, Alert, AlertError};
use super::PostgresBackend;

/// Queues `a` (just inserted, in `tx`) for every sink its routes select.
pub(super) async fn enqueue<C: GenericClient>(
    tx: &C,
    routes: &Routes,
    a: &Alert,
) -> Result<(), tokio_postgres::Error> {
    let sinks = routes.sinks_for(a);
    if sinks.is_empty() {
        return Ok(());
    }
    let now = rfc3339(Utc::now());
    for sink in sinks {
        tx.execute(
            "INSERT INTO notify_outbox (id, alert_id, sink, state, attempts, created, next_at)
             VALUES ($1, $2, $3, 'pending', 0, $4, $4) ON CONFLICT DO NOTHING",
            &[&new_id(), &a.id, &sink, &now],
        )
        .await?;
    }
    Ok(())
}

fn row(r: &tokio_postgres::Row) -> Result<Row, tokio_postgres::Error> {
    Ok((
        r.try_get(0)?,
        r.try_get(1)?,
        r.try_get(2)?,
        r.try_get(3)?,
        r.try_get(4)?,
        r.try_get(5)?,
        r.try_get(6)?,
        r.try_get(7)?,
    ))
}

impl PostgresBackend {
    /// Runs `f` with a pooled client on the backend's runtime.
    fn with_client<T, F>(&self, f: F) -> Result<T, AlertError>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(
                &'c mut tokio_postgres::Client,
            ) -> std::pin::Pin<
                Box<dyn std::future::Future<Output = Result<T, tokio_postgres::Error>> + Send + 'c>,
            > + Send
            + 'static,
    {
        let inner = self.inner.clone();
        self.run(async move {
            let mut lease = inner.lease().await?;
            let out = f(lease.client()?).await.map_err(|e| inner.err(e))?;
            lease.release();
            Ok(out)
        })
    }
}

impl Outbox for PostgresBackend {
    fn routes(&self) -> &Routes {
        &self.inner.routes
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
        let sinks = sinks.to_vec();
        let (now, until) = (rfc3339(now), rfc3339(lease_until));
        let limit = limit.min(i64::MAX as usize) as i64;
        let rows = self.with_client(move |c| {
            Box::pin(async move {
                let rows = c
                    .query(
                        &format!(
                            "UPDATE notify_outbox SET attempts = attempts + 1, next_at = $2
                             WHERE id IN (SELECT id FROM notify_outbox
                                          WHERE state = 'pending' AND next_at <= $1
                                            AND sink = ANY($4)
                                          ORDER BY next_at, id LIMIT $3
                                          FOR UPDATE SKIP LOCKED)
                             RETURNING {COLUMNS}"
                        ),
                        &[&now, &until, &limit, &sinks],
                    )
                    .await?;
                rows.iter().map(row).collect::<Result<Vec<_>, _>>()
            })
        })?;
        let mut out: Vec<Notification> =
            rows.into_iter().map(from_row).collect::<Result<_, _>>()?;
        out.sort_by(|a, b| (a.created, &a.id).cmp(&(b.created, &b.id)));
        Ok(out)
    }

    fn delivered(&self, id: &str) -> Result<(), AlertError> {
        let id = id.to_string();
        self.with_client(move |c| {
            Box::pin(async move {
                c.execute("DELETE FROM notify_outbox WHERE id = $1", &[&id])
                    .await
                    .map(|_| ())
            })
        })
    }

    fn failed(
        &self,
        id: &str,
        retry_at: Option<DateTime<Utc>>,
        error: &str,
    ) -> Result<(), AlertError> {
        let (state, at) = match retry_at {
            Some(t) => (DeliveryState::Pending, t),
            None => (DeliveryState::Dead, Utc::now()),
        };
        let (id, at, error) = (id.to_string(), rfc3339(at), error.to_string());
        self.with_client(move |c| {
            Box::pin(async move {
                c.execute(
                    "UPDATE notify_outbox SET state = $2, next_at = $3, last_error = $4
                     WHERE id = $1",
                    &[&id, &state.as_str(), &at, &error],
                )
                .await
                .map(|_| ())
            })
        })
    }

    fn notifications(
        &self,
        state: Option<DeliveryState>,
        sink: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Notification>, AlertError> {
        let state = state.map(|s| s.as_str().to_string());
        let sink = sink.map(str::to_string);
        let limit = limit.min(i64::MAX as usize) as i64;
        let rows = self.with_client(move |c| {
            Box::pin(async move {
                let rows = c
                    .query(
                        &format!(
                            "SELECT {COLUMNS} FROM notify_outbox
                             WHERE ($1::TEXT IS NULL OR state = $1)
                               AND ($2::TEXT IS NULL OR sink = $2)
                             ORDER BY created DESC, id DESC LIMIT $3"
                        ),
                        &[&state, &sink, &limit],
                    )
                    .await?;
                rows.iter().map(row).collect::<Result<Vec<_>, _>>()
            })
        })?;
        rows.into_iter().map(from_row).collect()
    }

    fn retry(&self, id: &str, now: DateTime<Utc>) -> Result<Retried, AlertError> {
        let (id, now) = (id.to_string(), rfc3339(now));
        let (n, found) = self.with_client(move |c| {
            Box::pin(async move {
                let n = c
                    .execute(
                        "UPDATE notify_outbox SET state = 'pending', attempts = 0, next_at = $2
                         WHERE id = $1 AND state = 'dead'",
                        &[&id, &now],
                    )
                    .await?;
                let found = c
                    .query_opt(
                        &format!("SELECT {COLUMNS} FROM notify_outbox WHERE id = $1"),
                        &[&id],
                    )
                    .await?;
                Ok((n, found.as_ref().map(row).transpose()?))
            })
        })?;
        Ok(match found {
            None => Retried::NotFound,
            Some(r) if n > 0 => Retried::Retried(from_row(r)?),
            Some(r) => Retried::NotDead(from_row(r)?),
        })
    }

    fn depth(&self) -> Result<Vec<(String, DeliveryState, u64)>, AlertError> {
        let rows = self.with_client(|c| {
            Box::pin(async move {
                let rows = c
                    .query(
                        "SELECT sink, state, COUNT(*)::BIGINT FROM notify_outbox
                         GROUP BY sink, state",
                        &[],
                    )
                    .await?;
                rows.iter()
                    .map(|r| {
                        Ok((
                            r.try_get::<_, String>(0)?,
                            r.try_get::<_, String>(1)?,
                            r.try_get::<_, i64>(2)?,
                        ))
                    })
                    .collect::<Result<Vec<_>, tokio_postgres::Error>>()
            })
        })?;
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
