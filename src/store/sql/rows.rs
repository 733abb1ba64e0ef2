//! Row structs (portable column types only) and their conversion into records.

use crate::domain::{AudioFormat, Flag, Folder, GreetingKind, MailboxAddress, Role};
use crate::store::{
    ApiKeyRecord, ContextRecord, GreetingRecord, MailboxRecord, MessageRecord, StoreError,
};

fn corrupt(what: &str, value: &str) -> StoreError {
    StoreError::Corrupt(format!("{what}: {value:?}"))
}

fn parse_id<T: std::str::FromStr>(what: &str, s: &str) -> Result<T, StoreError> {
    s.parse().map_err(|_| corrupt(what, s))
}

fn opt_u32(v: Option<i64>) -> Option<u32> {
    v.and_then(|n| u32::try_from(n).ok())
}

#[derive(sqlx::FromRow)]
pub(super) struct ContextRow {
    pub name: String,
    pub description: String,
    pub created_at: i64,
}

impl From<ContextRow> for ContextRecord {
    fn from(r: ContextRow) -> Self {
        Self {
            name: r.name,
            description: r.description,
            created_at: r.created_at,
        }
    }
}

macro_rules! mailbox_columns {
    () => {
        "uniqueid, context, mailbox, password, fullname, email, \
    pager, attach, attachfmt, maxmsg, maxsecs, minsecs, tz, language, deletevoicemail, version, \
    created_at, updated_at"
    };
}
pub(super) use mailbox_columns;

#[derive(sqlx::FromRow)]
pub(super) struct MailboxRow {
    pub uniqueid: String,
    pub context: String,
    pub mailbox: String,
    pub password: String,
    pub fullname: String,
    pub email: String,
    pub pager: String,
    pub attach: String,
    pub attachfmt: String,
    pub maxmsg: Option<i64>,
    pub maxsecs: Option<i64>,
    pub minsecs: Option<i64>,
    pub tz: String,
    pub language: String,
    pub deletevoicemail: String,
    pub version: i64,
    pub created_at: i64,
    pub updated_at: i64,
}

impl TryFrom<MailboxRow> for MailboxRecord {
    type Error = StoreError;
    fn try_from(r: MailboxRow) -> Result<Self, StoreError> {
        Ok(Self {
            id: parse_id("mailbox uniqueid", &r.uniqueid)?,
            address: MailboxAddress {
                mailbox: r.mailbox,
                context: r.context,
            },
            pin_hash: r.password,
            fullname: r.fullname,
            email: r.email,
            pager: r.pager,
            attach: r.attach.eq_ignore_ascii_case("yes"),
            attachfmt: r.attachfmt,
            maxmsg: opt_u32(r.maxmsg),
            maxsecs: opt_u32(r.maxsecs),
            minsecs: opt_u32(r.minsecs),
            tz: r.tz,
            language: r.language,
            deletevoicemail: r.deletevoicemail.eq_ignore_ascii_case("yes"),
            version: r.version,
            created_at: r.created_at,
            updated_at: r.updated_at,
        })
    }
}

macro_rules! message_columns {
    () => {
        "id, mailbox_id, mailboxuser, mailboxcontext, dir, msgnum, \
    folder, is_read, flag, category, context, macrocontext, callerid, caller_id_num, caller_id_name, \
    origtime, duration_ms, origmailbox, exten, rdnis, priority, callerchan, msg_id, audio_key, \
    audio_format, sample_rate, channels, byte_size, sha256, forwarded_from, created_by, created_at, \
    updated_at"
    };
}
pub(super) use message_columns;

#[derive(sqlx::FromRow)]
pub(super) struct MessageRow {
    pub id: String,
    pub mailbox_id: String,
    pub mailboxuser: String,
    pub mailboxcontext: String,
    pub dir: String,
    pub msgnum: i64,
    pub folder: String,
    pub is_read: i64,
    pub flag: String,
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
    pub audio_format: String,
    pub sample_rate: i64,
    pub channels: i64,
    pub byte_size: i64,
    pub sha256: String,
    pub forwarded_from: Option<String>,
    pub created_by: String,
    pub created_at: i64,
    pub updated_at: i64,
}

impl TryFrom<MessageRow> for MessageRecord {
    type Error = StoreError;
    fn try_from(r: MessageRow) -> Result<Self, StoreError> {
        Ok(Self {
            id: parse_id("message id", &r.id)?,
            mailbox_id: parse_id("message mailbox_id", &r.mailbox_id)?,
            mailbox: MailboxAddress {
                mailbox: r.mailboxuser,
                context: r.mailboxcontext,
            },
            dir: r.dir,
            msgnum: r.msgnum,
            folder: Folder::parse(&r.folder).map_err(|_| corrupt("message folder", &r.folder))?,
            read: r.is_read != 0,
            flag: Flag::parse(&r.flag),
            category: r.category,
            context: r.context,
            macrocontext: r.macrocontext,
            callerid: r.callerid,
            caller_id_num: r.caller_id_num,
            caller_id_name: r.caller_id_name,
            origtime: r.origtime,
            duration_ms: r.duration_ms,
            origmailbox: r.origmailbox,
            exten: r.exten,
            rdnis: r.rdnis,
            priority: r.priority,
            callerchan: r.callerchan,
            msg_id: r.msg_id,
            audio_key: r.audio_key,
            audio_format: AudioFormat::parse(&r.audio_format)
                .ok_or_else(|| corrupt("message audio_format", &r.audio_format))?,
            sample_rate: u32::try_from(r.sample_rate)
                .map_err(|_| corrupt("message sample_rate", &r.sample_rate.to_string()))?,
            channels: u16::try_from(r.channels)
                .map_err(|_| corrupt("message channels", &r.channels.to_string()))?,
            byte_size: r.byte_size,
            sha256: r.sha256,
            forwarded_from: match r.forwarded_from {
                Some(s) => Some(parse_id("message forwarded_from", &s)?),
                None => None,
            },
            created_by: r.created_by,
            created_at: r.created_at,
            updated_at: r.updated_at,
        })
    }
}

macro_rules! greeting_columns {
    () => {
        "mailbox_id, kind, audio_key, audio_format, sample_rate, \
    channels, duration_ms, byte_size, sha256, updated_at"
    };
}
pub(super) use greeting_columns;

#[derive(sqlx::FromRow)]
pub(super) struct GreetingRow {
    pub mailbox_id: String,
    pub kind: String,
    pub audio_key: String,
    pub audio_format: String,
    pub sample_rate: i64,
    pub channels: i64,
    pub duration_ms: i64,
    pub byte_size: i64,
    pub sha256: String,
    pub updated_at: i64,
}

impl TryFrom<GreetingRow> for GreetingRecord {
    type Error = StoreError;
    fn try_from(r: GreetingRow) -> Result<Self, StoreError> {
        Ok(Self {
            mailbox_id: parse_id("greeting mailbox_id", &r.mailbox_id)?,
            kind: GreetingKind::parse(&r.kind).ok_or_else(|| corrupt("greeting kind", &r.kind))?,
            audio_key: r.audio_key,
            audio_format: AudioFormat::parse(&r.audio_format)
                .ok_or_else(|| corrupt("greeting audio_format", &r.audio_format))?,
            sample_rate: u32::try_from(r.sample_rate)
                .map_err(|_| corrupt("greeting sample_rate", &r.sample_rate.to_string()))?,
            channels: u16::try_from(r.channels)
                .map_err(|_| corrupt("greeting channels", &r.channels.to_string()))?,
            duration_ms: r.duration_ms,
            byte_size: r.byte_size,
            sha256: r.sha256,
            updated_at: r.updated_at,
            asterisk_recording: None,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(super) struct ApiKeyRow {
    pub id: String,
    pub name: String,
    pub role: String,
    pub context: Option<String>,
    pub token_prefix: String,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

impl TryFrom<ApiKeyRow> for ApiKeyRecord {
    type Error = StoreError;
    fn try_from(r: ApiKeyRow) -> Result<Self, StoreError> {
        Ok(Self {
            id: parse_id("api key id", &r.id)?,
            name: r.name,
            role: Role::parse(&r.role).ok_or_else(|| corrupt("api key role", &r.role))?,
            context: r.context,
            token_prefix: r.token_prefix,
            created_at: r.created_at,
            last_used_at: r.last_used_at,
            revoked_at: r.revoked_at,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(super) struct CountsRow {
    pub new_count: i64,
    pub old_count: i64,
    pub urgent_new: i64,
    pub urgent_old: i64,
}
