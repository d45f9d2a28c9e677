//! The trust policy `vulngate install` renders: findings reports must be signed by the given
//! Notation roots or cosign keys (embedded in the ConfigMap, mounted under `/etc/vulngate/trust`),
//! unless `--allow-unsigned-reports`.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};

use super::Args;

/// Without `--allow-unsigned-reports`, a Notation root or a cosign key is required: the
/// rendered trust policy requires a signature by them.
pub(super) fn require_signatures(args: &Args) -> Result<()> {
    if !args.allow_unsigned_reports
        && args.notation_trust_store.is_empty()
        && args.cosign_public_key.is_empty()
    {
        bail!(
            "findings reports must be signed: give --notation-trust-store FILE and/or \
             --cosign-public-key FILE (the rendered trust policy requires a signature by them), \
             or --allow-unsigned-reports to accept unsigned reports"
        );
    }
    Ok(())
}

/// Where the trust files are mounted, and their ConfigMap keys: (key, source file).
pub(super) const TRUST_DIR: &str = "/etc/vulngate/trust";

pub(super) fn trust_keys(args: &Args) -> Vec<(String, &Path)> {
    let n = args
        .notation_trust_store
        .iter()
        .enumerate()
        .map(|(i, p)| (format!("notation-root-{i}.pem"), p.as_path()));
    let c = args
        .cosign_public_key
        .iter()
        .enumerate()
        .map(|(i, p)| (format!("cosign-{i}.pub"), p.as_path()));
    n.chain(c).collect()
}

/// The trust files' contents by ConfigMap key, read (at most 1 MiB each) and checked by loading
/// them as the server will.
pub(super) fn trust_files(args: &Args) -> Result<BTreeMap<String, String>> {
    const MAX: u64 = 1 << 20;
    let mut out = BTreeMap::new();
    for (key, path) in trust_keys(args) {
        let len = std::fs::metadata(path)
            .with_context(|| format!("reading {}", path.display()))?
            .len();
        if len > MAX {
            bail!("{}: larger than {MAX} bytes", path.display());
        }
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        out.insert(key, text);
    }
    vulngate_registry::verify::TrustMaterial::load(
        &args.notation_trust_store,
        &args.notation_trusted_identity,
        &args.cosign_public_key,
        !args.notation_trust_store.is_empty(),
        !args.cosign_public_key.is_empty(),
    )
    .map_err(|e| anyhow!("trust material: {e}"))?;
    Ok(out)
}

/// The `registry:` section: `{}` with --allow-unsigned-reports, else one trust policy for every
/// image that requires a signature by the given roots or keys.
pub(super) fn registry_section(args: &Args) -> serde_json::Value {
    if args.allow_unsigned_reports {
        return serde_json::json!({});
    }
    let path = |k: &str| format!("{TRUST_DIR}/{k}");
    let keys = trust_keys(args);
    let notation: Vec<String> = keys
        .iter()
        .filter(|(k, _)| k.starts_with("notation-"))
        .map(|(k, _)| path(k))
        .collect();
    let cosign: Vec<String> = keys
        .iter()
        .filter(|(k, _)| k.starts_with("cosign-"))
        .map(|(k, _)| path(k))
        .collect();
    let mut policy = serde_json::json!({ "scope": "*", "require": "any" });
    if !notation.is_empty() {
        let mut n = serde_json::json!({ "trustStore": notation });
        if !args.notation_trusted_identity.is_empty() {
            n["trustedIdentities"] = serde_json::json!(args.notation_trusted_identity);
        }
        policy["notation"] = n;
    }
    if !cosign.is_empty() {
        policy["cosign"] = serde_json::json!({ "publicKeys": cosign });
    }
    serde_json::json!({ "trustPolicies": [policy] })
}
