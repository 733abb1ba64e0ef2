//! `GET /metrics`: Prometheus' text format, for admin keys, over the key's contexts.

use std::time::Duration;

use serde_json::json;
use voxmail::domain::Role;

use crate::common::receiver::Receiver;
use crate::common::{TestApp, assert_problem, audio};

const WAIT: Duration = Duration::from_secs(10);

async fn key(app: &TestApp, role: Role, context: Option<&str>) -> String {
    app.services()
        .await
        .create_api_key("metrics", role, context)
        .await
        .expect("create key")
        .token
}

/// `method path` sent with `token` instead of the app's admin key.
async fn send_as(
    app: &TestApp,
    method: reqwest::Method,
    path: &str,
    token: &str,
) -> reqwest::Response {
    app.client
        .request(method, app.url(path))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
}

async fn scrape(app: &TestApp, token: &str) -> String {
    let r = send_as(app, reqwest::Method::GET, "/metrics", token).await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    r.text().await.unwrap()
}

/// The value of one series (`name` or `name{labels}` exactly as exposed), if it is there.
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        let (s, v) = l.rsplit_once(' ')?;
        (s == series).then(|| v.parse().expect("a number"))
    })
}

/// Scrapes until `done` holds (the tries are recorded after the peer answers, and the
/// database's numbers are reused for up to a second).
async fn scrape_until(app: &TestApp, token: &str, done: impl Fn(&str) -> bool) -> String {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let text = scrape(app, token).await;
        if done(&text) {
            return text;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never came:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Every line is a comment, or `name{labels} value` with a known family's name and a number.
fn assert_well_formed(text: &str) {
    let mut families = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            assert!(["gauge", "counter"].contains(&kind), "{line}");
            families.push(name.to_owned());
            continue;
        }
        if line.starts_with("# HELP ") {
            continue;
        }
        let (series, v) = line.rsplit_once(' ').expect(line);
        v.parse::<f64>().expect(line);
        let name = series.split('{').next().unwrap();
        assert!(
            families.last() == Some(&name.to_owned()),
            "{line} outside its family"
        );
        assert!(name.starts_with("voxmail_"), "{line}");
    }
}

/// A server whose webhook (on context default, retried after `retry_ms`) answers its first
/// delivery 500, and one deposit into 1001@default.
async fn a_deposit_whose_webhook_fails_once(retry_ms: u64) -> (TestApp, Receiver) {
    let app = TestApp::spawn_with(|c| {
        c.webhooks.retry_base_ms = retry_ms;
        c.webhooks.retry_max_ms = retry_ms;
    })
    .await;
    let rx = Receiver::start().await;
    rx.fail_next(1);
    app.create_mailbox("1001@default", json!({})).await;
    let r = app
        .post("/v1/webhooks")
        .json(
            &json!({"context": "default", "url": rx.url, "secret": "a-webhook-secret-0123",
            "event_types": ["message.deposited"]}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    app.deposit_ok("1001@default", audio::wav_ulaw(2.0), "audio/wav")
        .await;
    (app, rx)
}

#[tokio::test]
async fn metrics_show_the_stored_messages_and_each_queues_tries() {
    let (app, rx) = a_deposit_whose_webhook_fails_once(200).await;
    app.create_mailbox("2001@other", json!({})).await;
    app.deposit_ok("2001@other", audio::wav_ulaw(2.0), "audio/wav")
        .await;

    let webhook =
        |outcome| format!("voxmail_queue_tries_total{{queue=\"webhook\",outcome=\"{outcome}\"}}");
    // The database's numbers may lag the tries by the dashboard cache's second.
    let text = scrape_until(&app, &app.admin, |t| {
        value(t, &webhook("delivered")) == Some(1.0)
            && value(t, "voxmail_queue_pending{queue=\"webhook\"}") == Some(0.0)
    })
    .await;
    assert_well_formed(&text);
    assert_eq!(rx.received().await.len(), 1);
    assert_eq!(
        value(&text, &webhook("retrying")),
        Some(1.0),
        "the first try got a 500"
    );
    assert_eq!(value(&text, &webhook("gave_up")), Some(0.0));
    assert_eq!(
        value(&text, "voxmail_queue_tries_in_flight{queue=\"webhook\"}"),
        Some(0.0)
    );
    assert_eq!(
        value(&text, "voxmail_queue_pending{queue=\"webhook\"}"),
        Some(0.0)
    );
    assert_eq!(value(&text, "voxmail_mailboxes"), Some(2.0));
    assert_eq!(value(&text, "voxmail_messages_new"), Some(2.0));
    assert_eq!(
        value(&text, "voxmail_context_messages{context=\"default\"}"),
        Some(1.0)
    );
    assert_eq!(
        value(&text, "voxmail_context_messages{context=\"other\"}"),
        Some(1.0)
    );
    let bytes = value(&text, "voxmail_audio_bytes").unwrap();
    assert!(
        bytes >= 2.0 * 8000.0,
        "two seconds of µ-law at least: {bytes}"
    );
    let max = value(&text, "voxmail_db_connections_max").unwrap();
    assert_eq!(max, f64::from(app.config.database.max_connections));

    // A key limited to one context sees that context's numbers only.
    let other = key(&app, Role::Admin, Some("other")).await;
    let text = scrape(&app, &other).await;
    assert_eq!(value(&text, "voxmail_messages"), Some(1.0));
    assert_eq!(
        value(&text, "voxmail_context_messages{context=\"default\"}"),
        None
    );
    assert_eq!(
        value(&text, "voxmail_context_messages{context=\"other\"}"),
        Some(1.0)
    );
}

#[tokio::test]
async fn metrics_need_an_admin_key() {
    let app = TestApp::spawn().await;
    let r = app.client.get(app.url("/metrics")).send().await.unwrap();
    assert_problem(r, 401, "unauthorized").await;
    let pbx = key(&app, Role::Pbx, None).await;
    let r = send_as(&app, reqwest::Method::GET, "/metrics", &pbx).await;
    assert_problem(r, 403, "forbidden").await;
}

#[tokio::test]
async fn a_retry_makes_a_failing_delivery_due_at_once() {
    // A failed delivery would wait a minute before its next try.
    let (app, rx) = a_deposit_whose_webhook_fails_once(60_000).await;
    let retrying = "voxmail_queue_tries_total{queue=\"webhook\",outcome=\"retrying\"}";
    scrape_until(&app, &app.admin, |t| value(t, retrying) == Some(1.0)).await;

    let queues = |app: &TestApp| {
        let r = app.get("/v1/queues").send();
        async move {
            let v: serde_json::Value = r.await.unwrap().json().await.unwrap();
            v["items"].as_array().unwrap().clone()
        }
    };
    let deadline = tokio::time::Instant::now() + WAIT;
    let webhook = loop {
        let items = queues(&app).await;
        let names: Vec<_> = items.iter().map(|q| q["queue"].as_str().unwrap()).collect();
        assert_eq!(names, ["email", "webhook", "mwi", "asterisk"]);
        let w = items[1].clone();
        if w["failing"] == 1 || tokio::time::Instant::now() > deadline {
            break w;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(webhook["pending"], 1, "{webhook}");
    assert_eq!(webhook["failing"], 1, "{webhook}");
    assert!(
        webhook["last_error"].as_str().unwrap().contains("500"),
        "{webhook}"
    );
    assert!(rx.received().await.is_empty());

    // A key of another context makes nothing of this one due.
    app.create_context("other").await;
    let other = key(&app, Role::Admin, Some("other")).await;
    let r = send_as(
        &app,
        reqwest::Method::POST,
        "/v1/queues/webhook/retry",
        &other,
    )
    .await;
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body, json!({"queue": "webhook", "due": 0}));

    let r = app.post("/v1/queues/webhook/retry").send().await.unwrap();
    assert_eq!(r.status(), 200);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body, json!({"queue": "webhook", "due": 1}));
    assert_eq!(
        rx.wait_for(1, WAIT).await.len(),
        1,
        "delivered long before the minute"
    );

    let r = app.post("/v1/queues/fax/retry").send().await.unwrap();
    assert_problem(r, 404, "not-found").await;
    let pbx = key(&app, Role::Pbx, None).await;
    let r = send_as(
        &app,
        reqwest::Method::POST,
        "/v1/queues/webhook/retry",
        &pbx,
    )
    .await;
    assert_problem(r, 403, "forbidden").await;
}
