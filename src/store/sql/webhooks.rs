//! Webhooks and their durable delivery queue.

use super::SqlStore;
use crate::domain::{EventFilter, EventView, now_secs};
use crate::store::{
    AttemptRecord, DeliveryJob, DeliveryRecord, NewWebhook, StoreError, WebhookRecord,
};

#[derive(sqlx::FromRow)]
struct WebhookRow {
    id: String,
    context: String,
    url: String,
    event_types: String,
    secret: String,
    active: i64,
    after_seq: i64,
    created_at: i64,
    updated_at: i64,
}

impl From<WebhookRow> for WebhookRecord {
    fn from(r: WebhookRow) -> Self {
        Self {
            id: r.id,
            context: r.context,
            url: r.url,
            event_types: r
                .event_types
                .split(',')
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect(),
            secret: r.secret,
            active: r.active != 0,
            after_seq: r.after_seq,
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }
}

#[derive(sqlx::FromRow)]
struct DeliveryRow {
    id: i64,
    webhook_id: String,
    event_seq: i64,
    event_type: String,
    status: String,
    attempts: i64,
    next_attempt_ms: i64,
    last_status: Option<i64>,
    last_error: Option<String>,
    created_at: i64,
    updated_at: i64,
}

#[derive(sqlx::FromRow)]
struct JobRow {
    id: i64,
    webhook_id: String,
    url: String,
    secret: String,
    event_type: String,
    payload: String,
    attempts: i64,
    created_at: i64,
}

#[derive(sqlx::FromRow)]
struct AttemptRow {
    attempt: i64,
    at_ms: i64,
    http_status: Option<i64>,
    error: Option<String>,
    duration_ms: i64,
}

impl SqlStore {
    /// Stores a webhook.
    pub async fn create_webhook(&self, w: NewWebhook) -> Result<WebhookRecord, StoreError> {
        let now = now_secs();
        self.q(
            "INSERT INTO webhooks (id, context, url, event_types, secret, active, after_seq, \
             created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(w.id.clone())
        .bind(w.context.clone())
        .bind(w.url.clone())
        .bind(w.event_types.join(","))
        .bind(w.secret.clone())
        .bind(i64::from(w.active))
        .bind(self.last_event_seq().await?)
        .bind(now)
        .bind(now)
        .execute(&self.pool)
        .await?;
        self.get_webhook(&w.id).await
    }

    /// One webhook.
    pub async fn get_webhook(&self, id: &str) -> Result<WebhookRecord, StoreError> {
        self.qa::<WebhookRow>(concat!(
            "SELECT id, context, url, event_types, secret, active, after_seq, created_at, updated_at ",
            "FROM webhooks WHERE id = ?"
        ))
        .bind(id.to_owned())
        .fetch_optional(&self.pool)
        .await?
        .map(Into::into)
        .ok_or(StoreError::NotFound)
    }

    /// Webhooks, optionally of one context.
    pub async fn list_webhooks(
        &self,
        context: Option<&str>,
    ) -> Result<Vec<WebhookRecord>, StoreError> {
        Ok(self
            .qa::<WebhookRow>(concat!(
                "SELECT id, context, url, event_types, secret, active, after_seq, created_at, updated_at ",
                "FROM webhooks WHERE (? = '' OR context = ?) ORDER BY created_at, id"
            ))
            .bind(context.unwrap_or("").to_owned())
            .bind(context.unwrap_or("").to_owned())
            .fetch_all(&self.pool)
            .await?
            .into_iter()
            .map(Into::into)
            .collect())
    }

    /// Replaces a webhook's settings.
    pub async fn update_webhook(&self, w: &WebhookRecord) -> Result<WebhookRecord, StoreError> {
        let res = self
            .q(
                "UPDATE webhooks SET url = ?, event_types = ?, secret = ?, active = ?, \
                updated_at = ? WHERE id = ?",
            )
            .bind(w.url.clone())
            .bind(w.event_types.join(","))
            .bind(w.secret.clone())
            .bind(i64::from(w.active))
            .bind(now_secs())
            .bind(w.id.clone())
            .execute(&self.pool)
            .await?;
        if res.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        self.get_webhook(&w.id).await
    }

    /// Deletes a webhook and its delivery history.
    pub async fn delete_webhook(&self, id: &str) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        self.q("DELETE FROM webhook_attempts WHERE delivery_id IN \
                (SELECT id FROM webhook_deliveries WHERE webhook_id = ?)")
            .bind(id.to_owned())
            .execute(&mut *tx)
            .await?;
        self.q("DELETE FROM webhook_deliveries WHERE webhook_id = ?")
            .bind(id.to_owned())
            .execute(&mut *tx)
            .await?;
        let res = self
            .q("DELETE FROM webhooks WHERE id = ?")
            .bind(id.to_owned())
            .execute(&mut *tx)
            .await?;
        if res.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        tx.commit().await?;
        Ok(())
    }

    /// Locks an outbox consumer's cursor row for this transaction and returns its position, and
    /// whether the row was just created (then the caller must commit even with nothing to do). The
    /// row lock makes each consumer's batch exactly-once, also across nodes.
    pub(super) async fn lock_cursor(
        &self,
        tx: &mut super::Tx,
        name: &str,
    ) -> Result<(i64, bool), StoreError> {
        let row: Option<(i64,)> = self
            .qa_owned(format!(
                "SELECT last_seq FROM consumer_cursors WHERE name = ?{}",
                self.dialect.for_update()
            ))
            .bind(name.to_owned())
            .fetch_optional(&mut **tx)
            .await?;
        if let Some((last,)) = row {
            return Ok((last, false));
        }
        // First run: start at the end of the outbox (a new consumer does not replay history).
        let (last,): (Option<i64>,) = self
            .qa("SELECT MAX(seq) FROM events")
            .fetch_one(&mut **tx)
            .await?;
        let last = last.unwrap_or(0);
        self.q("INSERT INTO consumer_cursors (name, last_seq) VALUES (?, ?)")
            .bind(name.to_owned())
            .bind(last)
            .execute(&mut **tx)
            .await?;
        Ok((last, true))
    }

    /// Whether a dispatcher has work worth a write transaction: its cursor must exist (it is
    /// created at the first call, so it starts before any consumer is configured), and at least one
    /// consumer must be active. Idle dispatchers then cost one read per change instead of a commit.
    /// Events skipped while nothing is configured stay behind the cursor and are read later: new
    /// webhooks ignore events older than themselves, and MWI rows only move to newer versions.
    pub(super) async fn consumer_needed(
        &self,
        cursor: &str,
        active_sql: &'static str,
    ) -> Result<bool, StoreError> {
        // One round trip: this runs on every wake-up, i.e. after every change.
        let (exists, active): (i64, i64) = self
            .qa_owned(format!(
                "SELECT (SELECT COUNT(*) FROM consumer_cursors WHERE name = ?), ({active_sql})"
            ))
            .bind(cursor.to_owned())
            .fetch_one(&self.pool)
            .await?;
        Ok(exists == 0 || active > 0)
    }

    /// Starts a dispatcher's batch: when a consumer is configured, locks the cursor and reads the
    /// events after it. Returns the transaction, the events and the newest seq, or `None` when there
    /// is nothing to do (committing a cursor created just now).
    pub(super) async fn begin_dispatch(
        &self,
        cursor: &str,
        active_sql: &'static str,
        batch: u32,
    ) -> Result<Option<(super::Tx, Vec<crate::domain::Event>, i64)>, StoreError> {
        if !self.consumer_needed(cursor, active_sql).await? {
            return Ok(None);
        }
        let mut tx = self.begin().await?;
        let (last, created) = self.lock_cursor(&mut tx, cursor).await?;
        let events = self
            .events_after_on(&mut *tx, last, batch, &EventFilter::default())
            .await?;
        match events.last().map(|e| e.seq) {
            Some(newest) => Ok(Some((tx, events, newest))),
            None => {
                if created {
                    tx.commit().await?;
                }
                Ok(None)
            }
        }
    }

    /// Moves a consumer's cursor (in the transaction that consumed the events).
    pub(super) async fn advance_cursor(
        &self,
        tx: &mut super::Tx,
        name: &str,
        seq: i64,
    ) -> Result<(), StoreError> {
        self.q("UPDATE consumer_cursors SET last_seq = ? WHERE name = ?")
            .bind(seq)
            .bind(name.to_owned())
            .execute(&mut **tx)
            .await?;
        Ok(())
    }

    /// Turns new outbox events into webhook deliveries, exactly once (the cursor moves in the same
    /// transaction). Returns the number of events consumed.
    pub async fn dispatch_webhook_events(&self, batch: u32) -> Result<usize, StoreError> {
        const CURSOR: &str = "webhooks";
        let Some((mut tx, events, newest)) = self
            .begin_dispatch(
                CURSOR,
                "SELECT COUNT(*) FROM webhooks WHERE active <> 0",
                batch,
            )
            .await?
        else {
            return Ok(0);
        };
        let hooks: Vec<WebhookRecord> = self
            .qa::<WebhookRow>(concat!(
                "SELECT id, context, url, event_types, secret, active, after_seq, created_at, updated_at ",
                "FROM webhooks WHERE active <> 0"
            ))
            .fetch_all(&mut *tx)
            .await?
            .into_iter()
            .map(Into::into)
            .collect();
        let now = now_secs();
        let now_ms = chrono::Utc::now().timestamp_millis();
        for e in &events {
            for h in hooks.iter().filter(|h| h.wants(e)) {
                let body = serde_json::to_string(&EventView::from(e))
                    .map_err(|err| StoreError::Corrupt(err.to_string()))?;
                self.q(
                    "INSERT INTO webhook_deliveries (webhook_id, event_seq, event_type, mailbox_id, \
                     payload, status, attempts, next_attempt_ms, lease_until_ms, created_at, \
                     updated_at) VALUES (?, ?, ?, ?, ?, 'pending', 0, ?, 0, ?, ?)",
                )
                .bind(h.id.clone())
                .bind(e.seq)
                .bind(e.event_type.clone())
                .bind(e.mailbox_id.to_string())
                .bind(body)
                .bind(now_ms)
                .bind(now)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            }
        }
        self.advance_cursor(&mut tx, CURSOR, newest).await?;
        tx.commit().await?;
        Ok(events.len())
    }

    /// Leases due deliveries: for each (webhook, mailbox) only the oldest pending one, so deliveries
    /// of a mailbox go out in order.
    pub async fn claim_deliveries(
        &self,
        now_ms: i64,
        lease_ms: i64,
        limit: u32,
    ) -> Result<Vec<DeliveryJob>, StoreError> {
        let mut tx = self.begin().await?;
        let rows: Vec<JobRow> = self
            .qa(
                "SELECT d.id, d.webhook_id, w.url, w.secret, d.event_type, d.payload, d.attempts, \
                 d.created_at FROM webhook_deliveries d JOIN webhooks w ON w.id = d.webhook_id \
                 WHERE d.status = 'pending' AND d.next_attempt_ms <= ? AND d.lease_until_ms < ? \
                 AND NOT EXISTS (SELECT 1 FROM webhook_deliveries e WHERE e.webhook_id = d.webhook_id \
                   AND e.mailbox_id = d.mailbox_id AND e.status = 'pending' AND e.id < d.id) \
                 ORDER BY d.id LIMIT ?",
            )
            .bind(now_ms)
            .bind(now_ms)
            .bind(i64::from(limit))
            .fetch_all(&mut *tx)
            .await?;
        let mut claimed = Vec::with_capacity(rows.len());
        for r in rows {
            // Fenced: another node may have claimed the row since the SELECT (see claim_email_jobs).
            let res = self
                .q(
                    "UPDATE webhook_deliveries SET lease_until_ms = ? WHERE id = ? \
                    AND status = 'pending' AND lease_until_ms < ?",
                )
                .bind(now_ms + lease_ms)
                .bind(r.id)
                .bind(now_ms)
                .execute(&mut *tx)
                .await?;
            if res.rows_affected() == 1 {
                claimed.push(r);
            }
        }
        tx.commit().await?;
        Ok(claimed
            .into_iter()
            .map(|r| DeliveryJob {
                id: r.id,
                webhook_id: r.webhook_id,
                url: r.url,
                secret: r.secret,
                event_type: r.event_type,
                payload: r.payload,
                attempts: u32::try_from(r.attempts).unwrap_or(u32::MAX),
                created_at: r.created_at,
            })
            .collect())
    }

    /// Records an attempt and the delivery's next state: `Some(next_ms)` retries then, `None`
    /// with `delivered` = false marks it dead.
    #[allow(clippy::too_many_arguments)]
    pub async fn finish_attempt(
        &self,
        job: &DeliveryJob,
        at_ms: i64,
        duration_ms: i64,
        http_status: Option<u16>,
        error: Option<&str>,
        delivered: bool,
        retry_at_ms: Option<i64>,
    ) -> Result<(), StoreError> {
        let attempt = i64::from(job.attempts) + 1;
        let status = match (delivered, retry_at_ms) {
            (true, _) => "delivered",
            (false, Some(_)) => "pending",
            (false, None) => "dead",
        };
        let error = error.map(|e| e.chars().take(1000).collect::<String>());
        let mut tx = self.begin().await?;
        self.q(
            "INSERT INTO webhook_attempts (delivery_id, attempt, at_ms, http_status, error, \
             duration_ms) VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(job.id)
        .bind(attempt)
        .bind(at_ms)
        .bind(http_status.map(i64::from))
        .bind(error.clone())
        .bind(duration_ms)
        .execute(&mut *tx)
        .await?;
        self.q(
            "UPDATE webhook_deliveries SET status = ?, attempts = ?, next_attempt_ms = ?, \
             lease_until_ms = 0, last_status = ?, last_error = ?, updated_at = ? WHERE id = ?",
        )
        .bind(status)
        .bind(attempt)
        .bind(retry_at_ms.unwrap_or(at_ms))
        .bind(http_status.map(i64::from))
        .bind(error)
        .bind(now_secs())
        .bind(job.id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Deliveries of a webhook, newest first, with their attempts.
    pub async fn list_deliveries(
        &self,
        webhook_id: &str,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Vec<DeliveryRecord>, StoreError> {
        let rows: Vec<DeliveryRow> = self
            .qa(
                "SELECT id, webhook_id, event_seq, event_type, status, attempts, next_attempt_ms, \
                 last_status, last_error, created_at, updated_at FROM webhook_deliveries \
                 WHERE webhook_id = ? AND id < ? ORDER BY id DESC LIMIT ?",
            )
            .bind(webhook_id.to_owned())
            .bind(before.unwrap_or(i64::MAX))
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let attempts: Vec<AttemptRow> = self
                .qa("SELECT attempt, at_ms, http_status, error, duration_ms \
                     FROM webhook_attempts WHERE delivery_id = ? ORDER BY attempt")
                .bind(r.id)
                .fetch_all(&self.pool)
                .await?;
            out.push(DeliveryRecord {
                id: r.id,
                webhook_id: r.webhook_id,
                event_seq: r.event_seq,
                event_type: r.event_type,
                status: r.status,
                attempt_count: r.attempts,
                attempts: attempts
                    .into_iter()
                    .map(|a| AttemptRecord {
                        attempt: a.attempt,
                        at_ms: a.at_ms,
                        http_status: a.http_status,
                        error: a.error,
                        duration_ms: a.duration_ms,
                    })
                    .collect(),
                next_attempt_ms: r.next_attempt_ms,
                last_status: r.last_status,
                last_error: r.last_error,
                created_at: r.created_at,
                updated_at: r.updated_at,
            });
        }
        Ok(out)
    }

    /// Queues a test delivery of `payload` to a webhook, due now. Test deliveries take negative
    /// event numbers (the outbox's are positive) and the mailbox key `test`, so they never hold
    /// up a mailbox's events. Returns the delivery's id.
    pub async fn queue_test_delivery(
        &self,
        webhook_id: &str,
        event_type: &str,
        payload: &str,
    ) -> Result<i64, StoreError> {
        let now = now_secs();
        let now_ms = chrono::Utc::now().timestamp_millis();
        let mut tx = self.begin().await?;
        let (lowest,): (Option<i64>,) = self
            .qa("SELECT MIN(event_seq) FROM webhook_deliveries WHERE webhook_id = ?")
            .bind(webhook_id.to_owned())
            .fetch_one(&mut *tx)
            .await?;
        let seq = lowest.unwrap_or(0).min(0) - 1;
        self.q(
            "INSERT INTO webhook_deliveries (webhook_id, event_seq, event_type, mailbox_id, \
             payload, status, attempts, next_attempt_ms, lease_until_ms, created_at, updated_at) \
             VALUES (?, ?, ?, 'test', ?, 'pending', 0, ?, 0, ?, ?)",
        )
        .bind(webhook_id.to_owned())
        .bind(seq)
        .bind(event_type.to_owned())
        .bind(payload.to_owned())
        .bind(now_ms)
        .bind(now)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(|e| {
            if super::is_unique_violation(&e) {
                StoreError::Conflict("another test delivery was queued at the same time".into())
            } else {
                e.into()
            }
        })?;
        let (id,): (i64,) = self
            .qa("SELECT id FROM webhook_deliveries WHERE webhook_id = ? AND event_seq = ?")
            .bind(webhook_id.to_owned())
            .bind(seq)
            .fetch_one(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(id)
    }

    /// One delivery of a webhook, with its attempts.
    pub async fn get_delivery(
        &self,
        webhook_id: &str,
        id: i64,
    ) -> Result<DeliveryRecord, StoreError> {
        self.list_deliveries(webhook_id, Some(id.saturating_add(1)), 1)
            .await?
            .into_iter()
            .find(|d| d.id == id)
            .ok_or(StoreError::NotFound)
    }

    /// Marks a pending delivery dead unless it is being sent right now (a test delivery is tried
    /// once, not retried for a day). Returns whether it was marked.
    pub async fn give_up_delivery(&self, id: i64) -> Result<bool, StoreError> {
        let now_ms = chrono::Utc::now().timestamp_millis();
        let res = self
            .q(
                "UPDATE webhook_deliveries SET status = 'dead', updated_at = ? \
                WHERE id = ? AND status = 'pending' AND lease_until_ms < ?",
            )
            .bind(now_secs())
            .bind(id)
            .bind(now_ms)
            .execute(&self.pool)
            .await?;
        Ok(res.rows_affected() == 1)
    }
}
