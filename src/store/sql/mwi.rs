//! Asterisk MWI push targets and their coalesced push state.

use super::{SqlStore, is_unique_violation};
use crate::domain::{MailboxAddress, MailboxId, MwiCounts, now_secs};
use crate::store::{MwiPushJob, MwiPushRecord, MwiTargetKind, MwiTargetRecord, StoreError};

#[derive(sqlx::FromRow)]
struct TargetRow {
    id: String,
    context: String,
    kind: String,
    url: String,
    username: String,
    secret: String,
    mailbox: String,
    active: i64,
    created_at: i64,
    updated_at: i64,
}

impl TryFrom<TargetRow> for MwiTargetRecord {
    type Error = StoreError;
    fn try_from(r: TargetRow) -> Result<Self, StoreError> {
        Ok(Self {
            kind: MwiTargetKind::parse(&r.kind)
                .ok_or_else(|| StoreError::Corrupt(format!("mwi target kind {:?}", r.kind)))?,
            id: r.id,
            context: r.context,
            url: r.url,
            username: r.username,
            secret: r.secret,
            mailbox: r.mailbox,
            active: r.active != 0,
            created_at: r.created_at,
            updated_at: r.updated_at,
        })
    }
}

#[derive(sqlx::FromRow)]
struct PushRow {
    target_id: String,
    mailbox_id: String,
    context: String,
    mailbox: String,
    wanted_version: i64,
    pushed_version: i64,
    attempts: i64,
    next_attempt_ms: i64,
    last_error: Option<String>,
    last_pushed_ms: Option<i64>,
}

macro_rules! target_select {
    ($rest:literal) => {
        concat!(
            "SELECT id, context, kind, url, username, secret, mailbox, active, created_at, ",
            "updated_at FROM mwi_targets ",
            $rest
        )
    };
}

impl SqlStore {
    /// Stores a target.
    pub async fn create_mwi_target(
        &self,
        t: &MwiTargetRecord,
    ) -> Result<MwiTargetRecord, StoreError> {
        let now = now_secs();
        self.q(
            "INSERT INTO mwi_targets (id, context, kind, url, username, secret, mailbox, active, \
             created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(t.id.clone())
        .bind(t.context.clone())
        .bind(t.kind.as_str())
        .bind(t.url.clone())
        .bind(t.username.clone())
        .bind(t.secret.clone())
        .bind(t.mailbox.clone())
        .bind(i64::from(t.active))
        .bind(now)
        .bind(now)
        .execute(&self.pool)
        .await?;
        self.get_mwi_target(&t.id).await
    }

    /// One target.
    pub async fn get_mwi_target(&self, id: &str) -> Result<MwiTargetRecord, StoreError> {
        self.qa::<TargetRow>(target_select!("WHERE id = ?"))
            .bind(id.to_owned())
            .fetch_optional(&self.pool)
            .await?
            .ok_or(StoreError::NotFound)?
            .try_into()
    }

    /// Targets, optionally of one context.
    pub async fn list_mwi_targets(
        &self,
        context: Option<&str>,
    ) -> Result<Vec<MwiTargetRecord>, StoreError> {
        self.qa::<TargetRow>(target_select!(
            "WHERE (? = '' OR context = ?) ORDER BY created_at, id"
        ))
        .bind(context.unwrap_or("").to_owned())
        .bind(context.unwrap_or("").to_owned())
        .fetch_all(&self.pool)
        .await?
        .into_iter()
        .map(MwiTargetRecord::try_from)
        .collect()
    }

    /// Replaces a target's settings; its push state is reset so current counts go out again.
    pub async fn update_mwi_target(
        &self,
        t: &MwiTargetRecord,
    ) -> Result<MwiTargetRecord, StoreError> {
        let mut tx = self.begin().await?;
        let res = self
            .q(
                "UPDATE mwi_targets SET kind = ?, url = ?, username = ?, secret = ?, mailbox = ?, \
                active = ?, updated_at = ? WHERE id = ?",
            )
            .bind(t.kind.as_str())
            .bind(t.url.clone())
            .bind(t.username.clone())
            .bind(t.secret.clone())
            .bind(t.mailbox.clone())
            .bind(i64::from(t.active))
            .bind(now_secs())
            .bind(t.id.clone())
            .execute(&mut *tx)
            .await?;
        if res.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        self.q("DELETE FROM mwi_pushes WHERE target_id = ?")
            .bind(t.id.clone())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        self.resync_mwi(None, Some(&t.id)).await?;
        self.get_mwi_target(&t.id).await
    }

    /// Deletes a target and its push state.
    pub async fn delete_mwi_target(&self, id: &str) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        self.q("DELETE FROM mwi_pushes WHERE target_id = ?")
            .bind(id.to_owned())
            .execute(&mut *tx)
            .await?;
        let res = self
            .q("DELETE FROM mwi_targets WHERE id = ?")
            .bind(id.to_owned())
            .execute(&mut *tx)
            .await?;
        if res.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        tx.commit().await?;
        Ok(())
    }

    /// Push state of a target, per mailbox.
    pub async fn list_mwi_pushes(&self, target_id: &str) -> Result<Vec<MwiPushRecord>, StoreError> {
        let rows: Vec<PushRow> = self
            .qa(
                "SELECT target_id, mailbox_id, context, mailbox, wanted_version, pushed_version, \
                 attempts, next_attempt_ms, last_error, last_pushed_ms FROM mwi_pushes \
                 WHERE target_id = ? ORDER BY context, mailbox",
            )
            .bind(target_id.to_owned())
            .fetch_all(&self.pool)
            .await?;
        Ok(rows
            .into_iter()
            .map(|r| MwiPushRecord {
                target_id: r.target_id,
                address: MailboxAddress {
                    mailbox: r.mailbox,
                    context: r.context,
                },
                mailbox_id: r.mailbox_id,
                wanted_version: r.wanted_version,
                pushed_version: r.pushed_version,
                attempts: r.attempts,
                next_attempt_ms: r.next_attempt_ms,
                last_error: r.last_error,
                last_pushed_ms: r.last_pushed_ms,
            })
            .collect())
    }

    /// Marks the mailboxes of new outbox events as due for a push to every matching target
    /// (exactly once: the cursor moves in the same transaction). Returns events consumed.
    pub async fn dispatch_mwi_events(&self, batch: u32) -> Result<usize, StoreError> {
        const CURSOR: &str = "mwi";
        let Some((mut tx, events, newest)) = self
            .begin_dispatch(
                CURSOR,
                "SELECT COUNT(*) FROM mwi_targets WHERE active <> 0",
                batch,
            )
            .await?
        else {
            return Ok(0);
        };
        let targets: Vec<MwiTargetRecord> = self
            .qa::<TargetRow>(target_select!("WHERE active <> 0"))
            .fetch_all(&mut *tx)
            .await?
            .into_iter()
            .map(MwiTargetRecord::try_from)
            .collect::<Result<_, _>>()?;
        // One row per (target, mailbox) with the newest version, touched in primary-key order:
        // the push claimer locks the same rows in the same order, so the two never deadlock.
        let mut wanted: std::collections::BTreeMap<(String, String), (i64, &MailboxAddress)> =
            std::collections::BTreeMap::new();
        for e in &events {
            for t in targets.iter().filter(|t| t.wants(&e.address)) {
                let slot = wanted
                    .entry((t.id.clone(), e.mailbox_id.to_string()))
                    .or_insert((e.counts.version, &e.address));
                slot.0 = slot.0.max(e.counts.version);
            }
        }
        for ((target_id, mailbox_id), (version, address)) in wanted {
            {
                let updated = self
                    .q("UPDATE mwi_pushes SET wanted_version = ? \
                        WHERE target_id = ? AND mailbox_id = ? AND wanted_version < ?")
                    .bind(version)
                    .bind(target_id.clone())
                    .bind(mailbox_id.clone())
                    .bind(version)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                if updated == 0 {
                    let exists = self
                        .q("SELECT 1 FROM mwi_pushes WHERE target_id = ? AND mailbox_id = ?")
                        .bind(target_id.clone())
                        .bind(mailbox_id.clone())
                        .fetch_optional(&mut *tx)
                        .await?
                        .is_some();
                    if !exists {
                        self.q(
                            "INSERT INTO mwi_pushes (target_id, mailbox_id, context, mailbox, \
                             wanted_version, pushed_version, attempts, next_attempt_ms, \
                             lease_until_ms) VALUES (?, ?, ?, ?, ?, -1, 0, 0, 0)",
                        )
                        .bind(target_id)
                        .bind(mailbox_id)
                        .bind(address.context.clone())
                        .bind(address.mailbox.clone())
                        .bind(version)
                        .execute(&mut *tx)
                        .await?;
                    }
                }
            }
        }
        self.advance_cursor(&mut tx, CURSOR, newest).await?;
        tx.commit().await?;
        Ok(events.len())
    }

    /// Re-pushes the current counts of every mailbox to every active target (of one context, or
    /// one target). Returns the number of (target, mailbox) pushes queued.
    ///
    /// On PostgreSQL and MySQL the event dispatcher may insert the same (target, mailbox) row in a
    /// concurrent transaction; the loser of that race gets a unique violation and the resync is
    /// simply run again (it replaces every row it covers).
    pub async fn resync_mwi(
        &self,
        context: Option<&str>,
        target: Option<&str>,
    ) -> Result<u64, StoreError> {
        let mut attempt = 0;
        loop {
            match self.resync_mwi_once(context, target).await {
                Err(StoreError::Database(e)) if attempt < 5 && is_unique_violation(&e) => {
                    attempt += 1;
                    tracing::debug!(attempt, "MWI resync raced the dispatcher; running it again");
                }
                other => return other,
            }
        }
    }

    async fn resync_mwi_once(
        &self,
        context: Option<&str>,
        target: Option<&str>,
    ) -> Result<u64, StoreError> {
        let mut tx = self.begin().await?;
        self.q(
            "DELETE FROM mwi_pushes WHERE (? = '' OR context = ?) AND (? = '' OR target_id = ?)",
        )
        .bind(context.unwrap_or("").to_owned())
        .bind(context.unwrap_or("").to_owned())
        .bind(target.unwrap_or("").to_owned())
        .bind(target.unwrap_or("").to_owned())
        .execute(&mut *tx)
        .await?;
        let n = self
            .q(
                "INSERT INTO mwi_pushes (target_id, mailbox_id, context, mailbox, wanted_version, \
                pushed_version, attempts, next_attempt_ms, lease_until_ms) \
                SELECT t.id, m.uniqueid, m.context, m.mailbox, m.version, -1, 0, 0, 0 \
                FROM mwi_targets t JOIN mailboxes m ON m.context = t.context \
                  AND (t.mailbox = '' OR t.mailbox = m.mailbox) \
                WHERE t.active <> 0 AND (? = '' OR t.context = ?) AND (? = '' OR t.id = ?)",
            )
            .bind(context.unwrap_or("").to_owned())
            .bind(context.unwrap_or("").to_owned())
            .bind(target.unwrap_or("").to_owned())
            .bind(target.unwrap_or("").to_owned())
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        Ok(n)
    }

    /// Leases pushes whose mailbox changed since the last successful push and that are due.
    pub async fn claim_mwi_pushes(
        &self,
        now_ms: i64,
        lease_ms: i64,
        limit: u32,
    ) -> Result<Vec<MwiPushJob>, StoreError> {
        #[derive(sqlx::FromRow)]
        struct Row {
            mailbox_id: String,
            context: String,
            mailbox: String,
            wanted_version: i64,
            attempts: i64,
            id: String,
            t_context: String,
            kind: String,
            url: String,
            username: String,
            secret: String,
            t_mailbox: String,
            active: i64,
            created_at: i64,
            updated_at: i64,
        }
        let mut tx = self.begin().await?;
        let rows: Vec<Row> = self
            .qa(
                "SELECT p.mailbox_id, p.context, p.mailbox, p.wanted_version, p.attempts, t.id, \
                 t.context AS t_context, t.kind, t.url, t.username, t.secret, t.mailbox AS t_mailbox, \
                 t.active, t.created_at, t.updated_at \
                 FROM mwi_pushes p JOIN mwi_targets t ON t.id = p.target_id \
                 WHERE t.active <> 0 AND p.pushed_version < p.wanted_version \
                 AND p.next_attempt_ms <= ? AND p.lease_until_ms < ? \
                 ORDER BY p.next_attempt_ms LIMIT ?",
            )
            .bind(now_ms)
            .bind(now_ms)
            .bind(i64::from(limit))
            .fetch_all(&mut *tx)
            .await?;
        // Leased in primary-key order, as the dispatcher updates them (no deadlock between the two).
        let mut rows = rows;
        rows.sort_by(|a, b| (&a.id, &a.mailbox_id).cmp(&(&b.id, &b.mailbox_id)));
        let mut jobs = Vec::with_capacity(rows.len());
        for r in rows {
            // Fenced: another node may have claimed the row since the SELECT (see claim_email_jobs).
            let res = self
                .q("UPDATE mwi_pushes SET lease_until_ms = ? WHERE target_id = ? AND mailbox_id = ? \
                    AND lease_until_ms < ?")
                .bind(now_ms + lease_ms)
                .bind(r.id.clone())
                .bind(r.mailbox_id.clone())
                .bind(now_ms)
                .execute(&mut *tx)
                .await?;
            if res.rows_affected() != 1 {
                continue;
            }
            let target = MwiTargetRecord::try_from(TargetRow {
                id: r.id,
                context: r.t_context,
                kind: r.kind,
                url: r.url,
                username: r.username,
                secret: r.secret,
                mailbox: r.t_mailbox,
                active: r.active,
                created_at: r.created_at,
                updated_at: r.updated_at,
            })?;
            jobs.push(MwiPushJob {
                target,
                mailbox_id: r.mailbox_id.parse().map_err(|_| {
                    StoreError::Corrupt(format!("mwi push mailbox id {:?}", r.mailbox_id))
                })?,
                address: MailboxAddress {
                    mailbox: r.mailbox,
                    context: r.context,
                },
                wanted_version: r.wanted_version,
                attempts: u32::try_from(r.attempts).unwrap_or(u32::MAX),
                lease: now_ms + lease_ms,
            });
        }
        tx.commit().await?;
        Ok(jobs)
    }

    /// Current counts of a mailbox by id; `None` when it no longer exists.
    pub async fn counts_by_id(&self, id: MailboxId) -> Result<Option<MwiCounts>, StoreError> {
        let mut tx = self.begin_read().await?;
        let Some((version, context, number)): Option<(i64, String, String)> = self
            .qa("SELECT version, context, mailbox FROM mailboxes WHERE uniqueid = ?")
            .bind(id.to_string())
            .fetch_optional(&mut *tx)
            .await?
        else {
            return Ok(None);
        };
        if self.is_imap_mailbox(&context, &number) {
            tx.commit().await?;
            // The last counts observed in IMAP; none yet means nothing is pushed (never a guess)
            // until a watcher or an API call has read them.
            return match self.imap_counts(id).await? {
                None => Ok(None),
                Some(Some(c)) => Ok(Some(c)),
                Some(None) => Err(StoreError::Unavailable {
                    message: "the mailbox's IMAP counts were not observed yet".into(),
                    retry_after: 5,
                }),
            };
        }
        let counts = self.counts_for_id(&mut tx, id, version).await?;
        tx.commit().await?;
        Ok(Some(counts))
    }

    /// Records a push: success stores the version pushed; failure schedules a retry.
    pub async fn finish_mwi_push(
        &self,
        job: &MwiPushJob,
        pushed_version: Option<i64>,
        error: Option<&str>,
        retry_at_ms: i64,
    ) -> Result<(), StoreError> {
        let now_ms = chrono::Utc::now().timestamp_millis();
        match pushed_version {
            Some(v) => {
                self.q(
                    "UPDATE mwi_pushes SET pushed_version = ?, attempts = 0, next_attempt_ms = 0, \
                        lease_until_ms = 0, last_error = NULL, last_pushed_ms = ? \
                        WHERE target_id = ? AND mailbox_id = ? AND lease_until_ms = ?",
                )
                .bind(v)
                .bind(now_ms)
                .bind(job.target.id.clone())
                .bind(job.mailbox_id.to_string())
                .bind(job.lease)
                .execute(&self.pool)
                .await?;
            }
            None => {
                self.q(
                    "UPDATE mwi_pushes SET attempts = attempts + 1, next_attempt_ms = ?, \
                        lease_until_ms = 0, last_error = ? \
                        WHERE target_id = ? AND mailbox_id = ? AND lease_until_ms = ?",
                )
                .bind(retry_at_ms)
                .bind(error.map(|e| e.chars().take(1000).collect::<String>()))
                .bind(job.target.id.clone())
                .bind(job.mailbox_id.to_string())
                .bind(job.lease)
                .execute(&self.pool)
                .await?;
            }
        }
        Ok(())
    }

    /// Forgets the push state of a mailbox that no longer exists (after its zero counts went out).
    pub async fn forget_mwi_push(&self, job: &MwiPushJob) -> Result<(), StoreError> {
        self.q(
            "DELETE FROM mwi_pushes WHERE target_id = ? AND mailbox_id = ? AND lease_until_ms = ?",
        )
        .bind(job.target.id.clone())
        .bind(job.mailbox_id.to_string())
        .bind(job.lease)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}
