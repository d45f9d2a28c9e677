//! A misbehaving OCI registry for scripts/soak.sh (fault injection; the real registry of the
//! soak is docker-registry). The first path segment of the repository names the fault, for
//! every request under it:
//!
//! | repository      | answer                                                                  |
//! |-----------------|-------------------------------------------------------------------------|
//! | `slow/...`      | the real manifest after 5 s (past the registry client's 3 s timeout)    |
//! | `slowok/...`    | the real manifest after 1 s, then 404 for referrers (no report)         |
//! | `hang/...`      | reads the request and never answers (socket held 60 s)                  |
//! | `reset/...`     | reads the request and resets the connection (RST, SO_LINGER 0)          |
//! | `garbage/...`   | 200 with 4 KiB of pseudo-random bytes as a manifest                     |
//! | `oversized/...` | 200, chunked, 64 MiB of spaces (past every manifest cap)                |
//! | `truncated/...` | Content-Length 10000, 100 bytes sent, connection closed                 |
//! | `wrongdigest/...` | the real manifest with a `Docker-Content-Digest` of other bytes       |
//! | `status500/...` | 500 with a registry error body                                          |
//!
//! `GET /v2/` answers 200. Every answer closes the connection. With `--stats FILE`, the
//! number of requests per fault is written to FILE (JSON) every second.
//!
//! ```text
//! cargo run --release -p vulngate-server --example fault_registry -- --listen 127.0.0.1:5001 [--stats FILE]
//! ```

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The real image manifest captured from docker-registry (crates/registry/tests/data).
const MANIFEST: &[u8] = include_bytes!("../../registry/tests/data/manifests/image.manifest.json");
const MANIFEST_DIGEST: &str =
    "sha256:05d20e8740ef391bb7d5436d5dad4eb18cdf223eb520c7dec4cd151cd465ce00";
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const FAULTS: [&str; 9] = [
    "slow",
    "slowok",
    "hang",
    "reset",
    "garbage",
    "oversized",
    "truncated",
    "wrongdigest",
    "status500",
];

type Stats = Arc<Mutex<BTreeMap<String, u64>>>;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut listen = "127.0.0.1:5001".to_string();
    let mut stats_file = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = || args.next().ok_or(format!("{a} needs a value"));
        match a.as_str() {
            "--listen" => listen = val()?,
            "--stats" => stats_file = Some(val()?),
            other => return Err(format!("unknown argument {other}").into()),
        }
    }
    if !listen.starts_with("127.0.0.1:") {
        return Err("--listen must be a loopback address (127.0.0.1:PORT)".into());
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let l = TcpListener::bind(&listen).await?;
        let stats: Stats = Arc::default();
        if let Some(path) = stats_file {
            let stats = stats.clone();
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    let text = {
                        let s = stats.lock().map(|s| s.clone()).unwrap_or_default();
                        let body: Vec<String> =
                            s.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
                        format!("{{{}}}\n", body.join(","))
                    };
                    let tmp = format!("{path}.tmp");
                    if std::fs::write(&tmp, text).is_ok() {
                        let _ = std::fs::rename(&tmp, &path);
                    }
                }
            });
        }
        eprintln!("fault registry listening on {listen}");
        loop {
            let (sock, _) = l.accept().await?;
            let stats = stats.clone();
            tokio::spawn(async move {
                let _ = serve(sock, stats).await;
            });
        }
    })
}

/// Reads one request head (at most 64 KiB); returns its path.
async fn read_head(sock: &mut TcpStream) -> std::io::Result<Option<String>> {
    let mut buf = Vec::new();
    let mut tmp = [0u8; 4096];
    loop {
        let n = sock.read(&mut tmp).await?;
        if n == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(&tmp[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..i]);
            let path = head
                .lines()
                .next()
                .and_then(|l| l.split(' ').nth(1))
                .unwrap_or("/")
                .to_string();
            return Ok(Some(path));
        }
        if buf.len() > 64 << 10 {
            return Ok(None);
        }
    }
}

async fn full(
    sock: &mut TcpStream,
    status: u16,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<()> {
    let mut head = format!(
        "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    sock.write_all(head.as_bytes()).await?;
    sock.write_all(body).await
}

async fn not_found(sock: &mut TcpStream) -> std::io::Result<()> {
    full(
        sock,
        404,
        &[("Content-Type", "application/json")],
        br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}"#,
    )
    .await
}

async fn manifest(sock: &mut TcpStream, digest: &str) -> std::io::Result<()> {
    full(
        sock,
        200,
        &[
            ("Content-Type", OCI_MANIFEST),
            ("Docker-Content-Digest", digest),
        ],
        MANIFEST,
    )
    .await
}

async fn serve(mut sock: TcpStream, stats: Stats) -> std::io::Result<()> {
    let Some(path) = read_head(&mut sock).await? else {
        return Ok(());
    };
    if path == "/v2/" || path == "/v2" {
        return full(
            &mut sock,
            200,
            &[("Content-Type", "application/json")],
            b"{}",
        )
        .await;
    }
    let fault = path
        .strip_prefix("/v2/")
        .and_then(|p| p.split('/').next())
        .filter(|f| FAULTS.contains(f))
        .unwrap_or("unknown")
        .to_string();
    if let Ok(mut s) = stats.lock() {
        *s.entry(fault.clone()).or_default() += 1;
    }
    let is_manifest = path.contains("/manifests/");
    let is_referrers_tag = path.contains("/manifests/sha256-");
    match fault.as_str() {
        "slow" => {
            tokio::time::sleep(Duration::from_secs(5)).await;
            manifest(&mut sock, MANIFEST_DIGEST).await?;
        }
        "slowok" => {
            tokio::time::sleep(Duration::from_secs(1)).await;
            if is_manifest && !is_referrers_tag {
                manifest(&mut sock, MANIFEST_DIGEST).await?;
            } else {
                not_found(&mut sock).await?;
            }
        }
        "hang" => {
            tokio::time::sleep(Duration::from_secs(60)).await;
        }
        "reset" => {
            // Zero linger: close sends RST at once (tokio deprecates set_linger because a
            // non-zero linger blocks the thread on drop; zero does not).
            #[allow(deprecated)]
            sock.set_linger(Some(Duration::ZERO))?;
            drop(sock);
            return Ok(());
        }
        "garbage" => {
            // xorshift: the same 4 KiB on every answer.
            let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
            let body: Vec<u8> = (0..4096)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    (x >> 24) as u8
                })
                .collect();
            full(&mut sock, 200, &[("Content-Type", OCI_MANIFEST)], &body).await?;
        }
        "oversized" => {
            sock.write_all(
                format!(
                    "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Type: {OCI_MANIFEST}\r\nConnection: close\r\n\r\n"
                )
                .as_bytes(),
            )
            .await?;
            let chunk = vec![b' '; 64 << 10];
            for _ in 0..1024 {
                sock.write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
                    .await?;
                sock.write_all(&chunk).await?;
                sock.write_all(b"\r\n").await?;
            }
            sock.write_all(b"0\r\n\r\n").await?;
        }
        "truncated" => {
            sock.write_all(
                format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: 10000\r\nContent-Type: {OCI_MANIFEST}\r\nConnection: close\r\n\r\n"
                )
                .as_bytes(),
            )
            .await?;
            sock.write_all(&MANIFEST[..100.min(MANIFEST.len())]).await?;
        }
        "wrongdigest" => {
            manifest(
                &mut sock,
                "sha256:0000000000000000000000000000000000000000000000000000000000000000",
            )
            .await?;
        }
        "status500" => {
            full(
                &mut sock,
                500,
                &[("Content-Type", "application/json")],
                br#"{"errors":[{"code":"UNKNOWN","message":"internal error"}]}"#,
            )
            .await?;
        }
        _ => not_found(&mut sock).await?,
    }
    let _ = sock.shutdown().await;
    Ok(())
}
