//! Event streams: replay from the outbox after a client's last event id, then live events.

use std::sync::Arc;

use futures_util::Stream;
use futures_util::stream;

use super::{Result, ServiceError, Voicemail};
use crate::domain::{Event, EventFilter, MailboxAddress, Principal};
use crate::events::Subscription;

/// One item of an event stream.
#[derive(Debug, Clone)]
pub enum StreamItem {
    /// Events the client asked to resume after are no longer retained: it must refetch counts.
    Resync {
        oldest: i64,
    },
    Event(Arc<Event>),
}

/// A stream of events for one consumer.
pub type EventStream = std::pin::Pin<Box<dyn Stream<Item = StreamItem> + Send>>;

enum Phase {
    Replay { cursor: i64 },
    Live,
}

struct State {
    vm: Voicemail,
    filter: EventFilter,
    sub: Subscription,
    phase: Phase,
    pending: std::collections::VecDeque<StreamItem>,
}

const REPLAY_BATCH: u32 = 500;

impl Voicemail {
    /// Events the caller may see, after `last_event_id` (replayed from the outbox) and then live.
    pub async fn event_stream(
        &self,
        p: &Principal,
        context: Option<String>,
        mailbox: Option<MailboxAddress>,
        last_event_id: Option<i64>,
    ) -> Result<EventStream> {
        let context = Self::listing_scope(p, context.as_deref())
            .map_err(|()| {
                ServiceError::NotFound(format!("context {}", context.as_deref().unwrap_or("")))
            })?
            .map(str::to_owned);
        if let Some(m) = &mailbox {
            self.visible_mailbox(p, m).await?;
        }
        let hub = self
            .hub
            .as_ref()
            .ok_or_else(|| ServiceError::Unavailable("event streams are not running".into()))?;
        let filter = EventFilter { context, mailbox };
        let sub = hub
            .subscribe(filter.clone())
            .await
            .ok_or_else(|| ServiceError::Unavailable("shutting down".into()))?;
        let mut pending = std::collections::VecDeque::new();
        let phase = match last_event_id {
            Some(last) if last < sub.after => {
                let oldest = self.sql.first_event_seq().await?;
                if let Some(oldest) = oldest
                    && last < oldest - 1
                {
                    pending.push_back(StreamItem::Resync { oldest });
                }
                Phase::Replay { cursor: last }
            }
            _ => Phase::Live,
        };
        let state = State {
            vm: self.clone(),
            filter,
            sub,
            phase,
            pending,
        };
        Ok(Box::pin(stream::unfold(state, next_item)))
    }
}

async fn next_item(mut st: State) -> Option<(StreamItem, State)> {
    loop {
        if let Some(item) = st.pending.pop_front() {
            return Some((item, st));
        }
        match st.phase {
            Phase::Replay { cursor } => {
                let batch = match st
                    .vm
                    .sql
                    .events_after(cursor, REPLAY_BATCH, &st.filter)
                    .await
                {
                    Ok(b) => b,
                    Err(e) => {
                        // End the stream; the client reconnects with its last id and misses nothing.
                        tracing::warn!(error = %e, "event replay failed");
                        return None;
                    }
                };
                let until = st.sub.after;
                let mut next = cursor;
                let mut done = batch.len() < REPLAY_BATCH as usize;
                for e in batch {
                    if e.seq > until {
                        done = true;
                        break;
                    }
                    next = e.seq;
                    st.pending.push_back(StreamItem::Event(Arc::new(e)));
                }
                st.phase = if done {
                    Phase::Live
                } else {
                    Phase::Replay { cursor: next }
                };
            }
            Phase::Live => {
                let e = st.sub.events.recv().await?;
                return Some((StreamItem::Event(e), st));
            }
        }
    }
}
