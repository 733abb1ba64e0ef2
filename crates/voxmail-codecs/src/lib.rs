//! The only `unsafe` in voxmail: safe, owning wrappers over the two codec libraries it calls.
//!
//! - GSM 06.10 through `gsm-sys` (the C libgsm, built with `-DWAV49`, see `.cargo/config.toml`).
//! - Opus through `unsafe-libopus` (libopus 1.3.1 translated to Rust; its functions take raw
//!   pointers, so they are `unsafe fn` even though no C is involved).
//!
//! Each wrapper owns its state pointer exclusively, checks every length before handing a buffer
//! over, and frees the state on drop. voxmail itself keeps `#![forbid(unsafe_code)]`.
#![deny(unsafe_op_in_unsafe_fn)]

use std::ptr::NonNull;

/// Samples in one GSM 06.10 frame (20 ms at 8 kHz).
pub const GSM_FRAME_SAMPLES: usize = 160;
/// Bytes of one plain GSM 06.10 frame.
pub const GSM_FRAME_BYTES: usize = 33;
/// Bytes of one WAV49 block (two frames packed into 65 bytes).
pub const WAV49_BLOCK_BYTES: usize = 65;

fn gsm_state(wav49: bool) -> Option<NonNull<gsm_sys::GsmState>> {
    // SAFETY: gsm_create allocates a fresh state or returns null.
    let h = NonNull::new(unsafe { gsm_sys::gsm_create() })?;
    if wav49 {
        let mut one: std::os::raw::c_int = 1;
        // SAFETY: h is a live state; the option value is read through a valid pointer.
        unsafe { gsm_sys::gsm_option(h.as_ptr(), gsm_sys::GSM_OPT_WAV49 as i32, &mut one) };
    }
    Some(h)
}

/// A GSM 06.10 encoder, plain (33-byte frames) or WAV49 (pairs of frames in 65 bytes).
pub struct GsmEncoder {
    h: NonNull<gsm_sys::GsmState>,
    wav49: bool,
    first_of_pair: bool,
}

impl GsmEncoder {
    /// A new encoder; `None` if libgsm cannot allocate its state.
    pub fn new(wav49: bool) -> Option<Self> {
        Some(Self {
            h: gsm_state(wav49)?,
            wav49,
            first_of_pair: true,
        })
    }

    /// Encodes one 160-sample frame and appends its bytes to `out`: 33 bytes, or in WAV49 mode
    /// 32 for the first frame of a pair and 33 for the second.
    pub fn encode_frame(&mut self, pcm: &[i16; GSM_FRAME_SAMPLES], out: &mut Vec<u8>) {
        let mut signal = *pcm;
        let mut frame = [0u8; GSM_FRAME_BYTES];
        // SAFETY: the state is live; libgsm reads 160 samples and writes at most 33 bytes.
        unsafe { gsm_sys::gsm_encode(self.h.as_ptr(), signal.as_mut_ptr(), frame.as_mut_ptr()) };
        let n = if self.wav49 && self.first_of_pair {
            GSM_FRAME_BYTES - 1
        } else {
            GSM_FRAME_BYTES
        };
        if self.wav49 {
            self.first_of_pair = !self.first_of_pair;
        }
        out.extend_from_slice(&frame[..n]);
    }
}

impl Drop for GsmEncoder {
    fn drop(&mut self) {
        // SAFETY: the state came from gsm_create and is destroyed once.
        unsafe { gsm_sys::gsm_destroy(self.h.as_ptr()) };
    }
}

/// A GSM 06.10 decoder, plain or WAV49.
pub struct GsmDecoder {
    h: NonNull<gsm_sys::GsmState>,
}

impl GsmDecoder {
    /// A new decoder; `None` if libgsm cannot allocate its state.
    pub fn new(wav49: bool) -> Option<Self> {
        Some(Self {
            h: gsm_state(wav49)?,
        })
    }

    /// Decodes one frame (33 bytes; in WAV49 mode a 65-byte block is decoded as its first 33
    /// bytes, then its last 32). Returns `None` for a frame libgsm refuses.
    pub fn decode_frame(&mut self, frame: &[u8]) -> Option<[i16; GSM_FRAME_SAMPLES]> {
        let mut buf = [0u8; GSM_FRAME_BYTES];
        let n = frame.len().min(GSM_FRAME_BYTES);
        buf[..n].copy_from_slice(&frame[..n]);
        let mut pcm = [0i16; GSM_FRAME_SAMPLES];
        // SAFETY: the state is live; libgsm reads at most 33 bytes and writes 160 samples.
        let rc =
            unsafe { gsm_sys::gsm_decode(self.h.as_ptr(), buf.as_mut_ptr(), pcm.as_mut_ptr()) };
        (rc == 0).then_some(pcm)
    }
}

impl Drop for GsmDecoder {
    fn drop(&mut self) {
        // SAFETY: the state came from gsm_create and is destroyed once.
        unsafe { gsm_sys::gsm_destroy(self.h.as_ptr()) };
    }
}

/// An Opus encoder (mono, VOIP application, 16-bit input).
pub struct OpusEncoder {
    st: NonNull<unsafe_libopus::OpusEncoder>,
    rate: u32,
}

/// A libopus error code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpusError(pub i32);

impl std::fmt::Display for OpusError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "libopus error {}", self.0)
    }
}

impl std::error::Error for OpusError {}

impl OpusEncoder {
    /// A mono VOIP encoder at `rate` (8000, 12000, 16000, 24000 or 48000), `bitrate` bit/s and
    /// `complexity` (0–10: libopus' speed/quality trade; its own default is 10).
    pub fn new(rate: u32, bitrate: i32, complexity: i32) -> Result<Self, OpusError> {
        if ![8000, 12000, 16000, 24000, 48000].contains(&rate) || !(0..=10).contains(&complexity) {
            return Err(OpusError(unsafe_libopus::OPUS_BAD_ARG));
        }
        let mut err = 0i32;
        // SAFETY: valid arguments; the error code is written through a valid pointer.
        let st = unsafe {
            unsafe_libopus::opus_encoder_create(
                rate as i32,
                1,
                unsafe_libopus::OPUS_APPLICATION_VOIP,
                &mut err,
            )
        };
        let st = NonNull::new(st).ok_or(OpusError(err))?;
        let enc = Self { st, rate };
        // SAFETY: st is live; SET_BITRATE takes one i32.
        let rc = unsafe {
            unsafe_libopus::opus_encoder_ctl!(
                enc.st.as_ptr(),
                unsafe_libopus::OPUS_SET_BITRATE_REQUEST,
                bitrate
            )
        };
        if rc != unsafe_libopus::OPUS_OK {
            return Err(OpusError(rc));
        }
        // SAFETY: st is live; SET_COMPLEXITY takes one i32.
        let rc = unsafe {
            unsafe_libopus::opus_encoder_ctl!(
                enc.st.as_ptr(),
                unsafe_libopus::OPUS_SET_COMPLEXITY_REQUEST,
                complexity
            )
        };
        if rc != unsafe_libopus::OPUS_OK {
            return Err(OpusError(rc));
        }
        Ok(enc)
    }

    /// Input sample rate.
    pub fn rate(&self) -> u32 {
        self.rate
    }

    /// The encoder's lookahead in samples at its input rate (what RFC 7845 calls pre-skip,
    /// once scaled to 48 kHz).
    pub fn lookahead(&self) -> Result<u32, OpusError> {
        let mut la = 0i32;
        // SAFETY: st is live; GET_LOOKAHEAD writes one i32 through the reference.
        let rc = unsafe {
            unsafe_libopus::opus_encoder_ctl!(
                self.st.as_ptr(),
                unsafe_libopus::OPUS_GET_LOOKAHEAD_REQUEST,
                &mut la
            )
        };
        if rc != unsafe_libopus::OPUS_OK {
            return Err(OpusError(rc));
        }
        u32::try_from(la).map_err(|_| OpusError(unsafe_libopus::OPUS_INTERNAL_ERROR))
    }

    /// Encodes one frame (2.5–60 ms of samples) into `out`, returning the packet's length.
    pub fn encode(&mut self, pcm: &[i16], out: &mut [u8]) -> Result<usize, OpusError> {
        let frame =
            i32::try_from(pcm.len()).map_err(|_| OpusError(unsafe_libopus::OPUS_BAD_ARG))?;
        let max = i32::try_from(out.len()).unwrap_or(i32::MAX);
        // SAFETY: st is live; libopus reads `frame` samples from pcm and writes at most `max`
        // bytes to out, both lengths taken from the slices themselves.
        let n = unsafe {
            unsafe_libopus::opus_encode(
                self.st.as_ptr(),
                pcm.as_ptr(),
                frame,
                out.as_mut_ptr(),
                max,
            )
        };
        usize::try_from(n).map_err(|_| OpusError(n))
    }
}

impl Drop for OpusEncoder {
    fn drop(&mut self) {
        // SAFETY: the state came from opus_encoder_create and is destroyed once.
        unsafe { unsafe_libopus::opus_encoder_destroy(self.st.as_ptr()) };
    }
}

/// Samples per channel of the longest Opus packet (120 ms) at 48 kHz.
pub const OPUS_MAX_PACKET_SAMPLES_48K: usize = 5760;

/// An Opus decoder (mono or stereo; the multistream layouts of channel mapping family 1 are not
/// wrapped).
pub struct OpusDecoder {
    st: NonNull<unsafe_libopus::OpusDecoder>,
    rate: u32,
    channels: usize,
}

impl OpusDecoder {
    /// A decoder producing `channels` (1 or 2) interleaved channels at `rate` (8000, 12000,
    /// 16000, 24000 or 48000).
    pub fn new(rate: u32, channels: u16) -> Result<Self, OpusError> {
        if ![8000, 12000, 16000, 24000, 48000].contains(&rate) || !(1..=2).contains(&channels) {
            return Err(OpusError(unsafe_libopus::OPUS_BAD_ARG));
        }
        let mut err = 0i32;
        // SAFETY: valid arguments; the error code is written through a valid pointer.
        let st = unsafe {
            unsafe_libopus::opus_decoder_create(rate as i32, i32::from(channels), &mut err)
        };
        let st = NonNull::new(st).ok_or(OpusError(err))?;
        Ok(Self {
            st,
            rate,
            channels: usize::from(channels),
        })
    }

    /// Output sample rate.
    pub fn rate(&self) -> u32 {
        self.rate
    }

    /// Samples per channel a packet decodes to at this decoder's rate, read from its TOC byte(s)
    /// without decoding; an error for a malformed or empty packet.
    pub fn packet_samples(&self, packet: &[u8]) -> Result<usize, OpusError> {
        if packet.is_empty() {
            return Err(OpusError(unsafe_libopus::OPUS_INVALID_PACKET));
        }
        let len =
            i32::try_from(packet.len()).map_err(|_| OpusError(unsafe_libopus::OPUS_BAD_ARG))?;
        // SAFETY: libopus reads at most `len` bytes of the packet, a live slice of that length.
        let n = unsafe {
            unsafe_libopus::opus_packet_get_nb_samples(packet.as_ptr(), len, self.rate as i32)
        };
        usize::try_from(n).map_err(|_| OpusError(n))
    }

    /// Decodes one packet into `out` (interleaved), returning the samples per channel written.
    /// `out` must hold the packet's samples (at most 120 ms: 5760 × channels at 48 kHz); an
    /// empty packet is refused rather than concealed.
    pub fn decode(&mut self, packet: &[u8], out: &mut [i16]) -> Result<usize, OpusError> {
        if packet.is_empty() {
            return Err(OpusError(unsafe_libopus::OPUS_INVALID_PACKET));
        }
        let len =
            i32::try_from(packet.len()).map_err(|_| OpusError(unsafe_libopus::OPUS_BAD_ARG))?;
        let frame_size = i32::try_from(out.len() / self.channels)
            .map_err(|_| OpusError(unsafe_libopus::OPUS_BAD_ARG))?;
        // SAFETY: the state is live; libopus reads `len` bytes of the packet and writes at most
        // `frame_size` × channels samples, which `out` holds (frame_size = out.len() / channels).
        let n = unsafe {
            unsafe_libopus::opus_decode(
                self.st.as_ptr(),
                packet.as_ptr(),
                len,
                out.as_mut_ptr(),
                frame_size,
                0,
            )
        };
        usize::try_from(n).map_err(|_| OpusError(n))
    }
}

impl Drop for OpusDecoder {
    fn drop(&mut self) {
        // SAFETY: the state came from opus_decoder_create and is destroyed once.
        unsafe { unsafe_libopus::opus_decoder_destroy(self.st.as_ptr()) };
    }
}

// SAFETY: each wrapper owns its state exclusively (no aliasing pointer escapes) and every method
// that touches it takes `&mut self` or only reads immutable fields; libgsm and libopus states have
// no thread affinity, so moving one to another thread is sound.
unsafe impl Send for GsmEncoder {}
// SAFETY: as above.
unsafe impl Send for GsmDecoder {}
// SAFETY: as above.
unsafe impl Send for OpusEncoder {}
// SAFETY: as above.
unsafe impl Send for OpusDecoder {}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone() -> Vec<i16> {
        (0..1600)
            .map(|i| ((i as f64 * 0.3).sin() * 8000.0) as i16)
            .collect()
    }

    #[test]
    fn gsm_round_trips_a_tone() {
        let pcm = tone();
        let mut enc = GsmEncoder::new(false).unwrap();
        let mut bytes = Vec::new();
        for f in pcm.chunks_exact(GSM_FRAME_SAMPLES) {
            enc.encode_frame(f.try_into().unwrap(), &mut bytes);
        }
        assert_eq!(bytes.len(), 10 * GSM_FRAME_BYTES);
        let mut dec = GsmDecoder::new(false).unwrap();
        let out: Vec<i16> = bytes
            .chunks_exact(GSM_FRAME_BYTES)
            .flat_map(|f| dec.decode_frame(f).unwrap())
            .collect();
        let energy: f64 = out[800..].iter().map(|&s| f64::from(s).powi(2)).sum();
        assert!(energy > 1e9, "decoded audio is not silent");
    }

    #[test]
    fn wav49_packs_two_frames_in_65_bytes() {
        let pcm = tone();
        let mut enc = GsmEncoder::new(true).unwrap();
        let mut bytes = Vec::new();
        for f in pcm.chunks_exact(GSM_FRAME_SAMPLES) {
            enc.encode_frame(f.try_into().unwrap(), &mut bytes);
        }
        assert_eq!(bytes.len(), 5 * WAV49_BLOCK_BYTES);
    }

    #[test]
    fn opus_reports_lookahead_and_encodes() {
        let mut enc = OpusEncoder::new(8000, 16000, 10).unwrap();
        assert!(enc.lookahead().unwrap() > 0);
        let mut out = [0u8; 1500];
        let n = enc.encode(&tone()[..160], &mut out).unwrap();
        assert!(n > 0);
        assert!(OpusEncoder::new(44100, 16000, 10).is_err());
        assert!(OpusEncoder::new(8000, 16000, 11).is_err());
        assert!(OpusEncoder::new(8000, 16000, -1).is_err());
    }

    #[test]
    fn opus_decodes_what_it_encoded_and_refuses_garbage() {
        let mut enc = OpusEncoder::new(48000, 24000, 10).unwrap();
        let pcm: Vec<i16> = (0..960)
            .map(|i| ((i as f64 * 0.05).sin() * 8000.0) as i16)
            .collect();
        let mut packet = [0u8; 1500];
        let n = enc.encode(&pcm, &mut packet).unwrap();
        let mut dec = OpusDecoder::new(48000, 2).unwrap();
        assert_eq!(dec.packet_samples(&packet[..n]).unwrap(), 960);
        let mut out = vec![0i16; OPUS_MAX_PACKET_SAMPLES_48K * 2];
        assert_eq!(dec.decode(&packet[..n], &mut out).unwrap(), 960);
        assert!(dec.decode(&[], &mut out).is_err());
        // Code 3 with a frame count of 0 is invalid.
        assert!(dec.decode(&[0x03, 0x00], &mut out).is_err());
        // An output buffer too small for the packet is an error, not an overflow.
        assert!(dec.decode(&packet[..n], &mut out[..100]).is_err());
        assert!(OpusDecoder::new(44100, 1).is_err());
        assert!(OpusDecoder::new(48000, 3).is_err());
    }
}
