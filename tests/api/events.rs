use std::collections::HashMap;
use std::time::Duration;

use serde_json::{Value, json};
use voxmail::domain::Role;

use crate::common::receiver::Receiver;
use crate::common::sse::SseClient;
use crate::common::{TestApp, assert_problem, audio};

const WAIT: Duration = Duration::from_secs(5);

fn events_url(app: &TestApp, query: &str) -> String {
    app.url(&format!("/v1/events{query}"))
}

#[tokio::test]
async fn every_kind_of_change_streams_an_event_with_counts_and_a_growing_version() {
    let app = TestApp::spawn().await;
    app.create_mailbox("1001@default", json!({})).await;
    app.create_mailbox("1002@default", json!({})).await;
    let mut sse =
        SseClient::connect(&events_url(&app, "?mailbox=1001@default"), &app.admin, None).await;
    assert_eq!(sse.status, 200);

    let m = app
        .deposit_ok("1001@default", audio::wav_ulaw(1.0), "audio/wav")
        .await;
    let id = m["id"].as_str().unwrap().to_owned();
    let msg = format!("/v1/mailboxes/1001@default/messages/{id}");
    let urgent = app
        .deposit(
            "1001@default",
            audio::raw_ulaw(1.0),
            "audio/PCMU",
            "?urgent=true",
        )
        .await;
    assert_eq!(urgent.status(), 201);
    app.patch(&msg)
        .json(&json!({"read": true}))
        .send()
        .await
        .unwrap();
    app.patch(&msg)
        .json(&json!({"folder": "Work"}))
        .send()
        .await
        .unwrap();
    app.post(&format!("{msg}/forward"))
        .json(&json!({"to": ["1002@default"]}))
        .send()
        .await
        .unwrap();
    app.put("/v1/mailboxes/1001@default/greetings/busy")
        .header("content-type", "audio/wav")
        .body(audio::wav_ulaw(0.5))
        .send()
        .await
        .unwrap();
    app.delete("/v1/mailboxes/1001@default/greetings/busy")
        .send()
        .await
        .unwrap();
    app.delete(&msg).send().await.unwrap();

    let got = sse.take(7, WAIT).await;
    let kinds: Vec<&str> = got.iter().map(|e| e.event.as_str()).collect();
    assert_eq!(
        kinds,
        [
            "message.deposited",
            "message.deposited",
            "message.moved",
            "message.moved",
            "greeting.changed",
            "greeting.deleted",
            "message.deleted"
        ],
        "the forward's deposit goes to 1002 and is filtered out"
    );
    let counts: Vec<(u64, u64, u64)> = got
        .iter()
        .map(|e| {
            let c = &e.json()["counts"];
            (
                c["new"].as_u64().unwrap(),
                c["old"].as_u64().unwrap(),
                c["urgent_new"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        counts,
        [
            (1, 0, 0),
            (2, 0, 1),
            (1, 1, 1),
            (1, 0, 1),
            (1, 0, 1),
            (1, 0, 1),
            (1, 0, 1)
        ]
    );
    let versions: Vec<i64> = got
        .iter()
        .map(|e| e.json()["version"].as_i64().unwrap())
        .collect();
    assert!(
        versions.windows(2).all(|w| w[0] < w[1]),
        "versions grow: {versions:?}"
    );
    let ids: Vec<i64> = got
        .iter()
        .map(|e| e.id.as_ref().unwrap().parse().unwrap())
        .collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids grow: {ids:?}");
    assert_eq!(got[0].json()["mailbox"], "1001@default");
    assert_eq!(got[0].json()["message_id"], Value::String(id.clone()));
    let mwi = app.mwi("1001@default").await;
    assert_eq!(mwi["version"], got[6].json()["version"]);
}

#[tokio::test]
async fn last_event_id_replays_what_a_disconnected_pbx_missed() {
    let app = TestApp::spawn().await;
    app.create_mailbox("1001@default", json!({})).await;
    let mut sse = SseClient::connect(&events_url(&app, ""), &app.admin, None).await;
    app.deposit_ok("1001@default", audio::wav_ulaw(1.0), "audio/wav")
        .await;
    let first = sse.next(WAIT).await.expect("first event");
    drop(sse);

    for _ in 0..3 {
        app.deposit_ok("1001@default", audio::wav_ulaw(1.0), "audio/wav")
            .await;
    }
    let mut again =
        SseClient::connect(&events_url(&app, ""), &app.admin, first.id.as_deref()).await;
    let missed = again.take(3, WAIT).await;
    let news: Vec<u64> = missed
        .iter()
        .map(|e| e.json()["counts"]["new"].as_u64().unwrap())
        .collect();
    assert_eq!(
        news,
        [2, 3, 4],
        "exactly the three missed deposits, in order"
    );
    // And it goes on live after the replay.
    app.deposit_ok("1001@default", audio::wav_ulaw(1.0), "audio/wav")
        .await;
    let live = again.next(WAIT).await.expect("live event");
    assert_eq!(live.json()["counts"]["new"], 5);
    assert!(
        again.next(Duration::from_millis(300)).await.is_none(),
        "no duplicates"
    );
}

#[tokio::test]
async fn replay_survives_a_server_restart() {
    let mut app = TestApp::spawn().await;
    app.create_mailbox("1001@default", json!({})).await;
    let mut sse = SseClient::connect(&events_url(&app, ""), &app.admin, None).await;
    app.deposit_ok("1001@default", audio::wav_ulaw(1.0), "audio/wav")
        .await;
    let first = sse.next(WAIT).await.expect("first event");
    drop(sse);
    app.deposit_ok("1001@default", audio::wav_ulaw(1.0), "audio/wav")
        .await;
    app.restart().await;
    app.deposit_ok("1001@default", audio::wav_ulaw(1.0), "audio/wav")
        .await;
    let mut again =
        SseClient::connect(&events_url(&app, ""), &app.admin, first.id.as_deref()).await;
    let got = again.take(2, WAIT).await;
    let news: Vec<u64> = got
        .iter()
        .map(|e| e.json()["counts"]["new"].as_u64().unwrap())
        .collect();
    assert_eq!(news, [2, 3]);
}

#[tokio::test]
async fn a_key_for_one_context_never_sees_another_contexts_events() {
    let app = TestApp::spawn().await;
    app.create_mailbox("1001@alpha", json!({})).await;
    app.create_mailbox("1001@beta", json!({})).await;
    let vm = app.services().await;
    let alpha = vm
        .create_api_key("alpha pbx", Role::Pbx, Some("alpha"))
        .await
        .unwrap()
        .token;

    let mut sse = SseClient::connect(&events_url(&app, ""), &alpha, None).await;
    app.deposit_ok("1001@beta", audio::wav_ulaw(1.0), "audio/wav")
        .await;
    app.deposit_ok("1001@alpha", audio::wav_ulaw(1.0), "audio/wav")
        .await;
    let got = sse.take(2, Duration::from_secs(2)).await;
    assert_eq!(got.len(), 1, "only alpha's event: {got:?}");
    assert_eq!(got[0].json()["mailbox"], "1001@alpha");

    // Replay from the beginning is filtered by scope too.
    let mut replay = SseClient::connect(&events_url(&app, ""), &alpha, Some("0")).await;
    let all = replay.take(10, Duration::from_secs(2)).await;
    assert!(!all.is_empty());
    assert!(
        all.iter().all(|e| e.json()["context"] == "alpha"),
        "{all:?}"
    );

    let r = app
        .client
        .get(events_url(&app, "?context=beta"))
        .bearer_auth(&alpha)
        .send()
        .await
        .unwrap();
    assert_problem(r, 404, "not-found").await;
    let r = app
        .client
        .get(events_url(&app, "?mailbox=1001@beta"))
        .bearer_auth(&alpha)
        .send()
        .await
        .unwrap();
    assert_problem(r, 404, "not-found").await;
    let r = app.client.get(events_url(&app, "")).send().await.unwrap();
    assert_problem(r, 401, "unauthorized").await;
    let r = app
        .client
        .get(events_url(&app, ""))
        .bearer_auth(&app.admin)
        .header("last-event-id", "banana")
        .send()
        .await
        .unwrap();
    assert_problem(r, 400, "invalid-request").await;
}

#[tokio::test]
async fn concurrent_changes_end_with_every_consumers_last_counts_equal_to_the_store() {
    let app = TestApp::spawn_with(|c| {
        c.webhooks.retry_base_ms = 100;
        c.mwi.retry_base_ms = 100;
        // A whole cluster's deposits from this one address and key.
        c.http.max_uploads_per_key = 0;
        c.http.max_uploads_per_source = 0;
    })
    .await;
    let boxes: Vec<String> = (0..50).map(|i| format!("{}@load", 2000 + i)).collect();
    for b in &boxes {
        app.create_mailbox(b, json!({"maxmsg": 100})).await;
    }
    let hook_rx = Receiver::start().await;
    let ari = Receiver::start().await;
    let r = app
        .post("/v1/webhooks")
        .json(&json!({"context": "load", "url": hook_rx.url}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let r = app
        .post("/v1/mwi-targets")
        .json(&json!({"context": "load", "kind": "ari", "url": ari.url}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let mut sse = SseClient::connect(&events_url(&app, "?context=load"), &app.admin, None).await;
    let base = app.base.clone();
    let token = app.admin.clone();
    let mut tasks = Vec::new();
    for i in 0..500 {
        let b = boxes[i % boxes.len()].clone();
        let base = base.clone();
        let token = token.clone();
        tasks.push(tokio::spawn(async move {
            let c = reqwest::Client::new();
            let r = c
                .post(format!("{base}/v1/mailboxes/{b}/messages"))
                .bearer_auth(&token)
                .header("content-type", "audio/PCMU")
                .body(audio::raw_ulaw(0.2))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 201);
            let m: Value = r.json().await.unwrap();
            if i % 3 == 0 {
                let r = c
                    .patch(format!(
                        "{base}/v1/mailboxes/{b}/messages/{}",
                        m["id"].as_str().unwrap()
                    ))
                    .bearer_auth(&token)
                    .json(&json!({"read": true}))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 200);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let expected_events = 500 + 500_usize.div_ceil(3);
    let got = sse.take(expected_events, Duration::from_secs(30)).await;
    assert_eq!(got.len(), expected_events);
    let mut last: HashMap<String, Value> = HashMap::new();
    for e in &got {
        let j = e.json();
        last.insert(j["mailbox"].as_str().unwrap().to_owned(), j);
    }
    for b in &boxes {
        let mwi = app.mwi(b).await;
        let seen = &last[b];
        assert_eq!(seen["counts"]["new"], mwi["new"], "{b}");
        assert_eq!(seen["counts"]["old"], mwi["old"], "{b}");
        assert_eq!(seen["version"], mwi["version"], "{b}");
    }

    // Webhooks: every event once, in order per mailbox, so the last one per mailbox is the store's.
    let hooks = hook_rx
        .wait_for(expected_events, Duration::from_secs(60))
        .await;
    assert_eq!(hooks.len(), expected_events);
    let mut last_hook: HashMap<String, Value> = HashMap::new();
    for h in &hooks {
        let j: Value = serde_json::from_slice(&h.body).unwrap();
        last_hook.insert(j["mailbox"].as_str().unwrap().to_owned(), j);
    }
    // ARI: pushes coalesce; the newest push per mailbox converges on the store's counts.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let mut last_ari: HashMap<String, (String, String)> = HashMap::new();
        for r in ari.received().await {
            let q: HashMap<String, String> = r
                .uri
                .query()
                .unwrap_or("")
                .split('&')
                .filter_map(|kv| kv.split_once('='))
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect();
            let mbox = r
                .uri
                .path()
                .trim_start_matches("/ari/mailboxes/")
                .to_owned();
            last_ari.insert(mbox, (q["newMessages"].clone(), q["oldMessages"].clone()));
        }
        let mut all_match = true;
        for b in &boxes {
            let mwi = app.mwi(b).await;
            assert_eq!(last_hook[b]["counts"]["new"], mwi["new"], "webhook {b}");
            assert_eq!(last_hook[b]["counts"]["old"], mwi["old"], "webhook {b}");
            let want = (mwi["new"].to_string(), mwi["old"].to_string());
            all_match &= last_ari.get(b) == Some(&want);
        }
        if all_match {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "ARI lamps never converged"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
