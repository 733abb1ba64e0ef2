//! Output renditions: the formats a listener (browser, PBX, e-mail client) can ask for, and the
//! transcoder that makes one from a stored original. CPU work: call from `spawn_blocking`.

use voxmail_codecs::{GSM_FRAME_SAMPLES, GsmEncoder};

use super::{AudioError, decode, g711, ogg_opus, resample, wav};
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
}

impl Rendition {
    /// Builds a rendition from request parameters, refusing parameters the format does not take.
    pub fn new(
        format: OutputFormat,
        rate: Option<u32>,
        bitrate: Option<u32>,
        default_bitrate: u32,
    ) -> Result<Self, String> {
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
        Ok(Self {
            format,
            rate,
            bitrate: if format == OutputFormat::Opus {
                bitrate
            } else {
                0
            },
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
                        }
                        .suffix(),
                    );
                    for r in WAV_RATES {
                        v.push(
                            Self {
                                format: f,
                                rate: Some(r),
                                bitrate: 0,
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
                    }
                    .suffix(),
                ),
            }
        }
        v
    }
}

fn le_bytes(samples: &[i16]) -> Vec<u8> {
    samples.iter().flat_map(|s| s.to_le_bytes()).collect()
}

fn gsm(samples: &[i16], wav49: bool) -> Result<Vec<u8>, AudioError> {
    let per_block = if wav49 {
        2 * GSM_FRAME_SAMPLES
    } else {
        GSM_FRAME_SAMPLES
    };
    let frames = samples.len().div_ceil(per_block).max(1) * (per_block / GSM_FRAME_SAMPLES);
    let mut enc = GsmEncoder::new(wav49)
        .ok_or_else(|| AudioError::Corrupt("libgsm could not allocate an encoder".into()))?;
    let mut out = Vec::with_capacity(frames * 33);
    let mut frame = [0i16; GSM_FRAME_SAMPLES];
    for i in 0..frames {
        let start = (i * GSM_FRAME_SAMPLES).min(samples.len());
        let end = ((i + 1) * GSM_FRAME_SAMPLES).min(samples.len());
        frame.fill(0);
        frame[..end - start].copy_from_slice(&samples[start..end]);
        enc.encode_frame(&frame, &mut out);
    }
    Ok(out)
}

/// Makes a rendition of a stored recording. G.711 to the same law at 8 kHz copies the coded bytes
/// (no decode/encode step, so it is exact); everything else goes through mono 16-bit PCM.
pub fn transcode(format: AudioFormat, bytes: &[u8], r: &Rendition) -> Result<Vec<u8>, AudioError> {
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
        let (p, data) = decode::audio_data(format, bytes)?;
        if p.sample_rate == 8000 && p.channels == 1 {
            return Ok(match r.format {
                OutputFormat::WavUlaw => wav::g711_wav(wav::TAG_ULAW, data),
                OutputFormat::WavAlaw => wav::g711_wav(wav::TAG_ALAW, data),
                _ => data.to_vec(),
            });
        }
    }
    let pcm = decode::decode(format, bytes)?;
    if pcm.samples.is_empty() {
        return Err(AudioError::Corrupt(
            "the recording holds no audio samples".into(),
        ));
    }
    let at = |rate: u32| resample::resample(&pcm.samples, pcm.rate, rate);
    Ok(match r.format {
        OutputFormat::Wav => {
            let rate = r.rate.unwrap_or(pcm.rate);
            wav::pcm16_wav(&at(rate)?, rate, 1)
        }
        OutputFormat::WavUlaw => wav::g711_wav(wav::TAG_ULAW, &g711::encode_ulaw(&at(8000)?)),
        OutputFormat::WavAlaw => wav::g711_wav(wav::TAG_ALAW, &g711::encode_alaw(&at(8000)?)),
        OutputFormat::Ulaw => g711::encode_ulaw(&at(8000)?),
        OutputFormat::Alaw => g711::encode_alaw(&at(8000)?),
        OutputFormat::Sln => le_bytes(&at(8000)?),
        OutputFormat::Sln16 => le_bytes(&at(16000)?),
        OutputFormat::Gsm => gsm(&at(8000)?, false)?,
        OutputFormat::Wav49 => {
            let s = at(8000)?;
            let n = u32::try_from(s.len()).unwrap_or(u32::MAX);
            wav::wav49(&gsm(&s, true)?, n)
        }
        OutputFormat::Opus => {
            let rate = if ogg_opus::OPUS_RATES.contains(&pcm.rate) {
                pcm.rate
            } else {
                48000
            };
            ogg_opus::encode(&at(rate)?, rate, r.bitrate, pcm.rate)?
        }
    })
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

    #[test]
    fn ulaw_to_slin_wav_and_back_is_bit_exact() {
        let ulaw: Vec<u8> = (0u8..=255)
            .filter(|&b| b != 0x7F)
            .cycle()
            .take(8000)
            .collect();
        let any = |f| Rendition::new(f, None, None, 16000).unwrap();
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
                &Rendition::new(f, rate, None, 16000).unwrap(),
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
        assert!(Rendition::new(OutputFormat::Wav, Some(44100), None, 16000).is_err());
        assert!(Rendition::new(OutputFormat::Gsm, Some(8000), None, 16000).is_err());
        assert!(Rendition::new(OutputFormat::Opus, None, Some(17), 16000).is_err());
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
