//! `vulngate install`: the rendered objects, their certificates, the ConfigMap's configuration,
//! determinism, flag errors and the kustomize base in deploy/base (real binary throughout).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use kube::CustomResourceExt;
use serde_json::{json, Value};

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_vulngate")
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `vulngate install ARGS`, with `--allow-unsigned-reports` unless ARGS name trust material
/// (or use [`run_exact`]).
fn run(args: &[&str]) -> Output {
    let trust = args.iter().any(|a| {
        matches!(
            *a,
            "--notation-trust-store" | "--cosign-public-key" | "--allow-unsigned-reports"
        )
    });
    let mut v: Vec<&str> = args.to_vec();
    if !trust {
        v.push("--allow-unsigned-reports");
    }
    run_exact(&v)
}

fn run_exact(args: &[&str]) -> Output {
    Command::new(bin())
        .arg("install")
        .args(args)
        .output()
        .expect("runs vulngate install")
}

/// Renders and parses the documents; the command must succeed.
fn install(args: &[&str]) -> (Vec<Value>, String) {
    let out = run(args);
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "vulngate install {args:?}: {stderr}");
    let text = String::from_utf8(out.stdout).expect("utf-8");
    (parse_docs(&text), stderr)
}

fn parse_docs(text: &str) -> Vec<Value> {
    serde_yaml_ng::Deserializer::from_str(text)
        .map(|d| serde::Deserialize::deserialize(d).expect("a YAML document"))
        .filter(|v: &Value| !v.is_null())
        .collect()
}

fn find<'a>(docs: &'a [Value], kind: &str) -> &'a Value {
    let found: Vec<&Value> = docs.iter().filter(|d| d["kind"] == kind).collect();
    assert_eq!(found.len(), 1, "exactly one {kind}");
    found[0]
}

fn strs(v: &Value) -> Vec<String> {
    v.as_array()
        .expect("an array")
        .iter()
        .map(|s| s.as_str().expect("a string").to_string())
        .collect()
}

fn secret_data(secret: &Value, key: &str) -> Vec<u8> {
    let s: k8s_openapi::api::core::v1::Secret =
        serde_json::from_value(secret.clone()).expect("a Secret");
    s.data.expect("data")[key].0.clone()
}

#[test]
fn every_kind_is_rendered_in_apply_order() {
    let (docs, stderr) = install(&[]);
    let kinds: Vec<&str> = docs
        .iter()
        .map(|d| d["kind"].as_str().expect("kind"))
        .collect();
    assert_eq!(
        kinds,
        [
            "Namespace",
            "CustomResourceDefinition",
            "CustomResourceDefinition",
            "ServiceAccount",
            "ClusterRole",
            "ClusterRoleBinding",
            "Role",
            "RoleBinding",
            "ConfigMap",
            "Secret",
            "Service",
            "Deployment",
            "PodDisruptionBudget",
            "NetworkPolicy",
            "MutatingWebhookConfiguration",
            "ValidatingWebhookConfiguration",
            "SecurityRule",
        ]
    );
    assert_eq!(find(&docs, "Namespace")["metadata"]["name"], "vulngate");
    for d in &docs {
        let kind = d["kind"].as_str().expect("kind");
        let cluster_scoped = [
            "Namespace",
            "CustomResourceDefinition",
            "ClusterRole",
            "ClusterRoleBinding",
            "MutatingWebhookConfiguration",
            "ValidatingWebhookConfiguration",
            "SecurityRule",
        ]
        .contains(&kind);
        assert_eq!(
            d["metadata"]["namespace"].is_null(),
            cluster_scoped,
            "{kind} namespace"
        );
    }
    // Without --store: Alert objects in the cluster, shared by the replicas (no warning).
    assert!(!stderr.contains("per replica"), "{stderr}");
    let config = find(&docs, "ConfigMap")["data"]["vulngate.yaml"]
        .as_str()
        .expect("config text");
    assert!(
        config.contains("kubectl get alerts.vulngate.io -A"),
        "{config}"
    );
    let cfg: Value = serde_yaml_ng::from_str(config).expect("yaml");
    assert_eq!(cfg["store"], "kubernetes");
    // --store sqlite: per replica, said on stderr and in the ConfigMap; no Alert CRD, no RBAC
    // on alerts.
    let (docs, stderr) = install(&["--store", "sqlite"]);
    assert!(
        stderr.contains("alerts are kept in SQLite") && stderr.contains("per replica"),
        "{stderr}"
    );
    let config = find(&docs, "ConfigMap")["data"]["vulngate.yaml"]
        .as_str()
        .expect("config text");
    assert!(config.contains("lost when its pod is deleted"), "{config}");
    assert_eq!(
        docs.iter()
            .filter(|d| d["kind"] == "CustomResourceDefinition")
            .count(),
        1
    );
    let role = serde_json::to_string(find(&docs, "ClusterRole")).expect("json");
    assert!(!role.contains("\"alerts"), "{role}");
    let pdb = find(&docs, "PodDisruptionBudget");
    assert_eq!(pdb["spec"]["minAvailable"], 1);
    let svc = find(&docs, "Service");
    assert_eq!(
        svc["spec"]["ports"],
        json!([
            {"name": "https", "port": 443, "protocol": "TCP", "targetPort": "https"},
            {"name": "metrics", "port": 9090, "protocol": "TCP", "targetPort": "metrics"}
        ])
    );
    let np = find(&docs, "NetworkPolicy");
    assert_eq!(np["spec"]["policyTypes"], json!(["Ingress"]));
    assert_eq!(
        np["spec"]["ingress"],
        json!([
            {"ports": [{"port": 8443, "protocol": "TCP"}]},
            {
                "ports": [{"port": 9090, "protocol": "TCP"}],
                "from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}]
            }
        ])
    );
}

#[test]
fn rbac_is_exactly_the_listed_rules() {
    let (docs, _) = install(&[]);
    let role = find(&docs, "ClusterRole");
    let mut got: Vec<(String, String, Vec<String>)> = Vec::new();
    for r in role["rules"].as_array().expect("rules") {
        let obj = r.as_object().expect("rule");
        let mut keys: Vec<&String> = obj.keys().collect();
        keys.sort();
        assert_eq!(keys, ["apiGroups", "resources", "verbs"], "{r}");
        for g in strs(&r["apiGroups"]) {
            for res in strs(&r["resources"]) {
                got.push((g.clone(), res, strs(&r["verbs"])));
            }
        }
    }
    got.sort();
    let v = |x: &[&str]| x.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let mut want = vec![
        ("".into(), "pods".into(), v(&["get", "list", "watch"])),
        ("".into(), "secrets".into(), v(&["get"])),
        ("".into(), "serviceaccounts".into(), v(&["get"])),
        ("apps".into(), "replicasets".into(), v(&["list", "watch"])),
        ("batch".into(), "jobs".into(), v(&["list", "watch"])),
        (
            "events.k8s.io".into(),
            "events".into(),
            v(&["create", "patch"]),
        ),
        (
            "vulngate.io".into(),
            "securityrules".into(),
            v(&["get", "list", "watch"]),
        ),
        (
            "vulngate.io".into(),
            "securityrules/status".into(),
            v(&["get", "patch", "update"]),
        ),
        (
            "wgpolicyk8s.io".into(),
            "policyreports".into(),
            v(&["list", "create", "patch", "delete"]),
        ),
        (
            "vulngate.io".into(),
            "alerts".into(),
            v(&["create", "get", "update", "patch", "list", "delete"]),
        ),
        (
            "vulngate.io".into(),
            "alerts/status".into(),
            v(&["get", "update", "patch"]),
        ),
    ];
    want.sort();
    assert_eq!(got, want);
    let text = serde_json::to_string(role).expect("json");
    assert!(!text.contains('*'), "no wildcard: {text}");
    let binding = find(&docs, "ClusterRoleBinding");
    assert_eq!(binding["roleRef"]["name"], "vulngate");
    assert_eq!(
        binding["subjects"],
        json!([{"kind": "ServiceAccount", "name": "vulngate", "namespace": "vulngate"}])
    );
    // One namespaced Role: leader election, on Leases in vulngate's namespace only.
    let roles: Vec<&Value> = docs.iter().filter(|d| d["kind"] == "Role").collect();
    assert_eq!(roles.len(), 1);
    assert_eq!(roles[0]["metadata"]["namespace"], "vulngate");
    assert_eq!(
        roles[0]["rules"],
        json!([{"apiGroups": ["coordination.k8s.io"], "resources": ["leases"],
                "verbs": ["get", "create", "patch", "update"]}])
    );
    let rb = find(&docs, "RoleBinding");
    assert_eq!(rb["roleRef"]["kind"], "Role");
    assert_eq!(rb["roleRef"]["name"], "vulngate-leader-election");
    assert_eq!(
        rb["subjects"],
        json!([{"kind": "ServiceAccount", "name": "vulngate", "namespace": "vulngate"}])
    );
}

#[test]
fn the_deployment_is_hardened() {
    let (docs, _) = install(&[
        "--image",
        "registry.example/vulngate:test",
        "--replicas",
        "3",
    ]);
    let dep = find(&docs, "Deployment");
    let spec = &dep["spec"];
    assert_eq!(spec["replicas"], 3);
    let pod = &spec["template"]["spec"];
    assert_eq!(pod["serviceAccountName"], "vulngate");
    assert_eq!(pod["automountServiceAccountToken"], true);
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(pod["securityContext"]["runAsUser"], 65532);
    assert_eq!(
        pod["securityContext"]["seccompProfile"]["type"],
        "RuntimeDefault"
    );
    let anti =
        &pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"][0];
    assert_eq!(
        anti["podAffinityTerm"]["topologyKey"],
        "kubernetes.io/hostname"
    );
    assert!(pod["topologySpreadConstraints"].is_null());
    let c = &pod["containers"][0];
    assert_eq!(c["image"], "registry.example/vulngate:test");
    assert_eq!(
        c["args"],
        json!(["serve", "--config", "/etc/vulngate/vulngate.yaml"])
    );
    let sc = &c["securityContext"];
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert_eq!(sc["runAsNonRoot"], true);
    assert_eq!(sc["runAsUser"], 65532);
    assert_eq!(sc["capabilities"]["drop"], json!(["ALL"]));
    assert_eq!(sc["seccompProfile"]["type"], "RuntimeDefault");
    assert_eq!(
        c["resources"]["requests"],
        json!({"cpu": "100m", "memory": "128Mi"})
    );
    assert_eq!(c["resources"]["limits"], json!({"memory": "256Mi"}));
    for (probe, path) in [("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")] {
        assert_eq!(c[probe]["httpGet"]["path"], path);
        assert_eq!(c[probe]["httpGet"]["scheme"], "HTTPS");
        assert_eq!(c[probe]["httpGet"]["port"], "https");
    }
    assert_eq!(c["ports"][0]["containerPort"], 8443);
    assert_eq!(c["ports"][1]["name"], "metrics");
    assert_eq!(c["ports"][1]["containerPort"], 9090);
    assert_eq!(c["env"][0]["name"], "POD_NAMESPACE");
    assert_eq!(
        c["env"][0]["valueFrom"]["fieldRef"]["fieldPath"],
        "metadata.namespace"
    );
    // The data directory is writable; the TLS volume carries the serving pair only.
    let vols = pod["volumes"].as_array().expect("volumes");
    let data = vols
        .iter()
        .find(|v| v["name"] == "data")
        .expect("data volume");
    assert!(data["emptyDir"].is_object());
    let tls = vols
        .iter()
        .find(|v| v["name"] == "tls")
        .expect("tls volume");
    assert_eq!(tls["secret"]["secretName"], "vulngate-tls");
    let keys: Vec<&Value> = tls["secret"]["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|i| &i["key"])
        .collect();
    assert_eq!(keys, [&json!("tls.crt"), &json!("tls.key")]);
    let (docs, _) = install(&["--topology-spread"]);
    let pod = &find(&docs, "Deployment")["spec"]["template"]["spec"];
    assert_eq!(
        pod["topologySpreadConstraints"][0]["topologyKey"],
        "topology.kubernetes.io/zone"
    );
}

#[test]
fn the_webhook_follows_the_flags() {
    let (docs, _) = install(&[]);
    let wh = &find(&docs, "ValidatingWebhookConfiguration")["webhooks"][0];
    assert_eq!(wh["timeoutSeconds"], 10);
    assert_eq!(wh["failurePolicy"], "Fail");
    let (docs, _) = install(&[
        "--namespace",
        "security",
        "--timeout",
        "25",
        "--failure-policy",
        "Ignore",
        "--webhook-name",
        "gate.example.com",
    ]);
    let vwc = find(&docs, "ValidatingWebhookConfiguration");
    assert_eq!(vwc["metadata"]["name"], "gate.example.com");
    let hooks = vwc["webhooks"].as_array().expect("webhooks");
    assert_eq!(hooks.len(), 1);
    let wh = &hooks[0];
    assert_eq!(wh["name"], "gate.example.com");
    assert_eq!(wh["timeoutSeconds"], 25);
    assert_eq!(wh["failurePolicy"], "Ignore");
    assert_eq!(wh["sideEffects"], "NoneOnDryRun");
    assert_eq!(wh["matchPolicy"], "Equivalent");
    assert_eq!(wh["admissionReviewVersions"], json!(["v1"]));
    assert_eq!(wh["objectSelector"], json!({}));
    assert_eq!(
        wh["clientConfig"]["service"],
        json!({"name": "vulngate", "namespace": "security", "path": "/validate", "port": 443})
    );
    assert_eq!(
        wh["namespaceSelector"],
        json!({"matchExpressions": [{"key": "kubernetes.io/metadata.name", "operator": "NotIn",
               "values": ["kube-system", "security"]}]})
    );
    let mut got: Vec<(String, String, String, Vec<String>)> = Vec::new();
    for r in wh["rules"].as_array().expect("rules") {
        for g in strs(&r["apiGroups"]) {
            for v in strs(&r["apiVersions"]) {
                for res in strs(&r["resources"]) {
                    got.push((g.clone(), v.clone(), res, strs(&r["operations"])));
                }
            }
        }
    }
    got.sort();
    let cu = || vec!["CREATE".to_string(), "UPDATE".to_string()];
    let mut want = vec![
        ("".to_string(), "v1".to_string(), "pods".to_string(), cu()),
        (
            "".into(),
            "v1".into(),
            "replicationcontrollers".into(),
            cu(),
        ),
        (
            "".into(),
            "v1".into(),
            "pods/ephemeralcontainers".into(),
            vec!["UPDATE".into()],
        ),
        ("apps".into(), "v1".into(), "deployments".into(), cu()),
        ("apps".into(), "v1".into(), "replicasets".into(), cu()),
        ("apps".into(), "v1".into(), "statefulsets".into(), cu()),
        ("apps".into(), "v1".into(), "daemonsets".into(), cu()),
        ("batch".into(), "v1".into(), "jobs".into(), cu()),
        ("batch".into(), "v1".into(), "cronjobs".into(), cu()),
    ];
    want.sort();
    assert_eq!(got, want);
    // The digest-pinning webhook follows the validating one (rules, selectors, timeout,
    // failure policy, service), calls /mutate, and is reinvoked when needed.
    let mwc = find(&docs, "MutatingWebhookConfiguration");
    assert_eq!(mwc["metadata"]["name"], "gate.example.com");
    let hooks = mwc["webhooks"].as_array().expect("webhooks");
    assert_eq!(hooks.len(), 1);
    let mh = &hooks[0];
    assert_eq!(mh["name"], "pin.gate.example.com");
    assert_eq!(mh["reinvocationPolicy"], "IfNeeded");
    assert_eq!(mh["sideEffects"], "None");
    assert_eq!(
        mh["clientConfig"]["service"],
        json!({"name": "vulngate", "namespace": "security", "path": "/mutate", "port": 443})
    );
    for field in [
        "rules",
        "namespaceSelector",
        "objectSelector",
        "failurePolicy",
        "timeoutSeconds",
        "matchPolicy",
        "admissionReviewVersions",
    ] {
        assert_eq!(mh[field], wh[field], "{field}");
    }
    assert_eq!(
        mh["clientConfig"]["caBundle"], wh["clientConfig"]["caBundle"],
        "caBundle"
    );
    // --no-pin-digests leaves it out, and nothing else changes.
    let (without, _) = install(&["--no-pin-digests", "--namespace", "security"]);
    assert!(without
        .iter()
        .all(|d| d["kind"] != "MutatingWebhookConfiguration"));
    assert_eq!(without.len() + 1, docs.len());
    // The namespace follows everywhere.
    let cm = find(&docs, "ConfigMap");
    assert_eq!(cm["metadata"]["namespace"], "security");
    let binding = find(&docs, "ClusterRoleBinding");
    assert_eq!(binding["subjects"][0]["namespace"], "security");
}

/// Parses PEM certificates into DER.
fn pem_certs(pem: &[u8]) -> Vec<rustls_pki_types::CertificateDer<'static>> {
    use rustls_pki_types::pem::PemObject;
    rustls_pki_types::CertificateDer::pem_slice_iter(pem)
        .collect::<Result<_, _>>()
        .expect("PEM certificates")
}

#[test]
fn the_ca_bundle_verifies_the_serving_certificate() {
    let (docs, _) = install(&["--namespace", "gate"]);
    let bundle = find(&docs, "ValidatingWebhookConfiguration")["webhooks"][0]["clientConfig"]
        ["caBundle"]
        .as_str()
        .expect("caBundle")
        .to_string();
    use base64::Engine as _;
    let bundle = base64::engine::general_purpose::STANDARD
        .decode(bundle)
        .expect("base64");
    let secret = find(&docs, "Secret");
    assert_eq!(secret["type"], "kubernetes.io/tls");
    assert_eq!(secret_data(secret, "ca.crt"), bundle);
    let chain = pem_certs(&secret_data(secret, "tls.crt"));
    let anchors_der = pem_certs(&bundle);
    assert_eq!(anchors_der.len(), 1);
    let anchors = vec![webpki::anchor_from_trusted_cert(&anchors_der[0])
        .expect("trust anchor")
        .to_owned()];
    let leaf = webpki::EndEntityCert::try_from(&chain[0]).expect("leaf");
    let now = rustls_pki_types::UnixTime::now();
    leaf.verify_for_usage(
        webpki::ALL_VERIFICATION_ALGS,
        &anchors,
        &chain[1..],
        now,
        webpki::KeyUsage::server_auth(),
        None,
        None,
    )
    .expect("the serving certificate chains to the caBundle");
    for name in ["vulngate.gate.svc", "vulngate.gate.svc.cluster.local"] {
        let n = rustls_pki_types::ServerName::try_from(name).expect("name");
        leaf.verify_is_valid_for_subject_name(&n)
            .unwrap_or_else(|e| panic!("{name}: {e:?}"));
    }
    let other = rustls_pki_types::ServerName::try_from("vulngate.other.svc").expect("name");
    assert!(leaf.verify_is_valid_for_subject_name(&other).is_err());
    // tls.key is the certificate's key.
    use p256::pkcs8::DecodePrivateKey;
    let key = String::from_utf8(secret_data(secret, "tls.key")).expect("utf-8");
    let key = p256::SecretKey::from_pkcs8_pem(&key).expect("PKCS#8 P-256 key");
    let (_, x509) = x509_parser::parse_x509_certificate(&chain[0]).expect("x509");
    assert_eq!(
        x509.public_key().subject_public_key.data.as_ref(),
        key.public_key().to_sec1_bytes().as_ref()
    );
    // Validity: CA ten years, leaf one year.
    let days = |c: &x509_parser::certificate::X509Certificate| {
        (c.validity().not_after.timestamp() - c.validity().not_before.timestamp()) / 86400
    };
    assert_eq!(days(&x509), 365);
    let (_, ca) = x509_parser::parse_x509_certificate(&anchors_der[0]).expect("x509");
    assert_eq!(days(&ca), 3650);
    assert!(ca.is_ca());
}

/// The effective configuration `vulngate serve --check-config` prints for `text` (the test
/// fails when the binary rejects it).
fn check_config(text: &str) -> Value {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("vulngate.yaml");
    std::fs::write(&file, text).expect("write");
    let out = Command::new(bin())
        .args(["serve", "--check-config", "--config"])
        .arg(&file)
        .output()
        .expect("runs");
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_yaml_ng::from_slice(&out.stdout).expect("the effective configuration")
}

#[test]
fn the_config_map_passes_check_config() {
    let (docs, _) = install(&[
        "--namespace",
        "gate",
        "--cluster-name",
        "prod-1",
        "--registry-failure-policy",
        "deny",
    ]);
    let text = find(&docs, "ConfigMap")["data"]["vulngate.yaml"]
        .as_str()
        .expect("config")
        .to_string();
    let effective = check_config(&text);
    assert_eq!(effective["listen"], "0.0.0.0:8443");
    assert_eq!(effective["metrics"]["listen"], "0.0.0.0:9090");
    assert_eq!(effective["tls"]["certFile"], "/etc/vulngate/tls/tls.crt");
    assert_eq!(effective["tls"]["keyFile"], "/etc/vulngate/tls/tls.key");
    assert_eq!(effective["dataDir"], "/var/lib/vulngate");
    assert_eq!(effective["clusterName"], "prod-1");
    assert_eq!(effective["failurePolicy"], "deny");
    assert_eq!(
        effective["excludedNamespaces"],
        json!(["kube-system", "gate"])
    );
    assert_eq!(effective["kubernetes"]["rulesFrom"], "cluster");
    assert_eq!(effective["kubernetes"]["policyReports"], true);
    assert_eq!(effective["store"], "kubernetes");
    assert_eq!(effective["kubernetesStore"]["maxObjects"], 10000);
    assert!(effective["rules"].is_null());
    // The data directory is the writable emptyDir, the TLS files the mounted Secret.
    let dep = find(&docs, "Deployment");
    let mounts = &dep["spec"]["template"]["spec"]["containers"][0]["volumeMounts"];
    let mount = |name: &str| {
        mounts
            .as_array()
            .expect("mounts")
            .iter()
            .find(|m| m["name"] == name)
            .expect("mount")
            .clone()
    };
    assert_eq!(mount("data")["mountPath"], "/var/lib/vulngate");
    assert_eq!(mount("data")["readOnly"], false);
    assert_eq!(mount("tls")["mountPath"], "/etc/vulngate/tls");
    assert_eq!(mount("config")["mountPath"], "/etc/vulngate/vulngate.yaml");
}

#[test]
fn a_store_url_is_rendered_with_its_password_from_a_secret() {
    let (docs, stderr) = install(&[
        "--store",
        "postgres://vulngate@pg:5432/vulngate",
        "--store-password-secret",
        "vulngate-store",
    ]);
    assert!(!stderr.contains("per replica"), "{stderr}");
    let text = find(&docs, "ConfigMap")["data"]["vulngate.yaml"]
        .as_str()
        .expect("config")
        .to_string();
    let cfg: Value = serde_yaml_ng::from_str(&text).expect("yaml");
    assert_eq!(cfg["store"], "postgres://vulngate@pg:5432/vulngate");
    // The binary of the same version takes the rendered store (no password in the URL).
    let effective = check_config(&text);
    assert_eq!(effective["store"], "postgres://vulngate@pg:5432/vulngate");
    let env = &find(&docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]["env"];
    assert_eq!(
        env[1],
        json!({"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}})
    );
    assert_eq!(
        env[2],
        json!({"name": "VULNGATE_STORE_PASSWORD", "valueFrom": {"secretKeyRef":
              {"name": "vulngate-store", "key": "password", "optional": false}}})
    );
}

#[test]
fn the_security_rule_crd_is_the_generated_one() {
    let (docs, _) = install(&[]);
    let crds: Vec<&Value> = docs
        .iter()
        .filter(|d| d["kind"] == "CustomResourceDefinition")
        .collect();
    assert_eq!(crds.len(), 2, "no PolicyReport CRDs by default");
    let want = serde_json::to_value(vulngate_core::rules::SecurityRule::crd()).expect("json");
    assert_eq!(crds[0], &want);
    assert_eq!(crds[0]["metadata"]["name"], "securityrules.vulngate.io");
}

/// Issue 18, item 5: the alert store of the install is the Alert custom resource, generated
/// from the server's type: namespaced, status subresource, tolerant spec and status.
#[test]
fn the_alert_crd_is_the_generated_one() {
    use kube::CustomResourceExt;
    let (docs, _) = install(&[]);
    let crds: Vec<&Value> = docs
        .iter()
        .filter(|d| d["kind"] == "CustomResourceDefinition")
        .collect();
    let crd = crds[1];
    let want = serde_json::to_value(vulngate_server::alerts::kubernetes::AlertObject::crd())
        .expect("json");
    assert_eq!(crd, &want);
    assert_eq!(crd["metadata"]["name"], "alerts.vulngate.io");
    assert_eq!(crd["spec"]["scope"], "Namespaced");
    assert_eq!(crd["spec"]["names"]["kind"], "Alert");
    let version = &crd["spec"]["versions"][0];
    assert_eq!(version["name"], "v1");
    assert_eq!(version["subresources"]["status"], json!({}));
    let schema = &version["schema"]["openAPIV3Schema"];
    assert_structural("alert", schema);
    for part in ["spec", "status"] {
        assert_eq!(
            schema["properties"][part]["x-kubernetes-preserve-unknown-fields"], true,
            "{part} keeps fields of other versions"
        );
    }
}

/// Issue 18, item 6: a fresh install enforces from the first minute. The rendered SecurityRule is
/// serve's built-in default rule (`RuleSet::default_rules`), read the way the webhook reads
/// cluster rules, and can be left out.
#[test]
fn the_default_rule_is_rendered_as_a_security_rule() {
    use vulngate_core::rules::RuleSet;
    let (docs, _) = install(&[]);
    let object = find(&docs, "SecurityRule");
    assert_eq!(object["apiVersion"], "vulngate.io/v1");
    assert_eq!(object["metadata"]["name"], "default-audit-high-critical");
    assert!(object["metadata"]["namespace"].is_null(), "cluster-scoped");
    let defaults = RuleSet::default_rules();
    let want = &defaults.rules()[0];

    // As the webhook reads it from the cluster (a dynamic object, its spec parsed strictly).
    let dynamic: kube::core::DynamicObject =
        serde_json::from_value(object.clone()).expect("a Kubernetes object");
    let rule = vulngate_server::cluster::rules::parse("default-audit-high-critical", &dynamic)
        .expect("the rendered rule is valid");
    assert_eq!(rule.name, want.name);
    assert_eq!(rule.spec, want.spec);
    // What it says, spelled out: audit, any vulnerability of high or critical severity.
    assert_eq!(
        object["spec"],
        json!({
            "action": "audit",
            "conditions": [{"severity": "high", "maxCount": 0}],
            "description": "Default rule: audit images with high or critical vulnerabilities"
        })
    );
    // As a rule file (`vulngate rules lint`, `check --rules`): the same rule set version as
    // serve's default.
    let text = serde_yaml_ng::to_string(object).expect("yaml");
    let parsed =
        RuleSet::new(RuleSet::parse_yaml(&text, "rules.yaml").expect("parses")).expect("rule set");
    assert_eq!(parsed.rules()[0].spec, want.spec);
    assert_eq!(parsed.version(), defaults.version());

    // The SecurityRule CRD's schema accepts it: every spec key is a property of the schema.
    let crd = serde_json::to_value(vulngate_core::rules::SecurityRule::crd()).expect("json");
    let props = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
        ["properties"];
    for key in object["spec"].as_object().expect("spec").keys() {
        assert!(
            props.get(key).is_some(),
            "spec.{key} is not in the CRD schema"
        );
    }

    // Removable: --no-default-rule leaves it out (upgrades after editing or deleting it).
    let (docs, _) = install(&["--no-default-rule"]);
    assert!(docs.iter().all(|d| d["kind"] != "SecurityRule"));
}

/// Every schema node of a structural schema has a type (or preserves unknown fields).
fn assert_structural(path: &str, s: &Value) {
    assert!(
        s["type"].is_string() || s["x-kubernetes-preserve-unknown-fields"] == true,
        "{path}: no type"
    );
    if let Some(props) = s["properties"].as_object() {
        for (k, v) in props {
            assert_structural(&format!("{path}.{k}"), v);
        }
    }
    if s["items"].is_object() {
        assert_structural(&format!("{path}[]"), &s["items"]);
    }
    if s["additionalProperties"].is_object() {
        assert_structural(&format!("{path}{{}}"), &s["additionalProperties"]);
    }
}

#[test]
fn policy_report_crds_only_on_request() {
    let (docs, _) = install(&["--policy-report-crds"]);
    let crds: Vec<&Value> = docs
        .iter()
        .filter(|d| d["kind"] == "CustomResourceDefinition")
        .collect();
    assert_eq!(crds.len(), 4);
    for (crd, plural, kind, short, scope) in [
        (
            crds[1],
            "policyreports",
            "PolicyReport",
            "polr",
            "Namespaced",
        ),
        (
            crds[2],
            "clusterpolicyreports",
            "ClusterPolicyReport",
            "cpolr",
            "Cluster",
        ),
    ] {
        // A well-typed apiextensions.k8s.io/v1 object.
        let typed: k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition =
            serde_json::from_value(crd.clone()).expect("a CustomResourceDefinition");
        assert_eq!(typed.spec.group, "wgpolicyk8s.io");
        assert_eq!(crd["metadata"]["name"], format!("{plural}.wgpolicyk8s.io"));
        assert_eq!(crd["spec"]["names"]["kind"], kind);
        assert_eq!(crd["spec"]["names"]["shortNames"], json!([short]));
        assert_eq!(crd["spec"]["scope"], scope);
        let version = &crd["spec"]["versions"][0];
        assert_eq!(version["name"], "v1alpha2");
        assert_eq!(version["storage"], true);
        let columns: Vec<&str> = version["additionalPrinterColumns"]
            .as_array()
            .expect("columns")
            .iter()
            .map(|c| c["name"].as_str().expect("name"))
            .collect();
        assert_eq!(
            columns,
            ["Kind", "Name", "Pass", "Fail", "Warn", "Error", "Skip", "Age"]
        );
        let schema = &version["schema"]["openAPIV3Schema"];
        assert_structural(kind, schema);
        let top = schema["properties"].as_object().expect("properties");
        for f in ["scope", "scopeSelector", "summary", "results"] {
            assert!(top.contains_key(f), "{kind}.{f}");
        }
        let summary: Vec<&String> = schema["properties"]["summary"]["properties"]
            .as_object()
            .expect("summary")
            .keys()
            .collect();
        assert_eq!(summary.len(), 5);
        let result = &schema["properties"]["results"]["items"];
        let mut fields: Vec<&String> = result["properties"]
            .as_object()
            .expect("result")
            .keys()
            .collect();
        fields.sort();
        assert_eq!(
            fields,
            [
                "category",
                "message",
                "policy",
                "properties",
                "resourceSelector",
                "resources",
                "result",
                "rule",
                "scored",
                "severity",
                "source",
                "timestamp"
            ]
        );
        assert_eq!(
            result["properties"]["result"]["enum"],
            json!(["pass", "fail", "warn", "error", "skip"])
        );
        assert_eq!(
            result["properties"]["properties"]["additionalProperties"]["type"],
            "string"
        );
        assert_eq!(
            result["properties"]["timestamp"]["properties"]
                .as_object()
                .expect("timestamp")
                .len(),
            2
        );
    }
}

#[test]
fn the_same_ca_gives_byte_identical_output() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca_dir = dir.path().join("ca");
    let first = run(&["--ca-out", ca_dir.to_str().expect("path")]);
    assert!(first.status.success());
    let stderr = String::from_utf8_lossy(&first.stderr);
    assert!(
        stderr.contains(&ca_dir.join("ca.key").display().to_string()),
        "{stderr}"
    );
    let ca_cert = ca_dir.join("ca.crt");
    let ca_key = ca_dir.join("ca.key");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&ca_key)
            .expect("ca.key")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let args = [
        "--ca-cert",
        ca_cert.to_str().expect("path"),
        "--ca-key",
        ca_key.to_str().expect("path"),
        "--now",
        "2026-03-01T10:00:00Z",
    ];
    let a = run(&args);
    let b = run(&args);
    assert!(a.status.success() && b.status.success());
    assert_eq!(a.stdout, b.stdout, "byte-identical");
    // The CA is the given one, in the Secret and in the caBundle (kept across re-renders).
    let docs = parse_docs(&String::from_utf8(a.stdout).expect("utf-8"));
    let ca_pem = std::fs::read(&ca_cert).expect("ca.crt");
    assert_eq!(secret_data(find(&docs, "Secret"), "ca.crt"), ca_pem);
    let first_docs = parse_docs(&String::from_utf8(first.stdout).expect("utf-8"));
    assert_eq!(
        find(&first_docs, "ValidatingWebhookConfiguration")["webhooks"][0]["clientConfig"]
            ["caBundle"],
        find(&docs, "ValidatingWebhookConfiguration")["webhooks"][0]["clientConfig"]["caBundle"]
    );
    // Another day renews the serving certificate, not the CA.
    let mut later = args;
    later[5] = "2026-09-01T10:00:00Z";
    let c = run(&later);
    assert!(c.status.success());
    let later_docs = parse_docs(&String::from_utf8(c.stdout).expect("utf-8"));
    assert_ne!(
        secret_data(find(&later_docs, "Secret"), "tls.crt"),
        secret_data(find(&docs, "Secret"), "tls.crt")
    );
    assert_eq!(secret_data(find(&later_docs, "Secret"), "ca.crt"), ca_pem);
}

#[test]
fn an_external_tls_secret_and_ca_bundle() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca_dir = dir.path().join("ca");
    assert!(run(&["--ca-out", ca_dir.to_str().expect("path")])
        .status
        .success());
    let (docs, _) = install(&[
        "--tls-secret",
        "webhook-cert",
        "--ca-bundle",
        ca_dir.join("ca.crt").to_str().expect("path"),
    ]);
    assert!(
        !docs.iter().any(|d| d["kind"] == "Secret"),
        "no Secret rendered"
    );
    let vols = &find(&docs, "Deployment")["spec"]["template"]["spec"]["volumes"];
    let tls = vols
        .as_array()
        .expect("volumes")
        .iter()
        .find(|v| v["name"] == "tls")
        .expect("tls volume");
    assert_eq!(tls["secret"]["secretName"], "webhook-cert");
    use base64::Engine as _;
    let bundle = find(&docs, "ValidatingWebhookConfiguration")["webhooks"][0]["clientConfig"]
        ["caBundle"]
        .as_str()
        .expect("caBundle")
        .to_string();
    assert_eq!(
        base64::engine::general_purpose::STANDARD
            .decode(bundle)
            .expect("base64"),
        std::fs::read(ca_dir.join("ca.crt")).expect("ca.crt")
    );
}

fn assert_usage_error(args: &[&str], needle: &str) {
    let out = run(args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
    assert!(out.stdout.is_empty(), "{args:?}: nothing on stdout");
    assert!(stderr.contains(needle), "{args:?}: {stderr}");
}

#[test]
fn bad_flags_are_clear_errors_with_exit_2() {
    assert_usage_error(&["--timeout", "0"], "0 is not in 1..=30");
    assert_usage_error(&["--timeout", "31"], "31 is not in 1..=30");
    assert_usage_error(&["--namespace", "Bad_NS"], "not a valid namespace name");
    assert_usage_error(&["--namespace=-x"], "not a valid namespace name");
    assert_usage_error(
        &[
            "--ca-cert",
            "/nonexistent/ca.crt",
            "--ca-key",
            "/nonexistent/ca.key",
        ],
        "--ca-cert /nonexistent/ca.crt: cannot read",
    );
    assert_usage_error(&["--ca-cert", "/nonexistent/ca.crt"], "--ca-key");
    assert_usage_error(&["--failure-policy", "Maybe"], "Maybe");
    let dir = tempfile::tempdir().expect("tempdir");
    let ca_dir = dir.path().join("a");
    let other = dir.path().join("b");
    assert!(run(&["--ca-out", ca_dir.to_str().expect("path")])
        .status
        .success());
    assert!(run(&["--ca-out", other.to_str().expect("path")])
        .status
        .success());
    assert_usage_error(
        &[
            "--ca-cert",
            ca_dir.join("ca.crt").to_str().expect("path"),
            "--ca-key",
            other.join("ca.key").to_str().expect("path"),
        ],
        "does not belong to",
    );
    assert_usage_error(
        &[
            "--write-kustomize",
            dir.path().join("k").to_str().expect("path"),
        ],
        "give --tls-secret",
    );
}

/// `kustomize build DIR`: the kustomize of the test tools, else on PATH, else `kubectl kustomize`.
fn kustomize_build(dir: &Path) -> String {
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_default();
    let tools = std::env::var_os("VULNGATE_TOOLS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| home.join(".cache/vulngate-tools"));
    let on_path = |name: &str| {
        std::env::var_os("PATH").and_then(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join(name))
                .find(|f| f.is_file())
        })
    };
    let mut cmd = if tools.join("bin/kustomize").is_file() {
        let mut c = Command::new(tools.join("bin/kustomize"));
        c.arg("build");
        c
    } else if let Some(k) = on_path("kustomize") {
        let mut c = Command::new(k);
        c.arg("build");
        c
    } else if let Some(k) = on_path("kubectl") {
        let mut c = Command::new(k);
        c.arg("kustomize");
        c
    } else {
        panic!(
            "this test needs kustomize (or kubectl): run scripts/install-test-tools.sh, or put \
             kustomize or kubectl on PATH"
        );
    };
    let out = cmd.arg(dir).output().expect("runs kustomize");
    assert!(
        out.status.success(),
        "kustomize build {}: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

/// Integral floats as integers: kustomize writes the schema's `minimum: 0.0` as `0`.
fn normalize_numbers(v: &mut Value) {
    match v {
        Value::Number(n) => {
            if let Some(f) = n
                .as_f64()
                .filter(|f| f.fract() == 0.0 && !n.is_i64() && !n.is_u64())
            {
                *v = json!(f as i64);
            }
        }
        Value::Array(a) => a.iter_mut().for_each(normalize_numbers),
        Value::Object(m) => m.values_mut().for_each(normalize_numbers),
        _ => {}
    }
}

fn by_identity(mut docs: Vec<Value>) -> Vec<Value> {
    docs.iter_mut().for_each(normalize_numbers);
    docs.sort_by_key(|d| {
        format!(
            "{}/{}/{}",
            d["kind"], d["metadata"]["namespace"], d["metadata"]["name"]
        )
    });
    docs
}

#[test]
fn deploy_base_is_what_install_renders() {
    let base = repo_root().join("deploy/base");
    let dir = tempfile::tempdir().expect("tempdir");
    let fresh = dir.path().join("base");
    let out = run(&[
        "--tls-secret",
        "vulngate-tls",
        "--allow-unsigned-reports",
        "--write-kustomize",
        fresh.to_str().expect("path"),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let list = |d: &Path| {
        let mut v: Vec<String> = std::fs::read_dir(d)
            .unwrap_or_else(|e| panic!("{}: {e}", d.display()))
            .map(|e| e.expect("entry").file_name().to_string_lossy().to_string())
            .collect();
        v.sort();
        v
    };
    if std::env::var_os("UPDATE_DEPLOY").is_some_and(|v| v == "1") {
        if base.exists() {
            std::fs::remove_dir_all(&base).expect("remove deploy/base");
        }
        std::fs::create_dir_all(&base).expect("create deploy/base");
        for f in list(&fresh) {
            std::fs::copy(fresh.join(&f), base.join(&f)).expect("copy");
        }
    }
    let hint = "deploy/base is out of date: regenerate it with \
                `UPDATE_DEPLOY=1 cargo test -p vulngate --test install deploy_base` \
                (or vulngate install --tls-secret vulngate-tls --allow-unsigned-reports --write-kustomize deploy/base)";
    assert_eq!(list(&base), list(&fresh), "{hint}");
    for f in list(&fresh) {
        let want = std::fs::read_to_string(fresh.join(&f)).expect("read");
        let have = std::fs::read_to_string(base.join(&f)).expect("read");
        assert!(want == have, "{f}: {hint}");
    }
    // No private key anywhere in the base.
    for f in list(&base) {
        let text = std::fs::read_to_string(base.join(&f)).expect("read");
        assert!(
            !text.contains("PRIVATE KEY") && !text.contains("tls.key:"),
            "{f}"
        );
    }
    // What kustomize builds from the base is what `vulngate install` prints.
    let built = parse_docs(&kustomize_build(&base));
    let (printed, _) = install(&["--tls-secret", "vulngate-tls"]);
    assert_eq!(built.len(), printed.len());
    for (b, p) in by_identity(built).iter().zip(by_identity(printed).iter()) {
        assert!(
            b == p,
            "kustomize build deploy/base differs from vulngate install for {} {}: {hint}",
            p["kind"],
            p["metadata"]["name"]
        );
    }
}

#[allow(clippy::unwrap_used)]
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap()
}

#[allow(clippy::unwrap_used)]
fn harness_bin() -> PathBuf {
    let dir = std::env::var_os("VULNGATE_TOOLS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap()).join(".cache/vulngate-tools")
        });
    let b = dir.join("bin/apiserver-harness");
    assert!(
        b.exists(),
        "{} is missing: run scripts/install-test-tools.sh",
        b.display()
    );
    b
}

#[allow(clippy::unwrap_used)]
fn harness(webhook: &Path, endpoint: &str, object: &Path) -> Value {
    harness_with(webhook, None, endpoint, object)
}

/// [`harness`], with the rendered MutatingWebhookConfiguration run first when given.
#[allow(clippy::unwrap_used)]
fn harness_with(webhook: &Path, mutating: Option<&Path>, endpoint: &str, object: &Path) -> Value {
    let mut cmd = Command::new(harness_bin());
    if let Some(m) = mutating {
        cmd.arg("--mutating-webhook-config").arg(m);
    }
    let out = cmd
        .arg("--webhook-config")
        .arg(webhook)
        .args(["--service-endpoint", endpoint, "--object"])
        .arg(object)
        .output()
        .expect("apiserver-harness runs");
    assert!(
        out.status.success(),
        "apiserver-harness: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The rendered webhook configuration (service reference + caBundle) and TLS Secret, driven
/// by k8s.io/apiserver's validating webhook plugin against `vulngate serve` on that Secret's
/// certificate: TLS is verified for `vulngate.<ns>.svc` against the caBundle.
#[test]
fn the_api_servers_webhook_plugin_calls_vulngate_through_the_rendered_configuration() {
    let (docs, _) = install(&["--namespace", "gate"]);
    let dir = tempfile::tempdir().unwrap();
    let secret = find(&docs, "Secret");
    std::fs::write(dir.path().join("tls.crt"), secret_data(secret, "tls.crt")).unwrap();
    std::fs::write(dir.path().join("tls.key"), secret_data(secret, "tls.key")).unwrap();
    let webhook = dir.path().join("webhook.yaml");
    std::fs::write(
        &webhook,
        serde_yaml_ng::to_string(find(&docs, "ValidatingWebhookConfiguration")).unwrap(),
    )
    .unwrap();
    let port = free_port();
    let mut child = Command::new(bin())
        .args(["serve", "--config"])
        .arg(repo_root().join("examples/vulngate.yaml"))
        .args([
            "--metrics-listen",
            "127.0.0.1:0",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--data-dir",
        ])
        .arg(dir.path().join("data"))
        .arg("--tls-cert")
        .arg(dir.path().join("tls.crt"))
        .arg("--tls-key")
        .arg(dir.path().join("tls.key"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "vulngate serve did not start"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // The vulnerable Deployment of examples/workloads.yaml, in prod-shop: denied.
    let text = std::fs::read_to_string(repo_root().join("examples/workloads.yaml")).unwrap();
    let first = serde_yaml_ng::Deserializer::from_str(&text)
        .map(|d| <Value as serde::Deserialize>::deserialize(d).unwrap())
        .find(|v| v["kind"] == "Deployment")
        .unwrap();
    let obj = dir.path().join("deployment.json");
    std::fs::write(&obj, serde_json::to_vec(&first).unwrap()).unwrap();
    let endpoint = format!("127.0.0.1:{port}");
    // With the rendered digest-pinning webhook first: called through the same Service and
    // caBundle (examples/findings knows no digests, so the object is unchanged).
    let mutating = dir.path().join("mutating.yaml");
    std::fs::write(
        &mutating,
        serde_yaml_ng::to_string(find(&docs, "MutatingWebhookConfiguration")).unwrap(),
    )
    .unwrap();
    let r = harness_with(&webhook, Some(&mutating), &endpoint, &obj);
    assert_eq!(r["mutateCalls"], 1, "{r}");
    assert!(r.get("mutateError").is_none(), "{r}");
    assert_eq!(
        r["object"]["spec"]["template"]["spec"]["containers"][0]["image"],
        first["spec"]["template"]["spec"]["containers"][0]["image"],
        "{r}"
    );
    assert_eq!(r["allowed"], false, "{r}");
    let r = harness(&webhook, &endpoint, &obj);
    assert_eq!(r["allowed"], false, "{r}");
    assert_eq!(r["webhookCalls"], 1, "{r}");
    let err = r["error"].as_str().unwrap();
    assert!(
        err.starts_with("admission webhook \"vulngate.vulngate.io\" denied the request: ")
            && err.contains("denied by rule \"deny-critical-prod\""),
        "{err}"
    );
    // vulngate's own namespace is excluded by the rendered namespaceSelector: never called.
    let mut own = first.clone();
    own["metadata"]["namespace"] = json!("gate");
    std::fs::write(&obj, serde_json::to_vec(&own).unwrap()).unwrap();
    let r = harness(&webhook, &endpoint, &obj);
    assert_eq!(r["allowed"], true, "{r}");
    assert_eq!(r["webhookCalls"], 0, "{r}");
    // vulngate down: the rendered failurePolicy (Fail) rejects.
    let _ = child.kill();
    let _ = child.wait();
    std::fs::write(&obj, serde_json::to_vec(&first).unwrap()).unwrap();
    let r = harness(&webhook, &endpoint, &obj);
    assert_eq!(r["allowed"], false, "{r}");
    assert!(
        r["error"]
            .as_str()
            .unwrap()
            .contains("failed calling webhook"),
        "{r}"
    );
}

/// Findings reports must be signed unless the operator says otherwise (issue 17 item 9): no
/// trust material and no --allow-unsigned-reports is an error; with material, the rendered
/// trust policy requires a signature by it, and the files are mounted where it points.
#[test]
fn the_rendered_trust_policy_requires_signed_reports() {
    let out = run_exact(&[]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("findings reports must be signed") && err.contains("--allow-unsigned-reports"),
        "{err}"
    );

    let data = repo_root().join("crates/registry/tests/data/manifests");
    let crt = data.join("notation-vulngate-test.crt");
    let key = data.join("cosign.pub");
    let identity = "x509.subject: C=US, ST=WA, O=vulngate";
    let (docs, stderr) = install(&[
        "--notation-trust-store",
        crt.to_str().expect("path"),
        "--notation-trusted-identity",
        identity,
        "--cosign-public-key",
        key.to_str().expect("path"),
    ]);
    assert!(
        stderr.contains("findings reports must be signed"),
        "{stderr}"
    );
    let cm = find(&docs, "ConfigMap");
    let text = cm["data"]["vulngate.yaml"].as_str().expect("config");
    assert!(text.contains("# Findings reports must be signed"), "{text}");
    let cfg: Value = serde_yaml_ng::from_str(text).expect("yaml");
    let policy = &cfg["registry"]["trustPolicies"][0];
    assert_eq!(policy["scope"], "*");
    assert_eq!(policy["require"], "any");
    assert_eq!(
        policy["notation"]["trustStore"],
        json!(["/etc/vulngate/trust/notation-root-0.pem"])
    );
    assert_eq!(policy["notation"]["trustedIdentities"], json!([identity]));
    assert_eq!(
        policy["cosign"]["publicKeys"],
        json!(["/etc/vulngate/trust/cosign-0.pub"])
    );
    assert_eq!(
        cm["data"]["cosign-0.pub"].as_str(),
        Some(std::fs::read_to_string(&key).expect("read").as_str())
    );
    // Each file is mounted (subPath) where the policy points.
    let dep = find(&docs, "Deployment");
    let mounts = dep["spec"]["template"]["spec"]["containers"][0]["volumeMounts"]
        .as_array()
        .expect("mounts")
        .clone();
    for (k, path) in [
        (
            "notation-root-0.pem",
            "/etc/vulngate/trust/notation-root-0.pem",
        ),
        ("cosign-0.pub", "/etc/vulngate/trust/cosign-0.pub"),
    ] {
        assert!(
            mounts
                .iter()
                .any(|m| m["subPath"] == k && m["mountPath"] == path && m["name"] == "config"),
            "{mounts:?}"
        );
    }
    // The section loads as the server will, with the files where the mounts put them.
    let dir = tempfile::tempdir().expect("tempdir");
    let mut section = cfg["registry"].clone();
    for (k, field, list) in [
        ("notation-root-0.pem", "notation", "trustStore"),
        ("cosign-0.pub", "cosign", "publicKeys"),
    ] {
        let f = dir.path().join(k);
        std::fs::write(&f, cm["data"][k].as_str().expect("data")).expect("write");
        section["trustPolicies"][0][field][list] = json!([f]);
    }
    let rc: vulngate_registry::RegistryConfig = serde_json::from_value(section).expect("section");
    vulngate_registry::RegistryClient::new(rc).expect("the rendered trust policy loads");

    // An invalid identity is refused at install time.
    let out = run_exact(&[
        "--notation-trust-store",
        crt.to_str().expect("path"),
        "--notation-trusted-identity",
        "x509.subject: O=vulngate",
    ]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("lacks C"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // --allow-unsigned-reports: no trust policy, and it says so.
    let (docs, stderr) = install(&["--allow-unsigned-reports"]);
    assert!(stderr.contains("accepted unsigned"), "{stderr}");
    let text = find(&docs, "ConfigMap")["data"]["vulngate.yaml"]
        .as_str()
        .expect("config")
        .to_string();
    assert!(text.contains("accepted UNSIGNED"), "{text}");
}
