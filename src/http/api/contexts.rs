use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use serde::Deserialize;
use utoipa::IntoParams;

use super::views::{
    ContextAsteriskBody, ContextAsteriskView, ContextEmailBody, ContextEmailView, ContextView,
    List, NewContext,
};
use crate::http::AppState;
use crate::http::error::{ApiError, Problem};
use crate::http::extract::{ApiJson, ApiPath, ApiQuery, Auth};

/// Query of `GET /v1/contexts`.
#[derive(Debug, Deserialize, IntoParams)]
pub struct ContextQuery {
    /// Page size (1-500, default 50).
    pub limit: Option<String>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// Create a context (tenant). Admin keys not scoped to a context only.
#[utoipa::path(post, path = "/v1/contexts", tag = "contexts", request_body = NewContext,
    responses((status = 201, body = ContextView), (status = 400, body = Problem),
        (status = 401, body = Problem), (status = 403, body = Problem), (status = 409, body = Problem)),
    security(("bearer" = [])))]
pub async fn create_context(
    State(s): State<AppState>,
    Auth(p): Auth,
    ApiJson(body): ApiJson<NewContext>,
) -> Result<impl IntoResponse, ApiError> {
    let c =
        s.vm.create_context(&p, &body.name, &body.description)
            .await?;
    let location = format!("/v1/contexts/{}", c.name);
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        axum::Json(ContextView::from(c)),
    ))
}

/// List the contexts this key may see.
#[utoipa::path(get, path = "/v1/contexts", tag = "contexts", params(ContextQuery),
    responses((status = 200, body = List<ContextView>), (status = 400, body = Problem),
        (status = 401, body = Problem)),
    security(("bearer" = [])))]
pub async fn list_contexts(
    State(s): State<AppState>,
    Auth(p): Auth,
    ApiQuery(q): ApiQuery<ContextQuery>,
) -> Result<axum::Json<List<ContextView>>, ApiError> {
    let limit = super::limit(q.limit.as_deref())?;
    let page = s.vm.list_contexts(&p, q.cursor.as_deref(), limit).await?;
    let next_cursor = page
        .has_more
        .then(|| page.items.last().map(|c| c.name.clone()))
        .flatten();
    Ok(axum::Json(List {
        items: page.items.into_iter().map(Into::into).collect(),
        next_cursor,
    }))
}

fn email_view(context: String, e: crate::service::ContextEmail) -> ContextEmailView {
    ContextEmailView {
        context,
        settings: e.settings.into(),
        unknown_variables: e.unknown_variables,
    }
}

/// A context's voicemail-to-email settings (overrides of the server's `[email]` values). Admin.
#[utoipa::path(get, path = "/v1/contexts/{name}/email", tag = "contexts",
    params(("name" = String, Path, description = "context name")),
    responses((status = 200, body = ContextEmailView), (status = 400, body = Problem),
        (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem)),
    security(("bearer" = [])))]
pub async fn get_context_email(
    State(s): State<AppState>,
    Auth(p): Auth,
    ApiPath(name): ApiPath<String>,
) -> Result<axum::Json<ContextEmailView>, ApiError> {
    let e = s.vm.get_context_email(&p, &name).await?;
    Ok(axum::Json(email_view(name, e)))
}

/// Replace a context's voicemail-to-email settings. Templates are checked: `${…}` must be closed
/// and escapes must be `\n`, `\t`, `\r` or `\\`; variables that are not Asterisk's are
/// allowed (they stay visible in mails) and listed in `unknown_variables`. Admin.
#[utoipa::path(put, path = "/v1/contexts/{name}/email", tag = "contexts",
    params(("name" = String, Path, description = "context name")),
    request_body = ContextEmailBody,
    responses((status = 200, body = ContextEmailView), (status = 400, body = Problem),
        (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem)),
    security(("bearer" = [])))]
pub async fn put_context_email(
    State(s): State<AppState>,
    Auth(p): Auth,
    ApiPath(name): ApiPath<String>,
    ApiJson(body): ApiJson<ContextEmailBody>,
) -> Result<axum::Json<ContextEmailView>, ApiError> {
    let e = s.vm.put_context_email(&p, &name, body.into()).await?;
    Ok(axum::Json(email_view(name, e)))
}

/// How the context's messages are shared with Asterisk's app_voicemail (ODBC storage). Admin.
#[utoipa::path(get, path = "/v1/contexts/{name}/asterisk", tag = "contexts",
    params(("name" = String, Path, description = "context name")),
    responses((status = 200, body = ContextAsteriskView), (status = 400, body = Problem),
        (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem)),
    security(("bearer" = [])))]
pub async fn get_context_asterisk(
    State(s): State<AppState>,
    Auth(p): Auth,
    ApiPath(name): ApiPath<String>,
) -> Result<axum::Json<ContextAsteriskView>, ApiError> {
    let (format, pins, mail) = s.vm.get_context_asterisk(&p, &name).await?;
    Ok(axum::Json(ContextAsteriskView {
        context: name,
        settings: ContextAsteriskBody { format, pins, mail },
    }))
}

/// Set how the context is shared with Asterisk's app_voicemail (ODBC storage, realtime users):
/// the format its Asterisk nodes store — messages and greetings stored from then on carry a copy
/// in it for Asterisk — and how PINs are kept. Admin.
#[utoipa::path(put, path = "/v1/contexts/{name}/asterisk", tag = "contexts",
    params(("name" = String, Path, description = "context name")),
    request_body = ContextAsteriskBody,
    responses((status = 200, body = ContextAsteriskView), (status = 400, body = Problem),
        (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem),
        (status = 415, body = Problem)),
    security(("bearer" = [])))]
pub async fn put_context_asterisk(
    State(s): State<AppState>,
    Auth(p): Auth,
    ApiPath(name): ApiPath<String>,
    ApiJson(body): ApiJson<ContextAsteriskBody>,
) -> Result<axum::Json<ContextAsteriskView>, ApiError> {
    s.vm.put_context_asterisk(&p, &name, body.format, body.pins, body.mail)
        .await?;
    Ok(axum::Json(ContextAsteriskView {
        context: name,
        settings: body,
    }))
}
