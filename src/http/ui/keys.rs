//! API keys (list, create — the token shown once — revoke) and the audit log.

use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::pages::frame;
use super::views::{ApiKeysPage, AuditPage, html};
use super::{Signed, UiError, client, read_form};
use crate::domain::Role;
use crate::http::AppState;
use crate::service::{AdminSession, ServiceError};

/// Query of the keys page.
#[derive(Deserialize)]
pub struct KeysQuery {
    notice: Option<String>,
}

async fn keys_page(
    s: &AppState,
    session: &AdminSession,
    created: Option<(&str, &str)>,
    error: Option<&str>,
    notice: Option<&str>,
) -> Result<Response, UiError> {
    let mut keys = s.vm.admin_api_keys(&session.admin).await?;
    keys.sort_by(|a, b| {
        a.revoked_at
            .is_some()
            .cmp(&b.revoked_at.is_some())
            .then(b.created_at.cmp(&a.created_at))
    });
    let contexts = s.vm.admin_contexts(&session.admin).await?;
    let mut res = html(&ApiKeysPage {
        frame: frame(session, "keys"),
        keys: &keys,
        contexts: &contexts,
        created,
        error,
        notice,
    });
    if error.is_some() {
        *res.status_mut() = StatusCode::BAD_REQUEST;
    }
    Ok(res)
}

/// `GET /ui/api-keys`.
pub async fn list(
    State(s): State<AppState>,
    Signed(session): Signed,
    Query(q): Query<KeysQuery>,
) -> Result<Response, UiError> {
    let notice = (q.notice.as_deref() == Some("revoked")).then_some("Key revoked.");
    keys_page(&s, &session, None, None, notice).await
}

/// `POST /ui/api-keys`: creates a key and shows its token once (never in a URL).
pub async fn create(
    State(s): State<AppState>,
    Signed(session): Signed,
    headers: HeaderMap,
    req: Request,
) -> Result<Response, UiError> {
    let form = read_form(&session, req).await?;
    let role = Role::parse(form.get("role"))
        .ok_or_else(|| UiError::Invalid("role must be pbx or admin".into()))?;
    let context = Some(form.get("context")).filter(|c| !c.is_empty());
    match s
        .vm
        .admin_create_api_key(
            &session.admin,
            &client(&headers),
            form.get("name"),
            role,
            context,
        )
        .await
    {
        Ok(k) => keys_page(&s, &session, Some((&k.record.name, &k.token)), None, None).await,
        Err(e @ (ServiceError::Invalid(_) | ServiceError::NotFound(_))) => {
            keys_page(&s, &session, None, Some(&e.to_string()), None).await
        }
        Err(e) => Err(e.into()),
    }
}

/// `POST /ui/api-keys/{id}/revoke`.
pub async fn revoke(
    State(s): State<AppState>,
    Signed(session): Signed,
    Path(id): Path<String>,
    headers: HeaderMap,
    req: Request,
) -> Result<Response, UiError> {
    read_form(&session, req).await?;
    s.vm.admin_revoke_api_key(&session.admin, &client(&headers), &id)
        .await?;
    Ok(Redirect::to("/ui/api-keys?notice=revoked").into_response())
}

/// Query of the audit log: `before` = the id the page ends before.
#[derive(Deserialize)]
pub struct AuditQuery {
    before: Option<i64>,
}

const AUDIT_PAGE: u32 = 50;

/// `GET /ui/audit`.
pub async fn audit(
    State(s): State<AppState>,
    Signed(session): Signed,
    Query(q): Query<AuditQuery>,
) -> Result<Response, UiError> {
    let mut entries =
        s.vm.admin_audit_log(&session.admin, q.before, AUDIT_PAGE + 1)
            .await?;
    let more = entries.len() > AUDIT_PAGE as usize;
    entries.truncate(AUDIT_PAGE as usize);
    let next = more
        .then(|| entries.last().map(|e| format!("/ui/audit?before={}", e.id)))
        .flatten();
    Ok(html(&AuditPage {
        frame: frame(&session, "audit"),
        entries: &entries,
        next,
        paged: q.before.is_some(),
    }))
}
