//! Renditions of stored recordings, made once and kept in the audio store next to the original.
//!
//! A request for a rendition first looks for the cached blob; if it is missing, the request takes
//! the rendition's single-flight lock (one per key, so concurrent requests for the same rendition
//! transcode once and the others wait, then find the blob), then a transcode permit (bounded by
//! `audio.transcode_concurrency`), and transcodes on the blocking pool: the original streams in
//! from the audio store, the rendition goes to a temporary file and from there to the store.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use std::io::Read;

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio::sync::Semaphore;
use tokio_util::io::{StreamReader, SyncIoBridge};

use super::{Result, ServiceError, Voicemail};
use crate::audio::{AudioError, Rendition, SyncSource, transcode_stream};
use crate::blob::{BlobError, BlobKey, ByteStream};
use crate::domain::AudioFormat;

/// The in-progress renditions and the transcode permits.
pub struct RenditionCache {
    inflight: Mutex<HashMap<BlobKey, Arc<tokio::sync::Mutex<()>>>>,
    permits: Semaphore,
}

impl RenditionCache {
    pub fn new(concurrency: usize) -> Self {
        Self {
            inflight: Mutex::new(HashMap::new()),
            permits: Semaphore::new(concurrency.max(1)),
        }
    }

    fn lock_for(&self, key: &BlobKey) -> Arc<tokio::sync::Mutex<()>> {
        let mut map = self
            .inflight
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        map.entry(key.clone()).or_default().clone()
    }

    /// Waits for a transcode permit: every transcode (renditions and e-mail attachments) holds
    /// one, so together they never use more than `audio.transcode_concurrency` blocking threads.
    pub(crate) async fn permit(&self) -> Option<tokio::sync::SemaphorePermit<'_>> {
        self.permits.acquire().await.ok()
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
    /// Returns the key and size of a rendition of `original`, transcoding and storing it first
    /// if it is not cached yet.
    pub async fn rendition(&self, original: Original<'_>, r: &Rendition) -> Result<(BlobKey, u64)> {
        if original
            .key
            .starts_with(super::imap_store::AUDIO_KEY_PREFIX)
        {
            return Err(ServiceError::NotImplemented(
                "renditions of messages kept in IMAP are not implemented yet; ask for the original"
                    .into(),
            ));
        }
        let src = BlobKey::from_stored(original.key)
            .ok_or_else(|| ServiceError::Unavailable("the stored audio key is malformed".into()))?;
        let key = BlobKey::rendition(&src, &r.suffix());
        if let Ok(size) = self.blobs.size(&key).await {
            return Ok((key, size));
        }
        let lock = self.renditions.lock_for(&key);
        let guard = lock.lock().await;
        let made = self.make_rendition(&src, &key, original.format, r).await;
        drop(guard);
        self.renditions.done(&key);
        made.map(|size| (key, size))
    }

    async fn make_rendition(
        &self,
        src: &BlobKey,
        key: &BlobKey,
        format: AudioFormat,
        r: &Rendition,
    ) -> Result<u64> {
        // Another request may have made it while this one waited for the lock.
        if let Ok(size) = self.blobs.size(key).await {
            return Ok(size);
        }
        let read = self.blobs.open(src, None).await?;
        let _permit = self
            .renditions
            .permit()
            .await
            .ok_or_else(|| ServiceError::Unavailable("shutting down".into()))?;
        let r = *r;
        let scratch = self.config.scratch_dir();
        let mut original = StoredReader::new(read.stream, tokio::runtime::Handle::current());
        // Transcoding is CPU work (decoding, resampling, Opus, GSM): keep it off the async
        // workers. The original is read through a blocking bridge a chunk at a time and the
        // rendition written to an anonymous temporary file, so memory does not grow with length.
        let made = tokio::task::spawn_blocking(move || {
            let file = scratch_file(&scratch)?;
            let mut out = std::io::BufWriter::with_capacity(COPY_CHUNK, file);
            let size = transcode_stream(format, &mut original, &r, &mut out)
                .map_err(|e| original.error_for(e))?;
            let file = out
                .into_inner()
                .map_err(|e| ServiceError::from(BlobError::Io(e.into_error())))?;
            Ok::<_, ServiceError>((file, size))
        })
        .await
        .map_err(|e| ServiceError::Unavailable(format!("transcoding failed: {e}")))?;
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
