//! The voicemail vocabulary (Asterisk's), with no I/O.

mod address;
mod event;
mod folder;
mod ids;
mod mwi;

pub use address::{
    ADDRESS_PATTERN, AddressError, CONTEXT_PATTERN, MAILBOX_PATTERN, MailboxAddress,
    validate_context_name,
};
pub use event::{EVENT_TYPES, Event, EventFilter, EventView};
pub use folder::{Flag, Folder, FolderError};
pub use ids::{ApiKeyId, MailboxId, MessageId};
pub use mwi::MwiCounts;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A greeting slot of a mailbox (Asterisk's unavail, busy, temp and greet/name recordings).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum GreetingKind {
    Unavailable,
    Busy,
    Temp,
    Name,
}

impl GreetingKind {
    pub const ALL: [GreetingKind; 4] = [Self::Unavailable, Self::Busy, Self::Temp, Self::Name];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unavailable => "unavailable",
            Self::Busy => "busy",
            Self::Temp => "temp",
            Self::Name => "name",
        }
    }

    /// The spool directory name Asterisk uses for this greeting.
    pub fn asterisk_dir(self) -> &'static str {
        match self {
            Self::Unavailable => "unavail",
            Self::Busy => "busy",
            Self::Temp => "temp",
            Self::Name => "greet",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// Role of an API key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// A PBX node: deposits, lists, plays, moves and deletes messages; verifies PINs.
    Pbx,
    /// An administrator: everything a PBX may do, plus managing contexts and mailboxes.
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pbx => "pbx",
            Self::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "pbx" => Some(Self::Pbx),
            "admin" => Some(Self::Admin),
            _ => None,
        }
    }
}

/// Who is calling: the authenticated API key's role and optional context scope.
#[derive(Debug, Clone)]
pub struct Principal {
    pub key_id: ApiKeyId,
    pub role: Role,
    /// `None` = every context.
    pub context: Option<String>,
}

impl Principal {
    /// A principal for local administration (the CLI): every context, admin role.
    pub fn local_admin() -> Self {
        Self {
            key_id: ApiKeyId::nil(),
            role: Role::Admin,
            context: None,
        }
    }

    pub fn sees_context(&self, context: &str) -> bool {
        self.context.as_deref().is_none_or(|c| c == context)
    }

    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }
}

/// The format Asterisk's app_voicemail stores recordings in with ODBC storage: the first of its
/// `format=` (`wav49|gsm|wav` → `wav49`). A context whose Asterisk nodes share the messages table
/// names it, and every message of the context carries a copy in it in `recording`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum AsteriskFormat {
    /// GSM 06.10 in WAV (format 0x31), Asterisk's `wav49` (file extension `.WAV`).
    Wav49,
    /// Headerless GSM 06.10 (`.gsm`).
    Gsm,
    /// 16-bit linear PCM WAV, 8 kHz mono (`.wav`).
    Wav,
}

/// How a context keeps its mailboxes' PINs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum PinStorage {
    /// argon2 hashes (the default): nothing but voxmail can check them.
    #[default]
    Hashed,
    /// The PIN itself, as Asterisk's realtime voicemail users compare and write it. Anyone who
    /// can read the database reads every PIN of the context.
    Plain,
}

impl PinStorage {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Hashed => "hashed",
            Self::Plain => "plain",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "hashed" => Some(Self::Hashed),
            "plain" => Some(Self::Plain),
            _ => None,
        }
    }
}

/// Who mails the messages Asterisk records in a context it shares.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum AsteriskMail {
    /// Asterisk, as it does without voxmail (the default); voxmail mails none of them.
    #[default]
    Asterisk,
    /// voxmail, as it mails its own deposits; Asterisk should then have no address or mailer.
    Voxmail,
}

impl AsteriskMail {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Asterisk => "asterisk",
            Self::Voxmail => "voxmail",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "asterisk" => Some(Self::Asterisk),
            "voxmail" => Some(Self::Voxmail),
            _ => None,
        }
    }
}

impl AsteriskFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Wav49 => "wav49",
            Self::Gsm => "gsm",
            Self::Wav => "wav",
        }
    }

    /// The format named as in Asterisk's `format=` (any case), or `None`.
    pub fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_lowercase().as_str() {
            "wav49" => Some(Self::Wav49),
            "gsm" => Some(Self::Gsm),
            "wav" => Some(Self::Wav),
            _ => None,
        }
    }
}

/// Container and codec of stored audio, detected from its bytes. The names (`as_str`) are stored
/// in the database and never change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AudioFormat {
    /// RIFF/WAVE with 16-bit (or 8/24/32-bit) linear PCM.
    WavPcm,
    /// RIFF/WAVE with G.711 µ-law (format tag 7).
    WavUlaw,
    /// RIFF/WAVE with G.711 A-law (format tag 6).
    WavAlaw,
    /// RIFF/WAVE with IEEE float samples, 32 or 64 bits (format tag 3).
    WavFloat,
    /// RIFF/WAVE with GSM 06.10 in 65-byte blocks (format tag 0x31, "WAV49", Asterisk's `.WAV`).
    WavGsm,
    /// Headerless G.711 µ-law, 8 kHz mono (Asterisk `.ulaw`, `audio/PCMU`).
    RawUlaw,
    /// Headerless G.711 A-law, 8 kHz mono (Asterisk `.alaw`, `audio/PCMA`).
    RawAlaw,
    /// Headerless GSM 06.10, 33-byte frames, 8 kHz mono (Asterisk `.gsm`).
    RawGsm,
    /// Headerless 16-bit little-endian PCM, 8 kHz mono (Asterisk `.sln`).
    RawSlin,
    /// Headerless 16-bit little-endian PCM, 16 kHz mono (Asterisk `.sln16`).
    RawSlin16,
    /// Headerless 16-bit big-endian PCM, 8 kHz mono (RFC 2586 `audio/L16; rate=8000`).
    RawL16,
    /// Headerless 16-bit big-endian PCM, 16 kHz mono (`audio/L16; rate=16000`).
    RawL16_16k,
    /// MPEG-1/2 Layer III.
    Mp3,
    /// FLAC (native stream, `fLaC`).
    Flac,
    /// Vorbis in Ogg.
    OggVorbis,
    /// Opus in Ogg (RFC 7845).
    OggOpus,
    /// Opus in WebM/Matroska (what a browser's MediaRecorder writes).
    WebmOpus,
}

impl AudioFormat {
    /// Every format, in a stable order.
    pub const ALL: [AudioFormat; 17] = [
        Self::WavPcm,
        Self::WavUlaw,
        Self::WavAlaw,
        Self::WavFloat,
        Self::WavGsm,
        Self::RawUlaw,
        Self::RawAlaw,
        Self::RawGsm,
        Self::RawSlin,
        Self::RawSlin16,
        Self::RawL16,
        Self::RawL16_16k,
        Self::Mp3,
        Self::Flac,
        Self::OggVorbis,
        Self::OggOpus,
        Self::WebmOpus,
    ];

    /// The name stored in the database and shown in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::WavPcm => "wav_pcm",
            Self::WavUlaw => "wav_ulaw",
            Self::WavAlaw => "wav_alaw",
            Self::WavFloat => "wav_float",
            Self::WavGsm => "wav_gsm",
            Self::RawUlaw => "raw_ulaw",
            Self::RawAlaw => "raw_alaw",
            Self::RawGsm => "raw_gsm",
            Self::RawSlin => "raw_slin",
            Self::RawSlin16 => "raw_slin16",
            Self::RawL16 => "raw_l16",
            Self::RawL16_16k => "raw_l16_16k",
            Self::Mp3 => "mp3",
            Self::Flac => "flac",
            Self::OggVorbis => "ogg_vorbis",
            Self::OggOpus => "ogg_opus",
            Self::WebmOpus => "webm_opus",
        }
    }

    /// The format a stored name names.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|f| f.as_str() == s)
    }

    /// True for compressed formats without a fixed byte rate (MP3, FLAC, Vorbis, Opus): their
    /// duration is only known by decoding them.
    pub fn is_compressed(self) -> bool {
        matches!(
            self,
            Self::Mp3 | Self::Flac | Self::OggVorbis | Self::OggOpus | Self::WebmOpus
        )
    }

    /// The media type the original bytes are served with.
    pub fn content_type(self) -> &'static str {
        match self {
            Self::WavPcm | Self::WavUlaw | Self::WavAlaw | Self::WavFloat | Self::WavGsm => {
                "audio/wav"
            }
            Self::RawUlaw => "audio/PCMU",
            Self::RawAlaw => "audio/PCMA",
            Self::RawGsm => "audio/GSM",
            Self::RawSlin => "audio/x-sln; rate=8000; channels=1",
            Self::RawSlin16 => "audio/x-sln; rate=16000; channels=1",
            Self::RawL16 => "audio/L16; rate=8000; channels=1",
            Self::RawL16_16k => "audio/L16; rate=16000; channels=1",
            Self::Mp3 => "audio/mpeg",
            Self::Flac => "audio/flac",
            Self::OggVorbis => "audio/ogg; codecs=vorbis",
            Self::OggOpus => "audio/ogg; codecs=opus",
            Self::WebmOpus => "audio/webm; codecs=opus",
        }
    }

    /// File extension for this format (Asterisk's where Asterisk has one: `WAV` is WAV49).
    pub fn extension(self) -> &'static str {
        match self {
            Self::WavPcm | Self::WavUlaw | Self::WavAlaw | Self::WavFloat => "wav",
            Self::WavGsm => "WAV",
            Self::RawUlaw => "ulaw",
            Self::RawAlaw => "alaw",
            Self::RawGsm => "gsm",
            Self::RawSlin => "sln",
            Self::RawSlin16 => "sln16",
            Self::RawL16 | Self::RawL16_16k => "l16",
            Self::Mp3 => "mp3",
            Self::Flac => "flac",
            Self::OggVorbis => "ogg",
            Self::OggOpus => "opus",
            Self::WebmOpus => "webm",
        }
    }

    /// Codec name as shown in the API (ffmpeg's names).
    pub fn codec(self) -> &'static str {
        match self {
            Self::WavPcm | Self::RawSlin | Self::RawSlin16 => "pcm_s16le",
            Self::RawL16 | Self::RawL16_16k => "pcm_s16be",
            Self::WavUlaw | Self::RawUlaw => "pcm_mulaw",
            Self::WavAlaw | Self::RawAlaw => "pcm_alaw",
            Self::WavFloat => "pcm_float",
            Self::WavGsm => "gsm_ms",
            Self::RawGsm => "gsm",
            Self::Mp3 => "mp3",
            Self::Flac => "flac",
            Self::OggVorbis => "vorbis",
            Self::OggOpus | Self::WebmOpus => "opus",
        }
    }
}

/// Facts about a stored recording, found by reading it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AudioInfo {
    pub format: AudioFormat,
    pub sample_rate: u32,
    pub channels: u16,
    /// Bits per sample of the PCM (8 for G.711).
    pub bits_per_sample: u16,
    pub duration_ms: u64,
    pub byte_size: u64,
    /// Lower-case hex SHA-256 of the exact bytes stored.
    pub sha256: String,
}

/// Current Unix time in seconds.
pub fn now_secs() -> i64 {
    chrono::Utc::now().timestamp()
}

/// Current Unix time in milliseconds.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}
