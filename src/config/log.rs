//! Logging (`[log]`).

use serde::{Deserialize, Serialize};

/// Logging settings.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `tracing` filter, e.g. `info` or `voxmail=debug,tower_http=info`. `RUST_LOG` overrides it.
    /// The default quiets dependencies that report routine work at INFO (symphonia logs every
    /// Ogg stream it opens).
    pub filter: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            filter: DEFAULT_LOG_FILTER.into(),
        }
    }
}

/// `log.filter` when none is set (and when the one set cannot be parsed).
pub const DEFAULT_LOG_FILTER: &str = "info,symphonia=warn";
