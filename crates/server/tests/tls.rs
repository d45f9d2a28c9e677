//! The webhook over real TLS: self-signed certificate generated into the data directory,
//! a client trusting only the written `ca.crt`, HTTP/1.1 and HTTP/2.

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
