//! A small Server-Sent Events reader over reqwest, for the tests.

use std::time::Duration;

use futures_util::StreamExt;
use serde_json::Value;

/// One received event.
#[derive(Debug, Clone)]
pub struct SseMessage {
    pub id: Option<String>,
    pub event: String,
    pub data: String,
}

impl SseMessage {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.data).expect("event data is JSON")
    }
}

pub struct SseClient {
    stream: futures_util::stream::BoxStream<'static, reqwest::Result<bytes::Bytes>>,
    buf: String,
    pub status: u16,
}

impl SseClient {
    /// Opens `url` with the bearer token and optional Last-Event-ID.
    pub async fn connect(url: &str, token: &str, last_event_id: Option<&str>) -> Self {
        let mut req = reqwest::Client::new()
            .get(url)
            .bearer_auth(token)
            .header("accept", "text/event-stream");
        if let Some(id) = last_event_id {
            req = req.header("last-event-id", id);
        }
        let resp = req.send().await.expect("connect");
        let status = resp.status().as_u16();
        Self {
            stream: resp.bytes_stream().boxed(),
            buf: String::new(),
            status,
        }
    }

    /// The next event (skipping comments/heartbeats), or None after `wait`.
    pub async fn next(&mut self, wait: Duration) -> Option<SseMessage> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if let Some(pos) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..pos + 2).collect();
                let mut msg = SseMessage {
                    id: None,
                    event: "message".into(),
                    data: String::new(),
                };
                let mut has_data = false;
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("id:") {
                        msg.id = Some(v.trim().to_owned());
                    } else if let Some(v) = line.strip_prefix("event:") {
                        msg.event = v.trim().to_owned();
                    } else if let Some(v) = line.strip_prefix("data:") {
                        if has_data {
                            msg.data.push('\n');
                        }
                        msg.data.push_str(v.strip_prefix(' ').unwrap_or(v));
                        has_data = true;
                    }
                }
                if has_data {
                    return Some(msg);
                }
                continue;
            }
            let chunk = tokio::time::timeout_at(deadline, self.stream.next())
                .await
                .ok()??;
            self.buf
                .push_str(&String::from_utf8_lossy(&chunk.expect("stream chunk")));
        }
    }

    /// Collects events until `n` arrived or `wait` passed.
    pub async fn take(&mut self, n: usize, wait: Duration) -> Vec<SseMessage> {
        let deadline = tokio::time::Instant::now() + wait;
        let mut out = Vec::new();
        while out.len() < n {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next(left).await {
                Some(m) => out.push(m),
                None => break,
            }
        }
        out
    }
}
