//! Decoding the compressed containers (MP3, FLAC, Ogg Vorbis, Ogg Opus, WebM/Opus) from a
//! forward-only `Read`: symphonia demuxes them all and decodes MP3, FLAC and Vorbis; Opus packets
//! go to libopus (`voxmail_codecs::OpusDecoder`), since symphonia has no Opus decoder.
//!
//! Nothing here seeks: the Matroska demuxer reads Info and Tracks before the first Cluster when
//! its source is unseekable, which is how MediaRecorder writes WebM (unknown-size Segment and
//! Clusters). Things symphonia tolerates silently are checked here: Ogg page CRCs (symphonia skips
//! a bad page), and truncation of FLAC/MP3 when their headers declare a length.

use std::io::{self, Read};
use std::sync::{Arc, Mutex, PoisonError};

use symphonia::core::codecs::CodecParameters;
use symphonia::core::codecs::audio::well_known::{
    CODEC_ID_FLAC, CODEC_ID_MP3, CODEC_ID_OPUS, CODEC_ID_VORBIS,
};
use symphonia::core::codecs::audio::{AudioCodecParameters, AudioDecoder, AudioDecoderOptions};
use symphonia::core::errors::Error as SymError;
use symphonia::core::formats::{FormatOptions, FormatReader, TrackType};
use symphonia::core::io::{MediaSourceStream, MediaSourceStreamOptions, ReadOnlySource};
use symphonia::core::packet::Packet;
use voxmail_codecs::{OPUS_MAX_PACKET_SAMPLES_48K, OpusDecoder};

use super::AudioError;
use crate::domain::AudioFormat;

/// A source the demuxers can read from another thread's channel or from memory.
pub trait Source: Read + Send + Sync {}
impl<T: Read + Send + Sync> Source for T {}

/// Makes a reader that is `Send` but not `Sync` (a bridge over an async stream) a [`Source`]:
/// symphonia wants `Sync`, but it reads from one thread only, so the mutex is never contended.
pub struct SyncSource<R>(std::sync::Mutex<R>);

impl<R: Read + Send> SyncSource<R> {
    /// Wraps `r`.
    pub fn new(r: R) -> Self {
        Self(std::sync::Mutex::new(r))
    }
}

impl<R: Read + Send> Read for SyncSource<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0
            .get_mut()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .read(buf)
    }
}

/// Rates accepted from a compressed stream's header.
const RATES: std::ops::RangeInclusive<u32> = 4000..=192_000;
/// Channels accepted (mixed to mono).
const MAX_CHANNELS: usize = 8;

/// symphonia's errors, as refusals. Its `Unsupported` also comes from damaged streams (a missing
/// Segment), and the container and codec were recognised before it ran, so every error of a
/// recognised stream is `Corrupt`.
fn corrupt(e: SymError, what: &str) -> AudioError {
    match e {
        SymError::IoError(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
            AudioError::Corrupt(format!("truncated {what}: the stream ends early"))
        }
        SymError::IoError(e) if e.kind() == io::ErrorKind::InvalidData => {
            AudioError::Corrupt(format!("damaged {what}: {e}"))
        }
        SymError::IoError(e) if e.kind() == io::ErrorKind::OutOfMemory => {
            AudioError::Corrupt(format!("{what} declares an absurd size"))
        }
        other => AudioError::Corrupt(format!("damaged {what}: {other}")),
    }
}

fn name(format: AudioFormat) -> &'static str {
    match format {
        AudioFormat::Mp3 => "MP3",
        AudioFormat::Flac => "FLAC",
        AudioFormat::OggVorbis => "Ogg Vorbis",
        AudioFormat::OggOpus => "Ogg Opus",
        _ => "WebM/Opus",
    }
}

/// The fields of an OpusHead (RFC 7845 §5.1) that decoding needs.
#[derive(Debug, Clone, Copy, PartialEq)]
struct OpusHead {
    channels: u16,
    pre_skip: u64,
    /// Output gain as a linear factor.
    gain: f32,
}

fn opus_head(b: &[u8]) -> Result<OpusHead, AudioError> {
    let bad = |m: &str| AudioError::Corrupt(format!("invalid OpusHead: {m}"));
    if b.len() < 19 || &b[..8] != b"OpusHead" {
        return Err(bad("too short or no magic"));
    }
    if b[8] >> 4 != 0 {
        return Err(bad("unknown major version"));
    }
    let channels = u16::from(b[9]);
    let pre_skip = u64::from(u16::from_le_bytes([b[10], b[11]]));
    let gain_q8 = i16::from_le_bytes([b[16], b[17]]);
    let family = b[18];
    if channels == 0 {
        return Err(bad("zero channels"));
    }
    if family != 0 || channels > 2 {
        return Err(AudioError::Unsupported(format!(
            "Opus with {channels} channels (mapping family {family}) is not accepted: send mono \
             or stereo"
        )));
    }
    Ok(OpusHead {
        channels,
        pre_skip,
        gain: 10f32.powf(f32::from(gain_q8) / (20.0 * 256.0)),
    })
}

/// Ogg CRC-32 (polynomial 0x04C11DB7, no reflection, zero initial value).
const OGG_CRC_TABLE: [u32; 256] = {
    let mut t = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut r = (i as u32) << 24;
        let mut k = 0;
        while k < 8 {
            r = if r & 0x8000_0000 != 0 {
                (r << 1) ^ 0x04C1_1DB7
            } else {
                r << 1
            };
            k += 1;
        }
        t[i] = r;
        i += 1;
    }
    t
};

fn ogg_crc_update(mut crc: u32, bytes: &[u8]) -> u32 {
    for &b in bytes {
        crc = (crc << 8) ^ OGG_CRC_TABLE[((crc >> 24) as u8 ^ b) as usize];
    }
    crc
}

/// The CRC of a whole Ogg page (header, segment table and body), its CRC field taken as zero.
pub(super) fn ogg_page_crc(page: &[u8]) -> u32 {
    let head = page.len().min(22);
    let crc = ogg_crc_update(0, &page[..head]);
    let crc = ogg_crc_update(crc, &[0; 4]);
    ogg_crc_update(crc, page.get(26..).unwrap_or_default())
}

/// True when a whole Ogg page carries its own CRC.
pub(super) fn ogg_page_crc_ok(page: &[u8]) -> bool {
    page.len() >= 27
        && u32::from_le_bytes([page[22], page[23], page[24], page[25]]) == ogg_page_crc(page)
}

enum PageState {
    /// Collecting the 27-byte header plus the segment table.
    Header,
    /// Inside a page body: bytes left.
    Body(usize),
}

/// Watches an Ogg stream's pages go by and fails the read at the first page whose CRC does not
/// match, or at anything between pages that is not a page. (symphonia skips such pages.)
struct OggPageCheck<R> {
    inner: R,
    state: PageState,
    header: Vec<u8>,
    crc: u32,
    expected: u32,
}

impl<R: Read> OggPageCheck<R> {
    fn new(inner: R) -> Self {
        Self {
            inner,
            state: PageState::Header,
            header: Vec::with_capacity(27 + 255),
            crc: 0,
            expected: 0,
        }
    }

    fn crc_update(&mut self, bytes: &[u8]) {
        self.crc = ogg_crc_update(self.crc, bytes);
    }

    fn observe(&mut self, mut bytes: &[u8]) -> io::Result<()> {
        let damaged = |m: &str| io::Error::new(io::ErrorKind::InvalidData, m.to_owned());
        while !bytes.is_empty() {
            match self.state {
                PageState::Header => {
                    let want = if self.header.len() < 27 {
                        27
                    } else {
                        27 + usize::from(self.header[26])
                    };
                    let take = (want - self.header.len()).min(bytes.len());
                    self.header.extend_from_slice(&bytes[..take]);
                    bytes = &bytes[take..];
                    if self.header.len() >= 4 && &self.header[..4] != b"OggS" {
                        return Err(damaged(
                            "an Ogg page was expected (capture pattern missing)",
                        ));
                    }
                    if self.header.len() == 27 + usize::from(*self.header.get(26).unwrap_or(&0))
                        && self.header.len() >= 27
                    {
                        self.expected = u32::from_le_bytes([
                            self.header[22],
                            self.header[23],
                            self.header[24],
                            self.header[25],
                        ]);
                        let body: usize = self.header[27..].iter().map(|&s| usize::from(s)).sum();
                        let mut h = std::mem::take(&mut self.header);
                        h[22..26].fill(0);
                        self.crc = 0;
                        self.crc_update(&h);
                        h.clear();
                        self.header = h;
                        self.state = PageState::Body(body);
                        if body == 0 {
                            self.end_page()?;
                        }
                    }
                }
                PageState::Body(left) => {
                    let take = left.min(bytes.len());
                    self.crc_update(&bytes[..take]);
                    bytes = &bytes[take..];
                    self.state = PageState::Body(left - take);
                    if left == take {
                        self.end_page()?;
                    }
                }
            }
        }
        Ok(())
    }

    fn end_page(&mut self) -> io::Result<()> {
        self.state = PageState::Header;
        if self.crc != self.expected {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "an Ogg page's CRC does not match its contents",
            ));
        }
        Ok(())
    }
}

impl<R: Read> Read for OggPageCheck<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.observe(&buf[..n])?;
        Ok(n)
    }
}

/// Skips an ID3v2 tag at the start of an MP3 (symphonia's MP3 reader would otherwise hunt for a
/// frame sync inside it, where embedded pictures can fake one). The tag is read and dropped in
/// small pieces, never held.
fn skip_id3v2<R: Read>(mut r: R) -> Result<io::Chain<io::Cursor<Vec<u8>>, R>, AudioError> {
    let mut head = [0u8; 10];
    let mut got = 0;
    while got < head.len() {
        let n = r
            .read(&mut head[got..])
            .map_err(|e| AudioError::Corrupt(format!("MP3 could not be read: {e}")))?;
        if n == 0 {
            break;
        }
        got += n;
    }
    if got == 10 && &head[..3] == b"ID3" && head[6..10].iter().all(|b| b & 0x80 == 0) {
        let size = head[6..10]
            .iter()
            .fold(0u64, |acc, &b| (acc << 7) | u64::from(b));
        let footer = if head[5] & 0x10 != 0 { 10 } else { 0 };
        let skipped = io::copy(&mut (&mut r).take(size + footer), &mut io::sink())
            .map_err(|e| AudioError::Corrupt(format!("MP3 could not be read: {e}")))?;
        if skipped < size + footer {
            return Err(AudioError::Corrupt(
                "truncated MP3: the body ends inside its ID3 tag".into(),
            ));
        }
        return Ok(io::Cursor::new(Vec::new()).chain(r));
    }
    Ok(io::Cursor::new(head[..got].to_vec()).chain(r))
}

/// Where a Vorbis decoder waits between packets. Its input drops it with [`IdleRelease::release`]
/// before waiting for the client, and the next packet builds it again from the headers: a slow
/// upload then holds no codebooks (about 2 MiB) while nothing arrives, so a few hundred of them
/// do not hold hundreds of MiB.
#[derive(Clone, Default)]
pub struct IdleRelease(Arc<Mutex<Option<Box<dyn AudioDecoder>>>>);

impl IdleRelease {
    /// Drops the decoder parked here; called by the input before it waits for more bytes.
    pub fn release(&self) {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).take();
    }
}

/// A Vorbis decoder that can be dropped between packets and built again (see [`IdleRelease`]).
struct Rebuilt {
    params: AudioCodecParameters,
    live: IdleRelease,
    /// The packet decoded last: a rebuilt decoder decodes it again (and drops its output) so that
    /// the next packet overlaps with it as it would have.
    last: Option<Packet>,
    what: &'static str,
}

impl Rebuilt {
    /// Decodes `packet` to interleaved samples in `out`; returns the channel count and rate.
    fn decode(&mut self, packet: Packet, out: &mut Vec<i16>) -> Result<(usize, u32), AudioError> {
        let mut live = self.live.0.lock().unwrap_or_else(PoisonError::into_inner);
        let dec = match &mut *live {
            Some(d) => d,
            empty => {
                let mut d = vorbis_decoder(&self.params, self.what)?;
                if let Some(prev) = &self.last {
                    d.decode(prev).map_err(|e| corrupt(e, self.what))?;
                }
                empty.insert(d)
            }
        };
        let buf = dec.decode(&packet).map_err(|e| corrupt(e, self.what))?;
        let spec = (buf.spec().channels().count(), buf.spec().rate());
        buf.copy_to_vec_interleaved::<i16>(out);
        drop(live);
        self.last = Some(packet);
        Ok(spec)
    }
}

/// A Vorbis decoder for these parameters, once their setup is known to unpack to a sane size.
fn vorbis_decoder(
    params: &AudioCodecParameters,
    what: &'static str,
) -> Result<Box<dyn AudioDecoder>, AudioError> {
    super::vorbis::check_setup(params.extra_data.as_deref().unwrap_or_default())?;
    symphonia::default::get_codecs()
        .make_audio_decoder(params, &AudioDecoderOptions::default())
        .map_err(|e| corrupt(e, what))
}

enum Codec {
    Symphonia(Box<dyn AudioDecoder>),
    Vorbis(Box<Rebuilt>),
    Opus {
        dec: OpusDecoder,
        head: OpusHead,
        /// Pre-skip samples (per channel) still to drop.
        skip: u64,
        buf: Vec<i16>,
    },
}

/// A streaming decoder of one compressed container: mono 16-bit chunks at the source rate.
pub struct CompressedDecoder<'a> {
    what: &'static str,
    reader: Box<dyn FormatReader + 'a>,
    track_id: u32,
    codec: Codec,
    rate: u32,
    channels: u16,
    /// Frames the header declares (FLAC STREAMINFO, MP3 Xing/LAME), to tell truncation.
    declared_frames: Option<u64>,
    /// How many frames short of the declared length still counts as whole (one MP3 frame).
    slack: u64,
    decoded: u64,
    interleaved: Vec<i16>,
    /// An unexpected EOF is the end of the stream (WebM).
    eof_ends: bool,
}

impl<'a> CompressedDecoder<'a> {
    /// Opens a stream of `format` (one of the compressed formats).
    pub fn new(format: AudioFormat, src: impl Source + 'a) -> Result<Self, AudioError> {
        let what = name(format);
        let opts = FormatOptions::default();
        let mss_opts = MediaSourceStreamOptions::default();
        let stream =
            |s: Box<dyn symphonia::core::io::MediaSource + 'a>| MediaSourceStream::new(s, mss_opts);
        let reader: Box<dyn FormatReader + 'a> = match format {
            AudioFormat::Mp3 => {
                let src = skip_id3v2(src)?;
                Box::new(
                    symphonia::default::formats::MpaReader::try_new(
                        stream(Box::new(ReadOnlySource::new(src))),
                        opts,
                    )
                    .map_err(|e| corrupt(e, what))?,
                )
            }
            AudioFormat::Flac => Box::new(
                symphonia::default::formats::FlacReader::try_new(
                    stream(Box::new(ReadOnlySource::new(src))),
                    opts,
                )
                .map_err(|e| corrupt(e, what))?,
            ),
            AudioFormat::OggVorbis | AudioFormat::OggOpus => Box::new(
                symphonia::default::formats::OggReader::try_new(
                    stream(Box::new(ReadOnlySource::new(OggPageCheck::new(src)))),
                    opts,
                )
                .map_err(|e| corrupt(e, what))?,
            ),
            AudioFormat::WebmOpus => Box::new(
                symphonia::default::formats::MkvReader::try_new(
                    stream(Box::new(ReadOnlySource::new(src))),
                    opts,
                )
                .map_err(|e| corrupt(e, what))?,
            ),
            other => {
                return Err(AudioError::Corrupt(format!(
                    "{} is not a compressed format",
                    other.as_str()
                )));
            }
        };
        Self::with_reader(format, what, reader)
    }

    fn with_reader(
        format: AudioFormat,
        what: &'static str,
        reader: Box<dyn FormatReader + 'a>,
    ) -> Result<Self, AudioError> {
        let track = reader
            .default_track(TrackType::Audio)
            .ok_or_else(|| AudioError::Corrupt(format!("{what} holds no audio track")))?;
        let track_id = track.id;
        let params: AudioCodecParameters = match &track.codec_params {
            Some(CodecParameters::Audio(p)) => p.clone(),
            _ => {
                return Err(AudioError::Corrupt(format!("{what} holds no audio track")));
            }
        };
        let expected = match format {
            AudioFormat::Mp3 => CODEC_ID_MP3,
            AudioFormat::Flac => CODEC_ID_FLAC,
            AudioFormat::OggVorbis => CODEC_ID_VORBIS,
            _ => CODEC_ID_OPUS,
        };
        if params.codec != expected {
            return Err(AudioError::Unsupported(format!(
                "this {} holds another codec than {}: not accepted",
                if format == AudioFormat::WebmOpus {
                    "WebM/Matroska file"
                } else {
                    what
                },
                format.codec()
            )));
        }
        let (declared_frames, slack) = match format {
            AudioFormat::Flac => (track.num_frames.filter(|&n| n > 0), 0),
            AudioFormat::Mp3 => (track.num_frames.filter(|&n| n > 0), 1152),
            _ => (None, 0),
        };
        let (codec, rate, channels) = if expected == CODEC_ID_OPUS {
            let extra = params
                .extra_data
                .as_deref()
                .ok_or_else(|| AudioError::Corrupt(format!("{what} has no OpusHead")))?;
            let head = opus_head(extra)?;
            let dec = OpusDecoder::new(48000, head.channels)
                .map_err(|e| AudioError::Corrupt(format!("{what}: {e}")))?;
            let codec = Codec::Opus {
                dec,
                head,
                skip: head.pre_skip,
                buf: vec![0; OPUS_MAX_PACKET_SAMPLES_48K * usize::from(head.channels)],
            };
            (codec, 48000, head.channels)
        } else {
            let rate = params
                .sample_rate
                .ok_or_else(|| AudioError::Corrupt(format!("{what} declares no sample rate")))?;
            if !RATES.contains(&rate) {
                return Err(AudioError::Corrupt(format!(
                    "{what} declares a sample rate of {rate} Hz"
                )));
            }
            let channels = params.channels.as_ref().map_or(0, |c| c.count());
            if !(1..=MAX_CHANNELS).contains(&channels) {
                return Err(AudioError::Corrupt(format!(
                    "{what} declares {channels} channels"
                )));
            }
            let codec = if expected == CODEC_ID_VORBIS {
                let live = IdleRelease::default();
                *live.0.lock().unwrap_or_else(PoisonError::into_inner) =
                    Some(vorbis_decoder(&params, what)?);
                Codec::Vorbis(Box::new(Rebuilt {
                    params,
                    live,
                    last: None,
                    what,
                }))
            } else {
                let dec = symphonia::default::get_codecs()
                    .make_audio_decoder(&params, &AudioDecoderOptions::default())
                    .map_err(|e| corrupt(e, what))?;
                Codec::Symphonia(dec)
            };
            (codec, rate, channels as u16)
        };
        Ok(Self {
            what,
            reader,
            track_id,
            codec,
            rate,
            channels,
            declared_frames,
            slack,
            decoded: 0,
            interleaved: Vec::new(),
            eof_ends: format == AudioFormat::WebmOpus,
        })
    }

    /// Output sample rate (48 kHz for Opus).
    pub fn rate(&self) -> u32 {
        self.rate
    }

    /// Parks a Vorbis decoder in `idle` from now on, so that whoever holds it can drop the
    /// decoder while the input waits (other codecs keep theirs: their state is small).
    pub fn release_when_idle(&mut self, idle: &IdleRelease) {
        if let Codec::Vorbis(v) = &mut self.codec {
            let dec = v
                .live
                .0
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take();
            *idle.0.lock().unwrap_or_else(PoisonError::into_inner) = dec;
            v.live = idle.clone();
        }
    }

    /// Channels of the source (the output is mono).
    pub fn channels(&self) -> u16 {
        self.channels
    }

    /// The next piece of mono audio; `Ok(None)` at the end.
    pub fn next_chunk(&mut self) -> Result<Option<Vec<i16>>, AudioError> {
        loop {
            let packet = match self.reader.next_packet() {
                Ok(Some(p)) => p,
                Ok(None) => {
                    return self.at_end().map(|()| None);
                }
                // Unseekable, the Matroska demuxer cannot know where the document ends, so every
                // WebM ends with an unexpected EOF; a recording cut mid-block (a browser stopped
                // mid-write) keeps what arrived whole, as ffmpeg does.
                Err(SymError::IoError(e))
                    if self.eof_ends && e.kind() == io::ErrorKind::UnexpectedEof =>
                {
                    return self.at_end().map(|()| None);
                }
                Err(e) => return Err(corrupt(e, self.what)),
            };
            if packet.track_id != self.track_id {
                continue;
            }
            let mono = match &mut self.codec {
                Codec::Symphonia(dec) => {
                    let buf = dec.decode(&packet).map_err(|e| corrupt(e, self.what))?;
                    let spec = (buf.spec().channels().count(), buf.spec().rate());
                    buf.copy_to_vec_interleaved::<i16>(&mut self.interleaved);
                    self.checked_mix(spec)?
                }
                Codec::Vorbis(v) => {
                    let spec = v.decode(packet, &mut self.interleaved)?;
                    self.checked_mix(spec)?
                }
                Codec::Opus {
                    dec,
                    head,
                    skip,
                    buf,
                } => {
                    let n = dec.decode(&packet.data, buf).map_err(|e| {
                        AudioError::Corrupt(format!("{}: an undecodable packet ({e})", self.what))
                    })?;
                    let ch = usize::from(head.channels);
                    let mut frames = &buf[..n * ch];
                    let drop_start = (*skip).min(n as u64) as usize;
                    *skip -= drop_start as u64;
                    frames = &frames[drop_start * ch..];
                    // The demuxer computes the end trim from the last page's granule position.
                    let trim_end = (packet.trim_end.get() as usize).min(frames.len() / ch);
                    frames = &frames[..frames.len() - trim_end * ch];
                    mix(frames, ch, head.gain)
                }
            };
            self.decoded += mono.len() as u64;
            if !mono.is_empty() {
                return Ok(Some(mono));
            }
        }
    }

    /// Mixes what a symphonia decoder produced (`channels`, `rate`) to mono, once it matches the
    /// stream's header.
    fn checked_mix(&self, (channels, rate): (usize, u32)) -> Result<Vec<i16>, AudioError> {
        if channels != usize::from(self.channels) {
            return Err(AudioError::Corrupt(format!(
                "{} declares {} channels but decodes to {channels}",
                self.what, self.channels
            )));
        }
        if rate != self.rate {
            return Err(AudioError::Corrupt(format!(
                "{} changes its sample rate mid-stream",
                self.what
            )));
        }
        Ok(mix(&self.interleaved, channels, 1.0))
    }

    fn at_end(&self) -> Result<(), AudioError> {
        if let Some(declared) = self.declared_frames
            && self.decoded + self.slack < declared
        {
            return Err(AudioError::Corrupt(format!(
                "truncated {}: the header declares {declared} samples but only {} decode",
                self.what, self.decoded
            )));
        }
        Ok(())
    }
}

/// Averages interleaved channels to mono, applying `gain`.
fn mix(interleaved: &[i16], channels: usize, gain: f32) -> Vec<i16> {
    let channels = channels.max(1);
    interleaved
        .chunks_exact(channels)
        .map(|f| {
            let sum: i32 = f.iter().map(|&s| i32::from(s)).sum();
            let avg = sum / channels as i32;
            if gain == 1.0 {
                avg as i16
            } else {
                (avg as f32 * gain).clamp(-32768.0, 32767.0) as i16
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(header_type: u8, granule: u64, seq: u32, packet: &[u8]) -> Vec<u8> {
        let mut p = b"OggS".to_vec();
        p.push(0);
        p.push(header_type);
        p.extend_from_slice(&granule.to_le_bytes());
        p.extend_from_slice(&7u32.to_le_bytes());
        p.extend_from_slice(&seq.to_le_bytes());
        p.extend_from_slice(&[0; 4]);
        let mut segs = vec![255u8; packet.len() / 255];
        segs.push((packet.len() % 255) as u8);
        p.push(segs.len() as u8);
        p.extend_from_slice(&segs);
        p.extend_from_slice(packet);
        let crc = ogg_crc_update(0, &p);
        p[22..26].copy_from_slice(&crc.to_le_bytes());
        assert!(ogg_page_crc_ok(&p));
        p
    }

    #[test]
    fn ogg_page_check_passes_good_pages_and_stops_at_a_bad_crc() {
        let mut good = page(2, 0, 0, b"OpusHead-ish packet");
        good.extend(page(0, 0, 1, &[7u8; 600]));
        let mut out = Vec::new();
        OggPageCheck::new(good.as_slice())
            .read_to_end(&mut out)
            .unwrap();
        assert_eq!(out, good);
        let mut bad = good.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        let err = OggPageCheck::new(bad.as_slice())
            .read_to_end(&mut Vec::new())
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        let mut junk = good.clone();
        junk.extend_from_slice(b"not a page");
        assert!(
            OggPageCheck::new(junk.as_slice())
                .read_to_end(&mut Vec::new())
                .is_err()
        );
    }

    fn fixture(name: &str) -> Vec<u8> {
        std::fs::read(format!("{}/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
    }

    fn all_samples(mut d: CompressedDecoder<'_>) -> Vec<i16> {
        let mut out = Vec::new();
        while let Some(c) = d.next_chunk().unwrap() {
            out.extend(c);
        }
        out
    }

    /// Hands out a few bytes per read and drops the parked decoder before each, as the upload
    /// channel does whenever it waits for the client.
    struct Trickle<'a> {
        data: &'a [u8],
        idle: IdleRelease,
    }

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            self.idle.release();
            let n = buf.len().min(self.data.len()).min(700);
            buf[..n].copy_from_slice(&self.data[..n]);
            self.data = &self.data[n..];
            Ok(n)
        }
    }

    #[test]
    fn a_vorbis_decoder_dropped_between_reads_decodes_the_same_samples() {
        for name in ["hello.ogg", "hello-44k-stereo.ogg"] {
            let data = fixture(name);
            let whole = all_samples(
                CompressedDecoder::new(AudioFormat::OggVorbis, data.as_slice()).unwrap(),
            );
            let idle = IdleRelease::default();
            let src = Trickle {
                data: &data,
                idle: idle.clone(),
            };
            let mut d = CompressedDecoder::new(AudioFormat::OggVorbis, src).unwrap();
            d.release_when_idle(&idle);
            let mut rebuilt = Vec::new();
            let mut parked = 0;
            while let Some(c) = d.next_chunk().unwrap() {
                rebuilt.extend(c);
                parked += usize::from(idle.0.lock().unwrap().is_some());
            }
            assert!(whole.len() > 16000, "{name}: {}", whole.len());
            assert_eq!(rebuilt, whole, "{name}");
            assert!(
                parked > 10,
                "{name}: the decoder was never parked in the handle"
            );
        }
    }

    #[test]
    fn a_vorbis_codebook_bomb_is_refused_before_a_decoder_is_built() {
        let e = CompressedDecoder::new(
            AudioFormat::OggVorbis,
            fixture("vorbis-codebook-bomb.ogg").as_slice(),
        )
        .err()
        .unwrap();
        assert!(
            matches!(&e, AudioError::Unsupported(m) if m.contains("decoder memory")),
            "{e:?}"
        );
    }

    #[test]
    fn opus_head_is_read_and_checked() {
        let mut h = b"OpusHead".to_vec();
        h.extend_from_slice(&[1, 2, 0x38, 0x01, 0x80, 0xBB, 0, 0, 0, 0, 0]);
        let head = opus_head(&h).unwrap();
        assert_eq!((head.channels, head.pre_skip, head.gain), (2, 312, 1.0));
        h[9] = 6;
        h[18] = 1;
        assert!(matches!(opus_head(&h), Err(AudioError::Unsupported(_))));
        assert!(matches!(opus_head(&h[..10]), Err(AudioError::Corrupt(_))));
        h[9] = 0;
        h[18] = 0;
        assert!(matches!(opus_head(&h), Err(AudioError::Corrupt(_))));
    }

    #[test]
    fn an_id3_tag_is_skipped_and_anything_else_is_kept() {
        let mut tagged = b"ID3\x04\x00\x00\x00\x00\x00\x05hello".to_vec();
        tagged.extend_from_slice(b"\xFF\xFBrest");
        let mut out = Vec::new();
        skip_id3v2(tagged.as_slice())
            .unwrap()
            .read_to_end(&mut out)
            .unwrap();
        assert_eq!(out, b"\xFF\xFBrest");
        let mut out = Vec::new();
        skip_id3v2(&b"\xFF\xFB\x90\x64"[..])
            .unwrap()
            .read_to_end(&mut out)
            .unwrap();
        assert_eq!(out, b"\xFF\xFB\x90\x64");
        assert!(skip_id3v2(&b"ID3\x04\x00\x00\x00\x00\x01\x00short"[..]).is_err());
    }
}
