//! Contexts and mailboxes.

use base64::Engine;

use super::{Result, ServiceError, Voicemail};
use crate::domain::{MailboxAddress, Principal, validate_context_name};
use crate::store::{ContextRecord, MailboxChanges, MailboxRecord, Page, StoreError};

/// Mailbox settings as a client gives them (plain PIN; `None` = not given).
#[derive(Debug, Clone, Default)]
pub struct MailboxSettings {
    pub pin: Option<String>,
    pub fullname: Option<String>,
    pub email: Option<String>,
    pub pager: Option<String>,
    pub attach: Option<bool>,
    pub attachfmt: Option<String>,
    pub maxmsg: Option<Option<u32>>,
    pub maxsecs: Option<Option<u32>>,
    pub minsecs: Option<Option<u32>>,
    pub tz: Option<String>,
    pub language: Option<String>,
    pub deletevoicemail: Option<bool>,
}

/// Opaque position in the mailbox listing.
pub struct MailboxCursor;

impl MailboxCursor {
    pub fn encode(m: &MailboxRecord) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(format!("{}\n{}", m.address.context, m.address.mailbox))
    }

    pub fn decode(s: &str) -> Result<(String, String)> {
        let bad = || ServiceError::Invalid("cursor is not one this server issued".into());
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(s)
            .map_err(|_| bad())?;
        let text = String::from_utf8(raw).map_err(|_| bad())?;
        let (c, m) = text.split_once('\n').ok_or_else(bad)?;
        Ok((c.to_owned(), m.to_owned()))
    }
}

/// The `attachfmt` values a mailbox may name.
pub const ATTACH_FORMATS: [&str; 5] = ["wav", "wav49", "gsm", "opus", "original"];

fn check_len(field: &str, v: &Option<String>, max: usize) -> Result<()> {
    match v {
        Some(s) if s.chars().count() > max || s.chars().any(char::is_control) => {
            Err(ServiceError::Invalid(format!(
                "{field} must be at most {max} characters, without control characters"
            )))
        }
        _ => Ok(()),
    }
}

impl Voicemail {
    /// Creates a context (admin keys not scoped to a context only).
    pub async fn create_context(
        &self,
        p: &Principal,
        name: &str,
        description: &str,
    ) -> Result<ContextRecord> {
        Self::require_admin(p, "creating a context")?;
        if p.context.is_some() {
            return Err(ServiceError::Forbidden(
                "a key scoped to one context cannot create contexts".into(),
            ));
        }
        // A bad name is an invalid request, not a malformed mailbox address.
        validate_context_name(name).map_err(|e| ServiceError::Invalid(e.to_string()))?;
        check_len("description", &Some(description.to_owned()), 255)?;
        Ok(self.sql.create_context(name, description).await?)
    }

    /// Contexts the caller may see.
    pub async fn list_contexts(
        &self,
        p: &Principal,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Page<ContextRecord>> {
        Ok(self
            .sql
            .list_contexts(p.context.as_deref(), after, limit)
            .await?)
    }

    async fn settings_to_changes(
        &self,
        context: &str,
        s: MailboxSettings,
    ) -> Result<MailboxChanges> {
        check_len("fullname", &s.fullname, 150)?;
        check_len("email", &s.email, 255)?;
        check_len("pager", &s.pager, 255)?;
        check_len("tz", &s.tz, 64)?;
        check_len("language", &s.language, 20)?;
        // Only names compiled into chrono-tz: a zone is never looked up as a file, so a value such
        // as `../../etc/localtime` is refused here rather than trusted by a later reader.
        if let Some(tz) = s.tz.as_deref()
            && !tz.is_empty()
            && tz.parse::<chrono_tz::Tz>().is_err()
        {
            return Err(ServiceError::Invalid(format!(
                "tz must be an IANA time zone name such as Europe/Paris or UTC, not {tz:?}"
            )));
        }
        if let Some(f) = &s.attachfmt
            && !ATTACH_FORMATS.contains(&f.as_str())
        {
            return Err(ServiceError::Invalid(format!(
                "attachfmt must be one of {}",
                ATTACH_FORMATS.join(", ")
            )));
        }
        if let Some(Some(n)) = s.maxmsg
            && !(1..=9999).contains(&n)
        {
            return Err(ServiceError::Invalid("maxmsg must be 1..=9999".into()));
        }
        for (name, v) in [("maxsecs", s.maxsecs), ("minsecs", s.minsecs)] {
            if let Some(Some(n)) = v
                && n > 86_400
            {
                return Err(ServiceError::Invalid(format!(
                    "{name} must be at most 86400"
                )));
            }
        }
        let pin_hash = match s.pin {
            Some(pin) if pin.is_empty() => Some(String::new()),
            Some(pin) => Some(self.stored_pin(context, pin).await?),
            None => None,
        };
        Ok(MailboxChanges {
            pin_hash,
            fullname: s.fullname,
            email: s.email,
            pager: s.pager,
            attach: s.attach,
            attachfmt: s.attachfmt,
            maxmsg: s.maxmsg,
            maxsecs: s.maxsecs,
            minsecs: s.minsecs,
            tz: s.tz,
            language: s.language,
            deletevoicemail: s.deletevoicemail,
        })
    }

    /// Creates a mailbox (admin).
    pub async fn create_mailbox(
        &self,
        p: &Principal,
        address: &MailboxAddress,
        settings: MailboxSettings,
    ) -> Result<MailboxRecord> {
        Self::require_admin(p, "creating a mailbox")?;
        if !p.sees_context(&address.context) {
            return Err(ServiceError::NotFound(format!(
                "context {}",
                address.context
            )));
        }
        let changes = self.settings_to_changes(&address.context, settings).await?;
        let created = self
            .sql
            .create_mailbox(address, changes)
            .await
            .map_err(|e| match e {
                StoreError::NotFound => {
                    ServiceError::NotFound(format!("context {}", address.context))
                }
                other => other.into(),
            })?;
        self.notify_changed();
        Ok(created)
    }

    /// One mailbox.
    pub async fn get_mailbox(
        &self,
        p: &Principal,
        address: &MailboxAddress,
    ) -> Result<MailboxRecord> {
        self.visible_mailbox(p, address).await
    }

    /// Mailboxes the caller may see.
    pub async fn list_mailboxes(
        &self,
        p: &Principal,
        context: Option<&str>,
        q: Option<&str>,
        cursor: Option<&str>,
        limit: u32,
    ) -> Result<Page<MailboxRecord>> {
        let Ok(context) = Self::listing_scope(p, context) else {
            return Ok(Page {
                items: vec![],
                has_more: false,
            });
        };
        if let Some(q) = q
            && q.chars().count() > 100
        {
            return Err(ServiceError::Invalid(
                "q must be at most 100 characters".into(),
            ));
        }
        let after = cursor.map(MailboxCursor::decode).transpose()?;
        Ok(self
            .sql
            .list_mailboxes(
                context,
                q,
                after.as_ref().map(|(c, m)| (c.as_str(), m.as_str())),
                limit,
            )
            .await?)
    }

    /// Changes a mailbox's settings (admin).
    pub async fn update_mailbox(
        &self,
        p: &Principal,
        address: &MailboxAddress,
        settings: MailboxSettings,
    ) -> Result<MailboxRecord> {
        self.visible_mailbox(p, address).await?;
        Self::require_admin(p, "changing a mailbox")?;
        let changes = self.settings_to_changes(&address.context, settings).await?;
        Ok(self.sql.update_mailbox(address, changes).await?)
    }

    /// Deletes a mailbox, its messages, greetings and audio (admin).
    pub async fn delete_mailbox(&self, p: &Principal, address: &MailboxAddress) -> Result<()> {
        self.visible_mailbox(p, address).await?;
        Self::require_admin(p, "deleting a mailbox")?;
        let keys = self.sql.delete_mailbox(address).await?;
        self.notify_changed();
        self.remove_blobs(keys).await;
        Ok(())
    }
}
