//! One owning task holds every live subscriber. It reads new events from the outbox (woken by local
//! commits, and by a poll for changes made by other processes or nodes) and offers each to every
//! matching subscriber with `try_send`: a subscriber whose buffer is full is dropped — it reconnects
//! with Last-Event-ID and replays from the outbox — so a slow consumer never holds up the others or
//! the deposit path.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use crate::domain::{Event, EventFilter};
use crate::store::SqlStore;

/// Events buffered per subscriber before it counts as too slow and is dropped.
const SUBSCRIBER_BUFFER: usize = 1024;
/// Events read from the outbox per query.
const BATCH: u32 = 500;

enum Command {
    Subscribe {
        filter: EventFilter,
        events: mpsc::Sender<Arc<Event>>,
        reply: oneshot::Sender<i64>,
    },
}

/// Handle to the hub task.
#[derive(Clone)]
pub struct Hub {
    commands: mpsc::Sender<Command>,
}

/// A live subscription: every matching event with `seq > after` arrives on `events`, in order.
pub struct Subscription {
    /// The outbox position the subscription starts after.
    pub after: i64,
    pub events: mpsc::Receiver<Arc<Event>>,
}

impl Hub {
    /// Starts the hub task; it stops when `shutdown` is cancelled.
    /// `wake` is notified by the services after every committed change.
    pub fn start(
        store: Arc<SqlStore>,
        wake: watch::Receiver<u64>,
        poll: Duration,
        shutdown: CancellationToken,
        tracker: &tokio_util::task::TaskTracker,
    ) -> Self {
        let (tx, rx) = mpsc::channel(256);
        let span = tracing::info_span!("event_hub");
        tracker.spawn(run(store, rx, wake, poll, shutdown).instrument(span));
        Self { commands: tx }
    }

    /// Subscribes to events matching `filter`. `None` when the hub has stopped.
    pub async fn subscribe(&self, filter: EventFilter) -> Option<Subscription> {
        let (events_tx, events_rx) = mpsc::channel(SUBSCRIBER_BUFFER);
        let (reply_tx, reply_rx) = oneshot::channel();
        self.commands
            .send(Command::Subscribe {
                filter,
                events: events_tx,
                reply: reply_tx,
            })
            .await
            .ok()?;
        let after = reply_rx.await.ok()?;
        Some(Subscription {
            after,
            events: events_rx,
        })
    }
}

struct Subscriber {
    filter: EventFilter,
    events: mpsc::Sender<Arc<Event>>,
}

async fn run(
    store: Arc<SqlStore>,
    mut commands: mpsc::Receiver<Command>,
    mut wake: watch::Receiver<u64>,
    poll: Duration,
    shutdown: CancellationToken,
) {
    let mut subscribers: Vec<Subscriber> = Vec::new();
    // Start at the end of the outbox: history is served by replay, not by the hub.
    let mut last = loop {
        match store.last_event_seq().await {
            Ok(s) => break s,
            Err(e) => {
                tracing::warn!(error = %e, "event hub cannot read the outbox; retrying");
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        }
    };
    let mut tick = tokio::time::interval(poll);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            cmd = commands.recv() => match cmd {
                Some(Command::Subscribe { filter, events, reply }) => {
                    if reply.send(last).is_ok() {
                        subscribers.push(Subscriber { filter, events });
                    }
                }
                None => break,
            },
            changed = wake.changed() => {
                if changed.is_err() {
                    break;
                }
                last = fan_out(&store, last, &mut subscribers).await;
            }
            _ = tick.tick() => last = fan_out(&store, last, &mut subscribers).await,
        }
    }
}

/// Reads every event after `last` and offers it to the subscribers; returns the new position.
async fn fan_out(store: &SqlStore, mut last: i64, subscribers: &mut Vec<Subscriber>) -> i64 {
    subscribers.retain(|s| !s.events.is_closed());
    loop {
        let batch = match store
            .events_after(last, BATCH, &EventFilter::default())
            .await
        {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(error = %e, "event hub cannot read the outbox");
                return last;
            }
        };
        let full = batch.len() == BATCH as usize;
        for event in batch {
            last = event.seq;
            let event = Arc::new(event);
            subscribers.retain(|s| {
                if !s.filter.matches(&event) {
                    return true;
                }
                match s.events.try_send(event.clone()) {
                    Ok(()) => true,
                    Err(mpsc::error::TrySendError::Full(_)) => {
                        tracing::info!("dropping a subscriber that is not keeping up");
                        false
                    }
                    Err(mpsc::error::TrySendError::Closed(_)) => false,
                }
            });
        }
        if !full {
            return last;
        }
    }
}
