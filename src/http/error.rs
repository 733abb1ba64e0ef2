//! RFC 9457 problem+json: every error response, with a stable `type` per cause.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::audio::AudioError;
use crate::service::ServiceError;

/// Every problem type this API answers with: slug, HTTP status, title.
pub const PROBLEMS: &[(&str, u16, &str)] = &[
    (
        "invalid-request",
        400,
        "The request is malformed or a value is invalid",
    ),
    (
        "invalid-mailbox-address",
        400,
        "Malformed mailbox address (use mailbox@context)",
    ),
    ("unknown-folder", 400, "Unknown folder"),
    (
        "unsupported-format",
        400,
        "The requested audio output format or its parameters are not offered",
    ),
    ("request-body", 400, "The request body could not be read"),
    ("unauthorized", 401, "Missing or invalid API key"),
    ("forbidden", 403, "This key's role may not do this"),
    ("pin-mismatch", 403, "Wrong PIN"),
    ("not-found", 404, "Not found"),
    ("method-not-allowed", 405, "Method not allowed"),
    ("conflict", 409, "Already exists"),
    (
        "deposit-deleted",
        410,
        "This Idempotency-Key's deposit was stored, and its message has since been deleted",
    ),
    ("payload-too-large", 413, "The request body is too large"),
    (
        "unsupported-media-type",
        415,
        "The Content-Type is not accepted here",
    ),
    ("unsupported-audio", 415, "The audio format is not accepted"),
    (
        "range-not-satisfiable",
        416,
        "The requested range lies outside the audio",
    ),
    (
        "corrupt-audio",
        422,
        "The audio is damaged or its header is wrong",
    ),
    (
        "too-short",
        422,
        "The recording is shorter than the mailbox's minimum",
    ),
    (
        "too-long",
        422,
        "The recording is longer than the mailbox's maximum",
    ),
    (
        "locked",
        429,
        "Too many failed PIN attempts; the mailbox is locked for a while",
    ),
    (
        "request-timeout",
        408,
        "The request was not sent in time (too slow, or stalled)",
    ),
    (
        "too-many-uploads",
        429,
        "Too many uploads in flight for this API key or client address; retry later",
    ),
    ("internal", 500, "Internal error"),
    ("unavailable", 503, "A back end is unavailable; retry later"),
    (
        "busy",
        503,
        "The node is at its limit of concurrent audio work; retry later",
    ),
    (
        "imap-unavailable",
        503,
        "The mailbox's IMAP server is unavailable; retry later",
    ),
    (
        "not-implemented",
        501,
        "Not available for this mailbox's message store yet",
    ),
    ("mailbox-full", 507, "The mailbox folder is full"),
];

/// The problem+json body.
#[derive(Debug, Serialize, ToSchema)]
pub struct Problem {
    /// A URI reference naming the cause, e.g. `/problems/mailbox-full` (resolvable on this server).
    #[serde(rename = "type")]
    pub type_: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
}

/// An error on its way to the client.
#[derive(Debug)]
pub struct ApiError {
    slug: &'static str,
    detail: String,
    headers: Vec<(header::HeaderName, String)>,
}

impl ApiError {
    /// The HTTP status, the problem type's title, the detail and the extra headers: what the API
    /// answers, and what the web UI shows on its error page.
    pub fn parts(
        &self,
    ) -> (
        StatusCode,
        &'static str,
        &str,
        &[(header::HeaderName, String)],
    ) {
        let (status, title) = lookup(self.slug);
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (status, title, &self.detail, &self.headers)
    }

    pub fn new(slug: &'static str, detail: impl Into<String>) -> Self {
        Self {
            slug,
            detail: detail.into(),
            headers: Vec::new(),
        }
    }

    pub fn with_header(mut self, name: header::HeaderName, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    pub fn unauthorized(detail: impl Into<String>) -> Self {
        Self::new("unauthorized", detail).with_header(header::WWW_AUTHENTICATE, "Bearer")
    }

    pub fn invalid(detail: impl Into<String>) -> Self {
        Self::new("invalid-request", detail)
    }

    pub fn slug(&self) -> &'static str {
        self.slug
    }

    pub fn detail(&self) -> &str {
        &self.detail
    }

    /// The HTTP status of the answer.
    pub fn status(&self) -> u16 {
        lookup(self.slug).0
    }
}

fn lookup(slug: &str) -> (u16, &'static str) {
    PROBLEMS
        .iter()
        .find(|(s, _, _)| *s == slug)
        .map(|(_, st, t)| (*st, *t))
        .unwrap_or((500, "Internal error"))
}

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        let detail = e.to_string();
        match e {
            ServiceError::NotFound(_) => Self::new("not-found", detail),
            ServiceError::Forbidden(_) => Self::new("forbidden", detail),
            ServiceError::Invalid(_) => Self::new("invalid-request", detail),
            ServiceError::Address(_) => Self::new("invalid-mailbox-address", detail),
            ServiceError::Folder(_) => Self::new("unknown-folder", detail),
            ServiceError::Conflict(_) => Self::new("conflict", detail),
            ServiceError::DepositDeleted(_) => Self::new("deposit-deleted", detail),
            ServiceError::MailboxFull(_) => Self::new("mailbox-full", detail),
            ServiceError::Audio(AudioError::Unsupported(_)) => {
                Self::new("unsupported-audio", detail)
            }
            ServiceError::Audio(AudioError::UnsupportedMediaType(_)) => {
                Self::new("unsupported-media-type", detail)
            }
            ServiceError::Audio(AudioError::Corrupt(_)) => Self::new("corrupt-audio", detail),
            ServiceError::Audio(AudioError::TooLong(_)) => Self::new("too-long", detail),
            // A storage failure: its cause is logged where it happened, not echoed.
            ServiceError::Audio(AudioError::Write(_)) => {
                Self::new("unavailable", "the rendition could not be stored")
                    .with_header(header::RETRY_AFTER, "5")
            }
            ServiceError::TooShort { .. } => Self::new("too-short", detail),
            ServiceError::TooLong { .. } => Self::new("too-long", detail),
            ServiceError::PayloadTooLarge { .. } => Self::new("payload-too-large", detail),
            ServiceError::Body(_) => Self::new("request-body", detail),
            ServiceError::Locked { retry_after } => Self::new("locked", detail)
                .with_header(header::RETRY_AFTER, retry_after.to_string()),
            ServiceError::PinMismatch => Self::new("pin-mismatch", detail),
            ServiceError::RangeNotSatisfiable { size } => {
                Self::new("range-not-satisfiable", detail)
                    .with_header(header::CONTENT_RANGE, format!("bytes */{size}"))
            }
            ServiceError::Unavailable(_) => {
                Self::new("unavailable", detail).with_header(header::RETRY_AFTER, "5")
            }
            ServiceError::ImapUnavailable { retry_after, .. } => {
                Self::new("imap-unavailable", detail)
                    .with_header(header::RETRY_AFTER, retry_after.to_string())
            }
            ServiceError::NotImplemented(_) => Self::new("not-implemented", detail),
            ServiceError::Busy { retry_after, .. } => {
                Self::new("busy", detail).with_header(header::RETRY_AFTER, retry_after.to_string())
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, title) = lookup(self.slug);
        let status_code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        // WARN/ERROR are for faults an operator must look at; a full mailbox (507), a busy node
        // shedding load or a feature not offered are answers like any 4xx.
        match self.slug {
            "internal" => {
                tracing::error!(problem = self.slug, detail = %self.detail, "request failed")
            }
            "unavailable" | "imap-unavailable" => {
                tracing::warn!(problem = self.slug, detail = %self.detail, "request failed")
            }
            _ if status_code.is_server_error() => {
                tracing::info!(problem = self.slug, detail = %self.detail, "request refused")
            }
            _ => {}
        }
        let body = Problem {
            type_: format!("/problems/{}", self.slug),
            title: title.to_owned(),
            status,
            detail: self.detail,
        };
        let mut resp = (status_code, axum::Json(body)).into_response();
        let h = resp.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        for (name, value) in self.headers {
            if let Ok(v) = HeaderValue::from_str(&value) {
                h.insert(name, v);
            }
        }
        resp
    }
}

/// `GET /problems/{slug}`: what a problem type means.
pub async fn describe_problem(
    axum::extract::Path(slug): axum::extract::Path<String>,
) -> Result<String, ApiError> {
    PROBLEMS
        .iter()
        .find(|(s, _, _)| *s == slug)
        .map(|(s, status, title)| format!("{s}\nHTTP {status}\n{title}\n"))
        .ok_or_else(|| ApiError::new("not-found", format!("no problem type {slug}")))
}
