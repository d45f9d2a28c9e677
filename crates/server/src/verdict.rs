//! Lookup -> evaluate -> [`Verdict`]: the one place where an image's findings are looked up
//! and handed to the engine, for admission reviews ([`lookup_images`], [`Judge::verdict`])
//! and for the re-evaluation of running workloads (`cluster::rescan`), so that the two
//! cannot disagree. The engine (`vulngate_core::evaluate`) is called here only, in
//! [`Judge::engine`].

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::time::Instant;
use vulngate_core::engine::SeverityCounts;
use vulngate_core::{
    evaluate_with, violations, AnalyzedReport, Catalogs, Decision, ImageRef, Outcome, Precedence,
    RequestContext, RuleSet, Subject, UnscannedReason, Violation,
};

use crate::cache::{Analyzed, PlatformAnalyzed};
use crate::config::FailurePolicy;
use crate::source::SourceError;
use crate::State;

/// Why an image's findings are missing after the lookup.
#[derive(Debug, Clone, thiserror::Error)]
pub(crate) enum LookupFailure {
    #[error("{0}")]
    Source(SourceError),
    /// The lookup did not finish before the review's deadline.
    #[error("{}", Deadline::describe(.0, "findings lookup"))]
    Deadline(Deadline),
    /// The deadline passed while waiting for a registry lookup slot (the step, naming the
    /// limit).
    #[error("{}", Deadline::describe(.0, .1))]
    Waiting(Deadline, String),
    #[error("{0}")]
    InvalidReference(String),
}

/// A review's deadline: when the lookups must be done, and how it was set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Deadline {
    pub at: Instant,
    /// What the lookups get (`timeout` minus `margin`, or half the timeout).
    pub budget: Duration,
    /// The webhook timeout (`?timeout=`, else `defaultTimeout`).
    pub timeout: Duration,
    /// `deadlineMargin`.
    pub margin: Duration,
}

impl Deadline {
    /// `<step> did not finish before the admission deadline of 9s (webhook timeout 10s minus
    /// the deadline margin 1s)`: the step and the configured figures, never an elapsed 0ns.
    pub fn describe(&self, step: &str) -> String {
        let how = if self.timeout > self.margin {
            format!(
                "webhook timeout {:?} minus the deadline margin {:?}",
                self.timeout, self.margin
            )
        } else {
            format!(
                "half the webhook timeout {:?}, as the deadline margin {:?} does not fit in it",
                self.timeout, self.margin
            )
        };
        format!(
            "{step} did not finish before the admission deadline of {:?} ({how})",
            self.budget
        )
    }
}

impl LookupFailure {
    /// What may be said to the API server (no internals).
    pub fn public(&self) -> String {
        match self {
            LookupFailure::Source(_) => "findings source unavailable".into(),
            LookupFailure::Deadline(d) => d.describe("findings lookup"),
            LookupFailure::Waiting(d, step) => d.describe(step),
            LookupFailure::InvalidReference(_) => "image reference cannot be parsed".into(),
        }
    }

    /// The detail, for the log only.
    pub fn detail(&self) -> String {
        match self {
            LookupFailure::Source(e) => e.0.clone(),
            LookupFailure::Deadline(d) => d.describe("findings lookup"),
            LookupFailure::Waiting(d, step) => d.describe(step),
            LookupFailure::InvalidReference(e) => e.clone(),
        }
    }

    pub fn cause(&self) -> &'static str {
        match self {
            LookupFailure::Source(_) => "error",
            LookupFailure::Deadline(_) | LookupFailure::Waiting(..) => "deadline",
            LookupFailure::InvalidReference(_) => "invalid-reference",
        }
    }
}

/// An image's lookup: its findings, or why there are none.
pub(crate) type Lookup = Result<Arc<Analyzed>, LookupFailure>;

/// The lookup of each image of a review (same order), and its parsed reference.
pub(crate) type Lookups = Vec<(Option<Lookup>, Option<ImageRef>)>;

/// One image's verdict: the engine's decision, the snapshot of the rule that decided it (as
/// the rule set had it when evaluated; for the alert), and the lookup failure the decision
/// was taken on, if any.
#[derive(Debug)]
pub(crate) struct Verdict {
    pub decision: Decision,
    pub rule_snapshot: Option<Arc<serde_json::Value>>,
    pub failure: Option<LookupFailure>,
    /// The registry's warnings about this image's lookup (reports dropped, unverified or
    /// merged), for the log, the metric and the response warnings.
    pub warnings: Vec<String>,
    /// Every vulnerability that fulfilled the deciding condition (at most
    /// `Judge::max_violations`), and how many did.
    pub violations: Vec<Violation>,
    pub violations_total: usize,
}

/// What every verdict of one review (or one scan) is judged with.
#[derive(Debug)]
pub(crate) struct Judge<'a> {
    pub rules: &'a RuleSet,
    pub precedence: Precedence,
    pub ctx: &'a RequestContext,
    pub now: DateTime<Utc>,
    /// What a failed lookup becomes (re-evaluation: `Unscanned`, whatever is configured).
    pub policy: FailurePolicy,
    /// The exploitation catalogs (KEV, EPSS) as they are now.
    pub catalogs: &'a Catalogs,
    /// Whether the image is pinned to the digest the lookup resolved before evaluation
    /// (admission; re-evaluation already evaluates the digest a container runs).
    pub pin_resolved: bool,
    /// Most violations a verdict lists (`alertWriter.maxViolations`).
    pub max_violations: usize,
}

impl Judge<'_> {
    /// The verdict for `image` (as written) given its lookup and parsed reference.
    pub fn verdict(&self, image: &str, lookup: Option<Lookup>, r: Option<ImageRef>) -> Verdict {
        let lookup =
            lookup.unwrap_or_else(|| Err(LookupFailure::Source(SourceError("task failed".into()))));
        let mut warnings = Vec::new();
        let mut listed = (Vec::new(), 0);
        let (decision, failure) = match (lookup, r) {
            (Ok(a), Some(mut pinned)) => {
                // Logged once, when the lookup was made (`cache::fetch_with`); each decision
                // line counts them (`lookup_warnings`), each answer carries them.
                warnings.clone_from(&a.warnings);
                // Pinned to the digest the lookup resolved (in place, not copied).
                if self.pin_resolved {
                    if let Some(d) = &a.digest {
                        pinned.set_digest(d);
                    }
                }
                if a.platforms.is_empty() {
                    let decision = self.engine(&pinned, subject_of(&a.subject));
                    if let Ok(report) = &a.subject {
                        // Explains the decision taken above; never changes it.
                        listed = violations(
                            self.rules,
                            &decision,
                            self.ctx,
                            &pinned,
                            report,
                            self.now,
                            self.catalogs,
                            self.max_violations,
                        );
                    }
                    (decision, None)
                } else {
                    // Per-platform reports: the worst platform decides (its violations are
                    // not listed yet).
                    (self.worst_platform(&pinned, &a.platforms), None)
                }
            }
            (res, r) => {
                let failure = match res {
                    Err(f) => f,
                    Ok(_) => LookupFailure::InvalidReference("unparsed".into()),
                };
                (self.failed(image, r.as_ref(), &failure), Some(failure))
            }
        };
        Verdict {
            rule_snapshot: rule_snapshot(self.rules, &decision),
            decision,
            failure,
            warnings,
            violations: listed.0,
            violations_total: listed.1,
        }
    }

    /// `platform: all` on a multi-arch image: every platform judged (a platform without a
    /// report is unscanned), the worst decision kept (the first of equals), its reason naming
    /// the platform.
    fn worst_platform(&self, image: &ImageRef, platforms: &[PlatformAnalyzed]) -> Decision {
        let mut worst: Option<(Decision, &str)> = None;
        for p in platforms {
            let d = self.engine(image, subject_of(&p.subject));
            if worst.as_ref().is_none_or(|(w, _)| d.decision > w.decision) {
                worst = Some((d, &p.platform));
            }
        }
        match worst {
            Some((mut d, platform)) => {
                d.reason = format!("platform {platform}: {}", d.reason);
                d
            }
            None => self.engine(image, Subject::Unscanned(&UnscannedReason::NoReport)),
        }
    }

    /// The engine, called here only.
    fn engine(&self, image: &ImageRef, subject: Subject<'_>) -> Decision {
        evaluate_with(
            self.rules,
            self.precedence,
            self.ctx,
            image,
            subject,
            self.now,
            self.catalogs,
        )
    }

    /// The decision for an image whose findings could not be obtained.
    fn failed(&self, img: &str, r: Option<&ImageRef>, failure: &LookupFailure) -> Decision {
        let reason = UnscannedReason::RegistryUnavailable(failure.public());
        if let (FailurePolicy::Unscanned, Some(r)) = (self.policy, r) {
            return self.engine(r, Subject::Unscanned(&reason));
        }
        let (outcome, text) = match self.policy {
            FailurePolicy::Allow => (
                Outcome::Allow,
                format!("{}; allowed by the failure policy", failure.public()),
            ),
            // `unscanned` with a reference that cannot be parsed: nothing to evaluate.
            FailurePolicy::Deny | FailurePolicy::Unscanned => (Outcome::Deny, failure.public()),
        };
        Decision {
            image: img.to_string(),
            digest: r.and_then(|r| r.digest.clone()),
            decision: outcome,
            rule: None,
            vulnerability: None,
            reason: text,
            condition: None,
            vulnerability_detail: None,
            unscanned: Some(reason),
            counts: SeverityCounts::default(),
            report: None,
            suppressed: Vec::new(),
            also_fired: Vec::new(),
            rules_version: self.rules.version().to_string(),
        }
    }
}

/// The engine's view of an image's findings.
fn subject_of(s: &Result<Arc<AnalyzedReport>, UnscannedReason>) -> Subject<'_> {
    match s {
        Ok(report) => Subject::Report(report),
        Err(reason) => Subject::Unscanned(reason),
    }
}

/// The deciding rule as the rule set that decided has it (none for an allow); shared, not
/// rebuilt per decision (`RuleSet::snapshot`).
fn rule_snapshot(rules: &RuleSet, d: &Decision) -> Option<Arc<serde_json::Value>> {
    rules.snapshot(d.rule.as_deref()?)
}

/// Looks every image up concurrently, under `deadline`. Cached images are answered in
/// place; only misses get a task (a spawn wakes another worker: tens of microseconds), which
/// waits for a lookup slot of the review and one shared by all reviews
/// (`maxConcurrentLookupsPerRequest`, `maxConcurrentLookups`) until the deadline.
pub(crate) async fn lookup_images(
    state: &State,
    uid: &str,
    images: &[String],
    deadline: Deadline,
    credentials: Option<Arc<vulngate_registry::Credentials>>,
) -> Lookups {
    let mut out: Lookups = Vec::with_capacity(images.len());
    let mut tasks = tokio::task::JoinSet::new();
    let mut review_slots = None;
    for (i, img) in images.iter().enumerate() {
        match ImageRef::parse(img) {
            Ok(r) => {
                // Boxed: moka's lookup future is about 800 bytes, which would otherwise sit in
                // every request's future (see `admission::Job`).
                if let Some(hit) = Box::pin(state.cache.get_cached(&r)).await {
                    out.push((Some(Ok(hit)), Some(r)));
                    continue;
                }
                let cache = state.cache.clone();
                let credentials = credentials.clone();
                let key = r.clone();
                let review = review_slots
                    .get_or_insert_with(|| state.lookup_slots.review())
                    .clone();
                let slots = state.lookup_slots.clone();
                tasks.spawn(async move {
                    let _held = match slots.acquire(review, deadline.at).await {
                        Ok(held) => held,
                        Err(step) => return (i, Err(LookupFailure::Waiting(deadline, step))),
                    };
                    let res = match tokio::time::timeout_at(
                        deadline.at,
                        cache.get_with_credentials(&key, credentials),
                    )
                    .await
                    {
                        Ok(Ok(a)) => Ok(a),
                        Ok(Err(e)) => Err(LookupFailure::Source(e)),
                        Err(_) => Err(LookupFailure::Deadline(deadline)),
                    };
                    (i, res)
                });
                out.push((None, Some(r)));
            }
            Err(e) => out.push((
                Some(Err(LookupFailure::InvalidReference(e.to_string()))),
                None,
            )),
        }
    }
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok((i, res)) => out[i].0 = Some(res),
            Err(e) => tracing::error!(uid = %uid, error = %e, "lookup task failed"),
        }
    }
    out
}
