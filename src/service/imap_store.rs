//! The IMAP message store (issue #7): contexts configured with `store = "imap"` keep their
//! messages in IMAP folders in Asterisk's `IMAP_STORAGE` format (`crate::imap`), while contexts,
//! mailboxes and greetings stay in SQL. [`RoutedStore`] is the `MessageStore` the services use:
//! it sends each call to SQL or IMAP by the mailbox's context. See docs/ARCHITECTURE.md, "IMAP
//! storage".

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use futures_util::TryStreamExt as _;
use sha2::{Digest as _, Sha256};

use crate::audio::RawHint;
use crate::blob::{BlobKey, BlobStore};
use crate::config::{Config, ImapContextConfig};
use crate::domain::{AudioFormat, Flag, Folder, GreetingKind, MailboxId, MessageId, MwiCounts};
use crate::imap::format::{self, AudioAttachment, Envelope, VoicemailMeta};
use crate::imap::{ImapAccount, ImapClient, ImapError, ImapTls, Owner, VoicemailSummary};
use crate::store::{
    Changed, ForwardTarget, GreetingRecord, Inserted, MailboxRecord, MessageRecord, MessageStore,
    NewMessage, Page, SqlStore, StoreError,
};

/// The IMAP folders a mailbox's messages can be in (Old and Urgent are flags on INBOX).
const FOLDERS: [Folder; 5] = [
    Folder::Inbox,
    Folder::Work,
    Folder::Family,
    Folder::Friends,
    Folder::Deleted,
];

/// The prefix of the `audio_key` of IMAP messages: `imap:<mailbox id>:<folder>:<uid>`.
pub(crate) const AUDIO_KEY_PREFIX: &str = "imap:";

/// Messages of IMAP-backed contexts.
pub(crate) struct ImapMessageStore {
    blobs: Arc<dyn BlobStore>,
    config: Arc<Config>,
    /// Serializes deposits into one mailbox on this node, so two tries with one Idempotency-Key
    /// cannot both APPEND.
    deposit_locks: Mutex<HashMap<MailboxId, Arc<tokio::sync::Mutex<()>>>>,
}

/// A connection that logs out in the background when dropped.
struct Conn(Option<ImapClient>);

impl Conn {
    fn client(&mut self) -> Result<&mut ImapClient, StoreError> {
        self.0
            .as_mut()
            .ok_or_else(|| StoreError::Corrupt("IMAP connection already closed".into()))
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        if let Some(c) = self.0.take()
            && !c.is_broken()
            && let Ok(rt) = tokio::runtime::Handle::try_current()
        {
            rt.spawn(c.logout());
        }
    }
}

impl ImapMessageStore {
    /// The store, when at least one context is configured for IMAP.
    pub(crate) fn new(blobs: Arc<dyn BlobStore>, config: Arc<Config>) -> Option<Self> {
        config
            .imap
            .contexts
            .values()
            .any(ImapContextConfig::is_imap)
            .then(|| Self {
                blobs,
                config,
                deposit_locks: Mutex::new(HashMap::new()),
            })
    }

    fn settings(&self, context: &str) -> Option<&ImapContextConfig> {
        self.config
            .imap
            .contexts
            .get(context)
            .filter(|c| c.is_imap())
    }

    /// Whether the mailbox's messages are in IMAP.
    pub(crate) fn handles(&self, mailbox: &MailboxRecord) -> bool {
        self.settings(&mailbox.address.context).is_some()
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
        let mut a = if let Some(login) = c.mailboxes.get(&mailbox.address.mailbox) {
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
        a.tls = match c.tls.as_str() {
            "none" => ImapTls::None,
            "starttls" => ImapTls::StartTls,
            _ => ImapTls::Implicit,
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
        Ok(a)
    }

    async fn connect(&self, mailbox: &MailboxRecord) -> Result<Conn, StoreError> {
        let account = Arc::new(self.account(mailbox)?);
        let owner = Owner::new(&mailbox.address.mailbox, &mailbox.address.context);
        match ImapClient::connect(account, owner).await {
            Ok(c) => Ok(Conn(Some(c))),
            Err(e) => Err(self.err(mailbox, e)),
        }
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
            out.extend(list.into_iter().map(|s| (f.clone(), s)));
        }
        Ok(out)
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
        let items = self.scan(c, mailbox, &FOLDERS).await?;
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
        let n = c
            .client()?
            .counts()
            .await
            .map_err(|e| self.err(mailbox, e))?;
        Ok(MwiCounts {
            new: n.new,
            old: n.old,
            urgent_new: n.urgent_new,
            urgent_old: n.urgent_old,
            version: 0,
        })
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
            let hint = match a.format.as_str() {
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
            if let Ok(Some(p)) = crate::audio::probe(&a.data, hint, true) {
                r.audio_format = p.format;
                r.sample_rate = p.sample_rate;
                r.channels = p.channels;
            }
            r.byte_size = a.data.len() as i64;
            r.sha256 = hex::encode(Sha256::digest(&a.data));
        }
        Ok(r)
    }

    fn deposit_lock(&self, id: MailboxId) -> Arc<tokio::sync::Mutex<()>> {
        let mut map = self
            .deposit_locks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        map.entry(id).or_default().clone()
    }

    async fn read_blob(&self, key: &str) -> Result<Vec<u8>, StoreError> {
        let key = BlobKey::from_stored(key)
            .ok_or_else(|| StoreError::Corrupt("malformed audio key".into()))?;
        let read = self.blobs.open(&key, None).await.map_err(|e| {
            tracing::error!(error = %e, "reading a deposit's audio for IMAP");
            StoreError::Corrupt("the deposit's audio could not be read".into())
        })?;
        let chunks: Vec<bytes::Bytes> = read.stream.try_collect().await.map_err(|e| {
            tracing::error!(error = %e, "reading a deposit's audio for IMAP");
            StoreError::Corrupt("the deposit's audio could not be read".into())
        })?;
        Ok(chunks.concat())
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
            "{AUDIO_KEY_PREFIX}{}:{}:{}",
            mailbox.id,
            real.as_str(),
            s.uid
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

/// Parses an IMAP audio key back into (mailbox id, IMAP folder, UID).
pub(crate) fn parse_audio_key(key: &str) -> Option<(MailboxId, Folder, u32)> {
    let rest = key.strip_prefix(AUDIO_KEY_PREFIX)?;
    let mut parts = rest.splitn(3, ':');
    let id = parts.next()?.parse().ok()?;
    let folder = Folder::parse(parts.next()?).ok()?;
    let uid = parts.next()?.parse().ok()?;
    Some((id, folder, uid))
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
        let items = self.scan(&mut c, mailbox, &FOLDERS).await?;
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
        let data = self.read_blob(&message.audio_key).await?;
        let urgent = message.flag == Flag::Urgent;
        let meta = VoicemailMeta {
            msgnum: in_inbox,
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
                format: asterisk_format(message.audio_format),
                data: &data,
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
        let inbox = self.scan(&mut c, mailbox, &[Folder::Inbox]).await?;
        let (_, _, mut r) = Self::records(mailbox, inbox)
            .into_iter()
            .find(|(_, _, r)| r.id == message.id)
            .ok_or_else(|| self.unavailable(mailbox, "the appended voicemail is not listed"))?;
        r.audio_format = message.audio_format;
        r.sample_rate = message.sample_rate;
        r.channels = message.channels;
        r.byte_size = message.byte_size;
        r.sha256 = message.sha256.clone();
        r.duration_ms = message.duration_ms;
        let counts = self.counts_on(&mut c, mailbox).await?;
        // The recording now lives in IMAP; the deposit's copy in the audio store is not needed.
        if let Some(key) = BlobKey::from_stored(&message.audio_key)
            && let Err(e) = self.blobs.remove(&key).await
        {
            tracing::warn!(audio.key = %message.audio_key, error = %e, "could not remove audio; left as orphan");
        }
        Ok(Inserted::Created(Changed { value: r, counts }))
    }

    async fn find_idempotent(
        &self,
        mailbox: &MailboxRecord,
        key: &str,
    ) -> Result<Option<MessageRecord>, StoreError> {
        let mut c = self.connect(mailbox).await?;
        let items = self.scan(&mut c, mailbox, &FOLDERS).await?;
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
            None => FOLDERS.to_vec(),
            Some(Folder::Inbox | Folder::Old | Folder::Urgent) => vec![Folder::Inbox],
            Some(f) => vec![f.clone()],
        };
        let items = self.scan(&mut c, mailbox, &real).await?;
        let mut all: Vec<MessageRecord> = Self::records(mailbox, items)
            .into_iter()
            .map(|(_, _, r)| r)
            .filter(|r| folder.is_none_or(|f| r.folder == *f))
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

    async fn forward_message(
        &self,
        _source: &MailboxRecord,
        _id: MessageId,
        _targets: Vec<ForwardTarget>,
        _keep: bool,
    ) -> Result<Vec<MessageRecord>, StoreError> {
        Err(StoreError::Unsupported(
            "forwarding from or to a mailbox whose messages are in IMAP is not implemented yet"
                .into(),
        ))
    }

    async fn counts(&self, mailbox: &MailboxRecord) -> Result<MwiCounts, StoreError> {
        let mut c = self.connect(mailbox).await?;
        self.counts_on(&mut c, mailbox).await
    }

    async fn put_greeting(
        &self,
        _mailbox: &MailboxRecord,
        _greeting: GreetingRecord,
    ) -> Result<Option<String>, StoreError> {
        Err(StoreError::Unsupported(
            "greetings are kept in SQL (RoutedStore)".into(),
        ))
    }

    async fn get_greeting(
        &self,
        _mailbox: &MailboxRecord,
        _kind: GreetingKind,
    ) -> Result<GreetingRecord, StoreError> {
        Err(StoreError::Unsupported(
            "greetings are kept in SQL (RoutedStore)".into(),
        ))
    }

    async fn delete_greeting(
        &self,
        _mailbox: &MailboxRecord,
        _kind: GreetingKind,
    ) -> Result<GreetingRecord, StoreError> {
        Err(StoreError::Unsupported(
            "greetings are kept in SQL (RoutedStore)".into(),
        ))
    }
}

/// The message store of the services: IMAP for mailboxes of IMAP contexts, SQL for the others
/// and for every greeting.
pub(crate) struct RoutedStore {
    pub(crate) sql: Arc<SqlStore>,
    pub(crate) imap: Arc<ImapMessageStore>,
}

impl RoutedStore {
    fn pick(&self, mailbox: &MailboxRecord) -> &dyn MessageStore {
        if self.imap.handles(mailbox) {
            &*self.imap
        } else {
            &*self.sql
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
        self.pick(mailbox)
            .insert_message(mailbox, message, maxmsg, idempotency_key)
            .await
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
        self.pick(mailbox)
            .update_message(mailbox, id, folder, read, maxmsg)
            .await
    }

    async fn delete_message(
        &self,
        mailbox: &MailboxRecord,
        id: MessageId,
    ) -> Result<Changed<MessageRecord>, StoreError> {
        self.pick(mailbox).delete_message(mailbox, id).await
    }

    async fn forward_message(
        &self,
        source: &MailboxRecord,
        id: MessageId,
        targets: Vec<ForwardTarget>,
        keep: bool,
    ) -> Result<Vec<MessageRecord>, StoreError> {
        if self.imap.handles(source) || targets.iter().any(|t| self.imap.handles(&t.mailbox)) {
            return self.imap.forward_message(source, id, targets, keep).await;
        }
        self.sql.forward_message(source, id, targets, keep).await
    }

    async fn counts(&self, mailbox: &MailboxRecord) -> Result<MwiCounts, StoreError> {
        self.pick(mailbox).counts(mailbox).await
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
