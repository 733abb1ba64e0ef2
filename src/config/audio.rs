//! Audio storage and processing (`[audio]`, `[audio.s3]`): where audio is kept, the orphan
//! collector, the decoder and transcoder pools, and Opus settings.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::ConfigError;

/// Audio storage settings.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AudioConfig {
    /// Where audio bytes are kept: `fs` (a local directory, the default), `s3` (an
    /// S3-compatible bucket, see `[audio.s3]`; what a cluster of nodes shares) or `db` (the
    /// database's `recording` column, as Asterisk's ODBC storage keeps it).
    pub store: AudioStore,
    /// Directory of the `fs` store. Empty = `<data_dir>/audio`.
    pub dir: PathBuf,
    /// The bucket of the `s3` store.
    pub s3: S3Config,
    /// Audio objects no committed message or greeting references are removed once they are
    /// this many seconds old (a crash between "audio written" and "row committed" leaves one).
    /// Must be far longer than any deposit takes; 0 turns the collector off.
    pub orphan_grace_secs: u64,
    /// Seconds between two passes of the orphan collector on this node (each pass lists the
    /// whole store, so on S3 it costs one LIST request per 1,000 objects).
    pub orphan_sweep_secs: u64,
    /// Renditions (Opus, GSM, WAV…), admin waveforms and e-mail attachments transcoded at once,
    /// each on a thread of its own; more wait (see `transcode_queue`), so a burst of fetches
    /// cannot take the CPU from deposits.
    pub transcode_concurrency: usize,
    /// Rendition and waveform requests that may wait for a transcoder; past them, or after
    /// `busy_wait_ms`, a request gets 503 `busy` with Retry-After. E-mail attachments wait
    /// their turn without a limit (their own concurrency is bounded).
    pub transcode_queue: usize,
    /// Uploads of a compressed format (MP3, FLAC, Ogg, WebM) checked at once. Each is decoded as
    /// it streams in, on a thread of its own that lives as long as the upload, mostly waiting for
    /// the client (never on the blocking pool file writes need); 0.3–0.5 MiB each. More
    /// uploads wait for one, with no more of their body read (see `decoder_queue`). WAV and
    /// headerless uploads need no decoder and never wait.
    pub max_decoders: usize,
    /// Compressed uploads that may wait for a decoder; past them, or after `busy_wait_ms`, an
    /// upload gets 503 `busy` with Retry-After.
    pub decoder_queue: usize,
    /// Milliseconds an upload or a rendition request waits for a decoder or a transcoder before
    /// its 503 `busy` (whose Retry-After is this in seconds, 1–10).
    pub busy_wait_ms: u64,
    /// Decoders that may compute at once (0 = the number of CPUs less one, at least one); the
    /// others wait for their client or their turn, so hundreds of compressed uploads leave CPU
    /// time to the rest of the node.
    pub decode_threads: usize,
    /// Bitrate of Opus renditions and attachments in bit/s when a request names none (one of
    /// 8000, 12000, 16000, 24000, 32000, 48000, 64000).
    pub opus_bitrate: u32,
    /// libopus complexity of Opus renditions and attachments, 0–10. The default 8 is the
    /// encoder's best speech mode (9 and 10 make the same bits for 8–16 kHz speech) and sounds at least as
    /// good as ffmpeg's libopus; 6–7 do ~25 % less work for 0 to −0.19 PESQ MOS on 16 kbit/s
    /// speech, 5 ~45 % less for −0.02 to −0.45 (see bench/README.md, Opus quality). Cached
    /// renditions are kept, so a change applies to renditions made afterwards.
    pub opus_complexity: u8,
}

impl Default for AudioConfig {
    fn default() -> Self {
        Self {
            store: AudioStore::Fs,
            dir: PathBuf::new(),
            s3: S3Config::default(),
            orphan_grace_secs: 6 * 3600,
            orphan_sweep_secs: 3600,
            transcode_concurrency: 2,
            transcode_queue: 64,
            max_decoders: 256,
            decoder_queue: 256,
            busy_wait_ms: 10_000,
            decode_threads: 0,
            opus_bitrate: 16000,
            opus_complexity: 8,
        }
    }
}

impl AudioConfig {
    /// Decoders that may compute at once: `decode_threads`, or the CPUs less one.
    pub fn decode_cpus(&self) -> usize {
        match self.decode_threads {
            0 => std::thread::available_parallelism()
                .map_or(1, |n| n.get().saturating_sub(1))
                .max(1),
            n => n,
        }
    }

    /// Checks the store (and its bucket), the orphan collector, the CPU pools and the Opus
    /// settings (against `audio::rendition`'s bitrates and complexity).
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        match self.store {
            AudioStore::Fs | AudioStore::Db => {}
            AudioStore::S3 => self.s3.validate()?,
        }
        if self.orphan_grace_secs > 0 && self.orphan_sweep_secs == 0 {
            return Err(ConfigError::Value(
                "audio.orphan_sweep_secs must be at least 1 (or set orphan_grace_secs = 0 to turn the collector off)".into(),
            ));
        }
        if self.transcode_concurrency == 0 {
            return Err(ConfigError::Value(
                "audio.transcode_concurrency must be at least 1".into(),
            ));
        }
        if self.max_decoders == 0 {
            return Err(ConfigError::Value(
                "audio.max_decoders must be at least 1".into(),
            ));
        }
        if !crate::audio::rendition::OPUS_BITRATES.contains(&self.opus_bitrate) {
            return Err(ConfigError::Value(format!(
                "audio.opus_bitrate must be one of {:?}",
                crate::audio::rendition::OPUS_BITRATES
            )));
        }
        if self.opus_complexity > crate::audio::rendition::MAX_OPUS_COMPLEXITY {
            return Err(ConfigError::Value(format!(
                "audio.opus_complexity must be 0..={}",
                crate::audio::rendition::MAX_OPUS_COMPLEXITY
            )));
        }
        Ok(())
    }
}

/// Where audio bytes are kept (`audio.store`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AudioStore {
    /// A local directory (`audio.dir`).
    #[default]
    Fs,
    /// An S3-compatible bucket (`[audio.s3]`).
    S3,
    /// The database's `recording` columns.
    Db,
}

impl AudioStore {
    /// The name used in the configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Fs => "fs",
            Self::S3 => "s3",
            Self::Db => "db",
        }
    }
}

/// An S3-compatible bucket (AWS S3, MinIO, Ceph RGW, Garage, …) for `audio.store = "s3"`.
///
/// Credentials are best left out of the file: when `access_key_id` is empty they come from the
/// environment (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`) or the
/// instance's metadata service, as AWS tools do.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct S3Config {
    /// Endpoint URL, e.g. `https://minio.example.net:9000`. Empty = AWS for `region`.
    pub endpoint: String,
    /// Region name (most non-AWS servers accept any name).
    pub region: String,
    /// Bucket name; it must exist.
    pub bucket: String,
    /// Prefix put before every key (e.g. `voxmail/`), to share a bucket with other data.
    pub prefix: String,
    /// Path-style requests (`endpoint/bucket/key`), which MinIO and most self-hosted servers
    /// need; false = virtual-hosted style (`bucket.endpoint/key`), as AWS prefers.
    pub path_style: bool,
    /// Allows an `http://` endpoint (a test server, or a server on a trusted network).
    pub allow_http: bool,
    /// Access key id; empty = from the environment.
    pub access_key_id: String,
    /// Secret access key (never logged); empty = from the environment.
    pub secret_access_key: String,
    /// Recordings up to this size are sent in one PUT; larger ones as a multipart upload in
    /// parts of this size (at least 5 MiB, the S3 minimum). It is also the memory one upload
    /// may hold.
    pub part_size_bytes: u64,
    /// Seconds one request to the bucket may take before it is retried or fails.
    pub timeout_secs: u64,
}

impl Default for S3Config {
    fn default() -> Self {
        Self {
            endpoint: String::new(),
            region: "us-east-1".into(),
            bucket: String::new(),
            prefix: String::new(),
            path_style: false,
            allow_http: false,
            access_key_id: String::new(),
            secret_access_key: String::new(),
            part_size_bytes: 8 * 1024 * 1024,
            timeout_secs: 30,
        }
    }
}

impl std::fmt::Debug for S3Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Config")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("bucket", &self.bucket)
            .field("prefix", &self.prefix)
            .field("path_style", &self.path_style)
            .field("allow_http", &self.allow_http)
            .field("access_key_id", &self.access_key_id)
            .field(
                "secret_access_key",
                &if self.secret_access_key.is_empty() {
                    ""
                } else {
                    "***"
                },
            )
            .field("part_size_bytes", &self.part_size_bytes)
            .field("timeout_secs", &self.timeout_secs)
            .finish()
    }
}

impl S3Config {
    /// Checks the bucket settings (only when `audio.store = "s3"`).
    fn validate(&self) -> Result<(), ConfigError> {
        if self.bucket.is_empty() {
            return Err(ConfigError::Value(
                "audio.store = \"s3\" needs audio.s3.bucket".into(),
            ));
        }
        if self.part_size_bytes < 5 * 1024 * 1024 {
            return Err(ConfigError::Value(
                "audio.s3.part_size_bytes must be at least 5 MiB (5242880), the S3 minimum part size".into(),
            ));
        }
        if self.endpoint.starts_with("http://") && !self.allow_http {
            return Err(ConfigError::Value(
                "audio.s3.endpoint is http://: set audio.s3.allow_http = true to send audio unencrypted".into(),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    #[test]
    fn opus_complexity_above_ten_is_refused() {
        let mut c = Config::default();
        c.audio.opus_complexity = 10;
        assert!(c.validate().is_ok());
        c.audio.opus_complexity = 11;
        let err = c
            .validate()
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("opus_complexity"), "{err}");
    }
}
