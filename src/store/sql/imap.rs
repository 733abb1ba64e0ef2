//! The SQL side of IMAP-backed mailboxes: their last observed MWI counts (`imap_counts`) and the
//! outbox events of their changes. Messages of such mailboxes live in IMAP, so their counts cannot
//! be read from `messages`; every node and consumer (MWI pusher, event streams, webhooks) reads the
//! counts recorded here instead. A recording takes the mailbox's row lock like any other change,
//! so recordings of one mailbox (by API calls and by the watchers of every node) are serialized,
//! and a watcher's observation that changes nothing writes nothing.

use std::sync::PoisonError;

use super::SqlStore;
use crate::domain::{MailboxId, MessageId, MwiCounts};
use crate::store::{MailboxRecord, StoreError};

/// What a recording of IMAP counts is for.
#[derive(Debug, Clone, Copy)]
pub enum ImapChange<'a> {
    /// voxmail changed the mailbox (an API call): the event is written even when the counts
    /// did not change (a move between Work and Family changes no count but is an event).
    Made {
        /// The event type, e.g. `message.deposited`.
        event_type: &'a str,
        /// The message concerned.
        message_id: Option<MessageId>,
    },
    /// A watcher looked at the mailbox: an event (`mailbox.changed`) only when the counts differ
    /// from the last ones recorded, and nothing when counts recorded since `read_at_ms` (when
    /// this look began) exist — a look that raced a newer change must not undo it.
    Observed {
        /// When the look at the IMAP folder began (Unix ms).
        read_at_ms: i64,
    },
}

#[derive(sqlx::FromRow)]
struct CountsRow {
    new_count: i64,
    old_count: i64,
    urgent_new: i64,
    urgent_old: i64,
    observed_ms: i64,
}

fn count(n: i64) -> u32 {
    u32::try_from(n.max(0)).unwrap_or(u32::MAX)
}

impl CountsRow {
    fn counts(&self, version: i64) -> MwiCounts {
        MwiCounts {
            new: count(self.new_count),
            old: count(self.old_count),
            urgent_new: count(self.urgent_new),
            urgent_old: count(self.urgent_old),
            version,
        }
    }

    fn same(&self, c: &MwiCounts) -> bool {
        self.new_count == i64::from(c.new)
            && self.old_count == i64::from(c.old)
            && self.urgent_new == i64::from(c.urgent_new)
            && self.urgent_old == i64::from(c.urgent_old)
    }
}

impl SqlStore {
    /// Sets the contexts whose messages are in IMAP (from `[imap.contexts]`).
    pub fn set_imap_contexts(&self, contexts: impl IntoIterator<Item = String>) {
        let mut set = self
            .imap_contexts
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        set.clear();
        set.extend(contexts);
    }

    /// Whether the context's messages are in IMAP.
    pub fn is_imap_context(&self, context: &str) -> bool {
        self.imap_contexts
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(context)
    }

    /// Records counts read from a mailbox's IMAP folders and writes the outbox event of the
    /// change (see [`ImapChange`]). Returns the counts with the mailbox's new version when an
    /// event was written, `None` when an observation changed nothing.
    pub async fn record_imap_counts(
        &self,
        mailbox: &MailboxRecord,
        counts: MwiCounts,
        change: ImapChange<'_>,
    ) -> Result<Option<MwiCounts>, StoreError> {
        let id = mailbox.id.to_string();
        let mut tx = self.begin().await?;
        // The row lock first: recordings of one mailbox are serialized from here to commit.
        let version = self.lock_mailbox(&mut tx, mailbox).await?;
        let prior: Option<CountsRow> = self
            .qa(
                "SELECT new_count, old_count, urgent_new, urgent_old, observed_ms FROM imap_counts \
                 WHERE mailbox_id = ?",
            )
            .bind(id.clone())
            .fetch_optional(&mut *tx)
            .await?;
        let event = match change {
            ImapChange::Made {
                event_type,
                message_id,
            } => Some((event_type, message_id)),
            ImapChange::Observed { read_at_ms } => match &prior {
                Some(p) if p.same(&counts) || p.observed_ms > read_at_ms => None,
                _ => Some(("mailbox.changed", None)),
            },
        };
        let Some((event_type, message_id)) = event else {
            // Nothing new: the version bump is rolled back with the rest.
            tx.rollback().await?;
            return Ok(None);
        };
        let now_ms = crate::domain::now_ms();
        let sql = if prior.is_some() {
            "UPDATE imap_counts SET new_count = ?, old_count = ?, urgent_new = ?, urgent_old = ?, \
             observed_ms = ? WHERE mailbox_id = ?"
        } else {
            "INSERT INTO imap_counts (new_count, old_count, urgent_new, urgent_old, observed_ms, \
             mailbox_id) VALUES (?, ?, ?, ?, ?, ?)"
        };
        self.q(sql)
            .bind(i64::from(counts.new))
            .bind(i64::from(counts.old))
            .bind(i64::from(counts.urgent_new))
            .bind(i64::from(counts.urgent_old))
            .bind(now_ms)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        let counts = MwiCounts { version, ..counts };
        // The event goes last: it takes the outbox counter's lock.
        self.emit_counts(&mut tx, mailbox, event_type, message_id, counts)
            .await?;
        tx.commit().await?;
        Ok(Some(counts))
    }

    /// The last counts recorded for an IMAP-backed mailbox with its version; `None` when the
    /// mailbox does not exist, `Some(None)` when no counts were observed yet.
    pub async fn imap_counts(
        &self,
        id: MailboxId,
    ) -> Result<Option<Option<MwiCounts>>, StoreError> {
        #[derive(sqlx::FromRow)]
        struct Row {
            version: i64,
            new_count: Option<i64>,
            old_count: Option<i64>,
            urgent_new: Option<i64>,
            urgent_old: Option<i64>,
        }
        let row: Option<Row> = self
            .qa(
                "SELECT m.version, i.new_count, i.old_count, i.urgent_new, i.urgent_old \
                 FROM mailboxes m LEFT JOIN imap_counts i ON i.mailbox_id = m.uniqueid \
                 WHERE m.uniqueid = ?",
            )
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(
            |r| match (r.new_count, r.old_count, r.urgent_new, r.urgent_old) {
                (Some(n), Some(o), Some(un), Some(uo)) => Some(
                    CountsRow {
                        new_count: n,
                        old_count: o,
                        urgent_new: un,
                        urgent_old: uo,
                        observed_ms: 0,
                    }
                    .counts(r.version),
                ),
                _ => None,
            },
        ))
    }
}
