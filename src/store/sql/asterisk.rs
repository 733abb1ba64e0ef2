//! What Asterisk's app_voicemail (ODBC_STORAGE) changed in the shared `messages` table, and how
//! voxmail takes it in (docs/ARCHITECTURE.md, "Asterisk ODBC storage").
//!
//! Asterisk writes through the `voicemessages` view. Rows it inserts are completed by a trigger and
//! wait with `asterisk_state = 1`; rows it deletes or moves to another folder are copied to
//! `asterisk_changes` by a trigger. The service decides what each means ([`AsteriskStep`]) and
//! [`SqlStore::asterisk_apply`] applies the decisions of one mailbox in one transaction, under the
//! mailbox's lock, with an outbox event per change — so nodes taking in the same mailbox at once
//! serialize, and only the first applies a step (each step re-checks its row).

use super::SqlStore;
use crate::domain::{
    AsteriskFormat, AudioInfo, Folder, GreetingKind, MailboxId, MessageId, PinStorage, now_secs,
};
use crate::store::{GreetingRecord, MailboxRecord, StoreError};

/// A row Asterisk inserted that voxmail has not taken in yet.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AsteriskRow {
    /// The temporary id the trigger gave it.
    pub id: String,
    pub dir: String,
    pub msgnum: i64,
    pub folder: String,
    pub msg_id: String,
    pub callerid: String,
    pub created_at: i64,
    /// Bytes in `recording` (NULL when Asterisk stored none).
    pub recording_len: Option<i64>,
}

/// A row Asterisk deleted or moved to another folder: the row as it was before.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AsteriskChange {
    pub seq: i64,
    /// `delete` or `move`.
    pub kind: String,
    pub id: String,
    pub dir: String,
    pub msgnum: i64,
    pub category: String,
    pub msg_id: String,
    pub folder: String,
    pub is_read: i64,
    pub origmailbox: String,
    pub exten: String,
    pub rdnis: String,
    pub priority: i64,
    pub callerchan: String,
    pub caller_id_num: String,
    pub caller_id_name: String,
    pub duration_ms: i64,
    pub audio_key: String,
    pub audio_format: String,
    pub codec: String,
    pub sample_rate: i64,
    pub channels: i64,
    pub byte_size: i64,
    pub sha256: String,
    pub forwarded_from: Option<String>,
    pub created_by: String,
    pub created_at: i64,
    /// The row's state when it changed: 0 for a message voxmail had taken in.
    pub asterisk_state: i64,
    pub recording_original: i64,
}

/// What one of Asterisk's changes means, as the service decided.
#[derive(Debug)]
pub enum AsteriskStep {
    /// A new message: the row `temp_id` becomes message `id` with the audio stored under `key`.
    TakeIn {
        temp_id: String,
        id: MessageId,
        key: String,
        info: AudioInfo,
        /// Split from Asterisk's `callerid` (`"Name" <num>`).
        caller_id_name: String,
        caller_id_num: String,
    },
    /// Asterisk copied a message (the change's row) and deleted the original: the copy
    /// `temp_id` becomes that message again, in its new folder.
    Adopt {
        change: Box<AsteriskChange>,
        temp_id: String,
    },
    /// Asterisk deleted a message.
    Deleted { change: Box<AsteriskChange> },
    /// Asterisk recorded a greeting (its row `temp_id`, msgnum -1), stored as `greeting`.
    TakeInGreeting {
        temp_id: String,
        greeting: Box<GreetingRecord>,
    },
    /// Asterisk deleted a greeting (e.g. the temporary one) without recording another.
    GreetingDeleted { seq: i64, kind: GreetingKind },
    /// Asterisk moved a message to another folder (an UPDATE of its `dir`).
    Moved { change: Box<AsteriskChange> },
    /// A change of a row voxmail never took in: nothing to report.
    Forget { seq: i64 },
    /// A row that makes no sense: kept for Asterisk, not listed, reported.
    Refuse { temp_id: String, reason: String },
}

/// What an applied step did, for the service's clean-up and logs.
#[derive(Debug)]
pub enum AsteriskOutcome {
    /// The step was applied and announced with this event.
    Applied {
        event: &'static str,
        message: Option<MessageId>,
        /// Audio no longer referenced (a replaced or deleted greeting's).
        replaced: Option<String>,
    },
    /// Another node applied it first, or Asterisk changed the row again meanwhile.
    Stale,
}

impl SqlStore {
    /// Mailboxes with rows or changes of Asterisk's to take in.
    pub async fn asterisk_pending_mailboxes(&self) -> Result<Vec<MailboxId>, StoreError> {
        let rows: Vec<(String,)> = self
            .qa("SELECT mailbox_id FROM messages WHERE asterisk_state = 1 \
                 UNION SELECT mailbox_id FROM asterisk_changes")
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.into_iter().filter_map(|(m,)| m.parse().ok()).collect())
    }

    /// The rows of a mailbox Asterisk inserted and voxmail has not taken in, oldest first.
    pub async fn asterisk_rows(&self, mailbox: MailboxId) -> Result<Vec<AsteriskRow>, StoreError> {
        Ok(self
            .qa(
                "SELECT id, dir, msgnum, folder, msg_id, callerid, created_at, \
                 LENGTH(recording) AS recording_len FROM messages \
                 WHERE asterisk_state = 1 AND mailbox_id = ? ORDER BY created_at, dir, msgnum",
            )
            .bind(mailbox.to_string())
            .fetch_all(&self.pool)
            .await?)
    }

    /// The deletes and moves Asterisk made in a mailbox, in order.
    pub async fn asterisk_changes(
        &self,
        mailbox: MailboxId,
    ) -> Result<Vec<AsteriskChange>, StoreError> {
        Ok(self
            .qa(
                "SELECT seq, kind, id, dir, msgnum, category, msg_id, folder, is_read, \
                 origmailbox, exten, rdnis, priority, callerchan, caller_id_num, caller_id_name, \
                 duration_ms, audio_key, audio_format, codec, sample_rate, channels, byte_size, \
                 sha256, forwarded_from, created_by, created_at, asterisk_state, \
                 recording_original FROM asterisk_changes WHERE mailbox_id = ? ORDER BY seq",
            )
            .bind(mailbox.to_string())
            .fetch_all(&self.pool)
            .await?)
    }

    /// The msg_ids of the messages of a mailbox voxmail has taken in (Asterisk's copy of one of
    /// them waits until the original goes).
    pub async fn asterisk_known_msg_ids(
        &self,
        mailbox: MailboxId,
    ) -> Result<Vec<String>, StoreError> {
        let rows: Vec<(String,)> = self
            .qa("SELECT msg_id FROM messages WHERE mailbox_id = ? AND asterisk_state = 0")
            .bind(mailbox.to_string())
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.into_iter().map(|(m,)| m).collect())
    }

    /// The audio Asterisk stored with a row (its `recording`).
    pub async fn asterisk_recording(&self, temp_id: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let row: Option<(Option<Vec<u8>>,)> = self
            .qa("SELECT recording FROM messages WHERE id = ? AND asterisk_state = 1")
            .bind(temp_id.to_owned())
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.and_then(|(r,)| r))
    }

    /// The format the Asterisk nodes sharing a context's messages store, if any.
    pub async fn context_asterisk_format(
        &self,
        context: &str,
    ) -> Result<Option<AsteriskFormat>, StoreError> {
        let (f,): (String,) = self
            .qa("SELECT asterisk_format FROM contexts WHERE name = ?")
            .bind(context.to_owned())
            .fetch_optional(&self.pool)
            .await?
            .ok_or(StoreError::NotFound)?;
        if f.is_empty() {
            return Ok(None);
        }
        AsteriskFormat::parse(&f)
            .map(Some)
            .ok_or_else(|| StoreError::Corrupt(format!("context {context}: asterisk_format {f}")))
    }

    /// How a context keeps its mailboxes' PINs (hashed when the context does not exist).
    pub async fn context_pin_storage(&self, context: &str) -> Result<PinStorage, StoreError> {
        let row: Option<(String,)> = self
            .qa("SELECT asterisk_pins FROM contexts WHERE name = ?")
            .bind(context.to_owned())
            .fetch_optional(&self.pool)
            .await?;
        match row {
            None => Ok(PinStorage::Hashed),
            Some((p,)) => PinStorage::parse(&p).ok_or_else(|| {
                StoreError::Corrupt(format!("context {context}: asterisk_pins {p}"))
            }),
        }
    }

    /// Sets how a context is shared with Asterisk: the format its nodes store (or none) and how
    /// its PINs are kept.
    pub async fn set_context_asterisk(
        &self,
        context: &str,
        format: Option<AsteriskFormat>,
        pins: PinStorage,
    ) -> Result<(), StoreError> {
        let res = self
            .q("UPDATE contexts SET asterisk_format = ?, asterisk_pins = ? WHERE name = ?")
            .bind(format.map_or("", AsteriskFormat::as_str))
            .bind(pins.as_str())
            .bind(context.to_owned())
            .execute(&self.pool)
            .await?;
        if res.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    /// Mailboxes of a context whose PIN is kept as plain text: (uniqueid, PIN).
    pub async fn plain_pins(&self, context: &str) -> Result<Vec<(String, String)>, StoreError> {
        Ok(self
            .qa(
                "SELECT uniqueid, password FROM mailboxes WHERE context = ? AND password <> '' \
                 AND password NOT LIKE '$argon2%'",
            )
            .bind(context.to_owned())
            .fetch_all(&self.pool)
            .await?)
    }

    /// Replaces a mailbox's plain PIN by its hash, unless the PIN changed meanwhile.
    pub async fn hash_plain_pin(
        &self,
        uniqueid: &str,
        plain: &str,
        hash: &str,
    ) -> Result<(), StoreError> {
        self.q("UPDATE mailboxes SET password = ? WHERE uniqueid = ? AND password = ?")
            .bind(hash.to_owned())
            .bind(uniqueid.to_owned())
            .bind(plain.to_owned())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Applies the decided steps of one mailbox in one transaction, each with its event.
    pub async fn asterisk_apply(
        &self,
        mailbox: &MailboxRecord,
        steps: &[AsteriskStep],
    ) -> Result<Vec<AsteriskOutcome>, StoreError> {
        let mut tx = self.begin().await?;
        // The mailbox lock first: nodes taking in this mailbox at once queue here, and every row
        // re-checked below is then final for this transaction.
        self.lock_mailbox(&mut tx, mailbox).await?;
        let now = now_secs();
        let mut out = Vec::with_capacity(steps.len());
        for step in steps {
            let outcome = match step {
                AsteriskStep::TakeIn {
                    temp_id,
                    id,
                    key,
                    info,
                    caller_id_name,
                    caller_id_num,
                } => {
                    let row: Option<(String,)> = self
                        .qa("SELECT folder FROM messages WHERE id = ? AND asterisk_state = 1")
                        .bind(temp_id.clone())
                        .fetch_optional(&mut *tx)
                        .await?;
                    match row {
                        None => AsteriskOutcome::Stale,
                        Some((folder,)) => {
                            self.q(
                                "UPDATE messages SET id = ?, audio_key = ?, audio_format = ?, \
                                 codec = ?, sample_rate = ?, channels = ?, byte_size = ?, \
                                 sha256 = ?, duration_ms = ?, caller_id_num = ?, \
                                 caller_id_name = ?, origmailbox = ?, is_read = ?, \
                                 asterisk_state = 0, updated_at = ? \
                                 WHERE id = ? AND asterisk_state = 1",
                            )
                            .bind(id.to_string())
                            .bind(key.clone())
                            .bind(info.format.as_str())
                            .bind(info.format.codec())
                            .bind(i64::from(info.sample_rate))
                            .bind(i64::from(info.channels))
                            .bind(info.byte_size as i64)
                            .bind(info.sha256.clone())
                            .bind(info.duration_ms as i64)
                            .bind(caller_id_num.clone())
                            .bind(caller_id_name.clone())
                            .bind(mailbox.address.to_string())
                            .bind(i64::from(folder == Folder::Old.as_str()))
                            .bind(now)
                            .bind(temp_id.clone())
                            .execute(&mut *tx)
                            .await?;
                            if self.audio_in_db() {
                                // `recording` already holds these bytes (they were read from
                                // it): the copy the audio store just took is not needed.
                                self.drop_adopted(&mut tx, key).await?;
                            }
                            self.emit(&mut tx, mailbox, "message.deposited", Some(*id))
                                .await?;
                            AsteriskOutcome::Applied {
                                event: "message.deposited",
                                message: Some(*id),
                                replaced: None,
                            }
                        }
                    }
                }
                AsteriskStep::Adopt { change, temp_id } => {
                    if !self.forget_change(&mut tx, change.seq).await? {
                        AsteriskOutcome::Stale
                    } else {
                        let folder: Option<(String,)> = self
                            .qa("SELECT folder FROM messages WHERE id = ? AND asterisk_state = 1")
                            .bind(temp_id.clone())
                            .fetch_optional(&mut *tx)
                            .await?;
                        match folder {
                            // The copy went too: the message is gone.
                            None => self.announce_delete(&mut tx, mailbox, change).await?,
                            Some((folder,)) => {
                                self.adopt(&mut tx, change, temp_id, &folder, now).await?;
                                let id = change.id.parse().ok();
                                if folder == change.folder {
                                    // Asterisk renumbered by copy: nothing a client sees.
                                    AsteriskOutcome::Applied {
                                        event: "",
                                        message: id,
                                        replaced: None,
                                    }
                                } else {
                                    self.emit(&mut tx, mailbox, "message.moved", id).await?;
                                    AsteriskOutcome::Applied {
                                        event: "message.moved",
                                        message: id,
                                        replaced: None,
                                    }
                                }
                            }
                        }
                    }
                }
                AsteriskStep::Deleted { change } => {
                    if self.forget_change(&mut tx, change.seq).await? {
                        self.announce_delete(&mut tx, mailbox, change).await?
                    } else {
                        AsteriskOutcome::Stale
                    }
                }
                AsteriskStep::Moved { change } => {
                    if !self.forget_change(&mut tx, change.seq).await? {
                        AsteriskOutcome::Stale
                    } else {
                        // Asterisk's Old is "heard"; back in INBOX a message is new again.
                        self.q(
                            "UPDATE messages SET is_read = CASE WHEN folder = 'Old' THEN 1 \
                             WHEN folder IN ('INBOX', 'Urgent') THEN 0 ELSE is_read END, \
                             updated_at = ? WHERE id = ?",
                        )
                        .bind(now)
                        .bind(change.id.clone())
                        .execute(&mut *tx)
                        .await?;
                        let id = change.id.parse().ok();
                        self.emit(&mut tx, mailbox, "message.moved", id).await?;
                        AsteriskOutcome::Applied {
                            event: "message.moved",
                            message: id,
                            replaced: None,
                        }
                    }
                }
                AsteriskStep::TakeInGreeting { temp_id, greeting } => {
                    let res = self
                        .q("UPDATE messages SET asterisk_state = 3, audio_key = ?, \
                             audio_format = ?, codec = ?, sample_rate = ?, channels = ?, \
                             byte_size = ?, sha256 = ?, duration_ms = ?, updated_at = ? \
                             WHERE id = ? AND asterisk_state = 1")
                        .bind(greeting.audio_key.clone())
                        .bind(greeting.audio_format.as_str())
                        .bind(greeting.audio_format.codec())
                        .bind(i64::from(greeting.sample_rate))
                        .bind(i64::from(greeting.channels))
                        .bind(greeting.byte_size)
                        .bind(greeting.sha256.clone())
                        .bind(greeting.duration_ms)
                        .bind(now)
                        .bind(temp_id.clone())
                        .execute(&mut *tx)
                        .await?;
                    if res.rows_affected() == 0 {
                        AsteriskOutcome::Stale
                    } else {
                        let replaced = self
                            .replace_greeting_row(&mut tx, mailbox, greeting)
                            .await?;
                        self.emit(&mut tx, mailbox, "greeting.changed", None)
                            .await?;
                        AsteriskOutcome::Applied {
                            event: "greeting.changed",
                            message: None,
                            replaced,
                        }
                    }
                }
                AsteriskStep::GreetingDeleted { seq, kind } => {
                    if !self.forget_change(&mut tx, *seq).await? {
                        AsteriskOutcome::Stale
                    } else {
                        let old: Option<(String,)> = self
                            .qa("SELECT audio_key FROM greetings WHERE mailbox_id = ? AND kind = ?")
                            .bind(mailbox.id.to_string())
                            .bind(kind.as_str())
                            .fetch_optional(&mut *tx)
                            .await?;
                        match old {
                            None => AsteriskOutcome::Applied {
                                event: "",
                                message: None,
                                replaced: None,
                            },
                            Some((key,)) => {
                                self.q("DELETE FROM greetings WHERE mailbox_id = ? AND kind = ?")
                                    .bind(mailbox.id.to_string())
                                    .bind(kind.as_str())
                                    .execute(&mut *tx)
                                    .await?;
                                self.emit(&mut tx, mailbox, "greeting.deleted", None)
                                    .await?;
                                AsteriskOutcome::Applied {
                                    event: "greeting.deleted",
                                    message: None,
                                    replaced: Some(key),
                                }
                            }
                        }
                    }
                }
                AsteriskStep::Forget { seq } => {
                    self.forget_change(&mut tx, *seq).await?;
                    AsteriskOutcome::Applied {
                        event: "",
                        message: None,
                        replaced: None,
                    }
                }
                AsteriskStep::Refuse { temp_id, reason } => {
                    let res = self
                        .q(
                            "UPDATE messages SET asterisk_state = 2, asterisk_note = ?, \
                             updated_at = ? WHERE id = ? AND asterisk_state = 1",
                        )
                        .bind(reason.chars().take(255).collect::<String>())
                        .bind(now)
                        .bind(temp_id.clone())
                        .execute(&mut *tx)
                        .await?;
                    if res.rows_affected() == 0 {
                        AsteriskOutcome::Stale
                    } else {
                        AsteriskOutcome::Applied {
                            event: "",
                            message: None,
                            replaced: None,
                        }
                    }
                }
            };
            out.push(outcome);
        }
        tx.commit().await?;
        Ok(out)
    }

    /// Removes a logged change; false when another node already did (and applied it).
    async fn forget_change(&self, tx: &mut super::Tx, seq: i64) -> Result<bool, StoreError> {
        let res = self
            .q("DELETE FROM asterisk_changes WHERE seq = ?")
            .bind(seq)
            .execute(&mut **tx)
            .await?;
        Ok(res.rows_affected() > 0)
    }

    async fn announce_delete(
        &self,
        tx: &mut super::Tx,
        mailbox: &MailboxRecord,
        change: &AsteriskChange,
    ) -> Result<AsteriskOutcome, StoreError> {
        let id = change.id.parse().ok();
        self.emit(tx, mailbox, "message.deleted", id).await?;
        Ok(AsteriskOutcome::Applied {
            event: "message.deleted",
            message: id,
            replaced: None,
        })
    }

    /// Gives Asterisk's copy `temp_id` the identity, audio and metadata of the message it copied.
    async fn adopt(
        &self,
        tx: &mut super::Tx,
        c: &AsteriskChange,
        temp_id: &str,
        folder: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        let is_read = if folder == Folder::Old.as_str() {
            1
        } else if folder == Folder::Inbox.as_str() || folder == Folder::Urgent.as_str() {
            0
        } else {
            c.is_read
        };
        self.q(
            "UPDATE messages SET id = ?, category = ?, is_read = ?, origmailbox = ?, exten = ?, \
             rdnis = ?, priority = ?, callerchan = ?, caller_id_num = ?, caller_id_name = ?, \
             duration_ms = ?, audio_key = ?, audio_format = ?, codec = ?, sample_rate = ?, \
             channels = ?, byte_size = ?, sha256 = ?, forwarded_from = ?, created_by = ?, \
             created_at = ?, recording_original = ?, asterisk_state = 0, updated_at = ? \
             WHERE id = ? AND asterisk_state = 1",
        )
        .bind(c.id.clone())
        .bind(c.category.clone())
        .bind(is_read)
        .bind(c.origmailbox.clone())
        .bind(c.exten.clone())
        .bind(c.rdnis.clone())
        .bind(c.priority)
        .bind(c.callerchan.clone())
        .bind(c.caller_id_num.clone())
        .bind(c.caller_id_name.clone())
        .bind(c.duration_ms)
        .bind(c.audio_key.clone())
        .bind(c.audio_format.clone())
        .bind(c.codec.clone())
        .bind(c.sample_rate)
        .bind(c.channels)
        .bind(c.byte_size)
        .bind(c.sha256.clone())
        .bind(c.forwarded_from.clone())
        .bind(c.created_by.clone())
        .bind(c.created_at)
        .bind(c.recording_original)
        .bind(now)
        .bind(temp_id.to_owned())
        .execute(&mut **tx)
        .await?;
        Ok(())
    }
}
