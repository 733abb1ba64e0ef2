//! The recording as an e-mail attachment, in the mailbox's `attachfmt`.

use crate::audio::{self, RawHint, g711, wav};
use crate::domain::AudioFormat;

use super::AudioAttachment;

/// What was attached, or why nothing was.
#[derive(Debug)]
pub struct Rendition {
    pub attachment: Option<AudioAttachment>,
    /// A line for the body when the recording is not attached as asked.
    pub note: Option<String>,
    /// Set when the asked format could not be made and another was used.
    pub substituted: Option<String>,
}

/// Formats whose encoders are not built yet: they are attached as `wav`.
const NOT_YET: &[&str] = &["wav49", "gsm", "opus"];

fn original(format: AudioFormat, msgnum: i64, bytes: Vec<u8>) -> AudioAttachment {
    let ext = match format {
        AudioFormat::WavPcm | AudioFormat::WavUlaw | AudioFormat::WavAlaw => "wav",
        AudioFormat::RawUlaw => "ulaw",
        AudioFormat::RawAlaw => "alaw",
    };
    AudioAttachment {
        filename: format!("msg{msgnum:04}.{ext}"),
        content_type: format!("audio/x-{ext}"),
        bytes,
    }
}

/// 16-bit PCM WAV at the source rate. G.711 is decoded; a PCM WAV is already one.
pub fn to_wav(format: AudioFormat, bytes: &[u8]) -> Result<Vec<u8>, String> {
    let hint = match format {
        AudioFormat::RawUlaw => RawHint::Ulaw,
        AudioFormat::RawAlaw => RawHint::Alaw,
        _ => RawHint::Wav,
    };
    let p = audio::probe(bytes, hint, true)
        .map_err(|e| e.to_string())?
        .ok_or("the recording header is incomplete")?;
    let start = usize::try_from(p.data_offset).map_err(|e| e.to_string())?;
    let avail = bytes.len().saturating_sub(start);
    let len = p
        .data_len
        .and_then(|l| usize::try_from(l).ok())
        .map_or(avail, |l| l.min(avail));
    let data = &bytes[start.min(bytes.len())..start.min(bytes.len()) + len];
    let samples = match format {
        AudioFormat::WavPcm => return Ok(bytes.to_vec()),
        AudioFormat::WavUlaw | AudioFormat::RawUlaw => g711::decode_ulaw(data),
        AudioFormat::WavAlaw | AudioFormat::RawAlaw => g711::decode_alaw(data),
    };
    Ok(wav::pcm16_wav(&samples, p.sample_rate, p.channels))
}

/// Makes the attachment for `attachfmt`, within `max_bytes`: a rendition larger than the limit
/// falls back to the (smaller) original recording, and is left out with a note if that is too
/// large as well. CPU work: call from `spawn_blocking`.
pub fn render(
    attachfmt: &str,
    format: AudioFormat,
    msgnum: i64,
    bytes: Vec<u8>,
    max_bytes: u64,
) -> Rendition {
    let mut substituted = None;
    let wanted = match attachfmt {
        "original" => None,
        f if NOT_YET.contains(&f) => {
            substituted = Some(format!(
                "attachfmt {f} needs an encoder this build does not have; attached as wav"
            ));
            Some("wav")
        }
        _ => Some("wav"),
    };
    let size_ok = |n: usize| n as u64 <= max_bytes;
    let made = match wanted {
        Some(_) => match to_wav(format, &bytes) {
            Ok(w) => Some(AudioAttachment {
                filename: format!("msg{msgnum:04}.wav"),
                content_type: "audio/x-wav".into(),
                bytes: w,
            }),
            Err(e) => {
                substituted = Some(format!(
                    "cannot make a wav rendition ({e}); attached the original"
                ));
                None
            }
        },
        None => None,
    };
    if let Some(a) = made {
        if size_ok(a.bytes.len()) {
            return Rendition {
                attachment: Some(a),
                note: None,
                substituted,
            };
        }
        if bytes.len() < a.bytes.len() && size_ok(bytes.len()) {
            return Rendition {
                attachment: Some(original(format, msgnum, bytes)),
                note: None,
                substituted: Some(format!(
                    "the wav rendition ({} bytes) exceeds attachment_max_bytes; attached the \
                     original recording",
                    a.bytes.len()
                )),
            };
        }
        return too_large(a.bytes.len().min(bytes.len()), max_bytes);
    }
    if size_ok(bytes.len()) {
        return Rendition {
            attachment: Some(original(format, msgnum, bytes)),
            note: None,
            substituted,
        };
    }
    too_large(bytes.len(), max_bytes)
}

fn too_large(size: usize, max: u64) -> Rendition {
    Rendition {
        attachment: None,
        note: Some(format!(
            "(The recording is {size} bytes, more than the {max}-byte attachment limit, so it is \
             not attached. Listen to it in your voicemail.)"
        )),
        substituted: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_ulaw_becomes_a_pcm16_wav_of_the_same_length() {
        let raw = vec![0xFFu8; 8000];
        let w = to_wav(AudioFormat::RawUlaw, &raw).unwrap();
        assert_eq!(w.len(), 44 + 16000);
        let r = render("wav", AudioFormat::RawUlaw, 0, raw.clone(), 1 << 20);
        let a = r.attachment.unwrap();
        assert_eq!(a.filename, "msg0000.wav");
        assert!(r.note.is_none());
        // Too large as wav, small enough as the original.
        let r = render("wav", AudioFormat::RawUlaw, 3, raw.clone(), 10_000);
        assert_eq!(r.attachment.unwrap().filename, "msg0003.ulaw");
        // Too large either way.
        let r = render("opus", AudioFormat::RawUlaw, 3, raw, 100);
        assert!(r.attachment.is_none());
        assert!(r.note.unwrap().contains("not attached"));
    }
}
