//! Minimal RIFF/WAVE writers: 16-bit linear PCM, G.711 and GSM 06.10 (WAV49). The headers are
//! made apart from the data so that a streaming writer can put a placeholder first and write the
//! real sizes once the data has ended; a header's length does not depend on the sizes.

/// The 44-byte header of a canonical WAV file of 16-bit PCM holding `data_len` bytes.
pub fn pcm16_header(data_len: u64, sample_rate: u32, channels: u16) -> Vec<u8> {
    let data_len = u32::try_from(data_len).unwrap_or(u32::MAX - 36);
    let block_align = channels * 2;
    let mut v = Vec::with_capacity(44);
    v.extend_from_slice(b"RIFF");
    v.extend_from_slice(&data_len.saturating_add(36).to_le_bytes());
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
    v
}

/// A canonical 44-byte-header WAV file of 16-bit little-endian PCM samples.
pub fn pcm16_wav(samples: &[i16], sample_rate: u32, channels: u16) -> Vec<u8> {
    let mut v = pcm16_header(samples.len() as u64 * 2, sample_rate, channels);
    v.reserve(samples.len() * 2);
    for s in samples {
        v.extend_from_slice(&s.to_le_bytes());
    }
    v
}

/// The header of a non-PCM WAV (`fmt` chunk body, optional `fact` sample count) whose data chunk
/// holds `data_len` bytes, followed by a pad byte when that is odd (see [`riff_pad`]).
pub fn riff_header(fmt: &[u8], fact_samples: Option<u32>, data_len: u64) -> Vec<u8> {
    let pad = data_len & 1;
    let fact_len = if fact_samples.is_some() { 12 } else { 0 };
    let riff_len = 4 + (8 + fmt.len() as u64) + fact_len + 8 + data_len + pad;
    let mut v = Vec::with_capacity(28 + fmt.len());
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
    v.extend_from_slice(&u32::try_from(data_len).unwrap_or(u32::MAX).to_le_bytes());
    v
}

/// The pad byte RIFF wants after a data chunk of `data_len` bytes (none if it is even).
pub fn riff_pad(data_len: u64) -> &'static [u8] {
    if data_len & 1 == 1 { &[0] } else { &[] }
}

fn riff(fmt: &[u8], fact_samples: Option<u32>, data: &[u8]) -> Vec<u8> {
    let len = data.len() as u64;
    let mut v = riff_header(fmt, fact_samples, len);
    v.reserve(data.len() + 1);
    v.extend_from_slice(data);
    v.extend_from_slice(riff_pad(len));
    v
}

/// The WAVE format tag of µ-law.
pub const TAG_ULAW: u16 = 7;
/// The WAVE format tag of A-law.
pub const TAG_ALAW: u16 = 6;

/// The 18-byte fmt chunk of an 8 kHz mono G.711 WAV (`tag` = [`TAG_ULAW`] or [`TAG_ALAW`]).
pub fn g711_fmt(tag: u16) -> Vec<u8> {
    let mut fmt = Vec::with_capacity(18);
    fmt.extend_from_slice(&tag.to_le_bytes());
    fmt.extend_from_slice(&1u16.to_le_bytes());
    fmt.extend_from_slice(&8000u32.to_le_bytes());
    fmt.extend_from_slice(&8000u32.to_le_bytes());
    fmt.extend_from_slice(&1u16.to_le_bytes());
    fmt.extend_from_slice(&8u16.to_le_bytes());
    fmt.extend_from_slice(&0u16.to_le_bytes());
    fmt
}

/// An 8 kHz mono G.711 WAV (`tag` = [`TAG_ULAW`] or [`TAG_ALAW`]) with an 18-byte fmt chunk and a
/// fact chunk, as non-PCM WAVs should have.
pub fn g711_wav(tag: u16, data: &[u8]) -> Vec<u8> {
    riff(
        &g711_fmt(tag),
        Some(u32::try_from(data.len()).unwrap_or(u32::MAX)),
        data,
    )
}

/// The 20-byte fmt chunk of a GSM 06.10 WAV ("WAV49": format 0x31, 65-byte blocks of 320
/// samples at 8 kHz).
pub fn wav49_fmt() -> Vec<u8> {
    let mut fmt = Vec::with_capacity(20);
    fmt.extend_from_slice(&0x31u16.to_le_bytes());
    fmt.extend_from_slice(&1u16.to_le_bytes());
    fmt.extend_from_slice(&8000u32.to_le_bytes());
    fmt.extend_from_slice(&1625u32.to_le_bytes());
    fmt.extend_from_slice(&65u16.to_le_bytes());
    fmt.extend_from_slice(&0u16.to_le_bytes());
    fmt.extend_from_slice(&2u16.to_le_bytes());
    fmt.extend_from_slice(&320u16.to_le_bytes());
    fmt
}

/// A GSM 06.10 WAV ("WAV49", format 0x31, 65-byte blocks of 320 samples) holding `samples`
/// samples at 8 kHz, as Asterisk, sox and Windows write it.
pub fn wav49(blocks: &[u8], samples: u32) -> Vec<u8> {
    riff(&wav49_fmt(), Some(samples), blocks)
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
