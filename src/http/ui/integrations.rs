//! A context's integrations: webhooks (list, create — the secret shown once — edit, disable,
//! delete, test-send, recent deliveries) and MWI push targets (list, create, edit, delete,
//! test-send, resync, push state per mailbox).

use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::pages::frame;
use super::views::{
    ConfirmPage, MwiTargetPage, MwiTargetsPage, TARGET_KINDS, TargetForm, WebhookForm, WebhookPage,
    WebhooksPage, html, webhook_events,
};
use super::{MultiForm, Signed, UiError, client, read_form, read_multi_form};
use crate::http::AppState;
use crate::service::{AdminSession, MwiTargetSettings, ServiceError, WebhookSettings};
use crate::store::MwiPushRecord;

/// Deliveries shown on a webhook's page.
const RECENT_DELIVERIES: u32 = 25;

/// Query of the integration pages: a notice after a redirect, the test delivery just sent.
#[derive(Deserialize)]
pub struct PageQuery {
    notice: Option<String>,
    test: Option<i64>,
    tested: Option<u64>,
}

fn hooks_url(ctx: &str) -> String {
    format!("/ui/contexts/{ctx}/webhooks")
}

fn hook_url(ctx: &str, id: &str) -> String {
    format!("/ui/contexts/{ctx}/webhooks/{id}")
}

fn targets_url(ctx: &str) -> String {
    format!("/ui/contexts/{ctx}/mwi-targets")
}

fn target_url(ctx: &str, id: &str) -> String {
    format!("/ui/contexts/{ctx}/mwi-targets/{id}")
}

/// Errors a form shows next to its fields (others are error pages).
fn form_error(e: &ServiceError) -> bool {
    matches!(e, ServiceError::Invalid(_) | ServiceError::Conflict(_))
}

fn bad_request(mut res: Response) -> Response {
    *res.status_mut() = StatusCode::BAD_REQUEST;
    res
}

fn webhook_form(f: &MultiForm) -> WebhookForm {
    WebhookForm {
        url: f.get("url").to_owned(),
        event_types: f.all("event"),
        active: f.checked("active"),
    }
}

async fn webhooks_page(
    s: &AppState,
    session: &AdminSession,
    ctx: &str,
    form: WebhookForm,
    error: Option<&str>,
    notice: Option<&str>,
) -> Result<Response, UiError> {
    let context = s.vm.admin_visible_context(&session.admin, ctx).await?;
    let hooks = s.vm.admin_webhooks(&session.admin, ctx).await?;
    let res = html(&WebhooksPage {
        frame: frame(session, "contexts"),
        context: &context,
        hooks: &hooks,
        form,
        events: webhook_events(),
        error,
        notice,
    });
    Ok(if error.is_some() {
        bad_request(res)
    } else {
        res
    })
}

/// `GET /ui/contexts/{ctx}/webhooks`.
pub async fn webhooks(
    State(s): State<AppState>,
    Signed(session): Signed,
    Path(ctx): Path<String>,
    Query(q): Query<PageQuery>,
) -> Result<Response, UiError> {
    let notice = (q.notice.as_deref() == Some("deleted")).then_some("Webhook deleted.");
    webhooks_page(&s, &session, &ctx, WebhookForm::default(), None, notice).await
}

/// `POST /ui/contexts/{ctx}/webhooks`: creates a webhook and shows its secret once.
pub async fn create_webhook(
    State(s): State<AppState>,
    Signed(session): Signed,
    Path(ctx): Path<String>,
    headers: HeaderMap,
    req: Request,
) -> Result<Response, UiError> {
    let f = read_multi_form(&session, req).await?;
    let form = webhook_form(&f);
    let secret = Some(f.get("secret")).filter(|v| !v.is_empty());
    let settings = WebhookSettings {
        url: Some(form.url.clone()),
        event_types: Some(form.event_types.clone()),
        secret: Some(secret.map(str::to_owned)),
        active: Some(true),
    };
    match s
        .vm
        .admin_create_webhook(&session.admin, &client(&headers), &ctx, settings)
        .await
    {
        Ok(w) => {
            webhook_page(
                &s,
                &session,
                &ctx,
                &w.id,
                Some(&w.secret),
                None,
                None,
                Some("Webhook created."),
            )
            .await
        }
        Err(e) if form_error(&e) => {
            webhooks_page(&s, &session, &ctx, form, Some(&e.to_string()), None).await
        }
        Err(e) => Err(e.into()),
    }
}

#[allow(clippy::too_many_arguments)]
async fn webhook_page(
    s: &AppState,
    session: &AdminSession,
    ctx: &str,
    id: &str,
    secret: Option<&str>,
    test: Option<i64>,
    error: Option<(&str, WebhookForm)>,
    notice: Option<&str>,
) -> Result<Response, UiError> {
    let (hook, deliveries) =
        s.vm.admin_webhook(&session.admin, ctx, id, RECENT_DELIVERIES)
            .await?;
    let (error, form) = match error {
        Some((e, form)) => (Some(e), form),
        None => (
            None,
            WebhookForm {
                url: hook.url.clone(),
                event_types: hook.event_types.clone(),
                active: hook.active,
            },
        ),
    };
    let res = html(&WebhookPage {
        frame: frame(session, "contexts"),
        context: ctx,
        hook: &hook,
        deliveries: &deliveries,
        form,
        events: webhook_events(),
        secret,
        tested: test.and_then(|t| deliveries.iter().find(|d| d.id == t)),
        error,
        notice,
    });
    Ok(if error.is_some() {
        bad_request(res)
    } else {
        res
    })
}

/// `GET /ui/contexts/{ctx}/webhooks/{id}`: deliveries and settings.
pub async fn webhook(
    State(s): State<AppState>,
    Signed(session): Signed,
    Path((ctx, id)): Path<(String, String)>,
    Query(q): Query<PageQuery>,
) -> Result<Response, UiError> {
    let notice = (q.notice.as_deref() == Some("saved")).then_some("Webhook saved.");
    webhook_page(&s, &session, &ctx, &id, None, q.test, None, notice).await
}

/// `POST /ui/contexts/{ctx}/webhooks/{id}`: saves the settings (a new secret is shown once).
pub async fn update_webhook(
    State(s): State<AppState>,
    Signed(session): Signed,
    Path((ctx, id)): Path<(String, String)>,
    headers: HeaderMap,
    req: Request,
) -> Result<Response, UiError> {
    let f = read_multi_form(&session, req).await?;
    let form = webhook_form(&f);
    let typed = Some(f.get("secret")).filter(|v| !v.is_empty());
    let secret = match (typed, f.checked("rotate")) {
        (Some(_), true) => {
            let e = "Either type a new secret or generate one, not both.";
            return webhook_page(&s, &session, &ctx, &id, None, None, Some((e, form)), None).await;
        }
        (Some(t), false) => Some(Some(t.to_owned())),
        (None, true) => Some(None),
        (None, false) => None,
    };
    let changed_secret = secret.is_some();
    let settings = WebhookSettings {
        url: Some(form.url.clone()),
        event_types: Some(form.event_types.clone()),
        secret,
        active: Some(form.active),
    };
    match s
        .vm
        .admin_update_webhook(&session.admin, &client(&headers), &ctx, &id, settings)
        .await
    {
        Ok(w) if changed_secret => {
            webhook_page(
                &s,
                &session,
                &ctx,
                &id,
                Some(&w.secret),
                None,
                None,
                Some("Webhook saved with a new secret."),
            )
            .await
        }
        Ok(_) => Ok(Redirect::to(&format!("{}?notice=saved", hook_url(&ctx, &id))).into_response()),
        Err(e) if form_error(&e) => {
            let msg = e.to_string();
            webhook_page(
                &s,
                &session,
                &ctx,
                &id,
                None,
                None,
                Some((&msg, form)),
                None,
            )
            .await
        }
        Err(e) => Err(e.into()),
    }
}

/// `POST /ui/contexts/{ctx}/webhooks/{id}/test`: sends a test delivery now, then shows it.
pub async fn test_webhook(
    State(s): State<AppState>,
    Signed(session): Signed,
    Path((ctx, id)): Path<(String, String)>,
    headers: HeaderMap,
    req: Request,
) -> Result<Response, UiError> {
    read_form(&session, req).await?;
    let d =
        s.vm.admin_test_webhook(&session.admin, &client(&headers), &ctx, &id)
            .await?;
    Ok(Redirect::to(&format!("{}?test={}", hook_url(&ctx, &id), d.id)).into_response())
}

/// `GET /ui/contexts/{ctx}/webhooks/{id}/delete`: asks first.
pub async fn confirm_delete_webhook(
    State(s): State<AppState>,
    Signed(session): Signed,
    Path((ctx, id)): Path<(String, String)>,
) -> Result<Response, UiError> {
    let (hook, _) = s.vm.admin_webhook(&session.admin, &ctx, &id, 1).await?;
    Ok(html(&ConfirmPage {
        frame: frame(&session, "contexts"),
        crumbs: vec![
            ("Contexts".into(), "/ui/contexts".into()),
            (ctx.clone(), format!("/ui/contexts/{ctx}/mailboxes")),
            ("Webhooks".into(), hooks_url(&ctx)),
            ("Delete".into(), String::new()),
        ],
        heading: "Delete this webhook?".into(),
        text: format!(
            "{} will receive no more events of {ctx}, and its delivery history is removed. \
             This cannot be undone; to pause it, disable it instead.",
            hook.url
        ),
        action: format!("{}/delete", hook_url(&ctx, &id)),
        button: "Delete webhook",
        cancel: hook_url(&ctx, &id),
    }))
}

/// `POST /ui/contexts/{ctx}/webhooks/{id}/delete`.
pub async fn delete_webhook(
    State(s): State<AppState>,
    Signed(session): Signed,
    Path((ctx, id)): Path<(String, String)>,
    headers: HeaderMap,
    req: Request,
) -> Result<Response, UiError> {
    read_form(&session, req).await?;
    s.vm.admin_delete_webhook(&session.admin, &client(&headers), &ctx, &id)
        .await?;
    Ok(Redirect::to(&format!("{}?notice=deleted", hooks_url(&ctx))).into_response())
}

fn target_form(f: &MultiForm) -> TargetForm {
    TargetForm {
        kind: f.get("kind").to_owned(),
        url: f.get("url").to_owned(),
        username: f.get("username").to_owned(),
        mailbox: f.get("mailbox").to_owned(),
        active: f.checked("active"),
        has_secret: false,
    }
}

async fn targets_page(
    s: &AppState,
    session: &AdminSession,
    ctx: &str,
    form: TargetForm,
    error: Option<&str>,
    notice: Option<String>,
) -> Result<Response, UiError> {
    let context = s.vm.admin_visible_context(&session.admin, ctx).await?;
    let targets = s.vm.admin_mwi_targets(&session.admin, ctx).await?;
    let res = html(&MwiTargetsPage {
        frame: frame(session, "contexts"),
        context: &context,
        targets: &targets,
        form,
        kinds: &TARGET_KINDS,
        error,
        notice,
    });
    Ok(if error.is_some() {
        bad_request(res)
    } else {
        res
    })
}

/// Query of the targets list.
#[derive(Deserialize)]
pub struct TargetsQuery {
    notice: Option<String>,
    queued: Option<u64>,
}

/// `GET /ui/contexts/{ctx}/mwi-targets`.
pub async fn targets(
    State(s): State<AppState>,
    Signed(session): Signed,
    Path(ctx): Path<String>,
    Query(q): Query<TargetsQuery>,
) -> Result<Response, UiError> {
    let notice = match (q.notice.as_deref(), q.queued) {
        (Some("deleted"), _) => Some("Target deleted.".to_owned()),
        (Some("resynced"), Some(n)) => Some(format!(
            "Current counts queued for every target: {n} push{}.",
            if n == 1 { "" } else { "es" }
        )),
        _ => None,
    };
    let form = TargetForm {
        kind: "ari".into(),
        active: true,
        ..Default::default()
    };
    targets_page(&s, &session, &ctx, form, None, notice).await
}

/// `POST /ui/contexts/{ctx}/mwi-targets`.
pub async fn create_target(
    State(s): State<AppState>,
    Signed(session): Signed,
    Path(ctx): Path<String>,
    headers: HeaderMap,
    req: Request,
) -> Result<Response, UiError> {
    let f = read_multi_form(&session, req).await?;
    let form = target_form(&f);
    let settings = MwiTargetSettings {
        kind: Some(form.kind.clone()),
        url: Some(form.url.clone()),
        username: Some(form.username.clone()),
        secret: Some(f.get("secret").to_owned()),
        mailbox: Some(form.mailbox.clone()),
        active: Some(form.active),
    };
    match s
        .vm
        .admin_create_mwi_target(&session.admin, &client(&headers), &ctx, settings)
        .await
    {
        Ok(t) => Ok(
            Redirect::to(&format!("{}?notice=created", target_url(&ctx, &t.id))).into_response(),
        ),
        Err(e) if form_error(&e) => {
            targets_page(&s, &session, &ctx, form, Some(&e.to_string()), None).await
        }
        Err(e) => Err(e.into()),
    }
}

/// A test-send's outcome as a sentence, and whether every push went out.
fn test_outcome(queued: u64, pushes: &[MwiPushRecord]) -> (String, bool) {
    if queued == 0 {
        return (
            "Nothing to push: this context has no mailbox this target takes.".into(),
            false,
        );
    }
    let pushed = pushes
        .iter()
        .filter(|p| p.pushed_version >= p.wanted_version)
        .count();
    let failing: Vec<&MwiPushRecord> = pushes.iter().filter(|p| p.last_error.is_some()).collect();
    let plural = |n: usize| if n == 1 { "" } else { "es" };
    if pushed == pushes.len() {
        return (
            format!(
                "Test sent: the current counts of {pushed} mailbox{} were pushed.",
                plural(pushed)
            ),
            true,
        );
    }
    match failing.first().and_then(|p| p.last_error.as_deref()) {
        Some(e) => (
            format!(
                "{pushed} of {} mailbox{} pushed; {} failing: {e}. Failed pushes are retried.",
                pushes.len(),
                plural(pushes.len()),
                failing.len()
            ),
            false,
        ),
        None => (
            format!(
                "{pushed} of {} mailbox{} pushed so far; the rest are queued. Refresh in a moment.",
                pushes.len(),
                plural(pushes.len())
            ),
            false,
        ),
    }
}

#[allow(clippy::too_many_arguments)]
async fn target_page(
    s: &AppState,
    session: &AdminSession,
    ctx: &str,
    id: &str,
    tested: Option<u64>,
    error: Option<(&str, TargetForm)>,
    notice: Option<&str>,
) -> Result<Response, UiError> {
    let (target, pushes) = s.vm.admin_mwi_target(&session.admin, ctx, id).await?;
    let (error, form) = match error {
        Some((e, mut form)) => {
            form.has_secret = !target.secret.is_empty();
            (Some(e), form)
        }
        None => (
            None,
            TargetForm {
                kind: target.kind.as_str().to_owned(),
                url: target.url.clone(),
                username: target.username.clone(),
                mailbox: target.mailbox.clone(),
                active: target.active,
                has_secret: !target.secret.is_empty(),
            },
        ),
    };
    let res = html(&MwiTargetPage {
        frame: frame(session, "contexts"),
        context: ctx,
        target: &target,
        tested: tested.map(|n| test_outcome(n, &pushes)),
        pushes: &pushes,
        form,
        kinds: &TARGET_KINDS,
        error,
        notice,
    });
    Ok(if error.is_some() {
        bad_request(res)
    } else {
        res
    })
}

/// `GET /ui/contexts/{ctx}/mwi-targets/{id}`: push state and settings.
pub async fn target(
    State(s): State<AppState>,
    Signed(session): Signed,
    Path((ctx, id)): Path<(String, String)>,
    Query(q): Query<PageQuery>,
) -> Result<Response, UiError> {
    let notice = match q.notice.as_deref() {
        Some("created") => Some("Target created: the current counts are being pushed."),
        Some("saved") => Some("Target saved: the current counts are being pushed again."),
        _ => None,
    };
    target_page(&s, &session, &ctx, &id, q.tested, None, notice).await
}

/// `POST /ui/contexts/{ctx}/mwi-targets/{id}`: saves the settings (an empty secret keeps it).
pub async fn update_target(
    State(s): State<AppState>,
    Signed(session): Signed,
    Path((ctx, id)): Path<(String, String)>,
    headers: HeaderMap,
    req: Request,
) -> Result<Response, UiError> {
    let f = read_multi_form(&session, req).await?;
    let form = target_form(&f);
    let settings = MwiTargetSettings {
        kind: Some(form.kind.clone()),
        url: Some(form.url.clone()),
        username: Some(form.username.clone()),
        secret: Some(f.get("secret"))
            .filter(|v| !v.is_empty())
            .map(str::to_owned),
        mailbox: Some(form.mailbox.clone()),
        active: Some(form.active),
    };
    match s
        .vm
        .admin_update_mwi_target(&session.admin, &client(&headers), &ctx, &id, settings)
        .await
    {
        Ok(_) => {
            Ok(Redirect::to(&format!("{}?notice=saved", target_url(&ctx, &id))).into_response())
        }
        Err(e) if form_error(&e) => {
            let msg = e.to_string();
            target_page(&s, &session, &ctx, &id, None, Some((&msg, form)), None).await
        }
        Err(e) => Err(e.into()),
    }
}

/// `POST /ui/contexts/{ctx}/mwi-targets/{id}/test`: pushes the current counts to this target now.
pub async fn test_target(
    State(s): State<AppState>,
    Signed(session): Signed,
    Path((ctx, id)): Path<(String, String)>,
    headers: HeaderMap,
    req: Request,
) -> Result<Response, UiError> {
    read_form(&session, req).await?;
    match s
        .vm
        .admin_test_mwi_target(&session.admin, &client(&headers), &ctx, &id)
        .await
    {
        Ok((queued, _)) => {
            Ok(Redirect::to(&format!("{}?tested={queued}", target_url(&ctx, &id))).into_response())
        }
        Err(e @ ServiceError::Invalid(_)) => {
            let msg = e.to_string();
            let (target, _) = s.vm.admin_mwi_target(&session.admin, &ctx, &id).await?;
            let form = TargetForm {
                kind: target.kind.as_str().to_owned(),
                url: target.url.clone(),
                username: target.username.clone(),
                mailbox: target.mailbox.clone(),
                active: target.active,
                has_secret: false,
            };
            target_page(&s, &session, &ctx, &id, None, Some((&msg, form)), None).await
        }
        Err(e) => Err(e.into()),
    }
}

/// `POST /ui/contexts/{ctx}/mwi-targets/resync`: queues the current counts of every mailbox of
/// the context for every target.
pub async fn resync(
    State(s): State<AppState>,
    Signed(session): Signed,
    Path(ctx): Path<String>,
    headers: HeaderMap,
    req: Request,
) -> Result<Response, UiError> {
    read_form(&session, req).await?;
    let n =
        s.vm.admin_resync_mwi(&session.admin, &client(&headers), &ctx)
            .await?;
    Ok(Redirect::to(&format!("{}?notice=resynced&queued={n}", targets_url(&ctx))).into_response())
}

/// `GET /ui/contexts/{ctx}/mwi-targets/{id}/delete`: asks first.
pub async fn confirm_delete_target(
    State(s): State<AppState>,
    Signed(session): Signed,
    Path((ctx, id)): Path<(String, String)>,
) -> Result<Response, UiError> {
    let (target, _) = s.vm.admin_mwi_target(&session.admin, &ctx, &id).await?;
    Ok(html(&ConfirmPage {
        frame: frame(&session, "contexts"),
        crumbs: vec![
            ("Contexts".into(), "/ui/contexts".into()),
            (ctx.clone(), format!("/ui/contexts/{ctx}/mailboxes")),
            ("MWI push".into(), targets_url(&ctx)),
            ("Delete".into(), String::new()),
        ],
        heading: "Delete this push target?".into(),
        text: format!(
            "{} will get no more message-waiting updates of {ctx}; its lamps keep their last \
             state. To pause it, disable it instead.",
            target.url
        ),
        action: format!("{}/delete", target_url(&ctx, &id)),
        button: "Delete target",
        cancel: target_url(&ctx, &id),
    }))
}

/// `POST /ui/contexts/{ctx}/mwi-targets/{id}/delete`.
pub async fn delete_target(
    State(s): State<AppState>,
    Signed(session): Signed,
    Path((ctx, id)): Path<(String, String)>,
    headers: HeaderMap,
    req: Request,
) -> Result<Response, UiError> {
    read_form(&session, req).await?;
    s.vm.admin_delete_mwi_target(&session.admin, &client(&headers), &ctx, &id)
        .await?;
    Ok(Redirect::to(&format!("{}?notice=deleted", targets_url(&ctx))).into_response())
}
