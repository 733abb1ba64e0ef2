//! Renditions of stored recordings, made once and kept in the audio store next to the original.
//!
//! A request for a rendition first looks for the cached blob; if it is missing, the request takes
//! the rendition's single-flight lock (one per key, so concurrent requests for the same rendition
//! transcode once and the others wait, then find the blob), then a transcode permit (bounded by
//! `audio.transcode_concurrency`), and transcodes on the blocking pool.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::io::AsyncReadExt;
use tokio::sync::Semaphore;

use super::{Result, ServiceError, Voicemail};
use crate::audio::{Rendition, transcode};
use crate::blob::{BlobError, BlobKey};
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
        let mut bytes = Vec::new();
        let read = self.blobs.open(src, None).await?;
        tokio_util::io::StreamReader::new(read.stream)
            .read_to_end(&mut bytes)
            .await
            .map_err(BlobError::Io)?;
        let _permit = self
            .renditions
            .permit()
            .await
            .ok_or_else(|| ServiceError::Unavailable("shutting down".into()))?;
        let r = *r;
        // Transcoding is CPU work (Opus, GSM, resampling): keep it off the async workers.
        let out = tokio::task::spawn_blocking(move || transcode(format, &bytes, &r))
            .await
            .map_err(|e| ServiceError::Unavailable(format!("transcoding failed: {e}")))??;
        tracing::debug!(audio.key = %key.as_str(), bytes = out.len(), "rendition stored");
        let mut w = self.blobs.writer(key).await?;
        if let Err(e) = w.write(&out).await {
            w.abort().await;
            return Err(e.into());
        }
        w.commit().await?;
        Ok(out.len() as u64)
    }
}
