//! Recordings made by the tests themselves: G.711 and PCM WAVs of a known signal.

/// A G.711 µ-law encoder (ITU-T G.711, as every PBX implements it).
pub fn linear_to_ulaw(sample: i16) -> u8 {
    const BIAS: i32 = 0x84;
    const CLIP: i32 = 32635;
    let mut s = i32::from(sample);
    let sign = if s < 0 { 0x80 } else { 0 };
    if s < 0 {
        s = -s;
    }
    s = s.min(CLIP) + BIAS;
    let mut exponent = 7;
    let mut mask = 0x4000;
    while exponent > 0 && s & mask == 0 {
        exponent -= 1;
        mask >>= 1;
    }
    let mantissa = (s >> (exponent + 3)) & 0x0F;
    !(sign | (exponent << 4) | mantissa) as u8
}

/// A G.711 A-law encoder.
pub fn linear_to_alaw(sample: i16) -> u8 {
    let mut s = i32::from(sample) >> 3;
    let sign = if s >= 0 { 0x80 } else { 0 };
    if s < 0 {
        s = -s - 1;
    }
    let seg_end = [0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF];
    let seg = seg_end.iter().position(|&e| s <= e).unwrap_or(8) as i32;
    let a = if seg >= 8 {
        0x7F
    } else {
        let shift = if seg < 2 { 1 } else { seg };
        (seg << 4) | ((s >> shift) & 0x0F)
    };
    ((a | sign) ^ 0x55) as u8
}

/// `secs` seconds of a 440 Hz tone with a slow sweep, 16-bit samples at `rate`.
pub fn tone(secs: f64, rate: u32) -> Vec<i16> {
    let n = (secs * f64::from(rate)) as usize;
    (0..n)
        .map(|i| {
            let t = i as f64 / f64::from(rate);
            let f = 440.0 + 200.0 * (t * 0.5).sin();
            (8000.0 * (2.0 * std::f64::consts::PI * f * t).sin()) as i16
        })
        .collect()
}

fn wav(tag: u16, rate: u32, bits: u16, fmt_size: u32, data: &[u8]) -> Vec<u8> {
    let block = bits / 8;
    let mut v = Vec::with_capacity(data.len() + 60);
    v.extend_from_slice(b"RIFF");
    let extra = fmt_size - 16;
    v.extend_from_slice(&(4 + 8 + fmt_size + 8 + data.len() as u32).to_le_bytes());
    v.extend_from_slice(b"WAVE");
    v.extend_from_slice(b"fmt ");
    v.extend_from_slice(&fmt_size.to_le_bytes());
    v.extend_from_slice(&tag.to_le_bytes());
    v.extend_from_slice(&1u16.to_le_bytes());
    v.extend_from_slice(&rate.to_le_bytes());
    v.extend_from_slice(&(rate * u32::from(block)).to_le_bytes());
    v.extend_from_slice(&block.to_le_bytes());
    v.extend_from_slice(&bits.to_le_bytes());
    if extra >= 2 {
        v.extend_from_slice(&0u16.to_le_bytes());
        v.extend(std::iter::repeat_n(0u8, extra as usize - 2));
    }
    v.extend_from_slice(b"data");
    v.extend_from_slice(&(data.len() as u32).to_le_bytes());
    v.extend_from_slice(data);
    v
}

pub fn raw_ulaw(secs: f64) -> Vec<u8> {
    tone(secs, 8000).into_iter().map(linear_to_ulaw).collect()
}

pub fn raw_alaw(secs: f64) -> Vec<u8> {
    tone(secs, 8000).into_iter().map(linear_to_alaw).collect()
}

/// µ-law WAV with an 18-byte fmt chunk (as Asterisk and sox write it).
pub fn wav_ulaw(secs: f64) -> Vec<u8> {
    wav(7, 8000, 8, 18, &raw_ulaw(secs))
}

/// µ-law WAV with a 16-byte fmt chunk (common in the wild).
pub fn wav_ulaw_fmt16(secs: f64) -> Vec<u8> {
    wav(7, 8000, 8, 16, &raw_ulaw(secs))
}

pub fn wav_alaw(secs: f64) -> Vec<u8> {
    wav(6, 8000, 8, 18, &raw_alaw(secs))
}

pub fn wav_pcm16(secs: f64, rate: u32) -> Vec<u8> {
    let data: Vec<u8> = tone(secs, rate)
        .into_iter()
        .flat_map(i16::to_le_bytes)
        .collect();
    wav(1, rate, 16, 16, &data)
}

pub fn sha256_hex(b: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(b))
}
