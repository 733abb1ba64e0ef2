//! Builds the notification mail of a message: Asterisk's subject, body, headers and attachment name,
//! as a MIME message (lettre's builder).

use chrono::{DateTime, TimeZone, Utc};
use lettre::Message;
use lettre::message::header::{
    ContentDisposition, ContentTransferEncoding, ContentType, Header, HeaderName, HeaderValue,
};
use lettre::message::{Mailbox, MultiPart, SinglePart};

use super::template::{self, Vars};
use crate::domain::Flag;
use crate::store::{EmailJob, EmailKind, MailboxRecord, MessageRecord};

/// Asterisk's `emaildateformat` default.
pub const DEFAULT_DATE_FORMAT: &str = "%A, %B %d, %Y at %r";

/// The template settings in effect for one mailbox (context overrides applied over `[email]`).
/// Empty templates mean Asterisk's built-in text.
#[derive(Debug, Clone, Default)]
pub struct MailSettings {
    /// From address (`serveremail`); without '@' the host name is added.
    pub serveremail: String,
    /// From display name of emails (`fromstring`), a template.
    pub fromstring: String,
    /// Email subject template (`emailsubject`).
    pub emailsubject: String,
    /// Email body template (`emailbody`).
    pub emailbody: String,
    /// Pager subject template (`pagersubject`).
    pub pagersubject: String,
    /// Pager body template (`pagerbody`).
    pub pagerbody: String,
    /// strftime format of `${VM_DATE}` in emails, and of `${ORIG_VM_DATE}` (`emaildateformat`).
    pub emaildateformat: String,
    /// From display name of pager notices (`pagerfromstring`), a template.
    pub pagerfromstring: String,
    /// strftime format of `${VM_DATE}` in pager notices (`pagerdateformat`).
    pub pagerdateformat: String,
}

/// An audio attachment.
#[derive(Debug, Clone)]
pub struct AudioAttachment {
    /// `msg0000.wav`: Asterisk names it by the zero-based msgnum.
    pub filename: String,
    /// MIME type of the part (`audio/x-wav`, `audio/ogg`…).
    pub content_type: String,
    /// The encoded audio.
    pub bytes: Vec<u8>,
}

/// Why a mail could not be built (permanent: retrying cannot help).
#[derive(Debug, thiserror::Error)]
pub enum ComposeError {
    /// A recipient or the sender address is not an email address.
    #[error("invalid address {0:?}: {1}")]
    Address(String, String),
    /// The mailbox has no usable recipient.
    #[error("no recipient address")]
    NoRecipient,
    /// lettre refused the message.
    #[error("cannot build the message: {0}")]
    Build(String),
}

/// Everything a mail is made of.
pub struct Compose<'a> {
    /// The notification being sent.
    pub job: &'a EmailJob,
    /// The mailbox that received the message.
    pub mailbox: &'a MailboxRecord,
    /// The message (for a forward: the recipient's copy).
    pub message: &'a MessageRecord,
    /// Templates and formats in effect for the mailbox's context.
    pub settings: &'a MailSettings,
    /// The recording to attach (email kind only).
    pub attachment: Option<AudioAttachment>,
    /// A line added to the body (e.g. why the recording is not attached).
    pub note: Option<String>,
    /// This host's name, for a `serveremail` without a domain.
    pub hostname: &'a str,
    /// The send time (the `Date` header).
    pub now: DateTime<Utc>,
}

/// `strftime` in the mailbox's time zone, falling back to Asterisk's default format when the
/// configured one is not valid.
pub fn format_date(secs: i64, tz: &str, fmt: &str) -> String {
    let fmt = if date_format_is_valid(fmt) {
        fmt
    } else {
        DEFAULT_DATE_FORMAT
    };
    let utc = Utc.timestamp_opt(secs, 0).single().unwrap_or_default();
    match tz.parse::<chrono_tz::Tz>() {
        Ok(zone) => utc.with_timezone(&zone).format(fmt).to_string(),
        Err(_) => utc.format(fmt).to_string(),
    }
}

/// Whether chrono can format with `fmt` (an invalid format would fail at display time).
pub fn date_format_is_valid(fmt: &str) -> bool {
    !fmt.is_empty()
        && chrono::format::StrftimeItems::new(fmt)
            .all(|i| !matches!(i, chrono::format::Item::Error))
}

/// RFC 5322 date in the mailbox's time zone.
fn rfc2822(now: DateTime<Utc>, tz: &str) -> String {
    match tz.parse::<chrono_tz::Tz>() {
        Ok(zone) => now.with_timezone(&zone).to_rfc2822(),
        Err(_) => now.to_rfc2822(),
    }
}

/// The caller facts a mail shows: the caller, or on a forwarded copy the forwarding mailbox.
struct Caller {
    num: String,
    name: String,
}

fn caller(c: &Compose<'_>) -> Caller {
    match &c.job.forwarded_by {
        Some((num, name)) => Caller {
            num: num.clone(),
            name: name.clone(),
        },
        None => Caller {
            num: c.message.caller_id_num.clone(),
            name: c.message.caller_id_name.clone(),
        },
    }
}

/// Asterisk's template variables for this mail. As in app_voicemail.c, `ORIG_VM_*` come from
/// the message itself (its caller and the time it was left) and are set on every mail; on a
/// forwarded copy `VM_CALLERID`/`VM_CIDNUM`/`VM_CIDNAME` name the forwarding mailbox and
/// `VM_DATE` is the time of the forward, so the two sets differ there.
pub fn variables(c: &Compose<'_>) -> Vars {
    const UNKNOWN: &str = "an unknown caller";
    let who = caller(c);
    let fmt = match c.job.kind {
        EmailKind::Email => &c.settings.emaildateformat,
        EmailKind::Pager => &c.settings.pagerdateformat,
    };
    // A deposit's mail shows when the call came (the send may be hours later after retries); a
    // forward's shows when it was forwarded, as Asterisk's does.
    let when = if c.job.forwarded_by.is_some() {
        c.job.created_at
    } else {
        c.message.origtime
    };
    let mut v = Vars::new();
    v.insert("VM_NAME", c.mailbox.fullname.clone());
    v.insert("VM_DUR", template::duration(c.message.duration_secs()));
    v.insert("VM_MSGNUM", (c.job.msgnum + 1).to_string());
    v.insert("VM_CONTEXT", c.mailbox.address.context.clone());
    v.insert("VM_MAILBOX", c.mailbox.address.mailbox.clone());
    let merged = template::merge_callerid(&who.name, &who.num);
    v.insert(
        "VM_CALLERID",
        if merged.is_empty() {
            UNKNOWN.into()
        } else {
            merged
        },
    );
    v.insert("VM_CIDNUM", or(&who.num, UNKNOWN));
    v.insert("VM_CIDNAME", or(&who.name, UNKNOWN));
    v.insert("VM_DATE", format_date(when, &c.mailbox.tz, fmt));
    v.insert("VM_CATEGORY", or(&c.message.category, "no category"));
    v.insert("VM_FLAG", c.message.flag.as_str().to_owned());
    let m = c.message;
    let (name, num) = if m.caller_id_num.is_empty() && m.caller_id_name.is_empty() {
        template::split_callerid(&m.callerid)
    } else {
        (m.caller_id_name.clone(), m.caller_id_num.clone())
    };
    let orig_callerid = if m.callerid.is_empty() {
        template::merge_callerid(&name, &num)
    } else {
        m.callerid.clone()
    };
    v.insert("ORIG_VM_CALLERID", orig_callerid);
    v.insert("ORIG_VM_CIDNUM", num);
    v.insert("ORIG_VM_CIDNAME", name);
    v.insert(
        "ORIG_VM_DATE",
        format_date(m.origtime, &c.mailbox.tz, &c.settings.emaildateformat),
    );
    v
}

fn or(s: &str, default: &str) -> String {
    if s.is_empty() {
        default.to_owned()
    } else {
        s.to_owned()
    }
}

/// The subject: the template, or Asterisk's built-in one.
pub fn subject(c: &Compose<'_>, vars: &Vars) -> String {
    let flag = c.message.flag;
    let (tpl, kind) = match c.job.kind {
        EmailKind::Email => (&c.settings.emailsubject, EmailKind::Email),
        EmailKind::Pager => (&c.settings.pagersubject, EmailKind::Pager),
    };
    if !tpl.is_empty() {
        return template::render(tpl, vars);
    }
    let n = c.job.msgnum + 1;
    let mbox = &c.mailbox.address.mailbox;
    match (kind, flag) {
        (EmailKind::Email, Flag::None) => format!("[PBX]: New message {n} in mailbox {mbox}"),
        (EmailKind::Email, f) => {
            format!("[PBX]: New {} message {n} in mailbox {mbox}", f.as_str())
        }
        (EmailKind::Pager, Flag::None) => "New VM".into(),
        (EmailKind::Pager, f) => format!("New {} VM", f.as_str()),
    }
}

/// The body: the template, or Asterisk's built-in one (plain, forwarded, or pager).
pub fn body(c: &Compose<'_>, vars: &Vars) -> String {
    let tpl = match c.job.kind {
        EmailKind::Email => &c.settings.emailbody,
        EmailKind::Pager => &c.settings.pagerbody,
    };
    if !tpl.is_empty() {
        return template::render(tpl, vars);
    }
    let who = caller(c);
    let get = |k: &str| vars.get(k).cloned().unwrap_or_default();
    let name = &c.mailbox.fullname;
    let dur = get("VM_DUR");
    let n = c.job.msgnum + 1;
    let mbox = &c.mailbox.address.mailbox;
    let date = get("VM_DATE");
    let from = |unknown: &str| {
        if !who.name.is_empty() {
            who.name.clone()
        } else if !who.num.is_empty() {
            who.num.clone()
        } else {
            unknown.to_owned()
        }
    };
    match (c.job.kind, c.job.forwarded_by.is_some()) {
        (EmailKind::Pager, _) => format!(
            "New {dur} long {} msg in box {mbox}\nfrom {}, on {date}",
            c.message.flag.as_str(),
            from("unknown")
        ),
        (EmailKind::Email, false) => format!(
            "Dear {name}:\n\n\tJust wanted to let you know you were just left a {dur} long message \
             (number {n})\nin mailbox {mbox} from {}, on {date} so you might\nwant to check it \
             when you get a chance.  Thanks!\n\n\t\t\t\t--Asterisk\n\n",
            from("an unknown caller")
        ),
        (EmailKind::Email, true) => format!(
            "Dear {name}:\n\n\tJust wanted to let you know you were just forwarded a {dur} long \
             message (number {n})\nin mailbox {mbox} from {}, on {date}\n(originally sent by {} \
             on {})\nso you might want to check it when you get a chance.  Thanks!\n\n\t\t\t\t\
             --Asterisk\n\n",
            from("an unknown caller"),
            get("ORIG_VM_CALLERID"),
            get("ORIG_VM_DATE"),
        ),
    }
}

/// The addresses of a mailbox's `email`/`pager` field: Asterisk separates them with `|`; `,`
/// works too.
pub fn recipients(field: &str) -> Vec<String> {
    field
        .split(['|', ','])
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// `Content-Description` of the attachment part (Asterisk writes it).
#[derive(Clone)]
struct ContentDescription(String);

impl Header for ContentDescription {
    fn name() -> HeaderName {
        HeaderName::new_from_ascii_str("Content-Description")
    }

    fn parse(s: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        Ok(Self(s.to_owned()))
    }

    fn display(&self) -> HeaderValue {
        HeaderValue::new(Self::name(), self.0.clone())
    }
}

fn raw(name: &'static str, value: impl Into<String>) -> HeaderValue {
    HeaderValue::new(HeaderName::new_from_ascii_str(name), value.into())
}

/// Builds the mail.
pub fn build(c: Compose<'_>) -> Result<Message, ComposeError> {
    let vars = variables(&c);
    let who = if c.settings.serveremail.contains('@') {
        c.settings.serveremail.clone()
    } else {
        format!("{}@{}", c.settings.serveremail, c.hostname)
    };
    let from_addr = who.parse().map_err(|e: lettre::address::AddressError| {
        ComposeError::Address(who.clone(), e.to_string())
    })?;
    // A pager notice takes its own `pagerfromstring`, never `fromstring` (app_voicemail.c).
    let fromstring = match c.job.kind {
        EmailKind::Email => &c.settings.fromstring,
        EmailKind::Pager => &c.settings.pagerfromstring,
    };
    let from_name = if fromstring.is_empty() {
        "Asterisk PBX".to_owned()
    } else {
        template::render(fromstring, &vars)
    };
    let mut builder = Message::builder()
        .from(Mailbox::new(Some(from_name.clone()), from_addr))
        .subject(subject(&c, &vars))
        .date(c.now.into());
    let to = recipients(&c.job.recipients);
    if to.is_empty() {
        return Err(ComposeError::NoRecipient);
    }
    for addr in &to {
        let parsed = addr.parse().map_err(|e: lettre::address::AddressError| {
            ComposeError::Address(addr.clone(), e.to_string())
        })?;
        let name = (!c.mailbox.fullname.is_empty()).then(|| c.mailbox.fullname.clone());
        builder = builder.to(Mailbox::new(name, parsed));
    }
    let domain = who.rsplit('@').next().unwrap_or("localhost");
    builder = builder.message_id(Some(format!(
        "<Asterisk-{}-{}-{}-voxmail@{domain}>",
        c.job.msgnum + 1,
        c.job.id,
        c.mailbox.address.mailbox
    )));
    let m = c.message;
    let orig_date = vars.get("ORIG_VM_DATE").cloned().unwrap_or_default();
    let headers = [
        ("X-Asterisk-VM-Message-Num", (c.job.msgnum + 1).to_string()),
        ("X-Asterisk-VM-Server-Name", from_name),
        ("X-Asterisk-VM-Context", c.mailbox.address.context.clone()),
        ("X-Asterisk-VM-Extension", c.mailbox.address.mailbox.clone()),
        ("X-Asterisk-VM-Flag", m.flag.as_str().to_owned()),
        ("X-Asterisk-VM-Priority", m.priority.to_string()),
        ("X-Asterisk-VM-Caller-ID-Num", m.caller_id_num.clone()),
        ("X-Asterisk-VM-Caller-ID-Name", m.caller_id_name.clone()),
        ("X-Asterisk-VM-Duration", m.duration_secs().to_string()),
        ("X-Asterisk-VM-Category", m.category.clone()),
        ("X-Asterisk-VM-Message-Type", "Message".to_owned()),
        ("X-Asterisk-VM-Orig-date", orig_date),
        ("X-Asterisk-VM-Orig-time", m.origtime.to_string()),
        ("X-Asterisk-VM-Message-ID", m.msg_id.clone()),
    ];
    for (name, value) in headers {
        builder = builder.raw_header(raw(name, value));
    }
    if !m.caller_id_num.is_empty() {
        builder = builder.raw_header(raw("X-Asterisk-CallerID", m.caller_id_num.clone()));
    }
    if !m.caller_id_name.is_empty() {
        builder = builder.raw_header(raw("X-Asterisk-CallerIDName", m.caller_id_name.clone()));
    }
    let mut text = body(&c, &vars);
    if let Some(note) = &c.note {
        if !text.ends_with('\n') {
            text.push('\n');
        }
        text.push_str(note);
        text.push('\n');
    }
    let date_header = rfc2822(c.now, &c.mailbox.tz);
    let text_part = SinglePart::plain(text);
    let mut msg = match c.attachment {
        Some(a) => {
            let ct = ContentType::parse(&format!("{}; name=\"{}\"", a.content_type, a.filename))
                .map_err(|e| ComposeError::Build(e.to_string()))?;
            let audio = SinglePart::builder()
                .header(ct)
                .header(ContentTransferEncoding::Base64)
                .header(ContentDescription("Voicemail sound attachment.".into()))
                .header(ContentDisposition::attachment(&a.filename))
                .body(a.bytes);
            builder.multipart(MultiPart::mixed().singlepart(text_part).singlepart(audio))
        }
        None => builder.singlepart(text_part),
    }
    .map_err(|e| ComposeError::Build(e.to_string()))?;
    // The Date header in the mailbox's zone, as Asterisk writes it (lettre's builder uses UTC).
    msg.headers_mut().insert_raw(raw("Date", date_header));
    Ok(msg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recipients_split_on_pipes_and_commas() {
        assert_eq!(
            recipients("a@x.org| b@y.org ,c@z.org,"),
            ["a@x.org", "b@y.org", "c@z.org"]
        );
    }

    #[test]
    fn dates_use_the_mailbox_zone_and_asterisks_format() {
        // 2024-03-01 15:04:05 UTC
        let t = 1_709_305_445;
        assert_eq!(
            format_date(t, "UTC", DEFAULT_DATE_FORMAT),
            "Friday, March 01, 2024 at 03:04:05 PM"
        );
        assert_eq!(
            format_date(t, "America/New_York", DEFAULT_DATE_FORMAT),
            "Friday, March 01, 2024 at 10:04:05 AM"
        );
        assert_eq!(
            format_date(t, "", "%Q broken"),
            "Friday, March 01, 2024 at 03:04:05 PM"
        );
        assert!(!date_format_is_valid("%Q"));
    }
}
