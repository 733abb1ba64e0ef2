//! Audio in the database (`audio.store = "db"`), where Asterisk's ODBC voicemail storage keeps it:
//! a message's bytes in `messages.recording`, a greeting's in `greetings.recording`.
//!
//! Audio is written before its row exists (see docs/design/0002-write-path-and-group-commit.md),
//! so a commit puts it in `audio_blobs` under its key; the transaction that inserts the message
//! or sets the greeting then moves it into the row (`audio.store = "db"`, set by `SqlStore::open`). Renditions stay
//! in `audio_blobs`. The SQL lives in `store/sql/audio.rs`; the design is
//! docs/design/0004-audio-in-database.md.
//!
//! Memory: an upload is spooled to an anonymous file in the scratch directory as it arrives, and
//! read back whole at [`BlobWriter::commit`], which sends it in one statement: for that moment
//! the recording is held in memory (and copied a time or two more by the database driver on its
//! way to the wire). Reads stream in slices cut by the server (`SUBSTR`, see [`chunk_size`]), so
//! a long recording is never in this process's memory at once.

use std::io::SeekFrom;
use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::StreamExt;
use tokio::fs::File;
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt, BufWriter};

use super::{BlobError, BlobKey, BlobMeta, BlobRead, BlobStore, BlobWriter, MetaStream};
use crate::domain::now_secs;
use crate::store::sql::Dialect;
use crate::store::sql::audio::AudioSource;
use crate::store::{SqlStore, StoreError};

/// Bytes read per query when a blob is streamed (PostgreSQL; see [`chunk_size`]).
const CHUNK: u64 = 256 * 1024;
/// The most one slice may hold on SQLite and MySQL/MariaDB.
const MAX_CHUNK: u64 = 4 * 1024 * 1024;
/// Keys listed per query.
const LIST_PAGE: u32 = 500;
/// What a MySQL statement carries besides the blob (its key, numbers, the packet header), kept
/// free below `max_allowed_packet`.
const PACKET_MARGIN: u64 = 4096;

/// Failures of the database audio store (reported as [`BlobError::Io`]).
#[derive(Debug, thiserror::Error)]
pub enum DbBlobError {
    /// The database failed.
    #[error("audio in the database: {0}")]
    Store(#[from] StoreError),
    /// A recording is larger than one MySQL/MariaDB statement may be.
    #[error(
        "a recording of more than {limit} bytes does not fit in one statement: raise the MySQL \
         server's max_allowed_packet (now {max_allowed_packet} bytes), or use audio.store = \
         \"fs\" or \"s3\""
    )]
    TooLargeForPacket {
        /// The largest recording that fits.
        limit: u64,
        /// The server's `max_allowed_packet` when the store was opened.
        max_allowed_packet: u64,
    },
    /// A row changed while its audio was streamed (deleted, or a greeting replaced).
    #[error("the audio {0} disappeared while it was read")]
    Vanished(String),
}

impl From<DbBlobError> for BlobError {
    fn from(e: DbBlobError) -> Self {
        BlobError::Io(std::io::Error::other(e))
    }
}

fn store_err(e: StoreError) -> BlobError {
    DbBlobError::Store(e).into()
}

/// Audio blobs in SQL tables: inside the message and greeting rows that own them, and in
/// `audio_blobs` until a row adopts them (and for renditions).
pub struct DbBlobStore {
    sql: Arc<SqlStore>,
    scratch: PathBuf,
    /// The server's `max_allowed_packet` on MySQL/MariaDB, read once when the store opens.
    max_packet: Option<u64>,
}

impl DbBlobStore {
    /// Opens the store on `sql`; uploads are spooled in `scratch` (created if missing) until
    /// they are committed. On MySQL/MariaDB reads `max_allowed_packet` (a change of it on the
    /// server is seen at the next start).
    pub async fn open(sql: Arc<SqlStore>, scratch: impl Into<PathBuf>) -> Result<Self, BlobError> {
        let scratch = scratch.into();
        tokio::fs::create_dir_all(&scratch).await?;
        let max_packet = sql.audio_max_packet().await.map_err(store_err)?;
        Ok(Self {
            sql,
            scratch,
            max_packet,
        })
    }
}

/// Bytes per slice when streaming a blob of `total` bytes. PostgreSQL reads only the TOAST chunks
/// of a slice, so slices stay small. SQLite and InnoDB read the whole value to cut any slice of
/// it (measured: ~6 ms and ~2 ms per slice of a 15 MB value), so there a long blob is read in at
/// most ~32 slices of up to [`MAX_CHUNK`]: memory stays bounded, and the server's work grows
/// linearly, not with the square of the length, up to 128 MiB.
fn chunk_size(dialect: Dialect, total: u64) -> u64 {
    match dialect {
        Dialect::Postgres => CHUNK,
        Dialect::Sqlite | Dialect::MySql => (total / 32).clamp(CHUNK, MAX_CHUNK),
    }
}

/// The error of a blob larger than fits in a statement under `max_allowed_packet`, if it is.
fn check_packet(max_packet: Option<u64>, size: u64) -> Result<(), BlobError> {
    match max_packet {
        Some(max) if size > max.saturating_sub(PACKET_MARGIN) => {
            Err(DbBlobError::TooLargeForPacket {
                limit: max.saturating_sub(PACKET_MARGIN),
                max_allowed_packet: max,
            }
            .into())
        }
        _ => Ok(()),
    }
}

#[async_trait]
impl BlobStore for DbBlobStore {
    async fn writer(&self, key: &BlobKey) -> Result<Box<dyn BlobWriter>, BlobError> {
        let dir = self.scratch.clone();
        // Anonymous: the file has no name, so it vanishes with the writer, also after a crash.
        let file = tokio::task::spawn_blocking(move || tempfile::tempfile_in(dir))
            .await
            .map_err(std::io::Error::other)??;
        Ok(Box::new(DbBlobWriter {
            sql: self.sql.clone(),
            key: key.clone(),
            file: Some(BufWriter::with_capacity(64 * 1024, File::from_std(file))),
            written: 0,
            max_packet: self.max_packet,
        }))
    }

    async fn open(&self, key: &BlobKey, range: Option<(u64, u64)>) -> Result<BlobRead, BlobError> {
        let (source, total) = self
            .sql
            .audio_locate(key.as_str())
            .await
            .map_err(store_err)?
            .ok_or_else(|| BlobError::NotFound(key.as_str().to_owned()))?;
        let (start, end) = match range {
            None => (0, total),
            Some((start, end)) => {
                if start > end || end >= total {
                    return Err(BlobError::RangeNotSatisfiable);
                }
                (start, end + 1)
            }
        };
        let state = Slices {
            chunk: chunk_size(self.sql.dialect(), total),
            sql: self.sql.clone(),
            key: key.as_str().to_owned(),
            source,
            next: start,
            end,
        };
        let stream = futures_util::stream::try_unfold(state, |mut s| async move {
            if s.next >= s.end {
                return Ok(None);
            }
            let len = s.chunk.min(s.end - s.next);
            let chunk = s
                .sql
                .audio_slice(&s.key, &s.source, s.next, len)
                .await
                .map_err(|e| std::io::Error::other(DbBlobError::Store(e)))?;
            match chunk {
                Some(bytes) if bytes.len() as u64 == len => {
                    s.next += len;
                    Ok(Some((Bytes::from(bytes), s)))
                }
                _ => Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    DbBlobError::Vanished(s.key.clone()),
                )),
            }
        });
        Ok(BlobRead {
            total,
            stream: stream.boxed(),
        })
    }

    async fn size(&self, key: &BlobKey) -> Result<u64, BlobError> {
        self.sql
            .audio_locate(key.as_str())
            .await
            .map_err(store_err)?
            .map(|(_, n)| n)
            .ok_or_else(|| BlobError::NotFound(key.as_str().to_owned()))
    }

    async fn copy(&self, from: &BlobKey, to: &BlobKey) -> Result<(), BlobError> {
        let copied = self
            .sql
            .audio_copy(from.as_str(), to.as_str(), now_secs())
            .await
            .map_err(store_err)?;
        if copied {
            Ok(())
        } else {
            Err(BlobError::NotFound(from.as_str().to_owned()))
        }
    }

    async fn remove(&self, key: &BlobKey) -> Result<(), BlobError> {
        self.sql.audio_remove(key.as_str()).await.map_err(store_err)
    }

    async fn check(&self) -> Result<(), BlobError> {
        // Writing the database itself is `/readyz`'s database probe; uploads also need scratch.
        self.sql.audio_check().await.map_err(store_err)?;
        Ok(super::probe_dir(&self.scratch).await?)
    }

    /// Lists the rows of `audio_blobs` (renditions, and uploads no row has adopted yet), a page
    /// at a time in key order. Audio inside message and greeting rows is not listed: it lives
    /// and dies with its row, so it can never be an orphan.
    fn list(&self, prefix: &str) -> MetaStream {
        let state = Listing {
            sql: self.sql.clone(),
            prefix: prefix.to_owned(),
            after: String::new(),
            page: std::collections::VecDeque::new(),
            done: false,
        };
        futures_util::stream::try_unfold(state, |mut s| async move {
            loop {
                if let Some((key, size, created_at)) = s.page.pop_front() {
                    s.after.clone_from(&key);
                    if !key.starts_with(&s.prefix) {
                        continue;
                    }
                    let Some(key) = BlobKey::from_stored(&key) else {
                        continue;
                    };
                    let meta = BlobMeta {
                        key,
                        size: u64::try_from(size).unwrap_or(0),
                        modified_ms: created_at.saturating_mul(1000),
                    };
                    return Ok(Some((meta, s)));
                }
                if s.done {
                    return Ok(None);
                }
                let rows = s
                    .sql
                    .audio_list_page(&s.prefix, &s.after, LIST_PAGE)
                    .await
                    .map_err(store_err)?;
                s.done = rows.len() < LIST_PAGE as usize;
                s.page.extend(rows);
            }
        })
        .boxed()
    }
}

/// The state of a blob being streamed.
struct Slices {
    sql: Arc<SqlStore>,
    key: String,
    source: AudioSource,
    /// Bytes per query.
    chunk: u64,
    /// Next byte to read.
    next: u64,
    /// One past the last byte to read.
    end: u64,
}

/// The state of a listing.
struct Listing {
    sql: Arc<SqlStore>,
    prefix: String,
    /// The last key read (the next page starts after it).
    after: String,
    page: std::collections::VecDeque<(String, i64, i64)>,
    done: bool,
}

/// An upload spooled to an anonymous scratch file until it is committed.
struct DbBlobWriter {
    sql: Arc<SqlStore>,
    key: BlobKey,
    file: Option<BufWriter<File>>,
    written: u64,
    /// MySQL's `max_allowed_packet` (see [`check_packet`]).
    max_packet: Option<u64>,
}

fn closed() -> BlobError {
    BlobError::Io(std::io::Error::other("writer already closed"))
}

#[async_trait]
impl BlobWriter for DbBlobWriter {
    async fn write(&mut self, chunk: &[u8]) -> Result<(), BlobError> {
        self.written += chunk.len() as u64;
        // Refused as soon as it cannot fit, not after the whole upload was spooled.
        if let Err(e) = check_packet(self.max_packet, self.written) {
            self.file = None;
            return Err(e);
        }
        match self.file.as_mut() {
            Some(f) => Ok(f.write_all(chunk).await?),
            None => Err(closed()),
        }
    }

    async fn commit(mut self: Box<Self>) -> Result<(), BlobError> {
        check_packet(self.max_packet, self.written)?;
        let Some(mut file) = self.file.take() else {
            return Err(closed());
        };
        file.flush().await?;
        let mut file = file.into_inner();
        file.seek(SeekFrom::Start(0)).await?;
        let size = usize::try_from(self.written)
            .map_err(|_| std::io::Error::other("audio larger than this machine's memory"))?;
        let mut data = Vec::with_capacity(size);
        file.read_to_end(&mut data).await?;
        drop(file);
        if data.len() != size {
            return Err(
                std::io::Error::other("the scratch file changed while it was written").into(),
            );
        }
        self.sql
            .audio_put(self.key.as_str(), data, now_secs())
            .await
            .map_err(store_err)
    }

    async fn abort(mut self: Box<Self>) {
        self.file = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slices_are_small_on_postgres_and_few_elsewhere() {
        assert_eq!(chunk_size(Dialect::Postgres, 1 << 30), CHUNK);
        assert_eq!(chunk_size(Dialect::Sqlite, 1000), CHUNK);
        assert_eq!(chunk_size(Dialect::MySql, 64 << 20), 2 << 20);
        assert_eq!(chunk_size(Dialect::MySql, 1 << 30), MAX_CHUNK);
    }

    #[test]
    fn a_blob_must_fit_in_a_mysql_packet() {
        assert!(check_packet(None, u64::MAX).is_ok());
        let max = 16 << 20;
        assert!(check_packet(Some(max), max - PACKET_MARGIN).is_ok());
        let err = check_packet(Some(max), max - PACKET_MARGIN + 1).unwrap_err();
        assert!(err.to_string().contains("max_allowed_packet"), "{err}");
    }
}
