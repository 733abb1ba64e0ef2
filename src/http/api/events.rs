use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use futures_util::{Stream, StreamExt};
use serde::Deserialize;
use utoipa::IntoParams;

use crate::domain::EventView;
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
            StreamItem::Event(e) => {
                let view = EventView::from(e.as_ref());
                let data = serde_json::to_string(&view).unwrap_or_else(|_| "{}".into());
                SseEvent::default()
                    .id(e.seq.to_string())
                    .event(e.event_type.clone())
                    .data(data)
            }
        })
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(heartbeat).text("heartbeat")))
}
