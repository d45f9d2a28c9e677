//! The notification outbox (issue 19 item 4): one entry per (new alert, matching sink),
//! written in the transaction that stores the alert, so that an alert is never stored
//! without its notifications nor notified without being stored. A repeat absorbed by
//! de-duplication (`alerts.dedupWindow`) is not a new alert and adds no entry.
//!
//! The delivery task (`crate::notify`) claims due entries ([`Outbox::claim`]: attempts + 1,
//! leased until the attempt's end), deletes them once delivered, and otherwise schedules the
//! next attempt or marks them `dead` (kept until [`Outbox::retry`]). The SQLite and
//! PostgreSQL stores implement it; the Kubernetes store does not (`notify:` is refused with
//! `store: kubernetes`).

use std::str::FromStr;
use std::sync::{Arc, RwLock};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use vulngate_core::Severity;

use super::{Alert, AlertAction, AlertError};

/// Which alerts one sink is told about: all given filters must match (an empty list matches
/// everything).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub sink: String,
    pub actions: Vec<AlertAction>,
    /// The deciding vulnerability's severity at least this (alerts without one, such as
    /// unscanned images, do not match).
    pub min_severity: Option<Severity>,
    pub namespaces: Vec<String>,
}

impl Route {
    pub fn matches(&self, a: &Alert) -> bool {
        if a.dry_run {
            return false;
        }
        if !self.actions.is_empty() && !self.actions.contains(&a.action) {
            return false;
        }
        if !self.namespaces.is_empty()
            && !a
                .namespace
                .as_ref()
                .is_some_and(|n| self.namespaces.contains(n))
        {
            return false;
        }
        match (self.min_severity, &a.vulnerability) {
            (None, _) => true,
            (Some(min), Some(v)) => v.severity.rank() >= min.rank(),
            (Some(_), None) => false,
        }
    }
}

/// The routes a store applies when it records new alerts (none: no entries written).
#[derive(Debug, Default)]
pub struct Routes(RwLock<Arc<[Route]>>);

impl Routes {
    pub fn set(&self, routes: Vec<Route>) {
        if let Ok(mut r) = self.0.write() {
            *r = routes.into();
        }
    }

    /// The sinks `a` goes to.
    pub fn sinks_for(&self, a: &Alert) -> Vec<String> {
        let routes = match self.0.read() {
            Ok(r) => r.clone(),
            Err(_) => return Vec::new(),
        };
        routes
            .iter()
            .filter(|r| r.matches(a))
            .map(|r| r.sink.clone())
            .collect()
    }
}

/// Where an outbox entry stands (a delivered entry is deleted).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryState {
    /// Waiting for its next attempt (or under way).
    Pending,
    /// Given up after `notify.maxAttempts` attempts: retried only by hand.
    Dead,
}

impl DeliveryState {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryState::Pending => "pending",
            DeliveryState::Dead => "dead",
        }
    }
}

impl FromStr for DeliveryState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "pending" => Ok(DeliveryState::Pending),
            "dead" => Ok(DeliveryState::Dead),
            _ => Err(format!(
                "unknown notification state {s:?} (expected pending or dead)"
            )),
        }
    }
}

/// One outbox entry: an alert to deliver to a sink.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Notification {
    /// UUID v7; also the CloudEvents `id` and the `X-Vulngate-Delivery` header, the same on
    /// every attempt (receivers de-duplicate on it).
    pub id: String,
    pub alert_id: String,
    pub sink: String,
    pub state: DeliveryState,
    /// Attempts started so far.
    pub attempts: u32,
    pub created: DateTime<Utc>,
    /// When the next attempt is due (pending), or when it died (dead).
    pub next_attempt: DateTime<Utc>,
    /// Why the last attempt failed (an HTTP status or a transport error; never a secret).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

/// What [`Outbox::retry`] found.
#[derive(Debug, Clone, PartialEq)]
pub enum Retried {
    NotFound,
    /// The entry is not dead (nothing to do).
    NotDead(Notification),
    Retried(Notification),
}

/// The outbox of a store.
pub trait Outbox: Send + Sync {
    /// The routes applied when alerts are recorded.
    fn routes(&self) -> &Routes;
    /// Takes up to `limit` pending entries of `sinks` due at `now`, oldest due first: each
    /// gets one more attempt and is not due again before `lease_until` (another replica, or
    /// this one after a crash, retries it then). Entries of other sinks are left alone (a
    /// replica not yet configured with a sink, during a rollout, does not take its entries).
    fn claim(
        &self,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: usize,
        sinks: &[String],
    ) -> Result<Vec<Notification>, AlertError>;
    /// The entry was delivered: deleted.
    fn delivered(&self, id: &str) -> Result<(), AlertError>;
    /// The attempt failed: due again at `retry_at`, or dead (`None`).
    fn failed(
        &self,
        id: &str,
        retry_at: Option<DateTime<Utc>>,
        error: &str,
    ) -> Result<(), AlertError>;
    /// Entries, newest first, in `state` and for `sink` when given.
    fn notifications(
        &self,
        state: Option<DeliveryState>,
        sink: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Notification>, AlertError>;
    /// A dead entry becomes pending again, due at `now`, with its attempts reset.
    fn retry(&self, id: &str, now: DateTime<Utc>) -> Result<Retried, AlertError>;
    /// How many entries each (sink, state) holds.
    fn depth(&self) -> Result<Vec<(String, DeliveryState, u64)>, AlertError>;
}

/// A new entry's id.
pub(crate) fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// A stored row read back: (id, alert_id, sink, state, attempts, created, next_at,
/// last_error).
pub(crate) type Row = (
    String,
    String,
    String,
    String,
    i64,
    String,
    String,
    Option<String>,
);

pub(crate) fn from_row(r: Row) -> Result<Notification, AlertError> {
    let (id, alert_id, sink, state, attempts, created, next_at, last_error) = r;
    let corrupt = |message: String| AlertError::Corrupt {
        id: id.clone(),
        message,
    };
    Ok(Notification {
        state: state.parse().map_err(corrupt)?,
        attempts: u32::try_from(attempts.max(0)).unwrap_or(u32::MAX),
        created: super::sqlite::parse_time(&id, &created)?,
        next_attempt: super::sqlite::parse_time(&id, &next_at)?,
        id,
        alert_id,
        sink,
        last_error,
    })
}

/// The columns [`from_row`] reads, in order.
pub(crate) const COLUMNS: &str =
    "id, alert_id, sink, state, attempts, created, next_at, last_error";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_filter_by_action_namespace_and_severity() {
        let r = Route {
            sink: "s".into(),
            actions: vec![AlertAction::Deny],
            min_severity: Some(Severity::High),
            namespaces: vec!["prod".into()],
        };
        let mut a: Alert = serde_json::from_value(serde_json::json!({
            "id": "a", "time": "2026-01-01T00:00:00Z", "action": "deny", "decision": "deny",
            "namespace": "prod", "kind": "Pod", "operation": "CREATE", "requestUid": "u",
            "image": "i", "reason": "r", "dryRun": false,
            "counts": vulngate_core::engine::SeverityCounts::default(),
            "vulnerability": {"id": "CVE-1", "ids": ["CVE-1"], "severity": "critical",
                              "fix_available": false, "packages": []}
        }))
        .unwrap();
        assert!(r.matches(&a));
        a.namespace = Some("dev".into());
        assert!(!r.matches(&a));
        a.namespace = Some("prod".into());
        a.action = AlertAction::Audit;
        assert!(!r.matches(&a));
        a.action = AlertAction::Deny;
        a.vulnerability.as_mut().unwrap().severity = Severity::Medium;
        assert!(!r.matches(&a));
        a.vulnerability = None;
        assert!(!r.matches(&a));
    }
}
