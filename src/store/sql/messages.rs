//! Messages, greetings and MWI counts in SQL. Every change locks the mailbox row (bumping its MWI
//! version), makes the change, and writes an outbox event with the counts — in one transaction.

use async_trait::async_trait;

use super::rows::{CountsRow, GreetingRow, MessageRow, greeting_columns, message_columns};
use super::{SqlStore, Tx, is_unique_violation};
use crate::domain::{Folder, GreetingKind, MailboxAddress, MessageId, MwiCounts, now_secs};
use crate::store::{
    Changed, ForwardTarget, GreetingRecord, Inserted, MailboxRecord, MessageRecord, MessageStore,
    NewMessage, Page, StoreError,
};

/// The INSERT of a new message row (its bindings in `insert_row`).
macro_rules! insert_message {
    () => {
        "INSERT INTO messages (id, mailbox_id, dir, msgnum, context, macrocontext, callerid, \
         origtime, duration, recording, flag, category, mailboxuser, mailboxcontext, msg_id, \
         folder, is_read, origmailbox, exten, rdnis, priority, callerchan, caller_id_num, \
         caller_id_name, duration_ms, audio_key, audio_format, codec, sample_rate, channels, \
         byte_size, sha256, forwarded_from, created_by, created_at, updated_at) \
         VALUES (?, ?, ?, ?, ?, '', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0, ?, ?, ?, ?, ?, ?, ?, ?, \
         ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    };
}

impl SqlStore {
    /// Takes the mailbox's row lock by bumping its version; returns the new version.
    pub(super) async fn lock_mailbox(
        &self,
        tx: &mut Tx,
        mailbox: &MailboxRecord,
    ) -> Result<i64, StoreError> {
        if self.dialect.returning() {
            let v: Option<(i64,)> = self
                .qa("UPDATE mailboxes SET version = version + 1 WHERE uniqueid = ? RETURNING version")
                .bind(mailbox.id.to_string())
                .fetch_optional(&mut **tx)
                .await?;
            return v.map(|(v,)| v).ok_or(StoreError::NotFound);
        }
        let res = self
            .q("UPDATE mailboxes SET version = version + 1 WHERE uniqueid = ?")
            .bind(mailbox.id.to_string())
            .execute(&mut **tx)
            .await?;
        if res.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        let (v,): (i64,) = self
            .qa("SELECT version FROM mailboxes WHERE uniqueid = ?")
            .bind(mailbox.id.to_string())
            .fetch_one(&mut **tx)
            .await?;
        Ok(v)
    }

    async fn counts_in(
        &self,
        tx: &mut Tx,
        mailbox: &MailboxRecord,
        version: i64,
    ) -> Result<MwiCounts, StoreError> {
        self.counts_for_id(tx, mailbox.id, version).await
    }

    /// Counts of a mailbox by id, read in `tx`.
    pub(super) async fn counts_for_id(
        &self,
        tx: &mut Tx,
        id: crate::domain::MailboxId,
        version: i64,
    ) -> Result<MwiCounts, StoreError> {
        let r: CountsRow = self
            .qa(COUNTS_SQL)
            .bind(id.to_string())
            .fetch_one(&mut **tx)
            .await?;
        Ok(to_counts(r, version))
    }

    /// Writes an outbox event for a change of `mailbox` (whose row lock `lock_mailbox` took), with
    /// the counts as they are now in this transaction.
    pub(super) async fn emit(
        &self,
        tx: &mut Tx,
        mailbox: &MailboxRecord,
        event_type: &str,
        message_id: Option<MessageId>,
    ) -> Result<MwiCounts, StoreError> {
        let version = self.lock_mailbox(tx, mailbox).await?;
        self.emit_locked(tx, mailbox, event_type, message_id, version)
            .await
    }

    pub(super) async fn emit_locked(
        &self,
        tx: &mut Tx,
        mailbox: &MailboxRecord,
        event_type: &str,
        message_id: Option<MessageId>,
        version: i64,
    ) -> Result<MwiCounts, StoreError> {
        let counts = self.counts_in(tx, mailbox, version).await?;
        self.emit_counts(tx, mailbox, event_type, message_id, counts)
            .await
    }

    /// Writes an outbox event with the given counts (the counts carry the version). The IMAP
    /// store uses it with counts read from the IMAP server.
    pub(super) async fn emit_counts(
        &self,
        tx: &mut Tx,
        mailbox: &MailboxRecord,
        event_type: &str,
        message_id: Option<MessageId>,
        counts: MwiCounts,
    ) -> Result<MwiCounts, StoreError> {
        let version = counts.version;
        let seq = self.next_event_seq(tx).await?;
        self.q(
            "INSERT INTO events (seq, event_type, context, mailbox, mailbox_id, message_id, \
             new_count, old_count, urgent_new, urgent_old, version, node_id, created_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(seq)
        .bind(event_type.to_owned())
        .bind(mailbox.address.context.clone())
        .bind(mailbox.address.mailbox.clone())
        .bind(mailbox.id.to_string())
        .bind(message_id.map(|m| m.to_string()))
        .bind(i64::from(counts.new))
        .bind(i64::from(counts.old))
        .bind(i64::from(counts.urgent_new))
        .bind(i64::from(counts.urgent_old))
        .bind(version)
        .bind(self.node_id.clone())
        .bind(now_secs())
        .execute(&mut **tx)
        .await?;
        Ok(counts)
    }

    /// Takes the next outbox seq from the counter row. The row lock is held until commit, so
    /// transactions that write events commit in seq order (a consumer never sees seq N before
    /// N−1): callers take it as late as they can, after every other lock of the transaction.
    async fn next_event_seq(&self, tx: &mut Tx) -> Result<i64, StoreError> {
        let (seq,): (i64,) = if self.dialect.returning() {
            self.qa("UPDATE outbox_counter SET seq = seq + 1 WHERE id = 1 RETURNING seq")
                .fetch_one(&mut **tx)
                .await?
        } else {
            self.q("UPDATE outbox_counter SET seq = seq + 1 WHERE id = 1")
                .execute(&mut **tx)
                .await?;
            self.qa("SELECT seq FROM outbox_counter WHERE id = 1")
                .fetch_one(&mut **tx)
                .await?
        };
        if let Some(sql) = self.dialect.notify_sql() {
            self.q(sql).execute(&mut **tx).await?;
        }
        Ok(seq)
    }

    async fn message_in(
        &self,
        tx: &mut Tx,
        mailbox: &MailboxRecord,
        id: MessageId,
    ) -> Result<MessageRecord, StoreError> {
        self.message_on(&mut **tx, mailbox, id).await
    }

    /// One message of a mailbox, on a pool or in a transaction.
    async fn message_on<'e, E>(
        &self,
        exec: E,
        mailbox: &MailboxRecord,
        id: MessageId,
    ) -> Result<MessageRecord, StoreError>
    where
        E: sqlx::Executor<'e, Database = sqlx::Any>,
    {
        self.qa::<MessageRow>(concat!(
            "SELECT ",
            message_columns!(),
            " FROM messages WHERE mailbox_id = ? AND id = ?"
        ))
        .bind(mailbox.id.to_string())
        .bind(id.to_string())
        .fetch_optional(exec)
        .await?
        .ok_or(StoreError::NotFound)?
        .try_into()
    }

    /// The message `id` of the mailbox at `address`, in one read (Asterisk's `mailboxcontext`
    /// and `mailboxuser` name every row's mailbox); `None` when there is none.
    pub async fn message_at(
        &self,
        address: &MailboxAddress,
        id: MessageId,
    ) -> Result<Option<MessageRecord>, StoreError> {
        self.qa::<MessageRow>(concat!(
            "SELECT ",
            message_columns!(),
            " FROM messages WHERE id = ? AND mailboxcontext = ? AND mailboxuser = ?"
        ))
        .bind(id.to_string())
        .bind(address.context.clone())
        .bind(address.mailbox.clone())
        .fetch_optional(&self.pool)
        .await?
        .map(MessageRecord::try_from)
        .transpose()
    }

    /// The message an Idempotency-Key stored, on a pool or in a transaction.
    async fn idempotent_on<'e, E>(
        &self,
        exec: E,
        mailbox: &MailboxRecord,
        key: &str,
    ) -> Result<Option<MessageRecord>, StoreError>
    where
        E: sqlx::Executor<'e, Database = sqlx::Any>,
    {
        let row: Option<MessageRow> = self
            .qa(concat!(
                "SELECT ",
                message_columns!(),
                " FROM messages WHERE mailbox_id = ? AND id = (SELECT message_id FROM \
                 idempotency_keys WHERE mailbox_id = ? AND idem_key = ?)"
            ))
            .bind(mailbox.id.to_string())
            .bind(mailbox.id.to_string())
            .bind(key.to_owned())
            .fetch_optional(exec)
            .await?;
        row.map(MessageRecord::try_from).transpose()
    }

    /// One greeting, on a pool or in a transaction.
    async fn greeting_on<'e, E>(
        &self,
        exec: E,
        mailbox: &MailboxRecord,
        kind: GreetingKind,
    ) -> Result<GreetingRecord, StoreError>
    where
        E: sqlx::Executor<'e, Database = sqlx::Any>,
    {
        self.qa::<GreetingRow>(concat!(
            "SELECT ",
            greeting_columns!(),
            " FROM greetings WHERE mailbox_id = ? AND kind = ?"
        ))
        .bind(mailbox.id.to_string())
        .bind(kind.as_str())
        .fetch_optional(exec)
        .await?
        .ok_or(StoreError::NotFound)?
        .try_into()
    }

    /// Counts a folder and returns the next msgnum in it; refuses when it is full.
    async fn next_msgnum(
        &self,
        tx: &mut Tx,
        mailbox: &MailboxRecord,
        dir: &str,
        folder: &Folder,
        maxmsg: u32,
    ) -> Result<i64, StoreError> {
        let (count, max): (i64, Option<i64>) = self
            .qa("SELECT COUNT(*), MAX(msgnum) FROM messages WHERE dir = ?")
            .bind(dir.to_owned())
            .fetch_one(&mut **tx)
            .await?;
        if count >= i64::from(maxmsg) {
            return Err(StoreError::MailboxFull {
                mailbox: mailbox.address.to_string(),
                folder: folder.to_string(),
                max: maxmsg,
            });
        }
        Ok(max.map_or(0, |m| m + 1))
    }

    /// Closes the gap a message leaves in its folder, as Asterisk renumbers on mailbox close. Row
    /// by row through the `(dir, msgnum)` key, lowest first (each row moves into the slot just
    /// freed, so the key never collides): a ranged UPDATE may scan and lock other mailboxes'
    /// rows on InnoDB (its optimizer prefers a table scan on small tables), which deadlocks with
    /// concurrent changes of those mailboxes. A row Asterisk copied into the folder may get its
    /// final id meanwhile (asterisk.rs), and InnoDB's UPDATE then skips it (it finds the old
    /// version deleted): the folder is read again until every row is in place.
    async fn compact(&self, tx: &mut Tx, dir: &str, removed: i64) -> Result<(), StoreError> {
        'again: for _ in 0..8 {
            let nums: Vec<(i64,)> = self
                .qa("SELECT msgnum FROM messages WHERE dir = ? AND msgnum > ? ORDER BY msgnum")
                .bind(dir.to_owned())
                .bind(removed)
                .fetch_all(&mut **tx)
                .await?;
            for (slot, (n,)) in (removed..).zip(nums) {
                if n == slot {
                    continue;
                }
                let res = self
                    .q("UPDATE messages SET msgnum = ? WHERE dir = ? AND msgnum = ?")
                    .bind(slot)
                    .bind(dir.to_owned())
                    .bind(n)
                    .execute(&mut **tx)
                    .await?;
                if res.rows_affected() == 0 {
                    continue 'again;
                }
            }
            return Ok(());
        }
        Err(StoreError::Corrupt(format!(
            "the messages of {dir} could not be renumbered"
        )))
    }

    /// Inserts a message into a locked mailbox at the end of its folder; refuses a full folder.
    async fn insert_row(
        &self,
        tx: &mut Tx,
        mailbox: &MailboxRecord,
        m: &NewMessage,
        maxmsg: u32,
    ) -> Result<MessageRecord, StoreError> {
        let dir = self.dir(
            &mailbox.address.context,
            &mailbox.address.mailbox,
            m.folder.as_str(),
        );
        let msgnum = self
            .next_msgnum(tx, mailbox, &dir, &m.folder, maxmsg)
            .await?;
        let now = now_secs();
        // The row as stored comes back with the INSERT where the database can say it.
        let sql = if self.dialect.returning() {
            concat!(insert_message!(), " RETURNING ", message_columns!())
        } else {
            insert_message!()
        };
        let row: Option<MessageRow> = self
            .qa(sql)
            .bind(m.id.to_string())
            .bind(mailbox.id.to_string())
            .bind(dir)
            .bind(msgnum)
            .bind(m.context.clone())
            .bind(m.callerid.clone())
            .bind(m.origtime)
            .bind((m.duration_ms + 500) / 1000)
            .bind(m.asterisk_recording.clone())
            .bind(m.flag.as_str())
            .bind(m.category.clone())
            .bind(mailbox.address.mailbox.clone())
            .bind(mailbox.address.context.clone())
            .bind(m.msg_id.clone())
            .bind(m.folder.as_str().to_owned())
            .bind(m.origmailbox.clone())
            .bind(m.exten.clone())
            .bind(m.rdnis.clone())
            .bind(m.priority)
            .bind(m.callerchan.clone())
            .bind(m.caller_id_num.clone())
            .bind(m.caller_id_name.clone())
            .bind(m.duration_ms)
            .bind(m.audio_key.clone())
            .bind(m.audio_format.as_str())
            .bind(m.audio_format.codec())
            .bind(i64::from(m.sample_rate))
            .bind(i64::from(m.channels))
            .bind(m.byte_size)
            .bind(m.sha256.clone())
            .bind(m.forwarded_from.map(|f| f.to_string()))
            .bind(self.node_id.clone())
            .bind(now)
            .bind(now)
            .fetch_optional(&mut **tx)
            .await?;
        // On the in-database audio store the upload moves into `recording` with the row — unless
        // `recording` holds Asterisk's copy: the original then stays in `audio_blobs`.
        if m.asterisk_recording.is_none() {
            self.adopt_message_audio(tx, &m.id.to_string(), &m.audio_key)
                .await?;
        }
        match row {
            Some(row) => row.try_into(),
            None => self.message_in(tx, mailbox, m.id).await,
        }
    }
}

const COUNTS_SQL: &str = "SELECT \
    COUNT(CASE WHEN folder IN ('INBOX', 'Urgent') AND is_read = 0 THEN 1 END) AS new_count, \
    COUNT(CASE WHEN folder = 'Old' OR (folder IN ('INBOX', 'Urgent') AND is_read <> 0) THEN 1 END) \
        AS old_count, \
    COUNT(CASE WHEN folder IN ('INBOX', 'Urgent') AND is_read = 0 \
        AND (folder = 'Urgent' OR flag = 'Urgent') THEN 1 END) AS urgent_new, \
    COUNT(CASE WHEN (folder = 'Old' OR (folder IN ('INBOX', 'Urgent') AND is_read <> 0)) \
        AND (folder = 'Urgent' OR flag = 'Urgent') THEN 1 END) AS urgent_old \
    FROM messages WHERE mailbox_id = ?";

fn to_counts(r: CountsRow, version: i64) -> MwiCounts {
    let c = |n: i64| u32::try_from(n.max(0)).unwrap_or(u32::MAX);
    MwiCounts {
        new: c(r.new_count),
        old: c(r.old_count),
        urgent_new: c(r.urgent_new),
        urgent_old: c(r.urgent_old),
        version,
    }
}

/// Where a message goes and what its read state becomes after a PATCH, following Asterisk: a
/// message that is read leaves INBOX/Urgent for Old; one marked unread in Old returns to INBOX
/// (Urgent when it is flagged urgent).
fn placement(cur: &MessageRecord, folder: Option<Folder>, read: Option<bool>) -> (Folder, bool) {
    let read_now = read.unwrap_or(cur.read);
    match folder {
        Some(f) => {
            let read = match (&f, read) {
                (_, Some(r)) => r,
                (Folder::Old, None) => true,
                (f, None) if f.counts_as_new() && !cur.folder.counts_as_new() => false,
                _ => cur.read,
            };
            (f, read)
        }
        None => match (&cur.folder, read_now) {
            (f, true) if f.counts_as_new() => (Folder::Old, true),
            (Folder::Old, false) => {
                let back = if cur.flag == crate::domain::Flag::Urgent {
                    Folder::Urgent
                } else {
                    Folder::Inbox
                };
                (back, false)
            }
            (f, r) => (f.clone(), r),
        },
    }
}

impl SqlStore {
    /// Stores a forwarded copy of a message kept elsewhere (an IMAP original) like a deposit,
    /// but e-mailed as Asterisk mails a forward: `forwarded_by` (the forwarding mailbox's number
    /// and name) is the caller of the notification, the original caller its `ORIG_VM_*`.
    pub async fn insert_forwarded_copy(
        &self,
        mailbox: &MailboxRecord,
        message: NewMessage,
        maxmsg: u32,
        forwarded_by: (&str, &str),
    ) -> Result<Inserted, StoreError> {
        self.insert_new(mailbox, message, maxmsg, None, Some(forwarded_by))
            .await
    }

    async fn insert_new(
        &self,
        mailbox: &MailboxRecord,
        message: NewMessage,
        maxmsg: u32,
        idempotency_key: Option<&str>,
        forwarded_by: Option<(&str, &str)>,
    ) -> Result<Inserted, StoreError> {
        let mut tx = self.begin().await?;
        let version = self.lock_mailbox(&mut tx, mailbox).await?;
        if let Some(key) = idempotency_key {
            // Under the mailbox lock a concurrent retry has either committed (found here) or waits.
            if let Some(existing) = self.idempotent_on(&mut *tx, mailbox, key).await? {
                return Ok(Inserted::Existing(existing));
            }
            let res = self
                .q(
                    "INSERT INTO idempotency_keys (mailbox_id, idem_key, message_id, created_at) \
                    VALUES (?, ?, ?, ?)",
                )
                .bind(mailbox.id.to_string())
                .bind(key.to_owned())
                .bind(message.id.to_string())
                .bind(now_secs())
                .execute(&mut *tx)
                .await;
            if let Err(e) = res {
                if is_unique_violation(&e) {
                    drop(tx);
                    if let Some(m) = self.find_idempotent(mailbox, key).await? {
                        return Ok(Inserted::Existing(m));
                    }
                    // The key's deposit was stored, and its message deleted since (the key
                    // outlives it, so a late retry cannot store the recording a second time).
                    let stored: Option<(String,)> = self
                        .qa("SELECT message_id FROM idempotency_keys \
                             WHERE mailbox_id = ? AND idem_key = ?")
                        .bind(mailbox.id.to_string())
                        .bind(key.to_owned())
                        .fetch_optional(&self.pool)
                        .await?;
                    return Err(StoreError::DepositDeleted {
                        message: stored.map(|(id,)| id).unwrap_or_default(),
                    });
                }
                return Err(e.into());
            }
        }
        let stored = self.insert_row(&mut tx, mailbox, &message, maxmsg).await?;
        self.queue_email(&mut tx, mailbox, message.id, stored.msgnum, forwarded_by)
            .await?;
        let counts = self
            .emit_locked(
                &mut tx,
                mailbox,
                "message.deposited",
                Some(message.id),
                version,
            )
            .await?;
        tx.commit().await?;
        Ok(Inserted::Created(Changed {
            value: stored,
            counts,
        }))
    }
}

#[async_trait]
impl MessageStore for SqlStore {
    async fn insert_message(
        &self,
        mailbox: &MailboxRecord,
        message: NewMessage,
        maxmsg: u32,
        idempotency_key: Option<&str>,
    ) -> Result<Inserted, StoreError> {
        self.insert_new(mailbox, message, maxmsg, idempotency_key, None)
            .await
    }

    async fn find_idempotent(
        &self,
        mailbox: &MailboxRecord,
        key: &str,
    ) -> Result<Option<MessageRecord>, StoreError> {
        self.idempotent_on(&self.pool, mailbox, key).await
    }

    async fn list_messages(
        &self,
        mailbox: &MailboxRecord,
        folder: Option<&Folder>,
        after: Option<MessageId>,
        limit: u32,
    ) -> Result<Page<MessageRecord>, StoreError> {
        let after = after.map(|a| a.to_string()).unwrap_or_default();
        let limit_plus = i64::from(limit) + 1;
        let rows: Vec<MessageRow> = match folder {
            Some(f) => {
                self.qa(concat!(
                    "SELECT ",
                    message_columns!(),
                    " FROM messages WHERE mailbox_id = ? AND folder = ? AND id > ? \
                     AND asterisk_state = 0 ORDER BY id LIMIT ?"
                ))
                .bind(mailbox.id.to_string())
                .bind(f.as_str().to_owned())
                .bind(after)
                .bind(limit_plus)
                .fetch_all(&self.pool)
                .await?
            }
            None => {
                self.qa(concat!(
                    "SELECT ",
                    message_columns!(),
                    " FROM messages WHERE mailbox_id = ? AND id > ? AND asterisk_state = 0 \
                     ORDER BY id LIMIT ?"
                ))
                .bind(mailbox.id.to_string())
                .bind(after)
                .bind(limit_plus)
                .fetch_all(&self.pool)
                .await?
            }
        };
        let items = rows
            .into_iter()
            .map(MessageRecord::try_from)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(super::directory::page(items, limit))
    }

    async fn get_message(
        &self,
        mailbox: &MailboxRecord,
        id: MessageId,
    ) -> Result<MessageRecord, StoreError> {
        self.message_on(&self.pool, mailbox, id).await
    }

    async fn update_message(
        &self,
        mailbox: &MailboxRecord,
        id: MessageId,
        folder: Option<Folder>,
        read: Option<bool>,
        maxmsg: u32,
    ) -> Result<Changed<MessageRecord>, StoreError> {
        let mut tx = self.begin().await?;
        let version = self.lock_mailbox(&mut tx, mailbox).await?;
        let cur = self.message_in(&mut tx, mailbox, id).await?;
        let (to, read) = placement(&cur, folder, read);
        let (dir, msgnum) = if to == cur.folder {
            (cur.dir.clone(), cur.msgnum)
        } else {
            let dir = self.dir(
                &mailbox.address.context,
                &mailbox.address.mailbox,
                to.as_str(),
            );
            let n = self
                .next_msgnum(&mut tx, mailbox, &dir, &to, maxmsg)
                .await?;
            (dir, n)
        };
        self.q(
            "UPDATE messages SET folder = ?, is_read = ?, dir = ?, msgnum = ?, updated_at = ? \
             WHERE id = ?",
        )
        .bind(to.as_str().to_owned())
        .bind(i64::from(read))
        .bind(dir.clone())
        .bind(msgnum)
        .bind(now_secs())
        .bind(id.to_string())
        .execute(&mut *tx)
        .await?;
        if dir != cur.dir {
            self.compact(&mut tx, &cur.dir, cur.msgnum).await?;
        }
        let event = if to != cur.folder {
            "message.moved"
        } else {
            "message.updated"
        };
        let updated = self.message_in(&mut tx, mailbox, id).await?;
        let counts = self
            .emit_locked(&mut tx, mailbox, event, Some(id), version)
            .await?;
        tx.commit().await?;
        Ok(Changed {
            value: updated,
            counts,
        })
    }

    async fn delete_message(
        &self,
        mailbox: &MailboxRecord,
        id: MessageId,
    ) -> Result<Changed<MessageRecord>, StoreError> {
        let mut tx = self.begin().await?;
        let version = self.lock_mailbox(&mut tx, mailbox).await?;
        let cur = self.message_in(&mut tx, mailbox, id).await?;
        self.q("DELETE FROM messages WHERE id = ?")
            .bind(id.to_string())
            .execute(&mut *tx)
            .await?;
        self.compact(&mut tx, &cur.dir, cur.msgnum).await?;
        let counts = self
            .emit_locked(&mut tx, mailbox, "message.deleted", Some(id), version)
            .await?;
        tx.commit().await?;
        Ok(Changed { value: cur, counts })
    }

    async fn forward_message(
        &self,
        source: &MailboxRecord,
        id: MessageId,
        mut targets: Vec<ForwardTarget>,
        keep: bool,
    ) -> Result<Vec<MessageRecord>, StoreError> {
        // Lock mailboxes in one global order (by id) so concurrent forwards cannot deadlock.
        targets.sort_by_key(|t| t.mailbox.id);
        let mut tx = self.begin().await?;
        let mut lock_order: Vec<&MailboxRecord> = targets.iter().map(|t| &t.mailbox).collect();
        lock_order.push(source);
        lock_order.sort_by_key(|m| m.id);
        lock_order.dedup_by_key(|m| m.id);
        let mut versions = std::collections::HashMap::new();
        for m in lock_order {
            versions.insert(m.id, self.lock_mailbox(&mut tx, m).await?);
        }
        let cur = self.message_in(&mut tx, source, id).await?;
        let mut created = Vec::with_capacity(targets.len());
        for t in &targets {
            let copy = self
                .insert_row(&mut tx, &t.mailbox, &t.message, t.maxmsg)
                .await?;
            // Asterisk's forward mail names the forwarding mailbox as the caller (VM_CIDNUM) and
            // the original caller as ORIG_VM_*.
            self.queue_email(
                &mut tx,
                &t.mailbox,
                copy.id,
                copy.msgnum,
                Some((source.address.mailbox.as_str(), source.fullname.as_str())),
            )
            .await?;
            created.push(copy);
        }
        if !keep {
            self.q("DELETE FROM messages WHERE id = ?")
                .bind(id.to_string())
                .execute(&mut *tx)
                .await?;
            self.compact(&mut tx, &cur.dir, cur.msgnum).await?;
        }
        // Events last: the first one takes the outbox counter's lock (see `next_event_seq`).
        for t in &targets {
            let v = versions.get(&t.mailbox.id).copied().unwrap_or_default();
            self.emit_locked(
                &mut tx,
                &t.mailbox,
                "message.deposited",
                Some(t.message.id),
                v,
            )
            .await?;
        }
        if !keep {
            let v = versions.get(&source.id).copied().unwrap_or_default();
            self.emit_locked(&mut tx, source, "message.deleted", Some(id), v)
                .await?;
        }
        tx.commit().await?;
        Ok(created)
    }

    async fn counts(&self, mailbox: &MailboxRecord) -> Result<MwiCounts, StoreError> {
        // Version and counts from one snapshot.
        let mut tx = self.begin_read().await?;
        let (version,): (i64,) = self
            .qa("SELECT version FROM mailboxes WHERE uniqueid = ?")
            .bind(mailbox.id.to_string())
            .fetch_optional(&mut *tx)
            .await?
            .ok_or(StoreError::NotFound)?;
        let counts = self.counts_in(&mut tx, mailbox, version).await?;
        tx.commit().await?;
        Ok(counts)
    }

    async fn put_greeting(
        &self,
        mailbox: &MailboxRecord,
        g: GreetingRecord,
    ) -> Result<Option<String>, StoreError> {
        let mut tx = self.begin().await?;
        let version = self.lock_mailbox(&mut tx, mailbox).await?;
        let old = self.replace_greeting_row(&mut tx, mailbox, &g).await?;
        self.write_asterisk_greeting(&mut tx, mailbox, g.kind, Some(&g))
            .await?;
        self.emit_locked(&mut tx, mailbox, "greeting.changed", None, version)
            .await?;
        tx.commit().await?;
        Ok(old)
    }

    async fn get_greeting(
        &self,
        mailbox: &MailboxRecord,
        kind: GreetingKind,
    ) -> Result<GreetingRecord, StoreError> {
        self.greeting_on(&self.pool, mailbox, kind).await
    }

    async fn delete_greeting(
        &self,
        mailbox: &MailboxRecord,
        kind: GreetingKind,
    ) -> Result<GreetingRecord, StoreError> {
        let mut tx = self.begin().await?;
        let version = self.lock_mailbox(&mut tx, mailbox).await?;
        let g = self.greeting_on(&mut *tx, mailbox, kind).await?;
        self.q("DELETE FROM greetings WHERE mailbox_id = ? AND kind = ?")
            .bind(mailbox.id.to_string())
            .bind(kind.as_str())
            .execute(&mut *tx)
            .await?;
        self.write_asterisk_greeting(&mut tx, mailbox, kind, None)
            .await?;
        self.emit_locked(&mut tx, mailbox, "greeting.deleted", None, version)
            .await?;
        tx.commit().await?;
        Ok(g)
    }
}

impl SqlStore {
    /// In a transaction holding the mailbox lock, replaces the greeting row of `g.kind` by `g`
    /// (its audio adopted on the in-database store); returns the replaced one's audio key.
    pub(super) async fn replace_greeting_row(
        &self,
        tx: &mut Tx,
        mailbox: &MailboxRecord,
        g: &GreetingRecord,
    ) -> Result<Option<String>, StoreError> {
        let old: Option<(String,)> = self
            .qa("SELECT audio_key FROM greetings WHERE mailbox_id = ? AND kind = ?")
            .bind(mailbox.id.to_string())
            .bind(g.kind.as_str())
            .fetch_optional(&mut **tx)
            .await?;
        if old.is_some() {
            self.q("DELETE FROM greetings WHERE mailbox_id = ? AND kind = ?")
                .bind(mailbox.id.to_string())
                .bind(g.kind.as_str())
                .execute(&mut **tx)
                .await?;
        }
        self.q(
            "INSERT INTO greetings (mailbox_id, kind, audio_key, audio_format, codec, sample_rate, \
             channels, duration_ms, byte_size, sha256, recording, updated_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, ?)",
        )
        .bind(mailbox.id.to_string())
        .bind(g.kind.as_str())
        .bind(g.audio_key.clone())
        .bind(g.audio_format.as_str())
        .bind(g.audio_format.codec())
        .bind(i64::from(g.sample_rate))
        .bind(i64::from(g.channels))
        .bind(g.duration_ms)
        .bind(g.byte_size)
        .bind(g.sha256.clone())
        .bind(g.updated_at)
        .execute(&mut **tx)
        .await?;
        self.adopt_greeting_audio(tx, &mailbox.id.to_string(), g.kind.as_str(), &g.audio_key)
            .await?;
        Ok(old.map(|(k,)| k))
    }

    /// Asterisk's row of a greeting — msgnum -1 in `<mailbox dir>/unavail|busy|temp|greet`, where
    /// app_voicemail's ODBC storage looks for it — replaced by `g`'s copy in the context's
    /// Asterisk format (when it has one), or removed.
    pub(super) async fn write_asterisk_greeting(
        &self,
        tx: &mut Tx,
        mailbox: &MailboxRecord,
        kind: GreetingKind,
        g: Option<&GreetingRecord>,
    ) -> Result<(), StoreError> {
        let address = &mailbox.address;
        let dir = self.dir(&address.context, &address.mailbox, kind.asterisk_dir());
        self.q("DELETE FROM messages WHERE dir = ? AND msgnum = -1")
            .bind(dir.clone())
            .execute(&mut **tx)
            .await?;
        let Some((g, recording)) = g.and_then(|g| Some((g, g.asterisk_recording.clone()?))) else {
            return Ok(());
        };
        let id = MessageId::new();
        let tail = u32::from_be_bytes(
            id.0.as_bytes()[12..16]
                .try_into()
                .expect("a UUID has 16 bytes"),
        );
        let now = now_secs();
        // asterisk_state 3: Asterisk's greeting row, never a message.
        self.q(
            "INSERT INTO messages (id, mailbox_id, dir, msgnum, context, callerid, origtime, \
             duration, recording, mailboxuser, mailboxcontext, msg_id, folder, duration_ms, \
             audio_key, audio_format, codec, sample_rate, channels, byte_size, sha256, created_by, \
             created_at, updated_at, asterisk_state, recording_original) \
             VALUES (?, ?, ?, -1, ?, '', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 3, 0)",
        )
        .bind(id.to_string())
        .bind(mailbox.id.to_string())
        .bind(dir)
        .bind(address.context.clone())
        .bind(now)
        .bind((g.duration_ms + 500) / 1000)
        .bind(recording)
        .bind(address.mailbox.clone())
        .bind(address.context.clone())
        .bind(format!("{now}-{tail:08x}"))
        .bind(kind.asterisk_dir())
        .bind(g.duration_ms)
        .bind(g.audio_key.clone())
        .bind(g.audio_format.as_str())
        .bind(g.audio_format.codec())
        .bind(i64::from(g.sample_rate))
        .bind(i64::from(g.channels))
        .bind(g.byte_size)
        .bind(g.sha256.clone())
        .bind(self.node_id.clone())
        .bind(now)
        .bind(now)
        .execute(&mut **tx)
        .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{AudioFormat, Flag, MailboxAddress, MailboxId};

    fn msg(folder: Folder, read: bool, flag: Flag) -> MessageRecord {
        MessageRecord {
            id: MessageId::new(),
            mailbox_id: MailboxId::new(),
            mailbox: MailboxAddress::new("1", "d").unwrap(),
            dir: String::new(),
            msgnum: 0,
            folder,
            read,
            flag,
            category: String::new(),
            context: String::new(),
            macrocontext: String::new(),
            callerid: String::new(),
            caller_id_num: String::new(),
            caller_id_name: String::new(),
            origtime: 0,
            duration_ms: 0,
            origmailbox: String::new(),
            exten: String::new(),
            rdnis: String::new(),
            priority: 0,
            callerchan: String::new(),
            msg_id: String::new(),
            audio_key: String::new(),
            audio_format: AudioFormat::RawUlaw,
            sample_rate: 8000,
            channels: 1,
            byte_size: 0,
            sha256: String::new(),
            forwarded_from: None,
            created_by: String::new(),
            created_at: 0,
            updated_at: 0,
        }
    }

    #[test]
    fn reading_a_new_message_moves_it_to_old() {
        let m = msg(Folder::Inbox, false, Flag::None);
        assert_eq!(placement(&m, None, Some(true)), (Folder::Old, true));
        let u = msg(Folder::Urgent, false, Flag::Urgent);
        assert_eq!(placement(&u, None, Some(true)), (Folder::Old, true));
    }

    #[test]
    fn unreading_an_old_message_returns_it_to_its_new_folder() {
        let m = msg(Folder::Old, true, Flag::Urgent);
        assert_eq!(placement(&m, None, Some(false)), (Folder::Urgent, false));
        let m = msg(Folder::Old, true, Flag::None);
        assert_eq!(placement(&m, None, Some(false)), (Folder::Inbox, false));
    }

    #[test]
    fn explicit_folder_wins() {
        let m = msg(Folder::Inbox, false, Flag::None);
        assert_eq!(
            placement(&m, Some(Folder::Work), None),
            (Folder::Work, false)
        );
        assert_eq!(placement(&m, Some(Folder::Old), None), (Folder::Old, true));
    }
}
