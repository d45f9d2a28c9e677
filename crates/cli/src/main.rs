//! `vulngate`: gate Kubernetes workloads on their images' vulnerability findings.
//!
//! Exit codes: 0 allowed (or nothing to report), 1 denied (or audited with `--fail-on audit`;
//! `rules lint`: warnings; `attach`: the registry failed), 2 bad input (flags, rules, manifests,
//! reports, configuration). A registry problem during `check` is never exit 2: the image is
//! unscanned, with the reason, and the rules decide.

use std::path::PathBuf;
use std::process::ExitCode;

use chrono::{DateTime, Utc};
use clap::{ArgGroup, Args, Parser, Subcommand, ValueEnum};

// mimalloc: fewer cycles per request than glibc malloc on the webhook's warm path (measured in
// docs/benchmarks.md), small and built from its bundled C sources.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod alerts;
mod attach;
mod check;
mod install;
mod lint;
mod output;
mod registry;
mod reports;
mod serve;

#[derive(Debug, Parser)]
#[command(
    name = "vulngate",
    version,
    about = "Gate Kubernetes workloads on their container images' vulnerability findings",
    propagate_version = true
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the admission webhook (HTTPS): on --config, or on embedded defaults
    /// (127.0.0.1:8443, self-signed TLS, SQLite alerts in ./vulngate-data, the default rule).
    Serve(ServeArgs),
    /// List and show the alerts the webhook recorded for review.
    Alerts {
        #[command(subcommand)]
        command: AlertsCommand,
    },
    /// Evaluate images (or the images of Kubernetes manifests) against security rules.
    Check(CheckArgs),
    /// Push a findings report to an image's registry as a referrer of the image (OCI 1.1), where
    /// `vulngate check` and the webhook find it.
    Attach(AttachArgs),
    /// Print everything a cluster needs as multi-document YAML
    /// (`vulngate install | kubectl apply -f -`), or write it as a kustomize base.
    Install(Box<InstallArgs>),
    /// Work with rule sets.
    Rules {
        #[command(subcommand)]
        command: RulesCommand,
    },
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// vulngate.yaml (see docs/configuration.md); the flags below override it.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Security rules: a YAML file or a directory of them (reloaded when they change).
    #[arg(long, value_name = "FILE|DIR")]
    pub rules: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:8443].
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<std::net::SocketAddr>,
    /// Address of the plain-HTTP `/metrics` listener [default: 127.0.0.1:9090].
    #[arg(long, value_name = "ADDR")]
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// Directory for the alert store and the generated certificate [default: ./vulngate-data].
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Alert store: `sqlite` (in the data directory) or `postgres://user@host:port/db?sslmode=...`
    /// (password from `storePasswordFile`, $VULNGATE_STORE_PASSWORD or $PGPASSWORD).
    #[arg(long, value_name = "URL")]
    pub store: Option<String>,
    /// A registry reached over plain HTTP, and allowed on loopback (repeatable).
    #[arg(long = "insecure-registry", value_name = "HOST[:PORT]", value_parser = parse_registry_host)]
    pub insecure_registries: Vec<String>,
    /// Serving certificate (PEM); reloaded when it changes. Without it, a self-signed one.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// Serving certificate's private key (PEM).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Validate the configuration, print it with the flags applied, and exit.
    #[arg(long)]
    pub check_config: bool,
}

#[derive(Debug, Subcommand)]
pub enum AlertsCommand {
    /// List alerts, newest first.
    List(AlertsListArgs),
    /// Show one alert in full (JSON).
    Show(AlertsShowArgs),
}

/// Which alert store `vulngate alerts` reads: `--store`, else the `store` of `--config`;
/// SQLite in `--data-dir` (else the config's `dataDir`, else ./vulngate-data).
#[derive(Debug, Args)]
pub struct StoreArgs {
    /// The vulngate.yaml of `vulngate serve` (its store, dataDir and storePasswordFile).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The data directory of `vulngate serve` [default: ./vulngate-data].
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Alert store: `sqlite`, a `postgres://` URL (password from the config's
    /// storePasswordFile, $VULNGATE_STORE_PASSWORD or $PGPASSWORD), or `kubernetes` (Alert
    /// objects; the config's kubernetes.kubeconfig, else in-cluster, $KUBECONFIG,
    /// ~/.kube/config).
    #[arg(long, value_name = "URL")]
    pub store: Option<String>,
}

#[derive(Debug, Args)]
pub struct AlertsListArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    /// Only alerts at or after this time (RFC 3339).
    #[arg(long, value_parser = parse_now)]
    pub since: Option<DateTime<Utc>>,
    /// Only this action: audit, deny or break-glass.
    #[arg(long)]
    pub action: Option<String>,
    /// Only this namespace.
    #[arg(long)]
    pub namespace: Option<String>,
    /// Only this rule.
    #[arg(long)]
    pub rule: Option<String>,
    /// Only images containing this text.
    #[arg(long)]
    pub image: Option<String>,
    /// At most this many alerts.
    #[arg(long, default_value_t = 100)]
    pub limit: usize,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value_t = AlertsOutput::Table)]
    pub output: AlertsOutput,
}

#[derive(Debug, Args)]
pub struct AlertsShowArgs {
    /// Alert id.
    pub id: String,
    #[command(flatten)]
    pub store: StoreArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AlertsOutput {
    Table,
    Json,
}

#[derive(Debug, Subcommand)]
enum RulesCommand {
    /// Check a rule set: schema errors (exit 2), and warnings (exit 1) for expired
    /// allowances/exemptions, rules that can never fire and audit rules that shadow deny rules.
    Lint(LintArgs),
}

const CHECK_AFTER_HELP: &str = "\
Finding the report of an image (first match wins):
  1. --report FILE           the only image being checked (exactly one image in total)
     --report IMAGE=FILE     the image IMAGE (as written, or the same image normalised:
                             nginx = docker.io/library/nginx:latest)
  2. --findings-dir DIR      if DIR/index.yaml exists, it maps image references to file names
                             relative to DIR, e.g.
                                 registry.example.com/shop/api:1.4.2: api-scan.json
                             and is the only source in DIR. Otherwise the report is the file
                             named after the image reference as written, with '/', ':' and '@'
                             replaced by '_', and one of the extensions .json, .sarif, .cdx.json
                             or .intoto.json:
                                 registry.example.com/shop/api:1.4.2
                                   -> DIR/registry.example.com_shop_api_1.4.2.json
                                 ghcr.io/o/app@sha256:ab..
                                   -> DIR/ghcr.io_o_app_sha256_ab...sarif
  3. the image's registry    (unless --offline): the tag is resolved to a digest, the
                             findings artifacts attached to it as referrers are discovered,
                             verified against the trust policies of --config and parsed; the
                             newest valid one decides. An image whose registry cannot be asked,
                             or has no valid report, is unscanned, with the exact reason (a
                             blockUnscanned rule decides; never exit 2). Plain HTTP, and
                             loopback addresses, only for --insecure-registry hosts.
     --offline               never contact a registry: no local report means unscanned
Reports are detected from their content: Trivy JSON, Grype JSON, SARIF 2.1.0, CycloneDX,
in-toto/cosign vulnerability attestations. A local report that cannot be parsed is an error
(exit 2). Registry warnings (e.g. a report accepted unsigned) are printed on stderr.

Exit codes: 0 allowed, 1 denied (or audited with --fail-on audit), 2 bad input.";

#[derive(Debug, Args)]
#[command(
    group(ArgGroup::new("targets").required(true).multiple(true).args(["images", "files"])),
    after_long_help = CHECK_AFTER_HELP
)]
pub struct CheckArgs {
    /// An image reference to check (repeatable).
    #[arg(long = "image", value_name = "REF")]
    pub images: Vec<String>,
    /// Kubernetes manifests whose images to check: multi-document YAML or JSON, `kind: List`
    /// included; `-` reads standard input (repeatable). Supported kinds: Pod,
    /// Deployment, ReplicaSet, StatefulSet, DaemonSet, Job, CronJob, ReplicationController.
    #[arg(short = 'f', long = "filename", value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// A findings report: `FILE` when exactly one image is checked, else `IMAGE=FILE`
    /// (repeatable).
    #[arg(long = "report", value_name = "[IMAGE=]FILE")]
    pub reports: Vec<String>,
    /// A directory of findings reports named after the image references (see below).
    #[arg(long, value_name = "DIR")]
    pub findings_dir: Option<PathBuf>,
    /// An OpenVEX document whose not_affected/fixed statements suppress findings
    /// (repeatable).
    #[arg(long = "vex", value_name = "FILE")]
    pub vex: Vec<PathBuf>,
    /// Security rules: a YAML file or a directory of them [default: the built-in rule,
    /// audit high and critical vulnerabilities].
    #[arg(long, value_name = "FILE|DIR")]
    pub rules: Option<PathBuf>,
    /// Namespace of the images; for manifests, the namespace of objects that name none (an
    /// object naming another namespace is an error, as with kubectl).
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
    /// A pod label (repeatable); merged over the manifests' pod template labels.
    #[arg(long = "label", value_name = "KEY=VALUE", value_parser = parse_label)]
    pub labels: Vec<(String, String)>,
    /// Cluster name, for rules scoped to a cluster.
    #[arg(long)]
    pub cluster: Option<String>,
    /// Rule precedence: `default` walks vulnerabilities most severe first (deny before audit
    /// at each); `strictest` tries every deny rule before any audit rule.
    #[arg(long, value_enum, default_value_t = PrecedenceArg::Default)]
    pub precedence: PrecedenceArg,
    /// The CISA KEV catalog (its JSON feed, at most 32 MiB), for `knownExploited` conditions.
    #[arg(long, value_name = "FILE")]
    pub kev: Option<PathBuf>,
    /// FIRST EPSS scores (the CSV, plain or gzip, at most 64 MiB), for `epssAtLeast` and
    /// `epssPercentileAtLeast` conditions.
    #[arg(long, value_name = "FILE")]
    pub epss: Option<PathBuf>,
    /// Never contact a registry: an image without a report is unscanned.
    #[arg(long)]
    pub offline: bool,
    #[command(flatten)]
    pub registry: RegistryArgs,
    /// Platform of a multi-arch image whose findings count: os/arch[/variant], or `all` to
    /// evaluate every platform of the index [default: the config's `platform`, linux/amd64].
    #[arg(long, value_name = "OS/ARCH|all", value_parser = parse_platform)]
    pub platform: Option<String>,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value_t = CheckOutput::Table)]
    pub output: CheckOutput,
    /// Which overall decision makes the exit code 1.
    #[arg(long, value_enum, default_value_t = FailOn::Deny)]
    pub fail_on: FailOn,
    /// Evaluation time (RFC 3339), for reproducible runs.
    #[arg(long, hide = true, value_parser = parse_now)]
    pub now: Option<DateTime<Utc>>,
}

/// Registry access, shared by `check` and `attach`.
#[derive(Debug, Args)]
pub struct RegistryArgs {
    /// A registry reached over plain HTTP, and allowed to resolve to a loopback address
    /// (repeatable). Nothing else is ever contacted without TLS.
    #[arg(long = "insecure-registry", value_name = "HOST[:PORT]", value_parser = parse_registry_host)]
    pub insecure_registries: Vec<String>,
    /// A vulngate.yaml whose `registry:` section configures registry access: allowed hosts,
    /// credentials, CA bundles, limits, timeouts, platform and trust policies (see
    /// docs/registry.md). The whole file is validated; its other sections are not used here.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

const ATTACH_AFTER_HELP: &str = "\
The report is parsed first (Trivy JSON, Grype JSON, SARIF 2.1.0, CycloneDX, in-toto/cosign
vulnerability attestations, or an OpenVEX document, which is attached as
application/openvex+json unless --artifact-type says otherwise) and pushed unchanged as an OCI
image manifest whose subject is the image (a tag is resolved to its digest first). On
registries without the referrers API, the referrers tag schema index (sha256-<hex>) is
updated as well, as oras does. Sign the pushed artifact with `notation sign` or `cosign sign`
(REPOSITORY@DIGEST printed below) to make it trusted under a trust policy.

Exit codes: 0 attached, 1 the registry failed (unreachable, refused, authentication...),
2 bad input (flags, image reference, report, configuration).";

#[derive(Debug, Args)]
#[command(after_long_help = ATTACH_AFTER_HELP)]
pub struct AttachArgs {
    /// The image the report belongs to (tag or digest).
    #[arg(long, value_name = "REF")]
    pub image: String,
    /// The findings report to push.
    #[arg(long, value_name = "FILE")]
    pub report: PathBuf,
    /// Artifact type of the referrer [default: application/vnd.vulngate.report+json].
    #[arg(long, value_name = "TYPE", value_parser = parse_media_type)]
    pub artifact_type: Option<String>,
    #[command(flatten)]
    pub registry: RegistryArgs,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value_t = AttachOutput::Text)]
    pub output: AttachOutput,
}

const INSTALL_AFTER_HELP: &str = "\
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

#[derive(Debug, Args)]
#[command(after_long_help = INSTALL_AFTER_HELP)]
pub struct InstallArgs {
    /// Namespace to install into (a DNS label).
    #[arg(short = 'n', long, default_value = "vulngate", value_parser = parse_dns_label)]
    pub namespace: String,
    /// Container image: by default this version's release image (`scripts/build-image.sh
    /// --print-ref`); give your registry's copy, built and pushed with scripts/build-image.sh
    /// --push REF (docs/install.md).
    #[arg(long, default_value = install::RELEASE_IMAGE)]
    pub image: String,
    /// Webhook pods (with failurePolicy Fail, keep at least 2).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(i32).range(1..=100))]
    pub replicas: i32,
    /// Spread the pods over zones too (topologySpreadConstraints, ScheduleAnyway).
    #[arg(long)]
    pub topology_spread: bool,
    /// Name of the ValidatingWebhookConfiguration and of its webhook (a DNS name with a dot).
    #[arg(long, default_value = "vulngate.vulngate.io", value_parser = parse_webhook_name)]
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
    #[arg(long, value_name = "NAME", requires = "store", value_parser = parse_dns_subdomain)]
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
    #[arg(long, value_name = "NAME", value_parser = parse_dns_subdomain)]
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
    #[arg(long, hide = true, value_parser = parse_now)]
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

/// An RFC 1123 label (namespace names): lowercase alphanumerics and '-', at most 63.
fn parse_dns_label(s: &str) -> Result<String, String> {
    let ok = !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-');
    if ok {
        Ok(s.to_string())
    } else {
        Err(format!(
            "{s:?} is not a valid namespace name: at most 63 lowercase letters, digits and '-', starting and ending with a letter or digit"
        ))
    }
}

/// An RFC 1123 subdomain (object names): dot-separated labels, at most 253.
fn parse_dns_subdomain(s: &str) -> Result<String, String> {
    if s.len() <= 253 && s.split('.').all(|l| parse_dns_label(l).is_ok()) {
        Ok(s.to_string())
    } else {
        Err(format!(
            "{s:?} is not a valid name: lowercase letters, digits, '-' and '.', at most 253"
        ))
    }
}

/// A webhook name: a DNS subdomain with at least one dot (the API server requires it).
fn parse_webhook_name(s: &str) -> Result<String, String> {
    let name = parse_dns_subdomain(s)?;
    if name.contains('.') {
        Ok(name)
    } else {
        Err(format!(
            "{s:?}: a webhook name must be a fully qualified name such as vulngate.example.com"
        ))
    }
}

#[derive(Debug, Args)]
pub struct LintArgs {
    /// Security rules: a YAML file or a directory of them.
    #[arg(long, value_name = "FILE|DIR")]
    pub rules: PathBuf,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value_t = LintOutput::Text)]
    pub output: LintOutput,
    /// Date and time (RFC 3339) at which validUntil dates are checked [default: now].
    #[arg(long, value_parser = parse_now)]
    pub now: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PrecedenceArg {
    Default,
    Strictest,
}

impl From<PrecedenceArg> for vulngate_core::Precedence {
    fn from(p: PrecedenceArg) -> Self {
        match p {
            PrecedenceArg::Default => vulngate_core::Precedence::Default,
            PrecedenceArg::Strictest => vulngate_core::Precedence::Strictest,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CheckOutput {
    Table,
    Json,
    Sarif,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LintOutput {
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AttachOutput {
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FailOn {
    Deny,
    Audit,
    Never,
}

fn parse_label(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("expected KEY=VALUE, found {s:?}")),
    }
}

/// `HOST` or `HOST:PORT` (no scheme, no path), lowercased as the registry client compares it.
fn parse_registry_host(s: &str) -> Result<String, String> {
    let bad = s.is_empty()
        || s.contains("://")
        || s.contains(['/', '@', '?', '#', '*'])
        || s.chars().any(char::is_whitespace)
        || !vulngate_core::image::is_valid_registry_host(&s.to_ascii_lowercase());
    if bad {
        return Err(format!(
            "expected a registry HOST or HOST:PORT such as 127.0.0.1:5000 (no scheme or path), found {s:?}"
        ));
    }
    Ok(s.to_ascii_lowercase())
}

fn parse_platform(s: &str) -> Result<String, String> {
    vulngate_registry::PlatformSelector::parse(s).map(|_| s.to_string())
}

/// `type/subtype[+suffix]`, as OCI artifact types are.
fn parse_media_type(s: &str) -> Result<String, String> {
    let ok = match s.split_once('/') {
        Some((t, sub)) => {
            let token = |x: &str| {
                !x.is_empty()
                    && x.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"!#$&-^_.+".contains(&b))
            };
            token(t) && token(sub)
        }
        None => false,
    };
    if ok {
        Ok(s.to_string())
    } else {
        Err(format!(
            "expected a media type such as application/vnd.vulngate.report+json, found {s:?}"
        ))
    }
}

fn parse_now(s: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| format!("expected an RFC 3339 time such as 2026-01-31T12:00:00Z: {e}"))
}

fn main() -> ExitCode {
    let cli = Cli::parse(); // flag errors: clap prints them and exits 2
    let result = match cli.command {
        Command::Serve(args) => serve::run(args),
        Command::Alerts { command } => alerts::run(command),
        Command::Check(args) => check::run(args),
        Command::Attach(args) => attach::run(args),
        Command::Install(args) => install::run(*args),
        Command::Rules {
            command: RulesCommand::Lint(args),
        } => lint::run(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            // `{:#}` prints the whole cause chain: `context: cause: root cause`.
            anstream::eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
