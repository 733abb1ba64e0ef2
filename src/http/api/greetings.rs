use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::audio::{AudioQuery, choose, serve};
use super::views::GreetingView;
use crate::audio::hint_from_content_type;
use crate::domain::GreetingKind;
use crate::http::AppState;
use crate::http::error::{ApiError, Problem};
use crate::http::extract::{ApiPath, ApiQuery, Auth};
use crate::service::ServiceError;

fn kind(s: &str) -> Result<GreetingKind, ApiError> {
    GreetingKind::parse(s).ok_or_else(|| {
        ApiError::new(
            "not-found",
            format!("no greeting {s:?}: use unavailable, busy, temp or name"),
        )
    })
}

/// Upload (or replace) a greeting; the body is the audio in any format a deposit takes (a browser
/// can send its MediaRecorder WebM/Opus as is). It is stored as uploaded.
#[utoipa::path(put, path = "/v1/mailboxes/{address}/greetings/{kind}", tag = "greetings",
    params(("address" = String, Path, description = "mailbox@context"),
        ("kind" = String, Path, description = "unavailable, busy, temp or name")),
    request_body(content((Vec<u8> = "audio/wav"), (Vec<u8> = "audio/PCMU"), (Vec<u8> = "audio/PCMA"),
        (Vec<u8> = "audio/GSM"), (Vec<u8> = "audio/x-sln"), (Vec<u8> = "audio/L16"),
        (Vec<u8> = "audio/mpeg"), (Vec<u8> = "audio/flac"), (Vec<u8> = "audio/ogg"),
        (Vec<u8> = "audio/webm"))),
    responses((status = 201, body = GreetingView), (status = 200, body = GreetingView),
        (status = 400, body = Problem), (status = 401, body = Problem), (status = 404, body = Problem),
        (status = 413, body = Problem), (status = 415, body = Problem), (status = 422, body = Problem),
        (status = 429, body = Problem, description = "too many uploads in flight for this key or address")),
    security(("bearer" = [])))]
pub async fn put_greeting(
    State(s): State<AppState>,
    Auth(p): Auth,
    ApiPath((addr, k)): ApiPath<(String, String)>,
    req: Request,
) -> Result<Response, ApiError> {
    let address = super::address(&addr)?;
    let kind = kind(&k)?;
    let ct = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let stored = async {
        let hint = hint_from_content_type(ct.as_deref()).map_err(ServiceError::from)?;
        Ok::<_, ApiError>(
            s.vm.put_greeting(&p, &address, kind, hint, req.into_body().into_data_stream())
                .await?,
        )
    }
    .await;
    if let Err(e) = &stored {
        super::log_refused_upload("greeting", &address, e);
    }
    let (g, created) = stored?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, axum::Json(GreetingView::from(g))).into_response())
}

/// The greeting's recording: original bytes by default, or a rendition chosen by `format`, an
/// extension (`unavailable.opus`) or `Accept`; Range and If-None-Match work on every format.
/// Send `Accept: application/json` for its description instead.
#[utoipa::path(get, path = "/v1/mailboxes/{address}/greetings/{kind}", tag = "greetings",
    params(("address" = String, Path, description = "mailbox@context"),
        ("kind" = String, Path, description = "unavailable, busy, temp or name, optionally with an extension (unavailable.opus)"),
        AudioQuery),
    responses((status = 200, description = "the recording (original or rendition), or its description with `Accept: application/json`",
            content((GreetingView = "application/json"), (Vec<u8> = "audio/wav"), (Vec<u8> = "audio/PCMU"),
            (Vec<u8> = "audio/PCMA"), (Vec<u8> = "audio/GSM"), (Vec<u8> = "audio/x-sln"),
            (Vec<u8> = "audio/L16"), (Vec<u8> = "audio/mpeg"), (Vec<u8> = "audio/flac"),
            (Vec<u8> = "audio/ogg"), (Vec<u8> = "audio/webm"))),
        (status = 206, description = "a byte range"), (status = 304, description = "not modified"),
        (status = 400, body = Problem), (status = 401, body = Problem), (status = 404, body = Problem),
        (status = 416, body = Problem)),
    security(("bearer" = [])))]
pub async fn get_greeting(
    State(s): State<AppState>,
    Auth(p): Auth,
    ApiPath((addr, k)): ApiPath<(String, String)>,
    ApiQuery(q): ApiQuery<AudioQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let address = super::address(&addr)?;
    let (k, ext) = match k.split_once('.') {
        Some((k, e)) => (k, Some(e)),
        None => (k.as_str(), None),
    };
    let kind = kind(k)?;
    let g = s.vm.get_greeting(&p, &address, kind).await?;
    let wants_json = ext.is_none()
        && q.format.is_none()
        && headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|a| a.contains("application/json"));
    if wants_json {
        return Ok(axum::Json(GreetingView::from(g)).into_response());
    }
    let r = choose(&q, ext, &headers, g.audio_format, &s.vm.config.audio)?;
    let original = (
        g.audio_key.as_str(),
        g.audio_format,
        g.byte_size as u64,
        g.sha256.as_str(),
    );
    serve(&s, &headers, original, r, kind.asterisk_dir()).await
}

/// Remove a greeting.
#[utoipa::path(delete, path = "/v1/mailboxes/{address}/greetings/{kind}", tag = "greetings",
    params(("address" = String, Path, description = "mailbox@context"),
        ("kind" = String, Path, description = "unavailable, busy, temp or name")),
    responses((status = 204), (status = 400, body = Problem), (status = 401, body = Problem),
        (status = 404, body = Problem)),
    security(("bearer" = [])))]
pub async fn delete_greeting(
    State(s): State<AppState>,
    Auth(p): Auth,
    ApiPath((addr, k)): ApiPath<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let address = super::address(&addr)?;
    let kind = kind(&k)?;
    s.vm.delete_greeting(&p, &address, kind).await?;
    Ok(StatusCode::NO_CONTENT)
}
