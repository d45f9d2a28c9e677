//! The MutatingWebhookConfiguration of digest pinning (`POST /mutate`), made from the
//! validating one so that the two cannot drift: same service, caBundle, rules, namespace and
//! object selectors, timeout and failure policy; `sideEffects: None` (pinning records
//! nothing) and `reinvocationPolicy: IfNeeded` (a later mutating webhook that changes an
//! image gets it pinned too). Left out with `--no-pin-digests`.

use anyhow::{bail, Result};
use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhook, MutatingWebhookConfiguration, ValidatingWebhookConfiguration,
};

/// The comment above the object in the rendered YAML.
pub const COMMENT: &str =
    "Digest pinning: the same requests as the validating webhook go to /mutate first, which\n\
     rewrites every image tag to the digest its findings were looked up for (what is judged is\n\
     what runs). Leave it out with --no-pin-digests.";

/// The mutating webhook's name: `pin.<validating webhook name>`.
pub fn webhook_name(validating: &str) -> Result<String> {
    let name = format!("pin.{validating}");
    if name.len() > 253 {
        bail!(
            "--webhook-name {validating:?}: the digest-pinning webhook pin.{validating} is longer \
             than 253 characters (shorten the name or give --no-pin-digests)"
        );
    }
    Ok(name)
}

/// The MutatingWebhookConfiguration for `validating` (its first webhook), named like it.
pub fn configuration(
    validating: &ValidatingWebhookConfiguration,
) -> Result<MutatingWebhookConfiguration> {
    let Some(v) = validating.webhooks.as_ref().and_then(|w| w.first()) else {
        bail!("the validating webhook configuration has no webhook");
    };
    let mut client_config = v.client_config.clone();
    if let Some(s) = client_config.service.as_mut() {
        s.path = Some("/mutate".into());
    }
    if let Some(url) = client_config.url.as_mut() {
        match url.strip_suffix("/validate") {
            Some(base) => *url = format!("{base}/mutate"),
            None => bail!("the validating webhook's URL {url} does not end in /validate"),
        }
    }
    Ok(MutatingWebhookConfiguration {
        metadata: validating.metadata.clone(),
        webhooks: Some(vec![MutatingWebhook {
            name: webhook_name(&v.name)?,
            admission_review_versions: v.admission_review_versions.clone(),
            client_config,
            failure_policy: v.failure_policy.clone(),
            match_policy: v.match_policy.clone(),
            namespace_selector: v.namespace_selector.clone(),
            object_selector: v.object_selector.clone(),
            rules: v.rules.clone(),
            side_effects: "None".into(),
            timeout_seconds: v.timeout_seconds,
            reinvocation_policy: Some("IfNeeded".into()),
            match_conditions: v.match_conditions.clone(),
        }]),
    })
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::admissionregistration::v1::{
        ServiceReference, ValidatingWebhook, WebhookClientConfig,
    };

    use super::*;

    fn validating(url: Option<&str>) -> ValidatingWebhookConfiguration {
        ValidatingWebhookConfiguration {
            metadata: Default::default(),
            webhooks: Some(vec![ValidatingWebhook {
                name: "vulngate.example.com".into(),
                client_config: WebhookClientConfig {
                    url: url.map(str::to_string),
                    service: url.is_none().then(|| ServiceReference {
                        name: "vulngate".into(),
                        namespace: "ns".into(),
                        path: Some("/validate".into()),
                        port: Some(443),
                    }),
                    ca_bundle: None,
                },
                failure_policy: Some("Ignore".into()),
                side_effects: "NoneOnDryRun".into(),
                timeout_seconds: Some(7),
                ..Default::default()
            }]),
        }
    }

    #[test]
    fn follows_the_validating_webhook() -> Result<()> {
        let m = configuration(&validating(None))?;
        let w = &m.webhooks.as_ref().expect("webhooks")[0];
        assert_eq!(w.name, "pin.vulngate.example.com");
        let service = w.client_config.service.as_ref().expect("service");
        assert_eq!(service.path.as_deref(), Some("/mutate"));
        assert_eq!(service.name, "vulngate");
        assert_eq!(w.failure_policy.as_deref(), Some("Ignore"));
        assert_eq!(w.timeout_seconds, Some(7));
        assert_eq!(w.side_effects, "None");
        assert_eq!(w.reinvocation_policy.as_deref(), Some("IfNeeded"));

        let m = configuration(&validating(Some("https://gate.example.com:8443/validate")))?;
        let w = &m.webhooks.as_ref().expect("webhooks")[0];
        assert_eq!(
            w.client_config.url.as_deref(),
            Some("https://gate.example.com:8443/mutate")
        );
        assert!(configuration(&validating(Some("https://gate.example.com/check"))).is_err());
        assert!(webhook_name(&format!("{}.example.com", "a".repeat(240))).is_err());
        Ok(())
    }
}
