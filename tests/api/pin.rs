//! PIN verification: 204 on the right PIN, 403 on a wrong one, and a lockout (429 with
//! Retry-After) after five failures that brute force, even concurrent, cannot get around.

use reqwest::{Response, StatusCode};
use serde_json::json;

use crate::common::{TestApp, assert_problem};

const MBX: &str = "1001@default";

async fn verify(app: &TestApp, address: &str, pin: &str) -> Response {
    app.post(&format!("/v1/mailboxes/{address}/pin/verify"))
        .json(&json!({ "pin": pin }))
        .send()
        .await
        .unwrap()
}

async fn assert_right(app: &TestApp, pin: &str) {
    let r = verify(app, MBX, pin).await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT, "PIN {pin} accepted");
    assert!(r.bytes().await.unwrap().is_empty());
}

async fn assert_wrong(app: &TestApp, pin: &str) {
    assert_problem(verify(app, MBX, pin).await, 403, "pin-mismatch").await;
}

/// Asserts a 429 `locked` answer; returns its Retry-After in seconds.
async fn assert_locked(r: Response) -> u64 {
    let retry_after = r
        .headers()
        .get("retry-after")
        .expect("a locked answer carries Retry-After")
        .to_str()
        .unwrap()
        .parse::<u64>()
        .expect("Retry-After is whole seconds");
    assert_problem(r, 429, "locked").await;
    retry_after
}

async fn app_with_pin() -> TestApp {
    let app = TestApp::spawn().await;
    app.create_mailbox(MBX, json!({"pin": "1234"})).await;
    app
}

#[tokio::test]
async fn the_right_pin_is_204_and_a_wrong_one_is_403() {
    let app = app_with_pin().await;
    assert_right(&app, "1234").await;
    for wrong in ["4321", "12345", "123", "", "abcd"] {
        assert_problem(verify(&app, MBX, wrong).await, 403, "pin-mismatch").await;
        // Reset the count so this loop never reaches the lockout.
        assert_right(&app, "1234").await;
    }
    let r = verify(&app, "9999@default", "1234").await;
    assert_problem(r, 404, "not-found").await;
}

#[tokio::test]
async fn a_malformed_verify_body_is_400_and_does_not_count() {
    let app = app_with_pin().await;
    for body in [json!({}), json!({"pin": 1234}), json!({"pin": "1", "x": 1})] {
        let r = app
            .post(&format!("/v1/mailboxes/{MBX}/pin/verify"))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_problem(r, 400, "invalid-request").await;
    }
    for _ in 0..3 {
        let r = app
            .post(&format!("/v1/mailboxes/{MBX}/pin/verify"))
            .header("content-type", "application/json")
            .body("{pin")
            .send()
            .await
            .unwrap();
        assert_problem(r, 400, "invalid-request").await;
    }
    // Five real failures are still allowed before the lock: the bad bodies were not attempts.
    for _ in 0..4 {
        assert_wrong(&app, "0000").await;
    }
    assert_right(&app, "1234").await;
}

#[tokio::test]
async fn after_five_failures_even_the_right_pin_is_locked_out() {
    let app = app_with_pin().await;
    app.create_mailbox("1002@default", json!({"pin": "5678"}))
        .await;
    for _ in 0..5 {
        assert_wrong(&app, "0000").await;
    }
    let retry = assert_locked(verify(&app, MBX, "1234").await).await;
    assert!(
        (1..=900).contains(&retry),
        "Retry-After {retry} is within the 15-minute lock"
    );
    assert!(
        retry >= 890,
        "the lock lasts about 15 minutes, not {retry} s"
    );
    assert_locked(verify(&app, MBX, "0000").await).await;
    assert_locked(verify(&app, MBX, "1234").await).await;

    // Another mailbox is not affected.
    let r = verify(&app, "1002@default", "5678").await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_concurrent_wrong_attempts_check_at_most_five() {
    let app = app_with_pin().await;
    let url = app.url(&format!("/v1/mailboxes/{MBX}/pin/verify"));
    let mut tasks = Vec::new();
    for i in 0..20 {
        let client = app.client.clone();
        let url = url.clone();
        let token = app.admin.clone();
        tasks.push(tokio::spawn(async move {
            client
                .post(url)
                .bearer_auth(token)
                .json(&json!({"pin": format!("{:04}", 5000 + i)}))
                .send()
                .await
                .unwrap()
        }));
    }
    let mut mismatches = 0;
    let mut locked = 0;
    for t in tasks {
        let r = t.await.unwrap();
        match r.status().as_u16() {
            403 => {
                assert_problem(r, 403, "pin-mismatch").await;
                mismatches += 1;
            }
            429 => {
                assert_locked(r).await;
                locked += 1;
            }
            other => panic!(
                "a concurrent attempt answered {other}: {}",
                r.text().await.unwrap()
            ),
        }
    }
    assert_eq!(
        mismatches, 5,
        "exactly five attempts were checked ({locked} locked)"
    );
    assert_eq!(locked, 15);
    assert_locked(verify(&app, MBX, "1234").await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_right_and_wrong_attempts_still_check_at_most_five_wrong_ones() {
    let app = app_with_pin().await;
    let url = app.url(&format!("/v1/mailboxes/{MBX}/pin/verify"));
    let mut tasks = Vec::new();
    for i in 0..30 {
        let client = app.client.clone();
        let url = url.clone();
        let token = app.admin.clone();
        tasks.push(tokio::spawn(async move {
            client
                .post(url)
                .bearer_auth(token)
                .json(&json!({"pin": format!("{:04}", 5000 + i)}))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }));
    }
    let mut checked = 0;
    for t in tasks {
        match t.await.unwrap() {
            403 => checked += 1,
            429 => {}
            other => panic!("a concurrent attempt answered {other}"),
        }
    }
    assert!(checked <= 5, "{checked} wrong PINs were checked");
    assert_locked(verify(&app, MBX, "1234").await).await;
}

#[tokio::test]
async fn a_success_resets_the_failure_count() {
    let app = app_with_pin().await;
    for _ in 0..4 {
        assert_wrong(&app, "0000").await;
    }
    assert_right(&app, "1234").await;
    for _ in 0..4 {
        assert_wrong(&app, "0000").await;
    }
    assert_right(&app, "1234").await;
    // The count starts again: five failures lock.
    for _ in 0..5 {
        assert_wrong(&app, "0000").await;
    }
    assert_locked(verify(&app, MBX, "1234").await).await;
}

#[tokio::test]
async fn a_mailbox_without_a_pin_refuses_every_pin() {
    let app = TestApp::spawn().await;
    app.create_mailbox(MBX, json!({})).await;
    for pin in ["", "0", "1234"] {
        assert_wrong(&app, pin).await;
    }
}

#[tokio::test]
async fn the_lock_ends_after_the_lockout() {
    // Long enough that a loaded machine still answers the next attempt inside the lock.
    let app = TestApp::spawn_with(|c| c.pin.lockout_secs = 3).await;
    app.create_mailbox(MBX, json!({"pin": "1234"})).await;
    for _ in 0..5 {
        assert_wrong(&app, "0000").await;
    }
    let retry = assert_locked(verify(&app, MBX, "1234").await).await;
    assert!((1..=3).contains(&retry), "Retry-After {retry}");
    tokio::time::sleep(std::time::Duration::from_millis(3200)).await;
    assert_right(&app, "1234").await;
    // After the lock the count starts from zero.
    for _ in 0..5 {
        assert_wrong(&app, "0000").await;
    }
    assert_locked(verify(&app, MBX, "1234").await).await;
}

#[tokio::test]
async fn failures_older_than_the_window_do_not_count() {
    let app = TestApp::spawn_with(|c| c.pin.window_secs = 1).await;
    app.create_mailbox(MBX, json!({"pin": "1234"})).await;
    for _ in 0..4 {
        assert_wrong(&app, "0000").await;
    }
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    for _ in 0..4 {
        assert_wrong(&app, "0000").await;
    }
    assert_right(&app, "1234").await;
}
