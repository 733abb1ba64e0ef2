//! A real HTTP server on 127.0.0.1:0 that records what it receives (webhook receiver, ARI stand-in).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use tokio::sync::Mutex;

/// One received request.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: Method,
    pub uri: Uri,
    pub headers: HeaderMap,
    pub body: Bytes,
}

#[derive(Default)]
struct Inner {
    got: Mutex<Vec<Received>>,
    /// Requests still to be answered with 500.
    fail_next: AtomicUsize,
    /// Total requests seen (including failed ones).
    seen: AtomicUsize,
}

/// The running receiver.
#[derive(Clone)]
pub struct Receiver {
    pub url: String,
    inner: Arc<Inner>,
}

async fn record(
    State(inner): State<Arc<Inner>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    inner.seen.fetch_add(1, Ordering::SeqCst);
    let failing = inner
        .fail_next
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok();
    if failing {
        return StatusCode::INTERNAL_SERVER_ERROR;
    }
    inner.got.lock().await.push(Received {
        method,
        uri,
        headers,
        body,
    });
    StatusCode::OK
}

impl Receiver {
    pub async fn start() -> Self {
        let inner = Arc::new(Inner::default());
        let app = Router::new().fallback(record).with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Self { url, inner }
    }

    /// Answers the next `n` requests with 500.
    pub fn fail_next(&self, n: usize) {
        self.inner.fail_next.store(n, Ordering::SeqCst);
    }

    /// Requests seen, failed ones included.
    pub fn seen(&self) -> usize {
        self.inner.seen.load(Ordering::SeqCst)
    }

    /// Successfully answered requests so far.
    pub async fn received(&self) -> Vec<Received> {
        self.inner.got.lock().await.clone()
    }

    /// Waits until `n` requests were answered 200, or `wait` passes.
    pub async fn wait_for(&self, n: usize, wait: Duration) -> Vec<Received> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let got = self.received().await;
            if got.len() >= n || tokio::time::Instant::now() >= deadline {
                return got;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until nothing new has arrived for `quiet`, and returns what came.
    pub async fn settle(&self, quiet: Duration) -> Vec<Received> {
        let mut last = self.received().await.len();
        loop {
            tokio::time::sleep(quiet).await;
            let got = self.received().await;
            if got.len() == last {
                return got;
            }
            last = got.len();
        }
    }
}
