//! Configuration: defaults, then the TOML file, then `VOXMAIL_*` environment variables (`__` between
//! nested names, e.g. `VOXMAIL_DATABASE__URL`), then command-line flags.
//!
//! One file per concern, each with its structs, their defaults and their checks: `http`,
//! `database`, `audio` (with `[audio.s3]`), `voicemail` (with `[pin]`), `events` (with
//! `[webhooks]` and `[mwi]`), `email`, `imap`, `ui` and `log`. This file has the root [`Config`],
//! loading, [`Overrides`], [`ConfigError`], the top-level validation and [`redact_url`]; every
//! type is re-exported here, so it is `crate::config::X` wherever it is defined.

mod audio;
mod database;
mod email;
mod events;
mod http;
mod imap;
mod log;
mod ui;
mod voicemail;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

pub use audio::{AudioConfig, AudioStore, S3Config};
pub use database::DatabaseConfig;
pub use email::{EmailConfig, SmtpTls};
pub use events::{EventsConfig, MwiConfig, WebhooksConfig};
pub use http::HttpConfig;
pub use imap::{
    ImapConfig, ImapContextConfig, ImapMailboxLogin, ImapTlsMode, KeptIn, MailboxKeptIn,
};
pub use log::{DEFAULT_LOG_FILTER, LogConfig};
pub use ui::UiConfig;
pub use voicemail::{PinConfig, VoicemailConfig};

/// The commented example configuration (`voxmail config print-default`).
pub const EXAMPLE_TOML: &str = include_str!("../../config/voxmail.example.toml");

/// The whole configuration.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Directory for the embedded defaults: the SQLite database and the audio directory.
    pub data_dir: PathBuf,
    /// Name of this node, recorded on the messages it stores (`created_by`) and in events.
    /// Empty = the host name.
    pub node_id: String,
    /// HTTP listener.
    pub http: HttpConfig,
    /// Metadata database.
    pub database: DatabaseConfig,
    /// Audio storage.
    pub audio: AudioConfig,
    /// Voicemail behaviour and mailbox defaults.
    pub voicemail: VoicemailConfig,
    /// PIN brute-force protection.
    pub pin: PinConfig,
    /// Event outbox.
    pub events: EventsConfig,
    /// Webhook delivery.
    pub webhooks: WebhooksConfig,
    /// MWI pushes to Asterisk (ARI, AMI, SIP NOTIFY).
    pub mwi: MwiConfig,
    /// Voicemail-to-email: SMTP, retries and the global Asterisk template defaults.
    pub email: EmailConfig,
    /// The admin web UI at `/ui`.
    pub ui: UiConfig,
    /// IMAP storage: contexts whose messages live in IMAP folders, in Asterisk's format.
    pub imap: ImapConfig,
    /// Logging.
    pub log: LogConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("./data"),
            node_id: String::new(),
            http: HttpConfig::default(),
            database: DatabaseConfig::default(),
            audio: AudioConfig::default(),
            voicemail: VoicemailConfig::default(),
            pin: PinConfig::default(),
            events: EventsConfig::default(),
            webhooks: WebhooksConfig::default(),
            mwi: MwiConfig::default(),
            email: EmailConfig::default(),
            ui: UiConfig::default(),
            imap: ImapConfig::default(),
            log: LogConfig::default(),
        }
    }
}

/// Hides a password in a URL (`scheme://user:***@host/…`) for logs.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let userinfo = &url[s + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..s + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

/// Settings given on the command line; they win over everything else.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub config_file: Option<PathBuf>,
    pub data_dir: Option<PathBuf>,
    pub database_url: Option<String>,
    pub listen: Option<SocketAddr>,
}

/// Why the configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration file {0} does not exist")]
    MissingFile(PathBuf),
    #[error("invalid configuration: {0}")]
    Invalid(#[from] Box<figment::Error>),
    #[error("invalid configuration: {0}")]
    Value(String),
}

impl Config {
    /// Loads defaults → TOML file → `VOXMAIL_*` env → flags. Without `--config`, `VOXMAIL_CONFIG` or
    /// `./voxmail.toml` (if present) is the file.
    pub fn load(o: &Overrides) -> Result<Self, ConfigError> {
        let file = match &o.config_file {
            Some(f) if !f.exists() => return Err(ConfigError::MissingFile(f.clone())),
            Some(f) => Some(f.clone()),
            None => match std::env::var_os("VOXMAIL_CONFIG") {
                Some(f) if !Path::new(&f).exists() => {
                    return Err(ConfigError::MissingFile(f.into()));
                }
                Some(f) => Some(PathBuf::from(f)),
                None => Some(PathBuf::from("voxmail.toml")).filter(|p| p.exists()),
            },
        };
        let mut fig = Figment::from(Serialized::defaults(Config::default()));
        if let Some(f) = file {
            fig = fig.merge(Toml::file_exact(f));
        }
        fig = fig.merge(Env::prefixed("VOXMAIL_").split("__").ignore(&["config"]));
        if let Some(d) = &o.data_dir {
            fig = fig.merge(Serialized::default("data_dir", d));
        }
        if let Some(u) = &o.database_url {
            fig = fig.merge(Serialized::default("database.url", u));
        }
        if let Some(l) = &o.listen {
            fig = fig.merge(Serialized::default("http.listen", l));
        }
        let cfg: Config = fig.extract().map_err(Box::new)?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Checks what the types cannot: the root's own settings, then each section's `validate`, in
    /// a fixed order (the first failing check is the one reported).
    fn validate(&self) -> Result<(), ConfigError> {
        if self.node_id.chars().count() > 64 {
            return Err(ConfigError::Value(
                "node_id: at most 64 characters (it is stored with every message and event)".into(),
            ));
        }
        self.imap.validate()?;
        self.audio.validate()?;
        self.voicemail.validate()?;
        self.email.validate()?;
        self.database.validate()?;
        Ok(())
    }

    /// The database URL in effect (SQLite under `data_dir` unless set).
    pub fn database_url(&self) -> String {
        if self.database.url.is_empty() {
            format!(
                "sqlite://{}?mode=rwc",
                self.data_dir.join("voxmail.db").display()
            )
        } else {
            self.database.url.clone()
        }
    }

    /// The audio directory in effect.
    pub fn audio_dir(&self) -> PathBuf {
        if self.audio.dir.as_os_str().is_empty() {
            self.data_dir.join("audio")
        } else {
            self.audio.dir.clone()
        }
    }

    /// Where renditions (and, for the `db` store, uploads) are written before they are stored:
    /// `tmp/` of the audio directory for the `fs` store, on the same disk as the audio (it stages
    /// its own writes there too); `<data_dir>/tmp` for the others.
    pub fn scratch_dir(&self) -> PathBuf {
        if self.audio.store == AudioStore::Fs {
            self.audio_dir().join("tmp")
        } else {
            self.data_dir.join("tmp")
        }
    }

    /// This node's name.
    pub fn node_id(&self) -> String {
        if !self.node_id.is_empty() {
            return self.node_id.clone();
        }
        std::fs::read_to_string("/etc/hostname")
            .ok()
            .map(|s| s.trim().chars().take(64).collect::<String>())
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "voxmail".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_file_is_the_defaults() {
        let from_example: Config = Figment::from(Toml::string(EXAMPLE_TOML))
            .extract()
            .expect("example parses");
        let a = serde_json::to_value(&from_example).unwrap();
        let b = serde_json::to_value(Config::default()).unwrap();
        assert_eq!(a, b);
    }

    #[test]
    fn redacts_passwords_in_urls() {
        assert_eq!(
            redact_url("postgres://u:secret@h/db"),
            "postgres://u:***@h/db"
        );
        assert_eq!(redact_url("sqlite://x.db"), "sqlite://x.db");
    }
}
