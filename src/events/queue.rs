//! The delivery queue every outbox uses — webhooks, MWI pushes and e-mail (and the SIP NOTIFYs
//! of subscriptions to come). Jobs are rows: a node leases due ones (`claim`), tries them with
//! bounded concurrency, and records each outcome under its lease (`deliver`); a failed try is
//! due again after [`Backoff`], and a lease that runs out (a node died mid-try) makes the job due
//! for any node: delivery is at least once. Where jobs come from outbox events, a dispatcher
//! moves events into jobs exactly once (a cursor moved in the same transaction) and wakes the
//! sender.
//!
//! What stays per queue: how a job is claimed and recorded (its table), how it is tried (HTTP,
//! AMI, SIP, SMTP), and when it is given up (each queue's `max_age_secs`, or never for MWI,
//! whose next push carries the newest counts anyway).

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures_util::StreamExt;
use rand::Rng;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument as _;

use crate::store::StoreError;

/// Retry timing, the same for every queue: the delay doubles from `base_ms` with each failed try,
/// up to `max_ms`, times a random factor in [0.5, 1.5) so that nodes do not retry in step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    /// Delay after the first failed try, in ms.
    pub base_ms: u64,
    /// Longest delay, in ms (before the jitter).
    pub max_ms: u64,
}

impl Backoff {
    /// The delay before the next try after `attempts` failed ones, in ms.
    pub fn delay_ms(&self, attempts: u32) -> i64 {
        let exp = self
            .base_ms
            .saturating_mul(1u64 << attempts.min(30))
            .min(self.max_ms);
        let jitter: f64 = rand::thread_rng().gen_range(0.5..1.5);
        (exp as f64 * jitter) as i64
    }

    /// When (Unix ms) a job that failed `attempts` times before this try is due again.
    pub fn retry_at_ms(&self, attempts: u32) -> i64 {
        chrono::Utc::now().timestamp_millis() + self.delay_ms(attempts)
    }

    /// How often a sender looks for jobs whose retry has come due.
    fn poll(&self) -> Duration {
        Duration::from_millis((self.base_ms / 2).clamp(50, 1000))
    }
}

/// What a sender does with tries in flight when the node shuts down.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnShutdown {
    /// Let them finish (each is bounded by its queue's timeout): a try abandoned after the peer
    /// took it but before it was recorded would be delivered twice.
    Finish,
    /// Drop them; their leases run out and any node tries them again. For pushes where a second
    /// delivery is harmless and a try can take long (a SIP transaction: up to 32 s).
    Abandon,
}

/// How a queue's sender runs.
#[derive(Clone, Copy, Debug)]
pub struct SenderSettings {
    /// Tries in flight at once on this node.
    pub concurrency: usize,
    /// Retry timing (also sets how often due retries are looked for).
    pub backoff: Backoff,
    /// Tries in flight at shutdown.
    pub on_shutdown: OnShutdown,
}

/// What became of one try, as the queue's counters tally it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The peer took it.
    Delivered,
    /// It failed and is due again after the backoff.
    Retrying,
    /// It failed for good (a permanent error, or the queue's `max_age_secs` passed).
    GaveUp,
    /// Not needed any more (its message or mailbox was deleted first).
    Dropped,
    /// The outcome could not be recorded (the store did not answer, or the lease was lost): the
    /// lease runs out and the job is tried again.
    Unrecorded,
}

impl Outcome {
    /// Every outcome, in the order [`QueueCounters::snapshot`] gives them.
    pub const ALL: [Outcome; 5] = [
        Outcome::Delivered,
        Outcome::Retrying,
        Outcome::GaveUp,
        Outcome::Dropped,
        Outcome::Unrecorded,
    ];

    /// Its name in /metrics (`outcome` label).
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Delivered => "delivered",
            Outcome::Retrying => "retrying",
            Outcome::GaveUp => "gave_up",
            Outcome::Dropped => "dropped",
            Outcome::Unrecorded => "unrecorded",
        }
    }
}

/// One queue's tries on this node since it started: how many ended each way, and how many are
/// in flight now.
#[derive(Debug, Default)]
pub struct QueueCounters {
    outcomes: [AtomicU64; 5],
    in_flight: AtomicU64,
}

impl QueueCounters {
    fn count(&self, outcome: Outcome) {
        self.outcomes[outcome as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Tries that ended each way, in [`Outcome::ALL`]'s order.
    pub fn snapshot(&self) -> [u64; 5] {
        std::array::from_fn(|i| self.outcomes[i].load(Ordering::Relaxed))
    }

    /// Tries running now.
    pub fn in_flight(&self) -> u64 {
        self.in_flight.load(Ordering::Relaxed)
    }
}

/// The counters of every queue a node runs.
#[derive(Debug, Default)]
pub struct DeliveryCounters {
    /// New-message and other notification e-mails.
    pub email: Arc<QueueCounters>,
    /// Webhook deliveries.
    pub webhooks: Arc<QueueCounters>,
    /// MWI pushes to ARI, AMI and SIP targets.
    pub mwi: Arc<QueueCounters>,
}

/// One kind of queued delivery: how its due jobs are leased, and how one is tried and recorded.
pub trait Deliveries: Send + Sync + 'static {
    /// A leased job.
    type Job: Send;
    /// The queue's name in logs ("webhook", "MWI push", "email").
    const NAME: &'static str;

    /// Leases up to `limit` jobs due at `now_ms` (Unix ms) for this node.
    fn claim(
        &self,
        now_ms: i64,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<Self::Job>, StoreError>> + Send;

    /// Tries one job and records the outcome under its lease (when recording fails the lease runs
    /// out and the job is tried again); returns what became of it.
    fn deliver(&self, job: Self::Job) -> impl Future<Output = Outcome> + Send;

    /// Runs before each look for due jobs (e-mail sweeps finished jobs here); nothing by default.
    fn housekeep(&self) -> impl Future<Output = ()> + Send {
        async {}
    }
}

/// Runs a queue's sender until `shutdown`: claims due jobs (four per slot of concurrency), tries
/// them, and claims again at once while it finds any (the next of a mailbox may be due now);
/// otherwise waits for `wake` (new jobs) or the backoff's poll interval (retries come due).
/// Every try is tallied in `counters`.
pub fn spawn_sender<Q: Deliveries>(
    queue: Q,
    settings: SenderSettings,
    counters: Arc<QueueCounters>,
    mut wake: watch::Receiver<u64>,
    shutdown: CancellationToken,
    tracker: &TaskTracker,
) {
    let sender = async move {
        let concurrency = settings.concurrency.max(1);
        let mut tick = tokio::time::interval(settings.backoff.poll());
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            queue.housekeep().await;
            let now_ms = chrono::Utc::now().timestamp_millis();
            match queue.claim(now_ms, (concurrency * 4) as u32).await {
                Ok(jobs) if !jobs.is_empty() => {
                    let tries =
                        futures_util::stream::iter(jobs).for_each_concurrent(concurrency, |job| {
                            let (queue, counters) = (&queue, &counters);
                            async move {
                                counters.in_flight.fetch_add(1, Ordering::Relaxed);
                                let _done = InFlight(counters);
                                counters.count(queue.deliver(job).await);
                            }
                        });
                    match settings.on_shutdown {
                        OnShutdown::Finish => tries.await,
                        OnShutdown::Abandon => tokio::select! {
                            () = shutdown.cancelled() => return,
                            () = tries => {}
                        },
                    }
                    if shutdown.is_cancelled() {
                        return;
                    }
                    continue;
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(queue = Q::NAME, error = %e, "cannot claim due jobs"),
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                r = wake.changed() => if r.is_err() { return },
                _ = tick.tick() => {}
            }
        }
    };
    tracker.spawn(sender.instrument(tracing::info_span!("delivery", queue = Q::NAME)));
}

/// Takes a try off the in-flight gauge when it ends, or when it is dropped at shutdown.
struct InFlight<'a>(&'a QueueCounters);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Runs a dispatcher until `shutdown`: `dispatch` moves up to a batch of outbox events into jobs
/// and returns how many events it took (0: none left); after each batch the returned receiver
/// wakes the sender. Woken by `wake` (a commit on this node or another), and each second.
pub fn spawn_dispatcher<F, Fut>(
    name: &'static str,
    dispatch: F,
    mut wake: watch::Receiver<u64>,
    shutdown: CancellationToken,
    tracker: &TaskTracker,
) -> watch::Receiver<u64>
where
    F: Fn() -> Fut + Send + 'static,
    Fut: Future<Output = Result<usize, StoreError>> + Send,
{
    let (dispatched, rx) = watch::channel(0u64);
    let dispatcher = async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            loop {
                match dispatch().await {
                    Ok(0) => break,
                    Ok(_) => dispatched.send_modify(|n| *n = n.wrapping_add(1)),
                    Err(e) => {
                        tracing::warn!(queue = name, error = %e, "dispatch failed; retrying");
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
    };
    tracker.spawn(dispatcher.instrument(tracing::info_span!("dispatch", queue = name)));
    rx
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        let b = Backoff {
            base_ms: 1000,
            max_ms: 8000,
        };
        assert!((500..=1500).contains(&b.delay_ms(0)));
        assert!((2000..=6000).contains(&b.delay_ms(2)));
        assert!(b.delay_ms(20) <= 12_000);
        assert!(b.delay_ms(u32::MAX) <= 12_000);
    }

    #[test]
    fn due_retries_are_looked_for_often_enough() {
        let poll = |base_ms| Backoff { base_ms, max_ms: 0 }.poll();
        assert_eq!(poll(10), Duration::from_millis(50));
        assert_eq!(poll(400), Duration::from_millis(200));
        assert_eq!(poll(60_000), Duration::from_secs(1));
    }
}
