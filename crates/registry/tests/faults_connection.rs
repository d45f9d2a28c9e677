//! Connection-level registry faults (the soak's fault registry, scripts/soak.sh, injects the
//! same ones under load): a registry that resets the connection after reading the request,
//! and one that accepts and never answers. Both end as an unscanned image whose reason says
//! what happened; neither hangs the lookup.

use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;
use vulngate_core::{ImageRef, UnscannedReason};
use vulngate_registry::{RegistryClient, RegistryConfig};

#[derive(Clone, Copy)]
enum Fault {
    /// Reads the request head, then closes with RST (SO_LINGER 0).
    Reset,
    /// Reads the request head and holds the connection without answering.
    Hang,
}

async fn start(fault: Fault) -> String {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let host = l.local_addr().expect("addr").to_string();
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = l.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut tmp = [0u8; 4096];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match sock.read(&mut tmp).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&tmp[..n]),
                    }
                }
                match fault {
                    Fault::Reset => {
                        // Zero linger: RST at once (deprecated only for non-zero lingers,
                        // which block the thread on drop).
                        #[allow(deprecated)]
                        let _ = sock.set_linger(Some(Duration::ZERO));
                        drop(sock);
                    }
                    Fault::Hang => {
                        tokio::time::sleep(Duration::from_secs(30)).await;
                        drop(sock);
                    }
                }
            });
        }
    });
    host
}

async fn reason(host: &str, cfg: RegistryConfig) -> String {
    let img = ImageRef::parse(&format!("{host}/app:v1")).expect("reference");
    let client = RegistryClient::new(RegistryConfig {
        insecure_registries: vec![host.to_string()],
        ..cfg
    })
    .expect("client");
    match client.lookup(&img).await.report {
        Err(UnscannedReason::RegistryUnavailable(r)) => r,
        other => panic!("expected RegistryUnavailable, got {other:?}"),
    }
}

#[tokio::test]
async fn a_reset_connection_is_an_unavailable_registry() {
    let host = start(Fault::Reset).await;
    let r = reason(&host, RegistryConfig::default()).await;
    assert!(r.contains(&host) || r.contains("app"), "{r}");
}

#[tokio::test]
async fn a_registry_that_never_answers_times_out_naming_the_timeout() {
    let host = start(Fault::Hang).await;
    let mut cfg = RegistryConfig::default();
    cfg.timeouts.request = Duration::from_millis(300);
    let r = reason(&host, cfg).await;
    assert!(r.contains("timed out"), "{r}");
}
