//! Recognises a recording from its first bytes (a streaming WAV header parser) and checks, once the
//! whole body has been seen, that the header told the truth.

use crate::domain::AudioFormat;

/// What the sender said the body is (from Content-Type).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RawHint {
    /// `audio/wav` and friends: the body must be a WAV file.
    Wav,
    /// Headerless µ-law, 8 kHz mono.
    Ulaw,
    /// Headerless A-law, 8 kHz mono.
    Alaw,
    /// No usable type (`application/octet-stream` or none): recognise by content only.
    Sniff,
}

/// Why a recording was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
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
}

/// The facts read from a recording's header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    pub format: AudioFormat,
    pub sample_rate: u32,
    pub channels: u16,
    pub bits_per_sample: u16,
    /// Bytes per second of audio data.
    pub byte_rate: u64,
    /// Offset of the first audio byte.
    pub data_offset: u64,
    /// Length of the audio data as the header declares it; `None` when unknown (raw, or a WAV written
    /// while streaming with a 0 or 0xFFFFFFFF size).
    pub data_len: Option<u64>,
}

impl Probe {
    /// The largest body that can hold at most `secs` of audio (plus trailing metadata chunks).
    pub fn max_body_for(&self, secs: u64) -> u64 {
        const TRAILING_CHUNKS_ALLOWANCE: u64 = 64 * 1024;
        self.data_offset + self.byte_rate * secs + TRAILING_CHUNKS_ALLOWANCE
    }
}

/// Header bytes needed at most before a WAV's `data` chunk must have been found.
pub const MAX_HEADER: usize = 64 * 1024;

/// Maps a Content-Type to what it says about the body.
pub fn hint_from_content_type(content_type: Option<&str>) -> Result<RawHint, AudioError> {
    let Some(ct) = content_type else {
        return Ok(RawHint::Sniff);
    };
    let mut parts = ct.split(';');
    let essence = parts.next().unwrap_or("").trim().to_ascii_lowercase();
    let mut rate: Option<String> = None;
    let mut channels: Option<String> = None;
    for p in parts {
        if let Some((k, v)) = p.split_once('=') {
            let v = v.trim().trim_matches('"').to_owned();
            match k.trim().to_ascii_lowercase().as_str() {
                "rate" => rate = Some(v),
                "channels" => channels = Some(v),
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
        "application/octet-stream" | "" => RawHint::Sniff,
        other if other.starts_with("audio/") => {
            return Err(AudioError::Unsupported(format!(
                "{other} is not an accepted recording format: send WAV (PCM, µ-law or A-law), \
                 audio/PCMU or audio/PCMA"
            )));
        }
        other => {
            return Err(AudioError::UnsupportedMediaType(format!(
                "Content-Type {other} is not audio: send the recording as audio/wav, audio/PCMU, \
                 audio/PCMA or multipart/form-data"
            )));
        }
    };
    if matches!(hint, RawHint::Ulaw | RawHint::Alaw) {
        if rate.as_deref().is_some_and(|r| r != "8000") {
            return Err(AudioError::Unsupported(
                "raw G.711 is accepted at rate=8000 only".into(),
            ));
        }
        if channels.as_deref().is_some_and(|c| c != "1") {
            return Err(AudioError::Unsupported(
                "raw G.711 is accepted with channels=1 only".into(),
            ));
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

/// Names a container recognised by its magic bytes that is not accepted on this path. A bare MP3
/// frame sync (11 set bits) is only trusted when the body is not declared raw G.711: µ-law silence
/// is 0xFF and quiet samples are 0xE0..=0xFF, so raw recordings routinely start with it.
fn foreign_container(head: &[u8], raw_g711: bool) -> Option<&'static str> {
    let starts = |m: &[u8]| head.starts_with(m);
    let mp3_sync = !raw_g711 && head.len() >= 2 && head[0] == 0xFF && head[1] & 0xE0 == 0xE0;
    if starts(b"OggS") {
        Some("Ogg")
    } else if starts(b"ID3") || mp3_sync {
        Some("MP3")
    } else if starts(b"fLaC") {
        Some("FLAC")
    } else if starts(&[0x1A, 0x45, 0xDF, 0xA3]) {
        Some("WebM/Matroska")
    } else if starts(b"#!AMR") {
        Some("AMR")
    } else if starts(b"FORM") {
        Some("AIFF")
    } else if starts(b".snd") {
        Some("Sun/NeXT AU")
    } else if head.len() >= 12 && &head[4..8] == b"ftyp" {
        Some("MP4/M4A")
    } else if starts(b"RIFF") && head.len() >= 12 && &head[8..12] != b"WAVE" {
        Some("RIFF (not WAVE)")
    } else {
        None
    }
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
    if let Some(name) = foreign_container(head, matches!(hint, RawHint::Ulaw | RawHint::Alaw)) {
        return Err(AudioError::Unsupported(format!(
            "{name} recordings are not accepted here: send WAV (PCM, µ-law or A-law) or raw G.711"
        )));
    }
    match hint {
        RawHint::Ulaw | RawHint::Alaw => Ok(Some(Probe {
            format: if hint == RawHint::Ulaw {
                AudioFormat::RawUlaw
            } else {
                AudioFormat::RawAlaw
            },
            sample_rate: 8000,
            channels: 1,
            bits_per_sample: 8,
            byte_rate: 8000,
            data_offset: 0,
            data_len: None,
        })),
        RawHint::Wav => Err(AudioError::Corrupt(
            "the body is not a WAV file (no RIFF/WAVE header)".into(),
        )),
        RawHint::Sniff => Err(AudioError::Unsupported(
            "unrecognised audio: send a WAV file, or raw G.711 with Content-Type audio/PCMU or \
             audio/PCMA"
                .into(),
        )),
    }
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
    let mut fmt: Option<(u16, u16, u32, u16, u16)> = None;
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
            let (tag, channels, rate, block_align, bits) = fmt.ok_or_else(|| {
                AudioError::Corrupt("WAV data chunk comes before its fmt chunk".into())
            })?;
            let format = match tag {
                1 => AudioFormat::WavPcm,
                6 => AudioFormat::WavAlaw,
                7 => AudioFormat::WavUlaw,
                3 => {
                    return Err(AudioError::Unsupported(
                        "32-bit float WAV is not accepted here: send 16-bit PCM or G.711".into(),
                    ));
                }
                0x31 => {
                    return Err(AudioError::Unsupported(
                        "GSM 06.10 (WAV49) WAV is not accepted here yet: send PCM or G.711".into(),
                    ));
                }
                other => {
                    return Err(AudioError::Unsupported(format!(
                        "WAV format tag 0x{other:04x} is not accepted: send PCM, µ-law or A-law"
                    )));
                }
            };
            let expected_bits: &[u16] = match format {
                AudioFormat::WavPcm => &[8, 16, 24, 32],
                _ => &[8],
            };
            if !expected_bits.contains(&bits) {
                return Err(AudioError::Corrupt(format!(
                    "WAV declares {bits} bits per sample for {}",
                    format.codec()
                )));
            }
            if !(1..=8).contains(&channels) {
                return Err(AudioError::Corrupt(format!(
                    "WAV declares {channels} channels"
                )));
            }
            if !(4000..=192_000).contains(&rate) {
                return Err(AudioError::Corrupt(format!(
                    "WAV declares a sample rate of {rate} Hz"
                )));
            }
            let frame = u32::from(channels) * u32::from(bits / 8);
            if u32::from(block_align) != frame {
                return Err(AudioError::Corrupt(format!(
                    "WAV block align {block_align} does not match {channels} channel(s) of {bits} bits"
                )));
            }
            let data_len = match size as u32 {
                0 | 0xFFFF_FFFF => None,
                n => Some(u64::from(n)),
            };
            return Ok(Some(Probe {
                format,
                sample_rate: rate,
                channels,
                bits_per_sample: bits,
                byte_rate: u64::from(rate) * u64::from(frame),
                data_offset: body as u64,
                data_len,
            }));
        }
        if id == b"fmt " {
            // A 14-byte fmt (WAVEFORMAT without bits) appears in old files; G.711 implies 8 bits.
            if size < 14 {
                return Err(AudioError::Corrupt(format!(
                    "WAV fmt chunk of {size} bytes is too short"
                )));
            }
            if body + size.min(40) > head.len() {
                return need_more(eof, "complete fmt chunk");
            }
            let mut tag = le16(head, body);
            let channels = le16(head, body + 2);
            let rate = le32(head, body + 4);
            let block_align = le16(head, body + 12);
            let mut bits = if size >= 16 { le16(head, body + 14) } else { 8 };
            if tag == 0xFFFE {
                // WAVE_FORMAT_EXTENSIBLE: the real tag is the first two bytes of the sub-format GUID.
                if size < 40 {
                    return Err(AudioError::Corrupt(
                        "WAVE_FORMAT_EXTENSIBLE fmt chunk shorter than 40 bytes".into(),
                    ));
                }
                let valid_bits = le16(head, body + 18);
                tag = le16(head, body + 24);
                if valid_bits != 0 && valid_bits > bits {
                    return Err(AudioError::Corrupt(
                        "WAV declares more valid bits than container bits".into(),
                    ));
                }
            }
            if size < 16 && tag == 1 {
                bits = 0;
            }
            fmt = Some((tag, channels, rate, block_align, bits));
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

/// Checks the whole body against its header once `total` bytes have been received, and returns
/// the audio's duration in milliseconds.
pub fn finish(probe: &Probe, total: u64) -> Result<u64, AudioError> {
    let available = total.saturating_sub(probe.data_offset);
    let data = match probe.data_len {
        Some(declared) if declared > available => {
            return Err(AudioError::Corrupt(format!(
                "truncated WAV: the header declares {declared} bytes of audio but only {available} arrived"
            )));
        }
        Some(declared) => declared,
        None => available,
    };
    let frame = u64::from(probe.channels) * u64::from(probe.bits_per_sample / 8);
    if data < frame.max(1) {
        return Err(AudioError::Corrupt(
            "the recording holds no audio samples".into(),
        ));
    }
    Ok(data * 1000 / probe.byte_rate)
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
            probe(b"OggS\0\x02\0\0\0\0\0\0\0\0", RawHint::Ulaw, true),
            Err(AudioError::Unsupported(_))
        ));
        assert!(matches!(
            probe(&[0xFF, 0xFB, 0x90, 0x64], RawHint::Sniff, true),
            Err(AudioError::Unsupported(_))
        ));
        assert!(probe(&[0xFF; 16], RawHint::Ulaw, true).unwrap().is_some());
        assert!(matches!(
            probe(b"", RawHint::Ulaw, true),
            Err(AudioError::Corrupt(_))
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
