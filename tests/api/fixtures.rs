//! The recorded fixtures (espeak-ng speech converted by sox, see fixtures/README.md) deposit as a
//! PBX would send them, and the damaged ones are refused.

use serde_json::json;

use crate::common::{TestApp, assert_problem, audio, fixture};

#[tokio::test]
async fn every_recorded_fixture_deposits_byte_for_byte() {
    let app = TestApp::spawn().await;
    app.create_mailbox("1001@default", json!({})).await;
    for (file, content_type, codec, rate) in [
        ("hello-ulaw.wav", "audio/wav", "pcm_mulaw", 8000),
        ("hello-alaw.wav", "audio/wav", "pcm_alaw", 8000),
        ("hello-pcm16.wav", "audio/wav", "pcm_s16le", 8000),
        ("hello-pcm16-16k.wav", "audio/wav", "pcm_s16le", 16000),
        ("hello.ulaw", "audio/PCMU", "pcm_mulaw", 8000),
        ("hello.alaw", "audio/PCMA", "pcm_alaw", 8000),
    ] {
        let bytes = fixture(file);
        let m = app
            .deposit_ok("1001@default", bytes.clone(), content_type)
            .await;
        assert_eq!(m["audio"]["codec"], codec, "{file}");
        assert_eq!(m["audio"]["sample_rate"], rate, "{file}");
        assert_eq!(m["audio"]["sha256"], audio::sha256_hex(&bytes), "{file}");
        // The same speech in every format: about 3 s.
        let ms = m["duration_ms"].as_i64().unwrap();
        assert!((2500..4000).contains(&ms), "{file}: {ms} ms");
        let got = app
            .get(&format!(
                "/v1/mailboxes/1001@default/messages/{}/audio",
                m["id"].as_str().unwrap()
            ))
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        assert_eq!(got.as_ref(), bytes.as_slice(), "{file}");
    }
}

#[tokio::test]
async fn damaged_fixtures_are_refused() {
    let app = TestApp::spawn().await;
    app.create_mailbox("1001@default", json!({})).await;
    let r = app
        .deposit("1001@default", fixture("truncated.wav"), "audio/wav", "")
        .await;
    assert_problem(r, 422, "corrupt-audio").await;
    let r = app
        .deposit("1001@default", fixture("garbage.bin"), "audio/wav", "")
        .await;
    assert_problem(r, 422, "corrupt-audio").await;
    let r = app
        .deposit(
            "1001@default",
            fixture("garbage.bin"),
            "application/octet-stream",
            "",
        )
        .await;
    assert_problem(r, 415, "unsupported-audio").await;
    assert_eq!(app.mwi("1001@default").await["new"], 0);
}
