//! Concurrent deposits: maxmsg holds and msgnums stay unique.

use std::collections::BTreeSet;

use futures_util::future::join_all;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::common::{TestApp, audio};
use crate::helpers;

/// Sends `n` deposits into `address` at once; returns each status and body.
async fn deposit_at_once(app: &TestApp, address: &str, n: usize) -> Vec<(StatusCode, Value)> {
    let sends = (0..n).map(|i| {
        app.post(&format!(
            "/v1/mailboxes/{address}/messages?caller_id_num={i}"
        ))
        .header("content-type", "audio/wav")
        .body(audio::wav_ulaw(1.0))
        .send()
    });
    let mut out = Vec::new();
    for r in join_all(sends).await {
        let r = r.expect("every request gets an answer");
        out.push((r.status(), r.json::<Value>().await.unwrap()));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_concurrent_deposits_never_push_a_mailbox_past_maxmsg() {
    let app = TestApp::spawn().await;
    app.create_mailbox("1001@default", json!({"maxmsg": 10}))
        .await;
    let answers = deposit_at_once(&app, "1001@default", 20).await;
    let created = answers
        .iter()
        .filter(|(s, _)| *s == StatusCode::CREATED)
        .count();
    let full: Vec<_> = answers.iter().filter(|(s, _)| s.as_u16() == 507).collect();
    assert_eq!(created, 10, "{answers:?}");
    assert_eq!(full.len(), 10, "{answers:?}");
    for (_, p) in &full {
        assert_eq!(p["type"], "/problems/mailbox-full");
    }
    let items = helpers::list(&app, "1001@default", "").await;
    assert_eq!(items.len(), 10);
    let msgnums: BTreeSet<i64> = items
        .iter()
        .map(|m| m["msgnum"].as_i64().unwrap())
        .collect();
    assert_eq!(msgnums, (0..10).collect(), "msgnums 0..=9, each once");
    assert_eq!(app.mwi("1001@default").await["new"], 10);
    let stored = helpers::stored_audio(&app, "messages/").await;
    assert_eq!(stored.len(), 10, "refused deposits leave no audio");
    assert!(helpers::leftover_parts(&app).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn thirty_concurrent_deposits_get_thirty_distinct_msgnums() {
    let app = TestApp::spawn().await;
    app.create_mailbox("1001@default", json!({})).await;
    let answers = deposit_at_once(&app, "1001@default", 30).await;
    for (s, body) in &answers {
        assert_eq!(*s, StatusCode::CREATED, "{body}");
    }
    let answered: Vec<i64> = answers
        .iter()
        .map(|(_, m)| m["msgnum"].as_i64().unwrap())
        .collect();
    let unique: BTreeSet<i64> = answered.iter().copied().collect();
    assert_eq!(unique, (0..30).collect(), "answered msgnums {answered:?}");
    let listed: BTreeSet<i64> = helpers::list(&app, "1001@default", "")
        .await
        .iter()
        .map(|m| m["msgnum"].as_i64().unwrap())
        .collect();
    assert_eq!(listed, (0..30).collect());
    assert_eq!(app.mwi("1001@default").await["new"], 30);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_deposits_into_different_mailboxes_all_succeed() {
    let app = TestApp::spawn().await;
    let mailboxes: Vec<String> = (0..8).map(|i| format!("20{i:02}@default")).collect();
    for m in &mailboxes {
        app.create_mailbox(m, json!({"maxmsg": 3})).await;
    }
    let sends = mailboxes
        .iter()
        .flat_map(|m| (0..3).map(move |_| (m.clone(), audio::wav_ulaw(1.0))));
    let futures = sends.map(|(m, body)| {
        let req = app
            .post(&format!("/v1/mailboxes/{m}/messages"))
            .header("content-type", "audio/wav")
            .body(body);
        async move { (m, req.send().await.unwrap()) }
    });
    for (m, r) in join_all(futures).await {
        assert_eq!(r.status(), StatusCode::CREATED, "{m}");
    }
    for m in &mailboxes {
        let items = helpers::list(&app, m, "").await;
        let msgnums: BTreeSet<i64> = items
            .iter()
            .map(|x| x["msgnum"].as_i64().unwrap())
            .collect();
        assert_eq!(msgnums, (0..3).collect(), "{m}");
        assert_eq!(app.mwi(m).await["new"], 3, "{m}");
    }
}
