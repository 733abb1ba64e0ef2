use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Message-waiting counts of a mailbox, as RFC 3842 reports them: `new/old (urgent_new/urgent_old)`.
/// Urgent counts are a subset of new and old. `version` grows with every change of the mailbox.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct MwiCounts {
    pub new: u32,
    pub old: u32,
    pub urgent_new: u32,
    pub urgent_old: u32,
    pub version: i64,
}

impl MwiCounts {
    /// The RFC 3842 `Voice-Message` value, e.g. `2/8 (0/2)`.
    pub fn voice_message(&self) -> String {
        format!(
            "{}/{} ({}/{})",
            self.new, self.old, self.urgent_new, self.urgent_old
        )
    }

    pub fn messages_waiting(&self) -> bool {
        self.new > 0
    }
}
