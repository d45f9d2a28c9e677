//! The physical limit for scripts/bench-webhook.sh: the webhook's HTTPS stack (tokio
//! multi-thread runtime, rustls with the ring provider via `vulngate_server::tls::setup`, the
//! same self-signed certificate kind, hyper-util auto HTTP/1.1+h2, axum, the same accept loop as
//! `Server::serve_on`) answering every `POST /validate` with one fixed AdmissionReview response.
//! The request body is read (same body limit) but not parsed; nothing is looked up or evaluated.
//!
//! ```text
//! cargo run --release -p vulngate-server --example fixed_response -- \
//!     --listen 127.0.0.1:9443 --data-dir /tmp/fixed-data [--parse none|skip|kube] \
//!     [--stack bare|hardened]
//! ```
//!
//! `--stack hardened` serves the same router through the webhook listener's own connection
//! handling (`vulngate_server::http::serve_hardened`: connection cap, handshake, header,
//! request and idle timeouts, head and HTTP/2 limits, request accounting) instead of the bare
//! accept loop below: the fixed answer on the stack `vulngate serve` runs, to tell the cost of
//! that hardening from the handler's.
//!
//! `--parse` adds one step before the fixed answer, to measure what reading the JSON alone
//! costs: `skip` runs serde_json over the body without keeping anything (`IgnoredAny`: the
//! least any serde_json parse of the review can cost), `kube` parses it into kube's
//! `AdmissionReview<DynamicObject>` (what a webhook built on the ecosystem's types does).
//! A body that does not parse gets a 400. The default, `none`, is the physical limit.

// The same global allocator as the `vulngate` binary, so the ratio stays fair.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod common;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

/// What `--parse` asks for.
#[derive(Clone, Copy)]
enum Parse {
    None,
    Skip,
    Kube,
}

async fn validate(parse: Parse, body: Bytes) -> Response {
    let parsed = match parse {
        Parse::None => Ok(()),
        Parse::Skip => serde_json::from_slice::<serde::de::IgnoredAny>(&body).map(drop),
        Parse::Kube => serde_json::from_slice::<
            kube::core::admission::AdmissionReview<kube::core::DynamicObject>,
        >(&body)
        .map(drop),
    };
    if parsed.is_err() {
        return (StatusCode::BAD_REQUEST, "malformed AdmissionReview").into_response();
    }
    common::fixed_answer()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut listen: SocketAddr = "127.0.0.1:9443".parse()?;
    let mut data_dir = PathBuf::from("fixed-response-data");
    let mut parse = Parse::None;
    let mut hardened = false;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = || args.next().ok_or(format!("{a} needs a value"));
        match a.as_str() {
            "--listen" => listen = val()?.parse()?,
            "--data-dir" => data_dir = PathBuf::from(val()?),
            "--parse" => {
                parse = match val()?.as_str() {
                    "none" => Parse::None,
                    "skip" => Parse::Skip,
                    "kube" => Parse::Kube,
                    other => return Err(format!("--parse: none, skip or kube, not {other}").into()),
                };
            }
            "--stack" => {
                hardened = match val()?.as_str() {
                    "bare" => false,
                    "hardened" => true,
                    other => return Err(format!("--stack: bare or hardened, not {other}").into()),
                };
            }
            other => return Err(format!("unknown argument {other}").into()),
        }
    }
    if !listen.ip().is_loopback() {
        return Err("benchmark server: loopback addresses only".into());
    }
    let cfg = vulngate_server::Config {
        listen,
        data_dir,
        ..vulngate_server::Config::default()
    };
    let tls = vulngate_server::tls::setup(&cfg)?;
    // Same runtime as `vulngate serve` (multi-thread, one worker per core).
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    if hardened {
        rt.block_on(serve_hardened(listen, tls.server_config, &cfg, parse))?;
    } else {
        rt.block_on(serve(
            listen,
            tls.server_config,
            cfg.max_request_bytes,
            parse,
        ))?;
    }
    Ok(())
}

fn router(parse: Parse, max_request_bytes: usize) -> Router {
    Router::new()
        .route("/validate", post(move |body: Bytes| validate(parse, body)))
        .route("/healthz", get(|| async { "ok" }))
        .layer(DefaultBodyLimit::max(max_request_bytes))
}

/// The same router behind the webhook listener's connection handling.
async fn serve_hardened(
    listen: SocketAddr,
    tls: std::sync::Arc<rustls::ServerConfig>,
    cfg: &vulngate_server::Config,
    parse: Parse,
) -> std::io::Result<()> {
    let tcp = TcpListener::bind(listen).await?;
    eprintln!("fixed_response: serving https://{listen}/validate (hardened stack)");
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        vulngate_server::shutdown_signal().await;
        let _ = stop_tx.send(true);
    });
    let app = router(parse, cfg.max_request_bytes);
    vulngate_server::http::serve_hardened(tcp, tls, app, &cfg.http, stop).await;
    Ok(())
}

async fn serve(
    listen: SocketAddr,
    tls: std::sync::Arc<rustls::ServerConfig>,
    max_request_bytes: usize,
    parse: Parse,
) -> std::io::Result<()> {
    let app = router(parse, max_request_bytes);
    let listener = TcpListener::bind(listen).await?;
    eprintln!("fixed_response: serving https://{listen}/validate");
    let acceptor = TlsAcceptor::from(tls);
    let service = TowerToHyperService::new(app);
    // SIGTERM (what the bench script sends) or Ctrl-C ends the process normally, so that
    // at-exit work runs (e.g. an instrumented build writing its profile for the PGO build).
    let mut shutdown = std::pin::pin!(vulngate_server::shutdown_signal());
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = &mut shutdown => return Ok(()),
        };
        let (tcp, _peer) = match accepted {
            Ok(a) => a,
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let service = service.clone();
        tokio::spawn(async move {
            let Ok(Ok(tls)) =
                tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await
            else {
                return;
            };
            let _ = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(tls), service)
                .await;
        });
    }
}
