use std::time::Duration;

use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use voxmail::domain::Role;

use crate::common::receiver::{Received, Receiver};
use crate::common::{TestApp, assert_problem, audio};
use crate::helpers;

const WAIT: Duration = Duration::from_secs(10);
const SECRET: &str = "a-webhook-secret-of-some-length";

async fn fast_retry_app() -> TestApp {
    TestApp::spawn_with(|c| {
        c.webhooks.retry_base_ms = 100;
        c.webhooks.retry_max_ms = 400;
        c.webhooks.timeout_secs = 2;
    })
    .await
}

async fn add_webhook(app: &TestApp, context: &str, url: &str, extra: Value) -> Value {
    let mut body = json!({"context": context, "url": url, "secret": SECRET});
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    let r = app.post("/v1/webhooks").json(&body).send().await.unwrap();
    assert_eq!(r.status(), 201);
    r.json().await.unwrap()
}

fn verify(r: &Received) -> Value {
    let ts = r.headers["x-voxmail-timestamp"].to_str().unwrap();
    let sig = r.headers["x-voxmail-signature"].to_str().unwrap();
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(format!("{ts}.").as_bytes());
    mac.update(&r.body);
    let expected = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
    assert_eq!(sig, expected, "signature verifies with the shared secret");
    let age = voxmail::domain::now_secs() - ts.parse::<i64>().unwrap();
    assert!((0..60).contains(&age), "timestamp is current");
    serde_json::from_slice(&r.body).unwrap()
}

async fn deliveries(app: &TestApp, id: &str) -> Vec<Value> {
    let v = helpers::get_json(app, &format!("/v1/webhooks/{id}/deliveries")).await;
    v["items"].as_array().unwrap().clone()
}

/// The webhook's deliveries once the oldest is recorded as delivered (the record is written
/// after the receiver's answer).
async fn once_delivered(app: &TestApp, id: &str) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let d = deliveries(app, id).await;
        if d.first().is_some_and(|d| d["status"] == "delivered") {
            return d;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not recorded as delivered: {d:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn deliveries_are_signed_so_the_receiver_can_verify_them() {
    let app = fast_retry_app().await;
    let rx = Receiver::start().await;
    app.create_mailbox("1001@default", json!({})).await;
    let hook = add_webhook(&app, "default", &format!("{}/hook", rx.url), json!({})).await;
    assert_eq!(hook["secret"], SECRET, "the secret is shown on create");
    let listed = helpers::get_json(&app, "/v1/webhooks").await;
    assert!(
        listed["items"][0].get("secret").is_none(),
        "and never again"
    );

    let m = app
        .deposit_ok("1001@default", audio::wav_ulaw(1.0), "audio/wav")
        .await;
    let got = rx.wait_for(1, WAIT).await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].method, "POST");
    assert_eq!(got[0].uri.path(), "/hook");
    assert_eq!(got[0].headers["content-type"], "application/json");
    assert_eq!(got[0].headers["x-voxmail-event"], "message.deposited");
    let body = verify(&got[0]);
    assert_eq!(body["type"], "message.deposited");
    assert_eq!(body["mailbox"], "1001@default");
    assert_eq!(body["message_id"], m["id"]);
    assert_eq!(body["counts"]["new"], 1);
}

#[tokio::test]
async fn a_delivery_is_retried_after_the_receiver_fails_twice() {
    let app = fast_retry_app().await;
    let rx = Receiver::start().await;
    rx.fail_next(2);
    app.create_mailbox("1001@default", json!({})).await;
    let hook = add_webhook(&app, "default", &rx.url, json!({})).await;
    app.deposit_ok("1001@default", audio::wav_ulaw(1.0), "audio/wav")
        .await;
    let got = rx.wait_for(1, WAIT).await;
    assert_eq!(got.len(), 1, "delivered on the third try");
    verify(&got[0]);
    assert_eq!(rx.seen(), 3);
    let d = once_delivered(&app, hook["id"].as_str().unwrap()).await;
    assert_eq!(d.len(), 1);
    let statuses: Vec<i64> = d[0]["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["http_status"].as_i64().unwrap())
        .collect();
    assert_eq!(statuses, [500, 500, 200]);
    assert!(
        d[0]["attempts"][0]["error"]
            .as_str()
            .unwrap()
            .contains("500")
    );
}

#[tokio::test]
async fn a_pending_delivery_survives_a_restart() {
    let mut app = TestApp::spawn_with(|c| {
        c.webhooks.retry_base_ms = 1500;
        c.webhooks.retry_max_ms = 1500;
    })
    .await;
    let rx = Receiver::start().await;
    rx.fail_next(usize::MAX);
    app.create_mailbox("1001@default", json!({})).await;
    let hook = add_webhook(&app, "default", &rx.url, json!({})).await;
    app.deposit_ok("1001@default", audio::wav_ulaw(1.0), "audio/wav")
        .await;
    let deadline = tokio::time::Instant::now() + WAIT;
    while rx.seen() == 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(rx.seen() >= 1, "first attempt failed");
    app.restart().await;
    rx.fail_next(0);
    let got = rx.wait_for(1, WAIT).await;
    assert_eq!(got.len(), 1, "delivered by the restarted server");
    let d = once_delivered(&app, hook["id"].as_str().unwrap()).await;
    assert!(d[0]["attempt_count"].as_i64().unwrap() >= 2);
}

#[tokio::test]
async fn deliveries_of_a_mailbox_arrive_in_order_even_when_retried() {
    let app = fast_retry_app().await;
    let rx = Receiver::start().await;
    rx.fail_next(3);
    app.create_mailbox("1001@default", json!({})).await;
    add_webhook(
        &app,
        "default",
        &rx.url,
        json!({"event_types": ["message.deposited"]}),
    )
    .await;
    for _ in 0..6 {
        app.deposit_ok("1001@default", audio::raw_ulaw(0.2), "audio/PCMU")
            .await;
    }
    let got = rx.wait_for(6, WAIT).await;
    let news: Vec<u64> = got
        .iter()
        .map(|r| verify(r)["counts"]["new"].as_u64().unwrap())
        .collect();
    assert_eq!(news, [1, 2, 3, 4, 5, 6], "each event once, in order");
}

#[tokio::test]
async fn a_delivery_that_never_succeeds_is_marked_dead() {
    let app = TestApp::spawn_with(|c| {
        c.webhooks.retry_base_ms = 100;
        c.webhooks.retry_max_ms = 200;
        c.webhooks.max_age_secs = 1;
    })
    .await;
    let rx = Receiver::start().await;
    rx.fail_next(usize::MAX);
    app.create_mailbox("1001@default", json!({})).await;
    let hook = add_webhook(&app, "default", &rx.url, json!({})).await;
    app.deposit_ok("1001@default", audio::wav_ulaw(1.0), "audio/wav")
        .await;
    let id = hook["id"].as_str().unwrap().to_owned();
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let d = deliveries(&app, &id).await;
        if d.first().is_some_and(|d| d["status"] == "dead") {
            assert!(d[0]["attempt_count"].as_i64().unwrap() >= 2);
            assert_eq!(d[0]["last_status"], 500);
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never marked dead: {d:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn webhooks_are_per_context_admin_configuration() {
    let app = TestApp::spawn().await;
    let rx = Receiver::start().await;
    app.create_mailbox("1001@alpha", json!({})).await;
    app.create_mailbox("1001@beta", json!({})).await;
    let vm = app.services().await;
    let pbx = vm
        .create_api_key("pbx", Role::Pbx, Some("alpha"))
        .await
        .unwrap()
        .token;
    let alpha_admin = vm
        .create_api_key("a", Role::Admin, Some("alpha"))
        .await
        .unwrap()
        .token;

    let r = app
        .client
        .post(app.url("/v1/webhooks"))
        .bearer_auth(&pbx)
        .json(&json!({"context": "alpha", "url": rx.url}))
        .send()
        .await
        .unwrap();
    assert_problem(r, 403, "forbidden").await;
    let r = app
        .client
        .post(app.url("/v1/webhooks"))
        .bearer_auth(&alpha_admin)
        .json(&json!({"context": "beta", "url": rx.url}))
        .send()
        .await
        .unwrap();
    assert_problem(r, 404, "not-found").await;
    for bad in [
        json!({"context": "alpha", "url": "ftp://x/y"}),
        json!({"context": "alpha", "url": "not a url"}),
        json!({"context": "alpha", "url": rx.url, "event_types": ["message.exploded"]}),
        json!({"context": "alpha", "url": rx.url, "secret": "short"}),
    ] {
        let r = app.post("/v1/webhooks").json(&bad).send().await.unwrap();
        assert_problem(r, 400, "invalid-request").await;
    }

    let beta = add_webhook(&app, "beta", &rx.url, json!({})).await;
    let r = app
        .client
        .get(app.url(&format!("/v1/webhooks/{}", beta["id"].as_str().unwrap())))
        .bearer_auth(&alpha_admin)
        .send()
        .await
        .unwrap();
    assert_problem(r, 404, "not-found").await;

    // Only beta's events reach beta's webhook; a PATCH can pause it. Events are dispatched in
    // order, each to every webhook at once: when beta's deposit has reached beta's webhook,
    // alpha's earlier one has been dispatched too, and its deliveries would be recorded.
    app.deposit_ok("1001@alpha", audio::wav_ulaw(1.0), "audio/wav")
        .await;
    app.deposit_ok("1001@beta", audio::wav_ulaw(1.0), "audio/wav")
        .await;
    let got = rx.wait_for(1, WAIT).await;
    assert_eq!(verify(&got[0])["context"], "beta");
    let beta_id = beta["id"].as_str().unwrap();
    assert_eq!(deliveries(&app, beta_id).await.len(), 1);
    let path = format!("/v1/webhooks/{beta_id}");
    let r = app
        .patch(&path)
        .json(&json!({"active": false}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // A second, active webhook of beta shows when the next deposit has been dispatched.
    let sentinel = add_webhook(&app, "beta", &format!("{}/sentinel", rx.url), json!({})).await;
    app.deposit_ok("1001@beta", audio::wav_ulaw(1.0), "audio/wav")
        .await;
    once_delivered(&app, sentinel["id"].as_str().unwrap()).await;
    assert_eq!(
        deliveries(&app, beta_id).await.len(),
        1,
        "paused webhook gets nothing"
    );
    let got = rx.received().await;
    assert_eq!(got.len(), 2);
    assert_eq!(got[1].uri.path(), "/sentinel");
    let r = app.delete(&path).send().await.unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(app.get(&path).send().await.unwrap().status(), 404);
}
