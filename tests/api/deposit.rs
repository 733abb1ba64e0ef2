use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::common::{TestApp, assert_problem, audio};

#[tokio::test]
async fn deposit_stores_ulaw_wav_byte_for_byte_and_lights_mwi() {
    let app = TestApp::spawn().await;
    app.create_mailbox("1001@default", json!({"fullname": "Alice"}))
        .await;
    let wav = audio::wav_ulaw(2.0);
    let r = app
        .deposit(
            "1001@default",
            wav.clone(),
            "audio/wav",
            "?caller_id_num=5551234&caller_id_name=Bob&exten=1001&priority=2",
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let location = r.headers()["location"].to_str().unwrap().to_owned();
    let m: Value = r.json().await.unwrap();
    assert_eq!(m["folder"], "INBOX");
    assert_eq!(m["duration"], 2);
    assert_eq!(m["duration_ms"], 2000);
    assert_eq!(m["msgnum"], 0);
    assert_eq!(m["callerid"], "\"Bob\" <5551234>");
    assert_eq!(m["priority"], 2);
    assert_eq!(m["audio"]["codec"], "pcm_mulaw");
    assert_eq!(m["audio"]["size"], wav.len());
    assert_eq!(m["audio"]["sha256"], audio::sha256_hex(&wav));
    assert_eq!(
        location,
        format!(
            "/v1/mailboxes/1001@default/messages/{}",
            m["id"].as_str().unwrap()
        )
    );

    let got = app.get(&format!("{location}/audio")).send().await.unwrap();
    assert_eq!(got.status(), StatusCode::OK);
    assert_eq!(got.headers()["content-type"], "audio/wav");
    assert_eq!(got.bytes().await.unwrap().to_vec(), wav);

    let mwi = app.mwi("1001@default").await;
    assert_eq!(mwi["new"], 1);
    assert_eq!(mwi["old"], 0);
}

#[tokio::test]
async fn garbage_with_a_wav_content_type_is_corrupt_audio_and_stores_nothing() {
    let app = TestApp::spawn().await;
    app.create_mailbox("1001@default", json!({})).await;
    let r = app
        .deposit(
            "1001@default",
            b"this is not audio at all".to_vec(),
            "audio/wav",
            "",
        )
        .await;
    assert_problem(r, 422, "corrupt-audio").await;
    assert_eq!(app.mwi("1001@default").await["new"], 0);
}
