//! The HTTP/1 listener: accepts connections and serves the router on them under the limits of
//! `[http]` — a bound on open connections, header, keep-alive, body and send timeouts — so that
//! slow or idle clients cannot hold the node's sockets, file descriptors or tasks.
//!
//! Each connection has a watchdog that knows whether a request is in flight (from the service)
//! and when bytes last moved (from a wrapper around the socket): an idle connection is closed
//! after `keep_alive_timeout_secs`, one sending its headers after `header_read_timeout_secs`, and
//! one whose client stopped reading a response after `send_timeout_secs`. Request bodies carry
//! their own timer (`body_timeout_secs`, `min_body_rate_bytes`).

use std::collections::HashMap;
use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, Response, header};
use axum::response::IntoResponse;
use bytes::Bytes;
use http_body::{Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::error::ApiError;
use crate::config::HttpConfig;

/// The listener's limits, from `[http]`.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_connections: usize,
    pub header_read_timeout: Duration,
    pub keep_alive_timeout: Duration,
    pub body_timeout: Duration,
    pub min_body_rate: u64,
    pub send_timeout: Duration,
    pub max_body_bytes: u64,
}

/// Open files kept for everything but client connections: the database pool, audio files, IMAP
/// and SMTP sessions, webhooks, logs.
const RESERVED_FILES: u64 = 128;

impl Limits {
    /// The limits of `http`, with `max_connections` fitted to `open_files` (the process's
    /// open-file limit) when that is known.
    pub fn new(http: &HttpConfig, open_files: Option<u64>) -> Self {
        let mut max_connections = http.max_connections.max(1) as usize;
        if let Some(n) = open_files {
            let fit = n.saturating_sub(RESERVED_FILES).max(16) as usize;
            if fit < max_connections {
                tracing::warn!(
                    http.max_connections = max_connections,
                    open_files = n,
                    "the open-file limit (ulimit -n) allows only {fit} client connections; \
                     raise it to serve http.max_connections"
                );
                max_connections = fit;
            }
        }
        let secs = |s: u64| Duration::from_secs(s.max(1));
        Self {
            max_connections,
            header_read_timeout: secs(http.header_read_timeout_secs),
            keep_alive_timeout: secs(http.keep_alive_timeout_secs),
            body_timeout: secs(http.body_timeout_secs),
            min_body_rate: http.min_body_rate_bytes,
            send_timeout: secs(http.send_timeout_secs),
            max_body_bytes: http.max_body_bytes,
        }
    }
}

/// Raises the soft open-file limit to the hard one (a server's sockets need more than the usual
/// 1024) and returns the limit in force, if it can be read.
pub fn raise_open_file_limit() -> Option<u64> {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut lim = getrlimit(Resource::Nofile);
    if lim.current < lim.maximum {
        let raised = rustix::process::Rlimit {
            current: lim.maximum,
            maximum: lim.maximum,
        };
        match setrlimit(Resource::Nofile, raised) {
            Ok(()) => lim.current = lim.maximum,
            Err(e) => tracing::warn!(error = %e, "cannot raise the open-file limit"),
        }
    }
    lim.current
}

/// Serves `router` on `listener` until `stop` is cancelled, then lets every connection finish
/// its request in flight (the caller bounds that wait).
pub async fn serve(listener: TcpListener, router: Router, limits: Limits, stop: CancellationToken) {
    let limits = Arc::new(limits);
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let registry = Arc::new(Registry::default());
    let conns = TaskTracker::new();
    let mut next_id: u64 = 0;
    let mut refused: u64 = 0;
    loop {
        let (tcp, remote) = tokio::select! {
            () = stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    accept_failed(&e).await;
                    continue;
                }
            },
        };
        // TCP_NODELAY, or a response's tail waits ~40 ms for the client's delayed ACK (#16).
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::warn!(error = %e, "cannot set TCP_NODELAY on an accepted connection");
        }
        next_id += 1;
        let permit = match slots.clone().try_acquire_owned() {
            Ok(p) => Some(p),
            // At the limit: close the longest-idle kept-alive connection and take its slot.
            Err(_) if registry.evict_idle() => None,
            Err(_) => {
                refused += 1;
                if refused.is_power_of_two() {
                    tracing::warn!(
                        http.max_connections = limits.max_connections,
                        refused,
                        "connection limit reached: refusing connections with 503"
                    );
                }
                conns.spawn(refuse(tcp));
                continue;
            }
        };
        let conn = Conn {
            id: next_id,
            remote,
            router: router.clone(),
            limits: limits.clone(),
            registry: registry.clone(),
            stop: stop.clone(),
        };
        let slots = slots.clone();
        conns.spawn(async move {
            let permit = match permit {
                Some(p) => p,
                None => match tokio::time::timeout(Duration::from_secs(1), slots.acquire_owned())
                    .await
                {
                    Ok(Ok(p)) => p,
                    _ => return refuse(tcp).await,
                },
            };
            conn.run(tcp, permit).await;
        });
    }
    conns.close();
    conns.wait().await;
}

/// An accept that failed: out of file descriptors (wait a little for some to close: the kernel
/// keeps the client in its backlog meanwhile), or a connection that died before it was taken.
async fn accept_failed(e: &io::Error) {
    let errno = e.raw_os_error().map(rustix::io::Errno::from_raw_os_error);
    match errno {
        Some(rustix::io::Errno::MFILE | rustix::io::Errno::NFILE) => {
            tracing::error!(error = %e, "cannot accept a connection: out of file descriptors");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        _ => tracing::debug!(error = %e, "accept failed"),
    }
}

/// Answers a connection over the limit with a 503 problem and closes it.
async fn refuse(mut tcp: TcpStream) {
    let body = serde_json::json!({
        "type": "/problems/unavailable",
        "title": "A back end is unavailable; retry later",
        "status": 503,
        "detail": "too many connections are open; retry later",
    })
    .to_string();
    let head = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/problem+json\r\n\
         retry-after: 1\r\nconnection: close\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    let write = async {
        tcp.write_all(head.as_bytes()).await?;
        tcp.write_all(body.as_bytes()).await?;
        tcp.shutdown().await
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), write).await;
}

/// The open connections, for closing an idle one when the limit is reached.
#[derive(Default)]
struct Registry {
    conns: Mutex<HashMap<u64, Arc<ConnState>>>,
}

impl Registry {
    fn insert(&self, id: u64, state: Arc<ConnState>) {
        if let Ok(mut m) = self.conns.lock() {
            m.insert(id, state);
        }
    }

    fn remove(&self, id: u64) {
        if let Ok(mut m) = self.conns.lock() {
            m.remove(&id);
        }
    }

    /// Asks the kept-alive connection idle the longest to close; false when there is none.
    fn evict_idle(&self) -> bool {
        let Ok(m) = self.conns.lock() else {
            return false;
        };
        let victim = m
            .values()
            .filter(|c| c.is_idle() && c.served.load(Ordering::Relaxed))
            .filter(|c| !c.evict.load(Ordering::Relaxed))
            .min_by_key(|c| c.idle_since.load(Ordering::Relaxed));
        match victim {
            Some(c) => {
                c.evict.store(true, Ordering::Relaxed);
                c.wake.notify_one();
                true
            }
            None => false,
        }
    }
}

/// Milliseconds since the connection was accepted; `NONE` for "not happening".
const NONE: u64 = u64::MAX;

/// What the watchdog of one connection watches.
struct ConnState {
    epoch: Instant,
    in_flight: AtomicUsize,
    /// When the connection last became idle (accepted, or its last response ended).
    idle_since: AtomicU64,
    /// When the first byte of the next request's headers arrived, while idle.
    head_since: AtomicU64,
    /// When a write to the client started to wait for room in the socket.
    write_blocked_since: AtomicU64,
    /// Whether a request was served (a fresh connection gets the header timeout, not keep-alive).
    served: AtomicBool,
    /// Set to close the connection as soon as it is idle (to make room under the limit).
    evict: AtomicBool,
    wake: Notify,
}

impl ConnState {
    fn new() -> Self {
        Self {
            epoch: Instant::now(),
            in_flight: AtomicUsize::new(0),
            idle_since: AtomicU64::new(0),
            head_since: AtomicU64::new(NONE),
            write_blocked_since: AtomicU64::new(NONE),
            served: AtomicBool::new(false),
            evict: AtomicBool::new(false),
            wake: Notify::new(),
        }
    }

    fn now(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(NONE - 1)
    }

    fn is_idle(&self) -> bool {
        self.in_flight.load(Ordering::Acquire) == 0
    }

    fn request_started(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.head_since.store(NONE, Ordering::Relaxed);
        self.served.store(true, Ordering::Relaxed);
        InFlight(self.clone())
    }

    /// When the connection must be closed, as things stand; `None` while a request is in flight
    /// and its writes are not stalled.
    fn deadline(&self, limits: &Limits) -> Option<(u64, &'static str)> {
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(NONE - 1);
        if !self.is_idle() {
            let blocked = self.write_blocked_since.load(Ordering::Relaxed);
            return (blocked != NONE)
                .then(|| (blocked.saturating_add(ms(limits.send_timeout)), "send"));
        }
        if self.evict.load(Ordering::Relaxed) {
            return Some((0, "evicted"));
        }
        let head = self.head_since.load(Ordering::Relaxed);
        if head != NONE {
            return Some((
                head.saturating_add(ms(limits.header_read_timeout)),
                "header",
            ));
        }
        let idle = self.idle_since.load(Ordering::Relaxed);
        if self.served.load(Ordering::Relaxed) {
            Some((
                idle.saturating_add(ms(limits.keep_alive_timeout)),
                "keep-alive",
            ))
        } else {
            Some((
                idle.saturating_add(ms(limits.header_read_timeout)),
                "header",
            ))
        }
    }

    /// Returns when the connection has outlived a timeout, naming it.
    async fn watch(&self, limits: &Limits) -> &'static str {
        loop {
            // Registered before the state is read, so no change between the two is missed.
            let woken = self.wake.notified();
            tokio::pin!(woken);
            woken.as_mut().enable();
            match self.deadline(limits) {
                Some((at, why)) => {
                    let now = self.now();
                    if now >= at {
                        return why;
                    }
                    let sleep = tokio::time::sleep(Duration::from_millis(at - now));
                    tokio::select! {
                        () = sleep => {}
                        () = woken => {}
                    }
                }
                None => woken.await,
            }
        }
    }
}

/// A request in flight on its connection: counted until its response body is done or dropped.
struct InFlight(Arc<ConnState>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let s = &self.0;
        if s.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
            s.idle_since.store(s.now(), Ordering::Relaxed);
            s.head_since.store(NONE, Ordering::Relaxed);
            s.wake.notify_one();
        }
    }
}

/// One accepted connection.
struct Conn {
    id: u64,
    remote: SocketAddr,
    router: Router,
    limits: Arc<Limits>,
    registry: Arc<Registry>,
    stop: CancellationToken,
}

impl Conn {
    async fn run(self, tcp: TcpStream, _permit: OwnedSemaphorePermit) {
        let state = Arc::new(ConnState::new());
        self.registry.insert(self.id, state.clone());
        let io = hyper_util::rt::TokioIo::new(Watched {
            inner: tcp,
            state: state.clone(),
        });
        let (router, limits, remote) = (self.router.clone(), self.limits.clone(), self.remote);
        let svc_state = state.clone();
        let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
            let guard = svc_state.request_started();
            handle(router.clone(), limits.clone(), remote, req, guard)
        });
        let conn = hyper::server::conn::http1::Builder::new()
            .keep_alive(true)
            .serve_connection(io, service);
        tokio::pin!(conn);
        let mut draining = false;
        loop {
            tokio::select! {
                res = conn.as_mut() => {
                    if let Err(e) = res {
                        tracing::debug!(error = %e, client = %self.remote, "connection ended with an error");
                    }
                    break;
                }
                why = state.watch(&self.limits) => {
                    tracing::debug!(client = %self.remote, timeout = why, "closing the connection");
                    break;
                }
                () = self.stop.cancelled(), if !draining => {
                    draining = true;
                    conn.as_mut().graceful_shutdown();
                }
            }
        }
        self.registry.remove(self.id);
    }
}

/// One request: refused at once when its declared body is over the limit (before a `100
/// Continue` is sent), else routed with its body under the body timer; a body timeout becomes
/// 408 whatever the handler made of the failed read.
async fn handle(
    router: Router,
    limits: Arc<Limits>,
    remote: SocketAddr,
    req: Request<hyper::body::Incoming>,
    guard: InFlight,
) -> Result<Response<Body>, Infallible> {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limits.max_body_bytes) {
        let e = ApiError::new(
            "payload-too-large",
            format!(
                "the request body is larger than {} bytes",
                limits.max_body_bytes
            ),
        );
        return Ok(track(close(e.into_response()), guard));
    }
    let timed_out = Arc::new(AtomicBool::new(false));
    let (mut parts, body) = req.into_parts();
    parts.extensions.insert(ConnectInfo(remote));
    let body = Body::new(TimedBody::new(body, &limits, timed_out.clone()));
    let mut router = router;
    let resp = match tower::Service::call(&mut router, Request::from_parts(parts, body)).await {
        Ok(r) => r,
        Err(never) => match never {},
    };
    if timed_out.load(Ordering::Acquire) {
        let e = ApiError::new(
            "request-timeout",
            format!(
                "the request body stalled for {} s or arrived slower than {} bytes/s",
                limits.body_timeout.as_secs(),
                limits.min_body_rate
            ),
        );
        return Ok(track(close(e.into_response()), guard));
    }
    Ok(track(resp, guard))
}

/// Asks hyper to close the connection after this response (its request body was not read).
fn close(mut resp: Response<Body>) -> Response<Body> {
    resp.headers_mut().insert(
        header::CONNECTION,
        axum::http::HeaderValue::from_static("close"),
    );
    resp
}

/// Keeps the request counted as in flight until its response body is sent.
fn track(resp: Response<Body>, guard: InFlight) -> Response<Body> {
    resp.map(|b| {
        Body::new(Tracked {
            inner: b,
            _guard: guard,
        })
    })
}

struct Tracked {
    inner: Body,
    _guard: InFlight,
}

impl http_body::Body for Tracked {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A request body that fails when its client stalls (`body_timeout`) or sends slower than
/// `min_body_rate` on average. Only time spent waiting for the client counts, so a handler that
/// stops reading on purpose (backpressure) does not make its client late.
struct TimedBody {
    inner: hyper::body::Incoming,
    stall: Duration,
    min_rate: u64,
    received: u64,
    /// Time spent waiting for data before the current wait.
    waited: Duration,
    /// When the current wait began.
    waiting_since: Option<Instant>,
    timer: Pin<Box<tokio::time::Sleep>>,
    timed_out: Arc<AtomicBool>,
}

/// The body read failed because its client was too slow.
#[derive(Debug, thiserror::Error)]
#[error("the request body arrived too slowly")]
struct BodyTooSlow;

impl TimedBody {
    fn new(inner: hyper::body::Incoming, limits: &Limits, timed_out: Arc<AtomicBool>) -> Self {
        Self {
            inner,
            stall: limits.body_timeout,
            min_rate: limits.min_body_rate,
            received: 0,
            waited: Duration::ZERO,
            waiting_since: None,
            timer: Box::pin(tokio::time::sleep(limits.body_timeout)),
            timed_out,
        }
    }

    /// How long the current wait may last: the stall limit, or less when the body's average
    /// rate would otherwise fall under the minimum (after a first `stall` of grace).
    fn allowance(&self) -> Duration {
        if self.min_rate == 0 {
            return self.stall;
        }
        let earned =
            self.stall + Duration::from_secs_f64(self.received as f64 / self.min_rate as f64);
        earned.saturating_sub(self.waited).min(self.stall)
    }
}

impl http_body::Body for TimedBody {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                if let Some(since) = this.waiting_since.take() {
                    this.waited += since.elapsed();
                }
                if let Some(Ok(f)) = &frame
                    && let Some(data) = f.data_ref()
                {
                    this.received += data.len() as u64;
                }
                Poll::Ready(frame.map(|r| r.map_err(Into::into)))
            }
            Poll::Pending => {
                let now = Instant::now();
                if this.waiting_since.is_none() {
                    this.waiting_since = Some(now);
                    let deadline = now + this.allowance();
                    this.timer.as_mut().reset(deadline.into());
                }
                ready!(this.timer.as_mut().poll(cx));
                this.timed_out.store(true, Ordering::Release);
                Poll::Ready(Some(Err(Box::new(BodyTooSlow))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The socket, noting for the watchdog when the next request's first bytes arrive and when a
/// write waits for the client.
struct Watched {
    inner: TcpStream,
    state: Arc<ConnState>,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let res = Pin::new(&mut self.inner).poll_read(cx, buf);
        let s = &self.state;
        if matches!(res, Poll::Ready(Ok(()))) && buf.filled().len() > before && s.is_idle() {
            let now = s.now();
            if s.head_since
                .compare_exchange(NONE, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
            {
                s.wake.notify_one();
            }
        }
        res
    }
}

impl Watched {
    fn note_write<T>(&self, res: &Poll<io::Result<T>>) {
        let s = &self.state;
        match res {
            Poll::Pending => {
                let now = s.now();
                if s.write_blocked_since
                    .compare_exchange(NONE, now, Ordering::Relaxed, Ordering::Relaxed)
                    .is_ok()
                {
                    s.wake.notify_one();
                }
            }
            Poll::Ready(_) => s.write_blocked_since.store(NONE, Ordering::Relaxed),
        }
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let res = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.note_write(&res);
        res
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let res = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.note_write(&res);
        res
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let res = Pin::new(&mut self.inner).poll_flush(cx);
        self.note_write(&res);
        res
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
