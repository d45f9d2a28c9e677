//! Writing alerts to the Kubernetes store: grouped by key, each group into its object with
//! the count, times and kinds merged (conflicts retried), and the de-duplication window
//! (`alerts.dedupWindow`), applied as the SQL stores apply it
//! (`AlertBackend::record_merged`): an alert is counted into the earliest object of its key
//! whose first alert's time lies within the window of its own time; when none does, it starts a new object (a new id, count 1).
//!
//! The objects of one key are its generations: `a-<hex>` (the name objects had before the
//! window existed, so those are found by name), then `a-<hex>-2`, `a-<hex>-3`... Each carries
//! the label [`LABEL_KEY`] (`<hex>`), by which the later ones are listed. The next
//! generation's name is one more than the highest that exists, so replicas that both see the
//! window passed create the same object (one wins, the other gets 409 AlreadyExists, reads it
//! and counts into it when its alerts are within its window).

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::{StreamExt, TryStreamExt};
use kube::api::{Api, ListParams, PostParams};
use serde_json::Value;

use super::{
    api_code, backoff, kube_err, merge_status, new_object, object_name, spec_alert, AlertObject,
    Inner, MAX_CONFLICT_RETRIES, WRITE_CONCURRENCY,
};
use crate::alerts::{Alert, AlertError};

/// The label of an object's de-duplication key: the hex digits of its first generation's
/// name.
pub const LABEL_KEY: &str = "vulngate.io/dedup-key";

/// The name of generation `n` (1: the key's base name `a-<hex>`).
pub(super) fn generation_name(base: &str, n: u64) -> String {
    if n <= 1 {
        base.to_string()
    } else {
        format!("{base}-{n}")
    }
}

/// The generation of object `name` of the key whose base name is `base` (None: another key).
pub(super) fn generation_of(base: &str, name: &str) -> Option<u64> {
    let rest = name.strip_prefix(base)?;
    if rest.is_empty() {
        return Some(1);
    }
    let n: u64 = rest.strip_prefix('-')?.parse().ok()?;
    (n >= 2).then_some(n)
}

/// The key label's value of base name `base` (`a-<hex>` -> `<hex>`).
pub(super) fn key_label(base: &str) -> &str {
    base.strip_prefix("a-").unwrap_or(base)
}

/// The time of an object's first alert (its spec's `time`).
pub(super) fn first_time(o: &AlertObject) -> Option<DateTime<Utc>> {
    o.spec
        .0
        .get("time")
        .and_then(Value::as_str)
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&Utc))
}

/// Whether `t` is within `window` of `first` (either side, bounds included: the SQL stores'
/// `time >= t - window AND time <= t + window`).
pub(super) fn within(first: DateTime<Utc>, t: DateTime<Utc>, window: chrono::Duration) -> bool {
    let lo = t
        .checked_sub_signed(window)
        .unwrap_or(DateTime::<Utc>::MIN_UTC);
    let hi = t
        .checked_add_signed(window)
        .unwrap_or(DateTime::<Utc>::MAX_UTC);
    first >= lo && first <= hi
}

impl Inner {
    /// Writes `alerts` (grouped by key, [`WRITE_CONCURRENCY`] keys at once); returns how
    /// many were new. With a `window` (`alerts.dedupWindow`), a key's alerts go to the
    /// generation of the key that the window picks (`window.rs`); without one, to the key's
    /// one object.
    pub(super) async fn record(
        &self,
        alerts: &[Alert],
        strict: bool,
        window: Option<Duration>,
    ) -> Result<usize, AlertError> {
        let window = window.map(|w| chrono::Duration::from_std(w).unwrap_or(chrono::Duration::MAX));
        let mut groups: Vec<(String, String, Vec<Alert>)> = Vec::new();
        let mut index: HashMap<(String, String), usize> = HashMap::new();
        for a in alerts {
            let ns = a
                .namespace
                .clone()
                .filter(|n| !n.is_empty())
                .unwrap_or_else(|| self.namespace.clone());
            let name = object_name(a);
            match index.get(&(ns.clone(), name.clone())) {
                Some(&i) => groups[i].2.push(a.clone()),
                None => {
                    index.insert((ns.clone(), name.clone()), groups.len());
                    groups.push((ns, name, vec![a.clone()]));
                }
            }
        }
        let writes: Vec<futures::future::BoxFuture<'_, Result<usize, AlertError>>> = groups
            .into_iter()
            .map(|(ns, name, group)| {
                Box::pin(async move {
                    match window {
                        Some(w) => self.write_windowed(&ns, &name, &group, strict, w).await,
                        None => {
                            let refs: Vec<&Alert> = group.iter().collect();
                            let written = self.write_object(&ns, &name, &refs, strict, None, None);
                            written.await.map(|(n, _)| n)
                        }
                    }
                }) as _
            })
            .collect();
        futures::stream::iter(writes)
            .buffer_unordered(WRITE_CONCURRENCY)
            .try_fold(0usize, |sum, n| async move { Ok(sum + n) })
            .await
    }

    /// Creates or updates object `name` with `group` (alerts of one key, the earliest first);
    /// with a `window`, only with those within it of the object's first alert: the others
    /// are returned, not written. `read`: the object as just read (saves the first read).
    async fn write_object<'a>(
        &self,
        ns: &str,
        name: &str,
        group: &[&'a Alert],
        strict: bool,
        window: Option<chrono::Duration>,
        mut read: Option<AlertObject>,
    ) -> Result<(usize, Vec<&'a Alert>), AlertError> {
        let api = self.api(ns);
        let key = key_label(name.get(..34).unwrap_or(name)).to_string();
        let mut attempts = 0;
        loop {
            attempts += 1;
            if attempts > MAX_CONFLICT_RETRIES {
                return Err(kube_err(
                    &self.server,
                    format!(
                        "alert {ns}/{name}: still conflicting after {MAX_CONFLICT_RETRIES} attempts"
                    ),
                ));
            }
            let got = match read.take() {
                Some(o) => Ok(Some(o)),
                None => api.get_opt(name).await,
            };
            let mut obj = match got {
                Ok(Some(o)) => o,
                Ok(None) => {
                    let fresh = new_object(group[0], ns, name, &key)?;
                    match api.create(&PostParams::default(), &fresh).await {
                        Ok(o) => o,
                        // Another replica created it first: read it again and update it.
                        Err(e) if api_code(&e) == Some(409) => continue,
                        Err(e) => return Err(self.err(&format!("creating alert {ns}/{name}"), e)),
                    }
                }
                Err(e) => return Err(self.err(&format!("reading alert {ns}/{name}"), e)),
            };
            let first = spec_alert(&obj)?;
            let (inside, left): (Vec<&Alert>, Vec<&Alert>) = group
                .iter()
                .partition(|a| window.is_none_or(|w| within(first.time, a.time, w)));
            let mut status = obj.status.clone().unwrap_or_default();
            let new = merge_status(&mut status, &first, &inside, strict).map_err(|id| {
                kube_err(
                    &self.server,
                    format!("alert {id} is already stored (in {ns}/{name})"),
                )
            })?;
            if obj.status.as_ref() == Some(&status) {
                return Ok((new, left)); // all already counted (a replay)
            }
            obj.status = Some(status);
            match api.replace_status(name, &PostParams::default(), &obj).await {
                Ok(_) => return Ok((new, left)),
                // Another writer changed it since we read it (409), or retention deleted it
                // (404): read it again.
                Err(e) if matches!(api_code(&e), Some(409 | 404)) => {
                    tokio::time::sleep(backoff(attempts)).await;
                    continue;
                }
                Err(e) => return Err(self.err(&format!("updating alert {ns}/{name}"), e)),
            }
        }
    }

    /// The object that `a` is counted into: the earliest generation of its key (base name
    /// `base`) whose first alert is within `window` of `a.time` (its name and the object as
    /// read), else the name of the next generation (not created yet).
    pub(super) async fn generation(
        &self,
        api: &Api<AlertObject>,
        base: &str,
        a: &Alert,
        window: chrono::Duration,
    ) -> Result<(String, Option<AlertObject>), AlertError> {
        let ns = api_namespace(a, &self.namespace);
        // The first generation, found by name (also when written before the label existed):
        // the common case, one read.
        let first = api
            .get_opt(base)
            .await
            .map_err(|e| self.err(&format!("reading alert {ns}/{base}"), e))?;
        if let Some(o) = first.as_ref() {
            if first_time(o).is_some_and(|t| within(t, a.time, window)) {
                return Ok((base.to_string(), first));
            }
        }
        let list = api
            .list(&ListParams::default().labels(&format!("{LABEL_KEY}={}", key_label(base))))
            .await
            .map_err(|e| self.err("listing alerts.vulngate.io", e))?;
        let mut highest = u64::from(first.is_some());
        let mut best: Option<(DateTime<Utc>, u64, &AlertObject)> = None;
        for o in &list.items {
            let Some(n) = o
                .metadata
                .name
                .as_deref()
                .and_then(|name| generation_of(base, name))
            else {
                continue;
            };
            highest = highest.max(n);
            if let Some(t) = first_time(o).filter(|t| within(*t, a.time, window)) {
                if best.is_none_or(|b| (t, n) < (b.0, b.1)) {
                    best = Some((t, n, o));
                }
            }
        }
        Ok(match best {
            Some((_, n, o)) => (generation_name(base, n), Some(o.clone())),
            None => (generation_name(base, highest + 1), None),
        })
    }

    /// Writes `group` (alerts of one key, base name `base`) with the window: each alert into
    /// the generation [`generation`](Self::generation) picks for the earliest alert not
    /// written yet, with every other alert of the group within that generation's window.
    pub(super) async fn write_windowed(
        &self,
        ns: &str,
        base: &str,
        group: &[Alert],
        strict: bool,
        window: chrono::Duration,
    ) -> Result<usize, AlertError> {
        let api = self.api(ns);
        let mut rest: Vec<&Alert> = group.iter().collect();
        rest.sort_by(|a, b| a.time.cmp(&b.time).then_with(|| a.id.cmp(&b.id)));
        let mut taken = 0;
        // Each round takes at least the earliest alert unless it lost a race to another
        // writer's generation; bounded all the same.
        let mut rounds = 0;
        while !rest.is_empty() {
            rounds += 1;
            if rounds > group.len() + MAX_CONFLICT_RETRIES as usize {
                return Err(kube_err(
                    &self.server,
                    format!("alert {ns}/{base}: no generation of the key takes its alerts"),
                ));
            }
            let (name, read) = self.generation(&api, base, rest[0], window).await?;
            let (n, left) = self
                .write_object(ns, &name, &rest, strict, Some(window), read)
                .await?;
            taken += n;
            rest = left;
        }
        Ok(taken)
    }
}

/// The namespace an alert is stored in (for messages).
fn api_namespace<'a>(a: &'a Alert, own: &'a str) -> &'a str {
    a.namespace
        .as_deref()
        .filter(|n| !n.is_empty())
        .unwrap_or(own)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generation_names_round_trip() {
        let base = format!("a-{}", "0f".repeat(16));
        assert_eq!(generation_name(&base, 1), base);
        assert_eq!(generation_of(&base, &base), Some(1));
        for n in [2, 3, 17, 1_000_000] {
            let name = generation_name(&base, n);
            assert!(name.len() <= 63, "{name}");
            assert_eq!(generation_of(&base, &name), Some(n));
        }
        assert_eq!(generation_of(&base, &format!("{base}-1")), None);
        assert_eq!(generation_of(&base, &format!("{base}-x")), None);
        assert_eq!(generation_of(&base, &format!("{base}0")), None);
        assert_eq!(generation_of(&base, "a-other"), None);
        assert_eq!(key_label(&base), "0f".repeat(16));
    }

    #[test]
    fn the_window_is_the_sql_stores_inclusive_both_sides() {
        let t0 = DateTime::from_timestamp(1_000_000, 0).unwrap();
        let w = chrono::Duration::seconds(60);
        let at = |s: i64| DateTime::from_timestamp(1_000_000 + s, 0).unwrap();
        assert!(within(t0, at(0), w));
        assert!(within(t0, at(60), w));
        assert!(within(t0, at(-60), w));
        assert!(!within(t0, at(61), w));
        assert!(!within(t0, at(-61), w));
        // The largest window never overflows.
        assert!(within(t0, at(10_000_000), chrono::Duration::MAX));
    }
}
