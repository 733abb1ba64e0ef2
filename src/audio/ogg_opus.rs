//! Ogg Opus (RFC 7845) from mono 16-bit PCM: OpusHead alone on the first page, OpusTags alone on
//! the second, 40 ms VOIP-mode packets, granule positions in 48 kHz samples, an EOS page whose
//! granule trims the encoder's padding.

use std::io::Write;

use ogg::writing::{PacketWriteEndInfo, PacketWriter};
use voxmail_codecs::OpusEncoder;

use super::AudioError;
use super::probe::write_failed;

/// Rates libopus takes as input; anything else is resampled to 48 kHz first.
pub const OPUS_RATES: [u32; 5] = [8000, 12000, 16000, 24000, 48000];
/// A fixed stream serial: renditions are byte-for-byte reproducible.
const SERIAL: u32 = 0x766f_786d;
/// Audio per packet. 40 ms rather than the usual 20: a voicemail is never played live, and at
/// 16 kbit/s the longer frames spend fewer bits on packet overhead — +0.01–0.05 PESQ MOS on every
/// speech sample of bench/pesq.sh, and 2–3 % smaller files.
pub(crate) const FRAME_MS: u32 = 40;
/// Granule positions (48 kHz samples) per packet.
pub(crate) const GRANULES_PER_PACKET: u64 = 48 * FRAME_MS as u64;
/// Packets per Ogg page (one second), so players can seek without huge pages.
pub(crate) const PACKETS_PER_PAGE: u64 = 1000 / FRAME_MS as u64;

fn failed(e: impl std::fmt::Display) -> AudioError {
    AudioError::Corrupt(format!("Opus encoding failed: {e}"))
}

/// A streaming Ogg Opus encoder: [`OggOpusEncoder::push`] samples (at `rate`, one of
/// [`OPUS_RATES`]) as they come, then [`OggOpusEncoder::finish`]. Memory: one frame of samples,
/// one packet held back (the last one must end the stream, and which one is last is only known at
/// the end) and one Ogg page.
pub struct OggOpusEncoder {
    enc: OpusEncoder,
    /// Pages are built here and moved to the caller's writer after every packet.
    pages: PacketWriter<'static, Vec<u8>>,
    frame: Vec<i16>,
    frame_len: usize,
    lookahead: u64,
    /// 48 kHz samples per input sample.
    scale: u64,
    pre_skip: u16,
    /// The last packet encoded, not yet written.
    held: Option<Vec<u8>>,
    packet: Vec<u8>,
    /// Packets written, frames encoded, samples pushed.
    written: u64,
    encoded: u64,
    samples: u64,
}

impl OggOpusEncoder {
    /// Starts a stream at `bitrate` bit/s and libopus `complexity` (0–10); `input_rate` is
    /// recorded in OpusHead as the original recording's rate. The two header pages are written
    /// with the first push (or at `finish`).
    pub fn new(
        rate: u32,
        bitrate: u32,
        complexity: u8,
        input_rate: u32,
    ) -> Result<Self, AudioError> {
        let enc = OpusEncoder::new(
            rate,
            i32::try_from(bitrate).map_err(failed)?,
            i32::from(complexity),
        )
        .map_err(failed)?;
        let lookahead = u64::from(enc.lookahead().map_err(failed)?);
        let scale = u64::from(48000 / rate);
        let pre_skip = u16::try_from(lookahead * scale).map_err(failed)?;
        let frame_len = (rate / 1000 * FRAME_MS) as usize;

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

        let mut pages = PacketWriter::new(Vec::with_capacity(8192));
        pages
            .write_packet(head, SERIAL, PacketWriteEndInfo::EndPage, 0)
            .map_err(failed)?;
        pages
            .write_packet(tags, SERIAL, PacketWriteEndInfo::EndPage, 0)
            .map_err(failed)?;
        Ok(Self {
            enc,
            pages,
            frame: Vec::with_capacity(frame_len),
            frame_len,
            lookahead,
            scale,
            pre_skip,
            held: None,
            packet: vec![0u8; 4000],
            written: 0,
            encoded: 0,
            samples: 0,
        })
    }

    /// Encodes the next samples, writing every page that is complete to `out`.
    pub fn push(&mut self, samples: &[i16], out: &mut impl Write) -> Result<(), AudioError> {
        self.samples += samples.len() as u64;
        let mut samples = samples;
        while !samples.is_empty() {
            let take = (self.frame_len - self.frame.len()).min(samples.len());
            self.frame.extend_from_slice(&samples[..take]);
            samples = &samples[take..];
            if self.frame.len() == self.frame_len {
                self.encode_frame()?;
            }
        }
        self.drain(out)
    }

    /// Pads the stream by the encoder's lookahead (so the last real sample leaves the encoder)
    /// and writes the last packet on an end-of-stream page whose granule trims that padding.
    pub fn finish(mut self, out: &mut impl Write) -> Result<(), AudioError> {
        let frames = (self.samples + self.lookahead)
            .div_ceil(self.frame_len as u64)
            .max(1);
        while self.encoded < frames {
            self.frame.resize(self.frame_len, 0);
            self.encode_frame()?;
        }
        let final_granule = u64::from(self.pre_skip) + self.samples * self.scale;
        if let Some(last) = self.held.take() {
            self.write_packet(last, Some(final_granule))?;
        }
        self.drain(out)
    }

    /// Encodes the full frame and writes the packet held before it (which is not the last).
    fn encode_frame(&mut self) -> Result<(), AudioError> {
        let n = self
            .enc
            .encode(&self.frame, &mut self.packet)
            .map_err(failed)?;
        self.frame.clear();
        self.encoded += 1;
        if let Some(prev) = self.held.replace(self.packet[..n].to_vec()) {
            self.write_packet(prev, None)?;
        }
        Ok(())
    }

    /// Writes packet number `self.written`; `last` carries the end-of-stream granule.
    fn write_packet(&mut self, packet: Vec<u8>, last: Option<u64>) -> Result<(), AudioError> {
        let i = self.written;
        let (info, granule) = match last {
            Some(g) => (PacketWriteEndInfo::EndStream, g),
            None if (i + 1).is_multiple_of(PACKETS_PER_PAGE) => {
                (PacketWriteEndInfo::EndPage, (i + 1) * GRANULES_PER_PACKET)
            }
            None => (
                PacketWriteEndInfo::NormalPacket,
                (i + 1) * GRANULES_PER_PACKET,
            ),
        };
        self.pages
            .write_packet(packet, SERIAL, info, granule)
            .map_err(failed)?;
        self.written += 1;
        Ok(())
    }

    fn drain(&mut self, out: &mut impl Write) -> Result<(), AudioError> {
        let buf = self.pages.inner_mut();
        if !buf.is_empty() {
            out.write_all(buf).map_err(write_failed)?;
            buf.clear();
        }
        Ok(())
    }
}

/// Encodes `samples` (at `rate`, one of [`OPUS_RATES`]) as Ogg Opus at `bitrate` bit/s and
/// libopus `complexity` (0–10). `input_rate` is recorded in OpusHead as the original recording's
/// rate.
pub fn encode(
    samples: &[i16],
    rate: u32,
    bitrate: u32,
    complexity: u8,
    input_rate: u32,
) -> Result<Vec<u8>, AudioError> {
    let mut out = Vec::with_capacity(samples.len() / 4 + 4096);
    let mut e = OggOpusEncoder::new(rate, bitrate, complexity, input_rate)?;
    e.push(samples, &mut out)?;
    e.finish(&mut out)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_sit_alone_on_the_first_two_pages_and_the_last_page_ends_the_stream() {
        let samples: Vec<i16> = (0..8000).map(|i| ((i % 40) * 500 - 10000) as i16).collect();
        let ogg = encode(&samples, 8000, 16000, 5, 8000).unwrap();
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
