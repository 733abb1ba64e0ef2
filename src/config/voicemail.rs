//! Voicemail behaviour and mailbox defaults (`[voicemail]`) and PIN brute-force protection
//! (`[pin]`).

use serde::{Deserialize, Serialize};

use super::ConfigError;

/// Voicemail behaviour.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VoicemailConfig {
    /// Asterisk spool directory used to build the ODBC `dir` column
    /// (`<spool_dir>/voicemail/<context>/<mailbox>/<folder>`).
    pub spool_dir: String,
    /// Messages per folder when a mailbox sets no `maxmsg` (Asterisk's default is 100).
    pub default_maxmsg: u32,
    /// Longest message in seconds when a mailbox sets no `maxsecs`.
    pub default_maxsecs: u32,
    /// Shortest message in seconds when a mailbox sets no `minsecs`; shorter ones are refused.
    pub default_minsecs: u32,
    /// Seconds an `Idempotency-Key` is remembered.
    pub idempotency_ttl_secs: u64,
}

impl Default for VoicemailConfig {
    fn default() -> Self {
        Self {
            spool_dir: "/var/spool/asterisk".into(),
            default_maxmsg: 100,
            default_maxsecs: 300,
            default_minsecs: 0,
            idempotency_ttl_secs: 24 * 3600,
        }
    }
}

impl VoicemailConfig {
    /// Checks the mailbox defaults.
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if self.default_maxmsg == 0 || self.default_maxmsg > 9999 {
            return Err(ConfigError::Value(
                "voicemail.default_maxmsg must be 1..=9999".into(),
            ));
        }
        Ok(())
    }
}

/// PIN verification limits.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PinConfig {
    /// Failed attempts allowed within `window_secs` before the mailbox locks.
    pub max_failures: u32,
    /// Window in which failures are counted, in seconds.
    pub window_secs: u64,
    /// How long a locked mailbox refuses PIN attempts, in seconds.
    pub lockout_secs: u64,
}

impl Default for PinConfig {
    fn default() -> Self {
        Self {
            max_failures: 5,
            window_secs: 15 * 60,
            lockout_secs: 15 * 60,
        }
    }
}
