//! The admin web UI's tables (admin users, sessions, audit log) and the dashboard's aggregates.
//!
//! Indexes the aggregates use (0008_admin.sql), so they stay fast at a million messages:
//! - totals and storage per context: `messages_context_usage (mailboxcontext, folder, is_read,
//!   byte_size)`, read without touching the table (an index-only scan, a range of it for an admin
//!   limited to some contexts);
//! - deposits per day: a range of `messages_origtime (origtime)` over the last 30 days;
//! - live counts of a page of mailboxes: `messages_mailbox_folder_counts (mailbox_id, folder, id, is_read, flag)`;
//! - queues: `email_jobs_due (status, …)`, `webhook_deliveries_due (status, …)`; `mwi_pushes` has
//!   one row per (target, mailbox) and is read whole.

use super::{Dialect, SqlStore, StoreError, is_unique_violation};
use crate::domain::{MailboxId, MwiCounts, now_secs};

/// A person who may sign in to the web UI.
#[derive(Clone)]
pub struct AdminUserRecord {
    pub id: String,
    /// Lower-cased.
    pub email: String,
    /// argon2id PHC string.
    pub password_hash: String,
    /// Contexts the admin may see; empty = every context.
    pub contexts: Vec<String>,
    pub last_login_at: Option<i64>,
    pub created_at: i64,
    /// A disabled admin cannot sign in and has no sessions.
    pub disabled: bool,
}

impl std::fmt::Debug for AdminUserRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminUserRecord")
            .field("id", &self.id)
            .field("email", &self.email)
            .field("password_hash", &"***")
            .field("contexts", &self.contexts)
            .field("disabled", &self.disabled)
            .finish()
    }
}

#[derive(sqlx::FromRow)]
struct AdminUserRow {
    id: String,
    email: String,
    password_hash: String,
    contexts: String,
    last_login_at: Option<i64>,
    created_at: i64,
    disabled: i64,
}

impl From<AdminUserRow> for AdminUserRecord {
    fn from(r: AdminUserRow) -> Self {
        Self {
            id: r.id,
            email: r.email,
            password_hash: r.password_hash,
            contexts: split_contexts(&r.contexts),
            last_login_at: r.last_login_at,
            created_at: r.created_at,
            disabled: r.disabled != 0,
        }
    }
}

fn split_contexts(s: &str) -> Vec<String> {
    s.split(',')
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .map(str::to_owned)
        .collect()
}

const USER_COLUMNS: &str =
    "u.id, u.email, u.password_hash, u.contexts, u.last_login_at, u.created_at, u.disabled";

/// A signed-in browser.
#[derive(Debug, Clone)]
pub struct AdminSessionRecord {
    pub admin: AdminUserRecord,
    pub created_at: i64,
    pub last_seen_at: i64,
    pub expires_at: i64,
}

/// Brute-force limits of sign-in.
#[derive(Debug, Clone, Copy)]
pub struct LoginPolicy {
    pub max_failures: u32,
    pub window_secs: i64,
    pub lockout_secs: i64,
}

/// Outcome of reserving a sign-in attempt.
#[derive(Debug, Clone)]
pub enum LoginAttempt {
    /// No such admin.
    Unknown,
    /// The password may be checked against this admin's hash.
    Allowed(AdminUserRecord),
    /// Too many failures: locked until this Unix time.
    Locked { until: i64 },
}

/// One audit log line to write.
#[derive(Debug, Clone)]
pub struct NewAuditEntry {
    pub admin_id: String,
    pub admin_email: String,
    /// What was done, e.g. `mailbox.create`.
    pub action: String,
    /// What it was done to, e.g. `100@default`.
    pub target: String,
    pub detail: String,
    pub ip: String,
}

/// One audit log line.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AuditRecord {
    pub id: i64,
    pub at: i64,
    pub admin_id: String,
    pub admin_email: String,
    pub action: String,
    pub target: String,
    pub detail: String,
    pub ip: String,
}

/// Dashboard totals.
#[derive(Debug, Clone, Default)]
pub struct Totals {
    pub contexts: i64,
    pub mailboxes: i64,
    pub messages: i64,
    /// Unread messages in INBOX/Urgent (the MWI "new" count).
    pub new_messages: i64,
    /// Sum of the messages' audio sizes.
    pub bytes: i64,
}

/// Messages and audio bytes of one context.
#[derive(Debug, Clone)]
pub struct ContextUsage {
    pub context: String,
    pub messages: i64,
    pub bytes: i64,
}

/// State of one delivery queue.
#[derive(Debug, Clone, Default)]
pub struct QueueHealth {
    /// Waiting to be sent (first try or retry).
    pub pending: i64,
    /// Pending after at least one failed attempt.
    pub failing: i64,
    /// Given up on.
    pub dead: i64,
    /// The most recent error of a pending or dead item.
    pub last_error: Option<String>,
}

/// The email, webhook and MWI-push queues.
#[derive(Debug, Clone, Default)]
pub struct DeliveryHealth {
    pub email: QueueHealth,
    pub webhooks: QueueHealth,
    pub mwi: QueueHealth,
    /// Rows Asterisk wrote to the shared messages table: waiting to be taken in (failing: for
    /// over a minute) and refused (dead), with the latest refusal's reason.
    pub asterisk: QueueHealth,
}

/// A delivery queue an admin can act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryQueue {
    /// Notification e-mails (`email_jobs`).
    Email,
    /// Webhook deliveries (`webhook_deliveries`).
    Webhook,
    /// MWI pushes to ARI, AMI and SIP targets (`mwi_pushes`).
    Mwi,
}

impl DeliveryQueue {
    /// Every queue, in the order the dashboard shows them.
    pub const ALL: [DeliveryQueue; 3] = [Self::Email, Self::Webhook, Self::Mwi];

    /// Its name in URLs, /metrics and the audit log.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Email => "email",
            Self::Webhook => "webhook",
            Self::Mwi => "mwi",
        }
    }

    /// The queue named `s`, if any.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|q| q.as_str() == s)
    }
}

/// `?, ?, ?` for `n` values.
fn placeholders(n: usize) -> String {
    vec!["?"; n].join(", ")
}

/// ` AND {col} IN (?, …)` when the admin is limited to some contexts.
fn scope(col: &str, contexts: Option<&[String]>) -> String {
    match contexts {
        Some(c) => format!(" AND {col} IN ({})", placeholders(c.len().max(1))),
        None => String::new(),
    }
}

/// ` AND {col} IN (SELECT {key} FROM {table} WHERE context IN (?, …))` when the admin is limited
/// to some contexts: rows limited through the `table` row they belong to (bound as [`scope`]).
fn scope_through(col: &str, table: &str, key: &str, contexts: Option<&[String]>) -> String {
    match contexts {
        Some(_) => format!(
            " AND {col} IN (SELECT {key} FROM {table} WHERE 1 = 1{})",
            scope("context", contexts)
        ),
        None => String::new(),
    }
}

/// Binds the contexts of [`scope`] (an empty limit matches no context: `IN ('')`).
macro_rules! bind_scope {
    ($q:expr, $contexts:expr) => {{
        let mut q = $q;
        if let Some(c) = $contexts {
            if c.is_empty() {
                q = q.bind(String::new());
            }
            for name in c {
                q = q.bind(name.clone());
            }
        }
        q
    }};
}

impl SqlStore {
    /// `expr` as a 64-bit integer (PostgreSQL's SUM of BIGINT is NUMERIC, MySQL's DECIMAL).
    fn int64(&self, expr: &str) -> String {
        match self.dialect {
            Dialect::Sqlite => expr.to_owned(),
            Dialect::Postgres => format!("CAST({expr} AS BIGINT)"),
            Dialect::MySql => format!("CAST({expr} AS SIGNED)"),
        }
    }

    /// Creates an admin user; a taken email is a conflict.
    pub async fn create_admin_user(
        &self,
        email: &str,
        password_hash: &str,
        contexts: &[String],
    ) -> Result<AdminUserRecord, StoreError> {
        let now = now_secs();
        let id = uuid::Uuid::now_v7().to_string();
        let res = self
            .q(
                "INSERT INTO admin_users (id, email, password_hash, contexts, created_at, \
                updated_at) VALUES (?, ?, ?, ?, ?, ?)",
            )
            .bind(id.clone())
            .bind(email.to_owned())
            .bind(password_hash.to_owned())
            .bind(contexts.join(","))
            .bind(now)
            .bind(now)
            .execute(&self.pool)
            .await;
        match res {
            Ok(_) => Ok(AdminUserRecord {
                id,
                email: email.to_owned(),
                password_hash: password_hash.to_owned(),
                contexts: contexts.to_vec(),
                last_login_at: None,
                created_at: now,
                disabled: false,
            }),
            Err(e) if is_unique_violation(&e) => Err(StoreError::Conflict(format!(
                "admin {email} already exists"
            ))),
            Err(e) => Err(e.into()),
        }
    }

    /// Sets an admin's password (and clears a lockout).
    pub async fn set_admin_password(
        &self,
        email: &str,
        password_hash: &str,
    ) -> Result<(), StoreError> {
        let res = self
            .q(
                "UPDATE admin_users SET password_hash = ?, failed_logins = 0, locked_until = 0, \
                updated_at = ? WHERE email = ?",
            )
            .bind(password_hash.to_owned())
            .bind(now_secs())
            .bind(email.to_owned())
            .execute(&self.pool)
            .await?;
        if res.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    /// Reserves a sign-in attempt: refuses while the admin is locked out.
    pub async fn begin_login(&self, email: &str) -> Result<LoginAttempt, StoreError> {
        let row = self
            .qa_owned::<(String, String, String, String, Option<i64>, i64, i64, i64)>(format!(
                "SELECT {USER_COLUMNS}, u.locked_until FROM admin_users u WHERE u.email = ?"
            ))
            .bind(email.to_owned())
            .fetch_optional(&self.pool)
            .await?;
        let Some((
            id,
            email,
            password_hash,
            contexts,
            last_login_at,
            created_at,
            disabled,
            locked_until,
        )) = row
        else {
            return Ok(LoginAttempt::Unknown);
        };
        // A disabled admin is refused like an unknown one (same answer, same work).
        if disabled != 0 {
            return Ok(LoginAttempt::Unknown);
        }
        if locked_until > now_secs() {
            return Ok(LoginAttempt::Locked {
                until: locked_until,
            });
        }
        Ok(LoginAttempt::Allowed(AdminUserRecord::from(AdminUserRow {
            id,
            email,
            password_hash,
            contexts,
            last_login_at,
            created_at,
            disabled,
        })))
    }

    /// Records the result of a sign-in attempt. Failures within `window_secs` of the first one
    /// count up; the `max_failures`-th locks the admin for `lockout_secs`. Returns the lock's end
    /// when this failure locked the account.
    pub async fn finish_login(
        &self,
        admin_id: &str,
        ok: bool,
        policy: LoginPolicy,
    ) -> Result<Option<i64>, StoreError> {
        let now = now_secs();
        let mut tx = self.begin().await?;
        if ok {
            self.q(
                "UPDATE admin_users SET failed_logins = 0, fail_window_start = 0, \
                    last_login_at = ? WHERE id = ?",
            )
            .bind(now)
            .bind(admin_id.to_owned())
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            return Ok(None);
        }
        let row = self
            .qa_owned::<(i64, i64)>(format!(
                "SELECT failed_logins, fail_window_start FROM admin_users WHERE id = ?{}",
                self.dialect.for_update()
            ))
            .bind(admin_id.to_owned())
            .fetch_optional(&mut *tx)
            .await?;
        let Some((failures, window_start)) = row else {
            return Err(StoreError::NotFound);
        };
        let (failures, window_start) = if now - window_start >= policy.window_secs {
            (1, now)
        } else {
            (failures + 1, window_start)
        };
        let locked = failures >= i64::from(policy.max_failures);
        let (failures, window_start, until) = if locked {
            (0, 0, now + policy.lockout_secs)
        } else {
            (failures, window_start, 0)
        };
        self.q(
            "UPDATE admin_users SET failed_logins = ?, fail_window_start = ?, \
                locked_until = ? WHERE id = ?",
        )
        .bind(failures)
        .bind(window_start)
        .bind(until)
        .bind(admin_id.to_owned())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(locked.then_some(until))
    }

    /// Stores a new session (and removes expired ones).
    pub async fn create_admin_session(
        &self,
        token_hash: &str,
        admin_id: &str,
        expires_at: i64,
        user_agent: &str,
        ip: &str,
    ) -> Result<(), StoreError> {
        let now = now_secs();
        self.q("DELETE FROM admin_sessions WHERE expires_at < ?")
            .bind(now)
            .execute(&self.pool)
            .await?;
        self.q(
            "INSERT INTO admin_sessions (token_hash, admin_id, created_at, last_seen_at, \
                expires_at, user_agent, ip) VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(token_hash.to_owned())
        .bind(admin_id.to_owned())
        .bind(now)
        .bind(now)
        .bind(expires_at)
        .bind(user_agent.chars().take(255).collect::<String>())
        .bind(ip.chars().take(64).collect::<String>())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The session with this token hash, with its admin.
    pub async fn find_admin_session(
        &self,
        token_hash: &str,
    ) -> Result<AdminSessionRecord, StoreError> {
        let row = self
            .qa_owned::<(
                String,
                String,
                String,
                String,
                Option<i64>,
                i64,
                i64,
                i64,
                i64,
                i64,
            )>(format!(
                "SELECT {USER_COLUMNS}, s.created_at, s.last_seen_at, s.expires_at \
                     FROM admin_sessions s JOIN admin_users u ON u.id = s.admin_id \
                     WHERE s.token_hash = ? AND u.disabled = 0"
            ))
            .bind(token_hash.to_owned())
            .fetch_optional(&self.pool)
            .await?
            .ok_or(StoreError::NotFound)?;
        let (
            id,
            email,
            password_hash,
            contexts,
            last_login_at,
            created_at,
            disabled,
            s_created,
            seen,
            exp,
        ) = row;
        Ok(AdminSessionRecord {
            admin: AdminUserRow {
                id,
                email,
                password_hash,
                contexts,
                last_login_at,
                created_at,
                disabled,
            }
            .into(),
            created_at: s_created,
            last_seen_at: seen,
            expires_at: exp,
        })
    }

    /// Records that a session was used now.
    pub async fn touch_admin_session(&self, token_hash: &str) -> Result<(), StoreError> {
        self.q("UPDATE admin_sessions SET last_seen_at = ? WHERE token_hash = ?")
            .bind(now_secs())
            .bind(token_hash.to_owned())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Ends a session.
    pub async fn delete_admin_session(&self, token_hash: &str) -> Result<(), StoreError> {
        self.q("DELETE FROM admin_sessions WHERE token_hash = ?")
            .bind(token_hash.to_owned())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Every admin user, by email.
    pub async fn list_admin_users(&self) -> Result<Vec<AdminUserRecord>, StoreError> {
        Ok(self
            .qa_owned::<AdminUserRow>(format!(
                "SELECT {USER_COLUMNS} FROM admin_users u ORDER BY u.email"
            ))
            .fetch_all(&self.pool)
            .await?
            .into_iter()
            .map(Into::into)
            .collect())
    }

    /// One admin user by id.
    pub async fn get_admin_user(&self, id: &str) -> Result<AdminUserRecord, StoreError> {
        self.qa_owned::<AdminUserRow>(format!(
            "SELECT {USER_COLUMNS} FROM admin_users u WHERE u.id = ?"
        ))
        .bind(id.to_owned())
        .fetch_optional(&self.pool)
        .await?
        .map(Into::into)
        .ok_or(StoreError::NotFound)
    }

    /// Sets the contexts an admin is limited to (empty = every context).
    pub async fn set_admin_contexts(
        &self,
        id: &str,
        contexts: &[String],
    ) -> Result<(), StoreError> {
        let res = self
            .q("UPDATE admin_users SET contexts = ?, updated_at = ? WHERE id = ?")
            .bind(contexts.join(","))
            .bind(now_secs())
            .bind(id.to_owned())
            .execute(&self.pool)
            .await?;
        if res.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    /// Disables (ending their sessions) or enables an admin.
    pub async fn set_admin_disabled(&self, id: &str, disabled: bool) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        let res = self
            .q(
                "UPDATE admin_users SET disabled = ?, failed_logins = 0, locked_until = 0, \
                updated_at = ? WHERE id = ?",
            )
            .bind(i64::from(disabled))
            .bind(now_secs())
            .bind(id.to_owned())
            .execute(&mut *tx)
            .await?;
        if res.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        if disabled {
            self.q("DELETE FROM admin_sessions WHERE admin_id = ?")
                .bind(id.to_owned())
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Sets an admin's password by id, clears a lockout and ends their sessions.
    pub async fn reset_admin_password(
        &self,
        id: &str,
        password_hash: &str,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        let res = self
            .q(
                "UPDATE admin_users SET password_hash = ?, failed_logins = 0, locked_until = 0, \
                updated_at = ? WHERE id = ?",
            )
            .bind(password_hash.to_owned())
            .bind(now_secs())
            .bind(id.to_owned())
            .execute(&mut *tx)
            .await?;
        if res.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        self.q("DELETE FROM admin_sessions WHERE admin_id = ?")
            .bind(id.to_owned())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Deletes an admin and their sessions (the audit log keeps their email).
    pub async fn delete_admin_user(&self, id: &str) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        self.q("DELETE FROM admin_sessions WHERE admin_id = ?")
            .bind(id.to_owned())
            .execute(&mut *tx)
            .await?;
        let res = self
            .q("DELETE FROM admin_users WHERE id = ?")
            .bind(id.to_owned())
            .execute(&mut *tx)
            .await?;
        if res.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        tx.commit().await?;
        Ok(())
    }

    /// Messages and unread messages per folder of one mailbox (folders without messages are
    /// absent), read from the `messages_mailbox_folder_counts` index alone. Greetings Asterisk
    /// shares (msgnum -1) are rows too, in their own "folders": not counted.
    pub async fn folder_counts(
        &self,
        mailbox: MailboxId,
    ) -> Result<Vec<(String, i64, i64)>, StoreError> {
        Ok(self
            .qa::<(String, i64, i64)>(
                "SELECT folder, COUNT(*), COUNT(CASE WHEN is_read = 0 THEN 1 END) \
                 FROM messages WHERE mailbox_id = ? AND folder NOT IN ('unavail', 'busy', \
                 'temp', 'greet') GROUP BY folder",
            )
            .bind(mailbox.to_string())
            .fetch_all(&self.pool)
            .await?)
    }

    /// Appends to the audit log.
    pub async fn write_audit(&self, e: &NewAuditEntry) -> Result<(), StoreError> {
        let clip = |s: &str, n: usize| s.chars().take(n).collect::<String>();
        self.q(
            "INSERT INTO admin_audit (at, admin_id, admin_email, action, target, detail, ip) \
                VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(now_secs())
        .bind(e.admin_id.clone())
        .bind(clip(&e.admin_email, 255))
        .bind(clip(&e.action, 64))
        .bind(clip(&e.target, 255))
        .bind(clip(&e.detail, 1024))
        .bind(clip(&e.ip, 64))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The audit log, newest first, before the id `before` (keyset pagination).
    pub async fn list_audit(
        &self,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Vec<AuditRecord>, StoreError> {
        Ok(self
            .qa::<AuditRecord>(
                "SELECT id, at, admin_id, admin_email, action, target, detail, ip \
                 FROM admin_audit WHERE id < ? ORDER BY id DESC LIMIT ?",
            )
            .bind(before.unwrap_or(i64::MAX))
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?)
    }

    /// Totals over every context, or over `contexts`.
    pub async fn admin_totals(&self, contexts: Option<&[String]>) -> Result<Totals, StoreError> {
        let mut tx = self.begin_read().await?;
        let (ctx,) = bind_scope!(
            self.qa_owned::<(i64,)>(format!(
                "SELECT COUNT(*) FROM contexts WHERE 1 = 1{}",
                scope("name", contexts)
            )),
            contexts
        )
        .fetch_one(&mut *tx)
        .await?;
        let (mbx,) = bind_scope!(
            self.qa_owned::<(i64,)>(format!(
                "SELECT COUNT(*) FROM mailboxes WHERE 1 = 1{}",
                scope("context", contexts)
            )),
            contexts
        )
        .fetch_one(&mut *tx)
        .await?;
        let (messages, new_messages, bytes) = bind_scope!(
            self.qa_owned::<(i64, i64, i64)>(format!(
                "SELECT COUNT(*), COUNT(CASE WHEN folder IN ('INBOX', 'Urgent') AND is_read = 0 \
                 THEN 1 END), {} FROM messages WHERE msgnum >= 0{}",
                self.int64("COALESCE(SUM(byte_size), 0)"),
                scope("mailboxcontext", contexts)
            )),
            contexts
        )
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Totals {
            contexts: ctx,
            mailboxes: mbx,
            messages,
            new_messages,
            bytes,
        })
    }

    /// Messages and bytes per context (contexts without messages are absent).
    pub async fn usage_by_context(
        &self,
        contexts: Option<&[String]>,
    ) -> Result<Vec<ContextUsage>, StoreError> {
        let rows = bind_scope!(
            self.qa_owned::<(String, i64, i64)>(format!(
                "SELECT mailboxcontext, COUNT(*), {} FROM messages WHERE msgnum >= 0{} \
                 GROUP BY mailboxcontext ORDER BY mailboxcontext",
                self.int64("COALESCE(SUM(byte_size), 0)"),
                scope("mailboxcontext", contexts)
            )),
            contexts
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(context, messages, bytes)| ContextUsage {
                context,
                messages,
                bytes,
            })
            .collect())
    }

    /// Messages whose `origtime` is at or after `since`, per day: `(day, count)` where day 0
    /// starts at `since`.
    pub async fn deposits_per_day(
        &self,
        since: i64,
        contexts: Option<&[String]>,
    ) -> Result<Vec<(i64, i64)>, StoreError> {
        let div = match self.dialect {
            Dialect::MySql => "DIV",
            Dialect::Sqlite | Dialect::Postgres => "/",
        };
        let q = self
            .qa_owned::<(i64, i64)>(format!(
                "SELECT (origtime - ?) {div} 86400, COUNT(*) FROM messages WHERE origtime >= ? \
                 AND msgnum >= 0{} \
                 GROUP BY 1 ORDER BY 1",
                scope("mailboxcontext", contexts)
            ))
            .bind(since)
            .bind(since);
        Ok(bind_scope!(q, contexts).fetch_all(&self.pool).await?)
    }

    /// New/old counts of some mailboxes (mailboxes without messages are absent).
    pub async fn counts_of(
        &self,
        mailboxes: &[MailboxId],
    ) -> Result<Vec<(MailboxId, MwiCounts)>, StoreError> {
        if mailboxes.is_empty() {
            return Ok(vec![]);
        }
        let mut q = self.qa_owned::<(String, i64, i64, i64, i64)>(format!(
            "SELECT mailbox_id, \
             COUNT(CASE WHEN folder IN ('INBOX', 'Urgent') AND is_read = 0 THEN 1 END), \
             COUNT(CASE WHEN folder = 'Old' OR (folder IN ('INBOX', 'Urgent') AND is_read <> 0) \
                   THEN 1 END), \
             COUNT(CASE WHEN folder IN ('INBOX', 'Urgent') AND is_read = 0 \
                   AND (folder = 'Urgent' OR flag = 'Urgent') THEN 1 END), \
             COUNT(CASE WHEN (folder = 'Old' OR (folder IN ('INBOX', 'Urgent') AND is_read <> 0)) \
                   AND (folder = 'Urgent' OR flag = 'Urgent') THEN 1 END) \
             FROM messages WHERE mailbox_id IN ({}) GROUP BY mailbox_id",
            placeholders(mailboxes.len())
        ));
        for id in mailboxes {
            q = q.bind(id.to_string());
        }
        let mut rows = q.fetch_all(&self.pool).await?;
        if self.has_imap_contexts() {
            // Mailboxes whose messages are in IMAP: their last observed counts.
            let mut q = self.qa_owned::<(String, String, String, i64, i64, i64, i64)>(format!(
                "SELECT i.mailbox_id, m.context, m.mailbox, i.new_count, i.old_count, i.urgent_new, \
                 i.urgent_old FROM imap_counts i JOIN mailboxes m ON m.uniqueid = i.mailbox_id \
                 WHERE i.mailbox_id IN ({})",
                placeholders(mailboxes.len())
            ));
            for id in mailboxes {
                q = q.bind(id.to_string());
            }
            for (id, context, number, new, old, un, uo) in q.fetch_all(&self.pool).await? {
                if self.is_imap_mailbox(&context, &number) {
                    rows.retain(|r| r.0 != id);
                    rows.push((id, new, old, un, uo));
                }
            }
        }
        rows.into_iter()
            .map(|(id, new, old, urgent_new, urgent_old)| {
                let id: MailboxId = id
                    .parse()
                    .map_err(|_| StoreError::Corrupt(format!("mailbox id {id:?}")))?;
                let n = |v: i64| u32::try_from(v).unwrap_or(u32::MAX);
                Ok((
                    id,
                    MwiCounts {
                        new: n(new),
                        old: n(old),
                        urgent_new: n(urgent_new),
                        urgent_old: n(urgent_old),
                        version: 0,
                    },
                ))
            })
            .collect()
    }

    /// The email, webhook and MWI-push queues, over every context or over `contexts`.
    pub async fn delivery_health(
        &self,
        contexts: Option<&[String]>,
    ) -> Result<DeliveryHealth, StoreError> {
        let email_scope = scope_through("mailbox_id", "mailboxes", "uniqueid", contexts);
        let email = self
            .queue(
                "email_jobs",
                "status = 'pending'",
                "status = 'failed'",
                "status IN ('pending', 'failed')",
                "updated_at",
                &email_scope,
                contexts,
            )
            .await?;
        let hook_scope = scope_through("webhook_id", "webhooks", "id", contexts);
        let webhooks = self
            .queue(
                "webhook_deliveries",
                "status = 'pending'",
                "status = 'dead'",
                "status IN ('pending', 'dead')",
                "updated_at",
                &hook_scope,
                contexts,
            )
            .await?;
        let mwi = self
            .queue(
                "mwi_pushes",
                "pushed_version < wanted_version",
                "1 = 0",
                "pushed_version < wanted_version",
                "next_attempt_ms",
                &scope("context", contexts),
                contexts,
            )
            .await?;
        Ok(DeliveryHealth {
            email,
            webhooks,
            mwi,
            asterisk: self.asterisk_health(contexts).await?,
        })
    }

    /// Makes the queue's failing and given-up jobs (over every context or over `contexts`) due
    /// now: a failing job skips the rest of its backoff, a given-up one gets one more try (it is
    /// given up again if that fails past the queue's `max_age_secs`). Jobs being tried are left
    /// alone. Returns how many were made due.
    pub async fn retry_queue(
        &self,
        queue: DeliveryQueue,
        contexts: Option<&[String]>,
    ) -> Result<u64, StoreError> {
        let now_ms = chrono::Utc::now().timestamp_millis();
        // The same scopes as `delivery_health`: an e-mail by its mailbox, a webhook delivery by
        // its webhook.
        let sql = match queue {
            DeliveryQueue::Email => format!(
                "UPDATE email_jobs SET next_attempt_ms = ?, updated_at = ?, status = 'pending' \
                 WHERE (status = 'failed' OR (status = 'pending' AND attempts > 0)) \
                 AND lease_until_ms < ?{}",
                scope_through("mailbox_id", "mailboxes", "uniqueid", contexts)
            ),
            DeliveryQueue::Webhook => format!(
                "UPDATE webhook_deliveries SET next_attempt_ms = ?, updated_at = ?, \
                 status = 'pending' \
                 WHERE (status = 'dead' OR (status = 'pending' AND attempts > 0)) \
                 AND lease_until_ms < ?{}",
                scope_through("webhook_id", "webhooks", "id", contexts)
            ),
            DeliveryQueue::Mwi => format!(
                "UPDATE mwi_pushes SET next_attempt_ms = ? \
                 WHERE pushed_version < wanted_version AND attempts > 0 AND lease_until_ms < ?{}",
                scope("context", contexts)
            ),
        };
        let set = self.q_owned(sql).bind(now_ms);
        let set = match queue {
            DeliveryQueue::Mwi => set,
            DeliveryQueue::Email | DeliveryQueue::Webhook => set.bind(now_secs()),
        };
        let mut tx = self.begin().await?;
        let done = bind_scope!(set.bind(now_ms), contexts)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(done.rows_affected())
    }

    /// The rows Asterisk wrote that wait to be taken in, or were refused.
    async fn asterisk_health(
        &self,
        contexts: Option<&[String]>,
    ) -> Result<QueueHealth, StoreError> {
        let scope_sql = scope("mailboxcontext", contexts);
        let (pending, failing, dead) = bind_scope!(
            self.qa_owned::<(i64, i64, i64)>(format!(
                "SELECT COUNT(CASE WHEN asterisk_state = 1 THEN 1 END), \
                 COUNT(CASE WHEN asterisk_state = 1 AND created_at < ? THEN 1 END), \
                 COUNT(CASE WHEN asterisk_state = 2 THEN 1 END) FROM messages \
                 WHERE asterisk_state IN (1, 2){scope_sql}"
            ))
            .bind(now_secs() - 60),
            contexts
        )
        .fetch_one(&self.pool)
        .await?;
        let last_error = bind_scope!(
            self.qa_owned::<(String, i64, String)>(format!(
                "SELECT dir, msgnum, asterisk_note FROM messages WHERE asterisk_state = 2\
                 {scope_sql} ORDER BY updated_at DESC LIMIT 1"
            )),
            contexts
        )
        .fetch_optional(&self.pool)
        .await?
        .map(|(dir, msgnum, note)| format!("{dir} msg{msgnum:04}: {note}"));
        Ok(QueueHealth {
            pending,
            failing,
            dead,
            last_error,
        })
    }

    #[allow(clippy::too_many_arguments)]
    async fn queue(
        &self,
        table: &str,
        pending: &str,
        dead: &str,
        open: &str,
        time_col: &str,
        scope_sql: &str,
        contexts: Option<&[String]>,
    ) -> Result<QueueHealth, StoreError> {
        let (pending_n, failing, dead_n) = bind_scope!(
            self.qa_owned::<(i64, i64, i64)>(format!(
                "SELECT COUNT(CASE WHEN {pending} THEN 1 END), \
                 COUNT(CASE WHEN {pending} AND attempts > 0 THEN 1 END), \
                 COUNT(CASE WHEN {dead} THEN 1 END) FROM {table} WHERE ({open}){scope_sql}"
            )),
            contexts
        )
        .fetch_one(&self.pool)
        .await?;
        let last_error = bind_scope!(
            self.qa_owned::<(Option<String>,)>(format!(
                "SELECT last_error FROM {table} WHERE ({open}) AND last_error IS NOT NULL\
                 {scope_sql} ORDER BY {time_col} DESC LIMIT 1"
            )),
            contexts
        )
        .fetch_optional(&self.pool)
        .await?
        .and_then(|(e,)| e);
        Ok(QueueHealth {
            pending: pending_n,
            failing,
            dead: dead_n,
            last_error,
        })
    }
}
