use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use futures_util::{Stream, StreamExt};
use serde::Deserialize;
use utoipa::IntoParams;

use crate::domain::{Event, EventView};
use crate::http::AppState;
use crate::http::error::{ApiError, Problem};
use crate::http::extract::{ApiQuery, Auth};
use crate::service::StreamItem;

/// Query of `GET /v1/events`.
#[derive(Debug, Deserialize, IntoParams)]
pub struct EventQuery {
    /// Only events of this context.
    pub context: Option<String>,
    /// Only events of this mailbox (`mailbox@context`).
    pub mailbox: Option<String>,
    /// Resume after this event id (the `Last-Event-ID` header wins when both are sent).
    pub last_event_id: Option<String>,
}

/// The JSON `data` of the last few live events serialised, with those events. The hub hands every
/// subscriber a clone of the same `Arc<Event>`, so with N streams open an event is serialised once
/// instead of N times (with 1,000 streams that was 1,000 `EventView`s and JSON strings per event).
/// Entries are keyed by the `Arc`'s identity, not by `seq`: holding the `Arc` keeps its address
/// from being reused, and two servers in one process (tests) never share an `Arc`. Replayed events
/// are separate `Arc`s and simply miss. A few slots, so streams a few events apart still hit.
const DATA_SLOTS: usize = 8;
type DataSlot = Option<(Arc<Event>, Arc<str>)>;
static RECENT_DATA: Mutex<([DataSlot; DATA_SLOTS], usize)> =
    Mutex::new(([const { None }; DATA_SLOTS], 0));

fn event_data(e: &Arc<Event>) -> Arc<str> {
    let lock = || RECENT_DATA.lock().unwrap_or_else(|p| p.into_inner());
    let hit = lock()
        .0
        .iter()
        .flatten()
        .find_map(|(ev, data)| Arc::ptr_eq(ev, e).then(|| data.clone()));
    if let Some(data) = hit {
        return data;
    }
    let data: Arc<str> = serde_json::to_string(&EventView::from(e.as_ref()))
        .unwrap_or_else(|_| "{}".into())
        .into();
    let mut recent = lock();
    let (slots, next) = &mut *recent;
    slots[*next] = Some((e.clone(), data.clone()));
    *next = (*next + 1) % DATA_SLOTS;
    data
}

fn parse_last_id(v: &str) -> Result<i64, ApiError> {
    v.trim()
        .parse::<i64>()
        .ok()
        .filter(|n| *n >= 0)
        .ok_or_else(|| ApiError::invalid("Last-Event-ID must be an event id this server sent"))
}

/// Server-Sent Events of mailbox changes with their MWI counts. Each event's id is its outbox
/// position: reconnect with `Last-Event-ID` to receive everything missed (retained for
/// `events.retention_secs`). A `resync` event means older events are gone: refetch the counts.
#[utoipa::path(get, path = "/v1/events", tag = "events", params(EventQuery,
        ("Last-Event-ID" = Option<String>, Header, description = "resume after this event id")),
    responses((status = 200, content_type = "text/event-stream", body = EventView),
        (status = 400, body = Problem), (status = 401, body = Problem), (status = 404, body = Problem)),
    security(("bearer" = [])))]
pub async fn stream_events(
    State(s): State<AppState>,
    Auth(p): Auth,
    ApiQuery(q): ApiQuery<EventQuery>,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, ApiError> {
    let last = match headers.get("last-event-id") {
        Some(v) => {
            Some(parse_last_id(v.to_str().map_err(|_| {
                ApiError::invalid("Last-Event-ID must be ASCII")
            })?)?)
        }
        None => q.last_event_id.as_deref().map(parse_last_id).transpose()?,
    };
    let mailbox = q
        .mailbox
        .as_deref()
        .filter(|m| !m.is_empty())
        .map(super::address)
        .transpose()?;
    let context = q.context.filter(|c| !c.is_empty());
    let events = s.vm.event_stream(&p, context, mailbox, last).await?;
    let heartbeat = Duration::from_secs(s.vm.config().events.heartbeat_secs.max(1));
    let stream = events.map(|item| {
        Ok(match item {
            StreamItem::Resync { oldest } => SseEvent::default()
                .event("resync")
                .data(format!("{{\"oldest_seq\":{oldest}}}")),
            StreamItem::Event(e) => SseEvent::default()
                .id(e.seq.to_string())
                .event(&e.event_type)
                .data(&*event_data(&e)),
        })
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(heartbeat).text("heartbeat")))
}
