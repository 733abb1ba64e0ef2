//! The SQL side of IMAP-backed mailboxes: their last observed MWI counts (`imap_counts`) and the
//! outbox events of their changes. Messages of such mailboxes live in IMAP, so their counts cannot
//! be read from `messages`; every node and consumer (MWI pusher, event streams, webhooks) reads the
//! counts recorded here instead. A recording takes the mailbox's row lock like any other change,
//! so recordings of one mailbox (by API calls and by the watchers of every node) are serialized,
//! and a watcher's observation that changes nothing writes nothing.

use std::sync::PoisonError;

use super::{SqlStore, is_unique_violation};
use crate::config::ImapConfig;
use crate::domain::{MailboxId, MessageId, MwiCounts, now_secs};
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
        /// A new message's msgnum: its notification e-mails (`email`, `pager`) are queued in
        /// the same transaction, as for a deposit kept in SQL.
        notify: Option<i64>,
        /// For a forwarded copy: the forwarding mailbox's number and name (the e-mail names
        /// them as Asterisk's forward mail does).
        forwarded_by: Option<(&'a str, &'a str)>,
    },
    /// A watcher looked at the mailbox: an event (`mailbox.changed`) only when the counts differ
    /// from the last ones recorded, and nothing when counts recorded since `read_at_ms` (when
    /// this look began) exist — a look that raced a newer change must not undo it.
    Observed {
        /// When the look at the IMAP folder began (Unix ms).
        read_at_ms: i64,
    },
}

/// What [`SqlStore::record_imap_counts`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    /// The counts were recorded and an event written; they carry the mailbox's new version.
    Written(MwiCounts),
    /// An observation that changed nothing (or raced a newer recording): nothing written.
    Unchanged,
    /// An observation made while voxmail is changing the mailbox (see
    /// [`SqlStore::mark_imap_busy`]): not recorded, since it may show that change before voxmail
    /// records it with its own event; the watcher looks again after it.
    Deferred,
}

impl Recorded {
    /// The counts written, if any.
    pub fn written(self) -> Option<MwiCounts> {
        match self {
            Self::Written(c) => Some(c),
            Self::Unchanged | Self::Deferred => None,
        }
    }
}

/// How long a mark of voxmail changing a mailbox stands at most (it is removed when the change
/// is recorded, or given up; this bounds a node that died in between).
pub const IMAP_BUSY_MS: i64 = 30_000;

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
    /// Sets which mailboxes keep their messages in IMAP (from `[imap.contexts]`).
    pub(super) fn set_imap_config(&self, config: &ImapConfig) {
        let mut set = self
            .imap_contexts
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        *set = config
            .contexts
            .iter()
            .filter(|(_, c)| c.has_imap())
            .map(|(name, c)| (name.clone(), c.clone()))
            .collect();
    }

    /// Whether some mailbox keeps its messages in IMAP.
    pub fn has_imap_contexts(&self) -> bool {
        !self
            .imap_contexts
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .is_empty()
    }

    /// Whether the messages of `mailbox@context` are in IMAP.
    pub fn is_imap_mailbox(&self, context: &str, mailbox: &str) -> bool {
        self.imap_contexts
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(context)
            .is_some_and(|c| c.mailbox_is_imap(mailbox))
    }

    /// Marks voxmail as changing `mailbox` (before an APPEND, STORE, MOVE or EXPUNGE) until
    /// `until_ms`: watchers' observations wait until the change is recorded (which removes the
    /// mark), so a watcher that sees voxmail's own change first does not report it as a change
    /// made outside (`mailbox.changed` before the change's own event). `token` names this mark.
    pub async fn mark_imap_busy(
        &self,
        mailbox: MailboxId,
        token: &str,
        until_ms: i64,
    ) -> Result<(), StoreError> {
        for _ in 0..2 {
            let updated = self
                .q("UPDATE imap_busy SET token = ?, until_ms = ? WHERE mailbox_id = ?")
                .bind(token.to_owned())
                .bind(until_ms)
                .bind(mailbox.to_string())
                .execute(&self.pool)
                .await?
                .rows_affected();
            if updated > 0 {
                return Ok(());
            }
            match self
                .q("INSERT INTO imap_busy (mailbox_id, token, until_ms) VALUES (?, ?, ?)")
                .bind(mailbox.to_string())
                .bind(token.to_owned())
                .bind(until_ms)
                .execute(&self.pool)
                .await
            {
                Ok(_) => return Ok(()),
                // Another change inserted it meanwhile: update it.
                Err(e) if is_unique_violation(&e) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// Removes the mark `token` of [`Self::mark_imap_busy`] (a change given up, or whose
    /// recording failed); a newer mark of another change stays.
    pub async fn clear_imap_busy(&self, mailbox: MailboxId, token: &str) -> Result<(), StoreError> {
        self.q("DELETE FROM imap_busy WHERE mailbox_id = ? AND token = ?")
            .bind(mailbox.to_string())
            .bind(token.to_owned())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Records counts read from a mailbox's IMAP folders and writes the outbox event of the
    /// change (see [`ImapChange`] and [`Recorded`]). Recording a change voxmail made removes the
    /// mailbox's busy mark in the same transaction.
    pub async fn record_imap_counts(
        &self,
        mailbox: &MailboxRecord,
        counts: MwiCounts,
        change: ImapChange<'_>,
    ) -> Result<Recorded, StoreError> {
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
                ..
            } => {
                self.q("DELETE FROM imap_busy WHERE mailbox_id = ?")
                    .bind(id.clone())
                    .execute(&mut *tx)
                    .await?;
                Some((event_type, message_id))
            }
            ImapChange::Observed { read_at_ms } => match &prior {
                Some(p) if p.same(&counts) || p.observed_ms > read_at_ms => None,
                _ => {
                    let busy: Option<(i64,)> = self
                        .qa("SELECT until_ms FROM imap_busy WHERE mailbox_id = ?")
                        .bind(id.clone())
                        .fetch_optional(&mut *tx)
                        .await?;
                    if busy.is_some_and(|(until,)| until > crate::domain::now_ms()) {
                        tx.rollback().await?;
                        return Ok(Recorded::Deferred);
                    }
                    Some(("mailbox.changed", None))
                }
            },
        };
        let Some((event_type, message_id)) = event else {
            // Nothing new: the version bump is rolled back with the rest.
            tx.rollback().await?;
            return Ok(Recorded::Unchanged);
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
        if let ImapChange::Made {
            message_id: Some(id),
            notify: Some(msgnum),
            forwarded_by,
            ..
        } = change
        {
            self.queue_email(&mut tx, mailbox, id, msgnum, forwarded_by)
                .await?;
        }
        let counts = MwiCounts { version, ..counts };
        // The event goes last: it takes the outbox counter's lock.
        self.emit_counts(&mut tx, mailbox, event_type, message_id, counts)
            .await?;
        tx.commit().await?;
        Ok(Recorded::Written(counts))
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

    /// Claims an `Idempotency-Key` of a mailbox kept in IMAP before its deposit is appended, so
    /// that tries with one key on several nodes append once. `Ok(None)` when this try holds the
    /// key now; `Ok(Some(age_secs))` when another try (any node) claimed it that long ago.
    pub async fn claim_idempotency_key(
        &self,
        mailbox: MailboxId,
        key: &str,
        message: MessageId,
    ) -> Result<Option<i64>, StoreError> {
        let now = now_secs();
        let res = self
            .q(
                "INSERT INTO idempotency_keys (mailbox_id, idem_key, message_id, created_at) \
                 VALUES (?, ?, ?, ?)",
            )
            .bind(mailbox.to_string())
            .bind(key.to_owned())
            .bind(message.to_string())
            .bind(now)
            .execute(&self.pool)
            .await;
        match res {
            Ok(_) => Ok(None),
            Err(e) if is_unique_violation(&e) => {
                let row: Option<(i64,)> = self
                    .qa("SELECT created_at FROM idempotency_keys WHERE mailbox_id = ? AND idem_key = ?")
                    .bind(mailbox.to_string())
                    .bind(key.to_owned())
                    .fetch_optional(&self.pool)
                    .await?;
                // Gone meanwhile (released): claimed "just now" by nobody; the caller tries again.
                Ok(Some(row.map_or(0, |(at,)| (now - at).max(0))))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Takes over a claim older than `older_than_secs` (its try died between claim and append).
    pub async fn take_over_idempotency_key(
        &self,
        mailbox: MailboxId,
        key: &str,
        message: MessageId,
        older_than_secs: i64,
    ) -> Result<bool, StoreError> {
        let now = now_secs();
        let res = self
            .q(
                "UPDATE idempotency_keys SET message_id = ?, created_at = ? \
                 WHERE mailbox_id = ? AND idem_key = ? AND created_at < ?",
            )
            .bind(message.to_string())
            .bind(now)
            .bind(mailbox.to_string())
            .bind(key.to_owned())
            .bind(now - older_than_secs)
            .execute(&self.pool)
            .await?;
        Ok(res.rows_affected() == 1)
    }

    /// Gives a claim up (the deposit failed before its message was appended).
    pub async fn release_idempotency_key(
        &self,
        mailbox: MailboxId,
        key: &str,
        message: MessageId,
    ) -> Result<(), StoreError> {
        self.q(
            "DELETE FROM idempotency_keys WHERE mailbox_id = ? AND idem_key = ? AND message_id = ?",
        )
        .bind(mailbox.to_string())
        .bind(key.to_owned())
        .bind(message.to_string())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Renews this node's claim to watch the IMAP mailboxes of `context` (a row of
    /// `imap_watch_nodes` stamped `now_ms`), and removes rows not renewed for a day (nodes long
    /// gone). Returns the nodes watching the context — those whose row is at least
    /// `fresh_after_ms` — sorted, this node among them.
    pub async fn renew_imap_watch(
        &self,
        context: &str,
        node_id: &str,
        now_ms: i64,
        fresh_after_ms: i64,
    ) -> Result<Vec<String>, StoreError> {
        let renewed = self
            .q("UPDATE imap_watch_nodes SET seen_ms = ? WHERE context = ? AND node_id = ?")
            .bind(now_ms)
            .bind(context.to_owned())
            .bind(node_id.to_owned())
            .execute(&self.pool)
            .await?
            .rows_affected();
        if renewed == 0 {
            match self
                .q("INSERT INTO imap_watch_nodes (context, node_id, seen_ms) VALUES (?, ?, ?)")
                .bind(context.to_owned())
                .bind(node_id.to_owned())
                .bind(now_ms)
                .execute(&self.pool)
                .await
            {
                Ok(_) => {}
                // Another process with the same node_id inserted it: the row is fresh.
                Err(e) if is_unique_violation(&e) => {}
                Err(e) => return Err(e.into()),
            }
        }
        self.q("DELETE FROM imap_watch_nodes WHERE context = ? AND seen_ms < ?")
            .bind(context.to_owned())
            .bind(now_ms - 86_400_000)
            .execute(&self.pool)
            .await?;
        let rows: Vec<(String,)> = self
            .qa(
                "SELECT node_id FROM imap_watch_nodes WHERE context = ? AND seen_ms >= ? \
                 ORDER BY node_id",
            )
            .bind(context.to_owned())
            .bind(fresh_after_ms)
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.into_iter().map(|(n,)| n).collect())
    }

    /// Withdraws this node's claim to watch `context` (it stops): the other nodes take its
    /// mailboxes over at their next renewal instead of waiting for the claim to go stale.
    pub async fn leave_imap_watch(&self, context: &str, node_id: &str) -> Result<(), StoreError> {
        self.q("DELETE FROM imap_watch_nodes WHERE context = ? AND node_id = ?")
            .bind(context.to_owned())
            .bind(node_id.to_owned())
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}
