use axum::extract::{FromRequest, Multipart, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use utoipa::IntoParams;

use super::audio::{AudioQuery, choose, serve};
use super::views::{ForwardBody, ForwardView, List, MessagePatch, MessageView};
use crate::audio::{RawHint, hint_from_content_type};
use crate::domain::{Folder, MailboxAddress, MessageId, Principal};
use crate::http::AppState;
use crate::http::error::{ApiError, Problem};
use crate::http::extract::{ApiJson, ApiPath, ApiQuery, Auth};
use crate::service::{DepositMeta, ForwardRequest, ServiceError};
use crate::store::{MailboxRecord, MessageRecord};

/// Metadata of a raw-body deposit, as query parameters.
#[derive(Debug, Default, Deserialize, IntoParams)]
pub struct DepositQuery {
    pub caller_id_num: Option<String>,
    pub caller_id_name: Option<String>,
    /// true/false, 1/0 or yes/no.
    pub urgent: Option<String>,
    pub category: Option<String>,
    /// Dialplan context the call came from.
    pub context: Option<String>,
    pub exten: Option<String>,
    pub rdnis: Option<String>,
    pub priority: Option<String>,
    pub callerchan: Option<String>,
    /// Unix seconds; default now.
    pub orig_time: Option<String>,
}

fn parse_bool(name: &str, v: Option<String>) -> Result<Option<bool>, ApiError> {
    match v.as_deref().map(str::to_ascii_lowercase).as_deref() {
        None => Ok(None),
        Some("1" | "true" | "yes" | "on") => Ok(Some(true)),
        Some("0" | "false" | "no" | "off" | "") => Ok(Some(false)),
        Some(other) => Err(ApiError::invalid(format!(
            "{name} must be true or false, not {other:?}"
        ))),
    }
}

fn parse_int(name: &str, v: Option<String>) -> Result<Option<i64>, ApiError> {
    match v.as_deref() {
        None | Some("") => Ok(None),
        Some(s) => s
            .parse()
            .map(Some)
            .map_err(|_| ApiError::invalid(format!("{name} must be a whole number"))),
    }
}

impl DepositQuery {
    fn into_meta(self) -> Result<DepositMeta, ApiError> {
        Ok(DepositMeta {
            urgent: parse_bool("urgent", self.urgent)?,
            priority: parse_int("priority", self.priority)?,
            orig_time: parse_int("orig_time", self.orig_time)?,
            caller_id_num: self.caller_id_num,
            caller_id_name: self.caller_id_name,
            category: self.category,
            context: self.context,
            exten: self.exten,
            rdnis: self.rdnis,
            callerchan: self.callerchan,
        })
    }

    fn is_empty(&self) -> bool {
        [
            &self.caller_id_num,
            &self.caller_id_name,
            &self.urgent,
            &self.category,
            &self.context,
            &self.exten,
            &self.rdnis,
            &self.priority,
            &self.callerchan,
            &self.orig_time,
        ]
        .iter()
        .all(|v| v.is_none())
    }
}

/// A message with its email state.
async fn with_email(s: &AppState, m: MessageRecord) -> Result<MessageView, ApiError> {
    let state = s.vm.email_state(&m).await?;
    let mut v = MessageView::from(m);
    v.email = state.into();
    Ok(v)
}

/// The answer to a deposit: 201 with the new message, or 200 with an earlier try's.
async fn deposited(
    s: &AppState,
    mailbox: &MailboxRecord,
    message: MessageRecord,
    created: bool,
) -> Result<Response, ApiError> {
    let location = format!("/v1/mailboxes/{}/messages/{}", message.mailbox, message.id);
    let (status, view) = if created {
        // Its e-mail state is what its transaction queued; no need to read it back.
        let mut v = MessageView::from(message);
        v.email = s.vm.email_of_new_message(mailbox).into();
        (StatusCode::CREATED, v)
    } else {
        (StatusCode::OK, with_email(s, message).await?)
    };
    Ok((status, [(header::LOCATION, location)], axum::Json(view)).into_response())
}

/// Deposit a recording. The body is the audio, with metadata in the query, or
/// `multipart/form-data` with a `metadata` JSON part and an `audio` part. The format is recognised
/// from the bytes: WAV (PCM 8/16/24/32-bit, float, µ-law, A-law, GSM 06.10 WAV49, extensible),
/// MP3, FLAC, Ogg Vorbis, Ogg Opus, WebM/Opus. Headerless audio needs its type: `audio/PCMU`
/// (`audio/basic`) and `audio/PCMA` (`audio/x-alaw-basic`) for G.711, `audio/GSM` for raw GSM
/// 06.10, `audio/x-sln` (Asterisk `.sln`, 16-bit little-endian; `;rate=16000` or `audio/sln16`
/// for 16 kHz) and `audio/L16;rate=8000|16000` (RFC 2586: big-endian unless
/// `;endianness=little-endian`). `Idempotency-Key` makes a retry return the first deposit (200)
/// instead of storing a duplicate, or 410 `deposit-deleted` once that message was deleted.
#[utoipa::path(post, path = "/v1/mailboxes/{address}/messages", tag = "messages",
    params(("address" = String, Path, description = "mailbox@context"),
        ("Idempotency-Key" = Option<String>, Header, description = "retry key, 1-255 visible ASCII"),
        DepositQuery),
    request_body(content((Vec<u8> = "audio/wav"), (Vec<u8> = "audio/PCMU"), (Vec<u8> = "audio/PCMA"),
        (Vec<u8> = "audio/basic"), (Vec<u8> = "audio/x-alaw-basic"), (Vec<u8> = "audio/GSM"),
        (Vec<u8> = "audio/x-sln"), (Vec<u8> = "audio/L16"), (Vec<u8> = "audio/mpeg"),
        (Vec<u8> = "audio/flac"), (Vec<u8> = "audio/ogg"), (Vec<u8> = "audio/webm"),
        (Vec<u8> = "multipart/form-data"))),
    responses((status = 201, body = MessageView, description = "stored"),
        (status = 200, body = MessageView, description = "an earlier deposit with this Idempotency-Key"),
        (status = 400, body = Problem), (status = 401, body = Problem), (status = 404, body = Problem),
        (status = 410, body = Problem, description = "this Idempotency-Key's message was deleted"),
        (status = 413, body = Problem), (status = 415, body = Problem), (status = 422, body = Problem),
        (status = 429, body = Problem, description = "too many uploads in flight for this key or address"),
        (status = 503, body = Problem), (status = 507, body = Problem)),
    security(("bearer" = [])))]
pub async fn deposit_message(
    State(s): State<AppState>,
    Auth(p): Auth,
    ApiPath(addr): ApiPath<String>,
    ApiQuery(q): ApiQuery<DepositQuery>,
    req: Request,
) -> Result<Response, ApiError> {
    let address = super::address(&addr)?;
    let result = deposit(&s, &p, &address, q, req).await;
    if let Err(e) = &result {
        super::log_refused_upload("deposit", &address, e);
    }
    result
}

async fn deposit(
    s: &AppState,
    p: &Principal,
    address: &MailboxAddress,
    q: DepositQuery,
    req: Request,
) -> Result<Response, ApiError> {
    let idem = match req.headers().get("idempotency-key") {
        Some(v) => Some(
            v.to_str()
                .map_err(|_| ApiError::invalid("Idempotency-Key must be visible ASCII"))?
                .to_owned(),
        ),
        None => None,
    };
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let (mailbox, existing) = s.vm.begin_deposit(p, address, idem.as_deref()).await?;
    if let Some(m) = existing {
        return deposited(s, &mailbox, m, false).await;
    }
    let is_multipart = content_type.as_deref().is_some_and(|c| {
        c.trim_start()
            .to_ascii_lowercase()
            .starts_with("multipart/form-data")
    });
    if is_multipart {
        if !q.is_empty() {
            return Err(ApiError::invalid(
                "with multipart/form-data, send metadata in the metadata part, not the query",
            ));
        }
        return deposit_multipart(s, &mailbox, idem.as_deref(), req).await;
    }
    let meta = q.into_meta()?;
    let hint = hint_from_content_type(content_type.as_deref()).map_err(ServiceError::from)?;
    let body = req.into_body().into_data_stream();
    let (id, audio) = s.vm.receive_deposit_audio(&mailbox, hint, body).await?;
    let (m, created) =
        s.vm.commit_deposit(&mailbox, id, audio, meta, idem.as_deref())
            .await?;
    deposited(s, &mailbox, m, created).await
}

async fn deposit_multipart(
    s: &AppState,
    mailbox: &MailboxRecord,
    idem: Option<&str>,
    req: Request,
) -> Result<Response, ApiError> {
    let mut multipart = Multipart::from_request(req, &())
        .await
        .map_err(|e| ApiError::invalid(e.body_text()))?;
    let mut meta: Option<DepositMeta> = None;
    let mut audio = None;
    let result: Result<(), ApiError> = async {
        while let Some(field) = multipart
            .next_field()
            .await
            .map_err(|e| ApiError::new("request-body", e.body_text()))?
        {
            match field.name() {
                Some("metadata") => {
                    if meta.is_some() {
                        return Err(ApiError::invalid("more than one metadata part"));
                    }
                    // Read in chunks so an oversized part is refused without buffering it
                    // (the deposit route has no body limit of its own).
                    let mut field = field;
                    let mut bytes = Vec::new();
                    while let Some(chunk) = field
                        .chunk()
                        .await
                        .map_err(|e| ApiError::new("request-body", e.body_text()))?
                    {
                        if bytes.len() + chunk.len() > 64 * 1024 {
                            return Err(ApiError::invalid(
                                "the metadata part is larger than 64 KiB",
                            ));
                        }
                        bytes.extend_from_slice(&chunk);
                    }
                    meta = Some(
                        crate::http::extract::strict_json(&bytes)
                            .and_then(serde_json::from_value)
                            .map_err(|e| {
                                ApiError::invalid(format!("the metadata part is not valid: {e}"))
                            })?,
                    );
                }
                Some("audio") => {
                    if audio.is_some() {
                        return Err(ApiError::invalid("more than one audio part"));
                    }
                    let hint = match field.content_type() {
                        Some(ct) => hint_from_content_type(Some(ct)).map_err(ServiceError::from)?,
                        None => RawHint::Sniff,
                    };
                    audio = Some(s.vm.receive_deposit_audio(mailbox, hint, field).await?);
                }
                Some(other) => {
                    return Err(ApiError::invalid(format!(
                        "unexpected part {other:?}: send metadata and audio"
                    )));
                }
                None => return Err(ApiError::invalid("a multipart part has no name")),
            }
        }
        Ok(())
    }
    .await;
    if let Err(e) = result {
        if let Some((_, a)) = audio {
            s.vm.discard_audio(a).await;
        }
        return Err(e);
    }
    let Some((id, audio)) = audio else {
        return Err(ApiError::new(
            "corrupt-audio",
            "the multipart body has no audio part",
        ));
    };
    let (m, created) =
        s.vm.commit_deposit(mailbox, id, audio, meta.unwrap_or_default(), idem)
            .await?;
    deposited(s, mailbox, m, created).await
}

/// Query of `GET …/messages`.
#[derive(Debug, Deserialize, IntoParams)]
pub struct MessageQuery {
    /// Only this folder (INBOX, Old, Work, Family, Friends, Urgent, Deleted or custom).
    pub folder: Option<String>,
    /// Page size (1-500, default 50).
    pub limit: Option<String>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

fn message_id(s: &str) -> Result<MessageId, ApiError> {
    s.parse()
        .map_err(|_| ApiError::new("not-found", format!("message {s} not found")))
}

/// List messages, oldest first.
#[utoipa::path(get, path = "/v1/mailboxes/{address}/messages", tag = "messages",
    params(("address" = String, Path, description = "mailbox@context"), MessageQuery),
    responses((status = 200, body = List<MessageView>), (status = 400, body = Problem),
        (status = 401, body = Problem), (status = 404, body = Problem)),
    security(("bearer" = [])))]
pub async fn list_messages(
    State(s): State<AppState>,
    Auth(p): Auth,
    ApiPath(addr): ApiPath<String>,
    ApiQuery(q): ApiQuery<MessageQuery>,
) -> Result<axum::Json<List<MessageView>>, ApiError> {
    let address = super::address(&addr)?;
    let limit = super::limit(q.limit.as_deref())?;
    let folder = q
        .folder
        .as_deref()
        .filter(|f| !f.is_empty())
        .map(Folder::parse)
        .transpose()
        .map_err(|e| ApiError::new("unknown-folder", e.to_string()))?;
    let after = q
        .cursor
        .as_deref()
        .filter(|c| !c.is_empty())
        .map(|c| {
            c.parse::<MessageId>()
                .map_err(|_| ApiError::invalid("cursor is not one this server issued"))
        })
        .transpose()?;
    let page =
        s.vm.list_messages(&p, &address, folder.as_ref(), after, limit)
            .await?;
    let next_cursor = page
        .has_more
        .then(|| page.items.last().map(|m| m.id.to_string()))
        .flatten();
    let mailbox_id = page.items.first().map(|m| m.mailbox_id);
    let mut states = match mailbox_id {
        Some(id) => s.vm.email_states(id, &page.items).await?,
        None => Default::default(),
    };
    Ok(axum::Json(List {
        items: page
            .items
            .into_iter()
            .map(|m| {
                let state = states.remove(&m.id.to_string());
                let mut v = MessageView::from(m);
                v.email = state.into();
                v
            })
            .collect(),
        next_cursor,
    }))
}

async fn load(
    s: &AppState,
    p: &Principal,
    addr: &str,
    id: &str,
) -> Result<(MailboxAddress, MessageRecord), ApiError> {
    let address = super::address(addr)?;
    let id = message_id(id)?;
    let m = s.vm.get_message(p, &address, id).await?;
    Ok((address, m))
}

/// One message.
#[utoipa::path(get, path = "/v1/mailboxes/{address}/messages/{id}", tag = "messages",
    params(("address" = String, Path, description = "mailbox@context"), ("id" = String, Path)),
    responses((status = 200, body = MessageView), (status = 400, body = Problem),
        (status = 401, body = Problem), (status = 404, body = Problem)),
    security(("bearer" = [])))]
pub async fn get_message(
    State(s): State<AppState>,
    Auth(p): Auth,
    ApiPath((addr, id)): ApiPath<(String, String)>,
) -> Result<axum::Json<MessageView>, ApiError> {
    let (_, m) = load(&s, &p, &addr, &id).await?;
    Ok(axum::Json(with_email(&s, m).await?))
}

/// Move a message and/or mark it read. Read messages leave INBOX/Urgent for Old, as in Asterisk;
/// unread ones in Old go back to INBOX.
#[utoipa::path(patch, path = "/v1/mailboxes/{address}/messages/{id}", tag = "messages",
    params(("address" = String, Path, description = "mailbox@context"), ("id" = String, Path)),
    request_body = MessagePatch,
    responses((status = 200, body = MessageView), (status = 400, body = Problem),
        (status = 401, body = Problem), (status = 404, body = Problem), (status = 507, body = Problem)),
    security(("bearer" = [])))]
pub async fn update_message(
    State(s): State<AppState>,
    Auth(p): Auth,
    ApiPath((addr, id)): ApiPath<(String, String)>,
    ApiJson(body): ApiJson<MessagePatch>,
) -> Result<axum::Json<MessageView>, ApiError> {
    let address = super::address(&addr)?;
    let id = message_id(&id)?;
    let folder = body
        .folder
        .as_deref()
        .map(Folder::parse)
        .transpose()
        .map_err(|e| ApiError::new("unknown-folder", e.to_string()))?;
    let m =
        s.vm.update_message(&p, &address, id, folder, body.read)
            .await?;
    Ok(axum::Json(with_email(&s, m).await?))
}

/// Delete a message and its audio.
#[utoipa::path(delete, path = "/v1/mailboxes/{address}/messages/{id}", tag = "messages",
    params(("address" = String, Path, description = "mailbox@context"), ("id" = String, Path)),
    responses((status = 204), (status = 400, body = Problem), (status = 401, body = Problem),
        (status = 404, body = Problem)),
    security(("bearer" = [])))]
pub async fn delete_message(
    State(s): State<AppState>,
    Auth(p): Auth,
    ApiPath((addr, id)): ApiPath<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let address = super::address(&addr)?;
    let id = message_id(&id)?;
    s.vm.delete_message(&p, &address, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The recording: the original bytes by default, or a rendition chosen by `format`
/// (`?format=opus`) or `Accept` (`audio/ogg`). Range and If-None-Match work on every format.
#[utoipa::path(get, path = "/v1/mailboxes/{address}/messages/{id}/audio", tag = "messages",
    params(("address" = String, Path, description = "mailbox@context"), ("id" = String, Path), AudioQuery),
    responses((status = 200, description = "the original in the format it was deposited in, or the rendition asked for",
            content((Vec<u8> = "audio/wav"), (Vec<u8> = "audio/PCMU"),
            (Vec<u8> = "audio/PCMA"), (Vec<u8> = "audio/GSM"), (Vec<u8> = "audio/x-sln"),
            (Vec<u8> = "audio/L16"), (Vec<u8> = "audio/mpeg"), (Vec<u8> = "audio/flac"),
            (Vec<u8> = "audio/ogg"), (Vec<u8> = "audio/webm"))),
        (status = 206, description = "a byte range"), (status = 304, description = "not modified"),
        (status = 400, body = Problem), (status = 401, body = Problem), (status = 404, body = Problem),
        (status = 416, body = Problem)),
    security(("bearer" = [])))]
pub async fn get_message_audio(
    State(s): State<AppState>,
    Auth(p): Auth,
    ApiPath((addr, id)): ApiPath<(String, String)>,
    ApiQuery(q): ApiQuery<AudioQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    message_audio(&s, &p, &addr, &id, None, &q, &headers).await
}

/// The recording in the format its extension names (`audio.opus`, `.wav`, `.ulaw`, `.alaw`,
/// `.sln`, `.sln16`, `.gsm`, `.wav49`).
#[utoipa::path(get, path = "/v1/mailboxes/{address}/messages/{id}/{file}", tag = "messages",
    params(("address" = String, Path, description = "mailbox@context"), ("id" = String, Path),
        ("file" = String, Path, description = "audio.<extension>"), AudioQuery),
    responses((status = 200, description = "the rendition the extension names",
            content((Vec<u8> = "audio/ogg"), (Vec<u8> = "audio/wav"), (Vec<u8> = "audio/PCMU"),
            (Vec<u8> = "audio/PCMA"), (Vec<u8> = "audio/GSM"), (Vec<u8> = "audio/x-sln"))),
        (status = 206, description = "a byte range"), (status = 304, description = "not modified"),
        (status = 400, body = Problem), (status = 401, body = Problem), (status = 404, body = Problem),
        (status = 416, body = Problem)),
    security(("bearer" = [])))]
pub async fn get_message_audio_file(
    State(s): State<AppState>,
    Auth(p): Auth,
    ApiPath((addr, id, file)): ApiPath<(String, String, String)>,
    ApiQuery(q): ApiQuery<AudioQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let Some(ext) = file.strip_prefix("audio.") else {
        return Err(ApiError::new("not-found", format!("no resource {file:?}")));
    };
    message_audio(&s, &p, &addr, &id, Some(ext), &q, &headers).await
}

async fn message_audio(
    s: &AppState,
    p: &Principal,
    addr: &str,
    id: &str,
    ext: Option<&str>,
    q: &AudioQuery,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    let (_, m) = load(s, p, addr, id).await?;
    let r = choose(q, ext, headers, m.audio_format, &s.vm.config.audio)?;
    let original = (
        m.audio_key.as_str(),
        m.audio_format,
        m.byte_size as u64,
        m.sha256.as_str(),
    );
    serve(s, headers, original, r, &format!("msg{:04}", m.msgnum)).await
}

/// Forward a message to other mailboxes (all or nothing); `keep: false` removes the original.
#[utoipa::path(post, path = "/v1/mailboxes/{address}/messages/{id}/forward", tag = "messages",
    params(("address" = String, Path, description = "mailbox@context"), ("id" = String, Path)),
    request_body = ForwardBody,
    responses((status = 201, body = ForwardView), (status = 400, body = Problem),
        (status = 401, body = Problem), (status = 404, body = Problem), (status = 507, body = Problem)),
    security(("bearer" = [])))]
pub async fn forward_message(
    State(s): State<AppState>,
    Auth(p): Auth,
    ApiPath((addr, id)): ApiPath<(String, String)>,
    ApiJson(body): ApiJson<ForwardBody>,
) -> Result<(StatusCode, axum::Json<ForwardView>), ApiError> {
    let address = super::address(&addr)?;
    let id = message_id(&id)?;
    let to = body
        .to
        .iter()
        .map(|t| super::address(t))
        .collect::<Result<Vec<_>, _>>()?;
    let created =
        s.vm.forward_message(
            &p,
            &address,
            id,
            ForwardRequest {
                to,
                keep: body.keep.unwrap_or(true),
            },
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(ForwardView {
            items: created.into_iter().map(Into::into).collect(),
        }),
    ))
}
