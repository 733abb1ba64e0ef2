use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::http::AppState;
use crate::http::error::{ApiError, Problem};
use crate::http::extract::{ApiJson, ApiPath, ApiQuery, Auth};
use crate::service::MwiTargetSettings;
use crate::store::{MwiPushRecord, MwiTargetRecord};

/// Where a context's MWI counts are pushed. The secret is write-only.
#[derive(Debug, Serialize, ToSchema)]
pub struct MwiTargetView {
    pub id: String,
    pub context: String,
    /// ari, ami or sip.
    pub kind: String,
    /// ari: Asterisk HTTP base (http://pbx1:8088); ami: host:port; sip: sip:user@host:port;transport=udp|tcp.
    pub url: String,
    pub username: String,
    /// Only this mailbox's counts (empty = every mailbox of the context).
    pub mailbox: String,
    pub active: bool,
    pub has_secret: bool,
    pub created_at: i64,
    pub updated_at: i64,
}

impl From<MwiTargetRecord> for MwiTargetView {
    fn from(t: MwiTargetRecord) -> Self {
        Self {
            id: t.id,
            context: t.context,
            kind: t.kind.as_str().to_owned(),
            url: t.url,
            username: t.username,
            mailbox: t.mailbox,
            active: t.active,
            has_secret: !t.secret.is_empty(),
            created_at: t.created_at,
            updated_at: t.updated_at,
        }
    }
}

/// A new target.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewMwiTarget {
    pub context: String,
    /// ari, ami or sip.
    pub kind: String,
    pub url: String,
    /// ARI/AMI user.
    #[serde(default)]
    pub username: Option<String>,
    /// ARI/AMI password.
    #[serde(default)]
    pub secret: Option<String>,
    /// Only this mailbox (for a SIP endpoint with `incoming_mwi_mailbox`, or a phone).
    #[serde(default)]
    pub mailbox: Option<String>,
    #[serde(default)]
    pub active: Option<bool>,
}

/// Changes to a target.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MwiTargetPatch {
    #[serde(default)]
    pub kind: Option<String>,
    #[serde(default)]
    pub url: Option<String>,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub secret: Option<String>,
    #[serde(default)]
    pub mailbox: Option<String>,
    #[serde(default)]
    pub active: Option<bool>,
}

/// Target list.
#[derive(Debug, Serialize, ToSchema)]
pub struct MwiTargetList {
    pub items: Vec<MwiTargetView>,
}

/// Push state of one mailbox at a target.
#[derive(Debug, Serialize, ToSchema)]
pub struct MwiPushView {
    pub mailbox: String,
    /// The mailbox version the target should reflect.
    pub wanted_version: i64,
    /// The version last pushed successfully (-1 = never).
    pub pushed_version: i64,
    pub in_sync: bool,
    pub attempts: i64,
    pub next_attempt_ms: i64,
    pub last_error: Option<String>,
    pub last_pushed_ms: Option<i64>,
}

impl From<MwiPushRecord> for MwiPushView {
    fn from(p: MwiPushRecord) -> Self {
        Self {
            mailbox: p.address.to_string(),
            wanted_version: p.wanted_version,
            pushed_version: p.pushed_version,
            in_sync: p.pushed_version >= p.wanted_version,
            attempts: p.attempts,
            next_attempt_ms: p.next_attempt_ms,
            last_error: p.last_error,
            last_pushed_ms: p.last_pushed_ms,
        }
    }
}

/// Push states.
#[derive(Debug, Serialize, ToSchema)]
pub struct MwiPushList {
    pub items: Vec<MwiPushView>,
}

/// Query of `GET /v1/mwi-targets`.
#[derive(Debug, Deserialize, IntoParams)]
pub struct TargetQuery {
    pub context: Option<String>,
}

/// A resync request.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResyncBody {
    /// Only this context (default: every context the key sees).
    #[serde(default)]
    pub context: Option<String>,
}

/// Resync result.
#[derive(Debug, Serialize, ToSchema)]
pub struct ResyncView {
    /// (target, mailbox) pushes queued.
    pub queued: u64,
}

/// Add an MWI push target (admin). The current counts of its mailboxes are pushed at once.
#[utoipa::path(post, path = "/v1/mwi-targets", tag = "mwi", request_body = NewMwiTarget,
    responses((status = 201, body = MwiTargetView), (status = 400, body = Problem),
        (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem)),
    security(("bearer" = [])))]
pub async fn create_mwi_target(
    State(s): State<AppState>,
    Auth(p): Auth,
    ApiJson(b): ApiJson<NewMwiTarget>,
) -> Result<impl IntoResponse, ApiError> {
    let t =
        s.vm.create_mwi_target(
            &p,
            &b.context,
            MwiTargetSettings {
                kind: Some(b.kind),
                url: Some(b.url),
                username: b.username,
                secret: b.secret,
                mailbox: b.mailbox,
                active: b.active,
            },
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, format!("/v1/mwi-targets/{}", t.id))],
        axum::Json(MwiTargetView::from(t)),
    ))
}

/// List MWI push targets (admin).
#[utoipa::path(get, path = "/v1/mwi-targets", tag = "mwi", params(TargetQuery),
    responses((status = 200, body = MwiTargetList), (status = 401, body = Problem),
        (status = 403, body = Problem)),
    security(("bearer" = [])))]
pub async fn list_mwi_targets(
    State(s): State<AppState>,
    Auth(p): Auth,
    ApiQuery(q): ApiQuery<TargetQuery>,
) -> Result<axum::Json<MwiTargetList>, ApiError> {
    let items = s.vm.list_mwi_targets(&p, q.context.as_deref()).await?;
    Ok(axum::Json(MwiTargetList {
        items: items.into_iter().map(Into::into).collect(),
    }))
}

/// One MWI push target (admin).
#[utoipa::path(get, path = "/v1/mwi-targets/{id}", tag = "mwi", params(("id" = String, Path)),
    responses((status = 200, body = MwiTargetView), (status = 401, body = Problem),
        (status = 403, body = Problem), (status = 404, body = Problem)),
    security(("bearer" = [])))]
pub async fn get_mwi_target(
    State(s): State<AppState>,
    Auth(p): Auth,
    ApiPath(id): ApiPath<String>,
) -> Result<axum::Json<MwiTargetView>, ApiError> {
    Ok(axum::Json(s.vm.get_mwi_target(&p, &id).await?.into()))
}

/// Change an MWI push target (admin); its mailboxes' counts are pushed again.
#[utoipa::path(patch, path = "/v1/mwi-targets/{id}", tag = "mwi", params(("id" = String, Path)),
    request_body = MwiTargetPatch,
    responses((status = 200, body = MwiTargetView), (status = 400, body = Problem),
        (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem)),
    security(("bearer" = [])))]
pub async fn update_mwi_target(
    State(s): State<AppState>,
    Auth(p): Auth,
    ApiPath(id): ApiPath<String>,
    ApiJson(b): ApiJson<MwiTargetPatch>,
) -> Result<axum::Json<MwiTargetView>, ApiError> {
    let t =
        s.vm.update_mwi_target(
            &p,
            &id,
            MwiTargetSettings {
                kind: b.kind,
                url: b.url,
                username: b.username,
                secret: b.secret,
                mailbox: b.mailbox,
                active: b.active,
            },
        )
        .await?;
    Ok(axum::Json(t.into()))
}

/// Delete an MWI push target (admin).
#[utoipa::path(delete, path = "/v1/mwi-targets/{id}", tag = "mwi", params(("id" = String, Path)),
    responses((status = 204), (status = 401, body = Problem), (status = 403, body = Problem),
        (status = 404, body = Problem)),
    security(("bearer" = [])))]
pub async fn delete_mwi_target(
    State(s): State<AppState>,
    Auth(p): Auth,
    ApiPath(id): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    s.vm.delete_mwi_target(&p, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Push state of a target per mailbox: what it should show, what it was last sent, errors (admin).
#[utoipa::path(get, path = "/v1/mwi-targets/{id}/pushes", tag = "mwi", params(("id" = String, Path)),
    responses((status = 200, body = MwiPushList), (status = 401, body = Problem),
        (status = 403, body = Problem), (status = 404, body = Problem)),
    security(("bearer" = [])))]
pub async fn list_mwi_pushes(
    State(s): State<AppState>,
    Auth(p): Auth,
    ApiPath(id): ApiPath<String>,
) -> Result<axum::Json<MwiPushList>, ApiError> {
    let items = s.vm.mwi_target_pushes(&p, &id).await?;
    Ok(axum::Json(MwiPushList {
        items: items.into_iter().map(Into::into).collect(),
    }))
}

/// Push the current counts of every mailbox to every target again (admin).
#[utoipa::path(post, path = "/v1/mwi/resync", tag = "mwi", request_body = ResyncBody,
    responses((status = 202, body = ResyncView), (status = 401, body = Problem),
        (status = 403, body = Problem), (status = 404, body = Problem)),
    security(("bearer" = [])))]
pub async fn resync_mwi(
    State(s): State<AppState>,
    Auth(p): Auth,
    ApiJson(b): ApiJson<ResyncBody>,
) -> Result<(StatusCode, axum::Json<ResyncView>), ApiError> {
    let queued = s.vm.resync_mwi(&p, b.context.as_deref()).await?;
    Ok((StatusCode::ACCEPTED, axum::Json(ResyncView { queued })))
}
