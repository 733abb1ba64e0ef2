//! Audio blobs in an S3-compatible bucket (AWS S3, MinIO, Ceph RGW, Garage…), through the
//! Apache Arrow project's `object_store` crate (signing, retries with backoff, multipart uploads,
//! ranged reads).

use std::io;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use object_store::aws::{AmazonS3, AmazonS3Builder, AwsCredential};
use object_store::path::Path;
use object_store::{
    BackoffConfig, ClientOptions, GetOptions, GetRange, MultipartUpload, ObjectStore,
    ObjectStoreExt, PutPayloadMut, RetryConfig, StaticCredentialProvider,
};

use super::{BlobError, BlobKey, BlobMeta, BlobRead, BlobStore, BlobWriter, MetaStream};
use crate::config::S3Config;

/// Audio blobs as objects in one bucket, under `prefix`.
///
/// A recording up to `part_size_bytes` is buffered and sent in one PUT at commit; a larger one
/// is sent as a multipart upload, one part at a time, so one writer never holds more than one
/// part in memory. Nothing is visible under a key before [`BlobWriter::commit`]: a single PUT is
/// only sent then, and a multipart upload only becomes an object when it is completed.
pub struct S3BlobStore {
    store: Arc<AmazonS3>,
    /// `""` or a normalised prefix ending in `/`.
    prefix: String,
    part_size: usize,
}

/// Checks and normalises the configured prefix: `voxmail`, `/voxmail/` and `voxmail/` all become
/// `voxmail/`, so keys are `voxmail/messages/…`. Only the characters of our own keys are allowed,
/// so a key is stored exactly as written (`object_store` would percent-encode anything else).
fn normalise_prefix(prefix: &str) -> Result<String, BlobError> {
    let trimmed = prefix.trim_matches('/');
    if trimmed.is_empty() {
        return Ok(String::new());
    }
    if BlobKey::from_stored(trimmed).is_none() {
        return Err(config_error(format!(
            "audio.s3.prefix {prefix:?} may only hold letters, digits, '-', '_', '.' and '/' \
             (and no empty, '.' or '..' segments)"
        )));
    }
    Ok(format!("{trimmed}/"))
}

/// `object_store` expects a virtual-hosted endpoint to name the bucket already
/// (`https://bucket.host`); our configuration names the server (`https://host`), so the bucket
/// is put in front of the host unless it is there.
fn bucket_endpoint(endpoint: &str, bucket: &str, virtual_hosted: bool) -> String {
    if !virtual_hosted {
        return endpoint.to_owned();
    }
    match endpoint.split_once("://") {
        Some((scheme, host)) if !host.starts_with(&format!("{bucket}.")) => {
            format!("{scheme}://{bucket}.{host}")
        }
        _ => endpoint.to_owned(),
    }
}

fn config_error(msg: String) -> BlobError {
    BlobError::Io(io::Error::new(io::ErrorKind::InvalidInput, msg))
}

/// Maps an `object_store` error on `key`; a missing object is [`BlobError::NotFound`], the rest
/// is a storage failure (credentials never appear in these messages: requests are signed in
/// headers, and the errors quote the URL and the server's answer only).
fn s3_error(op: &str, key: &str, e: object_store::Error) -> BlobError {
    match e {
        object_store::Error::NotFound { .. } => BlobError::NotFound(key.to_owned()),
        e => BlobError::Io(io_error(op, key, e)),
    }
}

fn io_error(op: &str, key: &str, e: object_store::Error) -> io::Error {
    let kind = match &e {
        object_store::Error::NotFound { .. } => io::ErrorKind::NotFound,
        object_store::Error::PermissionDenied { .. }
        | object_store::Error::Unauthenticated { .. } => io::ErrorKind::PermissionDenied,
        _ => io::ErrorKind::Other,
    };
    io::Error::new(kind, format!("S3 {op} {key}: {e}"))
}

impl S3BlobStore {
    /// Builds the client. Settings come from the `AWS_*` environment variables first
    /// (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AWS_ENDPOINT`,
    /// `AWS_REGION`…, and the instance or container credentials they point to); every non-empty
    /// field of `cfg` overrides them, and `path_style`/`allow_http` always apply. Sends no
    /// request: an unreachable or misconfigured bucket shows in [`BlobStore::check`] (`/readyz`).
    pub fn open(cfg: &S3Config) -> Result<Self, BlobError> {
        let prefix = normalise_prefix(&cfg.prefix)?;
        let part_size = usize::try_from(cfg.part_size_bytes)
            .map_err(|_| config_error("audio.s3.part_size_bytes is too large".into()))?;
        if part_size < 5 * 1024 * 1024 {
            return Err(config_error(
                "audio.s3.part_size_bytes must be at least 5 MiB (the S3 minimum part size)".into(),
            ));
        }
        let timeout = Duration::from_secs(cfg.timeout_secs.max(1));
        let options = ClientOptions::new()
            .with_timeout(timeout)
            .with_connect_timeout(timeout.min(Duration::from_secs(5)));
        // A request that fails for a reason worth retrying (5xx, 429, a broken connection, a
        // timeout) is tried again after 100 ms, 200 ms… up to 5 s apart, at most 5 times and not
        // after 3 × timeout_secs in all, so a deposit fails while its caller is still waiting.
        let retry = RetryConfig {
            backoff: BackoffConfig {
                init_backoff: Duration::from_millis(100),
                max_backoff: Duration::from_secs(5),
                base: 2.0,
            },
            max_retries: 5,
            retry_timeout: timeout * 3,
        };
        let mut b = AmazonS3Builder::from_env()
            .with_client_options(options)
            .with_retry(retry)
            .with_virtual_hosted_style_request(!cfg.path_style)
            .with_allow_http(cfg.allow_http);
        if !cfg.region.is_empty() {
            b = b.with_region(&cfg.region);
        }
        if !cfg.bucket.is_empty() {
            b = b.with_bucket_name(&cfg.bucket);
        }
        if !cfg.endpoint.is_empty() {
            b = b.with_endpoint(bucket_endpoint(&cfg.endpoint, &cfg.bucket, !cfg.path_style));
        }
        match (
            cfg.access_key_id.is_empty(),
            cfg.secret_access_key.is_empty(),
        ) {
            // Keys from the file: a session token from the environment belongs to other keys.
            (false, false) => {
                b = b.with_credentials(Arc::new(StaticCredentialProvider::new(AwsCredential {
                    key_id: cfg.access_key_id.clone(),
                    secret_key: cfg.secret_access_key.clone(),
                    token: None,
                })));
            }
            (true, true) => {}
            _ => {
                return Err(config_error(
                    "audio.s3.access_key_id and audio.s3.secret_access_key must be set together \
                     (or both left empty to take them from the environment)"
                        .into(),
                ));
            }
        }
        let store = b
            .build()
            .map_err(|e| config_error(format!("audio.s3: {e}")))?;
        Ok(Self {
            store: Arc::new(store),
            prefix,
            part_size,
        })
    }

    fn path(&self, key: &BlobKey) -> Path {
        Path::from(format!("{}{}", self.prefix, key.as_str()))
    }
}

#[async_trait]
impl BlobStore for S3BlobStore {
    async fn writer(&self, key: &BlobKey) -> Result<Box<dyn BlobWriter>, BlobError> {
        Ok(Box::new(S3BlobWriter {
            store: Arc::clone(&self.store),
            path: self.path(key),
            key: key.as_str().to_owned(),
            part_size: self.part_size,
            buf: new_buffer(),
            upload: None,
            failed: false,
        }))
    }

    async fn open(&self, key: &BlobKey, range: Option<(u64, u64)>) -> Result<BlobRead, BlobError> {
        let path = self.path(key);
        let mut opts = GetOptions::default();
        if let Some((start, end)) = range {
            if start > end {
                return Err(BlobError::RangeNotSatisfiable);
            }
            opts.range = Some(GetRange::Bounded(start..end.saturating_add(1)));
        }
        let res = match self.store.get_opts(&path, opts).await {
            Ok(res) => res,
            Err(e @ object_store::Error::NotFound { .. }) => {
                return Err(s3_error("GET", key.as_str(), e));
            }
            Err(e) => {
                // A range starting past the end gets 416, which object_store reports as a plain
                // failure; the object's size tells the two apart.
                if let Some((start, _)) = range
                    && let Ok(meta) = self.store.head(&path).await
                    && start >= meta.size
                {
                    return Err(BlobError::RangeNotSatisfiable);
                }
                return Err(s3_error("GET", key.as_str(), e));
            }
        };
        let total = res.meta.size;
        if let Some((_, end)) = range
            && end >= total
        {
            // S3 shortens a range that runs past the end; our contract refuses it.
            return Err(BlobError::RangeNotSatisfiable);
        }
        let state = ReadState {
            store: Arc::clone(&self.store),
            path,
            key: key.as_str().to_owned(),
            etag: res.meta.e_tag.clone(),
            next: res.range.start,
            end: res.range.end,
            progressed: false,
            inner: res.into_stream(),
        };
        Ok(BlobRead {
            total,
            stream: resumable(state),
        })
    }

    async fn size(&self, key: &BlobKey) -> Result<u64, BlobError> {
        let meta = self
            .store
            .head(&self.path(key))
            .await
            .map_err(|e| s3_error("HEAD", key.as_str(), e))?;
        Ok(meta.size)
    }

    async fn copy(&self, from: &BlobKey, to: &BlobKey) -> Result<(), BlobError> {
        // CopyObject: the server copies the bytes, nothing passes through this process.
        self.store
            .copy(&self.path(from), &self.path(to))
            .await
            .map_err(|e| s3_error("COPY", from.as_str(), e))
    }

    async fn remove(&self, key: &BlobKey) -> Result<(), BlobError> {
        match self.store.delete(&self.path(key)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(s3_error("DELETE", key.as_str(), e)),
        }
    }

    async fn check(&self) -> Result<(), BlobError> {
        let key = format!("tmp/readyz-{}", uuid::Uuid::now_v7());
        let path = Path::from(format!("{}{key}", self.prefix));
        self.store
            .put(&path, Bytes::from_static(b"ok").into())
            .await
            .map_err(|e| s3_error("PUT", &key, e))?;
        self.store
            .delete(&path)
            .await
            .map_err(|e| s3_error("DELETE", &key, e))
    }

    fn list(&self, prefix: &str) -> MetaStream {
        // object_store lists by whole path segments, so list the deepest "directory" the
        // prefix names and keep the keys that start with the whole prefix.
        let full = format!("{}{prefix}", self.prefix);
        let dir = full
            .rfind('/')
            .map(|i| &full[..i])
            .filter(|d| !d.is_empty())
            .map(Path::from);
        let strip = self.prefix.clone();
        self.store
            .list(dir.as_ref())
            .filter_map(move |item| {
                let out = match item {
                    Ok(meta) => {
                        let loc = meta.location.as_ref();
                        loc.starts_with(&full)
                            .then(|| &loc[strip.len()..])
                            .filter(|rel| !rel.starts_with("tmp/"))
                            .and_then(BlobKey::from_stored)
                            .map(|key| {
                                Ok(BlobMeta {
                                    key,
                                    size: meta.size,
                                    modified_ms: meta.last_modified.timestamp_millis(),
                                })
                            })
                    }
                    Err(e) => Some(Err(s3_error("LIST", &full, e))),
                };
                std::future::ready(out)
            })
            .boxed()
    }
}

fn new_buffer() -> PutPayloadMut {
    PutPayloadMut::new().with_block_size(64 * 1024)
}

/// A blob being uploaded: bytes gather in `buf` up to one part; the multipart upload is only
/// started when a second part is needed.
struct S3BlobWriter {
    store: Arc<AmazonS3>,
    path: Path,
    key: String,
    part_size: usize,
    buf: PutPayloadMut,
    /// The multipart upload, once started; aborted unless completed (see `Drop`).
    upload: Option<Box<dyn MultipartUpload>>,
    /// A part failed to upload: the blob can no longer be completed.
    failed: bool,
}

impl S3BlobWriter {
    fn closed(&self) -> Result<(), BlobError> {
        if self.failed {
            return Err(BlobError::Io(io::Error::other(format!(
                "S3 upload of {} already failed",
                self.key
            ))));
        }
        Ok(())
    }

    /// Sends the full buffer as the next part, starting the multipart upload if needed.
    async fn flush_part(&mut self) -> Result<(), BlobError> {
        let payload = std::mem::replace(&mut self.buf, new_buffer()).freeze();
        if self.upload.is_none() {
            let upload = self
                .store
                .put_multipart(&self.path)
                .await
                .map_err(|e| s3_error("CreateMultipartUpload", &self.key, e))?;
            self.upload = Some(upload);
        }
        if let Some(upload) = self.upload.as_mut() {
            upload
                .put_part(payload)
                .await
                .map_err(|e| s3_error("UploadPart", &self.key, e))?;
        }
        Ok(())
    }
}

#[async_trait]
impl BlobWriter for S3BlobWriter {
    async fn write(&mut self, chunk: &[u8]) -> Result<(), BlobError> {
        self.closed()?;
        let mut rest = chunk;
        while !rest.is_empty() {
            // A full buffer is only sent once more bytes come, so a blob of exactly one part
            // still goes in a single PUT.
            if self.buf.content_length() >= self.part_size {
                self.failed = true;
                self.flush_part().await?;
                self.failed = false;
            }
            let n = (self.part_size - self.buf.content_length()).min(rest.len());
            self.buf.extend_from_slice(&rest[..n]);
            rest = &rest[n..];
        }
        Ok(())
    }

    async fn commit(mut self: Box<Self>) -> Result<(), BlobError> {
        self.closed()?;
        let payload = std::mem::replace(&mut self.buf, new_buffer()).freeze();
        match self.upload.as_mut() {
            None => {
                self.store
                    .put(&self.path, payload)
                    .await
                    .map_err(|e| s3_error("PUT", &self.key, e))?;
            }
            Some(upload) => {
                // On any error below, or if this future is dropped, `Drop` aborts the upload.
                if payload.content_length() > 0 {
                    upload
                        .put_part(payload)
                        .await
                        .map_err(|e| s3_error("UploadPart", &self.key, e))?;
                }
                upload
                    .complete()
                    .await
                    .map_err(|e| s3_error("CompleteMultipartUpload", &self.key, e))?;
                self.upload = None;
            }
        }
        Ok(())
    }

    async fn abort(mut self: Box<Self>) {
        if let Some(mut upload) = self.upload.take()
            && let Err(e) = upload.abort().await
        {
            tracing::warn!(audio.key = %self.key, error = %e, "aborting an S3 multipart upload failed; a lifecycle rule on the bucket removes its parts");
        }
    }
}

impl Drop for S3BlobWriter {
    fn drop(&mut self) {
        // Dropped mid-write (client went away, error): abort the multipart upload so its parts
        // are not kept (and billed) by the bucket. Before a multipart upload starts nothing was
        // sent, so there is nothing to undo.
        let Some(mut upload) = self.upload.take() else {
            return;
        };
        let key = std::mem::take(&mut self.key);
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                rt.spawn(async move {
                    if let Err(e) = upload.abort().await {
                        tracing::warn!(audio.key = %key, error = %e, "aborting an S3 multipart upload failed; a lifecycle rule on the bucket removes its parts");
                    }
                });
            }
            Err(_) => {
                tracing::warn!(audio.key = %key, "an S3 multipart upload was left unfinished (no runtime to abort it); a lifecycle rule on the bucket removes its parts");
            }
        }
    }
}

/// One open read: the bytes `next..end` are still to come from `inner`.
struct ReadState {
    store: Arc<AmazonS3>,
    path: Path,
    key: String,
    etag: Option<String>,
    next: u64,
    end: u64,
    /// Bytes arrived since the last (re)start.
    progressed: bool,
    inner: BoxStream<'static, object_store::Result<Bytes>>,
}

/// The bytes of one GET. A request may take at most `timeout_secs`, also while its body is read,
/// so a slow reader (a client fetching a long message at its own pace) would see its read fail
/// mid-way; `object_store` resumes such reads with a ranged GET, within its retry budget, and
/// this stream resumes again, with a fresh budget, as long as each attempt made progress. The
/// resumed GET names the ETag, so the bytes can never come from another object.
fn resumable(state: ReadState) -> super::ByteStream {
    futures_util::stream::unfold(Some(state), |state| async move {
        let mut st = state?;
        loop {
            match st.inner.next().await {
                Some(Ok(bytes)) => {
                    st.next += bytes.len() as u64;
                    st.progressed = true;
                    return Some((Ok(bytes), Some(st)));
                }
                None if st.next >= st.end => return None,
                None => {
                    let e = io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!("S3 GET {}: the response ended early", st.key),
                    );
                    return Some((Err(e), None));
                }
                Some(Err(e)) => {
                    if !st.progressed || st.etag.is_none() || st.next >= st.end {
                        return Some((Err(io_error("GET", &st.key, e)), None));
                    }
                    tracing::debug!(audio.key = %st.key, offset = st.next, error = %e, "resuming an S3 read");
                    let opts = GetOptions {
                        range: Some(GetRange::Bounded(st.next..st.end)),
                        if_match: st.etag.clone(),
                        ..GetOptions::default()
                    };
                    match st.store.get_opts(&st.path, opts).await {
                        Ok(res) => {
                            st.inner = res.into_stream();
                            st.progressed = false;
                        }
                        Err(e) => return Some((Err(io_error("GET", &st.key, e)), None)),
                    }
                }
            }
        }
    })
    .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_are_normalised_and_checked() {
        assert_eq!(normalise_prefix("").unwrap(), "");
        assert_eq!(normalise_prefix("/").unwrap(), "");
        assert_eq!(normalise_prefix("voxmail").unwrap(), "voxmail/");
        assert_eq!(normalise_prefix("/vm/prod/").unwrap(), "vm/prod/");
        assert!(normalise_prefix("a b").is_err());
        assert!(normalise_prefix("a/../b").is_err());
        assert!(normalise_prefix("a//b").is_err());
    }

    #[test]
    fn virtual_hosted_endpoints_name_the_bucket() {
        assert_eq!(
            bucket_endpoint("https://minio.example.net:9000", "vm", true),
            "https://vm.minio.example.net:9000"
        );
        assert_eq!(
            bucket_endpoint("https://vm.minio.example.net", "vm", true),
            "https://vm.minio.example.net"
        );
        assert_eq!(
            bucket_endpoint("http://127.0.0.1:9000", "vm", false),
            "http://127.0.0.1:9000"
        );
    }
}
