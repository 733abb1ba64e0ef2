//! Receiving a recording: stream it to storage while recognising it, hashing it and enforcing the
//! size and duration limits — the whole body is never in memory.

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use sha2::{Digest, Sha256};

use super::{Result, ServiceError, Voicemail};
use crate::audio::{self, AudioError, Probe, RawHint};
use crate::blob::{BlobKey, BlobWriter};
use crate::domain::AudioInfo;

/// A recording written to storage but not yet referenced by any row.
#[derive(Debug)]
pub struct ReceivedAudio {
    pub key: BlobKey,
    pub info: AudioInfo,
}

/// Duration limits in force for a recording.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub max_secs: u32,
    pub min_secs: u32,
}

impl Voicemail {
    /// Streams `body` into the blob `key`. On any error nothing is left under `key`.
    pub(crate) async fn receive_audio<S, E>(
        &self,
        key: BlobKey,
        hint: RawHint,
        mut body: S,
        limits: Limits,
    ) -> Result<ReceivedAudio>
    where
        S: Stream<Item = std::result::Result<Bytes, E>> + Unpin + Send,
        E: std::fmt::Display,
    {
        let max_body = self.config.http.max_body_bytes;
        let mut head: Vec<u8> = Vec::new();
        let mut probe: Option<Probe> = None;
        let mut writer: Option<Box<dyn BlobWriter>> = None;
        let mut hasher = Sha256::new();
        let mut total: u64 = 0;
        let mut limit = max_body;

        let outcome: Result<()> = async {
            while let Some(chunk) = body.next().await {
                let chunk = chunk.map_err(|e| ServiceError::Body(e.to_string()))?;
                total += chunk.len() as u64;
                if total > limit {
                    return Err(if limit < max_body {
                        ServiceError::TooLong {
                            max_secs: limits.max_secs,
                        }
                    } else {
                        ServiceError::PayloadTooLarge {
                            max_bytes: max_body,
                        }
                    });
                }
                hasher.update(&chunk);
                match (&probe, writer.as_mut()) {
                    (Some(_), Some(w)) => w.write(&chunk).await?,
                    _ => {
                        head.extend_from_slice(&chunk);
                        if let Some(p) = audio::probe(&head, hint, false)? {
                            limit = limit_for(&p, limits, max_body);
                            if total > limit {
                                return Err(ServiceError::TooLong {
                                    max_secs: limits.max_secs,
                                });
                            }
                            let mut w = self.blobs.writer(&key).await?;
                            w.write(&head).await?;
                            head = Vec::new();
                            writer = Some(w);
                            probe = Some(p);
                        }
                    }
                }
            }
            if probe.is_none() {
                let p = audio::probe(&head, hint, true)?.ok_or_else(|| {
                    AudioError::Corrupt("the recording could not be recognised".into())
                })?;
                let mut w = self.blobs.writer(&key).await?;
                w.write(&head).await?;
                writer = Some(w);
                probe = Some(p);
            }
            Ok(())
        }
        .await;

        let finished = outcome.and_then(|()| {
            let p = probe
                .clone()
                .ok_or_else(|| ServiceError::Audio(AudioError::Corrupt("no audio".into())))?;
            let duration_ms = audio::finish(&p, total)?;
            if limits.max_secs > 0 && duration_ms > u64::from(limits.max_secs) * 1000 {
                return Err(ServiceError::TooLong {
                    max_secs: limits.max_secs,
                });
            }
            if duration_ms < u64::from(limits.min_secs) * 1000 {
                return Err(ServiceError::TooShort {
                    duration_ms,
                    min_secs: limits.min_secs,
                });
            }
            Ok((p, duration_ms))
        });

        let (p, duration_ms) = match finished {
            Ok(v) => v,
            Err(e) => {
                if let Some(w) = writer {
                    w.abort().await;
                }
                return Err(e);
            }
        };
        let Some(w) = writer else {
            return Err(ServiceError::Audio(AudioError::Corrupt("no audio".into())));
        };
        w.commit().await?;
        Ok(ReceivedAudio {
            key,
            info: AudioInfo {
                format: p.format,
                sample_rate: p.sample_rate,
                channels: p.channels,
                bits_per_sample: p.bits_per_sample,
                duration_ms,
                byte_size: total,
                sha256: hex::encode(hasher.finalize()),
            },
        })
    }
}

fn limit_for(p: &Probe, limits: Limits, max_body: u64) -> u64 {
    if limits.max_secs == 0 {
        max_body
    } else {
        p.max_body_for(u64::from(limits.max_secs)).min(max_body)
    }
}
