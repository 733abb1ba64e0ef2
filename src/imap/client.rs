//! A small async IMAP client for voicemail kept in Asterisk's `IMAP_STORAGE` layout, over
//! `async-imap` on tokio with rustls (ring).
//!
//! One [`ImapClient`] is one authenticated connection acting for one voicemail box (an
//! [`Owner`]: mailbox number and context, matched against `X-Asterisk-VM-Extension` and
//! `X-Asterisk-VM-Context`). It maps voicemail operations to IMAP as Asterisk does:
//!
//! - INBOX unseen = new (unseen and `\Flagged` = urgent), INBOX `\Seen` = Old; the `Old` and
//!   `Urgent` folders are not IMAP folders but INBOX with those flags. Work, Family, Friends,
//!   Deleted and custom folders are real folders, under the optional parent folder.
//! - Only messages with the owner's `X-Asterisk-VM-*` headers are listed or changed: every
//!   mutation first checks that the target UID is one of the owner's voicemails, so ordinary mail
//!   in the same folder is never touched.
//! - Delete is `\Deleted` + `UID EXPUNGE` of that UID (UIDPLUS); never a plain `EXPUNGE`, which
//!   would also remove other messages marked `\Deleted` by a mail client. Without UIDPLUS the
//!   message stays marked `\Deleted` (hidden from listings, as in Asterisk).
//! - Reading a message uses `BODY.PEEK[]`, so it does not set `\Seen`.
//!
//! Every operation has the account's timeout. A timeout or an I/O error leaves the connection in
//! an unknown state: the client is then *broken* ([`ImapClient::is_broken`]) and every later call
//! fails fast with [`ImapError::Broken`]; the owner of the client (a pool) drops it and connects
//! again. Errors and logs never contain the password: the `LOGIN` command is written with a
//! placeholder that the transport swaps for the secret on the wire, so even `async-imap`'s
//! trace-level protocol log does not see it.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::io;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use async_imap::imap_proto::rfc4315::UidSetMember;
use async_imap::imap_proto::{RequestId, Response, ResponseCode, Status};
use async_imap::types::{Capability, Fetch, Flag};
use futures_util::TryStreamExt as _;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt as _, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::{self, ClientConfig, RootCertStore};

use super::format::{self, ParsedVoicemail, VoicemailMeta};
use crate::domain::Folder;

/// How the connection is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ImapTls {
    /// Plain TCP (loopback or a trusted network only).
    None,
    /// Plain TCP upgraded with `STARTTLS` before login (port 143).
    StartTls,
    /// TLS from the first byte (port 993).
    #[default]
    Implicit,
}

/// Where and as whom to connect: the settings of one IMAP account (Asterisk's `imapserver`,
/// `imapport`, `imapflags`, `imapuser`/`imappassword` or `authuser`/`authpassword`, `imapfolder`,
/// `imapparentfolder`).
#[derive(Clone)]
pub struct ImapAccount {
    /// Server host name (also the TLS server name).
    pub host: String,
    /// Server port (993 implicit TLS, 143 otherwise).
    pub port: u16,
    /// Transport protection.
    pub tls: ImapTls,
    /// A PEM file of extra trusted CA certificates (beside the public roots).
    pub ca_file: Option<PathBuf>,
    /// The IMAP user whose mailbox holds the voicemail.
    pub user: String,
    /// The password: the user's, or the master user's when `master_user` is set. Never logged.
    pub password: String,
    /// Log in as `user*master_user` with the master user's password (Dovecot master users;
    /// Asterisk's `authuser`).
    pub master_user: Option<String>,
    /// The folder new voicemail goes to (Asterisk's `imapfolder`, default `INBOX`).
    pub folder: String,
    /// The parent of Work/Family/Friends/… (Asterisk's `imapparentfolder`, e.g. `INBOX`); none
    /// puts them at the top level.
    pub parent_folder: Option<String>,
    /// The limit of every operation (connect, login, each command).
    pub timeout: Duration,
    /// Use IDLE when the server has it; `false` always polls.
    pub use_idle: bool,
    /// The polling interval of [`ImapClient::wait_for_change`] without IDLE.
    pub poll_interval: Duration,
}

impl ImapAccount {
    /// An account with the defaults: implicit TLS on 993, INBOX, no parent folder, 30 s timeout,
    /// IDLE, 5 s polling.
    pub fn new(
        host: impl Into<String>,
        user: impl Into<String>,
        password: impl Into<String>,
    ) -> Self {
        Self {
            host: host.into(),
            port: 993,
            tls: ImapTls::Implicit,
            ca_file: None,
            user: user.into(),
            password: password.into(),
            master_user: None,
            folder: "INBOX".into(),
            parent_folder: None,
            timeout: Duration::from_secs(30),
            use_idle: true,
            poll_interval: Duration::from_secs(5),
        }
    }

    /// The name sent in `LOGIN`: `user`, or `user*master` for a master-user login.
    pub fn login_name(&self) -> String {
        match &self.master_user {
            Some(m) if !m.is_empty() => format!("{}*{m}", self.user),
            _ => self.user.clone(),
        }
    }
}

impl fmt::Debug for ImapAccount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ImapAccount")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("tls", &self.tls)
            .field("ca_file", &self.ca_file)
            .field("user", &self.user)
            .field("password", &"<redacted>")
            .field("master_user", &self.master_user)
            .field("folder", &self.folder)
            .field("parent_folder", &self.parent_folder)
            .field("timeout", &self.timeout)
            .field("use_idle", &self.use_idle)
            .field("poll_interval", &self.poll_interval)
            .finish()
    }
}

/// The voicemail box a client acts for: what `X-Asterisk-VM-Extension` and
/// `X-Asterisk-VM-Context` must say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    /// The mailbox number (or Asterisk's `imapvmshareid`).
    pub mailbox: String,
    /// The voicemail context.
    pub context: String,
}

impl Owner {
    /// An owner from mailbox and context.
    pub fn new(mailbox: impl Into<String>, context: impl Into<String>) -> Self {
        Self {
            mailbox: mailbox.into(),
            context: context.into(),
        }
    }

    fn matches(&self, meta: &VoicemailMeta) -> bool {
        meta.mailbox == self.mailbox && meta.context.eq_ignore_ascii_case(&self.context)
    }
}

/// Why an IMAP operation failed. Messages never include the password.
#[derive(Debug, thiserror::Error)]
pub enum ImapError {
    /// The account settings cannot work (e.g. a password with a line break, a bad CA file).
    #[error("IMAP configuration: {0}")]
    Config(String),
    /// The server could not be reached or the TLS handshake failed.
    #[error("IMAP connect to {host}:{port}: {reason}")]
    Connect {
        /// Server host.
        host: String,
        /// Server port.
        port: u16,
        /// What went wrong.
        reason: String,
    },
    /// The server refused the login.
    #[error("IMAP login as {user} refused: {reason}")]
    Login {
        /// The login name (`user` or `user*master`).
        user: String,
        /// The server's answer.
        reason: String,
    },
    /// The operation did not finish within the account's timeout.
    #[error("IMAP {op} timed out after {secs} s")]
    Timeout {
        /// The operation.
        op: &'static str,
        /// The limit.
        secs: u64,
    },
    /// The server answered NO or BAD.
    #[error("IMAP {op} refused: {reason}")]
    Refused {
        /// The operation.
        op: &'static str,
        /// The server's answer.
        reason: String,
    },
    /// The connection failed mid-operation.
    #[error("IMAP {op}: {reason}")]
    Protocol {
        /// The operation.
        op: &'static str,
        /// What went wrong.
        reason: String,
    },
    /// An earlier timeout or I/O error left this connection unusable: connect again.
    #[error("IMAP connection is broken after an earlier error; reconnect")]
    Broken,
    /// The UID is not one of the owner's voicemails in that folder (absent, or ordinary mail).
    #[error("no voicemail with UID {uid} in {folder}")]
    NotFound {
        /// The IMAP folder.
        folder: String,
        /// The UID.
        uid: u32,
    },
}

impl ImapError {
    /// Whether the error means the server or the connection is unavailable (worth a 503 and a
    /// retry), as opposed to a refusal or a missing message.
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            Self::Connect { .. } | Self::Timeout { .. } | Self::Protocol { .. } | Self::Broken
        )
    }
}

type Result<T> = std::result::Result<T, ImapError>;

/// A voicemail in a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VoicemailSummary {
    /// The IMAP UID in its folder.
    pub uid: u32,
    /// `\Seen`: read (Old when in INBOX).
    pub seen: bool,
    /// `\Flagged`: urgent.
    pub flagged: bool,
    /// The message size in bytes (`RFC822.SIZE`).
    pub size: u32,
    /// The server's arrival time (`INTERNALDATE`), Unix seconds.
    pub internal_date: Option<i64>,
    /// The `X-Asterisk-VM-*` metadata.
    pub meta: VoicemailMeta,
    /// voxmail's message id (`X-Voxmail-Message-Id`), on messages voxmail appended.
    pub voxmail_id: Option<String>,
    /// The deposit's Idempotency-Key (`X-Voxmail-Idempotency-Key`), when it had one.
    pub idempotency_key: Option<String>,
}

/// A voicemail fetched whole.
#[derive(Debug, Clone)]
pub struct FetchedVoicemail {
    /// The listing data.
    pub summary: VoicemailSummary,
    /// The parsed message (metadata, subject, recording).
    pub parsed: ParsedVoicemail,
    /// The message as stored.
    pub raw: Vec<u8>,
}

/// Voicemail counts as Asterisk's IMAP storage computes them (INBOX, not `\Deleted`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Counts {
    /// Unseen voicemails in INBOX (urgent ones included, as Asterisk's `messagecount`).
    pub new: u32,
    /// Seen voicemails in INBOX (Asterisk's Old folder).
    pub old: u32,
    /// Unseen and `\Flagged`.
    pub urgent_new: u32,
    /// Seen and `\Flagged`.
    pub urgent_old: u32,
}

/// What [`ImapClient::wait_for_change`] saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// The folder changed (a message arrived, left, or its flags changed).
    Changed,
    /// Nothing changed within the wait.
    Timeout,
}

/// The flag adjustments that make a virtual folder (`Old`, `Urgent`, `INBOX`) out of INBOX.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Virtual {
    None,
    Inbox,
    Old,
    Urgent,
}

type Session = async_imap::Session<Transport>;

/// One authenticated IMAP connection acting for one voicemail box. See the module docs.
pub struct ImapClient {
    session: Option<Session>,
    account: Arc<ImapAccount>,
    owner: Owner,
    capabilities: HashSet<String>,
    delimiter: Option<String>,
    /// The selected folder and whether it is read-only (EXAMINE).
    selected: Option<(String, bool)>,
    broken: bool,
    /// The server reported a change of the selected folder (EXISTS, EXPUNGE, a FETCH of flags
    /// we did not ask for) since [`ImapClient::clear_changed`].
    changed: bool,
    /// The selected folder's view may be behind other sessions' changes: the next operation on
    /// it sends NOOP first ([`ImapClient::resync_next`]).
    stale: bool,
    /// What listings learnt about UIDs, per folder (see [`UidCache`]).
    uids: HashMap<String, UidCache>,
}

/// What never changes about the UIDs of one folder: an IMAP message is immutable and a UID is
/// never reused while the folder's UIDVALIDITY stays, so whether a UID is one of the owner's
/// voicemails, and its listing data other than the flags, are read once per connection. Later
/// listings and counts fetch only the flags of known UIDs (a few bytes each instead of the
/// headers): a watcher's look at a mailbox of 1,000 voicemails stops re-reading 1,000 headers.
#[derive(Debug, Default)]
struct UidCache {
    /// The folder's UIDVALIDITY when this was learnt.
    validity: u32,
    /// By UID: the summary (flags as first seen; fetched again each time), or `None` when the
    /// UID is not one of the owner's voicemails (a substring match of the server's SEARCH).
    known: HashMap<u32, Option<VoicemailSummary>>,
}

/// The most UIDs a connection remembers over all folders; past it the memory starts afresh.
const UID_CACHE_LIMIT: usize = 50_000;

impl fmt::Debug for ImapClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ImapClient")
            .field("host", &self.account.host)
            .field("user", &self.account.user)
            .field("owner", &self.owner)
            .field("selected", &self.selected)
            .field("broken", &self.broken)
            .finish()
    }
}

/// Runs one operation (`|session| body`, an expression using `async_imap`) with the account's
/// timeout, through [`ImapClient::session_for_op`] and [`ImapClient::finish_op`].
macro_rules! op {
    ($self:ident, $op:expr, |$s:ident| $body:expr) => {{
        let limit = $self.account.timeout;
        match $self.session_for_op() {
            Err(e) => Err(e),
            Ok($s) => {
                let r = tokio::time::timeout(limit, async { $body }).await;
                $self.finish_op($op, r)
            }
        }
    }};
}

impl ImapClient {
    /// Connects, protects the connection as configured, reads the greeting and logs in.
    pub async fn connect(account: Arc<ImapAccount>, owner: Owner) -> Result<Self> {
        let secs = account.timeout.as_secs();
        let fut = open(&account);
        let session = tokio::time::timeout(account.timeout, fut)
            .await
            .map_err(|_| ImapError::Timeout {
                op: "connect and login",
                secs,
            })??;
        let mut client = Self {
            session: Some(session),
            account,
            owner,
            capabilities: HashSet::new(),
            delimiter: None,
            selected: None,
            broken: false,
            changed: false,
            stale: false,
            uids: HashMap::new(),
        };
        let caps = op!(client, "CAPABILITY", |s| {
            let caps = s.capabilities().await?;
            Ok(caps
                .iter()
                .map(|c| match c {
                    Capability::Imap4rev1 => "IMAP4REV1".to_owned(),
                    Capability::Auth(a) => format!("AUTH={}", a.to_ascii_uppercase()),
                    Capability::Atom(a) => a.to_ascii_uppercase(),
                })
                .collect::<HashSet<_>>())
        })?;
        client.capabilities = caps;
        Ok(client)
    }

    /// The account this client is connected with.
    pub fn account(&self) -> &ImapAccount {
        &self.account
    }

    /// The voicemail box this client acts for.
    pub fn owner(&self) -> &Owner {
        &self.owner
    }

    /// Whether the server announced `cap` (e.g. `IDLE`, `UIDPLUS`, `MOVE`), case-insensitively.
    pub fn has_capability(&self, cap: &str) -> bool {
        self.capabilities.contains(&cap.to_ascii_uppercase())
    }

    /// Whether an earlier timeout or I/O error made this connection unusable.
    pub fn is_broken(&self) -> bool {
        self.broken
    }

    /// `NOOP`: checks that the connection still works (and lets the server report changes).
    pub async fn noop(&mut self) -> Result<()> {
        op!(self, "NOOP", |s| s.noop().await)
    }

    /// Logs out politely (best effort, within the timeout).
    pub async fn logout(mut self) {
        if let Some(mut s) = self.session.take() {
            let _ = tokio::time::timeout(self.account.timeout, s.logout()).await;
        }
    }

    /// The session for one operation, unless the connection is broken. Unsolicited responses
    /// are not used here; the channel is drained so that it never fills up.
    fn session_for_op(&mut self) -> Result<&mut Session> {
        if self.broken {
            return Err(ImapError::Broken);
        }
        self.drain_unsolicited();
        self.session.as_mut().ok_or(ImapError::Broken)
    }

    /// Empties the channel of unsolicited responses (so that it never fills up), noting whether
    /// any of them reports a change of the selected folder.
    fn drain_unsolicited(&mut self) {
        use async_imap::types::UnsolicitedResponse as U;
        let Some(session) = self.session.as_mut() else {
            return;
        };
        while let Ok(r) = session.unsolicited_responses.try_recv() {
            let change = match &r {
                U::Exists(_) | U::Expunge(_) | U::Recent(_) => true,
                U::Other(data) => matches!(
                    data.parsed(),
                    Response::Fetch(..) | Response::Vanished { .. }
                ),
                _ => false,
            };
            self.changed |= change;
        }
    }

    /// Forgets the changes reported so far: call it before reading the state, and
    /// [`ImapClient::wait_for_change`] returns at once when the server reported a change
    /// meanwhile (a change made while the state was read is never slept through).
    pub fn clear_changed(&mut self) {
        self.drain_unsolicited();
        self.changed = false;
    }

    /// Maps the outcome of one operation; a timeout or a connection failure marks the client
    /// broken.
    fn finish_op<T>(
        &mut self,
        op: &'static str,
        r: std::result::Result<
            std::result::Result<T, async_imap::error::Error>,
            tokio::time::error::Elapsed,
        >,
    ) -> Result<T> {
        let r = match r {
            Err(_) => Err(ImapError::Timeout {
                op,
                secs: self.account.timeout.as_secs(),
            }),
            Ok(r) => r.map_err(|e| map_err(op, e)),
        };
        if r.as_ref().is_err_and(ImapError::is_unavailable) {
            self.broken = true;
        }
        r
    }

    /// The hierarchy delimiter of the server (from `LIST "" ""`; `.` if it names none).
    pub async fn delimiter(&mut self) -> Result<String> {
        if let Some(d) = &self.delimiter {
            return Ok(d.clone());
        }
        let names = op!(self, "LIST", |s| {
            s.list(Some(""), Some("\"\""))
                .await?
                .try_collect::<Vec<_>>()
                .await
        })?;
        let d = names
            .iter()
            .find_map(|n| n.delimiter().map(str::to_owned))
            .unwrap_or_else(|| ".".to_owned());
        self.delimiter = Some(d.clone());
        Ok(d)
    }

    /// The IMAP folder that holds a voicemail folder: INBOX (the account's folder) for INBOX,
    /// Old and Urgent; `<parent><delimiter><name>` or `<name>` for the others.
    pub async fn folder_name(&mut self, folder: &Folder) -> Result<String> {
        Ok(match folder {
            Folder::Inbox | Folder::Old | Folder::Urgent => self.account.folder.clone(),
            other => match self.account.parent_folder.clone() {
                Some(p) if !p.is_empty() => {
                    let d = self.delimiter().await?;
                    format!("{p}{d}{}", other.as_str())
                }
                _ => other.as_str().to_owned(),
            },
        })
    }

    fn virtual_of(folder: &Folder) -> Virtual {
        match folder {
            Folder::Inbox => Virtual::Inbox,
            Folder::Old => Virtual::Old,
            Folder::Urgent => Virtual::Urgent,
            _ => Virtual::None,
        }
    }

    /// Whether an IMAP folder exists.
    pub async fn folder_exists(&mut self, name: &str) -> Result<bool> {
        let quoted = quote(name)?;
        let names = op!(self, "LIST", |s| {
            s.list(Some(""), Some(&quoted))
                .await?
                .try_collect::<Vec<_>>()
                .await
        })?;
        Ok(names.iter().any(|n| n.name() == name))
    }

    /// Creates an IMAP folder if it does not exist (as Asterisk does before saving to one).
    pub async fn ensure_folder(&mut self, name: &str) -> Result<()> {
        if self.folder_exists(name).await? {
            return Ok(());
        }
        quote(name)?; // refuses line breaks; async-imap quotes the name itself
        match op!(self, "CREATE", |s| s.create(name).await) {
            // Created meanwhile by someone else: fine.
            Err(ImapError::Refused { .. }) if self.folder_exists(name).await? => Ok(()),
            r => r,
        }
    }

    /// Selects (read-write) the IMAP folder of `folder`, creating it first when `create` is set
    /// and it is not INBOX. Returns the number of messages in it.
    pub async fn select(&mut self, folder: &Folder, create: bool) -> Result<u32> {
        let name = self.folder_name(folder).await?;
        if create && Self::virtual_of(folder) == Virtual::None {
            self.ensure_folder(&name).await?;
        }
        self.select_name(&name, false).await
    }

    /// Examines (read-only) the IMAP folder of `folder`. Returns the number of messages in it.
    pub async fn examine(&mut self, folder: &Folder) -> Result<u32> {
        let name = self.folder_name(folder).await?;
        self.select_name(&name, true).await
    }

    async fn select_name(&mut self, name: &str, read_only: bool) -> Result<u32> {
        quote(name)?; // refuses line breaks; async-imap quotes the name itself
        self.selected = None;
        let mb = if read_only {
            op!(self, "EXAMINE", |s| s.examine(name).await)?
        } else {
            op!(self, "SELECT", |s| s.select(name).await)?
        };
        self.selected = Some((name.to_owned(), read_only));
        // A new UIDVALIDITY (the folder was recreated) makes what was learnt about it void.
        match mb.uid_validity {
            Some(v) if self.uids.get(name).is_some_and(|c| c.validity == v) => {}
            Some(v) => {
                self.uids.insert(
                    name.to_owned(),
                    UidCache {
                        validity: v,
                        known: HashMap::new(),
                    },
                );
            }
            None => {
                self.uids.remove(name);
            }
        }
        Ok(mb.exists)
    }

    /// Makes `name` the selected folder (read-write when `write`), unless it already is.
    async fn ensure_selected(&mut self, name: &str, write: bool) -> Result<()> {
        match &self.selected {
            Some((n, ro)) if n == name && (!write || !ro) => {
                if std::mem::take(&mut self.stale) {
                    // Servers need not tell a session of other sessions' appends before a
                    // command that syncs: NOOP is that command.
                    op!(self, "NOOP", |s| s.noop().await)?;
                }
                Ok(())
            }
            _ => {
                self.stale = false;
                self.select_name(name, !write).await.map(|_| ())
            }
        }
    }

    /// Makes the next operation on the selected folder ask the server for changes other
    /// sessions made first (for a connection taken from a pool, or looking again after a wait
    /// that another session's change may not have ended).
    pub fn resync_next(&mut self) {
        self.stale = true;
    }

    /// Lists the owner's voicemails in `folder` (not `\Deleted`), by UID. `Old` lists the seen
    /// ones of INBOX, `Urgent` the flagged ones, `INBOX` all of INBOX (seen or not). A folder
    /// that does not exist lists as empty.
    pub async fn list(&mut self, folder: &Folder) -> Result<Vec<VoicemailSummary>> {
        let name = self.folder_name(folder).await?;
        if Self::virtual_of(folder) == Virtual::None && !self.folder_exists(&name).await? {
            return Ok(Vec::new());
        }
        self.ensure_selected(&name, false).await?;
        let extra = match Self::virtual_of(folder) {
            Virtual::Old => " SEEN",
            Virtual::Urgent => " FLAGGED",
            _ => "",
        };
        self.search_owner(extra).await
    }

    /// Counts the owner's voicemails as Asterisk does: new = unseen in INBOX, old = seen in INBOX,
    /// each split by `\Flagged` for urgent.
    pub async fn counts(&mut self) -> Result<Counts> {
        let list = self.list(&Folder::Inbox).await?;
        let mut c = Counts::default();
        // Greetings kept in INBOX (Asterisk's imapgreetings) are not messages.
        for m in list.iter().filter(|m| !format::is_greeting(&m.meta)) {
            match (m.seen, m.flagged) {
                (false, f) => {
                    c.new += 1;
                    c.urgent_new += u32::from(f);
                }
                (true, f) => {
                    c.old += 1;
                    c.urgent_old += u32::from(f);
                }
            }
        }
        Ok(c)
    }

    /// UID SEARCH for the owner's headers (a substring match on the server), then the headers of
    /// the hits, keeping those whose headers match exactly.
    async fn search_owner(&mut self, extra: &str) -> Result<Vec<VoicemailSummary>> {
        let query = format!(
            "UNDELETED HEADER X-Asterisk-VM-Extension {} HEADER X-Asterisk-VM-Context {}{extra}",
            quote(&self.owner.mailbox)?,
            quote(&self.owner.context)?
        );
        let uids = op!(self, "UID SEARCH", |s| s.uid_search(&query).await)?;
        let mut uids: Vec<u32> = uids.into_iter().collect();
        uids.sort_unstable();
        self.summaries(&uids).await
    }

    /// The listing data of `uids` (in the selected folder) that are the owner's voicemails and
    /// not `\Deleted`, by UID. Headers are fetched only for UIDs this connection has not seen
    /// in this folder; for the others only the flags ([`UidCache`]).
    async fn summaries(&mut self, uids: &[u32]) -> Result<Vec<VoicemailSummary>> {
        if uids.is_empty() {
            return Ok(Vec::new());
        }
        let folder = self.selected.as_ref().map(|(n, _)| n.clone());
        let mut cache = folder
            .as_ref()
            .and_then(|n| self.uids.remove(n))
            .filter(|c| c.known.len() < UID_CACHE_LIMIT);
        let result = self.summaries_with(uids, cache.as_mut()).await;
        if let (Some(folder), Some(cache)) = (folder, cache) {
            if self.uids.values().map(|c| c.known.len()).sum::<usize>() + cache.known.len()
                > UID_CACHE_LIMIT
            {
                self.uids.clear();
            }
            self.uids.insert(folder, cache);
        }
        result
    }

    async fn summaries_with(
        &mut self,
        uids: &[u32],
        mut cache: Option<&mut UidCache>,
    ) -> Result<Vec<VoicemailSummary>> {
        let (known, unknown): (Vec<u32>, Vec<u32>) = uids
            .iter()
            .partition(|u| cache.as_ref().is_some_and(|c| c.known.contains_key(u)));
        let mut out: BTreeMap<u32, VoicemailSummary> = BTreeMap::new();
        if !unknown.is_empty() {
            let fetches = self.uid_fetch(&uid_set(&unknown), LIST_ITEMS).await?;
            for f in &fetches {
                // A FETCH without one of our UIDs is the server telling of a flag change.
                let Some(uid) = f.uid.filter(|u| unknown.contains(u)) else {
                    self.changed = true;
                    continue;
                };
                // Only a message with the headers answers for what the UID is.
                if f.header().is_none() {
                    continue;
                }
                let summary = self.summary_of(f);
                if let Some(c) = cache.as_deref_mut() {
                    c.known.insert(uid, summary.clone());
                }
                if let Some(s) = summary.filter(|_| !is_deleted(f)) {
                    out.insert(uid, s);
                }
            }
        }
        let wanted: Vec<u32> = known
            .into_iter()
            .filter(|u| {
                cache
                    .as_ref()
                    .is_some_and(|c| matches!(c.known.get(u), Some(Some(_))))
            })
            .collect();
        if !wanted.is_empty() {
            let fetches = self.uid_fetch(&uid_set(&wanted), "(UID FLAGS)").await?;
            for f in &fetches {
                let Some(uid) = f.uid.filter(|u| wanted.contains(u)) else {
                    self.changed = true;
                    continue;
                };
                let Some(Some(known)) = cache.as_ref().and_then(|c| c.known.get(&uid)) else {
                    continue;
                };
                if is_deleted(f) {
                    continue;
                }
                let flags: Vec<Flag<'_>> = f.flags().collect();
                let mut s = known.clone();
                s.seen = flags.contains(&Flag::Seen);
                s.flagged = flags.contains(&Flag::Flagged);
                out.insert(uid, s);
            }
        }
        Ok(out.into_values().collect())
    }

    /// `UID FETCH set items` in the selected folder: every response, in the server's order.
    async fn uid_fetch(&mut self, set: &str, items: &str) -> Result<Vec<Fetch>> {
        op!(self, "UID FETCH", |s| {
            s.uid_fetch(set, items).await?.try_collect::<Vec<_>>().await
        })
    }

    /// The summary of a fetched message when it is one of the owner's voicemails (whatever its
    /// `\Deleted` flag: flags change, the answer to "whose voicemail" does not).
    fn summary_of(&self, f: &Fetch) -> Option<VoicemailSummary> {
        let uid = f.uid?;
        let header = f.header()?;
        let meta = format::parse_meta(header)?;
        if !self.owner.matches(&meta) {
            return None;
        }
        let flags: Vec<Flag<'_>> = f.flags().collect();
        Some(VoicemailSummary {
            uid,
            seen: flags.contains(&Flag::Seen),
            flagged: flags.contains(&Flag::Flagged),
            size: f.size.unwrap_or(0),
            internal_date: f.internal_date().map(|d| d.timestamp()),
            meta,
            voxmail_id: format::header_value(header, format::VOXMAIL_ID_HEADER),
            idempotency_key: format::header_value(header, format::VOXMAIL_IDEMPOTENCY_HEADER),
        })
    }

    /// The summary of one UID in the selected folder, when it is one of the owner's voicemails.
    async fn check_uid(&mut self, name: &str, uid: u32) -> Result<VoicemailSummary> {
        self.summaries(&[uid])
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| ImapError::NotFound {
                folder: name.to_owned(),
                uid,
            })
    }

    /// Fetches one voicemail whole without setting `\Seen` (`BODY.PEEK[]`). `NotFound` when the
    /// UID is absent, deleted, or not one of the owner's voicemails.
    pub async fn fetch(&mut self, folder: &Folder, uid: u32) -> Result<FetchedVoicemail> {
        let name = self.folder_name(folder).await?;
        self.ensure_selected(&name, false).await?;
        let fetches = self.uid_fetch(&uid.to_string(), FETCH_ITEMS).await?;
        let not_found = || ImapError::NotFound {
            folder: name.clone(),
            uid,
        };
        let f = fetches
            .iter()
            .find(|f| f.uid == Some(uid))
            .ok_or_else(not_found)?;
        let summary = self
            .summary_of(f)
            .filter(|_| !is_deleted(f))
            .ok_or_else(not_found)?;
        let raw = f.body().ok_or_else(not_found)?.to_vec();
        let parsed = format::parse(&raw).ok_or_else(not_found)?;
        Ok(FetchedVoicemail {
            summary,
            parsed,
            raw,
        })
    }

    /// APPENDs a composed message to `folder` (created if missing; INBOX for INBOX/Old/Urgent),
    /// `\Flagged` when `urgent` (or the folder is Urgent), `\Seen` for Old. Returns the new UID
    /// when the server reports it (UIDPLUS `APPENDUID`).
    pub async fn append(
        &mut self,
        folder: &Folder,
        raw: &[u8],
        urgent: bool,
    ) -> Result<Option<u32>> {
        let name = self.folder_name(folder).await?;
        if Self::virtual_of(folder) == Virtual::None {
            self.ensure_folder(&name).await?;
        }
        let mut flags = Vec::new();
        if urgent || Self::virtual_of(folder) == Virtual::Urgent {
            flags.push("\\Flagged");
        }
        if Self::virtual_of(folder) == Virtual::Old {
            flags.push("\\Seen");
        }
        let cmd = format!(
            "APPEND {} ({}) {{{}}}",
            quote(&name)?,
            flags.join(" "),
            raw.len()
        );
        let codes = op!(self, "APPEND", |s| {
            let id = s.run_command(&cmd).await?;
            // The continuation request, or an early refusal.
            let first = s
                .read_response()
                .await?
                .ok_or(async_imap::error::Error::ConnectionLost)?;
            match first.parsed() {
                Response::Continue { .. } => {}
                Response::Done {
                    tag,
                    status,
                    outcome,
                } if *tag == id => {
                    return Err(status_error(status, outcome.information.as_deref()));
                }
                _ => return Err(async_imap::error::Error::Append),
            }
            let w = s.get_mut();
            w.write_all(raw).await?;
            w.write_all(b"\r\n").await?;
            w.flush().await?;
            read_done(s, &id).await
        })?;
        Ok(codes.first().map(|c| match c {
            Code::AppendUid(u) | Code::CopyUid(u) => *u,
        }))
    }

    /// Marks a voicemail read (`\Seen`) or unread.
    pub async fn set_seen(&mut self, folder: &Folder, uid: u32, seen: bool) -> Result<()> {
        self.set_flag(folder, uid, "\\Seen", seen).await
    }

    /// Marks a voicemail urgent (`\Flagged`) or not.
    pub async fn set_flagged(&mut self, folder: &Folder, uid: u32, flagged: bool) -> Result<()> {
        self.set_flag(folder, uid, "\\Flagged", flagged).await
    }

    async fn set_flag(&mut self, folder: &Folder, uid: u32, flag: &str, on: bool) -> Result<()> {
        let name = self.folder_name(folder).await?;
        self.ensure_selected(&name, true).await?;
        self.check_uid(&name, uid).await?;
        self.store(uid, flag, on).await
    }

    async fn store(&mut self, uid: u32, flag: &str, on: bool) -> Result<()> {
        let set = uid.to_string();
        let query = format!("{}FLAGS.SILENT ({flag})", if on { "+" } else { "-" });
        op!(self, "UID STORE", |s| {
            s.uid_store(&set, &query)
                .await?
                .try_collect::<Vec<_>>()
                .await
        })
        .map(|_| ())
    }

    /// Moves a voicemail between folders as Asterisk does: between INBOX, Old and Urgent only the
    /// flags change (`\Seen` for Old, cleared for INBOX; `\Flagged` for Urgent); otherwise the
    /// message moves (`UID MOVE`, or `UID COPY` + `\Deleted` + `UID EXPUNGE` of that UID), the
    /// target folder created first. Returns the UID in the target folder when known.
    pub async fn move_to(&mut self, from: &Folder, uid: u32, to: &Folder) -> Result<Option<u32>> {
        let src = self.folder_name(from).await?;
        let dst = self.folder_name(to).await?;
        self.ensure_selected(&src, true).await?;
        self.check_uid(&src, uid).await?;
        match Self::virtual_of(to) {
            Virtual::Old => self.store(uid, "\\Seen", true).await?,
            Virtual::Inbox => self.store(uid, "\\Seen", false).await?,
            Virtual::Urgent => self.store(uid, "\\Flagged", true).await?,
            Virtual::None => {}
        }
        if src == dst {
            return Ok(Some(uid));
        }
        if Self::virtual_of(to) == Virtual::None {
            self.ensure_folder(&dst).await?;
            // ensure_folder may have run LIST only; the selection is unchanged.
        }
        let set = uid.to_string();
        let target = quote(&dst)?;
        if self.has_capability("MOVE") {
            let cmd = format!("UID MOVE {set} {target}");
            let codes = op!(self, "UID MOVE", |s| {
                let id = s.run_command(&cmd).await?;
                read_done(s, &id).await
            })?;
            return Ok(copy_uid(&codes));
        }
        let cmd = format!("UID COPY {set} {target}");
        let codes = op!(self, "UID COPY", |s| {
            let id = s.run_command(&cmd).await?;
            read_done(s, &id).await
        })?;
        self.expunge_uid(uid).await?;
        Ok(copy_uid(&codes))
    }

    /// Deletes a voicemail: `\Deleted` + `UID EXPUNGE` of exactly that UID (UIDPLUS). Without
    /// UIDPLUS it stays marked `\Deleted`: a plain EXPUNGE would remove other messages too.
    pub async fn delete(&mut self, folder: &Folder, uid: u32) -> Result<()> {
        let name = self.folder_name(folder).await?;
        self.ensure_selected(&name, true).await?;
        self.check_uid(&name, uid).await?;
        self.expunge_uid(uid).await
    }

    async fn expunge_uid(&mut self, uid: u32) -> Result<()> {
        self.store(uid, "\\Deleted", true).await?;
        if !self.has_capability("UIDPLUS") {
            tracing::warn!(
                host = %self.account.host,
                "IMAP server lacks UIDPLUS: message left marked \\Deleted, not expunged"
            );
            return Ok(());
        }
        let set = uid.to_string();
        op!(self, "UID EXPUNGE", |s| {
            s.uid_expunge(&set).await?.try_collect::<Vec<_>>().await
        })
        .map(|_| ())
    }

    /// Waits until `folder` changes or `wait` passes: IDLE when the server has it (and the
    /// account allows it), otherwise polling every `poll_interval` for a change in the folder's
    /// UIDs and flags. The folder is selected read-only for the wait.
    pub async fn wait_for_change(&mut self, folder: &Folder, wait: Duration) -> Result<Change> {
        self.wait_for_change_or(folder, wait, None).await
    }

    /// [`Self::wait_for_change`], also ending (as `Changed`, leaving IDLE cleanly) when
    /// `poke` is notified — e.g. because another connection changed the folder and the
    /// server may never tell this one (a message appended and expunged before this session
    /// synced is reported to it as nothing at all).
    pub async fn wait_for_change_or(
        &mut self,
        folder: &Folder,
        wait: Duration,
        poke: Option<&tokio::sync::Notify>,
    ) -> Result<Change> {
        let name = self.folder_name(folder).await?;
        self.drain_unsolicited();
        if std::mem::take(&mut self.changed) {
            return Ok(Change::Changed);
        }
        let poked = async {
            match poke {
                Some(n) => n.notified().await,
                None => std::future::pending().await,
            }
        };
        tokio::pin!(poked);
        if self.account.use_idle && self.has_capability("IDLE") {
            self.ensure_selected(&name, false).await?;
            return self.idle(wait, poked).await;
        }
        self.ensure_selected(&name, false).await?;
        let start = tokio::time::Instant::now();
        let before = self.fingerprint().await?;
        loop {
            let left = wait.saturating_sub(start.elapsed());
            if left.is_zero() {
                return Ok(Change::Timeout);
            }
            tokio::select! {
                () = tokio::time::sleep(left.min(self.account.poll_interval)) => {}
                () = &mut poked => return Ok(Change::Changed),
            }
            // NOOP lets the server report changes; the fingerprint decides.
            op!(self, "NOOP", |s| s.noop().await)?;
            if self.fingerprint().await? != before {
                return Ok(Change::Changed);
            }
        }
    }

    /// The UIDs and flags of the selected folder.
    async fn fingerprint(&mut self) -> Result<Vec<(u32, Vec<String>)>> {
        let fetches = self.uid_fetch("1:*", "(UID FLAGS)").await;
        let fetches = match fetches {
            Ok(f) => f,
            // An empty folder: some servers answer `1:*` with an error.
            Err(ImapError::Refused { .. }) => Vec::new(),
            Err(e) => return Err(e),
        };
        let mut fp: Vec<(u32, Vec<String>)> = fetches
            .iter()
            .filter_map(|f| {
                let mut flags: Vec<String> = f
                    .flags()
                    .filter(|fl| *fl != Flag::Recent)
                    .map(|fl| format!("{fl:?}"))
                    .collect();
                flags.sort();
                Some((f.uid?, flags))
            })
            .collect();
        fp.sort();
        Ok(fp)
    }

    async fn idle(
        &mut self,
        wait: Duration,
        poked: std::pin::Pin<&mut impl std::future::Future<Output = ()>>,
    ) -> Result<Change> {
        if self.broken {
            return Err(ImapError::Broken);
        }
        let Some(session) = self.session.take() else {
            return Err(ImapError::Broken);
        };
        let timeout = self.account.timeout;
        let secs = timeout.as_secs();
        let mut handle = session.idle();
        let started = tokio::time::timeout(timeout, handle.init()).await;
        let outcome = match started {
            Err(_) => Err(ImapError::Timeout { op: "IDLE", secs }),
            Ok(Err(e)) => Err(map_err("IDLE", e)),
            Ok(Ok(())) => {
                let (fut, _stop) = handle.wait_with_timeout(wait);
                tokio::select! {
                    r = fut => match r {
                        Ok(async_imap::extensions::idle::IdleResponse::NewData(_)) => {
                            Ok(Change::Changed)
                        }
                        Ok(_) => Ok(Change::Timeout),
                        Err(e) => Err(map_err("IDLE", e)),
                    },
                    () = poked => Ok(Change::Changed),
                }
            }
        };
        // Leave IDLE (DONE) and get the session back.
        match tokio::time::timeout(timeout, handle.done()).await {
            Ok(Ok(s)) => self.session = Some(s),
            Ok(Err(e)) => {
                self.broken = true;
                return outcome.and(Err(map_err("IDLE DONE", e)));
            }
            Err(_) => {
                self.broken = true;
                return outcome.and(Err(ImapError::Timeout {
                    op: "IDLE DONE",
                    secs,
                }));
            }
        }
        if outcome.as_ref().is_err_and(ImapError::is_unavailable) {
            self.broken = true;
        }
        outcome
    }

    /// Which of `folders` exist on the server, in their order: one `LIST`, where asking
    /// [`Self::list`] folder by folder would cost a round trip for each missing one.
    pub async fn existing_folders(&mut self, folders: &[Folder]) -> Result<Vec<Folder>> {
        let mut names = Vec::with_capacity(folders.len());
        for f in folders {
            names.push(self.folder_name(f).await?);
        }
        let listed = op!(self, "LIST", |s| {
            s.list(Some(""), Some("*"))
                .await?
                .try_collect::<Vec<_>>()
                .await
        })?;
        let have: HashSet<&str> = listed.iter().map(|n| n.name()).collect();
        Ok(folders
            .iter()
            .zip(&names)
            .filter(|(_, n)| have.contains(n.as_str()))
            .map(|(f, _)| f.clone())
            .collect())
    }
}

/// Whether a fetched message carries `\Deleted` (waiting for EXPUNGE: no longer listed).
fn is_deleted(f: &Fetch) -> bool {
    f.flags().any(|fl| fl == Flag::Deleted)
}

/// What a listing fetches: enough headers to recognise and describe a voicemail.
const LIST_ITEMS: &str = "(UID FLAGS RFC822.SIZE INTERNALDATE BODY.PEEK[HEADER.FIELDS (\
    X-Asterisk-VM-Message-Num X-Asterisk-VM-Server-Name X-Asterisk-VM-Context \
    X-Asterisk-VM-Extension X-Asterisk-VM-Flag X-Asterisk-VM-Priority \
    X-Asterisk-VM-Caller-ID-Num X-Asterisk-VM-Caller-ID-Name X-Asterisk-VM-Duration \
    X-Asterisk-VM-Category X-Asterisk-VM-Message-Type X-Asterisk-VM-Orig-date \
    X-Asterisk-VM-Orig-time X-Asterisk-VM-Message-ID X-Voxmail-Message-Id \
    X-Voxmail-Idempotency-Key)])";

/// What fetching one message takes: the listing data and the whole message, without `\Seen`.
const FETCH_ITEMS: &str = "(UID FLAGS RFC822.SIZE INTERNALDATE BODY.PEEK[HEADER.FIELDS (\
    X-Asterisk-VM-Message-Num X-Asterisk-VM-Server-Name X-Asterisk-VM-Context \
    X-Asterisk-VM-Extension X-Asterisk-VM-Flag X-Asterisk-VM-Priority \
    X-Asterisk-VM-Caller-ID-Num X-Asterisk-VM-Caller-ID-Name X-Asterisk-VM-Duration \
    X-Asterisk-VM-Category X-Asterisk-VM-Message-Type X-Asterisk-VM-Orig-date \
    X-Asterisk-VM-Orig-time X-Asterisk-VM-Message-ID X-Voxmail-Message-Id \
    X-Voxmail-Idempotency-Key)] BODY.PEEK[])";

/// A UID a command's response reported.
#[derive(Debug, Clone, Copy)]
enum Code {
    AppendUid(u32),
    CopyUid(u32),
}

fn copy_uid(codes: &[Code]) -> Option<u32> {
    codes.iter().find_map(|c| match c {
        Code::CopyUid(u) => Some(*u),
        Code::AppendUid(_) => None,
    })
}

fn first_uid(set: &[UidSetMember]) -> Option<u32> {
    set.first().map(|m| match m {
        UidSetMember::Uid(u) => *u,
        UidSetMember::UidRange(r) => *r.start(),
    })
}

fn code_of(code: Option<&ResponseCode<'_>>) -> Option<Code> {
    match code? {
        ResponseCode::AppendUid(_, uids) => first_uid(uids).map(Code::AppendUid),
        ResponseCode::CopyUid(_, _, dst) => first_uid(dst).map(Code::CopyUid),
        _ => None,
    }
}

fn status_error(status: &Status, info: Option<&str>) -> async_imap::error::Error {
    let text = info.unwrap_or_default().to_owned();
    match status {
        Status::No => async_imap::error::Error::No(text),
        _ => async_imap::error::Error::Bad(text),
    }
}

/// Reads responses up to the tagged completion of `id`, collecting the UIDs reported in
/// `APPENDUID`/`COPYUID` codes (tagged, or untagged OK as `UID MOVE` sends them).
async fn read_done(
    s: &mut Session,
    id: &RequestId,
) -> std::result::Result<Vec<Code>, async_imap::error::Error> {
    let mut codes = Vec::new();
    loop {
        let res = s
            .read_response()
            .await?
            .ok_or(async_imap::error::Error::ConnectionLost)?;
        match res.parsed() {
            Response::Done {
                tag,
                status,
                outcome,
            } if tag == id => {
                if *status != Status::Ok {
                    return Err(status_error(status, outcome.information.as_deref()));
                }
                codes.extend(code_of(outcome.code.as_ref()));
                return Ok(codes);
            }
            Response::Data {
                status: Status::Ok,
                outcome,
            } => codes.extend(code_of(outcome.code.as_ref())),
            Response::Data {
                status: Status::Bye,
                ..
            } => return Err(async_imap::error::Error::ConnectionLost),
            _ => {}
        }
    }
}

fn map_err(op: &'static str, e: async_imap::error::Error) -> ImapError {
    use async_imap::error::Error as E;
    match e {
        E::No(reason) | E::Bad(reason) => ImapError::Refused { op, reason },
        E::Validate(v) => ImapError::Refused {
            op,
            reason: v.to_string(),
        },
        E::Append => ImapError::Refused {
            op,
            reason: "the server did not accept the message".into(),
        },
        other => ImapError::Protocol {
            op,
            reason: other.to_string(),
        },
    }
}

/// An IMAP quoted string (`"` and `\` escaped); line breaks and NUL cannot be sent.
fn quote(s: &str) -> Result<String> {
    if s.contains(['\r', '\n', '\0']) {
        return Err(ImapError::Config(
            "a name contains a line break or NUL".into(),
        ));
    }
    let mut q = String::with_capacity(s.len() + 2);
    q.push('"');
    for c in s.chars() {
        if c == '"' || c == '\\' {
            q.push('\\');
        }
        q.push(c);
    }
    q.push('"');
    Ok(q)
}

/// A compact UID set (`1,3:5,9`) of sorted UIDs.
fn uid_set(uids: &[u32]) -> String {
    let mut out = String::new();
    let mut i = 0;
    while i < uids.len() {
        let start = uids[i];
        let mut end = start;
        while i + 1 < uids.len() && uids[i + 1] == end + 1 {
            i += 1;
            end = uids[i];
        }
        if !out.is_empty() {
            out.push(',');
        }
        if start == end {
            out.push_str(&start.to_string());
        } else {
            out.push_str(&format!("{start}:{end}"));
        }
        i += 1;
    }
    out
}

/// Connects, protects, reads the greeting and logs in.
async fn open(account: &ImapAccount) -> Result<Session> {
    let connect_err = |reason: String| ImapError::Connect {
        host: account.host.clone(),
        port: account.port,
        reason,
    };
    let tcp = TcpStream::connect((account.host.as_str(), account.port))
        .await
        .map_err(|e| connect_err(e.to_string()))?;
    let _ = tcp.set_nodelay(true);
    let transport = match account.tls {
        ImapTls::None => {
            let mut c = async_imap::Client::new(Transport::plain(tcp));
            greeting(&mut c).await.map_err(connect_err)?;
            c
        }
        ImapTls::Implicit => {
            let tls = tls_wrap(account, tcp).await?;
            let mut c = async_imap::Client::new(Transport::tls(tls));
            greeting(&mut c).await.map_err(connect_err)?;
            c
        }
        ImapTls::StartTls => {
            let mut c = async_imap::Client::new(Transport::plain(tcp));
            greeting(&mut c).await.map_err(connect_err)?;
            c.run_command_and_check_ok("STARTTLS", None)
                .await
                .map_err(|e| connect_err(format!("STARTTLS: {e}")))?;
            // Anything the server sent after its OK is dropped with the old client (no STARTTLS
            // injection).
            let tcp = c
                .into_inner()
                .into_tcp()
                .ok_or_else(|| connect_err("STARTTLS on a TLS stream".into()))?;
            let tls = tls_wrap(account, tcp).await?;
            async_imap::Client::new(Transport::tls(tls))
        }
    };
    login(account, transport).await
}

async fn greeting(c: &mut async_imap::Client<Transport>) -> std::result::Result<(), String> {
    let res = c
        .read_response()
        .await
        .map_err(|e| format!("greeting: {e}"))?
        .ok_or_else(|| "the server closed the connection before its greeting".to_owned())?;
    match res.parsed() {
        Response::Data {
            status: Status::Ok | Status::PreAuth,
            ..
        } => Ok(()),
        Response::Data { outcome, .. } => Err(format!(
            "the server refused the connection: {}",
            outcome.information.as_deref().unwrap_or_default()
        )),
        _ => Err("unexpected greeting".into()),
    }
}

/// Logs in with a placeholder password that the transport swaps for the real one on the wire.
async fn login(
    account: &ImapAccount,
    mut client: async_imap::Client<Transport>,
) -> Result<Session> {
    let user = account.login_name();
    if account.password.contains(['\r', '\n', '\0']) || user.contains(['\r', '\n', '\0']) {
        return Err(ImapError::Config(
            "the IMAP user or password contains a line break or NUL".into(),
        ));
    }
    let marker = format!("voxmail-secret-{:032x}", rand::random::<u128>());
    let mut real = Vec::with_capacity(account.password.len() + 2);
    for b in account.password.bytes() {
        if b == b'"' || b == b'\\' {
            real.push(b'\\');
        }
        real.push(b);
    }
    client
        .get_mut()
        .arm_secret(marker.as_bytes().to_vec(), real);
    match client.login(&user, &marker).await {
        Ok(mut s) => {
            s.get_mut().disarm_secret();
            Ok(s)
        }
        Err((e, _)) => Err(match e {
            async_imap::error::Error::No(reason) | async_imap::error::Error::Bad(reason) => {
                ImapError::Login { user, reason }
            }
            other => ImapError::Protocol {
                op: "LOGIN",
                reason: other.to_string(),
            },
        }),
    }
}

/// The rustls client configuration: ring, the public roots and the account's CA file.
fn tls_config(account: &ImapAccount) -> Result<ClientConfig> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject as _;

    let mut roots = RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = &account.ca_file {
        let shown = path.display();
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
            .map_err(|e| ImapError::Config(format!("IMAP CA file {shown}: {e}")))?
            .collect::<std::result::Result<_, _>>()
            .map_err(|e| ImapError::Config(format!("IMAP CA file {shown}: {e}")))?;
        if certs.is_empty() {
            return Err(ImapError::Config(format!(
                "IMAP CA file {shown} has no PEM certificate"
            )));
        }
        for c in certs {
            roots
                .add(c)
                .map_err(|e| ImapError::Config(format!("IMAP CA file {shown}: {e}")))?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ImapError::Config(format!("TLS: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

async fn tls_wrap(
    account: &ImapAccount,
    tcp: TcpStream,
) -> Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let config = tls_config(account)?;
    let name = rustls::pki_types::ServerName::try_from(account.host.clone())
        .map_err(|e| ImapError::Config(format!("IMAP host name for TLS: {e}")))?;
    TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .map_err(|e| ImapError::Connect {
            host: account.host.clone(),
            port: account.port,
            reason: format!("TLS: {e}"),
        })
}

enum Inner {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

/// The byte stream under `async-imap`: TCP or TLS, plus the password swap of `LOGIN`.
pub struct Transport {
    inner: Inner,
    /// (placeholder, escaped password) while a login is under way.
    secret: Option<(Vec<u8>, Vec<u8>)>,
    /// Bytes accepted from the caller but not yet written (the rewritten LOGIN line).
    pending: Vec<u8>,
    pending_pos: usize,
}

impl fmt::Debug for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.inner {
            Inner::Plain(_) => "Transport(tcp)",
            Inner::Tls(_) => "Transport(tls)",
        })
    }
}

impl Transport {
    fn plain(tcp: TcpStream) -> Self {
        Self::new(Inner::Plain(tcp))
    }

    fn tls(tls: tokio_rustls::client::TlsStream<TcpStream>) -> Self {
        Self::new(Inner::Tls(Box::new(tls)))
    }

    fn new(inner: Inner) -> Self {
        Self {
            inner,
            secret: None,
            pending: Vec::new(),
            pending_pos: 0,
        }
    }

    fn into_tcp(self) -> Option<TcpStream> {
        match self.inner {
            Inner::Plain(t) => Some(t),
            Inner::Tls(_) => None,
        }
    }

    fn arm_secret(&mut self, marker: Vec<u8>, real: Vec<u8>) {
        self.secret = Some((marker, real));
    }

    fn disarm_secret(&mut self) {
        self.secret = None;
    }

    fn inner_pin(&mut self) -> Pin<&mut dyn AsyncWriteRead> {
        match &mut self.inner {
            Inner::Plain(t) => Pin::new(t as &mut dyn AsyncWriteRead),
            Inner::Tls(t) => Pin::new(t.as_mut() as &mut dyn AsyncWriteRead),
        }
    }

    /// Writes out the pending bytes.
    fn poll_pending(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.pending_pos < self.pending.len() {
            let pos = self.pending_pos;
            let chunk = self.pending[pos..].to_vec();
            match self.inner_pin().poll_write(cx, &chunk) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => self.pending_pos += n,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
        self.pending.clear();
        self.pending_pos = 0;
        Poll::Ready(Ok(()))
    }
}

/// Both directions of a byte stream (for pinning either transport).
trait AsyncWriteRead: AsyncRead + AsyncWrite + Unpin {}
impl<T: AsyncRead + AsyncWrite + Unpin> AsyncWriteRead for T {}

impl AsyncRead for Transport {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.get_mut().inner_pin().poll_read(cx, buf)
    }
}

impl AsyncWrite for Transport {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match this.poll_pending(cx) {
            Poll::Ready(Ok(())) => {}
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            Poll::Pending => return Poll::Pending,
        }
        if let Some((marker, real)) = &this.secret
            && let Some(at) = find(buf, marker)
        {
            let mut line = Vec::with_capacity(buf.len() + real.len());
            line.extend_from_slice(&buf[..at]);
            line.extend_from_slice(real);
            line.extend_from_slice(&buf[at + marker.len()..]);
            this.secret = None;
            this.pending = line;
            this.pending_pos = 0;
            // Accepted whole; written by this call as far as possible and by flush.
            if let Poll::Ready(Err(e)) = this.poll_pending(cx) {
                return Poll::Ready(Err(e));
            }
            return Poll::Ready(Ok(buf.len()));
        }
        this.inner_pin().poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match this.poll_pending(cx) {
            Poll::Ready(Ok(())) => this.inner_pin().poll_flush(cx),
            other => other,
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match this.poll_pending(cx) {
            Poll::Ready(Ok(())) => this.inner_pin().poll_shutdown(cx),
            other => other,
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || haystack.len() < needle.len() {
        return None;
    }
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uid_sets_are_compact() {
        assert_eq!(uid_set(&[1, 2, 3, 5, 7, 8]), "1:3,5,7:8");
        assert_eq!(uid_set(&[9]), "9");
    }

    #[test]
    fn quoting_escapes_and_refuses_line_breaks() {
        assert_eq!(quote("a\"b\\c").unwrap(), "\"a\\\"b\\\\c\"");
        assert!(quote("a\r\nb").is_err());
    }

    #[test]
    fn the_client_can_move_between_tasks() {
        fn is_send<T: Send>() {}
        is_send::<ImapClient>();
    }

    #[test]
    fn account_debug_hides_the_password() {
        let mut a = ImapAccount::new("imap.example.com", "alice", "s3cret-pw");
        a.master_user = Some("master".into());
        let shown = format!("{a:?}");
        assert!(!shown.contains("s3cret-pw"), "{shown}");
        assert_eq!(a.login_name(), "alice*master");
    }
}
