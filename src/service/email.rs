//! Voicemail-to-email: per-context template settings, the email state of messages, and the worker
//! that drains the email outbox (lease → render → SMTP → record; retries with backoff; then
//! `deletevoicemail`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::rendition::StoredReader;
use super::{Result, ServiceError, Voicemail};
use crate::audio::Source;
use crate::blob::{BlobKey, BlobStore};
use crate::config::EmailConfig;
use crate::domain::{AudioFormat, MailboxId, Principal, now_secs};
use crate::events::queue::{self, Backoff, Deliveries, OnShutdown, Outcome, SenderSettings};
use crate::mail::compose::{self, Compose, date_format_is_valid};
use crate::mail::{MailSettings, Mailer, SendError, attachment, template};
use crate::store::{
    ContextEmailSettings, EmailJob, EmailKind, EmailState, MailboxRecord, MessageRecord, StoreError,
};

/// A context's saved email settings and what validation noticed.
#[derive(Debug, Clone)]
pub struct ContextEmail {
    /// The overrides as stored.
    pub settings: ContextEmailSettings,
    /// Variables the templates use that are not Asterisk's (they stay visible in mails).
    pub unknown_variables: Vec<String>,
}

/// Checks template settings; returns the unknown variables they use.
pub fn validate_email_settings(s: &ContextEmailSettings) -> Result<Vec<String>> {
    let mut unknown = Vec::new();
    for (field, value) in [
        ("fromstring", &s.fromstring),
        ("emailsubject", &s.emailsubject),
        ("emailbody", &s.emailbody),
        ("pagersubject", &s.pagersubject),
        ("pagerbody", &s.pagerbody),
        ("pagerfromstring", &s.pagerfromstring),
    ] {
        let Some(v) = value else { continue };
        if v.len() > 8192 {
            return Err(ServiceError::Invalid(format!(
                "{field} is longer than 8192 bytes"
            )));
        }
        for u in
            template::validate(v).map_err(|e| ServiceError::Invalid(format!("{field}: {e}")))?
        {
            if !unknown.contains(&u) {
                unknown.push(u);
            }
        }
    }
    for (field, value) in [
        ("emaildateformat", &s.emaildateformat),
        ("pagerdateformat", &s.pagerdateformat),
    ] {
        if let Some(f) = value
            && !date_format_is_valid(f)
        {
            return Err(ServiceError::Invalid(format!(
                "{field} {f:?} is not a valid strftime format"
            )));
        }
    }
    if let Some(a) = &s.serveremail {
        let valid = !a.is_empty()
            && !a.contains(char::is_whitespace)
            && (!a.contains('@') || a.parse::<lettre::Address>().is_ok());
        if !valid {
            return Err(ServiceError::Invalid(format!(
                "serveremail {a:?} is not an address or a local part"
            )));
        }
    }
    Ok(unknown)
}

fn hostname() -> String {
    std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

fn backoff(c: &EmailConfig) -> Backoff {
    Backoff {
        base_ms: c.retry_base_ms,
        max_ms: c.retry_max_ms,
    }
}

impl Voicemail {
    /// A context's email settings (admin).
    pub async fn get_context_email(&self, p: &Principal, context: &str) -> Result<ContextEmail> {
        self.admin_context(p, context, "email settings").await?;
        let settings = self.sql.context_email_settings(context).await?;
        let unknown_variables = validate_email_settings(&settings).unwrap_or_default();
        Ok(ContextEmail {
            settings,
            unknown_variables,
        })
    }

    /// Replaces a context's email settings after validating the templates (admin).
    pub async fn put_context_email(
        &self,
        p: &Principal,
        context: &str,
        settings: ContextEmailSettings,
    ) -> Result<ContextEmail> {
        self.admin_context(p, context, "email settings").await?;
        let unknown_variables = validate_email_settings(&settings)?;
        self.sql
            .put_context_email_settings(context, &settings)
            .await?;
        Ok(ContextEmail {
            settings,
            unknown_variables,
        })
    }

    /// The email state of one message (`None` = no notification was queued).
    pub async fn email_state(&self, m: &MessageRecord) -> Result<Option<EmailState>> {
        Ok(self.sql.email_state(m.mailbox_id, m.id).await?)
    }

    /// The email state of a message just stored into `mailbox` (deposited or forwarded), as its
    /// transaction left it: pending when it queued a notification.
    pub fn email_of_new_message(&self, mailbox: &MailboxRecord) -> Option<EmailState> {
        self.sql.queues_email(mailbox).then(|| EmailState {
            status: "pending".into(),
            attempts: 0,
            last_error: None,
        })
    }

    /// Email states of a listing page, keyed by message id, in one query.
    pub async fn email_states(
        &self,
        mailbox: MailboxId,
        page: &[MessageRecord],
    ) -> Result<HashMap<String, EmailState>> {
        let (Some(first), Some(last)) = (
            page.iter().map(|m| m.id).min(),
            page.iter().map(|m| m.id).max(),
        ) else {
            return Ok(HashMap::new());
        };
        Ok(self.sql.email_states(mailbox, first, last).await?)
    }

    /// The template settings in effect for a context: its overrides over `[email]`.
    async fn mail_settings(&self, context: &str) -> std::result::Result<MailSettings, StoreError> {
        let c = &self.config.email;
        let o = self.sql.context_email_settings(context).await?;
        let pick = |o: Option<String>, g: &str| o.unwrap_or_else(|| g.to_owned());
        Ok(MailSettings {
            serveremail: pick(o.serveremail, &c.serveremail),
            fromstring: pick(o.fromstring, &c.fromstring),
            emailsubject: pick(o.emailsubject, &c.emailsubject),
            emailbody: pick(o.emailbody, &c.emailbody),
            pagersubject: pick(o.pagersubject, &c.pagersubject),
            pagerbody: pick(o.pagerbody, &c.pagerbody),
            emaildateformat: pick(o.emaildateformat, &c.emaildateformat),
            pagerfromstring: pick(o.pagerfromstring, &c.pagerfromstring),
            pagerdateformat: pick(o.pagerdateformat, &c.pagerdateformat),
        })
    }

    /// Starts the email worker (when `[email] enabled`); it stops with `shutdown`. Fails, without
    /// starting anything, when the SMTP settings cannot work (see [`Mailer::new`]).
    pub fn start_email(
        &self,
        shutdown: CancellationToken,
        tracker: &TaskTracker,
    ) -> std::result::Result<(), String> {
        let c = &self.config.email;
        if !c.enabled {
            return Ok(());
        }
        let mailer = Mailer::new(c)?;
        if c.tls_accept_invalid_certs && c.tls != crate::config::SmtpTls::None {
            tracing::warn!(
                smtp.host = %c.host,
                "email.tls_accept_invalid_certs is on: ANY certificate is accepted, so an \
                 impostor can read the mails and the SMTP password; use tls_ca_file instead"
            );
        }
        let settings = SenderSettings {
            concurrency: c.concurrency as usize,
            backoff: backoff(c),
            // A try cut short after the server took the mail would send it twice.
            on_shutdown: OnShutdown::Finish,
        };
        let outbox = EmailOutbox {
            vm: self.clone(),
            mailer,
            // Finished jobs are swept at least hourly, and more often when they are kept for less.
            sweep_every: Duration::from_secs(c.keep_finished_secs.clamp(1, 3600)),
            next_sweep: Mutex::new(tokio::time::Instant::now()),
        };
        queue::spawn_sender(
            outbox,
            settings,
            self.deliveries.email.clone(),
            self.changed.subscribe(),
            shutdown,
            tracker,
        );
        Ok(())
    }

    /// Removes sent and failed jobs older than `email.keep_finished_secs` (0 = keep them).
    pub async fn sweep_email_jobs(&self) -> Result<u64> {
        let keep = self.config.email.keep_finished_secs;
        if keep == 0 {
            return Ok(0);
        }
        let before = now_secs().saturating_sub(i64::try_from(keep).unwrap_or(i64::MAX));
        Ok(self.sql.sweep_email_jobs(before).await?)
    }

    /// Renders and sends one job, then records the outcome.
    async fn send_email_job(&self, mailer: &Mailer, job: EmailJob) -> Outcome {
        let mailbox = match self.sql.get_mailbox_by_id(job.mailbox_id).await {
            Ok(m) => m,
            Err(StoreError::NotFound) => {
                return self
                    .drop_job(&job, "the mailbox was deleted before the email was sent")
                    .await;
            }
            Err(e) => {
                tracing::warn!(error = %e, email.job = job.id, "cannot load the mailbox; retrying");
                return Outcome::Unrecorded;
            }
        };
        let message = match self.messages.get_message(&mailbox, job.message_id).await {
            Ok(m) => m,
            Err(StoreError::NotFound) => {
                return self
                    .drop_job(&job, "the message was deleted before the email was sent")
                    .await;
            }
            Err(e) => {
                tracing::warn!(error = %e, email.job = job.id, "cannot load the message; retrying");
                return Outcome::Unrecorded;
            }
        };
        let settings = match self.mail_settings(&mailbox.address.context).await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, email.job = job.id, "cannot load email settings");
                return Outcome::Unrecorded;
            }
        };
        let (attachment, note) = if job.kind == EmailKind::Email && mailbox.attach {
            match self.render_attachment(&mailbox, &message, &job).await {
                Ok(r) => r,
                Err(e) => return self.record(&job, Err(SendError::Transient(e))).await,
            }
        } else {
            (None, None)
        };
        let host = hostname();
        let built = compose::build(Compose {
            job: &job,
            mailbox: &mailbox,
            message: &message,
            settings: &settings,
            attachment,
            note,
            hostname: &host,
            now: chrono::Utc::now(),
        });
        let result = match built {
            Ok(mail) => mailer.send(mail).await,
            Err(e) => Err(SendError::Permanent(e.to_string())),
        };
        let outcome = self.record(&job, result).await;
        if outcome != Outcome::Delivered {
            return outcome;
        }
        tracing::info!(
            email.job = job.id,
            email.kind = job.kind.as_str(),
            message.id = %job.message_id,
            mailbox.id = %job.mailbox_id,
            "notification email accepted by the SMTP server"
        );
        if mailbox.deletevoicemail {
            match self.sql.email_done_and_sent(job.message_id).await {
                Ok(true) => match self.delete_message_of(&mailbox, job.message_id).await {
                    Ok(()) | Err(ServiceError::NotFound(_)) => tracing::info!(
                        message.id = %job.message_id,
                        "deleted after emailing (deletevoicemail)"
                    ),
                    Err(e) => tracing::warn!(
                        error = %e,
                        message.id = %job.message_id,
                        "deletevoicemail: could not delete the emailed message"
                    ),
                },
                Ok(false) => {}
                Err(e) => tracing::warn!(error = %e, "deletevoicemail: cannot read job states"),
            }
        }
        Outcome::Delivered
    }

    async fn render_attachment(
        &self,
        mailbox: &MailboxRecord,
        message: &MessageRecord,
        job: &EmailJob,
    ) -> std::result::Result<(Option<crate::mail::AudioAttachment>, Option<String>), String> {
        let attachfmt = mailbox.attachfmt.as_str();
        let mut recording: Box<dyn attachment::Recording + Send> =
            if super::imap_store::parse_audio_key(&message.audio_key).is_some() {
                // A message kept in IMAP: its recording is the mail's attachment.
                let data = self
                    .original_bytes(mailbox, message)
                    .await
                    .map_err(|e| format!("cannot read the recording from IMAP: {e}"))?;
                Box::new(FetchedRecording {
                    format: message.audio_format,
                    data,
                })
            } else {
                let key = BlobKey::from_stored(&message.audio_key)
                    .ok_or_else(|| "the stored audio key is malformed".to_owned())?;
                let size = self
                    .blobs
                    .size(&key)
                    .await
                    .map_err(|e| format!("cannot read the recording: {e}"))?;
                Box::new(StoredRecording {
                    blobs: self.blobs.clone(),
                    key,
                    format: message.audio_format,
                    size,
                    handle: tokio::runtime::Handle::current(),
                    reader: None,
                })
            };
        let fmt = attachfmt.to_owned();
        let msgnum = job.msgnum;
        let max = self.config.email.attachment_max_bytes;
        let opus = attachment::OpusSettings {
            bitrate: self.config.audio.opus_bitrate,
            complexity: self.config.audio.opus_complexity,
        };
        // Decoding and encoding are CPU work: on the transcoders renditions use, so a burst of
        // mail cannot starve deposits; a job waits its turn (no client to answer 503).
        let slot = self
            .transcoders
            .slot_patient()
            .await
            .map_err(|e| e.to_string())?;
        let r = slot
            .run(move || attachment::render(&fmt, recording.as_mut(), msgnum, max, opus))
            .map_err(|e| e.to_string())?
            .await
            .map_err(|_| "the attachment transcoder failed".to_owned())??;
        if let Some(why) = &r.substituted {
            tracing::info!(email.job = job.id, attachfmt, "{why}");
        }
        if r.note.is_some() {
            tracing::warn!(
                email.job = job.id,
                "recording too large to attach; sent without it"
            );
        }
        Ok((r.attachment, r.note))
    }

    async fn drop_job(&self, job: &EmailJob, reason: &str) -> Outcome {
        tracing::info!(email.job = job.id, reason, "email job dropped");
        match self.sql.drop_email_job(job, reason).await {
            Ok(()) => Outcome::Dropped,
            Err(e) => {
                tracing::warn!(error = %e, email.job = job.id, "cannot record a dropped email job");
                Outcome::Unrecorded
            }
        }
    }

    /// Records the outcome of a try (`Unrecorded` when the job no longer held its lease).
    async fn record(&self, job: &EmailJob, result: std::result::Result<(), SendError>) -> Outcome {
        let cfg = &self.config.email;
        let (status, error, retry_at) = match &result {
            Ok(()) => ("sent", None, None),
            Err(SendError::Permanent(e)) => ("failed", Some(e.clone()), None),
            Err(SendError::Transient(e) | SendError::Setup(e)) => {
                let too_old = now_secs() - job.created_at >= cfg.max_age_secs as i64;
                if too_old {
                    (
                        "failed",
                        Some(format!(
                            "gave up after {} attempts over {} s: {e}",
                            job.attempts + 1,
                            cfg.max_age_secs
                        )),
                        None,
                    )
                } else {
                    let at = backoff(cfg).retry_at_ms(job.attempts);
                    ("pending", Some(e.clone()), Some(at))
                }
            }
        };
        match (&result, &error) {
            (Err(SendError::Setup(_)), Some(e)) => tracing::error!(
                email.job = job.id,
                attempt = job.attempts + 1,
                error = %e,
                status,
                "email not sent: the SMTP settings need fixing (retried until email.max_age_secs)"
            ),
            (_, Some(e)) => tracing::info!(
                email.job = job.id,
                attempt = job.attempts + 1,
                error = %e,
                status,
                "email not accepted"
            ),
            _ => {}
        }
        match self
            .sql
            .finish_email_job(job, status, error.as_deref(), retry_at)
            .await
        {
            Ok(false) => Outcome::Unrecorded,
            Ok(true) if result.is_ok() => Outcome::Delivered,
            Ok(true) if retry_at.is_some() => Outcome::Retrying,
            Ok(true) => Outcome::GaveUp,
            Err(e) => {
                // The lease runs out and the job is tried again: at-least-once.
                tracing::warn!(error = %e, email.job = job.id, "cannot record an email attempt");
                Outcome::Unrecorded
            }
        }
    }
}

/// The e-mail outbox as a delivery queue: its jobs are written with the deposits.
struct EmailOutbox {
    vm: Voicemail,
    mailer: Mailer,
    sweep_every: Duration,
    next_sweep: Mutex<tokio::time::Instant>,
}

impl Deliveries for EmailOutbox {
    type Job = EmailJob;
    const NAME: &'static str = "email";

    async fn claim(
        &self,
        now_ms: i64,
        limit: u32,
    ) -> std::result::Result<Vec<EmailJob>, StoreError> {
        // A lease outlives the slowest conversation, so a job is never sent twice by two workers.
        let lease_ms = (self.vm.config.email.timeout_secs.max(1) * 1000 * 4 + 10_000) as i64;
        self.vm.sql.claim_email_jobs(now_ms, lease_ms, limit).await
    }

    async fn deliver(&self, job: EmailJob) -> Outcome {
        self.vm.send_email_job(&self.mailer, job).await
    }

    async fn housekeep(&self) {
        let now = tokio::time::Instant::now();
        {
            let Ok(mut next) = self.next_sweep.lock() else {
                return;
            };
            if now < *next {
                return;
            }
            *next = now + self.sweep_every;
        }
        match self.vm.sweep_email_jobs().await {
            Ok(0) => {}
            Ok(n) => tracing::info!(rows = n, "removed finished email jobs"),
            Err(e) => tracing::warn!(error = %e, "cannot sweep finished email jobs"),
        }
    }
}

/// A message's recording as the attachment code reads it: opened from the audio store on the
/// blocking thread that makes the attachment, once per try.
/// A recording already in memory (fetched from IMAP).
struct FetchedRecording {
    format: AudioFormat,
    data: Vec<u8>,
}

impl attachment::Recording for FetchedRecording {
    fn format(&self) -> AudioFormat {
        self.format
    }

    fn size(&self) -> u64 {
        self.data.len() as u64
    }

    fn open(&mut self) -> std::result::Result<Box<dyn Source + '_>, String> {
        Ok(Box::new(std::io::Cursor::new(self.data.as_slice())))
    }

    fn storage_error(&self) -> Option<String> {
        None
    }
}

struct StoredRecording {
    blobs: Arc<dyn BlobStore>,
    key: BlobKey,
    format: AudioFormat,
    size: u64,
    handle: tokio::runtime::Handle,
    reader: Option<StoredReader>,
}

impl attachment::Recording for StoredRecording {
    fn format(&self) -> AudioFormat {
        self.format
    }

    fn size(&self) -> u64 {
        self.size
    }

    fn open(&mut self) -> std::result::Result<Box<dyn Source + '_>, String> {
        let read = self
            .handle
            .block_on(self.blobs.open(&self.key, None))
            .map_err(|e| format!("cannot read the recording: {e}"))?;
        let reader = self
            .reader
            .insert(StoredReader::new(read.stream, self.handle.clone()));
        Ok(Box::new(reader))
    }

    fn storage_error(&self) -> Option<String> {
        let e = self.reader.as_ref()?.storage_error()?;
        Some(format!("cannot read the recording: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_validation_reports_unknown_variables_and_refuses_broken_templates() {
        let ok = ContextEmailSettings {
            emailsubject: Some("New ${VM_MSGNUM} ${VM_TYPO}".into()),
            emailbody: Some(r"Dear ${VM_NAME}\n".into()),
            ..Default::default()
        };
        assert_eq!(validate_email_settings(&ok).unwrap(), ["VM_TYPO"]);
        let bad = ContextEmailSettings {
            emailbody: Some("Dear ${VM_NAME".into()),
            ..Default::default()
        };
        assert!(validate_email_settings(&bad).is_err());
        let bad = ContextEmailSettings {
            emaildateformat: Some("%Q".into()),
            ..Default::default()
        };
        assert!(validate_email_settings(&bad).is_err());
        let bad = ContextEmailSettings {
            pagerdateformat: Some("%Q".into()),
            ..Default::default()
        };
        assert!(validate_email_settings(&bad).is_err());
        let bad = ContextEmailSettings {
            pagerfromstring: Some("VM of ${VM_NAME".into()),
            ..Default::default()
        };
        assert!(validate_email_settings(&bad).is_err());
    }
}
