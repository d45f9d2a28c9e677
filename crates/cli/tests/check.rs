//! `vulngate check`, run as the real binary against the examples and temporary files.
#![allow(clippy::unwrap_used)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::{json, Value};

/// Fixed evaluation time, so decisions do not depend on the day the tests run.
const NOW: &str = "2026-11-28T12:00:00Z";

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

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
}

fn finish(out: Output) -> Run {
    Run {
        code: out.status.code().expect("exit code"),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
    }
}

fn vulngate(args: &[&str]) -> Run {
    let out = Command::new(env!("CARGO_BIN_EXE_vulngate"))
        .current_dir(workspace())
        .env_remove("CLICOLOR_FORCE")
        .args(args)
        .output()
        .unwrap();
    finish(out)
}

fn vulngate_stdin(args: &[&str], stdin: &str) -> Run {
    let mut child = Command::new(env!("CARGO_BIN_EXE_vulngate"))
        .current_dir(workspace())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    finish(child.wait_with_output().unwrap())
}

/// A Trivy JSON report (schema 2) with `(id, package, severity, fixed version)` findings.
fn trivy(vulns: &[(&str, &str, &str, &str)]) -> String {
    let vulns: Vec<Value> = vulns
        .iter()
        .map(|(id, pkg, sev, fixed)| {
            json!({
                "VulnerabilityID": id,
                "PkgName": pkg,
                "InstalledVersion": "1.0.0",
                "FixedVersion": fixed,
                "Severity": sev,
            })
        })
        .collect();
    json!({
        "SchemaVersion": 2,
        "CreatedAt": "2026-11-27T10:00:00Z",
        "ArtifactName": "app",
        "ArtifactType": "container_image",
        "Results": [{
            "Target": "app (debian 12.8)",
            "Class": "os-pkgs",
            "Type": "debian",
            "Vulnerabilities": vulns,
        }]
    })
    .to_string()
}

const CRITICAL: &[(&str, &str, &str, &str)] = &[
    ("CVE-2024-1000", "openssl", "CRITICAL", "3.0.14"),
    ("CVE-2024-1001", "zlib", "LOW", ""),
];
const HIGH: &[(&str, &str, &str, &str)] = &[("CVE-2024-2000", "curl", "HIGH", "8.9.0")];
const CLEAN: &[(&str, &str, &str, &str)] = &[];

const RULES: &str = r#"
apiVersion: vulngate.io/v1
kind: SecurityRule
metadata: { name: deny-critical-prod }
spec:
  action: deny
  scope: [{ field: namespace, op: startsWith, value: prod- }]
  conditions: [{ severity: critical, maxCount: 0 }]
  blockUnscanned: true
---
apiVersion: vulngate.io/v1
kind: SecurityRule
metadata: { name: audit-high }
spec:
  action: audit
  conditions: [{ severity: high, maxCount: 0 }]
"#;

struct Temp {
    dir: tempfile::TempDir,
}

impl Temp {
    fn new() -> Temp {
        Temp {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    /// Writes `name` and returns its absolute path as a string.
    fn file(&self, name: &str, contents: &str) -> String {
        let p = self.dir.path().join(name);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(&p, contents).unwrap();
        p.display().to_string()
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }
}

/// The image objects of a JSON output, by image reference (and container, when several
/// containers run the same image).
fn image<'a>(out: &'a Value, reference: &str) -> &'a Value {
    out["images"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["image"] == reference)
        .unwrap_or_else(|| panic!("no image {reference} in {out:#}"))
}

const EXAMPLES: &[&str] = &[
    "check",
    "--offline",
    "--rules",
    "examples/rules.yaml",
    "-f",
    "examples/workloads.yaml",
    "--findings-dir",
    "examples/findings",
];

#[test]
fn examples_give_one_deny_one_audit_one_allow_image() {
    let mut args = EXAMPLES.to_vec();
    args.extend(["--fail-on", "never", "--output", "json", "--now", NOW]);
    let run = vulngate(&args);
    assert_eq!(run.code, 0, "--fail-on never: {}", run.stderr);
    let out = run.json();
    let keys: Vec<&String> = out.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["decision", "images"]);
    assert_eq!(out["decision"], "deny");

    // One outcome per distinct image.
    let mut by_image: Vec<(String, String)> = out["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["image"].as_str().unwrap().to_string(),
                i["decision"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    by_image.sort();
    by_image.dedup();
    assert_eq!(
        by_image,
        [
            (
                "registry.example.com/platform/toolbox:2.1.0".into(),
                "allow".into()
            ),
            ("registry.example.com/shop/api:1.4.2".into(), "deny".into()),
            (
                "registry.example.com/shop/orders-db:15.2".into(),
                "audit".into()
            ),
        ]
    );

    let api = image(&out, "registry.example.com/shop/api:1.4.2");
    assert_eq!(api["rule"], "deny-critical-prod");
    assert_eq!(api["vulnerability"], "CVE-2019-18224");
    assert_eq!(
        api["workload"],
        json!({ "kind": "Deployment", "name": "shop-api", "namespace": "prod-shop", "container": "api", "container_kind": "container" })
    );
    // The report identity is the file's digest.
    assert!(api["report"]["digest"]
        .as_str()
        .unwrap()
        .starts_with("sha256:"));
    assert_eq!(api["report"]["verified"], false);

    let db = image(&out, "registry.example.com/shop/orders-db:15.2");
    assert_eq!(db["rule"], "audit-high");
    assert_eq!(db["workload"]["kind"], "StatefulSet");

    // The init container and the Pod run the same clean image; nothing fired.
    let toolbox: Vec<&Value> = out["images"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["image"] == "registry.example.com/platform/toolbox:2.1.0")
        .collect();
    assert_eq!(toolbox.len(), 2);
    assert_eq!(toolbox[0]["workload"]["container_kind"], "init");
    assert_eq!(toolbox[0]["workload"]["container"], "wait-for-db");
    assert_eq!(toolbox[1]["workload"]["kind"], "Pod");
    for t in toolbox {
        assert_eq!(t["rule"], Value::Null);
        assert_eq!(t["vulnerability"], Value::Null);
        // The report's RepoDigests names the scanned digest: the decision carries it.
        assert_eq!(
            t["digest"],
            "sha256:e8a84c24cbb0d2a83d20840c96899aa1d6a9c29ff0ec84133d6b6e0c43a01b6c"
        );
    }
    // The Service in the manifest is skipped, and said so.
    assert!(
        run.stderr.contains("skipping Service shop-api"),
        "{}",
        run.stderr
    );
}

#[test]
fn examples_table_fails_on_deny_by_default() {
    let mut args = EXAMPLES.to_vec();
    args.extend(["--now", NOW]);
    let run = vulngate(&args);
    assert_eq!(run.code, 1, "{}", run.stderr);
    let header = run.stdout.lines().next().unwrap();
    for col in ["IMAGE", "DECISION", "RULE", "VULNERABILITY", "REASON"] {
        assert!(header.contains(col), "{header}");
    }
    let api_row = run
        .stdout
        .lines()
        .find(|l| l.contains("registry.example.com/shop/api:1.4.2"))
        .unwrap();
    assert!(api_row.contains("deny-critical-prod"), "{api_row}");
    assert!(api_row.contains("CVE-2019-18224 (critical)"), "{api_row}");
    assert!(
        run.stdout
            .contains("deny: 4 container images checked: 1 denied, 1 audited, 2 allowed"),
        "{}",
        run.stdout
    );
    // Not a terminal: no colour codes.
    assert!(!run.stdout.contains('\u{1b}'), "{:?}", run.stdout);
}

#[test]
fn allowed_image_exits_0() {
    let t = Temp::new();
    let report = t.file("clean.json", &trivy(CLEAN));
    let run = vulngate(&[
        "check",
        "--image",
        "nginx:1.27",
        "--report",
        &report,
        "-o",
        "json",
        "--now",
        NOW,
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let out = run.json();
    assert_eq!(out["decision"], "allow");
    assert_eq!(out["images"][0]["image"], "nginx:1.27");
    assert_eq!(out["images"][0]["rule"], Value::Null);
    // No manifest: no workload object.
    assert!(out["images"][0].get("workload").is_none());
}

#[test]
fn denied_image_exits_1() {
    let t = Temp::new();
    let rules = t.file("rules.yaml", RULES);
    let report = t.file("r.json", &trivy(CRITICAL));
    let run = vulngate(&[
        "check",
        "--image",
        "app:1",
        "--report",
        &report,
        "--rules",
        &rules,
        "--namespace",
        "prod-eu",
        "-o",
        "json",
        "--now",
        NOW,
    ]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    let out = run.json();
    assert_eq!(out["decision"], "deny");
    assert_eq!(out["images"][0]["rule"], "deny-critical-prod");
    assert_eq!(out["images"][0]["vulnerability"], "CVE-2024-1000");

    // Outside prod- the deny rule does not apply: the audit rule decides.
    let run = vulngate(&[
        "check",
        "--image",
        "app:1",
        "--report",
        &report,
        "--rules",
        &rules,
        "--namespace",
        "dev",
        "-o",
        "json",
        "--now",
        NOW,
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.json()["images"][0]["rule"], "audit-high");
}

#[test]
fn audit_fails_only_with_fail_on_audit() {
    let t = Temp::new();
    let report = t.file("r.json", &trivy(HIGH));
    let base = [
        "check", "--image", "app:1", "--report", &report, "--now", NOW,
    ];
    let run = vulngate(&base);
    assert_eq!(run.code, 0, "audit passes by default: {}", run.stderr);
    assert!(
        run.stdout.contains("default-audit-high-critical"),
        "{}",
        run.stdout
    );

    let mut args = base.to_vec();
    args.extend(["--fail-on", "audit"]);
    let run = vulngate(&args);
    assert_eq!(run.code, 1, "{}", run.stderr);

    // --fail-on never: even a deny exits 0.
    let rules = t.file("rules.yaml", RULES);
    let critical = t.file("c.json", &trivy(CRITICAL));
    let run = vulngate(&[
        "check",
        "--image",
        "app:1",
        "--report",
        &critical,
        "--rules",
        &rules,
        "-n",
        "prod-x",
        "--fail-on",
        "never",
        "--now",
        NOW,
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stdout.contains("deny"), "{}", run.stdout);
}

#[test]
fn bad_rules_exit_2_naming_file_document_and_field() {
    let t = Temp::new();
    let rules = t.file(
        "rules.yaml",
        &format!("{RULES}---\napiVersion: vulngate.io/v1\nkind: SecurityRule\nmetadata: {{ name: typo }}\nspec:\n  action: deny\n  conditions: [{{ severity: high, maxCont: 1 }}]\n"),
    );
    let report = t.file("r.json", &trivy(CLEAN));
    let run = vulngate(&[
        "check", "--image", "app:1", "--report", &report, "--rules", &rules, "--now", NOW,
    ]);
    assert_eq!(run.code, 2);
    assert!(run.stdout.is_empty(), "{}", run.stdout);
    let err = run.stderr.trim();
    assert!(err.starts_with("error: invalid rules: "), "{err}");
    for part in [
        rules.as_str(),
        "document 3",
        "rule \"typo\"",
        "spec.conditions[0]",
        "maxCont",
    ] {
        assert!(err.contains(part), "{part:?} missing from {err}");
    }
}

#[test]
fn unparseable_report_exits_2_naming_the_file() {
    let t = Temp::new();
    let report = t.file(
        "broken.json",
        r#"{"SchemaVersion": 2, "ArtifactName": "x", "Results": [{"Target": "t", "Vulnerabilities": [{"VulnerabilityID": 5}]}]}"#,
    );
    for offline in [false, true] {
        let mut args = vec![
            "check", "--image", "app:1", "--report", &report, "--now", NOW,
        ];
        if offline {
            args.push("--offline");
        }
        let run = vulngate(&args);
        assert_eq!(run.code, 2, "offline={offline}: {}", run.stdout);
        assert!(
            run.stderr
                .starts_with(&format!("error: cannot parse report {report}: ")),
            "{}",
            run.stderr
        );
    }
    // A report that is not JSON at all.
    let junk = t.file("junk.json", "not a report");
    let run = vulngate(&["check", "--image", "app:1", "--report", &junk, "--offline"]);
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("cannot parse report"), "{}", run.stderr);
    // A VEX document given as a report.
    let vex = t.file("vex.json", &openvex("CVE-2024-1000", "app"));
    let run = vulngate(&["check", "--image", "app:1", "--report", &vex]);
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("is a VEX document"), "{}", run.stderr);
}

#[test]
fn bad_manifests_exit_2_with_the_json_path() {
    let t = Temp::new();
    let cases = [
        (
            "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers: [{name: a, image: nginx}, {name: b}]\n",
            "document 1 (Pod p): spec.containers[1].image: container \"b\" has no image",
        ),
        (
            "apiVersion: v1\nkind: ConfigMap\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\nspec:\n  selector: {}\n",
            "document 2 (Deployment d): missing spec.template",
        ),
        (
            "apiVersion: batch/v1\nkind: Job\nmetadata: {name: j}\nspec:\n  template:\n    spec:\n      containers: [{name: a, image: [x]}]\n",
            "document 1 (Job j): spec.template.spec.containers[0].image: invalid type: sequence, expected a string",
        ),
        (
            "apiVersion: extensions/v1beta1\nkind: Deployment\nmetadata: {name: old}\n",
            "unsupported apiVersion \"extensions/v1beta1\" for kind Deployment: expected apps/v1",
        ),
        (
            "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers: [{name: a, image: \"Not A Ref\"}]\n",
            "container \"a\": invalid image reference",
        ),
        ("kind: [unclosed\n", "document 1: "),
    ];
    for (n, (manifest, want)) in cases.iter().enumerate() {
        let file = t.file(&format!("m{n}.yaml"), manifest);
        let run = vulngate(&["check", "-f", &file, "--offline"]);
        assert_eq!(run.code, 2, "case {n}: {}", run.stdout);
        let last = run.stderr.lines().last().unwrap_or_default();
        assert!(
            last.starts_with(&format!("error: invalid manifest {file}: ")),
            "case {n}: {}",
            run.stderr
        );
        assert!(
            run.stderr.contains(want),
            "case {n}: {want:?} not in {}",
            run.stderr
        );
    }
    // Only non-workload objects: nothing to check is bad input too.
    let file = t.file(
        "svc.yaml",
        "apiVersion: v1\nkind: Service\nmetadata: {name: s}\n",
    );
    let run = vulngate(&["check", "-f", &file, "--offline"]);
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("nothing to check"), "{}", run.stderr);
}

#[test]
fn bad_flags_exit_2() {
    for args in [
        vec!["check", "--image", "a:1", "--output", "xml"],
        vec!["check", "--image", "a:1", "--label", "novalue"],
        vec!["check", "--image", "a:1", "--fail-on", "sometimes"],
        vec!["check", "--image", "a:1", "--now", "yesterday"],
        vec!["check", "--offline"], // neither --image nor -f
        vec!["check", "--image", "a:1", "--no-such-flag"],
    ] {
        let run = vulngate(&args);
        assert_eq!(run.code, 2, "{args:?}: {}", run.stdout);
        assert!(
            run.stderr.starts_with("error: "),
            "{args:?}: {}",
            run.stderr
        );
    }
    // An invalid image reference is bad input as well.
    let run = vulngate(&["check", "--image", "UPPER/case", "--offline"]);
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.contains("invalid image reference"),
        "{}",
        run.stderr
    );
}

#[test]
fn help_documents_the_findings_dir_convention() {
    let run = vulngate(&["check", "--help"]);
    assert_eq!(run.code, 0);
    for part in [
        "index.yaml",
        "'/', ':' and '@'",
        ".cdx.json",
        ".intoto.json",
        "IMAGE=FILE",
    ] {
        assert!(run.stdout.contains(part), "{part:?} missing from --help");
    }
}

#[test]
fn report_image_file_pairs() {
    let t = Temp::new();
    let rules = t.file("rules.yaml", RULES);
    let crit = t.file("crit.json", &trivy(CRITICAL));
    let clean = t.file("clean.json", &trivy(CLEAN));
    let run = vulngate(&[
        "check",
        "--image",
        "registry.example.com/a:1",
        "--image",
        "nginx",
        "--report",
        &format!("registry.example.com/a:1={crit}"),
        // Matched to `nginx` through the normalised reference.
        "--report",
        &format!("docker.io/library/nginx:latest={clean}"),
        "--rules",
        &rules,
        "-n",
        "prod-a",
        "-o",
        "json",
        "--now",
        NOW,
    ]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    let out = run.json();
    assert_eq!(image(&out, "registry.example.com/a:1")["decision"], "deny");
    assert_eq!(image(&out, "nginx")["decision"], "allow");
    assert_eq!(
        image(&out, "nginx")["report"]["digest"],
        file_digest(&clean)
    );

    // A plain FILE with two images is ambiguous.
    let run = vulngate(&[
        "check",
        "--image",
        "a:1",
        "--image",
        "b:1",
        "--report",
        &clean,
        "--offline",
    ]);
    assert_eq!(run.code, 2);
    assert!(
        run.stderr
            .contains("needs exactly one image to check, but there are 2 (a:1, b:1)"),
        "{}",
        run.stderr
    );
    // A pair for an image that is not checked is a mistake.
    let run = vulngate(&[
        "check",
        "--image",
        "a:1",
        "--report",
        &format!("b:1={clean}"),
        "--offline",
    ]);
    assert_eq!(run.code, 2);
    assert!(
        run.stderr
            .contains("b:1 is not among the images checked (a:1)"),
        "{}",
        run.stderr
    );
}

fn file_digest(path: &str) -> String {
    use sha2::Digest;
    let bytes = std::fs::read(path).unwrap();
    let hex: String = sha2::Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("sha256:{hex}")
}

#[test]
fn findings_dir_index_maps_images_to_files() {
    let t = Temp::new();
    let rules = t.file("rules.yaml", RULES);
    t.file("reports/scan-of-api.json", &trivy(CRITICAL));
    // A file named by the convention is ignored once an index exists.
    t.file("reports/ghcr.io_o_web_2.json", &trivy(CRITICAL));
    t.file("reports/index.yaml", "ghcr.io/o/api:1: scan-of-api.json\n");
    let dir = t.path("reports");
    let run = vulngate(&[
        "check",
        "--image",
        "ghcr.io/o/api:1",
        "--image",
        "ghcr.io/o/web:2",
        "--findings-dir",
        &dir,
        "--rules",
        &rules,
        "-n",
        "prod-1",
        "--offline",
        "-o",
        "json",
        "--now",
        NOW,
    ]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    let out = run.json();
    let api = image(&out, "ghcr.io/o/api:1");
    assert_eq!(api["decision"], "deny");
    assert_eq!(api["vulnerability"], "CVE-2024-1000");
    // Not in the index: unscanned, and in prod- the deny rule blocks unscanned images.
    let web = image(&out, "ghcr.io/o/web:2");
    assert_eq!(web["unscanned"]["kind"], "no-report");
    assert_eq!(web["decision"], "deny");
    assert!(
        web["reason"]
            .as_str()
            .unwrap()
            .starts_with("unscanned image"),
        "{web}"
    );

    // An index entry whose file is missing is bad input.
    t.file("reports/index.yaml", "ghcr.io/o/api:1: missing.json\n");
    let run = vulngate(&[
        "check",
        "--image",
        "ghcr.io/o/api:1",
        "--findings-dir",
        &dir,
        "--offline",
    ]);
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.contains("missing.json, which is not a file"),
        "{}",
        run.stderr
    );
}

#[test]
fn findings_dir_names_files_after_references() {
    let t = Temp::new();
    let digest = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    t.file(
        &format!("d/ghcr.io_o_app_{}.json", digest.replace(':', "_")),
        &trivy(HIGH),
    );
    t.file("d/localhost_5000_tool_v1.sarif", "{}");
    let dir = t.path("d");
    let reference = format!("ghcr.io/o/app@{digest}");
    let run = vulngate(&[
        "check",
        "--image",
        &reference,
        "--findings-dir",
        &dir,
        "-o",
        "json",
        "--now",
        NOW,
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let out = run.json();
    assert_eq!(out["images"][0]["decision"], "audit");
    assert_eq!(out["images"][0]["digest"], digest);

    // Found by name with the .sarif extension, and parsed (here: not a report -> exit 2).
    let run = vulngate(&[
        "check",
        "--image",
        "localhost:5000/tool:v1",
        "--findings-dir",
        &dir,
    ]);
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.contains("localhost_5000_tool_v1.sarif"),
        "{}",
        run.stderr
    );

    // Two candidate files for one image are ambiguous.
    t.file(
        &format!("d/ghcr.io_o_app_{}.cdx.json", digest.replace(':', "_")),
        "{}",
    );
    let run = vulngate(&["check", "--image", &reference, "--findings-dir", &dir]);
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("several reports for"), "{}", run.stderr);
}

#[test]
fn no_report_without_offline_asks_the_registry() {
    // A loopback registry not named by --insecure-registry is refused before any connection:
    // unscanned with the exact reason, never exit 2 (tests/registry.rs has real registries).
    let run = vulngate(&["check", "--image", "127.0.0.1:9/o/app:1", "-o", "json"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let out = run.json();
    assert_eq!(out["images"][0]["decision"], "allow");
    assert_eq!(
        out["images"][0]["unscanned"]["kind"], "registry-unavailable",
        "{out}"
    );
    let detail = out["images"][0]["unscanned"]["detail"].as_str().unwrap();
    assert!(detail.contains("127.0.0.1"), "{detail}");
    // --offline: unscanned, and the default rule does not block unscanned images.
    let run = vulngate(&[
        "check",
        "--image",
        "ghcr.io/o/app:1",
        "--offline",
        "-o",
        "json",
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let out = run.json();
    assert_eq!(out["images"][0]["decision"], "allow");
    assert_eq!(
        out["images"][0]["unscanned"],
        json!({ "kind": "no-report" })
    );
}

fn openvex(cve: &str, product: &str) -> String {
    json!({
        "@context": "https://openvex.dev/ns/v0.2.0",
        "@id": "https://example.com/vex/1",
        "author": "Security Team",
        "timestamp": "2026-11-01T00:00:00Z",
        "version": 1,
        "statements": [{
            "vulnerability": { "name": cve },
            "products": [{ "@id": product }],
            "status": "not_affected",
            "justification": "vulnerable_code_not_in_execute_path"
        }]
    })
    .to_string()
}

#[test]
fn vex_suppression_turns_a_deny_into_an_allow() {
    let t = Temp::new();
    let rules = t.file("rules.yaml", RULES);
    let report = t.file(
        "r.json",
        &trivy(&[("CVE-2024-1000", "openssl", "CRITICAL", "3.0.14")]),
    );
    let base = [
        "check",
        "--image",
        "registry.example.com/shop/api:1.4.2",
        "--report",
        &report,
        "--rules",
        &rules,
        "-n",
        "prod-shop",
        "-o",
        "json",
        "--now",
        NOW,
    ];
    let run = vulngate(&base);
    assert_eq!(run.code, 1);
    assert_eq!(run.json()["decision"], "deny");

    let vex = t.file(
        "vex.json",
        &openvex("CVE-2024-1000", "registry.example.com/shop/api:1.4.2"),
    );
    let mut args = base.to_vec();
    args.extend(["--vex", &vex]);
    let run = vulngate(&args);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let out = run.json();
    assert_eq!(out["decision"], "allow");
    assert_eq!(out["images"][0]["suppressed"], json!(["CVE-2024-1000"]));

    // A statement about another image changes nothing.
    let other = t.file(
        "other.json",
        &openvex("CVE-2024-1000", "registry.example.com/shop/web:1"),
    );
    let mut args = base.to_vec();
    args.extend(["--vex", &other]);
    let run = vulngate(&args);
    assert_eq!(run.code, 1);
    assert_eq!(run.json()["decision"], "deny");

    // A report passed as --vex is bad input.
    let mut args = base.to_vec();
    args.extend(["--vex", &report]);
    let run = vulngate(&args);
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("not a VEX document"), "{}", run.stderr);
}

#[test]
fn sarif_has_one_result_per_audited_or_denied_image() {
    let mut args = EXAMPLES.to_vec();
    args.extend(["--output", "sarif", "--now", NOW]);
    let run = vulngate(&args);
    assert_eq!(run.code, 1, "{}", run.stderr);
    let log = run.json();
    // Required by SARIF 2.1.0: version, runs[].tool.driver.name, results[].message.text,
    // rules[].id.
    assert_eq!(log["version"], "2.1.0");
    let runs = log["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 1);
    let driver = &runs[0]["tool"]["driver"];
    assert_eq!(driver["name"], "vulngate");
    // The project's URL (the workspace's `repository`), never an empty string.
    assert_eq!(
        driver["informationUri"],
        "https://github.com/vulngate/vulngate"
    );
    let rule_ids: Vec<&str> = driver["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(rule_ids, ["deny-critical-prod", "audit-high"]);

    let results = runs[0]["results"].as_array().unwrap();
    assert_eq!(results.len(), 2, "the two allowed images have no result");
    let mut seen = Vec::new();
    for r in results {
        let rule = r["ruleId"].as_str().unwrap();
        let index = r["ruleIndex"].as_u64().unwrap() as usize;
        assert_eq!(rule_ids[index], rule);
        assert!(!r["message"]["text"].as_str().unwrap().is_empty());
        let image = r["locations"][0]["logicalLocations"][0]["name"]
            .as_str()
            .unwrap();
        seen.push((
            image.to_string(),
            r["level"].as_str().unwrap().to_string(),
            rule.to_string(),
        ));
    }
    assert_eq!(
        seen,
        [
            (
                "registry.example.com/shop/api:1.4.2".into(),
                "error".into(),
                "deny-critical-prod".into()
            ),
            (
                "registry.example.com/shop/orders-db:15.2".into(),
                "warning".into(),
                "audit-high".into()
            ),
        ]
    );
}

#[test]
fn manifests_from_stdin_with_labels_and_namespace() {
    let t = Temp::new();
    let rules = t.file(
        "rules.yaml",
        r#"
apiVersion: vulngate.io/v1
kind: SecurityRule
metadata: { name: deny-high-payments }
spec:
  action: deny
  scope:
    - { field: label, key: team, op: equals, value: payments }
    - { field: namespace, op: equals, value: shop }
  conditions: [{ severity: high, maxCount: 0 }]
"#,
    );
    let report = t.file("r.json", &trivy(HIGH));
    let manifest = "apiVersion: batch/v1\nkind: CronJob\nmetadata: {name: nightly}\nspec:\n  schedule: '@daily'\n  jobTemplate:\n    spec:\n      template:\n        metadata: {labels: {team: search}}\n        spec:\n          containers: [{name: c, image: 'app:1'}]\n";
    let base = [
        "check", "-f", "-", "--report", &report, "--rules", &rules, "-n", "shop", "-o", "json",
        "--now", NOW,
    ];
    // The pod template says team=search: the rule does not apply.
    let run = vulngate_stdin(&base, manifest);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let out = run.json();
    assert_eq!(out["images"][0]["decision"], "allow");
    assert_eq!(
        out["images"][0]["workload"],
        json!({ "kind": "CronJob", "name": "nightly", "namespace": "shop", "container": "c", "container_kind": "container" })
    );
    // --label overrides the manifest's label.
    let mut args = base.to_vec();
    args.extend(["--label", "team=payments"]);
    let run = vulngate_stdin(&args, manifest);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert_eq!(run.json()["images"][0]["rule"], "deny-high-payments");

    // A manifest naming another namespace than --namespace is an error, as with kubectl.
    let other_ns = manifest.replace("{name: nightly}", "{name: nightly, namespace: other}");
    let run = vulngate_stdin(&base, &other_ns);
    assert_eq!(run.code, 2);
    assert!(
        run.stderr
            .contains("the namespace from the object (other) does not match --namespace shop"),
        "{}",
        run.stderr
    );
}

#[test]
fn strictest_precedence_lets_the_deny_rule_decide() {
    let t = Temp::new();
    let rules = t.file(
        "rules.yaml",
        r#"
apiVersion: vulngate.io/v1
kind: SecurityRule
metadata: { name: deny-two-high }
spec:
  action: deny
  conditions: [{ severity: high, maxCount: 1 }]
---
apiVersion: vulngate.io/v1
kind: SecurityRule
metadata: { name: audit-any-high }
spec:
  action: audit
  conditions: [{ severity: high, maxCount: 0 }]
"#,
    );
    let report = t.file(
        "r.json",
        &trivy(&[
            ("CVE-2024-3000", "a", "HIGH", "2"),
            ("CVE-2024-3001", "b", "HIGH", "2"),
        ]),
    );
    let base = [
        "check", "--image", "app:1", "--report", &report, "--rules", &rules, "-o", "json", "--now",
        NOW,
    ];
    let run = vulngate(&base);
    assert_eq!(run.code, 0);
    assert_eq!(run.json()["images"][0]["rule"], "audit-any-high");
    let mut args = base.to_vec();
    args.extend(["--precedence", "strictest"]);
    let run = vulngate(&args);
    assert_eq!(run.code, 1);
    let out = run.json();
    assert_eq!(out["decision"], "deny");
    assert_eq!(out["images"][0]["rule"], "deny-two-high");
}

#[test]
fn kev_and_epss_files_decide_and_appear_in_the_reason() {
    let args = [
        "check",
        "--rules",
        "examples/exploitation/rules.yaml",
        "--image",
        "registry.example.com/shop/web:1.0",
        "--report",
        "examples/exploitation/report.json",
        "-o",
        "json",
        "--now",
        "2026-12-01T00:00:00Z",
    ];
    let mut with = args.to_vec();
    with.extend([
        "--kev",
        "examples/exploitation/kev.json",
        "--epss",
        "examples/exploitation/epss.csv",
    ]);
    let run = vulngate(&with);
    assert_eq!(run.code, 1, "{}", run.stderr);
    let out = run.json();
    assert_eq!(out["images"][0]["rule"], "deny-known-exploited");
    let reason = out["images"][0]["reason"].as_str().unwrap();
    assert!(reason.contains("CVE-2021-44228 is in KEV"), "{reason}");
    assert!(reason.contains("EPSS 0.94"), "{reason}");
    // Without the catalogs the KEV rule cannot fire; the age rule decides.
    let run = vulngate(&args);
    assert_eq!(run.json()["images"][0]["rule"], "deny-old-critical");
}

#[test]
fn a_bad_kev_or_epss_file_is_bad_input() {
    let t = Temp::new();
    let kev = t.file(
        "kev.json",
        r#"{"catalogVersion": "1", "count": 2, "vulnerabilities": [{"cveID": "CVE-2021-44228"}]}"#,
    );
    let epss = t.file("epss.csv", "cve,score\nCVE-2021-44228,0.9\n");
    for (flag, file, want) in [
        ("--kev", &kev, "count is 2 but the file lists 1"),
        ("--epss", &epss, "expected the header cve,epss,percentile"),
    ] {
        let run = vulngate(&["check", "--image", "x:1", "--offline", flag, file.as_str()]);
        assert_eq!(run.code, 2, "{}", run.stderr);
        assert!(run.stderr.contains(want), "{}", run.stderr);
    }
}
