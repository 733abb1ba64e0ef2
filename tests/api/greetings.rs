//! Greetings: unavailable, busy, temp and name recordings, stored and served byte for byte.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::common::{TestApp, assert_problem, audio};
use crate::helpers;

const MBX: &str = "1001@default";
const KINDS: [&str; 4] = ["unavailable", "busy", "temp", "name"];

fn url(kind: &str) -> String {
    format!("/v1/mailboxes/{MBX}/greetings/{kind}")
}

async fn put(app: &TestApp, kind: &str, body: Vec<u8>, ct: &str) -> reqwest::Response {
    app.put(&url(kind))
        .header("content-type", ct)
        .body(body)
        .send()
        .await
        .unwrap()
}

async fn greeting_files(app: &TestApp) -> Vec<String> {
    helpers::stored_audio(app, "greetings/").await
}

#[tokio::test]
async fn every_greeting_kind_is_stored_and_served_byte_for_byte() {
    let app = TestApp::spawn().await;
    app.create_mailbox(MBX, json!({})).await;
    let bodies = [
        (audio::wav_ulaw(1.0), "audio/wav", "wav_ulaw"),
        (audio::wav_pcm16(0.5, 16000), "audio/wav", "wav_pcm"),
        (audio::raw_ulaw(1.5), "audio/PCMU", "raw_ulaw"),
        (audio::raw_alaw(0.75), "audio/PCMA", "raw_alaw"),
    ];
    for (kind, (body, ct, format)) in KINDS.iter().zip(bodies.iter()) {
        let r = put(&app, kind, body.clone(), ct).await;
        assert_eq!(r.status(), StatusCode::CREATED, "{kind}");
        let g: Value = r.json().await.unwrap();
        assert_eq!(g["kind"], *kind);
        assert_eq!(g["audio"]["format"], *format);
        assert_eq!(g["audio"]["size"], body.len());
        assert_eq!(g["audio"]["sha256"], audio::sha256_hex(body));
    }
    for (kind, (body, ct, _)) in KINDS.iter().zip(bodies.iter()) {
        let r = app.get(&url(kind)).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{kind}");
        let served_ct = if *ct == "audio/wav" { "audio/wav" } else { *ct };
        assert_eq!(r.headers()["content-type"], served_ct);
        assert_eq!(r.bytes().await.unwrap().to_vec(), *body, "{kind}");

        let r = app
            .get(&url(kind))
            .header("accept", "application/json")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        let g: Value = r.json().await.unwrap();
        assert_eq!(g["kind"], *kind);
        assert_eq!(g["audio"]["sha256"], audio::sha256_hex(body));
    }
    let durations: Vec<i64> = {
        let mut v = Vec::new();
        for kind in KINDS {
            let r = app
                .get(&url(kind))
                .header("accept", "application/json")
                .send()
                .await
                .unwrap();
            v.push(
                r.json::<Value>().await.unwrap()["duration_ms"]
                    .as_i64()
                    .unwrap(),
            );
        }
        v
    };
    assert_eq!(durations, vec![1000, 500, 1500, 750]);
    assert_eq!(greeting_files(&app).await.len(), 4);
    // Greetings are not messages.
    assert!(helpers::list(&app, MBX, "").await.is_empty());
    assert_eq!(app.mwi(MBX).await["new"], 0);
}

#[tokio::test]
async fn replacing_a_greeting_is_200_and_removes_the_old_audio() {
    let app = TestApp::spawn().await;
    app.create_mailbox(MBX, json!({})).await;
    let first = audio::wav_ulaw(1.0);
    let second = audio::wav_alaw(2.0);
    assert_eq!(
        put(&app, "busy", first.clone(), "audio/wav").await.status(),
        StatusCode::CREATED
    );
    let old_files = greeting_files(&app).await;
    assert_eq!(old_files.len(), 1);

    let r = put(&app, "busy", second.clone(), "audio/wav").await;
    assert_eq!(r.status(), StatusCode::OK, "a replacement is 200");
    let g: Value = r.json().await.unwrap();
    assert_eq!(g["audio"]["format"], "wav_alaw");
    assert_eq!(g["duration_ms"], 2000);

    let now = greeting_files(&app).await;
    assert_eq!(now.len(), 1, "only the new recording is kept: {now:?}");
    assert!(
        !now.contains(&old_files[0]),
        "the replaced audio is removed"
    );
    let r = app.get(&url("busy")).send().await.unwrap();
    assert_eq!(r.bytes().await.unwrap().to_vec(), second);
}

#[tokio::test]
async fn greeting_audio_serves_ranges_and_304() {
    let app = TestApp::spawn().await;
    app.create_mailbox(MBX, json!({})).await;
    let wav = audio::wav_pcm16(1.0, 8000);
    let size = wav.len();
    put(&app, "temp", wav.clone(), "audio/wav").await;

    let r = app
        .get(&url("temp"))
        .header("range", "bytes=0-43")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(
        r.headers()["content-range"],
        format!("bytes 0-43/{size}").as_str()
    );
    assert_eq!(r.bytes().await.unwrap().to_vec(), wav[..44].to_vec());

    let r = app
        .get(&url("temp"))
        .header("range", "bytes=-100")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(
        r.bytes().await.unwrap().to_vec(),
        wav[size - 100..].to_vec()
    );

    let r = app
        .get(&url("temp"))
        .header("range", "bytes=999999-")
        .send()
        .await
        .unwrap();
    let content_range = r.headers().get("content-range").cloned();
    assert_problem(r, 416, "range-not-satisfiable").await;
    assert_eq!(
        content_range.unwrap().to_str().unwrap(),
        format!("bytes */{size}")
    );

    let etag = app.get(&url("temp")).send().await.unwrap().headers()["etag"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(etag, format!("\"{}\"", audio::sha256_hex(&wav)));
    let r = app
        .get(&url("temp"))
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_MODIFIED);
}

#[tokio::test]
async fn deleting_a_greeting_is_204_then_404() {
    let app = TestApp::spawn().await;
    app.create_mailbox(MBX, json!({})).await;
    put(&app, "name", audio::wav_ulaw(1.0), "audio/wav").await;
    put(&app, "unavailable", audio::wav_ulaw(1.0), "audio/wav").await;
    let r = app.delete(&url("name")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_problem(
        app.get(&url("name")).send().await.unwrap(),
        404,
        "not-found",
    )
    .await;
    assert_problem(
        app.delete(&url("name")).send().await.unwrap(),
        404,
        "not-found",
    )
    .await;
    let left = greeting_files(&app).await;
    assert_eq!(
        left.len(),
        1,
        "the deleted greeting's audio is gone: {left:?}"
    );
    assert!(left[0].contains("unavailable"));
    assert_eq!(
        app.get(&url("unavailable")).send().await.unwrap().status(),
        StatusCode::OK
    );
    // A greeting can be recorded again after deletion.
    assert_eq!(
        put(&app, "name", audio::wav_ulaw(1.0), "audio/wav")
            .await
            .status(),
        StatusCode::CREATED
    );
}

#[tokio::test]
async fn an_unknown_greeting_kind_is_404() {
    let app = TestApp::spawn().await;
    app.create_mailbox(MBX, json!({})).await;
    for kind in ["voicemail", "Unavail", "busy2", "greet"] {
        assert_problem(
            put(&app, kind, audio::wav_ulaw(1.0), "audio/wav").await,
            404,
            "not-found",
        )
        .await;
        assert_problem(app.get(&url(kind)).send().await.unwrap(), 404, "not-found").await;
        assert_problem(
            app.delete(&url(kind)).send().await.unwrap(),
            404,
            "not-found",
        )
        .await;
    }
    assert!(greeting_files(&app).await.is_empty());
}

#[tokio::test]
async fn bad_greeting_audio_is_refused_and_keeps_the_current_greeting() {
    let app = TestApp::spawn().await;
    app.create_mailbox(MBX, json!({})).await;
    let good = audio::wav_ulaw(1.0);
    put(&app, "unavailable", good.clone(), "audio/wav").await;
    let mut truncated = audio::wav_ulaw(1.0);
    truncated.truncate(2000);
    for body in [b"garbage".to_vec(), truncated, Vec::new()] {
        assert_problem(
            put(&app, "unavailable", body, "audio/wav").await,
            422,
            "corrupt-audio",
        )
        .await;
    }
    assert_problem(
        put(
            &app,
            "unavailable",
            b"OggS\0\x02\0\0\0\0\0\0\0\0".to_vec(),
            "audio/wav",
        )
        .await,
        422,
        "corrupt-audio",
    )
    .await;
    assert_problem(
        put(
            &app,
            "unavailable",
            b"#!AMR\n0000000000".to_vec(),
            "audio/wav",
        )
        .await,
        415,
        "unsupported-audio",
    )
    .await;
    assert_problem(
        put(&app, "unavailable", good.clone(), "text/plain").await,
        415,
        "unsupported-media-type",
    )
    .await;
    let r = app.get(&url("unavailable")).send().await.unwrap();
    assert_eq!(r.bytes().await.unwrap().to_vec(), good);
    assert_eq!(greeting_files(&app).await.len(), 1);
    assert!(helpers::leftover_parts(&app).is_empty());
}

#[tokio::test]
async fn a_greeting_of_an_unknown_mailbox_is_404() {
    let app = TestApp::spawn().await;
    let r = app
        .put("/v1/mailboxes/4040@default/greetings/busy")
        .header("content-type", "audio/wav")
        .body(audio::wav_ulaw(1.0))
        .send()
        .await
        .unwrap();
    assert_problem(r, 404, "not-found").await;
}
