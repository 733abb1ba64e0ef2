//! Minimal RIFF/WAVE writers: 16-bit linear PCM, G.711 and GSM 06.10 (WAV49).

/// A canonical 44-byte-header WAV file of 16-bit little-endian PCM samples.
pub fn pcm16_wav(samples: &[i16], sample_rate: u32, channels: u16) -> Vec<u8> {
    let data_len = u32::try_from(samples.len() * 2).unwrap_or(u32::MAX - 36);
    let block_align = channels * 2;
    let mut v = Vec::with_capacity(44 + samples.len() * 2);
    v.extend_from_slice(b"RIFF");
    v.extend_from_slice(&(36 + data_len).to_le_bytes());
    v.extend_from_slice(b"WAVEfmt ");
    v.extend_from_slice(&16u32.to_le_bytes());
    v.extend_from_slice(&1u16.to_le_bytes());
    v.extend_from_slice(&channels.to_le_bytes());
    v.extend_from_slice(&sample_rate.to_le_bytes());
    v.extend_from_slice(&(sample_rate * u32::from(block_align)).to_le_bytes());
    v.extend_from_slice(&block_align.to_le_bytes());
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
    let data_len = u32::try_from(data.len()).unwrap_or(u32::MAX);
    let riff_len = 4 + (8 + fmt.len()) + fact_len + 8 + data.len() + pad;
    let mut v = Vec::with_capacity(8 + riff_len);
    v.extend_from_slice(b"RIFF");
    v.extend_from_slice(&u32::try_from(riff_len).unwrap_or(u32::MAX).to_le_bytes());
    v.extend_from_slice(b"WAVEfmt ");
    v.extend_from_slice(&u32::try_from(fmt.len()).unwrap_or(0).to_le_bytes());
    v.extend_from_slice(fmt);
    if let Some(n) = fact_samples {
        v.extend_from_slice(b"fact");
        v.extend_from_slice(&4u32.to_le_bytes());
        v.extend_from_slice(&n.to_le_bytes());
    }
    v.extend_from_slice(b"data");
    v.extend_from_slice(&data_len.to_le_bytes());
    v.extend_from_slice(data);
    if pad == 1 {
        v.push(0);
    }
    v
}

/// The WAVE format tag of µ-law.
pub const TAG_ULAW: u16 = 7;
/// The WAVE format tag of A-law.
pub const TAG_ALAW: u16 = 6;

/// An 8 kHz mono G.711 WAV (`tag` = [`TAG_ULAW`] or [`TAG_ALAW`]) with an 18-byte fmt chunk and a
/// fact chunk, as non-PCM WAVs should have.
pub fn g711_wav(tag: u16, data: &[u8]) -> Vec<u8> {
    let mut fmt = Vec::with_capacity(18);
    fmt.extend_from_slice(&tag.to_le_bytes());
    fmt.extend_from_slice(&1u16.to_le_bytes());
    fmt.extend_from_slice(&8000u32.to_le_bytes());
    fmt.extend_from_slice(&8000u32.to_le_bytes());
    fmt.extend_from_slice(&1u16.to_le_bytes());
    fmt.extend_from_slice(&8u16.to_le_bytes());
    fmt.extend_from_slice(&0u16.to_le_bytes());
    riff(
        &fmt,
        Some(u32::try_from(data.len()).unwrap_or(u32::MAX)),
        data,
    )
}

/// A GSM 06.10 WAV ("WAV49", format 0x31, 65-byte blocks of 320 samples) holding `samples`
/// samples at 8 kHz, as Asterisk, sox and Windows write it.
pub fn wav49(blocks: &[u8], samples: u32) -> Vec<u8> {
    let mut fmt = Vec::with_capacity(20);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_describes_the_samples() {
        let w = pcm16_wav(&[1, -1, 300], 8000, 1);
        assert_eq!(w.len(), 44 + 6);
        assert_eq!(&w[0..4], b"RIFF");
        assert_eq!(u32::from_le_bytes([w[4], w[5], w[6], w[7]]), 36 + 6);
        assert_eq!(&w[8..16], b"WAVEfmt ");
        assert_eq!(u32::from_le_bytes([w[24], w[25], w[26], w[27]]), 8000);
        assert_eq!(u32::from_le_bytes([w[28], w[29], w[30], w[31]]), 16000);
        assert_eq!(&w[36..40], b"data");
        assert_eq!(u32::from_le_bytes([w[40], w[41], w[42], w[43]]), 6);
        assert_eq!(&w[44..46], &1i16.to_le_bytes());
        assert_eq!(&w[46..48], &(-1i16).to_le_bytes());
    }
}
