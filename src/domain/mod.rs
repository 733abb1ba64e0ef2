//! The voicemail vocabulary (Asterisk's), with no I/O.

mod address;
mod event;
mod folder;
mod ids;
mod mwi;

pub use address::{AddressError, MailboxAddress, validate_context_name};
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

/// Container and codec of stored audio, detected from its bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AudioFormat {
    /// RIFF/WAVE with 16-bit (or 8/24/32-bit) linear PCM.
    WavPcm,
    /// RIFF/WAVE with G.711 µ-law (format tag 7).
    WavUlaw,
    /// RIFF/WAVE with G.711 A-law (format tag 6).
    WavAlaw,
    /// Headerless G.711 µ-law, 8 kHz mono (Asterisk `.ulaw`, `audio/PCMU`).
    RawUlaw,
    /// Headerless G.711 A-law, 8 kHz mono (Asterisk `.alaw`, `audio/PCMA`).
    RawAlaw,
}

impl AudioFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::WavPcm => "wav_pcm",
            Self::WavUlaw => "wav_ulaw",
            Self::WavAlaw => "wav_alaw",
            Self::RawUlaw => "raw_ulaw",
            Self::RawAlaw => "raw_alaw",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            Self::WavPcm,
            Self::WavUlaw,
            Self::WavAlaw,
            Self::RawUlaw,
            Self::RawAlaw,
        ]
        .into_iter()
        .find(|f| f.as_str() == s)
    }

    /// The media type the original bytes are served with.
    pub fn content_type(self) -> &'static str {
        match self {
            Self::WavPcm | Self::WavUlaw | Self::WavAlaw => "audio/wav",
            Self::RawUlaw => "audio/PCMU",
            Self::RawAlaw => "audio/PCMA",
        }
    }

    /// File extension Asterisk would use for this format.
    pub fn extension(self) -> &'static str {
        match self {
            Self::WavPcm | Self::WavUlaw | Self::WavAlaw => "wav",
            Self::RawUlaw => "ulaw",
            Self::RawAlaw => "alaw",
        }
    }

    /// Codec name as shown in the API.
    pub fn codec(self) -> &'static str {
        match self {
            Self::WavPcm => "pcm_s16le",
            Self::WavUlaw | Self::RawUlaw => "pcm_mulaw",
            Self::WavAlaw | Self::RawAlaw => "pcm_alaw",
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
