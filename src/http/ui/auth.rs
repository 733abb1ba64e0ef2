//! Sign in and sign out.

use std::collections::HashMap;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};

use super::views::{LoginPage, html};
use super::{LOGIN_COOKIE, SESSION_COOKIE, Signed, UiError, client, cookie, secure, set_cookie};
use crate::http::AppState;
use crate::service::LoginOutcome;

fn fresh_token() -> String {
    use argon2::password_hash::rand_core::{OsRng, RngCore};
    use base64::Engine;
    let mut b = [0u8; 32];
    OsRng.fill_bytes(&mut b);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

/// The sign-in form, with a fresh double-submit token (cookie + hidden field): there is no
/// session yet whose CSRF token could protect it.
fn login_form(
    state: &AppState,
    headers: &HeaderMap,
    status: StatusCode,
    email: &str,
    error: Option<&str>,
    notice: Option<&str>,
) -> Response {
    let token = fresh_token();
    let page = LoginPage {
        csrf: &token,
        email,
        error,
        notice,
    };
    (
        status,
        [(
            header::SET_COOKIE,
            set_cookie(LOGIN_COOKIE, &token, Some(3600), secure(headers, state)),
        )],
        html(&page),
    )
        .into_response()
}

/// `GET /ui/login`.
pub async fn login_page(
    State(s): State<AppState>,
    signed: Option<Signed>,
    headers: HeaderMap,
) -> Response {
    if signed.is_some() {
        return Redirect::to("/ui/").into_response();
    }
    login_form(&s, &headers, StatusCode::OK, "", None, None)
}

/// `POST /ui/login`.
pub async fn login(
    State(s): State<AppState>,
    headers: HeaderMap,
    axum::Form(form): axum::Form<HashMap<String, String>>,
) -> Result<Response, UiError> {
    let expected = cookie(&headers, LOGIN_COOKIE).unwrap_or("");
    let sent = form.get("csrf").map(String::as_str).unwrap_or("");
    if !crate::service::same_token(expected, sent) {
        return Err(UiError::Csrf);
    }
    let email = form.get("email").map(|e| e.trim()).unwrap_or("");
    let password = form.get("password").map(String::as_str).unwrap_or("");
    let who = client(&headers);
    match s.vm.admin_login(email, password, &who).await? {
        LoginOutcome::SignedIn { token, .. } => {
            let secure = secure(&headers, &s);
            let ttl = s.vm.config().ui.session_ttl_secs;
            let mut res = Redirect::to("/ui/").into_response();
            let h = res.headers_mut();
            for c in [
                set_cookie(SESSION_COOKIE, &token, Some(ttl), secure),
                set_cookie(LOGIN_COOKIE, "", Some(0), secure),
            ] {
                if let Ok(v) = c.parse() {
                    h.append(header::SET_COOKIE, v);
                }
            }
            Ok(res)
        }
        LoginOutcome::Rejected => Ok(login_form(
            &s,
            &headers,
            StatusCode::UNAUTHORIZED,
            email,
            Some("The email address or the password is wrong."),
            None,
        )),
        LoginOutcome::Locked { retry_after } => {
            let minutes = retry_after.div_ceil(60);
            let msg = format!(
                "Too many failed sign-ins: this account is locked for {minutes} more minute{}.",
                if minutes == 1 { "" } else { "s" }
            );
            Ok(login_form(
                &s,
                &headers,
                StatusCode::TOO_MANY_REQUESTS,
                email,
                Some(&msg),
                None,
            ))
        }
    }
}

/// `POST /ui/logout`.
pub async fn logout(
    State(s): State<AppState>,
    Signed(session): Signed,
    headers: HeaderMap,
    req: Request,
) -> Result<Response, UiError> {
    super::read_form(&session, req).await?;
    s.vm.admin_logout(&session, &client(&headers)).await?;
    let secure = secure(&headers, &s);
    let mut res = login_form(
        &s,
        &headers,
        StatusCode::OK,
        "",
        None,
        Some("You are signed out."),
    );
    if let Ok(v) = set_cookie(SESSION_COOKIE, "", Some(0), secure).parse() {
        res.headers_mut().append(header::SET_COOKIE, v);
    }
    Ok(res)
}
