use axum::extract::State;
use axum::http::StatusCode;

use crate::http::AppState;
use crate::http::error::{ApiError, Problem};

/// Liveness: the process answers.
#[utoipa::path(get, path = "/healthz", tag = "health", responses((status = 200, body = String)))]
pub async fn healthz() -> &'static str {
    "ok\n"
}

/// Readiness: the node can write to the database and to audio storage (503 `unavailable` when
/// it cannot, or when a check does not answer within `database.acquire_timeout_ms`).
#[utoipa::path(get, path = "/readyz", tag = "health",
    responses((status = 200, body = String), (status = 503, body = Problem)))]
pub async fn readyz(State(s): State<AppState>) -> Result<(StatusCode, &'static str), ApiError> {
    s.vm.ready().await?;
    Ok((StatusCode::OK, "ready\n"))
}
