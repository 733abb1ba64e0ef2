use std::io::SeekFrom;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use futures_util::StreamExt;
use std::io::Write;
use tokio::fs::{self, File};

use super::{BlobError, BlobKey, BlobMeta, BlobRead, BlobStore, BlobWriter, MetaStream};

/// Audio blobs as files under a directory. Writes go to `tmp/`, are fsynced, then renamed into place,
/// so a crash never leaves a half-written file under a real key.
pub struct FsBlobStore {
    root: PathBuf,
}

/// A `tmp/*.part` file this much older than its last write is a write its process never finished
/// (killed mid-upload: a finished or failed one removes its own). No write lasts this long: a
/// body that stalls is cut off after `http.body_timeout_secs`.
const ABANDONED_AFTER: std::time::Duration = std::time::Duration::from_secs(3600);

impl FsBlobStore {
    /// Opens (and creates) the store under `root`, removing the partial writes a killed process
    /// left in `tmp/` more than an hour ago.
    pub async fn open(root: impl Into<PathBuf>) -> Result<Self, BlobError> {
        let root = root.into();
        fs::create_dir_all(root.join("tmp")).await?;
        let tmp = root.join("tmp");
        let removed = blocking(move || Ok(remove_abandoned(&tmp))).await?;
        if removed > 0 {
            tracing::info!(
                files = removed,
                dir = %root.join("tmp").display(),
                "removed partial writes left by a process that was killed"
            );
        }
        Ok(Self { root })
    }

    fn path(&self, key: &BlobKey) -> PathBuf {
        self.root.join(key.as_str())
    }
}

/// Removes `dir/*.part` files last written over [`ABANDONED_AFTER`] ago; returns how many. A file
/// that cannot be read or removed is left (and logged).
fn remove_abandoned(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let path = entry.path();
        let abandoned = path.extension().is_some_and(|e| e == "part")
            && entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age > ABANDONED_AFTER);
        if abandoned {
            match std::fs::remove_file(&path) {
                Ok(()) => removed += 1,
                Err(e) => {
                    tracing::warn!(file = %path.display(), error = %e, "cannot remove a partial write")
                }
            }
        }
    }
    removed
}

/// Bytes read per trip to the blocking pool when a blob is streamed out.
const READ_CHUNK: u64 = 128 * 1024;

/// Reads the next `min(left, READ_CHUNK)` bytes; a file shorter than it said is an error.
fn read_chunk(file: &mut std::fs::File, left: u64) -> std::io::Result<bytes::Bytes> {
    let mut buf = vec![0u8; left.min(READ_CHUNK) as usize];
    std::io::Read::read_exact(file, &mut buf)?;
    Ok(buf.into())
}

/// Runs blocking file work on tokio's blocking pool.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, BlobError> + Send + 'static,
) -> Result<T, BlobError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| BlobError::Io(std::io::Error::other(e)))?
}

fn not_found(key: &BlobKey, e: std::io::Error) -> BlobError {
    if e.kind() == std::io::ErrorKind::NotFound {
        BlobError::NotFound(key.as_str().to_owned())
    } else {
        BlobError::Io(e)
    }
}

async fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir).await?.sync_all().await
}

#[async_trait]
impl BlobStore for FsBlobStore {
    async fn writer(&self, key: &BlobKey) -> Result<Box<dyn BlobWriter>, BlobError> {
        let tmp = self
            .root
            .join("tmp")
            .join(format!("{}.part", uuid::Uuid::now_v7()));
        let tmp = TmpFile(Some(tmp));
        let path = tmp.path().to_path_buf();
        let file = blocking(move || Ok(std::fs::File::create(path)?)).await?;
        Ok(Box::new(FsBlobWriter {
            file: Some(file),
            buf: Vec::new(),
            tmp,
            dest: self.path(key),
        }))
    }

    async fn open(&self, key: &BlobKey, range: Option<(u64, u64)>) -> Result<BlobRead, BlobError> {
        let path = self.path(key);
        let k = key.clone();
        // Open, size and first chunk in one trip to the blocking pool: with tokio::fs each is a
        // trip of its own, and on a kept-alive connection those hand-offs were most of a fetch.
        let (file, total, first, left) = blocking(move || {
            let mut file = std::fs::File::open(&path).map_err(|e| not_found(&k, e))?;
            let total = file.metadata()?.len();
            let (start, len) = match range {
                None => (0, total),
                Some((start, end)) if start <= end && end < total => (start, end - start + 1),
                Some(_) => return Err(BlobError::RangeNotSatisfiable),
            };
            if start > 0 {
                std::io::Seek::seek(&mut file, SeekFrom::Start(start))?;
            }
            let first = read_chunk(&mut file, len)?;
            let left = len - first.len() as u64;
            Ok((file, total, first, left))
        })
        .await?;
        let rest = futures_util::stream::try_unfold((file, left), |(mut file, left)| async move {
            if left == 0 {
                return Ok(None);
            }
            let (file, chunk) = blocking(move || {
                let chunk = read_chunk(&mut file, left)?;
                Ok((file, chunk))
            })
            .await
            .map_err(std::io::Error::other)?;
            let left = left - chunk.len() as u64;
            Ok(Some((chunk, (file, left))))
        });
        let stream = futures_util::stream::once(async move { Ok(first) })
            .chain(rest)
            .boxed();
        Ok(BlobRead { total, stream })
    }

    async fn size(&self, key: &BlobKey) -> Result<u64, BlobError> {
        Ok(fs::metadata(self.path(key))
            .await
            .map_err(|e| not_found(key, e))?
            .len())
    }

    async fn copy(&self, from: &BlobKey, to: &BlobKey) -> Result<(), BlobError> {
        let src = self.path(from);
        let dest = self.path(to);
        let parent = dest.parent().unwrap_or(&self.root).to_path_buf();
        fs::create_dir_all(&parent).await?;
        // Blobs are never modified in place, so a hard link is a safe copy; fall back to copying
        // where links are not possible.
        match fs::hard_link(&src, &dest).await {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(not_found(from, e)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(_) => {
                let mut tmp = TmpFile(Some(
                    self.root
                        .join("tmp")
                        .join(format!("{}.part", uuid::Uuid::now_v7())),
                ));
                fs::copy(&src, tmp.path())
                    .await
                    .map_err(|e| not_found(from, e))?;
                File::open(tmp.path()).await?.sync_all().await?;
                fs::rename(tmp.path(), &dest).await?;
                tmp.keep();
            }
        }
        sync_dir(&parent).await?;
        Ok(())
    }

    async fn remove(&self, key: &BlobKey) -> Result<(), BlobError> {
        match fs::remove_file(self.path(key)).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    async fn check(&self) -> Result<(), BlobError> {
        Ok(super::probe_dir(&self.root.join("tmp")).await?)
    }

    fn list(&self, prefix: &str) -> MetaStream {
        // A blocking walk on its own thread feeds a small queue, so millions of files never sit
        // in memory at once and the runtime's threads never wait on the disk.
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<BlobMeta, BlobError>>(256);
        let root = self.root.clone();
        let prefix = prefix.to_owned();
        tokio::task::spawn_blocking(move || walk(&root, &prefix, &tx));
        futures_util::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        })
        .boxed()
    }
}

/// Walks `root` depth first, sending every file whose key starts with `prefix`; `tmp/` (writes in
/// progress) is skipped. Stops early when the receiver is gone.
fn walk(root: &Path, prefix: &str, tx: &tokio::sync::mpsc::Sender<Result<BlobMeta, BlobError>>) {
    use std::os::unix::fs::MetadataExt;
    let mut dirs = vec![(root.to_path_buf(), String::new())];
    while let Some((dir, rel)) = dirs.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => {
                let _ = tx.blocking_send(Err(e.into()));
                return;
            }
        };
        for entry in entries {
            let item = entry.and_then(|e| {
                let meta = e.metadata()?;
                Ok((e.file_name(), meta))
            });
            let (name, meta) = match item {
                Ok(x) => x,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => {
                    let _ = tx.blocking_send(Err(e.into()));
                    return;
                }
            };
            let Some(name) = name.to_str() else { continue };
            let key = if rel.is_empty() {
                name.to_owned()
            } else {
                format!("{rel}/{name}")
            };
            if meta.is_dir() {
                // Descend only where keys under the prefix can be.
                if key != "tmp"
                    && (key.starts_with(prefix) || prefix.starts_with(&format!("{key}/")))
                {
                    dirs.push((dir.join(name), key));
                }
                continue;
            }
            if !meta.is_file() || !key.starts_with(prefix) {
                continue;
            }
            let Some(key) = BlobKey::from_stored(&key) else {
                continue;
            };
            let ms = |secs: i64, nanos: i64| secs * 1000 + nanos / 1_000_000;
            let modified_ms =
                ms(meta.mtime(), meta.mtime_nsec()).max(ms(meta.ctime(), meta.ctime_nsec()));
            let sent = tx.blocking_send(Ok(BlobMeta {
                key,
                size: meta.len(),
                modified_ms,
            }));
            if sent.is_err() {
                return;
            }
        }
    }
}

/// Bytes gathered before a trip to the blocking pool writes them (a 30 s G.711 recording is four
/// writes, then the rest with fsync, rename and the directory's fsync in one more trip). The
/// buffer is the whole per-upload cost here: 200 uploads in flight hold 12.5 MiB.
const WRITE_CHUNK: usize = 64 * 1024;

struct FsBlobWriter {
    /// `None` once closed, or while a write has it on the blocking pool.
    file: Option<std::fs::File>,
    buf: Vec<u8>,
    tmp: TmpFile,
    dest: PathBuf,
}

impl FsBlobWriter {
    /// Writes the buffer out (one trip to the blocking pool).
    async fn flush_buf(&mut self) -> Result<(), BlobError> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let buf = std::mem::take(&mut self.buf);
        self.write_out(buf).await
    }

    async fn write_out(&mut self, bytes: Vec<u8>) -> Result<(), BlobError> {
        let mut file = self.file.take().ok_or_else(closed)?;
        let (file, mut bytes) = blocking(move || {
            file.write_all(&bytes)?;
            Ok((file, bytes))
        })
        .await?;
        self.file = Some(file);
        // The buffer's allocation serves the next chunks (a large chunk's copy does not).
        if self.buf.capacity() == 0 && bytes.capacity() <= WRITE_CHUNK {
            bytes.clear();
            self.buf = bytes;
        }
        Ok(())
    }
}

fn closed() -> BlobError {
    BlobError::Io(std::io::Error::other("writer already closed"))
}

/// A file under `tmp/` that is removed when this is dropped, unless [`TmpFile::keep`] said it
/// was renamed into place: every way out of a write (an error at any step, a dropped future)
/// removes it, so a full disk never leaves `.part` files behind.
struct TmpFile(Option<PathBuf>);

impl TmpFile {
    fn path(&self) -> &Path {
        self.0.as_deref().unwrap_or(Path::new(""))
    }

    fn keep(&mut self) {
        self.0 = None;
    }
}

impl Drop for TmpFile {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = std::fs::remove_file(p);
        }
    }
}

#[async_trait]
impl BlobWriter for FsBlobWriter {
    async fn write(&mut self, chunk: &[u8]) -> Result<(), BlobError> {
        if self.file.is_none() {
            return Err(closed());
        }
        // The buffer never grows past WRITE_CHUNK (a Vec would double): what does not fit goes
        // to the file first; a chunk larger than the buffer is written as it is.
        if self.buf.len() + chunk.len() > WRITE_CHUNK {
            self.flush_buf().await?;
        }
        if chunk.len() >= WRITE_CHUNK {
            return self.write_out(chunk.to_vec()).await;
        }
        if self.buf.capacity() == 0 {
            self.buf.reserve_exact(WRITE_CHUNK);
        }
        self.buf.extend_from_slice(chunk);
        Ok(())
    }

    async fn commit(mut self: Box<Self>) -> Result<(), BlobError> {
        let mut file = self.file.take().ok_or_else(closed)?;
        let buf = std::mem::take(&mut self.buf);
        let (tmp, dest) = (self.tmp.path().to_path_buf(), self.dest.clone());
        // The rest, fsync, rename and the directory's fsync in one trip.
        blocking(move || {
            file.write_all(&buf)?;
            file.sync_all()?;
            drop(file);
            let parent = dest.parent().map(Path::to_path_buf).unwrap_or_default();
            std::fs::create_dir_all(&parent)?;
            std::fs::rename(&tmp, &dest)?;
            std::fs::File::open(&parent)?.sync_all()?;
            Ok(())
        })
        .await?;
        self.tmp.keep();
        Ok(())
    }

    async fn abort(mut self: Box<Self>) {
        self.file = None;
        if let Some(p) = self.tmp.0.take() {
            let _ = fs::remove_file(p).await;
        }
    }
}
