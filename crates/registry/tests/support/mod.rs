//! Test support: real registries (docker-registry for the referrers tag schema, ferro-oci-server
//! for the referrers API) on 127.0.0.1 free ports with temporary storage, stopped on drop, and
//! wrappers around the real tools (crane, oras, cosign, notation) from
//! `scripts/install-test-tools.sh`. A missing tool fails the test; nothing is skipped.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

pub const INSTALL_HINT: &str = "run scripts/install-test-tools.sh";

/// The tools directory: `$VULNGATE_TOOLS_DIR/bin` or `~/.cache/vulngate-tools/bin`.
fn tools_bin() -> PathBuf {
    let base = std::env::var_os("VULNGATE_TOOLS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/root".into()))
                .join(".cache/vulngate-tools")
        });
    base.join("bin")
}

/// The path of a test tool; panics with the install hint when it is missing.
pub fn tool(name: &str) -> PathBuf {
    let p = tools_bin().join(name);
    if p.exists() {
        return p;
    }
    if let Some(path) = std::env::var_os("PATH") {
        for d in std::env::split_paths(&path) {
            let c = d.join(name);
            if c.exists() {
                return c;
            }
        }
    }
    panic!(
        "test tool {name:?} not found in {} or PATH: {INSTALL_HINT}",
        tools_bin().display()
    );
}

pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

/// Runs a tool in `dir` with `HOME`/`XDG_CONFIG_HOME` inside the scratch directory; returns
/// stdout; panics with stderr on failure.
pub fn run(scratch: &Path, dir: &Path, name: &str, args: &[&str], env: &[(&str, &str)]) -> String {
    let mut c = Command::new(tool(name));
    c.args(args)
        .current_dir(dir)
        .env("HOME", scratch.join("home"))
        .env("XDG_CONFIG_HOME", scratch.join("xdg"))
        .env("DOCKER_CONFIG", scratch.join("docker"))
        .env_remove("HTTP_PROXY")
        .env_remove("HTTPS_PROXY")
        .stdin(Stdio::null());
    for (k, v) in env {
        c.env(k, v);
    }
    let out = c
        .output()
        .unwrap_or_else(|e| panic!("{name}: {e} ({INSTALL_HINT})"));
    if !out.status.success() {
        panic!(
            "{name} {args:?} failed ({}):\n{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// docker-registry 2.8: no referrers API, tag schema.
    Distribution,
    /// ferro-oci-server: referrers API.
    Ferro,
}

/// Extra docker-registry configuration: TLS and htpasswd authentication.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Server certificate and key (PEM) served on the registry's port, and the CA that issued
    /// them (oras is given it; crane runs with `--insecure`, which skips verification).
    pub tls: Option<Tls>,
    /// An htpasswd file (bcrypt entries): `auth: htpasswd`.
    pub htpasswd: Option<PathBuf>,
    /// Log every request (docker-registry's access log) to `registry.log`.
    pub access_log: bool,
}

#[derive(Debug, Clone)]
pub struct Tls {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: PathBuf,
}

/// A running registry with its scratch space; killed on drop.
pub struct Registry {
    pub kind: Kind,
    pub host: String,
    pub dir: TempDir,
    /// The CA of a TLS registry (`None`: plain HTTP).
    pub ca: Option<PathBuf>,
    child: Child,
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Registry {
    pub fn start(kind: Kind) -> Registry {
        Registry::start_with(kind, Options::default())
    }

    /// Starts a registry with TLS and/or htpasswd auth (docker-registry only).
    pub fn start_with(kind: Kind, opts: Options) -> Registry {
        assert!(
            kind == Kind::Distribution || (opts.tls.is_none() && opts.htpasswd.is_none()),
            "TLS and htpasswd options are for docker-registry"
        );
        let dir = tempfile::tempdir().expect("tempdir");
        for d in ["home", "xdg", "docker", "work"] {
            std::fs::create_dir_all(dir.path().join(d)).expect("mkdir");
        }
        let port = free_port();
        let host = format!("127.0.0.1:{port}");
        let log = std::fs::File::create(dir.path().join("registry.log")).expect("log");
        let child = match kind {
            Kind::Distribution => {
                let cfg = dir.path().join("config.yml");
                let level = if opts.access_log { "info" } else { "error" };
                let mut text = format!(
                    "version: 0.1\nlog:\n  level: {level}\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {host}\n",
                    dir.path().join("data").display()
                );
                if let Some(t) = &opts.tls {
                    text.push_str(&format!(
                        "  tls:\n    certificate: {}\n    key: {}\n",
                        t.cert.display(),
                        t.key.display()
                    ));
                }
                if let Some(h) = &opts.htpasswd {
                    text.push_str(&format!(
                        "auth:\n  htpasswd:\n    realm: vulngate-test\n    path: {}\n",
                        h.display()
                    ));
                }
                std::fs::write(&cfg, text).expect("config");
                Command::new(tool("docker-registry"))
                    .arg("serve")
                    .arg(&cfg)
                    .stdout(log.try_clone().expect("log"))
                    .stderr(log)
                    .spawn()
                    .unwrap_or_else(|e| panic!("docker-registry: {e} ({INSTALL_HINT})"))
            }
            Kind::Ferro => Command::new(tool("ferro-oci-server"))
                .env("FERRO_OCI_LISTEN", &host)
                .env("FERRO_OCI_STORAGE_DIR", dir.path().join("data"))
                .stdout(log.try_clone().expect("log"))
                .stderr(log)
                .spawn()
                .unwrap_or_else(|e| panic!("ferro-oci-server: {e} ({INSTALL_HINT})")),
        };
        let r = Registry {
            kind,
            host,
            dir,
            ca: opts.tls.map(|t| t.ca),
            child,
        };
        r.wait_ready();
        r
    }

    fn wait_ready(&self) {
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(15) {
            if let Ok(mut s) = std::net::TcpStream::connect(&self.host) {
                if self.ca.is_some() {
                    // TLS: the listener is up once it accepts.
                    return;
                }
                use std::io::{Read, Write};
                let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
                let req = format!(
                    "GET /v2/ HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
                    self.host
                );
                if s.write_all(req.as_bytes()).is_ok() {
                    let mut buf = [0u8; 12];
                    // 401: htpasswd auth is on.
                    if s.read_exact(&mut buf).is_ok()
                        && (buf.starts_with(b"HTTP/1.1 200") || buf.starts_with(b"HTTP/1.1 401"))
                    {
                        return;
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "registry {:?} did not start on {}: {}",
            self.kind,
            self.host,
            std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
        );
    }

    /// What the registry logged (its access log with [`Options::access_log`]).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    pub fn scratch(&self) -> &Path {
        self.dir.path()
    }

    pub fn work(&self) -> PathBuf {
        self.dir.path().join("work")
    }

    /// Runs a tool with the registry's scratch dirs as HOME/XDG_CONFIG_HOME.
    pub fn tool(&self, name: &str, args: &[&str]) -> String {
        run(self.scratch(), &self.work(), name, args, &[])
    }

    pub fn tool_env(&self, name: &str, args: &[&str], env: &[(&str, &str)]) -> String {
        run(self.scratch(), &self.work(), name, args, env)
    }

    /// Pushes a one-layer image (content makes the digest unique); returns its digest.
    pub fn push_image(&self, tag: &str, content: &str) -> String {
        let w = self.work();
        let layer_dir = w.join(format!("layer-{tag}"));
        std::fs::create_dir_all(&layer_dir).expect("mkdir");
        std::fs::write(layer_dir.join("hello.txt"), content).expect("write");
        let tar = w.join(format!("layer-{tag}.tar"));
        let st = Command::new("tar")
            .arg("-C")
            .arg(&layer_dir)
            .arg("-cf")
            .arg(&tar)
            .arg("hello.txt")
            .status()
            .expect("tar");
        assert!(st.success());
        let target = format!("{}/app:{tag}", self.host);
        let tar_s = tar.display().to_string();
        let out = self.tool(
            "crane",
            &[
                "append",
                "--oci-empty-base",
                "-f",
                &tar_s,
                "-t",
                &target,
                "--insecure",
            ],
        );
        out.rsplit('@').next().expect("digest").to_string()
    }

    /// Pushes linux/amd64 and linux/arm64 images and an index over them; returns
    /// (index digest, amd64 digest, arm64 digest).
    pub fn push_multiarch(&self, tag: &str) -> (String, String, String) {
        let mut d = Vec::new();
        for arch in ["amd64", "arm64"] {
            let t = format!("{tag}-{arch}");
            self.push_image(&t, &format!("{tag} {arch}"));
            let r = format!("{}/app:{t}", self.host);
            let out = self.tool(
                "crane",
                &[
                    "mutate",
                    "--set-platform",
                    &format!("linux/{arch}"),
                    "-t",
                    &r,
                    &r,
                    "--insecure",
                ],
            );
            d.push(out.rsplit('@').next().expect("digest").to_string());
        }
        let idx = format!("{}/app:{tag}", self.host);
        self.tool(
            "crane",
            &[
                "index",
                "append",
                "-m",
                &format!("{}/app:{tag}-amd64", self.host),
                "-m",
                &format!("{}/app:{tag}-arm64", self.host),
                "-t",
                &idx,
                "--insecure",
            ],
        );
        let digest = self.tool("crane", &["digest", &idx, "--insecure"]);
        (digest, d[0].clone(), d[1].clone())
    }

    /// `oras attach` a report file to `subject`; returns the artifact digest.
    pub fn oras_attach(
        &self,
        subject: &str,
        artifact_type: &str,
        report: &[u8],
        created: Option<&str>,
    ) -> String {
        let w = self.work();
        std::fs::write(w.join("report.json"), report).expect("write");
        let r = format!("{}/app@{subject}", self.host);
        let ann = created.map(|c| format!("org.opencontainers.image.created={c}"));
        let ca = self.ca.as_ref().map(|c| c.display().to_string());
        let mut args = vec!["attach"];
        match &ca {
            Some(c) => args.extend(["--ca-file", c.as_str()]),
            None => args.push("--plain-http"),
        }
        args.extend([
            "--artifact-type",
            artifact_type,
            "--format",
            "go-template",
            "--template",
            "{{.digest}}",
        ]);
        if let Some(a) = &ann {
            args.push("--annotation");
            args.push(a);
        }
        args.push(&r);
        args.push("report.json:application/json");
        self.tool("oras", &args)
    }

    /// Generates a cosign key pair named `name` in the scratch dir; returns (key, pub) paths.
    pub fn cosign_keys(&self, name: &str) -> (PathBuf, PathBuf) {
        let d = self.scratch().join(format!("cosign-{name}"));
        std::fs::create_dir_all(&d).expect("mkdir");
        run(
            self.scratch(),
            &d,
            "cosign",
            &["generate-key-pair"],
            &[("COSIGN_PASSWORD", "")],
        );
        (d.join("cosign.key"), d.join("cosign.pub"))
    }

    pub fn cosign_sign(&self, key: &Path, digest: &str) {
        let r = format!("{}/app@{digest}", self.host);
        let k = key.display().to_string();
        self.tool_env(
            "cosign",
            &[
                "sign",
                "--key",
                &k,
                "--tlog-upload=false",
                "--use-signing-config=false",
                "--allow-http-registry",
                "--allow-insecure-registry",
                "--yes",
                &r,
            ],
            &[("COSIGN_PASSWORD", "")],
        );
    }

    pub fn cosign_attest_vuln(&self, key: &Path, digest: &str, predicate: &[u8]) {
        let p = self.work().join("predicate.json");
        std::fs::write(&p, predicate).expect("write");
        let r = format!("{}/app@{digest}", self.host);
        let k = key.display().to_string();
        let ps = p.display().to_string();
        self.tool_env(
            "cosign",
            &[
                "attest",
                "--type",
                "vuln",
                "--predicate",
                &ps,
                "--key",
                &k,
                "--tlog-upload=false",
                "--use-signing-config=false",
                "--allow-http-registry",
                "--allow-insecure-registry",
                "--yes",
                &r,
            ],
            &[("COSIGN_PASSWORD", "")],
        );
    }

    /// `notation cert generate-test` (once per registry scratch dir); returns the certificate.
    pub fn notation_cert(&self, name: &str) -> PathBuf {
        let crt = self
            .scratch()
            .join(format!("xdg/notation/localkeys/{name}.crt"));
        if !crt.exists() {
            self.tool("notation", &["cert", "generate-test", "--default", name]);
        }
        crt
    }

    pub fn notation_sign(&self, digest: &str) {
        let r = format!("{}/app@{digest}", self.host);
        self.tool("notation", &["sign", "--insecure-registry", &r]);
    }
}

/// A Trivy report with one HIGH finding `id` (real Trivy JSON shape).
pub fn trivy_report(id: &str, created: &str) -> Vec<u8> {
    format!(
        r#"{{"SchemaVersion":2,"CreatedAt":"{created}","ArtifactName":"app","ArtifactType":"container_image","Results":[{{"Target":"app","Vulnerabilities":[{{"VulnerabilityID":"{id}","PkgName":"openssl","InstalledVersion":"3.0.1","FixedVersion":"3.0.2","Severity":"HIGH"}}]}}]}}"#
    )
    .into_bytes()
}

/// A cosign `--type vuln` predicate (the shape cosign re-serialises) wrapping a Trivy result.
pub fn cosign_vuln_predicate(id: &str) -> Vec<u8> {
    format!(
        r#"{{"scanner":{{"uri":"pkg:github/aquasecurity/trivy@0.59.0","version":"0.59.0","db":{{"uri":"","version":""}},"result":{{"Results":[{{"Target":"app","Vulnerabilities":[{{"VulnerabilityID":"{id}","Severity":"CRITICAL"}}]}}]}}}},"metadata":{{"scanStartedOn":"2026-11-28T00:00:00Z","scanFinishedOn":"2026-11-28T00:00:01Z"}}}}"#
    )
    .into_bytes()
}
