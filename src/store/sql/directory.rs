//! Contexts, mailboxes, API keys, PIN attempts and housekeeping: always in SQL, whatever the
//! message store.

use super::rows::{ApiKeyRow, ContextRow, MailboxRow, mailbox_columns};
use super::{SqlStore, is_unique_violation};
use crate::domain::{ApiKeyId, MailboxAddress, MailboxId, Role, now_secs};
use crate::store::{
    ApiKeyRecord, ContextRecord, MailboxChanges, MailboxRecord, Page, PinAttempt, PinPolicy,
    StoreError,
};

fn yes_no(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}

fn opt_i64(v: Option<u32>) -> Option<i64> {
    v.map(i64::from)
}

impl SqlStore {
    /// Creates a context; a taken name is a conflict.
    pub async fn create_context(
        &self,
        name: &str,
        description: &str,
    ) -> Result<ContextRecord, StoreError> {
        let now = now_secs();
        let res = self
            .q("INSERT INTO contexts (name, description, created_at) VALUES (?, ?, ?)")
            .bind(name.to_owned())
            .bind(description.to_owned())
            .bind(now)
            .execute(&self.pool)
            .await;
        match res {
            Ok(_) => Ok(ContextRecord {
                name: name.to_owned(),
                description: description.to_owned(),
                created_at: now,
            }),
            Err(e) if is_unique_violation(&e) => Err(StoreError::Conflict(format!(
                "context {name} already exists"
            ))),
            Err(e) => Err(e.into()),
        }
    }

    /// One context.
    pub async fn get_context(&self, name: &str) -> Result<ContextRecord, StoreError> {
        self.qa::<ContextRow>("SELECT name, description, created_at FROM contexts WHERE name = ?")
            .bind(name.to_owned())
            .fetch_optional(&self.pool)
            .await?
            .map(Into::into)
            .ok_or(StoreError::NotFound)
    }

    /// Contexts in name order, after `after`, optionally only `only`.
    pub async fn list_contexts(
        &self,
        only: Option<&str>,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Page<ContextRecord>, StoreError> {
        let rows = self
            .qa::<ContextRow>(
                "SELECT name, description, created_at FROM contexts \
                 WHERE (? = '' OR name = ?) AND name > ? ORDER BY name LIMIT ?",
            )
            .bind(only.unwrap_or("").to_owned())
            .bind(only.unwrap_or("").to_owned())
            .bind(after.unwrap_or("").to_owned())
            .bind(i64::from(limit) + 1)
            .fetch_all(&self.pool)
            .await?;
        Ok(page(rows.into_iter().map(Into::into).collect(), limit))
    }

    /// Creates a mailbox in an existing context.
    pub async fn create_mailbox(
        &self,
        address: &MailboxAddress,
        c: MailboxChanges,
    ) -> Result<MailboxRecord, StoreError> {
        let id = MailboxId::new();
        let now = now_secs();
        let mut tx = self.begin().await?;
        let context_exists = self
            .q("SELECT name FROM contexts WHERE name = ?")
            .bind(address.context.clone())
            .fetch_optional(&mut *tx)
            .await?
            .is_some();
        if !context_exists {
            return Err(StoreError::NotFound);
        }
        let res = self
            .q("INSERT INTO mailboxes (uniqueid, context, mailbox, password, fullname, email, pager, \
                attach, attachfmt, maxmsg, maxsecs, minsecs, tz, language, deletevoicemail, version, \
                created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0, ?, ?)")
            .bind(id.to_string())
            .bind(address.context.clone())
            .bind(address.mailbox.clone())
            .bind(c.pin_hash.unwrap_or_default())
            .bind(c.fullname.unwrap_or_default())
            .bind(c.email.unwrap_or_default())
            .bind(c.pager.unwrap_or_default())
            .bind(yes_no(c.attach.unwrap_or(true)))
            .bind(c.attachfmt.unwrap_or_else(|| "wav".into()))
            .bind(opt_i64(c.maxmsg.flatten()))
            .bind(opt_i64(c.maxsecs.flatten()))
            .bind(opt_i64(c.minsecs.flatten()))
            .bind(c.tz.unwrap_or_default())
            .bind(c.language.unwrap_or_default())
            .bind(yes_no(c.deletevoicemail.unwrap_or(false)))
            .bind(now)
            .bind(now)
            .execute(&mut *tx)
            .await;
        match res {
            Ok(_) => {}
            Err(e) if is_unique_violation(&e) => {
                return Err(StoreError::Conflict(format!(
                    "mailbox {address} already exists"
                )));
            }
            Err(e) => return Err(e.into()),
        }
        let mailbox = self
            .mailbox_in(&mut tx, &address.mailbox, &address.context)
            .await?;
        self.emit(&mut tx, &mailbox, "mailbox.created", None)
            .await?;
        tx.commit().await?;
        Ok(mailbox)
    }

    async fn mailbox_in(
        &self,
        tx: &mut super::Tx,
        mailbox: &str,
        context: &str,
    ) -> Result<MailboxRecord, StoreError> {
        self.qa::<MailboxRow>(concat!(
            "SELECT ",
            mailbox_columns!(),
            " FROM mailboxes WHERE context = ? AND mailbox = ?"
        ))
        .bind(context.to_owned())
        .bind(mailbox.to_owned())
        .fetch_optional(&mut **tx)
        .await?
        .ok_or(StoreError::NotFound)?
        .try_into()
    }

    /// One mailbox by its address.
    pub async fn get_mailbox(&self, address: &MailboxAddress) -> Result<MailboxRecord, StoreError> {
        self.qa::<MailboxRow>(concat!(
            "SELECT ",
            mailbox_columns!(),
            " FROM mailboxes WHERE context = ? AND mailbox = ?"
        ))
        .bind(address.context.clone())
        .bind(address.mailbox.clone())
        .fetch_optional(&self.pool)
        .await?
        .ok_or(StoreError::NotFound)?
        .try_into()
    }

    /// Mailboxes ordered by (context, mailbox), after the cursor, filtered by context and a search
    /// term (mailbox prefix, or part of the name or email).
    pub async fn list_mailboxes(
        &self,
        context: Option<&str>,
        q: Option<&str>,
        after: Option<(&str, &str)>,
        limit: u32,
    ) -> Result<Page<MailboxRecord>, StoreError> {
        let (after_ctx, after_mbx) = after.unwrap_or(("", ""));
        // `!` escapes LIKE wildcards: a backslash is itself an escape in MySQL string literals.
        let q = q
            .filter(|s| !s.is_empty())
            .map(|s| s.replace('!', "!!").replace('%', "!%").replace('_', "!_"))
            .unwrap_or_default();
        let rows = self
            .qa::<MailboxRow>(concat!(
                "SELECT ",
                mailbox_columns!(),
                " FROM mailboxes WHERE (? = '' OR context = ?) \
                  AND (context > ? OR (context = ? AND mailbox > ?)) \
                  AND (? = '' OR mailbox LIKE ? ESCAPE '!' OR LOWER(fullname) LIKE LOWER(?) \
                       ESCAPE '!' OR LOWER(email) LIKE LOWER(?) ESCAPE '!') \
                  ORDER BY context, mailbox LIMIT ?"
            ))
            .bind(context.unwrap_or("").to_owned())
            .bind(context.unwrap_or("").to_owned())
            .bind(after_ctx.to_owned())
            .bind(after_ctx.to_owned())
            .bind(after_mbx.to_owned())
            .bind(q.clone())
            .bind(format!("{q}%"))
            .bind(format!("%{q}%"))
            .bind(format!("%{q}%"))
            .bind(i64::from(limit) + 1)
            .fetch_all(&self.pool)
            .await?;
        let items = rows
            .into_iter()
            .map(MailboxRecord::try_from)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(page(items, limit))
    }

    /// Changes a mailbox's settings.
    pub async fn update_mailbox(
        &self,
        address: &MailboxAddress,
        c: MailboxChanges,
    ) -> Result<MailboxRecord, StoreError> {
        let mut tx = self.begin().await?;
        let cur = self
            .mailbox_in(&mut tx, &address.mailbox, &address.context)
            .await?;
        let maxmsg = c.maxmsg.unwrap_or(cur.maxmsg);
        let maxsecs = c.maxsecs.unwrap_or(cur.maxsecs);
        let minsecs = c.minsecs.unwrap_or(cur.minsecs);
        self.q(
            "UPDATE mailboxes SET password = ?, fullname = ?, email = ?, pager = ?, attach = ?, \
             attachfmt = ?, maxmsg = ?, maxsecs = ?, minsecs = ?, tz = ?, language = ?, \
             deletevoicemail = ?, updated_at = ? WHERE uniqueid = ?",
        )
        .bind(c.pin_hash.unwrap_or(cur.pin_hash))
        .bind(c.fullname.unwrap_or(cur.fullname))
        .bind(c.email.unwrap_or(cur.email))
        .bind(c.pager.unwrap_or(cur.pager))
        .bind(yes_no(c.attach.unwrap_or(cur.attach)))
        .bind(c.attachfmt.unwrap_or(cur.attachfmt))
        .bind(opt_i64(maxmsg))
        .bind(opt_i64(maxsecs))
        .bind(opt_i64(minsecs))
        .bind(c.tz.unwrap_or(cur.tz))
        .bind(c.language.unwrap_or(cur.language))
        .bind(yes_no(c.deletevoicemail.unwrap_or(cur.deletevoicemail)))
        .bind(now_secs())
        .bind(cur.id.to_string())
        .execute(&mut *tx)
        .await?;
        let updated = self
            .mailbox_in(&mut tx, &address.mailbox, &address.context)
            .await?;
        tx.commit().await?;
        Ok(updated)
    }

    /// Deletes a mailbox with its messages and greetings; returns the audio keys to remove.
    pub async fn delete_mailbox(
        &self,
        address: &MailboxAddress,
    ) -> Result<Vec<String>, StoreError> {
        let mut tx = self.begin().await?;
        let mailbox = self
            .mailbox_in(&mut tx, &address.mailbox, &address.context)
            .await?;
        // The mailbox lock first, as in every change of a mailbox (a deposit waits, then finds it gone).
        let version = self.lock_mailbox(&mut tx, &mailbox).await?;
        let id = mailbox.id.to_string();
        let messages: Vec<(String, String)> = self
            .qa("SELECT id, audio_key FROM messages WHERE mailbox_id = ?")
            .bind(id.clone())
            .fetch_all(&mut *tx)
            .await?;
        // By primary key: a DELETE by mailbox_id may scan (and wait on) other mailboxes' rows on
        // InnoDB, see `compact`.
        for (message, _) in &messages {
            self.q("DELETE FROM messages WHERE id = ?")
                .bind(message.clone())
                .execute(&mut *tx)
                .await?;
        }
        let mut keys: Vec<String> = messages.into_iter().map(|(_, k)| k).collect();
        keys.extend(
            self.qa::<(String,)>("SELECT audio_key FROM greetings WHERE mailbox_id = ?")
                .bind(id.clone())
                .fetch_all(&mut *tx)
                .await?
                .into_iter()
                .map(|(k,)| k),
        );
        for sql in [
            "DELETE FROM greetings WHERE mailbox_id = ?",
            "DELETE FROM idempotency_keys WHERE mailbox_id = ?",
            "DELETE FROM email_jobs WHERE mailbox_id = ?",
            "DELETE FROM imap_counts WHERE mailbox_id = ?",
        ] {
            self.q(sql).bind(id.clone()).execute(&mut *tx).await?;
        }
        self.q("DELETE FROM mailboxes WHERE uniqueid = ?")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        // Counts are zero now; the event goes last (it takes the outbox counter's lock).
        self.emit_locked(&mut tx, &mailbox, "mailbox.deleted", None, version)
            .await?;
        tx.commit().await?;
        Ok(keys)
    }

    /// Stores a new API key's hash.
    pub async fn create_api_key(
        &self,
        name: &str,
        role: Role,
        context: Option<&str>,
        token_prefix: &str,
        token_hash: &str,
    ) -> Result<ApiKeyRecord, StoreError> {
        let id = ApiKeyId::new();
        let now = now_secs();
        self.q(
            "INSERT INTO api_keys (id, name, role, context, token_prefix, token_hash, created_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(id.to_string())
        .bind(name.to_owned())
        .bind(role.as_str())
        .bind(context.map(str::to_owned))
        .bind(token_prefix.to_owned())
        .bind(token_hash.to_owned())
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(ApiKeyRecord {
            id,
            name: name.to_owned(),
            role,
            context: context.map(str::to_owned),
            token_prefix: token_prefix.to_owned(),
            created_at: now,
            last_used_at: None,
            revoked_at: None,
        })
    }

    /// All API keys, newest first.
    pub async fn list_api_keys(&self) -> Result<Vec<ApiKeyRecord>, StoreError> {
        self.qa::<ApiKeyRow>(
            "SELECT id, name, role, context, token_prefix, created_at, last_used_at, revoked_at \
             FROM api_keys ORDER BY created_at DESC, id DESC",
        )
        .fetch_all(&self.pool)
        .await?
        .into_iter()
        .map(ApiKeyRecord::try_from)
        .collect()
    }

    /// The live (not revoked) key with this token hash.
    pub async fn find_api_key(&self, token_hash: &str) -> Result<ApiKeyRecord, StoreError> {
        self.qa::<ApiKeyRow>(
            "SELECT id, name, role, context, token_prefix, created_at, last_used_at, revoked_at \
             FROM api_keys WHERE token_hash = ? AND revoked_at IS NULL",
        )
        .bind(token_hash.to_owned())
        .fetch_optional(&self.pool)
        .await?
        .ok_or(StoreError::NotFound)?
        .try_into()
    }

    /// Records that a key was used.
    pub async fn touch_api_key(&self, id: ApiKeyId) -> Result<(), StoreError> {
        self.q("UPDATE api_keys SET last_used_at = ? WHERE id = ?")
            .bind(now_secs())
            .bind(id.to_string())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Revokes a key by id or by token prefix.
    pub async fn revoke_api_key(&self, id_or_prefix: &str) -> Result<ApiKeyRecord, StoreError> {
        let (matches,): (i64,) = self
            .qa(
                "SELECT COUNT(*) FROM api_keys WHERE (id = ? OR token_prefix = ?) \
                 AND revoked_at IS NULL",
            )
            .bind(id_or_prefix.to_owned())
            .bind(id_or_prefix.to_owned())
            .fetch_one(&self.pool)
            .await?;
        if matches > 1 {
            return Err(StoreError::Conflict(format!(
                "{id_or_prefix} matches {matches} keys: revoke by id"
            )));
        }
        let res = self
            .q(
                "UPDATE api_keys SET revoked_at = ? WHERE (id = ? OR token_prefix = ?) \
                AND revoked_at IS NULL",
            )
            .bind(now_secs())
            .bind(id_or_prefix.to_owned())
            .bind(id_or_prefix.to_owned())
            .execute(&self.pool)
            .await?;
        if res.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        self.qa::<ApiKeyRow>(
            "SELECT id, name, role, context, token_prefix, created_at, last_used_at, revoked_at \
             FROM api_keys WHERE id = ? OR token_prefix = ?",
        )
        .bind(id_or_prefix.to_owned())
        .bind(id_or_prefix.to_owned())
        .fetch_one(&self.pool)
        .await?
        .try_into()
    }

    /// Reserves one PIN attempt. Counting the attempt before the (slow) hash check means concurrent
    /// guesses cannot slip past the limit.
    pub async fn begin_pin_attempt(
        &self,
        mailbox: &MailboxRecord,
        policy: PinPolicy,
    ) -> Result<PinAttempt, StoreError> {
        let now = now_secs();
        let mut tx = self.begin().await?;
        let row: Option<(String, i64, i64, i64)> = self
            .qa_owned(format!(
                "SELECT password, pin_failures, pin_window_start, pin_locked_until FROM mailboxes \
                 WHERE uniqueid = ?{}",
                self.dialect.for_update()
            ))
            .bind(mailbox.id.to_string())
            .fetch_optional(&mut *tx)
            .await?;
        let (hash, mut failures, mut window_start, locked_until) =
            row.ok_or(StoreError::NotFound)?;
        if locked_until > now {
            return Ok(PinAttempt::Locked {
                until: locked_until,
            });
        }
        if now - window_start >= policy.window_secs {
            failures = 0;
            window_start = now;
        }
        failures += 1;
        let over = failures > i64::from(policy.max_failures);
        let lock = if over { now + policy.lockout_secs } else { 0 };
        self.q(
            "UPDATE mailboxes SET pin_failures = ?, pin_window_start = ?, pin_locked_until = ? \
             WHERE uniqueid = ?",
        )
        .bind(if over { 0 } else { failures })
        .bind(window_start)
        .bind(lock)
        .bind(mailbox.id.to_string())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(if over {
            PinAttempt::Locked { until: lock }
        } else {
            PinAttempt::Allowed { pin_hash: hash }
        })
    }

    /// Settles a reserved attempt: success clears the count; a failure that reached the limit locks.
    /// Returns the lock's end when this failure locked the mailbox.
    pub async fn finish_pin_attempt(
        &self,
        mailbox: &MailboxRecord,
        ok: bool,
        policy: PinPolicy,
    ) -> Result<Option<i64>, StoreError> {
        let id = mailbox.id.to_string();
        if ok {
            self.q(
                "UPDATE mailboxes SET pin_failures = 0, pin_window_start = 0 WHERE uniqueid = ?",
            )
            .bind(id)
            .execute(&self.pool)
            .await?;
            return Ok(None);
        }
        let until = now_secs() + policy.lockout_secs;
        let res = self
            .q(
                "UPDATE mailboxes SET pin_locked_until = ?, pin_failures = 0 \
                WHERE uniqueid = ? AND pin_failures >= ?",
            )
            .bind(until)
            .bind(id)
            .bind(i64::from(policy.max_failures))
            .execute(&self.pool)
            .await?;
        Ok((res.rows_affected() > 0).then_some(until))
    }

    /// Forgets idempotency keys older than `older_than` and events past retention; returns rows removed.
    pub async fn sweep(
        &self,
        idempotency_before: i64,
        events_before: i64,
    ) -> Result<u64, StoreError> {
        let a = self
            .q("DELETE FROM idempotency_keys WHERE created_at < ?")
            .bind(idempotency_before)
            .execute(&self.pool)
            .await?
            .rows_affected();
        let b = self
            .q("DELETE FROM events WHERE created_at < ?")
            .bind(events_before)
            .execute(&self.pool)
            .await?
            .rows_affected();
        Ok(a + b)
    }
}

/// Trims a `limit + 1` fetch into a page.
pub(super) fn page<T>(mut items: Vec<T>, limit: u32) -> Page<T> {
    let has_more = items.len() > limit as usize;
    items.truncate(limit as usize);
    Page { items, has_more }
}
