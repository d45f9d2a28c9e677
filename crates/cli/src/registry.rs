//! Looking up an image's findings in its registry (referrers of the image's digest).
//!
//! Not available in this build: `vulngate check` needs `--report`, `--findings-dir` or
//! `--offline`. This is the one place to plug the registry client in: it returns the image's
//! findings, the reason it has none (`UnscannedReason`), or an error that stops the check.

use anyhow::{bail, Result};
use vulngate_core::ImageRef;

use crate::reports::ImageFindings;

/// The findings of `image` according to its registry.
pub fn lookup(image: &ImageRef) -> Result<ImageFindings> {
    bail!(
        "no report for {}: registry lookup is not available in this build; pass --report/--findings-dir or --offline",
        image.original
    )
}
