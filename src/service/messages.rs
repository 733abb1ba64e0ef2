//! Listing, playing, moving, deleting and forwarding messages; MWI counts.

use futures_util::TryStreamExt as _;

use super::{Result, ServiceError, Voicemail};
use crate::blob::{BlobKey, ByteStream};
use crate::domain::{Folder, MailboxAddress, MailboxId, MessageId, MwiCounts, Principal};
use crate::store::{
    ForwardTarget, Inserted, MailboxRecord, MessageRecord, MessageStore as _, NewMessage, Page,
    StoreError,
};

/// Audio bytes to send.
pub struct AudioStream {
    /// Size of the whole recording.
    pub total: u64,
    /// The requested range (inclusive), if any.
    pub range: Option<(u64, u64)>,
    pub stream: ByteStream,
}

/// A forward: copy a message into other mailboxes.
#[derive(Debug, Clone)]
pub struct ForwardRequest {
    pub to: Vec<MailboxAddress>,
    /// Keep the original (default true); false removes it once the copies are stored.
    pub keep: bool,
}

fn message_not_found(e: StoreError, id: MessageId) -> ServiceError {
    match e {
        StoreError::NotFound => ServiceError::NotFound(format!("message {id}")),
        other => other.into(),
    }
}

impl Voicemail {
    /// Messages of a mailbox.
    pub async fn list_messages(
        &self,
        p: &Principal,
        address: &MailboxAddress,
        folder: Option<&Folder>,
        after: Option<MessageId>,
        limit: u32,
    ) -> Result<Page<MessageRecord>> {
        let mailbox = self.visible_mailbox(p, address).await?;
        Ok(self
            .messages
            .list_messages(&mailbox, folder, after, limit)
            .await?)
    }

    /// One message.
    pub async fn get_message(
        &self,
        p: &Principal,
        address: &MailboxAddress,
        id: MessageId,
    ) -> Result<MessageRecord> {
        // A message kept in SQL is one read by its id and address (every fetch of audio starts
        // here); the mailbox is read only to tell a missing mailbox from a missing message.
        if p.sees_context(&address.context)
            && !self
                .imap
                .as_ref()
                .is_some_and(|imap| imap.handles_address(address))
            && let Some(m) = self.sql.message_at(address, id).await?
        {
            return Ok(m);
        }
        let mailbox = self.visible_mailbox(p, address).await?;
        self.messages
            .get_message(&mailbox, id)
            .await
            .map_err(|e| message_not_found(e, id))
    }

    /// Opens a message's original audio, or an inclusive byte range of it.
    pub async fn open_audio(
        &self,
        message: &MessageRecord,
        range: Option<(u64, u64)>,
    ) -> Result<AudioStream> {
        self.open_blob(&message.audio_key, message.byte_size as u64, range)
            .await
    }

    /// Opens a stored blob of `size` bytes, or an inclusive byte range of it.
    pub(crate) async fn open_blob(
        &self,
        stored_key: &str,
        size: u64,
        range: Option<(u64, u64)>,
    ) -> Result<AudioStream> {
        if stored_key.starts_with(super::imap_store::AUDIO_KEY_PREFIX)
            || stored_key.starts_with(super::imap_store::GREETING_KEY_PREFIX)
        {
            return self.open_imap_audio(stored_key, range).await;
        }
        let key = BlobKey::from_stored(stored_key)
            .ok_or_else(|| ServiceError::Unavailable("the stored audio key is malformed".into()))?;
        if let Some((start, end)) = range
            && (start > end || end >= size)
        {
            return Err(ServiceError::RangeNotSatisfiable { size });
        }
        let read = self.blobs.open(&key, range).await?;
        Ok(AudioStream {
            total: read.total,
            range,
            stream: read.stream,
        })
    }

    /// The recording of an IMAP message (`imap:<mailbox>:<folder>:<uid>:…`) or greeting
    /// (`imapgreeting:<mailbox>:<name>:<uid>`), or a range of it.
    async fn open_imap_audio(&self, key: &str, range: Option<(u64, u64)>) -> Result<AudioStream> {
        let Some(imap) = &self.imap else {
            return Err(ServiceError::NotImplemented(
                "no context is configured for IMAP storage".into(),
            ));
        };
        let data = if let Some(k) = super::imap_store::parse_audio_key(key) {
            let mailbox = self.sql.get_mailbox_by_id(k.mailbox).await?;
            imap.audio(&mailbox, &k.folder, k.uid).await?
        } else if let Some((mailbox, uid)) = super::imap_store::parse_greeting_key(key) {
            let mailbox = self.sql.get_mailbox_by_id(mailbox).await?;
            imap.greeting_audio(&mailbox, uid).await?
        } else {
            return Err(ServiceError::Unavailable(
                "the stored audio key is malformed".into(),
            ));
        };
        let size = data.len() as u64;
        let bytes = match range {
            Some((start, end)) if start > end || end >= size => {
                return Err(ServiceError::RangeNotSatisfiable { size });
            }
            Some((start, end)) => bytes::Bytes::from(data).slice(start as usize..=end as usize),
            None => bytes::Bytes::from(data),
        };
        Ok(AudioStream {
            total: size,
            range,
            stream: Box::pin(futures_util::stream::once(async move { Ok(bytes) })),
        })
    }

    /// Moves a message and/or marks it read or unread.
    pub async fn update_message(
        &self,
        p: &Principal,
        address: &MailboxAddress,
        id: MessageId,
        folder: Option<Folder>,
        read: Option<bool>,
    ) -> Result<MessageRecord> {
        let mailbox = self.visible_mailbox(p, address).await?;
        if folder.is_none() && read.is_none() {
            return Err(ServiceError::Invalid(
                "give folder and/or read to change".into(),
            ));
        }
        // Asterisk counts every message in INBOX (and Urgent) as new: where it shares the
        // mailbox, a message that is read is in Old, so both sides count alike.
        if read == Some(true)
            && folder.as_ref().is_some_and(Folder::counts_as_new)
            && self
                .sql
                .context_asterisk_format(&mailbox.address.context)
                .await?
                .is_some()
        {
            return Err(ServiceError::Invalid(format!(
                "context {} is shared with Asterisk, which counts every message in {} as new: \
                 a read message goes to Old (send {{\"read\": true}} alone)",
                mailbox.address.context,
                folder.as_ref().map_or("INBOX", Folder::as_str)
            )));
        }
        let changed = self
            .messages
            .update_message(&mailbox, id, folder, read, self.maxmsg(&mailbox))
            .await
            .map_err(|e| message_not_found(e, id))?;
        self.notify_changed();
        Ok(changed.value)
    }

    /// Deletes a message and its audio.
    pub async fn delete_message(
        &self,
        p: &Principal,
        address: &MailboxAddress,
        id: MessageId,
    ) -> Result<()> {
        let mailbox = self.visible_mailbox(p, address).await?;
        self.delete_message_of(&mailbox, id).await
    }

    /// Deletes a message of a mailbox the caller was already allowed to see (or an internal use
    /// case such as `deletevoicemail`): the MWI event is written, then the audio removed.
    pub(crate) async fn delete_message_of(
        &self,
        mailbox: &MailboxRecord,
        id: MessageId,
    ) -> Result<()> {
        let deleted = self
            .messages
            .delete_message(mailbox, id)
            .await
            .map_err(|e| message_not_found(e, id))?;
        self.notify_changed();
        self.forget_audio(mailbox, &deleted.value).await;
        Ok(())
    }

    /// Removes the audio of a message that is gone: its blob and cached renditions, or for an
    /// IMAP message (whose recording went with it) the renditions cached in the audio store.
    pub(crate) async fn forget_audio(&self, mailbox: &MailboxRecord, message: &MessageRecord) {
        if message
            .audio_key
            .starts_with(super::imap_store::AUDIO_KEY_PREFIX)
        {
            self.remove_imap_renditions(mailbox.id, message.id).await;
        } else {
            self.remove_blobs([message.audio_key.clone()]).await;
        }
    }

    /// Forwards a message to other mailboxes, all or nothing.
    pub async fn forward_message(
        &self,
        p: &Principal,
        address: &MailboxAddress,
        id: MessageId,
        req: ForwardRequest,
    ) -> Result<Vec<MessageRecord>> {
        if req.to.is_empty() || req.to.len() > 100 {
            return Err(ServiceError::Invalid("to must list 1-100 mailboxes".into()));
        }
        let source = self.visible_mailbox(p, address).await?;
        let original = self
            .messages
            .get_message(&source, id)
            .await
            .map_err(|e| message_not_found(e, id))?;
        let mut seen = std::collections::HashSet::new();
        let mut targets = Vec::with_capacity(req.to.len());
        for to in &req.to {
            if !seen.insert(to.clone()) {
                return Err(ServiceError::Invalid(format!("{to} is listed twice")));
            }
            let mailbox = self.visible_mailbox(p, to).await?;
            let new_id = MessageId::new();
            let key = BlobKey::message(mailbox.id, new_id, "audio");
            let folder = if original.flag == crate::domain::Flag::Urgent {
                Folder::Urgent
            } else {
                Folder::Inbox
            };
            targets.push(ForwardTarget {
                maxmsg: self.maxmsg(&mailbox),
                message: NewMessage {
                    id: new_id,
                    folder,
                    flag: original.flag,
                    category: original.category.clone(),
                    context: original.context.clone(),
                    callerid: original.callerid.clone(),
                    caller_id_num: original.caller_id_num.clone(),
                    caller_id_name: original.caller_id_name.clone(),
                    origtime: original.origtime,
                    duration_ms: original.duration_ms,
                    origmailbox: source.address.to_string(),
                    exten: original.exten.clone(),
                    rdnis: original.rdnis.clone(),
                    priority: original.priority,
                    callerchan: original.callerchan.clone(),
                    msg_id: original.msg_id.clone(),
                    audio_key: key.as_str().to_owned(),
                    audio_format: original.audio_format,
                    sample_rate: original.sample_rate,
                    channels: original.channels,
                    byte_size: original.byte_size,
                    sha256: original.sha256.clone(),
                    forwarded_from: Some(original.id),
                    asterisk_recording: self
                        .asterisk_copy(&mailbox, &original.audio_key, original.audio_format)
                        .await?,
                },
                mailbox,
            });
        }
        if self.is_imap(&source) || targets.iter().any(|t| self.is_imap(&t.mailbox)) {
            return self
                .forward_with_imap(&source, &original, targets, req.keep)
                .await;
        }
        let copied = self.copy_audio(&original, &targets).await?;
        match self
            .messages
            .forward_message(&source, id, targets, req.keep)
            .await
        {
            Ok(created) => {
                self.notify_changed();
                if !req.keep {
                    self.remove_blobs([original.audio_key]).await;
                }
                Ok(created)
            }
            Err(e) => {
                self.remove_blobs(copied).await;
                Err(message_not_found(e, id))
            }
        }
    }

    /// Copies a stored (SQL) message's audio to the keys of the targets' copies; returns the
    /// keys written (all of them, or none on failure).
    async fn copy_audio(
        &self,
        original: &MessageRecord,
        targets: &[ForwardTarget],
    ) -> Result<Vec<String>> {
        let src_key = BlobKey::from_stored(&original.audio_key)
            .ok_or_else(|| ServiceError::Unavailable("the stored audio key is malformed".into()))?;
        let mut copied = Vec::new();
        for t in targets {
            let Some(key) = BlobKey::from_stored(&t.message.audio_key) else {
                self.remove_blobs(copied).await;
                return Err(ServiceError::Unavailable(
                    "a forwarded copy's audio key is malformed".into(),
                ));
            };
            if let Err(e) = self.blobs.copy(&src_key, &key).await {
                self.remove_blobs(copied).await;
                return Err(e.into());
            }
            copied.push(t.message.audio_key.clone());
        }
        Ok(copied)
    }

    /// A forward from or into IMAP-backed mailboxes. Copies into IMAP mailboxes are APPENDed
    /// first, each composed for its mailbox (own msgnum, headers and `attachfmt`); then the SQL
    /// copies are stored (in one transaction when the source is in SQL, as an ordinary forward);
    /// then, without `keep`, the original is deleted. IMAP and SQL share no transaction, so
    /// "all or nothing" is kept by undoing: when a step fails, the copies already made are
    /// deleted again and the original is left as it was.
    async fn forward_with_imap(
        &self,
        source: &MailboxRecord,
        original: &MessageRecord,
        targets: Vec<ForwardTarget>,
        keep: bool,
    ) -> Result<Vec<MessageRecord>> {
        let id = original.id;
        let order: Vec<MailboxId> = targets.iter().map(|t| t.mailbox.id).collect();
        let (into_imap, into_sql): (Vec<_>, Vec<_>) =
            targets.into_iter().partition(|t| self.is_imap(&t.mailbox));
        let source_in_imap = self.is_imap(source);
        let data = if source_in_imap || !into_imap.is_empty() {
            self.original_bytes(source, original).await?
        } else {
            Vec::new()
        };
        let mut created: Vec<(MailboxRecord, MessageRecord)> = Vec::new();
        let done = self
            .make_copies(source, original, into_imap, into_sql, &data, &mut created)
            .await;
        let done = match done {
            Ok(()) if !keep => self
                .messages
                .delete_message(source, id)
                .await
                .map(|d| Some(d.value))
                .map_err(|e| message_not_found(e, id)),
            Ok(()) => Ok(None),
            Err(e) => Err(e),
        };
        match done {
            Ok(removed) => {
                self.notify_changed();
                if let Some(removed) = removed {
                    self.forget_audio(source, &removed).await;
                }
                let mut out: Vec<MessageRecord> = created.into_iter().map(|(_, r)| r).collect();
                out.sort_by_key(|r| order.iter().position(|m| *m == r.mailbox_id));
                Ok(out)
            }
            Err(e) => {
                for (mailbox, copy) in created.into_iter().rev() {
                    match self.messages.delete_message(&mailbox, copy.id).await {
                        Ok(_) => self.forget_audio(&mailbox, &copy).await,
                        Err(undo) => tracing::error!(
                            message.id = %copy.id, mailbox = %mailbox.address, error = %undo,
                            "a failed forward could not remove its copy"
                        ),
                    }
                }
                self.notify_changed();
                Err(e)
            }
        }
    }

    /// The copies of a forward with IMAP on either side; each one made is pushed to `created`.
    async fn make_copies(
        &self,
        source: &MailboxRecord,
        original: &MessageRecord,
        into_imap: Vec<ForwardTarget>,
        into_sql: Vec<ForwardTarget>,
        data: &[u8],
        created: &mut Vec<(MailboxRecord, MessageRecord)>,
    ) -> Result<()> {
        let id = original.id;
        let source_in_imap = self.is_imap(source);
        if let (Some(imap), false) = (&self.imap, into_imap.is_empty()) {
            // The IMAP store composes each copy from the recording put in its deposit store
            // (local files), and undoes its own copies when one fails.
            let store = imap.deposit_store().await?;
            let keys: Vec<String> = into_imap
                .iter()
                .map(|t| t.message.audio_key.clone())
                .collect();
            let mut staged = Ok(());
            for k in &keys {
                staged = self.stage(&*store, k, data).await;
                if staged.is_err() {
                    break;
                }
            }
            let copies = match staged {
                Ok(()) => self
                    .messages
                    .forward_message(source, id, into_imap.clone(), true)
                    .await
                    .map_err(|e| message_not_found(e, id)),
                Err(e) => Err(e),
            };
            if copies.is_err() {
                for k in keys.iter().filter_map(|k| BlobKey::from_stored(k)) {
                    imap.remove_deposit(&k).await;
                }
            }
            for c in copies? {
                if let Some(t) = into_imap.iter().find(|t| t.mailbox.id == c.mailbox_id) {
                    created.push((t.mailbox.clone(), c));
                }
            }
        }
        if into_sql.is_empty() {
            return Ok(());
        }
        if !source_in_imap {
            // A SQL original: its SQL copies are one ordinary forward (one transaction, the
            // forward e-mails); the original is removed afterwards, if at all.
            let copied = self.copy_audio(original, &into_sql).await?;
            let mailboxes: Vec<MailboxRecord> =
                into_sql.iter().map(|t| t.mailbox.clone()).collect();
            match self.sql.forward_message(source, id, into_sql, true).await {
                Ok(copies) => {
                    for c in copies {
                        if let Some(m) = mailboxes.iter().find(|m| m.id == c.mailbox_id) {
                            created.push((m.clone(), c));
                        }
                    }
                    return Ok(());
                }
                Err(e) => {
                    self.remove_blobs(copied).await;
                    return Err(message_not_found(e, id));
                }
            }
        }
        // An IMAP original: each SQL copy is stored like a deposit of the attachment, and
        // e-mailed as a forward (the forwarding mailbox is the caller).
        let by = (source.address.mailbox.as_str(), source.fullname.as_str());
        for t in into_sql {
            let key = t.message.audio_key.clone();
            self.stage(&*self.blobs, &key, data).await?;
            match self
                .sql
                .insert_forwarded_copy(&t.mailbox, t.message, t.maxmsg, by)
                .await
            {
                Ok(Inserted::Created(c)) => created.push((t.mailbox, c.value)),
                Ok(Inserted::Existing(_)) => {}
                Err(e) => {
                    self.remove_blobs([key]).await;
                    return Err(e.into());
                }
            }
        }
        Ok(())
    }

    /// Writes a recording under `key` into `store`.
    async fn stage(
        &self,
        store: &dyn crate::blob::BlobStore,
        key: &str,
        data: &[u8],
    ) -> Result<()> {
        let key = BlobKey::from_stored(key).ok_or_else(|| {
            ServiceError::Unavailable("a forwarded copy's audio key is malformed".into())
        })?;
        let mut w = store.writer(&key).await?;
        if let Err(e) = w.write(data).await {
            w.abort().await;
            return Err(e.into());
        }
        w.commit().await?;
        Ok(())
    }

    /// The bytes of a message's recording: the IMAP attachment, or the stored blob.
    pub(super) async fn original_bytes(
        &self,
        mailbox: &MailboxRecord,
        message: &MessageRecord,
    ) -> Result<Vec<u8>> {
        if let Some(k) = super::imap_store::parse_audio_key(&message.audio_key) {
            let Some(imap) = &self.imap else {
                return Err(ServiceError::NotImplemented(
                    "no context is configured for IMAP storage".into(),
                ));
            };
            return imap
                .audio(mailbox, &k.folder, k.uid)
                .await
                .map_err(|e| message_not_found(e, message.id));
        }
        let key = BlobKey::from_stored(&message.audio_key)
            .ok_or_else(|| ServiceError::Unavailable("the stored audio key is malformed".into()))?;
        let read = self.blobs.open(&key, None).await?;
        let chunks: Vec<bytes::Bytes> = read
            .stream
            .try_collect()
            .await
            .map_err(crate::blob::BlobError::Io)?;
        Ok(chunks.concat())
    }

    /// A mailbox's MWI counts.
    pub async fn mwi(&self, p: &Principal, address: &MailboxAddress) -> Result<MwiCounts> {
        let mailbox = self.visible_mailbox(p, address).await?;
        Ok(self.messages.counts(&mailbox).await?)
    }
}
