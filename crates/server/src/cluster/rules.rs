//! `SecurityRule` custom resources as rules: a watcher (kube-runtime) that applies the
//! cluster's rules atomically as a new rule-set version and reports each rule's state in its
//! status subresource.
//!
//! Objects are read as `DynamicObject`s and each spec is parsed on its own, so one rule the
//! OpenAPI schema lets through but vulngate rejects (two condition shapes at once, a bad glob)
//! cannot stop the others: it is reported `Accepted=False` with the exact error, and its last
//! accepted version (if any) stays in force. Deleting a rule removes it.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::StreamExt;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams};
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::Client;
use serde_json::{json, Value};
use vulngate_core::rules::{is_live, Rule, RuleSpec, SecurityRule, SecurityRuleStatus};
use vulngate_core::RuleSet;

use crate::config::RulesFrom;
use crate::rules::ActiveRules;

/// The field manager of vulngate's writes.
pub const FIELD_MANAGER: &str = "vulngate";
/// The status condition type.
pub const ACCEPTED: &str = "Accepted";

/// How often statuses are recomputed without any change (expired allowances appear).
const REFRESH: Duration = Duration::from_secs(600);

/// Called after each new rule set is applied (first sync included).
pub type OnRules = Arc<dyn Fn(Arc<RuleSet>) + Send + Sync>;

/// Watches the cluster's SecurityRules and keeps [`ActiveRules`] and their statuses current.
pub struct RuleWatcher {
    api: Api<DynamicObject>,
    active: ActiveRules,
    on_rules: Option<OnRules>,
    /// Current objects by name.
    objects: BTreeMap<String, DynamicObject>,
    /// Last accepted rule by name.
    last_good: HashMap<String, Rule>,
}

impl std::fmt::Debug for RuleWatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RuleWatcher")
            .field("objects", &self.objects.len())
            .field("accepted", &self.last_good.len())
            .finish()
    }
}

/// The API resource of `SecurityRule`.
pub fn security_rule_resource() -> ApiResource {
    ApiResource::erase::<SecurityRule>(&())
}

impl RuleWatcher {
    pub fn new(client: Client, active: ActiveRules) -> RuleWatcher {
        RuleWatcher {
            api: Api::all_with(client, &security_rule_resource()),
            active,
            on_rules: None,
            objects: BTreeMap::new(),
            last_good: HashMap::new(),
        }
    }

    /// Calls `f` with every rule set applied.
    pub fn on_rules(mut self, f: OnRules) -> RuleWatcher {
        self.on_rules = Some(f);
        self
    }

    /// Runs until the task is dropped. Watch errors (the API server restarting, a network
    /// failure) are logged and retried with backoff; the rules in force stay in force.
    pub async fn run(mut self) {
        let stream =
            watcher::watcher(self.api.clone(), watcher::Config::default()).default_backoff();
        let mut stream = std::pin::pin!(stream);
        let mut refresh = tokio::time::interval(REFRESH);
        refresh.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        refresh.tick().await;
        let mut initializing: Option<BTreeMap<String, DynamicObject>> = None;
        loop {
            tokio::select! {
                ev = stream.next() => {
                    let Some(ev) = ev else { break };
                    match ev {
                        Ok(Event::Init) => initializing = Some(BTreeMap::new()),
                        Ok(Event::InitApply(o)) => {
                            if let (Some(buf), Some(name)) = (initializing.as_mut(), o.metadata.name.clone()) {
                                buf.insert(name, o);
                            }
                        }
                        Ok(Event::InitDone) => {
                            if let Some(buf) = initializing.take() {
                                self.objects = buf;
                            }
                            self.sync().await;
                        }
                        Ok(Event::Apply(o)) => {
                            if let Some(name) = o.metadata.name.clone() {
                                self.objects.insert(name, o);
                            }
                            self.sync().await;
                        }
                        Ok(Event::Delete(o)) => {
                            if let Some(name) = &o.metadata.name {
                                self.objects.remove(name);
                            }
                            self.sync().await;
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "SecurityRule watch failed; retrying (the rules in force stay)");
                        }
                    }
                }
                _ = refresh.tick() => {
                    if self.active.cluster_synced() {
                        self.sync().await;
                    }
                }
            }
        }
    }

    /// Applies the current objects: parses each, builds the cluster's rule list (the last
    /// accepted version of an invalid rule stays), makes it current, writes statuses.
    pub async fn sync(&mut self) {
        let now = Utc::now();
        self.last_good
            .retain(|name, _| self.objects.contains_key(name));
        let file_names: Vec<String> = match self.active.mode() {
            Some(RulesFrom::Both) => self
                .active
                .file_rules()
                .rules()
                .iter()
                .map(|r| r.name.clone())
                .collect(),
            _ => Vec::new(),
        };
        let mut verdicts: BTreeMap<String, Result<RuleSpec, String>> = BTreeMap::new();
        for (name, obj) in &self.objects {
            // A rule file defining the same name shadows the object: its own errors are not
            // worth a warning then (the file's rule is in force), the shadowing is.
            let shadowed = file_names.iter().any(|f| f == name);
            match parse(name, obj) {
                Ok(rule) if !shadowed => {
                    verdicts.insert(name.clone(), Ok(rule.spec.clone()));
                    self.last_good.insert(name.clone(), rule);
                }
                Ok(_) => {
                    let e = format!(
                        "metadata.name: a rule file already defines a rule named {name:?}; the file's rule is in force"
                    );
                    tracing::warn!(rule = %name, error = %e, "SecurityRule rejected");
                    verdicts.insert(name.clone(), Err(e));
                }
                Err(e) => {
                    if !shadowed {
                        tracing::warn!(rule = %name, error = %e, "SecurityRule rejected");
                    }
                    verdicts.insert(name.clone(), Err(e));
                }
            }
        }
        let rules: Vec<Rule> = self
            .objects
            .keys()
            .filter_map(|n| self.last_good.get(n).cloned())
            .collect();
        let set = match self.active.set_cluster_rules(rules) {
            Ok(set) => set,
            Err(e) => {
                // Names are unique in the cluster and checked against the files: not expected.
                tracing::error!(error = %e, "cluster rule set rejected; keeping the rules in force");
                return;
            }
        };
        if let Some(f) = &self.on_rules {
            f(set.clone());
        }
        for (name, verdict) in verdicts {
            let Some(obj) = self.objects.get(&name) else {
                continue;
            };
            let status = desired_status(
                obj,
                &verdict,
                self.last_good.contains_key(&name),
                set.version(),
                now,
            );
            if status_matches(obj, &status) {
                continue;
            }
            let patch = json!({ "status": status });
            match self
                .api
                .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(updated) => {
                    self.objects.insert(name, updated);
                }
                Err(e) => {
                    tracing::warn!(rule = %name, error = %e, "could not write SecurityRule status");
                }
            }
        }
    }
}

/// Parses one object into a rule: the exact error (`spec.conditions[0]: ...`) on failure.
pub fn parse(name: &str, obj: &DynamicObject) -> Result<Rule, String> {
    let spec_value = obj
        .data
        .get("spec")
        .cloned()
        .ok_or_else(|| "spec: missing".to_string())?;
    let spec: RuleSpec = serde_path_to_error::deserialize(spec_value).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if path == "." {
            format!("spec: {inner}")
        } else {
            format!("spec.{path}: {inner}")
        }
    })?;
    let mut rule = Rule::new(name, spec).map_err(|e| e.to_string())?;
    rule.source = Some(format!("SecurityRule/{name}"));
    Ok(rule)
}

fn desired_status(
    obj: &DynamicObject,
    verdict: &Result<RuleSpec, String>,
    has_last_good: bool,
    version: &str,
    now: DateTime<Utc>,
) -> SecurityRuleStatus {
    let generation = obj.metadata.generation;
    let (status, reason, message, spec) = match verdict {
        Ok(spec) => (
            "True",
            "Accepted",
            "the rule is in force".to_string(),
            Some(spec),
        ),
        Err(e) => (
            "False",
            "Invalid",
            if has_last_good {
                format!("{e} (the last accepted version of this rule stays in force)")
            } else {
                format!("{e} (the rule is not in force)")
            },
            None,
        ),
    };
    // Keep the transition time when the condition's status did not change.
    let previous =
        current_status(obj).and_then(|s| s.conditions.into_iter().find(|c| c.type_ == ACCEPTED));
    let last_transition_time = match previous {
        Some(c) if c.status == status => c.last_transition_time,
        // Whole seconds: the API server stores RFC 3339 seconds, and the comparison with the
        // stored status must round-trip.
        _ => Time(
            k8s_openapi::jiff::Timestamp::from_second(now.timestamp())
                .unwrap_or(k8s_openapi::jiff::Timestamp::UNIX_EPOCH),
        ),
    };
    let (expired_allowances, expired_exemptions) = match spec {
        Some(spec) => (
            spec.allowed_vulnerabilities
                .iter()
                .filter(|a| !is_live(a.valid_until, now))
                .map(|a| a.id.clone())
                .collect(),
            spec.exemptions
                .iter()
                .filter(|e| !is_live(e.valid_until, now))
                .map(|e| {
                    let v = serde_json::to_value(e).unwrap_or(Value::Null);
                    format!(
                        "{} {} {}",
                        v["field"].as_str().unwrap_or("?"),
                        v["op"].as_str().unwrap_or("?"),
                        e.value
                    )
                })
                .collect(),
        ),
        None => (Vec::new(), Vec::new()),
    };
    SecurityRuleStatus {
        observed_generation: generation,
        conditions: vec![Condition {
            type_: ACCEPTED.to_string(),
            status: status.to_string(),
            reason: reason.to_string(),
            message,
            observed_generation: generation,
            last_transition_time,
        }],
        expired_allowances,
        expired_exemptions,
        rule_set_version: Some(version.to_string()),
    }
}

fn current_status(obj: &DynamicObject) -> Option<SecurityRuleStatus> {
    obj.data
        .get("status")
        .and_then(|s| serde_json::from_value(s.clone()).ok())
}

fn status_matches(obj: &DynamicObject, want: &SecurityRuleStatus) -> bool {
    current_status(obj).as_ref() == Some(want)
}
