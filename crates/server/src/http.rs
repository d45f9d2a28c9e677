//! The HTTP side of the server: its listeners (the webhook over TLS, `/metrics` in plain
//! HTTP on its own port), the accept loop and every connection limit (`docs/security.md`,
//! "HTTP limits"; configured in the `http` section), and the `?timeout=` query parameter of
//! `/validate`.
//!
//! A connection passes through these limits:
//! - the connection cap (`http.maxConnections`): a permit is taken before `accept(2)`, so at
//!   the cap new connections wait in the kernel's accept queue (no file descriptor is used
//!   for them) and are served once another connection closes;
//! - the TLS handshake timeout;
//! - the header timeout: from the end of the handshake (and, on HTTP/1.1, from the first byte
//!   of every later request) to the end of the request head; the connection is closed when
//!   it passes;
//! - the request timeout: from the request head to the answer, body read included (408);
//! - the idle timeout: a connection with no request in flight for that long is closed
//!   (gracefully: HTTP/2 GOAWAY), and dropped if it has not closed a header timeout later;
//! - the head size and header count caps (HTTP/1.1: 431) and the HTTP/2 limits (concurrent
//!   streams, header list size, reset streams: CVE-2023-44487 "rapid reset").

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, HeaderValue, Request, Response, StatusCode, Version};
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Notify, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;

use crate::config::HttpConfig;

// ---------------------------------------------------------------------------------------------
// `?timeout=`

/// The shortest and longest webhook timeouts the API server allows (`timeoutSeconds`).
pub const MIN_WEBHOOK_TIMEOUT: Duration = Duration::from_secs(1);
pub const MAX_WEBHOOK_TIMEOUT: Duration = Duration::from_secs(30);

/// A query parameter that cannot be read: a 400 naming it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid query parameter {parameter:?}: {message}")]
pub struct BadParameter {
    pub parameter: &'static str,
    pub message: String,
}

/// The webhook timeout from the URL's query (`?timeout=10s`, as the API server sends it: a Go
/// duration). Read saturating (any number of digits) and clamped to the API server's range,
/// 1 s to 30 s; `default` when absent. Not a duration: an error naming the parameter.
pub fn timeout_from_query(
    query: Option<&str>,
    default: Duration,
) -> Result<Duration, BadParameter> {
    let Some(value) = query
        .into_iter()
        .flat_map(|q| q.split('&'))
        .filter_map(|kv| kv.split_once('=').or(Some((kv, ""))))
        .find(|(k, _)| *k == "timeout")
        .map(|(_, v)| v)
    else {
        return Ok(default);
    };
    let d = parse_go_duration(value).map_err(|why| BadParameter {
        parameter: "timeout",
        message: format!(
            "{} is not a duration ({why}; expected e.g. 10s)",
            shown(value)
        ),
    })?;
    Ok(d.clamp(MIN_WEBHOOK_TIMEOUT, MAX_WEBHOOK_TIMEOUT))
}

/// Reads a Go duration (`10s`, `1m30s`, `1.5s`, `300ms`, `-1h`, `0`: units ns, us, µs, ms,
/// s, m, h), saturating at `Duration::MAX`; a negative duration is zero.
pub fn parse_go_duration(s: &str) -> Result<Duration, &'static str> {
    let (negative, mut rest) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    if rest == "0" {
        return Ok(Duration::ZERO);
    }
    if rest.is_empty() {
        return Err("empty");
    }
    let mut total: u128 = 0; // nanoseconds, saturating
    while !rest.is_empty() {
        let int_len = rest.bytes().take_while(u8::is_ascii_digit).count();
        let (int, after) = rest.split_at(int_len);
        let (frac, after) = match after.strip_prefix('.') {
            Some(a) => {
                let n = a.bytes().take_while(u8::is_ascii_digit).count();
                a.split_at(n)
            }
            None => ("", after),
        };
        if int.is_empty() && frac.is_empty() {
            return Err("a number is missing");
        }
        let unit_len = after
            .char_indices()
            .find(|(_, c)| !(c.is_ascii_lowercase() || *c == 'µ' || *c == 'μ'))
            .map_or(after.len(), |(i, _)| i);
        let (unit, after) = after.split_at(unit_len);
        let scale: u128 = match unit {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            "" => return Err("a unit is missing"),
            _ => return Err("unknown unit"),
        };
        let mut whole: u128 = 0;
        for d in int.bytes() {
            whole = whole
                .saturating_mul(10)
                .saturating_add(u128::from(d - b'0'));
        }
        let mut part = whole.saturating_mul(scale);
        // The fraction, to the nanosecond (further digits cannot matter).
        let mut unit_scale = scale;
        for d in frac.bytes() {
            unit_scale /= 10;
            if unit_scale == 0 {
                break;
            }
            part = part.saturating_add(u128::from(d - b'0') * unit_scale);
        }
        total = total.saturating_add(part);
        rest = after;
    }
    if negative {
        return Ok(Duration::ZERO);
    }
    let secs = u64::try_from(total / 1_000_000_000).unwrap_or(u64::MAX);
    let nanos = u32::try_from(total % 1_000_000_000).unwrap_or(0);
    Ok(Duration::new(secs, nanos))
}

/// `value` quoted for a message: at most 64 characters, control characters escaped.
fn shown(value: &str) -> String {
    let mut s: String = value.chars().take(64).collect();
    if s.len() < value.len() {
        s.push('…');
    }
    format!("{s:?}")
}

// ---------------------------------------------------------------------------------------------
// Metrics

type Labels = Vec<(&'static str, &'static str)>;

/// Connection metrics of the listeners (`vulngate_http_*`).
#[derive(Debug, Clone, Default)]
pub struct HttpMetrics {
    open: Family<Labels, Gauge>,
    closed: Family<Labels, Counter>,
}

impl HttpMetrics {
    pub(crate) fn register(registry: &mut Registry) -> HttpMetrics {
        let m = HttpMetrics::default();
        registry.register(
            "http_connections",
            "Connections open, by listener (webhook, metrics)",
            m.open.clone(),
        );
        registry.register(
            "http_connections_closed_by_limit",
            "Connections closed or requests ended by a limit, by listener and reason \
             (tls-handshake-timeout, header-timeout, request-timeout, idle-timeout, close-timeout)",
            m.closed.clone(),
        );
        m
    }

    /// Connections open on `listener` now.
    pub fn open_connections(&self, listener: &'static str) -> i64 {
        self.open.get_or_create(&vec![("listener", listener)]).get()
    }

    /// Connections (or requests) ended on `listener` by the limit `reason`.
    pub fn closed_by_limit(&self, listener: &'static str, reason: &'static str) -> u64 {
        self.closed
            .get_or_create(&vec![("listener", listener), ("reason", reason)])
            .get()
    }

    fn close(&self, listener: &'static str, reason: &'static str) {
        self.closed
            .get_or_create(&vec![("listener", listener), ("reason", reason)])
            .inc();
    }
}

// ---------------------------------------------------------------------------------------------
// Limits

/// How long in-flight requests may finish after the server was asked to stop.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// File descriptors kept for everything but client connections (store, registries, logs,
/// the metrics listener) when the connection cap is fitted to the open file limit.
const RESERVED_FDS: u64 = 256;

/// The limits of one listener, and the hyper builder made from them.
#[derive(Debug)]
pub(crate) struct Limits {
    pub max_connections: usize,
    pub tls_handshake_timeout: Duration,
    pub header_read_timeout: Duration,
    pub request_timeout: Duration,
    pub idle_timeout: Duration,
    builder: auto::Builder<TokioExecutor>,
}

impl Limits {
    pub fn new(cfg: &HttpConfig, max_connections: usize) -> Limits {
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .keep_alive(true)
            // The head must fit in the read buffer: beyond it, 431 and the connection closes.
            .max_buf_size(cfg.max_header_bytes.max(8192))
            .max_headers(cfg.max_headers)
            // Replaced by the connection's own header timeout (which does not count the idle
            // time between keep-alive requests).
            .header_read_timeout(None);
        builder
            .http2()
            .max_concurrent_streams(cfg.http2_max_concurrent_streams)
            .max_header_list_size(cfg.http2_max_header_list_bytes)
            .max_pending_accept_reset_streams(cfg.http2_max_pending_reset_streams)
            .max_local_error_reset_streams(cfg.http2_max_local_error_reset_streams);
        Limits {
            max_connections,
            tls_handshake_timeout: cfg.tls_handshake_timeout,
            header_read_timeout: cfg.header_read_timeout,
            request_timeout: cfg.request_timeout,
            idle_timeout: cfg.idle_timeout,
            builder,
        }
    }
}

/// Raises the soft open-file limit (RLIMIT_NOFILE) to the hard one, once per process, and
/// returns the soft limit then in force (None where it cannot be read).
pub fn raise_nofile_limit() -> Option<u64> {
    static RAISED: std::sync::OnceLock<Option<u64>> = std::sync::OnceLock::new();
    *RAISED.get_or_init(|| {
        #[cfg(unix)]
        {
            let (soft, hard) = rlimit::getrlimit(rlimit::Resource::NOFILE).ok()?;
            match rlimit::increase_nofile_limit(hard) {
                Ok(now) => {
                    if now > soft {
                        tracing::info!(from = soft, to = now, "raised the open file limit");
                    }
                    Some(now)
                }
                Err(e) => {
                    tracing::warn!(error = %e, soft, hard, "cannot raise the open file limit");
                    Some(soft)
                }
            }
        }
        #[cfg(not(unix))]
        None
    })
}

/// The connection cap in force: the configured one, lowered to leave `RESERVED_FDS` file
/// descriptors under the open file limit `nofile` (each connection holds one).
pub fn fitted_max_connections(configured: usize, nofile: Option<u64>) -> usize {
    let Some(limit) = nofile else {
        return configured;
    };
    let room = usize::try_from(limit.saturating_sub(RESERVED_FDS)).unwrap_or(usize::MAX);
    if room < configured {
        tracing::warn!(
            configured,
            open_file_limit = limit,
            max_connections = room.max(1),
            "http.maxConnections lowered to fit the open file limit"
        );
        room.max(1)
    } else {
        configured
    }
}

// ---------------------------------------------------------------------------------------------
// Listeners

/// One listener and what it serves.
pub(crate) struct Listener {
    /// `webhook` or `metrics` (the metrics' label).
    pub name: &'static str,
    pub tcp: TcpListener,
    /// TLS (the webhook) or plain HTTP (metrics).
    pub tls: Option<TlsAcceptor>,
    pub router: Router,
    pub limits: Arc<Limits>,
}

/// A running listener: [`drained`](Served::drained) completes when its connections are closed.
#[derive(Debug)]
pub(crate) struct Served {
    connections: Arc<Semaphore>,
    permits: u32,
}

impl Served {
    pub async fn drained(&self) {
        let _ = self.connections.acquire_many(self.permits).await;
    }
}

/// Serves `router` over TLS on `tcp` with the webhook listener's connection handling (the
/// connection cap, the handshake, header, request and idle timeouts, the head and HTTP/2
/// limits of `cfg`, the request and byte accounting) until `stop` says true. For the
/// benchmarks' fixed-answer server (`examples/fixed_response.rs --stack hardened`), which
/// measures this stack apart from vulngate's handler.
pub async fn serve_hardened(
    tcp: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    router: Router,
    cfg: &HttpConfig,
    stop: watch::Receiver<bool>,
) {
    let mut stopping = stop.clone();
    let max_connections = fitted_max_connections(cfg.max_connections, raise_nofile_limit());
    let served = Listener {
        name: "webhook",
        tcp,
        tls: Some(TlsAcceptor::from(tls)),
        router,
        limits: Arc::new(Limits::new(cfg, max_connections)),
    }
    .spawn(HttpMetrics::register(&mut Registry::default()), stop);
    stopped(&mut stopping).await;
    served.drained().await;
}

/// Completes when `stop` says true (or its sender is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

impl Listener {
    /// Starts the accept loop; it ends when `stop` turns true (connections then shut down
    /// gracefully, and are dropped [`SHUTDOWN_GRACE`] later).
    pub fn spawn(self, metrics: HttpMetrics, stop: watch::Receiver<bool>) -> Served {
        let permits = u32::try_from(self.limits.max_connections).unwrap_or(u32::MAX);
        let connections = Arc::new(Semaphore::new(permits as usize));
        let served = Served {
            connections: connections.clone(),
            permits,
        };
        tokio::spawn(self.accept_loop(connections, metrics, stop));
        served
    }

    async fn accept_loop(
        self,
        connections: Arc<Semaphore>,
        metrics: HttpMetrics,
        mut stop: watch::Receiver<bool>,
    ) {
        let name = self.name;
        loop {
            // At the cap, wait here: the kernel queues new connections meanwhile.
            let permit = tokio::select! {
                p = connections.clone().acquire_owned() => match p {
                    Ok(p) => p,
                    Err(_) => break,
                },
                _ = stopped(&mut stop) => break,
            };
            let (tcp, peer) = tokio::select! {
                accepted = self.tcp.accept() => match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::warn!(listener = name, error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                _ = stopped(&mut stop) => break,
            };
            let _ = tcp.set_nodelay(true);
            let conn = Conn {
                name,
                peer,
                tls: self.tls.clone(),
                router: self.router.clone(),
                limits: self.limits.clone(),
                metrics: metrics.clone(),
                stop: stop.clone(),
                _permit: permit,
            };
            tokio::spawn(conn.run(tcp));
        }
    }
}

/// One accepted connection.
struct Conn {
    name: &'static str,
    peer: SocketAddr,
    tls: Option<TlsAcceptor>,
    router: Router,
    limits: Arc<Limits>,
    metrics: HttpMetrics,
    stop: watch::Receiver<bool>,
    /// Returned to the listener's cap when the connection ends.
    _permit: OwnedSemaphorePermit,
}

/// Decrements the open-connections gauge when dropped.
struct OpenGuard(Gauge);

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

impl Conn {
    async fn run(self, tcp: TcpStream) {
        let gauge = self
            .metrics
            .open
            .get_or_create(&vec![("listener", self.name)])
            .clone();
        gauge.inc();
        let _open = OpenGuard(gauge);
        match self.tls.clone() {
            Some(acceptor) => {
                match tokio::time::timeout(self.limits.tls_handshake_timeout, acceptor.accept(tcp))
                    .await
                {
                    Ok(Ok(stream)) => self.serve(stream).await,
                    Ok(Err(e)) => {
                        tracing::debug!(peer = %self.peer, error = %e, "TLS handshake failed");
                    }
                    Err(_) => {
                        self.metrics.close(self.name, "tls-handshake-timeout");
                        tracing::debug!(peer = %self.peer, "TLS handshake timed out");
                    }
                }
            }
            None => self.serve(tcp).await,
        }
    }

    /// Serves HTTP/1.1 or HTTP/2 on `io` under the connection's timeouts.
    async fn serve<IO>(mut self, io: IO)
    where
        IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let activity = Arc::new(Activity::new());
        let io = TokioIo::new(Tracked {
            inner: io,
            activity: activity.clone(),
        });
        let service = Guarded {
            router: self.router.clone(),
            activity: activity.clone(),
            request_timeout: self.limits.request_timeout,
            metrics: self.metrics.clone(),
            name: self.name,
        };
        let limits = self.limits.clone();
        let conn = limits.builder.serve_connection(io, service);
        let mut conn = std::pin::pin!(conn);
        // Once asked to close (idle, shutdown): when it is dropped if still open.
        let mut closing: Option<Instant> = None;
        let sleep = tokio::time::sleep(Duration::ZERO);
        let mut sleep = std::pin::pin!(sleep);
        loop {
            let (deadline, why) = match closing {
                Some(at) => (at, Expiry::Close),
                None => activity.deadline(&limits),
            };
            if sleep.deadline() != deadline {
                sleep.as_mut().reset(deadline);
            }
            tokio::select! {
                ended = conn.as_mut() => {
                    if let Err(e) = ended {
                        tracing::debug!(peer = %self.peer, error = %e, "connection ended with an error");
                    }
                    return;
                }
                () = activity.changed.notified() => {}
                () = &mut sleep => match why {
                    Expiry::Recheck => {}
                    Expiry::Header => {
                        self.metrics.close(self.name, "header-timeout");
                        tracing::debug!(peer = %self.peer, "request head not received in time; closing");
                        return;
                    }
                    Expiry::Idle => {
                        self.metrics.close(self.name, "idle-timeout");
                        conn.as_mut().graceful_shutdown();
                        closing = Some(Instant::now() + limits.header_read_timeout);
                    }
                    Expiry::Close => {
                        self.metrics.close(self.name, "close-timeout");
                        return;
                    }
                },
                () = stopped(&mut self.stop), if closing.is_none() => {
                    conn.as_mut().graceful_shutdown();
                    closing = Some(Instant::now() + SHUTDOWN_GRACE);
                }
            }
        }
    }
}

/// What happens when a connection's deadline passes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expiry {
    /// A request is in flight (its own timeout applies): look again.
    Recheck,
    /// The request head did not arrive in time: close.
    Header,
    /// No request for the idle timeout: shut down gracefully.
    Idle,
    /// Asked to close and still open: drop.
    Close,
}

const NONE: u64 = u64::MAX;

/// What the connection is doing, for its deadlines: requests in flight, since when bytes of
/// a request head have been arriving, when the last request ended.
#[derive(Debug)]
struct Activity {
    epoch: Instant,
    inflight: AtomicUsize,
    /// Milliseconds since `epoch` at which the pending request head began (NONE: none).
    head_since: AtomicU64,
    /// Milliseconds since `epoch` at which the last request ended.
    last_end: AtomicU64,
    /// HTTP/2 (seen on the first request): bytes between requests are frames (PING,
    /// WINDOW_UPDATE...), not a request head.
    http2: AtomicBool,
    /// Woken when a deadline moves.
    changed: Notify,
}

impl Activity {
    /// A connection just set up: its first request head is pending from now.
    fn new() -> Activity {
        Activity {
            epoch: Instant::now(),
            inflight: AtomicUsize::new(0),
            head_since: AtomicU64::new(0),
            last_end: AtomicU64::new(0),
            http2: AtomicBool::new(false),
            changed: Notify::new(),
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(NONE - 1)
    }

    fn at(&self, ms: u64, plus: Duration) -> Instant {
        self.epoch + Duration::from_millis(ms) + plus
    }

    fn deadline(&self, limits: &Limits) -> (Instant, Expiry) {
        if self.inflight.load(Ordering::Acquire) > 0 {
            return (
                Instant::now() + limits.request_timeout + limits.idle_timeout,
                Expiry::Recheck,
            );
        }
        match self.head_since.load(Ordering::Acquire) {
            NONE => (
                self.at(self.last_end.load(Ordering::Acquire), limits.idle_timeout),
                Expiry::Idle,
            ),
            since => (self.at(since, limits.header_read_timeout), Expiry::Header),
        }
    }

    /// Bytes arrived.
    fn read(&self) {
        if self.inflight.load(Ordering::Acquire) == 0
            && self.head_since.load(Ordering::Acquire) == NONE
            && !self.http2.load(Ordering::Relaxed)
        {
            self.head_since.store(self.now_ms(), Ordering::Release);
            self.changed.notify_one();
        }
    }

    /// A request head was read: the request is in flight.
    fn begin(&self, http2: bool) {
        if http2 {
            self.http2.store(true, Ordering::Relaxed);
        }
        self.inflight.fetch_add(1, Ordering::AcqRel);
        self.head_since.store(NONE, Ordering::Release);
    }

    /// A request was answered.
    fn end(&self) {
        self.last_end.store(self.now_ms(), Ordering::Release);
        if self.inflight.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.changed.notify_one();
        }
    }
}

/// The connection's byte stream, noting when bytes arrive.
struct Tracked<IO> {
    inner: IO,
    activity: Arc<Activity>,
}

impl<IO: AsyncRead + Unpin> AsyncRead for Tracked<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.read();
        }
        polled
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Tracked<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Ends the request in flight for [`Activity`] when dropped (answered or cancelled).
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.end();
    }
}

/// The router as a hyper service, under the request timeout, counting requests in flight.
#[derive(Clone)]
struct Guarded {
    router: Router,
    activity: Arc<Activity>,
    request_timeout: Duration,
    metrics: HttpMetrics,
    name: &'static str,
}

type ResponseFuture = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

impl hyper::service::Service<Request<Incoming>> for Guarded {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = ResponseFuture;

    fn call(&self, req: Request<Incoming>) -> Self::Future {
        let version = req.version();
        self.activity.begin(version == Version::HTTP_2);
        let guard = InFlight(self.activity.clone());
        let timeout = self.request_timeout;
        let metrics = self.metrics.clone();
        let name = self.name;
        let answer = tower::ServiceExt::oneshot(self.router.clone(), req);
        Box::pin(async move {
            let _guard = guard;
            match tokio::time::timeout(timeout, answer).await {
                Ok(resp) => resp,
                Err(_) => {
                    metrics.close(name, "request-timeout");
                    Ok(request_timed_out(timeout, version))
                }
            }
        })
    }
}

/// 408 (the connection is closed after it on HTTP/1.1).
fn request_timed_out(timeout: Duration, version: Version) -> Response<Body> {
    let mut resp = Response::new(Body::from(format!(
        "request not received and answered within http.requestTimeout ({})\n",
        crate::config::format_duration(timeout)
    )));
    *resp.status_mut() = StatusCode::REQUEST_TIMEOUT;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    if version < Version::HTTP_2 {
        h.insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEN: Duration = Duration::from_secs(10);

    #[test]
    fn timeout_parameter() {
        let t = |q: &str| timeout_from_query(Some(q), TEN);
        assert_eq!(timeout_from_query(None, TEN), Ok(TEN));
        assert_eq!(t("other=1"), Ok(TEN));
        assert_eq!(t("timeout=10s"), Ok(TEN));
        assert_eq!(t("timeout=5s&x=y"), Ok(Duration::from_secs(5)));
        assert_eq!(t("timeout=1500ms"), Ok(Duration::from_millis(1500)));
        assert_eq!(t("timeout=1m"), Ok(MAX_WEBHOOK_TIMEOUT));
        assert_eq!(t("timeout=0"), Ok(MIN_WEBHOOK_TIMEOUT));
        assert_eq!(t("timeout=2.5s"), Ok(Duration::from_millis(2500)));
        assert_eq!(t("timeout=1m0s"), Ok(MAX_WEBHOOK_TIMEOUT));
        // Saturating: no overflow, whatever the digits.
        assert_eq!(t("timeout=18446744073709551615s"), Ok(MAX_WEBHOOK_TIMEOUT));
        assert_eq!(
            t("timeout=99999999999999999999999999999999h"),
            Ok(MAX_WEBHOOK_TIMEOUT)
        );
        assert_eq!(t("timeout=1ns"), Ok(MIN_WEBHOOK_TIMEOUT));
        assert_eq!(t("timeout=-5s"), Ok(MIN_WEBHOOK_TIMEOUT));
        for junk in [
            "timeout=",
            "timeout",
            "timeout=10",
            "timeout=abc",
            "timeout=10x",
            "timeout=s",
            "timeout=1e3s",
            "timeout=10s%20",
            "timeout=.s",
        ] {
            let e = t(junk).expect_err(junk);
            assert_eq!(e.parameter, "timeout", "{junk}");
            assert!(e.to_string().contains("\"timeout\""), "{e}");
        }
        let long = format!("timeout={}", "x".repeat(10_000));
        assert!(t(&long).unwrap_err().to_string().len() < 300);
    }

    #[test]
    fn connection_cap_fits_the_open_file_limit() {
        assert_eq!(fitted_max_connections(1024, None), 1024);
        assert_eq!(fitted_max_connections(1024, Some(1 << 20)), 1024);
        assert_eq!(fitted_max_connections(1024, Some(1024)), 768);
        assert_eq!(fitted_max_connections(1024, Some(10)), 1);
    }
}
