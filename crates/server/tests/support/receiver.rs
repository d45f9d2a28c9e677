//! A real HTTP receiver for notification tests: axum on 127.0.0.1, recording every request
//! (path, headers, body) and answering 200, a failure status, or never (until the test
//! ends). Shared with the CLI's tests (`#[path]`).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::Router;

/// How the receiver answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Ok,
    /// Answers this status.
    Fail(u16),
    /// Never answers (the connection stays open until the test ends).
    Hang,
}

/// One request received.
#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
    /// The status answered (0: never answered).
    pub answered: u16,
}

impl Received {
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }
}

#[derive(Debug)]
struct Inner {
    got: Mutex<Vec<Received>>,
    mode: Mutex<Mode>,
    /// The next this-many requests answer 500 whatever the mode.
    fail_first: AtomicUsize,
    hanging: AtomicUsize,
}

pub struct Receiver {
    pub addr: SocketAddr,
    inner: Arc<Inner>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn handle(
    State(inner): State<Arc<Inner>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let mode = *inner.mode.lock().unwrap();
    let status = if inner
        .fail_first
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
    {
        Some(500)
    } else {
        match mode {
            Mode::Ok => Some(200),
            Mode::Fail(s) => Some(s),
            Mode::Hang => None,
        }
    };
    if status.is_none() {
        inner.hanging.fetch_add(1, Ordering::SeqCst);
    }
    inner.got.lock().unwrap().push(Received {
        path: uri.path().to_string(),
        headers,
        body: body.to_vec(),
        answered: status.unwrap_or(0),
    });
    match status {
        Some(s) => StatusCode::from_u16(s).unwrap(),
        None => {
            std::future::pending::<()>().await;
            unreachable!()
        }
    }
}

impl Receiver {
    /// Listens on 127.0.0.1 (a port chosen by the system).
    pub async fn start(mode: Mode) -> Receiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        Receiver::on(listener, mode)
    }

    /// Listens on `listener`.
    pub fn on(listener: tokio::net::TcpListener, mode: Mode) -> Receiver {
        let addr = listener.local_addr().unwrap();
        let inner = Arc::new(Inner {
            got: Mutex::new(Vec::new()),
            mode: Mutex::new(mode),
            fail_first: AtomicUsize::new(0),
            hanging: AtomicUsize::new(0),
        });
        let app = Router::new().fallback(handle).with_state(inner.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Receiver { addr, inner, task }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn set_mode(&self, m: Mode) {
        *self.inner.mode.lock().unwrap() = m;
    }

    /// The next `n` requests answer 500.
    pub fn fail_first(&self, n: usize) {
        self.inner.fail_first.store(n, Ordering::SeqCst);
    }

    pub fn received(&self) -> Vec<Received> {
        self.inner.got.lock().unwrap().clone()
    }

    /// The requests answered 2xx.
    pub fn delivered(&self) -> Vec<Received> {
        self.received()
            .into_iter()
            .filter(|r| (200..300).contains(&r.answered))
            .collect()
    }

    /// Requests held unanswered right now.
    pub fn hanging(&self) -> usize {
        self.inner.hanging.load(Ordering::SeqCst)
    }

    /// Waits (at most 60 s) until `cond` holds for the requests received.
    pub async fn wait_for(&self, what: &str, cond: impl Fn(&[Received]) -> bool) -> Vec<Received> {
        let end = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let got = self.received();
            if cond(&got) {
                return got;
            }
            assert!(
                tokio::time::Instant::now() < end,
                "receiver: {what}: not within 60s; got {} requests: {:?}",
                got.len(),
                got.iter()
                    .map(|r| (&r.path, r.answered))
                    .collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
