//! JSON shapes of the API (Asterisk's names where they exist).

use serde::{Deserialize, Deserializer, Serialize};
use utoipa::ToSchema;

use crate::domain::{Flag, Folder, GreetingKind, MwiCounts};
use crate::service::MailboxSettings;
use crate::store::{
    ContextEmailSettings, ContextRecord, EmailState, GreetingRecord, MailboxRecord, MessageRecord,
};

/// A list page.
#[derive(Debug, Serialize, ToSchema)]
pub struct List<T> {
    pub items: Vec<T>,
    /// Pass as `cursor` to get the next page; null on the last page.
    pub next_cursor: Option<String>,
}

/// A context (tenant).
#[derive(Debug, Serialize, ToSchema)]
pub struct ContextView {
    pub name: String,
    pub description: String,
    pub created_at: i64,
}

impl From<ContextRecord> for ContextView {
    fn from(c: ContextRecord) -> Self {
        Self {
            name: c.name,
            description: c.description,
            created_at: c.created_at,
        }
    }
}

/// A new context.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewContext {
    /// Letters, digits, '-', '_' and '.', up to 80.
    pub name: String,
    #[serde(default)]
    pub description: String,
}

/// A mailbox. The PIN is write-only: `has_pin` tells whether one is set.
#[derive(Debug, Serialize, ToSchema)]
pub struct MailboxView {
    /// `mailbox@context`.
    pub id: String,
    pub mailbox: String,
    pub context: String,
    pub fullname: String,
    pub email: String,
    pub pager: String,
    pub attach: bool,
    pub attachfmt: String,
    /// Messages per folder; null = the server default.
    pub maxmsg: Option<u32>,
    /// Longest message in seconds; null = the server default.
    pub maxsecs: Option<u32>,
    /// Shortest message in seconds; null = the server default.
    pub minsecs: Option<u32>,
    pub tz: String,
    pub language: String,
    pub deletevoicemail: bool,
    pub has_pin: bool,
    pub created_at: i64,
    pub updated_at: i64,
}

impl From<MailboxRecord> for MailboxView {
    fn from(m: MailboxRecord) -> Self {
        Self {
            id: m.address.to_string(),
            mailbox: m.address.mailbox,
            context: m.address.context,
            fullname: m.fullname,
            email: m.email,
            pager: m.pager,
            attach: m.attach,
            attachfmt: m.attachfmt,
            maxmsg: m.maxmsg,
            maxsecs: m.maxsecs,
            minsecs: m.minsecs,
            tz: m.tz,
            language: m.language,
            deletevoicemail: m.deletevoicemail,
            has_pin: !m.pin_hash.is_empty(),
            created_at: m.created_at,
            updated_at: m.updated_at,
        }
    }
}

pub(crate) fn double_option<'de, T, D>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    T: Deserialize<'de>,
    D: Deserializer<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

/// Mailbox settings; on PATCH every field is optional and null resets a limit to the default.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MailboxFields {
    /// 1-20 digits; write-only; "" removes the PIN.
    #[serde(default)]
    pub pin: Option<String>,
    #[serde(default)]
    pub fullname: Option<String>,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub pager: Option<String>,
    #[serde(default)]
    pub attach: Option<bool>,
    /// wav, wav49, gsm, opus or original.
    #[serde(default)]
    pub attachfmt: Option<String>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<u32>)]
    pub maxmsg: Option<Option<u32>>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<u32>)]
    pub maxsecs: Option<Option<u32>>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<u32>)]
    pub minsecs: Option<Option<u32>>,
    /// IANA time zone name (e.g. `Europe/Paris`) of the dates in notification emails; "" = UTC.
    #[serde(default)]
    pub tz: Option<String>,
    #[serde(default)]
    pub language: Option<String>,
    #[serde(default)]
    pub deletevoicemail: Option<bool>,
}

impl From<MailboxFields> for MailboxSettings {
    fn from(f: MailboxFields) -> Self {
        Self {
            pin: f.pin,
            fullname: f.fullname,
            email: f.email,
            pager: f.pager,
            attach: f.attach,
            attachfmt: f.attachfmt,
            maxmsg: f.maxmsg,
            maxsecs: f.maxsecs,
            minsecs: f.minsecs,
            tz: f.tz,
            language: f.language,
            deletevoicemail: f.deletevoicemail,
        }
    }
}

/// A new mailbox: its address plus settings.
// serde ignores `deny_unknown_fields` on a flattened struct, so the body is read as a map: the
// address is taken out and the rest must be exactly `MailboxFields` (unknown names are refused).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(try_from = "serde_json::Map<String, serde_json::Value>")]
pub struct NewMailbox {
    pub mailbox: String,
    pub context: String,
    #[serde(flatten)]
    pub fields: MailboxFields,
}

impl TryFrom<serde_json::Map<String, serde_json::Value>> for NewMailbox {
    type Error = String;

    fn try_from(mut m: serde_json::Map<String, serde_json::Value>) -> Result<Self, String> {
        let mut take = |k: &str| match m.remove(k) {
            Some(serde_json::Value::String(s)) => Ok(s),
            Some(_) => Err(format!("{k} must be a string")),
            None => Err(format!("missing field `{k}`")),
        };
        let mailbox = take("mailbox")?;
        let context = take("context")?;
        let fields =
            MailboxFields::deserialize(serde_json::Value::Object(m)).map_err(|e| e.to_string())?;
        Ok(Self {
            mailbox,
            context,
            fields,
        })
    }
}

/// Audio facts of a stored recording.
#[derive(Debug, Serialize, ToSchema)]
pub struct AudioView {
    /// Container and codec, e.g. `wav_ulaw`, `raw_alaw`, `wav_pcm`.
    pub format: String,
    /// `pcm_mulaw`, `pcm_alaw` or `pcm_s16le`.
    pub codec: String,
    pub content_type: String,
    pub sample_rate: u32,
    pub channels: u16,
    /// Bytes of the original recording.
    pub size: i64,
    pub sha256: String,
}

/// A voicemail message.
#[derive(Debug, Serialize, ToSchema)]
pub struct MessageView {
    pub id: String,
    /// Owning mailbox, `mailbox@context`.
    pub mailbox: String,
    pub folder: Folder,
    pub read: bool,
    pub urgent: bool,
    /// Asterisk flag: "None" (Asterisk's empty flag), "Urgent" or "PRIORITY".
    pub flag: Flag,
    /// Zero-based position in the folder (Asterisk msgnum; file msg%04d).
    pub msgnum: i64,
    /// Whole seconds (Asterisk `duration`).
    pub duration: i64,
    pub duration_ms: i64,
    /// When the message was left, Unix seconds (Asterisk `origtime`).
    pub orig_time: i64,
    pub caller_id_num: String,
    pub caller_id_name: String,
    /// `"Name" <num>` as Asterisk writes it.
    pub callerid: String,
    pub category: String,
    pub context: String,
    pub exten: String,
    pub rdnis: String,
    pub priority: i64,
    pub callerchan: String,
    pub origmailbox: String,
    pub msg_id: String,
    pub forwarded_from: Option<String>,
    pub audio: AudioView,
    pub created_at: i64,
    pub created_by: String,
    /// The notification email of this message.
    pub email: EmailStateView,
}

/// Where a message's notification email stands.
#[derive(Debug, Serialize, ToSchema)]
pub struct EmailStateView {
    /// `pending` (queued or being retried), `sent` (accepted by the SMTP server), `failed`
    /// (permanent refusal, or retries ran out), or `none` (no email or pager address, or the
    /// finished job was removed after `email.keep_finished_secs`).
    pub status: String,
    /// SMTP attempts made.
    pub attempts: i64,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
}

impl From<Option<EmailState>> for EmailStateView {
    fn from(s: Option<EmailState>) -> Self {
        match s {
            Some(s) => Self {
                status: s.status,
                attempts: s.attempts,
                last_error: s.last_error,
            },
            None => Self {
                status: "none".into(),
                attempts: 0,
                last_error: None,
            },
        }
    }
}

impl From<MessageRecord> for MessageView {
    fn from(m: MessageRecord) -> Self {
        Self {
            id: m.id.to_string(),
            mailbox: m.mailbox.to_string(),
            urgent: m.flag == Flag::Urgent || m.folder == Folder::Urgent,
            duration: m.duration_secs(),
            folder: m.folder,
            read: m.read,
            flag: m.flag,
            msgnum: m.msgnum,
            duration_ms: m.duration_ms,
            orig_time: m.origtime,
            caller_id_num: m.caller_id_num,
            caller_id_name: m.caller_id_name,
            callerid: m.callerid,
            category: m.category,
            context: m.context,
            exten: m.exten,
            rdnis: m.rdnis,
            priority: m.priority,
            callerchan: m.callerchan,
            origmailbox: m.origmailbox,
            msg_id: m.msg_id,
            forwarded_from: m.forwarded_from.map(|f| f.to_string()),
            audio: AudioView {
                format: m.audio_format.as_str().to_owned(),
                codec: m.audio_format.codec().to_owned(),
                content_type: m.audio_format.content_type().to_owned(),
                sample_rate: m.sample_rate,
                channels: m.channels,
                size: m.byte_size,
                sha256: m.sha256,
            },
            created_at: m.created_at,
            created_by: m.created_by,
            email: None.into(),
        }
    }
}

/// A change to a message: move it and/or mark it read or unread.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MessagePatch {
    /// Parsed by the handler, so an invalid name is an `unknown-folder` problem, not a JSON error.
    #[serde(default)]
    #[schema(value_type = Option<Folder>)]
    pub folder: Option<String>,
    #[serde(default)]
    pub read: Option<bool>,
}

/// Forward a message to other mailboxes.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ForwardBody {
    /// Target mailboxes, `mailbox@context`.
    pub to: Vec<String>,
    /// Keep the original (default true).
    #[serde(default)]
    pub keep: Option<bool>,
}

/// Result of a forward.
#[derive(Debug, Serialize, ToSchema)]
pub struct ForwardView {
    pub items: Vec<MessageView>,
}

/// MWI counts.
pub type MwiView = MwiCounts;

/// A PIN to check.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PinBody {
    pub pin: String,
}

/// A greeting.
#[derive(Debug, Serialize, ToSchema)]
pub struct GreetingView {
    pub kind: GreetingKind,
    pub duration_ms: i64,
    pub audio: AudioView,
    pub updated_at: i64,
}

impl From<GreetingRecord> for GreetingView {
    fn from(g: GreetingRecord) -> Self {
        Self {
            kind: g.kind,
            duration_ms: g.duration_ms,
            audio: AudioView {
                format: g.audio_format.as_str().to_owned(),
                codec: g.audio_format.codec().to_owned(),
                content_type: g.audio_format.content_type().to_owned(),
                sample_rate: g.sample_rate,
                channels: g.channels,
                size: g.byte_size,
                sha256: g.sha256,
            },
            updated_at: g.updated_at,
        }
    }
}

/// A context's voicemail-to-email settings (Asterisk voicemail.conf names). Each is an override of
/// the server's `[email]` value; null = use the server's.
#[derive(Debug, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ContextEmailBody {
    /// From address (Asterisk `serveremail`); without `@` the host name is added.
    #[serde(default)]
    pub serveremail: Option<String>,
    /// From display name of emails (Asterisk `fromstring`), a template.
    #[serde(default)]
    pub fromstring: Option<String>,
    /// Subject template of emails (Asterisk `emailsubject`).
    #[serde(default)]
    pub emailsubject: Option<String>,
    /// Body template of emails (Asterisk `emailbody`).
    #[serde(default)]
    pub emailbody: Option<String>,
    /// Subject template of pager notices (Asterisk `pagersubject`).
    #[serde(default)]
    pub pagersubject: Option<String>,
    /// Body template of pager notices (Asterisk `pagerbody`).
    #[serde(default)]
    pub pagerbody: Option<String>,
    /// strftime format of `${VM_DATE}` in emails (Asterisk `emaildateformat`).
    #[serde(default)]
    pub emaildateformat: Option<String>,
    /// From display name of pager notices (Asterisk `pagerfromstring`), a template.
    #[serde(default)]
    pub pagerfromstring: Option<String>,
    /// strftime format of `${VM_DATE}` in pager notices (Asterisk `pagerdateformat`).
    #[serde(default)]
    pub pagerdateformat: Option<String>,
}

/// How a context's messages are shared with Asterisk's app_voicemail (ODBC storage).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ContextAsteriskBody {
    /// The format the context's Asterisk nodes store recordings in: the first of their
    /// voicemail.conf `format=` (`wav49`, `gsm` or `wav`). Every message of the context then
    /// carries a copy in that format in the shared table's `recording` column, which Asterisk
    /// plays. null = no Asterisk shares this context's messages.
    pub format: Option<crate::domain::AsteriskFormat>,
    /// How the mailboxes' PINs are kept: `hashed` (argon2, the default) or `plain`, which
    /// Asterisk's realtime voicemail users need (Asterisk compares the PIN as text and writes a
    /// PIN changed in VoiceMailMain as text). Plain PINs can be read by anyone who can read the
    /// database. Back to `hashed`, every plain PIN is hashed at once.
    #[serde(default)]
    pub pins: crate::domain::PinStorage,
    /// Who mails the messages Asterisk records: `asterisk` (the default: Asterisk does, when the
    /// mailbox has an address and Asterisk a mailer; voxmail does not) or `voxmail` (voxmail
    /// mails them as its own deposits, from its templates; give Asterisk no mailer or address
    /// then, so none is mailed twice). voxmail always mails its own deposits.
    #[serde(default)]
    pub mail: crate::domain::AsteriskMail,
}

/// A context's Asterisk settings.
#[derive(Debug, Serialize, ToSchema)]
pub struct ContextAsteriskView {
    pub context: String,
    #[serde(flatten)]
    pub settings: ContextAsteriskBody,
}

/// A context's email settings as stored, with the unknown template variables found.
#[derive(Debug, Serialize, ToSchema)]
pub struct ContextEmailView {
    pub context: String,
    #[serde(flatten)]
    pub settings: ContextEmailBody,
    /// `${…}` names the templates use that are not Asterisk's; they stay visible in mails.
    pub unknown_variables: Vec<String>,
}

impl From<ContextEmailBody> for ContextEmailSettings {
    fn from(b: ContextEmailBody) -> Self {
        Self {
            serveremail: b.serveremail,
            fromstring: b.fromstring,
            emailsubject: b.emailsubject,
            emailbody: b.emailbody,
            pagersubject: b.pagersubject,
            pagerbody: b.pagerbody,
            emaildateformat: b.emaildateformat,
            pagerfromstring: b.pagerfromstring,
            pagerdateformat: b.pagerdateformat,
        }
    }
}

impl From<ContextEmailSettings> for ContextEmailBody {
    fn from(s: ContextEmailSettings) -> Self {
        Self {
            serveremail: s.serveremail,
            fromstring: s.fromstring,
            emailsubject: s.emailsubject,
            emailbody: s.emailbody,
            pagersubject: s.pagersubject,
            pagerbody: s.pagerbody,
            emaildateformat: s.emaildateformat,
            pagerfromstring: s.pagerfromstring,
            pagerdateformat: s.pagerdateformat,
        }
    }
}
