//! `/v1/queues`: the delivery queues' backlogs, and making failed jobs due again.

use axum::extract::State;
use serde::Serialize;
use utoipa::ToSchema;

use crate::http::AppState;
use crate::http::error::{ApiError, Problem};
use crate::http::extract::{ApiPath, Auth};
use crate::service::{DeliveryQueue, QueueHealth, ServiceError};

/// One delivery queue's backlog.
#[derive(Debug, Serialize, ToSchema)]
pub struct QueueView {
    /// `email`, `webhook`, `mwi`, or `asterisk` (rows Asterisk wrote to the shared table: taken
    /// in by every node on its own, so it cannot be retried here).
    pub queue: &'static str,
    /// Jobs waiting to be delivered (first try or retry).
    pub pending: i64,
    /// Pending jobs that failed at least once (asterisk: waiting for over a minute).
    pub failing: i64,
    /// Jobs given up on (asterisk: rows refused).
    pub dead: i64,
    /// The newest error of a pending or given-up job.
    pub last_error: Option<String>,
}

impl QueueView {
    fn new(queue: &'static str, q: QueueHealth) -> Self {
        Self {
            queue,
            pending: q.pending,
            failing: q.failing,
            dead: q.dead,
            last_error: q.last_error,
        }
    }
}

/// `GET /v1/queues`.
#[derive(Debug, Serialize, ToSchema)]
pub struct QueueList {
    pub items: Vec<QueueView>,
}

/// The answer of a retry.
#[derive(Debug, Serialize, ToSchema)]
pub struct RetryView {
    pub queue: &'static str,
    /// Failing and given-up jobs made due now.
    pub due: u64,
}

/// The delivery queues' backlogs (admin keys; a key limited to a context sees that context's
/// jobs). The same numbers as the dashboard, reused for up to 5 s.
#[utoipa::path(get, path = "/v1/queues", tag = "queues",
    responses((status = 200, body = QueueList), (status = 401, body = Problem),
        (status = 403, body = Problem)),
    security(("bearer" = [])))]
pub async fn list_queues(
    State(s): State<AppState>,
    Auth(p): Auth,
) -> Result<axum::Json<QueueList>, ApiError> {
    let h = s.vm.queue_health(&p).await?;
    Ok(axum::Json(QueueList {
        items: vec![
            QueueView::new("email", h.email),
            QueueView::new("webhook", h.webhooks),
            QueueView::new("mwi", h.mwi),
            QueueView::new("asterisk", h.asterisk),
        ],
    }))
}

/// Make a queue's failing and given-up jobs due now (admin): a failing job skips the rest of
/// its backoff, a given-up one gets one more try (and is given up again if that fails). For
/// after the receiver, SMTP server or MWI target is fixed. Jobs being tried are left alone.
#[utoipa::path(post, path = "/v1/queues/{queue}/retry", tag = "queues",
    params(("queue" = String, Path, description = "`email`, `webhook` or `mwi`")),
    responses((status = 200, body = RetryView), (status = 401, body = Problem),
        (status = 403, body = Problem), (status = 404, body = Problem)),
    security(("bearer" = [])))]
pub async fn retry_queue(
    State(s): State<AppState>,
    Auth(p): Auth,
    ApiPath(queue): ApiPath<String>,
) -> Result<axum::Json<RetryView>, ApiError> {
    let queue = DeliveryQueue::parse(&queue).ok_or_else(|| {
        ServiceError::NotFound(format!(
            "no delivery queue {queue:?}: the queues are email, webhook and mwi"
        ))
    })?;
    let due = s.vm.retry_queue(&p, queue).await?;
    Ok(axum::Json(RetryView {
        queue: queue.as_str(),
        due,
    }))
}
