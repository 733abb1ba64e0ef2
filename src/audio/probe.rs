//! Recognises a recording from its first bytes (a streaming header parser) and checks, once the
//! whole body has been seen, that the header told the truth. Formats with a fixed byte rate (WAV,
//! raw G.711/slin/GSM) are measured here without decoding; compressed containers (MP3, FLAC, Ogg,
//! WebM) are only recognised here and are measured by decoding them (`decode::measure`).

use crate::domain::AudioFormat;

/// What the sender said the body is (from Content-Type). Content wins wherever it can tell:
/// a RIFF/WAVE, Ogg, FLAC, WebM or ID3 header is recognised whatever the type says; the type only
/// decides for headerless bodies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RawHint {
    /// `audio/wav` and friends: the body must be a WAV file.
    Wav,
    /// Headerless µ-law, 8 kHz mono.
    Ulaw,
    /// Headerless A-law, 8 kHz mono.
    Alaw,
    /// Headerless GSM 06.10, 33-byte frames, 8 kHz mono (`audio/GSM`).
    Gsm,
    /// Headerless 16-bit PCM, mono: Asterisk's little-endian `.sln`/`.sln16` (`audio/x-sln`), or
    /// RFC 2586's big-endian `audio/L16`.
    Slin {
        /// 8000 or 16000.
        rate: u32,
        /// Network byte order (`audio/L16`), unless a parameter says otherwise.
        big_endian: bool,
    },
    /// `audio/mpeg`, `audio/flac`, `audio/ogg`, `audio/webm`…: the body must be one of the
    /// compressed containers, recognised by its content.
    Compressed,
    /// No usable type (`application/octet-stream` or none): recognise by content only.
    Sniff,
}

impl RawHint {
    /// True for the headerless formats, whose bytes can be anything.
    fn is_raw(self) -> bool {
        matches!(
            self,
            Self::Ulaw | Self::Alaw | Self::Gsm | Self::Slin { .. }
        )
    }

    /// The hint that reads a stored recording of `format` back.
    pub fn for_format(format: AudioFormat) -> Self {
        match format {
            AudioFormat::RawUlaw => Self::Ulaw,
            AudioFormat::RawAlaw => Self::Alaw,
            AudioFormat::RawGsm => Self::Gsm,
            AudioFormat::RawSlin => Self::Slin {
                rate: 8000,
                big_endian: false,
            },
            AudioFormat::RawSlin16 => Self::Slin {
                rate: 16000,
                big_endian: false,
            },
            AudioFormat::RawL16 => Self::Slin {
                rate: 8000,
                big_endian: true,
            },
            AudioFormat::RawL16_16k => Self::Slin {
                rate: 16000,
                big_endian: true,
            },
            f if f.is_compressed() => Self::Compressed,
            _ => Self::Wav,
        }
    }
}

/// Why a recording was refused.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum AudioError {
    /// The body is a kind of audio (or not audio at all) that is not accepted.
    #[error("{0}")]
    Unsupported(String),
    /// The body claims to be a supported format but its bytes contradict it.
    #[error("{0}")]
    Corrupt(String),
    /// The Content-Type is not an audio type at all.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// The audio lasts longer than allowed (the limit in seconds).
    #[error("the recording is longer than the maximum of {0} s")]
    TooLong(u64),
    /// A rendition's destination refused the bytes (a storage failure, not a fault of the audio).
    #[error("the rendition could not be written: {0}")]
    Write(String),
}

/// A failed write of a rendition.
pub(crate) fn write_failed(e: std::io::Error) -> AudioError {
    AudioError::Write(e.to_string())
}

/// The facts read from a recording's header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    /// The recognised format.
    pub format: AudioFormat,
    /// Samples per second per channel (0 for compressed formats: known after decoding).
    pub sample_rate: u32,
    /// Channels (0 for compressed formats).
    pub channels: u16,
    /// Bits per coded sample as the header declares it (0 where it means nothing).
    pub bits_per_sample: u16,
    /// Bytes of one block: a PCM/G.711 frame of all channels, a 33-byte GSM frame or a 65-byte
    /// WAV49 block (0 for compressed formats).
    pub block_align: u32,
    /// Samples per channel in one block (1 for PCM and G.711, 160 for GSM, 320 for WAV49).
    pub block_frames: u32,
    /// Offset of the first audio byte.
    pub data_offset: u64,
    /// Length of the audio data as the header declares it; `None` when unknown (raw, or a WAV written
    /// while streaming with a 0 or 0xFFFFFFFF size).
    pub data_len: Option<u64>,
    /// Samples per channel a WAV `fact` chunk declares (trims the padding of the last GSM block).
    pub fact_frames: Option<u64>,
}

impl Probe {
    fn raw(format: AudioFormat, rate: u32, bits: u16, block_align: u32, block_frames: u32) -> Self {
        Self {
            format,
            sample_rate: rate,
            channels: 1,
            bits_per_sample: bits,
            block_align,
            block_frames,
            data_offset: 0,
            data_len: None,
            fact_frames: None,
        }
    }

    fn compressed(format: AudioFormat) -> Self {
        Self {
            format,
            sample_rate: 0,
            channels: 0,
            bits_per_sample: 0,
            block_align: 0,
            block_frames: 0,
            data_offset: 0,
            data_len: None,
            fact_frames: None,
        }
    }

    /// Bytes per second of audio data (0 for compressed formats).
    pub fn byte_rate(&self) -> u64 {
        if self.block_frames == 0 {
            return 0;
        }
        u64::from(self.sample_rate) * u64::from(self.block_align) / u64::from(self.block_frames)
    }

    /// The largest body that can hold at most `secs` of audio (plus trailing metadata chunks);
    /// `u64::MAX` for compressed formats, whose size says nothing about their duration.
    pub fn max_body_for(&self, secs: u64) -> u64 {
        const TRAILING_CHUNKS_ALLOWANCE: u64 = 64 * 1024;
        if self.format.is_compressed() || self.block_frames == 0 {
            return u64::MAX;
        }
        let blocks = (u64::from(self.sample_rate) * secs).div_ceil(u64::from(self.block_frames));
        self.data_offset + blocks * u64::from(self.block_align) + TRAILING_CHUNKS_ALLOWANCE
    }
}

/// Header bytes needed at most before a WAV's `data` chunk must have been found.
pub const MAX_HEADER: usize = 64 * 1024;

fn parse_rate(
    rate: Option<&str>,
    allowed: &[u32],
    default: Option<u32>,
    what: &str,
) -> Result<u32, AudioError> {
    match rate {
        None => default.ok_or_else(|| {
            AudioError::Unsupported(format!(
                "{what} needs a rate parameter (rate=8000 or rate=16000)"
            ))
        }),
        Some(r) => r
            .parse::<u32>()
            .ok()
            .filter(|r| allowed.contains(r))
            .ok_or_else(|| {
                let list: Vec<String> = allowed.iter().map(u32::to_string).collect();
                AudioError::Unsupported(format!(
                    "{what} is accepted at rate={} only, not rate={r}",
                    list.join(" or rate=")
                ))
            }),
    }
}

/// Maps a Content-Type to what it says about the body.
pub fn hint_from_content_type(content_type: Option<&str>) -> Result<RawHint, AudioError> {
    let Some(ct) = content_type else {
        return Ok(RawHint::Sniff);
    };
    let mut parts = ct.split(';');
    let essence = parts.next().unwrap_or("").trim().to_ascii_lowercase();
    let mut rate: Option<String> = None;
    let mut channels: Option<String> = None;
    let mut endianness: Option<String> = None;
    for p in parts {
        if let Some((k, v)) = p.split_once('=') {
            let v = v.trim().trim_matches('"').to_ascii_lowercase();
            match k.trim().to_ascii_lowercase().as_str() {
                "rate" => rate = Some(v),
                "channels" => channels = Some(v),
                "endianness" | "byte-order" => endianness = Some(v),
                _ => {}
            }
        }
    }
    let hint = match essence.as_str() {
        "audio/wav" | "audio/x-wav" | "audio/wave" | "audio/vnd.wave" => RawHint::Wav,
        "audio/basic" | "audio/pcmu" | "audio/mulaw" | "audio/x-mulaw" | "audio/ulaw"
        | "audio/x-ulaw" | "audio/g711-mulaw" => RawHint::Ulaw,
        "audio/pcma" | "audio/x-alaw-basic" | "audio/alaw" | "audio/x-alaw" | "audio/g711-alaw" => {
            RawHint::Alaw
        }
        "audio/gsm" | "audio/x-gsm" => RawHint::Gsm,
        "audio/l16" => {
            let big_endian = match endianness.as_deref() {
                None | Some("big-endian" | "big" | "4321" | "network") => true,
                Some("little-endian" | "little" | "1234") => false,
                Some(other) => {
                    return Err(AudioError::Unsupported(format!(
                        "audio/L16 endianness={other} is not understood: use big-endian or \
                         little-endian"
                    )));
                }
            };
            RawHint::Slin {
                rate: parse_rate(rate.as_deref(), &[8000, 16000], None, "audio/L16")?,
                big_endian,
            }
        }
        "audio/x-sln" | "audio/sln" | "audio/slin" | "audio/x-slin" => RawHint::Slin {
            rate: parse_rate(rate.as_deref(), &[8000, 16000], Some(8000), "audio/x-sln")?,
            big_endian: false,
        },
        "audio/x-sln16" | "audio/sln16" | "audio/slin16" | "audio/x-slin16" => RawHint::Slin {
            rate: parse_rate(rate.as_deref(), &[16000], Some(16000), "audio/sln16")?,
            big_endian: false,
        },
        "audio/mpeg" | "audio/mp3" | "audio/x-mp3" | "audio/mpeg3" | "audio/x-mpeg"
        | "audio/mpa" | "audio/flac" | "audio/x-flac" | "audio/ogg" | "application/ogg"
        | "audio/opus" | "audio/vorbis" | "audio/x-vorbis+ogg" | "audio/webm" | "video/webm"
        | "audio/x-matroska" | "video/x-matroska" => RawHint::Compressed,
        "application/octet-stream" | "" => RawHint::Sniff,
        other if other.starts_with("audio/") => {
            return Err(AudioError::Unsupported(format!(
                "{other} is not an accepted recording format: send WAV, audio/PCMU, audio/PCMA, \
                 audio/GSM, audio/x-sln, audio/L16, MP3, FLAC, Ogg (Vorbis, Opus) or WebM/Opus"
            )));
        }
        other => {
            return Err(AudioError::UnsupportedMediaType(format!(
                "Content-Type {other} is not audio: send the recording as audio/wav (or another \
                 audio type) or multipart/form-data"
            )));
        }
    };
    if hint.is_raw() {
        if let (RawHint::Ulaw | RawHint::Alaw | RawHint::Gsm, Some(r)) = (hint, rate.as_deref())
            && r != "8000"
        {
            return Err(AudioError::Unsupported(format!(
                "headerless {essence} is accepted at rate=8000 only"
            )));
        }
        if channels.as_deref().is_some_and(|c| c != "1") {
            return Err(AudioError::Unsupported(format!(
                "headerless {essence} is accepted with channels=1 only"
            )));
        }
    }
    Ok(hint)
}

fn le16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// True when `h` starts with a plausible MPEG audio Layer III frame header.
fn mp3_frame_header(h: &[u8]) -> bool {
    h.len() >= 4
        && h[0] == 0xFF
        && h[1] & 0xE0 == 0xE0
        && (h[1] >> 3) & 3 != 1
        && (h[1] >> 1) & 3 == 1
        && (h[2] >> 4) != 0x0F
        && (h[2] >> 4) != 0
        && (h[2] >> 2) & 3 != 3
}

/// Names a container recognised by its magic bytes that is not accepted at all.
fn foreign_container(head: &[u8]) -> Option<&'static str> {
    let starts = |m: &[u8]| head.starts_with(m);
    if starts(b"#!AMR") {
        Some("AMR")
    } else if starts(b"FORM") {
        Some("AIFF")
    } else if starts(b".snd") {
        Some("Sun/NeXT AU")
    } else if head.len() >= 12 && &head[4..8] == b"ftyp" {
        Some("MP4/M4A")
    } else if starts(b"RIFF") && head.len() >= 12 && &head[8..12] != b"WAVE" {
        Some("RIFF (not WAVE)")
    } else if starts(b"MThd") {
        Some("MIDI")
    } else {
        None
    }
}

/// Recognises the codec of an Ogg stream from its first page.
fn probe_ogg(head: &[u8], eof: bool) -> Result<Option<Probe>, AudioError> {
    let more = |what: &str| {
        if eof {
            Err(AudioError::Corrupt(format!("truncated Ogg stream: {what}")))
        } else {
            Ok(None)
        }
    };
    if head.len() < 27 {
        return more("the first page header is incomplete");
    }
    let segments = usize::from(head[26]);
    let body = 27 + segments;
    if head.len() < body {
        return more("the first page header is incomplete");
    }
    let page_len = body
        + head[27..body]
            .iter()
            .map(|&s| usize::from(s))
            .sum::<usize>();
    if head.len() < page_len {
        return more("the first page is incomplete");
    }
    if !super::compressed::ogg_page_crc_ok(&head[..page_len]) {
        return Err(AudioError::Corrupt(
            "damaged Ogg stream: the first page's CRC does not match".into(),
        ));
    }
    let packet = &head[body..page_len];
    if packet.starts_with(b"OpusHead") {
        Ok(Some(Probe::compressed(AudioFormat::OggOpus)))
    } else if packet.starts_with(b"\x01vorbis") {
        Ok(Some(Probe::compressed(AudioFormat::OggVorbis)))
    } else if packet.starts_with(b"\x7fFLAC") {
        Err(AudioError::Unsupported(
            "FLAC in Ogg is not accepted: send native FLAC (fLaC), Ogg Vorbis or Ogg Opus".into(),
        ))
    } else if packet.starts_with(b"Speex   ") {
        Err(AudioError::Unsupported(
            "Ogg Speex is not accepted: send Ogg Opus or Ogg Vorbis".into(),
        ))
    } else {
        Err(AudioError::Unsupported(
            "this Ogg stream holds neither Opus nor Vorbis".into(),
        ))
    }
}

/// Recognises the compressed containers by their magic bytes. `Ok(None)` = not one of them.
fn probe_compressed(
    head: &[u8],
    hint: RawHint,
    eof: bool,
) -> Result<Option<Option<Probe>>, AudioError> {
    if head.starts_with(b"OggS") {
        return probe_ogg(head, eof).map(Some);
    }
    if head.starts_with(b"fLaC") {
        return Ok(Some(Some(Probe::compressed(AudioFormat::Flac))));
    }
    if head.starts_with(&[0x1A, 0x45, 0xDF, 0xA3]) {
        // The EBML header names the document type within its first few dozen bytes.
        let window = &head[..head.len().min(64)];
        let is = |t: &[u8]| window.windows(t.len()).any(|w| w == t);
        if head.len() < 40 && !eof {
            return Ok(Some(None));
        }
        return if is(b"webm") || is(b"matroska") {
            Ok(Some(Some(Probe::compressed(AudioFormat::WebmOpus))))
        } else {
            Err(AudioError::Unsupported(
                "this EBML file is neither WebM nor Matroska".into(),
            ))
        };
    }
    if head.starts_with(b"ID3") || (!hint.is_raw() && mp3_frame_header(head)) {
        return Ok(Some(Some(Probe::compressed(AudioFormat::Mp3))));
    }
    Ok(None)
}

/// Reads the header from the first bytes of a body. Returns `Ok(None)` while more bytes are needed
/// (`eof` = no more will come).
pub fn probe(head: &[u8], hint: RawHint, eof: bool) -> Result<Option<Probe>, AudioError> {
    if head.is_empty() {
        return if eof {
            Err(AudioError::Corrupt("the body is empty: no audio".into()))
        } else {
            Ok(None)
        };
    }
    if head.len() < 12 && !eof {
        return Ok(None);
    }
    if head.starts_with(b"RIFF") && head.len() >= 12 && &head[8..12] == b"WAVE" {
        return probe_wav(head, eof);
    }
    if let Some(p) = probe_compressed(head, hint, eof)? {
        return Ok(p);
    }
    if let Some(name) = foreign_container(head) {
        return Err(AudioError::Unsupported(format!(
            "{name} recordings are not accepted here: send WAV, raw G.711/slin/GSM, MP3, FLAC, \
             Ogg (Vorbis, Opus) or WebM/Opus"
        )));
    }
    match hint {
        RawHint::Ulaw => Ok(Some(Probe::raw(AudioFormat::RawUlaw, 8000, 8, 1, 1))),
        RawHint::Alaw => Ok(Some(Probe::raw(AudioFormat::RawAlaw, 8000, 8, 1, 1))),
        RawHint::Gsm => {
            if head[0] >> 4 != 0xD {
                return Err(AudioError::Corrupt(
                    "not GSM 06.10: a raw GSM frame starts with 0xD in its high nibble".into(),
                ));
            }
            Ok(Some(Probe::raw(AudioFormat::RawGsm, 8000, 0, 33, 160)))
        }
        RawHint::Slin { rate, big_endian } => {
            let format = match (rate, big_endian) {
                (16000, false) => AudioFormat::RawSlin16,
                (_, false) => AudioFormat::RawSlin,
                (16000, true) => AudioFormat::RawL16_16k,
                (_, true) => AudioFormat::RawL16,
            };
            Ok(Some(Probe::raw(format, rate, 16, 2, 1)))
        }
        RawHint::Wav => Err(AudioError::Corrupt(
            "the body is not a WAV file (no RIFF/WAVE header)".into(),
        )),
        RawHint::Compressed => Err(AudioError::Corrupt(
            "the body is not MP3, FLAC, Ogg or WebM audio".into(),
        )),
        RawHint::Sniff => Err(AudioError::Unsupported(
            "unrecognised audio: send WAV, MP3, FLAC, Ogg or WebM, or a headerless recording with \
             its Content-Type (audio/PCMU, audio/PCMA, audio/GSM, audio/x-sln, audio/L16)"
                .into(),
        )),
    }
}

/// The tail shared by every WAVE_FORMAT_EXTENSIBLE sub-format GUID (after its first two bytes).
const KSDATAFORMAT_TAIL: [u8; 14] = [
    0x00, 0x00, 0x00, 0x00, 0x10, 0x00, 0x80, 0x00, 0x00, 0xAA, 0x00, 0x38, 0x9B, 0x71,
];

/// What a WAV `fmt ` chunk says.
#[derive(Debug, Clone, Copy)]
struct Fmt {
    tag: u16,
    channels: u16,
    rate: u32,
    block_align: u16,
    bits: u16,
    /// GSM's samples per block (from the fmt extension), when present.
    samples_per_block: Option<u16>,
}

fn read_fmt(chunk: &[u8], size: usize) -> Result<Fmt, AudioError> {
    let mut tag = le16(chunk, 0);
    let channels = le16(chunk, 2);
    let rate = le32(chunk, 4);
    let block_align = le16(chunk, 12);
    // A 14-byte fmt (WAVEFORMAT without bits) appears in old files; G.711 implies 8 bits.
    let mut bits = if size >= 16 { le16(chunk, 14) } else { 8 };
    let mut samples_per_block = None;
    if tag == 0xFFFE {
        // WAVE_FORMAT_EXTENSIBLE: the real tag is the first two bytes of the sub-format GUID.
        if size < 40 {
            return Err(AudioError::Corrupt(
                "WAVE_FORMAT_EXTENSIBLE fmt chunk shorter than 40 bytes".into(),
            ));
        }
        let valid_bits = le16(chunk, 18);
        tag = le16(chunk, 24);
        if chunk[26..40] != KSDATAFORMAT_TAIL {
            return Err(AudioError::Unsupported(
                "WAVE_FORMAT_EXTENSIBLE with a non-standard sub-format is not accepted".into(),
            ));
        }
        if valid_bits != 0 && valid_bits > bits {
            return Err(AudioError::Corrupt(
                "WAV declares more valid bits than container bits".into(),
            ));
        }
    } else if tag == 0x31 && size >= 20 && le16(chunk, 16) >= 2 {
        samples_per_block = Some(le16(chunk, 18));
    }
    if size < 16 && tag == 1 {
        bits = 0;
    }
    Ok(Fmt {
        tag,
        channels,
        rate,
        block_align,
        bits,
        samples_per_block,
    })
}

fn wav_probe(f: Fmt, data_offset: u64, size: u32, fact: Option<u64>) -> Result<Probe, AudioError> {
    let format = match f.tag {
        1 => AudioFormat::WavPcm,
        3 => AudioFormat::WavFloat,
        6 => AudioFormat::WavAlaw,
        7 => AudioFormat::WavUlaw,
        0x31 => AudioFormat::WavGsm,
        other => {
            return Err(AudioError::Unsupported(format!(
                "WAV format tag 0x{other:04x} is not accepted: send PCM, float, µ-law, A-law or \
                 GSM 06.10"
            )));
        }
    };
    if !(1..=8).contains(&f.channels) {
        return Err(AudioError::Corrupt(format!(
            "WAV declares {} channels",
            f.channels
        )));
    }
    if !(4000..=192_000).contains(&f.rate) {
        return Err(AudioError::Corrupt(format!(
            "WAV declares a sample rate of {} Hz",
            f.rate
        )));
    }
    let (block_align, block_frames) = if format == AudioFormat::WavGsm {
        if f.channels != 1 {
            return Err(AudioError::Corrupt(
                "GSM 06.10 WAV declares more than one channel".into(),
            ));
        }
        if f.block_align != 65 || f.samples_per_block.is_some_and(|n| n != 320) {
            return Err(AudioError::Corrupt(format!(
                "GSM 06.10 WAV declares blocks of {} bytes / {} samples, not 65 / 320",
                f.block_align,
                f.samples_per_block.unwrap_or(320)
            )));
        }
        (65, 320)
    } else {
        let expected_bits: &[u16] = match format {
            AudioFormat::WavPcm => &[8, 16, 24, 32],
            AudioFormat::WavFloat => &[32, 64],
            _ => &[8],
        };
        if !expected_bits.contains(&f.bits) {
            return Err(AudioError::Corrupt(format!(
                "WAV declares {} bits per sample for {}",
                f.bits,
                format.codec()
            )));
        }
        let frame = u32::from(f.channels) * u32::from(f.bits / 8);
        if u32::from(f.block_align) != frame {
            return Err(AudioError::Corrupt(format!(
                "WAV block align {} does not match {} channel(s) of {} bits",
                f.block_align, f.channels, f.bits
            )));
        }
        (frame, 1)
    };
    let data_len = match size {
        0 | 0xFFFF_FFFF => None,
        n => Some(u64::from(n)),
    };
    Ok(Probe {
        format,
        sample_rate: f.rate,
        channels: f.channels,
        bits_per_sample: f.bits,
        block_align,
        block_frames,
        data_offset,
        data_len,
        fact_frames: fact,
    })
}

fn probe_wav(head: &[u8], eof: bool) -> Result<Option<Probe>, AudioError> {
    let need_more = |eof: bool, what: &str| {
        if eof || head.len() >= MAX_HEADER {
            Err(AudioError::Corrupt(format!(
                "truncated WAV: {what} not found in the header"
            )))
        } else {
            Ok(None)
        }
    };
    let mut pos = 12usize;
    let mut fmt: Option<Fmt> = None;
    let mut fact: Option<u64> = None;
    loop {
        if pos + 8 > head.len() {
            return need_more(
                eof,
                if fmt.is_none() {
                    "fmt chunk"
                } else {
                    "data chunk"
                },
            );
        }
        let id = &head[pos..pos + 4];
        let size = le32(head, pos + 4) as usize;
        let body = pos + 8;
        if id == b"data" {
            let f = fmt.ok_or_else(|| {
                AudioError::Corrupt("WAV data chunk comes before its fmt chunk".into())
            })?;
            return wav_probe(f, body as u64, size as u32, fact).map(Some);
        }
        if id == b"fmt " {
            if size < 14 {
                return Err(AudioError::Corrupt(format!(
                    "WAV fmt chunk of {size} bytes is too short"
                )));
            }
            if body + size.min(40) > head.len() {
                return need_more(eof, "complete fmt chunk");
            }
            fmt = Some(read_fmt(&head[body..], size)?);
        }
        if id == b"fact" && size >= 4 {
            if body + 4 > head.len() {
                return need_more(eof, "complete fact chunk");
            }
            fact = Some(u64::from(le32(head, body)));
        }
        // Chunks are word aligned.
        let next = body
            .checked_add(size)
            .and_then(|n| n.checked_add(size & 1))
            .ok_or_else(|| AudioError::Corrupt("WAV chunk size overflows".into()))?;
        if next > MAX_HEADER {
            return Err(AudioError::Corrupt(
                "WAV data chunk not found in the first 64 KiB".into(),
            ));
        }
        pos = next;
    }
}

/// Samples per channel in `data` bytes of a block format, checking that the data ends on a
/// block boundary (a GSM WAV may carry one pad byte after an odd-sized last block).
pub fn frames_in(probe: &Probe, data: u64, exact: bool) -> Result<u64, AudioError> {
    let align = u64::from(probe.block_align.max(1));
    let blocks = data / align;
    let rest = data % align;
    let pad_byte = rest == 1 && (blocks * align) % 2 == 1;
    if exact && rest != 0 && !pad_byte {
        return Err(AudioError::Corrupt(format!(
            "the audio ends inside a {}-byte {}: {rest} byte(s) left over",
            align,
            if probe.block_frames > 1 {
                "block"
            } else {
                "frame"
            }
        )));
    }
    let frames = blocks * u64::from(probe.block_frames);
    // A fact chunk may trim the padding of the last block, no more.
    Ok(match probe.fact_frames {
        Some(f) if f <= frames && f + u64::from(probe.block_frames) > frames => f,
        _ => frames,
    })
}

/// Checks the whole body against its header once `total` bytes have been received, and returns
/// the audio's duration in milliseconds. For block formats only (not compressed ones).
pub fn finish(probe: &Probe, total: u64) -> Result<u64, AudioError> {
    if probe.format.is_compressed() || probe.sample_rate == 0 {
        return Err(AudioError::Corrupt(
            "a compressed recording is measured by decoding it".into(),
        ));
    }
    let available = total.saturating_sub(probe.data_offset);
    let (data, exact) = match probe.data_len {
        Some(declared) if declared > available => {
            return Err(AudioError::Corrupt(format!(
                "truncated WAV: the header declares {declared} bytes of audio but only {available} arrived"
            )));
        }
        Some(declared) => (declared, true),
        // Raw formats have nothing after the audio; a streaming WAV may have trailing chunks.
        None => (available, probe.data_offset == 0),
    };
    let frames = frames_in(probe, data, exact)?;
    if frames == 0 {
        return Err(AudioError::Corrupt(
            "the recording holds no audio samples".into(),
        ));
    }
    Ok(frames * 1000 / u64::from(probe.sample_rate))
}

/// Checks the bytes of a headerless GSM body as they stream by: every 33-byte frame starts with
/// the GSM magic nibble 0xD, so anything else is not GSM.
#[derive(Debug, Default)]
pub struct GsmFrameCheck {
    offset: u64,
}

impl GsmFrameCheck {
    /// Checks the next bytes of the body.
    pub fn feed(&mut self, chunk: &[u8]) -> Result<(), AudioError> {
        const FRAME: u64 = 33;
        let first = ((FRAME - self.offset % FRAME) % FRAME) as usize;
        let bad = chunk
            .iter()
            .skip(first)
            .step_by(FRAME as usize)
            .position(|b| b >> 4 != 0xD);
        if let Some(i) = bad {
            let at = self.offset + (first + i * FRAME as usize) as u64;
            return Err(AudioError::Corrupt(format!(
                "not GSM 06.10: the frame at byte {at} does not start with the magic nibble 0xD"
            )));
        }
        self.offset += chunk.len() as u64;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wav(tag: u16, bits: u16, fmt_size: u32, data: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(b"RIFF");
        v.extend_from_slice(&(4 + 8 + fmt_size + 8 + data.len() as u32).to_le_bytes());
        v.extend_from_slice(b"WAVE");
        v.extend_from_slice(b"fmt ");
        v.extend_from_slice(&fmt_size.to_le_bytes());
        v.extend_from_slice(&tag.to_le_bytes());
        v.extend_from_slice(&1u16.to_le_bytes());
        v.extend_from_slice(&8000u32.to_le_bytes());
        v.extend_from_slice(&(8000 * u32::from(bits / 8)).to_le_bytes());
        v.extend_from_slice(&(bits / 8).to_le_bytes());
        v.extend_from_slice(&bits.to_le_bytes());
        v.extend(std::iter::repeat_n(0u8, fmt_size as usize - 16));
        v.extend_from_slice(b"data");
        v.extend_from_slice(&(data.len() as u32).to_le_bytes());
        v.extend_from_slice(data);
        v
    }

    #[test]
    fn reads_ulaw_wav_with_16_byte_fmt() {
        let body = wav(7, 8, 16, &[0xFF; 8000]);
        let p = probe(&body, RawHint::Wav, true).unwrap().unwrap();
        assert_eq!(p.format, AudioFormat::WavUlaw);
        assert_eq!(p.data_offset, 44);
        assert_eq!(finish(&p, body.len() as u64).unwrap(), 1000);
    }

    #[test]
    fn reads_alaw_wav_with_18_byte_fmt() {
        let body = wav(6, 8, 18, &[0xD5; 4000]);
        let p = probe(&body, RawHint::Sniff, true).unwrap().unwrap();
        assert_eq!(p.format, AudioFormat::WavAlaw);
        assert_eq!(finish(&p, body.len() as u64).unwrap(), 500);
    }

    #[test]
    fn refuses_a_header_that_lies_about_its_size() {
        let mut body = wav(1, 16, 16, &[0; 1600]);
        body.truncate(body.len() - 100);
        let p = probe(&body, RawHint::Wav, true).unwrap().unwrap();
        assert!(matches!(
            finish(&p, body.len() as u64),
            Err(AudioError::Corrupt(_))
        ));
    }

    #[test]
    fn needs_more_bytes_before_deciding() {
        let body = wav(1, 16, 16, &[0; 1600]);
        assert_eq!(probe(&body[..20], RawHint::Wav, false), Ok(None));
        assert!(probe(&body[..20], RawHint::Wav, true).is_err());
    }

    #[test]
    fn refuses_garbage_and_foreign_containers() {
        assert!(matches!(
            probe(b"hello world, not audio", RawHint::Wav, true),
            Err(AudioError::Corrupt(_))
        ));
        assert!(matches!(
            probe(b"#!AMR\n\0\0\0\0\0\0\0", RawHint::Ulaw, true),
            Err(AudioError::Unsupported(_))
        ));
        // A truncated Ogg page is a damaged Ogg stream, whatever the type said.
        assert!(matches!(
            probe(b"OggS\0\x02\0\0\0\0\0\0\0\0", RawHint::Ulaw, true),
            Err(AudioError::Corrupt(_))
        ));
        assert!(probe(&[0xFF; 16], RawHint::Ulaw, true).unwrap().is_some());
        assert!(matches!(
            probe(b"", RawHint::Ulaw, true),
            Err(AudioError::Corrupt(_))
        ));
        assert!(matches!(
            probe(b"random bytes, no magic", RawHint::Compressed, true),
            Err(AudioError::Corrupt(_))
        ));
        assert!(matches!(
            probe(b"random bytes, no magic", RawHint::Sniff, true),
            Err(AudioError::Unsupported(_))
        ));
    }

    fn ogg_first_page(packet: &[u8]) -> Vec<u8> {
        let mut p = b"OggS\0\x02".to_vec();
        p.extend_from_slice(&[0; 20]);
        p.push(1);
        p.push(packet.len() as u8);
        p.extend_from_slice(packet);
        let crc = crate::audio::compressed::ogg_page_crc(&p);
        p[22..26].copy_from_slice(&crc.to_le_bytes());
        p
    }

    #[test]
    fn compressed_containers_are_recognised_by_content() {
        let fmt = |head: &[u8], hint| probe(head, hint, true).unwrap().unwrap().format;
        let opus = ogg_first_page(b"OpusHead\x01\x01\x38\x01\x80\xbb\0\0\0\0\0");
        assert_eq!(fmt(&opus, RawHint::Wav), AudioFormat::OggOpus);
        let vorbis = ogg_first_page(b"\x01vorbis\0\0\0\0\x01");
        assert_eq!(fmt(&vorbis, RawHint::Ulaw), AudioFormat::OggVorbis);
        assert!(matches!(
            probe(&ogg_first_page(b"Speex   version"), RawHint::Sniff, true),
            Err(AudioError::Unsupported(_))
        ));
        // The first packet is needed before deciding.
        assert_eq!(probe(&opus[..30], RawHint::Sniff, false), Ok(None));
        assert_eq!(
            fmt(b"fLaC\0\0\0\x22rest", RawHint::Sniff),
            AudioFormat::Flac
        );
        assert_eq!(
            fmt(b"ID3\x04\0\0\0\0\0\x21rest", RawHint::Sniff),
            AudioFormat::Mp3
        );
        let frame = [0xFF, 0xFB, 0x90, 0x64, 0, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(fmt(&frame, RawHint::Sniff), AudioFormat::Mp3);
        // In a body declared headerless, a bare frame sync is just audio.
        assert_eq!(fmt(&frame, RawHint::Ulaw), AudioFormat::RawUlaw);
        let mut webm = vec![0x1A, 0x45, 0xDF, 0xA3, 0x9F, 0x42, 0x86, 0x81, 0x01];
        webm.extend_from_slice(b"\x42\x82\x84webm");
        webm.resize(48, 0);
        assert_eq!(fmt(&webm, RawHint::Compressed), AudioFormat::WebmOpus);
        let p = probe(&webm, RawHint::Sniff, true).unwrap().unwrap();
        assert_eq!(p.max_body_for(10), u64::MAX);
        assert!(
            finish(&p, 1000).is_err(),
            "measured by decoding, not by size"
        );
    }

    #[test]
    fn raw_formats_come_from_the_content_type() {
        let fmt = |ct: &str| {
            let hint = hint_from_content_type(Some(ct)).unwrap();
            probe(&[0xD5; 66], hint, true).unwrap().unwrap().format
        };
        assert_eq!(fmt("audio/x-sln"), AudioFormat::RawSlin);
        assert_eq!(fmt("audio/sln; rate=16000"), AudioFormat::RawSlin16);
        assert_eq!(fmt("audio/sln16"), AudioFormat::RawSlin16);
        assert_eq!(fmt("audio/L16; rate=8000"), AudioFormat::RawL16);
        assert_eq!(
            fmt("audio/L16;rate=16000;channels=1"),
            AudioFormat::RawL16_16k
        );
        assert_eq!(
            fmt("audio/L16; rate=8000; endianness=little-endian"),
            AudioFormat::RawSlin
        );
        assert_eq!(fmt("audio/GSM"), AudioFormat::RawGsm);
        assert_eq!(fmt("audio/x-gsm"), AudioFormat::RawGsm);
        for bad in [
            "audio/L16",
            "audio/L16; rate=44100",
            "audio/x-sln; rate=12000",
            "audio/sln16; rate=8000",
            "audio/GSM; rate=16000",
            "audio/x-sln; channels=2",
        ] {
            assert!(
                matches!(
                    hint_from_content_type(Some(bad)),
                    Err(AudioError::Unsupported(_))
                ),
                "{bad}"
            );
        }
        assert_eq!(
            hint_from_content_type(Some("audio/webm;codecs=opus")).unwrap(),
            RawHint::Compressed
        );
    }

    #[test]
    fn raw_gsm_and_slin_must_end_on_a_frame() {
        let gsm = probe(&[0xD0; 33], RawHint::Gsm, true).unwrap().unwrap();
        assert_eq!(finish(&gsm, 33 * 50).unwrap(), 1000);
        assert!(finish(&gsm, 33 * 50 + 10).is_err());
        assert!(probe(&[0x20; 33], RawHint::Gsm, true).is_err());
        let mut check = GsmFrameCheck::default();
        let mut body = [0xD0; 33 * 3];
        check.feed(&body[..40]).unwrap();
        check.feed(&body[40..]).unwrap();
        body[66] = 0x12;
        let mut check = GsmFrameCheck::default();
        check.feed(&body[..50]).unwrap();
        assert!(check.feed(&body[50..]).is_err());
        let slin = probe(
            &[0; 16],
            hint_from_content_type(Some("audio/x-sln")).unwrap(),
            true,
        )
        .unwrap()
        .unwrap();
        assert_eq!(finish(&slin, 16000).unwrap(), 1000);
        assert!(finish(&slin, 15999).is_err());
    }

    #[test]
    fn wav49_float_and_extensible_headers_are_read() {
        // GSM: 65-byte blocks of 320 samples, a fact chunk and a pad byte inside data (sox).
        let mut w = b"RIFF\0\0\0\0WAVEfmt \x14\0\0\0".to_vec();
        w.extend_from_slice(&0x31u16.to_le_bytes());
        w.extend_from_slice(&1u16.to_le_bytes());
        w.extend_from_slice(&8000u32.to_le_bytes());
        w.extend_from_slice(&1625u32.to_le_bytes());
        w.extend_from_slice(&65u16.to_le_bytes());
        w.extend_from_slice(&0u16.to_le_bytes());
        w.extend_from_slice(&2u16.to_le_bytes());
        w.extend_from_slice(&320u16.to_le_bytes());
        w.extend_from_slice(b"fact\x04\0\0\0");
        w.extend_from_slice(&25005u32.to_le_bytes());
        w.extend_from_slice(b"data");
        w.extend_from_slice(&5136u32.to_le_bytes());
        let header = w.len() as u64;
        let p = probe(&w, RawHint::Wav, false).unwrap().unwrap();
        assert_eq!(p.format, AudioFormat::WavGsm);
        assert_eq!(
            (p.block_align, p.block_frames, p.fact_frames),
            (65, 320, Some(25005))
        );
        assert_eq!(finish(&p, header + 5136).unwrap(), 3125);
        let mut cut = p.clone();
        cut.data_len = Some(5100);
        assert!(finish(&cut, header + 5100).is_err(), "a truncated block");
        // Float and extensible.
        let mut f = wav(3, 32, 16, &[0; 64]);
        assert_eq!(
            probe(&f, RawHint::Wav, true).unwrap().unwrap().format,
            AudioFormat::WavFloat
        );
        f[34] = 24;
        assert!(probe(&f, RawHint::Wav, true).is_err(), "24-bit float");
        let mut ext = wav(0xFFFE, 16, 40, &[0; 64]);
        ext[36..38].copy_from_slice(&22u16.to_le_bytes());
        ext[38..40].copy_from_slice(&16u16.to_le_bytes());
        ext[44..46].copy_from_slice(&1u16.to_le_bytes());
        ext[46..60].copy_from_slice(&KSDATAFORMAT_TAIL);
        assert_eq!(
            probe(&ext, RawHint::Wav, true).unwrap().unwrap().format,
            AudioFormat::WavPcm
        );
        ext[50] = 0x77;
        assert!(matches!(
            probe(&ext, RawHint::Wav, true),
            Err(AudioError::Unsupported(_))
        ));
    }

    #[test]
    fn refuses_absurd_declarations() {
        let mut body = wav(1, 16, 16, &[0; 16]);
        body[22] = 200; // channels
        assert!(probe(&body, RawHint::Wav, true).is_err());
    }

    #[test]
    fn content_types_map_to_hints() {
        assert_eq!(
            hint_from_content_type(Some("audio/PCMU")).unwrap(),
            RawHint::Ulaw
        );
        assert_eq!(
            hint_from_content_type(Some("audio/x-alaw-basic")).unwrap(),
            RawHint::Alaw
        );
        assert!(matches!(
            hint_from_content_type(Some("text/plain")),
            Err(AudioError::UnsupportedMediaType(_))
        ));
        assert!(hint_from_content_type(Some("audio/PCMU; rate=16000")).is_err());
    }
}
