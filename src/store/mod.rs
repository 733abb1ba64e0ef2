//! Persistence: the records services work with, the message-store seam, and its SQL implementation.

pub mod sql;

pub use sql::SqlStore;
pub use sql::imap::{IMAP_BUSY_MS, ImapChange, Recorded};

use async_trait::async_trait;

use crate::domain::{
    ApiKeyId, AudioFormat, Flag, Folder, GreetingKind, MailboxAddress, MailboxId, MessageId,
    MwiCounts, Role,
};

/// Failures of a store that callers act on.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The row does not exist.
    #[error("not found")]
    NotFound,
    /// A unique constraint (name, address) is already taken.
    #[error("{0}")]
    Conflict(String),
    /// A deposit's Idempotency-Key was used by an earlier deposit whose message (`message`, its
    /// id) has since been deleted.
    #[error(
        "the deposit with this Idempotency-Key was stored as message {message}, which has since \
         been deleted; it is not stored again"
    )]
    DepositDeleted { message: String },
    /// The target folder already holds `maxmsg` messages.
    #[error("folder {folder} of {mailbox} is full ({max} messages)")]
    MailboxFull {
        mailbox: String,
        folder: String,
        max: u32,
    },
    /// A row read back from the database does not make sense (edited by hand, or a bug).
    #[error("corrupt row: {0}")]
    Corrupt(String),
    /// The database failed or is unreachable.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// A message store other than the database (IMAP) is unreachable or failed; retry after
    /// `retry_after` seconds. The message never carries a password.
    #[error("{message}")]
    Unavailable {
        /// What failed, for the client.
        message: String,
        /// Seconds after which a retry may succeed.
        retry_after: u64,
    },
    /// This store cannot do the operation (yet).
    #[error("{0}")]
    Unsupported(String),
}

impl StoreError {
    /// Whether the database failed because its disk is full (SQLite's SQLITE_FULL, PostgreSQL's
    /// `disk_full`, or an I/O error saying so): an operator's problem, worth naming.
    pub fn is_disk_full(&self) -> bool {
        match self {
            Self::Database(sqlx::Error::Database(db)) => {
                matches!(db.code().as_deref(), Some("13") | Some("53100"))
                    || db.message().contains("disk is full")
                    || db.message().contains("No space left")
            }
            Self::Database(sqlx::Error::Io(e)) => e.kind() == std::io::ErrorKind::StorageFull,
            _ => false,
        }
    }
}

/// A tenant.
#[derive(Debug, Clone)]
pub struct ContextRecord {
    pub name: String,
    pub description: String,
    pub created_at: i64,
}

/// A mailbox and its settings (Asterisk realtime names).
#[derive(Debug, Clone)]
pub struct MailboxRecord {
    pub id: MailboxId,
    pub address: MailboxAddress,
    /// argon2 PHC string, empty when no PIN is set.
    pub pin_hash: String,
    pub fullname: String,
    pub email: String,
    pub pager: String,
    pub attach: bool,
    pub attachfmt: String,
    pub maxmsg: Option<u32>,
    pub maxsecs: Option<u32>,
    pub minsecs: Option<u32>,
    pub tz: String,
    pub language: String,
    pub deletevoicemail: bool,
    pub version: i64,
    pub created_at: i64,
    pub updated_at: i64,
}

/// Settings of a new mailbox, or the changed settings of an existing one (`None` = unchanged).
#[derive(Debug, Clone, Default)]
pub struct MailboxChanges {
    pub pin_hash: Option<String>,
    pub fullname: Option<String>,
    pub email: Option<String>,
    pub pager: Option<String>,
    pub attach: Option<bool>,
    pub attachfmt: Option<String>,
    pub maxmsg: Option<Option<u32>>,
    pub maxsecs: Option<Option<u32>>,
    pub minsecs: Option<Option<u32>>,
    pub tz: Option<String>,
    pub language: Option<String>,
    pub deletevoicemail: Option<bool>,
}

/// A stored voicemail message: Asterisk's ODBC columns plus ours.
#[derive(Debug, Clone)]
pub struct MessageRecord {
    pub id: MessageId,
    pub mailbox_id: MailboxId,
    pub mailbox: MailboxAddress,
    pub dir: String,
    pub msgnum: i64,
    pub folder: Folder,
    pub read: bool,
    pub flag: Flag,
    pub category: String,
    pub context: String,
    pub macrocontext: String,
    pub callerid: String,
    pub caller_id_num: String,
    pub caller_id_name: String,
    pub origtime: i64,
    pub duration_ms: i64,
    pub origmailbox: String,
    pub exten: String,
    pub rdnis: String,
    pub priority: i64,
    pub callerchan: String,
    pub msg_id: String,
    pub audio_key: String,
    pub audio_format: AudioFormat,
    pub sample_rate: u32,
    pub channels: u16,
    pub byte_size: i64,
    pub sha256: String,
    pub forwarded_from: Option<MessageId>,
    pub created_by: String,
    pub created_at: i64,
    pub updated_at: i64,
}

impl MessageRecord {
    /// Whole seconds, as Asterisk's `duration` column holds them (rounded half up).
    pub fn duration_secs(&self) -> i64 {
        (self.duration_ms + 500) / 1000
    }
}

/// Everything needed to insert a message; `dir`, `msgnum` and folder placement are decided by the
/// store inside the inserting transaction.
#[derive(Debug, Clone)]
pub struct NewMessage {
    pub id: MessageId,
    pub folder: Folder,
    pub flag: Flag,
    pub category: String,
    pub context: String,
    pub callerid: String,
    pub caller_id_num: String,
    pub caller_id_name: String,
    pub origtime: i64,
    pub duration_ms: i64,
    pub origmailbox: String,
    pub exten: String,
    pub rdnis: String,
    pub priority: i64,
    pub callerchan: String,
    pub msg_id: String,
    pub audio_key: String,
    pub audio_format: AudioFormat,
    pub sample_rate: u32,
    pub channels: u16,
    pub byte_size: i64,
    pub sha256: String,
    pub forwarded_from: Option<MessageId>,
    /// The copy in the context's Asterisk format for the `recording` column, when Asterisk nodes
    /// share the context's messages (the original stays in the audio store).
    pub asterisk_recording: Option<Vec<u8>>,
}

/// A mailbox's change: its counts after the change, in the same transaction.
#[derive(Debug, Clone)]
pub struct Changed<T> {
    pub value: T,
    pub counts: MwiCounts,
}

/// How a deposit ended.
#[derive(Debug, Clone)]
pub enum Inserted {
    /// A new message was stored.
    Created(Changed<MessageRecord>),
    /// The Idempotency-Key was seen before: the message stored then.
    Existing(MessageRecord),
}

/// One target of a forward.
#[derive(Debug, Clone)]
pub struct ForwardTarget {
    pub mailbox: MailboxRecord,
    pub maxmsg: u32,
    pub message: NewMessage,
}

/// A stored greeting.
#[derive(Debug, Clone)]
pub struct GreetingRecord {
    pub mailbox_id: MailboxId,
    pub kind: GreetingKind,
    pub audio_key: String,
    pub audio_format: AudioFormat,
    pub sample_rate: u32,
    pub channels: u16,
    pub duration_ms: i64,
    pub byte_size: i64,
    pub sha256: String,
    pub updated_at: i64,
    /// On writes: the copy in the context's Asterisk format, written as Asterisk's greeting row
    /// (msgnum -1 in `<mailbox dir>/unavail|busy|temp|greet`) when Asterisk nodes share the
    /// context's messages. Never read back.
    pub asterisk_recording: Option<Vec<u8>>,
}

/// An API key (never its token).
#[derive(Debug, Clone)]
pub struct ApiKeyRecord {
    pub id: ApiKeyId,
    pub name: String,
    pub role: Role,
    pub context: Option<String>,
    pub token_prefix: String,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

/// Outcome of reserving a PIN attempt.
#[derive(Debug, Clone)]
pub enum PinAttempt {
    /// The attempt may be checked against this hash.
    Allowed { pin_hash: String },
    /// Too many failures: locked until this Unix time.
    Locked { until: i64 },
}

/// The PIN limits a store enforces.
#[derive(Debug, Clone, Copy)]
pub struct PinPolicy {
    pub max_failures: u32,
    pub window_secs: i64,
    pub lockout_secs: i64,
}

/// A page of a listing.
#[derive(Debug, Clone)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub has_more: bool,
}

/// Storage of voicemail messages and greetings. Every change returns the mailbox's MWI counts,
/// computed and recorded (event outbox) in the changing transaction.
#[async_trait]
pub trait MessageStore: Send + Sync + 'static {
    /// Inserts a deposited message unless `idempotency_key` was seen for this mailbox; refuses when
    /// the target folder already holds `maxmsg` messages.
    async fn insert_message(
        &self,
        mailbox: &MailboxRecord,
        message: NewMessage,
        maxmsg: u32,
        idempotency_key: Option<&str>,
    ) -> Result<Inserted, StoreError>;

    /// The message a deposit with this Idempotency-Key stored, if any.
    async fn find_idempotent(
        &self,
        mailbox: &MailboxRecord,
        key: &str,
    ) -> Result<Option<MessageRecord>, StoreError>;

    /// Messages of a mailbox (optionally one folder) in deposit order, after the cursor.
    async fn list_messages(
        &self,
        mailbox: &MailboxRecord,
        folder: Option<&Folder>,
        after: Option<MessageId>,
        limit: u32,
    ) -> Result<Page<MessageRecord>, StoreError>;

    /// One message of a mailbox.
    async fn get_message(
        &self,
        mailbox: &MailboxRecord,
        id: MessageId,
    ) -> Result<MessageRecord, StoreError>;

    /// Moves a message and/or changes its read state.
    async fn update_message(
        &self,
        mailbox: &MailboxRecord,
        id: MessageId,
        folder: Option<Folder>,
        read: Option<bool>,
        maxmsg: u32,
    ) -> Result<Changed<MessageRecord>, StoreError>;

    /// Deletes a message; returns it so its audio can be removed.
    async fn delete_message(
        &self,
        mailbox: &MailboxRecord,
        id: MessageId,
    ) -> Result<Changed<MessageRecord>, StoreError>;

    /// Copies a message into other mailboxes (and removes the original unless `keep`), atomically.
    async fn forward_message(
        &self,
        source: &MailboxRecord,
        id: MessageId,
        targets: Vec<ForwardTarget>,
        keep: bool,
    ) -> Result<Vec<MessageRecord>, StoreError>;

    /// Current MWI counts of a mailbox.
    async fn counts(&self, mailbox: &MailboxRecord) -> Result<MwiCounts, StoreError>;

    /// Stores or replaces a greeting; returns the replaced one's audio key.
    async fn put_greeting(
        &self,
        mailbox: &MailboxRecord,
        greeting: GreetingRecord,
    ) -> Result<Option<String>, StoreError>;

    /// One greeting.
    async fn get_greeting(
        &self,
        mailbox: &MailboxRecord,
        kind: GreetingKind,
    ) -> Result<GreetingRecord, StoreError>;

    /// Removes a greeting; returns it so its audio can be removed.
    async fn delete_greeting(
        &self,
        mailbox: &MailboxRecord,
        kind: GreetingKind,
    ) -> Result<GreetingRecord, StoreError>;
}

/// A webhook: where a context's events are POSTed.
#[derive(Clone)]
pub struct WebhookRecord {
    pub id: String,
    pub context: String,
    pub url: String,
    /// Event types delivered; empty = all.
    pub event_types: Vec<String>,
    /// HMAC key of the signatures.
    pub secret: String,
    pub active: bool,
    /// Outbox position at creation: only events after it are delivered.
    pub after_seq: i64,
    pub created_at: i64,
    pub updated_at: i64,
}

impl std::fmt::Debug for WebhookRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookRecord")
            .field("id", &self.id)
            .field("context", &self.context)
            .field("url", &self.url)
            .field("event_types", &self.event_types)
            .field("secret", &"***")
            .field("active", &self.active)
            .finish()
    }
}

impl WebhookRecord {
    /// Whether this webhook takes the event.
    pub fn wants(&self, e: &crate::domain::Event) -> bool {
        self.active
            && e.seq > self.after_seq
            && e.address.context == self.context
            && (self.event_types.is_empty() || self.event_types.contains(&e.event_type))
    }
}

/// A webhook to store.
pub struct NewWebhook {
    pub id: String,
    pub context: String,
    pub url: String,
    pub event_types: Vec<String>,
    pub secret: String,
    pub active: bool,
}

/// A delivery leased for sending.
#[derive(Clone)]
pub struct DeliveryJob {
    pub id: i64,
    pub webhook_id: String,
    pub url: String,
    pub secret: String,
    pub event_type: String,
    pub payload: String,
    /// Attempts made before this one.
    pub attempts: u32,
    pub created_at: i64,
}

/// A delivery and its attempts.
#[derive(Debug, Clone)]
pub struct DeliveryRecord {
    pub id: i64,
    pub webhook_id: String,
    pub event_seq: i64,
    pub event_type: String,
    /// pending, delivered or dead.
    pub status: String,
    /// Attempts made so far.
    pub attempt_count: i64,
    pub attempts: Vec<AttemptRecord>,
    pub next_attempt_ms: i64,
    pub last_status: Option<i64>,
    pub last_error: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// One try of a delivery.
#[derive(Debug, Clone)]
pub struct AttemptRecord {
    pub attempt: i64,
    pub at_ms: i64,
    pub http_status: Option<i64>,
    pub error: Option<String>,
    pub duration_ms: i64,
}

/// How a target takes MWI state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MwiTargetKind {
    /// Asterisk ARI: `PUT {url}/ari/mailboxes/{mailbox}@{context}?oldMessages=O&newMessages=N`.
    Ari,
    /// Asterisk AMI: `Action: MWIUpdate` on a kept-open manager connection to `host:port`.
    Ami,
    /// SIP: an unsolicited `NOTIFY` (RFC 3842 message-summary) to a `sip:` URI.
    Sip,
}

impl MwiTargetKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ari => "ari",
            Self::Ami => "ami",
            Self::Sip => "sip",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "ari" => Some(Self::Ari),
            "ami" => Some(Self::Ami),
            "sip" => Some(Self::Sip),
            _ => None,
        }
    }
}

/// A place MWI counts are pushed to.
#[derive(Clone)]
pub struct MwiTargetRecord {
    pub id: String,
    pub context: String,
    pub kind: MwiTargetKind,
    pub url: String,
    pub username: String,
    pub secret: String,
    /// Only this mailbox (empty = every mailbox of the context).
    pub mailbox: String,
    pub active: bool,
    pub created_at: i64,
    pub updated_at: i64,
}

impl std::fmt::Debug for MwiTargetRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MwiTargetRecord")
            .field("id", &self.id)
            .field("context", &self.context)
            .field("kind", &self.kind)
            .field("url", &self.url)
            .field("username", &self.username)
            .field("secret", &"***")
            .field("mailbox", &self.mailbox)
            .field("active", &self.active)
            .finish()
    }
}

impl MwiTargetRecord {
    /// Whether this target takes the counts of `address`.
    pub fn wants(&self, address: &MailboxAddress) -> bool {
        self.active
            && self.context == address.context
            && (self.mailbox.is_empty() || self.mailbox == address.mailbox)
    }
}

/// A push leased for sending.
#[derive(Debug, Clone)]
pub struct MwiPushJob {
    pub target: MwiTargetRecord,
    pub mailbox_id: MailboxId,
    pub address: MailboxAddress,
    pub wanted_version: i64,
    /// Failed attempts so far.
    pub attempts: u32,
    /// The lease this job holds: its result is only recorded while the row still carries it, so a
    /// resync or another node's claim in between is never overwritten.
    pub lease: i64,
}

/// Push state of one mailbox at one target.
#[derive(Debug, Clone)]
pub struct MwiPushRecord {
    pub target_id: String,
    pub address: MailboxAddress,
    pub mailbox_id: String,
    pub wanted_version: i64,
    pub pushed_version: i64,
    pub attempts: i64,
    pub next_attempt_ms: i64,
    pub last_error: Option<String>,
    pub last_pushed_ms: Option<i64>,
}

/// Which notification an email job sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmailKind {
    /// The full notice to `email`, with the recording attached when the mailbox says `attach`.
    Email,
    /// The short text-only notice to `pager`.
    Pager,
}

impl EmailKind {
    /// The name stored in `email_jobs.kind`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Email => "email",
            Self::Pager => "pager",
        }
    }

    /// The kind a stored name stands for.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "email" => Some(Self::Email),
            "pager" => Some(Self::Pager),
            _ => None,
        }
    }
}

/// A queued notification email, leased for sending.
#[derive(Debug, Clone)]
pub struct EmailJob {
    /// Row id; also part of the mail's Message-ID.
    pub id: i64,
    /// The message the mail is about.
    pub message_id: MessageId,
    /// The mailbox that received the message.
    pub mailbox_id: MailboxId,
    /// Full email or pager notice.
    pub kind: EmailKind,
    /// Addresses as the mailbox held them when the message arrived (`|` or `,` separated).
    pub recipients: String,
    /// The message's zero-based position at deposit (`msg%04d`; `${VM_MSGNUM}` is this + 1).
    pub msgnum: i64,
    /// For a forwarded copy: the forwarding mailbox's number and name.
    pub forwarded_by: Option<(String, String)>,
    /// Attempts made before this one.
    pub attempts: u32,
    /// Lease token: the job's result is recorded only while it still holds this lease.
    pub lease_until_ms: i64,
    /// When the job was queued (the deposit or the forward), Unix seconds.
    pub created_at: i64,
}

/// The email state of a message, as `GET …/messages/{id}` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmailState {
    /// pending, sent or failed.
    pub status: String,
    /// SMTP attempts made.
    pub attempts: i64,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
}

/// A context's overrides of the `[email]` template settings; `None` = the global value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContextEmailSettings {
    /// Asterisk `serveremail`: the From address.
    pub serveremail: Option<String>,
    /// Asterisk `fromstring`: the From display name (a template).
    pub fromstring: Option<String>,
    /// Asterisk `emailsubject` template.
    pub emailsubject: Option<String>,
    /// Asterisk `emailbody` template.
    pub emailbody: Option<String>,
    /// Asterisk `pagersubject` template.
    pub pagersubject: Option<String>,
    /// Asterisk `pagerbody` template.
    pub pagerbody: Option<String>,
    /// Asterisk `emaildateformat`: strftime format of `${VM_DATE}` in emails.
    pub emaildateformat: Option<String>,
    /// Asterisk `pagerfromstring`: the pager notice's From display name (a template).
    pub pagerfromstring: Option<String>,
    /// Asterisk `pagerdateformat`: strftime format of `${VM_DATE}` in pager notices.
    pub pagerdateformat: Option<String>,
}
