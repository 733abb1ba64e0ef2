//! Reading the event outbox.

use super::SqlStore;
use crate::domain::{Event, EventFilter, MailboxAddress, MwiCounts};
use crate::store::StoreError;

#[derive(sqlx::FromRow)]
struct EventRow {
    seq: i64,
    event_type: String,
    context: String,
    mailbox: String,
    mailbox_id: String,
    message_id: Option<String>,
    new_count: i64,
    old_count: i64,
    urgent_new: i64,
    urgent_old: i64,
    version: i64,
    node_id: String,
    created_at: i64,
}

impl TryFrom<EventRow> for Event {
    type Error = StoreError;
    fn try_from(r: EventRow) -> Result<Self, StoreError> {
        let corrupt = |what: &str| StoreError::Corrupt(format!("event {}: {what}", r.seq));
        let count = |n: i64| u32::try_from(n.max(0)).unwrap_or(u32::MAX);
        Ok(Event {
            seq: r.seq,
            address: MailboxAddress {
                mailbox: r.mailbox.clone(),
                context: r.context.clone(),
            },
            mailbox_id: r.mailbox_id.parse().map_err(|_| corrupt("mailbox_id"))?,
            message_id: match &r.message_id {
                Some(m) => Some(m.parse().map_err(|_| corrupt("message_id"))?),
                None => None,
            },
            counts: MwiCounts {
                new: count(r.new_count),
                old: count(r.old_count),
                urgent_new: count(r.urgent_new),
                urgent_old: count(r.urgent_old),
                version: r.version,
            },
            event_type: r.event_type,
            node_id: r.node_id,
            created_at: r.created_at,
        })
    }
}

impl SqlStore {
    /// Events after `after` (exclusive) in order, at most `limit`, matching the filter.
    pub async fn events_after(
        &self,
        after: i64,
        limit: u32,
        filter: &EventFilter,
    ) -> Result<Vec<Event>, StoreError> {
        self.events_after_on(&self.pool, after, limit, filter).await
    }

    /// [`Self::events_after`] on a given connection or transaction.
    pub(super) async fn events_after_on<'e, E>(
        &self,
        exec: E,
        after: i64,
        limit: u32,
        filter: &EventFilter,
    ) -> Result<Vec<Event>, StoreError>
    where
        E: sqlx::Executor<'e, Database = sqlx::Any>,
    {
        let rows: Vec<EventRow> = self
            .qa(
                "SELECT seq, event_type, context, mailbox, mailbox_id, message_id, new_count, \
                 old_count, urgent_new, urgent_old, version, node_id, created_at FROM events \
                 WHERE seq > ? AND (? = '' OR context = ?) AND (? = '' OR (mailbox = ? AND context = ?)) \
                 ORDER BY seq LIMIT ?",
            )
            .bind(after)
            .bind(filter.context.clone().unwrap_or_default())
            .bind(filter.context.clone().unwrap_or_default())
            .bind(filter.mailbox.as_ref().map(|m| m.mailbox.clone()).unwrap_or_default())
            .bind(filter.mailbox.as_ref().map(|m| m.mailbox.clone()).unwrap_or_default())
            .bind(filter.mailbox.as_ref().map(|m| m.context.clone()).unwrap_or_default())
            .bind(i64::from(limit))
            .fetch_all(exec)
            .await?;
        rows.into_iter().map(Event::try_from).collect()
    }

    /// The newest event's seq (0 when the outbox is empty).
    pub async fn last_event_seq(&self) -> Result<i64, StoreError> {
        let (seq,): (Option<i64>,) = self
            .qa("SELECT MAX(seq) FROM events")
            .fetch_one(&self.pool)
            .await?;
        Ok(seq.unwrap_or(0))
    }

    /// The oldest retained event's seq (None when the outbox is empty).
    pub async fn first_event_seq(&self) -> Result<Option<i64>, StoreError> {
        let (seq,): (Option<i64>,) = self
            .qa("SELECT MIN(seq) FROM events")
            .fetch_one(&self.pool)
            .await?;
        Ok(seq)
    }
}
