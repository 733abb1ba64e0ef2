//! Webhook delivery: a dispatcher turns outbox events into durable delivery rows (exactly once, by a
//! cursor moved in the same transaction), and a sender leases due rows and POSTs them, signed, with
//! exponential backoff and jitter until they are accepted or too old.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use hmac::{Hmac, Mac};
use rand::Rng;
use sha2::Sha256;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::WebhooksConfig;
use crate::domain::now_secs;
use crate::store::{DeliveryJob, SqlStore};

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

/// Starts the dispatcher and the sender.
pub fn start(
    store: Arc<SqlStore>,
    config: WebhooksConfig,
    wake: watch::Receiver<u64>,
    shutdown: CancellationToken,
    tracker: &TaskTracker,
) {
    let (sent_tx, sent_rx) = watch::channel(0u64);
    tracker.spawn(dispatch_loop(
        store.clone(),
        wake,
        sent_tx,
        shutdown.clone(),
    ));
    tracker.spawn(send_loop(store, config, sent_rx, shutdown));
}

async fn dispatch_loop(
    store: Arc<SqlStore>,
    mut wake: watch::Receiver<u64>,
    dispatched: watch::Sender<u64>,
    shutdown: CancellationToken,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        loop {
            match store.dispatch_webhook_events(500).await {
                Ok(0) => break,
                Ok(_) => dispatched.send_modify(|n| *n = n.wrapping_add(1)),
                Err(e) => {
                    tracing::warn!(error = %e, "webhook dispatch failed; retrying");
                    break;
                }
            }
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            r = wake.changed() => if r.is_err() { return },
            _ = tick.tick() => {}
        }
    }
}

fn backoff_ms(config: &WebhooksConfig, attempts: u32) -> i64 {
    let exp = config
        .retry_base_ms
        .saturating_mul(1u64 << attempts.min(30))
        .min(config.retry_max_ms);
    let jitter: f64 = rand::thread_rng().gen_range(0.5..1.5);
    (exp as f64 * jitter) as i64
}

async fn send_loop(
    store: Arc<SqlStore>,
    config: WebhooksConfig,
    mut dispatched: watch::Receiver<u64>,
    shutdown: CancellationToken,
) {
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
    let concurrency = config.concurrency.max(1) as usize;
    let lease_ms = (config.timeout_secs.max(1) * 1000 * 3) as i64;
    let mut tick = tokio::time::interval(Duration::from_millis(
        (config.retry_base_ms / 2).clamp(50, 1000),
    ));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let now_ms = chrono::Utc::now().timestamp_millis();
        match store
            .claim_deliveries(now_ms, lease_ms, (concurrency * 4) as u32)
            .await
        {
            Ok(jobs) if !jobs.is_empty() => {
                let sent = jobs.len();
                futures_util::stream::iter(jobs)
                    .for_each_concurrent(concurrency, |job| {
                        let client = &client;
                        let store = &store;
                        let config = &config;
                        async move { deliver(client, store, config, job).await }
                    })
                    .await;
                tracing::debug!(deliveries = sent, "webhook deliveries attempted");
                // More may be due right away (the next of each mailbox).
                continue;
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "cannot claim webhook deliveries"),
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            r = dispatched.changed() => if r.is_err() { return },
            _ = tick.tick() => {}
        }
    }
}

async fn deliver(
    client: &reqwest::Client,
    store: &SqlStore,
    config: &WebhooksConfig,
    job: DeliveryJob,
) {
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
    let retry_at = (!delivered && !too_old)
        .then(|| chrono::Utc::now().timestamp_millis() + backoff_ms(config, job.attempts));
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
    if let Err(e) = store
        .finish_attempt(
            &job,
            at_ms,
            duration_ms,
            status,
            error.as_deref(),
            delivered,
            retry_at,
        )
        .await
    {
        // The lease expires and the delivery is tried again: at-least-once.
        tracing::warn!(error = %e, delivery.id = job.id, "cannot record a webhook attempt");
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

    #[test]
    fn backoff_grows_and_is_capped() {
        let c = WebhooksConfig {
            retry_base_ms: 1000,
            retry_max_ms: 8000,
            ..WebhooksConfig::default()
        };
        assert!((500..=1500).contains(&backoff_ms(&c, 0)));
        assert!((2000..=6000).contains(&backoff_ms(&c, 2)));
        assert!(backoff_ms(&c, 20) <= 12_000);
    }
}
