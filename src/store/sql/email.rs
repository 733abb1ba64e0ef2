//! The durable email outbox (written in the deposit's transaction) and per-context email settings.

use std::sync::atomic::Ordering;

use super::rows::{MailboxRow, mailbox_columns};
use super::{SqlStore, Tx};
use crate::domain::{MailboxId, MessageId, now_secs};
use crate::store::{
    ContextEmailSettings, EmailJob, EmailKind, EmailState, MailboxRecord, StoreError,
};

#[derive(sqlx::FromRow)]
struct JobRow {
    id: i64,
    message_id: String,
    mailbox_id: String,
    kind: String,
    recipients: String,
    msgnum: i64,
    fwd_cidnum: Option<String>,
    fwd_cidname: Option<String>,
    attempts: i64,
    created_at: i64,
}

#[derive(sqlx::FromRow)]
struct StateRow {
    message_id: String,
    kind: String,
    status: String,
    attempts: i64,
    last_error: Option<String>,
}

#[derive(sqlx::FromRow)]
struct SettingsRow {
    serveremail: Option<String>,
    fromstring: Option<String>,
    emailsubject: Option<String>,
    emailbody: Option<String>,
    pagersubject: Option<String>,
    pagerbody: Option<String>,
    emaildateformat: Option<String>,
    pagerfromstring: Option<String>,
    pagerdateformat: Option<String>,
}

/// The state a message shows: its email job's, else its pager job's.
fn pick(rows: impl Iterator<Item = StateRow>) -> std::collections::HashMap<String, EmailState> {
    let mut out: std::collections::HashMap<String, (bool, EmailState)> = Default::default();
    for r in rows {
        let is_email = r.kind == EmailKind::Email.as_str();
        let state = EmailState {
            status: r.status,
            attempts: r.attempts,
            last_error: r.last_error,
        };
        match out.get(&r.message_id) {
            Some((true, _)) => {}
            Some((false, _)) if !is_email => {}
            _ => {
                out.insert(r.message_id, (is_email, state));
            }
        }
    }
    out.into_iter().map(|(k, (_, v))| (k, v)).collect()
}

impl SqlStore {
    /// One mailbox by its id.
    pub async fn get_mailbox_by_id(&self, id: MailboxId) -> Result<MailboxRecord, StoreError> {
        self.qa::<MailboxRow>(concat!(
            "SELECT ",
            mailbox_columns!(),
            " FROM mailboxes WHERE uniqueid = ?"
        ))
        .bind(id.to_string())
        .fetch_optional(&self.pool)
        .await?
        .ok_or(StoreError::NotFound)?
        .try_into()
    }

    /// Whether a message's notifications are done and its email was accepted: the moment
    /// `deletevoicemail` may remove it.
    pub async fn email_done_and_sent(&self, message: MessageId) -> Result<bool, StoreError> {
        let (pending, sent): (i64, i64) = self
            .qa("SELECT COUNT(CASE WHEN status = 'pending' THEN 1 END), \
                 COUNT(CASE WHEN status = 'sent' AND kind = 'email' THEN 1 END) \
                 FROM email_jobs WHERE message_id = ?")
            .bind(message.to_string())
            .fetch_one(&self.pool)
            .await?;
        Ok(pending == 0 && sent > 0)
    }

    /// Whether deposits queue email jobs (the `[email] enabled` setting).
    pub(super) fn set_email_outbox(&self, on: bool) {
        self.email_outbox.store(on, Ordering::Relaxed);
    }

    /// Whether a message stored into `mailbox` gets e-mail jobs (`[email] enabled`, and the
    /// mailbox has an e-mail or pager address): what `queue_email` decides.
    pub fn queues_email(&self, mailbox: &MailboxRecord) -> bool {
        self.email_outbox.load(Ordering::Relaxed)
            && [&mailbox.email, &mailbox.pager]
                .iter()
                .any(|to| !to.trim().is_empty())
    }

    /// Queues the notifications of a message just inserted into `mailbox`, in its transaction:
    /// one job for `email` and one for `pager`, when the mailbox has them.
    pub(super) async fn queue_email(
        &self,
        tx: &mut Tx,
        mailbox: &MailboxRecord,
        message_id: MessageId,
        msgnum: i64,
        forwarded_by: Option<(&str, &str)>,
    ) -> Result<(), StoreError> {
        if !self.queues_email(mailbox) {
            return Ok(());
        }
        let now = now_secs();
        let now_ms = chrono::Utc::now().timestamp_millis();
        for (kind, to) in [
            (EmailKind::Email, &mailbox.email),
            (EmailKind::Pager, &mailbox.pager),
        ] {
            if to.trim().is_empty() {
                continue;
            }
            self.q(
                "INSERT INTO email_jobs (message_id, mailbox_id, kind, recipients, msgnum, \
                 fwd_cidnum, fwd_cidname, status, attempts, next_attempt_ms, lease_until_ms, \
                 created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, 'pending', 0, ?, 0, ?, ?)",
            )
            .bind(message_id.to_string())
            .bind(mailbox.id.to_string())
            .bind(kind.as_str())
            .bind(to.clone())
            .bind(msgnum)
            .bind(forwarded_by.map(|f| f.0.to_owned()))
            .bind(forwarded_by.map(|f| f.1.to_owned()))
            .bind(now_ms)
            .bind(now)
            .bind(now)
            .execute(&mut **tx)
            .await?;
        }
        Ok(())
    }

    /// Leases due email jobs.
    pub async fn claim_email_jobs(
        &self,
        now_ms: i64,
        lease_ms: i64,
        limit: u32,
    ) -> Result<Vec<EmailJob>, StoreError> {
        let mut tx = self.begin().await?;
        let rows: Vec<JobRow> = self
            .qa(
                "SELECT id, message_id, mailbox_id, kind, recipients, msgnum, fwd_cidnum, \
                 fwd_cidname, attempts, created_at FROM email_jobs WHERE status = 'pending' \
                 AND next_attempt_ms <= ? AND lease_until_ms < ? ORDER BY id LIMIT ?",
            )
            .bind(now_ms)
            .bind(now_ms)
            .bind(i64::from(limit))
            .fetch_all(&mut *tx)
            .await?;
        let lease = now_ms + lease_ms;
        let mut claimed = Vec::with_capacity(rows.len());
        for r in rows {
            // The lease condition again: another node may have claimed the row since the SELECT
            // (PostgreSQL/MySQL re-check it after waiting for that node's row lock).
            let res = self
                .q(
                    "UPDATE email_jobs SET lease_until_ms = ? WHERE id = ? AND status = 'pending' \
                    AND lease_until_ms < ?",
                )
                .bind(lease)
                .bind(r.id)
                .bind(now_ms)
                .execute(&mut *tx)
                .await?;
            if res.rows_affected() == 1 {
                claimed.push(r);
            }
        }
        tx.commit().await?;
        claimed
            .into_iter()
            .map(|r| {
                let bad = |what: &str| StoreError::Corrupt(format!("email job {}: {what}", r.id));
                Ok(EmailJob {
                    id: r.id,
                    message_id: r.message_id.parse().map_err(|_| bad("message id"))?,
                    mailbox_id: r.mailbox_id.parse().map_err(|_| bad("mailbox id"))?,
                    kind: EmailKind::parse(&r.kind).ok_or_else(|| bad("kind"))?,
                    recipients: r.recipients,
                    msgnum: r.msgnum,
                    forwarded_by: r.fwd_cidnum.map(|n| (n, r.fwd_cidname.unwrap_or_default())),
                    attempts: u32::try_from(r.attempts).unwrap_or(u32::MAX),
                    lease_until_ms: lease,
                    created_at: r.created_at,
                })
            })
            .collect()
    }

    /// Records an attempt: `status` is sent, pending (retry at `retry_at_ms`) or failed. Returns
    /// false when the job no longer held this lease (another worker took it over).
    pub async fn finish_email_job(
        &self,
        job: &EmailJob,
        status: &str,
        error: Option<&str>,
        retry_at_ms: Option<i64>,
    ) -> Result<bool, StoreError> {
        let now = now_secs();
        let error = error.map(|e| e.chars().take(1000).collect::<String>());
        let res = self
            .q(
                "UPDATE email_jobs SET status = ?, attempts = ?, next_attempt_ms = ?, \
                 lease_until_ms = 0, last_error = ?, updated_at = ?, sent_at = ? \
                 WHERE id = ? AND lease_until_ms = ?",
            )
            .bind(status.to_owned())
            .bind(i64::from(job.attempts) + 1)
            .bind(retry_at_ms.unwrap_or(0))
            .bind(error)
            .bind(now)
            .bind((status == "sent").then_some(now))
            .bind(job.id)
            .bind(job.lease_until_ms)
            .execute(&self.pool)
            .await?;
        Ok(res.rows_affected() > 0)
    }

    /// Ends a job without an attempt (its message or mailbox is gone).
    pub async fn drop_email_job(&self, job: &EmailJob, reason: &str) -> Result<(), StoreError> {
        self.q(
            "UPDATE email_jobs SET status = 'failed', lease_until_ms = 0, last_error = ?, \
             updated_at = ? WHERE id = ?",
        )
        .bind(reason.to_owned())
        .bind(now_secs())
        .bind(job.id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Removes sent and failed jobs last updated before `before` (Unix seconds); returns how many.
    /// A message's finished jobs stay while another of its jobs is pending: `deletevoicemail`
    /// reads them when that one finishes.
    pub async fn sweep_email_jobs(&self, before: i64) -> Result<u64, StoreError> {
        // The inner query is a derived table: MySQL refuses a subquery on the table being deleted from.
        Ok(self
            .q(
                "DELETE FROM email_jobs WHERE status IN ('sent', 'failed') AND updated_at < ? \
                 AND message_id NOT IN (SELECT message_id FROM \
                 (SELECT message_id FROM email_jobs WHERE status = 'pending') AS p)",
            )
            .bind(before)
            .execute(&self.pool)
            .await?
            .rows_affected())
    }

    /// The email state of one message (`None` when no notification was queued).
    pub async fn email_state(
        &self,
        mailbox: MailboxId,
        message: MessageId,
    ) -> Result<Option<EmailState>, StoreError> {
        let rows: Vec<StateRow> = self
            .qa(
                "SELECT message_id, kind, status, attempts, last_error FROM email_jobs \
                 WHERE mailbox_id = ? AND message_id = ?",
            )
            .bind(mailbox.to_string())
            .bind(message.to_string())
            .fetch_all(&self.pool)
            .await?;
        Ok(pick(rows.into_iter()).remove(&message.to_string()))
    }

    /// Email states of the messages of a mailbox whose ids lie in `first..=last` (a listing page:
    /// ids are time-ordered, so one indexed range query serves the page).
    pub async fn email_states(
        &self,
        mailbox: MailboxId,
        first: MessageId,
        last: MessageId,
    ) -> Result<std::collections::HashMap<String, EmailState>, StoreError> {
        let rows: Vec<StateRow> = self
            .qa(
                "SELECT message_id, kind, status, attempts, last_error FROM email_jobs \
                 WHERE mailbox_id = ? AND message_id >= ? AND message_id <= ?",
            )
            .bind(mailbox.to_string())
            .bind(first.to_string())
            .bind(last.to_string())
            .fetch_all(&self.pool)
            .await?;
        Ok(pick(rows.into_iter()))
    }

    /// A context's email settings (all `None` when it has none).
    pub async fn context_email_settings(
        &self,
        context: &str,
    ) -> Result<ContextEmailSettings, StoreError> {
        let row: Option<SettingsRow> = self
            .qa(
                "SELECT serveremail, fromstring, emailsubject, emailbody, pagersubject, pagerbody, \
                 emaildateformat, pagerfromstring, pagerdateformat FROM context_email_settings \
                 WHERE context = ?",
            )
            .bind(context.to_owned())
            .fetch_optional(&self.pool)
            .await?;
        Ok(row
            .map(|r| ContextEmailSettings {
                serveremail: r.serveremail,
                fromstring: r.fromstring,
                emailsubject: r.emailsubject,
                emailbody: r.emailbody,
                pagersubject: r.pagersubject,
                pagerbody: r.pagerbody,
                emaildateformat: r.emaildateformat,
                pagerfromstring: r.pagerfromstring,
                pagerdateformat: r.pagerdateformat,
            })
            .unwrap_or_default())
    }

    /// Replaces a context's email settings.
    pub async fn put_context_email_settings(
        &self,
        context: &str,
        s: &ContextEmailSettings,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        self.q("DELETE FROM context_email_settings WHERE context = ?")
            .bind(context.to_owned())
            .execute(&mut *tx)
            .await?;
        self.q(
            "INSERT INTO context_email_settings (context, serveremail, fromstring, emailsubject, \
             emailbody, pagersubject, pagerbody, emaildateformat, pagerfromstring, \
             pagerdateformat, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(context.to_owned())
        .bind(s.serveremail.clone())
        .bind(s.fromstring.clone())
        .bind(s.emailsubject.clone())
        .bind(s.emailbody.clone())
        .bind(s.pagersubject.clone())
        .bind(s.pagerbody.clone())
        .bind(s.emaildateformat.clone())
        .bind(s.pagerfromstring.clone())
        .bind(s.pagerdateformat.clone())
        .bind(now_secs())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }
}
