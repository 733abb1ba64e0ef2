//! Webhook delivery: a dispatcher turns outbox events into durable delivery rows (exactly once, by a
//! cursor moved in the same transaction), and a sender leases due rows and POSTs them, signed, with
//! exponential backoff and jitter until they are accepted or too old.

use std::sync::Arc;
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use sha2::Sha256;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::queue::{self, Backoff, Deliveries, OnShutdown, Outcome, QueueCounters, SenderSettings};
use crate::config::WebhooksConfig;
use crate::domain::now_secs;
use crate::store::{DeliveryJob, SqlStore, StoreError};

/// Header with the HMAC-SHA256 signature: `sha256=<hex of HMAC(secret, "<timestamp>.<body>")>`.
pub const SIGNATURE_HEADER: &str = "x-voxmail-signature";
/// Header with the Unix timestamp that was signed.
pub const TIMESTAMP_HEADER: &str = "x-voxmail-timestamp";

/// The signature of a body sent at `timestamp`.
pub fn sign(secret: &str, timestamp: i64, body: &str) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes())
        .expect("HMAC takes keys of any length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body.as_bytes());
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Starts the dispatcher and the sender, which tallies its tries in `counters`.
pub fn start(
    store: Arc<SqlStore>,
    config: WebhooksConfig,
    counters: Arc<QueueCounters>,
    wake: watch::Receiver<u64>,
    shutdown: CancellationToken,
    tracker: &TaskTracker,
) {
    let dispatcher = store.clone();
    let dispatched = queue::spawn_dispatcher(
        Webhooks::NAME,
        move || {
            let store = dispatcher.clone();
            async move { store.dispatch_webhook_events(500).await }
        },
        wake,
        shutdown.clone(),
        tracker,
    );
    let client = match reqwest::Client::builder()
        .timeout(Duration::from_secs(config.timeout_secs.max(1)))
        .user_agent(concat!("voxmail/", env!("CARGO_PKG_VERSION")))
        .redirect(reqwest::redirect::Policy::none())
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "cannot build the webhook HTTP client; webhooks are off");
            return;
        }
    };
    let settings = SenderSettings {
        concurrency: config.concurrency as usize,
        backoff: backoff(&config),
        on_shutdown: OnShutdown::Finish,
    };
    let webhooks = Webhooks {
        store,
        client,
        config,
    };
    queue::spawn_sender(webhooks, settings, counters, dispatched, shutdown, tracker);
}

fn backoff(config: &WebhooksConfig) -> Backoff {
    Backoff {
        base_ms: config.retry_base_ms,
        max_ms: config.retry_max_ms,
    }
}

/// The webhook deliveries queue.
struct Webhooks {
    store: Arc<SqlStore>,
    client: reqwest::Client,
    config: WebhooksConfig,
}

impl Deliveries for Webhooks {
    type Job = DeliveryJob;
    const NAME: &'static str = "webhook";

    async fn claim(&self, now_ms: i64, limit: u32) -> Result<Vec<DeliveryJob>, StoreError> {
        let lease_ms = (self.config.timeout_secs.max(1) * 1000 * 3) as i64;
        self.store.claim_deliveries(now_ms, lease_ms, limit).await
    }

    async fn deliver(&self, job: DeliveryJob) -> Outcome {
        deliver(&self.client, &self.store, &self.config, job).await
    }
}

async fn deliver(
    client: &reqwest::Client,
    store: &SqlStore,
    config: &WebhooksConfig,
    job: DeliveryJob,
) -> Outcome {
    let ts = now_secs();
    let signature = sign(&job.secret, ts, &job.payload);
    let started = Instant::now();
    let at_ms = chrono::Utc::now().timestamp_millis();
    let result = client
        .post(&job.url)
        .header("content-type", "application/json")
        .header(SIGNATURE_HEADER, signature)
        .header(TIMESTAMP_HEADER, ts.to_string())
        .header("x-voxmail-event", job.event_type.clone())
        .header("x-voxmail-delivery", job.id.to_string())
        .body(job.payload.clone())
        .send()
        .await;
    let duration_ms = started.elapsed().as_millis() as i64;
    let (status, error) = match &result {
        Ok(r) if r.status().is_success() => (Some(r.status().as_u16()), None),
        Ok(r) => (
            Some(r.status().as_u16()),
            Some(format!("receiver answered {}", r.status())),
        ),
        Err(e) => (None, Some(describe(e))),
    };
    let delivered = error.is_none();
    let too_old = now_secs() - job.created_at >= config.max_age_secs as i64;
    let retry_at = (!delivered && !too_old).then(|| backoff(config).retry_at_ms(job.attempts));
    if let Some(err) = &error {
        tracing::info!(
            webhook.id = %job.webhook_id,
            delivery.id = job.id,
            attempt = job.attempts + 1,
            error = %err,
            dead = retry_at.is_none(),
            "webhook delivery failed"
        );
    }
    let recorded = store
        .finish_attempt(
            &job,
            at_ms,
            duration_ms,
            status,
            error.as_deref(),
            delivered,
            retry_at,
        )
        .await;
    match recorded {
        // The lease expires and the delivery is tried again: at-least-once.
        Err(e) => {
            tracing::warn!(error = %e, delivery.id = job.id, "cannot record a webhook attempt");
            Outcome::Unrecorded
        }
        Ok(()) if delivered => Outcome::Delivered,
        Ok(()) if retry_at.is_some() => Outcome::Retrying,
        Ok(()) => Outcome::GaveUp,
    }
}

fn describe(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "timed out".into()
    } else if e.is_connect() {
        "connection failed".into()
    } else {
        let mut s = e.to_string();
        let mut src = std::error::Error::source(e);
        while let Some(inner) = src {
            s.push_str(": ");
            s.push_str(&inner.to_string());
            src = inner.source();
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_is_hmac_sha256_of_timestamp_dot_body() {
        // printf '1700000000.{}' | openssl dgst -sha256 -hmac s3cret
        assert_eq!(
            sign("s3cret", 1_700_000_000, "{}"),
            "sha256=97926816e98fbb41ccb1673225ff29a2f35369099990e1b1561651e7bd097ebf"
        );
    }
}
