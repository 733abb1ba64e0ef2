use serde::Serialize;
use utoipa::ToSchema;

use super::{MailboxAddress, MailboxId, MessageId, MwiCounts};

/// Every event type the outbox records.
pub const EVENT_TYPES: [&str; 9] = [
    "message.deposited",
    "message.updated",
    "message.moved",
    "message.deleted",
    "greeting.changed",
    "greeting.deleted",
    "mailbox.created",
    "mailbox.deleted",
    "mailbox.changed",
];

/// A change of a mailbox, as recorded in the outbox in the changing transaction.
#[derive(Debug, Clone)]
pub struct Event {
    /// Position in the outbox; grows with every event (the SSE event id).
    pub seq: i64,
    /// `message.deposited`, `message.updated`, `message.moved`, `message.deleted`,
    /// `greeting.changed`, `greeting.deleted`, `mailbox.created`, `mailbox.deleted`, and
    /// `mailbox.changed` (the counts of an IMAP-backed mailbox changed outside voxmail, e.g. in
    /// a mail client).
    pub event_type: String,
    pub address: MailboxAddress,
    pub mailbox_id: MailboxId,
    pub message_id: Option<MessageId>,
    /// Counts after the change, with the mailbox's version.
    pub counts: MwiCounts,
    pub node_id: String,
    pub created_at: i64,
}

/// An event as consumers receive it (SSE data, webhook body).
#[derive(Debug, Serialize, ToSchema)]
pub struct EventView {
    pub seq: i64,
    #[serde(rename = "type")]
    pub event_type: String,
    /// `mailbox@context`.
    pub mailbox: String,
    pub context: String,
    pub message_id: Option<String>,
    pub counts: MwiCounts,
    pub version: i64,
    pub node: String,
    /// Unix seconds.
    pub time: i64,
}

impl From<&Event> for EventView {
    fn from(e: &Event) -> Self {
        Self {
            seq: e.seq,
            event_type: e.event_type.clone(),
            mailbox: e.address.to_string(),
            context: e.address.context.clone(),
            message_id: e.message_id.map(|m| m.to_string()),
            counts: e.counts,
            version: e.counts.version,
            node: e.node_id.clone(),
            time: e.created_at,
        }
    }
}

/// Which events a consumer wants.
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    /// Only this context (a scoped key's context, or asked for).
    pub context: Option<String>,
    /// Only this mailbox.
    pub mailbox: Option<MailboxAddress>,
}

impl EventFilter {
    pub fn matches(&self, e: &Event) -> bool {
        self.context
            .as_deref()
            .is_none_or(|c| c == e.address.context)
            && self.mailbox.as_ref().is_none_or(|m| *m == e.address)
    }
}
