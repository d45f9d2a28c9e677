//! `vulngate attach` and `vulngate check --image` against real registries: docker-registry
//! (referrers tag schema) and ferro-oci-server (referrers API), images pushed with crane,
//! reports attached by the real binary, signed with the real notation and cosign CLIs.
//! A missing tool fails the test with the install command (scripts/install-test-tools.sh).
#![allow(clippy::unwrap_used)]

#[path = "../../registry/tests/support/mod.rs"]
mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use support::{Kind, Registry};

const NOW: &str = "2026-11-28T12:00:00Z";

/// A real Trivy report (alpine 3.10): CVE-2019-1549 and CVE-2019-1551, both medium.
fn alpine_report() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../core/tests/data/reports/trivy/alpine-310.json")
}

/// Deny medium vulnerabilities in `prod`, audit them elsewhere; deny unscanned images in `gated`.
const RULES: &str = r#"
apiVersion: vulngate.io/v1
kind: SecurityRule
metadata: { name: deny-medium-prod }
spec:
  action: deny
  scope: [{ field: namespace, op: equals, value: prod }]
  conditions: [{ severity: medium, maxCount: 0 }]
---
apiVersion: vulngate.io/v1
kind: SecurityRule
metadata: { name: block-unscanned }
spec:
  action: deny
  scope: [{ field: namespace, op: equals, value: gated }]
  conditions: [{ severity: critical, maxCount: 0 }]
  blockUnscanned: true
---
apiVersion: vulngate.io/v1
kind: SecurityRule
metadata: { name: audit-medium }
spec:
  action: audit
  conditions: [{ severity: medium, maxCount: 0 }]
"#;

#[derive(Debug)]
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "stdout is not JSON ({e}):\n{}\nstderr:\n{}",
                self.stdout, self.stderr
            )
        })
    }

    /// The first image of `check -o json`.
    fn image(&self) -> Value {
        self.json()["images"][0].clone()
    }
}

fn vulngate(dir: &Path, args: &[&str]) -> Run {
    let out = Command::new(env!("CARGO_BIN_EXE_vulngate"))
        .current_dir(dir)
        .env_remove("CLICOLOR_FORCE")
        .env_remove("HTTP_PROXY")
        .env_remove("HTTPS_PROXY")
        .args(args)
        .output()
        .unwrap();
    Run {
        code: out.status.code().expect("exit code"),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
    }
}

/// A scratch directory with the rules written into it.
struct Env {
    reg: Registry,
    dir: tempfile::TempDir,
}

impl Env {
    fn start(kind: Kind) -> Env {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("rules.yaml"), RULES).unwrap();
        Env {
            reg: Registry::start(kind),
            dir,
        }
    }

    fn image(&self, tag: &str) -> String {
        format!("{}/app:{tag}", self.reg.host)
    }

    fn write(&self, name: &str, contents: &str) -> String {
        let p = self.dir.path().join(name);
        std::fs::write(&p, contents).unwrap();
        p.display().to_string()
    }

    fn run(&self, args: &[&str]) -> Run {
        vulngate(self.dir.path(), args)
    }

    /// `vulngate attach` of `report`, JSON output; returns the referrer manifest digest.
    fn attach(&self, image: &str, report: &Path, extra: &[&str]) -> Value {
        let report = report.display().to_string();
        let mut args = vec![
            "attach",
            "--image",
            image,
            "--report",
            &report,
            "--insecure-registry",
            &self.reg.host,
            "-o",
            "json",
        ];
        args.extend_from_slice(extra);
        let run = self.run(&args);
        assert_eq!(run.code, 0, "attach: {}\n{}", run.stdout, run.stderr);
        run.json()
    }

    /// `vulngate check --image IMAGE --rules rules.yaml -o json --namespace NS` + `extra`.
    fn check(&self, image: &str, namespace: &str, extra: &[&str]) -> Run {
        let mut args = vec![
            "check",
            "--image",
            image,
            "--rules",
            "rules.yaml",
            "--namespace",
            namespace,
            "--now",
            NOW,
            "-o",
            "json",
        ];
        args.extend_from_slice(extra);
        self.run(&args)
    }
}

/// Decision, rule and vulnerability of a `check` for the alpine report, per namespace.
fn assert_alpine_decisions(env: &Env, image: &str, digest: &str, extra: &[&str]) -> Value {
    let run = env.check(image, "prod", extra);
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    let out = run.json();
    assert_eq!(out["decision"], "deny");
    let img = &out["images"][0];
    assert_eq!(img["image"], image);
    assert_eq!(img["digest"], digest, "{img}");
    assert_eq!(img["decision"], "deny");
    assert_eq!(img["rule"], "deny-medium-prod");
    assert_eq!(img["vulnerability"], "CVE-2019-1549");
    assert_eq!(img["counts"]["medium"], 2);
    assert!(img.get("unscanned").is_none(), "{img}");

    let run = env.check(image, "dev", extra);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let img = run.image();
    assert_eq!(img["decision"], "audit");
    assert_eq!(img["rule"], "audit-medium");
    assert_eq!(img["vulnerability"], "CVE-2019-1549");
    assert_eq!(img["digest"], digest);
    // --fail-on audit makes the audit exit 1.
    let mut more = extra.to_vec();
    more.extend(["--fail-on", "audit"]);
    assert_eq!(env.check(image, "dev", &more).code, 1);
    img
}

#[test]
fn attach_then_check_unsigned_on_both_registries() {
    for kind in [Kind::Distribution, Kind::Ferro] {
        let env = Env::start(kind);
        let digest = env.reg.push_image("v1", &format!("{kind:?} one"));
        let image = env.image("v1");

        // Text output names the referrer and how it can be discovered.
        let report = alpine_report().display().to_string();
        let run = env.run(&[
            "attach",
            "--image",
            &image,
            "--report",
            &report,
            "--insecure-registry",
            &env.reg.host,
        ]);
        assert_eq!(run.code, 0, "{kind:?}: {}", run.stderr);
        assert!(
            run.stdout
                .contains(&format!("to {}/app@{digest}", env.reg.host)),
            "{}",
            run.stdout
        );
        let method = if kind == Kind::Ferro {
            "discovery: referrers API"
        } else {
            "discovery: referrers tag schema"
        };
        assert!(run.stdout.contains(method), "{kind:?}: {}", run.stdout);

        // A second attach of the same report (JSON output): both artifacts count, and as their
        // payload scan times are equal, the smaller digest is the base report (deterministic;
        // the old assertion "the newer attach decides" was flaky: order came from the digests).
        let attached = env.attach(&image, &alpine_report(), &[]);
        assert_eq!(attached["subject"]["digest"], digest.as_str());
        assert_eq!(attached["referrers_api"], kind == Kind::Ferro, "{attached}");
        assert_eq!(
            attached["method"],
            if kind == Kind::Ferro {
                "referrers-api"
            } else {
                "tag-schema"
            }
        );
        assert_eq!(
            attached["artifact_type"],
            "application/vnd.vulngate.report+json"
        );
        let artifact = attached["digest"].as_str().unwrap().to_string();
        // The pushed artifact is a real referrer: oras discovers it.
        let discovered = env.reg.tool(
            "oras",
            &[
                "discover",
                "--plain-http",
                "--format",
                "json",
                &format!("{}/app@{digest}", env.reg.host),
            ],
        );
        assert!(discovered.contains(&artifact), "{kind:?}: {discovered}");

        let host = env.reg.host.clone();
        let img = assert_alpine_decisions(&env, &image, &digest, &["--insecure-registry", &host]);
        let mut referrers: Vec<&str> = discovered
            .match_indices("sha256:")
            .map(|(i, _)| &discovered[i..i + 71])
            .filter(|d| *d != digest.as_str())
            .collect();
        referrers.sort_unstable();
        referrers.dedup();
        // Two attaches within the same second push the same manifest (same digest).
        assert!(
            (1..=2).contains(&referrers.len()),
            "{kind:?}: one or two attached reports: {discovered}"
        );
        assert!(referrers.contains(&artifact.as_str()), "{discovered}");
        assert_eq!(img["report"]["digest"], referrers[0], "{img}");
        if let Some(other) = referrers.get(1) {
            assert!(
                img["warnings"].to_string().contains(other),
                "the other report is merged, with a warning: {img}"
            );
        }
        assert_eq!(img["report"]["scanner"]["name"], "trivy");
        assert_eq!(img["report"]["format"], "trivy");
        assert_eq!(img["report"]["verified"], false);
        assert_eq!(img["artifact_type"], "application/vnd.vulngate.report+json");
        assert_eq!(img["attached_to"], digest.as_str());
        let warnings = img["warnings"].to_string();
        assert!(warnings.contains("accepted unsigned"), "{img}");
        let run = env.check(&image, "dev", &["--insecure-registry", &host]);
        assert!(
            run.stderr
                .contains(&format!("warning: {image}: no trust policy configured")),
            "{}",
            run.stderr
        );

        // The same by digest.
        let by_digest = format!("{}/app@{digest}", env.reg.host);
        let run = env.check(&by_digest, "prod", &["--insecure-registry", &host]);
        assert_eq!(run.code, 1, "{}", run.stderr);
        assert_eq!(run.image()["vulnerability"], "CVE-2019-1549");

        // An image with no report: unscanned (allowed), and denied where unscanned is blocked.
        let digest2 = env.reg.push_image("v2", &format!("{kind:?} two"));
        let bare = env.image("v2");
        let run = env.check(&bare, "dev", &["--insecure-registry", &host]);
        assert_eq!(run.code, 0, "{}", run.stderr);
        let img = run.image();
        assert_eq!(img["decision"], "allow");
        assert_eq!(img["digest"], digest2.as_str());
        assert_eq!(img["unscanned"]["kind"], "no-report", "{img}");
        let run = env.check(&bare, "gated", &["--insecure-registry", &host]);
        assert_eq!(run.code, 1, "{}", run.stderr);
        let img = run.image();
        assert_eq!(img["decision"], "deny");
        assert_eq!(img["rule"], "block-unscanned");
        assert!(
            img["reason"]
                .as_str()
                .unwrap()
                .contains("no vulnerability findings artifact"),
            "{img}"
        );

        // Both images at once (looked up concurrently), in the order given.
        let run = env.run(&[
            "check",
            "--image",
            &image,
            "--image",
            &bare,
            "--rules",
            "rules.yaml",
            "-n",
            "prod",
            "--insecure-registry",
            &host,
            "-o",
            "json",
        ]);
        assert_eq!(run.code, 1);
        let out = run.json();
        assert_eq!(out["images"][0]["decision"], "deny");
        assert_eq!(out["images"][1]["unscanned"]["kind"], "no-report");

        // --offline never asks the registry.
        let run = env.check(&image, "prod", &["--offline", "--insecure-registry", &host]);
        assert_eq!(run.code, 0, "{}", run.stderr);
        assert_eq!(run.image()["unscanned"]["kind"], "no-report");
        assert!(run.image()["digest"].is_null());
    }
}

#[test]
fn loopback_registry_is_refused_without_insecure_registry() {
    let env = Env::start(Kind::Ferro);
    let digest = env.reg.push_image("v1", "refused");
    let image = env.image("v1");
    env.attach(&image, &alpine_report(), &[]);

    let run = env.check(&image, "gated", &[]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    let img = run.image();
    assert_eq!(img["decision"], "deny");
    assert_eq!(img["unscanned"]["kind"], "registry-unavailable", "{img}");
    let detail = img["unscanned"]["detail"].as_str().unwrap();
    assert!(
        detail.contains("refused to connect to 127.0.0.1") && detail.contains("loopback"),
        "{detail}"
    );
    assert!(img["digest"].is_null());
    assert!(
        run.stderr.contains(&format!(
            "pass --insecure-registry {} to reach",
            env.reg.host
        )),
        "{}",
        run.stderr
    );
    // Not blocked: allowed, exit 0 (a registry problem is never exit 2).
    let run = env.check(&image, "dev", &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.image()["unscanned"]["kind"], "registry-unavailable");

    // attach is refused too: exit 1, with the flag to pass.
    let report = alpine_report().display().to_string();
    let run = env.run(&["attach", "--image", &image, "--report", &report]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr.contains("error: cannot attach")
            && run.stderr.contains("loopback")
            && run
                .stderr
                .contains(&format!("--insecure-registry {}", env.reg.host)),
        "{}",
        run.stderr
    );

    // Listed in the config's insecureRegistries instead of the flag: reached.
    let cfg = env.write(
        "vulngate.yaml",
        &format!("registry:\n  insecureRegistries: [\"{}\"]\n", env.reg.host),
    );
    let run = env.check(&image, "prod", &["--config", &cfg]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert_eq!(run.image()["digest"], digest.as_str());
}

/// vulngate.yaml with a trust policy for every image; paths relative to the file.
fn trust_config(env: &Env, policy: &str) -> String {
    env.write(
        "vulngate.yaml",
        &format!(
            "# the server's file: only the registry section is used by check\nlogLevel: info\nregistry:\n  insecureRegistries: [\"{}\"]\n  trustPolicies:\n    - scope: \"*\"\n{policy}",
            env.reg.host
        ),
    )
}

#[test]
fn notation_signed_report_is_verified_with_the_config_trust_store() {
    for kind in [Kind::Ferro, Kind::Distribution] {
        let env = Env::start(kind);
        let digest = env.reg.push_image("v1", &format!("{kind:?} notation"));
        let image = env.image("v1");
        let artifact = env.attach(&image, &alpine_report(), &[])["digest"]
            .as_str()
            .unwrap()
            .to_string();
        let crt = env.reg.notation_cert("vulngate-test");
        env.reg.notation_sign(&artifact);
        // The trust store named relative to the configuration file.
        std::fs::copy(&crt, env.dir.path().join("notation-root.crt")).unwrap();
        let cfg = trust_config(
            &env,
            "      notation: { trustStore: [notation-root.crt] }\n",
        );

        // Run from another directory: the relative path is the config file's.
        let elsewhere = tempfile::tempdir().unwrap();
        std::fs::write(elsewhere.path().join("rules.yaml"), RULES).unwrap();
        let run = vulngate(
            elsewhere.path(),
            &[
                "check",
                "--image",
                &image,
                "--rules",
                "rules.yaml",
                "-n",
                "prod",
                "--now",
                NOW,
                "--config",
                &cfg,
                "-o",
                "json",
            ],
        );
        assert_eq!(run.code, 1, "{kind:?}: {}\n{}", run.stdout, run.stderr);
        let img = run.image();
        assert_eq!(img["decision"], "deny");
        assert_eq!(img["rule"], "deny-medium-prod");
        assert_eq!(img["vulnerability"], "CVE-2019-1549");
        assert_eq!(img["digest"], digest.as_str());
        assert_eq!(img["report"]["digest"], artifact.as_str());
        assert_eq!(img["report"]["verified"], true, "{img}");
        assert!(
            img["signatures"][0]
                .as_str()
                .unwrap()
                .starts_with("notation:"),
            "{img}"
        );
        assert!(img.get("warnings").is_none(), "{img}");
        assert!(!run.stderr.contains("warning:"), "{}", run.stderr);

        let img = assert_alpine_decisions(&env, &image, &digest, &["--config", &cfg]);
        assert_eq!(img["report"]["verified"], true);

        // An unsigned report with trust configured: unscanned, not trusted.
        env.reg.push_image("v2", &format!("{kind:?} unsigned"));
        let unsigned = env.image("v2");
        env.attach(&unsigned, &alpine_report(), &[]);
        let run = env.check(&unsigned, "dev", &["--config", &cfg]);
        assert_eq!(run.code, 0, "{}", run.stderr);
        let img = run.image();
        assert_eq!(img["decision"], "allow");
        assert_eq!(img["unscanned"]["kind"], "unverified", "{img}");
        let detail = img["unscanned"]["detail"].as_str().unwrap();
        assert!(detail.contains("notation"), "{detail}");
        // ...and denied, with the reason, where unscanned images are blocked.
        let run = env.check(&unsigned, "gated", &["--config", &cfg]);
        assert_eq!(run.code, 1, "{}", run.stderr);
        let img = run.image();
        assert_eq!(img["decision"], "deny");
        assert_eq!(img["rule"], "block-unscanned");
        assert!(
            img["reason"]
                .as_str()
                .unwrap()
                .contains("findings artifact not trusted"),
            "{img}"
        );
    }
}

/// A cosign `--type vuln` predicate wrapping the real alpine Trivy report.
fn cosign_predicate() -> String {
    let trivy: Value = serde_json::from_slice(&std::fs::read(alpine_report()).unwrap()).unwrap();
    serde_json::json!({
        "invocation": { "parameters": null, "uri": "", "event_id": "", "builder.id": "" },
        "scanner": {
            "uri": "pkg:github/aquasecurity/trivy@0.19.2",
            "version": "0.19.2",
            "db": { "uri": "", "version": "" },
            "result": trivy,
        },
        "metadata": {
            "scanStartedOn": "2026-11-28T00:00:00Z",
            "scanFinishedOn": "2026-11-28T00:00:01Z",
        }
    })
    .to_string()
}

#[test]
fn cosign_attestation_is_verified_with_the_config_public_key() {
    for kind in [Kind::Distribution, Kind::Ferro] {
        let env = Env::start(kind);
        let digest = env.reg.push_image("v1", &format!("{kind:?} cosign"));
        let image = env.image("v1");
        let (key, public) = env.reg.cosign_keys("good");
        env.reg
            .cosign_attest_vuln(&key, &digest, cosign_predicate().as_bytes());
        let cfg = trust_config(
            &env,
            &format!("      cosign: {{ publicKeys: [{}] }}\n", public.display()),
        );

        let img = assert_alpine_decisions(&env, &image, &digest, &["--config", &cfg]);
        assert_eq!(img["report"]["verified"], true, "{img}");
        assert_eq!(img["report"]["format"], "cosign-vuln", "{img}");
        assert_eq!(img["report"]["scanner"]["name"], "trivy", "{img}");
        assert_eq!(
            img["artifact_type"],
            "application/vnd.dev.sigstore.bundle.v0.3+json"
        );
        assert!(
            img["signatures"][0]
                .as_str()
                .unwrap()
                .starts_with("cosign: attestation"),
            "{img}"
        );

        // Another key: the attestation is not trusted.
        let (_, other) = env.reg.cosign_keys("other");
        let cfg = trust_config(
            &env,
            &format!("      cosign: {{ publicKeys: [{}] }}\n", other.display()),
        );
        let run = env.check(&image, "gated", &["--config", &cfg]);
        assert_eq!(run.code, 1, "{}", run.stderr);
        let img = run.image();
        assert_eq!(img["unscanned"]["kind"], "unverified", "{img}");
        assert_eq!(img["rule"], "block-unscanned");
    }
}

#[test]
fn platform_selection_of_a_multiarch_image() {
    let env = Env::start(Kind::Ferro);
    let (index, amd64, arm64) = env.reg.push_multiarch("m1");
    let image = env.image("m1");
    let host = env.reg.host.clone();
    // The report belongs to the arm64 manifest only.
    env.attach(&format!("{host}/app@{arm64}"), &alpine_report(), &[]);

    let insecure = ["--insecure-registry", host.as_str()];
    let run = env.check(&image, "prod", &insecure);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let img = run.image();
    assert_eq!(img["digest"], index.as_str());
    assert_eq!(img["platform_digest"], amd64.as_str());
    assert_eq!(img["unscanned"]["kind"], "no-report");

    let mut args = insecure.to_vec();
    args.extend(["--platform", "linux/arm64"]);
    let run = env.check(&image, "prod", &args);
    assert_eq!(run.code, 1, "{}", run.stderr);
    let img = run.image();
    assert_eq!(img["digest"], index.as_str());
    assert_eq!(img["platform_digest"], arm64.as_str());
    assert_eq!(img["vulnerability"], "CVE-2019-1549");

    let mut args = insecure.to_vec();
    args.extend(["--platform", "all"]);
    let run = env.check(&image, "prod", &args);
    assert_eq!(run.code, 1, "{}", run.stderr);
    let out = run.json();
    let images = out["images"].as_array().unwrap();
    assert_eq!(images.len(), 2, "{out}");
    for img in images {
        let (decision, digest) = match img["platform"].as_str().unwrap() {
            "linux/amd64" => ("allow", &amd64),
            "linux/arm64" => ("deny", &arm64),
            p => panic!("unexpected platform {p}"),
        };
        assert_eq!(img["decision"], decision, "{img}");
        assert_eq!(img["platform_digest"], digest.as_str());
        assert_eq!(img["digest"], index.as_str());
    }
    // The table names the platforms.
    let run = env.run(&[
        "check",
        "--image",
        &image,
        "--insecure-registry",
        &host,
        "--platform",
        "all",
    ]);
    assert!(
        run.stdout.contains("[linux/arm64]") && run.stdout.contains("[linux/amd64]"),
        "{}",
        run.stdout
    );
}

/// Bad input is exit 2, before any registry is contacted; a registry that cannot be reached
/// during `attach` is exit 1.
#[test]
fn bad_input_and_unreachable_registry() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let w = |name: &str, text: &str| {
        let p = d.join(name);
        std::fs::write(&p, text).unwrap();
        p.display().to_string()
    };
    let port = support::free_port();
    let host = format!("127.0.0.1:{port}");
    let image = format!("{host}/app:v1");
    let report = alpine_report().display().to_string();

    let junk = w("junk.json", "{\"not\": \"a report\"}");
    let run = vulngate(
        d,
        &[
            "attach",
            "--image",
            &image,
            "--report",
            &junk,
            "--insecure-registry",
            &host,
        ],
    );
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr.contains("error: cannot parse report"),
        "{}",
        run.stderr
    );

    let unknown = w("unknown.yaml", "registry: {}\nregistries: {}\n");
    let bad_policy = w(
        "bad-policy.yaml",
        "registry:\n  trustPolicies: [{ scope: '*', cosign: { publicKeys: [missing.pub] } }]\n",
    );
    let bad_field = w("bad-field.yaml", "registry:\n  insecureRegistry: [x]\n");
    for (cfg, expect) in [
        (&unknown, "registries"),
        (&bad_policy, "missing.pub"),
        (&bad_field, "insecureRegistry"),
    ] {
        for cmd in [
            vec!["check", "--image", &image, "--config", cfg],
            vec![
                "attach", "--image", &image, "--report", &report, "--config", cfg,
            ],
        ] {
            let run = vulngate(d, &cmd);
            assert_eq!(run.code, 2, "{cmd:?}: {}", run.stderr);
            assert!(run.stderr.contains(expect), "{cmd:?}: {}", run.stderr);
        }
    }
    for flags in [
        vec!["--insecure-registry", "http://127.0.0.1:5000"],
        vec!["--platform", "linux"],
    ] {
        let mut cmd = vec!["check", "--image", &image];
        cmd.extend(flags);
        let run = vulngate(d, &cmd);
        assert_eq!(run.code, 2, "{cmd:?}: {}", run.stderr);
    }
    let run = vulngate(
        d,
        &[
            "attach",
            "--image",
            &image,
            "--report",
            &report,
            "--artifact-type",
            "not a type",
        ],
    );
    assert_eq!(run.code, 2, "{}", run.stderr);

    // Nothing listens on the port: attach fails (exit 1), check is unscanned (exit 0).
    let run = vulngate(
        d,
        &[
            "attach",
            "--image",
            &image,
            "--report",
            &report,
            "--insecure-registry",
            &host,
        ],
    );
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr.contains("error: cannot attach") && run.stderr.contains(&host),
        "{}",
        run.stderr
    );
    let run = vulngate(
        d,
        &[
            "check",
            "--image",
            &image,
            "--insecure-registry",
            &host,
            "-o",
            "json",
        ],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.image()["unscanned"]["kind"], "registry-unavailable");
}
