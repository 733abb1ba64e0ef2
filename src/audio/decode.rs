//! Decoding a recording (any format the deposit path accepts) to mono 16-bit PCM at its source
//! rate. [`Decoder`] streams: it reads a `std::io::Read` forward only, a block or a packet at a
//! time, and hands out chunks, so its memory is bounded by a constant whatever the recording's
//! length; [`decode`] collects it, [`measure`] only counts it.

use std::io::{self, Read};

use voxmail_codecs::{GSM_FRAME_BYTES, GSM_FRAME_SAMPLES, GsmDecoder, WAV49_BLOCK_BYTES};

use super::compressed::{CompressedDecoder, IdleRelease, Source};
use super::probe::{self, MAX_HEADER, Probe};
use super::{AudioError, RawHint, g711};
use crate::domain::AudioFormat;

/// Mono 16-bit samples at a sample rate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pcm {
    /// Samples per second.
    pub rate: u32,
    /// The samples, mono.
    pub samples: Vec<i16>,
}

/// Longest audio [`decode`] produces: the largest `maxsecs` a mailbox may have.
pub const MAX_DECODE_SECS: u64 = 86_400;
/// Longest audio [`decode_any`] produces (it takes untrusted bytes).
pub const DECODE_ANY_MAX_SECS: u64 = 600;
/// Bytes of block-format audio read per chunk.
const CHUNK_BYTES: usize = 32 * 1024;

/// The audio bytes of a recording (after its header, as long as the header says) and its probe.
/// Block formats only (WAV, raw). Only the tests' whole-buffer reference transcoder uses it now.
#[cfg(test)]
pub fn audio_data(format: AudioFormat, bytes: &[u8]) -> Result<(Probe, &[u8]), AudioError> {
    let p = probe::probe(bytes, RawHint::for_format(format), true)?
        .ok_or_else(|| AudioError::Corrupt("the recording header is incomplete".into()))?;
    let start = usize::try_from(p.data_offset)
        .unwrap_or(usize::MAX)
        .min(bytes.len());
    let avail = bytes.len() - start;
    let len = p
        .data_len
        .and_then(|l| usize::try_from(l).ok())
        .map_or(avail, |l| l.min(avail));
    Ok((p, &bytes[start..start + len]))
}

/// Decodes the blocks of a WAV or headerless recording.
struct BlockDecoder<'a> {
    src: Box<dyn Source + 'a>,
    probe: Probe,
    /// Data bytes not read yet, when the header declares the length.
    left: Option<u64>,
    /// Bytes read but not decoded yet (less than a block, after each chunk).
    pending: Vec<u8>,
    /// Frames still to hand out when a fact chunk trims the last block.
    frames_left: Option<u64>,
    blocks_done: u64,
    gsm: Option<GsmDecoder>,
    eof: bool,
}

impl<'a> BlockDecoder<'a> {
    fn new(probe: Probe, head: Vec<u8>, src: Box<dyn Source + 'a>) -> Result<Self, AudioError> {
        let start = usize::try_from(probe.data_offset)
            .unwrap_or(usize::MAX)
            .min(head.len());
        let mut pending = head[start..].to_vec();
        let mut left = probe.data_len;
        if let Some(l) = left.as_mut() {
            let take = usize::try_from(*l).unwrap_or(usize::MAX).min(pending.len());
            pending.truncate(take);
            *l -= take as u64;
        }
        let frames_left = match probe.data_len {
            Some(len) => Some(probe::frames_in(&probe, len, false)?),
            None => None,
        };
        let gsm = match probe.format {
            AudioFormat::WavGsm | AudioFormat::RawGsm => Some(
                GsmDecoder::new(probe.format == AudioFormat::WavGsm)
                    .ok_or_else(|| AudioError::Corrupt("libgsm could not allocate".into()))?,
            ),
            _ => None,
        };
        Ok(Self {
            src,
            probe,
            left,
            pending,
            frames_left,
            blocks_done: 0,
            gsm,
            eof: false,
        })
    }

    /// Reads until a chunk's worth of whole blocks is pending or the data ends.
    fn fill(&mut self) -> Result<(), AudioError> {
        let align = self.probe.block_align.max(1) as usize;
        let want = (CHUNK_BYTES / align).max(1) * align;
        let mut buf = [0u8; 8192];
        while self.pending.len() < want && !self.eof {
            let room = (want - self.pending.len()).min(buf.len());
            let room = match self.left {
                Some(l) => room.min(usize::try_from(l).unwrap_or(usize::MAX)),
                None => room,
            };
            if room == 0 {
                self.eof = true;
                break;
            }
            let n = match self.src.read(&mut buf[..room]) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(read_error(e)),
            };
            if n == 0 {
                self.eof = true;
                if let Some(l) = self.left.filter(|&l| l > 0) {
                    return Err(AudioError::Corrupt(format!(
                        "truncated WAV: the header declares {l} more bytes of audio than arrived"
                    )));
                }
                break;
            }
            self.pending.extend_from_slice(&buf[..n]);
            if let Some(l) = self.left.as_mut() {
                *l -= n as u64;
            }
        }
        Ok(())
    }

    fn next_chunk(&mut self) -> Result<Option<Vec<i16>>, AudioError> {
        self.fill()?;
        let p = &self.probe;
        let align = p.block_align.max(1) as usize;
        let whole = self.pending.len() / align * align;
        if whole == 0 {
            let rest = self.pending.len();
            let exact = p.data_len.is_some() || p.data_offset == 0;
            let pad_byte = rest == 1 && (self.blocks_done * align as u64) % 2 == 1;
            if rest > 0 && exact && !pad_byte {
                return Err(AudioError::Corrupt(format!(
                    "the audio ends inside a {align}-byte block: {rest} byte(s) left over"
                )));
            }
            return Ok(None);
        }
        let mut out = match &mut self.gsm {
            Some(dec) => decode_gsm(dec, &self.pending[..whole], p.format == AudioFormat::WavGsm)?,
            None => decode_linear(p, &self.pending[..whole]),
        };
        self.blocks_done += (whole / align) as u64;
        self.pending.drain(..whole);
        if let Some(left) = self.frames_left.as_mut() {
            let keep = usize::try_from(*left).unwrap_or(usize::MAX).min(out.len());
            out.truncate(keep);
            *left -= keep as u64;
        }
        Ok(Some(out))
    }
}

fn read_error(e: io::Error) -> AudioError {
    AudioError::Corrupt(format!("the recording could not be read: {e}"))
}

/// Decodes whole PCM/float/G.711 frames to mono (channels averaged, rounding toward zero).
fn decode_linear(p: &Probe, data: &[u8]) -> Vec<i16> {
    let channels = usize::from(p.channels.max(1));
    let width = p.block_align as usize / channels;
    let sample = |b: &[u8]| -> i32 {
        match (p.format, width) {
            (AudioFormat::WavUlaw | AudioFormat::RawUlaw, _) => {
                i32::from(g711::ulaw_to_linear(b[0]))
            }
            (AudioFormat::WavAlaw | AudioFormat::RawAlaw, _) => {
                i32::from(g711::alaw_to_linear(b[0]))
            }
            (AudioFormat::RawL16 | AudioFormat::RawL16_16k, _) => {
                i32::from(i16::from_be_bytes([b[0], b[1]]))
            }
            (AudioFormat::WavFloat, 4) => {
                float(f64::from(f32::from_le_bytes([b[0], b[1], b[2], b[3]])))
            }
            (AudioFormat::WavFloat, _) => float(f64::from_le_bytes([
                b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7],
            ])),
            // 8-bit WAV PCM is unsigned; wider samples are signed little-endian, keep the top 16 bits.
            (_, 1) => (i32::from(b[0]) - 128) << 8,
            (_, 2) => i32::from(i16::from_le_bytes([b[0], b[1]])),
            (_, 3) => i32::from(i16::from_le_bytes([b[1], b[2]])),
            (_, _) => i32::from(i16::from_le_bytes([b[2], b[3]])),
        }
    };
    data.chunks_exact(channels * width)
        .map(|f| {
            let sum: i32 = f.chunks_exact(width).map(sample).sum();
            // The result is within i16 as every term is.
            (sum / channels as i32) as i16
        })
        .collect()
}

/// A float sample (nominally −1…1) as 16-bit, clipped; NaN becomes silence.
fn float(x: f64) -> i32 {
    (x * 32768.0).round().clamp(-32768.0, 32767.0) as i32
}

/// Decodes raw GSM frames (33 bytes) or WAV49 blocks (65 bytes: 33 + 32 through libgsm's WAV49
/// mode).
fn decode_gsm(dec: &mut GsmDecoder, data: &[u8], wav49: bool) -> Result<Vec<i16>, AudioError> {
    let bad = || AudioError::Corrupt("an undecodable GSM 06.10 frame".into());
    if wav49 {
        let mut out = Vec::with_capacity(data.len() / WAV49_BLOCK_BYTES * 2 * GSM_FRAME_SAMPLES);
        for block in data.chunks_exact(WAV49_BLOCK_BYTES) {
            out.extend_from_slice(
                &dec.decode_frame(&block[..GSM_FRAME_BYTES])
                    .ok_or_else(bad)?,
            );
            out.extend_from_slice(
                &dec.decode_frame(&block[GSM_FRAME_BYTES..])
                    .ok_or_else(bad)?,
            );
        }
        Ok(out)
    } else {
        let mut out = Vec::with_capacity(data.len() / GSM_FRAME_BYTES * GSM_FRAME_SAMPLES);
        for frame in data.chunks_exact(GSM_FRAME_BYTES) {
            out.extend_from_slice(&dec.decode_frame(frame).ok_or_else(bad)?);
        }
        Ok(out)
    }
}

/// Reads a recording's first bytes until its format is recognised (within the 64 KiB header
/// window): the probe, and the bytes read for it.
pub fn read_header(hint: RawHint, src: &mut impl Read) -> Result<(Probe, Vec<u8>), AudioError> {
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    let mut eof = false;
    loop {
        if let Some(p) = probe::probe(&head, hint, eof)? {
            return Ok((p, head));
        }
        if eof {
            return Err(AudioError::Corrupt(
                "the recording could not be recognised".into(),
            ));
        }
        let room = buf
            .len()
            .min(MAX_HEADER - head.len().min(MAX_HEADER))
            .max(1);
        match src.read(&mut buf[..room]) {
            Ok(0) => eof = true,
            Ok(n) => head.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(read_error(e)),
        }
    }
}

enum Kind<'a> {
    Blocks(BlockDecoder<'a>),
    Compressed(Box<CompressedDecoder<'a>>),
}

/// A streaming decoder of one recording: mono 16-bit chunks at the source rate, read forward
/// from any `Read`. Memory is bounded by a constant (a header of at most 64 KiB, one chunk, the
/// codec's state), whatever the recording's length.
pub struct Decoder<'a> {
    kind: Kind<'a>,
    format: AudioFormat,
    rate: u32,
    channels: u16,
    /// Stop with `TooLong` past this many samples (and the limit in seconds, for the error).
    limit: Option<(u64, u64)>,
    produced: u64,
}

impl<'a> Decoder<'a> {
    /// Opens a stored recording of a known format.
    pub fn new(format: AudioFormat, src: impl Source + 'a) -> Result<Self, AudioError> {
        let d = Self::open(RawHint::for_format(format), src)?;
        if d.format != format {
            return Err(AudioError::Corrupt(format!(
                "the recording is {}, not the {} it was stored as",
                d.format.as_str(),
                format.as_str()
            )));
        }
        Ok(d)
    }

    /// Recognises a recording from its first bytes (as a deposit does) and opens it.
    pub fn open(hint: RawHint, src: impl Source + 'a) -> Result<Self, AudioError> {
        let mut src = src;
        let (probe, head) = read_header(hint, &mut src)?;
        Self::from_header(probe, head, src)
    }

    /// Opens a recording whose first bytes `head` were read (and recognised as `probe`) by
    /// [`read_header`]; `src` goes on where `head` ends.
    pub fn from_header(
        probe: Probe,
        head: Vec<u8>,
        src: impl Source + 'a,
    ) -> Result<Self, AudioError> {
        let format = probe.format;
        if format.is_compressed() {
            let chained = io::Cursor::new(head).chain(src);
            let c = CompressedDecoder::new(format, chained)?;
            Ok(Self {
                format,
                rate: c.rate(),
                channels: c.channels(),
                kind: Kind::Compressed(Box::new(c)),
                limit: None,
                produced: 0,
            })
        } else {
            let (rate, channels) = (probe.sample_rate, probe.channels);
            Ok(Self {
                format,
                rate,
                channels,
                kind: Kind::Blocks(BlockDecoder::new(probe, head, Box::new(src))?),
                limit: None,
                produced: 0,
            })
        }
    }

    /// Refuses (with `AudioError::TooLong`) to decode past `secs` seconds.
    pub fn with_max_secs(mut self, secs: u64) -> Self {
        let samples = secs.saturating_mul(u64::from(self.rate));
        self.limit = Some((samples, secs));
        self
    }

    /// Lets `idle` drop the codec's large state while the input waits (see [`IdleRelease`]).
    pub fn release_when_idle(mut self, idle: &IdleRelease) -> Self {
        if let Kind::Compressed(c) = &mut self.kind {
            c.release_when_idle(idle);
        }
        self
    }

    /// The recognised format.
    pub fn format(&self) -> AudioFormat {
        self.format
    }

    /// Output sample rate: the source's (48 kHz for Opus).
    pub fn rate(&self) -> u32 {
        self.rate
    }

    /// Channels of the source (the output is mono).
    pub fn channels(&self) -> u16 {
        self.channels
    }

    /// Samples handed out so far.
    pub fn produced(&self) -> u64 {
        self.produced
    }

    /// The next chunk of mono samples; `Ok(None)` once the recording has ended (and checked out
    /// whole).
    pub fn next_chunk(&mut self) -> Result<Option<Vec<i16>>, AudioError> {
        let chunk = match &mut self.kind {
            Kind::Blocks(b) => b.next_chunk()?,
            Kind::Compressed(c) => c.next_chunk()?,
        };
        if let Some(c) = &chunk {
            self.produced += c.len() as u64;
            if let Some((max, secs)) = self.limit
                && self.produced > max
            {
                return Err(AudioError::TooLong(secs));
            }
        }
        Ok(chunk)
    }
}

/// Runs `f`, turning a panic inside a codec library into a refusal. This is a last line of
/// defence only: every check above is meant to refuse bad input before any library can panic, and
/// symphonia 0.6 is built to return errors, but it is third-party code fed untrusted bytes, and a
/// panic must not escape as a 500 (or abort a blocking thread's caller).
pub(crate) fn guarded<T>(f: impl FnOnce() -> Result<T, AudioError>) -> Result<T, AudioError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or_else(|_| {
        tracing::warn!("an audio decoder panicked on its input; refused as corrupt");
        Err(AudioError::Corrupt("the audio could not be decoded".into()))
    })
}

fn collect(mut d: Decoder<'_>) -> Result<Pcm, AudioError> {
    let mut samples = Vec::new();
    while let Some(c) = d.next_chunk()? {
        samples.extend_from_slice(&c);
    }
    Ok(Pcm {
        rate: d.rate(),
        samples,
    })
}

/// Decodes a stored recording to mono (channels averaged).
pub fn decode(format: AudioFormat, bytes: &[u8]) -> Result<Pcm, AudioError> {
    guarded(|| collect(Decoder::new(format, bytes)?.with_max_secs(MAX_DECODE_SECS)))
}

/// Recognises and decodes untrusted bytes as a deposit would (for fuzzing): never panics, reads
/// no further than the input, and stops past [`DECODE_ANY_MAX_SECS`] of audio.
pub fn decode_any(bytes: &[u8], hint: RawHint) -> Result<Pcm, AudioError> {
    guarded(|| collect(Decoder::open(hint, bytes)?.with_max_secs(DECODE_ANY_MAX_SECS)))
}

/// What decoding a whole compressed recording found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Measured {
    /// Duration of the decoded audio.
    pub duration_ms: u64,
    /// Output sample rate.
    pub sample_rate: u32,
    /// Channels of the source.
    pub channels: u16,
}

/// Decodes a recording of `format` from `src` only to check it and measure it, failing fast with
/// `TooLong` past `max_secs` (0 = no limit). CPU work: call from `spawn_blocking`.
pub fn measure(
    format: AudioFormat,
    src: impl Source,
    max_secs: u64,
) -> Result<Measured, AudioError> {
    measure_streaming(format, src, max_secs, &IdleRelease::default())
}

/// [`measure`] for an input that waits for a client: it calls `idle`'s
/// [`release`](IdleRelease::release) before it waits, and the codec's large state is dropped
/// meanwhile.
pub fn measure_streaming(
    format: AudioFormat,
    src: impl Source,
    max_secs: u64,
    idle: &IdleRelease,
) -> Result<Measured, AudioError> {
    guarded(|| {
        let mut d = Decoder::new(format, src)?.release_when_idle(idle);
        if max_secs > 0 {
            d = d.with_max_secs(max_secs);
        }
        while d.next_chunk()?.is_some() {}
        if d.produced() == 0 {
            return Err(AudioError::Corrupt(
                "the recording holds no audio samples".into(),
            ));
        }
        Ok(Measured {
            duration_ms: d.produced() * 1000 / u64::from(d.rate().max(1)),
            sample_rate: d.rate(),
            channels: d.channels(),
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audio::wav;

    #[test]
    fn stereo_pcm_is_mixed_to_mono() {
        let w = wav::pcm16_wav(&[100, 300, -100, -300], 16000, 2);
        let p = decode(AudioFormat::WavPcm, &w).unwrap();
        assert_eq!(
            p,
            Pcm {
                rate: 16000,
                samples: vec![200, -200]
            }
        );
    }

    #[test]
    fn g711_wav_and_raw_decode_alike() {
        let data: Vec<u8> = (0u8..=255).collect();
        let a = decode(AudioFormat::RawUlaw, &data).unwrap();
        let b = decode(AudioFormat::WavUlaw, &wav::g711_wav(wav::TAG_ULAW, &data)).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.samples.len(), 256);
    }

    #[test]
    fn slin_byte_orders_decode_alike() {
        let samples: Vec<i16> = (0..1000).map(|i| (i * 37 - 18000) as i16).collect();
        let le: Vec<u8> = samples.iter().flat_map(|s| s.to_le_bytes()).collect();
        let be: Vec<u8> = samples.iter().flat_map(|s| s.to_be_bytes()).collect();
        assert_eq!(decode(AudioFormat::RawSlin, &le).unwrap().samples, samples);
        assert_eq!(decode(AudioFormat::RawL16, &be).unwrap().samples, samples);
        assert!(
            decode(AudioFormat::RawSlin, &le[..1999]).is_err(),
            "half a sample"
        );
    }

    #[test]
    fn a_long_recording_is_decoded_in_bounded_chunks() {
        let samples = vec![1000i16; 8000 * 10];
        let w = wav::pcm16_wav(&samples, 8000, 1);
        let mut d = Decoder::new(AudioFormat::WavPcm, w.as_slice()).unwrap();
        let mut total = 0;
        while let Some(c) = d.next_chunk().unwrap() {
            assert!(c.len() <= CHUNK_BYTES);
            total += c.len();
        }
        assert_eq!(total, samples.len());
        let d = Decoder::new(AudioFormat::WavPcm, w.as_slice())
            .unwrap()
            .with_max_secs(5);
        assert_eq!(collect(d), Err(AudioError::TooLong(5)));
    }

    #[test]
    fn float_wav_is_scaled_and_clipped() {
        let float_wav = |bits: u16, data: Vec<u8>| {
            let width = u32::from(bits / 8);
            let mut w = b"RIFF\0\0\0\0WAVEfmt \x10\0\0\0".to_vec();
            w.extend_from_slice(&3u16.to_le_bytes());
            w.extend_from_slice(&1u16.to_le_bytes());
            w.extend_from_slice(&8000u32.to_le_bytes());
            w.extend_from_slice(&(8000 * width).to_le_bytes());
            w.extend_from_slice(&(bits / 8).to_le_bytes());
            w.extend_from_slice(&bits.to_le_bytes());
            w.extend_from_slice(b"data");
            w.extend_from_slice(&(data.len() as u32).to_le_bytes());
            w.extend_from_slice(&data);
            w
        };
        let values = [0.5f64, -1.0, 2.0, f64::NAN];
        let f32s = values
            .iter()
            .flat_map(|&f| (f as f32).to_le_bytes())
            .collect();
        let f64s = values.iter().flat_map(|f| f.to_le_bytes()).collect();
        for w in [float_wav(32, f32s), float_wav(64, f64s)] {
            let p = decode(AudioFormat::WavFloat, &w).unwrap();
            assert_eq!(p.samples, vec![16384, -32768, 32767, 0]);
        }
    }

    fn fixture(name: &str) -> Vec<u8> {
        let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fixtures")
            .join(name);
        std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
    }

    fn sha256(samples: &[i16]) -> String {
        use sha2::Digest;
        let bytes: Vec<u8> = samples.iter().flat_map(|s| s.to_le_bytes()).collect();
        hex::encode(sha2::Sha256::digest(bytes))
    }

    /// Samples per channel ffmpeg 5.1 decodes from each fixture (`ffmpeg -i F -f s16le -ac 1 -`),
    /// and the rate: ours must agree exactly (GSM within its padding).
    #[test]
    fn every_input_fixture_decodes_to_ffmpegs_length() {
        for (file, format, rate, channels, samples) in [
            ("hello-u8-stereo.wav", AudioFormat::WavPcm, 8000, 2, 25005),
            ("hello-s24.wav", AudioFormat::WavPcm, 8000, 1, 25005),
            ("hello-s32.wav", AudioFormat::WavPcm, 8000, 1, 25005),
            ("hello-float.wav", AudioFormat::WavFloat, 8000, 1, 25005),
            // ffmpeg ignores the fact chunk (25 280); it says 25 005, as ffprobe reads it.
            ("hello-wav49.wav", AudioFormat::WavGsm, 8000, 1, 25005),
            ("hello.gsm", AudioFormat::RawGsm, 8000, 1, 25120),
            ("hello.sln", AudioFormat::RawSlin, 8000, 1, 25005),
            ("hello.sln16", AudioFormat::RawSlin16, 16000, 1, 50010),
            ("hello.l16", AudioFormat::RawL16, 8000, 1, 25005),
            ("hello-44k-stereo.mp3", AudioFormat::Mp3, 44100, 2, 137_840),
            ("hello-8k.mp3", AudioFormat::Mp3, 8000, 1, 25005),
            ("hello.flac", AudioFormat::Flac, 16000, 1, 50010),
            ("hello-48k-stereo.flac", AudioFormat::Flac, 48000, 2, 48000),
            ("hello.ogg", AudioFormat::OggVorbis, 16000, 1, 50010),
            (
                "hello-44k-stereo.ogg",
                AudioFormat::OggVorbis,
                44100,
                2,
                137_840,
            ),
            ("hello.opus", AudioFormat::OggOpus, 48000, 1, 150_030),
            ("hello-stereo.opus", AudioFormat::OggOpus, 48000, 2, 150_030),
            ("hello.webm", AudioFormat::WebmOpus, 48000, 1, 150_030),
            ("hello-live.webm", AudioFormat::WebmOpus, 48000, 1, 150_030),
        ] {
            let bytes = fixture(file);
            let d =
                Decoder::new(format, bytes.as_slice()).unwrap_or_else(|e| panic!("{file}: {e}"));
            assert_eq!((d.rate(), d.channels()), (rate, channels), "{file}");
            let pcm = collect(d).unwrap_or_else(|e| panic!("{file}: {e}"));
            // WebM carries no end trim symphonia exposes: up to one 20 ms packet more.
            let slack = if format == AudioFormat::WebmOpus {
                960
            } else {
                0
            };
            let n = pcm.samples.len();
            assert!(
                n >= samples && n <= samples + slack,
                "{file}: {n} samples decoded, ffmpeg decodes {samples}"
            );
            let energy = pcm.samples.iter().map(|&s| i64::from(s).abs()).sum::<i64>() / n as i64;
            assert!(energy > 300, "{file}: speech, not silence ({energy})");
            let m = measure(format, bytes.as_slice(), 0).unwrap();
            assert_eq!(m.duration_ms, n as u64 * 1000 / u64::from(rate), "{file}");
        }
    }

    /// Our GSM decode (libgsm in WAV49 mode) is sox's, sample for sample: SHA-256 of
    /// `sox hello-wav49.wav -t raw -e signed-integer -b 16 -L -` (its first 25 005 samples: sox
    /// ignores the fact chunk) and of `sox -t gsm -r 8000 hello.gsm -t raw …`.
    #[test]
    fn gsm_decodes_bit_exactly_as_sox_does() {
        let wav49 = decode(AudioFormat::WavGsm, &fixture("hello-wav49.wav")).unwrap();
        assert_eq!(
            sha256(&wav49.samples),
            "360b3c3b834ba9eb60b76b21288fb3aaa187636c3d0084b5c31a97e2a8604c81"
        );
        let gsm = decode(AudioFormat::RawGsm, &fixture("hello.gsm")).unwrap();
        assert_eq!(
            sha256(&gsm.samples),
            "8e27ab5c4ed51daa3330434bced0c05581de96baa3b42c5db0b637f283b904c1"
        );
    }

    #[test]
    fn damaged_compressed_recordings_are_refused() {
        let cut = |name: &str, keep: f64| {
            let b = fixture(name);
            b[..(b.len() as f64 * keep) as usize].to_vec()
        };
        for (what, format, bytes) in [
            (
                "half an MP3",
                AudioFormat::Mp3,
                cut("hello-44k-stereo.mp3", 0.5),
            ),
            ("half a FLAC", AudioFormat::Flac, cut("hello.flac", 0.5)),
            (
                "half an Ogg Vorbis",
                AudioFormat::OggVorbis,
                cut("hello.ogg", 0.5),
            ),
            (
                "half an Ogg Opus",
                AudioFormat::OggOpus,
                cut("hello.opus", 0.5),
            ),
            (
                "a WAV49 cut mid-block",
                AudioFormat::WavGsm,
                cut("hello-wav49.wav", 0.5),
            ),
        ] {
            let e = measure(format, bytes.as_slice(), 0).unwrap_err();
            assert!(matches!(e, AudioError::Corrupt(_)), "{what}: {e:?}");
        }
        // A WebM cut mid-block (a browser stopped mid-write) keeps the blocks that arrived whole;
        // cut inside its header, it is refused.
        let m = measure(
            AudioFormat::WebmOpus,
            cut("hello-live.webm", 0.5).as_slice(),
            0,
        )
        .unwrap();
        assert!((1000..1700).contains(&m.duration_ms), "{m:?}");
        assert!(
            measure(
                AudioFormat::WebmOpus,
                cut("hello-live.webm", 0.02).as_slice(),
                0
            )
            .is_err()
        );
        let mut crc = fixture("hello.opus");
        let at = crc.len() - 100;
        crc[at] ^= 0x55;
        let e = measure(AudioFormat::OggOpus, crc.as_slice(), 0).unwrap_err();
        assert!(e.to_string().contains("CRC"), "{e}");
        // Past the limit, decoding stops with TooLong.
        let e = measure(AudioFormat::Flac, fixture("hello.flac").as_slice(), 2).unwrap_err();
        assert_eq!(e, AudioError::TooLong(2));
    }

    /// A small, deterministic mutation run over every fixture (headers mostly): each ends as
    /// audio or a refusal, without a panic even inside the codec libraries (this calls the
    /// decoder without `guarded`). The fuzz target does this at scale.
    #[test]
    fn mutated_fixtures_are_decoded_or_refused_without_panicking() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures");
        let mut seed = 0x1234_5678_u64;
        let mut rnd = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed as usize
        };
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().to_string();
            if !name.starts_with("hello") {
                continue;
            }
            let original = std::fs::read(&path).unwrap();
            for round in 0..12 {
                let mut b = original.clone();
                for _ in 0..1 + rnd() % 8 {
                    let at = rnd() % b.len().min(if round % 2 == 0 { 4096 } else { usize::MAX });
                    b[at] = rnd() as u8;
                }
                if round % 4 == 0 {
                    b.truncate(rnd() % b.len());
                }
                for hint in [RawHint::Sniff, RawHint::Compressed] {
                    let r = std::panic::catch_unwind(|| {
                        Decoder::open(hint, b.as_slice()).and_then(|d| collect(d.with_max_secs(60)))
                    });
                    assert!(r.is_ok(), "{name}, round {round}: a decoder panicked");
                }
            }
        }
    }

    #[test]
    fn decode_any_refuses_what_it_cannot_read_without_panicking() {
        for (bytes, hint) in [
            (&b""[..], RawHint::Sniff),
            (b"OggS", RawHint::Compressed),
            (b"fLaC\0\0\0\x22", RawHint::Sniff),
            (b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01webm", RawHint::Sniff),
            (b"ID3\x04\0\0\0\0\0\x21", RawHint::Sniff),
            (b"RIFF\xff\xff\xff\xffWAVEfmt ", RawHint::Wav),
            (b"\xD0", RawHint::Gsm),
        ] {
            assert!(decode_any(bytes, hint).is_err(), "{bytes:?}");
        }
        // Headerless G.711 is anything at all.
        assert_eq!(decode_any(b"abc", RawHint::Ulaw).unwrap().samples.len(), 3);
    }
}
