//! `/v1` handlers.

pub mod audio;
pub mod contexts;
pub mod events;
pub mod greetings;
pub mod health;
pub mod mailboxes;
pub mod messages;
pub mod metrics;
pub mod mwi_targets;
pub mod queues;
pub mod views;
pub mod webhooks;

use crate::domain::MailboxAddress;
use crate::http::error::ApiError;

/// Default and largest page sizes.
pub const DEFAULT_LIMIT: u32 = 50;
pub const MAX_LIMIT: u32 = 500;

/// Parses `?limit=` (absent = default, above the maximum = the maximum).
pub fn limit(v: Option<&str>) -> Result<u32, ApiError> {
    match v {
        None | Some("") => Ok(DEFAULT_LIMIT),
        Some(s) => match s.parse::<u32>() {
            Ok(0) | Err(_) => Err(ApiError::invalid(format!(
                "limit must be a whole number 1..={MAX_LIMIT}"
            ))),
            Ok(n) => Ok(n.min(MAX_LIMIT)),
        },
    }
}

/// Parses the `{mailbox}@{context}` path segment.
pub fn address(s: &str) -> Result<MailboxAddress, ApiError> {
    s.parse::<MailboxAddress>()
        .map_err(|e| ApiError::new("invalid-mailbox-address", e.to_string()))
}

/// One INFO line for an upload refused for what was sent (413, 415, 422): the client may never
/// say why its recording vanished, and the operator needs to see which mailbox refuses what.
/// Never the body.
pub fn log_refused_upload(what: &str, address: &MailboxAddress, e: &ApiError) {
    if matches!(e.status(), 413 | 415 | 422) {
        tracing::info!(
            mailbox.address = %address,
            problem = e.slug(),
            detail = e.detail(),
            "{what} refused"
        );
    }
}
