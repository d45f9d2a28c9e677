//! The review side of the Kubernetes store: an object's `status.review` read into the alert
//! (state and history, as the SQL stores give them), a change of state through the review
//! API (the transition checked, the history appended, conflicts retried), the counts by
//! state, and the filters a label selector cannot say (state, workload, CVE, the cursor).

use kube::api::PostParams;

use super::{
    api_code, backoff, kube_err, merge_status, object_alert, push_history, spec_alert, AlertObject,
    AlertObjectStatus, Inner, Review as ObjectReview, ReviewEntry, ReviewState as ObjectState,
    MAX_CONFLICT_RETRIES,
};
use crate::alerts::{
    vuln_ids, Alert, AlertError, AlertFilter, Review, ReviewChange, ReviewEvent, ReviewState,
};

fn to_alert_state(s: ObjectState) -> ReviewState {
    match s {
        ObjectState::Open => ReviewState::Open,
        ObjectState::Acknowledged => ReviewState::Acknowledged,
        ObjectState::Resolved => ReviewState::Resolved,
    }
}

fn to_object_state(s: ReviewState) -> ObjectState {
    match s {
        ReviewState::Open => ObjectState::Open,
        ReviewState::Acknowledged => ObjectState::Acknowledged,
        ReviewState::Resolved => ObjectState::Resolved,
    }
}

/// The review an object's status holds, as the alert carries it: the state, and each step
/// after the first (the object's history starts with "open" at first sight) as a change
/// from the state before it.
pub(super) fn alert_review(status: Option<&AlertObjectStatus>) -> Review {
    let Some(r) = status.and_then(|s| s.review.as_ref()) else {
        return Review::default();
    };
    let mut history = Vec::with_capacity(r.history.len());
    let mut from = ReviewState::Open;
    for (i, e) in r.history.iter().enumerate() {
        let to = to_alert_state(e.state);
        if i == 0 && to == ReviewState::Open && e.by.is_none() {
            continue; // the object's creation, not a review
        }
        history.push(ReviewEvent {
            time: e.at,
            by: e.by.clone().unwrap_or_default(),
            from,
            to,
            comment: e.note.clone().unwrap_or_default(),
        });
        from = to;
    }
    Review {
        state: to_alert_state(r.state),
        history,
    }
}

/// Whether `a` passes the filters of `f` that the object list's label selector does not
/// apply (and again those it does).
pub(super) fn matches_filter(a: &Alert, f: &AlertFilter) -> bool {
    f.since.is_none_or(|t| a.time >= t)
        && f.action.is_none_or(|x| a.action == x)
        && f.origin.is_none_or(|x| a.origin == x)
        && f.namespace
            .as_deref()
            .is_none_or(|n| a.namespace.as_deref() == Some(n))
        && f.rule
            .as_deref()
            .is_none_or(|r| a.rule.as_deref() == Some(r))
        && f.image.as_deref().is_none_or(|i| a.image.contains(i))
        && f.workload
            .as_deref()
            .is_none_or(|w| a.name.as_deref() == Some(w))
        && f.cve.as_deref().is_none_or(|c| vuln_ids(a).contains(&c))
        && f.state.is_none_or(|s| a.review.state == s)
        && f.after
            .as_ref()
            .is_none_or(|c| (a.time, a.id.as_str()) < (c.time, c.id.as_str()))
}

impl Inner {
    /// Applies `change` to the review of the object that holds alert `id` (conflicting
    /// writes read the object again and retry); the stored object, or None when there is no
    /// such alert.
    pub(super) async fn change_review(
        &self,
        id: &str,
        change: impl Fn(&mut ObjectReview) -> Result<(), AlertError>,
    ) -> Result<Option<AlertObject>, AlertError> {
        for attempt in 1..=MAX_CONFLICT_RETRIES {
            let Some(mut obj) = self.find(id).await? else {
                return Ok(None);
            };
            let ns = obj.metadata.namespace.clone().unwrap_or_default();
            let name = obj.metadata.name.clone().unwrap_or_default();
            let first = spec_alert(&obj)?;
            let mut status = obj.status.clone().unwrap_or_default();
            merge_status(&mut status, &first, &[], false).map_err(|id| {
                kube_err(&self.server, format!("alert {id}: unexpected duplicate"))
            })?;
            let Some(r) = status.review.as_mut() else {
                return Err(kube_err(&self.server, format!("alert {id}: no review")));
            };
            change(r)?;
            obj.status = Some(status);
            match self
                .api(&ns)
                .replace_status(&name, &PostParams::default(), &obj)
                .await
            {
                Ok(stored) => return Ok(Some(stored)),
                Err(e) if api_code(&e) == Some(409) => {
                    tokio::time::sleep(backoff(attempt)).await;
                }
                Err(e) if api_code(&e) == Some(404) => return Ok(None),
                Err(e) => return Err(self.err(&format!("updating alert {ns}/{name}"), e)),
            }
        }
        Err(kube_err(
            &self.server,
            format!("alert {id}: still conflicting after {MAX_CONFLICT_RETRIES} attempts"),
        ))
    }

    /// The review API's change: `change.to` when the current state allows it, with a
    /// history entry; the updated alert, or None when there is no such alert.
    pub(super) async fn review_change(
        &self,
        id: &str,
        change: &ReviewChange,
    ) -> Result<Option<Alert>, AlertError> {
        let stored = self
            .change_review(id, |r| {
                let from = to_alert_state(r.state);
                if !from.can_move_to(change.to) {
                    return Err(AlertError::Transition {
                        id: id.to_string(),
                        from,
                        to: change.to,
                    });
                }
                r.state = to_object_state(change.to);
                push_history(
                    r,
                    ReviewEntry {
                        state: r.state,
                        at: change.time,
                        by: Some(change.by.clone()),
                        note: Some(change.comment.clone()).filter(|c| !c.is_empty()),
                    },
                );
                Ok(())
            })
            .await?;
        stored.as_ref().map(object_alert).transpose()
    }
}

/// How many of `alerts` are in each review state (every state present).
pub(super) fn count_states(alerts: &[Alert]) -> Vec<(ReviewState, u64)> {
    ReviewState::ALL
        .into_iter()
        .map(|s| {
            (
                s,
                alerts.iter().filter(|a| a.review.state == s).count() as u64,
            )
        })
        .collect()
}
