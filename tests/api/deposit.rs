use futures_util::future::join_all;
use reqwest::StatusCode;
use reqwest::multipart::{Form, Part};
use serde_json::{Value, json};

use crate::common::{TestApp, assert_problem, audio};
use crate::helpers;

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

/// An accepted input and what the server must make of it.
struct Accepted {
    body: Vec<u8>,
    content_type: &'static str,
    format: &'static str,
    codec: &'static str,
    sample_rate: u32,
    duration_ms: i64,
}

fn accepted(
    body: Vec<u8>,
    content_type: &'static str,
    format: &'static str,
    codec: &'static str,
    sample_rate: u32,
    duration_ms: i64,
) -> Accepted {
    Accepted {
        body,
        content_type,
        format,
        codec,
        sample_rate,
        duration_ms,
    }
}

/// Deposits the input and checks what is stored: the exact bytes, the format and the duration
/// computed from the audio.
async fn deposit_and_check(app: &TestApp, a: Accepted) {
    let ct = a.content_type;
    let m = app.deposit_ok("1001@default", a.body.clone(), ct).await;
    assert_eq!(m["audio"]["format"], a.format, "{ct}: {m}");
    assert_eq!(m["audio"]["codec"], a.codec, "{ct}");
    assert_eq!(m["audio"]["sample_rate"], a.sample_rate, "{ct}");
    assert_eq!(m["audio"]["channels"], 1, "{ct}");
    assert_eq!(m["audio"]["size"], a.body.len(), "{ct}");
    assert_eq!(m["audio"]["sha256"], audio::sha256_hex(&a.body));
    assert_eq!(m["duration_ms"], a.duration_ms, "{ct}");
    assert_eq!(m["duration"], (a.duration_ms + 500) / 1000, "{ct}");
    let stored = helpers::audio_of(app, "1001@default", &helpers::id_of(&m)).await;
    assert_eq!(
        audio::sha256_hex(&stored),
        audio::sha256_hex(&a.body),
        "{ct} ({}) is stored byte for byte",
        a.format
    );
    let again = helpers::get_message(app, "1001@default", &helpers::id_of(&m)).await;
    assert_eq!(again, m, "GET answers what the deposit answered");
}

#[tokio::test]
async fn every_accepted_format_is_stored_byte_for_byte_with_its_duration() {
    let app = TestApp::spawn().await;
    app.create_mailbox("1001@default", json!({})).await;
    let (wav, ulaw, alaw, pcm) = ("audio/wav", "pcm_mulaw", "pcm_alaw", "pcm_s16le");
    let cases = vec![
        accepted(audio::wav_ulaw(1.5), wav, "wav_ulaw", ulaw, 8000, 1500),
        accepted(
            audio::wav_ulaw_fmt16(2.0),
            wav,
            "wav_ulaw",
            ulaw,
            8000,
            2000,
        ),
        accepted(audio::wav_alaw(1.25), wav, "wav_alaw", alaw, 8000, 1250),
        accepted(audio::wav_pcm16(1.5, 8000), wav, "wav_pcm", pcm, 8000, 1500),
        accepted(
            audio::wav_pcm16(1.0, 16000),
            "audio/x-wav",
            "wav_pcm",
            pcm,
            16000,
            1000,
        ),
        accepted(
            audio::raw_ulaw(1.5),
            "audio/basic",
            "raw_ulaw",
            ulaw,
            8000,
            1500,
        ),
        accepted(
            audio::raw_ulaw(2.0),
            "audio/PCMU",
            "raw_ulaw",
            ulaw,
            8000,
            2000,
        ),
        accepted(
            audio::raw_alaw(1.5),
            "audio/PCMA",
            "raw_alaw",
            alaw,
            8000,
            1500,
        ),
        accepted(
            audio::raw_alaw(0.5),
            "audio/x-alaw-basic",
            "raw_alaw",
            alaw,
            8000,
            500,
        ),
    ];
    let n = cases.len();
    for case in cases {
        deposit_and_check(&app, case).await;
    }
    assert_eq!(helpers::list(&app, "1001@default", "").await.len(), n);
    assert_eq!(app.mwi("1001@default").await["new"], n);
}

#[tokio::test]
async fn raw_g711_is_served_back_with_its_own_content_type() {
    let app = TestApp::spawn().await;
    app.create_mailbox("1001@default", json!({})).await;
    for (body, ct, served) in [
        (audio::raw_ulaw(1.0), "audio/basic", "audio/PCMU"),
        (audio::raw_alaw(1.0), "audio/x-alaw-basic", "audio/PCMA"),
    ] {
        let m = app.deposit_ok("1001@default", body.clone(), ct).await;
        let r = app
            .get(&format!(
                "/v1/mailboxes/1001@default/messages/{}/audio",
                helpers::id_of(&m)
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers()["content-type"], served);
        assert_eq!(r.bytes().await.unwrap().to_vec(), body);
    }
}

fn metadata_part() -> Part {
    Part::text(
        json!({"caller_id_num": "5550100", "caller_id_name": "Carol", "urgent": false,
            "category": "sales"})
        .to_string(),
    )
    .mime_str("application/json")
    .unwrap()
}

fn audio_part(wav: &[u8]) -> Part {
    Part::bytes(wav.to_vec())
        .file_name("msg0000.wav")
        .mime_str("audio/wav")
        .unwrap()
}

#[tokio::test]
async fn multipart_deposit_takes_metadata_and_audio_in_either_order() {
    let app = TestApp::spawn().await;
    app.create_mailbox("1001@default", json!({})).await;
    let wav = audio::wav_alaw(1.0);
    let forms = [
        Form::new()
            .part("metadata", metadata_part())
            .part("audio", audio_part(&wav)),
        Form::new()
            .part("audio", audio_part(&wav))
            .part("metadata", metadata_part()),
    ];
    for (i, form) in forms.into_iter().enumerate() {
        let r = app
            .post("/v1/mailboxes/1001@default/messages")
            .multipart(form)
            .send()
            .await
            .unwrap();
        let status = r.status();
        let m: Value = r.json().await.unwrap();
        assert_eq!(status, StatusCode::CREATED, "form {i}: {m}");
        assert_eq!(m["caller_id_num"], "5550100");
        assert_eq!(m["caller_id_name"], "Carol");
        assert_eq!(m["callerid"], "\"Carol\" <5550100>");
        assert_eq!(m["category"], "sales");
        assert_eq!(m["folder"], "INBOX");
        assert_eq!(m["msgnum"], i);
        assert_eq!(m["audio"]["format"], "wav_alaw");
        assert_eq!(m["duration_ms"], 1000);
        let stored = helpers::audio_of(&app, "1001@default", &helpers::id_of(&m)).await;
        assert_eq!(stored, wav, "form {i} stores the audio part byte for byte");
    }
    assert_eq!(app.mwi("1001@default").await["new"], 2);
}

#[tokio::test]
async fn multipart_deposit_without_an_audio_part_is_refused() {
    let app = TestApp::spawn().await;
    app.create_mailbox("1001@default", json!({})).await;
    let r = app
        .post("/v1/mailboxes/1001@default/messages")
        .multipart(Form::new().part("metadata", metadata_part()))
        .send()
        .await
        .unwrap();
    assert_problem(r, 422, "corrupt-audio").await;
    assert!(helpers::list(&app, "1001@default", "").await.is_empty());
}

#[tokio::test]
async fn urgent_deposit_lands_in_urgent_with_the_urgent_flag() {
    let app = TestApp::spawn().await;
    app.create_mailbox("1001@default", json!({})).await;
    let r = app
        .deposit(
            "1001@default",
            audio::wav_ulaw(1.0),
            "audio/wav",
            "?urgent=true&caller_id_num=100",
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let m: Value = r.json().await.unwrap();
    assert_eq!(m["folder"], "Urgent");
    assert_eq!(m["flag"], "Urgent");
    assert_eq!(m["urgent"], true);
    assert_eq!(m["msgnum"], 0);
    let mwi = app.mwi("1001@default").await;
    assert_eq!(mwi["urgent_new"], 1, "{mwi}");
    assert_eq!(mwi["new"], 1, "urgent messages are also new: {mwi}");
    assert_eq!(mwi["old"], 0);
    let urgent = helpers::list(&app, "1001@default", "?folder=Urgent").await;
    assert_eq!(urgent.len(), 1);
    assert!(
        helpers::list(&app, "1001@default", "?folder=INBOX")
            .await
            .is_empty()
    );
}

#[tokio::test]
async fn deposit_metadata_from_the_query_is_kept() {
    let app = TestApp::spawn().await;
    app.create_mailbox("1001@default", json!({})).await;
    let r = app
        .deposit(
            "1001@default",
            audio::raw_ulaw(1.0),
            "audio/PCMU",
            "?caller_id_num=5551234&caller_id_name=Dan&category=support&exten=1001&rdnis=2000\
             &priority=3&callerchan=SIP%2Fpbx1-0001&orig_time=1700000000&context=from-pstn",
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let m: Value = r.json().await.unwrap();
    assert_eq!(m["category"], "support");
    assert_eq!(m["exten"], "1001");
    assert_eq!(m["rdnis"], "2000");
    assert_eq!(m["priority"], 3);
    assert_eq!(m["callerchan"], "SIP/pbx1-0001");
    assert_eq!(m["orig_time"], 1_700_000_000);
    assert_eq!(m["context"], "from-pstn");
    assert_eq!(m["origmailbox"], "1001@default");
    assert_eq!(m["mailbox"], "1001@default");
    assert_eq!(m["read"], false);
    assert!(m["forwarded_from"].is_null());
}

#[tokio::test]
async fn a_retry_with_the_same_idempotency_key_returns_the_first_message() {
    let app = TestApp::spawn().await;
    app.create_mailbox("1001@default", json!({})).await;
    let send = || {
        app.post("/v1/mailboxes/1001@default/messages?caller_id_num=42")
            .header("content-type", "audio/wav")
            .header("idempotency-key", "call-7f3a-0001")
            .body(audio::wav_ulaw(1.0))
            .send()
    };
    let first = send().await.unwrap();
    assert_eq!(first.status(), StatusCode::CREATED);
    let first: Value = first.json().await.unwrap();
    for _ in 0..2 {
        let retry = send().await.unwrap();
        assert_eq!(retry.status(), StatusCode::OK, "a retry is 200, not 201");
        let location = retry.headers()["location"].to_str().unwrap().to_owned();
        let retry: Value = retry.json().await.unwrap();
        assert_eq!(retry["id"], first["id"]);
        assert_eq!(
            location,
            format!(
                "/v1/mailboxes/1001@default/messages/{}",
                first["id"].as_str().unwrap()
            )
        );
    }
    assert_eq!(helpers::list(&app, "1001@default", "").await.len(), 1);
    assert_eq!(app.mwi("1001@default").await["new"], 1);

    // Another key is another message.
    let other = app
        .post("/v1/mailboxes/1001@default/messages")
        .header("content-type", "audio/wav")
        .header("idempotency-key", "call-7f3a-0002")
        .body(audio::wav_ulaw(1.0))
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), StatusCode::CREATED);
    assert_eq!(helpers::list(&app, "1001@default", "").await.len(), 2);
}

#[tokio::test]
async fn the_same_idempotency_key_in_another_mailbox_is_a_new_message() {
    let app = TestApp::spawn().await;
    app.create_mailbox("1001@default", json!({})).await;
    app.create_mailbox("1002@default", json!({})).await;
    for address in ["1001@default", "1002@default"] {
        let r = app
            .post(&format!("/v1/mailboxes/{address}/messages"))
            .header("content-type", "audio/wav")
            .header("idempotency-key", "shared-key")
            .body(audio::wav_ulaw(1.0))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::CREATED, "{address}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ten_concurrent_retries_with_one_idempotency_key_store_one_message() {
    let app = TestApp::spawn().await;
    app.create_mailbox("1001@default", json!({})).await;
    let sends = (0..10).map(|_| {
        app.post("/v1/mailboxes/1001@default/messages")
            .header("content-type", "audio/wav")
            .header("idempotency-key", "concurrent-retry")
            .body(audio::wav_ulaw(1.0))
            .send()
    });
    let mut ids = Vec::new();
    let mut created = 0;
    for r in join_all(sends).await {
        let r = r.unwrap();
        let status = r.status();
        let m: Value = r.json().await.unwrap();
        assert!(
            status == StatusCode::CREATED || status == StatusCode::OK,
            "{status}: {m}"
        );
        if status == StatusCode::CREATED {
            created += 1;
        }
        ids.push(helpers::id_of(&m));
    }
    assert_eq!(created, 1, "exactly one try creates the message");
    ids.dedup();
    assert_eq!(ids.len(), 1, "every try answers the same message");
    assert_eq!(helpers::list(&app, "1001@default", "").await.len(), 1);
    assert_eq!(app.mwi("1001@default").await["new"], 1);
    let stored = helpers::stored_audio(&app, "messages/").await;
    assert_eq!(stored.len(), 1, "the losers' audio is removed: {stored:?}");
}

#[tokio::test]
async fn a_recording_shorter_than_minsecs_is_too_short() {
    let app = TestApp::spawn().await;
    app.create_mailbox("1001@default", json!({"minsecs": 2}))
        .await;
    let r = app
        .deposit("1001@default", audio::wav_ulaw(1.0), "audio/wav", "")
        .await;
    assert_problem(r, 422, "too-short").await;
    assert!(helpers::list(&app, "1001@default", "").await.is_empty());
    // Exactly the minimum is long enough.
    app.deposit_ok("1001@default", audio::wav_ulaw(2.0), "audio/wav")
        .await;
}

#[tokio::test]
async fn a_recording_longer_than_maxsecs_is_too_long() {
    let app = TestApp::spawn().await;
    app.create_mailbox("1001@default", json!({"maxsecs": 1}))
        .await;
    for (body, ct) in [
        (audio::wav_ulaw(3.0), "audio/wav"),
        (audio::raw_alaw(3.0), "audio/PCMA"),
        (audio::wav_pcm16(3.0, 16000), "audio/wav"),
    ] {
        let r = app.deposit("1001@default", body, ct, "").await;
        assert_problem(r, 422, "too-long").await;
    }
    assert!(helpers::list(&app, "1001@default", "").await.is_empty());
    app.deposit_ok("1001@default", audio::wav_ulaw(1.0), "audio/wav")
        .await;
    assert!(helpers::leftover_parts(&app).is_empty());
}

#[tokio::test]
async fn a_full_mailbox_answers_507_mailbox_full() {
    let app = TestApp::spawn().await;
    app.create_mailbox("1001@default", json!({"maxmsg": 3}))
        .await;
    for _ in 0..3 {
        app.deposit_ok("1001@default", audio::wav_ulaw(1.0), "audio/wav")
            .await;
    }
    let r = app
        .deposit("1001@default", audio::wav_ulaw(1.0), "audio/wav", "")
        .await;
    assert_problem(r, 507, "mailbox-full").await;
    assert_eq!(helpers::list(&app, "1001@default", "").await.len(), 3);
    let stored = helpers::stored_audio(&app, "messages/").await;
    assert_eq!(stored.len(), 3, "the refused audio is not kept: {stored:?}");
    assert!(helpers::leftover_parts(&app).is_empty());
    // maxmsg counts per folder: an urgent message still fits.
    let r = app
        .deposit(
            "1001@default",
            audio::wav_ulaw(1.0),
            "audio/wav",
            "?urgent=1",
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
}

#[tokio::test]
async fn raw_g711_that_starts_with_silence_is_accepted() {
    let app = TestApp::spawn().await;
    app.create_mailbox("1001@default", json!({})).await;
    // µ-law digital silence is 0xFF, and quiet samples are 0xE0..=0xFF: a recording that starts
    // quietly must not be mistaken for an MP3 frame sync.
    let mut ulaw = vec![0xFFu8; 800];
    ulaw.extend(audio::raw_ulaw(1.0));
    let mut quiet = vec![0xFE, 0xF3, 0xFF, 0xEE];
    quiet.extend(audio::raw_ulaw(1.0));
    let mut alaw = vec![0xFFu8, 0xFA, 0xD5, 0xD5];
    alaw.extend(audio::raw_alaw(1.0));
    for (body, ct) in [
        (ulaw, "audio/PCMU"),
        (quiet, "audio/basic"),
        (alaw, "audio/PCMA"),
    ] {
        let m = app.deposit_ok("1001@default", body.clone(), ct).await;
        let stored = helpers::audio_of(&app, "1001@default", &helpers::id_of(&m)).await;
        assert_eq!(stored, body, "{ct}");
    }
}

#[tokio::test]
async fn a_retry_after_the_message_was_deleted_does_not_bring_it_back() {
    let app = TestApp::spawn().await;
    app.create_mailbox("1001@default", json!({})).await;
    let send = || {
        app.post("/v1/mailboxes/1001@default/messages")
            .header("content-type", "audio/wav")
            .header("idempotency-key", "deleted-then-retried")
            .body(audio::wav_ulaw(1.0))
            .send()
    };
    let first: Value = send().await.unwrap().json().await.unwrap();
    let r = app
        .delete(&format!(
            "/v1/mailboxes/1001@default/messages/{}",
            helpers::id_of(&first)
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let retry = send().await.unwrap();
    let problem = assert_problem(retry, 410, "deposit-deleted").await;
    let detail = problem["detail"].as_str().unwrap();
    assert!(detail.contains(helpers::id_of(&first).as_str()), "{detail}");
    assert!(helpers::list(&app, "1001@default", "").await.is_empty());
    assert!(helpers::stored_audio(&app, "messages/").await.is_empty());
}

#[tokio::test]
async fn a_forwarded_urgent_message_is_urgent_in_the_target() {
    let app = TestApp::spawn().await;
    app.create_mailbox("1001@default", json!({})).await;
    app.create_mailbox("1002@default", json!({})).await;
    let r = app
        .deposit(
            "1001@default",
            audio::wav_ulaw(1.0),
            "audio/wav",
            "?urgent=on",
        )
        .await;
    let m: Value = r.json().await.unwrap();
    let r = app
        .post(&format!(
            "/v1/mailboxes/1001@default/messages/{}/forward",
            helpers::id_of(&m)
        ))
        .json(&json!({"to": ["1002@default"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let copy = &r.json::<Value>().await.unwrap()["items"][0];
    assert_eq!(copy["folder"], "Urgent");
    assert_eq!(copy["flag"], "Urgent");
    assert_eq!(app.mwi("1002@default").await["urgent_new"], 1);
}

#[tokio::test]
async fn a_deposit_streamed_in_tiny_chunks_is_stored_byte_for_byte() {
    let app = TestApp::spawn().await;
    app.create_mailbox("1001@default", json!({})).await;
    for (body, ct) in [
        (audio::wav_ulaw(1.0), "audio/wav"),
        (audio::wav_pcm16(1.0, 16000), "audio/wav"),
        (audio::raw_alaw(1.0), "audio/PCMA"),
    ] {
        // A few bytes at a time through the header, then bigger pieces.
        let mut chunks: Vec<Vec<u8>> = body[..60].chunks(3).map(<[u8]>::to_vec).collect();
        chunks.extend(body[60..].chunks(1000).map(<[u8]>::to_vec));
        let stream = futures_util::stream::iter(chunks.into_iter().map(Ok::<_, std::io::Error>));
        let r = app
            .post("/v1/mailboxes/1001@default/messages")
            .header("content-type", ct)
            .body(reqwest::Body::wrap_stream(stream))
            .send()
            .await
            .unwrap();
        let status = r.status();
        let m: Value = r.json().await.unwrap();
        assert_eq!(status, StatusCode::CREATED, "{ct}: {m}");
        assert_eq!(m["duration_ms"], 1000);
        let stored = helpers::audio_of(&app, "1001@default", &helpers::id_of(&m)).await;
        assert_eq!(stored, body, "{ct}");
    }
}

/// A µ-law WAV with a LIST chunk of odd size (padded) between fmt and data, as editors write.
fn wav_with_list_chunk(samples: &[u8]) -> Vec<u8> {
    let list = b"INFOISFT";
    let list_len = list.len() + 1; // odd: "INFOISFT" + one byte, then a pad byte
    let mut v = Vec::new();
    v.extend_from_slice(b"RIFF");
    let riff = 4 + (8 + 16) + (8 + list_len + 1) + (8 + samples.len());
    v.extend_from_slice(&(riff as u32).to_le_bytes());
    v.extend_from_slice(b"WAVE");
    v.extend_from_slice(b"fmt ");
    v.extend_from_slice(&16u32.to_le_bytes());
    v.extend_from_slice(&7u16.to_le_bytes());
    v.extend_from_slice(&1u16.to_le_bytes());
    v.extend_from_slice(&8000u32.to_le_bytes());
    v.extend_from_slice(&8000u32.to_le_bytes());
    v.extend_from_slice(&1u16.to_le_bytes());
    v.extend_from_slice(&8u16.to_le_bytes());
    v.extend_from_slice(b"LIST");
    v.extend_from_slice(&(list_len as u32).to_le_bytes());
    v.extend_from_slice(list);
    v.push(b'x');
    v.push(0); // pad
    v.extend_from_slice(b"data");
    v.extend_from_slice(&(samples.len() as u32).to_le_bytes());
    v.extend_from_slice(samples);
    v
}

#[tokio::test]
async fn wavs_with_extra_chunks_or_a_streaming_size_are_accepted() {
    let app = TestApp::spawn().await;
    app.create_mailbox("1001@default", json!({})).await;
    let with_list = wav_with_list_chunk(&audio::raw_ulaw(1.5));
    let mut streaming_size = audio::wav_ulaw_fmt16(2.0);
    streaming_size[40..44].copy_from_slice(&u32::MAX.to_le_bytes());
    for (body, ms) in [(with_list, 1500), (streaming_size, 2000)] {
        let m = app
            .deposit_ok("1001@default", body.clone(), "audio/wav")
            .await;
        assert_eq!(m["audio"]["format"], "wav_ulaw");
        assert_eq!(m["duration_ms"], ms);
        let stored = helpers::audio_of(&app, "1001@default", &helpers::id_of(&m)).await;
        assert_eq!(stored, body);
    }
}
