//! What Asterisk's app_voicemail (ODBC_STORAGE) changed in the shared `messages` table, and how
//! voxmail takes it in (docs/design/0020-asterisk-odbc-storage.md).
//!
//! Asterisk writes through the `voicemessages` view. Rows it inserts are completed by a trigger and
//! wait with `asterisk_state = 1`; rows it deletes or moves to another folder are copied to
//! `asterisk_changes` by a trigger. The service decides what each means ([`AsteriskStep`]) and
//! [`SqlStore::asterisk_apply`] applies the decisions of one mailbox in one transaction, under the
//! mailbox's lock, with an outbox event per change — so nodes taking in the same mailbox at once
//! serialize, and only the first applies a step (each step re-checks its row).

use super::SqlStore;
use crate::domain::{
    AsteriskFormat, AsteriskMail, AudioInfo, Folder, GreetingKind, MailboxId, MessageId,
    PinStorage, now_secs,
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
    /// The msgnum Asterisk inserted it at.
    pub asterisk_slot: i64,
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
    pub mailbox_id: String,
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
    pub changed_at: i64,
    pub context: String,
    pub callerid: String,
    pub origtime: i64,
    pub duration: i64,
    pub flag: String,
}

/// What one of Asterisk's changes means, as the service decided.
#[derive(Debug)]
pub enum AsteriskStep {
    /// A new message: Asterisk's row `id` (the trigger gave it a UUIDv7) is complete with the
    /// audio stored under `key`.
    TakeIn {
        id: MessageId,
        key: String,
        info: AudioInfo,
        /// Split from Asterisk's `callerid` (`"Name" <num>`).
        caller_id_name: String,
        caller_id_num: String,
        folder: String,
        /// `mailbox@context`.
        origmailbox: String,
    },
    /// A row taken in whose event was not written (the node stopped in between).
    Announce { id: String },
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
    /// Asterisk's store_file deleted a message voxmail had just stored in the slot it had picked
    /// from a stale last index, and inserted its own there: the message goes back, at the end of
    /// its folder, with its id, audio and metadata.
    Restore { change: Box<AsteriskChange> },
    /// A change of a row voxmail never took in: nothing to report.
    Forget { seq: i64 },
    /// A row that makes no sense: kept for Asterisk, not listed, reported.
    Refuse { temp_id: String, reason: String },
}

/// How the first phase of a step went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RowDone {
    Done,
    /// Another node did it, or Asterisk changed the row meanwhile.
    Stale,
    /// The row to adopt is gone: the message was deleted.
    Gone,
}

impl RowDone {
    /// Done when the statement changed the row, else another node or Asterisk came first.
    fn of(rows_affected: u64) -> Self {
        if rows_affected == 1 {
            Self::Done
        } else {
            Self::Stale
        }
    }
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
            .qa(
                "SELECT mailbox_id FROM messages WHERE asterisk_state IN (1, 4) \
                 UNION SELECT mailbox_id FROM asterisk_changes",
            )
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.into_iter().filter_map(|(m,)| m.parse().ok()).collect())
    }

    /// The rows of a mailbox Asterisk inserted and voxmail has not taken in, oldest first.
    pub async fn asterisk_rows(&self, mailbox: MailboxId) -> Result<Vec<AsteriskRow>, StoreError> {
        Ok(self
            .qa(
                "SELECT id, dir, msgnum, folder, msg_id, callerid, created_at, asterisk_slot, \
                 LENGTH(recording) AS recording_len FROM messages \
                 WHERE asterisk_state = 1 AND mailbox_id = ? ORDER BY created_at, dir, msgnum",
            )
            .bind(mailbox.to_string())
            .fetch_all(&self.pool)
            .await?)
    }

    /// Refuses what Asterisk wrote for a mailbox that no longer exists; returns the rows.
    pub async fn asterisk_orphaned(&self, mailbox: MailboxId) -> Result<u64, StoreError> {
        let res = self
            .q(
                "UPDATE messages SET asterisk_state = 2, asterisk_note = 'its mailbox was \
                 deleted', updated_at = ? WHERE mailbox_id = ? AND asterisk_state IN (1, 4)",
            )
            .bind(now_secs())
            .bind(mailbox.to_string())
            .execute(&self.pool)
            .await?;
        self.q("DELETE FROM asterisk_changes WHERE mailbox_id = ?")
            .bind(mailbox.to_string())
            .execute(&self.pool)
            .await?;
        Ok(res.rows_affected())
    }

    /// Whether Asterisk inserted a message of its own into the slot `msgnum` of `dir` (not
    /// `msg_id`) at or after `since`: its store_file deleted what was there first.
    pub async fn asterisk_displaced(
        &self,
        dir: &str,
        msgnum: i64,
        msg_id: &str,
        since: i64,
    ) -> Result<bool, StoreError> {
        let row: Option<(String,)> = self
            .qa(
                "SELECT id FROM messages WHERE dir = ? AND asterisk_slot = ? AND msg_id <> ? \
                 AND created_at >= ?",
            )
            .bind(dir.to_owned())
            .bind(msgnum)
            .bind(msg_id.to_owned())
            .bind(since)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.is_some())
    }

    /// The rows of a mailbox taken in whose event is not written yet.
    pub async fn asterisk_unannounced(
        &self,
        mailbox: MailboxId,
    ) -> Result<Vec<String>, StoreError> {
        let rows: Vec<(String,)> = self
            .qa("SELECT id FROM messages WHERE asterisk_state = 4 AND mailbox_id = ?")
            .bind(mailbox.to_string())
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.into_iter().map(|(id,)| id).collect())
    }

    /// The deletes and moves Asterisk made in a mailbox, in order.
    pub async fn asterisk_changes(
        &self,
        mailbox: MailboxId,
    ) -> Result<Vec<AsteriskChange>, StoreError> {
        Ok(self
            .qa(
                "SELECT seq, kind, id, mailbox_id, dir, msgnum, category, msg_id, folder, is_read, \
                 origmailbox, exten, rdnis, priority, callerchan, caller_id_num, caller_id_name, \
                 duration_ms, audio_key, audio_format, codec, sample_rate, channels, byte_size, \
                 sha256, forwarded_from, created_by, created_at, asterisk_state, \
                 recording_original, changed_at, context, callerid, origtime, duration, flag \
                 FROM asterisk_changes WHERE mailbox_id = ? ORDER BY seq",
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

    /// Who mails the messages Asterisk records in a context (Asterisk when it does not exist).
    pub async fn context_asterisk_mail(&self, context: &str) -> Result<AsteriskMail, StoreError> {
        let row: Option<(String,)> = self
            .qa("SELECT asterisk_mail FROM contexts WHERE name = ?")
            .bind(context.to_owned())
            .fetch_optional(&self.pool)
            .await?;
        match row {
            None => Ok(AsteriskMail::Asterisk),
            Some((m,)) => AsteriskMail::parse(&m).ok_or_else(|| {
                StoreError::Corrupt(format!("context {context}: asterisk_mail {m}"))
            }),
        }
    }

    /// Sets how a context is shared with Asterisk: the format its nodes store (or none), how its
    /// PINs are kept and who mails the messages Asterisk records.
    pub async fn set_context_asterisk(
        &self,
        context: &str,
        format: Option<AsteriskFormat>,
        pins: PinStorage,
        mail: AsteriskMail,
    ) -> Result<(), StoreError> {
        let res = self
            .q(
                "UPDATE contexts SET asterisk_format = ?, asterisk_pins = ?, asterisk_mail = ? \
                 WHERE name = ?",
            )
            .bind(format.map_or("", AsteriskFormat::as_str))
            .bind(pins.as_str())
            .bind(mail.as_str())
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

    /// Applies the decided steps of one mailbox, in two phases. First each row, in a statement
    /// of its own and without the mailbox lock: on MySQL an INSERT of Asterisk's waits for the
    /// locks of the `messages` index, and it must never be chosen as a deadlock victim (it is not
    /// retried: the caller's message would be lost), so nothing of voxmail's may hold those locks
    /// while waiting for another. A row taken in waits in state 4, not listed. Then one
    /// transaction under the mailbox lock writes the events, the greetings and state 0; a node
    /// that stops in between leaves state-4 rows the next round announces.
    pub async fn asterisk_apply(
        &self,
        mailbox: &MailboxRecord,
        steps: &[AsteriskStep],
    ) -> Result<Vec<AsteriskOutcome>, StoreError> {
        let now = now_secs();
        let mut first = Vec::with_capacity(steps.len());
        for step in steps {
            first.push(self.apply_row(step, now).await?);
        }
        let mut tx = self.begin().await?;
        // The mailbox lock first: nodes announcing this mailbox at once queue here.
        self.lock_mailbox(&mut tx, mailbox).await?;
        let mut out = Vec::with_capacity(steps.len());
        for (step, row) in steps.iter().zip(first) {
            out.push(self.announce(&mut tx, mailbox, step, row, now).await?);
        }
        tx.commit().await?;
        Ok(out)
    }

    /// The first phase of a step: its row, on its own.
    async fn apply_row(&self, step: &AsteriskStep, now: i64) -> Result<RowDone, StoreError> {
        Ok(match step {
            AsteriskStep::TakeIn {
                id,
                key,
                info,
                caller_id_name,
                caller_id_num,
                folder,
                origmailbox,
            } => {
                let res = self
                    .q(
                        "UPDATE messages SET audio_key = ?, audio_format = ?, codec = ?, \
                         sample_rate = ?, channels = ?, byte_size = ?, sha256 = ?, \
                         duration_ms = ?, caller_id_num = ?, caller_id_name = ?, origmailbox = ?, \
                         is_read = ?, asterisk_state = 4, asterisk_note = 'message.deposited', \
                         updated_at = ? WHERE id = ? AND asterisk_state = 1",
                    )
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
                    .bind(origmailbox.clone())
                    .bind(i64::from(folder == Folder::Old.as_str()))
                    .bind(now)
                    .bind(id.to_string())
                    .execute(&self.pool)
                    .await?;
                RowDone::of(res.rows_affected())
            }
            AsteriskStep::Adopt { change, temp_id } => {
                let copy: Option<(String,)> = self
                    .qa("SELECT folder FROM messages WHERE id = ? AND asterisk_state = 1")
                    .bind(temp_id.clone())
                    .fetch_optional(&self.pool)
                    .await?;
                let adopted = match copy {
                    Some((folder,)) => self.adopt(change, temp_id, &folder, now).await?,
                    None => false,
                };
                if adopted {
                    RowDone::Done
                } else if self.message_exists(&change.id).await? {
                    // Another node gave the copy this identity first.
                    RowDone::Stale
                } else {
                    // The copy went too: the message is gone.
                    RowDone::Gone
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
                    .execute(&self.pool)
                    .await?;
                RowDone::of(res.rows_affected())
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
                    .execute(&self.pool)
                    .await?;
                RowDone::of(res.rows_affected())
            }
            AsteriskStep::Announce { .. }
            | AsteriskStep::Restore { .. }
            | AsteriskStep::Deleted { .. }
            | AsteriskStep::Moved { .. }
            | AsteriskStep::Forget { .. }
            | AsteriskStep::GreetingDeleted { .. } => RowDone::Done,
        })
    }

    /// The second phase of a step, in the transaction holding the mailbox lock.
    async fn announce(
        &self,
        tx: &mut super::Tx,
        mailbox: &MailboxRecord,
        step: &AsteriskStep,
        row: RowDone,
        now: i64,
    ) -> Result<AsteriskOutcome, StoreError> {
        let nothing = AsteriskOutcome::Applied {
            event: "",
            message: None,
            replaced: None,
        };
        if row == RowDone::Stale {
            return Ok(AsteriskOutcome::Stale);
        }
        Ok(match step {
            AsteriskStep::TakeIn { id, .. } => {
                // Announced by another node meanwhile (its row holds our audio all the same).
                let event = self.finish_row(tx, mailbox, &id.to_string()).await?;
                AsteriskOutcome::Applied {
                    event: event.unwrap_or(""),
                    message: Some(*id),
                    replaced: None,
                }
            }
            AsteriskStep::Announce { id } => match self.finish_row(tx, mailbox, id).await? {
                Some(event) => AsteriskOutcome::Applied {
                    event,
                    message: id.parse().ok(),
                    replaced: None,
                },
                None => AsteriskOutcome::Stale,
            },
            AsteriskStep::Adopt { change, .. } => {
                self.forget_change(tx, change.seq).await?;
                if row == RowDone::Gone {
                    self.announce_delete(tx, mailbox, change).await?
                } else {
                    match self.finish_row(tx, mailbox, &change.id).await? {
                        Some(event) => AsteriskOutcome::Applied {
                            event,
                            message: change.id.parse().ok(),
                            replaced: None,
                        },
                        None => AsteriskOutcome::Stale,
                    }
                }
            }
            AsteriskStep::TakeInGreeting { greeting, .. } => {
                let replaced = self.replace_greeting_row(tx, mailbox, greeting).await?;
                self.emit(tx, mailbox, "greeting.changed", None).await?;
                AsteriskOutcome::Applied {
                    event: "greeting.changed",
                    message: None,
                    replaced,
                }
            }
            AsteriskStep::Deleted { change } => {
                if !self.forget_change(tx, change.seq).await? {
                    AsteriskOutcome::Stale
                } else if self.message_exists(&change.id).await? {
                    // Its copy took its identity (a move announced on its own).
                    nothing
                } else {
                    self.announce_delete(tx, mailbox, change).await?
                }
            }
            AsteriskStep::Moved { change } => {
                if !self.forget_change(tx, change.seq).await? {
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
                    .execute(&mut **tx)
                    .await?;
                    let id = change.id.parse().ok();
                    self.emit(tx, mailbox, "message.moved", id).await?;
                    AsteriskOutcome::Applied {
                        event: "message.moved",
                        message: id,
                        replaced: None,
                    }
                }
            }
            AsteriskStep::GreetingDeleted { seq, kind } => {
                if !self.forget_change(tx, *seq).await? {
                    return Ok(AsteriskOutcome::Stale);
                }
                let old: Option<(String,)> = self
                    .qa("SELECT audio_key FROM greetings WHERE mailbox_id = ? AND kind = ?")
                    .bind(mailbox.id.to_string())
                    .bind(kind.as_str())
                    .fetch_optional(&mut **tx)
                    .await?;
                match old {
                    None => nothing,
                    Some((key,)) => {
                        self.q("DELETE FROM greetings WHERE mailbox_id = ? AND kind = ?")
                            .bind(mailbox.id.to_string())
                            .bind(kind.as_str())
                            .execute(&mut **tx)
                            .await?;
                        self.emit(tx, mailbox, "greeting.deleted", None).await?;
                        AsteriskOutcome::Applied {
                            event: "greeting.deleted",
                            message: None,
                            replaced: Some(key),
                        }
                    }
                }
            }
            AsteriskStep::Forget { seq } => {
                self.forget_change(tx, *seq).await?;
                nothing
            }
            AsteriskStep::Restore { change } => {
                // Under the mailbox lock, so voxmail's own renumbering cannot interleave; only
                // its number changed: nothing a client sees.
                if !self.message_exists(&change.id).await? {
                    // Reads the audio the change row kept: before that row goes.
                    self.restore(tx, change, now).await?;
                }
                self.forget_change(tx, change.seq).await?;
                nothing
            }
            AsteriskStep::Refuse { .. } => nothing,
        })
    }

    /// Makes a taken-in row (state 4) a listed message and writes the event it waited for;
    /// `None` when another node did first.
    async fn finish_row(
        &self,
        tx: &mut super::Tx,
        mailbox: &MailboxRecord,
        id: &str,
    ) -> Result<Option<&'static str>, StoreError> {
        let note: Option<(String,)> = self
            .qa("SELECT asterisk_note FROM messages WHERE id = ? AND asterisk_state = 4")
            .bind(id.to_owned())
            .fetch_optional(&mut **tx)
            .await?;
        let Some((note,)) = note else {
            return Ok(None);
        };
        self.q("UPDATE messages SET asterisk_state = 0, asterisk_note = '' WHERE id = ?")
            .bind(id.to_owned())
            .execute(&mut **tx)
            .await?;
        if self.audio_in_db() && note == "message.deposited" {
            // Asterisk's `recording` is the original: the copy the database audio store took
            // while the recording was received is not needed.
            self.q("DELETE FROM audio_blobs WHERE blob_key = \
                 (SELECT audio_key FROM messages WHERE id = ? AND recording_original = 1)")
                .bind(id.to_owned())
                .execute(&mut **tx)
                .await?;
        }
        if note == "message.deposited"
            && self.context_asterisk_mail(&mailbox.address.context).await? == AsteriskMail::Voxmail
            && let Ok(message) = id.parse()
        {
            let (msgnum,): (i64,) = self
                .qa("SELECT msgnum FROM messages WHERE id = ?")
                .bind(id.to_owned())
                .fetch_one(&mut **tx)
                .await?;
            self.queue_email(tx, mailbox, message, msgnum, None).await?;
        }
        let event = match note.as_str() {
            "message.deposited" => "message.deposited",
            "message.moved" => "message.moved",
            // Asterisk renumbered by copying within a folder: nothing a client sees.
            _ => return Ok(Some("")),
        };
        self.emit(tx, mailbox, event, id.parse().ok()).await?;
        Ok(Some(event))
    }

    /// Inserts a message Asterisk deleted by mistake again, after the last of its folder.
    async fn restore(
        &self,
        tx: &mut super::Tx,
        c: &AsteriskChange,
        now: i64,
    ) -> Result<(), StoreError> {
        let (recording,): (Option<Vec<u8>>,) = self
            .qa("SELECT recording FROM asterisk_changes WHERE seq = ?")
            .bind(c.seq)
            .fetch_one(&mut **tx)
            .await?;
        let (last,): (Option<i64>,) = self
            .qa("SELECT MAX(msgnum) FROM messages WHERE dir = ?")
            .bind(c.dir.clone())
            .fetch_one(&mut **tx)
            .await?;
        let (mailboxuser, mailboxcontext) = owner_of(&c.dir);
        let q = self
            .q(
                "INSERT INTO messages (id, mailbox_id, dir, msgnum, context, callerid, origtime, \
                 duration, recording, flag, category, mailboxuser, mailboxcontext, msg_id, folder, \
                 is_read, origmailbox, exten, rdnis, priority, callerchan, caller_id_num, \
                 caller_id_name, duration_ms, audio_key, audio_format, codec, sample_rate, channels, \
                 byte_size, sha256, forwarded_from, created_by, created_at, recording_original, \
                 updated_at) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, \
                 ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(c.id.clone())
            .bind(c.mailbox_id.clone())
            .bind(c.dir.clone())
            .bind(last.map_or(0, |n| n + 1))
            .bind(c.context.clone())
            .bind(c.callerid.clone())
            .bind(c.origtime)
            .bind(c.duration)
            .bind(recording)
            .bind(c.flag.clone())
            .bind(c.category.clone())
            .bind(mailboxuser.to_owned())
            .bind(mailboxcontext.to_owned())
            .bind(c.msg_id.clone())
            .bind(c.folder.clone())
            .bind(c.is_read);
        bind_ours(q, c).bind(now).execute(&mut **tx).await?;
        Ok(())
    }

    /// Whether a message row with this id exists.
    async fn message_exists(&self, id: &str) -> Result<bool, StoreError> {
        let row: Option<(String,)> = self
            .qa("SELECT id FROM messages WHERE id = ?")
            .bind(id.to_owned())
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.is_some())
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

    /// Gives Asterisk's copy `temp_id` the identity, audio and metadata of the message it copied
    /// (state 4, waiting for its `message.moved`, or for nothing when it stayed in its folder);
    /// false when the copy is gone or was taken already.
    async fn adopt(
        &self,
        c: &AsteriskChange,
        temp_id: &str,
        folder: &str,
        now: i64,
    ) -> Result<bool, StoreError> {
        let is_read = if folder == Folder::Old.as_str() {
            1
        } else if folder == Folder::Inbox.as_str() || folder == Folder::Urgent.as_str() {
            0
        } else {
            c.is_read
        };
        let note = if folder == c.folder {
            ""
        } else {
            "message.moved"
        };
        let q = self
            .q(
                "UPDATE messages SET id = ?, category = ?, is_read = ?, origmailbox = ?, \
                 exten = ?, rdnis = ?, priority = ?, callerchan = ?, caller_id_num = ?, \
                 caller_id_name = ?, duration_ms = ?, audio_key = ?, audio_format = ?, codec = ?, \
                 sample_rate = ?, channels = ?, byte_size = ?, sha256 = ?, forwarded_from = ?, \
                 created_by = ?, created_at = ?, recording_original = ?, asterisk_state = 4, \
                 asterisk_note = ?, updated_at = ? WHERE id = ? AND asterisk_state = 1",
            )
            .bind(c.id.clone())
            .bind(c.category.clone())
            .bind(is_read);
        let res = bind_ours(q, c)
            .bind(note)
            .bind(now)
            .bind(temp_id.to_owned())
            .execute(&self.pool)
            .await?;
        Ok(res.rows_affected() == 1)
    }
}

/// Binds our columns of a message kept in a change row, in this order: origmailbox, exten, rdnis,
/// priority, callerchan, caller_id_num, caller_id_name, duration_ms, audio_key, audio_format,
/// codec, sample_rate, channels, byte_size, sha256, forwarded_from, created_by, created_at,
/// recording_original.
fn bind_ours<'q>(
    q: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments>,
    c: &AsteriskChange,
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments> {
    q.bind(c.origmailbox.clone())
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
}

/// (mailbox, context) of Asterisk's `<spool>/voicemail/<context>/<mailbox>/<folder>`.
fn owner_of(dir: &str) -> (&str, &str) {
    let mut parts = dir.rsplit('/').skip(1);
    let mailbox = parts.next().unwrap_or_default();
    let context = parts.next().unwrap_or_default();
    (mailbox, context)
}
