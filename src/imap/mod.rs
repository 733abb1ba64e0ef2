//! IMAP storage building blocks (issue #7): voicemail kept in the user's mailbox in Asterisk's
//! `IMAP_STORAGE` format, so that Asterisk, voxmail and ordinary mail clients share it.
//!
//! - [`format`]: composes a voicemail exactly as Asterisk appends it and parses one back (from
//!   Asterisk, voxmail, or servers that lower-case header names); ordinary mail parses to `None`.
//! - [`client`]: a small async IMAP client over `async-imap` with the operations a message store
//!   needs — list, fetch (without setting `\Seen`), append (`\Flagged` when urgent, the new UID via
//!   UIDPLUS), mark read/unread, move, delete (only ever the target UID), counts as Asterisk counts
//!   them, and waiting for a change (IDLE, or polling where the server has no IDLE).
//!
//! - [`pool`]: a bounded pool of connections per server.
//!
//! `service::imap_store` is the message store over these; docs/design/0017-imap-storage.md and
//! docs/design/0018-imap-message-store.md.

pub mod client;
pub mod format;
pub mod pool;

pub use client::{
    Change, Counts, FetchedVoicemail, ImapAccount, ImapClient, ImapError, ImapTls, Owner,
    VoicemailSummary,
};
pub use format::{
    AudioAttachment, Envelope, ParsedAudio, ParsedVoicemail, VoicemailMeta, compose, parse,
};
pub use pool::{ImapPool, Lease};
