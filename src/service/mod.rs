//! The use cases. HTTP handlers and CLI commands call these, never the stores directly.

mod admin;
mod asterisk;
mod audio_in;
mod auth;
pub mod cpu_pool;
mod deposit;
mod directory;
mod email;
mod events;
mod greetings;
mod imap_store;
pub mod imap_watch;
mod messages;
mod mwi_targets;
mod orphans;
mod pin;
mod rendition;
mod ui_support;
mod webhooks;

pub use admin::{
    Admin, AdminAccount, AuditEntry, Client as AdminClient, ContextUsage, Dashboard,
    DeliveryHealth, DeliveryQueue, LoginOutcome, MailboxWithCounts, NodeMetrics, QueueHealth,
    QueueTries, Session as AdminSession, Totals, same_token,
};
pub use audio_in::ReceivedAudio;
pub use auth::NewApiKey;
pub use deposit::DepositMeta;
pub use directory::{ATTACH_FORMATS, MailboxCursor, MailboxSettings};
pub use email::{ContextEmail, validate_email_settings};
pub use events::{EventStream, StreamItem};
pub use messages::{AudioStream, ForwardRequest};
pub use mwi_targets::MwiTargetSettings;
pub use orphans::OrphanSweep;
pub use rendition::{Original, RenditionCache};
pub use ui_support::{FolderListing, UI_FOLDERS};
pub use webhooks::WebhookSettings;

use std::sync::Arc;

use crate::audio::AudioError;
use crate::blob::{BlobError, BlobKey, BlobStore};
use crate::config::Config;
use crate::domain::{AddressError, FolderError, MailboxAddress, Principal};
use crate::store::{MailboxRecord, MessageStore, SqlStore, StoreError};

/// Failures of a use case, each one a cause a client can act on.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The thing does not exist, or the caller may not see it.
    #[error("{0} not found")]
    NotFound(String),
    /// The caller's role may not do this.
    #[error("{0}")]
    Forbidden(String),
    /// The request is malformed or a value is invalid.
    #[error("{0}")]
    Invalid(String),
    /// A mailbox address is malformed.
    #[error(transparent)]
    Address(#[from] AddressError),
    /// A folder name is not valid.
    #[error(transparent)]
    Folder(#[from] FolderError),
    /// The name or address is already taken.
    #[error("{0}")]
    Conflict(String),
    /// A retried deposit's first try was stored, and its message deleted since.
    #[error("{0}")]
    DepositDeleted(String),
    /// The target folder already holds its maximum number of messages.
    #[error("{0}")]
    MailboxFull(String),
    /// The recording is not acceptable.
    #[error(transparent)]
    Audio(#[from] AudioError),
    /// The recording is shorter than the mailbox's `minsecs`.
    #[error("the recording lasts {duration_ms} ms, shorter than the minimum of {min_secs} s")]
    TooShort { duration_ms: u64, min_secs: u32 },
    /// The recording is longer than the mailbox's `maxsecs`.
    #[error("the recording is longer than the maximum of {max_secs} s")]
    TooLong { max_secs: u32 },
    /// The body is larger than the configured maximum.
    #[error("the request body is larger than {max_bytes} bytes")]
    PayloadTooLarge { max_bytes: u64 },
    /// The request body could not be read (client went away, broken framing).
    #[error("the request body could not be read: {0}")]
    Body(String),
    /// Too many failed PIN attempts: try again after this many seconds.
    #[error("too many failed PIN attempts; try again in {retry_after} s")]
    Locked { retry_after: u64 },
    /// The PIN is wrong.
    #[error("wrong PIN")]
    PinMismatch,
    /// The requested byte range lies outside the audio.
    #[error("range not satisfiable")]
    RangeNotSatisfiable { size: u64 },
    /// A back end (database, audio storage) is unavailable or failed.
    #[error("{0}")]
    Unavailable(String),
    /// The mailbox's IMAP message store is unreachable: retry after `retry_after` seconds.
    #[error("{message}")]
    ImapUnavailable {
        /// What failed (never a password).
        message: String,
        /// Seconds after which a retry may succeed.
        retry_after: u64,
    },
    /// The operation is not available for this mailbox's message store (yet).
    #[error("{0}")]
    NotImplemented(String),
    /// The node is at a configured limit of concurrent work (decoders, transcoders): retry after
    /// `retry_after` seconds. Nothing was stored.
    #[error("{message}")]
    Busy {
        /// What is saturated.
        message: String,
        /// Seconds after which a retry may succeed.
        retry_after: u64,
    },
}

impl From<StoreError> for ServiceError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound => Self::NotFound("resource".into()),
            StoreError::Conflict(m) => Self::Conflict(m),
            e @ StoreError::DepositDeleted { .. } => Self::DepositDeleted(e.to_string()),
            e @ StoreError::MailboxFull { .. } => Self::MailboxFull(e.to_string()),
            StoreError::Corrupt(m) => {
                tracing::error!(error = %m, "corrupt row in the database");
                Self::Unavailable("stored data is inconsistent; see the server log".into())
            }
            e @ StoreError::Database(_) if e.is_disk_full() => {
                tracing::error!(error = %e, "database error: the disk is full");
                Self::Unavailable("the database's disk is full".into())
            }
            StoreError::Database(e) => {
                tracing::error!(error = %e, "database error");
                Self::Unavailable("the database is unavailable".into())
            }
            StoreError::Unavailable {
                message,
                retry_after,
            } => Self::ImapUnavailable {
                message,
                retry_after,
            },
            StoreError::Unsupported(m) => Self::NotImplemented(m),
        }
    }
}

impl From<BlobError> for ServiceError {
    fn from(e: BlobError) -> Self {
        match e {
            BlobError::NotFound(k) => {
                tracing::error!(audio.key = %k, "audio missing for a stored row");
                Self::Unavailable("the audio of this item is missing from storage".into())
            }
            BlobError::RangeNotSatisfiable => Self::RangeNotSatisfiable { size: 0 },
            BlobError::Io(e) if e.kind() == std::io::ErrorKind::StorageFull => {
                tracing::error!(error = %e, "audio storage error: the disk is full");
                Self::Unavailable("audio storage is full".into())
            }
            BlobError::Io(e) => {
                tracing::error!(error = %e, "audio storage error");
                Self::Unavailable("audio storage is unavailable".into())
            }
        }
    }
}

/// Result of a use case.
pub type Result<T, E = ServiceError> = std::result::Result<T, E>;

/// The services, sharing the stores.
#[derive(Clone)]
pub struct Voicemail {
    pub(crate) sql: Arc<SqlStore>,
    pub(crate) messages: Arc<dyn MessageStore>,
    pub(crate) blobs: Arc<dyn BlobStore>,
    pub(crate) config: Arc<Config>,
    /// Bounds concurrent argon2 work so PIN checks cannot starve the blocking pool.
    pub(crate) hashing: Arc<tokio::sync::Semaphore>,
    /// Renditions being made (single flight per rendition).
    pub(crate) renditions: Arc<RenditionCache>,
    /// The decoders of compressed uploads (`audio.max_decoders`, `audio.decoder_queue`).
    pub(crate) decoders: Arc<cpu_pool::CpuPool>,
    /// The transcoders of renditions, waveforms and e-mail attachments
    /// (`audio.transcode_concurrency`, `audio.transcode_queue`).
    pub(crate) transcoders: Arc<cpu_pool::CpuPool>,
    /// Bumped after every committed change, so the outbox consumers (hub, dispatchers) read it
    /// at once. A watch channel never loses a wake-up: a busy consumer sees it on its next wait.
    pub(crate) changed: Arc<tokio::sync::watch::Sender<u64>>,
    /// The live event hub (absent in CLI commands).
    pub(crate) hub: Option<crate::events::Hub>,
    /// The IMAP message store, when some context keeps its messages in IMAP (`[imap]`).
    pub(crate) imap: Option<Arc<imap_store::ImapMessageStore>>,
    /// The admin dashboard's recent numbers per admin scope (a short TTL cache).
    pub(crate) dashboards: Arc<admin::DashboardCache>,
    /// This node's tries of each delivery queue (for /metrics).
    pub(crate) deliveries: Arc<crate::events::queue::DeliveryCounters>,
}

impl Voicemail {
    pub fn new(sql: Arc<SqlStore>, blobs: Arc<dyn BlobStore>, config: Arc<Config>) -> Self {
        let renditions = Arc::new(RenditionCache::default());
        let audio = &config.audio;
        let wait = std::time::Duration::from_millis(audio.busy_wait_ms);
        let decoders = Arc::new(
            cpu_pool::CpuPool::new("decoders", audio.max_decoders, audio.decoder_queue, wait)
                .with_cpu_gate(audio.decode_cpus()),
        );
        let transcoders = Arc::new(cpu_pool::CpuPool::new(
            "transcoders",
            audio.transcode_concurrency,
            audio.transcode_queue,
            wait,
        ));
        let imap = imap_store::ImapMessageStore::new(config.clone()).map(Arc::new);
        let messages: Arc<dyn MessageStore> = match &imap {
            Some(imap) => Arc::new(imap_store::RoutedStore {
                sql: sql.clone(),
                imap: imap.clone(),
            }),
            None => sql.clone(),
        };
        Self {
            dashboards: Arc::default(),
            deliveries: Arc::default(),
            renditions,
            decoders,
            transcoders,
            imap,
            messages,
            sql,
            blobs,
            config,
            hashing: Arc::new(tokio::sync::Semaphore::new(4)),
            changed: Arc::new(tokio::sync::watch::Sender::new(0)),
            hub: None,
        }
    }

    /// The load of the decoders of compressed uploads (`audio.max_decoders`), as it changes.
    pub fn decoder_load(&self) -> tokio::sync::watch::Receiver<cpu_pool::PoolLoad> {
        self.decoders.load()
    }

    /// Attaches the live event hub.
    pub fn with_hub(mut self, hub: crate::events::Hub) -> Self {
        self.hub = Some(hub);
        self
    }

    /// Starts the event hub on this service's store; it stops with `shutdown`.
    pub fn start_hub(
        &self,
        shutdown: tokio_util::sync::CancellationToken,
        tracker: &tokio_util::task::TaskTracker,
    ) -> crate::events::Hub {
        crate::events::Hub::start(
            self.sql.clone(),
            self.changed.subscribe(),
            std::time::Duration::from_millis(self.config.events.poll_interval_ms),
            shutdown,
            tracker,
        )
    }

    /// Wakes this node's outbox consumers when other nodes commit events (see `store::sql::wake`).
    pub fn start_cluster_wakeups(
        &self,
        shutdown: tokio_util::sync::CancellationToken,
        tracker: &tokio_util::task::TaskTracker,
    ) {
        self.sql.watch_other_nodes(
            self.changed.clone(),
            std::time::Duration::from_millis(self.config.database.poll_interval_ms),
            shutdown,
            tracker,
        );
    }

    /// Starts webhook delivery; it stops with `shutdown`.
    pub fn start_webhooks(
        &self,
        shutdown: tokio_util::sync::CancellationToken,
        tracker: &tokio_util::task::TaskTracker,
    ) {
        crate::events::webhook::start(
            self.sql.clone(),
            self.config.webhooks.clone(),
            self.deliveries.webhooks.clone(),
            self.changed.subscribe(),
            shutdown,
            tracker,
        );
    }

    /// Starts MWI pushes to Asterisk targets; they stop with `shutdown`.
    pub async fn start_mwi_pushes(
        &self,
        shutdown: tokio_util::sync::CancellationToken,
        tracker: &tokio_util::task::TaskTracker,
    ) {
        crate::events::mwi::start(
            self.sql.clone(),
            self.config.mwi.clone(),
            self.deliveries.mwi.clone(),
            self.changed.subscribe(),
            shutdown,
            tracker,
        )
        .await;
    }

    /// Wakes the event hub after a committed change.
    pub(crate) fn notify_changed(&self) {
        self.changed.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// The audio store (for the CLI and tests, which reach it directly).
    pub fn blob_store(&self) -> Arc<dyn BlobStore> {
        self.blobs.clone()
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The mailbox at `address`, if the caller may see it (other contexts' mailboxes are "not
    /// found", never "forbidden", so keys cannot probe other tenants).
    pub(crate) async fn visible_mailbox(
        &self,
        p: &Principal,
        address: &MailboxAddress,
    ) -> Result<MailboxRecord> {
        if !p.sees_context(&address.context) {
            return Err(ServiceError::NotFound(format!("mailbox {address}")));
        }
        self.sql.get_mailbox(address).await.map_err(|e| match e {
            StoreError::NotFound => ServiceError::NotFound(format!("mailbox {address}")),
            other => other.into(),
        })
    }

    /// For configuration owned by a context (webhooks, MWI targets): the caller must be an admin
    /// that sees the context, and the context must exist.
    pub(crate) async fn admin_context(
        &self,
        p: &Principal,
        context: &str,
        what: &str,
    ) -> Result<()> {
        Self::require_admin(p, what)?;
        crate::domain::validate_context_name(context)
            .map_err(|e| ServiceError::Invalid(e.to_string()))?;
        let not_found = || ServiceError::NotFound(format!("context {context}"));
        if !p.sees_context(context) {
            return Err(not_found());
        }
        self.sql.get_context(context).await.map_err(|e| match e {
            StoreError::NotFound => not_found(),
            other => other.into(),
        })?;
        Ok(())
    }

    /// The context a listing is limited to: the key's scope, or the one asked for. `Err(())` when
    /// a scoped key asks for another context (the listing is then empty, or not found).
    pub(crate) fn listing_scope<'a>(
        p: &'a Principal,
        asked: Option<&'a str>,
    ) -> std::result::Result<Option<&'a str>, ()> {
        match (&p.context, asked) {
            (Some(scope), Some(asked)) if scope != asked => Err(()),
            (Some(scope), _) => Ok(Some(scope.as_str())),
            (None, asked) => Ok(asked),
        }
    }

    /// Whether the mailbox's messages are in IMAP.
    pub(crate) fn is_imap(&self, m: &MailboxRecord) -> bool {
        self.imap.as_ref().is_some_and(|i| i.handles(m))
    }

    pub(crate) fn require_admin(p: &Principal, what: &str) -> Result<()> {
        if p.is_admin() {
            Ok(())
        } else {
            Err(ServiceError::Forbidden(format!(
                "{what} needs an admin key; this key has role pbx"
            )))
        }
    }

    /// Removes blobs after the rows that referenced them are gone. A failure only leaves an orphan
    /// for the collector, so it is logged, not returned.
    pub(crate) async fn remove_blobs(&self, keys: impl IntoIterator<Item = String>) {
        for k in keys {
            // An IMAP message's recording went with the message.
            if k.starts_with(imap_store::AUDIO_KEY_PREFIX) {
                continue;
            }
            let Some(key) = BlobKey::from_stored(&k) else {
                tracing::error!(audio.key = %k, "refusing to remove a malformed audio key");
                continue;
            };
            if let Err(e) = self.blobs.remove(&key).await {
                tracing::warn!(audio.key = %k, error = %e, "could not remove audio; left as orphan");
            }
            // Cached renditions go with their original.
            for r in rendition::rendition_keys(&key) {
                if let Err(e) = self.blobs.remove(&r).await {
                    tracing::warn!(audio.key = %r.as_str(), error = %e, "could not remove a rendition");
                }
            }
        }
    }

    /// Checks that this node can write to the database and to audio storage (for `/readyz`).
    /// Both checks run at once and each gives up after `database.acquire_timeout_ms`, so the
    /// answer comes within that bound whatever hangs.
    pub async fn ready(&self) -> Result<()> {
        let bound = std::time::Duration::from_millis(self.config.database.acquire_timeout_ms);
        let late = |what: &str| {
            tracing::error!(
                timeout_ms = bound.as_millis() as u64,
                "{what} did not answer the readiness check in time"
            );
            ServiceError::Unavailable(format!(
                "{what} did not answer within {} ms",
                bound.as_millis()
            ))
        };
        let database = async {
            match tokio::time::timeout(bound, self.sql.probe_write()).await {
                Ok(r) => r.map_err(ServiceError::from),
                Err(_) => Err(late("the database")),
            }
        };
        let audio = async {
            match tokio::time::timeout(bound, self.blobs.check()).await {
                Ok(r) => r.map_err(ServiceError::from),
                Err(_) => Err(late("audio storage")),
            }
        };
        tokio::try_join!(database, audio)?;
        Ok(())
    }

    /// Removes expired idempotency keys and events past retention.
    pub async fn housekeeping(&self) -> Result<u64> {
        let now = crate::domain::now_secs();
        let idem = now - self.config.voicemail.idempotency_ttl_secs as i64;
        let events = now - self.config.events.retention_secs as i64;
        Ok(self.sql.sweep(idem, events).await?)
    }
}
