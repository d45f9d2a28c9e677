//! The workload an object belongs to: its top owner, resolved once, here, for admission
//! reviews, the re-evaluation of running Pods and `vulngate check` alike.
//!
//! An object's owner is its `metadata.ownerReferences` entry with `controller: true` (at most
//! one exists); an object without one is its own workload. The owners followed up:
//!
//! - Pod -> ReplicaSet -> Deployment, Pod -> Job -> CronJob: two levels, each confirmed by an
//!   [`OwnerLookup`] (the server's watch cache of ReplicaSets and Jobs) when one is given and
//!   knows the owner. Without one, or when it does not know the owner (not yet seen):
//!   - a ReplicaSet owner is a Deployment's when the object's `pod-template-hash` label `H`
//!     and the ReplicaSet's name `N` satisfy `N == D + "-" + H` with `D` not empty: the
//!     Deployment is `D` (the Deployment controller's naming). Otherwise the ReplicaSet is
//!     the workload.
//!   - a Job owner is a CronJob's when its name is `C-<digits>`, `C` not empty and at least 8
//!     ASCII digits after the last `-`: the CronJob controller names each Job after its
//!     scheduled time in minutes since the epoch (8 digits from 1976 to 2160). The CronJob is
//!     `C`. Otherwise the Job is the workload.
//! - Any other controller (StatefulSet, DaemonSet, ReplicationController, a Deployment owning
//!   a ReplicaSet, a CronJob owning a Job, or a kind vulngate does not know) is the workload.
//!
//! Pure: the lookup is a trait, the caller's cache behind it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The label the Deployment controller puts on a ReplicaSet's Pods (and the ReplicaSet).
pub const POD_TEMPLATE_HASH: &str = "pod-template-hash";

/// An owner reference (the controller one), as `metadata.ownerReferences[]` gives it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OwnerRef {
    pub api_version: String,
    pub kind: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
}

/// How the top workload was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Via {
    /// No controller owner: the object is its own workload.
    Itself,
    /// The controller owner named by the object, followed no further.
    Owner,
    /// The owner's owner, as the watch cache knows it.
    Cache,
    /// The owner's owner, inferred from the naming rules above.
    Naming,
}

/// The workload an object belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TopWorkload {
    pub api_version: String,
    pub kind: String,
    pub name: String,
    /// Known when the object itself or a watched owner carries it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
    pub via: Via,
}

/// What a watch cache knows of an intermediate owner (a ReplicaSet or a Job).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Known {
    /// Seen, with this controller owner (or none).
    Owner(Option<OwnerRef>),
    /// Not seen (not synced yet, just created, or not watched): the naming rules decide.
    Unknown,
}

/// A cache of ReplicaSets and Jobs: their controller owners.
pub trait OwnerLookup {
    /// The controller owner of the `kind` (`ReplicaSet` or `Job`) named `name` in
    /// `namespace`. `uid`, when the reference gives one, must be the cached object's (a
    /// recreated object of the same name is another object: `Unknown`).
    fn controller_of(&self, namespace: &str, kind: &str, name: &str, uid: Option<&str>) -> Known;
}

/// The object whose workload is resolved.
#[derive(Debug, Clone, Copy)]
pub struct Object<'a> {
    pub api_version: &'a str,
    pub kind: &'a str,
    /// `metadata.name` (else `generateName`).
    pub name: Option<&'a str>,
    pub namespace: Option<&'a str>,
    pub uid: Option<&'a str>,
    /// The object's own labels (for a Pod: its `pod-template-hash`).
    pub labels: &'a BTreeMap<String, String>,
    /// The controller owner reference.
    pub owner: Option<&'a OwnerRef>,
}

/// The controller owner among `refs` (the API server allows at most one).
pub fn controller_of(
    refs: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference],
) -> Option<OwnerRef> {
    refs.iter()
        .find(|r| r.controller == Some(true))
        .map(|r| OwnerRef {
            api_version: r.api_version.clone(),
            kind: r.kind.clone(),
            name: r.name.clone(),
            uid: Some(r.uid.clone()).filter(|u| !u.is_empty()),
        })
}

/// The name of the Deployment owning ReplicaSet `rs`, by the naming rule (`<deploy>-<hash>`).
pub fn deployment_by_name<'a>(rs: &'a str, pod_template_hash: Option<&str>) -> Option<&'a str> {
    let hash = pod_template_hash.filter(|h| !h.is_empty())?;
    let d = rs.strip_suffix(hash)?.strip_suffix('-')?;
    (!d.is_empty()).then_some(d)
}

/// The name of the CronJob owning Job `job`, by the naming rule (`<cronjob>-<8+ digits>`).
pub fn cronjob_by_name(job: &str) -> Option<&str> {
    let (cj, suffix) = job.rsplit_once('-')?;
    (!cj.is_empty() && suffix.len() >= 8 && suffix.bytes().all(|b| b.is_ascii_digit()))
        .then_some(cj)
}

fn group(api_version: &str) -> &str {
    api_version.split_once('/').map_or("", |(g, _)| g)
}

fn top(o: &OwnerRef, via: Via) -> TopWorkload {
    TopWorkload {
        api_version: o.api_version.clone(),
        kind: o.kind.clone(),
        name: o.name.clone(),
        uid: o.uid.clone(),
        via,
    }
}

fn named(api_version: &str, kind: &str, name: &str) -> TopWorkload {
    TopWorkload {
        api_version: api_version.into(),
        kind: kind.into(),
        name: name.into(),
        uid: None,
        via: Via::Naming,
    }
}

/// The top workload of `obj` (see the module documentation for the rules).
pub fn resolve(obj: &Object<'_>, lookup: Option<&dyn OwnerLookup>) -> TopWorkload {
    let Some(owner) = obj.owner else {
        return TopWorkload {
            api_version: obj.api_version.to_string(),
            kind: obj.kind.to_string(),
            name: obj.name.unwrap_or_default().to_string(),
            uid: obj.uid.map(str::to_string),
            via: Via::Itself,
        };
    };
    let (wanted, wanted_api) = match (owner.kind.as_str(), group(&owner.api_version)) {
        ("ReplicaSet", "apps") => ("Deployment", "apps/v1"),
        ("Job", "batch") => ("CronJob", "batch/v1"),
        _ => return top(owner, Via::Owner),
    };
    if let (Some(lookup), Some(ns)) = (lookup, obj.namespace) {
        match lookup.controller_of(ns, &owner.kind, &owner.name, owner.uid.as_deref()) {
            Known::Owner(Some(o))
                if o.kind == wanted && group(&o.api_version) == group(wanted_api) =>
            {
                return top(&o, Via::Cache)
            }
            // Seen, and not owned by a Deployment (CronJob): the owner is the workload.
            Known::Owner(_) => return top(owner, Via::Owner),
            Known::Unknown => {}
        }
    }
    let inferred = match wanted {
        "Deployment" => deployment_by_name(
            &owner.name,
            obj.labels.get(POD_TEMPLATE_HASH).map(String::as_str),
        ),
        _ => cronjob_by_name(&owner.name),
    };
    match inferred {
        Some(name) => named(wanted_api, wanted, name),
        None => top(owner, Via::Owner),
    }
}

/// How an object came to be judged: admitted by a review, or running (a re-evaluated Pod).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    Admitted,
    Running,
}

/// What a decision is about, as every record names it (the answer's message and warnings,
/// Kubernetes Events, PolicyReport results, alerts): the top workload, and the object judged
/// when it is another one: `Deployment shop/web (admitted: Pod shop/web-5d9f7c-abcde)`.
/// None when the object is its own workload (or its top workload is not known): the records
/// then read as they always did.
pub fn subject(
    namespace: Option<&str>,
    top: (&str, &str),
    object: (&str, Option<&str>),
    seen: Seen,
) -> Option<String> {
    let (top_kind, top_name) = top;
    let (kind, name) = object;
    let name = name.filter(|n| !n.is_empty()).unwrap_or("-");
    if top_name.is_empty() || (top_kind == kind && top_name == name) {
        return None;
    }
    let path = |n: &str| match namespace.filter(|ns| !ns.is_empty()) {
        Some(ns) => format!("{ns}/{n}"),
        None => n.to_string(),
    };
    let seen = match seen {
        Seen::Admitted => "admitted",
        Seen::Running => "running",
    };
    Some(format!(
        "{top_kind} {} ({seen}: {kind} {})",
        path(top_name),
        path(name)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner(api: &str, kind: &str, name: &str) -> OwnerRef {
        OwnerRef {
            api_version: api.into(),
            kind: kind.into(),
            name: name.into(),
            uid: Some("u1".into()),
        }
    }

    fn pod<'a>(labels: &'a BTreeMap<String, String>, o: Option<&'a OwnerRef>) -> Object<'a> {
        Object {
            api_version: "v1",
            kind: "Pod",
            name: Some("web-5d8f9c7b4-x2x9q"),
            namespace: Some("shop"),
            uid: Some("p1"),
            labels,
            owner: o,
        }
    }

    fn hash(h: &str) -> BTreeMap<String, String> {
        [(POD_TEMPLATE_HASH.to_string(), h.to_string())].into()
    }

    #[test]
    fn subjects_name_the_top_workload_and_the_object_when_they_differ() {
        assert_eq!(
            subject(
                Some("shop"),
                ("Deployment", "web"),
                ("Pod", Some("web-5d9f7c-abcde")),
                Seen::Admitted
            )
            .as_deref(),
            Some("Deployment shop/web (admitted: Pod shop/web-5d9f7c-abcde)")
        );
        assert_eq!(
            subject(
                Some("shop"),
                ("CronJob", "backup"),
                ("Pod", Some("backup-29123456-x")),
                Seen::Running
            )
            .as_deref(),
            Some("CronJob shop/backup (running: Pod shop/backup-29123456-x)")
        );
        // A cluster-scoped object, an object without a name yet.
        assert_eq!(
            subject(
                None,
                ("Deployment", "web"),
                ("ReplicaSet", None),
                Seen::Admitted
            )
            .as_deref(),
            Some("Deployment web (admitted: ReplicaSet -)")
        );
        // Its own workload, or no workload known: nothing to add.
        let own = subject(
            Some("shop"),
            ("Deployment", "web"),
            ("Deployment", Some("web")),
            Seen::Admitted,
        );
        assert_eq!(own, None);
        assert_eq!(
            subject(
                Some("shop"),
                ("Pod", ""),
                ("Pod", Some("p")),
                Seen::Admitted
            ),
            None
        );
    }

    #[test]
    fn naming_rules() {
        assert_eq!(
            deployment_by_name("web-5d8f9c7b4", Some("5d8f9c7b4")),
            Some("web")
        );
        assert_eq!(deployment_by_name("web-5d8f9c7b4", Some("5d8f9c7b")), None);
        assert_eq!(deployment_by_name("web5d8f9c7b4", Some("5d8f9c7b4")), None);
        assert_eq!(deployment_by_name("-5d8f9c7b4", Some("5d8f9c7b4")), None);
        assert_eq!(deployment_by_name("web-5d8f9c7b4", Some("")), None);
        assert_eq!(deployment_by_name("web-5d8f9c7b4", None), None);
        assert_eq!(cronjob_by_name("backup-29123456"), Some("backup"));
        assert_eq!(cronjob_by_name("db-backup-29123456"), Some("db-backup"));
        assert_eq!(cronjob_by_name("backup-2912345"), None);
        assert_eq!(cronjob_by_name("backup-2912345x"), None);
        assert_eq!(cronjob_by_name("-29123456"), None);
        assert_eq!(cronjob_by_name("29123456"), None);
    }

    #[test]
    fn without_a_cache() {
        let rs = owner("apps/v1", "ReplicaSet", "web-5d8f9c7b4");
        let l = hash("5d8f9c7b4");
        let t = resolve(&pod(&l, Some(&rs)), None);
        assert_eq!(
            (t.kind.as_str(), t.name.as_str(), t.via),
            ("Deployment", "web", Via::Naming)
        );
        // The hash does not match the owner's suffix: the ReplicaSet is the workload.
        let l = hash("other");
        let t = resolve(&pod(&l, Some(&rs)), None);
        assert_eq!(
            (t.kind.as_str(), t.name.as_str(), t.via),
            ("ReplicaSet", "web-5d8f9c7b4", Via::Owner)
        );
        let none = BTreeMap::new();
        let t = resolve(&pod(&none, None), None);
        assert_eq!(
            (t.kind.as_str(), t.name.as_str(), t.via),
            ("Pod", "web-5d8f9c7b4-x2x9q", Via::Itself)
        );
        let job = owner("batch/v1", "Job", "backup-29123456");
        let t = resolve(&pod(&none, Some(&job)), None);
        assert_eq!((t.kind.as_str(), t.name.as_str()), ("CronJob", "backup"));
        let sts = owner("apps/v1", "StatefulSet", "db");
        let t = resolve(&pod(&none, Some(&sts)), None);
        assert_eq!(
            (t.kind.as_str(), t.name.as_str(), t.via),
            ("StatefulSet", "db", Via::Owner)
        );
        // A ReplicaSet of another group is not followed.
        let other = owner("example.com/v1", "ReplicaSet", "web-5d8f9c7b4");
        let l = hash("5d8f9c7b4");
        let t = resolve(&pod(&l, Some(&other)), None);
        assert_eq!(t.kind, "ReplicaSet");
    }

    struct Cache(Known);
    impl OwnerLookup for Cache {
        fn controller_of(&self, ns: &str, kind: &str, name: &str, uid: Option<&str>) -> Known {
            assert_eq!(
                (ns, kind, name, uid),
                ("shop", "ReplicaSet", "web-5d8f9c7b4", Some("u1"))
            );
            self.0.clone()
        }
    }

    #[test]
    fn the_cache_confirms_or_overrides() {
        let rs = owner("apps/v1", "ReplicaSet", "web-5d8f9c7b4");
        let l = hash("5d8f9c7b4");
        let dep = owner("apps/v1", "Deployment", "frontend");
        let t = resolve(&pod(&l, Some(&rs)), Some(&Cache(Known::Owner(Some(dep)))));
        assert_eq!(
            (t.name.as_str(), t.via, t.uid.as_deref()),
            ("frontend", Via::Cache, Some("u1"))
        );
        // Seen without a Deployment owner: the ReplicaSet, whatever its name says.
        let t = resolve(&pod(&l, Some(&rs)), Some(&Cache(Known::Owner(None))));
        assert_eq!((t.kind.as_str(), t.via), ("ReplicaSet", Via::Owner));
        // Not seen: the naming rule.
        let t = resolve(&pod(&l, Some(&rs)), Some(&Cache(Known::Unknown)));
        assert_eq!((t.name.as_str(), t.via), ("web", Via::Naming));
    }
}
