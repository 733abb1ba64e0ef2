//! Taking in what Asterisk's app_voicemail (ODBC_STORAGE) changed in the shared messages table:
//! its deposits become messages (audio stored, metadata filled, `message.deposited`), its saves to
//! another folder (copy, then delete the original) moves of the same message, its deletes
//! deletes — each with the mailbox's event, so lamps, webhooks and streams follow Asterisk too.
//! Every node polls (`database.poll_interval_ms`); nodes taking in one mailbox at once serialize
//! on its lock and only the first applies a step. See docs/design/0020-asterisk-odbc-storage.md.

use std::collections::HashSet;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument as _;

use super::audio_in::Limits;
use super::rendition::Original;
use super::{Result, ServiceError, Voicemail};
use crate::audio::{OutputFormat, RawHint, Rendition};
use crate::blob::BlobKey;
use crate::domain::Principal;
use crate::domain::{
    AsteriskFormat, AsteriskMail, AudioFormat, AudioInfo, GreetingKind, MailboxId, MessageId,
    PinStorage, now_secs,
};
use crate::mail::template::split_callerid;
use crate::store::sql::Dialect;
use crate::store::sql::asterisk::{AsteriskChange, AsteriskOutcome, AsteriskRow, AsteriskStep};
use crate::store::{GreetingRecord, MailboxRecord};

/// How long Asterisk's copy of a message waits for the original to go. Asterisk saves a message
/// to another folder by copying it and deletes the original when the caller leaves the mailbox;
/// a copy whose original is still there after this long was kept on purpose, and becomes a
/// message of its own.
const COPY_GRACE_SECS: i64 = 600;

/// How young (seconds) a message voxmail stored may be when Asterisk's store_file deletes it for
/// the slot it picked from a stale index (Asterisk reads the index, then deletes and inserts a
/// few milliseconds later; the trigger keeps the audio of rows up to 5 s old).
const COLLISION_SECS: i64 = 2;

/// The longest recording taken in from Asterisk, in seconds (its own `maxsecs` already applied).
const MAX_TAKE_IN_SECS: u32 = 4 * 3600;

impl Voicemail {
    /// Polls for Asterisk's changes on a shared PostgreSQL or MySQL/MariaDB database (SQLite has
    /// no Asterisk writing to it).
    pub fn start_asterisk_sync(&self, stop: CancellationToken, tracker: &TaskTracker) {
        if self.sql.dialect() == Dialect::Sqlite {
            return;
        }
        let vm = self.clone();
        let every = Duration::from_millis(self.config.database.poll_interval_ms.max(50));
        let take_in = async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    () = stop.cancelled() => break,
                    _ = tick.tick() => {
                        if let Err(e) = vm.take_in_asterisk().await {
                            tracing::warn!(error = %e, "cannot take in Asterisk's changes");
                        }
                    }
                }
            }
        };
        tracker.spawn(take_in.instrument(tracing::info_span!("asterisk_take_in")));
    }

    /// Takes in every mailbox Asterisk changed; returns the number of steps applied.
    pub async fn take_in_asterisk(&self) -> Result<usize> {
        let mut applied = 0;
        for id in self.sql.asterisk_pending_mailboxes().await? {
            match self.take_in_mailbox(id).await {
                Ok(n) => applied += n,
                Err(e) => {
                    tracing::warn!(mailbox.id = %id, error = %e, "cannot take in Asterisk's changes of a mailbox");
                }
            }
        }
        Ok(applied)
    }

    async fn take_in_mailbox(&self, id: MailboxId) -> Result<usize> {
        let mailbox = match self.sql.get_mailbox_by_id(id).await {
            Ok(m) => m,
            Err(crate::store::StoreError::NotFound) => {
                // Written for a mailbox deleted meanwhile (MySQL has no foreign key here).
                let n = self.sql.asterisk_orphaned(id).await?;
                tracing::warn!(mailbox.id = %id, rows = n, "rows Asterisk wrote for a deleted mailbox are kept but not taken in");
                return Ok(0);
            }
            Err(e) => return Err(e.into()),
        };
        // Read in this order: the changes to act on, then the rows, then which originals are
        // still there, then the changes again. Asterisk copies before it deletes the original,
        // so a delete seen first has its copy among the rows read after it; and a copy whose
        // original is neither still there nor among the changes first read waits a round.
        let unannounced = self.sql.asterisk_unannounced(id).await?;
        let changes = self.sql.asterisk_changes(id).await?;
        let rows = self.sql.asterisk_rows(id).await?;
        let mut waiting: HashSet<String> = self
            .sql
            .asterisk_known_msg_ids(id)
            .await?
            .into_iter()
            .collect();
        let seen: HashSet<i64> = changes.iter().map(|c| c.seq).collect();
        waiting.extend(
            self.sql
                .asterisk_changes(id)
                .await?
                .into_iter()
                .filter(|c| !seen.contains(&c.seq))
                .map(|c| c.msg_id),
        );

        let mut claimed: HashSet<String> = HashSet::new();
        let mut steps: Vec<AsteriskStep> = unannounced
            .into_iter()
            .map(|id| AsteriskStep::Announce { id })
            .collect();
        let now = now_secs();
        for c in changes {
            // Asterisk's store_file deletes the slot it picked before inserting: a message voxmail
            // stored there a moment earlier (Asterisk read the folder's last index before it
            // committed) was deleted by mistake if Asterisk inserted its own into that slot.
            let displaced = is_young(&c)
                && self
                    .sql
                    .asterisk_displaced(&c.dir, c.msgnum, &c.msg_id, c.changed_at - 1)
                    .await?;
            steps.extend(decide_change(c, &rows, &mut claimed, displaced, now));
        }
        let format = self
            .sql
            .context_asterisk_format(&mailbox.address.context)
            .await?;
        for r in rows.iter().filter(|r| !claimed.contains(&r.id)) {
            if waiting.contains(&r.msg_id) && now - r.created_at < COPY_GRACE_SECS {
                continue;
            }
            steps.push(self.prepare_take_in(&mailbox, r, format).await);
        }
        if steps.is_empty() {
            return Ok(0);
        }

        // On an error some rows may already hold the audio stored for them (the first phase
        // commits row by row): none is removed here; the orphan collector takes what no row
        // references.
        let outcomes = self.sql.asterisk_apply(&mailbox, &steps).await?;
        let mut applied = 0;
        let mut unused = Vec::new();
        for (step, outcome) in steps.iter().zip(outcomes) {
            let AsteriskOutcome::Applied {
                event,
                message,
                replaced,
            } = outcome
            else {
                unused.extend(taken_in_key(step));
                continue;
            };
            applied += 1;
            unused.extend(replaced);
            match step {
                AsteriskStep::Deleted { change } => unused.push(change.audio_key.clone()),
                AsteriskStep::Adopt { change, .. } if event == "message.deleted" => {
                    unused.push(change.audio_key.clone());
                }
                AsteriskStep::Refuse { temp_id, reason } => {
                    tracing::warn!(
                        mailbox = %mailbox.address,
                        asterisk.row = %temp_id,
                        reason = %reason,
                        "a row Asterisk wrote is kept but not taken in"
                    );
                }
                _ => {}
            }
            if !event.is_empty() {
                tracing::info!(
                    mailbox = %mailbox.address,
                    message.id = ?message,
                    event,
                    "change made by Asterisk taken in"
                );
            }
        }
        unused.retain(|k| !k.is_empty());
        self.remove_blobs(unused).await;
        if applied > 0 {
            self.notify_changed();
        }
        Ok(applied)
    }

    /// Stores the audio of a row Asterisk inserted under a new message id, or decides to refuse
    /// the row.
    async fn prepare_take_in(
        &self,
        mailbox: &MailboxRecord,
        r: &AsteriskRow,
        format: Option<AsteriskFormat>,
    ) -> AsteriskStep {
        let refuse = |reason: String| AsteriskStep::Refuse {
            temp_id: r.id.clone(),
            reason,
        };
        let greeting = greeting_kind(&r.folder).filter(|_| r.msgnum < 0);
        if greeting.is_none() && (crate::domain::Folder::parse(&r.folder).is_err() || r.msgnum < 0)
        {
            return refuse(format!(
                "{} is not a message folder voxmail knows (dir {})",
                r.folder, r.dir
            ));
        }
        let expected = self.sql.message_dir(&mailbox.address, &r.folder);
        if expected != r.dir {
            return refuse(format!(
                "dir {} is not the folder's path {expected} (Asterisk's astspooldir and voxmail's \
                 spool_dir differ)",
                r.dir
            ));
        }
        if let Some(kind) = greeting {
            return self.prepare_greeting(mailbox, r, kind, format).await;
        }
        let Ok(id) = r.id.parse::<MessageId>() else {
            return refuse(format!("its id {} is not a UUID", r.id));
        };
        let key = BlobKey::message(mailbox.id, id, "audio");
        match self.receive_recording(r, key.clone(), format).await {
            Ok(info) => {
                let (caller_id_name, caller_id_num) = split_callerid(&r.callerid);
                AsteriskStep::TakeIn {
                    id,
                    key: key.as_str().to_owned(),
                    info,
                    caller_id_name,
                    caller_id_num,
                    folder: r.folder.clone(),
                    origmailbox: mailbox.address.to_string(),
                }
            }
            Err(reason) => refuse(reason),
        }
    }

    /// Stores the greeting Asterisk recorded in row `r`, or decides to refuse the row.
    async fn prepare_greeting(
        &self,
        mailbox: &MailboxRecord,
        r: &AsteriskRow,
        kind: GreetingKind,
        format: Option<AsteriskFormat>,
    ) -> AsteriskStep {
        let key = BlobKey::greeting(mailbox.id, kind, MessageId::new(), "audio");
        match self.receive_recording(r, key.clone(), format).await {
            Ok(info) => AsteriskStep::TakeInGreeting {
                temp_id: r.id.clone(),
                greeting: Box::new(GreetingRecord {
                    mailbox_id: mailbox.id,
                    kind,
                    audio_key: key.as_str().to_owned(),
                    audio_format: info.format,
                    sample_rate: info.sample_rate,
                    channels: info.channels,
                    duration_ms: info.duration_ms as i64,
                    byte_size: info.byte_size as i64,
                    sha256: info.sha256,
                    updated_at: now_secs(),
                    asterisk_recording: None,
                }),
            },
            Err(reason) => AsteriskStep::Refuse {
                temp_id: r.id.clone(),
                reason,
            },
        }
    }

    /// Receives the `recording` of Asterisk's row `r` into the audio store under `key`, as an
    /// upload is received (recognised, measured, hashed); the error is the reason to refuse it.
    async fn receive_recording(
        &self,
        r: &AsteriskRow,
        key: BlobKey,
        format: Option<AsteriskFormat>,
    ) -> std::result::Result<AudioInfo, String> {
        let bytes = match self.sql.asterisk_recording(&r.id).await {
            Ok(Some(b)) if !b.is_empty() => b,
            Ok(_) => return Err("the row has no recording".into()),
            Err(e) => return Err(format!("its recording cannot be read: {e}")),
        };
        let hint = match format {
            Some(AsteriskFormat::Gsm) => RawHint::Gsm,
            _ => RawHint::Wav,
        };
        let body = futures_util::stream::iter([Ok::<_, std::io::Error>(bytes::Bytes::from(bytes))]);
        let limits = Limits {
            max_secs: MAX_TAKE_IN_SECS,
            min_secs: 0,
        };
        self.receive_audio(key, hint, body, limits)
            .await
            .map(|a| a.info)
            .map_err(|e| format!("its recording is not audio voxmail can read: {e}"))
    }
}

/// What a logged delete or move of Asterisk's means; `None` to look again next round.
fn decide_change(
    c: AsteriskChange,
    rows: &[AsteriskRow],
    claimed: &mut HashSet<String>,
    displaced: bool,
    now: i64,
) -> Option<AsteriskStep> {
    if c.asterisk_state == GREETING_ROW && c.kind == "delete" {
        // Asterisk re-records a greeting by deleting its row and inserting a new one.
        let rerecorded = rows.iter().any(|r| r.msgnum < 0 && r.dir == c.dir);
        return Some(match greeting_kind(&c.folder) {
            Some(kind) if !rerecorded => AsteriskStep::GreetingDeleted { seq: c.seq, kind },
            _ => AsteriskStep::Forget { seq: c.seq },
        });
    }
    if c.asterisk_state != 0 {
        // A row voxmail never announced (e.g. Asterisk's copy of a copy): nothing to tell.
        return Some(AsteriskStep::Forget { seq: c.seq });
    }
    if c.kind != "delete" {
        return Some(AsteriskStep::Moved {
            change: Box::new(c),
        });
    }
    if let Some(copy) = rows
        .iter()
        .find(|r| r.msg_id == c.msg_id && !claimed.contains(&r.id))
    {
        claimed.insert(copy.id.clone());
        return Some(AsteriskStep::Adopt {
            temp_id: copy.id.clone(),
            change: Box::new(c),
        });
    }
    if displaced {
        return Some(AsteriskStep::Restore {
            change: Box::new(c),
        });
    }
    // A young message's delete waits a little for Asterisk's insert into its slot to show.
    if is_young(&c) && now - c.changed_at <= COLLISION_SECS {
        return None;
    }
    Some(AsteriskStep::Deleted {
        change: Box::new(c),
    })
}

/// A message voxmail stored moments before Asterisk deleted it.
fn is_young(c: &AsteriskChange) -> bool {
    c.kind == "delete"
        && c.asterisk_state == 0
        && c.created_by != "asterisk"
        && c.changed_at - c.created_at <= COLLISION_SECS
}

/// `asterisk_state` of Asterisk's row of a greeting (msgnum -1), never a message.
const GREETING_ROW: i64 = 3;

/// The greeting Asterisk keeps under this directory name (`unavail`, `busy`, `temp`, `greet`).
fn greeting_kind(dir_name: &str) -> Option<GreetingKind> {
    GreetingKind::ALL
        .into_iter()
        .find(|k| k.asterisk_dir() == dir_name)
}

/// The audio key a take-in step stored (to remove when the step was not applied).
fn taken_in_key(step: &AsteriskStep) -> Option<String> {
    match step {
        AsteriskStep::TakeIn { key, .. } => Some(key.clone()),
        AsteriskStep::TakeInGreeting { greeting, .. } => Some(greeting.audio_key.clone()),
        _ => None,
    }
}

impl Voicemail {
    /// How a context is shared with Asterisk: the format its nodes store (if any) and how its
    /// PINs are kept (admin).
    pub async fn get_context_asterisk(
        &self,
        p: &Principal,
        context: &str,
    ) -> Result<(Option<AsteriskFormat>, PinStorage, AsteriskMail)> {
        self.admin_context(p, context, "Asterisk settings").await?;
        Ok((
            self.sql.context_asterisk_format(context).await?,
            self.sql.context_pin_storage(context).await?,
            self.sql.context_asterisk_mail(context).await?,
        ))
    }

    /// Sets how a context is shared with Asterisk (admin). Back to hashed PINs, every PIN kept
    /// as plain text (set while they were plain, or by Asterisk) is hashed at once.
    pub async fn put_context_asterisk(
        &self,
        p: &Principal,
        context: &str,
        format: Option<AsteriskFormat>,
        pins: PinStorage,
        mail: AsteriskMail,
    ) -> Result<()> {
        self.admin_context(p, context, "Asterisk settings").await?;
        self.sql
            .set_context_asterisk(context, format, pins, mail)
            .await?;
        tracing::info!(context, asterisk.format = ?format, asterisk.pins = pins.as_str(),
            asterisk.mail = mail.as_str(), "Asterisk settings of the context set");
        if pins == PinStorage::Hashed {
            self.hash_plain_pins(context).await?;
        }
        Ok(())
    }

    /// Hashes the PINs of a context kept as plain text.
    pub(crate) async fn hash_plain_pins(&self, context: &str) -> Result<usize> {
        let plain = self.sql.plain_pins(context).await?;
        for (uniqueid, pin) in &plain {
            let hash = self.hash_pin(pin.clone()).await?;
            self.sql.hash_plain_pin(uniqueid, pin, &hash).await?;
        }
        Ok(plain.len())
    }

    /// The copy of a recording Asterisk plays, for the `recording` column of a message of
    /// `mailbox` — when Asterisk nodes share the context's messages (its Asterisk format is set).
    /// Made as a rendition (so it is cached beside the original and goes with it), then read.
    pub(crate) async fn asterisk_copy(
        &self,
        mailbox: &MailboxRecord,
        key: &str,
        format: AudioFormat,
    ) -> Result<Option<Vec<u8>>> {
        // Messages kept in IMAP have no row for Asterisk's ODBC storage to read.
        if self.imap.as_ref().is_some_and(|i| i.handles(mailbox)) {
            return Ok(None);
        }
        let Some(target) = self
            .sql
            .context_asterisk_format(&mailbox.address.context)
            .await?
        else {
            return Ok(None);
        };
        let (output, rate) = match target {
            AsteriskFormat::Wav49 => (OutputFormat::Wav49, None),
            AsteriskFormat::Gsm => (OutputFormat::Gsm, None),
            AsteriskFormat::Wav => (OutputFormat::Wav, Some(8000)),
        };
        let r = Rendition::new(output, rate, None, 0, 0).map_err(ServiceError::Invalid)?;
        let (rkey, size) = self.rendition(Original { key, format }, &r).await?;
        let read = self.blobs.open(&rkey, None).await?;
        let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
        let mut stream = read.stream;
        while let Some(chunk) = futures_util::StreamExt::next(&mut stream).await {
            bytes.extend_from_slice(&chunk.map_err(|e| ServiceError::Unavailable(e.to_string()))?);
        }
        Ok(Some(bytes))
    }
}
