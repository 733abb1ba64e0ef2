//! The IMAP message store (issue #7): contexts configured with `store = "imap"` keep their
//! messages in IMAP folders in Asterisk's `IMAP_STORAGE` format (`crate::imap`), while contexts,
//! mailboxes and greetings stay in SQL. [`RoutedStore`] is the `MessageStore` the services use:
//! it sends each call to SQL or IMAP by the mailbox's context. See
//! docs/design/0018-imap-message-store.md.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use futures_util::TryStreamExt as _;
use sha2::{Digest as _, Sha256};

use crate::audio::RawHint;
use crate::blob::{BlobKey, BlobStore};
use crate::config::{Config, ImapContextConfig, ImapTlsMode, KeptIn};
use crate::domain::{
    AudioFormat, Flag, Folder, GreetingKind, MailboxAddress, MailboxId, MessageId, MwiCounts,
};
use crate::imap::format::{self, AudioAttachment, Envelope, VoicemailMeta};
use crate::imap::{
    ImapAccount, ImapClient, ImapError, ImapPool, ImapTls, Lease, Owner, VoicemailSummary,
};
use crate::store::{
    Changed, ForwardTarget, GreetingRecord, IMAP_BUSY_MS, ImapChange, Inserted, MailboxRecord,
    MessageRecord, MessageStore, NewMessage, Page, Recorded, SqlStore, StoreError,
};

/// The IMAP folders a mailbox's messages can be in (Old and Urgent are flags on INBOX).
const FOLDERS: [Folder; 5] = [
    Folder::Inbox,
    Folder::Work,
    Folder::Family,
    Folder::Friends,
    Folder::Deleted,
];

/// Asterisk's custom folders (folder numbers 5-9), real IMAP folders like Work; listings scan
/// the ones that exist. Other custom folder names are refused for IMAP mailboxes: Asterisk
/// would never see messages in them.
const CUSTOM_FOLDERS: [&str; 5] = ["Cust1", "Cust2", "Cust3", "Cust4", "Cust5"];

/// The prefix of the `audio_key` of IMAP messages:
/// `imap:<mailbox id>:<folder>:<uid>:<message id>:<sha-256 of the recording, once known>`.
pub(crate) const AUDIO_KEY_PREFIX: &str = "imap:";

/// An IMAP message's `audio_key`, parsed: where the recording is now (folder and UID, which
/// change when the message moves) and what it is (message id and hash, which do not).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ImapAudioKey {
    pub(crate) mailbox: MailboxId,
    pub(crate) folder: Folder,
    pub(crate) uid: u32,
    pub(crate) message: MessageId,
    /// Hex SHA-256 of the attachment; empty when the record came from a listing (no body).
    pub(crate) sha256: String,
}

/// Messages of IMAP-backed contexts.
pub(crate) struct ImapMessageStore {
    config: Arc<Config>,
    /// Serializes deposits into one mailbox on this node, so two tries with one Idempotency-Key
    /// cannot both APPEND.
    deposit_locks: Mutex<HashMap<MailboxId, Arc<tokio::sync::Mutex<()>>>>,
    /// One bounded connection pool per IMAP-backed context.
    pools: HashMap<String, ImapPool>,
    /// Where deposits into IMAP mailboxes are received (a local store under the node's scratch
    /// directory), so their audio never travels to the audio store and back; opened on first use.
    deposits: tokio::sync::OnceCell<Arc<dyn BlobStore>>,
}

/// A pooled connection (back to the pool when dropped, unless it broke).
struct Conn(Lease);

impl Conn {
    fn client(&mut self) -> Result<&mut ImapClient, StoreError> {
        self.0
            .client()
            .map_err(|_| StoreError::Corrupt("IMAP connection already closed".into()))
    }
}

/// A connection to a greeting folder, outside the pool; logged out in the background when
/// dropped.
struct GreetingConn(Option<ImapClient>);

impl GreetingConn {
    fn client(&mut self) -> Result<&mut ImapClient, StoreError> {
        self.0
            .as_mut()
            .ok_or_else(|| StoreError::Corrupt("IMAP connection already closed".into()))
    }
}

impl Drop for GreetingConn {
    fn drop(&mut self) {
        if let Some(c) = self.0.take()
            && !c.is_broken()
            && let Ok(rt) = tokio::runtime::Handle::try_current()
        {
            rt.spawn(c.logout());
        }
    }
}

/// The prefix of the `audio_key` of greetings kept in IMAP:
/// `imapgreeting:<mailbox id>:<greeting name>:<uid>`.
pub(crate) const GREETING_KEY_PREFIX: &str = "imapgreeting:";

/// Parses an IMAP greeting's audio key into (mailbox id, UID in the greeting folder).
pub(crate) fn parse_greeting_key(key: &str) -> Option<(MailboxId, u32)> {
    let rest = key.strip_prefix(GREETING_KEY_PREFIX)?;
    let mut parts = rest.splitn(3, ':');
    let mailbox = parts.next()?.parse().ok()?;
    let _name = parts.next()?;
    let uid = parts.next()?.parse().ok()?;
    Some((mailbox, uid))
}

impl ImapMessageStore {
    /// The store, when at least one context or mailbox is configured for IMAP.
    pub(crate) fn new(config: Arc<Config>) -> Option<Self> {
        config
            .imap
            .contexts
            .values()
            .any(ImapContextConfig::has_imap)
            .then(|| Self {
                pools: config
                    .imap
                    .contexts
                    .iter()
                    .filter(|(_, c)| c.has_imap())
                    .map(|(name, c)| {
                        let pool = ImapPool::new(
                            c.max_connections as usize,
                            Duration::from_secs(c.idle_timeout_secs),
                        );
                        (name.clone(), pool)
                    })
                    .collect(),
                config,
                deposit_locks: Mutex::new(HashMap::new()),
                deposits: tokio::sync::OnceCell::new(),
            })
    }

    /// The store deposits into IMAP mailboxes are received into: local files under the node's
    /// scratch directory (`imap-deposits/`), emptied when first opened — what a previous run
    /// left there belongs to deposits that ended with it.
    pub(crate) async fn deposit_store(&self) -> Result<Arc<dyn BlobStore>, crate::blob::BlobError> {
        self.deposits
            .get_or_try_init(|| async {
                let dir = self.config.scratch_dir().join("imap-deposits");
                match tokio::fs::remove_dir_all(&dir).await {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(e.into()),
                }
                let store = crate::blob::FsBlobStore::open(dir).await?;
                Ok(Arc::new(store) as Arc<dyn BlobStore>)
            })
            .await
            .cloned()
    }

    /// Removes a deposit's received audio (after its APPEND, or when the deposit failed).
    pub(crate) async fn remove_deposit(&self, key: &BlobKey) {
        if let Some(store) = self.deposits.get()
            && let Err(e) = store.remove(key).await
        {
            tracing::warn!(audio.key = %key.as_str(), error = %e, "could not remove a received IMAP deposit");
        }
    }

    fn settings(&self, context: &str) -> Option<&ImapContextConfig> {
        self.config
            .imap
            .contexts
            .get(context)
            .filter(|c| c.has_imap())
    }

    /// Whether the mailbox's messages are in IMAP (its context's `store`, or its own).
    pub(crate) fn handles(&self, mailbox: &MailboxRecord) -> bool {
        self.handles_address(&mailbox.address)
    }

    /// Whether the messages of the mailbox at `address` are in IMAP (decided by configuration
    /// alone, so before the mailbox is read).
    pub(crate) fn handles_address(&self, address: &MailboxAddress) -> bool {
        self.settings(&address.context)
            .is_some_and(|c| c.mailbox_is_imap(&address.mailbox))
    }

    /// The `Retry-After` of the mailbox's 503s.
    pub(crate) fn retry_after_secs(&self, mailbox: &MailboxRecord) -> u64 {
        self.retry_after(mailbox)
    }

    /// The limit of one IMAP operation for the mailbox.
    pub(crate) fn timeout(&self, mailbox: &MailboxRecord) -> Duration {
        Duration::from_secs(
            self.settings(&mailbox.address.context)
                .map_or(30, |c| c.timeout_secs),
        )
    }

    fn retry_after(&self, mailbox: &MailboxRecord) -> u64 {
        self.settings(&mailbox.address.context)
            .map_or(5, |c| c.retry_after_secs)
    }

    fn unavailable(&self, mailbox: &MailboxRecord, message: &str) -> StoreError {
        StoreError::Unavailable {
            message: message.to_owned(),
            retry_after: self.retry_after(mailbox),
        }
    }

    /// Maps a client error: a missing message is "not found"; anything else means the server
    /// cannot serve this mailbox now (logged here, never echoed: it may name the login).
    fn err(&self, mailbox: &MailboxRecord, e: ImapError) -> StoreError {
        match e {
            ImapError::NotFound { .. } => StoreError::NotFound,
            e => {
                tracing::warn!(mailbox = %mailbox.address, error = %e, "IMAP message store failed");
                self.unavailable(mailbox, "the IMAP server of this mailbox is unavailable")
            }
        }
    }

    /// The account a mailbox's messages are reached with: its own login, or the master user's.
    fn account(&self, mailbox: &MailboxRecord) -> Result<ImapAccount, StoreError> {
        let c = self
            .settings(&mailbox.address.context)
            .ok_or_else(|| StoreError::Unsupported("this context does not use IMAP".into()))?;
        let own = c
            .mailboxes
            .get(&mailbox.address.mailbox)
            .filter(|l| !l.user.is_empty());
        let mut a = if let Some(login) = own {
            ImapAccount::new(&c.host, &login.user, &login.password)
        } else if !c.master_user.is_empty() {
            let user = c
                .user_format
                .replace("{mailbox}", &mailbox.address.mailbox)
                .replace("{context}", &mailbox.address.context);
            let mut a = ImapAccount::new(&c.host, user, &c.master_password);
            a.master_user = Some(c.master_user.clone());
            a
        } else {
            tracing::error!(mailbox = %mailbox.address, "no IMAP login configured for this mailbox");
            return Err(self.unavailable(
                mailbox,
                "no IMAP login is configured for this mailbox; see the server log",
            ));
        };
        a.tls = match c.tls {
            ImapTlsMode::None => ImapTls::None,
            ImapTlsMode::Starttls => ImapTls::StartTls,
            ImapTlsMode::Implicit => ImapTls::Implicit,
        };
        a.port = match (c.port, a.tls) {
            (0, ImapTls::Implicit) => 993,
            (0, _) => 143,
            (p, _) => p,
        };
        if !c.ca_file.as_os_str().is_empty() {
            a.ca_file = Some(c.ca_file.clone());
        }
        a.folder = c.folder.clone();
        a.parent_folder = (!c.parent_folder.is_empty()).then(|| c.parent_folder.clone());
        a.timeout = Duration::from_secs(c.timeout_secs.max(1));
        a.use_idle = c.use_idle;
        a.poll_interval = Duration::from_secs(c.poll_interval_secs.max(1));
        Ok(a)
    }

    /// Converts a recording into the mailbox's `attachfmt` (see [`attachment_in`]) on the
    /// blocking pool: transcoding (GSM, Opus, resampling) is CPU work.
    async fn convert(
        &self,
        mailbox: &MailboxRecord,
        format: AudioFormat,
        sample_rate: u32,
        channels: u16,
        data: Vec<u8>,
    ) -> Result<(&'static str, Vec<u8>), StoreError> {
        let opus = (
            self.config.audio.opus_bitrate,
            self.config.audio.opus_complexity,
        );
        let attachfmt = mailbox.attachfmt.clone();
        tokio::task::spawn_blocking(move || {
            attachment_in(&attachfmt, format, sample_rate, channels, data, opus)
        })
        .await
        .map_err(|e| StoreError::Corrupt(format!("converting the recording failed: {e}")))
    }

    /// A connection for the mailbox from its context's pool.
    async fn connect(&self, mailbox: &MailboxRecord) -> Result<Conn, StoreError> {
        let account = Arc::new(self.account(mailbox)?);
        let owner = Owner::new(&mailbox.address.mailbox, &mailbox.address.context);
        let pool = self
            .pools
            .get(&mailbox.address.context)
            .ok_or_else(|| StoreError::Unsupported("this context does not use IMAP".into()))?;
        match pool.get(account, owner).await {
            Ok(c) => Ok(Conn(c)),
            Err(e) => Err(self.err(mailbox, e)),
        }
    }

    /// Closes pooled connections idle for too long (the watchers' supervisor calls it).
    pub(crate) fn reap_idle(&self) {
        for p in self.pools.values() {
            p.reap();
        }
    }

    /// The contexts whose messages are in IMAP, with their settings.
    pub(crate) fn contexts(&self) -> impl Iterator<Item = (&String, &ImapContextConfig)> {
        self.config
            .imap
            .contexts
            .iter()
            .filter(|(_, c)| c.has_imap())
    }

    /// The account and owner a watcher of the mailbox logs in with (its own connection, outside
    /// the pool).
    pub(crate) fn watch_login(
        &self,
        mailbox: &MailboxRecord,
    ) -> Result<(Arc<ImapAccount>, Owner), StoreError> {
        Ok((
            Arc::new(self.account(mailbox)?),
            Owner::new(&mailbox.address.mailbox, &mailbox.address.context),
        ))
    }

    /// Every voicemail of the mailbox with the IMAP folder it is in.
    async fn scan(
        &self,
        c: &mut Conn,
        mailbox: &MailboxRecord,
        folders: &[Folder],
    ) -> Result<Vec<(Folder, VoicemailSummary)>, StoreError> {
        let mut out = Vec::new();
        for f in folders {
            let list = c
                .client()?
                .list(f)
                .await
                .map_err(|e| self.err(mailbox, e))?;
            // Greetings kept beside the voicemail (`greeting_folder` = INBOX) are not messages.
            out.extend(
                list.into_iter()
                    .filter(|s| !format::is_greeting(&s.meta))
                    .map(|s| (f.clone(), s)),
            );
        }
        Ok(out)
    }

    /// Every IMAP folder a voicemail of the mailbox can be in: INBOX, Work, Family, Friends,
    /// Deleted, and those of Asterisk's Cust1-5 that exist.
    async fn all_folders(
        &self,
        c: &mut Conn,
        mailbox: &MailboxRecord,
    ) -> Result<Vec<Folder>, StoreError> {
        let custom: Vec<Folder> = CUSTOM_FOLDERS
            .iter()
            .map(|n| Folder::Custom((*n).to_owned()))
            .collect();
        let existing = c
            .client()?
            .existing_folders(&custom)
            .await
            .map_err(|e| self.err(mailbox, e))?;
        let mut all = FOLDERS.to_vec();
        all.extend(existing);
        Ok(all)
    }

    /// The records of scanned voicemails, in deposit order, msgnum per (virtual) folder.
    fn records(
        mailbox: &MailboxRecord,
        mut items: Vec<(Folder, VoicemailSummary)>,
    ) -> Vec<(Folder, VoicemailSummary, MessageRecord)> {
        items.sort_by_key(|(_, s)| (s.meta.orig_time, s.uid));
        let mut counters: HashMap<String, i64> = HashMap::new();
        items
            .into_iter()
            .map(|(real, s)| {
                let mut r = record(mailbox, &real, &s);
                let n = counters.entry(r.folder.as_str().to_owned()).or_insert(0);
                r.msgnum = *n;
                *n += 1;
                (real, s, r)
            })
            .collect()
    }

    async fn find(
        &self,
        c: &mut Conn,
        mailbox: &MailboxRecord,
        id: MessageId,
    ) -> Result<(Folder, u32, MessageRecord), StoreError> {
        let folders = self.all_folders(c, mailbox).await?;
        let items = self.scan(c, mailbox, &folders).await?;
        Self::records(mailbox, items)
            .into_iter()
            .find(|(_, _, r)| r.id == id)
            .map(|(f, s, r)| (f, s.uid, r))
            .ok_or(StoreError::NotFound)
    }

    async fn counts_on(
        &self,
        c: &mut Conn,
        mailbox: &MailboxRecord,
    ) -> Result<MwiCounts, StoreError> {
        // Asterisk's `messagecount` over INBOX, without greetings kept there.
        let mut n = MwiCounts::default();
        for (_, m) in self.scan(c, mailbox, &[Folder::Inbox]).await? {
            let urgent = u32::from(m.flagged);
            if m.seen {
                n.old += 1;
                n.urgent_old += urgent;
            } else {
                n.new += 1;
                n.urgent_new += urgent;
            }
        }
        Ok(n)
    }

    /// The recording of the voicemail with this UID in this IMAP folder.
    pub(crate) async fn audio(
        &self,
        mailbox: &MailboxRecord,
        folder: &Folder,
        uid: u32,
    ) -> Result<Vec<u8>, StoreError> {
        let mut c = self.connect(mailbox).await?;
        let m = c
            .client()?
            .fetch(folder, uid)
            .await
            .map_err(|e| self.err(mailbox, e))?;
        m.parsed
            .audio
            .map(|a| a.data)
            .ok_or_else(|| StoreError::Corrupt("an IMAP voicemail has no recording".into()))
    }

    /// The whole record of a voicemail: the listing data plus its recording's format, size and
    /// hash (which need the body).
    async fn full_record(
        &self,
        c: &mut Conn,
        mailbox: &MailboxRecord,
        real: &Folder,
        uid: u32,
        mut r: MessageRecord,
    ) -> Result<MessageRecord, StoreError> {
        let m = c
            .client()?
            .fetch(real, uid)
            .await
            .map_err(|e| self.err(mailbox, e))?;
        if let Some(a) = m.parsed.audio {
            describe(&mut r, &a.format, &a.data);
        }
        Ok(r)
    }

    /// Composes a voicemail for `mailbox` as Asterisk would (attachment `msg<msgnum>` in the
    /// mailbox's `attachfmt`, the mailbox's name, e-mail and time zone), adds voxmail's id and
    /// Idempotency-Key headers, APPENDs it to INBOX (`\Flagged` when urgent) and returns its
    /// record, read back from the server.
    async fn append_new(
        &self,
        c: &mut Conn,
        mailbox: &MailboxRecord,
        message: &NewMessage,
        data: Vec<u8>,
        msgnum: u32,
        idempotency_key: Option<&str>,
    ) -> Result<MessageRecord, StoreError> {
        let (format_name, attached) = self
            .convert(
                mailbox,
                message.audio_format,
                message.sample_rate,
                message.channels,
                data,
            )
            .await?;
        let urgent = message.flag == Flag::Urgent;
        let meta = VoicemailMeta {
            msgnum,
            server_name: self.config.node_id.clone(),
            context: mailbox.address.context.clone(),
            mailbox: mailbox.address.mailbox.clone(),
            flag: if urgent {
                format::FLAG_URGENT.into()
            } else {
                String::new()
            },
            priority: message.priority,
            caller_id_num: message.caller_id_num.clone(),
            caller_id_name: message.caller_id_name.clone(),
            duration_secs: u32::try_from((message.duration_ms + 500) / 1000).unwrap_or(0),
            category: message.category.clone(),
            message_type: format::MESSAGE_TYPE.into(),
            orig_time: message.origtime,
            msg_id: message.msg_id.clone(),
        };
        let account = self.account(mailbox)?;
        let env = Envelope {
            from_string: String::new(),
            server_email: self.config.email.serveremail.clone(),
            to_name: mailbox.fullname.clone(),
            to_email: if mailbox.email.is_empty() {
                account.user.clone()
            } else {
                mailbox.email.clone()
            },
            tz: mailbox.tz.parse().unwrap_or(chrono_tz::Tz::UTC),
            ..Envelope::default()
        };
        let raw = format::compose(
            &meta,
            &env,
            &AudioAttachment {
                format: format_name,
                data: &attached,
            },
        );
        let id = message.id.to_string();
        let mut extra = vec![(format::VOXMAIL_ID_HEADER, id.as_str())];
        if let Some(k) = idempotency_key {
            extra.push((format::VOXMAIL_IDEMPOTENCY_HEADER, k));
        }
        let raw = format::with_headers(raw, &extra);
        c.client()?
            .append(&Folder::Inbox, &raw, urgent)
            .await
            .map_err(|e| self.err(mailbox, e))?;
        let inbox = self.scan(c, mailbox, &[Folder::Inbox]).await?;
        let (_, _, mut r) = Self::records(mailbox, inbox)
            .into_iter()
            .find(|(_, _, r)| r.id == message.id)
            .ok_or_else(|| self.unavailable(mailbox, "the appended voicemail is not listed"))?;
        describe(&mut r, format_name, &attached);
        r.duration_ms = message.duration_ms;
        r.forwarded_from = message.forwarded_from;
        Ok(r)
    }

    /// Stores a forwarded copy in `mailbox` (IMAP-backed): composed for that mailbox, with its
    /// own msgnum, headers and `attachfmt`, from the recording's bytes; refused when its INBOX
    /// holds `maxmsg` voicemails.
    async fn append_copy(
        &self,
        mailbox: &MailboxRecord,
        message: &NewMessage,
        data: Vec<u8>,
        maxmsg: u32,
    ) -> Result<Changed<MessageRecord>, StoreError> {
        let lock = self.deposit_lock(mailbox.id);
        let _guard = lock.lock().await;
        let mut c = self.connect(mailbox).await?;
        let in_inbox = self.scan(&mut c, mailbox, &[Folder::Inbox]).await?.len() as u32;
        if in_inbox >= maxmsg {
            return Err(StoreError::MailboxFull {
                mailbox: mailbox.address.to_string(),
                folder: "INBOX".into(),
                max: maxmsg,
            });
        }
        let r = self
            .append_new(&mut c, mailbox, message, data, in_inbox, None)
            .await?;
        let counts = self.counts_on(&mut c, mailbox).await?;
        Ok(Changed { value: r, counts })
    }

    /// Whether the mailbox's greetings are kept in IMAP (`greetings = "imap"`).
    pub(crate) fn keeps_greetings(&self, mailbox: &MailboxRecord) -> bool {
        self.settings(&mailbox.address.context)
            .is_some_and(|c| c.greetings == KeptIn::Imap)
    }

    /// A connection to the mailbox's greeting folder (`greeting_folder`, created if missing),
    /// which it addresses as its INBOX. Outside the pool: greetings change rarely, and the pool's
    /// connections are bound to the voicemail folder.
    async fn greeting_client(&self, mailbox: &MailboxRecord) -> Result<GreetingConn, StoreError> {
        let c = self
            .settings(&mailbox.address.context)
            .ok_or_else(|| StoreError::Unsupported("this context does not use IMAP".into()))?;
        let mut account = self.account(mailbox)?;
        account.folder = c.greeting_folder.clone();
        let owner = Owner::new(&mailbox.address.mailbox, &mailbox.address.context);
        let mut client = ImapClient::connect(Arc::new(account), owner)
            .await
            .map_err(|e| self.err(mailbox, e))?;
        let ready = async {
            let name = client.folder_name(&Folder::Inbox).await?;
            client.ensure_folder(&name).await
        }
        .await;
        let conn = GreetingConn(Some(client));
        ready.map_err(|e| self.err(mailbox, e))?;
        Ok(conn)
    }

    /// The greetings of `kind` in the greeting folder, oldest first (normally one): matched by
    /// `X-Asterisk-VM-Message-Type`, which Asterisk sets to the greeting's name.
    async fn greetings_of(
        &self,
        c: &mut GreetingConn,
        mailbox: &MailboxRecord,
        kind: GreetingKind,
    ) -> Result<Vec<VoicemailSummary>, StoreError> {
        let list = c
            .client()?
            .list(&Folder::Inbox)
            .await
            .map_err(|e| self.err(mailbox, e))?;
        Ok(list
            .into_iter()
            .filter(|s| {
                s.meta
                    .message_type
                    .eq_ignore_ascii_case(kind.asterisk_dir())
            })
            .collect())
    }

    /// The recording of the greeting with this UID in the greeting folder.
    pub(crate) async fn greeting_audio(
        &self,
        mailbox: &MailboxRecord,
        uid: u32,
    ) -> Result<Vec<u8>, StoreError> {
        let mut c = self.greeting_client(mailbox).await?;
        let m = c
            .client()?
            .fetch(&Folder::Inbox, uid)
            .await
            .map_err(|e| self.err(mailbox, e))?;
        m.parsed
            .audio
            .map(|a| a.data)
            .ok_or_else(|| StoreError::Corrupt("an IMAP greeting has no recording".into()))
    }

    /// The ids of every voicemail of the mailbox (headers only; for the orphan collector).
    pub(crate) async fn message_ids(
        &self,
        mailbox: &MailboxRecord,
    ) -> Result<std::collections::HashSet<MessageId>, StoreError> {
        let mut c = self.connect(mailbox).await?;
        let folders = self.all_folders(&mut c, mailbox).await?;
        let items = self.scan(&mut c, mailbox, &folders).await?;
        Ok(Self::records(mailbox, items)
            .into_iter()
            .map(|(_, _, r)| r.id)
            .collect())
    }

    fn deposit_lock(&self, id: MailboxId) -> Arc<tokio::sync::Mutex<()>> {
        let mut map = self
            .deposit_locks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        map.entry(id).or_default().clone()
    }

    /// The audio a deposit received into [`Self::deposit_store`].
    async fn read_deposit(&self, key: &str) -> Result<Vec<u8>, StoreError> {
        let unreadable = |e: &dyn std::fmt::Display| {
            tracing::error!(audio.key = %key, error = %e, "reading a deposit's audio for IMAP");
            StoreError::Corrupt("the deposit's audio could not be read".into())
        };
        let key = BlobKey::from_stored(key)
            .ok_or_else(|| StoreError::Corrupt("malformed audio key".into()))?;
        let store = self.deposit_store().await.map_err(|e| unreadable(&e))?;
        let read = store.open(&key, None).await.map_err(|e| unreadable(&e))?;
        let chunks: Vec<bytes::Bytes> = read
            .stream
            .try_collect()
            .await
            .map_err(|e| unreadable(&e))?;
        Ok(chunks.concat())
    }
}

/// The folder as Asterisk names it: a custom folder must be one of Asterisk's Cust1-5 (any
/// case); any other name is refused, since Asterisk (and voxmail's listings) would never look
/// there.
fn asterisk_folder(f: &Folder) -> Result<Folder, StoreError> {
    match f {
        Folder::Custom(name) => CUSTOM_FOLDERS
            .iter()
            .find(|c| c.eq_ignore_ascii_case(name))
            .map(|c| Folder::Custom((*c).to_owned()))
            .ok_or_else(|| {
                StoreError::Unsupported(format!(
                    "mailboxes kept in IMAP have Asterisk's folders only (INBOX, Old, Urgent, \
                     Work, Family, Friends, {}, Deleted), not {name:?}",
                    CUSTOM_FOLDERS.join(", ")
                ))
            }),
        other => Ok(other.clone()),
    }
}

/// Asterisk's format name (`attachfmt`) of a stored recording.
fn asterisk_format(f: AudioFormat) -> &'static str {
    match f {
        AudioFormat::WavGsm => "wav49",
        AudioFormat::RawGsm => "gsm",
        other => other.extension(),
    }
}

/// The REST id of a voicemail: voxmail's own (`X-Voxmail-Message-Id`), or for messages Asterisk
/// wrote one derived from the mailbox and `X-Asterisk-VM-Message-ID`, which travel with the
/// message when it moves between folders.
fn message_id(mailbox: &MailboxRecord, real: &Folder, s: &VoicemailSummary) -> MessageId {
    if let Some(id) = s.voxmail_id.as_deref().and_then(|v| v.parse().ok()) {
        return id;
    }
    let mut h = Sha256::new();
    h.update(b"voxmail-imap\0");
    h.update(mailbox.id.0.as_bytes());
    if s.meta.msg_id.is_empty() {
        h.update(format!("{}\0{}", real.as_str(), s.uid).as_bytes());
    } else {
        h.update(format!("{}\0{}", s.meta.msg_id, s.meta.orig_time).as_bytes());
    }
    let d = h.finalize();
    let mut b = [0u8; 16];
    b.copy_from_slice(&d[..16]);
    MessageId(uuid::Builder::from_custom_bytes(b).into_uuid())
}

/// A message record from a listing. Format, size and hash of the recording are only known once
/// the body is fetched ([`ImapMessageStore::full_record`]); a listing says WAV, 0 and "".
fn record(mailbox: &MailboxRecord, real: &Folder, s: &VoicemailSummary) -> MessageRecord {
    let urgent = s.flagged || s.meta.is_urgent();
    let folder = match real {
        Folder::Inbox if s.seen => Folder::Old,
        Folder::Inbox if urgent => Folder::Urgent,
        other => other.clone(),
    };
    let when = s.internal_date.unwrap_or(s.meta.orig_time);
    MessageRecord {
        id: message_id(mailbox, real, s),
        mailbox_id: mailbox.id,
        mailbox: mailbox.address.clone(),
        dir: format!("imap:{}", real.as_str()),
        msgnum: 0,
        folder,
        read: s.seen,
        flag: if urgent { Flag::Urgent } else { Flag::None },
        category: s.meta.category.clone(),
        context: String::new(),
        macrocontext: String::new(),
        callerid: super::deposit::merge_callerid(&s.meta.caller_id_name, &s.meta.caller_id_num),
        caller_id_num: s.meta.caller_id_num.clone(),
        caller_id_name: s.meta.caller_id_name.clone(),
        origtime: s.meta.orig_time,
        duration_ms: i64::from(s.meta.duration_secs) * 1000,
        origmailbox: mailbox.address.to_string(),
        exten: String::new(),
        rdnis: String::new(),
        priority: s.meta.priority,
        callerchan: String::new(),
        msg_id: s.meta.msg_id.clone(),
        audio_key: format!(
            "{AUDIO_KEY_PREFIX}{}:{}:{}:{}:",
            mailbox.id,
            real.as_str(),
            s.uid,
            message_id(mailbox, real, s)
        ),
        audio_format: AudioFormat::WavPcm,
        sample_rate: 8000,
        channels: 1,
        byte_size: 0,
        sha256: String::new(),
        forwarded_from: None,
        created_by: "imap".into(),
        created_at: when,
        updated_at: when,
    }
}

/// Parses an IMAP audio key back (folder names never contain `:`).
pub(crate) fn parse_audio_key(key: &str) -> Option<ImapAudioKey> {
    let rest = key.strip_prefix(AUDIO_KEY_PREFIX)?;
    let mut parts = rest.splitn(5, ':');
    let mailbox = parts.next()?.parse().ok()?;
    let folder = Folder::parse(parts.next()?).ok()?;
    let uid = parts.next()?.parse().ok()?;
    let message = parts.next()?.parse().ok()?;
    let sha256 = parts.next()?.to_owned();
    if !sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    Some(ImapAudioKey {
        mailbox,
        folder,
        uid,
        message,
        sha256,
    })
}

/// Sets what the attachment's bytes tell about a record: format, rate, channels, size and hash
/// (the hash also goes into the audio key, for the rendition cache).
fn describe(r: &mut MessageRecord, format: &str, data: &[u8]) {
    let hint = match format {
        "gsm" => RawHint::Gsm,
        "ulaw" | "mu" | "pcm" => RawHint::Ulaw,
        "alaw" | "al" => RawHint::Alaw,
        "sln" | "raw" => RawHint::Slin {
            rate: 8000,
            big_endian: false,
        },
        "sln16" => RawHint::Slin {
            rate: 16000,
            big_endian: false,
        },
        _ => RawHint::Sniff,
    };
    if let Ok(Some(p)) = crate::audio::probe(data, hint, true) {
        r.audio_format = p.format;
        r.sample_rate = p.sample_rate;
        r.channels = p.channels;
    }
    r.byte_size = data.len() as i64;
    r.sha256 = hex::encode(Sha256::digest(data));
    let key = r
        .audio_key
        .trim_end_matches(|c: char| c.is_ascii_hexdigit());
    r.audio_key = format!("{key}{}", r.sha256);
}

/// The recording in the mailbox's `attachfmt`, as Asterisk attaches it: `wav` is 8 kHz 16-bit
/// PCM WAV (Asterisk's `wav`), `wav49` GSM 06.10 in WAV (`msg0000.WAV`), `gsm` raw GSM 06.10,
/// `opus` Ogg Opus (`msg0000.opus`, Asterisk's `format_ogg_opus` name); `original` attaches the
/// recording as deposited. Returns Asterisk's format name and the bytes. A recording already in
/// the asked format is attached unchanged; one that cannot be converted (it was validated on
/// deposit, so this is a bug) is attached as it is, with a warning. CPU work: call from
/// `spawn_blocking`.
pub(crate) fn attachment_in(
    attachfmt: &str,
    format: AudioFormat,
    sample_rate: u32,
    channels: u16,
    data: Vec<u8>,
    opus: (u32, u8),
) -> (&'static str, Vec<u8>) {
    use crate::audio::{OutputFormat, Rendition};
    let (name, out, same) = match attachfmt {
        "wav" => (
            "wav",
            OutputFormat::Wav,
            format == AudioFormat::WavPcm && sample_rate == 8000 && channels == 1,
        ),
        "wav49" | "WAV" => ("wav49", OutputFormat::Wav49, format == AudioFormat::WavGsm),
        "gsm" => ("gsm", OutputFormat::Gsm, format == AudioFormat::RawGsm),
        "opus" | "ogg" => ("opus", OutputFormat::Opus, format == AudioFormat::OggOpus),
        _ => return (asterisk_format(format), data),
    };
    if same {
        return (name, data);
    }
    let rate = (out == OutputFormat::Wav).then_some(8000);
    let made = Rendition::new(out, rate, None, opus.0, opus.1)
        .map_err(|e| e.to_string())
        .and_then(|r| crate::audio::transcode(format, &data, &r).map_err(|e| e.to_string()));
    match made {
        Ok(bytes) => (name, bytes),
        Err(e) => {
            tracing::warn!(attachfmt, error = %e, "cannot convert a recording to attachfmt; attached as deposited");
            (asterisk_format(format), data)
        }
    }
}

#[async_trait]
impl MessageStore for ImapMessageStore {
    async fn insert_message(
        &self,
        mailbox: &MailboxRecord,
        message: NewMessage,
        maxmsg: u32,
        idempotency_key: Option<&str>,
    ) -> Result<Inserted, StoreError> {
        let lock = self.deposit_lock(mailbox.id);
        let _guard = lock.lock().await;
        let mut c = self.connect(mailbox).await?;
        let folders = self.all_folders(&mut c, mailbox).await?;
        let items = self.scan(&mut c, mailbox, &folders).await?;
        if let Some(k) = idempotency_key
            && let Some((real, s, r)) = Self::records(mailbox, items.clone())
                .into_iter()
                .find(|(_, s, _)| s.idempotency_key.as_deref() == Some(k))
        {
            let r = self.full_record(&mut c, mailbox, &real, s.uid, r).await?;
            return Ok(Inserted::Existing(r));
        }
        let in_inbox = items.iter().filter(|(f, _)| *f == Folder::Inbox).count() as u32;
        if in_inbox >= maxmsg {
            return Err(StoreError::MailboxFull {
                mailbox: mailbox.address.to_string(),
                folder: "INBOX".into(),
                max: maxmsg,
            });
        }
        let data = self.read_deposit(&message.audio_key).await?;
        let r = self
            .append_new(&mut c, mailbox, &message, data, in_inbox, idempotency_key)
            .await?;
        let counts = self.counts_on(&mut c, mailbox).await?;
        // The recording now lives in IMAP; the received copy is not needed.
        if let Some(key) = BlobKey::from_stored(&message.audio_key) {
            self.remove_deposit(&key).await;
        }
        Ok(Inserted::Created(Changed { value: r, counts }))
    }

    async fn find_idempotent(
        &self,
        mailbox: &MailboxRecord,
        key: &str,
    ) -> Result<Option<MessageRecord>, StoreError> {
        let mut c = self.connect(mailbox).await?;
        let folders = self.all_folders(&mut c, mailbox).await?;
        let items = self.scan(&mut c, mailbox, &folders).await?;
        let found = Self::records(mailbox, items)
            .into_iter()
            .find(|(_, s, _)| s.idempotency_key.as_deref() == Some(key));
        match found {
            Some((real, s, r)) => Ok(Some(
                self.full_record(&mut c, mailbox, &real, s.uid, r).await?,
            )),
            None => Ok(None),
        }
    }

    async fn list_messages(
        &self,
        mailbox: &MailboxRecord,
        folder: Option<&Folder>,
        after: Option<MessageId>,
        limit: u32,
    ) -> Result<Page<MessageRecord>, StoreError> {
        let mut c = self.connect(mailbox).await?;
        let real: Vec<Folder> = match folder {
            None => self.all_folders(&mut c, mailbox).await?,
            Some(Folder::Inbox | Folder::Old | Folder::Urgent) => vec![Folder::Inbox],
            Some(f) => match asterisk_folder(f) {
                Ok(f) => vec![f],
                // Nothing of the mailbox can be in a folder Asterisk does not have.
                Err(_) => Vec::new(),
            },
        };
        let items = self.scan(&mut c, mailbox, &real).await?;
        let mut all: Vec<MessageRecord> = Self::records(mailbox, items)
            .into_iter()
            .map(|(_, _, r)| r)
            .filter(|r| folder.is_none_or(|f| r.folder.as_str().eq_ignore_ascii_case(f.as_str())))
            .collect();
        if let Some(after) = after {
            match all.iter().position(|r| r.id == after) {
                Some(p) => {
                    all.drain(..=p);
                }
                None => all.clear(),
            }
        }
        let limit = limit as usize;
        let has_more = all.len() > limit;
        all.truncate(limit);
        Ok(Page {
            items: all,
            has_more,
        })
    }

    async fn get_message(
        &self,
        mailbox: &MailboxRecord,
        id: MessageId,
    ) -> Result<MessageRecord, StoreError> {
        let mut c = self.connect(mailbox).await?;
        let (real, uid, r) = self.find(&mut c, mailbox, id).await?;
        self.full_record(&mut c, mailbox, &real, uid, r).await
    }

    async fn update_message(
        &self,
        mailbox: &MailboxRecord,
        id: MessageId,
        folder: Option<Folder>,
        read: Option<bool>,
        maxmsg: u32,
    ) -> Result<Changed<MessageRecord>, StoreError> {
        let folder = folder.map(|f| asterisk_folder(&f)).transpose()?;
        let mut c = self.connect(mailbox).await?;
        let (real, uid, cur) = self.find(&mut c, mailbox, id).await?;
        let (mut real, mut uid) = (real, uid);
        if let Some(to) = &folder {
            let target_real = match to {
                Folder::Inbox | Folder::Old | Folder::Urgent => Folder::Inbox,
                f => f.clone(),
            };
            if target_real != real {
                let there = self
                    .scan(&mut c, mailbox, std::slice::from_ref(&target_real))
                    .await?;
                if there.len() as u32 >= maxmsg {
                    return Err(StoreError::MailboxFull {
                        mailbox: mailbox.address.to_string(),
                        folder: to.as_str().to_owned(),
                        max: maxmsg,
                    });
                }
            }
            c.client()?
                .move_to(&cur.folder, uid, to)
                .await
                .map_err(|e| self.err(mailbox, e))?;
            let (r2, u2, _) = self.find(&mut c, mailbox, id).await?;
            (real, uid) = (r2, u2);
        }
        if let Some(seen) = read {
            c.client()?
                .set_seen(&real, uid, seen)
                .await
                .map_err(|e| self.err(mailbox, e))?;
        }
        let (real, uid, r) = self.find(&mut c, mailbox, id).await?;
        let r = self.full_record(&mut c, mailbox, &real, uid, r).await?;
        let counts = self.counts_on(&mut c, mailbox).await?;
        Ok(Changed { value: r, counts })
    }

    async fn delete_message(
        &self,
        mailbox: &MailboxRecord,
        id: MessageId,
    ) -> Result<Changed<MessageRecord>, StoreError> {
        let mut c = self.connect(mailbox).await?;
        let (real, uid, r) = self.find(&mut c, mailbox, id).await?;
        c.client()?
            .delete(&real, uid)
            .await
            .map_err(|e| self.err(mailbox, e))?;
        let counts = self.counts_on(&mut c, mailbox).await?;
        Ok(Changed { value: r, counts })
    }

    /// The IMAP side of a forward: a copy in each target mailbox (all IMAP-backed), composed for
    /// it from the recording the caller put in [`Self::deposit_store`] under the copy's
    /// `audio_key`; then, without `keep`, the original is deleted (an IMAP original only). All or
    /// nothing: when a copy cannot be made, the copies already made are deleted again. The SQL
    /// side of a mixed forward is the service's (service/messages.rs).
    async fn forward_message(
        &self,
        source: &MailboxRecord,
        id: MessageId,
        targets: Vec<ForwardTarget>,
        keep: bool,
    ) -> Result<Vec<MessageRecord>, StoreError> {
        if let Some(t) = targets.iter().find(|t| !self.handles(&t.mailbox)) {
            return Err(StoreError::Unsupported(format!(
                "the IMAP store cannot forward into {}, whose messages are in SQL",
                t.mailbox.address
            )));
        }
        if !keep && !self.handles(source) {
            return Err(StoreError::Unsupported(
                "the IMAP store cannot remove an original kept in SQL".into(),
            ));
        }
        let mut made: Vec<(MailboxRecord, MessageRecord)> = Vec::new();
        let mut failed = None;
        for t in &targets {
            let copy = match self.read_deposit(&t.message.audio_key).await {
                Ok(data) => {
                    self.append_copy(&t.mailbox, &t.message, data, t.maxmsg)
                        .await
                }
                Err(e) => Err(e),
            };
            match copy {
                Ok(c) => made.push((t.mailbox.clone(), c.value)),
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
        }
        if failed.is_none() && !keep {
            failed = self.delete_message(source, id).await.err();
        }
        for t in &targets {
            if let Some(key) = BlobKey::from_stored(&t.message.audio_key) {
                self.remove_deposit(&key).await;
            }
        }
        let Some(e) = failed else {
            return Ok(made.into_iter().map(|(_, r)| r).collect());
        };
        for (mailbox, copy) in made.into_iter().rev() {
            if let Err(undo) = self.delete_message(&mailbox, copy.id).await {
                tracing::error!(message.id = %copy.id, mailbox = %mailbox.address, error = %undo,
                    "a failed forward could not remove its IMAP copy");
            }
        }
        Err(e)
    }

    async fn counts(&self, mailbox: &MailboxRecord) -> Result<MwiCounts, StoreError> {
        let mut c = self.connect(mailbox).await?;
        self.counts_on(&mut c, mailbox).await
    }

    async fn put_greeting(
        &self,
        mailbox: &MailboxRecord,
        greeting: GreetingRecord,
    ) -> Result<Option<String>, StoreError> {
        let data = self.read_deposit(&greeting.audio_key).await?;
        let mut c = self.greeting_client(mailbox).await?;
        let old = self.greetings_of(&mut c, mailbox, greeting.kind).await?;
        let (format_name, attached) = self
            .convert(
                mailbox,
                greeting.audio_format,
                greeting.sample_rate,
                greeting.channels,
                data,
            )
            .await?;
        let name = greeting.kind.asterisk_dir();
        let meta = VoicemailMeta {
            server_name: self.config.node_id.clone(),
            context: mailbox.address.context.clone(),
            mailbox: mailbox.address.mailbox.clone(),
            duration_secs: u32::try_from((greeting.duration_ms + 500) / 1000).unwrap_or(0),
            orig_time: greeting.updated_at,
            ..VoicemailMeta::default()
        };
        let account = self.account(mailbox)?;
        let env = Envelope {
            server_email: self.config.email.serveremail.clone(),
            to_name: mailbox.fullname.clone(),
            to_email: if mailbox.email.is_empty() {
                account.user.clone()
            } else {
                mailbox.email.clone()
            },
            tz: mailbox.tz.parse().unwrap_or(chrono_tz::Tz::UTC),
            ..Envelope::default()
        };
        let raw = format::compose_greeting(
            name,
            &meta,
            &env,
            &AudioAttachment {
                format: format_name,
                data: &attached,
            },
        );
        // The new greeting first, then the old ones go (Asterisk deletes first; a failure in
        // between would leave the mailbox without its greeting).
        c.client()?
            .append(&Folder::Inbox, &raw, false)
            .await
            .map_err(|e| self.err(mailbox, e))?;
        for s in &old {
            c.client()?
                .delete(&Folder::Inbox, s.uid)
                .await
                .map_err(|e| self.err(mailbox, e))?;
        }
        if let Some(key) = BlobKey::from_stored(&greeting.audio_key) {
            self.remove_deposit(&key).await;
        }
        Ok(old
            .last()
            .map(|s| format!("{GREETING_KEY_PREFIX}{}:{name}:{}", mailbox.id, s.uid)))
    }

    async fn get_greeting(
        &self,
        mailbox: &MailboxRecord,
        kind: GreetingKind,
    ) -> Result<GreetingRecord, StoreError> {
        let mut c = self.greeting_client(mailbox).await?;
        let found = self.greetings_of(&mut c, mailbox, kind).await?;
        let s = found.last().ok_or(StoreError::NotFound)?;
        let m = c
            .client()?
            .fetch(&Folder::Inbox, s.uid)
            .await
            .map_err(|e| self.err(mailbox, e))?;
        let a = m
            .parsed
            .audio
            .ok_or_else(|| StoreError::Corrupt("an IMAP greeting has no recording".into()))?;
        // `describe` fills format, rate, size and hash from the attachment.
        let mut r = record(mailbox, &Folder::Inbox, s);
        describe(&mut r, &a.format, &a.data);
        Ok(GreetingRecord {
            mailbox_id: mailbox.id,
            kind,
            audio_key: format!(
                "{GREETING_KEY_PREFIX}{}:{}:{}",
                mailbox.id,
                kind.asterisk_dir(),
                s.uid
            ),
            audio_format: r.audio_format,
            sample_rate: r.sample_rate,
            channels: r.channels,
            duration_ms: i64::from(s.meta.duration_secs) * 1000,
            byte_size: r.byte_size,
            sha256: r.sha256,
            updated_at: s.internal_date.unwrap_or(s.meta.orig_time),
            asterisk_recording: None,
        })
    }

    async fn delete_greeting(
        &self,
        mailbox: &MailboxRecord,
        kind: GreetingKind,
    ) -> Result<GreetingRecord, StoreError> {
        let g = self.get_greeting(mailbox, kind).await?;
        let mut c = self.greeting_client(mailbox).await?;
        for s in self.greetings_of(&mut c, mailbox, kind).await? {
            c.client()?
                .delete(&Folder::Inbox, s.uid)
                .await
                .map_err(|e| self.err(mailbox, e))?;
        }
        Ok(g)
    }
}

/// The outcome of [`RoutedStore::claim`].
enum Claim {
    /// This try holds the key: deposit.
    Held,
    /// Another try's message.
    Found(Box<MessageRecord>),
}

/// The message store of the services: IMAP for mailboxes of IMAP contexts, SQL for the others
/// and for every greeting.
pub(crate) struct RoutedStore {
    pub(crate) sql: Arc<SqlStore>,
    pub(crate) imap: Arc<ImapMessageStore>,
}

/// voxmail changing some IMAP mailboxes (see [`SqlStore::mark_imap_busy`]): marked when made,
/// unmarked when dropped unless the change's recording already did it — also when the request
/// is dropped midway (its client hung up), by a task of its own.
struct Busy {
    sql: Arc<SqlStore>,
    token: String,
    mailboxes: Vec<MailboxId>,
}

impl Busy {
    async fn mark(sql: &Arc<SqlStore>, mailboxes: Vec<MailboxId>) -> Self {
        let token = MessageId::new().to_string();
        let until = crate::domain::now_ms() + IMAP_BUSY_MS;
        for m in &mailboxes {
            if let Err(e) = sql.mark_imap_busy(*m, &token, until).await {
                tracing::warn!(error = %e, "cannot mark an IMAP mailbox as being changed");
            }
        }
        Self {
            sql: sql.clone(),
            token,
            mailboxes,
        }
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        if self.mailboxes.is_empty() {
            return;
        }
        let (sql, token, mailboxes) = (
            self.sql.clone(),
            std::mem::take(&mut self.token),
            std::mem::take(&mut self.mailboxes),
        );
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                for m in mailboxes {
                    if let Err(e) = sql.clear_imap_busy(m, &token).await {
                        tracing::warn!(error = %e, "cannot unmark an IMAP mailbox");
                    }
                }
            });
        }
    }
}

impl RoutedStore {
    /// Marks the mailboxes among `mailboxes` kept in IMAP as being changed by voxmail.
    async fn busy<'a>(&self, mailboxes: impl IntoIterator<Item = &'a MailboxRecord>) -> Busy {
        let ids: Vec<MailboxId> = mailboxes
            .into_iter()
            .filter(|m| self.imap.handles(m))
            .map(|m| m.id)
            .collect();
        Busy::mark(&self.sql, ids).await
    }

    fn pick(&self, mailbox: &MailboxRecord) -> &dyn MessageStore {
        if self.imap.handles(mailbox) {
            &*self.imap
        } else {
            &*self.sql
        }
    }

    /// Claims a deposit's Idempotency-Key in SQL, so tries on several nodes append once (the
    /// deposit lock of `ImapMessageStore` only serializes one node). When another try holds it,
    /// waits (up to the IMAP timeout) for that try's message to appear in IMAP, found by its
    /// header; a claim older than twice the timeout plus 30 s is a dead try's and is taken over.
    async fn claim(
        &self,
        mailbox: &MailboxRecord,
        key: &str,
        id: MessageId,
    ) -> Result<Claim, StoreError> {
        let timeout = self
            .imap
            .timeout(mailbox)
            .max(std::time::Duration::from_secs(1));
        let stale = 2 * timeout.as_secs() as i64 + 30;
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let Some(age) = self.sql.claim_idempotency_key(mailbox.id, key, id).await? else {
                return Ok(Claim::Held);
            };
            if let Some(r) = self.imap.find_idempotent(mailbox, key).await? {
                return Ok(Claim::Found(Box::new(r)));
            }
            if age > stale
                && self
                    .sql
                    .take_over_idempotency_key(mailbox.id, key, id, stale)
                    .await?
            {
                return Ok(Claim::Held);
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(StoreError::Unavailable {
                    message: "a deposit with this Idempotency-Key is in progress; retry".into(),
                    retry_after: self.imap.retry_after_secs(mailbox),
                });
            }
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
    }

    /// Records a change voxmail made in a mailbox's IMAP folders: the counts read after it
    /// become the mailbox's last known counts, and the outbox event goes out with them (and the
    /// mailbox's new version). The change itself is done; when the database cannot record it,
    /// the counts are returned unversioned and the watchers record them on their next look.
    async fn record(
        &self,
        mailbox: &MailboxRecord,
        counts: MwiCounts,
        event_type: &str,
        message_id: Option<MessageId>,
        notify: Option<(i64, Option<(&str, &str)>)>,
    ) -> MwiCounts {
        let change = ImapChange::Made {
            event_type,
            message_id,
            notify: notify.map(|n| n.0),
            forwarded_by: notify.and_then(|n| n.1),
        };
        match self.sql.record_imap_counts(mailbox, counts, change).await {
            Ok(r) => r.written().unwrap_or(counts),
            Err(e) => {
                tracing::warn!(mailbox = %mailbox.address, error = %e,
                    "cannot record an IMAP change in the outbox; the watcher will");
                counts
            }
        }
    }

    /// Records a change whose counts were not read with it (forwards; `notify` queues a
    /// forwarded copy's e-mails).
    async fn record_fresh(
        &self,
        mailbox: &MailboxRecord,
        event_type: &str,
        message_id: Option<MessageId>,
        notify: Option<(i64, Option<(&str, &str)>)>,
    ) {
        match self.imap.counts(mailbox).await {
            Ok(c) => {
                self.record(mailbox, c, event_type, message_id, notify)
                    .await;
            }
            Err(e) => tracing::warn!(mailbox = %mailbox.address, error = %e,
                "cannot read IMAP counts after a change; the watcher will"),
        }
    }
}

#[async_trait]
impl MessageStore for RoutedStore {
    async fn insert_message(
        &self,
        mailbox: &MailboxRecord,
        message: NewMessage,
        maxmsg: u32,
        idempotency_key: Option<&str>,
    ) -> Result<Inserted, StoreError> {
        if !self.imap.handles(mailbox) {
            return self
                .sql
                .insert_message(mailbox, message, maxmsg, idempotency_key)
                .await;
        }
        let _busy = self.busy([mailbox]).await;
        let claimed = match idempotency_key {
            Some(k) => match self.claim(mailbox, k, message.id).await? {
                Claim::Held => Some(k),
                Claim::Found(r) => return Ok(Inserted::Existing(*r)),
            },
            None => None,
        };
        let id = message.id;
        let inserted = match self
            .imap
            .insert_message(mailbox, message, maxmsg, idempotency_key)
            .await
        {
            Ok(i) => i,
            Err(e) => {
                // Nothing was appended, or an APPEND whose answer was lost: either way the next
                // try may claim the key (and finds such a message by its header).
                if let Some(k) = claimed
                    && let Err(e) = self.sql.release_idempotency_key(mailbox.id, k, id).await
                {
                    tracing::warn!(error = %e, "cannot release an Idempotency-Key claim");
                }
                return Err(e);
            }
        };
        Ok(match inserted {
            Inserted::Created(Changed { value, counts }) if self.imap.handles(mailbox) => {
                let counts = self
                    .record(
                        mailbox,
                        counts,
                        "message.deposited",
                        Some(value.id),
                        Some((value.msgnum, None)),
                    )
                    .await;
                Inserted::Created(Changed { value, counts })
            }
            other => other,
        })
    }

    async fn find_idempotent(
        &self,
        mailbox: &MailboxRecord,
        key: &str,
    ) -> Result<Option<MessageRecord>, StoreError> {
        self.pick(mailbox).find_idempotent(mailbox, key).await
    }

    async fn list_messages(
        &self,
        mailbox: &MailboxRecord,
        folder: Option<&Folder>,
        after: Option<MessageId>,
        limit: u32,
    ) -> Result<Page<MessageRecord>, StoreError> {
        self.pick(mailbox)
            .list_messages(mailbox, folder, after, limit)
            .await
    }

    async fn get_message(
        &self,
        mailbox: &MailboxRecord,
        id: MessageId,
    ) -> Result<MessageRecord, StoreError> {
        self.pick(mailbox).get_message(mailbox, id).await
    }

    async fn update_message(
        &self,
        mailbox: &MailboxRecord,
        id: MessageId,
        folder: Option<Folder>,
        read: Option<bool>,
        maxmsg: u32,
    ) -> Result<Changed<MessageRecord>, StoreError> {
        // IMAP does not say whether the message changed folder: a named folder, or a read
        // change of a message in INBOX (which moves it between INBOX and Old), is a move.
        let named = folder.is_some();
        let _busy = self.busy([mailbox]).await;
        let changed = self
            .pick(mailbox)
            .update_message(mailbox, id, folder, read, maxmsg)
            .await?;
        if !self.imap.handles(mailbox) {
            return Ok(changed);
        }
        let Changed { value, counts } = changed;
        let in_inbox = matches!(value.folder, Folder::Inbox | Folder::Old | Folder::Urgent);
        let event = if named || (read.is_some() && in_inbox) {
            "message.moved"
        } else {
            "message.updated"
        };
        let counts = self.record(mailbox, counts, event, Some(id), None).await;
        Ok(Changed { value, counts })
    }

    async fn delete_message(
        &self,
        mailbox: &MailboxRecord,
        id: MessageId,
    ) -> Result<Changed<MessageRecord>, StoreError> {
        let _busy = self.busy([mailbox]).await;
        let changed = self.pick(mailbox).delete_message(mailbox, id).await?;
        if !self.imap.handles(mailbox) {
            return Ok(changed);
        }
        let Changed { value, counts } = changed;
        let counts = self
            .record(mailbox, counts, "message.deleted", Some(id), None)
            .await;
        Ok(Changed { value, counts })
    }

    async fn forward_message(
        &self,
        source: &MailboxRecord,
        id: MessageId,
        targets: Vec<ForwardTarget>,
        keep: bool,
    ) -> Result<Vec<MessageRecord>, StoreError> {
        if !self.imap.handles(source) && !targets.iter().any(|t| self.imap.handles(&t.mailbox)) {
            return self.sql.forward_message(source, id, targets, keep).await;
        }
        let imap_targets: Vec<MailboxRecord> = targets
            .iter()
            .map(|t| t.mailbox.clone())
            .filter(|m| self.imap.handles(m))
            .collect();
        let _busy = self
            .busy(imap_targets.iter().chain(std::iter::once(source)))
            .await;
        let copies = self.imap.forward_message(source, id, targets, keep).await?;
        // The SQL sides wrote their own events; the IMAP sides are recorded here.
        for copy in &copies {
            if let Some(m) = imap_targets.iter().find(|m| m.id == copy.mailbox_id) {
                // Mailed as Asterisk mails a forward: the forwarding mailbox is the caller.
                let by = (source.address.mailbox.as_str(), source.fullname.as_str());
                self.record_fresh(
                    m,
                    "message.deposited",
                    Some(copy.id),
                    Some((copy.msgnum, Some(by))),
                )
                .await;
            }
        }
        if !keep && self.imap.handles(source) {
            self.record_fresh(source, "message.deleted", Some(id), None)
                .await;
        }
        Ok(copies)
    }

    async fn counts(&self, mailbox: &MailboxRecord) -> Result<MwiCounts, StoreError> {
        if !self.imap.handles(mailbox) {
            return self.sql.counts(mailbox).await;
        }
        // Live counts; a difference from the last recorded ones is recorded as an observation,
        // so the answer carries the version every consumer sees.
        let read_at_ms = crate::domain::now_ms();
        let counts = self.imap.counts(mailbox).await?;
        match self
            .sql
            .record_imap_counts(mailbox, counts, ImapChange::Observed { read_at_ms })
            .await
        {
            Ok(Recorded::Written(c)) => Ok(c),
            Ok(Recorded::Unchanged | Recorded::Deferred) => Ok(self
                .sql
                .imap_counts(mailbox.id)
                .await?
                .flatten()
                .map_or(counts, |known| MwiCounts {
                    version: known.version,
                    ..counts
                })),
            Err(e) => Err(e),
        }
    }

    async fn put_greeting(
        &self,
        mailbox: &MailboxRecord,
        greeting: GreetingRecord,
    ) -> Result<Option<String>, StoreError> {
        self.sql.put_greeting(mailbox, greeting).await
    }

    async fn get_greeting(
        &self,
        mailbox: &MailboxRecord,
        kind: GreetingKind,
    ) -> Result<GreetingRecord, StoreError> {
        self.sql.get_greeting(mailbox, kind).await
    }

    async fn delete_greeting(
        &self,
        mailbox: &MailboxRecord,
        kind: GreetingKind,
    ) -> Result<GreetingRecord, StoreError> {
        self.sql.delete_greeting(mailbox, kind).await
    }
}
