//! The metadata database (`[database]`): URL, pool and polling.

use serde::{Deserialize, Serialize};

use super::{ConfigError, redact_url};

/// Database settings.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    /// Database URL: `sqlite://PATH`, `postgres://user:pass@host/db` or
    /// `mysql://user:pass@host/db` (also `mariadb://`). Empty = SQLite at `<data_dir>/voxmail.db`.
    pub url: String,
    /// Largest number of pooled connections.
    pub max_connections: u32,
    /// On MySQL/MariaDB, how often (milliseconds) a node polls the outbox for events committed by
    /// other nodes (PostgreSQL nodes are woken by LISTEN/NOTIFY; SQLite has one node). On
    /// PostgreSQL and MySQL/MariaDB also how often it looks for changes Asterisk's app_voicemail
    /// made in the shared messages table.
    pub poll_interval_ms: u64,
    /// How long (milliseconds) a request waits for a pooled connection before it fails with a
    /// 503. Bounds every request, and `/readyz`, while the database is unreachable: a connection
    /// is tried again and again until then. Must be at least 1.
    pub acquire_timeout_ms: u64,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self {
            url: String::new(),
            max_connections: 16,
            poll_interval_ms: 200,
            acquire_timeout_ms: 2000,
        }
    }
}

impl std::fmt::Debug for DatabaseConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DatabaseConfig")
            .field("url", &redact_url(&self.url))
            .field("max_connections", &self.max_connections)
            .field("poll_interval_ms", &self.poll_interval_ms)
            .field("acquire_timeout_ms", &self.acquire_timeout_ms)
            .finish()
    }
}

impl DatabaseConfig {
    /// Checks the pool and polling settings.
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if self.poll_interval_ms == 0 {
            return Err(ConfigError::Value(
                "database.poll_interval_ms must be at least 1".into(),
            ));
        }
        if self.acquire_timeout_ms == 0 {
            return Err(ConfigError::Value(
                "database.acquire_timeout_ms must be at least 1".into(),
            ));
        }
        if self.max_connections == 0 {
            return Err(ConfigError::Value(
                "database.max_connections must be at least 1".into(),
            ));
        }
        Ok(())
    }
}
