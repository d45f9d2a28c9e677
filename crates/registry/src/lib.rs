//! vulngate's OCI side: resolve an image reference to digests, discover the findings artifacts
//! attached to it as referrers, pull them (size-capped, digest-verified), verify their signatures
//! against the trust policy and parse them with `vulngate_core::findings`. Also `attach`: push a
//! report as a referrer.
//!
//! ```no_run
//! # async fn f() -> Result<(), vulngate_registry::Error> {
//! use vulngate_registry::{RegistryClient, RegistryConfig};
//! let client = RegistryClient::new(RegistryConfig::default())?;
//! let image = vulngate_core::ImageRef::parse("ghcr.io/acme/app:v1").expect("reference");
//! let lookup = client.lookup(&image).await;
//! match &lookup.report {
//!     Ok(found) => println!("{} findings, verified: {}", found.report.findings.len(), found.identity.verified),
//!     Err(reason) => println!("unscanned: {reason}"),
//! }
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]

mod attach;
mod auth;
pub mod config;
mod error;
mod guard;
mod http;
pub mod keyless;
mod lookup;
pub mod oci;
mod select;
pub mod verify;

use glob::Pattern;
use vulngate_core::model::{FindingsReport, ReportIdentity, VexStatement};
use vulngate_core::UnscannedReason;

pub use attach::{AttachRequest, Attached};
pub use auth::Credentials;
pub use config::{PlatformSelector, RegistryConfig, Require, TrustPolicy};
pub use error::{Error, ErrorKind, Refusal, Result};

use http::Transport;
use verify::TrustMaterial;

/// A findings report found, verified (as the policy requires) and parsed.
#[derive(Debug, Clone, PartialEq)]
pub struct Found {
    pub report: FindingsReport,
    pub identity: ReportIdentity,
    /// Suppressions from OpenVEX artifacts attached to the image (verified like reports).
    pub vex: Vec<VexStatement>,
    /// The digest of the image manifest / index the artifact is attached to.
    pub attached_to: String,
    /// The artifact type it was found under.
    pub artifact_type: String,
    /// What verified it (`notation: ...`, `cosign: ...`); empty when unverified.
    pub signatures: Vec<String>,
    /// Digests of every findings report merged into `report` (the worst case over all the
    /// image's reports; `identity.digest`, the one with the newest signed scan time, first).
    pub reports: Vec<String>,
}

/// One platform of a multi-arch image (in `platform: all` mode).
#[derive(Debug, Clone, PartialEq)]
pub struct PlatformLookup {
    pub platform: String,
    pub digest: String,
    pub report: Result<Found, UnscannedReason>,
}

/// The result of looking an image up: what the CLI/webhook needs to build an engine `Subject`.
#[derive(Debug, Clone, PartialEq)]
pub struct Lookup {
    /// The digest the reference resolves to (an index for multi-arch images); `None` when the
    /// registry could not be asked.
    pub digest: Option<String>,
    /// The selected platform manifest of an index (single-platform mode).
    pub platform_digest: Option<String>,
    /// The worst case over the valid findings reports attached to the image (for an index: to the index or
    /// the selected platform manifest), or why there is none. In `platform: all` mode, the
    /// reports attached to the index itself; see `platforms` for each platform.
    pub report: Result<Found, UnscannedReason>,
    /// `platform: all` mode: every platform manifest of the index with its own result (reports
    /// attached to the index count for every platform).
    pub platforms: Vec<PlatformLookup>,
    /// Things an operator should know (unsigned reports accepted, platform not in the index...).
    pub warnings: Vec<String>,
    /// Why the image itself could not be reached, when it could not: the host policy refused
    /// it, the registry could not be asked or failed to resolve the reference, the lookup
    /// deadline passed (`report` then says `RegistryUnavailable`). `None` once the image's
    /// manifest was read: what was wrong with its artifacts is in `report`.
    pub unreachable: Option<ErrorKind>,
}

/// One report to judge for an image: the image's own (a single-platform image, or the selected
/// platform), or one platform's of a multi-arch image in `platform: all` mode. `vulngate check`
/// reports each; the webhook takes the worst decision over them.
#[derive(Debug, Clone, PartialEq)]
pub struct Judged {
    /// The platform (`linux/arm64`), in `platform: all` mode.
    pub platform: Option<String>,
    /// The platform manifest the report is for (the index is `Lookup::digest`).
    pub platform_digest: Option<String>,
    pub report: Result<Found, UnscannedReason>,
}

impl Lookup {
    /// What is to be judged: every platform in `platform: all` mode (reports attached to the
    /// index count for every platform; a platform without a report is unscanned), else the
    /// one report. The one place `check` and the webhook read a lookup's platforms.
    pub fn judged(&self) -> Vec<Judged> {
        if self.platforms.is_empty() {
            return vec![Judged {
                platform: None,
                platform_digest: self.platform_digest.clone(),
                report: self.report.clone(),
            }];
        }
        self.platforms
            .iter()
            .map(|p| Judged {
                platform: Some(p.platform.clone()),
                platform_digest: Some(p.digest.clone()),
                report: p.report.clone(),
            })
            .collect()
    }
}

#[derive(Debug)]
pub(crate) struct Policy {
    scope: Pattern,
    require: Require,
    trust: TrustMaterial,
}

/// The registry client. Cheap to share (`Arc`); holds connection pools and a token cache.
#[derive(Debug)]
pub struct RegistryClient {
    cfg: RegistryConfig,
    transport: Transport,
    platform: PlatformSelector,
    policies: Vec<Policy>,
    /// Any trust material configured at all (else reports are accepted unsigned).
    any_trust: bool,
}

impl RegistryClient {
    /// Validates the configuration and loads trust material, CA bundles and credentials.
    pub fn new(cfg: RegistryConfig) -> Result<RegistryClient> {
        let platform = PlatformSelector::parse(&cfg.platform).map_err(Error::Config)?;
        if cfg.limits.manifest_bytes == 0 || cfg.limits.report_bytes == 0 {
            return Err(Error::Config("limits must be positive".into()));
        }
        if cfg.limits.max_referrers == 0
            || cfg.limits.max_findings_artifacts == 0
            || cfg.limits.max_signatures == 0
        {
            return Err(Error::Config(
                "limits.maxReferrers, maxFindingsArtifacts and maxSignatures must be positive"
                    .into(),
            ));
        }
        if cfg.accepted_artifact_types.is_empty() {
            return Err(Error::Config("acceptedArtifactTypes is empty".into()));
        }
        let mut policies = Vec::new();
        for (i, p) in cfg.trust_policies.iter().enumerate() {
            let scope = Pattern::new(&p.scope).map_err(|e| {
                Error::Config(format!("trustPolicies[{i}].scope {:?}: {e}", p.scope))
            })?;
            let roots = p
                .notation
                .as_ref()
                .map(|n| n.trust_store.clone())
                .unwrap_or_default();
            let identities = p
                .notation
                .as_ref()
                .map(|n| n.trusted_identities.clone())
                .unwrap_or_default();
            let keys = p
                .cosign
                .as_ref()
                .map(|c| c.public_keys.clone())
                .unwrap_or_default();
            let trust = TrustMaterial::load_with_keyless(
                &roots,
                &identities,
                &keys,
                p.notation.is_some(),
                p.cosign.is_some(),
                p.cosign.as_ref().and_then(|c| c.keyless.as_ref()),
            )
            .map_err(|e| Error::Config(format!("trustPolicies[{i}]: {e}")))?;
            let has = trust.has_notation || trust.has_cosign;
            let require = p
                .require
                .unwrap_or(if has { Require::Any } else { Require::None });
            if require != Require::None && !has {
                return Err(Error::Config(format!(
                    "trustPolicies[{i}]: require {require:?} without notation or cosign trust material"
                )));
            }
            policies.push(Policy {
                scope,
                require,
                trust,
            });
        }
        let any_trust = policies
            .iter()
            .any(|p| p.trust.has_notation || p.trust.has_cosign);
        let transport = Transport::new(&cfg)?;
        Ok(RegistryClient {
            cfg,
            transport,
            platform,
            policies,
            any_trust,
        })
    }

    pub fn config(&self) -> &RegistryConfig {
        &self.cfg
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(y: &str) -> RegistryConfig {
        serde_yaml_ng::from_str(y).expect("config")
    }

    const PUB: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/manifests/cosign.pub"
    );
    const CRT: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/manifests/notation-vulngate-test.crt"
    );

    #[test]
    fn signatures_required_once_trust_material_is_configured() {
        let c = RegistryClient::new(cfg(&format!(
            "trustPolicies: [{{ scope: '*', cosign: {{ publicKeys: [{PUB}] }}, notation: {{ trustStore: [{CRT}] }} }}]"
        )))
        .expect("client");
        assert!(c.any_trust);
        assert_eq!(c.policies[0].require, Require::Any);
        let c = RegistryClient::new(RegistryConfig::default()).expect("client");
        assert!(!c.any_trust);
    }

    #[test]
    fn invalid_configurations_are_refused() {
        for (y, expect) in [
            ("platform: linux", "invalid platform"),
            (
                "trustPolicies: [{ scope: '*', require: all }]",
                "without notation or cosign",
            ),
            (
                "trustPolicies: [{ scope: '*', cosign: { publicKeys: [/nonexistent.pub] } }]",
                "/nonexistent.pub",
            ),
            (
                &format!("trustPolicies: [{{ scope: '*', notation: {{ trustStore: [{PUB}] }} }}]"),
                "no PEM certificate",
            ),
            (
                &format!("trustPolicies: [{{ scope: '*', cosign: {{ publicKeys: [{CRT}] }} }}]"),
                "not a PEM public key",
            ),
            (
                "acceptedArtifactTypes: []",
                "acceptedArtifactTypes is empty",
            ),
            ("caBundles: { r.io: /nonexistent.pem }", "caBundles[r.io]"),
            (
                "auth: { basic: [{ registry: r.io, username: u }] }",
                "exactly one of password",
            ),
        ] {
            let e = RegistryClient::new(cfg(y)).expect_err(y).to_string();
            assert!(e.contains(expect), "{y}: {e}");
        }
    }
}
