//! Dashboard, contexts and mailboxes.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Path, Query, Request, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Redirect, Response};
use futures_util::{Stream, StreamExt};
use serde::{Deserialize, Serialize};

use super::views::{
    ATTACH_FORMATS, ConfirmDeletePage, ContextsPage, DashboardPage, Frame, MailboxForm,
    MailboxFormPage, MailboxesPage, html,
};
use super::{Form, Signed, UiError, client, read_form};
use crate::domain::{EventView, MailboxAddress};
use crate::http::AppState;
use crate::service::{AdminSession, DeliveryQueue, MailboxSettings, ServiceError, StreamItem};

pub(super) fn frame<'a>(s: &'a AdminSession, section: &'static str) -> Frame<'a> {
    Frame {
        admin: &s.admin,
        csrf: &s.csrf,
        section,
    }
}

/// Query of `GET /ui/`: what a retry of a queue did.
#[derive(Deserialize)]
pub struct DashboardQuery {
    retried: Option<String>,
    due: Option<u64>,
}

/// `GET /ui/`.
pub async fn dashboard(
    State(s): State<AppState>,
    Signed(session): Signed,
    Query(q): Query<DashboardQuery>,
) -> Result<Response, UiError> {
    let d = s.vm.admin_dashboard(&session.admin).await?;
    let notice = match (q.retried.as_deref().and_then(DeliveryQueue::parse), q.due) {
        (Some(queue), Some(due)) => Some(format!(
            "{due} failing or given-up {} of the {} queue will be tried again now.",
            if due == 1 { "job" } else { "jobs" },
            queue.as_str()
        )),
        _ => None,
    };
    Ok(html(&DashboardPage {
        frame: frame(&session, "dashboard"),
        d: &d,
        notice: notice.as_deref(),
    }))
}

/// `POST /ui/queues/{queue}/retry`: makes the queue's failing and given-up jobs (of the admin's
/// contexts) due now.
pub async fn retry_queue(
    State(s): State<AppState>,
    Signed(session): Signed,
    Path(queue): Path<String>,
    headers: HeaderMap,
    req: Request,
) -> Result<Response, UiError> {
    read_form(&session, req).await?;
    let queue = DeliveryQueue::parse(&queue)
        .ok_or_else(|| ServiceError::NotFound(format!("no delivery queue {queue:?}")))?;
    let due =
        s.vm.admin_retry_queue(&session.admin, &client(&headers), queue)
            .await?;
    Ok(Redirect::to(&format!("/ui/?retried={}&due={due}", queue.as_str())).into_response())
}

/// Query of `GET /ui/api/stats`.
#[derive(Deserialize)]
pub struct StatsQuery {
    /// The browser's offset from UTC in minutes, as `Date.getTimezoneOffset()` gives it
    /// (positive west of UTC).
    tzoff: Option<i64>,
}

#[derive(Serialize)]
struct DayStat {
    /// Start of the day, Unix seconds.
    day: i64,
    count: i64,
}

#[derive(Serialize)]
struct UsageStat {
    context: String,
    messages: i64,
    bytes: i64,
}

#[derive(Serialize)]
struct Stats {
    deposits: Vec<DayStat>,
    usage: Vec<UsageStat>,
}

/// `GET /ui/api/stats`: deposits per day over 30 days and storage per context, for the charts.
pub async fn stats(
    State(s): State<AppState>,
    Signed(session): Signed,
    Query(q): Query<StatsQuery>,
) -> Result<Response, UiError> {
    let offset = -q.tzoff.unwrap_or(0).clamp(-14 * 60, 14 * 60) * 60;
    let days =
        s.vm.admin_deposits_per_day(&session.admin, 30, offset)
            .await?;
    let d = s.vm.admin_dashboard(&session.admin).await?;
    Ok(axum::Json(Stats {
        deposits: days
            .into_iter()
            .map(|(day, count)| DayStat { day, count })
            .collect(),
        usage: d
            .usage
            .into_iter()
            .map(|u| UsageStat {
                context: u.context,
                messages: u.messages,
                bytes: u.bytes,
            })
            .collect(),
    })
    .into_response())
}

/// `GET /ui/contexts`.
pub async fn contexts(
    State(s): State<AppState>,
    Signed(session): Signed,
) -> Result<Response, UiError> {
    contexts_page(&s, &session, None, "", "").await
}

async fn contexts_page(
    s: &AppState,
    session: &AdminSession,
    error: Option<&str>,
    name: &str,
    description: &str,
) -> Result<Response, UiError> {
    let list = s.vm.admin_contexts(&session.admin).await?;
    let page = ContextsPage {
        frame: frame(session, "contexts"),
        contexts: &list,
        can_create: session.admin.contexts.is_empty(),
        error,
        name,
        description,
    };
    let mut res = html(&page);
    if error.is_some() {
        *res.status_mut() = axum::http::StatusCode::BAD_REQUEST;
    }
    Ok(res)
}

/// `POST /ui/contexts`.
pub async fn create_context(
    State(s): State<AppState>,
    Signed(session): Signed,
    headers: HeaderMap,
    req: Request,
) -> Result<Response, UiError> {
    let form = read_form(&session, req).await?;
    let (name, description) = (form.get("name"), form.get("description"));
    match s
        .vm
        .admin_create_context(&session.admin, &client(&headers), name, description)
        .await
    {
        Ok(c) => Ok(Redirect::to(&format!("/ui/contexts/{}/mailboxes", c.name)).into_response()),
        Err(e @ (ServiceError::Invalid(_) | ServiceError::Conflict(_))) => {
            contexts_page(&s, &session, Some(&e.to_string()), name, description).await
        }
        Err(e) => Err(e.into()),
    }
}

/// Query of the mailbox list.
#[derive(Deserialize)]
pub struct ListQuery {
    q: Option<String>,
    cursor: Option<String>,
    notice: Option<String>,
}

const PAGE_SIZE: u32 = 50;

/// `GET /ui/contexts/{ctx}/mailboxes`: search, keyset pages, live counts.
pub async fn mailboxes(
    State(s): State<AppState>,
    Signed(session): Signed,
    Path(ctx): Path<String>,
    Query(q): Query<ListQuery>,
) -> Result<Response, UiError> {
    let context = s.vm.admin_visible_context(&session.admin, &ctx).await?;
    let search = q.q.as_deref().map(str::trim).unwrap_or("");
    let (rows, next) =
        s.vm.admin_mailboxes(
            &session.admin,
            &ctx,
            Some(search).filter(|q| !q.is_empty()),
            q.cursor.as_deref().filter(|c| !c.is_empty()),
            PAGE_SIZE,
        )
        .await?;
    let next = next.map(|c| {
        let mut url = format!("/ui/contexts/{ctx}/mailboxes?cursor={c}");
        if !search.is_empty() {
            url.push_str("&q=");
            url.push_str(&urlencode(search));
        }
        url
    });
    let notice = match q.notice.as_deref() {
        Some("created") => Some("Mailbox created."),
        Some("saved") => Some("Mailbox saved."),
        Some("deleted") => Some("Mailbox deleted."),
        _ => None,
    };
    Ok(html(&MailboxesPage {
        frame: frame(&session, "contexts"),
        context: &context,
        rows: &rows,
        q: search,
        next,
        paged: q.cursor.is_some_and(|c| !c.is_empty()),
        notice,
    }))
}

pub(super) fn urlencode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn defaults(s: &AppState) -> (u32, u32) {
    let v = &s.vm.config().voicemail;
    (v.default_maxmsg, v.default_maxsecs)
}

fn form_page(
    s: &AppState,
    session: &AdminSession,
    ctx: &str,
    editing: bool,
    form: MailboxForm,
    error: Option<&str>,
) -> Response {
    let mut res = html(&MailboxFormPage {
        frame: frame(session, "contexts"),
        context: ctx,
        editing,
        form,
        error,
        formats: &ATTACH_FORMATS,
        defaults: defaults(s),
    });
    if error.is_some() {
        *res.status_mut() = axum::http::StatusCode::BAD_REQUEST;
    }
    res
}

/// `GET /ui/contexts/{ctx}/mailboxes/new`.
pub async fn new_mailbox(
    State(s): State<AppState>,
    Signed(session): Signed,
    Path(ctx): Path<String>,
) -> Result<Response, UiError> {
    s.vm.admin_visible_context(&session.admin, &ctx).await?;
    let form = MailboxForm {
        attach: true,
        attachfmt: "wav".into(),
        ..Default::default()
    };
    Ok(form_page(&s, &session, &ctx, false, form, None))
}

/// The form's values, and the settings they ask for.
fn read_mailbox_form(f: &Form) -> (MailboxForm, Result<MailboxSettings, String>) {
    let shown = MailboxForm {
        mailbox: f.get("mailbox").to_owned(),
        fullname: f.get("fullname").to_owned(),
        email: f.get("email").to_owned(),
        pager: f.get("pager").to_owned(),
        attach: f.checked("attach"),
        attachfmt: f.get("attachfmt").to_owned(),
        maxmsg: f.get("maxmsg").to_owned(),
        maxsecs: f.get("maxsecs").to_owned(),
        minsecs: f.get("minsecs").to_owned(),
        tz: f.get("tz").to_owned(),
        language: f.get("language").to_owned(),
        deletevoicemail: f.checked("deletevoicemail"),
        has_pin: false,
    };
    let number = |name: &str, label: &str| -> Result<Option<u32>, String> {
        let v = f.get(name);
        if v.is_empty() {
            return Ok(None);
        }
        v.parse::<u32>()
            .map(Some)
            .map_err(|_| format!("{label} must be a whole number (or empty for the default)."))
    };
    let settings = (|| {
        let pin = match (f.get("pin"), f.checked("clear_pin")) {
            ("", true) => Some(String::new()),
            ("", false) => None,
            (_, true) => return Err("Either enter a new PIN or remove it, not both.".into()),
            (p, false) => Some(p.to_owned()),
        };
        Ok(MailboxSettings {
            pin,
            fullname: Some(shown.fullname.clone()),
            email: Some(shown.email.clone()),
            pager: Some(shown.pager.clone()),
            attach: Some(shown.attach),
            attachfmt: Some(if shown.attachfmt.is_empty() {
                "wav".into()
            } else {
                shown.attachfmt.clone()
            }),
            maxmsg: Some(number("maxmsg", "Maximum messages")?),
            maxsecs: Some(number("maxsecs", "Maximum length")?),
            minsecs: Some(number("minsecs", "Minimum length")?),
            tz: Some(shown.tz.clone()),
            language: Some(shown.language.clone()),
            deletevoicemail: Some(shown.deletevoicemail),
        })
    })();
    (shown, settings)
}

/// `POST /ui/contexts/{ctx}/mailboxes`.
pub async fn create_mailbox(
    State(s): State<AppState>,
    Signed(session): Signed,
    Path(ctx): Path<String>,
    headers: HeaderMap,
    req: Request,
) -> Result<Response, UiError> {
    let f = read_form(&session, req).await?;
    s.vm.admin_visible_context(&session.admin, &ctx).await?;
    let (shown, settings) = read_mailbox_form(&f);
    let settings = match settings {
        Ok(v) => v,
        Err(e) => return Ok(form_page(&s, &session, &ctx, false, shown, Some(&e))),
    };
    let address = match MailboxAddress::new(&shown.mailbox, &ctx) {
        Ok(a) => a,
        Err(e) => {
            let msg = format!("Mailbox number: {e}");
            return Ok(form_page(&s, &session, &ctx, false, shown, Some(&msg)));
        }
    };
    match s
        .vm
        .admin_create_mailbox(&session.admin, &client(&headers), &address, settings)
        .await
    {
        Ok(_) => Ok(Redirect::to(&format!(
            "/ui/contexts/{ctx}/mailboxes?q={}&notice=created",
            urlencode(&address.mailbox)
        ))
        .into_response()),
        Err(
            e @ (ServiceError::Invalid(_) | ServiceError::Conflict(_) | ServiceError::Address(_)),
        ) => Ok(form_page(
            &s,
            &session,
            &ctx,
            false,
            shown,
            Some(&e.to_string()),
        )),
        Err(e) => Err(e.into()),
    }
}

pub(super) fn address(ctx: &str, mbx: &str) -> Result<MailboxAddress, UiError> {
    MailboxAddress::new(mbx, ctx).map_err(|_| UiError::NotFound)
}

/// `GET /ui/contexts/{ctx}/mailboxes/{mbx}`: the edit form.
pub async fn edit_mailbox(
    State(s): State<AppState>,
    Signed(session): Signed,
    Path((ctx, mbx)): Path<(String, String)>,
) -> Result<Response, UiError> {
    let m =
        s.vm.admin_mailbox(&session.admin, &address(&ctx, &mbx)?)
            .await?;
    Ok(form_page(
        &s,
        &session,
        &ctx,
        true,
        MailboxForm::from(&m),
        None,
    ))
}

/// `POST /ui/contexts/{ctx}/mailboxes/{mbx}`: saves the edit form.
pub async fn update_mailbox(
    State(s): State<AppState>,
    Signed(session): Signed,
    Path((ctx, mbx)): Path<(String, String)>,
    headers: HeaderMap,
    req: Request,
) -> Result<Response, UiError> {
    let f = read_form(&session, req).await?;
    let addr = address(&ctx, &mbx)?;
    let current = s.vm.admin_mailbox(&session.admin, &addr).await?;
    let (mut shown, settings) = read_mailbox_form(&f);
    shown.mailbox = mbx.clone();
    shown.has_pin = !current.pin_hash.is_empty();
    let settings = match settings {
        Ok(v) => v,
        Err(e) => return Ok(form_page(&s, &session, &ctx, true, shown, Some(&e))),
    };
    match s
        .vm
        .admin_update_mailbox(&session.admin, &client(&headers), &addr, settings)
        .await
    {
        Ok(_) => Ok(Redirect::to(&format!(
            "/ui/contexts/{ctx}/mailboxes?q={}&notice=saved",
            urlencode(&mbx)
        ))
        .into_response()),
        Err(e @ ServiceError::Invalid(_)) => Ok(form_page(
            &s,
            &session,
            &ctx,
            true,
            shown,
            Some(&e.to_string()),
        )),
        Err(e) => Err(e.into()),
    }
}

/// `GET /ui/contexts/{ctx}/mailboxes/{mbx}/delete`: asks first.
pub async fn confirm_delete(
    State(s): State<AppState>,
    Signed(session): Signed,
    Path((ctx, mbx)): Path<(String, String)>,
) -> Result<Response, UiError> {
    let addr = address(&ctx, &mbx)?;
    let m = s.vm.admin_mailbox(&session.admin, &addr).await?;
    let (rows, _) =
        s.vm.admin_mailboxes(&session.admin, &ctx, Some(&mbx), None, 1)
            .await?;
    let messages = rows
        .iter()
        .find(|r| r.mailbox.id == m.id)
        .map(|r| r.counts.new + r.counts.old)
        .unwrap_or(0);
    Ok(html(&ConfirmDeletePage {
        frame: frame(&session, "contexts"),
        context: &ctx,
        mailbox: &m,
        messages,
    }))
}

/// `POST /ui/contexts/{ctx}/mailboxes/{mbx}/delete`.
pub async fn delete_mailbox(
    State(s): State<AppState>,
    Signed(session): Signed,
    Path((ctx, mbx)): Path<(String, String)>,
    headers: HeaderMap,
    req: Request,
) -> Result<Response, UiError> {
    read_form(&session, req).await?;
    let addr = address(&ctx, &mbx)?;
    s.vm.admin_delete_mailbox(&session.admin, &client(&headers), &addr)
        .await?;
    Ok(Redirect::to(&format!("/ui/contexts/{ctx}/mailboxes?notice=deleted")).into_response())
}

/// `GET /ui/contexts/{ctx}/events`: the context's live events (the `/v1/events` stream) for the
/// mailbox list's counts, authenticated by the session cookie.
pub async fn events(
    State(s): State<AppState>,
    Signed(session): Signed,
    Path(ctx): Path<String>,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, UiError> {
    let last = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<i64>().ok())
        .filter(|n| *n >= 0);
    let events = s.vm.admin_events(&session.admin, &ctx, last).await?;
    let heartbeat = Duration::from_secs(s.vm.config().events.heartbeat_secs.max(1));
    let stream = events.map(|item| {
        Ok(match item {
            StreamItem::Resync { oldest } => SseEvent::default()
                .event("resync")
                .data(format!("{{\"oldest_seq\":{oldest}}}")),
            StreamItem::Event(e) => SseEvent::default().id(e.seq.to_string()).data(
                serde_json::to_string(&EventView::from(e.as_ref())).unwrap_or_else(|_| "{}".into()),
            ),
        })
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(heartbeat).text("heartbeat")))
}
