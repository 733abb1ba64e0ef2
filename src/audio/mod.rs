//! Audio formats: recognising and validating what a PBX or a browser sends (by header alone for
//! WAV and headerless formats, by decoding for compressed ones); decoding stored recordings and
//! encoding renditions (G.711, slin, GSM 06.10, WAV49, Ogg Opus) for playback and e-mail
//! attachments.

mod compressed;
pub mod decode;
pub mod g711;
pub mod ogg_opus;
mod probe;
pub mod rendition;
pub mod resample;
mod vorbis;
pub mod wav;

pub use compressed::{IdleRelease, Source, SyncSource};
pub use decode::{Decoder, Measured, Pcm, decode_any, measure, measure_streaming};
pub use probe::{AudioError, GsmFrameCheck, Probe, RawHint, finish, hint_from_content_type, probe};
pub use rendition::{OutputFormat, Rendition, transcode, transcode_stream};
