use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::http::AppState;
use crate::http::error::{ApiError, Problem};
use crate::http::extract::{ApiJson, ApiPath, ApiQuery, Auth};
use crate::service::WebhookSettings;
use crate::store::{DeliveryRecord, WebhookRecord};

/// A webhook. `secret` (the HMAC key of `X-Voxmail-Signature`) is shown when it is set: on
/// create, and on a PATCH that changes it.
#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookView {
    pub id: String,
    pub context: String,
    pub url: String,
    /// Event types delivered; empty = all.
    pub event_types: Vec<String>,
    pub active: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

impl WebhookView {
    fn new(w: WebhookRecord, show_secret: bool) -> Self {
        Self {
            id: w.id,
            context: w.context,
            url: w.url,
            event_types: w.event_types,
            active: w.active,
            secret: show_secret.then_some(w.secret),
            created_at: w.created_at,
            updated_at: w.updated_at,
        }
    }
}

/// A new webhook.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewWebhookBody {
    pub context: String,
    pub url: String,
    /// Event types to deliver (default all): message.deposited, message.updated, message.moved,
    /// message.deleted, greeting.changed, greeting.deleted, mailbox.created, mailbox.deleted,
    /// mailbox.changed.
    #[serde(default)]
    pub event_types: Option<Vec<String>>,
    /// HMAC key (16-255 characters); generated when absent.
    #[serde(default)]
    pub secret: Option<String>,
    #[serde(default)]
    pub active: Option<bool>,
}

/// Changes to a webhook; `"secret": null` generates a new secret.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WebhookPatch {
    #[serde(default)]
    pub url: Option<String>,
    #[serde(default)]
    pub event_types: Option<Vec<String>>,
    #[serde(default, deserialize_with = "super::views::double_option")]
    #[schema(value_type = Option<String>)]
    pub secret: Option<Option<String>>,
    #[serde(default)]
    pub active: Option<bool>,
}

/// Webhook list.
#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookList {
    pub items: Vec<WebhookView>,
}

/// One attempt of a delivery.
#[derive(Debug, Serialize, ToSchema)]
pub struct AttemptView {
    pub attempt: i64,
    /// Unix milliseconds.
    pub at_ms: i64,
    pub http_status: Option<i64>,
    pub error: Option<String>,
    pub duration_ms: i64,
}

/// A delivery of one event to a webhook.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryView {
    pub id: i64,
    pub event_seq: i64,
    pub event_type: String,
    /// pending, delivered or dead.
    pub status: String,
    pub attempt_count: i64,
    pub attempts: Vec<AttemptView>,
    /// Unix milliseconds of the next try (pending only).
    pub next_attempt_ms: i64,
    pub last_status: Option<i64>,
    pub last_error: Option<String>,
    pub created_at: i64,
}

impl From<DeliveryRecord> for DeliveryView {
    fn from(d: DeliveryRecord) -> Self {
        Self {
            id: d.id,
            event_seq: d.event_seq,
            event_type: d.event_type,
            status: d.status,
            attempt_count: d.attempt_count,
            attempts: d
                .attempts
                .into_iter()
                .map(|a| AttemptView {
                    attempt: a.attempt,
                    at_ms: a.at_ms,
                    http_status: a.http_status,
                    error: a.error,
                    duration_ms: a.duration_ms,
                })
                .collect(),
            next_attempt_ms: d.next_attempt_ms,
            last_status: d.last_status,
            last_error: d.last_error,
            created_at: d.created_at,
        }
    }
}

/// Delivery list, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryList {
    pub items: Vec<DeliveryView>,
    /// Pass as `cursor` for older deliveries; null on the last page.
    pub next_cursor: Option<String>,
}

/// Query of `GET /v1/webhooks`.
#[derive(Debug, Deserialize, IntoParams)]
pub struct WebhookQuery {
    pub context: Option<String>,
}

/// Query of `GET /v1/webhooks/{id}/deliveries`.
#[derive(Debug, Deserialize, IntoParams)]
pub struct DeliveryQuery {
    pub limit: Option<String>,
    pub cursor: Option<String>,
}

/// Create a webhook (admin). Deliveries are POSTs of the event JSON with `X-Voxmail-Signature:
/// sha256=<hex HMAC-SHA256 of "<timestamp>.<body>">` and `X-Voxmail-Timestamp`.
#[utoipa::path(post, path = "/v1/webhooks", tag = "webhooks", request_body = NewWebhookBody,
    responses((status = 201, body = WebhookView), (status = 400, body = Problem),
        (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem)),
    security(("bearer" = [])))]
pub async fn create_webhook(
    State(s): State<AppState>,
    Auth(p): Auth,
    ApiJson(b): ApiJson<NewWebhookBody>,
) -> Result<impl IntoResponse, ApiError> {
    let w =
        s.vm.create_webhook(
            &p,
            &b.context,
            WebhookSettings {
                url: Some(b.url),
                event_types: b.event_types,
                secret: Some(b.secret),
                active: b.active,
            },
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, format!("/v1/webhooks/{}", w.id))],
        axum::Json(WebhookView::new(w, true)),
    ))
}

/// List webhooks (admin).
#[utoipa::path(get, path = "/v1/webhooks", tag = "webhooks", params(WebhookQuery),
    responses((status = 200, body = WebhookList), (status = 401, body = Problem),
        (status = 403, body = Problem)),
    security(("bearer" = [])))]
pub async fn list_webhooks(
    State(s): State<AppState>,
    Auth(p): Auth,
    ApiQuery(q): ApiQuery<WebhookQuery>,
) -> Result<axum::Json<WebhookList>, ApiError> {
    let items = s.vm.list_webhooks(&p, q.context.as_deref()).await?;
    Ok(axum::Json(WebhookList {
        items: items
            .into_iter()
            .map(|w| WebhookView::new(w, false))
            .collect(),
    }))
}

/// One webhook (admin).
#[utoipa::path(get, path = "/v1/webhooks/{id}", tag = "webhooks", params(("id" = String, Path)),
    responses((status = 200, body = WebhookView), (status = 401, body = Problem),
        (status = 403, body = Problem), (status = 404, body = Problem)),
    security(("bearer" = [])))]
pub async fn get_webhook(
    State(s): State<AppState>,
    Auth(p): Auth,
    ApiPath(id): ApiPath<String>,
) -> Result<axum::Json<WebhookView>, ApiError> {
    Ok(axum::Json(WebhookView::new(
        s.vm.get_webhook(&p, &id).await?,
        false,
    )))
}

/// Change a webhook (admin).
#[utoipa::path(patch, path = "/v1/webhooks/{id}", tag = "webhooks", params(("id" = String, Path)),
    request_body = WebhookPatch,
    responses((status = 200, body = WebhookView), (status = 400, body = Problem),
        (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem)),
    security(("bearer" = [])))]
pub async fn update_webhook(
    State(s): State<AppState>,
    Auth(p): Auth,
    ApiPath(id): ApiPath<String>,
    ApiJson(b): ApiJson<WebhookPatch>,
) -> Result<axum::Json<WebhookView>, ApiError> {
    let rotated = b.secret.is_some();
    let w =
        s.vm.update_webhook(
            &p,
            &id,
            WebhookSettings {
                url: b.url,
                event_types: b.event_types,
                secret: b.secret,
                active: b.active,
            },
        )
        .await?;
    Ok(axum::Json(WebhookView::new(w, rotated)))
}

/// Delete a webhook and its delivery history (admin).
#[utoipa::path(delete, path = "/v1/webhooks/{id}", tag = "webhooks", params(("id" = String, Path)),
    responses((status = 204), (status = 401, body = Problem), (status = 403, body = Problem),
        (status = 404, body = Problem)),
    security(("bearer" = [])))]
pub async fn delete_webhook(
    State(s): State<AppState>,
    Auth(p): Auth,
    ApiPath(id): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    s.vm.delete_webhook(&p, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A webhook's deliveries with every attempt and error, newest first (admin).
#[utoipa::path(get, path = "/v1/webhooks/{id}/deliveries", tag = "webhooks",
    params(("id" = String, Path), DeliveryQuery),
    responses((status = 200, body = DeliveryList), (status = 400, body = Problem),
        (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem)),
    security(("bearer" = [])))]
pub async fn list_deliveries(
    State(s): State<AppState>,
    Auth(p): Auth,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<DeliveryQuery>,
) -> Result<axum::Json<DeliveryList>, ApiError> {
    let limit = super::limit(q.limit.as_deref())?;
    let before = q
        .cursor
        .as_deref()
        .filter(|c| !c.is_empty())
        .map(|c| {
            c.parse::<i64>()
                .map_err(|_| ApiError::invalid("cursor is not one this server issued"))
        })
        .transpose()?;
    let items = s.vm.list_deliveries(&p, &id, before, limit + 1).await?;
    let has_more = items.len() > limit as usize;
    let items: Vec<DeliveryView> = items
        .into_iter()
        .take(limit as usize)
        .map(Into::into)
        .collect();
    let next_cursor = has_more
        .then(|| items.last().map(|d| d.id.to_string()))
        .flatten();
    Ok(axum::Json(DeliveryList { items, next_cursor }))
}
