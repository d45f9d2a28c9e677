//! The AdmissionResponse: [`Answer`], and how the verdicts of a review become one
//! ([`respond`]).
//!
//! A thin serialiser rather than `kube::core::admission::AdmissionResponse`: the same fields
//! in the same order (`answer_serialises_as_kube_admission_response` holds it to kube's type,
//! byte for byte for the allow answer), written straight to bytes. The allow answer laid out
//! directly was measured, when it was written, at about 2,000 instructions less than the
//! derived serialiser of a warm request's 56,000 (3.6%, more than the 3% the warm path may
//! lose); see docs/benchmarks.md for the side-by-side run of this restructure.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use vulngate_core::{Decision, Outcome};

use super::review::ADMISSION_API_VERSION;
use crate::cluster::events::{REASON_AUDITED, REASON_DENIED};
use crate::config::{BreakGlassConfig, FailurePolicy};
use crate::observe::log::push_json_str;
use crate::record::Recorded;
use crate::verdict::Verdict;

/// The audit annotation keys. The API server prefixes them with the webhook's name
/// (`<webhook name>/decision`), so they carry no prefix of their own.
pub const AUDIT_DECISION: &str = "decision";
pub const AUDIT_RULE: &str = "rule";
pub const AUDIT_DIGEST: &str = "digest";
pub const AUDIT_ALERT_ID: &str = "alert-id";

/// Fills `resp` (allowed, as made by [`Answer::allow`]) from the review's verdicts and what
/// was recorded of them: denials, warnings, audit annotations, and the failure policy when
/// an alert could not be recorded. `subject` names the top workload and the object admitted
/// when they differ (`vulngate_core::owner::subject`): it opens the denial message and each
/// decision's warning (and so the Event's note). `break_glass` is the annotation's value
/// when break-glass applies.
pub(crate) fn respond(
    resp: &mut Answer,
    verdicts: &[Verdict],
    recorded: &Recorded,
    subject: Option<&str>,
    break_glass: Option<&str>,
    break_glass_config: Option<&BreakGlassConfig>,
    policy: FailurePolicy,
) {
    let combined = Outcome::combine(verdicts.iter().map(|v| v.decision.decision));
    let mut warnings = Vec::new();
    let mut denials = Vec::new();
    for v in verdicts {
        let d = &v.decision;
        match (d.decision, &break_glass) {
            (Outcome::Deny, None) => denials.push(line(d, "denied")),
            (Outcome::Audit, None) => warnings.push(about(subject, line(d, "audited"))),
            (Outcome::Deny, Some(_)) => warnings.push(format!(
                "break-glass: {}",
                about(subject, line(d, "would be denied"))
            )),
            (Outcome::Audit, Some(_)) => warnings.push(format!(
                "break-glass: {}",
                about(subject, line(d, "would be audited"))
            )),
            (Outcome::Allow, _) => {
                if let Some(r) = failure_note(v, policy) {
                    warnings.push(about(subject, r));
                }
            }
        }
    }
    if let (Some(b), Some(bg)) = (&break_glass, break_glass_config) {
        warnings.insert(
            0,
            format!(
                "vulngate: break-glass annotation {} set ({b}): allowed and recorded",
                bg.annotation
            ),
        );
    }

    let flagged: Vec<usize> = (0..verdicts.len())
        .filter(|&i| recorded.flagged[i])
        .collect();
    if !flagged.is_empty() && recorded.ok {
        let join = |f: &dyn Fn(usize) -> Option<String>| {
            let mut seen = BTreeSet::new();
            flagged
                .iter()
                .filter_map(|&i| f(i))
                .filter(|v| seen.insert(v.clone()))
                .collect::<Vec<_>>()
                .join(",")
        };
        let mut ann = BTreeMap::new();
        ann.insert(
            AUDIT_DECISION.to_string(),
            if break_glass.is_some() {
                "break-glass".to_string()
            } else {
                combined.as_str().to_string()
            },
        );
        ann.insert(
            AUDIT_RULE.to_string(),
            join(&|i| verdicts[i].decision.rule.clone()),
        );
        ann.insert(
            AUDIT_DIGEST.to_string(),
            join(&|i| verdicts[i].decision.digest.clone()),
        );
        ann.insert(
            AUDIT_ALERT_ID.to_string(),
            join(&|i| recorded.alert_ids[i].clone()),
        );
        ann.retain(|_, v| !v.is_empty());
        resp.audit_annotations = ann;
    }

    let final_outcome = if break_glass.is_some() {
        Outcome::Allow
    } else {
        combined
    };
    match final_outcome {
        Outcome::Deny => {
            let message = about(subject, denials.join("; "));
            *resp = deny(std::mem::take(resp), message, 403, "Forbidden");
        }
        Outcome::Audit | Outcome::Allow if !recorded.ok && !flagged.is_empty() => {
            if policy == FailurePolicy::Allow {
                warnings.push("vulngate: the alert for this request could not be recorded".into());
            } else {
                *resp = deny(
                    std::mem::take(resp),
                    "vulngate could not record the alert for this request; try again later"
                        .to_string(),
                    503,
                    "ServiceUnavailable",
                );
            }
        }
        _ => {}
    }
    for v in verdicts {
        lookup_warnings(&v.decision.image, &v.warnings, &mut warnings);
    }
    if !warnings.is_empty() {
        resp.warnings = Some(warnings);
    }
}

/// Adds the registry's warnings about an image's lookup (reports dropped, unverified or
/// merged; logged in full by the verdict) to the response warnings: at most 8 per image, each
/// cut at 240 characters.
fn lookup_warnings(img: &str, from: &[String], out: &mut Vec<String>) {
    for w in from.iter().take(8) {
        let mut w = format!("vulngate: {img}: {w}");
        if w.len() > 240 {
            let mut cut = 237;
            while !w.is_char_boundary(cut) {
                cut -= 1;
            }
            w.truncate(cut);
            w.push_str("...");
        }
        out.push(w);
    }
    if from.len() > 8 {
        out.push(format!(
            "vulngate: {img}: {} more lookup warnings in the log",
            from.len() - 8
        ));
    }
}

/// The Kubernetes Event's reason and note for an answer: denied, or audited (annotated
/// `decision: audit`); None for anything else.
pub(crate) fn event_note(resp: &Answer) -> Option<(&'static str, String)> {
    if !resp.allowed {
        Some((REASON_DENIED, resp.status.message.clone()))
    } else if resp
        .audit_annotations
        .get(AUDIT_DECISION)
        .map(String::as_str)
        == Some("audit")
    {
        Some((
            REASON_AUDITED,
            resp.warnings.clone().unwrap_or_default().join("; "),
        ))
    } else {
        None
    }
}

pub(crate) fn deny(mut resp: Answer, message: String, code: u16, reason: &'static str) -> Answer {
    resp.allowed = false;
    resp.status = AnswerStatus {
        status: Some("Failure"),
        code,
        message,
        reason,
    };
    resp
}

/// `<subject>: <text>` when the top workload is not the object admitted, else `text`.
fn about(subject: Option<&str>, text: String) -> String {
    match subject {
        Some(s) => format!("{s}: {text}"),
        None => text,
    }
}

/// `<image>@<digest>: <verb> by rule "<name>": <reason>`.
fn line(d: &Decision, verb: &str) -> String {
    let image = match &d.digest {
        Some(dg) if !d.image.contains('@') => format!("{}@{dg}", d.image),
        _ => d.image.clone(),
    };
    match &d.rule {
        Some(rule) => format!("{image}: {verb} by rule \"{rule}\": {}", d.reason),
        None => format!("{image}: {verb} by failure policy: {}", d.reason),
    }
}

/// A warning for an image allowed by the `allow` failure policy: its lookup failed, and no
/// rule decided (`Judge::failed` allowed it).
fn failure_note(v: &Verdict, policy: FailurePolicy) -> Option<String> {
    let d = &v.decision;
    let by_policy = policy == FailurePolicy::Allow && v.failure.is_some() && d.rule.is_none();
    by_policy.then(|| format!("{}: {}", d.image, d.reason))
}

/// (the same fields in the same order, `status` always present), written straight to bytes.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Answer {
    pub uid: String,
    pub allowed: bool,
    pub status: AnswerStatus,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub audit_annotations: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warnings: Option<Vec<String>>,
}

/// The response's `status` (kube's `Status`; empty when allowed).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub(crate) struct AnswerStatus {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<&'static str>,
    #[serde(skip_serializing_if = "is_zero")]
    pub code: u16,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub message: String,
    #[serde(skip_serializing_if = "str::is_empty")]
    pub reason: &'static str,
}

fn is_zero(v: &u16) -> bool {
    *v == 0
}

impl Answer {
    /// Allowed, nothing to say.
    pub fn allow(uid: &str) -> Answer {
        Answer {
            uid: uid.to_string(),
            allowed: true,
            ..Answer::default()
        }
    }

    /// The AdmissionReview v1 carrying this response, as JSON.
    pub fn to_review_json(&self) -> serde_json::Result<Vec<u8>> {
        if self.allowed
            && self.status == AnswerStatus::default()
            && self.audit_annotations.is_empty()
            && self.warnings.is_none()
        {
            // The answer to almost every request: laid out directly (the derived serialiser
            // escapes every key byte by byte, about 2,000 instructions). Same bytes (tested).
            const HEAD: &[u8] =
                br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":{"uid":"#;
            const TAIL: &[u8] = br#","allowed":true,"status":{}}}"#;
            let mut buf = Vec::with_capacity(HEAD.len() + self.uid.len() + 2 + TAIL.len());
            buf.extend_from_slice(HEAD);
            push_json_str(&mut buf, &self.uid);
            buf.extend_from_slice(TAIL);
            return Ok(buf);
        }
        #[derive(Serialize)]
        #[serde(rename_all = "camelCase")]
        struct Envelope<'a> {
            api_version: &'static str,
            kind: &'static str,
            response: &'a Answer,
        }
        let extra = self.status.message.len()
            + self
                .warnings
                .iter()
                .flatten()
                .map(|w| w.len() + 4)
                .sum::<usize>()
            + self
                .audit_annotations
                .iter()
                .map(|(k, v)| k.len() + v.len() + 6)
                .sum::<usize>();
        let mut buf = Vec::with_capacity(160 + self.uid.len() + extra);
        serde_json::to_writer(
            &mut buf,
            &Envelope {
                api_version: ADMISSION_API_VERSION,
                kind: "AdmissionReview",
                response: self,
            },
        )?;
        Ok(buf)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview};
    use kube::core::DynamicObject;
    use serde_json::Value;

    use super::*;
    use crate::admission::review::tests::{review_json, workload};

    #[test]
    fn answer_serialises_as_kube_admission_response() {
        let rv: AdmissionReview<DynamicObject> =
            serde_json::from_value(review_json("CREATE", &workload("Pod", &["a"]), None)).unwrap();
        let req: AdmissionRequest<DynamicObject> = rv.try_into().unwrap();
        let as_value =
            |a: &Answer| -> Value { serde_json::from_slice(&a.to_review_json().unwrap()).unwrap() };
        // Allowed (laid out directly): the same bytes, with a uid that needs escaping too.
        for uid in [req.uid.as_str(), "a\"b\\c\u{1}\u{7f}é\n"] {
            let mut req = req.clone();
            req.uid = uid.to_string();
            let kube = AdmissionResponse::from(&req);
            let ours = Answer::allow(&req.uid);
            assert_eq!(
                serde_json::to_string(&kube.into_review()).unwrap(),
                String::from_utf8(ours.to_review_json().unwrap()).unwrap()
            );
        }
        // Allowed with a warning: the derived serialiser, as kube's.
        let mut kube = AdmissionResponse::from(&req);
        kube.warnings = Some(vec!["vulngate: w".into()]);
        let mut ours = Answer::allow(&req.uid);
        ours.warnings = kube.warnings.clone();
        assert_eq!(
            serde_json::to_value(kube.into_review()).unwrap(),
            as_value(&ours)
        );
        // Denied, with warnings and audit annotations.
        let mut kube = AdmissionResponse::from(&req).deny("no \"way\"");
        kube.result = kube::core::Status::failure("no \"way\"", "Forbidden").with_code(403);
        kube.warnings = Some(vec!["w1".into(), "w2".into()]);
        kube.audit_annotations = [("decision", "deny"), ("rule", "r1,r2")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let mut ours = deny(
            Answer::allow(&req.uid),
            "no \"way\"".into(),
            403,
            "Forbidden",
        );
        ours.warnings = kube.warnings.clone();
        ours.audit_annotations = kube.audit_annotations.clone().into_iter().collect();
        assert_eq!(
            serde_json::to_value(kube.into_review()).unwrap(),
            as_value(&ours)
        );
    }
}
