//! The recording as an e-mail attachment, in the mailbox's `attachfmt`.

use std::io::{self, Cursor, Read, Seek, SeekFrom, Write};

use crate::audio::{self, OutputFormat, Rendition as Spec, Source};
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

/// The stored recording an attachment is made from. It is read afresh for every try (the asked
/// format, then the Opus fallback), a chunk at a time, so only the attachment itself is ever held
/// in memory.
pub trait Recording {
    /// The stored format.
    fn format(&self) -> AudioFormat;
    /// Size of the stored bytes.
    fn size(&self) -> u64;
    /// The stored bytes from the start; an error is a storage failure.
    fn open(&mut self) -> Result<Box<dyn Source + '_>, String>;
    /// Why the last reader failed, when that was the storage and not the audio: the decoder
    /// reports both as unreadable audio, but only bad audio is worth a fallback.
    fn storage_error(&self) -> Option<String>;
}

/// An in-memory output that refuses to grow past `max` bytes, so that a rendition that cannot
/// be attached stops being encoded as soon as it is too large.
struct Capped {
    buf: Cursor<Vec<u8>>,
    max: u64,
    over: bool,
}

impl Write for Capped {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        if self.buf.position() + b.len() as u64 > self.max {
            self.over = true;
            return Err(io::Error::other("over attachment_max_bytes"));
        }
        self.buf.write(b)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Seek for Capped {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        self.buf.seek(to)
    }
}

/// A size for the log and the body: exact, or only known to exceed the limit.
#[derive(Clone, Copy)]
enum Size {
    Exactly(u64),
    Over(u64),
}

impl std::fmt::Display for Size {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Exactly(n) => write!(f, "{n} bytes"),
            Self::Over(n) => write!(f, "over {n} bytes"),
        }
    }
}

enum Made {
    Fits(Vec<u8>),
    TooLarge,
    Failed(String),
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

fn part(out: OutputFormat, msgnum: i64, bytes: Vec<u8>) -> AudioAttachment {
    let ext = out.extension();
    let content_type = match out {
        OutputFormat::Opus => "audio/ogg".to_owned(),
        _ => format!("audio/x-{ext}"),
    };
    AudioAttachment {
        filename: format!("msg{msgnum:04}.{ext}"),
        content_type,
        bytes,
    }
}

/// Opus settings of attachments (`audio.opus_bitrate`, `audio.opus_complexity`).
#[derive(Debug, Clone, Copy)]
pub struct OpusSettings {
    /// Bitrate in bit/s.
    pub bitrate: u32,
    /// libopus complexity, 0–10.
    pub complexity: u8,
}

/// Transcodes the recording to `out`, stopping as soon as the result passes `max` bytes. An
/// error is a storage failure.
fn make(
    rec: &mut dyn Recording,
    out: OutputFormat,
    max: u64,
    opus: OpusSettings,
) -> Result<Made, String> {
    let spec = match Spec::new(out, None, None, opus.bitrate, opus.complexity) {
        Ok(s) => s,
        Err(e) => return Ok(Made::Failed(e)),
    };
    let format = rec.format();
    let mut w = Capped {
        buf: Cursor::new(Vec::new()),
        max,
        over: false,
    };
    let made = audio::transcode_stream(format, rec.open()?, &spec, &mut w);
    Ok(match made {
        Ok(_) => Made::Fits(w.buf.into_inner()),
        Err(_) if w.over => Made::TooLarge,
        Err(e) => match rec.storage_error() {
            Some(storage) => return Err(storage),
            None => Made::Failed(e.to_string()),
        },
    })
}

/// The stored bytes, which must be at most `max` long.
fn read_original(rec: &mut dyn Recording, max: u64) -> Result<Vec<u8>, String> {
    let mut bytes = Vec::with_capacity(usize::try_from(rec.size().min(max)).unwrap_or(0));
    rec.open()?
        .take(max)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read the recording: {e}"))?;
    Ok(bytes)
}

/// Makes the attachment for `attachfmt`, within `max_bytes`: a rendition (or original) larger
/// than the limit falls back to Opus (the compact format), and is left out with a note in the
/// body if that does not fit either. An error is a storage failure (worth a retry), never bad
/// audio. CPU work: call from `spawn_blocking`.
pub fn render(
    attachfmt: &str,
    rec: &mut dyn Recording,
    msgnum: i64,
    max_bytes: u64,
    opus: OpusSettings,
) -> Result<Rendition, String> {
    let format = rec.format();
    let size = rec.size();
    let mut substituted = None;
    let wanted = (attachfmt != "original").then(|| output_for(attachfmt));
    // A PCM WAV is already the `wav` attachment.
    let pcm_wav = wanted == Some(OutputFormat::Wav) && format == AudioFormat::WavPcm;
    let first = match wanted.filter(|_| !pcm_wav) {
        Some(out) => match make(rec, out, max_bytes, opus)? {
            Made::Fits(bytes) => {
                return Ok(Rendition {
                    attachment: Some(part(out, msgnum, bytes)),
                    note: None,
                    substituted: None,
                });
            }
            Made::TooLarge => Size::Over(max_bytes),
            Made::Failed(e) => {
                substituted = Some(format!(
                    "cannot make a {} rendition ({e}); attached the original",
                    out.as_str()
                ));
                Size::Exactly(size)
            }
        },
        None => Size::Exactly(size),
    };
    if matches!(first, Size::Exactly(n) if n <= max_bytes) {
        let bytes = read_original(rec, max_bytes)?;
        let attachment = if pcm_wav {
            part(OutputFormat::Wav, msgnum, bytes)
        } else {
            original(format, msgnum, bytes)
        };
        return Ok(Rendition {
            attachment: Some(attachment),
            note: None,
            substituted,
        });
    }
    let what = wanted.map_or("original recording", |o| o.as_str());
    if wanted == Some(OutputFormat::Opus) {
        return Ok(too_large(first, max_bytes));
    }
    Ok(match make(rec, OutputFormat::Opus, max_bytes, opus)? {
        Made::Fits(bytes) => Rendition {
            attachment: Some(part(OutputFormat::Opus, msgnum, bytes)),
            note: None,
            substituted: Some(format!(
                "the {what} ({first}) exceeds attachment_max_bytes; attached as opus"
            )),
        },
        Made::TooLarge => too_large(Size::Over(max_bytes), max_bytes),
        Made::Failed(_) => too_large(first, max_bytes),
    })
}

fn too_large(size: Size, max: u64) -> Rendition {
    let at = match size {
        Size::Exactly(n) => format!("at {n} bytes, "),
        Size::Over(_) => String::new(),
    };
    Rendition {
        attachment: None,
        note: Some(format!(
            "(The recording is not attached: {at}even in the compact format, it is over the \
             {max}-byte attachment limit. Listen to it in your voicemail.)"
        )),
        substituted: None,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn speech(n: usize) -> Vec<u8> {
        (0..n)
            .map(|i| crate::audio::g711::linear_to_ulaw(((i as f64 * 0.2).sin() * 8000.0) as i16))
            .collect()
    }

    /// A recording in memory; `opened` counts the reads.
    struct InMemory {
        format: AudioFormat,
        bytes: Arc<[u8]>,
        opened: usize,
    }

    impl Recording for InMemory {
        fn format(&self) -> AudioFormat {
            self.format
        }
        fn size(&self) -> u64 {
            self.bytes.len() as u64
        }
        fn open(&mut self) -> Result<Box<dyn Source + '_>, String> {
            self.opened += 1;
            Ok(Box::new(Cursor::new(self.bytes.clone())))
        }
        fn storage_error(&self) -> Option<String> {
            None
        }
    }

    fn ulaw(bytes: Vec<u8>) -> InMemory {
        InMemory {
            format: AudioFormat::RawUlaw,
            bytes: bytes.into(),
            opened: 0,
        }
    }

    const OPUS: OpusSettings = OpusSettings {
        bitrate: 16000,
        complexity: 5,
    };

    #[test]
    fn raw_ulaw_becomes_a_pcm16_wav_of_the_same_length() {
        let raw = speech(8000);
        let r = render("wav", &mut ulaw(raw.clone()), 0, 1 << 20, OPUS).unwrap();
        let a = r.attachment.unwrap();
        assert_eq!(a.filename, "msg0000.wav");
        assert_eq!(a.bytes.len(), 44 + 16000);
        assert!(r.note.is_none());
        // Too large either way.
        let r = render("opus", &mut ulaw(raw), 3, 100, OPUS).unwrap();
        assert!(r.attachment.is_none());
        assert!(r.note.unwrap().contains("not attached"));
    }

    #[test]
    fn a_pcm_wav_and_the_original_are_attached_as_stored() {
        let wav = crate::audio::wav::pcm16_wav(&[1, 2, 3], 8000, 1);
        let mut rec = InMemory {
            format: AudioFormat::WavPcm,
            bytes: wav.clone().into(),
            opened: 0,
        };
        let a = render("wav", &mut rec, 4, 1 << 20, OPUS)
            .unwrap()
            .attachment;
        assert_eq!(a.unwrap().bytes, wav);
        let a = render("original", &mut ulaw(speech(10)), 4, 1 << 20, OPUS)
            .unwrap()
            .attachment
            .unwrap();
        assert_eq!((a.filename.as_str(), a.bytes.len()), ("msg0004.ulaw", 10));
    }

    #[test]
    fn asterisk_formats_are_encoded_and_too_large_ones_fall_back_to_opus() {
        let raw = speech(16000);
        let r = render("wav49", &mut ulaw(raw.clone()), 1, 1 << 20, OPUS).unwrap();
        let a = r.attachment.unwrap();
        assert_eq!(a.filename, "msg0001.WAV");
        assert_eq!(a.bytes.len(), 60 + 50 * 65);
        assert!(r.substituted.is_none());
        let a = render("gsm", &mut ulaw(raw.clone()), 1, 1 << 20, OPUS)
            .unwrap()
            .attachment
            .unwrap();
        assert_eq!(
            (a.filename.as_str(), a.bytes.len()),
            ("msg0001.gsm", 100 * 33)
        );
        let a = render("opus", &mut ulaw(raw.clone()), 1, 1 << 20, OPUS)
            .unwrap()
            .attachment
            .unwrap();
        assert_eq!(&a.bytes[..4], b"OggS");
        // 2 s as wav is 32 KB; as 16 kbit/s Opus about 4 KB.
        let mut rec = ulaw(raw.clone());
        let r = render("wav", &mut rec, 2, 10_000, OPUS).unwrap();
        assert_eq!(r.attachment.unwrap().filename, "msg0002.opus");
        let why = r.substituted.unwrap();
        assert!(
            why.contains("over 10000 bytes") && why.contains("attached as opus"),
            "{why}"
        );
        assert_eq!(rec.opened, 2, "the wav try, then the Opus one");
        // Opus does not fit either: nothing is attached, and the body says why.
        let r = render("wav", &mut ulaw(raw), 2, 1_000, OPUS).unwrap();
        assert!(r.attachment.is_none());
        let note = r.note.unwrap();
        assert!(
            note.contains("not attached") && note.contains("1000-byte attachment limit"),
            "{note}"
        );
    }

    /// A recording much larger than the limit is not encoded to its end: encoding stops once the
    /// output passes the limit, so little of the input is even read.
    #[test]
    fn encoding_stops_at_the_limit() {
        struct Counting(Cursor<Arc<[u8]>>, Arc<std::sync::atomic::AtomicU64>);
        impl Read for Counting {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                let n = self.0.read(buf)?;
                self.1
                    .fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
                Ok(n)
            }
        }
        struct Counted(Arc<[u8]>, Arc<std::sync::atomic::AtomicU64>);
        impl Recording for Counted {
            fn format(&self) -> AudioFormat {
                AudioFormat::RawUlaw
            }
            fn size(&self) -> u64 {
                self.0.len() as u64
            }
            fn open(&mut self) -> Result<Box<dyn Source + '_>, String> {
                Ok(Box::new(Counting(
                    Cursor::new(self.0.clone()),
                    self.1.clone(),
                )))
            }
            fn storage_error(&self) -> Option<String> {
                None
            }
        }
        let raw: Arc<[u8]> = speech(8000 * 120).into();
        let read = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let mut rec = Counted(raw.clone(), read.clone());
        let r = render("opus", &mut rec, 0, 4_000, OPUS).unwrap();
        assert!(r.attachment.is_none());
        let read = read.load(std::sync::atomic::Ordering::Relaxed);
        assert!(
            read < raw.len() as u64 / 10,
            "read {read} of {} bytes",
            raw.len()
        );
    }
}
