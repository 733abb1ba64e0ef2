//! The HTTP listener (`[http]`): address, body size, connection limits and timeouts.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

/// HTTP listener settings.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Address and port to listen on.
    pub listen: SocketAddr,
    /// Largest request body accepted (deposits and greetings), in bytes.
    pub max_body_bytes: u64,
    /// Seconds in-flight requests may take to finish after a shutdown signal.
    pub shutdown_grace_secs: u64,
    /// Most connections open at once; a connection beyond them is answered 503 and closed (an
    /// idle kept-alive connection is closed first to make room). Lowered at start-up to fit the
    /// process's open-file limit.
    pub max_connections: u32,
    /// Seconds a client has to send a request's headers, from its first byte (or from the accept,
    /// for a connection's first request). A slower client is disconnected.
    pub header_read_timeout_secs: u64,
    /// Seconds an idle kept-alive connection stays open waiting for its next request.
    pub keep_alive_timeout_secs: u64,
    /// Longest pause, in seconds, between two pieces of a request body; a longer stall ends the
    /// request with 408 `request-timeout`. Time the server itself is not reading (an upload
    /// waiting for a decoder) does not count.
    pub body_timeout_secs: u64,
    /// Slowest average body rate accepted, in bytes per second, once a body has taken longer than
    /// `body_timeout_secs`: a slower upload ends with 408 `request-timeout`. 0 = no minimum.
    pub min_body_rate_bytes: u64,
    /// Longest time, in seconds, a response may wait for the client to take more bytes (a
    /// client that stops reading a download or an event stream is disconnected).
    pub send_timeout_secs: u64,
    /// Most uploads (deposits, greetings) in flight at once with one API key; more are answered
    /// 429 `too-many-uploads`. 0 = no limit.
    pub max_uploads_per_key: u32,
    /// Most uploads in flight at once from one client address; more are answered 429
    /// `too-many-uploads`. 0 = no limit (behind a reverse proxy every client has its address).
    pub max_uploads_per_source: u32,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            max_body_bytes: 64 * 1024 * 1024,
            shutdown_grace_secs: 30,
            max_connections: 4096,
            header_read_timeout_secs: 15,
            keep_alive_timeout_secs: 60,
            body_timeout_secs: 30,
            min_body_rate_bytes: 1024,
            send_timeout_secs: 60,
            max_uploads_per_key: 128,
            max_uploads_per_source: 64,
        }
    }
}
