//! Greetings: unavailable, busy, temp and name recordings of a mailbox. They live in SQL and the
//! audio store, or, for IMAP contexts with `greetings = "imap"`, as messages in the mailbox's
//! greeting folder in Asterisk's `imapgreetings` format (through the IMAP store directly:
//! `RoutedStore` sends every greeting to SQL).

use bytes::Bytes;
use futures_util::Stream;

use super::{AudioStream, ReceivedAudio, Result, ServiceError, Voicemail, imap_store};
use crate::audio::RawHint;
use crate::blob::BlobKey;
use crate::domain::{GreetingKind, MailboxAddress, MessageId, Principal, now_secs};
use crate::store::{GreetingRecord, MailboxRecord, MessageStore as _, StoreError};

fn greeting_not_found(e: StoreError, kind: GreetingKind) -> ServiceError {
    match e {
        StoreError::NotFound => ServiceError::NotFound(format!("{} greeting", kind.as_str())),
        other => other.into(),
    }
}

impl Voicemail {
    /// Stores (or replaces) a greeting from a streamed body.
    pub async fn put_greeting<S, E>(
        &self,
        p: &Principal,
        address: &MailboxAddress,
        kind: GreetingKind,
        hint: RawHint,
        body: S,
    ) -> Result<(GreetingRecord, bool)>
    where
        S: Stream<Item = std::result::Result<Bytes, E>> + Unpin + Send,
        E: std::fmt::Display,
    {
        let mailbox = self.visible_mailbox(p, address).await?;
        let key = BlobKey::greeting(mailbox.id, kind, MessageId::new(), "audio");
        let mut limits = self.limits(&mailbox);
        limits.min_secs = 0;
        if let Some(imap) = self.imap_greetings(&mailbox) {
            // Received into a local file and APPENDed from there, as a deposit into IMAP.
            let store = imap.deposit_store().await?;
            let audio = self
                .receive_audio_into(&*store, key, hint, body, limits)
                .await?;
            let record = self.greeting_record(&mailbox, kind, &audio);
            return match imap.put_greeting(&mailbox, record).await {
                Ok(replaced) => {
                    self.record_imap_greeting(imap, &mailbox, "greeting.changed")
                        .await;
                    self.notify_changed();
                    let stored = imap
                        .get_greeting(&mailbox, kind)
                        .await
                        .map_err(|e| greeting_not_found(e, kind))?;
                    Ok((stored, replaced.is_none()))
                }
                Err(e) => {
                    imap.remove_deposit(&audio.key).await;
                    Err(e.into())
                }
            };
        }
        let audio = self.receive_audio(key, hint, body, limits).await?;
        let mut record = self.greeting_record(&mailbox, kind, &audio);
        match self
            .asterisk_copy(&mailbox, audio.key.as_str(), audio.info.format)
            .await
        {
            Ok(copy) => record.asterisk_recording = copy,
            Err(e) => {
                self.discard_audio(audio).await;
                return Err(e);
            }
        }
        match self.messages.put_greeting(&mailbox, record.clone()).await {
            Ok(replaced) => {
                self.notify_changed();
                let created = replaced.is_none();
                self.remove_blobs(replaced).await;
                record.asterisk_recording = None;
                Ok((record, created))
            }
            Err(e) => {
                self.discard_audio(audio).await;
                Err(e.into())
            }
        }
    }

    /// Writes the outbox event of a greeting change kept in IMAP (as `put_greeting` and
    /// `delete_greeting` of the SQL store do), with the mailbox's counts read from IMAP. The change
    /// is done; when the event cannot be written that is logged.
    async fn record_imap_greeting(
        &self,
        imap: &imap_store::ImapMessageStore,
        mailbox: &MailboxRecord,
        event_type: &str,
    ) {
        let recorded = match imap.counts(mailbox).await {
            Ok(c) => self
                .sql
                .record_imap_counts(
                    mailbox,
                    c,
                    crate::store::ImapChange::Made {
                        event_type,
                        message_id: None,
                        notify: None,
                        forwarded_by: None,
                    },
                )
                .await
                .map(|_| ()),
            Err(e) => Err(e),
        };
        if let Err(e) = recorded {
            tracing::warn!(mailbox = %mailbox.address, error = %e,
                "cannot write the event of an IMAP greeting change");
        }
    }

    /// The IMAP store, when this mailbox's greetings are kept in IMAP (`greetings = "imap"`).
    fn imap_greetings(&self, mailbox: &MailboxRecord) -> Option<&imap_store::ImapMessageStore> {
        self.imap
            .as_deref()
            .filter(|i| i.handles(mailbox) && i.keeps_greetings(mailbox))
    }

    fn greeting_record(
        &self,
        mailbox: &MailboxRecord,
        kind: GreetingKind,
        audio: &ReceivedAudio,
    ) -> GreetingRecord {
        GreetingRecord {
            mailbox_id: mailbox.id,
            kind,
            audio_key: audio.key.as_str().to_owned(),
            audio_format: audio.info.format,
            sample_rate: audio.info.sample_rate,
            channels: audio.info.channels,
            duration_ms: audio.info.duration_ms as i64,
            byte_size: audio.info.byte_size as i64,
            sha256: audio.info.sha256.clone(),
            updated_at: now_secs(),
            asterisk_recording: None,
        }
    }

    /// A greeting's record.
    pub async fn get_greeting(
        &self,
        p: &Principal,
        address: &MailboxAddress,
        kind: GreetingKind,
    ) -> Result<GreetingRecord> {
        let mailbox = self.visible_mailbox(p, address).await?;
        let got = match self.imap_greetings(&mailbox) {
            Some(imap) => imap.get_greeting(&mailbox, kind).await,
            None => self.messages.get_greeting(&mailbox, kind).await,
        };
        got.map_err(|e| greeting_not_found(e, kind))
    }

    /// Opens a greeting's audio.
    pub async fn open_greeting_audio(
        &self,
        g: &GreetingRecord,
        range: Option<(u64, u64)>,
    ) -> Result<AudioStream> {
        self.open_blob(&g.audio_key, g.byte_size as u64, range)
            .await
    }

    /// Removes a greeting and its audio.
    pub async fn delete_greeting(
        &self,
        p: &Principal,
        address: &MailboxAddress,
        kind: GreetingKind,
    ) -> Result<()> {
        let mailbox = self.visible_mailbox(p, address).await?;
        if let Some(imap) = self.imap_greetings(&mailbox) {
            // The recording goes with the greeting's message.
            imap.delete_greeting(&mailbox, kind)
                .await
                .map_err(|e| greeting_not_found(e, kind))?;
            self.record_imap_greeting(imap, &mailbox, "greeting.deleted")
                .await;
            self.notify_changed();
            return Ok(());
        }
        let g = self
            .messages
            .delete_greeting(&mailbox, kind)
            .await
            .map_err(|e| greeting_not_found(e, kind))?;
        self.notify_changed();
        self.remove_blobs([g.audio_key]).await;
        Ok(())
    }
}
