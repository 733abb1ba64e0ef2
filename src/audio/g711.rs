//! ITU-T G.711: µ-law and A-law bytes to and from 16-bit linear PCM (the tables every PBX uses).

/// Decodes one µ-law byte to a 16-bit sample.
pub fn ulaw_to_linear(byte: u8) -> i16 {
    let u = !byte;
    let exponent = (u >> 4) & 0x07;
    let mantissa = i32::from(u & 0x0F);
    // The encoder added a bias of 0x84 before segmenting; remove it after expanding.
    let magnitude = (((mantissa << 3) + 0x84) << exponent) - 0x84;
    let sample = if u & 0x80 != 0 { -magnitude } else { magnitude };
    sample as i16
}

/// Decodes one A-law byte to a 16-bit sample.
pub fn alaw_to_linear(byte: u8) -> i16 {
    let a = byte ^ 0x55;
    let exponent = (a >> 4) & 0x07;
    let mantissa = i32::from(a & 0x0F);
    let magnitude = match exponent {
        0 => (mantissa << 4) + 8,
        e => ((mantissa << 4) + 0x108) << (e - 1),
    };
    let sample = if a & 0x80 != 0 { magnitude } else { -magnitude };
    sample as i16
}

/// Decodes a µ-law byte string.
pub fn decode_ulaw(bytes: &[u8]) -> Vec<i16> {
    bytes.iter().map(|&b| ulaw_to_linear(b)).collect()
}

/// Decodes an A-law byte string.
pub fn decode_alaw(bytes: &[u8]) -> Vec<i16> {
    bytes.iter().map(|&b| alaw_to_linear(b)).collect()
}

/// Encodes a 16-bit sample as µ-law (the Sun/ITU reference segment search). Every µ-law byte
/// decoded by [`ulaw_to_linear`] encodes back to itself, except 0x7F ("negative zero"), which
/// decodes to 0 and so comes back as 0xFF.
pub fn linear_to_ulaw(sample: i16) -> u8 {
    const CLIP: i32 = 32635;
    let mut pcm = i32::from(sample);
    let mask: u8 = if pcm < 0 {
        pcm = -pcm;
        0x7F
    } else {
        0xFF
    };
    pcm = pcm.min(CLIP) + 0x84;
    let seg = (0u8..8).find(|&s| pcm < (0x100 << s)).unwrap_or(8);
    if seg >= 8 {
        return 0x7F ^ mask;
    }
    ((seg << 4) | ((pcm >> (seg + 3)) & 0x0F) as u8) ^ mask
}

/// Encodes a 16-bit sample as A-law (the Sun/ITU reference). Every A-law byte round-trips.
pub fn linear_to_alaw(sample: i16) -> u8 {
    let mut pcm = i32::from(sample) >> 3;
    let mask: u8 = if pcm >= 0 {
        0xD5
    } else {
        pcm = -pcm - 1;
        0x55
    };
    let seg = (0u8..8).find(|&s| pcm < (0x20 << s)).unwrap_or(8);
    if seg >= 8 {
        return 0x7F ^ mask;
    }
    let mant = if seg < 2 { pcm >> 1 } else { pcm >> seg };
    ((seg << 4) | (mant & 0x0F) as u8) ^ mask
}

/// Encodes samples as µ-law (whole buffers: the tests' reference; renditions stream).
#[cfg(test)]
pub fn encode_ulaw(samples: &[i16]) -> Vec<u8> {
    samples.iter().map(|&s| linear_to_ulaw(s)).collect()
}

/// Encodes samples as A-law (whole buffers: the tests' reference; renditions stream).
#[cfg(test)]
pub fn encode_alaw(samples: &[i16]) -> Vec<u8> {
    samples.iter().map(|&s| linear_to_alaw(s)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    // Values from the G.711 tables (as in sox's and Asterisk's ulaw/alaw tables).
    #[test]
    fn ulaw_decodes_to_the_standard_table() {
        assert_eq!(ulaw_to_linear(0xFF), 0);
        assert_eq!(ulaw_to_linear(0x7F), 0);
        assert_eq!(ulaw_to_linear(0x00), -32124);
        assert_eq!(ulaw_to_linear(0x80), 32124);
        assert_eq!(ulaw_to_linear(0xFE), 8);
        assert_eq!(ulaw_to_linear(0x7E), -8);
        assert_eq!(ulaw_to_linear(0xEF), 132);
        assert_eq!(ulaw_to_linear(0x0F), -16764);
    }

    #[test]
    fn alaw_decodes_to_the_standard_table() {
        assert_eq!(alaw_to_linear(0xD5), 8);
        assert_eq!(alaw_to_linear(0x55), -8);
        assert_eq!(alaw_to_linear(0xAA), 32256);
        assert_eq!(alaw_to_linear(0x2A), -32256);
        assert_eq!(alaw_to_linear(0x80), 5504);
        assert_eq!(alaw_to_linear(0x00), -5504);
    }

    #[test]
    fn decoding_is_odd_symmetric() {
        for b in 0u8..=0x7F {
            assert_eq!(ulaw_to_linear(b), -ulaw_to_linear(b | 0x80));
            assert_eq!(alaw_to_linear(b), -alaw_to_linear(b | 0x80));
        }
    }

    #[test]
    fn every_code_but_negative_zero_round_trips() {
        for b in 0u8..=0xFF {
            assert_eq!(linear_to_alaw(alaw_to_linear(b)), b, "A-law {b:#04x}");
            if b != 0x7F {
                assert_eq!(linear_to_ulaw(ulaw_to_linear(b)), b, "µ-law {b:#04x}");
            }
        }
        assert_eq!(linear_to_ulaw(i16::MAX), 0x80);
        assert_eq!(linear_to_ulaw(i16::MIN), 0x00);
        assert_eq!(linear_to_alaw(i16::MAX), 0xAA);
        assert_eq!(linear_to_alaw(i16::MIN), 0x2A);
    }
}
