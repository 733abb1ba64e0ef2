//! The pages' templates (`web/templates`, checked and compiled in by askama; values are
//! HTML-escaped) and the small formatting helpers they use.

use askama::Template;
use axum::response::{Html, IntoResponse, Response};

use crate::domain::{Flag, Folder, GreetingKind};
use crate::service::{
    Admin, AdminAccount, AuditEntry, Dashboard, DeliveryQueue, MailboxWithCounts, QueueHealth,
};
use crate::store::{
    ApiKeyRecord, ContextRecord, DeliveryRecord, GreetingRecord, MailboxRecord, MessageRecord,
    MwiPushRecord, MwiTargetRecord, WebhookRecord,
};

/// Renders a page; a template failure is logged and answered with a plain 500.
pub fn html<T: Template>(t: &T) -> Response {
    match t.render() {
        Ok(body) => Html(body).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "a UI template failed to render");
            (
                axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                "internal error; see the server log",
            )
                .into_response()
        }
    }
}

/// What every signed-in page's frame shows.
pub struct Frame<'a> {
    pub admin: &'a Admin,
    pub csrf: &'a str,
    /// Which navigation entry is current: `dashboard` or `contexts`.
    pub section: &'static str,
}

impl Frame<'_> {
    /// "all contexts" or the list of the admin's contexts.
    pub fn scope(&self) -> String {
        if self.admin.contexts.is_empty() {
            "all contexts".into()
        } else {
            self.admin.contexts.join(", ")
        }
    }

    /// A count with thousands separators.
    pub fn count(&self, n: &i64) -> String {
        count(n)
    }

    /// A byte size in kB/MB/GB.
    pub fn bytes(&self, n: &i64) -> String {
        bytes(n)
    }
}

/// `12.3 MB`.
pub fn bytes(n: &i64) -> String {
    let n = *n as f64;
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut v = n;
    let mut u = 0;
    while v >= 1000.0 && u < UNITS.len() - 1 {
        v /= 1000.0;
        u += 1;
    }
    if u == 0 {
        format!("{} B", n as i64)
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// `1,234,567`.
pub fn count(n: &i64) -> String {
    let s = n.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if *n < 0 { format!("-{out}") } else { out }
}

#[derive(Template)]
#[template(path = "error.html", config = "web/askama.toml")]
pub struct ErrorPage<'a> {
    pub title: &'a str,
    pub detail: &'a str,
    pub status: u16,
}

#[derive(Template)]
#[template(path = "login.html", config = "web/askama.toml")]
pub struct LoginPage<'a> {
    pub csrf: &'a str,
    pub email: &'a str,
    pub error: Option<&'a str>,
    pub notice: Option<&'a str>,
}

#[derive(Template)]
#[template(path = "dashboard.html", config = "web/askama.toml")]
pub struct DashboardPage<'a> {
    pub frame: Frame<'a>,
    pub d: &'a Dashboard,
    /// What the last action did.
    pub notice: Option<&'a str>,
}

impl DashboardPage<'_> {
    /// The delivery queues with their names, and the name to retry them by (Asterisk's rows are
    /// taken in by every node on its own).
    pub fn queues(&self) -> [(&'static str, &QueueHealth, Option<&'static str>); 4] {
        let h = &self.d.health;
        [
            ("Email", &h.email, Some(DeliveryQueue::Email.as_str())),
            (
                "Webhooks",
                &h.webhooks,
                Some(DeliveryQueue::Webhook.as_str()),
            ),
            ("MWI push", &h.mwi, Some(DeliveryQueue::Mwi.as_str())),
            ("Asterisk take-in", &h.asterisk, None),
        ]
    }

    /// Width (percent) of a context's storage bar.
    pub fn share(&self, bytes: &i64) -> i64 {
        let max = self.d.usage.iter().map(|u| u.bytes).max().unwrap_or(0);
        if max <= 0 {
            0
        } else {
            (bytes * 100 / max).max(1)
        }
    }
}

#[derive(Template)]
#[template(path = "contexts.html", config = "web/askama.toml")]
pub struct ContextsPage<'a> {
    pub frame: Frame<'a>,
    pub contexts: &'a [ContextRecord],
    pub can_create: bool,
    pub error: Option<&'a str>,
    pub name: &'a str,
    pub description: &'a str,
}

#[derive(Template)]
#[template(path = "mailboxes.html", config = "web/askama.toml")]
pub struct MailboxesPage<'a> {
    pub frame: Frame<'a>,
    pub context: &'a ContextRecord,
    pub rows: &'a [MailboxWithCounts],
    pub q: &'a str,
    /// Link of the next page, if any.
    pub next: Option<String>,
    /// Whether this is not the first page.
    pub paged: bool,
    pub notice: Option<&'a str>,
}

/// A mailbox form's values, as shown (strings, so a rejected form shows what was typed).
#[derive(Debug, Clone, Default)]
pub struct MailboxForm {
    pub mailbox: String,
    pub fullname: String,
    pub email: String,
    pub pager: String,
    pub attach: bool,
    pub attachfmt: String,
    pub maxmsg: String,
    pub maxsecs: String,
    pub minsecs: String,
    pub tz: String,
    pub language: String,
    pub deletevoicemail: bool,
    pub has_pin: bool,
}

impl From<&MailboxRecord> for MailboxForm {
    fn from(m: &MailboxRecord) -> Self {
        let n = |v: Option<u32>| v.map(|n| n.to_string()).unwrap_or_default();
        Self {
            mailbox: m.address.mailbox.clone(),
            fullname: m.fullname.clone(),
            email: m.email.clone(),
            pager: m.pager.clone(),
            attach: m.attach,
            attachfmt: m.attachfmt.clone(),
            maxmsg: n(m.maxmsg),
            maxsecs: n(m.maxsecs),
            minsecs: n(m.minsecs),
            tz: m.tz.clone(),
            language: m.language.clone(),
            deletevoicemail: m.deletevoicemail,
            has_pin: !m.pin_hash.is_empty(),
        }
    }
}

/// The attachment formats a mailbox may name, with their labels.
pub const ATTACH_FORMATS: [(&str, &str); 5] = [
    ("wav", "WAV (16-bit PCM)"),
    ("wav49", "WAV49 (GSM in WAV)"),
    ("gsm", "GSM"),
    ("opus", "Ogg Opus"),
    ("original", "As recorded"),
];

#[derive(Template)]
#[template(path = "mailbox_form.html", config = "web/askama.toml")]
pub struct MailboxFormPage<'a> {
    pub frame: Frame<'a>,
    pub context: &'a str,
    /// Editing an existing mailbox (else creating one).
    pub editing: bool,
    pub form: MailboxForm,
    pub error: Option<&'a str>,
    pub formats: &'static [(&'static str, &'static str)],
    pub defaults: (u32, u32),
}

#[derive(Template)]
#[template(path = "confirm_delete.html", config = "web/askama.toml")]
pub struct ConfirmDeletePage<'a> {
    pub frame: Frame<'a>,
    pub context: &'a str,
    pub mailbox: &'a MailboxRecord,
    pub messages: u32,
}

/// `m:ss` (or `h:mm:ss`) of a length in milliseconds, cut to whole seconds as players show it.
pub fn duration(ms: &i64) -> String {
    let secs = ms.max(&0) / 1000;
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    if h > 0 {
        format!("{h}:{m:02}:{s:02}")
    } else {
        format!("{m}:{s:02}")
    }
}

/// A Unix time in a mailbox's time zone (UTC when it has none or an unknown one).
pub fn local_time(secs: i64, tz: &str, fmt: &str) -> String {
    use chrono::TimeZone;
    let utc = chrono::Utc
        .timestamp_opt(secs, 0)
        .single()
        .unwrap_or_default();
    match tz.parse::<chrono_tz::Tz>() {
        Ok(zone) => utc.with_timezone(&zone).format(fmt).to_string(),
        Err(_) => utc.format(fmt).to_string(),
    }
}

/// Who called: name and number, or the raw caller ID, or "Unknown caller".
pub fn caller(m: &MessageRecord) -> (String, String) {
    let (name, num) = (m.caller_id_name.trim(), m.caller_id_num.trim());
    match (name.is_empty(), num.is_empty()) {
        (false, false) => (name.to_owned(), num.to_owned()),
        (false, true) => (name.to_owned(), String::new()),
        (true, false) => (num.to_owned(), String::new()),
        (true, true) if !m.callerid.trim().is_empty() => {
            (m.callerid.trim().to_owned(), String::new())
        }
        _ => ("Unknown caller".to_owned(), String::new()),
    }
}

/// Label of a folder tab.
pub fn folder_label(f: &Folder) -> &str {
    match f {
        Folder::Inbox => "New",
        Folder::Old => "Old",
        other => other.as_str(),
    }
}

/// Methods the message templates share.
pub trait MessageView {
    /// The mailbox whose time zone dates are shown in.
    fn tz(&self) -> &str;

    fn when(&self, m: &MessageRecord) -> String {
        local_time(m.origtime, self.tz(), "%b %-d, %Y %H:%M")
    }
    fn when_long(&self, m: &MessageRecord) -> String {
        local_time(m.origtime, self.tz(), "%A %B %-d, %Y at %H:%M:%S %Z")
    }
    fn length(&self, m: &MessageRecord) -> String {
        duration(&m.duration_ms)
    }
    fn caller(&self, m: &MessageRecord) -> (String, String) {
        caller(m)
    }
    /// Asterisk's spool name of the message (`msg0000`).
    fn file(&self, m: &MessageRecord) -> String {
        format!("msg{:04}", m.msgnum)
    }
    fn urgent(&self, m: &MessageRecord) -> bool {
        m.flag == Flag::Urgent
    }
    fn label<'f>(&self, f: &'f Folder) -> &'f str {
        folder_label(f)
    }
    fn zone(&self) -> String {
        if self.tz().is_empty() {
            "UTC".into()
        } else {
            self.tz().to_owned()
        }
    }
}

#[derive(Template)]
#[template(path = "messages.html", config = "web/askama.toml")]
pub struct MessagesPage<'a> {
    pub frame: Frame<'a>,
    pub context: &'a str,
    pub mailbox: &'a MailboxRecord,
    /// The shown folder's name.
    pub folder: &'a str,
    pub folders: &'a [(Folder, u32, u32)],
    pub messages: &'a [MessageRecord],
    /// Folders a message may be moved to.
    pub targets: &'a [Folder],
    pub notice: Option<&'a str>,
}

impl MessageView for MessagesPage<'_> {
    fn tz(&self) -> &str {
        &self.mailbox.tz
    }
}

#[derive(Template)]
#[template(path = "message.html", config = "web/askama.toml")]
pub struct MessagePage<'a> {
    pub frame: Frame<'a>,
    pub context: &'a str,
    pub mailbox: &'a MailboxRecord,
    pub m: &'a MessageRecord,
    pub targets: &'a [Folder],
    pub notice: Option<&'a str>,
}

impl MessageView for MessagePage<'_> {
    fn tz(&self) -> &str {
        &self.mailbox.tz
    }
}

#[derive(Template)]
#[template(path = "greetings.html", config = "web/askama.toml")]
pub struct GreetingsPage<'a> {
    pub frame: Frame<'a>,
    pub context: &'a str,
    pub mailbox: &'a MailboxRecord,
    pub greetings: &'a [(GreetingKind, Option<GreetingRecord>)],
    pub notice: Option<&'a str>,
}

impl GreetingsPage<'_> {
    /// What a greeting is for.
    pub fn describe(&self, k: &GreetingKind) -> (&'static str, &'static str) {
        match k {
            GreetingKind::Unavailable => (
                "Unavailable",
                "Played when the mailbox owner does not answer.",
            ),
            GreetingKind::Busy => ("Busy", "Played when the line is busy."),
            GreetingKind::Temp => (
                "Temporary",
                "Replaces the others while it exists (holidays, absence).",
            ),
            GreetingKind::Name => ("Name", "The owner's recorded name, used by the directory."),
        }
    }
    pub fn length(&self, ms: &i64) -> String {
        duration(ms)
    }
    pub fn when(&self, secs: &i64) -> String {
        local_time(*secs, &self.mailbox.tz, "%b %-d, %Y %H:%M")
    }
}

#[derive(Template)]
#[template(path = "api_keys.html", config = "web/askama.toml")]
pub struct ApiKeysPage<'a> {
    pub frame: Frame<'a>,
    pub keys: &'a [ApiKeyRecord],
    pub contexts: &'a [ContextRecord],
    /// A key just created: `(name, token)`, shown once.
    pub created: Option<(&'a str, &'a str)>,
    pub error: Option<&'a str>,
    pub notice: Option<&'a str>,
}

impl ApiKeysPage<'_> {
    pub fn when(&self, secs: &i64) -> String {
        local_time(*secs, "", "%Y-%m-%d %H:%M UTC")
    }
}

#[derive(Template)]
#[template(path = "audit.html", config = "web/askama.toml")]
pub struct AuditPage<'a> {
    pub frame: Frame<'a>,
    pub entries: &'a [AuditEntry],
    /// Link of the next (older) page.
    pub next: Option<String>,
    pub paged: bool,
}

impl AuditPage<'_> {
    pub fn when(&self, secs: &i64) -> String {
        local_time(*secs, "", "%Y-%m-%d %H:%M:%S UTC")
    }
}

/// A Unix time in milliseconds, in UTC.
pub fn utc_ms(ms: &i64) -> String {
    local_time(ms.div_euclid(1000), "", "%Y-%m-%d %H:%M:%S UTC")
}

/// A Unix time in seconds, in UTC.
pub fn utc(secs: &i64) -> String {
    local_time(*secs, "", "%Y-%m-%d %H:%M:%S UTC")
}

#[derive(Template)]
#[template(path = "confirm.html", config = "web/askama.toml")]
pub struct ConfirmPage<'a> {
    pub frame: Frame<'a>,
    /// The breadcrumb: `(label, link)`; the last one is the page itself.
    pub crumbs: Vec<(String, String)>,
    pub heading: String,
    pub text: String,
    pub action: String,
    pub button: &'a str,
    pub cancel: String,
}

/// Event types a webhook may pick (every type the outbox records), with their descriptions.
pub fn webhook_events() -> Vec<(&'static str, &'static str)> {
    crate::domain::EVENT_TYPES
        .iter()
        .map(|t| {
            let about = match *t {
                "message.deposited" => "A message was left",
                "message.updated" => "Marked read or unread",
                "message.moved" => "Moved to another folder",
                "message.deleted" => "A message was deleted",
                "greeting.changed" => "A greeting was recorded or uploaded",
                "greeting.deleted" => "A greeting was removed",
                "mailbox.created" => "A mailbox was created",
                "mailbox.deleted" => "A mailbox was deleted",
                "mailbox.changed" => "Counts changed outside voxmail (IMAP)",
                _ => "",
            };
            (*t, about)
        })
        .collect()
}

/// A webhook form's values, as shown.
#[derive(Debug, Clone, Default)]
pub struct WebhookForm {
    pub url: String,
    pub event_types: Vec<String>,
    pub active: bool,
}

impl WebhookForm {
    /// Whether an event type is ticked.
    pub fn has(&self, t: &str) -> bool {
        self.event_types.iter().any(|e| e == t)
    }
}

/// Methods the integration pages share.
pub trait IntegrationView {
    fn ms(&self, ms: &i64) -> String {
        utc_ms(ms)
    }
    fn secs(&self, secs: &i64) -> String {
        utc(secs)
    }
    /// The badge class of a delivery status.
    fn status_class(&self, status: &str) -> &'static str {
        match status {
            "delivered" => "badge-ok",
            "dead" => "badge-urgent",
            _ => "badge-new",
        }
    }
    /// A push's state: `(label, badge class)`.
    fn push_state(&self, p: &MwiPushRecord) -> (&'static str, &'static str) {
        if p.pushed_version >= p.wanted_version {
            ("Pushed", "badge-ok")
        } else if p.last_error.is_some() {
            ("Failing", "badge-urgent")
        } else {
            ("Queued", "badge-new")
        }
    }
    fn kind_label(&self, t: &MwiTargetRecord) -> &'static str {
        match t.kind.as_str() {
            "ari" => "ARI",
            "ami" => "AMI",
            _ => "SIP",
        }
    }
}

#[derive(Template)]
#[template(path = "webhooks.html", config = "web/askama.toml")]
pub struct WebhooksPage<'a> {
    pub frame: Frame<'a>,
    pub context: &'a ContextRecord,
    pub hooks: &'a [WebhookRecord],
    pub form: WebhookForm,
    pub events: Vec<(&'static str, &'static str)>,
    pub error: Option<&'a str>,
    pub notice: Option<&'a str>,
}

impl IntegrationView for WebhooksPage<'_> {}

#[derive(Template)]
#[template(path = "webhook.html", config = "web/askama.toml")]
pub struct WebhookPage<'a> {
    pub frame: Frame<'a>,
    pub context: &'a str,
    pub hook: &'a WebhookRecord,
    pub deliveries: &'a [DeliveryRecord],
    pub form: WebhookForm,
    pub events: Vec<(&'static str, &'static str)>,
    /// A secret just set or generated, shown once.
    pub secret: Option<&'a str>,
    /// The test delivery just sent, if any.
    pub tested: Option<&'a DeliveryRecord>,
    pub error: Option<&'a str>,
    pub notice: Option<&'a str>,
}

impl IntegrationView for WebhookPage<'_> {}

/// An MWI target form's values, as shown.
#[derive(Debug, Clone, Default)]
pub struct TargetForm {
    pub kind: String,
    pub url: String,
    pub username: String,
    pub mailbox: String,
    pub active: bool,
    /// Whether the target has a secret (the secret itself is never shown).
    pub has_secret: bool,
}

/// The kinds of MWI targets, with their labels and URL hints.
pub const TARGET_KINDS: [(&str, &str, &str); 3] = [
    (
        "ari",
        "ARI — Asterisk REST interface",
        "The Asterisk HTTP base, e.g. http://pbx1:8088",
    ),
    (
        "ami",
        "AMI — Asterisk manager",
        "host:port of the manager, e.g. pbx1:5038",
    ),
    (
        "sip",
        "SIP NOTIFY",
        "A SIP URI, e.g. sip:mwi@pbx1:5060;transport=udp",
    ),
];

#[derive(Template)]
#[template(path = "mwi_targets.html", config = "web/askama.toml")]
pub struct MwiTargetsPage<'a> {
    pub frame: Frame<'a>,
    pub context: &'a ContextRecord,
    pub targets: &'a [MwiTargetRecord],
    pub form: TargetForm,
    pub kinds: &'static [(&'static str, &'static str, &'static str)],
    pub error: Option<&'a str>,
    pub notice: Option<String>,
}

impl IntegrationView for MwiTargetsPage<'_> {}

#[derive(Template)]
#[template(path = "mwi_target.html", config = "web/askama.toml")]
pub struct MwiTargetPage<'a> {
    pub frame: Frame<'a>,
    pub context: &'a str,
    pub target: &'a MwiTargetRecord,
    pub pushes: &'a [MwiPushRecord],
    pub form: TargetForm,
    pub kinds: &'static [(&'static str, &'static str, &'static str)],
    /// The outcome of a test-send, as a sentence, and whether every push went out.
    pub tested: Option<(String, bool)>,
    pub error: Option<&'a str>,
    pub notice: Option<&'a str>,
}

impl IntegrationView for MwiTargetPage<'_> {}

#[derive(Template)]
#[template(path = "admins.html", config = "web/askama.toml")]
pub struct AdminsPage<'a> {
    pub frame: Frame<'a>,
    pub admins: &'a [AdminAccount],
    pub contexts: &'a [ContextRecord],
    /// An admin just created: `(email, one-time password)`.
    pub created: Option<(&'a str, &'a str)>,
    pub email: &'a str,
    pub picked: &'a [String],
    pub error: Option<&'a str>,
    pub notice: Option<&'a str>,
}

impl AdminsPage<'_> {
    pub fn when(&self, secs: &i64) -> String {
        local_time(*secs, "", "%Y-%m-%d %H:%M UTC")
    }
    pub fn picked(&self, c: &str) -> bool {
        self.picked.iter().any(|p| p == c)
    }
}

#[derive(Template)]
#[template(path = "admin_user.html", config = "web/askama.toml")]
pub struct AdminUserPage<'a> {
    pub frame: Frame<'a>,
    pub account: &'a AdminAccount,
    pub contexts: &'a [ContextRecord],
    /// A password just reset, shown once.
    pub password: Option<&'a str>,
    pub error: Option<&'a str>,
    pub notice: Option<&'a str>,
}

impl AdminUserPage<'_> {
    pub fn when(&self, secs: &i64) -> String {
        local_time(*secs, "", "%Y-%m-%d %H:%M UTC")
    }
    pub fn limited_to(&self, c: &str) -> bool {
        self.account.contexts.iter().any(|p| p == c)
    }
    /// Whether this is the signed-in admin's own account.
    pub fn is_self(&self) -> bool {
        self.account.id == self.frame.admin.id
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_well() {
        assert_eq!(count(&1_234_567), "1,234,567");
        assert_eq!(count(&12), "12");
        assert_eq!(bytes(&999), "999 B");
        assert_eq!(bytes(&1_500_000), "1.5 MB");
        assert_eq!(duration(&3_900), "0:03");
        assert_eq!(duration(&3_725_000), "1:02:05");
        assert_eq!(local_time(0, "Europe/Paris", "%H:%M"), "01:00");
        assert_eq!(local_time(0, "", "%H:%M"), "00:00");
    }
}
