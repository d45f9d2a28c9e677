//! Issue 17 items 7 and 8: the registry host policy matches host AND port everywhere a URL is
//! followed (the image's registry, redirects, token realms), and an image reference outside the
//! OCI distribution spec grammar never becomes a request. Real docker-registry processes where a
//! registry is needed (their access logs prove what reached them); a raw TCP listener for
//! redirects and token realms (fault injection: it only counts connections).

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use support::{Kind, Options, Registry};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use vulngate_core::{ImageRef, UnscannedReason};
use vulngate_registry::{RegistryClient, RegistryConfig};

fn logged() -> Registry {
    Registry::start_with(
        Kind::Distribution,
        Options {
            access_log: true,
            ..Options::default()
        },
    )
}

fn insecure(host: &str) -> RegistryConfig {
    RegistryConfig {
        insecure_registries: vec![host.to_string()],
        ..RegistryConfig::default()
    }
}

fn reason(l: &vulngate_registry::Lookup) -> String {
    match &l.report {
        Err(UnscannedReason::RegistryUnavailable(r) | UnscannedReason::Unverified(r)) => r.clone(),
        other => panic!("expected the lookup to fail, got {other:?}"),
    }
}

/// Counts the connections made to it, answers each with a 500 and closes.
async fn witness() -> (String, Arc<AtomicUsize>) {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let host = l.local_addr().expect("addr").to_string();
    let n = Arc::new(AtomicUsize::new(0));
    let n2 = n.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            n2.fetch_add(1, Ordering::SeqCst);
            let _ = s
                .write_all(b"HTTP/1.1 500 X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                .await;
        }
    });
    (host, n)
}

/// A registry that answers every request with `status` and the header `name: value`.
async fn answering(status: u16, name: &'static str, value: String) -> (String, Arc<AtomicUsize>) {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let host = l.local_addr().expect("addr").to_string();
    let n = Arc::new(AtomicUsize::new(0));
    let n2 = n.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            n2.fetch_add(1, Ordering::SeqCst);
            let value = value.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                let _ = s.read(&mut buf).await;
                let head = format!(
                    "HTTP/1.1 {status} X\r\n{name}: {value}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                );
                let _ = s.write_all(head.as_bytes()).await;
            });
        }
    });
    (host, n)
}

#[tokio::test]
async fn a_second_registry_on_another_port_is_refused() {
    let allowed = Registry::start(Kind::Distribution);
    let other = logged();
    let digest = other.push_image("v1", "other");
    assert!(digest.starts_with("sha256:"));
    let before = other.log().len();
    let client = RegistryClient::new(insecure(&allowed.host)).expect("client");
    let img = ImageRef::parse(&format!("{}/app:v1", other.host)).expect("reference");
    let r = reason(&client.lookup(&img).await);
    assert!(
        r.contains(&other.host) && r.contains("host and port"),
        "clear refusal naming the host:port: {r}"
    );
    let log = other.log()[before..].to_string();
    assert!(
        !log.contains("/v2/") && !log.contains("TLS handshake"),
        "the other registry was contacted:\n{log}"
    );
    // The listed one still works.
    let ok_img = ImageRef::parse(&format!("{}/app:v1", allowed.host)).expect("reference");
    allowed.push_image("v1", "allowed");
    let l = client.lookup(&ok_img).await;
    assert!(l.digest.is_some(), "{:?}", l.report);
}

#[tokio::test]
async fn a_redirect_to_another_port_is_refused() {
    let (target, hits) = witness().await;
    for scheme in ["https", "http"] {
        let (reg, _) = answering(
            307,
            "Location",
            format!("{scheme}://{target}/v2/app/manifests/v1"),
        )
        .await;
        let client = RegistryClient::new(insecure(&reg)).expect("client");
        let img = ImageRef::parse(&format!("{reg}/app:v1")).expect("reference");
        let r = reason(&client.lookup(&img).await);
        assert!(
            r.contains(&target),
            "{scheme}: names the refused host:port: {r}"
        );
        assert_eq!(
            hits.load(Ordering::SeqCst),
            0,
            "{scheme}: redirect followed: {r}"
        );
    }
}

#[tokio::test]
async fn a_token_realm_on_another_port_is_refused() {
    let (target, hits) = witness().await;
    for scheme in ["https", "http"] {
        let (reg, _) = answering(
            401,
            "WWW-Authenticate",
            format!("Bearer realm=\"{scheme}://{target}/token\",service=\"x\""),
        )
        .await;
        let client = RegistryClient::new(insecure(&reg)).expect("client");
        let img = ImageRef::parse(&format!("{reg}/app:v1")).expect("reference");
        let r = reason(&client.lookup(&img).await);
        assert!(
            r.contains(&target),
            "{scheme}: names the refused realm host:port: {r}"
        );
        assert_eq!(
            hits.load(Ordering::SeqCst),
            0,
            "{scheme}: token realm contacted: {r}"
        );
    }
}

#[tokio::test]
async fn a_traversal_reference_never_reaches_the_registry() {
    let reg = logged();
    let written = format!("{}/a/../../admin:1", reg.host);
    let e = ImageRef::parse(&written)
        .expect_err("must be refused")
        .to_string();
    assert!(e.contains("OCI distribution spec"), "{e}");
    // A reference built without the parser (fields are public) is refused by the client too.
    let client = RegistryClient::new(insecure(&reg.host)).expect("client");
    for (repository, tag) in [("a/../../admin", "1"), ("app", "../../admin/manifests/1")] {
        let img = ImageRef {
            original: written.clone(),
            registry: reg.host.clone(),
            repository: repository.into(),
            tag: Some(tag.into()),
            digest: None,
        };
        let r = reason(&client.lookup(&img).await);
        assert!(
            r.contains("OCI distribution spec"),
            "{repository}:{tag}: {r}"
        );
    }
    let log = reg.log();
    assert!(
        !log.contains("admin/manifests") && !log.contains("/v2/a/"),
        "reached the registry:\n{log}"
    );
}
