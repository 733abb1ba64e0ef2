//! Receiving a recording: stream it to storage while recognising it, hashing it and enforcing the
//! size and duration limits — the whole body is never in memory.
//!
//! Formats with a fixed byte rate (WAV, headerless) are measured from their size. Compressed ones
//! (MP3, FLAC, Ogg, WebM) are also fed, chunk by chunk, to a validator on a decoder thread (see
//! `cpu_pool`) that decodes them as they arrive: it knows the duration when the body ends, and
//! refuses a damaged or over-long recording as soon as it sees it, which stops the upload. An
//! upload waits for a decoder before more of its body is read, and gets 503 `busy` when none
//! frees in time. While a decoder waits for its client it holds no CPU turn and no large state:
//! a Vorbis decoder's codebooks (about 2 MiB) are dropped and built again from the headers when
//! the next bytes arrive.

use std::io::Read;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, oneshot};

use super::cpu_pool::{CpuGate, Slot};
use super::{Result, ServiceError, Voicemail};
use crate::audio::{self, AudioError, GsmFrameCheck, Measured, Probe, RawHint};
use crate::blob::{BlobKey, BlobStore, BlobWriter};
use crate::domain::{AudioFormat, AudioInfo};

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

/// Chunks queued for the validator: with pieces of at most `PIECE` bytes, the queue holds at most
/// 64 KiB of a body, whatever its size. Pieces are copied out of the HTTP chunks: a slice would
/// keep hyper's whole read buffer (up to ~400 KiB) alive while it waits in the queue.
const QUEUE: usize = 4;
const PIECE: usize = 16 * 1024;

/// The body, as the validator's thread reads it from the receive loop.
struct ChannelReader {
    // A Mutex only to make the reader `Sync`, as the demuxers' source must be; it is never
    // contended (`get_mut`).
    rx: std::sync::Mutex<mpsc::Receiver<Bytes>>,
    current: Bytes,
    gate: Option<Arc<CpuGate>>,
    /// Dropped before each wait for the client (a Vorbis decoder's codebooks).
    idle: audio::IdleRelease,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            let rx = self
                .rx
                .get_mut()
                .map_err(|_| std::io::Error::other("validator channel poisoned"))?;
            let next = match rx.try_recv() {
                Ok(b) => Some(b),
                Err(mpsc::error::TryRecvError::Disconnected) => None,
                // Waiting for the client: the CPU turn goes to another decoder meanwhile, and the
                // decoder's large state is given back.
                Err(mpsc::error::TryRecvError::Empty) => {
                    self.idle.release();
                    match &self.gate {
                        Some(g) => g.release_while(|| rx.blocking_recv()),
                        None => rx.blocking_recv(),
                    }
                }
            };
            match next {
                Some(b) => self.current = b,
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        let _ = self.current.split_to(n);
        Ok(n)
    }
}

/// Decodes a compressed body as it streams in (see the module docs).
struct Validator {
    tx: Option<mpsc::Sender<Bytes>>,
    task: Option<oneshot::Receiver<std::result::Result<Measured, AudioError>>>,
    /// The validator's answer, once it stopped reading before the body ended.
    early: Option<std::result::Result<Measured, AudioError>>,
}

impl Validator {
    /// Starts decoding on the thread of `slot`; the reader blocks on the channel between chunks.
    fn start(slot: Slot, format: AudioFormat, max_secs: u32) -> Result<Self> {
        let (tx, rx) = mpsc::channel(QUEUE);
        let idle = audio::IdleRelease::default();
        let reader = ChannelReader {
            rx: std::sync::Mutex::new(rx),
            current: Bytes::new(),
            gate: slot.gate(),
            idle: idle.clone(),
        };
        let task =
            slot.run(move || audio::measure_streaming(format, reader, u64::from(max_secs), &idle))?;
        Ok(Self {
            tx: Some(tx),
            task: Some(task),
            early: None,
        })
    }

    async fn join(&mut self) -> std::result::Result<Measured, AudioError> {
        self.tx = None;
        if let Some(r) = self.early.take() {
            return r;
        }
        match self.task.take() {
            Some(t) => t.await.unwrap_or_else(|_| {
                tracing::error!("audio validator thread ended without an answer");
                Err(AudioError::Corrupt("the audio could not be decoded".into()))
            }),
            None => Err(AudioError::Corrupt("the audio could not be decoded".into())),
        }
    }

    /// Hands the next bytes to the validator; fails as soon as the validator refused the body.
    async fn feed(&mut self, chunk: &Bytes) -> std::result::Result<(), AudioError> {
        let Some(tx) = &self.tx else {
            return Ok(());
        };
        for piece in chunk.chunks(PIECE) {
            if tx.send(Bytes::copy_from_slice(piece)).await.is_err() {
                // The decoder stopped reading: it refused the body, or the audio ended before it
                // (trailing bytes, such as an ID3v1 tag, are kept but not audio).
                let m = self.join().await?;
                self.early = Some(Ok(m));
                return Ok(());
            }
        }
        Ok(())
    }
}

fn audio_error(e: AudioError, limits: Limits) -> ServiceError {
    match e {
        AudioError::TooLong(_) => ServiceError::TooLong {
            max_secs: limits.max_secs,
        },
        other => ServiceError::Audio(other),
    }
}

impl Voicemail {
    /// Streams `body` into the blob `key` of the audio store. On any error nothing is left under
    /// `key`.
    pub(crate) async fn receive_audio<S, E>(
        &self,
        key: BlobKey,
        hint: RawHint,
        body: S,
        limits: Limits,
    ) -> Result<ReceivedAudio>
    where
        S: Stream<Item = std::result::Result<Bytes, E>> + Unpin + Send,
        E: std::fmt::Display,
    {
        let store = self.blobs.clone();
        self.receive_audio_into(&*store, key, hint, body, limits)
            .await
    }

    /// Streams `body` into the blob `key` of `store` (the audio store, or the IMAP store's
    /// deposit scratch). On any error nothing is left under `key`.
    pub(crate) async fn receive_audio_into<S, E>(
        &self,
        store: &dyn BlobStore,
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
        let mut validator: Option<Validator> = None;
        let mut gsm_check: Option<GsmFrameCheck> = None;
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
                if let Some(w) = writer.as_mut() {
                    w.write(&chunk).await?;
                    if let Some(v) = validator.as_mut() {
                        v.feed(&chunk).await.map_err(|e| audio_error(e, limits))?;
                    }
                    if let Some(c) = gsm_check.as_mut() {
                        c.feed(&chunk)?;
                    }
                    continue;
                }
                head.extend_from_slice(&chunk);
                if let Some(p) = audio::probe(&head, hint, false)? {
                    limit = limit_for(&p, limits, max_body);
                    if total > limit {
                        return Err(ServiceError::TooLong {
                            max_secs: limits.max_secs,
                        });
                    }
                    let head = Bytes::from(std::mem::take(&mut head));
                    (writer, validator, gsm_check) =
                        self.start_storing(store, &key, &p, &head, limits).await?;
                    probe = Some(p);
                }
            }
            if probe.is_none() {
                let p = audio::probe(&head, hint, true)?.ok_or_else(|| {
                    AudioError::Corrupt("the recording could not be recognised".into())
                })?;
                let head = Bytes::from(std::mem::take(&mut head));
                (writer, validator, gsm_check) =
                    self.start_storing(store, &key, &p, &head, limits).await?;
                probe = Some(p);
            }
            Ok(())
        }
        .await;

        let finished = match outcome {
            Ok(()) => {
                self.check(probe.as_ref(), validator.as_mut(), total, limits)
                    .await
            }
            Err(e) => Err(e),
        };
        let (p, measured) = match finished {
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
                sample_rate: measured.sample_rate,
                channels: measured.channels,
                bits_per_sample: p.bits_per_sample,
                duration_ms: measured.duration_ms,
                byte_size: total,
                sha256: hex::encode(hasher.finalize()),
            },
        })
    }

    /// Opens the blob and writes the header bytes; starts the validator for a compressed format
    /// and the frame check for raw GSM.
    async fn start_storing(
        &self,
        store: &dyn BlobStore,
        key: &BlobKey,
        p: &Probe,
        head: &Bytes,
        limits: Limits,
    ) -> Result<(
        Option<Box<dyn BlobWriter>>,
        Option<Validator>,
        Option<GsmFrameCheck>,
    )> {
        let mut gsm_check = (p.format == AudioFormat::RawGsm).then(GsmFrameCheck::default);
        if let Some(c) = gsm_check.as_mut() {
            c.feed(head)?;
        }
        // Before the blob is opened and while no more of the body is read: a queued upload holds
        // neither a file nor buffers, and its client is slowed down by TCP.
        let slot = if p.format.is_compressed() {
            Some(self.decoders.slot().await?)
        } else {
            None
        };
        let mut w = store.writer(key).await?;
        if let Err(e) = w.write(head).await {
            w.abort().await;
            return Err(e.into());
        }
        let mut validator = match slot.map(|s| Validator::start(s, p.format, limits.max_secs)) {
            Some(Ok(v)) => Some(v),
            Some(Err(e)) => {
                w.abort().await;
                return Err(e);
            }
            None => None,
        };
        if let Some(v) = validator.as_mut()
            && let Err(e) = v.feed(head).await
        {
            w.abort().await;
            return Err(audio_error(e, limits));
        }
        Ok((Some(w), validator, gsm_check))
    }

    /// Checks the whole body once it has arrived: its length against its header, or the
    /// validator's verdict; then the duration limits.
    async fn check(
        &self,
        probe: Option<&Probe>,
        validator: Option<&mut Validator>,
        total: u64,
        limits: Limits,
    ) -> Result<(Probe, Measured)> {
        let p = probe
            .cloned()
            .ok_or_else(|| ServiceError::Audio(AudioError::Corrupt("no audio".into())))?;
        let measured = match validator {
            Some(v) => v.join().await.map_err(|e| audio_error(e, limits))?,
            None => Measured {
                duration_ms: audio::finish(&p, total)?,
                sample_rate: p.sample_rate,
                channels: p.channels,
            },
        };
        let duration_ms = measured.duration_ms;
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
        Ok((p, measured))
    }
}

fn limit_for(p: &Probe, limits: Limits, max_body: u64) -> u64 {
    if limits.max_secs == 0 {
        max_body
    } else {
        p.max_body_for(u64::from(limits.max_secs)).min(max_body)
    }
}
