//! Output renditions: the formats a listener (browser, PBX, e-mail client) can ask for, and the
//! transcoder that makes one from a stored original. CPU work: call from `spawn_blocking`.

use std::io::{self, Cursor, Read, Seek, SeekFrom, Write};

use voxmail_codecs::{GSM_FRAME_SAMPLES, GsmEncoder};

use super::probe::write_failed;
use super::resample::StreamResampler;
use super::{AudioError, Decoder, Probe, RawHint, Source, decode, g711, ogg_opus, wav};
use crate::domain::AudioFormat;

/// An output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OutputFormat {
    /// 16-bit PCM WAV at the source rate or a requested rate.
    Wav,
    /// µ-law WAV, 8 kHz.
    WavUlaw,
    /// A-law WAV, 8 kHz.
    WavAlaw,
    /// Headerless µ-law, 8 kHz.
    Ulaw,
    /// Headerless A-law, 8 kHz.
    Alaw,
    /// Headerless 16-bit little-endian PCM, 8 kHz (Asterisk `.sln`).
    Sln,
    /// Headerless 16-bit little-endian PCM, 16 kHz (Asterisk `.sln16`).
    Sln16,
    /// Raw GSM 06.10, 33-byte frames (Asterisk `.gsm`).
    Gsm,
    /// GSM 06.10 in WAV, format 0x31, 65-byte blocks (Asterisk `.WAV`).
    Wav49,
    /// Ogg Opus, mono.
    Opus,
}

impl OutputFormat {
    pub const ALL: [OutputFormat; 10] = [
        Self::Wav,
        Self::WavUlaw,
        Self::WavAlaw,
        Self::Ulaw,
        Self::Alaw,
        Self::Sln,
        Self::Sln16,
        Self::Gsm,
        Self::Wav49,
        Self::Opus,
    ];

    /// The `?format=` name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Wav => "wav",
            Self::WavUlaw => "wav-ulaw",
            Self::WavAlaw => "wav-alaw",
            Self::Ulaw => "ulaw",
            Self::Alaw => "alaw",
            Self::Sln => "sln",
            Self::Sln16 => "sln16",
            Self::Gsm => "gsm",
            Self::Wav49 => "wav49",
            Self::Opus => "opus",
        }
    }

    /// Parses a `?format=` name (or an Asterisk format name such as `slin`).
    pub fn parse(s: &str) -> Option<Self> {
        let s = s.trim().to_ascii_lowercase();
        let alias = match s.as_str() {
            "slin" => "sln",
            "slin16" => "sln16",
            "pcmu" | "mulaw" => "ulaw",
            "pcma" => "alaw",
            "ogg" => "opus",
            other => other,
        };
        Self::ALL.into_iter().find(|f| f.as_str() == alias)
    }

    /// Parses the extension of `…/audio.<ext>` (Asterisk's `.WAV` is WAV49, as in Asterisk).
    pub fn from_extension(ext: &str) -> Option<Self> {
        match ext {
            "WAV" => Some(Self::Wav49),
            "wav" | "opus" | "ulaw" | "alaw" | "sln" | "sln16" | "gsm" | "wav49" => {
                Self::parse(ext)
            }
            "ogg" | "oga" => Some(Self::Opus),
            "pcm" | "ul" | "mu" => Some(Self::Ulaw),
            "al" => Some(Self::Alaw),
            _ => None,
        }
    }

    /// The media type a rendition is served with.
    pub fn content_type(self) -> &'static str {
        match self {
            Self::Wav | Self::WavUlaw | Self::WavAlaw | Self::Wav49 => "audio/wav",
            Self::Ulaw => "audio/PCMU",
            Self::Alaw => "audio/PCMA",
            // Asterisk's slin is little-endian; RFC 2586's audio/L16 is big-endian, so it would lie.
            Self::Sln => "audio/x-sln; rate=8000; channels=1",
            Self::Sln16 => "audio/x-sln; rate=16000; channels=1",
            Self::Gsm => "audio/GSM",
            Self::Opus => "audio/ogg; codecs=opus",
        }
    }

    /// File extension for `Content-Disposition` (Asterisk's names).
    pub fn extension(self) -> &'static str {
        match self {
            Self::Wav | Self::WavUlaw | Self::WavAlaw => "wav",
            Self::Wav49 => "WAV",
            other => other.as_str(),
        }
    }

    /// The format a media type (from `Accept`) names, if any.
    pub fn from_media_type(essence: &str, rate: Option<&str>) -> Option<Self> {
        match essence {
            "audio/ogg" | "audio/opus" | "application/ogg" => Some(Self::Opus),
            "audio/wav" | "audio/x-wav" | "audio/wave" | "audio/vnd.wave" => Some(Self::Wav),
            "audio/basic" | "audio/pcmu" => Some(Self::Ulaw),
            "audio/pcma" => Some(Self::Alaw),
            "audio/x-sln" | "audio/sln" | "audio/slin" if rate == Some("16000") => {
                Some(Self::Sln16)
            }
            "audio/x-sln" | "audio/sln" | "audio/slin" => Some(Self::Sln),
            "audio/x-sln16" | "audio/sln16" | "audio/slin16" => Some(Self::Sln16),
            "audio/gsm" | "audio/x-gsm" => Some(Self::Gsm),
            _ => None,
        }
    }
}

/// Rates `?rate=` may ask of a `wav` rendition.
pub const WAV_RATES: [u32; 3] = [8000, 16000, 48000];
/// Opus bitrates `?bitrate=` may ask for (bit/s); a closed set keeps the cache keys enumerable.
pub const OPUS_BITRATES: [u32; 7] = [8000, 12000, 16000, 24000, 32000, 48000, 64000];
/// Highest libopus complexity (its default; slowest, best quality).
pub const MAX_OPUS_COMPLEXITY: u8 = 10;
/// Bumped whenever an encoder's output changes, so cached renditions and ETags are not reused.
const RENDITION_VERSION: &str = "r1";

/// One rendition: a format and its parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Rendition {
    pub format: OutputFormat,
    /// Output rate of a `wav` rendition; `None` = the source rate.
    pub rate: Option<u32>,
    /// Opus bitrate in bit/s (ignored by other formats).
    pub bitrate: u32,
    /// libopus complexity, 0–10 (ignored by other formats). Not part of [`Rendition::suffix`]:
    /// every complexity makes valid Ogg Opus, so renditions cached before a change stay in use.
    pub complexity: u8,
}

impl Rendition {
    /// Builds a rendition from request parameters, refusing parameters the format does not take;
    /// `default_bitrate` and `complexity` are the configured Opus settings.
    pub fn new(
        format: OutputFormat,
        rate: Option<u32>,
        bitrate: Option<u32>,
        default_bitrate: u32,
        complexity: u8,
    ) -> Result<Self, String> {
        if complexity > MAX_OPUS_COMPLEXITY {
            return Err(format!(
                "Opus complexity must be 0..={MAX_OPUS_COMPLEXITY}, not {complexity}"
            ));
        }
        if let Some(r) = rate {
            if format != OutputFormat::Wav {
                return Err(format!(
                    "rate applies to format=wav only, not {}",
                    format.as_str()
                ));
            }
            if !WAV_RATES.contains(&r) {
                return Err(format!("rate must be 8000, 16000 or 48000, not {r}"));
            }
        }
        let bitrate = match bitrate {
            Some(_) if format != OutputFormat::Opus => {
                return Err(format!(
                    "bitrate applies to format=opus only, not {}",
                    format.as_str()
                ));
            }
            Some(b) if !OPUS_BITRATES.contains(&b) => {
                return Err(format!("bitrate must be one of {OPUS_BITRATES:?}, not {b}"));
            }
            Some(b) => b,
            None => default_bitrate,
        };
        let opus = format == OutputFormat::Opus;
        Ok(Self {
            format,
            rate,
            bitrate: if opus { bitrate } else { 0 },
            complexity: if opus { complexity } else { 0 },
        })
    }

    /// What distinguishes this rendition in its cache key and ETag (`r1-opus-16000`, `r1-wav-src`).
    pub fn suffix(&self) -> String {
        let f = self.format.as_str();
        match self.format {
            OutputFormat::Opus => format!("{RENDITION_VERSION}-{f}-{}", self.bitrate),
            OutputFormat::Wav => match self.rate {
                Some(r) => format!("{RENDITION_VERSION}-{f}-{r}"),
                None => format!("{RENDITION_VERSION}-{f}-src"),
            },
            _ => format!("{RENDITION_VERSION}-{f}"),
        }
    }

    /// Every rendition that can exist (for removing a recording's cached renditions).
    pub fn all_suffixes() -> Vec<String> {
        let mut v = Vec::new();
        for f in OutputFormat::ALL {
            match f {
                OutputFormat::Opus => {
                    for b in OPUS_BITRATES {
                        v.push(
                            Self {
                                format: f,
                                rate: None,
                                bitrate: b,
                                complexity: 0,
                            }
                            .suffix(),
                        );
                    }
                }
                OutputFormat::Wav => {
                    v.push(
                        Self {
                            format: f,
                            rate: None,
                            bitrate: 0,
                            complexity: 0,
                        }
                        .suffix(),
                    );
                    for r in WAV_RATES {
                        v.push(
                            Self {
                                format: f,
                                rate: Some(r),
                                bitrate: 0,
                                complexity: 0,
                            }
                            .suffix(),
                        );
                    }
                }
                _ => v.push(
                    Self {
                        format: f,
                        rate: None,
                        bitrate: 0,
                        complexity: 0,
                    }
                    .suffix(),
                ),
            }
        }
        v
    }
}

/// Whether the rendition is G.711 in the original's own law (so its bytes can be copied).
fn same_law(format: AudioFormat, out: OutputFormat) -> bool {
    matches!(
        (format, out),
        (
            AudioFormat::WavUlaw | AudioFormat::RawUlaw,
            OutputFormat::Ulaw | OutputFormat::WavUlaw
        ) | (
            AudioFormat::WavAlaw | AudioFormat::RawAlaw,
            OutputFormat::Alaw | OutputFormat::WavAlaw
        )
    )
}

/// The header a rendition starts with, written as a placeholder first and rewritten with the
/// real sizes at the end.
#[derive(Clone, Copy)]
enum Header {
    None,
    /// 16-bit PCM WAV at this rate.
    Pcm16(u32),
    /// G.711 WAV with this format tag.
    G711(u16),
    Wav49,
}

impl Header {
    fn bytes(self, data: u64, samples: u64) -> Vec<u8> {
        let cap = |n: u64| u32::try_from(n).unwrap_or(u32::MAX);
        match self {
            Self::None => Vec::new(),
            Self::Pcm16(rate) => wav::pcm16_header(data, rate, 1),
            Self::G711(tag) => wav::riff_header(&wav::g711_fmt(tag), Some(cap(data)), data),
            Self::Wav49 => wav::riff_header(&wav::wav49_fmt(), Some(cap(samples)), data),
        }
    }

    /// RIFF's pad byte after an odd-sized data chunk (the canonical PCM header never needs one).
    fn pad(self, data: u64) -> &'static [u8] {
        match self {
            Self::G711(_) | Self::Wav49 => wav::riff_pad(data),
            Self::None | Self::Pcm16(_) => &[],
        }
    }
}

/// How samples become a rendition's data bytes.
enum Body {
    /// The original's coded bytes, copied by the caller (nothing is pushed).
    Copied,
    /// 16-bit little-endian PCM.
    Pcm16,
    Ulaw,
    Alaw,
    /// GSM 06.10 frames of 160 samples (WAV49: pairs of frames in 65-byte blocks), the last
    /// block padded with silence.
    Gsm {
        enc: GsmEncoder,
        pending: Vec<i16>,
        frames: u64,
        wav49: bool,
    },
    Opus(Box<ogg_opus::OggOpusEncoder>),
}

/// A rendition being written: a header placeholder, then data as samples arrive, then the last
/// frames, the pad byte and the real header.
struct StreamEncoder {
    body: Body,
    header: Header,
    /// Where the rendition starts in the output.
    start: u64,
    data: u64,
    samples: u64,
    scratch: Vec<u8>,
}

impl StreamEncoder {
    fn begin(
        body: Body,
        header: Header,
        out: &mut (impl Write + Seek),
    ) -> Result<Self, AudioError> {
        let start = out.stream_position().map_err(write_failed)?;
        out.write_all(&header.bytes(0, 0)).map_err(write_failed)?;
        Ok(Self {
            body,
            header,
            start,
            data: 0,
            samples: 0,
            scratch: Vec::new(),
        })
    }

    fn push(&mut self, samples: &[i16], out: &mut impl Write) -> Result<(), AudioError> {
        self.samples += samples.len() as u64;
        self.scratch.clear();
        match &mut self.body {
            Body::Copied => {}
            Body::Pcm16 => self
                .scratch
                .extend(samples.iter().flat_map(|s| s.to_le_bytes())),
            Body::Ulaw => self
                .scratch
                .extend(samples.iter().map(|&s| g711::linear_to_ulaw(s))),
            Body::Alaw => self
                .scratch
                .extend(samples.iter().map(|&s| g711::linear_to_alaw(s))),
            Body::Gsm {
                enc,
                pending,
                frames,
                ..
            } => {
                let mut samples = samples;
                while !samples.is_empty() {
                    let take = (GSM_FRAME_SAMPLES - pending.len()).min(samples.len());
                    pending.extend_from_slice(&samples[..take]);
                    samples = &samples[take..];
                    if let Ok(frame) = <&[i16; GSM_FRAME_SAMPLES]>::try_from(pending.as_slice()) {
                        enc.encode_frame(frame, &mut self.scratch);
                        *frames += 1;
                        pending.clear();
                    }
                }
            }
            // Ogg Opus has no header to patch, so its size is not counted here.
            Body::Opus(enc) => return enc.push(samples, out),
        }
        out.write_all(&self.scratch).map_err(write_failed)?;
        self.data += self.scratch.len() as u64;
        Ok(())
    }

    /// Ends the rendition; returns its size in bytes.
    fn finish(self, out: &mut (impl Write + Seek)) -> Result<u64, AudioError> {
        let Self {
            body,
            header,
            start,
            mut data,
            samples,
            mut scratch,
        } = self;
        scratch.clear();
        match body {
            Body::Copied | Body::Pcm16 | Body::Ulaw | Body::Alaw => {}
            Body::Gsm {
                mut enc,
                mut pending,
                mut frames,
                wav49,
            } => {
                let per_block = if wav49 { 2 } else { 1 } * GSM_FRAME_SAMPLES as u64;
                let total =
                    samples.div_ceil(per_block).max(1) * (per_block / GSM_FRAME_SAMPLES as u64);
                let mut frame = [0i16; GSM_FRAME_SAMPLES];
                while frames < total {
                    frame.fill(0);
                    frame[..pending.len()].copy_from_slice(&pending);
                    pending.clear();
                    enc.encode_frame(&frame, &mut scratch);
                    frames += 1;
                }
            }
            Body::Opus(enc) => enc.finish(out)?,
        }
        data += scratch.len() as u64;
        scratch.extend_from_slice(header.pad(data));
        out.write_all(&scratch).map_err(write_failed)?;
        let end = out.stream_position().map_err(write_failed)?;
        let head = header.bytes(data, samples);
        if !head.is_empty() {
            out.seek(SeekFrom::Start(start)).map_err(write_failed)?;
            out.write_all(&head).map_err(write_failed)?;
            out.seek(SeekFrom::Start(end)).map_err(write_failed)?;
        }
        Ok(end - start)
    }
}

/// Bytes copied per read on the same-law path.
const COPY_CHUNK: usize = 32 * 1024;

/// Copies the coded bytes of a G.711 original (8 kHz mono) into a rendition in the same law:
/// `head` is what [`decode::read_header`] read, `src` the rest. Like the whole-buffer copy it
/// replaces, it ends where the header's data length or the input ends, whichever is first.
fn copy_g711(
    probe: &Probe,
    head: &[u8],
    mut src: impl Read,
    out_format: OutputFormat,
    out: &mut (impl Write + Seek),
) -> Result<u64, AudioError> {
    let header = match out_format {
        OutputFormat::WavUlaw => Header::G711(wav::TAG_ULAW),
        OutputFormat::WavAlaw => Header::G711(wav::TAG_ALAW),
        _ => Header::None,
    };
    let mut w = StreamEncoder::begin(Body::Copied, header, out)?;
    let mut left = probe.data_len.unwrap_or(u64::MAX);
    let offset = usize::try_from(probe.data_offset).unwrap_or(usize::MAX);
    if offset > head.len() {
        let skip = (offset - head.len()) as u64;
        io::copy(&mut (&mut src).take(skip), &mut io::sink()).map_err(read_failed)?;
    }
    let mut buf = vec![0u8; COPY_CHUNK];
    let mut pending = head.get(offset..).unwrap_or_default();
    loop {
        let n = usize::try_from(left)
            .unwrap_or(usize::MAX)
            .min(pending.len());
        out.write_all(&pending[..n]).map_err(write_failed)?;
        w.data += n as u64;
        left -= n as u64;
        if left == 0 {
            break;
        }
        let got = match src.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => 0,
            Err(e) => return Err(read_failed(e)),
        };
        pending = &buf[..got];
    }
    w.samples = w.data;
    w.finish(out)
}

fn read_failed(e: io::Error) -> AudioError {
    AudioError::Corrupt(format!("the recording could not be read: {e}"))
}

/// Makes a rendition of a stored recording read from `src`, writing it to `out` (from `out`'s
/// position on; the WAV headers are written last, by seeking back) and returning its size.
/// Memory is bounded by a constant whatever the recording's length: the decoder, the resampler
/// and the encoders each hold one chunk or frame. G.711 to the same law at 8 kHz copies the coded
/// bytes (no decode/encode step, so it is exact); everything else goes through mono 16-bit PCM.
/// CPU work: call from `spawn_blocking`.
pub fn transcode_stream(
    format: AudioFormat,
    src: impl Source,
    r: &Rendition,
    out: &mut (impl Write + Seek),
) -> Result<u64, AudioError> {
    decode::guarded(|| stream(format, src, r, out))
}

fn stream(
    format: AudioFormat,
    mut src: impl Source,
    r: &Rendition,
    out: &mut (impl Write + Seek),
) -> Result<u64, AudioError> {
    let (probe, head) = decode::read_header(RawHint::for_format(format), &mut src)?;
    if probe.format != format {
        return Err(AudioError::Corrupt(format!(
            "the recording is {}, not the {} it was stored as",
            probe.format.as_str(),
            format.as_str()
        )));
    }
    if same_law(format, r.format) && probe.sample_rate == 8000 && probe.channels == 1 {
        return copy_g711(&probe, &head, src, r.format, out);
    }
    let mut d = Decoder::from_header(probe, head, src)?.with_max_secs(decode::MAX_DECODE_SECS);
    let source_rate = d.rate();
    let (rate, body, header) = match r.format {
        OutputFormat::Wav => {
            let rate = r.rate.unwrap_or(source_rate);
            (rate, Body::Pcm16, Header::Pcm16(rate))
        }
        OutputFormat::WavUlaw => (8000, Body::Ulaw, Header::G711(wav::TAG_ULAW)),
        OutputFormat::WavAlaw => (8000, Body::Alaw, Header::G711(wav::TAG_ALAW)),
        OutputFormat::Ulaw => (8000, Body::Ulaw, Header::None),
        OutputFormat::Alaw => (8000, Body::Alaw, Header::None),
        OutputFormat::Sln => (8000, Body::Pcm16, Header::None),
        OutputFormat::Sln16 => (16000, Body::Pcm16, Header::None),
        OutputFormat::Gsm | OutputFormat::Wav49 => {
            let wav49 = r.format == OutputFormat::Wav49;
            let enc = GsmEncoder::new(wav49).ok_or_else(|| {
                AudioError::Corrupt("libgsm could not allocate an encoder".into())
            })?;
            let body = Body::Gsm {
                enc,
                pending: Vec::with_capacity(GSM_FRAME_SAMPLES),
                frames: 0,
                wav49,
            };
            (8000, body, if wav49 { Header::Wav49 } else { Header::None })
        }
        OutputFormat::Opus => {
            let rate = if ogg_opus::OPUS_RATES.contains(&source_rate) {
                source_rate
            } else {
                48000
            };
            let enc = ogg_opus::OggOpusEncoder::new(rate, r.bitrate, r.complexity, source_rate)?;
            (rate, Body::Opus(Box::new(enc)), Header::None)
        }
    };
    let mut resampler = StreamResampler::new(source_rate, rate)?;
    let mut enc = StreamEncoder::begin(body, header, out)?;
    let mut samples = Vec::new();
    while let Some(chunk) = d.next_chunk()? {
        samples.clear();
        resampler.push(&chunk, &mut samples)?;
        enc.push(&samples, out)?;
    }
    if d.produced() == 0 {
        return Err(AudioError::Corrupt(
            "the recording holds no audio samples".into(),
        ));
    }
    samples.clear();
    resampler.finish(&mut samples)?;
    enc.push(&samples, out)?;
    enc.finish(out)
}

/// Makes a rendition of a stored recording held in memory ([`transcode_stream`] over a slice).
pub fn transcode(format: AudioFormat, bytes: &[u8], r: &Rendition) -> Result<Vec<u8>, AudioError> {
    let mut out = Cursor::new(Vec::new());
    transcode_stream(format, bytes, r, &mut out)?;
    Ok(out.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn speechlike(n: usize) -> Vec<i16> {
        (0..n)
            .map(|i| {
                let t = i as f64 / 8000.0;
                ((t * 310.0 * std::f64::consts::TAU).sin() * 6000.0
                    + (t * 1250.0 * std::f64::consts::TAU).sin() * 2000.0) as i16
            })
            .collect()
    }

    /// The whole-buffer transcoder as it was before renditions streamed (decode all, resample
    /// all, encode all), kept to prove the streaming one writes the same bytes.
    mod reference {
        use rubato::{FftFixedIn, Resampler};
        use voxmail_codecs::{GSM_FRAME_SAMPLES, GsmEncoder, OpusEncoder};

        use crate::audio::rendition::{OutputFormat, Rendition};
        use crate::audio::{decode, g711, ogg_opus, wav};
        use crate::domain::AudioFormat;

        pub fn resample(input: &[i16], from: u32, to: u32) -> Vec<i16> {
            if from == to || input.is_empty() {
                return input.to_vec();
            }
            const CHUNK: usize = 1024;
            let mut r = FftFixedIn::<f32>::new(from as usize, to as usize, CHUNK, 2, 1).unwrap();
            let delay = r.output_delay();
            let expected = (input.len() as u64 * u64::from(to) / u64::from(from)) as usize;
            let x: Vec<f32> = input.iter().map(|&s| f32::from(s) / 32768.0).collect();
            let mut out: Vec<f32> = Vec::with_capacity(expected + delay + 4 * CHUNK);
            let mut pos = 0;
            while pos + r.input_frames_next() <= x.len() {
                let n = r.input_frames_next();
                let o = r.process(&[&x[pos..pos + n]], None).unwrap();
                out.extend_from_slice(&o[0]);
                pos += n;
            }
            if pos < x.len() {
                let o = r.process_partial(Some(&[&x[pos..]]), None).unwrap();
                out.extend_from_slice(&o[0]);
            }
            while out.len() < delay + expected {
                let o = r.process_partial::<&[f32]>(None, None).unwrap();
                if o[0].is_empty() {
                    break;
                }
                out.extend_from_slice(&o[0]);
            }
            out.iter()
                .skip(delay)
                .take(expected)
                .map(|&v| (v * 32768.0).round().clamp(-32768.0, 32767.0) as i16)
                .collect()
        }

        fn opus(
            samples: &[i16],
            rate: u32,
            bitrate: u32,
            complexity: u8,
            input_rate: u32,
        ) -> Vec<u8> {
            use ogg::writing::{PacketWriteEndInfo, PacketWriter};
            const SERIAL: u32 = 0x766f_786d;
            let mut enc = OpusEncoder::new(rate, bitrate as i32, i32::from(complexity)).unwrap();
            let lookahead = enc.lookahead().unwrap() as usize;
            let scale = (48000 / rate) as u64;
            let pre_skip = u16::try_from(lookahead as u64 * scale).unwrap();
            let frame = (rate / 1000 * ogg_opus::FRAME_MS) as usize;
            let frames = (samples.len() + lookahead).div_ceil(frame).max(1);
            let final_granule = u64::from(pre_skip) + samples.len() as u64 * scale;
            let mut head = Vec::with_capacity(19);
            head.extend_from_slice(b"OpusHead");
            head.push(1);
            head.push(1);
            head.extend_from_slice(&pre_skip.to_le_bytes());
            head.extend_from_slice(&input_rate.to_le_bytes());
            head.extend_from_slice(&0i16.to_le_bytes());
            head.push(0);
            let vendor = b"voxmail (libopus 1.3.1, unsafe-libopus)";
            let mut tags = Vec::with_capacity(16 + vendor.len());
            tags.extend_from_slice(b"OpusTags");
            tags.extend_from_slice(&(vendor.len() as u32).to_le_bytes());
            tags.extend_from_slice(vendor);
            tags.extend_from_slice(&0u32.to_le_bytes());
            let mut w = PacketWriter::new(Vec::new());
            w.write_packet(head, SERIAL, PacketWriteEndInfo::EndPage, 0)
                .unwrap();
            w.write_packet(tags, SERIAL, PacketWriteEndInfo::EndPage, 0)
                .unwrap();
            let mut pcm = vec![0i16; frame];
            let mut packet = vec![0u8; 4000];
            for i in 0..frames {
                let start = (i * frame).min(samples.len());
                let end = ((i + 1) * frame).min(samples.len());
                pcm.fill(0);
                pcm[..end - start].copy_from_slice(&samples[start..end]);
                let n = enc.encode(&pcm, &mut packet).unwrap();
                let (info, granule) = if i + 1 == frames {
                    (PacketWriteEndInfo::EndStream, final_granule)
                } else if (i as u64 + 1).is_multiple_of(ogg_opus::PACKETS_PER_PAGE) {
                    (
                        PacketWriteEndInfo::EndPage,
                        (i as u64 + 1) * ogg_opus::GRANULES_PER_PACKET,
                    )
                } else {
                    (
                        PacketWriteEndInfo::NormalPacket,
                        (i as u64 + 1) * ogg_opus::GRANULES_PER_PACKET,
                    )
                };
                w.write_packet(packet[..n].to_vec(), SERIAL, info, granule)
                    .unwrap();
            }
            w.into_inner()
        }

        fn gsm(samples: &[i16], wav49: bool) -> Vec<u8> {
            let per_block = if wav49 {
                2 * GSM_FRAME_SAMPLES
            } else {
                GSM_FRAME_SAMPLES
            };
            let frames = samples.len().div_ceil(per_block).max(1) * (per_block / GSM_FRAME_SAMPLES);
            let mut enc = GsmEncoder::new(wav49).unwrap();
            let mut out = Vec::new();
            let mut frame = [0i16; GSM_FRAME_SAMPLES];
            for i in 0..frames {
                let start = (i * GSM_FRAME_SAMPLES).min(samples.len());
                let end = ((i + 1) * GSM_FRAME_SAMPLES).min(samples.len());
                frame.fill(0);
                frame[..end - start].copy_from_slice(&samples[start..end]);
                enc.encode_frame(&frame, &mut out);
            }
            out
        }

        fn pcm16_wav(samples: &[i16], sample_rate: u32) -> Vec<u8> {
            let data_len = u32::try_from(samples.len() * 2).unwrap_or(u32::MAX - 36);
            let mut v = Vec::new();
            v.extend_from_slice(b"RIFF");
            v.extend_from_slice(&(36 + data_len).to_le_bytes());
            v.extend_from_slice(b"WAVEfmt ");
            v.extend_from_slice(&16u32.to_le_bytes());
            v.extend_from_slice(&1u16.to_le_bytes());
            v.extend_from_slice(&1u16.to_le_bytes());
            v.extend_from_slice(&sample_rate.to_le_bytes());
            v.extend_from_slice(&(sample_rate * 2).to_le_bytes());
            v.extend_from_slice(&2u16.to_le_bytes());
            v.extend_from_slice(&16u16.to_le_bytes());
            v.extend_from_slice(b"data");
            v.extend_from_slice(&data_len.to_le_bytes());
            for s in samples {
                v.extend_from_slice(&s.to_le_bytes());
            }
            v
        }

        fn riff(fmt: &[u8], fact_samples: Option<u32>, data: &[u8]) -> Vec<u8> {
            let pad = data.len() & 1;
            let fact_len = if fact_samples.is_some() { 12 } else { 0 };
            let riff_len = 4 + (8 + fmt.len()) + fact_len + 8 + data.len() + pad;
            let mut v = Vec::new();
            v.extend_from_slice(b"RIFF");
            v.extend_from_slice(&(riff_len as u32).to_le_bytes());
            v.extend_from_slice(b"WAVEfmt ");
            v.extend_from_slice(&(fmt.len() as u32).to_le_bytes());
            v.extend_from_slice(fmt);
            if let Some(n) = fact_samples {
                v.extend_from_slice(b"fact");
                v.extend_from_slice(&4u32.to_le_bytes());
                v.extend_from_slice(&n.to_le_bytes());
            }
            v.extend_from_slice(b"data");
            v.extend_from_slice(&(data.len() as u32).to_le_bytes());
            v.extend_from_slice(data);
            if pad == 1 {
                v.push(0);
            }
            v
        }

        fn g711_wav(tag: u16, data: &[u8]) -> Vec<u8> {
            let mut fmt = Vec::new();
            fmt.extend_from_slice(&tag.to_le_bytes());
            fmt.extend_from_slice(&1u16.to_le_bytes());
            fmt.extend_from_slice(&8000u32.to_le_bytes());
            fmt.extend_from_slice(&8000u32.to_le_bytes());
            fmt.extend_from_slice(&1u16.to_le_bytes());
            fmt.extend_from_slice(&8u16.to_le_bytes());
            fmt.extend_from_slice(&0u16.to_le_bytes());
            riff(&fmt, Some(data.len() as u32), data)
        }

        fn wav49(blocks: &[u8], samples: u32) -> Vec<u8> {
            let mut fmt = Vec::new();
            fmt.extend_from_slice(&0x31u16.to_le_bytes());
            fmt.extend_from_slice(&1u16.to_le_bytes());
            fmt.extend_from_slice(&8000u32.to_le_bytes());
            fmt.extend_from_slice(&1625u32.to_le_bytes());
            fmt.extend_from_slice(&65u16.to_le_bytes());
            fmt.extend_from_slice(&0u16.to_le_bytes());
            fmt.extend_from_slice(&2u16.to_le_bytes());
            fmt.extend_from_slice(&320u16.to_le_bytes());
            riff(&fmt, Some(samples), blocks)
        }

        pub fn transcode(format: AudioFormat, bytes: &[u8], r: &Rendition) -> Vec<u8> {
            let same_law = matches!(
                (format, r.format),
                (
                    AudioFormat::WavUlaw | AudioFormat::RawUlaw,
                    OutputFormat::Ulaw | OutputFormat::WavUlaw
                ) | (
                    AudioFormat::WavAlaw | AudioFormat::RawAlaw,
                    OutputFormat::Alaw | OutputFormat::WavAlaw
                )
            );
            if same_law {
                let (p, data) = decode::audio_data(format, bytes).unwrap();
                if p.sample_rate == 8000 && p.channels == 1 {
                    return match r.format {
                        OutputFormat::WavUlaw => g711_wav(wav::TAG_ULAW, data),
                        OutputFormat::WavAlaw => g711_wav(wav::TAG_ALAW, data),
                        _ => data.to_vec(),
                    };
                }
            }
            let pcm = decode::decode(format, bytes).unwrap();
            let at = |rate: u32| resample(&pcm.samples, pcm.rate, rate);
            let le = |s: Vec<i16>| s.iter().flat_map(|s| s.to_le_bytes()).collect::<Vec<u8>>();
            match r.format {
                OutputFormat::Wav => {
                    let rate = r.rate.unwrap_or(pcm.rate);
                    pcm16_wav(&at(rate), rate)
                }
                OutputFormat::WavUlaw => g711_wav(wav::TAG_ULAW, &g711::encode_ulaw(&at(8000))),
                OutputFormat::WavAlaw => g711_wav(wav::TAG_ALAW, &g711::encode_alaw(&at(8000))),
                OutputFormat::Ulaw => g711::encode_ulaw(&at(8000)),
                OutputFormat::Alaw => g711::encode_alaw(&at(8000)),
                OutputFormat::Sln => le(at(8000)),
                OutputFormat::Sln16 => le(at(16000)),
                OutputFormat::Gsm => gsm(&at(8000), false),
                OutputFormat::Wav49 => {
                    let s = at(8000);
                    wav49(&gsm(&s, true), s.len() as u32)
                }
                OutputFormat::Opus => {
                    let rate = if ogg_opus::OPUS_RATES.contains(&pcm.rate) {
                        pcm.rate
                    } else {
                        48000
                    };
                    opus(&at(rate), rate, r.bitrate, r.complexity, pcm.rate)
                }
            }
        }
    }

    /// A reader that hands out at most `n` bytes per read, as a slow network stream would.
    struct Trickle<'a>(&'a [u8], usize);

    impl std::io::Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = self.1.min(buf.len()).min(self.0.len());
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }

    fn fixture(name: &str) -> Vec<u8> {
        let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fixtures")
            .join(name);
        std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
    }

    fn tone_at(rate: u32, n: usize, channels: usize) -> Vec<i16> {
        (0..n * channels)
            .map(|i| {
                let (t, ch) = ((i / channels) as f64 / f64::from(rate), i % channels);
                ((t * (310.0 + 97.0 * ch as f64) * std::f64::consts::TAU).sin() * 9000.0
                    + (t * 2750.0 * std::f64::consts::TAU).sin() * 3000.0) as i16
            })
            .collect()
    }

    /// Every output format of several inputs (stereo 44.1 kHz, odd lengths, shorter than one
    /// frame, G.711 copies, compressed fixtures): the streaming transcoder writes exactly the
    /// bytes the whole-buffer one wrote, whether the input arrives at once or a few bytes at a
    /// time, and into an output that already holds something.
    #[test]
    fn streaming_renditions_are_byte_identical_to_whole_buffer_ones() {
        let ulaw: Vec<u8> = g711::encode_ulaw(&tone_at(8000, 12_345, 1));
        let alaw: Vec<u8> = g711::encode_alaw(&tone_at(8000, 4_001, 1));
        let mut inputs = vec![
            (
                "8 kHz PCM, odd length",
                AudioFormat::WavPcm,
                wav::pcm16_wav(&tone_at(8000, 8000 * 3 + 77, 1), 8000, 1),
            ),
            (
                "44.1 kHz stereo PCM, odd length",
                AudioFormat::WavPcm,
                wav::pcm16_wav(&tone_at(44100, 44100 * 2 + 333, 2), 44100, 2),
            ),
            (
                "22.05 kHz PCM",
                AudioFormat::WavPcm,
                wav::pcm16_wav(&tone_at(22050, 22050 + 1, 1), 22050, 1),
            ),
            (
                "37 samples",
                AudioFormat::WavPcm,
                wav::pcm16_wav(&tone_at(8000, 37, 1), 8000, 1),
            ),
            (
                "3 samples at 48 kHz",
                AudioFormat::WavPcm,
                wav::pcm16_wav(&tone_at(48000, 3, 1), 48000, 1),
            ),
            ("raw µ-law", AudioFormat::RawUlaw, ulaw.clone()),
            (
                "µ-law WAV, odd length",
                AudioFormat::WavUlaw,
                wav::g711_wav(wav::TAG_ULAW, &ulaw),
            ),
            (
                "A-law WAV",
                AudioFormat::WavAlaw,
                wav::g711_wav(wav::TAG_ALAW, &alaw),
            ),
            (
                "raw sln16",
                AudioFormat::RawSlin16,
                tone_at(16000, 16001, 1)
                    .iter()
                    .flat_map(|s| s.to_le_bytes())
                    .collect(),
            ),
        ];
        for (name, format) in [
            ("hello-48k-stereo.flac", AudioFormat::Flac),
            ("hello-44k-stereo.ogg", AudioFormat::OggVorbis),
            ("hello.opus", AudioFormat::OggOpus),
            ("hello-8k.mp3", AudioFormat::Mp3),
            ("hello-wav49.wav", AudioFormat::WavGsm),
            ("hello-alaw.wav", AudioFormat::WavAlaw),
        ] {
            inputs.push((name, format, fixture(name)));
        }
        let mut renditions = Vec::new();
        for f in OutputFormat::ALL {
            renditions.push(Rendition::new(f, None, None, 16000, 5).unwrap());
        }
        for rate in WAV_RATES {
            renditions.push(Rendition::new(OutputFormat::Wav, Some(rate), None, 16000, 5).unwrap());
        }
        renditions.push(Rendition::new(OutputFormat::Opus, None, Some(32000), 16000, 10).unwrap());
        for (what, format, bytes) in &inputs {
            for r in &renditions {
                let want = reference::transcode(*format, bytes, r);
                let got = transcode(*format, bytes, r).unwrap();
                assert!(
                    got == want,
                    "{what} → {}: {} bytes, want {}",
                    r.suffix(),
                    got.len(),
                    want.len()
                );
                // Trickled in, after 5 bytes already in the output.
                let mut out = Cursor::new(b"head:".to_vec());
                out.set_position(5);
                let n = transcode_stream(*format, Trickle(bytes, 7), r, &mut out).unwrap();
                assert_eq!(n, want.len() as u64, "{what} → {}", r.suffix());
                assert!(
                    out.get_ref()[5..] == want[..],
                    "{what} → {}, trickled",
                    r.suffix()
                );
            }
        }
    }

    #[test]
    fn an_empty_recording_is_refused() {
        let r = Rendition::new(OutputFormat::Opus, None, None, 16000, 5).unwrap();
        let e = transcode(AudioFormat::WavPcm, &wav::pcm16_wav(&[], 8000, 1), &r).unwrap_err();
        assert!(matches!(e, AudioError::Corrupt(_)), "{e:?}");
    }

    #[test]
    fn a_failing_destination_is_a_write_error() {
        struct Full;
        impl Write for Full {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                Err(io::Error::other("disk full"))
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        impl Seek for Full {
            fn seek(&mut self, _: SeekFrom) -> io::Result<u64> {
                Ok(0)
            }
        }
        let src = wav::pcm16_wav(&tone_at(8000, 800, 1), 8000, 1);
        let r = Rendition::new(OutputFormat::Wav, None, None, 16000, 5).unwrap();
        let e = transcode_stream(AudioFormat::WavPcm, src.as_slice(), &r, &mut Full).unwrap_err();
        assert!(matches!(e, AudioError::Write(_)), "{e:?}");
    }

    #[test]
    fn ulaw_to_slin_wav_and_back_is_bit_exact() {
        let ulaw: Vec<u8> = (0u8..=255)
            .filter(|&b| b != 0x7F)
            .cycle()
            .take(8000)
            .collect();
        let any = |f| Rendition::new(f, None, None, 16000, 5).unwrap();
        let w = transcode(AudioFormat::RawUlaw, &ulaw, &any(OutputFormat::Wav)).unwrap();
        let back = transcode(AudioFormat::WavPcm, &w, &any(OutputFormat::Ulaw)).unwrap();
        assert_eq!(back, ulaw);
    }

    #[test]
    fn every_format_renders_with_its_expected_size() {
        let pcm = speechlike(8000);
        let src = wav::pcm16_wav(&pcm, 8000, 1);
        let size = |f, rate| {
            transcode(
                AudioFormat::WavPcm,
                &src,
                &Rendition::new(f, rate, None, 16000, 5).unwrap(),
            )
            .unwrap()
            .len()
        };
        assert_eq!(size(OutputFormat::Wav, None), 44 + 16000);
        assert_eq!(size(OutputFormat::Wav, Some(16000)), 44 + 32000);
        assert_eq!(size(OutputFormat::Ulaw, None), 8000);
        assert_eq!(size(OutputFormat::Sln16, None), 32000);
        assert_eq!(size(OutputFormat::Gsm, None), 50 * 33);
        assert_eq!(size(OutputFormat::Wav49, None), 60 + 25 * 65 + 1);
        let opus = size(OutputFormat::Opus, None);
        assert!(
            (1500..4000).contains(&opus),
            "1 s at 16 kbit/s is ~2 KB, got {opus}"
        );
    }

    #[test]
    fn parameters_are_checked() {
        assert!(Rendition::new(OutputFormat::Wav, Some(44100), None, 16000, 5).is_err());
        assert!(Rendition::new(OutputFormat::Gsm, Some(8000), None, 16000, 5).is_err());
        assert!(Rendition::new(OutputFormat::Opus, None, Some(17), 16000, 5).is_err());
        assert!(Rendition::new(OutputFormat::Opus, None, None, 16000, 11).is_err());
        assert_eq!(OutputFormat::parse("slin16"), Some(OutputFormat::Sln16));
        assert_eq!(
            OutputFormat::from_extension("WAV"),
            Some(OutputFormat::Wav49)
        );
        assert_eq!(OutputFormat::parse("bogus"), None);
        let all = Rendition::all_suffixes();
        assert_eq!(all.len(), 8 + 4 + OPUS_BITRATES.len());
    }
}
