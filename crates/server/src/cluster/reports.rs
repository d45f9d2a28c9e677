//! PolicyReports (`wgpolicyk8s.io/v1alpha2`, the format Kyverno and Kubewarden write and
//! policy-reporter shows): one `PolicyReport` named `vulngate` per namespace, with one result
//! per workload image and rule that fired (`fail` for deny rules, `warn` for audit rules), or
//! one `pass`/`skip` result for an image no rule fired on. Written with server-side apply;
//! a namespace without results has its report deleted. A report is written only when its
//! results change (timestamps aside), so a periodic re-evaluation does not churn the API.

use std::collections::HashMap;
use std::sync::Mutex;

use futures::future::BoxFuture;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams,
};
use kube::Client;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};
use vulngate_core::engine::{Decision, Outcome};
use vulngate_core::rules::Action;
use vulngate_core::Severity;

use super::{ImageResult, ResultSink};

/// Name of vulngate's report in each namespace.
pub const REPORT_NAME: &str = "vulngate";
/// `source` of every result.
pub const SOURCE: &str = "vulngate";
const MANAGER: &str = "vulngate-reports";
const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
const MANAGED_BY: &str = "vulngate";

/// The PolicyReport resource.
pub fn policy_report_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("wgpolicyk8s.io", "v1alpha2", "PolicyReport"),
        "policyreports",
    )
}

/// Writes PolicyReports.
pub struct PolicyReports {
    client: Client,
    /// Hash of the last written results per namespace.
    written: Mutex<HashMap<String, String>>,
}

impl std::fmt::Debug for PolicyReports {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicyReports").finish_non_exhaustive()
    }
}

impl PolicyReports {
    pub fn new(client: Client) -> PolicyReports {
        PolicyReports {
            client,
            written: Mutex::new(HashMap::new()),
        }
    }

    fn api(&self, namespace: &str) -> Api<DynamicObject> {
        Api::namespaced_with(self.client.clone(), namespace, &policy_report_resource())
    }

    async fn write(&self, namespace: &str, results: &[ImageResult]) -> Result<(), kube::Error> {
        let body = report_results(results);
        let hash = {
            let mut h = Sha256::new();
            h.update(serde_json::to_vec(&strip_timestamps(&body)).unwrap_or_default());
            format!("{:x}", h.finalize())
        };
        let unchanged = self
            .written
            .lock()
            .map(|w| w.get(namespace) == Some(&hash))
            .unwrap_or(false);
        if unchanged {
            return Ok(());
        }
        let api = self.api(namespace);
        if results.is_empty() {
            match api.delete(REPORT_NAME, &DeleteParams::default()).await {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(e) => return Err(e),
            }
        } else {
            let report = policy_report(namespace, body);
            api.patch(
                REPORT_NAME,
                &PatchParams::apply(MANAGER).force(),
                &Patch::Apply(&report),
            )
            .await?;
        }
        if let Ok(mut w) = self.written.lock() {
            w.insert(namespace.to_string(), hash);
        }
        Ok(())
    }
}

impl ResultSink for PolicyReports {
    fn sync_namespace<'a>(
        &'a self,
        namespace: &'a str,
        results: &'a [ImageResult],
    ) -> BoxFuture<'a, Result<(), kube::Error>> {
        Box::pin(self.write(namespace, results))
    }

    /// vulngate's reports in the cluster (name `vulngate`, label
    /// `app.kubernetes.io/managed-by=vulngate`), listed once per process start.
    fn existing_namespaces(&self) -> BoxFuture<'_, Result<Vec<String>, kube::Error>> {
        Box::pin(async move {
            let api: Api<DynamicObject> =
                Api::all_with(self.client.clone(), &policy_report_resource());
            let params = ListParams::default()
                .labels(&format!("{MANAGED_BY_LABEL}={MANAGED_BY}"))
                .fields(&format!("metadata.name={REPORT_NAME}"));
            let mut namespaces = Vec::new();
            let mut params = params.limit(500);
            loop {
                let page = api.list_metadata(&params).await?;
                namespaces.extend(page.items.into_iter().filter_map(|o| o.metadata.namespace));
                match page.metadata.continue_ {
                    Some(token) if !token.is_empty() => params = params.continue_token(&token),
                    _ => break,
                }
            }
            Ok(namespaces)
        })
    }
}

/// `{results, summary}` of a namespace's report.
pub fn report_results(results: &[ImageResult]) -> Value {
    let now = chrono::Utc::now();
    let timestamp = json!({ "seconds": now.timestamp(), "nanos": 0 });
    let mut out = Vec::new();
    let mut summary: HashMap<&'static str, u64> = HashMap::new();
    let mut sorted: Vec<&ImageResult> = results.iter().collect();
    // The first Pod of a workload's image names it (sorted: the same one at every scan).
    sorted.sort_by(|a, b| {
        (
            &a.workload_kind,
            &a.workload_name,
            &a.container,
            &a.decision.image,
            &a.decision.digest,
            &a.pod,
        )
            .cmp(&(
                &b.workload_kind,
                &b.workload_name,
                &b.container,
                &b.decision.image,
                &b.decision.digest,
                &b.pod,
            ))
    });
    sorted.dedup_by(|a, b| {
        a.workload_kind == b.workload_kind
            && a.workload_name == b.workload_name
            && a.container == b.container
            && a.decision.image == b.decision.image
            && a.decision.digest == b.decision.digest
    });
    for r in sorted {
        // The workload and its Pod, when they differ (`owner::subject`).
        let subject = vulngate_core::owner::subject(
            Some(&r.namespace),
            (&r.workload_kind, &r.workload_name),
            ("Pod", r.pod.as_deref()),
            vulngate_core::owner::Seen::Running,
        )
        .filter(|_| r.pod.is_some());
        for (policy, result, message) in rule_results(&r.decision) {
            let message = match &subject {
                Some(s) => format!("{s}: {message}"),
                None => message,
            };
            *summary.entry(result).or_default() += 1;
            out.push(json!({
                "source": SOURCE,
                "policy": policy,
                "rule": r.decision.vulnerability.clone().unwrap_or_else(|| policy.clone()),
                "category": "vulnerability",
                "severity": severity(&r.decision),
                "timestamp": timestamp,
                "result": result,
                "scored": true,
                "message": message,
                "resources": [resource(r)],
                "properties": properties(r),
            }));
        }
    }
    json!({
        "results": out,
        "summary": {
            "pass": summary.get("pass").copied().unwrap_or(0),
            "fail": summary.get("fail").copied().unwrap_or(0),
            "warn": summary.get("warn").copied().unwrap_or(0),
            "error": summary.get("error").copied().unwrap_or(0),
            "skip": summary.get("skip").copied().unwrap_or(0),
        },
    })
}

/// `(policy, result, message)` per rule that fired, or one pass/skip.
fn rule_results(d: &Decision) -> Vec<(String, &'static str, String)> {
    let mut v = Vec::new();
    if let Some(rule) = &d.rule {
        let result = match d.decision {
            Outcome::Deny => "fail",
            _ => "warn",
        };
        v.push((rule.clone(), result, d.reason.clone()));
    }
    for f in &d.also_fired {
        let result = match f.action {
            Action::Deny => "fail",
            Action::Audit => "warn",
        };
        v.push((f.rule.clone(), result, format!("also fired: {}", f.reason)));
    }
    if v.is_empty() {
        if d.unscanned.is_some() {
            v.push((SOURCE.to_string(), "skip", d.reason.clone()));
        } else {
            v.push((SOURCE.to_string(), "pass", d.reason.clone()));
        }
    }
    v
}

/// PolicyReport severities are critical, high, medium, low, info.
fn severity(d: &Decision) -> &'static str {
    match d.vulnerability_detail.as_ref().map(|v| v.severity) {
        Some(Severity::Critical) => "critical",
        Some(Severity::High) => "high",
        Some(Severity::Medium) => "medium",
        Some(Severity::Low) => "low",
        _ => "info",
    }
}

fn resource(r: &ImageResult) -> Value {
    let mut m = Map::new();
    m.insert("apiVersion".into(), r.workload_api_version.clone().into());
    m.insert("kind".into(), r.workload_kind.clone().into());
    m.insert("name".into(), r.workload_name.clone().into());
    m.insert("namespace".into(), r.namespace.clone().into());
    if let Some(uid) = &r.workload_uid {
        m.insert("uid".into(), uid.clone().into());
    }
    Value::Object(m)
}

fn properties(r: &ImageResult) -> Value {
    let d = &r.decision;
    let mut m = Map::new();
    let mut put = |k: &str, v: Option<String>| {
        if let Some(v) = v {
            m.insert(k.into(), Value::String(v));
        }
    };
    put("image", Some(d.image.clone()));
    put("digest", d.digest.clone());
    put("container", Some(r.container.clone()));
    put("pod", r.pod.clone());
    put("decision", Some(d.decision.as_str().to_string()));
    put("vulnerability", d.vulnerability.clone());
    put("rulesVersion", Some(d.rules_version.clone()));
    put(
        "counts",
        Some(format!(
            "critical={} high={} medium={} low={} other={}",
            d.counts.get(Severity::Critical),
            d.counts.get(Severity::High),
            d.counts.get(Severity::Medium),
            d.counts.get(Severity::Low),
            d.counts.get(Severity::Unknown) + d.counts.get(Severity::Negligible)
        )),
    );
    if let Some(rep) = &d.report {
        put("reportDigest", rep.digest.clone());
        put("scanner", rep.scanner.as_ref().map(|s| s.name.clone()));
        put("reportVerified", Some(rep.verified.to_string()));
    }
    Value::Object(m)
}

fn policy_report(namespace: &str, body: Value) -> Value {
    let mut report = json!({
        "apiVersion": "wgpolicyk8s.io/v1alpha2",
        "kind": "PolicyReport",
        "metadata": {
            "name": REPORT_NAME,
            "namespace": namespace,
            "labels": { (MANAGED_BY_LABEL): MANAGED_BY },
        },
    });
    if let (Value::Object(r), Value::Object(b)) = (&mut report, body) {
        r.extend(b);
    }
    report
}

fn strip_timestamps(body: &Value) -> Value {
    let mut b = body.clone();
    if let Some(results) = b.get_mut("results").and_then(Value::as_array_mut) {
        for r in results {
            if let Some(o) = r.as_object_mut() {
                o.remove("timestamp");
            }
        }
    }
    b
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn decision(v: Value) -> Arc<Decision> {
        let mut base = json!({
            "image": "registry.example/app:1",
            "digest": "sha256:aaaa",
            "decision": "allow",
            "rule": null,
            "vulnerability": null,
            "reason": "no rule fired",
            "counts": {"critical": 0, "high": 0, "medium": 0, "low": 0, "negligible": 0, "unknown": 0},
            "rules_version": "0123456789abcdef",
        });
        if let (Value::Object(b), Value::Object(o)) = (&mut base, v) {
            b.extend(o);
        }
        Arc::new(serde_json::from_value(base).expect("decision"))
    }

    fn result(workload: &str, container: &str, d: Arc<Decision>) -> ImageResult {
        ImageResult {
            namespace: "shop".into(),
            workload_api_version: "apps/v1".into(),
            workload_kind: "Deployment".into(),
            workload_name: workload.into(),
            workload_uid: Some("uid-1".into()),
            pod: Some(format!("{workload}-abc")),
            container: container.into(),
            decision: d,
        }
    }

    #[test]
    fn one_result_per_image_and_rule_with_summary() {
        let deny = decision(json!({
            "decision": "deny",
            "rule": "deny-critical",
            "vulnerability": "CVE-2021-44228",
            "reason": "1 critical or higher vulnerabilities (CVE-2021-44228), more than the allowed count of 0",
            "vulnerability_detail": {"id": "CVE-2021-44228", "ids": ["CVE-2021-44228"], "severity": "critical", "fix_available": true, "packages": []},
            "also_fired": [{"rule": "audit-high", "action": "audit", "condition": {"index": 0, "description": "x"}, "reason": "1 high or higher"}],
            "counts": {"critical": 1, "high": 0, "medium": 0, "low": 0, "negligible": 0, "unknown": 0},
        }));
        let clean = decision(json!({}));
        let unscanned =
            decision(json!({"unscanned": {"kind": "no-report"}, "reason": "unscanned image"}));
        let body = report_results(&[
            result("web", "app", deny),
            result("api", "app", clean),
            result("api", "sidecar", unscanned),
        ]);
        let results = body["results"].as_array().expect("results");
        assert_eq!(results.len(), 4);
        assert_eq!(
            body["summary"],
            json!({"pass": 1, "fail": 1, "warn": 1, "error": 0, "skip": 1})
        );
        let fail = results
            .iter()
            .find(|r| r["result"] == "fail")
            .expect("fail result");
        assert_eq!(fail["policy"], "deny-critical");
        assert_eq!(fail["rule"], "CVE-2021-44228");
        assert_eq!(fail["severity"], "critical");
        assert_eq!(fail["source"], "vulngate");
        assert_eq!(fail["resources"][0]["kind"], "Deployment");
        assert_eq!(fail["resources"][0]["name"], "web");
        assert_eq!(fail["resources"][0]["uid"], "uid-1");
        assert_eq!(fail["properties"]["digest"], "sha256:aaaa");
        assert_eq!(fail["properties"]["container"], "app");
        assert_eq!(
            fail["properties"]["counts"],
            "critical=1 high=0 medium=0 low=0 other=0"
        );
        let warn = results
            .iter()
            .find(|r| r["result"] == "warn")
            .expect("warn");
        assert_eq!(warn["policy"], "audit-high");
        let skip = results
            .iter()
            .find(|r| r["result"] == "skip")
            .expect("skip");
        // The workload and its Pod, both named (issue 18).
        assert_eq!(
            skip["message"],
            "Deployment shop/api (running: Pod shop/api-abc): unscanned image"
        );
        assert!(
            fail["message"]
                .as_str()
                .expect("message")
                .starts_with("Deployment shop/web (running: Pod shop/web-abc): 1 critical"),
            "{}",
            fail["message"]
        );
        // A bare Pod is its own workload: the message as before.
        let mut bare = result("solo", "app", decision(json!({"reason": "r"})));
        bare.workload_kind = "Pod".into();
        bare.pod = Some("solo".into());
        let body = report_results(&[bare]);
        assert_eq!(body["results"][0]["message"], "r");
        // Every properties value is a string (the CRD's map[string]string).
        for r in results {
            for (_, v) in r["properties"].as_object().expect("properties") {
                assert!(v.is_string(), "{v}");
            }
        }
    }

    #[test]
    fn results_are_ordered_and_deduplicated_and_hash_ignores_timestamps() {
        let d = decision(json!({}));
        let a = report_results(&[
            result("b", "app", d.clone()),
            result("a", "app", d.clone()),
            result("a", "app", d.clone()),
        ]);
        let names: Vec<&str> = a["results"]
            .as_array()
            .expect("results")
            .iter()
            .map(|r| r["resources"][0]["name"].as_str().expect("name"))
            .collect();
        assert_eq!(names, ["a", "b"]);
        let mut b = a.clone();
        b["results"][0]["timestamp"] = json!({"seconds": 1, "nanos": 0});
        assert_ne!(a, b);
        assert_eq!(strip_timestamps(&a), strip_timestamps(&b));
    }
}
