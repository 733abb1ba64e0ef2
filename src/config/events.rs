//! Event delivery: the outbox (`[events]`), webhooks (`[webhooks]`) and MWI pushes (`[mwi]`).

use serde::{Deserialize, Serialize};

/// Event outbox settings.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EventsConfig {
    /// How long events are kept for replay, in seconds (default 7 days).
    pub retention_secs: u64,
    /// How often the outbox is polled for changes made by other processes or nodes, in ms.
    pub poll_interval_ms: u64,
    /// Seconds between SSE heartbeat comments, so proxies keep idle streams open.
    pub heartbeat_secs: u64,
}

impl Default for EventsConfig {
    fn default() -> Self {
        Self {
            retention_secs: 7 * 24 * 3600,
            poll_interval_ms: 1000,
            heartbeat_secs: 15,
        }
    }
}

/// Webhook delivery settings.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebhooksConfig {
    /// How long a delivery is retried before it is marked dead, in seconds (default 24 h).
    pub max_age_secs: u64,
    /// Delay before the first retry, in ms; it doubles with each attempt (with ±50 % jitter).
    pub retry_base_ms: u64,
    /// Longest delay between retries, in ms.
    pub retry_max_ms: u64,
    /// Seconds a receiver has to answer one delivery.
    pub timeout_secs: u64,
    /// Deliveries sent at the same time.
    pub concurrency: u32,
}

impl Default for WebhooksConfig {
    fn default() -> Self {
        Self {
            max_age_secs: 24 * 3600,
            retry_base_ms: 1000,
            retry_max_ms: 3_600_000,
            timeout_secs: 10,
            concurrency: 16,
        }
    }
}

/// MWI push settings.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MwiConfig {
    /// Push the current counts of every mailbox to every target when the server starts.
    pub resync_on_start: bool,
    /// Delay before the first retry of a failed push, in ms; doubles per attempt (±50 % jitter).
    pub retry_base_ms: u64,
    /// Longest delay between retries, in ms.
    pub retry_max_ms: u64,
    /// Seconds an ARI request may take.
    pub timeout_secs: u64,
    /// Pushes sent at the same time.
    pub concurrency: u32,
    /// User part of the From and Contact of SIP NOTIFYs.
    pub sip_from_user: String,
}

impl Default for MwiConfig {
    fn default() -> Self {
        Self {
            resync_on_start: true,
            retry_base_ms: 1000,
            retry_max_ms: 60_000,
            timeout_secs: 10,
            concurrency: 16,
            sip_from_user: "voxmail".into(),
        }
    }
}
