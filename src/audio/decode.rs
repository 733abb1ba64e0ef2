//! Decoding a stored recording (a format the deposit path accepted) to mono 16-bit PCM.

use super::{AudioError, RawHint, g711, probe};
use crate::domain::AudioFormat;

/// Mono 16-bit samples at a sample rate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pcm {
    pub rate: u32,
    pub samples: Vec<i16>,
}

/// The audio bytes of a recording (after its header, as long as the header says) and its probe.
pub fn audio_data(format: AudioFormat, bytes: &[u8]) -> Result<(probe::Probe, &[u8]), AudioError> {
    let hint = match format {
        AudioFormat::RawUlaw => RawHint::Ulaw,
        AudioFormat::RawAlaw => RawHint::Alaw,
        _ => RawHint::Wav,
    };
    let p = probe::probe(bytes, hint, true)?
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

/// Decodes a recording to mono: channels are averaged.
pub fn decode(format: AudioFormat, bytes: &[u8]) -> Result<Pcm, AudioError> {
    let (p, data) = audio_data(format, bytes)?;
    let channels = usize::from(p.channels.max(1));
    let width = usize::from(p.bits_per_sample / 8).max(1);
    let sample = |b: &[u8]| -> i32 {
        match (format, width) {
            (AudioFormat::WavUlaw | AudioFormat::RawUlaw, _) => {
                i32::from(g711::ulaw_to_linear(b[0]))
            }
            (AudioFormat::WavAlaw | AudioFormat::RawAlaw, _) => {
                i32::from(g711::alaw_to_linear(b[0]))
            }
            // 8-bit WAV PCM is unsigned; wider samples are signed little-endian, keep the top 16 bits.
            (_, 1) => (i32::from(b[0]) - 128) << 8,
            (_, 2) => i32::from(i16::from_le_bytes([b[0], b[1]])),
            (_, 3) => i32::from(i16::from_le_bytes([b[1], b[2]])),
            (_, _) => i32::from(i16::from_le_bytes([b[2], b[3]])),
        }
    };
    let frame = channels * width;
    let samples = data
        .chunks_exact(frame)
        .map(|f| {
            let sum: i32 = f.chunks_exact(width).map(sample).sum();
            // Average, rounding toward zero; the result is within i16 as every term is.
            (sum / channels as i32) as i16
        })
        .collect();
    Ok(Pcm {
        rate: p.sample_rate,
        samples,
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
}
