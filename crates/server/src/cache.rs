//! The findings cache: the looked-up and analysed report of an image (the expensive part),
//! keyed by the normalised reference (which carries the digest when the image is pinned).
//! Decisions are not cached: the pure engine runs per request (microseconds), so a rule edit
//! applies to the very next request and the request context never needs to be in a key.
//!
//! Single-flight: concurrent lookups of one key run the source once (moka's entry API).
//! Source failures are not cached.

use std::sync::Arc;
use std::time::{Duration, Instant};

use moka::future::Cache;
use moka::Expiry;
use vulngate_core::{AnalyzedReport, ImageRef, UnscannedReason};
use vulngate_registry::Credentials;

use crate::config::CacheConfig;
use crate::metrics::Metrics;
use crate::source::{FindingsSource, SourceError};

/// An image's findings, ready for the engine.
#[derive(Debug, Clone)]
pub struct Analyzed {
    /// The digest the reference resolves to, when known.
    pub digest: Option<String>,
    pub subject: Result<Arc<AnalyzedReport>, UnscannedReason>,
    /// The source's warnings about the lookup (see [`crate::SourceLookup::warnings`]).
    pub warnings: Vec<String>,
    /// `platform: all` on a multi-arch image: each platform's findings (the verdict is the
    /// worst over them). Empty otherwise.
    pub platforms: Vec<PlatformAnalyzed>,
}

/// One platform of a multi-arch image, ready for the engine.
#[derive(Debug, Clone)]
pub struct PlatformAnalyzed {
    pub platform: String,
    pub digest: Option<String>,
    pub subject: Result<Arc<AnalyzedReport>, UnscannedReason>,
}

#[derive(Debug, Clone, Copy)]
struct TtlPolicy {
    ttl: Duration,
    unscanned_ttl: Duration,
}

impl Expiry<String, Arc<Analyzed>> for TtlPolicy {
    fn expire_after_create(
        &self,
        _key: &String,
        value: &Arc<Analyzed>,
        _created_at: Instant,
    ) -> Option<Duration> {
        Some(match value.subject {
            Ok(_) => self.ttl,
            Err(_) => self.unscanned_ttl,
        })
    }
}

/// Cache in front of a [`FindingsSource`].
#[derive(Debug, Clone)]
pub struct FindingsCache {
    source: Arc<dyn FindingsSource>,
    cache: Option<Cache<String, Arc<Analyzed>>>,
    metrics: Metrics,
}

impl FindingsCache {
    pub fn new(source: Arc<dyn FindingsSource>, cfg: &CacheConfig, metrics: Metrics) -> Self {
        let cache = (cfg.max_entries > 0).then(|| {
            Cache::builder()
                .max_capacity(cfg.max_entries)
                .expire_after(TtlPolicy {
                    ttl: cfg.ttl,
                    unscanned_ttl: cfg.unscanned_ttl,
                })
                .build()
        });
        FindingsCache {
            source,
            cache,
            metrics,
        }
    }

    /// The cached findings of `image`, if any (counted as a hit); `None` on a miss, which
    /// [`get`](Self::get) then resolves (and counts). Cheap: no lookup, no task, no allocation
    /// beyond the key, so the warm path of a request needs no spawned task.
    pub async fn get_cached(&self, image: &ImageRef) -> Option<Arc<Analyzed>> {
        let cache = self.cache.as_ref()?;
        let hit = cache.get(&image.normalized()).await?;
        self.metrics.cache_hit();
        Some(hit)
    }

    /// The analysed findings of `image`, from the cache or the source.
    pub async fn get(&self, image: &ImageRef) -> Result<Arc<Analyzed>, SourceError> {
        let Some(cache) = &self.cache else {
            self.metrics.cache_miss();
            return fetch(self.source.as_ref(), image).await.map(Arc::new);
        };
        let source = self.source.clone();
        let entry = cache
            .entry(image.normalized())
            .or_try_insert_with(async move { fetch(source.as_ref(), image).await.map(Arc::new) })
            .await
            .map_err(|e: Arc<SourceError>| (*e).clone())?;
        if entry.is_fresh() {
            self.metrics.cache_miss();
        } else {
            self.metrics.cache_hit();
        }
        Ok(entry.into_value())
    }

    /// [`get`](Self::get) with a pod's registry credentials for a lookup. The key stays the
    /// image: a report fetched with one pod's credentials may answer another pod's request
    /// for the same image (docs/architecture.md section 7).
    pub async fn get_with_credentials(
        &self,
        image: &ImageRef,
        credentials: Option<Arc<Credentials>>,
    ) -> Result<Arc<Analyzed>, SourceError> {
        let Some(credentials) = credentials else {
            return self.get(image).await;
        };
        let Some(cache) = &self.cache else {
            self.metrics.cache_miss();
            return fetch_with(self.source.as_ref(), image, Some(&credentials))
                .await
                .map(Arc::new);
        };
        let source = self.source.clone();
        let entry = cache
            .entry(image.normalized())
            .or_try_insert_with(async move {
                fetch_with(source.as_ref(), image, Some(&credentials))
                    .await
                    .map(Arc::new)
            })
            .await
            .map_err(|e: Arc<SourceError>| (*e).clone())?;
        if entry.is_fresh() {
            self.metrics.cache_miss();
        } else {
            self.metrics.cache_hit();
        }
        Ok(entry.into_value())
    }

    /// Keeps `found`, the findings of the tag reference `image`, also under `image` pinned to
    /// the digest they were resolved to (when not cached yet): `/mutate` writes that pinned
    /// reference into the object, and the validating call that follows then finds it here
    /// instead of looking the digest up again. The same findings: a lookup of the tag
    /// resolves the digest and reads the digest's referrers.
    pub async fn remember_pinned(&self, image: &ImageRef, found: &Arc<Analyzed>) {
        let (Some(cache), Some(digest)) = (&self.cache, &found.digest) else {
            return;
        };
        if image.digest.is_some() {
            return;
        }
        let key = image.with_digest(digest).normalized();
        if !cache.contains_key(&key) {
            cache.insert(key, found.clone()).await;
        }
    }

    /// The cached findings of `image`, without looking it up (and without counting).
    pub async fn peek(&self, image: &ImageRef) -> Option<Arc<Analyzed>> {
        self.cache.as_ref()?.get(&image.normalized()).await
    }

    /// Drops every cached entry.
    pub fn clear(&self) {
        if let Some(c) = &self.cache {
            c.invalidate_all();
        }
    }
}

async fn fetch(source: &dyn FindingsSource, image: &ImageRef) -> Result<Analyzed, SourceError> {
    fetch_with(source, image, None).await
}

async fn fetch_with(
    source: &dyn FindingsSource,
    image: &ImageRef,
    credentials: Option<&Credentials>,
) -> Result<Analyzed, SourceError> {
    let l = source.lookup_with_credentials(image, credentials).await?;
    // Once per lookup, not once per admission that reads the cached result: at load, a
    // warning line per request cost a tenth of a warm request's CPU (docs/benchmarks.md).
    for w in &l.warnings {
        tracing::warn!(image = %image, warning = %w, "findings lookup warning");
    }
    let pinned = match &l.digest {
        Some(d) => image.with_digest(d),
        None => image.clone(),
    };
    // Every platform's report is analysed for the image as pinned to the resolved digest
    // (the index), as `vulngate check` does.
    let analyze = |f: crate::source::FoundReport| {
        Arc::new(AnalyzedReport::new(
            &f.report,
            f.identity,
            &f.vex,
            Some(&pinned),
        ))
    };
    let platforms = l
        .platforms
        .into_iter()
        .map(|p| PlatformAnalyzed {
            platform: p.platform,
            digest: p.digest,
            subject: p.report.map(analyze),
        })
        .collect();
    Ok(Analyzed {
        digest: l.digest,
        subject: l.report.map(analyze),
        warnings: l.warnings,
        platforms,
    })
}
