//! Admin users of the web UI: accounts (argon2id passwords, optional context limits), sign-in with
//! a lockout, sessions (a random 256-bit token, stored as its SHA-256, with an absolute and an
//! idle expiry), CSRF tokens, the audit log, and the admin's views of contexts, mailboxes and the
//! dashboard. Every change an admin makes goes through the same services the API uses, with a
//! principal limited to what the admin may see, and is written to the audit log.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use argon2::Argon2;
use argon2::password_hash::rand_core::{OsRng, RngCore};
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use super::cpu_pool::PoolLoad;
use super::{EventStream, MailboxCursor, MailboxSettings, Result, ServiceError, Voicemail};
use crate::domain::{ApiKeyId, MailboxAddress, MwiCounts, Principal, Role, now_secs};
use crate::store::sql::admin::{AdminUserRecord, LoginAttempt, LoginPolicy, NewAuditEntry};
use crate::store::{ContextRecord, MailboxRecord, StoreError};

pub use crate::store::sql::admin::{
    AuditRecord as AuditEntry, ContextUsage, DeliveryHealth, DeliveryQueue, QueueHealth, Totals,
};

/// A signed-in admin (never the password hash).
#[derive(Debug, Clone)]
pub struct Admin {
    pub id: String,
    pub email: String,
    /// Contexts this admin may see; empty = every context.
    pub contexts: Vec<String>,
}

impl From<AdminUserRecord> for Admin {
    fn from(r: AdminUserRecord) -> Self {
        Self {
            id: r.id,
            email: r.email,
            contexts: r.contexts,
        }
    }
}

impl Admin {
    /// Whether the admin may see `context`.
    pub fn sees(&self, context: &str) -> bool {
        self.contexts.is_empty() || self.contexts.iter().any(|c| c == context)
    }

    /// The contexts an aggregate is limited to (`None` = every context).
    pub fn limit(&self) -> Option<&[String]> {
        (!self.contexts.is_empty()).then_some(self.contexts.as_slice())
    }

    /// The principal the services see for this admin acting on `context` (`None`: all the
    /// admin's contexts, only for an unlimited admin).
    fn principal(&self, context: Option<&str>) -> Result<Principal> {
        let key_id = self.id.parse().unwrap_or_else(|_| ApiKeyId::nil());
        match context {
            Some(c) if self.sees(c) => Ok(Principal {
                key_id,
                role: Role::Admin,
                context: (!self.contexts.is_empty()).then(|| c.to_owned()),
            }),
            Some(c) => Err(ServiceError::NotFound(format!("context {c}"))),
            None if self.contexts.is_empty() => Ok(Principal {
                key_id,
                role: Role::Admin,
                context: None,
            }),
            None => Err(ServiceError::Forbidden(
                "an admin limited to some contexts cannot do this".into(),
            )),
        }
    }
}

/// An admin user as the admins page lists it (never the password hash).
#[derive(Debug, Clone)]
pub struct AdminAccount {
    pub id: String,
    pub email: String,
    /// Contexts this admin may see; empty = every context.
    pub contexts: Vec<String>,
    /// Unix seconds of the last successful sign-in.
    pub last_login_at: Option<i64>,
    pub created_at: i64,
    pub disabled: bool,
}

impl From<AdminUserRecord> for AdminAccount {
    fn from(r: AdminUserRecord) -> Self {
        Self {
            id: r.id,
            email: r.email,
            contexts: r.contexts,
            last_login_at: r.last_login_at,
            created_at: r.created_at,
            disabled: r.disabled,
        }
    }
}

/// A signed-in browser.
#[derive(Debug, Clone)]
pub struct Session {
    pub admin: Admin,
    /// The token every form of this session carries (derived from the session token).
    pub csrf: String,
    /// SHA-256 of the session token (what the database holds).
    token_hash: String,
}

/// How a sign-in ended.
pub enum LoginOutcome {
    /// Signed in: set this token as the session cookie.
    SignedIn { token: String, admin: Admin },
    /// Unknown email or wrong password (the two are not told apart).
    Rejected,
    /// Too many failures: try again after this many seconds.
    Locked { retry_after: u64 },
}

/// Where a request came from, for the audit log.
#[derive(Debug, Clone, Default)]
pub struct Client {
    pub ip: String,
    pub user_agent: String,
}

/// A mailbox with its current counts, as the mailbox list shows it.
#[derive(Debug, Clone)]
pub struct MailboxWithCounts {
    pub mailbox: MailboxRecord,
    pub counts: MwiCounts,
}

/// The dashboard's numbers.
#[derive(Debug, Clone)]
pub struct Dashboard {
    pub totals: Totals,
    pub usage: Vec<ContextUsage>,
    pub health: DeliveryHealth,
}

/// One delivery queue's tries on this node since it started.
#[derive(Debug, Clone)]
pub struct QueueTries {
    /// `email`, `webhook` or `mwi`.
    pub queue: &'static str,
    /// Tries that ended each way, in [`Outcome::ALL`](crate::events::queue::Outcome::ALL)'s order.
    pub outcomes: [u64; 5],
    /// Tries running now.
    pub in_flight: u64,
}

/// The numbers of `GET /metrics`.
#[derive(Debug, Clone)]
pub struct NodeMetrics {
    /// Totals, usage per context and queue health, over the caller's contexts (shared by every
    /// node: they come from the database).
    pub dashboard: Dashboard,
    /// This node's delivery tries per queue.
    pub tries: Vec<QueueTries>,
    /// This node's decoders of compressed uploads.
    pub decoders: PoolLoad,
    /// This node's transcoders (renditions, waveforms, attachments).
    pub transcoders: PoolLoad,
    /// Database connections this node holds open, idle among them, and its limit.
    pub db_open: u32,
    pub db_idle: u32,
    pub db_max: u32,
}

/// How long dashboard numbers are reused while nothing changed.
const DASHBOARD_TTL: Duration = Duration::from_secs(5);
/// How long they are reused even while changes are being committed (a reload storm during heavy
/// traffic rescans at most this often per admin scope).
const DASHBOARD_MIN_TTL: Duration = Duration::from_secs(1);
/// Scopes remembered at most (the cache is emptied when full).
const DASHBOARD_SCOPES: usize = 256;

/// Dashboards computed lately, per admin scope (the sorted contexts of the admin; empty = all),
/// with when and at which change counter (`Voicemail::changed`) they were computed.
#[derive(Default)]
pub struct DashboardCache(Mutex<HashMap<Vec<String>, (Instant, u64, Dashboard)>>);

impl DashboardCache {
    fn get(&self, scope: &[String], changes: u64) -> Option<Dashboard> {
        let map = self.0.lock().ok()?;
        let (at, seen, d) = map.get(scope)?;
        let age = at.elapsed();
        (age < DASHBOARD_MIN_TTL || (age < DASHBOARD_TTL && *seen == changes)).then(|| d.clone())
    }

    fn put(&self, scope: Vec<String>, changes: u64, d: Dashboard) {
        if let Ok(mut map) = self.0.lock() {
            if map.len() >= DASHBOARD_SCOPES && !map.contains_key(&scope) {
                map.clear();
            }
            map.insert(scope, (Instant::now(), changes, d));
        }
    }
}

fn sha256_hex(s: &str) -> String {
    hex::encode(Sha256::digest(s.as_bytes()))
}

fn random_token(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    OsRng.fill_bytes(&mut buf);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(buf)
}

fn csrf_for(token: &str) -> String {
    // An HMAC keyed by the (secret) session token: unguessable without it, and nothing to store.
    match Hmac::<Sha256>::new_from_slice(token.as_bytes()) {
        Ok(mut mac) => {
            mac.update(b"voxmail-ui-csrf");
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
        }
        Err(_) => String::new(),
    }
}

/// Constant-time string comparison (for CSRF tokens).
pub fn same_token(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && !a.is_empty()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

fn normalize_email(email: &str) -> Result<String> {
    let e = email.trim().to_lowercase();
    let valid = e.len() <= 255
        && !e
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == ',')
        && e.split_once('@')
            .is_some_and(|(l, d)| !l.is_empty() && !d.is_empty() && !d.contains('@'));
    if valid {
        Ok(e)
    } else {
        Err(ServiceError::Invalid(format!(
            "{email:?} is not an email address"
        )))
    }
}

/// A hash to verify against when the email is unknown, so both cases take as long.
fn decoy_hash() -> &'static str {
    static DECOY: OnceLock<String> = OnceLock::new();
    DECOY.get_or_init(|| {
        let salt = SaltString::generate(&mut OsRng);
        Argon2::default()
            .hash_password(random_token(16).as_bytes(), &salt)
            .map(|h| h.to_string())
            .unwrap_or_default()
    })
}

impl Voicemail {
    fn login_policy(&self) -> LoginPolicy {
        let ui = &self.config.ui;
        LoginPolicy {
            max_failures: ui.login_max_failures.max(1),
            window_secs: ui.login_window_secs as i64,
            lockout_secs: ui.login_lockout_secs as i64,
        }
    }

    async fn hash_password(&self, password: String) -> Result<String> {
        let _permit = self
            .hashing
            .acquire()
            .await
            .map_err(|_| ServiceError::Unavailable("shutting down".into()))?;
        tokio::task::spawn_blocking(move || {
            let salt = SaltString::generate(&mut OsRng);
            Argon2::default()
                .hash_password(password.as_bytes(), &salt)
                .map(|h| h.to_string())
                .map_err(|e| ServiceError::Unavailable(format!("hashing failed: {e}")))
        })
        .await
        .map_err(|e| ServiceError::Unavailable(format!("hashing task failed: {e}")))?
    }

    async fn check_password(&self, hash: String, password: String) -> Result<bool> {
        let _permit = self
            .hashing
            .acquire()
            .await
            .map_err(|_| ServiceError::Unavailable("shutting down".into()))?;
        tokio::task::spawn_blocking(move || {
            PasswordHash::new(&hash).is_ok_and(|h| {
                Argon2::default()
                    .verify_password(password.as_bytes(), &h)
                    .is_ok()
            })
        })
        .await
        .map_err(|e| ServiceError::Unavailable(format!("hashing task failed: {e}")))
    }

    /// Creates an admin user (the CLI's `voxmail admin create`). Without `password` a random one
    /// is made and returned (shown once). `contexts` limits the admin to those contexts.
    pub async fn create_admin(
        &self,
        email: &str,
        password: Option<&str>,
        contexts: &[String],
    ) -> Result<(Admin, Option<String>)> {
        let email = normalize_email(email)?;
        self.check_contexts(contexts).await?;
        let (password, generated) = match password {
            Some(p) if p.chars().count() < 10 || p.len() > 256 => {
                return Err(ServiceError::Invalid(
                    "the password must be 10 to 256 characters".into(),
                ));
            }
            Some(p) => (p.to_owned(), None),
            None => {
                let p = random_token(15);
                (p.clone(), Some(p))
            }
        };
        let hash = self.hash_password(password).await?;
        let mut contexts = contexts.to_vec();
        contexts.sort();
        contexts.dedup();
        let record = self.sql.create_admin_user(&email, &hash, &contexts).await?;
        Ok((record.into(), generated))
    }

    /// Checks that every context of an admin's limit exists.
    async fn check_contexts(&self, contexts: &[String]) -> Result<()> {
        for c in contexts {
            crate::domain::validate_context_name(c)
                .map_err(|e| ServiceError::Invalid(e.to_string()))?;
            self.sql.get_context(c).await.map_err(|e| match e {
                StoreError::NotFound => ServiceError::NotFound(format!("context {c}")),
                other => other.into(),
            })?;
        }
        Ok(())
    }

    /// Signs an admin in. Failures count towards a lockout (`[ui] login_*`); an unknown email
    /// answers like a wrong password, in the same time.
    pub async fn admin_login(
        &self,
        email: &str,
        password: &str,
        client: &Client,
    ) -> Result<LoginOutcome> {
        let Ok(email) = normalize_email(email) else {
            return Ok(LoginOutcome::Rejected);
        };
        if password.len() > 256 {
            return Ok(LoginOutcome::Rejected);
        }
        let policy = self.login_policy();
        let user = match self.sql.begin_login(&email).await? {
            LoginAttempt::Unknown => {
                self.check_password(decoy_hash().to_owned(), password.to_owned())
                    .await?;
                return Ok(LoginOutcome::Rejected);
            }
            LoginAttempt::Locked { until } => {
                return Ok(LoginOutcome::Locked {
                    retry_after: (until - now_secs()).max(1) as u64,
                });
            }
            LoginAttempt::Allowed(u) => u,
        };
        let ok = self
            .check_password(user.password_hash.clone(), password.to_owned())
            .await?;
        let locked = self.sql.finish_login(&user.id, ok, policy).await?;
        let admin = Admin::from(user);
        if !ok {
            let (action, detail) = match locked {
                Some(_) => ("login.locked", "too many failed sign-ins; account locked"),
                None => ("login.failed", "wrong password"),
            };
            self.audit(&admin, client, action, &admin.email, detail)
                .await?;
            return Ok(match locked {
                Some(until) => LoginOutcome::Locked {
                    retry_after: (until - now_secs()).max(1) as u64,
                },
                None => LoginOutcome::Rejected,
            });
        }
        let token = random_token(32);
        let expires = now_secs() + self.config.ui.session_ttl_secs as i64;
        self.sql
            .create_admin_session(
                &sha256_hex(&token),
                &admin.id,
                expires,
                &client.user_agent,
                &client.ip,
            )
            .await?;
        self.audit(&admin, client, "login", &admin.email, "")
            .await?;
        Ok(LoginOutcome::SignedIn { token, admin })
    }

    /// The session a cookie token stands for; `None` when unknown, expired or idle too long.
    pub async fn admin_session(&self, token: &str) -> Result<Option<Session>> {
        if token.len() != 43 {
            return Ok(None);
        }
        let token_hash = sha256_hex(token);
        let s = match self.sql.find_admin_session(&token_hash).await {
            Ok(s) => s,
            Err(StoreError::NotFound) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let now = now_secs();
        let idle = self.config.ui.idle_timeout_secs as i64;
        if s.expires_at <= now || s.last_seen_at + idle <= now {
            self.sql.delete_admin_session(&token_hash).await?;
            return Ok(None);
        }
        // One write a minute per session is enough for the idle timeout.
        if now - s.last_seen_at >= 60 {
            self.sql.touch_admin_session(&token_hash).await?;
        }
        Ok(Some(Session {
            admin: s.admin.into(),
            csrf: csrf_for(token),
            token_hash,
        }))
    }

    /// Ends a session.
    pub async fn admin_logout(&self, session: &Session, client: &Client) -> Result<()> {
        self.sql.delete_admin_session(&session.token_hash).await?;
        self.audit(&session.admin, client, "logout", &session.admin.email, "")
            .await
    }

    /// Writes one line of the audit log.
    pub async fn audit(
        &self,
        admin: &Admin,
        client: &Client,
        action: &str,
        target: &str,
        detail: &str,
    ) -> Result<()> {
        self.sql
            .write_audit(&NewAuditEntry {
                admin_id: admin.id.clone(),
                admin_email: admin.email.clone(),
                action: action.to_owned(),
                target: target.to_owned(),
                detail: detail.to_owned(),
                ip: client.ip.clone(),
            })
            .await?;
        Ok(())
    }

    /// The audit log, newest first (an admin limited to some contexts may not read it).
    pub async fn admin_audit_log(
        &self,
        admin: &Admin,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Vec<AuditEntry>> {
        admin.principal(None)?;
        Ok(self.sql.list_audit(before, limit.clamp(1, 500)).await?)
    }

    /// Totals, storage per context and the delivery queues, over the admin's contexts. Reused
    /// for up to 5 s per admin scope while nothing is committed (1 s while changes are), so a
    /// storm of reloads does not rescan the messages.
    pub async fn admin_dashboard(&self, admin: &Admin) -> Result<Dashboard> {
        self.dashboard_over(admin.contexts.clone()).await
    }

    /// The dashboard over `scope` (empty: every context), from the cache while it is fresh.
    async fn dashboard_over(&self, mut scope: Vec<String>) -> Result<Dashboard> {
        scope.sort();
        let changes = *self.changed.borrow();
        if let Some(d) = self.dashboards.get(&scope, changes) {
            return Ok(d);
        }
        let limit = (!scope.is_empty()).then_some(scope.as_slice());
        let d = Dashboard {
            totals: self.sql.admin_totals(limit).await?,
            usage: self.sql.usage_by_context(limit).await?,
            health: self.sql.delivery_health(limit).await?,
        };
        self.dashboards.put(scope, changes, d.clone());
        Ok(d)
    }

    /// The delivery queues' backlogs over the key's context (or all), as the dashboard shows them.
    pub async fn queue_health(&self, p: &Principal) -> Result<DeliveryHealth> {
        Self::require_admin(p, "reading the delivery queues")?;
        let scope: Vec<String> = p.context.iter().cloned().collect();
        Ok(self.dashboard_over(scope).await?.health)
    }

    /// Makes a queue's failing and given-up jobs due now, over the key's context (or all): a
    /// failing job skips the rest of its backoff, a given-up one gets one more try. For after a
    /// receiver, SMTP server or MWI target is fixed. Returns how many jobs were made due.
    pub async fn retry_queue(&self, p: &Principal, queue: DeliveryQueue) -> Result<u64> {
        Self::require_admin(p, "retrying a delivery queue")?;
        let scope: Option<Vec<String>> = p.context.clone().map(|c| vec![c]);
        let due = self.sql.retry_queue(queue, scope.as_deref()).await?;
        if due > 0 {
            self.notify_changed();
        }
        Ok(due)
    }

    /// [`Voicemail::retry_queue`] for an admin of the web UI, over the admin's contexts.
    pub async fn admin_retry_queue(
        &self,
        admin: &Admin,
        client: &Client,
        queue: DeliveryQueue,
    ) -> Result<u64> {
        let due = self.sql.retry_queue(queue, admin.limit()).await?;
        if due > 0 {
            self.notify_changed();
        }
        self.audit(
            admin,
            client,
            "queue.retry",
            queue.as_str(),
            &format!("{due} made due"),
        )
        .await?;
        Ok(due)
    }

    /// What `GET /metrics` reports, for an admin key: the dashboard's numbers over the key's
    /// context (or all), from the same short cache, and this node's delivery tries, audio
    /// workers and database connections.
    pub async fn metrics(&self, p: &Principal) -> Result<NodeMetrics> {
        Self::require_admin(p, "/metrics")?;
        let dashboard = self
            .dashboard_over(p.context.iter().cloned().collect())
            .await?;
        let queue = |name, c: &crate::events::queue::QueueCounters| QueueTries {
            queue: name,
            outcomes: c.snapshot(),
            in_flight: c.in_flight(),
        };
        let d = &self.deliveries;
        let (db_open, db_idle) = self.sql.pool_state();
        Ok(NodeMetrics {
            dashboard,
            tries: vec![
                queue("email", &d.email),
                queue("webhook", &d.webhooks),
                queue("mwi", &d.mwi),
            ],
            decoders: *self.decoders.load().borrow(),
            transcoders: *self.transcoders.load().borrow(),
            db_open,
            db_idle,
            db_max: self.config.database.max_connections,
        })
    }

    /// Messages left per day over the last `days` days, oldest first: `(start of the day as Unix
    /// seconds, count)`. Days run midnight to midnight at `utc_offset_secs` east of UTC.
    pub async fn admin_deposits_per_day(
        &self,
        admin: &Admin,
        days: u32,
        utc_offset_secs: i64,
    ) -> Result<Vec<(i64, i64)>> {
        let days = i64::from(days.clamp(1, 366));
        let offset = utc_offset_secs.clamp(-14 * 3600, 14 * 3600);
        let now = now_secs();
        let today = (now + offset).div_euclid(86_400) * 86_400 - offset;
        let since = today - (days - 1) * 86_400;
        let counts = self.sql.deposits_per_day(since, admin.limit()).await?;
        let mut out: Vec<(i64, i64)> = (0..days).map(|d| (since + d * 86_400, 0)).collect();
        for (day, n) in counts {
            if let Some(slot) = usize::try_from(day).ok().and_then(|d| out.get_mut(d)) {
                slot.1 = n;
            }
        }
        Ok(out)
    }

    /// Contexts the admin may see, in name order.
    pub async fn admin_contexts(&self, admin: &Admin) -> Result<Vec<ContextRecord>> {
        let all = Principal::local_admin();
        let mut out = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let page = self.list_contexts(&all, after.as_deref(), 500).await?;
            out.extend(page.items.iter().filter(|c| admin.sees(&c.name)).cloned());
            match (page.has_more, page.items.last()) {
                (true, Some(last)) => after = Some(last.name.clone()),
                _ => break,
            }
        }
        Ok(out)
    }

    /// One context the admin may see (others are "not found").
    pub async fn admin_visible_context(&self, admin: &Admin, name: &str) -> Result<ContextRecord> {
        let not_found = || ServiceError::NotFound(format!("context {name}"));
        if !admin.sees(name) || crate::domain::validate_context_name(name).is_err() {
            return Err(not_found());
        }
        self.sql.get_context(name).await.map_err(|e| match e {
            StoreError::NotFound => not_found(),
            other => other.into(),
        })
    }

    /// Creates a context (unlimited admins only).
    pub async fn admin_create_context(
        &self,
        admin: &Admin,
        client: &Client,
        name: &str,
        description: &str,
    ) -> Result<ContextRecord> {
        let p = admin.principal(None)?;
        let c = self
            .create_context(&p, name.trim(), description.trim())
            .await?;
        self.audit(admin, client, "context.create", &c.name, &c.description)
            .await?;
        Ok(c)
    }

    /// A page of a context's mailboxes (search `q`: mailbox prefix, part of the name or email),
    /// with their counts, and the cursor of the next page.
    pub async fn admin_mailboxes(
        &self,
        admin: &Admin,
        context: &str,
        q: Option<&str>,
        cursor: Option<&str>,
        limit: u32,
    ) -> Result<(Vec<MailboxWithCounts>, Option<String>)> {
        self.admin_visible_context(admin, context).await?;
        let p = admin.principal(Some(context))?;
        let page = self
            .list_mailboxes(&p, Some(context), q, cursor, limit.clamp(1, 500))
            .await?;
        let next = page
            .has_more
            .then(|| page.items.last().map(MailboxCursor::encode))
            .flatten();
        let ids: Vec<_> = page.items.iter().map(|m| m.id).collect();
        let counts: std::collections::HashMap<_, _> =
            self.sql.counts_of(&ids).await?.into_iter().collect();
        let rows = page
            .items
            .into_iter()
            .map(|m| MailboxWithCounts {
                counts: counts.get(&m.id).copied().unwrap_or_default(),
                mailbox: m,
            })
            .collect();
        Ok((rows, next))
    }

    /// One mailbox the admin may see.
    pub async fn admin_mailbox(
        &self,
        admin: &Admin,
        address: &MailboxAddress,
    ) -> Result<MailboxRecord> {
        let p = admin.principal(Some(&address.context))?;
        self.get_mailbox(&p, address).await
    }

    /// Creates a mailbox in a context the admin may see.
    pub async fn admin_create_mailbox(
        &self,
        admin: &Admin,
        client: &Client,
        address: &MailboxAddress,
        settings: MailboxSettings,
    ) -> Result<MailboxRecord> {
        self.admin_visible_context(admin, &address.context).await?;
        let p = admin.principal(Some(&address.context))?;
        let detail = describe_settings(&settings);
        let m = self.create_mailbox(&p, address, settings).await?;
        self.audit(
            admin,
            client,
            "mailbox.create",
            &address.to_string(),
            &detail,
        )
        .await?;
        Ok(m)
    }

    /// Changes a mailbox the admin may see.
    pub async fn admin_update_mailbox(
        &self,
        admin: &Admin,
        client: &Client,
        address: &MailboxAddress,
        settings: MailboxSettings,
    ) -> Result<MailboxRecord> {
        let p = admin.principal(Some(&address.context))?;
        let detail = describe_settings(&settings);
        let m = self.update_mailbox(&p, address, settings).await?;
        self.audit(
            admin,
            client,
            "mailbox.update",
            &address.to_string(),
            &detail,
        )
        .await?;
        Ok(m)
    }

    /// Deletes a mailbox the admin may see, with its messages and greetings.
    pub async fn admin_delete_mailbox(
        &self,
        admin: &Admin,
        client: &Client,
        address: &MailboxAddress,
    ) -> Result<()> {
        let p = admin.principal(Some(&address.context))?;
        self.delete_mailbox(&p, address).await?;
        self.audit(admin, client, "mailbox.delete", &address.to_string(), "")
            .await
    }

    /// Live events of one context the admin may see (the `/v1/events` stream).
    pub async fn admin_events(
        &self,
        admin: &Admin,
        context: &str,
        last_event_id: Option<i64>,
    ) -> Result<EventStream> {
        self.admin_visible_context(admin, context).await?;
        let p = admin.principal(Some(context))?;
        self.event_stream(&p, Some(context.to_owned()), None, last_event_id)
            .await
    }
}

/// Admin user management (`/ui/admins`): unlimited admins only; for others the page does not
/// exist. An admin cannot limit, disable, reset or delete their own account here (the CLI can),
/// so nobody locks themselves out by a click. Every change is audited.
impl Voicemail {
    fn manages_admins(admin: &Admin) -> Result<()> {
        if admin.contexts.is_empty() {
            Ok(())
        } else {
            Err(ServiceError::NotFound("page".into()))
        }
    }

    fn not_self(admin: &Admin, id: &str, what: &str) -> Result<()> {
        if admin.id == id {
            Err(ServiceError::Forbidden(format!(
                "you cannot {what} your own account here; ask another admin or use the \
                 `voxmail admin` command"
            )))
        } else {
            Ok(())
        }
    }

    async fn admin_account(&self, id: &str) -> Result<AdminAccount> {
        self.sql
            .get_admin_user(id)
            .await
            .map(Into::into)
            .map_err(|e| match e {
                StoreError::NotFound => ServiceError::NotFound(format!("admin {id}")),
                other => other.into(),
            })
    }

    /// Every admin user, by email.
    pub async fn admin_accounts(&self, admin: &Admin) -> Result<Vec<AdminAccount>> {
        Self::manages_admins(admin)?;
        Ok(self
            .sql
            .list_admin_users()
            .await?
            .into_iter()
            .map(Into::into)
            .collect())
    }

    /// One admin user.
    pub async fn admin_get_account(&self, admin: &Admin, id: &str) -> Result<AdminAccount> {
        Self::manages_admins(admin)?;
        self.admin_account(id).await
    }

    /// Creates an admin user with a random password, returned to be shown once.
    pub async fn admin_create_account(
        &self,
        admin: &Admin,
        client: &Client,
        email: &str,
        contexts: &[String],
    ) -> Result<(Admin, String)> {
        Self::manages_admins(admin)?;
        let (created, password) = self.create_admin(email, None, contexts).await?;
        let password = password.ok_or_else(|| {
            ServiceError::Unavailable("no password was generated for the new admin".into())
        })?;
        let scope = if created.contexts.is_empty() {
            "all contexts".to_owned()
        } else {
            created.contexts.join(", ")
        };
        self.audit(admin, client, "admin.create", &created.email, &scope)
            .await?;
        Ok((created, password))
    }

    /// Limits an admin to some contexts (empty = every context).
    pub async fn admin_limit_account(
        &self,
        admin: &Admin,
        client: &Client,
        id: &str,
        contexts: &[String],
    ) -> Result<AdminAccount> {
        Self::manages_admins(admin)?;
        Self::not_self(admin, id, "limit")?;
        let target = self.admin_account(id).await?;
        self.check_contexts(contexts).await?;
        let mut contexts = contexts.to_vec();
        contexts.sort();
        contexts.dedup();
        self.sql.set_admin_contexts(id, &contexts).await?;
        let scope = if contexts.is_empty() {
            "all contexts".to_owned()
        } else {
            contexts.join(", ")
        };
        self.audit(admin, client, "admin.limit", &target.email, &scope)
            .await?;
        self.admin_account(id).await
    }

    /// Disables an admin (ending their sessions) or enables them again.
    pub async fn admin_disable_account(
        &self,
        admin: &Admin,
        client: &Client,
        id: &str,
        disabled: bool,
    ) -> Result<AdminAccount> {
        Self::manages_admins(admin)?;
        Self::not_self(admin, id, "disable")?;
        let target = self.admin_account(id).await?;
        self.sql.set_admin_disabled(id, disabled).await?;
        let action = if disabled {
            "admin.disable"
        } else {
            "admin.enable"
        };
        self.audit(admin, client, action, &target.email, "").await?;
        self.admin_account(id).await
    }

    /// Gives an admin a new random password (returned, to be shown once) and ends their sessions.
    pub async fn admin_reset_account_password(
        &self,
        admin: &Admin,
        client: &Client,
        id: &str,
    ) -> Result<(AdminAccount, String)> {
        Self::manages_admins(admin)?;
        Self::not_self(admin, id, "reset the password of")?;
        let target = self.admin_account(id).await?;
        let password = random_token(15);
        let hash = self.hash_password(password.clone()).await?;
        self.sql.reset_admin_password(id, &hash).await?;
        self.audit(admin, client, "admin.password", &target.email, "reset")
            .await?;
        Ok((target, password))
    }

    /// Deletes an admin user and their sessions.
    pub async fn admin_delete_account(
        &self,
        admin: &Admin,
        client: &Client,
        id: &str,
    ) -> Result<()> {
        Self::manages_admins(admin)?;
        Self::not_self(admin, id, "delete")?;
        let target = self.admin_account(id).await?;
        self.sql.delete_admin_user(id).await?;
        self.audit(admin, client, "admin.delete", &target.email, "")
            .await
    }
}

/// The names of the settings a form changed, for the audit log (never the PIN itself).
fn describe_settings(s: &MailboxSettings) -> String {
    let mut names = Vec::new();
    let given = [
        ("pin", s.pin.is_some()),
        ("fullname", s.fullname.is_some()),
        ("email", s.email.is_some()),
        ("pager", s.pager.is_some()),
        ("attach", s.attach.is_some()),
        ("attachfmt", s.attachfmt.is_some()),
        ("maxmsg", s.maxmsg.is_some()),
        ("maxsecs", s.maxsecs.is_some()),
        ("minsecs", s.minsecs.is_some()),
        ("tz", s.tz.is_some()),
        ("language", s.language.is_some()),
        ("deletevoicemail", s.deletevoicemail.is_some()),
    ];
    for (name, set) in given {
        if set {
            names.push(name);
        }
    }
    names.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_normalised_and_checked() {
        assert_eq!(
            normalize_email(" Ann@Example.ORG ").unwrap(),
            "ann@example.org"
        );
        assert!(normalize_email("no-at-sign").is_err());
        assert!(normalize_email("a@b@c").is_err());
        assert!(normalize_email("a b@c").is_err());
    }

    #[test]
    fn dashboards_are_reused_per_scope_until_something_changes() {
        let cache = DashboardCache::default();
        let d = Dashboard {
            totals: Totals {
                messages: 7,
                ..Totals::default()
            },
            usage: vec![],
            health: DeliveryHealth::default(),
        };
        let acme = vec!["acme".to_owned()];
        cache.put(acme.clone(), 3, d);
        assert_eq!(cache.get(&acme, 3).map(|d| d.totals.messages), Some(7));
        assert!(cache.get(&[], 3).is_none(), "another scope");
        // A change within the first second is tolerated (storms), later it is not.
        assert!(cache.get(&acme, 4).is_some());
        if let Ok(mut map) = cache.0.lock()
            && let Some(entry) = map.get_mut(&acme)
        {
            entry.0 -= DASHBOARD_MIN_TTL;
        }
        assert!(cache.get(&acme, 4).is_none());
        assert!(cache.get(&acme, 3).is_some());
    }

    #[test]
    fn csrf_tokens_depend_on_the_session() {
        let a = csrf_for("token-a");
        assert_eq!(a, csrf_for("token-a"));
        assert_ne!(a, csrf_for("token-b"));
        assert!(same_token(&a, &a));
        assert!(!same_token(&a, &csrf_for("token-b")));
        assert!(!same_token("", ""));
    }
}
