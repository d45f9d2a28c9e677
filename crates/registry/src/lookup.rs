//! `RegistryClient::lookup`: resolve -> discover referrers -> pull -> verify -> parse.

use std::collections::HashMap;

use chrono::Utc;
use vulngate_core::findings::{self, Parsed};
use vulngate_core::{ImageRef, UnscannedReason};

use crate::auth::Credentials;
use crate::config::{PlatformSelector, Require};
use crate::error::{Error, ErrorKind};
use crate::http::Repo;
use crate::oci::{self, Descriptor, Manifest};
use crate::select::{self, Content, Evaluated, Verdict};
use crate::verify::{self, Target};
use crate::{Found, Lookup, PlatformLookup, Policy, RegistryClient};

/// Predicate types of attestations that carry findings or VEX.
fn is_findings_predicate(p: &str) -> bool {
    p.starts_with("https://in-toto.io/attestation/vulns")
        || p.starts_with("https://cosign.sigstore.dev/attestation/vuln/")
        || p.starts_with("https://openvex.dev/ns")
}

/// Which policy applies to an image, and what it requires.
enum Trust<'a> {
    /// No trust material anywhere: accept unsigned, warn.
    Unconfigured,
    Policy(&'a Policy),
    /// Trust material exists, but no policy covers this image.
    Uncovered,
}

#[derive(Debug, Clone)]
struct Candidate {
    desc: Descriptor,
    artifact_type: String,
    /// The image manifest / index digest it is attached to.
    subject: String,
}

/// Per-lookup state: caches so no manifest is fetched twice.
struct Ctx<'a> {
    repo: Repo<'a>,
    /// `registry/repository`, for messages.
    image_name: String,
    manifests: HashMap<String, (Manifest, u64)>,
    referrers: HashMap<String, Vec<Descriptor>>,
    evaluated: HashMap<String, Result<Evaluated, UnscannedReason>>,
    warnings: Vec<String>,
}

/// Why the signatures of an artifact did not verify.
#[derive(Debug)]
enum SignatureError {
    /// More signature candidates than `limits.maxSignatures`: the failure policy decides.
    TooMany(String),
    /// The signatures could not be listed: the failure policy decides.
    Unavailable(String),
    /// Missing, invalid or untrusted.
    Other(String),
}

fn unavailable(e: &Error) -> UnscannedReason {
    UnscannedReason::RegistryUnavailable(e.to_string())
}

/// Maps a fetch error of a findings artifact (or its signatures) to the reason the image counts
/// as unscanned: bytes that are not what the digest promises are untrusted, never a finding.
fn artifact_error(e: &Error) -> UnscannedReason {
    match e {
        Error::DigestMismatch { .. }
        | Error::Truncated { .. }
        | Error::TooLarge { .. }
        | Error::Invalid { .. } => UnscannedReason::Unverified(e.to_string()),
        _ => UnscannedReason::RegistryUnavailable(e.to_string()),
    }
}

impl Ctx<'_> {
    async fn manifest(&mut self, digest: &str, limit: u64) -> Result<(Manifest, u64), Error> {
        if let Some(m) = self.manifests.get(digest) {
            return Ok(m.clone());
        }
        let f = self
            .repo
            .get_manifest(digest, oci::MANIFEST_ACCEPT, limit)
            .await?;
        let m: Manifest = serde_json::from_slice(&f.bytes).map_err(|e| Error::Invalid {
            what: format!("manifest {}@{digest}", self.repo.name),
            reason: format!("not an OCI manifest: {e}"),
        })?;
        let out = (m, f.bytes.len() as u64);
        self.manifests.insert(digest.to_string(), out.clone());
        Ok(out)
    }

    /// Referrers through the API (every page), else the `sha256-<hex>` tag schema index (one
    /// document, read up to `limit` bytes). More than `max` referrers is an error: a list cut
    /// short could hide the one that matters, so the caller's failure policy decides.
    async fn referrers(
        &mut self,
        digest: &str,
        limit: u64,
        max: usize,
    ) -> Result<Vec<Descriptor>, Error> {
        if let Some(r) = self.referrers.get(digest) {
            return Ok(r.clone());
        }
        let too_many = |n: &str| {
            Error::Invalid {
            what: format!("referrers of {}@{digest}", self.repo.name),
            reason: format!(
                "{n} referrers, more than limits.maxReferrers ({max}): not all of them can be checked"
            ),
        }
        };
        let list = match self
            .repo
            .referrers_api(digest, None, limit, max.saturating_add(1))
            .await?
        {
            Some(l) => {
                if l.len() > max {
                    return Err(too_many("over"));
                }
                l
            }
            None => {
                match self
                    .repo
                    .get_manifest(&oci::referrers_tag(digest), &[oci::OCI_INDEX], limit)
                    .await
                {
                    Ok(f) => {
                        let idx: Manifest =
                            serde_json::from_slice(&f.bytes).map_err(|e| Error::Invalid {
                                what: format!("referrers tag index of {digest}"),
                                reason: format!("not an OCI index: {e}"),
                            })?;
                        if idx.manifests.len() > max {
                            return Err(too_many(&idx.manifests.len().to_string()));
                        }
                        idx.manifests
                    }
                    Err(e) if e.is_not_found() => Vec::new(),
                    Err(e) => return Err(e),
                }
            }
        };
        self.referrers.insert(digest.to_string(), list.clone());
        Ok(list)
    }
}

impl RegistryClient {
    fn trust_for(&self, image: &ImageRef) -> Trust<'_> {
        if !self.any_trust {
            return Trust::Unconfigured;
        }
        let name = image.name();
        match self.policies.iter().find(|p| p.scope.matches(&name)) {
            Some(p) => Trust::Policy(p),
            None => Trust::Uncovered,
        }
    }

    /// Looks an image up under the configured lookup deadline. Never fails: every problem is an
    /// [`UnscannedReason`] with the exact cause.
    pub async fn lookup(&self, image: &ImageRef) -> Lookup {
        self.lookup_with(image, None).await
    }

    /// [`lookup`](Self::lookup) with extra credentials for this call (a pod's image pull
    /// secrets): for their registries they take precedence over the configured credentials,
    /// which still apply to the others.
    pub async fn lookup_with(&self, image: &ImageRef, extra: Option<&Credentials>) -> Lookup {
        let deadline = self.cfg.timeouts.lookup;
        match tokio::time::timeout(deadline, self.lookup_inner(image, extra)).await {
            Ok(l) => l,
            Err(_) => Lookup {
                digest: image.digest.clone(),
                platform_digest: None,
                report: Err(UnscannedReason::RegistryUnavailable(format!(
                    "lookup of {} exceeded the deadline of {:?}",
                    image.normalized(),
                    deadline
                ))),
                platforms: Vec::new(),
                warnings: Vec::new(),
                unreachable: Some(ErrorKind::Timeout),
            },
        }
    }

    async fn lookup_inner(&self, image: &ImageRef, extra: Option<&Credentials>) -> Lookup {
        let fail = |r: UnscannedReason, kind: ErrorKind, digest: Option<String>| Lookup {
            digest,
            platform_digest: None,
            report: Err(r),
            platforms: Vec::new(),
            warnings: Vec::new(),
            unreachable: Some(kind),
        };
        let repo = match self
            .transport
            .repo(&image.registry, &image.repository, false, extra)
        {
            Ok(r) => r,
            Err(e) => return fail(unavailable(&e), e.kind(), image.digest.clone()),
        };
        let limits = &self.cfg.limits;
        // 1. Resolve.
        let reference = image
            .digest
            .clone()
            .or_else(|| image.tag.clone())
            .unwrap_or_else(|| "latest".to_string());
        let top = match repo
            .get_manifest(&reference, oci::MANIFEST_ACCEPT, limits.manifest_bytes)
            .await
        {
            Ok(f) => f,
            Err(e) => return fail(unavailable(&e), e.kind(), image.digest.clone()),
        };
        let digest = top.digest.clone();
        let top_manifest: Manifest = match serde_json::from_slice(&top.bytes) {
            Ok(m) => m,
            Err(e) => {
                return fail(
                    UnscannedReason::RegistryUnavailable(format!(
                        "manifest {}: not an OCI manifest or index: {e}",
                        image.normalized()
                    )),
                    ErrorKind::Invalid,
                    Some(digest),
                )
            }
        };
        let mut ctx = Ctx {
            repo,
            image_name: image.name(),
            manifests: HashMap::new(),
            referrers: HashMap::new(),
            evaluated: HashMap::new(),
            warnings: Vec::new(),
        };
        ctx.manifests.insert(
            digest.clone(),
            (top_manifest.clone(), top.bytes.len() as u64),
        );
        let trust = self.trust_for(image);
        if let Trust::Unconfigured = trust {
            ctx.warnings.push(
                "no trust policy configured: findings artifacts are accepted unsigned (verified: false)".into(),
            );
        }

        if !top_manifest.is_index(top.content_type.as_deref()) {
            let report = self
                .find_report(&mut ctx, &trust, std::slice::from_ref(&digest))
                .await;
            return Lookup {
                digest: Some(digest),
                platform_digest: None,
                report,
                platforms: Vec::new(),
                warnings: ctx.warnings,
                unreachable: None,
            };
        }

        // 2. Multi-arch: pick the platform manifest(s).
        let entries: Vec<&Descriptor> = top_manifest
            .manifests
            .iter()
            .filter(|d| {
                d.platform
                    .as_ref()
                    .is_some_and(|p| p.os != "unknown" && p.architecture != "unknown")
            })
            .collect();
        match &self.platform {
            PlatformSelector::One {
                os,
                architecture,
                variant,
            } => {
                let chosen = entries
                    .iter()
                    .filter(|d| {
                        d.platform.as_ref().is_some_and(|p| {
                            p.os == *os
                                && p.architecture == *architecture
                                && (variant.is_none() || p.variant == *variant)
                        })
                    })
                    .min_by_key(|d| d.platform.as_ref().and_then(|p| p.variant.clone()))
                    .map(|d| d.digest.clone());
                let mut subjects = vec![digest.clone()];
                match &chosen {
                    Some(p) => subjects.push(p.clone()),
                    None => ctx.warnings.push(format!(
                        "the index has no {} manifest: only findings attached to the index were searched",
                        self.cfg.platform
                    )),
                }
                let report = self.find_report(&mut ctx, &trust, &subjects).await;
                Lookup {
                    digest: Some(digest),
                    platform_digest: chosen,
                    report,
                    platforms: Vec::new(),
                    warnings: ctx.warnings,
                    unreachable: None,
                }
            }
            PlatformSelector::All => {
                let report = self
                    .find_report(&mut ctx, &trust, std::slice::from_ref(&digest))
                    .await;
                let mut platforms = Vec::new();
                for d in entries {
                    let r = self
                        .find_report(&mut ctx, &trust, &[digest.clone(), d.digest.clone()])
                        .await;
                    platforms.push(PlatformLookup {
                        platform: d
                            .platform
                            .as_ref()
                            .map(|p| p.to_string())
                            .unwrap_or_default(),
                        digest: d.digest.clone(),
                        report: r,
                    });
                }
                Lookup {
                    digest: Some(digest),
                    platform_digest: None,
                    report,
                    platforms,
                    warnings: ctx.warnings,
                    unreachable: None,
                }
            }
        }
    }

    /// Discovers and evaluates every findings artifact attached to `subjects`, and merges them
    /// (worst case; see [`select`]).
    async fn find_report(
        &self,
        ctx: &mut Ctx<'_>,
        trust: &Trust<'_>,
        subjects: &[String],
    ) -> Result<Found, UnscannedReason> {
        let limits = &self.cfg.limits;
        let mut candidates: Vec<Candidate> = Vec::new();
        let mut errors: Vec<UnscannedReason> = Vec::new();
        for s in subjects {
            let refs = ctx
                .referrers(s, limits.manifest_bytes, limits.max_referrers)
                .await
                .map_err(|e| unavailable(&e))?;
            for d in refs {
                let digest = d.digest.clone();
                match self.classify(ctx, d, s).await {
                    Ok(Some(c)) => candidates.push(c),
                    Ok(None) => {}
                    // A dangling or unreadable referrer must not hide the others; a registry
                    // that cannot answer leaves the view incomplete: the failure policy decides.
                    Err(e) => match artifact_error(&e) {
                        UnscannedReason::RegistryUnavailable(_) if !e.is_not_found() => {
                            return Err(UnscannedReason::RegistryUnavailable(format!(
                                "referrer {digest} of {s}: {e}"
                            )))
                        }
                        reason => {
                            ctx.warnings
                                .push(format!("referrer {digest} of {s} skipped: {e}"));
                            errors.push(reason);
                        }
                    },
                }
            }
        }
        candidates.sort_by(|a, b| a.desc.digest.cmp(&b.desc.digest));
        candidates.dedup_by(|a, b| a.desc.digest == b.desc.digest);
        // Filtered by type above; a cap that would drop candidates is the failure policy's call.
        if candidates.len() > limits.max_findings_artifacts {
            return Err(UnscannedReason::RegistryUnavailable(format!(
                "{} has {} findings artifacts attached, more than limits.maxFindingsArtifacts ({}): not all of them can be checked",
                ctx.image_name,
                candidates.len(),
                limits.max_findings_artifacts
            )));
        }
        let mut items = Vec::new();
        for c in &candidates {
            let r = match ctx.evaluated.get(&c.desc.digest) {
                Some(r) => r.clone(),
                None => {
                    let r = self.evaluate(ctx, trust, c).await;
                    ctx.evaluated.insert(c.desc.digest.clone(), r.clone());
                    r
                }
            };
            match r {
                Ok(e) => items.push(e),
                Err(UnscannedReason::RegistryUnavailable(d)) => {
                    return Err(UnscannedReason::RegistryUnavailable(d))
                }
                Err(reason) => {
                    ctx.warnings.push(format!(
                        "findings artifact {} ({}) skipped: {reason}",
                        c.desc.digest, c.artifact_type
                    ));
                    errors.push(reason);
                }
            }
        }
        select::merge(items, &errors, Utc::now(), &mut ctx.warnings)
    }

    /// Decides whether a referrer is a findings artifact; fetches its manifest when the
    /// descriptor does not say enough (cosign's tag-schema entries say `application/vnd.oci.empty.v1+json`).
    async fn classify(
        &self,
        ctx: &mut Ctx<'_>,
        d: Descriptor,
        subject: &str,
    ) -> Result<Option<Candidate>, Error> {
        let accepted = &self.cfg.accepted_artifact_types;
        let mut at = d.artifact_type.clone().unwrap_or_default();
        let mut annotations = d.annotations.clone();
        let vague = at.is_empty() || at == oci::OCI_EMPTY;
        let needs_predicate = at == oci::SIGSTORE_BUNDLE_V03
            && !annotations.contains_key(oci::ANN_SIGSTORE_PREDICATE);
        if at == oci::NOTATION_SIGNATURE || (!vague && !needs_predicate && !accepted.contains(&at))
        {
            return Ok(None);
        }
        if vague || needs_predicate {
            let (m, _) = ctx
                .manifest(&d.digest, self.cfg.limits.manifest_bytes)
                .await?;
            at = m.effective_artifact_type().unwrap_or_default().to_string();
            for (k, v) in &m.annotations {
                annotations.entry(k.clone()).or_insert_with(|| v.clone());
            }
        }
        if !accepted.contains(&at) {
            return Ok(None);
        }
        if at == oci::SIGSTORE_BUNDLE_V03 {
            match annotations.get(oci::ANN_SIGSTORE_PREDICATE) {
                Some(p) if is_findings_predicate(p) => {}
                _ => return Ok(None),
            }
        }
        if at == oci::IN_TOTO {
            if let Some(p) = annotations.get(oci::ANN_INTOTO_PREDICATE) {
                if !is_findings_predicate(p) {
                    return Ok(None);
                }
            }
        }
        Ok(Some(Candidate {
            desc: d,
            artifact_type: at,
            subject: subject.to_string(),
        }))
    }

    /// Pulls, verifies and parses one findings artifact.
    async fn evaluate(
        &self,
        ctx: &mut Ctx<'_>,
        trust: &Trust<'_>,
        c: &Candidate,
    ) -> Result<Evaluated, UnscannedReason> {
        let limits = &self.cfg.limits;
        let (m, size) = ctx
            .manifest(&c.desc.digest, limits.manifest_bytes)
            .await
            .map_err(|e| artifact_error(&e))?;
        if size != c.desc.size {
            return Err(UnscannedReason::Unverified(format!(
                "artifact {}: manifest is {size} bytes, the referrer descriptor says {}",
                c.desc.digest, c.desc.size
            )));
        }
        match &m.subject {
            Some(s) if s.digest == c.subject => {}
            Some(s) => {
                return Err(UnscannedReason::Unverified(format!(
                    "artifact {} is attached to {}, not to {}",
                    c.desc.digest, s.digest, c.subject
                )))
            }
            None => {
                return Err(UnscannedReason::Unverified(format!(
                    "artifact {} has no subject",
                    c.desc.digest
                )))
            }
        }
        let is_bundle = c.artifact_type == oci::SIGSTORE_BUNDLE_V03;
        let layer = if is_bundle {
            m.layers
                .iter()
                .find(|l| l.media_type == oci::SIGSTORE_BUNDLE_V03)
        } else {
            m.layers
                .iter()
                .find(|l| l.media_type.contains("json"))
                .or_else(|| m.layers.first())
        }
        .cloned()
        .ok_or_else(|| {
            UnscannedReason::InvalidReport(format!(
                "artifact {} has no report layer",
                c.desc.digest
            ))
        })?;
        let blob = ctx
            .repo
            .get_blob(&layer, limits.report_bytes)
            .await
            .map_err(|e| artifact_error(&e))?;

        // Verify, as the policy requires.
        let (verdict, content) = self.verify(ctx, trust, c, &m, &blob).await?;

        let parsed = findings::parse(&content).map_err(|e| {
            UnscannedReason::InvalidReport(format!("artifact {}: {e}", c.desc.digest))
        })?;
        Ok(Evaluated {
            digest: c.desc.digest.clone(),
            artifact_type: c.artifact_type.clone(),
            subject: c.subject.clone(),
            content: match parsed {
                Parsed::Vex(v) => Content::Vex(v),
                Parsed::Report(r) => Content::Report(Box::new(r)),
            },
            verdict,
        })
    }

    /// Returns what verification said and the bytes to parse. A failed verification is a
    /// [`Verdict::Failed`] (its findings may still count, worst case), not an error.
    async fn verify(
        &self,
        ctx: &mut Ctx<'_>,
        trust: &Trust<'_>,
        c: &Candidate,
        m: &Manifest,
        blob: &[u8],
    ) -> Result<(Verdict, Vec<u8>), UnscannedReason> {
        let is_bundle = c.artifact_type == oci::SIGSTORE_BUNDLE_V03;
        // The findings inside a bundle are its DSSE envelope.
        let content = if is_bundle {
            let v: serde_json::Value = serde_json::from_slice(blob).map_err(|e| {
                UnscannedReason::InvalidReport(format!(
                    "artifact {}: not a sigstore bundle: {e}",
                    c.desc.digest
                ))
            })?;
            let env = v.get("dsseEnvelope").ok_or_else(|| {
                UnscannedReason::InvalidReport(format!(
                    "artifact {}: bundle has no DSSE envelope",
                    c.desc.digest
                ))
            })?;
            serde_json::to_vec(env).map_err(|e| UnscannedReason::InvalidReport(e.to_string()))?
        } else {
            blob.to_vec()
        };
        let policy = match trust {
            Trust::Unconfigured => return Ok((Verdict::Unsigned, content)),
            Trust::Uncovered => {
                return Ok((
                    Verdict::Failed(format!("no trust policy covers {}", ctx.image_name)),
                    content,
                ))
            }
            Trust::Policy(p) if p.require == Require::None => {
                return Ok((Verdict::Unsigned, content))
            }
            Trust::Policy(p) => *p,
        };
        let target = Target {
            digest: &c.desc.digest,
            size: Some(c.desc.size),
            media_type: Some(m.media_type.as_deref().unwrap_or(oci::OCI_MANIFEST)),
        };
        let mut ok = Vec::new();
        let mut failures = Vec::new();
        if policy.trust.has_notation {
            match self.verify_notation(ctx, policy, &target).await {
                Ok(s) => ok.push(s),
                Err(SignatureError::Other(e)) => failures.push(format!("notation: {e}")),
                Err(SignatureError::TooMany(e) | SignatureError::Unavailable(e)) => {
                    return Err(UnscannedReason::RegistryUnavailable(e))
                }
            }
        }
        let mut content = content;
        if policy.trust.has_cosign {
            let r = if is_bundle {
                verify::verify_cosign_bundle_with(
                    blob,
                    &policy.trust.cosign_keys,
                    policy.trust.cosign_keyless.as_ref(),
                    &c.subject,
                    Utc::now(),
                )
                .map(|st| {
                    content = st.envelope_json.clone();
                    format!("cosign: attestation signed by {}", st.key)
                })
                .map_err(SignatureError::Other)
            } else {
                self.verify_cosign_signatures(ctx, policy, &target).await
            };
            match r {
                Ok(s) => ok.push(s),
                Err(SignatureError::Other(e)) => failures.push(format!("cosign: {e}")),
                Err(SignatureError::TooMany(e) | SignatureError::Unavailable(e)) => {
                    return Err(UnscannedReason::RegistryUnavailable(e))
                }
            }
        }
        let configured =
            usize::from(policy.trust.has_notation) + usize::from(policy.trust.has_cosign);
        let pass = match policy.require {
            Require::None => true,
            Require::Any => !ok.is_empty(),
            Require::All => ok.len() == configured,
        };
        if pass {
            Ok((Verdict::Verified(ok), content))
        } else {
            Ok((
                Verdict::Failed(format!(
                    "artifact {}: {}",
                    c.desc.digest,
                    failures.join("; ")
                )),
                content,
            ))
        }
    }

    /// The artifact's referrers that are signatures (the type may only be in the manifest).
    async fn signature_manifests(
        &self,
        ctx: &mut Ctx<'_>,
        target: &str,
        want: &str,
    ) -> Result<Vec<(String, Manifest)>, SignatureError> {
        let limits = &self.cfg.limits;
        let refs = ctx
            .referrers(target, limits.manifest_bytes, limits.max_referrers)
            .await
            .map_err(|e| {
                SignatureError::Unavailable(format!("listing signatures of {target}: {e}"))
            })?;
        // Filter by type first (free for typed descriptors); the cap counts only candidates.
        let candidates: Vec<Descriptor> = refs
            .into_iter()
            .filter(|d| {
                let at = d.artifact_type.as_deref().unwrap_or_default();
                at.is_empty() || at == oci::OCI_EMPTY || at == want
            })
            .collect();
        if candidates.len() > limits.max_signatures {
            return Err(SignatureError::TooMany(format!(
                "{} signature candidates of type {want} attached to {target}, more than limits.maxSignatures ({}): not all of them can be checked",
                candidates.len(),
                limits.max_signatures
            )));
        }
        let mut out = Vec::new();
        for d in candidates {
            let (m, size) = ctx
                .manifest(&d.digest, limits.manifest_bytes)
                .await
                .map_err(|e| SignatureError::Other(format!("signature manifest: {e}")))?;
            if m.effective_artifact_type() != Some(want) {
                continue;
            }
            if size != d.size || m.subject.as_ref().map(|s| s.digest.as_str()) != Some(target) {
                continue;
            }
            out.push((d.digest, m));
        }
        Ok(out)
    }

    async fn verify_notation(
        &self,
        ctx: &mut Ctx<'_>,
        policy: &Policy,
        target: &Target<'_>,
    ) -> Result<String, SignatureError> {
        let sigs = self
            .signature_manifests(ctx, target.digest, oci::NOTATION_SIGNATURE)
            .await?;
        if sigs.is_empty() {
            return Err(SignatureError::Other(
                "no Notary Project signature attached".into(),
            ));
        }
        let mut reasons = Vec::new();
        for (digest, m) in sigs {
            for l in &m.layers {
                match l.media_type.as_str() {
                    oci::JWS => {}
                    oci::COSE => {
                        reasons.push(format!(
                            "{digest}: COSE envelopes are not supported (only JWS)"
                        ));
                        continue;
                    }
                    other => {
                        reasons.push(format!("{digest}: unknown envelope type {other}"));
                        continue;
                    }
                }
                let env = match ctx.repo.get_blob(l, self.cfg.limits.manifest_bytes).await {
                    Ok(b) => b,
                    Err(e) => {
                        reasons.push(format!("{digest}: {e}"));
                        continue;
                    }
                };
                match verify::verify_notation_jws(
                    &env,
                    &policy.trust.notation_roots,
                    target,
                    Utc::now(),
                )
                .and_then(|v| policy.trust.notation_identities.check(&v.leaf).map(|()| v))
                {
                    Ok(v) => {
                        return Ok(format!(
                            "notation: signature {digest} (signed {})",
                            v.signing_time.to_rfc3339()
                        ))
                    }
                    Err(e) => reasons.push(format!("{digest}: {e}")),
                }
            }
        }
        Err(SignatureError::Other(reasons.join("; ")))
    }

    async fn verify_cosign_signatures(
        &self,
        ctx: &mut Ctx<'_>,
        policy: &Policy,
        target: &Target<'_>,
    ) -> Result<String, SignatureError> {
        let keys = &policy.trust.cosign_keys;
        let mut reasons = Vec::new();
        let sigs = self
            .signature_manifests(ctx, target.digest, oci::SIGSTORE_BUNDLE_V03)
            .await?;
        for (digest, m) in sigs {
            if m.annotations
                .get(oci::ANN_SIGSTORE_PREDICATE)
                .map(String::as_str)
                != Some(oci::COSIGN_SIGN_PREDICATE)
            {
                continue;
            }
            let Some(l) = m
                .layers
                .iter()
                .find(|l| l.media_type == oci::SIGSTORE_BUNDLE_V03)
            else {
                continue;
            };
            let blob = match ctx.repo.get_blob(l, self.cfg.limits.manifest_bytes).await {
                Ok(b) => b,
                Err(e) => {
                    reasons.push(format!("{digest}: {e}"));
                    continue;
                }
            };
            match verify::verify_cosign_bundle_with(
                &blob,
                keys,
                policy.trust.cosign_keyless.as_ref(),
                target.digest,
                Utc::now(),
            ) {
                Ok(st) if st.predicate_type == oci::COSIGN_SIGN_PREDICATE => {
                    return Ok(format!("cosign: signature {digest} by {}", st.key))
                }
                Ok(st) => reasons.push(format!(
                    "{digest}: predicate {} is not a signature",
                    st.predicate_type
                )),
                Err(e) => reasons.push(format!("{digest}: {e}")),
            }
        }
        // Legacy `sha256-<hex>.sig` tag (cosign < 3 or --new-bundle-format=false).
        let tag = format!("{}.sig", oci::referrers_tag(target.digest));
        match ctx
            .repo
            .get_manifest(
                &tag,
                &[oci::OCI_MANIFEST, oci::DOCKER_MANIFEST],
                self.cfg.limits.manifest_bytes,
            )
            .await
        {
            Ok(f) => {
                if let Ok(m) = serde_json::from_slice::<Manifest>(&f.bytes) {
                    for l in m
                        .layers
                        .iter()
                        .filter(|l| l.media_type == oci::COSIGN_SIMPLESIGNING)
                        .take(8)
                    {
                        let Some(sig) = l.annotations.get(oci::ANN_COSIGN_SIGNATURE) else {
                            continue;
                        };
                        match ctx.repo.get_blob(l, self.cfg.limits.manifest_bytes).await {
                            Ok(payload) => match verify::verify_simple_signing(
                                &payload,
                                sig,
                                keys,
                                target.digest,
                            ) {
                                Ok(k) => {
                                    return Ok(format!("cosign: legacy signature {tag} by {k}"))
                                }
                                Err(e) => reasons.push(format!("{tag}: {e}")),
                            },
                            Err(e) => reasons.push(format!("{tag}: {e}")),
                        }
                    }
                }
            }
            Err(e) if e.is_not_found() => {}
            Err(e) => reasons.push(format!("{tag}: {e}")),
        }
        if reasons.is_empty() {
            Err(SignatureError::Other("no cosign signature attached".into()))
        } else {
            Err(SignatureError::Other(reasons.join("; ")))
        }
    }
}
