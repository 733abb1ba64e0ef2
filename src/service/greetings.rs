//! Greetings: unavailable, busy, temp and name recordings of a mailbox.

use bytes::Bytes;
use futures_util::Stream;

use super::{AudioStream, Result, ServiceError, Voicemail};
use crate::audio::RawHint;
use crate::blob::BlobKey;
use crate::domain::{GreetingKind, MailboxAddress, MessageId, Principal, now_secs};
use crate::store::{GreetingRecord, StoreError};

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
        let audio = self.receive_audio(key, hint, body, limits).await?;
        let record = GreetingRecord {
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
        };
        match self.messages.put_greeting(&mailbox, record.clone()).await {
            Ok(replaced) => {
                self.notify_changed();
                let created = replaced.is_none();
                self.remove_blobs(replaced).await;
                Ok((record, created))
            }
            Err(e) => {
                self.discard_audio(audio).await;
                Err(e.into())
            }
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
        self.messages
            .get_greeting(&mailbox, kind)
            .await
            .map_err(|e| greeting_not_found(e, kind))
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
