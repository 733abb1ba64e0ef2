//! Listing, playing, moving, deleting and forwarding messages; MWI counts.

use super::{Result, ServiceError, Voicemail};
use crate::blob::{BlobKey, ByteStream};
use crate::domain::{Folder, MailboxAddress, MessageId, MwiCounts, Principal};
use crate::store::{ForwardTarget, MessageRecord, NewMessage, Page, StoreError};

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
        if stored_key.starts_with(super::imap_store::AUDIO_KEY_PREFIX) {
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

    /// The recording of an IMAP message (`imap:<mailbox>:<folder>:<uid>`), or a range of it.
    async fn open_imap_audio(&self, key: &str, range: Option<(u64, u64)>) -> Result<AudioStream> {
        let (imap, Some((mailbox_id, folder, uid))) =
            (&self.imap, super::imap_store::parse_audio_key(key))
        else {
            return Err(ServiceError::Unavailable(
                "the stored audio key is malformed".into(),
            ));
        };
        let Some(imap) = imap else {
            return Err(ServiceError::NotImplemented(
                "no context is configured for IMAP storage".into(),
            ));
        };
        let mailbox = self.sql.get_mailbox_by_id(mailbox_id).await?;
        let data = imap.audio(&mailbox, &folder, uid).await?;
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
        mailbox: &crate::store::MailboxRecord,
        id: MessageId,
    ) -> Result<()> {
        let deleted = self
            .messages
            .delete_message(mailbox, id)
            .await
            .map_err(|e| message_not_found(e, id))?;
        self.notify_changed();
        self.remove_blobs([deleted.value.audio_key]).await;
        Ok(())
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
        if self.is_imap(&source) {
            return Err(ServiceError::NotImplemented(
                "forwarding a message kept in IMAP is not implemented yet".into(),
            ));
        }
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
            if self.is_imap(&mailbox) {
                return Err(ServiceError::NotImplemented(
                    "forwarding into a mailbox kept in IMAP is not implemented yet".into(),
                ));
            }
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
                },
                mailbox,
            });
        }
        let src_key = BlobKey::from_stored(&original.audio_key)
            .ok_or_else(|| ServiceError::Unavailable("the stored audio key is malformed".into()))?;
        let mut copied = Vec::new();
        for t in &targets {
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

    /// A mailbox's MWI counts.
    pub async fn mwi(&self, p: &Principal, address: &MailboxAddress) -> Result<MwiCounts> {
        let mailbox = self.visible_mailbox(p, address).await?;
        Ok(self.messages.counts(&mailbox).await?)
    }
}
