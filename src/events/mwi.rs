//! Pushing MWI counts to Asterisk (ARI, AMI, SIP NOTIFY). A dispatcher marks (target, mailbox)
//! pairs as due when a mailbox changes; a pusher reads the mailbox's *current* counts and sends
//! them. Pushes coalesce (only the newest counts matter), are retried with backoff, and survive
//! restarts. When the store cannot be read nothing is sent: never a negative or guessed count.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use rand::Rng;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::ami::AmiConnection;
use super::sip::{self, SipUri};
use crate::config::MwiConfig;
use crate::domain::{MailboxAddress, MwiCounts};
use crate::store::{MwiPushJob, MwiTargetKind, MwiTargetRecord, SqlStore};

/// Starts the dispatcher and the pusher; with `resync_on_start`, current counts of every mailbox
/// are queued for every target first (before the caller starts taking requests, so a resync never
/// lands after changes made through this node).
pub async fn start(
    store: Arc<SqlStore>,
    config: MwiConfig,
    wake: watch::Receiver<u64>,
    shutdown: CancellationToken,
    tracker: &TaskTracker,
) {
    if config.resync_on_start {
        match store.resync_mwi(None, None).await {
            Ok(n) => tracing::info!(
                pushes = n,
                "queued MWI resync of every mailbox to every target"
            ),
            Err(e) => tracing::warn!(error = %e, "MWI resync at start failed"),
        }
    }
    let (due_tx, due_rx) = watch::channel(0u64);
    tracker.spawn(dispatch_loop(store.clone(), wake, due_tx, shutdown.clone()));
    tracker.spawn(push_loop(store, config, due_rx, shutdown));
}

async fn dispatch_loop(
    store: Arc<SqlStore>,
    mut wake: watch::Receiver<u64>,
    due: watch::Sender<u64>,
    shutdown: CancellationToken,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        loop {
            match store.dispatch_mwi_events(500).await {
                Ok(0) => break,
                Ok(_) => due.send_modify(|n| *n = n.wrapping_add(1)),
                Err(e) => {
                    tracing::warn!(error = %e, "MWI dispatch failed; retrying");
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

type AmiPool = Mutex<HashMap<String, Arc<tokio::sync::Mutex<Option<AmiConnection>>>>>;

struct Pusher {
    store: Arc<SqlStore>,
    config: MwiConfig,
    http: reqwest::Client,
    ami: AmiPool,
}

async fn push_loop(
    store: Arc<SqlStore>,
    config: MwiConfig,
    mut due: watch::Receiver<u64>,
    shutdown: CancellationToken,
) {
    let http = match reqwest::Client::builder()
        .timeout(Duration::from_secs(config.timeout_secs.max(1)))
        .user_agent(concat!("voxmail/", env!("CARGO_PKG_VERSION")))
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "cannot build the ARI HTTP client; MWI pushes are off");
            return;
        }
    };
    let pusher = Pusher {
        store,
        config,
        http,
        ami: Mutex::new(HashMap::new()),
    };
    let concurrency = pusher.config.concurrency.max(1) as usize;
    // A SIP transaction may take up to timer F (32 s).
    let lease_ms = 40_000;
    let mut tick = tokio::time::interval(Duration::from_millis(
        (pusher.config.retry_base_ms / 2).clamp(50, 1000),
    ));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let now_ms = chrono::Utc::now().timestamp_millis();
        match pusher
            .store
            .claim_mwi_pushes(now_ms, lease_ms, (concurrency * 4) as u32)
            .await
        {
            Ok(jobs) if !jobs.is_empty() => {
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = futures_util::stream::iter(jobs)
                        .for_each_concurrent(concurrency, |job| pusher.push(job)) => {}
                }
                continue;
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "cannot claim MWI pushes"),
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            r = due.changed() => if r.is_err() { return },
            _ = tick.tick() => {}
        }
    }
}

impl Pusher {
    fn backoff_ms(&self, attempts: u32) -> i64 {
        let exp = self
            .config
            .retry_base_ms
            .saturating_mul(1u64 << attempts.min(30))
            .min(self.config.retry_max_ms);
        let jitter: f64 = rand::thread_rng().gen_range(0.5..1.5);
        (exp as f64 * jitter) as i64
    }

    async fn push(&self, job: MwiPushJob) {
        let (counts, gone) = match self.store.counts_by_id(job.mailbox_id).await {
            Ok(Some(c)) => (c, false),
            // The mailbox was deleted: its lamp goes off.
            Ok(None) => (
                MwiCounts {
                    version: job.wanted_version,
                    ..MwiCounts::default()
                },
                true,
            ),
            Err(e) => {
                // Never push a guess: try again once the store answers.
                self.finish(&job, None, Some(&format!("store unavailable: {e}")))
                    .await;
                return;
            }
        };
        let result = match job.target.kind {
            MwiTargetKind::Ari => self.push_ari(&job.target, &job.address, &counts).await,
            MwiTargetKind::Ami => self.push_ami(&job.target, &job.address, &counts).await,
            MwiTargetKind::Sip => match SipUri::parse(&job.target.url) {
                Ok(uri) => sip::notify(&uri, &self.config.sip_from_user, &job.address, &counts)
                    .await
                    .map(|_| ()),
                Err(e) => Err(e),
            },
        };
        match result {
            Ok(()) => {
                tracing::debug!(
                    target.id = %job.target.id,
                    mailbox = %job.address,
                    mwi.new = counts.new,
                    mwi.old = counts.old,
                    "MWI pushed"
                );
                if gone {
                    if let Err(e) = self.store.forget_mwi_push(&job).await {
                        tracing::warn!(error = %e, "cannot clear MWI push state");
                    }
                } else {
                    self.finish(&job, Some(counts.version.max(job.wanted_version)), None)
                        .await;
                }
            }
            Err(e) => {
                tracing::info!(
                    target.id = %job.target.id,
                    target.kind = job.target.kind.as_str(),
                    mailbox = %job.address,
                    attempt = job.attempts + 1,
                    error = %e,
                    "MWI push failed"
                );
                self.finish(&job, None, Some(&e)).await;
            }
        }
    }

    async fn finish(&self, job: &MwiPushJob, pushed: Option<i64>, error: Option<&str>) {
        let retry_at = chrono::Utc::now().timestamp_millis() + self.backoff_ms(job.attempts);
        if let Err(e) = self
            .store
            .finish_mwi_push(job, pushed, error, retry_at)
            .await
        {
            tracing::warn!(error = %e, "cannot record an MWI push");
        }
    }

    async fn push_ari(
        &self,
        t: &MwiTargetRecord,
        address: &MailboxAddress,
        counts: &MwiCounts,
    ) -> Result<(), String> {
        let url = format!("{}/ari/mailboxes/{address}", t.url.trim_end_matches('/'));
        let resp = self
            .http
            .put(url)
            .basic_auth(&t.username, Some(&t.secret))
            .query(&[
                ("oldMessages", counts.old.to_string()),
                ("newMessages", counts.new.to_string()),
            ])
            .send()
            .await
            .map_err(|e| format!("ARI request failed: {e}"))?;
        if resp.status().is_success() {
            Ok(())
        } else {
            Err(format!("ARI answered {}", resp.status()))
        }
    }

    async fn push_ami(
        &self,
        t: &MwiTargetRecord,
        address: &MailboxAddress,
        counts: &MwiCounts,
    ) -> Result<(), String> {
        let slot = {
            let mut pool = self
                .ami
                .lock()
                .map_err(|_| "AMI pool poisoned".to_owned())?;
            pool.entry(t.id.clone()).or_default().clone()
        };
        let mut conn = slot.lock().await;
        // One retry on a fresh connection: a kept connection may have been closed by Asterisk.
        for fresh in [false, true] {
            if conn.is_none() || fresh {
                *conn = Some(AmiConnection::connect(&t.url, &t.username, &t.secret).await?);
            }
            let Some(c) = conn.as_mut() else { continue };
            match c.mwi_update(address, counts).await {
                Ok(()) => return Ok(()),
                Err(e) if fresh => {
                    *conn = None;
                    return Err(e);
                }
                Err(_) => {}
            }
        }
        Err("AMI push failed".into())
    }
}
