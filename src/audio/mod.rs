//! Audio formats: recognising and validating what a PBX sends, without decoding on the deposit
//! path; decoding stored recordings and encoding renditions (G.711, slin, GSM 06.10, WAV49, Ogg
//! Opus) for playback and e-mail attachments.

pub mod decode;
pub mod g711;
pub mod ogg_opus;
mod probe;
pub mod rendition;
pub mod resample;
pub mod wav;

pub use probe::{AudioError, Probe, RawHint, finish, hint_from_content_type, probe};
pub use rendition::{OutputFormat, Rendition, transcode};
