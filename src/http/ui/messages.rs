//! Messages of a mailbox (per folder, play, waveform, move, mark, forward, delete, bulk) and its
//! greetings (play, upload, record in the browser, delete).

use axum::extract::{Multipart, Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};

use super::pages::frame;
use super::pages::{address, urlencode};
use super::views::{GreetingsPage, MessagePage, MessagesPage, html};
use super::{Signed, UiError, client, read_form};
use crate::audio::{RawHint, hint_from_content_type};
use crate::domain::{Folder, GreetingKind, MailboxAddress, MessageId};
use crate::http::AppState;
use crate::http::api::audio::{AudioQuery, choose, serve};
use crate::service::{ServiceError, UI_FOLDERS, same_token};

fn base(ctx: &str, mbx: &str) -> String {
    format!("/ui/contexts/{ctx}/mailboxes/{mbx}")
}

fn message_id(id: &str) -> Result<MessageId, UiError> {
    id.parse().map_err(|_| UiError::NotFound)
}

fn folder(name: &str) -> Result<Folder, UiError> {
    Folder::parse(name).map_err(|e| UiError::Invalid(e.0))
}

/// Query of the folder list.
#[derive(Deserialize)]
pub struct FolderQuery {
    folder: Option<String>,
    notice: Option<String>,
}

fn notice(n: Option<&str>) -> Option<&'static str> {
    match n {
        Some("moved") => Some("Message moved."),
        Some("bulk-moved") => Some("Messages moved."),
        Some("deleted") => Some("Message deleted."),
        Some("bulk-deleted") => Some("Messages deleted."),
        Some("read") => Some("Marked as read."),
        Some("unread") => Some("Marked as unread."),
        Some("forwarded") => Some("Message forwarded."),
        Some("saved") => Some("Greeting saved."),
        Some("greeting-deleted") => Some("Greeting deleted."),
        _ => None,
    }
}

/// `GET …/mailboxes/{mbx}/messages?folder=INBOX`.
pub async fn list(
    State(s): State<AppState>,
    Signed(session): Signed,
    Path((ctx, mbx)): Path<(String, String)>,
    Query(q): Query<FolderQuery>,
) -> Result<Response, UiError> {
    let addr = address(&ctx, &mbx)?;
    let shown = folder(q.folder.as_deref().unwrap_or("INBOX"))?;
    let l = s.vm.admin_folder(&session.admin, &addr, &shown).await?;
    Ok(html(&MessagesPage {
        frame: frame(&session, "contexts"),
        context: &ctx,
        mailbox: &l.mailbox,
        folder: shown.as_str(),
        folders: &l.folders,
        messages: &l.messages,
        targets: &UI_FOLDERS,
        notice: notice(q.notice.as_deref()),
    }))
}

#[derive(Serialize)]
struct FolderCount {
    folder: String,
    total: u32,
    unread: u32,
}

/// `GET …/mailboxes/{mbx}/messages/counts`: messages and unread messages per folder (JSON), for
/// the folder tabs to follow the mailbox's live events.
pub async fn counts(
    State(s): State<AppState>,
    Signed(session): Signed,
    Path((ctx, mbx)): Path<(String, String)>,
) -> Result<Response, UiError> {
    let addr = address(&ctx, &mbx)?;
    let folders = s.vm.admin_folder_counts(&session.admin, &addr).await?;
    let body: Vec<FolderCount> = folders
        .into_iter()
        .map(|(f, total, unread)| FolderCount {
            folder: f.as_str().to_owned(),
            total,
            unread,
        })
        .collect();
    Ok(axum::Json(body).into_response())
}

/// `POST …/mailboxes/{mbx}/messages`: moves or deletes the checked messages.
pub async fn bulk(
    State(s): State<AppState>,
    Signed(session): Signed,
    Path((ctx, mbx)): Path<(String, String)>,
    headers: HeaderMap,
    req: Request,
) -> Result<Response, UiError> {
    use axum::extract::FromRequest;
    let axum::Form(fields) = axum::Form::<Vec<(String, String)>>::from_request(req, &())
        .await
        .map_err(|_| UiError::Csrf)?;
    let get = |k: &str| {
        fields
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.trim())
            .unwrap_or("")
    };
    if !same_token(get("csrf"), &session.csrf) {
        return Err(UiError::Csrf);
    }
    let addr = address(&ctx, &mbx)?;
    let from = get("from");
    let ids: Vec<MessageId> = fields
        .iter()
        .filter(|(n, _)| n == "id")
        .map(|(_, v)| message_id(v))
        .collect::<Result<_, _>>()?;
    if ids.is_empty() {
        return Err(UiError::Invalid("select at least one message".into()));
    }
    let who = client(&headers);
    let done = match get("action") {
        "move" => {
            let to = folder(get("to"))?;
            for id in &ids {
                s.vm.admin_change_message(&session.admin, &who, &addr, *id, Some(to.clone()), None)
                    .await?;
            }
            "bulk-moved"
        }
        "delete" => {
            for id in &ids {
                s.vm.admin_delete_message(&session.admin, &who, &addr, *id)
                    .await?;
            }
            "bulk-deleted"
        }
        _ => return Err(UiError::Invalid("unknown action".into())),
    };
    Ok(Redirect::to(&format!(
        "{}/messages?folder={}&notice={done}",
        base(&ctx, &mbx),
        urlencode(if from.is_empty() { "INBOX" } else { from })
    ))
    .into_response())
}

/// `GET …/messages/{id}`: the player and the actions.
pub async fn show(
    State(s): State<AppState>,
    Signed(session): Signed,
    Path((ctx, mbx, id)): Path<(String, String, String)>,
    Query(q): Query<FolderQuery>,
) -> Result<Response, UiError> {
    let addr = address(&ctx, &mbx)?;
    let (mailbox, m) =
        s.vm.admin_message(&session.admin, &addr, message_id(&id)?)
            .await?;
    Ok(html(&MessagePage {
        frame: frame(&session, "contexts"),
        context: &ctx,
        mailbox: &mailbox,
        m: &m,
        targets: &UI_FOLDERS,
        notice: notice(q.notice.as_deref()),
    }))
}

/// `POST …/messages/{id}`: `action` = move (`to`), read, unread, forward (`to`) or delete.
pub async fn act(
    State(s): State<AppState>,
    Signed(session): Signed,
    Path((ctx, mbx, id)): Path<(String, String, String)>,
    headers: HeaderMap,
    req: Request,
) -> Result<Response, UiError> {
    let form = read_form(&session, req).await?;
    let addr = address(&ctx, &mbx)?;
    let id = message_id(&id)?;
    let who = client(&headers);
    let (_, m) = s.vm.admin_message(&session.admin, &addr, id).await?;
    let here = format!("{}/messages/{id}", base(&ctx, &mbx));
    let back = |f: &str, n: &str| {
        format!(
            "{}/messages?folder={}&notice={n}",
            base(&ctx, &mbx),
            urlencode(f)
        )
    };
    let to = match form.get("action") {
        "move" => {
            let to = folder(form.get("to"))?;
            s.vm.admin_change_message(&session.admin, &who, &addr, id, Some(to), None)
                .await?;
            back(m.folder.as_str(), "moved")
        }
        "read" | "unread" => {
            let read = form.get("action") == "read";
            s.vm.admin_change_message(&session.admin, &who, &addr, id, None, Some(read))
                .await?;
            format!("{here}?notice={}", form.get("action"))
        }
        "forward" => {
            let target = form.get("to");
            let to = if target.contains('@') {
                target.parse::<MailboxAddress>()
            } else {
                format!("{target}@{ctx}").parse::<MailboxAddress>()
            }
            .map_err(|_| UiError::Invalid(format!("{target:?} is not a mailbox")))?;
            match s
                .vm
                .admin_forward_message(&session.admin, &who, &addr, id, to.clone())
                .await
            {
                Ok(()) => {}
                Err(ServiceError::NotFound(_)) => {
                    return Err(UiError::Invalid(format!(
                        "There is no mailbox {to} to forward to."
                    )));
                }
                Err(e) => return Err(e.into()),
            }
            format!("{here}?notice=forwarded")
        }
        "delete" => {
            s.vm.admin_delete_message(&session.admin, &who, &addr, id)
                .await?;
            back(m.folder.as_str(), "deleted")
        }
        _ => return Err(UiError::Invalid("unknown action".into())),
    };
    Ok(Redirect::to(&to).into_response())
}

/// `GET …/messages/{id}/audio?format=opus|wav`: the API's audio route for the session (ranges,
/// entity tags, renditions).
pub async fn audio(
    State(s): State<AppState>,
    Signed(session): Signed,
    Path((ctx, mbx, id)): Path<(String, String, String)>,
    Query(q): Query<AudioQuery>,
    headers: HeaderMap,
) -> Result<Response, UiError> {
    let addr = address(&ctx, &mbx)?;
    let (_, m) =
        s.vm.admin_message(&session.admin, &addr, message_id(&id)?)
            .await?;
    let r = choose(&q, None, &headers, m.audio_format, &s.vm.config().audio)
        .map_err(|e| UiError::Invalid(format!("{e:?}")))?;
    let original = (
        m.audio_key.as_str(),
        m.audio_format,
        m.byte_size as u64,
        m.sha256.as_str(),
    );
    let stem = format!("{}-msg{:04}", m.mailbox.mailbox, m.msgnum);
    let mut res = serve(&s, &headers, original, r, &stem)
        .await
        .into_response();
    download(&mut res, q.format.as_deref() == Some("wav"));
    Ok(res)
}

/// Makes a WAV answer a download (`attachment`) rather than inline.
fn download(res: &mut Response, attach: bool) {
    if !attach {
        return;
    }
    let h = res.headers_mut();
    if let Some(v) = h
        .get(header::CONTENT_DISPOSITION)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.replacen("inline", "attachment", 1))
        && let Ok(v) = v.parse()
    {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
}

#[derive(Serialize)]
struct Peaks {
    duration_ms: i64,
    peaks: Vec<f32>,
}

/// `GET …/messages/{id}/peaks`: the waveform's peak values (JSON).
pub async fn peaks(
    State(s): State<AppState>,
    Signed(session): Signed,
    Path((ctx, mbx, id)): Path<(String, String, String)>,
) -> Result<Response, UiError> {
    let addr = address(&ctx, &mbx)?;
    let id = message_id(&id)?;
    let (_, m) = s.vm.admin_message(&session.admin, &addr, id).await?;
    let peaks = s.vm.admin_waveform(&session.admin, &addr, id, 240).await?;
    let mut res = axum::Json(Peaks {
        duration_ms: m.duration_ms,
        peaks: peaks
            .iter()
            .map(|p| (p * 1000.0).round() / 1000.0)
            .collect(),
    })
    .into_response();
    if let Ok(v) = "private, max-age=3600".parse() {
        res.headers_mut().insert(header::CACHE_CONTROL, v);
    }
    Ok(res)
}

fn kind(k: &str) -> Result<GreetingKind, UiError> {
    GreetingKind::parse(k).ok_or(UiError::NotFound)
}

/// `GET …/mailboxes/{mbx}/greetings`.
pub async fn greetings(
    State(s): State<AppState>,
    Signed(session): Signed,
    Path((ctx, mbx)): Path<(String, String)>,
    Query(q): Query<FolderQuery>,
) -> Result<Response, UiError> {
    let addr = address(&ctx, &mbx)?;
    let (mailbox, list) = s.vm.admin_greetings(&session.admin, &addr).await?;
    Ok(html(&GreetingsPage {
        frame: frame(&session, "contexts"),
        context: &ctx,
        mailbox: &mailbox,
        greetings: &list,
        notice: notice(q.notice.as_deref()),
    }))
}

/// `POST …/greetings/{kind}`: a `multipart/form-data` upload (`csrf` field first, then `audio`)
/// or, from the in-browser recorder, the recording as the body with the token in `X-CSRF-Token`.
pub async fn put_greeting(
    State(s): State<AppState>,
    Signed(session): Signed,
    Path((ctx, mbx, k)): Path<(String, String, String)>,
    headers: HeaderMap,
    req: Request,
) -> Result<Response, UiError> {
    let addr = address(&ctx, &mbx)?;
    let kind = kind(&k)?;
    let who = client(&headers);
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let done = format!("{}/greetings?notice=saved", base(&ctx, &mbx));
    if ct.starts_with("multipart/form-data") {
        use axum::extract::FromRequest;
        let mut mp = Multipart::from_request(req, &())
            .await
            .map_err(|_| UiError::Csrf)?;
        let mut csrf_ok = false;
        while let Some(field) = mp
            .next_field()
            .await
            .map_err(|e| UiError::Invalid(e.to_string()))?
        {
            match field.name() {
                Some("csrf") => {
                    let t = field.text().await.map_err(|_| UiError::Csrf)?;
                    csrf_ok = same_token(&t, &session.csrf);
                }
                Some("audio") if csrf_ok => {
                    let hint = sniff_unless_raw(field.content_type());
                    let body = Box::pin(field.map(|r| r.map_err(|e| e.to_string())));
                    s.vm.admin_put_greeting(&session.admin, &who, &addr, kind, hint, body)
                        .await
                        .map_err(greeting_error)?;
                    return Ok(Redirect::to(&done).into_response());
                }
                Some("audio") => return Err(UiError::Csrf),
                _ => {}
            }
        }
        return Err(if csrf_ok {
            UiError::Invalid("choose an audio file to upload".into())
        } else {
            UiError::Csrf
        });
    }
    let token = headers
        .get("x-csrf-token")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !same_token(token, &session.csrf) {
        return Err(UiError::Csrf);
    }
    let hint = sniff_unless_raw(Some(&ct));
    let g =
        s.vm.admin_put_greeting(
            &session.admin,
            &who,
            &addr,
            kind,
            hint,
            req.into_body().into_data_stream(),
        )
        .await
        .map_err(greeting_error)?;
    Ok((
        StatusCode::OK,
        axum::Json(serde_json::json!({
            "kind": kind.as_str(),
            "duration_ms": g.duration_ms,
            "location": done,
        })),
    )
        .into_response())
}

/// Audio the browser labels (`audio/webm`, `audio/mpeg`, …) is recognised from its bytes; only
/// headerless formats need their type.
fn sniff_unless_raw(ct: Option<&str>) -> RawHint {
    match hint_from_content_type(ct) {
        Ok(h @ (RawHint::Ulaw | RawHint::Alaw | RawHint::Gsm)) => h,
        Ok(h) if matches!(ct, Some(c) if c.to_ascii_lowercase().starts_with("audio/l16")) => h,
        _ => RawHint::Sniff,
    }
}

fn greeting_error(e: ServiceError) -> UiError {
    match e {
        ServiceError::NotFound(_) | ServiceError::Forbidden(_) | ServiceError::Unavailable(_) => {
            e.into()
        }
        other => UiError::Invalid(format!("The recording was not accepted: {other}")),
    }
}

/// `GET …/greetings/{kind}/audio?format=opus`.
pub async fn greeting_audio(
    State(s): State<AppState>,
    Signed(session): Signed,
    Path((ctx, mbx, k)): Path<(String, String, String)>,
    Query(q): Query<AudioQuery>,
    headers: HeaderMap,
) -> Result<Response, UiError> {
    let addr = address(&ctx, &mbx)?;
    let kind = kind(&k)?;
    let g = s.vm.admin_greeting(&session.admin, &addr, kind).await?;
    let r = choose(&q, None, &headers, g.audio_format, &s.vm.config().audio)
        .map_err(|e| UiError::Invalid(format!("{e:?}")))?;
    let original = (
        g.audio_key.as_str(),
        g.audio_format,
        g.byte_size as u64,
        g.sha256.as_str(),
    );
    let stem = format!("{mbx}-{}", kind.as_str());
    let mut res = serve(&s, &headers, original, r, &stem)
        .await
        .into_response();
    download(&mut res, q.format.as_deref() == Some("wav"));
    Ok(res)
}

/// `POST …/greetings/{kind}/delete`.
pub async fn delete_greeting(
    State(s): State<AppState>,
    Signed(session): Signed,
    Path((ctx, mbx, k)): Path<(String, String, String)>,
    headers: HeaderMap,
    req: Request,
) -> Result<Response, UiError> {
    read_form(&session, req).await?;
    let addr = address(&ctx, &mbx)?;
    s.vm.admin_delete_greeting(&session.admin, &client(&headers), &addr, kind(&k)?)
        .await?;
    Ok(Redirect::to(&format!(
        "{}/greetings?notice=greeting-deleted",
        base(&ctx, &mbx)
    ))
    .into_response())
}
