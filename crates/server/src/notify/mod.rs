//! Notifications (issue 19 item 4): alerts sent to webhook, CloudEvents and Slack sinks
//! (`notify:` in vulngate.yaml).
//!
//! Delivery never delays an admission answer: the alert store writes one outbox entry per
//! (new alert, matching sink) in the alert's own transaction ([`crate::alerts::outbox`]),
//! and the [`Notifier`], a background task, delivers them: at least once, with capped
//! exponential backoff, an entry dead-lettered after `maxAttempts` (visible and retried
//! through the review API). Each sink sends only to its configured URL (no redirects, no
//! proxy); secrets and URLs' paths are never logged.

pub mod config;
pub mod metrics;
pub mod payload;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio::sync::Semaphore;

pub use config::{NotifyConfig, SinkConfig, SinkKind, SinkUrl};
pub use metrics::NotifyMetrics;
use payload::Secret;

use crate::alerts::outbox::{DeliveryState, Notification};
use crate::alerts::{AlertError, AlertStore};
use crate::Error;

/// Longest secret file read.
const MAX_SECRET_BYTES: u64 = 4096;
/// Extra time an attempt's claim lasts beyond its timeouts.
const LEASE_MARGIN: Duration = Duration::from_secs(5);

/// One configured sink, its secret read.
#[derive(Debug)]
struct Sink {
    config: SinkConfig,
    secret: Option<Secret>,
    source: String,
}

/// The delivery task's state.
#[derive(Debug)]
pub struct Notifier {
    config: NotifyConfig,
    sinks: HashMap<String, Sink>,
    client: reqwest::Client,
    store: AlertStore,
    metrics: NotifyMetrics,
}

fn read_secret(path: &std::path::Path) -> Result<Secret, String> {
    use std::io::Read;
    let file = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut buf = Vec::new();
    file.take(MAX_SECRET_BYTES + 1)
        .read_to_end(&mut buf)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if buf.len() as u64 > MAX_SECRET_BYTES {
        return Err(format!(
            "{}: larger than {MAX_SECRET_BYTES} bytes",
            path.display()
        ));
    }
    while buf.last().is_some_and(|b| matches!(b, b'\n' | b'\r')) {
        buf.pop();
    }
    if buf.len() < 16 {
        return Err(format!(
            "{}: the secret must be at least 16 bytes",
            path.display()
        ));
    }
    Ok(Secret(buf))
}

impl Notifier {
    /// Reads the sinks' secret files and builds the HTTP client. `store` must keep an
    /// outbox (SQLite or PostgreSQL).
    pub fn load(
        config: &NotifyConfig,
        store: AlertStore,
        metrics: NotifyMetrics,
        cluster: Option<&str>,
    ) -> Result<Notifier, Error> {
        let cfg_err = |location: String, message: String| Error::Config { location, message };
        if store.outbox().is_none() {
            return Err(cfg_err(
                "notify".into(),
                "this alert store keeps no notification outbox (use sqlite or postgres)".into(),
            ));
        }
        let mut sinks = HashMap::new();
        for (i, s) in config.sinks.iter().enumerate() {
            let secret = match &s.secret_file {
                Some(p) => Some(
                    read_secret(p)
                        .map_err(|m| cfg_err(format!("notify.sinks[{i}].secretFile"), m))?,
                ),
                None => None,
            };
            let url = &s.url.0;
            let host = url.host_str().unwrap_or_default();
            let loopback = host == "localhost"
                || host
                    .trim_start_matches('[')
                    .trim_end_matches(']')
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|a| a.is_loopback());
            if url.scheme() == "http" && !loopback {
                tracing::warn!(sink = %s.name, url = %s.url, "notification sink over plain HTTP: alerts (and signatures) travel unencrypted");
            }
            let source = s.source.clone().unwrap_or_else(|| match cluster {
                Some(c) => format!("/vulngate/{c}"),
                None => "/vulngate".to_string(),
            });
            sinks.insert(
                s.name.clone(),
                Sink {
                    config: s.clone(),
                    secret,
                    source,
                },
            );
        }
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .timeout(config.timeout)
            .connect_timeout(config.connect_timeout)
            .user_agent(concat!("vulngate/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| cfg_err("notify".into(), format!("HTTP client: {e}")))?;
        Ok(Notifier {
            config: config.clone(),
            sinks,
            client,
            store,
            metrics,
        })
    }

    /// Runs the delivery loop until the task is aborted. At most `batchSize` attempts run at
    /// once, each in its own task: a sink that never answers holds one slot until
    /// `timeout`, not the other sinks' deliveries.
    pub fn spawn(self: Arc<Self>) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            tracing::info!(sinks = self.sinks.len(), "notification delivery started");
            let slots = Arc::new(Semaphore::new(self.config.batch_size));
            loop {
                let free = slots.available_permits();
                let more = free > 0
                    && match self.clone().round(&slots, free).await {
                        Ok(n) => n == free,
                        Err(e) => {
                            tracing::warn!(error = %e, "notification outbox unavailable");
                            false
                        }
                    };
                self.update_depth().await;
                if !more {
                    tokio::time::sleep(self.config.poll_interval).await;
                }
            }
        })
    }

    /// Claims up to `limit` due entries and starts an attempt of each; returns how many.
    async fn round(
        self: Arc<Self>,
        slots: &Arc<Semaphore>,
        limit: usize,
    ) -> Result<usize, AlertError> {
        let now = Utc::now();
        let lease = self.config.timeout + self.config.connect_timeout + LEASE_MARGIN;
        let until = now + chrono::Duration::from_std(lease).unwrap_or(chrono::Duration::MAX);
        let sinks: Vec<String> = self.sinks.keys().cloned().collect();
        let claimed = self
            .blocking(move |s| match s.outbox() {
                Some(o) => o.claim(now, until, limit, &sinks),
                None => Ok(Vec::new()),
            })
            .await?;
        let n = claimed.len();
        for c in claimed {
            let Ok(permit) = slots.clone().acquire_owned().await else {
                break;
            };
            let me = self.clone();
            tokio::spawn(async move {
                me.attempt(c).await;
                drop(permit);
            });
        }
        Ok(n)
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&AlertStore) -> Result<T, AlertError> + Send + 'static,
    ) -> Result<T, AlertError> {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || f(&store))
            .await
            .map_err(|e| AlertError::Other(format!("outbox task failed: {e}")))?
    }

    /// Sends `n` and records the outcome in the outbox, then in the metrics (so that a metric
    /// seen implies the outbox state behind it).
    async fn attempt(&self, n: Notification) {
        let outcome = self.send(&n).await;
        let (id, sink) = (n.id.clone(), n.sink.clone());
        let (res, counted): (_, &[Count]) = match outcome {
            Ok(()) => {
                tracing::info!(sink = %sink, notification = %id, alert = %n.alert_id, attempts = n.attempts, "notification delivered");
                let res = self
                    .blocking(move |s| match s.outbox() {
                        Some(o) => o.delivered(&id),
                        None => Ok(()),
                    })
                    .await;
                (res, &[NotifyMetrics::delivered])
            }
            Err(Failure { error, permanent }) => {
                let dead = permanent || n.attempts >= self.config.max_attempts;
                let retry_at = (!dead).then(|| {
                    Utc::now()
                        + chrono::Duration::from_std(self.config.backoff(n.attempts))
                            .unwrap_or(chrono::Duration::MAX)
                });
                if dead {
                    tracing::warn!(sink = %sink, notification = %id, alert = %n.alert_id, attempts = n.attempts, error = %error, "notification dead-lettered");
                } else {
                    tracing::info!(sink = %sink, notification = %id, alert = %n.alert_id, attempts = n.attempts, error = %error, "notification attempt failed; will retry");
                }
                let res = self
                    .blocking(move |s| match s.outbox() {
                        Some(o) => o.failed(&id, retry_at, &error),
                        None => Ok(()),
                    })
                    .await;
                if dead {
                    (res, &[NotifyMetrics::failed, NotifyMetrics::dead])
                } else {
                    (res, &[NotifyMetrics::failed])
                }
            }
        };
        for count in counted {
            count(&self.metrics, &sink);
        }
        if let Err(e) = res {
            // The claim expires and the entry is attempted again: at least once.
            tracing::warn!(sink = %n.sink, notification = %n.id, error = %e, "cannot update the notification outbox");
        }
    }

    async fn send(&self, n: &Notification) -> Result<(), Failure> {
        let Some(sink) = self.sinks.get(&n.sink) else {
            return Err(Failure::permanent("the sink is no longer configured"));
        };
        let alert_id = n.alert_id.clone();
        let alert = match self.blocking(move |s| s.get(&alert_id)).await {
            Ok(Some(a)) => a,
            Ok(None) => return Err(Failure::permanent("the alert is no longer stored")),
            Err(e) => return Err(Failure::retry(format!("alert store: {e}"))),
        };
        let req = payload::build(
            &payload::Sink {
                kind: sink.config.kind,
                secret: sink.secret.as_ref(),
                source: &sink.source,
            },
            n,
            &alert,
            Utc::now(),
        );
        if req.body.len() > self.config.max_body_bytes {
            return Err(Failure::permanent(format!(
                "body of {} bytes exceeds notify.maxBodyBytes",
                req.body.len()
            )));
        }
        let mut rb = self
            .client
            .post(sink.config.url.0.clone())
            .header(reqwest::header::CONTENT_TYPE, req.content_type);
        for (k, v) in req.headers {
            rb = rb.header(k, v);
        }
        match rb.body(req.body).send().await {
            Ok(r) if r.status().is_success() => Ok(()),
            Ok(r) => Err(Failure::retry(format!("HTTP {}", r.status().as_u16()))),
            Err(e) => Err(Failure::retry(describe(e, &sink.config.url))),
        }
    }

    async fn update_depth(&self) {
        let depth = self
            .blocking(|s| match s.outbox() {
                Some(o) => o.depth(),
                None => Ok(Vec::new()),
            })
            .await;
        let Ok(depth) = depth else { return };
        for name in self.sinks.keys() {
            for state in [DeliveryState::Pending, DeliveryState::Dead] {
                let n = depth
                    .iter()
                    .filter(|(s, st, _)| s == name && *st == state)
                    .map(|(_, _, n)| *n)
                    .sum();
                self.metrics.set_depth(name, state.as_str(), n);
            }
        }
    }
}

/// A per-sink counter of [`NotifyMetrics`].
type Count = fn(&NotifyMetrics, &str);

/// Why an attempt failed; `permanent`: dead-lettered at once.
#[derive(Debug)]
struct Failure {
    error: String,
    permanent: bool,
}

impl Failure {
    fn retry(error: impl Into<String>) -> Failure {
        Failure {
            error: error.into(),
            permanent: false,
        }
    }

    fn permanent(error: impl Into<String>) -> Failure {
        Failure {
            error: error.into(),
            permanent: true,
        }
    }
}

/// A transport error, its causes, never its URL (a Slack URL's path is a secret).
fn describe(e: reqwest::Error, url: &SinkUrl) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "cannot connect"
    } else {
        "request failed"
    };
    let e = e.without_url();
    let mut msg = format!("{kind}: {e}");
    let mut cause = std::error::Error::source(&e);
    while let Some(c) = cause {
        msg.push_str(": ");
        msg.push_str(&c.to_string());
        cause = c.source();
    }
    let full = url.0.as_str();
    let mut msg = msg.replace(full, &url.redacted());
    if let Some(path) = Some(url.0.path()).filter(|p| p.len() > 1) {
        msg = msg.replace(path, "/…");
    }
    msg.chars().take(300).collect()
}
