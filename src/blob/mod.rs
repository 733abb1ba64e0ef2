//! Where audio bytes live: a trait over local disk (and, later, S3 and the database).

mod fs;

pub use fs::FsBlobStore;

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
