//! The admin web UI at `/ui`: server-rendered HTML (askama templates from `web/templates`,
//! compiled into the binary), a stylesheet and one small script from `web/static` (embedded too),
//! and a session cookie. Handlers call the services, like the API's.
//!
//! Security: the session cookie is `HttpOnly; SameSite=Strict; Path=/ui` (and `Secure` over TLS);
//! every POST carries the session's CSRF token (sign-in a double-submit token) or gets a 403
//! page; every response has a strict Content-Security-Policy (no inline script or style) and
//! `X-Frame-Options: DENY`, `X-Content-Type-Options: nosniff`, `Referrer-Policy: same-origin`.

mod admins;
mod assets;
mod auth;
mod integrations;
mod keys;
mod messages;
mod pages;
mod views;

use axum::Router;
use axum::extract::{FromRequestParts, OptionalFromRequestParts};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};

use super::AppState;
use super::error::ApiError;
use crate::service::{AdminClient, AdminSession, ServiceError};

/// Name of the session cookie.
const SESSION_COOKIE: &str = "vxm_session";
/// Name of the sign-in form's double-submit cookie.
const LOGIN_COOKIE: &str = "vxm_login";

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
    connect-src 'self'; media-src 'self'; form-action 'self'; frame-ancestors 'none'; \
    base-uri 'none'";

/// The UI's routes (mounted by `http::router` when `[ui] enabled`); `limit_uploads` bounds the
/// greeting uploads in flight per session and per client address.
pub fn router<L>(limit_uploads: L) -> Router<AppState>
where
    L: tower::Layer<axum::routing::Route> + Clone + Send + Sync + 'static,
    L::Service: tower::Service<axum::extract::Request, Error = std::convert::Infallible>
        + Clone
        + Send
        + Sync
        + 'static,
    <L::Service as tower::Service<axum::extract::Request>>::Response:
        axum::response::IntoResponse + 'static,
    <L::Service as tower::Service<axum::extract::Request>>::Future: Send + 'static,
{
    let ctx = "/ui/contexts/{ctx}";
    Router::new()
        .route("/", get(|| async { Redirect::to("/ui/") }))
        .route("/ui", get(|| async { Redirect::to("/ui/") }))
        .route("/ui/login", get(auth::login_page).post(auth::login))
        .route("/ui/logout", post(auth::logout))
        .route("/ui/", get(pages::dashboard))
        .route("/ui/queues/{queue}/retry", post(pages::retry_queue))
        .route("/ui/api/stats", get(pages::stats))
        .route(
            "/ui/contexts",
            get(pages::contexts).post(pages::create_context),
        )
        .route(
            &format!("{ctx}/mailboxes"),
            get(pages::mailboxes).post(pages::create_mailbox),
        )
        .route(&format!("{ctx}/mailboxes/new"), get(pages::new_mailbox))
        .route(
            &format!("{ctx}/mailboxes/{{mbx}}"),
            get(pages::edit_mailbox).post(pages::update_mailbox),
        )
        .route(
            &format!("{ctx}/mailboxes/{{mbx}}/delete"),
            get(pages::confirm_delete).post(pages::delete_mailbox),
        )
        .route(
            &format!("{ctx}/mailboxes/{{mbx}}/messages"),
            get(messages::list).post(messages::bulk),
        )
        .route(
            &format!("{ctx}/mailboxes/{{mbx}}/messages/{{id}}"),
            get(messages::show).post(messages::act),
        )
        .route(
            &format!("{ctx}/mailboxes/{{mbx}}/messages/{{id}}/audio"),
            get(messages::audio),
        )
        .route(
            &format!("{ctx}/mailboxes/{{mbx}}/messages/{{id}}/peaks"),
            get(messages::peaks),
        )
        .route(
            &format!("{ctx}/mailboxes/{{mbx}}/greetings"),
            get(messages::greetings),
        )
        .route(
            &format!("{ctx}/mailboxes/{{mbx}}/greetings/{{kind}}"),
            // The service bounds the audio (the mailbox's maxsecs), as for API deposits.
            post(messages::put_greeting)
                .layer(axum::extract::DefaultBodyLimit::disable())
                .layer(limit_uploads),
        )
        .route(
            &format!("{ctx}/mailboxes/{{mbx}}/greetings/{{kind}}/audio"),
            get(messages::greeting_audio),
        )
        .route(
            &format!("{ctx}/mailboxes/{{mbx}}/greetings/{{kind}}/delete"),
            post(messages::delete_greeting),
        )
        .route("/ui/api-keys", get(keys::list).post(keys::create))
        .route("/ui/api-keys/{id}/revoke", post(keys::revoke))
        .route("/ui/audit", get(keys::audit))
        .route("/ui/admins", get(admins::list).post(admins::create))
        .route("/ui/admins/{id}", get(admins::show).post(admins::limit))
        .route("/ui/admins/{id}/state", post(admins::set_state))
        .route("/ui/admins/{id}/password", post(admins::reset_password))
        .route(
            "/ui/admins/{id}/delete",
            get(admins::confirm_delete).post(admins::delete),
        )
        .route(
            &format!("{ctx}/webhooks"),
            get(integrations::webhooks).post(integrations::create_webhook),
        )
        .route(
            &format!("{ctx}/webhooks/{{id}}"),
            get(integrations::webhook).post(integrations::update_webhook),
        )
        .route(
            &format!("{ctx}/webhooks/{{id}}/test"),
            post(integrations::test_webhook),
        )
        .route(
            &format!("{ctx}/webhooks/{{id}}/delete"),
            get(integrations::confirm_delete_webhook).post(integrations::delete_webhook),
        )
        .route(
            &format!("{ctx}/mwi-targets"),
            get(integrations::targets).post(integrations::create_target),
        )
        .route(
            &format!("{ctx}/mwi-targets/resync"),
            post(integrations::resync),
        )
        .route(
            &format!("{ctx}/mwi-targets/{{id}}"),
            get(integrations::target).post(integrations::update_target),
        )
        .route(
            &format!("{ctx}/mwi-targets/{{id}}/test"),
            post(integrations::test_target),
        )
        .route(
            &format!("{ctx}/mwi-targets/{{id}}/delete"),
            get(integrations::confirm_delete_target).post(integrations::delete_target),
        )
        .route(
            &format!("{ctx}/mailboxes/{{mbx}}/messages/counts"),
            get(messages::counts),
        )
        .route(&format!("{ctx}/events"), get(pages::events))
        .route("/ui/static/{file}", get(assets::serve))
        .route("/ui/{*rest}", get(not_found).post(not_found))
        .layer(axum::middleware::map_response(security_headers))
        .layer(axum::middleware::map_request(record_peer))
}

async fn not_found() -> Response {
    UiError::NotFound.into_response()
}

async fn security_headers(mut res: Response) -> Response {
    let h = res.headers_mut();
    h.insert("content-security-policy", HeaderValue::from_static(CSP));
    h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    h.insert("referrer-policy", HeaderValue::from_static("same-origin"));
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    res
}

/// A UI failure, answered with an HTML page (or a redirect to sign in).
#[derive(Debug)]
pub enum UiError {
    /// No valid session: go to the sign-in page.
    SignIn,
    /// A POST without this session's CSRF token.
    Csrf,
    NotFound,
    Forbidden(String),
    Invalid(String),
    Unavailable(String),
    /// A service failure, shown with the status, title and detail the API gives it (an IMAP
    /// outage is 503 "The mailbox's IMAP server is unavailable" on both).
    Service(ApiError),
}

impl From<ServiceError> for UiError {
    fn from(e: ServiceError) -> Self {
        match e {
            ServiceError::NotFound(_) => Self::NotFound,
            ServiceError::Forbidden(m) => Self::Forbidden(m),
            other => Self::Service(other.into()),
        }
    }
}

impl IntoResponse for UiError {
    fn into_response(self) -> Response {
        let (status, title, detail) = match self {
            Self::SignIn => return Redirect::to("/ui/login").into_response(),
            Self::Csrf => (
                StatusCode::FORBIDDEN,
                "Request refused",
                "This form was not sent from a page of this session (missing or wrong CSRF \
                 token). Go back, reload the page and try again."
                    .to_owned(),
            ),
            Self::NotFound => (
                StatusCode::NOT_FOUND,
                "Not found",
                "There is nothing here, or you may not see it.".to_owned(),
            ),
            Self::Forbidden(m) => (StatusCode::FORBIDDEN, "Not allowed", m),
            Self::Invalid(m) => (StatusCode::BAD_REQUEST, "Invalid request", m),
            Self::Unavailable(m) => (StatusCode::SERVICE_UNAVAILABLE, "Unavailable", m),
            Self::Service(e) => {
                let (status, title, detail, headers) = e.parts();
                let page = views::ErrorPage {
                    title,
                    detail,
                    status: status.as_u16(),
                };
                let mut res = (status, views::html(&page)).into_response();
                for (name, value) in headers {
                    if let Ok(v) = HeaderValue::from_str(value) {
                        res.headers_mut().insert(name.clone(), v);
                    }
                }
                return res;
            }
        };
        let page = views::ErrorPage {
            title,
            detail: &detail,
            status: status.as_u16(),
        };
        (status, views::html(&page)).into_response()
    }
}

/// Reads one cookie.
fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find_map(|(k, v)| (k == name).then_some(v))
}

/// Whether the request came over TLS (as a proxy says), or the config says always.
fn secure(headers: &HeaderMap, state: &AppState) -> bool {
    state.vm.config().ui.secure_cookie
        || headers
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.split(',').next().is_some_and(|p| p.trim() == "https"))
}

/// A `Set-Cookie` value for the UI (empty value + Max-Age=0 removes it).
fn set_cookie(name: &str, value: &str, max_age: Option<u64>, secure: bool) -> String {
    let mut c = format!("{name}={value}; Path=/ui; HttpOnly; SameSite=Strict");
    if let Some(age) = max_age {
        c.push_str(&format!("; Max-Age={age}"));
    }
    if secure {
        c.push_str("; Secure");
    }
    c
}

/// Internal header carrying the TCP peer's address to `client` (a client's own is removed).
const PEER_HEADER: &str = "x-voxmail-peer";

/// Puts the TCP peer's address (known when the server is served with connect info) where
/// `client` finds it, after removing any such header the client sent.
async fn record_peer(mut req: axum::extract::Request) -> axum::extract::Request {
    req.headers_mut().remove(PEER_HEADER);
    let peer = req
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip().to_string());
    if let Some(v) = peer.and_then(|p| HeaderValue::from_str(&p).ok()) {
        req.headers_mut().insert(PEER_HEADER, v);
    }
    req
}

/// Who is calling, for the audit log: the address the nearest proxy saw (the last
/// `X-Forwarded-For` entry; earlier ones are the client's own claims) and the TCP peer, as
/// `203.0.113.9 via 10.0.0.2`, or whichever of the two is known.
fn client(headers: &HeaderMap) -> AdminClient {
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let forwarded = text("x-forwarded-for")
        .and_then(|v| v.rsplit(',').next())
        .map(str::trim)
        .filter(|v| !v.is_empty());
    let ip = match (forwarded, text(PEER_HEADER)) {
        (Some(f), Some(p)) if f != p => format!("{f} via {p}"),
        (Some(f), _) => f.to_owned(),
        (None, Some(p)) => p.to_owned(),
        (None, None) => String::new(),
    };
    let user_agent = headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    AdminClient { ip, user_agent }
}

/// The signed-in admin's session; without one, the sign-in page.
pub struct Signed(pub AdminSession);

impl FromRequestParts<AppState> for Signed {
    type Rejection = UiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, UiError> {
        let Some(token) = cookie(&parts.headers, SESSION_COOKIE) else {
            return Err(UiError::SignIn);
        };
        match state.vm.admin_session(token).await? {
            Some(s) => Ok(Signed(s)),
            None => Err(UiError::SignIn),
        }
    }
}

impl OptionalFromRequestParts<AppState> for Signed {
    type Rejection = UiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Option<Self>, UiError> {
        match <Self as FromRequestParts<AppState>>::from_request_parts(parts, state).await {
            Ok(s) => Ok(Some(s)),
            Err(UiError::SignIn) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// A submitted form whose `csrf` field matches the session's token.
pub struct Form(pub std::collections::HashMap<String, String>);

impl Form {
    fn from_body(
        session: &AdminSession,
        body: std::collections::HashMap<String, String>,
    ) -> Result<Self, UiError> {
        match body.get("csrf") {
            Some(t) if crate::service::same_token(t, &session.csrf) => Ok(Self(body)),
            _ => Err(UiError::Csrf),
        }
    }

    /// A field, trimmed (absent = empty).
    fn get(&self, name: &str) -> &str {
        self.0.get(name).map(|s| s.trim()).unwrap_or("")
    }

    /// A checkbox.
    fn checked(&self, name: &str) -> bool {
        self.0.contains_key(name)
    }
}

/// Reads an urlencoded body (any failure is the CSRF refusal: no token could be read).
async fn read_form(session: &AdminSession, req: axum::extract::Request) -> Result<Form, UiError> {
    use axum::extract::FromRequest;
    match axum::Form::<std::collections::HashMap<String, String>>::from_request(req, &()).await {
        Ok(axum::Form(body)) => Form::from_body(session, body),
        Err(_) => Err(UiError::Csrf),
    }
}

/// A submitted form whose fields may repeat (checkbox groups), with this session's CSRF token.
pub struct MultiForm(Vec<(String, String)>);

impl MultiForm {
    /// The first value of a field, trimmed (absent = empty).
    fn get(&self, name: &str) -> &str {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.trim())
            .unwrap_or("")
    }

    /// Every non-empty value of a field, trimmed.
    fn all(&self, name: &str) -> Vec<String> {
        self.0
            .iter()
            .filter(|(k, v)| k == name && !v.trim().is_empty())
            .map(|(_, v)| v.trim().to_owned())
            .collect()
    }

    /// A checkbox.
    fn checked(&self, name: &str) -> bool {
        self.0.iter().any(|(k, _)| k == name)
    }
}

/// Reads an urlencoded body with repeated fields (a missing or wrong token is the CSRF refusal).
async fn read_multi_form(
    session: &AdminSession,
    req: axum::extract::Request,
) -> Result<MultiForm, UiError> {
    use axum::extract::FromRequest;
    let axum::Form(fields) = axum::Form::<Vec<(String, String)>>::from_request(req, &())
        .await
        .map_err(|_| UiError::Csrf)?;
    let form = MultiForm(fields);
    if crate::service::same_token(form.get("csrf"), &session.csrf) {
        Ok(form)
    } else {
        Err(UiError::Csrf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_found_by_name() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; vxm_session=abc; b=2"),
        );
        assert_eq!(cookie(&h, SESSION_COOKIE), Some("abc"));
        assert_eq!(cookie(&h, "c"), None);
    }

    #[test]
    fn the_client_address_is_what_the_nearest_proxy_saw() {
        let mut h = HeaderMap::new();
        assert_eq!(client(&h).ip, "");
        h.insert(PEER_HEADER, HeaderValue::from_static("10.0.0.2"));
        assert_eq!(client(&h).ip, "10.0.0.2");
        h.insert(
            "x-forwarded-for",
            HeaderValue::from_static("198.51.100.7, 203.0.113.9"),
        );
        assert_eq!(client(&h).ip, "203.0.113.9 via 10.0.0.2");
        h.remove(PEER_HEADER);
        assert_eq!(client(&h).ip, "203.0.113.9");
    }

    #[test]
    fn session_cookies_are_strict() {
        let c = set_cookie(SESSION_COOKIE, "t", None, true);
        assert_eq!(
            c,
            "vxm_session=t; Path=/ui; HttpOnly; SameSite=Strict; Secure"
        );
    }

    #[test]
    fn a_service_failure_gets_the_apis_status_title_and_retry_after() {
        let res = UiError::from(ServiceError::ImapUnavailable {
            message: "the IMAP server of 1001@default did not answer".into(),
            retry_after: 7,
        })
        .into_response();
        assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(res.headers()[header::RETRY_AFTER], "7");
        let res = UiError::from(ServiceError::MailboxFull("INBOX is full".into())).into_response();
        assert_eq!(res.status(), StatusCode::INSUFFICIENT_STORAGE);
        let res = UiError::from(ServiceError::NotFound("mailbox".into())).into_response();
        assert_eq!(res.status(), StatusCode::NOT_FOUND);
    }
}
