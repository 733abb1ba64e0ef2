//! Ogg Opus (RFC 7845) from mono 16-bit PCM: OpusHead alone on the first page, OpusTags alone on
//! the second, 20 ms VOIP-mode packets, granule positions in 48 kHz samples, an EOS page whose
//! granule trims the encoder's padding.

use ogg::writing::{PacketWriteEndInfo, PacketWriter};
use voxmail_codecs::OpusEncoder;

use super::AudioError;

/// Rates libopus takes as input; anything else is resampled to 48 kHz first.
pub const OPUS_RATES: [u32; 5] = [8000, 12000, 16000, 24000, 48000];
/// A fixed stream serial: renditions are byte-for-byte reproducible.
const SERIAL: u32 = 0x766f_786d;
/// Packets per Ogg page (one second), so players can seek without huge pages.
const PACKETS_PER_PAGE: usize = 50;

fn failed(e: impl std::fmt::Display) -> AudioError {
    AudioError::Corrupt(format!("Opus encoding failed: {e}"))
}

/// Encodes `samples` (at `rate`, one of [`OPUS_RATES`]) as Ogg Opus at `bitrate` bit/s.
/// `input_rate` is recorded in OpusHead as the original recording's rate.
pub fn encode(
    samples: &[i16],
    rate: u32,
    bitrate: u32,
    input_rate: u32,
) -> Result<Vec<u8>, AudioError> {
    let mut enc =
        OpusEncoder::new(rate, i32::try_from(bitrate).map_err(failed)?).map_err(failed)?;
    let lookahead = enc.lookahead().map_err(failed)? as usize;
    let scale = (48000 / rate) as u64;
    let pre_skip = u16::try_from(lookahead as u64 * scale).map_err(failed)?;
    let frame = (rate / 50) as usize;
    // Pad by the lookahead so the last real sample leaves the encoder.
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

    let mut w = PacketWriter::new(Vec::with_capacity(samples.len() / 4 + 4096));
    w.write_packet(head, SERIAL, PacketWriteEndInfo::EndPage, 0)
        .map_err(failed)?;
    w.write_packet(tags, SERIAL, PacketWriteEndInfo::EndPage, 0)
        .map_err(failed)?;
    let mut pcm = vec![0i16; frame];
    let mut packet = vec![0u8; 4000];
    for i in 0..frames {
        let start = (i * frame).min(samples.len());
        let end = ((i + 1) * frame).min(samples.len());
        pcm.fill(0);
        pcm[..end - start].copy_from_slice(&samples[start..end]);
        let n = enc.encode(&pcm, &mut packet).map_err(failed)?;
        let last = i + 1 == frames;
        let (info, granule) = if last {
            (PacketWriteEndInfo::EndStream, final_granule)
        } else if (i + 1) % PACKETS_PER_PAGE == 0 {
            (PacketWriteEndInfo::EndPage, (i as u64 + 1) * 960)
        } else {
            (PacketWriteEndInfo::NormalPacket, (i as u64 + 1) * 960)
        };
        w.write_packet(packet[..n].to_vec(), SERIAL, info, granule)
            .map_err(failed)?;
    }
    Ok(w.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_sit_alone_on_the_first_two_pages_and_the_last_page_ends_the_stream() {
        let samples: Vec<i16> = (0..8000).map(|i| ((i % 40) * 500 - 10000) as i16).collect();
        let ogg = encode(&samples, 8000, 16000, 8000).unwrap();
        // Page 1: flags BOS, granule 0, one segment of 19 bytes holding OpusHead.
        assert_eq!(&ogg[0..4], b"OggS");
        assert_eq!(ogg[5], 0x02);
        assert_eq!(ogg[26], 1);
        assert_eq!(ogg[27], 19);
        assert_eq!(&ogg[28..36], b"OpusHead");
        let pre_skip = u16::from_le_bytes([ogg[38], ogg[39]]);
        assert!(pre_skip > 0);
        // Page 2 starts right after and holds OpusTags only.
        let p2 = 28 + 19;
        assert_eq!(&ogg[p2..p2 + 4], b"OggS");
        assert_eq!(ogg[p2 + 26], 1);
        assert_eq!(&ogg[p2 + 28..p2 + 36], b"OpusTags");
        // The last page has EOS and the trimmed granule.
        let last = ogg.windows(4).rposition(|w| w == b"OggS").unwrap();
        assert_eq!(ogg[last + 5] & 0x04, 0x04);
        let g = u64::from_le_bytes(ogg[last + 6..last + 14].try_into().unwrap());
        assert_eq!(g, u64::from(pre_skip) + 48000);
    }
}
