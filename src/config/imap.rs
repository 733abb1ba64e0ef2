//! IMAP storage (`[imap]`, `[imap.contexts.<name>]`): contexts whose messages live in IMAP
//! folders, in Asterisk's format.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::ConfigError;

/// IMAP storage (Asterisk's `IMAP_STORAGE`): per context, messages kept in IMAP folders instead
/// of SQL + the audio store. Contexts and mailboxes themselves stay in SQL.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ImapConfig {
    /// Settings per context name (`[imap.contexts.<name>]`); contexts not listed keep their
    /// messages in SQL.
    pub contexts: std::collections::BTreeMap<String, ImapContextConfig>,
    /// The nodes of a cluster share the watching of a context's mailboxes: each node with
    /// `watch = true` renews a claim in the database every third of this many seconds, and the
    /// nodes with a fresh claim split the mailboxes between them. A node that dies without
    /// withdrawing its claim is dropped after this long, and its mailboxes are watched by the
    /// others (a node that stops normally hands them over at once). At least 3.
    pub watch_lease_secs: u64,
}

impl Default for ImapConfig {
    fn default() -> Self {
        Self {
            contexts: std::collections::BTreeMap::new(),
            watch_lease_secs: 15,
        }
    }
}

impl ImapConfig {
    /// Checks the watch lease and every context.
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if self.watch_lease_secs < 3 {
            return Err(ConfigError::Value(
                "imap.watch_lease_secs must be at least 3".into(),
            ));
        }
        for (name, c) in &self.contexts {
            c.validate(name)?;
        }
        Ok(())
    }
}

/// The IMAP server and logins of one context (Asterisk's `imapserver`, `imapport`, `imapflags`,
/// `authuser`/`authpassword`, `imapuser`/`imappassword`, `imapfolder`, `imapparentfolder`).
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ImapContextConfig {
    /// Where the context's messages live: `"imap"`, or `"sql"` to keep these settings but store
    /// in SQL.
    pub store: KeptIn,
    /// Server host name (also the TLS server name).
    pub host: String,
    /// Server port; 0 = 993 for `tls = "implicit"`, 143 otherwise.
    pub port: u16,
    /// `"implicit"` (TLS from the first byte), `"starttls"` or `"none"` (trusted networks only).
    pub tls: ImapTlsMode,
    /// A PEM file of extra trusted CA certificates (beside the public roots); empty = none.
    pub ca_file: PathBuf,
    /// The IMAP user of a mailbox, `{mailbox}` and `{context}` replaced (e.g.
    /// `"{mailbox}@example.org"`); used with `master_user`.
    pub user_format: String,
    /// Master user (Dovecot `user*master`, Asterisk's `authuser`): one login for every mailbox
    /// of the context. Empty = only the mailboxes listed in `mailboxes` can be reached.
    pub master_user: String,
    /// The master user's password. Never logged, never returned by the API.
    pub master_password: String,
    /// Per-mailbox logins (Asterisk's `imapuser`/`imappassword`), by mailbox number; they win
    /// over the master user.
    pub mailboxes: std::collections::BTreeMap<String, ImapMailboxLogin>,
    /// The folder new voicemail goes to (`imapfolder`).
    pub folder: String,
    /// The parent of Work/Family/Friends/Deleted (`imapparentfolder`, e.g. `"INBOX"`); empty =
    /// top level.
    pub parent_folder: String,
    /// Seconds one IMAP operation (connect, login, each command) may take.
    pub timeout_secs: u64,
    /// The `Retry-After` (seconds) of the 503 answered while the server is unreachable.
    pub retry_after_secs: u64,
    /// Most connections this node opens to the server for API work (in use + idle); past it a
    /// request waits up to `timeout_secs`, then answers 503. Watchers come on top.
    pub max_connections: u32,
    /// Seconds an unused pooled connection stays open.
    pub idle_timeout_secs: u64,
    /// Watch every mailbox of the context for changes made outside voxmail (a mail client) and
    /// turn them into MWI events; `false` = only voxmail's own changes produce events.
    pub watch: bool,
    /// Mailboxes watched with a dedicated IDLE connection each (per node); the others are
    /// polled in turn every `poll_interval_secs` over the pooled connections.
    pub max_idle_watchers: u32,
    /// Use IDLE where the server has it; `false` polls every mailbox.
    pub use_idle: bool,
    /// Seconds between two looks at a polled mailbox (no IDLE, or past `max_idle_watchers`).
    pub poll_interval_secs: u64,
    /// Where the mailboxes' greetings live: `"sql"` (the database and audio store, default) or
    /// `"imap"` (Asterisk's `imapgreetings = yes`: one message per greeting in `greeting_folder`).
    pub greetings: KeptIn,
    /// The IMAP folder greetings are kept in with `greetings = "imap"` (Asterisk's
    /// `greetingfolder`; Asterisk's default is the voicemail folder, INBOX).
    pub greeting_folder: String,
}

impl Default for ImapContextConfig {
    fn default() -> Self {
        Self {
            store: KeptIn::Imap,
            host: String::new(),
            port: 0,
            tls: ImapTlsMode::Implicit,
            ca_file: PathBuf::new(),
            user_format: "{mailbox}".into(),
            master_user: String::new(),
            master_password: String::new(),
            mailboxes: std::collections::BTreeMap::new(),
            folder: "INBOX".into(),
            parent_folder: String::new(),
            timeout_secs: 30,
            retry_after_secs: 5,
            max_connections: 8,
            idle_timeout_secs: 60,
            watch: true,
            max_idle_watchers: 100,
            use_idle: true,
            poll_interval_secs: 5,
            greetings: KeptIn::Sql,
            greeting_folder: "INBOX".into(),
        }
    }
}

impl ImapContextConfig {
    /// Whether the context's messages are in IMAP (mailboxes may override it).
    pub fn is_imap(&self) -> bool {
        self.store == KeptIn::Imap
    }

    /// Whether this context has any mailbox whose messages are in IMAP.
    pub fn has_imap(&self) -> bool {
        self.is_imap() || self.mailboxes.values().any(|m| m.is_imap(self))
    }

    /// Whether the messages of `mailbox` (a number of this context) are in IMAP.
    pub fn mailbox_is_imap(&self, mailbox: &str) -> bool {
        self.mailboxes
            .get(mailbox)
            .map_or_else(|| self.is_imap(), |m| m.is_imap(self))
    }

    /// Checks one context's server, logins and folders; `name` (its key in `imap.contexts`)
    /// begins every message.
    fn validate(&self, name: &str) -> Result<(), ConfigError> {
        let bad = |m: &str| Err(ConfigError::Value(format!("imap.contexts.{name}: {m}")));
        for (number, m) in &self.mailboxes {
            if m.is_imap(self) && m.user.is_empty() && self.master_user.is_empty() {
                return bad(&format!(
                    "mailboxes.{number} is kept in IMAP: give its user and password, or \
                     master_user"
                ));
            }
        }
        if self.has_imap() && self.host.is_empty() {
            return bad("host is required");
        }
        if self.is_imap() && self.master_user.is_empty() && self.mailboxes.is_empty() {
            return bad("give master_user (and master_password) or per-mailbox logins");
        }
        if self.timeout_secs == 0 {
            return bad("timeout_secs must be at least 1");
        }
        if self.folder.is_empty() {
            return bad("folder must not be empty (Asterisk's default is INBOX)");
        }
        if self.greeting_folder.is_empty() {
            return bad("greeting_folder must not be empty (Asterisk's default is INBOX)");
        }
        Ok(())
    }
}

impl std::fmt::Debug for ImapContextConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImapContextConfig")
            .field("store", &self.store)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("tls", &self.tls)
            .field("ca_file", &self.ca_file)
            .field("user_format", &self.user_format)
            .field("master_user", &self.master_user)
            .field("master_password", &"<redacted>")
            .field("mailboxes", &self.mailboxes)
            .field("folder", &self.folder)
            .field("parent_folder", &self.parent_folder)
            .field("timeout_secs", &self.timeout_secs)
            .field("retry_after_secs", &self.retry_after_secs)
            .field("max_connections", &self.max_connections)
            .field("idle_timeout_secs", &self.idle_timeout_secs)
            .field("watch", &self.watch)
            .field("max_idle_watchers", &self.max_idle_watchers)
            .field("use_idle", &self.use_idle)
            .field("poll_interval_secs", &self.poll_interval_secs)
            .field("greetings", &self.greetings)
            .field("greeting_folder", &self.greeting_folder)
            .finish()
    }
}

/// One mailbox's own IMAP settings: its login and where its messages live.
#[derive(Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ImapMailboxLogin {
    /// The IMAP user (`imapuser`); empty = the context's master-user login.
    pub user: String,
    /// Its password (`imappassword`). Never logged, never returned by the API.
    pub password: String,
    /// Where this mailbox's messages live, overriding the context's `store`: `"imap"` (e.g.
    /// one mailbox in IMAP in a context kept in SQL), `"sql"`, or empty = as the context.
    pub store: MailboxKeptIn,
}

impl ImapMailboxLogin {
    /// Whether the mailbox's messages are in IMAP, given its context's settings.
    pub fn is_imap(&self, context: &ImapContextConfig) -> bool {
        match self.store {
            MailboxKeptIn::AsContext => context.is_imap(),
            MailboxKeptIn::Imap => true,
            MailboxKeptIn::Sql => false,
        }
    }
}

impl std::fmt::Debug for ImapMailboxLogin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImapMailboxLogin")
            .field("user", &self.user)
            .field("password", &"<redacted>")
            .field("store", &self.store)
            .finish()
    }
}

/// Where a context keeps its messages or greetings (`imap.contexts.*.store`, `greetings`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeptIn {
    /// The database (and the audio store).
    Sql,
    /// The context's IMAP server.
    Imap,
}

/// Where one mailbox keeps its messages (`imap.contexts.*.mailboxes.*.store`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MailboxKeptIn {
    /// As its context (`""`).
    #[default]
    #[serde(rename = "")]
    AsContext,
    /// The database, whatever the context says.
    Sql,
    /// IMAP, whatever the context says.
    Imap,
}

/// How an IMAP connection is secured (`imap.contexts.*.tls`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ImapTlsMode {
    /// TLS from the first byte (port 993).
    Implicit,
    /// STARTTLS after the greeting (port 143).
    Starttls,
    /// Plain text (trusted networks only).
    None,
}

#[cfg(test)]
mod tests {
    use figment::Figment;
    use figment::providers::{Format, Serialized, Toml};

    use super::*;
    use crate::config::Config;

    #[test]
    fn imap_contexts_are_checked_and_their_passwords_never_printed() {
        let toml = r#"
            [imap.contexts.default]
            host = "imap.example.org"
            master_user = "vm"
            master_password = "s3cret-master"
            [imap.contexts.default.mailboxes.1000]
            user = "alice"
            password = "s3cret-alice"
        "#;
        let c: Config = Figment::from(Serialized::defaults(Config::default()))
            .merge(Toml::string(toml))
            .extract()
            .expect("parses");
        c.validate().expect("valid");
        let ctx = &c.imap.contexts["default"];
        assert!(ctx.is_imap() && ctx.tls == ImapTlsMode::Implicit && ctx.folder == "INBOX");
        let printed = format!("{ctx:?}");
        assert!(!printed.contains("s3cret"), "{printed}");

        let mut no_login = c.clone();
        if let Some(x) = no_login.imap.contexts.get_mut("default") {
            x.master_user.clear();
            x.mailboxes.clear();
        }
        assert!(no_login.validate().is_err());
        // A value outside a setting's choices is refused when the file is read, naming them.
        for (bad, expected) in [
            (
                toml.replace("host = ", "tls = \"ssl\"\n            host = "),
                "implicit",
            ),
            (format!("{toml}\n            store = \"ldap\""), "imap"),
            (format!("[audio]\nstore = \"nfs\"\n{toml}"), "`fs`, `s3`"),
        ] {
            let err = Figment::from(Serialized::defaults(Config::default()))
                .merge(Toml::string(&bad))
                .extract::<Config>()
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(err.contains(expected), "{bad}: {err}");
        }
    }
}
