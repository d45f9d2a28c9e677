//! What is recorded after a verdict: alerts (durable, before the answer), metrics, the
//! decision log and Kubernetes Events, for admission reviews ([`admission`]) and for the
//! re-evaluation of running workloads ([`runtime`]).

use chrono::Utc;
use kube::core::admission::Operation;
use vulngate_core::workload::WorkloadKind;
use vulngate_core::{Outcome, RequestContext};

use crate::alerts::{Alert, AlertAction, AlertOrigin, Explanation, Review};
use crate::cluster::events::EventSpec;
use crate::observe::log::{log_decision, log_runtime_alert, operation_name, DecisionLine};
use crate::verdict::Verdict;
use crate::State;

/// The request a review's verdicts belong to, as the records name it.
#[derive(Debug)]
pub(crate) struct Admitted<'a> {
    pub uid: &'a str,
    pub operation: &'a Operation,
    /// The admitted object's kind and name (the context's workload is its top owner).
    pub kind: WorkloadKind,
    pub name: Option<&'a str>,
    pub ctx: &'a RequestContext,
    pub dry_run: bool,
    /// The break-glass annotation's value, when break-glass applies.
    pub break_glass: Option<&'a str>,
    /// Until when the answer may wait for the store (then the alerts go to the journal).
    pub deadline: Option<tokio::time::Instant>,
}

/// What [`admission`] recorded, per verdict (same order).
#[derive(Debug, Default)]
pub(crate) struct Recorded {
    /// The verdict calls for an alert (audit, deny, break-glass).
    pub flagged: Vec<bool>,
    /// Its alert's id, once written.
    pub alert_ids: Vec<Option<String>>,
    /// Every alert called for was written (true when none was).
    pub ok: bool,
}

/// Records a review's verdicts: one alert per audit/deny/break-glass verdict, written before
/// the answer (a failure is logged with the full alerts and leaves `ok` false: the failure
/// policy answers); then one metric and one decision log line per verdict.
pub(crate) async fn admission(
    state: &State,
    req: &Admitted<'_>,
    verdicts: &mut [Verdict],
) -> Recorded {
    let mut recorded = Recorded {
        flagged: Vec::with_capacity(verdicts.len()),
        alert_ids: Vec::with_capacity(verdicts.len()),
        ok: true,
    };
    let mut alerts = Vec::new();
    for v in verdicts.iter_mut() {
        let action = match (req.break_glass, v.decision.decision) {
            (Some(_), _) => Some(AlertAction::BreakGlass),
            (None, Outcome::Deny) => Some(AlertAction::Deny),
            (None, Outcome::Audit) => Some(AlertAction::Audit),
            (None, Outcome::Allow) => None,
        };
        recorded.flagged.push(action.is_some());
        let Some(action) = action else {
            recorded.alert_ids.push(None);
            continue;
        };
        let id = uuid::Uuid::now_v7().to_string();
        recorded.alert_ids.push(Some(id.clone()));
        // The alert takes the verdict's violations and deciding vulnerability (the answer
        // and the decision line after it do not read them): no copy per alert.
        let taken = Taken {
            violations: std::mem::take(&mut v.violations),
            vulnerability: v.decision.vulnerability_detail.take(),
        };
        alerts.push(alert_taking(
            id,
            action,
            v,
            taken,
            req.ctx,
            AlertSubject {
                origin: AlertOrigin::default(),
                kind: req.kind.as_str().to_string(),
                namespace: req.ctx.namespace.clone(),
                name: req.name.map(str::to_string),
                operation: operation_upper(req.operation),
                user: req.ctx.user.clone(),
                request_uid: req.uid.to_string(),
                image: v.decision.image.clone(),
                dry_run: req.dry_run,
                break_glass: req.break_glass.map(str::to_string),
            },
        ));
    }
    // A dry run is decided, answered, counted and logged, but leaves nothing durable
    // (`sideEffects: NoneOnDryRun`): no alert, no id.
    if req.dry_run {
        recorded.alert_ids.iter_mut().for_each(|id| *id = None);
    } else if !alerts.is_empty() {
        recorded.ok = write_alerts(state, req.uid, alerts, req.deadline).await;
    }

    // One structured log line per image decision.
    for (v, id) in verdicts.iter().zip(&recorded.alert_ids) {
        let d = &v.decision;
        state.metrics.decision(d.decision.as_str());
        log_decision(&DecisionLine {
            uid: req.uid,
            operation: operation_name(req.operation),
            cluster: req.ctx.cluster.as_deref(),
            namespace: req.ctx.namespace.as_deref(),
            kind: req.kind.as_str(),
            name: req.name,
            workload_kind: req.ctx.workload_kind.as_deref(),
            workload_name: req.ctx.workload_name.as_deref(),
            user: req.ctx.user.as_deref(),
            image: &d.image,
            digest: d.digest.as_deref(),
            decision: d.decision.as_str(),
            rule: d.rule.as_deref(),
            vulnerability: d.vulnerability.as_deref(),
            reason: &d.reason,
            rules_version: &d.rules_version,
            dry_run: req.dry_run,
            break_glass: req.break_glass.is_some(),
            alert_id: id.as_deref(),
            lookup_warnings: (!v.warnings.is_empty()).then_some(v.warnings.len()),
        });
    }
    recorded
}

/// Writes `alerts` to the store, waiting for it until `deadline` at most (then the journal;
/// without a deadline, `alertWriter.writeTimeout`); counts them; on failure logs them whole
/// (not silently lost).
async fn write_alerts(
    state: &State,
    uid: &str,
    alerts: Vec<Alert>,
    deadline: Option<tokio::time::Instant>,
) -> bool {
    let alerts: std::sync::Arc<[Alert]> = alerts.into();
    let written = match deadline {
        Some(d) => state
            .alerts
            .record_within(alerts.clone(), d)
            .await
            .map(|_| ()),
        None => state.alerts.record_async(alerts.clone()).await,
    };
    match written {
        Ok(()) => {
            for a in alerts.iter() {
                state.metrics.alert_written(a.action.as_str());
            }
            true
        }
        Err(e) => {
            state.metrics.alert_failure();
            tracing::error!(
                uid = %uid, error = %e,
                alerts = %serde_json::to_string(&alerts[..]).unwrap_or_default(),
                "cannot record alerts; applying the failure policy"
            );
            false
        }
    }
}

/// A review whose object cannot be read, decided by the failure policy.
#[derive(Debug)]
pub(crate) struct Unreadable {
    pub uid: String,
    pub operation: Operation,
    pub kind: String,
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub user: Option<String>,
    pub dry_run: bool,
    /// The answer's message (what cannot be read).
    pub reason: String,
    /// Whether the failure policy allowed it (recorded as an audit; else as a deny).
    pub allowed: bool,
}

/// Records the alert of a failure-policy decision on an unreadable object (none for a dry
/// run). False when the store cannot take it.
pub(crate) async fn unreadable(state: &State, u: Unreadable) -> bool {
    if u.dry_run {
        return true;
    }
    let (action, decision) = if u.allowed {
        (AlertAction::Audit, Outcome::Audit)
    } else {
        (AlertAction::Deny, Outcome::Deny)
    };
    let alert = Alert {
        id: uuid::Uuid::now_v7().to_string(),
        time: Utc::now(),
        action,
        origin: AlertOrigin::default(),
        decision,
        cluster: state.config.cluster_name.clone(),
        namespace: u.namespace,
        kind: u.kind,
        name: u.name,
        operation: operation_upper(&u.operation),
        user: u.user,
        request_uid: u.uid.clone(),
        image: String::new(),
        digest: None,
        rule: None,
        rule_snapshot: None,
        rules_version: Some(state.rules.current().version().to_string()),
        vulnerability: None,
        counts: Default::default(),
        report: None,
        unscanned: None,
        reason: u.reason,
        dry_run: false,
        break_glass: None,
        workload_kind: None,
        workload_name: None,
        count: 1,
        last_seen: None,
        kinds: Vec::new(),
        explanation: Explanation::default(),
        review: Review::default(),
    };
    write_alerts(state, &u.uid, vec![alert], None).await
}

/// Queues a Kubernetes Event (never blocks: the answer is already decided).
pub(crate) fn event(state: &State, spec: EventSpec) {
    if let Some(rec) = &state.events {
        rec.record(spec);
    }
}

/// Records the runtime alerts of a re-evaluation (then their log lines and Events). Fails
/// when the store cannot take them; the caller retries at its next scan.
pub(crate) async fn runtime(
    state: &State,
    alerts: impl IntoIterator<Item = (Alert, EventSpec)>,
) -> Result<(), crate::alerts::AlertError> {
    let (batch, events): (Vec<Alert>, Vec<EventSpec>) = alerts.into_iter().unzip();
    if batch.is_empty() {
        return Ok(());
    }
    let batch: std::sync::Arc<[Alert]> = batch.into();
    match state.alerts.record_async(batch.clone()).await {
        Ok(()) => {
            for (a, ev) in batch.iter().zip(events) {
                state.metrics.alert_written(a.action.as_str());
                log_runtime_alert(a);
                event(state, ev);
            }
            Ok(())
        }
        Err(e) => {
            state.metrics.alert_failure();
            Err(e)
        }
    }
}

/// Who and what an alert is about, besides its verdict.
#[derive(Debug)]
pub(crate) struct AlertSubject {
    pub origin: AlertOrigin,
    pub kind: String,
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub operation: String,
    pub user: Option<String>,
    pub request_uid: String,
    /// The image as the workload names it.
    pub image: String,
    pub dry_run: bool,
    pub break_glass: Option<String>,
}

/// The alert for a verdict (admission or runtime: one shape).
pub(crate) fn alert(
    id: String,
    action: AlertAction,
    v: &Verdict,
    ctx: &RequestContext,
    s: AlertSubject,
) -> Alert {
    let taken = Taken {
        violations: v.violations.clone(),
        vulnerability: v.decision.vulnerability_detail.clone(),
    };
    alert_taking(id, action, v, taken, ctx, s)
}

/// What an alert owns of its verdict: moved out of it ([`admission`]) or copied ([`alert`]).
struct Taken {
    violations: Vec<vulngate_core::engine::Violation>,
    vulnerability: Option<vulngate_core::engine::Vulnerability>,
}

fn alert_taking(
    id: String,
    action: AlertAction,
    v: &Verdict,
    taken: Taken,
    ctx: &RequestContext,
    s: AlertSubject,
) -> Alert {
    let d = &v.decision;
    let kinds = vec![s.kind.clone()];
    Alert {
        id,
        time: Utc::now(),
        action,
        origin: s.origin,
        decision: d.decision,
        cluster: ctx.cluster.clone(),
        namespace: s.namespace,
        kind: s.kind,
        name: s.name,
        operation: s.operation,
        user: s.user,
        request_uid: s.request_uid,
        image: s.image,
        digest: d.digest.clone(),
        rule: d.rule.clone(),
        rule_snapshot: v.rule_snapshot.clone(),
        rules_version: Some(d.rules_version.clone()),
        vulnerability: taken.vulnerability,
        counts: d.counts,
        report: d.report.clone(),
        unscanned: d.unscanned.clone(),
        reason: d.reason.clone(),
        dry_run: s.dry_run,
        break_glass: s.break_glass,
        workload_kind: ctx.workload_kind.clone(),
        workload_name: ctx.workload_name.clone(),
        count: 1,
        last_seen: None,
        kinds,
        explanation: Explanation {
            violations: taken.violations,
            violations_total: v.violations_total,
            also_fired: d.also_fired.clone(),
        },
        review: Review::default(),
    }
}

/// What an admission review's records are about, when its top workload is another object
/// than the one admitted: `Deployment shop/web (admitted: Pod shop/web-5d9f7c-abcde)`
/// (`vulngate_core::owner::subject`, the one wording of answers, Events and alerts).
pub(crate) fn admitted_subject(
    kind: WorkloadKind,
    name: Option<&str>,
    ctx: &RequestContext,
) -> Option<String> {
    vulngate_core::owner::subject(
        ctx.namespace.as_deref(),
        (
            ctx.workload_kind.as_deref().unwrap_or(kind.as_str()),
            ctx.workload_name.as_deref()?,
        ),
        (kind.as_str(), name),
        vulngate_core::owner::Seen::Admitted,
    )
}

/// The operation as alerts store it (`CREATE`).
pub(crate) fn operation_upper(op: &Operation) -> String {
    match op {
        Operation::Create => "CREATE",
        Operation::Update => "UPDATE",
        Operation::Delete => "DELETE",
        Operation::Connect => "CONNECT",
    }
    .to_string()
}
