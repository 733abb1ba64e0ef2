//! Pushing MWI counts to Asterisk (ARI, AMI, SIP NOTIFY). A dispatcher marks (target, mailbox)
//! pairs as due when a mailbox changes; a pusher reads the mailbox's *current* counts and sends
//! them. Pushes coalesce (only the newest counts matter), are retried with backoff, and survive
//! restarts. When the store cannot be read nothing is sent: never a negative or guessed count.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::ami::AmiConnection;
use super::queue::{self, Backoff, Deliveries, OnShutdown, Outcome, QueueCounters, SenderSettings};
use super::sip::{self, SipUri};
use crate::config::MwiConfig;
use crate::domain::{MailboxAddress, MwiCounts};
use crate::store::{MwiPushJob, MwiTargetKind, MwiTargetRecord, SqlStore, StoreError};

/// Starts the dispatcher and the pusher; with `resync_on_start`, current counts of every mailbox
/// are queued for every target first (before the caller starts taking requests, so a resync never
/// lands after changes made through this node).
pub async fn start(
    store: Arc<SqlStore>,
    config: MwiConfig,
    counters: Arc<QueueCounters>,
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
    let dispatcher = store.clone();
    let due = queue::spawn_dispatcher(
        Pusher::NAME,
        move || {
            let store = dispatcher.clone();
            async move { store.dispatch_mwi_events(500).await }
        },
        wake,
        shutdown.clone(),
        tracker,
    );
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
    let settings = SenderSettings {
        concurrency: config.concurrency as usize,
        backoff: Backoff {
            base_ms: config.retry_base_ms,
            max_ms: config.retry_max_ms,
        },
        // The next push carries the newest counts anyway, and a SIP try can take 32 s.
        on_shutdown: OnShutdown::Abandon,
    };
    let pusher = Pusher {
        store,
        config,
        http,
        ami: Mutex::new(HashMap::new()),
        backoff: settings.backoff,
    };
    queue::spawn_sender(pusher, settings, counters, due, shutdown, tracker);
}

type AmiPool = Mutex<HashMap<String, Arc<tokio::sync::Mutex<Option<AmiConnection>>>>>;

/// The MWI push queue.
struct Pusher {
    store: Arc<SqlStore>,
    config: MwiConfig,
    http: reqwest::Client,
    ami: AmiPool,
    backoff: Backoff,
}

impl Deliveries for Pusher {
    type Job = MwiPushJob;
    const NAME: &'static str = "MWI push";

    async fn claim(&self, now_ms: i64, limit: u32) -> Result<Vec<MwiPushJob>, StoreError> {
        // A SIP transaction may take up to timer F (32 s).
        self.store.claim_mwi_pushes(now_ms, 40_000, limit).await
    }

    async fn deliver(&self, job: MwiPushJob) -> Outcome {
        self.push(job).await
    }
}

impl Pusher {
    async fn push(&self, job: MwiPushJob) -> Outcome {
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
                return self
                    .finish(&job, None, Some(&format!("store unavailable: {e}")))
                    .await;
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
                    match self.store.forget_mwi_push(&job).await {
                        Ok(_) => Outcome::Delivered,
                        Err(e) => {
                            tracing::warn!(error = %e, "cannot clear MWI push state");
                            Outcome::Unrecorded
                        }
                    }
                } else {
                    self.finish(&job, Some(counts.version.max(job.wanted_version)), None)
                        .await
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
                self.finish(&job, None, Some(&e)).await
            }
        }
    }

    /// Records a try: `pushed` the version it delivered, or the error it failed with (an MWI push
    /// is never given up: it is retried until it lands or newer counts replace it).
    async fn finish(&self, job: &MwiPushJob, pushed: Option<i64>, error: Option<&str>) -> Outcome {
        let retry_at = self.backoff.retry_at_ms(job.attempts);
        match self
            .store
            .finish_mwi_push(job, pushed, error, retry_at)
            .await
        {
            Ok(()) if pushed.is_some() => Outcome::Delivered,
            Ok(()) => Outcome::Retrying,
            Err(e) => {
                tracing::warn!(error = %e, "cannot record an MWI push");
                Outcome::Unrecorded
            }
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
