//! What one review may cost: how many distinct images it may name (`maxImagesPerRequest`)
//! and how many registry lookups run at once, per review (`maxConcurrentLookupsPerRequest`)
//! and across all reviews (`maxConcurrentLookups`); and the metrics of these limits and of
//! break-glass ([`GuardMetrics`]).

use std::collections::HashSet;
use std::sync::Arc;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use vulngate_core::workload::ContainerImage;

use crate::config::Config;

/// Up to this many containers, de-duplication compares in place (at most 120 comparisons, no
/// allocation: the common pod of one to a few containers); beyond it, a hash set (linear).
const COMPARE_IN_PLACE: usize = 16;

/// The distinct images of `containers` in first-seen order, without those `skipped` says
/// are skipped (asked once per distinct image). Linear in the number of containers; the
/// strings are moved, not copied.
pub(crate) fn distinct_images(
    containers: Vec<ContainerImage>,
    mut skipped: impl FnMut(&str) -> bool,
) -> Vec<String> {
    let first: Vec<bool> = if containers.len() <= COMPARE_IN_PLACE {
        (0..containers.len())
            .map(|i| {
                !containers[..i]
                    .iter()
                    .any(|c| c.image == containers[i].image)
            })
            .collect()
    } else {
        let mut seen = HashSet::with_capacity(containers.len());
        containers
            .iter()
            .map(|c| seen.insert(c.image.as_str()))
            .collect()
    };
    containers
        .into_iter()
        .zip(first)
        .filter(|(c, first)| *first && !skipped(&c.image))
        .map(|(c, _)| c.image)
        .collect()
}

/// The answer's message for a review naming more distinct images than the cap.
pub(crate) fn too_many_images_message(kind: &str, count: usize, cap: usize) -> String {
    format!(
        "vulngate will not evaluate this {kind}: it names {count} distinct images, more than \
         maxImagesPerRequest ({cap})"
    )
}

/// The registry lookup slots shared by every review (`maxConcurrentLookups`); cheap to
/// clone (the clones share the slots).
#[derive(Debug, Clone)]
pub(crate) struct LookupSlots {
    total: Arc<Semaphore>,
    total_size: usize,
    per_request: usize,
    in_flight: Gauge,
}

/// The slots one lookup holds (released on drop).
#[derive(Debug)]
pub(crate) struct Held {
    _review: OwnedSemaphorePermit,
    _total: OwnedSemaphorePermit,
    in_flight: Gauge,
}

impl Drop for Held {
    fn drop(&mut self) {
        self.in_flight.dec();
    }
}

impl LookupSlots {
    pub fn new(config: &Config, metrics: &GuardMetrics) -> LookupSlots {
        LookupSlots {
            total: Arc::new(Semaphore::new(config.max_concurrent_lookups)),
            total_size: config.max_concurrent_lookups,
            per_request: config.max_concurrent_lookups_per_request,
            in_flight: metrics.lookups_in_flight.clone(),
        }
    }

    /// The slots of one review (`maxConcurrentLookupsPerRequest`).
    pub fn review(&self) -> Arc<Semaphore> {
        Arc::new(Semaphore::new(self.per_request))
    }

    /// Waits for one of the review's slots, then one of the shared ones, until `at`. On
    /// time out, the step that ran out (for [`Deadline::describe`](crate::verdict::Deadline::describe)).
    pub async fn acquire(&self, review: Arc<Semaphore>, at: Instant) -> Result<Held, String> {
        let review_wait = || {
            format!(
                "waiting for one of the review's {} registry lookup slots \
                 (maxConcurrentLookupsPerRequest)",
                self.per_request
            )
        };
        let total_wait = || {
            format!(
                "waiting for one of the {} registry lookup slots shared by all reviews \
                 (maxConcurrentLookups)",
                self.total_size
            )
        };
        // The semaphores are never closed: an error there is reported as the wait's. A slot
        // freed at the deadline itself (by a lookup that ran out) is too late as well.
        let r = tokio::time::timeout_at(at, review.acquire_owned())
            .await
            .ok()
            .and_then(Result::ok)
            .filter(|_| Instant::now() < at)
            .ok_or_else(review_wait)?;
        let t = tokio::time::timeout_at(at, self.total.clone().acquire_owned())
            .await
            .ok()
            .and_then(Result::ok)
            .filter(|_| Instant::now() < at)
            .ok_or_else(total_wait)?;
        self.in_flight.inc();
        Ok(Held {
            _review: r,
            _total: t,
            in_flight: self.in_flight.clone(),
        })
    }
}

/// Metrics of the review limits and of break-glass.
#[derive(Debug, Clone, Default)]
pub struct GuardMetrics {
    lookups_in_flight: Gauge,
    over_image_limit: Counter,
    break_glass: Family<Vec<(&'static str, String)>, Counter>,
}

impl GuardMetrics {
    pub(crate) fn register(registry: &mut Registry) -> GuardMetrics {
        let m = GuardMetrics::default();
        registry.register(
            "registry_lookups_in_flight",
            "Findings lookups of admission reviews holding a registry lookup slot \
             (at most maxConcurrentLookups)",
            m.lookups_in_flight.clone(),
        );
        registry.register(
            "reviews_over_image_limit",
            "Reviews naming more distinct images than maxImagesPerRequest (decided by the \
             failure policy)",
            m.over_image_limit.clone(),
        );
        registry.register(
            "break_glass",
            "Break-glass annotations by result (accepted, refused: the user is not allowed)",
            m.break_glass.clone(),
        );
        m
    }

    pub(crate) fn over_image_limit(&self) {
        self.over_image_limit.inc();
    }

    pub(crate) fn break_glass(&self, result: &'static str) {
        self.break_glass
            .get_or_create(&vec![("result", result.to_string())])
            .inc();
    }

    /// `vulngate_break_glass_total{result}`.
    pub fn break_glass_total(&self, result: &str) -> u64 {
        self.break_glass
            .get_or_create(&vec![("result", result.to_string())])
            .get()
    }

    /// `vulngate_reviews_over_image_limit_total`.
    pub fn over_image_limit_total(&self) -> u64 {
        self.over_image_limit.get()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn containers(images: &[&str]) -> Vec<ContainerImage> {
        images
            .iter()
            .enumerate()
            .map(|(i, im)| ContainerImage {
                name: format!("c{i}"),
                image: im.to_string(),
                kind: vulngate_core::workload::ContainerKind::Container,
            })
            .collect()
    }

    #[test]
    fn distinct_in_order_in_place_and_hashed() {
        let few = ["a", "b", "a", "c", "b"];
        assert_eq!(
            distinct_images(containers(&few), |_| false),
            ["a", "b", "c"]
        );
        // Beyond COMPARE_IN_PLACE: the hash set, same answer.
        let many: Vec<String> = (0..1000).map(|i| format!("img{}", i % 37)).collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        let got = distinct_images(containers(&many), |_| false);
        let want: Vec<String> = (0..37).map(|i| format!("img{i}")).collect();
        assert_eq!(got, want);
        // Skipped images are asked once each and left out.
        let mut asked = Vec::new();
        let got = distinct_images(containers(&many), |i| {
            asked.push(i.to_string());
            i.ends_with('3')
        });
        assert_eq!(asked.len(), 37);
        assert!(got.iter().all(|i| !i.ends_with('3')) && got.len() == 37 - 4);
    }
}
