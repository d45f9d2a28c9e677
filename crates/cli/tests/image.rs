//! scripts/build-image.sh end to end, on the debug binary (`--binary`, not a dist build): the OCI
//! layout is reproducible, pushed with crane to a real docker-registry, signed with cosign, its
//! CycloneDX SBOM attached as a referrer with oras; its config read back with crane (user, entrypoint,
//! labels); its root filesystem exported with crane, and the binary run from it through the image's
//! own dynamic loader and libraries, answering `/healthz` and an AdmissionReview.
//! `VULNGATE_IMAGE_TEST_ARCH=arm64` with `VULNGATE_IMAGE_TEST_BINARY=<an aarch64 build>` runs the
//! same checks on an arm64 image, its loader and binary under `qemu-aarch64-static` (docs/install.md,
//! "arm64"); the test suite runs the amd64 default.
//! The Debian packages come from the tools cache (scripts/install-test-tools.sh: image-debs), so the
//! test does not reach the network. A missing tool fails the test.
#![allow(clippy::unwrap_used)]

#[path = "../../registry/tests/support/mod.rs"]
mod support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{Kind, Registry};

/// 2026-01-01T00:00:00Z
const EPOCH: &str = "1767225600";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn tools_path() -> String {
    let bin = support::tool("crane");
    let dir = bin.parent().unwrap().display().to_string();
    format!("{dir}:{}", std::env::var("PATH").unwrap_or_default())
}

/// The image the test builds: an architecture and the binary packed into it.
struct Target {
    arch: String,
    binary: PathBuf,
    /// Debian's multiarch triple (library directories).
    multiarch: &'static str,
    /// The dynamic loader, relative to the root filesystem.
    loader: &'static str,
    /// The user-mode emulator that runs a foreign binary, if any.
    emulator: Option<&'static str>,
}

/// The [`Target`] of this run, read (and its emulator checked) once.
fn target() -> &'static Target {
    static TARGET: std::sync::OnceLock<Target> = std::sync::OnceLock::new();
    TARGET.get_or_init(read_target)
}

fn read_target() -> Target {
    match std::env::var("VULNGATE_IMAGE_TEST_ARCH").as_deref() {
        Err(_) | Ok("amd64") => Target {
            arch: "amd64".into(),
            binary: env!("CARGO_BIN_EXE_vulngate").into(),
            multiarch: "x86_64-linux-gnu",
            loader: "lib64/ld-linux-x86-64.so.2",
            emulator: None,
        },
        Ok("arm64") => {
            let binary = std::env::var("VULNGATE_IMAGE_TEST_BINARY").expect(
                "VULNGATE_IMAGE_TEST_ARCH=arm64 needs VULNGATE_IMAGE_TEST_BINARY, an aarch64 build \
                 (cargo build --profile dist --target aarch64-unknown-linux-gnu -p vulngate)",
            );
            assert!(
                Command::new("qemu-aarch64-static")
                    .arg("--version")
                    .output()
                    .is_ok_and(|o| o.status.success()),
                "running the arm64 image needs qemu-aarch64-static: apt-get install qemu-user-static"
            );
            Target {
                arch: "arm64".into(),
                binary: binary.into(),
                multiarch: "aarch64-linux-gnu",
                loader: "lib/ld-linux-aarch64.so.1",
                emulator: Some("qemu-aarch64-static"),
            }
        }
        Ok(other) => panic!("VULNGATE_IMAGE_TEST_ARCH: amd64 or arm64, not {other}"),
    }
}

struct Out {
    ok: bool,
    stdout: String,
    stderr: String,
}

/// Runs scripts/build-image.sh with the [`target`]'s binary and architecture (`args` may
/// override them) and the tools on PATH; registry clients keep their configuration in `scratch`.
fn build_image(scratch: &Path, args: &[&str], epoch: &str) -> Out {
    let target = target();
    let out = Command::new("bash")
        .arg(repo().join("scripts/build-image.sh"))
        .arg("--binary")
        .arg(&target.binary)
        .args(["--arch", &target.arch])
        .args(args)
        .env("PATH", tools_path())
        .env("SOURCE_DATE_EPOCH", epoch)
        .env("DOCKER_CONFIG", scratch.join("docker"))
        .env("XDG_CONFIG_HOME", scratch.join("xdg"))
        .env("COSIGN_PASSWORD", "")
        .env_remove("HTTP_PROXY")
        .env_remove("HTTPS_PROXY")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    Out {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).trim().to_string(),
        stderr: String::from_utf8_lossy(&out.stderr).to_string(),
    }
}

fn digest_of(out: &Out) -> String {
    assert!(out.ok, "build-image.sh failed:\n{}", out.stderr);
    let d = out.stdout.lines().last().unwrap_or_default().to_string();
    assert!(
        d.starts_with("sha256:") && d.len() == 71,
        "not a digest: {d:?}"
    );
    d
}

/// Every file of a layout, path -> content.
fn layout_files(dir: &Path) -> BTreeSet<(String, Vec<u8>)> {
    let mut out = BTreeSet::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p.strip_prefix(dir).unwrap().display().to_string();
                out.insert((rel, std::fs::read(&p).unwrap()));
            }
        }
    }
    out
}

fn blob(dir: &Path, digest: &str) -> Value {
    let p = dir
        .join("blobs/sha256")
        .join(digest.trim_start_matches("sha256:"));
    serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
}

struct Served(Child);

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn image_is_reproducible_pushed_signed_and_runs_from_its_root_filesystem() {
    let t = tempfile::tempdir().unwrap();
    let scratch = t.path();
    let (a, b, c) = (scratch.join("a"), scratch.join("b"), scratch.join("c"));

    // ---- reproducible: two builds, the same bytes; another epoch, another digest
    let da = digest_of(&build_image(
        scratch,
        &["--output", a.to_str().unwrap()],
        EPOCH,
    ));
    let db = digest_of(&build_image(
        scratch,
        &["--output", b.to_str().unwrap()],
        EPOCH,
    ));
    assert_eq!(da, db, "two builds of the same inputs differ");
    assert!(
        layout_files(&a) == layout_files(&b),
        "the layouts differ file by file"
    );
    let manifest = blob(&a, &da);
    let index: Value =
        serde_json::from_slice(&std::fs::read(a.join("index.json")).unwrap()).unwrap();
    assert_eq!(index["manifests"][0]["digest"], da.as_str());
    assert_eq!(
        manifest["layers"].as_array().unwrap().len(),
        2,
        "{manifest}"
    );
    assert!(
        manifest["layers"]
            .as_array()
            .unwrap()
            .iter()
            .all(|l| l["mediaType"] == "application/vnd.oci.image.layer.v1.tar+gzip"),
        "{manifest}"
    );
    // the Debian base layer, the same whatever the binary: only the epoch changes it
    let dc = digest_of(&build_image(
        scratch,
        &["--output", c.to_str().unwrap()],
        "1767225601",
    ));
    assert_ne!(dc, da, "SOURCE_DATE_EPOCH is not used");

    // ---- push, SBOM referrer, signature
    let reg = Registry::start(Kind::Distribution);
    let (key, public) = reg.cosign_keys("release");
    let reference = format!("{}/vulngate:test", reg.host);
    let pushed = build_image(
        scratch,
        &[
            "--output",
            c.to_str().unwrap(),
            "--push",
            &reference,
            "--sign",
            key.to_str().unwrap(),
            "--plain-http",
        ],
        EPOCH,
    );
    assert_eq!(digest_of(&pushed), da, "the pushed build is another image");
    let pinned = format!("{}/vulngate@{da}", reg.host);
    assert_eq!(
        reg.tool("crane", &["digest", "--insecure", &reference]),
        da,
        "the tag does not point at the built manifest"
    );

    // config: user, entrypoint, labels
    let config: Value =
        serde_json::from_str(&reg.tool("crane", &["config", "--insecure", &reference])).unwrap();
    let cfg = &config["config"];
    assert_eq!(cfg["User"], "65532:65532", "{config}");
    assert_eq!(cfg["Entrypoint"], serde_json::json!(["/usr/bin/vulngate"]));
    assert_eq!(config["architecture"], target().arch.as_str());
    assert_eq!(config["created"], "2026-01-01T00:00:00Z");
    let labels = &cfg["Labels"];
    let revision = Command::new("git")
        .args(["-C", repo().to_str().unwrap(), "rev-parse", "HEAD"])
        .output()
        .unwrap();
    let revision = String::from_utf8_lossy(&revision.stdout).trim().to_string();
    for (k, v) in [
        ("title", "vulngate"),
        ("version", env!("CARGO_PKG_VERSION")),
        ("licenses", "Apache-2.0"),
        ("source", "https://github.com/vulngate/vulngate"),
        ("created", "2026-01-01T00:00:00Z"),
        ("revision", revision.as_str()),
    ] {
        assert_eq!(
            labels[format!("org.opencontainers.image.{k}")],
            v,
            "label {k}: {labels}"
        );
    }

    // the signature verifies with the public key, not with another one
    let pubs = public.display().to_string();
    let verify = |key: &str| {
        Command::new(support::tool("cosign"))
            .args([
                "verify",
                "--key",
                key,
                "--insecure-ignore-tlog=true",
                "--allow-http-registry",
                "--allow-insecure-registry",
                &pinned,
            ])
            .env("DOCKER_CONFIG", scratch.join("docker"))
            .env("XDG_CONFIG_HOME", scratch.join("xdg"))
            .output()
            .unwrap()
    };
    let ok = verify(&pubs);
    assert!(
        ok.status.success(),
        "cosign verify: {}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let (_, other) = reg.cosign_keys("other");
    assert!(
        !verify(other.to_str().unwrap()).status.success(),
        "cosign verify accepts another key"
    );

    // the SBOM referrer: CycloneDX with vulngate's crates and the Debian packages
    let discovered: Value = serde_json::from_str(&reg.tool(
        "oras",
        &[
            "discover",
            "--plain-http",
            "--format",
            "json",
            "--artifact-type",
            "application/vnd.cyclonedx+json",
            &pinned,
        ],
    ))
    .unwrap();
    let referrers = discovered["referrers"]
        .as_array()
        .or_else(|| discovered["manifests"].as_array())
        .unwrap_or_else(|| panic!("no referrers: {discovered}"));
    assert_eq!(referrers.len(), 1, "{discovered}");
    let sbom_manifest = format!(
        "{}/vulngate@{}",
        reg.host,
        referrers[0]["digest"].as_str().unwrap()
    );
    let sbom_dir = scratch.join("sbom");
    std::fs::create_dir_all(&sbom_dir).unwrap();
    reg.tool(
        "oras",
        &[
            "pull",
            "--plain-http",
            "-o",
            sbom_dir.to_str().unwrap(),
            &sbom_manifest,
        ],
    );
    let sbom: Value =
        serde_json::from_slice(&std::fs::read(sbom_dir.join("vulngate.cdx.json")).unwrap())
            .unwrap();
    assert_eq!(sbom["bomFormat"], "CycloneDX", "{sbom}");
    let names: BTreeSet<&str> = sbom["components"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    for n in ["tokio", "rustls", "libc6", "ca-certificates", "tzdata"] {
        assert!(names.contains(n), "the SBOM has no {n}: {names:?}");
    }
    assert_eq!(sbom["metadata"]["timestamp"], "2026-01-01T00:00:00Z");

    // ---- the root filesystem: nothing but the loader, libraries, data and vulngate
    let root = scratch.join("root");
    std::fs::create_dir_all(&root).unwrap();
    let tar = scratch.join("root.tar");
    reg.tool(
        "crane",
        &["export", "--insecure", &reference, tar.to_str().unwrap()],
    );
    let st = Command::new("tar")
        .args(["-xf", tar.to_str().unwrap(), "-C", root.to_str().unwrap()])
        .status()
        .unwrap();
    assert!(st.success());
    for absent in [
        "bin/sh",
        "bin/bash",
        "usr/bin/dpkg",
        "usr/bin/apt",
        "usr/sbin",
    ] {
        assert!(
            !root.join(absent).exists() && root.join(absent).symlink_metadata().is_err(),
            "{absent} is in the image"
        );
    }
    let bins: Vec<String> = std::fs::read_dir(root.join("usr/bin"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(bins, ["vulngate"]);
    let passwd = std::fs::read_to_string(root.join("etc/passwd")).unwrap();
    assert!(passwd.contains("nonroot:x:65532:65532:"), "{passwd}");
    let bundle = std::fs::read_to_string(root.join("etc/ssl/certs/ca-certificates.crt")).unwrap();
    assert!(
        bundle.matches("-----BEGIN CERTIFICATE-----").count() > 100,
        "the CA bundle is short"
    );
    assert!(root.join("usr/share/zoneinfo/Europe/Paris").is_file());

    // ---- run it on the image's own loader and libraries
    let data = scratch.join("data");
    let port = support::free_port();
    let target = target();
    let loader = root.join(target.loader);
    let libs = format!(
        "{}:{}",
        root.join("lib").join(target.multiarch).display(),
        root.join("usr/lib").join(target.multiarch).display()
    );
    let mut run = match target.emulator {
        Some(emulator) => {
            let mut c = Command::new(emulator);
            c.arg(&loader);
            c
        }
        None => Command::new(&loader),
    };
    let child = run
        .args(["--library-path", &libs])
        .arg(root.join("usr/bin/vulngate"))
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--data-dir",
        ])
        .arg(&data)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    let _served = Served(child);
    let started = Instant::now();
    let client = loop {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the image's vulngate did not answer /healthz"
        );
        if let Ok(pem) = std::fs::read(data.join("ca.crt")) {
            let client = reqwest::Client::builder()
                .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
                .build()
                .unwrap();
            let r = client
                .get(format!("https://127.0.0.1:{port}/healthz"))
                .send()
                .await;
            if r.is_ok_and(|r| r.status().is_success()) {
                break client;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // the process runs on the image's libc, not the host's
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap();
    let libc = root.join("lib").join(target.multiarch).join("libc.so.6");
    assert!(
        maps.contains(libc.to_str().unwrap()),
        "libc.so.6 is not the image's:\n{maps}"
    );
    let review = std::fs::read(repo().join("examples/admission-review.json")).unwrap();
    let answer: Value = client
        .post(format!("https://127.0.0.1:{port}/validate?timeout=10s"))
        .header("content-type", "application/json")
        .body(review)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        answer["response"]["allowed"].is_boolean(),
        "no admission answer: {answer}"
    );
}

#[test]
fn install_default_image_is_the_build_scripts_release_reference() {
    let t = tempfile::tempdir().unwrap();
    let printed = build_image(t.path(), &["--print-ref"], EPOCH);
    assert!(printed.ok, "{}", printed.stderr);
    assert_eq!(
        printed.stdout,
        concat!("ghcr.io/vulngate/vulngate:", env!("CARGO_PKG_VERSION"))
    );
    let out = Command::new(env!("CARGO_BIN_EXE_vulngate"))
        .args(["install", "--allow-unsigned-reports"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rendered = String::from_utf8_lossy(&out.stdout);
    assert!(
        rendered.contains(&format!("image: {}\n", printed.stdout)),
        "vulngate install does not deploy the release reference {}",
        printed.stdout
    );
    let kustomization =
        std::fs::read_to_string(repo().join("deploy/base/kustomization.yaml")).unwrap();
    assert!(
        kustomization.contains("- name: ghcr.io/vulngate/vulngate\n")
            && kustomization.contains(&format!("newTag: {}", env!("CARGO_PKG_VERSION"))),
        "deploy/base has no images: entry for the release image:\n{kustomization}"
    );
}

#[test]
fn bad_arguments_are_refused_before_any_build() {
    let t = tempfile::tempdir().unwrap();
    for (args, msg) in [
        (&["--sign", "key"][..], "--sign signs the pushed image"),
        (&["--arch", "riscv64"][..], "--arch: amd64 or arm64"),
        (&["--frobnicate"][..], "unknown argument: --frobnicate"),
    ] {
        let out = build_image(t.path(), args, EPOCH);
        assert!(!out.ok, "{args:?} was accepted");
        assert!(out.stderr.contains(msg), "{args:?}: {}", out.stderr);
    }
}
