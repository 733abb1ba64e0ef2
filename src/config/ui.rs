//! The admin web UI (`[ui]`): sessions, cookies and sign-in lockout.

use serde::{Deserialize, Serialize};

/// Admin web UI settings (`/ui`; admins are made with `voxmail admin create`).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UiConfig {
    /// Serve the admin web UI at `/ui` (`/` then redirects there).
    pub enabled: bool,
    /// A session ends this many seconds after sign-in, used or not.
    pub session_ttl_secs: u64,
    /// A session ends when unused for this many seconds.
    pub idle_timeout_secs: u64,
    /// Mark the session cookie `Secure` on every response. When false it is `Secure` only when
    /// the request came over TLS as a proxy says with `X-Forwarded-Proto: https`.
    pub secure_cookie: bool,
    /// Failed sign-ins allowed within `login_window_secs` before the admin account locks.
    pub login_max_failures: u32,
    /// Window in which failed sign-ins are counted, in seconds.
    pub login_window_secs: u64,
    /// How long a locked admin account refuses sign-ins, in seconds.
    pub login_lockout_secs: u64,
}

impl Default for UiConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            session_ttl_secs: 12 * 3600,
            idle_timeout_secs: 3600,
            secure_cookie: false,
            login_max_failures: 5,
            login_window_secs: 15 * 60,
            login_lockout_secs: 15 * 60,
        }
    }
}
