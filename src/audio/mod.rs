//! Audio formats: recognising and validating what a PBX sends, without decoding on the deposit path.

mod probe;

pub use probe::{AudioError, Probe, RawHint, finish, hint_from_content_type, probe};
