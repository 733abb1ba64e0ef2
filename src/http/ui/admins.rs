//! Admin users (unlimited admins only; for others these pages do not exist): list, create with a
//! one-time password, limit to contexts, disable or enable, reset the password, delete.

use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::pages::frame;
use super::views::{AdminUserPage, AdminsPage, ConfirmPage, html};
use super::{Signed, UiError, client, read_form, read_multi_form};
use crate::http::AppState;
use crate::service::{AdminSession, ServiceError};

/// Query of the admin pages.
#[derive(Deserialize)]
pub struct AdminsQuery {
    notice: Option<String>,
}

struct Created<'a> {
    email: &'a str,
    password: &'a str,
}

async fn admins_page(
    s: &AppState,
    session: &AdminSession,
    created: Option<Created<'_>>,
    form: (&str, &[String]),
    error: Option<&str>,
    notice: Option<&str>,
) -> Result<Response, UiError> {
    let admins = s.vm.admin_accounts(&session.admin).await?;
    let contexts = s.vm.admin_contexts(&session.admin).await?;
    let mut res = html(&AdminsPage {
        frame: frame(session, "admins"),
        admins: &admins,
        contexts: &contexts,
        created: created.map(|c| (c.email, c.password)),
        email: form.0,
        picked: form.1,
        error,
        notice,
    });
    if error.is_some() {
        *res.status_mut() = StatusCode::BAD_REQUEST;
    }
    Ok(res)
}

/// `GET /ui/admins`.
pub async fn list(
    State(s): State<AppState>,
    Signed(session): Signed,
    Query(q): Query<AdminsQuery>,
) -> Result<Response, UiError> {
    let notice = (q.notice.as_deref() == Some("deleted")).then_some("Admin deleted.");
    admins_page(&s, &session, None, ("", &[]), None, notice).await
}

/// `POST /ui/admins`: creates an admin and shows the one-time password (never in a URL).
pub async fn create(
    State(s): State<AppState>,
    Signed(session): Signed,
    headers: HeaderMap,
    req: Request,
) -> Result<Response, UiError> {
    let f = read_multi_form(&session, req).await?;
    let email = f.get("email");
    let contexts = f.all("context");
    match s
        .vm
        .admin_create_account(&session.admin, &client(&headers), email, &contexts)
        .await
    {
        Ok((admin, password)) => {
            let created = Created {
                email: &admin.email,
                password: &password,
            };
            admins_page(&s, &session, Some(created), ("", &[]), None, None).await
        }
        Err(
            e @ (ServiceError::Invalid(_) | ServiceError::Conflict(_) | ServiceError::NotFound(_)),
        ) if session.admin.contexts.is_empty() => {
            let msg = e.to_string();
            admins_page(&s, &session, None, (email, &contexts), Some(&msg), None).await
        }
        Err(e) => Err(e.into()),
    }
}

async fn admin_page(
    s: &AppState,
    session: &AdminSession,
    id: &str,
    password: Option<&str>,
    error: Option<&str>,
    notice: Option<&str>,
) -> Result<Response, UiError> {
    let account = s.vm.admin_get_account(&session.admin, id).await?;
    let contexts = s.vm.admin_contexts(&session.admin).await?;
    let mut res = html(&AdminUserPage {
        frame: frame(session, "admins"),
        account: &account,
        contexts: &contexts,
        password,
        error,
        notice,
    });
    if error.is_some() {
        *res.status_mut() = StatusCode::BAD_REQUEST;
    }
    Ok(res)
}

/// `GET /ui/admins/{id}`.
pub async fn show(
    State(s): State<AppState>,
    Signed(session): Signed,
    Path(id): Path<String>,
    Query(q): Query<AdminsQuery>,
) -> Result<Response, UiError> {
    let notice = match q.notice.as_deref() {
        Some("saved") => Some("Contexts saved."),
        Some("disabled") => Some("Account disabled; its sessions were ended."),
        Some("enabled") => Some("Account enabled."),
        _ => None,
    };
    admin_page(&s, &session, &id, None, None, notice).await
}

/// `POST /ui/admins/{id}`: sets the contexts the admin is limited to.
pub async fn limit(
    State(s): State<AppState>,
    Signed(session): Signed,
    Path(id): Path<String>,
    headers: HeaderMap,
    req: Request,
) -> Result<Response, UiError> {
    let f = read_multi_form(&session, req).await?;
    match s
        .vm
        .admin_limit_account(&session.admin, &client(&headers), &id, &f.all("context"))
        .await
    {
        Ok(_) => Ok(Redirect::to(&format!("/ui/admins/{id}?notice=saved")).into_response()),
        Err(e @ (ServiceError::Invalid(_) | ServiceError::Forbidden(_))) => {
            admin_page(&s, &session, &id, None, Some(&e.to_string()), None).await
        }
        Err(e) => Err(e.into()),
    }
}

/// `POST /ui/admins/{id}/state`: `disabled` = 1 disables, 0 enables.
pub async fn set_state(
    State(s): State<AppState>,
    Signed(session): Signed,
    Path(id): Path<String>,
    headers: HeaderMap,
    req: Request,
) -> Result<Response, UiError> {
    let f = read_form(&session, req).await?;
    let disabled = f.get("disabled") == "1";
    s.vm.admin_disable_account(&session.admin, &client(&headers), &id, disabled)
        .await?;
    let notice = if disabled { "disabled" } else { "enabled" };
    Ok(Redirect::to(&format!("/ui/admins/{id}?notice={notice}")).into_response())
}

/// `POST /ui/admins/{id}/password`: a new one-time password, shown once.
pub async fn reset_password(
    State(s): State<AppState>,
    Signed(session): Signed,
    Path(id): Path<String>,
    headers: HeaderMap,
    req: Request,
) -> Result<Response, UiError> {
    read_form(&session, req).await?;
    let (_, password) =
        s.vm.admin_reset_account_password(&session.admin, &client(&headers), &id)
            .await?;
    admin_page(&s, &session, &id, Some(&password), None, None).await
}

/// `GET /ui/admins/{id}/delete`: asks first.
pub async fn confirm_delete(
    State(s): State<AppState>,
    Signed(session): Signed,
    Path(id): Path<String>,
) -> Result<Response, UiError> {
    let account = s.vm.admin_get_account(&session.admin, &id).await?;
    if account.id == session.admin.id {
        return Err(UiError::Forbidden(
            "You cannot delete your own account.".into(),
        ));
    }
    Ok(html(&ConfirmPage {
        frame: frame(&session, "admins"),
        crumbs: vec![
            ("Admins".into(), "/ui/admins".into()),
            (account.email.clone(), format!("/ui/admins/{id}")),
            ("Delete".into(), String::new()),
        ],
        heading: format!("Delete the admin {}?", account.email),
        text: "They are signed out and cannot sign in again. The audit log keeps their actions \
               under their email. To pause an account, disable it instead."
            .into(),
        action: format!("/ui/admins/{id}/delete"),
        button: "Delete admin",
        cancel: format!("/ui/admins/{id}"),
    }))
}

/// `POST /ui/admins/{id}/delete`.
pub async fn delete(
    State(s): State<AppState>,
    Signed(session): Signed,
    Path(id): Path<String>,
    headers: HeaderMap,
    req: Request,
) -> Result<Response, UiError> {
    read_form(&session, req).await?;
    s.vm.admin_delete_account(&session.admin, &client(&headers), &id)
        .await?;
    Ok(Redirect::to("/ui/admins?notice=deleted").into_response())
}
