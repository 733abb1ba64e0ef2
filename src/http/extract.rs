//! Extractors whose rejections are problem+json, and bearer-key authentication.

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::header;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use super::AppState;
use super::error::ApiError;
use crate::domain::Principal;

/// The authenticated caller.
pub struct Auth(pub Principal);

impl FromRequestParts<AppState> for Auth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let value = parts
            .headers
            .get(header::AUTHORIZATION)
            .ok_or_else(|| ApiError::unauthorized("send Authorization: Bearer <API key>"))?;
        let token = value
            .to_str()
            .ok()
            .and_then(|v| {
                let (scheme, rest) = v.split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
            })
            .ok_or_else(|| {
                ApiError::unauthorized("the Authorization header must be Bearer <API key>")
            })?;
        match state.vm.authenticate(token).await? {
            Some(p) => Ok(Auth(p)),
            None => Err(ApiError::unauthorized("unknown or revoked API key")),
        }
    }
}

/// JSON body; a bad body is a problem+json 400/415.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        match axum::Json::<serde_json::Value>::from_request(req, state).await {
            // serde would also read a struct from a JSON array by position; bodies are objects.
            Ok(axum::Json(v)) if !v.is_object() => {
                Err(ApiError::invalid("the request body must be a JSON object"))
            }
            Ok(axum::Json(v)) => serde_json::from_value(v)
                .map(ApiJson)
                .map_err(|e| ApiError::invalid(format!("invalid request body: {e}"))),
            Err(e) => {
                let slug = if e.status() == axum::http::StatusCode::UNSUPPORTED_MEDIA_TYPE {
                    "unsupported-media-type"
                } else if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                    "payload-too-large"
                } else {
                    "invalid-request"
                };
                Err(ApiError::new(slug, e.body_text()))
            }
        }
    }
}

/// Query string; a bad one is a problem+json 400.
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(v)) => Ok(ApiQuery(v)),
            Err(e) => Err(ApiError::invalid(e.body_text())),
        }
    }
}

/// Path parameters as plain strings (parsed by the handlers into domain types).
pub struct ApiPath<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(v)) => Ok(ApiPath(v)),
            Err(e) => Err(ApiError::invalid(e.body_text())),
        }
    }
}
