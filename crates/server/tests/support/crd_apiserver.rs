//! A real Kubernetes API server for custom resources, for tests: etcd plus `crd-apiserver`
//! (`tests/crd-apiserver`, the upstream k8s.io/apiextensions-apiserver with discovery turned on),
//! both installed by `scripts/install-test-tools.sh`. It serves CustomResourceDefinitions and custom
//! objects (create, get, list, watch, patch, server-side apply, status subresource, delete) to
//! kubectl and kube-rs; there is no core/v1 (see docs/testing.md, "The CRD API server").
//!
//! ```ignore
//! let dir = tempfile::tempdir().unwrap();
//! let mut api = CrdApiServer::start(dir.path());          // blocking: etcd + API server, /readyz 200
//! api.kubectl_apply(CRD_YAML);                             // kubectl apply --validate=false -f -
//! api.kubectl_ok(&["wait", "--for=condition=Established", "crd/widgets.test.vulngate.io"]);
//! // kube-rs: KUBECONFIG=api.kubeconfig_path, or
//! // kube::Config::from_custom_kubeconfig(Kubeconfig::read_from(&api.kubeconfig_path)?, &Default::default())
//! api.restart_apiserver();                                 // same port, same etcd, same certificates
//! ```
//!
//! The functions block (they spawn processes and poll); from async code call them through
//! `tokio::task::spawn_blocking` or `tokio::task::block_in_place` when other tasks must keep
//! running meanwhile. A missing or outdated tool fails the test with "run
//! scripts/install-test-tools.sh"; nothing is skipped. Everything is killed on drop; the API
//! server also exits by itself when the test process dies (its stdin is a pipe from here).

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Output, Stdio};
use std::time::{Duration, Instant};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use sha2::{Digest, Sha256};

/// How long etcd and the API server get to become ready (they need well under a second on an
/// idle machine; this is generous for a loaded 2-core one).
const READY_TIMEOUT: Duration = Duration::from_secs(90);
/// How long the API server gets to shut down gracefully before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(20);

const INSTALL_HINT: &str = "run scripts/install-test-tools.sh";

/// etcd and the CRD API server, running until dropped.
#[derive(Debug)]
pub struct CrdApiServer {
    /// `https://127.0.0.1:<port>`
    pub url: String,
    pub port: u16,
    /// `http://127.0.0.1:<port>` (plain HTTP on loopback)
    pub etcd_url: String,
    /// Where everything lives: certificates, kubeconfig, etcd data, logs.
    pub dir: PathBuf,
    /// A kubeconfig (context `crd-apiserver`, user `admin` in group `system:masters`) with the
    /// certificates inline; for kubectl (`--kubeconfig`) and kube-rs (`KUBECONFIG`,
    /// `Kubeconfig::read_from`).
    pub kubeconfig_path: PathBuf,
    /// The CA that issued the serving certificate and the client certificate (PEM).
    pub ca_pem: String,
    pub ca_path: PathBuf,
    /// The client certificate (CN=admin, O=system:masters) and its PKCS#8 key (PEM).
    pub client_cert_pem: String,
    pub client_key_pem: String,
    pub etcd_log: PathBuf,
    pub apiserver_log: PathBuf,
    etcd: Option<Child>,
    apiserver: Option<(Child, ChildStdin)>,
    etcd_bin: PathBuf,
    apiserver_bin: PathBuf,
    kubectl_bin: PathBuf,
    /// More API server flags (kept across restarts), e.g. `--token-auth-file`.
    extra_args: Vec<String>,
}

/// `${VULNGATE_TOOLS_DIR:-$HOME/.cache/vulngate-tools}`, as in scripts/install-test-tools.sh.
pub fn tools_dir() -> PathBuf {
    std::env::var_os("VULNGATE_TOOLS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/root".into()))
                .join(".cache/vulngate-tools")
        })
}

/// A tool linked in `<tools>/bin`; panics with the install hint when it is missing.
pub fn tool(name: &str) -> PathBuf {
    let p = tools_dir().join("bin").join(name);
    assert!(
        p.exists(),
        "{} is missing: {INSTALL_HINT} (VULNGATE_TOOLS_DIR={})",
        p.display(),
        tools_dir().display()
    );
    p
}

/// The same hash as `crd_source_hash` in scripts/install-test-tools.sh: sha256 of the
/// `sha256sum` lines (`<hex>  ./<file>`) of every .go file under `tests/crd-apiserver`, sorted.
pub fn crd_apiserver_source_hash() -> String {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/crd-apiserver");
    let mut files = Vec::new();
    let mut stack = vec![src.clone()];
    while let Some(d) = stack.pop() {
        let entries = std::fs::read_dir(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display()));
        for e in entries {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "go") {
                files.push(format!(
                    "./{}",
                    p.strip_prefix(&src).unwrap().to_string_lossy()
                ));
            }
        }
    }
    files.sort();
    let mut lines = String::new();
    for f in files {
        let hex = format!("{:x}", Sha256::digest(std::fs::read(src.join(&f)).unwrap()));
        let _ = writeln!(lines, "{hex}  {f}");
    }
    format!("{:x}", Sha256::digest(lines.as_bytes()))
}

/// The crd-apiserver binary; panics with the install hint when missing or built from another
/// version of `tests/crd-apiserver`.
pub fn crd_apiserver_bin() -> PathBuf {
    let bin = tool("crd-apiserver");
    let stamp_path = tools_dir().join("go/bin/crd-apiserver.stamp");
    let stamp = std::fs::read_to_string(&stamp_path).unwrap_or_default();
    let want = format!("source {}", crd_apiserver_source_hash());
    assert!(
        stamp.lines().any(|l| l == want),
        "{} was built from another version of tests/crd-apiserver ({} does not say {want}): \
         {INSTALL_HINT}",
        bin.display(),
        stamp_path.display()
    );
    bin
}

/// A loopback port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("binding 127.0.0.1:0")
}

struct Pki {
    ca_pem: String,
    serving_cert_pem: String,
    serving_key_pem: String,
    client_cert_pem: String,
    client_key_pem: String,
}

/// A CA, a serving certificate for 127.0.0.1/localhost and a client certificate
/// CN=admin O=system:masters (authorized for everything without any lookup).
fn pki() -> Pki {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "vulngate test crd-apiserver CA");
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca =
        CertifiedIssuer::self_signed(ca_params, KeyPair::generate().expect("key")).expect("CA");

    let mut serving =
        CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
            .expect("params");
    serving
        .distinguished_name
        .push(DnType::CommonName, "crd-apiserver");
    serving.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    serving.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    let serving_key = KeyPair::generate().expect("key");
    let serving_cert = serving.signed_by(&serving_key, &*ca).expect("serving cert");

    let mut client = CertificateParams::new(Vec::<String>::new()).expect("params");
    client.distinguished_name.push(DnType::CommonName, "admin");
    client
        .distinguished_name
        .push(DnType::OrganizationName, "system:masters");
    client.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    client.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    let client_key = KeyPair::generate().expect("key");
    let client_cert = client.signed_by(&client_key, &*ca).expect("client cert");

    Pki {
        ca_pem: ca.pem(),
        serving_cert_pem: serving_cert.pem(),
        serving_key_pem: serving_key.serialize_pem(),
        client_cert_pem: client_cert.pem(),
        client_key_pem: client_key.serialize_pem(),
    }
}

/// Standard base64 with padding (kubeconfig `*-data` fields).
fn base64(bytes: &[u8]) -> String {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ABC[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn kubeconfig(url: &str, pki: &Pki) -> String {
    format!(
        "apiVersion: v1
kind: Config
clusters:
- name: crd-apiserver
  cluster:
    server: {url}
    certificate-authority-data: {ca}
users:
- name: admin
  user:
    client-certificate-data: {cert}
    client-key-data: {key}
contexts:
- name: crd-apiserver
  context:
    cluster: crd-apiserver
    user: admin
current-context: crd-apiserver
",
        ca = base64(pki.ca_pem.as_bytes()),
        cert = base64(pki.client_cert_pem.as_bytes()),
        key = base64(pki.client_key_pem.as_bytes()),
    )
}

/// The last `n` lines of a log file, for failure messages.
pub fn log_tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// `GET path` over plain HTTP/1.0 on loopback; the whole response, or None if not connected.
fn http_get(port: u16, path: &str) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n\r\n").ok()?;
    let mut resp = String::new();
    s.read_to_string(&mut resp).ok()?;
    Some(resp)
}

fn exited(child: &mut Child) -> Option<std::process::ExitStatus> {
    child.try_wait().expect("waiting for a child process")
}

impl CrdApiServer {
    /// Starts etcd (data in `<dir>/etcd`) and the API server on free loopback ports, writes the
    /// certificates and `<dir>/kubeconfig`, and waits until `/readyz` answers 200.
    pub fn start(dir: &Path) -> CrdApiServer {
        CrdApiServer::start_with_args(dir, &[])
    }

    /// [`start`](Self::start) with more API server flags (kept across restarts): e.g.
    /// `--token-auth-file=F` (TokenReview) and `--access-review-policy-file=F`
    /// (SubjectAccessReview), see `tests/crd-apiserver/reviews.go`.
    pub fn start_with_args(dir: &Path, extra_args: &[String]) -> CrdApiServer {
        let etcd_bin = tool("etcd");
        let kubectl_bin = tool("kubectl");
        let apiserver_bin = crd_apiserver_bin();
        std::fs::create_dir_all(dir).expect("creating the directory");
        let dir = dir.canonicalize().expect("canonical directory");

        let pki = pki();
        let write = |name: &str, text: &str| {
            let p = dir.join(name);
            std::fs::write(&p, text).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            p
        };
        let ca_path = write("ca.pem", &pki.ca_pem);
        write("serving.crt", &pki.serving_cert_pem);
        write("serving.key", &pki.serving_key_pem);
        write("admin.crt", &pki.client_cert_pem);
        write("admin.key", &pki.client_key_pem);

        let etcd_port = free_port();
        let peer_port = free_port();
        let port = free_port();
        let url = format!("https://127.0.0.1:{port}");
        let kubeconfig_path = write("kubeconfig", &kubeconfig(&url, &pki));

        let etcd_log = dir.join("etcd.log");
        let etcd_url = format!("http://127.0.0.1:{etcd_port}");
        let peer_url = format!("http://127.0.0.1:{peer_port}");
        let log = std::fs::File::create(&etcd_log).expect("etcd log");
        let etcd = Command::new(&etcd_bin)
            .current_dir(&dir)
            .args(["--name", "vulngate-test", "--data-dir"])
            .arg(dir.join("etcd"))
            .args(["--listen-client-urls", &etcd_url])
            .args(["--advertise-client-urls", &etcd_url])
            .args(["--listen-peer-urls", &peer_url])
            .args(["--initial-advertise-peer-urls", &peer_url])
            .args(["--initial-cluster", &format!("vulngate-test={peer_url}")])
            .args(["--log-level", "warn"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("etcd log"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", etcd_bin.display()));

        let mut api = CrdApiServer {
            url,
            port,
            etcd_url,
            apiserver_log: dir.join("apiserver.log"),
            kubeconfig_path,
            ca_pem: pki.ca_pem,
            ca_path,
            client_cert_pem: pki.client_cert_pem,
            client_key_pem: pki.client_key_pem,
            etcd_log,
            dir,
            etcd: Some(etcd),
            apiserver: None,
            etcd_bin,
            apiserver_bin,
            kubectl_bin,
            extra_args: extra_args.to_vec(),
        };
        api.wait_for_etcd(etcd_port);
        api.start_apiserver();
        api
    }

    fn wait_for_etcd(&mut self, etcd_port: u16) {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(status) = exited(self.etcd.as_mut().expect("etcd")) {
                panic!(
                    "etcd ({}) exited with {status}:\n{}",
                    self.etcd_bin.display(),
                    log_tail(&self.etcd_log, 30)
                );
            }
            if let Some(resp) = http_get(etcd_port, "/health") {
                if resp.starts_with("HTTP/1.0 200") || resp.starts_with("HTTP/1.1 200") {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "etcd not healthy on {} after {READY_TIMEOUT:?}:\n{}",
                self.etcd_url,
                log_tail(&self.etcd_log, 30)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Starts the API server (on `self.port`, against the running etcd) and waits for
    /// `/readyz`. Panics if it is already running.
    pub fn start_apiserver(&mut self) {
        assert!(
            self.apiserver.is_none(),
            "the API server is already running"
        );
        let d = &self.dir;
        let kubeconfig = self.kubeconfig_path.to_str().expect("utf-8 path");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.apiserver_log)
            .expect("apiserver log");
        let mut child = Command::new(&self.apiserver_bin)
            .current_dir(d)
            .arg("--exit-on-stdin-eof")
            .args(["--etcd-servers", &self.etcd_url])
            .args(["--bind-address", "127.0.0.1"])
            .args(["--secure-port", &self.port.to_string()])
            .arg(format!("--cert-dir={}", d.join("certs").display()))
            .arg(format!(
                "--tls-cert-file={}",
                d.join("serving.crt").display()
            ))
            .arg(format!(
                "--tls-private-key-file={}",
                d.join("serving.key").display()
            ))
            .arg(format!("--client-ca-file={}", self.ca_path.display()))
            .arg(format!("--kubeconfig={kubeconfig}"))
            .arg(format!("--authentication-kubeconfig={kubeconfig}"))
            .arg(format!("--authorization-kubeconfig={kubeconfig}"))
            .arg("--authentication-skip-lookup")
            .arg("--enable-priority-and-fairness=false")
            .arg(
                "--disable-admission-plugins=NamespaceLifecycle,MutatingAdmissionWebhook,\
                 ValidatingAdmissionWebhook,ValidatingAdmissionPolicy,MutatingAdmissionPolicy",
            )
            .args(&self.extra_args)
            .stdin(Stdio::piped())
            .stdout(log.try_clone().expect("apiserver log"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", self.apiserver_bin.display()));
        let stdin = child.stdin.take().expect("piped stdin");
        self.apiserver = Some((child, stdin));
        self.wait_ready();
    }

    /// Waits until `GET /readyz` (with the admin certificate) answers `ok`.
    pub fn wait_ready(&mut self) {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some((child, _)) = self.apiserver.as_mut() {
                if let Some(status) = exited(child) {
                    panic!(
                        "the CRD API server ({}) exited with {status}:\n{}",
                        self.apiserver_bin.display(),
                        log_tail(&self.apiserver_log, 40)
                    );
                }
            }
            let out = self.kubectl(&["get", "--raw", "/readyz", "--request-timeout=5s"]);
            if out.status.success() && String::from_utf8_lossy(&out.stdout).trim() == "ok" {
                return;
            }
            let last = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(
                Instant::now() < deadline,
                "the CRD API server at {} is not ready after {READY_TIMEOUT:?}; last answer: \
                 {last}\nlog:\n{}",
                self.url,
                log_tail(&self.apiserver_log, 40)
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Stops the API server: closes its stdin (a graceful shutdown), kills it if it is still
    /// running after 20 s. etcd keeps running. No-op when it is not running.
    pub fn stop_apiserver(&mut self) {
        let Some((mut child, stdin)) = self.apiserver.take() else {
            return;
        };
        drop(stdin);
        let deadline = Instant::now() + STOP_TIMEOUT;
        while exited(&mut child).is_none() {
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops the API server and starts it again on the same port, with the same etcd and
    /// certificates; returns when `/readyz` answers again.
    pub fn restart_apiserver(&mut self) {
        self.stop_apiserver();
        self.start_apiserver();
    }

    /// Whether the API server process is running (it may not be ready).
    pub fn apiserver_running(&mut self) -> bool {
        match self.apiserver.as_mut() {
            Some((child, _)) => exited(child).is_none(),
            None => false,
        }
    }

    /// A `kubectl` command (Debian's kubectl from the tools cache, not whatever is on PATH) with
    /// `--kubeconfig` set and its HOME and discovery cache inside `dir`.
    pub fn kubectl_command(&self) -> Command {
        let mut c = Command::new(&self.kubectl_bin);
        c.current_dir(&self.dir)
            .env("HOME", self.dir.join("home"))
            .env_remove("KUBECONFIG")
            .arg(format!("--kubeconfig={}", self.kubeconfig_path.display()))
            .arg(format!(
                "--cache-dir={}",
                self.dir.join("kube-cache").display()
            ));
        c
    }

    /// Runs kubectl with `args`; returns its output whatever the exit status.
    pub fn kubectl(&self, args: &[&str]) -> Output {
        self.kubectl_command()
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("running {}: {e}", self.kubectl_bin.display()))
    }

    /// Runs kubectl with `args` and `stdin`; returns its output whatever the exit status.
    pub fn kubectl_with_stdin(&self, args: &[&str], stdin: &str) -> Output {
        let mut child = self
            .kubectl_command()
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("running {}: {e}", self.kubectl_bin.display()));
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(stdin.as_bytes())
            .expect("writing kubectl's stdin");
        child.wait_with_output().expect("kubectl output")
    }

    /// Runs kubectl with `args`; panics with its stderr unless it succeeds; returns stdout.
    pub fn kubectl_ok(&self, args: &[&str]) -> String {
        check_ok(args, self.kubectl(args))
    }

    /// `GET /test/counters` of a server started with review flags: the TokenReviews and
    /// SubjectAccessReviews it has answered since it started.
    pub fn review_counters(&self) -> (u64, u64) {
        let text = self.kubectl_ok(&["get", "--raw", "/test/counters"]);
        let field = |name: &str| -> u64 {
            let at = text
                .find(&format!("\"{name}\":"))
                .unwrap_or_else(|| panic!("no {name} in {text}"));
            text[at + name.len() + 3..]
                .chars()
                .take_while(char::is_ascii_digit)
                .collect::<String>()
                .parse()
                .unwrap_or_else(|e| panic!("{name} in {text}: {e}"))
        };
        (field("tokenReviews"), field("subjectAccessReviews"))
    }

    /// `kubectl apply --validate=false -f -` with `yaml` on stdin (`/openapi/v2` is not served,
    /// so client-side validation must be off); panics unless it succeeds; returns stdout.
    pub fn kubectl_apply(&self, yaml: &str) -> String {
        let args = ["apply", "--validate=false", "-f", "-"];
        check_ok(&args, self.kubectl_with_stdin(&args, yaml))
    }
}

fn check_ok(args: &[&str], out: Output) -> String {
    assert!(
        out.status.success(),
        "kubectl {} failed ({}):\n{}{}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 kubectl output")
}

impl Drop for CrdApiServer {
    fn drop(&mut self) {
        if let Some((mut child, stdin)) = self.apiserver.take() {
            drop(stdin);
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Some(mut etcd) = self.etcd.take() {
            let _ = etcd.kill();
            let _ = etcd.wait();
        }
    }
}
