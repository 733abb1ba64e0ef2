//! Audio formats: recognising and validating what a PBX sends, without decoding on the deposit path;
//! G.711 decoding and a WAV writer for renditions (e-mail attachments).

pub mod g711;
mod probe;
pub mod wav;

pub use probe::{AudioError, Probe, RawHint, finish, hint_from_content_type, probe};
