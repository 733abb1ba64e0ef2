//! The recording as an e-mail attachment, in the mailbox's `attachfmt`.

use crate::audio::{self, OutputFormat, Rendition as Spec};
use crate::domain::AudioFormat;

use super::AudioAttachment;

/// What was attached, or why nothing was.
#[derive(Debug)]
pub struct Rendition {
    /// The part to attach, if any fits.
    pub attachment: Option<AudioAttachment>,
    /// A line for the body when the recording is not attached as asked.
    pub note: Option<String>,
    /// Set when the asked format could not be made and another was used.
    pub substituted: Option<String>,
}

fn original(format: AudioFormat, msgnum: i64, bytes: Vec<u8>) -> AudioAttachment {
    let ext = format.extension();
    // Asterisk names its attachments `audio/x-<ext>` (wav, WAV, gsm, ulaw, alaw, sln); formats
    // Asterisk never records carry their registered media type.
    let content_type = match format {
        AudioFormat::Mp3
        | AudioFormat::Flac
        | AudioFormat::OggVorbis
        | AudioFormat::OggOpus
        | AudioFormat::WebmOpus
        | AudioFormat::RawL16
        | AudioFormat::RawL16_16k => format.content_type().to_owned(),
        _ => format!("audio/x-{ext}"),
    };
    AudioAttachment {
        filename: format!("msg{msgnum:04}.{ext}"),
        content_type,
        bytes,
    }
}

/// 16-bit PCM WAV at the source rate. G.711 is decoded; a PCM WAV is already one.
pub fn to_wav(format: AudioFormat, bytes: &[u8]) -> Result<Vec<u8>, String> {
    if format == AudioFormat::WavPcm {
        return Ok(bytes.to_vec());
    }
    let r = Spec::new(OutputFormat::Wav, None, None, 0)?;
    audio::transcode(format, bytes, &r).map_err(|e| e.to_string())
}

/// The rendition for an `attachfmt` (Asterisk's names: `wav`, `wav49`/`WAV`, `gsm`; and `opus`).
/// Anything else is attached as `wav`.
fn output_for(attachfmt: &str) -> OutputFormat {
    match attachfmt {
        "wav49" | "WAV" => OutputFormat::Wav49,
        "gsm" => OutputFormat::Gsm,
        "opus" | "ogg" => OutputFormat::Opus,
        _ => OutputFormat::Wav,
    }
}

fn make(
    out: OutputFormat,
    format: AudioFormat,
    msgnum: i64,
    bytes: &[u8],
    opus_bitrate: u32,
) -> Result<AudioAttachment, String> {
    let data = if out == OutputFormat::Wav {
        to_wav(format, bytes)?
    } else {
        let r = Spec::new(out, None, None, opus_bitrate)?;
        audio::transcode(format, bytes, &r).map_err(|e| e.to_string())?
    };
    let ext = out.extension();
    let content_type = match out {
        OutputFormat::Opus => "audio/ogg".to_owned(),
        _ => format!("audio/x-{ext}"),
    };
    Ok(AudioAttachment {
        filename: format!("msg{msgnum:04}.{ext}"),
        content_type,
        bytes: data,
    })
}

/// Makes the attachment for `attachfmt`, within `max_bytes`: a rendition (or original) larger
/// than the limit falls back to Opus (the compact format), and is left out with a note in the
/// body if that does not fit either. CPU work: call from `spawn_blocking`.
pub fn render(
    attachfmt: &str,
    format: AudioFormat,
    msgnum: i64,
    bytes: Vec<u8>,
    max_bytes: u64,
    opus_bitrate: u32,
) -> Rendition {
    let size_ok = |n: usize| n as u64 <= max_bytes;
    let mut substituted = None;
    let wanted = (attachfmt != "original").then(|| output_for(attachfmt));
    let made = match wanted {
        Some(out) => match make(out, format, msgnum, &bytes, opus_bitrate) {
            Ok(a) => Some(a),
            Err(e) => {
                substituted = Some(format!(
                    "cannot make a {} rendition ({e}); attached the original",
                    out.as_str()
                ));
                None
            }
        },
        None => None,
    };
    let first_size = made.as_ref().map_or(bytes.len(), |a| a.bytes.len());
    if size_ok(first_size) {
        return Rendition {
            attachment: Some(made.unwrap_or_else(|| original(format, msgnum, bytes))),
            note: None,
            substituted,
        };
    }
    let what = wanted.map_or("original recording", |o| o.as_str());
    let opus = if wanted == Some(OutputFormat::Opus) {
        None
    } else {
        make(OutputFormat::Opus, format, msgnum, &bytes, opus_bitrate).ok()
    };
    match opus {
        Some(a) if size_ok(a.bytes.len()) => Rendition {
            attachment: Some(a),
            note: None,
            substituted: Some(format!(
                "the {what} ({first_size} bytes) exceeds attachment_max_bytes; attached as opus"
            )),
        },
        Some(a) => too_large(a.bytes.len(), max_bytes),
        None => too_large(first_size, max_bytes),
    }
}

fn too_large(size: usize, max: u64) -> Rendition {
    Rendition {
        attachment: None,
        note: Some(format!(
            "(The recording is not attached: at {size} bytes, even in the compact format, it is \
             over the {max}-byte attachment limit. Listen to it in your voicemail.)"
        )),
        substituted: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn speech(n: usize) -> Vec<u8> {
        (0..n)
            .map(|i| crate::audio::g711::linear_to_ulaw(((i as f64 * 0.2).sin() * 8000.0) as i16))
            .collect()
    }

    #[test]
    fn raw_ulaw_becomes_a_pcm16_wav_of_the_same_length() {
        let raw = speech(8000);
        let w = to_wav(AudioFormat::RawUlaw, &raw).unwrap();
        assert_eq!(w.len(), 44 + 16000);
        let r = render("wav", AudioFormat::RawUlaw, 0, raw.clone(), 1 << 20, 16000);
        let a = r.attachment.unwrap();
        assert_eq!(a.filename, "msg0000.wav");
        assert!(r.note.is_none());
        // Too large either way.
        let r = render("opus", AudioFormat::RawUlaw, 3, raw, 100, 16000);
        assert!(r.attachment.is_none());
        assert!(r.note.unwrap().contains("not attached"));
    }

    #[test]
    fn asterisk_formats_are_encoded_and_too_large_ones_fall_back_to_opus() {
        let raw = speech(16000);
        let r = render(
            "wav49",
            AudioFormat::RawUlaw,
            1,
            raw.clone(),
            1 << 20,
            16000,
        );
        let a = r.attachment.unwrap();
        assert_eq!(a.filename, "msg0001.WAV");
        assert_eq!(a.bytes.len(), 60 + 50 * 65);
        assert!(r.substituted.is_none());
        let a = render("gsm", AudioFormat::RawUlaw, 1, raw.clone(), 1 << 20, 16000)
            .attachment
            .unwrap();
        assert_eq!(
            (a.filename.as_str(), a.bytes.len()),
            ("msg0001.gsm", 100 * 33)
        );
        let a = render("opus", AudioFormat::RawUlaw, 1, raw.clone(), 1 << 20, 16000)
            .attachment
            .unwrap();
        assert_eq!(&a.bytes[..4], b"OggS");
        // 2 s as wav is 32 KB; as 16 kbit/s Opus about 4 KB.
        let r = render("wav", AudioFormat::RawUlaw, 2, raw.clone(), 10_000, 16000);
        assert_eq!(r.attachment.unwrap().filename, "msg0002.opus");
        assert!(r.substituted.unwrap().contains("attached as opus"));
        // Opus does not fit either: nothing is attached, and the body says why.
        let r = render("wav", AudioFormat::RawUlaw, 2, raw, 1_000, 16000);
        assert!(r.attachment.is_none());
        assert!(r.note.unwrap().contains("not attached"));
    }
}
