//! Where audio bytes live: a trait over local disk, S3-compatible object storage and the database.

mod db;
mod fs;
mod s3;

pub use db::{DbBlobError, DbBlobStore};
pub use fs::FsBlobStore;
pub use s3::S3BlobStore;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::stream::BoxStream;

use crate::domain::{GreetingKind, MailboxId, MessageId};

/// A blob's key. Built only from ids, never from user input, so it is always a safe relative path.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BlobKey(String);

impl BlobKey {
    pub fn message(mailbox: MailboxId, message: MessageId, ext: &str) -> Self {
        Self(format!("messages/{mailbox}/{message}.{ext}"))
    }

    /// Greetings get a fresh key per upload so a replacement never overwrites the audio in use.
    pub fn greeting(mailbox: MailboxId, kind: GreetingKind, version: MessageId, ext: &str) -> Self {
        Self(format!(
            "greetings/{mailbox}/{}-{version}.{ext}",
            kind.as_str()
        ))
    }

    /// A cached rendition of the blob under `original` (`<original>.<suffix>`); `suffix` is built
    /// by the audio module from a closed set of names and numbers.
    pub fn rendition(original: &BlobKey, suffix: &str) -> Self {
        Self(format!("{}.{suffix}", original.0))
    }

    /// Re-creates a key read back from the database; refuses anything that is not a key we made.
    pub fn from_stored(s: &str) -> Option<Self> {
        let ok = !s.is_empty()
            && !s.starts_with('/')
            && s.split('/')
                .all(|seg| !seg.is_empty() && seg != "." && seg != "..")
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'-' | b'.' | b'_'));
        ok.then(|| Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The original a rendition was made from (`<dir>/<name>.<ext>` of
    /// `<dir>/<name>.<ext>.<suffix>`); an original is its own.
    pub fn original(&self) -> BlobKey {
        let (dir, file) = match self.0.rfind('/') {
            Some(i) => (&self.0[..=i], &self.0[i + 1..]),
            None => ("", self.0.as_str()),
        };
        let mut dots = file.match_indices('.').map(|(i, _)| i);
        match (dots.next(), dots.next()) {
            (Some(_), Some(second)) => Self(format!("{dir}{}", &file[..second])),
            _ => self.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rendition_knows_its_original() {
        let m = BlobKey::from_stored("messages/a-b/c-d.audio").unwrap();
        assert_eq!(m.original(), m);
        let r = BlobKey::rendition(&m, "opus16000");
        assert_eq!(r.original(), m);
        let g = BlobKey::from_stored("greetings/a/busy-1.audio.wav8000").unwrap();
        assert_eq!(g.original().as_str(), "greetings/a/busy-1.audio");
        let bare = BlobKey::from_stored("x").unwrap();
        assert_eq!(bare.original(), bare);
    }
}

/// Failures of a blob store.
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    /// No blob under that key.
    #[error("audio object not found: {0}")]
    NotFound(String),
    /// The requested byte range lies outside the blob.
    #[error("range not satisfiable")]
    RangeNotSatisfiable,
    /// The storage itself failed (disk, network).
    #[error("audio storage failed: {0}")]
    Io(#[from] std::io::Error),
}

/// A stream of a blob's bytes.
pub type ByteStream = BoxStream<'static, Result<Bytes, std::io::Error>>;

/// An opened blob (or a range of it).
pub struct BlobRead {
    /// Size of the whole blob.
    pub total: u64,
    /// Bytes of the requested range (or of the whole blob).
    pub stream: ByteStream,
}

/// A stored blob as [`BlobStore::list`] reports it.
#[derive(Debug, Clone)]
pub struct BlobMeta {
    /// The blob's key.
    pub key: BlobKey,
    /// Size in bytes.
    pub size: u64,
    /// When the blob last became reachable under this key, in Unix milliseconds (for a file, the
    /// later of mtime and ctime, so a hard link made by [`BlobStore::copy`] counts as new).
    pub modified_ms: i64,
}

/// A stream of listed blobs.
pub type MetaStream = BoxStream<'static, Result<BlobMeta, BlobError>>;

/// Storage of audio blobs.
#[async_trait]
pub trait BlobStore: Send + Sync + 'static {
    /// Starts writing a blob; nothing is visible under `key` until [`BlobWriter::commit`].
    async fn writer(&self, key: &BlobKey) -> Result<Box<dyn BlobWriter>, BlobError>;
    /// Opens a blob, or the inclusive byte range `start..=end` of it.
    async fn open(&self, key: &BlobKey, range: Option<(u64, u64)>) -> Result<BlobRead, BlobError>;
    /// Size of a blob in bytes.
    async fn size(&self, key: &BlobKey) -> Result<u64, BlobError>;
    /// Copies a blob to a new key (blobs are immutable, so a store may share the bytes).
    async fn copy(&self, from: &BlobKey, to: &BlobKey) -> Result<(), BlobError>;
    /// Removes a blob; removing a missing blob is not an error.
    async fn remove(&self, key: &BlobKey) -> Result<(), BlobError>;
    /// Checks the store can be written (for `/readyz`).
    async fn check(&self) -> Result<(), BlobError>;
    /// Lists the committed blobs whose key starts with `prefix` (`""` = all), in no particular
    /// order; blobs still being written are not listed. Used by the orphan collector, so it must
    /// stream (a store may hold millions of blobs) and skip keys that are not ours.
    fn list(&self, prefix: &str) -> MetaStream;
}

/// A blob being written. Dropping it without `commit` discards what was written.
#[async_trait]
pub trait BlobWriter: Send {
    /// Appends bytes.
    async fn write(&mut self, chunk: &[u8]) -> Result<(), BlobError>;
    /// Makes the blob durable and visible under its key.
    async fn commit(self: Box<Self>) -> Result<(), BlobError>;
    /// Discards what was written.
    async fn abort(self: Box<Self>);
}

/// Writes, fsyncs and removes a 4 KiB file in `dir`, as a deposit writes its audio: a full disk,
/// a read-only mount or a failing device all show (the SQLite store checks its disk with it too).
/// Each probe has its own name, so concurrent probes never collide.
pub(crate) async fn probe_dir(dir: &std::path::Path) -> std::io::Result<()> {
    use tokio::io::AsyncWriteExt;
    let path = dir.join(format!(".voxmail-readyz-{}", uuid::Uuid::now_v7()));
    let written = async {
        let mut f = tokio::fs::File::create(&path).await?;
        f.write_all(&[0u8; 4096]).await?;
        f.sync_all().await
    }
    .await;
    // Removed whatever happened, also after a failed write.
    let removed = tokio::fs::remove_file(&path).await;
    written?;
    removed
}
