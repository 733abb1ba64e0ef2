//! Renditions of stored recordings, made once and kept in the audio store next to the original.
//!
//! A request for a rendition first looks for the cached blob; if it is missing, the request takes
//! the rendition's single-flight lock (one per key, so concurrent requests for the same rendition
//! transcode once and the others wait, then find the blob), then a transcoder (bounded by
//! `audio.transcode_concurrency` and `audio.transcode_queue`; 503 `busy` past them), and
//! transcodes on the transcoder's own thread: the original streams in
//! from the audio store, the rendition goes to a temporary file and from there to the store.
//!
//! Renditions of messages kept in IMAP are made from the attachment fetched from the server and
//! cached under `imap/<mailbox id>/<message id>.<16 hex of the attachment's SHA-256>.<suffix>`:
//! the message id survives moves between folders (its UID does not), and the hash makes a
//! changed recording a new key. They go when voxmail deletes or moves away the message
//! ([`Voicemail::remove_imap_renditions`]); for messages deleted by a mail client the orphan
//! collector asks the IMAP server which messages of the mailbox still exist
//! ([`Voicemail::judge_imap_renditions`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use std::io::Read;

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio_util::io::{StreamReader, SyncIoBridge};

use super::{OrphanSweep, Result, ServiceError, Voicemail};
use crate::audio::{AudioError, Rendition, SyncSource, transcode_stream};
use crate::blob::{BlobError, BlobKey, BlobMeta, ByteStream};
use crate::domain::{AudioFormat, MailboxId, MessageId};
use crate::store::StoreError;

/// The prefix of the cached renditions of IMAP messages in the audio store.
pub(crate) const IMAP_RENDITIONS: &str = "imap/";

/// The base of an IMAP message's cached renditions (never stored itself): the rendition is
/// `<base>.<suffix>`.
fn imap_base(mailbox: MailboxId, message: MessageId, sha256: &str) -> Option<BlobKey> {
    let sha = sha256.get(..16)?;
    BlobKey::from_stored(&format!("{IMAP_RENDITIONS}{mailbox}/{message}.{sha}"))
}

/// The mailbox and message an IMAP rendition key belongs to.
fn imap_owner(key: &BlobKey) -> Option<(MailboxId, MessageId)> {
    let rest = key.as_str().strip_prefix(IMAP_RENDITIONS)?;
    let (mailbox, file) = rest.split_once('/')?;
    let message = file.split('.').next()?;
    Some((mailbox.parse().ok()?, message.parse().ok()?))
}

/// Where a rendition's original comes from.
enum Input {
    /// A blob of the audio store.
    Stored(BlobKey),
    /// Bytes already fetched (an IMAP attachment).
    Fetched(Vec<u8>),
}

/// The in-progress renditions.
#[derive(Default)]
pub struct RenditionCache {
    inflight: Mutex<HashMap<BlobKey, Arc<tokio::sync::Mutex<()>>>>,
}

impl RenditionCache {
    fn lock_for(&self, key: &BlobKey) -> Arc<tokio::sync::Mutex<()>> {
        let mut map = self
            .inflight
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        map.entry(key.clone()).or_default().clone()
    }

    fn done(&self, key: &BlobKey) {
        let mut map = self
            .inflight
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        map.remove(key);
    }
}

/// A stored recording a rendition is made from.
pub struct Original<'a> {
    pub key: &'a str,
    pub format: AudioFormat,
}

/// The keys of every rendition a recording stored under `key` may have.
pub(crate) fn rendition_keys(key: &BlobKey) -> Vec<BlobKey> {
    Rendition::all_suffixes()
        .iter()
        .map(|s| BlobKey::rendition(key, s))
        .collect()
}

impl Voicemail {
    /// The whole of a cached rendition of a recording in the audio store, opened in one step
    /// (the open reads its size); `None` when it is not cached yet, or the original is kept in
    /// IMAP (then [`Voicemail::rendition`] finds or makes it).
    pub async fn open_cached_rendition(
        &self,
        original: Original<'_>,
        r: &Rendition,
    ) -> Result<Option<super::AudioStream>> {
        let Some(src) = BlobKey::from_stored(original.key) else {
            return Ok(None);
        };
        let key = BlobKey::rendition(&src, &r.suffix());
        match self.blobs.open(&key, None).await {
            Ok(read) => Ok(Some(super::AudioStream {
                total: read.total,
                range: None,
                stream: read.stream,
            })),
            Err(BlobError::NotFound(_)) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Returns the key and size of a rendition of `original`, transcoding and storing it first
    /// if it is not cached yet.
    pub async fn rendition(&self, original: Original<'_>, r: &Rendition) -> Result<(BlobKey, u64)> {
        if original
            .key
            .starts_with(super::imap_store::AUDIO_KEY_PREFIX)
        {
            return self.imap_rendition(original, r).await;
        }
        if original
            .key
            .starts_with(super::imap_store::GREETING_KEY_PREFIX)
        {
            return self.imap_greeting_rendition(original, r).await;
        }
        let src = BlobKey::from_stored(original.key)
            .ok_or_else(|| ServiceError::Unavailable("the stored audio key is malformed".into()))?;
        let key = BlobKey::rendition(&src, &r.suffix());
        if let Ok(size) = self.blobs.size(&key).await {
            return Ok((key, size));
        }
        self.make_once(&key, Input::Stored(src), original.format, r)
            .await
            .map(|size| (key, size))
    }

    /// A rendition of an IMAP message: cached under the message id and the attachment's hash
    /// (known from the record, so a cached one costs no fetch), else made from the attachment.
    async fn imap_rendition(
        &self,
        original: Original<'_>,
        r: &Rendition,
    ) -> Result<(BlobKey, u64)> {
        let malformed = || ServiceError::Unavailable("the stored audio key is malformed".into());
        let k = super::imap_store::parse_audio_key(original.key).ok_or_else(malformed)?;
        let Some(imap) = &self.imap else {
            return Err(ServiceError::NotImplemented(
                "no context is configured for IMAP storage".into(),
            ));
        };
        if let Some(base) = imap_base(k.mailbox, k.message, &k.sha256) {
            let key = BlobKey::rendition(&base, &r.suffix());
            if let Ok(size) = self.blobs.size(&key).await {
                return Ok((key, size));
            }
        }
        let mailbox = self.sql.get_mailbox_by_id(k.mailbox).await?;
        let data = imap
            .audio(&mailbox, &k.folder, k.uid)
            .await
            .map_err(|e| match e {
                StoreError::NotFound => ServiceError::NotFound(format!("message {}", k.message)),
                e => e.into(),
            })?;
        let sha = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&data));
        let base = imap_base(k.mailbox, k.message, &sha).ok_or_else(malformed)?;
        let key = BlobKey::rendition(&base, &r.suffix());
        self.make_once(&key, Input::Fetched(data), original.format, r)
            .await
            .map(|size| (key, size))
    }

    /// A rendition of a greeting kept in IMAP: the greeting is fetched (its key names no hash),
    /// and the rendition cached under the mailbox, a stable id of the greeting's name and the
    /// recording's hash, so a new greeting is a new key. The orphan collector, which keeps only
    /// renditions of messages IMAP still has, removes these after the grace period: they are a
    /// cache and are made again on demand.
    async fn imap_greeting_rendition(
        &self,
        original: Original<'_>,
        r: &Rendition,
    ) -> Result<(BlobKey, u64)> {
        let malformed = || ServiceError::Unavailable("the stored audio key is malformed".into());
        let (mailbox_id, uid) =
            super::imap_store::parse_greeting_key(original.key).ok_or_else(malformed)?;
        let name = original.key.rsplit(':').nth(1).ok_or_else(malformed)?;
        let Some(imap) = &self.imap else {
            return Err(ServiceError::NotImplemented(
                "no context is configured for IMAP storage".into(),
            ));
        };
        let mailbox = self.sql.get_mailbox_by_id(mailbox_id).await?;
        let data = imap
            .greeting_audio(&mailbox, uid)
            .await
            .map_err(|e| match e {
                StoreError::NotFound => ServiceError::NotFound(format!("greeting {name}")),
                e => e.into(),
            })?;
        let digest = |b: &[u8]| <sha2::Sha256 as sha2::Digest>::digest(b);
        let sha = hex::encode(digest(&data));
        let mut id = [0u8; 16];
        id.copy_from_slice(
            &digest(format!("voxmail-imap-greeting\0{mailbox_id}\0{name}").as_bytes())[..16],
        );
        let greeting = MessageId(uuid::Builder::from_custom_bytes(id).into_uuid());
        let base = imap_base(mailbox_id, greeting, &sha).ok_or_else(malformed)?;
        let key = BlobKey::rendition(&base, &r.suffix());
        if let Ok(size) = self.blobs.size(&key).await {
            return Ok((key, size));
        }
        self.make_once(&key, Input::Fetched(data), original.format, r)
            .await
            .map(|size| (key, size))
    }

    /// Makes the rendition `key` unless another request is making it (single flight).
    async fn make_once(
        &self,
        key: &BlobKey,
        input: Input,
        format: AudioFormat,
        r: &Rendition,
    ) -> Result<u64> {
        let lock = self.renditions.lock_for(key);
        let guard = lock.lock().await;
        let made = self.make_rendition(input, key, format, r).await;
        drop(guard);
        self.renditions.done(key);
        made
    }

    async fn make_rendition(
        &self,
        input: Input,
        key: &BlobKey,
        format: AudioFormat,
        r: &Rendition,
    ) -> Result<u64> {
        // Another request may have made it while this one waited for the lock.
        if let Ok(size) = self.blobs.size(key).await {
            return Ok(size);
        }
        let (mut original, mut fetched) = match input {
            Input::Stored(src) => {
                let read = self.blobs.open(&src, None).await?;
                let handle = tokio::runtime::Handle::current();
                (Some(StoredReader::new(read.stream, handle)), None)
            }
            Input::Fetched(bytes) => (None, Some(std::io::Cursor::new(bytes))),
        };
        let slot = self.transcoders.slot().await?;
        let r = *r;
        let scratch = self.config.scratch_dir();
        // Transcoding is CPU work (decoding, resampling, Opus, GSM): on a transcoder thread, off
        // the async workers and tokio's blocking pool. The original is read through a blocking
        // bridge a chunk at a time and the rendition written to an anonymous temporary file, so
        // memory does not grow with length.
        let made = slot
            .run(move || {
                let file = scratch_file(&scratch)?;
                let mut out = std::io::BufWriter::with_capacity(COPY_CHUNK, file);
                let size = match (&mut original, &mut fetched) {
                    (Some(stored), _) => transcode_stream(format, &mut *stored, &r, &mut out)
                        .map_err(|e| stored.error_for(e))?,
                    (None, Some(bytes)) => transcode_stream(format, &mut *bytes, &r, &mut out)
                        .map_err(|e| match e {
                            AudioError::Write(w) => BlobError::Io(std::io::Error::other(w)).into(),
                            e => ServiceError::from(e),
                        })?,
                    (None, None) => return Err(ServiceError::Unavailable("no original".into())),
                };
                let file = out
                    .into_inner()
                    .map_err(|e| ServiceError::from(BlobError::Io(e.into_error())))?;
                Ok::<_, ServiceError>((file, size))
            })?
            .await
            .map_err(|_| ServiceError::Unavailable("the transcoder failed".into()))?;
        let (file, size) = made?;
        let mut file = tokio::fs::File::from_std(file);
        file.rewind().await.map_err(BlobError::Io)?;
        let mut w = self.blobs.writer(key).await?;
        if let Err(e) = copy_to(&mut file, w.as_mut()).await {
            w.abort().await;
            return Err(e.into());
        }
        w.commit().await?;
        tracing::debug!(audio.key = %key.as_str(), bytes = size, "rendition stored");
        Ok(size)
    }

    /// Removes the cached renditions of an IMAP message (after voxmail deleted it or moved it
    /// away). A failure only leaves them for the orphan collector.
    pub(crate) async fn remove_imap_renditions(&self, mailbox: MailboxId, message: MessageId) {
        use futures_util::StreamExt as _;
        let prefix = format!("{IMAP_RENDITIONS}{mailbox}/{message}.");
        let mut listing = self.blobs.list(&prefix);
        while let Some(item) = listing.next().await {
            let removed = match item {
                Ok(meta) => self.blobs.remove(&meta.key).await,
                Err(e) => Err(e),
            };
            if let Err(e) = removed {
                tracing::warn!(message.id = %message, error = %e, "could not remove an IMAP message's rendition");
            }
        }
    }

    /// The orphan collector's judgement of cached IMAP renditions (`imap/…`, all older than the
    /// grace period): a rendition goes when its mailbox is gone or no longer IMAP-backed, or
    /// when the IMAP server no longer has its message (one header-only listing per mailbox that
    /// has cached renditions). While the server cannot be asked, nothing of that mailbox goes.
    pub(crate) async fn judge_imap_renditions(
        &self,
        metas: Vec<BlobMeta>,
        dry_run: bool,
        sweep: &mut OrphanSweep,
    ) -> Result<()> {
        let mut by_mailbox: HashMap<MailboxId, Vec<(MessageId, BlobMeta)>> = HashMap::new();
        for meta in metas {
            // Keys of another shape under imap/ are not ours to judge.
            if let Some((mailbox, message)) = imap_owner(&meta.key) {
                by_mailbox.entry(mailbox).or_default().push((message, meta));
            }
        }
        for (mailbox_id, items) in by_mailbox {
            sweep.checked += items.len() as u64;
            let existing = match self.sql.get_mailbox_by_id(mailbox_id).await {
                Err(StoreError::NotFound) => None,
                Err(e) => return Err(e.into()),
                Ok(m) => match &self.imap {
                    Some(imap) if imap.handles(&m) => match imap.message_ids(&m).await {
                        Ok(ids) => Some(ids),
                        Err(e) => {
                            tracing::info!(mailbox.id = %mailbox_id, error = %e, "orphan collector: IMAP renditions of this mailbox kept, its server cannot be asked now");
                            continue;
                        }
                    },
                    _ => None,
                },
            };
            for (message, meta) in items {
                if existing.as_ref().is_some_and(|ids| ids.contains(&message)) {
                    continue;
                }
                if dry_run {
                    sweep.removed += 1;
                    sweep.removed_bytes += meta.size;
                    continue;
                }
                match self.blobs.remove(&meta.key).await {
                    Ok(()) => {
                        tracing::info!(audio.key = %meta.key.as_str(), "removed the rendition of a gone IMAP message");
                        sweep.removed += 1;
                        sweep.removed_bytes += meta.size;
                    }
                    Err(e) => {
                        tracing::warn!(audio.key = %meta.key.as_str(), error = %e, "could not remove a rendition");
                        sweep.failed += 1;
                    }
                }
            }
        }
        Ok(())
    }
}

/// Bytes moved per read when storing a rendition.
const COPY_CHUNK: usize = 64 * 1024;

/// An anonymous temporary file under `dir` (gone when closed, even after a crash).
fn scratch_file(dir: &std::path::Path) -> Result<std::fs::File> {
    std::fs::create_dir_all(dir)
        .and_then(|()| tempfile::tempfile_in(dir))
        .map_err(|e| BlobError::Io(e).into())
}

async fn copy_to(
    file: &mut tokio::fs::File,
    w: &mut dyn crate::blob::BlobWriter,
) -> std::result::Result<(), BlobError> {
    let mut buf = vec![0u8; COPY_CHUNK];
    loop {
        let n = file.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        w.write(&buf[..n]).await?;
    }
}

/// A stored recording read on a blocking thread, bridged from the audio store's async stream.
/// The first read error is kept: the decoder reports it as unreadable audio, but it is a storage
/// failure, and is reported as one.
pub(crate) struct StoredReader {
    inner: SyncSource<SyncIoBridge<StreamReader<ByteStream, Bytes>>>,
    error: Option<String>,
}

impl StoredReader {
    /// Reads `stream`, driven by the runtime behind `handle`.
    pub(crate) fn new(stream: ByteStream, handle: tokio::runtime::Handle) -> Self {
        Self {
            inner: SyncSource::new(SyncIoBridge::new_with_handle(
                StreamReader::new(stream),
                handle,
            )),
            error: None,
        }
    }

    /// The storage failure behind a failed read, if there was one.
    pub(crate) fn storage_error(&self) -> Option<&str> {
        self.error.as_deref()
    }

    /// The service error for a failed transcode that read from this reader.
    fn error_for(&self, e: AudioError) -> ServiceError {
        match (self.storage_error(), e) {
            (Some(io), _) => BlobError::Io(std::io::Error::other(io.to_owned())).into(),
            (None, AudioError::Write(w)) => BlobError::Io(std::io::Error::other(w)).into(),
            (None, e) => e.into(),
        }
    }
}

impl Read for StoredReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.inner.read(buf).inspect_err(|e| {
            self.error.get_or_insert_with(|| e.to_string());
        })
    }
}
