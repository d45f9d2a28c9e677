//! The active rule set, with hot reload from a file or directory.
//!
//! The watcher polls the path's fingerprint (every file's name, size and modification time)
//! every `rulesReloadInterval`; on a change it loads the rules, and a set that does not load
//! is logged and counted while the last good set stays active.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use vulngate_core::rules::{Rule, RuleError};
use vulngate_core::RuleSet;

use crate::config::RulesFrom;
use crate::metrics::Metrics;

/// The rule set in force; cheap to clone.
#[derive(Debug, Clone)]
pub struct ActiveRules {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    path: Option<PathBuf>,
    /// Where rules come from (None: files only, no Kubernetes integration).
    mode: Option<RulesFrom>,
    /// The combined set in force.
    current: RwLock<Arc<RuleSet>>,
    /// The last good set from the rules path (or the built-in default).
    files: RwLock<Arc<RuleSet>>,
    /// The cluster's SecurityRules, once synced.
    cluster: RwLock<Option<Vec<Rule>>>,
    fingerprint: RwLock<Option<Fingerprint>>,
    metrics: Metrics,
}

type Fingerprint = Vec<(PathBuf, u64, Option<SystemTime>)>;

impl ActiveRules {
    /// Loads the rules at `path`, or uses the built-in default rule.
    pub fn load(path: Option<&Path>, metrics: Metrics) -> Result<ActiveRules, RuleError> {
        let (rules, fingerprint) = match path {
            Some(p) => {
                let fp = fingerprint(p);
                (RuleSet::load(p)?, fp)
            }
            None => (RuleSet::default_rules(), None),
        };
        metrics.rules_loaded(rules.rules().len());
        let rules = Arc::new(rules);
        Ok(ActiveRules {
            inner: Arc::new(Inner {
                path: path.map(Path::to_path_buf),
                mode: None,
                current: RwLock::new(rules.clone()),
                files: RwLock::new(rules),
                cluster: RwLock::new(None),
                fingerprint: RwLock::new(fingerprint),
                metrics,
            }),
        })
    }

    /// The rule set in force.
    pub fn current(&self) -> Arc<RuleSet> {
        match self.inner.current.read() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// Reloads the rules now. On error the last good set stays active (and the error is
    /// returned, logged and counted). Without a rules path this is a no-op.
    pub fn reload(&self) -> Result<Arc<RuleSet>, RuleError> {
        let Some(path) = &self.inner.path else {
            return Ok(self.current());
        };
        let fp = fingerprint(path);
        match RuleSet::load(path) {
            Ok(rules) => {
                let rules = Arc::new(rules);
                let old = self.current();
                if old.version() != rules.version() {
                    tracing::info!(
                        rules_path = %path.display(),
                        version = rules.version(),
                        previous = old.version(),
                        rules = rules.rules().len(),
                        "rules reloaded"
                    );
                }
                write(&self.inner.files, rules.clone());
                if let Ok(mut f) = self.inner.fingerprint.write() {
                    *f = fp;
                }
                self.combine()
                    .inspect_err(|_| self.inner.metrics.rules_reload_failed())
            }
            Err(e) => {
                self.inner.metrics.rules_reload_failed();
                tracing::error!(
                    rules_path = %path.display(),
                    error = %e,
                    active_version = self.current().version(),
                    "rules reload rejected; keeping the last good rule set"
                );
                // Remember the bad fingerprint so the error is reported once per edit.
                if let Ok(mut f) = self.inner.fingerprint.write() {
                    *f = fp;
                }
                Err(e)
            }
        }
    }

    /// Like [`load`](Self::load), for the Kubernetes integration: with `RulesFrom::Cluster`
    /// no file is read and the set is empty until [`set_cluster_rules`](Self::set_cluster_rules);
    /// with `Both` the file's rules come first, then the cluster's.
    pub fn load_with_mode(
        path: Option<&Path>,
        mode: Option<RulesFrom>,
        metrics: Metrics,
    ) -> Result<ActiveRules, RuleError> {
        let loaded = match mode {
            Some(RulesFrom::Cluster) => ActiveRules::load(None, metrics)?,
            _ => ActiveRules::load(path, metrics)?,
        };
        let Some(mode) = mode else {
            return Ok(loaded);
        };
        let inner = Arc::try_unwrap(loaded.inner).map_err(|_| RuleError {
            location: None,
            rule: None,
            path: String::new(),
            message: "internal: rules shared during load".into(),
        })?;
        let files = match mode {
            RulesFrom::Cluster => Arc::new(RuleSet::new(Vec::new())?),
            _ => read(&inner.files),
        };
        Ok(ActiveRules {
            inner: Arc::new(Inner {
                mode: Some(mode),
                current: RwLock::new(files.clone()),
                files: RwLock::new(files),
                ..inner
            }),
        })
    }

    /// Where rules come from (None: files only).
    pub fn mode(&self) -> Option<RulesFrom> {
        self.inner.mode
    }

    /// The rules read from the rules path (or the built-in default).
    pub fn file_rules(&self) -> Arc<RuleSet> {
        read(&self.inner.files)
    }

    /// Whether the cluster's rules have been synced at least once.
    pub fn cluster_synced(&self) -> bool {
        self.inner
            .cluster
            .read()
            .map(|c| c.is_some())
            .unwrap_or(false)
    }

    /// Replaces the cluster's rules and makes the combined set current (a new version).
    /// Ignored (the file set stays) when the mode is files only.
    pub fn set_cluster_rules(&self, rules: Vec<Rule>) -> Result<Arc<RuleSet>, RuleError> {
        write(&self.inner.cluster, Some(rules));
        self.combine()
    }

    /// Builds the set in force from the file set and the cluster's rules.
    fn combine(&self) -> Result<Arc<RuleSet>, RuleError> {
        let files = read(&self.inner.files);
        let cluster = read(&self.inner.cluster);
        let combined = match (self.inner.mode, cluster) {
            (None | Some(RulesFrom::Files), _) | (_, None) => files,
            (Some(RulesFrom::Cluster), Some(c)) => Arc::new(RuleSet::new(c)?),
            (Some(RulesFrom::Both), Some(c)) => {
                // A name defined in both places: the file's rule wins (the cluster watcher
                // reports the custom resource as invalid).
                let mut all = files.rules().to_vec();
                for r in c {
                    if files.rules().iter().any(|f| f.name == r.name) {
                        tracing::warn!(rule = %r.name, "SecurityRule ignored: a rule file defines the same name");
                    } else {
                        all.push(r);
                    }
                }
                Arc::new(RuleSet::new(all)?)
            }
        };
        let old = self.current();
        if old.version() != combined.version() {
            tracing::info!(
                version = combined.version(),
                previous = old.version(),
                rules = combined.rules().len(),
                "rule set changed"
            );
        }
        self.inner.metrics.rules_loaded(combined.rules().len());
        write(&self.inner.current, combined.clone());
        Ok(combined)
    }

    /// Reloads when the files changed since the last load.
    pub fn reload_if_changed(&self) {
        let Some(path) = &self.inner.path else {
            return;
        };
        let fp = fingerprint(path);
        let same = self
            .inner
            .fingerprint
            .read()
            .map(|f| *f == fp)
            .unwrap_or(false);
        if !same {
            let _ = self.reload();
        }
    }

    /// Polls for changes every `interval` until the returned task is aborted.
    pub fn spawn_watcher(&self, interval: Duration) -> Option<tokio::task::JoinHandle<()>> {
        if interval.is_zero() || self.inner.path.is_none() {
            return None;
        }
        let this = self.clone();
        Some(tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tick.tick().await;
                let t = this.clone();
                // File system access off the async workers.
                let _ = tokio::task::spawn_blocking(move || t.reload_if_changed()).await;
            }
        }))
    }
}

fn read<T: Clone>(lock: &RwLock<T>) -> T {
    match lock.read() {
        Ok(g) => g.clone(),
        Err(p) => p.into_inner().clone(),
    }
}

fn write<T>(lock: &RwLock<T>, value: T) {
    match lock.write() {
        Ok(mut g) => *g = value,
        Err(p) => *p.into_inner() = value,
    }
}

fn fingerprint(path: &Path) -> Option<Fingerprint> {
    let entry = |p: PathBuf| {
        let m = std::fs::metadata(&p).ok()?;
        Some((p, m.len(), m.modified().ok()))
    };
    if path.is_dir() {
        let mut v: Fingerprint = std::fs::read_dir(path)
            .ok()?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter_map(entry)
            .collect();
        v.sort();
        Some(v)
    } else {
        entry(path.to_path_buf()).map(|e| vec![e])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RULE: &str = "apiVersion: vulngate.io/v1\nkind: SecurityRule\nmetadata: { name: r }\nspec:\n  action: ACTION\n  conditions: [{ severity: high }]\n";

    #[test]
    fn watcher_reloads_changed_files_and_keeps_the_last_good_set() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("rules.yaml");
        std::fs::write(&p, RULE.replace("ACTION", "audit")).unwrap();
        let metrics = Metrics::new();
        let rules = ActiveRules::load(Some(&p), metrics.clone()).unwrap();
        let v1 = rules.current().version().to_string();
        rules.reload_if_changed(); // unchanged: nothing
        assert_eq!(rules.current().version(), v1);
        std::fs::write(&p, RULE.replace("ACTION", "deny-it")).unwrap();
        rules.reload_if_changed();
        assert_eq!(rules.current().version(), v1);
        assert_eq!(metrics.rules_reload_failures(), 1);
        rules.reload_if_changed(); // the same bad edit is reported once
        assert_eq!(metrics.rules_reload_failures(), 1);
        std::fs::write(&p, RULE.replace("ACTION", "deny")).unwrap();
        rules.reload_if_changed();
        assert_ne!(rules.current().version(), v1);
    }
}
