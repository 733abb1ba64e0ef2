//! HTTP: the `/v1` API, health, the OpenAPI document and problem descriptions.

pub mod api;
pub mod error;
pub mod extract;
pub mod openapi;
pub mod server;
pub mod ui;
pub mod uploads;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{Method, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::classify::StatusInRangeAsFailures;
use tower_http::trace::TraceLayer;
use utoipa::OpenApi;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};

use crate::service::Voicemail;
use api::{
    contexts, events, greetings, health, mailboxes, messages, metrics, mwi_targets, queues, views,
    webhooks,
};
use error::ApiError;

/// Shared state of the handlers.
#[derive(Clone)]
pub struct AppState {
    pub vm: Voicemail,
}

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// Error answers are `application/problem+json` (see `error.rs`), not the `application/json`
/// utoipa assumes for `body = Problem`: say so in the document.
struct ProblemJson;

impl utoipa::Modify for ProblemJson {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for item in openapi.paths.paths.values_mut() {
            let ops = [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.options,
                &mut item.head,
                &mut item.patch,
                &mut item.trace,
            ];
            for op in ops.into_iter().flatten() {
                for (status, resp) in op.responses.responses.iter_mut() {
                    let is_error = status.starts_with('4') || status.starts_with('5');
                    if let (true, utoipa::openapi::RefOr::T(resp)) = (is_error, resp)
                        && let Some(content) = resp.content.shift_remove("application/json")
                    {
                        resp.content
                            .insert("application/problem+json".to_owned(), content);
                    }
                }
            }
        }
    }
}

/// The OpenAPI 3.1 description of the API, generated from the handlers; served as
/// `openapi::document()`, which completes it.
#[derive(OpenApi)]
#[openapi(
    info(title = "voxmail", description = "Centralized voicemail for PBX clusters"),
    paths(
        health::healthz, health::readyz, metrics::metrics, openapi_json,
        contexts::create_context, contexts::list_contexts,
        contexts::get_context_email, contexts::put_context_email,
        contexts::get_context_asterisk, contexts::put_context_asterisk,
        mailboxes::create_mailbox, mailboxes::list_mailboxes, mailboxes::get_mailbox,
        mailboxes::update_mailbox, mailboxes::delete_mailbox, mailboxes::get_mwi,
        mailboxes::verify_pin,
        messages::deposit_message, messages::list_messages, messages::get_message,
        messages::update_message, messages::delete_message, messages::get_message_audio, messages::get_message_audio_file,
        messages::forward_message,
        greetings::put_greeting, greetings::get_greeting, greetings::delete_greeting,
        events::stream_events,
        webhooks::create_webhook, webhooks::list_webhooks, webhooks::get_webhook,
        webhooks::update_webhook, webhooks::delete_webhook, webhooks::list_deliveries,
        mwi_targets::create_mwi_target, mwi_targets::list_mwi_targets, mwi_targets::get_mwi_target,
        mwi_targets::update_mwi_target, mwi_targets::delete_mwi_target, mwi_targets::list_mwi_pushes,
        mwi_targets::resync_mwi,
        queues::list_queues, queues::retry_queue,
    ),
    components(schemas(error::Problem, views::MessageView, views::MailboxView, views::ContextView,
        views::GreetingView, crate::service::DepositMeta, crate::domain::EventView)),
    modifiers(&BearerAuth, &ProblemJson),
)]
pub struct ApiDoc;

/// This document.
#[utoipa::path(get, path = "/v1/openapi.json", tag = "health",
    responses((status = 200, description = "the OpenAPI 3.1 document of this API",
        content_type = "application/json", body = Object)))]
async fn openapi_json() -> Response {
    axum::Json(openapi::document()).into_response()
}

async fn not_found(uri: Uri) -> ApiError {
    ApiError::new("not-found", format!("no route for {}", uri.path()))
}

async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError::new(
        "method-not-allowed",
        format!("{method} is not allowed on {}", uri.path()),
    )
}

fn panic_response(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    tracing::error!("a request handler panicked");
    ApiError::new("internal", "internal error; see the server log").into_response()
}

/// Builds the router.
pub fn router(vm: Voicemail) -> Router {
    let ui_enabled = vm.config().ui.enabled;
    let http = &vm.config().http;
    let uploads = uploads::Uploads::new(http.max_uploads_per_key, http.max_uploads_per_source);
    let limit_uploads = || axum::middleware::from_fn_with_state(uploads.clone(), uploads::limit);
    let state = AppState { vm };
    let mbox = "/v1/mailboxes/{address}";
    let base = if ui_enabled {
        ui::router(limit_uploads())
    } else {
        Router::new()
    };
    base.route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(metrics::metrics))
        .route("/v1/queues", get(queues::list_queues))
        .route("/v1/queues/{queue}/retry", post(queues::retry_queue))
        .route("/v1/openapi.json", get(openapi_json))
        .route("/problems/{slug}", get(error::describe_problem))
        .route(
            "/v1/contexts",
            get(contexts::list_contexts).post(contexts::create_context),
        )
        .route(
            "/v1/contexts/{name}/email",
            get(contexts::get_context_email).put(contexts::put_context_email),
        )
        .route(
            "/v1/contexts/{name}/asterisk",
            get(contexts::get_context_asterisk).put(contexts::put_context_asterisk),
        )
        .route(
            "/v1/mailboxes",
            get(mailboxes::list_mailboxes).post(mailboxes::create_mailbox),
        )
        .route(
            mbox,
            get(mailboxes::get_mailbox)
                .patch(mailboxes::update_mailbox)
                .delete(mailboxes::delete_mailbox),
        )
        .route(&format!("{mbox}/mwi"), get(mailboxes::get_mwi))
        .route(
            &format!("{mbox}/pin/verify"),
            axum::routing::post(mailboxes::verify_pin),
        )
        .route(
            &format!("{mbox}/messages"),
            get(messages::list_messages).merge(
                axum::routing::post(messages::deposit_message)
                    .layer(DefaultBodyLimit::disable())
                    .layer(limit_uploads()),
            ),
        )
        .route(
            &format!("{mbox}/messages/{{id}}"),
            get(messages::get_message)
                .patch(messages::update_message)
                .delete(messages::delete_message),
        )
        .route(
            &format!("{mbox}/messages/{{id}}/audio"),
            get(messages::get_message_audio),
        )
        .route(
            &format!("{mbox}/messages/{{id}}/{{file}}"),
            get(messages::get_message_audio_file),
        )
        .route(
            &format!("{mbox}/messages/{{id}}/forward"),
            axum::routing::post(messages::forward_message),
        )
        .route(
            &format!("{mbox}/greetings/{{kind}}"),
            get(greetings::get_greeting)
                .merge(axum::routing::put(greetings::put_greeting).layer(limit_uploads()))
                .delete(greetings::delete_greeting),
        )
        .route("/v1/events", get(events::stream_events))
        .route(
            "/v1/mwi-targets",
            get(mwi_targets::list_mwi_targets).post(mwi_targets::create_mwi_target),
        )
        .route(
            "/v1/mwi-targets/{id}",
            get(mwi_targets::get_mwi_target)
                .patch(mwi_targets::update_mwi_target)
                .delete(mwi_targets::delete_mwi_target),
        )
        .route(
            "/v1/mwi-targets/{id}/pushes",
            get(mwi_targets::list_mwi_pushes),
        )
        .route(
            "/v1/mwi/resync",
            axum::routing::post(mwi_targets::resync_mwi),
        )
        .route(
            "/v1/webhooks",
            get(webhooks::list_webhooks).post(webhooks::create_webhook),
        )
        .route(
            "/v1/webhooks/{id}",
            get(webhooks::get_webhook)
                .patch(webhooks::update_webhook)
                .delete(webhooks::delete_webhook),
        )
        .route(
            "/v1/webhooks/{id}/deliveries",
            get(webhooks::list_deliveries),
        )
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        // Audio bodies are streamed and limited by the deposit path itself (problem+json 413);
        // JSON bodies are small.
        .layer(DefaultBodyLimit::max(1024 * 1024))
        .layer(CatchPanicLayer::custom(panic_response))
        // Only a 500 is a failure worth tower-http's ERROR line: the other 5xx answers (507
        // mailbox full, 503 busy or unavailable, 501) are logged by `ApiError` at their level.
        .layer(
            TraceLayer::new(StatusInRangeAsFailures::new(500..=500).into_make_classifier())
                // Every line a request logs names it (which operation a database error broke).
                .make_span_with(|req: &axum::http::Request<axum::body::Body>| {
                    tracing::info_span!("request", method = %req.method(), path = %req.uri().path())
                }),
        )
        .with_state(state)
}
