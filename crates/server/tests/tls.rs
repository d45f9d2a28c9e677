//! The webhook over real TLS: self-signed certificate generated into the data directory,
//! a client trusting only the written `ca.crt`, HTTP/1.1 and HTTP/2.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use kube::core::admission::AdmissionReview;
use kube::core::DynamicObject;
use support::*;
use vulngate_server::Server;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_admission_over_self_signed_tls() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path(), Some(RULES));
    cfg.listen = "127.0.0.1:0".parse().unwrap();
    let server = Server::with_source(cfg.clone(), TestSource::new()).unwrap();
    let tls = vulngate_server::tls::setup(&cfg).unwrap();
    let ca_file = tls.ca_file.clone().expect("self-signed CA bundle");
    assert_eq!(ca_file, cfg.data_dir.join("ca.crt"));
    let listener = tokio::net::TcpListener::bind(cfg.listen).await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(server.serve_on(listener, tls.server_config, async {
        let _ = stop_rx.await;
    }));

    let ca = reqwest::Certificate::from_pem(&std::fs::read(&ca_file).unwrap()).unwrap();
    let body = serde_json::to_vec(&create(&deployment("prod-shop", &[DEBIAN]))).unwrap();
    for http2 in [false, true] {
        let mut b = reqwest::Client::builder()
            .use_rustls_tls()
            .tls_built_in_root_certs(false)
            .add_root_certificate(ca.clone());
        b = if http2 {
            b.http2_prior_knowledge()
        } else {
            b.http1_only()
        };
        let client = b.build().unwrap();
        let resp = client
            .post(format!("https://localhost:{port}/validate?timeout=10s"))
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(
            resp.version(),
            if http2 {
                reqwest::Version::HTTP_2
            } else {
                reqwest::Version::HTTP_11
            }
        );
        assert_eq!(resp.status(), 200);
        let rv: AdmissionReview<DynamicObject> =
            serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap();
        let r = rv.response.unwrap();
        assert!(!r.allowed);
        assert!(r
            .result
            .message
            .contains("denied by rule \"deny-critical-prod\""));

        let health = client
            .get(format!("https://127.0.0.1:{port}/healthz"))
            .send()
            .await
            .unwrap();
        assert_eq!(health.text().await.unwrap(), "ok");
    }

    // The certificate is reused on restart (the CA bundle given to the API server stays valid).
    let before = std::fs::read(&ca_file).unwrap();
    vulngate_server::tls::setup(&cfg).unwrap();
    assert_eq!(std::fs::read(&ca_file).unwrap(), before);

    stop_tx.send(()).unwrap();
    task.await.unwrap().unwrap();
}

/// A server on 127.0.0.1:0 with the self-signed certificate; returns the port, the CA file and
/// the stop handle.
async fn start_tls_server(
    dir: &std::path::Path,
) -> (
    u16,
    std::path::PathBuf,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<vulngate_server::Result<()>>,
) {
    let mut cfg = config(dir, Some(RULES));
    cfg.listen = "127.0.0.1:0".parse().unwrap();
    let server = Server::with_source(cfg.clone(), TestSource::new()).unwrap();
    let tls = vulngate_server::tls::setup(&cfg).unwrap();
    let ca_file = tls.ca_file.clone().expect("self-signed CA bundle");
    let listener = tokio::net::TcpListener::bind(cfg.listen).await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(server.serve_on(listener, tls.server_config, async {
        let _ = stop_rx.await;
    }));
    (port, ca_file, stop_tx, task)
}

/// A rustls client (ring) that trusts only `ca_file` and speaks only `versions`.
fn client_config(
    ca_file: &std::path::Path,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> std::sync::Arc<rustls::ClientConfig> {
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pki_types::CertificateDer::pem_file_iter(ca_file).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let mut cc = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    cc.alpn_protocols = vec![b"http/1.1".to_vec()];
    std::sync::Arc::new(cc)
}

/// POSTs `body` to /validate over a TLS connection made with `cc`, HTTP/1.1 written by hand
/// (`Connection: close`); returns the negotiated version and the raw response.
async fn post_over(
    cc: std::sync::Arc<rustls::ClientConfig>,
    port: u16,
    body: &[u8],
) -> (rustls::ProtocolVersion, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    let mut tls = tokio_rustls::TlsConnector::from(cc)
        .connect(name, tcp)
        .await
        .unwrap();
    let version = tls.get_ref().1.protocol_version().unwrap();
    let head = format!(
        "POST /validate?timeout=10s HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    tls.write_all(head.as_bytes()).await.unwrap();
    tls.write_all(body).await.unwrap();
    tls.flush().await.unwrap();
    let mut out = Vec::new();
    tls.read_to_end(&mut out).await.unwrap();
    (version, String::from_utf8(out).unwrap())
}

/// The AdmissionResponse in a raw HTTP/1.1 response (the body of a `Connection: close` reply).
fn admission_response(raw: &str) -> kube::core::admission::AdmissionResponse {
    assert!(raw.starts_with("HTTP/1.1 200 "), "{raw}");
    let (_, body) = raw.split_once("\r\n\r\n").expect("a body");
    let rv: AdmissionReview<DynamicObject> = serde_json::from_slice(body.as_bytes()).unwrap();
    rv.response.expect("a response")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls12_only_and_tls13_only_clients_complete_an_admission_review() {
    let dir = tempfile::tempdir().unwrap();
    let (port, ca_file, stop_tx, task) = start_tls_server(dir.path()).await;
    let body = serde_json::to_vec(&create(&deployment("prod-shop", &[DEBIAN]))).unwrap();
    for (versions, expected) in [
        (
            &[&rustls::version::TLS12][..],
            rustls::ProtocolVersion::TLSv1_2,
        ),
        (
            &[&rustls::version::TLS13][..],
            rustls::ProtocolVersion::TLSv1_3,
        ),
    ] {
        let (version, raw) = post_over(client_config(&ca_file, versions), port, &body).await;
        assert_eq!(version, expected);
        let r = admission_response(&raw);
        assert!(!r.allowed, "{raw}");
        assert!(
            r.result
                .message
                .contains("denied by rule \"deny-critical-prod\""),
            "{raw}"
        );
    }
    stop_tx.send(()).unwrap();
    task.await.unwrap().unwrap();
}

/// A hand-written TLS ClientHello offering only `version` (0x0301 = TLS 1.0, 0x0302 = TLS 1.1,
/// 0x0303 = TLS 1.2 for the control): no `supported_versions` extension, cipher suites of that
/// era plus the TLS 1.2 ECDHE-GCM ones, SNI `localhost`, groups, point formats, signature
/// algorithms, EMS. rustls cannot build a TLS 1.1 client, so the bytes are written here
/// (RFC 5246 section 7.4.1.2, RFC 4492, RFC 6066 section 3, RFC 7627).
fn legacy_client_hello(version: u16) -> Vec<u8> {
    let [vh, vl] = version.to_be_bytes();
    let host = b"localhost";
    let mut sni = Vec::new();
    sni.extend_from_slice(&((host.len() + 3) as u16).to_be_bytes()); // server_name_list length
    sni.push(0); // host_name
    sni.extend_from_slice(&(host.len() as u16).to_be_bytes());
    sni.extend_from_slice(host);
    let mut ext = Vec::new();
    let mut push_ext = |kind: u16, body: &[u8]| {
        ext.extend_from_slice(&kind.to_be_bytes());
        ext.extend_from_slice(&(body.len() as u16).to_be_bytes());
        ext.extend_from_slice(body);
    };
    push_ext(0x0000, &sni); // server_name
    push_ext(0x000a, &[0, 4, 0x00, 0x1d, 0x00, 0x17]); // supported_groups: x25519, secp256r1
    push_ext(0x000b, &[1, 0]); // ec_point_formats: uncompressed
                               // signature_algorithms: ecdsa_secp256r1_sha256, rsa_pss_rsae_sha256, rsa_pkcs1_sha256
    push_ext(0x000d, &[0, 6, 0x04, 0x03, 0x08, 0x04, 0x04, 0x01]);
    push_ext(0x0017, &[]); // extended_master_secret
                           // ECDHE-ECDSA and ECDHE-RSA with AES-128-GCM (c02b, c02f), their CBC-SHA forms of the
                           // TLS 1.0/1.1 era (c009, c013), TLS_RSA_WITH_AES_128_CBC_SHA (002f)
    let suites: [u16; 5] = [0xc02b, 0xc02f, 0xc009, 0xc013, 0x002f];
    let mut hello = vec![vh, vl];
    hello.extend_from_slice(&[0x42; 32]); // random
    hello.push(0); // session id
    hello.extend_from_slice(&((suites.len() * 2) as u16).to_be_bytes());
    for s in suites {
        hello.extend_from_slice(&s.to_be_bytes());
    }
    hello.extend_from_slice(&[1, 0]); // compression: null
    hello.extend_from_slice(&(ext.len() as u16).to_be_bytes());
    hello.extend_from_slice(&ext);
    let mut hs = vec![1]; // client_hello
    hs.extend_from_slice(&(hello.len() as u32).to_be_bytes()[1..]);
    hs.extend_from_slice(&hello);
    let mut record = vec![0x16, 0x03, 0x01]; // handshake record, legacy record version
    record.extend_from_slice(&(hs.len() as u16).to_be_bytes());
    record.extend_from_slice(&hs);
    record
}

/// Sends `bytes` on a fresh TCP connection and reads what the server answers until it closes
/// (or 5 s pass, which fails the test: the server must refuse, not wait).
async fn send_raw(port: u16, bytes: &[u8]) -> Vec<u8> {
    send_raw_until(port, bytes, usize::MAX).await
}

/// Like [`send_raw`], stopping once `enough` bytes arrived (a server that goes on with the
/// handshake waits for the client rather than closing).
async fn send_raw_until(port: u16, bytes: &[u8], enough: usize) -> Vec<u8> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    tcp.write_all(bytes).await.unwrap();
    let mut out = Vec::new();
    let read = tokio::time::timeout(std::time::Duration::from_secs(5), async {
        let mut buf = [0u8; 4096];
        loop {
            match tcp.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    out.extend_from_slice(&buf[..n]);
                    if out.len() >= enough {
                        break;
                    }
                }
            }
        }
    })
    .await;
    assert!(
        read.is_ok(),
        "the server neither answered enough nor closed"
    );
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls11_tls10_and_plain_http_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (port, ca_file, stop_tx, task) = start_tls_server(dir.path()).await;

    // Control: the same hand-written hello offering TLS 1.2 gets a ServerHello (handshake
    // record 22, message type 2), so the refusals below are about the version alone.
    let out = send_raw_until(port, &legacy_client_hello(0x0303), 6).await;
    assert_eq!(out.first(), Some(&0x16), "{out:02x?}");
    assert_eq!(out.get(5), Some(&2), "not a ServerHello: {out:02x?}");

    for version in [0x0302u16, 0x0301] {
        let out = send_raw(port, &legacy_client_hello(version)).await;
        // A fatal protocol_version alert (record type 21), never a ServerHello (handshake, 22).
        assert!(!out.is_empty(), "no alert for {version:#06x}");
        assert_eq!(out[0], 0x15, "not an alert for {version:#06x}: {out:02x?}");
        assert_eq!(out.get(5), Some(&2), "not fatal: {out:02x?}"); // level fatal
        assert_eq!(out.get(6), Some(&70), "not protocol_version: {out:02x?}");
        assert_eq!(out.len(), 7, "more than one alert record: {out:02x?}");
    }

    // Plain HTTP on the TLS port: no HTTP answer, let alone an admission decision.
    let body = serde_json::to_vec(&create(&deployment("prod-shop", &[DEBIAN]))).unwrap();
    let mut req = format!(
        "POST /validate?timeout=10s HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    req.extend_from_slice(&body);
    let out = send_raw(port, &req).await;
    assert!(
        !out.starts_with(b"HTTP/"),
        "{}",
        String::from_utf8_lossy(&out)
    );
    assert!(!String::from_utf8_lossy(&out).contains("AdmissionReview"));

    // The server still serves TLS 1.2 afterwards.
    let (version, raw) = post_over(
        client_config(&ca_file, &[&rustls::version::TLS12]),
        port,
        &body,
    )
    .await;
    assert_eq!(version, rustls::ProtocolVersion::TLSv1_2);
    assert!(!admission_response(&raw).allowed);

    stop_tx.send(()).unwrap();
    task.await.unwrap().unwrap();
}
