//! The deposit path: audio streamed to storage, then one transaction (quota + insert + event).

use bytes::Bytes;
use futures_util::Stream;

use super::audio_in::Limits;
use super::{ReceivedAudio, Result, ServiceError, Voicemail};
use crate::audio::RawHint;
use crate::blob::BlobKey;
use crate::domain::{Flag, Folder, MailboxAddress, MessageId, Principal, now_secs};
use crate::store::{Inserted, MailboxRecord, MessageRecord, NewMessage};

/// What the PBX tells about a message besides its audio (Asterisk's msgNNNN.txt fields).
#[derive(Debug, Clone, Default, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DepositMeta {
    /// Calling number.
    #[serde(default)]
    pub caller_id_num: Option<String>,
    /// Calling name.
    #[serde(default)]
    pub caller_id_name: Option<String>,
    /// Mark the message urgent (it goes to the Urgent folder).
    #[serde(default)]
    pub urgent: Option<bool>,
    /// Asterisk VM_CATEGORY.
    #[serde(default)]
    pub category: Option<String>,
    /// Dialplan context the call came from.
    #[serde(default)]
    pub context: Option<String>,
    /// Extension dialled.
    #[serde(default)]
    pub exten: Option<String>,
    /// Redirecting number.
    #[serde(default)]
    pub rdnis: Option<String>,
    /// Dialplan priority.
    #[serde(default)]
    pub priority: Option<i64>,
    /// Channel of the caller.
    #[serde(default)]
    pub callerchan: Option<String>,
    /// When the message was left (Unix seconds); default now.
    #[serde(default)]
    pub orig_time: Option<i64>,
}

fn field(name: &str, v: Option<String>, max: usize) -> Result<String> {
    let v = v.unwrap_or_default();
    if v.chars().count() > max || v.chars().any(char::is_control) {
        return Err(ServiceError::Invalid(format!(
            "{name} must be at most {max} characters, without control characters"
        )));
    }
    Ok(v)
}

/// Asterisk's `ast_callerid_merge`: `"Name" <num>`, or whichever part exists, or "Unknown".
pub(crate) fn merge_callerid(name: &str, num: &str) -> String {
    match (name.is_empty(), num.is_empty()) {
        (false, false) => format!("\"{name}\" <{num}>"),
        (false, true) => name.to_owned(),
        (true, false) => num.to_owned(),
        (true, true) => "Unknown".to_owned(),
    }
}

/// A validated Idempotency-Key.
pub(crate) fn check_idempotency_key(k: &str) -> Result<()> {
    if k.is_empty() || k.len() > 255 || !k.bytes().all(|b| (0x21..0x7f).contains(&b)) {
        return Err(ServiceError::Invalid(
            "Idempotency-Key must be 1-255 visible ASCII characters".into(),
        ));
    }
    Ok(())
}

pub(crate) struct ValidMeta {
    caller_id_num: String,
    caller_id_name: String,
    urgent: bool,
    category: String,
    context: String,
    exten: String,
    rdnis: String,
    priority: i64,
    callerchan: String,
    orig_time: i64,
}

impl DepositMeta {
    pub(crate) fn validate(self) -> Result<ValidMeta> {
        let now = now_secs();
        let orig_time = self.orig_time.unwrap_or(now);
        // A recording cannot be older than Asterisk's epoch-era PBXes or from the future.
        if !(0..=now + 86_400).contains(&orig_time) {
            return Err(ServiceError::Invalid(
                "orig_time must be Unix seconds, not in the future".into(),
            ));
        }
        Ok(ValidMeta {
            caller_id_num: field("caller_id_num", self.caller_id_num, 80)?,
            caller_id_name: field("caller_id_name", self.caller_id_name, 80)?,
            urgent: self.urgent.unwrap_or(false),
            category: field("category", self.category, 30)?,
            context: field("context", self.context, 80)?,
            exten: field("exten", self.exten, 80)?,
            rdnis: field("rdnis", self.rdnis, 80)?,
            priority: self.priority.unwrap_or(0),
            callerchan: field("callerchan", self.callerchan, 255)?,
            orig_time,
        })
    }
}

impl Voicemail {
    pub(crate) fn maxmsg(&self, m: &MailboxRecord) -> u32 {
        m.maxmsg.unwrap_or(self.config.voicemail.default_maxmsg)
    }

    pub(crate) fn limits(&self, m: &MailboxRecord) -> Limits {
        Limits {
            max_secs: m.maxsecs.unwrap_or(self.config.voicemail.default_maxsecs),
            min_secs: m.minsecs.unwrap_or(self.config.voicemail.default_minsecs),
        }
    }

    /// Looks up the mailbox for a deposit, and the message an earlier try with the same
    /// Idempotency-Key stored (so a retry does not even send its body to storage).
    pub async fn begin_deposit(
        &self,
        p: &Principal,
        address: &MailboxAddress,
        idempotency_key: Option<&str>,
    ) -> Result<(MailboxRecord, Option<MessageRecord>)> {
        if let Some(k) = idempotency_key {
            check_idempotency_key(k)?;
        }
        let mailbox = self.visible_mailbox(p, address).await?;
        let existing = match idempotency_key {
            Some(k) => self.messages.find_idempotent(&mailbox, k).await?,
            None => None,
        };
        Ok((mailbox, existing))
    }

    /// Streams a deposit's audio to storage under a key derived from a fresh message id.
    pub async fn receive_deposit_audio<S, E>(
        &self,
        mailbox: &MailboxRecord,
        hint: RawHint,
        body: S,
    ) -> Result<(MessageId, ReceivedAudio)>
    where
        S: Stream<Item = std::result::Result<Bytes, E>> + Unpin + Send,
        E: std::fmt::Display,
    {
        let id = MessageId::new();
        // The extension is fixed per id; the real format is only known after sniffing, and the
        // stored row records it, so the key uses a neutral extension.
        let key = BlobKey::message(mailbox.id, id, "audio");
        let limits = self.limits(mailbox);
        let audio = match &self.imap {
            // An IMAP deposit goes from a local file into the APPEND, never to the audio store.
            Some(imap) if imap.handles(mailbox) => {
                let store = imap.deposit_store().await?;
                self.receive_audio_into(&*store, key, hint, body, limits)
                    .await?
            }
            _ => self.receive_audio(key, hint, body, limits).await?,
        };
        Ok((id, audio))
    }

    /// Commits a deposit whose audio is stored. Returns the message and whether it is new (false
    /// when the Idempotency-Key matched an earlier deposit). On failure the audio is removed.
    pub async fn commit_deposit(
        &self,
        mailbox: &MailboxRecord,
        id: MessageId,
        audio: ReceivedAudio,
        meta: DepositMeta,
        idempotency_key: Option<&str>,
    ) -> Result<(MessageRecord, bool)> {
        let key = audio.key.as_str().to_owned();
        let result = self
            .commit_inner(mailbox, id, audio, meta, idempotency_key)
            .await;
        match &result {
            Ok((_, true)) => {}
            // A retry that lost the race to the first try: its audio is not needed.
            Ok((_, false)) | Err(_) => self.remove_deposit_audio(key).await,
        }
        result
    }

    async fn commit_inner(
        &self,
        mailbox: &MailboxRecord,
        id: MessageId,
        audio: ReceivedAudio,
        meta: DepositMeta,
        idempotency_key: Option<&str>,
    ) -> Result<(MessageRecord, bool)> {
        let meta = meta.validate()?;
        let (folder, flag) = if meta.urgent {
            (Folder::Urgent, Flag::Urgent)
        } else {
            (Folder::Inbox, Flag::None)
        };
        let uuid_tail = u32::from_be_bytes(
            id.0.as_bytes()[12..16]
                .try_into()
                .expect("a UUID has 16 bytes"),
        );
        let message = NewMessage {
            id,
            folder,
            flag,
            callerid: merge_callerid(&meta.caller_id_name, &meta.caller_id_num),
            category: meta.category,
            context: meta.context,
            caller_id_num: meta.caller_id_num,
            caller_id_name: meta.caller_id_name,
            origtime: meta.orig_time,
            duration_ms: audio.info.duration_ms as i64,
            origmailbox: mailbox.address.to_string(),
            exten: meta.exten,
            rdnis: meta.rdnis,
            priority: meta.priority,
            callerchan: meta.callerchan,
            msg_id: format!("{}-{uuid_tail:08x}", meta.orig_time),
            audio_key: audio.key.as_str().to_owned(),
            audio_format: audio.info.format,
            sample_rate: audio.info.sample_rate,
            channels: audio.info.channels,
            byte_size: audio.info.byte_size as i64,
            asterisk_recording: self
                .asterisk_copy(mailbox, audio.key.as_str(), audio.info.format)
                .await?,
            sha256: audio.info.sha256,
            forwarded_from: None,
        };
        let inserted = self
            .messages
            .insert_message(mailbox, message, self.maxmsg(mailbox), idempotency_key)
            .await?;
        Ok(match inserted {
            Inserted::Created(c) => {
                self.notify_changed();
                tracing::info!(
                    message.id = %c.value.id,
                    mailbox.id = %mailbox.id,
                    mailbox = %mailbox.address,
                    mwi.new = c.counts.new,
                    mwi.old = c.counts.old,
                    "message deposited"
                );
                (c.value, true)
            }
            Inserted::Existing(m) => (m, false),
        })
    }

    /// Discards audio received for a deposit that will not be committed.
    pub async fn discard_audio(&self, audio: ReceivedAudio) {
        self.remove_deposit_audio(audio.key.as_str().to_owned())
            .await;
    }

    /// Removes a deposit's received audio, wherever it was received (the audio store, or the
    /// IMAP store's deposit scratch; removing a missing blob is no error).
    async fn remove_deposit_audio(&self, key: String) {
        if let (Some(imap), Some(k)) = (&self.imap, BlobKey::from_stored(&key)) {
            imap.remove_deposit(&k).await;
        }
        self.remove_blobs([key]).await;
    }
}
