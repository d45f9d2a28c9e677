//! Memory held by oversized request heads (issue 17, item 4: 400 connections x 380 KB of headers
//! added 147 MB RSS). Alone in its test binary, so that the process's RSS is this test's.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use kube::core::admission::AdmissionReview;
use kube::core::DynamicObject;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use vulngate_server::{Config, Server};

/// A running server: webhook (TLS) and metrics (plain HTTP) ports.
struct Running {
    server: Server,
    port: u16,
    metrics_port: u16,
    ca: std::path::PathBuf,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<vulngate_server::Result<()>>>,
    _dir: tempfile::TempDir,
}

impl Running {
    async fn start(tweak: impl FnOnce(&mut Config)) -> Running {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = config(dir.path(), Some(RULES));
        cfg.listen = "127.0.0.1:0".parse().unwrap();
        tweak(&mut cfg);
        let server = Server::with_source(cfg.clone(), TestSource::new()).unwrap();
        let tls = vulngate_server::tls::setup(&cfg).unwrap();
        let ca = tls.ca_file.clone().unwrap();
        let listener = tokio::net::TcpListener::bind(cfg.listen).await.unwrap();
        let metrics = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let metrics_port = metrics.local_addr().unwrap().port();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(server.clone().serve_with(
            listener,
            Some(metrics),
            tls.server_config,
            async {
                let _ = stop_rx.await;
            },
        ));
        Running {
            server,
            port,
            metrics_port,
            ca,
            stop: Some(stop_tx),
            task: Some(task),
            _dir: dir,
        }
    }

    fn client(&self, http2: bool) -> reqwest::Client {
        let ca = reqwest::Certificate::from_pem(&std::fs::read(&self.ca).unwrap()).unwrap();
        let b = reqwest::Client::builder()
            .use_rustls_tls()
            .tls_built_in_root_certs(false)
            .add_root_certificate(ca);
        let b = if http2 {
            b.http2_prior_knowledge()
        } else {
            b.http1_only()
        };
        b.build().unwrap()
    }

    /// A TLS connection (HTTP/1.1 by ALPN) to the webhook port.
    async fn tls(&self) -> TlsStream {
        tls_to(&self.ca, self.port).await
    }

    /// A review of a prod Deployment running DEBIAN (denied), over HTTPS.
    async fn review(&self, client: &reqwest::Client, query: &str) -> reqwest::Response {
        let body = serde_json::to_vec(&create(&deployment("prod-shop", &[DEBIAN]))).unwrap();
        client
            .post(format!("https://localhost:{}/validate{query}", self.port))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap()
    }

    fn open(&self) -> i64 {
        self.server.metrics().http().open_connections("webhook")
    }

    fn closed(&self, reason: &'static str) -> u64 {
        self.server
            .metrics()
            .http()
            .closed_by_limit("webhook", reason)
    }

    async fn stop(mut self) {
        self.stop.take().unwrap().send(()).unwrap();
        self.task.take().unwrap().await.unwrap().unwrap();
    }
}

/// Asserts a denied AdmissionReview response.
async fn assert_denied(resp: reqwest::Response) {
    assert_eq!(resp.status(), 200);
    let rv: AdmissionReview<DynamicObject> =
        serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap();
    let r = rv.response.unwrap();
    assert!(!r.allowed);
    assert!(r.result.message.contains("deny-critical-prod"), "{r:?}");
}

/// Reads until the server closes the connection (EOF or an error); what was read.
async fn read_until_closed(tls: &mut TlsStream) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tls.read(&mut buf).await {
            Ok(0) | Err(_) => return out,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
}

/// Guards a wait that must end (the test would otherwise hang on a regression).
async fn within<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(120), f)
        .await
        .unwrap_or_else(|_| panic!("{what}: still waiting after 120s"))
}

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_heads_on_400_connections_do_not_grow_rss() {
    let s = Arc::new(Running::start(|_| {}).await);
    assert_denied(s.review(&s.client(false), "?timeout=10s").await).await;
    let head: Arc<Vec<u8>> = Arc::new(
        format!(
            "POST /validate HTTP/1.1\r\nHost: localhost\r\nX-Big: {}",
            "a".repeat(380 << 10)
        )
        .into_bytes(),
    );
    let before = rss_kib();
    let mut conns = Vec::new();
    for _ in 0..400 / 25 {
        let opened = futures::future::join_all((0..25).map(|_| {
            let s = s.clone();
            let head = head.clone();
            async move {
                let mut tls = s.tls().await;
                // The server may stop reading (and close) before it has all of it.
                let _ = tls.write_all(&head).await;
                let _ = tls.flush().await;
                tls
            }
        }))
        .await;
        conns.extend(opened);
    }
    // All 400 heads sent, the connections still held by the clients.
    let grown_mib = rss_kib().saturating_sub(before) / 1024;
    assert!(grown_mib < 64, "RSS grew by {grown_mib} MiB");
    for mut tls in conns {
        let raw = within("closed after 431", read_until_closed(&mut tls)).await;
        assert!(
            raw.starts_with(b"HTTP/1.1 431 "),
            "{:?}",
            String::from_utf8_lossy(&raw[..raw.len().min(100)])
        );
    }
    Arc::into_inner(s).unwrap().stop().await;
}
