//! A restart (graceful stop, start on the same data directory) keeps everything.

use std::collections::BTreeMap;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::common::{TestApp, audio};
use crate::helpers;

/// Everything observable about the stored messages, greetings and MWI of some mailboxes.
#[derive(Debug, PartialEq)]
struct Snapshot {
    messages: BTreeMap<String, Value>,
    audio_sha256: BTreeMap<String, String>,
    mwi: BTreeMap<String, Value>,
    greeting: Value,
    greeting_sha256: String,
}

const MAILBOXES: [&str; 3] = ["1001@default", "1002@default", "3001@branch"];

async fn snapshot(app: &TestApp) -> Snapshot {
    let mut messages = BTreeMap::new();
    let mut audio_sha256 = BTreeMap::new();
    let mut mwi = BTreeMap::new();
    for address in MAILBOXES {
        for m in helpers::list(app, address, "").await {
            let id = helpers::id_of(&m);
            let bytes = helpers::audio_of(app, address, &id).await;
            audio_sha256.insert(id.clone(), audio::sha256_hex(&bytes));
            messages.insert(id, m);
        }
        mwi.insert(address.to_owned(), app.mwi(address).await);
    }
    let g = app.get("/v1/mailboxes/1001@default/greetings/unavailable");
    let greeting = g
        .header("accept", "application/json")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let bytes = app
        .get("/v1/mailboxes/1001@default/greetings/unavailable")
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    Snapshot {
        messages,
        audio_sha256,
        mwi,
        greeting,
        greeting_sha256: audio::sha256_hex(&bytes),
    }
}

#[tokio::test]
async fn a_restart_keeps_every_message_audio_byte_and_mwi_count() {
    let mut app = TestApp::spawn().await;
    for address in MAILBOXES {
        app.create_mailbox(address, json!({"fullname": address}))
            .await;
    }
    let uploads: Vec<(&str, Vec<u8>, &str, &str)> = vec![
        (
            "1001@default",
            audio::wav_ulaw(1.0),
            "audio/wav",
            "?caller_id_num=100",
        ),
        (
            "1001@default",
            audio::wav_alaw(1.5),
            "audio/wav",
            "?urgent=true",
        ),
        (
            "1001@default",
            audio::raw_ulaw(2.0),
            "audio/PCMU",
            "?category=x",
        ),
        (
            "1002@default",
            audio::wav_pcm16(1.0, 16000),
            "audio/wav",
            "",
        ),
        (
            "1002@default",
            audio::raw_alaw(0.5),
            "audio/PCMA",
            "?priority=4",
        ),
        (
            "3001@branch",
            audio::wav_ulaw_fmt16(1.0),
            "audio/wav",
            "?orig_time=1600000000",
        ),
    ];
    let mut uploaded = BTreeMap::new();
    for (address, body, ct, query) in uploads {
        let r = app.deposit(address, body.clone(), ct, query).await;
        assert_eq!(r.status(), StatusCode::CREATED);
        let m: Value = r.json().await.unwrap();
        uploaded.insert(helpers::id_of(&m), audio::sha256_hex(&body));
    }
    // Some state changes, so more than fresh deposits survive.
    let first = helpers::list(&app, "1001@default", "").await;
    let r = app
        .patch(&format!(
            "/v1/mailboxes/1001@default/messages/{}",
            helpers::id_of(&first[0])
        ))
        .json(&json!({"read": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = app
        .put("/v1/mailboxes/1001@default/greetings/unavailable")
        .header("content-type", "audio/wav")
        .body(audio::wav_ulaw(1.0))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let idem = app
        .post("/v1/mailboxes/1002@default/messages")
        .header("content-type", "audio/wav")
        .header("idempotency-key", "before-restart")
        .body(audio::wav_ulaw(1.0))
        .send()
        .await
        .unwrap();
    assert_eq!(idem.status(), StatusCode::CREATED);
    let idem: Value = idem.json().await.unwrap();

    let before = snapshot(&app).await;
    assert_eq!(before.messages.len(), 7);
    for (id, sha) in &uploaded {
        assert_eq!(&before.audio_sha256[id], sha, "stored as uploaded");
    }
    let old_base = app.base.clone();

    app.restart().await;
    assert_ne!(app.base, old_base, "a new server on a new port");

    let after = snapshot(&app).await;
    assert_eq!(after, before);

    // The admin key still works, and so does everything else.
    let r = app.get("/v1/mailboxes?limit=10").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let mailboxes: Value = r.json().await.unwrap();
    assert_eq!(mailboxes["items"].as_array().unwrap().len(), 3);
    let retry = app
        .post("/v1/mailboxes/1002@default/messages")
        .header("content-type", "audio/wav")
        .header("idempotency-key", "before-restart")
        .body(audio::wav_ulaw(1.0))
        .send()
        .await
        .unwrap();
    assert_eq!(
        retry.status(),
        StatusCode::OK,
        "the idempotency key survives"
    );
    assert_eq!(retry.json::<Value>().await.unwrap()["id"], idem["id"]);
    let next = app
        .deposit_ok("1001@default", audio::wav_ulaw(1.0), "audio/wav")
        .await;
    assert_eq!(next["msgnum"], 1, "msgnums continue after the restart");
    let mwi = app.mwi("1001@default").await;
    assert!(mwi["version"].as_i64() > before.mwi["1001@default"]["version"].as_i64());
}
