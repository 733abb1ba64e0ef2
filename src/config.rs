//! Configuration: defaults, then the TOML file, then `VOXMAIL_*` environment variables (`__` between
//! nested names, e.g. `VOXMAIL_DATABASE__URL`), then command-line flags.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

/// The commented example configuration (`voxmail config print-default`).
pub const EXAMPLE_TOML: &str = include_str!("../config/voxmail.example.toml");

/// The whole configuration.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Directory for the embedded defaults: the SQLite database and the audio directory.
    pub data_dir: PathBuf,
    /// Name of this node, recorded on the messages it stores (`created_by`) and in events.
    /// Empty = the host name.
    pub node_id: String,
    /// HTTP listener.
    pub http: HttpConfig,
    /// Metadata database.
    pub database: DatabaseConfig,
    /// Audio storage.
    pub audio: AudioConfig,
    /// Voicemail behaviour and mailbox defaults.
    pub voicemail: VoicemailConfig,
    /// PIN brute-force protection.
    pub pin: PinConfig,
    /// Event outbox.
    pub events: EventsConfig,
    /// Webhook delivery.
    pub webhooks: WebhooksConfig,
    /// MWI pushes to Asterisk (ARI, AMI, SIP NOTIFY).
    pub mwi: MwiConfig,
    /// Voicemail-to-email: SMTP, retries and the global Asterisk template defaults.
    pub email: EmailConfig,
    /// The admin web UI at `/ui`.
    pub ui: UiConfig,
    /// IMAP storage: contexts whose messages live in IMAP folders, in Asterisk's format.
    pub imap: ImapConfig,
    /// Logging.
    pub log: LogConfig,
}

/// HTTP listener settings.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Address and port to listen on.
    pub listen: SocketAddr,
    /// Largest request body accepted (deposits and greetings), in bytes.
    pub max_body_bytes: u64,
    /// Seconds in-flight requests may take to finish after a shutdown signal.
    pub shutdown_grace_secs: u64,
    /// Most connections open at once; a connection beyond them is answered 503 and closed (an
    /// idle kept-alive connection is closed first to make room). Lowered at start-up to fit the
    /// process's open-file limit.
    pub max_connections: u32,
    /// Seconds a client has to send a request's headers, from its first byte (or from the accept,
    /// for a connection's first request). A slower client is disconnected.
    pub header_read_timeout_secs: u64,
    /// Seconds an idle kept-alive connection stays open waiting for its next request.
    pub keep_alive_timeout_secs: u64,
    /// Longest pause, in seconds, between two pieces of a request body; a longer stall ends the
    /// request with 408 `request-timeout`. Time the server itself is not reading (an upload
    /// waiting for a decoder) does not count.
    pub body_timeout_secs: u64,
    /// Slowest average body rate accepted, in bytes per second, once a body has taken longer than
    /// `body_timeout_secs`: a slower upload ends with 408 `request-timeout`. 0 = no minimum.
    pub min_body_rate_bytes: u64,
    /// Longest time, in seconds, a response may wait for the client to take more bytes (a
    /// client that stops reading a download or an event stream is disconnected).
    pub send_timeout_secs: u64,
    /// Most uploads (deposits, greetings) in flight at once with one API key; more are answered
    /// 429 `too-many-uploads`. 0 = no limit.
    pub max_uploads_per_key: u32,
    /// Most uploads in flight at once from one client address; more are answered 429
    /// `too-many-uploads`. 0 = no limit (behind a reverse proxy every client has its address).
    pub max_uploads_per_source: u32,
}

/// Database settings.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    /// Database URL: `sqlite://PATH`, `postgres://user:pass@host/db` or
    /// `mysql://user:pass@host/db` (also `mariadb://`). Empty = SQLite at `<data_dir>/voxmail.db`.
    pub url: String,
    /// Largest number of pooled connections.
    pub max_connections: u32,
    /// On MySQL/MariaDB, how often (milliseconds) a node polls the outbox for events committed by
    /// other nodes (PostgreSQL nodes are woken by LISTEN/NOTIFY; SQLite has one node). On
    /// PostgreSQL and MySQL/MariaDB also how often it looks for changes Asterisk's app_voicemail
    /// made in the shared messages table.
    pub poll_interval_ms: u64,
    /// How long (milliseconds) a request waits for a pooled connection before it fails with a
    /// 503. Bounds every request, and `/readyz`, while the database is unreachable: a connection
    /// is tried again and again until then. Must be at least 1.
    pub acquire_timeout_ms: u64,
}

impl std::fmt::Debug for DatabaseConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DatabaseConfig")
            .field("url", &redact_url(&self.url))
            .field("max_connections", &self.max_connections)
            .field("poll_interval_ms", &self.poll_interval_ms)
            .field("acquire_timeout_ms", &self.acquire_timeout_ms)
            .finish()
    }
}

/// Hides a password in a URL (`scheme://user:***@host/…`) for logs.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let userinfo = &url[s + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..s + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

/// Audio storage settings.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AudioConfig {
    /// Where audio bytes are kept: `fs` (a local directory, the default), `s3` (an
    /// S3-compatible bucket, see `[audio.s3]`; what a cluster of nodes shares) or `db` (the
    /// database's `recording` column, as Asterisk's ODBC storage keeps it).
    pub store: AudioStore,
    /// Directory of the `fs` store. Empty = `<data_dir>/audio`.
    pub dir: PathBuf,
    /// The bucket of the `s3` store.
    pub s3: S3Config,
    /// Audio objects no committed message or greeting references are removed once they are
    /// this many seconds old (a crash between "audio written" and "row committed" leaves one).
    /// Must be far longer than any deposit takes; 0 turns the collector off.
    pub orphan_grace_secs: u64,
    /// Seconds between two passes of the orphan collector on this node (each pass lists the
    /// whole store, so on S3 it costs one LIST request per 1,000 objects).
    pub orphan_sweep_secs: u64,
    /// Renditions (Opus, GSM, WAV…), admin waveforms and e-mail attachments transcoded at once,
    /// each on a thread of its own; more wait (see `transcode_queue`), so a burst of fetches
    /// cannot take the CPU from deposits.
    pub transcode_concurrency: usize,
    /// Rendition and waveform requests that may wait for a transcoder; past them, or after
    /// `busy_wait_ms`, a request gets 503 `busy` with Retry-After. E-mail attachments wait
    /// their turn without a limit (their own concurrency is bounded).
    pub transcode_queue: usize,
    /// Uploads of a compressed format (MP3, FLAC, Ogg, WebM) checked at once. Each is decoded as
    /// it streams in, on a thread of its own that lives as long as the upload, mostly waiting for
    /// the client (never on the blocking pool file writes need); 0.3–0.5 MiB each. More
    /// uploads wait for one, with no more of their body read (see `decoder_queue`). WAV and
    /// headerless uploads need no decoder and never wait.
    pub max_decoders: usize,
    /// Compressed uploads that may wait for a decoder; past them, or after `busy_wait_ms`, an
    /// upload gets 503 `busy` with Retry-After.
    pub decoder_queue: usize,
    /// Milliseconds an upload or a rendition request waits for a decoder or a transcoder before
    /// its 503 `busy` (whose Retry-After is this in seconds, 1–10).
    pub busy_wait_ms: u64,
    /// Decoders that may compute at once (0 = the number of CPUs less one, at least one); the
    /// others wait for their client or their turn, so hundreds of compressed uploads leave CPU
    /// time to the rest of the node.
    pub decode_threads: usize,
    /// Bitrate of Opus renditions and attachments in bit/s when a request names none (one of
    /// 8000, 12000, 16000, 24000, 32000, 48000, 64000).
    pub opus_bitrate: u32,
    /// libopus complexity of Opus renditions and attachments, 0–10. The default 8 is the
    /// encoder's best speech mode (9 and 10 make the same bits for 8–16 kHz speech) and sounds at least as
    /// good as ffmpeg's libopus; 6–7 do ~25 % less work for 0 to −0.19 PESQ MOS on 16 kbit/s
    /// speech, 5 ~45 % less for −0.02 to −0.45 (see bench/README.md, Opus quality). Cached
    /// renditions are kept, so a change applies to renditions made afterwards.
    pub opus_complexity: u8,
}

/// An S3-compatible bucket (AWS S3, MinIO, Ceph RGW, Garage, …) for `audio.store = "s3"`.
///
/// Credentials are best left out of the file: when `access_key_id` is empty they come from the
/// environment (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`) or the
/// instance's metadata service, as AWS tools do.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct S3Config {
    /// Endpoint URL, e.g. `https://minio.example.net:9000`. Empty = AWS for `region`.
    pub endpoint: String,
    /// Region name (most non-AWS servers accept any name).
    pub region: String,
    /// Bucket name; it must exist.
    pub bucket: String,
    /// Prefix put before every key (e.g. `voxmail/`), to share a bucket with other data.
    pub prefix: String,
    /// Path-style requests (`endpoint/bucket/key`), which MinIO and most self-hosted servers
    /// need; false = virtual-hosted style (`bucket.endpoint/key`), as AWS prefers.
    pub path_style: bool,
    /// Allows an `http://` endpoint (a test server, or a server on a trusted network).
    pub allow_http: bool,
    /// Access key id; empty = from the environment.
    pub access_key_id: String,
    /// Secret access key (never logged); empty = from the environment.
    pub secret_access_key: String,
    /// Recordings up to this size are sent in one PUT; larger ones as a multipart upload in
    /// parts of this size (at least 5 MiB, the S3 minimum). It is also the memory one upload
    /// may hold.
    pub part_size_bytes: u64,
    /// Seconds one request to the bucket may take before it is retried or fails.
    pub timeout_secs: u64,
}

impl std::fmt::Debug for S3Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Config")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("bucket", &self.bucket)
            .field("prefix", &self.prefix)
            .field("path_style", &self.path_style)
            .field("allow_http", &self.allow_http)
            .field("access_key_id", &self.access_key_id)
            .field(
                "secret_access_key",
                &if self.secret_access_key.is_empty() {
                    ""
                } else {
                    "***"
                },
            )
            .field("part_size_bytes", &self.part_size_bytes)
            .field("timeout_secs", &self.timeout_secs)
            .finish()
    }
}

impl Default for S3Config {
    fn default() -> Self {
        Self {
            endpoint: String::new(),
            region: "us-east-1".into(),
            bucket: String::new(),
            prefix: String::new(),
            path_style: false,
            allow_http: false,
            access_key_id: String::new(),
            secret_access_key: String::new(),
            part_size_bytes: 8 * 1024 * 1024,
            timeout_secs: 30,
        }
    }
}

/// Voicemail behaviour.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VoicemailConfig {
    /// Asterisk spool directory used to build the ODBC `dir` column
    /// (`<spool_dir>/voicemail/<context>/<mailbox>/<folder>`).
    pub spool_dir: String,
    /// Messages per folder when a mailbox sets no `maxmsg` (Asterisk's default is 100).
    pub default_maxmsg: u32,
    /// Longest message in seconds when a mailbox sets no `maxsecs`.
    pub default_maxsecs: u32,
    /// Shortest message in seconds when a mailbox sets no `minsecs`; shorter ones are refused.
    pub default_minsecs: u32,
    /// Seconds an `Idempotency-Key` is remembered.
    pub idempotency_ttl_secs: u64,
}

/// PIN verification limits.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PinConfig {
    /// Failed attempts allowed within `window_secs` before the mailbox locks.
    pub max_failures: u32,
    /// Window in which failures are counted, in seconds.
    pub window_secs: u64,
    /// How long a locked mailbox refuses PIN attempts, in seconds.
    pub lockout_secs: u64,
}

/// Event outbox settings.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EventsConfig {
    /// How long events are kept for replay, in seconds (default 7 days).
    pub retention_secs: u64,
    /// How often the outbox is polled for changes made by other processes or nodes, in ms.
    pub poll_interval_ms: u64,
    /// Seconds between SSE heartbeat comments, so proxies keep idle streams open.
    pub heartbeat_secs: u64,
}

/// Webhook delivery settings.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebhooksConfig {
    /// How long a delivery is retried before it is marked dead, in seconds (default 24 h).
    pub max_age_secs: u64,
    /// Delay before the first retry, in ms; it doubles with each attempt (with ±50 % jitter).
    pub retry_base_ms: u64,
    /// Longest delay between retries, in ms.
    pub retry_max_ms: u64,
    /// Seconds a receiver has to answer one delivery.
    pub timeout_secs: u64,
    /// Deliveries sent at the same time.
    pub concurrency: u32,
}

impl Default for WebhooksConfig {
    fn default() -> Self {
        Self {
            max_age_secs: 24 * 3600,
            retry_base_ms: 1000,
            retry_max_ms: 3_600_000,
            timeout_secs: 10,
            concurrency: 16,
        }
    }
}

/// MWI push settings.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MwiConfig {
    /// Push the current counts of every mailbox to every target when the server starts.
    pub resync_on_start: bool,
    /// Delay before the first retry of a failed push, in ms; doubles per attempt (±50 % jitter).
    pub retry_base_ms: u64,
    /// Longest delay between retries, in ms.
    pub retry_max_ms: u64,
    /// Seconds an ARI request may take.
    pub timeout_secs: u64,
    /// Pushes sent at the same time.
    pub concurrency: u32,
    /// User part of the From and Contact of SIP NOTIFYs.
    pub sip_from_user: String,
}

impl Default for MwiConfig {
    fn default() -> Self {
        Self {
            resync_on_start: true,
            retry_base_ms: 1000,
            retry_max_ms: 60_000,
            timeout_secs: 10,
            concurrency: 16,
            sip_from_user: "voxmail".into(),
        }
    }
}

/// Where audio bytes are kept (`audio.store`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AudioStore {
    /// A local directory (`audio.dir`).
    #[default]
    Fs,
    /// An S3-compatible bucket (`[audio.s3]`).
    S3,
    /// The database's `recording` columns.
    Db,
}

impl AudioStore {
    /// The name used in the configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Fs => "fs",
            Self::S3 => "s3",
            Self::Db => "db",
        }
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

/// How the SMTP connection is secured.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpTls {
    /// Plain SMTP (a local relay).
    None,
    /// STARTTLS is required after EHLO (submission, port 587).
    Starttls,
    /// TLS from the first byte (SMTPS, port 465).
    Implicit,
}

/// Voicemail-to-email settings. The template settings are Asterisk's `voicemail.conf` options and
/// are the global defaults; a context may override them (`PUT /v1/contexts/{name}/email`).
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EmailConfig {
    /// Send notification emails at all. When off, deposits queue no email jobs.
    pub enabled: bool,
    /// SMTP server host name.
    pub host: String,
    /// SMTP server port.
    pub port: u16,
    /// `none` (plain, for a local relay), `starttls` or `implicit`.
    pub tls: SmtpTls,
    /// SMTP AUTH user name; empty = no AUTH.
    pub username: String,
    /// SMTP AUTH password (never logged). AUTH over `tls = "none"` is refused at start unless
    /// `host` is a loopback address, so a password never crosses a network in clear.
    pub password: String,
    /// PEM file of CA certificates trusted for the SMTP server's certificate, besides the public
    /// (webpki) roots: for a relay with a private CA. Empty = public roots only.
    pub tls_ca_file: PathBuf,
    /// Accept any server certificate (expired, self-signed, wrong name). For lab relays only: it
    /// gives up TLS's protection against impostors, and voxmail logs a warning at start.
    pub tls_accept_invalid_certs: bool,
    /// Seconds one SMTP conversation may take.
    pub timeout_secs: u64,
    /// How long an email is retried after transient failures before it is marked failed (24 h).
    pub max_age_secs: u64,
    /// Delay before the first retry, in ms; it doubles per attempt, with ±50 % jitter.
    pub retry_base_ms: u64,
    /// Longest delay between retries, in ms.
    pub retry_max_ms: u64,
    /// Emails sent at the same time.
    pub concurrency: u32,
    /// Largest attachment, in bytes; a larger one is sent as Opus (the compact format), and if
    /// that is still too large the mail goes without it and says so in the body.
    pub attachment_max_bytes: u64,
    /// Seconds a sent or failed email job is kept (its state shows on the message) before the
    /// worker removes it (7 days). 0 = keep them forever.
    pub keep_finished_secs: u64,
    /// Envelope and From address (Asterisk `serveremail`); without '@' the host name is added.
    pub serveremail: String,
    /// Display name of the From address (Asterisk `fromstring`); empty = "Asterisk PBX".
    pub fromstring: String,
    /// Subject template (Asterisk `emailsubject`); empty = Asterisk's built-in subject.
    pub emailsubject: String,
    /// Body template (Asterisk `emailbody`); empty = Asterisk's built-in body.
    pub emailbody: String,
    /// Pager subject template (Asterisk `pagersubject`); empty = Asterisk's built-in one.
    pub pagersubject: String,
    /// Pager body template (Asterisk `pagerbody`); empty = Asterisk's built-in one.
    pub pagerbody: String,
    /// strftime format of `${VM_DATE}` (Asterisk `emaildateformat`).
    pub emaildateformat: String,
    /// Display name of the pager notice's From address (Asterisk `pagerfromstring`); empty =
    /// "Asterisk PBX".
    pub pagerfromstring: String,
    /// strftime format of `${VM_DATE}` in pager notices (Asterisk `pagerdateformat`).
    pub pagerdateformat: String,
}

impl Default for EmailConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            host: "localhost".into(),
            port: 25,
            tls: SmtpTls::None,
            username: String::new(),
            password: String::new(),
            tls_ca_file: PathBuf::new(),
            tls_accept_invalid_certs: false,
            timeout_secs: 30,
            max_age_secs: 24 * 3600,
            retry_base_ms: 5000,
            retry_max_ms: 600_000,
            concurrency: 4,
            attachment_max_bytes: 10 * 1024 * 1024,
            keep_finished_secs: 7 * 24 * 3600,
            serveremail: "asterisk".into(),
            fromstring: String::new(),
            emailsubject: String::new(),
            emailbody: String::new(),
            pagersubject: String::new(),
            pagerbody: String::new(),
            emaildateformat: "%A, %B %d, %Y at %r".into(),
            pagerfromstring: String::new(),
            pagerdateformat: "%A, %B %d, %Y at %r".into(),
        }
    }
}

impl std::fmt::Debug for EmailConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmailConfig")
            .field("enabled", &self.enabled)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("tls", &self.tls)
            .field("username", &self.username)
            .field(
                "password",
                &if self.password.is_empty() { "" } else { "***" },
            )
            .field("tls_ca_file", &self.tls_ca_file)
            .field("tls_accept_invalid_certs", &self.tls_accept_invalid_certs)
            .field("timeout_secs", &self.timeout_secs)
            .field("max_age_secs", &self.max_age_secs)
            .field("keep_finished_secs", &self.keep_finished_secs)
            .field("serveremail", &self.serveremail)
            .finish_non_exhaustive()
    }
}

impl EmailConfig {
    /// Refuses SMTP AUTH over plain SMTP to anything but this host: the password would cross the
    /// network in clear. A loopback relay (`localhost`, 127.0.0.0/8, ::1) is allowed.
    pub fn check_transport(&self) -> Result<(), String> {
        if self.tls == SmtpTls::None && !self.username.is_empty() && !is_loopback(&self.host) {
            return Err(format!(
                "email.username is set with email.tls = \"none\" and host {:?} is not loopback: \
                 the password would be sent in clear; use tls = \"starttls\" or \"implicit\"",
                self.host
            ));
        }
        Ok(())
    }
}

/// Whether `host` names this machine: `localhost` (or `*.localhost`) or a loopback address.
fn is_loopback(host: &str) -> bool {
    let h = host.trim_start_matches('[').trim_end_matches(']');
    let lower = h.to_ascii_lowercase();
    lower == "localhost"
        || lower.ends_with(".localhost")
        || h.parse::<std::net::IpAddr>().is_ok_and(|a| a.is_loopback())
}

/// Admin web UI settings (`/ui`; admins are made with `voxmail admin create`).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UiConfig {
    /// Serve the admin web UI at `/ui` (`/` then redirects there).
    pub enabled: bool,
    /// A session ends this many seconds after sign-in, used or not.
    pub session_ttl_secs: u64,
    /// A session ends when unused for this many seconds.
    pub idle_timeout_secs: u64,
    /// Mark the session cookie `Secure` on every response. When false it is `Secure` only when
    /// the request came over TLS as a proxy says with `X-Forwarded-Proto: https`.
    pub secure_cookie: bool,
    /// Failed sign-ins allowed within `login_window_secs` before the admin account locks.
    pub login_max_failures: u32,
    /// Window in which failed sign-ins are counted, in seconds.
    pub login_window_secs: u64,
    /// How long a locked admin account refuses sign-ins, in seconds.
    pub login_lockout_secs: u64,
}

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

/// Logging settings.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `tracing` filter, e.g. `info` or `voxmail=debug,tower_http=info`. `RUST_LOG` overrides it.
    /// The default quiets dependencies that report routine work at INFO (symphonia logs every
    /// Ogg stream it opens).
    pub filter: String,
}

/// `log.filter` when none is set (and when the one set cannot be parsed).
pub const DEFAULT_LOG_FILTER: &str = "info,symphonia=warn";

impl Default for Config {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("./data"),
            node_id: String::new(),
            http: HttpConfig::default(),
            database: DatabaseConfig::default(),
            audio: AudioConfig::default(),
            voicemail: VoicemailConfig::default(),
            pin: PinConfig::default(),
            events: EventsConfig::default(),
            webhooks: WebhooksConfig::default(),
            mwi: MwiConfig::default(),
            email: EmailConfig::default(),
            ui: UiConfig::default(),
            imap: ImapConfig::default(),
            log: LogConfig::default(),
        }
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            max_body_bytes: 64 * 1024 * 1024,
            shutdown_grace_secs: 30,
            max_connections: 4096,
            header_read_timeout_secs: 15,
            keep_alive_timeout_secs: 60,
            body_timeout_secs: 30,
            min_body_rate_bytes: 1024,
            send_timeout_secs: 60,
            max_uploads_per_key: 128,
            max_uploads_per_source: 64,
        }
    }
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self {
            url: String::new(),
            max_connections: 16,
            poll_interval_ms: 200,
            acquire_timeout_ms: 2000,
        }
    }
}

impl AudioConfig {
    /// Decoders that may compute at once: `decode_threads`, or the CPUs less one.
    pub fn decode_cpus(&self) -> usize {
        match self.decode_threads {
            0 => std::thread::available_parallelism()
                .map_or(1, |n| n.get().saturating_sub(1))
                .max(1),
            n => n,
        }
    }
}

impl Default for AudioConfig {
    fn default() -> Self {
        Self {
            store: AudioStore::Fs,
            dir: PathBuf::new(),
            s3: S3Config::default(),
            orphan_grace_secs: 6 * 3600,
            orphan_sweep_secs: 3600,
            transcode_concurrency: 2,
            transcode_queue: 64,
            max_decoders: 256,
            decoder_queue: 256,
            busy_wait_ms: 10_000,
            decode_threads: 0,
            opus_bitrate: 16000,
            opus_complexity: 8,
        }
    }
}

impl Default for VoicemailConfig {
    fn default() -> Self {
        Self {
            spool_dir: "/var/spool/asterisk".into(),
            default_maxmsg: 100,
            default_maxsecs: 300,
            default_minsecs: 0,
            idempotency_ttl_secs: 24 * 3600,
        }
    }
}

impl Default for PinConfig {
    fn default() -> Self {
        Self {
            max_failures: 5,
            window_secs: 15 * 60,
            lockout_secs: 15 * 60,
        }
    }
}

impl Default for EventsConfig {
    fn default() -> Self {
        Self {
            retention_secs: 7 * 24 * 3600,
            poll_interval_ms: 1000,
            heartbeat_secs: 15,
        }
    }
}

impl Default for UiConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            session_ttl_secs: 12 * 3600,
            idle_timeout_secs: 3600,
            secure_cookie: false,
            login_max_failures: 5,
            login_window_secs: 15 * 60,
            login_lockout_secs: 15 * 60,
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            filter: DEFAULT_LOG_FILTER.into(),
        }
    }
}

/// Settings given on the command line; they win over everything else.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub config_file: Option<PathBuf>,
    pub data_dir: Option<PathBuf>,
    pub database_url: Option<String>,
    pub listen: Option<SocketAddr>,
}

/// Why the configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration file {0} does not exist")]
    MissingFile(PathBuf),
    #[error("invalid configuration: {0}")]
    Invalid(#[from] Box<figment::Error>),
    #[error("invalid configuration: {0}")]
    Value(String),
}

impl Config {
    /// Loads defaults → TOML file → `VOXMAIL_*` env → flags. Without `--config`, `VOXMAIL_CONFIG` or
    /// `./voxmail.toml` (if present) is the file.
    pub fn load(o: &Overrides) -> Result<Self, ConfigError> {
        let file = match &o.config_file {
            Some(f) if !f.exists() => return Err(ConfigError::MissingFile(f.clone())),
            Some(f) => Some(f.clone()),
            None => match std::env::var_os("VOXMAIL_CONFIG") {
                Some(f) if !Path::new(&f).exists() => {
                    return Err(ConfigError::MissingFile(f.into()));
                }
                Some(f) => Some(PathBuf::from(f)),
                None => Some(PathBuf::from("voxmail.toml")).filter(|p| p.exists()),
            },
        };
        let mut fig = Figment::from(Serialized::defaults(Config::default()));
        if let Some(f) = file {
            fig = fig.merge(Toml::file_exact(f));
        }
        fig = fig.merge(Env::prefixed("VOXMAIL_").split("__").ignore(&["config"]));
        if let Some(d) = &o.data_dir {
            fig = fig.merge(Serialized::default("data_dir", d));
        }
        if let Some(u) = &o.database_url {
            fig = fig.merge(Serialized::default("database.url", u));
        }
        if let Some(l) = &o.listen {
            fig = fig.merge(Serialized::default("http.listen", l));
        }
        let cfg: Config = fig.extract().map_err(Box::new)?;
        cfg.validate()?;
        Ok(cfg)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if self.node_id.chars().count() > 64 {
            return Err(ConfigError::Value(
                "node_id: at most 64 characters (it is stored with every message and event)".into(),
            ));
        }
        if self.imap.watch_lease_secs < 3 {
            return Err(ConfigError::Value(
                "imap.watch_lease_secs must be at least 3".into(),
            ));
        }
        for (name, c) in &self.imap.contexts {
            let bad = |m: &str| Err(ConfigError::Value(format!("imap.contexts.{name}: {m}")));
            for (number, m) in &c.mailboxes {
                if m.is_imap(c) && m.user.is_empty() && c.master_user.is_empty() {
                    return bad(&format!(
                        "mailboxes.{number} is kept in IMAP: give its user and password, or \
                         master_user"
                    ));
                }
            }
            if c.has_imap() && c.host.is_empty() {
                return bad("host is required");
            }
            if c.is_imap() && c.master_user.is_empty() && c.mailboxes.is_empty() {
                return bad("give master_user (and master_password) or per-mailbox logins");
            }
            if c.timeout_secs == 0 {
                return bad("timeout_secs must be at least 1");
            }
            if c.folder.is_empty() {
                return bad("folder must not be empty (Asterisk's default is INBOX)");
            }
            if c.greeting_folder.is_empty() {
                return bad("greeting_folder must not be empty (Asterisk's default is INBOX)");
            }
        }
        match self.audio.store {
            AudioStore::Fs | AudioStore::Db => {}
            AudioStore::S3 => {
                let s3 = &self.audio.s3;
                if s3.bucket.is_empty() {
                    return Err(ConfigError::Value(
                        "audio.store = \"s3\" needs audio.s3.bucket".into(),
                    ));
                }
                if s3.part_size_bytes < 5 * 1024 * 1024 {
                    return Err(ConfigError::Value(
                        "audio.s3.part_size_bytes must be at least 5 MiB (5242880), the S3 minimum part size".into(),
                    ));
                }
                if s3.endpoint.starts_with("http://") && !s3.allow_http {
                    return Err(ConfigError::Value(
                        "audio.s3.endpoint is http://: set audio.s3.allow_http = true to send audio unencrypted".into(),
                    ));
                }
            }
        }
        if self.audio.orphan_grace_secs > 0 && self.audio.orphan_sweep_secs == 0 {
            return Err(ConfigError::Value(
                "audio.orphan_sweep_secs must be at least 1 (or set orphan_grace_secs = 0 to turn the collector off)".into(),
            ));
        }
        if self.audio.transcode_concurrency == 0 {
            return Err(ConfigError::Value(
                "audio.transcode_concurrency must be at least 1".into(),
            ));
        }
        if self.audio.max_decoders == 0 {
            return Err(ConfigError::Value(
                "audio.max_decoders must be at least 1".into(),
            ));
        }
        if !crate::audio::rendition::OPUS_BITRATES.contains(&self.audio.opus_bitrate) {
            return Err(ConfigError::Value(format!(
                "audio.opus_bitrate must be one of {:?}",
                crate::audio::rendition::OPUS_BITRATES
            )));
        }
        if self.audio.opus_complexity > crate::audio::rendition::MAX_OPUS_COMPLEXITY {
            return Err(ConfigError::Value(format!(
                "audio.opus_complexity must be 0..={}",
                crate::audio::rendition::MAX_OPUS_COMPLEXITY
            )));
        }
        if self.voicemail.default_maxmsg == 0 || self.voicemail.default_maxmsg > 9999 {
            return Err(ConfigError::Value(
                "voicemail.default_maxmsg must be 1..=9999".into(),
            ));
        }
        for (name, t) in [
            ("fromstring", &self.email.fromstring),
            ("emailsubject", &self.email.emailsubject),
            ("emailbody", &self.email.emailbody),
            ("pagersubject", &self.email.pagersubject),
            ("pagerbody", &self.email.pagerbody),
            ("pagerfromstring", &self.email.pagerfromstring),
        ] {
            crate::mail::template::validate(t)
                .map_err(|e| ConfigError::Value(format!("email.{name}: {e}")))?;
        }
        for (name, f) in [
            ("emaildateformat", &self.email.emaildateformat),
            ("pagerdateformat", &self.email.pagerdateformat),
        ] {
            if !crate::mail::compose::date_format_is_valid(f) {
                return Err(ConfigError::Value(format!(
                    "email.{name} is not a valid strftime format"
                )));
            }
        }
        if self.email.enabled {
            self.email.check_transport().map_err(ConfigError::Value)?;
        }
        if self.database.poll_interval_ms == 0 {
            return Err(ConfigError::Value(
                "database.poll_interval_ms must be at least 1".into(),
            ));
        }
        if self.database.acquire_timeout_ms == 0 {
            return Err(ConfigError::Value(
                "database.acquire_timeout_ms must be at least 1".into(),
            ));
        }
        if self.database.max_connections == 0 {
            return Err(ConfigError::Value(
                "database.max_connections must be at least 1".into(),
            ));
        }
        Ok(())
    }

    /// The database URL in effect (SQLite under `data_dir` unless set).
    pub fn database_url(&self) -> String {
        if self.database.url.is_empty() {
            format!(
                "sqlite://{}?mode=rwc",
                self.data_dir.join("voxmail.db").display()
            )
        } else {
            self.database.url.clone()
        }
    }

    /// The audio directory in effect.
    pub fn audio_dir(&self) -> PathBuf {
        if self.audio.dir.as_os_str().is_empty() {
            self.data_dir.join("audio")
        } else {
            self.audio.dir.clone()
        }
    }

    /// Where renditions (and, for the `db` store, uploads) are written before they are stored:
    /// `tmp/` of the audio directory for the `fs` store, on the same disk as the audio (it stages
    /// its own writes there too); `<data_dir>/tmp` for the others.
    pub fn scratch_dir(&self) -> PathBuf {
        if self.audio.store == AudioStore::Fs {
            self.audio_dir().join("tmp")
        } else {
            self.data_dir.join("tmp")
        }
    }

    /// This node's name.
    pub fn node_id(&self) -> String {
        if !self.node_id.is_empty() {
            return self.node_id.clone();
        }
        std::fs::read_to_string("/etc/hostname")
            .ok()
            .map(|s| s.trim().chars().take(64).collect::<String>())
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "voxmail".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn the_example_file_is_the_defaults() {
        let from_example: Config = Figment::from(Toml::string(EXAMPLE_TOML))
            .extract()
            .expect("example parses");
        let a = serde_json::to_value(&from_example).unwrap();
        let b = serde_json::to_value(Config::default()).unwrap();
        assert_eq!(a, b);
    }

    #[test]
    fn smtp_auth_in_clear_is_refused_unless_the_relay_is_loopback() {
        let mut c = Config::default();
        c.email.username = "vm".into();
        c.email.password = "secret".into();
        for host in [
            "localhost",
            "127.0.0.1",
            "127.0.0.2",
            "::1",
            "[::1]",
            "relay.localhost",
        ] {
            c.email.host = host.into();
            assert!(c.validate().is_ok(), "{host} is loopback");
        }
        c.email.host = "smtp.example.org".into();
        let err = c
            .validate()
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("in clear"), "{err}");
        c.email.tls = SmtpTls::Starttls;
        assert!(c.validate().is_ok());
        c.email.tls = SmtpTls::None;
        c.email.username.clear();
        assert!(c.validate().is_ok(), "no AUTH, nothing to leak");
    }

    #[test]
    fn pager_templates_and_dates_are_validated() {
        let mut c = Config::default();
        c.email.pagerdateformat = "%Q".into();
        assert!(c.validate().is_err());
        c.email.pagerdateformat = "%H:%M".into();
        c.email.pagerfromstring = "VM ${VM_NAME".into();
        assert!(c.validate().is_err());
    }

    #[test]
    fn opus_complexity_above_ten_is_refused() {
        let mut c = Config::default();
        c.audio.opus_complexity = 10;
        assert!(c.validate().is_ok());
        c.audio.opus_complexity = 11;
        let err = c
            .validate()
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("opus_complexity"), "{err}");
    }

    #[test]
    fn redacts_passwords_in_urls() {
        assert_eq!(
            redact_url("postgres://u:secret@h/db"),
            "postgres://u:***@h/db"
        );
        assert_eq!(redact_url("sqlite://x.db"), "sqlite://x.db");
    }
}
