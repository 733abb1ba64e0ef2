//! Voicemail messages in Asterisk's `IMAP_STORAGE` format: composing one byte for byte as
//! `app_voicemail` writes it (`make_email_file` with `imap = 1`, then `add_email_attachment`), and
//! parsing one back — whoever wrote it (Asterisk, voxmail, or a server such as Exchange that
//! lower-cases header names).
//!
//! The layout, in order: `Date`, `From`, `To`, `Subject`, `Message-ID`, the `X-Asterisk-VM-*`
//! headers, `X-Asterisk-CallerID`/`X-Asterisk-CallerIDName` (only when known), `MIME-Version`, a
//! `multipart/mixed` body whose first part is the text/plain e-mail body and whose second part is
//! the recording, base64 in 72-column lines, named `msg%04d.<fmt>` (zero-based message number),
//! with `Content-Type: audio/x-<fmt>` (`application/ogg` for ogg). Asterisk names the `wav49`
//! format `WAV` (GSM 06.10 in a WAV container, `msg0000.WAV`). Lines end in CRLF.

use std::fmt::Write as _;

use base64::Engine as _;
use chrono::{DateTime, TimeZone as _, Utc};
use chrono_tz::Tz;

/// Asterisk's default `emaildateformat` (the `VM_DATE` variable and `X-Asterisk-VM-Orig-date`).
pub const DEFAULT_EMAIL_DATE_FORMAT: &str = "%A, %B %d, %Y at %r";
/// Asterisk's default `charset` of the text part and of MIME-encoded header words.
pub const DEFAULT_CHARSET: &str = "ISO-8859-1";
/// The `X-Asterisk-VM-Message-Type` of a message (greetings carry their name instead).
pub const MESSAGE_TYPE: &str = "Message";
/// The `X-Asterisk-VM-Flag` of an urgent message.
pub const FLAG_URGENT: &str = "Urgent";
/// The prefix shared by the headers that mark a message as a voicemail.
pub const VM_HEADER_PREFIX: &str = "X-Asterisk-VM-";

/// The header carrying voxmail's message id on messages voxmail appends (Asterisk ignores it),
/// so the REST API's message ids survive moves and are the same on every node.
pub const VOXMAIL_ID_HEADER: &str = "X-Voxmail-Message-Id";
/// The header carrying a deposit's Idempotency-Key, so a retried deposit finds the message an
/// earlier try appended (also when the APPEND's answer was lost).
pub const VOXMAIL_IDEMPOTENCY_HEADER: &str = "X-Voxmail-Idempotency-Key";

/// Inserts extra header lines into a composed message, just before `MIME-Version` (after the
/// `X-Asterisk-VM-*` block), leaving every other byte as Asterisk writes it. Values must be
/// visible ASCII (callers validate them); a message without `MIME-Version` gets them first.
pub fn with_headers(raw: Vec<u8>, headers: &[(&str, &str)]) -> Vec<u8> {
    if headers.is_empty() {
        return raw;
    }
    let mut block = Vec::new();
    for (name, value) in headers {
        block.extend_from_slice(name.as_bytes());
        block.extend_from_slice(b": ");
        block.extend_from_slice(value.as_bytes());
        block.extend_from_slice(ENDL.as_bytes());
    }
    let end = find_header_end(&raw);
    let needle = b"\r\nMIME-Version:";
    let at = raw[..end.min(raw.len())]
        .windows(needle.len())
        .position(|w| w == needle)
        .map_or(0, |p| p + 2);
    let mut out = Vec::with_capacity(raw.len() + block.len());
    out.extend_from_slice(&raw[..at]);
    out.extend_from_slice(&block);
    out.extend_from_slice(&raw[at..]);
    out
}

/// Asterisk's line end for IMAP storage.
const ENDL: &str = "\r\n";
/// Asterisk's base64 line length (`BASELINELEN` in main/utils.c).
const BASE64_LINE: usize = 72;

/// What Asterisk records about a voicemail in its `X-Asterisk-VM-*` headers.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct VoicemailMeta {
    /// Zero-based message number: the attachment is `msg%04d` of it, and the
    /// `X-Asterisk-VM-Message-Num` header carries it plus one.
    pub msgnum: u32,
    /// `X-Asterisk-VM-Server-Name`: Asterisk writes its global `fromstring` here (often empty).
    pub server_name: String,
    /// `X-Asterisk-VM-Context`: the voicemail context of the mailbox.
    pub context: String,
    /// `X-Asterisk-VM-Extension`: the mailbox number (or Asterisk's `imapvmshareid`).
    pub mailbox: String,
    /// `X-Asterisk-VM-Flag`: `""`, `Urgent` or `PRIORITY`.
    pub flag: String,
    /// `X-Asterisk-VM-Priority`: the dialplan priority of the depositing channel (0 without one).
    pub priority: i64,
    /// `X-Asterisk-VM-Caller-ID-Num`.
    pub caller_id_num: String,
    /// `X-Asterisk-VM-Caller-ID-Name`.
    pub caller_id_name: String,
    /// `X-Asterisk-VM-Duration`: whole seconds.
    pub duration_secs: u32,
    /// `X-Asterisk-VM-Category`.
    pub category: String,
    /// `X-Asterisk-VM-Message-Type`: `Message`, or a greeting name (`unavail`, `busy`, …).
    pub message_type: String,
    /// `X-Asterisk-VM-Orig-time`: Unix time of the deposit (also the `Date` header).
    pub orig_time: i64,
    /// `X-Asterisk-VM-Message-ID`: the message id (`%ld-%08x` in Asterisk).
    pub msg_id: String,
}

impl VoicemailMeta {
    /// Whether the message is urgent (`X-Asterisk-VM-Flag: Urgent`, any case).
    pub fn is_urgent(&self) -> bool {
        self.flag.eq_ignore_ascii_case(FLAG_URGENT)
    }
}

/// The e-mail side of a composed message: what Asterisk takes from `voicemail.conf`.
#[derive(Debug, Clone)]
pub struct Envelope {
    /// `fromstring`: the display name of `From`; empty means Asterisk's `Asterisk PBX`.
    pub from_string: String,
    /// `serveremail`: the `From` address; without `@` it gets `@<hostname>` (default `asterisk`).
    pub server_email: String,
    /// The host name Asterisk puts in `Message-ID` and after a bare `serveremail`.
    pub hostname: String,
    /// The mailbox owner's full name (`To` display name).
    pub to_name: String,
    /// The mailbox's e-mail address(es), `|`-separated as in `voicemail.conf`. Asterisk uses the
    /// IMAP user when the mailbox has no e-mail address.
    pub to_email: String,
    /// A rendered `emailsubject`; `None` gives Asterisk's default `[PBX]: New [<flag> ]message N in
    /// mailbox M`.
    pub subject: Option<String>,
    /// A rendered `emailbody`; `None` gives Asterisk's default "Dear …" text.
    pub body: Option<String>,
    /// `charset` of the text part and of encoded header words (default `ISO-8859-1`). Text that
    /// this charset cannot carry is written as UTF-8 and labelled so.
    pub charset: String,
    /// The mailbox's time zone (`tz`), for `Date` and the formatted date.
    pub tz: Tz,
    /// `emaildateformat` (strftime), default [`DEFAULT_EMAIL_DATE_FORMAT`].
    pub date_format: String,
    /// Asterisk puts its process id in `Message-ID` and in the MIME boundary.
    pub pid: u32,
    /// The random number of `Message-ID` and of the MIME boundary.
    pub nonce: u32,
}

impl Default for Envelope {
    fn default() -> Self {
        Self {
            from_string: String::new(),
            server_email: "asterisk".into(),
            hostname: "localhost".into(),
            to_name: String::new(),
            to_email: String::new(),
            subject: None,
            body: None,
            charset: DEFAULT_CHARSET.into(),
            tz: Tz::UTC,
            date_format: DEFAULT_EMAIL_DATE_FORMAT.into(),
            pid: std::process::id(),
            nonce: rand::random(),
        }
    }
}

/// The recording to attach.
#[derive(Debug, Clone, Copy)]
pub struct AudioAttachment<'a> {
    /// Asterisk's format name (`attachfmt`): `wav`, `wav49`, `gsm`, `ulaw`, `ogg`, …
    pub format: &'a str,
    /// The file's bytes, exactly as attached.
    pub data: &'a [u8],
}

/// The extension Asterisk gives an attachment of `format` (`wav49` → `WAV`).
pub fn attachment_extension(format: &str) -> &str {
    if format.eq_ignore_ascii_case("wav49") {
        "WAV"
    } else {
        format
    }
}

/// The attachment's name as Asterisk writes it: `msg%04d.<ext>`.
pub fn attachment_name(msgnum: u32, format: &str) -> String {
    format!("msg{msgnum:04}.{}", attachment_extension(format))
}

/// The attachment's media type as Asterisk writes it: `application/ogg` for ogg,
/// `audio/x-<ext>` otherwise.
pub fn attachment_content_type(format: &str) -> String {
    let ext = attachment_extension(format);
    if ext.eq_ignore_ascii_case("ogg") {
        format!("application/{ext}")
    } else {
        format!("audio/x-{ext}")
    }
}

/// The `X-Asterisk-VM-Message-Type` values of greetings (Asterisk's greeting file names), which
/// `imapgreetings = yes` stores as messages beside, or apart from, the voicemail.
pub const GREETING_TYPES: [&str; 4] = ["unavail", "busy", "temp", "greet"];

/// Whether a message is a greeting (`X-Asterisk-VM-Message-Type` names one), not a voicemail.
pub fn is_greeting(meta: &VoicemailMeta) -> bool {
    GREETING_TYPES
        .iter()
        .any(|g| meta.message_type.eq_ignore_ascii_case(g))
}

/// Composes a voicemail as Asterisk's `IMAP_STORAGE` appends it (see the module docs), ready for
/// `APPEND`. Caller-ID values lose control and non-ASCII characters, as in Asterisk.
pub fn compose(meta: &VoicemailMeta, env: &Envelope, audio: &AudioAttachment<'_>) -> Vec<u8> {
    compose_any(meta, env, audio, None)
}

/// Composes a greeting as Asterisk's `IMAP_STORAGE` stores it with `imapgreetings = yes`
/// (`imap_store_file` with msgnum -1): message number 0, `X-Asterisk-VM-Message-Type: <name>`,
/// the subject `New greeting '<name>' on <date>.`, Asterisk's "do not delete" text, and the
/// recording attached as `<name>.<ext>` (`unavail.WAV` for wav49). `name` is one of
/// [`GREETING_TYPES`]; `meta.msgnum` and `meta.message_type` are ignored.
pub fn compose_greeting(
    name: &str,
    meta: &VoicemailMeta,
    env: &Envelope,
    audio: &AudioAttachment<'_>,
) -> Vec<u8> {
    compose_any(meta, env, audio, Some(name))
}

fn compose_any(
    meta: &VoicemailMeta,
    env: &Envelope,
    audio: &AudioAttachment<'_>,
    greeting: Option<&str>,
) -> Vec<u8> {
    let mut out = String::with_capacity(audio.data.len() * 4 / 3 + 4096);
    let cidnum = strip_control_and_high(&meta.caller_id_num);
    let cidname = strip_control_and_high(&meta.caller_id_name);
    // A greeting is Asterisk's message -1.
    let number = if greeting.is_some() {
        0
    } else {
        meta.msgnum + 1
    };
    let when: DateTime<Tz> = Utc
        .timestamp_opt(meta.orig_time, 0)
        .single()
        .unwrap_or_default()
        .with_timezone(&env.tz);
    let duration = format!("{}:{:02}", meta.duration_secs / 60, meta.duration_secs % 60);
    let who = if env.server_email.contains('@') {
        env.server_email.clone()
    } else {
        format!("{}@{}", env.server_email, env.hostname)
    };
    let (charset, _) = text_bytes("", &env.charset);

    let _ = write!(
        out,
        "Date: {}{ENDL}",
        when.format("%a, %d %b %Y %H:%M:%S %z")
    );
    let date = strftime(&when, &env.date_format);

    // From
    if env.from_string.is_empty() {
        let _ = write!(out, "From: Asterisk PBX <{who}>{ENDL}");
    } else if check_mime(&env.from_string) {
        let enc = encode_mime(&env.from_string, charset, "From: ".len(), who.len() + 3);
        write_sections(&mut out, Some("From:"), &enc, &format!(" <{who}>"));
    } else {
        let _ = write!(out, "From: {} <{who}>{ENDL}", quote(&env.from_string));
    }

    // To
    out.push_str("To:");
    let emails: Vec<&str> = env.to_email.split('|').collect();
    for (i, email) in emails.iter().enumerate() {
        let comma = if i + 1 < emails.len() { "," } else { "" };
        if check_mime(&env.to_name) {
            let pre = if i == 0 { "To: ".len() } else { 0 };
            let enc = encode_mime(&env.to_name, charset, pre, email.len() + 3 + comma.len());
            write_sections(&mut out, None, &enc, &format!(" <{email}>{comma}"));
        } else {
            let _ = write!(out, " {} <{email}>{comma}{ENDL}", quote(&env.to_name));
        }
    }

    // Subject
    match &env.subject {
        _ if greeting.is_some() => {
            let _ = write!(
                out,
                "Subject: New greeting '{}' on {date}.{ENDL}",
                greeting.unwrap_or_default()
            );
        }
        Some(s) if check_mime(s) => {
            let enc = encode_mime(s, charset, "Subject: ".len(), 0);
            write_sections(&mut out, Some("Subject:"), &enc, "");
        }
        Some(s) => {
            let _ = write!(out, "Subject: {s}{ENDL}");
        }
        None if meta.flag.is_empty() => {
            let _ = write!(
                out,
                "Subject: [PBX]: New message {number} in mailbox {}{ENDL}",
                meta.mailbox
            );
        }
        None => {
            let _ = write!(
                out,
                "Subject: [PBX]: New {} message {number} in mailbox {}{ENDL}",
                meta.flag, meta.mailbox
            );
        }
    }

    let _ = write!(
        out,
        "Message-ID: <Asterisk-{number}-{}-{}-{}@{}>{ENDL}",
        env.nonce, meta.mailbox, env.pid, env.hostname
    );
    let _ = write!(out, "X-Asterisk-VM-Message-Num: {number}{ENDL}");
    let _ = write!(out, "X-Asterisk-VM-Server-Name: {}{ENDL}", meta.server_name);
    let _ = write!(out, "X-Asterisk-VM-Context: {}{ENDL}", meta.context);
    let _ = write!(out, "X-Asterisk-VM-Extension: {}{ENDL}", meta.mailbox);
    let _ = write!(out, "X-Asterisk-VM-Flag: {}{ENDL}", meta.flag);
    let _ = write!(out, "X-Asterisk-VM-Priority: {}{ENDL}", meta.priority);
    let _ = write!(out, "X-Asterisk-VM-Caller-ID-Num: {cidnum}{ENDL}");
    let _ = write!(out, "X-Asterisk-VM-Caller-ID-Name: {cidname}{ENDL}");
    let _ = write!(out, "X-Asterisk-VM-Duration: {}{ENDL}", meta.duration_secs);
    let _ = write!(out, "X-Asterisk-VM-Category: {}{ENDL}", meta.category);
    let message_type = match greeting {
        Some(g) => g,
        None if meta.message_type.is_empty() => MESSAGE_TYPE,
        None => &meta.message_type,
    };
    let _ = write!(out, "X-Asterisk-VM-Message-Type: {message_type}{ENDL}");
    let _ = write!(out, "X-Asterisk-VM-Orig-date: {date}{ENDL}");
    let _ = write!(out, "X-Asterisk-VM-Orig-time: {}{ENDL}", meta.orig_time);
    let _ = write!(out, "X-Asterisk-VM-Message-ID: {}{ENDL}", meta.msg_id);
    if !cidnum.is_empty() {
        let _ = write!(out, "X-Asterisk-CallerID: {cidnum}{ENDL}");
    }
    if !cidname.is_empty() {
        let _ = write!(out, "X-Asterisk-CallerIDName: {cidname}{ENDL}");
    }
    out.push_str("MIME-Version: 1.0\r\n");
    let bound = format!(
        "----voicemail_{number}{}{}{}",
        meta.mailbox, env.pid, env.nonce
    );
    let _ = write!(
        out,
        "Content-Type: multipart/mixed; boundary=\"{bound}\"{ENDL}{ENDL}{ENDL}\
         This is a multi-part message in MIME format.{ENDL}{ENDL}--{bound}{ENDL}"
    );

    // The text part.
    let body = match &env.body {
        _ if greeting.is_some() => format!(
            "This message is to let you know that your greeting '{}' was changed on {date}.\
             {ENDL}Please do not delete this message, lest your greeting vanish with it.{ENDL}{ENDL}",
            greeting.unwrap_or_default()
        ),
        // Asterisk (IMAP build) writes a custom body line by line with CRLF.
        Some(b) => {
            // Asterisk (IMAP build) writes a custom body line by line with CRLF, up to a final
            // newline.
            let b = b.strip_suffix('\n').unwrap_or(b);
            b.split('\n')
                .map(|line| format!("{}{ENDL}", line.strip_suffix('\r').unwrap_or(line)))
                .collect()
        }
        None => {
            let from = if !meta.caller_id_name.is_empty() {
                meta.caller_id_name.as_str()
            } else if !meta.caller_id_num.is_empty() {
                meta.caller_id_num.as_str()
            } else {
                "an unknown caller"
            };
            format!(
                "Dear {}:{ENDL}{ENDL}\tJust wanted to let you know you were just left a \
                 {duration} long message (number {number}){ENDL}in mailbox {} from {from}, on \
                 {date} so you might{ENDL}want to check it when you get a chance.  Thanks!\
                 {ENDL}{ENDL}\t\t\t\t--Asterisk{ENDL}{ENDL}",
                env.to_name, meta.mailbox
            )
        }
    };
    let (body_charset, body_bytes) = text_bytes(&body, &env.charset);
    let _ = write!(
        out,
        "Content-Type: text/plain; charset={body_charset}{ENDL}Content-Transfer-Encoding: 8bit{ENDL}{ENDL}"
    );
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(&body_bytes);

    // The recording.
    let name = match greeting {
        Some(g) => format!("{g}.{}", attachment_extension(audio.format)),
        None => attachment_name(meta.msgnum, audio.format),
    };
    let mut out = String::new();
    let _ = write!(
        out,
        "--{bound}{ENDL}Content-Type: {}; name=\"{name}\"{ENDL}\
         Content-Transfer-Encoding: base64{ENDL}\
         Content-Description: Voicemail sound attachment.{ENDL}\
         Content-Disposition: attachment; filename=\"{name}\"{ENDL}{ENDL}",
        attachment_content_type(audio.format)
    );
    let b64 = base64::engine::general_purpose::STANDARD.encode(audio.data);
    for (i, chunk) in b64.as_bytes().chunks(BASE64_LINE).enumerate() {
        if i > 0 {
            out.push_str(ENDL);
        }
        out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
    }
    let _ = write!(out, "{ENDL}{ENDL}{ENDL}--{bound}--{ENDL}.{ENDL}");
    bytes.extend_from_slice(out.as_bytes());
    bytes
}

/// Formats with a strftime pattern; an invalid pattern gives the RFC 2822 date rather than a panic.
fn strftime(when: &DateTime<Tz>, pattern: &str) -> String {
    let mut s = String::new();
    if write!(s, "{}", when.format(pattern)).is_err() {
        s.clear();
        s.push_str(&when.to_rfc2822());
    }
    s
}

/// Asterisk's `strip_control_and_high`: drops control characters and non-ASCII.
fn strip_control_and_high(s: &str) -> String {
    s.chars().filter(|c| (' '..='\x7f').contains(c)).collect()
}

/// Asterisk's `check_mime`: whether a display name must be MIME-encoded.
fn check_mime(s: &str) -> bool {
    s.chars()
        .any(|c| !(' '..='~').contains(&c) || "()<>@,:;/\"[]?.=".contains(c))
}

/// Asterisk's `ast_str_quote`: a quoted string with `"` and `\` escaped.
fn quote(s: &str) -> String {
    let mut q = String::with_capacity(s.len() + 2);
    q.push('"');
    for c in s.chars() {
        if c == '"' || c == '\\' {
            q.push('\\');
        }
        q.push(c);
    }
    q.push('"');
    q
}

/// The text in `charset` when it can carry it (ISO-8859-1 or an ASCII superset for ASCII text),
/// else UTF-8; returns the charset actually used and the bytes.
fn text_bytes<'a>(text: &str, charset: &'a str) -> (&'a str, Vec<u8>) {
    if text.is_ascii() {
        return (charset, text.as_bytes().to_vec());
    }
    let latin1 =
        charset.eq_ignore_ascii_case("ISO-8859-1") || charset.eq_ignore_ascii_case("latin1");
    if latin1 && text.chars().all(|c| (c as u32) < 256) {
        return (charset, text.chars().map(|c| c as u32 as u8).collect());
    }
    ("UTF-8", text.as_bytes().to_vec())
}

/// Asterisk's `ast_str_encode_mime`: RFC 2047 Q-encoded words, split into sections (separated by a
/// space) so that each header line stays within 76 columns.
fn encode_mime(text: &str, charset: &str, preamble: usize, postamble: usize) -> String {
    let (charset, bytes) = text_bytes(text, charset);
    let mut end = String::new();
    let start = format!("=?{charset}?Q?");
    let mut tmp = start.clone();
    let mut first = true;
    for &b in &bytes {
        let need = !(33..=126).contains(&b) || b"()<>@,:;/\"[]?.=_".contains(&b);
        let limit = if need { 70 } else { 72 };
        let used = if first {
            preamble + tmp.len()
        } else {
            tmp.len()
        };
        if used > limit {
            let _ = write!(end, "{}{tmp}?=", if first { "" } else { " " });
            tmp.clone_from(&start);
            first = false;
        }
        if need && b == b' ' {
            tmp.push('_');
        } else if need {
            let _ = write!(tmp, "={b:X}");
        } else {
            tmp.push(b as char);
        }
    }
    let _ = write!(
        end,
        "{}{tmp}?={}",
        if first { "" } else { " " },
        if tmp.len() + postamble > 74 { " " } else { "" }
    );
    end
}

/// Writes MIME-encoded sections one per line as Asterisk does: the first after `label` (or
/// without one), the last followed by `tail`.
fn write_sections(out: &mut String, label: Option<&str>, encoded: &str, tail: &str) {
    let mut parts = encoded.split(' ').peekable();
    let mut first = true;
    while let Some(part) = parts.next() {
        let prefix = match label {
            Some(l) if first => l,
            _ => "",
        };
        if parts.peek().is_some() {
            let _ = write!(out, "{prefix} {part}{ENDL}");
        } else {
            let _ = write!(out, "{prefix} {part}{tail}{ENDL}");
        }
        first = false;
    }
}

/// A voicemail read back from a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedVoicemail {
    /// The `X-Asterisk-VM-*` values; absent headers leave defaults (empty, 0).
    pub meta: VoicemailMeta,
    /// `Subject`, decoded.
    pub subject: String,
    /// `Date` as Unix time, when present and valid.
    pub date: Option<i64>,
    /// The recording, when the message has one.
    pub audio: Option<ParsedAudio>,
}

/// The recording of a parsed voicemail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedAudio {
    /// The attachment's file name (`msg0000.wav`, `msg0000.WAV`, …).
    pub filename: String,
    /// The attachment's media type, lower-cased (`audio/x-wav`, `application/ogg`, …).
    pub content_type: String,
    /// Asterisk's format name from the extension: `wav49` for `.WAV`, else the extension
    /// lower-cased (`wav`, `gsm`, `ogg`, …).
    pub format: String,
    /// The decoded bytes.
    pub data: Vec<u8>,
}

/// Whether a header block (or a whole message) has an `X-Asterisk-VM-*` header, in any case.
pub fn is_voicemail_header_block(raw: &[u8]) -> bool {
    let prefix = VM_HEADER_PREFIX.as_bytes();
    raw.split(|&b| b == b'\n')
        .take_while(|line| !line.is_empty() && *line != b"\r")
        .any(|line| line.len() > prefix.len() && line[..prefix.len()].eq_ignore_ascii_case(prefix))
}

/// The value of header `name` in a header block, matched case-insensitively, unfolded and trimmed
/// (the first occurrence). For the raw `BODY.PEEK[HEADER.FIELDS (…)]` of a listing.
pub fn header_value(raw: &[u8], name: &str) -> Option<String> {
    let text = String::from_utf8_lossy(raw);
    let mut lines = text.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
    let mut found: Option<String> = None;
    for line in lines.by_ref() {
        if line.is_empty() {
            break;
        }
        if let Some(v) = found.as_mut() {
            if line.starts_with([' ', '\t']) {
                v.push(' ');
                v.push_str(line.trim());
                continue;
            }
            break;
        }
        if let Some((n, v)) = line.split_once(':')
            && n.trim_end().eq_ignore_ascii_case(name)
        {
            found = Some(v.trim().to_owned());
        }
    }
    found
}

/// The `X-Asterisk-VM-*` metadata of a header block (header names in any case); `None` when it
/// has none, i.e. ordinary mail.
pub fn parse_meta(headers: &[u8]) -> Option<VoicemailMeta> {
    if !is_voicemail_header_block(headers) {
        return None;
    }
    let get =
        |n: &str| header_value(headers, &format!("{VM_HEADER_PREFIX}{n}")).unwrap_or_default();
    let num = |n: &str| get(n).trim().parse::<i64>().ok();
    Some(VoicemailMeta {
        msgnum: num("Message-Num")
            .and_then(|n| u32::try_from(n - 1).ok())
            .unwrap_or(0),
        server_name: get("Server-Name"),
        context: get("Context"),
        mailbox: get("Extension"),
        flag: get("Flag"),
        priority: num("Priority").unwrap_or(0),
        caller_id_num: get("Caller-ID-Num"),
        caller_id_name: get("Caller-ID-Name"),
        duration_secs: num("Duration")
            .and_then(|n| u32::try_from(n).ok())
            .unwrap_or(0),
        category: get("Category"),
        message_type: get("Message-Type"),
        orig_time: num("Orig-time").unwrap_or(0),
        msg_id: get("Message-ID"),
    })
}

/// Parses a whole message: `None` for ordinary mail (no `X-Asterisk-VM-*` header) or a message
/// that is not MIME at all. The recording is the first attachment named `msg*`, else the first
/// `audio/*` or `application/ogg` part.
pub fn parse(raw: &[u8]) -> Option<ParsedVoicemail> {
    use mail_parser::{MessageParser, MimeHeaders as _};

    let header_end = find_header_end(raw);
    let meta = parse_meta(&raw[..header_end])?;
    let msg = MessageParser::default().parse(raw)?;
    let subject = msg.subject().unwrap_or_default().to_owned();
    let date = msg.date().map(|d| d.to_timestamp());
    let mut candidates = msg.attachments().filter_map(|part| {
        let ct = part.content_type()?;
        let content_type = match ct.subtype() {
            Some(sub) => format!("{}/{}", ct.ctype(), sub).to_ascii_lowercase(),
            None => ct.ctype().to_ascii_lowercase(),
        };
        let filename = part.attachment_name().unwrap_or_default().to_owned();
        let is_audio = content_type.starts_with("audio/") || content_type == "application/ogg";
        let named = filename.to_ascii_lowercase().starts_with("msg");
        (is_audio || named).then(|| (named, filename, content_type, part.contents().to_vec()))
    });
    let first = candidates.next();
    let chosen = match first {
        Some(c) if c.0 => Some(c),
        other => candidates.find(|c| c.0).or(other),
    };
    let audio = chosen.map(|(_, filename, content_type, data)| {
        let ext = filename
            .rsplit_once('.')
            .map(|(_, e)| e)
            .unwrap_or_default();
        let format = if ext == "WAV" {
            "wav49".to_owned()
        } else if ext.is_empty() {
            content_type
                .rsplit_once("/x-")
                .map(|(_, f)| f.to_ascii_lowercase())
                .unwrap_or_default()
        } else {
            ext.to_ascii_lowercase()
        };
        ParsedAudio {
            filename,
            content_type,
            format,
            data,
        }
    });
    Some(ParsedVoicemail {
        meta,
        subject,
        date,
        audio,
    })
}

/// The length of the header block (through the blank line, or the whole input).
fn find_header_end(raw: &[u8]) -> usize {
    let mut i = 0;
    while i < raw.len() {
        let line_end = raw[i..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(raw.len(), |p| i + p + 1);
        let line = &raw[i..line_end];
        if line == b"\n" || line == b"\r\n" {
            return line_end;
        }
        i = line_end;
    }
    raw.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta() -> VoicemailMeta {
        VoicemailMeta {
            msgnum: 0,
            server_name: String::new(),
            context: "default".into(),
            mailbox: "1234".into(),
            flag: String::new(),
            priority: 2,
            caller_id_num: "5551234".into(),
            caller_id_name: "Bob Smith".into(),
            duration_secs: 7,
            category: String::new(),
            message_type: MESSAGE_TYPE.into(),
            orig_time: 1_700_000_000,
            msg_id: "1700000000-00000001".into(),
        }
    }

    fn env() -> Envelope {
        Envelope {
            hostname: "pbx1".into(),
            to_name: "Alice Jones".into(),
            to_email: "alice@example.com".into(),
            pid: 4242,
            nonce: 1_804_289_383,
            ..Envelope::default()
        }
    }

    #[test]
    fn headers_are_in_asterisks_order_with_crlf() {
        let raw = compose(
            &meta(),
            &env(),
            &AudioAttachment {
                format: "wav",
                data: b"RIFFdata",
            },
        );
        let text = String::from_utf8(raw).unwrap();
        assert!(!text.replace("\r\n", "").contains('\n'), "bare LF");
        let names: Vec<&str> = text
            .split("\r\n")
            .take_while(|l| !l.is_empty())
            .filter_map(|l| l.split_once(':').map(|(n, _)| n))
            .collect();
        assert_eq!(
            names,
            [
                "Date",
                "From",
                "To",
                "Subject",
                "Message-ID",
                "X-Asterisk-VM-Message-Num",
                "X-Asterisk-VM-Server-Name",
                "X-Asterisk-VM-Context",
                "X-Asterisk-VM-Extension",
                "X-Asterisk-VM-Flag",
                "X-Asterisk-VM-Priority",
                "X-Asterisk-VM-Caller-ID-Num",
                "X-Asterisk-VM-Caller-ID-Name",
                "X-Asterisk-VM-Duration",
                "X-Asterisk-VM-Category",
                "X-Asterisk-VM-Message-Type",
                "X-Asterisk-VM-Orig-date",
                "X-Asterisk-VM-Orig-time",
                "X-Asterisk-VM-Message-ID",
                "X-Asterisk-CallerID",
                "X-Asterisk-CallerIDName",
                "MIME-Version",
                "Content-Type",
            ]
        );
        assert!(text.starts_with("Date: Tue, 14 Nov 2023 22:13:20 +0000\r\n"));
        assert!(text.contains("\r\nFrom: Asterisk PBX <asterisk@pbx1>\r\n"));
        assert!(text.contains("\r\nTo: \"Alice Jones\" <alice@example.com>\r\n"));
        assert!(text.contains("\r\nSubject: [PBX]: New message 1 in mailbox 1234\r\n"));
        assert!(text.contains("\r\nMessage-ID: <Asterisk-1-1804289383-1234-4242@pbx1>\r\n"));
        assert!(text.contains("\r\nX-Asterisk-VM-Flag: \r\n"));
        assert!(text.contains(
            "\r\nX-Asterisk-VM-Orig-date: Tuesday, November 14, 2023 at 10:13:20 PM\r\n"
        ));
        assert!(text.contains(
            "boundary=\"----voicemail_1123442421804289383\"\r\n\r\n\r\nThis is a multi-part"
        ));
        assert!(text.contains("Content-Type: audio/x-wav; name=\"msg0000.wav\"\r\n"));
        assert!(text.ends_with("\r\n\r\n\r\n------voicemail_1123442421804289383--\r\n.\r\n"));
    }

    #[test]
    fn urgent_wav49_and_mime_names() {
        let mut m = meta();
        m.flag = FLAG_URGENT.into();
        m.msgnum = 11;
        let mut e = env();
        e.from_string = "Voicemail System".into();
        e.to_name = "J. Müller".into();
        let raw = compose(
            &m,
            &e,
            &AudioAttachment {
                format: "wav49",
                data: &[0u8; 200],
            },
        );
        let text = String::from_utf8_lossy(&raw);
        assert!(text.contains("\r\nFrom: \"Voicemail System\" <asterisk@pbx1>\r\n"));
        assert!(text.contains("\r\nTo: =?ISO-8859-1?Q?J=2E_M=FCller?= <alice@example.com>\r\n"));
        assert!(text.contains("\r\nSubject: [PBX]: New Urgent message 12 in mailbox 1234\r\n"));
        assert!(text.contains("Content-Type: audio/x-WAV; name=\"msg0011.WAV\"\r\n"));
        let marker = "filename=\"msg0011.WAV\"\r\n\r\n";
        let start = text.find(marker).unwrap() + marker.len();
        let b64 = &text[start..];
        let b64_lines: Vec<&str> = b64[..b64.find("\r\n\r\n").unwrap()].split("\r\n").collect();
        assert!(b64_lines.iter().all(|l| l.len() <= 72));
        assert_eq!(b64_lines[0].len(), 72);
        let p = parse(&raw).unwrap();
        assert!(p.meta.is_urgent());
        assert_eq!(p.meta.msgnum, 11);
        let a = p.audio.unwrap();
        assert_eq!(
            (a.filename.as_str(), a.format.as_str()),
            ("msg0011.WAV", "wav49")
        );
        assert_eq!(a.data, vec![0u8; 200]);
    }

    #[test]
    fn round_trip_and_lower_cased_headers() {
        let data: Vec<u8> = (0..=255u8).cycle().take(5000).collect();
        let raw = compose(
            &meta(),
            &env(),
            &AudioAttachment {
                format: "wav",
                data: &data,
            },
        );
        let p = parse(&raw).unwrap();
        assert_eq!(p.meta, meta());
        assert_eq!(p.subject, "[PBX]: New message 1 in mailbox 1234");
        assert_eq!(p.date, Some(1_700_000_000));
        let a = p.audio.as_ref().unwrap();
        assert_eq!(a.data, data);
        assert_eq!(a.content_type, "audio/x-wav");
        // Exchange lower-cases header names.
        let text = String::from_utf8(raw).unwrap();
        let lowered: String = text
            .split_inclusive("\r\n")
            .map(|l| match l.split_once(':') {
                Some((n, v)) if n.starts_with("X-Asterisk") => format!("{}:{v}", n.to_lowercase()),
                _ => l.to_owned(),
            })
            .collect();
        assert!(lowered.contains("x-asterisk-vm-context: default"));
        assert_eq!(parse(lowered.as_bytes()).unwrap(), p);
    }

    #[test]
    fn ordinary_mail_is_not_a_voicemail() {
        let mail = b"From: a@example.com\r\nTo: b@example.com\r\nSubject: hi\r\n\r\nX-Asterisk-VM-Context: in the body\r\n";
        assert!(parse(mail).is_none());
        assert!(parse_meta(mail).is_none());
        assert!(!is_voicemail_header_block(mail));
    }

    #[test]
    fn header_values_unfold_and_ignore_case() {
        let h = b"x-asterisk-vm-extension: 12\r\n 34\r\nX-ASTERISK-VM-CONTEXT:  ctx \r\n\r\n";
        assert_eq!(
            header_value(h, "X-Asterisk-VM-Extension").as_deref(),
            Some("12 34")
        );
        assert_eq!(
            header_value(h, "x-asterisk-vm-context").as_deref(),
            Some("ctx")
        );
        assert_eq!(header_value(h, "Subject"), None);
    }

    #[test]
    fn long_names_are_split_like_asterisk() {
        let enc = encode_mime(&"A.".repeat(40), "ISO-8859-1", 6, 20);
        assert!(enc.split(' ').all(|s| s.len() <= 76), "{enc}");
        assert!(enc.split(' ').count() > 1);
        assert_eq!(strip_control_and_high("Bö\tb"), "Bb");
        assert_eq!(quote("a\"b\\"), "\"a\\\"b\\\\\"");
    }
}
