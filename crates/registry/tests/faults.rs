//! Fault injection: a tiny in-test HTTP/1.1 server (tokio TcpListener) playing a misbehaving
//! registry. Where a well-formed registry is needed it serves the real captured manifests and
//! blobs from tests/data/manifests.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use vulngate_core::{ImageRef, UnscannedReason};
use vulngate_registry::config::BasicAuth;
use vulngate_registry::{Lookup, RegistryClient, RegistryConfig};

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/manifests/");
const IMAGE: &str = "sha256:05d20e8740ef391bb7d5436d5dad4eb18cdf223eb520c7dec4cd151cd465ce00";
const AMD64: &str = "sha256:9dda3d9cb7a4b9396e324e078cb7ca960f6d33d08d3d380a25775355d7c59e0d";
const REPORT: &str = "sha256:3efa2e2f56e3de1c365e8d7a9d47988bc4981555371dd1ff360962cfdc543d1f";
const REPORT_BLOB: &str = "sha256:5f81b0200232ccae579a0b0c3b93a317f841deb6893b1fccf89dca16e0eb07b1";

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!("{DIR}{name}")).unwrap_or_else(|e| panic!("{name}: {e}"))
}

#[derive(Debug, Clone)]
struct Req {
    method: String,
    path: String,
    headers: HashMap<String, String>,
}

enum Resp {
    Full {
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    },
    /// Declares `declared` bytes, sends `body`, closes.
    Truncated {
        declared: usize,
        body: Vec<u8>,
    },
    /// Chunked body of `total` bytes.
    Stream {
        total: usize,
    },
    Slow {
        delay: Duration,
        then: Box<Resp>,
    },
}

fn ok(body: Vec<u8>, content_type: &str) -> Resp {
    Resp::Full {
        status: 200,
        headers: vec![("Content-Type".into(), content_type.into())],
        body,
    }
}

fn status(s: u16) -> Resp {
    Resp::Full {
        status: s,
        headers: vec![],
        body: b"{\"errors\":[{\"code\":\"X\"}]}".to_vec(),
    }
}

fn with_header(s: u16, k: &str, v: &str) -> Resp {
    Resp::Full {
        status: s,
        headers: vec![(k.into(), v.into())],
        body: Vec::new(),
    }
}

type Handler = Arc<dyn Fn(&Req, &str) -> Resp + Send + Sync>;

struct Server {
    host: String,
    log: Arc<Mutex<Vec<Req>>>,
}

async fn write_resp(sock: &mut tokio::net::TcpStream, r: Resp) -> std::io::Result<()> {
    match r {
        Resp::Full {
            status,
            headers,
            body,
        } => {
            let mut head = format!(
                "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n",
                body.len()
            );
            for (k, v) in headers {
                head.push_str(&format!("{k}: {v}\r\n"));
            }
            head.push_str("\r\n");
            sock.write_all(head.as_bytes()).await?;
            sock.write_all(&body).await
        }
        Resp::Truncated { declared, body } => {
            let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {declared}\r\nContent-Type: application/vnd.oci.image.manifest.v1+json\r\nConnection: close\r\n\r\n");
            sock.write_all(head.as_bytes()).await?;
            sock.write_all(&body).await
        }
        Resp::Stream { total } => {
            sock.write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Type: application/vnd.oci.image.manifest.v1+json\r\nConnection: close\r\n\r\n").await?;
            let chunk = vec![b' '; 64 << 10];
            let mut sent = 0;
            while sent < total {
                sock.write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
                    .await?;
                sock.write_all(&chunk).await?;
                sock.write_all(b"\r\n").await?;
                sent += chunk.len();
            }
            sock.write_all(b"0\r\n\r\n").await
        }
        Resp::Slow { delay, then } => {
            tokio::time::sleep(delay).await;
            Box::pin(write_resp(sock, *then)).await
        }
    }
}

impl Server {
    async fn start(handler: impl Fn(&Req, &str) -> Resp + Send + Sync + 'static) -> Server {
        let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let host = l.local_addr().expect("addr").to_string();
        let log = Arc::new(Mutex::new(Vec::new()));
        let handler: Handler = Arc::new(handler);
        let (h2, log2, host2) = (handler.clone(), log.clone(), host.clone());
        tokio::spawn(async move {
            loop {
                let Ok((mut sock, _)) = l.accept().await else {
                    return;
                };
                let (h, log, host) = (h2.clone(), log2.clone(), host2.clone());
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut tmp = [0u8; 4096];
                    let head_end = loop {
                        let Ok(n) = sock.read(&mut tmp).await else {
                            return;
                        };
                        if n == 0 {
                            return;
                        }
                        buf.extend_from_slice(&tmp[..n]);
                        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            break i;
                        }
                    };
                    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
                    let mut lines = head.lines();
                    let mut first = lines.next().unwrap_or_default().split(' ');
                    let method = first.next().unwrap_or_default().to_string();
                    let path = first.next().unwrap_or_default().to_string();
                    let headers: HashMap<String, String> = lines
                        .filter_map(|l| l.split_once(':'))
                        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
                        .collect();
                    // Drain a request body.
                    let len: usize = headers
                        .get("content-length")
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(0);
                    let mut have = buf.len() - head_end - 4;
                    while have < len {
                        let Ok(n) = sock.read(&mut tmp).await else {
                            return;
                        };
                        if n == 0 {
                            break;
                        }
                        have += n;
                    }
                    let req = Req {
                        method,
                        path,
                        headers,
                    };
                    if let Ok(mut l) = log.lock() {
                        l.push(req.clone());
                    }
                    let resp = h(&req, &host);
                    let _ = write_resp(&mut sock, resp).await;
                    let _ = sock.shutdown().await;
                });
            }
        });
        Server { host, log }
    }

    fn image(&self, reference: &str) -> ImageRef {
        ImageRef::parse(&format!("{}/app{reference}", self.host)).expect("reference")
    }

    fn config(&self) -> RegistryConfig {
        RegistryConfig {
            insecure_registries: vec![self.host.clone()],
            ..RegistryConfig::default()
        }
    }

    fn requests(&self) -> Vec<Req> {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }
}

async fn lookup(cfg: RegistryConfig, img: &ImageRef) -> Lookup {
    RegistryClient::new(cfg).expect("client").lookup(img).await
}

fn unavailable(l: &Lookup) -> String {
    match &l.report {
        Err(UnscannedReason::RegistryUnavailable(r)) => r.clone(),
        other => panic!("expected RegistryUnavailable, got {other:?}"),
    }
}

fn unverified(l: &Lookup) -> String {
    match &l.report {
        Err(UnscannedReason::Unverified(r)) => r.clone(),
        other => panic!("expected Unverified, got {other:?}"),
    }
}

/// A well-behaved registry serving the captured image, report and referrers, with overrides.
fn good(req: &Req) -> Resp {
    let p = req.path.as_str();
    let m = |name: &str| ok(fixture(name), "application/vnd.oci.image.manifest.v1+json");
    if p == "/v2/app/manifests/v1" || p == format!("/v2/app/manifests/{IMAGE}") {
        m("image.manifest.json")
    } else if p == format!("/v2/app/manifests/{REPORT}") {
        m("oras-report.manifest.json")
    } else if p == format!("/v2/app/blobs/{REPORT_BLOB}") {
        ok(fixture("oras-report.blob.json"), "application/octet-stream")
    } else if p == format!("/v2/app/manifests/{AMD64}") {
        m("image-amd64.manifest.json")
    } else if p.starts_with("/v2/app/referrers/") {
        let idx = format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{REPORT}","size":733,"artifactType":"application/vnd.vulngate.report+json","annotations":{{"org.opencontainers.image.created":"2026-11-28T03:01:21Z"}}}}]}}"#
        );
        ok(idx.into_bytes(), "application/vnd.oci.image.index.v1+json")
    } else {
        status(404)
    }
}

#[tokio::test]
async fn well_formed_registry_serving_real_fixtures() {
    let s = Server::start(|r, _| good(r)).await;
    let l = lookup(s.config(), &s.image(":v1")).await;
    assert_eq!(l.digest.as_deref(), Some(IMAGE));
    let f = l.report.as_ref().expect("report");
    assert_eq!(f.report.findings[0].id, "CVE-2024-0001");
    assert_eq!(f.identity.digest.as_deref(), Some(REPORT));
}

#[tokio::test]
async fn http_status_errors_are_clear() {
    for (code, resp, expect) in [
        (401, status(401), "authentication failed (401)"),
        (
            401,
            with_header(401, "WWW-Authenticate", "Basic realm=\"r\""),
            "no credentials configured",
        ),
        (403, status(403), "access denied (403)"),
        (404, status(404), "not found (404)"),
        (
            429,
            with_header(429, "Retry-After", "7"),
            "rate limited by the registry (429), retry after 7",
        ),
        (500, status(500), "registry error (HTTP 500)"),
        (503, status(503), "registry error (HTTP 503)"),
    ] {
        let resp = Arc::new(Mutex::new(Some(resp)));
        let s = Server::start(move |_, _| {
            resp.lock()
                .ok()
                .and_then(|mut r| r.take())
                .unwrap_or_else(|| status(code))
        })
        .await;
        let r = unavailable(&lookup(s.config(), &s.image(":v1")).await);
        assert!(r.contains(expect), "{code}: {r}");
    }
}

#[tokio::test]
async fn bearer_token_flow_with_basic_credentials_never_leaks_them() {
    let s = Server::start(|req, host| {
        let auth = req
            .headers
            .get("authorization")
            .cloned()
            .unwrap_or_default();
        if req.path.starts_with("/token") {
            // base64("alice:s3cret-pass")
            return if auth == "Basic YWxpY2U6czNjcmV0LXBhc3M="
                && req.path.contains("scope=repository%3Aapp%3Apull")
            {
                ok(
                    br#"{"token":"tok-123","expires_in":300}"#.to_vec(),
                    "application/json",
                )
            } else {
                status(401)
            };
        }
        if auth != "Bearer tok-123" {
            return with_header(
                401,
                "WWW-Authenticate",
                &format!("Bearer realm=\"http://{host}/token\",service=\"fake\""),
            );
        }
        good(req)
    })
    .await;
    let mut cfg = s.config();
    cfg.auth.basic.push(BasicAuth {
        registry: s.host.clone(),
        username: "alice".into(),
        password: Some("s3cret-pass".into()),
        password_file: None,
    });
    let l = lookup(cfg.clone(), &s.image(":v1")).await;
    assert_eq!(
        l.report.as_ref().expect("report").report.findings[0].id,
        "CVE-2024-0001"
    );
    // One token for the whole lookup.
    assert_eq!(
        s.requests()
            .iter()
            .filter(|r| r.path.starts_with("/token"))
            .count(),
        1
    );

    cfg.auth.basic[0].password = Some("wrong-pass".into());
    let l = lookup(cfg.clone(), &s.image(":v1")).await;
    let r = unavailable(&l);
    assert!(r.contains("token endpoint refused (401)"), "{r}");
    let all = format!("{l:?} {cfg:?}");
    assert!(
        !all.contains("wrong-pass") && !all.contains("d3JvbmctcGFzcw"),
        "{all}"
    );
}

#[tokio::test]
async fn deadlines_and_timeouts() {
    let s = Server::start(|r, _| Resp::Slow {
        delay: Duration::from_secs(3),
        then: Box::new(good(r)),
    })
    .await;
    let mut cfg = s.config();
    cfg.timeouts.lookup = Duration::from_millis(300);
    let t = std::time::Instant::now();
    let r = unavailable(&lookup(cfg, &s.image(":v1")).await);
    assert!(r.contains("exceeded the deadline of 300ms"), "{r}");
    assert!(t.elapsed() < Duration::from_secs(1));

    let mut cfg = s.config();
    cfg.timeouts.request = Duration::from_millis(200);
    let r = unavailable(&lookup(cfg, &s.image(":v1")).await);
    assert!(r.contains("timed out"), "{r}");
}

#[tokio::test]
async fn truncated_oversized_and_garbage_bodies() {
    let s = Server::start(|_, _| Resp::Truncated {
        declared: 1000,
        body: b"{\"schemaVersion\":2".to_vec(),
    })
    .await;
    let r = unavailable(&lookup(s.config(), &s.image(":v1")).await);
    assert!(r.contains("body ended after 18 of 1000 bytes"), "{r}");

    let s = Server::start(|_, _| Resp::Full {
        status: 200,
        headers: vec![(
            "Content-Type".into(),
            "application/vnd.oci.image.manifest.v1+json".into(),
        )],
        body: vec![b' '; 2 << 20],
    })
    .await;
    let mut cfg = s.config();
    cfg.limits.manifest_bytes = 1 << 20;
    let r = unavailable(&lookup(cfg.clone(), &s.image(":v1")).await);
    assert!(r.contains("larger than the limit of 1048576 bytes"), "{r}");

    // No Content-Length: the cap stops the stream.
    let s = Server::start(|_, _| Resp::Stream { total: 8 << 20 }).await;
    let mut cfg = s.config();
    cfg.limits.manifest_bytes = 1 << 20;
    let r = unavailable(&lookup(cfg, &s.image(":v1")).await);
    assert!(r.contains("larger than the limit of 1048576 bytes"), "{r}");

    let s = Server::start(|_, _| ok(b"<html>not json</html>".to_vec(), "text/html")).await;
    let r = unavailable(&lookup(s.config(), &s.image(":v1")).await);
    assert!(r.contains("not an OCI manifest or index"), "{r}");
}

#[tokio::test]
async fn docker_content_digest_must_match_the_bytes() {
    let s = Server::start(|req, _| {
        if req.path == "/v2/app/manifests/v1" {
            Resp::Full {
                status: 200,
                headers: vec![
                    (
                        "Content-Type".into(),
                        "application/vnd.oci.image.manifest.v1+json".into(),
                    ),
                    ("Docker-Content-Digest".into(), AMD64.into()),
                ],
                body: fixture("image.manifest.json"),
            }
        } else {
            good(req)
        }
    })
    .await;
    let r = unavailable(&lookup(s.config(), &s.image(":v1")).await);
    assert!(
        r.contains(&format!("digest mismatch: expected {AMD64}, got {IMAGE}")),
        "{r}"
    );
    // By digest, a registry serving other bytes is caught too.
    let s = Server::start(|req, _| {
        if req.path.contains("/manifests/") {
            ok(
                fixture("image-amd64.manifest.json"),
                "application/vnd.oci.image.manifest.v1+json",
            )
        } else {
            good(req)
        }
    })
    .await;
    let r = unavailable(&lookup(s.config(), &s.image(&format!("@{IMAGE}"))).await);
    assert!(r.contains("digest mismatch"), "{r}");
}

#[tokio::test]
async fn swapped_or_oversized_report_blob_is_never_a_finding() {
    let s = Server::start(|req, _| {
        if req.path == format!("/v2/app/blobs/{REPORT_BLOB}") {
            let mut b = fixture("oras-report.blob.json");
            b[100] ^= 1;
            ok(b, "application/octet-stream")
        } else {
            good(req)
        }
    })
    .await;
    let r = unverified(&lookup(s.config(), &s.image(":v1")).await);
    assert!(r.contains("digest mismatch"), "{r}");

    let s = Server::start(|r, _| good(r)).await;
    let mut cfg = s.config();
    cfg.limits.report_bytes = 100;
    let r = unverified(&lookup(cfg, &s.image(":v1")).await);
    assert!(r.contains("larger than the limit of 100 bytes"), "{r}");
}

#[tokio::test]
async fn referrer_attached_to_another_image_is_refused() {
    // The referrers index of the amd64 image lists a report whose subject is another image.
    let s = Server::start(|req, _| {
        if req.path == "/v2/app/manifests/v1" {
            ok(
                fixture("image-amd64.manifest.json"),
                "application/vnd.oci.image.manifest.v1+json",
            )
        } else {
            good(req)
        }
    })
    .await;
    let r = unverified(&lookup(s.config(), &s.image(":v1")).await);
    assert!(
        r.contains(&format!("is attached to {IMAGE}, not to {AMD64}")),
        "{r}"
    );
}

#[tokio::test]
async fn referrers_pagination_and_tag_schema_fallback() {
    // Page 1 holds only a signature; the report is on page 2 (Link: rel="next").
    let s = Server::start(|req, _| {
        if req.path == format!("/v2/app/referrers/{IMAGE}") {
            Resp::Full {
                status: 200,
                headers: vec![
                    ("Content-Type".into(), "application/vnd.oci.image.index.v1+json".into()),
                    ("Link".into(), format!("</v2/app/referrers/{IMAGE}?n=1&last=x>; rel=\"next\"")),
                ],
                body: br#"{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:b3722070fe573db376516600f25f7f049fff9dced0052961237a71bfb723565c","size":728,"artifactType":"application/vnd.cncf.notary.signature"}]}"#.to_vec(),
            }
        } else {
            good(req)
        }
    })
    .await;
    let l = lookup(s.config(), &s.image(":v1")).await;
    assert_eq!(
        l.report.as_ref().expect("report").report.findings[0].id,
        "CVE-2024-0001"
    );
    assert!(s
        .requests()
        .iter()
        .any(|r| r.method == "GET" && r.path.contains("last=x")));

    // No referrers API (404): the sha256-<hex> tag index, as docker-registry serves it.
    let s = Server::start(|req, _| {
        if req.path.starts_with("/v2/app/referrers/") {
            status(404)
        } else if req.path == format!("/v2/app/manifests/sha256-{}", &IMAGE[7..]) {
            ok(
                fixture("referrers-tag-schema-index.image.json"),
                "application/vnd.oci.image.index.v1+json",
            )
        } else {
            good(req)
        }
    })
    .await;
    let l = lookup(s.config(), &s.image(":v1")).await;
    // The index also lists the cosign attestation (artifactType empty-json): its manifest is
    // fetched to learn the type; it is not served here: skipped with a warning, never fatal.
    assert_eq!(
        l.report.as_ref().expect("report").report.findings[0].id,
        "CVE-2024-0001"
    );
    assert!(
        l.warnings
            .iter()
            .any(|w| w.contains("sha256:3a6138e9") && w.contains("not found")),
        "{:?}",
        l.warnings
    );
}

#[tokio::test]
async fn redirects_to_forbidden_addresses_are_refused() {
    for (target, expect) in [
        (
            "https://169.254.169.254/latest/meta-data/".to_string(),
            "cloud metadata address",
        ),
        (
            "http://169.254.169.254/latest/meta-data/".to_string(),
            "scheme http not allowed",
        ),
    ] {
        let t = target.clone();
        let s = Server::start(move |_, _| with_header(307, "Location", &t)).await;
        let r = unavailable(&lookup(s.config(), &s.image(":v1")).await);
        assert!(r.contains(expect), "{target}: {r}");
    }
    // A name that resolves to loopback is refused after DNS resolution (the resolver filters).
    let s = Server::start(|_, host| {
        let port = host.rsplit(':').next().unwrap_or_default().to_string();
        with_header(307, "Location", &format!("https://localhost:{port}/v2/"))
    })
    .await;
    let r = unavailable(&lookup(s.config(), &s.image(":v1")).await);
    assert!(r.contains("loopback"), "{r}");
    // Hosts outside the allow list are never contacted.
    let mut cfg = s.config();
    cfg.insecure_registries.clear();
    cfg.allow_hosts = vec!["*.example.com".into()];
    let before = s.requests().len();
    let r = unavailable(&lookup(cfg, &s.image(":v1")).await);
    assert!(r.contains("matches no allowHosts pattern"), "{r}");
    assert_eq!(s.requests().len(), before);
}

#[tokio::test]
async fn cose_notation_envelopes_are_reported_unsupported() {
    use vulngate_registry::oci::digest_of;
    let cose = b"\xd2\x84not really cose".to_vec();
    let cose_digest = digest_of(&cose, "sha256:");
    let sig = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.cncf.notary.signature","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2}},"layers":[{{"mediaType":"application/cose","digest":"{cose_digest}","size":{}}}],"subject":{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{REPORT}","size":733}}}}"#,
        cose.len()
    )
    .into_bytes();
    let sig_digest = digest_of(&sig, "sha256:");
    let index = format!(
        r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{sig_digest}","size":{},"artifactType":"application/vnd.cncf.notary.signature"}}]}}"#,
        sig.len()
    )
    .into_bytes();
    let s = Server::start(move |req, _| {
        if req.path == format!("/v2/app/referrers/{REPORT}") {
            ok(index.clone(), "application/vnd.oci.image.index.v1+json")
        } else if req.path == format!("/v2/app/manifests/{sig_digest}") {
            ok(sig.clone(), "application/vnd.oci.image.manifest.v1+json")
        } else if req.path == format!("/v2/app/blobs/{cose_digest}") {
            ok(cose.clone(), "application/octet-stream")
        } else {
            good(req)
        }
    })
    .await;
    let mut cfg = s.config();
    cfg.trust_policies.push(vulngate_registry::TrustPolicy {
        scope: "*".into(),
        require: None,
        notation: Some(vulngate_registry::config::NotationTrust {
            trust_store: vec![format!("{DIR}notation-vulngate-test.crt").into()],
            ..Default::default()
        }),
        cosign: None,
    });
    let r = unverified(&lookup(cfg, &s.image(":v1")).await);
    assert!(r.contains("COSE envelopes are not supported"), "{r}");
}
