//! `RegistryConfig`: the `registry:` section of vulngate.yaml.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The artifact types looked for by default (ARCHITECTURE.md section 4).
pub const DEFAULT_ARTIFACT_TYPES: &[&str] = &[
    crate::oci::VULNGATE_REPORT,
    crate::oci::IN_TOTO,
    crate::oci::SIGSTORE_BUNDLE_V03,
    crate::oci::SARIF,
    crate::oci::CYCLONEDX,
    crate::oci::OPENVEX,
];

/// Registry access, limits and trust policy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct RegistryConfig {
    /// Registries (`host` or `host:port`) reached over plain HTTP. Nothing else ever is.
    /// A listed host may also resolve to a loopback address.
    pub insecure_registries: Vec<String>,
    /// Host patterns (`*.azurecr.io`, `ghcr.io`, `registry:5000`) requests may go to. Empty: any
    /// host not denied. An exact (wildcard-free) entry also permits loopback addresses.
    pub allow_hosts: Vec<String>,
    /// Host patterns never contacted (checked first).
    pub deny_hosts: Vec<String>,
    pub auth: AuthConfig,
    /// Registry host -> PEM file of extra CA certificates trusted for that registry.
    pub ca_bundles: BTreeMap<String, PathBuf>,
    pub limits: Limits,
    pub timeouts: Timeouts,
    /// Platform of a multi-arch image whose findings count: `os/arch[/variant]`, or `all`.
    pub platform: String,
    /// Referrer artifact types that may carry findings. The default is every supported type.
    pub accepted_artifact_types: Vec<String>,
    /// Trust policies, first match wins (scope glob over `registry/repository`).
    pub trust_policies: Vec<TrustPolicy>,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        RegistryConfig {
            insecure_registries: Vec::new(),
            allow_hosts: Vec::new(),
            deny_hosts: Vec::new(),
            auth: AuthConfig::default(),
            ca_bundles: BTreeMap::new(),
            limits: Limits::default(),
            timeouts: Timeouts::default(),
            platform: "linux/amd64".to_string(),
            accepted_artifact_types: DEFAULT_ARTIFACT_TYPES
                .iter()
                .map(|s| s.to_string())
                .collect(),
            trust_policies: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct AuthConfig {
    /// A docker `config.json` or the `.dockerconfigjson` of a `kubernetes.io/dockerconfigjson`
    /// Secret (both have `auths`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub docker_config: Option<PathBuf>,
    /// Per-registry basic credentials (take precedence over the docker config).
    pub basic: Vec<BasicAuth>,
}

#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct BasicAuth {
    pub registry: String,
    pub username: String,
    /// The password inline, or...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    /// ...read from this file (a mounted Secret), trailing newline removed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_file: Option<PathBuf>,
}

impl std::fmt::Debug for BasicAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BasicAuth")
            .field("registry", &self.registry)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("password_file", &self.password_file)
            .finish()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct Limits {
    /// Largest manifest, index or signature envelope accepted (default 4 MiB).
    pub manifest_bytes: u64,
    /// Largest findings report accepted (default 64 MiB).
    pub report_bytes: u64,
    /// Most referrers of any type listed per subject (default 512; every page of the referrers
    /// API is followed). More: the lookup fails and the failure policy decides.
    pub max_referrers: usize,
    /// Most findings artifacts (after filtering by artifact type) evaluated per image (default
    /// 64). Every one of them is pulled and verified, and the worst case over them counts; more:
    /// the failure policy decides.
    pub max_findings_artifacts: usize,
    /// Most signature candidates (after filtering by artifact type) checked per findings
    /// artifact (default 16). More: the failure policy decides.
    pub max_signatures: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            manifest_bytes: 4 << 20,
            report_bytes: 64 << 20,
            max_referrers: 512,
            max_findings_artifacts: 64,
            max_signatures: 16,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct Timeouts {
    /// Per request, connect to last body byte (default `3s`).
    #[serde(with = "duration_str")]
    pub request: Duration,
    /// Whole lookup of one image (default `5s`, below the webhook's 10 s).
    #[serde(with = "duration_str")]
    pub lookup: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            request: Duration::from_secs(3),
            lookup: Duration::from_secs(5),
        }
    }
}

/// `require` of a trust policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Require {
    /// Reports are accepted unsigned (`verified: false`).
    None,
    /// At least one configured mechanism (notation or cosign) must verify.
    Any,
    /// Every configured mechanism must verify.
    All,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TrustPolicy {
    /// Glob over `registry/repository` (`*` matches `/` too): `ghcr.io/acme/*`, `*`.
    pub scope: String,
    /// Default: `any` when the policy has trust material, else `none`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub require: Option<Require>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notation: Option<NotationTrust>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cosign: Option<CosignTrust>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct NotationTrust {
    /// PEM files of trusted root (CA) certificates.
    pub trust_store: Vec<PathBuf>,
    /// Which signing certificates under those roots may sign reports for this scope, as the
    /// Notary Project trust policy defines `trustedIdentities`:
    /// `"x509.subject: C=US, ST=WA, O=acme, OU=scanners"` (C, ST and O required; the signing
    /// certificate's subject must hold every attribute of one entry) or `"*"`. Empty: any
    /// certificate that chains to the trust store.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub trusted_identities: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CosignTrust {
    /// PEM public keys (`cosign.pub`: ECDSA P-256/P-384, RSA or Ed25519).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub public_keys: Vec<PathBuf>,
    /// Keyless signatures (Fulcio certificate, Rekor entry), verified offline against a trusted
    /// root file, from the identities listed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keyless: Option<KeylessTrust>,
}

/// `cosign.keyless` of a trust policy.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct KeylessTrust {
    /// A Sigstore `trusted_root.json` (`application/vnd.dev.sigstore.trustedroot+json;version=0.1`):
    /// the Fulcio certificate authorities and Rekor logs trusted, with their validity windows.
    pub trusted_root: PathBuf,
    /// Certificate identities that may sign for the scope (at least one): the OIDC issuer
    /// (`issuer` or `issuerRegExp`) and the certificate's subject, a SAN URI or email (`subject`
    /// or `subjectRegExp`). Patterns must match the whole value.
    pub identities: Vec<KeylessIdentity>,
}

/// One accepted keyless certificate identity.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct KeylessIdentity {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer_reg_exp: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject_reg_exp: Option<String>,
}

/// Durations as `500ms`, `3s`, `2m` (or a bare number of seconds).
pub(crate) mod duration_str {
    use super::*;

    pub fn parse(s: &str) -> Result<Duration, String> {
        let s = s.trim();
        let (num, unit) = match s.find(|c: char| !c.is_ascii_digit() && c != '.') {
            Some(i) => (&s[..i], &s[i..]),
            None => (s, "s"),
        };
        let n: f64 = num
            .parse()
            .map_err(|_| format!("invalid duration {s:?} (expected e.g. 500ms, 3s, 1m)"))?;
        let secs = match unit {
            "ms" => n / 1000.0,
            "s" => n,
            "m" => n * 60.0,
            _ => return Err(format!("invalid duration unit in {s:?} (use ms, s or m)")),
        };
        if !(secs > 0.0 && secs < 86_400.0) {
            return Err(format!("duration {s:?} out of range"));
        }
        Ok(Duration::from_secs_f64(secs))
    }

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("{}ms", d.as_millis()))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            N(f64),
            S(String),
        }
        match Raw::deserialize(d)? {
            Raw::N(n) => parse(&n.to_string()).map_err(serde::de::Error::custom),
            Raw::S(s) => parse(&s).map_err(serde::de::Error::custom),
        }
    }
}

/// Platform selection for image indexes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlatformSelector {
    One {
        os: String,
        architecture: String,
        variant: Option<String>,
    },
    All,
}

impl PlatformSelector {
    pub fn parse(s: &str) -> Result<PlatformSelector, String> {
        if s.eq_ignore_ascii_case("all") {
            return Ok(PlatformSelector::All);
        }
        let parts: Vec<&str> = s.split('/').collect();
        match parts.as_slice() {
            [os, arch] if !os.is_empty() && !arch.is_empty() => Ok(PlatformSelector::One {
                os: os.to_string(),
                architecture: arch.to_string(),
                variant: None,
            }),
            [os, arch, v] if !os.is_empty() && !arch.is_empty() && !v.is_empty() => {
                Ok(PlatformSelector::One {
                    os: os.to_string(),
                    architecture: arch.to_string(),
                    variant: Some(v.to_string()),
                })
            }
            _ => Err(format!(
                "invalid platform {s:?} (expected os/arch[/variant] or all)"
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_section_round_trip_and_strictness() {
        let y = r#"
insecureRegistries: ["127.0.0.1:5000"]
allowHosts: ["*.azurecr.io", "127.0.0.1:5000"]
denyHosts: ["evil.example"]
auth: { dockerConfig: /etc/docker/config.json, basic: [{ registry: r.io, username: u, password: p }] }
caBundles: { "r.io": /etc/ca.pem }
limits: { manifestBytes: 1000, reportBytes: 2000 }
timeouts: { request: 500ms, lookup: 2s }
platform: linux/arm64/v8
acceptedArtifactTypes: [application/sarif+json]
trustPolicies:
  - scope: "r.io/team/*"
    require: all
    notation: { trustStore: [/roots.pem] }
    cosign: { publicKeys: [/cosign.pub] }
  - scope: "r.io/ci/*"
    cosign:
      keyless:
        trustedRoot: /trusted_root.json
        identities:
          - { issuer: "https://token.actions.githubusercontent.com", subject: "https://github.com/org/repo/.github/workflows/scan.yml@refs/heads/main" }
          - { issuer: "https://accounts.google.com", subjectRegExp: ".*@example.com" }
"#;
        let c: RegistryConfig = serde_yaml_ng::from_str(y).expect("parses");
        assert_eq!(c.timeouts.request, Duration::from_millis(500));
        assert_eq!(c.limits.manifest_bytes, 1000);
        assert_eq!(c.limits.max_referrers, 512);
        assert_eq!(c.trust_policies[0].require, Some(Require::All));
        let keyless = c.trust_policies[1]
            .cosign
            .as_ref()
            .and_then(|c| c.keyless.as_ref())
            .expect("keyless");
        assert_eq!(keyless.identities.len(), 2);
        assert_eq!(
            keyless.identities[1].subject_reg_exp.as_deref(),
            Some(".*@example.com")
        );
        assert!(serde_yaml_ng::from_str::<RegistryConfig>(
            "trustPolicies: [{ scope: '*', cosign: { keyless: { trustedRoot: /r, identities: [{ issuer: i, subjectRegex: s }] } } }]"
        )
        .is_err());
        assert!(format!("{:?}", c.auth).contains("<redacted>"));
        assert!(!format!("{:?}", c.auth).contains("password: Some(\"p\")"));
        let err = serde_yaml_ng::from_str::<RegistryConfig>("limits: { manifestByte: 1 }")
            .expect_err("unknown field");
        assert!(err.to_string().contains("manifestByte"), "{err}");
        assert!(serde_yaml_ng::from_str::<RegistryConfig>("timeouts: { request: 3h }").is_err());
    }

    #[test]
    fn platforms() {
        assert_eq!(PlatformSelector::parse("all"), Ok(PlatformSelector::All));
        assert!(PlatformSelector::parse("linux").is_err());
        assert!(matches!(
            PlatformSelector::parse("linux/arm/v7"),
            Ok(PlatformSelector::One {
                variant: Some(_),
                ..
            })
        ));
    }
}
