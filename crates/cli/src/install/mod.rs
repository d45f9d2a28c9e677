//! `vulngate install`: everything a cluster needs, as multi-document YAML on stdout
//! (`vulngate install | kubectl apply -f -`), or as a kustomize base (`--write-kustomize DIR`).
//!
//! Every object is a k8s-openapi type (the SecurityRule CRD comes from kube-derive); only the
//! PolicyReport CRDs, which have no Rust type, are a hand-written file (deploy/crds/). Output is
//! deterministic: keys sorted, documents in a fixed order, certificates reproducible from the
//! same CA (see `pki`).
//!
//! [`render`] lists the objects in their order; each comes from a builder in its module:
//! `objects` (namespace, CRDs, RBAC, Service, NetworkPolicy, default rule), `config` (the
//! ConfigMap), `tls` (the Secret; certificates in `pki`), `deployment`, `webhook` (webhook
//! configurations and the pieces they share: client config, namespace selector, rules).
//! Another object is one builder function in its module and one `out.push` line in `render`.
//! `output` writes the documents (YAML stream, kustomize base).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use chrono::{DateTime, Utc};
use clap::ValueEnum;
use serde::Serialize;

mod alerts_crd;
mod config;
mod deployment;
mod mutating;
mod objects;
mod output;
pub mod pki;
mod tls;
mod trust;
mod webhook;

use output::{kustomize_files, stream, BASE_COMMAND};

const AFTER_HELP: &str = "\
Renders: Namespace, the SecurityRule CRD (and with --policy-report-crds the wgpolicyk8s.io
PolicyReport CRDs), ServiceAccount, ClusterRole and ClusterRoleBinding, the vulngate.yaml
ConfigMap, the TLS Secret, Service, Deployment, PodDisruptionBudget, NetworkPolicy and the
ValidatingWebhookConfiguration. See docs/install.md (upgrade, certificate rotation, uninstall).

TLS: by default a new CA (ECDSA P-256, 10 years) signs a serving certificate (1 year) for
vulngate.<namespace>.svc; both go into the Secret, the CA into the webhook's caBundle. Keep the
CA (--ca-out DIR) and re-render with --ca-cert/--ca-key: the output is then identical, and the
caBundle stable. Or --tls-secret NAME for a Secret managed elsewhere (cert-manager), with
--ca-bundle FILE (or cert-manager's CA injector).

Exit codes: 0 rendered, 2 bad input (flags, CA files).";

#[derive(Debug, clap::Args)]
#[command(after_long_help = AFTER_HELP)]
pub struct Args {
    /// Namespace to install into (a DNS label).
    #[arg(short = 'n', long, default_value = "vulngate", value_parser = crate::parse::dns_label)]
    pub namespace: String,
    /// Container image: by default this version's release image (`scripts/build-image.sh
    /// --print-ref`); give your registry's copy, built and pushed with scripts/build-image.sh
    /// --push REF (docs/install.md).
    #[arg(long, default_value = RELEASE_IMAGE)]
    pub image: String,
    /// Webhook pods (with failurePolicy Fail, keep at least 2).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(i32).range(1..=100))]
    pub replicas: i32,
    /// Spread the pods over zones too (topologySpreadConstraints, ScheduleAnyway).
    #[arg(long)]
    pub topology_spread: bool,
    /// Name of the ValidatingWebhookConfiguration and of its webhook (a DNS name with a dot).
    #[arg(long, default_value = "vulngate.vulngate.io", value_parser = crate::parse::webhook_name)]
    pub webhook_name: String,
    /// Webhook timeout in seconds, 1 to 30.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(i32).range(1..=30))]
    pub timeout: i32,
    /// What the API server does when vulngate cannot be reached.
    #[arg(long, value_enum, default_value_t = WebhookFailurePolicy::Fail)]
    pub failure_policy: WebhookFailurePolicy,
    /// vulngate's failurePolicy when an image's findings cannot be obtained.
    #[arg(long, value_enum, default_value_t = RegistryFailurePolicy::Unscanned)]
    pub registry_failure_policy: RegistryFailurePolicy,
    /// Cluster name (the `cluster` scope field of rules).
    #[arg(long)]
    pub cluster_name: Option<String>,
    /// Alert store: `kubernetes` (Alert objects in the cluster, shared by the replicas; the
    /// default), a shared `postgres://vulngate@pg:5432/vulngate` URL (large fleets), or
    /// `sqlite` (per replica on an emptyDir, lost with the pod) [default: kubernetes].
    #[arg(long, value_name = "URL")]
    pub store: Option<String>,
    /// Secret (key `password`) given to the pods as $VULNGATE_STORE_PASSWORD.
    #[arg(long, value_name = "NAME", requires = "store", value_parser = crate::parse::dns_subdomain)]
    pub store_password_secret: Option<String>,
    /// Do not write PolicyReports (kubernetes.policyReports: false).
    #[arg(long)]
    pub no_policy_reports: bool,
    /// Also render the wgpolicyk8s.io PolicyReport and ClusterPolicyReport CRDs (leave off when
    /// Kyverno or policy-reporter installed them).
    #[arg(long)]
    pub policy_report_crds: bool,
    /// Leave out the default SecurityRule (audit high and critical); for upgrades of a cluster
    /// where it was edited or deleted.
    #[arg(long)]
    pub no_default_rule: bool,
    /// Leave out the MutatingWebhookConfiguration that pins image tags to the digests their
    /// findings were looked up for (`POST /mutate`).
    #[arg(long)]
    pub no_pin_digests: bool,
    /// Existing CA certificate (PEM) to sign the serving certificate with.
    #[arg(
        long,
        value_name = "FILE",
        requires = "ca_key",
        conflicts_with = "tls_secret"
    )]
    pub ca_cert: Option<PathBuf>,
    /// The CA's private key (PEM, ECDSA P-256).
    #[arg(long, value_name = "FILE", requires = "ca_cert")]
    pub ca_key: Option<PathBuf>,
    /// Write the CA (ca.crt, ca.key) to this directory, to re-render with --ca-cert/--ca-key.
    #[arg(long, value_name = "DIR", conflicts_with = "tls_secret")]
    pub ca_out: Option<PathBuf>,
    /// Use this existing kubernetes.io/tls Secret (e.g. from cert-manager) instead of rendering one.
    #[arg(long, value_name = "NAME", value_parser = crate::parse::dns_subdomain)]
    pub tls_secret: Option<String>,
    /// With --tls-secret: the CA bundle (PEM) for the webhook's caBundle.
    #[arg(long, value_name = "FILE", requires = "tls_secret")]
    pub ca_bundle: Option<PathBuf>,
    /// PEM root certificate(s) of the Notation signers of findings reports (repeatable):
    /// the rendered trust policy requires reports signed under them (or by --cosign-public-key).
    #[arg(long, value_name = "FILE")]
    pub notation_trust_store: Vec<PathBuf>,
    /// A Notation trusted identity, `x509.subject: C=.., ST=.., O=..` (repeatable; default: any
    /// certificate under --notation-trust-store).
    #[arg(long, value_name = "IDENTITY", requires = "notation_trust_store")]
    pub notation_trusted_identity: Vec<String>,
    /// cosign public key(s) of the signers of findings reports (repeatable).
    #[arg(long, value_name = "FILE")]
    pub cosign_public_key: Vec<PathBuf>,
    /// Accept unsigned findings reports (no trust policy: the worst case over all of an image's
    /// reports counts, and every lookup warns). Without it, --notation-trust-store or
    /// --cosign-public-key is required.
    #[arg(long, conflicts_with_all = ["notation_trust_store", "cosign_public_key"])]
    pub allow_unsigned_reports: bool,
    /// Write a kustomize base (one file per resource group and kustomization.yaml) to DIR
    /// instead of printing; needs --tls-secret (the base holds no private key).
    #[arg(long, value_name = "DIR")]
    pub write_kustomize: Option<PathBuf>,
    /// Certificate validity start (RFC 3339; its day is used), for reproducible output.
    #[arg(long, hide = true, value_parser = crate::parse::time)]
    pub now: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum WebhookFailurePolicy {
    #[value(name = "Fail", alias = "fail")]
    Fail,
    #[value(name = "Ignore", alias = "ignore")]
    Ignore,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RegistryFailurePolicy {
    Unscanned,
    Allow,
    Deny,
}

impl From<RegistryFailurePolicy> for vulngate_server::FailurePolicy {
    fn from(p: RegistryFailurePolicy) -> Self {
        match p {
            RegistryFailurePolicy::Unscanned => vulngate_server::FailurePolicy::Unscanned,
            RegistryFailurePolicy::Allow => vulngate_server::FailurePolicy::Allow,
            RegistryFailurePolicy::Deny => vulngate_server::FailurePolicy::Deny,
        }
    }
}

/// The PolicyReport and ClusterPolicyReport CRDs (`wgpolicyk8s.io/v1alpha2`), written by hand
/// from the wg-policy API types: no Rust type exists for them.
pub const POLICY_REPORT_CRDS: &str =
    include_str!("../../../../deploy/crds/wgpolicyk8s.io_policyreports.yaml");

/// The name of the Service, ServiceAccount, Deployment and cluster RBAC objects.
pub const NAME: &str = "vulngate";
/// The release image `--image` defaults to: where `scripts/build-image.sh --print-ref` says this
/// version is published (docs/install.md: build it and push it to your registry).
pub const RELEASE_IMAGE: &str = concat!("ghcr.io/vulngate/vulngate:", env!("CARGO_PKG_VERSION"));
const CONFIG_MAP: &str = "vulngate-config";
const LEADER_ROLE: &str = "vulngate-leader-election";
/// The default name of the TLS Secret.
pub const TLS_SECRET: &str = "vulngate-tls";
const PORT: i32 = 8443;
/// The plain-HTTP `/metrics` port (its own listener: `metrics.listen`).
const METRICS_PORT: i32 = 9090;
/// The namespace the rendered NetworkPolicy lets reach the metrics port (an example).
const MONITORING_NAMESPACE: &str = "monitoring";
const CONFIG_PATH: &str = "/etc/vulngate/vulngate.yaml";
const TLS_DIR: &str = "/etc/vulngate/tls";
const DATA_DIR: &str = "/var/lib/vulngate";
const RUN_AS: i64 = 65532;

/// One rendered object: the kustomize file it belongs to, a comment, and its JSON value.
#[derive(Debug)]
pub struct Doc {
    pub file: &'static str,
    pub comment: String,
    pub value: serde_json::Value,
}

/// What `run` prints besides the YAML: warnings and notes for stderr.
#[derive(Debug, Default)]
pub struct Rendered {
    pub docs: Vec<Doc>,
    pub notes: Vec<String>,
}

impl Rendered {
    /// Appends a k8s-openapi object (serialized with its `apiVersion` and `kind`).
    fn push<T: Serialize>(&mut self, file: &'static str, comment: &str, obj: &T) -> Result<()> {
        let value = objects::value(obj)?;
        self.push_value(file, comment, value);
        Ok(())
    }

    /// Appends an object that is already a JSON value.
    fn push_value(&mut self, file: &'static str, comment: &str, value: serde_json::Value) {
        self.docs.push(Doc {
            file,
            comment: comment.to_string(),
            value,
        })
    }
}

/// Renders every object for `args`, in the order they are applied.
pub fn render(args: &Args) -> Result<Rendered> {
    trust::require_signatures(args)?;
    let ns = args.namespace.as_str();
    let mut out = Rendered::default();
    objects::namespace_and_crds(args, &mut out)?;
    objects::rbac(
        ns,
        alerts_crd::is_kubernetes(args.store.as_deref()),
        &mut out,
    )?;
    let config_hash = config::render(args, &mut out)?;
    let tls = tls::render(args, &mut out)?;
    out.push(
        "service.yaml",
        "The webhook endpoint the API server calls: 443 -> https (8443); metrics: 9090 (plain HTTP /metrics).",
        &objects::service(ns),
    )?;
    out.push(
        "deployment.yaml",
        "The webhook: hardened, two replicas spread over nodes by default.",
        &deployment::deployment(args, &config_hash, &tls.secret),
    )?;
    out.push(
        "deployment.yaml",
        "Keeps one webhook pod during voluntary disruptions (failurePolicy Fail needs one).",
        &deployment::disruption_budget(ns),
    )?;
    out.push(
        "service.yaml",
        "Ingress: port 8443 from anywhere (webhook calls from the API server, whose address\n\
         cannot be known in general; probes); the metrics port 9090 (/metrics, plain HTTP,\n\
         unauthenticated) only from the `monitoring` namespace: an example, change the\n\
         namespace to where Prometheus runs. Egress is not restricted: DNS, the API server and every image registry are needed.",
        &objects::network_policy(ns),
    )?;
    let validating = webhook::validating(args, tls.ca_bundle.as_deref());
    if !args.no_pin_digests {
        out.push(
            "webhook.yaml",
            mutating::COMMENT,
            &mutating::configuration(&validating)?,
        )?;
    }
    out.push(
        "webhook.yaml",
        "The API server sends workload CREATE/UPDATE here (not in kube-system or vulngate's namespace).",
        &validating,
    )?;
    if !args.no_default_rule {
        out.push_value(
            "rules.yaml",
            "The default rule (what `vulngate serve` runs without rules): audit images with high or\n\
             critical vulnerabilities, in force from the first minute. Edit or delete it like any\n\
             SecurityRule (then upgrade with --no-default-rule, or apply would restore it).",
            objects::default_security_rule()?,
        );
    }
    Ok(out)
}

pub fn run(args: Args) -> Result<ExitCode> {
    if args.write_kustomize.is_some() && args.tls_secret.is_none() {
        bail!("--write-kustomize: the kustomize base holds no private key: give --tls-secret NAME");
    }
    let rendered = render(&args)?;
    match &args.write_kustomize {
        Some(dir) => {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            for (name, text) in kustomize_files(&rendered, BASE_COMMAND)? {
                let path = dir.join(&name);
                std::fs::write(&path, text)
                    .with_context(|| format!("writing {}", path.display()))?;
            }
            eprintln!("wrote the kustomize base to {}", dir.display());
        }
        None => {
            let docs: Vec<&Doc> = rendered.docs.iter().collect();
            print!("{}", stream(&docs)?);
        }
    }
    for n in &rendered.notes {
        eprintln!("{n}");
    }
    Ok(ExitCode::SUCCESS)
}
