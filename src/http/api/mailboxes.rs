use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use serde::Deserialize;
use utoipa::IntoParams;

use super::views::{List, MailboxFields, MailboxView, MwiView, NewMailbox, PinBody};
use crate::domain::MailboxAddress;
use crate::http::AppState;
use crate::http::error::{ApiError, Problem};
use crate::http::extract::{ApiJson, ApiPath, ApiQuery, Auth};
use crate::service::MailboxCursor;

/// Query of `GET /v1/mailboxes`.
#[derive(Debug, Deserialize, IntoParams)]
pub struct MailboxQuery {
    /// Only this context.
    pub context: Option<String>,
    /// Search: mailbox prefix, or part of the full name or email.
    pub q: Option<String>,
    /// Page size (1-500, default 50).
    pub limit: Option<String>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// Create a mailbox (admin).
#[utoipa::path(post, path = "/v1/mailboxes", tag = "mailboxes", request_body = NewMailbox,
    responses((status = 201, body = MailboxView), (status = 400, body = Problem),
        (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem),
        (status = 409, body = Problem)),
    security(("bearer" = [])))]
pub async fn create_mailbox(
    State(s): State<AppState>,
    Auth(p): Auth,
    ApiJson(body): ApiJson<NewMailbox>,
) -> Result<impl IntoResponse, ApiError> {
    let address = MailboxAddress::new(&body.mailbox, &body.context)
        .map_err(|e| ApiError::new("invalid-mailbox-address", e.to_string()))?;
    let m =
        s.vm.create_mailbox(&p, &address, body.fields.into())
            .await?;
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, format!("/v1/mailboxes/{address}"))],
        axum::Json(MailboxView::from(m)),
    ))
}

/// List mailboxes.
#[utoipa::path(get, path = "/v1/mailboxes", tag = "mailboxes", params(MailboxQuery),
    responses((status = 200, body = List<MailboxView>), (status = 400, body = Problem),
        (status = 401, body = Problem)),
    security(("bearer" = [])))]
pub async fn list_mailboxes(
    State(s): State<AppState>,
    Auth(p): Auth,
    ApiQuery(q): ApiQuery<MailboxQuery>,
) -> Result<axum::Json<List<MailboxView>>, ApiError> {
    let limit = super::limit(q.limit.as_deref())?;
    let page =
        s.vm.list_mailboxes(
            &p,
            q.context.as_deref(),
            q.q.as_deref(),
            q.cursor.as_deref(),
            limit,
        )
        .await?;
    let next_cursor = page
        .has_more
        .then(|| page.items.last().map(MailboxCursor::encode))
        .flatten();
    Ok(axum::Json(List {
        items: page.items.into_iter().map(Into::into).collect(),
        next_cursor,
    }))
}

/// One mailbox.
#[utoipa::path(get, path = "/v1/mailboxes/{address}", tag = "mailboxes",
    params(("address" = String, Path, description = "mailbox@context")),
    responses((status = 200, body = MailboxView), (status = 400, body = Problem),
        (status = 401, body = Problem), (status = 404, body = Problem)),
    security(("bearer" = [])))]
pub async fn get_mailbox(
    State(s): State<AppState>,
    Auth(p): Auth,
    ApiPath(addr): ApiPath<String>,
) -> Result<axum::Json<MailboxView>, ApiError> {
    let address = super::address(&addr)?;
    Ok(axum::Json(s.vm.get_mailbox(&p, &address).await?.into()))
}

/// Change a mailbox's settings (admin).
#[utoipa::path(patch, path = "/v1/mailboxes/{address}", tag = "mailboxes",
    params(("address" = String, Path, description = "mailbox@context")),
    request_body = MailboxFields,
    responses((status = 200, body = MailboxView), (status = 400, body = Problem),
        (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem)),
    security(("bearer" = [])))]
pub async fn update_mailbox(
    State(s): State<AppState>,
    Auth(p): Auth,
    ApiPath(addr): ApiPath<String>,
    ApiJson(body): ApiJson<MailboxFields>,
) -> Result<axum::Json<MailboxView>, ApiError> {
    let address = super::address(&addr)?;
    Ok(axum::Json(
        s.vm.update_mailbox(&p, &address, body.into()).await?.into(),
    ))
}

/// Delete a mailbox with all its messages and greetings (admin).
#[utoipa::path(delete, path = "/v1/mailboxes/{address}", tag = "mailboxes",
    params(("address" = String, Path, description = "mailbox@context")),
    responses((status = 204), (status = 400, body = Problem), (status = 401, body = Problem),
        (status = 403, body = Problem), (status = 404, body = Problem)),
    security(("bearer" = [])))]
pub async fn delete_mailbox(
    State(s): State<AppState>,
    Auth(p): Auth,
    ApiPath(addr): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    let address = super::address(&addr)?;
    s.vm.delete_mailbox(&p, &address).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Message-waiting counts: `new/old (urgent_new/urgent_old)` and the mailbox's change version.
#[utoipa::path(get, path = "/v1/mailboxes/{address}/mwi", tag = "mailboxes",
    params(("address" = String, Path, description = "mailbox@context")),
    responses((status = 200, body = MwiView), (status = 400, body = Problem),
        (status = 401, body = Problem), (status = 404, body = Problem)),
    security(("bearer" = [])))]
pub async fn get_mwi(
    State(s): State<AppState>,
    Auth(p): Auth,
    ApiPath(addr): ApiPath<String>,
) -> Result<axum::Json<MwiView>, ApiError> {
    let address = super::address(&addr)?;
    Ok(axum::Json(s.vm.mwi(&p, &address).await?))
}

/// Check a mailbox PIN. Five failures within 15 minutes lock the mailbox for 15 minutes (429).
#[utoipa::path(post, path = "/v1/mailboxes/{address}/pin/verify", tag = "mailboxes",
    params(("address" = String, Path, description = "mailbox@context")),
    request_body = PinBody,
    responses((status = 204, description = "the PIN is right"), (status = 400, body = Problem),
        (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem),
        (status = 429, body = Problem)),
    security(("bearer" = [])))]
pub async fn verify_pin(
    State(s): State<AppState>,
    Auth(p): Auth,
    ApiPath(addr): ApiPath<String>,
    ApiJson(body): ApiJson<PinBody>,
) -> Result<StatusCode, ApiError> {
    let address = super::address(&addr)?;
    s.vm.verify_pin(&p, &address, &body.pin).await?;
    Ok(StatusCode::NO_CONTENT)
}
